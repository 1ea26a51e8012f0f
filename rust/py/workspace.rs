//! `mixedmodels._core.Workspace`: one model's workspace, as Python sees it.
//!
//! Every method that takes θ is one line over [`PyWorkspace::at_theta`]: θ is
//! copied, the workspace is evaluated there and the body runs, all with the
//! GIL released (through `errors::run`); only the conversion of the result
//! holds the GIL.
//!
//! One object may be used from several Python threads at once (one fit's
//! methods, `fit()` of one model): the class is `frozen` and the core
//! workspace sits behind a mutex, so evaluating at θ and reading the result
//! is one step that other threads wait for. The mutex is only ever taken
//! with the GIL released and never held while the GIL is taken again, so a
//! waiting thread cannot block the one holding it.

use std::sync::{Mutex, MutexGuard};

use faer::{Mat, MatRef};
use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert::{self, Arrays3, Arrays4};
use super::errors::run;
use crate::core::qn::{QnSettings, QnStop};
use crate::core::{CoreError, Evaluation, FactorKind, Workspace};

/// The penalized least-squares workspace of one model (lme4's `merPredD`
/// plus its deviance function). Built once per model; `objective(theta)` is
/// the profiled REML criterion or ML deviance at θ.
#[pyclass(name = "Workspace", module = "mixedmodels._core", frozen)]
pub struct PyWorkspace {
    /// The core workspace; see the module documentation for the locking.
    inner: Mutex<Workspace>,
    /// Lower bounds of θ (fixed by the layout).
    lower: Vec<f64>,
    /// (levels, columns) of each term (fixed by the layout).
    term_shapes: Vec<(usize, usize)>,
    /// Number of observations.
    #[pyo3(get)]
    n: usize,
    /// Number of fixed effects.
    #[pyo3(get)]
    p: usize,
    /// Number of random effects.
    #[pyo3(get)]
    q: usize,
    /// Number of θ elements.
    #[pyo3(get)]
    n_theta: usize,
    /// Σ log wᵢ of the prior weights (0.0 without weights).
    #[pyo3(get)]
    log_det_w: f64,
    /// Stored nonzeros of the lower triangle of ΛᵀZᵀZΛ + I.
    #[pyo3(get)]
    pls_nnz: usize,
    /// Number of chunks (threads) the Schur-complement fill is split into.
    #[pyo3(get)]
    schur_chunks: usize,
    /// Multiply-adds per evaluation of the Schur-complement fill grouped by
    /// classes of the first term's levels (0 when the direct fill is used).
    #[pyo3(get)]
    class_work: usize,
    /// Stored values of the factor L.
    #[pyo3(get)]
    factor_nnz: usize,
}

pub(super) type Terms<'py> = Vec<(
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray2<'py, f64>,
    usize,
)>;

impl PyWorkspace {
    /// Wraps a workspace with its sizes (read by Python as attributes).
    pub(super) fn wrap(inner: Workspace) -> Self {
        Self {
            lower: inner.lower(),
            term_shapes: inner.layout().iter().map(|t| (t.n_levels, t.k)).collect(),
            n: inner.n(),
            p: inner.p(),
            q: inner.q(),
            n_theta: inner.n_theta(),
            log_det_w: inner.log_det_w(),
            pls_nnz: inner.pls_nnz(),
            schur_chunks: inner.schur_chunks(),
            class_work: inner.class_work(),
            factor_nnz: inner.factor_nnz(),
            inner: Mutex::new(inner),
        }
    }

    /// The workspace, for this thread alone. Call only with the GIL released
    /// (inside [`run`]). A panic in an earlier call leaves the mutex poisoned;
    /// the workspace is still whole (every call that needs θ evaluates it
    /// anew), so the poison is cleared.
    fn lock(&self) -> MutexGuard<'_, Workspace> {
        self.inner.lock().unwrap_or_else(|poisoned| {
            self.inner.clear_poison();
            poisoned.into_inner()
        })
    }

    /// Evaluates the workspace at a copy of `theta`, then runs `f` on it; all
    /// with the GIL released.
    fn at_theta<T, F>(&self, py: Python<'_>, theta: PyReadonlyArray1<'_, f64>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(&mut Workspace, Evaluation) -> Result<T, CoreError> + Send,
    {
        let th = convert::vec1(&theta);
        run(py, move || {
            let mut ws = self.lock();
            let ev = ws.update(&th)?;
            f(&mut ws, ev)
        })
    }

    /// Runs `f` on the workspace as it stands (no θ), with the GIL released.
    fn with_lock<T, F>(&self, py: Python<'_>, f: F) -> PyResult<T>
    where
        T: Send,
        F: FnOnce(&Workspace) -> Result<T, CoreError> + Send,
    {
        run(py, move || f(&self.lock()))
    }

    /// [`at_theta`](Self::at_theta) for a body that maps an n x m array B to
    /// another array.
    fn at_theta_on<'py, F>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        b: PyReadonlyArray2<'_, f64>,
        f: F,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        F: FnOnce(&Workspace, MatRef<'_, f64>) -> Result<Mat<f64>, CoreError> + Send,
    {
        let bm = convert::to_mat(&b);
        let out = self.at_theta(py, theta, |ws, _| f(ws, bm.as_ref()))?;
        convert::mat(py, out.as_ref())
    }

    /// A copy of this workspace changed by `f` (the plan of the
    /// factorization is shared).
    fn derived<F>(&self, py: Python<'_>, f: F) -> PyResult<Self>
    where
        F: FnOnce(&mut Workspace) -> Result<(), CoreError> + Send,
    {
        let inner = run(py, move || {
            let mut w = self.lock().clone();
            f(&mut w)?;
            Ok(w)
        })?;
        Ok(Self::wrap(inner))
    }
}

#[pymethods]
impl PyWorkspace {
    /// Workspace(x, y, terms, weights=None, offset=None)
    ///
    /// x: n x p float64; y: n float64; terms: list of (codes, z, n_levels) with
    /// codes an int64 array of 0-based level codes and z the n x k model
    /// matrix of the term. All on the scale of the data: prior weights
    /// (positive) and an offset are applied by the core.
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
            Workspace::build(rows, terms, FactorKind::Auto)
        })?;
        Ok(Self::wrap(inner))
    }

    /// Lower bounds of θ (0 on template diagonals, -inf elsewhere).
    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        convert::array1(py, self.lower.clone())
    }

    /// A starting θ by the method of moments from the cross-products (each
    /// term's covariance from its levels' residual moments after least
    /// squares), or None when least squares leaves no residual.
    fn moment_start<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyArray1<f64>>>> {
        let th = self.with_lock(py, |ws| Ok(ws.moment_start()))?;
        Ok(th.map(|t| convert::array1(py, t)))
    }

    /// A copy of this workspace with a new response (on the scale of the
    /// data); everything that depends only on X, Z, the weights and the
    /// grouping is reused.
    fn with_response(&self, py: Python<'_>, y: PyReadonlyArray1<'_, f64>) -> PyResult<Self> {
        let yv = convert::vec1(&y);
        self.derived(py, move |w| w.set_response(yv))
    }

    /// A copy of this workspace with new prior weights: the cross-products
    /// are recomputed from the rows in their kept patterns; the analysis of the
    /// factorization is reused.
    fn with_weights(&self, py: Python<'_>, weights: PyReadonlyArray1<'_, f64>) -> PyResult<Self> {
        let wv = convert::vec1(&weights);
        self.derived(py, move |w| w.set_weights(Some(wv)))
    }

    /// The model's REML criterion (reml=True) or ML deviance at θ, lme4's
    /// devfun (with −Σ log wᵢ for prior weights).
    fn objective(
        &self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        reml: bool,
    ) -> PyResult<f64> {
        self.at_theta(py, theta, |ws, ev| Ok(ws.objective_from(&ev, reml)))
    }

    /// The gradient of `objective(theta, reml)` with respect to θ (exact:
    /// from the cross-products and the factor, no finite differences).
    fn gradient<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        reml: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        let g = self.at_theta(py, theta, |ws, _| ws.gradient_from(reml))?;
        Ok(convert::array1(py, g))
    }

    /// minimize(theta, reml, ftol_abs, ftol_rel, xtol_abs, maxeval, initial_step, moments)
    ///
    /// Minimizes `objective(·, reml)` over θ ≥ `lower` from `theta` by the
    /// core's projected BFGS on the exact gradient (no call into Python per
    /// evaluation); with `moments`, the method of moments' θ (`moment_start`)
    /// is tried right after `theta`, and the run continues from it when its
    /// objective is lower. Returns (θ, objective, gradient, Hessian approximation,
    /// objective evaluations, gradient evaluations, every θ evaluated (rows),
    /// their objectives, why it stopped).
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn minimize<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        reml: bool,
        ftol_abs: f64,
        ftol_rel: f64,
        xtol_abs: f64,
        maxeval: usize,
        initial_step: f64,
        moments: bool,
    ) -> PyResult<(
        Bound<'py, PyArray1<f64>>,
        f64,
        Bound<'py, PyArray1<f64>>,
        Bound<'py, PyAny>,
        usize,
        usize,
        Bound<'py, PyAny>,
        Bound<'py, PyArray1<f64>>,
        &'static str,
    )> {
        let start = convert::vec1(&theta);
        let set = QnSettings {
            ftol_abs,
            ftol_rel,
            xtol_abs,
            maxeval,
            initial_step,
        };
        let r = run(py, move || {
            self.lock().minimize(&start, reml, &set, moments)
        })?;
        let n = r.theta.len();
        let rows = r.log.len();
        let mut log = vec![0.0; rows * n];
        for (i, (th, _)) in r.log.iter().enumerate() {
            for (j, &v) in th.iter().enumerate() {
                log[i + j * rows] = v;
            }
        }
        let values = r.log.iter().map(|e| e.1).collect();
        let stop = match r.stop {
            QnStop::Converged => "CONVERGED",
            QnStop::AtBounds => "AT_BOUNDS",
            QnStop::LineSearch => "LINE_SEARCH",
            QnStop::MaxEval => "MAXEVAL_REACHED",
        };
        Ok((
            convert::array1(py, r.theta),
            r.f,
            convert::array1(py, r.gradient),
            convert::array2(py, r.hessian, n, n)?,
            r.feval,
            r.geval,
            convert::array2(py, log, rows, n)?,
            convert::array1(py, values),
            stop,
        ))
    }

    /// (pwrss, ld_l2, ld_rx2) at θ: the pieces of the objective.
    fn components(
        &self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<(f64, f64, f64)> {
        self.at_theta(py, theta, |_, ev| Ok((ev.pwrss, ev.ld_l2, ev.ld_rx2)))
    }

    /// RX (p x p, upper triangular) at θ: X̃ᵀṼ₀⁻¹X̃ = RXᵀRX.
    fn rx<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let rx = self.at_theta(py, theta, |ws, _| Ok(ws.rx()))?;
        convert::array2(py, rx, self.p, self.p)
    }

    /// The PLS solution at θ: a dict with beta, u, b, fitted (Xβ + Zb +
    /// offset), pwrss, ld_l2, ld_rx2, rx (p x p upper triangular), rzx (q x p,
    /// rows in L's order).
    fn solve<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let (sol, rzx) = self.at_theta(py, theta, |ws, _| Ok((ws.solution()?, ws.rzx())))?;
        let p = self.p;
        let d = PyDict::new(py);
        d.set_item("beta", convert::array1(py, sol.beta))?;
        d.set_item("u", convert::array1(py, sol.u))?;
        d.set_item("b", convert::array1(py, sol.b))?;
        d.set_item("fitted", sol.fitted.map(|f| convert::array1(py, f)))?;
        d.set_item("pwrss", sol.pwrss)?;
        d.set_item("ld_l2", sol.ld_l2)?;
        d.set_item("ld_rx2", sol.ld_rx2)?;
        d.set_item("rx", convert::array2(py, sol.rx, p, p)?)?;
        d.set_item("rzx", convert::mat(py, rzx.as_ref())?)?;
        Ok(d)
    }

    /// Conditional covariance blocks Λ(ΛᵀZ̃ᵀZ̃Λ + I)⁻¹Λᵀ at θ (multiply by σ²
    /// for lme4's condVar): one (n_levels, k, k) array per term.
    fn cond_var<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let blocks = self.at_theta(py, theta, |ws, _| ws.cond_var_blocks())?;
        let mut out = Vec::with_capacity(blocks.len());
        for (blk, &(n_levels, k)) in blocks.into_iter().zip(&self.term_shapes) {
            out.push(convert::blocks(py, blk, n_levels, k)?);
        }
        Ok(out)
    }

    // -- the marginal covariance V and the factor L --------------------------

    /// Upper bound on the stored entries of V (computed from level counts).
    fn v_nnz_bound(&self, py: Python<'_>) -> PyResult<u128> {
        self.with_lock(py, |ws| Ok(ws.v_nnz_bound()))
    }

    /// V = σ²(ZΛΛᵀZᵀ + W⁻¹) at θ as CSR arrays (indptr, indices, data);
    /// refuses with MemoryBudgetError when its entries could exceed `max_nnz`.
    fn v_csr<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        max_nnz: u128,
    ) -> PyResult<Arrays3<'py, i64, i64, f64>> {
        let csr = self.at_theta(py, theta, |ws, _| ws.v_csr(sigma, max_nnz))?;
        Ok((
            convert::array1(py, csr.indptr),
            convert::array1(py, csr.indices),
            convert::array1(py, csr.data),
        ))
    }

    /// V⁻¹B at θ and σ, through the factor L (B is n x m).
    fn v_solve<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        b: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.at_theta_on(py, theta, b, |ws, b| ws.v_solve(sigma, b))
    }

    /// VB at θ and σ (B is n x m).
    fn v_matvec<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
        b: PyReadonlyArray2<'_, f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.at_theta_on(py, theta, b, |ws, b| ws.v_matvec(sigma, b))
    }

    /// log det V at θ and σ (with −Σ log wᵢ for prior weights).
    fn v_logdet(
        &self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        sigma: f64,
    ) -> PyResult<f64> {
        self.at_theta(py, theta, |ws, _| ws.v_logdet(sigma))
    }

    /// Block label of each row: rows in different blocks share no random effect.
    fn v_components<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u32>>> {
        let lab = self.with_lock(py, |ws| ws.v_components())?;
        Ok(convert::array1(py, lab))
    }

    /// The factor L of ΛᵀZ̃ᵀZ̃Λ + I at θ: (perm, col_ptr, row_idx, values) with
    /// L Lᵀ = M[perm][:, perm].
    fn factor_l<'py>(
        &self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<Arrays4<'py>> {
        let fl = self.at_theta(py, theta, |ws, _| ws.factor_l())?;
        Ok((
            convert::array1(py, fl.perm),
            convert::array1(py, fl.col_ptr),
            convert::array1(py, fl.row_idx),
            convert::array1(py, fl.values),
        ))
    }
}
