"""Columns of a data frame as R reads them: which are numeric, factor codes and R's level labels."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import DataError

__all__ = ["check_columns", "factor_codes", "is_numeric", "value_labels"]


def check_columns(names: Iterable[str], data: pd.DataFrame, where: str) -> None:
    """Raise `DataError` naming the closest column when a name is not in ``data``."""
    columns = data.columns
    for name in sorted(names):
        if name not in columns:
            cols = [str(c) for c in columns]
            close = difflib.get_close_matches(name, cols, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"column {name!r} ({where}) is not in the data{hint}")


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


_CATEGORY_LABELS: dict[int, tuple[pd.CategoricalDtype, tuple[str, ...]]] = {}


def known_category_labels(dtype: pd.CategoricalDtype) -> tuple[str, ...] | None:
    """Return the labels of a Categorical dtype already read (`_category_labels`), or None."""
    hit = _CATEGORY_LABELS.get(id(dtype))
    return hit[1] if hit is not None and hit[0] is dtype else None


def _category_labels(s: pd.Series) -> tuple[str, ...]:
    """Return the labels of a Categorical's categories, once per dtype.

    A CategoricalDtype is immutable, and a data set's column keeps its dtype
    object from fit to fit: its labels (checked for collisions) are kept,
    keyed by the object, the object itself held so that its id stays its own.
    """
    dtype = s.dtype
    assert isinstance(dtype, pd.CategoricalDtype)
    hit = known_category_labels(dtype)
    if hit is not None:
        return hit
    cats = dtype.categories
    labels = _labels(cats)
    _distinct_labels(s, cats, labels)
    if len(_CATEGORY_LABELS) >= 64:
        _CATEGORY_LABELS.pop(next(iter(_CATEGORY_LABELS)))
    _CATEGORY_LABELS[id(dtype)] = (dtype, tuple(labels))
    return tuple(labels)


def factor_codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Return the codes and labels of a grouping variable, in R's level order.

    Missing values have the code -1. Raises `DataError` when two distinct
    values have the same label.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        return np.asarray(s.array.codes, dtype=np.int64), list(_category_labels(s))
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
        labs = np.asarray(_category_labels(s), dtype=object)
        codes = np.asarray(s.array.codes)
    else:
        codes, uniques = pd.factorize(s, sort=False)
        labs = np.asarray(_labels(uniques), dtype=object)
    out = np.full(len(codes), None, dtype=object)  # None for a missing value (code -1)
    out[codes >= 0] = labs[codes[codes >= 0]]
    return out
