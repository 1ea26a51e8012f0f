"""The parameters of lme4's intervals: each term's sds and correlations, σ, β."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["param_names", "param_values"]


def param_names(fit: LinearMixedModelResult) -> list[str]:
    """Return lme4's confint row names: ``sd_(Intercept)|Subject``, ..., ``sigma``, β names."""
    return [*fit.design.layout.sdcor_names, "sigma", *fit.design.x_names]


def param_values(fit: LinearMixedModelResult) -> np.ndarray:
    """Return the sds and correlations of each term (θ order), σ and β of a fit."""
    return np.concatenate([fit.design.layout.sdcor(fit.theta, fit.sigma), [fit.sigma], fit.beta])
