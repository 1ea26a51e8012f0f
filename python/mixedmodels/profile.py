"""Profile-likelihood confidence intervals (lme4's ``confint(method = "profile")``).

The parameters are lme4's: each term's standard deviations and correlations
(θ order), σ, and the fixed effects. For a parameter φ the profile is

    ζ(φ) = sign(φ − φ̂) √(d(φ) − d̂),

where d(φ) is the ML deviance minimized over all other parameters with φ held
fixed, and d̂ its minimum. As lme4 does, REML fits are profiled on the ML
deviance. The interval's limits are the roots of ζ(φ) = ±z(level), found by
bracketing outwards from φ̂ and solving exactly (lme4 interpolates a spline
through the profile instead); a limit that is not reached before the
parameter's bound (0 for a standard deviation, ±1 for a correlation) is the
bound.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import optimize, stats

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["profile", "profile_confint"]


def _tolerant_cholesky(c: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semidefinite matrix; columns whose
    pivot vanishes are zero (an sd of zero or a correlation of ±1)."""
    k = c.shape[0]
    lower = np.zeros_like(c)
    for j in range(k):
        d = c[j, j] - lower[j, :j] @ lower[j, :j]
        if d <= 1e-14 * max(1.0, abs(c[j, j])):
            continue
        lower[j, j] = math.sqrt(d)
        for i in range(j + 1, k):
            lower[i, j] = (c[i, j] - lower[i, :j] @ lower[j, :j]) / lower[j, j]
    return lower


class _Profiler:
    """The ML deviance as a function of (sds and correlations, σ)."""

    def __init__(self, fit: LinearMixedModelResult):
        from .model import LinearMixedModel

        self.orig = fit
        if fit.reml:
            model = LinearMixedModel(fit.model.design, reml=False)
            fit = model.fit(start=fit.theta)
        self.fit = fit
        self.ws = fit.model._ws
        self.n = fit.nobs
        self.terms = fit.design.terms
        self.kinds: list[str] = []  # "sd" | "cor" per variance parameter
        for t in self.terms:
            for c in range(t.k):
                for r in range(c, t.k):
                    self.kinds.append("sd" if r == c else "cor")
        self.kinds.append("sigma")
        from .inference import _param_values

        self.psi_hat = _param_values(fit)[: len(self.kinds)]
        self.d_hat = fit.objective

    def theta_of(self, psi: np.ndarray) -> np.ndarray:
        sigma = psi[-1]
        out = []
        pos = 0
        for t in self.terms:
            k = t.k
            sd = np.zeros(k)
            cor = np.eye(k)
            for c in range(k):
                for r in range(c, k):
                    if r == c:
                        sd[c] = psi[pos]
                    else:
                        cor[r, c] = cor[c, r] = psi[pos]
                    pos += 1
            low = _tolerant_cholesky(np.outer(sd, sd) * cor) / sigma
            for c in range(k):
                for r in range(c, k):
                    out.append(low[r, c])
        return np.array(out)

    def deviance(self, psi: np.ndarray) -> float:
        sigma = psi[-1]
        pwrss, ld_l2, _ = self.ws.components(np.ascontiguousarray(self.theta_of(psi)))
        s2 = sigma * sigma
        dev = ld_l2 + pwrss / s2 + self.n * math.log(2 * math.pi * s2)
        return dev - self.fit.model._log_det_w  # on the scale of fit.objective

    def bounds(self, i: int) -> tuple[float, float]:
        kind = self.kinds[i]
        if kind == "sd":
            return 0.0, math.inf
        if kind == "cor":
            return -1.0, 1.0
        return 1e-12 * max(self.psi_hat[-1], 1.0), math.inf

    def profile_var(self, i: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """Minimum deviance with parameter i held at value; returns it and the
        full parameter vector at the minimum."""
        import nlopt

        free = [j for j in range(len(self.kinds)) if j != i]
        psi = start.copy()
        psi[i] = value

        def f(x, grad):
            psi[free] = x
            return self.deviance(psi)

        lo = np.array([self.bounds(j)[0] for j in free])
        hi = np.array([self.bounds(j)[1] for j in free])
        x0 = np.clip(start[free], lo, hi)
        if len(free) == 1:
            res = optimize.minimize_scalar(
                lambda v: f(np.array([v]), None),
                bounds=(max(lo[0], 1e-12), max(x0[0] * 10, 1.0)),
                method="bounded",
                options={"xatol": 1e-10},
            )
            psi[free] = [res.x]
            return float(res.fun), psi.copy()
        opt = nlopt.opt(nlopt.LN_BOBYQA, len(free))
        opt.set_lower_bounds(lo)
        opt.set_upper_bounds(hi)
        opt.set_min_objective(f)
        opt.set_ftol_abs(1e-10)
        opt.set_xtol_abs(1e-10)
        opt.set_maxeval(20_000)
        step = np.where(np.isfinite(hi - lo), np.minimum(0.2, (hi - lo) / 4), 0.2)
        opt.set_initial_step(np.maximum(step * np.maximum(np.abs(x0), 0.1), 1e-4))
        x = opt.optimize(x0)
        psi[free] = x
        return float(opt.last_optimum_value()), psi.copy()


def _roots(zeta, hat: float, scale: float, lo: float, hi: float, z: float) -> tuple[float, float]:
    """The points where ζ = -z (below hat) and ζ = +z (above hat)."""
    out = []
    for direction, bound, target in ((-1, lo, -z), (1, hi, z)):
        prev, h = hat, scale
        found = None
        for _ in range(60):
            x = hat + direction * h
            if (direction < 0 and x <= bound) or (direction > 0 and x >= bound):
                x = bound
            zx = zeta(x)
            if (zx - target) * direction >= 0:
                found = optimize.brentq(
                    lambda v, t=target: zeta(v) - t, min(prev, x), max(prev, x), xtol=1e-10 * scale
                )
                break
            if x == bound:
                found = bound
                break
            prev, h = x, h * 2
        out.append(found if found is not None else (lo if direction < 0 else hi))
    return out[0], out[1]


def _zeta_functions(fit: LinearMixedModelResult) -> list[tuple]:
    """(name, ζ function, estimate, step scale, lower bound, upper bound) for
    each parameter, in lme4's confint order."""
    from dataclasses import replace

    from .inference import _param_names
    from .model import LinearMixedModel
    from .optimize import Control

    pr = _Profiler(fit)
    names = _param_names(fit)
    out = []
    cache: dict[tuple[int, float], tuple[float, np.ndarray]] = {}
    for i in range(len(pr.kinds)):
        hat = pr.psi_hat[i]
        lo, hi = pr.bounds(i)
        last = {"psi": pr.psi_hat.copy()}

        def zeta(v, i=i, hat=hat, last=last):
            key = (i, float(v))
            if key not in cache:
                cache[key] = pr.profile_var(i, v, last["psi"])
            d, psi = cache[key]
            last["psi"] = psi
            return math.copysign(math.sqrt(max(d - pr.d_hat, 0.0)), v - hat)

        scale = 0.1 if pr.kinds[i] == "cor" else 0.25 * (hat if hat > 0 else pr.psi_hat[-1])
        out.append((names[i], zeta, hat, scale, lo, hi))
    # fixed effects: the reduced model with x_j β_j moved to the response
    d = pr.fit.design
    se = np.sqrt(np.diag(pr.fit.vcov.to_numpy()))
    for j in range(d.p):
        keep = [c for c in range(d.p) if c != j]
        reduced = LinearMixedModel(
            replace(
                d, X=np.asfortranarray(d.X[:, keep]), x_names=tuple(d.x_names[c] for c in keep)
            ),
            reml=False,
        )
        xj = d.X[:, j]
        bhat = pr.fit.beta[j]
        state = {"theta": pr.fit.theta.copy()}

        def zeta_b(b, xj=xj, bhat=bhat, reduced=reduced, state=state):
            m = reduced.with_response(d.y - xj * b)
            r = m.fit(Control.precise(), start=state["theta"])
            state["theta"] = r.theta
            return math.copysign(math.sqrt(max(r.objective - pr.d_hat, 0.0)), b - bhat)

        out.append((names[len(pr.kinds) + j], zeta_b, bhat, se[j], -math.inf, math.inf))
    return out


def profile_confint(fit: LinearMixedModelResult, level: float = 0.95) -> pd.DataFrame:
    z = stats.norm.ppf(1 - (1 - level) / 2)
    rows = {}
    for name, zeta, hat, scale, lo, hi in _zeta_functions(fit):
        rows[name] = _roots(zeta, hat, scale, lo, hi, z)
    return pd.DataFrame(rows.values(), index=list(rows), columns=["lower", "upper"])


def profile(fit: LinearMixedModelResult, level: float = 0.99, points: int = 15) -> pd.DataFrame:
    """Profile traces (lme4's ``profile``): ζ at ``points`` values of each
    parameter spanning its ``level`` profile interval. Columns: param, value,
    zeta."""
    z = stats.norm.ppf(1 - (1 - level) / 2)
    parts = []
    for name, zeta, hat, scale, lo, hi in _zeta_functions(fit):
        a, b = _roots(zeta, hat, scale, lo, hi, z)
        values = np.unique(np.concatenate([np.linspace(a, b, points), [hat]]))
        parts.append(
            pd.DataFrame({"param": name, "value": values, "zeta": [zeta(v) for v in values]})
        )
    return pd.concat(parts, ignore_index=True)
