"""Is θ the optimum? The check every fit ends with.

At the θ where the optimizer stopped, the gradient g of the objective is
projected on the bounds (a coordinate at its lower bound whose gradient
points outward is held), the Hessian H of the free coordinates is taken by
forward differences of the gradient, and the distance to the optimum of the
local quadratic model,

    gap = ½ g_Fᵀ H_F⁻¹ g_F,

is the estimate of how far the objective is above its minimum, in deviance
units. A direction of no curvature with a gradient along it, or of negative
curvature, leaves the optimum unestimated (gap = ∞): not optimal. When the
point is not optimal, a short line search (along the Newton step, or down the
projected gradient) finds a lower objective: its decrease is a proven lower
bound on the gap.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from ._state import ModelState

__all__ = ["OptimalityCheck", "check_fit", "check_optimum", "fd_hessian"]


@dataclass(frozen=True)
class OptimalityCheck:
    """The record of the optimality check at the final θ.

    Attributes
    ----------
    gradient
        Gradient of the objective at θ.
    free
        Coordinates free to move: inside their bounds, or at a bound with the
        gradient pointing inward.
    hessian_eigenvalues
        Eigenvalues of the Hessian on the free coordinates.
    newton_step
        The step to the optimum of the local quadratic model (0 where held).
    gap
        Estimated objective above the optimum, in deviance units (∞ when the
        local model has no minimum).
    decrease
        The objective's decrease found by a line search from θ when it is not
        optimal (0 when optimal or none was found): a lower bound on the gap.
    better_theta
        Where that decrease was found (θ itself when none was).
    tol
        The largest gap accepted as optimal (`Control.gap_tol`).
    """

    gradient: np.ndarray
    free: np.ndarray
    hessian_eigenvalues: np.ndarray
    newton_step: np.ndarray
    gap: float
    decrease: float
    better_theta: np.ndarray
    tol: float

    @property
    def optimal(self) -> bool:
        """Whether the estimated gap is within the tolerance."""
        return self.gap <= self.tol

    def describe(self) -> str:
        """Return one line for a warning or a log: the gap and the largest gradient."""
        g = np.abs(self.gradient[self.free]) if self.free.any() else np.zeros(1)
        if math.isinf(self.gap):
            gap = f"at least {self.decrease:.2g}" if self.decrease > 0 else "an unknown amount"
        else:
            gap = f"about {max(self.gap, self.decrease):.2g}"
        return f"{gap} deviance units above the optimum (max |projected gradient| {g.max():.2g})"


def check_fit(
    state: ModelState, reml: bool, theta: np.ndarray, lower: np.ndarray, tol: float = 1e-5
) -> OptimalityCheck:
    """Check a fit's θ for optimality (`LinearMixedModelResult.check_optimum`).

    From the exact gradient at θ, projected on the bounds, and the Hessian of
    the free coordinates (forward differences of the gradient): the estimated
    gap to the optimum in deviance units, and, when it exceeds ``tol``, the
    decrease a line search finds (a proven lower bound, at ``better_theta``,
    in the model's θ). The gradient and the Hessian are with respect to the
    core's θ (`ModelState.core_theta`: θ itself unless a random-effect column
    was rescaled).
    """
    check = check_optimum(
        lambda th: state.core_objective(th, reml),
        lambda th: state.core_gradient(th, reml),
        state.core_theta(theta),
        lower,
        tol,
    )
    return replace(check, better_theta=state.model_theta(check.better_theta))


def check_optimum(
    fun: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray],
    theta: np.ndarray,
    lower: np.ndarray,
    tol: float,
) -> OptimalityCheck:
    """Check θ for optimality from the gradient and the Hessian of the free coordinates."""
    theta = np.asarray(theta, dtype=np.float64)
    lower = np.asarray(lower, dtype=np.float64)
    g = np.asarray(grad(theta), dtype=np.float64)
    # held: at its bound with the gradient pointing outward. A zero gradient there (a diagonal
    # θ at 0 is a stationary point by symmetry) does not hold it: the curvature decides.
    gtol = 1e-10 * max(1.0, float(np.abs(g).max()) if g.size else 1.0)
    held = (theta <= lower) & (g > gtol)
    free = ~held
    idx = np.flatnonzero(free)
    step = np.zeros_like(theta)
    if idx.size == 0:
        return OptimalityCheck(g, free, np.zeros(0), step, 0.0, 0.0, theta, tol)
    gf = g[idx]
    hess = fd_hessian(grad, theta, g, idx)
    w, v = np.linalg.eigh(hess)
    gc = v.T @ gf
    scale = max(1.0, float(np.abs(w).max()))
    flat = w <= 1e-9 * scale
    if w[0] < -1e-7 * scale or np.any(np.abs(gc[flat]) > 1e-7 * max(1.0, float(np.abs(gf).max()))):
        gap = math.inf  # negative curvature (a saddle, or a maximum along the bound), or no model
    else:
        gap = float(0.5 * np.sum(gc[~flat] ** 2 / w[~flat]))
    newton = np.zeros_like(gc)
    newton[~flat] = -gc[~flat] / w[~flat]
    step[idx] = v @ newton
    decrease, better = 0.0, theta
    if gap > tol:
        directions = []
        if math.isinf(gap):
            directions.append(_scaled(np.where(free, -g, 0.0), theta))
            if w[0] < 0:  # down the most negative curvature, inward at the bounds
                d = np.zeros_like(theta)
                d[idx] = v[:, 0]
                at_bound = (theta <= lower) & free
                if d[at_bound].sum() < 0 or d @ g > 0:
                    d = -d
                directions.append(_scaled(d, theta))
        else:
            directions.append(step)
        for d in directions:
            dec, cand = _line_search(fun, theta, lower, d)
            if dec > decrease:
                decrease, better = dec, cand
    return OptimalityCheck(g, free, w, step, gap, decrease, better, tol)


def fd_hessian(
    grad: Callable[[np.ndarray], np.ndarray], theta: np.ndarray, g: np.ndarray, idx: np.ndarray
) -> np.ndarray:
    """Return the Hessian of the coordinates ``idx`` by forward differences of the gradient.

    ``g`` is the gradient at θ; one gradient per coordinate, each stepped
    inward (up: a coordinate at its lower bound stays feasible).
    """
    hcols = []
    for j in idx:
        h = 1e-4 * max(1.0, abs(theta[j]))
        tp = theta.copy()
        tp[j] += h
        hcols.append((np.asarray(grad(tp), dtype=np.float64)[idx] - g[idx]) / h)
    hess = np.array(hcols).T
    return 0.5 * (hess + hess.T)


def _scaled(d: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Return ``d`` scaled to 10% of the length of θ (at least 0.1); zero stays zero."""
    norm = float(np.linalg.norm(d))
    return d if norm == 0.0 else d * (0.1 * max(1.0, float(np.linalg.norm(theta))) / norm)


def _line_search(
    fun: Callable[[np.ndarray], float],
    theta: np.ndarray,
    lower: np.ndarray,
    d: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Return the largest decrease of the objective found along ``d``, and where."""
    if not np.any(d):
        return 0.0, theta
    f0 = fun(theta)
    best, best_theta = 0.0, theta
    for t in (1.0, 0.25, 1 / 16, 1 / 64, 1 / 256, 1 / 1024):
        cand = np.maximum(theta + t * d, lower)
        val = fun(cand)
        if np.isfinite(val) and f0 - val > best:
            best, best_theta = f0 - val, cand
    return best, best_theta
