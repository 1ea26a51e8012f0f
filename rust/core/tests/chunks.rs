//! The blocks of A summed chunk by chunk equal the blocks of all the rows.

use super::super::chunks::{BlockSums, SumColumns};
use super::super::crossprod::RowData;
use super::super::ReTerm;
use super::{crossed, design, nested, Problem};

/// Rows `idx` of the problem (weights and offset included).
fn chunk(pr: &Problem, idx: &[usize]) -> (RowData, Vec<ReTerm>) {
    let (n, p) = (idx.len(), pr.p);
    let x = (0..p)
        .flat_map(|j| idx.iter().map(move |&i| pr.x[j * pr.n + i]))
        .collect();
    let pick = |v: &Vec<f64>| idx.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let rows = RowData::new(
        n,
        p,
        x,
        pick(&pr.y),
        pr.weights.as_ref().map(pick),
        pr.offset.as_ref().map(pick),
    )
    .unwrap();
    let terms = pr
        .terms
        .iter()
        .map(|t| ReTerm {
            n_levels: t.n_levels,
            k: t.k,
            codes: idx.iter().map(|&i| t.codes[i]).collect(),
            z: idx
                .iter()
                .flat_map(|&i| t.z[i * t.k..(i + 1) * t.k].iter().copied())
                .collect(),
        })
        .collect();
    (rows, terms)
}

fn close(a: &[f64], b: &[f64], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths");
    let scale = b.iter().fold(1.0f64, |m, v| m.max(v.abs()));
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= 1e-12 * scale, "{what}[{i}]: {x} vs {y}");
    }
}

fn same_columns(a: &SumColumns, b: &SumColumns, what: &str) {
    assert_eq!(a.ptr, b.ptr, "{what}: column pointers");
    assert_eq!(a.row, b.row, "{what}: row blocks");
    close(&a.val, &b.val, what);
}

fn check(pr: &Problem, n_chunks: usize) {
    let all: Vec<usize> = (0..pr.n).collect();
    let (rows, terms) = chunk(pr, &all);
    let whole = BlockSums::from_rows(rows, terms).unwrap();
    // chunks of a shuffled order, merged right to left
    let mut order = all.clone();
    let mut s = 12345u64;
    for i in (1..order.len()).rev() {
        s = s
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        order.swap(i, (s >> 33) as usize % (i + 1));
    }
    let size = pr.n.div_ceil(n_chunks);
    let mut parts: Vec<BlockSums> = order
        .chunks(size)
        .map(|idx| {
            let (r, t) = chunk(pr, idx);
            BlockSums::from_rows(r, t).unwrap()
        })
        .collect();
    let mut acc = parts.pop().unwrap();
    while let Some(p) = parts.pop() {
        acc = p.merge(&acc).unwrap();
    }
    assert_eq!(acc.n, whole.n);
    close(&[acc.log_det_w], &[whole.log_det_w], "log det W");
    close(&acc.a11, &whole.a11, "a11");
    close(&acc.a22d, &whole.a22d, "a22d");
    close(&acc.ztxy, &whole.ztxy, "ztxy");
    let (ax, wx) = (acc.xyxy.as_ref(), whole.xyxy.as_ref());
    for j in 0..wx.ncols() {
        for i in 0..wx.nrows() {
            close(&[ax[(i, j)]], &[wx[(i, j)]], "xyxy");
        }
    }
    same_columns(&acc.a21, &whole.a21, "a21");
    same_columns(&acc.a22, &whole.a22, "a22");
}

#[test]
fn chunk_sums_equal_the_whole_for_crossed_nested_and_weighted_models() {
    let crossed_slopes = design(400, 3, &[crossed(23, 2), crossed(7, 1)]);
    let nested_terms = design(300, 5, &[crossed(6, 1), nested(0, 4, 2)]);
    let three = design(500, 9, &[crossed(40, 1), crossed(11, 1), crossed(3, 2)]);
    for pr in [crossed_slopes, nested_terms, three] {
        for n_chunks in [1, 3, 17] {
            check(&pr, n_chunks);
            check(&pr.clone().weighted(7), n_chunks);
        }
    }
}

#[test]
fn merging_different_models_is_refused() {
    let a = design(100, 1, &[crossed(5, 1)]);
    let b = design(100, 1, &[crossed(6, 1)]);
    let all: Vec<usize> = (0..100).collect();
    let (ra, ta) = chunk(&a, &all);
    let (rb, tb) = chunk(&b, &all);
    let sa = BlockSums::from_rows(ra, ta).unwrap();
    let sb = BlockSums::from_rows(rb, tb).unwrap();
    assert!(sa.merge(&sb).is_err());
}

#[test]
fn a_workspace_from_chunk_sums_evaluates_as_the_in_memory_one() {
    use super::super::chol::FactorKind;
    use super::super::{CoreError, Workspace};
    use super::theta_for;
    use faer::Mat;
    let pr = design(600, 11, &[crossed(31, 2), crossed(9, 1)]).weighted(3);
    let mut whole = pr.build(FactorKind::Auto);
    let idx: Vec<usize> = (0..pr.n).collect();
    let mut sums: Option<BlockSums> = None;
    for part in idx.chunks(77) {
        let (r, t) = chunk(&pr, part);
        let s = BlockSums::from_rows(r, t).unwrap();
        sums = Some(match sums {
            None => s,
            Some(acc) => acc.merge(&s).unwrap(),
        });
    }
    let mut ws = Workspace::from_sums(sums.unwrap(), FactorKind::Auto).unwrap();
    assert!(!ws.has_rows() && whole.has_rows());
    assert_eq!((ws.n(), ws.p(), ws.q()), (whole.n(), whole.p(), whole.q()));
    for (d, o) in [(0.3, 0.1), (1.0, -0.2), (2.5, 0.4)] {
        let th = theta_for(&pr, d, o);
        for reml in [false, true] {
            let (a, b) = (
                ws.objective(&th, reml).unwrap(),
                whole.objective(&th, reml).unwrap(),
            );
            assert!((a - b).abs() <= 1e-10 * b.abs(), "objective {a} vs {b}");
            let (ga, gb) = (
                ws.gradient(&th, reml).unwrap(),
                whole.gradient(&th, reml).unwrap(),
            );
            close(&ga, &gb, "gradient");
        }
        let (sa, sb) = (ws.solve(&th).unwrap(), whole.solve(&th).unwrap());
        close(&sa.beta, &sb.beta, "beta");
        close(&sa.b, &sb.b, "b");
        assert!(sa.fitted.is_none() && sb.fitted.is_some());
    }
    let needs_rows = |e: CoreError| matches!(e, CoreError::RowsNotKept { .. });
    assert!(needs_rows(ws.set_weights(None).unwrap_err()));
    assert!(needs_rows(ws.set_response(vec![0.0; pr.n]).unwrap_err()));
    assert!(needs_rows(ws.v_components().unwrap_err()));
    assert!(needs_rows(ws.v_csr(1.0, u128::MAX).err().unwrap()));
    let b = Mat::<f64>::zeros(pr.n, 1);
    let err = ws.v_solve(1.0, b.as_ref()).unwrap_err();
    assert!(needs_rows(err.clone()), "{err:?}");
}

#[test]
fn sums_that_do_not_fit_their_shapes_are_refused() {
    let pr = design(200, 4, &[crossed(9, 2), crossed(5, 1)]);
    let all: Vec<usize> = (0..pr.n).collect();
    let (r, t) = chunk(&pr, &all);
    let good = BlockSums::from_rows(r, t).unwrap();
    assert!(good.validate().is_ok());
    let (c, _) = (0..good.a21.ptr.len() - 1)
        .map(|c| (c, good.a21.ptr[c + 1] - good.a21.ptr[c]))
        .find(|&(_, m)| m >= 2)
        .expect("a column with two row blocks");
    let mut unsorted = good.clone();
    unsorted.a21.row.swap(good.a21.ptr[c], good.a21.ptr[c] + 1);
    let mut short = good.clone();
    short.a21.val.pop();
    let mut out_of_range = good.clone();
    *out_of_range.a21.row.last_mut().unwrap() = 1000;
    for bad in [unsorted, short, out_of_range] {
        assert!(bad.validate().is_err());
    }
}
