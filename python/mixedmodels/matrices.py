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
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import pandas as pd
import scipy.sparse as sp
from scipy.linalg import cho_factor, cho_solve
from scipy.sparse.linalg import splu

from .design import Design
from .exceptions import (
    ArgumentError,
    DimensionError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    UnknownNameError,
)

if TYPE_CHECKING:
    from ._state import ModelState
    from .results import LinearMixedModelResult

__all__ = [
    "DEFAULT_MAX_BYTES",
    "GET_ME_NAMES",
    "GLSResult",
    "LFactor",
    "VBlock",
    "g_matrix",
    "get_me",
    "gls",
    "v_blocks",
    "v_matrix",
    "v_matvec",
    "v_solve",
    "z_columns",
    "z_matrix",
]

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
    """The sparse Cholesky factor of ΛᵀZᵀZΛ + I.

    ``L @ L.T`` equals ``M[perm][:, perm]``, with ``perm`` the fill-reducing
    permutation given as random-effect columns (Z's column order).
    """

    L: sp.csc_array
    """The lower-triangular factor."""
    perm: np.ndarray
    """The fill-reducing permutation."""


@dataclass(frozen=True)
class GLSResult:
    """Generalized least squares: β̂ = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y and its covariance."""

    beta: pd.Series | np.ndarray
    """The estimates (labelled when X was a DataFrame)."""
    cov: pd.DataFrame | np.ndarray
    """Their covariance (XᵀV⁻¹X)⁻¹."""


@runtime_checkable
class ImplicitV(Protocol):
    """Anything that applies V⁻¹ without forming V, such as a fitted model."""

    def V_solve(self, B: npt.ArrayLike) -> np.ndarray:
        """Return V⁻¹B."""
        ...


def _as_2d(b: npt.ArrayLike) -> tuple[np.ndarray, bool]:
    a = _numeric(b, "B")
    if a.ndim == 1:
        return a[:, None], True
    if a.ndim != 2:
        raise DimensionError(f"expected a vector or a matrix, got an array of shape {a.shape}")
    return a, False


def _numeric(a: Any, what: str) -> np.ndarray:
    """Return an array argument as floats, or raise `ArgumentError` saying what it holds."""
    try:
        return np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ArgumentError(f"{what} must hold numbers: {e}") from None


def z_matrix(design: Design) -> sp.csc_array:
    """Return Z (n x q), columns in lme4's order; exact zeros not stored."""
    n = design.n
    rows, cols, vals = [], [], []
    off = 0
    for t in design.terms:
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


def z_columns(design: Design) -> pd.DataFrame:
    """Return one row per column of Z: its term's grouping factor, the level, the coefficient."""
    parts = []
    for t in design.terms:
        parts.append(
            pd.DataFrame(
                {
                    "group": t.group,
                    "level": np.repeat(np.asarray(t.levels, dtype=object), t.k),
                    "coef": np.tile(np.asarray(t.cnames, dtype=object), t.n_levels),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def g_matrix(fit: LinearMixedModelResult) -> sp.csc_array:
    """Return G = σ²ΛΛᵀ (q x q), in Z's column order."""
    blocks = []
    covs = fit.design.layout.covariances(fit.theta, fit.sigma)
    for t, cov in zip(fit.design.terms, covs, strict=True):
        blocks.append(sp.kron(sp.eye_array(t.n_levels), sp.csc_array(cov), format="csc"))
    g = sp.csc_array(sp.block_diag(blocks, format="csc"))
    g.eliminate_zeros()
    return g


def v_matrix(
    fit: LinearMixedModelResult, dense: bool = False, max_bytes: int = DEFAULT_MAX_BYTES
) -> sp.csr_array | np.ndarray:
    """Return V, sparse or dense, refusing before building it when it could exceed max_bytes."""
    state = fit.state
    n = fit.nobs
    if dense:
        need = n * n * 8
        if need > max_bytes:
            raise MemoryBudgetError(_budget_message(n * n, need, max_bytes, "dense "))
    bound = state.v_nnz_bound()
    need = bound * _BYTES_PER_ENTRY
    if need > max_bytes:
        raise MemoryBudgetError(_budget_message(bound, need, max_bytes, ""))
    v = state.v_csr(max(bound, 1))
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
    """Return V's independent diagonal blocks, dense."""
    labels = fit.state.v_components()
    sizes = np.bincount(labels)
    need = int((sizes.astype(np.int64) ** 2).sum()) * 8
    if need > max_bytes:
        raise MemoryBudgetError(
            f"the {len(sizes)} blocks of V would take ~{need / 1024**3:.1f} GiB as dense "
            f"matrices (the largest has {sizes.max():,} rows), more than "
            f"max_bytes={max_bytes:,}; use fit.V_solve(B) or fit.V_matvec(B), or raise max_bytes"
        )
    v = sp.csr_array(v_matrix(fit, max_bytes=max_bytes))
    order = np.argsort(labels, kind="stable")
    starts = np.concatenate([[0], np.cumsum(sizes)])
    vp = sp.csr_array(v[order][:, order])
    out = []
    for b in range(len(sizes)):
        s, e = starts[b], starts[b + 1]
        out.append(VBlock(rows=order[s:e], V=vp[s:e, s:e].toarray()))
    return out


def v_solve(fit: LinearMixedModelResult, b: npt.ArrayLike) -> np.ndarray:
    """Return V⁻¹B for an n-vector or n x m matrix B, without forming V."""
    a, vec = _as_2d(b)
    _check_rows(fit, a)
    out = fit.state.v_solve(a)
    return out[:, 0] if vec else out


def v_matvec(fit: LinearMixedModelResult, b: npt.ArrayLike) -> np.ndarray:
    """Return VB for an n-vector or n x m matrix B, without forming V."""
    a, vec = _as_2d(b)
    _check_rows(fit, a)
    out = fit.state.v_matvec(a)
    return out[:, 0] if vec else out


def _check_rows(fit: LinearMixedModelResult, a: np.ndarray) -> None:
    if a.shape[0] != fit.nobs:
        raise DimensionError(
            f"B has {a.shape[0]} rows; V is {fit.nobs} x {fit.nobs} (one row per observation used)"
        )


GET_ME_NAMES = (
    "X",
    "y",
    "Z",
    "Zt",
    "Lambda",
    "Lambdat",
    "Lind",
    "theta",
    "beta",
    "u",
    "b",
    "sigma",
    "flist",
    "cnms",
    "Gp",
    "L",
    "RX",
    "RZX",
    "lower",
    "n_rtrms",
)
"""The names `get_me` knows."""


def get_me(fit: LinearMixedModelResult, name: str, state: ModelState | None = None) -> Any:
    """Return one of a fit's quantities by lme4's ``getME(fit, name)``.

    ``X`` (n x p array), ``y``, ``Z`` and ``Zt`` (scipy sparse, columns in
    lme4's order: term by term, level by level, the term's coefficients
    together), ``Lambda``/``Lambdat`` (sparse, every structural entry
    stored), ``Lind`` (0-based θ index of each stored entry of Lambdat),
    ``theta``, ``beta``, ``u``, ``b``, ``sigma``, ``flist`` (DataFrame of
    the grouping factors), ``cnms`` (per term: group and column names),
    ``Gp`` (first random-effect column of each term, and q), ``L`` (the
    sparse Cholesky factor of ΛᵀZᵀZΛ + I with its permutation, an
    `LFactor`), ``RX`` (p x p upper triangular), ``RZX`` (q x p, rows in
    L's order), ``lower``, ``n_rtrms``. `z_columns` labels Z's columns.

    ``state``: the workspace ``L`` and ``RZX`` come from (default the fit's;
    a GLMM passes its linearized model's, with the working weights).
    """
    d = fit.design
    st = fit.state if state is None else state
    layout = d.layout
    getters: dict[str, Any] = {
        "X": lambda: d.X.copy(),
        "y": lambda: d.y.copy(),
        "Z": lambda: z_matrix(d),
        "Zt": lambda: sp.csc_array(z_matrix(d).T),
        "Lambdat": lambda: layout.lambdat(fit.theta),
        "Lambda": lambda: sp.csc_array(layout.lambdat(fit.theta).T),
        "Lind": lambda: layout.lind,
        "theta": lambda: fit.theta.copy(),
        "beta": lambda: fit.beta.copy(),
        "u": lambda: fit.u.copy(),
        "b": lambda: fit.b.copy(),
        "sigma": lambda: fit.sigma,
        "flist": lambda: pd.DataFrame(
            {t.group: pd.Categorical.from_codes(t.codes, categories=t.levels) for t in d.terms},
            index=d.row_index,
        ).loc[:, lambda f: ~f.columns.duplicated()],
        "cnms": lambda: [(t.group, list(t.cnames)) for t in d.terms],
        "Gp": lambda: np.concatenate([[0], np.cumsum([t.n_levels * t.k for t in d.terms])]),
        "L": lambda: LFactor(*st.factor_l()),
        "RX": lambda: fit.rx.copy(),
        "RZX": lambda: st.solve().rzx,
        "lower": lambda: layout.lower.copy(),
        "n_rtrms": lambda: len(d.terms),
    }
    if name not in getters:
        raise UnknownNameError(f"get_me: unknown name {name!r}; known: {', '.join(GET_ME_NAMES)}")
    return getters[name]()


def gls(X: npt.ArrayLike | pd.DataFrame, y: npt.ArrayLike, V: Any) -> GLSResult:
    """Generalized least squares with a given covariance V (the notes' getFE).

    β̂ = (XᵀV⁻¹X)⁻¹XᵀV⁻¹y and its covariance (XᵀV⁻¹X)⁻¹.

    Parameters
    ----------
    X
        n x p design (array or DataFrame; a DataFrame labels the result).
    y
        n responses.
    V
        n x n covariance: a dense array, a scipy sparse matrix, or a fitted
        model (anything with ``V_solve``), whose V is then applied through its
        factor without being formed.

    Returns
    -------
    GLSResult
        β̂ and its covariance.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> res = mm.gls(fit.get_me("X"), fit.get_me("y"), fit.V())
    >>> bool(abs(res.beta - fit.beta).max() < 1e-8 * abs(fit.beta).max())
    True
    """
    names = list(X.columns) if isinstance(X, pd.DataFrame) else None
    xa = _numeric(X, "X")
    ya = _numeric(y, "y").ravel()
    if xa.ndim != 2 or xa.shape[0] != ya.shape[0]:
        raise DimensionError(f"X is {xa.shape} and y has {ya.shape[0]} values")
    n = ya.shape[0]
    rhs = np.column_stack([xa, ya])
    if isinstance(V, ImplicitV):
        w = V.V_solve(rhs)
    else:
        dense = None if isinstance(V, sp.sparray | sp.spmatrix) else _numeric(V, "V")
        shape = V.shape if dense is None else dense.shape
        if shape != (n, n):
            raise DimensionError(f"V is {' x '.join(map(str, shape))}; y has {n} values")
        try:
            if dense is None:
                w = splu(sp.csc_array(V)).solve(rhs)
            else:
                w = cho_solve(cho_factor(dense), rhs)
        except (np.linalg.LinAlgError, RuntimeError) as e:  # scipy: "Factor is exactly singular"
            raise NotPositiveDefiniteError(
                f"V is not positive definite (a covariance matrix must be): {e}"
            ) from None
    if np.isfinite(rhs).all() and not np.isfinite(w).all():
        raise NotPositiveDefiniteError("V is singular: solving with it gives non-finite values")
    p = xa.shape[1]
    xtvx = xa.T @ w[:, :p]
    xtvy = xa.T @ w[:, p]
    try:
        cov = np.linalg.inv(xtvx)
        beta = np.linalg.solve(xtvx, xtvy)
    except np.linalg.LinAlgError:
        raise NotPositiveDefiniteError(
            "XᵀV⁻¹X is singular: the columns of X are linearly dependent"
        ) from None
    cov = (cov + cov.T) / 2
    if names is not None:
        return GLSResult(pd.Series(beta, index=names), pd.DataFrame(cov, names, names))
    return GLSResult(beta, cov)
