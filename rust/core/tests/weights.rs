//! Prior weights and offsets in the core: the cross-products against dense
//! ones, the objective and solution against weighted GLS, V against
//! σ²(ZΛΛᵀZᵀ + W⁻¹), and new weights or responses against fresh workspaces.

use super::*;
use crate::core::{BlockOrder, CoreError, CrossProducts, Terms};

/// A's blocks against the dense cross-product of [√W Z, √W X, √W (y − o)].
#[test]
fn cross_products_match_dense() {
    let specs = [crossed(6, 2), crossed(9, 1), crossed(4, 3)];
    assert_blocks_match_dense(&design(70, 51, &specs).weighted(52));
}

/// Enough rows that the diagonal blocks and Z̃ᵀ[X̃ ỹ] are summed in chunks
/// (in parallel), added after: the same blocks to rounding.
#[test]
fn cross_products_of_rows_summed_in_chunks_match_dense() {
    let specs = [crossed(7, 2), crossed(5, 1), crossed(3, 3)];
    assert_blocks_match_dense(&design(200_000, 54, &specs).weighted(55));
}

fn assert_blocks_match_dense(pr: &Problem) {
    let terms = Terms::new(pr.n, pr.terms.clone()).unwrap();
    let order = BlockOrder::new(&terms);
    let a = CrossProducts::new(pr.rows(), &terms, &order);
    let (n, p, q) = (pr.n, pr.p, terms.q());
    let (w, o) = (pr.w(), pr.offset.clone().unwrap());
    let z = dense_z(pr);
    let zxy = Mat::<f64>::from_fn(n, q + p + 1, |i, j| {
        let v = match j {
            j if j < q => z[(i, j)],
            j if j < q + p => pr.x[i + (j - q) * n],
            _ => pr.y[i] - o[i],
        };
        w[i].sqrt() * v
    });
    let d = zxy.transpose() * &zxy;
    let close = |got: f64, want: f64| assert!((got - want).abs() < 1e-11 * d.norm_max());
    // first term: diagonal blocks
    let (f, kf) = (order.first(), order.kf());
    let f0 = order.f_range().start;
    for (e, &v) in a.a11().iter().enumerate() {
        let (j, r, c) = (e / (kf * kf), e % kf, (e / kf) % kf);
        close(v, d[(f0 + j * kf + r, f0 + j * kf + c)]);
    }
    assert_eq!(f, 0);
    // rest: rows in lme4's order, and every nonzero block present
    let ext = order.rest_lme4_index();
    let block = |rb: usize, r: usize| ext[order.off(rb) + r];
    let mut seen = 0.0;
    for (rb, blk) in (0..order.n_blocks()).map(|rb| (rb, a.a22d_block(rb, order.k(rb)))) {
        let k = order.k(rb);
        for (e, &v) in blk.iter().enumerate() {
            close(v, d[(block(rb, e % k), block(rb, e / k))]);
        }
    }
    let a21 = a.a21();
    for j in 0..order.lf() {
        for e in a21.pat.ptr[j]..a21.pat.ptr[j + 1] {
            let rb = a21.pat.row[e];
            let kr = order.k(rb);
            for i in 0..kr * kf {
                let want = d[(block(rb, i % kr), f0 + j * kf + i / kr)];
                close(a21.val[a21.pat.off(e) + i], want);
                seen += want * want;
            }
        }
    }
    let f_cols = f0..f0 + order.qf();
    let dense_21: f64 = ext
        .iter()
        .flat_map(|&r| f_cols.clone().map(move |c| (r, c)))
        .map(|(r, c)| d[(r, c)].powi(2))
        .sum();
    assert!(
        (seen - dense_21).abs() < 1e-10 * dense_21,
        "A21 misses a block"
    );
    let a22 = a.a22();
    for c in 0..order.n_blocks() {
        for e in a22.pat.ptr[c]..a22.pat.ptr[c + 1] {
            let (rb, kc) = (a22.pat.row[e], order.k(c));
            let kr = order.k(rb);
            for i in 0..kr * kc {
                close(
                    a22.val[a22.pat.off(e) + i],
                    d[(block(rb, i % kr), block(c, i / kr))],
                );
            }
        }
    }
    // Z̃ᵀ[X̃ ỹ] and [X̃ ỹ]ᵀ[X̃ ỹ]
    for j in 0..=p {
        for i in 0..q {
            close(a.ztxy()[(i, j)], d[(i, q + j)]);
        }
        for i in 0..=p {
            close(a.xyxy()[(i, j)], d[(q + i, q + j)]);
        }
    }
    assert!((a.log_det_w() - w.iter().map(|v| v.ln()).sum::<f64>()).abs() < 1e-12);
}

/// New weights refill A in its patterns: every block equals a fresh one.
#[test]
fn cross_products_refilled_for_new_weights_equal_fresh_ones() {
    let specs = [crossed(6, 2), crossed(9, 1), crossed(4, 3), crossed(5, 1)];
    let pr = design(80, 53, &specs).weighted(54);
    let terms = Terms::new(pr.n, pr.terms.clone()).unwrap();
    let order = BlockOrder::new(&terms);
    let mut a = CrossProducts::new(pr.rows(), &terms, &order);
    let other = Problem {
        weights: pr.clone().weighted(55).weights,
        ..pr.clone()
    };
    let fresh = CrossProducts::new(other.rows(), &terms, &order);
    a.set_weights(&terms, &order, other.weights.clone())
        .unwrap();
    assert!(!a.a22().val.is_empty());
    for (x, y) in [(a.a21(), fresh.a21()), (a.a22(), fresh.a22())] {
        assert_eq!(
            (&x.pat.ptr, &x.pat.row, &x.val),
            (&y.pat.ptr, &y.pat.row, &y.val)
        );
    }
    assert_eq!((a.a11(), a.a22d()), (fresh.a11(), fresh.a22d()));
    assert_eq!(a.ztxy(), fresh.ztxy());
    assert_eq!(a.xyxy(), fresh.xyxy());
}

#[test]
fn weighted_objective_and_solution_match_gls() {
    let specs = [crossed(8, 2), crossed(5, 1)];
    for pr in [
        problem(90, 61).weighted(62),
        design(100, 63, &specs).weighted(64),
    ] {
        for mut ws in workspaces(&pr) {
            for theta in [theta_for(&pr, 1.0, 0.1), theta_for(&pr, 0.5, -0.2)] {
                for reml in [false, true] {
                    let got = ws.objective(&theta, reml).unwrap();
                    let want = dense_objective(&pr, &theta, reml);
                    assert!(rel(got, want) < 1e-9, "reml {reml}: {got} vs {want}");
                }
                // β from GLS; pwrss = Σ w (y − fitted)² + ‖u‖² with the offset
                let sol = ws.solve(&theta).unwrap();
                let (beta, pwrss) = dense_gls(&pr, &theta);
                for (j, b) in sol.beta.iter().enumerate() {
                    assert!((b - beta[(j, 0)]).abs() < 1e-9 * beta.norm_max());
                }
                let w = pr.w();
                let rss: f64 = (0..pr.n)
                    .map(|i| w[i] * (pr.y[i] - sol.fitted.as_ref().unwrap()[i]).powi(2))
                    .sum();
                let uu: f64 = sol.u.iter().map(|v| v * v).sum();
                assert!(rel(rss + uu, sol.pwrss) < 1e-9 && rel(sol.pwrss, pwrss) < 1e-9);
            }
        }
    }
}

#[test]
fn an_offset_is_a_shift_of_the_response() {
    let pr = problem(80, 71).weighted(72);
    let o = pr.offset.clone().unwrap();
    let mut shifted = pr.clone();
    shifted.offset = None;
    shifted.y.iter_mut().zip(&o).for_each(|(y, o)| *y -= o);
    let theta = [0.7, 1.1, 0.2, 0.5, 0.9];
    let (mut a, mut b) = (workspace(&pr), workspace(&shifted));
    assert_eq!(
        a.objective(&theta, true).unwrap(),
        b.objective(&theta, true).unwrap()
    );
    let (sa, sb) = (a.solve(&theta).unwrap(), b.solve(&theta).unwrap());
    let (fa, fb) = (sa.fitted.unwrap(), sb.fitted.unwrap());
    for i in 0..pr.n {
        assert!((fa[i] - (fb[i] + o[i])).abs() < 1e-12 * fa[i].abs().max(1.0));
    }
}

#[test]
fn new_weights_equal_a_fresh_workspace() {
    let pr = problem(90, 81);
    let weighted = pr.clone().weighted(82);
    let theta = [0.8, 1.2, 0.3, 0.5, 0.9];
    for classes in [false, true] {
        // other weights, the same offset
        let other = Problem {
            weights: pr.clone().weighted(83).weights,
            ..weighted.clone()
        };
        let mut ws = workspace(&other).with_classes(classes);
        let before = ws.clone().objective(&theta, false).unwrap();
        ws.set_weights(weighted.weights.clone()).unwrap();
        let mut fresh = workspace(&weighted);
        for reml in [false, true] {
            let (got, want) = (
                ws.objective(&theta, reml).unwrap(),
                fresh.objective(&theta, reml).unwrap(),
            );
            assert_eq!(got, want, "classes {classes}, reml {reml}");
        }
        assert_eq!(
            ws.solve(&theta).unwrap().fitted,
            fresh.solve(&theta).unwrap().fitted
        );
        assert_ne!(before, ws.objective(&theta, false).unwrap());
        // back to no weights: the unweighted objective
        ws.set_weights(None).unwrap();
        let unweighted = workspace(&Problem {
            weights: None,
            ..weighted.clone()
        })
        .objective(&theta, true);
        assert_eq!(ws.objective(&theta, true).unwrap(), unweighted.unwrap());
    }
    // scalar crossed terms: the grouped fill is chosen again for new weights
    let specs = [crossed(30, 1), crossed(6, 1)];
    let sc = design(300, 84, &specs);
    let target = Problem {
        offset: None,
        ..sc.clone().weighted(85)
    };
    let mut ws = workspace(&sc).with_classes(true);
    assert!(ws.class_work() > 0);
    ws.set_weights(target.weights.clone()).unwrap();
    assert_eq!(ws.class_work(), workspace(&target).class_work());
    let th = [0.9, 0.4];
    let want = dense_objective(&target, &th, false);
    assert!(rel(ws.objective(&th, false).unwrap(), want) < 1e-9);
}

#[test]
fn a_new_response_with_weights_matches_a_fresh_workspace() {
    let pr = problem(90, 91).weighted(92);
    let theta = [0.7, 1.2, 0.1, 0.4, 0.9];
    let y2: Vec<f64> =
        pr.y.iter()
            .enumerate()
            .map(|(i, v)| v * 0.5 + (i % 7) as f64)
            .collect();
    let mut ws = workspace(&pr);
    ws.set_response(y2.clone()).unwrap();
    let mut fresh = workspace(&Problem {
        y: y2,
        ..pr.clone()
    });
    let (got, want) = (
        ws.objective(&theta, true).unwrap(),
        fresh.objective(&theta, true).unwrap(),
    );
    assert!(rel(got, want) < 1e-12, "{got} vs {want}");
}

#[test]
fn weighted_marginal_covariance_matches_dense() {
    let pr = problem(60, 101).weighted(102);
    let theta = [0.6, 1.1, -0.3, 0.5, 0.8];
    let mut ws = workspace(&pr);
    ws.update(&theta).unwrap();
    let (n, sigma) = (pr.n, 1.3);
    let v = dense_v0(&pr, &theta) * (sigma * sigma);
    let csr = ws.v_csr(sigma, u128::MAX).unwrap();
    let dense = csr_dense(&csr, n);
    assert!((&dense - &v).norm_max() < 1e-12 * v.norm_max());
    let b = Mat::<f64>::from_fn(n, 2, |i, j| ((i * 7 + j * 3) % 11) as f64 - 5.0);
    let vinv_b = ws.v_solve(sigma, b.as_ref()).unwrap();
    assert!((&v * &vinv_b - &b).norm_max() < 1e-9 * b.norm_max());
    let vb = ws.v_matvec(sigma, b.as_ref()).unwrap();
    assert!((&vb - &v * &b).norm_max() < 1e-10 * vb.norm_max());
    let ld = logdet(&v);
    assert!((ws.v_logdet(sigma).unwrap() - ld).abs() < 1e-9 * ld.abs());
}

#[test]
fn bad_weights_and_offsets_are_refused() {
    let pr = problem(30, 111);
    let mut w = vec![1.0; pr.n];
    w[4] = 0.0;
    let rows = |w: Option<Vec<f64>>, o: Option<Vec<f64>>| {
        RowData::new(pr.n, pr.p, pr.x.clone(), pr.y.clone(), w, o).map(|_| ())
    };
    assert_eq!(
        rows(Some(w.clone()), None),
        Err(CoreError::NonPositiveWeight {
            index: 4,
            value: 0.0
        })
    );
    w[4] = f64::NAN;
    assert!(matches!(
        rows(Some(w), None),
        Err(CoreError::NonFinite { index: 4, .. })
    ));
    assert!(matches!(
        rows(Some(vec![1.0; 3]), None),
        Err(CoreError::Length { got: 3, .. })
    ));
    assert!(matches!(
        rows(None, Some(vec![f64::INFINITY; pr.n])),
        Err(CoreError::NonFinite { index: 0, .. })
    ));
    let mut ws = workspace(&pr);
    assert!(matches!(
        ws.set_weights(Some(vec![-1.0; pr.n])),
        Err(CoreError::NonPositiveWeight { .. })
    ));
    assert!(matches!(ws.evaluation(), Err(CoreError::NotEvaluated)));
    assert!(matches!(ws.v_logdet(1.0), Err(CoreError::NotEvaluated)));
}

/// Scalar terms' blocks are formed by scattering rows to their levels
/// (`cross_blocks::scalar_cross_blocks`): the same sums, to the bit, as the
/// general level-by-level loop, when found and when refilled for new weights.
#[test]
fn scalar_blocks_scattered_equal_the_general_loop_exactly() {
    use crate::core::cross_blocks::without_scatter;
    let specs = [crossed(13, 1), crossed(7, 1), crossed(4, 1)];
    let pr = design(300, 57, &specs).weighted(58);
    let terms = Terms::new(pr.n, pr.terms.clone()).unwrap();
    let order = BlockOrder::new(&terms);
    let mut fast = CrossProducts::new(pr.rows(), &terms, &order);
    let mut general = without_scatter(|| CrossProducts::new(pr.rows(), &terms, &order));
    let new_w = pr.clone().weighted(59).weights;
    for refill in [false, true] {
        if refill {
            fast.set_weights(&terms, &order, new_w.clone()).unwrap();
            without_scatter(|| general.set_weights(&terms, &order, new_w.clone())).unwrap();
        }
        assert!(!fast.a21().val.is_empty() && !fast.a22().val.is_empty());
        for (x, y) in [(fast.a21(), general.a21()), (fast.a22(), general.a22())] {
            assert_eq!(
                (&x.pat.ptr, &x.pat.row, &x.val),
                (&y.pat.ptr, &y.pat.row, &y.val)
            );
        }
    }
}
