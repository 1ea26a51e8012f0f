"""Numerical derivatives as numDeriv computes them (Richardson extrapolation).

numDeriv's defaults: relative step d = 1e-4 for ``jacobian``, 0.1 for
``hessian`` (genD), eps = 1e-4 for elements near zero, r = 4 extrapolation
steps, v = 2. lmerTest differentiates with these, so the Satterthwaite
degrees of freedom depend on them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

__all__ = ["numderiv_hessian", "numderiv_jacobian"]

_EPS, _R, _V = 1e-4, 4, 2.0
_D_JACOBIAN, _D_HESSIAN = 1e-4, 0.1
_ZERO_TOL = math.sqrt(np.finfo(float).eps / 7e-7)


def _h0(x: np.ndarray, d: float) -> np.ndarray:
    return np.abs(d * x) + _EPS * (np.abs(x) < _ZERO_TOL)


def _richardson(a: np.ndarray) -> np.ndarray:
    """Richardson extrapolation over the last axis (r approximations)."""
    a = a.copy()
    r = a.shape[-1]
    for m in range(1, r):
        a[..., : r - m] = (a[..., 1 : r - m + 1] * 4.0**m - a[..., : r - m]) / (4.0**m - 1)
    return a[..., 0]


def _extrapolated(diff: Callable[[np.ndarray], float], h0: np.ndarray) -> float:
    """Richardson-extrapolate ``diff(h)`` over r steps h0, h0/v, h0/v², ..."""
    h = h0.copy()
    a = np.zeros(_R)
    for k in range(_R):
        a[k] = diff(h)
        h = h / _V
    return float(_richardson(a))


def numderiv_jacobian(f: Callable[[np.ndarray], npt.ArrayLike], x: npt.ArrayLike) -> np.ndarray:
    """Return numDeriv's ``jacobian(method = "Richardson")``: m x n for f from R^n to R^m.

    Arrays that f returns are flattened.

    Examples
    --------
    >>> numderiv_jacobian(lambda v: v**2, np.array([1.0, 2.0])).round(8)
    array([[2., 0.],
           [0., 4.]])
    """
    x = np.asarray(x, dtype=float)
    f0 = np.asarray(f(x), dtype=float).ravel()
    n = len(x)
    out = np.zeros((len(f0), n))
    for i in range(n):
        h = _h0(x, _D_JACOBIAN)
        a = np.zeros((len(f0), _R))
        for k in range(_R):
            e = np.zeros(n)
            e[i] = h[i]
            a[:, k] = (np.ravel(f(x + e)) - np.ravel(f(x - e))) / (2 * h[i])
            h = h / _V
        out[:, i] = _richardson(a)
    return out


def numderiv_hessian(f: Callable[[np.ndarray], float], x: npt.ArrayLike) -> np.ndarray:
    """Return numDeriv's ``hessian`` (genD with Richardson extrapolation) of a scalar f.

    Examples
    --------
    >>> numderiv_hessian(lambda v: v[0] ** 2 * v[1], np.array([1.0, 3.0])).round(6)
    array([[6., 2.],
           [2., 0.]])
    """
    x = np.asarray(x, dtype=float)
    n = len(x)
    f0 = float(f(x))
    h0 = _h0(x, _D_HESSIAN)

    def second(h: np.ndarray, i: int, j: int) -> float:
        """f(x + e) - 2 f(x) + f(x - e) with e = h along coordinates i and j."""
        e = np.zeros(n)
        e[i] = h[i]
        e[j] = h[j]
        return f(x + e) - 2 * f0 + f(x - e)

    def diagonal(h: np.ndarray, i: int) -> float:
        return second(h, i, i) / h[i] ** 2

    hdiag = np.array([_extrapolated(functools.partial(diagonal, i=i), h0) for i in range(n)])
    hess = np.diag(hdiag)
    for i in range(n):
        for j in range(i):

            def cross(h: np.ndarray, i: int = i, j: int = j) -> float:
                d2 = second(h, i, j) - hdiag[i] * h[i] ** 2 - hdiag[j] * h[j] ** 2
                return d2 / (2 * h[i] * h[j])

            hess[i, j] = hess[j, i] = _extrapolated(cross, h0)
    return hess
