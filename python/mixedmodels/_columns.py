"""Model-matrix columns from a data frame, with R's coding and names.

Factors get treatment contrasts with R's level labels; sums of plain column
names are built directly, anything else through formulaic. `ColumnBuilder`
remembers the encoding so that new data get the same columns.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import DataError, FormulaError
from .formula import Terms

__all__ = [
    "ColumnBuilder",
    "check_columns",
    "factor_codes",
    "is_numeric",
    "model_matrix",
    "value_labels",
    "variables",
]


def check_columns(names: Iterable[str], data: pd.DataFrame, where: str) -> None:
    """Raise `DataError` naming the closest column when a name is not in ``data``."""
    cols = [str(c) for c in data.columns]
    for name in sorted(names):
        if name not in data.columns:
            close = difflib.get_close_matches(name, cols, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"column {name!r} ({where}) is not in the data{hint}")


def _r_name(name: str) -> str:
    """Turn formulaic's column names into R's: Intercept -> (Intercept), x[T.a] -> xa."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[T\.(.*?)\]", r"\1", name)


def is_numeric(s: pd.Series) -> bool:
    """Whether a column is numeric (booleans are factors, as in R)."""
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_factor(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or s.dtype == object
    )


_WHOLE_BELOW = 2.0**64  # integer-valued floats below this get their exact integer label


def _label(v: object) -> str:
    """Return the label of one level value; it depends on the value alone.

    Integers and integer-valued floats print as integers (R's ``1``, not
    ``1.0``), exactly, whatever the other values of the column; other
    floats print as the shortest text that reads back as the same number
    (``1.5``, ``1e+20``, ``inf``); booleans as R's ``TRUE``/``FALSE``.
    """
    if isinstance(v, bool | np.bool_):
        return "TRUE" if v else "FALSE"
    if isinstance(v, int | np.integer):
        return str(int(v))
    if isinstance(v, float | np.floating):
        f = float(v)
        if f.is_integer() and abs(f) < _WHOLE_BELOW:
            return str(int(f))
        # float32 values print at their own precision, so 0.1 stays '0.1'
        return repr(f) if isinstance(v, float) or v.dtype.itemsize >= 8 else str(v)
    return str(v)


def _labels(values: Any) -> list[str]:
    """R's labels of factor levels, value by value (see `_label`); vectorized for numbers."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return list(arr.astype(str).tolist())
    if arr.dtype.kind == "f" and arr.dtype.itemsize == 8:
        out = np.empty(len(arr), dtype=object)
        small = np.zeros(len(arr), dtype=bool)
        fin = np.isfinite(arr)
        small[fin] = (arr[fin] == np.trunc(arr[fin])) & (np.abs(arr[fin]) < 2.0**62)
        out[small] = arr[small].astype(np.int64).astype(str)
        out[~small] = [_label(v) for v in arr[~small].tolist()]
        return list(out.tolist())
    if arr.dtype.kind == "U" or (
        arr.dtype == object and pd.api.types.infer_dtype(arr, skipna=False) == "string"
    ):
        return list(arr.tolist())  # text is its own label
    return [_label(v) for v in arr.tolist()]


def _distinct_labels(s: pd.Series, values: Any, labels: list[str]) -> None:
    """Refuse a column whose distinct values print the same (the int 1 and the str '1').

    Levels are matched by label (new data in `predict`, R's names), so two
    levels with one label would be confused. R has a single type per column
    and makes them one level; here the column has to be made uniform first.
    """
    # distinct numbers or distinct strings have distinct labels: only a column that
    # mixes types can collide
    if np.asarray(values).dtype.kind != "O" or len(set(labels)) == len(labels):
        return
    seen: dict[str, object] = {}
    for v, lab in zip(np.asarray(values, dtype=object).tolist(), labels, strict=True):
        if lab in seen:
            a = seen[lab]
            raise DataError(
                f"column {s.name!r} has distinct values that read the same as a level: "
                f"{a!r} ({type(a).__name__}) and {v!r} ({type(v).__name__}); convert the "
                f"column to one type first (e.g. data[{s.name!r}].astype(str))"
            )
        seen[lab] = v


def factor_codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Return the codes and labels of a grouping variable, in R's level order.

    Missing values have the code -1. Raises `DataError` when two distinct
    values have the same label.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = s.cat.categories
        labels = _labels(cats)
        _distinct_labels(s, cats, labels)
        return s.cat.codes.to_numpy(np.int64), labels
    if pd.api.types.is_bool_dtype(s) and not s.hasnans:
        return s.to_numpy(np.int64), ["FALSE", "TRUE"]
    codes, uniques = pd.factorize(s, sort=True)
    labels = _labels(uniques)
    _distinct_labels(s, uniques, labels)
    return codes.astype(np.int64, copy=False), labels


def value_labels(s: pd.Series) -> np.ndarray:
    """Return the level label of each value of a factor-like column (object array).

    A missing value has the label None. The label of a value does not depend
    on the other values (`_label`), so new data label a level as the fit did.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        labs = np.asarray(_labels(s.cat.categories), dtype=object)
        codes = s.cat.codes.to_numpy()
    else:
        codes, uniques = pd.factorize(s, sort=False)
        labs = np.asarray(_labels(uniques), dtype=object)
    out = np.full(len(codes), None, dtype=object)  # None for a missing value (code -1)
    out[codes >= 0] = labs[codes[codes >= 0]]
    return out


@dataclass(frozen=True)
class ColumnBuilder:
    """Rebuilds a model matrix for new data with the encoding of the fit.

    The same columns, factor levels and contrasts (used by ``predict``).
    """

    parts: tuple[tuple[Any, ...], ...] = ()
    """Direct path, per block of columns: ("1",), ("num", col), or
    ("fac", col, labels of the indicator columns, labels of all levels seen)."""
    spec: Any = None
    """formulaic's model spec, when formulaic built the matrix."""
    keep: tuple[int, ...] | None = None
    """Columns kept after dropping rank-deficient ones."""

    def term_columns(self) -> list[tuple[str, list[int]]]:
        """Return (term label, column indices) for each term other than the intercept.

        The indices are those of the matrix as built (before dropping columns).
        """
        out: list[tuple[str, list[int]]] = []
        if self.spec is not None:
            for term, idx in self.spec.term_indices.items():
                if str(term) != "1":
                    out.append((str(term), list(idx)))
            return out
        pos = 0
        for part in self.parts:
            width = 1 if part[0] in ("1", "num") else len(part[2])
            if part[0] != "1":
                out.append((part[1], list(range(pos, pos + width))))
            pos += width
        return out

    def build(self, data: pd.DataFrame) -> np.ndarray:
        """Return the model matrix of ``data`` with the fit's columns."""
        n = len(data)
        if self.spec is not None:
            try:
                mm = self.spec.get_model_matrix(data, na_action="ignore")
            except Exception as e:
                raise DataError(f"cannot build the model matrix for the new data: {e}") from None
            out = mm.to_numpy(dtype=np.float64)
        else:
            cols: list[np.ndarray] = []
            for part in self.parts:
                if part[0] == "1":
                    cols.append(np.ones(n))
                elif part[0] == "num":
                    check_columns({part[1]}, data, "new data")
                    cols.append(data[part[1]].to_numpy(dtype=np.float64))
                else:
                    _, col, labels, known = part
                    check_columns({col}, data, "new data")
                    vals = value_labels(data[col])
                    if any(v is None for v in vals):
                        raise DataError(
                            f"column {col!r} of the new data has missing values; a factor's "
                            "missing level cannot be predicted (lme4 refuses it too)"
                        )
                    unknown = sorted(set(vals) - set(known) - {None})
                    if unknown:
                        raise DataError(
                            f"new data has levels of {col!r} that the fit has not seen: "
                            f"{', '.join(map(str, unknown[:10]))}"
                        )
                    cols.extend((vals == lab).astype(np.float64) for lab in labels)
            out = np.column_stack(cols) if cols else np.empty((n, 0))
        if self.keep is not None:
            out = out[:, list(self.keep)]
        return out


def _dummies(s: pd.Series, full: bool) -> tuple[list[np.ndarray], list[str], tuple, tuple]:
    """Return the indicator columns of a factor, unused levels dropped.

    Treatment contrasts (first level the baseline) or, with ``full``, one
    column per level. Also returns the labels of the columns' levels and of
    all used levels.
    """
    codes, labs = factor_codes(s)
    used = np.bincount(codes[codes >= 0], minlength=len(labs)) > 0
    levels = [i for i in range(len(labs)) if used[i]]
    all_used = tuple(labs[i] for i in levels)
    if not full:
        levels = levels[1:]
    cols = [(codes == i).astype(np.float64) for i in levels]
    return cols, [f"{s.name}{labs[i]}" for i in levels], tuple(labs[i] for i in levels), all_used


def _direct_columns(terms: Terms, data: pd.DataFrame) -> dict[str, pd.Series] | None:
    """Return the columns of a sum of plain numeric or factor columns by name, or None."""
    names = terms.names
    if names is None or len(set(names)) < len(names):
        return None
    if any(c not in data.columns for c in names):
        return None
    cols = {c: data[c] for c in names}
    return cols if all(is_numeric(s) or _is_factor(s) for s in cols.values()) else None


def model_matrix(terms: Terms, data: pd.DataFrame) -> tuple[np.ndarray, list[str], ColumnBuilder]:
    """Return the model matrix of a right-hand side, R's column names, and its builder.

    Sums of plain column names (numeric columns, and factors with treatment
    contrasts, with ``1``/``0``/``-1``) are built directly; anything else goes
    through formulaic. The builder makes the same columns for new data.
    """
    columns = _direct_columns(terms, data)
    n = len(data)
    if columns is not None:
        intercept = terms.intercept
        cols: list[np.ndarray] = [np.ones(n)] if intercept else []
        out_names = ["(Intercept)"] if intercept else []
        parts: list[tuple[Any, ...]] = [("1",)] if intercept else []
        full = not intercept  # R: without an intercept the first factor is coded in full
        for c, s in columns.items():
            if is_numeric(s):
                cols.append(s.to_numpy(dtype=np.float64))
                out_names.append(c)
                parts.append(("num", c))
            else:
                dcols, dnames, dlabels, all_used = _dummies(s, full)
                full = False
                cols.extend(dcols)
                out_names.extend(dnames)
                parts.append(("fac", c, dlabels, all_used))
        out = np.column_stack(cols) if cols else np.empty((n, 0))
        return out, out_names, ColumnBuilder(parts=tuple(parts))
    from formulaic import model_matrix as formulaic_model_matrix

    try:
        mm = formulaic_model_matrix(terms.text, data, na_action="ignore")
    except Exception as e:
        raise FormulaError(f"cannot build the model matrix of {terms.text!r}: {e}") from None
    names_out = [_r_name(str(c)) for c in mm.columns]
    return mm.to_numpy(dtype=np.float64), names_out, ColumnBuilder(spec=mm.model_spec)


def variables(terms: Terms) -> set[str]:
    """Return the variables a right-hand side refers to (via formulaic unless plain names)."""
    plain = terms.variables
    if plain is not None:
        return plain
    from formulaic import Formula

    try:
        return set(Formula(terms.text).required_variables)
    except Exception as e:  # formulaic raises several exception types
        raise FormulaError(f"cannot parse {terms.text!r}: {e}") from None
