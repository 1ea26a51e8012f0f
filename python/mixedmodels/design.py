"""From a parsed formula and a data frame to the model's arrays.

Produces y, X (fixed effects, treatment contrasts, lme4's column names), and
for each random-effects term its grouping codes, level labels and model
matrix, with the terms in lme4's order (decreasing number of levels, ties in
formula order). The layout of θ (per term, the lower triangle of the template
column by column) is the design's `ThetaLayout`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import pandas as pd

from ._columns import check_columns, is_numeric
from ._layout import TermLayout, ThetaLayout
from ._model_matrix import (
    ColumnBuilder,
    drop_dependent_columns,
    drop_unused,
    incomplete,
    model_matrix,
    model_variables,
    sum_offsets,
)
from ._reval import Evaluator, Factor, Numeric
from ._tables import Table, as_frame, plain_column
from .exceptions import DataError, FormulaError, RankDeficiencyWarning
from .formula import ParsedFormula, RandomTerm, names_in, parse_formula

__all__ = ["ColumnBuilder", "Design", "DesignAttributes", "ResponseHook", "TermDesign"]
__all__ += ["ThetaLayout", "aligned_values", "build_design"]


@dataclass(frozen=True)
class TermDesign:
    """One random-effects term, ready for the core."""

    group: str
    """lme4's name of the grouping factor (``'tch:sch'``)."""
    factors: tuple[str, ...]
    """The grouping variables."""
    cnames: tuple[str, ...]
    """Names of the term's columns (``'(Intercept)'``, ``'Days'``)."""
    codes: np.ndarray = field(repr=False)
    """0-based level of each row (int64)."""
    levels: pd.Index = field(repr=False)
    """Level labels, in lme4's order."""
    z: np.ndarray = field(repr=False)
    """The term's model matrix, n x k."""
    builder: ColumnBuilder = field(repr=False)
    """Makes the term's model matrix for new data."""

    @property
    def k(self) -> int:
        """Return the number of columns of the term's model matrix."""
        return self.z.shape[1]

    @property
    def n_levels(self) -> int:
        """Return the number of levels of the grouping factor."""
        return len(self.levels)

    @property
    def layout(self) -> TermLayout:
        """Return the term's part of the θ layout."""
        return TermLayout(self.group, self.cnames, self.n_levels)

    @property
    def theta_names(self) -> list[str]:
        """Return lme4's names of the term's θ elements."""
        return self.layout.theta_names

    @property
    def lower(self) -> list[float]:
        """Return the lower bounds of the term's θ elements."""
        return self.layout.lower


@dataclass(frozen=True)
class Design:
    """The model's arrays: lme4's ``lFormula`` output.

    Built by `build_design` from a formula and a data frame; rows with a
    missing value in a variable of the model are dropped.

    Examples
    --------
    >>> import mixedmodels as mm
    >>> d = mm.build_design("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    >>> d.n, d.x_names
    (180, ('(Intercept)', 'Days'))
    >>> d.layout.names
    ['Subject.(Intercept)', 'Subject.Days.(Intercept)', 'Subject.Days']
    """

    formula: ParsedFormula
    """The parsed formula."""
    y: np.ndarray = field(repr=False)
    """The response."""
    X: np.ndarray = field(repr=False)
    """The fixed-effects model matrix (n x p, Fortran order)."""
    x_names: tuple[str, ...]
    """Names of X's columns (R's)."""
    terms: tuple[TermDesign, ...]
    """The random-effects terms, in lme4's order."""
    row_index: pd.Index = field(repr=False)
    """Index labels of the data rows used (after dropping missing values)."""
    n_dropped: int
    """Rows dropped because a variable of the model was missing."""
    dropped_columns: tuple[str, ...]
    """Fixed-effects columns dropped for rank deficiency."""
    x_builder: ColumnBuilder = field(repr=False)
    """Makes X for new data."""
    weights: np.ndarray | None = field(default=None, repr=False)
    """Prior weights (None: all one)."""
    offset: np.ndarray | None = field(default=None, repr=False)
    """Offset added to the linear predictor (None: zero)."""
    offset_spec: str | None = None
    """The offset's column name, when given by name (read again from new data)."""
    n_obs: int | None = None
    """Rows used, when the rows are not kept (data read in chunks)."""
    offset_values: bool = False
    """Whether the ``offset`` argument was given as values (new data cannot have them)."""

    @property
    def n(self) -> int:
        """Return the number of observations used."""
        return len(self.y) if self.n_obs is None else self.n_obs

    @property
    def rows_kept(self) -> bool:
        """Whether the rows are kept (not for data read in chunks)."""
        return self.n_obs is None

    @property
    def p(self) -> int:
        """Return the number of fixed-effects columns."""
        return self.X.shape[1]

    @cached_property
    def layout(self) -> ThetaLayout:
        """Return the layout of θ: names, bounds, templates, Lind."""
        return ThetaLayout(tuple(t.layout for t in self.terms))

    @property
    def theta_names(self) -> list[str]:
        """Return lme4's names of the θ elements."""
        return self.layout.names

    @property
    def lower(self) -> np.ndarray:
        """Return the lower bounds of θ."""
        return self.layout.lower


ResponseHook = Callable[[Factor | Numeric], tuple[np.ndarray, np.ndarray | None]]
"""Reads a response variable: (y per data row, NaN where missing; weight factors or None)."""


class _HasDesign(Protocol):
    @property
    def design(self) -> Design: ...


class DesignAttributes:
    """The layout attributes that a model and its fit share, read from their `design`."""

    @property
    def formula(self: _HasDesign) -> str:
        """Return the formula as written."""
        return self.design.formula.text

    @property
    def nobs(self: _HasDesign) -> int:
        """Return the number of observations used."""
        return self.design.n

    @property
    def theta_names(self: _HasDesign) -> list[str]:
        """Return lme4's names of the θ elements."""
        return self.design.layout.names

    @property
    def lower(self: _HasDesign) -> np.ndarray:
        """Return the lower bounds of θ."""
        return self.design.layout.lower


def _grouping(term: RandomTerm, ev: Evaluator) -> tuple[np.ndarray, Sequence[str]]:
    """Return the codes (-1 where missing) and labels of the (interaction) grouping factor.

    For a:b the levels of a vary slowest, as R's a:b does; only combinations
    that occur are levels.
    """
    if len(term.factors) == 1:
        f = ev.grouping(term.factors[0])
        return f.codes, f.levels
    combined: np.ndarray = np.zeros(ev.n, dtype=np.int64)
    missing = np.zeros(ev.n, dtype=bool)
    labels: list[tuple[str, ...]] = []
    for name in term.factors:
        f = ev.grouping(name)
        combined = combined * len(f.levels) + f.codes
        missing |= f.codes < 0
        labels.append(f.levels)
    codes, used = pd.factorize(np.where(missing, -1, combined), sort=True, use_na_sentinel=True)
    used = np.asarray(used, dtype=np.int64)
    if missing.any():  # -1 sorts first: it is not a level
        codes = codes - 1
        used = used[1:]
    parts = []
    rem = used.copy()
    for labs in reversed(labels):
        parts.append(np.asarray(labs, dtype=object)[rem % len(labs)])
        rem //= len(labs)
    parts.reverse()
    lev = parts[0]
    for p in parts[1:]:
        lev = lev + ":" + p
    return codes.astype(np.int64, copy=False), list(lev)


def _used_levels(
    codes: np.ndarray, labels: Sequence[str], rows: np.ndarray | slice
) -> tuple[np.ndarray, Sequence[str]]:
    """Keep ``rows`` of a grouping factor and drop the levels no kept row uses."""
    codes = codes[rows]
    used = np.bincount(codes, minlength=len(labels)) > 0
    if used.all():
        return codes, labels
    return (np.cumsum(used) - 1)[codes], [lab for lab, u in zip(labels, used, strict=True) if u]


_LEVEL_INDEX: dict[tuple[int, str], tuple[Sequence[str], pd.Index]] = {}


def _level_index(labels: Sequence[str], name: str) -> pd.Index:
    """Return the levels as an Index named ``name``.

    A Categorical column's labels are the same tuple from fit to fit
    (`known_category_labels`): its Index is built once and handed out as a
    view (a view's name is its own).
    """
    if not isinstance(labels, tuple):
        return pd.Index(labels, dtype=object, name=name)
    key = (id(labels), name)
    hit = _LEVEL_INDEX.get(key)
    if hit is None or hit[0] is not labels:
        if len(_LEVEL_INDEX) >= 64:
            _LEVEL_INDEX.pop(next(iter(_LEVEL_INDEX)))
        hit = (labels, pd.Index(labels, dtype=object, name=name))
        _LEVEL_INDEX[key] = hit
    return hit[1].view()


def aligned_values(values: pd.Series, index: pd.Index, what: str) -> np.ndarray:
    """Return a Series' values in the order of ``index`` (pandas' alignment), as floats.

    A Series whose index holds other labels than ``index`` is refused: its
    values cannot be matched to the rows.
    """
    if not values.index.equals(index):
        same = (
            values.index.is_unique
            and index.is_unique
            and len(values) == len(index)
            and values.index.isin(index).all()
        )
        if not same:
            raise DataError(
                f"the index of the {what} Series does not match the data's rows; pass a Series "
                "indexed like the data, or the values in the data's row order as an array"
            )
        values = values.reindex(index)
    return values.to_numpy(dtype=np.float64, na_value=np.nan)


def _row_values(
    spec: str | npt.ArrayLike | None, data: pd.DataFrame, what: str
) -> np.ndarray | None:
    """Read a column name or one value per data row, as floats (NaN kept)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        check_columns({spec}, data, what)
        col = plain_column(data[spec])
        if not is_numeric(col):
            raise DataError(f"the {what} column {spec!r} must be numeric, not {col.dtype}")
        return col.to_numpy(dtype=np.float64, na_value=np.nan)
    if isinstance(spec, pd.Series):
        return aligned_values(spec, data.index, what)
    arr = np.asarray(spec, dtype=np.float64).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{what} has {arr.shape[0]} values; the data have {len(data)} rows")
    return arr


def build_design(
    formula: str | ParsedFormula,
    data: Table,
    weights: str | npt.ArrayLike | None = None,
    offset: str | npt.ArrayLike | None = None,
    response: ResponseHook | None = None,
) -> Design:
    """Build the model's arrays from an lme4 formula and a data frame (lme4's ``lFormula``).

    Parameters
    ----------
    formula
        lme4 formula, as text or parsed (`parse_formula`).
    data
        The data: a pandas, polars or pyarrow table, or a dict of columns; rows
        with a missing value in a variable of the model are dropped.
    weights
        Prior weights: a column name or one value per row of ``data``.
    offset
        Offset of the linear predictor: a column name or one value per row.
        Rows where the weights or the offset are missing are dropped too.
    response
        How to read the response variable (a factor or numeric columns), for
        models other than the linear one: returns y for every data row (NaN
        where missing) and factors the prior weights are multiplied by, or
        None (a GLMM's ``cbind(successes, failures)``: the numbers of trials).
        None: the response must be one numeric column.

    Returns
    -------
    Design
        X, y, the random-effects terms in lme4's order, and the θ layout.

    Raises
    ------
    FormulaError
        When the formula cannot be parsed or a term has no columns.
    DataError
        When a column is missing, the response is not numeric, or the
        grouping factors do not fit the data (lme4's checks).

    Examples
    --------
    >>> import mixedmodels as mm
    >>> d = mm.build_design("Reaction ~ Days + (1 | Subject)", mm.datasets.load("sleepstudy"))
    >>> d.X.shape, [(t.group, t.n_levels) for t in d.terms]
    ((180, 2), [('Subject', 18)])
    """
    pf = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    data = as_frame(data)
    if len(data) == 0:
        raise DataError("the data frame has no rows")
    _check_names(pf, data)
    state: dict[str, Any] = {}
    ev = Evaluator(data, state, fitting=True, where="model")
    response_var = ev.variable(pf.response_node)
    trials = None
    if response is not None:
        y_all, trials = response(response_var)
    elif isinstance(response_var, Factor) or response_var.values.shape[1] != 1:
        kind = "a factor" if isinstance(response_var, Factor) else "several columns"
        raise DataError(f"the response {pf.response!r} must be numeric, but it is {kind}")
    else:
        y_all = response_var.values[:, 0]
    values = model_variables([pf.fixed_terms, *(t.terms for t in pf.random)], ev)
    f_off = sum_offsets(pf.fixed_terms, ev)
    w_all = _row_values(weights, data, "weights")
    o_all = _row_values(offset, data, "offset")
    if f_off is not None:
        o_all = f_off if o_all is None else o_all + f_off
    if trials is not None:
        w_all = trials if w_all is None else w_all * trials
    groupings = [_grouping(t, ev) for t in pf.random]
    missing = incomplete(y_all, values, [codes for codes, _ in groupings], [w_all, o_all])
    n_dropped = int(missing.sum())
    if n_dropped == len(data):
        raise DataError(
            f"no rows left after dropping the {n_dropped} rows with missing values "
            "in the model's variables"
        )
    rows: np.ndarray | slice = ~missing if n_dropped else slice(None)
    row_index = data.index[~missing] if n_dropped else data.index
    used = {label: drop_unused(v, rows) for label, v in values.items()}
    y = y_all[rows]
    w = None if w_all is None else w_all[rows]
    off = None if o_all is None else o_all[rows]
    if w is not None and not (np.isfinite(w).all() and (w > 0).all()):
        raise DataError("prior weights must be finite and positive")
    if off is not None and not np.isfinite(off).all():
        raise DataError("the offset has non-finite values")
    if not np.isfinite(y).all():
        raise DataError(f"the response {pf.response!r} has non-finite values")

    n = len(y)
    X, x_names, x_builder = model_matrix(pf.fixed_terms, used, state, n)
    all_x_names = list(x_names)
    if not np.isfinite(X).all():
        raise DataError("the fixed-effects model matrix has non-finite values")
    X, x_names, dropped = drop_dependent_columns(X, x_names)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient"
            f"{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    terms = []
    for t, (all_codes, all_labels) in zip(pf.random, groupings, strict=True):
        z, cnames, z_builder = model_matrix(t.terms, used, state, n, order="C")
        if z.shape[1] == 0:
            raise FormulaError(f"the random-effects term ({t.expr} | {t.group}) has no columns")
        if not np.isfinite(z).all():
            raise DataError(f"the model matrix of ({t.expr} | {t.group}) has non-finite values")
        codes, labels = _used_levels(all_codes, all_labels, rows)
        levels = _level_index(labels, t.group)
        nl = len(levels)
        if nl < 2:
            raise DataError(f"grouping factor {t.group!r} must have more than 1 sampled level")
        if nl >= n:
            raise DataError(
                f"number of levels of each grouping factor must be < number of observations "
                f"(problems: {t.group} has {nl} levels for {n} observations)"
            )
        if nl * z.shape[1] >= n:
            raise DataError(
                f"number of observations (={n}) <= number of random effects "
                f"(={nl * z.shape[1]}) for term ({t.expr} | {t.group}); the random-effects "
                "parameters and the residual variance are probably unidentifiable"
            )
        terms.append(
            TermDesign(
                group=t.group,
                factors=t.factors,
                cnames=tuple(cnames),
                codes=codes,
                levels=levels,
                z=z,
                builder=z_builder,
            )
        )
    # lme4 orders the terms by decreasing number of levels (stable)
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    return Design(
        formula=pf,
        y=y,
        X=X,
        x_names=tuple(x_names),
        terms=tuple(terms),
        row_index=row_index,
        n_dropped=n_dropped,
        dropped_columns=tuple(dropped),
        weights=w,
        offset=off,
        x_builder=replace(
            x_builder, keep=tuple(i for i, nm in enumerate(all_x_names) if nm in x_names)
        )
        if dropped
        else x_builder,
        offset_spec=offset if isinstance(offset, str) else None,
        offset_values=offset is not None and not isinstance(offset, str),
    )


def _check_names(pf: ParsedFormula, data: pd.DataFrame) -> None:
    """Raise `DataError` naming the first variable of the formula that is not a column."""
    have = set(data.columns)
    if pf.variable_names <= have:  # the usual case: one set test
        return
    consts = set() if "pi" in have else {"pi"}
    check_columns(names_in(pf.response_node) - consts, data, "response")
    check_columns(pf.fixed_terms.columns - consts, data, "fixed effects")
    for t in pf.random:
        check_columns(t.terms.columns - consts, data, f"random effects ({t.expr} | {t.group})")
        check_columns(set(t.factors), data, f"grouping factor of ({t.expr} | {t.group})")
