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

use std::borrow::Cow;
use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::reborrow::ReborrowMut;
use faer::{Accum, Mat, MatRef, Par};

use super::chunks::{BlockSums, SumColumns};
use super::cross_blocks::cross_blocks;
use super::error::{check_finite, check_len, CoreError, Result};
use super::order::BlockOrder;
use super::terms::Terms;

/// The pattern of off-diagonal blocks stored by block column: entries
/// `ptr[c]..ptr[c+1]` of column `c` have block row `row[e]` (sorted) and
/// values (k_row x k_col, column-major) at [`off(e)`](Self::off); `len`
/// values in all.
#[derive(Debug)]
pub struct BlockPattern {
    pub ptr: Vec<usize>,
    pub row: Vec<usize>,
    /// The offsets, or empty when every block is 1 x 1 (then entry e's value
    /// is at e: at 50M rows of two crossed intercepts, 0.3 GiB not stored).
    pub(crate) off: Vec<usize>,
    pub len: usize,
}

impl BlockPattern {
    /// Where entry `e`'s values start.
    #[inline(always)]
    pub fn off(&self, e: usize) -> usize {
        if self.off.is_empty() {
            e
        } else {
            self.off[e]
        }
    }
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

    /// The shape of n rows whose values were summed and not kept.
    pub(crate) fn not_kept(n: usize, p: usize) -> Self {
        Self {
            n,
            p,
            x: vec![],
            y: vec![],
            weights: None,
            sqrt_w: None,
            offset: None,
        }
    }

    /// Whether the rows' values are kept (not for a model fitted from chunks).
    pub fn kept(&self) -> bool {
        self.y.len() == self.n
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
    fn scaled_x(&self) -> Cow<'_, [f64]> {
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
    fn scaled_y(&self) -> Cow<'_, [f64]> {
        if self.offset.is_none() && self.sqrt_w.is_none() {
            return self.y.as_slice().into();
        }
        let mut y = self.y.clone();
        if let Some(o) = &self.offset {
            y.iter_mut().zip(o).for_each(|(v, o)| *v -= o);
        }
        if let Some(s) = &self.sqrt_w {
            y.iter_mut().zip(s).for_each(|(v, s)| *v *= s);
        }
        y.into()
    }
}

/// A's blocks and X (data scale): [`CrossProducts::blocks_mut`].
pub(crate) struct BlocksMut<'a> {
    pub a11: &'a mut [f64],
    pub a21: &'a mut [f64],
    pub a22d: &'a mut [f64],
    pub ztxy: &'a mut [f64],
    pub xyxy: &'a mut Mat<f64>,
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
    /// Z̃ᵀ[X̃ ỹ] (q x (p+1) column-major, rows in lme4's order) and
    /// [X̃ ỹ]ᵀ[X̃ ỹ].
    ztxy: Vec<f64>,
    xyxy: Mat<f64>,
}

impl CrossProducts {
    /// Finds the patterns of the off-diagonal blocks and forms all blocks
    /// from the rows.
    pub fn new(rows: RowData, terms: &Terms, order: &BlockOrder) -> Self {
        let nb = order.n_blocks();
        let mut a22d_off = Vec::with_capacity(nb);
        let mut len = 0;
        for rb in 0..nb {
            a22d_off.push(len);
            len += order.k(rb) * order.k(rb);
        }
        let (p, q, kf) = (rows.p(), terms.q(), order.kf());
        let empty = || BlockColumns::zeros(Arc::new(BlockPattern::empty()));
        let mut a = Self {
            log_det_w: rows.log_det_w(),
            rows,
            a11: vec![0.0; order.lf() * kf * kf],
            a21: empty(),
            a22d: vec![0.0; len],
            a22d_off,
            a22: empty(),
            ztxy: vec![0.0; q * (p + 1)],
            xyxy: Mat::zeros(p + 1, p + 1),
        };
        a.fill(terms, order, true);
        a
    }

    /// The blocks of summed chunks of rows; the rows themselves are not kept.
    pub fn from_sums(sums: BlockSums, order: &BlockOrder) -> Self {
        Self {
            rows: RowData::not_kept(sums.n, sums.p),
            log_det_w: sums.log_det_w,
            a11: sums.a11,
            a21: sums.a21.into_columns(|_, rb| order.kf() * order.k(rb)),
            a22d: sums.a22d,
            a22d_off: sums.a22d_off,
            a22: sums.a22.into_columns(|c, rb| order.k(c) * order.k(rb)),
            ztxy: sums.ztxy,
            xyxy: sums.xyxy,
        }
    }

    /// New prior weights (None: unweighted): recomputes every block in the
    /// same patterns.
    pub fn set_weights(
        &mut self,
        terms: &Terms,
        order: &BlockOrder,
        weights: Option<Vec<f64>>,
    ) -> Result<()> {
        if !self.rows.kept() {
            return Err(CoreError::RowsNotKept {
                what: "new weights",
            });
        }
        self.rows.set_weights(weights)?;
        self.log_det_w = self.rows.log_det_w();
        self.fill(terms, order, false);
        Ok(())
    }

    /// New weights and a new response together (PIRLS): every block, in
    /// one fill. `log_det_w` is then NaN (working weights have no place in
    /// the linear model's objective).
    ///
    /// Without `with_x` the blocks of X (Z̃ᵀX̃, X̃ᵀX̃, X̃ᵀỹ) are left as they
    /// were, stale: what PIRLS on u at fixed β needs is Z̃ᵀZ̃ and Z̃ᵀỹ only
    /// (a response with Xβ taken out), and the X blocks cost most of the fill.
    pub fn set_weights_response(
        &mut self,
        terms: &Terms,
        order: &BlockOrder,
        weights: Vec<f64>,
        y: Vec<f64>,
        with_x: bool,
    ) -> Result<()> {
        check_len("y", y.len(), self.rows.n)?;
        check_finite("y", &y)?;
        self.rows.set_weights(Some(weights))?;
        self.rows.y = y;
        // Σ log wᵢ is not part of a GLMM's objective: not computed per PIRLS step
        self.log_det_w = f64::NAN;
        self.fill_parts(terms, order, false, with_x);
        Ok(())
    }

    /// A new response (original scale): recomputes only Z̃ᵀỹ, X̃ᵀỹ and ỹᵀỹ.
    pub fn set_response(&mut self, terms: &Terms, y: Vec<f64>) -> Result<()> {
        if !self.rows.kept() {
            return Err(CoreError::RowsNotKept {
                what: "a new response",
            });
        }
        check_len("y", y.len(), self.rows.n)?;
        check_finite("y", &y)?;
        self.rows.y = y;
        let (n, p, q) = (self.rows.n, self.rows.p, terms.q());
        let ys = self.rows.scaled_y();
        let dst = &mut self.ztxy[p * q..];
        dst.fill(0.0);
        terms.zt_mul_add(&ys, self.rows.scale(), dst);
        xy_blocks(&self.rows.scaled_x(), &ys, n, &mut self.xyxy, false);
        Ok(())
    }

    /// All blocks from the rows: the diagonal blocks in one pass over the
    /// rows, Z̃ᵀ[X̃ ỹ] column by column, the off-diagonal blocks level by level
    /// (finding their patterns first when `find`), and the dense
    /// `[X̃ ỹ]ᵀ[X̃ ỹ]`. Each value sums its rows in their order.
    fn fill(&mut self, terms: &Terms, order: &BlockOrder, find: bool) {
        self.fill_parts(terms, order, find, true);
    }

    /// [`fill`](Self::fill), the X blocks only `with_x`.
    fn fill_parts(&mut self, terms: &Terms, order: &BlockOrder, find: bool, with_x: bool) {
        let (n, p, q) = (self.rows.n, self.rows.p, terms.q());
        let tt = terms.terms();
        let scale = self.rows.scale();
        let ys = self.rows.scaled_y();
        let xs = if with_x {
            self.rows.scaled_x()
        } else {
            Cow::Borrowed(&[][..])
        };
        // where each term's diagonal blocks start: a11 for f, its first rest
        // block for the others
        let mut first_block = vec![usize::MAX; tt.len()];
        for (i, &t) in order.rest_terms().iter().enumerate() {
            first_block[t] = order.block0()[i];
        }
        // per term, one pass over the rows: each level's diagonal block Z̃_tᵀZ̃_t
        // and its rows of Z̃ᵀ[X̃ ỹ] (only ỹ's without `with_x`), every value
        // overwritten
        let mut cols: Vec<&[f64]> = (0..if with_x { p } else { 0 })
            .map(|j| &xs[j * n..(j + 1) * n])
            .collect();
        cols.push(&ys);
        let (m, c0) = (cols.len(), p + 1 - cols.len());
        for (t, (term, lay)) in tt.iter().zip(terms.layout()).enumerate() {
            let k = term.k;
            let (kk, w) = (k * k, k * k + k * m);
            let acc = terms.level_sums(t, &cols, scale);
            for (l, s) in acc.chunks_exact(w).enumerate() {
                let blk = match first_block[t] {
                    usize::MAX => &mut self.a11[l * kk..][..kk],
                    b0 => &mut self.a22d[self.a22d_off[b0 + l]..][..kk],
                };
                blk.copy_from_slice(&s[..kk]);
                for i in 0..k {
                    let row = lay.offset + l * k + i;
                    for c in 0..m {
                        self.ztxy[(c0 + c) * q + row] = s[kk + i * m + c];
                    }
                }
            }
        }
        // the off-diagonal blocks: f's columns with every term of the rest
        // (A21), each term of the rest with the later ones (A22)
        let rest = order.rest_terms();
        for blocks in [&mut self.a21, &mut self.a22] {
            blocks.val.fill(0.0);
        }
        let (f, all) = (order.first(), 0..rest.len());
        cross_blocks(terms, order, (f, 0), all, scale, &mut self.a21, find);
        for i in 0..rest.len() {
            let (t, cb0) = (rest[i], order.block0()[i]);
            cross_blocks(
                terms,
                order,
                (t, cb0),
                i + 1..rest.len(),
                scale,
                &mut self.a22,
                find,
            );
        }
        if with_x {
            xy_blocks(&xs, &ys, n, &mut self.xyxy, true);
        }
    }

    pub fn rows(&self) -> &RowData {
        &self.rows
    }
    /// The blocks for `glmm/fused.rs` (rows stale until `set_weights_response`).
    pub(crate) fn blocks_mut(&mut self) -> BlocksMut<'_> {
        BlocksMut {
            a11: &mut self.a11,
            a21: &mut self.a21.val,
            a22d: &mut self.a22d,
            ztxy: &mut self.ztxy,
            xyxy: &mut self.xyxy,
        }
    }
    /// The blocks without the rows, for summing chunks of a model's rows
    /// (`shapes`: each term's levels and coefficients per level).
    pub(crate) fn into_sums(self, shapes: Vec<(usize, usize)>) -> Result<BlockSums> {
        Ok(BlockSums {
            n: self.rows.n,
            p: self.rows.p,
            log_det_w: self.log_det_w,
            shapes,
            a11: self.a11,
            a21: SumColumns::of(self.a21)?,
            a22d: self.a22d,
            a22d_off: self.a22d_off,
            a22: SumColumns::of(self.a22)?,
            ztxy: self.ztxy,
            xyxy: self.xyxy,
        })
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
        let q = self.ztxy.len() / self.xyxy.nrows();
        MatRef::from_column_major_slice(&self.ztxy, q, self.xyxy.nrows())
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
