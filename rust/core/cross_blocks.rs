//! The off-diagonal blocks of A (`crossprod.rs`): each column term's
//! cross-products with the later terms, level by level, their block pattern
//! found on the first pass.

use std::ops::Range;
use std::sync::Arc;

use super::crossprod::{BlockColumns, BlockPattern};
use super::order::BlockOrder;
use super::terms::Terms;

/// `out = s_r z` (z itself without a scale).
#[inline(always)]
pub(super) fn scaled_row(z: &[f64], scale: Option<&[f64]>, r: usize, out: &mut [f64]) {
    match scale {
        None => out.copy_from_slice(z),
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
    let (start, level_rows) = terms.rows_by_level(col);
    let unit = terms.all_scalar(); // every block 1 x 1: no offsets stored
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
