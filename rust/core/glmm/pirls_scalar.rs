//! PIRLS (see `Glmm::pirls`) for one or two scalar terms with one pass
//! over the rows per iteration (`fused.rs`): the pass at a candidate gives
//! its penalized deviance for the step-halving test and, when the candidate
//! is taken, the next iteration's system.

use super::fused::{EtaFrom, ScalarRows};
use super::{rel_step, Glmm, Pirls, ROUNDING_STEP, SMALL_STEP};
use crate::core::error::{CoreError, Result};

impl Glmm {
    /// PIRLS (see `Glmm::pirls`) with one pass over the rows per iteration.
    pub(super) fn pirls_scalar(
        &mut self,
        sr: &mut ScalarRows,
        theta: &[f64],
        with_beta: bool,
    ) -> Result<Pirls> {
        let mut out = Pirls::default();
        if with_beta && !self.have_beta {
            // the first step from the family's starting means
            let eta0 = std::mem::take(&mut self.eta_start);
            self.fused_pass(sr, EtaFrom::Given(&eta0));
            self.eta_start = eta0;
            self.fused_commit(sr, theta, true)?;
            out.iterations += 1;
            let (b, u) = self.ws.beta_u();
            self.beta = b;
            self.u = u;
            self.have_beta = true;
        }
        let mut beta = self.beta.clone();
        let mut u = self.u.clone();
        let sqr = |u: &[f64]| u.iter().map(|v| v * v).sum::<f64>();
        let mut dev = self.fused_pass(
            sr,
            EtaFrom::Modes {
                beta: &beta,
                u: &u,
                with_beta,
            },
        );
        let mut pdev = dev + sqr(&u);
        if !pdev.is_finite() {
            return Err(CoreError::Pirls(format!(
                "the penalized deviance is not finite at the start ({pdev})"
            )));
        }
        let mut min_step = f64::INFINITY;
        let tol = self.pirls_tol(with_beta);
        for _ in 0..self.max_iter {
            let ld_l2 = self.fused_commit(sr, theta, with_beta)?;
            out.iterations += 1;
            let (beta_new, u_new) = if with_beta {
                self.ws.beta_u()
            } else {
                (beta.clone(), self.ws.u_of_response())
            };
            let step = rel_step(&u, &u_new).max(rel_step(&beta, &beta_new));
            if step < tol || (step < ROUNDING_STEP && step >= min_step) {
                // the last pass was at these modes
                sr.mu_at_modes = true;
                self.fused_set_eta(sr, (&beta, &u), with_beta, &mut []);
                out.deviance = dev;
                out.scale_term = self.scale_term(dev);
                out.sqr_u = sqr(&u);
                out.ld_l2 = ld_l2;
                self.u = u;
                self.beta = beta;
                return Ok(out);
            }
            min_step = min_step.min(step);
            let (mut s, mut halvings) = (1.0, 0);
            loop {
                let uc: Vec<f64> = u.iter().zip(&u_new).map(|(a, b)| a + s * (b - a)).collect();
                let bc: Vec<f64> = if with_beta {
                    beta.iter()
                        .zip(&beta_new)
                        .map(|(a, b)| a + s * (b - a))
                        .collect()
                } else {
                    beta.clone()
                };
                let from = EtaFrom::Modes {
                    beta: &bc,
                    u: &uc,
                    with_beta,
                };
                let dc = self.fused_pass(sr, from);
                let pc = dc + sqr(&uc);
                if pc <= pdev || (step < SMALL_STEP && pc.is_finite()) {
                    (u, beta, dev, pdev) = (uc, bc, dc, pc);
                    break;
                }
                halvings += 1;
                out.halvings += 1;
                self.check_halvings(halvings, pdev)?;
                s *= 0.5;
            }
        }
        Err(self.not_converged(with_beta, pdev))
    }
}
