"""Negative binomial GLMMs with the shape estimated: lme4's ``glmer.nb``.

As lme4: a Poisson fit first; the shape's start from MASS's ``theta.ml`` on its
fitted means; then the shape θ minimizing −2 log L of the refitted GLMM (both of
`GeneralizedLinearMixedModel.optimize`'s stages at each θ) over log θ within ±3 of
the start, by Brent's bounded search (lme4: R's ``optimize``, tol 5e-5; here tighter).
The model's workspace is reused across shapes.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import optimize, special

from .exceptions import ConvergenceWarning
from .families import negative_binomial
from .glmm import GeneralizedLinearMixedModel
from .glmm_results import GeneralizedLinearMixedModelResult
from .optimize import Control

__all__ = ["glmer_nb", "theta_ml"]


def theta_ml(
    y: np.ndarray, mu: np.ndarray, weights: np.ndarray, limit: int = 20, eps: float = 1e-4
) -> float:
    """Return the negative binomial shape maximizing the likelihood at fixed means (MASS's)."""
    n = float(np.sum(weights))
    t0 = n / float(np.sum(weights * (y / mu - 1) ** 2))
    for _ in range(limit - 1):
        t0 = abs(t0)
        score = np.sum(
            weights
            * (
                special.digamma(t0 + y)
                - special.digamma(t0)
                + math.log(t0)
                + 1
                - np.log(t0 + mu)
                - (y + t0) / (mu + t0)
            )
        )
        info = np.sum(
            weights
            * (
                -special.polygamma(1, t0 + y)
                + special.polygamma(1, t0)
                - 1 / t0
                + 2 / (mu + t0)
                - (y + t0) / (mu + t0) ** 2
            )
        )
        delta = score / info
        t0 += delta
        if abs(delta) <= eps:
            break
    return max(float(t0), 1e-8)


def glmer_nb(
    formula: str,
    data: pd.DataFrame,
    link: str = "log",
    weights: str | npt.ArrayLike | None = None,
    offset: str | npt.ArrayLike | None = None,
    control: Control | None = None,
    tol: float = 1e-6,
) -> GeneralizedLinearMixedModelResult:
    """Fit a negative binomial GLMM with its shape estimated, as lme4's ``glmer.nb``.

    Parameters
    ----------
    formula
        lme4 formula with a count response.
    data
        The data.
    link
        The link (``"log"``, default, ``"identity"`` or ``"sqrt"``).
    weights, offset
        Prior weights and offset, as for `glmer`.
    control
        Optimizer settings of each GLMM fit.
    tol
        Tolerance of the search over log θ.

    Returns
    -------
    GeneralizedLinearMixedModelResult
        The fit at the estimated shape (``fit.family.shape``); the shape counts as a parameter.
    """
    control = control or Control()
    pois = GeneralizedLinearMixedModel.from_formula(
        formula, data, family="poisson", link=link, weights=weights, offset=offset
    )
    pois.optimize(control)
    mu0 = pois.state.state()["mu"]
    start = theta_ml(pois.design.y, mu0, pois.prior_weights)
    model = GeneralizedLinearMixedModel(pois.design, negative_binomial(start, link))
    model.shape_estimated = True

    def profile(log_shape: float) -> float:
        model.set_shape(math.exp(log_shape))
        theta, beta, _, _ = model.optimize(control)
        return model.objective(theta, beta)

    lo, hi = math.log(start) - 3, math.log(start) + 3
    res = optimize.minimize_scalar(
        profile, bounds=(lo, hi), method="bounded", options={"xatol": tol}
    )
    if min(res.x - lo, hi - res.x) < 10 * tol:
        warnings.warn(
            f"the negative binomial shape is at the edge of its search interval "
            f"({math.exp(res.x):g})",
            ConvergenceWarning,
            stacklevel=2,
        )
    model.set_shape(math.exp(res.x))
    return model.fit(control)
