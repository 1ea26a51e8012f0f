//! A sparse Cholesky factor whose symbolic analysis (fill-reducing ordering,
//! elimination tree, supernodes) is done once, and whose numeric values are
//! recomputed for each new matrix with the same pattern.
//!
//! Wraps faer's sparse `SymbolicCholesky`. The factored matrix is
//! `P A Pᵀ = L Lᵀ`, `P` the AMD permutation, applied to the pattern once.

use std::sync::Arc;

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt::factor::LltRegularization;
use faer::linalg::temp_mat_scratch;
use faer::reborrow::ReborrowMut;
use faer::sparse::linalg::cholesky::{
    factorize_symbolic_cholesky, simplicial, supernodal, CholeskySymbolicParams, SymbolicCholesky,
    SymbolicCholeskyRaw, SymmetricOrdering,
};
use faer::sparse::linalg::{amd, triangular_solve, SupernodalThreshold};
use faer::sparse::{SparseColMatRef, SymbolicSparseColMatRef};
use faer::{Conj, MatMut, Par, Side, Spec};

use super::error::{CoreError, Result};

/// Which kind of numeric factorization to use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FactorKind {
    /// Let faer choose from the flop count (the default).
    #[default]
    Auto,
    Simplicial,
    Supernodal,
}

/// Factors with a supernode at least this wide are factored in parallel.
/// faer's dense Cholesky on two threads loses to one thread below about 1,200
/// columns on the machines we measured (570: 1.07 ms on one thread, 1.68 ms
/// on two; 1,500: 26 ms against 15 ms), and the supernodal factorization
/// passes the parallelism down to each supernode's dense kernels.
const PARALLEL_MIN_SUPERNODE: usize = 1_200;

pub struct SparseCholesky {
    n: usize,
    par: Par,
    /// The permuted matrix P A Pᵀ, in the triangle the factorization reads
    /// (`side`), compressed columns; `pos[e]` is where entry `e` of the
    /// caller's pattern goes in `pvals`.
    side: Side,
    pcol_ptr: Vec<usize>,
    prow_idx: Vec<usize>,
    pvals: Vec<f64>,
    pos: Vec<usize>,
    /// The AMD permutation: row i of L is row `perm_fwd[i]` of A.
    perm_fwd: Vec<usize>,
    perm_inv: Vec<usize>,
    /// Shared by clones of the workspace (refits of new responses).
    symbolic: Arc<SymbolicCholesky<usize>>,
    l_values: Vec<f64>,
    buffer: MemBuffer,
    factored: bool,
}

impl Clone for SparseCholesky {
    /// A copy with the same analysis (shared) and its own numeric storage.
    fn clone(&self) -> Self {
        let req = self
            .symbolic
            .factorize_numeric_llt_scratch::<f64>(self.par, Spec::default());
        Self {
            n: self.n,
            par: self.par,
            side: self.side,
            pcol_ptr: self.pcol_ptr.clone(),
            prow_idx: self.prow_idx.clone(),
            pvals: self.pvals.clone(),
            pos: self.pos.clone(),
            perm_fwd: self.perm_fwd.clone(),
            perm_inv: self.perm_inv.clone(),
            symbolic: Arc::clone(&self.symbolic),
            l_values: self.l_values.clone(),
            buffer: MemBuffer::new(req),
            factored: self.factored,
        }
    }
}

impl SparseCholesky {
    /// Analyses the pattern of a symmetric matrix given by its lower triangle
    /// in compressed-column form (row indices sorted within each column, the
    /// diagonal present in every column).
    ///
    /// The fill-reducing ordering is computed once and the pattern permuted
    /// once here, so that each numeric factorization is a scatter of the
    /// values followed by faer's factorization of the permuted matrix.
    pub fn analyse(
        n: usize,
        col_ptr: Vec<usize>,
        row_idx: Vec<usize>,
        kind: FactorKind,
    ) -> Result<Self> {
        let fe = |e: faer::sparse::FaerError| CoreError::Factorization(format!("{e:?}"));
        let pattern = SymbolicSparseColMatRef::new_checked(n, n, &col_ptr, None, &row_idx);
        let threshold = |kind| match kind {
            FactorKind::Auto => SupernodalThreshold::AUTO,
            FactorKind::Simplicial => SupernodalThreshold::FORCE_SIMPLICIAL,
            FactorKind::Supernodal => SupernodalThreshold::FORCE_SUPERNODAL,
        };
        // the fill-reducing ordering (AMD) of the pattern
        let mut perm_fwd = vec![0usize; n];
        let mut perm_inv = vec![0usize; n];
        {
            let req = amd::order_maybe_unsorted_scratch::<usize>(n, row_idx.len());
            let mut mem = MemBuffer::try_new(req).map_err(|_| CoreError::OutOfMemory {
                what: "the fill-reducing ordering",
            })?;
            amd::order_maybe_unsorted(
                &mut perm_fwd,
                &mut perm_inv,
                pattern,
                amd::Control::default(),
                MemStack::new(&mut mem),
            )
            .map_err(fe)?;
        }
        // The permuted pattern, compressed by column. faer's symbolic analysis
        // with the identity ordering reads the upper triangle; the numeric
        // factorization reads `side`.
        let build = |side: Side| -> (Vec<usize>, Vec<usize>, Vec<usize>) {
            let nnz = row_idx.len();
            let mut entries: Vec<(usize, usize)> = Vec::with_capacity(nnz);
            for j in 0..n {
                for &i in &row_idx[col_ptr[j]..col_ptr[j + 1]] {
                    let (pi, pj) = (perm_inv[i], perm_inv[j]);
                    let (lo, hi) = (pi.min(pj), pi.max(pj));
                    entries.push(if side == Side::Lower {
                        (hi, lo)
                    } else {
                        (lo, hi)
                    });
                }
            }
            let mut cp = vec![0usize; n + 1];
            for &(_, c) in &entries {
                cp[c + 1] += 1;
            }
            for c in 0..n {
                cp[c + 1] += cp[c];
            }
            // two stable counting sorts, by row then by column: rows ascend
            // within each column, in O(nnz)
            let mut rp = vec![0usize; n + 1];
            for &(r, _) in &entries {
                rp[r + 1] += 1;
            }
            for r in 0..n {
                rp[r + 1] += rp[r];
            }
            let mut by_row = vec![0usize; nnz];
            for (e, &(r, _)) in entries.iter().enumerate() {
                by_row[rp[r]] = e;
                rp[r] += 1;
            }
            let mut next = cp.clone();
            let mut order = vec![0usize; nnz];
            for &e in &by_row {
                let c = entries[e].1;
                order[next[c]] = e;
                next[c] += 1;
            }
            let mut pos = vec![0usize; nnz];
            let mut ri = vec![0usize; nnz];
            for (k, &e) in order.iter().enumerate() {
                pos[e] = k;
                ri[k] = entries[e].0;
            }
            (cp, ri, pos)
        };
        let (ucp, uri, upos) = build(Side::Upper);
        let upattern = SymbolicSparseColMatRef::new_checked(n, n, &ucp, None, &uri);
        let params = CholeskySymbolicParams {
            supernodal_flop_ratio_threshold: threshold(kind),
            ..Default::default()
        };
        let symbolic =
            factorize_symbolic_cholesky(upattern, Side::Upper, SymmetricOrdering::Identity, params)
                .map_err(fe)?;
        // faer's simplicial factorization reads the upper triangle, the
        // supernodal one the lower
        let side = match symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(_) => Side::Upper,
            SymbolicCholeskyRaw::Supernodal(_) => Side::Lower,
        };
        let (pcol_ptr, prow_idx, pos) = if side == Side::Upper {
            (ucp, uri, upos)
        } else {
            build(Side::Lower)
        };
        let nnz = pos.len();
        // Wide supernodes (dense Schur complements of crossed designs) are
        // worth both cores; narrow ones are not worth the threads' overhead.
        let widest = match symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(_) => 1,
            SymbolicCholeskyRaw::Supernodal(sym) => (0..sym.n_supernodes())
                .map(|s| sym.supernode_end()[s] - sym.supernode_begin()[s])
                .max()
                .unwrap_or(0),
        };
        let par = if widest >= PARALLEL_MIN_SUPERNODE {
            Par::rayon(0)
        } else {
            Par::Seq
        };
        let req = symbolic.factorize_numeric_llt_scratch::<f64>(par, Spec::default());
        let buffer = MemBuffer::try_new(req).map_err(|_| CoreError::OutOfMemory {
            what: "the Cholesky workspace",
        })?;
        let l_values = vec![0.0; symbolic.len_val()];
        Ok(Self {
            n,
            par,
            side,
            pcol_ptr,
            prow_idx,
            pvals: vec![0.0; nnz],
            pos,
            perm_fwd,
            perm_inv,
            symbolic: Arc::new(symbolic),
            l_values,
            buffer,
            factored: false,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of stored entries of the lower triangle of the matrix.
    pub fn nnz(&self) -> usize {
        self.pos.len()
    }

    /// Number of stored values of the factor `L`.
    pub fn factor_nnz(&self) -> usize {
        self.symbolic.len_val()
    }

    /// Factors the matrix with the analysed pattern and the given values of its
    /// lower triangle (in the pattern's order).
    pub fn factor(&mut self, values: &[f64]) -> Result<()> {
        assert_eq!(values.len(), self.pos.len());
        self.factored = false;
        for (&p, &v) in self.pos.iter().zip(values) {
            self.pvals[p] = v;
        }
        let a = SparseColMatRef::new(
            SymbolicSparseColMatRef::new_checked(
                self.n,
                self.n,
                &self.pcol_ptr,
                None,
                &self.prow_idx,
            ),
            &self.pvals[..],
        );
        let stack = MemStack::new(&mut self.buffer);
        self.symbolic
            .factorize_numeric_llt(
                &mut self.l_values,
                a,
                self.side,
                LltRegularization::default(),
                self.par,
                stack,
                Spec::default(),
            )
            .map_err(|_| CoreError::NotPositiveDefinite {
                what: "the penalized cross-product matrix",
            })?;
        self.factored = true;
        Ok(())
    }

    /// Visits the diagonal of `L` (in the permuted order).
    fn for_each_diag(&self, mut f: impl FnMut(usize, f64)) {
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(sym) => {
                let cp = sym.col_ptr();
                for j in 0..self.n {
                    // faer stores the diagonal first in each column of L.
                    f(j, self.l_values[cp[j]]);
                }
            }
            SymbolicCholeskyRaw::Supernodal(sym) => {
                let l = supernodal::SupernodalLltRef::new(sym, &self.l_values);
                for s in 0..sym.n_supernodes() {
                    let node = l.supernode(s);
                    let v = node.val();
                    for c in 0..v.ncols() {
                        f(node.start() + c, v[(c, c)]);
                    }
                }
            }
        }
    }

    /// log det(A) = 2 Σ log L_jj.
    pub fn logdet(&self) -> f64 {
        debug_assert!(self.factored);
        let mut s = 0.0;
        self.for_each_diag(|_, d| s += d.ln());
        2.0 * s
    }

    /// Overwrites `rhs` (n x k) with `L⁻¹ P rhs`.
    pub fn forward_solve(&self, mut rhs: MatMut<'_, f64>) {
        debug_assert!(self.factored);
        let k = rhs.ncols();
        permute_rows(rhs.rb_mut(), &self.perm_fwd);
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(sym) => {
                let l = simplicial::SimplicialLltRef::new(sym, &self.l_values);
                let lmat = SparseColMatRef::new(sym.factor(), l.values());
                triangular_solve::solve_lower_triangular_in_place(lmat, Conj::No, rhs, Par::Seq);
            }
            SymbolicCholeskyRaw::Supernodal(sym) => {
                let l = supernodal::SupernodalLltRef::new(sym, &self.l_values);
                let mut buf = MemBuffer::new(temp_mat_scratch::<f64>(self.n, k.max(1)));
                l.l_solve_with_conj(Conj::No, rhs, Par::Seq, MemStack::new(&mut buf));
            }
        }
    }

    /// Overwrites `rhs` (n x k) with `Pᵀ L⁻ᵀ rhs`, the inverse of
    /// [`forward_solve`](Self::forward_solve)'s transpose.
    pub fn backward_solve(&self, mut rhs: MatMut<'_, f64>) {
        debug_assert!(self.factored);
        let k = rhs.ncols();
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(sym) => {
                let l = simplicial::SimplicialLltRef::new(sym, &self.l_values);
                let lmat = SparseColMatRef::new(sym.factor(), l.values());
                triangular_solve::solve_lower_triangular_transpose_in_place(
                    lmat,
                    Conj::No,
                    rhs.rb_mut(),
                    Par::Seq,
                );
            }
            SymbolicCholeskyRaw::Supernodal(sym) => {
                let l = supernodal::SupernodalLltRef::new(sym, &self.l_values);
                let mut buf = MemBuffer::new(temp_mat_scratch::<f64>(self.n, k.max(1)));
                l.l_transpose_solve_with_conj(
                    Conj::No,
                    rhs.rb_mut(),
                    Par::Seq,
                    MemStack::new(&mut buf),
                );
            }
        }
        permute_rows(rhs, &self.perm_inv);
    }

    /// Overwrites `rhs` with `A⁻¹ rhs`.
    pub fn solve(&self, mut rhs: MatMut<'_, f64>) {
        self.forward_solve(rhs.rb_mut());
        self.backward_solve(rhs);
    }

    /// The fill-reducing permutation: `perm[i]` is the original index of the
    /// i-th row of `L`.
    pub fn perm(&self) -> Vec<usize> {
        self.perm_fwd.clone()
    }

    /// The values of [`factor_csc`](Self::factor_csc) alone, in its order.
    pub fn factor_values(&self) -> Vec<f64> {
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(_) => self.l_values.clone(),
            SymbolicCholeskyRaw::Supernodal(sym) => {
                let l = supernodal::SupernodalLltRef::new(sym, &self.l_values);
                let mut vals = Vec::with_capacity(self.l_values.len());
                for s in 0..sym.n_supernodes() {
                    let v = l.supernode(s).val();
                    for c in 0..v.ncols() {
                        vals.extend(v.col(c).iter().skip(c).copied());
                    }
                }
                vals
            }
        }
    }

    /// `L` as compressed-column triplets (col_ptr, row_idx, values), rows in
    /// the permuted order, lower triangle.
    pub fn factor_csc(&self) -> (Vec<usize>, Vec<usize>, Vec<f64>) {
        match self.symbolic.raw() {
            SymbolicCholeskyRaw::Simplicial(sym) => {
                let f = sym.factor();
                let cp = f.col_ptr().to_vec();
                let ri = f.row_idx().to_vec();
                (cp, ri, self.l_values.clone())
            }
            SymbolicCholeskyRaw::Supernodal(sym) => {
                let l = supernodal::SupernodalLltRef::new(sym, &self.l_values);
                let mut cp = vec![0usize];
                let mut ri = Vec::new();
                let mut vals = Vec::new();
                for s in 0..sym.n_supernodes() {
                    let node = l.supernode(s);
                    let v = node.val();
                    let size = v.ncols();
                    let start = node.start();
                    for c in 0..size {
                        for r in c..size {
                            ri.push(start + r);
                            vals.push(v[(r, c)]);
                        }
                        for (idx, &r) in node.pattern().iter().enumerate() {
                            ri.push(r);
                            vals.push(v[(size + idx, c)]);
                        }
                        cp.push(ri.len());
                    }
                }
                (cp, ri, vals)
            }
        }
    }
}

/// `rhs := rhs[perm, :]`: row i becomes the old row `perm[i]`.
fn permute_rows(mut rhs: MatMut<'_, f64>, perm: &[usize]) {
    let mut tmp = vec![0.0; perm.len()];
    for j in 0..rhs.ncols() {
        for (t, &p) in tmp.iter_mut().zip(perm) {
            *t = rhs[(p, j)];
        }
        for (i, &t) in tmp.iter().enumerate() {
            rhs[(i, j)] = t;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    /// A small SPD matrix: tridiagonal plus a dense last row/column.
    fn example(n: usize) -> (Vec<usize>, Vec<usize>, Vec<f64>, Mat<f64>) {
        let mut dense = Mat::<f64>::zeros(n, n);
        for i in 0..n {
            dense[(i, i)] = 4.0 + i as f64;
            if i + 1 < n {
                dense[(i + 1, i)] = -1.0;
                dense[(i, i + 1)] = -1.0;
            }
            if i + 1 < n {
                dense[(n - 1, i)] += 0.5;
                dense[(i, n - 1)] += 0.5;
            }
        }
        let mut cp = vec![0];
        let mut ri = vec![];
        let mut v = vec![];
        for j in 0..n {
            for i in j..n {
                if dense[(i, j)] != 0.0 {
                    ri.push(i);
                    v.push(dense[(i, j)]);
                }
            }
            cp.push(ri.len());
        }
        (cp, ri, v, dense)
    }

    #[test]
    fn solve_and_logdet_match_dense() {
        let n = 7;
        let (cp, ri, v, dense) = example(n);
        for kind in [FactorKind::Simplicial, FactorKind::Supernodal] {
            let mut ch = SparseCholesky::analyse(n, cp.clone(), ri.clone(), kind).unwrap();
            ch.factor(&v).unwrap();
            let llt = dense.llt(Side::Lower).unwrap();
            let l = llt.L();
            let ld: f64 = 2.0 * (0..n).map(|i| l[(i, i)].ln()).sum::<f64>();
            assert!((ch.logdet() - ld).abs() < 1e-12);
            let mut b = Mat::<f64>::from_fn(n, 2, |i, j| (i + 3 * j) as f64 - 2.0);
            let b0 = b.clone();
            ch.solve(b.as_mut());
            let r = &dense * &b - &b0;
            assert!(r.norm_max() < 1e-12);
            // forward solve: ||L⁻¹ P b||² = bᵀ A⁻¹ b
            let mut c = b0.clone();
            ch.forward_solve(c.as_mut());
            let quad: f64 = (0..n).map(|i| c[(i, 0)] * c[(i, 0)]).sum();
            let quad2: f64 = (0..n).map(|i| b0[(i, 0)] * b[(i, 0)]).sum();
            assert!((quad - quad2).abs() < 1e-12 * quad.abs());
        }
    }

    #[test]
    fn not_positive_definite_is_an_error() {
        let n = 3;
        let cp = vec![0, 1, 2, 3];
        let ri = vec![0, 1, 2];
        let mut ch = SparseCholesky::analyse(n, cp, ri, FactorKind::Auto).unwrap();
        assert!(matches!(
            ch.factor(&[1.0, -1.0, 1.0]),
            Err(CoreError::NotPositiveDefinite { .. })
        ));
    }
}
