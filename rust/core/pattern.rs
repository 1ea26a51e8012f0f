//! The symbolic plan of the factorization, found once per model from the
//! patterns of A21 and A22: the transpose of A21 by rest block, the block
//! pattern of the lower triangle of `M22 − L21 L21ᵀ` and its scalar
//! compressed columns, and the sparse analysis of that pattern (AMD ordering,
//! elimination tree, supernodes) in [`SparseCholesky`].
//!
//! The plan is immutable and shared by every copy of a workspace (new
//! responses, new weights).

use std::sync::{Arc, OnceLock};

use super::chol::{FactorKind, SparseCholesky};
use super::crossprod::BlockPattern;
use super::error::{CoreError, Result};
use super::order::BlockOrder;

#[derive(Debug)]
pub struct Pattern {
    /// A21's pattern, and its transpose by rest block ([`A21t`]), built
    /// when first read; released when the grouped fill, which does not read
    /// it, is used (`release_transpose`).
    a21: Arc<BlockPattern>,
    a21t: OnceLock<A21t>,
    /// Block pattern of the lower triangle of M22 − L21 L21ᵀ: for rest
    /// column block c, row blocks `m_brow[m_bptr[c]..m_bptr[c+1]]` (the first
    /// is c itself, the others sorted).
    pub m_bptr: Vec<usize>,
    pub m_brow: Vec<usize>,
    /// Its scalar compressed columns: the values of scalar column i are at
    /// `m_col_ptr[i]..m_col_ptr[i + 1]` (rows: the lower part of the
    /// diagonal block, then the other row blocks in order).
    pub m_col_ptr: Vec<usize>,
}

/// The entries of A21 by rest block: for block rb, (first-term level,
/// entry) at `entries[ptr[rb]..ptr[rb + 1]]`, in 4-byte indices (at 50M rows,
/// 39M crossed pairs: 0.3 GiB where 8-byte ones took 0.6).
#[derive(Debug)]
pub(crate) struct A21t {
    pub ptr: Vec<usize>,
    pub entries: Vec<(u32, u32)>,
}

impl A21t {
    fn of(a21: &BlockPattern, nb: usize) -> Self {
        let mut ptr = vec![0usize; nb + 1];
        for &rb in &a21.row {
            ptr[rb + 1] += 1;
        }
        for i in 0..nb {
            ptr[i + 1] += ptr[i];
        }
        let mut entries = vec![(0u32, 0u32); a21.row.len()];
        let mut next = ptr.clone();
        for j in 0..a21.ptr.len() - 1 {
            for e in a21.ptr[j]..a21.ptr[j + 1] {
                let rb = a21.row[e];
                entries[next[rb]] = (j as u32, e as u32);
                next[rb] += 1;
            }
        }
        Self { ptr, entries }
    }
}

impl Pattern {
    /// The plan, and the analysed sparse factor of the rest (None when the
    /// model has a single term).
    pub fn new(
        order: &BlockOrder,
        a21_pat: &Arc<BlockPattern>,
        a22: &BlockPattern,
        kind: FactorKind,
    ) -> Result<(Self, Option<SparseCholesky>)> {
        let nb = order.n_blocks();
        let a21 = &**a21_pat;
        let (lf, entries) = (a21.ptr.len() - 1, a21.row.len());
        if u32::try_from(lf.max(entries)).is_err() {
            return Err(CoreError::MemoryBudget {
                what: "the crossed level pairs (and first-term levels) of the plan",
                need: lf.max(entries) as u128,
                budget: u32::MAX as u128,
            });
        }
        let transpose = A21t::of(a21, nb);
        let (a21t_ptr, a21t) = (&transpose.ptr, &transpose.entries);

        // block pattern of the lower triangle of M22 − L21 L21ᵀ
        let mut m_bptr = vec![0usize];
        let mut m_brow = Vec::new();
        let mut marker = vec![usize::MAX; nb];
        let mut col = Vec::new();
        for c in 0..nb {
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
                let (j, e) = (j as usize, e as usize);
                if col.len() == nb - c {
                    break; // every row block from c on is in: the column is full
                }
                // entries of column j below (and at) e have row blocks >= c
                for &rb in &a21.row[e..a21.ptr[j + 1]] {
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

        // its scalar compressed columns
        let mut m_col_ptr = vec![0usize];
        let mut row_idx = Vec::new();
        for c in 0..nb {
            let (oc, kc) = (order.off(c), order.k(c));
            for cc in 0..kc {
                row_idx.extend(oc + cc..oc + kc);
                for &rb in &m_brow[m_bptr[c] + 1..m_bptr[c + 1]] {
                    row_idx.extend(order.off(rb)..order.off(rb) + order.k(rb));
                }
                m_col_ptr.push(row_idx.len());
            }
        }
        let q_rest = order.q_rest();
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
        let plan = Self {
            a21: Arc::clone(a21_pat),
            a21t: OnceLock::from(transpose),
            m_bptr,
            m_brow,
            m_col_ptr,
        };
        Ok((plan, chol))
    }

    /// Stored values of the lower triangle of M22.
    pub fn nnz(&self) -> usize {
        *self.m_col_ptr.last().unwrap()
    }

    /// A21 by rest block (built again if it was released).
    pub(crate) fn a21t(&self) -> &A21t {
        self.a21t
            .get_or_init(|| A21t::of(&self.a21, self.m_bptr.len() - 1))
    }

    /// Frees A21's transpose until it is read again: the grouped fill does
    /// not read it, and a fit from chunks never regroups (its weights are
    /// fixed), so it stays free there.
    pub(crate) fn release_transpose(&mut self) {
        self.a21t.take();
    }

    /// The entries of A21 in the block row of rest block `rb`: (first-term
    /// level, entry).
    #[inline]
    pub fn a21_row(&self, rb: usize) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        let t = self.a21t();
        t.entries[t.ptr[rb]..t.ptr[rb + 1]]
            .iter()
            .map(|&(j, e)| (j as usize, e as usize))
    }

    /// The row blocks of rest column block `c` (the first is c).
    #[inline]
    pub fn m_rows(&self, c: usize) -> &[usize] {
        &self.m_brow[self.m_bptr[c]..self.m_bptr[c + 1]]
    }
}
