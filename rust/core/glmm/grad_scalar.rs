//! The exact gradient (`grad.rs`) for one or two scalar terms in two passes
//! over the rows, in parallel chunks for large n.
//!
//! With z̃ᵢ = (λ₁z₁ᵢ, λ₂z₂ᵢ) the row's two entries of ZΛ and m₁₁, m₁₂, m₂₂
//! the entries of M⁻¹ at its levels, gᵢ = M⁻¹z̃ᵢ has the two entries
//! (m₁₁z̃₁ + m₁₂z̃₂, m₁₂z̃₁ + m₂₂z̃₂) and hᵢ = z̃ᵢᵀgᵢ. The first pass sums
//! ΛᵀZᵀa and Xᵀa (the adjoint's right side), ZᵀD' and per term Σ wᵢzᵢgᵢ;
//! the second, after the solve, forms rᵢ = D'ᵢ + aᵢ − wᵢ(ZΛv_u + Xv_β)ᵢ and
//! sums Zᵀr and Xᵀr. Each pass recomputes the row's (D', w, w') from η
//! rather than keeping n-vectors. The chunk sums are added in chunk order
//! (chunks depend on n alone): the result does not depend on the number of
//! threads.

use rayon::prelude::*;

use super::fused::{ScalarRows, TermCols};
use super::grad::{logit_mu_derivs, poisson_mu_derivs, RowDerivs};
use super::minv::MinvA;
use super::Glmm;
use crate::core::family::{Distribution, Link};

/// Sums `f(r0, r1, acc)` over the chunks of rows into one vector of `len`
/// (chunks in parallel, added in order).
fn chunk_sums(
    bounds: &[usize],
    len: usize,
    f: impl Fn(usize, usize, &mut [f64]) + Sync,
) -> Vec<f64> {
    let nc = bounds.len() - 1;
    let mut parts = vec![vec![0.0; len]; nc];
    if nc == 1 {
        f(bounds[0], bounds[1], &mut parts[0]);
    } else {
        parts
            .par_iter_mut()
            .enumerate()
            .for_each(|(c, acc)| f(bounds[c], bounds[c + 1], acc));
    }
    let mut it = parts.into_iter();
    let mut out = it.next().unwrap_or_default();
    for part in it {
        out.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
    }
    out
}

/// X's columns up to which pass sums of X's rows stay in registers.
const LOCAL_P: usize = 16;

/// K sums at one level over consecutive rows, added into `acc` at
/// `at[k] + level` when the level changes (as `fused.rs`'s `Run`: rows
/// sorted by a factor would otherwise add into the same places row after
/// row, each addition waiting for the last one's store).
struct LevelRun<const K: usize> {
    level: usize,
    s: [f64; K],
}

impl<const K: usize> Default for LevelRun<K> {
    fn default() -> Self {
        Self {
            level: 0,
            s: [0.0; K],
        }
    }
}

impl<const K: usize> LevelRun<K> {
    #[inline(always)]
    fn add(&mut self, level: usize, v: [f64; K], acc: &mut [f64], at: [usize; K]) {
        if level != self.level {
            self.flush(acc, at);
            self.level = level;
        }
        for (s, v) in self.s.iter_mut().zip(v) {
            *s += v;
        }
    }

    #[inline(always)]
    fn flush(&mut self, acc: &mut [f64], at: [usize; K]) {
        for (s, a) in self.s.iter_mut().zip(at) {
            acc[a + self.level] += *s;
            *s = 0.0;
        }
    }
}

impl Glmm {
    /// The gradient of the last evaluation's objective for one or two
    /// scalar terms (see `gradient`).
    pub(super) fn gradient_scalar(&self, sr: &ScalarRows, derivs: RowDerivs) -> Vec<f64> {
        let (eta, y, prior, mu) = (&self.eta, &self.y, &self.prior, &sr.mu);
        // from μ of the last pass when it was at the modes (no exponential)
        let at_modes = sr.mu_at_modes && mu.len() == self.n();
        match (self.family.dist, self.family.link, at_modes) {
            (Distribution::Binomial, Link::Logit, true) => {
                self.gradient_scalar_by(sr, |i| logit_mu_derivs(mu[i], y[i], prior[i]))
            }
            (Distribution::Poisson, Link::Log, true) => {
                self.gradient_scalar_by(sr, |i| poisson_mu_derivs(mu[i], y[i], prior[i]))
            }
            _ => self.gradient_scalar_by(sr, |i| derivs(eta[i], y[i], prior[i])),
        }
    }

    /// The gradient with the rows' (D', w, w') from `derivs`.
    fn gradient_scalar_by<D>(&self, sr: &ScalarRows, derivs: D) -> Vec<f64>
    where
        D: Fn(usize) -> (f64, f64, f64) + Sync,
    {
        let (n, p, q) = (self.n(), self.p(), self.q());
        let ws = &self.ws;
        let minv = MinvA::new(ws);
        let block0 = ws.factor().order().block0().first().copied().unwrap_or(0);
        let (f, other) = (sr.first().cols(ws), sr.other().map(|o| o.cols(ws)));
        let lf = self.templates[f.term][0];
        let lr = other.map_or(0.0, |r| self.templates[r.term][0]);
        let x = ws.rows().x();
        // per row: (D', w, a, g₁, g₂, level offsets)
        let row = |i: usize| {
            let (d1, w, wp) = derivs(i);
            let (c1, zt1) = (f.codes[i] as usize, lf * f.z[i]);
            let m11 = minv.f_diag[c1];
            let (mut g1, mut g2, mut zt2, mut c2) = (m11 * zt1, 0.0, 0.0, 0);
            if let Some(r) = other {
                c2 = r.codes[i] as usize;
                zt2 = lr * r.z[i];
                let m12 = minv.f_rest[sr.slots()[i]];
                let m22 = minv.rest_diag[minv.rest_off[block0 + c2]];
                g1 += m12 * zt2;
                g2 = m12 * zt1 + m22 * zt2;
            }
            let h = zt1 * g1 + zt2 * g2;
            (
                d1,
                w,
                wp * h,
                g1,
                g2,
                f.offset + c1,
                c2 + other.map_or(0, |r| r.offset),
            )
        };
        // pass 1: [ΛᵀZᵀa (q), ZᵀD' (q), Xᵀa (p), Σ w z₁ g₁, Σ w z₂ g₂]; the sums
        // every row adds into (Xᵀa, Σ w z g) in registers, not in `acc`, where
        // each addition would wait for the last one's store
        let (ztd0, xa0, gs0) = (q, 2 * q, 2 * q + p);
        let fast = self.fast;
        let s1 = chunk_sums(&sr.bounds, 2 * q + p + 2, |r0, r1, acc| {
            let (mut gs, mut xa) = ([0.0; 2], [0.0; LOCAL_P]);
            let mut runs = [LevelRun::<2>::default(), LevelRun::default()];
            for i in r0..r1 {
                let (d1, w, a, g1, g2, c1, c2) = row(i);
                let z1 = f.z[i];
                runs[0].add(c1, [lf * z1 * a, z1 * d1], acc, [0, ztd0]);
                gs[0] += w * z1 * g1;
                if let Some(r) = other {
                    let z2 = r.z[i];
                    runs[1].add(c2, [lr * z2 * a, z2 * d1], acc, [0, ztd0]);
                    gs[1] += w * z2 * g2;
                }
                if fast && p <= LOCAL_P {
                    for (j, s) in xa[..p].iter_mut().enumerate() {
                        *s += x[j * n + i] * a;
                    }
                } else if fast {
                    for j in 0..p {
                        acc[xa0 + j] += x[j * n + i] * a;
                    }
                }
            }
            runs.iter_mut().for_each(|r| r.flush(acc, [0, ztd0]));
            if fast && p <= LOCAL_P {
                acc[xa0..xa0 + p].copy_from_slice(&xa[..p]);
            }
            acc[gs0..gs0 + 2].copy_from_slice(&gs);
        });
        let (v_u, v_b) = if fast {
            self.joint_solve(&s1[..q], &s1[xa0..xa0 + p])
        } else {
            let mut v = s1[..q].to_vec();
            ws.factor()
                .solve(faer::MatMut::from_column_major_slice_mut(&mut v, q, 1));
            (v, vec![0.0; p])
        };
        // pass 2: [Zᵀr (q), Xᵀr (p)]
        let s2 = chunk_sums(&sr.bounds, q + p, |r0, r1, acc| {
            let mut xr = [0.0; LOCAL_P];
            let mut runs = [LevelRun::<1>::default(), LevelRun::default()];
            for i in r0..r1 {
                let (d1, w, a, _, _, c1, c2) = row(i);
                let z1 = f.z[i];
                let mut zlv = z1 * lf * v_u[c1];
                if let Some(r) = other {
                    zlv += r.z[i] * lr * v_u[c2];
                }
                if fast {
                    for (j, &vb) in v_b.iter().enumerate() {
                        zlv += x[j * n + i] * vb;
                    }
                }
                let rv = d1 + a - w * zlv;
                runs[0].add(c1, [z1 * rv], acc, [0]);
                if let Some(r) = other {
                    runs[1].add(c2, [r.z[i] * rv], acc, [0]);
                }
                if !fast && p <= LOCAL_P {
                    for (j, s) in xr[..p].iter_mut().enumerate() {
                        *s += x[j * n + i] * rv;
                    }
                } else if !fast {
                    for j in 0..p {
                        acc[q + j] += x[j * n + i] * rv;
                    }
                }
            }
            runs.iter_mut().for_each(|r| r.flush(acc, [0]));
            if !fast && p <= LOCAL_P {
                acc[q..q + p].copy_from_slice(&xr[..p]);
            }
        });
        let theta_grad = |s: &TermCols, gsum: f64, lay_n: usize| {
            let mut sum = 2.0 * gsum;
            for l in s.offset..s.offset + lay_n {
                sum += s2[l] * self.u[l] - 0.5 * s1[ztd0 + l] * v_u[l];
            }
            sum
        };
        let layout = ws.terms().layout();
        let mut grad = vec![0.0; ws.n_theta()];
        grad[f.term] = theta_grad(&f, s1[gs0], layout[f.term].n_levels);
        if let Some(r) = &other {
            grad[r.term] = theta_grad(r, s1[gs0 + 1], layout[r.term].n_levels);
        }
        if !self.fast {
            grad.extend_from_slice(&s2[q..q + p]);
        }
        grad
    }
}
