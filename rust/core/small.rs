//! Dense kernels on tiny column-major blocks (k x k templates, k x m panels).
//! Sizes are the number of coefficients of a random-effects term, so these
//! are plain loops.

/// `out = T1ᵀ A T2` for lower-triangular `T1` (k1 x k1), `T2` (k2 x k2) and
/// `A` (k1 x k2). `tmp` has room for k1*k2 values.
#[inline]
pub fn sandwich(
    t1: &[f64],
    k1: usize,
    a: &[f64],
    t2: &[f64],
    k2: usize,
    tmp: &mut [f64],
    out: &mut [f64],
) {
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
            let mut s = 0.0;
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
#[inline]
pub fn chol_lower(a: &mut [f64], k: usize) -> bool {
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
#[inline]
pub fn solve_l(l: &[f64], k: usize, x: &mut [f64], stride: usize) {
    for r in 0..k {
        let mut v = x[r * stride];
        for i in 0..r {
            v -= l[r + i * k] * x[i * stride];
        }
        x[r * stride] = v / l[r + r * k];
    }
}

/// `x := L⁻ᵀ x` for lower-triangular `L` (k x k); `x` has stride `stride`.
#[inline]
pub fn solve_lt(l: &[f64], k: usize, x: &mut [f64], stride: usize) {
    for r in (0..k).rev() {
        let mut v = x[r * stride];
        for i in r + 1..k {
            v -= l[i + r * k] * x[i * stride];
        }
        x[r * stride] = v / l[r + r * k];
    }
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
        let mut x = vec![2.0, 7.0]; // L x = [2, 7] -> x = [1, 2]
        solve_l(&a, 2, &mut x, 1);
        assert_eq!(x, vec![1.0, 2.0]);
        solve_lt(&a, 2, &mut x, 1); // Lᵀ y = [1, 2] -> y = [1/2 - 2/6/... ]
        assert!((2.0 * x[0] + x[1] - 1.0).abs() < 1e-15 && (3.0 * x[1] - 2.0).abs() < 1e-15);
        // B L⁻ᵀ: B = X Lᵀ with X = [[1, 2]] (1 x 2): B = [2, 1*1 + 2*3] = [2, 7]
        let mut b = vec![2.0, 7.0];
        solve_right_lt(&a, 2, &mut b, 1);
        assert_eq!(b, vec![1.0, 2.0]);
        assert!(!chol_lower(&mut [1.0, 2.0, 2.0, 1.0], 2));
    }
}
