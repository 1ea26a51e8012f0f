"""Evaluating a formula's variables on a table, as R's ``model.frame`` does.

A variable is an R expression (``Days``, ``log(conc)``, ``I(x^2)``,
``poly(x, 2)``, ``factor(g)``) evaluated on the data's columns with R's
meaning of each operator and function (``^`` is a power; ``%%`` and ``%/%``
R's modulo and integer division). The result is a `Factor` or a `Numeric`
(one or more columns). Transforms whose result depends on the whole column
(``poly``, ``scale``, ``ns``, ``bs``, ``factor``) record what they computed in
a state keyed by their R label, so that new data get the same columns (R's
``makepredictcall``). As in R, they are computed from all rows of the data,
before rows with missing values are dropped.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ._columns import check_columns, factor_codes, is_numeric, known_category_labels
from ._rexpr import BinOp, Call, Const, Name, Node, Paren, Unary, deparse
from ._splines import SplineBasis, spline_basis
from ._tables import column_values, plain_column
from .exceptions import DataError, DataWarning, FormulaError

__all__ = ["Evaluator", "Factor", "Numeric", "contr_poly"]


@dataclass(frozen=True)
class Factor:
    """A factor: 0-based codes (-1 for missing) and level labels."""

    codes: np.ndarray
    levels: tuple[str, ...]
    ordered: bool = False
    logical: bool = False
    """A logical variable: levels FALSE and TRUE always (R does not drop them)."""


@dataclass(frozen=True)
class Numeric:
    """Numeric columns (n x k); ``colnames`` None for a plain vector or an unnamed matrix."""

    values: np.ndarray
    colnames: tuple[str, ...] | None = None


@dataclass(frozen=True)
class _Logical:
    values: np.ndarray  # floats 0/1, NaN for NA


Value = np.ndarray | float | str | bool | Factor | Numeric | _Logical

_MATH: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "log2": np.log2,
    "log10": np.log10,
    "log1p": np.log1p,
    "exp": np.exp,
    "expm1": np.expm1,
    "sqrt": np.sqrt,
    "abs": np.abs,
    "sin": np.sin,
    "cos": np.cos,
    "tan": np.tan,
    "asin": np.arcsin,
    "acos": np.arccos,
    "atan": np.arctan,
    "sinh": np.sinh,
    "cosh": np.cosh,
    "tanh": np.tanh,
    "floor": np.floor,
    "ceiling": np.ceil,
    "trunc": np.trunc,
    "sign": np.sign,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "^": np.power,
    "%%": np.mod,
    "%/%": np.floor_divide,
}
_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal,
    "!=": np.not_equal,
    "<": np.less,
    ">": np.greater,
    "<=": np.less_equal,
    ">=": np.greater_equal,
}
_OTHER = (
    "C",
    "log",
    "round",
    "I",
    "factor",
    "as.factor",
    "as.numeric",
    "as.integer",
    "as.double",
    "poly",
    "scale",
    "ns",
    "bs",
    "cbind",
    "offset",
)
SUPPORTED = sorted([*_MATH, *_OTHER])
"""The functions a formula may call."""


def contr_poly(n: int) -> np.ndarray:
    """Return R's ``contr.poly(n)``: orthonormal polynomial contrasts of scores 1..n."""
    scores = np.arange(1, n + 1, dtype=np.float64)
    x = np.vander(scores - scores.mean(), n, increasing=True)
    q, r = np.linalg.qr(x)
    z = q * np.sign(np.diag(r))
    return z[:, 1:]


class Evaluator:
    """Evaluates variables on one table; ``state`` holds the fit's transforms.

    ``fitting`` True computes each stateful transform from the data and records
    it; False reads it back (new data).
    """

    def __init__(self, data: pd.DataFrame, state: dict[str, Any], fitting: bool, where: str):
        self.data = data
        self.n = len(data)
        self.state = state
        self.fitting = fitting
        self.where = where
        self._groupings: dict[str, Factor] = {}

    # -- variables ------------------------------------------------------
    def variable(self, node: Node) -> Factor | Numeric:
        """Return a model variable: a factor or numeric columns, one row per data row."""
        v = self.eval(node)
        if isinstance(v, Factor | Numeric):
            return v
        if isinstance(v, _Logical):
            codes = np.where(np.isnan(v.values), -1, v.values).astype(np.int64)
            return Factor(codes, ("FALSE", "TRUE"), logical=True)
        if isinstance(v, str | bool) or np.ndim(v) == 0:
            label = deparse(node)
            raise FormulaError(f"the term {label!r} is a constant, not a variable of the data")
        arr = np.asarray(v, dtype=np.float64)
        return Numeric(arr.reshape(self.n, -1) if arr.ndim == 2 else arr[:, None])

    def eval(self, node: Node) -> Value:
        """Evaluate an expression: arrays, scalars, factors."""
        if isinstance(node, Name):
            return self.column(node.id)
        if isinstance(node, Const):
            return node.value
        if isinstance(node, Paren):
            return self.eval(node.inner)
        if isinstance(node, Unary):
            x = self.eval(node.operand)
            if node.op == "!":
                return _Logical(np.where(np.isnan(b := self.logical(x, node)), np.nan, 1 - b))
            return -self.number(x, node) if node.op == "-" else self.number(x, node)
        if isinstance(node, BinOp):
            return self.binop(node)
        return self.call(node)

    def column(self, name: str) -> Value:
        if name not in self.data.columns:
            if name == "pi":
                return float(np.pi)
            check_columns({name}, self.data, self.where)
        values = column_values(self.data, name)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":  # the usual case, fast
            return values.astype(np.float64, copy=False)
        s = plain_column(self.data[name])
        dtype = s.dtype
        if isinstance(dtype, np.dtype) and dtype.kind in "fiu":
            return s.to_numpy().astype(np.float64, copy=False)
        if isinstance(dtype, np.dtype) and dtype.kind == "c":
            raise DataError(f"column {name!r} holds complex numbers; a model needs real ones")
        if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
            # R's numeric value of a time: seconds (since 1970 for a date-time)
            values = s.to_numpy(dtype="datetime64[ns]" if dtype.kind == "M" else "timedelta64[ns]")
            secs = values.view(np.int64).astype(np.float64) / 1e9
            return np.where(np.isnat(values), np.nan, secs)
        if isinstance(dtype, pd.CategoricalDtype) or not is_numeric(s):
            if pd.api.types.is_bool_dtype(s):
                return _Logical(s.to_numpy(dtype=np.float64, na_value=np.nan))
            return self.factor_of(s, name)
        return s.to_numpy(dtype=np.float64, na_value=np.nan)

    def grouping(self, name: str) -> Factor:
        """Return a grouping variable: the column's values as levels, whatever its type."""
        if name not in self._groupings:
            values = column_values(self.data, name)
            known = (
                known_category_labels(values.dtype) if isinstance(values, pd.Categorical) else None
            )
            if known is not None:  # a Categorical read before: its labels are checked
                self._groupings[name] = Factor(values.codes.astype(np.int64), known)
            else:
                codes, labels = factor_codes(plain_column(self.data[name]))
                self._groupings[name] = Factor(codes, tuple(labels))
        return self._groupings[name]

    def factor_of(self, s: pd.Series, label: str) -> Factor:
        codes, labels = factor_codes(s)
        ordered = isinstance(s.dtype, pd.CategoricalDtype) and bool(s.dtype.ordered)
        return Factor(codes, tuple(labels), ordered)

    def number(self, x: Value, node: Node) -> Any:
        if isinstance(x, Factor):
            raise DataError(
                f"{deparse(node)!r}: arithmetic on the factor in it is not defined "
                "(use as.numeric() for its codes)"
            )
        if isinstance(x, str):
            raise FormulaError(f"{deparse(node)!r}: arithmetic on a string")
        if isinstance(x, Numeric):
            return x.values if x.values.shape[1] > 1 else x.values[:, 0]
        if isinstance(x, _Logical):
            return x.values
        return np.float64(x) if isinstance(x, bool | float | int) else x

    def logical(self, x: Value, node: Node) -> Any:
        return x.values if isinstance(x, _Logical) else self.number(x, node)

    def binop(self, node: BinOp) -> Value:
        op = node.op
        if op in ("~", "|", "||", ":") or (
            op.startswith("%") and op not in _ARITH and op != "%in%"
        ):
            raise FormulaError(
                f"{deparse(node)!r}: {op!r} cannot be computed inside a function call"
            )
        a, b = self.eval(node.left), self.eval(node.right)
        with np.errstate(all="ignore"):
            if op in _ARITH:
                return _ARITH[op](self.number(a, node), self.number(b, node))
            if op == "%in%":
                return self.is_in(a, b, node)
            if op in ("&", "&&", "|"):
                x, y = self.logical(a, node), self.logical(b, node)
                both = (
                    np.logical_and(x == 1, y == 1) if op != "|" else np.logical_or(x == 1, y == 1)
                )
                na = np.isnan(x) | np.isnan(y)
                return _Logical(
                    np.where(na & ~both if op == "|" else na, np.nan, both.astype(float))
                )
            if (
                isinstance(a, Factor)
                or isinstance(b, Factor)
                or isinstance(a, str)
                or isinstance(b, str)
            ):
                return self.compare_labels(a, b, op, node)
            x, y = self.number(a, node), self.number(b, node)
            out = _COMPARE[op](x, y).astype(np.float64)
            return _Logical(np.where(np.isnan(x) | np.isnan(y), np.nan, out))

    def compare_labels(self, a: Value, b: Value, op: str, node: Node) -> _Logical:
        if op not in ("==", "!="):
            raise DataError(f"{deparse(node)!r}: only == and != compare a factor")
        la, lb = self.labels(a, node), self.labels(b, node)
        eq = (la == lb).astype(np.float64)
        out = eq if op == "==" else 1 - eq
        na = _is_none(la) | _is_none(lb)
        return _Logical(np.where(na, np.nan, out))

    def labels(self, x: Value, node: Node) -> np.ndarray:
        if isinstance(x, Factor):
            labs = np.asarray(x.levels, dtype=object)[np.maximum(x.codes, 0)]
            labs[x.codes < 0] = None
            return labs
        if isinstance(x, str):
            return np.asarray(x, dtype=object)
        raise DataError(f'{deparse(node)!r}: compare a factor with a string, e.g. f == "a"')

    def is_in(self, a: Value, b: Value, node: Node) -> _Logical:
        la = self.labels(a, node) if isinstance(a, Factor | str) else self.number(a, node)
        lb = np.atleast_1d(
            self.labels(b, node) if isinstance(b, Factor | str) else self.number(b, node)
        )
        return _Logical(np.isin(la, lb).astype(np.float64))

    # -- functions ------------------------------------------------------
    def call(self, node: Call) -> Value:
        fn = node.fn
        label = deparse(node)
        pos, kw = _split_args(node)
        if fn in _MATH:
            if len(pos) != 1 or kw:
                raise FormulaError(f"{label!r}: {fn}() takes one argument")
            x = self.number(self.eval(pos[0]), node)
            with np.errstate(all="ignore"):
                return self.produced(_MATH[fn](x), x, node)
        if fn == "log":
            base = kw.get("base", pos[1] if len(pos) > 1 else None)
            x = self.number(self.eval(pos[0]), node)
            with np.errstate(all="ignore"):
                out = (
                    np.log(x)
                    if base is None
                    else np.log(x) / np.log(self.number(self.eval(base), node))
                )
            return self.produced(out, x, node)
        if fn == "round":
            digits = kw.get("digits", pos[1] if len(pos) > 1 else None)
            d = 0 if digits is None else int(self.number(self.eval(digits), node))
            return np.round(self.number(self.eval(pos[0]), node), d)
        if fn in ("I", "offset"):
            _arity(node, pos, kw, 1)
            return self.eval(pos[0])
        if fn in ("factor", "as.factor"):
            _arity(node, pos, kw, 1)
            return self.factor_call(node, self.eval(pos[0]))
        if fn in ("as.numeric", "as.integer", "as.double"):
            _arity(node, pos, kw, 1)
            x = self.eval(pos[0])
            if isinstance(x, Factor):
                return np.where(x.codes < 0, np.nan, x.codes + 1.0)
            out = self.number(x, node)
            return np.trunc(out) if fn == "as.integer" else out
        if fn == "poly":
            return self.poly(node, pos, kw)
        if fn == "scale":
            return self.scale(node, pos, kw)
        if fn in ("ns", "bs"):
            return self.spline(node, pos, kw)
        if fn == "cbind":
            cols = [np.broadcast_to(self.number(self.eval(a), node), (self.n,)) for a in pos]
            names = tuple(a.id if isinstance(a, Name) else "" for a in pos)
            return Numeric(np.column_stack(cols).astype(np.float64), names)
        if fn == "C" and len(node.args) == 1 and isinstance(f := self.eval(pos[0]), Factor):
            return f  # C(f): R's default contrasts
        if fn == "C":
            raise FormulaError(
                f"{label!r}: C() with a contrasts argument is not supported; write the factor "
                "alone (R's default contrasts)"
            )
        raise FormulaError(
            f"{label!r}: the function {fn!r} is not supported in formulas; supported: "
            + ", ".join(SUPPORTED)
        )

    def produced(self, out: Any, x: Any, node: Node) -> Any:
        """Warn, as R does, when a function made NaN of numbers (those rows are dropped)."""
        bad = np.isnan(out) & ~np.isnan(x)
        if np.any(bad):
            warnings.warn(
                f"{deparse(node)}: NaNs produced for {int(np.sum(bad))} rows; they are dropped "
                "as missing values, as R drops them",
                DataWarning,
                stacklevel=6,
            )
        return out

    def factor_call(self, node: Call, x: Value) -> Factor:
        label = deparse(node)
        if isinstance(x, Factor):
            used = np.unique(x.codes[x.codes >= 0])
            remap = np.full(len(x.levels), -1)
            remap[used] = np.arange(len(used))
            levels = tuple(x.levels[i] for i in used)
            fac = Factor(np.where(x.codes < 0, -1, remap[x.codes]), levels, x.ordered)
        elif isinstance(x, _Logical):
            vals = pd.Series(np.where(np.isnan(x.values), None, x.values == 1), dtype=object)
            fac = self.factor_of(vals.map({True: "TRUE", False: "FALSE"}), label)
        else:
            fac = self.factor_of(pd.Series(self.number(x, node)), label)
        if self.fitting:
            self.state[label] = fac.levels
            return fac
        return _relevel(fac, self.state[label], label)

    def poly(self, node: Call, pos: list[Node], kw: dict[str, Node]) -> Numeric:
        label = deparse(node)
        if not pos or len(pos) > 2 or set(kw) - {"degree", "raw"}:
            raise FormulaError(f"{label!r}: write poly(x, degree) or poly(x, degree, raw = TRUE)")
        x = self.number(self.eval(pos[0]), node)
        deg_node = kw.get("degree", pos[1] if len(pos) > 1 else None)
        degree = 1 if deg_node is None else self.number(self.eval(deg_node), node)
        if np.ndim(degree) or degree < 1 or degree != int(degree):
            raise FormulaError(f"{label!r}: the degree must be a whole number ≥ 1")
        d = int(degree)
        raw = bool(self.eval(kw["raw"])) if "raw" in kw else False
        names = tuple(str(i) for i in range(1, d + 1))
        if raw:
            return Numeric(np.column_stack([x**k for k in range(1, d + 1)]), names)
        if self.fitting:
            if np.isnan(x).any():
                raise DataError(f"{label!r}: missing values are not allowed in poly() (as in R)")
            if d >= len(np.unique(x)):
                raise DataError(
                    f"{label!r}: 'degree' must be less than the number of unique points"
                )
            xbar = x.mean()
            q, r = np.linalg.qr(np.vander(x - xbar, d + 1, increasing=True))
            z = q * np.diag(r)
            norm2 = (z**2).sum(axis=0)
            alpha = ((x - xbar) @ z**2 / norm2 + xbar)[:d]
            self.state[label] = (alpha, np.r_[1.0, norm2])
            return Numeric(z[:, 1:] / np.sqrt(norm2[1:]), names)
        alpha, norm2 = self.state[label]
        z = np.ones((len(x), d + 1))
        z[:, 1] = x - alpha[0]
        for i in range(1, d):
            z[:, i + 1] = (x - alpha[i]) * z[:, i] - (norm2[i + 1] / norm2[i]) * z[:, i - 1]
        return Numeric(z[:, 1:] / np.sqrt(norm2[2:]), names)

    def scale(self, node: Call, pos: list[Node], kw: dict[str, Node]) -> Numeric:
        label = deparse(node)
        if len(pos) != 1 or set(kw) - {"center", "scale"}:
            raise FormulaError(f"{label!r}: write scale(x), scale(x, center = ..., scale = ...)")
        x = self.number(self.eval(pos[0]), node)
        if np.ndim(x) != 1:
            raise FormulaError(f"{label!r}: scale() of one variable only")
        if self.fitting:
            ok = x[~np.isnan(x)]
            c = self.eval(kw["center"]) if "center" in kw else True
            center = (
                (ok.mean() if c else 0.0) if isinstance(c, bool) else float(self.number(c, node))
            )
            sc = self.eval(kw["scale"]) if "scale" in kw else True
            if isinstance(sc, bool):
                dev = ok - center
                scale = float(np.sqrt(dev @ dev / max(len(ok) - 1, 1))) if sc else 1.0
            else:
                scale = float(self.number(sc, node))
            self.state[label] = (center, scale)
        center, scale = self.state[label]
        return Numeric(((x - center) / scale)[:, None])

    def spline(self, node: Call, pos: list[Node], kw: dict[str, Node]) -> Numeric:
        label = deparse(node)
        order = ["x", "df", "knots", "degree", "intercept", "Boundary.knots"]
        if node.fn == "ns":
            order.remove("degree")
        if len(pos) > len(order) or set(kw) - set(order):
            raise FormulaError(f"{label!r}: arguments of {node.fn}() are {', '.join(order)}")
        args = dict(zip(order, pos, strict=False)) | kw
        x = self.number(self.eval(args["x"]), node)
        if self.fitting:

            def get(name: str) -> Any:
                return None if name not in args else self.number(self.eval(args[name]), node)

            basis = spline_basis(
                node.fn,
                np.asarray(x, np.float64),
                get("df"),
                None if get("knots") is None else np.atleast_1d(get("knots")),
                3 if get("degree") is None else int(get("degree")),
                bool(self.eval(args["intercept"])) if "intercept" in args else False,
                get("Boundary.knots"),
                label,
            )
            self.state[label] = basis
        b: SplineBasis = self.state[label]
        cols = b.columns(np.asarray(x, np.float64), label)
        return Numeric(cols, tuple(str(i) for i in range(1, cols.shape[1] + 1)))


def _is_none(values: np.ndarray) -> np.ndarray:
    return np.asarray(np.frompyfunc(lambda v: v is None, 1, 1)(values), dtype=bool)


def _split_args(node: Call) -> tuple[list[Node], dict[str, Node]]:
    pos = [v for k, v in node.args if k is None]
    kw = {k: v for k, v in node.args if k is not None}
    return pos, kw


def _arity(node: Call, pos: list[Node], kw: dict[str, Node], n: int) -> None:
    if len(pos) != n or kw:
        raise FormulaError(f"{deparse(node)!r}: {node.fn}() takes {n} argument")


def _relevel(fac: Factor, levels: tuple[str, ...], label: str) -> Factor:
    """Map a factor of new data onto the fit's levels; unknown levels are refused."""
    index = {lab: i for i, lab in enumerate(levels)}
    unknown = sorted({lab for lab in fac.levels if lab not in index})
    if unknown:
        raise DataError(
            f"new data have levels of {label!r} that the fit has not seen: "
            + ", ".join(unknown[:10])
        )
    remap = np.array([index[lab] for lab in fac.levels], dtype=np.int64)
    codes = np.where(fac.codes < 0, -1, remap[np.maximum(fac.codes, 0)] if len(remap) else -1)
    return Factor(codes, levels, fac.ordered, fac.logical)
