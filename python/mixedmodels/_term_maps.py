"""How the core sees the columns: centred and scaled, mapped back exactly.

`Centering` takes large means out of X's columns and the response (a
reparametrization of β); `TermMaps` centres and scales the random-effect
columns (a reparametrization of θ).


A term's columns z (n x k) reach the core as z_core = z Mₜ, with Mₜ = Aₜ Sₜ⁻¹:

- Aₜ centres: when the term has an intercept column and another column's
  mean is more than twice its range (a slope on a date, on ``Days + 100``),
  that column gets its mean taken out, z_j − m_j·1. The optimum of such a
  term sits where intercept and slope are correlated within 1e-6 of ±1,
  which no optimizer reaches from lme4's start; centred, it is well placed.
- Sₜ scales each column by a power of two when its largest magnitude is far
  from 1 (a covariate in microseconds or in millions), exactly.

The model is the same: b = Mₜ b_core for each level, so Cov(b) = Mₜ Cov(b_core)
Mₜᵀ and the model's template is the lower-triangular factor of Mₜ T_core
(a QR, exact also for singular templates). With scaling alone the map is
diagonal, θ_core = θ·scale, and the objective at θ is the same double either
way; with centring it is the same function of a reparametrized θ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ._layout import ThetaLayout, lower_triangle

if TYPE_CHECKING:
    from .design import Design

__all__ = ["Centering", "TermMaps", "column_ranges", "column_scales", "column_shifts"]

_SMALLEST_KEPT, _LARGEST_KEPT = 2.0**-6.5, 2.0**6.5


def column_ranges(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each column's minimum and maximum (one reduction per column)."""
    if x.shape[0] * x.shape[1] <= 4096:
        return x.min(axis=0), x.max(axis=0)
    lo = np.array([x[:, j].min() for j in range(x.shape[1])])
    hi = np.array([x[:, j].max() for j in range(x.shape[1])])
    return lo, hi


def column_scales(z: np.ndarray, ranges: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Return a power-of-two scale per column: 1 unless its largest magnitude is far from 1.

    ``ranges``: the columns' `column_ranges`, when already computed.
    """
    if z.shape[0] == 0:
        return np.ones(z.shape[1])
    lo, hi = column_ranges(z) if ranges is None else ranges
    big = np.maximum(np.abs(lo), np.abs(hi))
    if all(_SMALLEST_KEPT < b < _LARGEST_KEPT for b in big.tolist()):  # the usual case, fast
        return np.ones(z.shape[1])
    ok = (big > 0) & np.isfinite(big)
    e = np.where(ok, np.round(np.log2(np.where(ok, big, 1.0))), 0.0)
    return np.exp2(np.where(np.abs(e) >= 7, e, 0.0))


def column_shifts(
    z: np.ndarray,
    cnames: Sequence[str],
    w: np.ndarray | None,
    ranges: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray | None:
    """Return the mean to take out of each column (0 for the others), or None for none.

    Only with an intercept column (all ones), and only for a column whose
    (weighted) mean is more than twice its range. ``ranges``: the columns'
    `column_ranges`, when already computed.
    """
    if "(Intercept)" not in cnames or z.shape[1] < 2 or z.shape[0] < 2:
        return None
    i0 = list(cnames).index("(Intercept)")
    lo, hi = column_ranges(z) if ranges is None else ranges
    if lo[i0] != 1.0 or hi[i0] != 1.0:
        return None
    far = np.abs(lo + hi) / 2 > 2.0 * (hi - lo)
    far[i0] = False
    far &= hi > lo  # a constant column is the intercept's multiple: leave it alone
    if not far.any():
        return None
    mean = np.average(z, axis=0, weights=w)
    return np.where(far, mean, 0.0)


def _lower_factor(x: np.ndarray) -> np.ndarray:
    """Return the lower-triangular L with a non-negative diagonal and L Lᵀ = X Xᵀ."""
    r = np.linalg.qr(x.T, mode="r")
    d = np.where(np.diag(r) < 0, -1.0, 1.0)
    return np.asarray(r).T * d[None, :]


@dataclass(frozen=True)
class TermMaps:
    """Per term, Mₜ (b = Mₜ b_core; None for the identity), and what it makes of θ."""

    layout: ThetaLayout
    maps: tuple[np.ndarray | None, ...]
    scale: np.ndarray | None
    """θ_core / θ elementwise when every map is diagonal (scaling only), else None."""

    @classmethod
    def build(
        cls,
        layout: ThetaLayout,
        zs: Sequence[np.ndarray],
        cnames: Sequence[Sequence[str]],
        weights: np.ndarray | None,
    ) -> tuple[TermMaps | None, list[np.ndarray]]:
        """Return the maps of the terms (None: all identity) and the columns the core gets."""
        maps: list[np.ndarray | None] = []
        out: list[np.ndarray] = []
        for z, names in zip(zs, cnames, strict=True):
            ranges = column_ranges(z) if z.shape[0] else None
            shift = column_shifts(z, names, weights, ranges)
            if shift is None:
                zc, s = z, column_scales(z, ranges)
            else:
                zc = z - np.outer(z[:, list(names).index("(Intercept)")], shift)
                s = column_scales(zc)
            if shift is None and (s == 1.0).all():
                maps.append(None)
                out.append(z)
                continue
            a = np.eye(z.shape[1])
            if shift is not None:
                a[list(names).index("(Intercept)"), :] -= shift
            maps.append(a / s[None, :])
            out.append(zc if (s == 1.0).all() else zc / s)
        if all(m is None for m in maps):
            return None, out
        diagonal = all(m is None or np.count_nonzero(m - np.diag(np.diag(m))) == 0 for m in maps)
        scale = None
        if diagonal:  # θ_core = θ · (1/diag(M)) row by row
            parts = []
            for m, t in zip(maps, layout.terms, strict=True):
                d = np.ones(t.k) if m is None else 1.0 / np.diag(m)
                parts.append([d[r] for r, _ in lower_triangle(t.k)])
            scale = np.concatenate(parts)
        return cls(layout, tuple(maps), scale), out

    def _map(self, theta: np.ndarray, inverse: bool) -> np.ndarray:
        out = np.array(theta, dtype=np.float64, copy=True)
        pos = 0
        for m, t in zip(self.maps, self.layout.terms, strict=True):
            n = t.k * (t.k + 1) // 2
            if m is not None:
                tm = t.template(out[pos : pos + n])
                lo = _lower_factor(np.linalg.solve(m, tm) if inverse else m @ tm)
                out[pos : pos + n] = [lo[r, c] for r, c in t.entries]
            pos += n
        return out

    def core_theta(self, theta: np.ndarray) -> np.ndarray:
        """Return the core's θ for the model's θ."""
        if self.scale is not None:
            return np.ascontiguousarray(theta, dtype=np.float64) * self.scale
        return self._map(theta, inverse=True)

    def model_theta(self, core_theta: np.ndarray) -> np.ndarray:
        """Return the model's θ for the core's θ."""
        if self.scale is not None:
            return np.asarray(core_theta, dtype=np.float64) / self.scale
        return self._map(core_theta, inverse=False)

    def jacobian(self, theta: np.ndarray) -> np.ndarray:
        """Return ∂θ_core/∂θ at the model's θ (diagonal for scaling; else central differences)."""
        if self.scale is not None:
            return np.diag(self.scale)
        th = np.asarray(theta, dtype=np.float64)
        jac = np.empty((len(th), len(th)))
        for j in range(len(th)):
            h = 1e-6 * max(1.0, abs(th[j]))
            e = np.zeros(len(th))
            e[j] = h
            jac[:, j] = (self.core_theta(th + e) - self.core_theta(th - e)) / (2 * h)
        return jac

    def model_b(self, b_core: np.ndarray) -> np.ndarray:
        """Return the model's random effects b (Z's column order) for the core's."""
        out = np.array(b_core, dtype=np.float64, copy=True)
        pos = 0
        for m, t in zip(self.maps, self.layout.terms, strict=True):
            n = t.k * t.n_levels
            if m is not None:
                blk = out[pos : pos + n].reshape(t.n_levels, t.k)
                out[pos : pos + n] = (blk @ m.T).ravel()
            pos += n
        return out

    def model_cond_var(self, blocks: list[np.ndarray]) -> list[np.ndarray]:
        """Return per term the conditional covariances of b (levels x k x k) for the core's."""
        return [c if m is None else m @ c @ m.T for c, m in zip(blocks, self.maps, strict=True)]


@dataclass(frozen=True)
class Centering:
    """Means taken out of X's columns and of the response before the core sees them.

    X_c = X − 1 x̄ᵀ (x̄₀ = 0 for the intercept, column 0) = X C, y_c = y − ȳ.
    """

    x_mean: np.ndarray
    y_shift: float

    @classmethod
    def of(cls, design: Design) -> Centering | None:
        """Return the centering a design needs, or None (no intercept, or nothing large)."""
        x, n = design.X, design.n
        if x.shape[1] == 0 or n < 2:
            return None
        lo, hi = column_ranges(x)
        if lo[0] != 1.0 or hi[0] != 1.0:  # column 0 is not the intercept
            return None
        m = np.zeros(x.shape[1])
        m[1:] = _large_means(x[:, 1:], design.weights, (lo[1:], hi[1:]))
        yo = design.y if design.offset is None else design.y - design.offset
        y_range = (np.array([yo.min()]), np.array([yo.max()]))
        ys = float(_large_means(yo[:, None], design.weights, y_range)[0])
        return None if ys == 0.0 and not m.any() else cls(m, ys)

    def x(self, x: np.ndarray) -> np.ndarray:
        """Return the centred X."""
        return x - self.x_mean

    def beta(self, beta_c: np.ndarray) -> np.ndarray:
        """Return β of the model for β of the centred problem: β = C β_c (+ ȳ on the intercept)."""
        beta = beta_c.copy()
        beta[0] += self.y_shift - float(self.x_mean @ beta_c)
        return beta

    def right(self, r: np.ndarray) -> np.ndarray:
        """Return R C⁻¹ for a factor R of the centred X (RX, RZX): C⁻¹ = I + e₀ x̄ᵀ."""
        return r + np.outer(r[:, 0], self.x_mean)


def _large_means(
    x: np.ndarray, w: np.ndarray | None, ranges: tuple[np.ndarray, np.ndarray]
) -> np.ndarray:
    """Return each column's (weighted) mean where it is over 100 times the column's range, else 0.

    Reductions only (no temporary arrays): this runs for every model. The range
    bounds the spread, so the test errs on the side of not centring.
    """
    if x.shape[1] == 0:
        return np.zeros(0)
    lo, hi = ranges
    if all(abs(a) <= 100.0 * (b - a) for a, b in zip(lo.tolist(), hi.tolist(), strict=True)):
        return np.zeros(x.shape[1])  # the usual case: no mean is far outside the range
    mean = np.average(x, axis=0, weights=w)
    return np.where(np.abs(mean) > 100.0 * (hi - lo), mean, 0.0)
