//! The block order of the factor L, and the one map between it and lme4's
//! order of the random effects.
//!
//! The first term `f` (the one with the most random effects, the first of
//! ties) comes first, level by level. The other terms ("the rest") follow in
//! lme4's order, level by level: rest block `rb` is one level of one term,
//! with its k coefficients at `off(rb)..off(rb) + k(rb)` of the rest's
//! numbering. (The sparse factor L22 permutes the rest once more; that
//! permutation is its own.)
//!
//! A separate file from the symbolic plan (`pattern.rs`) because the
//! cross-products are laid out in this order, and the plan is read from
//! them.

use super::terms::Terms;

#[derive(Clone, Debug)]
pub struct BlockOrder {
    f: usize,
    /// The first term's first random effect in lme4's order, its k and its
    /// number of levels.
    f_offset: usize,
    kf: usize,
    lf: usize,
    /// The rest's terms in lme4's order, and the first block of each.
    rest_terms: Vec<usize>,
    block0: Vec<usize>,
    /// Per rest block: term, level, and first random effect in lme4's order.
    term: Vec<usize>,
    level: Vec<usize>,
    lme4: Vec<usize>,
    /// Per rest block and one past the last: the first coefficient in the
    /// rest's numbering (so that `k(rb) = off[rb + 1] − off[rb]`).
    off: Vec<usize>,
}

impl BlockOrder {
    pub fn new(terms: &Terms) -> Self {
        let layout = terms.layout();
        let f = (0..layout.len())
            .max_by_key(|&t| (layout[t].q(), std::cmp::Reverse(t)))
            .expect("Terms has at least one term");
        let rest_terms: Vec<usize> = (0..layout.len()).filter(|&t| t != f).collect();
        let mut s = Self {
            f,
            f_offset: layout[f].offset,
            kf: layout[f].k,
            lf: layout[f].n_levels,
            block0: Vec::with_capacity(rest_terms.len()),
            rest_terms,
            term: vec![],
            level: vec![],
            lme4: vec![],
            off: vec![0],
        };
        for &t in &s.rest_terms {
            let lay = &layout[t];
            s.block0.push(s.term.len());
            for l in 0..lay.n_levels {
                s.term.push(t);
                s.level.push(l);
                s.lme4.push(lay.offset + l * lay.k);
                s.off.push(s.off.last().unwrap() + lay.k);
            }
        }
        s
    }

    /// The term factored first.
    pub fn first(&self) -> usize {
        self.f
    }
    /// Coefficients per level of the first term.
    pub fn kf(&self) -> usize {
        self.kf
    }
    /// Levels of the first term.
    pub fn lf(&self) -> usize {
        self.lf
    }
    /// Random effects of the first term.
    pub fn qf(&self) -> usize {
        self.kf * self.lf
    }
    /// The first term's random effects in lme4's order.
    pub fn f_range(&self) -> std::ops::Range<usize> {
        self.f_offset..self.f_offset + self.qf()
    }
    /// The terms of the rest, in lme4's order.
    pub fn rest_terms(&self) -> &[usize] {
        &self.rest_terms
    }
    /// The first rest block of each term of the rest.
    pub fn block0(&self) -> &[usize] {
        &self.block0
    }
    /// Number of rest blocks.
    pub fn n_blocks(&self) -> usize {
        self.term.len()
    }
    /// Random effects of the rest.
    pub fn q_rest(&self) -> usize {
        *self.off.last().unwrap()
    }
    /// Term of rest block `rb`.
    #[inline]
    pub fn term(&self, rb: usize) -> usize {
        self.term[rb]
    }
    /// Level (of its term) of rest block `rb`.
    #[inline]
    pub fn level(&self, rb: usize) -> usize {
        self.level[rb]
    }
    /// First coefficient of rest block `rb` in the rest's numbering.
    #[inline]
    pub fn off(&self, rb: usize) -> usize {
        self.off[rb]
    }
    /// Coefficients of rest block `rb`.
    #[inline]
    pub fn k(&self, rb: usize) -> usize {
        self.off[rb + 1] - self.off[rb]
    }

    /// The largest k of the rest's blocks (1 without a rest).
    pub fn k_max(&self) -> usize {
        (0..self.n_blocks()).map(|rb| self.k(rb)).max().unwrap_or(1)
    }

    /// `rest := b[rest]`: the rest's coefficients of `b` (q values in lme4's
    /// order), in the rest's numbering.
    pub fn from_lme4(&self, b: &[f64], rest: &mut [f64]) {
        for (rb, &ext) in self.lme4.iter().enumerate() {
            let (o, k) = (self.off[rb], self.k(rb));
            rest[o..o + k].copy_from_slice(&b[ext..ext + k]);
        }
    }

    /// `b[rest] := rest`: the inverse of [`from_lme4`](Self::from_lme4).
    pub fn to_lme4(&self, rest: &[f64], b: &mut [f64]) {
        for (rb, &ext) in self.lme4.iter().enumerate() {
            let (o, k) = (self.off[rb], self.k(rb));
            b[ext..ext + k].copy_from_slice(&rest[o..o + k]);
        }
    }

    /// The lme4 index of each coefficient of the rest (in its numbering).
    pub fn rest_lme4_index(&self) -> Vec<usize> {
        let mut idx = vec![0usize; self.q_rest()];
        for (rb, &ext) in self.lme4.iter().enumerate() {
            for (r, i) in idx[self.off[rb]..self.off[rb + 1]].iter_mut().enumerate() {
                *i = ext + r;
            }
        }
        idx
    }
}
