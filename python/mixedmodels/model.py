"""Linear mixed-effects models.

The model (Bates, Mächler, Bolker and Walker 2015, "Fitting Linear
Mixed-Effects Models Using lme4", Journal of Statistical Software 67(1)):

    y = Xβ + ZΛ(θ)u + ε,    u ~ N(0, σ²I),    ε ~ N(0, σ²I)

so that b = Λ(θ)u ~ N(0, σ²ΛΛᵀ) and the marginal covariance of y is
V = σ²(ZΛΛᵀZᵀ + I). For a given θ the penalized least-squares (PLS) problem

    min over β, u of  ||y − Xβ − ZΛu||² + ||u||²

is solved through the sparse Cholesky factor P(ΛᵀZᵀZΛ + I)Pᵀ = LLᵀ and the
dense factor RX of the fixed effects; β and σ are profiled out, leaving the
REML criterion or the ML deviance as a function of θ alone, which is
minimized by a bound-constrained derivative-free optimizer. The four stages
mirror lme4's ``lFormula -> mkLmerDevfun -> optimizeLmer -> mkMerMod``:
`build_design`, `LinearMixedModel` (its `Workspace` evaluates the objective),
`optimize_theta`, and `LinearMixedModelResult`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ._core import Workspace
from .design import Design, build_design
from .exceptions import ConvergenceWarning, DataError, DimensionError, ThetaError
from .optimize import Control, OptSummary, optimize_theta

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["LinearMixedModel", "lmer"]


class LinearMixedModel:
    """A linear mixed model, ready to evaluate its objective and to be fitted.

    Build it with `LinearMixedModel.from_formula`; `objective` evaluates lme4's
    profiled objective at any θ, `fit` optimizes it.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> model = mm.LinearMixedModel.from_formula(
    ...     "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> round(model.objective([1.0, 0.0, 1.0]), 6)
    1773.680331
    """

    def __init__(
        self,
        design: Design,
        reml: bool = True,
        data_name: str | None = None,
        _workspace: Workspace | None = None,
    ):
        self.design = design
        self.reml = bool(reml)
        self.data_name = data_name
        d = design
        # Prior weights W enter as √W times the rows of X, y - offset and Z;
        # the objective then gains -log det W (lme4's ldW).
        sw = None if d.weights is None else np.sqrt(d.weights)
        self._sqrt_w = sw
        self._log_det_w = 0.0 if d.weights is None else float(np.log(d.weights).sum())
        if _workspace is not None:
            self._ws = _workspace
            return

        def scale(a: np.ndarray) -> np.ndarray:
            if sw is None:
                return a
            return a * (sw[:, None] if a.ndim == 2 else sw)

        self._ws = Workspace(
            np.asfortranarray(scale(d.X)),
            scale(self._core_response(d.y)),
            [(t.codes, np.ascontiguousarray(scale(t.z)), t.n_levels) for t in d.terms],
        )

    def _core_response(self, y: np.ndarray) -> np.ndarray:
        """The response as the core sees it: y - offset (weights applied by the caller)."""
        return y if self.design.offset is None else y - self.design.offset

    def _fitted_from_core(self, eta: np.ndarray) -> np.ndarray:
        """Undo the weighting of the core's linear predictor and add the offset."""
        if self._sqrt_w is not None:
            eta = eta / self._sqrt_w
        if self.design.offset is not None:
            eta = eta + self.design.offset
        return eta

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        reml: bool = True,
        data_name: str | None = None,
        weights=None,
        offset=None,
    ) -> LinearMixedModel:
        """Build a model from an lme4 formula and a data frame.

        Rows with a missing value in any variable of the model are dropped (as
        lme4's ``na.omit``); ``design.n_dropped`` says how many. ``weights``
        (prior weights) and ``offset``: a column name or one value per row.
        """
        return cls(
            build_design(formula, data, weights=weights, offset=offset),
            reml=reml,
            data_name=data_name,
        )

    # -- layout --------------------------------------------------------------
    @property
    def formula(self) -> str:
        return self.design.formula.text

    @property
    def theta_names(self) -> list[str]:
        """lme4's names of the θ elements."""
        return self.design.theta_names

    @property
    def lower(self) -> np.ndarray:
        return np.asarray(self._ws.lower)

    @property
    def n_theta(self) -> int:
        return self._ws.n_theta

    @property
    def nobs(self) -> int:
        return self.design.n

    def start(self) -> np.ndarray:
        """lme4's starting θ: 1 on the template diagonals, 0 elsewhere."""
        return np.where(self.lower == 0, 1.0, 0.0)

    # -- evaluation ----------------------------------------------------------
    def _theta(self, theta) -> np.ndarray:
        th = np.asarray(theta, dtype=np.float64).ravel()
        if th.shape[0] != self.n_theta:
            raise ThetaError(
                f"theta has {th.shape[0]} elements; this model has {self.n_theta} "
                f"({', '.join(self.theta_names)})"
            )
        return th

    def objective(self, theta) -> float:
        """The REML criterion (REML models) or the ML deviance at θ, in lme4's
        θ order: lme4's ``devFunOnly`` function."""
        return self._ws.objective(self._theta(theta), self.reml) - self._log_det_w

    def fit(self, control: Control | None = None, start=None) -> LinearMixedModelResult:
        """Optimize the objective over θ and return the fitted model."""
        from .results import LinearMixedModelResult

        control = control or Control()
        start = self.start() if start is None else self._theta(start)
        ws, reml, ldw = self._ws, self.reml, self._log_det_w
        optsum = optimize_theta(lambda th: ws.objective(th, reml) - ldw, start, self.lower, control)
        if not optsum.converged:
            warnings.warn(
                f"the optimizer did not converge ({optsum.returnvalue} after "
                f"{optsum.feval} evaluations)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return LinearMixedModelResult._from_model(self, optsum)

    def with_response(self, y) -> LinearMixedModel:
        """The same model for a new response (same rows as the fitted data),
        reusing everything that depends only on X, Z and the grouping: the
        cross-products and the analysis of the sparse factorization."""
        from dataclasses import replace

        ya = np.asarray(y, dtype=np.float64).ravel()
        if ya.shape[0] != self.nobs:
            raise DimensionError(f"y has {ya.shape[0]} values; the model has {self.nobs} rows")
        if not np.isfinite(ya).all():
            raise DataError("the new response has non-finite values")
        core_y = self._core_response(ya)
        if self._sqrt_w is not None:
            core_y = core_y * self._sqrt_w
        return LinearMixedModel(
            replace(self.design, y=ya),
            reml=self.reml,
            data_name=self.data_name,
            _workspace=self._ws.with_response(core_y),
        )

    def fit_at(self, theta) -> LinearMixedModelResult:
        """The model evaluated at a given θ without optimizing (β, σ and the
        random effects profiled at that θ), as lme4's ``lmer`` with
        ``control = lmerControl(optimizer = NULL)`` and ``start = theta``."""
        from .results import LinearMixedModelResult

        th = self._theta(theta)
        fmin = self.objective(th)
        return LinearMixedModelResult._from_model(self, _fixed_theta_summary(th, self.lower, fmin))


def _fixed_theta_summary(theta: np.ndarray, lower: np.ndarray, fmin: float) -> OptSummary:
    return OptSummary(
        initial=theta,
        lower=lower,
        final=theta,
        fmin=fmin,
        feval=1,
        optimizer="none (fixed θ)",
        returnvalue="FIXED",
        control=Control(),
        elapsed=0.0,
        fitlog=[(theta.copy(), fmin)],
    )


def lmer(
    formula: str,
    data: pd.DataFrame,
    reml: bool = True,
    control: Control | None = None,
    start=None,
    weights=None,
    offset=None,
) -> LinearMixedModelResult:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data
        The data; factors' level order (pandas Categorical) is honoured.
    reml
        Fit by REML (default, as lme4) or by maximum likelihood.
    control
        Optimizer settings.
    start
        Starting θ (default lme4's).
    weights
        Prior weights: a column name or one value per row (lme4's ``weights``).
    offset
        Offset of the linear predictor: a column name or one value per row.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> round(fit.objective, 3)
    1743.628
    """
    model = LinearMixedModel.from_formula(formula, data, reml=reml, weights=weights, offset=offset)
    return model.fit(control, start)
