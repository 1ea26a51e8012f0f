//! The blocked Cholesky factor L of `M = ΛᵀZ̃ᵀZ̃Λ + I` at θ, and the
//! operations every consumer of it needs.
//!
//! With the first term f first and the rest in the block order of
//! [`BlockOrder`] (P the sparse factor's permutation of the rest):
//!
//! ```text
//! L = [L11  0 ]     L11 = chol(M11)             per level, dense k_f x k_f
//!     [L21 L22]     L21 = M21 L11⁻ᵀ             in A21's pattern
//!                   P (M22 − L21 L21ᵀ) Pᵀ = L22 L22ᵀ
//! ```
//!
//! "L order" is the order of L's rows: the first term's random effects, then
//! the rest permuted by P; P̃ is the permutation from lme4's order to L
//! order. [`BlockedFactor::l_solve`] applies L⁻¹P̃, [`BlockedFactor::lt_solve`]
//! P̃ᵀL⁻ᵀ, and [`BlockedFactor::solve`] both: M⁻¹ in lme4's order.

use std::sync::{Arc, OnceLock};

use faer::reborrow::{Reborrow, ReborrowMut};
use faer::{Mat, MatMut, MatRef};

use super::chol::SparseCholesky;
use super::crossprod::{BlockColumns, CrossProducts};
use super::error::{CoreError, Result};
use super::grad_scalar::Z22Plan;
use super::order::BlockOrder;
use super::pattern::Pattern;
use super::schur::{FillInputs, SchurFill};
use super::small::{
    chol_lower, col, col_mut, consecutive, sandwich, solve_l, solve_lt, solve_right_lt, tt_mul,
    Dim, LogDet, K,
};

/// The factor L in compressed columns, with its permutation: row i of L is
/// random effect `perm[i]` (lme4's order); L Lᵀ = M[perm, perm].
pub struct FactorL {
    pub perm: Vec<usize>,
    pub col_ptr: Vec<usize>,
    pub row_idx: Vec<usize>,
    pub values: Vec<f64>,
}

/// L21 in A21's pattern, and the one walk over its blocks.
#[derive(Clone)]
pub struct L21 {
    order: Arc<BlockOrder>,
    scalar: bool,
    vals: BlockColumns,
    /// θ of each rest block (scratch of the scalar computation).
    theta_r: Vec<f64>,
}

impl L21 {
    /// The blocks in the column of first-term level `j`: (first coefficient
    /// of the rest block in the rest's numbering, its k, the k x k_f values).
    #[inline]
    pub fn level(&self, j: usize) -> impl Iterator<Item = (usize, usize, &[f64])> + '_ {
        let (pat, kf) = (&*self.vals.pat, self.order.kf());
        (pat.ptr[j]..pat.ptr[j + 1]).map(move |e| {
            let rb = pat.row[e];
            if self.scalar {
                // 1 x 1 blocks: rest blocks are rest coefficients, entries
                // are value offsets
                return (rb, 1, std::slice::from_ref(&self.vals.val[e]));
            }
            let kr = self.order.k(rb);
            (
                self.order.off(rb),
                kr,
                &self.vals.val[pat.off(e)..][..kr * kf],
            )
        })
    }

    /// Level j's rest rows and values when every block is 1 x 1 (`scalar`).
    #[inline(always)]
    fn scalar_level(&self, j: usize) -> (&[usize], &[f64]) {
        let pat = &*self.vals.pat;
        let (e0, e1) = (pat.ptr[j], pat.ptr[j + 1]);
        (&pat.row[e0..e1], &self.vals.val[e0..e1])
    }

    /// `dst −= L21[:, j] x`: `x` has level j's k_f values, `dst` is in the
    /// rest's numbering.
    #[inline]
    pub fn mul_sub(&self, j: usize, x: &[f64], dst: &mut [f64]) {
        if self.scalar {
            let (rows, lv) = self.scalar_level(j);
            match consecutive(rows) {
                Some(r0) => {
                    for (d, &l) in dst[r0..r0 + rows.len()].iter_mut().zip(lv) {
                        *d -= l * x[0];
                    }
                }
                None => {
                    for (&r, &l) in rows.iter().zip(lv) {
                        dst[r] -= l * x[0];
                    }
                }
            }
            return;
        }
        for (ro, kr, lv) in self.level(j) {
            for (c, &xc) in x.iter().enumerate() {
                for r in 0..kr {
                    dst[ro + r] -= lv[r + c * kr] * xc;
                }
            }
        }
    }

    /// `v −= L21[:, j]ᵀ src`: `v` has level j's k_f values, `src` is in the
    /// rest's numbering.
    #[inline]
    pub fn t_mul_sub(&self, j: usize, src: &[f64], v: &mut [f64]) {
        if self.scalar {
            let (rows, lv) = self.scalar_level(j);
            for (&r, &l) in rows.iter().zip(lv) {
                v[0] -= l * src[r];
            }
            return;
        }
        for (ro, kr, lv) in self.level(j) {
            for (c, vc) in v.iter_mut().enumerate() {
                for r in 0..kr {
                    *vc -= lv[r + c * kr] * src[ro + r];
                }
            }
        }
    }

    /// L21 = T_restᵀ A21 T_f L11⁻ᵀ.
    fn compute(&mut self, a21: &[f64], templates: &[Vec<f64>], l11: &[f64]) {
        let order = &*self.order;
        let (kf, pat) = (order.kf(), &*self.vals.pat);
        let tf = &templates[order.first()];
        let l21 = &mut self.vals.val;
        if self.scalar {
            // 1 x 1 blocks: entry offsets are entry indices
            for (rb, t) in self.theta_r.iter_mut().enumerate() {
                *t = templates[order.term(rb)][0];
            }
            for j in 0..order.lf() {
                let scale = tf[0] / l11[j];
                let (e0, e1) = (pat.ptr[j], pat.ptr[j + 1]);
                for ((dst, &a), &rb) in l21[e0..e1]
                    .iter_mut()
                    .zip(&a21[e0..e1])
                    .zip(&pat.row[e0..e1])
                {
                    *dst = self.theta_r[rb] * a * scale;
                }
            }
            return;
        }
        let mut tmp = vec![0.0; order.k_max() * kf];
        for j in 0..order.lf() {
            let l = &l11[j * kf * kf..(j + 1) * kf * kf];
            for e in pat.ptr[j]..pat.ptr[j + 1] {
                let rb = pat.row[e];
                let (tr, kr) = (&templates[order.term(rb)], order.k(rb));
                let a = &a21[pat.off(e)..][..kr * kf];
                let dst = &mut l21[pat.off(e)..][..kr * kf];
                if kr == 1 && kf == 1 {
                    dst[0] = tr[0] * a[0] * tf[0] / l[0];
                } else {
                    sandwich(tr, kr, a, tf, kf, 0.0, &mut tmp, dst);
                    solve_right_lt(l, kf, dst, kr);
                }
            }
        }
    }
}

/// L at θ, with the plan and scratch of its refactorization.
#[derive(Clone)]
pub struct BlockedFactor {
    order: Arc<BlockOrder>,
    /// k_f x k_f per first-term level, column-major, lower triangular.
    l11: Vec<f64>,
    l21: L21,
    /// None when the model has a single term.
    l22: Option<SparseCholesky>,
    schur: SchurFill,
    logdet: f64,
    /// The plan of the selected inverse of L22 for the gradient
    /// (`grad_scalar.rs`), found once; shared by copies, whose factors have
    /// the same pattern.
    z22_plan: Arc<OnceLock<Z22Plan>>,
}

impl BlockedFactor {
    pub fn new(
        order: Arc<BlockOrder>,
        scalar: bool,
        pattern: &Pattern,
        a: &CrossProducts,
        l22: Option<SparseCholesky>,
    ) -> Self {
        let l21 = L21 {
            order: Arc::clone(&order),
            scalar,
            vals: BlockColumns::zeros(Arc::clone(&a.a21().pat)),
            theta_r: vec![0.0; order.n_blocks()],
        };
        Self {
            l11: vec![0.0; a.a11().len()],
            l21,
            l22,
            schur: SchurFill::new(scalar, &order, pattern, a),
            logdet: f64::NAN,
            z22_plan: Arc::new(OnceLock::new()),
            order,
        }
    }

    /// Refactors at θ (the templates), and writes `c1` (first-term rows) and
    /// `c2` (rest rows) of `c = L⁻¹ P Λᵀ Z̃ᵀ[X̃ ỹ]`, the right-hand sides of
    /// the fixed effects and response in L order. Returns log det(LLᵀ).
    pub fn refactor(
        &mut self,
        pattern: &Pattern,
        a: &CrossProducts,
        templates: &[Vec<f64>],
        mut c1: MatMut<'_, f64>,
        mut c2: MatMut<'_, f64>,
    ) -> Result<f64> {
        let Self {
            order,
            l11,
            l21,
            l22,
            schur,
            logdet,
            ..
        } = self;
        let order = &**order;
        let (tf, kf) = (&templates[order.first()], order.kf());
        // c's columns are the last ones of Z̃ᵀ[X̃ ỹ] (all, or ỹ's alone)
        let ztxy = a.ztxy();
        let ztxy = ztxy.subcols(ztxy.ncols() - c1.ncols(), c1.ncols());
        let src: Vec<&[f64]> = (0..ztxy.ncols())
            .map(|c| &col(ztxy, c)[order.f_range()])
            .collect();
        // L11 = chol(T_fᵀ A11 T_f + I) per level, and c1 = L11⁻¹ T_fᵀ Z̃ᵀ_f[X̃ ỹ]
        let (a11, c1m) = (a.a11(), c1.rb_mut());
        let ld1 = match kf {
            1 => first_term_blocks(K::<1>, tf, a11, l11, &src, c1m),
            2 => first_term_blocks(K::<2>, tf, a11, l11, &src, c1m),
            3 => first_term_blocks(K::<3>, tf, a11, l11, &src, c1m),
            _ => first_term_blocks(kf, tf, a11, l11, &src, c1m),
        };
        let what = "ΛᵀZᵀZΛ + I";
        let mut ld = ld1.ok_or(CoreError::NotPositiveDefinite { what })?;
        *logdet = f64::NAN;
        if let Some(l22) = l22 {
            // L22 needs L21 only through the fill; the grouped fill does not
            // read it, so L21 and the right-hand side of c2 are then computed
            // on a second thread during the sparse factorization.
            let overlap = schur.overlaps_l21();
            let c1 = c1.rb();
            let rest = |l21: &mut L21, c2: MatMut<'_, f64>| {
                l21.compute(&a.a21().val, templates, l11);
                rest_rhs(l21, ztxy, templates, c1, c2);
            };
            if !overlap {
                rest(l21, c2.rb_mut());
            }
            let l21v = &l21.vals.val;
            schur.fill(&FillInputs {
                order,
                pattern,
                a,
                templates,
                l21: l21v,
            });
            if overlap {
                let c2 = c2.rb_mut();
                std::thread::scope(|sc| {
                    sc.spawn(|| rest(l21, c2));
                    l22.factor(&schur.m_val)
                })?;
            } else {
                l22.factor(&schur.m_val)?;
            }
            ld += l22.logdet();
            l22.forward_solve(c2);
        }
        *logdet = ld;
        Ok(ld)
    }

    /// log det(L Lᵀ) = log det M at the last θ.
    pub fn logdet(&self) -> f64 {
        self.logdet
    }
    pub fn order(&self) -> &BlockOrder {
        &self.order
    }
    /// The k_f x k_f block of L11 of first-term level `j`.
    pub fn l11_block(&self, j: usize) -> &[f64] {
        let kk = self.order.kf() * self.order.kf();
        &self.l11[j * kk..(j + 1) * kk]
    }
    /// Every L11 block, level after level.
    pub fn l11_block_all(&self) -> &[f64] {
        &self.l11
    }
    pub fn l21(&self) -> &L21 {
        &self.l21
    }
    /// The sparse factor of the rest (None for a single term).
    pub fn l22(&self) -> Option<&SparseCholesky> {
        self.l22.as_ref()
    }
    pub fn schur(&self) -> &SchurFill {
        &self.schur
    }
    /// The plan of the selected inverse of L22, made by `init` the first
    /// time.
    pub(crate) fn z22_plan(&self, init: impl FnOnce() -> Z22Plan) -> &Z22Plan {
        self.z22_plan.get_or_init(init)
    }
    pub fn schur_mut(&mut self) -> &mut SchurFill {
        &mut self.schur
    }
    /// Stored values of L (L11 blocks, L21 blocks, L22).
    pub fn nnz(&self) -> usize {
        let l22 = self.l22.as_ref().map_or(0, |c| c.factor_nnz());
        self.l11.len() + self.l21.vals.val.len() + l22
    }

    /// `L⁻¹ P̃ b` for `b` (q x m) in lme4's order; the result is in L order.
    pub fn l_solve(&self, b: MatRef<'_, f64>) -> Mat<f64> {
        let order = &*self.order;
        let (kf, qf) = (order.kf(), order.qf());
        let mut out = Mat::<f64>::zeros(b.nrows(), b.ncols());
        let mut bc = vec![0.0; b.nrows()];
        for c in 0..b.ncols() {
            bc.iter_mut().enumerate().for_each(|(i, v)| *v = b[(i, c)]);
            let (y1, z2) = col_mut(out.as_mut(), c).split_at_mut(qf);
            // y1 = L11⁻¹ b1, z2 = b2 − L21 y1
            y1.copy_from_slice(&bc[order.f_range()]);
            order.from_lme4(&bc, z2);
            for j in 0..order.lf() {
                solve_l(self.l11_block(j), kf, &mut y1[j * kf..], 1);
                self.l21.mul_sub(j, &y1[j * kf..(j + 1) * kf], z2);
            }
        }
        if let Some(l22) = &self.l22 {
            l22.forward_solve(out.as_mut().subrows_mut(qf, order.q_rest()));
        }
        out
    }

    /// `P̃ᵀ L⁻ᵀ x` for `x` (q x m) in L order; the result is in lme4's order.
    pub fn lt_solve(&self, x: MatRef<'_, f64>) -> Mat<f64> {
        let order = &*self.order;
        let (kf, qf) = (order.kf(), order.qf());
        let mut w = x.to_owned();
        if let Some(l22) = &self.l22 {
            l22.backward_solve(w.as_mut().subrows_mut(qf, order.q_rest()));
        }
        let mut out = Mat::<f64>::zeros(x.nrows(), x.ncols());
        for c in 0..x.ncols() {
            // x1 = L11⁻ᵀ (y1 − L21ᵀ x2)
            let (x1, x2) = col_mut(w.as_mut(), c).split_at_mut(qf);
            for j in 0..order.lf() {
                let v = &mut x1[j * kf..(j + 1) * kf];
                self.l21.t_mul_sub(j, x2, v);
                solve_lt(self.l11_block(j), kf, v, 1);
            }
            let o = col_mut(out.as_mut(), c);
            o[order.f_range()].copy_from_slice(x1);
            order.to_lme4(x2, o);
        }
        out
    }

    /// `b := M⁻¹ b` for `b` (q x m) in lme4's order.
    pub fn solve(&self, mut b: MatMut<'_, f64>) {
        let y = self.l_solve(b.rb());
        b.copy_from(self.lt_solve(y.as_ref()));
    }

    /// L in compressed columns with its permutation (see [`FactorL`]).
    pub fn to_csc(&self) -> FactorL {
        let order = &*self.order;
        let (kf, qf, q_rest) = (order.kf(), order.qf(), order.q_rest());
        let rest_ext = order.rest_lme4_index();
        let (p22, cp22, ri22, v22) = match &self.l22 {
            Some(ch) => {
                let (cp, ri, v) = ch.factor_csc();
                (ch.perm(), cp, ri, v)
            }
            None => (vec![], vec![0], vec![], vec![]),
        };
        let mut inv22 = vec![0usize; q_rest];
        for (i, &r) in p22.iter().enumerate() {
            inv22[r] = i;
        }
        let mut perm: Vec<usize> = order.f_range().collect();
        perm.extend(p22.iter().map(|&r| rest_ext[r]));
        let mut col_ptr = vec![0usize];
        let (mut row_idx, mut values) = (Vec::new(), Vec::new());
        let mut entries: Vec<(usize, f64)> = Vec::new();
        for j in 0..order.lf() {
            let l = self.l11_block(j);
            for c in 0..kf {
                entries.clear();
                entries.extend((c..kf).map(|r| (j * kf + r, l[r + c * kf])));
                for (ro, kr, lv) in self.l21.level(j) {
                    entries.extend((0..kr).map(|r| (qf + inv22[ro + r], lv[r + c * kr])));
                }
                entries.sort_unstable_by_key(|&(r, _)| r);
                row_idx.extend(entries.iter().map(|e| e.0));
                values.extend(entries.iter().map(|e| e.1));
                col_ptr.push(row_idx.len());
            }
        }
        for c in 0..q_rest {
            row_idx.extend(ri22[cp22[c]..cp22[c + 1]].iter().map(|r| qf + r));
            values.extend_from_slice(&v22[cp22[c]..cp22[c + 1]]);
            col_ptr.push(row_idx.len());
        }
        FactorL {
            perm,
            col_ptr,
            row_idx,
            values,
        }
    }
}

/// `c2 = T_restᵀ Z̃ᵀ_rest[X̃ ỹ] − L21 c1` (before the solve with L22), each
/// column of `ztxy` (rows in lme4's order) gathered into the rest's order.
fn rest_rhs(
    l21: &L21,
    ztxy: MatRef<'_, f64>,
    templates: &[Vec<f64>],
    c1: MatRef<'_, f64>,
    mut c2: MatMut<'_, f64>,
) {
    let order = &*l21.order;
    let kf = order.kf();
    for c in 0..c2.ncols() {
        let dst = col_mut(c2.rb_mut(), c);
        order.from_lme4(col(ztxy, c), dst);
        for rb in 0..order.n_blocks() {
            let (o, k) = (order.off(rb), order.k(rb));
            tt_mul(&templates[order.term(rb)], k, &mut dst[o..o + k]);
        }
        let c1 = col(c1, c);
        for j in 0..order.lf() {
            l21.mul_sub(j, &c1[j * kf..(j + 1) * kf], dst);
        }
    }
}

/// The first term's block-diagonal factor: per level, L = chol(Tᵀ A T + I),
/// and c1 = L⁻¹ Tᵀ (Z̃ᵀ[X̃ ỹ]) for the level's rows (`src`, one slice per
/// column). Returns log det(L11 L11ᵀ), or None when a block is not positive
/// definite. Generic over the block size so that the usual sizes unroll.
#[inline(always)]
fn first_term_blocks<D: Dim>(
    k: D,
    tf: &[f64],
    a11: &[f64],
    l11: &mut [f64],
    src: &[&[f64]],
    mut c1: MatMut<'_, f64>,
) -> Option<f64> {
    let (kn, kk) = (k.get(), k.get() * k.get());
    // T, the level's block, scratch and a column: on the stack (registers
    // for a block size known at compile time) up to 4 x 4
    let mut stack = [0.0f64; 3 * 16 + 4];
    let mut heap;
    let buf: &mut [f64] = if kk <= 16 {
        &mut stack
    } else {
        heap = vec![0.0; 3 * kk + kn];
        &mut heap
    };
    let (t, buf) = buf.split_at_mut(kk);
    let (m, buf) = buf.split_at_mut(kk);
    let (tmp, buf) = buf.split_at_mut(kk);
    let v = &mut buf[..kn];
    t.copy_from_slice(&tf[..kk]);
    let mut ld = LogDet::default();
    for (j, (l, a)) in l11
        .chunks_exact_mut(kk)
        .zip(a11.chunks_exact(kk))
        .enumerate()
    {
        sandwich(t, k, a, t, k, 1.0, tmp, m);
        if !chol_lower(m, k) {
            return None;
        }
        for d in 0..kn {
            ld.push(m[d + d * kn]);
        }
        for (col, s) in src.iter().enumerate() {
            v.copy_from_slice(&s[j * kn..(j + 1) * kn]);
            tt_mul(t, k, v);
            solve_l(m, k, v, 1);
            for (r, &vr) in v.iter().enumerate() {
                c1[(j * kn + r, col)] = vr;
            }
        }
        l.copy_from_slice(m);
    }
    Some(ld.finish())
}
