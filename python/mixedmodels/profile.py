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
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ._params import param_names, param_values
from .exceptions import NumericalError
from .optimize import Control, check_start

if TYPE_CHECKING:
    from .model import LinearMixedModel
    from .results import LinearMixedModelResult

__all__ = ["profile", "profile_confint"]


class _Profiler:
    """The ML deviance as a function of (sds and correlations, σ)."""

    def __init__(self, fit: LinearMixedModelResult):
        self.fit = fit = fit.refit_ml()
        self.state = fit.model.state
        self.layout = fit.design.layout
        self.kinds: list[str] = [*self.layout.kinds, "sigma"]
        self.psi_hat = param_values(fit)[: len(self.kinds)]
        # a correlation is undefined (NaN) when one of its sds is 0: the inner
        # optimizations start it from 0, a defined point, and its own interval is NaN
        self.start = np.where(np.isnan(self.psi_hat), 0.0, self.psi_hat)
        self.d_hat = fit.objective

    def deviance(self, psi: np.ndarray) -> float:
        """Return the ML deviance at the sds and correlations ``psi[:-1]`` and σ = ``psi[-1]``."""
        sigma = psi[-1]
        return self.state.deviance(self.layout.theta_from_sdcor(psi, sigma), sigma, reml=False)

    def bounds(self, i: int) -> tuple[float, float]:
        kind = self.kinds[i]
        if kind == "sd":
            return 0.0, math.inf
        if kind == "cor":
            return -1.0, 1.0
        return 1e-12 * max(self.psi_hat[-1], 1.0), math.inf

    def profile_var(self, i: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """Minimize the deviance with parameter i held at value.

        Returns the minimum and the full parameter vector there.
        """
        import nlopt

        free = [j for j in range(len(self.kinds)) if j != i]
        psi = start.copy()
        psi[i] = value

        best: dict = {"x": None, "f": math.inf}

        def f(x: np.ndarray, grad: np.ndarray | None) -> float:
            psi[free] = x
            value = self.deviance(psi)
            if value < best["f"]:
                best["x"], best["f"] = x.copy(), value
            return value

        lo = np.array([self.bounds(j)[0] for j in free])
        hi = np.array([self.bounds(j)[1] for j in free])
        x0 = check_start(np.clip(start[free], lo, hi), lo, hi, what="the profile's inner start")
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
        try:
            x = opt.optimize(x0)
            value = float(opt.last_optimum_value())
        except nlopt.RoundoffLimited:  # stopped by rounding: keep the best point it saw
            x, value = best["x"], best["f"]
        psi[free] = x
        return value, psi.copy()


class _Zeta(NamedTuple):
    """One parameter's profile: ζ as a function of its value, and where to look."""

    name: str
    zeta: Callable[[float], float]
    hat: float
    scale: float
    lo: float
    hi: float


def _roots(pz: _Zeta, z: float) -> tuple[float, float]:
    """Find the points where ζ = -z (below the estimate) and ζ = +z (above it)."""
    zeta, hat, scale, lo, hi = pz.zeta, pz.hat, pz.scale, pz.lo, pz.hi
    if math.isnan(hat):  # an undefined correlation (one of its sds is 0)
        return math.nan, math.nan
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
                try:
                    found = optimize.brentq(
                        lambda v, t=target: zeta(v) - t,
                        min(prev, x),
                        max(prev, x),
                        xtol=1e-10 * scale,
                    )
                except ValueError as e:  # ζ is not monotone between the two points
                    raise NumericalError(
                        f"the profile of {pz.name} is not monotone between {prev:g} and {x:g}"
                        f" (the inner minimization did not reach the optimum): {e}"
                    ) from None
                break
            if x == bound:
                found = bound
                break
            prev, h = x, h * 2
        out.append(found if found is not None else (lo if direction < 0 else hi))
    return out[0], out[1]


def _zeta_functions(fit: LinearMixedModelResult) -> list[_Zeta]:
    """Return the profile of each parameter, in lme4's confint order."""
    pr = _Profiler(fit)
    names = param_names(fit)
    out = []
    cache: dict[tuple[int, float], tuple[float, np.ndarray]] = {}
    for i in range(len(pr.kinds)):
        hat = float(pr.psi_hat[i])
        lo, hi = pr.bounds(i)
        last = {"psi": pr.start.copy()}

        def zeta(v: float, i: int = i, hat: float = hat, last: dict = last) -> float:
            key = (i, float(v))
            if key not in cache:
                cache[key] = pr.profile_var(i, v, last["psi"])
            d, psi = cache[key]
            last["psi"] = psi
            return math.copysign(math.sqrt(max(d - pr.d_hat, 0.0)), v - hat)

        scale = 0.1 if pr.kinds[i] == "cor" else 0.25 * (hat if hat > 0 else pr.psi_hat[-1])
        out.append(_Zeta(names[i], zeta, hat, scale, lo, hi))
    # fixed effects: the reduced model with x_j β_j moved to the response
    d = pr.fit.design
    se = pr.fit.stderror.to_numpy()
    for j in range(d.p):
        keep = [c for c in range(d.p) if c != j]
        reduced = pr.fit.model.with_design(
            replace(d, X=np.asfortranarray(d.X[:, keep]), x_names=tuple(d.x_names[c] for c in keep))
        )
        xj = d.X[:, j]
        bhat = float(pr.fit.beta[j])
        state = {"theta": pr.fit.theta.copy()}

        def zeta_b(
            b: float,
            xj: np.ndarray = xj,
            bhat: float = bhat,
            reduced: LinearMixedModel = reduced,
            state: dict[str, np.ndarray] = state,
        ) -> float:
            m = reduced.with_response(d.y - xj * b)
            r = m.fit(Control.precise(), start=state["theta"])
            state["theta"] = r.theta
            return math.copysign(math.sqrt(max(r.objective - pr.d_hat, 0.0)), b - bhat)

        out.append(_Zeta(names[len(pr.kinds) + j], zeta_b, bhat, se[j], -math.inf, math.inf))
    return out


def profile_confint(fit: LinearMixedModelResult, level: float = 0.95) -> pd.DataFrame:
    """Return profile-likelihood intervals: columns lower and upper, in lme4's confint order."""
    z = stats.norm.ppf(1 - (1 - level) / 2)
    rows = {}
    for pz in _zeta_functions(fit):
        rows[pz.name] = _roots(pz, z)
    return pd.DataFrame(rows.values(), index=list(rows), columns=["lower", "upper"])


def profile(fit: LinearMixedModelResult, level: float = 0.99, points: int = 15) -> pd.DataFrame:
    """Return profile traces (lme4's ``profile``).

    ζ at ``points`` values of each parameter spanning its ``level`` profile
    interval. Columns: param, value, zeta.
    """
    z = stats.norm.ppf(1 - (1 - level) / 2)
    parts = []
    for pz in _zeta_functions(fit):
        if math.isnan(pz.hat):  # an undefined correlation has no profile
            continue
        a, b = _roots(pz, z)
        values = np.unique(np.concatenate([np.linspace(a, b, points), [pz.hat]]))
        parts.append(
            pd.DataFrame({"param": pz.name, "value": values, "zeta": [pz.zeta(v) for v in values]})
        )
    return pd.concat(parts, ignore_index=True)
