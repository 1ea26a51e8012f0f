//! BlockedFactor against a dense L and a dense M = ΛᵀZᵀWZΛ + I: its CSC form
//! is the dense Cholesky factor of M[perm, perm], l_solve, lt_solve and
//! solve invert L, Lᵀ and M, and logdet is log det M; on single terms of
//! every block size, nested and crossed designs, and both Schur fills.

use super::*;
use crate::core::factor::BlockedFactor;

/// A dense matrix's rows `perm`.
fn rows(a: &Mat<f64>, perm: &[usize]) -> Mat<f64> {
    Mat::from_fn(a.nrows(), a.ncols(), |i, j| a[(perm[i], j)])
}

fn check_factor(pr: &Problem, fac: &BlockedFactor, theta: &[f64], what: &str) {
    let m = dense_m(pr, theta);
    let q = m.nrows();
    let tol = 1e-10 * m.norm_max();
    // to_csc: lower triangular, and the Cholesky factor of M[perm, perm]
    let fl = fac.to_csc();
    let mut l = Mat::<f64>::zeros(q, q);
    for c in 0..q {
        for e in fl.col_ptr[c]..fl.col_ptr[c + 1] {
            assert!(fl.row_idx[e] >= c, "{what}: L must be lower triangular");
            l[(fl.row_idx[e], c)] = fl.values[e];
        }
    }
    let mp = Mat::<f64>::from_fn(q, q, |i, j| m[(fl.perm[i], fl.perm[j])]);
    let l_dense = mp.llt(Side::Lower).unwrap().L().to_owned();
    assert!(
        (&l - &l_dense).norm_max() < 1e-10 * l_dense.norm_max(),
        "{what}: L"
    );
    // log det M
    let ld = logdet(&m);
    assert!(
        (fac.logdet() - ld).abs() < 1e-10 * ld.abs().max(1.0),
        "{what}: logdet"
    );
    // l_solve: L y = b[perm]
    let b = Mat::<f64>::from_fn(q, 3, |i, j| ((i * 7 + j * 5) % 11) as f64 - 5.0);
    let y = fac.l_solve(b.as_ref());
    assert!(
        (&l * &y - rows(&b, &fl.perm)).norm_max() < tol * 10.0,
        "{what}: l_solve"
    );
    // lt_solve: Lᵀ z[perm] = b
    let z = fac.lt_solve(b.as_ref());
    assert!(
        (l.transpose() * rows(&z, &fl.perm) - &b).norm_max() < tol * 10.0,
        "{what}: lt_solve"
    );
    // solve: M x = b
    let mut x = b.clone();
    fac.solve(x.as_mut());
    assert!((&m * &x - &b).norm_max() < tol * 10.0, "{what}: solve");
}

/// Checks the factor of `pr` at two θ, unweighted and weighted, with both
/// kinds of sparse factor.
fn check_design(pr: &Problem, what: &str) {
    for (pr, w) in [
        (pr.clone(), "unweighted"),
        (pr.clone().weighted(3), "weighted"),
    ] {
        for mut ws in workspaces(&pr) {
            for theta in [theta_for(&pr, 1.0, 0.2), theta_for(&pr, 0.4, -0.3)] {
                ws.update(&theta).unwrap();
                check_factor(
                    &pr,
                    ws.factor(),
                    &theta,
                    &format!("{what}, {w}, θ {theta:?}"),
                );
            }
        }
    }
}

#[test]
fn single_terms_of_every_block_size() {
    for k in 1..=4 {
        let pr = design(60, 10 + k as u64, &[Spec::Crossed { levels: 9, k }]);
        let ws = workspace(&pr);
        assert!(ws.chol().is_none());
        check_design(&pr, &format!("one term, k = {k}"));
    }
}

#[test]
fn nested_terms() {
    let specs = [crossed(5, 1), nested(0, 3, 1)];
    let pr = design(80, 21, &specs);
    assert_eq!(workspace(&pr).first_term(), 1);
    check_design(&pr, "nested scalar");
    let specs = [crossed(4, 2), nested(0, 4, 1)];
    check_design(&design(90, 22, &specs), "nested, vector outer term");
}

#[test]
fn crossed_scalar_terms_with_both_fills_in_one_or_several_chunks() {
    let specs = [crossed(15, 1), crossed(7, 1), crossed(3, 1)];
    for pr in [design(120, 31, &specs), design(120, 31, &specs).weighted(5)] {
        let theta = theta_for(&pr, 0.9, 0.0);
        for classes in [false, true] {
            for parts in [1, 3] {
                let mut ws = workspace(&pr)
                    .with_classes(classes)
                    .with_schur_chunks(parts);
                assert_eq!(ws.class_work() > 0, classes);
                ws.update(&theta).unwrap();
                let what = format!("crossed, classes {classes}, {parts} chunks");
                check_factor(&pr, ws.factor(), &theta, &what);
            }
        }
    }
}

#[test]
fn fully_crossed_scalar_terms_with_the_dense_and_the_sparse_fill() {
    // 1,500 rows over 15 x 7 levels: every pair met (each missing with
    // probability about 6e-7), so L21 is dense
    let specs = [crossed(15, 1), crossed(7, 1)];
    for pr in [
        design(1500, 51, &specs),
        design(1500, 51, &specs).weighted(6),
    ] {
        for dense in [true, false] {
            let mut ws = workspace(&pr).with_classes(false).with_dense_schur(dense);
            assert_eq!(ws.factor().schur().is_dense(), dense);
            for theta in [theta_for(&pr, 0.9, 0.0), theta_for(&pr, 0.3, 0.0)] {
                ws.update(&theta).unwrap();
                let what = format!("fully crossed, dense fill {dense}, θ {theta:?}");
                check_factor(&pr, ws.factor(), &theta, &what);
            }
        }
    }
    // a pair never met: the sparse fill
    let pr = design(60, 52, &specs);
    assert!(!workspace(&pr)
        .with_classes(false)
        .factor()
        .schur()
        .is_dense());
}

#[test]
fn crossed_with_a_vector_term() {
    // the slope term first, a scalar term in the sparse part
    let specs = [crossed(9, 2), crossed(5, 1)];
    let pr = design(100, 41, &specs);
    assert_eq!(workspace(&pr).first_term(), 0);
    check_design(&pr, "slope first");
    // a scalar term first, a k = 3 term in the sparse part
    let specs = [crossed(4, 3), crossed(20, 1)];
    let pr = design(110, 42, &specs);
    assert_eq!(workspace(&pr).first_term(), 1);
    check_design(&pr, "k = 3 in the rest");
    check_design(&problem(70, 43), "nested, slope and crossed");
}
