"""A fitted generalized linear mixed model (lme4's ``glmerMod``).

Which "deviance" is which (lme4's conventions, values for cbpp):

- ``objective`` (184.05): −2 log L under the Laplace approximation, with the
  likelihood's constant; lme4's ``devcomp$cmp["dev"]`` and ``-2 * logLik``,
  printed as "deviance" in the summary's AIC line.
- ``laplace_deviance`` (100.10): the same without the constant (MixedModels.jl's).
- ``deviance`` (73.47): Σ dᵢ at the conditional modes (lme4's ``deviance(fit)``).

Computations after the fit live in their own modules: `glmm_profile`
(profile intervals), `_glmm_boot` (simulate, refit, bootstrap),
`_glmm_matrices` (V of the linearized model), `_glmm_check` (the optimality
check recorded in ``optsum.check``), `_glmm_summary` (the printed summary).
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
from scipy import stats

from . import _glmm_boot, _glmm_matrices, glmm_profile
from ._args import check_choice, check_level, check_positive
from ._fit_common import FitAttributes
from ._glmm_summary import glmm_summary_text
from ._ranef import (
    RandomEffects,
    coefficients,
    covariance_blocks,
    random_effects,
    variance_components,
)
from ._state import ModelState
from .exceptions import ArgumentError, UnknownNameError
from .families import Family
from .matrices import GET_ME_NAMES, get_me
from .optimize import Control, OptSummary
from .predict import in_sample_linear_predictor, new_linear_predictor, selected_terms

if TYPE_CHECKING:
    from .glmm import GeneralizedLinearMixedModel

__all__ = ["GeneralizedLinearMixedModelResult", "vcov_from_hessian"]


def vcov_from_hessian(hessian: np.ndarray, n_theta: int) -> np.ndarray | None:
    """Return β's covariance from the Hessian of −2 log L in (θ, β), as lme4's ``calc.vcov.hess``.

    2 H⁻¹ restricted to β (symmetrized); None when H is not invertible or the
    result is not positive definite (lme4 then falls back to RX).
    """
    try:
        hinv = np.linalg.inv(hessian)
    except np.linalg.LinAlgError:
        return None
    v = hinv[n_theta:, n_theta:]
    v = v + v.T
    if not np.isfinite(v).all() or (v.size and np.linalg.eigvalsh(v).min() <= 0):
        return None
    return v


@dataclass(frozen=True, eq=False)
class GeneralizedLinearMixedModelResult(FitAttributes):
    """A fitted GLMM: estimates as attributes, derived quantities computed on first use.

    Make one with `glmer` or `GeneralizedLinearMixedModel.fit`.
    """

    model: GeneralizedLinearMixedModel = field(repr=False)
    """The model that was fitted."""
    theta: np.ndarray
    """θ at the optimum, in lme4's order."""
    beta: np.ndarray
    """Fixed effects β̂."""
    objective: float
    """−2 log L (Laplace) at the optimum, with the likelihood's constant (lme4's)."""
    laplace_deviance: float = field(repr=False)
    """``objective`` without the likelihood's constant."""
    deviance: float = field(repr=False)
    """Σ dᵢ at the conditional modes: lme4's ``deviance(fit)``."""
    sqr_u: float = field(repr=False)
    """‖û‖²."""
    ld_l2: float = field(repr=False)
    """log det(LLᵀ) at the converged working weights."""
    u: np.ndarray = field(repr=False)
    """Spherical conditional modes û."""
    b: np.ndarray = field(repr=False)
    """Conditional modes b = Λû, in Z's column order."""
    eta: np.ndarray = field(repr=False)
    """Linear predictor η at the modes (offset included)."""
    mu: np.ndarray = field(repr=False)
    """Fitted means μ = g⁻¹(η)."""
    rx: np.ndarray = field(repr=False)
    """RX at the converged working weights (RXᵀRX: β's Fisher information given the modes)."""
    cond_var: list[np.ndarray] = field(repr=False)
    """Per term the conditional covariances of b (levels, k, k)."""
    hessian: np.ndarray | None = field(repr=False)
    """Finite-difference Hessian of ``objective`` in (θ, β) (lme4's ``deriv12``), or None."""
    vcov_beta: np.ndarray | None = field(repr=False)
    """β's covariance from the Hessian (None: not positive definite, or nAGQ = 0)."""
    optsum: OptSummary = field(repr=False)
    """The record of the final optimization (θ and β; for nAGQ = 0, θ)."""
    optsum_nagq0: OptSummary = field(repr=False)
    """The record of the first stage (nAGQ = 0: θ alone)."""
    evaluations: int = field(default=0, repr=False)
    """Objective evaluations (PIRLS runs) of the whole fit: both stages and the Hessian."""
    pirls_iterations: int = field(default=0, repr=False)
    """PIRLS iterations (numeric refactorizations of L) of the whole fit."""

    @property
    def family(self) -> Family:
        """Return the family."""
        return self.model.family

    @property
    def nagq(self) -> int:
        """Return the number of quadrature points (1: Laplace, 0: the fast fit)."""
        return self.model.nagq

    # -- estimates ------------------------------------------------------------
    @cached_property
    def vcov_rx(self) -> pd.DataFrame:
        """Return (RXᵀRX)⁻¹: β's covariance given the modes (lme4's ``use.hessian = FALSE``)."""
        return self.rx_covariance()

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Return β's covariance: from the Hessian in (θ, β) as lme4 by default, else `vcov_rx`."""
        if self.vcov_beta is None:
            return self.vcov_rx
        names = list(self.design.x_names)
        return pd.DataFrame(self.vcov_beta, index=names, columns=names)

    @cached_property
    def stderror(self) -> pd.Series:
        """Return the standard errors of β̂."""
        se = np.sqrt(np.diag(self.vcov.to_numpy()))
        return pd.Series(se, index=list(self.design.x_names), name="Std. Error")

    def coef_table(self) -> pd.DataFrame:
        """Return the Wald table: Estimate, Std. Error, z value, Pr(>|z|)."""
        z = self.beta / self.stderror.to_numpy()
        return pd.DataFrame(
            {
                "Estimate": self.beta,
                "Std. Error": self.stderror.to_numpy(),
                "z value": z,
                "Pr(>|z|)": 2 * stats.norm.sf(np.abs(z)),
            },
            index=list(self.design.x_names),
        )

    def confint_wald(self, level: float = 0.95) -> pd.DataFrame:
        """Return Wald intervals of β̂ (lme4's ``confint(method = "Wald")``)."""
        if not 0 < level < 1:
            raise ArgumentError(f"level must be in (0, 1), not {level!r}")
        zq = stats.norm.ppf(0.5 + level / 2)
        se = self.stderror.to_numpy()
        return pd.DataFrame(
            {"lower": self.beta - zq * se, "upper": self.beta + zq * se},
            index=list(self.design.x_names),
        )

    def confint(
        self,
        method: str = "wald",
        level: float = 0.95,
        nsim: int = 500,
        seed: int | np.random.Generator | None = None,
    ) -> pd.DataFrame:
        """Return confidence intervals in lme4's order: the sds and correlations, then β.

        ``method``: ``"wald"`` (β ± z SE; none for the sds and correlations, as
        lme4), ``"profile"`` (profile likelihood, lme4's ``profile``:
        `glmm_profile`) or ``"boot"`` (parametric bootstrap percentile
        intervals of ``nsim`` refits to responses simulated with ``seed``,
        lme4's ``bootMer``; a family with a dispersion adds a σ row).
        Columns lower and upper.
        """
        method = check_choice(method, "method", ("wald", "profile", "boot"))
        level = check_level(level)
        if method == "profile":
            return glmm_profile.glmm_profile_confint(self, level)
        if method == "boot":
            samples = self.bootstrap(nsim, seed)
            alpha = (1 - level) / 2
            return pd.DataFrame(
                {
                    "lower": np.nanquantile(samples, alpha, axis=0),
                    "upper": np.nanquantile(samples, 1 - alpha, axis=0),
                },
                index=list(samples.columns),
            )
        wald = self.confint_wald(level)
        sd = pd.DataFrame(np.nan, index=self.design.layout.sdcor_names, columns=wald.columns)
        return pd.concat([sd, wald])

    def profile(self, level: float = 0.99, points: int = 15) -> pd.DataFrame:
        """Return profile traces (lme4's ``profile``): columns param, value, zeta."""
        return glmm_profile.glmm_profile(self, check_level(level), points)

    def bootstrap(
        self, nsim: int = 500, seed: int | np.random.Generator | None = None
    ) -> pd.DataFrame:
        """Return a parametric bootstrap (lme4's ``bootMer``): a row of parameters per refit.

        The sds and correlations (θ's, σ = 1), σ for a family with a
        dispersion, and β, as lme4's ``confint(method = "boot")`` takes them.
        """
        return _glmm_boot.bootstrap(self, nsim, seed)

    def simulate(
        self, nsim: int = 1, seed: int | np.random.Generator | None = None
    ) -> pd.DataFrame:
        """Simulate responses from the fitted model (lme4's ``simulate``, new random effects).

        One column per simulation (sim_1, ...), on the model's scale: a binomial
        response as the proportion of its trials (what `refit` takes).
        See `_glmm_boot` for each family's draw.
        """
        return _glmm_boot.simulate(self, nsim, seed)

    def refit(
        self, y: npt.ArrayLike, control: Control | None = None
    ) -> GeneralizedLinearMixedModelResult:
        """Fit the same model to a new response (lme4's ``refit``), from this fit's (θ, β).

        ``y``: one value per fitted row, on the model's scale (a binomial
        response as proportions of the same trials).
        """
        return _glmm_boot.refit(self, y, control)

    @property
    def npar(self) -> int:
        """Return the number of parameters: θ, β, σ (a dispersion) and an estimated NB shape."""
        extra = int(self.family.has_scale) + int(self.model.shape_estimated)
        return len(self.theta) + len(self.beta) + extra

    @cached_property
    def sigma(self) -> float:
        """Return σ: 1 without a dispersion; else √((Σ Pearson residuals² + ‖û‖²)/n), lme4's."""
        if not self.family.has_scale:
            return 1.0
        r = self.resid("pearson").to_numpy()
        return math.sqrt((float(r @ r) + self.sqr_u) / self.nobs)

    @property
    def loglik(self) -> float:
        """Return the log-likelihood (Laplace), −objective / 2."""
        return -self.objective / 2

    @property
    def aic(self) -> float:
        """Return AIC."""
        return self.objective + 2 * self.npar

    @property
    def bic(self) -> float:
        """Return BIC."""
        return self.objective + self.npar * math.log(self.nobs)

    @property
    def df_residual(self) -> int:
        """Return the residual degrees of freedom, n − npar."""
        return self.nobs - self.npar

    @property
    def is_singular(self) -> bool:
        """Whether a θ element bounded by zero is below the tolerance (lme4's ``isSingular``)."""
        tol = self.optsum.control.singular_tol
        return bool(np.any(self.theta[self.lower == 0] < tol))

    # -- random effects -------------------------------------------------------
    @cached_property
    def covariances(self) -> dict[str, pd.DataFrame]:
        """Return per term the covariance matrix of its random effects, σ² T Tᵀ (σ: `sigma`)."""
        return covariance_blocks(self.design, self.theta, self.sigma)

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Return the variance components, as lme4's ``as.data.frame(VarCorr(fit))``."""
        layouts = [t.layout for t in self.design.terms]
        vc = variance_components(self.covariances, layouts, self.sigma)
        if self.family.has_scale:
            return vc
        return vc[vc["grp"] != "Residual"].reset_index(drop=True)

    @cached_property
    def ranef(self) -> RandomEffects:
        """Return the conditional modes and their conditional variances (lme4's ``ranef``)."""
        return random_effects(self.design, self.b, self.cond_var, self.sigma)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Return fixed plus random effects per level (lme4's ``coef``)."""
        return coefficients(self.fixef, self.ranef)

    # -- fitted values, residuals, predictions ----------------------------------------
    @cached_property
    def fitted(self) -> pd.Series:
        """Return the fitted means μ (the response scale)."""
        return pd.Series(self.mu, index=self.design.row_index, name="fitted")

    def resid(self, type: str = "deviance") -> pd.Series:
        """Return residuals: "deviance" (default), "pearson", "response" or "working"."""
        y, mu, wt = self.design.y, self.mu, self.model.prior_weights
        fam = self.family
        if type == "deviance":
            d = fam.dev_resids(y, mu, wt)
            r = np.sign(y - mu) * np.sqrt(np.maximum(d, 0))
        elif type == "pearson":
            r = (y - mu) * np.sqrt(wt) / np.sqrt(fam.variance(mu))
        elif type == "response":
            r = y - mu
        elif type == "working":
            r = (y - mu) / fam.mu_eta(self.eta)
        else:
            raise ArgumentError(
                f"unknown residual type {type!r}; use 'deviance', 'pearson', 'response' or "
                "'working'"
            )
        return pd.Series(r, index=self.design.row_index, name="residuals")

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        type: str = "link",
        re_form: str | None = None,
        allow_new_levels: bool = False,
    ) -> np.ndarray:
        """Return predictions on the link scale (``type="link"``) or the response scale.

        As lme4's ``predict``: ``re_form="~0"`` (or "NA") for the population
        level; new levels of a grouping factor, with ``allow_new_levels``,
        at the population level.
        """
        if type not in ("link", "response"):
            raise ArgumentError(f"type must be 'link' or 'response', not {type!r}")
        keep = selected_terms(self.design, re_form)
        if newdata is None:
            eta = (
                self.eta.copy()
                if re_form is None
                else in_sample_linear_predictor(self.design, self.beta, self.b, keep)
            )
        else:
            eta = new_linear_predictor(
                self.design, self.beta, self.b, newdata, keep, allow_new_levels
            )
        return eta if type == "link" else self.family.linkinv(eta)

    def get_me(self, name: str) -> Any:
        """Return a quantity by lme4's ``getME`` name.

        The linear model's names (`matrices.get_me`: X, y, Z, Zt, Lambda,
        Lambdat, Lind, theta, beta, u, b, sigma, flist, cnms, Gp, L, RX, RZX,
        lower, n_rtrms; ``L`` and ``RZX`` of the system PIRLS solves at the
        fit, with the working weights), and ``mu``, ``eta`` and ``devcomp``.
        """
        extra: dict[str, Any] = {
            "mu": lambda: self.mu.copy(),
            "eta": lambda: self.eta.copy(),
            "devcomp": lambda: {
                "dev": self.objective,
                "sqrL": self.sqr_u,
                "ldL2": self.ld_l2,
                "drsum": self.deviance,
            },
        }
        if name in extra:
            return extra[name]()
        if name not in GET_ME_NAMES:
            have = ", ".join([*GET_ME_NAMES, *extra])
            raise UnknownNameError(f"unknown name {name!r} for a GLMM fit; available: {have}")
        return get_me(self, name, self._linearized)  # type: ignore[arg-type]

    # -- the linearized model (the working scale) -----------------------------------
    @cached_property
    def working_weights(self) -> np.ndarray:
        """Return PIRLS's working weights at the fit, W = w (dμ/dη)²/V(μ)."""
        return _glmm_matrices.working_weights(self)

    @cached_property
    def _linearized(self) -> ModelState:
        return _glmm_matrices.linearized_state(self)

    def V(self, dense: bool = False, max_bytes: int | None = None) -> sp.csr_array | np.ndarray:
        """Return V = W⁻¹ + ZΛΛᵀZᵀ of the linearized model, on the working (link) scale.

        The marginal covariance of the working response z = η + (y − μ)/(dμ/dη)
        in the penalized least squares problem PIRLS solves at the fit (see
        `_glmm_matrices`); not the covariance of y. Sparse (scipy CSR), or a
        dense array with ``dense=True``; refused (`MemoryBudgetError`) when it
        could exceed ``max_bytes`` (default 2 GiB).
        """
        budget = int(check_positive(max_bytes, "max_bytes")) if max_bytes is not None else None
        if budget is None:
            return _glmm_matrices.v_matrix(self._linearized, dense)
        return _glmm_matrices.v_matrix(self._linearized, dense, budget)

    def V_solve(self, B: npt.ArrayLike) -> np.ndarray:
        """Return V⁻¹B (V of the linearized model, `V`) without forming V. B: n or n x m."""
        return _glmm_matrices.v_product(self._linearized, B, solve=True)

    def V_matvec(self, B: npt.ArrayLike) -> np.ndarray:
        """Return VB (V of the linearized model, `V`) without forming V. B: n or n x m."""
        return _glmm_matrices.v_product(self._linearized, B, solve=False)

    def V_logdet(self) -> float:
        """Return log det V (V of the linearized model, `V`)."""
        return self._linearized.v_logdet()

    def summary(self) -> str:
        """Return lme4's ``summary(fit)`` layout for a GLMM."""
        return glmm_summary_text(self)

    def __str__(self) -> str:
        """Return the summary."""
        return self.summary()
