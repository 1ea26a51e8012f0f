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
minimized over θ's bounds (by default NLopt's BOBYQA, derivative-free, as
lme4; `Control(optimizer="bfgs")`: a projected BFGS on the exact gradient, in
the core). The four stages
mirror lme4's ``lFormula -> mkLmerDevfun -> optimizeLmer -> mkMerMod``:
`build_design`, `LinearMixedModel` (its `ModelState`, the Rust workspace with
the prior weights, evaluates the objective), `optimize_theta`, and
`LinearMixedModelResult.from_model`. With prior weights W, ε ~ N(0, σ²W⁻¹).

Symbols and attributes: θ ``fit.theta`` (layout: ``design.layout``), β
``fit.beta``, u ``fit.u``, b ``fit.b``, σ ``fit.sigma``, Λᵀ
``fit.get_me("Lambdat")``, Z ``get_me("Z")``, L ``get_me("L")``, RX
``fit.rx``, V ``fit.V()``, the lower bounds of θ ``model.lower``.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from ._args import check_bool
from ._chunked import Spec, chunked_model
from ._converge import fit_theta
from ._distributed import dask_model
from ._progress import wanted
from ._sources import chunk_source, is_chunked
from ._state import ModelState
from ._tables import Table
from .design import Design, DesignAttributes, build_design
from .exceptions import ArgumentError, ConvergenceWarning, DataError, DimensionError, ThetaError
from .optimize import Control, OptSummary
from .results import LinearMixedModelResult

__all__ = ["LinearMixedModel", "lmer"]


class LinearMixedModel(DesignAttributes):
    """A linear mixed model, ready to evaluate its objective and to be fitted.

    Build it with `LinearMixedModel.from_formula` (or from a `Design`);
    `objective` evaluates lme4's profiled objective at any θ, `fit` optimizes
    it.

    Parameters
    ----------
    design
        The model's arrays (`build_design`).
    reml
        REML (default) or maximum likelihood.
    data_name
        Name of the data, printed by the summary.
    state
        A workspace to reuse (`with_response`); built from the design when None.

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
        state: ModelState | None = None,
    ):
        self.design = design
        self.reml = check_bool(reml, "reml")
        self.data_name = data_name
        self.state = ModelState.from_design(design) if state is None else state
        """The Rust workspace with the prior weights and offset (`ModelState`)."""

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: Table,
        reml: bool = True,
        data_name: str | None = None,
        weights: str | npt.ArrayLike | None = None,
        offset: str | npt.ArrayLike | None = None,
        progress: bool | None = None,
    ) -> LinearMixedModel:
        """Build a model from an lme4 formula and a data frame.

        Rows with a missing value in any variable of the model are dropped (as
        lme4's ``na.omit``); ``design.n_dropped`` says how many.

        Parameters
        ----------
        formula
            lme4 formula.
        data
            The data: a pandas, polars or pyarrow table, or a dict of columns; or
            data read in chunks (data larger than memory): a path or glob of
            Parquet files, a ``pyarrow.dataset.Dataset``, a Dask DataFrame, a
            list of tables, a function returning an iterable of them, or an
            iterator of tables (read once, its chunks kept in a temporary
            directory for the second pass). Such a fit keeps the
            cross-products, not the rows (`RowsNotKeptError` for what needs
            them).
        reml
            REML (default) or maximum likelihood.
        data_name
            Name of the data, printed by the summary.
        weights
            Prior weights: a column name or one value per row.
        offset
            Offset of the linear predictor: a column name or one value per row.
        progress
            For data read in chunks (not Dask): report the rows each pass has
            read on stderr (tqdm's bar when installed). None: when stderr is a
            terminal.

        Returns
        -------
        LinearMixedModel
            The model, not yet fitted.
        """
        if is_chunked(data):
            if not (weights is None or isinstance(weights, str)) or not (
                offset is None or isinstance(offset, str)
            ):
                raise ArgumentError(
                    "for data read in chunks, give weights and offset as column names"
                )
            source = chunk_source(data)
            if source.dask is not None:
                design, state = dask_model(Spec.of(formula, weights, offset), source)
            else:
                design, state = chunked_model(
                    formula, source, weights, offset, progress=wanted(progress)
                )
            return cls(design, reml=reml, data_name=data_name, state=state)
        return cls(
            build_design(formula, data, weights=weights, offset=offset),
            reml=reml,
            data_name=data_name,
        )

    # -- layout (formula, nobs, theta_names, lower: DesignAttributes) -------------
    @property
    def n_theta(self) -> int:
        """Return the length of θ."""
        return self.design.layout.n_theta

    def start(self) -> np.ndarray:
        """Return lme4's starting θ: 1 on the template diagonals, 0 elsewhere."""
        return self.design.layout.start()

    # -- evaluation ----------------------------------------------------------
    def _theta(self, theta: npt.ArrayLike) -> np.ndarray:
        th = np.asarray(theta, dtype=np.float64).ravel()
        if th.shape[0] != self.n_theta:
            raise ThetaError(
                f"theta has {th.shape[0]} elements; this model has {self.n_theta} "
                f"({', '.join(self.theta_names)})"
            )
        return th

    def objective(self, theta: npt.ArrayLike) -> float:
        """Evaluate the REML criterion (REML models) or the ML deviance at θ.

        θ is in lme4's order; this is lme4's ``devFunOnly`` function.
        """
        return self.state.objective(self._theta(theta), self.reml)

    def gradient(self, theta: npt.ArrayLike) -> np.ndarray:
        """Evaluate the gradient of `objective` with respect to θ.

        Exact (no finite differences): computed from the cross-products and
        the sparse factor at θ, at the cost of a few evaluations of the
        objective.

        Parameters
        ----------
        theta
            The covariance parameters, in the order of `objective` (lme4's).

        Returns
        -------
        numpy.ndarray
            ∂objective/∂θ, one value per element of θ.

        Examples
        --------
        >>> import mixedmodels as mm
        >>> model = mm.LinearMixedModel.from_formula(
        ...     "Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
        >>> model.gradient([1.0, 0.0, 1.0]).round(4).tolist()
        [-1.2423, 0.9368, 31.2915]
        """
        return self.state.gradient(self._theta(theta), self.reml)

    def fit(
        self, control: Control | None = None, start: npt.ArrayLike | None = None
    ) -> LinearMixedModelResult:
        """Optimize the objective over θ and return the fitted model.

        Parameters
        ----------
        control
            Optimizer settings (default `Control()`, lme4's).
        start
            Starting θ (default lme4's, `start`).

        Returns
        -------
        LinearMixedModelResult
            The fit.
        """
        control = control or _DEFAULT_CONTROL
        state = self.state
        # lme4's start, on the core's (well-scaled) θ, or the caller's θ mapped there; from
        # lme4's start, the core's BFGS tries the method of moments' θ next
        moments = start is None
        start = self.start() if start is None else state.core_theta(self._theta(start))
        reml = self.reml
        fun = state.objective_function(reml)  # of the core's θ
        optsum = fit_theta(
            fun,
            lambda th: state.core_gradient(th, reml),
            start,
            self.lower,
            control,
            state.minimizer(reml),
            moments,
        )
        if not (state.theta_scale is None and state.linear_theta_map):
            optsum = _model_units(optsum, state)
        check = optsum.check
        if check is not None and not check.optimal:
            stopped = (
                f"the optimizer did not converge ({optsum.returnvalue})"
                if not optsum.converged
                else "the fit did not reach the optimum"
            )
            ran = optsum.feval - check.feval  # the optimizer's own, then the check's
            warnings.warn(
                f"{stopped} after {ran} evaluations (and {check.feval} more to check it): "
                f"{check.describe()}",
                ConvergenceWarning,
                stacklevel=2,
            )
        elif check is None and not optsum.converged:
            warnings.warn(
                f"the optimizer did not converge ({optsum.returnvalue} after "
                f"{optsum.feval} evaluations)",
                ConvergenceWarning,
                stacklevel=2,
            )
        return LinearMixedModelResult.from_model(self, optsum)

    def with_response(self, y: npt.ArrayLike) -> LinearMixedModel:
        """Return the same model for a new response (same rows as the fitted data).

        Everything that depends only on X, Z and the grouping is reused: the
        cross-products and the analysis of the sparse factorization.
        """
        ya = np.asarray(y, dtype=np.float64).ravel()
        if ya.shape[0] != self.nobs:
            raise DimensionError(f"y has {ya.shape[0]} values; the model has {self.nobs} rows")
        if not np.isfinite(ya).all():
            raise DataError("the new response has non-finite values")
        return LinearMixedModel(
            replace(self.design, y=ya),
            reml=self.reml,
            data_name=self.data_name,
            state=self.state.with_response(ya),
        )

    def with_reml(self, reml: bool) -> LinearMixedModel:
        """Return the same model with the other criterion (REML or ML), not yet fitted."""
        return LinearMixedModel(self.design, reml=reml, data_name=self.data_name)

    def with_design(self, design: Design) -> LinearMixedModel:
        """Return a model of the same kind for another design (a new workspace)."""
        return LinearMixedModel(design, reml=self.reml, data_name=self.data_name)

    def fit_at(self, theta: npt.ArrayLike) -> LinearMixedModelResult:
        """Evaluate the model at a given θ without optimizing.

        β, σ and the random effects are profiled at that θ, as lme4's
        ``lmer`` with ``control = lmerControl(optimizer = NULL)`` and
        ``start = theta``.
        """
        th = self._theta(theta)
        fmin = self.objective(th)
        return LinearMixedModelResult.from_model(self, _fixed_theta_summary(th, self.lower, fmin))


_DEFAULT_CONTROL = Control()
"""lme4's settings (a `Control` is immutable: one instance serves every default fit)."""


def _model_units(optsum: OptSummary, state: ModelState) -> OptSummary:
    """Return the record with θ (and the gradients) in the model's units, from the core's.

    Gradients go through the map's Jacobian J = ∂θ_core/∂θ (gᵀJ), the Hessian
    as JᵀHJ (exact at a stationary point).
    """
    jac = state.theta_jacobian(state.model_theta(optsum.final))
    assert jac is not None
    check = optsum.check
    if check is not None:
        check = replace(check, gradient=jac.T @ check.gradient)
    return replace(
        optsum,
        initial=state.model_theta(optsum.initial),
        final=state.model_theta(optsum.final),
        fitlog=[(state.model_theta(th), v) for th, v in optsum.fitlog],
        check=check,
        gradient=None if optsum.gradient is None else jac.T @ optsum.gradient,
        hessian=None if optsum.hessian is None else jac.T @ optsum.hessian @ jac,
    )


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
    data: Table,
    reml: bool = True,
    control: Control | None = None,
    start: npt.ArrayLike | None = None,
    weights: str | npt.ArrayLike | None = None,
    offset: str | npt.ArrayLike | None = None,
    progress: bool | None = None,
) -> LinearMixedModelResult:
    """Fit a linear mixed model, as lme4's ``lmer``.

    Parameters
    ----------
    formula
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data
        The data: a pandas, polars or pyarrow table, or a dict of columns; factors'
        level order (pandas Categorical, Arrow dictionary, polars Enum) is honoured.
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
    progress
        For data read in chunks: report each pass's progress on stderr (None:
        when stderr is a terminal).

    Returns
    -------
    LinearMixedModelResult
        The fitted model.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> round(fit.objective, 3)
    1743.628
    """
    model = LinearMixedModel.from_formula(
        formula, data, reml=reml, weights=weights, offset=offset, progress=progress
    )
    return model.fit(control, start)
