//! A bound-constrained quasi-Newton minimizer on the exact gradient, run
//! inside the core so that an evaluation costs no crossing into Python.
//!
//! θ has few elements (one per template entry), so the method is dense BFGS
//! projected on the bounds (Bertsekas 1982, "Projected Newton methods for
//! optimization problems with simple constraints"): at each iterate the
//! coordinates at their lower bound whose gradient points outward are held,
//! the step is −H_F⁻¹ g_F on the free ones (H the BFGS approximation of the
//! Hessian, its free block factored by Cholesky), and a backtracking line
//! search along the projected path max(θ + t d, lower) accepts the first t
//! with an Armijo decrease. The objective alone is evaluated at the trial
//! points; the gradient only at the accepted one (the factor is then already
//! there). It stops when the decrease the local quadratic model predicts,
//! ½ g_Fᵀ H_F⁻¹ g_F, is below `ftol_abs + ftol_rel |f|` and the step below
//! `xtol_abs`. Once the predicted decrease is below the objective's rounding
//! (about 1e-12 |f|: a line search can no longer tell a better point), the
//! run ends with quasi-Newton steps placed by the gradient alone, every
//! coordinate at its bound held there, until the step is below 1e-10
//! max(1, |θ|) (at most four): the objective cannot pin θ down in its flat
//! directions, the exact gradient can, so that θ does not depend on the path
//! to it (to about 1e-10).
//!
//! An optional first trial point (the method of moments' θ, `start.rs`) is
//! evaluated right after the start; when it is lower, the run continues from
//! it with H the Hessian by forward differences of the gradient there (for
//! up to eight θ elements): from near the optimum, Newton's steps.

use super::error::Result;
use super::workspace::Workspace;

/// Settings of [`minimize`].
#[derive(Clone, Copy, Debug)]
pub struct QnSettings {
    /// Stop when the predicted decrease is below `ftol_abs + ftol_rel |f|`
    /// and the step below `xtol_abs` (largest element); below the
    /// objective's rounding (1e-12 |f|), the gradient's steps finish the run.
    pub ftol_abs: f64,
    pub ftol_rel: f64,
    pub xtol_abs: f64,
    /// Maximum number of objective evaluations.
    pub maxeval: usize,
    /// Length (max norm) of the first step, down the gradient.
    pub initial_step: f64,
}

/// A point tried right after the start (the method of moments' θ): the run
/// continues from it when its objective is lower.
pub type FirstTrial = Option<Vec<f64>>;

/// Why [`minimize`] stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QnStop {
    /// The predicted decrease fell below the tolerance.
    Converged,
    /// Every free coordinate is held at its bound.
    AtBounds,
    /// No step along the search direction decreased the objective (the
    /// point is optimal to the objective's rounding, or the model is poor).
    LineSearch,
    MaxEval,
}

/// What [`minimize`] found, with every evaluation it made.
#[derive(Clone, Debug)]
pub struct QnResult {
    pub theta: Vec<f64>,
    pub f: f64,
    /// The gradient at `theta`.
    pub gradient: Vec<f64>,
    /// The BFGS approximation of the Hessian at `theta` (n x n, column-major).
    pub hessian: Vec<f64>,
    pub feval: usize,
    pub geval: usize,
    /// Every θ at which the objective was evaluated, and its value.
    pub log: Vec<(Vec<f64>, f64)>,
    pub stop: QnStop,
}

/// The objective and its gradient for the minimizer: `value(θ)` and
/// `gradient(θ)` (asked for at a θ whose value was asked for before, most
/// often just before).
pub trait Objective {
    fn value(&mut self, theta: &[f64]) -> Result<f64>;
    fn gradient(&mut self, theta: &[f64]) -> Result<Vec<f64>>;
}

/// Minimizes over θ ≥ `lower` from `start` (projected onto the bounds).
pub fn minimize(
    obj: &mut impl Objective,
    start: &[f64],
    lower: &[f64],
    set: &QnSettings,
    first_trial: FirstTrial,
) -> Result<QnResult> {
    let n = start.len();
    let project =
        |p: &[f64]| -> Vec<f64> { p.iter().zip(lower).map(|(&v, &l)| v.max(l)).collect() };
    let mut x = project(start);
    let mut log = Vec::new();
    let mut f = obj.value(&x)?;
    log.push((x.clone(), f));
    let mut feval = 1;
    let mut from_trial = false;
    if let Some(t) = first_trial.filter(|t| t.len() == n && set.maxeval > 1) {
        let xt = project(&t);
        // a trial point the objective cannot be evaluated at is passed over
        if let Ok(ft) = obj.value(&xt) {
            feval += 1;
            log.push((xt.clone(), ft));
            if ft < f {
                (x, f, from_trial) = (xt, ft, true);
            }
        }
    }
    let mut g = obj.gradient(&x)?;
    let mut geval = 1;
    // H starts as a multiple of I that makes the first step `initial_step`
    // long; after the first step it is rescaled by yᵀy / sᵀy. From the first
    // trial point (near the optimum, most often), H starts as the Hessian by
    // forward differences of the gradient instead (n gradients), when that is
    // positive definite: Newton's steps then, rather than a first step whose
    // length is a guess.
    let all: Vec<usize> = (0..n).collect();
    let mut h = restart(&g, &all, n, set.initial_step);
    let mut first = true;
    if from_trial && n <= FD_HESSIAN_MAX {
        let hd = fd_hessian(obj, &x, &g)?;
        geval += n;
        if newton_step(&hd, &g, &all).is_some() {
            (h, first) = (hd, false);
        }
    }
    let mut polished = 0;
    let stop = loop {
        // held: at the bound with the gradient pointing outward, or with the
        // step pointing outward
        let mut free: Vec<usize> = (0..n)
            .filter(|&i| !(x[i] <= lower[i] && g[i] > 0.0))
            .collect();
        let mut step = None;
        while !free.is_empty() {
            step = newton_step(&h, &g, &free);
            let Some((d, _)) = &step else { break };
            let before = free.len();
            free.retain(|&i| !(x[i] <= lower[i] && d[i] < 0.0));
            if free.len() == before {
                break;
            }
        }
        if free.is_empty() {
            break QnStop::AtBounds;
        }
        let Some((d, pred)) = step else {
            if first {
                break QnStop::LineSearch;
            }
            // not positive definite: start the approximation again
            h = restart(&g, &free, n, set.initial_step);
            first = true;
            continue;
        };
        let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let rounding = ROUNDING * f.abs().max(1.0);
        if pred > rounding && pred <= set.ftol_abs + set.ftol_rel * f.abs() && dmax <= set.xtol_abs
        {
            break QnStop::Converged;
        }
        if feval >= set.maxeval {
            break QnStop::MaxEval;
        }
        if pred <= rounding {
            // below what the objective resolves: steps on the gradient alone,
            // every coordinate at its bound held there (a diagonal θ at 0 has
            // a zero gradient, by symmetry: the objective cannot tell whether
            // a step off the bound helps)
            free.retain(|&i| x[i] > lower[i]);
            let held = free.len() < n;
            let Some((d, _)) = (if held {
                newton_step(&h, &g, &free)
            } else {
                Some((d, pred))
            }) else {
                break QnStop::Converged;
            };
            let dmax = d.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let xmax = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            if dmax <= POLISH_XTOL * xmax || polished >= POLISH_STEPS {
                break QnStop::Converged;
            }
            let xn: Vec<f64> = (0..n).map(|i| (x[i] + d[i]).max(lower[i])).collect();
            let fv = obj.value(&xn)?;
            feval += 1;
            log.push((xn.clone(), fv));
            // a rise well beyond rounding: the model is wrong here; x stays
            if !(fv <= f + 10.0 * rounding) {
                break QnStop::Converged;
            }
            let gn = obj.gradient(&xn)?;
            geval += 1;
            polished += 1;
            update(&mut h, &x, &xn, &g, &gn, &mut first);
            (x, f, g) = (xn, fv, gn);
            continue;
        }
        let slope = dot(&g, &d);
        // the largest feasible step, and the point at step t (a coordinate
        // whose bound is reached lands on it exactly)
        let t_max = (0..n)
            .filter(|&i| d[i] < 0.0)
            .map(|i| (x[i] - lower[i]) / -d[i])
            .fold(f64::INFINITY, f64::min);
        let point = |t: f64| -> Vec<f64> {
            (0..n)
                .map(|i| {
                    if d[i] < 0.0 && t >= (x[i] - lower[i]) / -d[i] {
                        lower[i]
                    } else {
                        x[i] + t * d[i]
                    }
                })
                .collect()
        };
        // backtracking from t = 1 (or the bound) to an Armijo decrease; the
        // best decrease seen is taken when none is found
        let mut t = t_max.min(1.0);
        let t0 = t;
        let mut accepted: Option<(f64, f64)> = None;
        let mut best: Option<(f64, f64)> = None;
        let xmax = x.iter().fold(1.0f64, |m, v| m.max(v.abs()));
        // (down to a step whose predicted decrease the objective cannot resolve)
        while feval < set.maxeval && t * dmax > 1e-13 * xmax && -slope * t > rounding {
            let fv = obj.value(&point(t))?;
            feval += 1;
            log.push((point(t), fv));
            if fv.is_finite() && fv <= f + 1e-4 * t * slope {
                accepted = Some((t, fv));
                break;
            }
            if fv < best.map_or(f, |b| b.1) {
                best = Some((t, fv));
            }
            // the minimum of the quadratic through f, the slope and fv, kept
            // within [t/10, t/2]
            let tq = if fv.is_finite() {
                -slope * t * t / (2.0 * (fv - f - slope * t))
            } else {
                0.1 * t
            };
            t = tq.clamp(0.1 * t, 0.5 * t);
        }
        let Some((mut t, mut fv)) = accepted.or(best) else {
            if feval >= set.maxeval {
                break QnStop::MaxEval;
            }
            if first {
                break QnStop::LineSearch;
            }
            // a poor model: down the gradient again
            h = restart(&g, &free, n, set.initial_step);
            first = true;
            continue;
        };
        let mut xn = point(t);
        let mut gn = obj.gradient(&xn)?;
        geval += 1;
        // still going down steeply at the first trial: try further (up to
        // 4 times), while the objective keeps decreasing
        let mut grow = 0;
        while t == t0 && t < t_max && grow < 4 && feval < set.maxeval && dot(&gn, &d) < 0.9 * slope
        {
            let t2 = (4.0 * t).min(t_max);
            let x2 = point(t2);
            let f2 = obj.value(&x2)?;
            feval += 1;
            log.push((x2.clone(), f2));
            if !(f2 < fv) {
                break;
            }
            gn = obj.gradient(&x2)?;
            geval += 1;
            (t, fv, xn) = (t2, f2, x2);
            grow += 1;
        }
        update(&mut h, &x, &xn, &g, &gn, &mut first);
        x = xn;
        f = fv;
        g = gn;
    };
    Ok(QnResult {
        theta: x,
        f,
        gradient: g,
        hessian: h,
        feval,
        geval,
        log,
        stop,
    })
}

/// The profiled objective of a workspace as an [`Objective`].
struct Profiled<'a> {
    ws: &'a mut Workspace,
    reml: bool,
}

impl Objective for Profiled<'_> {
    fn value(&mut self, theta: &[f64]) -> Result<f64> {
        self.ws.objective(theta, self.reml)
    }
    fn gradient(&mut self, theta: &[f64]) -> Result<Vec<f64>> {
        self.ws.gradient(theta, self.reml)
    }
}

impl Workspace {
    /// Minimizes the objective (REML criterion or ML deviance) over θ ≥ the
    /// lower bounds from `start` with [`minimize`].
    /// With `moments`, the method of moments' θ ([`moment_start`](Self::moment_start))
    /// is tried right after `start`.
    pub fn minimize(
        &mut self,
        start: &[f64],
        reml: bool,
        set: &QnSettings,
        moments: bool,
    ) -> Result<QnResult> {
        let lower = self.lower();
        let first = if moments { self.moment_start() } else { None };
        minimize(&mut Profiled { ws: self, reml }, start, &lower, set, first)
    }
}

/// The objective's rounding, relative to max(1, |f|), about: below it, a
/// decrease is not resolved.
const ROUNDING: f64 = 1e-12;

/// The gradient steps that end a run stop at a step this long (largest
/// element, relative to max(1, |θ|)), or after `POLISH_STEPS` of them.
const POLISH_XTOL: f64 = 1e-10;
const POLISH_STEPS: usize = 4;

/// From the first trial point, H starts as the Hessian by differences of the
/// gradient when θ has at most this many elements.
const FD_HESSIAN_MAX: usize = 8;

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// The Hessian at `x` by forward differences of the gradient (`g` at `x`),
/// one coordinate at a time, each stepped up (within the lower bounds),
/// symmetrized.
fn fd_hessian(obj: &mut impl Objective, x: &[f64], g: &[f64]) -> Result<Vec<f64>> {
    let n = x.len();
    let mut h = vec![0.0; n * n];
    let mut xs = x.to_vec();
    for j in 0..n {
        let step = 1e-4 * x[j].abs().max(1.0);
        xs[j] = x[j] + step;
        let gj = obj.gradient(&xs)?;
        xs[j] = x[j];
        for i in 0..n {
            h[i + j * n] = (gj[i] - g[i]) / step;
        }
    }
    for j in 0..n {
        for i in 0..j {
            let v = 0.5 * (h[i + j * n] + h[j + i * n]);
            h[i + j * n] = v;
            h[j + i * n] = v;
        }
    }
    Ok(h)
}

/// The starting approximation: a multiple of I that makes a step down the
/// free gradient `step` long.
fn restart(g: &[f64], free: &[usize], n: usize, step: f64) -> Vec<f64> {
    let gmax = free.iter().fold(0.0f64, |m, &i| m.max(g[i].abs()));
    scaled_identity(n, (gmax / step).max(1e-8))
}

fn scaled_identity(n: usize, s: f64) -> Vec<f64> {
    let mut h = vec![0.0; n * n];
    for i in 0..n {
        h[i + i * n] = s;
    }
    h
}

/// The BFGS update of `h` for the step from `x` to `xn` and the gradients
/// `g`, `gn` there; the first one rescales the starting multiple of I to
/// yᵀy / sᵀy. Skipped without positive curvature along the step.
fn update(h: &mut Vec<f64>, x: &[f64], xn: &[f64], g: &[f64], gn: &[f64], first: &mut bool) {
    let n = x.len();
    let s: Vec<f64> = (0..n).map(|i| xn[i] - x[i]).collect();
    let y: Vec<f64> = (0..n).map(|i| gn[i] - g[i]).collect();
    let sy: f64 = dot(&s, &y);
    if sy > 1e-12 * dot(&s, &s).sqrt() * dot(&y, &y).sqrt() {
        if *first {
            *h = scaled_identity(n, dot(&y, &y) / sy);
            *first = false;
        }
        bfgs_update(h, &s, &y, sy);
    }
}

/// H := H − (Hs)(Hs)ᵀ / sᵀHs + yyᵀ / sᵀy.
fn bfgs_update(h: &mut [f64], s: &[f64], y: &[f64], sy: f64) {
    let n = s.len();
    let hs: Vec<f64> = (0..n)
        .map(|i| (0..n).map(|j| h[i + j * n] * s[j]).sum())
        .collect();
    let shs = dot(s, &hs);
    if !(shs > 0.0) {
        return;
    }
    for j in 0..n {
        for i in 0..n {
            h[i + j * n] += y[i] * y[j] / sy - hs[i] * hs[j] / shs;
        }
    }
}

/// The step −H_F⁻¹ g_F on the free coordinates (0 on the others) and the
/// decrease it predicts, ½ g_Fᵀ H_F⁻¹ g_F; None when H_F is not positive
/// definite.
fn newton_step(h: &[f64], g: &[f64], free: &[usize]) -> Option<(Vec<f64>, f64)> {
    let (n, m) = (g.len(), free.len());
    // Cholesky of H_F, lower, column-major
    let mut l = vec![0.0; m * m];
    for j in 0..m {
        for i in j..m {
            let mut v = h[free[i] + free[j] * n];
            for k in 0..j {
                v -= l[i + k * m] * l[j + k * m];
            }
            if i == j {
                if !(v > 0.0) {
                    return None;
                }
                l[j + j * m] = v.sqrt();
            } else {
                l[i + j * m] = v / l[j + j * m];
            }
        }
    }
    let diag_min = (0..m).map(|j| l[j + j * m]).fold(f64::INFINITY, f64::min);
    let diag_max = (0..m).map(|j| l[j + j * m]).fold(0.0, f64::max);
    if !(diag_min > 1e-8 * diag_max) {
        return None;
    }
    // z = L⁻¹ g_F, then w = L⁻ᵀ z = H_F⁻¹ g_F
    let mut w: Vec<f64> = free.iter().map(|&i| g[i]).collect();
    for i in 0..m {
        for k in 0..i {
            w[i] -= l[i + k * m] * w[k];
        }
        w[i] /= l[i + i * m];
    }
    let pred = 0.5 * dot(&w, &w);
    for i in (0..m).rev() {
        for k in i + 1..m {
            w[i] -= l[k + i * m] * w[k];
        }
        w[i] /= l[i + i * m];
    }
    let mut d = vec![0.0; n];
    for (e, &i) in free.iter().enumerate() {
        d[i] = -w[e];
    }
    Some((d, pred))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A convex quadratic ½ (x − c)ᵀ A (x − c) with its gradient.
    struct Quadratic {
        a: Vec<f64>,
        c: Vec<f64>,
    }

    impl Objective for Quadratic {
        fn value(&mut self, x: &[f64]) -> Result<f64> {
            let n = x.len();
            let d: Vec<f64> = (0..n).map(|i| x[i] - self.c[i]).collect();
            let mut v = 0.0;
            for i in 0..n {
                for j in 0..n {
                    v += 0.5 * d[i] * self.a[i + j * n] * d[j];
                }
            }
            Ok(v)
        }
        fn gradient(&mut self, x: &[f64]) -> Result<Vec<f64>> {
            let n = x.len();
            Ok((0..n)
                .map(|i| (0..n).map(|j| self.a[i + j * n] * (x[j] - self.c[j])).sum())
                .collect())
        }
    }

    const SET: QnSettings = QnSettings {
        ftol_abs: 1e-14,
        ftol_rel: 0.0,
        xtol_abs: 1e-10,
        maxeval: 200,
        initial_step: 0.75,
    };

    #[test]
    fn an_interior_minimum() {
        let mut q = Quadratic {
            a: vec![4.0, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 2.0],
            c: vec![0.3, -1.2, 2.0],
        };
        let r = minimize(
            &mut q,
            &[1.0, 0.0, 1.0],
            &[f64::NEG_INFINITY; 3],
            &SET,
            None,
        )
        .unwrap();
        assert_eq!(r.stop, QnStop::Converged);
        for (x, c) in r.theta.iter().zip(&q.c) {
            assert!((x - c).abs() < 1e-6, "{:?}", r.theta);
        }
        assert_eq!(r.log.len(), r.feval);
    }

    #[test]
    fn a_minimum_on_the_bound() {
        // the unconstrained minimum has x0 < 0: the bound holds x0 at 0, and
        // x1 minimizes the quadratic with x0 = 0 (x1 = c1 − a01 (0 − c0) / a11)
        let mut q = Quadratic {
            a: vec![2.0, 0.5, 0.5, 1.0],
            c: vec![-1.0, 1.0],
        };
        let r = minimize(&mut q, &[1.0, 1.0], &[0.0, f64::NEG_INFINITY], &SET, None).unwrap();
        assert_eq!(r.theta[0], 0.0);
        assert!(
            (r.theta[1] - (1.0 - 0.5 * 1.0 / 1.0)).abs() < 1e-6,
            "{:?}",
            r.theta
        );
        assert!(r.gradient[0] > 0.0);
    }

    #[test]
    fn a_first_trial_is_taken_when_lower_and_theta_is_pinned_down() {
        let a = vec![4.0, 1.0, 0.0, 1.0, 3.0, 0.5, 0.0, 0.5, 2.0];
        let (c, free) = (vec![0.3, -1.2, 2.0], [f64::NEG_INFINITY; 3]);
        let mut q = Quadratic { a, c: c.clone() };
        let run = |q: &mut Quadratic, t: FirstTrial| minimize(q, &[1.0, 0.0, 1.0], &free, &SET, t);
        let plain = run(&mut q, None).unwrap();
        let near = run(&mut q, Some(vec![0.31, -1.19, 2.01])).unwrap();
        let worse = run(&mut q, Some(vec![9.0, 9.0, 9.0])).unwrap();
        // from the trial, the Hessian by differences: Newton's step, then the gradient's
        assert!(near.feval < plain.feval && near.log[1].0 == [0.31, -1.19, 2.01]);
        assert!(worse.log[1].1 > worse.log[0].1);
        for r in [&plain, &near, &worse] {
            for (x, c) in r.theta.iter().zip(&c) {
                assert!((x - c).abs() < 1e-9, "{:?}", r.theta);
            }
        }
    }

    #[test]
    fn the_evaluation_budget_is_kept() {
        let mut q = Quadratic {
            a: vec![100.0, 0.0, 0.0, 0.01],
            c: vec![3.0, -4.0],
        };
        let set = QnSettings { maxeval: 4, ..SET };
        let r = minimize(&mut q, &[0.0, 0.0], &[f64::NEG_INFINITY; 2], &set, None).unwrap();
        assert!(r.feval <= 4);
        assert_eq!(r.stop, QnStop::MaxEval);
    }
}
