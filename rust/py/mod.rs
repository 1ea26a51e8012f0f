//! Thin pyo3 bindings over [`crate::core`]: conversions in `convert`, the
//! error funnel in `errors`, the workspace class in `workspace`, chunk sums in `sums`.

mod convert;
mod errors;
mod sums;
mod workspace;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<workspace::PyWorkspace>()?;
    m.add_class::<sums::PyBlockSums>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
