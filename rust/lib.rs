//! `mixedmodels._core`: the numerical core of the mixedmodels package.
//!
//! [`core`] is plain Rust (faer), with its own tests against dense oracles;
//! `py` holds the thin pyo3 bindings, built only with the `python` feature.

pub mod core;

#[cfg(feature = "python")]
mod py;
