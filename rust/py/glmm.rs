//! `mixedmodels._core.GlmmWorkspace`: a GLMM's PIRLS workspace, as Python
//! sees it. Each evaluation (PIRLS to convergence and the Laplace
//! approximation) is one call with the GIL released.

use numpy::{PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::convert;
use super::errors::run;
use crate::core::{CoreError, Distribution, Family, Glmm, Link, Pirls};

/// A generalized linear mixed model's workspace: PIRLS for the conditional
/// modes at (θ, β), or at θ with β inside PIRLS (nAGQ = 0), and the Laplace
/// approximation. The modes of one evaluation are the start of the next.
#[pyclass(name = "GlmmWorkspace", module = "mixedmodels._core")]
pub struct PyGlmm {
    inner: Glmm,
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
}

type Terms<'py> = Vec<(
    PyReadonlyArray1<'py, i64>,
    PyReadonlyArray2<'py, f64>,
    usize,
)>;

/// (laplace, deviance, sqr_u, ld_l2, iterations, halvings) of one PIRLS run
/// (laplace includes Gamma's dispersion term).
type PirlsTuple = (f64, f64, f64, f64, usize, usize);

fn tuple(r: Pirls) -> PirlsTuple {
    (
        r.laplace(),
        r.deviance,
        r.sqr_u,
        r.ld_l2,
        r.iterations,
        r.halvings,
    )
}

#[pymethods]
impl PyGlmm {
    /// GlmmWorkspace(x, y, terms, family, link, eta_start, weights=None, offset=None)
    ///
    /// x: n x p; y: the response (binomial: proportions); terms as for
    /// Workspace; family ("binomial", "poisson", "Gamma", "negative.binomial"
    /// with its shape) and link (R's names);
    /// eta_start: the linear predictor of the family's starting means; prior
    /// weights (binomial: numbers of trials) and an offset.
    #[new]
    #[pyo3(signature = (x, y, terms, family, link, eta_start, weights=None, offset=None, shape=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        x: PyReadonlyArray2<'_, f64>,
        y: PyReadonlyArray1<'_, f64>,
        terms: Terms<'_>,
        family: &str,
        link: &str,
        eta_start: PyReadonlyArray1<'_, f64>,
        weights: Option<PyReadonlyArray1<'_, f64>>,
        offset: Option<PyReadonlyArray1<'_, f64>>,
        shape: Option<f64>,
    ) -> PyResult<Self> {
        let dist = match (family, shape) {
            ("negative.binomial", Some(s)) => Distribution::negative_binomial(s)?,
            ("negative.binomial", None) => {
                return Err(CoreError::Dimension(
                    "the negative binomial family needs its shape".into(),
                )
                .into())
            }
            (name, _) => Distribution::from_name(name)?,
        };
        let fam = Family::new(dist, Link::from_name(link)?);
        let (n, p, xv) = convert::col_major(&x);
        let (yv, e0) = (convert::vec1(&y), convert::vec1(&eta_start));
        let (w, o) = (convert::opt_vec1(weights), convert::opt_vec1(offset));
        let rterms = convert::terms(&terms)?;
        let inner = run(py, move || Glmm::new(n, p, xv, yv, w, o, rterms, fam, e0))?;
        Ok(Self {
            n: inner.n(),
            p: inner.p(),
            q: inner.q(),
            n_theta: inner.workspace().n_theta(),
            inner,
        })
    }

    /// Lower bounds of θ (0 on template diagonals, -inf elsewhere).
    #[getter]
    fn lower<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        convert::array1(py, self.inner.workspace().lower())
    }

    /// PIRLS's convergence tolerance on its step (relative to 1 + |value|).
    #[getter]
    fn get_tol(&self) -> f64 {
        self.inner.tol
    }

    #[setter]
    fn set_tol(&mut self, tol: f64) -> PyResult<()> {
        if !(tol > 0.0 && tol.is_finite()) {
            return Err(CoreError::Dimension(format!("tol must be positive, not {tol}")).into());
        }
        self.inner.tol = tol;
        Ok(())
    }

    /// PIRLS on u at (θ, β): (laplace, deviance, sqr_u, ld_l2, iterations,
    /// halvings), laplace = deviance + sqr_u + ld_l2 (−2 log L without the
    /// family's constant).
    fn laplace(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        beta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<PirlsTuple> {
        let (th, b) = (convert::vec1(&theta), convert::vec1(&beta));
        let g = &mut self.inner;
        run(py, move || g.laplace(&th, &b).map(tuple))
    }

    /// Whether the exact gradient is available (a canonical link:
    /// binomial-logit, Poisson-log).
    #[getter]
    fn has_gradient(&self) -> bool {
        self.inner.has_gradient()
    }

    /// `laplace` and the gradient of its objective in (θ, β), in one call.
    fn laplace_grad<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        beta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<(PirlsTuple, Bound<'py, PyArray1<f64>>)> {
        let (th, b) = (convert::vec1(&theta), convert::vec1(&beta));
        let g = &mut self.inner;
        let (r, grad) = run(py, move || {
            let r = g.laplace(&th, &b)?;
            Ok((tuple(r), g.gradient()?))
        })?;
        Ok((r, convert::array1(py, grad)))
    }

    /// `laplace_beta` and the gradient of the nAGQ = 0 objective in θ, in
    /// one call.
    fn laplace_beta_grad<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<(PirlsTuple, Bound<'py, PyArray1<f64>>)> {
        let th = convert::vec1(&theta);
        let g = &mut self.inner;
        let (r, grad) = run(py, move || {
            let r = g.laplace_beta(&th)?;
            Ok((tuple(r), g.gradient()?))
        })?;
        Ok((r, convert::array1(py, grad)))
    }

    /// Adaptive Gauss-Hermite quadrature at (θ, β) (a single term with at
    /// most 3 effects per level; the tensor product of the rule, at most 3375
    /// nodes per level): (value, PIRLS's tuple), with the one-dimensional
    /// rule's nodes and weights for the standard normal density (Σ weights = 1).
    fn agq(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
        beta: PyReadonlyArray1<'_, f64>,
        nodes: PyReadonlyArray1<'_, f64>,
        weights: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<(f64, PirlsTuple)> {
        let (th, b) = (convert::vec1(&theta), convert::vec1(&beta));
        let (z, w) = (convert::vec1(&nodes), convert::vec1(&weights));
        let g = &mut self.inner;
        run(py, move || {
            g.agq(&th, &b, &z, &w).map(|(v, r)| (v, tuple(r)))
        })
    }

    /// PIRLS on β and u at θ (nAGQ = 0): as `laplace`; β̂ is in `state()`.
    fn laplace_beta(
        &mut self,
        py: Python<'_>,
        theta: PyReadonlyArray1<'_, f64>,
    ) -> PyResult<PirlsTuple> {
        let th = convert::vec1(&theta);
        let g = &mut self.inner;
        run(py, move || g.laplace_beta(&th).map(tuple))
    }

    /// Sets the negative binomial shape (a negative binomial model only).
    fn set_shape(&mut self, shape: f64) -> PyResult<()> {
        self.inner.set_shape(shape).map_err(PyErr::from)
    }

    /// Forgets the modes of the last evaluation (the next starts afresh).
    fn reset(&mut self) {
        self.inner.reset();
    }

    /// The derivative of the modes in (θ, β) at the last evaluation with β
    /// given, (q, n_theta + p); None unless the terms are scalar and the
    /// link canonical.
    fn mode_jacobian<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let g = &mut self.inner;
        let q = g.q();
        let jac = run(py, move || g.mode_jacobian())?;
        jac.map(|j| {
            let m = j.len() / q.max(1);
            convert::array2(py, j, q, m)
        })
        .transpose()
    }

    /// The Hessian of the objective in (θ, β) at (θ, β), by central (or,
    /// with `forward`, forward) differences of the gradient with step delta (see the core's
    /// `hessian.rs`): (hessian, evaluations, PIRLS iterations); None unless
    /// the terms are scalar and the link canonical. The workspace is left
    /// at (θ, β).
    fn hessian<'py>(
        &mut self,
        py: Python<'py>,
        theta: PyReadonlyArray1<'_, f64>,
        beta: PyReadonlyArray1<'_, f64>,
        delta: f64,
        forward: bool,
    ) -> PyResult<Option<(Bound<'py, PyAny>, usize, usize)>> {
        let (th, b) = (convert::vec1(&theta), convert::vec1(&beta));
        let m = th.len() + b.len();
        let g = &mut self.inner;
        let out = run(py, move || g.hessian(&th, &b, delta, forward))?;
        out.map(|h| {
            Ok((
                convert::array2(py, h.values, m, m)?,
                h.evaluations,
                h.iterations,
            ))
        })
        .transpose()
    }

    /// The last evaluation's modes u.
    fn modes<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray1<f64>> {
        convert::array1(py, self.inner.u().to_vec())
    }

    /// Sets the modes u (length q) the next evaluation starts from.
    fn set_modes(&mut self, u: PyReadonlyArray1<'_, f64>) -> PyResult<()> {
        self.inner
            .set_modes(&convert::vec1(&u))
            .map_err(PyErr::from)
    }

    /// The last evaluation: a dict with beta, u, b (= Λu), eta (offset
    /// included), mu, and rx (p x p, upper triangular: the fixed effects'
    /// factor at the converged working weights, Fisher information RXᵀRX).
    fn state<'py>(&mut self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let g = &mut self.inner;
        let (beta, u, b, eta, mu, rx) = run(py, move || {
            let rx = g.rx()?;
            Ok((
                g.beta().to_vec(),
                g.u().to_vec(),
                g.b(),
                g.eta().to_vec(),
                g.mu(),
                rx,
            ))
        })?;
        let d = PyDict::new(py);
        d.set_item("beta", convert::array1(py, beta))?;
        d.set_item("u", convert::array1(py, u))?;
        d.set_item("b", convert::array1(py, b))?;
        d.set_item("eta", convert::array1(py, eta))?;
        d.set_item("mu", convert::array1(py, mu))?;
        d.set_item("rx", convert::array2(py, rx, self.p, self.p)?)?;
        Ok(d)
    }

    /// Conditional covariance blocks of b at the last evaluation (lme4's
    /// condVar of a GLMM): one (n_levels, k, k) array per term.
    fn cond_var<'py>(&mut self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyAny>>> {
        let g = &mut self.inner;
        let blocks = run(py, move || g.cond_var_blocks())?;
        let layout = self.inner.workspace().layout();
        let mut out = Vec::with_capacity(blocks.len());
        for (blk, lay) in blocks.into_iter().zip(layout) {
            out.push(convert::blocks(py, blk, lay.n_levels, lay.k)?);
        }
        Ok(out)
    }
}
