"""The inner problems of a profile: the ML deviance minimized with one parameter held fixed.

A point of the model is (θ, σ), β being profiled out by the penalized least
squares solution. The profiled parameters are lme4's: each term's standard
deviations sd_j = σ|T_j| (T_j the j-th row of the term's template T, in the
model's units) and correlations cor_rc = T_r·T_c / (|T_r||T_c|), σ, and β.

Every point the inner minimization visits is a valid covariance, because its
free variables are the rows of the templates themselves: any real numbers.
A template is turned into θ by negating the columns whose diagonal entry is
negative, which leaves TTᵀ, and so the model, unchanged. The parameter held
fixed is built into the map from the free variables to (θ, σ), never imposed
by clipping:

- σ = s: θ free, the deviance at σ = s;
- sd_j = φ > 0: the other rows, the direction v of row j and log σ free, and
  T_j = φ/σ · v/|v|; sd_j = 0: row j is 0 and σ is profiled out;
- cor_rc = ρ (r > c): with w = T_c/|T_c| and the free row u in place of T_r,
  T_r = p + ρ/√(1 − ρ²)·|p|·w where p = u − (u·w)w (T_r = ρ|u|w at ρ = ±1);
  σ is profiled out;
- nothing held (kind "free"): θ free, σ profiled out. The profile of β_j is
  this problem for the model without the column x_j, fitted to y − x_j b.

Without a state (``state=None``: a model without σ, a GLMM) the problem is
only the map from free variables to θ, σ being 1: an sd held is then the
length of its template row, with no log σ among the free variables.

Each inner problem is minimized by BOBYQA (NLopt), restarted from where it
stopped until a restart gains nothing, from each of the starts the profile
gives, keeping the lowest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .exceptions import NotPositiveDefiniteError

if TYPE_CHECKING:
    from ._layout import ThetaLayout
    from ._state import ModelState

__all__ = ["InnerProblem", "Point", "minimize"]


@dataclass(frozen=True)
class Point:
    """A point of the model: the core's θ and σ."""

    theta: np.ndarray
    """θ on the core's scale (`ModelState.core_theta`)."""
    sigma: float


@dataclass(frozen=True)
class InnerProblem:
    """The ML deviance with one covariance parameter (sd, correlation or σ) held at a value.

    ``kind`` is ``"sd"``, ``"cor"``, ``"sigma"`` or ``"free"`` (nothing held,
    ``value`` unused); ``term``, ``row`` and ``col`` locate an sd (row = col)
    or a correlation (row > col) in the layout.
    """

    state: ModelState | None
    layout: ThetaLayout
    kind: str
    value: float = 0.0
    term: int = 0
    row: int = 0
    col: int = 0

    # -- templates <-> θ ---------------------------------------------------------------
    def _templates(self, theta: np.ndarray) -> list[np.ndarray]:
        return self.layout.templates(theta)

    def _theta(self, templates: list[np.ndarray]) -> np.ndarray:
        """Return θ of templates: columns with a negative diagonal negated (TTᵀ unchanged)."""
        out: list[float] = []
        for t, tm in zip(self.layout.terms, templates, strict=True):
            signs = np.where(np.diag(tm) < 0, -1.0, 1.0)
            tm = tm * signs[None, :]
            out.extend(tm[r, c] for r, c in t.entries)
        return np.array(out)

    def _row_scale(self) -> float:
        """Return the factor of the core's row over the model's (`ModelState.theta_scale`)."""
        scale = None if self.state is None else self.state.theta_scale
        if scale is None:
            return 1.0
        t = self.layout.terms[self.term]
        pos = self.layout.offsets[self.term] + t.entries.index((self.row, self.row))
        return float(scale[pos])

    # -- the map from free variables to a point ----------------------------------------
    def _free_rows(self) -> list[tuple[int, int]]:
        """Return (term, row) of every template row that is a free variable."""
        rows = [(t, r) for t, tl in enumerate(self.layout.terms) for r in range(tl.k)]
        if self.kind == "sd" and self.value == 0.0:
            rows.remove((self.term, self.row))
        return rows

    def x_from(self, point: Point) -> np.ndarray:
        """Return free variables whose point keeps as much of ``point`` as the constraint allows."""
        tms = self._templates(point.theta)
        tm = tms[self.term]
        if self.kind == "sd" and self.value > 0:
            # row j's direction (the diagonal's, for a zero row), and log σ
            j = self.row
            tm[j] = self._direction(tm[j], j, tm.shape[0] - 1)
        elif self.kind == "cor":
            r, c = self.row, self.col
            w = self._direction(tm[c], c, r)
            u = tm[r, : r + 1].copy()
            size = float(np.linalg.norm(u))
            p = u - (u @ w) * w
            e = np.zeros(r + 1)
            if np.linalg.norm(p) > 1e-12 * size:
                e = p / np.linalg.norm(p)
            else:  # T_r along w (a correlation of ±1): e_r is orthogonal to w (w is 0 past c)
                e[r] = 1.0
            rho = self.value
            # the free row whose image has T_r's length and the correlation ρ
            tm[r, : r + 1] = size * math.sqrt(1 - rho * rho) * e if abs(rho) < 1 else size * w
        x = [tms[t][r, : r + 1] for t, r in self._free_rows()]
        if self.kind == "sd" and self.value > 0 and self.state is not None:
            x.append(np.array([math.log(point.sigma)]))
        return np.concatenate([np.zeros(0), *x])

    @staticmethod
    def _direction(row: np.ndarray, c: int, r: int) -> np.ndarray:
        """Return the unit vector of template row c, padded to r + 1 entries (e_c if it is 0)."""
        w = np.zeros(r + 1)
        w[: c + 1] = row[: c + 1]
        norm = float(np.linalg.norm(w))
        if norm == 0.0:  # an undefined direction: a defined one, the row's diagonal
            w[c] = 1.0
            return w
        return w / norm

    def point(self, x: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Return the core's θ and σ (None: σ profiled out) of free variables ``x``."""
        tms = [np.zeros((t.k, t.k)) for t in self.layout.terms]
        pos = 0
        for t, r in self._free_rows():
            tms[t][r, : r + 1] = x[pos : pos + r + 1]
            pos += r + 1
        sigma: float | None = None
        tm = tms[self.term]
        if self.kind == "sigma":
            sigma = self.value
        elif self.kind == "sd" and self.value > 0:
            j = self.row
            sigma = 1.0 if self.state is None else math.exp(x[-1])
            length = self.value * self._row_scale() / sigma
            tm[j] = self._direction(tm[j], j, tm.shape[0] - 1) * length
        elif self.kind == "cor":
            r, c = self.row, self.col
            w = self._direction(tm[c], c, r)
            u = tm[r, : r + 1]
            rho = self.value
            if abs(rho) >= 1:
                tm[r, : r + 1] = rho * float(np.linalg.norm(u)) * w
            else:
                p = u - (u @ w) * w
                tm[r, : r + 1] = p + rho / math.sqrt(1 - rho * rho) * float(np.linalg.norm(p)) * w
        return self._theta(tms), sigma

    def deviance(self, x: np.ndarray) -> float:
        """Return the ML deviance at the point of ``x`` (β, and σ when free, profiled out)."""
        assert self.state is not None, "the ML deviance needs the model's state"
        theta, sigma = self.point(x)
        model_theta = self.state.model_theta(theta)
        if sigma is not None and not (0 < sigma < math.inf):
            return math.inf
        try:
            if sigma is None:
                return self.state.objective(model_theta, reml=False)
            return self.state.deviance(model_theta, sigma, reml=False)
        except NotPositiveDefiniteError:
            # θ so extreme (a row 1e8 times another) that the factor loses X's rank: a point
            # the minimizer may probe but never needs, as bad as can be
            return math.inf

    def full_point(self, x: np.ndarray) -> Point:
        """Return the point of ``x``, σ included (profiled, when the constraint leaves it free)."""
        assert self.state is not None, "σ needs the model's state"
        theta, sigma = self.point(x)
        if sigma is None:
            pwrss, _, _ = self.state.components(self.state.model_theta(theta))
            sigma = math.sqrt(pwrss / self.state.n)
        return Point(theta, sigma)


def minimize(
    f: Callable[[np.ndarray], float], starts: Sequence[np.ndarray], max_restarts: int = 8
) -> tuple[float, np.ndarray]:
    """Return the smallest minimum of ``f`` found by BOBYQA from each start, and its minimizer.

    Each run is restarted from where it stopped until the restart gains less
    than 1e-9 (BOBYQA's trust region can shrink before the minimum).
    """
    best_f, best_x = math.inf, None
    for x0 in starts:
        x0 = np.asarray(x0, dtype=np.float64)
        if x0.shape[0] == 0:
            value = f(x0)
            if value < best_f:
                best_f, best_x = value, x0
            continue
        fx, x = f(x0), x0
        for _ in range(max_restarts):
            f1, x1 = _bobyqa(f, x)
            gain = fx - f1
            if f1 < fx:
                fx, x = f1, x1
            if not gain > 1e-9:
                break
        if fx < best_f:
            best_f, best_x = fx, x
    if best_x is None:
        raise ValueError("no start")
    return best_f, best_x


def _bobyqa(f: Callable[[np.ndarray], float], x0: np.ndarray) -> tuple[float, np.ndarray]:
    import nlopt  # as optimize.py: imported when first needed

    best_f, best_x = [math.inf], [x0]

    def fun(x: np.ndarray, grad: np.ndarray) -> float:
        value = f(x)
        if not math.isfinite(value):
            value = 1e300
        if value < best_f[0]:
            best_f[0], best_x[0] = value, x.copy()
        return value

    opt = nlopt.opt(nlopt.LN_BOBYQA, x0.shape[0])
    opt.set_min_objective(fun)
    opt.set_ftol_abs(1e-10)
    opt.set_xtol_rel(1e-8)
    opt.set_maxeval(20_000)
    opt.set_initial_step(np.maximum(0.2 * np.abs(x0), 0.05))
    try:
        opt.optimize(x0)
    except nlopt.RoundoffLimited:  # stopped by rounding: keep the best point it saw
        pass
    return best_f[0], best_x[0]
