"""The optimizer loop over θ: settings (`Control`) and record (`OptSummary`).

The profiled objective is minimized over θ subject to lower bounds (0 on the
diagonal of each template, none elsewhere) by one optimizer: the core's
projected BFGS on the exact gradient (``"bfgs"``: the whole loop in Rust; the
default ``"auto"`` for a linear model's objective), NLopt's BOBYQA, the
derivative-free method lme4 (``nloptwrap``) and MixedModels.jl use (``"auto"``
for every other objective, and lme4's path when asked for), scipy's COBYQA, or
scipy's L-BFGS-B with the exact gradient. There is no silent fallback from one
optimizer to another.

Every fit then ends with the optimality check of `_converge` (`fit_theta`):
Newton steps from the exact gradient polish θ, a point that is not the
optimum is restarted from, and the check is recorded in `OptSummary.check`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .exceptions import ControlError, MixedModelsError, ThetaError

if TYPE_CHECKING:
    from ._converge import ConvergenceCheck

__all__ = ["Control", "OptSummary", "optimize_theta"]

_NLOPT_RESULTS = {
    1: "SUCCESS",
    2: "STOPVAL_REACHED",
    3: "FTOL_REACHED",
    4: "XTOL_REACHED",
    5: "MAXEVAL_REACHED",
    6: "MAXTIME_REACHED",
    -1: "FAILURE",
    -2: "INVALID_ARGS",
    -3: "OUT_OF_MEMORY",
    -4: "ROUNDOFF_LIMITED",
    -5: "FORCED_STOP",
}


@dataclass(frozen=True)
class Control:
    """Every setting of the optimization (lme4's ``lmerControl``).

    Parameters
    ----------
    optimizer
        ``"auto"`` (default: ``"bfgs"`` for a linear mixed model's profiled
        objective, whose exact gradient the core computes: on every
        reference case it reaches an objective as low as BOBYQA's with a
        third to a quarter of the evaluations; ``"bobyqa"`` for every other
        objective, GLMMs and profiles: the choice depends on the objective
        only, never on how a run went), ``"bobyqa"`` (NLopt's LN_BOBYQA, as
        lme4's default ``nloptwrap`` and MixedModels.jl),
        ``"bfgs"`` (the core's projected BFGS on the exact gradient, no call
        into Python per evaluation; from the default start it tries the
        method of moments' θ (MIVQUE0) next; it stops when the predicted
        decrease is below ``ftol_abs + ftol_rel |f|`` and its step below
        ``xtol_abs``, or ends with gradient steps to a step below 1e-10),
        ``"cobyqa"`` (scipy's COBYQA) or
        ``"lbfgsb"`` (scipy's L-BFGS-B on the exact gradient: each
        evaluation is one gradient, which brings the objective with it).
    ftol_rel, ftol_abs, xtol_rel, xtol_abs
        Stopping tolerances on the objective and on θ (NLopt's meaning;
        ``"bfgs"`` reads the two on the objective as a bound on the decrease
        its quadratic model predicts, and ``xtol_abs`` on its step). The defaults are lme4's
        (``nloptwrap``: NLopt's BOBYQA with ``xtol_rel = 1e-4``,
        ``xtol_abs = 1e-8``, ``ftol_abs = 1e-8``), which with
        ``optimizer="bobyqa"`` reproduce lme4's path: the same evaluations and
        the same optimum on sleepstudy. `Control.precise` tightens them
        (MixedModels.jl's).
    initial_step
        Initial step for each θ element; None (default) is NLopt's default,
        as lme4 uses it: 0.75 for the diagonal elements starting at 1, 1 for
        the off-diagonal ones starting at 0. scipy's COBYQA uses it (or 0.75)
        as its initial trust-region radius, ``"bfgs"`` as the length (largest
        element) of its first step down the gradient.
    maxeval
        Maximum number of objective evaluations.
    boundary_tol
        θ elements bounded below by zero and smaller than this are tried at
        zero after the optimizer stops (MixedModels.jl's ``xtol_zero_abs``).
    boundary_ftol
        ...and kept at zero when the objective rises by at most this much
        (MixedModels.jl's ``ftol_zero_abs``).
    singular_tol
        A fit is flagged singular when a θ element with lower bound zero is
        below this (lme4's ``isSingular(tol = 1e-4)``).
    check
        Check the optimum after the optimizer stops (default True): Newton
        steps from the exact gradient polish θ, a point that is not optimal
        is restarted from, and a fit that still is not optimal warns
        (`ConvergenceWarning`, with the gap). Recorded in `OptSummary.check`.
    gap_tol
        The largest estimated gap to the optimum, in deviance units, accepted
        as optimal by the check (never less than 1e-11 of the objective: its
        rounding is about 1e-12 relative).
    max_restarts
        How many times the optimizer is restarted when the check finds the
        point is not optimal (not when ``maxeval`` cut the run short: the
        check then only reports).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"),
    ...               control=mm.Control.precise())
    >>> fit.optsum.optimizer, fit.optsum.control.xtol_abs
    ('projected BFGS (core)', 1e-10)
    """

    optimizer: str = "auto"
    ftol_rel: float = 0.0
    ftol_abs: float = 1e-8
    xtol_rel: float = 1e-4
    xtol_abs: float = 1e-8
    initial_step: float | None = None
    maxeval: int = 100_000
    boundary_tol: float = 1e-3
    boundary_ftol: float = 1e-5
    singular_tol: float = 1e-4
    check: bool = True
    gap_tol: float = 1e-6
    max_restarts: int = 2

    @classmethod
    def precise(cls, **kwargs: Any) -> Control:
        """Return settings with tighter tolerances (MixedModels.jl's, with ftol_abs 1e-10).

        The optimum is pinned down further than lme4 does, at the cost of
        more evaluations (with BOBYQA: 62 instead of 43 on sleepstudy, each
        plus the check's).
        """
        settings: dict[str, Any] = dict(
            ftol_rel=1e-12, ftol_abs=1e-10, xtol_rel=0.0, xtol_abs=1e-10, initial_step=0.75
        )
        settings.update(kwargs)
        return cls(**settings)

    def __post_init__(self) -> None:
        """Check the settings: nothing invalid may reach the optimizer (NLopt aborts on NaN)."""
        if self.optimizer not in _OPTIMIZERS:
            raise ControlError(
                f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(_OPTIMIZERS)}"
            )
        for name, least in (("maxeval", 1), ("max_restarts", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | np.integer):
                raise ControlError(f"{name} must be a whole number, not {value!r}")
            if value < least:
                raise ControlError(f"{name} must be at least {least}, not {value}")
        if not isinstance(self.check, bool | np.bool_):
            raise ControlError(f"check must be True or False, not {self.check!r}")
        for name in (
            "ftol_rel",
            "ftol_abs",
            "xtol_rel",
            "xtol_abs",
            "boundary_tol",
            "boundary_ftol",
            "singular_tol",
            "gap_tol",
        ):
            value = getattr(self, name)
            if not _is_real(value) or not math.isfinite(value) or value < 0:
                raise ControlError(f"{name} must be a finite number >= 0, not {value!r}")
        if not any(getattr(self, n) > 0 for n in ("ftol_rel", "ftol_abs", "xtol_rel", "xtol_abs")):
            raise ControlError(
                "at least one of ftol_rel, ftol_abs, xtol_rel and xtol_abs must be positive "
                "(with all four zero the optimizer would stop only at maxeval)"
            )
        step = self.initial_step
        if step is not None and (not _is_real(step) or not math.isfinite(step) or step <= 0):
            raise ControlError(f"initial_step must be a finite number > 0 or None, not {step!r}")


_OPTIMIZERS = {
    "bobyqa": "NLopt LN_BOBYQA",
    "bfgs": "projected BFGS (core)",
    "cobyqa": "scipy COBYQA",
    "lbfgsb": "scipy L-BFGS-B",
    "auto": "",
}

NativeMinimizer = Callable[[np.ndarray, float, float, float, int, float, bool], tuple]
"""The core's minimizer (`ModelState.minimizer`): (start, ftol_abs, ftol_rel,
xtol_abs, maxeval, initial step, try the method of moments' θ after the start)
-> (θ, f, gradient, Hessian, feval, geval, θs evaluated, their objectives, why
it stopped)."""


def _is_real(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_start(
    x0: np.ndarray, lower: np.ndarray, upper: np.ndarray | None = None, what: str = "start"
) -> np.ndarray:
    """Return ``x0`` as floats after checking it is finite and within the bounds.

    Every starting point handed to an optimizer passes through here: NLopt given a NaN start
    corrupts the heap and aborts the interpreter, and a start outside the bounds is refused
    with an unhelpful message.
    """
    x = np.asarray(x0, dtype=np.float64).ravel()
    if x.shape != np.shape(lower):
        raise ThetaError(f"{what} has {x.size} elements; expected {np.size(lower)}")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raise ThetaError(f"{what}[{bad[0]}] is not finite ({x[bad[0]]}); {what} must be finite")
    below = np.flatnonzero(x < lower)
    if below.size:
        i = below[0]
        raise ThetaError(f"{what}[{i}] = {x[i]:g} is below its lower bound {lower[i]:g}")
    if upper is not None:
        above = np.flatnonzero(x > upper)
        if above.size:
            i = above[0]
            raise ThetaError(f"{what}[{i}] = {x[i]:g} is above its upper bound {upper[i]:g}")
    return x


@dataclass(frozen=True)
class OptSummary:
    """The record of one optimization run (MixedModels.jl's ``OptSummary``).

    Attributes
    ----------
    initial
        Starting θ.
    lower
        Lower bounds of θ.
    final
        θ at the optimum (after any snapping to the boundary, and the
        optimality check's Newton steps and restarts).
    fmin
        Objective at ``final``.
    feval
        Number of objective evaluations: the optimizer's, the boundary
        check's and the optimality check's (``check.feval`` of them), and
        any restart's.
    optimizer
        Name of the optimizer.
    returnvalue
        The optimizer's return code, as a name (NLopt's, or scipy's message).
    control
        The `Control` used.
    elapsed
        Seconds spent in the optimization loop.
    fitlog
        Every θ evaluated and its objective, in order: a list of (θ, objective)
        (the objective at the θ of a gradient evaluation is not listed unless
        it was asked for too).
    snapped
        Indices of θ elements set to zero after the optimizer stopped.
    converged
        False when the optimizer reported a failure or ran out of evaluations.
    geval
        Number of gradient evaluations by the optimizer (``"lbfgsb"``; the
        check's are in ``check.geval``).
    check
        The optimality check that ended the fit (`ConvergenceCheck`: the
        gradient, the gap in deviance units, the restarts, the verdict), or
        None when ``Control(check=False)``.
    gradient, hessian
        The gradient-based optimizer's last gradient at ``final`` and its
        quasi-Newton Hessian approximation (None for the others).
    """

    initial: np.ndarray
    lower: np.ndarray
    final: np.ndarray
    fmin: float
    feval: int
    optimizer: str
    returnvalue: str
    control: Control
    elapsed: float
    fitlog: list = field(repr=False)
    snapped: tuple[int, ...] = ()
    converged: bool = True
    geval: int = 0
    check: ConvergenceCheck | None = None
    gradient: np.ndarray | None = field(default=None, repr=False)
    hessian: np.ndarray | None = field(default=None, repr=False)


def optimize_theta(
    fun: Callable[[np.ndarray], float],
    start: np.ndarray,
    lower: np.ndarray,
    control: Control,
    grad: Callable[[np.ndarray], np.ndarray] | None = None,
    initial_step: np.ndarray | None = None,
    native: NativeMinimizer | None = None,
    moments: bool = False,
) -> OptSummary:
    """Minimize ``fun`` over θ >= lower, starting at ``start`` (one run, no check).

    ``grad`` (the gradient of ``fun``) is needed by ``"lbfgsb"`` only, and
    ``native`` (the core's minimizer of the same objective) by ``"bfgs"``,
    which with ``moments`` tries the method of moments' θ right after the
    start and continues from it when its objective is lower.
    ``initial_step``, one per coordinate, overrides ``control.initial_step``
    (a GLMM's second stage steps β by its standard errors).
    """
    lower = np.asarray(lower, dtype=np.float64)
    start = check_start(start, lower)
    fitlog: list = []
    t0 = time.perf_counter()
    error: list[BaseException] = []

    def f(theta: np.ndarray) -> float:
        val = fun(theta)
        fitlog.append((theta.copy(), val))
        return val

    gradient = hessian = None
    geval = 0
    method = control.optimizer
    if method == "auto":
        method = "bfgs" if native is not None else "bobyqa"
    if method == "bobyqa":
        import nlopt

        opt = nlopt.opt(nlopt.LN_BOBYQA, len(start))
        opt.set_lower_bounds(lower)
        opt.set_ftol_rel(control.ftol_rel)
        opt.set_ftol_abs(control.ftol_abs)
        opt.set_xtol_rel(control.xtol_rel)
        opt.set_xtol_abs(control.xtol_abs)
        opt.set_maxeval(control.maxeval)
        if initial_step is not None:
            opt.set_initial_step(np.asarray(initial_step, dtype=np.float64))
        elif control.initial_step is not None:
            opt.set_initial_step(control.initial_step)

        log = fitlog.append

        def nf(x: np.ndarray, grad: np.ndarray) -> float:  # f, inlined: one call per evaluation
            try:
                val = fun(x)
            except BaseException as e:  # re-raised below with its own type
                error.append(e)
                raise nlopt.ForcedStop from e
            log((x.copy(), val))
            return val

        opt.set_min_objective(nf)
        try:
            xmin = opt.optimize(start)
        except nlopt.ForcedStop:
            raise error[0] from None
        except (nlopt.RoundoffLimited, RuntimeError) as e:
            if error:
                raise error[0] from None
            if not fitlog:
                raise MixedModelsError(f"the optimizer failed: {e}") from e
            xmin = min(fitlog, key=lambda t: t[1])[0]
        code = opt.last_optimize_result()
        ret = _NLOPT_RESULTS.get(code, str(code))
        converged = code > 0 and code != 5
    elif method == "bfgs":
        if native is None:
            raise MixedModelsError("the 'bfgs' optimizer needs the model's core")
        step = control.initial_step or 0.75
        run = native(
            start,
            control.ftol_abs,
            control.ftol_rel,
            control.xtol_abs,
            control.maxeval,
            step,
            moments,
        )
        xmin, _, gradient, hessian, _, geval, thetas, values, ret = run
        fitlog.extend(zip(thetas, values.tolist(), strict=True))
        converged = ret != "MAXEVAL_REACHED"
    elif method == "lbfgsb":
        xmin, ret, converged, gradient, hessian, geval = _lbfgsb(f, grad, start, lower, control)
    else:
        from scipy.optimize import Bounds, minimize

        radius = (
            float(np.min(initial_step)) if initial_step is not None else control.initial_step
        ) or 0.75
        res = minimize(
            f,
            start,
            method="COBYQA",
            bounds=Bounds(lower, np.full_like(lower, np.inf)),
            options={
                "maxfev": control.maxeval,
                "initial_tr_radius": radius,
                "final_tr_radius": min(max(control.xtol_abs, 1e-10), radius),
            },
        )
        xmin, ret, converged = res.x, str(res.message), bool(res.success)

    xmin = np.maximum(np.asarray(xmin, dtype=np.float64), lower)
    fmin = fun_value(fitlog, xmin)
    if fmin is None:
        fmin = f(xmin)
    best_theta, best_val = min(fitlog, key=lambda t: t[1])
    # a logged point lower by more than the objective's rounding (a point lower by rounding
    # only is no better: the gradient-based optimizer's last steps are placed by the gradient)
    if best_val < fmin - 1e-11 * max(1.0, abs(fmin)):
        xmin, fmin, gradient = best_theta.copy(), best_val, None

    # Try small θ elements bounded by zero at zero (MixedModels.jl's check).
    snapped: tuple[int, ...] = ()
    cand = xmin.copy()
    small = (lower == 0) & (cand > 0) & (cand < control.boundary_tol)
    if small.any():
        cand[small] = 0.0
        zval = f(cand)
        if zval <= fmin + control.boundary_ftol:
            xmin, fmin, gradient = cand, zval, None
            snapped = tuple(int(i) for i in np.flatnonzero(small))
    return OptSummary(
        initial=start,
        lower=lower,
        final=xmin,
        fmin=float(fmin),
        feval=len(fitlog),
        optimizer=_OPTIMIZERS[method],
        returnvalue=ret,
        control=control,
        elapsed=time.perf_counter() - t0,
        fitlog=fitlog,
        snapped=snapped,
        converged=converged,
        geval=geval,
        gradient=gradient,
        hessian=None if gradient is None else hessian,
    )


def _lbfgsb(
    f: Callable[[np.ndarray], float],
    grad: Callable[[np.ndarray], np.ndarray] | None,
    start: np.ndarray,
    lower: np.ndarray,
    control: Control,
) -> tuple[np.ndarray, str, bool, np.ndarray | None, np.ndarray | None, int]:
    """Run scipy's L-BFGS-B on the exact gradient.

    Returns θ, the message, success, the last gradient and the Hessian
    approximation (the inverse of L-BFGS-B's), and the gradient count. The
    gradient is evaluated first: the objective at the same θ is then free
    (the core keeps its factor for the last θ).
    """
    from scipy.optimize import Bounds, LbfgsInvHessProduct, minimize

    if grad is None:
        raise MixedModelsError("the 'lbfgsb' optimizer needs the gradient")
    count = [0]
    last: dict[str, np.ndarray] = {}

    def fg(theta: np.ndarray) -> tuple[float, np.ndarray]:
        g = np.asarray(grad(theta), dtype=np.float64)
        count[0] += 1
        last["theta"], last["g"] = theta.copy(), g
        return f(theta), g

    res = minimize(
        fg,
        start,
        jac=True,
        method="L-BFGS-B",
        bounds=Bounds(lower, np.full_like(lower, np.inf)),
        options={"maxfun": control.maxeval, "ftol": 1e-12, "gtol": 1e-6, "maxls": 30},
    )
    x = np.asarray(res.x, dtype=np.float64)
    gradient = last["g"] if "theta" in last and np.array_equal(last["theta"], x) else None
    hessian = None
    hinv = getattr(res, "hess_inv", None)
    if isinstance(hinv, LbfgsInvHessProduct):
        try:
            hessian = np.linalg.inv(np.asarray(hinv.todense()))
        except np.linalg.LinAlgError:
            pass
    return x, str(res.message), bool(res.success), gradient, hessian, count[0]


def fun_value(fitlog: list, theta: np.ndarray) -> float | None:
    """Return the logged objective at exactly ``theta``, if it was evaluated."""
    for th, v in reversed(fitlog):
        if np.array_equal(th, theta):
            return v
    return None
