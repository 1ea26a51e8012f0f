"""The layout of θ: lme4's rule, in one place.

Each random-effects term with k columns has a k x k lower-triangular
template T; θ holds, term after term, the lower triangle of each T column by
column (lme4's order). Λ is block diagonal with one copy of T per level, and
the term's random effects have covariance σ²TTᵀ. Everything in Python that
maps θ to templates, names, bounds, Λ or standard deviations and
correlations goes through `ThetaLayout`; the Rust core keeps its own copy of
the rule for its per-θ work.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

__all__ = ["TermLayout", "ThetaLayout", "lower_triangle"]


@functools.cache
def lower_triangle(k: int) -> tuple[tuple[int, int], ...]:
    """Return (row, column) of each entry of a k x k lower triangle, column by column.

    This is lme4's order of a term's θ elements.

    Examples
    --------
    >>> lower_triangle(2)
    ((0, 0), (1, 0), (1, 1))
    """
    return tuple((r, c) for c in range(k) for r in range(c, k))


@dataclass(frozen=True)
class TermLayout:
    """The θ elements of one random-effects term."""

    group: str
    """lme4's name of the grouping factor."""
    cnames: tuple[str, ...]
    """Names of the term's columns."""
    n_levels: int
    """Number of levels of the grouping factor."""

    @property
    def k(self) -> int:
        """Return the number of columns of the term."""
        return len(self.cnames)

    @property
    def entries(self) -> tuple[tuple[int, int], ...]:
        """Return (row, column) of the template entry of each θ element."""
        return lower_triangle(self.k)

    @property
    def theta_names(self) -> list[str]:
        """Return lme4's names of the term's θ elements."""
        g, cn = self.group, self.cnames
        return [f"{g}.{cn[c]}" if r == c else f"{g}.{cn[r]}.{cn[c]}" for r, c in self.entries]

    @property
    def lower(self) -> list[float]:
        """Return the lower bounds: 0 on the template diagonal, -inf elsewhere."""
        return [0.0 if r == c else -np.inf for r, c in self.entries]

    @property
    def kinds(self) -> list[str]:
        """Return ``"sd"`` or ``"cor"`` for each θ element (the parameter it maps to)."""
        return ["sd" if r == c else "cor" for r, c in self.entries]

    @property
    def sdcor_names(self) -> list[str]:
        """Return lme4's confint names of the term's sds and correlations."""
        g, cn = self.group, self.cnames
        return [
            f"sd_{cn[c]}|{g}" if r == c else f"cor_{cn[r]}.{cn[c]}|{g}" for r, c in self.entries
        ]

    def template(self, theta: np.ndarray) -> np.ndarray:
        """Return the k x k lower-triangular template T from the term's θ elements."""
        tm = np.zeros((self.k, self.k))
        for (r, c), v in zip(self.entries, theta, strict=True):
            tm[r, c] = v
        return tm

    def sdcor(self, cov: np.ndarray) -> list[float]:
        """Return the sds (diagonal entries) and correlations of a covariance, in θ order."""
        sd = np.sqrt(np.diag(cov))
        out = []
        for r, c in self.entries:
            if r == c:
                out.append(float(sd[c]))
            else:
                den = sd[r] * sd[c]
                out.append(float(cov[r, c] / den) if den > 0 else np.nan)
        return out


@dataclass(frozen=True)
class ThetaLayout:
    """θ of a model: its terms' layouts, in the model's term order (lme4's).

    Examples
    --------
    >>> layout = ThetaLayout((TermLayout("Subject", ("(Intercept)", "Days"), 18),))
    >>> layout.names
    ['Subject.(Intercept)', 'Subject.Days.(Intercept)', 'Subject.Days']
    >>> layout.templates(np.array([1.0, 0.5, 2.0]))[0]
    array([[1. , 0. ],
           [0.5, 2. ]])
    """

    terms: tuple[TermLayout, ...]

    @cached_property
    def offsets(self) -> list[int]:
        """Return the first θ index of each term, and the length of θ."""
        out = [0]
        for t in self.terms:
            out.append(out[-1] + len(t.entries))
        return out

    @property
    def n_theta(self) -> int:
        """Return the length of θ."""
        return self.offsets[-1]

    @cached_property
    def names(self) -> list[str]:
        """Return lme4's names of the θ elements."""
        return [n for t in self.terms for n in t.theta_names]

    @cached_property
    def lower(self) -> np.ndarray:
        """Return the lower bounds of θ (0 on template diagonals, -inf elsewhere)."""
        return np.array([v for t in self.terms for v in t.lower], dtype=np.float64)

    @cached_property
    def kinds(self) -> list[str]:
        """Return ``"sd"`` or ``"cor"`` for each θ element."""
        return [v for t in self.terms for v in t.kinds]

    @cached_property
    def sdcor_names(self) -> list[str]:
        """Return lme4's confint names of the sds and correlations, in θ order."""
        return [v for t in self.terms for v in t.sdcor_names]

    def start(self) -> np.ndarray:
        """Return lme4's starting θ: 1 on the template diagonals, 0 elsewhere."""
        return np.where(self.lower == 0, 1.0, 0.0)

    def _pieces(self, theta: np.ndarray) -> list[np.ndarray]:
        o = self.offsets
        return [theta[o[i] : o[i + 1]] for i in range(len(self.terms))]

    def templates(self, theta: np.ndarray) -> list[np.ndarray]:
        """Return each term's lower-triangular template T (k x k) at θ."""
        return [t.template(th) for t, th in zip(self.terms, self._pieces(theta), strict=True)]

    def covariances(self, theta: np.ndarray, sigma: float) -> list[np.ndarray]:
        """Return each term's covariance of its random effects, σ²TTᵀ."""
        return [sigma**2 * tm @ tm.T for tm in self.templates(theta)]

    def sdcor(self, theta: np.ndarray, sigma: float) -> np.ndarray:
        """Return the sds and correlations of every term at (θ, σ), in θ order."""
        covs = self.covariances(theta, sigma)
        return np.array([v for t, c in zip(self.terms, covs, strict=True) for v in t.sdcor(c)])

    @cached_property
    def _lambdat_pattern(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Rows, column pointers and θ index (Lind) of Λᵀ's stored entries (CSC order)."""
        rows, cols, lind = [], [], []
        off = 0
        for t, th0 in zip(self.terms, self.offsets, strict=False):
            k = t.k
            # Λ[r, c] = θ[idx]  ->  Λᵀ[c, r]
            rr = np.array([c for r, c in t.entries])
            cc = np.array([r for r, c in t.entries])
            base = off + np.arange(t.n_levels)[:, None] * k
            rows.append((base + rr[None, :]).ravel())
            cols.append((base + cc[None, :]).ravel())
            lind.append(np.tile(th0 + np.arange(len(t.entries)), t.n_levels))
            off += t.n_levels * k
        rows_a, cols_a, lind_a = (np.concatenate(x) for x in (rows, cols, lind))
        # order the entries as compressed columns store them (column, then row)
        order = np.lexsort((rows_a, cols_a))
        rows_a, cols_a, lind_a = rows_a[order], cols_a[order], lind_a[order]
        indptr = np.concatenate([[0], np.cumsum(np.bincount(cols_a, minlength=off))])
        return rows_a, indptr, lind_a

    @property
    def lind(self) -> np.ndarray:
        """Return lme4's Lind, 0-based: the θ index of each stored entry of Λᵀ."""
        return self._lambdat_pattern[2].copy()

    def lambdat(self, theta: np.ndarray) -> sp.csc_array:
        """Return Λᵀ at θ (q x q, every structural entry stored, zeros included, as lme4)."""
        rows, indptr, lind = self._lambdat_pattern
        q = len(indptr) - 1
        return sp.csc_array((np.asarray(theta)[lind], rows, indptr), shape=(q, q))
