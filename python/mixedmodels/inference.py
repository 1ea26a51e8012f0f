"""Inference after the fit: model comparison, intervals, and small-sample
degrees of freedom for the fixed effects.

- `anova`: likelihood-ratio tests between nested models (lme4's ``anova``,
  refitting REML fits by ML), or, for one model, lmerTest's type III F tests
  with Satterthwaite's denominator degrees of freedom.
- `satterthwaite`: lmerTest's Satterthwaite degrees of freedom. As lmerTest,
  the variance parameters are (θ, σ); the covariance of β̂ and the Hessian
  of the deviance are differentiated numerically with Richardson
  extrapolation (numDeriv's defaults).
- `confint`: Wald and parametric-bootstrap intervals in lme4's row order
  (profile intervals: not yet).
"""

from __future__ import annotations

import math
import sys
import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = [
    "anova",
    "satterthwaite",
    "confint",
    "coef_table",
    "numderiv_jacobian",
    "numderiv_hessian",
]


# -- numerical derivatives (numDeriv's Richardson method) -------------------------
# numDeriv's defaults: relative step d = 1e-4 for jacobian, 0.1 for hessian
# (genD), eps = 1e-4 for elements near zero, r = 4 extrapolation steps, v = 2.
_EPS, _R, _V = 1e-4, 4, 2.0
_D_JACOBIAN, _D_HESSIAN = 1e-4, 0.1
_ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)


def _h0(x: np.ndarray, d: float) -> np.ndarray:
    return np.abs(d * x) + _EPS * (np.abs(x) < _ZERO_TOL)


def _richardson(a: np.ndarray) -> np.ndarray:
    """Richardson extrapolation over the last axis (r approximations)."""
    a = a.copy()
    r = a.shape[-1]
    for m in range(1, r):
        a[..., : r - m] = (a[..., 1 : r - m + 1] * 4.0**m - a[..., : r - m]) / (4.0**m - 1)
    return a[..., 0]


def numderiv_jacobian(f, x: np.ndarray) -> np.ndarray:
    """numDeriv::jacobian(method = "Richardson"): f maps R^n to R^m (arrays
    are flattened); returns m x n."""
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(f(x), dtype=float).ravel()
    n = len(x)
    out = np.zeros((len(f0), n))
    for i in range(n):
        h = _h0(x, _D_JACOBIAN)
        a = np.zeros((len(f0), _R))
        for k in range(_R):
            e = np.zeros(n)
            e[i] = h[i]
            a[:, k] = (np.ravel(f(x + e)) - np.ravel(f(x - e))) / (2 * h[i])
            h = h / _V
        out[:, i] = _richardson(a)
    return out


def numderiv_hessian(f, x: np.ndarray) -> np.ndarray:
    """numDeriv::hessian (genD with Richardson extrapolation) of a scalar f."""
    x = np.asarray(x, dtype=float)
    n = len(x)
    f0 = float(f(x))
    h0 = _h0(x, _D_HESSIAN)
    hdiag = np.zeros(n)
    for i in range(n):
        h = h0.copy()
        a = np.zeros(_R)
        for k in range(_R):
            e = np.zeros(n)
            e[i] = h[i]
            a[k] = (f(x + e) - 2 * f0 + f(x - e)) / h[i] ** 2
            h = h / _V
        hdiag[i] = _richardson(a)
    hess = np.diag(hdiag)
    for i in range(n):
        for j in range(i):
            h = h0.copy()
            a = np.zeros(_R)
            for k in range(_R):
                e = np.zeros(n)
                e[i] = h[i]
                e[j] = h[j]
                a[k] = (
                    f(x + e) - 2 * f0 + f(x - e) - hdiag[i] * h[i] ** 2 - hdiag[j] * h[j] ** 2
                ) / (2 * h[i] * h[j])
                h = h / _V
            hess[i, j] = hess[j, i] = _richardson(a)
    return hess


# -- Satterthwaite -------------------------------------------------------------------
class _VarParFunctions:
    """The deviance and the covariance of β̂ as functions of the variance
    parameters (θ, σ), as lmerTest's devfun_vp and get_covbeta."""

    def __init__(self, fit: LinearMixedModelResult):
        self.ws = fit.model._ws
        self.reml = fit.reml
        self.n, self.p = fit.nobs, len(fit.beta)

    def deviance(self, varpar: np.ndarray) -> float:
        theta, sigma = varpar[:-1], varpar[-1]
        s2 = sigma * sigma
        pwrss, ld_l2, ld_rx2 = self.ws.components(np.ascontiguousarray(theta))
        dev = ld_l2 + pwrss / s2 + self.n * math.log(2 * math.pi * s2)
        if self.reml:
            dev += ld_rx2 - self.p * math.log(2 * math.pi * s2)
        return dev

    def covbeta(self, varpar: np.ndarray) -> np.ndarray:
        theta, sigma = varpar[:-1], varpar[-1]
        rx = np.asarray(self.ws.rx(np.ascontiguousarray(theta)))
        rinv = np.linalg.solve(rx, np.eye(self.p))
        return sigma**2 * rinv @ rinv.T


class SatterthwaiteInfo:
    """Covariance of β̂, its Jacobian in the variance parameters, and the
    asymptotic covariance of the variance parameters (2 H⁻¹)."""

    def __init__(self, fit: LinearMixedModelResult):
        fns = _VarParFunctions(fit)
        self.varpar = np.concatenate([fit.theta, [fit.sigma]])
        self.vcov = fns.covbeta(self.varpar)
        p = len(fit.beta)
        jac = numderiv_jacobian(fns.covbeta, self.varpar)  # (p*p) x k
        self.jac = [jac[:, i].reshape(p, p) for i in range(jac.shape[1])]
        h = numderiv_hessian(fns.deviance, self.varpar)
        self.a = 2 * np.linalg.pinv(h)

    def df_contrast(self, L: np.ndarray) -> tuple[float, float]:
        """(variance of Lβ̂, Satterthwaite df) for a 1 x p contrast."""
        L = np.asarray(L, dtype=float).ravel()
        var = float(L @ self.vcov @ L)
        grad = np.array([L @ j @ L for j in self.jac])
        denom = float(grad @ self.a @ grad)
        return var, (2 * var**2 / denom if denom > 0 else np.inf)

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float, float]:
        """lmerTest's multi-df F test: (F, NumDF, DenDF, p)."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = L.shape[0]
        vc = L @ self.vcov @ L.T
        est = L @ beta
        if q == 1:
            var, df = self.df_contrast(L[0])
            f = float(est[0] ** 2 / var)
            return f, 1, df, float(stats.f.sf(f, 1, df))
        lam, pvec = np.linalg.eigh(vc)
        order = np.argsort(lam)[::-1]
        lam, pvec = lam[order], pvec[:, order]
        f = float(np.sum((pvec.T @ est) ** 2 / lam) / q)
        nus = np.array([self.df_contrast(pvec[:, m] @ L)[1] for m in range(q)])
        e = np.sum(nus[nus > 2] / (nus[nus > 2] - 2))
        den = 2 * e / (e - q) if e > q else np.nan
        return f, q, den, float(stats.f.sf(f, q, den)) if np.isfinite(den) else np.nan


# -- Kenward-Roger -------------------------------------------------------------------
KR_MAX_N = 5000
"""Kenward-Roger works with dense n x n matrices; larger models are refused."""


class KenwardRogerInfo:
    """pbkrtest's Kenward-Roger quantities (vcovAdj): the covariance
    parameters are the elements of each term's covariance matrix and σ², with
    V = Σ_r γ_r G_r, and Φ is the fit's covariance of β̂.

    As pbkrtest 0.5.2 does, the residual part of V is σ²I even when the fit has
    prior weights, while Φ is the (weighted) fit's vcov; without weights the
    two agree. This reproduces pbkrtest's numbers for weighted fits, which
    are not a consistent Kenward-Roger adjustment."""

    def __init__(self, fit: LinearMixedModelResult):
        from .matrices import z_matrix

        if not fit.reml:  # pbkrtest refits ML fits by REML
            from .model import LinearMixedModel

            model = LinearMixedModel(fit.model.design, reml=True, data_name=fit.model.data_name)
            fit = model.fit(start=fit.theta)
        self.fit = fit
        n = fit.nobs
        if n > KR_MAX_N:
            raise ValueError(
                f"Kenward-Roger needs dense {n} x {n} matrices; it is limited to "
                f"{KR_MAX_N} observations (use ddf='satterthwaite')"
            )
        X = fit.design.X
        z = z_matrix(fit).toarray()
        gs: list[np.ndarray] = []
        gamma: list[float] = []
        off = 0
        for t, (_, cov) in zip(fit.design.terms, fit.covariances.items(), strict=True):
            k, nl = t.k, t.n_levels
            cols = [z[:, off + a :: k][:, :nl] for a in range(k)]
            c = cov.to_numpy()
            for b in range(k):
                for a in range(b, k):
                    g = cols[a] @ cols[b].T
                    if a != b:
                        g = g + g.T
                    gs.append(g)
                    gamma.append(c[a, b])
            off += nl * k
        gs.append(np.eye(n))
        gamma.append(fit.sigma**2)
        sigma = sum(gm * g for gm, g in zip(gamma, gs, strict=True))
        sinv = np.linalg.inv(sigma)
        sinv = (sinv + sinv.T) / 2
        self.phi = fit.vcov.to_numpy()
        hh = [g @ sinv for g in gs]
        oo = [h @ X for h in hh]
        tt = sinv @ X
        self.P = [-(o.T @ tt) for o in oo]
        m = len(gs)
        Q = {}
        for r in range(m):
            for s_ in range(r, m):
                Q[r, s_] = oo[r].T @ sinv @ oo[s_]
        ie2 = np.zeros((m, m))
        for r in range(m):
            for s_ in range(r, m):
                ktr = np.sum(hh[r].T * hh[s_])
                v = (
                    ktr
                    - 2 * np.sum(self.phi * Q[r, s_])
                    + np.sum((self.phi @ self.P[r]) * (self.P[s_] @ self.phi))
                )
                ie2[r, s_] = ie2[s_, r] = v
        ev = np.linalg.eigvalsh(ie2)
        self.W = 2 * (np.linalg.inv(ie2) if np.min(np.abs(ev)) > 1e-10 else np.linalg.pinv(ie2))
        uu = np.zeros_like(self.phi)
        for r in range(m):
            for s_ in range(r, m):
                term = self.W[r, s_] * (Q[r, s_] - self.P[r] @ self.phi @ self.P[s_])
                uu += term if r == s_ else term + term.T
        self.phi_a = self.phi + 2 * self.phi @ uu @ self.phi

    def test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, float, float]:
        """(F, NumDF, DenDF, p) for H0: Lβ = 0, as pbkrtest's KRmodcomp."""
        L = np.atleast_2d(np.asarray(L, dtype=float))
        q = np.linalg.matrix_rank(L)
        phi = self.phi
        theta = L.T @ np.linalg.solve(L @ phi @ L.T, L)
        tp = theta @ phi
        a1 = a2 = 0.0
        m = len(self.P)
        for i in range(m):
            ui = tp @ self.P[i] @ phi
            for j in range(i, m):
                e = 1.0 if i == j else 2.0
                uj = tp @ self.P[j] @ phi
                a1 += e * self.W[i, j] * np.trace(ui) * np.trace(uj)
                a2 += e * self.W[i, j] * np.sum(ui * uj.T)
        b = (a1 + 6 * a2) / (2 * q)
        g = ((q + 1) * a1 - (q + 4) * a2) / ((q + 2) * a2)
        den = 3 * q + 2 * (1 - g)
        c1, c2, c3 = g / den, (q - g) / den, (q + 2 - g) / den
        v0, v1, v2 = 1 + c1 * b, 1 - c2 * b, 1 - c3 * b
        v0 = 0.0 if abs(v0) < 1e-10 else v0
        rho = (1 / q) * ((1 - a2 / q) / v1) ** 2 * v0 / v2
        df2 = 4 + (q + 2) / (q * rho - 1)
        scaling = 1.0 if abs(df2 - 2) < 1e-2 else df2 * (1 - a2 / q) / (df2 - 2)
        est = L @ beta
        wald = float(est @ np.linalg.solve(L @ self.phi_a @ L.T, est)) / q
        f = scaling * wald
        return f, float(q), float(df2), float(stats.f.sf(f, q, df2))


def kenward_roger(fit: LinearMixedModelResult) -> pd.DataFrame:
    """Kenward-Roger df and p for each fixed effect (pbkrtest), with the
    adjusted standard errors: columns estimate, se, df, t, p. ML fits are
    refitted by REML first, as pbkrtest does."""
    info = fit._kenward_roger_info
    fit = info.fit
    rows = []
    p = len(fit.beta)
    for j in range(p):
        L = np.zeros((1, p))
        L[0, j] = 1.0
        f, _, df, pval = info.test(L, fit.beta)
        se = math.sqrt(info.phi_a[j, j])
        rows.append((fit.beta[j], se, df, fit.beta[j] / se, pval))
    return pd.DataFrame(
        rows, index=list(fit.design.x_names), columns=["estimate", "se", "df", "t", "p"]
    )


def satterthwaite(fit: LinearMixedModelResult) -> pd.DataFrame:
    """Satterthwaite degrees of freedom for each fixed effect (lmerTest):
    columns estimate, se, df, t, p."""
    info = fit._satterthwaite_info
    rows = []
    p = len(fit.beta)
    for j in range(p):
        L = np.zeros(p)
        L[j] = 1.0
        var, df = info.df_contrast(L)
        se = math.sqrt(var)
        t = fit.beta[j] / se
        rows.append((fit.beta[j], se, df, t, 2 * stats.t.sf(abs(t), df)))
    return pd.DataFrame(
        rows, index=list(fit.design.x_names), columns=["estimate", "se", "df", "t", "p"]
    )


def coef_table(fit: LinearMixedModelResult, ddf: str | None = "satterthwaite") -> pd.DataFrame:
    """Fixed-effects table: estimate, se, df, t, p. ``ddf``: "satterthwaite"
    (lmerTest), "kenward-roger" (pbkrtest: adjusted SEs, KR df), or None
    (t values only)."""
    if ddf is None:
        se = np.sqrt(np.diag(fit.vcov.to_numpy()))
        return pd.DataFrame(
            {"estimate": fit.beta, "se": se, "t": fit.beta / se}, index=list(fit.design.x_names)
        )
    key = ddf.lower().replace("_", "-")
    if key == "satterthwaite":
        return satterthwaite(fit)
    if key in ("kenward-roger", "kr"):
        return kenward_roger(fit)
    raise ValueError(f"unknown ddf {ddf!r}: 'satterthwaite' or 'kenward-roger'")


def anova_type3(fit: LinearMixedModelResult) -> pd.DataFrame:
    """lmerTest's type III table with Satterthwaite df, for models without
    interactions (each term is tested by the rows of its columns, which is
    lmerTest's type III hypothesis there); models with interactions raise
    NotImplementedError."""
    d = fit.design
    info = fit._satterthwaite_info
    names = list(d.x_names)
    rows, labels = [], []
    all_names = _built_names(d)
    terms = d.x_builder.term_columns()
    if any(":" in term for term, _ in terms):
        # lmerTest's type III hypotheses for terms marginal to an interaction
        # are not the rows of the term's columns; not implemented yet.
        raise NotImplementedError(
            "type III F tests for models with interaction terms are not implemented yet; "
            "use fit.coef_table() for each coefficient, or mm.anova(fit0, fit1) to compare models"
        )
    for term, cols in terms:
        idx = [names.index(all_names[c]) for c in cols if all_names[c] in names]
        if not idx:
            continue
        L = np.zeros((len(idx), len(names)))
        for r, c in enumerate(idx):
            L[r, c] = 1.0
        f, q, den, p = info.f_test(L, fit.beta)
        rows.append((f, q, den, p))
        labels.append(term)
    return pd.DataFrame(rows, index=labels, columns=["F", "NumDF", "DenDF", "p"])


def _built_names(d) -> list[str]:
    """Names of X's columns as built, before dropping rank-deficient ones."""
    keep = d.x_builder.keep
    if keep is None:
        return list(d.x_names)
    total = max(keep) + 1 + len(d.dropped_columns) if keep else len(d.dropped_columns)
    out: list[str | None] = [None] * total
    for name, k in zip(d.x_names, keep, strict=True):
        out[k] = name
    it = iter(d.dropped_columns)
    return [o if o is not None else next(it) for o in out]


def anova(*fits: LinearMixedModelResult, names: list[str] | None = None) -> pd.DataFrame:
    """One fit: lmerTest's type III F tests (Satterthwaite df). Several fits:
    likelihood-ratio tests between nested models, as lme4's ``anova`` (REML
    fits are refitted by maximum likelihood first), in increasing npar."""
    if len(fits) == 1:
        return anova_type3(fits[0])
    from .model import LinearMixedModel

    ml = []
    for f in fits:
        if f.reml:
            m = LinearMixedModel(f.model.design, reml=False, data_name=f.model.data_name)
            ml.append(m.fit(start=f.theta))
        else:
            ml.append(f)
    labels = names or [f.formula for f in fits]
    order = sorted(range(len(ml)), key=lambda i: ml[i].npar)
    rows = []
    prev = None
    for i in order:
        f = ml[i]
        row = {
            "npar": f.npar,
            "AIC": f.aic,
            "BIC": f.bic,
            "logLik": f.loglik,
            "deviance": f.deviance,
            "Chisq": np.nan,
            "Df": np.nan,
            "p": np.nan,
        }
        if prev is not None:
            chisq = prev.deviance - f.deviance
            df = f.npar - prev.npar
            row["Chisq"], row["Df"] = chisq, df
            row["p"] = stats.chi2.sf(chisq, df) if df > 0 else np.nan
        rows.append(row)
        prev = f
    return pd.DataFrame(rows, index=[labels[i] for i in order])


# -- intervals -----------------------------------------------------------------------
def _param_names(fit: LinearMixedModelResult) -> list[str]:
    names = []
    for t in fit.design.terms:
        for c in range(t.k):
            for r in range(c, t.k):
                if r == c:
                    names.append(f"sd_{t.cnames[c]}|{t.group}")
                else:
                    names.append(f"cor_{t.cnames[r]}.{t.cnames[c]}|{t.group}")
    return names + ["sigma"] + list(fit.design.x_names)


def _param_values(fit: LinearMixedModelResult) -> np.ndarray:
    """sds and correlations of each term (θ order), σ, β."""
    from .matrices import templates

    vals = []
    for t, tm in zip(fit.design.terms, templates(fit), strict=True):
        k = t.k
        cov = fit.sigma**2 * tm @ tm.T
        sd = np.sqrt(np.diag(cov))
        for c in range(k):
            for r in range(c, k):
                if r == c:
                    vals.append(sd[c])
                else:
                    den = sd[r] * sd[c]
                    vals.append(cov[r, c] / den if den > 0 else np.nan)
    return np.concatenate([vals, [fit.sigma], fit.beta])


def confint(
    fit: LinearMixedModelResult,
    method: str = "wald",
    level: float = 0.95,
    nsim: int = 500,
    seed=None,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> pd.DataFrame:
    """Confidence intervals in lme4's order (random-effect sds and
    correlations, σ, then β) with columns lower and upper.

    ``"wald"``: β ± z SE (none for variance parameters, as lme4).
    ``"boot"``: parametric bootstrap percentile intervals (lme4's bootMer):
    ``nsim`` responses simulated from the fit, each refitted; ``n_jobs``
    threads (the numerical work releases the GIL); a progress line on
    stderr for long runs. ``"profile"``: profile-likelihood intervals (lme4's
    profile; REML fits are profiled on the ML deviance, as lme4 does).
    """
    names = _param_names(fit)
    alpha = (1 - level) / 2
    key = method.lower()
    if key == "wald":
        lower = np.full(len(names), np.nan)
        upper = np.full(len(names), np.nan)
        se = np.sqrt(np.diag(fit.vcov.to_numpy()))
        z = stats.norm.ppf(1 - alpha)
        p = len(fit.beta)
        lower[-p:] = fit.beta - z * se
        upper[-p:] = fit.beta + z * se
        return pd.DataFrame({"lower": lower, "upper": upper}, index=names)
    if key in ("boot", "bootstrap"):
        samples = bootstrap(fit, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress)
        lower = np.nanquantile(samples, alpha, axis=0)
        upper = np.nanquantile(samples, 1 - alpha, axis=0)
        return pd.DataFrame({"lower": lower, "upper": upper}, index=names)
    if key == "profile":
        from .profile import profile_confint

        return profile_confint(fit, level)
    raise ValueError(f"unknown method {method!r}: 'wald', 'profile' or 'boot'")


def bootstrap(
    fit: LinearMixedModelResult,
    nsim: int = 500,
    seed=None,
    n_jobs: int = 1,
    progress: bool | None = None,
) -> np.ndarray:
    """Parametric bootstrap (lme4's bootMer, type "parametric"): an nsim x
    n_params array of the parameters (sds, correlations, σ, β) refitted to
    responses simulated from the fit."""
    ys = fit.simulate(nsim, seed=seed).to_numpy()
    if progress is None:
        progress = nsim >= 200 and sys.stderr.isatty()
    out = np.empty((nsim, len(_param_names(fit))))
    t0 = time.perf_counter()

    def one(i: int) -> None:
        out[i] = _param_values(fit.refit(ys[:, i]))

    if n_jobs == 1:
        for i in range(nsim):
            one(i)
            if progress and (i + 1) % max(1, nsim // 20) == 0:
                _report(i + 1, nsim, t0)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_jobs) as ex:
            for done, _ in enumerate(ex.map(one, range(nsim)), start=1):
                if progress and done % max(1, nsim // 20) == 0:
                    _report(done, nsim, t0)
    if progress:
        sys.stderr.write("\n")
    return out


def _report(done: int, total: int, t0: float) -> None:
    el = time.perf_counter() - t0
    sys.stderr.write(f"\rbootstrap: {done}/{total} refits, {el:.1f} s")
    sys.stderr.flush()
