//! The objective and the PLS solution against the dense GLS oracle.

use super::*;
use crate::core::schur_classes::with_dense_build;
use crate::core::CoreError;

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
                .zip(sol.fitted.as_ref().unwrap())
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
        weights: None,
        offset: None,
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

/// `problem(n, seed)` with two crossed intercepts of the given numbers of
/// levels, every level of one meeting many of the other.
fn crossed_intercepts(n: usize, seed: u64, (l1, l2): (usize, usize)) -> Problem {
    let mut pr = problem(n, seed);
    let term = |levels: usize, a: usize, b: usize| ReTerm {
        n_levels: levels,
        k: 1,
        codes: (0..n).map(|i| ((i * a + i / b) % levels) as u32).collect(),
        z: vec![1.0; n],
    };
    pr.terms = vec![term(l1, 7, 13), term(l2, 5, 7)];
    pr
}

/// A grouped fill frees A21's transpose; the direct fill, switched on
/// afterwards (as a GLMM's PIRLS does), builds it again and gives the dense
/// oracle's objective.
#[test]
fn the_direct_fill_after_the_grouped_one_rebuilds_what_it_reads() {
    let pr = crossed_intercepts(900, 5, (150, 30));
    let ws = workspace(&pr);
    assert!(ws.class_work() > 0, "the default groups this design");
    let mut direct = ws.with_classes(false);
    assert_eq!(direct.class_work(), 0);
    for theta in [[0.8, 1.4], [1.3, 0.2]] {
        let want = dense_objective(&pr, &theta, false);
        let got = direct.objective(&theta, false).unwrap();
        assert!((got - want).abs() < 1e-9 * want.abs(), "{got} vs {want}");
    }
}

/// Two crossed intercepts whose Schur complement is dense (every level of
/// the first term meets every level of the second): the grouped fill built
/// by the dense product of each class's columns and by the sparse build give
/// the dense oracle's objective.
#[test]
fn dense_and_sparse_class_builds_match_dense_oracle() {
    let n = 600;
    let mut pr = crossed_intercepts(n, 17, (40, 6));
    // counts (values kept as 2-byte integers), then a second term whose
    // column is not 1 from row 300 on (values stored as f64)
    for ones in [true, false] {
        if !ones {
            pr.terms[1].z = (0..n).map(|i| if i < 300 { 1.0 } else { 0.75 }).collect();
        }
        for theta in [[0.8, 1.4], [1.3, 0.2]] {
            let want = dense_objective(&pr, &theta, false);
            for dense in [false, true] {
                let mut ws = with_dense_build(dense, || workspace(&pr).with_classes(true));
                assert!(ws.class_work() > 0);
                let got = ws.objective(&theta, false).unwrap();
                assert!(
                    (got - want).abs() < 1e-9 * want.abs(),
                    "{ones} {dense}: {got} vs {want}"
                );
            }
        }
    }
}
