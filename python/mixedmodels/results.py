"""The fitted model (lme4's ``merMod``): estimates, tables and the summary.

`LinearMixedModelResult` holds the primary quantities of a fit and derives
the rest on first use. Computations after the fit live in their own modules,
which this one imports (they know the result only as a type):

- `matrices`: getME's matrices, V, G, GLS;
- `predict`: prediction and simulation;
- `inference`: tables with degrees of freedom, intervals, anova;
- `profile`: profile-likelihood traces and intervals;
- `_summary`: lme4's printed summary.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp

from . import inference, matrices, predict, profile
from ._args import check_choice, check_level, check_positive
from ._fit_common import FitAttributes
from ._optimum import OptimalityCheck, check_fit
from ._ranef import (
    RandomEffects,
    coefficients,
    covariance_blocks,
    random_effects,
    variance_components,
)
from ._state import ModelState
from ._summary import summary_text
from .design import aligned_values
from .exceptions import ArgumentError
from .matrices import VBlock
from .optimize import Control, OptSummary

if TYPE_CHECKING:
    from .model import LinearMixedModel

__all__ = ["LinearMixedModelResult", "RandomEffects"]


@dataclass(frozen=True, eq=False)
class LinearMixedModelResult(FitAttributes):
    """A fitted linear mixed model (lme4's ``merMod``).

    Primary quantities are attributes; derived ones are computed on first use.
    Make one with `lmer`, `LinearMixedModel.fit` or `LinearMixedModel.fit_at`.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> fit.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    >>> round(fit.sigma, 3), fit.nobs, fit.ngrps
    (25.592, 180, {'Subject': 18})
    >>> fit.varcorr[["grp", "sdcor"]].round(3).values.tolist()
    [['Subject', 24.74], ['Subject', 5.922], ['Subject', 0.066], ['Residual', 25.592]]
    """

    model: LinearMixedModel = field(repr=False)
    """The `LinearMixedModel` that was fitted."""
    reml: bool
    """Whether the fit is by REML."""
    theta: np.ndarray
    """θ at the optimum, in lme4's order."""
    beta: np.ndarray
    """Fixed effects β̂."""
    sigma: float
    """Residual standard deviation σ̂."""
    objective: float
    """REML criterion (REML fits) or ML deviance at the optimum."""
    optsum: OptSummary = field(repr=False)
    """The record of the optimization."""
    u: np.ndarray = field(repr=False)
    """Spherical random effects (lme4's ``u``)."""
    b: np.ndarray = field(repr=False)
    """Random effects b = Λu, in Z's column order."""
    fitted_values: np.ndarray | None = field(repr=False)
    """Fitted values Xβ̂ + Zb (+ offset)."""
    pwrss: float = field(repr=False)
    """Penalized weighted residual sum of squares."""
    ld_l2: float = field(repr=False)
    """log det of LLᵀ."""
    ld_rx2: float = field(repr=False)
    """log det of RXᵀRX."""
    rx: np.ndarray = field(repr=False)
    """The fixed effects' dense factor RX."""

    @classmethod
    def from_model(cls, model: LinearMixedModel, optsum: OptSummary) -> LinearMixedModelResult:
        """Assemble the result at the θ of an optimization record (lme4's ``mkMerMod``)."""
        theta = np.asarray(optsum.final, dtype=np.float64)
        sol = model.state.solve(theta)
        d = model.design
        sigma = math.sqrt(sol.pwrss / (d.n - d.p if model.reml else d.n))
        return cls(
            model=model,
            reml=model.reml,
            theta=theta,
            beta=sol.beta,
            sigma=sigma,
            objective=model.state.objective(theta, model.reml),
            optsum=optsum,
            u=sol.u,
            b=sol.b,
            fitted_values=sol.fitted,
            pwrss=sol.pwrss,
            ld_l2=sol.ld_l2,
            ld_rx2=sol.ld_rx2,
            rx=sol.rx,
        )

    @cached_property
    def state(self) -> ModelState:
        """Return the model's workspace bound at this fit's θ and σ."""
        return self.model.state.at(self.theta, self.sigma)

    # -- layout -------------------------------------------------------------
    @property
    def n_dropped(self) -> int:
        """Return the number of rows dropped because of missing values."""
        return self.design.n_dropped

    # -- estimates ------------------------------------------------------------
    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Return the covariance of β̂: σ² (RXᵀRX)⁻¹."""
        return self.rx_covariance(self.sigma**2)

    @cached_property
    def stderror(self) -> pd.Series:
        """Return the standard errors of β̂, the square roots of vcov's diagonal."""
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        return pd.Series(se, index=list(self.design.x_names), name="Std. Error")

    @property
    def npar(self) -> int:
        """Return the number of parameters: β, θ and σ."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def loglik(self) -> float:
        """Return the log-likelihood (REML log-likelihood for REML fits), as lme4's logLik."""
        return -0.5 * self.objective

    @property
    def deviance(self) -> float:
        """Return -2 log-likelihood: the ML deviance, or the REML criterion for REML fits."""
        return self.objective

    @property
    def aic(self) -> float:
        """Return Akaike's information criterion."""
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        """Return the Bayesian information criterion."""
        return self.objective + math.log(self.nobs) * self.npar

    @property
    def df_residual(self) -> int:
        """Return the residual degrees of freedom, nobs - npar."""
        return self.nobs - self.npar

    @cached_property
    def fitted(self) -> pd.Series:
        """Return the fitted values Xβ + Zb, indexed like the data rows used."""
        return pd.Series(predict.fitted_rows(self), index=self.design.row_index, name="fitted")

    @cached_property
    def residuals(self) -> pd.Series:
        """Return the response residuals y - fitted."""
        return predict.residuals(self, "response").rename("residuals")

    @property
    def is_singular(self) -> bool:
        """Whether a θ element bounded by zero is below the tolerance (lme4's ``isSingular``)."""
        tol = self.optsum.control.singular_tol
        # on the core's θ: a column scaled to microunits does not make a term singular
        theta = self.model.state.core_theta(self.theta)
        return bool(np.any(theta[self.lower == 0] < tol))

    def check_optimum(self, tol: float = 1e-5) -> OptimalityCheck:
        """Check that θ is the optimum, and say by how much it is not (see `check_fit`).

        Examples
        --------
        >>> import mixedmodels as mm
        >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
        >>> fit.check_optimum().optimal
        True
        """
        return check_fit(self.model.state, self.reml, self.theta, self.lower, tol)

    @cached_property
    def covariances(self) -> dict[str, pd.DataFrame]:
        """Return per term the covariance matrix of its random effects, σ² T Tᵀ.

        The blocks of lme4's ``bdiag(VarCorr(fit))``. Keys are lme4's group
        names, made unique as ``Subject``, ``Subject.1``.
        """
        return covariance_blocks(self.design, self.theta, self.sigma)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Return the variance components, as lme4's ``as.data.frame(VarCorr(fit))``.

        Columns grp, var1, var2, vcov, sdcor: the variances first, then the
        covariances in θ order.
        """
        layouts = [t.layout for t in self.design.terms]
        return variance_components(self.covariances, layouts, self.sigma)

    @cached_property
    def ranef(self) -> RandomEffects:
        """Return the conditional modes and conditional variances of the random effects."""
        return random_effects(self.design, self.b, self.state.cond_var(), self.sigma)

    # -- random effects, prediction, simulation, refitting ------------------------------
    def coef(self) -> dict[str, pd.DataFrame]:
        """Return fixed plus random effects per level of each grouping factor (lme4's ``coef``).

        Columns are the fixed effects, then any random-only ones.
        """
        return coefficients(self.fixef, self.ranef)

    def resid(self, type: str = "response") -> pd.Series:
        """Return residuals, as lme4's ``residuals``.

        Parameters
        ----------
        type
            ``"response"`` (y − fitted), ``"pearson"`` (√w (y − fitted)) or
            ``"scaled"`` (Pearson residuals over σ).

        Returns
        -------
        pandas.Series
            The residuals, indexed like the data rows used.
        """
        return predict.residuals(self, type)

    def predict(
        self,
        newdata: object = None,
        re_form: str | None = None,
        allow_new_levels: bool = False,
    ) -> np.ndarray:
        """Return predictions, as lme4's ``predict``.

        Parameters
        ----------
        newdata
            Data to predict for (default: the fitted rows): a pandas, polars or
            pyarrow table, or a dict of columns.
        re_form
            None: all random effects; ``"~0"`` (or ``"NA"``): none, the
            population prediction; a formula such as ``"~(1|Subject)"``: only
            those random-effects terms.
        allow_new_levels
            Levels of a grouping factor not seen in the fit get the population
            prediction for that term when True; when False they are an error
            that names them.

        Returns
        -------
        numpy.ndarray
            One prediction per row.

        Examples
        --------
        >>> import mixedmodels as mm
        >>> d = mm.datasets.load("sleepstudy")
        >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
        >>> fit.predict(d.iloc[:2], re_form="~0").round(2)
        array([251.41, 261.87])
        """
        return predict.predict(self, newdata, re_form, allow_new_levels)

    def simulate(
        self, nsim: int = 1, seed: int | np.random.Generator | None = None
    ) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``).

        y* = Xβ̂ + offset + Zb* + ε*, b* ~ N(0, σ̂²ΛΛᵀ), ε* ~ N(0, σ̂²W⁻¹).
        One column per simulation (sim_1, ...).
        """
        return predict.simulate(self, nsim, seed)

    def refit(self, y: npt.ArrayLike, control: Control | None = None) -> LinearMixedModelResult:
        """Fit the same model to a new response (lme4's ``refit``).

        Everything that depends only on X, Z and the grouping is reused. The
        optimizer starts from this fit's θ.
        """
        if isinstance(y, pd.Series):  # aligned on the fitted rows, as pandas would
            y = aligned_values(y, self.design.row_index, "new response")
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as e:
            raise ArgumentError(f"the new response must hold numbers: {e}") from None
        model = self.model.with_response(y)
        return model.fit(control, start=self.theta)

    def refit_ml(self) -> LinearMixedModelResult:
        """Return the fit by maximum likelihood (lme4's ``refitML``): this fit if it is one.

        A REML fit is refitted by ML, the optimizer starting from its θ.
        """
        return self if not self.reml else self.model.with_reml(False).fit(start=self.theta)

    def refit_reml(self) -> LinearMixedModelResult:
        """Return the fit by REML: this fit if it is one, else a refit from its θ."""
        return self if self.reml else self.model.with_reml(True).fit(start=self.theta)

    # -- inference ------------------------------------------------------------------
    def coef_table(self, ddf: str | None = "satterthwaite") -> pd.DataFrame:
        """Return the fixed effects with estimate, se, df, t and p.

        Parameters
        ----------
        ddf
            ``"satterthwaite"`` (lmerTest), ``"kenward-roger"`` (pbkrtest) or
            None (no df, as lme4's summary).

        Returns
        -------
        pandas.DataFrame
            One row per fixed effect.

        Examples
        --------
        >>> import mixedmodels as mm
        >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
        >>> fit.coef_table().round(2)
                     estimate    se    df      t    p
        (Intercept)    251.41  6.82  17.0  36.84  0.0
        Days            10.47  1.55  17.0   6.77  0.0
        """
        if ddf is not None:
            check_choice(ddf, "ddf", ("satterthwaite", "kenward-roger"))
        return inference.coef_table(self, ddf)

    def confint(self, method: str = "wald", level: float = 0.95, **kwargs: Any) -> pd.DataFrame:
        """Return confidence intervals, in lme4's ``confint`` order.

        ``method`` is ``"wald"``, ``"profile"`` or ``"boot"`` (parametric
        bootstrap; ``nsim``, ``seed``, ``n_jobs``); see `inference.confint`.
        """
        method = check_choice(method, "method", ("wald", "profile", "boot"))
        return inference.confint(self, method, check_level(level), **kwargs)

    def profile(self, level: float = 0.99, points: int = 15) -> pd.DataFrame:
        """Return profile traces (lme4's ``profile``).

        ζ at points spanning each parameter's profile interval; columns param,
        value, zeta.
        """
        return profile.profile(self, check_level(level), points)

    # -- the model's matrices (lme4's getME, V, G, R) ----------------------------
    def get_me(self, name: str) -> Any:
        """Return one of the model's quantities by lme4's ``getME`` name.

        See `matrices.get_me` for the names.

        Examples
        --------
        >>> import mixedmodels as mm
        >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
        >>> fit.get_me("Z").shape, fit.get_me("Lind")[:3]
        ((180, 36), array([0, 1, 2]))
        """
        return matrices.get_me(self, name)

    @cached_property
    def z_columns(self) -> pd.DataFrame:
        """Return one row per column of Z (and of G, Λ, u, b).

        Its term's grouping factor, the level, and the coefficient.
        """
        return matrices.z_columns(self.design)

    def V(self, dense: bool = False, max_bytes: int | None = None) -> sp.csr_array | np.ndarray:
        """Return the marginal covariance V = ZGZᵀ + R = σ²(ZΛΛᵀZᵀ + W⁻¹), n x n.

        Rows are in the data's order (after dropping rows with missing
        values). A scipy sparse array (exact zeros not stored), or a numpy
        array with ``dense=True``. Refuses with `MemoryBudgetError`, before
        building anything, when V could exceed ``max_bytes`` (default 2 GiB):
        crossed designs make V nearly dense; use `V_solve`, `V_matvec`,
        `V_logdet` or `V_blocks` instead.
        """
        return matrices.v_matrix(self, dense, _budget(max_bytes))

    def V_blocks(self, max_bytes: int | None = None) -> list[VBlock]:
        """Return V split into its independent diagonal blocks.

        Groups of observations that share no random effect with the others,
        e.g. one per school for ``(1 | sch/tch)``: a list of `VBlock` (rows,
        dense V).
        """
        return matrices.v_blocks(self, _budget(max_bytes))

    def G(self) -> sp.csc_array:
        """Return G = σ²ΛΛᵀ, the covariance of the random effects, in Z's columns.

        The notes' ``Gm``; its blocks are `covariances`.
        """
        return matrices.g_matrix(self)

    def R(self) -> sp.dia_array:
        """Return R = σ²W⁻¹, the residual covariance (σ²I without prior weights)."""
        return sp.dia_array((self.state.residual_variances(), [0]), shape=(self.nobs,) * 2)

    def V_solve(self, B: npt.ArrayLike) -> np.ndarray:
        """Return V⁻¹B without forming V, through the PLS factor. B: n-vector or n x m.

        V⁻¹ = σ⁻²W^½(I − W^½ZΛ(ΛᵀZᵀWZΛ + I)⁻¹ΛᵀZᵀW^½)W^½.
        """
        return matrices.v_solve(self, B)

    def V_matvec(self, B: npt.ArrayLike) -> np.ndarray:
        """Return VB without forming V. B: n-vector or n x m."""
        return matrices.v_matvec(self, B)

    def V_logdet(self) -> float:
        """Return log det V = n log σ² + log det(ΛᵀZᵀWZΛ + I) − log det W."""
        return self.state.v_logdet()

    # -- printing --------------------------------------------------------------
    def summary(self, ddf: str | None = None) -> str:
        """Return lme4's ``summary(fit)`` layout.

        With ``ddf="satterthwaite"`` or ``"kenward-roger"`` the fixed-effects
        table gets df and p columns (lmerTest's layout).
        """
        return summary_text(self, ddf)

    def __str__(self) -> str:
        """Return the summary."""
        return self.summary()

    def __repr__(self) -> str:
        """Return a one-line description."""
        crit = "REML" if self.reml else "ML"
        return (
            f"<LinearMixedModelResult {self.formula!r} ({crit}): "
            f"objective={self.objective:.4f}, nobs={self.nobs}>"
        )


def _budget(max_bytes: int | None) -> int:
    """Return the memory budget: the default for None, else a positive number of bytes."""
    if max_bytes is None:
        return matrices.DEFAULT_MAX_BYTES
    return int(check_positive(max_bytes, "max_bytes"))
