"""The one door to the Rust core: `ModelState`.

Every call into ``_core.Workspace`` goes through `ModelState`. The core takes
the prior weights W and the offset itself: its objective is the model's
(lme4's, −log det W included), its fitted values are on the scale of y with
the offset, and its V is σ²(ZΛΛᵀZᵀ + W⁻¹). What stays here are the
statistics of W that do not need the core: Pearson residuals, simulated
noise, the residual variances and the deviance at a given σ.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import numpy as np
import scipy.sparse as sp

from ._core import Workspace
from .design import Design
from .exceptions import InternalError, ThetaError

__all__ = ["ModelState", "Solution"]


class Solution(NamedTuple):
    """The penalized least-squares solution at one θ."""

    beta: np.ndarray
    """Fixed effects β̂."""
    u: np.ndarray
    """Spherical random effects (lme4's ``u``)."""
    b: np.ndarray
    """Random effects b = Λu, in Z's column order."""
    fitted: np.ndarray
    """Fitted values Xβ̂ + Zb + offset, on the scale of y."""
    pwrss: float
    """Penalized weighted residual sum of squares."""
    ld_l2: float
    """log det of LLᵀ = ΛᵀZᵀWZΛ + I."""
    ld_rx2: float
    """log det of RXᵀRX."""
    rx: np.ndarray
    """The fixed effects' dense factor RX (p x p, upper triangular)."""
    rzx: np.ndarray
    """RZX (q x p, rows in L's order)."""


class ModelState:
    """The model's Rust workspace with its prior weights and offset, optionally at a θ.

    Methods that take ``theta`` (and ``sigma``) default to the θ (and σ) the
    state was bound to with `at`; a result holds the state bound at its
    estimates.
    """

    __slots__ = ("_ws", "_weights", "_sqrt_w", "_offset", "_theta", "_sigma")

    def __init__(self, workspace: Workspace, weights: np.ndarray | None, offset: np.ndarray | None):
        self._ws = workspace
        self._weights = weights
        self._sqrt_w = None if weights is None else np.sqrt(weights)
        self._offset = offset
        self._theta: np.ndarray | None = None
        self._sigma: float | None = None

    @classmethod
    def from_design(cls, design: Design) -> ModelState:
        """Build the workspace of a design (the A blocks and the sparse analysis)."""
        ws = Workspace(
            np.asfortranarray(design.X),
            design.y,
            [(t.codes, np.ascontiguousarray(t.z), t.n_levels) for t in design.terms],
            weights=design.weights,
            offset=design.offset,
        )
        if ws.n_theta != design.layout.n_theta:  # the core keeps its own copy of the layout
            raise InternalError(
                f"the core lays out {ws.n_theta} θ elements, the design {design.layout.n_theta}"
            )
        return cls(ws, design.weights, design.offset)

    def at(self, theta: np.ndarray, sigma: float | None = None) -> ModelState:
        """Return the same state bound to θ (and σ); the workspace is shared."""
        new = copy.copy(self)
        new._theta = np.asarray(theta, dtype=np.float64)
        new._sigma = sigma
        return new

    def with_response(self, y: np.ndarray) -> ModelState:
        """Return an unbound state for a new response, reusing the rest of the workspace."""
        new = copy.copy(self)
        new._ws = self._ws.with_response(np.ascontiguousarray(y, dtype=np.float64))
        new._theta, new._sigma = None, None
        return new

    # -- binding ---------------------------------------------------------------------
    def _th(self, theta: np.ndarray | None) -> np.ndarray:
        if theta is not None:
            return np.ascontiguousarray(theta, dtype=np.float64)
        if self._theta is None:
            raise ThetaError("this model state is not bound to a θ; pass theta")
        return self._theta

    def _sig(self, sigma: float | None) -> float:
        if sigma is not None:
            return float(sigma)
        if self._sigma is None:
            raise ThetaError("this model state is not bound to a σ; pass sigma")
        return self._sigma

    # -- sizes -----------------------------------------------------------------------
    @property
    def n(self) -> int:
        """Return the number of observations."""
        return self._ws.n

    @property
    def p(self) -> int:
        """Return the number of fixed effects."""
        return self._ws.p

    @property
    def q(self) -> int:
        """Return the number of random effects."""
        return self._ws.q

    # -- the objective -----------------------------------------------------------------
    def objective_function(self, reml: bool) -> Callable[[np.ndarray], float]:
        """Return the objective as a function of θ: one core call per θ (the optimizer's)."""
        ws = self._ws
        return lambda th: ws.objective(th, reml)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """Return the REML criterion or the ML deviance at θ (lme4's ``devfun``)."""
        return self._ws.objective(theta, reml)

    def gradient(self, theta: np.ndarray, reml: bool) -> np.ndarray:
        """Return the exact gradient of `objective` with respect to θ."""
        return np.asarray(self._ws.gradient(theta, reml))

    def components(self, theta: np.ndarray | None = None) -> tuple[float, float, float]:
        """Return (pwrss, log det LLᵀ, log det RXᵀRX) at θ."""
        return self._ws.components(self._th(theta))

    def deviance(self, theta: np.ndarray, sigma: float, reml: bool) -> float:
        """Return the deviance (or REML criterion) at (θ, σ), σ not profiled out.

        On the scale of `objective`: at σ̂ it equals the objective at θ.
        """
        pwrss, ld_l2, ld_rx2 = self.components(theta)
        s2 = sigma * sigma
        dev = ld_l2 + pwrss / s2 + self.n * math.log(2 * math.pi * s2)
        if reml:
            dev += ld_rx2 - self.p * math.log(2 * math.pi * s2)
        return dev - self._ws.log_det_w

    # -- the solution at θ -------------------------------------------------------------
    def solve(self, theta: np.ndarray | None = None) -> Solution:
        """Return the PLS solution at θ; fitted values on the scale of y, offset included."""
        sol = cast("dict[str, Any]", self._ws.solve(self._th(theta)))
        return Solution(
            beta=np.asarray(sol["beta"]),
            u=np.asarray(sol["u"]),
            b=np.asarray(sol["b"]),
            fitted=np.asarray(sol["fitted"]),
            pwrss=sol["pwrss"],
            ld_l2=sol["ld_l2"],
            ld_rx2=sol["ld_rx2"],
            rx=np.asarray(sol["rx"]),
            rzx=np.asarray(sol["rzx"]),
        )

    def rx(self, theta: np.ndarray | None = None) -> np.ndarray:
        """Return RX at θ."""
        return np.asarray(self._ws.rx(self._th(theta)))

    def cond_var(self, theta: np.ndarray | None = None) -> list[np.ndarray]:
        """Return per term the conditional covariances of the random effects over σ²."""
        return [np.asarray(c) for c in self._ws.cond_var(self._th(theta))]

    def factor_l(self, theta: np.ndarray | None = None) -> tuple[sp.csc_array, np.ndarray]:
        """Return the sparse Cholesky factor of ΛᵀZᵀWZΛ + I and its permutation."""
        perm, cp, ri, v = self._ws.factor_l(self._th(theta))
        q = len(perm)
        return sp.csc_array((v, ri, cp), shape=(q, q)), np.asarray(perm)

    # -- the offset and the weights in the model's quantities ----------------------------
    def add_offset(self, eta: np.ndarray) -> np.ndarray:
        """Return a linear predictor for the fitted rows plus the offset."""
        return eta if self._offset is None else eta + self._offset

    def pearson(self, r: np.ndarray) -> np.ndarray:
        """Return response residuals scaled to Pearson residuals, √W r."""
        return r if self._sqrt_w is None else r * self._sqrt_w

    def residual_noise(self, e: np.ndarray) -> np.ndarray:
        """Return errors of variance σ² (rows x columns) as errors of variance σ²W⁻¹."""
        return e if self._sqrt_w is None else e / self._sqrt_w[:, None]

    def residual_variances(self, sigma: float | None = None) -> np.ndarray:
        """Return the diagonal of R = σ²W⁻¹."""
        s2 = self._sig(sigma) ** 2
        return np.full(self.n, s2) if self._weights is None else s2 / self._weights

    # -- the marginal covariance V = σ²(ZΛΛᵀZᵀ + W⁻¹) ------------------------------------
    def v_nnz_bound(self) -> int:
        """Return an upper bound on the number of entries of V."""
        return int(self._ws.v_nnz_bound())

    def v_components(self) -> np.ndarray:
        """Return the independent block of V that each observation belongs to."""
        return np.asarray(self._ws.v_components())

    def v_csr(self, max_nnz: int) -> sp.csr_array:
        """Return V (n x n, sparse) at the bound θ and σ."""
        n = self.n
        indptr, indices, data = self._ws.v_csr(self._th(None), self._sig(None), max_nnz)
        return sp.csr_array((data, indices, indptr), shape=(n, n))

    def v_solve(self, b: np.ndarray) -> np.ndarray:
        """Return V⁻¹B (B: n x m) at the bound θ and σ, without forming V."""
        return self._ws.v_solve(self._th(None), self._sig(None), b)

    def v_matvec(self, b: np.ndarray) -> np.ndarray:
        """Return VB (B: n x m) at the bound θ and σ, without forming V."""
        return self._ws.v_matvec(self._th(None), self._sig(None), b)

    def v_logdet(self) -> float:
        """Return log det V at the bound θ and σ."""
        return float(self._ws.v_logdet(self._th(None), self._sig(None)))
