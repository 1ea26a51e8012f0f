//! Adaptive Gauss-Hermite quadrature (nAGQ > 1) for a model with a single
//! random-effects term of up to [`MAX_EFFECTS`] effects per level: lme4's
//! `glmerAGQ` for a scalar term and, beyond lme4, the glmm package's
//! tensor-product rule for a vector term.
//!
//! With one term the levels are independent: u = (u₁, …, u_J), uⱼ ~ N(0, I_k),
//! and the likelihood is a product of k-dimensional integrals. Per level,
//! with the conditional deviance `devcⱼ(u) = ‖uⱼ‖² + Σ_{i in j} dᵢ(u)`,
//!
//! ```text
//! Lⱼ = ∫ exp(−devcⱼ(u)/2) (2π)^(−k/2) du   (up to the family's constant)
//! ```
//!
//! The rule is adapted to the level's conditional mode ûⱼ and to Lⱼ, the
//! lower Cholesky factor of the level's k x k block of
//! `ΛᵀZᵀW(û)ZΛ + I = LLᵀ` (block diagonal for one term): u = ûⱼ + Lⱼ⁻ᵀz,
//! du = det(Lⱼ)⁻¹ dz, so with the tensor product of the one-dimensional
//! Gauss-Hermite rule of the standard normal density (nodes z_t, weights
//! w_t = Π_d w_{t_d}, Σ w_t = 1; nagq^k nodes per level)
//!
//! ```text
//! multⱼ = Σ_t w_t exp(−(devcⱼ(ûⱼ + Lⱼ⁻ᵀz_t) − devcⱼ(ûⱼ))/2 + ‖z_t‖²/2)
//! −2 log L = Σⱼ devcⱼ(û) + log det(LLᵀ) − 2 Σⱼ log multⱼ
//! ```
//!
//! without the likelihood's constant (lme4's convention for nAGQ > 1). With
//! one node (z = 0, w = 1) multⱼ = 1 and the value is the Laplace
//! approximation. For k = 1 this is lme4's rule (`sdⱼ = 1/Lⱼⱼ`). The
//! glmm package (0.6.2) adapts its product rule the same way (ûⱼ and
//! Lⱼ⁻ᵀ, Lⱼ the Cholesky factor of the level's block in the order of the
//! term's columns), so both give the same value at the same (θ, β) and
//! nagq.

use rayon::prelude::*;

use super::{Glmm, Pirls};
use crate::core::error::{check_len, CoreError, Result};
use crate::core::family::Family;
use crate::core::small::{chol_lower, sandwich, solve_lt, t_mul};

/// The most random effects per level quadrature takes (the rule has nagq^k
/// nodes per level).
pub const MAX_EFFECTS: usize = 3;
/// The most nodes per level (nagq^k): 25² (a two-effect term up to nagq =
/// 25) and 15³ (three effects up to nagq = 15).
pub const MAX_NODES: usize = 3375;

/// Levels × nodes × rows below which the levels run on one thread.
const PARALLEL_WORK: usize = 1 << 16;

/// The tensor-product rule: per node its k coordinates, weight and ‖z‖²/2.
struct Rule {
    k: usize,
    z: Vec<f64>,
    w: Vec<f64>,
    half_sq: Vec<f64>,
}

impl Rule {
    fn new(nodes: &[f64], weights: &[f64], k: usize) -> Self {
        let m = nodes.len();
        let count = m.pow(k as u32);
        let mut rule = Rule {
            k,
            z: Vec::with_capacity(count * k),
            w: Vec::with_capacity(count),
            half_sq: Vec::with_capacity(count),
        };
        for t in 0..count {
            // the first coordinate varies slowest
            let (mut rest, mut w, mut sq) = (t, 1.0, 0.0);
            let start = rule.z.len();
            rule.z.resize(start + k, 0.0);
            for d in (0..k).rev() {
                let (zd, wd) = (nodes[rest % m], weights[rest % m]);
                rest /= m;
                rule.z[start + d] = zd;
                w *= wd;
                sq += zd * zd;
            }
            rule.w.push(w);
            rule.half_sq.push(0.5 * sq);
        }
        rule
    }
}

/// What one level's integral needs: the rows, η and the modes of the
/// evaluation, and the term.
struct Level<'a> {
    family: Family,
    y: &'a [f64],
    prior: &'a [f64],
    eta: &'a [f64],
    u: &'a [f64],
    z: &'a [f64],
    template: &'a [f64],
    start: &'a [usize],
    rows: &'a [u32],
}

impl Level<'_> {
    /// devcⱼ(ûⱼ) and multⱼ of level j.
    fn integral(&self, j: usize, rule: &Rule) -> Result<(f64, f64)> {
        let (fam, k) = (self.family, rule.k);
        let rows = &self.rows[self.start[j]..self.start[j + 1]];
        let uj = &self.u[j * k..(j + 1) * k];
        // ZⱼᵀWZⱼ at the modes and the conditional deviance there
        let mut h = [0.0; MAX_EFFECTS * MAX_EFFECTS];
        let mut devc0: f64 = uj.iter().map(|v| v * v).sum();
        for &i in rows {
            let i = i as usize;
            let (e, zi) = (self.eta[i], &self.z[i * k..(i + 1) * k]);
            let (mu, d) = (fam.link.inv(e), fam.link.mu_eta(e));
            let w = self.prior[i] * d * d / fam.dist.variance(mu);
            for c in 0..k {
                for r in 0..k {
                    h[r + c * k] += w * zi[r] * zi[c];
                }
            }
            devc0 += fam.dist.dev_resid(self.y[i], mu, self.prior[i]);
        }
        // Lⱼ: the Cholesky factor of TᵀZⱼᵀWZⱼT + I
        let (mut tmp, mut l) = (
            [0.0; MAX_EFFECTS * MAX_EFFECTS],
            [0.0; MAX_EFFECTS * MAX_EFFECTS],
        );
        let t = self.template;
        sandwich(t, k, &h, t, k, 1.0, &mut tmp, &mut l);
        if !chol_lower(&mut l, k) {
            return Err(CoreError::Pirls(format!(
                "the conditional precision of level {j} is not positive definite"
            )));
        }
        let mut mult = 0.0;
        for (node, (&wt, &half_sq)) in rule.w.iter().zip(&rule.half_sq).enumerate() {
            let z = &rule.z[node * k..(node + 1) * k];
            if half_sq == 0.0 {
                mult += wt; // the node at the mode
                continue;
            }
            // the node's u − ûⱼ = Lⱼ⁻ᵀz and b − b̂ⱼ = T(u − ûⱼ)
            let mut v = [0.0; MAX_EFFECTS];
            v[..k].copy_from_slice(z);
            solve_lt(&l, k, &mut v, 1);
            let mut db = v;
            t_mul(t, k, &mut db[..k]);
            let mut devc: f64 = (0..k).map(|r| (uj[r] + v[r]) * (uj[r] + v[r])).sum();
            for &i in rows {
                let i = i as usize;
                let zi = &self.z[i * k..(i + 1) * k];
                let e = self.eta[i] + (0..k).map(|r| zi[r] * db[r]).sum::<f64>();
                devc += fam
                    .dist
                    .dev_resid(self.y[i], fam.link.inv(e), self.prior[i]);
            }
            mult += wt * (-0.5 * (devc - devc0) + half_sq).exp();
        }
        Ok((devc0, mult))
    }
}

impl Glmm {
    /// Adaptive Gauss-Hermite quadrature at (θ, β) for a model with a single
    /// random-effects term of at most [`MAX_EFFECTS`] effects per level
    /// (module docs): PIRLS for the modes, then per level the product rule
    /// of `nodes` and `weights` (the one-dimensional Gauss-Hermite rule of
    /// the standard normal density, Σ weights = 1), at most [`MAX_NODES`]
    /// nodes per level. Returns −2 log L without the likelihood's constant,
    /// as lme4, and PIRLS's record.
    pub fn agq(
        &mut self,
        theta: &[f64],
        beta: &[f64],
        nodes: &[f64],
        weights: &[f64],
    ) -> Result<(f64, Pirls)> {
        check_len("the quadrature weights", weights.len(), nodes.len())?;
        let tt = self.ws.terms().terms();
        if tt.len() != 1 || tt[0].k > MAX_EFFECTS {
            return Err(CoreError::Dimension(format!(
                "adaptive Gauss-Hermite quadrature needs a single random-effects term \
                 with at most {MAX_EFFECTS} effects per level"
            )));
        }
        let k = tt[0].k;
        let count = (nodes.len() as f64).powi(k as i32);
        if nodes.is_empty() || count > MAX_NODES as f64 {
            return Err(CoreError::Dimension(format!(
                "adaptive Gauss-Hermite quadrature takes at most {MAX_NODES} nodes per level \
                 (and at least one); {} nodes for {k} effects make {count}",
                nodes.len()
            )));
        }
        let run = self.laplace(theta, beta)?;
        let rule = Rule::new(nodes, weights, k);
        let (start, rows) = self.ws.terms().rows_by_level(0);
        let term = &self.ws.terms().terms()[0];
        let level = Level {
            family: self.family,
            y: &self.y,
            prior: &self.prior,
            eta: &self.eta,
            u: &self.u,
            z: &term.z,
            template: &self.templates[0],
            start: &start,
            rows: &rows,
        };
        let n_levels = term.n_levels;
        let per_level: Vec<(f64, f64)> = if rule.w.len() * self.n() < PARALLEL_WORK {
            (0..n_levels)
                .map(|j| level.integral(j, &rule))
                .collect::<Result<_>>()?
        } else {
            (0..n_levels)
                .into_par_iter()
                .map(|j| level.integral(j, &rule))
                .collect::<Result<_>>()?
        };
        let devc0: f64 = per_level.iter().map(|p| p.0).sum();
        let log_mult: f64 = per_level.iter().map(|p| p.1.ln()).sum();
        Ok((devc0 + run.ld_l2 - 2.0 * log_mult, run))
    }
}
