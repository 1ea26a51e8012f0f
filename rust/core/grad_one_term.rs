//! The gradient of the objective's pieces when the model has a single
//! random-effects term: M is block diagonal (one k x k block per level), so
//! every formula of `gradient.rs` is a sum over levels of k x k and k x p
//! products, done here in one pass with no matrix of size q formed.
//!
//! Per level j, with L_j = chol(TᵀA_jT + I), c_j its rows of
//! c = L⁻¹ΛᵀZ̃ᵀ[X̃ ỹ] and (Z̃ᵀ[X̃ ỹ])_j its rows of the cross-products:
//!
//! ```text
//! u_j  = L_j⁻ᵀ (c_y − c_X β̂)_j,          Z̃ᵀr_j = (Z̃ᵀỹ − Z̃ᵀX̃ β̂)_j − A_j T u_j
//! Q_j  = (Z̃ᵀX̃)_j − A_j T L_j⁻ᵀ c_X,j,   P_j = Q_j RX⁻¹,  U_j = Tᵀ P_j
//! ∂ log det M      / ∂θ_i =  2 Σ_j (M_j⁻¹ Tᵀ A_j)[c_i, r_i]
//! ∂ pwrss          / ∂θ_i = −2 Σ_j Z̃ᵀr_j[r_i] u_j[c_i]
//! ∂ log det RXᵀRX  / ∂θ_i = −2 Σ_j P_j[r_i, :] · U_j[c_i, :]
//! ```

use std::ops::Range;

use rayon::prelude::*;

use super::error::Result;
use super::gradient::GradientParts;
use super::small::{col, solve_l_recip, solve_lt_recip, t_mul, tt_mul, Dim, K};
use super::workspace::Workspace;

/// What the pass over the levels reads: per level the L11 block, A's block
/// and the rows of c and of Z̃ᵀ[X̃ ỹ] (columns as slices), with T, β̂ and RX.
struct Levels<'a> {
    l11: &'a [f64],
    a11: &'a [f64],
    c: Vec<&'a [f64]>,
    ztxy: Vec<&'a [f64]>,
    t: &'a [f64],
    beta: &'a [f64],
    rx: &'a [f64],
    n_levels: usize,
    with_rx: bool,
}

/// Levels per chunk of the pass when it is split across threads (a fixed
/// size: the sums do not depend on the number of threads), and the least
/// work (levels x k² x (p + 2)) for a split.
const CHUNK_LEVELS: usize = 2048;
const PARALLEL_MIN_WORK: usize = 1 << 16;

/// Σ_j M_j⁻¹TᵀA_j, Σ_j Z̃ᵀr_j u_jᵀ and Σ_j P_j U_jᵀ (k x k, column-major)
/// over the levels `levels`, generic over k so that the usual sizes unroll.
/// Divisions are the slow operation here: k per level (L_j's diagonal),
/// and RX's diagonal once.
#[inline(always)]
fn sums<D: Dim>(k: D, lv: &Levels<'_>, levels: Range<usize>) -> [Vec<f64>; 3] {
    let kn = k.get();
    let kk = kn * kn;
    let p = lv.beta.len();
    let rx_inv: Vec<f64> = (0..p).map(|m| 1.0 / lv.rx[m + m * p]).collect();
    let (mut s, mut dp, mut dr) = (vec![0.0; kk], vec![0.0; kk], vec![0.0; kk]);
    let (mut u, mut tu, mut ztr) = (vec![0.0; kn], vec![0.0; kn], vec![0.0; kn]);
    let (mut linv, mut w, mut dinv) = (vec![0.0; kk], vec![0.0; kk], vec![0.0; kn]);
    let (mut bx, mut pm, mut uc) = (vec![0.0; kn * p], vec![0.0; kn * p], vec![0.0; kn]);
    for j in levels {
        let l = &lv.l11[j * kk..(j + 1) * kk];
        let aj = &lv.a11[j * kk..(j + 1) * kk];
        let base = j * kn;
        for r in 0..kn {
            dinv[r] = 1.0 / l[r + r * kn];
        }
        // û_j and Z̃ᵀr_j
        for r in 0..kn {
            let (mut cu, mut zu) = (lv.c[p][base + r], lv.ztxy[p][base + r]);
            for (m, &b) in lv.beta.iter().enumerate() {
                cu -= lv.c[m][base + r] * b;
                zu -= lv.ztxy[m][base + r] * b;
            }
            u[r] = cu;
            ztr[r] = zu;
        }
        solve_lt_recip(l, &dinv, k, &mut u);
        tu.copy_from_slice(&u);
        t_mul(lv.t, kn, &mut tu);
        for r in 0..kn {
            for m in 0..kn {
                ztr[r] -= aj[r + m * kn] * tu[m];
            }
        }
        for cc in 0..kn {
            for r in 0..kn {
                dp[r + cc * kn] += ztr[r] * u[cc];
            }
        }
        // M_j⁻¹ = L_j⁻ᵀL_j⁻¹; += M_j⁻¹ (TᵀA_j) = L_j⁻ᵀ (L_j⁻¹ TᵀA_j)
        linv.fill(0.0);
        for m in 0..kn {
            linv[m + m * kn] = 1.0;
            solve_l_recip(l, &dinv, k, &mut linv[m * kn..(m + 1) * kn]);
        }
        w.copy_from_slice(aj);
        for wc in w.chunks_exact_mut(kn) {
            tt_mul(lv.t, k, wc);
            solve_l_recip(l, &dinv, k, wc);
        }
        for b in 0..kn {
            for a in 0..kn {
                let mut v = 0.0;
                for m in a..kn {
                    v += linv[m + a * kn] * w[m + b * kn];
                }
                s[a + b * kn] += v;
            }
        }
        if !lv.with_rx {
            continue;
        }
        // B_j = T L_j⁻ᵀ c_X,j, Q_j = (Z̃ᵀX̃)_j − A_j B_j, P_j = Q_j RX⁻¹
        for m in 0..p {
            let bc = &mut bx[m * kn..(m + 1) * kn];
            bc.copy_from_slice(&lv.c[m][base..base + kn]);
            solve_lt_recip(l, &dinv, k, bc);
            t_mul(lv.t, kn, bc);
        }
        for m in 0..p {
            for r in 0..kn {
                let mut v = lv.ztxy[m][base + r];
                for i in 0..kn {
                    v -= aj[r + i * kn] * bx[i + m * kn];
                }
                for i in 0..m {
                    v -= pm[r + i * kn] * lv.rx[i + m * p];
                }
                pm[r + m * kn] = v * rx_inv[m];
            }
        }
        // += P_j U_jᵀ with U_j = Tᵀ P_j
        for m in 0..p {
            let pc = &pm[m * kn..(m + 1) * kn];
            uc.copy_from_slice(pc);
            tt_mul(lv.t, k, &mut uc);
            for cc in 0..kn {
                for r in 0..kn {
                    dr[r + cc * kn] += pc[r] * uc[cc];
                }
            }
        }
    }
    [s, dp, dr]
}

impl Workspace {
    /// The gradient's pieces at the last θ for a model with a single term
    /// (None otherwise); `ld_rx2` is left at zero without `with_rx`.
    pub(crate) fn gradient_one_term(&self, with_rx: bool) -> Result<Option<GradientParts>> {
        let fac = self.factor();
        if fac.l22().is_some() {
            return Ok(None);
        }
        let ev = self.evaluation()?.clone();
        let order = fac.order();
        let (k, p) = (order.kf(), self.p());
        let lay = &self.layout()[order.first()];
        let (ztxy, c) = (self.cross_products().ztxy(), self.c());
        let (beta, rx) = (self.beta(), self.rx());
        let f = order.f_range();
        let lv = Levels {
            l11: fac.l11_block_all(),
            a11: self.cross_products().a11(),
            c: (0..=p).map(|m| &col(c, m)[f.clone()]).collect(),
            ztxy: (0..=p).map(|m| &col(ztxy, m)[f.clone()]).collect(),
            t: &self.templates()[order.first()],
            beta: &beta,
            rx: &rx,
            n_levels: order.lf(),
            with_rx,
        };
        let run = |r: Range<usize>| match k {
            1 => sums(K::<1>, &lv, r),
            2 => sums(K::<2>, &lv, r),
            3 => sums(K::<3>, &lv, r),
            _ => sums(k, &lv, r),
        };
        let n = lv.n_levels;
        let [s, dp, dr] = if n * k * k * (p + 2) < PARALLEL_MIN_WORK || n <= CHUNK_LEVELS {
            run(0..n)
        } else {
            // fixed chunks, summed in order: the same sums on any number of threads
            let parts: Vec<[Vec<f64>; 3]> = (0..n.div_ceil(CHUNK_LEVELS))
                .into_par_iter()
                .map(|c| run(c * CHUNK_LEVELS..((c + 1) * CHUNK_LEVELS).min(n)))
                .collect();
            let mut total = parts[0].clone();
            for part in &parts[1..] {
                for (t, v) in total.iter_mut().zip(part) {
                    t.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                }
            }
            total
        };
        let nt = self.n_theta();
        let (mut ld_l2, mut ld_rx2, mut pwrss) = (vec![0.0; nt], vec![0.0; nt], vec![0.0; nt]);
        let mut idx = lay.theta_offset;
        for ci in 0..k {
            for ri in ci..k {
                ld_l2[idx] = 2.0 * s[ci + ri * k];
                pwrss[idx] = -2.0 * dp[ri + ci * k];
                ld_rx2[idx] = -2.0 * dr[ri + ci * k];
                idx += 1;
            }
        }
        Ok(Some(GradientParts {
            ld_l2,
            ld_rx2,
            pwrss,
            pwrss_value: ev.pwrss,
        }))
    }
}
