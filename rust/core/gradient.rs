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
//! pattern comes from the selected inversion of L (`logdet_grad`, `selinv`).

use faer::Mat;

use super::error::Result;
use super::small::{col, col_mut};
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
pub(crate) struct Block<'a> {
    pub ta: usize,
    pub a: usize,
    pub tb: usize,
    pub b: usize,
    pub v: &'a [f64],
}

impl Workspace {
    /// The gradient of [`objective`](Self::objective) with respect to θ.
    pub fn gradient(&mut self, theta: &[f64], reml: bool) -> Result<Vec<f64>> {
        self.update(theta)?;
        self.gradient_from(reml)
    }

    /// The gradient of the objective at the last θ.
    pub fn gradient_from(&self, reml: bool) -> Result<Vec<f64>> {
        // the ML deviance does not read log det RXᵀRX
        let parts = self.parts(reml)?;
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
        self.parts(true)
    }

    /// [`gradient_parts`](Self::gradient_parts) at the last θ; `ld_rx2` is
    /// left at zero without `with_rx`.
    fn parts(&self, with_rx: bool) -> Result<GradientParts> {
        if let Some(parts) = self.gradient_one_term(with_rx)? {
            return Ok(parts);
        }
        let ev = self.evaluation()?.clone();
        let (q, p) = (self.q(), self.p());
        let beta = self.beta();
        // B = Λ M⁻¹ ΛᵀZ̃ᵀX̃ (p columns, with_rx only) and Λû, then A_ZZ B
        let c = self.c();
        let p0 = if with_rx { 0 } else { p };
        let mut rhs = c.subcols(p0, p + 1 - p0).to_owned();
        for i in 0..q {
            let s: f64 = (0..p).map(|j| c[(i, j)] * beta[j]).sum();
            rhs[(i, p - p0)] -= s;
        }
        let mut b = self.factor().lt_solve(rhs.as_ref());
        // the last column is û (u = P̃ᵀL⁻ᵀ(c_y − c_X β̂))
        let u = col(b.as_ref(), p - p0).to_vec();
        for j in 0..=p - p0 {
            self.terms()
                .lambda_mul(self.templates(), col_mut(b.as_mut(), j));
        }
        let ab = self.a_zz_mul(&b);
        let ztxy = self.cross_products().ztxy();
        // Z̃ᵀr = Z̃ᵀỹ − Z̃ᵀX̃β̂ − A_ZZ Λû
        let ztr: Vec<f64> = (0..q)
            .map(|i| {
                let xb: f64 = (0..p).map(|j| ztxy[(i, j)] * beta[j]).sum();
                ztxy[(i, p)] - xb - ab[(i, p - p0)]
            })
            .collect();
        let nt = self.n_theta();
        let d_ldrx = if with_rx {
            self.ld_rx2_gradient(&ab)
        } else {
            vec![0.0; nt]
        };
        let mut d_pwrss = vec![0.0; nt];
        for lay in self.layout() {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for ci in 0..k {
                for ri in ci..k {
                    let mut sp = 0.0;
                    for l in 0..lay.n_levels {
                        let (r, c) = (lay.offset + l * k + ri, lay.offset + l * k + ci);
                        sp += ztr[r] * u[c];
                    }
                    d_pwrss[idx] = -2.0 * sp;
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

    /// ∂ log det RXᵀRX / ∂θ from `ab` = A_ZZ B (its first p columns).
    fn ld_rx2_gradient(&self, ab: &Mat<f64>) -> Vec<f64> {
        let (q, p) = (self.q(), self.p());
        let ztxy = self.cross_products().ztxy();
        // Q = Z̃ᵀX̃ − A_ZZ B (q x p)
        let qm = Mat::from_fn(q, p, |i, j| ztxy[(i, j)] - ab[(i, j)]);
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
        let mut d_ldrx = vec![0.0; self.n_theta()];
        for lay in self.layout() {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for ci in 0..k {
                for ri in ci..k {
                    let mut sr = 0.0;
                    for l in 0..lay.n_levels {
                        let (r, c) = (lay.offset + l * k + ri, lay.offset + l * k + ci);
                        for j in 0..p {
                            sr += pm[(r, j)] * um[(c, j)];
                        }
                    }
                    d_ldrx[idx] = -2.0 * sr;
                    idx += 1;
                }
            }
        }
        d_ldrx
    }

    /// A_ZZ B for B (q x m, rows in lme4's order).
    pub fn a_zz_mul(&self, b: &Mat<f64>) -> Mat<f64> {
        let layout = self.layout();
        let (q, m) = (b.nrows(), b.ncols());
        // row-major copies: the columns of a block row are together
        let bt: Vec<f64> = (0..q * m).map(|e| b[(e / m, e % m)]).collect();
        let mut out = vec![0.0; q * m];
        self.for_each_a_block(|blk| {
            let (ka, kb) = (layout[blk.ta].k, layout[blk.tb].k);
            for y in 0..kb {
                for x in 0..ka {
                    let v = blk.v[x + y * ka];
                    let (ra, rb) = ((blk.a + x) * m, (blk.b + y) * m);
                    for j in 0..m {
                        out[ra + j] += v * bt[rb + j];
                    }
                    if blk.a != blk.b {
                        for j in 0..m {
                            out[rb + j] += v * bt[ra + j];
                        }
                    }
                }
            }
        });
        Mat::from_fn(q, m, |i, j| out[i * m + j])
    }

    /// Calls `f` on every stored block of the lower triangle of A_ZZ (in L's
    /// block order: the first term's diagonal blocks and cross-products with
    /// the rest level by level, then the rest's diagonal and off-diagonal
    /// blocks).
    pub(crate) fn for_each_a_block(&self, mut f: impl FnMut(Block<'_>)) {
        let rest = self.factor().order().rest_lme4_index();
        for j in 0..self.factor().order().lf() {
            self.for_each_first_block(j, &rest, &mut f);
        }
        self.for_each_rest_block(&rest, f);
    }

    /// The blocks of A_ZZ in the column of first-term level `j`: its
    /// diagonal block, then its cross-products with the rest (A21's pattern,
    /// which is L21's). `rest` is the lme4 index of each rest coefficient.
    pub(crate) fn for_each_first_block(
        &self,
        j: usize,
        rest: &[usize],
        mut f: impl FnMut(Block<'_>),
    ) {
        let order = self.factor().order();
        let a = self.cross_products();
        let (tf, kf) = (order.first(), order.kf());
        let b = order.f_range().start + j * kf;
        f(Block {
            ta: tf,
            a: b,
            tb: tf,
            b,
            v: &a.a11()[j * kf * kf..(j + 1) * kf * kf],
        });
        let a21 = a.a21();
        for e in a21.pat.ptr[j]..a21.pat.ptr[j + 1] {
            let rb = a21.pat.row[e];
            let kr = order.k(rb);
            f(Block {
                ta: order.term(rb),
                a: rest[order.off(rb)],
                tb: tf,
                b,
                v: &a21.val[a21.pat.off(e)..][..kr * kf],
            });
        }
    }

    /// The blocks of A_ZZ among the rest: diagonal blocks and, below them,
    /// the rest's off-diagonal blocks (A22).
    pub(crate) fn for_each_rest_block(&self, rest: &[usize], mut f: impl FnMut(Block<'_>)) {
        let order = self.factor().order();
        let a = self.cross_products();
        let ext = |rb: usize| rest[order.off(rb)];
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
                    v: &a22.val[a22.pat.off(e)..][..kr * kc],
                });
            }
        }
    }
}
