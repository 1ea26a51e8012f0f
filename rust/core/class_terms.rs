//! The class terms of the grouped Schur complement (`schur_classes.rs`):
//! for every position of the pattern, its (class, value of B_v) pairs, in
//! the compact forms the fill streams.

/// The class terms (class v, value B_v[r, c]) of all positions.
#[derive(Clone, Debug)]
pub(super) enum Terms {
    /// Values that are integers below 2¹⁶ (counts of shared levels, the
    /// usual case) packed with their class into 4 bytes: the fill streams
    /// these, so their size is its memory traffic.
    Packed(Vec<u32>),
    Wide {
        cls: Vec<u16>,
        val: Vec<f64>,
    },
    /// The dense build's: every position has a term for every class, in
    /// class order, so the class is the term's place and is not stored;
    /// values are 2-byte integers while they can be.
    Dense(DenseValues),
}

/// The dense build's values (see [`Terms::Dense`]).
#[derive(Clone, Debug)]
pub(super) enum DenseValues {
    Small(Vec<u16>),
    Wide(Vec<f64>),
}

impl DenseValues {
    /// Writes value `v` at `t`, widening every value to f64 at the first
    /// that is not an integer below 2¹⁶.
    pub(super) fn set(&mut self, t: usize, v: f64) {
        if let DenseValues::Small(s) = self {
            if (0.0..65536.0).contains(&v) && v.fract() == 0.0 {
                s[t] = v as u16;
                return;
            }
            *self = DenseValues::Wide(s.iter().map(|&x| f64::from(x)).collect());
        }
        if let DenseValues::Wide(w) = self {
            w[t] = v;
        }
    }
}

impl Terms {
    pub(super) fn new(cls: Vec<u16>, val: Vec<f64>) -> Self {
        if val
            .iter()
            .all(|&v| (0.0..65536.0).contains(&v) && v.fract() == 0.0)
        {
            let packed = cls
                .iter()
                .zip(&val)
                .map(|(&c, &v)| u32::from(c) | (v as u32) << 16)
                .collect();
            Terms::Packed(packed)
        } else {
            Terms::Wide { cls, val }
        }
    }

    /// The terms of the given ranges, one after the other.
    pub(super) fn gather(&self, ranges: &[(usize, usize)]) -> Self {
        fn cat<T: Copy>(src: &[T], ranges: &[(usize, usize)]) -> Vec<T> {
            let mut out = Vec::with_capacity(src.len());
            for &(a, b) in ranges {
                out.extend_from_slice(&src[a..b]);
            }
            out
        }
        match self {
            Terms::Packed(p) => Terms::Packed(cat(p, ranges)),
            Terms::Wide { cls, val } => Terms::Wide {
                cls: cat(cls, ranges),
                val: cat(val, ranges),
            },
            Terms::Dense(DenseValues::Small(v)) => Terms::Dense(DenseValues::Small(cat(v, ranges))),
            Terms::Dense(DenseValues::Wide(v)) => Terms::Dense(DenseValues::Wide(cat(v, ranges))),
        }
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Terms::Packed(p) => p.len(),
            Terms::Wide { val, .. } => val.len(),
            Terms::Dense(DenseValues::Small(v)) => v.len(),
            Terms::Dense(DenseValues::Wide(v)) => v.len(),
        }
    }

    /// Σ over terms e0..e1 of (w[class] · value, w2[class] · value).
    #[inline(always)]
    pub(super) fn dot2(&self, w: &[f64], w2: &[f64], e0: usize, e1: usize) -> (f64, f64) {
        let (mut s, mut s2) = (0.0, 0.0);
        let mut add = |c: usize, v: f64| {
            s += w[c] * v;
            s2 += w2[c] * v;
        };
        match self {
            Terms::Packed(p) => {
                for &t in &p[e0..e1] {
                    add((t & 0xffff) as usize, f64::from(t >> 16));
                }
            }
            Terms::Wide { cls, val } => {
                for (&c, &v) in cls[e0..e1].iter().zip(&val[e0..e1]) {
                    add(usize::from(c), v);
                }
            }
            Terms::Dense(DenseValues::Small(v)) => {
                for (c, &v) in v[e0..e1].iter().enumerate() {
                    add(c, f64::from(v));
                }
            }
            Terms::Dense(DenseValues::Wide(v)) => {
                for (c, &v) in v[e0..e1].iter().enumerate() {
                    add(c, v);
                }
            }
        }
        (s, s2)
    }

    /// Σ over terms e0..e1 of w[class] · value. `w` has an entry for every
    /// possible class, so that indexing it needs no bounds check.
    #[inline(always)]
    pub(super) fn dot(&self, w: &Weights, e0: usize, e1: usize) -> f64 {
        match self {
            Terms::Packed(p) => dot4(&p[e0..e1], |&t| {
                w[(t & 0xffff) as usize] * f64::from(t >> 16)
            }),
            Terms::Wide { cls, val } => {
                let (cls, val) = (&cls[e0..e1], &val[e0..e1]);
                let mut s = 0.0;
                for (&v, &b) in cls.iter().zip(val) {
                    s += w[usize::from(v)] * b;
                }
                s
            }
            Terms::Dense(DenseValues::Small(v)) => dense_dot(&v[e0..e1], w, |&x| f64::from(x)),
            Terms::Dense(DenseValues::Wide(v)) => dense_dot(&v[e0..e1], w, |&x| x),
        }
    }
}

/// Σ_c w[c] · value(v[c]) in four independent sums.
#[inline(always)]
fn dense_dot<T>(v: &[T], w: &[f64], value: impl Fn(&T) -> f64) -> f64 {
    let w = &w[..v.len()];
    let mut acc = [0.0; 4];
    let (vc, wc) = (v.chunks_exact(4), w.chunks_exact(4));
    let (vr, wr) = (vc.remainder(), wc.remainder());
    for (a, b) in vc.zip(wc) {
        for i in 0..4 {
            acc[i] += b[i] * value(&a[i]);
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for (a, b) in vr.iter().zip(wr) {
        s += b * value(a);
    }
    s
}

pub(super) type Weights = [f64; 1 << 16];

/// Σ f(item) in four independent sums: a single running sum is bound by the
/// latency of its additions.
#[inline(always)]
fn dot4<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let mut acc = [0.0; 4];
    let mut chunks = items.chunks_exact(4);
    for ch in &mut chunks {
        for (a, t) in acc.iter_mut().zip(ch) {
            *a += f(t);
        }
    }
    let mut s = (acc[0] + acc[1]) + (acc[2] + acc[3]);
    for t in chunks.remainder() {
        s += f(t);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_values_widen_keeping_what_was_written() {
        let mut v = DenseValues::Small(vec![0; 4]);
        v.set(0, 3.0);
        v.set(2, 65535.0);
        assert!(matches!(&v, DenseValues::Small(s) if s == &[3, 0, 65535, 0]));
        v.set(1, 0.5);
        v.set(3, 65536.0);
        assert!(matches!(&v, DenseValues::Wide(w) if w == &[3.0, 0.5, 65535.0, 65536.0]));
        let mut w = Box::new([0.0; 1 << 16]);
        w[..4].copy_from_slice(&[1.0, 2.0, 3.0, 4.0]);
        let t = Terms::Dense(v);
        let want = 3.0 + 1.0 + 3.0 * 65535.0 + 4.0 * 65536.0;
        assert_eq!(t.dot(&w, 0, 4), want);
        assert_eq!(t.dot2(&w[..], &w[..], 0, 4), (want, want));
    }
}
