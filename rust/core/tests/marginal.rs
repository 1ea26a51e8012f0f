//! condVar, V, V⁻¹B, VB, log det V and the factor L against dense matrices,
//! and a new response on a copy of a workspace.

use faer::linalg::solvers::DenseSolveCore;

use super::*;
use crate::core::CoreError;

#[test]
fn cond_var_matches_dense_inverse() {
    let pr = problem(50, 9);
    for mut ws in workspaces(&pr) {
        let theta = [0.6, 1.0, 0.2, 0.4, 0.7];
        ws.update(&theta).unwrap();
        let blocks = ws.cond_var_blocks().unwrap();
        // dense Λ (ΛᵀZᵀZΛ + I)⁻¹ Λᵀ for the slope term (term 1)
        let q = ws.q();
        let lam = dense_lambda(&pr, &theta);
        let zlam = dense_z(&pr) * &lam;
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
        let dense = csr_dense(&csr, n);
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
    let lab = ws.v_components().unwrap();
    for i in 0..pr.n {
        for j in 0..pr.n {
            assert_eq!(lab[i] == lab[j], nested[1].codes[i] == nested[1].codes[j]);
        }
    }
    assert_eq!(lab[0], 0);
    // adding the crossed factor joins everything
    let ws = workspace(&pr);
    let lab = ws.v_components().unwrap();
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
