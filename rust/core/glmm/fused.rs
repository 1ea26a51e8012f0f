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

use super::minv::row_slots;
use super::row_pass::{run_pass, Rows, Sums, CHUNK_ROWS, MAX_CHUNKS};
use super::Glmm;
use crate::core::error::{CoreError, Result};
use crate::core::workspace::Workspace;

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
            slots: &sr.slots,
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
