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
        Ok(CrossProducts::new(rows, &terms, &order).into_sums(shapes))
    }

    /// The sums of two disjoint sets of rows of the same model.
    pub fn merge(mut self, other: &Self) -> Result<Self> {
        if self.shapes != other.shapes || self.p != other.p {
            return Err(CoreError::Dimension(format!(
                "cannot merge the cross-products of different models: terms {:?} and {:?}, \
                 {} and {} fixed-effects columns",
                self.shapes, other.shapes, self.p, other.p
            )));
        }
        self.n += other.n;
        self.log_det_w += other.log_det_w;
        add(&mut self.a11, &other.a11);
        add(&mut self.a22d, &other.a22d);
        add(&mut self.ztxy, &other.ztxy);
        self.xyxy += &other.xyxy;
        self.a21 = merge_columns(&self.a21, &other.a21);
        self.a22 = merge_columns(&self.a22, &other.a22);
        Ok(self)
    }
}

fn add(a: &mut [f64], b: &[f64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

/// The union of two block patterns with the values of both added. Block
/// columns are merged row block by row block (both are sorted).
fn merge_columns(a: &BlockColumns, b: &BlockColumns) -> BlockColumns {
    let (pa, pb) = (&*a.pat, &*b.pat);
    let ncol = pa.ptr.len().max(pb.ptr.len()) - 1;
    let mut pat = BlockPattern {
        ptr: Vec::with_capacity(ncol + 1),
        row: Vec::with_capacity(pa.row.len().max(pb.row.len())),
        off: Vec::with_capacity(pa.row.len().max(pb.row.len())),
        len: 0,
    };
    let mut val = Vec::with_capacity(a.val.len().max(b.val.len()));
    pat.ptr.push(0);
    let range = |p: &BlockPattern, c: usize| {
        if c + 1 < p.ptr.len() {
            p.ptr[c]..p.ptr[c + 1]
        } else {
            0..0
        }
    };
    let size = |p: &BlockPattern, e: usize| {
        let next = if e + 1 < p.off.len() { p.off[e + 1] } else { p.len };
        next - p.off[e]
    };
    for c in 0..ncol {
        let (mut i, ie) = (range(pa, c).start, range(pa, c).end);
        let (mut j, je) = (range(pb, c).start, range(pb, c).end);
        while i < ie || j < je {
            let ra = if i < ie { pa.row[i] } else { usize::MAX };
            let rb = if j < je { pb.row[j] } else { usize::MAX };
            let rb_row = ra.min(rb);
            pat.row.push(rb_row);
            pat.off.push(pat.len);
            if ra == rb {
                let m = size(pa, i);
                let (va, vb) = (&a.val[pa.off[i]..][..m], &b.val[pb.off[j]..][..m]);
                val.extend(va.iter().zip(vb).map(|(x, y)| x + y));
                pat.len += m;
                i += 1;
                j += 1;
            } else if ra < rb {
                let m = size(pa, i);
                val.extend_from_slice(&a.val[pa.off[i]..][..m]);
                pat.len += m;
                i += 1;
            } else {
                let m = size(pb, j);
                val.extend_from_slice(&b.val[pb.off[j]..][..m]);
                pat.len += m;
                j += 1;
            }
        }
        pat.ptr.push(pat.row.len());
    }
    BlockColumns {
        pat: Arc::new(pat),
        val,
    }
}
