//! Pieces both PIRLS paths (the general one and `fused.rs`) share.

use super::vmath::{exp4, ln4, F4};
use super::{Glmm, Pirls, FAST_MODE_TOL};
use crate::core::error::{check_finite, check_len, CoreError, Result};
use crate::core::family::{Distribution, Link};

/// The last evaluation's point (θ; β given, or None with β inside PIRLS),
/// PIRLS's tolerance then, and its record. Asked again at the same point
/// (as the fit's stages, its Hessian and its check are), PIRLS would start
/// at the converged modes and stop at once where it stopped before; the
/// record is returned as it was, with no iterations. With β given, the
/// gradient too once computed in PIRLS's own final state (`grad`): what the
/// forward-difference Hessian takes for its base point
/// (`Glmm::hessian`).
#[derive(Clone)]
pub(super) struct Memo {
    theta: Vec<f64>,
    beta: Option<Vec<f64>>,
    tol: f64,
    out: Pirls,
    pub grad: Option<Vec<f64>>,
}

/// (w, (y − μ)/μ', the deviance residual) of one row at η (y, prior weight).
#[inline(always)]
pub(super) fn row_of(
    link: Link,
    dist: Distribution,
    e: f64,
    y: f64,
    wt: f64,
) -> (f64, f64, f64, f64) {
    let (mu, d) = link.inv_mu_eta(e);
    let w = wt * d * d / dist.variance(mu);
    (w, (y - mu) / d, dist.dev_resid(y, mu, wt), mu)
}

/// `row_of` for the logit link and a 0/1 response with |η| < 30 (where no
/// clamp of lme4's applies): with e = exp(−|η|), μ' = e/(1 + e)² = μ(1 − μ)
/// is the variance, so w = wt μ', and the deviance residual is
/// 2 wt (log(1 + e) + |η| where the response and the sign of η disagree).
/// One exponential, one logarithm and two divisions (the general row has
/// six divisions).
#[inline(always)]
pub(super) fn logit_row(eta: f64, y: f64, wt: f64) -> (f64, f64, f64, f64) {
    let a = eta.abs();
    let e = (-a).exp();
    let d = 1.0 + e;
    let inv = 1.0 / d;
    let mu = if eta >= 0.0 { inv } else { e * inv };
    let dmu = e * inv * inv;
    let against = (y == 1.0) != (eta >= 0.0);
    let dev = 2.0 * wt * (d.ln() + if against { a } else { 0.0 });
    (wt * dmu, (y - mu) / dmu, dev, mu)
}

/// A row's (w, (y − μ)/μ', deviance residual, μ) (`row_of`).
pub(super) type Row = (f64, f64, f64, f64);

/// What a pass computes per row from (η, y, prior weight): one row, or
/// four at once (the same numbers; `Logit` with the vectorized exponential
/// and logarithm, `vmath.rs`).
#[derive(Clone, Copy)]
pub(super) enum RowKernel {
    /// The binomial family with the logit link.
    Logit,
    /// Poisson with the log link (a known pair: its branches fold away).
    PoissonLog,
    Other(Link, Distribution),
}

impl RowKernel {
    pub fn new(link: Link, dist: Distribution) -> Self {
        match (dist, link) {
            (Distribution::Binomial, Link::Logit) => Self::Logit,
            (Distribution::Poisson, Link::Log) => Self::PoissonLog,
            _ => Self::Other(link, dist),
        }
    }

    #[inline(always)]
    pub fn one(self, e: f64, y: f64, wt: f64) -> Row {
        match self {
            Self::Logit if e.abs() < LOGIT_FAST && (y == 0.0 || y == 1.0) => logit_row(e, y, wt),
            Self::Logit => row_of(Link::Logit, Distribution::Binomial, e, y, wt),
            Self::PoissonLog => row_of(Link::Log, Distribution::Poisson, e, y, wt),
            Self::Other(link, dist) => row_of(link, dist, e, y, wt),
        }
    }

    /// `one` on four rows.
    #[inline(always)]
    pub fn four(self, e: F4, y: F4, wt: F4) -> [Row; 4] {
        match self {
            Self::Logit => logit_rows4(e, y, wt),
            _ => {
                let mut out = [(0.0, 0.0, 0.0, 0.0); 4];
                for l in 0..4 {
                    out[l] = self.one(e[l], y[l], wt[l]);
                }
                out
            }
        }
    }
}

/// |η| below which a logit row takes `logit_row` (no clamp of lme4's applies).
const LOGIT_FAST: f64 = 30.0;

/// `logit_row` on four rows, with the exponential and the logarithm of the
/// four lanes at once; rows outside its conditions take `row_of`.
#[inline(always)]
fn logit_rows4(eta: F4, y: F4, wt: F4) -> [Row; 4] {
    let (mut a, mut na, mut d) = ([0.0; 4], [0.0; 4], [0.0; 4]);
    for l in 0..4 {
        a[l] = eta[l].abs().min(LOGIT_FAST);
        na[l] = -a[l];
    }
    let e = exp4(na);
    for l in 0..4 {
        d[l] = 1.0 + e[l];
    }
    let ld = ln4(d);
    let (mut w, mut r, mut dev, mut mu) = ([0.0; 4], [0.0; 4], [0.0; 4], [0.0; 4]);
    for l in 0..4 {
        let inv = 1.0 / d[l];
        mu[l] = if eta[l] >= 0.0 { inv } else { e[l] * inv };
        let dmu = e[l] * inv * inv;
        let against = (y[l] == 1.0) != (eta[l] >= 0.0);
        dev[l] = 2.0 * wt[l] * (ld[l] + if against { a[l] } else { 0.0 });
        w[l] = wt[l] * dmu;
        r[l] = (y[l] - mu[l]) / dmu;
    }
    let mut out = [(0.0, 0.0, 0.0, 0.0); 4];
    for l in 0..4 {
        out[l] = if eta[l].abs() < LOGIT_FAST && (y[l] == 0.0 || y[l] == 1.0) {
            (w[l], r[l], dev[l], mu[l])
        } else {
            row_of(Link::Logit, Distribution::Binomial, eta[l], y[l], wt[l])
        };
    }
    out
}

impl Memo {
    pub fn theta(&self) -> &[f64] {
        &self.theta
    }
    /// Whether β was given (PIRLS on u alone).
    pub fn given_beta(&self) -> bool {
        self.beta.is_some()
    }
    /// β, when it was given.
    pub fn beta(&self) -> Option<&[f64]> {
        self.beta.as_deref()
    }
}

impl Glmm {
    /// The last record when (θ, β) is the last evaluation's point.
    pub(super) fn recall(&self, theta: &[f64], beta: Option<&[f64]>) -> Option<Pirls> {
        let m = self.memo.as_ref()?;
        (m.theta == theta && m.beta.as_deref() == beta && m.tol == self.tol).then(|| Pirls {
            iterations: 0,
            halvings: 0,
            ..m.out.clone()
        })
    }

    /// Keeps a successful run's point and record (forgets them otherwise).
    pub(super) fn remember(&mut self, theta: &[f64], with_beta: bool, out: &Result<Pirls>) {
        self.memo = out.as_ref().ok().map(|o| Memo {
            theta: theta.to_vec(),
            beta: (!with_beta).then(|| self.beta.clone()),
            tol: self.tol,
            out: o.clone(),
            grad: None,
        });
    }

    /// Sets the modes the next evaluation starts from (u, of length q).
    pub fn set_modes(&mut self, u: &[f64]) -> Result<()> {
        check_len("u", u.len(), self.q())?;
        check_finite("u", u)?;
        self.u.copy_from_slice(u);
        self.memo = None;
        Ok(())
    }

    /// The tolerance on the step: β inside PIRLS (the fit's first stage),
    /// Fisher scoring on β and u together converges only linearly for
    /// non-canonical links (a rate of 0.8 on a negative binomial model), so
    /// it stops at `FAST_MODE_TOL`.
    pub(super) fn pirls_tol(&self, with_beta: bool) -> f64 {
        if with_beta {
            self.tol.max(FAST_MODE_TOL)
        } else {
            self.tol
        }
    }

    /// lme4's μ-dependent part of −2 log L beyond the deviance (at `self.eta`).
    pub(super) fn scale_term(&self, deviance: f64) -> f64 {
        if matches!(
            self.family.dist,
            Distribution::Gamma | Distribution::InverseGaussian | Distribution::NegativeBinomial(_)
        ) {
            let mu = self.mu();
            self.family
                .dist
                .aic_minus_deviance(&self.y, &mu, &self.prior, deviance)
        } else {
            0.0
        }
    }

    /// `Err` once step halving has run past its limit without reducing the
    /// penalized deviance `pdev` (both PIRLS loops).
    pub(super) fn check_halvings(&self, halvings: usize, pdev: f64) -> Result<()> {
        if halvings > self.max_halvings {
            return Err(CoreError::Pirls(format!(
                "step halving failed to reduce the penalized deviance ({pdev}) after \
                 {halvings} halvings"
            )));
        }
        Ok(())
    }

    pub(super) fn not_converged(&self, with_beta: bool, pdev: f64) -> CoreError {
        let hint = if with_beta {
            "; with β inside PIRLS (nAGQ = 0, the fit's first stage) this happens when the \
             fixed effects separate the responses (complete separation: estimates diverge)"
        } else {
            ""
        };
        CoreError::Pirls(format!(
            "PIRLS did not converge in {} iterations (penalized deviance {pdev}){hint}",
            self.max_iter
        ))
    }

    /// Xβ.
    pub(super) fn linear_predictor_x(&self, beta: &[f64]) -> Vec<f64> {
        let mut xb = vec![0.0; self.n()];
        self.x_mul(beta, &mut xb);
        xb
    }

    /// out = Xβ.
    pub(super) fn x_mul(&self, beta: &[f64], xb: &mut [f64]) {
        let (n, x) = (self.n(), self.ws.rows().x());
        xb.fill(0.0);
        for (j, &bj) in beta.iter().enumerate() {
            if bj != 0.0 {
                for (e, &xv) in xb.iter_mut().zip(&x[j * n..(j + 1) * n]) {
                    *e += xv * bj;
                }
            }
        }
    }
}
