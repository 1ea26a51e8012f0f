"""The model's matrices: lme4's getME, the marginal covariance V and GLS.

For a fitted model y = Xβ + Zb + ε with b ~ N(0, G), ε ~ N(0, R):

- G = σ²ΛΛᵀ, the expanded covariance of the random effects, in Z's columns;
- R = σ²I;
- V = ZGZᵀ + R = σ²(ZΛΛᵀZᵀ + I), the marginal covariance of y.

V is assembled by the Rust core straight from the grouping structure (two
observations are correlated only when they share a level of some term), never
through dense intermediates. V⁻¹B, VB and log det V are computed without
forming V, through the sparse Cholesky factor of ΛᵀZᵀZΛ + I:
V⁻¹ = σ⁻²(I − ZΛ(ΛᵀZᵀZΛ + I)⁻¹ΛᵀZᵀ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .exceptions import DimensionError, MemoryBudgetError

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["GLSResult", "LFactor", "VBlock", "gls", "DEFAULT_MAX_BYTES"]

DEFAULT_MAX_BYTES = 2 * 1024**3
"""Default memory budget for forming V (2 GiB)."""

_BYTES_PER_ENTRY = 16  # a float64 value and an int64 column index


class VBlock(NamedTuple):
    """One independent diagonal block of V."""

    rows: np.ndarray
    """Positions of the block's observations (rows of the model's data)."""
    V: np.ndarray
    """The block of V, dense."""


class LFactor(NamedTuple):
    """The sparse Cholesky factor of ΛᵀZᵀZΛ + I: ``L @ L.T`` equals
    ``M[perm][:, perm]``, with ``perm`` the fill-reducing permutation given as
    random-effect columns (Z's column order)."""

    L: sp.csc_array
    perm: np.ndarray


@dataclass(frozen=True)
class GLSResult:
    """Generalized least squares: β̂ = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y and its covariance."""

    beta: pd.Series | np.ndarray
    cov: pd.DataFrame | np.ndarray


def _as_2d(b) -> tuple[np.ndarray, bool]:
    a = np.asarray(b, dtype=np.float64)
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        raise DimensionError(f"expected a vector or a matrix, got an array of shape {a.shape}")
    return a, False


def z_matrix(fit: LinearMixedModelResult) -> sp.csc_array:
    """Z (n x q), columns in lme4's order; exact zeros not stored."""
    d = fit.design
    n = d.n
    rows, cols, vals = [], [], []
    off = 0
    for t in d.terms:
        k = t.k
        rows.append(np.repeat(np.arange(n), k))
        cols.append((off + t.codes[:, None] * k + np.arange(k)[None, :]).ravel())
        vals.append(t.z.ravel())
        off += t.n_levels * k
    z = sp.csc_array(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, off)
    )
    z.eliminate_zeros()
    return z


def templates(fit: LinearMixedModelResult) -> list[np.ndarray]:
    """Each term's lower-triangular template T(θ) (k x k), from θ in lme4's
    order (the lower triangle, column by column)."""
    out, pos = [], 0
    for t in fit.design.terms:
        tm = np.zeros((t.k, t.k))
        for c in range(t.k):
            for r in range(c, t.k):
                tm[r, c] = fit.theta[pos]
                pos += 1
        out.append(tm)
    return out


def lambdat(fit: LinearMixedModelResult) -> tuple[sp.csc_array, np.ndarray]:
    """Λᵀ (q x q, block diagonal, upper triangular blocks; every structural
    entry stored, zeros included, as lme4 stores it) and Lind: the 0-based θ
    index of each stored value, in storage order."""
    rows, cols, lind = [], [], []
    off, th = 0, 0
    for t in fit.design.terms:
        k = t.k
        rr, cc, ii = [], [], []
        idx = th
        for c in range(k):
            for r in range(c, k):
                # Λ[r, c] = θ[idx]  ->  Λᵀ[c, r]
                rr.append(c)
                cc.append(r)
                ii.append(idx)
                idx += 1
        base = off + np.arange(t.n_levels)[:, None] * k
        rows.append((base + np.array(rr)[None, :]).ravel())
        cols.append((base + np.array(cc)[None, :]).ravel())
        lind.append(np.tile(np.array(ii), t.n_levels))
        off += t.n_levels * k
        th = idx
    rows_a, cols_a, lind_a = (np.concatenate(x) for x in (rows, cols, lind))
    # order the entries as compressed columns store them (column, then row)
    order = np.lexsort((rows_a, cols_a))
    rows_a, cols_a, lind_a = rows_a[order], cols_a[order], lind_a[order]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(cols_a, minlength=off))])
    mat = sp.csc_array((fit.theta[lind_a], rows_a, indptr), shape=(off, off))
    return mat, lind_a


def g_matrix(fit: LinearMixedModelResult) -> sp.csc_array:
    """G = σ²ΛΛᵀ (q x q), in Z's column order."""
    blocks = []
    for t, tm in zip(fit.design.terms, templates(fit), strict=True):
        cov = fit.sigma**2 * tm @ tm.T
        blocks.append(sp.kron(sp.eye_array(t.n_levels), sp.csc_array(cov), format="csc"))
    g = sp.block_diag(blocks, format="csc")
    g.eliminate_zeros()
    return sp.csc_array(g)


def v_matrix(
    fit: LinearMixedModelResult, dense: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
) -> sp.csr_array | np.ndarray:
    ws = fit.model._ws
    n = fit.nobs
    if dense:
        need = n * n * 8
        if need > max_bytes:
            raise MemoryBudgetError(_budget_message(n * n, need, max_bytes, "dense "))
    bound = int(ws.v_nnz_bound())
    need = bound * _BYTES_PER_ENTRY
    if need > max_bytes:
        raise MemoryBudgetError(_budget_message(bound, need, max_bytes, ""))
    indptr, indices, data = ws.v_csr(fit.theta, fit.sigma, max(bound, 1))
    v = sp.csr_array((data, indices, indptr), shape=(n, n))
    sw = fit.model._sqrt_w
    if sw is not None:
        # the core's V is W^½ V W^½
        d = sp.dia_array((1.0 / sw, [0]), shape=(n, n))
        v = sp.csr_array(d @ v @ d)
    return v.toarray() if dense else v


def _budget_message(entries: int, need: int, max_bytes: int, kind: str) -> str:
    return (
        f"the {kind}V of this model would hold up to {entries:,} entries "
        f"(~{need / 1024**3:.1f} GiB), more than max_bytes={max_bytes:,}. "
        "fit.V_solve(B), fit.V_matvec(B) and fit.V_logdet() work without forming V, "
        "fit.V_blocks() gives its independent blocks, and mm.gls(X, y, fit) uses "
        "the implicit V; or raise max_bytes."
    )


def v_blocks(fit: LinearMixedModelResult, max_bytes: int = DEFAULT_MAX_BYTES) -> list[VBlock]:
    ws = fit.model._ws
    labels = np.asarray(ws.v_components())
    sizes = np.bincount(labels)
    need = int((sizes.astype(np.int64) ** 2).sum()) * 8
    if need > max_bytes:
        raise MemoryBudgetError(
            f"the {len(sizes)} blocks of V would take ~{need / 1024**3:.1f} GiB as dense "
            f"matrices (the largest has {sizes.max():,} rows), more than "
            f"max_bytes={max_bytes:,}; use fit.V_solve(B) or fit.V_matvec(B), or raise max_bytes"
        )
    v = v_matrix(fit, max_bytes=max_bytes)
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    vp = sp.csr_array(v[order][:, order])
    out = []
    for b in range(len(sizes)):
        s, e = starts[b], starts[b + 1]
        out.append(VBlock(rows=order[s:e], V=vp[s:e, s:e].toarray()))
    return out


def l_factor(fit: LinearMixedModelResult) -> LFactor:
    perm, cp, ri, v = fit.model._ws.factor_l(fit.theta)
    q = len(perm)
    return LFactor(sp.csc_array((v, ri, cp), shape=(q, q)), np.asarray(perm))


def v_solve(fit: LinearMixedModelResult, b) -> np.ndarray:
    a, vec = _as_2d(b)
    _check_rows(fit, a)
    sw = fit.model._sqrt_w
    if sw is None:
        out = fit.model._ws.v_solve(fit.theta, fit.sigma, a)
    else:  # V⁻¹ = W^½ (W^½ V W^½)⁻¹ W^½
        out = sw[:, None] * fit.model._ws.v_solve(fit.theta, fit.sigma, sw[:, None] * a)
    return out[:, 0] if vec else out


def v_matvec(fit: LinearMixedModelResult, b) -> np.ndarray:
    a, vec = _as_2d(b)
    _check_rows(fit, a)
    sw = fit.model._sqrt_w
    if sw is None:
        out = fit.model._ws.v_matvec(fit.theta, fit.sigma, a)
    else:  # V = W^-½ (W^½ V W^½) W^-½
        out = fit.model._ws.v_matvec(fit.theta, fit.sigma, a / sw[:, None]) / sw[:, None]
    return out[:, 0] if vec else out


def _check_rows(fit, a: np.ndarray) -> None:
    if a.shape[0] != fit.nobs:
        raise DimensionError(
            f"B has {a.shape[0]} rows; V is {fit.nobs} x {fit.nobs} (one row per observation used)"
        )


def gls(X, y, V) -> GLSResult:
    """Generalized least squares with a given covariance V (the notes' getFE):
    β̂ = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y and its covariance (XᵀV⁻¹X)⁻¹.

    Parameters
    ----------
    X
        n x p design (array or DataFrame; a DataFrame labels the result).
    y
        n responses.
    V
        n x n covariance: a dense array, a scipy sparse matrix, or a fitted
        model, whose V is then applied through its factor without being formed.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> res = mm.gls(fit.get_me("X"), fit.get_me("y"), fit.V())
    >>> bool(abs(res.beta - fit.beta).max() < 1e-8 * abs(fit.beta).max())
    True
    """
    from .results import LinearMixedModelResult

    names = list(X.columns) if isinstance(X, pd.DataFrame) else None
    xa = np.asarray(X, dtype=np.float64)
    ya = np.asarray(y, dtype=np.float64).ravel()
    if xa.ndim != 2 or xa.shape[0] != ya.shape[0]:
        raise DimensionError(f"X is {xa.shape} and y has {ya.shape[0]} values")
    rhs = np.column_stack([xa, ya])
    if isinstance(V, LinearMixedModelResult):
        w = v_solve(V, rhs)
    elif sp.issparse(V):
        from scipy.sparse.linalg import splu

        w = splu(sp.csc_array(V)).solve(rhs)
    else:
        from scipy.linalg import cho_factor, cho_solve

        w = cho_solve(cho_factor(np.asarray(V, dtype=np.float64)), rhs)
    p = xa.shape[1]
    xtvx = xa.T @ w[:, :p]
    xtvy = xa.T @ w[:, p]
    cov = np.linalg.inv(xtvx)
    cov = (cov + cov.T) / 2
    beta = np.linalg.solve(xtvx, xtvy)
    if names is not None:
        return GLSResult(pd.Series(beta, index=names), pd.DataFrame(cov, names, names))
    return GLSResult(beta, cov)
