//! ∂ log det M / ∂θ when every term is scalar and the model has more than one
//! term: through the Schur complement of the first term, so that M⁻¹ is
//! needed on the pattern of L22 only (no block of M⁻¹ per first-term level).
//!
//! With the first term f's levels j (a_j = A11_jj) and the rest's random
//! effects r (θ_r the θ of r's term), `M11 = diag(θ_f² a_j + 1)` and
//!
//! ```text
//! S = M22 − M21 M11⁻¹ M12 = Θ G Θ + I,     Θ = diag(θ_r),
//! G = A22 − A21 diag(w) A21ᵀ,              w_j = θ_f² / (θ_f² a_j + 1),
//! log det M = Σ_j log(θ_f² a_j + 1) + log det S.
//! ```
//!
//! G depends on θ_f only, so with Z = S⁻¹ (the selected inverse of L22, on
//! S's pattern) and H = A21 diag(∂w/∂θ_f) A21ᵀ:
//!
//! ```text
//! ∂/∂θ_f = Σ_j 2θ_f a_j / (θ_f² a_j + 1) − ⟨Z, Θ H Θ⟩
//! ∂/∂θ_t = 2 Σ_{r in t} Σ_c Z_rc θ_c G_rc            (t a rest term)
//! ```
//!
//! G and H are filled as the Schur complement is (`schur.rs`, grouped by
//! classes when the objective's fill is): the work is one fill and one
//! selected inversion of L22, where the general formula (`logdet_grad.rs`)
//! gathers a block of L22's inverse for every first-term level.

use std::sync::Arc;

use super::error::Result;
use super::factor::FactorL;
use super::schur::FillInputs;
use super::selinv::{SelectedInverse, SelinvPlan};
use super::workspace::Workspace;

/// The plan of the selected inversion of L22 and where each position of the
/// Schur complement's pattern sits in it: found at the first gradient, kept
/// by the factor (it depends on the pattern only).
pub(crate) struct Z22Plan {
    selinv: Arc<SelinvPlan>,
    index: Vec<usize>,
}

impl Workspace {
    /// ∂ log det M / ∂θ at the last θ by the Schur complement, or None when
    /// some term is not scalar or the model has a single term.
    pub(crate) fn logdet_m_gradient_scalar(&self) -> Result<Option<Vec<f64>>> {
        let fac = self.factor();
        let Some(ch) = fac.l22().filter(|_| self.terms().all_scalar()) else {
            return Ok(None);
        };
        self.evaluation()?;
        let (order, layout, templates) = (fac.order(), self.layout(), self.templates());
        let (pattern, a) = (self.pattern(), self.cross_products());
        let (nb, nnz) = (order.n_blocks(), pattern.nnz());
        let (mut g, mut h) = (vec![0.0; nnz], vec![0.0; nnz]);
        let inputs = FillInputs {
            order,
            pattern,
            a,
            templates,
            l21: &[],
        };
        fac.schur().scalar_derivatives(&inputs, &mut g, &mut h);
        let plan = fac.z22_plan(|| {
            let (col_ptr, row_idx, values) = ch.factor_csc();
            let selinv = Arc::new(SelinvPlan::new(&FactorL {
                perm: ch.perm(),
                col_ptr,
                row_idx,
                values,
            }));
            let index = (0..nb)
                .flat_map(|c| pattern.m_rows(c).iter().map(move |&r| (r, c)))
                .map(|(r, c)| {
                    selinv
                        .index(r, c)
                        .expect("the pattern of S is within the pattern of L22")
                })
                .collect();
            Z22Plan { selinv, index }
        });
        let z22 = SelectedInverse::with_plan(Arc::clone(&plan.selinv), &ch.factor_values());
        let idx = &plan.index;
        let z = z22.values();
        let theta_f = templates[order.first()][0];
        let theta_r: Vec<f64> = (0..nb).map(|r| templates[order.term(r)][0]).collect();
        let mut by_term = vec![0.0; layout.len()];
        let mut d_f = 0.0;
        for c in 0..nb {
            let (tc, thc) = (order.term(c), theta_r[c]);
            let p0 = pattern.m_col_ptr[c];
            let zd = z[idx[p0]];
            by_term[tc] += 2.0 * zd * thc * g[p0];
            d_f -= zd * thc * thc * h[p0];
            let (mut own, mut hf) = (0.0, 0.0);
            for (e, &r) in pattern.m_rows(c).iter().enumerate().skip(1) {
                let p = p0 + e;
                let (zv, thr) = (z[idx[p]], theta_r[r]);
                let zg = 2.0 * zv * g[p];
                by_term[order.term(r)] += zg * thc;
                own += zg * thr;
                hf += zv * thr * h[p];
            }
            by_term[tc] += own;
            d_f -= 2.0 * thc * hf;
        }
        let t2 = theta_f * theta_f;
        d_f += a
            .a11()
            .iter()
            .map(|&v| 2.0 * theta_f * v / (t2 * v + 1.0))
            .sum::<f64>();
        let mut out = vec![0.0; self.n_theta()];
        out[layout[order.first()].theta_offset] = d_f;
        for &t in order.rest_terms() {
            out[layout[t].theta_offset] = by_term[t];
        }
        Ok(Some(out))
    }
}
