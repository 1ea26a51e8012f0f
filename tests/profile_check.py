"""An independent minimization of the profiled ML deviance, to check profile limits against.

It shares nothing with ``mixedmodels.profile`` but the model's deviance at a
given (θ, σ), β profiled out (`ModelState.deviance`, checked against lme4's
deviance function to 1e-10 by tests/reference). Its parameters are each
term's standard deviations (as absolute values of free numbers: no spurious
stationary point at 0, as squares would make), the term's
correlation matrix as unit rows in spherical angles (the pair of a
correlation held fixed moved to the front, so that the correlation is the
cosine of one angle), and log σ; the covariance goes to θ through a QR
factorization. Its optimizer is scipy's Nelder-Mead, from the estimate and
from random starts, each restarted from where it stopped until a restart
gains nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import optimize, stats

import mixedmodels as mm

THRESHOLD = float(stats.chi2.ppf(0.95, 1))  # 3.841458820694124


@dataclass(frozen=True)
class Held:
    """The parameter held at ``value``.

    kind "sd" (term, row = col), "cor" (term, row > col), "sigma", "beta"
    (row: the column of X) or "none" (nothing held: the minimum).
    """

    kind: str
    term: int = 0
    row: int = 0
    col: int = 0
    value: float = 0.0


def _unit_rows(angles: list[np.ndarray], k: int) -> np.ndarray:
    """Return the k x k lower-triangular matrix whose row i is the unit vector of angles[i]."""
    w = np.zeros((k, k))
    w[0, 0] = 1.0
    for i in range(1, k):
        a = angles[i]
        s = 1.0
        for m in range(i):
            w[i, m] = s * math.cos(a[m])
            s *= math.sin(a[m])
        w[i, i] = s
    return w


def _angles(w: np.ndarray) -> list[np.ndarray]:
    """Return the angles of each unit row of a lower-triangular w (inverse of `_unit_rows`)."""
    out = [np.zeros(0)]
    for i in range(1, w.shape[0]):
        row = w[i, : i + 1] / np.linalg.norm(w[i, : i + 1])
        a = np.zeros(i)
        for m in range(i):
            rest = float(np.linalg.norm(row[m + 1 :]))
            a[m] = math.atan2(rest if m < i - 1 else row[i], row[m])
        out.append(a)
    return out


def _cor_factor(cor: np.ndarray) -> np.ndarray:
    """Return a lower-triangular w with unit rows and wwᵀ = cor (cor positive semidefinite)."""
    k = cor.shape[0]
    w = np.zeros((k, k))
    for j in range(k):
        d = cor[j, j] - w[j, :j] @ w[j, :j]
        w[j, j] = math.sqrt(max(d, 0.0))
        for i in range(j + 1, k):
            w[i, j] = (cor[i, j] - w[i, :j] @ w[j, :j]) / w[j, j] if w[j, j] > 1e-8 else 0.0
    for i in range(k):  # rounding: back to unit rows
        n = np.linalg.norm(w[i])
        w[i] = w[i] / n if n > 0 else np.eye(k)[i]
    return w


class IndependentProfile:
    """The ML deviance of a fit, minimized over everything but one held parameter."""

    def __init__(self, fit: mm.LinearMixedModelResult):
        self.ml = fit.refit_ml()
        self.design = self.ml.design
        self.terms = self.design.layout.terms
        self.ks = [t.k for t in self.terms]
        covs = self.design.layout.covariances(self.ml.theta, self.ml.sigma)
        self.sd0 = [np.sqrt(np.diag(c)) for c in covs]
        self.cor0 = []
        for c, sd in zip(covs, self.sd0, strict=True):
            d = np.where(sd > 0, sd, 1.0)
            cor = c / np.outer(d, d)
            np.fill_diagonal(cor, 1.0)
            self.cor0.append(cor)
        self.rng = np.random.default_rng(20261201)
        self.d_min = self.deviance(Held("none"))

    # -- the parametrization ----------------------------------------------------------
    def _order(self, t: int, held: Held) -> list[int]:
        """Return the term's columns in the order of its angles (a held pair first)."""
        k = self.ks[t]
        if held.kind == "cor" and held.term == t:
            return [held.col, held.row] + [i for i in range(k) if i not in (held.col, held.row)]
        return list(range(k))

    def _layout(self, held: Held) -> list[tuple[str, int, int, int]]:
        """Return the free variables: ("s", term, j, 0), ("a", term, row, m), ("logsigma",...)."""
        out = []
        for t, k in enumerate(self.ks):
            for j in range(k):
                if not (held.kind == "sd" and held.term == t and held.row == j):
                    out.append(("s", t, j, 0))
            for i in range(1, k):
                for m in range(i):
                    if not (held.kind == "cor" and held.term == t and i == 1 and m == 0):
                        out.append(("a", t, i, m))
        if held.kind != "sigma":
            out.append(("logsigma", 0, 0, 0))
        return out

    def _start(self, held: Held, variables: list[tuple[str, int, int, int]]) -> np.ndarray:
        """Return the estimate in the free variables."""
        angles = []
        for t in range(len(self.ks)):
            order = self._order(t, held)
            angles.append(_angles(_cor_factor(self.cor0[t][np.ix_(order, order)])))
        x = []
        for kind, t, i, m in variables:
            if kind == "s":
                x.append(max(self.sd0[t][i], 1e-3 * self.ml.sigma))
            elif kind == "a":
                x.append(angles[t][i][m])
            else:
                x.append(math.log(self.ml.sigma))
        return np.array(x)

    def _theta_sigma(
        self, held: Held, variables: list[tuple[str, int, int, int]], x: np.ndarray
    ) -> tuple[np.ndarray, float]:
        sds = [np.zeros(k) for k in self.ks]
        angles = [[np.zeros(i) for i in range(k)] for k in self.ks]
        sigma = held.value if held.kind == "sigma" else math.nan
        for (kind, t, i, m), v in zip(variables, x, strict=True):
            if kind == "s":
                sds[t][i] = abs(v)
            elif kind == "a":
                angles[t][i][m] = v
            else:
                sigma = math.exp(v)
        if held.kind == "sd":
            sds[held.term][held.row] = held.value
        if held.kind == "cor":
            angles[held.term][1][0] = math.acos(held.value)
        theta = []
        for t, term in enumerate(self.terms):
            order = self._order(t, held)
            w_perm = _unit_rows(angles[t], self.ks[t])
            w = np.zeros_like(w_perm)
            w[order] = w_perm  # row order[i] of the term is angle row i
            f = sds[t][:, None] * w / sigma  # f fᵀ = Σ / σ²: relative covariance
            low = np.linalg.qr(f.T, mode="r").T  # f = low qᵀ, low lower triangular
            low = low * np.where(np.diag(low) < 0, -1.0, 1.0)[None, :]
            theta.extend(low[r, c] for r, c in term.entries)
        return np.array(theta), sigma

    # -- the minimization ---------------------------------------------------------------
    def deviance(self, held: Held, n_random: int = 2) -> float:
        """Return the ML deviance minimized over everything but ``held``."""
        ml = self.ml
        if held.kind == "beta":  # the model without x_j, fitted to y - x_j b
            d = self.design
            keep = [c for c in range(d.p) if c != held.row]
            reduced = ml.model.with_design(
                replace(
                    d, X=np.asfortranarray(d.X[:, keep]), x_names=tuple(d.x_names[c] for c in keep)
                )
            )
            state = reduced.with_response(d.y - d.X[:, held.row] * held.value).state
        else:
            state = ml.model.state
        variables = self._layout(held)

        def f(x: np.ndarray) -> float:
            theta, sigma = self._theta_sigma(held, variables, x)
            return state.deviance(theta, sigma, reml=False)

        x0 = self._start(held, variables)
        starts = [x0] + [x0 + self.rng.normal(0.0, 0.3, x0.shape[0]) for _ in range(n_random)]
        return min(_powell(f, s) for s in starts)


def _powell(f, x0: np.ndarray) -> float:
    """Return the minimum Powell's method finds from x0, restarted until a restart gains < 1e-9."""
    if x0.shape[0] == 0:
        return f(x0)
    best, x = f(x0), x0
    for _ in range(20):
        res = optimize.minimize(
            f, x, method="Powell", options={"xtol": 1e-8, "ftol": 1e-13, "maxfev": 50_000}
        )
        gain = best - res.fun
        if res.fun < best:
            best, x = float(res.fun), res.x
        if not gain > 1e-9:
            break
    return best
