//! Selected inversion: the entries of M⁻¹ on the pattern of L + Lᵀ
//! (Takahashi, Fagan and Chin 1973), from L in compressed columns, by
//! supernodes.
//!
//! Consecutive columns whose patterns nest (column j's rows below the
//! diagonal are exactly column j + 1's rows) form a supernode: columns J with
//! the rows J ∪ R, L_JJ dense lower triangular and L_RJ dense. With
//! Z = (L Lᵀ)⁻¹, Z L = L⁻ᵀ gives, supernode by supernode from the last:
//!
//! ```text
//! Y    = L_RJ L_JJ⁻¹
//! Z_RJ = −Z_RR Y
//! Z_JJ = L_JJ⁻ᵀ L_JJ⁻¹ − Yᵀ Z_RJ
//! ```
//!
//! Z_RR is on the pattern (R is a clique of the filled graph) and belongs to
//! later supernodes, already computed. The first term's levels are
//! supernodes of k_f columns with their L21 rows; a dense block of the rest
//! is one large supernode, inverted with dense products.

use faer::linalg::matmul::matmul;
use faer::linalg::triangular_inverse::invert_lower_triangular;
use faer::reborrow::ReborrowMut;
use faer::{Accum, MatMut, MatRef, Par};

use std::sync::Arc;

use super::factor::{BlockedFactor, FactorL};

/// The structure of the selected inverse for one pattern of L (its
/// supernodes and where Z's values go), found once and reused for every
/// factor with that pattern.
pub struct SelinvPlan {
    /// Position in L order of each random effect (lme4's order; usize::MAX
    /// for those L does not hold).
    pinv: Vec<usize>,
    /// Supernode of each column of L.
    sn_of: Vec<usize>,
    /// Per supernode: first column, its rows (J then R, sorted) at
    /// `rows[row_ptr[s]..row_ptr[s + 1]]`, and Z's values there
    /// ((|J| + |R|) x |J|, column-major) from `z_ptr[s]`.
    start: Vec<usize>,
    row_ptr: Vec<usize>,
    rows: Vec<usize>,
    z_ptr: Vec<usize>,
    /// L's column pointers, and, when L's rows are not sorted within its
    /// columns, the stored value that comes at each sorted position.
    col_ptr: Vec<usize>,
    sorted_from: Option<Vec<usize>>,
}

impl SelinvPlan {
    /// The plan for the pattern of `l` (its values are not read).
    pub fn new(l: &FactorL) -> Self {
        let q = l.perm.len();
        // perm may name a subset of the random effects (L22's)
        let mut pinv = vec![usize::MAX; l.perm.iter().max().map_or(0, |m| m + 1)];
        for (i, &p) in l.perm.iter().enumerate() {
            pinv[p] = i;
        }
        // the rows of each column sorted (the diagonal then first)
        let unsorted = |j: usize| {
            l.row_idx[l.col_ptr[j]..l.col_ptr[j + 1]]
                .windows(2)
                .any(|w| w[0] > w[1])
        };
        let (mut row_idx, mut sorted_from) = (l.row_idx.clone(), None);
        if (0..q).any(unsorted) {
            let mut from: Vec<usize> = (0..l.row_idx.len()).collect();
            for j in 0..q {
                let (p0, p1) = (l.col_ptr[j], l.col_ptr[j + 1]);
                from[p0..p1].sort_unstable_by_key(|&e| l.row_idx[e]);
                for e in p0..p1 {
                    row_idx[e] = l.row_idx[from[e]];
                }
            }
            sorted_from = Some(from);
        }
        let column = |j: usize| &row_idx[l.col_ptr[j]..l.col_ptr[j + 1]];
        // supernodes: column j + 1 joins j's when j's rows below the diagonal
        // are exactly j + 1's rows
        let mut s = Self {
            pinv,
            sn_of: vec![0; q],
            start: vec![],
            row_ptr: vec![0],
            rows: vec![],
            z_ptr: vec![0],
            col_ptr: l.col_ptr.clone(),
            sorted_from,
        };
        let mut j = 0;
        while j < q {
            let j0 = j;
            debug_assert_eq!(column(j0)[0], j0, "the diagonal of L is stored first");
            while j + 1 < q && column(j)[1..] == *column(j + 1) {
                j += 1;
            }
            j += 1;
            let id = s.start.len();
            s.sn_of[j0..j].iter_mut().for_each(|v| *v = id);
            s.start.push(j0);
            s.rows.extend_from_slice(column(j0));
            s.row_ptr.push(s.rows.len());
            let nr = s.row_ptr[id + 1] - s.row_ptr[id];
            s.z_ptr.push(s.z_ptr[id] + nr * (j - j0));
        }
        s.start.push(q);
        s
    }

    /// Where (M⁻¹)_ij (lme4's order, on the pattern of L + Lᵀ) is stored in
    /// [`SelectedInverse::values`]; None off the pattern. The same for every
    /// factor with the same pattern.
    pub fn index(&self, i: usize, j: usize) -> Option<usize> {
        let (a, b) = (self.pinv[i], self.pinv[j]);
        let (r, c) = if a >= b { (a, b) } else { (b, a) };
        let t = self.sn_of[c];
        let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
        let e = trows.binary_search(&r).ok()?;
        Some(self.z_ptr[t] + (c - self.start[t]) * trows.len() + e)
    }
}

/// M⁻¹ on the pattern of L (lower triangle, in L order), by supernodes, with
/// the map from lme4's order.
pub struct SelectedInverse {
    plan: Arc<SelinvPlan>,
    z: Vec<f64>,
}

impl std::ops::Deref for SelectedInverse {
    type Target = SelinvPlan;
    fn deref(&self) -> &SelinvPlan {
        &self.plan
    }
}

/// The selected inverse of L22 (its rows: L22's positions) and the position
/// in L22 of each rest coefficient; `(None, [])` for a model of one term.
pub(crate) fn l22_inverse(fac: &BlockedFactor) -> (Option<SelectedInverse>, Vec<usize>) {
    let Some(ch) = fac.l22() else {
        return (None, vec![]);
    };
    let rest = fac.order().rest_lme4_index();
    let (col_ptr, row_idx, values) = ch.factor_csc();
    let p22 = ch.perm();
    let mut pos = vec![0usize; p22.len()];
    for (i, &r) in p22.iter().enumerate() {
        pos[r] = i;
    }
    let perm = p22.iter().map(|&r| rest[r]).collect();
    let z = SelectedInverse::new(FactorL {
        perm,
        col_ptr,
        row_idx,
        values,
    });
    (Some(z), pos)
}

impl SelectedInverse {
    /// The selected inverse of L Lᵀ.
    pub fn new(l: FactorL) -> Self {
        Self::with_plan(Arc::new(SelinvPlan::new(&l)), &l.values)
    }

    /// The selected inverse of L Lᵀ for an L with the plan's pattern and
    /// these values (stored as in the L the plan was made from).
    pub fn with_plan(plan: Arc<SelinvPlan>, values: &[f64]) -> Self {
        let sorted: Vec<f64>;
        let values = match &plan.sorted_from {
            Some(from) => {
                sorted = from.iter().map(|&e| values[e]).collect();
                &sorted[..]
            }
            None => values,
        };
        let mut s = Self {
            z: vec![0.0; *plan.z_ptr.last().unwrap()],
            plan,
        };
        let mut scratch = Scratch::default();
        for sn in (0..s.start.len() - 1).rev() {
            s.invert_supernode(values, sn, &mut scratch);
        }
        s
    }

    fn invert_supernode(&mut self, values: &[f64], sn: usize, sc: &mut Scratch) {
        let (c0, c1) = (self.start[sn], self.start[sn + 1]);
        let nj = c1 - c0;
        let (r0, r1) = (self.row_ptr[sn], self.row_ptr[sn + 1]);
        let nr = r1 - r0 - nj;
        // L_JJ and L_RJ, dense
        let [ljj, linv, lrj, y, zrr, zrj, zjj] = sc.take([
            nj * nj,
            nj * nj,
            nr * nj,
            nr * nj,
            nr * nr,
            nr * nj,
            nj * nj,
        ]);
        for c in 0..nj {
            let vals = &values[self.col_ptr[c0 + c]..self.col_ptr[c0 + c + 1]];
            for (e, &v) in vals.iter().enumerate() {
                let r = c + e;
                if r < nj {
                    ljj[r + c * nj] = v;
                } else {
                    lrj[r - nj + c * nr] = v;
                }
            }
        }
        linv.fill(0.0);
        invert_lower(nj, ljj, linv);
        let linv = view(linv, nj, nj);
        if nj * nj * nj.max(nr) <= SMALL || nj <= NARROW {
            mul(zjj, nj, nj, linv.transpose(), linv, 1.0, false);
            if nr > 0 {
                mul(y, nr, nj, view(lrj, nr, nj), linv, 1.0, false);
                self.sym_mul(&self.rows[r0 + nj..r1], y, nj, zrj);
                let y = view(y, nr, nj);
                mul(zjj, nj, nj, y.transpose(), view(zrj, nr, nj), -1.0, true);
            }
        } else {
            // wide: the triangular and symmetric shapes halve the work
            use faer::linalg::matmul::triangular::{matmul as tmul, BlockStructure as Bs};
            let zm = MatMut::from_column_major_slice_mut(&mut *zjj, nj, nj);
            let pj = par(nj * nj * nj);
            tmul(
                zm,
                Bs::TriangularLower,
                Accum::Replace,
                linv.transpose(),
                Bs::TriangularUpper,
                linv,
                Bs::TriangularLower,
                1.0,
                pj,
            );
            if nr > 0 {
                let pr = par(nr * nj * nj.max(nr));
                let ym = MatMut::from_column_major_slice_mut(&mut *y, nr, nj);
                let lr = view(lrj, nr, nj);
                tmul(
                    ym,
                    Bs::Rectangular,
                    Accum::Replace,
                    lr,
                    Bs::Rectangular,
                    linv,
                    Bs::TriangularLower,
                    1.0,
                    pr,
                );
                // Z_RR y from its lower triangle: (lower part) y + (strict
                // lower part)ᵀ y
                self.gather_lower(&self.rows[r0 + nj..r1], zrr);
                let y = view(y, nr, nj);
                let zr = view(zrr, nr, nr);
                let mut zm = MatMut::from_column_major_slice_mut(&mut *zrj, nr, nj);
                for (a, structure, accum) in [
                    (zr, Bs::TriangularLower, Accum::Replace),
                    (zr.transpose(), Bs::StrictTriangularUpper, Accum::Add),
                ] {
                    tmul(
                        zm.rb_mut(),
                        Bs::Rectangular,
                        accum,
                        a,
                        structure,
                        y,
                        Bs::Rectangular,
                        -1.0,
                        pr,
                    );
                }
                let zm = MatMut::from_column_major_slice_mut(&mut *zjj, nj, nj);
                tmul(
                    zm,
                    Bs::TriangularLower,
                    Accum::Add,
                    y.transpose(),
                    Bs::Rectangular,
                    view(zrj, nr, nj),
                    Bs::Rectangular,
                    -1.0,
                    pr,
                );
            }
            for c in 0..nj {
                for r in 0..c {
                    zjj[r + c * nj] = zjj[c + r * nj];
                }
            }
        }
        let (z0, z1) = (self.z_ptr[sn], self.z_ptr[sn + 1]);
        let z = &mut self.z[z0..z1];
        let ld = nj + nr;
        for c in 0..nj {
            z[c * ld..c * ld + nj].copy_from_slice(&zjj[c * nj..(c + 1) * nj]);
            z[c * ld + nj..(c + 1) * ld].copy_from_slice(&zrj[c * nr..(c + 1) * nr]);
        }
    }

    /// `out = −Z_RR y` for the sorted rows `r` of a supernode and `y`
    /// (|r| x m, column-major), from the later supernodes' lower triangles
    /// without forming Z_RR: each stored entry is found once (see
    /// [`gather`](Self::gather)) and used for both of its halves.
    fn sym_mul(&self, r: &[usize], y: &[f64], m: usize, out: &mut [f64]) {
        let n = r.len();
        out[..n * m].fill(0.0);
        for b in 0..n {
            let t = self.sn_of[r[b]];
            let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
            let ld = trows.len();
            let zt = &self.z[self.z_ptr[t] + (r[b] - self.start[t]) * ld..][..ld];
            let (s0, s1) = (self.start[t], self.start[t + 1]);
            let mut e = r[b] - s0;
            for c in 0..m {
                out[b + c * n] -= zt[e] * y[b + c * n];
            }
            for a in b + 1..n {
                e = if r[a] < s1 {
                    r[a] - s0
                } else if e + 1 < ld && trows[e + 1] == r[a] {
                    e + 1
                } else {
                    advance(trows, e.max(s1 - s0), r[a])
                };
                debug_assert_eq!(trows[e], r[a], "rows of a supernode form a clique");
                let zv = zt[e];
                for c in 0..m {
                    let (ia, ib) = (a + c * n, b + c * n);
                    out[ia] -= zv * y[ib];
                    out[ib] -= zv * y[ia];
                }
            }
        }
    }

    /// The lower triangle of Z_RR (see [`gather`](Self::gather); the upper
    /// triangle of `out` is not written).
    fn gather_lower(&self, r: &[usize], out: &mut [f64]) {
        let n = r.len();
        for b in 0..n {
            let t = self.sn_of[r[b]];
            let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
            let ld = trows.len();
            let zt = &self.z[self.z_ptr[t] + (r[b] - self.start[t]) * ld..][..ld];
            let (s0, s1) = (self.start[t], self.start[t + 1]);
            let col = &mut out[b * n..(b + 1) * n];
            let mut e = r[b] - s0;
            col[b] = zt[e];
            let mut a = b + 1;
            while a < n {
                e = if r[a] < s1 {
                    r[a] - s0
                } else {
                    advance(trows, e.max(s1 - s0), r[a])
                };
                // a run of consecutive rows on both sides is one copy
                let mut k = 1;
                while a + k < n && e + k < ld && r[a + k] == r[a] + k && trows[e + k] == r[a] + k {
                    k += 1;
                }
                col[a..a + k].copy_from_slice(&zt[e..e + k]);
                a += k;
                e += k - 1;
            }
        }
    }

    /// Z_RR (full) for the sorted rows `r` of a supernode, from the later
    /// supernodes: column r[b] lives in supernode t, which holds every r[a]
    /// with a ≥ b among its rows.
    pub(crate) fn gather(&self, r: &[usize], out: &mut [f64]) {
        let n = r.len();
        // the supernodes of r's columns come in order; within supernode t,
        // the rows are sorted
        for b in 0..n {
            let t = self.sn_of[r[b]];
            let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
            let ld = trows.len();
            let zt = &self.z[self.z_ptr[t] + (r[b] - self.start[t]) * ld..][..ld];
            let (s0, s1) = (self.start[t], self.start[t + 1]);
            let mut e = s1 - s0;
            for a in b..n {
                // t's own columns are its first rows, in order; the rest
                // of its rows are walked
                if r[a] < s1 {
                    e = r[a] - s0;
                } else {
                    e = advance(trows, e.max(s1 - s0), r[a]);
                }
                debug_assert_eq!(trows[e], r[a], "rows of a supernode form a clique");
                out[a + b * n] = zt[e];
                out[b + a * n] = zt[e];
            }
        }
    }

    /// (M⁻¹)_ij for random effects `i`, `j` in lme4's order; 0 off the
    /// pattern of L + Lᵀ (where M⁻¹ is not computed).
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.pinv[i], self.pinv[j]);
        let (r, c) = if a >= b { (a, b) } else { (b, a) };
        let t = self.sn_of[c];
        let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
        match trows.binary_search(&r) {
            Ok(e) => self.z[self.z_ptr[t] + (c - self.start[t]) * trows.len() + e],
            Err(_) => {
                debug_assert!(false, "({i}, {j}) is not on the pattern of L + Lᵀ");
                0.0
            }
        }
    }

    /// The stored values of M⁻¹ (see [`SelinvPlan::index`]).
    pub fn values(&self) -> &[f64] {
        &self.z
    }

    /// Z on the pattern of L + Lᵀ (0 elsewhere), dense in L order: for
    /// tests.
    #[cfg(test)]
    pub fn dense_l_order(&self) -> faer::Mat<f64> {
        let q = self.sn_of.len();
        let mut out = faer::Mat::<f64>::zeros(q, q);
        for t in 0..self.start.len() - 1 {
            let trows = &self.rows[self.row_ptr[t]..self.row_ptr[t + 1]];
            for c in self.start[t]..self.start[t + 1] {
                let zt = &self.z[self.z_ptr[t] + (c - self.start[t]) * trows.len()..];
                for (e, &r) in trows.iter().enumerate() {
                    if r >= c {
                        out[(r, c)] = zt[e];
                        out[(c, r)] = zt[e];
                    }
                }
            }
        }
        out
    }
}

/// The first position at or after `e` where the sorted `rows` reach
/// `target` (galloping: rows of a dense supernode are found in a step or
/// two, far rows in a few).
#[inline]
fn advance(rows: &[usize], mut e: usize, target: usize) -> usize {
    if rows[e] >= target {
        return e;
    }
    let mut step = 1;
    while e + step < rows.len() && rows[e + step] < target {
        e += step;
        step <<= 1;
    }
    let hi = (e + step).min(rows.len());
    e + 1 + rows[e + 1..hi].partition_point(|&x| x < target)
}

/// Reused buffers of the dense blocks of one supernode.
#[derive(Default)]
struct Scratch {
    buf: Vec<f64>,
}

impl Scratch {
    /// Seven buffers of the given lengths, not cleared (each is written
    /// before it is read, the upper triangle of L_JJ⁻¹ excepted).
    fn take(&mut self, lens: [usize; 7]) -> [&mut [f64]; 7] {
        let total: usize = lens.iter().sum();
        if self.buf.len() < total {
            self.buf.resize(total, 0.0);
        }
        let mut rest = self.buf.as_mut_slice();
        lens.map(|n| {
            let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
            rest = tail;
            head
        })
    }
}

fn view(v: &[f64], m: usize, n: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(v, m, n)
}

/// Supernodes at most this wide multiply by Z_RR entry by entry
/// (`sym_mul`); wider ones gather it for a dense product.
const NARROW: usize = 2;

/// Products below this many multiply-adds are plain loops (no dispatch).
const SMALL: usize = 4096;

/// Both cores for the products of wide dense supernodes (crossed designs).
fn par(work: usize) -> Par {
    if work >= 1 << 21 {
        Par::rayon(0)
    } else {
        Par::Seq
    }
}

/// `out (m x n) = alpha a b` (or `+=` with `add`).
pub(crate) fn mul(
    out: &mut [f64],
    m: usize,
    n: usize,
    a: MatRef<'_, f64>,
    b: MatRef<'_, f64>,
    alpha: f64,
    add: bool,
) {
    let kk = a.ncols();
    if m * n * kk <= SMALL {
        for c in 0..n {
            for r in 0..m {
                let mut s = 0.0;
                for i in 0..kk {
                    s += a[(r, i)] * b[(i, c)];
                }
                let o = &mut out[r + c * m];
                *o = if add { *o + alpha * s } else { alpha * s };
            }
        }
        return;
    }
    let accum = if add { Accum::Add } else { Accum::Replace };
    let out = MatMut::from_column_major_slice_mut(out, m, n);
    matmul(out, accum, a, b, alpha, par(m * n * kk));
}

/// `inv = L⁻¹` for lower-triangular `L` (n x n); `inv` starts zeroed.
pub(crate) fn invert_lower(n: usize, l: &[f64], inv: &mut [f64]) {
    if n * n * n > SMALL {
        let src = MatRef::from_column_major_slice(l, n, n);
        let mut dst = MatMut::from_column_major_slice_mut(inv, n, n);
        invert_lower_triangular(dst.as_mut(), src, par(n * n * n));
        for c in 0..n {
            for r in 0..c {
                dst[(r, c)] = 0.0;
            }
        }
        return;
    }
    for c in 0..n {
        inv[c + c * n] = 1.0 / l[c + c * n];
        for r in c + 1..n {
            let mut s = 0.0;
            for i in c..r {
                s += l[r + i * n] * inv[i + c * n];
            }
            inv[r + c * n] = -s / l[r + r * n];
        }
    }
}
