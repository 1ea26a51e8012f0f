//! The exact gradient of the profiled objective with respect to θ, from A
//! and the factor only (nothing per θ grows with the number of rows).
//!
//! θ_i sits at (r_i, c_i) of the template of term t_i; Λ_i = ∂Λ/∂θ_i has a
//! 1 at (r_i, c_i) of every level block of t_i. With A_ZZ = Z̃ᵀZ̃ and
//! M = ΛᵀA_ZZΛ + I:
//!
//! ```text
//! ∂ log det M / ∂θ_i = tr(M⁻¹(Λ_iᵀA_ZZΛ + ΛᵀA_ZZΛ_i)) = 2 Σ_l G_ll[c_i, r_i],
//!     G_ll = Σ_a (M⁻¹)_la T_aᵀ (A_ZZ)_al    (M⁻¹ on A's pattern only)
//! ∂ pwrss / ∂θ_i = −2 Σ_l (Z̃ᵀr)[l, r_i] û[l, c_i],
//!     Z̃ᵀr = Z̃ᵀỹ − Z̃ᵀX̃β̂ − A_ZZ Λû     (the envelope theorem)
//! ∂ log det RXᵀRX / ∂θ_i = −2 Σ_l P[l·k + r_i, :] · U[l·k + c_i, :],
//!     Q = Z̃ᵀX̃ − A_ZZ Λ M⁻¹ ΛᵀZ̃ᵀX̃ = Z̃ᵀV₀⁻¹X̃,  P = Q RX⁻¹,  U = ΛᵀP
//! ```
//!
//! where l runs over the levels of t_i (blocks in lme4's order). M⁻¹ on the
//! pattern comes from the selected inversion of L (`selinv`).

use faer::Mat;

use super::error::Result;
use super::selinv::SelectedInverse;
use super::small::{col_mut, tt_mul};
use super::workspace::Workspace;

/// The gradients of the pieces of the objective at one θ.
#[derive(Clone, Debug)]
pub struct GradientParts {
    /// ∂ log det M / ∂θ.
    pub ld_l2: Vec<f64>,
    /// ∂ log det(RXᵀRX) / ∂θ.
    pub ld_rx2: Vec<f64>,
    /// ∂ pwrss / ∂θ.
    pub pwrss: Vec<f64>,
    /// pwrss at θ.
    pub pwrss_value: f64,
}

/// One stored block of A_ZZ's lower triangle in lme4's order: term and first
/// random effect of its row block and of its column block, and its values
/// (k_row x k_col, column-major). Diagonal blocks have the same row and
/// column.
struct Block<'a> {
    ta: usize,
    a: usize,
    tb: usize,
    b: usize,
    v: &'a [f64],
}

impl Workspace {
    /// The gradient of [`objective`](Self::objective) with respect to θ.
    pub fn gradient(&mut self, theta: &[f64], reml: bool) -> Result<Vec<f64>> {
        self.update(theta)?;
        self.gradient_from(reml)
    }

    /// The gradient of the objective at the last θ.
    pub fn gradient_from(&self, reml: bool) -> Result<Vec<f64>> {
        let parts = self.parts()?;
        let (n, p) = (self.n() as f64, self.p() as f64);
        let (dof, ldrx) = if reml { (n - p, 1.0) } else { (n, 0.0) };
        Ok((0..self.n_theta())
            .map(|i| {
                parts.ld_l2[i] + ldrx * parts.ld_rx2[i] + dof * parts.pwrss[i] / parts.pwrss_value
            })
            .collect())
    }

    /// The gradients of log det M, log det RXᵀRX and pwrss at θ.
    pub fn gradient_parts(&mut self, theta: &[f64]) -> Result<GradientParts> {
        self.update(theta)?;
        self.parts()
    }

    /// [`gradient_parts`](Self::gradient_parts) at the last θ.
    fn parts(&self) -> Result<GradientParts> {
        let ev = self.evaluation()?.clone();
        let (q, p) = (self.q(), self.p());
        let (beta, u) = self.beta_u();
        // B = Λ M⁻¹ ΛᵀZ̃ᵀX̃ (p columns) and Λû, then A_ZZ B
        let c = self.c();
        let mut rhs = c.to_owned();
        for i in 0..q {
            let s: f64 = (0..p).map(|j| c[(i, j)] * beta[j]).sum();
            rhs[(i, p)] -= s;
        }
        let mut b = self.factor().lt_solve(rhs.as_ref());
        // column p is û itself (u = P̃ᵀL⁻ᵀ(c_y − c_X β̂))
        for j in 0..=p {
            self.terms()
                .lambda_mul(self.templates(), col_mut(b.as_mut(), j));
        }
        let ab = self.a_zz_mul(&b);
        let ztxy = self.cross_products().ztxy();
        // Q = Z̃ᵀX̃ − A_ZZ B (q x p), Z̃ᵀr = Z̃ᵀỹ − Z̃ᵀX̃β̂ − A_ZZ Λû
        let qm = Mat::from_fn(q, p, |i, j| ztxy[(i, j)] - ab[(i, j)]);
        let ztr: Vec<f64> = (0..q)
            .map(|i| {
                let xb: f64 = (0..p).map(|j| ztxy[(i, j)] * beta[j]).sum();
                ztxy[(i, p)] - xb - ab[(i, p)]
            })
            .collect();
        // P = Q RX⁻¹ (row by row: P RX = Q), U = ΛᵀP
        let rx = self.rx();
        let mut pm = qm;
        for i in 0..q {
            for j in 0..p {
                let mut s = pm[(i, j)];
                for m in 0..j {
                    s -= pm[(i, m)] * rx[m + j * p];
                }
                pm[(i, j)] = s / rx[j + j * p];
            }
        }
        let mut um = pm.clone();
        for j in 0..p {
            self.terms()
                .lambdat_mul(self.templates(), col_mut(um.as_mut(), j));
        }
        let nt = self.n_theta();
        let (mut d_pwrss, mut d_ldrx) = (vec![0.0; nt], vec![0.0; nt]);
        for lay in self.layout() {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for ci in 0..k {
                for ri in ci..k {
                    let (mut sp, mut sr) = (0.0, 0.0);
                    for l in 0..lay.n_levels {
                        let (r, c) = (lay.offset + l * k + ri, lay.offset + l * k + ci);
                        sp += ztr[r] * u[c];
                        for j in 0..p {
                            sr += pm[(r, j)] * um[(c, j)];
                        }
                    }
                    d_pwrss[idx] = -2.0 * sp;
                    d_ldrx[idx] = -2.0 * sr;
                    idx += 1;
                }
            }
        }
        Ok(GradientParts {
            ld_l2: self.logdet_m_gradient()?,
            ld_rx2: d_ldrx,
            pwrss: d_pwrss,
            pwrss_value: ev.pwrss,
        })
    }

    /// ∂ log det M / ∂θ at the last θ, from M⁻¹ on the pattern of A_ZZ.
    pub fn logdet_m_gradient(&self) -> Result<Vec<f64>> {
        self.evaluation()?;
        let zinv = SelectedInverse::new(self.factor().to_csc());
        let layout = self.layout();
        let templates = self.templates();
        // s[t] = Σ_l G_ll over the levels of term t (k x k, column-major)
        let mut s: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let kmax = layout.iter().map(|l| l.k).max().unwrap_or(1);
        let mut w = vec![0.0; kmax * kmax];
        self.for_each_a_block(|blk| {
            let (ka, kb) = (layout[blk.ta].k, layout[blk.tb].k);
            // G_bb += Z_ba T_aᵀ A_ab: W = T_aᵀ A_ab (ka x kb)
            for y in 0..kb {
                let wc = &mut w[y * ka..(y + 1) * ka];
                wc.copy_from_slice(&blk.v[y * ka..(y + 1) * ka]);
                tt_mul(&templates[blk.ta], ka, wc);
            }
            let sb = &mut s[blk.tb];
            for y in 0..kb {
                for x in 0..kb {
                    let mut acc = 0.0;
                    for j in 0..ka {
                        acc += zinv.get(blk.b + x, blk.a + j) * w[j + y * ka];
                    }
                    sb[x + y * kb] += acc;
                }
            }
            if blk.a == blk.b {
                return;
            }
            // G_aa += Z_ab T_bᵀ A_abᵀ: W = T_bᵀ A_abᵀ (kb x ka)
            for y in 0..ka {
                let wc = &mut w[y * kb..(y + 1) * kb];
                for (m, v) in wc.iter_mut().enumerate() {
                    *v = blk.v[y + m * ka];
                }
                tt_mul(&templates[blk.tb], kb, wc);
            }
            let sa = &mut s[blk.ta];
            for y in 0..ka {
                for x in 0..ka {
                    let mut acc = 0.0;
                    for m in 0..kb {
                        acc += zinv.get(blk.a + x, blk.b + m) * w[m + y * kb];
                    }
                    sa[x + y * ka] += acc;
                }
            }
        });
        let mut g = Vec::with_capacity(self.n_theta());
        for (lay, st) in layout.iter().zip(&s) {
            let k = lay.k;
            for ci in 0..k {
                for ri in ci..k {
                    g.push(2.0 * st[ci + ri * k]);
                }
            }
        }
        Ok(g)
    }

    /// A_ZZ B for B (q x m, rows in lme4's order).
    pub fn a_zz_mul(&self, b: &Mat<f64>) -> Mat<f64> {
        let layout = self.layout();
        let mut out = Mat::<f64>::zeros(b.nrows(), b.ncols());
        self.for_each_a_block(|blk| {
            let (ka, kb) = (layout[blk.ta].k, layout[blk.tb].k);
            for j in 0..b.ncols() {
                for y in 0..kb {
                    for x in 0..ka {
                        out[(blk.a + x, j)] += blk.v[x + y * ka] * b[(blk.b + y, j)];
                    }
                }
                if blk.a != blk.b {
                    for y in 0..kb {
                        for x in 0..ka {
                            out[(blk.b + y, j)] += blk.v[x + y * ka] * b[(blk.a + x, j)];
                        }
                    }
                }
            }
        });
        out
    }

    /// Calls `f` on every stored block of the lower triangle of A_ZZ (in L's
    /// block order: the first term's diagonal blocks, its cross-products
    /// with the rest, the rest's diagonal and off-diagonal blocks).
    fn for_each_a_block(&self, mut f: impl FnMut(Block<'_>)) {
        let order = self.factor().order();
        let a = self.cross_products();
        let (tf, kf) = (order.first(), order.kf());
        let f0 = order.f_range().start;
        let rest = order.rest_lme4_index();
        let ext = |rb: usize| rest[order.off(rb)];
        for (j, v) in a.a11().chunks_exact(kf * kf).enumerate() {
            let b = f0 + j * kf;
            f(Block {
                ta: tf,
                a: b,
                tb: tf,
                b,
                v,
            });
        }
        let a21 = a.a21();
        for j in 0..order.lf() {
            for e in a21.pat.ptr[j]..a21.pat.ptr[j + 1] {
                let rb = a21.pat.row[e];
                let kr = order.k(rb);
                f(Block {
                    ta: order.term(rb),
                    a: ext(rb),
                    tb: tf,
                    b: f0 + j * kf,
                    v: &a21.val[a21.pat.off[e]..][..kr * kf],
                });
            }
        }
        let a22 = a.a22();
        for cb in 0..order.n_blocks() {
            let kc = order.k(cb);
            let (tc, bc) = (order.term(cb), ext(cb));
            f(Block {
                ta: tc,
                a: bc,
                tb: tc,
                b: bc,
                v: a.a22d_block(cb, kc),
            });
            for e in a22.pat.ptr[cb]..a22.pat.ptr[cb + 1] {
                let rb = a22.pat.row[e];
                let kr = order.k(rb);
                f(Block {
                    ta: order.term(rb),
                    a: ext(rb),
                    tb: tc,
                    b: bc,
                    v: &a22.val[a22.pat.off[e]..][..kr * kc],
                });
            }
        }
    }
}
