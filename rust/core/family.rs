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
    /// η = 1/μ², the inverse Gaussian's canonical link (R's `"1/mu^2"`).
    InverseSquare,
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
    /// Inverse Gaussian, V(μ) = μ³, with a dispersion (as Gamma's).
    InverseGaussian,
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
            "1/mu^2" => Self::InverseSquare,
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
            Self::InverseSquare => 1.0 / eta.sqrt(),
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
            Self::InverseSquare => -0.5 / (eta * eta.sqrt()),
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
    /// Parses R's name of a family (`binomial`, `poisson`, `Gamma`,
    /// `inverse.gaussian`).
    pub fn from_name(name: &str) -> Result<Self> {
        Ok(match name {
            "binomial" => Self::Binomial,
            "poisson" => Self::Poisson,
            "Gamma" => Self::Gamma,
            "inverse.gaussian" => Self::InverseGaussian,
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
            Self::InverseGaussian => mu * mu * mu,
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
            Self::InverseGaussian => wt * (y - mu) * (y - mu) / (y * mu * mu),
        }
    }

    /// lme4's `aic(μ)` minus the deviance, where that depends on μ: for
    /// Gamma, −2 Σ wᵢ log dgamma(yᵢ; 1/φ, μᵢφ) + 2 − Σ dᵢ with the dispersion
    /// φ = Σ dᵢ / Σ wᵢ; for the inverse Gaussian (R's `inverse.gaussian()$aic`,
    /// lme4's `inverseGaussianDist::aic`) Σ wᵢ (log(2πφ) + 1) + 3 Σ wᵢ log yᵢ +
    /// 2 − Σ dᵢ; for the negative binomial, lme4's aic − Σ dᵢ. 0 for
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
            Self::InverseGaussian => {
                let wsum: f64 = wt.iter().sum();
                let ly: f64 = y.iter().zip(wt).map(|(&y, &w)| w * y.ln()).sum();
                wsum * ((dev / wsum * 2.0 * std::f64::consts::PI).ln() + 1.0) + 3.0 * ly + 2.0 - dev
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_square_link_inverts_and_differentiates() {
        let l = Link::from_name("1/mu^2").unwrap();
        for &mu in &[0.3, 1.0, 2.5] {
            let eta = 1.0 / (mu * mu);
            assert!((l.inv(eta) - mu).abs() < 1e-14 * mu);
            let h = 1e-6 * eta;
            let num = (l.inv(eta + h) - l.inv(eta - h)) / (2.0 * h);
            assert!((l.mu_eta(eta) - num).abs() < 1e-6 * num.abs());
        }
    }

    #[test]
    fn inverse_gaussian_deviance_and_aic() {
        let d = Distribution::from_name("inverse.gaussian").unwrap();
        assert_eq!(d.variance(2.0), 8.0);
        // R: inverse.gaussian()$dev.resids(2, 1.5, 3) = 3 * 0.25 / (2 * 2.25)
        assert!((d.dev_resid(2.0, 1.5, 3.0) - 0.75 / 4.5).abs() < 1e-15);
        // R: y = c(1, 2), mu = c(1.5, 1.5), wt = 1: inverse.gaussian()$aic(y, 1, mu, 1, dev)
        // with dev = sum(dev.resids) = 0.25/2.25 + 0.25/4.5
        let (y, mu, wt) = ([1.0, 2.0], [1.5, 1.5], [1.0, 1.0]);
        let dev = 0.25 / 2.25 + 0.25 / 4.5;
        let aic =
            2.0 * ((dev / 2.0 * 2.0 * std::f64::consts::PI).ln() + 1.0) + 3.0 * 2.0_f64.ln() + 2.0;
        assert!((d.aic_minus_deviance(&y, &mu, &wt, dev) - (aic - dev)).abs() < 1e-13);
    }
}
