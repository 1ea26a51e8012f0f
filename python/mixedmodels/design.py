"""From a parsed formula and a data frame to the model's arrays.

Produces y, X (fixed effects, treatment contrasts, lme4's column names), and
for each random-effects term its grouping codes, level labels and model
matrix, with the terms in lme4's order (decreasing number of levels, ties in
formula order) and θ laid out as lme4 lays it out (per term, the lower
triangle of the template column by column).
"""

from __future__ import annotations

import difflib
import re
import warnings
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from .exceptions import DataError, FormulaError, RankDeficiencyWarning
from .formula import ParsedFormula, RandomTerm, parse_formula

__all__ = ["Design", "TermDesign", "build_design"]


@dataclass(frozen=True)
class TermDesign:
    """One random-effects term, ready for the core."""

    group: str
    """lme4's name of the grouping factor (``'tch:sch'``)."""
    factors: tuple[str, ...]
    cnames: tuple[str, ...]
    """Names of the term's columns (``'(Intercept)'``, ``'Days'``)."""
    codes: np.ndarray = field(repr=False)
    """0-based level of each row (int64)."""
    levels: pd.Index = field(repr=False)
    """Level labels, in lme4's order."""
    z: np.ndarray = field(repr=False)
    """The term's model matrix, n x k."""
    builder: ColumnBuilder | None = field(default=None, repr=False)
    """Makes the term's model matrix for new data."""

    @property
    def k(self) -> int:
        return self.z.shape[1]

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def theta_names(self) -> list[str]:
        out = []
        for c in range(self.k):
            for r in range(c, self.k):
                if r == c:
                    out.append(f"{self.group}.{self.cnames[c]}")
                else:
                    out.append(f"{self.group}.{self.cnames[r]}.{self.cnames[c]}")
        return out

    @property
    def lower(self) -> list[float]:
        return [0.0 if r == c else -np.inf for c in range(self.k) for r in range(c, self.k)]


@dataclass(frozen=True)
class Design:
    formula: ParsedFormula
    y: np.ndarray = field(repr=False)
    X: np.ndarray = field(repr=False)
    x_names: tuple[str, ...]
    terms: tuple[TermDesign, ...]
    row_index: pd.Index = field(repr=False)
    """Index labels of the data rows used (after dropping missing values)."""
    n_dropped: int
    """Rows dropped because a variable of the model was missing."""
    dropped_columns: tuple[str, ...]
    """Fixed-effects columns dropped for rank deficiency."""
    weights: np.ndarray | None = field(default=None, repr=False)
    """Prior weights (None: all one)."""
    offset: np.ndarray | None = field(default=None, repr=False)
    """Offset added to the linear predictor (None: zero)."""
    x_builder: ColumnBuilder | None = field(default=None, repr=False)
    """Makes X for new data."""
    offset_spec: str | None = None
    """The offset's column name, when given by name (read again from new data)."""

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]

    @property
    def theta_names(self) -> list[str]:
        return [n for t in self.terms for n in t.theta_names]

    @property
    def lower(self) -> np.ndarray:
        return np.array([v for t in self.terms for v in t.lower])


_SIMPLE_NAME = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")


def _variables(expr: str, data_columns) -> set[str]:
    """Variables an expression refers to (via formulaic unless it is a plain
    sum of names)."""
    pieces = [p.strip() for p in re.split(r"\s*[+-]\s*", expr.strip())]
    if all(p in ("0", "1") or _SIMPLE_NAME.fullmatch(p) for p in pieces):
        return {p.strip("`") for p in pieces if p not in ("0", "1")}
    from formulaic import Formula

    try:
        f = Formula(expr)
        return set(f.required_variables)
    except Exception as e:  # formulaic raises several exception types
        raise FormulaError(f"cannot parse {expr!r}: {e}") from None


def _check_columns(names: set[str], data: pd.DataFrame, where: str) -> None:
    cols = [str(c) for c in data.columns]
    for name in sorted(names):
        if name not in data.columns:
            close = difflib.get_close_matches(name, cols, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise DataError(f"column {name!r} ({where}) is not in the data{hint}")


def _r_name(name: str) -> str:
    """formulaic column names to R's: Intercept -> (Intercept), x[T.a] -> xa."""
    if name == "Intercept":
        return "(Intercept)"
    return re.sub(r"\[T\.(.*?)\]", r"\1", name)


def _is_numeric(s: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s)


def _is_factor(s: pd.Series) -> bool:
    return (
        isinstance(s.dtype, pd.CategoricalDtype)
        or pd.api.types.is_bool_dtype(s)
        or pd.api.types.is_string_dtype(s)
        or s.dtype == object
    )


def _value_labels(s: pd.Series) -> np.ndarray:
    """The level label of each value of a factor-like column (object array)."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.asarray(_labels(s.cat.categories), dtype=object)
        codes = s.cat.codes.to_numpy()
        out = np.where(codes >= 0, cats[np.maximum(codes, 0)], None)
        return out.astype(object)
    if pd.api.types.is_bool_dtype(s):
        return np.where(s.to_numpy(), "TRUE", "FALSE").astype(object)
    codes, uniques = pd.factorize(s, sort=True)
    labs = np.asarray(_labels(uniques), dtype=object)
    return labs[codes] if len(labs) else np.array([], dtype=object)


@dataclass(frozen=True)
class ColumnBuilder:
    """Rebuilds a model matrix for new data with the encoding of the fit:
    the same columns, factor levels and contrasts (used by ``predict``)."""

    parts: tuple = ()
    """Direct path, per block of columns: ("1",), ("num", col), or
    ("fac", col, labels of the indicator columns, labels of all levels seen)."""
    spec: object = None
    """formulaic's model spec, when formulaic built the matrix."""
    keep: tuple[int, ...] | None = None
    """Columns kept after dropping rank-deficient ones."""

    def term_columns(self) -> list[tuple[str, list[int]]]:
        """(term label, column indices) for each term other than the
        intercept, in the matrix as built (before dropping columns)."""
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
                    _check_columns({part[1]}, data, "new data")
                    cols.append(data[part[1]].to_numpy(dtype=np.float64))
                else:
                    _, col, labels, known = part
                    _check_columns({col}, data, "new data")
                    vals = _value_labels(data[col])
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
    """Indicator columns of a factor: treatment contrasts (first level the
    baseline) or, with ``full``, one column per level; unused levels dropped.
    Also returns the labels of the columns' levels and of all used levels."""
    codes, labs = _factor(s)
    used = np.bincount(codes[codes >= 0], minlength=len(labs)) > 0
    levels = [i for i in range(len(labs)) if used[i]]
    all_used = tuple(labs[i] for i in levels)
    if not full:
        levels = levels[1:]
    cols = [(codes == i).astype(np.float64) for i in levels]
    return cols, [f"{s.name}{labs[i]}" for i in levels], tuple(labs[i] for i in levels), all_used


def _model_matrix(expr: str, data: pd.DataFrame) -> tuple[np.ndarray, list[str], ColumnBuilder]:
    """Model matrix of a right-hand side, with R's column names, and the
    builder that makes the same columns for new data.

    Sums of plain column names (numeric columns, and factors with treatment
    contrasts, with ``1``/``0``/``-1``) are built directly; anything else goes
    through formulaic."""
    pieces = [p.strip() for p in re.split(r"\s*([+-])\s*", " + " + expr.strip())]
    signs, terms = pieces[1::2], pieces[2::2]
    intercept = True
    names: list[str] = []
    simple = True
    for sgn, t in zip(signs, terms, strict=True):
        if t == "0" or (t == "1" and sgn == "-"):
            intercept = False
        elif t == "1":
            intercept = True
        elif sgn == "+" and _SIMPLE_NAME.fullmatch(t) and t.strip("`") in data.columns:
            col = t.strip("`")
            if col in names or not (_is_numeric(data[col]) or _is_factor(data[col])):
                simple = False
                break
            names.append(col)
        else:
            simple = False
            break
    n = len(data)
    if simple:
        cols: list[np.ndarray] = [np.ones(n)] if intercept else []
        out_names = ["(Intercept)"] if intercept else []
        parts: list[tuple] = [("1",)] if intercept else []
        full = not intercept  # R: without an intercept the first factor is coded in full
        for c in names:
            if _is_numeric(data[c]):
                cols.append(data[c].to_numpy(dtype=np.float64))
                out_names.append(c)
                parts.append(("num", c))
            else:
                dcols, dnames, dlabels, all_used = _dummies(data[c], full)
                full = False
                cols.extend(dcols)
                out_names.extend(dnames)
                parts.append(("fac", c, dlabels, all_used))
        out = np.column_stack(cols) if cols else np.empty((n, 0))
        return out, out_names, ColumnBuilder(parts=tuple(parts))
    from formulaic import model_matrix

    try:
        mm = model_matrix(expr, data, na_action="ignore")
    except Exception as e:
        raise FormulaError(f"cannot build the model matrix of {expr!r}: {e}") from None
    names_out = [_r_name(str(c)) for c in mm.columns]
    return mm.to_numpy(dtype=np.float64), names_out, ColumnBuilder(spec=mm.model_spec)


def _labels(values) -> list[str]:
    """R's labels of factor levels: integer-valued numbers without '.0'."""
    arr = np.asarray(values)
    if arr.dtype.kind in "iu":
        return arr.astype(str).tolist()
    if arr.dtype.kind == "f" and np.all(np.mod(arr, 1) == 0):
        return arr.astype(np.int64).astype(str).tolist()
    return [str(v) for v in values]


def _factor(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Codes and labels of a grouping variable, in R's level order."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy(np.int64), _labels(s.cat.categories)
    if pd.api.types.is_bool_dtype(s):
        return s.to_numpy(np.int64), ["FALSE", "TRUE"]
    codes, uniques = pd.factorize(s, sort=True)
    return codes.astype(np.int64, copy=False), _labels(uniques)


def _grouping(term: RandomTerm, data: pd.DataFrame) -> tuple[np.ndarray, pd.Index]:
    """Codes and labels of the (interaction) grouping factor, unused levels
    dropped; for a:b the levels of a vary slowest, as R's a:b does."""
    if len(term.factors) == 1:
        codes, labs = _factor(data[term.factors[0]])
        used = np.bincount(codes, minlength=len(labs)) > 0
        if not used.all():
            codes = (np.cumsum(used) - 1)[codes]
            labs = [lab for lab, u in zip(labs, used, strict=True) if u]
        return codes, pd.Index(labs, dtype=object, name=term.group)
    combined = np.zeros(len(data), dtype=np.int64)
    labels: list[list[str]] = []
    for name in term.factors:
        codes, labs = _factor(data[name])
        combined = combined * len(labs) + codes
        labels.append(labs)
    codes, used = pd.factorize(combined, sort=True)
    parts = []
    rem = np.asarray(used).copy()
    for labs in reversed(labels):
        parts.append(np.asarray(labs, dtype=object)[rem % len(labs)])
        rem //= len(labs)
    parts.reverse()
    lev = parts[0]
    for p in parts[1:]:
        lev = lev + ":" + p
    return codes.astype(np.int64, copy=False), pd.Index(lev, dtype=object, name=term.group)


def _drop_dependent_columns(X: np.ndarray, names: list[str], tol: float = 1e-7):
    """Drop columns that are linear combinations of earlier ones (lme4 drops
    them with a message). Returns (X, names, dropped).

    A column is dependent when the diagonal of R in X = QR (columns scaled to
    unit length) is below ``tol``. The QR is skipped when the Cholesky factor
    of the scaled cross-product shows the columns far from dependence."""
    p = X.shape[1]
    if p == 0:
        return X, names, []
    norms = np.sqrt(np.einsum("ij,ij->j", X, X))
    zero = norms == 0
    if not zero.any():
        g = (X.T @ X) / np.outer(norms, norms)
        try:
            r = np.linalg.cholesky(g)
            if np.min(np.abs(np.diag(r))) > 1e-4:
                return X, names, []
        except np.linalg.LinAlgError:
            pass
    scaled = X / np.where(zero, 1.0, norms)
    r = np.linalg.qr(scaled, mode="r")
    d = np.zeros(p)
    m = min(r.shape)
    d[:m] = np.abs(np.diag(r)[:m])
    keep = (d > tol) & ~zero
    if keep.all():
        return X, names, []
    dropped = [n for n, k in zip(names, keep, strict=True) if not k]
    return X[:, keep], [n for n, k in zip(names, keep, strict=True) if k], dropped


def _row_values(spec, data: pd.DataFrame, what: str) -> np.ndarray | None:
    """A column name or one value per data row, as floats (NaN kept)."""
    if spec is None:
        return None
    if isinstance(spec, str):
        _check_columns({spec}, data, what)
        col = data[spec]
        if not _is_numeric(col):
            raise DataError(f"the {what} column {spec!r} must be numeric, not {col.dtype}")
        return col.to_numpy(dtype=np.float64)
    arr = np.asarray(spec, dtype=np.float64).ravel()
    if arr.shape[0] != len(data):
        raise DataError(f"{what} has {arr.shape[0]} values; the data have {len(data)} rows")
    return arr


def build_design(
    formula: str | ParsedFormula, data: pd.DataFrame, weights=None, offset=None
) -> Design:
    """Build the model's arrays from an lme4 formula and a data frame.

    ``weights`` (prior weights) and ``offset`` are a column name or one value
    per row of ``data``; rows where they are missing are dropped too."""
    pf = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, not {type(data).__name__}")
    if len(data) == 0:
        raise DataError("the data frame has no rows")
    resp_vars = _variables(pf.response, data.columns)
    fixed_vars = _variables(pf.fixed, data.columns)
    _check_columns(resp_vars, data, "response")
    _check_columns(fixed_vars, data, "fixed effects")
    used = set(resp_vars) | set(fixed_vars)
    for t in pf.random:
        tv = _variables(t.expr, data.columns)
        _check_columns(tv, data, f"random effects ({t.expr} | {t.group})")
        _check_columns(set(t.factors), data, f"grouping factor of ({t.expr} | {t.group})")
        used |= tv | set(t.factors)
    cols = [c for c in data.columns if c in used]
    w_all = _row_values(weights, data, "weights")
    o_all = _row_values(offset, data, "offset")
    complete = data[cols].notna().all(axis=1).to_numpy().copy()
    for extra in (w_all, o_all):
        if extra is not None:
            complete &= ~np.isnan(extra)
    n_dropped = int((~complete).sum())
    if not complete.any():
        raise DataError(
            f"no rows left after dropping the {n_dropped} rows with missing values "
            f"in the model's variables ({', '.join(map(str, cols))})"
        )
    df = data.loc[complete, cols] if n_dropped else data[cols]
    w = None if w_all is None else w_all[complete]
    off = None if o_all is None else o_all[complete]
    if w is not None and not (np.isfinite(w).all() and (w > 0).all()):
        raise DataError("prior weights must be finite and positive")
    if off is not None and not np.isfinite(off).all():
        raise DataError("the offset has non-finite values")

    # response
    if pf.response in df.columns:
        ycol = df[pf.response]
        if not _is_numeric(ycol):
            raise DataError(
                f"the response {pf.response!r} must be numeric, but its type is {ycol.dtype}"
            )
        y = ycol.to_numpy(dtype=np.float64)
    else:
        ym, _, _ = _model_matrix("0 + " + pf.response, df)
        if ym.shape[1] != 1:
            raise DataError(f"the response {pf.response!r} must be a single numeric column")
        y = ym[:, 0]
    if not np.isfinite(y).all():
        raise DataError(f"the response {pf.response!r} has non-finite values")

    X, x_names, x_builder = _model_matrix(pf.fixed, df)
    all_x_names = list(x_names)
    if not np.isfinite(X).all():
        raise DataError("the fixed-effects model matrix has non-finite values")
    X, x_names, dropped = _drop_dependent_columns(X, x_names)
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient"
            f"{'s' if len(dropped) > 1 else ''}: {', '.join(dropped)}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    n = len(y)
    terms = []
    for t in pf.random:
        z, cnames, z_builder = _model_matrix(t.expr, df)
        if z.shape[1] == 0:
            raise FormulaError(f"the random-effects term ({t.expr} | {t.group}) has no columns")
        if not np.isfinite(z).all():
            raise DataError(f"the model matrix of ({t.expr} | {t.group}) has non-finite values")
        codes, levels = _grouping(t, df)
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
                z=np.ascontiguousarray(z),
                builder=z_builder,
            )
        )
    # lme4 orders the terms by decreasing number of levels (stable)
    order = sorted(range(len(terms)), key=lambda i: -terms[i].n_levels)
    terms = [terms[i] for i in order]
    return Design(
        formula=pf,
        y=y,
        X=np.asfortranarray(X),
        x_names=tuple(x_names),
        terms=tuple(terms),
        row_index=df.index,
        n_dropped=n_dropped,
        dropped_columns=tuple(dropped),
        weights=w,
        offset=off,
        x_builder=replace(
            x_builder, keep=tuple(i for i, nm in enumerate(all_x_names) if nm in x_names)
        ),
        offset_spec=offset if isinstance(offset, str) else None,
    )
