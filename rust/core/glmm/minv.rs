//! M⁻¹ on the pattern of A_ZZ at the last factorization, stored in A's own
//! layout so that each row finds the entries it needs at fixed offsets.
//!
//! The computation is `logdet_grad`'s (blockwise, as L): Z22 = (L22L22ᵀ)⁻¹
//! on L22's pattern by selected inversion, then per first-term level j, with
//! S the rows of L21[:, j] and Y = L21[S, j] L11_j⁻¹,
//!
//! ```text
//! Z21[S, j] = −Z22[S, S] Y,    Z11_jj = L11_j⁻ᵀ L11_j⁻¹ − Yᵀ Z21[S, j]
//! ```
//!
//! Here the blocks are kept: Z11 per level (k_f x k_f), Z21 in A21's
//! layout (k_rest x k_f at A21's offsets), the rest's diagonal blocks, and
//! Z22 itself for the rest's off-diagonal pairs.

use faer::MatRef;

use crate::core::selinv::{invert_lower, l22_inverse, mul, SelectedInverse};
use crate::core::workspace::Workspace;

/// M⁻¹ on A_ZZ's pattern (see the module's notes).
pub(super) struct MinvA {
    /// Z11_jj per first-term level, k_f x k_f column-major.
    pub f_diag: Vec<f64>,
    /// Z21 in A21's layout: at A21's offset of (level j, rest block rb), the
    /// k_rb x k_f block of M⁻¹[rest coefficients, level j's coefficients].
    pub f_rest: Vec<f64>,
    /// The rest's diagonal blocks, k_rb x k_rb at `rest_off[rb]`.
    pub rest_diag: Vec<f64>,
    pub rest_off: Vec<usize>,
    /// Z22 on L22's pattern (None with a single term), lme4's indices.
    pub z22: Option<SelectedInverse>,
}

/// Per row and rest term, the offset in A21's layout of the block of
/// (the row's first-term level, the row's level of that rest term):
/// `slots[r * n_rest + i]`. Fixed for a model (A21's pattern is).
pub(super) fn row_slots(ws: &Workspace) -> Vec<usize> {
    let order = ws.factor().order();
    let (rest, block0) = (order.rest_terms(), order.block0());
    let n = ws.n();
    let nr = rest.len();
    if nr == 0 {
        return vec![];
    }
    let tt = ws.terms().terms();
    let pat = &*ws.cross_products().a21().pat;
    let (start, level_rows) = ws.terms().rows_by_level(order.first());
    let mut at = vec![usize::MAX; order.n_blocks()];
    let mut slots = vec![0usize; n * nr];
    for j in 0..order.lf() {
        for e in pat.ptr[j]..pat.ptr[j + 1] {
            at[pat.row[e]] = pat.off(e);
        }
        for &r in &level_rows[start[j]..start[j + 1]] {
            let r = r as usize;
            for (i, &t) in rest.iter().enumerate() {
                slots[r * nr + i] = at[block0[i] + tt[t].codes[r] as usize];
            }
        }
    }
    slots
}

impl MinvA {
    /// M⁻¹ on A_ZZ's pattern at the workspace's last factorization.
    ///
    /// Compiled for the processor's vector width (pulp's dispatch, as the
    /// row pass: the same numbers either way).
    pub fn new(ws: &Workspace) -> Self {
        struct Op<'a>(&'a Workspace);
        impl pulp::WithSimd for Op<'_> {
            type Output = MinvA;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> MinvA {
                MinvA::build(self.0)
            }
        }
        pulp::Arch::new().dispatch(Op(ws))
    }

    #[inline(always)]
    fn build(ws: &Workspace) -> Self {
        let fac = ws.factor();
        let order = fac.order();
        let kf = order.kf();
        let rest = order.rest_lme4_index();
        let pat = &*ws.cross_products().a21().pat;
        let (z22, pos22) = l22_inverse(fac);
        let mut f_diag = vec![0.0; order.lf() * kf * kf];
        let mut f_rest = vec![0.0; pat.len];
        // per level: (position in L22, A21 offset of the value, row in the block, k_rb)
        let mut ent: Vec<(usize, usize, usize, usize)> = Vec::new();
        let (mut rows, mut linv, mut lrj, mut y, mut zrr, mut zrj) =
            (vec![], vec![0.0; kf * kf], vec![], vec![], vec![], vec![]);
        let (mut vals, mut idx): (Vec<f64>, Vec<usize>) = (vec![], vec![]);
        for j in 0..order.lf() {
            ent.clear();
            lrj.clear();
            vals.clear();
            for ((ro, kr, lv), e) in fac.l21().level(j).zip(pat.ptr[j]..pat.ptr[j + 1]) {
                for r in 0..kr {
                    ent.push((pos22[ro + r], pat.off(e), r, kr));
                    vals.extend((0..kf).map(|c| lv[r + c * kr]));
                }
            }
            // L21's values in the sorted order of S
            idx.clear();
            idx.extend(0..ent.len());
            // usually sorted already (L21's entries in L22's order)
            if !idx.windows(2).all(|w| ent[w[0]].0 <= ent[w[1]].0) {
                idx.sort_unstable_by_key(|&e| ent[e].0);
            }
            let nr = ent.len();
            lrj.resize(nr * kf, 0.0);
            for (s, &e) in idx.iter().enumerate() {
                for c in 0..kf {
                    lrj[s + c * nr] = vals[e * kf + c];
                }
            }
            linv.fill(0.0);
            invert_lower(kf, fac.l11_block(j), &mut linv);
            let li = MatRef::from_column_major_slice(&linv, kf, kf);
            let zjj = &mut f_diag[j * kf * kf..(j + 1) * kf * kf];
            if kf == 1 {
                zjj[0] = linv[0] * linv[0];
            } else {
                mul(zjj, kf, kf, li.transpose(), li, 1.0, false);
            }
            if let (Some(z22), true) = (&z22, nr > 0) {
                // Z22[S, S], gathered again only when S changes (crossed
                // factors: often every level has the same S)
                if rows.len() != nr || idx.iter().zip(&rows).any(|(&e, &r)| ent[e].0 != r) {
                    rows.clear();
                    rows.extend(idx.iter().map(|&e| ent[e].0));
                    zrr.clear();
                    zrr.resize(nr * nr, 0.0);
                    z22.gather(&rows, &mut zrr);
                }
                y.clear();
                y.resize(nr * kf, 0.0);
                zrj.clear();
                zrj.resize(nr * kf, 0.0);
                if kf == 1 {
                    // scalar first term: the products as plain loops
                    for (yv, l) in y.iter_mut().zip(&lrj) {
                        *yv = l * linv[0];
                    }
                    for (c, &yc) in y.iter().enumerate() {
                        for (z, &m) in zrj.iter_mut().zip(&zrr[c * nr..(c + 1) * nr]) {
                            *z -= m * yc;
                        }
                    }
                    zjj[0] -= y.iter().zip(&zrj).map(|(a, b)| a * b).sum::<f64>();
                } else {
                    let lr = MatRef::from_column_major_slice(&lrj, nr, kf);
                    mul(&mut y, nr, kf, lr, li, 1.0, false);
                    let ym = MatRef::from_column_major_slice(&y, nr, kf);
                    let zr = MatRef::from_column_major_slice(&zrr, nr, nr);
                    mul(&mut zrj, nr, kf, zr, ym, -1.0, false);
                    let zj = MatRef::from_column_major_slice(&zrj, nr, kf);
                    mul(zjj, kf, kf, ym.transpose(), zj, -1.0, true);
                }
                for (s, &e) in idx.iter().enumerate() {
                    let (_, off, r, kr) = ent[e];
                    for c in 0..kf {
                        f_rest[off + r + c * kr] = zrj[s + c * nr];
                    }
                }
            }
        }
        // the rest's diagonal blocks
        let mut rest_off = Vec::with_capacity(order.n_blocks() + 1);
        let mut rest_diag = Vec::new();
        for rb in 0..order.n_blocks() {
            rest_off.push(rest_diag.len());
            let (k, b) = (order.k(rb), rest[order.off(rb)]);
            for c in 0..k {
                for r in 0..k {
                    let v = z22.as_ref().map_or(0.0, |z| z.get(b + r, b + c));
                    rest_diag.push(v);
                }
            }
        }
        rest_off.push(rest_diag.len());
        Self {
            f_diag,
            f_rest,
            rest_diag,
            rest_off,
            z22,
        }
    }
}
