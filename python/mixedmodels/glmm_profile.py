"""Profile-likelihood intervals of a GLMM (lme4's ``profile`` and ``confint`` for ``glmer``).

As lme4's ``profile.merMod`` for a GLMM, the parameters are each term's
standard deviations and correlations (θ order) and the fixed effects. A GLMM
without a dispersion has σ = 1, so an sd is the length of its template row:
lme4's ``.sig`` scale. The deviance profiled is the fit's objective, −2 log L
at (θ, β) (Laplace, or adaptive quadrature for nAGQ > 1: lme4's
``getME(fit, "devfun")``), minimized over every other parameter: θ through
the parametrization of `_profile_inner` (every point a valid covariance), β
directly, by BOBYQA. ζ, continuation along the profile, the roots and the
restarts from a lower optimum are those of the linear model (`profile`).

As lme4, families with a dispersion (Gamma, inverse Gaussian) are refused
("can't (yet) profile GLMMs with non-fixed scale parameters"); so is a fit
with nAGQ = 0, whose objective is not a function of (θ, β). A negative
binomial fit is profiled at its estimated shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._profile_inner import InnerProblem as ThetaProblem
from ._profile_inner import Point, minimize
from .exceptions import ArgumentError, DimensionError, NumericalError
from .profile import Continuation, Profiles, Zeta, zeta_confint, zeta_traces

if TYPE_CHECKING:
    from .glmm import GeneralizedLinearMixedModel
    from .glmm_results import GeneralizedLinearMixedModelResult

__all__ = ["GlmmPoint", "glmm_profile", "glmm_profile_confint"]


@dataclass(frozen=True)
class GlmmPoint:
    """A point of a GLMM's objective."""

    theta: np.ndarray
    beta: np.ndarray


@dataclass(frozen=True)
class _Problem:
    """The objective with one parameter held: an sd or correlation (``beta`` < 0), or β_beta.

    The free variables are θ's (``thetas``: its map with the sd or
    correlation held, or θ free) followed by β's (without β_beta when that is held).
    """

    model: GeneralizedLinearMixedModel
    thetas: ThetaProblem
    beta: int = -1
    value: float = 0.0

    def x_from(self, point: GlmmPoint) -> np.ndarray:
        """Return the free variables of the point nearest ``point`` that the constraint allows."""
        b = point.beta if self.beta < 0 else np.delete(point.beta, self.beta)
        return np.concatenate([self.thetas.x_from(Point(point.theta, 1.0)), b])

    def full_point(self, x: np.ndarray) -> GlmmPoint:
        """Return the point of the free variables ``x``."""
        nb = self.model.design.p - (self.beta >= 0)
        theta, _ = self.thetas.point(x[: x.shape[0] - nb])
        b = x[x.shape[0] - nb :]
        if self.beta >= 0:
            b = np.insert(b, self.beta, self.value)
        return GlmmPoint(theta, b)

    def deviance(self, x: np.ndarray) -> float:
        """Return the objective at the point of ``x`` (∞ where PIRLS fails)."""
        pt = self.full_point(x)
        try:
            value = self.model.objective(pt.theta, pt.beta)
        except (NumericalError, DimensionError):
            # far from the optimum (μ at the edge of its range): a point the minimizer may
            # probe but never needs
            return math.inf
        return value if math.isfinite(value) else math.inf


class _GlmmProfiler(Continuation):
    """A GLMM's objective minimized over all parameters but one (the sds and cors, then β).

    The optimum is the fit's, polished by the inner minimizer; the anchors of
    a thorough minimization are the optimum and lme4's start of θ (1 on the
    template diagonals) at β̂.
    """

    def __init__(self, fit: GeneralizedLinearMixedModelResult, start: GlmmPoint | None = None):
        super().__init__()
        self.fit = fit
        self.model = fit.model
        self.layout = layout = fit.design.layout
        self.kinds: list[str] = list(layout.kinds)
        self.slots = [(t, r, c) for t, tl in enumerate(layout.terms) for r, c in tl.entries]
        if start is None:
            start = GlmmPoint(fit.theta, fit.beta)
        free = self.problem(-1, 0.0)
        self.d_hat, x = minimize(free.deviance, [free.x_from(start)])
        self.hat = free.full_point(x)
        self.psi_hat = layout.sdcor(self.hat.theta, 1.0)
        self.anchors = [self.hat, GlmmPoint(layout.start(), self.hat.beta)]

    def problem(self, i: int, value: float) -> _Problem:
        """Return the inner problem of parameter i held at value (i = -1: nothing held)."""
        if 0 <= i < len(self.slots):
            t, r, c = self.slots[i]
            thetas = ThetaProblem(None, self.layout, self.kinds[i], value, t, r, c)
            return _Problem(self.model, thetas)
        free = ThetaProblem(None, self.layout, "free")
        return _Problem(self.model, free, i - len(self.slots) if i >= 0 else -1, value)

    def zetas(self) -> list[Zeta]:
        """Return the profile of each parameter, in lme4's confint order."""
        names = [*self.layout.sdcor_names, *self.fit.design.x_names]
        out = []
        for i, kind in enumerate(self.kinds):
            hat = float(self.psi_hat[i])
            if kind == "cor":
                lo, hi, scale = -1.0, 1.0, 0.1
            else:  # (from an sd of 0, or nearly, the first step is 0.025)
                lo, hi, scale = 0.0, math.inf, 0.25 * max(hat, 0.1)
            out.append(Zeta(names[i], i, hat, scale, lo, hi))
        se = self.fit.stderror.to_numpy()
        for j in range(self.fit.design.p):
            i = len(self.kinds) + j
            out.append(Zeta(names[i], i, float(self.hat.beta[j]), se[j], -math.inf, math.inf))
        return out


def _profiles(fit: GeneralizedLinearMixedModelResult) -> Profiles:
    """Return the maker of the profiles of a fit, after refusing what lme4 refuses."""
    if fit.family.has_scale:
        raise ArgumentError(
            f"profile intervals of a {fit.family.name} GLMM are not available: its dispersion "
            "is not a parameter of the objective (lme4: \"can't (yet) profile GLMMs with "
            'non-fixed scale parameters"); use method="wald" or "boot"'
        )
    if fit.nagq == 0:
        raise ArgumentError(
            "profile intervals need the objective in (θ, β); a fit with nagq=0 estimates β "
            "inside PIRLS: refit with nagq=1"
        )

    def make(start: GlmmPoint | None) -> tuple[Continuation, list[Zeta]]:
        pr = _GlmmProfiler(fit, start)
        return pr, pr.zetas()

    return make


def glmm_profile_confint(
    fit: GeneralizedLinearMixedModelResult, level: float = 0.95
) -> pd.DataFrame:
    """Return profile-likelihood intervals (columns lower, upper): the sds and cors, then β."""
    return zeta_confint(_profiles(fit), level)


def glmm_profile(
    fit: GeneralizedLinearMixedModelResult, level: float = 0.99, points: int = 15
) -> pd.DataFrame:
    """Return profile traces: ζ at ``points`` values spanning each ``level`` interval.

    Columns param, value, zeta (lme4's ``profile``); a correlation undefined
    at the estimate (one of its sds is 0) has a flat profile and is left out.
    """
    return zeta_traces(_profiles(fit), level, points)
