"""The end of every fit: check that θ is the optimum, polish it with Newton steps, record the check.

After the optimizer stops at θ₀ (the core's θ), `polish` takes the exact
gradient g there (one call; the objective at θ₀ comes with it) and a Hessian
H of the free coordinates (those inside their bounds, or at a bound with the
gradient pointing inward). H is estimated without new evaluations, by least
squares from the objective values the optimizer logged last (BOBYQA's last
trust region: its own interpolation points),

    f(θᵢ) − f(θ₀) − gᵀdᵢ = ½ dᵢᵀ H dᵢ,    dᵢ = θᵢ − θ₀,

or, from a gradient-based optimizer, is its quasi-Newton approximation. The
local quadratic model predicts the gap to the optimum, ½ gᵀH⁻¹g in deviance
units, and a Newton step θ₁ = θ₀ − H⁻¹g (kept within the bounds) that should
close it. One evaluation of the objective at θ₁ tests the prediction:

- a predicted gain below the objective's rounding (about 1e-12 relative):
  θ₁ is kept unless the objective rose beyond rounding (the exact gradient
  places θ more precisely than the objective can), and the gap is the
  prediction. The usual end of a fit: one gradient and one objective.
- a decrease within a factor of two of the prediction: θ₁ is kept, the gap
  is at most the prediction's error |predicted − actual| (of first order in
  H's error, the true gap being of second order), and another step from the
  gradient at θ₁ (H updated by BFGS) pins θ down; up to four steps.
- anything else: the Hessian by forward differences of the exact gradient
  replaces the logged one; when even that gives no positive definite model,
  `check_optimum` estimates the gap (∞ for negative curvature or a flat
  direction with a gradient along it) and a line search moves to a lower
  point when it finds one.

So a point that is optimal is pinned down well beyond the optimizer's stopping
tolerance (the invariance to the units of a covariate, 1e-6 relative, needs
that). `fit_theta` restarts the optimizer (tight tolerances) from a point
that is not optimal: a θ element at zero whose gradient points inward, or
where the curvature is negative (lme4's ``restart_edge``), is moved off the
boundary by the Newton step or the line search, and the restart continues
from there. A run cut short by ``maxeval`` is checked, not continued.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from ._optimum import check_optimum, fd_hessian
from .optimize import Control, NativeMinimizer, OptSummary, optimize_theta

__all__ = ["ConvergenceCheck", "fit_theta", "polish"]


@dataclass(frozen=True)
class ConvergenceCheck:
    """The record of the optimality check that ends a fit (``fit.optsum.check``).

    Attributes
    ----------
    gradient
        Gradient of the objective at the final θ (with respect to the model's
        θ), as last computed: at the point the Newton step started from when
        the step was accepted on the prediction alone.
    gap
        Estimated objective above the optimum at the final θ, in deviance
        units (∞ when the local model has no minimum).
    decrease
        A decrease of the objective from the final θ that a line search
        found (0 when none was looked for or found): a proven lower bound on
        the gap. Only a run cut short by ``maxeval`` ends with one.
    tol
        The largest gap accepted as optimal: `Control.gap_tol`, or 1e-11 of the
        objective when that is larger (the objective's rounding).
    optimal
        Whether the gap is within ``tol``.
    restarts
        How many times the optimizer was restarted because the check failed.
    method
        How the Hessian was obtained: ``"logged"`` (least squares on the
        optimizer's logged evaluations), ``"quasi-newton"`` (the gradient-based
        optimizer's approximation) or ``"differences"`` (differences of the
        exact gradient).
    polished
        Decrease of the objective from where the optimizer first stopped to
        the final θ, by the check's Newton steps and the restarts.
    feval
        Objective evaluations spent by the check and the restarts' checks
        (the restarts' own evaluations are in `OptSummary.feval`).
    geval
        Gradient evaluations spent by the check.
    """

    gradient: np.ndarray
    gap: float
    decrease: float
    tol: float
    optimal: bool
    restarts: int
    method: str
    polished: float
    feval: int
    geval: int

    def describe(self) -> str:
        """Return one line for a warning: the gap and the largest gradient."""
        if math.isinf(self.gap):
            gap = f"at least {self.decrease:.2g}" if self.decrease > 0 else "an unknown amount of"
        else:
            gap = f"about {max(self.gap, self.decrease):.2g}"
        g = float(np.abs(self.gradient).max()) if self.gradient.size else 0.0
        return (
            f"{gap} deviance units above the optimum (max |gradient| {g:.2g}; "
            f"{self.restarts} restart{'s' if self.restarts != 1 else ''})"
        )


def fit_theta(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    start: np.ndarray,
    lower: np.ndarray,
    control: Control,
    native: NativeMinimizer | None = None,
    moments: bool = False,
) -> OptSummary:
    """Minimize ``fun`` over θ >= lower and check the optimum (θ: the core's).

    The optimizer runs (`optimize_theta`), then `polish` checks its point
    and polishes it. A point that is not optimal is restarted from, at most
    ``control.max_restarts`` times; a run cut short by ``maxeval`` is only
    checked (the Hessian from the gradient's differences, and a line search
    for a proven decrease), not polished or restarted. Every evaluation of
    the check is in the returned ``fitlog``.
    """
    opt = optimize_theta(fun, start, lower, control, grad, native=native, moments=moments)
    if not control.check:
        return opt
    t0 = time.perf_counter()
    fitlog = opt.fitlog

    def logged(theta: np.ndarray) -> float:
        val = fun(theta)
        fitlog.append((theta.copy(), val))
        return val

    n0, geval = len(fitlog), opt.geval
    # no tolerance below what the objective resolves (its rounding: about 1e-12 relative)
    tol = control.gap_tol
    if math.isfinite(opt.fmin):
        tol = max(tol, 1e-11 * abs(opt.fmin))
    if opt.feval >= control.maxeval:  # the caller's budget: report, do not polish
        c = check_optimum(logged, grad, opt.final, lower, tol)
        check = ConvergenceCheck(
            gradient=c.gradient,
            gap=c.gap,
            decrease=c.decrease,
            tol=tol,
            optimal=max(c.gap, c.decrease) <= tol,
            restarts=0,
            method="differences",
            polished=0.0,
            feval=len(fitlog) - n0,
            geval=1 + int(c.free.sum()),
        )
        return replace(
            opt, check=check, feval=len(fitlog), elapsed=opt.elapsed + time.perf_counter() - t0
        )
    p = polish(logged, grad, opt.final, opt.fmin, lower, fitlog, tol, opt.gradient, opt.hessian)
    geval_check, restarts = p.geval, 0
    # restarts from the best point, with tight tolerances (the first run stopped too early)
    while p.gap > tol and restarts < control.max_restarts:
        restarts += 1
        tight = replace(control, ftol_rel=1e-12, ftol_abs=1e-10, xtol_rel=0.0, xtol_abs=1e-10)
        again = optimize_theta(fun, p.theta, lower, tight, grad, native=native)
        fitlog.extend(again.fitlog)
        geval += again.geval
        n0 += again.feval
        q = polish(
            logged,
            grad,
            again.final,
            again.fmin,
            lower,
            again.fitlog,
            tol,
            again.gradient,
            again.hessian,
        )
        geval_check += q.geval
        if q.fval <= p.fval:
            p = q
    check = ConvergenceCheck(
        gradient=p.gradient,
        gap=p.gap,
        decrease=0.0,
        tol=tol,
        optimal=p.gap <= tol,
        restarts=restarts,
        method=p.method,
        polished=opt.fmin - p.fval,
        feval=len(fitlog) - n0,
        geval=geval_check,
    )
    return replace(
        opt,
        final=p.theta,
        fmin=p.fval,
        feval=len(fitlog),
        geval=geval,
        check=check,
        elapsed=opt.elapsed + time.perf_counter() - t0,
    )


@dataclass
class _Polished:
    """One pass of the check: where it ended, and what it found."""

    theta: np.ndarray
    fval: float
    gradient: np.ndarray
    gap: float
    method: str
    feval: int = 0
    geval: int = 0


def polish(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    fval: float,
    lower: np.ndarray,
    fitlog: list,
    tol: float,
    gradient: np.ndarray | None = None,
    hessian: np.ndarray | None = None,
) -> _Polished:
    """Check θ (the core's) for optimality and take the Newton step the check suggests.

    ``gradient`` and ``hessian`` are the gradient at θ and a Hessian
    approximation when the optimizer has them (a gradient-based one); else the
    gradient is computed and the Hessian estimated from ``fitlog``.
    """
    theta = np.asarray(theta, dtype=np.float64)
    out = _Polished(theta, fval, np.zeros_like(theta), math.inf, "logged")

    def f(th: np.ndarray) -> float:
        out.feval += 1
        return fun(th)

    def gr(th: np.ndarray) -> np.ndarray:
        out.geval += 1
        return np.asarray(grad(th), dtype=np.float64)

    g = gr(theta) if gradient is None else gradient
    noise = 1e-12 * max(1.0, abs(fval))  # the objective's rounding, about
    if hessian is None:
        hess = _logged_hessian(theta, fval, g, fitlog)
    else:
        hess, out.method = hessian, "quasi-newton"
    for _ in range(4):
        out.gradient = g
        at_bound = out.theta <= lower
        if at_bound.any():
            gtol = 1e-10 * max(1.0, float(np.abs(g).max()))
            idx = np.flatnonzero(~(at_bound & (g > gtol)))
        else:  # the usual case: every coordinate inside its bounds
            idx = _all(theta.size)
        if idx.size == 0:  # every coordinate held at its bound by the gradient: a KKT point
            out.gap = 0.0
            return out
        step = None if hess is None else _newton(g, hess, idx, out.theta, lower)
        if step is None and out.method != "differences":
            out.method = "differences"
            hess = np.zeros((theta.size, theta.size))
            hess[np.ix_(idx, idx)] = fd_hessian(gr, out.theta, g, idx)
            step = _newton(g, hess, idx, out.theta, lower)
        if step is None:
            break  # no positive definite model, even from the gradient's differences
        d, pred = step
        if pred <= noise and at_bound.any():
            # below the objective's rounding, the coordinates at their bound stay there (a
            # diagonal θ at 0 has a zero gradient by symmetry: no step off it is resolved)
            inner = idx[~at_bound[idx]]
            held = (
                _newton(g, hess, inner, out.theta, lower)
                if inner.size and hess is not None
                else None
            )
            d, pred = held or (np.zeros_like(d), 0.0)
        if np.abs(d).max() <= 1e-10 * max(1.0, float(np.abs(out.theta).max())):
            out.gap = max(pred, 0.0)  # at the optimum to rounding: no step
            return out
        cand = out.theta + d
        fc = f(cand)
        dec = out.fval - fc
        if not math.isfinite(fc):
            break
        if pred <= noise and dec >= -10.0 * noise:
            # below what the objective can resolve: the exact gradient places θ, and the
            # next step from the gradient there (until the step is below 1e-10) pins it down
            out.theta, out.fval, out.gap = cand, fc, max(pred, 0.0)
            g_new = gr(cand)
            hess = _bfgs_update(hess, d, g_new - g) if hess is not None else None
            g = g_new
            continue
        if dec > 0:
            out.theta, out.fval = cand, fc
            g_new = gr(cand)
            hess = _bfgs_update(hess, d, g_new - g) if hess is not None else None
            g = g_new
        # the prediction held (a decrease within a factor of two of it): what is left is
        # at most the prediction's error (of first order in H's error, the gap itself of
        # second order); another step from the new gradient pins θ down
        out.gap = abs(pred - dec) if 0.5 * pred <= dec <= 2.0 * pred else math.inf
        if math.isinf(out.gap):
            if out.method == "differences":
                break
            hess = None  # the cheap model is wrong: differences of the gradient next
    if math.isfinite(out.gap):
        return out
    # no trustworthy quadratic model: the full check (negative curvature, line search)
    check = check_optimum(f, gr, out.theta, lower, tol)
    out.method = "differences"
    out.gradient, out.gap = check.gradient, check.gap
    if check.decrease > 0:
        out.theta, out.fval = check.better_theta, out.fval - check.decrease
        out.gap = max(out.gap, check.decrease)  # the point moved: not verified there
    return out


def _bfgs_update(hess: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return the BFGS update of a Hessian approximation for the step s and gradient change y."""
    sy = float(s @ y)
    hs = hess @ s
    shs = float(s @ hs)
    if sy <= 1e-12 * float(np.linalg.norm(s) * np.linalg.norm(y)) or shs <= 0:
        return hess
    return hess - np.outer(hs, hs) / shs + np.outer(y, y) / sy


def _newton(
    g: np.ndarray, hess: np.ndarray, idx: np.ndarray, theta: np.ndarray, lower: np.ndarray
) -> tuple[np.ndarray, float] | None:
    """Return the Newton step of the free coordinates (within the bounds) and its predicted gain.

    None when the Hessian of the free coordinates is not positive definite
    (its Cholesky factor fails, or is within 1e-5 of singular).
    """
    full = idx.size == theta.size
    hf = hess if full else hess[np.ix_(idx, idx)]
    try:
        c = np.linalg.cholesky(hf)
    except np.linalg.LinAlgError:
        return None
    diag = np.abs(c.diagonal())
    if not diag.min() > 1e-5 * diag.max():  # also False for NaN
        return None
    gf = g if full else g[idx]
    sf = np.linalg.solve(hf, gf)
    if full:
        d = -sf
    else:
        d = np.zeros_like(theta)
        d[idx] = -sf
    d = np.maximum(theta + d, lower) - theta  # a coordinate that would cross its bound stops there
    df = d if full else d[idx]
    return d, -float(gf @ df + 0.5 * df @ hf @ df)


@lru_cache(maxsize=32)
def _all(k: int) -> np.ndarray:
    """Return the indices 0, ..., k − 1 (every coordinate free)."""
    return np.arange(k)


@lru_cache(maxsize=32)
def _upper(k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the indices of the upper triangle of a k x k matrix, and ½ on its diagonal."""
    iu, ju = np.triu_indices(k)
    return iu, ju, np.where(iu == ju, 0.5, 1.0)


def _logged_hessian(
    theta: np.ndarray, fval: float, g: np.ndarray, fitlog: list
) -> np.ndarray | None:
    """Return the Hessian fitted to the last logged objective values, or None.

    Weighted least squares over the optimizer's last evaluations (BOBYQA's
    last trust region), each equation divided by |dᵢ|² (the curvature along
    dᵢ) and weighted by the inverse of its expected error: the cubic term
    (~|dᵢ|) and rounding in f (~ε|f|/|dᵢ|²). None when there are too few
    points or they do not determine H.
    """
    k = theta.size
    nh = k * (k + 1) // 2
    tail = fitlog[-(3 * nh + 4) :]
    if len(tail) < nh + 3:
        return None
    d = np.array([t for t, _ in tail]) - theta
    fv = np.fromiter((v for _, v in tail), np.float64, len(tail))
    r2 = np.einsum("ij,ij->i", d, d)
    ok = (r2 > 0) & np.isfinite(fv)
    if not ok.all():
        d, r2, fv = d[ok], r2[ok], fv[ok]
        if r2.size < nh + 2:
            return None
    iu, ju, half = _upper(k)
    r = np.sqrt(r2)
    noise = 1e-13 * max(1.0, abs(fval))
    w = 1.0 / (r2 * (r + noise / r2))  # the division by |d|² and the weight, together
    a = d[:, iu] * d[:, ju] * half * w[:, None]
    b = (fv - fval - d @ g) * w
    # the normal equations, refused when nearly singular (|A| within 1e-6 of rank deficient)
    ata = a.T @ a
    try:
        c = np.linalg.cholesky(ata)
    except np.linalg.LinAlgError:
        return None
    diag = np.abs(c.diagonal())
    if not diag.min() > 1e-6 * diag.max():
        return None
    h = np.linalg.solve(ata, a.T @ b)
    hess = np.empty((k, k))
    hess[iu, ju] = h
    hess[ju, iu] = h
    return hess
