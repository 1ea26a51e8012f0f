//! ∂ log det M / ∂θ_i = tr(M⁻¹ ∂M_i) = 2 Σ_l G_ll[c_i, r_i] with
//! G_ll = Σ_a (M⁻¹)_la T_aᵀ (A_ZZ)_al, from M⁻¹ on the pattern of A_ZZ only.
//!
//! M⁻¹ = Z is computed blockwise, as L is:
//!
//! ```text
//! Z22 = (L22 L22ᵀ)⁻¹ on L22's pattern           (selected inversion, selinv)
//! per first-term level j, with S the rows of L21[:, j] and Y = L21[S, j] L11_j⁻¹:
//! Z21[S, j] = −Z22[S, S] Y
//! Z11_jj   = L11_j⁻ᵀ L11_j⁻¹ − Yᵀ Z21[S, j]
//! ```
//!
//! A21 has L21's pattern, so the first term's blocks of Z are used at once,
//! level by level, and never stored.

use super::error::Result;
use super::gradient::Block;
use super::selinv::{invert_lower, l22_inverse, mul};
use super::small::tt_mul;
use super::workspace::Workspace;
use faer::MatRef;

/// Adds block `blk` of A_ZZ's contribution to `s[t] = Σ_l G_ll` (k x k per
/// term t, column-major); `z(i, j)` is (M⁻¹)_ij in lme4's order.
fn add_block(
    ws: &Workspace,
    s: &mut [Vec<f64>],
    w: &mut [f64],
    blk: &Block<'_>,
    z: impl Fn(usize, usize) -> f64,
) {
    let (layout, templates) = (ws.layout(), ws.templates());
    let (ka, kb) = (layout[blk.ta].k, layout[blk.tb].k);
    // G_bb += Z_ba T_aᵀ A_ab
    half(
        &mut s[blk.tb],
        (kb, ka),
        &templates[blk.ta],
        |m, y| blk.v[m + y * ka],
        |x, m| z(blk.b + x, blk.a + m),
        w,
    );
    if blk.a != blk.b {
        // G_aa += Z_ab T_bᵀ A_abᵀ
        half(
            &mut s[blk.ta],
            (ka, kb),
            &templates[blk.tb],
            |m, y| blk.v[y + m * ka],
            |x, m| z(blk.a + x, blk.b + m),
            w,
        );
    }
}

/// `out += Z W` with `W = Tᵀ A` (k_in x k_out), for `a(m, y)` = A[m, y] and
/// `z(x, m)` the (k_out x k_in) block of M⁻¹: one half of a block's
/// contribution to `add_block`.
fn half(
    out: &mut [f64],
    (k_out, k_in): (usize, usize),
    t: &[f64],
    a: impl Fn(usize, usize) -> f64,
    z: impl Fn(usize, usize) -> f64,
    w: &mut [f64],
) {
    for y in 0..k_out {
        let wc = &mut w[y * k_in..(y + 1) * k_in];
        for (m, v) in wc.iter_mut().enumerate() {
            *v = a(m, y);
        }
        tt_mul(t, k_in, wc);
    }
    for y in 0..k_out {
        for x in 0..k_out {
            let mut acc = 0.0;
            for m in 0..k_in {
                acc += z(x, m) * w[m + y * k_in];
            }
            out[x + y * k_out] += acc;
        }
    }
}

impl Workspace {
    /// ∂ log det M / ∂θ at the last θ.
    pub fn logdet_m_gradient(&self) -> Result<Vec<f64>> {
        if let Some(g) = self.logdet_m_gradient_scalar()? {
            return Ok(g);
        }
        self.evaluation()?;
        let (layout, fac) = (self.layout(), self.factor());
        let order = fac.order();
        let (kf, q) = (order.kf(), self.q());
        let f0 = order.f_range().start;
        let rest = order.rest_lme4_index();
        // Z22 on L22's pattern (its rows are L22's positions), and the
        // position in L22 of each rest coefficient
        let (z22, pos22) = l22_inverse(fac);
        let mut s: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let kmax = layout.iter().map(|l| l.k).max().unwrap_or(1);
        let mut w = vec![0.0; kmax * kmax];
        // per level: the rows S of L21[:, j] as (position in L22, rest
        // coefficient, its values at offset), sorted by position
        let mut ent: Vec<(usize, usize, usize)> = Vec::new();
        let mut vals: Vec<f64> = Vec::new();
        let mut rows: Vec<usize> = Vec::new();
        let mut slot = vec![usize::MAX; q];
        let (mut linv, mut lrj, mut y, mut zrr, mut zrj, mut zjj) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for j in 0..order.lf() {
            ent.clear();
            vals.clear();
            for (ro, kr, lv) in fac.l21().level(j) {
                for r in 0..kr {
                    ent.push((pos22[ro + r], ro + r, vals.len()));
                    vals.extend((0..kf).map(|c| lv[r + c * kr]));
                }
            }
            ent.sort_unstable_by_key(|e| e.0);
            let nr = ent.len();
            rows.clear();
            rows.extend(ent.iter().map(|e| e.0));
            for buf in [&mut linv, &mut zjj] {
                buf.clear();
                buf.resize(kf * kf, 0.0);
            }
            for buf in [&mut lrj, &mut y, &mut zrj] {
                buf.clear();
                buf.resize(nr * kf, 0.0);
            }
            invert_lower(kf, fac.l11_block(j), &mut linv);
            let li = MatRef::from_column_major_slice(&linv, kf, kf);
            mul(&mut zjj, kf, kf, li.transpose(), li, 1.0, false);
            if let (Some(z22), true) = (&z22, nr > 0) {
                for (e, &(_, _, vo)) in ent.iter().enumerate() {
                    for c in 0..kf {
                        lrj[e + c * nr] = vals[vo + c];
                    }
                }
                zrr.clear();
                zrr.resize(nr * nr, 0.0);
                z22.gather(&rows, &mut zrr);
                let lr = MatRef::from_column_major_slice(&lrj, nr, kf);
                mul(&mut y, nr, kf, lr, li, 1.0, false);
                let ym = MatRef::from_column_major_slice(&y, nr, kf);
                let zr = MatRef::from_column_major_slice(&zrr, nr, nr);
                mul(&mut zrj, nr, kf, zr, ym, -1.0, false);
                let zj = MatRef::from_column_major_slice(&zrj, nr, kf);
                mul(&mut zjj, kf, kf, ym.transpose(), zj, -1.0, true);
            }
            // local numbering: the level's kf coefficients, then S
            let base = f0 + j * kf;
            for x in 0..kf {
                slot[base + x] = x;
            }
            for (e, &(_, ri, _)) in ent.iter().enumerate() {
                slot[rest[ri]] = kf + e;
            }
            let z = |i: usize, k: usize| {
                let (a, b) = (slot[i], slot[k]);
                match (a < kf, b < kf) {
                    (true, true) => zjj[a + b * kf],
                    (true, false) => zrj[(b - kf) + a * nr],
                    (false, true) => zrj[(a - kf) + b * nr],
                    (false, false) => unreachable!("a first-term block has a first-term side"),
                }
            };
            self.for_each_first_block(j, &rest, |blk| add_block(self, &mut s, &mut w, &blk, z));
            for x in 0..kf {
                slot[base + x] = usize::MAX;
            }
            for &(_, ri, _) in &ent {
                slot[rest[ri]] = usize::MAX;
            }
        }
        if let Some(z22) = &z22 {
            self.for_each_rest_block(&rest, |blk| {
                add_block(self, &mut s, &mut w, &blk, |i, k| z22.get(i, k))
            });
        }
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
}
