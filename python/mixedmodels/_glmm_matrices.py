"""The linearized model of a GLMM fit: V on the working scale.

At the fit's conditional modes PIRLS solves a penalized weighted least
squares problem: the working response

    z = η + (y − μ)/(dμ/dη)

(offset included) as a linear mixed model

    z = Xβ + o + ZΛu + e,    u ~ N(0, I),    e ~ N(0, W⁻¹),

with the working weights W = diag(wᵢ (dμ/dη)ᵢ²/V(μᵢ)) (wᵢ the prior
weights). Its marginal covariance, on the working (link) scale, is

    V = W⁻¹ + ZΛΛᵀZᵀ,

without the dispersion of a Gamma or inverse Gaussian family (PIRLS and the
Laplace objective weigh the rows by W alone). It is the linear model's V with
σ = 1 and prior weights W (`matrices`): the same Rust workspace assembles V
and applies V⁻¹ through the factor of ΛᵀZᵀWZΛ + I. Generalized least squares
of z − o with this V gives PIRLS's β at θ̂ and (XᵀV⁻¹X)⁻¹ = (RXᵀRX)⁻¹
(`GeneralizedLinearMixedModelResult.vcov_rx`).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from ._state import ModelState
from .exceptions import DimensionError, MemoryBudgetError
from .matrices import DEFAULT_MAX_BYTES

if TYPE_CHECKING:
    from .glmm_results import GeneralizedLinearMixedModelResult

__all__ = ["linearized_state", "v_matrix", "v_product", "working_response", "working_weights"]


def working_weights(fit: GeneralizedLinearMixedModelResult) -> np.ndarray:
    """Return PIRLS's working weights at the fit: w (dμ/dη)²/V(μ)."""
    d = fit.family.mu_eta(fit.eta)
    return np.asarray(fit.model.prior_weights * d * d / fit.family.variance(fit.mu))


def working_response(fit: GeneralizedLinearMixedModelResult) -> np.ndarray:
    """Return the working response z = η + (y − μ)/(dμ/dη) at the fit (offset included)."""
    return np.asarray(fit.eta + (fit.design.y - fit.mu) / fit.family.mu_eta(fit.eta))


def linearized_state(fit: GeneralizedLinearMixedModelResult) -> ModelState:
    """Return the linear model's workspace of the linearized model, bound to (θ̂, σ = 1)."""
    design = replace(fit.design, y=working_response(fit), weights=working_weights(fit))
    return ModelState.from_design(design).at(fit.theta, 1.0)


def v_matrix(
    state: ModelState, dense: bool, max_bytes: int = DEFAULT_MAX_BYTES
) -> sp.csr_array | np.ndarray:
    """Return V, sparse or dense, refusing before building it when it could exceed max_bytes."""
    n = state.n
    bound = state.v_nnz_bound()
    need = max(n * n * 8 if dense else 0, bound * 16)
    if need > max_bytes:
        raise MemoryBudgetError(
            f"V of this model would take ~{need / 1024**3:.1f} GiB, more than "
            f"max_bytes={max_bytes:,}; fit.V_solve(B) and fit.V_matvec(B) work without "
            "forming V, or raise max_bytes"
        )
    v = state.v_csr(max(bound, 1))
    return v.toarray() if dense else v


def v_product(state: ModelState, b: npt.ArrayLike, solve: bool) -> np.ndarray:
    """Return V⁻¹B (``solve``) or VB for an n-vector or n x m matrix B, without forming V."""
    a = np.asarray(b, dtype=np.float64)
    vec = a.ndim == 1
    a2 = a[:, None] if vec else a
    if a2.ndim != 2 or a2.shape[0] != state.n:
        raise DimensionError(
            f"B has shape {a.shape}; V is {state.n} x {state.n} (one row per observation used)"
        )
    out = state.v_solve(a2) if solve else state.v_matvec(a2)
    return out[:, 0] if vec else out
