//! One pass over the rows of a model with one or two scalar terms
//! (`fused.rs`): η, the row's working weight, response and deviance
//! residual, and their products added into sums of A's blocks.
//!
//! The rows go through the family's row kernel in blocks (`BLOCK`), four at
//! a time (the logit kernel with the vectorized exponential and logarithm
//! of `vmath.rs`), then one by one into the sums. The pass is compiled for
//! the processor's vector width (pulp's dispatch).

use rayon::prelude::*;

use super::fused::{EtaFrom, TermCols};
use super::helpers::RowKernel;
use super::vmath::F4;
use crate::core::family::Family;

/// Rows per chunk of the parallel pass, and the most chunks.
pub(super) const CHUNK_ROWS: usize = 1 << 16;
pub(super) const MAX_CHUNKS: usize = 16;

/// One chunk's sums of a pass (A's blocks as `CrossProducts::blocks_mut`
/// lays them out) and its deviance; the first row whose working weight or
/// response is not usable, with its weight and η.
#[derive(Clone, Default)]
pub(super) struct Sums {
    pub a11: Vec<f64>,
    pub a22d: Vec<f64>,
    pub a21: Vec<f64>,
    /// Z̃ᵀỹ (q), and Z̃ᵀX̃ level by level (q x p, row-major: p values per level).
    pub zty: Vec<f64>,
    pub zx: Vec<f64>,
    pub xx: Vec<f64>,
    pub dev: f64,
    pub bad: Option<(usize, f64, f64)>,
}

/// What a pass reads.
pub(super) struct Rows<'a> {
    pub p: usize,
    pub xrow: &'a [f64],
    pub y: &'a [f64],
    pub prior: &'a [f64],
    pub offset: &'a [f64],
    pub xb: &'a [f64],
    /// Per row, the offset of its (first, other) block in A21's layout.
    pub slots: &'a [usize],
    pub first: TermCols<'a>,
    pub other: Option<TermCols<'a>>,
    pub lf: f64,
    pub lr: f64,
}

impl Rows<'_> {
    /// η of row i.
    #[inline(always)]
    pub fn eta(&self, i: usize, from: EtaFrom) -> f64 {
        self.eta_p::<ANY_P>(i, from)
    }

    /// η of row i, X with P columns (`ANY_P`: the model's p; 0: Xβ formed).
    #[inline(always)]
    fn eta_p<const P: usize>(&self, i: usize, from: EtaFrom) -> f64 {
        match from {
            EtaFrom::Given(e) => e[i],
            EtaFrom::Modes { beta, u, with_beta } => {
                let mut e = if with_beta {
                    let p = if P == ANY_P { self.p } else { P };
                    let xi = &self.xrow[i * p..(i + 1) * p];
                    xi.iter().zip(&beta[..p]).map(|(a, b)| a * b).sum()
                } else {
                    self.xb[i]
                };
                e += self.offset[i];
                let f = &self.first;
                e += self.lf * f.z[i] * u[f.offset + f.codes[i] as usize];
                if let Some(r) = &self.other {
                    e += self.lr * r.z[i] * u[r.offset + r.codes[i] as usize];
                }
                e
            }
        }
    }

    /// Rows r0..r1 into `s` (zeroed first): the deviance, and the sums of A
    /// at the working weights (with X's blocks when η has Xβ in it).
    ///
    /// Compiled for the processor's vector width (pulp's dispatch: AVX2
    /// with four lanes where the processor has it, two otherwise on
    /// x86-64): the same numbers either way, as Rust neither fuses nor
    /// reorders floating-point operations.
    fn pass(
        &self,
        from: EtaFrom,
        r0: usize,
        r1: usize,
        s: &mut Sums,
        mu: &mut [f64],
        row: RowKernel,
    ) {
        struct Op<'r, 'a, 'm> {
            rows: &'r Rows<'a>,
            args: (EtaFrom<'r>, usize, usize, RowKernel),
            s: &'m mut Sums,
            mu: &'m mut [f64],
        }
        impl pulp::WithSimd for Op<'_, '_, '_> {
            type Output = ();
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) {
                let (from, r0, r1, row) = self.args;
                let (rows, s, mu) = (self.rows, self.s, self.mu);
                if let EtaFrom::Modes {
                    with_beta: false, ..
                } = from
                {
                    return rows.pass_cols::<0>(from, r0, r1, s, mu, row);
                }
                // X's columns as a constant: the products unrolled
                match rows.p {
                    1 => rows.pass_cols::<1>(from, r0, r1, s, mu, row),
                    2 => rows.pass_cols::<2>(from, r0, r1, s, mu, row),
                    3 => rows.pass_cols::<3>(from, r0, r1, s, mu, row),
                    4 => rows.pass_cols::<4>(from, r0, r1, s, mu, row),
                    5 => rows.pass_cols::<5>(from, r0, r1, s, mu, row),
                    6 => rows.pass_cols::<6>(from, r0, r1, s, mu, row),
                    7 => rows.pass_cols::<7>(from, r0, r1, s, mu, row),
                    8 => rows.pass_cols::<8>(from, r0, r1, s, mu, row),
                    _ => rows.pass_cols::<ANY_P>(from, r0, r1, s, mu, row),
                }
            }
        }
        pulp::Arch::new().dispatch(Op {
            rows: self,
            args: (from, r0, r1, row),
            s,
            mu,
        });
    }

    /// `pass` with P columns of X in the sums (0: none, PIRLS on u;
    /// `ANY_P`: the model's p).
    #[inline(always)]
    fn pass_cols<const P: usize>(
        &self,
        from: EtaFrom,
        r0: usize,
        r1: usize,
        s: &mut Sums,
        mu: &mut [f64],
        row: RowKernel,
    ) {
        let with_x = P != 0;
        let p = if P == ANY_P || !with_x { self.p } else { P };
        let p1 = p + 1;
        s.a11.fill(0.0);
        s.a22d.fill(0.0);
        s.a21.fill(0.0);
        s.zty.fill(0.0);
        s.xx.fill(0.0);
        if with_x {
            s.zx.fill(0.0);
        }
        let (mut dev, mut zz) = (0.0, 0.0);
        s.bad = None;
        // [X ỹ]ᵀW[X ỹ] (whole squares) in a local array when X has fewer than 16 columns
        let local = p1 <= 16;
        let (mut xr, mut xl) = ([0.0; 16], [0.0; 256]);
        let (f, other) = (&self.first, self.other.as_ref());
        // each term's sums at the level of the last rows (see `Run`)
        let zx_run = if with_x && local { p } else { 0 };
        let mut runs = [Run::default(), Run::default()];
        // BLOCK rows at a time through the row kernel, four by four (the last
        // block padded with copies of its first row), then one by one into
        // the sums: the groups' exponentials and logarithms, long chains of
        // dependent operations, overlap when nothing comes between them
        let mut rows = [(0.0, 0.0, 0.0, 0.0); BLOCK];
        let mut ev = [0.0; BLOCK];
        for g in (r0..r1).step_by(BLOCK) {
            let lanes = (r1 - g).min(BLOCK);
            for (l, e) in ev.iter_mut().enumerate() {
                *e = self.eta_p::<P>(g + if l < lanes { l } else { 0 }, from);
            }
            for k in (0..BLOCK).step_by(4) {
                let (mut y4, mut p4): (F4, F4) = ([0.0; 4], [0.0; 4]);
                for l in 0..4 {
                    let i = g + if k + l < lanes { k + l } else { 0 };
                    (y4[l], p4[l]) = (self.y[i], self.prior[i]);
                }
                let e4 = [ev[k], ev[k + 1], ev[k + 2], ev[k + 3]];
                rows[k..k + 4].copy_from_slice(&row.four(e4, y4, p4));
            }
            for (l, &(w, r, d, m)) in rows.iter().enumerate().take(lanes) {
                let (i, e) = (g + l, ev[l]);
                dev += d;
                if let Some(slot) = mu.get_mut(i - r0) {
                    *slot = m;
                }
                let mut z = e - self.offset[i] + r;
                if !with_x {
                    z -= self.xb[i];
                }
                if !(w > 0.0 && w.is_finite() && z.is_finite()) {
                    s.bad.get_or_insert((i, w, e));
                    continue;
                }
                let xi = &self.xrow[i * p * usize::from(with_x)..(i * p + p) * usize::from(with_x)];
                let (c1, z1) = (f.codes[i] as usize, f.z[i]);
                let wz1 = w * z1;
                if runs[0].level != c1 {
                    runs[0].flush_into(s, false, f.offset, p, zx_run);
                    runs[0].level = c1;
                }
                runs[0].add::<P>(wz1, z1, z, xi, zx_run);
                if let Some(o) = other {
                    let (c2, z2) = (o.codes[i] as usize, o.z[i]);
                    let wz2 = w * z2;
                    s.a21[self.slots[i]] += wz1 * z2;
                    if runs[1].level != c2 {
                        runs[1].flush_into(s, true, o.offset, p, zx_run);
                        runs[1].level = c2;
                    }
                    runs[1].add::<P>(wz2, z2, z, xi, zx_run);
                    if with_x && !local {
                        let zx2 = &mut s.zx[(o.offset + c2) * p..(o.offset + c2 + 1) * p];
                        for (a, &xj) in zx2.iter_mut().zip(xi) {
                            *a += wz2 * xj;
                        }
                    }
                }
                if !with_x {
                    zz += w * z * z;
                    continue;
                }
                if local {
                    xr[..p].copy_from_slice(xi);
                    xr[p] = z;
                    for k in 0..p1 {
                        let wx = w * xr[k];
                        let dst = &mut xl[k * 16..k * 16 + p1];
                        for (a, &xj) in dst.iter_mut().zip(&xr[..p1]) {
                            *a += wx * xj;
                        }
                    }
                } else {
                    // Z̃ᵀX̃ level by level (p in a row) and [X̃ ỹ]ᵀ[X̃ ỹ] straight into the sums
                    let zx1 = &mut s.zx[(f.offset + c1) * p..(f.offset + c1 + 1) * p];
                    for (a, &xj) in zx1.iter_mut().zip(xi) {
                        *a += wz1 * xj;
                    }
                    let xv = |j: usize| if j == p { z } else { xi[j] };
                    for k in 0..p1 {
                        let wx = w * xv(k);
                        for j in 0..=k {
                            s.xx[j + k * p1] += wx * xv(j);
                        }
                    }
                }
            }
        }
        runs[0].flush_into(s, false, f.offset, p, zx_run);
        if let Some(o) = other {
            runs[1].flush_into(s, true, o.offset, p, zx_run);
        }
        s.dev = dev;
        if with_x && local {
            for k in 0..p1 {
                for j in 0..=k {
                    s.xx[j + k * p1] = xl[k * 16 + j];
                }
            }
        }
        if !with_x {
            s.xx[p + p * p1] = zz;
        }
    }
}

/// One term's sums over consecutive rows at one of its levels (the
/// diagonal of A, Z̃ᵀỹ and, with X in a local array, Z̃ᵀX̃), added into
/// the pass's sums when the level changes: rows sorted by a factor (VerbAgg
/// by item) would otherwise add into the same few places row after row,
/// each addition waiting for the last one's store.
#[derive(Default)]
struct Run {
    level: usize,
    diag: f64,
    zty: f64,
    zx: [f64; 16],
}

impl Run {
    /// Adds a row with w z (`wz`), its z and working response, and X's
    /// row `xi` (its first `zx_cols` entries into Z̃ᵀX̃).
    #[inline(always)]
    fn add<const P: usize>(&mut self, wz: f64, zv: f64, z: f64, xi: &[f64], zx_cols: usize) {
        self.diag += wz * zv;
        self.zty += wz * z;
        let cols = if P == 0 {
            0
        } else if P == ANY_P {
            zx_cols
        } else {
            P.min(zx_cols)
        };
        for (a, &xj) in self.zx[..cols].iter_mut().zip(xi) {
            *a += wz * xj;
        }
    }

    /// Adds the sums into the term's diagonal, Z̃ᵀỹ and the first `cols`
    /// columns of Z̃ᵀX̃ (p per level; all from the term's first level on),
    /// and clears them.
    #[inline(always)]
    fn flush(&mut self, diag: &mut [f64], zty: &mut [f64], zx: &mut [f64], p: usize, cols: usize) {
        let l = self.level;
        diag[l] += self.diag;
        zty[l] += self.zty;
        if cols > 0 {
            let dst = &mut zx[l * p..l * p + cols];
            for (a, b) in dst.iter_mut().zip(&mut self.zx) {
                *a += *b;
                *b = 0.0;
            }
        }
        (self.diag, self.zty) = (0.0, 0.0);
    }

    /// [`flush`](Self::flush) into a term's sums in `s`: the first term's
    /// (A11's diagonal) or, with `other`, the other term's (A22's), the
    /// term's random effects starting at `offset`.
    #[inline(always)]
    fn flush_into(&mut self, s: &mut Sums, other: bool, offset: usize, p: usize, cols: usize) {
        let diag = if other { &mut s.a22d } else { &mut s.a11 };
        self.flush(diag, &mut s.zty[offset..], &mut s.zx[offset * p..], p, cols);
    }
}

/// Rows per block of the pass's row kernel (a multiple of 4).
const BLOCK: usize = 64;

/// `Rows::pass_cols`'s P for any number of X's columns.
const ANY_P: usize = usize::MAX;

/// Runs the pass over every chunk (in parallel when there are several),
/// with μ stored in `mu` per row unless it is empty.
pub(super) fn run_pass(
    fam: Family,
    rows: &Rows,
    from: EtaFrom,
    bounds: &[usize],
    sums: &mut [Sums],
    mu: &mut [f64],
) {
    let row = RowKernel::new(fam.link, fam.dist);
    // each chunk's slice of μ (empty slices when μ is not kept)
    let mut parts = Vec::with_capacity(sums.len());
    let mut rest = mu;
    for w in bounds.windows(2) {
        let take = (w[1] - w[0]).min(rest.len());
        let (head, tail) = rest.split_at_mut(take);
        parts.push(head);
        rest = tail;
    }
    if sums.len() == 1 {
        rows.pass(
            from,
            bounds[0],
            bounds[1],
            &mut sums[0],
            parts.remove(0),
            row,
        );
    } else {
        sums.par_iter_mut()
            .zip(parts)
            .enumerate()
            .for_each(|(c, (s, m))| {
                rows.pass(from, bounds[c], bounds[c + 1], s, m, row);
            });
    }
}
