//! Selected inversion: the entries of M⁻¹ on the pattern of L + Lᵀ
//! (Takahashi, Fagan and Chin 1973), from L in compressed columns.
//!
//! With M[perm, perm] = L Lᵀ and Z = (L Lᵀ)⁻¹, Z L = L⁻ᵀ is upper triangular
//! with diagonal 1/L_jj, so for each column j, its pattern S_j (the rows
//! below the diagonal) and i ∈ S_j:
//!
//! ```text
//! Z_ij = −(1/L_jj) Σ_{k ∈ S_j} Z_ik L_kj
//! Z_jj = (1/L_jj) (1/L_jj − Σ_{k ∈ S_j} Z_kj L_kj)
//! ```
//!
//! Columns are computed from the last to the first; every Z_ik read is on
//! the pattern (S_j is a clique of the filled graph) and already computed.

use super::factor::FactorL;

/// M⁻¹ on the pattern of L (lower triangle, in L order), with the map from
/// lme4's order.
pub struct SelectedInverse {
    /// Position in L order of each random effect (lme4's order).
    pinv: Vec<usize>,
    col_ptr: Vec<usize>,
    row_idx: Vec<usize>,
    z: Vec<f64>,
}

impl SelectedInverse {
    /// The selected inverse of L Lᵀ; the rows of each column are sorted
    /// here (the diagonal first).
    pub fn new(l: FactorL) -> Self {
        let FactorL {
            perm,
            col_ptr,
            mut row_idx,
            mut values,
        } = l;
        let q = perm.len();
        let mut pinv = vec![0usize; q];
        for (i, &p) in perm.iter().enumerate() {
            pinv[p] = i;
        }
        let mut pairs: Vec<(usize, f64)> = Vec::new();
        for j in 0..q {
            let (p0, p1) = (col_ptr[j], col_ptr[j + 1]);
            if row_idx[p0..p1].windows(2).any(|w| w[0] > w[1]) {
                pairs.clear();
                pairs.extend(
                    row_idx[p0..p1]
                        .iter()
                        .copied()
                        .zip(values[p0..p1].iter().copied()),
                );
                pairs.sort_unstable_by_key(|e| e.0);
                for (e, (r, v)) in pairs.iter().enumerate() {
                    row_idx[p0 + e] = *r;
                    values[p0 + e] = *v;
                }
            }
            debug_assert_eq!(row_idx[p0], j, "the diagonal of L is stored first");
        }
        let mut z = vec![0.0; values.len()];
        // mark[i]: position of row i in the pattern of the current column
        let mut mark = vec![usize::MAX; q];
        let mut acc: Vec<f64> = Vec::new();
        for j in (0..q).rev() {
            let (p0, p1) = (col_ptr[j], col_ptr[j + 1]);
            let d = values[p0];
            let rows = &row_idx[p0 + 1..p1];
            let lj = &values[p0 + 1..p1];
            acc.clear();
            acc.resize(rows.len(), 0.0);
            for (e, &i) in rows.iter().enumerate() {
                mark[i] = e;
            }
            // acc[i] = Σ_{k ∈ S_j} Z_ik L_kj, reading each Z_ik (i ≥ k) in
            // column k once and using it for both (i, k) and (k, i)
            for (ek, &k) in rows.iter().enumerate() {
                let lkj = lj[ek];
                let (c0, c1) = (col_ptr[k], col_ptr[k + 1]);
                acc[ek] += z[c0] * lkj;
                for e in c0 + 1..c1 {
                    let i = row_idx[e];
                    let m = mark[i];
                    if m != usize::MAX {
                        acc[m] += z[e] * lkj;
                        acc[ek] += z[e] * lj[m];
                    }
                }
            }
            let mut s = 0.0;
            for (e, &i) in rows.iter().enumerate() {
                let zij = -acc[e] / d;
                z[p0 + 1 + e] = zij;
                s += zij * lj[e];
                mark[i] = usize::MAX;
            }
            z[p0] = (1.0 / d - s) / d;
        }
        Self {
            pinv,
            col_ptr,
            row_idx,
            z,
        }
    }

    /// (M⁻¹)_ij for random effects `i`, `j` in lme4's order; 0 off the
    /// pattern of L + Lᵀ (where M⁻¹ is not computed).
    #[inline]
    pub fn get(&self, i: usize, j: usize) -> f64 {
        let (a, b) = (self.pinv[i], self.pinv[j]);
        let (r, c) = if a >= b { (a, b) } else { (b, a) };
        let (p0, p1) = (self.col_ptr[c], self.col_ptr[c + 1]);
        match self.row_idx[p0..p1].binary_search(&r) {
            Ok(e) => self.z[p0 + e],
            Err(_) => {
                debug_assert!(false, "({i}, {j}) is not on the pattern of L + Lᵀ");
                0.0
            }
        }
    }
}
