//! The Hessian of the Laplace objective in (θ, β) at an optimum (lme4's,
//! for `vcov`), by differences of the exact gradient (scalar terms,
//! canonical links).
//!
//! Central differences: column i is (g(x + δeᵢ) − g(x − δeᵢ))/2δ, 2m
//! gradients. Forward differences: (g(x + hᵢeᵢ) − g(x))/hᵢ with
//! hᵢ = δ max(1, |xᵢ|), m + 1 gradients (m when g(x) was computed as PIRLS
//! left the model there, as the fit's optimizer does); their error is O(δ) (½hᵢ times
//! the third derivatives) plus the gradient's rounding over hᵢ, so they take
//! δ about √ε (`GeneralizedLinearMixedModel.gradient_hessian`: 1e-8, the
//! usual step of forward differences of an accurate gradient, Nocedal and
//! Wright §8.1). At x + seᵢ the modes are not found by PIRLS: the gradient
//! is taken at the start û + s ∂û/∂xᵢ ([`Glmm::mode_jacobian`]) as if it
//! were the modes, A at its working weights and refactored. The start is off
//! the modes by ½s² ∂²û/∂xᵢ² + O(s³): with central differences the same on
//! both sides to leading order, so the gradient's error is even in s and
//! cancels in the difference, whose error stays O(δ²), as the difference's
//! own; with forward differences it adds O(δ) to the column, as the
//! difference's own error. One pass over the rows and one factorization per
//! point.
//!
//! The points are independent of one another: on a model of fewer than
//! `COPY_ROWS` rows they run on copies of the model, spread over scoped
//! threads from `THREAD_MIN_ROWS` rows (`threads.rs`; the result does not
//! depend on how many), and the model itself is left
//! as it was; on larger models (whose passes are parallel already, and
//! whose copies would be large) they run in turn on the model, which is then
//! evaluated again at x.

use super::fused::EtaFrom;
use super::Glmm;
use crate::core::error::{check_finite, check_len, Result};
use crate::core::threads::{on_threads, threads};

/// Models with fewer rows run the Hessian's points on copies of themselves.
const COPY_ROWS: usize = 1 << 16;

/// Models with fewer rows run the copies' points on one thread: a point
/// costs about 70 ns a row (VerbAgg's 7,584 rows, 0.52 ms), so a thread's
/// share of 4 points on 2,048 rows about 0.6 ms, against 0.05 to 0.1 ms to
/// start a thread and copy the model.
const THREAD_MIN_ROWS: usize = 2048;

/// The Hessian and the work it took: evaluations (points) and PIRLS
/// iterations (factorizations).
pub struct Hessian {
    /// m x m, column-major (symmetric), m = n_θ + p.
    pub values: Vec<f64>,
    pub evaluations: usize,
    pub iterations: usize,
}

impl Glmm {
    /// The gradient in (θ, β) with `u0` taken for the modes (β given): A at
    /// the working weights at `u0`, refactored (see the module's notes).
    pub fn gradient_at_start(
        &mut self,
        theta: &[f64],
        beta: &[f64],
        u0: &[f64],
    ) -> Result<Vec<f64>> {
        check_len("beta", beta.len(), self.p())?;
        check_finite("beta", beta)?;
        self.set_modes(u0)?;
        self.ws.terms().set_templates(theta, &mut self.templates)?;
        self.theta = theta.to_vec();
        self.fast = false;
        self.have_beta = false;
        self.beta.copy_from_slice(beta);
        let mut xb = std::mem::take(&mut self.xb);
        self.x_mul(beta, &mut xb);
        self.xb = xb;
        match self.scalar.take() {
            Some(mut sr) => {
                let from = EtaFrom::Modes {
                    beta,
                    u: u0,
                    with_beta: false,
                };
                // μ at u0 into sr.mu (kept for canonical links): the gradient's rows
                self.fused_pass(&mut sr, from);
                let done = self.fused_commit(&sr, theta, false);
                sr.mu_at_modes = !sr.mu.is_empty();
                if done.is_ok() {
                    self.fused_set_eta(&sr, (beta, u0), false, &mut []);
                }
                self.scalar = Some(sr);
                done?;
            }
            None => {
                let eta = self.linear_predictor(beta, u0, false);
                self.working_step(theta, &eta, false)?;
                self.eta = eta;
            }
        }
        self.gradient()
    }

    /// The Hessian of the Laplace objective at (θ, β) with step δ, by central
    /// differences or (`forward`) forward ones (see the module's notes); None
    /// unless [`mode_jacobian`](Self::mode_jacobian) is available. The model
    /// is evaluated at (θ, β) first (nothing to do when it was the last
    /// evaluation) and is left there.
    pub fn hessian(
        &mut self,
        theta: &[f64],
        beta: &[f64],
        delta: f64,
        forward: bool,
    ) -> Result<Option<Hessian>> {
        let first = self.laplace(theta, beta)?;
        // the gradient at (θ, β) as PIRLS left it, when it was computed then: the
        // forward differences' base point (the same numbers as `gradient_at_start`'s at û)
        let known = self.memo.as_ref().and_then(|m| m.grad.clone());
        let Some(jac) = self.mode_jacobian()? else {
            return Ok(None);
        };
        let (nt, q) = (theta.len(), self.q());
        let m = nt + beta.len();
        let u0 = self.u.clone();
        let x: Vec<f64> = theta.iter().chain(beta).copied().collect();
        // the points (coordinate, signed step): x ± δeᵢ, or x + hᵢeᵢ and x itself,
        // hᵢ = δ max(1, |xᵢ|) as represented (xᵢ + hᵢ − xᵢ: no rounding in the step)
        let base = if forward { known } else { None };
        let steps: Vec<(usize, f64)> = if forward {
            let h = |i: usize| (x[i] + delta * x[i].abs().max(1.0)) - x[i];
            let at_x = base.is_none().then_some((0, 0.0));
            (0..m).map(|i| (i, h(i))).chain(at_x).collect()
        } else {
            (0..m).flat_map(|i| [(i, delta), (i, -delta)]).collect()
        };
        let n_points = steps.len();
        let point = |g: &mut Glmm, k: usize| -> Result<Vec<f64>> {
            let (i, s) = steps[k];
            let mut xk = x.clone();
            xk[i] += s;
            let col = &jac[i * q..(i + 1) * q];
            let u: Vec<f64> = u0.iter().zip(col).map(|(a, d)| a + s * d).collect();
            g.gradient_at_start(&xk[..nt], &xk[nt..], &u)
        };
        let small = self.scalar.is_some() && self.n() < COPY_ROWS;
        let mut iterations = n_points + first.iterations;
        let grads: Vec<Vec<f64>> = if small {
            // copies of the model, one per group of points
            let groups = if self.n() < THREAD_MIN_ROWS {
                1
            } else {
                threads().clamp(1, n_points)
            };
            let proto: &Glmm = self;
            let parts = on_threads(groups, |gi| -> Result<Vec<Vec<f64>>> {
                let mut g = proto.clone();
                (gi * n_points / groups..(gi + 1) * n_points / groups)
                    .map(|k| point(&mut g, k))
                    .collect()
            });
            let mut all = Vec::with_capacity(n_points);
            for part in parts {
                all.extend(part?);
            }
            all
        } else {
            let all = (0..n_points)
                .map(|k| point(self, k))
                .collect::<Result<Vec<_>>>();
            // back at (θ, β), from its modes
            self.set_modes(&u0)?;
            iterations += self.laplace(theta, beta)?.iterations;
            all?
        };
        let mut h = vec![0.0; m * m];
        let g0 = base.as_ref().unwrap_or_else(|| &grads[grads.len() - 1]);
        for i in 0..m {
            let (a, b, scale) = if forward {
                (&grads[i], g0, steps[i].1)
            } else {
                (&grads[2 * i], &grads[2 * i + 1], 2.0 * delta)
            };
            for (j, (a, b)) in a.iter().zip(b).enumerate() {
                h[j + i * m] = (a - b) / scale;
            }
        }
        for i in 0..m {
            for j in 0..i {
                let v = 0.5 * (h[j + i * m] + h[i + j * m]);
                h[j + i * m] = v;
                h[i + j * m] = v;
            }
        }
        let evaluations = n_points + usize::from(!small) + usize::from(first.iterations > 0);
        Ok(Some(Hessian {
            values: h,
            evaluations,
            iterations,
        }))
    }
}
