//! The off-diagonal blocks of A (`crossprod.rs`): each column term's
//! cross-products with the later terms, level by level, their block pattern
//! found on the first pass.

use std::ops::Range;
use std::sync::Arc;

use super::crossprod::{BlockColumns, BlockPattern};
use super::order::BlockOrder;
use super::terms::Terms;

/// `out = s_r z` (z itself without a scale). A loop, not `copy_from_slice`:
/// rows are one to three values, and a call of memcpy per row and term was an
/// eighth of a chunk's cross-products.
#[inline(always)]
pub(super) fn scaled_row(z: &[f64], scale: Option<&[f64]>, r: usize, out: &mut [f64]) {
    match scale {
        None => out.iter_mut().zip(z).for_each(|(o, &z)| *o = z),
        Some(s) => out.iter_mut().zip(z).for_each(|(o, z)| *o = s[r] * z),
    }
}

/// A pattern being found (not shared yet).
fn unshared(pat: &mut Arc<BlockPattern>) -> &mut BlockPattern {
    Arc::get_mut(pat).expect("a block pattern being found is not shared")
}

impl BlockPattern {
    pub(super) fn empty() -> Self {
        Self {
            ptr: vec![0],
            row: vec![],
            off: vec![],
            len: 0,
        }
    }
}

/// Adds Z̃_rowsᵀZ̃_col to the block columns of term `col` (one per level,
/// the first at `cb0`): the rest blocks of the rest terms `rows` (indices
/// into the rest) that share rows with each level. With `find`, each
/// column's row blocks are first found and appended to the pattern (which
/// must not be shared yet); without, the pattern is kept. Level by level, so
/// that a level's rows are read the second time while they are in cache.
pub(super) fn cross_blocks(
    terms: &Terms,
    order: &BlockOrder,
    (col, cb0): (usize, usize),
    rows: Range<usize>,
    scale: Option<&[f64]>,
    out: &mut BlockColumns,
    find: bool,
) {
    let (rest, block0, tt) = (order.rest_terms(), order.block0(), terms.terms());
    let (k, nl) = (tt[col].k, tt[col].n_levels);
    if rows.is_empty() {
        // no later terms: empty columns
        if find {
            let pat = unshared(&mut out.pat);
            pat.ptr.extend(std::iter::repeat(pat.row.len()).take(nl));
        }
        return;
    }
    let unit = terms.all_scalar(); // every block 1 x 1: no offsets stored
    let scatter = unit && terms.n() * rows.len() <= SCATTER_MAX;
    #[cfg(test)]
    let scatter = scatter && !GENERAL_ONLY.with(std::cell::Cell::get);
    if scatter && order.n_blocks() <= u32::MAX as usize {
        return scalar_cross_blocks(terms, order, (col, cb0), rows, scale, out, find);
    }
    let (start, level_rows) = terms.rows_by_level(col);
    let (mut marker, mut pos) = (
        vec![usize::MAX; order.n_blocks()],
        vec![0usize; order.n_blocks()],
    );
    let mut col_rows = Vec::new();
    let kmax = rows.clone().map(|i| tt[rest[i]].k).max().unwrap_or(0);
    let (mut zc, mut z1) = (vec![0.0; k], vec![0.0; kmax]);
    for l in 0..nl {
        let lrows = &level_rows[start[l]..start[l + 1]];
        if find {
            let pat = unshared(&mut out.pat);
            col_rows.clear();
            for &r in lrows {
                for i in rows.clone() {
                    let rb = block0[i] + tt[rest[i]].codes[r as usize] as usize;
                    if marker[rb] != l {
                        marker[rb] = l;
                        col_rows.push(rb);
                    }
                }
            }
            col_rows.sort_unstable();
            for &rb in &col_rows {
                pat.row.push(rb);
                if !unit {
                    pat.off.push(pat.len);
                }
                pat.len += order.k(rb) * k;
            }
            pat.ptr.push(pat.row.len());
            out.val.resize(pat.len, 0.0);
        }
        let pat = &*out.pat;
        for e in pat.ptr[cb0 + l]..pat.ptr[cb0 + l + 1] {
            pos[pat.row[e]] = pat.off(e);
        }
        for &r in lrows {
            let r = r as usize;
            scaled_row(&tt[col].z[r * k..(r + 1) * k], scale, r, &mut zc);
            for i in rows.clone() {
                let (k1, code) = (tt[rest[i]].k, tt[rest[i]].codes[r] as usize);
                let z1 = &mut z1[..k1];
                scaled_row(&tt[rest[i]].z[r * k1..(r + 1) * k1], scale, r, z1);
                let v = &mut out.val[pos[block0[i] + code]..][..k1 * k];
                for c in 0..k {
                    for i1 in 0..k1 {
                        v[i1 + c * k1] += z1[i1] * zc[c];
                    }
                }
            }
        }
    }
}

#[cfg(test)]
thread_local! {
    static GENERAL_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the scalar terms' scatter path off in this thread (tests).
#[cfg(test)]
pub(crate) fn without_scatter<T>(f: impl FnOnce() -> T) -> T {
    GENERAL_ONLY.with(|c| c.set(true));
    let out = f();
    GENERAL_ONLY.with(|c| c.set(false));
    out
}

/// Most (rows x later terms) pairs [`scalar_cross_blocks`] scatters at once
/// (12 bytes each).
const SCATTER_MAX: usize = 1 << 24;

/// [`cross_blocks`] when every term is scalar. The general loop reads each
/// level's rows in turn, so every row's codes and values are a cache miss;
/// here one pass in row order scatters each row's (row block, product) pairs
/// to its level's place, and the levels then read their pairs in order: a
/// third of the time on a 1M-row chunk crossed 100,000 x 1,000. The same
/// products are added in the same order (a level's rows in row order), so
/// the sums are the general loop's to the bit.
fn scalar_cross_blocks(
    terms: &Terms,
    order: &BlockOrder,
    (col, cb0): (usize, usize),
    rows: Range<usize>,
    scale: Option<&[f64]>,
    out: &mut BlockColumns,
    find: bool,
) {
    let (rest, block0, tt) = (order.rest_terms(), order.block0(), terms.terms());
    let (nl, n, m) = (tt[col].n_levels, terms.n(), rows.len());
    let codes = &tt[col].codes;
    let mut start = vec![0usize; nl + 1];
    for &c in codes {
        start[c as usize + 1] += 1;
    }
    for l in 0..nl {
        start[l + 1] += start[l];
    }
    let mut next = start.clone();
    let (mut blk, mut prod) = (vec![0u32; n * m], vec![0.0f64; n * m]);
    for r in 0..n {
        let s = scale.map_or(1.0, |s| s[r]);
        let zc = s * tt[col].z[r];
        let d = next[codes[r] as usize];
        next[codes[r] as usize] += 1;
        for (ii, i) in rows.clone().enumerate() {
            let t = &tt[rest[i]];
            blk[d * m + ii] = (block0[i] + t.codes[r] as usize) as u32;
            prod[d * m + ii] = (s * t.z[r]) * zc;
        }
    }
    let (mut marker, mut pos) = (
        vec![usize::MAX; order.n_blocks()],
        vec![0usize; order.n_blocks()],
    );
    let mut col_rows = Vec::new();
    for l in 0..nl {
        let (blk, prod) = (
            &blk[start[l] * m..start[l + 1] * m],
            &prod[start[l] * m..start[l + 1] * m],
        );
        if find {
            let pat = unshared(&mut out.pat);
            col_rows.clear();
            for &rb in blk {
                if marker[rb as usize] != l {
                    marker[rb as usize] = l;
                    col_rows.push(rb as usize);
                }
            }
            col_rows.sort_unstable();
            pat.row.extend_from_slice(&col_rows);
            pat.len += col_rows.len();
            pat.ptr.push(pat.row.len());
            out.val.resize(pat.len, 0.0);
        }
        let pat = &*out.pat;
        for e in pat.ptr[cb0 + l]..pat.ptr[cb0 + l + 1] {
            pos[pat.row[e]] = e;
        }
        for (&rb, &p) in blk.iter().zip(prod) {
            out.val[pos[rb as usize]] += p;
        }
    }
}
