"""Generalized linear mixed models (lme4's ``glmer``).

The model (Bates, Mächler, Bolker and Walker 2015, JSS 67(1), section 5 of
lme4's vignette "PIRLS"):

    η = Xβ + ZΛ(θ)u + o,    μ = g⁻¹(η),    u ~ N(0, I),    y | u ~ family(μ)

with the prior weights (binomial: the numbers of trials). At (θ, β) PIRLS,
in the Rust core, finds the conditional modes û that minimize the penalized
deviance Σ dᵢ + ‖u‖², and the Laplace approximation of −2 log L is

    Σ dᵢ(û) + ‖û‖² + log det(LLᵀ) + c,    LLᵀ = ΛᵀZᵀW(û)ZΛ + I,

c the likelihood's constant (`Family.loglik_constant`): lme4's
``devFunOnly`` of ``glmer`` for nAGQ = 1, `GeneralizedLinearMixedModel.objective`.

The fit follows lme4: first nAGQ = 0 (β inside PIRLS, θ alone optimized by
BOBYQA), then θ and β together by BOBYQA from there. The four stages are
`build_design` (with the family's reading of the response), this module's
model, `optimize_theta`, and `GeneralizedLinearMixedModelResult`.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._agq import check_quadrature
from ._glmm_check import checked
from ._glmm_fit import finite_difference_hessian, gradient_hessian, quasi_newton, trial
from ._state import GlmmState, PirlsRun
from .design import Design, DesignAttributes, build_design
from .exceptions import ArgumentError, ControlError, ConvergenceWarning, DataError, ThetaError
from .families import Family
from .families import family as make_family
from .glmm_results import GeneralizedLinearMixedModelResult, vcov_from_hessian
from .optimize import Control, OptSummary, check_start, optimize_theta

__all__ = ["GeneralizedLinearMixedModel", "finite_difference_hessian", "glmer"]

_HESSIAN_STEP = 1e-4
"""Step of the central differences of the vcov Hessian (lme4's ``deriv12``'s)."""
_FORWARD_STEP = 1e-8
"""Relative step of the forward differences of the core's vcov Hessian (about √ε)."""


class GeneralizedLinearMixedModel(DesignAttributes):
    """A generalized linear mixed model, ready to evaluate its objective and to be fitted.

    Parameters
    ----------
    design
        The model's arrays (`build_design` with the family's ``read_response``).
    family
        The `Family` (distribution and link).
    nagq
        1: the Laplace approximation (lme4's default); 0: lme4's fast fit
        (β estimated inside PIRLS, θ alone optimized); 2 to 25: adaptive
        Gauss-Hermite quadrature with that many nodes per dimension: a single
        random-effects term, scalar as lme4 or, beyond lme4, with up to 3
        effects per level (the glmm package's rule of nagq^k nodes per level,
        at most 15³ = 3375).
    data_name
        Name of the data, printed by the summary.
    trials
        Per row, the numbers of trials of a ``cbind(successes, failures)``
        response (None: 1), for the binomial likelihood's constant.
    """

    def __init__(
        self,
        design: Design,
        family: Family,
        nagq: int = 1,
        data_name: str | None = None,
        trials: np.ndarray | None = None,
    ):
        if isinstance(nagq, bool) or not isinstance(nagq, int | np.integer) or nagq < 0:
            raise ArgumentError(f"nagq must be a whole number >= 0, not {nagq!r}")
        if nagq > 25:
            raise ArgumentError(f"nagq must be at most 25 (as lme4), not {nagq}")
        if nagq > 1 and family.name not in ("binomial", "poisson"):
            raise ArgumentError(
                f"nagq = {nagq}: quadrature is available for binomial and Poisson models, "
                f"not {family.name}"
            )
        if nagq > 1:
            check_quadrature(design, int(nagq))
        # the Gauss-Hermite rule of the standard normal density (weights sum to 1)
        nodes, weights = np.polynomial.hermite_e.hermegauss(max(int(nagq), 1))
        self._rule = (nodes, weights / math.sqrt(2 * math.pi))
        self.design = design
        self.family = family
        self.nagq = int(nagq)
        self.shape_estimated = False
        """Whether the negative binomial's shape was estimated (`glmer_nb`): one more parameter."""
        self.data_name = data_name
        n = design.n
        wt = np.ones(n) if design.weights is None else design.weights
        family.check_response(design.y, wt)
        self.prior_weights = wt
        """Prior weights of the rows (binomial: the numbers of trials times the given weights)."""
        self.trials = trials
        """Numbers of trials of a ``cbind(successes, failures)`` response (None: not one)."""
        self.constant = family.loglik_constant(
            design.y, wt, np.ones(n) if trials is None else trials
        )
        """The part of −2 log L that does not depend on μ (`Family.loglik_constant`)."""
        eta0 = family.linkfun(family.mustart(design.y, wt))
        self.state = GlmmState(design, family.name, family.link, eta0, family.shape)
        """The Rust workspace (`GlmmState`): PIRLS and the Laplace approximation."""

    @classmethod
    def from_formula(
        cls,
        formula: str,
        data: pd.DataFrame,
        family: str | Family = "binomial",
        link: str | None = None,
        nagq: int = 1,
        weights: str | npt.ArrayLike | None = None,
        offset: str | npt.ArrayLike | None = None,
        data_name: str | None = None,
    ) -> GeneralizedLinearMixedModel:
        """Build a model from an lme4 formula, a data frame and a family.

        Parameters
        ----------
        formula
            lme4 formula; a binomial response is 0/1, a two-level factor or a
            logical (the first level is failure, as R), a proportion (with
            ``weights`` = numbers of trials), or ``cbind(successes, failures)``.
        data
            The data.
        family
            ``"binomial"``, ``"poisson"``, ``"Gamma"`` or a `Family`
            (``mm.families.binomial("probit")``).
        link
            The link (None: the family's default, or the `Family`'s).
        nagq
            1 (Laplace, default), 0 (lme4's fast fit) or up to 25 (quadrature).
        weights
            Prior weights: a column name or one value per row.
        offset
            Offset of the linear predictor: a column name or one value per row.
        data_name
            Name of the data, printed by the summary.

        Returns
        -------
        GeneralizedLinearMixedModel
            The model, not yet fitted.
        """
        fam = make_family(family, link)
        seen: dict[str, np.ndarray | None] = {}

        def read(var: object) -> tuple[np.ndarray, np.ndarray | None]:
            y, trials = fam.read_response(var)  # type: ignore[arg-type]
            seen["trials"] = trials
            return y, trials

        design = build_design(formula, data, weights=weights, offset=offset, response=read)
        trials = seen.get("trials")
        if trials is not None:
            if weights is None:
                kept = design.weights
            elif data.index.is_unique:
                kept = trials[data.index.get_indexer(design.row_index)]
            else:
                raise DataError(
                    "cbind(successes, failures) with prior weights needs data with a unique index"
                )
            trials = kept
        return cls(design, fam, nagq=nagq, data_name=data_name, trials=trials)

    def set_shape(self, shape: float) -> None:
        """Set the negative binomial's shape (a negative binomial model only)."""
        if self.family.name != "negative.binomial":
            raise ArgumentError(f"a {self.family.name} model has no shape")
        self.family = Family(self.family.name, self.family.link, float(shape))
        self.state.set_shape(float(shape))

    # -- evaluation ----------------------------------------------------------
    @property
    def n_theta(self) -> int:
        """Return the length of θ."""
        return self.design.layout.n_theta

    def _theta(self, theta: npt.ArrayLike) -> np.ndarray:
        th = np.asarray(theta, dtype=np.float64).ravel()
        if th.shape[0] != self.n_theta:
            raise ThetaError(
                f"theta has {th.shape[0]} elements; this model has {self.n_theta} "
                f"({', '.join(self.theta_names)})"
            )
        return th

    def _beta(self, beta: npt.ArrayLike) -> np.ndarray:
        b = np.asarray(beta, dtype=np.float64).ravel()
        if b.shape[0] != self.design.p:
            raise ArgumentError(
                f"beta has {b.shape[0]} elements; this model has {self.design.p} "
                f"({', '.join(self.design.x_names)})"
            )
        return b

    def pirls(self, theta: npt.ArrayLike, beta: npt.ArrayLike | None = None) -> PirlsRun:
        """Run PIRLS at (θ, β) (β None: β inside PIRLS, nAGQ = 0) and return its record."""
        th = self._theta(theta)
        if beta is None:
            return self.state.laplace_beta(th)
        return self.state.laplace(th, self._beta(beta))

    def objective(self, theta: npt.ArrayLike, beta: npt.ArrayLike) -> float:
        """Evaluate −2 log L at (θ, β): lme4's ``devFunOnly`` for nAGQ ≥ 1.

        nAGQ ≤ 1: the Laplace approximation, with the likelihood's constant;
        nAGQ > 1: adaptive Gauss-Hermite quadrature, without it (lme4's
        conventions). PIRLS runs to convergence (far tighter than lme4's
        default tolerance).
        """
        th, b = self._theta(theta), self._beta(beta)
        if self.nagq > 1:
            return self.state.agq(th, b, *self._rule)[0]
        return self.state.laplace(th, b).laplace + self.constant

    def _evaluate(self, theta: np.ndarray, beta: np.ndarray) -> tuple[float, PirlsRun]:
        """Return the objective at (θ, β) and PIRLS's record."""
        if self.nagq > 1:
            return self.state.agq(theta, beta, *self._rule)
        run = self.state.laplace(theta, beta)
        return run.laplace + self.constant, run

    def objective_nagq0(self, theta: npt.ArrayLike) -> float:
        """Evaluate the nAGQ = 0 objective at θ: −2 log L (Laplace) at PIRLS's (β̂, û)."""
        return self.pirls(theta).laplace + self.constant

    def _start(self, start: npt.ArrayLike | dict | None) -> tuple[np.ndarray, np.ndarray | None]:
        if start is None:
            return self.design.layout.start(), None
        if isinstance(start, dict):
            unknown = set(start) - {"theta", "beta"}
            if unknown:
                raise ControlError(f"start has unknown keys {sorted(unknown)}; use theta, beta")
            th = start.get("theta")
            b = start.get("beta")
            return (
                self.design.layout.start() if th is None else self._theta(th),
                None if b is None else self._beta(b),
            )
        return self._theta(start), None

    def fit(
        self, control: Control | None = None, start: npt.ArrayLike | dict | None = None
    ) -> GeneralizedLinearMixedModelResult:
        """Fit the model as lme4's ``glmer``: nAGQ = 0 first, then θ and β together.

        Parameters
        ----------
        control
            Optimizer settings, for both stages (default `default_control`).
        start
            Starting θ, or a dict with ``theta`` and/or ``beta`` (a given β
            skips the nAGQ = 0 stage's β, as lme4's ``start = list(...)``).

        Returns
        -------
        GeneralizedLinearMixedModelResult
            The fit.
        """
        control = control or self.default_control()
        counts = (self.state.evaluations, self.state.pirls_iterations)
        theta, beta, optsum, optsum0 = self.optimize(control, start, warn=not control.check)
        return checked(self._result(theta, beta, optsum, optsum0, counts))

    @property
    def has_gradient(self) -> bool:
        """Whether the exact gradient of the objective is available.

        For canonical links (binomial-logit, Poisson-log) with nAGQ <= 1.
        """
        return self.nagq <= 1 and self.state.has_gradient

    def default_control(self) -> Control:
        """Return the default settings: L-BFGS-B on the exact gradient where there is one.

        ``Control(optimizer="lbfgsb")`` when `has_gradient` (`_glmm_fit`),
        else ``Control()`` (BOBYQA, lme4's). ``Control(optimizer="bobyqa")``
        runs lme4's derivative-free stages on any model.
        """
        return Control(optimizer="lbfgsb" if self.has_gradient else "bobyqa")

    def value_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the objective at (θ, β) = x and its exact gradient (when `has_gradient`)."""
        nt = self.n_theta
        run, grad = self.state.laplace_grad(x[:nt], x[nt:])
        return run.laplace + self.constant, grad

    def value_gradient_nagq0(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """Return the nAGQ = 0 objective at θ and its exact gradient (when `has_gradient`)."""
        run, grad = self.state.laplace_beta_grad(theta)
        return run.laplace + self.constant, grad

    def gradient_hessian(self, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
        """Return the Hessian of the objective at (θ, β) (the optimum) from the exact gradient.

        With scalar terms and a canonical link the core computes it in one call
        (``GlmmState.hessian``): forward differences, the gradient at x + hᵢeᵢ (hᵢ = 1e-8
        max(1, |xᵢ|), about √ε) at the start û + hᵢ ∂û/∂xᵢ without PIRLS, m gradients beyond x's
        (within 3e-7 of the Hessian's largest element on the reference cases). Otherwise
        central differences (`_glmm_fit.gradient_hessian`, lme4's step 1e-4), PIRLS from û at
        x + δeᵢ and from 2û − u(x + δeᵢ) at x − δeᵢ. The workspace is left at (θ, β).
        """
        hessian = self.state.hessian(theta, beta, _FORWARD_STEP, forward=True)
        if hessian is not None:
            return hessian
        x = np.concatenate([theta, beta])
        u0 = self.state.modes()

        def start(i: int, s: float) -> None:
            self.state.set_modes(u0 if s > 0 else 2 * u0 - self.state.modes())

        hessian = gradient_hessian(
            lambda v: self.value_gradient(v)[1], x, delta=_HESSIAN_STEP, start=start
        )
        self.state.set_modes(u0)
        self.state.laplace(theta, beta)
        return hessian

    def optimize(
        self, control: Control, start: npt.ArrayLike | dict | None = None, warn: bool = True
    ) -> tuple[np.ndarray, np.ndarray, OptSummary, OptSummary]:
        """Run lme4's two stages (``optimizeGlmer``) and return θ̂, β̂ and both records.

        `fit` without the result (no Hessian): what the negative binomial's
        shape search repeats. With ``control.optimizer == "lbfgsb"`` (and
        `has_gradient`) both stages run on the exact gradient (`_glmm_fit`).
        ``warn``: warn when an optimizer stops unconverged (`fit`: the check does).
        """
        _warn = _warning if warn else (lambda _: None)
        theta0, beta0 = self._start(start)
        lower = self.design.lower
        theta0 = check_start(theta0, lower)
        nt = self.n_theta
        grad = control.optimizer == "lbfgsb" and self.has_gradient
        # stage 1: θ alone, β inside PIRLS
        b0, tol0 = None, None
        if grad:
            # a start for the second stage: 1e-9 of the objective, PIRLS's step to 1e-7 (not 1e-10)
            rel, tol0 = (1e-12, None) if self.nagq == 0 else (1e-9, self.state.set_tol(1e-7))
            optsum0, b0 = quasi_newton(
                trial(self.value_gradient_nagq0), theta0, lower, control, rel_tol=rel
            )
        else:
            optsum0 = optimize_theta(trial(self.objective_nagq0), theta0, lower, control)
        self.state.laplace_beta(optsum0.final)
        st = self.state.state()
        if tol0 is not None:
            self.state.set_tol(tol0)
        beta_fast = st["beta"]
        if self.nagq == 0:
            _warn(optsum0)
            return optsum0.final, beta_fast, optsum0, optsum0
        # stage 2: θ and β together, from stage 1 (or the given β)
        x0 = np.concatenate([optsum0.final, beta_fast if beta0 is None else beta0])
        lower2 = np.concatenate([lower, np.full(self.design.p, -np.inf)])

        def f(x: np.ndarray) -> float:
            return self._evaluate(x[:nt], x[nt:])[0]

        if grad:
            # β = β₀ + RX⁻¹y/√2: the Hessian about I in y, and in θ the first stage's BFGS one
            transform, hess0 = np.eye(len(x0)), np.eye(len(x0))
            transform[nt:, nt:] = np.linalg.inv(st["rx"]) / math.sqrt(2)
            if b0 is not None:
                hess0[:nt, :nt] = b0
            optsum, _ = quasi_newton(
                trial(self.value_gradient), x0, lower2, control, transform, hess0
            )
            _warn(optsum)
            return optsum.final[:nt], optsum.final[nt:], optsum, optsum0
        # steps as MixedModels.jl's: a third of β's standard errors (RX-based, at the
        # first stage's optimum) and 0.05 for θ, unless the control sets one
        if control.initial_step is None:
            rinv = np.linalg.inv(st["rx"])
            se = np.sqrt(np.einsum("ij,ij->i", rinv, rinv))
            step = np.concatenate([np.full(nt, 0.05), se / 3])
        else:
            step = None
        optsum = optimize_theta(trial(f), x0, lower2, control, initial_step=step)
        _warn(optsum)
        return optsum.final[:nt], optsum.final[nt:], optsum, optsum0

    def _result(
        self,
        theta: np.ndarray,
        beta: np.ndarray,
        optsum: OptSummary,
        optsum0: OptSummary,
        counts: tuple[int, int],
    ) -> GeneralizedLinearMixedModelResult:
        nt = self.n_theta
        value, run = self._evaluate(theta, beta)
        st = self.state.state()
        cond_var = self.state.cond_var()
        hessian = None
        if self.has_gradient and self.nagq > 0:
            hessian = self.gradient_hessian(theta, beta)
        elif self.nagq > 0:
            x = np.concatenate([theta, beta])

            def f(v: np.ndarray) -> float:
                return self._evaluate(v[:nt], v[nt:])[0]

            hessian = finite_difference_hessian(f, x)
            # leave the workspace at the optimum
            self.state.laplace(theta, beta)
        return GeneralizedLinearMixedModelResult(
            model=self,
            theta=theta,
            beta=beta,
            objective=value,
            laplace_deviance=run.laplace,
            deviance=run.deviance,
            sqr_u=run.sqr_u,
            ld_l2=run.ld_l2,
            u=st["u"],
            b=st["b"],
            eta=st["eta"],
            mu=st["mu"],
            rx=st["rx"],
            cond_var=cond_var,
            hessian=hessian,
            vcov_beta=None if hessian is None else vcov_from_hessian(hessian, nt),
            optsum=optsum,
            optsum_nagq0=optsum0,
            evaluations=self.state.evaluations - counts[0],
            pirls_iterations=self.state.pirls_iterations - counts[1],
        )


def _warning(optsum: OptSummary) -> None:
    if not optsum.converged:
        warnings.warn(
            f"the optimizer did not converge ({optsum.returnvalue} after "
            f"{optsum.feval} evaluations)",
            ConvergenceWarning,
            stacklevel=3,
        )


def glmer(
    formula: str,
    data: pd.DataFrame,
    family: str | Family = "binomial",
    link: str | None = None,
    nagq: int = 1,
    weights: str | npt.ArrayLike | None = None,
    offset: str | npt.ArrayLike | None = None,
    control: Control | None = None,
    start: npt.ArrayLike | dict | None = None,
) -> GeneralizedLinearMixedModelResult:
    """Fit a generalized linear mixed model, as lme4's ``glmer``.

    Parameters
    ----------
    formula
        lme4 formula, e.g. ``"cbind(incidence, size - incidence) ~ period + (1 | herd)"``.
    data
        The data.
    family
        ``"binomial"`` (default), ``"poisson"``, ``"Gamma"``, or a `Family` from
        `mixedmodels.families`.
    link
        The link (None: the family's default).
    nagq
        1: Laplace (default); 0: lme4's fast fit; 2 to 25: adaptive Gauss-Hermite
        quadrature (a single scalar random-effects term).
    weights
        Prior weights (binomial proportions: the numbers of trials).
    offset
        Offset of the linear predictor.
    control
        Optimizer settings.
    start
        Starting θ, or a dict with ``theta`` and ``beta``.

    Returns
    -------
    GeneralizedLinearMixedModelResult
        The fitted model.
    """
    model = GeneralizedLinearMixedModel.from_formula(
        formula, data, family=family, link=link, nagq=nagq, weights=weights, offset=offset
    )
    return model.fit(control, start)
