//! The linear mixed model and its penalized least-squares (PLS) workspace.
//!
//! Notation (Bates, Mächler, Bolker and Walker 2015, "Fitting Linear
//! Mixed-Effects Models Using lme4", JSS 67(1)):
//!
//! ```text
//! y = Xβ + ZΛ(θ)u + ε,   u ~ N(0, σ²I),  ε ~ N(0, σ²I)
//! V = σ²(ZΛΛᵀZᵀ + I)
//! ```
//!
//! Λ(θ) is block diagonal: one lower-triangular k×k template `T_t(θ)` per
//! random-effects term `t`, repeated for each level of the term's grouping
//! factor. The random-effect columns are ordered term by term (lme4's order),
//! and within a term level by level with the term's k coefficients together.
//!
//! # The factorization
//!
//! `M = ΛᵀZᵀZΛ + I` is factored blockwise, as MixedModels.jl does: the term
//! with the most random effects (`f`) comes first, and its diagonal block is
//! block diagonal (one k_f × k_f block per level), so
//!
//! ```text
//! L11 = chol(M11)            per level, dense k_f × k_f
//! L21 = M21 L11⁻ᵀ            same sparsity as M21
//! P (M22 − L21 L21ᵀ) Pᵀ = L22 L22ᵀ   faer's sparse Cholesky (AMD, analysed once)
//! ```
//!
//! When every term is scalar, M22 − L21 L21ᵀ is formed from the first term's
//! levels grouped by their diagonal value (`classes.rs`), and L21 is then
//! computed during the sparse factorization, on a second thread when the fill
//! is large enough to be split across threads.
//!
//! The fixed effects and response follow through the dense Schur
//! complement
//!
//! ```text
//! c = L⁻¹ P Λᵀ Zᵀ[X y],   S = [X y]ᵀ[X y] − cᵀc = RᵀR
//! ```
//!
//! whose last diagonal element squared is the penalized residual sum of
//! squares (pwrss) and whose leading p×p block is `RX`. The blocks `ZᵀZ`,
//! `Zᵀ[X y]` and `[X y]ᵀ[X y]` are formed once, in one pass over the rows, so
//! nothing evaluated per θ grows with the number of rows.
//!
//! Objectives, as lme4 defines them (`ld_l2 = log det(LLᵀ)`,
//! `ld_rx2 = log det(RXᵀRX)`):
//!
//! ```text
//! ML deviance    ld_l2 + n (1 + log(2π pwrss / n))
//! REML criterion ld_l2 + ld_rx2 + (n − p)(1 + log(2π pwrss / (n − p)))
//! ```

use faer::linalg::matmul::matmul;
use faer::reborrow::ReborrowMut;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use super::chol::{FactorKind, SparseCholesky};

#[path = "classes.rs"]
mod classes;
#[path = "marginal.rs"]
mod marginal;
use super::error::{CoreError, Result};
use super::small::{chol_lower, sandwich, solve_l, solve_lt, solve_right_lt};
use classes::{ClassSchur, ScalarParts};
pub use marginal::{Csr, FactorL};

/// One random-effects term: a grouping factor and its model columns.
#[derive(Clone, Debug)]
pub struct ReTerm {
    /// Number of levels of the grouping factor.
    pub n_levels: usize,
    /// Number of coefficients per level (columns of the term's model matrix).
    pub k: usize,
    /// Level code (0-based) of each row.
    pub codes: Vec<u32>,
    /// The term's model matrix, n x k, row-major.
    pub z: Vec<f64>,
}

/// Where a term's random effects and θ elements sit (lme4's order).
#[derive(Clone, Debug)]
pub struct TermLayout {
    pub k: usize,
    pub n_levels: usize,
    /// First random-effect column of the term.
    pub offset: usize,
    /// First θ element of the term.
    pub theta_offset: usize,
}

impl TermLayout {
    pub fn n_theta(&self) -> usize {
        self.k * (self.k + 1) / 2
    }
    pub fn q(&self) -> usize {
        self.k * self.n_levels
    }
}

/// Quantities at one θ, computed by [`Workspace::update`].
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
}

/// The estimates at one θ, from [`Workspace::solve`].
#[derive(Clone, Debug)]
pub struct Solution {
    pub beta: Vec<f64>,
    pub u: Vec<f64>,
    pub b: Vec<f64>,
    pub fitted: Vec<f64>,
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
    /// Upper-triangular p x p factor `RX`, column-major.
    pub rx: Vec<f64>,
}

/// Off-diagonal blocks of a cross-product, stored by block column: entries
/// `ptr[c]..ptr[c+1]` of column `c` have block row `row[e]` (sorted) and
/// values (k_row x k_col, column-major) at `off[e]` in `val`.
#[derive(Clone, Debug, Default)]
struct BlockColumns {
    ptr: Vec<usize>,
    row: Vec<usize>,
    off: Vec<usize>,
    val: Vec<f64>,
}

/// The rows of each level of a term (counting sort): level `l`'s rows are
/// `rows[start[l]..start[l + 1]]`, in increasing order.
pub(crate) fn rows_by_level(term: &ReTerm) -> (Vec<usize>, Vec<u32>) {
    let nl = term.n_levels;
    let mut start = vec![0usize; nl + 1];
    for &c in &term.codes {
        start[c as usize + 1] += 1;
    }
    for l in 0..nl {
        start[l + 1] += start[l];
    }
    let mut next = start.clone();
    let mut rows = vec![0u32; term.codes.len()];
    for (r, &c) in term.codes.iter().enumerate() {
        rows[next[c as usize]] = r as u32;
        next[c as usize] += 1;
    }
    (start, rows)
}

/// For each level of `terms[col_term]`, the blocks of the `row_terms` that
/// share rows with it and their cross-products `Z_rowᵀ Z_col`. Row blocks are
/// numbered `row_block0[i] + level` for `row_terms[i]`.
fn cross_blocks(
    terms: &[ReTerm],
    col_term: usize,
    row_terms: &[usize],
    row_block0: &[usize],
    n_row_blocks: usize,
) -> BlockColumns {
    let term = &terms[col_term];
    let (k, nl) = (term.k, term.n_levels);
    let mut out = BlockColumns {
        ptr: vec![0; nl + 1],
        ..Default::default()
    };
    if row_terms.is_empty() {
        return out;
    }
    let (start, rows) = rows_by_level(term);
    let mut marker = vec![usize::MAX; n_row_blocks];
    let mut marker_pos = vec![0usize; n_row_blocks];
    let (mut col_rows, mut col_vals, mut col_voff, mut order) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for l in 0..nl {
        col_rows.clear();
        col_vals.clear();
        col_voff.clear();
        for &r in &rows[start[l]..start[l + 1]] {
            let r = r as usize;
            let z = &term.z[r * k..(r + 1) * k];
            for (i, &t1) in row_terms.iter().enumerate() {
                let term1 = &terms[t1];
                let k1 = term1.k;
                let rb = row_block0[i] + term1.codes[r] as usize;
                let e = if marker[rb] == l {
                    marker_pos[rb]
                } else {
                    marker[rb] = l;
                    marker_pos[rb] = col_rows.len();
                    col_rows.push(rb);
                    col_voff.push(col_vals.len());
                    col_vals.resize(col_vals.len() + k1 * k, 0.0);
                    col_rows.len() - 1
                };
                let z1 = &term1.z[r * k1..(r + 1) * k1];
                let v = &mut col_vals[col_voff[e]..][..k1 * k];
                for c in 0..k {
                    for i1 in 0..k1 {
                        v[i1 + c * k1] += z1[i1] * z[c];
                    }
                }
            }
        }
        order.clear();
        order.extend(0..col_rows.len());
        order.sort_unstable_by_key(|&e| col_rows[e]);
        for &e in &order {
            let start_v = col_voff[e];
            let end_v = if e + 1 < col_voff.len() {
                col_voff[e + 1]
            } else {
                col_vals.len()
            };
            out.row.push(col_rows[e]);
            out.off.push(out.val.len());
            out.val.extend_from_slice(&col_vals[start_v..end_v]);
        }
        out.ptr[l + 1] = out.row.len();
    }
    out
}

/// Everything needed to evaluate the profiled objective at any θ.
#[derive(Clone)]
pub struct Workspace {
    n: usize,
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    terms: Vec<ReTerm>,
    layout: Vec<TermLayout>,
    q: usize,
    n_theta: usize,

    // -- the first term f: the one with the most random effects -------------
    f: usize,
    /// Diagonal blocks Z_fᵀZ_f, k_f² per level.
    a11: Vec<f64>,
    /// Z_restᵀ Z_f by columns of f (row blocks are rest blocks).
    a21: BlockColumns,
    /// Whether every term has a single coefficient (scalar blocks throughout).
    scalar: bool,
    /// Rest columns split into chunks of about equal Schur-complement work
    /// (boundaries), and an accumulator per chunk.
    schur_chunks: Vec<usize>,
    chunk_acc: Vec<Vec<f64>>,
    /// The scalar Schur complement grouped by the first term's diagonal
    /// values, when that saves work (see `classes.rs`), and θ of each rest
    /// column (scratch).
    classes: Option<ClassSchur>,
    theta_r: Vec<f64>,
    /// For each rest block, the entries of `a21` in its row: (f level, entry).
    a21t_ptr: Vec<usize>,
    a21t: Vec<(usize, usize)>,

    // -- the other terms ("rest"), in lme4's order -----------------------------
    /// Term, level and scalar offset (in the rest's numbering) of each rest block.
    rest_term: Vec<usize>,
    rest_level: Vec<usize>,
    rest_off: Vec<usize>,
    q_rest: usize,
    /// Diagonal blocks of Z_restᵀZ_rest (k² per rest block, at `a22d_off`).
    a22d_off: Vec<usize>,
    a22d: Vec<f64>,
    /// Lower off-diagonal blocks of Z_restᵀZ_rest, by rest block column.
    a22: BlockColumns,
    /// Block pattern of the lower triangle of M22 − L21L21ᵀ: for rest column
    /// block c, row blocks `m_brow[m_bptr[c]..m_bptr[c+1]]` (the first is c).
    m_bptr: Vec<usize>,
    m_brow: Vec<usize>,
    m_col_ptr: Vec<usize>,
    m_val: Vec<f64>,
    chol: Option<SparseCholesky>,

    /// Zᵀ[X y] (q x (p+1)), rows in lme4's order.
    ztxy: Mat<f64>,
    /// [X y]ᵀ[X y].
    xyxy: Mat<f64>,

    // -- numeric state at the current θ ---------------------------------------
    templates: Vec<Vec<f64>>,
    theta: Vec<f64>,
    l11: Vec<f64>,
    l21: Vec<f64>,
    /// L⁻¹P Λᵀ Zᵀ[X y] for the f part (q_f x (p+1)) and the rest (q_rest x (p+1)).
    c1: Mat<f64>,
    c2: Mat<f64>,
    r: Mat<f64>,
    acc: Vec<f64>,
    eval: Option<Evaluation>,
}

/// Schur-complement updates per evaluation above which the fill is split
/// across threads.
const PARALLEL_SCHUR_MIN_WORK: usize = 250_000;

/// The grouped Schur fill is used when it needs at most this fraction of the
/// direct fill's multiply-adds.
const CLASS_MAX_RATIO: f64 = 0.9;

/// Boundaries splitting `work` (per column) into `parts` chunks of about equal
/// total, or one chunk when the total is below `min_total`.
fn chunk_bounds(work: &[usize], min_total: usize, parts: usize) -> Vec<usize> {
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
fn for_each_column_chunk<T: Send>(
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

fn check_finite(name: &str, v: &[f64]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(CoreError::Dimension(format!(
            "{name} has a non-finite value at position {i}"
        )));
    }
    Ok(())
}

impl Workspace {
    /// Builds the workspace: checks the inputs, forms the cross-product
    /// blocks in one pass over the rows, and analyses the sparsity pattern.
    ///
    /// `x` is n x p column-major, `y` has n values.
    pub fn new(n: usize, p: usize, x: Vec<f64>, y: Vec<f64>, terms: Vec<ReTerm>) -> Result<Self> {
        Self::with_factor_kind(n, p, x, y, terms, FactorKind::Auto)
    }

    /// [`new`](Self::new) with the kind of sparse factorization chosen.
    pub fn with_factor_kind(
        n: usize,
        p: usize,
        x: Vec<f64>,
        y: Vec<f64>,
        terms: Vec<ReTerm>,
        kind: FactorKind,
    ) -> Result<Self> {
        if x.len() != n * p {
            return Err(CoreError::Dimension(format!(
                "X has {} values, expected n*p = {}*{}",
                x.len(),
                n,
                p
            )));
        }
        if y.len() != n {
            return Err(CoreError::Dimension(format!(
                "y has {} values, expected {n}",
                y.len()
            )));
        }
        if terms.is_empty() {
            return Err(CoreError::Dimension(
                "a mixed model needs at least one random-effects term".into(),
            ));
        }
        check_finite("X", &x)?;
        check_finite("y", &y)?;
        let mut layout = Vec::with_capacity(terms.len());
        let (mut q, mut nth) = (0usize, 0usize);
        for (t, term) in terms.iter().enumerate() {
            if term.k == 0 || term.n_levels == 0 {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t} has no columns or no levels"
                )));
            }
            if term.codes.len() != n || term.z.len() != n * term.k {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t}: expected {n} codes and {} model values",
                    n * term.k
                )));
            }
            if let Some(&bad) = term.codes.iter().find(|&&c| c as usize >= term.n_levels) {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t}: level code {bad} is out of range (n_levels = {})",
                    term.n_levels
                )));
            }
            check_finite(
                &format!("the model matrix of random-effects term {t}"),
                &term.z,
            )?;
            layout.push(TermLayout {
                k: term.k,
                n_levels: term.n_levels,
                offset: q,
                theta_offset: nth,
            });
            q += term.k * term.n_levels;
            nth += term.k * (term.k + 1) / 2;
        }

        // f: the term with the most random effects (the first of ties)
        let f = (0..terms.len())
            .max_by_key(|&t| (layout[t].q(), std::cmp::Reverse(t)))
            .unwrap();
        let rest_terms: Vec<usize> = (0..terms.len()).filter(|&t| t != f).collect();
        let (mut rest_term, mut rest_level, mut rest_off) = (vec![], vec![], vec![]);
        let mut rest_block0 = Vec::with_capacity(rest_terms.len());
        let mut q_rest = 0;
        for &t in &rest_terms {
            rest_block0.push(rest_term.len());
            for l in 0..terms[t].n_levels {
                rest_term.push(t);
                rest_level.push(l);
                rest_off.push(q_rest);
                q_rest += terms[t].k;
            }
        }
        let nb_rest = rest_term.len();

        // diagonal blocks Z_tᵀZ_t
        let diag_blocks = |t: usize| -> Vec<f64> {
            let term = &terms[t];
            let k = term.k;
            let mut d = vec![0.0; term.n_levels * k * k];
            for r in 0..n {
                let z = &term.z[r * k..(r + 1) * k];
                let blk = &mut d[term.codes[r] as usize * k * k..][..k * k];
                for c in 0..k {
                    for i in 0..k {
                        blk[i + c * k] += z[i] * z[c];
                    }
                }
            }
            d
        };
        let a11 = diag_blocks(f);
        let mut a22d_off = Vec::with_capacity(nb_rest);
        let mut a22d = Vec::new();
        for &t in &rest_terms {
            let d = diag_blocks(t);
            let kk = terms[t].k * terms[t].k;
            for l in 0..terms[t].n_levels {
                a22d_off.push(a22d.len() + l * kk);
            }
            a22d.extend(d);
        }

        // Z_restᵀZ_f by columns of f, and its transpose pattern
        let a21 = cross_blocks(&terms, f, &rest_terms, &rest_block0, nb_rest);
        let mut a21t_ptr = vec![0usize; nb_rest + 1];
        for &rb in &a21.row {
            a21t_ptr[rb + 1] += 1;
        }
        for i in 0..nb_rest {
            a21t_ptr[i + 1] += a21t_ptr[i];
        }
        let mut a21t = vec![(0usize, 0usize); a21.row.len()];
        {
            let mut next = a21t_ptr.clone();
            for j in 0..terms[f].n_levels {
                for e in a21.ptr[j]..a21.ptr[j + 1] {
                    let rb = a21.row[e];
                    a21t[next[rb]] = (j, e);
                    next[rb] += 1;
                }
            }
        }

        // lower off-diagonal blocks of Z_restᵀZ_rest: for each rest term, the
        // later rest terms
        let mut a22 = BlockColumns {
            ptr: vec![0],
            ..Default::default()
        };
        for (i, &t) in rest_terms.iter().enumerate() {
            let bc = cross_blocks(
                &terms,
                t,
                &rest_terms[i + 1..],
                &rest_block0[i + 1..],
                nb_rest,
            );
            let base_e = a22.row.len();
            let base_v = a22.val.len();
            a22.row.extend_from_slice(&bc.row);
            a22.off.extend(bc.off.iter().map(|o| o + base_v));
            a22.val.extend_from_slice(&bc.val);
            for l in 0..terms[t].n_levels {
                a22.ptr.push(base_e + bc.ptr[l + 1]);
            }
        }

        // block pattern of the lower triangle of M22 − L21 L21ᵀ
        let mut m_bptr = vec![0usize];
        let mut m_brow = Vec::new();
        let mut marker = vec![usize::MAX; nb_rest];
        let mut col = Vec::new();
        for c in 0..nb_rest {
            col.clear();
            col.push(c);
            marker[c] = c;
            for e in a22.ptr[c]..a22.ptr[c + 1] {
                let rb = a22.row[e];
                if marker[rb] != c {
                    marker[rb] = c;
                    col.push(rb);
                }
            }
            for &(j, e) in &a21t[a21t_ptr[c]..a21t_ptr[c + 1]] {
                // entries of column j below (and at) e have row blocks >= c
                for e2 in e..a21.ptr[j + 1] {
                    let rb = a21.row[e2];
                    if marker[rb] != c {
                        marker[rb] = c;
                        col.push(rb);
                    }
                }
            }
            col[1..].sort_unstable();
            m_brow.extend_from_slice(&col);
            m_bptr.push(m_brow.len());
        }
        // scalar CSC of that pattern
        let mut m_col_ptr = vec![0usize];
        let mut row_idx = Vec::new();
        for c in 0..nb_rest {
            let kc = terms[rest_term[c]].k;
            for cc in 0..kc {
                row_idx.extend(rest_off[c] + cc..rest_off[c] + kc);
                for &rb in &m_brow[m_bptr[c] + 1..m_bptr[c + 1]] {
                    let kr = terms[rest_term[rb]].k;
                    row_idx.extend(rest_off[rb]..rest_off[rb] + kr);
                }
                m_col_ptr.push(row_idx.len());
            }
        }
        let nnz = row_idx.len();
        let chol = if q_rest > 0 {
            Some(SparseCholesky::analyse(
                q_rest,
                m_col_ptr.clone(),
                row_idx,
                kind,
            )?)
        } else {
            None
        };

        // Zᵀ[X y] and [X y]ᵀ[X y]
        let mut ztxy = Mat::<f64>::zeros(q, p + 1);
        for (t, term) in terms.iter().enumerate() {
            let k = term.k;
            let off = layout[t].offset;
            for j in 0..=p {
                let col: &[f64] = if j < p { &x[j * n..(j + 1) * n] } else { &y };
                let dst = ztxy
                    .col_mut(j)
                    .try_as_col_major_mut()
                    .unwrap()
                    .as_slice_mut();
                for r in 0..n {
                    let v = col[r];
                    let base = off + term.codes[r] as usize * k;
                    let z = &term.z[r * k..(r + 1) * k];
                    for c in 0..k {
                        dst[base + c] += z[c] * v;
                    }
                }
            }
        }
        let xy = faer::MatRef::from_column_major_slice(&x, n, p);
        let yv = faer::MatRef::from_column_major_slice(&y, n, 1);
        let mut xyxy = Mat::<f64>::zeros(p + 1, p + 1);
        {
            let (mut top, mut bottom) = xyxy.as_mut().split_at_row_mut(p);
            let (xx, xty) = top.rb_mut().split_at_col_mut(p);
            matmul(xx, Accum::Replace, xy.transpose(), xy, 1.0, Par::Seq);
            matmul(xty, Accum::Replace, xy.transpose(), yv, 1.0, Par::Seq);
            let (ytx, yy) = bottom.rb_mut().split_at_col_mut(p);
            matmul(ytx, Accum::Replace, yv.transpose(), xy, 1.0, Par::Seq);
            matmul(yy, Accum::Replace, yv.transpose(), yv, 1.0, Par::Seq);
        }

        let kmax = terms.iter().map(|t| t.k).max().unwrap();
        let qf = layout[f].q();
        let templates = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let scalar = terms.iter().all(|t| t.k == 1);
        let nb_rest_chunks = vec![0, nb_rest];
        Ok(Self {
            n,
            p,
            x,
            y,
            scalar,
            schur_chunks: nb_rest_chunks,
            chunk_acc: vec![vec![0.0; q_rest]],
            classes: None,
            theta_r: vec![0.0; nb_rest],
            l11: vec![0.0; a11.len()],
            l21: vec![0.0; a21.val.len()],
            a11,
            a21,
            a21t_ptr,
            a21t,
            rest_term,
            rest_level,
            rest_off,
            q_rest,
            a22d_off,
            a22d,
            a22,
            m_bptr,
            m_brow,
            m_col_ptr,
            m_val: vec![0.0; nnz],
            chol,
            ztxy,
            xyxy,
            templates,
            theta: vec![f64::NAN; nth],
            c1: Mat::zeros(qf, p + 1),
            c2: Mat::zeros(q_rest, p + 1),
            r: Mat::zeros(p + 1, p + 1),
            acc: vec![0.0; q_rest * kmax],
            eval: None,
            terms,
            layout,
            q,
            n_theta: nth,
            f,
        }
        .split_schur(PARALLEL_SCHUR_MIN_WORK, rayon::current_num_threads())
        .group_classes(CLASS_MAX_RATIO, rayon::current_num_threads()))
    }

    /// Switches the scalar Schur fill to the grouped form when it saves
    /// enough work (see `classes.rs`).
    fn group_classes(mut self, max_ratio: f64, threads: usize) -> Self {
        self.classes = None;
        if self.scalar && self.q_rest > 0 {
            let parts = ScalarParts {
                a11: &self.a11,
                a21: &self.a21,
                a21t_ptr: &self.a21t_ptr,
                a21t: &self.a21t,
                a22d: &self.a22d,
                a22: &self.a22,
                m_ptr: &self.m_col_ptr,
                m_row: &self.m_brow,
            };
            self.classes = ClassSchur::build(&parts, max_ratio, threads);
        }
        self
    }

    /// The direct scalar fill (no classes) or the grouped one whatever it
    /// saves, for tests of both paths.
    #[cfg(test)]
    pub(crate) fn with_classes(mut self, on: bool) -> Self {
        if on {
            self.group_classes(f64::INFINITY, 1)
        } else {
            self.classes = None;
            self
        }
    }

    /// Multiply-adds of the grouped Schur fill per evaluation (0 when the
    /// direct fill is used).
    pub fn class_work(&self) -> usize {
        self.classes.as_ref().map_or(0, |c| c.work())
    }

    /// Splits the scalar Schur-complement fill into `parts` chunks of about
    /// equal work when the work is at least `min_work`.
    fn split_schur(mut self, min_work: usize, parts: usize) -> Self {
        let nb_rest = self.rest_term.len();
        self.schur_chunks = if self.scalar {
            let work: Vec<usize> = (0..nb_rest)
                .map(|c| {
                    self.a21t[self.a21t_ptr[c]..self.a21t_ptr[c + 1]]
                        .iter()
                        .map(|&(j, e)| self.a21.ptr[j + 1] - e)
                        .sum::<usize>()
                        + self.m_bptr[c + 1]
                        - self.m_bptr[c]
                })
                .collect();
            chunk_bounds(&work, min_work, parts)
        } else {
            vec![0, nb_rest]
        };
        self.chunk_acc = vec![vec![0.0; self.q_rest]; self.schur_chunks.len() - 1];
        self
    }

    #[cfg(test)]
    pub(crate) fn with_schur_chunks(self, parts: usize) -> Self {
        let mut ws = self.split_schur(0, parts);
        if let Some(c) = ws.classes.as_mut() {
            c.split(&ws.m_col_ptr, parts);
        }
        ws
    }

    pub fn n(&self) -> usize {
        self.n
    }
    pub fn p(&self) -> usize {
        self.p
    }
    pub fn q(&self) -> usize {
        self.q
    }
    pub fn n_theta(&self) -> usize {
        self.n_theta
    }
    pub fn layout(&self) -> &[TermLayout] {
        &self.layout
    }
    pub fn terms(&self) -> &[ReTerm] {
        &self.terms
    }
    /// The sparse factor of the Schur complement of the first term (None when
    /// the model has a single random-effects term).
    pub fn chol(&self) -> Option<&SparseCholesky> {
        self.chol.as_ref()
    }
    /// Number of chunks the Schur-complement fill is split into (threads).
    pub fn schur_chunks(&self) -> usize {
        self.schur_chunks.len() - 1
    }
    /// Index of the term factored first (the one with most random effects).
    pub fn first_term(&self) -> usize {
        self.f
    }
    /// Stored nonzeros of the lower triangle of ΛᵀZᵀZΛ + I (first-term
    /// blocks, their cross-products with the rest, and the rest's pattern).
    pub fn pls_nnz(&self) -> usize {
        self.a11.len() + self.a21.val.len() + self.m_val.len()
    }
    /// Stored values of the factor L (block-diagonal part, off-diagonal
    /// blocks and the sparse factor of the rest).
    pub fn factor_nnz(&self) -> usize {
        self.l11.len() + self.l21.len() + self.chol.as_ref().map_or(0, |c| c.factor_nnz())
    }

    /// Lower bounds of θ: 0 on the diagonal of each template, -∞ elsewhere.
    pub fn lower(&self) -> Vec<f64> {
        let mut lo = Vec::with_capacity(self.n_theta);
        for l in &self.layout {
            for c in 0..l.k {
                for r in c..l.k {
                    lo.push(if r == c { 0.0 } else { f64::NEG_INFINITY });
                }
            }
        }
        lo
    }

    /// The template `T_t(θ)` of each term, k x k column-major.
    pub fn templates(&self) -> &[Vec<f64>] {
        &self.templates
    }

    fn set_theta(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.n_theta {
            return Err(CoreError::Theta(format!(
                "theta has {} elements; this model has {}",
                theta.len(),
                self.n_theta
            )));
        }
        if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Theta(format!("theta[{i}] is not finite")));
        }
        for (lay, tm) in self.layout.iter().zip(self.templates.iter_mut()) {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for c in 0..k {
                for r in 0..k {
                    tm[r + c * k] = if r >= c {
                        idx += 1;
                        theta[idx - 1]
                    } else {
                        0.0
                    };
                }
            }
        }
        self.theta.copy_from_slice(theta);
        Ok(())
    }

    /// Evaluates the factorization at θ and the dense factor R of the Schur
    /// complement of the fixed effects and response.
    pub fn update(&mut self, theta: &[f64]) -> Result<Evaluation> {
        if let Some(ev) = &self.eval {
            if self.theta == theta {
                return Ok(ev.clone());
            }
        }
        self.eval = None;
        self.set_theta(theta)?;
        let not_pd =
            || CoreError::NotPositiveDefinite("ΛᵀZᵀZΛ + I is not positive definite".into());
        let p1 = self.p + 1;
        let f = self.f;
        let kf = self.terms[f].k;
        let lf = self.terms[f].n_levels;
        let tf = self.templates[f].clone();
        let mut tmp = vec![0.0; 64];
        let mut out = vec![0.0; 64];
        let mut ld_l2 = 0.0;

        // L11 = chol(T_fᵀ A11 T_f + I) per level, and c1 = L11⁻¹ T_fᵀ Zᵀ_f[X y]
        let off_f = self.layout[f].offset;
        let qf = kf * lf;
        let ztxy_f = self.ztxy.as_ref().subrows(off_f, qf);
        let src: Vec<&[f64]> = (0..p1)
            .map(|c| ztxy_f.col(c).try_as_col_major().unwrap().as_slice())
            .collect();
        let c1 = self.c1.as_mut();
        let ok = match kf {
            1 => first_term_blocks::<1>(&tf, &self.a11, &mut self.l11, &src, c1),
            2 => first_term_blocks::<2>(&tf, &self.a11, &mut self.l11, &src, c1),
            3 => first_term_blocks::<3>(&tf, &self.a11, &mut self.l11, &src, c1),
            _ => first_term_blocks_dyn(kf, &tf, &self.a11, &mut self.l11, &src, c1),
        };
        ld_l2 += ok.ok_or_else(not_pd)?;

        if self.q_rest > 0 {
            // The factorization of the rest needs L21 only through the fill;
            // the grouped fill does not, so L21 and the right-hand side of
            // c2 are then computed on a second thread during the
            // factorization.
            let overlap = self.classes.as_ref().is_some_and(|c| c.chunks.len() > 2);
            if !overlap {
                self.split_rest().2.run(&mut tmp);
            }
            self.fill_schur(&mut tmp, &mut out);
            if overlap {
                let (chol, m_val, mut rest) = self.split_rest();
                std::thread::scope(|sc| {
                    sc.spawn(move || rest.run(&mut Vec::new()));
                    chol.factor(m_val)
                })?;
            } else {
                self.chol.as_mut().unwrap().factor(&self.m_val)?;
            }
            ld_l2 += self.chol.as_ref().unwrap().logdet();
            self.chol.as_ref().unwrap().forward_solve(self.c2.as_mut());
        }

        // S = [X y]ᵀ[X y] − c1ᵀc1 − c2ᵀc2 and its Cholesky factor
        self.r.copy_from(&self.xyxy);
        matmul(
            self.r.as_mut(),
            Accum::Add,
            self.c1.transpose(),
            self.c1.as_ref(),
            -1.0,
            Par::Seq,
        );
        if self.q_rest > 0 {
            matmul(
                self.r.as_mut(),
                Accum::Add,
                self.c2.transpose(),
                self.c2.as_ref(),
                -1.0,
                Par::Seq,
            );
        }
        dense_upper_cholesky(self.r.as_mut()).map_err(|j| {
            CoreError::NotPositiveDefinite(if j < self.p {
                format!("the fixed-effects model matrix is rank deficient (column {j} depends on the others)")
            } else {
                "the penalized residual sum of squares is zero: the model fits the data exactly"
                    .into()
            })
        })?;
        let ld_rx2 = 2.0 * (0..self.p).map(|j| self.r[(j, j)].ln()).sum::<f64>();
        let pwrss = self.r[(self.p, self.p)].powi(2);
        let ev = Evaluation {
            pwrss,
            ld_l2,
            ld_rx2,
        };
        self.eval = Some(ev.clone());
        Ok(ev)
    }

    /// Disjoint borrows: the sparse factor, the values it factors, and what
    /// computes L21 and the right-hand side of c2.
    fn split_rest(&mut self) -> (&mut SparseCholesky, &[f64], RestRhs<'_>) {
        let Self {
            chol,
            m_val,
            terms,
            layout,
            templates,
            rest_term,
            rest_level,
            rest_off,
            a21,
            l11,
            l21,
            ztxy,
            c1,
            c2,
            f,
            scalar,
            ..
        } = self;
        let rest = RestRhs {
            terms,
            layout,
            templates,
            rest_term,
            rest_level,
            rest_off,
            a21,
            l11,
            f: *f,
            scalar: *scalar,
            ztxy: ztxy.as_ref(),
            c1: c1.as_ref(),
            l21,
            c2: c2.as_mut(),
        };
        (chol.as_mut().unwrap(), m_val, rest)
    }

    /// [`fill_schur`](Self::fill_schur) when every block is 1 x 1: then block
    /// and scalar indices coincide, and value offsets are entry indices. The
    /// columns are split into chunks of equal work, filled in parallel when
    /// the work is large (the Schur complement of crossed designs).
    fn fill_schur_scalar(&mut self) {
        if let Some(cl) = &mut self.classes {
            for (t, &term) in self.theta_r.iter_mut().zip(&self.rest_term) {
                *t = self.templates[term][0];
            }
            let theta_f = self.templates[self.f][0];
            cl.fill(
                theta_f,
                &self.theta_r,
                &self.m_col_ptr,
                &self.m_brow,
                &mut self.m_val,
            );
            return;
        }
        let ctx = SchurScalar {
            templates: &self.templates,
            rest_term: &self.rest_term,
            a22d: &self.a22d,
            a22: &self.a22,
            a21: &self.a21,
            a21t_ptr: &self.a21t_ptr,
            a21t: &self.a21t,
            l21: &self.l21,
            m_col_ptr: &self.m_col_ptr,
            m_bptr: &self.m_bptr,
            m_brow: &self.m_brow,
        };
        for_each_column_chunk(
            &self.schur_chunks,
            &self.m_col_ptr,
            &mut self.m_val,
            &mut self.chunk_acc,
            |c0, c1, vals, acc| ctx.fill(c0, c1, vals, acc),
        );
    }

    /// Values of the lower triangle of M22 − L21 L21ᵀ in the factor's pattern.
    fn fill_schur(&mut self, tmp: &mut Vec<f64>, out: &mut Vec<f64>) {
        if self.scalar {
            return self.fill_schur_scalar();
        }
        let kf = self.terms[self.f].k;
        let qr = self.q_rest;
        let acc = &mut self.acc;
        for c in 0..self.rest_term.len() {
            let tc = self.rest_term[c];
            let kc = self.terms[tc].k;
            let rc = self.rest_off[c];
            let tmc = &self.templates[tc];
            // diagonal block Tᵀ A T + I
            let a = &self.a22d[self.a22d_off[c]..][..kc * kc];
            if kc == 1 {
                acc[rc] = tmc[0] * tmc[0] * a[0] + 1.0;
            } else {
                tmp.resize((kc * kc).max(tmp.len()), 0.0);
                out.resize((kc * kc).max(out.len()), 0.0);
                sandwich(tmc, kc, a, tmc, kc, tmp, out);
                for cc in 0..kc {
                    for r in 0..kc {
                        acc[rc + r + cc * qr] = out[r + cc * kc] + if r == cc { 1.0 } else { 0.0 };
                    }
                }
            }
            // off-diagonal blocks of M22
            for e in self.a22.ptr[c]..self.a22.ptr[c + 1] {
                let rb = self.a22.row[e];
                let tr = self.rest_term[rb];
                let kr = self.terms[tr].k;
                let ro = self.rest_off[rb];
                let a = &self.a22.val[self.a22.off[e]..][..kr * kc];
                if kr == 1 && kc == 1 {
                    acc[ro] += self.templates[tr][0] * a[0] * tmc[0];
                } else {
                    tmp.resize((kr * kc).max(tmp.len()), 0.0);
                    out.resize((kr * kc).max(out.len()), 0.0);
                    sandwich(&self.templates[tr], kr, a, tmc, kc, tmp, out);
                    for cc in 0..kc {
                        for r in 0..kr {
                            acc[ro + r + cc * qr] += out[r + cc * kr];
                        }
                    }
                }
            }
            // − L21 L21ᵀ: for each f level j with an entry in row c
            for &(j, ec) in &self.a21t[self.a21t_ptr[c]..self.a21t_ptr[c + 1]] {
                let lc = &self.l21[self.a21.off[ec]..][..kc * kf];
                for e in ec..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let ro = self.rest_off[rb];
                    let lr = &self.l21[self.a21.off[e]..][..kr * kf];
                    if kr == 1 && kc == 1 && kf == 1 {
                        acc[ro] -= lr[0] * lc[0];
                    } else {
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
            }
            // gather into the column values, and clear the accumulator
            let brows = &self.m_brow[self.m_bptr[c]..self.m_bptr[c + 1]];
            for cc in 0..kc {
                let mut pos = self.m_col_ptr[rc + cc];
                for r in cc..kc {
                    let i = rc + r + cc * qr;
                    self.m_val[pos] = acc[i];
                    acc[i] = 0.0;
                    pos += 1;
                }
                for &rb in &brows[1..] {
                    let kr = self.terms[self.rest_term[rb]].k;
                    let ro = self.rest_off[rb];
                    for r in 0..kr {
                        let i = ro + r + cc * qr;
                        self.m_val[pos] = acc[i];
                        acc[i] = 0.0;
                        pos += 1;
                    }
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

    /// The profiled objective at θ: the REML criterion or the ML deviance.
    pub fn objective(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        let ev = self.update(theta)?;
        Ok(self.objective_from(&ev, reml))
    }

    pub fn objective_from(&self, ev: &Evaluation, reml: bool) -> f64 {
        let two_pi = 2.0 * std::f64::consts::PI;
        if reml {
            let nmp = (self.n - self.p) as f64;
            ev.ld_l2 + ev.ld_rx2 + nmp * (1.0 + (two_pi * ev.pwrss / nmp).ln())
        } else {
            let n = self.n as f64;
            ev.ld_l2 + n * (1.0 + (two_pi * ev.pwrss / n).ln())
        }
    }

    /// Solves the PLS problem at θ: β, u, b = Λu and the fitted values.
    pub fn solve(&mut self, theta: &[f64]) -> Result<Solution> {
        let ev = self.update(theta)?;
        let p = self.p;
        let mut beta = vec![0.0; p];
        for i in (0..p).rev() {
            let mut s = self.r[(i, p)];
            for j in i + 1..p {
                s -= self.r[(i, j)] * beta[j];
            }
            beta[i] = s / self.r[(i, i)];
        }
        let resid = |c: &Mat<f64>, i: usize| {
            let mut s = c[(i, p)];
            for (j, b) in beta.iter().enumerate() {
                s -= c[(i, j)] * b;
            }
            s
        };
        // rest: u2 = Pᵀ L22⁻ᵀ (c2_y − c2_X β)
        let mut u2 = Mat::<f64>::from_fn(self.q_rest, 1, |i, _| resid(&self.c2, i));
        if let Some(ch) = &self.chol {
            ch.backward_solve(u2.as_mut());
        }
        // f: u1_j = L11_j⁻ᵀ (c1_j − Σ_e L21_eᵀ u2[r(e)])
        let f = self.f;
        let (kf, lf) = (self.terms[f].k, self.terms[f].n_levels);
        let mut u1: Vec<f64> = (0..kf * lf).map(|i| resid(&self.c1, i)).collect();
        for j in 0..lf {
            let v = &mut u1[j * kf..(j + 1) * kf];
            for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                let rb = self.a21.row[e];
                let kr = self.terms[self.rest_term[rb]].k;
                let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                let ro = self.rest_off[rb];
                for c in 0..kf {
                    for r in 0..kr {
                        v[c] -= lv[r + c * kr] * u2[(ro + r, 0)];
                    }
                }
            }
            solve_lt(&self.l11[j * kf * kf..(j + 1) * kf * kf], kf, v, 1);
        }
        // back to lme4's order
        let mut u = vec![0.0; self.q];
        let off_f = self.layout[f].offset;
        u[off_f..off_f + kf * lf].copy_from_slice(&u1);
        for rb in 0..self.rest_term.len() {
            let t = self.rest_term[rb];
            let k = self.terms[t].k;
            let ext = self.layout[t].offset + self.rest_level[rb] * k;
            for r in 0..k {
                u[ext + r] = u2[(self.rest_off[rb] + r, 0)];
            }
        }
        let b = self.lambda_mul(&u);
        let fitted = self.linear_predictor(&beta, &b);
        let rx = self.rx();
        Ok(Solution {
            beta,
            u,
            b,
            fitted,
            pwrss: ev.pwrss,
            ld_l2: ev.ld_l2,
            ld_rx2: ev.ld_rx2,
            rx,
        })
    }

    /// RX (p x p upper triangular, column-major) at the θ of the last update.
    pub fn rx(&self) -> Vec<f64> {
        let p = self.p;
        let mut rx = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..=j {
                rx[i + j * p] = self.r[(i, j)];
            }
        }
        rx
    }

    /// Λ(θ) u for the θ of the last update.
    pub fn lambda_mul(&self, u: &[f64]) -> Vec<f64> {
        let mut b = vec![0.0; self.q];
        for (lay, tm) in self.layout.iter().zip(&self.templates) {
            let k = lay.k;
            for l in 0..lay.n_levels {
                let base = lay.offset + l * k;
                for r in 0..k {
                    let mut s = 0.0;
                    for c in 0..=r {
                        s += tm[r + c * k] * u[base + c];
                    }
                    b[base + r] = s;
                }
            }
        }
        b
    }

    /// Xβ + Zb.
    pub fn linear_predictor(&self, beta: &[f64], b: &[f64]) -> Vec<f64> {
        let n = self.n;
        let mut eta = vec![0.0; n];
        for (j, &bj) in beta.iter().enumerate() {
            for (e, &xv) in eta.iter_mut().zip(&self.x[j * n..(j + 1) * n]) {
                *e += xv * bj;
            }
        }
        for (term, lay) in self.terms.iter().zip(&self.layout) {
            let k = term.k;
            for (r, e) in eta.iter_mut().enumerate() {
                let base = lay.offset + term.codes[r] as usize * k;
                let z = &term.z[r * k..(r + 1) * k];
                for c in 0..k {
                    *e += z[c] * b[base + c];
                }
            }
        }
        eta
    }

    /// The response.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Replaces the response: recomputes only Zᵀy, Xᵀy and yᵀy (one pass over
    /// the rows); the cross-products of X and Z and the analysis of the
    /// factorization are kept.
    pub fn set_response(&mut self, y: Vec<f64>) -> Result<()> {
        if y.len() != self.n {
            return Err(CoreError::Dimension(format!(
                "y has {} values, expected {}",
                y.len(),
                self.n
            )));
        }
        check_finite("y", &y)?;
        let (n, p) = (self.n, self.p);
        for i in 0..self.q {
            self.ztxy[(i, p)] = 0.0;
        }
        for (term, lay) in self.terms.iter().zip(&self.layout) {
            let k = term.k;
            for r in 0..n {
                let base = lay.offset + term.codes[r] as usize * k;
                for c in 0..k {
                    self.ztxy[(base + c, p)] += term.z[r * k + c] * y[r];
                }
            }
        }
        for j in 0..p {
            let xj = &self.x[j * n..(j + 1) * n];
            let v: f64 = xj.iter().zip(&y).map(|(a, b)| a * b).sum();
            self.xyxy[(j, p)] = v;
            self.xyxy[(p, j)] = v;
        }
        self.xyxy[(p, p)] = y.iter().map(|v| v * v).sum();
        self.y = y;
        self.eval = None;
        Ok(())
    }

    /// Diagonal k x k blocks of Λ M⁻¹ Λᵀ (M = ΛᵀZᵀZΛ + I), one per level of
    /// each term, at the θ of the last update: the conditional covariances of
    /// the random effects divided by σ² (lme4's condVar). Returned per term as
    /// n_levels * k * k values (each block column-major).
    pub fn cond_var_blocks(&self) -> Result<Vec<Vec<f64>>> {
        if self.eval.is_none() {
            return Err(CoreError::Theta("no θ has been evaluated yet".into()));
        }
        const CHUNK: usize = 64;
        let mut minv: Vec<Vec<f64>> = self
            .layout
            .iter()
            .map(|l| vec![0.0; l.n_levels * l.k * l.k])
            .collect();
        let f = self.f;
        let (kf, lf) = (self.terms[f].k, self.terms[f].n_levels);
        // f blocks: L11⁻ᵀ (I + WᵀW) L11⁻¹ with W = L22⁻¹ P L21[:, j]
        let per = (CHUNK / kf).max(1);
        let mut j0 = 0;
        while j0 < lf {
            let nj = per.min(lf - j0);
            let mut w = Mat::<f64>::zeros(self.q_rest, nj * kf);
            for jj in 0..nj {
                let j = j0 + jj;
                for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                    for c in 0..kf {
                        for r in 0..kr {
                            w[(self.rest_off[rb] + r, jj * kf + c)] = lv[r + c * kr];
                        }
                    }
                }
            }
            if let Some(ch) = &self.chol {
                ch.forward_solve(w.as_mut());
            }
            for jj in 0..nj {
                let j = j0 + jj;
                let ws = w.as_ref().subcols(jj * kf, kf);
                let mut g = Mat::<f64>::identity(kf, kf);
                if self.q_rest > 0 {
                    matmul(g.as_mut(), Accum::Add, ws.transpose(), ws, 1.0, Par::Seq);
                }
                // L11⁻ᵀ G L11⁻¹: solve columns then rows
                let l = &self.l11[j * kf * kf..(j + 1) * kf * kf];
                let mut gv: Vec<f64> = (0..kf * kf).map(|i| g[(i % kf, i / kf)]).collect();
                for c in 0..kf {
                    solve_lt(l, kf, &mut gv[c * kf..(c + 1) * kf], 1);
                }
                for r in 0..kf {
                    solve_lt(l, kf, &mut gv[r..], kf);
                }
                minv[f][j * kf * kf..(j + 1) * kf * kf].copy_from_slice(&gv);
            }
            j0 += nj;
        }
        // rest blocks: diagonal blocks of (L22 L22ᵀ)⁻¹ in the P-permuted basis
        if let Some(ch) = &self.chol {
            let nb = self.rest_term.len();
            let mut b0 = 0;
            while b0 < nb {
                let mut cols = 0;
                let mut b1 = b0;
                while b1 < nb && (cols == 0 || cols + self.terms[self.rest_term[b1]].k <= CHUNK) {
                    cols += self.terms[self.rest_term[b1]].k;
                    b1 += 1;
                }
                let mut e = Mat::<f64>::zeros(self.q_rest, cols);
                let mut cpos = 0;
                for rb in b0..b1 {
                    for c in 0..self.terms[self.rest_term[rb]].k {
                        e[(self.rest_off[rb] + c, cpos + c)] = 1.0;
                    }
                    cpos += self.terms[self.rest_term[rb]].k;
                }
                ch.forward_solve(e.as_mut());
                let mut cpos = 0;
                for rb in b0..b1 {
                    let t = self.rest_term[rb];
                    let k = self.terms[t].k;
                    let xs = e.as_ref().subcols(cpos, k);
                    let mut m = Mat::<f64>::zeros(k, k);
                    matmul(
                        m.as_mut(),
                        Accum::Replace,
                        xs.transpose(),
                        xs,
                        1.0,
                        Par::Seq,
                    );
                    let l = self.rest_level[rb];
                    for c in 0..k {
                        for r in 0..k {
                            minv[t][l * k * k + r + c * k] = m[(r, c)];
                        }
                    }
                    cpos += k;
                }
                b0 = b1;
            }
        }
        // Λ M⁻¹ Λᵀ per block
        let mut out = minv;
        for (t, lay) in self.layout.iter().enumerate() {
            let k = lay.k;
            let tm = &self.templates[t];
            for l in 0..lay.n_levels {
                let blk = &mut out[t][l * k * k..(l + 1) * k * k];
                let m = blk.to_vec();
                for c in 0..k {
                    for r in 0..k {
                        let mut s = 0.0;
                        for i in 0..=r {
                            for j in 0..=c {
                                s += tm[r + i * k] * m[i + j * k] * tm[c + j * k];
                            }
                        }
                        blk[r + c * k] = s;
                    }
                }
            }
        }
        Ok(out)
    }

    /// RZX: the q x p block L⁻¹P ΛᵀZᵀX at the last θ, rows in L's order (the
    /// first term's levels, then the rest in the sparse factor's order).
    pub fn rzx(&self) -> Mat<f64> {
        let p = self.p;
        let qf = self.c1.nrows();
        Mat::from_fn(self.q, p, |i, j| {
            if i < qf {
                self.c1[(i, j)]
            } else {
                self.c2[(i - qf, j)]
            }
        })
    }
}

/// Sum of 2 log(d) over positive values, with one logarithm per few values
/// (the diagonal of a Cholesky factor of a matrix ≥ I is ≥ 1, so products of
/// a few of them stay finite).
#[inline]
fn log_det_chunk(prod: &mut f64, count: &mut usize, acc: &mut f64, d: f64) {
    *prod *= d;
    *count += 1;
    if *count == 8 {
        *acc += 2.0 * prod.ln();
        *prod = 1.0;
        *count = 0;
    }
}

/// The first term's block-diagonal factor, with the block size known at
/// compile time: per level, L = chol(Tᵀ A T + I), and c1 = L⁻¹ Tᵀ (Zᵀ[X y])
/// for the level's rows. Returns log det(L11 L11ᵀ), or None when a block is not
/// positive definite.
fn first_term_blocks<const K: usize>(
    tf: &[f64],
    a11: &[f64],
    l11: &mut [f64],
    src: &[&[f64]],
    mut c1: MatMut<'_, f64>,
) -> Option<f64> {
    let mut t = [[0.0f64; K]; K]; // t[r][c] = T[r, c]
    for c in 0..K {
        for r in 0..K {
            t[r][c] = tf[r + c * K];
        }
    }
    let lf = a11.len() / (K * K);
    let (mut prod, mut count, mut ld) = (1.0f64, 0usize, 0.0f64);
    for j in 0..lf {
        let a = &a11[j * K * K..(j + 1) * K * K];
        // m = Tᵀ A T + I (full, symmetric)
        let mut at = [[0.0f64; K]; K]; // A T
        for r in 0..K {
            for c in 0..K {
                let mut s = 0.0;
                for i in c..K {
                    s += a[r + i * K] * t[i][c];
                }
                at[r][c] = s;
            }
        }
        let mut m = [[0.0f64; K]; K];
        for r in 0..K {
            for c in 0..=r {
                let mut s = if r == c { 1.0 } else { 0.0 };
                for i in r..K {
                    s += t[i][r] * at[i][c];
                }
                m[r][c] = s;
            }
        }
        // in-place lower Cholesky
        for c in 0..K {
            let mut d = m[c][c];
            for i in 0..c {
                d -= m[c][i] * m[c][i];
            }
            if !(d > 0.0) || !d.is_finite() {
                return None;
            }
            let d = d.sqrt();
            m[c][c] = d;
            for r in c + 1..K {
                let mut v = m[r][c];
                for i in 0..c {
                    v -= m[r][i] * m[c][i];
                }
                m[r][c] = v / d;
            }
            log_det_chunk(&mut prod, &mut count, &mut ld, d);
        }
        let l = &mut l11[j * K * K..(j + 1) * K * K];
        for c in 0..K {
            for r in 0..K {
                l[r + c * K] = if r >= c { m[r][c] } else { 0.0 };
            }
        }
        // c1 block: L⁻¹ Tᵀ b
        for (col, s) in src.iter().enumerate() {
            let b = &s[j * K..(j + 1) * K];
            let mut v = [0.0f64; K];
            for r in 0..K {
                let mut acc = 0.0;
                for i in r..K {
                    acc += t[i][r] * b[i];
                }
                v[r] = acc;
            }
            for r in 0..K {
                let mut x = v[r];
                for i in 0..r {
                    x -= m[r][i] * v[i];
                }
                v[r] = x / m[r][r];
            }
            for r in 0..K {
                c1[(j * K + r, col)] = v[r];
            }
        }
    }
    if count > 0 {
        ld += 2.0 * prod.ln();
    }
    Some(ld)
}

/// [`first_term_blocks`] for any block size.
fn first_term_blocks_dyn(
    k: usize,
    tf: &[f64],
    a11: &[f64],
    l11: &mut [f64],
    src: &[&[f64]],
    mut c1: MatMut<'_, f64>,
) -> Option<f64> {
    let kk = k * k;
    let lf = a11.len() / kk;
    let mut tmp = vec![0.0; kk];
    let mut v = vec![0.0; k];
    let mut ld = 0.0;
    for j in 0..lf {
        let l = &mut l11[j * kk..(j + 1) * kk];
        sandwich(tf, k, &a11[j * kk..(j + 1) * kk], tf, k, &mut tmp, l);
        for d in 0..k {
            l[d + d * k] += 1.0;
        }
        if !chol_lower(l, k) {
            return None;
        }
        for d in 0..k {
            ld += 2.0 * l[d + d * k].ln();
        }
        for (col, s) in src.iter().enumerate() {
            let b = &s[j * k..(j + 1) * k];
            for r in 0..k {
                v[r] = (r..k).map(|i| tf[i + r * k] * b[i]).sum();
            }
            solve_l(l, k, &mut v, 1);
            for r in 0..k {
                c1[(j * k + r, col)] = v[r];
            }
        }
    }
    Some(ld)
}

/// What computes L21 = T_restᵀ A21 T_f L11⁻ᵀ and the right-hand side
/// T_restᵀ Zᵀ_rest[X y] − L21 c1 of c2 (borrowed from the workspace).
struct RestRhs<'a> {
    terms: &'a [ReTerm],
    layout: &'a [TermLayout],
    templates: &'a [Vec<f64>],
    rest_term: &'a [usize],
    rest_level: &'a [usize],
    rest_off: &'a [usize],
    a21: &'a BlockColumns,
    l11: &'a [f64],
    f: usize,
    scalar: bool,
    ztxy: MatRef<'a, f64>,
    c1: MatRef<'a, f64>,
    l21: &'a mut [f64],
    c2: MatMut<'a, f64>,
}

impl RestRhs<'_> {
    fn run(&mut self, tmp: &mut Vec<f64>) {
        let kf = self.terms[self.f].k;
        let lf = self.terms[self.f].n_levels;
        let kk = kf * kf;
        let tf = &self.templates[self.f];
        let p1 = self.c2.ncols();
        // L21 = T_restᵀ A21 T_f L11⁻ᵀ
        if self.scalar {
            // 1 x 1 blocks: entry offsets are entry indices
            let theta_r: Vec<f64> = self
                .rest_term
                .iter()
                .map(|&t| self.templates[t][0])
                .collect();
            for j in 0..lf {
                let scale = tf[0] / self.l11[j];
                let (e0, e1) = (self.a21.ptr[j], self.a21.ptr[j + 1]);
                for ((dst, &a), &rb) in self.l21[e0..e1]
                    .iter_mut()
                    .zip(&self.a21.val[e0..e1])
                    .zip(&self.a21.row[e0..e1])
                {
                    *dst = theta_r[rb] * a * scale;
                }
            }
        }
        for j in (0..lf).filter(|_| !self.scalar) {
            let l = &self.l11[j * kk..(j + 1) * kk];
            for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                let rb = self.a21.row[e];
                let tr = &self.templates[self.rest_term[rb]];
                let kr = self.terms[self.rest_term[rb]].k;
                let a = &self.a21.val[self.a21.off[e]..][..kr * kf];
                let dst = &mut self.l21[self.a21.off[e]..][..kr * kf];
                if kr == 1 && kf == 1 {
                    dst[0] = tr[0] * a[0] * tf[0] / l[0];
                } else {
                    tmp.resize((kr * kf).max(tmp.len()), 0.0);
                    sandwich(tr, kr, a, tf, kf, tmp, dst);
                    solve_right_lt(l, kf, dst, kr);
                }
            }
        }
        // c2 = L22⁻¹ P (T_restᵀ Zᵀ_rest[X y] − L21 c1)
        for col in 0..p1 {
            let src = self.ztxy.col(col);
            let c1 = self.c1.col(col).try_as_col_major().unwrap().as_slice();
            let dst = self
                .c2
                .rb_mut()
                .col_mut(col)
                .try_as_col_major_mut()
                .unwrap()
                .as_slice_mut();
            for rb in 0..self.rest_term.len() {
                let t = self.rest_term[rb];
                let k = self.terms[t].k;
                let tm = &self.templates[t];
                let ext = self.layout[t].offset + self.rest_level[rb] * k;
                let ro = self.rest_off[rb];
                for r in 0..k {
                    let mut s = 0.0;
                    for i in r..k {
                        s += tm[i + r * k] * src[ext + i];
                    }
                    dst[ro + r] = s;
                }
            }
            if self.scalar {
                for j in 0..lf {
                    let cj = c1[j];
                    let (e0, e1) = (self.a21.ptr[j], self.a21.ptr[j + 1]);
                    for (&rb, &lv) in self.a21.row[e0..e1].iter().zip(&self.l21[e0..e1]) {
                        dst[rb] -= lv * cj;
                    }
                }
                continue;
            }
            for j in 0..lf {
                let cj = &c1[j * kf..(j + 1) * kf];
                for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                    let ro = self.rest_off[rb];
                    for c in 0..kf {
                        for r in 0..kr {
                            dst[ro + r] -= lv[r + c * kr] * cj[c];
                        }
                    }
                }
            }
        }
    }
}

/// What the scalar Schur-complement fill reads (shared by the threads).
struct SchurScalar<'a> {
    templates: &'a [Vec<f64>],
    rest_term: &'a [usize],
    a22d: &'a [f64],
    a22: &'a BlockColumns,
    a21: &'a BlockColumns,
    a21t_ptr: &'a [usize],
    a21t: &'a [(usize, usize)],
    l21: &'a [f64],
    m_col_ptr: &'a [usize],
    m_bptr: &'a [usize],
    m_brow: &'a [usize],
}

impl SchurScalar<'_> {
    /// Fills columns c0..c1; `vals` starts at column c0's first value.
    fn fill(&self, c0: usize, c1: usize, vals: &mut [f64], acc: &mut [f64]) {
        let base = self.m_col_ptr[c0];
        let (a21, l21) = (self.a21, self.l21);
        for c in c0..c1 {
            let tc = self.templates[self.rest_term[c]][0];
            acc[c] = tc * tc * self.a22d[c] + 1.0;
            for e in self.a22.ptr[c]..self.a22.ptr[c + 1] {
                let rb = self.a22.row[e];
                acc[rb] += self.templates[self.rest_term[rb]][0] * self.a22.val[e] * tc;
            }
            for &(j, ec) in &self.a21t[self.a21t_ptr[c]..self.a21t_ptr[c + 1]] {
                let lc = l21[ec];
                let end = a21.ptr[j + 1];
                for (&rb, &lv) in a21.row[ec..end].iter().zip(&l21[ec..end]) {
                    acc[rb] -= lv * lc;
                }
            }
            let pos = self.m_col_ptr[c] - base;
            let brows = &self.m_brow[self.m_bptr[c]..self.m_bptr[c + 1]];
            for (v, &rb) in vals[pos..pos + brows.len()].iter_mut().zip(brows) {
                *v = acc[rb];
                acc[rb] = 0.0;
            }
        }
    }
}

/// In-place Cholesky S = RᵀR of a small dense symmetric matrix; the upper
/// triangle receives R and the strict lower triangle is zeroed. On failure
/// returns the index of the first non-positive pivot.
fn dense_upper_cholesky(mut s: MatMut<'_, f64>) -> std::result::Result<(), usize> {
    let m = s.nrows();
    for j in 0..m {
        let mut d = s[(j, j)];
        for k in 0..j {
            d -= s[(k, j)] * s[(k, j)];
        }
        if !(d > 0.0) || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        s[(j, j)] = d;
        for i in j + 1..m {
            let mut v = s[(j, i)];
            for k in 0..j {
                v -= s[(k, j)] * s[(k, i)];
            }
            s[(j, i)] = v / d;
        }
        for i in j + 1..m {
            s[(i, j)] = 0.0;
        }
    }
    Ok(())
}
