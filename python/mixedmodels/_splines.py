"""R's splines package: ``bs()`` and ``ns()`` bases, with the knots kept for new data.

``bs(x, df, knots, degree = 3, intercept = FALSE, Boundary.knots = range(x))``
and ``ns(x, df, knots, intercept = FALSE, Boundary.knots = range(x))`` build
the same columns as R's (``splineDesign`` on the augmented knots; for ``ns``
the basis projected on the null space of the second derivatives at the
boundary knots, through the same Householder QR as R's ``qr``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import BSpline

from .exceptions import DataError

__all__ = ["SplineBasis", "spline_basis"]


@dataclass(frozen=True)
class SplineBasis:
    """A fitted ``bs`` or ``ns`` basis: what new data need to get the same columns."""

    kind: str
    """``"bs"`` or ``"ns"``."""
    knots: tuple[float, ...]
    """Interior knots."""
    boundary: tuple[float, float]
    """Boundary knots."""
    degree: int
    """Degree (3 for ``ns``)."""
    intercept: bool
    """Whether the first basis function is kept."""

    def columns(self, x: np.ndarray, label: str) -> np.ndarray:
        """Return the basis at ``x`` (rows with missing ``x`` are missing).

        Beyond the boundary knots the basis is extended as R extends it: by
        its Taylor polynomial at the boundary knot, linear for ``ns``, of
        the spline's degree for ``bs``.
        """
        lo, hi = self.boundary
        order = self.degree + 1
        t = np.sort(np.r_[[lo] * order, self.knots, [hi] * order])
        out = np.full((len(x), len(t) - order), np.nan)
        ok = ~np.isnan(x)
        inside = ok & (x >= lo) & (x <= hi)
        out[inside] = _design(t, x[inside], order)
        n_derivs = 2 if self.kind == "ns" else order
        for pivot, side in ((lo, ok & (x < lo)), (hi, ok & (x > hi))):
            if side.any():
                d = x[side] - pivot
                taylor = np.column_stack([d**j / math.factorial(j) for j in range(n_derivs)])
                derivs = np.vstack(
                    [_design(t, np.array([pivot]), order, deriv=j) for j in range(n_derivs)]
                )
                out[side] = taylor @ derivs
        if self.kind == "ns":
            const = _design(t, np.array([lo, hi]), order, deriv=2)
            if not self.intercept:
                const, out = const[:, 1:], out[:, 1:]
            q, _ = np.linalg.qr(const.T, mode="complete")
            return out @ q[:, 2:]
        return out if self.intercept else out[:, 1:]


def _design(t: np.ndarray, x: np.ndarray, order: int, deriv: int = 0) -> np.ndarray:
    """R's ``splineDesign(t, x, order, derivs)``: one column per B-spline."""
    nb = len(t) - order
    spline = BSpline(t, np.eye(nb), order - 1, extrapolate=False)
    vals = spline(x, nu=deriv) if deriv else spline(x)
    # at the right boundary knot scipy's half-open intervals give NaN; R includes it
    right = x == t[-1]
    if right.any():
        vals[right] = BSpline(t, np.eye(nb), order - 1, extrapolate=True)(x[right], nu=deriv)
    return np.asarray(vals, dtype=np.float64)


def spline_basis(
    kind: str,
    x: np.ndarray,
    df: float | None,
    knots: np.ndarray | None,
    degree: int,
    intercept: bool,
    boundary: np.ndarray | None,
    label: str,
) -> SplineBasis:
    """Choose the knots as R's ``bs``/``ns`` do, from the data of the fit."""
    ok = x[~np.isnan(x)]
    if len(ok) == 0:
        raise DataError(f"{label}: the variable has no non-missing values")
    lo, hi = (float(ok.min()), float(ok.max())) if boundary is None else map(float, boundary)
    if knots is None:
        n_inner = 0
        if df is not None:
            n_inner = int(df) - (degree + 1 if kind == "bs" else 1) + (0 if intercept else 1)
            if kind == "ns":
                n_inner = int(df) - 1 - int(intercept)
            if n_inner < 0:
                raise DataError(f"{label}: df is too small for this degree")
        inside = ok[(ok >= lo) & (ok <= hi)]
        probs = np.linspace(0, 1, n_inner + 2)[1:-1]
        knots = np.quantile(inside, probs) if n_inner else np.empty(0)
    return SplineBasis(kind, tuple(np.asarray(knots, float)), (lo, hi), degree, intercept)
