//! The pure-Rust core: no Python types here.

pub mod chol;
pub mod error;
pub mod model;

#[cfg(test)]
mod tests;

pub use error::{CoreError, Result};
pub use model::{Evaluation, ReTerm, Solution, TermLayout, Workspace};
