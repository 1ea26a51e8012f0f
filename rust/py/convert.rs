//! numpy ↔ Vec / faer: the only place that knows about array layouts and
//! strides. Everything here runs with the GIL held and copies.

use faer::{Mat, MatRef};
use numpy::{Element, PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::core::{CoreError, ReTerm, RowData};

/// Three 1-d arrays returned together (CSR arrays).
pub type Arrays3<'py, A, B, C> = (
    Bound<'py, PyArray1<A>>,
    Bound<'py, PyArray1<B>>,
    Bound<'py, PyArray1<C>>,
);

/// Four 1-d arrays returned together (the parts of the factor L).
pub type Arrays4<'py> = (
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<f64>>,
);

/// A 1-d array (any stride) as a Vec.
pub fn vec1(a: &PyReadonlyArray1<'_, f64>) -> Vec<f64> {
    a.as_slice()
        .map(<[f64]>::to_vec)
        .unwrap_or_else(|_| a.as_array().to_vec())
}

/// An optional 1-d array as an optional Vec.
pub fn opt_vec1(a: Option<PyReadonlyArray1<'_, f64>>) -> Option<Vec<f64>> {
    a.as_ref().map(vec1)
}

/// A 2-d array (any layout) as (rows, cols, column-major values).
pub fn col_major(x: &PyReadonlyArray2<'_, f64>) -> (usize, usize, Vec<f64>) {
    let a = x.as_array();
    let (n, p) = (a.nrows(), a.ncols());
    if a.t().is_standard_layout() {
        // Fortran order: the memory is the column-major values (one copy)
        if let Some(s) = a.as_slice_memory_order() {
            return (n, p, s.to_vec());
        }
    }
    let mut v = Vec::with_capacity(n * p);
    for j in 0..p {
        v.extend(a.column(j).iter().copied());
    }
    (n, p, v)
}

/// A 2-d array (any layout) as a column-major faer matrix.
pub fn to_mat(b: &PyReadonlyArray2<'_, f64>) -> Mat<f64> {
    let a = b.as_array();
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

/// The random-effects terms `(codes, z, n_levels)`: codes must be
/// non-negative and fit in 32 bits; z is copied row-major.
pub fn terms(
    terms: &[(PyReadonlyArray1<'_, i64>, PyReadonlyArray2<'_, f64>, usize)],
) -> Result<Vec<ReTerm>, CoreError> {
    let mut out = Vec::with_capacity(terms.len());
    for (t, (codes, z, n_levels)) in terms.iter().enumerate() {
        let codes = codes.as_array();
        if let Some(&bad) = codes.iter().find(|&&c| c < 0 || c > i64::from(u32::MAX)) {
            return Err(CoreError::Dimension(format!(
                "random-effects term {t}: invalid level code {bad}"
            )));
        }
        let za = z.as_array();
        out.push(ReTerm {
            n_levels: *n_levels,
            k: za.ncols(),
            codes: match codes.as_slice() {
                Some(s) => s.iter().map(|&c| c as u32).collect(),
                None => codes.iter().map(|&c| c as u32).collect(),
            },
            z: za
                .as_slice()
                .map_or_else(|| za.iter().copied().collect(), <[f64]>::to_vec),
        });
    }
    Ok(out)
}

/// A 1-d array owning `v`.
pub fn array1<T: Element>(py: Python<'_>, v: Vec<T>) -> Bound<'_, PyArray1<T>> {
    PyArray1::from_vec(py, v)
}

/// A rows x cols array from column-major values (a Fortran-ordered view).
pub fn array2(py: Python<'_>, v: Vec<f64>, rows: usize, cols: usize) -> PyResult<Bound<'_, PyAny>> {
    // the transpose is C-contiguous cols x rows
    PyArray1::from_vec(py, v)
        .reshape([cols, rows])?
        .into_any()
        .getattr("T")
}

/// A faer matrix as a 2-d array.
pub fn mat<'py>(py: Python<'py>, m: MatRef<'_, f64>) -> PyResult<Bound<'py, PyAny>> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut v = Vec::with_capacity(r * c);
    for j in 0..c {
        v.extend(m.col(j).iter().copied());
    }
    array2(py, v, r, c)
}

/// Column-major k x k blocks, `levels` of them, as a (levels, k, k) array.
pub fn blocks(py: Python<'_>, v: Vec<f64>, levels: usize, k: usize) -> PyResult<Bound<'_, PyAny>> {
    // C order (level, column, row): swap the last two axes
    PyArray1::from_vec(py, v)
        .reshape([levels, k, k])?
        .into_any()
        .call_method1("transpose", (0, 2, 1))
}

/// A model's rows and terms copied from Python, checked by the core when they
/// become [`RowData`] (with the GIL released).
pub struct ModelInput {
    n: usize,
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    weights: Option<Vec<f64>>,
    offset: Option<Vec<f64>>,
    terms: Vec<ReTerm>,
}

impl ModelInput {
    /// Copies X (any layout, to column-major), y, the terms, weights and offset.
    pub fn new(
        x: &PyReadonlyArray2<'_, f64>,
        y: &PyReadonlyArray1<'_, f64>,
        terms: &[(PyReadonlyArray1<'_, i64>, PyReadonlyArray2<'_, f64>, usize)],
        weights: Option<PyReadonlyArray1<'_, f64>>,
        offset: Option<PyReadonlyArray1<'_, f64>>,
    ) -> Result<Self, CoreError> {
        let (n, p, x) = col_major(x);
        Ok(Self {
            n,
            p,
            x,
            y: vec1(y),
            weights: opt_vec1(weights),
            offset: opt_vec1(offset),
            terms: self::terms(terms)?,
        })
    }

    /// The checked rows and the terms.
    pub fn into_parts(self) -> Result<(RowData, Vec<ReTerm>), CoreError> {
        let rows = RowData::new(self.n, self.p, self.x, self.y, self.weights, self.offset)?;
        Ok((rows, self.terms))
    }
}
