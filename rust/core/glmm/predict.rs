//! The next evaluation's start, predicted from the last one's modes (scalar
//! terms, canonical links).
//!
//! For scalar terms Λ = diag(θₖ Iₖ) (Iₖ: term k's block), so ∂Λ/∂θₖ = Iₖ =
//! Λ Iₖ/θₖ. At the modes ΛᵀZᵀD'/2 + u = 0 (D' = ∂d/∂η), hence term k's
//! block of ZᵀD'/2 is −Iₖu/θₖ, and with vₖ = Iₖu/θₖ and H the Hessian of
//! P/2 in the modes (M = ΛᵀZᵀWZΛ + I, or with β inside PIRLS the whole PLS
//! system, Fisher scoring being Newton's method for a canonical link):
//!
//! ```text
//! ∂(∇P/2)/∂θₖ = [ΛₖᵀZᵀD'/2 + ΛᵀZᵀWZΛₖu ; XᵀWZΛₖu] = H [vₖ; 0] − 2 [vₖ; 0]
//! ∂(u, β)/∂θₖ = −H⁻¹ ∂(∇P/2)/∂θₖ = 2 H⁻¹[vₖ; 0] − [vₖ; 0]
//! ```
//!
//! So one solve with the last factorization moves the modes to first order
//! in the change of θ, and PIRLS starts off by O(Δθ²) rather than O(Δθ):
//! one iteration fewer per evaluation, typically. A change of β, with β
//! given, moves the modes by ∂u/∂β Δβ = −M⁻¹ΛᵀZᵀWX Δβ: for scalar terms
//! (whose passes keep μ at the modes, hence W) one more pass over the rows
//! forms ΛᵀZᵀW(XΔβ), and the same solve takes both (the fit's second
//! stage, where θ and β move together).

use faer::MatMut;

use super::fused::ScalarRows;
use super::{grad, Glmm};
use crate::core::error::Result;

/// The largest relative change of a θ element that is predicted.
const MAX_CHANGE: f64 = 1.0;
/// The largest change of Xβ in a row (β given) that is predicted: beyond
/// it the first-order move of the modes can overshoot far enough (a Poisson
/// model's weights e^η) that PIRLS fails where the last modes would not.
const MAX_ETA_CHANGE: f64 = 0.1;

impl Glmm {
    /// Moves the modes (and β inside PIRLS) along their derivative in θ
    /// from the last evaluation to θ, and returns them as they were; nothing
    /// unless the last evaluation's factorization is in place (its record is
    /// remembered) in the same mode, the terms are scalar, the link canonical
    /// and no θ changes by more than `MAX_CHANGE` of itself.
    pub(super) fn predict_start(
        &mut self,
        theta: &[f64],
        with_beta: bool,
    ) -> Option<(Vec<f64>, Vec<f64>)> {
        let memo = self.memo.as_ref()?;
        if memo.given_beta() == with_beta || !self.has_gradient() {
            return None;
        }
        let terms = self.ws.terms();
        if terms.terms().iter().any(|t| t.k != 1) || theta.len() != terms.terms().len() {
            return None;
        }
        let (p, q) = (self.p(), self.q());
        let mut v = vec![0.0; q];
        let mut any = false;
        for (t, lay) in terms.layout().iter().enumerate() {
            let (old, new) = (memo.theta()[t], theta[t]);
            if old > 0.0 && new != old {
                let r = (new - old) / old;
                if !(r.abs() <= MAX_CHANGE) {
                    return None;
                }
                for l in lay.offset..lay.offset + lay.n_levels {
                    v[l] = r * self.u[l];
                }
                any = true;
            }
        }
        // β given and changed: its term −ΛᵀZᵀWX Δβ, with W at the last modes (scalar rows)
        let s_beta = match (
            memo.beta(),
            with_beta,
            self.scalar.as_deref(),
            grad::canonical_mu(self.family),
        ) {
            (Some(old), false, Some(sr), Some(derivs)) if old != self.beta.as_slice() => {
                let d: Vec<f64> = self.beta.iter().zip(old).map(|(a, b)| a - b).collect();
                self.ztwx(sr, &d, |mu, y, wt| derivs(mu, y, wt).1)
            }
            _ => None,
        };
        if !any && s_beta.is_none() {
            return None;
        }
        let (hu, hb) = if with_beta {
            let (hu, hb) = self.joint_solve(&v, &vec![0.0; p]);
            (hu.iter().map(|h| 2.0 * h).collect(), hb)
        } else {
            // M⁻¹(2v − ΛᵀZᵀWX Δβ)
            let mut h: Vec<f64> = v.iter().map(|vl| 2.0 * vl).collect();
            if let Some(s) = &s_beta {
                h.iter_mut().zip(s).for_each(|(a, b)| *a -= b);
            }
            self.ws
                .factor()
                .solve(MatMut::from_column_major_slice_mut(&mut h, q, 1));
            (h, vec![0.0; p])
        };
        if hu.iter().chain(&hb).any(|x| !x.is_finite()) {
            return None;
        }
        let before = (self.u.clone(), self.beta.clone());
        for ((u, h), vl) in self.u.iter_mut().zip(&hu).zip(&v) {
            *u += h - vl;
        }
        if with_beta && self.have_beta {
            for (b, h) in self.beta.iter_mut().zip(&hb) {
                *b += 2.0 * h;
            }
        }
        Some(before)
    }
}

impl Glmm {
    /// The derivative of the modes in (θ, β) at the last evaluation with β
    /// given (q x (n_θ + p), column-major): ∂u/∂θₖ = 2M⁻¹vₖ − vₖ as above
    /// (0 where θₖ = 0) and ∂u/∂βⱼ = −M⁻¹ΛᵀZᵀWXⱼ. None unless the terms are
    /// scalar, the link canonical and the last evaluation had β given.
    pub fn mode_jacobian(&mut self) -> Result<Option<Vec<f64>>> {
        let scalar = self.ws.terms().terms().iter().all(|t| t.k == 1);
        if !scalar || !self.has_gradient() || self.fast {
            return Ok(None);
        }
        // A's X blocks at the modes' working weights
        self.at_last()?;
        let (p, q) = (self.p(), self.q());
        let layout = self.ws.terms().layout().to_vec();
        let nt = layout.len();
        let mut jac = vec![0.0; q * (nt + p)];
        let ztx = self.ws.cross_products().ztxy();
        for (t, lay) in layout.iter().enumerate() {
            let th = self.theta[t];
            let col = &mut jac[t * q..(t + 1) * q];
            for l in lay.offset..lay.offset + lay.n_levels {
                if th > 0.0 {
                    col[l] = self.u[l] / th;
                }
            }
        }
        for j in 0..p {
            let col = &mut jac[(nt + j) * q..(nt + j + 1) * q];
            for (t, lay) in layout.iter().enumerate() {
                for l in lay.offset..lay.offset + lay.n_levels {
                    col[l] = -self.theta[t] * ztx[(l, j)];
                }
            }
        }
        let v: Vec<f64> = jac[..nt * q].to_vec();
        self.ws
            .factor()
            .solve(MatMut::from_column_major_slice_mut(&mut jac, q, nt + p));
        for (d, vl) in jac[..nt * q].iter_mut().zip(&v) {
            *d = 2.0 * *d - vl;
        }
        Ok(Some(jac))
    }
}

impl Glmm {
    /// ΛᵀZᵀW X d at the working weights of the last pass at the modes (μ
    /// kept, a canonical link: `w` from μ, y and the prior weight); None
    /// unless μ is kept and was at the modes, or when X d exceeds
    /// `MAX_ETA_CHANGE` in some row.
    fn ztwx(
        &self,
        sr: &ScalarRows,
        d: &[f64],
        w: impl Fn(f64, f64, f64) -> f64,
    ) -> Option<Vec<f64>> {
        let n = self.n();
        if !sr.mu_at_modes || sr.mu.len() != n {
            return None;
        }
        let p = d.len();
        let (xrow, ws) = (sr.xrow(), &self.ws);
        let terms = [Some(sr.first()), sr.other()]
            .map(|t| t.map(|t| (t.cols(ws), self.templates[t.term][0])));
        let mut out = vec![0.0; self.q()];
        for i in 0..n {
            let xd: f64 = xrow[i * p..(i + 1) * p]
                .iter()
                .zip(d)
                .map(|(a, b)| a * b)
                .sum();
            if !(xd.abs() <= MAX_ETA_CHANGE) {
                return None;
            }
            let t = w(sr.mu[i], self.y[i], self.prior[i]) * xd;
            for (c, lam) in terms.iter().flatten() {
                out[c.offset + c.codes[i] as usize] += lam * c.z[i] * t;
            }
        }
        Some(out)
    }
}
