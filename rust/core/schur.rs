//! The Schur complement `M22 − L21 L21ᵀ` in the pattern of the sparse factor
//! L22, filled at each θ.
//!
//! Three fills: blocks of any size; scalar blocks filled directly, by column
//! chunks of about equal work on scoped threads when the work is large (the
//! Schur complements of crossed designs); and scalar blocks grouped by
//! classes of the first term's diagonal values (`schur_classes.rs`), chosen
//! when it saves enough multiply-adds.

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use super::crossprod::{BlockColumns, CrossProducts};
use super::order::BlockOrder;
use super::pattern::Pattern;
use super::schur_classes::{ClassSchur, ScalarParts};
use super::small::{consecutive, sandwich};

/// Schur-complement updates per evaluation above which the fill is split
/// across threads.
pub(super) const PARALLEL_SCHUR_MIN_WORK: usize = 250_000;

/// The grouped Schur fill is used when it needs at most this fraction of the
/// direct fill's multiply-adds.
const CLASS_MAX_RATIO: f64 = 0.9;

/// Boundaries splitting `work` (per column) into `parts` chunks of about equal
/// total, or one chunk when the total is below `min_total`.
pub(super) fn chunk_bounds(work: &[usize], min_total: usize, parts: usize) -> Vec<usize> {
    let total: usize = work.iter().sum();
    let n = work.len();
    if total < min_total || parts < 2 || n < 2 {
        return vec![0, n];
    }
    let mut bounds = vec![0];
    let mut acc = 0;
    for (c, &w) in work.iter().enumerate() {
        acc += w;
        if acc * parts >= total * bounds.len() && bounds.len() < parts && c + 1 < n {
            bounds.push(c + 1);
        }
    }
    bounds.push(n);
    bounds
}

/// Runs `f(c0, c1, values, extra)` for each chunk `c0..c1` of the columns
/// split at `bounds`, with the chunk's disjoint slice of `vals` (columns laid
/// out by `col_ptr`) and its own `extra`. Scoped threads rather than the
/// rayon pool: the calling thread takes the first chunk itself, and no chunk
/// waits for a sleeping worker.
pub(super) fn for_each_column_chunk<T: Send>(
    bounds: &[usize],
    col_ptr: &[usize],
    vals: &mut [f64],
    extra: &mut [T],
    f: impl Fn(usize, usize, &mut [f64], &mut T) + Sync,
) {
    let mut chunks = Vec::with_capacity(bounds.len() - 1);
    let mut rest = vals;
    for (w, ex) in bounds.windows(2).zip(extra) {
        let (head, tail) = rest.split_at_mut(col_ptr[w[1]] - col_ptr[w[0]]);
        chunks.push((w[0], w[1], head, ex));
        rest = tail;
    }
    let f = &f;
    std::thread::scope(|sc| {
        let mut it = chunks.into_iter();
        let (c0, c1, first, ex) = it.next().unwrap();
        for (a, b, v, e) in it {
            sc.spawn(move || f(a, b, v, e));
        }
        f(c0, c1, first, ex);
    });
}

/// What a fill reads at θ.
pub struct FillInputs<'a> {
    pub order: &'a BlockOrder,
    pub pattern: &'a Pattern,
    pub a: &'a CrossProducts,
    pub templates: &'a [Vec<f64>],
    /// The values of L21 (in A21's pattern); the grouped fill does not read
    /// them.
    pub l21: &'a [f64],
}

/// The values of `M22 − L21 L21ᵀ` and the scratch and plan of their fill.
#[derive(Clone)]
pub struct SchurFill {
    scalar: bool,
    /// The lower triangle in the pattern's scalar compressed columns.
    pub(super) m_val: Vec<f64>,
    /// Scalar fill: column chunk boundaries, an accumulator per chunk, the
    /// grouped form when it is used, and θ of each rest block (scratch).
    chunks: Vec<usize>,
    chunk_acc: Vec<Vec<f64>>,
    classes: Option<ClassSchur>,
    theta_r: Vec<f64>,
    /// Σⱼ L21[:, j] L21[:, j]ᵀ (q_rest x q_rest) when the direct scalar fill
    /// forms it as one dense product (see [`dense_product`](Self::dense_product)).
    dense: Option<Mat<f64>>,
    /// Fill of blocks of any size: a q_rest x k_max accumulator and scratch.
    acc: Vec<f64>,
    tmp: Vec<f64>,
    out: Vec<f64>,
}

impl SchurFill {
    pub fn new(scalar: bool, order: &BlockOrder, pattern: &Pattern, a: &CrossProducts) -> Self {
        let (nb, q_rest) = (order.n_blocks(), order.q_rest());
        let kmax = order.k_max();
        let acc_len = if scalar { 0 } else { q_rest * kmax };
        let threads = rayon::current_num_threads();
        let mut s = Self {
            scalar,
            m_val: vec![0.0; pattern.nnz()],
            chunks: vec![0, nb],
            chunk_acc: vec![vec![0.0; q_rest]],
            classes: None,
            theta_r: vec![0.0; nb],
            dense: None,
            acc: vec![0.0; acc_len],
            tmp: vec![0.0; kmax * kmax],
            out: vec![0.0; kmax * kmax],
        };
        s.split(order, pattern, a, PARALLEL_SCHUR_MIN_WORK, threads);
        s.group(pattern, a, CLASS_MAX_RATIO, threads);
        s.dense = s.dense_product(order, pattern, a);
        s
    }

    /// The dense form of the direct scalar fill's products, when every
    /// first-term level meets every rest level (fully crossed scalar terms)
    /// and the fill is too small to be split across threads (so one chunk
    /// on any number of threads, and at most about 700 x 700): L21's values
    /// are then a dense q_rest x l_f column-major matrix, and
    /// Σⱼ L21[:, j] L21[:, j]ᵀ one matrix product rather than q_rest short
    /// updates per level (VerbAgg's 316 x 24 fill: 34 µs as updates).
    fn dense_product(
        &self,
        order: &BlockOrder,
        pattern: &Pattern,
        a: &CrossProducts,
    ) -> Option<Mat<f64>> {
        let (q_rest, ptr) = (order.q_rest(), &a.a21().pat.ptr);
        // every level in every rest row, and M22's pattern the whole lower triangle
        let full = ptr.windows(2).all(|w| w[1] - w[0] == q_rest)
            && (0..q_rest).all(|c| pattern.m_rows(c).len() == q_rest - c);
        let small =
            || scalar_fill_work(order, pattern, a).iter().sum::<usize>() < PARALLEL_SCHUR_MIN_WORK;
        (self.scalar && q_rest > 0 && full && small()).then(|| Mat::zeros(q_rest, q_rest))
    }

    /// Splits the scalar direct fill into `parts` chunks of about equal work
    /// when the work is at least `min_work`.
    fn split(
        &mut self,
        order: &BlockOrder,
        pattern: &Pattern,
        a: &CrossProducts,
        min_work: usize,
        parts: usize,
    ) {
        let nb = order.n_blocks();
        self.chunks = if self.scalar {
            chunk_bounds(&scalar_fill_work(order, pattern, a), min_work, parts)
        } else {
            vec![0, nb]
        };
        self.chunk_acc = vec![vec![0.0; order.q_rest()]; self.chunks.len() - 1];
    }

    /// Switches the scalar fill to the grouped form when it saves enough
    /// work (see `schur_classes.rs`). Called again for new weights.
    pub fn group(&mut self, pattern: &Pattern, a: &CrossProducts, max_ratio: f64, threads: usize) {
        self.classes = None;
        if self.scalar && !self.theta_r.is_empty() {
            let parts = ScalarParts {
                a11: a.a11(),
                a21: &a.a21().pat,
                a21_val: &a.a21().val,
                a21t_ptr: &pattern.a21t().ptr,
                a21t: &pattern.a21t().entries,
                a22d: a.a22d(),
                a22: &a.a22().pat,
                a22_val: &a.a22().val,
                m_ptr: &pattern.m_col_ptr,
                m_row: &pattern.m_brow,
            };
            self.classes = ClassSchur::build(&parts, max_ratio, threads);
        }
    }

    /// Drops the grouped form: the direct fill is used (PIRLS's working
    /// weights differ row by row, so levels rarely share a diagonal value
    /// and grouping them would cost more than it saves).
    pub fn ungroup(&mut self) {
        self.classes = None;
    }

    /// [`group`](Self::group) with the default choice, for new weights.
    pub fn regroup(&mut self, pattern: &Pattern, a: &CrossProducts) {
        self.group(pattern, a, CLASS_MAX_RATIO, rayon::current_num_threads());
    }

    /// The direct scalar fill (no classes) or the grouped one whatever it
    /// saves (tests of both paths).
    #[cfg(test)]
    pub(crate) fn force_classes(&mut self, on: bool, pattern: &Pattern, a: &CrossProducts) {
        if on {
            self.group(pattern, a, f64::INFINITY, 1);
        } else {
            self.classes = None;
        }
    }

    /// The direct scalar fill as one dense product when the design allows
    /// it (`on`), or as updates (tests of both).
    #[cfg(test)]
    pub(crate) fn force_dense(
        &mut self,
        on: bool,
        order: &BlockOrder,
        pattern: &Pattern,
        a: &CrossProducts,
    ) {
        self.dense = if on {
            self.dense_product(order, pattern, a)
        } else {
            None
        };
    }

    /// Whether the direct scalar fill is one dense product.
    pub fn is_dense(&self) -> bool {
        self.dense.is_some()
    }

    /// Splits either scalar fill into `parts` chunks whatever the work (tests).
    #[cfg(test)]
    pub(crate) fn force_chunks(
        &mut self,
        parts: usize,
        order: &BlockOrder,
        pattern: &Pattern,
        a: &CrossProducts,
    ) {
        self.split(order, pattern, a, 0, parts);
        if self.chunks.len() > 2 {
            self.dense = None;
        }
        if let Some(c) = self.classes.as_mut() {
            c.split(&pattern.m_col_ptr, parts);
        }
    }

    /// Multiply-adds of the grouped fill per evaluation (0 when the direct
    /// fill is used).
    pub fn class_work(&self) -> usize {
        self.classes.as_ref().map_or(0, |c| c.work())
    }

    /// Number of chunks (threads) the direct scalar fill is split into.
    pub fn n_chunks(&self) -> usize {
        self.chunks.len() - 1
    }

    /// Whether the fill does not read L21, and is split across threads: L21
    /// can then be computed during the sparse factorization.
    pub fn overlaps_l21(&self) -> bool {
        self.classes.as_ref().is_some_and(|c| c.chunks.len() > 2)
    }

    /// For the gradient when every term is scalar (`grad_scalar.rs`): with
    /// w_j = θ_f² / (θ_f² a11_j + 1) and w'_j = ∂w_j/∂θ_f, the values of
    /// `g = A22 − A21 diag(w) A21ᵀ` and `h = A21 diag(w') A21ᵀ` in the
    /// pattern's positions (M22 − L21L21ᵀ = Θ g Θ + I, Θ the rest's θ).
    pub fn scalar_derivatives(&self, inp: &FillInputs<'_>, g: &mut [f64], h: &mut [f64]) {
        debug_assert!(self.scalar);
        let theta_f = inp.templates[inp.order.first()][0];
        if let Some(cl) = &self.classes {
            return cl.derivatives(theta_f, g, h);
        }
        let (pattern, a) = (inp.pattern, inp.a);
        let t2 = theta_f * theta_f;
        let (w, w2): (Vec<f64>, Vec<f64>) = a
            .a11()
            .iter()
            .map(|&v| {
                let den = t2 * v + 1.0;
                (t2 / den, 2.0 * theta_f / (den * den))
            })
            .unzip();
        let (a21, a22, a22d) = (a.a21(), a.a22(), a.a22d());
        let nb = inp.order.n_blocks();
        let (mut acc_g, mut acc_h) = (vec![0.0; nb], vec![0.0; nb]);
        for c in 0..nb {
            acc_g[c] = a22d[c];
            for e in a22.pat.ptr[c]..a22.pat.ptr[c + 1] {
                acc_g[a22.pat.row[e]] += a22.val[e];
            }
            for (j, ec) in pattern.a21_row(c) {
                let end = a21.pat.ptr[j + 1];
                let (ag, ah) = (a21.val[ec] * w[j], a21.val[ec] * w2[j]);
                for (&r, &v) in a21.pat.row[ec..end].iter().zip(&a21.val[ec..end]) {
                    acc_g[r] -= v * ag;
                    acc_h[r] += v * ah;
                }
            }
            let p0 = pattern.m_col_ptr[c];
            for (e, &r) in pattern.m_rows(c).iter().enumerate() {
                g[p0 + e] = acc_g[r];
                h[p0 + e] = acc_h[r];
                acc_g[r] = 0.0;
                acc_h[r] = 0.0;
            }
        }
    }

    /// Fills the values of the lower triangle of M22 − L21 L21ᵀ at θ.
    pub fn fill(&mut self, inp: &FillInputs<'_>) {
        if !self.scalar {
            return self.fill_blocks(inp);
        }
        let (order, pattern) = (inp.order, inp.pattern);
        for (rb, t) in self.theta_r.iter_mut().enumerate() {
            *t = inp.templates[order.term(rb)][0];
        }
        if let Some(cl) = &mut self.classes {
            let theta_f = inp.templates[order.first()][0];
            let (ptr, row) = (&pattern.m_col_ptr, &pattern.m_brow);
            cl.fill(theta_f, &self.theta_r, ptr, row, &mut self.m_val);
            return;
        }
        let ctx = ScalarFill {
            theta_r: &self.theta_r,
            a22d: inp.a.a22d(),
            a22: inp.a.a22(),
            a21: &inp.a.a21().pat.ptr,
            a21_row: &inp.a.a21().pat.row,
            l21: inp.l21,
            pattern,
        };
        if let Some(g) = &mut self.dense {
            let l21 = MatRef::from_column_major_slice(inp.l21, g.nrows(), order.lf());
            matmul(
                g.as_mut(),
                Accum::Replace,
                l21,
                l21.transpose(),
                1.0,
                Par::Seq,
            );
            let acc = &mut self.chunk_acc[0];
            for c in 0..g.ncols() {
                ctx.start_column(c, acc);
                for (a, &v) in acc[c..].iter_mut().zip(&g.col_as_slice(c)[c..]) {
                    *a -= v;
                }
                let vals = &mut self.m_val[pattern.m_col_ptr[c]..pattern.m_col_ptr[c + 1]];
                ctx.gather_column(c, vals, acc);
            }
            return;
        }
        for_each_column_chunk(
            &self.chunks,
            &pattern.m_col_ptr,
            &mut self.m_val,
            &mut self.chunk_acc,
            |c0, c1, vals, acc| ctx.fill(c0, c1, vals, acc),
        );
    }

    /// The fill when some block is larger than 1 x 1.
    fn fill_blocks(&mut self, inp: &FillInputs<'_>) {
        let (order, pattern, templates) = (inp.order, inp.pattern, inp.templates);
        let (kf, qr) = (order.kf(), order.q_rest());
        let a21 = &*inp.a.a21().pat;
        let a22 = inp.a.a22();
        let (l21, acc) = (inp.l21, &mut self.acc);
        let (tmp, out) = (&mut self.tmp, &mut self.out);
        for c in 0..order.n_blocks() {
            let (kc, rc) = (order.k(c), order.off(c));
            let tmc = &templates[order.term(c)];
            // diagonal block Tᵀ A T + I
            let a = inp.a.a22d_block(c, kc);
            if kc == 1 {
                acc[rc] = tmc[0] * tmc[0] * a[0] + 1.0;
            } else {
                sandwich(tmc, kc, a, tmc, kc, 0.0, tmp, out);
                for cc in 0..kc {
                    for r in 0..kc {
                        acc[rc + r + cc * qr] = out[r + cc * kc] + if r == cc { 1.0 } else { 0.0 };
                    }
                }
            }
            // off-diagonal blocks of M22
            for e in a22.pat.ptr[c]..a22.pat.ptr[c + 1] {
                let rb = a22.pat.row[e];
                let (kr, ro) = (order.k(rb), order.off(rb));
                let tr = &templates[order.term(rb)];
                let a = &a22.val[a22.pat.off(e)..][..kr * kc];
                if kr == 1 && kc == 1 {
                    acc[ro] += tr[0] * a[0] * tmc[0];
                } else {
                    sandwich(tr, kr, a, tmc, kc, 0.0, tmp, out);
                    for cc in 0..kc {
                        for r in 0..kr {
                            acc[ro + r + cc * qr] += out[r + cc * kr];
                        }
                    }
                }
            }
            // − L21 L21ᵀ: for each f level j with an entry in row c
            for (j, ec) in pattern.a21_row(c) {
                let lc = &l21[a21.off(ec)..][..kc * kf];
                for e in ec..a21.ptr[j + 1] {
                    let rb = a21.row[e];
                    let (kr, ro) = (order.k(rb), order.off(rb));
                    let lr = &l21[a21.off(e)..][..kr * kf];
                    if kr == 1 && kc == 1 && kf == 1 {
                        acc[ro] -= lr[0] * lc[0];
                        continue;
                    }
                    for cc in 0..kc {
                        for r in 0..kr {
                            let mut s = 0.0;
                            for i in 0..kf {
                                s += lr[r + i * kr] * lc[cc + i * kc];
                            }
                            acc[ro + r + cc * qr] -= s;
                        }
                    }
                }
            }
            // gather into the column values, and clear the accumulator
            let brows = pattern.m_rows(c);
            for cc in 0..kc {
                let diag = (rc + cc..rc + kc).map(|i| i + cc * qr);
                let others = brows[1..].iter().flat_map(|&rb| {
                    (order.off(rb)..order.off(rb) + order.k(rb)).map(|i| i + cc * qr)
                });
                let vals = &mut self.m_val[pattern.m_col_ptr[rc + cc]..];
                for (v, i) in vals.iter_mut().zip(diag.chain(others)) {
                    *v = acc[i];
                    acc[i] = 0.0;
                }
            }
            // the upper part of the diagonal block was written but not gathered
            for cc in 0..kc {
                for r in 0..cc {
                    acc[rc + r + cc * qr] = 0.0;
                }
            }
        }
    }
}

/// What the scalar direct fill reads (shared by the threads).
struct ScalarFill<'a> {
    theta_r: &'a [f64],
    a22d: &'a [f64],
    a22: &'a BlockColumns,
    /// A21's column pointers and row blocks (its entries are L21's).
    a21: &'a [usize],
    a21_row: &'a [usize],
    l21: &'a [f64],
    pattern: &'a Pattern,
}

impl ScalarFill<'_> {
    /// Fills columns c0..c1; `vals` starts at column c0's first value. With
    /// 1 x 1 blocks, block and scalar indices coincide, and value offsets are
    /// entry indices.
    fn fill(&self, c0: usize, c1: usize, vals: &mut [f64], acc: &mut [f64]) {
        let m_ptr = &self.pattern.m_col_ptr;
        let base = m_ptr[c0];
        let l21 = self.l21;
        for c in c0..c1 {
            self.start_column(c, acc);
            for (j, ec) in self.pattern.a21_row(c) {
                let lc = l21[ec];
                let end = self.a21[j + 1];
                let (rows, lv) = (&self.a21_row[ec..end], &l21[ec..end]);
                match consecutive(rows) {
                    Some(r0) => {
                        for (a, &l) in acc[r0..r0 + rows.len()].iter_mut().zip(lv) {
                            *a -= l * lc;
                        }
                    }
                    None => {
                        for (&rb, &l) in rows.iter().zip(lv) {
                            acc[rb] -= l * lc;
                        }
                    }
                }
            }
            let pos = m_ptr[c] - base;
            self.gather_column(c, &mut vals[pos..m_ptr[c + 1] - base], acc);
        }
    }

    /// Column c of θ_rest A22 θ_rest + I into `acc` (zero there before).
    #[inline(always)]
    fn start_column(&self, c: usize, acc: &mut [f64]) {
        let (a22, tr) = (self.a22, self.theta_r);
        let tc = tr[c];
        acc[c] = tc * tc * self.a22d[c] + 1.0;
        for e in a22.pat.ptr[c]..a22.pat.ptr[c + 1] {
            let rb = a22.pat.row[e];
            acc[rb] += tr[rb] * a22.val[e] * tc;
        }
    }

    /// Column c's values in the pattern from `acc` into `vals`, and `acc`
    /// zero again.
    #[inline(always)]
    fn gather_column(&self, c: usize, vals: &mut [f64], acc: &mut [f64]) {
        for (v, &rb) in vals.iter_mut().zip(self.pattern.m_rows(c)) {
            *v = acc[rb];
            acc[rb] = 0.0;
        }
    }
}

/// The direct scalar fill's multiply-adds per rest column.
fn scalar_fill_work(order: &BlockOrder, pattern: &Pattern, a: &CrossProducts) -> Vec<usize> {
    let a21 = &*a.a21().pat;
    (0..order.n_blocks())
        .map(|c| {
            let fill: usize = pattern.a21_row(c).map(|(j, e)| a21.ptr[j + 1] - e).sum();
            fill + pattern.m_rows(c).len()
        })
        .collect()
}
