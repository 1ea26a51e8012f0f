//! The scalar Schur complement M22 − L21L21ᵀ with the first term's levels
//! grouped into classes of equal diagonal value.
//!
//! When every term is scalar, level j of the first term has
//! `L11_j² = θ_f² a11_j + 1` and `L21[r, j] = θ_r a21[r, j] θ_f / L11_j`, so
//!
//! ```text
//! (L21 L21ᵀ)[r, c] = θ_r θ_c Σ_j a21[r, j] a21[c, j] w(a11_j),
//! w(a) = θ_f² / (θ_f² a + 1).
//! ```
//!
//! The weight depends on j only through `a11_j`, which in unweighted data is
//! the level's number of rows and takes few distinct values. Grouping the
//! levels into classes of equal `a11_j`,
//!
//! ```text
//! (M22 − L21 L21ᵀ)[r, c] = θ_r θ_c (A22[r, c] − Σ_v w(a_v) B_v[r, c]) + δ_rc,
//! B_v = Σ_{j in class v} a21[:, j] a21[:, j]ᵀ,
//! ```
//!
//! where the B_v are formed once. Per θ each entry of the pattern is a short
//! dot product with the class weights (read in order, written once) in place
//! of the scattered rank-one updates of every level. On crossed designs such
//! as InstEval this halves the number of multiply-adds; with 20,000 levels
//! crossed with 500 it divides it by five.

use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, Mat, Par};

use super::class_terms::{DenseValues, Terms, Weights};
use super::crossprod::BlockPattern;
use super::schur::{chunk_bounds, for_each_column_chunk, PARALLEL_SCHUR_MIN_WORK};

/// Grouped form of the scalar Schur complement (see the module docs).
#[derive(Clone, Debug)]
pub(super) struct ClassSchur {
    /// The diagonal value a11 of each class, and the classes' weights at
    /// the current θ (scratch, sized for any class index).
    class_a: Vec<f64>,
    w: Box<Weights>,
    /// The positions of the pattern in the order the fill visits them:
    /// by chunk, then by their number of class terms (so that the length of
    /// the inner loop rarely changes, which the branch predictor needs), then
    /// by position. For the k-th: its position `order[k]`, A22 there
    /// (Z_restᵀZ_rest) and its class terms `ptr[k]..ptr[k + 1]` in `terms`.
    order: Vec<u32>,
    a22: Vec<f64>,
    ptr: Vec<usize>,
    terms: Terms,
    /// Column chunk boundaries, one chunk per thread.
    pub(super) chunks: Vec<usize>,
}

/// Levels of a class made dense at a time by the dense build (bounds its
/// scratch: rest levels x this many values).
const DENSE_SLAB: usize = 2048;

/// How many multiply-adds of a dense matrix product cost as much as one
/// product of the sparse build (generated, sorted by position, merged).
const DENSE_PER_SPARSE: usize = 16;

/// Whether the dense build is the cheaper: the Schur complement's lower
/// triangle is full, and the sparse build's `sparse` products cost more
/// than the dense product of every class's columns.
fn dense_build_pays(nb: usize, nnz: usize, n_levels: usize, sparse: usize) -> bool {
    let full = nb * (nb + 1) / 2;
    #[cfg(test)]
    if let Some(forced) = FORCE_DENSE.with(std::cell::Cell::get) {
        return forced && nnz == full;
    }
    nnz == full && sparse.saturating_mul(DENSE_PER_SPARSE) > full.saturating_mul(n_levels)
}

#[cfg(test)]
thread_local! {
    static FORCE_DENSE: std::cell::Cell<Option<bool>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` with the dense build forced on or off (where the pattern allows
/// it) in this thread, for tests of both builds.
#[cfg(test)]
pub(crate) fn with_dense_build<T>(dense: bool, f: impl FnOnce() -> T) -> T {
    FORCE_DENSE.with(|c| c.set(Some(dense)));
    let out = f();
    FORCE_DENSE.with(|c| c.set(None));
    out
}

/// What the builder reads from the cross-products and the plan.
pub(super) struct ScalarParts<'a> {
    pub a11: &'a [f64],
    pub a21: &'a BlockPattern,
    pub a21_val: &'a [f64],
    pub a21t_ptr: &'a [usize],
    pub a21t: &'a [(u32, u32)],
    pub a22d: &'a [f64],
    pub a22: &'a BlockPattern,
    pub a22_val: &'a [f64],
    /// Scalar pattern of the lower triangle of M22 by column (row indices
    /// sorted, the diagonal first).
    pub m_ptr: &'a [usize],
    pub m_row: &'a [usize],
}

impl ClassSchur {
    /// Builds the grouped form, or returns None when it would not save at
    /// least `1 − max_ratio` of the direct fill's multiply-adds (the build
    /// stops as soon as it exceeds that), or when there are more than 65,536
    /// classes.
    pub(super) fn build(s: &ScalarParts<'_>, max_ratio: f64, threads: usize) -> Option<Self> {
        let nb = s.m_ptr.len() - 1;
        let direct: usize = (0..nb)
            .map(|c| {
                s.a21t[s.a21t_ptr[c]..s.a21t_ptr[c + 1]]
                    .iter()
                    .map(|&(j, e)| s.a21.ptr[j as usize + 1] - e as usize)
                    .sum::<usize>()
            })
            .sum();
        let budget = (direct as f64 * max_ratio) as usize;

        // classes: the distinct a11 values, sorted
        let mut class_a = s.a11.to_vec();
        class_a.sort_unstable_by(f64::total_cmp);
        class_a.dedup();
        if class_a.len() > usize::from(u16::MAX) + 1 {
            return None;
        }
        // one class per level (weighted data): nothing merges, and the
        // grouped fill would do the direct fill's work
        if max_ratio < 1.0 && class_a.len() == s.a11.len() && direct > 0 {
            return None;
        }
        let class_of: Vec<u16> = s
            .a11
            .iter()
            .map(|a| class_a.binary_search_by(|v| v.total_cmp(a)).unwrap() as u16)
            .collect();

        let nnz = s.m_row.len();
        if u32::try_from(nnz).is_err() {
            return None;
        }
        if dense_build_pays(nb, nnz, s.a11.len(), direct) {
            return Self::build_dense(s, class_a, &class_of, budget, threads);
        }
        let mut a22 = vec![0.0; nnz];
        let mut ptr = Vec::with_capacity(nnz + 1);
        ptr.push(0);
        let (mut cls, mut val) = (Vec::new(), Vec::new());
        // per column scratch: position of each row in the column; the
        // column's products (position, class, value), generated class by
        // class, then stably sorted by position so that equal classes are
        // adjacent and merge
        let mut loc = vec![0u32; nb];
        let mut raw: Vec<(u32, u16, f64)> = Vec::new();
        let mut sorted: Vec<(u16, f64)> = Vec::new();
        let mut count = Vec::new();
        let mut order: Vec<(u16, usize, usize)> = Vec::new();
        for c in 0..nb {
            let (p0, p1) = (s.m_ptr[c], s.m_ptr[c + 1]);
            for (i, &r) in s.m_row[p0..p1].iter().enumerate() {
                loc[r] = i as u32;
            }
            a22[p0] = s.a22d[c];
            for e in s.a22.ptr[c]..s.a22.ptr[c + 1] {
                a22[p0 + loc[s.a22.row[e]] as usize] = s.a22_val[e];
            }
            // the column's first-term levels, by class
            order.clear();
            order.extend(
                s.a21t[s.a21t_ptr[c]..s.a21t_ptr[c + 1]]
                    .iter()
                    .map(|&(j, e)| (class_of[j as usize], j as usize, e as usize)),
            );
            order.sort_unstable();
            raw.clear();
            for &(v, j, ec) in &order {
                let lc = s.a21_val[ec];
                let end = s.a21.ptr[j + 1];
                raw.extend(
                    s.a21.row[ec..end]
                        .iter()
                        .zip(&s.a21_val[ec..end])
                        .map(|(&r, &a)| (loc[r], v, a * lc)),
                );
            }
            count.clear();
            count.resize(p1 - p0 + 1, 0usize);
            for &(l, _, _) in &raw {
                count[l as usize + 1] += 1;
            }
            for l in 0..p1 - p0 {
                count[l + 1] += count[l];
            }
            sorted.clear();
            sorted.resize(raw.len(), (0, 0.0));
            for &(l, v, a) in &raw {
                sorted[count[l as usize]] = (v, a);
                count[l as usize] += 1;
            }
            // count[l] is now the end of position l's products: merge each
            // position's equal classes (without branches: equal or not is
            // unpredictable)
            let mut n = cls.len();
            cls.resize(n + raw.len(), 0);
            val.resize(n + raw.len(), 0.0);
            let mut start = 0;
            for &end in &count[..p1 - p0] {
                if start < end {
                    // the current run (class, sum) is written at n each
                    // time, and n moves on when the class changes
                    let (mut cv, mut cs) = sorted[start];
                    for &(v, a) in &sorted[start + 1..end] {
                        let same = v == cv;
                        cls[n] = cv;
                        val[n] = cs;
                        n += usize::from(!same);
                        cs = if same { cs + a } else { a };
                        cv = v;
                    }
                    cls[n] = cv;
                    val[n] = cs;
                    n += 1;
                }
                ptr.push(n);
                start = end;
            }
            cls.truncate(n);
            val.truncate(n);
            if cls.len() > budget {
                return None;
            }
        }
        Some(Self::assemble(
            s.m_ptr,
            class_a,
            a22,
            ptr,
            Terms::new(cls, val),
            threads,
        ))
    }

    /// The grouped form from its parts, its positions arranged for `threads`.
    fn assemble(
        m_ptr: &[usize],
        class_a: Vec<f64>,
        a22: Vec<f64>,
        ptr: Vec<usize>,
        terms: Terms,
        threads: usize,
    ) -> Self {
        let nb = m_ptr.len() - 1;
        let work: Vec<usize> = (0..nb)
            .map(|c| ptr[m_ptr[c + 1]] - ptr[m_ptr[c]] + m_ptr[c + 1] - m_ptr[c])
            .collect();
        let mut cs = Self {
            class_a,
            w: vec![0.0; 1 << 16].into_boxed_slice().try_into().unwrap(),
            order: (0..a22.len() as u32).collect(),
            a22,
            ptr,
            terms,
            chunks: chunk_bounds(&work, PARALLEL_SCHUR_MIN_WORK, threads),
        };
        cs.arrange(m_ptr);
        cs
    }

    /// [`build`](Self::build) when the Schur complement is dense and every
    /// rest level meets many first-term levels: each class's B_v = A21_v
    /// A21_vᵀ as a dense product (the class's columns of A21 made dense, a
    /// slab of levels at a time), every position keeping a term for every
    /// class (zeros included). On 100,000 levels crossed with 1,000, 500
    /// rows per level, the sparse build's 7.7·10⁹ scattered products become
    /// 5·10¹⁰ multiply-adds of a matrix product, several times faster.
    fn build_dense(
        s: &ScalarParts<'_>,
        class_a: Vec<f64>,
        class_of: &[u16],
        budget: usize,
        threads: usize,
    ) -> Option<Self> {
        let (nb, nnz, ncls) = (s.m_ptr.len() - 1, s.m_row.len(), class_a.len());
        let total = nnz.checked_mul(ncls)?;
        if total > budget {
            return None;
        }
        let mut a22 = vec![0.0; nnz];
        let mut loc = vec![0usize; nb];
        for c in 0..nb {
            let p0 = s.m_ptr[c];
            for (i, &r) in s.m_row[p0..s.m_ptr[c + 1]].iter().enumerate() {
                loc[r] = i;
            }
            a22[p0] = s.a22d[c];
            for e in s.a22.ptr[c]..s.a22.ptr[c + 1] {
                a22[p0 + loc[s.a22.row[e]]] = s.a22_val[e];
            }
        }
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ncls];
        for (j, &v) in class_of.iter().enumerate() {
            by_class[usize::from(v)].push(j);
        }
        let par = if threads > 1 {
            Par::rayon(threads)
        } else {
            Par::Seq
        };
        let mut val = DenseValues::Small(vec![0; total]);
        let mut g = Mat::<f64>::zeros(nb, nb);
        for (v, levels) in by_class.iter().enumerate() {
            for (i, slab) in levels.chunks(DENSE_SLAB).enumerate() {
                let mut d = Mat::<f64>::zeros(nb, slab.len());
                for (col, &j) in slab.iter().enumerate() {
                    for e in s.a21.ptr[j]..s.a21.ptr[j + 1] {
                        d[(s.a21.row[e], col)] = s.a21_val[e];
                    }
                }
                let accum = if i == 0 { Accum::Replace } else { Accum::Add };
                triangular::matmul(
                    g.as_mut(),
                    BlockStructure::TriangularLower,
                    accum,
                    d.as_ref(),
                    BlockStructure::Rectangular,
                    d.transpose(),
                    BlockStructure::Rectangular,
                    1.0,
                    par,
                );
            }
            if levels.is_empty() {
                continue;
            }
            for c in 0..nb {
                let p0 = s.m_ptr[c];
                for (i, &r) in s.m_row[p0..s.m_ptr[c + 1]].iter().enumerate() {
                    val.set((p0 + i) * ncls + v, g[(r, c)]);
                }
            }
        }
        let ptr = (0..=nnz).map(|k| k * ncls).collect();
        Some(Self::assemble(
            s.m_ptr,
            class_a,
            a22,
            ptr,
            Terms::Dense(val),
            threads,
        ))
    }

    /// Puts the positions in the fill's order for the current chunks (see
    /// `order`).
    fn arrange(&mut self, m_ptr: &[usize]) {
        let pos_bounds: Vec<usize> = self.chunks.iter().map(|&c| m_ptr[c]).collect();
        // a stable counting sort by (chunk, count) of the current order,
        // which is by position within each (chunk, count)
        let chunk_of = |pos: usize| pos_bounds[1..].partition_point(|&b| b <= pos);
        let nk = self.order.len();
        let max_count = (0..nk)
            .map(|k| self.ptr[k + 1] - self.ptr[k])
            .max()
            .unwrap_or(0);
        let key = |k: usize| {
            chunk_of(self.order[k] as usize) * (max_count + 1) + self.ptr[k + 1] - self.ptr[k]
        };
        let keys: Vec<usize> = (0..nk).map(key).collect();
        let mut start = vec![0usize; (pos_bounds.len() - 1) * (max_count + 1) + 1];
        for &b in &keys {
            start[b + 1] += 1;
        }
        for b in 1..start.len() {
            start[b] += start[b - 1];
        }
        let mut idx = vec![0usize; nk];
        for (k, &b) in keys.iter().enumerate() {
            idx[start[b]] = k;
            start[b] += 1;
        }
        if idx.iter().enumerate().all(|(i, &k)| i == k) {
            return; // in order already (the dense build's, every count equal): no copy
        }
        let ranges: Vec<(usize, usize)> = idx
            .iter()
            .map(|&k| (self.ptr[k], self.ptr[k + 1]))
            .collect();
        let mut ptr = Vec::with_capacity(idx.len() + 1);
        ptr.push(0);
        for &(a, b) in &ranges {
            ptr.push(ptr.last().unwrap() + b - a);
        }
        self.terms = self.terms.gather(&ranges);
        self.ptr = ptr;
        self.a22 = idx.iter().map(|&k| self.a22[k]).collect();
        self.order = idx.iter().map(|&k| self.order[k]).collect();
    }

    /// Multiply-adds per evaluation.
    pub(super) fn work(&self) -> usize {
        self.terms.len()
    }

    /// Splits the fill into `parts` chunks whatever the work (tests).
    #[cfg(test)]
    pub(super) fn split(&mut self, m_ptr: &[usize], parts: usize) {
        let nb = m_ptr.len() - 1;
        let work: Vec<usize> = (0..nb).map(|c| m_ptr[c + 1] - m_ptr[c]).collect();
        self.chunks = chunk_bounds(&work, 0, parts);
        self.arrange(m_ptr);
    }

    /// The derivative pieces of the gradient (`grad_scalar.rs`): at θ_f,
    /// `g = A22 − Σ_v w(a_v) B_v` and `h = Σ_v w'(a_v) B_v` with
    /// w' = ∂w/∂θ_f = 2θ_f / (θ_f² a + 1)², in the pattern's positions.
    pub(super) fn derivatives(&self, theta_f: f64, g: &mut [f64], h: &mut [f64]) {
        let t2 = theta_f * theta_f;
        let (w, w2): (Vec<f64>, Vec<f64>) = self
            .class_a
            .iter()
            .map(|&a| {
                let den = t2 * a + 1.0;
                (t2 / den, 2.0 * theta_f / (den * den))
            })
            .unzip();
        let (terms, ptr) = (&self.terms, &self.ptr);
        for (k, (&pos, &a22)) in self.order.iter().zip(&self.a22).enumerate() {
            let (s, s2) = terms.dot2(&w, &w2, ptr[k], ptr[k + 1]);
            g[pos as usize] = a22 - s;
            h[pos as usize] = s2;
        }
    }

    /// Fills `m_val` (the lower triangle of M22 − L21L21ᵀ in the pattern
    /// `m_ptr`/`m_row`) at θ: `theta_f` of the first term, `theta_r` of each
    /// rest column.
    pub(super) fn fill(
        &mut self,
        theta_f: f64,
        theta_r: &[f64],
        m_ptr: &[usize],
        m_row: &[usize],
        m_val: &mut [f64],
    ) {
        let t2 = theta_f * theta_f;
        for (w, &a) in self.w.iter_mut().zip(&self.class_a) {
            *w = t2 / (t2 * a + 1.0);
        }
        let (w, terms, a22, ptr, order) =
            (&*self.w, &self.terms, &self.a22, &self.ptr, &self.order);
        // chunks of positions are chunks of the fill order
        let fill = |c0: usize, c1: usize, vals: &mut [f64]| {
            let (base, end) = (m_ptr[c0], m_ptr[c1]);
            for k in base..end {
                vals[order[k] as usize - base] = a22[k] - terms.dot(w, ptr[k], ptr[k + 1]);
            }
            for c in c0..c1 {
                let tc = theta_r[c];
                let (p0, p1) = (m_ptr[c], m_ptr[c + 1]);
                for (v, &r) in vals[p0 - base..p1 - base].iter_mut().zip(&m_row[p0..p1]) {
                    *v *= tc * theta_r[r];
                }
                vals[p0 - base] += 1.0;
            }
        };
        let mut no_extra = vec![(); self.chunks.len() - 1];
        for_each_column_chunk(&self.chunks, m_ptr, m_val, &mut no_extra, |c0, c1, v, _| {
            fill(c0, c1, v)
        });
    }
}
