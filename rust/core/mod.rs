//! The pure-Rust core: no Python types here.
//!
//! # The model
//!
//! Notation (Bates, Mächler, Bolker and Walker 2015, "Fitting Linear
//! Mixed-Effects Models Using lme4", JSS 67(1)):
//!
//! ```text
//! y = Xβ + ZΛ(θ)u + o + ε,   u ~ N(0, σ²I),  ε ~ N(0, σ²W⁻¹)
//! V = σ²(ZΛΛᵀZᵀ + W⁻¹)
//! ```
//!
//! with prior weights W (I without them) and an offset o (0 without one).
//! Λ(θ) is block diagonal: one lower-triangular k×k template `T_t(θ)` per
//! random-effects term `t`, repeated for each level of the term's grouping
//! factor. The random-effect columns are ordered term by term (lme4's order),
//! and within a term level by level with the term's k coefficients together.
//!
//! The rows enter scaled by √w: `Z̃ = √W Z`, `X̃ = √W X`, `ỹ = √W (y − o)`.
//! The penalized least-squares (PLS) problem at θ is
//! `min ‖ỹ − X̃β − Z̃Λu‖² + ‖u‖²`, with `M = ΛᵀZ̃ᵀZ̃Λ + I`.
//!
//! # The factorization
//!
//! M is factored blockwise, as MixedModels.jl does: the term with the most
//! random effects (`f`) comes first, and its diagonal block is block diagonal
//! (one k_f × k_f block per level), so
//!
//! ```text
//! L11 = chol(M11)            per level, dense k_f × k_f
//! L21 = M21 L11⁻ᵀ            same sparsity as M21
//! P (M22 − L21 L21ᵀ) Pᵀ = L22 L22ᵀ   faer's sparse Cholesky (AMD, analysed once)
//! ```
//!
//! When every term is scalar, M22 − L21 L21ᵀ is formed from the first term's
//! levels grouped by their diagonal value (`schur_classes.rs`), and L21 is
//! then computed during the sparse factorization, on a second thread when the
//! fill is large enough to be split across threads.
//!
//! The fixed effects and response follow through the dense Schur complement
//!
//! ```text
//! c = L⁻¹ P Λᵀ Z̃ᵀ[X̃ ỹ],   S = [X̃ ỹ]ᵀ[X̃ ỹ] − cᵀc = RᵀR
//! ```
//!
//! whose last diagonal element squared is the penalized residual sum of
//! squares (pwrss) and whose leading p×p block is `RX`. The blocks of
//! `[Z̃ X̃ ỹ]ᵀ[Z̃ X̃ ỹ]` (A) are formed once from the rows (again only for new
//! weights or a new response), so nothing evaluated per θ grows with the
//! number of rows.
//!
//! Objectives, as lme4's devfun defines them (`ld_l2 = log det(LLᵀ)`,
//! `ld_rx2 = log det(RXᵀRX)`):
//!
//! ```text
//! ML deviance    ld_l2 + n (1 + log(2π pwrss / n)) − Σ log wᵢ
//! REML criterion ld_l2 + ld_rx2 + (n − p)(1 + log(2π pwrss / (n − p))) − Σ log wᵢ
//! ```
//!
//! # Contents, in the order of the computation
//!
//! - `error`: [`CoreError`], one variant per kind of failure.
//! - `terms`: [`ReTerm`], [`TermLayout`], [`Terms`]: input validation, the
//!   θ layout (templates, lower bounds), products with Z and Λ.
//! - `order`: [`BlockOrder`]: the first term, the rest's block order, and the
//!   one map between L's order and lme4's.
//! - `crossprod`: [`RowData`] (X, y, weights, offset) and [`CrossProducts`]
//!   (A), recomputed for new weights or a new response in the same patterns;
//!   `cross_blocks` forms its off-diagonal blocks.
//! - `chunks`: [`BlockSums`]: A summed chunk by chunk (data larger than
//!   memory), partial sums merged with their block patterns united.
//! - `pattern`: [`Pattern`]: the symbolic plan (the pattern of M22 − L21L21ᵀ
//!   and its sparse analysis).
//! - `schur`, `schur_classes`, `class_terms`: the fill of M22 − L21L21ᵀ at θ
//!   (direct, in threaded column chunks, or grouped by classes).
//! - `chol`: [`SparseCholesky`], the sparse factor L22.
//! - `small`: the dense k×k kernels.
//! - `threads`: parallel parts on scoped threads (not the pool's sleeping
//!   workers), as many as rayon's setting.
//! - `factor`: [`BlockedFactor`]: L at θ, its solves, log det and CSC form.
//! - `workspace`: [`Workspace`]: θ → L → objective, and the PLS solution.
//! - `marginal`: V, V⁻¹B, VB, log det V, condVar, through the factor.
//! - `selinv`, `logdet_grad`, `grad_scalar`, `grad_one_term`, `gradient`:
//!   M⁻¹ on the pattern of L (selected inversion, blockwise as L) and the
//!   exact gradient of the objective with respect to θ (through the Schur
//!   complement of the first term when every term is scalar; level by level
//!   for a single term).
//! - `qn`: the projected BFGS minimizer over θ on the exact gradient, run in
//!   the core ([`Workspace::minimize`]); `start`: its first trial point, θ
//!   by the method of moments from A ([`Workspace::moment_start`]).
//! - `family`, `glmm`: GLMMs. [`Family`] (binomial, Poisson, Gamma and
//!   negative binomial with lme4's links: the per-row link and variance
//!   functions, deviance residuals and lme4's aic, with lme4's clamps) and
//!   [`Glmm`]: PIRLS for the conditional modes on this workspace (working
//!   weights and response refilled in A's kept patterns, L refactored
//!   numerically), the Laplace approximation of −2 log L at (θ, β) or at θ
//!   with β inside PIRLS, and adaptive Gauss-Hermite quadrature for a single
//!   scalar term.

// Index loops over small blocks read like the formulas they implement; NaN
// pivots must fail the positivity checks, hence `!(d > 0.0)`.
#![allow(clippy::needless_range_loop, clippy::neg_cmp_op_on_partial_ord)]

pub mod chol;
pub mod chunks;
mod class_terms;
mod cross_blocks;
pub mod crossprod;
pub mod error;
pub mod factor;
pub mod family;
pub mod glmm;
mod grad_one_term;
mod grad_scalar;
pub mod gradient;
mod logdet_grad;
pub mod marginal;
pub mod order;
pub mod pattern;
pub mod qn;
pub mod schur;
mod schur_classes;
pub mod selinv;
pub mod small;
mod start;
pub mod terms;
mod threads;
pub mod workspace;

#[cfg(test)]
mod tests;

pub use chol::{FactorKind, SparseCholesky};
pub use chunks::BlockSums;
pub use crossprod::{CrossProducts, RowData};
pub use error::{CoreError, Result};
pub use factor::{BlockedFactor, FactorL};
pub use family::{Distribution, Family, Link};
pub use glmm::{Glmm, Pirls};
pub use gradient::GradientParts;
pub use marginal::Csr;
pub use order::BlockOrder;
pub use pattern::Pattern;
pub use terms::{ReTerm, TermLayout, Terms};
pub use workspace::{Evaluation, Solution, Workspace};
