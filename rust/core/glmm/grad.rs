//! The exact gradient of the Laplace objective, for canonical links
//! (binomial with the logit, Poisson with the log).
//!
//! With P(u) = Σ dᵢ(ηᵢ) + ‖u‖², û its minimizer (PIRLS) and
//! M = ΛᵀZᵀW(η̂)ZΛ + I, the objective is F = P(û) + log det M. For a
//! canonical link, Fisher scoring is Newton's method: the Hessian of P/2 in
//! u is M itself, and with Dᵢ' = ∂dᵢ/∂ηᵢ = −2 priorᵢ(yᵢ − μᵢ), the working
//! weights wᵢ and their derivatives wᵢ' = dwᵢ/dηᵢ, for any parameter φ:
//!
//! ```text
//! dF/dφ = ∂P/∂φ|û (the envelope theorem) + ∂ log det M/∂φ|W
//!         + Σᵢ wᵢ' hᵢ dη̂ᵢ/dφ,        hᵢ = z̃ᵢᵀ M⁻¹ z̃ᵢ,  z̃ᵢ = Λᵀzᵢ
//! dû/dφ = −M⁻¹ ∂(∇ᵤP/2)/∂φ
//! ```
//!
//! so that with a = w' ∘ h and one solve v = M⁻¹ΛᵀZᵀa (the adjoint), and
//! r = D' + a − w ∘ (ZΛv):
//!
//! ```text
//! ∂F/∂β = Xᵀr
//! ∂F/∂θₖ = rᵀ Z Λₖ û − ½ vᵀ Λₖᵀ ZᵀD' + 2 Σᵢ wᵢ (Λₖᵀzᵢ)ᵀ M⁻¹ z̃ᵢ
//! ```
//!
//! (Λₖ = ∂Λ/∂θₖ). h and the last sum need M⁻¹ on A_ZZ's pattern only
//! ([`MinvA`]). With β inside PIRLS (nAGQ = 0) the modes are (û, β̂), the
//! Hessian is the whole PLS system (L, RZX and RX), and the adjoint solves it:
//! then r = D' + a − w ∘ (ZΛv_u + Xv_β) and the gradient is in θ alone.

use faer::{Mat, MatMut};

use super::minv::{row_slots, MinvA};
use super::Glmm;
use crate::core::error::{CoreError, Result};
use crate::core::family::{Distribution, Family, Link};
use crate::core::small::tt_mul;

/// (η, y, prior weight) → (D', w, w') of one row.
pub(super) type RowDerivs = fn(f64, f64, f64) -> (f64, f64, f64);

/// Per row at η: (D', w, w') for a canonical link, None for the others.
fn canonical(fam: Family) -> Option<RowDerivs> {
    match (fam.dist, fam.link) {
        (Distribution::Binomial, Link::Logit) => Some(|eta, y, wt| {
            let (mu, d) = fam_logit(eta);
            let w = wt * d;
            (-2.0 * wt * (y - mu), w, w * (1.0 - 2.0 * mu))
        }),
        (Distribution::Poisson, Link::Log) => Some(|eta, y, wt| {
            let mu = Link::Log.inv(eta);
            (-2.0 * wt * (y - mu), wt * mu, wt * mu)
        }),
        _ => None,
    }
}

/// (D', w, w') of a logit row from μ (as `canonical`'s at μ = g⁻¹(η)).
#[inline(always)]
pub(super) fn logit_mu_derivs(mu: f64, y: f64, wt: f64) -> (f64, f64, f64) {
    let w = wt * (mu * (1.0 - mu)).max(f64::EPSILON);
    (-2.0 * wt * (y - mu), w, w * (1.0 - 2.0 * mu))
}

/// (D', w, w') of a Poisson-log row from μ.
#[inline(always)]
pub(super) fn poisson_mu_derivs(mu: f64, y: f64, wt: f64) -> (f64, f64, f64) {
    (-2.0 * wt * (y - mu), wt * mu, wt * mu)
}

/// Per row from μ: (D', w, w') for a canonical link, None for the others.
pub(super) fn canonical_mu(fam: Family) -> Option<RowDerivs> {
    match (fam.dist, fam.link) {
        (Distribution::Binomial, Link::Logit) => Some(logit_mu_derivs),
        (Distribution::Poisson, Link::Log) => Some(poisson_mu_derivs),
        _ => None,
    }
}

/// μ and dμ/dη of the logit link (lme4's clamps).
#[inline]
fn fam_logit(eta: f64) -> (f64, f64) {
    Link::Logit.inv_mu_eta(eta)
}

/// The position of each term in the block order: None for the first term,
/// the index in the rest otherwise.
fn rest_index(order: &crate::core::BlockOrder, n_terms: usize) -> Vec<Option<usize>> {
    let mut out = vec![None; n_terms];
    for (i, &t) in order.rest_terms().iter().enumerate() {
        out[t] = Some(i);
    }
    out
}

impl Glmm {
    /// Whether [`gradient`](Self::gradient) is available: a canonical link
    /// (binomial-logit, Poisson-log).
    pub fn has_gradient(&self) -> bool {
        canonical(self.family).is_some()
    }

    /// The gradient of the last evaluation's objective: in (θ, β) after
    /// [`laplace`](Self::laplace), in θ after
    /// [`laplace_beta`](Self::laplace_beta) (the nAGQ = 0 objective).
    pub fn gradient(&mut self) -> Result<Vec<f64>> {
        let derivs = canonical(self.family).ok_or_else(|| {
            CoreError::Dimension(format!(
                "the exact gradient needs a canonical link (binomial-logit, Poisson-log), \
                 not {:?}-{:?}",
                self.family.dist, self.family.link
            ))
        })?;
        if self.theta.is_empty() {
            return Err(CoreError::NotEvaluated);
        }
        if let Some(sr) = self.scalar.as_deref() {
            let g = self.gradient_scalar(sr, derivs);
            // β given, A's X blocks not refilled since PIRLS (`at_last`): the state a
            // Hessian's point is computed in (`hessian.rs`), so its base point
            if let (Some(m), false, true) = (self.memo.as_mut(), self.fast, self.x_stale) {
                m.grad = Some(g.clone());
            }
            return Ok(g);
        }
        if self.slots.is_none() {
            self.slots = Some(row_slots(&self.ws));
        }
        let slots = self.slots.as_deref().unwrap_or(&[]);
        let (n, p, q) = (self.n(), self.p(), self.q());
        let ws = &self.ws;
        let (terms, order) = (ws.terms(), ws.factor().order());
        let (tt, layout) = (terms.terms(), terms.layout());
        let minv = MinvA::new(ws);
        let ridx = rest_index(order, tt.len());
        let (block0, n_rest) = (order.block0(), order.rest_terms().len());
        let kf = order.kf();
        // per row: D', w, a = w' h; per term Σᵢ wᵢ zᵢ gᵢᵀ (k x k: [c + r k] = Σ w z[r] g[c])
        let (mut dp, mut w, mut a) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        let mut gsum: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let ktot: usize = tt.iter().map(|t| t.k).sum();
        let mut loc = vec![0usize; tt.len()];
        let mut acc = 0;
        for (t, term) in tt.iter().enumerate() {
            loc[t] = acc;
            acc += term.k;
        }
        let (mut zt, mut g) = (vec![0.0; ktot], vec![0.0; ktot]);
        for r in 0..n {
            let (d1, wi, wp) = derivs(self.eta[r], self.y[r], self.prior[r]);
            for (t, term) in tt.iter().enumerate() {
                let k = term.k;
                let dst = &mut zt[loc[t]..loc[t] + k];
                dst.copy_from_slice(&term.z[r * k..(r + 1) * k]);
                tt_mul(&self.templates[t], k, dst);
            }
            g.fill(0.0);
            for (t, term) in tt.iter().enumerate() {
                let (kt, ct) = (term.k, term.codes[r] as usize);
                for (s, other) in tt.iter().enumerate() {
                    let (ks, cs) = (other.k, other.codes[r] as usize);
                    for x in 0..kt {
                        let mut sum = 0.0;
                        for y in 0..ks {
                            let m = match (ridx[t], ridx[s]) {
                                (None, None) => minv.f_diag[ct * kf * kf + x + y * kf],
                                (Some(i), None) => minv.f_rest[slots[r * n_rest + i] + x + y * kt],
                                (None, Some(i)) => minv.f_rest[slots[r * n_rest + i] + y + x * ks],
                                (Some(i), Some(j)) if i == j => {
                                    minv.rest_diag[minv.rest_off[block0[i] + ct] + x + y * kt]
                                }
                                (Some(_), Some(_)) => minv.z22.as_ref().map_or(0.0, |z| {
                                    z.get(
                                        layout[t].offset + ct * kt + x,
                                        layout[s].offset + cs * ks + y,
                                    )
                                }),
                            };
                            sum += m * zt[loc[s] + y];
                        }
                        g[loc[t] + x] += sum;
                    }
                }
            }
            let h: f64 = zt.iter().zip(&g).map(|(a, b)| a * b).sum();
            dp[r] = d1;
            w[r] = wi;
            a[r] = wp * h;
            for (t, term) in tt.iter().enumerate() {
                let k = term.k;
                let z = &term.z[r * k..(r + 1) * k];
                let gs = &mut gsum[t];
                for (rr, &zr) in z.iter().enumerate() {
                    for c in 0..k {
                        gs[c + rr * k] += wi * zr * g[loc[t] + c];
                    }
                }
            }
        }
        // the adjoint: v = H⁻¹ [ΛᵀZᵀa; Xᵀa] (H = M, or the PLS system with β)
        let mut s = vec![0.0; q];
        terms.zt_mul_add(&a, None, &mut s);
        terms.lambdat_mul(&self.templates, &mut s);
        let x = ws.rows().x();
        let xt_mul = |v: &[f64]| -> Vec<f64> {
            (0..p)
                .map(|j| {
                    x[j * n..(j + 1) * n]
                        .iter()
                        .zip(v)
                        .map(|(a, b)| a * b)
                        .sum()
                })
                .collect()
        };
        let (v_u, v_b) = if self.fast {
            self.joint_solve(&s, &xt_mul(&a))
        } else {
            let mut v = s.clone();
            ws.factor()
                .solve(MatMut::from_column_major_slice_mut(&mut v, q, 1));
            (v, vec![0.0; p])
        };
        // ZΛv_u + Xv_β
        let mut lv = v_u.clone();
        terms.lambda_mul(&self.templates, &mut lv);
        let mut zlv = vec![0.0; n];
        terms.z_mul_add(&lv, None, &mut zlv);
        for (j, &bj) in v_b.iter().enumerate() {
            if bj != 0.0 {
                for (e, &xv) in zlv.iter_mut().zip(&x[j * n..(j + 1) * n]) {
                    *e += xv * bj;
                }
            }
        }
        let rv: Vec<f64> = (0..n).map(|i| dp[i] + a[i] - w[i] * zlv[i]).collect();
        let (mut ztr, mut ztd) = (vec![0.0; q], vec![0.0; q]);
        terms.zt_mul_add(&rv, None, &mut ztr);
        terms.zt_mul_add(&dp, None, &mut ztd);
        let mut grad = Vec::with_capacity(ws.n_theta() + p);
        for (lay, gs) in layout.iter().zip(&gsum) {
            let k = lay.k;
            for ci in 0..k {
                for ri in ci..k {
                    let mut sum = 2.0 * gs[ci + ri * k];
                    for l in 0..lay.n_levels {
                        let (rr, cc) = (lay.offset + l * k + ri, lay.offset + l * k + ci);
                        sum += ztr[rr] * self.u[cc] - 0.5 * ztd[rr] * v_u[cc];
                    }
                    grad.push(sum);
                }
            }
        }
        if !self.fast {
            grad.extend(xt_mul(&rv));
        }
        Ok(grad)
    }

    /// Solves the PLS system at the last factorization (with β inside
    /// PIRLS): [M, B; Bᵀ, C] (v_u, v_β) = (s_u, s_β) through L, RZX and RX.
    pub(super) fn joint_solve(&self, s_u: &[f64], s_b: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (q, p) = (self.q(), self.p());
        let fac = self.ws.factor();
        let y1 = fac.l_solve(Mat::from_fn(q, 1, |i, _| s_u[i]).as_ref());
        let rzx = self.ws.rzx();
        let rx = self.ws.rx();
        // y2 = RX⁻ᵀ (s_β − RZXᵀ y1)
        let mut y2: Vec<f64> = (0..p)
            .map(|j| s_b[j] - (0..q).map(|i| rzx[(i, j)] * y1[(i, 0)]).sum::<f64>())
            .collect();
        for j in 0..p {
            let mut v = y2[j];
            for i in 0..j {
                v -= rx[i + j * p] * y2[i];
            }
            y2[j] = v / rx[j + j * p];
        }
        // v_β = RX⁻¹ y2
        let mut vb = y2;
        for j in (0..p).rev() {
            let mut v = vb[j];
            for i in j + 1..p {
                v -= rx[j + i * p] * vb[i];
            }
            vb[j] = v / rx[j + j * p];
        }
        let rhs = Mat::from_fn(q, 1, |i, _| {
            y1[(i, 0)] - (0..p).map(|j| rzx[(i, j)] * vb[j]).sum::<f64>()
        });
        let vu = fac.lt_solve(rhs.as_ref());
        ((0..q).map(|i| vu[(i, 0)]).collect(), vb)
    }
}
