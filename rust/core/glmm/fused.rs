//! PIRLS's per-row work in one pass, for models with one or two scalar
//! random-effects terms (random intercepts, crossed or nested, and the like).
//!
//! At η, one pass over the rows computes μ, the working weight and response
//! and adds each row's products straight into A's blocks (the first term's
//! diagonal, the other term's diagonal, their cross-products at the row's
//! offset in A21's layout, Z̃ᵀỹ, and with β inside PIRLS Z̃ᵀX̃ and
//! [X̃ ỹ]ᵀ[X̃ ỹ]): the general fill's several passes, copies and square roots
//! become one. η for a step is likewise one pass. The sums are the general
//! fill's, in another order (equal to rounding).

use super::minv::row_slots;
use super::Glmm;
use crate::core::error::{CoreError, Result};
use crate::core::workspace::Workspace;

/// One scalar term: its first random effect (lme4's order), codes and z.
#[derive(Clone)]
struct Scalar {
    term: usize,
    offset: usize,
    codes: Vec<u32>,
    z: Vec<f64>,
}

/// The rows of a model with one or two scalar terms, in block order.
#[derive(Clone)]
pub(super) struct ScalarRows {
    first: Scalar,
    other: Option<Scalar>,
    /// Per row, the offset of its (first, other) block in A21's layout.
    slots: Vec<usize>,
}

impl ScalarRows {
    /// None unless every term is scalar and there are at most two.
    pub fn new(ws: &Workspace) -> Option<Self> {
        let tt = ws.terms().terms();
        if tt.len() > 2 || tt.iter().any(|t| t.k != 1) {
            return None;
        }
        let layout = ws.layout();
        let order = ws.factor().order();
        let make = |t: usize| Scalar {
            term: t,
            offset: layout[t].offset,
            codes: tt[t].codes.clone(),
            z: tt[t].z.clone(),
        };
        let other = order.rest_terms().first().map(|&t| make(t));
        Some(Self {
            first: make(order.first()),
            slots: if other.is_some() {
                row_slots(ws)
            } else {
                vec![]
            },
            other,
        })
    }
}

impl Glmm {
    /// Xβ + o + ZΛu in one pass (Xβ formed once for the evaluation when β
    /// is fixed); None unless the model's terms are scalar.
    pub(super) fn fused_linear_predictor(
        &self,
        beta: &[f64],
        u: &[f64],
        with_beta: bool,
    ) -> Option<Vec<f64>> {
        let sr = self.scalar.as_deref()?;
        let mut base = if with_beta {
            self.linear_predictor_x(beta)
        } else {
            self.xb.clone()
        };
        base.iter_mut().zip(&self.offset).for_each(|(e, o)| *e += o);
        Some(self.fused_eta(sr, &base, u))
    }

    /// `working_step` in one pass into A; None unless the model's terms are
    /// scalar. The rows' weights and response are left stale (`at_last`
    /// refills through the general path).
    pub(super) fn fused_working_step(
        &mut self,
        theta: &[f64],
        eta: &[f64],
        with_beta: bool,
    ) -> Option<Result<f64>> {
        let sr = self.scalar.take()?;
        let filled = self.fused_fill(&sr, eta, with_beta);
        self.scalar = Some(sr);
        self.x_stale = true;
        Some(filled.and_then(|()| {
            if with_beta {
                Ok(self.ws.update(theta)?.ld_l2)
            } else {
                self.ws.refactor_at(theta)
            }
        }))
    }

    /// η = `base` + ZΛu (base: Xβ + o), in one pass.
    pub(super) fn fused_eta(&self, sr: &ScalarRows, base: &[f64], u: &[f64]) -> Vec<f64> {
        let f = &sr.first;
        let lf = self.templates[f.term][0];
        let mut eta: Vec<f64> = (0..base.len())
            .map(|i| base[i] + lf * f.z[i] * u[f.offset + f.codes[i] as usize])
            .collect();
        if let Some(r) = &sr.other {
            let lr = self.templates[r.term][0];
            for (i, e) in eta.iter_mut().enumerate() {
                *e += lr * r.z[i] * u[r.offset + r.codes[i] as usize];
            }
        }
        eta
    }

    /// Fills A at η in one pass: the working weights and response (the
    /// response less Xβ + o, or less o alone `with_x`), and with `with_x`
    /// the blocks of X.
    pub(super) fn fused_fill(&mut self, sr: &ScalarRows, eta: &[f64], with_x: bool) -> Result<()> {
        let (n, p, q) = (self.n(), self.p(), self.q());
        let fam = self.family;
        let (y, prior, offset, xb) = (&self.y, &self.prior, &self.offset, &self.xb);
        let blocks = self.ws.cross_products_mut().blocks_mut();
        let (x, a11, a21, a22d, ztxy, xyxy) = (
            blocks.x,
            blocks.a11,
            blocks.a21,
            blocks.a22d,
            blocks.ztxy,
            blocks.xyxy,
        );
        a11.fill(0.0);
        a22d.fill(0.0);
        a21.fill(0.0);
        if with_x {
            ztxy.fill(0.0);
        } else {
            ztxy[p * q..].fill(0.0);
        }
        let p1 = p + 1;
        let mut xx = vec![0.0; p1 * p1];
        let mut xr = vec![0.0; p1];
        let (f, other) = (&sr.first, sr.other.as_ref());
        let resp = p * q;
        for i in 0..n {
            let e = eta[i];
            let (mu, d) = fam.link.inv_mu_eta(e);
            let w = prior[i] * d * d / fam.dist.variance(mu);
            let mut z = e - offset[i] + (y[i] - mu) / d;
            if !with_x {
                z -= xb[i];
            }
            if !(w > 0.0 && w.is_finite()) {
                return Err(CoreError::Pirls(format!(
                    "the working weight of observation {i} is {w} (η = {e}): PIRLS cannot continue"
                )));
            }
            if !z.is_finite() {
                return Err(CoreError::Pirls(format!(
                    "the working response of observation {i} is not finite (η = {e})"
                )));
            }
            let (c1, z1) = (f.offset + f.codes[i] as usize, f.z[i]);
            let wz1 = w * z1;
            a11[f.codes[i] as usize] += wz1 * z1;
            ztxy[resp + c1] += wz1 * z;
            let second = other.map(|r| {
                let (c2, z2) = (r.offset + r.codes[i] as usize, r.z[i]);
                let wz2 = w * z2;
                a22d[r.codes[i] as usize] += wz2 * z2;
                a21[sr.slots[i]] += wz1 * z2;
                ztxy[resp + c2] += wz2 * z;
                (c2, wz2)
            });
            if with_x {
                for j in 0..p {
                    let xj = x[j * n + i];
                    ztxy[j * q + c1] += wz1 * xj;
                    if let Some((c2, wz2)) = second {
                        ztxy[j * q + c2] += wz2 * xj;
                    }
                    xr[j] = xj;
                }
                xr[p] = z;
                for j in 0..p1 {
                    let wx = w * xr[j];
                    for k in j..p1 {
                        xx[j + k * p1] += wx * xr[k];
                    }
                }
            } else {
                xx[p + p * p1] += w * z * z;
            }
        }
        for k in 0..p1 {
            for j in 0..=k {
                if with_x || j == p {
                    xyxy[(j, k)] = xx[j + k * p1];
                    xyxy[(k, j)] = xx[j + k * p1];
                }
            }
        }
        Ok(())
    }
}
