//! Errors of the numerical core. Each variant maps to one Python exception
//! class of `python/mixedmodels/exceptions.py` (see `rust/py/errors.rs`).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// An input has the wrong number of values.
    #[error("{what} has {got} values, expected {expected}")]
    Length {
        what: String,
        expected: usize,
        got: usize,
    },
    /// The inputs describing a model do not fit together (other than by
    /// their lengths).
    #[error("{0}")]
    Dimension(String),
    /// An input has a NaN or an infinite value.
    #[error("{what} has a non-finite value at position {index}")]
    NonFinite { what: String, index: usize },
    /// A prior weight is zero or negative.
    #[error("the weights must be positive: weight {index} is {value}")]
    NonPositiveWeight { index: usize, value: f64 },
    /// θ has the wrong number of elements.
    #[error("theta has {got} elements; this model has {expected}")]
    ThetaLength { expected: usize, got: usize },
    /// θ has a NaN or an infinite element.
    #[error("theta[{index}] is not finite")]
    ThetaNotFinite { index: usize },
    /// The model was built from summed chunks of rows ([`BlockSums`]), and
    /// the computation needs the rows themselves.
    ///
    /// [`BlockSums`]: super::chunks::BlockSums
    #[error("{what} needs the data's rows, which a model fitted from chunks does not keep")]
    RowsNotKept { what: &'static str },
    /// A quantity at θ was asked for before any θ was evaluated.
    #[error("no θ has been evaluated yet: evaluate the objective at a θ first")]
    NotEvaluated,
    /// A matrix that must be positive definite is not (numerically).
    #[error("{what} is not positive definite")]
    NotPositiveDefinite { what: &'static str },
    /// The fixed-effects model matrix is rank deficient.
    #[error(
        "the fixed-effects model matrix is rank deficient (column {column} depends on the others)"
    )]
    RankDeficient { column: usize },
    /// The model reproduces the response exactly: σ would be zero.
    #[error("the penalized residual sum of squares is zero: the model fits the data exactly")]
    ExactFit,
    /// A result would exceed the memory budget the caller set.
    #[error("{what} would have up to {need} stored entries, more than the budget of {budget}")]
    MemoryBudget {
        what: &'static str,
        need: u128,
        budget: u128,
    },
    /// An allocation failed.
    #[error("not enough memory for {what}")]
    OutOfMemory { what: &'static str },
    /// PIRLS (the conditional modes of a GLMM) failed: divergence, no
    /// convergence, or working weights that are not positive.
    #[error("PIRLS failed: {0}")]
    Pirls(String),
    /// Index overflow or another failure inside the sparse factorization.
    #[error("sparse factorization failed: {0}")]
    Factorization(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;

/// Refuses `v` unless it has `expected` values.
pub(crate) fn check_len(what: impl Into<String>, v: usize, expected: usize) -> Result<()> {
    if v != expected {
        return Err(CoreError::Length {
            what: what.into(),
            expected,
            got: v,
        });
    }
    Ok(())
}

/// Refuses `v` if it has a NaN or an infinite value.
pub(crate) fn check_finite(what: impl Into<String>, v: &[f64]) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        Some(index) => Err(CoreError::NonFinite {
            what: what.into(),
            index,
        }),
        None => Ok(()),
    }
}
