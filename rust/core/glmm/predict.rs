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
//! one iteration fewer per evaluation, typically. (A change of β, with β
//! given, is not predicted: its term needs ZᵀWX, which PIRLS on u does not
//! form.)

use faer::MatMut;

use super::Glmm;
use crate::core::error::Result;

/// The largest relative change of a θ element that is predicted.
const MAX_CHANGE: f64 = 1.0;

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
        if !any {
            return None;
        }
        let (hu, hb) = if with_beta {
            self.joint_solve(&v, &vec![0.0; p])
        } else {
            let mut h = v.clone();
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
            *u += 2.0 * h - vl;
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
