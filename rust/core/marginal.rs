//! The marginal covariance V = σ²(ZΛΛᵀZᵀ + I) without dense intermediates:
//! products and solves through the PLS factor, and V itself assembled from
//! the grouping structure (two rows interact only when they share a level of
//! some term).
//!
//! All functions use the θ of the last [`Workspace::update`].

use faer::{Mat, MatMut, MatRef};

use super::{rows_by_level, Workspace};
use crate::core::error::{CoreError, Result};
use crate::core::small::{solve_l, solve_lt};

/// V in compressed sparse rows: full (both triangles), column indices sorted,
/// exact zeros dropped.
/// The factor L of ΛᵀZᵀZΛ + I in compressed columns, with its permutation:
/// row i of L is random effect `perm[i]` (lme4's order); L Lᵀ = M[perm, perm].
pub struct FactorL {
    pub perm: Vec<usize>,
    pub col_ptr: Vec<usize>,
    pub row_idx: Vec<usize>,
    pub values: Vec<f64>,
}

pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<i64>,
    pub data: Vec<f64>,
}

impl Workspace {
    fn require_update(&self) -> Result<()> {
        if self.eval.is_none() {
            return Err(CoreError::Theta("no θ has been evaluated yet".into()));
        }
        Ok(())
    }

    /// Overwrites `b` (q x m, rows in lme4's order) with M⁻¹ b, M = ΛᵀZᵀZΛ + I.
    pub fn solve_pls(&self, mut b: MatMut<'_, f64>) -> Result<()> {
        self.require_update()?;
        let m = b.ncols();
        let f = self.f;
        let (kf, lf) = (self.terms[f].k, self.terms[f].n_levels);
        let off_f = self.layout[f].offset;
        let kk = kf * kf;
        for col in 0..m {
            // y1 = L11⁻¹ b1
            let mut y1: Vec<f64> = (0..kf * lf).map(|i| b[(off_f + i, col)]).collect();
            for j in 0..lf {
                solve_l(&self.l11[j * kk..(j + 1) * kk], kf, &mut y1[j * kf..], 1);
            }
            // z2 = b2 − L21 y1, x2 = S⁻¹ z2
            let mut z2 = Mat::<f64>::zeros(self.q_rest, 1);
            for rb in 0..self.rest_term.len() {
                let t = self.rest_term[rb];
                let k = self.terms[t].k;
                let ext = self.layout[t].offset + self.rest_level[rb] * k;
                for r in 0..k {
                    z2[(self.rest_off[rb] + r, 0)] = b[(ext + r, col)];
                }
            }
            for j in 0..lf {
                for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                    let ro = self.rest_off[rb];
                    for c in 0..kf {
                        for r in 0..kr {
                            z2[(ro + r, 0)] -= lv[r + c * kr] * y1[j * kf + c];
                        }
                    }
                }
            }
            if let Some(ch) = &self.chol {
                ch.solve(z2.as_mut());
            }
            // x1 = L11⁻ᵀ (y1 − L21ᵀ x2)
            for j in 0..lf {
                let v = &mut y1[j * kf..(j + 1) * kf];
                for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                    let ro = self.rest_off[rb];
                    for c in 0..kf {
                        for r in 0..kr {
                            v[c] -= lv[r + c * kr] * z2[(ro + r, 0)];
                        }
                    }
                }
                solve_lt(&self.l11[j * kk..(j + 1) * kk], kf, v, 1);
            }
            for (i, v) in y1.iter().enumerate() {
                b[(off_f + i, col)] = *v;
            }
            for rb in 0..self.rest_term.len() {
                let t = self.rest_term[rb];
                let k = self.terms[t].k;
                let ext = self.layout[t].offset + self.rest_level[rb] * k;
                for r in 0..k {
                    b[(ext + r, col)] = z2[(self.rest_off[rb] + r, 0)];
                }
            }
        }
        Ok(())
    }

    /// ΛᵀZᵀB for B (n x m): q x m.
    pub fn lambdat_zt_mul(&self, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.require_update()?;
        self.check_rows(b.nrows())?;
        let m = b.ncols();
        let mut out = Mat::<f64>::zeros(self.q, m);
        for (t, term) in self.terms.iter().enumerate() {
            let (k, off) = (term.k, self.layout[t].offset);
            for col in 0..m {
                for i in 0..self.n {
                    let v = b[(i, col)];
                    if v == 0.0 {
                        continue;
                    }
                    let base = off + term.codes[i] as usize * k;
                    for c in 0..k {
                        out[(base + c, col)] += term.z[i * k + c] * v;
                    }
                }
            }
            // Tᵀ per level
            let tm = &self.templates[t];
            let mut tmp = vec![0.0; k];
            for col in 0..m {
                for l in 0..term.n_levels {
                    let base = off + l * k;
                    for r in 0..k {
                        tmp[r] = (r..k).map(|i| tm[i + r * k] * out[(base + i, col)]).sum();
                    }
                    for r in 0..k {
                        out[(base + r, col)] = tmp[r];
                    }
                }
            }
        }
        Ok(out)
    }

    /// ZΛX for X (q x m): n x m.
    pub fn z_lambda_mul(&self, x: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.require_update()?;
        if x.nrows() != self.q {
            return Err(CoreError::Dimension(format!(
                "expected {} rows (random effects), got {}",
                self.q,
                x.nrows()
            )));
        }
        let m = x.ncols();
        let mut out = Mat::<f64>::zeros(self.n, m);
        for col in 0..m {
            let xc: Vec<f64> = (0..self.q).map(|i| x[(i, col)]).collect();
            let b = self.lambda_mul(&xc);
            for (term, lay) in self.terms.iter().zip(&self.layout) {
                let k = term.k;
                for i in 0..self.n {
                    let base = lay.offset + term.codes[i] as usize * k;
                    let mut s = 0.0;
                    for c in 0..k {
                        s += term.z[i * k + c] * b[base + c];
                    }
                    out[(i, col)] += s;
                }
            }
        }
        Ok(out)
    }

    fn check_rows(&self, rows: usize) -> Result<()> {
        if rows != self.n {
            return Err(CoreError::Dimension(format!(
                "expected {} rows (observations), got {rows}",
                self.n
            )));
        }
        Ok(())
    }

    /// V⁻¹B = σ⁻²(B − ZΛ M⁻¹ ΛᵀZᵀB) for B (n x m).
    pub fn v_solve(&self, sigma: f64, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
        let mut w = self.lambdat_zt_mul(b)?;
        self.solve_pls(w.as_mut())?;
        let zw = self.z_lambda_mul(w.as_ref())?;
        let s2 = sigma * sigma;
        Ok(Mat::from_fn(b.nrows(), b.ncols(), |i, j| {
            (b[(i, j)] - zw[(i, j)]) / s2
        }))
    }

    /// VB = σ²(ZΛΛᵀZᵀB + B) for B (n x m).
    pub fn v_matvec(&self, sigma: f64, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
        let w = self.lambdat_zt_mul(b)?;
        let zw = self.z_lambda_mul(w.as_ref())?;
        let s2 = sigma * sigma;
        Ok(Mat::from_fn(b.nrows(), b.ncols(), |i, j| {
            s2 * (b[(i, j)] + zw[(i, j)])
        }))
    }

    /// log det V = n log σ² + log det(ΛᵀZᵀZΛ + I) (matrix determinant lemma).
    pub fn v_logdet(&self, sigma: f64) -> Result<f64> {
        self.require_update()?;
        let ev = self.eval.as_ref().unwrap();
        Ok(self.n as f64 * (sigma * sigma).ln() + ev.ld_l2)
    }

    /// The rows of each level of each term.
    fn level_rows(&self) -> Vec<(Vec<usize>, Vec<u32>)> {
        self.terms.iter().map(rows_by_level).collect()
    }

    /// An upper bound on the stored entries of V: Σ over terms and levels of
    /// (rows in the level)², plus the diagonal. Computed in O(n).
    pub fn v_nnz_bound(&self) -> u128 {
        let mut total = self.n as u128;
        for term in &self.terms {
            let mut counts = vec![0u64; term.n_levels];
            for &c in &term.codes {
                counts[c as usize] += 1;
            }
            total += counts
                .iter()
                .map(|&c| (c as u128) * (c as u128))
                .sum::<u128>();
        }
        total
    }

    /// V = σ²(ZΛΛᵀZᵀ + I) in compressed sparse rows, assembled directly from
    /// the grouping structure; refuses when the bound on its entries exceeds
    /// `max_nnz`.
    pub fn v_csr(&self, sigma: f64, max_nnz: u128) -> Result<Csr> {
        self.require_update()?;
        let bound = self.v_nnz_bound();
        if bound > max_nnz {
            return Err(CoreError::MemoryBudget(format!(
                "V would have up to {bound} stored entries, more than the budget of {max_nnz}"
            )));
        }
        let n = self.n;
        let s2 = sigma * sigma;
        // y_t(i) = T_tᵀ z_t(i): V_ij = σ²(Σ_t [same level] y_t(i)·y_t(j) + δ_ij)
        let ys: Vec<Vec<f64>> = self
            .terms
            .iter()
            .zip(&self.templates)
            .map(|(term, tm)| {
                let k = term.k;
                let mut y = vec![0.0; n * k];
                for i in 0..n {
                    for r in 0..k {
                        y[i * k + r] = (r..k).map(|c| tm[c + r * k] * term.z[i * k + c]).sum();
                    }
                }
                y
            })
            .collect();
        let groups = self.level_rows();
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0i64);
        let mut indices: Vec<i64> = Vec::new();
        let mut data: Vec<f64> = Vec::new();
        let mut marker = vec![u32::MAX; n];
        let mut acc = vec![0.0f64; n];
        let mut cols: Vec<u32> = Vec::new();
        for i in 0..n {
            cols.clear();
            for (t, term) in self.terms.iter().enumerate() {
                let k = term.k;
                let yi = &ys[t][i * k..(i + 1) * k];
                let (start, rows) = &groups[t];
                let l = term.codes[i] as usize;
                for &j in &rows[start[l]..start[l + 1]] {
                    let ju = j as usize;
                    if marker[ju] != i as u32 {
                        marker[ju] = i as u32;
                        acc[ju] = 0.0;
                        cols.push(j);
                    }
                    let yj = &ys[t][ju * k..(ju + 1) * k];
                    acc[ju] += yi.iter().zip(yj).map(|(a, b)| a * b).sum::<f64>();
                }
            }
            acc[i] += 1.0;
            cols.sort_unstable();
            for &j in &cols {
                let v = acc[j as usize];
                if v != 0.0 {
                    indices.push(j as i64);
                    data.push(s2 * v);
                }
            }
            indptr.push(indices.len() as i64);
        }
        Ok(Csr {
            indptr,
            indices,
            data,
        })
    }

    /// The independent diagonal blocks of V: a block label per row (rows that
    /// share a level of any term, directly or through other rows, share a
    /// label), labels numbered in order of first appearance.
    pub fn v_components(&self) -> Vec<u32> {
        let mut node0 = Vec::with_capacity(self.terms.len());
        let mut total = 0usize;
        for term in &self.terms {
            node0.push(total);
            total += term.n_levels;
        }
        let mut parent: Vec<usize> = (0..total).collect();
        fn find(parent: &mut [usize], mut x: usize) -> usize {
            while parent[x] != x {
                parent[x] = parent[parent[x]];
                x = parent[x];
            }
            x
        }
        for i in 0..self.n {
            let a = node0[0] + self.terms[0].codes[i] as usize;
            for (t, term) in self.terms.iter().enumerate().skip(1) {
                let b = node0[t] + term.codes[i] as usize;
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let mut label = vec![u32::MAX; total];
        let mut next = 0u32;
        (0..self.n)
            .map(|i| {
                let r = find(&mut parent, node0[0] + self.terms[0].codes[i] as usize);
                if label[r] == u32::MAX {
                    label[r] = next;
                    next += 1;
                }
                label[r]
            })
            .collect()
    }

    /// The factor L of M = ΛᵀZᵀZΛ + I with its permutation: `perm[i]` is the
    /// random-effect column (lme4's order) of the i-th row of L, so that
    /// L Lᵀ = M[perm, perm]. L is lower triangular, in compressed columns
    /// (col_ptr, row_idx, values).
    pub fn factor_l(&self) -> Result<FactorL> {
        self.require_update()?;
        let f = self.f;
        let (kf, lf) = (self.terms[f].k, self.terms[f].n_levels);
        let qf = kf * lf;
        let off_f = self.layout[f].offset;
        // rest scalar index -> lme4 column
        let mut rest_ext = vec![0usize; self.q_rest];
        for rb in 0..self.rest_term.len() {
            let t = self.rest_term[rb];
            let k = self.terms[t].k;
            for r in 0..k {
                rest_ext[self.rest_off[rb] + r] =
                    self.layout[t].offset + self.rest_level[rb] * k + r;
            }
        }
        let (p22, cp22, ri22, v22) = match &self.chol {
            Some(ch) => {
                let (cp, ri, v) = ch.factor_csc();
                (ch.perm(), cp, ri, v)
            }
            None => (vec![], vec![0], vec![], vec![]),
        };
        let mut inv22 = vec![0usize; self.q_rest];
        for (i, &r) in p22.iter().enumerate() {
            inv22[r] = i;
        }
        let mut perm: Vec<usize> = (off_f..off_f + qf).collect();
        perm.extend(p22.iter().map(|&r| rest_ext[r]));
        let mut col_ptr = vec![0usize];
        let (mut row_idx, mut vals) = (Vec::new(), Vec::new());
        let kk = kf * kf;
        let mut col: Vec<(usize, f64)> = Vec::new();
        for j in 0..lf {
            let l = &self.l11[j * kk..(j + 1) * kk];
            for c in 0..kf {
                col.clear();
                for r in c..kf {
                    col.push((j * kf + r, l[r + c * kf]));
                }
                for e in self.a21.ptr[j]..self.a21.ptr[j + 1] {
                    let rb = self.a21.row[e];
                    let kr = self.terms[self.rest_term[rb]].k;
                    let lv = &self.l21[self.a21.off[e]..][..kr * kf];
                    for r in 0..kr {
                        col.push((qf + inv22[self.rest_off[rb] + r], lv[r + c * kr]));
                    }
                }
                col.sort_unstable_by_key(|&(r, _)| r);
                for &(r, v) in &col {
                    row_idx.push(r);
                    vals.push(v);
                }
                col_ptr.push(row_idx.len());
            }
        }
        for c in 0..self.q_rest {
            for e in cp22[c]..cp22[c + 1] {
                row_idx.push(qf + ri22[e]);
                vals.push(v22[e]);
            }
            col_ptr.push(row_idx.len());
        }
        Ok(FactorL {
            perm,
            col_ptr,
            row_idx,
            values: vals,
        })
    }
}
