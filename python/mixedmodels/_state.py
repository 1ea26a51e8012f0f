"""The one door to the Rust core: `ModelState`.

Every call into ``_core.Workspace`` goes through `ModelState`, and so does all
the algebra of prior weights W and the offset. The core works on the
weighted problem: rows of X, y − offset and Z scaled by √W. Its objective
then lacks −log det W (lme4's ``ldW``), its fitted values are on the weighted
scale without the offset, and its V is W^½VW^½. `ModelState` puts these back,
so that what it returns is the model's.

When the core takes the weights and the offset itself
(``Workspace(x, y, terms, weights=None, offset=None)``), this file is the one
to change, and only these methods: `ModelState.from_design` (pass W and the
offset instead of scaling), `with_response` (pass y), `objective_function`,
`objective`, `deviance` and `v_logdet` (no −log det W), `solve` (the core's
fitted values as they are) and `v_csr`, `v_solve`, `v_matvec` (no W^½
sandwich). `add_offset`, `pearson`, `residual_noise` and `residual_variances`
are statistics of W and the offset that stay here.
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

    __slots__ = ("_ws", "_weights", "_sqrt_w", "_log_det_w", "_offset", "_theta", "_sigma")

    def __init__(self, workspace: Workspace, weights: np.ndarray | None, offset: np.ndarray | None):
        self._ws = workspace
        self._weights = weights
        self._sqrt_w = None if weights is None else np.sqrt(weights)
        self._log_det_w = 0.0 if weights is None else float(np.log(weights).sum())
        self._offset = offset
        self._theta: np.ndarray | None = None
        self._sigma: float | None = None

    @classmethod
    def from_design(cls, design: Design) -> ModelState:
        """Build the workspace of a design (the A blocks and the sparse analysis)."""
        sw = None if design.weights is None else np.sqrt(design.weights)

        def scale(a: np.ndarray) -> np.ndarray:
            # prior weights enter as √W times the rows of X, y - offset and Z
            if sw is None:
                return a
            return a * (sw[:, None] if a.ndim == 2 else sw)

        y = design.y if design.offset is None else design.y - design.offset
        ws = Workspace(
            np.asfortranarray(scale(design.X)),
            scale(y),
            [(t.codes, np.ascontiguousarray(scale(t.z)), t.n_levels) for t in design.terms],
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
        core_y = y if self._offset is None else y - self._offset
        if self._sqrt_w is not None:
            core_y = core_y * self._sqrt_w
        new = copy.copy(self)
        new._ws = self._ws.with_response(core_y)
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
        ws, ldw = self._ws, self._log_det_w
        return lambda th: ws.objective(th, reml) - ldw

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """Return the REML criterion or the ML deviance at θ (lme4's ``devfun``)."""
        return self._ws.objective(theta, reml) - self._log_det_w

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
        return dev - self._log_det_w

    # -- the solution at θ -------------------------------------------------------------
    def solve(self, theta: np.ndarray | None = None) -> Solution:
        """Return the PLS solution at θ; fitted values on the scale of y, offset included."""
        sol = cast("dict[str, Any]", self._ws.solve(self._th(theta)))
        return Solution(
            beta=np.asarray(sol["beta"]),
            u=np.asarray(sol["u"]),
            b=np.asarray(sol["b"]),
            fitted=self._unweight_fitted(np.asarray(sol["fitted"])),
            pwrss=sol["pwrss"],
            ld_l2=sol["ld_l2"],
            ld_rx2=sol["ld_rx2"],
            rx=np.asarray(sol["rx"]),
            rzx=np.asarray(sol["rzx"]),
        )

    def _unweight_fitted(self, eta: np.ndarray) -> np.ndarray:
        if self._sqrt_w is not None:
            eta = eta / self._sqrt_w
        if self._offset is not None:
            eta = eta + self._offset
        return eta

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
        v = sp.csr_array((data, indices, indptr), shape=(n, n))
        if self._sqrt_w is not None:
            # the core's V is W^½ V W^½
            d = sp.dia_array((1.0 / self._sqrt_w, [0]), shape=(n, n))
            v = sp.csr_array(d @ v @ d)
        return v

    def v_solve(self, b: np.ndarray) -> np.ndarray:
        """Return V⁻¹B (B: n x m) at the bound θ and σ, without forming V."""
        ws, th, s = self._ws, self._th(None), self._sig(None)
        sw = self._sqrt_w
        if sw is None:
            return ws.v_solve(th, s, b)
        return sw[:, None] * ws.v_solve(th, s, sw[:, None] * b)  # V⁻¹ = W^½ (W^½VW^½)⁻¹ W^½

    def v_matvec(self, b: np.ndarray) -> np.ndarray:
        """Return VB (B: n x m) at the bound θ and σ, without forming V."""
        ws, th, s = self._ws, self._th(None), self._sig(None)
        sw = self._sqrt_w
        if sw is None:
            return ws.v_matvec(th, s, b)
        return ws.v_matvec(th, s, b / sw[:, None]) / sw[:, None]  # V = W^-½ (W^½VW^½) W^-½

    def v_logdet(self) -> float:
        """Return log det V at the bound θ and σ."""
        return float(self._ws.v_logdet(self._th(None), self._sig(None))) - self._log_det_w
