//! Thin pyo3 bindings over [`crate::core`]: conversions in `convert`, the
//! error funnel in `errors`, the workspace classes in `workspace` (linear) and `glmm`
//! (generalized), chunk sums in `sums`.

mod convert;
mod errors;
mod glmm;
mod sums;
mod workspace;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<workspace::PyWorkspace>()?;
    m.add_class::<sums::PyBlockSums>()?;
    m.add_class::<glmm::PyGlmm>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
