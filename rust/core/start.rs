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
//! scalar terms exactly MIVQUE0). The sum over m is split into the stored
//! blocks of A (A_lm ≠ 0 only where levels share rows) and the rank-p
//! projection: Σ_m B_lm S B_lmᵀ = Σ_m A_lm S A_lmᵀ − F_l h_lᵀ − h_l F_lᵀ +
//! h_l U h_lᵀ with F_l = Σ_m A_lm S h_m and U = Σ_m h_mᵀ S h_m.
//!
//! θ_t is the lower Cholesky factor of Σ_t / σ², its variances kept within
//! [10⁻⁴, 10⁴] and its correlations within ±0.9: never at the boundary,
//! where a diagonal θ has a zero gradient, and never singular.

use super::small::chol_lower;
use super::workspace::Workspace;

/// Variances (relative to σ²) and correlations of the start are kept within
/// these.
const VAR_MIN: f64 = 1e-4;
const VAR_MAX: f64 = 1e4;
const CORR_MAX: f64 = 0.9;

/// No start when q (p + 1) exceeds this (the h_l and F_l are q x p).
const MAX_QP: usize = 1 << 24;

impl Workspace {
    /// A starting θ by MIVQUE0 (see the module's notes), in the workspace's
    /// θ (lme4's layout); None when X̃ᵀX̃ is singular, the system is
    /// singular, or the model is too large for it (q(p + 1) > 2²⁴).
    pub fn moment_start(&self) -> Option<Vec<f64>> {
        let (n, p, q) = (self.n(), self.p(), self.q());
        if q * (p + 1) > MAX_QP || n <= p {
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
        for i in 0..q {
            let hi = &mut h[i * p..(i + 1) * p];
            for (j, v) in hi.iter_mut().enumerate() {
                *v = ztxy[(i, j)];
            }
            forward(hi);
            r[i] = ztxy[(i, p)] - dot(hi, &w);
        }
        let layout = self.layout();
        // unknowns: σ², then vech(Σ_t) term by term (equations in the same order)
        let mut u0 = vec![1];
        for l in layout {
            u0.push(u0.last().unwrap() + l.n_theta());
        }
        let nu = *u0.last().unwrap();
        let mut mat = vec![0.0; nu * nu];
        let mut rhs = vec![0.0; nu];
        let ata = |v: &[f64], k: usize, i: usize, j: usize| {
            // a diagonal block of A, from its lower triangle
            if i >= j {
                v[i + j * k]
            } else {
                v[j + i * k]
            }
        };
        rhs[0] = rss;
        mat[0] = (n - p) as f64;
        // the observed forms, the σ² column, and Σ_m B_mm for the RSS row
        let mut bdiag: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        self.for_each_a_block(|blk| {
            if blk.a != blk.b {
                return;
            }
            let k = layout[blk.ta].k;
            for j in 0..k {
                for i in 0..k {
                    let (hi, hj) = (&h[(blk.a + i) * p..][..p], &h[(blk.a + j) * p..][..p]);
                    bdiag[blk.ta][i + j * k] += ata(blk.v, k, i, j) - dot(hi, hj);
                }
            }
        });
        for (t, lay) in layout.iter().enumerate() {
            let k = lay.k;
            let mut e = u0[t];
            for j in 0..k {
                for i in j..k {
                    mat[e] = bdiag[t][i + j * k];
                    rhs[e] = (0..lay.n_levels)
                        .map(|l| r[lay.offset + l * k + i] * r[lay.offset + l * k + j])
                        .sum();
                    e += 1;
                }
            }
        }
        // the column of each unknown Σ_t'[a, b]: the expectations for S = E_ab + E_ba
        let kmax = layout.iter().map(|l| l.k).max().unwrap_or(0);
        let mut f = vec![0.0; q * p];
        let mut acc: Vec<Vec<f64>> = layout.iter().map(|l| vec![0.0; l.k * l.k]).collect();
        let mut sa = vec![0.0; kmax * kmax];
        for (tp, lay) in layout.iter().enumerate() {
            let kp = lay.k;
            let mut col = u0[tp];
            for b in 0..kp {
                for aa in b..kp {
                    let mut s = vec![0.0; kp * kp];
                    s[aa + b * kp] = 1.0;
                    s[b + aa * kp] = 1.0;
                    let sym = if aa == b { 1.0 } else { 2.0 };
                    mat[col * nu] = sym * bdiag[tp][aa + b * kp];
                    f.fill(0.0);
                    acc.iter_mut().for_each(|v| v.fill(0.0));
                    // the stored blocks: A_lm S A_lmᵀ and F_l = Σ_m A_lm S h_m
                    self.for_each_a_block(|blk| {
                        let (ka, kb) = (layout[blk.ta].k, layout[blk.tb].k);
                        let diag = blk.a == blk.b;
                        let get = |x: usize, y: usize| {
                            if diag {
                                ata(blk.v, ka, x, y)
                            } else {
                                blk.v[x + y * ka]
                            }
                        };
                        if blk.tb == tp {
                            // l = the row block (term ta), m = the column block
                            add_block(
                                &mut acc[blk.ta],
                                &mut f,
                                &mut sa,
                                &s,
                                &h,
                                p,
                                ka,
                                kb,
                                blk.a,
                                blk.b,
                                get,
                            );
                        }
                        if blk.ta == tp && !diag {
                            let get_t = |x: usize, y: usize| blk.v[y + x * ka];
                            add_block(
                                &mut acc[blk.tb],
                                &mut f,
                                &mut sa,
                                &s,
                                &h,
                                p,
                                kb,
                                ka,
                                blk.b,
                                blk.a,
                                get_t,
                            );
                        }
                    });
                    // U = Σ_{m in t'} h_mᵀ S h_m (p x p)
                    let mut um = vec![0.0; p * p];
                    for m in 0..lay.n_levels {
                        let o = lay.offset + m * kp;
                        for x in 0..kp {
                            for y in 0..kp {
                                let sv = s[x + y * kp];
                                if sv == 0.0 {
                                    continue;
                                }
                                let (hx, hy) = (&h[(o + x) * p..][..p], &h[(o + y) * p..][..p]);
                                for c in 0..p {
                                    for d in 0..p {
                                        um[c + d * p] += sv * hx[c] * hy[d];
                                    }
                                }
                            }
                        }
                    }
                    // − F_l h_lᵀ − h_l F_lᵀ + h_l U h_lᵀ, level by level
                    let mut hu = vec![0.0; p];
                    for (t, lt) in layout.iter().enumerate() {
                        let k = lt.k;
                        for l in 0..lt.n_levels {
                            let o = lt.offset + l * k;
                            for j in 0..k {
                                let hj = &h[(o + j) * p..][..p];
                                for (c, v) in hu.iter_mut().enumerate() {
                                    *v = (0..p).map(|d| um[c + d * p] * hj[d]).sum();
                                }
                                for i in j..k {
                                    let hi = &h[(o + i) * p..][..p];
                                    let (fi, fj) = (&f[(o + i) * p..][..p], &f[(o + j) * p..][..p]);
                                    acc[t][i + j * k] += dot(hi, &hu) - dot(fi, hj) - dot(hi, fj);
                                }
                            }
                        }
                    }
                    for (t, lt) in layout.iter().enumerate() {
                        let k = lt.k;
                        let mut e = u0[t];
                        for j in 0..k {
                            for i in j..k {
                                mat[e + col * nu] = acc[t][i + j * k];
                                e += 1;
                            }
                        }
                    }
                    col += 1;
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

/// Adds block A_lm (k x km, `get(x, y)`) of level l (first random effect
/// `l0`) and level m (`m0`, of the term of S): vech... A_lm S A_lmᵀ to
/// `acc` (k x k, lower triangle) and A_lm S h_m to F_l.
#[allow(clippy::too_many_arguments)]
fn add_block(
    acc: &mut [f64],
    f: &mut [f64],
    sa: &mut [f64],
    s: &[f64],
    h: &[f64],
    p: usize,
    k: usize,
    km: usize,
    l0: usize,
    m0: usize,
    get: impl Fn(usize, usize) -> f64,
) {
    // sa = S A_lmᵀ (km x k)
    for x in 0..k {
        for y in 0..km {
            sa[y + x * km] = (0..km).map(|z| s[y + z * km] * get(x, z)).sum();
        }
    }
    for j in 0..k {
        for i in j..k {
            acc[i + j * k] += (0..km).map(|y| get(i, y) * sa[y + j * km]).sum::<f64>();
        }
    }
    // F_l[x] += Σ_y (A_lm S)[x, y] h_m[y] = Σ_y sa[y, x] h_m[y]
    for x in 0..k {
        let fx = &mut f[(l0 + x) * p..(l0 + x + 1) * p];
        for y in 0..km {
            let c = sa[y + x * km];
            if c != 0.0 {
                let hy = &h[(m0 + y) * p..][..p];
                fx.iter_mut().zip(hy).for_each(|(v, hv)| *v += c * hv);
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
