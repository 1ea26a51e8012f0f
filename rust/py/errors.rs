//! The one place where core errors and panics become Python exceptions.
//!
//! Every call that does real work goes through [`run`]: it releases the GIL,
//! catches a panic (a bug) as `mixedmodels.exceptions.InternalError`, and maps
//! each [`CoreError`] variant to its own exception class, defined in
//! `python/mixedmodels/exceptions.py`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;
use pyo3::types::PyModule;

use crate::core::CoreError;

fn exception(py: Python<'_>, class: &str, msg: String) -> PyErr {
    match PyModule::import(py, "mixedmodels.exceptions").and_then(|m| m.getattr(class)) {
        Ok(cls) => match cls.call1((msg.clone(),)) {
            Ok(inst) => PyErr::from_value(inst),
            Err(e) => e,
        },
        Err(_) => pyo3::exceptions::PyRuntimeError::new_err(msg),
    }
}

pub fn to_pyerr(py: Python<'_>, err: CoreError) -> PyErr {
    let class = match &err {
        CoreError::Length { .. } | CoreError::Dimension(_) | CoreError::NonFinite { .. } => {
            "DimensionError"
        }
        CoreError::NonPositiveWeight { .. } => "DataError",
        CoreError::ThetaLength { .. } | CoreError::ThetaNotFinite { .. } => "ThetaError",
        CoreError::NotEvaluated => "ThetaError",
        CoreError::NotPositiveDefinite { .. } | CoreError::RankDeficient { .. } => {
            "NotPositiveDefiniteError"
        }
        CoreError::ExactFit => "NotPositiveDefiniteError",
        CoreError::MemoryBudget { .. } | CoreError::OutOfMemory { .. } => "MemoryBudgetError",
        CoreError::Factorization(_) => "NumericalError",
    };
    exception(py, class, err.to_string())
}

/// Runs `f` with the GIL released; maps errors and panics to exceptions.
pub fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send,
    T: Send,
{
    let out = py.detach(|| catch_unwind(AssertUnwindSafe(f)));
    match out {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(to_pyerr(py, e)),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(exception(
                py,
                "InternalError",
                format!("internal error in the Rust core (please report it): {msg}"),
            ))
        }
    }
}
