//! Errors of the numerical core. Each variant maps to one Python exception
//! (see `rust/py/errors.rs` and `python/mixedmodels/exceptions.py`).

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum CoreError {
    /// The inputs describing a model do not fit together.
    #[error("{0}")]
    Dimension(String),
    /// θ has the wrong length or a non-finite value.
    #[error("{0}")]
    Theta(String),
    /// A matrix that must be positive definite is not (numerically).
    #[error("{0}")]
    NotPositiveDefinite(String),
    /// A computation would exceed the memory budget the caller set.
    #[error("{0}")]
    MemoryBudget(String),
    /// Allocation or index overflow inside the sparse factorization.
    #[error("sparse factorization failed: {0}")]
    Factorization(String),
}

pub type Result<T> = std::result::Result<T, CoreError>;
