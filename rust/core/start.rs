//! A starting θ by MIVQUE0 (minimum variance quadratic unbiased estimation
//! with the identity as prior covariance; Rao 1971, SAS PROC MIXED's
//! default start), from A alone: no pass over the rows.
//!
//! With Q = I − X̃(X̃ᵀX̃)⁻¹X̃ᵀ and r = Z̃ᵀQỹ (the least-squares residuals summed
//! level by level), the quadratic forms
//!
//! ```text
//! ỹᵀQỹ = RSS,    Σ_{l in t} r_l r_lᵀ   (k_t x k_t per term t, l its levels)
//! ```
//!
//! are equated to their expectations under V = σ²I + Σ_t Z̃_t (I ⊗ Σ_t) Z̃_tᵀ,
//!
//! ```text
//! E RSS            = σ² (n − p) + Σ_t Σ_{m in t} ⟨Σ_t, B_mm⟩
//! E Σ_l r_l r_lᵀ   = σ² Σ_l B_ll + Σ_t' Σ_l Σ_{m in t'} B_lm Σ_t' B_lmᵀ
//! B_lm = Z̃_lᵀQZ̃_m = A_lm − h_l h_mᵀ,    h_l = Z̃_lᵀX̃ L_X⁻ᵀ  (L_X L_Xᵀ = X̃ᵀX̃)
//! ```
//!
//! a linear system in σ² and the Σ_t (1 + Σ_t k_t(k_t + 1)/2 unknowns; for
//! scalar terms exactly MIVQUE0). For S = sym E_ab (one unknown of term t'),
//! the sum over m splits into the stored blocks of A (A_lm ≠ 0 only where
//! levels share rows) and the rank-p projection:
//!
//! ```text
//! Σ_m B_lm S B_lmᵀ = Σ_m (A_lm S A_lmᵀ − v_lm h_lᵀ − h_l v_lmᵀ) + h_l U h_lᵀ,
//! v_lm = A_lm S h_m,   U = Σ_{m in t'} h_mᵀ S h_m,
//! ```
//!
//! and, summed over the levels l of t, the last term is ⟨U, W_t[i, j]⟩ with
//! W_t[i, j] = Σ_l h_l[i]ᵀ h_l[j] (p x p): one pass over A's blocks for
//! every unknown at once.
//!
//! θ_t is the lower Cholesky factor of Σ_t / σ², its variances kept within
//! [10⁻⁴, 10⁴] and its correlations within ±0.9: never at the boundary,
//! where a diagonal θ has a zero gradient, and never singular.

use super::small::{chol_lower, col, Dim, K};
use super::workspace::Workspace;

/// Variances (relative to σ²) and correlations of the start are kept within
/// these.
const VAR_MIN: f64 = 1e-4;
const VAR_MAX: f64 = 1e4;
const CORR_MAX: f64 = 0.9;

/// No start when q (p + 1) exceeds this (the h_l are q x p), or when the
/// work of W (q k p²) or of the pass over A's blocks (blocks x k² x the
/// unknowns of a term x (p + 1)) exceeds `MAX_WORK`: a start is worth a few
/// evaluations of the objective at most.
const MAX_QP: usize = 1 << 24;
const MAX_WORK: usize = 1 << 27;

impl Workspace {
    /// A starting θ by MIVQUE0 (see the module's notes), in the workspace's
    /// θ (lme4's layout); None when X̃ᵀX̃ is singular, the system is
    /// singular, or the model is too large for it (see `MAX_QP`, `MAX_WORK`).
    pub fn moment_start(&self) -> Option<Vec<f64>> {
        let (n, p, q) = (self.n(), self.p(), self.q());
        let kmax = self.layout().iter().map(|l| l.k).max().unwrap_or(0);
        if q * (p + 1) > MAX_QP || n <= p || q * kmax * p * p > MAX_WORK {
            return None;
        }
        let mut blocks = 0;
        self.for_each_a_block(|_| blocks += 1);
        if blocks * kmax * kmax * (kmax * (kmax + 1) / 2) * (p + 1) > MAX_WORK {
            return None;
        }
        let a = self.cross_products();
        let (xyxy, ztxy) = (a.xyxy(), a.ztxy());
        // L_X, w = L_X⁻¹ X̃ᵀỹ, RSS = ỹᵀỹ − |w|², h_l, and r_l = Z̃_lᵀỹ − h_l w
        let mut lx = vec![0.0; p * p];
        for j in 0..p {
            for i in j..p {
                lx[i + j * p] = xyxy[(i, j)];
            }
        }
        if p > 0 && !chol_lower(&mut lx, p) {
            return None;
        }
        let forward = |v: &mut [f64]| {
            for i in 0..p {
                for j in 0..i {
                    v[i] -= lx[i + j * p] * v[j];
                }
                v[i] /= lx[i + i * p];
            }
        };
        let mut w: Vec<f64> = (0..p).map(|i| xyxy[(i, p)]).collect();
        forward(&mut w);
        let rss = xyxy[(p, p)] - dot(&w, &w);
        if !(rss > 1e-12 * xyxy[(p, p)]) {
            return None;
        }
        let mut h = vec![0.0; q * p]; // row i: h for random effect i (lme4's order)
        let mut r = vec![0.0; q];
        // h_i = L_X⁻¹ (Z̃ᵀX̃)_i by the explicit inverse (no division per row)
        let mut lxinv = vec![0.0; p * p];
        for c in 0..p {
            lxinv[c + c * p] = 1.0;
            forward(&mut lxinv[c * p..(c + 1) * p]);
        }
        let cols: Vec<&[f64]> = (0..=p).map(|j| col(ztxy, j)).collect();
        for i in 0..q {
            let hi = &mut h[i * p..(i + 1) * p];
            for (a, v) in hi.iter_mut().enumerate() {
                *v = (0..=a).map(|b| lxinv[a + b * p] * cols[b][i]).sum();
            }
            r[i] = cols[p][i] - dot(hi, &w);
        }
        let layout = self.layout();
        // unknowns: σ², then vech(Σ_t) term by term (equations in the same order)
        let mut u0 = vec![1];
        for l in layout {
            u0.push(u0.last().unwrap() + l.n_theta());
        }
        let nu = *u0.last().unwrap();
        let vech = |t: usize, i: usize, j: usize| {
            // (i ≥ j) of term t: its place among the unknowns (and equations)
            let k = layout[t].k;
            u0[t] + j * k - j * (j + 1) / 2 + i
        };
        let mut mat = vec![0.0; nu * nu];
        let mut rhs = vec![0.0; nu];
        // W_t[i, j] = Σ_l h_l[i] h_l[j]ᵀ (p x p, all k² of them), and the observed forms
        let mut wt: Vec<Vec<f64>> = layout
            .iter()
            .map(|l| vec![0.0; l.k * l.k * p * p])
            .collect();
        for (t, lay) in layout.iter().enumerate() {
            let k = lay.k;
            for l in 0..lay.n_levels {
                let o = lay.offset + l * k;
                for j in 0..k {
                    let hj = &h[(o + j) * p..][..p];
                    for i in 0..k {
                        let hi = &h[(o + i) * p..][..p];
                        let wij = &mut wt[t][(i + j * k) * p * p..][..p * p];
                        for d in 0..p {
                            for c in 0..p {
                                wij[c + d * p] += hi[c] * hj[d];
                            }
                        }
                    }
                    for i in j..k {
                        rhs[vech(t, i, j)] += r[o + i] * r[o + j];
                    }
                }
            }
        }
        rhs[0] = rss;
        mat[0] = (n - p) as f64;
        // one pass over A's stored blocks: B's diagonal (the σ² column), and for
        // every unknown S of the column block's term, A_lm S A_lmᵀ − v h_lᵀ − h_l v
        let mut pass = Pass {
            ks: layout.iter().map(|l| l.k).collect(),
            u0: &u0,
            h: &h,
            p,
            nu,
            v: vec![0.0; layout.iter().map(|l| l.k).max().unwrap_or(0) * p],
        };
        let mut bdiag: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let mut full = vec![0.0; kmax * kmax];
        self.for_each_a_block(|b| {
            let ka = layout[b.ta].k;
            if b.a == b.b {
                // a diagonal block, whole from its lower triangle
                let full = &mut full[..ka * ka];
                for j in 0..ka {
                    for i in 0..ka {
                        full[i + j * ka] = b.v[i.max(j) + i.min(j) * ka];
                    }
                }
                for (d, v) in bdiag[b.ta].iter_mut().zip(full.iter()) {
                    *d += v;
                }
                match ka {
                    1 => pass.add_diagonal(K::<1>, &mut mat, (b.ta, b.a), full),
                    2 => pass.add_diagonal(K::<2>, &mut mat, (b.ta, b.a), full),
                    3 => pass.add_diagonal(K::<3>, &mut mat, (b.ta, b.a), full),
                    _ => pass.add(&mut mat, (b.ta, b.a), (b.ta, b.a), |x, y| full[x + y * ka]),
                }
            } else {
                pass.add(&mut mat, (b.ta, b.a), (b.tb, b.b), |x, y| b.v[x + y * ka]);
                pass.add(&mut mat, (b.tb, b.b), (b.ta, b.a), |x, y| b.v[y + x * ka]);
            }
        });
        // B's diagonal: the σ² column and the RSS row; the projection's h_l U h_l
        let trace = |m: &[f64]| (0..p).map(|c| m[c + c * p]).sum::<f64>();
        for (t, lay) in layout.iter().enumerate() {
            let k = lay.k;
            let wtt = &wt[t];
            let wij = |i: usize, j: usize| &wtt[(i + j * k) * p * p..][..p * p];
            for j in 0..k {
                for i in j..k {
                    let b = bdiag[t][i + j * k] - trace(wij(i, j));
                    mat[vech(t, i, j)] = b;
                    mat[vech(t, i, j) * nu] = if i == j { b } else { 2.0 * b };
                }
            }
        }
        for (tp, lp) in layout.iter().enumerate() {
            let kp = lp.k;
            for bb in 0..kp {
                for aa in bb..kp {
                    // U = W_t'[aa, bb] + W_t'[bb, aa] (once when aa = bb)
                    let w1 = &wt[tp][(aa + bb * kp) * p * p..][..p * p];
                    let w2 = &wt[tp][(bb + aa * kp) * p * p..][..p * p];
                    let u: Vec<f64> = if aa == bb {
                        w1.to_vec()
                    } else {
                        w1.iter().zip(w2).map(|(x, y)| x + y).collect()
                    };
                    let col = vech(tp, aa, bb) * nu;
                    for (t, lay) in layout.iter().enumerate() {
                        let k = lay.k;
                        for j in 0..k {
                            for i in j..k {
                                // ⟨U, W_t[i, j]⟩ = Σ_l h_l[i]ᵀ U h_l[j]
                                let wj = &wt[t][(i + j * k) * p * p..][..p * p];
                                mat[vech(t, i, j) + col] += dot(&u, wj);
                            }
                        }
                    }
                }
            }
        }
        let x = solve(mat, rhs)?;
        let sigma2 = x[0].max(1e-3 * rss / (n - p) as f64);
        let mut theta = Vec::with_capacity(self.n_theta());
        for (t, lay) in layout.iter().enumerate() {
            theta.extend(cholesky_start(&x[u0[t]..u0[t + 1]], lay.k, sigma2));
        }
        Some(theta)
    }
}

/// The pass over A's blocks of [`Workspace::moment_start`].
struct Pass<'a> {
    /// k of each term, the first unknown of each term, h (q x p by rows).
    ks: Vec<usize>,
    u0: &'a [usize],
    h: &'a [f64],
    p: usize,
    nu: usize,
    /// v = A S h_m (k_l x p).
    v: Vec<f64>,
}

impl Pass<'_> {
    /// The place of unknown (and equation) (i ≥ j) of term t.
    fn vech(&self, t: usize, i: usize, j: usize) -> usize {
        self.u0[t] + j * self.ks[t] - j * (j + 1) / 2 + i
    }

    /// Adds block A_lm (`blk(x, y)`, k_l x k_m) of level l (term tl, first
    /// random effect l0) and level m (tm, m0) to the equations of tl, in the
    /// columns of tm's unknowns S: A_lm S A_lmᵀ − v h_lᵀ − h_l vᵀ, v = A_lm S h_m.
    fn add(
        &mut self,
        mat: &mut [f64],
        (tl, l0): (usize, usize),
        (tm, m0): (usize, usize),
        blk: impl Fn(usize, usize) -> f64,
    ) {
        let (kl, km, p, h) = (self.ks[tl], self.ks[tm], self.p, self.h);
        if kl == 1 && km == 1 {
            // scalar terms: a² − 2a h_l·h_m
            let a = blk(0, 0);
            let hh = dot(&h[l0 * p..][..p], &h[m0 * p..][..p]);
            mat[self.vech(tl, 0, 0) + self.vech(tm, 0, 0) * self.nu] += a * a - 2.0 * a * hh;
            return;
        }
        for bb in 0..km {
            for aa in bb..km {
                let col = self.vech(tm, aa, bb) * self.nu;
                // v_x = (A S h_m)_x = A_x,aa h_m[bb] + A_x,bb h_m[aa] (once when aa = bb)
                let (ha, hb) = (&h[(m0 + aa) * p..][..p], &h[(m0 + bb) * p..][..p]);
                for x in 0..kl {
                    let (xa, xb) = (blk(x, aa), blk(x, bb));
                    for c in 0..p {
                        self.v[x * p + c] = if aa == bb {
                            xa * ha[c]
                        } else {
                            xa * hb[c] + xb * ha[c]
                        };
                    }
                }
                for j in 0..kl {
                    let hj = &h[(l0 + j) * p..][..p];
                    for i in j..kl {
                        let hi = &h[(l0 + i) * p..][..p];
                        let asa = if aa == bb {
                            blk(i, aa) * blk(j, aa)
                        } else {
                            blk(i, aa) * blk(j, bb) + blk(i, bb) * blk(j, aa)
                        };
                        let vh = dot(&self.v[i * p..][..p], hj) + dot(hi, &self.v[j * p..][..p]);
                        mat[self.vech(tl, i, j) + col] += asa - vh;
                    }
                }
            }
        }
    }
}

impl Pass<'_> {
    /// [`add`](Self::add) for a diagonal block (l = m, `blk` whole, k x k
    /// column-major) with k known at compile time: the same sums, unrolled.
    #[inline(always)]
    fn add_diagonal<D: Dim>(
        &mut self,
        kd: D,
        mat: &mut [f64],
        (t, l0): (usize, usize),
        blk: &[f64],
    ) {
        let (k, p, nu) = (kd.get(), self.p, self.nu);
        let base = self.u0[t];
        let hl = &self.h[l0 * p..(l0 + k) * p];
        let v = &mut self.v[..k * p];
        if k == 1 {
            // a² − 2a h_l·h_l
            let a = blk[0];
            mat[base + base * nu] += a * a - 2.0 * a * dot(hl, hl);
            return;
        }
        let mut unknown = base;
        for bb in 0..k {
            for aa in bb..k {
                let col = unknown * nu;
                unknown += 1;
                let (ha, hb) = (&hl[aa * p..][..p], &hl[bb * p..][..p]);
                for x in 0..k {
                    let (xa, xb) = (blk[x + aa * k], blk[x + bb * k]);
                    for c in 0..p {
                        v[x * p + c] = if aa == bb {
                            xa * ha[c]
                        } else {
                            xa * hb[c] + xb * ha[c]
                        };
                    }
                }
                let mut row = base;
                for j in 0..k {
                    let hj = &hl[j * p..][..p];
                    for i in j..k {
                        let hi = &hl[i * p..][..p];
                        let asa = if aa == bb {
                            blk[i + aa * k] * blk[j + aa * k]
                        } else {
                            blk[i + aa * k] * blk[j + bb * k] + blk[i + bb * k] * blk[j + aa * k]
                        };
                        let vh = dot(&v[i * p..][..p], hj) + dot(hi, &v[j * p..][..p]);
                        mat[row + col] += asa - vh;
                        row += 1;
                    }
                }
            }
        }
    }
}

/// θ of a term from vech(Σ_t) (lme4's order) and σ²: the lower Cholesky
/// factor of Σ_t / σ², variances and correlations kept within bounds.
fn cholesky_start(vech: &[f64], k: usize, sigma2: f64) -> Vec<f64> {
    let mut v = vec![0.0; k * k];
    let mut e = 0;
    for j in 0..k {
        for i in j..k {
            v[i + j * k] = vech[e] / sigma2;
            e += 1;
        }
    }
    let sd: Vec<f64> = (0..k)
        .map(|i| {
            let d = v[i + i * k];
            (if d.is_finite() { d } else { VAR_MIN })
                .clamp(VAR_MIN, VAR_MAX)
                .sqrt()
        })
        .collect();
    for j in 0..k {
        v[j + j * k] = sd[j] * sd[j];
        for i in j + 1..k {
            let rho = v[i + j * k] / (sd[i] * sd[j]);
            let rho = if rho.is_finite() { rho } else { 0.0 };
            v[i + j * k] = rho.clamp(-CORR_MAX, CORR_MAX) * sd[i] * sd[j];
        }
    }
    if !chol_lower(&mut v, k) {
        // correlations within ±0.9 need not be jointly valid for k > 2
        v = vec![0.0; k * k];
        for j in 0..k {
            v[j + j * k] = sd[j];
        }
    }
    let mut theta = Vec::with_capacity(vech.len());
    for j in 0..k {
        for i in j..k {
            theta.push(v[i + j * k]);
        }
    }
    theta
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Solves the n x n system `m x = b` (column-major) by Gaussian elimination
/// with partial pivoting; None when it is singular (a pivot below 1e-12 of
/// the largest entry) or the solution is not finite.
fn solve(mut m: Vec<f64>, mut b: Vec<f64>) -> Option<Vec<f64>> {
    let n = b.len();
    let big = m.iter().fold(0.0f64, |a, v| a.max(v.abs()));
    for c in 0..n {
        let piv = (c..n).max_by(|&i, &j| m[i + c * n].abs().total_cmp(&m[j + c * n].abs()))?;
        if !(m[piv + c * n].abs() > 1e-12 * big) {
            return None;
        }
        if piv != c {
            for j in 0..n {
                m.swap(c + j * n, piv + j * n);
            }
            b.swap(c, piv);
        }
        for i in c + 1..n {
            let fct = m[i + c * n] / m[c + c * n];
            if fct != 0.0 {
                for j in c..n {
                    m[i + j * n] -= fct * m[c + j * n];
                }
                b[i] -= fct * b[c];
            }
        }
    }
    for c in (0..n).rev() {
        let s: f64 = (c + 1..n).map(|j| m[c + j * n] * b[j]).sum();
        b[c] = (b[c] - s) / m[c + c * n];
    }
    b.iter().all(|v| v.is_finite()).then_some(b)
}
