//! The random-effects terms of a model and the θ layout.
//!
//! [`Terms`] validates the terms once and is the single owner of the layout:
//! where each term's random effects sit in lme4's order, which θ elements
//! fill its template `T_t(θ)` (the lower triangle, column by column), the
//! lower bounds of θ, and the products with Z and Λ that every consumer
//! shares.

use super::error::{check_finite, check_len, CoreError, Result};
use std::ops::Range;

use rayon::prelude::*;

use super::small::{t_mul, tt_mul, Dim, K};

/// Rows per chunk of [`Terms::level_sums`] (at least), and the most chunks.
const SUM_CHUNK_ROWS: usize = 1 << 16;
const MAX_SUM_CHUNKS: usize = 8;

/// One random-effects term: a grouping factor and its model columns.
#[derive(Clone, Debug)]
pub struct ReTerm {
    /// Number of levels of the grouping factor.
    pub n_levels: usize,
    /// Number of coefficients per level (columns of the term's model matrix).
    pub k: usize,
    /// Level code (0-based) of each row.
    pub codes: Vec<u32>,
    /// The term's model matrix, n x k, row-major.
    pub z: Vec<f64>,
}

/// Where a term's random effects and θ elements sit (lme4's order).
#[derive(Clone, Debug)]
pub struct TermLayout {
    pub k: usize,
    pub n_levels: usize,
    /// First random-effect column of the term.
    pub offset: usize,
    /// First θ element of the term.
    pub theta_offset: usize,
}

impl TermLayout {
    pub fn n_theta(&self) -> usize {
        self.k * (self.k + 1) / 2
    }
    pub fn q(&self) -> usize {
        self.k * self.n_levels
    }
}

/// The validated terms of a model with their layout.
#[derive(Clone, Debug)]
pub struct Terms {
    n: usize,
    terms: Vec<ReTerm>,
    layout: Vec<TermLayout>,
    q: usize,
    n_theta: usize,
}

impl Terms {
    /// Checks the terms against the number of rows `n` and lays them out.
    pub fn new(n: usize, terms: Vec<ReTerm>) -> Result<Self> {
        if terms.is_empty() {
            return Err(CoreError::Dimension(
                "a mixed model needs at least one random-effects term".into(),
            ));
        }
        let mut layout = Vec::with_capacity(terms.len());
        let (mut q, mut n_theta) = (0usize, 0usize);
        for (t, term) in terms.iter().enumerate() {
            if term.k == 0 || term.n_levels == 0 {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t} has no columns or no levels"
                )));
            }
            check_len(
                format!("the level codes of random-effects term {t}"),
                term.codes.len(),
                n,
            )?;
            check_len(
                format!("the model matrix of random-effects term {t}"),
                term.z.len(),
                n * term.k,
            )?;
            if let Some(&bad) = term.codes.iter().find(|&&c| c as usize >= term.n_levels) {
                return Err(CoreError::Dimension(format!(
                    "random-effects term {t}: level code {bad} is out of range (n_levels = {})",
                    term.n_levels
                )));
            }
            check_finite(
                format!("the model matrix of random-effects term {t}"),
                &term.z,
            )?;
            let lay = TermLayout {
                k: term.k,
                n_levels: term.n_levels,
                offset: q,
                theta_offset: n_theta,
            };
            q += lay.q();
            n_theta += lay.n_theta();
            layout.push(lay);
        }
        Ok(Self {
            n,
            terms,
            layout,
            q,
            n_theta,
        })
    }

    /// The layout of terms whose rows were summed and not kept: `shapes`
    /// holds each term's (levels, coefficients per level); `n` rows in all.
    pub fn without_rows(n: usize, shapes: &[(usize, usize)]) -> Result<Self> {
        let terms = shapes
            .iter()
            .map(|&(n_levels, k)| ReTerm {
                n_levels,
                k,
                codes: vec![],
                z: vec![],
            })
            .collect();
        let mut out = Self::new(0, terms)?;
        out.n = n;
        Ok(out)
    }

    /// Whether the rows (level codes and model columns) are kept.
    pub fn has_rows(&self) -> bool {
        self.terms.iter().all(|t| t.codes.len() == self.n)
    }

    /// Number of rows.
    pub fn n(&self) -> usize {
        self.n
    }
    /// Number of random effects.
    pub fn q(&self) -> usize {
        self.q
    }
    pub fn n_theta(&self) -> usize {
        self.n_theta
    }
    pub fn terms(&self) -> &[ReTerm] {
        &self.terms
    }
    pub fn layout(&self) -> &[TermLayout] {
        &self.layout
    }
    /// Whether every term has a single coefficient (scalar blocks throughout).
    pub fn all_scalar(&self) -> bool {
        self.terms.iter().all(|t| t.k == 1)
    }

    /// Lower bounds of θ: 0 on the diagonal of each template, -∞ elsewhere.
    pub fn lower(&self) -> Vec<f64> {
        let mut lo = Vec::with_capacity(self.n_theta);
        for l in &self.layout {
            for c in 0..l.k {
                for r in c..l.k {
                    lo.push(if r == c { 0.0 } else { f64::NEG_INFINITY });
                }
            }
        }
        lo
    }

    /// Zero templates, one k x k (column-major) per term.
    pub fn zero_templates(&self) -> Vec<Vec<f64>> {
        self.layout.iter().map(|l| vec![0.0; l.k * l.k]).collect()
    }

    /// Checks θ and writes the template `T_t(θ)` of each term: θ fills the
    /// lower triangle column by column.
    pub fn set_templates(&self, theta: &[f64], templates: &mut [Vec<f64>]) -> Result<()> {
        if theta.len() != self.n_theta {
            return Err(CoreError::ThetaLength {
                expected: self.n_theta,
                got: theta.len(),
            });
        }
        if let Some(index) = theta.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::ThetaNotFinite { index });
        }
        for (lay, tm) in self.layout.iter().zip(templates.iter_mut()) {
            let k = lay.k;
            let mut idx = lay.theta_offset;
            for c in 0..k {
                for r in 0..k {
                    tm[r + c * k] = if r >= c {
                        idx += 1;
                        theta[idx - 1]
                    } else {
                        0.0
                    };
                }
            }
        }
        Ok(())
    }

    /// `u := Λ u` (q values in lme4's order).
    pub fn lambda_mul(&self, templates: &[Vec<f64>], u: &mut [f64]) {
        for (lay, tm) in self.layout.iter().zip(templates) {
            let k = lay.k;
            for blk in u[lay.offset..lay.offset + lay.q()].chunks_exact_mut(k) {
                t_mul(tm, k, blk);
            }
        }
    }

    /// `v := Λᵀ v` (q values in lme4's order).
    pub fn lambdat_mul(&self, templates: &[Vec<f64>], v: &mut [f64]) {
        for (lay, tm) in self.layout.iter().zip(templates) {
            let k = lay.k;
            for blk in v[lay.offset..lay.offset + lay.q()].chunks_exact_mut(k) {
                tt_mul(tm, k, blk);
            }
        }
    }

    /// `out += Z̃ᵀ v` for one column `v` (n values), Z̃ = diag(s) Z with the
    /// row scale `s` (none: 1); `out` has q values in lme4's order.
    pub fn zt_mul_add(&self, v: &[f64], scale: Option<&[f64]>, out: &mut [f64]) {
        for (term, lay) in self.terms.iter().zip(&self.layout) {
            let k = term.k;
            for (r, &vr) in v.iter().enumerate() {
                if vr == 0.0 {
                    continue;
                }
                let base = lay.offset + term.codes[r] as usize * k;
                let z = &term.z[r * k..(r + 1) * k];
                let dst = &mut out[base..base + k];
                match scale {
                    None => {
                        for c in 0..k {
                            dst[c] += z[c] * vr;
                        }
                    }
                    Some(s) => {
                        for c in 0..k {
                            dst[c] += s[r] * z[c] * vr;
                        }
                    }
                }
            }
        }
    }

    /// Per level of term `t`, summed over its rows: Z̃ᵀZ̃ (k x k,
    /// column-major) and Z̃ᵀ of the columns `cols` (k x m, a random effect's
    /// m values side by side), Z̃ = diag(s) Z. Level-major, k² + k·m values a
    /// level: a row adds to one place, not to two q apart.
    ///
    /// Many rows are split into chunks summed in parallel, each into its own
    /// copy of the sums, added in order after: the chunks depend on n and
    /// the sums' size alone, so the sums do not depend on the number of
    /// threads. Few rows (or sums as large as the rows) are summed in one
    /// pass, in the rows' order.
    pub fn level_sums(&self, t: usize, cols: &[&[f64]], scale: Option<&[f64]>) -> Vec<f64> {
        let term = &self.terms[t];
        let size = term.n_levels * (term.k * term.k + term.k * cols.len());
        let chunks = (self.n / SUM_CHUNK_ROWS)
            .min(MAX_SUM_CHUNKS)
            .min(self.n / size.max(1));
        let run = |rows: Range<usize>| match term.k {
            1 => self.level_sums_k(K::<1>, t, cols, scale, rows),
            2 => self.level_sums_k(K::<2>, t, cols, scale, rows),
            3 => self.level_sums_k(K::<3>, t, cols, scale, rows),
            k => self.level_sums_k(k, t, cols, scale, rows),
        };
        if chunks < 2 {
            return run(0..self.n);
        }
        let bounds: Vec<usize> = (0..=chunks).map(|c| c * self.n / chunks).collect();
        let parts: Vec<Vec<f64>> = (0..chunks)
            .into_par_iter()
            .map(|c| run(bounds[c]..bounds[c + 1]))
            .collect();
        let mut parts = parts.into_iter();
        let mut acc = parts.next().unwrap_or_default();
        for part in parts {
            acc.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        acc
    }

    #[inline(always)]
    fn level_sums_k<D: Dim>(
        &self,
        kd: D,
        t: usize,
        cols: &[&[f64]],
        scale: Option<&[f64]>,
        rows: Range<usize>,
    ) -> Vec<f64> {
        let term = &self.terms[t];
        let (k, m) = (kd.get(), cols.len());
        let (kk, w) = (k * k, k * k + k * m);
        let mut acc = vec![0.0; term.n_levels * w];
        let mut zs = vec![0.0; k];
        for r in rows {
            let z = &term.z[r * k..(r + 1) * k];
            match scale {
                None => zs.copy_from_slice(z),
                Some(s) => zs.iter_mut().zip(z).for_each(|(o, z)| *o = s[r] * z),
            }
            let slot = &mut acc[term.codes[r] as usize * w..][..w];
            for c in 0..k {
                for i in 0..k {
                    slot[i + c * k] += zs[i] * zs[c];
                }
            }
            for (c, col) in cols.iter().enumerate() {
                let v = col[r];
                if v != 0.0 {
                    for i in 0..k {
                        slot[kk + i * m + c] += zs[i] * v;
                    }
                }
            }
        }
        acc
    }

    /// `out += Z̃ b` for one column `b` (q values in lme4's order), Z̃ =
    /// diag(s) Z; `out` has n values.
    pub fn z_mul_add(&self, b: &[f64], scale: Option<&[f64]>, out: &mut [f64]) {
        for (term, lay) in self.terms.iter().zip(&self.layout) {
            let k = term.k;
            for (r, o) in out.iter_mut().enumerate() {
                let base = lay.offset + term.codes[r] as usize * k;
                let z = &term.z[r * k..(r + 1) * k];
                let s: f64 = z.iter().zip(&b[base..base + k]).map(|(a, b)| a * b).sum();
                *o += scale.map_or(s, |sc| sc[r] * s);
            }
        }
    }

    /// The rows of each level of term `t` (counting sort): level `l`'s rows
    /// are `rows[start[l]..start[l + 1]]`, in increasing order.
    pub fn rows_by_level(&self, t: usize) -> (Vec<usize>, Vec<u32>) {
        let term = &self.terms[t];
        let nl = term.n_levels;
        let mut start = vec![0usize; nl + 1];
        for &c in &term.codes {
            start[c as usize + 1] += 1;
        }
        for l in 0..nl {
            start[l + 1] += start[l];
        }
        let mut next = start.clone();
        let mut rows = vec![0u32; term.codes.len()];
        for (r, &c) in term.codes.iter().enumerate() {
            rows[next[c as usize]] = r as u32;
            next[c as usize] += 1;
        }
        (start, rows)
    }
}
