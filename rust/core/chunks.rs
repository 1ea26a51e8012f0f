//! A fed in pieces: the cross-product blocks of a model summed chunk by
//! chunk, for data that do not fit in memory.
//!
//! Every block of A is a sum over rows, so the blocks of a model are the sums
//! of the blocks of any partition of its rows. [`BlockSums::from_rows`] forms
//! the blocks of one chunk (the same code as the in-memory model, the levels
//! numbered for the whole data); [`BlockSums::merge`] adds two partial
//! results, the off-diagonal block patterns united; the merged sums then
//! stand for the whole data. Merging in a balanced tree keeps the rounding of
//! each block a pairwise sum.

use std::sync::Arc;

use faer::Mat;

use super::crossprod::{BlockColumns, BlockPattern, CrossProducts, RowData};
use super::error::{CoreError, Result};
use super::order::BlockOrder;
use super::terms::{ReTerm, Terms};

/// The blocks of A summed over some rows (no rows kept).
#[derive(Clone, Debug)]
pub struct BlockSums {
    /// Rows summed.
    pub n: usize,
    /// Columns of X.
    pub p: usize,
    /// Σ log wᵢ over the rows summed.
    pub log_det_w: f64,
    /// The layout of the terms: (levels, coefficients per level), in lme4's order.
    pub shapes: Vec<(usize, usize)>,
    pub a11: Vec<f64>,
    pub a21: SumColumns,
    pub a22d: Vec<f64>,
    pub a22d_off: Vec<usize>,
    pub a22: SumColumns,
    pub ztxy: Vec<f64>,
    pub xyxy: Mat<f64>,
}

/// Off-diagonal blocks as the sums keep them: by block column (`ptr`), the
/// row blocks, sorted, in 4 bytes, and the values (each block k_row x k_col,
/// column-major, one after the other). A block's offset follows from the
/// sizes of those before it, so it is not stored: 12 bytes a pair of scalar
/// levels, half the workspace's [`BlockColumns`]. The merges of a fit from
/// chunks hold the most of these at once (at 50M rows, 80M pairs).
#[derive(Clone, Debug, PartialEq)]
pub struct SumColumns {
    pub ptr: Vec<usize>,
    pub row: Vec<u32>,
    pub val: Vec<f64>,
}

impl SumColumns {
    /// The sums' form of workspace blocks.
    pub(crate) fn of(b: BlockColumns) -> Result<Self> {
        let row = b
            .pat
            .row
            .iter()
            .map(|&r| u32::try_from(r))
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map_err(|_| CoreError::Dimension("more than 2³² − 1 blocks of levels".into()))?;
        let mut val = b.val;
        val.shrink_to_fit(); // grown entry by entry
        Ok(Self {
            ptr: b.pat.ptr.clone(),
            row,
            val,
        })
    }

    /// The workspace's form, the offsets computed from `size(column, row
    /// block)`, the values moved.
    pub(crate) fn into_columns(self, size: impl Fn(usize, usize) -> usize) -> BlockColumns {
        let entries = || (0..self.ptr.len() - 1).flat_map(|c| self.entries(c));
        let unit = entries().all(|(c, r)| size(c, r) == 1);
        let mut off = Vec::with_capacity(if unit { 0 } else { self.row.len() });
        let mut len = 0;
        for (c, r) in entries() {
            if !unit {
                off.push(len);
            }
            len += size(c, r);
        }
        BlockColumns {
            pat: Arc::new(BlockPattern {
                ptr: self.ptr,
                row: self.row.into_iter().map(|r| r as usize).collect(),
                off,
                len,
            }),
            val: self.val,
        }
    }

    /// Column c's entries: (c, row block).
    fn entries(&self, c: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.row[self.ptr[c]..self.ptr[c + 1]]
            .iter()
            .map(move |&r| (c, r as usize))
    }
}

/// The sizes (values) of A21's and A22's blocks, by (column, row block).
struct BlockSizes(BlockOrder);

impl BlockSizes {
    fn of(n: usize, shapes: &[(usize, usize)]) -> Result<Self> {
        Ok(Self(BlockOrder::new(&Terms::without_rows(n, shapes)?)))
    }
    fn a21(&self, _level: usize, rb: usize) -> usize {
        self.0.kf() * self.0.k(rb)
    }
    fn a22(&self, c: usize, rb: usize) -> usize {
        self.0.k(c) * self.0.k(rb)
    }
}

impl BlockSums {
    /// The blocks of one chunk of rows. The terms' level codes number the
    /// levels of the whole data (`n_levels` of each term is the whole data's).
    pub fn from_rows(rows: RowData, terms: Vec<ReTerm>) -> Result<Self> {
        let shapes = terms.iter().map(|t| (t.n_levels, t.k)).collect();
        let terms = Terms::new(rows.n(), terms)?;
        let order = BlockOrder::new(&terms);
        CrossProducts::new(rows, &terms, &order).into_sums(shapes)
    }

    /// The sums of two disjoint sets of rows of the same model.
    pub fn merge(self, other: &Self) -> Result<Self> {
        self.merged(other)
    }

    /// [`merge`](Self::merge) without consuming either: the off-diagonal
    /// blocks are rebuilt anyway, so only the small blocks are copied.
    pub fn merged(&self, other: &Self) -> Result<Self> {
        if self.shapes != other.shapes || self.p != other.p {
            return Err(CoreError::Dimension(format!(
                "cannot merge the cross-products of different models: terms {:?} and {:?}, \
                 {} and {} fixed-effects columns",
                self.shapes, other.shapes, self.p, other.p
            )));
        }
        let sizes = BlockSizes::of(self.n + other.n, &self.shapes)?;
        let sum = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        Ok(Self {
            n: self.n + other.n,
            p: self.p,
            log_det_w: self.log_det_w + other.log_det_w,
            shapes: self.shapes.clone(),
            a11: sum(&self.a11, &other.a11),
            a21: merge_columns(&self.a21, &other.a21, |c, r| sizes.a21(c, r)),
            a22d: sum(&self.a22d, &other.a22d),
            a22d_off: self.a22d_off.clone(),
            a22: merge_columns(&self.a22, &other.a22, |c, r| sizes.a22(c, r)),
            ztxy: sum(&self.ztxy, &other.ztxy),
            xyxy: &self.xyxy + &other.xyxy,
        })
    }
}

impl BlockSums {
    /// Checks that the blocks fit their shapes (for sums that crossed a
    /// process boundary): sizes, sorted block patterns, offsets, finiteness.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(CoreError::Dimension(format!("invalid block sums: {what}")));
        let terms = Terms::without_rows(self.n, &self.shapes)?;
        let order = BlockOrder::new(&terms);
        let (p1, q) = (self.p + 1, terms.q());
        if self.a11.len() != order.lf() * order.kf() * order.kf()
            || self.ztxy.len() != q * p1
            || self.xyxy.nrows() != p1
            || self.xyxy.ncols() != p1
        {
            return bad("dense block sizes");
        }
        let mut off = Vec::with_capacity(order.n_blocks());
        let mut len = 0;
        for rb in 0..order.n_blocks() {
            off.push(len);
            len += order.k(rb) * order.k(rb);
        }
        if self.a22d_off != off || self.a22d.len() != len {
            return bad("diagonal blocks of the rest");
        }
        check_pattern(
            &self.a21,
            order.lf(),
            |_, rb| order.kf() * order.k(rb),
            0,
            &order,
        )?;
        check_pattern(
            &self.a22,
            order.n_blocks(),
            |c, rb| order.k(c) * order.k(rb),
            1,
            &order,
        )?;
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let xy_ok = (0..p1).all(|j| (0..p1).all(|i| self.xyxy[(i, j)].is_finite()));
        if !(finite(&self.a11) && finite(&self.a22d) && finite(&self.ztxy) && xy_ok)
            || !(finite(&self.a21.val) && finite(&self.a22.val) && self.log_det_w.is_finite())
        {
            return bad("non-finite values");
        }
        Ok(())
    }
}

/// A block pattern with `ncol` columns: rows sorted and in range (below the
/// column's block when `below` is 1, for the rest's lower triangle), as many
/// values as the blocks' sizes `size(column, row block)` add up to.
fn check_pattern(
    b: &SumColumns,
    ncol: usize,
    size: impl Fn(usize, usize) -> usize,
    below: usize,
    order: &BlockOrder,
) -> Result<()> {
    let fail = || {
        Err(CoreError::Dimension(
            "invalid block sums: a block pattern".into(),
        ))
    };
    if b.ptr.len() != ncol + 1 || b.ptr[0] != 0 {
        return fail();
    }
    let mut len = 0;
    for c in 0..ncol {
        let (s, e) = (b.ptr[c], b.ptr[c + 1]);
        if e < s || e > b.row.len() {
            return fail();
        }
        for i in s..e {
            let r = b.row[i] as usize;
            let low = if below == 1 { c + 1 } else { 0 };
            if r >= order.n_blocks() || r < low || (i > s && b.row[i] <= b.row[i - 1]) {
                return fail();
            }
            len += size(c, r);
        }
    }
    if b.ptr[ncol] != b.row.len() || b.val.len() != len {
        return fail();
    }
    Ok(())
}

/// The union of two block patterns with the values of both added. Block
/// columns are merged row block by row block (both are sorted). The output
/// is counted first and allocated once at its exact size: the merged sums of
/// a crossed model are the largest arrays of a fit from chunks, and growing
/// them would hold up to three times their size.
fn merge_columns(
    a: &SumColumns,
    b: &SumColumns,
    size: impl Fn(usize, usize) -> usize,
) -> SumColumns {
    let ncol = a.ptr.len().max(b.ptr.len()) - 1;
    let (mut entries, mut values) = (0usize, 0usize);
    union_by_column(a, b, ncol, |c, row, _, _| {
        entries += 1;
        values += size(c, row as usize);
    });
    let mut out = SumColumns {
        ptr: Vec::with_capacity(ncol + 1),
        row: Vec::with_capacity(entries),
        val: Vec::with_capacity(values),
    };
    out.ptr.push(0);
    // the values of a's and b's entries are read in order: running offsets
    let (mut oa, mut ob, mut col) = (0, 0, 0);
    union_by_column(a, b, ncol, |c, row, in_a, in_b| {
        while col < c {
            out.ptr.push(out.row.len());
            col += 1;
        }
        let m = size(c, row as usize);
        out.row.push(row);
        match (in_a, in_b) {
            (true, true) => {
                let (va, vb) = (&a.val[oa..oa + m], &b.val[ob..ob + m]);
                out.val.extend(va.iter().zip(vb).map(|(x, y)| x + y));
            }
            (true, false) => out.val.extend_from_slice(&a.val[oa..oa + m]),
            _ => out.val.extend_from_slice(&b.val[ob..ob + m]),
        }
        oa += if in_a { m } else { 0 };
        ob += if in_b { m } else { 0 };
    });
    while out.ptr.len() < ncol + 1 {
        out.ptr.push(out.row.len());
    }
    debug_assert_eq!((out.row.len(), out.val.len()), (entries, values));
    out
}

/// Visits the union of the entries of `a` and `b` column by column, in
/// order: `visit(column, row block, in a, in b)`.
fn union_by_column(
    a: &SumColumns,
    b: &SumColumns,
    ncol: usize,
    mut visit: impl FnMut(usize, u32, bool, bool),
) {
    let range = |p: &SumColumns, c: usize| {
        if c + 1 < p.ptr.len() {
            p.ptr[c]..p.ptr[c + 1]
        } else {
            0..0
        }
    };
    for c in 0..ncol {
        let (ra, rb) = (range(a, c), range(b, c));
        let (ra, rb) = (&a.row[ra], &b.row[rb]);
        let (mut i, mut j) = (0, 0);
        while i < ra.len() || j < rb.len() {
            let x = ra.get(i).copied().unwrap_or(u32::MAX);
            let y = rb.get(j).copied().unwrap_or(u32::MAX);
            visit(c, x.min(y), x <= y, y <= x);
            i += usize::from(x <= y);
            j += usize::from(y <= x);
        }
    }
}
