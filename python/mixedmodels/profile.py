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
bound. A correlation of a term with an sd of 0 at the optimum does not change
the model there: its profile is flat, and its interval is [−1, 1].

d(φ) is minimized over a parametrization in which every point is a valid
covariance (`_profile_inner`), by BOBYQA with continuation along the profile
and, at the points that decide a limit, several starts.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import numpy as np
import pandas as pd
from scipy import optimize, stats

from ._params import param_names
from ._profile_inner import InnerProblem as ThetaProblem
from ._profile_inner import Point, minimize
from .exceptions import NumericalError

if TYPE_CHECKING:
    from .model import LinearMixedModel
    from .results import LinearMixedModelResult

__all__ = [
    "Continuation",
    "HeldProblem",
    "Profiles",
    "Zeta",
    "profile",
    "profile_confint",
    "zeta_confint",
    "zeta_traces",
]

_LOWER_BY = 1e-6
"""A profile point this far below the optimum's deviance is a better optimum."""


_MOVED_BY = 1e-7
"""A thorough minimization this much lower than continuation's moves a root (ζ by ~1e-7/2z)."""


class _LowerOptimum(Exception):
    """The profile found a point with a lower deviance than the optimum it started from."""

    def __init__(self, point: Any):
        super().__init__()
        self.point = point


class HeldProblem(Protocol):
    """A deviance with one parameter held: a map from free variables to the model's points."""

    def x_from(self, point: Any) -> np.ndarray:
        """Return free variables whose point keeps as much of ``point`` as the constraint allows."""
        ...

    def deviance(self, x: np.ndarray) -> float:
        """Return the deviance at the point of ``x``."""
        ...

    def full_point(self, x: np.ndarray) -> Any:
        """Return the point of ``x``."""
        ...


class Continuation:
    """A deviance minimized over all parameters but one, with continuation (any model).

    A profiled value starts its inner minimization from the solution at the
    nearest value already profiled (continuation); a thorough one also from
    each of ``anchors``. A subclass sets ``d_hat`` (the minimum, measured
    from) and ``anchors``, and gives each parameter's inner problem (`problem`).
    """

    d_hat: float
    anchors: list[Any]

    def __init__(self) -> None:
        self.solved: dict[int, dict[float, tuple[float, Any, bool]]] = {}

    def problem(self, i: int, value: float) -> HeldProblem:
        """Return the inner problem of parameter i held at value."""
        raise NotImplementedError

    def deviance(self, i: int, value: float, thorough: bool) -> float:
        """Return the deviance minimized with parameter i held at value."""
        done = self.solved.setdefault(i, {})
        if value in done and (done[value][2] or not thorough):
            return done[value][0]
        prob = self.problem(i, value)
        near = [p for v, (_, p, _) in sorted(done.items(), key=lambda e: abs(e[0] - value))[:1]]
        starts = [prob.x_from(p) for p in near + (self.anchors if thorough or not near else [])]
        d, x = minimize(prob.deviance, starts)
        if d < self.d_hat - _LOWER_BY:
            raise _LowerOptimum(prob.full_point(x))
        if value not in done or d < done[value][0]:
            done[value] = (d, prob.full_point(x), thorough)
        else:
            done[value] = (*done[value][:2], True)
        return done[value][0]

    def forget(self, i: int, a: float, b: float) -> None:
        """Forget the values of parameter i strictly between a and b not minimized thoroughly."""
        done = self.solved.get(i, {})
        for v in [v for v, (_, _, thorough) in done.items() if a < v < b and not thorough]:
            del done[v]

    def zeta(self, i: int, value: float, hat: float, thorough: bool = False) -> float:
        """Return ζ = sign(value − hat) √(d(value) − d̂) of parameter i."""
        d = self.deviance(i, float(value), thorough)
        return math.copysign(math.sqrt(max(d - self.d_hat, 0.0)), value - hat)


class _Profiler(Continuation):
    """The ML deviance of a linear mixed model minimized over all parameters but one.

    The optimum is the ML refit's, polished by the inner minimizer (so that
    every profile is measured from the lowest deviance it can find). The
    anchors of a thorough minimization are the optimum and lme4's start (1
    on the template diagonals) at σ̂, a point away from the boundary: at a
    singular optimum the templates' zero rows are a stationary point of every
    inner problem (TTᵀ is quadratic in T), often a local minimum beside a
    lower one.

    Parameters are indexed in lme4's confint order: the sds and correlations
    (θ order), σ, then β.
    """

    def __init__(self, fit: LinearMixedModelResult, start: Point | None = None):
        super().__init__()
        self.fit = ml = fit.refit_ml()
        self.state = state = ml.model.state.model_space()
        self.layout = layout = ml.design.layout
        self.kinds: list[str] = [*layout.kinds, "sigma"]
        self.slots = [(t, r, c) for t, tl in enumerate(layout.terms) for r, c in tl.entries]
        if start is None:
            start = Point(state.core_theta(ml.theta), ml.sigma)
        free = ThetaProblem(state, layout, "free")
        self.d_hat, x = minimize(free.deviance, [free.x_from(start)])
        self.hat = free.full_point(x)
        theta = state.model_theta(self.hat.theta)
        self.psi_hat = np.array([*layout.sdcor(theta, self.hat.sigma), self.hat.sigma])
        self.anchors = [self.hat, Point(state.core_theta(layout.start()), self.hat.sigma)]
        self.reduced: dict[int, LinearMixedModel] = {}

    def problem(self, i: int, value: float) -> ThetaProblem:
        """Return the inner problem of parameter i held at value."""
        if i < len(self.slots):
            t, r, c = self.slots[i]
            return ThetaProblem(self.state, self.layout, self.kinds[i], value, t, r, c)
        if i == len(self.slots):
            return ThetaProblem(self.state, self.layout, "sigma", value)
        # β_j: the model without x_j fitted to y − x_j b, whose θ is the full model's (same
        # layout, same column scales)
        j = i - len(self.kinds)
        d = self.fit.design
        if j not in self.reduced:
            keep = [c for c in range(d.p) if c != j]
            x_names = tuple(d.x_names[c] for c in keep)
            design = replace(d, X=np.asfortranarray(d.X[:, keep]), x_names=x_names)
            self.reduced[j] = self.fit.model.with_design(design)
        state = self.reduced[j].with_response(d.y - d.X[:, j] * value).state.model_space()
        return ThetaProblem(state, self.layout, "free")


class Zeta(NamedTuple):
    """One parameter's profile: where it is and where to look."""

    name: str
    param: int
    hat: float
    scale: float
    lo: float
    hi: float


def _roots(pr: Continuation, pz: Zeta, z: float) -> tuple[float, float]:
    """Find the points where ζ = -z (below the estimate) and ζ = +z (above it).

    The bracketing points and the root are minimized thoroughly (from every
    start), the points in between by continuation; a root that a thorough
    minimization moves is searched again. A limit that ζ does not reach
    before the parameter's bound is the bound.
    """
    hat, scale, lo, hi = pz.hat, pz.scale, pz.lo, pz.hi
    if math.isnan(hat):
        # a correlation of a term with an sd of 0 at the optimum: it does not change the
        # model there, so the profile is flat at the optimum and every value is in the interval
        return lo, hi

    def zeta(v: float, thorough: bool = False) -> float:
        return pr.zeta(pz.param, v, hat, thorough)

    out = []
    for direction, bound, target in ((-1, lo, -z), (1, hi, z)):
        prev, h = hat, _first_step(zeta, hat, direction * scale, bound, target)
        found = None
        for _ in range(60):
            x = hat + direction * h
            if (direction < 0 and x <= bound) or (direction > 0 and x >= bound):
                x = bound
            if (zeta(x, thorough=True) - target) * direction >= 0:
                found = _solve(pr, pz, target, prev, x)
                break
            if x == bound:
                found = bound
                break
            prev, h = x, h * 2
        if found is None:
            raise NumericalError(
                f"the profile of {pz.name} does not reach ζ = {target:g} within"
                f" {hat + direction * h:g}"
            )
        out.append(found)
    return out[0], out[1]


def _first_step(
    zeta: Callable[..., float], hat: float, step: float, bound: float, target: float
) -> float:
    """Return the first bracketing step: just past the limit that ζ's slope near hat predicts.

    ζ is nearly linear in the parameter (that is what it is for), so a probe at
    1% of the default step predicts the limit; the step aims 20% past it,
    within 1/1000 and 8 times the default step. At a bound, the default step.
    """
    probe = hat + 0.01 * step
    if (probe - bound) * step >= 0:
        return abs(step)
    slope = zeta(probe) / (0.01 * step)
    if not slope * step > 0:
        return abs(step)
    predicted = abs(1.2 * target / slope)
    return min(max(predicted, 1e-3 * abs(step)), 8 * abs(step))


def _solve(pr: Continuation, pz: Zeta, target: float, a: float, b: float) -> float:
    """Return the root of ζ = target between a and b, checked by a thorough minimization.

    When the thorough minimization at the root finds a lower deviance than
    continuation did, the values in between are forgotten and the root is
    searched again, continuing from the better solution.
    """
    a, b = min(a, b), max(a, b)
    root = a
    for _ in range(4):
        try:
            root = optimize.brentq(
                lambda v: pr.zeta(pz.param, v, pz.hat) - target, a, b, xtol=1e-8 * pz.scale
            )
        except ValueError as e:  # ζ is not monotone between the two points
            raise NumericalError(
                f"the profile of {pz.name} is not monotone between {a:g} and {b:g}: {e}"
            ) from None
        before = pr.deviance(pz.param, root, thorough=False)
        if pr.deviance(pz.param, root, thorough=True) > before - _MOVED_BY:
            return float(root)
        pr.forget(pz.param, a, b)
    return float(root)


def _zeta_functions(pr: _Profiler) -> list[Zeta]:
    """Return the profile of each parameter, in lme4's confint order."""
    names = param_names(pr.fit)
    out = []
    sigma_hat = float(pr.psi_hat[-1])
    for i, kind in enumerate(pr.kinds):
        hat = float(pr.psi_hat[i])
        if kind == "cor":
            lo, hi, scale = -1.0, 1.0, 0.1
        elif kind == "sd":
            # (from an sd of 0, or nearly, the first step is a fraction of σ̂)
            lo, hi, scale = 0.0, math.inf, 0.25 * max(hat, 0.1 * sigma_hat)
        else:
            lo, hi, scale = 1e-12 * max(sigma_hat, 1.0), math.inf, 0.25 * sigma_hat
        out.append(Zeta(names[i], i, hat, scale, lo, hi))
    se = pr.fit.stderror.to_numpy()
    for j in range(pr.fit.design.p):
        i = len(pr.kinds) + j
        out.append(Zeta(names[i], i, float(pr.fit.beta[j]), se[j], -math.inf, math.inf))
    return out


Profiles = Callable[[Any], tuple[Continuation, list[Zeta]]]
"""Given a start (None: the fit's optimum), a model's profiler and its parameters' profiles."""


def _lmm_profiles(fit: LinearMixedModelResult) -> Profiles:
    def make(start: Point | None) -> tuple[Continuation, list[Zeta]]:
        pr = _Profiler(fit, start)
        return pr, _zeta_functions(pr)

    return make


_RESTARTS = 3
"""How many times a profile restarts from a lower optimum it found."""


def _with_restarts(
    make: Profiles, run: Callable[[Continuation, list[Zeta]], pd.DataFrame]
) -> pd.DataFrame:
    """Run ``run`` on the profiles, starting again from any lower optimum a profile finds."""
    start = None
    for _ in range(_RESTARTS + 1):
        try:
            return run(*make(start))
        except _LowerOptimum as e:
            start = e.point
    raise NumericalError(
        f"the profile kept finding deviances below the optimum ({_RESTARTS} restarts);"
        " refit the model with a tighter Control and profile again"
    )


def zeta_confint(make: Profiles, level: float) -> pd.DataFrame:
    """Return the profile intervals of the parameters of ``make``: columns lower and upper."""
    z = stats.norm.ppf(1 - (1 - level) / 2)

    def run(pr: Continuation, zetas: list[Zeta]) -> pd.DataFrame:
        rows = {pz.name: _roots(pr, pz, z) for pz in zetas}
        return pd.DataFrame(rows.values(), index=list(rows), columns=["lower", "upper"])

    return _with_restarts(make, run)


def zeta_traces(make: Profiles, level: float, points: int) -> pd.DataFrame:
    """Return ζ at ``points`` values spanning each parameter's ``level`` profile interval."""
    z = stats.norm.ppf(1 - (1 - level) / 2)

    def run(pr: Continuation, zetas: list[Zeta]) -> pd.DataFrame:
        parts = []
        for pz in zetas:
            if math.isnan(pz.hat):
                continue
            a, b = _roots(pr, pz, z)
            values = np.unique(np.concatenate([np.linspace(a, b, points), [pz.hat]]))
            zeta = [pr.zeta(pz.param, v, pz.hat) for v in values]
            parts.append(pd.DataFrame({"param": pz.name, "value": values, "zeta": zeta}))
        return pd.concat(parts, ignore_index=True)

    return _with_restarts(make, run)


def profile_confint(fit: LinearMixedModelResult, level: float = 0.95) -> pd.DataFrame:
    """Return profile-likelihood intervals: columns lower and upper, in lme4's confint order."""
    return zeta_confint(_lmm_profiles(fit), level)


def profile(fit: LinearMixedModelResult, level: float = 0.99, points: int = 15) -> pd.DataFrame:
    """Return profile traces (lme4's ``profile``).

    ζ at ``points`` values of each parameter spanning its ``level`` profile
    interval. Columns: param, value, zeta. A correlation that is undefined at
    the estimate (one of its sds is 0) has a flat profile and is left out.
    """
    return zeta_traces(_lmm_profiles(fit), level, points)
