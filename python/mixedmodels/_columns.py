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


def _labels(values: Any) -> list[str]:
    """R's labels of factor levels: integer-valued numbers without '.0'."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return list(arr.astype(str).tolist())
    if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
        return list(arr.astype(np.int64).astype(str).tolist())
    return [str(v) for v in values]


def factor_codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Return the codes and labels of a grouping variable, in R's level order."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(np.int64), _labels(s.cat.categories)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(np.int64), ["FALSE", "TRUE"]
    codes, uniques = pd.factorize(s, sort=True)
    return codes.astype(np.int64, copy=False), _labels(uniques)


def value_labels(s: pd.Series) -> np.ndarray:
    """Return the level label of each value of a factor-like column (object array).

    A missing value has the label None.
    """
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.asarray(_labels(s.cat.categories), dtype=object)
        codes = s.cat.codes.to_numpy()
        out = np.full(len(codes), None, dtype=object)
        out[codes >= 0] = cats[codes[codes >= 0]]
        return out
    if pd.api.types.is_bool_dtype(s):
        return np.where(s.to_numpy(), "TRUE", "FALSE").astype(object)
    codes, uniques = pd.factorize(s, sort=True)
    labs = np.asarray(_labels(uniques), dtype=object)
    out = np.full(len(codes), None, dtype=object)  # None for a missing value (code -1)
    out[codes >= 0] = labs[codes[codes >= 0]]
    return out
