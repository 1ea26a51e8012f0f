//! The exponential and the natural logarithm on four lanes at once, for the
//! row passes (`fused.rs`), where glibc's scalar `exp` and `log` took about
//! 40% of a logistic model's pass.
//!
//! Both are fdlibm's algorithms (FreeBSD's `e_exp.c` and `e_log.c`, as the
//! `libm` crate ports them), error below 1 ulp, written without branches on
//! the lanes so that the compiler vectorizes them (SSE2 on the baseline
//! target: two instructions per operation):
//!
//! - exp: k = round(x/ln 2) by adding and subtracting 1.5·2⁵², r = x − k ln 2
//!   in two parts (ln 2's high part has 32 trailing zero bits: k·ln2_hi is
//!   exact), exp(r) = 1 + r + r c/(2 − c) with c = r − r²P(r²) (a degree-5
//!   Remez polynomial), then times 2ᵏ built from its exponent bits.
//! - log: x = 2ᵏ(1 + f) with √2/2 ≤ 1 + f < √2 from the bits, s = f/(2 + f),
//!   log(1 + f) = f − (f²/2 − s(f²/2 + R(s²))) with R a degree-7 Remez
//!   polynomial in s², plus k ln 2 in two parts.
//!
//! Lanes outside the range where these need no special case (|x| > 707 for
//! exp, where 2ᵏ or the result leaves the normal range, and NaN; for log,
//! zero, negative, subnormal, infinite and NaN arguments) send the whole
//! group to the standard library's scalar function, which handles them:
//! results there are std's, bit for bit.

// fdlibm's constants as it publishes them (their hexadecimal values are the
// intended ones; the decimals carry more digits than a double holds)
#![allow(clippy::excessive_precision)]

use std::f64::consts::LOG2_E as INV_LN2;

/// Four lanes.
pub(super) type F4 = [f64; 4];

/// 1.5·2⁵²: x + SHIFT − SHIFT rounds x to an integer (|x| < 2⁵¹), and the
/// integer is in the low bits of x + SHIFT.
const SHIFT: f64 = 6755399441055744.0;
const LN2_HI: f64 = 6.93147180369123816490e-01;
const LN2_LO: f64 = 1.90821492927058770002e-10;
const P1: f64 = 1.66666666666666019037e-01;
const P2: f64 = -2.77777777770155933842e-03;
const P3: f64 = 6.61375632143793436117e-05;
const P4: f64 = -1.65339022054652515390e-06;
const P5: f64 = 4.13813679705723846039e-08;
const LG1: f64 = 6.666666666666735130e-01;
const LG2: f64 = 3.999999999940941908e-01;
const LG3: f64 = 2.857142874366239149e-01;
const LG4: f64 = 2.222219843214978396e-01;
const LG5: f64 = 1.818357216161805012e-01;
const LG6: f64 = 1.531383769920937332e-01;
const LG7: f64 = 1.479819860511658591e-01;
/// |x| up to which exp's lanes take the polynomial: k within ±1020, so 2ᵏ
/// and exp(x) (within a factor √2 of it) are normal numbers.
const EXP_FAST: f64 = 707.0;

/// exp of each lane (see the module's notes).
#[inline(always)]
pub(super) fn exp4(x: F4) -> F4 {
    // !(|x| <= EXP_FAST) also catches NaN
    let mut special = false;
    for v in x {
        special |= !(v.abs() <= EXP_FAST);
    }
    if special {
        let mut out = x;
        for v in &mut out {
            *v = v.exp();
        }
        return out;
    }
    let mut out = [0.0; 4];
    for l in 0..4 {
        let t = x[l] * INV_LN2 + SHIFT;
        let k = t - SHIFT;
        // k as an integer: the low bits of t
        let ki = t.to_bits().wrapping_sub(SHIFT.to_bits());
        let hi = x[l] - k * LN2_HI;
        let lo = k * LN2_LO;
        let r = hi - lo;
        let rr = r * r;
        let c = r - rr * (P1 + rr * (P2 + rr * (P3 + rr * (P4 + rr * P5))));
        let y = 1.0 + (r * c / (2.0 - c) - lo + hi);
        let scale = f64::from_bits(ki.wrapping_add(1023) << 52);
        out[l] = y * scale;
    }
    out
}

/// The natural logarithm of each lane (see the module's notes).
#[inline(always)]
pub(super) fn ln4(x: F4) -> F4 {
    // positive normal finite numbers: their bits between these two
    const MIN_NORMAL: u64 = 0x0010_0000_0000_0000;
    const INF: u64 = 0x7ff0_0000_0000_0000;
    if x.iter().any(|v| !(MIN_NORMAL..INF).contains(&v.to_bits())) {
        return x.map(f64::ln);
    }
    let mut out = [0.0; 4];
    for l in 0..4 {
        let ui = x[l].to_bits();
        // the high word moved so that the exponent field counts from √2/2
        let hx = (ui >> 32) + (0x3ff0_0000 - 0x3fe6_a09e);
        // k + 1023 (1..=2046) as a double, exactly: through 2⁵²'s bits
        let kb = f64::from_bits(0x4330_0000_0000_0000 | (hx >> 20)) - 4503599627370496.0;
        let k = kb - 1023.0;
        let m = f64::from_bits((((hx & 0x000f_ffff) + 0x3fe6_a09e) << 32) | (ui & 0xffff_ffff));
        let f = m - 1.0;
        let hfsq = 0.5 * f * f;
        let s = f / (2.0 + f);
        let z = s * s;
        let w = z * z;
        let t1 = w * (LG2 + w * (LG4 + w * LG6));
        let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
        let r = t2 + t1;
        out[l] = s * (hfsq + r) + k * LN2_LO - hfsq + f + k * LN2_HI;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The distance in units in the last place between two finite doubles
    /// of the same sign (0 when both are equal, including infinities).
    fn ulps(a: f64, b: f64) -> u64 {
        if a == b {
            return 0;
        }
        assert!(
            a.is_finite() && b.is_finite() && (a >= 0.0) == (b >= 0.0),
            "{a} vs {b}"
        );
        a.abs().to_bits().abs_diff(b.abs().to_bits())
    }

    /// A reproducible stream of u64 (splitmix64).
    fn stream(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }
    }

    /// The largest distance from std's function over `xs`, four at a time.
    fn worst(xs: &[f64], f4: fn(F4) -> F4, f: fn(f64) -> f64) -> u64 {
        xs.chunks_exact(4)
            .map(|c| {
                let v = f4([c[0], c[1], c[2], c[3]]);
                (0..4).map(|l| ulps(v[l], f(c[l]))).max().unwrap()
            })
            .max()
            .unwrap()
    }

    #[test]
    fn exp_is_within_one_ulp_of_std_over_its_range() {
        let mut next = stream(1);
        let unit = |b: u64| (b >> 11) as f64 / (1u64 << 53) as f64;
        // uniform over [−707, 707], over [−1, 1] and over [−40, 0] (the logit rows')
        let mut xs: Vec<f64> = Vec::new();
        for (lo, hi) in [(-707.0, 707.0), (-1.0, 1.0), (-40.0, 0.0)] {
            xs.extend((0..400_000).map(|_| lo + (hi - lo) * unit(next())));
        }
        // tiny arguments of both signs, ±0 and the ends of the range
        xs.extend((0..4000).map(|i| f64::from(i - 2000) * 1e-300));
        xs.extend([
            0.0,
            -0.0,
            707.0,
            -707.0,
            1e-20,
            -1e-20,
            0.5 * LN2_HI,
            -0.5 * LN2_HI,
        ]);
        xs.truncate(xs.len() / 4 * 4);
        assert!(worst(&xs, exp4, f64::exp) <= 1);
        assert_eq!(exp4([0.0, 1.0, -1.0, 2.0])[0], 1.0);
    }

    #[test]
    fn exp_special_lanes_are_std_results() {
        let cases = [
            [710.0, 1.0, 2.0, 3.0],
            [-746.0, 0.0, 0.5, -0.5],
            [-708.5, -720.0, 709.7, 708.0],
            [f64::NAN, 1.0, f64::INFINITY, f64::NEG_INFINITY],
        ];
        for c in cases {
            let v = exp4(c);
            for l in 0..4 {
                let s = c[l].exp();
                assert!(
                    v[l] == s || (v[l].is_nan() && s.is_nan()),
                    "{} {}",
                    c[l],
                    v[l]
                );
            }
        }
        let v = exp4([710.0, -746.0, f64::NAN, -708.5]);
        assert_eq!(v[0], f64::INFINITY);
        assert_eq!(v[1], 0.0);
        assert!(v[2].is_nan());
        assert!(v[3] > 0.0 && v[3] < f64::MIN_POSITIVE);
    }

    #[test]
    fn ln_is_within_one_ulp_of_std_over_the_normal_numbers() {
        let mut next = stream(2);
        let mut xs: Vec<f64> = Vec::new();
        // random bit patterns of positive normal numbers (every exponent)
        xs.extend(
            (0..400_000)
                .map(|_| f64::from_bits(next() >> 1))
                .filter(|v| v.is_normal()),
        );
        // near 1 (where log is small and cancellation would show), and (1, 2] (the logit rows')
        let unit = |b: u64| (b >> 11) as f64 / (1u64 << 53) as f64;
        xs.extend((0..400_000).map(|_| 1.0 + 1e-3 * (unit(next()) - 0.5)));
        xs.extend((0..400_000).map(|_| 1.0 + unit(next())));
        xs.extend([
            1.0,
            2.0,
            0.5,
            f64::MIN_POSITIVE,
            f64::MAX,
            1.0 + f64::EPSILON,
            1.0 - 1e-16,
        ]);
        xs.truncate(xs.len() / 4 * 4);
        assert!(worst(&xs, ln4, f64::ln) <= 1);
        assert_eq!(ln4([1.0, 1.0, 1.0, 1.0]), [0.0; 4]);
    }

    #[test]
    fn ln_special_lanes_are_std_results() {
        let sub = f64::MIN_POSITIVE / 8.0;
        let cases = [
            [0.0, 1.0, 2.0, 3.0],
            [-1.0, 1.0, 2.0, 3.0],
            [sub, 1.0, f64::INFINITY, f64::NAN],
            [-0.0, f64::NEG_INFINITY, 4.0, 5e-310],
        ];
        for c in cases {
            let v = ln4(c);
            for l in 0..4 {
                let s = c[l].ln();
                assert!(
                    v[l] == s || (v[l].is_nan() && s.is_nan()),
                    "{} {}",
                    c[l],
                    v[l]
                );
            }
        }
        let v = ln4([0.0, -1.0, f64::INFINITY, sub]);
        assert_eq!(v[0], f64::NEG_INFINITY);
        assert!(v[1].is_nan());
        assert_eq!(v[2], f64::INFINITY);
        assert!((v[3] + 1025.0 * std::f64::consts::LN_2).abs() < 1e-9);
    }
}
