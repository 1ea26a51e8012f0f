//! PIRLS and the Laplace objective against dense oracles: at the modes the
//! gradient of the penalized deviance vanishes (formed densely from ZΛ), and
//! the objective is Σ dᵢ + ‖û‖² + log det(ΛᵀZᵀWZΛ + I) with W formed densely.

use super::*;
use crate::core::{Distribution, Family, Glmm, Link};

/// A problem of [`design`] with a binomial (proportions of 1..4 trials) or
/// a Poisson response drawn from its linear predictor.
fn glmm_problem(dist: Distribution, seed: u64) -> (Problem, Vec<f64>) {
    let specs = [crossed(6, 2), crossed(9, 1)];
    let mut pr = design(80, seed, &specs);
    let mut rng = Lcg(seed + 1);
    let mut trials = vec![1.0; pr.n];
    for i in 0..pr.n {
        let eta = 0.3 * pr.x[pr.n + i] + 0.5 * (rng.next() - 0.5);
        match dist {
            Distribution::Binomial => {
                let m = 1.0 + (rng.next() * 4.0).floor();
                let p = 1.0 / (1.0 + (-eta).exp());
                let k = (0..m as usize).filter(|_| rng.next() < p).count() as f64;
                trials[i] = m;
                pr.y[i] = k / m;
            }
            Distribution::Poisson | Distribution::NegativeBinomial(_) => {
                pr.y[i] = (eta.exp() * 3.0 * rng.next()).round()
            }
            Distribution::Gamma | Distribution::InverseGaussian => {
                pr.y[i] = eta.exp() * (0.2 + 2.0 * rng.next())
            }
        }
    }
    (pr, trials)
}

fn check(dist: Distribution, link: Link, seed: u64) {
    let (pr, trials) = glmm_problem(dist, seed);
    let fam = Family::new(dist, link);
    let (n, p) = (pr.n, pr.p);
    let eta0 = vec![0.1; n];
    let mut g = Glmm::new(
        n,
        p,
        pr.x.clone(),
        pr.y.clone(),
        Some(trials.clone()),
        None,
        pr.terms.clone(),
        fam,
        eta0,
    )
    .unwrap();
    let theta = [0.8, 0.2, 0.5, 0.6];
    let beta = [0.2, 0.1];
    let r = g.laplace(&theta, &beta).unwrap();
    let zl = dense_zl(&pr, &theta);
    let q = zl.ncols();
    let u = g.u().to_vec();
    // η = Xβ + ZΛu
    let eta: Vec<f64> = (0..n)
        .map(|i| {
            let xb = pr.x[i] * beta[0] + pr.x[n + i] * beta[1];
            xb + (0..q).map(|j| zl[(i, j)] * u[j]).sum::<f64>()
        })
        .collect();
    for (a, b) in eta.iter().zip(g.eta()) {
        assert!((a - b).abs() < 1e-12);
    }
    // the modes: ∂/∂u of (Σ dᵢ + ‖u‖²)/2 = −(ZΛ)ᵀ [wt (y − μ) μ'/V] + u = 0
    let score: Vec<f64> = (0..n)
        .map(|i| {
            let mu = link.inv(eta[i]);
            trials[i] * (pr.y[i] - mu) * link.mu_eta(eta[i]) / dist.variance(mu)
        })
        .collect();
    for j in 0..q {
        let gj = u[j] - (0..n).map(|i| zl[(i, j)] * score[i]).sum::<f64>();
        assert!(gj.abs() < 1e-8, "gradient {gj} at mode {j}");
    }
    // the objective, with W at the modes, formed densely
    let w: Vec<f64> = (0..n)
        .map(|i| {
            let (mu, d) = (link.inv(eta[i]), link.mu_eta(eta[i]));
            trials[i] * d * d / dist.variance(mu)
        })
        .collect();
    let m = Mat::<f64>::from_fn(q, q, |a, b| {
        let s: f64 = (0..n).map(|i| zl[(i, a)] * w[i] * zl[(i, b)]).sum();
        s + if a == b { 1.0 } else { 0.0 }
    });
    let llt = m.llt(Side::Lower).unwrap();
    let ld: f64 = 2.0 * (0..q).map(|i| llt.L()[(i, i)].ln()).sum::<f64>();
    let dev: f64 = (0..n)
        .map(|i| dist.dev_resid(pr.y[i], link.inv(eta[i]), trials[i]))
        .sum();
    let sqr_u: f64 = u.iter().map(|v| v * v).sum();
    let mu: Vec<f64> = eta.iter().map(|&e| link.inv(e)).collect();
    let want = dev + sqr_u + ld + dist.aic_minus_deviance(&pr.y, &mu, &trials, dev);
    assert!(
        (r.laplace() - want).abs() < 1e-9 * want.abs(),
        "{} vs {want}",
        r.laplace()
    );
    // a warm start from elsewhere gives the same value
    g.laplace(&[0.3, -0.4, 0.9, 0.2], &[-0.5, 0.4]).unwrap();
    let again = g.laplace(&theta, &beta).unwrap();
    assert!((again.laplace() - r.laplace()).abs() < 1e-10 * want.abs());
}

#[test]
fn binomial_logit_modes_and_laplace_match_dense() {
    check(Distribution::Binomial, Link::Logit, 11);
}

#[test]
fn binomial_probit_and_cloglog_modes_and_laplace_match_dense() {
    check(Distribution::Binomial, Link::Probit, 12);
    check(Distribution::Binomial, Link::Cloglog, 13);
}

#[test]
fn poisson_log_modes_and_laplace_match_dense() {
    check(Distribution::Poisson, Link::Log, 14);
}

#[test]
fn negative_binomial_modes_and_laplace_match_dense() {
    check(Distribution::NegativeBinomial(1.5), Link::Log, 16);
}

#[test]
fn gamma_log_modes_and_laplace_match_dense() {
    check(Distribution::Gamma, Link::Log, 15);
}

#[test]
fn inverse_gaussian_log_modes_and_laplace_match_dense() {
    check(Distribution::InverseGaussian, Link::Log, 17);
}

/// Gamma's dispersion term against R's dgamma written out: −2 Σ log dgamma(y; 1/φ, μφ) + 2.
#[test]
fn gamma_aic_matches_the_density() {
    let (y, mu, wt) = ([0.5, 2.0, 3.5], [1.0, 1.5, 3.0], [1.0, 1.0, 1.0]);
    let d = Distribution::Gamma;
    let dev: f64 = (0..3).map(|i| d.dev_resid(y[i], mu[i], wt[i])).sum();
    let phi = dev / 3.0;
    let (a, ln_gamma_a) = (1.0 / phi, libm::lgamma(1.0 / phi));
    let ll: f64 = (0..3)
        .map(|i| {
            let s = mu[i] * phi;
            -ln_gamma_a - a * s.ln() + (a - 1.0) * y[i].ln() - y[i] / s
        })
        .sum();
    let got = d.aic_minus_deviance(&y, &mu, &wt, dev) + dev;
    assert!((got - (-2.0 * ll + 2.0)).abs() < 1e-12 * got.abs());
}

/// nAGQ = 0: β from PIRLS is where the penalized deviance is stationary in β too.
#[test]
fn fast_mode_beta_is_stationary() {
    let (pr, trials) = glmm_problem(Distribution::Binomial, 21);
    let (n, p) = (pr.n, pr.p);
    let fam = Family::new(Distribution::Binomial, Link::Logit);
    let mut g = Glmm::new(
        n,
        p,
        pr.x.clone(),
        pr.y.clone(),
        Some(trials.clone()),
        None,
        pr.terms.clone(),
        fam,
        vec![0.0; n],
    )
    .unwrap();
    g.laplace_beta(&[0.8, 0.2, 0.5, 0.6]).unwrap();
    let eta = g.eta().to_vec();
    for j in 0..p {
        let s: f64 = (0..n)
            .map(|i| pr.x[i + j * n] * trials[i] * (pr.y[i] - fam.link.inv(eta[i])))
            .sum();
        assert!(s.abs() < 1e-8, "score {s} for beta {j}");
    }
}
