//! Tests of the core against dense oracles that never form the PLS system:
//! V₀ = ZΛΛᵀZᵀ + W⁻¹, generalized least squares, and
//! log det V₀ = log det(ΛᵀZᵀWZΛ + I) − Σ log wᵢ (the matrix determinant
//! lemma); and M = ΛᵀZᵀWZΛ + I formed densely for the factor itself.

use faer::prelude::Solve;
use faer::{Mat, Side};

use super::chol::FactorKind;
use super::{ReTerm, RowData, Workspace};

mod agq;
mod chunks;
mod factor;
mod glmm;
mod gradient;
mod marginal;
mod objective;
mod weights;

/// Deterministic pseudo-random numbers in [0, 1).
pub struct Lcg(pub u64);
impl Lcg {
    pub fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone)]
pub struct Problem {
    pub n: usize,
    pub p: usize,
    pub x: Vec<f64>,
    pub y: Vec<f64>,
    pub terms: Vec<ReTerm>,
    pub weights: Option<Vec<f64>>,
    pub offset: Option<Vec<f64>>,
}

impl Problem {
    pub fn rows(&self) -> RowData {
        let (x, y) = (self.x.clone(), self.y.clone());
        RowData::new(
            self.n,
            self.p,
            x,
            y,
            self.weights.clone(),
            self.offset.clone(),
        )
        .unwrap()
    }

    pub fn build(&self, kind: FactorKind) -> Workspace {
        Workspace::build(self.rows(), self.terms.clone(), kind).unwrap()
    }

    /// The same problem with random positive weights and an offset.
    pub fn weighted(mut self, seed: u64) -> Self {
        let mut rng = Lcg(seed);
        self.weights = Some((0..self.n).map(|_| 0.2 + 3.0 * rng.next()).collect());
        self.offset = Some((0..self.n).map(|_| 4.0 * rng.next() - 2.0).collect());
        self
    }

    /// The prior weights (1 without).
    pub fn w(&self) -> Vec<f64> {
        self.weights.clone().unwrap_or_else(|| vec![1.0; self.n])
    }
}

/// Three terms: a random slope on g1 (k = 2), intercepts on a crossed g2 and
/// on g3 nested in g1.
pub fn problem(n: usize, seed: u64) -> Problem {
    problem_with(n, seed, 7)
}

/// With `l1` > 7 the slope term has the most random effects and is factored
/// first; otherwise the nested intercept term is.
pub fn problem_with(n: usize, seed: u64, l1: usize) -> Problem {
    let mut rng = Lcg(seed);
    let l2 = 5usize;
    let p = 2;
    let mut x = vec![0.0; n * p];
    let mut y = vec![0.0; n];
    let (mut c1, mut z1, mut c2, mut z2, mut c3, mut z3) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for i in 0..n {
        let g1 = (rng.next() * l1 as f64) as u32;
        let g2 = (rng.next() * l2 as f64) as u32;
        let g3 = g1 * 2 + (rng.next() * 2.0) as u32;
        let xi = rng.next() * 4.0 - 2.0;
        x[i] = 1.0;
        x[n + i] = xi;
        y[i] = 1.0 + 0.5 * xi + (g1 as f64 - 3.0) * 0.7 + (g2 as f64) * 0.3 + rng.next() * 2.0;
        c1.push(g1);
        z1.extend([1.0, xi]);
        c2.push(g2);
        z2.push(1.0);
        c3.push(g3);
        z3.push(1.0);
    }
    let terms = vec![
        ReTerm {
            n_levels: 2 * l1,
            k: 1,
            codes: c3,
            z: z3,
        },
        ReTerm {
            n_levels: l1,
            k: 2,
            codes: c1,
            z: z1,
        },
        ReTerm {
            n_levels: l2,
            k: 1,
            codes: c2,
            z: z2,
        },
    ];
    Problem {
        n,
        p,
        x,
        y,
        terms,
        weights: None,
        offset: None,
    }
}

/// A term of [`design`]: levels drawn at random, or nested (`per` levels
/// within each level of an earlier term).
pub enum Spec {
    Crossed { levels: usize, k: usize },
    Nested { within: usize, per: usize, k: usize },
}

pub fn crossed(levels: usize, k: usize) -> Spec {
    Spec::Crossed { levels, k }
}

pub fn nested(within: usize, per: usize, k: usize) -> Spec {
    Spec::Nested { within, per, k }
}

/// V (or any matrix) from CSR arrays, dense.
pub fn csr_dense(csr: &crate::core::Csr, n: usize) -> Mat<f64> {
    let mut dense = Mat::<f64>::zeros(n, n);
    for i in 0..n {
        for e in csr.indptr[i] as usize..csr.indptr[i + 1] as usize {
            dense[(i, csr.indices[e] as usize)] = csr.data[e];
        }
    }
    dense
}

/// Random data for the given terms: X = [1, x], z = [1, random...], y with a
/// trend, an effect per level and noise.
pub fn design(n: usize, seed: u64, specs: &[Spec]) -> Problem {
    let mut rng = Lcg(seed);
    let p = 2;
    let (mut x, mut y) = (vec![0.0; n * p], vec![0.0; n]);
    let mut terms: Vec<ReTerm> = Vec::new();
    for spec in specs {
        let (n_levels, k) = match *spec {
            Spec::Crossed { levels, k } => (levels, k),
            Spec::Nested { within, per, k } => (terms[within].n_levels * per, k),
        };
        let codes: Vec<u32> = (0..n)
            .map(|i| match *spec {
                Spec::Crossed { levels, .. } => (rng.next() * levels as f64) as u32,
                Spec::Nested { within, per, .. } => {
                    terms[within].codes[i] * per as u32 + (rng.next() * per as f64) as u32
                }
            })
            .collect();
        let z = (0..n * k)
            .map(|e| {
                if e % k == 0 {
                    1.0
                } else {
                    2.0 * rng.next() - 1.0
                }
            })
            .collect();
        terms.push(ReTerm {
            n_levels,
            k,
            codes,
            z,
        });
    }
    for i in 0..n {
        let xi = 4.0 * rng.next() - 2.0;
        x[i] = 1.0;
        x[n + i] = xi;
        let effects: f64 = terms
            .iter()
            .map(|t| ((t.codes[i] % 5) as f64 - 2.0) * 0.4)
            .sum();
        y[i] = 1.0 + 0.5 * xi + effects + rng.next() * 2.0;
    }
    Problem {
        n,
        p,
        x,
        y,
        terms,
        weights: None,
        offset: None,
    }
}

/// A θ for the problem's terms: `diag` on the template diagonals, `off`
/// below, varied by position.
pub fn theta_for(pr: &Problem, diag: f64, off: f64) -> Vec<f64> {
    let mut th = Vec::new();
    for t in &pr.terms {
        for c in 0..t.k {
            for r in c..t.k {
                let i = th.len() as f64;
                th.push(if r == c { diag * (1.0 + 0.1 * i) } else { off });
            }
        }
    }
    th
}

pub fn workspace(pr: &Problem) -> Workspace {
    pr.build(FactorKind::Auto)
}

pub fn workspaces(pr: &Problem) -> Vec<Workspace> {
    [FactorKind::Simplicial, FactorKind::Supernodal]
        .into_iter()
        .map(|k| pr.build(k))
        .collect()
}

/// Dense Z (n x q) on the scale of the data.
pub fn dense_z(pr: &Problem) -> Mat<f64> {
    let q: usize = pr.terms.iter().map(|t| t.n_levels * t.k).sum();
    let mut z = Mat::<f64>::zeros(pr.n, q);
    let mut off = 0;
    for t in &pr.terms {
        for i in 0..pr.n {
            let base = off + t.codes[i] as usize * t.k;
            for c in 0..t.k {
                z[(i, base + c)] += t.z[i * t.k + c];
            }
        }
        off += t.n_levels * t.k;
    }
    z
}

/// Dense Λ(θ) (q x q).
pub fn dense_lambda(pr: &Problem, theta: &[f64]) -> Mat<f64> {
    let q: usize = pr.terms.iter().map(|t| t.n_levels * t.k).sum();
    let mut lam = Mat::<f64>::zeros(q, q);
    let (mut off, mut th) = (0, 0);
    for t in &pr.terms {
        let k = t.k;
        for l in 0..t.n_levels {
            let mut idx = th;
            for c in 0..k {
                for r in c..k {
                    lam[(off + l * k + r, off + l * k + c)] = theta[idx];
                    idx += 1;
                }
            }
        }
        off += t.n_levels * k;
        th += k * (k + 1) / 2;
    }
    lam
}

/// Dense ZΛ at θ.
pub fn dense_zl(pr: &Problem, theta: &[f64]) -> Mat<f64> {
    dense_z(pr) * dense_lambda(pr, theta)
}

/// M = ΛᵀZᵀWZΛ + I.
pub fn dense_m(pr: &Problem, theta: &[f64]) -> Mat<f64> {
    let zl = dense_zl(pr, theta);
    let w = pr.w();
    let wzl = Mat::from_fn(zl.nrows(), zl.ncols(), |i, j| w[i] * zl[(i, j)]);
    zl.transpose() * wzl + Mat::<f64>::identity(zl.ncols(), zl.ncols())
}

/// V₀ = ZΛΛᵀZᵀ + W⁻¹ (V/σ²).
pub fn dense_v0(pr: &Problem, theta: &[f64]) -> Mat<f64> {
    let zl = dense_zl(pr, theta);
    let w = pr.w();
    &zl * zl.transpose() + Mat::from_fn(pr.n, pr.n, |i, j| if i == j { 1.0 / w[i] } else { 0.0 })
}

/// log det of a symmetric positive definite matrix.
pub fn logdet(a: &Mat<f64>) -> f64 {
    let llt = a.llt(Side::Lower).unwrap();
    2.0 * (0..a.nrows()).map(|i| llt.L()[(i, i)].ln()).sum::<f64>()
}

/// GLS at θ: β and the weighted residual sum of squares rᵀV₀⁻¹r of y − o.
pub fn dense_gls(pr: &Problem, theta: &[f64]) -> (Mat<f64>, f64) {
    let n = pr.n;
    let llt = dense_v0(pr, theta).llt(Side::Lower).unwrap();
    let x = Mat::<f64>::from_fn(n, pr.p, |i, j| pr.x[i + j * n]);
    let off = |i: usize| pr.offset.as_ref().map_or(0.0, |o| o[i]);
    let y = Mat::<f64>::from_fn(n, 1, |i, _| pr.y[i] - off(i));
    let xtvx = x.transpose() * llt.solve(&x);
    let beta = xtvx
        .llt(Side::Lower)
        .unwrap()
        .solve(x.transpose() * llt.solve(&y));
    let r = &y - &x * &beta;
    let pwrss = (r.transpose() * llt.solve(&r))[(0, 0)];
    (beta, pwrss)
}

/// lme4's objective from the dense GLS: log det V₀ + (n or n − p)(1 + log(2π
/// pwrss / ·)) (+ log det XᵀV₀⁻¹X for REML).
pub fn dense_objective(pr: &Problem, theta: &[f64], reml: bool) -> f64 {
    let n = pr.n;
    let v0 = dense_v0(pr, theta);
    let (_, pwrss) = dense_gls(pr, theta);
    let two_pi = 2.0 * std::f64::consts::PI;
    if reml {
        let llt = v0.llt(Side::Lower).unwrap();
        let x = Mat::<f64>::from_fn(n, pr.p, |i, j| pr.x[i + j * n]);
        let xtvx = x.transpose() * llt.solve(&x);
        let nmp = (n - pr.p) as f64;
        logdet(&v0) + logdet(&xtvx) + nmp * (1.0 + (two_pi * pwrss / nmp).ln())
    } else {
        logdet(&v0) + n as f64 * (1.0 + (two_pi * pwrss / n as f64).ln())
    }
}

/// Relative difference, for messages and checks.
pub fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs().max(1e-300)
}
