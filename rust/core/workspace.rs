//! The workspace of one model: MixedModels.jl's
//! `objective(updateL!(setθ!(m, θ)))` over A (formed once) and L (per θ).
//!
//! [`Workspace::update`] sets θ, refactors L and forms R, the Cholesky factor
//! of the fixed effects' and response's Schur complement; the objective, the
//! PLS solution and everything in `marginal.rs` read that state.

use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatRef, Par};

use super::chol::{FactorKind, SparseCholesky};
use super::chunks::BlockSums;
use super::crossprod::{CrossProducts, RowData};
use super::error::{CoreError, Result};
use super::factor::BlockedFactor;
use super::order::BlockOrder;
use super::pattern::Pattern;
use super::small::chol_upper;
use super::terms::{ReTerm, TermLayout, Terms};

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
    /// Xβ + Zb + offset, on the scale of the data (None when the rows are
    /// not kept).
    pub fitted: Option<Vec<f64>>,
    pub pwrss: f64,
    pub ld_l2: f64,
    pub ld_rx2: f64,
    /// Upper-triangular p x p factor `RX`, column-major.
    pub rx: Vec<f64>,
}

/// Everything needed to evaluate the profiled objective at any θ.
#[derive(Clone)]
pub struct Workspace {
    terms: Arc<Terms>,
    order: Arc<BlockOrder>,
    pattern: Arc<Pattern>,
    a: CrossProducts,
    factor: BlockedFactor,
    /// c = L⁻¹ P Λᵀ Z̃ᵀ[X̃ ỹ] (q x (p+1), rows in L order) and R, with
    /// RᵀR = [X̃ ỹ]ᵀ[X̃ ỹ] − cᵀc, at the current θ.
    c: Mat<f64>,
    r: Mat<f64>,
    templates: Vec<Vec<f64>>,
    theta: Vec<f64>,
    eval: Option<Evaluation>,
}

impl Workspace {
    /// An unweighted model without offset: `x` is n x p column-major, `y`
    /// has n values.
    pub fn new(n: usize, p: usize, x: Vec<f64>, y: Vec<f64>, terms: Vec<ReTerm>) -> Result<Self> {
        Self::build(
            RowData::new(n, p, x, y, None, None)?,
            terms,
            FactorKind::Auto,
        )
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
        Self::build(RowData::new(n, p, x, y, None, None)?, terms, kind)
    }

    /// Builds the workspace: checks the terms, forms A from the rows, finds
    /// the plan of the factorization and analyses it.
    pub fn build(rows: RowData, terms: Vec<ReTerm>, kind: FactorKind) -> Result<Self> {
        let terms = Terms::new(rows.n(), terms)?;
        let order = Arc::new(BlockOrder::new(&terms));
        let a = CrossProducts::new(rows, &terms, &order);
        Self::assemble(terms, order, a, kind)
    }

    /// The workspace of a model whose rows were summed chunk by chunk
    /// ([`BlockSums`]): everything that reads A only (the objective, the
    /// estimates, the gradient, conditional variances) works; what needs the
    /// rows (fitted values, V on observation-space vectors, new weights or
    /// response) returns [`CoreError::RowsNotKept`].
    pub fn from_sums(sums: BlockSums, kind: FactorKind) -> Result<Self> {
        sums.validate()?;
        let terms = Terms::without_rows(sums.n, &sums.shapes)?;
        let order = Arc::new(BlockOrder::new(&terms));
        let a = CrossProducts::from_sums(sums, &order);
        Self::assemble(terms, order, a, kind)
    }

    /// The plan of the factorization, analysed once, over A.
    fn assemble(
        terms: Terms,
        order: Arc<BlockOrder>,
        a: CrossProducts,
        kind: FactorKind,
    ) -> Result<Self> {
        let (mut pattern, l22) = Pattern::new(&order, &a.a21().pat, &a.a22().pat, kind)?;
        let factor = BlockedFactor::new(Arc::clone(&order), terms.all_scalar(), &pattern, &a, l22);
        if factor.schur().class_work() > 0 {
            pattern.release_transpose(); // the grouped fill does not read it
        }
        let p1 = a.rows().p() + 1;
        Ok(Self {
            c: Mat::zeros(terms.q(), p1),
            r: Mat::zeros(p1, p1),
            templates: terms.zero_templates(),
            theta: vec![f64::NAN; terms.n_theta()],
            eval: None,
            terms: Arc::new(terms),
            order,
            pattern: Arc::new(pattern),
            a,
            factor,
        })
    }

    pub fn n(&self) -> usize {
        self.terms.n()
    }
    pub fn p(&self) -> usize {
        self.a.rows().p()
    }
    pub fn q(&self) -> usize {
        self.terms.q()
    }
    pub fn n_theta(&self) -> usize {
        self.terms.n_theta()
    }
    pub fn layout(&self) -> &[TermLayout] {
        self.terms.layout()
    }
    pub fn terms(&self) -> &Terms {
        &self.terms
    }
    /// The rows: X, y, weights and offset on the scale of the data.
    pub fn rows(&self) -> &RowData {
        self.a.rows()
    }
    /// Whether the rows are kept (not for a model built from chunk sums).
    pub fn has_rows(&self) -> bool {
        self.a.rows().kept()
    }
    /// `Ok` when the rows are kept, else [`CoreError::RowsNotKept`] for `what`.
    pub(crate) fn need_rows(&self, what: &'static str) -> Result<()> {
        if self.has_rows() {
            Ok(())
        } else {
            Err(CoreError::RowsNotKept { what })
        }
    }
    /// The symbolic plan of the factorization.
    pub(crate) fn pattern(&self) -> &Pattern {
        &self.pattern
    }
    /// A: the cross-product blocks of [Z̃ X̃ ỹ].
    pub fn cross_products(&self) -> &CrossProducts {
        &self.a
    }
    /// c = L⁻¹ P̃ ΛᵀZ̃ᵀ[X̃ ỹ] at the last θ (q x (p+1), rows in L order).
    pub(crate) fn c(&self) -> MatRef<'_, f64> {
        self.c.as_ref()
    }
    /// The factor L at the last θ.
    pub fn factor(&self) -> &BlockedFactor {
        &self.factor
    }
    /// The sparse factor of the Schur complement of the first term (None when
    /// the model has a single random-effects term).
    pub fn chol(&self) -> Option<&SparseCholesky> {
        self.factor.l22()
    }
    /// Number of chunks the Schur-complement fill is split into (threads).
    pub fn schur_chunks(&self) -> usize {
        self.factor.schur().n_chunks()
    }
    /// Multiply-adds of the grouped Schur fill per evaluation (0 when the
    /// direct fill is used).
    pub fn class_work(&self) -> usize {
        self.factor.schur().class_work()
    }
    /// Index of the term factored first (the one with most random effects).
    pub fn first_term(&self) -> usize {
        self.order.first()
    }
    /// Stored nonzeros of the lower triangle of ΛᵀZᵀZΛ + I (first-term
    /// blocks, their cross-products with the rest, and the rest's pattern).
    pub fn pls_nnz(&self) -> usize {
        self.a.a11().len() + self.a.a21().val.len() + self.pattern.nnz()
    }
    /// Stored values of the factor L.
    pub fn factor_nnz(&self) -> usize {
        self.factor.nnz()
    }
    /// Lower bounds of θ: 0 on the diagonal of each template, -∞ elsewhere.
    pub fn lower(&self) -> Vec<f64> {
        self.terms.lower()
    }
    /// The template `T_t(θ)` of each term at the last θ, k x k column-major.
    pub fn templates(&self) -> &[Vec<f64>] {
        &self.templates
    }
    /// Σ log wᵢ of the prior weights (0 without weights).
    pub fn log_det_w(&self) -> f64 {
        self.a.log_det_w()
    }
    /// The response, on the scale of the data.
    pub fn y(&self) -> &[f64] {
        self.a.rows().y()
    }

    /// Sets θ, refactors L and forms R. The last θ's results are kept, so
    /// that asking again at the same θ costs nothing.
    pub fn update(&mut self, theta: &[f64]) -> Result<Evaluation> {
        if let Some(ev) = &self.eval {
            if self.theta == theta {
                return Ok(ev.clone());
            }
        }
        let ld_l2 = self.refactor_from(theta, 0)?;
        // S = [X̃ ỹ]ᵀ[X̃ ỹ] − c1ᵀc1 − c2ᵀc2 and its Cholesky factor
        let p = self.p();
        self.r.copy_from(self.a.xyxy());
        let (c1, c2) = self.c.as_ref().split_at_row(self.order.qf());
        matmul(
            self.r.as_mut(),
            Accum::Add,
            c1.transpose(),
            c1,
            -1.0,
            Par::Seq,
        );
        if c2.nrows() > 0 {
            matmul(
                self.r.as_mut(),
                Accum::Add,
                c2.transpose(),
                c2,
                -1.0,
                Par::Seq,
            );
        }
        chol_upper(self.r.as_mut()).map_err(|column| {
            if column < p {
                CoreError::RankDeficient { column }
            } else {
                CoreError::ExactFit
            }
        })?;
        let ev = Evaluation {
            pwrss: self.r[(p, p)].powi(2),
            ld_l2,
            ld_rx2: 2.0 * (0..p).map(|j| self.r[(j, j)].ln()).sum::<f64>(),
        };
        self.eval = Some(ev.clone());
        Ok(ev)
    }

    /// Sets θ and refactors L, forming c's response column alone, without
    /// R: log det(LLᵀ). The fixed effects' factor is not formed
    /// (`evaluation` then fails until the next `update`) and c's X columns
    /// are stale; what PIRLS on u at fixed β needs.
    pub fn refactor_at(&mut self, theta: &[f64]) -> Result<f64> {
        self.refactor_from(theta, self.p())
    }

    /// Sets θ and refactors L, forming c's columns from `first` on.
    fn refactor_from(&mut self, theta: &[f64], first: usize) -> Result<f64> {
        self.eval = None;
        self.terms.set_templates(theta, &mut self.templates)?;
        self.theta.copy_from_slice(theta);
        let qf = self.order.qf();
        let cols = self.c.ncols() - first;
        let (c1, c2) = self
            .c
            .as_mut()
            .subcols_mut(first, cols)
            .split_at_row_mut(qf);
        self.factor
            .refactor(&self.pattern, &self.a, &self.templates, c1, c2)
    }

    /// The evaluation at the last θ.
    pub fn evaluation(&self) -> Result<&Evaluation> {
        self.eval.as_ref().ok_or(CoreError::NotEvaluated)
    }

    /// The model's profiled objective at θ (lme4's devfun): the REML
    /// criterion or the ML deviance, with the prior weights' −Σ log wᵢ.
    pub fn objective(&mut self, theta: &[f64], reml: bool) -> Result<f64> {
        let ev = self.update(theta)?;
        Ok(self.objective_from(&ev, reml))
    }

    pub fn objective_from(&self, ev: &Evaluation, reml: bool) -> f64 {
        let two_pi = 2.0 * std::f64::consts::PI;
        let ldw = self.log_det_w();
        if reml {
            let nmp = (self.n() - self.p()) as f64;
            ev.ld_l2 + ev.ld_rx2 + nmp * (1.0 + (two_pi * ev.pwrss / nmp).ln()) - ldw
        } else {
            let n = self.n() as f64;
            ev.ld_l2 + n * (1.0 + (two_pi * ev.pwrss / n).ln()) - ldw
        }
    }

    /// Solves the PLS problem at θ: β, u, b = Λu and the fitted values.
    pub fn solve(&mut self, theta: &[f64]) -> Result<Solution> {
        self.update(theta)?;
        self.solution()
    }

    /// The PLS solution at the last θ.
    pub fn solution(&self) -> Result<Solution> {
        let ev = self.evaluation()?;
        let (beta, u) = self.beta_u();
        let mut b = u.clone();
        self.terms.lambda_mul(&self.templates, &mut b);
        let fitted = self.has_rows().then(|| self.linear_predictor(&beta, &b));
        Ok(Solution {
            beta,
            u,
            b,
            fitted,
            pwrss: ev.pwrss,
            ld_l2: ev.ld_l2,
            ld_rx2: ev.ld_rx2,
            rx: self.rx(),
        })
    }

    /// β̂ at the last θ: RX β̂ = the response's column of R.
    pub(crate) fn beta(&self) -> Vec<f64> {
        let p = self.p();
        let mut beta = vec![0.0; p];
        for i in (0..p).rev() {
            let mut s = self.r[(i, p)];
            for j in i + 1..p {
                s -= self.r[(i, j)] * beta[j];
            }
            beta[i] = s / self.r[(i, i)];
        }
        beta
    }

    /// β̂ and û at the last θ.
    pub(crate) fn beta_u(&self) -> (Vec<f64>, Vec<f64>) {
        let beta = self.beta();
        let u = self.u_for_beta(&beta);
        (beta, u)
    }

    /// u minimizing the penalized residual sum of squares at a given β and
    /// the last θ (L and c as of the last refactorization).
    pub(crate) fn u_for_beta(&self, beta: &[f64]) -> Vec<f64> {
        let p = self.p();
        // u = P̃ᵀ L⁻ᵀ (c_y − c_X β)
        let resid = Mat::from_fn(self.q(), 1, |i, _| {
            let mut s = self.c[(i, p)];
            for (j, b) in beta.iter().enumerate() {
                s -= self.c[(i, j)] * b;
            }
            s
        });
        self.factor
            .lt_solve(resid.as_ref())
            .col(0)
            .iter()
            .copied()
            .collect()
    }

    /// u minimizing ‖ỹ − Z̃Λu‖² + ‖u‖² at the last refactorization (the
    /// response's column of c only: X plays no part).
    pub(crate) fn u_of_response(&self) -> Vec<f64> {
        let p = self.p();
        let col = Mat::from_fn(self.q(), 1, |i, _| self.c[(i, p)]);
        self.factor
            .lt_solve(col.as_ref())
            .col(0)
            .iter()
            .copied()
            .collect()
    }

    /// RX (p x p upper triangular, column-major) at the last θ.
    pub fn rx(&self) -> Vec<f64> {
        let p = self.p();
        let mut rx = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..=j {
                rx[i + j * p] = self.r[(i, j)];
            }
        }
        rx
    }

    /// RZX: the q x p block L⁻¹P ΛᵀZ̃ᵀX̃ at the last θ, rows in L order (the
    /// first term's levels, then the rest in the sparse factor's order).
    pub fn rzx(&self) -> Mat<f64> {
        self.c.as_ref().subcols(0, self.p()).to_owned()
    }

    /// Xβ + Zb + offset on the scale of the data (empty when the rows are
    /// not kept).
    pub fn linear_predictor(&self, beta: &[f64], b: &[f64]) -> Vec<f64> {
        let rows = self.a.rows();
        if !rows.kept() {
            return vec![];
        }
        let n = rows.n();
        let mut eta = vec![0.0; n];
        for (j, &bj) in beta.iter().enumerate() {
            for (e, &xv) in eta.iter_mut().zip(&rows.x()[j * n..(j + 1) * n]) {
                *e += xv * bj;
            }
        }
        self.terms.z_mul_add(b, None, &mut eta);
        if let Some(o) = rows.offset() {
            eta.iter_mut().zip(o).for_each(|(e, o)| *e += o);
        }
        eta
    }

    /// Replaces the response (on the scale of the data): recomputes only the
    /// response's cross-products; the rest of A and the plan are kept.
    pub fn set_response(&mut self, y: Vec<f64>) -> Result<()> {
        self.need_rows("a new response")?;
        self.eval = None;
        self.a.set_response(&self.terms, y)
    }

    /// Replaces the prior weights (None: unweighted): recomputes A in the
    /// same patterns and keeps the plan and the analysis of the factorization.
    pub fn set_weights(&mut self, weights: Option<Vec<f64>>) -> Result<()> {
        self.need_rows("new weights")?;
        self.eval = None;
        self.a.set_weights(&self.terms, &self.order, weights)?;
        self.factor.schur_mut().regroup(&self.pattern, &self.a);
        Ok(())
    }

    /// Replaces the weights and the response at once (PIRLS: the working
    /// weights and response): one pass over the rows in the kept patterns;
    /// the Schur complement is then filled directly (no grouping by classes).
    ///
    /// Without `with_x` the X blocks of A are stale (see
    /// [`CrossProducts::set_weights_response`]) until the next call with it:
    /// only [`refactor_at`](Self::refactor_at) and
    /// `u_of_response` may be used meanwhile.
    pub fn set_weights_response(
        &mut self,
        weights: Vec<f64>,
        y: Vec<f64>,
        with_x: bool,
    ) -> Result<()> {
        self.eval = None;
        self.a
            .set_weights_response(&self.terms, &self.order, weights, y, with_x)?;
        self.factor.schur_mut().ungroup();
        Ok(())
    }

    /// A, to be refilled in place by the caller (the GLMM's fused PIRLS
    /// step): as [`set_weights_response`](Self::set_weights_response), the
    /// evaluation is dropped and the Schur complement filled directly.
    pub(crate) fn cross_products_mut(&mut self) -> &mut CrossProducts {
        self.eval = None;
        self.factor.schur_mut().ungroup();
        &mut self.a
    }

    /// The direct scalar Schur fill (no classes) or the grouped one whatever
    /// it saves, for tests of both paths.
    #[cfg(test)]
    pub(crate) fn with_classes(mut self, on: bool) -> Self {
        let (pattern, a) = (&self.pattern, &self.a);
        self.factor.schur_mut().force_classes(on, pattern, a);
        self
    }

    /// The direct scalar Schur fill as one dense product where the design
    /// allows it (`on`), or as updates, for tests of both.
    #[cfg(test)]
    pub(crate) fn with_dense_schur(mut self, on: bool) -> Self {
        let (order, pattern, a) = (&self.order, &self.pattern, &self.a);
        self.factor.schur_mut().force_dense(on, order, pattern, a);
        self
    }

    /// The Schur fill split into `parts` chunks whatever the work (tests).
    #[cfg(test)]
    pub(crate) fn with_schur_chunks(mut self, parts: usize) -> Self {
        let (order, pattern, a) = (&self.order, &self.pattern, &self.a);
        self.factor
            .schur_mut()
            .force_chunks(parts, order, pattern, a);
        self
    }
}
