//! A: the blocks of `[Z X y]ᵀ W [Z X y]`, formed from the rows once (and
//! again only for new prior weights or a new response).
//!
//! With prior weights W and an offset o, the rows enter scaled by √w:
//! `Z̃ = √W Z`, `X̃ = √W X`, `ỹ = √W (y − o)`, and A holds the cross-products
//! of `[Z̃ X̃ ỹ]`; everything evaluated at θ then reads A only. The blocks are
//! laid out in the block order of L ([`BlockOrder`]): the first term's
//! diagonal blocks (`a11`), its cross-products with the rest (`a21`), the
//! rest's diagonal blocks (`a22d`) and lower off-diagonal blocks (`a22`),
//! `Z̃ᵀ[X̃ ỹ]` (rows in lme4's order) and `[X̃ ỹ]ᵀ[X̃ ỹ]`.
//!
//! The sparsity of the off-diagonal blocks ([`BlockPattern`]) is found once;
//! new weights recompute the values in the same pattern.

use std::ops::Range;
use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::reborrow::ReborrowMut;
use faer::{Accum, Mat, MatRef, Par};

use super::error::{check_finite, check_len, CoreError, Result};
use super::order::BlockOrder;
use super::small::col_mut;
use super::terms::Terms;

/// The pattern of off-diagonal blocks stored by block column: entries
/// `ptr[c]..ptr[c+1]` of column `c` have block row `row[e]` (sorted) and
/// values (k_row x k_col, column-major) at `off[e]`; `len` values in all.
#[derive(Debug)]
pub struct BlockPattern {
    pub ptr: Vec<usize>,
    pub row: Vec<usize>,
    pub off: Vec<usize>,
    pub len: usize,
}

/// Values in a (shared) block pattern. L21 shares the pattern of A21.
#[derive(Clone, Debug)]
pub struct BlockColumns {
    pub pat: Arc<BlockPattern>,
    pub val: Vec<f64>,
}

impl BlockColumns {
    pub fn zeros(pat: Arc<BlockPattern>) -> Self {
        let val = vec![0.0; pat.len];
        Self { pat, val }
    }
}

/// The rows of a model: X (n x p, column-major), y, and optional prior
/// weights and offset, all on the original scale.
#[derive(Clone, Debug)]
pub struct RowData {
    n: usize,
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    weights: Option<Vec<f64>>,
    sqrt_w: Option<Vec<f64>>,
    offset: Option<Vec<f64>>,
}

fn check_weights(n: usize, w: &[f64]) -> Result<()> {
    check_len("the weight vector", w.len(), n)?;
    check_finite("the weight vector", w)?;
    match w.iter().position(|&v| !(v > 0.0)) {
        Some(index) => Err(CoreError::NonPositiveWeight {
            index,
            value: w[index],
        }),
        None => Ok(()),
    }
}

impl RowData {
    /// Checks the rows: X has n*p values, y n; all finite; weights positive.
    pub fn new(
        n: usize,
        p: usize,
        x: Vec<f64>,
        y: Vec<f64>,
        weights: Option<Vec<f64>>,
        offset: Option<Vec<f64>>,
    ) -> Result<Self> {
        check_len(format!("X ({n} x {p})"), x.len(), n * p)?;
        check_len("y", y.len(), n)?;
        check_finite("X", &x)?;
        check_finite("y", &y)?;
        if let Some(o) = &offset {
            check_len("the offset", o.len(), n)?;
            check_finite("the offset", o)?;
        }
        let mut rows = Self {
            n,
            p,
            x,
            y,
            weights: None,
            sqrt_w: None,
            offset,
        };
        rows.set_weights(weights)?;
        Ok(rows)
    }

    fn set_weights(&mut self, weights: Option<Vec<f64>>) -> Result<()> {
        if let Some(w) = &weights {
            check_weights(self.n, w)?;
        }
        self.sqrt_w = weights
            .as_ref()
            .map(|w| w.iter().map(|v| v.sqrt()).collect());
        self.weights = weights;
        Ok(())
    }

    pub fn n(&self) -> usize {
        self.n
    }
    pub fn p(&self) -> usize {
        self.p
    }
    /// X, n x p column-major.
    pub fn x(&self) -> &[f64] {
        &self.x
    }
    pub fn y(&self) -> &[f64] {
        &self.y
    }
    pub fn weights(&self) -> Option<&[f64]> {
        self.weights.as_deref()
    }
    pub fn offset(&self) -> Option<&[f64]> {
        self.offset.as_deref()
    }
    /// The row scale √w (None without weights).
    pub fn scale(&self) -> Option<&[f64]> {
        self.sqrt_w.as_deref()
    }
    /// Σ log wᵢ (0 without weights).
    pub fn log_det_w(&self) -> f64 {
        self.weights
            .as_ref()
            .map_or(0.0, |w| w.iter().map(|v| v.ln()).sum())
    }

    /// X̃ = √W X (X itself without weights).
    fn scaled_x(&self) -> std::borrow::Cow<'_, [f64]> {
        match &self.sqrt_w {
            None => self.x.as_slice().into(),
            Some(s) => {
                let mut x = self.x.clone();
                for col in x.chunks_exact_mut(self.n.max(1)) {
                    for (v, s) in col.iter_mut().zip(s) {
                        *v *= s;
                    }
                }
                x.into()
            }
        }
    }

    /// ỹ = √W (y − o).
    fn scaled_y(&self) -> Vec<f64> {
        let mut y = self.y.clone();
        if let Some(o) = &self.offset {
            y.iter_mut().zip(o).for_each(|(v, o)| *v -= o);
        }
        if let Some(s) = &self.sqrt_w {
            y.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
        y
    }
}

/// The cross-product blocks A of a model, with the rows they came from.
#[derive(Clone, Debug)]
pub struct CrossProducts {
    rows: RowData,
    /// Σ log wᵢ (0 without weights).
    log_det_w: f64,
    /// Z̃_fᵀZ̃_f: the first term's diagonal blocks, k_f² per level.
    a11: Vec<f64>,
    /// Z̃_restᵀZ̃_f by columns of f (row blocks are rest blocks).
    a21: BlockColumns,
    /// The rest's diagonal blocks Z̃_restᵀZ̃_rest (k² per rest block, at
    /// `a22d_off`), and its lower off-diagonal blocks by rest block column.
    a22d: Vec<f64>,
    a22d_off: Vec<usize>,
    a22: BlockColumns,
    /// Z̃ᵀ[X̃ ỹ] (q x (p+1), rows in lme4's order) and [X̃ ỹ]ᵀ[X̃ ỹ].
    ztxy: Mat<f64>,
    xyxy: Mat<f64>,
}

/// The rows of each level of the terms whose blocks are columns of A21 and
/// A22: the first term, then the rest but its last term.
fn column_levels(terms: &Terms, order: &BlockOrder) -> Vec<(Vec<usize>, Vec<u32>)> {
    let rest = order.rest_terms();
    if rest.is_empty() {
        // a single term: no off-diagonal blocks, no rows to visit
        return vec![(vec![0; order.lf() + 1], vec![])];
    }
    std::iter::once(order.first())
        .chain(rest.iter().take(rest.len().saturating_sub(1)).copied())
        .map(|t| terms.rows_by_level(t))
        .collect()
}

impl CrossProducts {
    /// Finds the block patterns and forms the blocks from the rows.
    pub fn new(rows: RowData, terms: &Terms, order: &BlockOrder) -> Self {
        let nb = order.n_blocks();
        let mut a22d_off = Vec::with_capacity(nb);
        let mut len = 0;
        for rb in 0..nb {
            a22d_off.push(len);
            len += order.k(rb) * order.k(rb);
        }
        let levels = column_levels(terms, order);
        let rest = order.rest_terms();
        let (mut a21, mut a22) = (BlockPattern::empty(), BlockPattern::empty());
        a21.extend(terms, order, order.first(), 0..rest.len(), &levels[0]);
        for i in 0..rest.len().saturating_sub(1) {
            a22.extend(terms, order, rest[i], i + 1..rest.len(), &levels[i + 1]);
        }
        if let Some(&last) = rest.last() {
            // the last term of the rest has no later terms: empty columns
            let end = a22.row.len();
            a22.ptr
                .extend(std::iter::repeat(end).take(terms.layout()[last].n_levels));
        }
        let (p, q, kf) = (rows.p(), terms.q(), order.kf());
        let mut a = Self {
            log_det_w: rows.log_det_w(),
            rows,
            a11: vec![0.0; order.lf() * kf * kf],
            a21: BlockColumns::zeros(Arc::new(a21)),
            a22d: vec![0.0; len],
            a22d_off,
            a22: BlockColumns::zeros(Arc::new(a22)),
            ztxy: Mat::zeros(q, p + 1),
            xyxy: Mat::zeros(p + 1, p + 1),
        };
        a.fill(terms, order, &levels);
        a
    }

    /// New prior weights (None: unweighted): recomputes every block in the
    /// same patterns.
    pub fn set_weights(
        &mut self,
        terms: &Terms,
        order: &BlockOrder,
        weights: Option<Vec<f64>>,
    ) -> Result<()> {
        self.rows.set_weights(weights)?;
        self.log_det_w = self.rows.log_det_w();
        self.fill(terms, order, &column_levels(terms, order));
        Ok(())
    }

    /// A new response (original scale): recomputes only Z̃ᵀỹ, X̃ᵀỹ and ỹᵀỹ.
    pub fn set_response(&mut self, terms: &Terms, y: Vec<f64>) -> Result<()> {
        check_len("y", y.len(), self.rows.n)?;
        check_finite("y", &y)?;
        self.rows.y = y;
        let p = self.rows.p;
        let ys = self.rows.scaled_y();
        let dst = col_mut(self.ztxy.as_mut(), p);
        dst.fill(0.0);
        terms.zt_mul_add(&ys, self.rows.scale(), dst);
        xy_blocks(
            &self.rows.scaled_x(),
            &ys,
            self.rows.n,
            &mut self.xyxy,
            false,
        );
        Ok(())
    }

    /// All blocks from the rows, in the patterns found by `new`.
    fn fill(&mut self, terms: &Terms, order: &BlockOrder, levels: &[(Vec<usize>, Vec<u32>)]) {
        let scale = self.rows.scale();
        let rest = order.rest_terms();
        self.a11 = diag_blocks(terms, order.first(), scale);
        for (i, &t) in rest.iter().enumerate() {
            let d = diag_blocks(terms, t, scale);
            let o = self.a22d_off[order.block0()[i]];
            self.a22d[o..o + d.len()].copy_from_slice(&d);
        }
        self.a21.val.fill(0.0);
        self.a22.val.fill(0.0);
        let a21 = &mut self.a21;
        cross_values(
            terms,
            order,
            order.first(),
            0,
            0..rest.len(),
            &levels[0],
            scale,
            a21,
        );
        for i in 0..rest.len().saturating_sub(1) {
            let (t, cb0) = (rest[i], order.block0()[i]);
            let lv = &levels[i + 1];
            cross_values(
                terms,
                order,
                t,
                cb0,
                i + 1..rest.len(),
                lv,
                scale,
                &mut self.a22,
            );
        }
        let (n, p) = (self.rows.n, self.rows.p);
        let (xs, ys) = (self.rows.scaled_x(), self.rows.scaled_y());
        self.ztxy.fill(0.0);
        for j in 0..=p {
            let v = if j < p { &xs[j * n..(j + 1) * n] } else { &ys };
            terms.zt_mul_add(v, scale, col_mut(self.ztxy.as_mut(), j));
        }
        xy_blocks(&xs, &ys, n, &mut self.xyxy, true);
    }

    pub fn rows(&self) -> &RowData {
        &self.rows
    }
    /// Σ log wᵢ of the prior weights (0 without weights).
    pub fn log_det_w(&self) -> f64 {
        self.log_det_w
    }
    pub fn a11(&self) -> &[f64] {
        &self.a11
    }
    pub fn a21(&self) -> &BlockColumns {
        &self.a21
    }
    /// The rest's diagonal blocks, one after the other (k² values each).
    pub fn a22d(&self) -> &[f64] {
        &self.a22d
    }
    /// The diagonal block of rest block `rb`.
    pub fn a22d_block(&self, rb: usize, k: usize) -> &[f64] {
        &self.a22d[self.a22d_off[rb]..][..k * k]
    }
    pub fn a22(&self) -> &BlockColumns {
        &self.a22
    }
    pub fn ztxy(&self) -> MatRef<'_, f64> {
        self.ztxy.as_ref()
    }
    pub fn xyxy(&self) -> MatRef<'_, f64> {
        self.xyxy.as_ref()
    }
}

/// `[X̃ ỹ]ᵀ[X̃ ỹ]` (only the response's row and column unless `with_x`).
fn xy_blocks(x: &[f64], y: &[f64], n: usize, xyxy: &mut Mat<f64>, with_x: bool) {
    let p = xyxy.nrows() - 1;
    let xm = MatRef::from_column_major_slice(x, n, p);
    let yv = MatRef::from_column_major_slice(y, n, 1);
    let (mut top, mut bottom) = xyxy.as_mut().split_at_row_mut(p);
    let (xx, xty) = top.rb_mut().split_at_col_mut(p);
    if with_x {
        matmul(xx, Accum::Replace, xm.transpose(), xm, 1.0, Par::Seq);
    }
    matmul(xty, Accum::Replace, xm.transpose(), yv, 1.0, Par::Seq);
    let (ytx, yy) = bottom.rb_mut().split_at_col_mut(p);
    matmul(ytx, Accum::Replace, yv.transpose(), xm, 1.0, Par::Seq);
    matmul(yy, Accum::Replace, yv.transpose(), yv, 1.0, Par::Seq);
}

/// The diagonal blocks Z̃_tᵀZ̃_t of term `t`, k² per level.
fn diag_blocks(terms: &Terms, t: usize, scale: Option<&[f64]>) -> Vec<f64> {
    let term = &terms.terms()[t];
    let k = term.k;
    let mut d = vec![0.0; term.n_levels * k * k];
    let mut zs = vec![0.0; k];
    for (r, &code) in term.codes.iter().enumerate() {
        scaled_row(&term.z[r * k..(r + 1) * k], scale, r, &mut zs);
        let blk = &mut d[code as usize * k * k..][..k * k];
        for c in 0..k {
            for i in 0..k {
                blk[i + c * k] += zs[i] * zs[c];
            }
        }
    }
    d
}

/// `out = s_r z` (z itself without a scale).
#[inline(always)]
fn scaled_row(z: &[f64], scale: Option<&[f64]>, r: usize, out: &mut [f64]) {
    match scale {
        None => out.copy_from_slice(z),
        Some(s) => out.iter_mut().zip(z).for_each(|(o, z)| *o = s[r] * z),
    }
}

impl BlockPattern {
    fn empty() -> Self {
        Self {
            ptr: vec![0],
            row: vec![],
            off: vec![],
            len: 0,
        }
    }

    /// Appends a block column for each level of term `col` (rows `levels`):
    /// the rest blocks of the rest terms `rows` that share rows with it.
    fn extend(
        &mut self,
        terms: &Terms,
        order: &BlockOrder,
        col: usize,
        rows: Range<usize>,
        levels: &(Vec<usize>, Vec<u32>),
    ) {
        let (rest, block0) = (order.rest_terms(), order.block0());
        let k = terms.terms()[col].k;
        let (start, level_rows) = levels;
        let mut marker = vec![usize::MAX; order.n_blocks()];
        let mut col_rows = Vec::new();
        for l in 0..start.len() - 1 {
            col_rows.clear();
            for &r in &level_rows[start[l]..start[l + 1]] {
                for i in rows.clone() {
                    let rb = block0[i] + terms.terms()[rest[i]].codes[r as usize] as usize;
                    if marker[rb] != l {
                        marker[rb] = l;
                        col_rows.push(rb);
                    }
                }
            }
            col_rows.sort_unstable();
            for &rb in &col_rows {
                self.row.push(rb);
                self.off.push(self.len);
                self.len += order.k(rb) * k;
            }
            self.ptr.push(self.row.len());
        }
    }
}

/// The values Z̃_rowsᵀ Z̃_col of the block columns of term `col` (the first
/// at `cb0`) in their pattern.
#[allow(clippy::too_many_arguments)]
fn cross_values(
    terms: &Terms,
    order: &BlockOrder,
    col: usize,
    cb0: usize,
    rows: Range<usize>,
    levels: &(Vec<usize>, Vec<u32>),
    scale: Option<&[f64]>,
    out: &mut BlockColumns,
) {
    let (rest, block0) = (order.rest_terms(), order.block0());
    let term = &terms.terms()[col];
    let k = term.k;
    let (start, level_rows) = levels;
    let pat = &*out.pat;
    let mut pos = vec![0usize; order.n_blocks()];
    let kmax = rows.clone().map(|i| terms.terms()[rest[i]].k).max();
    let (mut zc, mut z1) = (vec![0.0; k], vec![0.0; kmax.unwrap_or(0)]);
    for l in 0..start.len() - 1 {
        let cb = cb0 + l;
        for e in pat.ptr[cb]..pat.ptr[cb + 1] {
            pos[pat.row[e]] = pat.off[e];
        }
        for &r in &level_rows[start[l]..start[l + 1]] {
            let r = r as usize;
            scaled_row(&term.z[r * k..(r + 1) * k], scale, r, &mut zc);
            for i in rows.clone() {
                let term1 = &terms.terms()[rest[i]];
                let k1 = term1.k;
                let rb = block0[i] + term1.codes[r] as usize;
                let z1 = &mut z1[..k1];
                scaled_row(&term1.z[r * k1..(r + 1) * k1], scale, r, z1);
                let v = &mut out.val[pos[rb]..][..k1 * k];
                for c in 0..k {
                    for i1 in 0..k1 {
                        v[i1 + c * k1] += z1[i1] * zc[c];
                    }
                }
            }
        }
    }
}
