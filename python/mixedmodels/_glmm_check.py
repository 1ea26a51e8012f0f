"""Is a GLMM fit at the optimum? The check that ends `GeneralizedLinearMixedModel.fit`.

The objective of a GLMM has no exact gradient: the check works from a
gradient g and a Hessian H of the objective in (θ, β) (θ alone for
nAGQ = 0) at the final point, both by finite differences. It estimates
how far the objective is above the optimum of the local quadratic model,

    gap = ½ g_Fᵀ H_F⁻¹ g_F    (deviance units),

over the free coordinates F: all but a θ element at its bound (0) whose
gradient points outward. ∞ when H_F is not positive definite (no local
minimum in sight). lme4's check (``check.conv.grad``: the largest element
of H⁻¹ᐟ²g below 0.002) bounds the same quantity, ‖H⁻¹ᐟ²g‖²/2.

`gap_check` takes g and H as given, whatever computed them; `checked` gives
it the fit's Hessian (the one β's covariance comes from, lme4's ``deriv12``)
and the exact gradient where the model has one (the optimizer's, when it
ended at the fit's point), else a central-difference gradient (one-sided,
inward, at a bound), records
the check in ``fit.optsum.check`` and warns (`ConvergenceWarning`, with
the gap) when the gap exceeds ``Control.gap_tol``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ._converge import ConvergenceCheck
from .exceptions import ConvergenceWarning

if TYPE_CHECKING:
    from .glmm_results import GeneralizedLinearMixedModelResult

__all__ = ["checked", "fd_gradient", "fd_hessian", "gap_check"]

_DELTA = 1e-4
"""Finite-difference step (lme4's ``deriv12`` and the fit's Hessian use it)."""


def fd_gradient(
    fun: Callable[[np.ndarray], float], x: np.ndarray, lower: np.ndarray, fx: float
) -> np.ndarray:
    """Return the gradient of ``fun`` at x by central differences (forward at a bound)."""
    g = np.empty_like(x)
    for i in range(x.shape[0]):
        xa = x.copy()
        xa[i] += _DELTA
        if x[i] - _DELTA < lower[i]:
            g[i] = (fun(xa) - fx) / _DELTA
            continue
        xs = x.copy()
        xs[i] -= _DELTA
        g[i] = (fun(xa) - fun(xs)) / (2 * _DELTA)
    return g


def fd_hessian(fun: Callable[[np.ndarray], float], x: np.ndarray, fx: float) -> np.ndarray:
    """Return the Hessian of ``fun`` at x by central differences (lme4's ``deriv12``)."""
    m = x.shape[0]
    h = np.empty((m, m))
    for i in range(m):
        ei = np.zeros(m)
        ei[i] = _DELTA
        h[i, i] = (fun(x + ei) - 2 * fx + fun(x - ei)) / _DELTA**2
        for j in range(i):
            ej = np.zeros(m)
            ej[j] = _DELTA
            h[i, j] = h[j, i] = (
                fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)
            ) / (4 * _DELTA**2)
    return h


def gap_check(
    gradient: np.ndarray, hessian: np.ndarray, x: np.ndarray, lower: np.ndarray
) -> tuple[float, np.ndarray]:
    """Return the estimated gap to the optimum and the free coordinates.

    A coordinate at its lower bound whose gradient points outward (g > 0)
    is held; the gap is ½ g_Fᵀ H_F⁻¹ g_F over the others, ∞ when H_F is not
    positive definite.
    """
    g = np.asarray(gradient, dtype=np.float64)
    gtol = 1e-10 * max(1.0, float(np.abs(g).max()) if g.size else 1.0)
    free = ~((x <= lower) & (g > gtol))
    idx = np.flatnonzero(free)
    if idx.size == 0:
        return 0.0, free
    hf = np.asarray(hessian, dtype=np.float64)[np.ix_(idx, idx)]
    hf = 0.5 * (hf + hf.T)
    if not np.isfinite(hf).all() or not np.isfinite(g).all():
        return math.inf, free
    w = np.linalg.eigvalsh(hf)
    if not w[0] > 1e-10 * max(1.0, float(np.abs(w).max())):
        return math.inf, free
    gf = g[idx]
    return float(0.5 * gf @ np.linalg.solve(hf, gf)), free


def checked(fit: GeneralizedLinearMixedModelResult) -> GeneralizedLinearMixedModelResult:
    """Return the fit with its optimality check recorded in ``optsum.check``.

    Warns (`ConvergenceWarning`) when the estimated gap exceeds the
    tolerance (`Control.gap_tol`, at least 1e-11 of the objective). Does
    nothing under ``Control(check=False)``.
    """
    control = fit.optsum.control
    if not control.check:
        return fit
    model = fit.model
    before = model.state.evaluations
    nt = len(fit.theta)
    if fit.nagq == 0:  # the objective of the fast fit is in θ alone (β inside PIRLS)
        x, lower, fx = fit.theta, fit.design.lower, fit.optsum.fmin

        def f(v: np.ndarray) -> float:
            return model.objective_nagq0(v)

        hessian = None
    else:
        x = np.concatenate([fit.theta, fit.beta])
        lower = np.concatenate([fit.design.lower, np.full(len(fit.beta), -np.inf)])
        fx, hessian = fit.objective, fit.hessian

        def f(v: np.ndarray) -> float:
            return model.objective(v[:nt], v[nt:])

    known = fit.optsum.gradient
    if model.has_gradient and known is not None and np.array_equal(fit.optsum.final, x):
        g = known  # the exact gradient at x, as the optimizer computed it there
        method = "exact gradient"
    elif model.has_gradient:  # the exact gradient (canonical links, `_glmm_fit`)
        g = (model.value_gradient_nagq0(x) if fit.nagq == 0 else model.value_gradient(x))[1]
        method = "exact gradient"
    else:
        g = fd_gradient(f, x, lower, fx)
        method = "differences"
    if hessian is None:
        hessian = fd_hessian(f, x, fx)
    gap, _ = gap_check(g, hessian, x, lower)
    model.state.laplace(fit.theta, fit.beta)  # leave the workspace at the optimum
    feval = model.state.evaluations - before
    tol = max(control.gap_tol, 1e-11 * abs(fx))
    check = ConvergenceCheck(
        gradient=g,
        gap=gap,
        decrease=0.0,
        tol=tol,
        optimal=gap <= tol,
        restarts=0,
        method=method,
        polished=0.0,
        feval=feval,
        geval=0,
    )
    if not check.optimal:
        o = fit.optsum
        stopped = (
            "the GLMM fit may not be at the optimum"
            if o.converged
            else f"the optimizer did not converge ({o.returnvalue} after {o.feval} evaluations)"
        )
        warnings.warn(
            f"{stopped}: {check.describe()}",
            ConvergenceWarning,
            stacklevel=4,
        )
    return replace(
        fit, optsum=replace(fit.optsum, check=check), evaluations=fit.evaluations + feval
    )
