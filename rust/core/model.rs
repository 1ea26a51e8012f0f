//! The linear mixed model and its penalized least-squares (PLS) workspace.
//!
//! Notation (Bates, Mächler, Bolker and Walker 2015, "Fitting Linear
//! Mixed-Effects Models Using lme4", JSS 67(1)):
//!
//! ```text
//! y = Xβ + ZΛ(θ)u + ε,   u ~ N(0, σ²I),  ε ~ N(0, σ²I)
//! V = σ²(ZΛΛᵀZᵀ + I)
//! ```
//!
//! Λ(θ) is block diagonal: one lower-triangular k×k template `T_t(θ)` per
//! random-effects term `t`, repeated for each level of the term's grouping
//! factor. The random-effect columns are ordered term by term, and within a
//! term level by level with the term's k coefficients together (lme4's order).
//!
//! For a given θ the PLS problem is solved through the sparse Cholesky factor
//! `P(ΛᵀZᵀZΛ + I)Pᵀ = LLᵀ` and the dense factor of the Schur complement
//!
//! ```text
//! S = [X y]ᵀ[X y] − cᵀc,   c = L⁻¹P Λᵀ Zᵀ[X y],   S = RᵀR
//! ```
//!
//! whose last diagonal element squared is the penalized residual sum of
//! squares (pwrss) and whose leading p×p block is `RX`. The blocks `ZᵀZ`,
//! `Zᵀ[X y]` and `[X y]ᵀ[X y]` are formed once, in one pass over the rows, so
//! nothing evaluated per θ grows with the number of rows.
//!
//! Objectives, as lme4 defines them (`ld_l2 = log det(LLᵀ)`,
//! `ld_rx2 = log det(RXᵀRX)`):
//!
//! ```text
//! ML deviance    ld_l2 + n (1 + log(2π pwrss / n))
//! REML criterion ld_l2 + ld_rx2 + (n − p)(1 + log(2π pwrss / (n − p)))
//! ```

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};

use super::chol::{FactorKind, SparseCholesky};
use super::error::{CoreError, Result};

/// One random-effects term: a grouping factor and its model columns.
#[derive(Clone, Debug)]
pub struct ReTerm {
    /// Number of levels of the grouping factor.
    pub n_levels: usize,
    /// Number of coefficients per level (columns of the term's model matrix).
    pub k: usize,
    /// Level code (0-based) of each row.
    pub codes: Vec<u32>,
    /// The term's model matrix, n x k, row-major.
    pub z: Vec<f64>,
}

/// Where a term's random effects and θ elements sit.
#[derive(Clone, Debug)]
pub struct TermLayout {
    pub k: usize,
    pub n_levels: usize,
    /// First random-effect column of the term.
    pub offset: usize,
    /// First θ element of the term.
    pub theta_offset: usize,
    /// First block (level) id of the term.
    pub block_offset: usize,
}

impl TermLayout {
    pub fn n_theta(&self) -> usize {
        self.k * (self.k + 1) / 2
    }
    pub fn q(&self) -> usize {
        self.k * self.n_levels
    }
}

/// Quantities at one θ, computed by [`Workspace::update`].
#[derive(Clone, Debug, Default)]
pub struct Evaluation {
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
}

/// The estimates at one θ, from [`Workspace::solve`].
#[derive(Clone, Debug)]
pub struct Solution {
    pub beta: Vec<f64>,
    pub u: Vec<f64>,
    pub b: Vec<f64>,
    pub fitted: Vec<f64>,
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
    /// Upper-triangular p x p factor `RX`, column-major.
    pub rx: Vec<f64>,
}

/// Everything needed to evaluate the profiled objective at any θ.
pub struct Workspace {
    n: usize,
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    terms: Vec<ReTerm>,
    layout: Vec<TermLayout>,
    q: usize,
    n_theta: usize,
    /// Term of each block (one block per level of each term).
    block_term: Vec<usize>,
    /// Diagonal blocks of ZᵀZ: k x k column-major each, at `diag_off[block]`.
    diag_off: Vec<usize>,
    diag_val: Vec<f64>,
    /// Off-diagonal blocks of the lower triangle of ZᵀZ, in block-compressed
    /// columns: entries `bcol_ptr[cb]..bcol_ptr[cb+1]` of block column `cb`
    /// have block row `brow[e] > cb` and values (k_r x k_c, column-major) at
    /// `bval_off[e]`.
    bcol_ptr: Vec<usize>,
    brow: Vec<usize>,
    bval_off: Vec<usize>,
    bval: Vec<f64>,
    /// Row offset of entry `e` within its scalar column, past the diagonal block.
    brow_cum: Vec<usize>,
    /// Zᵀ[X y], q x (p+1).
    ztxy: Mat<f64>,
    /// [X y]ᵀ[X y], (p+1) x (p+1).
    xyxy: Mat<f64>,
    /// Values of the lower triangle of ΛᵀZᵀZΛ + I in the factor's pattern.
    m_val: Vec<f64>,
    m_col_ptr: Vec<usize>,
    chol: SparseCholesky,
    /// Λᵀ Zᵀ[X y], then L⁻¹P of it (q x (p+1)).
    c: Mat<f64>,
    /// Cholesky factor R of S (upper, (p+1) x (p+1)).
    r: Mat<f64>,
    templates: Vec<Vec<f64>>,
    theta: Vec<f64>,
    eval: Option<Evaluation>,
}

fn check_finite(name: &str, v: &[f64]) -> Result<()> {
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(CoreError::Dimension(format!(
            "{name} has a non-finite value at position {i}"
        )));
    }
    Ok(())
}

/// `out = T1ᵀ A T2` for lower-triangular `T1` (k1 x k1), `T2` (k2 x k2) and
/// `A` (k1 x k2), all column-major. `tmp` has room for k1*k2 values.
#[inline]
fn sandwich(
    t1: &[f64],
    k1: usize,
    a: &[f64],
    t2: &[f64],
    k2: usize,
    tmp: &mut [f64],
    out: &mut [f64],
) {
    // tmp = A T2
    for c in 0..k2 {
        for i in 0..k1 {
            let mut s = 0.0;
            for j in c..k2 {
                s += a[i + j * k1] * t2[j + c * k2];
            }
            tmp[i + c * k1] = s;
        }
    }
    // out = T1ᵀ tmp
    for c in 0..k2 {
        for r in 0..k1 {
            let mut s = 0.0;
            for i in r..k1 {
                s += t1[i + r * k1] * tmp[i + c * k1];
            }
            out[r + c * k1] = s;
        }
    }
}

impl Workspace {
    /// Builds the workspace: checks the inputs, forms the cross-product
    /// blocks in one pass over the rows, and analyses the sparsity pattern.
    ///
    /// `x` is n x p column-major, `y` has n values.
    pub fn new(n: usize, p: usize, x: Vec<f64>, y: Vec<f64>, terms: Vec<ReTerm>) -> Result<Self> {
        Self::with_factor_kind(n, p, x, y, terms, FactorKind::Auto)
    }

    /// [`new`](Self::new) with the kind of sparse factorization chosen.
    pub fn with_factor_kind(
        n: usize,
        p: usize,
        x: Vec<f64>,
        y: Vec<f64>,
        terms: Vec<ReTerm>,
        kind: FactorKind,
    ) -> Result<Self> {
        if x.len() != n * p {
            return Err(CoreError::Dimension(format!(
                "X has {} values, expected n*p = {}*{}",
                x.len(),
                n,
                p
            )));
        }
        if y.len() != n {
            return Err(CoreError::Dimension(format!(
                "y has {} values, expected {n}",
                y.len()
            )));
        }
        if terms.is_empty() {
            return Err(CoreError::Dimension(
                "a mixed model needs at least one random-effects term".into(),
            ));
        }
        check_finite("X", &x)?;
        check_finite("y", &y)?;
        let mut layout = Vec::with_capacity(terms.len());
        let (mut q, mut nth, mut nb) = (0usize, 0usize, 0usize);
        for (t, term) in terms.iter().enumerate() {
            if term.k == 0 || term.n_levels == 0 {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t} has no columns or no levels"
                )));
            }
            if term.codes.len() != n || term.z.len() != n * term.k {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t}: expected {n} codes and {} model values",
                    n * term.k
                )));
            }
            if let Some(&bad) = term.codes.iter().find(|&&c| c as usize >= term.n_levels) {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t}: level code {bad} is out of range (n_levels = {})",
                    term.n_levels
                )));
            }
            check_finite(
                &format!("the model matrix of random-effects term {t}"),
                &term.z,
            )?;
            layout.push(TermLayout {
                k: term.k,
                n_levels: term.n_levels,
                offset: q,
                theta_offset: nth,
                block_offset: nb,
            });
            q += term.k * term.n_levels;
            nth += term.k * (term.k + 1) / 2;
            nb += term.n_levels;
        }
        let mut block_term = Vec::with_capacity(nb);
        for (t, l) in layout.iter().enumerate() {
            block_term.extend(std::iter::repeat_n(t, l.n_levels));
        }

        // Diagonal blocks of ZᵀZ.
        let mut diag_off = Vec::with_capacity(nb);
        let mut acc = 0;
        for &t in &block_term {
            diag_off.push(acc);
            acc += layout[t].k * layout[t].k;
        }
        let mut diag_val = vec![0.0; acc];
        for (t, term) in terms.iter().enumerate() {
            let (k, bo) = (term.k, layout[t].block_offset);
            for r in 0..n {
                let z = &term.z[r * k..(r + 1) * k];
                let d = &mut diag_val[diag_off[bo + term.codes[r] as usize]..][..k * k];
                for c in 0..k {
                    for i in 0..k {
                        d[i + c * k] += z[i] * z[c];
                    }
                }
            }
        }

        // Off-diagonal blocks: for each term t and level l (block column cb),
        // the levels of later terms that share rows with it.
        let mut bcol_ptr = vec![0usize; nb + 1];
        let mut brow = Vec::new();
        let mut bval_off = Vec::new();
        let mut bval = Vec::new();
        let mut marker = vec![usize::MAX; nb];
        let mut marker_pos = vec![0usize; nb];
        let mut col_rows: Vec<usize> = Vec::new();
        let mut col_vals: Vec<f64> = Vec::new();
        let mut col_voff: Vec<usize> = Vec::new();
        let mut order: Vec<usize> = Vec::new();
        for (t, term) in terms.iter().enumerate() {
            let lay = &layout[t];
            if t + 1 == terms.len() {
                for l in 0..lay.n_levels {
                    bcol_ptr[lay.block_offset + l + 1] = brow.len();
                }
                continue;
            }
            // counting sort of the rows by level of term t
            let mut start = vec![0usize; lay.n_levels + 1];
            for &c in &term.codes {
                start[c as usize + 1] += 1;
            }
            for l in 0..lay.n_levels {
                start[l + 1] += start[l];
            }
            let mut next = start.clone();
            let mut rows = vec![0usize; n];
            for (r, &c) in term.codes.iter().enumerate() {
                rows[next[c as usize]] = r;
                next[c as usize] += 1;
            }
            let k = term.k;
            for l in 0..lay.n_levels {
                let cb = lay.block_offset + l;
                col_rows.clear();
                col_vals.clear();
                col_voff.clear();
                for &r in &rows[start[l]..start[l + 1]] {
                    let z = &term.z[r * k..(r + 1) * k];
                    for (t1, term1) in terms.iter().enumerate().skip(t + 1) {
                        let k1 = term1.k;
                        let rb = layout[t1].block_offset + term1.codes[r] as usize;
                        let e = if marker[rb] == cb {
                            marker_pos[rb]
                        } else {
                            marker[rb] = cb;
                            marker_pos[rb] = col_rows.len();
                            col_rows.push(rb);
                            col_voff.push(col_vals.len());
                            col_vals.resize(col_vals.len() + k1 * k, 0.0);
                            col_rows.len() - 1
                        };
                        let z1 = &term1.z[r * k1..(r + 1) * k1];
                        let v = &mut col_vals[col_voff[e]..][..k1 * k];
                        for c in 0..k {
                            for i in 0..k1 {
                                v[i + c * k1] += z1[i] * z[c];
                            }
                        }
                    }
                }
                order.clear();
                order.extend(0..col_rows.len());
                order.sort_unstable_by_key(|&e| col_rows[e]);
                for &e in &order {
                    let rb = col_rows[e];
                    let len = layout[block_term[rb]].k * k;
                    brow.push(rb);
                    bval_off.push(bval.len());
                    bval.extend_from_slice(&col_vals[col_voff[e]..][..len]);
                }
                bcol_ptr[cb + 1] = brow.len();
            }
        }

        // The scalar pattern of the lower triangle of ΛᵀZᵀZΛ + I.
        let mut col_ptr = Vec::with_capacity(q + 1);
        col_ptr.push(0usize);
        let mut row_idx = Vec::new();
        let mut brow_cum = vec![0usize; brow.len()];
        for cb in 0..nb {
            let t = block_term[cb];
            let (k, base) = (
                layout[t].k,
                layout[t].offset + (cb - layout[t].block_offset) * layout[t].k,
            );
            let mut cum = 0;
            for e in bcol_ptr[cb]..bcol_ptr[cb + 1] {
                brow_cum[e] = cum;
                cum += layout[block_term[brow[e]]].k;
            }
            for c in 0..k {
                row_idx.extend(base + c..base + k);
                for e in bcol_ptr[cb]..bcol_ptr[cb + 1] {
                    let rb = brow[e];
                    let lt = &layout[block_term[rb]];
                    let rbase = lt.offset + (rb - lt.block_offset) * lt.k;
                    row_idx.extend(rbase..rbase + lt.k);
                }
                col_ptr.push(row_idx.len());
            }
        }
        let nnz = row_idx.len();
        let chol = SparseCholesky::analyse(q, col_ptr.clone(), row_idx, kind)?;

        // Zᵀ[X y] and [X y]ᵀ[X y].
        let xy = Mat::<f64>::from_fn(n, p + 1, |i, j| if j < p { x[i + j * n] } else { y[i] });
        let mut ztxy = Mat::<f64>::zeros(q, p + 1);
        for (t, term) in terms.iter().enumerate() {
            let k = term.k;
            let off = layout[t].offset;
            for j in 0..=p {
                let col = xy.col(j);
                let dst = ztxy
                    .col_mut(j)
                    .try_as_col_major_mut()
                    .unwrap()
                    .as_slice_mut();
                for r in 0..n {
                    let v = col[r];
                    let base = off + term.codes[r] as usize * k;
                    let z = &term.z[r * k..(r + 1) * k];
                    for c in 0..k {
                        dst[base + c] += z[c] * v;
                    }
                }
            }
        }
        let mut xyxy = Mat::<f64>::zeros(p + 1, p + 1);
        matmul(
            xyxy.as_mut(),
            Accum::Replace,
            xy.transpose(),
            xy.as_ref(),
            1.0,
            Par::Seq,
        );

        let templates = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        Ok(Self {
            n,
            p,
            x,
            y,
            terms,
            layout,
            q,
            n_theta: nth,
            block_term,
            diag_off,
            diag_val,
            bcol_ptr,
            brow,
            bval_off,
            bval,
            brow_cum,
            ztxy,
            xyxy,
            m_val: vec![0.0; nnz],
            m_col_ptr: col_ptr,
            chol,
            c: Mat::zeros(q, p + 1),
            r: Mat::zeros(p + 1, p + 1),
            templates,
            theta: vec![f64::NAN; nth],
            eval: None,
        })
    }

    pub fn n(&self) -> usize {
        self.n
    }
    pub fn p(&self) -> usize {
        self.p
    }
    pub fn q(&self) -> usize {
        self.q
    }
    pub fn n_theta(&self) -> usize {
        self.n_theta
    }
    pub fn layout(&self) -> &[TermLayout] {
        &self.layout
    }
    pub fn terms(&self) -> &[ReTerm] {
        &self.terms
    }
    pub fn chol(&self) -> &SparseCholesky {
        &self.chol
    }
    /// Nonzeros of the lower triangle of ΛᵀZᵀZΛ + I.
    pub fn pls_nnz(&self) -> usize {
        self.m_val.len()
    }

    /// Lower bounds of θ: 0 on the diagonal of each template, -∞ elsewhere.
    pub fn lower(&self) -> Vec<f64> {
        let mut lo = Vec::with_capacity(self.n_theta);
        for l in &self.layout {
            for c in 0..l.k {
                for r in c..l.k {
                    lo.push(if r == c { 0.0 } else { f64::NEG_INFINITY });
                }
            }
        }
        lo
    }

    /// The template `T_t(θ)` of each term, k x k column-major.
    pub fn templates(&self) -> &[Vec<f64>] {
        &self.templates
    }

    fn set_theta(&mut self, theta: &[f64]) -> Result<()> {
        if theta.len() != self.n_theta {
            return Err(CoreError::Theta(format!(
                "theta has {} elements; this model has {}",
                theta.len(),
                self.n_theta
            )));
        }
        if let Some(i) = theta.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::Theta(format!("theta[{i}] is not finite")));
        }
        for (lay, tm) in self.layout.iter().zip(self.templates.iter_mut()) {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for c in 0..k {
                for r in 0..k {
                    tm[r + c * k] = if r >= c {
                        idx += 1;
                        theta[idx - 1]
                    } else {
                        0.0
                    };
                }
            }
        }
        self.theta.copy_from_slice(theta);
        Ok(())
    }

    /// Evaluates the factorization at θ: ΛᵀZᵀZΛ + I, its Cholesky factor, and
    /// the dense factor R of the Schur complement.
    pub fn update(&mut self, theta: &[f64]) -> Result<Evaluation> {
        if self.eval.is_some() && self.theta == theta {
            return Ok(self.eval.clone().unwrap());
        }
        self.eval = None;
        self.set_theta(theta)?;
        self.fill_pls_matrix();
        self.chol.factor(&self.m_val)?;
        let ld_l2 = self.chol.logdet();

        // c = L⁻¹ P Λᵀ Zᵀ[X y]
        let p1 = self.p + 1;
        for cb in 0..self.block_term.len() {
            let t = self.block_term[cb];
            let lay = &self.layout[t];
            let k = lay.k;
            let base = lay.offset + (cb - lay.block_offset) * k;
            let tm = &self.templates[t];
            for j in 0..p1 {
                for r in 0..k {
                    let mut s = 0.0;
                    for i in r..k {
                        s += tm[i + r * k] * self.ztxy[(base + i, j)];
                    }
                    self.c[(base + r, j)] = s;
                }
            }
        }
        self.chol.forward_solve(self.c.as_mut());

        // S = [X y]ᵀ[X y] − cᵀc and its Cholesky factor.
        self.r.copy_from(&self.xyxy);
        matmul(
            self.r.as_mut(),
            Accum::Add,
            self.c.transpose(),
            self.c.as_ref(),
            -1.0,
            Par::Seq,
        );
        dense_upper_cholesky(self.r.as_mut()).map_err(|j| {
            CoreError::NotPositiveDefinite(if j < self.p {
                format!("the fixed-effects model matrix is rank deficient (column {j} depends on the others)")
            } else {
                "the penalized residual sum of squares is zero: the model fits the data exactly".into()
            })
        })?;
        let ld_rx2 = 2.0 * (0..self.p).map(|j| self.r[(j, j)].ln()).sum::<f64>();
        let pwrss = self.r[(self.p, self.p)].powi(2);
        let ev = Evaluation {
            pwrss,
            ld_l2,
            ld_rx2,
        };
        self.eval = Some(ev.clone());
        Ok(ev)
    }

    fn fill_pls_matrix(&mut self) {
        let mut tmp = Vec::new();
        let mut out = Vec::new();
        for cb in 0..self.block_term.len() {
            let t = self.block_term[cb];
            let lay = &self.layout[t];
            let k = lay.k;
            let col0 = lay.offset + (cb - lay.block_offset) * k;
            let tm = &self.templates[t];
            // diagonal block: Tᵀ A T + I (lower triangle)
            let a = &self.diag_val[self.diag_off[cb]..][..k * k];
            if k == 1 {
                let pos = self.m_col_ptr[col0];
                self.m_val[pos] = tm[0] * tm[0] * a[0] + 1.0;
            } else {
                tmp.resize(k * k, 0.0);
                out.resize(k * k, 0.0);
                sandwich(tm, k, a, tm, k, &mut tmp, &mut out);
                for c in 0..k {
                    let pos = self.m_col_ptr[col0 + c];
                    for r in c..k {
                        self.m_val[pos + r - c] = out[r + c * k] + if r == c { 1.0 } else { 0.0 };
                    }
                }
            }
            for e in self.bcol_ptr[cb]..self.bcol_ptr[cb + 1] {
                let rb = self.brow[e];
                let t1 = self.block_term[rb];
                let k1 = self.layout[t1].k;
                let a = &self.bval[self.bval_off[e]..][..k1 * k];
                let cum = self.brow_cum[e];
                if k == 1 && k1 == 1 {
                    let pos = self.m_col_ptr[col0] + 1 + cum;
                    self.m_val[pos] = self.templates[t1][0] * a[0] * tm[0];
                } else {
                    tmp.resize(k1 * k, 0.0);
                    out.resize(k1 * k, 0.0);
                    sandwich(&self.templates[t1], k1, a, tm, k, &mut tmp, &mut out);
                    for c in 0..k {
                        let pos = self.m_col_ptr[col0 + c] + (k - c) + cum;
                        self.m_val[pos..pos + k1].copy_from_slice(&out[c * k1..(c + 1) * k1]);
                    }
                }
            }
        }
    }

    /// The profiled objective at θ: the REML criterion or the ML deviance.
    pub fn objective(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        let ev = self.update(theta)?;
        Ok(self.objective_from(&ev, reml))
    }

    pub fn objective_from(&self, ev: &Evaluation, reml: bool) -> f64 {
        let two_pi = 2.0 * std::f64::consts::PI;
        if reml {
            let nmp = (self.n - self.p) as f64;
            ev.ld_l2 + ev.ld_rx2 + nmp * (1.0 + (two_pi * ev.pwrss / nmp).ln())
        } else {
            let n = self.n as f64;
            ev.ld_l2 + n * (1.0 + (two_pi * ev.pwrss / n).ln())
        }
    }

    /// Solves the PLS problem at θ: β, u, b = Λu and the fitted values.
    pub fn solve(&mut self, theta: &[f64]) -> Result<Solution> {
        let ev = self.update(theta)?;
        let p = self.p;
        // β = RX⁻¹ r_Xy
        let mut beta = vec![0.0; p];
        for i in (0..p).rev() {
            let mut s = self.r[(i, p)];
            for j in i + 1..p {
                s -= self.r[(i, j)] * beta[j];
            }
            beta[i] = s / self.r[(i, i)];
        }
        // u = Pᵀ L⁻ᵀ (c_y − c_X β)
        let mut u = Mat::<f64>::from_fn(self.q, 1, |i, _| {
            let mut s = self.c[(i, p)];
            for j in 0..p {
                s -= self.c[(i, j)] * beta[j];
            }
            s
        });
        self.chol.backward_solve(u.as_mut());
        let u: Vec<f64> = (0..self.q).map(|i| u[(i, 0)]).collect();
        let b = self.lambda_mul(&u);
        let fitted = self.linear_predictor(&beta, &b);
        let mut rx = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..=j {
                rx[i + j * p] = self.r[(i, j)];
            }
        }
        Ok(Solution {
            beta,
            u,
            b,
            fitted,
            pwrss: ev.pwrss,
            ld_l2: ev.ld_l2,
            ld_rx2: ev.ld_rx2,
            rx,
        })
    }

    /// Λ(θ) u for the θ of the last update.
    pub fn lambda_mul(&self, u: &[f64]) -> Vec<f64> {
        let mut b = vec![0.0; self.q];
        for (lay, tm) in self.layout.iter().zip(&self.templates) {
            let k = lay.k;
            for l in 0..lay.n_levels {
                let base = lay.offset + l * k;
                for r in 0..k {
                    let mut s = 0.0;
                    for c in 0..=r {
                        s += tm[r + c * k] * u[base + c];
                    }
                    b[base + r] = s;
                }
            }
        }
        b
    }

    /// Xβ + Zb.
    pub fn linear_predictor(&self, beta: &[f64], b: &[f64]) -> Vec<f64> {
        let (n, p) = (self.n, self.p);
        let mut eta = vec![0.0; n];
        for (j, &bj) in beta.iter().enumerate().take(p) {
            for (e, &xv) in eta.iter_mut().zip(&self.x[j * n..(j + 1) * n]) {
                *e += xv * bj;
            }
        }
        for (term, lay) in self.terms.iter().zip(&self.layout) {
            let k = term.k;
            for (r, e) in eta.iter_mut().enumerate() {
                let base = lay.offset + term.codes[r] as usize * k;
                let z = &term.z[r * k..(r + 1) * k];
                for c in 0..k {
                    *e += z[c] * b[base + c];
                }
            }
        }
        eta
    }

    /// The response.
    pub fn y(&self) -> &[f64] {
        &self.y
    }

    /// Diagonal k x k blocks of Λ (ΛᵀZᵀZΛ + I)⁻¹ Λᵀ, one per level of each term,
    /// at the θ of the last update: the conditional covariances of the random
    /// effects divided by σ² (lme4's condVar). Returned per term as
    /// n_levels * k * k values (each block column-major).
    pub fn cond_var_blocks(&self) -> Result<Vec<Vec<f64>>> {
        if self.eval.is_none() {
            return Err(CoreError::Theta("no θ has been evaluated yet".into()));
        }
        const CHUNK: usize = 64;
        let mut out: Vec<Vec<f64>> = self
            .layout
            .iter()
            .map(|l| vec![0.0; l.n_levels * l.k * l.k])
            .collect();
        for (t, lay) in self.layout.iter().enumerate() {
            let k = lay.k;
            let tm = &self.templates[t];
            let per_chunk = (CHUNK / k).max(1);
            let mut l0 = 0;
            while l0 < lay.n_levels {
                let nl = per_chunk.min(lay.n_levels - l0);
                let mut e = Mat::<f64>::zeros(self.q, nl * k);
                for li in 0..nl {
                    for c in 0..k {
                        e[(lay.offset + (l0 + li) * k + c, li * k + c)] = 1.0;
                    }
                }
                self.chol.forward_solve(e.as_mut());
                for li in 0..nl {
                    // block of M⁻¹ for this level: XᵀX with X = L⁻¹P E
                    let xs = e.as_ref().subcols(li * k, k);
                    let mut minv = Mat::<f64>::zeros(k, k);
                    matmul(
                        minv.as_mut(),
                        Accum::Replace,
                        xs.transpose(),
                        xs,
                        1.0,
                        Par::Seq,
                    );
                    // T M⁻¹ Tᵀ
                    let blk = &mut out[t][(l0 + li) * k * k..][..k * k];
                    for c in 0..k {
                        for r in 0..k {
                            let mut s = 0.0;
                            for i in 0..=r {
                                for j in 0..=c {
                                    s += tm[r + i * k] * minv[(i, j)] * tm[c + j * k];
                                }
                            }
                            blk[r + c * k] = s;
                        }
                    }
                }
                l0 += nl;
            }
        }
        Ok(out)
    }

    /// RZX = c_X: the q x p block L⁻¹P ΛᵀZᵀX at the last θ (rows in L's order).
    pub fn rzx(&self) -> MatRef<'_, f64> {
        self.c.as_ref().subcols(0, self.p)
    }
}

/// In-place Cholesky S = RᵀR of a small dense symmetric matrix; the upper
/// triangle receives R and the strict lower triangle is zeroed. On failure
/// returns the index of the first non-positive pivot.
fn dense_upper_cholesky(mut s: MatMut<'_, f64>) -> std::result::Result<(), usize> {
    let m = s.nrows();
    for j in 0..m {
        let mut d = s[(j, j)];
        for k in 0..j {
            d -= s[(k, j)] * s[(k, j)];
        }
        if !(d > 0.0) || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        s[(j, j)] = d;
        for i in j + 1..m {
            let mut v = s[(j, i)];
            for k in 0..j {
                v -= s[(k, j)] * s[(k, i)];
            }
            s[(j, i)] = v / d;
        }
        for i in j + 1..m {
            s[(i, j)] = 0.0;
        }
    }
    Ok(())
}
