"""pbkrtest's Kenward-Roger degrees of freedom and adjusted covariance of β̂."""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ._cache import per_fit
from .exceptions import NumericalError, PrecisionWarning
from .matrices import z_matrix

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = [
    "KR_MAX_N",
    "KR_MAX_ROUNDING",
    "KenwardRogerInfo",
    "kenward_roger",
    "kenward_roger_info",
]

KR_MAX_N = 5000
"""Kenward-Roger works with dense n x n matrices; larger models are refused."""

KR_MAX_ROUNDING = 1e-2
"""Adjusted variances whose relative rounding error may exceed this are reported as NaN.

On a near-exact fit (σ small against the random effects' scale) the
adjustment is a small difference of terms up to 10¹⁸ times larger: its digits
are rounding's, and a change of θ in its 11th digit turns it from positive to
negative (the m89 fit of the bad-inputs catalogue).
"""


class KenwardRogerInfo:
    """pbkrtest's Kenward-Roger quantities (``vcovAdj``).

    The covariance parameters are the elements of each term's covariance
    matrix and σ², with V = Σ_r γ_r G_r, and Φ is the fit's covariance of β̂.
    ML fits are refitted by REML first, as pbkrtest does.

    As pbkrtest 0.5.2 does, the residual part of V is σ²I even when the fit
    has prior weights, while Φ is the (weighted) fit's vcov; without weights
    the two agree. This reproduces pbkrtest's numbers for weighted fits,
    which are not a consistent Kenward-Roger adjustment.
    """

    def __init__(self, fit: LinearMixedModelResult):
        fit = fit.refit_reml()
        self.beta = fit.beta
        """β̂ of the REML fit the quantities are computed at."""
        n = fit.nobs
        if n > KR_MAX_N:
            raise ValueError(
                f"Kenward-Roger needs dense {n} x {n} matrices; it is limited to "
                f"{KR_MAX_N} observations (use ddf='satterthwaite')"
            )
        X = fit.design.X
        z = z_matrix(fit.design).toarray()
        gs: list[np.ndarray] = []
        gamma: list[float] = []
        off = 0
        covs = fit.design.layout.covariances(fit.theta, fit.sigma)
        for t, c in zip(fit.design.terms, covs, strict=True):
            k, nl = t.k, t.n_levels
            cols = [z[:, off + a :: k][:, :nl] for a in range(k)]
            for a, b in t.layout.entries:
                g = cols[a] @ cols[b].T
                if a != b:
                    g = g + g.T
                gs.append(g)
                gamma.append(c[a, b])
            off += nl * k
        gs.append(np.eye(n))
        gamma.append(fit.sigma**2)
        sigma = sum(gm * g for gm, g in zip(gamma, gs, strict=True))
        try:
            sinv = np.linalg.inv(sigma)
        except np.linalg.LinAlgError:
            raise NumericalError(
                "Kenward-Roger: the fit's V is singular, so the adjustment is undefined; "
                "use ddf='satterthwaite'"
            ) from None
        sinv = (sinv + sinv.T) / 2
        self.phi = fit.vcov.to_numpy()
        """Φ, the covariance of β̂."""
        hh = [g @ sinv for g in gs]
        oo = [h @ X for h in hh]
        tt = sinv @ X
        self.P = [-(o.T @ tt) for o in oo]
        """pbkrtest's P matrices, one per covariance parameter."""
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
        # pbkrtest inverts IE2 when its smallest |eigenvalue| exceeds 1e-10, and takes
        # the generalized inverse otherwise; also when the inverse fails (degenerate fits)
        ev = np.linalg.eigvalsh(ie2)
        try:
            inv = np.linalg.inv(ie2) if np.min(np.abs(ev)) > 1e-10 else np.linalg.pinv(ie2)
        except np.linalg.LinAlgError:
            inv = np.linalg.pinv(ie2)
        self.W = 2 * inv
        """pbkrtest's W: twice the inverse expected information of the covariance parameters."""
        uu = np.zeros_like(self.phi)
        size = np.zeros_like(self.phi)  # Σ |term|: what the sum cancels from
        for r in range(m):
            for s_ in range(r, m):
                pp = self.P[r] @ self.phi @ self.P[s_]
                term = self.W[r, s_] * (Q[r, s_] - pp)
                mag = abs(self.W[r, s_]) * (np.abs(Q[r, s_]) + np.abs(pp))
                uu += term if r == s_ else term + term.T
                size += mag if r == s_ else mag + mag.T
        self.phi_a = self.phi + 2 * self.phi @ uu @ self.phi
        """The adjusted covariance of β̂ (pbkrtest's ``vcovAdj``)."""
        bound = 2 * np.abs(self.phi) @ size @ np.abs(self.phi)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.rounding = np.finfo(float).eps * np.diag(bound) / np.abs(np.diag(self.phi_a))
        """Per coefficient, an estimate of the adjusted variance's relative rounding error: ε
        times the sizes of the terms its sum cancels from, over its own size (the error of
        V⁻¹, P and Q themselves is not counted)."""

    def test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, float, float, float]:
        """Return (F, NumDF, DenDF, p) for H0: Lβ = 0, as pbkrtest's KRmodcomp."""
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


@per_fit
def kenward_roger_info(fit: LinearMixedModelResult) -> KenwardRogerInfo:
    """Return the fit's `KenwardRogerInfo`, computed once per fit (it holds no reference to it)."""
    return KenwardRogerInfo(fit)


def kenward_roger(fit: LinearMixedModelResult) -> pd.DataFrame:
    """Return Kenward-Roger df and p for each fixed effect (pbkrtest).

    With the adjusted standard errors: columns estimate, se, df, t, p. ML
    fits are refitted by REML first, as pbkrtest does. On degenerate fits
    (a few rows, variances at the boundary) the adjusted variance of a
    coefficient can come out negative, or the df undefined; on near-exact
    fits it can be lost to rounding (`KR_MAX_ROUNDING`, with a
    `PrecisionWarning`): that coefficient's se, df, t and p are then NaN.
    """
    info = kenward_roger_info(fit)
    beta = info.beta
    rows = []
    p = len(beta)
    lost = [j for j in range(p) if not info.rounding[j] <= KR_MAX_ROUNDING]
    if lost:
        names = ", ".join(fit.design.x_names[j] for j in lost)
        warnings.warn(
            PrecisionWarning(
                f"Kenward-Roger: the adjusted variance of {names} is lost to rounding "
                f"(relative error up to {np.max(info.rounding[lost]):.2g}: a near-exact fit, "
                f"σ = {fit.sigma:.3g}); its se, df, t and p are NaN"
            ),
            stacklevel=3,
        )
    for j in range(p):
        L = np.zeros((1, p))
        L[0, j] = 1.0
        var = info.phi_a[j, j]
        if j in lost or not var > 0:  # degenerate: no adjusted standard error
            rows.append((beta[j], math.nan, math.nan, math.nan, math.nan))
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            f, _, df, pval = info.test(L, beta)
        se = math.sqrt(var)
        rows.append((beta[j], se, df, beta[j] / se, pval))
    return pd.DataFrame(
        rows, index=list(fit.design.x_names), columns=["estimate", "se", "df", "t", "p"]
    )
