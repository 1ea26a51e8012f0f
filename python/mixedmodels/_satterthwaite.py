"""lmerTest's Satterthwaite degrees of freedom for the fixed effects.

As lmerTest, the variance parameters are (θ, σ); the covariance of β̂ and the
Hessian of the deviance are differentiated numerically with Richardson
extrapolation (numDeriv's defaults, `_numderiv`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ._cache import per_fit
from ._numderiv import numderiv_hessian, numderiv_jacobian

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["SatterthwaiteInfo", "satterthwaite", "satterthwaite_info"]


class SatterthwaiteInfo:
    """The ingredients of Satterthwaite's approximation at a fit (lmerTest's slots).

    The covariance of β̂, its Jacobian in the variance parameters (θ, σ), and
    the asymptotic covariance of the variance parameters (2 H⁻¹, H the
    Hessian of the deviance at (θ̂, σ̂)).
    """

    def __init__(self, fit: LinearMixedModelResult):
        state, reml, p = fit.model.state, fit.reml, len(fit.beta)

        def deviance(varpar: np.ndarray) -> float:
            return state.deviance(varpar[:-1], varpar[-1], reml)

        def covbeta(varpar: np.ndarray) -> np.ndarray:
            rinv = np.linalg.solve(state.rx(varpar[:-1]), np.eye(p))
            return varpar[-1] ** 2 * rinv @ rinv.T

        self.varpar = np.concatenate([fit.theta, [fit.sigma]])
        """The variance parameters (θ, σ) at the fit."""
        self.vcov = covbeta(self.varpar)
        """The covariance of β̂."""
        jac = numderiv_jacobian(covbeta, self.varpar)  # (p*p) x k
        self.jac = [jac[:, i].reshape(p, p) for i in range(jac.shape[1])]
        """The derivatives of the covariance of β̂ in each variance parameter."""
        self.a = 2 * np.linalg.pinv(numderiv_hessian(deviance, self.varpar))
        """The asymptotic covariance of the variance parameters."""

    def df_contrast(self, L: np.ndarray) -> tuple[float, float]:
        """Return (variance of Lβ̂, Satterthwaite df) for a 1 x p contrast."""
        L = np.asarray(L, dtype=float).ravel()
        var = float(L @ self.vcov @ L)
        grad = np.array([L @ j @ L for j in self.jac])
        denom = float(grad @ self.a @ grad)
        return var, (2 * var**2 / denom if denom > 0 else np.inf)

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float, float]:
        """Return lmerTest's multi-df F test of Lβ = 0: (F, NumDF, DenDF, p)."""
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


@per_fit
def satterthwaite_info(fit: LinearMixedModelResult) -> SatterthwaiteInfo:
    """Return the fit's `SatterthwaiteInfo`, computed once per fit."""
    return SatterthwaiteInfo(fit)


def satterthwaite(fit: LinearMixedModelResult) -> pd.DataFrame:
    """Return Satterthwaite df for each fixed effect (lmerTest): estimate, se, df, t, p."""
    info = satterthwaite_info(fit)
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
