//! PIRLS for models with one or two scalar random-effects terms (random
//! intercepts, crossed or nested, and the like), one pass over the rows per
//! iteration.
//!
//! The pass at a candidate (β, u) forms η row by row, and with μ the
//! deviance residual (for the step-halving test) and the working weight and
//! response, whose products it adds straight into sums of A's blocks (the
//! first term's diagonal, the other term's diagonal, their cross-products
//! at the row's offset in A21's layout, Z̃ᵀỹ, and with β inside PIRLS Z̃ᵀX̃
//! and [X̃ ỹ]ᵀ[X̃ ỹ]). An accepted candidate's sums become A (the next
//! iteration's system) without another pass; the general path's separate
//! passes (η, deviance, working vectors, fill), copies and square roots
//! become one. Large models split the rows into chunks summed in parallel:
//! the chunks depend on n alone and are added in order, so the sums do not
//! depend on the number of threads (they equal the general fill's to
//! rounding).

use rayon::prelude::*;

use super::helpers::{logit_row, row_of};
use super::minv::row_slots;
use super::Glmm;
use crate::core::error::{CoreError, Result};
use crate::core::family::{Distribution, Family, Link};
use crate::core::workspace::Workspace;

/// Rows per chunk of the parallel pass, and the most chunks.
const CHUNK_ROWS: usize = 1 << 16;
const MAX_CHUNKS: usize = 16;
/// Fewer rows than `CHUNK_ROWS` still make two chunks from this many per
/// chunk: a row costs tens of nanoseconds (an exponential, a logarithm,
/// the products), a chunk's sums a nanosecond per entry to clear and add.
/// Below it a pass is too short to share: VerbAgg's 7,584 rows take about
/// 0.15 ms, and waking a second thread and waiting for it costs about what
/// it saves on an idle machine, more on a busy one (one chunk is faster).
const PAIR_ROWS: usize = 1 << 14;

/// One scalar term: its index and its first random effect (lme4's order).
#[derive(Clone, Copy)]
pub(super) struct ScalarTerm {
    pub term: usize,
    pub offset: usize,
}

/// A scalar term with its rows' codes and z (the workspace's).
#[derive(Clone, Copy)]
pub(super) struct TermCols<'a> {
    pub term: usize,
    pub offset: usize,
    pub codes: &'a [u32],
    pub z: &'a [f64],
}

impl ScalarTerm {
    pub fn cols<'a>(&self, ws: &'a Workspace) -> TermCols<'a> {
        let t = &ws.terms().terms()[self.term];
        TermCols {
            term: self.term,
            offset: self.offset,
            codes: &t.codes,
            z: &t.z,
        }
    }
}

/// One chunk's sums of a pass (A's blocks as `CrossProducts::blocks_mut`
/// lays them out) and its deviance; the first row whose working weight or
/// response is not usable, with its weight and η.
#[derive(Clone, Default)]
struct Sums {
    a11: Vec<f64>,
    a22d: Vec<f64>,
    a21: Vec<f64>,
    /// Z̃ᵀỹ (q), and Z̃ᵀX̃ level by level (q x p, row-major: p values per level).
    zty: Vec<f64>,
    zx: Vec<f64>,
    xx: Vec<f64>,
    dev: f64,
    bad: Option<(usize, f64, f64)>,
}

/// The rows of a model with one or two scalar terms, in block order, and
/// the sums of the last pass per chunk.
#[derive(Clone)]
pub(super) struct ScalarRows {
    first: ScalarTerm,
    other: Option<ScalarTerm>,
    /// Per row, the offset of its (first, other) block in A21's layout.
    slots: Vec<usize>,
    /// Row bounds of the chunks.
    pub bounds: Vec<usize>,
    sums: Vec<Sums>,
    /// μ per row at the last pass (kept for canonical links, whose gradient
    /// needs no more than μ: `grad_scalar.rs`; empty otherwise), and whether
    /// that pass was at the last evaluation's modes.
    pub mu: Vec<f64>,
    pub mu_at_modes: bool,
    /// X row by row (n x p, row-major): a row's X in one place for the
    /// passes with β inside PIRLS.
    xrow: Vec<f64>,
}

impl ScalarRows {
    pub fn first(&self) -> &ScalarTerm {
        &self.first
    }
    pub fn other(&self) -> Option<&ScalarTerm> {
        self.other.as_ref()
    }
    pub fn slots(&self) -> &[usize] {
        &self.slots
    }
    /// X row by row (n x p, row-major).
    pub fn xrow(&self) -> &[f64] {
        &self.xrow
    }

    /// None unless every term is scalar and there are at most two.
    pub fn new(ws: &Workspace) -> Option<Self> {
        let tt = ws.terms().terms();
        if tt.len() > 2 || tt.iter().any(|t| t.k != 1) {
            return None;
        }
        let layout = ws.layout();
        let order = ws.factor().order();
        let make = |t: usize| ScalarTerm {
            term: t,
            offset: layout[t].offset,
        };
        let other = order.rest_terms().first().map(|&t| make(t));
        let cp = ws.cross_products();
        let (n, p, q) = (ws.n(), ws.p(), ws.q());
        let size = cp.a11().len() + cp.a22d().len() + cp.a21().val.len() + (p + 1) * (q + p + 1);
        // chunks of at least CHUNK_ROWS rows, each at least 4 times its sums'
        // size; or two of at least PAIR_ROWS rows, each at least a quarter of it
        let pair = if n >= 2 * PAIR_ROWS && 8 * n >= size {
            2
        } else {
            1
        };
        let chunks = (n / CHUNK_ROWS)
            .min(n / (4 * size).max(1))
            .max(pair)
            .clamp(1, MAX_CHUNKS);
        let sums = Sums {
            a11: vec![0.0; cp.a11().len()],
            a22d: vec![0.0; cp.a22d().len()],
            a21: vec![0.0; cp.a21().val.len()],
            zty: vec![0.0; q],
            zx: vec![0.0; q * p],
            xx: vec![0.0; (p + 1) * (p + 1)],
            dev: 0.0,
            bad: None,
        };
        Some(Self {
            first: make(order.first()),
            slots: if other.is_some() {
                row_slots(ws)
            } else {
                vec![]
            },
            other,
            bounds: (0..=chunks).map(|c| c * n / chunks).collect(),
            sums: vec![sums; chunks],
            mu: vec![],
            mu_at_modes: false,
            xrow: (0..n * p)
                .map(|k| ws.rows().x()[(k % p) * n + k / p])
                .collect(),
        })
    }
}

/// Where a pass takes η from.
#[derive(Clone, Copy)]
pub(super) enum EtaFrom<'a> {
    /// Given (the fast mode's first step, from the family's starting means).
    Given(&'a [f64]),
    /// Xβ + o + ZΛu, with Xβ formed row by row (β inside PIRLS) or read from
    /// the evaluation's Xβ.
    Modes {
        beta: &'a [f64],
        u: &'a [f64],
        with_beta: bool,
    },
}

/// What a pass reads.
struct Rows<'a> {
    p: usize,
    xrow: &'a [f64],
    y: &'a [f64],
    prior: &'a [f64],
    offset: &'a [f64],
    xb: &'a [f64],
    sr: &'a ScalarRows,
    first: TermCols<'a>,
    other: Option<TermCols<'a>>,
    lf: f64,
    lr: f64,
}

impl Rows<'_> {
    /// η of row i.
    #[inline(always)]
    fn eta(&self, i: usize, from: EtaFrom) -> f64 {
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
    fn pass<K>(&self, from: EtaFrom, r0: usize, r1: usize, s: &mut Sums, mu: &mut [f64], row: &K)
    where
        K: Fn(f64, f64, f64) -> (f64, f64, f64, f64),
    {
        let with_x = !matches!(
            from,
            EtaFrom::Modes {
                with_beta: false,
                ..
            }
        );
        if !with_x {
            return self.pass_cols::<0, K>(from, r0, r1, s, mu, row);
        }
        // X's columns as a constant: the products unrolled
        match self.p {
            1 => self.pass_cols::<1, K>(from, r0, r1, s, mu, row),
            2 => self.pass_cols::<2, K>(from, r0, r1, s, mu, row),
            3 => self.pass_cols::<3, K>(from, r0, r1, s, mu, row),
            4 => self.pass_cols::<4, K>(from, r0, r1, s, mu, row),
            5 => self.pass_cols::<5, K>(from, r0, r1, s, mu, row),
            6 => self.pass_cols::<6, K>(from, r0, r1, s, mu, row),
            7 => self.pass_cols::<7, K>(from, r0, r1, s, mu, row),
            8 => self.pass_cols::<8, K>(from, r0, r1, s, mu, row),
            _ => self.pass_cols::<ANY_P, K>(from, r0, r1, s, mu, row),
        }
    }

    /// `pass` with P columns of X in the sums (0: none, PIRLS on u;
    /// `ANY_P`: the model's p).
    #[inline(always)]
    fn pass_cols<const P: usize, K>(
        &self,
        from: EtaFrom,
        r0: usize,
        r1: usize,
        s: &mut Sums,
        mu: &mut [f64],
        row: &K,
    ) where
        K: Fn(f64, f64, f64) -> (f64, f64, f64, f64),
    {
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
        for i in r0..r1 {
            let e = self.eta_p::<P>(i, from);
            let (w, r, d, m) = row(e, self.y[i], self.prior[i]);
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
            let (c1, z1) = (f.offset + f.codes[i] as usize, f.z[i]);
            let wz1 = w * z1;
            s.a11[c1 - f.offset] += wz1 * z1;
            s.zty[c1] += wz1 * z;
            let second = other.map(|o| {
                let (c2, z2) = (o.offset + o.codes[i] as usize, o.z[i]);
                let wz2 = w * z2;
                s.a22d[c2 - o.offset] += wz2 * z2;
                s.a21[self.sr.slots[i]] += wz1 * z2;
                s.zty[c2] += wz2 * z;
                (c2, wz2)
            });
            if !with_x {
                zz += w * z * z;
                continue;
            }
            // Z̃ᵀX̃ level by level (p in a row), [X̃ ỹ]ᵀ[X̃ ỹ]
            let xi = &self.xrow[i * p..(i + 1) * p];
            let zx1 = &mut s.zx[c1 * p..(c1 + 1) * p];
            for (a, &xj) in zx1.iter_mut().zip(xi) {
                *a += wz1 * xj;
            }
            if let Some((c2, wz2)) = second {
                let zx2 = &mut s.zx[c2 * p..(c2 + 1) * p];
                for (a, &xj) in zx2.iter_mut().zip(xi) {
                    *a += wz2 * xj;
                }
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
                let xv = |j: usize| if j == p { z } else { xi[j] };
                for k in 0..p1 {
                    let wx = w * xv(k);
                    for j in 0..=k {
                        s.xx[j + k * p1] += wx * xv(j);
                    }
                }
            }
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

/// `Rows::pass_cols`'s P for any number of X's columns.
const ANY_P: usize = usize::MAX;

/// Runs the pass over every chunk (in parallel when there are several).
/// (with μ stored in `mu` per row unless it is empty).
fn run_pass(
    fam: Family,
    rows: &Rows,
    from: EtaFrom,
    bounds: &[usize],
    sums: &mut [Sums],
    mu: &mut [f64],
) {
    fn go<K: Fn(f64, f64, f64) -> (f64, f64, f64, f64) + Sync>(
        rows: &Rows,
        from: EtaFrom,
        bounds: &[usize],
        sums: &mut [Sums],
        mu: &mut [f64],
        row: K,
    ) {
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
                &row,
            );
        } else {
            sums.par_iter_mut()
                .zip(parts)
                .enumerate()
                .for_each(|(c, (s, m))| {
                    rows.pass(from, bounds[c], bounds[c + 1], s, m, &row);
                });
        }
    }
    use Distribution as D;
    match (fam.dist, fam.link) {
        (D::Binomial, Link::Logit) => go(rows, from, bounds, sums, mu, |e, y, wt| {
            if e.abs() < 30.0 && (y == 0.0 || y == 1.0) {
                logit_row(e, y, wt)
            } else {
                row_of(Link::Logit, D::Binomial, e, y, wt)
            }
        }),
        (D::Poisson, Link::Log) => go(rows, from, bounds, sums, mu, |e, y, wt| {
            row_of(Link::Log, D::Poisson, e, y, wt)
        }),
        (dist, link) => go(rows, from, bounds, sums, mu, |e, y, wt| {
            row_of(link, dist, e, y, wt)
        }),
    }
}

impl Glmm {
    /// What a pass over the rows of `sr` reads.
    fn pass_rows<'a>(&'a self, sr: &'a ScalarRows) -> Rows<'a> {
        Rows {
            p: self.p(),
            xrow: &sr.xrow,
            y: &self.y,
            prior: &self.prior,
            offset: &self.offset,
            xb: &self.xb,
            sr,
            first: sr.first.cols(&self.ws),
            other: sr.other.map(|o| o.cols(&self.ws)),
            lf: self.templates[sr.first.term][0],
            lr: sr.other.as_ref().map_or(0.0, |r| self.templates[r.term][0]),
        }
    }

    /// The pass at `from` into the chunk sums; returns the deviance.
    pub(super) fn fused_pass(&self, sr: &mut ScalarRows, from: EtaFrom) -> f64 {
        let mut sums = std::mem::take(&mut sr.sums);
        let mut mu = std::mem::take(&mut sr.mu);
        let rows = self.pass_rows(sr);
        run_pass(self.family, &rows, from, &sr.bounds, &mut sums, &mut mu);
        sr.sums = sums;
        sr.mu = mu;
        sr.mu_at_modes = false;
        sr.sums.iter().map(|s| s.dev).sum()
    }

    /// Makes the last pass's sums A (checking its working weights and
    /// response) and refactors at θ: log det(LLᵀ) (with `with_x`, R too).
    pub(super) fn fused_commit(
        &mut self,
        sr: &ScalarRows,
        theta: &[f64],
        with_x: bool,
    ) -> Result<f64> {
        if let Some((i, w, e)) = sr.sums.iter().find_map(|s| s.bad) {
            return Err(CoreError::Pirls(if w > 0.0 && w.is_finite() {
                format!("the working response of observation {i} is not finite (η = {e})")
            } else {
                format!(
                    "the working weight of observation {i} is {w} (η = {e}): PIRLS cannot continue"
                )
            }));
        }
        let (p, q) = (self.p(), self.q());
        let blocks = self.ws.cross_products_mut().blocks_mut();
        let add = |dst: &mut [f64], pick: &dyn Fn(&Sums) -> &[f64]| {
            dst.copy_from_slice(pick(&sr.sums[0]));
            for s in &sr.sums[1..] {
                dst.iter_mut().zip(pick(s)).for_each(|(a, b)| *a += b);
            }
        };
        add(blocks.a11, &|s| &s.a11);
        add(blocks.a22d, &|s| &s.a22d);
        add(blocks.a21, &|s| &s.a21);
        add(&mut blocks.ztxy[p * q..], &|s| &s.zty);
        if with_x {
            // Z̃ᵀX̃ from the chunks' level-by-level sums (A's layout: column by column)
            for j in 0..p {
                let col = &mut blocks.ztxy[j * q..(j + 1) * q];
                for (c, v) in col.iter_mut().enumerate() {
                    *v = sr.sums.iter().map(|s| s.zx[c * p + j]).sum();
                }
            }
        }
        let p1 = p + 1;
        let xx = |j: usize, k: usize| sr.sums.iter().map(|s| s.xx[j + k * p1]).sum::<f64>();
        for k in 0..p1 {
            for j in 0..=k {
                if with_x || j == p {
                    let v = xx(j, k);
                    blocks.xyxy[(j, k)] = v;
                    blocks.xyxy[(k, j)] = v;
                }
            }
        }
        // without X, A's X blocks are stale (`at_last` refills them)
        self.x_stale = !with_x;
        if with_x {
            Ok(self.ws.update(theta)?.ld_l2)
        } else {
            self.ws.refactor_at(theta)
        }
    }

    /// A with its X blocks at the last evaluation's modes (for `at_last`):
    /// false unless the model's terms are scalar.
    pub(super) fn fused_refill_x(&mut self) -> Result<bool> {
        let Some(mut sr) = self.scalar.take() else {
            return Ok(false);
        };
        let (beta, u, theta) = (self.beta.clone(), self.u.clone(), self.theta.clone());
        let from = EtaFrom::Modes {
            beta: &beta,
            u: &u,
            with_beta: true,
        };
        self.fused_pass(&mut sr, from);
        sr.mu_at_modes = true;
        let done = self.fused_commit(&sr, &theta, true);
        self.scalar = Some(sr);
        done.map(|_| true)
    }

    /// η = Xβ + o + ZΛu into `self.eta` (in parallel chunks for large n).
    /// With a non-empty `mu`, μ = g⁻¹(η) into it too.
    pub(super) fn fused_set_eta(
        &mut self,
        sr: &ScalarRows,
        (beta, u): (&[f64], &[f64]),
        with_beta: bool,
        mu: &mut [f64],
    ) {
        let mut eta = std::mem::take(&mut self.eta);
        let rows = self.pass_rows(sr);
        let from = EtaFrom::Modes { beta, u, with_beta };
        let link = self.family.link;
        let fill = |c0: usize, out: &mut [f64], mu: &mut [f64]| {
            for (k, e) in out.iter_mut().enumerate() {
                *e = rows.eta(c0 + k, from);
                if let Some(m) = mu.get_mut(k) {
                    *m = link.inv(*e);
                }
            }
        };
        if sr.bounds.len() == 2 {
            fill(0, &mut eta, mu);
        } else {
            let chunk = CHUNK_ROWS.max(eta.len().div_ceil(MAX_CHUNKS));
            let mut mus: Vec<&mut [f64]> = mu.chunks_mut(chunk).collect();
            mus.resize_with(eta.len().div_ceil(chunk), || &mut []);
            eta.par_chunks_mut(chunk)
                .zip(mus)
                .enumerate()
                .for_each(|(c, (out, m))| fill(c * chunk, out, m));
        }
        self.eta = eta;
    }
}
