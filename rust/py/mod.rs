//! Thin pyo3 bindings over [`crate::core`]. Conversions live in this file;
//! numerical work runs through [`errors::run`] with the GIL released.

mod errors;

/// Three (or four) 1-d arrays returned together (CSR arrays, factor parts).
type Arrays3<'py, A, B, C> = (
    Bound<'py, PyArray1<A>>,
    Bound<'py, PyArray1<B>>,
    Bound<'py, PyArray1<C>>,
);
type Arrays4<'py> = (
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<usize>>,
    Bound<'py, PyArray1<f64>>,
);

use faer::{Mat, MatRef};
use numpy::{PyArray1, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::core::{CoreError, ReTerm, Workspace};
use errors::run;

/// The penalized least-squares workspace of one model (lme4's `merPredD`
/// plus its deviance function). Built once per model; `objective(theta)` is
/// the profiled REML criterion or ML deviance at θ.
#[pyclass(name = "Workspace", module = "mixedmodels._core")]
pub struct PyWorkspace {
    inner: Workspace,
}

fn col_major(x: &PyReadonlyArray2<'_, f64>) -> (usize, usize, Vec<f64>) {
    let a = x.as_array();
    let (n, p) = (a.nrows(), a.ncols());
    let mut v = Vec::with_capacity(n * p);
    for j in 0..p {
        v.extend(a.column(j).iter().copied());
    }
    (n, p, v)
}

fn to_array2<'py>(
    py: Python<'py>,
    v: Vec<f64>,
    rows: usize,
    cols: usize,
) -> PyResult<Bound<'py, PyAny>> {
    // v is column-major rows x cols: build the transpose C-contiguous, then .T
    PyArray1::from_vec(py, v)
        .reshape([cols, rows])?
        .into_any()
        .getattr("T")
}

/// A 2-d numpy array (any layout) as a column-major faer matrix.
fn to_mat(b: &PyReadonlyArray2<'_, f64>) -> Mat<f64> {
    let a = b.as_array();
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[[i, j]])
}

fn mat_to_py<'py>(py: Python<'py>, m: MatRef<'_, f64>) -> PyResult<Bound<'py, PyAny>> {
    let (r, c) = (m.nrows(), m.ncols());
    let mut v = Vec::with_capacity(r * c);
    for j in 0..c {
        v.extend((0..r).map(|i| m[(i, j)]));
    }
    to_array2(py, v, r, c)
}

#[pymethods]
impl PyWorkspace {
    /// Workspace(x, y, terms)
    ///
    /// x: n x p float64; y: n float64; terms: list of (codes, z, n_levels) with
    /// codes an int64 array of 0-based level codes and z the n x k model
    /// matrix of the term.
    #[new]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
        terms: Vec<(PyReadonlyArray1<'_, i64>, PyReadonlyArray2<'_, f64>, usize)>,
    ) -> PyResult<Self> {
        let (n, p, xv) = col_major(&x);
        let yv = y.as_array().to_vec();
        let mut rterms = Vec::with_capacity(terms.len());
        for (t, (codes, z, n_levels)) in terms.iter().enumerate() {
            let codes = codes.as_array();
            if let Some(&bad) = codes.iter().find(|&&c| c < 0 || c as u64 > u32::MAX as u64) {
                return Err(errors::to_pyerr(
                    py,
                    CoreError::Dimension(format!(
                        "random-effects term {t}: invalid level code {bad}"
                    )),
                ));
            }
            let za = z.as_array();
            rterms.push(ReTerm {
                n_levels: *n_levels,
                k: za.ncols(),
                codes: codes.iter().map(|&c| c as u32).collect(),
                z: za.iter().copied().collect(),
            });
        }
        let inner = run(py, move || Workspace::new(n, p, xv, yv, rterms))?;
        Ok(Self { inner })
    }

    #[getter]
    fn n(&self) -> usize {
        self.inner.n()
    }
    #[getter]
    fn p(&self) -> usize {
        self.inner.p()
    }
    #[getter]
    fn q(&self) -> usize {
        self.inner.q()
    }
    #[getter]
    fn n_theta(&self) -> usize {
        self.inner.n_theta()
    }
    /// Lower bounds of θ (0 on template diagonals, -inf elsewhere).
    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        PyArray1::from_vec(py, self.inner.lower())
    }
    /// Stored nonzeros of the lower triangle of ΛᵀZᵀZΛ + I.
    #[getter]
    fn pls_nnz(&self) -> usize {
        self.inner.pls_nnz()
    }
    /// Number of chunks (threads) the Schur-complement fill is split into.
    #[getter]
    fn schur_chunks(&self) -> usize {
        self.inner.schur_chunks()
    }
    /// Multiply-adds per evaluation of the Schur-complement fill grouped by
    /// classes of the first term's levels (0 when the direct fill is used).
    #[getter]
    fn class_work(&self) -> usize {
        self.inner.class_work()
    }
    /// Stored values of the sparse Cholesky factor L.
    #[getter]
    fn factor_nnz(&self) -> usize {
        self.inner.factor_nnz()
    }

    /// A copy of this workspace with a new response; everything that depends
    /// only on X, Z and the grouping (cross-products, the analysis of the
    /// factorization) is reused.
    fn with_response(&self, py: Python<'_>, y: PyReadonlyArray1<'_, f64>) -> PyResult<Self> {
        let yv = y.as_array().to_vec();
        let ws = &self.inner;
        let inner = run(py, move || {
            let mut w = ws.clone();
            w.set_response(yv)?;
            Ok(w)
        })?;
        Ok(Self { inner })
    }

    /// The REML criterion (reml=True) or the ML deviance at θ.
    fn objective(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        reml: bool,
    ) -> PyResult<f64> {
        let th = theta
            .as_slice()
            .map(|s| s.to_vec())
            .unwrap_or_else(|_| theta.as_array().to_vec());
        let ws = &mut self.inner;
        run(py, move || ws.objective(&th, reml))
    }

    /// (pwrss, ld_l2, ld_rx2) at θ: the pieces of the objective.
    fn components(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<(f64, f64, f64)> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let ev = run(py, move || ws.update(&th))?;
        Ok((ev.pwrss, ev.ld_l2, ev.ld_rx2))
    }

    /// RX (p x p, upper triangular) at θ: XᵀV₀⁻¹X = RXᵀRX with V₀ = V/σ².
    fn rx<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let rx = run(py, move || {
            ws.update(&th)?;
            Ok(ws.rx())
        })?;
        let p = self.inner.p();
        to_array2(py, rx, p, p)
    }

    /// The PLS solution at θ: a dict with beta, u, b, fitted, pwrss, ld_l2,
    /// ld_rx2, rx (p x p upper triangular), rzx (q x p, rows in L's order).
    fn solve<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let sol = run(py, move || ws.solve(&th))?;
        let p = self.inner.p();
        let q = self.inner.q();
        let rzx = self.inner.rzx();
        let mut rzx_v = Vec::with_capacity(q * p);
        for j in 0..p {
            for i in 0..q {
                rzx_v.push(rzx[(i, j)]);
            }
        }
        let d = PyDict::new(py);
        d.set_item("beta", PyArray1::from_vec(py, sol.beta))?;
        d.set_item("u", PyArray1::from_vec(py, sol.u))?;
        d.set_item("b", PyArray1::from_vec(py, sol.b))?;
        d.set_item("fitted", PyArray1::from_vec(py, sol.fitted))?;
        d.set_item("pwrss", sol.pwrss)?;
        d.set_item("ld_l2", sol.ld_l2)?;
        d.set_item("ld_rx2", sol.ld_rx2)?;
        d.set_item("rx", to_array2(py, sol.rx, p, p)?)?;
        d.set_item("rzx", to_array2(py, rzx_v, q, p)?)?;
        Ok(d)
    }

    /// Conditional covariance blocks Λ(ΛᵀZᵀZΛ + I)⁻¹Λᵀ at θ (multiply by σ²
    /// for lme4's condVar): one (n_levels, k, k) array per term.
    fn cond_var<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let blocks = run(py, move || {
            ws.update(&th)?;
            ws.cond_var_blocks()
        })?;
        let mut out = Vec::with_capacity(blocks.len());
        for (blk, lay) in blocks.into_iter().zip(self.inner.layout()) {
            // each block is column-major k x k; reshape to (levels, k, k) then swap the last axes
            let arr = PyArray1::from_vec(py, blk).reshape([lay.n_levels, lay.k, lay.k])?;
            out.push(arr.into_any().call_method1("transpose", (0, 2, 1))?);
        }
        Ok(out)
    }

    // -- the marginal covariance V and the factor L --------------------------

    /// Upper bound on the stored entries of V (computed from level counts).
    fn v_nnz_bound(&self) -> u128 {
        self.inner.v_nnz_bound()
    }

    /// V = σ²(ZΛΛᵀZᵀ + I) at θ as CSR arrays (indptr, indices, data); refuses
    /// with MemoryBudgetError when its entries could exceed `max_nnz`.
    fn v_csr<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        max_nnz: u128,
    ) -> PyResult<Arrays3<'py, i64, i64, f64>> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let csr = run(py, move || {
            ws.update(&th)?;
            ws.v_csr(sigma, max_nnz)
        })?;
        Ok((
            PyArray1::from_vec(py, csr.indptr),
            PyArray1::from_vec(py, csr.indices),
            PyArray1::from_vec(py, csr.data),
        ))
    }

    /// V⁻¹B at θ and σ, through the PLS factor (B is n x m).
    fn v_solve<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        b: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let th = theta.as_array().to_vec();
        let bm = to_mat(&b);
        let ws = &mut self.inner;
        let out = run(py, move || {
            ws.update(&th)?;
            ws.v_solve(sigma, bm.as_ref())
        })?;
        mat_to_py(py, out.as_ref())
    }

    /// VB at θ and σ (B is n x m).
    fn v_matvec<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        b: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let th = theta.as_array().to_vec();
        let bm = to_mat(&b);
        let ws = &mut self.inner;
        let out = run(py, move || {
            ws.update(&th)?;
            ws.v_matvec(sigma, bm.as_ref())
        })?;
        mat_to_py(py, out.as_ref())
    }

    /// log det V at θ and σ.
    fn v_logdet(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
    ) -> PyResult<f64> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        run(py, move || {
            ws.update(&th)?;
            ws.v_logdet(sigma)
        })
    }

    /// Block label of each row: rows in different blocks share no random effect.
    fn v_components<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let ws = &self.inner;
        let lab = run(py, move || Ok(ws.v_components()))?;
        Ok(PyArray1::from_vec(py, lab))
    }

    /// The factor L of ΛᵀZᵀZΛ + I at θ: (perm, col_ptr, row_idx, values) with
    /// L Lᵀ = M[perm][:, perm].
    fn factor_l<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Arrays4<'py>> {
        let th = theta.as_array().to_vec();
        let ws = &mut self.inner;
        let fl = run(py, move || {
            ws.update(&th)?;
            ws.factor_l()
        })?;
        Ok((
            PyArray1::from_vec(py, fl.perm),
            PyArray1::from_vec(py, fl.col_ptr),
            PyArray1::from_vec(py, fl.row_idx),
            PyArray1::from_vec(py, fl.values),
        ))
    }
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyWorkspace>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
