//! The gradient of the objective against finite differences of the
//! objective and of its pieces, and the log det M part against a dense
//! computation of tr(M⁻¹ ∂M).

use super::*;
use crate::core::selinv::SelectedInverse;
use crate::core::Evaluation;

/// Fourth-order central difference of `f` in each coordinate of θ.
fn fd(theta: &[f64], mut f: impl FnMut(&[f64]) -> f64) -> Vec<f64> {
    (0..theta.len())
        .map(|i| {
            let h = 1e-4 * theta[i].abs().max(1.0);
            let mut at = |s: f64| {
                let mut th = theta.to_vec();
                th[i] += s * h;
                f(&th)
            };
            (-at(2.0) + 8.0 * at(1.0) - 8.0 * at(-1.0) + at(-2.0)) / (12.0 * h)
        })
        .collect()
}

fn check(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        assert!(
            err <= tol * w.abs().max(1.0),
            "{what}: component {i}: {g} vs {w} (error {err:e})"
        );
    }
}

/// Dense tr(M⁻¹ ∂M_i), ∂M_i = Λ_iᵀAΛ + ΛᵀAΛ_i with A = ZᵀWZ and Λ_i = Λ(e_i).
fn dense_logdet_gradient(pr: &Problem, theta: &[f64]) -> Vec<f64> {
    let z = dense_z(pr);
    let w = pr.w();
    let wz = Mat::from_fn(z.nrows(), z.ncols(), |i, j| w[i] * z[(i, j)]);
    let a = z.transpose() * wz;
    let lam = dense_lambda(pr, theta);
    let minv = dense_m(pr, theta)
        .llt(Side::Lower)
        .unwrap()
        .solve(Mat::<f64>::identity(a.nrows(), a.nrows()));
    (0..theta.len())
        .map(|i| {
            let mut e = vec![0.0; theta.len()];
            e[i] = 1.0;
            let li = dense_lambda(pr, &e);
            let dm = li.transpose() * &a * &lam + lam.transpose() * &a * &li;
            let prod = &minv * dm;
            (0..prod.nrows()).map(|j| prod[(j, j)]).sum()
        })
        .collect()
}

/// The selected inverse equals the dense M⁻¹ on the pattern of L + Lᵀ.
fn check_selected_inverse(pr: &Problem, ws: &Workspace, theta: &[f64]) {
    let l = ws.factor_l().unwrap();
    let perm = l.perm.clone();
    let pattern: Vec<(usize, usize)> = (0..perm.len())
        .flat_map(|j| (l.col_ptr[j]..l.col_ptr[j + 1]).map(move |e| (j, e)))
        .map(|(j, e)| (l.row_idx[e], j))
        .collect();
    let z = SelectedInverse::new(l);
    let q = perm.len();
    let minv = dense_m(pr, theta)
        .llt(Side::Lower)
        .unwrap()
        .solve(Mat::<f64>::identity(q, q));
    let zl = z.dense_l_order();
    for (i, j) in pattern {
        let want = minv[(perm[i], perm[j])];
        for got in [z.get(perm[i], perm[j]), z.get(perm[j], perm[i]), zl[(i, j)]] {
            assert!(
                (got - want).abs() < 1e-10 * want.abs().max(1.0),
                "({i}, {j}): {got} vs {want}"
            );
        }
    }
}

fn check_problem(pr: &Problem, thetas: &[Vec<f64>]) {
    for mut ws in workspaces(pr) {
        for theta in thetas {
            ws.update(theta).unwrap();
            check_selected_inverse(pr, &ws, theta);
            let parts = ws.gradient_parts(theta).unwrap();
            let dense = dense_logdet_gradient(pr, theta);
            check("log det M vs dense", &parts.ld_l2, &dense, 1e-9);
            let mut piece = |f: fn(&Evaluation) -> f64| fd(theta, |th| f(&ws.update(th).unwrap()));
            let want_ld = piece(|e| e.ld_l2);
            let want_rx = piece(|e| e.ld_rx2);
            let want_pw = piece(|e| e.pwrss);
            check("log det M vs FD", &parts.ld_l2, &want_ld, 1e-6);
            check("log det RXᵀRX vs FD", &parts.ld_rx2, &want_rx, 1e-6);
            check("pwrss vs FD", &parts.pwrss, &want_pw, 1e-6);
            for reml in [false, true] {
                let got = ws.gradient(theta, reml).unwrap();
                let want = fd(theta, |th| ws.objective(th, reml).unwrap());
                check(
                    &format!("objective (reml {reml}) {theta:?}"),
                    &got,
                    &want,
                    1e-6,
                );
            }
        }
    }
}

#[test]
fn terms_with_k_1_to_4() {
    let pr = design(80, 1, &[crossed(9, 1)]);
    check_problem(&pr, &[vec![0.7], vec![0.0], vec![2.3]]);
    let pr = design(100, 2, &[crossed(8, 2)]);
    check_problem(&pr, &[vec![1.1, -0.4, 0.6], vec![0.0, 0.3, 0.9]]);
    let pr = design(150, 3, &[crossed(7, 3)]);
    check_problem(
        &pr,
        &[
            vec![1.0, 0.2, -0.3, 0.8, 0.1, 0.5],
            vec![0.6, -0.5, 0.0, 0.0, 0.2, 0.0],
        ],
    );
    // k = 4 (no unrolled kernels), first and in the rest
    let pr = design(200, 4, &[crossed(9, 4), crossed(5, 1)]);
    check_problem(&pr, &[theta_for(&pr, 0.9, -0.2)]);
    let pr = design(200, 5, &[crossed(4, 4), crossed(30, 1)]);
    check_problem(&pr, &[theta_for(&pr, 0.6, 0.3)]);
}

#[test]
fn nested_and_crossed_scalar() {
    let pr = design(120, 4, &[crossed(6, 1), nested(0, 3, 1)]);
    check_problem(&pr, &[vec![0.8, 1.3], vec![0.0, 0.7], vec![1.2, 0.0]]);
    let pr = design(140, 5, &[crossed(10, 1), crossed(6, 1), crossed(4, 1)]);
    check_problem(&pr, &[vec![0.5, 1.1, 0.9], vec![1.4, 0.0, 0.3]]);
    // a rest that fills in (large supernodes in L22)
    let pr = design(600, 6, &[crossed(40, 1), crossed(30, 1), crossed(25, 2)]);
    check_problem(&pr, &[theta_for(&pr, 0.9, 0.2)]);
}

#[test]
fn crossed_with_a_vector_term() {
    // the nested intercept term first, then the slope term in the rest
    let pr = problem(120, 7);
    check_problem(
        &pr,
        &[
            vec![1.0, 1.0, 0.0, 1.0, 1.0],
            vec![0.3, 1.7, -0.4, 0.2, 2.5],
            vec![0.0, 0.5, 0.1, 0.0, 0.8],
        ],
    );
    // the slope term first, a crossed intercept term in the rest
    let mut pr = problem_with(150, 21, 9);
    pr.terms.remove(0);
    check_problem(&pr, &[vec![1.3, -0.2, 0.6, 0.9], vec![0.7, 0.4, 0.0, 0.0]]);
    let pr = design(160, 8, &[crossed(5, 1), crossed(9, 2), crossed(4, 3)]);
    check_problem(&pr, &[theta_for(&pr, 0.8, -0.3), theta_for(&pr, 0.0, 0.4)]);
}

#[test]
fn weights_and_offset() {
    let pr = problem(110, 12).weighted(5);
    check_problem(
        &pr,
        &[
            vec![0.4, 1.1, -0.6, 0.3, 0.9],
            vec![0.0, 0.9, 0.2, 0.0, 1.5],
        ],
    );
    let pr = design(90, 9, &[crossed(6, 2), nested(0, 2, 1)]).weighted(3);
    check_problem(&pr, &[theta_for(&pr, 1.1, -0.5), theta_for(&pr, 0.0, 0.2)]);
}

#[test]
fn a_term_with_a_single_level() {
    // every row in one level: the term is confounded with X's intercept
    let mut pr = design(60, 10, &[crossed(5, 1), crossed(1, 1)]);
    pr.terms[1].codes.iter_mut().for_each(|c| *c = 0);
    check_problem(&pr, &[vec![0.9, 0.5]]);
}

#[test]
fn scalar_terms_through_the_schur_complement() {
    // the grouped fill (classes of the first term's level sizes) and the
    // direct one, unweighted and weighted, against the dense tr(M⁻¹ ∂M)
    let crossed3 = design(600, 6, &[crossed(40, 1), crossed(30, 1), crossed(25, 1)]);
    let nested2 = design(120, 4, &[crossed(6, 1), nested(0, 3, 1)]);
    for pr in [crossed3.clone(), crossed3.weighted(8), nested2] {
        let n_theta = pr.terms.len();
        let mut thetas = vec![theta_for(&pr, 0.9, 0.0), theta_for(&pr, 0.05, 0.0)];
        thetas.push(
            (0..n_theta)
                .map(|i| if i == 0 { 0.0 } else { 0.7 })
                .collect(),
        );
        thetas.push(
            (0..n_theta)
                .map(|i| if i == 1 { 0.0 } else { 1.3 })
                .collect(),
        );
        for ws in workspaces(&pr) {
            for classes in [false, true] {
                let mut ws = ws.clone().with_classes(classes);
                for theta in &thetas {
                    ws.update(theta).unwrap();
                    let got = ws
                        .logdet_m_gradient_scalar()
                        .unwrap()
                        .expect("every term is scalar");
                    let dense = dense_logdet_gradient(&pr, theta);
                    check(&format!("classes {classes} {theta:?}"), &got, &dense, 1e-9);
                }
            }
        }
    }
    // a vector term: the general formula
    let mut ws = problem(120, 7).build(FactorKind::Auto);
    ws.update(&[1.0, 1.0, 0.0, 1.0, 1.0]).unwrap();
    assert!(ws.logdet_m_gradient_scalar().unwrap().is_none());
}

#[test]
fn a_single_weighted_term_level_by_level() {
    let pr = design(120, 11, &[crossed(9, 2)]).weighted(4);
    check_problem(&pr, &[vec![1.2, -0.3, 0.5], vec![0.0, 0.4, 0.7]]);
    let pr = design(90, 12, &[crossed(6, 3)]).weighted(6);
    check_problem(&pr, &[theta_for(&pr, 0.8, 0.2)]);
}
