//! Adaptive Gauss-Hermite quadrature against a dense oracle: L from the dense
//! Cholesky factor of ΛᵀZᵀWZΛ + I (block diagonal for one term), the nodes
//! û + L⁻ᵀz of the tensor-product rule written out, the integrand
//! exp(−devc/2 + ‖z‖²/2) summed in the test.

use super::*;
use crate::core::{Distribution, Family, Glmm, Link};

/// The three-point Gauss-Hermite rule of the standard normal density.
fn rule3() -> (Vec<f64>, Vec<f64>) {
    let s = 3f64.sqrt();
    (vec![-s, 0.0, s], vec![1.0 / 6.0, 2.0 / 3.0, 1.0 / 6.0])
}

/// A binomial model (1..4 trials) with one term of k effects per level.
fn model(k: usize, seed: u64) -> (Problem, Vec<f64>, Glmm) {
    let mut pr = design(90, seed, &[crossed(8, k)]);
    let mut rng = Lcg(seed + 3);
    let mut trials = vec![1.0; pr.n];
    for i in 0..pr.n {
        let eta = 0.4 * pr.x[pr.n + i] + 1.2 * (rng.next() - 0.5);
        let m = 1.0 + (rng.next() * 4.0).floor();
        let p = 1.0 / (1.0 + (-eta).exp());
        trials[i] = m;
        pr.y[i] = (0..m as usize).filter(|_| rng.next() < p).count() as f64 / m;
    }
    let fam = Family::new(Distribution::Binomial, Link::Logit);
    let g = Glmm::new(
        pr.n,
        pr.p,
        pr.x.clone(),
        pr.y.clone(),
        Some(trials.clone()),
        None,
        pr.terms.clone(),
        fam,
        vec![0.0; pr.n],
    )
    .unwrap();
    (pr, trials, g)
}

/// The quadrature's value formed densely at the modes `g` found.
fn dense_agq(pr: &Problem, trials: &[f64], g: &Glmm, theta: &[f64], ld_l2: f64) -> f64 {
    let (link, dist) = (Link::Logit, Distribution::Binomial);
    let (zl, k) = (dense_zl(pr, theta), pr.terms[0].k);
    let (n, q) = (pr.n, zl.ncols());
    let (eta, u) = (g.eta().to_vec(), g.u().to_vec());
    let w: Vec<f64> = (0..n)
        .map(|i| trials[i] * link.mu_eta(eta[i]).powi(2) / dist.variance(link.inv(eta[i])))
        .collect();
    let m = Mat::<f64>::from_fn(q, q, |a, b| {
        let s: f64 = (0..n).map(|i| zl[(i, a)] * w[i] * zl[(i, b)]).sum();
        s + if a == b { 1.0 } else { 0.0 }
    });
    let llt = m.llt(Side::Lower).unwrap();
    let l = llt.L();
    let (nodes, weights) = rule3();
    let levels = pr.terms[0].n_levels;
    // devc_j(u) for the whole u: per level ‖u_j‖² + Σ_{i in j} dᵢ
    let devc = |uu: &[f64]| -> Vec<f64> {
        let mut out: Vec<f64> = (0..levels)
            .map(|j| uu[j * k..(j + 1) * k].iter().map(|v| v * v).sum())
            .collect();
        for i in 0..n {
            let e = eta[i] + (0..q).map(|c| zl[(i, c)] * (uu[c] - u[c])).sum::<f64>();
            out[pr.terms[0].codes[i] as usize] += dist.dev_resid(pr.y[i], link.inv(e), trials[i]);
        }
        out
    };
    let devc0 = devc(&u);
    let mut mult = vec![0.0; levels];
    for t in 0..3usize.pow(k as u32) {
        // node t's coordinates, the same in every level
        let idx: Vec<usize> = (0..k).map(|d| t / 3usize.pow(d as u32) % 3).collect();
        let z: Vec<f64> = idx.iter().map(|&i| nodes[i]).collect();
        let wt: f64 = idx.iter().map(|&i| weights[i]).product();
        // u = û + L⁻ᵀ z in every level at once (L⁻ᵀ is block diagonal)
        let mut x = vec![0.0; q];
        for r in (0..q).rev() {
            let s: f64 = (r + 1..q).map(|i| l[(i, r)] * x[i]).sum();
            x[r] = (z[r % k] - s) / l[(r, r)];
        }
        let un: Vec<f64> = (0..q).map(|r| u[r] + x[r]).collect();
        let half_sq: f64 = z.iter().map(|v| v * v).sum::<f64>() / 2.0;
        for (j, d) in devc(&un).iter().enumerate() {
            mult[j] += wt * (-0.5 * (d - devc0[j]) + half_sq).exp();
        }
    }
    devc0.iter().sum::<f64>() + ld_l2 - 2.0 * mult.iter().map(|m| m.ln()).sum::<f64>()
}

#[test]
fn quadrature_matches_the_dense_oracle_for_one_to_three_effects() {
    for (k, theta) in [
        (1, vec![0.9]),
        (2, vec![0.9, -0.3, 0.5]),
        (3, vec![0.8, 0.2, -0.1, 0.6, 0.3, 0.4]),
    ] {
        let (pr, trials, mut g) = model(k, 11 + k as u64);
        let beta = [0.1, 0.3];
        let (nodes, weights) = rule3();
        let (value, run) = g.agq(&theta, &beta, &nodes, &weights).unwrap();
        let want = dense_agq(&pr, &trials, &g, &theta, run.ld_l2);
        assert!(
            (value - want).abs() < 1e-11 * want,
            "k = {k}: {value} vs {want}"
        );
        // the quadrature differs from the Laplace approximation, which is one node
        let (one, _) = g.agq(&theta, &beta, &[0.0], &[1.0]).unwrap();
        assert!(
            (one - run.laplace()).abs() < 1e-12 * one,
            "{one} vs {}",
            run.laplace()
        );
        assert!((value - one).abs() > 1e-4, "k = {k}: {value} vs {one}");
    }
}

#[test]
fn quadrature_refuses_what_it_does_not_cover() {
    let (_, _, mut g) = model(4, 5);
    let th = vec![0.5; 10];
    let (nodes, weights) = rule3();
    let e = g.agq(&th, &[0.0, 0.0], &nodes, &weights).unwrap_err();
    assert!(e.to_string().contains("at most 3 effects"), "{e}");
    let (_, _, mut g) = model(3, 5);
    let th = [0.5, 0.0, 0.0, 0.5, 0.0, 0.5];
    let many = vec![0.0; 16];
    let e = g.agq(&th, &[0.0, 0.0], &many, &many).unwrap_err();
    assert!(e.to_string().contains("at most 3375 nodes"), "{e}");
    let e = g.agq(&th, &[0.0, 0.0], &nodes, &weights[..2]).unwrap_err();
    assert!(e.to_string().contains("quadrature weights"), "{e}");
}
