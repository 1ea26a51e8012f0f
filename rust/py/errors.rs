//! The one place where core errors and panics become Python exceptions.
//!
//! Every call that does real work goes through [`run`]: it releases the GIL,
//! catches a panic (a bug) as `mixedmodels.exceptions.InternalError`, and maps
//! each [`CoreError`] variant to an exception class of
//! `python/mixedmodels/exceptions.py`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::prelude::*;

use crate::core::CoreError;

pyo3::import_exception!(mixedmodels.exceptions, DataError);
pyo3::import_exception!(mixedmodels.exceptions, DimensionError);
pyo3::import_exception!(mixedmodels.exceptions, ThetaError);
pyo3::import_exception!(mixedmodels.exceptions, NotPositiveDefiniteError);
pyo3::import_exception!(mixedmodels.exceptions, NumericalError);
pyo3::import_exception!(mixedmodels.exceptions, MemoryBudgetError);
pyo3::import_exception!(mixedmodels.exceptions, InternalError);
pyo3::import_exception!(mixedmodels.exceptions, RowsNotKeptError);
pyo3::import_exception!(mixedmodels.exceptions, PirlsError);

impl From<CoreError> for PyErr {
    fn from(err: CoreError) -> PyErr {
        let msg = err.to_string();
        match err {
            CoreError::Length { .. } => DimensionError::new_err(msg),
            CoreError::Dimension(_) => DimensionError::new_err(msg),
            CoreError::NonFinite { .. } => DimensionError::new_err(msg),
            CoreError::NonPositiveWeight { .. } => DataError::new_err(msg),
            CoreError::ThetaLength { .. } => ThetaError::new_err(msg),
            CoreError::ThetaNotFinite { .. } => ThetaError::new_err(msg),
            CoreError::NotEvaluated => ThetaError::new_err(msg),
            CoreError::NotPositiveDefinite { .. } => NotPositiveDefiniteError::new_err(msg),
            CoreError::RankDeficient { .. } => NotPositiveDefiniteError::new_err(msg),
            CoreError::ExactFit => NotPositiveDefiniteError::new_err(msg),
            CoreError::MemoryBudget { .. } => MemoryBudgetError::new_err(msg),
            CoreError::OutOfMemory { .. } => MemoryBudgetError::new_err(msg),
            CoreError::Factorization(_) => NumericalError::new_err(msg),
            CoreError::RowsNotKept { .. } => RowsNotKeptError::new_err(msg),
            CoreError::Pirls(_) => PirlsError::new_err(msg),
        }
    }
}

/// Runs `f` with the GIL released; maps errors and panics to exceptions.
pub fn run<T, F>(py: Python<'_>, f: F) -> PyResult<T>
where
    F: FnOnce() -> Result<T, CoreError> + Send,
    T: Send,
{
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(out) => out.map_err(PyErr::from),
        Err(payload) => {
            let msg = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "unknown panic".into());
            Err(InternalError::new_err(format!(
                "internal error in the Rust core (please report it): {msg}"
            )))
        }
    }
}
