//! `mixedmodels._core.BlockSums`: the cross-products of chunks of a model's
//! rows, merged and turned into a workspace (data larger than memory).
//!
//! Immutable: `merge` returns new sums. They pickle through `to_state` /
//! `from_state` (plain numbers and arrays), so that partial sums can travel
//! between processes (Dask); `from_state` validates what it is given.

use faer::Mat;
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::convert;
use super::errors::run;
use super::workspace::{PyWorkspace, Terms};
use crate::core::chunks::SumColumns;
use crate::core::{BlockSums, FactorKind, Workspace};

/// The cross-product blocks of some rows of a model (no rows kept).
#[pyclass(name = "BlockSums", module = "mixedmodels._core")]
pub struct PyBlockSums {
    /// None once moved into a workspace.
    inner: Option<BlockSums>,
}

pyo3::import_exception!(mixedmodels.exceptions, ArgumentError);

impl PyBlockSums {
    fn sums(&self) -> PyResult<&BlockSums> {
        self.inner.as_ref().ok_or_else(|| {
            ArgumentError::new_err("these block sums were moved into a workspace (into_workspace)")
        })
    }
}

type Pattern<'py> = (
    PyReadonlyArray1<'py, usize>,
    PyReadonlyArray1<'py, u32>,
    PyReadonlyArray1<'py, f64>,
);

fn columns(p: &Pattern<'_>) -> SumColumns {
    SumColumns {
        ptr: p.0.as_array().to_vec(),
        row: p.1.as_array().to_vec(),
        val: convert::vec1(&p.2),
    }
}

fn pattern_state<'py>(py: Python<'py>, b: &SumColumns) -> PyResult<Bound<'py, PyTuple>> {
    PyTuple::new(
        py,
        [
            PyArray1::from_slice(py, &b.ptr).into_any(),
            PyArray1::from_slice(py, &b.row).into_any(),
            PyArray1::from_slice(py, &b.val).into_any(),
        ],
    )
}

#[pymethods]
impl PyBlockSums {
    /// BlockSums(x, y, terms, weights=None, offset=None)
    ///
    /// The blocks of one chunk of rows, with the arguments of `Workspace`;
    /// each term's level codes number the levels of the whole data and its
    /// n_levels is the whole data's.
    #[new]
    #[pyo3(signature = (x, y, terms, weights=None, offset=None))]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
        terms: Terms<'_>,
        weights: Option<PyReadonlyArray1<'_, f64>>,
        offset: Option<PyReadonlyArray1<'_, f64>>,
    ) -> PyResult<Self> {
        let input = convert::ModelInput::new(&x, &y, &terms, weights, offset)?;
        let inner = run(py, move || {
            let (rows, terms) = input.into_parts()?;
            BlockSums::from_rows(rows, terms)
        })?;
        Ok(Self { inner: Some(inner) })
    }

    /// Rows summed.
    #[getter]
    fn n(&self) -> PyResult<usize> {
        Ok(self.sums()?.n)
    }

    /// The sums of these rows and `other`'s (disjoint rows of the same model).
    fn merge(&self, py: Python<'_>, other: &Self) -> PyResult<Self> {
        let (a, b) = (self.sums()?, other.sums()?);
        let inner = run(py, move || a.merged(b))?;
        Ok(Self { inner: Some(inner) })
    }

    /// The model's workspace from the sums of all its rows: everything that
    /// reads the cross-products works; what needs the rows raises
    /// `RowsNotKeptError`. The sums move into it (not copied: at 50M rows
    /// they are a GiB), and this object is empty afterwards.
    #[pyo3(name = "into_workspace")]
    fn take_workspace(&mut self, py: Python<'_>) -> PyResult<PyWorkspace> {
        self.sums()?;
        let s = self.inner.take().expect("checked above");
        let ws = run(py, move || Workspace::from_sums(s, FactorKind::Auto))?;
        Ok(PyWorkspace::wrap(ws))
    }

    /// The sums as plain numbers and arrays (for pickling).
    fn to_state<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let s = self.sums()?;
        let shapes: Vec<(usize, usize)> = s.shapes.clone();
        let xyxy: Vec<f64> = (0..s.xyxy.ncols())
            .flat_map(|j| (0..s.xyxy.nrows()).map(move |i| (i, j)))
            .map(|(i, j)| s.xyxy[(i, j)])
            .collect();
        PyTuple::new(
            py,
            [
                (s.n, s.p, s.log_det_w).into_pyobject(py)?.into_any(),
                shapes.into_pyobject(py)?.into_any(),
                PyArray1::from_slice(py, &s.a11).into_any(),
                pattern_state(py, &s.a21)?.into_any(),
                PyArray1::from_slice(py, &s.a22d).into_any(),
                PyArray1::from_slice(py, &s.a22d_off).into_any(),
                pattern_state(py, &s.a22)?.into_any(),
                PyArray1::from_slice(py, &s.ztxy).into_any(),
                PyArray1::from_vec(py, xyxy).into_any(),
            ],
        )
    }

    /// Sums from `to_state`'s tuple, validated.
    #[staticmethod]
    #[allow(clippy::type_complexity)]
    fn from_state(
        py: Python<'_>,
        state: (
            (usize, usize, f64),
            Vec<(usize, usize)>,
            PyReadonlyArray1<'_, f64>,
            Pattern<'_>,
            PyReadonlyArray1<'_, f64>,
            PyReadonlyArray1<'_, usize>,
            Pattern<'_>,
            PyReadonlyArray1<'_, f64>,
            PyReadonlyArray1<'_, f64>,
        ),
    ) -> PyResult<Self> {
        let ((n, p, log_det_w), shapes, a11, a21, a22d, a22d_off, a22, ztxy, xyxy) = state;
        let xy = convert::vec1(&xyxy);
        let p1 = p + 1;
        if xy.len() != p1 * p1 {
            return Err(crate::core::CoreError::Dimension(
                "invalid block sums: the fixed-effects block".into(),
            )
            .into());
        }
        let inner = BlockSums {
            n,
            p,
            log_det_w,
            shapes,
            a11: convert::vec1(&a11),
            a21: columns(&a21),
            a22d: convert::vec1(&a22d),
            a22d_off: a22d_off.as_array().to_vec(),
            a22: columns(&a22),
            ztxy: convert::vec1(&ztxy),
            xyxy: Mat::from_fn(p1, p1, |i, j| xy[i + j * p1]),
        };
        let inner = run(py, move || inner.validate().map(|()| inner))?;
        Ok(Self { inner: Some(inner) })
    }

    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let py = slf.py();
        let from_state = py.get_type::<Self>().getattr("from_state")?;
        let state = slf.borrow().to_state(py)?;
        PyTuple::new(
            py,
            [from_state.into_any(), PyTuple::new(py, [state])?.into_any()],
        )
    }
}
