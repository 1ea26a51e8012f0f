//! The marginal covariance `V = σ²(ZΛΛᵀZᵀ + W⁻¹)` (Z on the scale of the
//! data, W the prior weights, I without them) without dense intermediates:
//! products and solves through the factor L, V itself assembled from the
//! grouping structure (two rows interact only when they share a level of
//! some term), and the conditional covariances of the random effects.
//!
//! With `Z̃ = √W Z`, `V = W^{-1/2} Ṽ W^{-1/2}` where `Ṽ = σ²(Z̃ΛΛᵀZ̃ᵀ + I)` is
//! the covariance the factor L describes (`M = ΛᵀZ̃ᵀZ̃Λ + I`), so that
//! `V⁻¹B = W^{1/2} Ṽ⁻¹ W^{1/2} B` and `log det V = log det Ṽ − Σ log wᵢ`.
//!
//! All functions use the θ of the last [`Workspace::update`].

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use super::error::{CoreError, Result};
use super::factor::FactorL;
use super::small::{col_mut, solve_lt, tt_mul};
use super::workspace::Workspace;

/// V in compressed sparse rows: full (both triangles), column indices sorted,
/// exact zeros dropped.
pub struct Csr {
    pub indptr: Vec<i64>,
    pub indices: Vec<i64>,
    pub data: Vec<f64>,
}

fn check_rows(what: &str, got: usize, expected: usize) -> Result<()> {
    if got != expected {
        return Err(CoreError::Dimension(format!(
            "expected {expected} rows ({what}), got {got}"
        )));
    }
    Ok(())
}

/// A `rows` x m matrix whose column j is `f(b[:, j], out[:, j])`: `f` gets a
/// contiguous copy of the column (its to use as scratch) and a zero column.
fn map_columns(
    b: MatRef<'_, f64>,
    rows: usize,
    mut f: impl FnMut(&mut [f64], &mut [f64]),
) -> Mat<f64> {
    let mut out = Mat::<f64>::zeros(rows, b.ncols());
    let mut bc = vec![0.0; b.nrows()];
    for c in 0..b.ncols() {
        bc.iter_mut()
            .zip(b.col(c).iter())
            .for_each(|(d, v)| *d = *v);
        f(&mut bc, col_mut(out.as_mut(), c));
    }
    out
}

/// Each row of `b` times `s` (a copy of `b` without `s`).
fn scale_rows(b: MatRef<'_, f64>, s: Option<&[f64]>) -> Mat<f64> {
    Mat::from_fn(b.nrows(), b.ncols(), |i, j| {
        s.map_or(1.0, |s| s[i]) * b[(i, j)]
    })
}

impl Workspace {
    /// Overwrites `b` (q x m, rows in lme4's order) with M⁻¹ b, M = ΛᵀZ̃ᵀZ̃Λ + I.
    pub fn solve_pls(&self, b: MatMut<'_, f64>) -> Result<()> {
        self.evaluation()?;
        self.factor().solve(b);
        Ok(())
    }

    /// ΛᵀZ̃ᵀB for B (n x m): q x m.
    fn lambdat_zt_mul(&self, b: MatRef<'_, f64>, s: Option<&[f64]>) -> Result<Mat<f64>> {
        self.need_rows("a product with Z")?;
        check_rows("observations", b.nrows(), self.n())?;
        Ok(map_columns(b, self.q(), |bc, dst| {
            self.terms().zt_mul_add(bc, s, dst);
            self.terms().lambdat_mul(self.templates(), dst);
        }))
    }

    /// Z̃ΛX for X (q x m): n x m.
    fn z_lambda_mul(&self, x: MatRef<'_, f64>, s: Option<&[f64]>) -> Result<Mat<f64>> {
        self.need_rows("a product with Z")?;
        check_rows("random effects", x.nrows(), self.q())?;
        Ok(map_columns(x, self.n(), |xc, dst| {
            self.terms().lambda_mul(self.templates(), xc);
            self.terms().z_mul_add(xc, s, dst);
        }))
    }

    /// V⁻¹B = W^{1/2} Ṽ⁻¹ W^{1/2} B, Ṽ⁻¹B̃ = σ⁻²(B̃ − Z̃Λ M⁻¹ ΛᵀZ̃ᵀB̃), for B
    /// (n x m).
    pub fn v_solve(&self, sigma: f64, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.evaluation()?;
        let s = self.rows().scale();
        let bs = scale_rows(b, s);
        let mut w = self.lambdat_zt_mul(bs.as_ref(), s)?;
        self.solve_pls(w.as_mut())?;
        let zw = self.z_lambda_mul(w.as_ref(), s)?;
        let s2 = sigma * sigma;
        Ok(Mat::from_fn(b.nrows(), b.ncols(), |i, j| {
            s.map_or(1.0, |s| s[i]) * ((bs[(i, j)] - zw[(i, j)]) / s2)
        }))
    }

    /// VB = σ²(ZΛΛᵀZᵀB + W⁻¹B) for B (n x m).
    pub fn v_matvec(&self, sigma: f64, b: MatRef<'_, f64>) -> Result<Mat<f64>> {
        self.evaluation()?;
        let w = self.lambdat_zt_mul(b, None)?;
        let zw = self.z_lambda_mul(w.as_ref(), None)?;
        let s2 = sigma * sigma;
        let wts = self.rows().weights();
        Ok(Mat::from_fn(b.nrows(), b.ncols(), |i, j| {
            s2 * (wts.map_or(b[(i, j)], |w| b[(i, j)] / w[i]) + zw[(i, j)])
        }))
    }

    /// log det V = n log σ² + log det(ΛᵀZ̃ᵀZ̃Λ + I) − Σ log wᵢ (the matrix
    /// determinant lemma).
    pub fn v_logdet(&self, sigma: f64) -> Result<f64> {
        let ev = self.evaluation()?;
        Ok(self.n() as f64 * (sigma * sigma).ln() + ev.ld_l2 - self.log_det_w())
    }

    /// An upper bound on the stored entries of V: Σ over terms and levels of
    /// (rows in the level)², plus the diagonal. Computed in O(n).
    pub fn v_nnz_bound(&self) -> u128 {
        let mut total = self.n() as u128;
        for term in self.terms().terms() {
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

    /// V in compressed sparse rows, assembled directly from the grouping
    /// structure; refuses when the bound on its entries exceeds `max_nnz`.
    pub fn v_csr(&self, sigma: f64, max_nnz: u128) -> Result<Csr> {
        self.need_rows("V")?;
        self.evaluation()?;
        let bound = self.v_nnz_bound();
        if bound > max_nnz {
            return Err(CoreError::MemoryBudget {
                what: "V",
                need: bound,
                budget: max_nnz,
            });
        }
        let (n, terms) = (self.n(), self.terms().terms());
        let s2 = sigma * sigma;
        // y_t(i) = T_tᵀ z_t(i): V_ij = σ²(Σ_t [same level] y_t(i)·y_t(j) + δ_ij/w_i)
        let ys: Vec<Vec<f64>> = terms
            .iter()
            .zip(self.templates())
            .map(|(term, tm)| {
                let mut y = term.z.clone();
                for yi in y.chunks_exact_mut(term.k) {
                    tt_mul(tm, term.k, yi);
                }
                y
            })
            .collect();
        let groups: Vec<_> = (0..terms.len())
            .map(|t| self.terms().rows_by_level(t))
            .collect();
        let wts = self.rows().weights();
        let mut indptr = Vec::with_capacity(n + 1);
        indptr.push(0i64);
        let (mut indices, mut data) = (Vec::<i64>::new(), Vec::<f64>::new());
        let mut marker = vec![u32::MAX; n];
        let mut acc = vec![0.0f64; n];
        let mut cols: Vec<u32> = Vec::new();
        for i in 0..n {
            cols.clear();
            for (t, term) in terms.iter().enumerate() {
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
            acc[i] += wts.map_or(1.0, |w| 1.0 / w[i]);
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
    pub fn v_components(&self) -> Result<Vec<u32>> {
        self.need_rows("the blocks of V")?;
        let terms = self.terms().terms();
        let mut node0 = Vec::with_capacity(terms.len());
        let mut total = 0usize;
        for term in terms {
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
        for i in 0..self.n() {
            let a = node0[0] + terms[0].codes[i] as usize;
            for (t, term) in terms.iter().enumerate().skip(1) {
                let b = node0[t] + term.codes[i] as usize;
                let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
                if ra != rb {
                    parent[ra.max(rb)] = ra.min(rb);
                }
            }
        }
        let mut label = vec![u32::MAX; total];
        let mut next = 0u32;
        Ok((0..self.n())
            .map(|i| {
                let r = find(&mut parent, node0[0] + terms[0].codes[i] as usize);
                if label[r] == u32::MAX {
                    label[r] = next;
                    next += 1;
                }
                label[r]
            })
            .collect())
    }

    /// The factor L of M = ΛᵀZ̃ᵀZ̃Λ + I with its permutation (see
    /// [`FactorL`]).
    pub fn factor_l(&self) -> Result<FactorL> {
        self.evaluation()?;
        Ok(self.factor().to_csc())
    }

    /// Diagonal k x k blocks of Λ M⁻¹ Λᵀ, one per level of each term: the
    /// conditional covariances of the random effects divided by σ² (lme4's
    /// condVar). Returned per term as n_levels * k * k values (each block
    /// column-major).
    pub fn cond_var_blocks(&self) -> Result<Vec<Vec<f64>>> {
        self.evaluation()?;
        const CHUNK: usize = 64;
        let (fac, layout) = (self.factor(), self.layout());
        let order = fac.order();
        let mut minv: Vec<Vec<f64>> = layout
            .iter()
            .map(|l| vec![0.0; l.n_levels * l.k * l.k])
            .collect();
        let (f, kf, lf, q_rest) = (order.first(), order.kf(), order.lf(), order.q_rest());
        // f blocks: L11⁻ᵀ (I + WᵀW) L11⁻¹ with W = L22⁻¹ P L21[:, j]
        let per = (CHUNK / kf).max(1);
        for j0 in (0..lf).step_by(per) {
            let nj = per.min(lf - j0);
            let mut w = Mat::<f64>::zeros(q_rest, nj * kf);
            for jj in 0..nj {
                for (ro, kr, lv) in fac.l21().level(j0 + jj) {
                    for c in 0..kf {
                        for r in 0..kr {
                            w[(ro + r, jj * kf + c)] = lv[r + c * kr];
                        }
                    }
                }
            }
            if let Some(ch) = fac.l22() {
                ch.forward_solve(w.as_mut());
            }
            for jj in 0..nj {
                let j = j0 + jj;
                let ws = w.as_ref().subcols(jj * kf, kf);
                let mut g = Mat::<f64>::identity(kf, kf);
                if q_rest > 0 {
                    matmul(g.as_mut(), Accum::Add, ws.transpose(), ws, 1.0, Par::Seq);
                }
                // L11⁻ᵀ G L11⁻¹: solve columns then rows
                let l = fac.l11_block(j);
                let mut gv: Vec<f64> = (0..kf * kf).map(|i| g[(i % kf, i / kf)]).collect();
                for c in 0..kf {
                    solve_lt(l, kf, &mut gv[c * kf..(c + 1) * kf], 1);
                }
                for r in 0..kf {
                    solve_lt(l, kf, &mut gv[r..], kf);
                }
                minv[f][j * kf * kf..(j + 1) * kf * kf].copy_from_slice(&gv);
            }
        }
        // rest blocks: diagonal blocks of (L22 L22ᵀ)⁻¹, by chunks of blocks
        if let Some(ch) = fac.l22() {
            let nb = order.n_blocks();
            let mut b0 = 0;
            while b0 < nb {
                let mut b1 = b0;
                while b1 < nb && (b1 == b0 || order.off(b1 + 1) - order.off(b0) <= CHUNK) {
                    b1 += 1;
                }
                let base = order.off(b0);
                let mut e = Mat::<f64>::zeros(q_rest, order.off(b1) - base);
                for i in base..order.off(b1) {
                    e[(i, i - base)] = 1.0;
                }
                ch.forward_solve(e.as_mut());
                for rb in b0..b1 {
                    let (t, k, l) = (order.term(rb), order.k(rb), order.level(rb));
                    let xs = e.as_ref().subcols(order.off(rb) - base, k);
                    let mut m = Mat::<f64>::zeros(k, k);
                    matmul(
                        m.as_mut(),
                        Accum::Replace,
                        xs.transpose(),
                        xs,
                        1.0,
                        Par::Seq,
                    );
                    for c in 0..k {
                        for r in 0..k {
                            minv[t][l * k * k + r + c * k] = m[(r, c)];
                        }
                    }
                }
                b0 = b1;
            }
        }
        // Λ M⁻¹ Λᵀ per block
        for (t, lay) in layout.iter().enumerate() {
            let (k, tm) = (lay.k, &self.templates()[t]);
            for blk in minv[t].chunks_exact_mut(k * k) {
                let m = blk.to_vec();
                for c in 0..k {
                    for r in 0..k {
                        let mut s = 0.0;
                        for i in 0..=r {
                            for j in 0..=c {
                                s += tm[r + i * k] * m[i + j * k] * tm[c + j * k];
                            }
                        }
                        blk[r + c * k] = s;
                    }
                }
            }
        }
        Ok(minv)
    }
}
