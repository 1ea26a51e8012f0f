//! The sparse PLS objective against a dense oracle that never forms the PLS
//! system: V₀ = ZΛΛᵀZᵀ + I, generalized least squares, and
//! log det V₀ = log det(ΛᵀZᵀZΛ + I) (the matrix determinant lemma).

use faer::linalg::solvers::DenseSolveCore;
use faer::prelude::Solve;
use faer::{Mat, Side};

use super::chol::FactorKind;
use super::CoreError;
use super::{ReTerm, Workspace};

/// Deterministic pseudo-random numbers in [0, 1).
struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone)]
struct Problem {
    n: usize,
    p: usize,
    x: Vec<f64>,
    y: Vec<f64>,
    terms: Vec<ReTerm>,
}

/// Three terms: a random slope on g1 (k = 2), intercepts on a crossed g2 and
/// on g3 nested in g1.
fn problem(n: usize, seed: u64) -> Problem {
    problem_with(n, seed, 7)
}

/// With `l1` > 7 the slope term has the most random effects and is factored
/// first; otherwise the nested intercept term is.
fn problem_with(n: usize, seed: u64, l1: usize) -> Problem {
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
    Problem { n, p, x, y, terms }
}

fn dense_objective(pr: &Problem, theta: &[f64], reml: bool) -> f64 {
    let n = pr.n;
    let q: usize = pr.terms.iter().map(|t| t.n_levels * t.k).sum();
    let mut zl = Mat::<f64>::zeros(n, q); // Z Λ
    let (mut off, mut th) = (0, 0);
    for t in &pr.terms {
        let k = t.k;
        let mut tm = Mat::<f64>::zeros(k, k);
        for c in 0..k {
            for r in c..k {
                tm[(r, c)] = theta[th];
                th += 1;
            }
        }
        for i in 0..n {
            let base = off + t.codes[i] as usize * k;
            for c in 0..k {
                for r in 0..k {
                    zl[(i, base + c)] += t.z[i * k + r] * tm[(r, c)];
                }
            }
        }
        off += t.n_levels * k;
    }
    let v0 = &zl * zl.transpose() + Mat::<f64>::identity(n, n);
    let llt = v0.llt(Side::Lower).unwrap();
    let logdet_v0: f64 = 2.0 * (0..n).map(|i| llt.L()[(i, i)].ln()).sum::<f64>();
    let x = Mat::<f64>::from_fn(n, pr.p, |i, j| pr.x[i + j * n]);
    let y = Mat::<f64>::from_fn(n, 1, |i, _| pr.y[i]);
    let vx = llt.solve(&x);
    let vy = llt.solve(&y);
    let xtvx = x.transpose() * &vx;
    let beta = xtvx.llt(Side::Lower).unwrap().solve(&(x.transpose() * &vy));
    let r = &y - &x * &beta;
    let vr = llt.solve(&r);
    let pwrss = (r.transpose() * &vr)[(0, 0)];
    let two_pi = 2.0 * std::f64::consts::PI;
    if reml {
        let l = xtvx.llt(Side::Lower).unwrap();
        let ld_x: f64 = 2.0 * (0..pr.p).map(|i| l.L()[(i, i)].ln()).sum::<f64>();
        let nmp = (n - pr.p) as f64;
        logdet_v0 + ld_x + nmp * (1.0 + (two_pi * pwrss / nmp).ln())
    } else {
        logdet_v0 + n as f64 * (1.0 + (two_pi * pwrss / n as f64).ln())
    }
}

fn workspace(pr: &Problem) -> Workspace {
    Workspace::new(pr.n, pr.p, pr.x.clone(), pr.y.clone(), pr.terms.clone()).unwrap()
}

fn workspaces(pr: &Problem) -> Vec<Workspace> {
    [FactorKind::Simplicial, FactorKind::Supernodal]
        .into_iter()
        .map(|k| {
            Workspace::with_factor_kind(pr.n, pr.p, pr.x.clone(), pr.y.clone(), pr.terms.clone(), k)
                .unwrap()
        })
        .collect()
}

#[test]
fn objective_matches_dense_oracle() {
    let pr = problem(120, 7);
    for mut ws in workspaces(&pr) {
        assert_eq!(ws.n_theta(), 5);
        for theta in [
            [1.0, 1.0, 0.0, 1.0, 1.0],
            [0.3, 1.7, -0.4, 0.2, 2.5],
            [0.0, 0.5, 0.1, 0.0, 0.8],
        ] {
            for reml in [false, true] {
                let sparse = ws.objective(&theta, reml).unwrap();
                let dense = dense_objective(&pr, &theta, reml);
                assert!(
                    (sparse - dense).abs() < 1e-9 * dense.abs(),
                    "theta {theta:?} reml {reml}: {sparse} vs {dense}"
                );
            }
        }
    }
}

#[test]
fn solution_reproduces_gls_and_pwrss() {
    let pr = problem(90, 11);
    for mut ws in workspaces(&pr) {
        let theta = [0.8, 1.2, 0.3, 0.5, 0.9];
        let sol = ws.solve(&theta).unwrap();
        // pwrss = ||y - fitted||² + ||u||²
        let rss: f64 =
            pr.y.iter()
                .zip(&sol.fitted)
                .map(|(a, b)| (a - b).powi(2))
                .sum();
        let uu: f64 = sol.u.iter().map(|v| v * v).sum();
        assert!((rss + uu - sol.pwrss).abs() < 1e-9 * sol.pwrss);
    }
}

#[test]
fn row_order_does_not_change_the_objective() {
    let pr = problem(60, 3);
    let n = pr.n;
    let perm: Vec<usize> = (0..n).rev().collect();
    let mut pr2 = Problem {
        n,
        p: pr.p,
        x: vec![0.0; n * pr.p],
        y: perm.iter().map(|&i| pr.y[i]).collect(),
        terms: vec![],
    };
    for j in 0..pr.p {
        for (i, &src) in perm.iter().enumerate() {
            pr2.x[i + j * n] = pr.x[src + j * n];
        }
    }
    for t in &pr.terms {
        pr2.terms.push(ReTerm {
            n_levels: t.n_levels,
            k: t.k,
            codes: perm.iter().map(|&i| t.codes[i]).collect(),
            z: perm
                .iter()
                .flat_map(|&i| t.z[i * t.k..(i + 1) * t.k].to_vec())
                .collect(),
        });
    }
    let theta = [0.4, 1.1, 0.2, 0.7, 1.3];
    let a = workspace(&pr).objective(&theta, true).unwrap();
    let b = workspace(&pr2).objective(&theta, true).unwrap();
    assert!((a - b).abs() < 1e-10 * a.abs());
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let pr = problem(30, 5);
    let mut ws = workspace(&pr);
    assert!(matches!(
        ws.objective(&[1.0, 1.0], true),
        Err(CoreError::ThetaLength {
            expected: 5,
            got: 2
        })
    ));
    assert!(matches!(
        ws.objective(&[1.0, f64::NAN, 0.0, 1.0, 1.0], true),
        Err(CoreError::ThetaNotFinite { index: 1 })
    ));
    let mut terms = pr.terms.clone();
    terms[0].codes[0] = 1000;
    assert!(matches!(
        Workspace::new(pr.n, pr.p, pr.x.clone(), pr.y.clone(), terms),
        Err(CoreError::Dimension(_))
    ));
    assert!(matches!(
        Workspace::new(
            pr.n,
            pr.p,
            pr.x.clone(),
            pr.y[1..].to_vec(),
            pr.terms.clone()
        ),
        Err(CoreError::Length { .. })
    ));
    // a duplicated fixed-effects column makes RX singular
    let mut x = pr.x.clone();
    let n = pr.n;
    x.copy_within(0..n, n);
    let mut ws = Workspace::new(n, pr.p, x, pr.y.clone(), pr.terms.clone()).unwrap();
    assert!(matches!(
        ws.objective(&[1.0, 1.0, 0.0, 1.0, 1.0], true),
        Err(CoreError::RankDeficient { column: 1 })
    ));
}

#[test]
fn cond_var_matches_dense_inverse() {
    let pr = problem(50, 9);
    for mut ws in workspaces(&pr) {
        let theta = [0.6, 1.0, 0.2, 0.4, 0.7];
        ws.update(&theta).unwrap();
        let blocks = ws.cond_var_blocks().unwrap();
        // dense Λ (ΛᵀZᵀZΛ + I)⁻¹ Λᵀ for the slope term (term 1)
        let q = ws.q();
        let mut zl = Mat::<f64>::zeros(pr.n, q);
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
            for i in 0..pr.n {
                let base = off + t.codes[i] as usize * k;
                for c in 0..k {
                    zl[(i, base + c)] += t.z[i * k + c];
                }
            }
            off += t.n_levels * k;
            th += k * (k + 1) / 2;
        }
        let zlam = &zl * &lam;
        let m = zlam.transpose() * &zlam + Mat::<f64>::identity(q, q);
        let minv = m.llt(Side::Lower).unwrap().inverse();
        let cv = &lam * &minv * lam.transpose();
        let lay = &ws.layout()[1];
        for l in 0..lay.n_levels {
            for c in 0..2 {
                for r in 0..2 {
                    let want = cv[(lay.offset + l * 2 + r, lay.offset + l * 2 + c)];
                    let got = blocks[1][l * 4 + r + c * 2];
                    assert!((want - got).abs() < 1e-10, "{want} vs {got}");
                }
            }
        }
    }
}

#[test]
fn slope_term_first_and_single_term_match_dense_oracle() {
    // without the nested term, the slope term (9 levels x 2) is factored
    // first, with a crossed intercept term in the sparse part
    let mut pr = problem_with(150, 21, 9);
    pr.terms.remove(0);
    for mut ws in workspaces(&pr) {
        assert_eq!(ws.layout()[ws.first_term()].k, 2);
        for theta in [[1.3, -0.2, 0.6, 0.9], [0.7, 0.4, 0.3, 0.0]] {
            for reml in [false, true] {
                let got = ws.objective(&theta, reml).unwrap();
                let want = dense_objective(&pr, &theta, reml);
                assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
            }
        }
    }
    // a single term: no sparse factor at all
    let mut one = problem(80, 4);
    one.terms = vec![one.terms[1].clone()];
    let mut ws = workspace(&one);
    assert!(ws.chol().is_none());
    for theta in [[1.0, 0.0, 1.0], [0.4, -0.3, 1.7]] {
        let got = ws.objective(&theta, true).unwrap();
        let want = dense_objective(&one, &theta, true);
        assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
    }
}

/// Crossed and nested intercepts only: the scalar Schur-complement path,
/// direct and grouped by classes of the first term's levels, filled in one
/// chunk and split across threads.
#[test]
fn scalar_terms_match_dense_oracle_in_one_or_several_chunks() {
    let mut pr = problem(160, 13);
    pr.terms.remove(1); // drop the slope term: every term is scalar
    for theta in [[0.8, 1.4], [0.0, 0.6], [1.1, 0.0]] {
        for reml in [false, true] {
            let want = dense_objective(&pr, &theta, reml);
            for classes in [false, true] {
                for parts in [1, 2, 3, 7] {
                    let ws = workspace(&pr).with_classes(classes);
                    assert_eq!(ws.class_work() > 0, classes);
                    let mut ws = ws.with_schur_chunks(parts);
                    let got = ws.objective(&theta, reml).unwrap();
                    assert!(
                        (got - want).abs() < 1e-9 * want.abs(),
                        "{classes} {parts}: {got} vs {want}"
                    );
                }
            }
        }
    }
}

/// Three crossed scalar terms with weights-like non-integer values in Z: the
/// grouped fill has one class per level and must still match.
#[test]
fn grouped_schur_fill_with_three_crossed_terms() {
    let mut pr = problem(200, 11);
    pr.terms.remove(1);
    let n = pr.n;
    pr.terms.push(ReTerm {
        n_levels: 4,
        k: 1,
        codes: (0..n).map(|i| ((i * 7) % 4) as u32).collect(),
        z: vec![1.0; n],
    });
    let theta = [0.9, 0.5, 1.3];
    for scale_z in [false, true] {
        let mut pr = pr.clone();
        if scale_z {
            for t in &mut pr.terms {
                for (i, z) in t.z.iter_mut().enumerate() {
                    *z *= 1.0 + 0.01 * (i % 5) as f64;
                }
            }
        }
        let want = dense_objective(&pr, &theta, false);
        for classes in [false, true] {
            let mut ws = workspace(&pr).with_classes(classes);
            let got = ws.objective(&theta, false).unwrap();
            assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
        }
    }
}

/// Dense ZΛ and V₀ = ZΛΛᵀZᵀ + I of a problem at θ.
fn dense_zl(pr: &Problem, theta: &[f64]) -> Mat<f64> {
    let q: usize = pr.terms.iter().map(|t| t.n_levels * t.k).sum();
    let mut zl = Mat::<f64>::zeros(pr.n, q);
    let (mut off, mut th) = (0, 0);
    for t in &pr.terms {
        let k = t.k;
        let mut tm = Mat::<f64>::zeros(k, k);
        for c in 0..k {
            for r in c..k {
                tm[(r, c)] = theta[th];
                th += 1;
            }
        }
        for i in 0..pr.n {
            let base = off + t.codes[i] as usize * k;
            for c in 0..k {
                for r in 0..k {
                    zl[(i, base + c)] += t.z[i * k + r] * tm[(r, c)];
                }
            }
        }
        off += t.n_levels * k;
    }
    zl
}

#[test]
fn marginal_covariance_matches_dense() {
    for (pr, theta) in [
        (problem(70, 17), vec![0.6, 1.1, -0.3, 0.5, 0.8]),
        (
            {
                let mut p = problem_with(90, 5, 9);
                p.terms.remove(0);
                p
            },
            vec![1.2, 0.2, 0.4, 0.7],
        ),
    ] {
        let mut ws = workspace(&pr);
        ws.update(&theta).unwrap();
        let n = pr.n;
        let sigma = 1.7;
        let zl = dense_zl(&pr, &theta);
        let v = (&zl * zl.transpose() + Mat::<f64>::identity(n, n)) * (sigma * sigma);
        // assembled V
        let csr = ws.v_csr(sigma, u128::MAX).unwrap();
        let mut dense = Mat::<f64>::zeros(n, n);
        for i in 0..n {
            for e in csr.indptr[i] as usize..csr.indptr[i + 1] as usize {
                dense[(i, csr.indices[e] as usize)] = csr.data[e];
            }
        }
        assert!((&dense - &v).norm_max() < 1e-12 * v.norm_max());
        // every structurally nonzero entry of the dense V is stored
        let nnz = (0..n)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|&(i, j)| v[(i, j)] != 0.0)
            .count();
        assert_eq!(nnz, csr.data.len());
        // V⁻¹B, VB and log det V
        let b = Mat::<f64>::from_fn(n, 2, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
        let vinv_b = ws.v_solve(sigma, b.as_ref()).unwrap();
        assert!((&v * &vinv_b - &b).norm_max() < 1e-9 * b.norm_max());
        let vb = ws.v_matvec(sigma, b.as_ref()).unwrap();
        assert!((&vb - &v * &b).norm_max() < 1e-10 * vb.norm_max());
        let llt = v.llt(Side::Lower).unwrap();
        let ld: f64 = 2.0 * (0..n).map(|i| llt.L()[(i, i)].ln()).sum::<f64>();
        assert!((ws.v_logdet(sigma).unwrap() - ld).abs() < 1e-9 * ld.abs());
        // the budget refuses before building
        assert!(matches!(
            ws.v_csr(sigma, 10),
            Err(CoreError::MemoryBudget { .. })
        ));
    }
}

#[test]
fn components_are_the_blocks_of_v() {
    // nested: one block per level of the outer factor
    let pr = problem(60, 8);
    let mut nested = pr.terms.clone();
    nested.truncate(2); // g3 nested in g1, and g1
    let ws = Workspace::new(pr.n, pr.p, pr.x.clone(), pr.y.clone(), nested.clone()).unwrap();
    let lab = ws.v_components();
    for i in 0..pr.n {
        for j in 0..pr.n {
            assert_eq!(lab[i] == lab[j], nested[1].codes[i] == nested[1].codes[j]);
        }
    }
    assert_eq!(lab[0], 0);
    // adding the crossed factor joins everything
    let ws = workspace(&pr);
    let lab = ws.v_components();
    assert!(lab.iter().all(|&l| l == 0));
}

#[test]
fn factor_l_reproduces_the_pls_matrix() {
    for pr in [problem(70, 2), {
        let mut p = problem_with(90, 5, 9);
        p.terms.remove(0);
        p
    }] {
        let theta: Vec<f64> = match pr.terms.len() {
            3 => vec![0.6, 1.1, -0.3, 0.5, 0.8],
            _ => vec![1.2, 0.2, 0.4, 0.7],
        };
        let mut ws = workspace(&pr);
        ws.update(&theta).unwrap();
        let zl = dense_zl(&pr, &theta);
        let q = zl.ncols();
        let m = zl.transpose() * &zl + Mat::<f64>::identity(q, q);
        let fl = ws.factor_l().unwrap();
        let (perm, cp, ri, v) = (fl.perm, fl.col_ptr, fl.row_idx, fl.values);
        let mut l = Mat::<f64>::zeros(q, q);
        for c in 0..q {
            for e in cp[c]..cp[c + 1] {
                assert!(ri[e] >= c, "L must be lower triangular");
                l[(ri[e], c)] = v[e];
            }
        }
        let llt = &l * l.transpose();
        let mp = Mat::<f64>::from_fn(q, q, |i, j| m[(perm[i], perm[j])]);
        assert!((&llt - &mp).norm_max() < 1e-10 * mp.norm_max());
    }
}

#[test]
fn a_new_response_on_a_clone_matches_a_fresh_workspace() {
    let pr = problem(90, 31);
    let mut ws = workspace(&pr);
    let theta = [0.7, 1.2, 0.1, 0.4, 0.9];
    let before = ws.objective(&theta, true).unwrap();
    let y2: Vec<f64> =
        pr.y.iter()
            .enumerate()
            .map(|(i, v)| v * 0.5 + (i % 7) as f64)
            .collect();
    let mut other = ws.clone();
    other.set_response(y2.clone()).unwrap();
    let fresh = Workspace::new(pr.n, pr.p, pr.x.clone(), y2, pr.terms.clone())
        .unwrap()
        .objective(&theta, true)
        .unwrap();
    assert!((other.objective(&theta, true).unwrap() - fresh).abs() < 1e-10 * fresh.abs());
    // the original is untouched
    assert_eq!(ws.objective(&theta, true).unwrap(), before);
    assert!(other.set_response(vec![1.0; 3]).is_err());
}
