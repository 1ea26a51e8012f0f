"""A GLMM's fit on the exact gradient (canonical links, nAGQ <= 1).

The stages are lme4's (`GeneralizedLinearMixedModel.optimize`): θ alone with
β inside PIRLS (nAGQ = 0), then θ and β together on the Laplace objective,
each by scipy's L-BFGS-B on the exact gradient of the core
(``GlmmWorkspace.laplace_grad``: PIRLS, then one adjoint solve). The second
stage works in scaled coordinates where the Hessian in β is about the
identity: β = β₀ + RX⁻¹y/√2, RX the first stage's fixed-effects factor
(RXᵀRX is the Fisher information of β, and the Hessian of the deviance is
about twice it). The Hessian of the deviance at the optimum (lme4's, for
``vcov``) is then the central difference of the exact gradient
(`gradient_hessian`: 2m gradients instead of lme4's 2m² objectives).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from .exceptions import PirlsError
from .optimize import Control, OptSummary

__all__ = ["PirlsRun", "finite_difference_hessian", "gradient_hessian", "quasi_newton", "trial"]

FunGrad = Callable[[np.ndarray], tuple[float, np.ndarray]]

_FAILED = 1e10
"""How far above the start's objective a point where PIRLS fails is put (relative, at least 1)."""


def trial(fun: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """Return ``fun`` for an optimizer: PIRLS failing at a trial point gives a very large objective.

    A point outside the family's domain (an identity link's η < 0 for a
    positive mean, where the working weights are negative) is one the
    optimizer only probes: it then sees the start's objective plus
    ``_FAILED`` times its size (an objective and gradient: ∞ and NaN), and
    backs off. A failure at the first point (the start) is raised; so is one
    at the returned point, when the fit evaluates it again.
    """
    start: list[tuple[float, bool]] = []  # the start's objective, and whether with a gradient

    def f(x: np.ndarray) -> Any:
        try:
            out = fun(x)
        except PirlsError:
            if not start:
                raise
            value, with_gradient = start[0]
            if with_gradient:
                return math.inf, np.full(len(x), np.nan)
            return value + _FAILED * max(1.0, abs(value))
        if not start:
            pair = isinstance(out, tuple)
            start.append((float(out[0] if pair else out), pair))
        return out

    return f


class PirlsRun(NamedTuple):
    """One PIRLS run of a GLMM (at (θ, β), or at θ with β inside PIRLS).

    ``laplace`` = ``deviance`` (Σ dᵢ at the modes) + ``sqr_u`` (‖û‖²) + ``ld_l2`` (log det LLᵀ
    at the converged working weights): −2 log L (Laplace) without the family's constant;
    ``iterations`` (numeric refactorizations) and ``halvings`` (step halvings).
    """

    laplace: float
    deviance: float
    sqr_u: float
    ld_l2: float
    iterations: int
    halvings: int


def _bfgs_update(b: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the BFGS update of the Hessian approximation ``b`` (Powell's damping)."""
    bs = b @ s
    sbs = float(s @ bs)
    sy = float(s @ y)
    if sbs <= 0:
        return b
    if sy < 0.2 * sbs:  # damped: keep b positive definite
        phi = 0.8 * sbs / (sbs - sy)
        y = phi * y + (1 - phi) * bs
        sy = float(s @ y)
    return b - np.outer(bs, bs) / sbs + np.outer(y, y) / sy


def quasi_newton(
    fg: FunGrad,
    x0: np.ndarray,
    lower: np.ndarray,
    control: Control,
    transform: np.ndarray | None = None,
    hessian0: np.ndarray | None = None,
    step0: float = 0.5,
    rel_tol: float = 1e-12,
) -> tuple[OptSummary, np.ndarray]:
    """Minimize ``fg`` (value and gradient) over x >= lower by projected BFGS from ``x0``.

    The search runs over y with x = x0 + T y (``transform`` T, identity by
    default; diagonal on the bounded coordinates). The Hessian approximation
    in y starts at ``hessian0``, or else at ‖g₀‖/``step0`` times the
    identity (a first step of length ``step0``), rescaled by yᵀy/sᵀy after
    the first step (Nocedal and Wright, eq. 6.20). Elements at their bound
    with the gradient pushing outwards are held there; the rest take the
    quasi-Newton step on their block, projected onto the bounds and halved
    until the objective falls by a tenth of a thousandth of the predicted
    decrease (Armijo). The run stops when the predicted decrease
    ½gᵀB⁻¹g is below ``ftol_abs``/100, ``ftol_rel``·|f| or ``rel_tol``·|f|,
    or a step cannot lower the objective. θ elements bounded by zero and below
    ``control.boundary_tol`` are then tried at zero, as `optimize_theta` does.

    Returns the record and the final Hessian approximation in y.
    """
    m = len(x0)
    x0 = np.asarray(x0, dtype=np.float64)
    t = np.eye(m) if transform is None else np.asarray(transform, dtype=np.float64)
    bounded = np.isfinite(lower)
    ylow = np.full(m, -np.inf)
    ylow[bounded] = (lower[bounded] - x0[bounded]) / np.diag(t)[bounded]
    fitlog: list = []
    grads: list[np.ndarray] = []
    t0 = time.perf_counter()

    def f(y: np.ndarray) -> tuple[float, np.ndarray]:
        x = np.maximum(x0 + t @ y, lower)
        val, g = fg(x)
        fitlog.append((x.copy(), val))
        grads.append(g)
        return val, t.T @ g

    y = np.zeros(m)
    fy, gy = f(y)
    first = hessian0 is None
    b = (
        np.asarray(hessian0, dtype=np.float64).copy()
        if hessian0 is not None
        else np.eye(m) * max(float(np.linalg.norm(gy)), 1e-8) / step0
    )
    tol = max(control.ftol_abs / 100, control.ftol_rel * abs(fy), rel_tol * abs(fy))
    ret, converged = "MAXEVAL_REACHED", False
    while len(fitlog) < control.maxeval:
        held = (y <= ylow) & (gy > 0)
        free = ~held
        d = np.zeros(m)
        try:
            d[free] = -np.linalg.solve(b[np.ix_(free, free)], gy[free])
        except np.linalg.LinAlgError:
            d[free] = -gy[free]
        decrease = -0.5 * float(gy @ d)
        if decrease <= tol:
            ret, converged = "FTOL_REACHED", True
            break
        step, accepted = 1.0, False
        for _ in range(30):
            yn = np.maximum(y + step * d, ylow)
            fn, gn = f(yn)
            if np.isfinite(fn) and fn <= fy + 1e-4 * float(gy @ (yn - y)):
                accepted = True
                break
            step *= 0.5
        if not accepted:
            ret, converged = "ROUNDOFF_LIMITED", abs(fn - fy) <= 10 * tol
            break
        sv, yv = yn - y, gn - gy
        if first:
            sy = float(sv @ yv)
            if sy > 0:
                b = np.eye(m) * float(yv @ yv) / sy
            first = False
        b = _bfgs_update(b, sv, yv)
        y, fy, gy = yn, fn, gn
    k = int(np.argmin([v for _, v in fitlog]))
    xmin, fmin, gx = fitlog[k][0].copy(), fitlog[k][1], grads[k]
    snapped: tuple[int, ...] = ()
    small = (lower == 0) & (xmin > 0) & (xmin < control.boundary_tol)
    if small.any():
        cand = xmin.copy()
        cand[small] = 0.0
        zval, zg = fg(cand)
        fitlog.append((cand.copy(), zval))
        if zval <= fmin + control.boundary_ftol:
            xmin, fmin, gx = cand, zval, zg
            snapped = tuple(int(i) for i in np.flatnonzero(small))
    summary = OptSummary(
        initial=x0.copy(),
        lower=lower,
        final=xmin,
        fmin=float(fmin),
        feval=len(fitlog),
        optimizer="projected BFGS (exact gradient)",
        returnvalue=ret,
        control=control,
        elapsed=time.perf_counter() - t0,
        fitlog=fitlog,
        snapped=snapped,
        converged=converged,
        geval=len(fitlog),
        gradient=gx,
    )
    return summary, b


def gradient_hessian(
    grad: Callable[[np.ndarray], np.ndarray],
    x: np.ndarray,
    delta: float = 1e-4,
    start: Callable[[int, float], None] | None = None,
) -> np.ndarray:
    """Return the Hessian at x by central differences of the exact gradient (symmetrized).

    The step is lme4's ``deriv12``'s; its error is O(δ²) as there, with 2m
    gradients in place of 2m² + 1 objectives. ``start(i, s)``, when given,
    is called before the gradient at x + s eᵢ (s = ±δ): to set where PIRLS
    starts (`GeneralizedLinearMixedModel.hessian_starts`).
    """
    m = len(x)
    h = np.empty((m, m))
    for i in range(m):
        e = np.zeros(m)
        e[i] = delta
        g = []
        for s in (delta, -delta):
            if start is not None:
                start(i, s)
            g.append(grad(x + np.sign(s) * e))
        h[:, i] = (g[0] - g[1]) / (2 * delta)
    return (h + h.T) / 2


def finite_difference_hessian(
    fun: Callable[[np.ndarray], float], x: np.ndarray, delta: float = 1e-4
) -> np.ndarray:
    """Return the Hessian of fun at x by central differences (lme4's ``deriv12``)."""
    m = len(x)
    fx = fun(x)
    h = np.empty((m, m))
    for i in range(m):
        xa, xs = x.copy(), x.copy()
        xa[i] += delta
        xs[i] -= delta
        fa, fs = fun(xa), fun(xs)
        h[i, i] = (fa - 2 * fx + fs) / delta**2
        for j in range(i):
            xaa, xas, xsa, xss = xa.copy(), xa.copy(), xs.copy(), xs.copy()
            xaa[j] += delta
            xas[j] -= delta
            xsa[j] += delta
            xss[j] -= delta
            h[i, j] = h[j, i] = (fun(xaa) - fun(xas) - fun(xsa) + fun(xss)) / (4 * delta**2)
    return h
