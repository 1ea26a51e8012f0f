"""Model matrices as R's ``model.matrix`` builds them, and their rebuild for new data.

From a `TermList` and its evaluated variables (`_reval`):

- a numeric variable gives its columns, named by its label (``Days``,
  ``I(x^2)``) or, for a matrix, label and column name (``poly(x, 2)1``);
- a factor in a term is coded by contrasts when the term without it is
  already in the model (the intercept counting as the empty term), else by
  one indicator per level (R's rule, *Statistical Models in S* p. 38); without
  an intercept the first factor of the first term holding one is coded in
  full. Unordered factors get treatment contrasts (``fb``), ordered ones R's
  ``contr.poly`` (``f.L``, ``f.Q``, ``f.C``, ``f^4``...); logicals are
  factors with levels FALSE and TRUE;
- an interaction's columns are the products of its variables' columns, the
  first variable varying fastest, names joined by ``:``.

`ColumnBuilder` keeps the terms, the transforms' state and the levels, and
builds the same columns from new data (``predict``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._reval import Evaluator, Factor, Numeric, contr_poly
from .exceptions import DataError
from .formula import TermList

__all__ = [
    "ColumnBuilder",
    "drop_dependent_columns",
    "Variable",
    "drop_unused",
    "evaluate",
    "incomplete",
    "missing_rows",
    "model_variables",
    "model_matrix",
    "sum_offsets",
]

Variable = Factor | Numeric


def evaluate(tl: TermList, ev: Evaluator, into: dict[str, Variable]) -> None:
    """Evaluate the variables of ``tl`` not already in ``into``."""
    for label, node in tl.variables:
        if label not in into:
            into[label] = ev.variable(node)


def model_variables(tls: list[TermList], ev: Evaluator) -> dict[str, Variable]:
    """Evaluate the variables of every right-hand side (fixed, then random terms), each once."""
    values: dict[str, Variable] = {}
    for tl in tls:
        evaluate(tl, ev, values)
    return values


def incomplete(
    y: np.ndarray,
    values: dict[str, Variable],
    codes: list[np.ndarray],
    extra: list[np.ndarray | None],
) -> np.ndarray:
    """Return the rows missing a value: of y, a variable, a grouping code or an extra column."""
    missing = np.isnan(y)
    for v in values.values():
        missing |= missing_rows(v)
    for c in codes:
        missing |= c < 0
    for e in extra:
        if e is not None:
            missing |= np.isnan(e)
    return missing


def missing_rows(v: Variable) -> np.ndarray:
    """Return the rows where a variable is missing."""
    if isinstance(v, Factor):
        return v.codes < 0
    return np.isnan(v.values).any(axis=1)


def drop_unused(v: Variable, rows: np.ndarray | slice) -> Variable:
    """Keep ``rows``; a factor drops the levels no kept row uses (lme4's model frame does)."""
    if isinstance(v, Numeric):
        return Numeric(v.values[rows], v.colnames)
    codes = v.codes[rows]
    if v.logical:
        return Factor(codes, v.levels, v.ordered, True)
    used = np.bincount(codes[codes >= 0], minlength=len(v.levels)) > 0
    if used.all():
        return Factor(codes, v.levels, v.ordered)
    remap = np.cumsum(used) - 1
    return Factor(
        np.where(codes < 0, -1, remap[np.maximum(codes, 0)]),
        tuple(lab for lab, u in zip(v.levels, used, strict=True) if u),
        v.ordered,
    )


def _coding(tl: TermList, vars_: dict[str, Variable]) -> tuple[tuple[bool, ...], ...]:
    """Per term, per variable: True where a factor is coded in full (R's TermCode)."""
    seen: list[frozenset[str]] = []
    out: list[list[bool]] = []
    for term in tl.terms:
        codes = []
        for v in term:
            rest = frozenset(term) - {v}
            full = isinstance(vars_[v], Factor) and bool(rest) and not any(rest <= t for t in seen)
            codes.append(full)
        out.append(codes)
        seen.append(frozenset(term))
    if not tl.intercept:
        for term, codes in zip(tl.terms, out, strict=True):
            first = next((i for i, v in enumerate(term) if isinstance(vars_[v], Factor)), None)
            if first is not None:
                codes[first] = True
                break
    return tuple(tuple(c) for c in out)


@dataclass(frozen=True)
class _Spec:
    """How one variable is turned into columns (fixed at the fit)."""

    label: str
    levels: tuple[str, ...] = ()
    """A factor's levels at the fit (unused ones dropped)."""
    ordered: bool = False
    width: int = 1
    """Columns of a numeric variable."""
    colnames: tuple[str, ...] | None = None


def _spec(label: str, v: Variable) -> _Spec:
    if isinstance(v, Factor):
        if len(v.levels) < 2 and not v.logical:
            raise DataError(
                f"the factor {label!r} has {len(v.levels)} level in the data used; contrasts need "
                "2 or more levels (drop the term or check the data)"
            )
        return _Spec(label, v.levels, v.ordered)
    return _Spec(label, width=v.values.shape[1], colnames=v.colnames)


def _variable_columns(spec: _Spec, v: Variable, full: bool) -> tuple[np.ndarray, list[str]]:
    label = spec.label
    if isinstance(v, Numeric):
        if v.values.shape[1] == 1:
            return v.values, [label]
        cols = spec.colnames or tuple(str(i) for i in range(1, v.values.shape[1] + 1))
        return v.values, [label + c for c in cols]
    n_lev = len(spec.levels)
    if full:
        contrast = np.eye(n_lev)
        names = [label + lab for lab in spec.levels]
    elif spec.ordered:
        contrast = contr_poly(n_lev)
        poly = [".L", ".Q", ".C"] + [f"^{i}" for i in range(4, n_lev)]
        names = [label + s for s in poly[: n_lev - 1]]
    else:
        contrast = np.eye(n_lev)[:, 1:]
        names = [label + lab for lab in spec.levels[1:]]
    out = np.zeros((len(v.codes), contrast.shape[1]))
    ok = v.codes >= 0
    out[ok] = contrast[v.codes[ok]]
    out[~ok] = np.nan
    return out, names


def _assemble(
    tl: TermList,
    specs: dict[str, _Spec],
    vars_: dict[str, Variable],
    coding: tuple[tuple[bool, ...], ...],
    n: int,
    order: str = "F",
) -> tuple[np.ndarray, list[str], list[tuple[str, list[int]]]]:
    """Write the columns of every term into one preallocated matrix (``order``: "F" or "C")."""
    blocks: list[np.ndarray] = []
    names: list[str] = ["(Intercept)"] if tl.intercept else []
    spans: list[tuple[str, list[int]]] = []
    start = int(tl.intercept)
    for term, codes in zip(tl.terms, coding, strict=True):
        cols: np.ndarray | None = None
        cnames: list[str] = [""]
        for v, full in zip(term, codes, strict=True):
            block, bnames = _variable_columns(specs[v], vars_[v], full)
            if cols is None:
                cols, cnames = block, bnames
            else:  # the first variable varies fastest
                cols = (cols[:, None, :] * block[:, :, None]).reshape(n, -1)
                cnames = [f"{a}:{b}" for b in bnames for a in cnames]
        assert cols is not None
        spans.append((":".join(term), list(range(start, start + cols.shape[1]))))
        start += cols.shape[1]
        blocks.append(cols)
        names.extend(cnames)
    x = np.empty((n, start), order=order)  # type: ignore[call-overload]
    if tl.intercept:
        x[:, 0] = 1.0
    for (_, idx), cols in zip(spans, blocks, strict=True):
        x[:, idx[0] : idx[0] + len(idx)] = cols
    return x, names, spans


@dataclass(frozen=True)
class ColumnBuilder:
    """Rebuilds a model matrix for new data with the encoding of the fit (used by ``predict``)."""

    terms: TermList
    """The right-hand side."""
    state: dict[str, Any] = field(repr=False)
    """The transforms' state (`_reval`), shared by the model's right-hand sides."""
    specs: tuple[tuple[str, _Spec], ...] = field(repr=False)
    coding: tuple[tuple[bool, ...], ...] = ()
    keep: tuple[int, ...] | None = None
    """Columns kept after dropping rank-deficient ones."""

    def term_columns(self) -> list[tuple[str, list[int]]]:
        """Return (term label, column indices) for each term other than the intercept.

        The indices are those of the matrix as built (before dropping columns).
        """
        first = 1 if self.terms.intercept else 0
        out = []
        for term, codes in zip(self.terms.terms, self.coding, strict=True):
            width = 1
            for v, full in zip(term, codes, strict=True):
                s = dict(self.specs)[v]
                width *= s.width if not s.levels else len(s.levels) - (0 if full else 1)
            out.append((":".join(term), list(range(first, first + width))))
            first += width
        return out

    def build(self, data: pd.DataFrame) -> np.ndarray:
        """Return the model matrix of ``data`` with the fit's columns."""
        ev = Evaluator(data, self.state, fitting=False, where="new data")
        specs = dict(self.specs)
        vars_: dict[str, Variable] = {}
        for label, node in self.terms.variables:
            if label not in specs:
                continue
            v = ev.variable(node)
            if isinstance(v, Factor) and not specs[label].levels:
                raise DataError(
                    f"{label!r} was numeric in the fit, and the new data have text or a factor "
                    "there; give numbers"
                )
            if isinstance(v, Factor):
                v = _on_levels(v, specs[label])
            elif v.values.shape[1] != specs[label].width:
                raise DataError(f"{label!r} gives {v.values.shape[1]} columns for the new data")
            vars_[label] = v
        x, _, _ = _assemble(self.terms, specs, vars_, self.coding, len(data))
        return x if self.keep is None else x[:, list(self.keep)]

    def offset(self, data: pd.DataFrame) -> np.ndarray | None:
        """Return the sum of the formula's ``offset()`` terms on ``data`` (None: none)."""
        if not self.terms.offsets:
            return None
        ev = Evaluator(data, self.state, fitting=False, where="new data")
        return sum_offsets(self.terms, ev)


def sum_offsets(tl: TermList, ev: Evaluator) -> np.ndarray | None:
    """Return the sum of the ``offset()`` terms (None when there are none)."""
    total: np.ndarray | None = None
    for node in tl.offsets:
        v = ev.variable(node)
        if isinstance(v, Factor) or v.values.shape[1] != 1:
            raise DataError("an offset must be one numeric column")
        total = v.values[:, 0] if total is None else total + v.values[:, 0]
    return total


def _on_levels(v: Factor, spec: _Spec) -> Factor:
    """Code a factor of new data on the fit's levels; refuse missing or unseen levels."""
    if (v.codes < 0).any():
        raise DataError(
            f"column {spec.label!r} of the new data has missing values; a factor's missing level "
            "cannot be predicted (lme4 refuses it too)"
        )
    index = {lab: i for i, lab in enumerate(spec.levels)}
    unknown = [lab for lab in v.levels if lab not in index]
    used = set(np.unique(v.codes).tolist())
    unseen = [lab for i, lab in enumerate(v.levels) if lab in unknown and i in used]
    if unseen:
        raise DataError(
            f"new data has levels of {spec.label!r} that the fit has not seen: "
            f"{', '.join(map(str, unseen[:10]))}"
        )
    remap = np.array([index.get(lab, -1) for lab in v.levels], dtype=np.int64)
    return Factor(remap[v.codes], spec.levels, spec.ordered, v.logical)


def model_matrix(
    tl: TermList, vars_: dict[str, Variable], state: dict[str, Any], n: int, order: str = "F"
) -> tuple[np.ndarray, list[str], ColumnBuilder]:
    """Return the model matrix of a right-hand side, R's column names, and its builder.

    ``vars_`` holds the variables on the rows used (`drop_unused` applied); the
    matrix is in Fortran (``order="F"``) or C order.
    """
    specs = {
        label: _spec(label, vars_[label])
        for label, _ in tl.variables
        if any(label in t for t in tl.terms)
    }
    coding = _coding(tl, vars_)
    x, names, _ = _assemble(tl, specs, vars_, coding, n, order)
    return x, names, ColumnBuilder(tl, state, tuple(specs.items()), coding)


def _clearly_independent(X: np.ndarray) -> bool:
    """Whether one or two columns are far from dependence (the Cholesky test in closed form).

    The sums by ``einsum``, not BLAS: a threaded BLAS dot of many rows costs far more than
    the sum on a busy machine, and its threads then spin against the core's.
    """
    x0 = X[:, 0]
    a = float(np.einsum("i,i->", x0, x0))
    if X.shape[1] == 1:
        return a > 0
    x1 = X[:, 1]
    b, c = float(np.einsum("i,i->", x1, x1)), float(np.einsum("i,i->", x0, x1))
    return a > 0 and b > 0 and 1.0 - c * c / (a * b) > 1e-8


def drop_dependent_columns(
    X: np.ndarray, names: list[str], tol: float = 1e-7
) -> tuple[np.ndarray, list[str], list[str]]:
    """Drop columns that are linear combinations of earlier ones; return (X, names, dropped).

    lme4 drops them with a message. A column is dependent when the diagonal
    of R in X = QR (columns scaled to unit length) is below ``tol``. The QR
    is skipped when the Cholesky factor of the scaled cross-product shows the
    columns far from dependence.
    """
    p = X.shape[1]
    if p == 0:
        return X, names, []
    if p <= 2 and _clearly_independent(X):
        return X, names, []
    xtx = X.T @ X
    norms = np.sqrt(np.diag(xtx))
    zero = norms == 0
    if not zero.any():
        g = xtx / np.outer(norms, norms)
        try:
            r = np.linalg.cholesky(g)
            if np.min(np.abs(np.diag(r))) > 1e-4:
                return X, names, []
        except np.linalg.LinAlgError:
            pass
    scaled = X / np.where(zero, 1.0, norms)
    rr = np.asarray(np.linalg.qr(scaled, mode="r"))  # R alone (the stubs say QRResult)
    d = np.zeros(p)
    m = min(rr.shape)
    d[:m] = np.abs(np.diag(rr)[:m])
    keep = (d > tol) & ~zero
    if keep.all():
        return X, names, []
    dropped = [n for n, k in zip(names, keep, strict=True) if not k]
    kept = np.asfortranarray(X[:, keep])
    return kept, [n for n, k in zip(names, keep, strict=True) if k], dropped
