"""The one door to the Rust core: `ModelState` (and `GlmmState` for GLMMs).

Every call into ``_core.Workspace`` goes through `ModelState`, every call into
``_core.GlmmWorkspace`` through `GlmmState`. The core takes the prior weights W
and the offset itself: its objective is the model's (lme4's, −log det W
included), its fitted values are on the scale of y with the offset, and its V
is σ²(ZΛΛᵀZᵀ + W⁻¹). What stays here are the statistics of W that do not need
the core: Pearson residuals, simulated noise, residual variances, deviance.

Random-effect columns reach the core centred and scaled where that helps
(`_term_maps.TermMaps`): a column far from zero relative to its spread is
centred when its term has an intercept, and a badly scaled one (a slope on a
covariate in microseconds, or in millions) is scaled by a power of two, so
that the optimizer works on a θ of sensible size and place. The optimizer
works on the core's θ; `core_theta` and `model_theta` map between the two
exactly, and b and the conditional variances are mapped back.

Likewise, when the model has an intercept and a column of X, or the response,
has a mean far larger than its spread (y + 10⁶, a date in seconds), the core
gets the columns centred (`Centering`): the cross-products lose no digits to
cancellation. It reparametrizes β (X_c = X C, C unit upper triangular),
mapped back exactly in β, RX, RZX and fitted values; θ and the objective stay.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from typing import Any, cast

import numpy as np
import scipy.sparse as sp

from ._core import BlockSums, GlmmWorkspace, Workspace
from ._glmm_fit import PirlsRun
from ._solution import Solution
from ._term_maps import Centering, TermMaps
from .design import Design
from .exceptions import InternalError, ThetaError

__all__ = ["BlockSums", "GlmmState", "ModelState", "PirlsRun", "Solution"]


class ModelState:
    """The model's Rust workspace with its prior weights and offset, optionally at a θ.

    Methods that take ``theta`` (and ``sigma``) default to the θ (and σ) the
    state was bound to with `at`; a result holds the state bound at its
    estimates.
    """

    __slots__ = (
        "_ws",
        "_weights",
        "_sqrt_w",
        "_offset",
        "_theta",
        "_sigma",
        "_maps",
        "_center",
    )

    def __init__(
        self,
        workspace: Workspace,
        weights: np.ndarray | None,
        offset: np.ndarray | None,
        maps: TermMaps | None = None,
        center: Centering | None = None,
    ):
        self._ws = workspace
        self._center = center
        self._weights = weights
        self._sqrt_w = None if weights is None else np.sqrt(weights)
        self._offset = offset
        self._theta: np.ndarray | None = None
        self._sigma: float | None = None
        # None when every random-effect column reaches the core as it is (the usual case)
        self._maps = maps

    @classmethod
    def from_design(cls, design: Design) -> ModelState:
        """Build the workspace of a design (the A blocks and the sparse analysis)."""
        maps, zs = TermMaps.build(
            design.layout,
            [t.z for t in design.terms],
            [t.cnames for t in design.terms],
            design.weights,
        )
        center = Centering.of(design)
        ws = Workspace(
            np.asfortranarray(design.X if center is None else center.x(design.X)),
            design.y if center is None else design.y - center.y_shift,
            [
                (t.codes, np.ascontiguousarray(z), t.n_levels)
                for t, z in zip(design.terms, zs, strict=True)
            ],
            weights=design.weights,
            offset=design.offset,
        )
        if ws.n_theta != design.layout.n_theta:  # the core keeps its own copy of the layout
            raise InternalError(
                f"the core lays out {ws.n_theta} θ elements, the design {design.layout.n_theta}"
            )
        return cls(ws, design.weights, design.offset, maps, center)

    @classmethod
    def from_sums(
        cls, sums: BlockSums, maps: TermMaps | None, center: Centering | None
    ) -> ModelState:
        """Build the workspace of the summed cross-products of data read in chunks.

        The chunks' columns were centred and scaled as ``center`` and ``maps``
        say; the rows are not kept (no weights or offset to read back). The sums
        move into the workspace: ``sums`` is empty afterwards.
        """
        return cls(sums.into_workspace(), None, None, maps, center)

    @property
    def theta_scale(self) -> np.ndarray | None:
        """Return the factors that make the core's θ from the model's (None: all 1).

        None also when the map is not a scaling (`linear_theta_map` is False).
        """
        return None if self._maps is None else self._maps.scale

    @property
    def linear_theta_map(self) -> bool:
        """Whether the core's θ is the model's, elementwise scaled (no centred columns)."""
        return self._maps is None or self._maps.scale is not None

    def _to_core(self, theta: np.ndarray) -> np.ndarray:
        th = np.ascontiguousarray(theta, dtype=np.float64)
        return th if self._maps is None else self._maps.core_theta(th)

    def _to_model(self, core_theta: np.ndarray) -> np.ndarray:
        th = np.asarray(core_theta, dtype=np.float64)
        return th if self._maps is None else self._maps.model_theta(th)

    def core_theta(self, theta: np.ndarray) -> np.ndarray:
        """Return the core's θ for the model's θ."""
        return self._to_core(theta)

    def model_theta(self, core_theta: np.ndarray) -> np.ndarray:
        """Return the model's θ for the core's θ."""
        return self._to_model(core_theta)

    def model_space(self) -> ModelState:
        """Return this state for code that works on the core's θ as rows of a factor (profile).

        When the core's θ is the model's scaled (`linear_theta_map`), this state
        itself; else a view whose "core θ" is the model's θ (`core_theta` and
        `model_theta` the identity), every computation still going through the
        map.
        """
        if self.linear_theta_map:
            return self
        view = ModelSpaceState.__new__(ModelSpaceState)
        for slot in ModelState.__slots__:
            setattr(view, slot, getattr(self, slot))
        return view

    def theta_jacobian(self, theta: np.ndarray) -> np.ndarray | None:
        """Return ∂θ_core/∂θ at the model's θ (None: the identity)."""
        return None if self._maps is None else self._maps.jacobian(theta)

    def at(self, theta: np.ndarray, sigma: float | None = None) -> ModelState:
        """Return the same state bound to θ (and σ); the workspace is shared."""
        new = copy.copy(self)
        new._theta = np.asarray(theta, dtype=np.float64)
        new._sigma = sigma
        return new

    def with_response(self, y: np.ndarray) -> ModelState:
        """Return an unbound state for a new response, reusing the rest of the workspace."""
        new = copy.copy(self)
        y = np.asarray(y, dtype=np.float64)
        if self._center is not None:
            yo = y if self._offset is None else y - self._offset
            shift = float(np.average(yo, weights=self._weights))
            new._center = Centering(self._center.x_mean, shift)
            y = y - shift
        new._ws = self._ws.with_response(np.ascontiguousarray(y))
        new._theta, new._sigma = None, None
        return new

    # -- binding ---------------------------------------------------------------------
    def _th(self, theta: np.ndarray | None) -> np.ndarray:
        """Return the core's θ for the given model θ, or for the bound one."""
        if theta is not None:
            return self._to_core(theta)
        if self._theta is None:
            raise ThetaError("this model state is not bound to a θ; pass theta")
        return self._to_core(self._theta)

    def _sig(self, sigma: float | None) -> float:
        if sigma is not None:
            return float(sigma)
        if self._sigma is None:
            raise ThetaError("this model state is not bound to a σ; pass sigma")
        return self._sigma

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
        """Return the objective as a function of the CORE's θ (`core_theta`).

        One core call per θ: the optimizer's function, which works on the
        core's (well-scaled) θ.
        """
        ws = self._ws
        return lambda th: ws.objective(th, reml)

    def objective(self, theta: np.ndarray, reml: bool) -> float:
        """Return the REML criterion or the ML deviance at θ (lme4's ``devfun``)."""
        return self._ws.objective(self._to_core(theta), reml)

    def gradient(self, theta: np.ndarray, reml: bool) -> np.ndarray:
        """Return the gradient of `objective` with respect to θ.

        Exact (from the factor) in the core's θ, times the derivative of the map
        from the model's θ (`theta_jacobian`: exact for scaled columns, by
        central differences of the map for centred ones).
        """
        g = np.asarray(self._ws.gradient(self._to_core(theta), reml))
        jac = self.theta_jacobian(theta)
        return g if jac is None else jac.T @ g

    def minimizer(self, reml: bool) -> Callable[..., tuple]:
        """Return the core's minimizer over the CORE's θ (`optimize.Control`'s ``"bfgs"``).

        ``minimize(start, ftol_abs, ftol_rel, xtol_abs, maxeval, initial_step, moments)``:
        the core's projected BFGS, no call into Python per evaluation (`optimize`).
        """
        ws = self._ws
        return lambda start, *settings: ws.minimize(
            np.ascontiguousarray(start, dtype=np.float64), reml, *settings
        )

    def moment_start(self) -> np.ndarray | None:
        """Return θ by the method of moments (MIVQUE0, from the cross-products), or None."""
        th = self._ws.moment_start()
        return None if th is None else self.model_theta(np.asarray(th))

    def core_objective(self, core_theta: np.ndarray, reml: bool) -> float:
        """Return the objective at the core's θ (see `core_theta`)."""
        return self._ws.objective(np.ascontiguousarray(core_theta, dtype=np.float64), reml)

    def core_gradient(self, core_theta: np.ndarray, reml: bool) -> np.ndarray:
        """Return the gradient with respect to the core's θ (see `core_theta`)."""
        th = np.ascontiguousarray(core_theta, dtype=np.float64)
        return np.asarray(self._ws.gradient(th, reml))

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
        beta = np.asarray(sol["beta"])
        fitted = None if sol["fitted"] is None else np.asarray(sol["fitted"])
        rx, rzx = np.asarray(sol["rx"]), np.asarray(sol["rzx"])
        c = self._center
        if c is not None:
            beta = c.beta(beta)
            fitted = None if fitted is None else fitted + c.y_shift
            rx, rzx = c.right(rx), c.right(rzx)
        return Solution(
            beta=beta,
            u=np.asarray(sol["u"]),
            b=self._model_b(np.asarray(sol["b"])),
            fitted=fitted,
            pwrss=sol["pwrss"],
            ld_l2=sol["ld_l2"],
            ld_rx2=sol["ld_rx2"],
            rx=rx,
            rzx=rzx,
        )

    def _model_b(self, b: np.ndarray) -> np.ndarray:
        return b if self._maps is None else self._maps.model_b(b)

    def rx(self, theta: np.ndarray | None = None) -> np.ndarray:
        """Return RX at θ."""
        rx = np.asarray(self._ws.rx(self._th(theta)))
        return rx if self._center is None else self._center.right(rx)

    def cond_var(self, theta: np.ndarray | None = None) -> list[np.ndarray]:
        """Return per term the conditional covariances of the random effects over σ²."""
        blocks = [np.asarray(c) for c in self._ws.cond_var(self._th(theta))]
        return blocks if self._maps is None else self._maps.model_cond_var(blocks)

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


class ModelSpaceState(ModelState):
    """A `ModelState` whose "core θ" is the model's θ (see `ModelState.model_space`)."""

    __slots__ = ()

    @property
    def theta_scale(self) -> np.ndarray | None:
        """Return None: this view's θ is the model's."""
        return None

    def core_theta(self, theta: np.ndarray) -> np.ndarray:
        """Return θ itself (the model's)."""
        return np.ascontiguousarray(theta, dtype=np.float64)

    def model_theta(self, core_theta: np.ndarray) -> np.ndarray:
        """Return θ itself (the model's)."""
        return np.asarray(core_theta, dtype=np.float64)


def _f64(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


class GlmmState:
    """A GLMM's Rust workspace (``GlmmWorkspace``): PIRLS and the Laplace approximation.

    Each call is one crossing into the core, with the GIL released; the modes
    of one evaluation are where the next starts.
    """

    __slots__ = ("_ws", "evaluations", "pirls_iterations")

    def __init__(
        self, design: Design, family: str, link: str, eta0: np.ndarray, shape: float | None
    ):
        # PIRLS runs (objective evaluations) and iterations (refactorizations) so far
        self.evaluations, self.pirls_iterations = 0, 0
        self._ws = GlmmWorkspace(
            np.asfortranarray(design.X),
            np.ascontiguousarray(design.y, dtype=np.float64),
            [(t.codes, np.ascontiguousarray(t.z), t.n_levels) for t in design.terms],
            family,
            link,
            np.ascontiguousarray(eta0, dtype=np.float64),
            weights=design.weights,
            offset=design.offset,
            shape=shape,
        )

    def set_shape(self, shape: float) -> None:
        """Set the negative binomial shape."""
        self._ws.set_shape(shape)

    def laplace(self, theta: np.ndarray, beta: np.ndarray) -> PirlsRun:
        """Run PIRLS on u at (θ, β)."""
        return self._count(PirlsRun(*self._ws.laplace(_f64(theta), _f64(beta))))

    def _count(self, run: PirlsRun) -> PirlsRun:
        self.evaluations += 1
        self.pirls_iterations += run.iterations
        return run

    def agq(
        self, theta: np.ndarray, beta: np.ndarray, nodes: np.ndarray, weights: np.ndarray
    ) -> tuple[float, PirlsRun]:
        """Return adaptive Gauss-Hermite quadrature's −2 log L at (θ, β) and PIRLS's record."""
        value, run = self._ws.agq(_f64(theta), _f64(beta), nodes, weights)
        return value, self._count(PirlsRun(*run))

    def laplace_beta(self, theta: np.ndarray) -> PirlsRun:
        """Run PIRLS on β and u at θ (nAGQ = 0)."""
        return self._count(PirlsRun(*self._ws.laplace_beta(_f64(theta))))

    @property
    def has_gradient(self) -> bool:
        """Whether the exact gradient is available (binomial-logit, Poisson-log)."""
        return bool(self._ws.has_gradient)

    def laplace_grad(self, theta: np.ndarray, beta: np.ndarray) -> tuple[PirlsRun, np.ndarray]:
        """Run PIRLS on u at (θ, β); return its record and the gradient in (θ, β)."""
        run, grad = self._ws.laplace_grad(_f64(theta), _f64(beta))
        return self._count(PirlsRun(*run)), np.asarray(grad)

    def laplace_beta_grad(self, theta: np.ndarray) -> tuple[PirlsRun, np.ndarray]:
        """Run PIRLS on β and u at θ; return its record and the nAGQ = 0 objective's gradient."""
        run, grad = self._ws.laplace_beta_grad(_f64(theta))
        return self._count(PirlsRun(*run)), np.asarray(grad)

    def hessian(
        self, theta: np.ndarray, beta: np.ndarray, delta: float, forward: bool = False
    ) -> np.ndarray | None:
        """Return the Hessian in (θ, β) from the core's gradients (None: not available).

        Central (``forward``: forward) differences, step ``delta`` (`hessian.rs`); left at (θ, β).
        """
        out = self._ws.hessian(_f64(theta), _f64(beta), delta, forward)
        if out is None:
            return None
        hessian, evaluations, iterations = out
        self.evaluations += evaluations
        self.pirls_iterations += iterations
        return np.asarray(hessian)

    def modes(self) -> np.ndarray:
        """Return the last run's modes u."""
        return np.asarray(self._ws.modes())

    def set_modes(self, u: np.ndarray | None) -> None:
        """Set the modes u the next run starts from (None: afresh, as the first run)."""
        self._ws.reset() if u is None else self._ws.set_modes(_f64(u))

    def set_tol(self, tol: float) -> float:
        """Set PIRLS's tolerance on its step (relative); return the one it replaces."""
        old, self._ws.tol = self._ws.tol, tol
        return old

    def mode_jacobian(self) -> np.ndarray | None:
        """Return ∂u/∂(θ, β) at the last run with β given (None unless the core has it)."""
        return self._ws.mode_jacobian()

    def state(self) -> dict[str, np.ndarray]:
        """Return the last run's beta, u, b, eta, mu and rx (see ``GlmmWorkspace.state``)."""
        return {k: np.asarray(v) for k, v in self._ws.state().items()}

    def cond_var(self) -> list[np.ndarray]:
        """Return per term the conditional covariances of b at the last run."""
        return [np.asarray(c) for c in self._ws.cond_var()]
