"""An independent minimization of a GLMM's objective with one parameter held, to check profiles.

It shares nothing with ``mixedmodels.glmm_profile`` but the model's objective at a given
(θ, β) (`GeneralizedLinearMixedModel.objective`, checked against lme4's deviance function to
1e-7 by tests/reference). Its parameters are those of tests/profile_check.py with σ = 1: each
term's standard deviations (absolute values of free numbers), its correlation matrix as unit
rows in spherical angles (a held correlation's pair first, so that it is the cosine of one
angle), the covariance turned into θ by a QR factorization; and β directly. Its optimizer is
scipy's Powell method, from the estimate and from random starts, each restarted until a
restart gains nothing.
"""

from __future__ import annotations

import math

import numpy as np

import mixedmodels as mm
from tests.profile_check import Held, _angles, _cor_factor, _powell, _unit_rows


class GlmmIndependentProfile:
    """The objective of a GLMM fit, minimized over everything but one held parameter."""

    def __init__(self, fit: mm.GeneralizedLinearMixedModelResult):
        self.fit = fit
        self.model = fit.model
        self.terms = fit.design.layout.terms
        self.ks = [t.k for t in self.terms]
        covs = fit.design.layout.covariances(fit.theta, 1.0)
        self.sd0 = [np.sqrt(np.diag(c)) for c in covs]
        self.cor0 = []
        for c, sd in zip(covs, self.sd0, strict=True):
            d = np.where(sd > 0, sd, 1.0)
            cor = c / np.outer(d, d)
            np.fill_diagonal(cor, 1.0)
            self.cor0.append(cor)
        self.rng = np.random.default_rng(20261202)
        self.d_min = self.deviance(Held("none"))

    def _order(self, t: int, held: Held) -> list[int]:
        k = self.ks[t]
        if held.kind == "cor" and held.term == t:
            return [held.col, held.row] + [i for i in range(k) if i not in (held.col, held.row)]
        return list(range(k))

    def _layout(self, held: Held) -> list[tuple[str, int, int, int]]:
        out = []
        for t, k in enumerate(self.ks):
            for j in range(k):
                if not (held.kind == "sd" and held.term == t and held.row == j):
                    out.append(("s", t, j, 0))
            for i in range(1, k):
                for m in range(i):
                    if not (held.kind == "cor" and held.term == t and i == 1 and m == 0):
                        out.append(("a", t, i, m))
        for j in range(len(self.fit.beta)):
            if not (held.kind == "beta" and held.row == j):
                out.append(("b", 0, j, 0))
        return out

    def _start(self, held: Held, variables: list[tuple[str, int, int, int]]) -> np.ndarray:
        angles = []
        for t in range(len(self.ks)):
            order = self._order(t, held)
            angles.append(_angles(_cor_factor(self.cor0[t][np.ix_(order, order)])))
        x = []
        for kind, t, i, m in variables:
            if kind == "s":
                x.append(max(self.sd0[t][i], 1e-3))
            elif kind == "a":
                x.append(angles[t][i][m])
            else:
                x.append(self.fit.beta[i])
        return np.array(x)

    def _point(
        self, held: Held, variables: list[tuple[str, int, int, int]], x: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        sds = [np.zeros(k) for k in self.ks]
        angles = [[np.zeros(i) for i in range(k)] for k in self.ks]
        beta = self.fit.beta.copy()
        for (kind, t, i, m), v in zip(variables, x, strict=True):
            if kind == "s":
                sds[t][i] = abs(v)
            elif kind == "a":
                angles[t][i][m] = v
            else:
                beta[i] = v
        if held.kind == "sd":
            sds[held.term][held.row] = held.value
        elif held.kind == "cor":
            angles[held.term][1][0] = math.acos(held.value)
        elif held.kind == "beta":
            beta[held.row] = held.value
        theta = []
        for t, term in enumerate(self.terms):
            order = self._order(t, held)
            w_perm = _unit_rows(angles[t], self.ks[t])
            w = np.zeros_like(w_perm)
            w[order] = w_perm
            f = sds[t][:, None] * w  # f fᵀ: the term's covariance (σ = 1)
            low = np.linalg.qr(f.T, mode="r").T
            low = low * np.where(np.diag(low) < 0, -1.0, 1.0)[None, :]
            theta.extend(low[r, c] for r, c in term.entries)
        return np.array(theta), beta

    def deviance(self, held: Held, n_random: int = 2) -> float:
        """Return the objective minimized over everything but ``held``."""
        variables = self._layout(held)

        def f(x: np.ndarray) -> float:
            theta, beta = self._point(held, variables, x)
            try:
                value = self.model.objective(theta, beta)
            except mm.exceptions.NumericalError:
                return 1e300
            return value if math.isfinite(value) else 1e300

        x0 = self._start(held, variables)
        scale = np.maximum(np.abs(x0), 0.1)
        starts = [x0] + [
            x0 + self.rng.normal(0.0, 0.1, x0.shape[0]) * scale for _ in range(n_random)
        ]
        return min(_powell(f, s) for s in starts)
