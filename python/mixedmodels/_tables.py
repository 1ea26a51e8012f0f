"""Tables in: pandas, polars, pyarrow and dicts of columns as one pandas DataFrame.

Every function that takes data (`build_design`, so `lmer` and
`LinearMixedModel.from_formula`, and `predict`) calls `as_frame` first; the
rest of the package sees only pandas. The conversion keeps what each column
means, never going through text: dictionary (categorical) columns stay
categorical with their level order, strings stay strings, integers stay
integers (nullable ``Int64`` when they have nulls), booleans stay booleans,
and nulls become missing values. polars and pyarrow are not dependencies:
a polars frame (or any other eager frame narwhals knows) goes through
narwhals column by column, a pyarrow table through pyarrow, which the caller
has since they hold one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from .exceptions import DataError

__all__ = ["Table", "as_frame", "plain_column"]

Table = Any
"""Data a function accepts: a pandas, polars or pyarrow table, or a dict of columns
(`as_frame` converts; the alias documents the intent, as the types have no common base)."""

_WHAT = "a pandas, polars or pyarrow table, or a dict of columns"


def as_frame(data: object, what: str = "data") -> pd.DataFrame:
    """Return ``data`` as a pandas DataFrame (a pandas DataFrame itself is not copied).

    Parameters
    ----------
    data
        A pandas DataFrame, a polars DataFrame, a pyarrow Table or
        RecordBatch, any eager table that narwhals supports, an object with
        the Arrow stream interface (with pyarrow installed), or a dict
        mapping column names to 1-d arrays, lists or pandas Series.
    what
        How the argument is called in error messages (``"data"``, ``"newdata"``).

    Returns
    -------
    pandas.DataFrame
        The same columns, with dtypes that keep their meaning.

    Raises
    ------
    DataError
        For anything else, for columns of different lengths or not 1-d, and
        for duplicated or multi-level column names (a name must pick one
        column).

    Examples
    --------
    >>> as_frame({"y": [1.0, 2.0], "n": [1, None]}).dtypes.astype(str).tolist()
    ['float64', 'Int64']
    """
    if isinstance(data, pd.DataFrame):
        frame = data  # its pyarrow-backed columns are read through `plain_column`
    elif isinstance(data, Mapping):
        frame = _unwrap_arrow_dtypes(_from_dict(data, what))
    elif _is_pyarrow(data):
        frame = _from_arrow(data)
    else:
        frame = _from_narwhals(data, what)
    _check_names(frame, what)
    return frame


def _describe(obj: object) -> str:
    t = type(obj)
    mod = t.__module__.split(".")[0]
    return t.__name__ if mod == "builtins" else f"{mod}.{t.__name__}"


def _check_names(frame: pd.DataFrame, what: str) -> None:
    if isinstance(frame.columns, pd.MultiIndex):
        raise DataError(
            f"{what} has multi-level column names; flatten them first "
            "(e.g. df.columns = ['_'.join(map(str, c)) for c in df.columns])"
        )
    if not frame.columns.is_unique:
        dup = frame.columns[frame.columns.duplicated()].unique()
        raise DataError(
            f"{what} has duplicated column names: {', '.join(map(repr, dup[:10]))}; "
            "a variable name must pick one column"
        )


# -- a dict of columns ------------------------------------------------------------------
def _dict_column(name: object, values: object, what: str) -> pd.Series | np.ndarray | Any:
    if isinstance(values, pd.Series):
        return values
    if isinstance(values, pd.Categorical | pd.api.extensions.ExtensionArray):
        return values
    if isinstance(values, np.ndarray):
        if values.ndim != 1:
            raise DataError(
                f"column {name!r} of the {what} dict has shape {values.shape}; "
                "each column must be one-dimensional"
            )
        return values
    if isinstance(values, list | tuple | range):
        s = pd.Series(list(values))
        if s.dtype.kind in "fO" and s.isna().any():
            arr = pd.array(list(values))  # ints or booleans with None: keep their type
            if isinstance(arr.dtype, pd.Int64Dtype | pd.BooleanDtype):
                return arr
        return s.array
    if np.ndim(values) == 0:  # type: ignore[arg-type]
        raise DataError(
            f"column {name!r} of the {what} dict is a single value ({values!r}); "
            "give one value per row"
        )
    try:
        return _narwhals_series(values)
    except (ImportError, TypeError):
        raise DataError(
            f"column {name!r} of the {what} dict is a {_describe(values)}; "
            "give a list, a 1-d numpy array or a Series"
        ) from None


def _from_dict(data: Mapping[Any, object], what: str) -> pd.DataFrame:
    cols = {k: _dict_column(k, v, what) for k, v in data.items()}
    lengths = {k: len(v) for k, v in cols.items()}
    if len(set(lengths.values())) > 1:
        shown = ", ".join(f"{k!r}: {n}" for k, n in lengths.items())
        raise DataError(f"the columns of the {what} dict have different lengths ({shown})")
    series = [v for v in cols.values() if isinstance(v, pd.Series)]
    if series and any(not s.index.equals(series[0].index) for s in series[1:]):
        raise DataError(
            f"the Series in the {what} dict have different indexes; align them first "
            "(pd.DataFrame(...)) or pass arrays"
        )
    index = series[0].index if series else None
    out = {
        k: (v if isinstance(v, pd.Series) else pd.Series(v, index=index, copy=False))
        for k, v in cols.items()
    }
    return pd.DataFrame(out, index=index if index is not None else pd.RangeIndex(_n(lengths)))


def _n(lengths: dict[Any, int]) -> int:
    return next(iter(lengths.values()), 0)


# -- pyarrow ----------------------------------------------------------------------------
def _is_pyarrow(obj: object) -> bool:
    mod = type(obj).__module__
    if mod.startswith("pyarrow") and type(obj).__name__ in ("Table", "RecordBatch"):
        return True
    if hasattr(obj, "__arrow_c_stream__") and not _narwhals_knows(obj):
        try:
            import pyarrow  # noqa: F401
        except ImportError:
            return False
        return True
    return False


def _from_arrow(obj: Any) -> pd.DataFrame:
    import pyarrow as pa

    table = obj if isinstance(obj, pa.Table) else pa.table(obj)
    cols = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        cols[name] = _arrow_column(col)
    return pd.DataFrame(cols, index=pd.RangeIndex(table.num_rows))


def column_values(frame: pd.DataFrame, name: str) -> Any:
    """Return a column's values (a numpy array or a pandas extension array), without a Series.

    Building a Series costs more than a small fit's design; pandas' own
    accessor of a column's array is used when it exists (pandas 2 and 3), the
    Series' array otherwise.
    """
    get = getattr(frame, "_get_column_array", None)
    if get is not None:
        loc = frame.columns.get_loc(name)
        if isinstance(loc, int):
            return get(loc)
    return frame[name].array


def plain_column(s: pd.Series) -> pd.Series:
    """Return a column of a pandas frame as the other tables' columns read (ArrowDtype unwrapped).

    Columns are read through this where they are used (not the whole frame up
    front: a frame's dtypes cost more than a small fit's design).
    """
    if not isinstance(s.dtype, pd.ArrowDtype):
        return s
    import pyarrow as pa

    arr = pa.array(s.array)
    chunked = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
    return pd.Series(_arrow_column(chunked), index=s.index, name=s.name, copy=False)


def _unwrap_arrow_dtypes(frame: pd.DataFrame) -> pd.DataFrame:
    """Return the frame with its pandas ArrowDtype columns as the other tables' columns.

    ``read_parquet(dtype_backend="pyarrow")`` gives such columns: a dictionary
    column would otherwise lose its level order, and numbers with nulls their
    missing values. The index is kept. A frame without them is returned as it is.
    """
    cols = [c for c, dt in frame.dtypes.items() if isinstance(dt, pd.ArrowDtype)]
    if not cols:
        return frame
    import pyarrow as pa

    out = frame.copy(deep=False)
    for c in cols:
        arr = pa.array(frame[c].array)
        chunked = arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr])
        out[c] = pd.Series(_arrow_column(chunked), index=frame.index, copy=False)
    return out


def _arrow_column(col: Any) -> Any:
    """Return a pyarrow ChunkedArray as a pandas array (not a Series: no index)."""
    import pyarrow as pa

    t = col.type
    if pa.types.is_dictionary(t):
        # one dictionary for all chunks; pandas keeps its order as the categories
        one = col.unify_dictionaries() if col.num_chunks > 1 else col
        return one.to_pandas().array
    if pa.types.is_decimal(t):
        return col.cast(pa.float64()).to_numpy()
    has_nulls = col.null_count > 0
    if has_nulls and pa.types.is_integer(t):
        values = col.fill_null(0).to_numpy()
        return pd.arrays.IntegerArray(values, col.is_null().to_numpy(zero_copy_only=False))
    if has_nulls and pa.types.is_boolean(t):
        values = col.fill_null(False).to_numpy(zero_copy_only=False)
        return pd.arrays.BooleanArray(values, col.is_null().to_numpy(zero_copy_only=False))
    return col.to_pandas().array


# -- polars and the other tables narwhals knows ------------------------------------------
def _narwhals_knows(obj: Any) -> bool:
    try:
        import narwhals as nw
    except ImportError:
        return False
    try:
        nw.from_native(obj, eager_only=True)
    except TypeError:
        return False
    return True


def _from_narwhals(obj: Any, what: str) -> pd.DataFrame:
    try:
        import narwhals as nw

        frame = nw.from_native(obj, eager_only=True)
    except (ImportError, TypeError):
        hint = "; collect() it first" if hasattr(obj, "collect") else ""
        raise DataError(f"{what} must be {_WHAT}, not {_describe(obj)}{hint}") from None
    cols = {name: _narwhals_column(frame[name]) for name in frame.columns}
    return pd.DataFrame(cols, index=pd.RangeIndex(len(frame)))


def _narwhals_series(values: object) -> Any:
    import narwhals as nw

    return _narwhals_column(nw.from_native(values, series_only=True))


def _narwhals_column(s: Any) -> Any:
    import narwhals as nw

    dt = s.dtype
    if isinstance(dt, nw.Enum):  # a fixed level order
        return pd.Categorical(s.to_numpy(), categories=list(dt.categories))
    if isinstance(dt, nw.Categorical):  # polars orders its categoricals lexically, as R
        return pd.Categorical(s.to_numpy())
    if isinstance(dt, nw.Decimal):
        return s.cast(nw.Float64).to_numpy()
    if s.null_count() > 0:
        mask = s.is_null().to_numpy()
        if dt.is_integer():
            return pd.arrays.IntegerArray(s.fill_null(0).to_numpy(), mask)
        if isinstance(dt, nw.Boolean):
            return pd.arrays.BooleanArray(s.fill_null(False).to_numpy().astype(bool), mask)
    return s.to_numpy()  # strings: an object array, None for a null
