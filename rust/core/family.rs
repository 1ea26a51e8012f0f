//! GLM families and links for the generalized linear mixed model (`glmm`):
//! the per-row functions of PIRLS, as lme4's `glmFamily.cpp` computes them.
//!
//! A link maps the mean μ to the linear predictor η = g(μ); PIRLS needs its
//! inverse μ = g⁻¹(η) and dμ/dη. A distribution gives the variance function
//! V(μ) and the deviance residuals dᵢ(yᵢ, μᵢ, wᵢ) (R's `dev.resids`), whose
//! sum is the deviance. lme4's clamps are kept (μ within [ε, 1 − ε] for the
//! binomial links, dμ/dη and V(μ) at least ε, ε = `f64::EPSILON`), so that
//! the numbers match lme4's where the clamps act.
//!
//! The likelihood's constant (the binomial coefficients, log yᵢ! for
//! Poisson) does not depend on μ: the core works with the deviance and the
//! Python side adds the constant where lme4 reports −2 log L.

use super::error::{CoreError, Result};

const EPS: f64 = f64::EPSILON;

/// A link function g: η = g(μ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Link {
    Logit,
    Probit,
    Cloglog,
    Cauchit,
    Log,
    Identity,
    Sqrt,
    Inverse,
}

/// The distribution of the response given the random effects.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Distribution {
    /// Binomial: y a proportion, the prior weights the numbers of trials.
    Binomial,
    Poisson,
    /// Gamma, with a dispersion (lme4's: the deviance over Σ wᵢ in −2 log L).
    Gamma,
    /// Negative binomial with a given shape θ (MASS's `negative.binomial(θ)`):
    /// V(μ) = μ + μ²/θ.
    NegativeBinomial(f64),
}

/// A family: a distribution with a link.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Family {
    pub dist: Distribution,
    pub link: Link,
}

/// The standard normal density.
fn dnorm(x: f64) -> f64 {
    (-0.5 * x * x).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

/// The standard normal distribution function (accurate in both tails).
fn pnorm(x: f64) -> f64 {
    0.5 * libm::erfc(-x / std::f64::consts::SQRT_2)
}

/// The standard logistic distribution function and density (R's `plogis`
/// and `dlogis`) from one exponential.
#[inline]
fn plogis_dlogis(x: f64) -> (f64, f64) {
    let e = (-x.abs()).exp();
    let d = 1.0 + e;
    let p = if x >= 0.0 { 1.0 / d } else { e / d };
    (p, e / (d * d))
}

impl Link {
    /// Parses R's name of a link.
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "logit" => Self::Logit,
            "probit" => Self::Probit,
            "cloglog" => Self::Cloglog,
            "cauchit" => Self::Cauchit,
            "log" => Self::Log,
            "identity" => Self::Identity,
            "sqrt" => Self::Sqrt,
            "inverse" => Self::Inverse,
            _ => return Err(CoreError::Dimension(format!("unknown link {name:?}"))),
        })
    }

    /// μ = g⁻¹(η).
    #[inline]
    pub fn inv(self, eta: f64) -> f64 {
        match self {
            Self::Logit => plogis_dlogis(eta).0.min(1.0 - EPS),
            Self::Probit => pnorm(eta).min(1.0 - EPS),
            Self::Cloglog => (-(-eta.exp()).exp_m1()).clamp(EPS, 1.0 - EPS),
            Self::Cauchit => (0.5 + eta.atan() / std::f64::consts::PI).min(1.0 - EPS),
            Self::Log => eta.exp().max(EPS),
            Self::Identity => eta,
            Self::Sqrt => eta * eta,
            Self::Inverse => 1.0 / eta,
        }
    }

    /// μ and dμ/dη at η together (one exponential for the logit).
    #[inline]
    pub fn inv_mu_eta(self, eta: f64) -> (f64, f64) {
        match self {
            Self::Logit => {
                let (p, d) = plogis_dlogis(eta);
                (p.min(1.0 - EPS), d.max(EPS))
            }
            Self::Log => {
                let e = eta.exp().max(EPS);
                (e, e)
            }
            _ => (self.inv(eta), self.mu_eta(eta)),
        }
    }

    /// dμ/dη at η.
    #[inline]
    pub fn mu_eta(self, eta: f64) -> f64 {
        match self {
            Self::Logit => plogis_dlogis(eta).1.max(EPS),
            Self::Probit => dnorm(eta),
            Self::Cloglog => (eta - eta.exp()).exp().max(EPS),
            Self::Cauchit => 1.0 / (std::f64::consts::PI * (1.0 + eta * eta)),
            Self::Log => eta.exp().max(EPS),
            Self::Identity => 1.0,
            Self::Sqrt => 2.0 * eta,
            Self::Inverse => -1.0 / (eta * eta),
        }
    }
}

/// y log(y/μ), 0 at y = 0.
#[inline]
fn y_log_y(y: f64, mu: f64) -> f64 {
    if y == 0.0 {
        0.0
    } else {
        y * (y / mu).ln()
    }
}

impl Distribution {
    /// Parses R's name of a family (`binomial`, `poisson`, `Gamma`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "binomial" => Self::Binomial,
            "poisson" => Self::Poisson,
            "Gamma" => Self::Gamma,
            _ => return Err(CoreError::Dimension(format!("unknown family {name:?}"))),
        })
    }

    /// The negative binomial family with shape `shape` (positive, finite).
    pub fn negative_binomial(shape: f64) -> Result<Self> {
        if !(shape > 0.0 && shape.is_finite()) {
            return Err(CoreError::Dimension(format!(
                "the negative binomial shape must be positive and finite, not {shape}"
            )));
        }
        Ok(Self::NegativeBinomial(shape))
    }

    /// The variance function V(μ).
    #[inline]
    pub fn variance(self, mu: f64) -> f64 {
        match self {
            Self::Binomial => (mu * (1.0 - mu)).max(EPS),
            Self::Poisson => mu,
            Self::Gamma => mu * mu,
            Self::NegativeBinomial(th) => mu + mu * mu / th,
        }
    }

    /// The deviance residual of one row (R's `dev.resids`), with prior weight `wt`.
    #[inline]
    pub fn dev_resid(self, y: f64, mu: f64, wt: f64) -> f64 {
        match self {
            Self::Binomial => 2.0 * wt * (y_log_y(y, mu) + y_log_y(1.0 - y, 1.0 - mu)),
            Self::Poisson => 2.0 * wt * (y_log_y(y, mu) - (y - mu)),
            Self::Gamma => -2.0 * wt * ((y / mu).ln() - (y - mu) / mu),
            Self::NegativeBinomial(th) => {
                2.0 * wt * (y_log_y(y, mu) - (y + th) * ((y + th) / (mu + th)).ln())
            }
        }
    }

    /// lme4's `aic(μ)` minus the deviance, where that depends on μ: for
    /// Gamma, −2 Σ wᵢ log dgamma(yᵢ; 1/φ, μᵢφ) + 2 − Σ dᵢ with the dispersion
    /// φ = Σ dᵢ / Σ wᵢ; for the negative binomial, lme4's aic − Σ dᵢ. 0 for
    /// binomial and Poisson, whose difference is a constant (added by the
    /// caller).
    pub fn aic_minus_deviance(self, y: &[f64], mu: &[f64], wt: &[f64], dev: f64) -> f64 {
        match self {
            Self::Binomial | Self::Poisson => 0.0,
            // lme4's negativeBinomialDist::aic, its weight on the first term only
            Self::NegativeBinomial(th) => {
                let c = -th * th.ln() + libm::lgamma(th);
                let aic: f64 = (0..y.len())
                    .map(|i| {
                        wt[i] * (y[i] + th) * (mu[i] + th).ln() - y[i] * mu[i].ln()
                            + libm::lgamma(y[i] + 1.0)
                            + c
                            - libm::lgamma(th + y[i])
                    })
                    .sum();
                2.0 * aic - dev
            }
            Self::Gamma => {
                let disp = dev / wt.iter().sum::<f64>();
                let shape = 1.0 / disp;
                let lg = libm::lgamma(shape);
                let ll: f64 = (0..y.len())
                    .map(|i| {
                        let scale = mu[i] * disp;
                        wt[i]
                            * (-lg - shape * scale.ln() + (shape - 1.0) * y[i].ln() - y[i] / scale)
                    })
                    .sum();
                -2.0 * ll + 2.0 - dev
            }
        }
    }
}

impl Family {
    pub fn new(dist: Distribution, link: Link) -> Self {
        Self { dist, link }
    }

    /// Per row at η: μ, the working weight w = wt (dμ/dη)²/V(μ) and the
    /// working residual (y − μ)/(dμ/dη), into the given slices.
    pub fn working(
        &self,
        eta: &[f64],
        y: &[f64],
        prior: &[f64],
        weight: &mut [f64],
        resid: &mut [f64],
    ) {
        for i in 0..eta.len() {
            let (mu, d) = self.link.inv_mu_eta(eta[i]);
            weight[i] = prior[i] * d * d / self.dist.variance(mu);
            resid[i] = (y[i] - mu) / d;
        }
    }

    /// Σ dᵢ: the deviance at η.
    pub fn deviance(&self, eta: &[f64], y: &[f64], prior: &[f64]) -> f64 {
        eta.iter()
            .zip(y)
            .zip(prior)
            .map(|((&e, &y), &w)| self.dist.dev_resid(y, self.link.inv(e), w))
            .sum()
    }
}
