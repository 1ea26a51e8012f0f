//! The pure-Rust core: no Python types here.

// Index loops over small blocks read like the formulas they implement; NaN
// pivots must fail the positivity checks, hence `!(d > 0.0)`.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod chol;
pub mod error;
pub mod model;
pub mod small;

#[cfg(test)]
mod tests;

pub use error::{CoreError, Result};
pub use model::{Csr, Evaluation, FactorL, ReTerm, Solution, TermLayout, Workspace};
