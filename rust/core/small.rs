//! Dense kernels on tiny column-major blocks (k x k templates, k x m panels),
//! the only ones in the crate. Sizes are the number of coefficients of a
//! random-effects term, so these are plain loops.
//!
//! Each kernel is written once, generic over its block size [`Dim`]: a size
//! known at compile time ([`K`], for which the loops unroll into registers) or
//! one known at run time (`usize`).

use faer::{MatMut, MatRef};

/// A block size: [`K`] (compile time) or `usize` (run time).
pub trait Dim: Copy {
    fn get(self) -> usize;
}

/// A block size known at compile time.
#[derive(Clone, Copy, Debug)]
pub struct K<const N: usize>;

impl<const N: usize> Dim for K<N> {
    #[inline(always)]
    fn get(self) -> usize {
        N
    }
}

impl Dim for usize {
    #[inline(always)]
    fn get(self) -> usize {
        self
    }
}

/// `out = T1ᵀ A T2 + diag·I` for lower-triangular `T1` (k1 x k1), `T2`
/// (k2 x k2) and `A` (k1 x k2); `diag` starts the sums on the diagonal (use
/// 0 for rectangular blocks). `tmp` has room for k1*k2 values.
#[allow(clippy::too_many_arguments)]
#[inline(always)]
pub fn sandwich<D1: Dim, D2: Dim>(
    t1: &[f64],
    k1: D1,
    a: &[f64],
    t2: &[f64],
    k2: D2,
    diag: f64,
    tmp: &mut [f64],
    out: &mut [f64],
) {
    let (k1, k2) = (k1.get(), k2.get());
    let (t1, t2, a) = (&t1[..k1 * k1], &t2[..k2 * k2], &a[..k1 * k2]);
    let (tmp, out) = (&mut tmp[..k1 * k2], &mut out[..k1 * k2]);
    for c in 0..k2 {
        for i in 0..k1 {
            let mut s = 0.0;
            for j in c..k2 {
                s += a[i + j * k1] * t2[j + c * k2];
            }
            tmp[i + c * k1] = s;
        }
    }
    for c in 0..k2 {
        for r in 0..k1 {
            let mut s = if r == c { diag } else { 0.0 };
            for i in r..k1 {
                s += t1[i + r * k1] * tmp[i + c * k1];
            }
            out[r + c * k1] = s;
        }
    }
}

/// In-place lower Cholesky of a k x k block (only the lower triangle is
/// read; the strict upper triangle is zeroed). Returns false when a pivot is
/// not positive.
#[inline(always)]
pub fn chol_lower<D: Dim>(a: &mut [f64], k: D) -> bool {
    let k = k.get();
    let a = &mut a[..k * k];
    for j in 0..k {
        let mut d = a[j + j * k];
        for i in 0..j {
            d -= a[j + i * k] * a[j + i * k];
        }
        if !(d > 0.0) || !d.is_finite() {
            return false;
        }
        let d = d.sqrt();
        a[j + j * k] = d;
        for r in j + 1..k {
            let mut v = a[r + j * k];
            for i in 0..j {
                v -= a[r + i * k] * a[j + i * k];
            }
            a[r + j * k] = v / d;
        }
        for r in 0..j {
            a[r + j * k] = 0.0;
        }
    }
    true
}

/// In-place Cholesky S = RᵀR of a small dense symmetric matrix (the fixed
/// effects and response); the upper triangle receives R and the strict lower
/// triangle is zeroed. On failure returns the index of the first
/// non-positive pivot.
pub fn chol_upper(mut s: MatMut<'_, f64>) -> Result<(), usize> {
    let m = s.nrows();
    for j in 0..m {
        let mut d = s[(j, j)];
        for k in 0..j {
            d -= s[(k, j)] * s[(k, j)];
        }
        if !(d > 0.0) || !d.is_finite() {
            return Err(j);
        }
        let d = d.sqrt();
        s[(j, j)] = d;
        for i in j + 1..m {
            let mut v = s[(j, i)];
            for k in 0..j {
                v -= s[(k, j)] * s[(k, i)];
            }
            s[(j, i)] = v / d;
        }
        for i in j + 1..m {
            s[(i, j)] = 0.0;
        }
    }
    Ok(())
}

/// `B := B L⁻ᵀ` for lower-triangular `L` (k x k) and `B` (m x k).
#[inline]
pub fn solve_right_lt(l: &[f64], k: usize, b: &mut [f64], m: usize) {
    for c in 0..k {
        for i in 0..c {
            let f = l[c + i * k];
            if f != 0.0 {
                for r in 0..m {
                    b[r + c * m] -= b[r + i * m] * f;
                }
            }
        }
        let d = l[c + c * k];
        for r in 0..m {
            b[r + c * m] /= d;
        }
    }
}

/// `x := L⁻¹ x` for lower-triangular `L` (k x k); `x` has stride `stride`.
#[inline(always)]
pub fn solve_l<D: Dim>(l: &[f64], k: D, x: &mut [f64], stride: usize) {
    let k = k.get();
    for r in 0..k {
        let mut v = x[r * stride];
        for i in 0..r {
            v -= l[r + i * k] * x[i * stride];
        }
        x[r * stride] = v / l[r + r * k];
    }
}

/// `x := L⁻ᵀ x` for lower-triangular `L` (k x k); `x` has stride `stride`.
#[inline(always)]
pub fn solve_lt<D: Dim>(l: &[f64], k: D, x: &mut [f64], stride: usize) {
    let k = k.get();
    for r in (0..k).rev() {
        let mut v = x[r * stride];
        for i in r + 1..k {
            v -= l[i + r * k] * x[i * stride];
        }
        x[r * stride] = v / l[r + r * k];
    }
}

/// `x := L⁻¹ x` for lower-triangular `L` (k x k) whose diagonal's
/// reciprocals are `dinv`: multiplications only.
#[inline(always)]
pub fn solve_l_recip<D: Dim>(l: &[f64], dinv: &[f64], k: D, x: &mut [f64]) {
    let k = k.get();
    for r in 0..k {
        let mut v = x[r];
        for i in 0..r {
            v -= l[r + i * k] * x[i];
        }
        x[r] = v * dinv[r];
    }
}

/// `x := L⁻ᵀ x`, as [`solve_l_recip`] (k x k, the diagonal's reciprocals given).
#[inline(always)]
pub fn solve_lt_recip<D: Dim>(l: &[f64], dinv: &[f64], k: D, x: &mut [f64]) {
    let k = k.get();
    for r in (0..k).rev() {
        let mut v = x[r];
        for i in r + 1..k {
            v -= l[i + r * k] * x[i];
        }
        x[r] = v * dinv[r];
    }
}

/// `x := Tᵀ x` for lower-triangular `T` (k x k), in place.
#[inline(always)]
pub fn tt_mul<D: Dim>(t: &[f64], k: D, x: &mut [f64]) {
    let k = k.get();
    // row r reads x[r..], which rows before it have not written
    for r in 0..k {
        let mut s = 0.0;
        for i in r..k {
            s += t[i + r * k] * x[i];
        }
        x[r] = s;
    }
}

/// `x := T x` for lower-triangular `T` (k x k), in place.
#[inline(always)]
pub fn t_mul(t: &[f64], k: usize, x: &mut [f64]) {
    // row r reads x[..=r], which rows after it have not written
    for r in (0..k).rev() {
        let mut s = 0.0;
        for c in 0..=r {
            s += t[r + c * k] * x[c];
        }
        x[r] = s;
    }
}

/// `Σ 2 log d` over the diagonal values `d ≥ 1` of Cholesky factors, with one
/// logarithm per eight values (products of a few of them stay finite).
pub struct LogDet {
    prod: f64,
    count: usize,
    acc: f64,
}

impl Default for LogDet {
    fn default() -> Self {
        Self {
            prod: 1.0,
            count: 0,
            acc: 0.0,
        }
    }
}

impl LogDet {
    #[inline(always)]
    pub fn push(&mut self, d: f64) {
        self.prod *= d;
        self.count += 1;
        if self.count == 8 {
            self.acc += 2.0 * self.prod.ln();
            self.prod = 1.0;
            self.count = 0;
        }
    }

    pub fn finish(self) -> f64 {
        if self.count > 0 {
            self.acc + 2.0 * self.prod.ln()
        } else {
            self.acc
        }
    }
}

/// Column `j` of a column-major matrix as a slice.
#[inline]
pub fn col(m: MatRef<'_, f64>, j: usize) -> &[f64] {
    m.col(j).try_as_col_major().unwrap().as_slice()
}

/// The first of `rows` when they are consecutive (`rows` sorted and
/// distinct, as a pattern's rows, and not empty): they are when they span
/// their count. Crossed designs' columns are, and updates along them are
/// then vector operations on a slice rather than scattered ones.
#[inline(always)]
pub fn consecutive(rows: &[usize]) -> Option<usize> {
    let (&r0, &r1) = (rows.first()?, rows.last()?);
    (r1 - r0 + 1 == rows.len()).then_some(r0)
}

/// Column `j` of a column-major matrix as a mutable slice.
#[inline]
pub fn col_mut(m: MatMut<'_, f64>, j: usize) -> &mut [f64] {
    m.col_mut(j).try_as_col_major_mut().unwrap().as_slice_mut()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_kernels() {
        // A = L Lᵀ with L = [[2,0],[1,3]]
        let mut a = vec![4.0, 2.0, 2.0, 10.0];
        assert!(chol_lower(&mut a, 2));
        assert_eq!(a, vec![2.0, 1.0, 0.0, 3.0]);
        let mut c = vec![4.0, 2.0, 2.0, 10.0];
        assert!(chol_lower(&mut c, K::<2>));
        assert_eq!(a, c);
        let mut x = vec![2.0, 7.0]; // L x = [2, 7] -> x = [1, 2]
        solve_l(&a, 2, &mut x, 1);
        assert_eq!(x, vec![1.0, 2.0]);
        solve_lt(&a, 2, &mut x, 1); // Lᵀ y = [1, 2]
        assert!((2.0 * x[0] + x[1] - 1.0).abs() < 1e-15 && (3.0 * x[1] - 2.0).abs() < 1e-15);
        // B L⁻ᵀ: B = X Lᵀ with X = [[1, 2]] (1 x 2): B = [2, 1*1 + 2*3] = [2, 7]
        let mut b = vec![2.0, 7.0];
        solve_right_lt(&a, 2, &mut b, 1);
        assert_eq!(b, vec![1.0, 2.0]);
        assert!(!chol_lower(&mut [1.0, 2.0, 2.0, 1.0], 2));
        // T x and Tᵀ x with T = L
        let mut v = vec![1.0, 2.0];
        t_mul(&a, 2, &mut v);
        assert_eq!(v, vec![2.0, 7.0]);
        tt_mul(&a, K::<2>, &mut v); // [2*2 + 1*7, 3*7]
        assert_eq!(v, vec![11.0, 21.0]);
        // Tᵀ A T + I with T = L, A = I: LᵀL + I
        let (mut tmp, mut out) = (vec![0.0; 4], vec![0.0; 4]);
        sandwich(
            &a,
            2,
            &[1.0, 0.0, 0.0, 1.0],
            &a,
            K::<2>,
            1.0,
            &mut tmp,
            &mut out,
        );
        assert_eq!(out, vec![6.0, 3.0, 3.0, 10.0]);
        let mut ld = LogDet::default();
        for d in [2.0, 3.0] {
            ld.push(d);
        }
        assert!((ld.finish() - 2.0 * 6f64.ln()).abs() < 1e-15);
    }

    #[test]
    fn upper_cholesky_reports_the_failing_pivot() {
        let mut s = faer::Mat::<f64>::from_fn(3, 3, |i, j| if i == j { 4.0 } else { 1.0 });
        assert!(chol_upper(s.as_mut()).is_ok());
        assert_eq!(s[(1, 0)], 0.0);
        assert_eq!(s[(0, 0)], 2.0);
        let mut t = faer::Mat::<f64>::from_fn(2, 2, |_, _| 1.0);
        assert_eq!(chol_upper(t.as_mut()), Err(1));
    }
}
