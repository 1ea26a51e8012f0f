//! The generalized linear mixed model: PIRLS and the Laplace approximation
//! (lme4's `glmerLaplace` / `pwrssUpdate`).
//!
//! # The model
//!
//! ```text
//! η = Xβ + ZΛ(θ)u + o,   μ = g⁻¹(η),   u ~ N(0, I),   y | u ~ family(μ)
//! ```
//!
//! For given θ (and β), the conditional modes û minimize the penalized
//! deviance `Σ dᵢ(yᵢ, μᵢ) + ‖u‖²` (dᵢ the deviance residuals, with the prior
//! weights). PIRLS finds them by Fisher scoring: at the current η, with
//! working weights `wᵢ = priorᵢ (dμ/dη)²/V(μ)` and working response
//! `zᵢ = ηᵢ − oᵢ + (yᵢ − μᵢ)/(dμ/dη)`, the next u solves the penalized
//! weighted least-squares problem `min ‖√W(z − Xβ − ZΛu)‖² + ‖u‖²` — the
//! linear model's PLS problem with the working weights and response, so each
//! step refills A in its kept patterns ([`Workspace::set_weights_response`])
//! and refactors L numerically (the symbolic analysis is reused). A step that
//! does not lower the penalized deviance is halved.
//!
//! In the fast mode (lme4's `nAGQ = 0`) β is a PIRLS unknown too: the next
//! (β, u) is the PLS solution of the same weighted problem.
//!
//! The Laplace approximation of −2 log L at (θ, β) is then
//!
//! ```text
//! Σ dᵢ(û) + ‖û‖² + log det(LLᵀ),   LLᵀ = ΛᵀZᵀW(û)ZΛ + I
//! ```
//!
//! up to the likelihood's constant (independent of μ: added by the caller,
//! where lme4 reports −2 log L with it). PIRLS runs to convergence (the step
//! in u, and β, below `tol` relative to 1 + |value|), far tighter than lme4's
//! default, so the objective is a smooth function of (θ, β) down to rounding.
//! Each evaluation starts from the last evaluation's modes.
//!
//! With a single random-effects term (a scalar one as lme4, or up to three
//! effects per level as the glmm package), [`Glmm::agq`] (`agq.rs`) replaces
//! the Laplace approximation by adaptive Gauss-Hermite quadrature (lme4's
//! `glmerAGQ`, nAGQ > 1). Families with a dispersion or a shape (Gamma,
//! negative binomial) add lme4's μ-dependent part of −2 log L
//! ([`Pirls::scale_term`]).

use super::crossprod::RowData;
use super::error::{check_finite, check_len, CoreError, Result};
use super::family::{Distribution, Family};
use super::terms::ReTerm;
use super::workspace::Workspace;
use super::FactorKind;

mod agq;
mod fused;
mod grad;
mod grad_scalar;
mod helpers;
mod hessian;
mod minv;
mod pirls_scalar;
mod predict;
mod row_pass;
mod vmath;

use fused::ScalarRows;
use helpers::Memo;
pub use hessian::Hessian;

/// What one PIRLS run found.
#[derive(Clone, Debug, Default)]
pub struct Pirls {
    /// Σ dᵢ at the modes: the conditional deviance.
    pub deviance: f64,
    /// ‖û‖².
    pub sqr_u: f64,
    /// log det(LLᵀ) at the converged working weights.
    pub ld_l2: f64,
    /// PIRLS iterations (factorizations) and step halvings.
    pub iterations: usize,
    pub halvings: usize,
    /// lme4's `aic(μ)` − Σ dᵢ where it depends on μ (Gamma's dispersion
    /// term; 0 for binomial and Poisson).
    pub scale_term: f64,
}

impl Pirls {
    /// Σ dᵢ + ‖û‖² + log det(LLᵀ) + the scale term: −2 log L (Laplace)
    /// without the constant.
    pub fn laplace(&self) -> f64 {
        self.deviance + self.sqr_u + self.ld_l2 + self.scale_term
    }
}

/// A GLMM: its rows, family, the PLS workspace PIRLS runs on, and the modes
/// of the last evaluation.
#[derive(Clone)]
pub struct Glmm {
    ws: Workspace,
    family: Family,
    y: Vec<f64>,
    prior: Vec<f64>,
    offset: Vec<f64>,
    /// The linear predictor PIRLS starts from in the fast mode when it has
    /// no β yet (g(μ₀) of the family's starting means).
    eta_start: Vec<f64>,
    templates: Vec<Vec<f64>>,
    /// θ of the last evaluation (empty before the first).
    theta: Vec<f64>,
    /// The modes (and, in the fast mode, β) of the last evaluation.
    u: Vec<f64>,
    beta: Vec<f64>,
    have_beta: bool,
    /// η at the last evaluation's modes.
    eta: Vec<f64>,
    /// Xβ at the fixed β of the current evaluation (PIRLS on u).
    xb: Vec<f64>,
    /// Whether A's X blocks are stale (PIRLS on u leaves them so).
    x_stale: bool,
    /// Whether the last evaluation had β inside PIRLS (nAGQ = 0).
    fast: bool,
    /// Per row, the offsets of its blocks in A21's layout (`minv::row_slots`),
    /// found at the first gradient.
    slots: Option<Vec<usize>>,
    /// The rows of one or two scalar terms, for the one-pass PIRLS step
    /// (`fused.rs`; None for other models).
    scalar: Option<Box<ScalarRows>>,
    /// The last evaluation's point and record (`helpers.rs`).
    memo: Option<Memo>,
    /// Convergence tolerance on the PIRLS step; iteration and halving caps.
    pub tol: f64,
    pub max_iter: usize,
    pub max_halvings: usize,
}

/// PIRLS steps (relative) below this are taken whole, without the check
/// that the penalized deviance does not rise.
const SMALL_STEP: f64 = 1e-6;
/// A step below this that is no smaller than the smallest so far is taken as
/// convergence down to rounding (steps that still shrink, however slowly, go on).
const ROUNDING_STEP: f64 = 1e-7;

/// The tolerance on PIRLS's step with β inside PIRLS (nAGQ = 0).
const FAST_MODE_TOL: f64 = 1e-10;

/// The largest |δᵢ| / (1 + |xᵢ|).
fn rel_step(x: &[f64], x_new: &[f64]) -> f64 {
    x.iter()
        .zip(x_new)
        .map(|(a, b)| (b - a).abs() / (1.0 + a.abs()))
        .fold(0.0, f64::max)
}

impl Glmm {
    /// A GLMM over the rows: X (n x p, column-major), the response (binomial:
    /// proportions), prior weights (binomial: the numbers of trials), an
    /// offset, the random-effects terms, the family and η₀.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        p: usize,
        x: Vec<f64>,
        y: Vec<f64>,
        prior: Option<Vec<f64>>,
        offset: Option<Vec<f64>>,
        terms: Vec<ReTerm>,
        family: Family,
        eta_start: Vec<f64>,
    ) -> Result<Self> {
        check_len("y", y.len(), n)?;
        check_finite("y", &y)?;
        check_len("the starting linear predictor", eta_start.len(), n)?;
        check_finite("the starting linear predictor", &eta_start)?;
        let prior = prior.unwrap_or_else(|| vec![1.0; n]);
        let offset = offset.unwrap_or_else(|| vec![0.0; n]);
        check_len("the offset", offset.len(), n)?;
        check_finite("the offset", &offset)?;
        // the rows check X and the weights (positive, finite)
        let rows = RowData::new(n, p, x, y.clone(), Some(prior.clone()), None)?;
        let ws = Workspace::build(rows, terms, FactorKind::Auto)?;
        let q = ws.q();
        let mut scalar = ScalarRows::new(&ws).map(Box::new);
        if let (Some(sr), true) = (scalar.as_mut(), grad::canonical_mu(family).is_some()) {
            sr.mu = vec![0.0; n];
        }
        Ok(Self {
            scalar,
            templates: ws.terms().zero_templates(),
            theta: Vec::new(),
            ws,
            family,
            y,
            prior,
            offset,
            eta_start,
            u: vec![0.0; q],
            beta: vec![0.0; p],
            have_beta: false,
            eta: vec![0.0; n],
            xb: vec![0.0; n],
            x_stale: false,
            fast: false,
            slots: None,
            memo: None,
            tol: 1e-12,
            max_iter: 300,
            max_halvings: 30,
        })
    }

    pub fn workspace(&self) -> &Workspace {
        &self.ws
    }
    pub fn family(&self) -> Family {
        self.family
    }
    pub fn n(&self) -> usize {
        self.ws.n()
    }
    pub fn p(&self) -> usize {
        self.ws.p()
    }
    pub fn q(&self) -> usize {
        self.ws.q()
    }
    pub fn y(&self) -> &[f64] {
        &self.y
    }
    pub fn prior_weights(&self) -> &[f64] {
        &self.prior
    }
    /// The modes û of the last evaluation.
    pub fn u(&self) -> &[f64] {
        &self.u
    }
    /// β of the last evaluation (given, or PIRLS's in the fast mode).
    pub fn beta(&self) -> &[f64] {
        &self.beta
    }
    /// η at the last evaluation's modes (offset included).
    pub fn eta(&self) -> &[f64] {
        &self.eta
    }
    /// μ = g⁻¹(η) at the last evaluation's modes.
    pub fn mu(&self) -> Vec<f64> {
        self.eta.iter().map(|&e| self.family.link.inv(e)).collect()
    }
    /// b = Λ(θ)û at the last evaluation.
    pub fn b(&self) -> Vec<f64> {
        let mut b = self.u.clone();
        self.ws.terms().lambda_mul(&self.templates, &mut b);
        b
    }

    /// RX at the last evaluation: the fixed effects' factor of the PLS
    /// system at the converged working weights (RXᵀRX is the Fisher
    /// information of β given the modes, as lme4's `RX`).
    pub fn rx(&mut self) -> Result<Vec<f64>> {
        self.at_last()?;
        Ok(self.ws.rx())
    }

    /// The conditional covariances of b at the last evaluation: per term,
    /// n_levels blocks Λ(ΛᵀZᵀWZΛ + I)⁻¹Λᵀ (k x k each, lme4's condVar).
    pub fn cond_var_blocks(&mut self) -> Result<Vec<Vec<f64>>> {
        self.at_last()?;
        self.ws.cond_var_blocks()
    }

    /// Forms R at the last evaluation's θ and working weights.
    fn at_last(&mut self) -> Result<()> {
        if self.theta.is_empty() {
            return Err(CoreError::NotEvaluated);
        }
        if self.x_stale && !self.fused_refill_x()? {
            // A's X blocks, at the working weights of the modes (PIRLS's last step)
            let eta = self.eta.clone();
            let (w, z) = self.working_vectors(&eta)?;
            self.ws.set_weights_response(w, z, true)?;
            self.x_stale = false;
        }
        let theta = self.theta.clone();
        self.ws.update(&theta).map(|_| ())
    }

    /// Changes the negative binomial shape (the model must be negative
    /// binomial); the modes are kept as the next evaluation's start.
    pub fn set_shape(&mut self, shape: f64) -> Result<()> {
        match self.family.dist {
            Distribution::NegativeBinomial(_) => {
                self.family.dist = Distribution::negative_binomial(shape)?;
                self.memo = None;
                Ok(())
            }
            _ => Err(CoreError::Dimension(
                "only a negative binomial model has a shape".into(),
            )),
        }
    }

    /// Forgets the modes: the next evaluation starts from u = 0 (and, in the
    /// fast mode, from η₀).
    pub fn reset(&mut self) {
        self.u.fill(0.0);
        self.have_beta = false;
        self.memo = None;
    }

    /// Xβ + ZΛu + o at the current templates.
    fn linear_predictor(&self, beta: &[f64], u: &[f64], with_beta: bool) -> Vec<f64> {
        let mut b = u.to_vec();
        self.ws.terms().lambda_mul(&self.templates, &mut b);
        // β fixed: Xβ was formed once for the evaluation
        let mut eta = if with_beta {
            self.linear_predictor_x(beta)
        } else {
            self.xb.clone()
        };
        eta.iter_mut().zip(&self.offset).for_each(|(e, o)| *e += o);
        self.ws.terms().z_mul_add(&b, None, &mut eta);
        eta
    }

    /// The penalized deviance Σ dᵢ + ‖u‖² at η and u.
    fn penalized_deviance(&self, eta: &[f64], u: &[f64]) -> f64 {
        self.family.deviance(eta, &self.y, &self.prior) + u.iter().map(|v| v * v).sum::<f64>()
    }

    /// Sets the working weights and response at η and refactors at θ.
    /// Returns log det(LLᵀ) (and, with `with_beta`, forms R for β̂).
    fn working_step(&mut self, theta: &[f64], eta: &[f64], with_beta: bool) -> Result<f64> {
        let (w, mut z) = self.working_vectors(eta)?;
        if with_beta {
            self.ws.set_weights_response(w, z, true)?;
            self.x_stale = false;
            Ok(self.ws.update(theta)?.ld_l2)
        } else {
            // β fixed: the response without Xβ, and A without its X blocks
            for (zi, xb) in z.iter_mut().zip(&self.xb) {
                *zi -= xb;
            }
            self.ws.set_weights_response(w, z, false)?;
            self.x_stale = true;
            self.ws.refactor_at(theta)
        }
    }

    /// The working weights and response (offset taken out) at η, checked.
    fn working_vectors(&self, eta: &[f64]) -> Result<(Vec<f64>, Vec<f64>)> {
        let n = self.n();
        let (mut w, mut z) = (vec![0.0; n], vec![0.0; n]);
        self.family
            .working(eta, &self.y, &self.prior, &mut w, &mut z);
        for i in 0..n {
            z[i] += eta[i] - self.offset[i];
        }
        if let Some(i) = w.iter().position(|&v| !(v > 0.0 && v.is_finite())) {
            return Err(CoreError::Pirls(format!(
                "the working weight of observation {i} is {} (η = {}): PIRLS cannot continue",
                w[i], eta[i]
            )));
        }
        if let Some(i) = z.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Pirls(format!(
                "the working response of observation {i} is not finite (η = {})",
                eta[i]
            )));
        }
        Ok((w, z))
    }

    /// The Laplace approximation at (θ, β): PIRLS on u with β fixed.
    pub fn laplace(&mut self, theta: &[f64], beta: &[f64]) -> Result<Pirls> {
        check_len("beta", beta.len(), self.p())?;
        if let Some(j) = beta.iter().position(|b| !b.is_finite()) {
            return Err(CoreError::NonFinite {
                what: "beta".into(),
                index: j,
            });
        }
        if let Some(out) = self.recall(theta, Some(beta)) {
            return Ok(out);
        }
        self.beta.copy_from_slice(beta);
        self.have_beta = false;
        let mut xb = std::mem::take(&mut self.xb);
        self.x_mul(beta, &mut xb);
        self.xb = xb;
        self.run(theta, false)
    }

    /// The fast mode (nAGQ = 0) at θ: PIRLS on β and u together. β̂ is
    /// `beta()` afterwards.
    pub fn laplace_beta(&mut self, theta: &[f64]) -> Result<Pirls> {
        if let Some(out) = self.recall(theta, None) {
            return Ok(out);
        }
        self.run(theta, true)
    }

    fn run(&mut self, theta: &[f64], with_beta: bool) -> Result<Pirls> {
        let before = self.predict_start(theta, with_beta);
        let mut out = self.run_pirls(theta, with_beta);
        if let (Err(_), Some((u, beta))) = (&out, before) {
            // from the last modes as they were
            (self.u, self.beta) = (u, beta);
            out = self.run_pirls(theta, with_beta);
        }
        self.remember(theta, with_beta, &out);
        out
    }

    fn run_pirls(&mut self, theta: &[f64], with_beta: bool) -> Result<Pirls> {
        self.ws.terms().set_templates(theta, &mut self.templates)?;
        self.theta = theta.to_vec();
        self.fast = with_beta;
        let first = self.pirls(theta, with_beta);
        match first {
            Err(CoreError::Pirls(_)) if self.u.iter().any(|&v| v != 0.0) || self.have_beta => {
                // a warm start from far away can fail: start afresh once
                self.reset();
                self.pirls(theta, with_beta)
            }
            other => other,
        }
    }

    fn pirls(&mut self, theta: &[f64], with_beta: bool) -> Result<Pirls> {
        if let Some(mut sr) = self.scalar.take() {
            let out = self.pirls_scalar(&mut sr, theta, with_beta);
            self.scalar = Some(sr);
            return out;
        }
        let mut out = Pirls::default();
        if with_beta && !self.have_beta {
            // the first step from the family's starting means
            let eta0 = self.eta_start.clone();
            self.working_step(theta, &eta0, true)?;
            out.iterations += 1;
            let (b, u) = self.ws.beta_u();
            self.beta = b;
            self.u = u;
            self.have_beta = true;
        }
        let mut beta = self.beta.clone();
        let mut u = self.u.clone();
        let mut eta = self.linear_predictor(&beta, &u, with_beta);
        let mut pdev = self.penalized_deviance(&eta, &u);
        if !pdev.is_finite() {
            return Err(CoreError::Pirls(format!(
                "the penalized deviance is not finite at the start ({pdev})"
            )));
        }
        let mut min_step = f64::INFINITY;
        let tol = self.pirls_tol(with_beta);
        for _ in 0..self.max_iter {
            let ld_l2 = self.working_step(theta, &eta, with_beta)?;
            out.iterations += 1;
            let (beta_new, u_new) = if with_beta {
                self.ws.beta_u()
            } else {
                (beta.clone(), self.ws.u_of_response())
            };
            let step = rel_step(&u, &u_new).max(rel_step(&beta, &beta_new));
            // converged, or down to rounding (a tiny step that no longer shrinks)
            if step < tol || (step < ROUNDING_STEP && step >= min_step) {
                // L is at the working weights of (β, u)
                out.deviance = self.family.deviance(&eta, &self.y, &self.prior);
                self.eta = eta;
                out.scale_term = self.scale_term(out.deviance);
                out.sqr_u = u.iter().map(|v| v * v).sum();
                out.ld_l2 = ld_l2;
                self.u = u;
                self.beta = beta;
                return Ok(out);
            }
            min_step = min_step.min(step);
            // the step, halved until the penalized deviance does not rise; a
            // step below `SMALL_STEP` is taken whole (the penalized deviance,
            // flat to second order, cannot tell such steps apart)
            let (du, db): (Vec<f64>, Vec<f64>) = (
                u_new.iter().zip(&u).map(|(a, b)| a - b).collect(),
                beta_new.iter().zip(&beta).map(|(a, b)| a - b).collect(),
            );
            let mut s = 1.0;
            let mut halvings = 0;
            loop {
                let uc: Vec<f64> = u.iter().zip(&du).map(|(a, d)| a + s * d).collect();
                let bc: Vec<f64> = if with_beta {
                    beta.iter().zip(&db).map(|(a, d)| a + s * d).collect()
                } else {
                    beta.clone()
                };
                let ec = self.linear_predictor(&bc, &uc, with_beta);
                let pc = self.penalized_deviance(&ec, &uc);
                if pc <= pdev || (step < SMALL_STEP && pc.is_finite()) {
                    u = uc;
                    beta = bc;
                    eta = ec;
                    pdev = pc;
                    break;
                }
                halvings += 1;
                out.halvings += 1;
                self.check_halvings(halvings, pdev)?;
                s *= 0.5;
            }
        }
        Err(self.not_converged(with_beta, pdev))
    }
}
