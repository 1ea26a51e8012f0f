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
    pub a21: BlockColumns,
    pub a22d: Vec<f64>,
    pub a22d_off: Vec<usize>,
    pub a22: BlockColumns,
    pub ztxy: Vec<f64>,
    pub xyxy: Mat<f64>,
}

impl BlockSums {
    /// The blocks of one chunk of rows. The terms' level codes number the
    /// levels of the whole data (`n_levels` of each term is the whole data's).
    pub fn from_rows(rows: RowData, terms: Vec<ReTerm>) -> Result<Self> {
        let shapes = terms.iter().map(|t| (t.n_levels, t.k)).collect();
        let terms = Terms::new(rows.n(), terms)?;
        let order = BlockOrder::new(&terms);
        let mut sums = CrossProducts::new(rows, &terms, &order).into_sums(shapes);
        // the patterns grew entry by entry: give back what growing reserved
        // (a fit from chunks holds several partial sums at once)
        for blocks in [&mut sums.a21, &mut sums.a22] {
            if let Some(pat) = Arc::get_mut(&mut blocks.pat) {
                pat.row.shrink_to_fit();
                pat.off.shrink_to_fit();
            }
            blocks.val.shrink_to_fit();
        }
        Ok(sums)
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
        let sum = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x + y).collect();
        Ok(Self {
            n: self.n + other.n,
            p: self.p,
            log_det_w: self.log_det_w + other.log_det_w,
            shapes: self.shapes.clone(),
            a11: sum(&self.a11, &other.a11),
            a21: merge_columns(&self.a21, &other.a21),
            a22d: sum(&self.a22d, &other.a22d),
            a22d_off: self.a22d_off.clone(),
            a22: merge_columns(&self.a22, &other.a22),
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
            |_| order.kf(),
            |rb| order.k(rb),
            0,
            &order,
        )?;
        check_pattern(
            &self.a22,
            order.n_blocks(),
            |c| order.k(c),
            |rb| order.k(rb),
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
/// column's block when `below` is 1, for the rest's lower triangle), offsets
/// packed by the blocks' sizes.
fn check_pattern(
    b: &BlockColumns,
    ncol: usize,
    kcol: impl Fn(usize) -> usize,
    krow: impl Fn(usize) -> usize,
    below: usize,
    order: &BlockOrder,
) -> Result<()> {
    let p = &*b.pat;
    let fail = || {
        Err(CoreError::Dimension(
            "invalid block sums: a block pattern".into(),
        ))
    };
    if p.ptr.len() != ncol + 1 || p.ptr[0] != 0 || p.row.len() != p.off.len() {
        return fail();
    }
    let mut len = 0;
    for c in 0..ncol {
        let (s, e) = (p.ptr[c], p.ptr[c + 1]);
        if e < s || e > p.row.len() {
            return fail();
        }
        for i in s..e {
            let r = p.row[i];
            let low = if below == 1 { c + 1 } else { 0 };
            if r >= order.n_blocks() || r < low || (i > s && r <= p.row[i - 1]) || p.off[i] != len {
                return fail();
            }
            len += krow(r) * kcol(c);
        }
    }
    if p.ptr[ncol] != p.row.len() || p.len != len || b.val.len() != len {
        return fail();
    }
    Ok(())
}

/// The union of two block patterns with the values of both added. Block
/// columns are merged row block by row block (both are sorted). The output
/// is counted first and allocated once at its exact size: the merged sums of
/// a crossed model are the largest arrays of a fit from chunks, and growing
/// them would hold up to three times their size.
fn merge_columns(a: &BlockColumns, b: &BlockColumns) -> BlockColumns {
    let (pa, pb) = (&*a.pat, &*b.pat);
    let ncol = pa.ptr.len().max(pb.ptr.len()) - 1;
    let (mut entries, mut values) = (0usize, 0usize);
    union_by_column(pa, pb, ncol, |end_of_column, step| {
        if end_of_column.is_none() {
            entries += 1;
            values += step.size();
        }
    });
    let mut pat = BlockPattern {
        ptr: Vec::with_capacity(ncol + 1),
        row: Vec::with_capacity(entries),
        off: Vec::with_capacity(entries),
        len: 0,
    };
    let mut val = Vec::with_capacity(values);
    pat.ptr.push(0);
    union_by_column(pa, pb, ncol, |end_of_column, step| {
        if let Some(c) = end_of_column {
            debug_assert_eq!(pat.ptr.len(), c + 1);
            pat.ptr.push(pat.row.len());
            return;
        }
        pat.row.push(step.row);
        pat.off.push(pat.len);
        match (step.a, step.b) {
            (Some((i, m)), Some((j, _))) => {
                let (va, vb) = (&a.val[pa.off[i]..][..m], &b.val[pb.off[j]..][..m]);
                val.extend(va.iter().zip(vb).map(|(x, y)| x + y));
            }
            (Some((i, m)), None) => val.extend_from_slice(&a.val[pa.off[i]..][..m]),
            (None, Some((j, m))) => val.extend_from_slice(&b.val[pb.off[j]..][..m]),
            (None, None) => unreachable!("a union entry comes from a or b"),
        }
        pat.len += step.size();
    });
    debug_assert_eq!((pat.row.len(), val.len()), (entries, values));
    BlockColumns {
        pat: Arc::new(pat),
        val,
    }
}

/// One entry of the union of two block patterns: its row block, and the
/// entry (index, number of values) of a and of b that it comes from.
#[derive(Clone, Copy)]
struct UnionEntry {
    row: usize,
    a: Option<(usize, usize)>,
    b: Option<(usize, usize)>,
}

impl UnionEntry {
    fn size(&self) -> usize {
        self.a.or(self.b).map_or(0, |(_, m)| m)
    }
}

/// Visits the union of the entries of `pa` and `pb` column by column, in
/// order; after each column, `visit(Some(column), _)` (with a placeholder
/// entry) marks its end.
fn union_by_column(
    pa: &BlockPattern,
    pb: &BlockPattern,
    ncol: usize,
    mut visit: impl FnMut(Option<usize>, UnionEntry),
) {
    let range = |p: &BlockPattern, c: usize| {
        if c + 1 < p.ptr.len() {
            p.ptr[c]..p.ptr[c + 1]
        } else {
            0..0
        }
    };
    let size = |p: &BlockPattern, e: usize| {
        let next = if e + 1 < p.off.len() {
            p.off[e + 1]
        } else {
            p.len
        };
        next - p.off[e]
    };
    let end = UnionEntry {
        row: usize::MAX,
        a: None,
        b: None,
    };
    for c in 0..ncol {
        let (mut i, ie) = (range(pa, c).start, range(pa, c).end);
        let (mut j, je) = (range(pb, c).start, range(pb, c).end);
        while i < ie || j < je {
            let ra = if i < ie { pa.row[i] } else { usize::MAX };
            let rb = if j < je { pb.row[j] } else { usize::MAX };
            let mut entry = UnionEntry {
                row: ra.min(rb),
                a: None,
                b: None,
            };
            if ra <= rb {
                entry.a = Some((i, size(pa, i)));
                i += 1;
            }
            if rb <= ra {
                entry.b = Some((j, size(pb, j)));
                j += 1;
            }
            visit(None, entry);
        }
        visit(Some(c), end);
    }
}
