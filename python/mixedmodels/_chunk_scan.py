"""Pass 1 over data read in chunks: each chunk's variables, complete rows and levels.

`Spec` is what every chunk function needs (the formula, the weights' and
offset's columns); `scan_chunk` evaluates one chunk as the in-memory design
does and collects the levels its complete rows use, `Scan.merge` combines
scans in any order. Levels are ordered as the in-memory fit orders them: a
pandas Categorical's categories, numbers by value, text as text; the
combinations of an interaction a:b with a varying slowest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._model_matrix import Variable, incomplete, model_variables
from ._model_matrix import sum_offsets as formula_offsets
from ._reval import Evaluator, Factor, Numeric
from ._rexpr import BinOp, Call, Const, Name, Node, Paren, Unary, deparse
from .exceptions import DataError, FormulaError
from .formula import ParsedFormula, names_in, parse_formula

__all__ = ["Scan", "Spec", "combined", "empty", "on_levels", "scan_chunk"]

_WHOLE_DATA = {"poly", "scale", "ns", "bs"}


def _refuse_whole_data_transforms(node: Node) -> None:
    if isinstance(node, Call):
        raw = any(k == "raw" and isinstance(v, Const) and v.value is True for k, v in node.args)
        if node.fn in _WHOLE_DATA and not (node.fn == "poly" and raw):
            raise FormulaError(
                f"{deparse(node)!r}: {node.fn}() depends on the whole data, which a fit from "
                "chunks reads only piece by piece; compute it into a column first"
            )
        for _, v in node.args:
            _refuse_whole_data_transforms(v)
    elif isinstance(node, BinOp):
        _refuse_whole_data_transforms(node.left)
        _refuse_whole_data_transforms(node.right)
    elif isinstance(node, Unary | Paren):
        _refuse_whole_data_transforms(node.operand if isinstance(node, Unary) else node.inner)


@dataclass
class _Levels:
    """The levels of one factor seen so far, with the key that orders them."""

    keys: dict[str, Any] = field(default_factory=dict)
    categories: tuple[str, ...] | None = None
    same_categories: bool = True
    ordered: bool = False
    logical: bool = False

    def add(self, fac: Factor, used: np.ndarray, kind: str, cats: tuple[str, ...] | None) -> None:
        self.ordered, self.logical = fac.ordered, fac.logical
        if cats is not None:
            if self.categories is None and not self.keys:
                self.categories = cats
            elif self.categories != cats:
                self.same_categories = False
        present = np.flatnonzero(np.bincount(used[used >= 0], minlength=len(fac.levels)))
        keys = self.keys
        labels = _as_objects(fac.levels)[present].tolist()
        # membership in the dict (few labels are new after the first chunks): a third of
        # the time of a set of the chunk's labels
        for lab in [lab for lab in labels if lab not in keys]:
            keys[lab] = float(lab) if kind == "number" else lab

    def merge(self, other: _Levels) -> None:
        """Add another scan's levels of the same factor."""
        self.ordered, self.logical = other.ordered, other.logical
        if other.categories is not None:
            if self.categories is None and not self.keys:
                self.categories = other.categories
            elif self.categories != other.categories:
                self.same_categories = False
        self.same_categories &= other.same_categories
        for lab in other.keys.keys() - self.keys.keys():
            self.keys[lab] = other.keys[lab]

    def levels(self) -> tuple[str, ...]:
        if self.logical:
            return ("FALSE", "TRUE")
        if self.categories is not None and self.same_categories:
            return tuple(c for c in self.categories if c in self.keys)
        return tuple(sorted(self.keys, key=self.keys.__getitem__))


def _kind(data: pd.DataFrame, node: Node) -> tuple[str, tuple[str, ...] | None]:
    """How a factor's levels sort: ("number" | "text", the Categorical's categories or None)."""
    inner = (
        node.args[0][1] if isinstance(node, Call) and node.fn in ("factor", "as.factor") else node
    )
    if isinstance(inner, Name) and inner.id in data.columns:
        dt = data[inner.id].dtype
        if isinstance(dt, pd.CategoricalDtype):
            return "text", tuple(Evaluator(data, {}, True, "").factor_of(data[inner.id], "").levels)
        if pd.api.types.is_numeric_dtype(dt) and not pd.api.types.is_bool_dtype(dt):
            return "number", None
    return "text", None


@dataclass
class _Chunk:
    """One chunk's evaluated model: response, variables, groupings, rows kept."""

    y: np.ndarray
    values: dict[str, Variable]
    groupings: list[list[Factor]]
    """Per random-effects term, its grouping variables (one, or the parts of a:b)."""
    weights: np.ndarray | None
    offset: np.ndarray | None
    keep: np.ndarray


def _evaluate(
    pf: ParsedFormula, data: pd.DataFrame, weights: str | None, offset: str | None
) -> _Chunk:
    ev = Evaluator(data, {}, fitting=True, where="chunk")
    response = ev.variable(pf.response_node)
    if isinstance(response, Factor) or response.values.shape[1] != 1:
        raise DataError(f"the response {pf.response!r} must be numeric")
    values = model_variables([pf.fixed_terms, *(t.terms for t in pf.random)], ev)
    groupings = [[ev.grouping(f) for f in t.factors] for t in pf.random]
    w = None if weights is None else ev.variable(Name(weights))
    o_arg = None if offset is None else ev.variable(Name(offset))
    off = formula_offsets(pf.fixed_terms, ev)
    for extra in (w, o_arg):
        if isinstance(extra, Factor):
            raise DataError("weights and offset columns must be numeric")
    wv = None if w is None else w.values[:, 0]  # type: ignore[union-attr]
    ov = None if o_arg is None else o_arg.values[:, 0]  # type: ignore[union-attr]
    if off is not None:
        ov = off if ov is None else ov + off
    codes = [g.codes for parts in groupings for g in parts]
    missing = incomplete(response.values[:, 0], values, codes, [wv, ov])
    return _Chunk(response.values[:, 0], values, groupings, wv, ov, ~missing)


def on_levels(fac: Factor, levels: tuple[str, ...]) -> Factor:
    """Return a chunk's factor coded on the whole data's levels."""
    index = _level_codes(levels)
    labels = fac.levels
    remap = np.fromiter((index.get(lab, -1) for lab in labels), np.int64, len(labels))
    codes = np.where(fac.codes < 0, -1, remap[np.maximum(fac.codes, 0)] if len(remap) else -1)
    return Factor(codes, levels, fac.ordered, fac.logical)


_CODES: dict[int, tuple[tuple[str, ...], dict[str, int]]] = {}


def _level_codes(levels: tuple[str, ...]) -> dict[str, int]:
    """Return the whole data's levels' codes by label (built once, not once per chunk).

    A dict, not a pandas Index: an Index of a chunk's labels is converted to Arrow
    strings before it is looked up, 30 ms a chunk for 100,000 labels against 12.
    """
    hit = _CODES.get(id(levels))
    if hit is None or hit[0] is not levels:
        if len(_CODES) >= 16:
            _CODES.pop(next(iter(_CODES)))
        hit = (levels, {lab: i for i, lab in enumerate(levels)})
        _CODES[id(levels)] = hit
    return hit[1]


def _as_objects(labels: tuple[str, ...]) -> np.ndarray:
    """Return labels as a numpy object array (no conversion of the strings)."""
    out = np.empty(len(labels), dtype=object)
    out[:] = labels
    return out


def combined(parts: list[Factor], levels: list[tuple[str, ...]], keep: np.ndarray) -> np.ndarray:
    """Return the codes of an interaction a:b:... on its parts' levels (a varies slowest)."""
    codes = np.zeros(int(keep.sum()), dtype=np.int64)
    for p, lev in zip(parts, levels, strict=True):
        codes = codes * len(lev) + on_levels(p, lev).codes[keep]
    return codes


@dataclass
class _Group:
    """The levels of one term's grouping factor: of each part, and the combinations used."""

    parts: list[_Levels]
    combos: set[tuple[str, ...]] = field(default_factory=set)

    def add(
        self, chunk: pd.DataFrame, factors: tuple[str, ...], facs: list[Factor], keep: np.ndarray
    ) -> None:
        for lev, name, f in zip(self.parts, factors, facs, strict=True):
            lev.add(f, f.codes[keep], *_kind(chunk, Name(name)))
        if len(facs) > 1:
            rows = np.column_stack([f.codes[keep] for f in facs])
            for combo in np.unique(rows, axis=0).tolist():
                self.combos.add(tuple(f.levels[c] for f, c in zip(facs, combo, strict=True)))

    def merged(self, other: _Group) -> _Group:
        """Return the levels of both scans."""
        parts = []
        for a, b in zip(self.parts, other.parts, strict=True):
            lev = _Levels(dict(a.keys), a.categories, a.same_categories, a.ordered, a.logical)
            lev.merge(b)
            parts.append(lev)
        return _Group(parts, self.combos | other.combos)

    def levels(self) -> tuple[list[tuple[str, ...]], list[str], np.ndarray | None]:
        """Return the parts' levels, the labels, and (for a:b) the codes of the combinations."""
        parts = [p.levels() for p in self.parts]
        if len(parts) == 1:
            return parts, list(parts[0]), None
        index = [{lab: i for i, lab in enumerate(lev)} for lev in parts]
        full = sorted(
            self.combos, key=lambda c: tuple(ix[lab] for ix, lab in zip(index, c, strict=True))
        )
        codes = np.zeros(len(full), dtype=np.int64)
        for ix, lev, j in zip(index, parts, range(len(parts)), strict=True):
            codes = codes * len(lev) + np.array([ix[c[j]] for c in full], dtype=np.int64)
        return parts, [":".join(c) for c in full], codes


def empty(v: Variable, levels: tuple[str, ...] | None) -> Variable:
    """Return a variable with no rows on the whole data's levels (for columns and names)."""
    if isinstance(v, Factor):
        assert levels is not None
        return Factor(np.empty(0, dtype=np.int64), levels, v.ordered, v.logical)
    return Numeric(np.empty((0, v.values.shape[1])), v.colnames)


def _node(pf: ParsedFormula, label: str) -> Node:
    for tl in (pf.fixed_terms, *(t.terms for t in pf.random)):
        for lab, node in tl.variables:
            if lab == label:
                return node
    raise KeyError(label)


@dataclass(frozen=True)
class Spec:
    """What a chunk function needs: the formula, and the weights' and offset's columns."""

    formula: ParsedFormula
    weights: str | None
    offset: str | None

    @classmethod
    def of(cls, formula: str | ParsedFormula, weights: str | None, offset: str | None) -> Spec:
        """Return the spec, refusing transforms that need the whole data."""
        pf = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
        for node in _nodes(pf):
            _refuse_whole_data_transforms(node)
        return cls(pf, weights, offset)

    @property
    def columns(self) -> list[str]:
        """Return the data columns the model reads."""
        pf = self.formula
        names = set().union(*(names_in(n) for n in _nodes(pf)), *(t.factors for t in pf.random))
        extra = {c for c in (self.weights, self.offset) if c}
        return sorted((names | extra) - {"pi"})

    def evaluate(self, chunk: pd.DataFrame) -> _Chunk:
        """Return the chunk's evaluated variables and complete rows."""
        return _evaluate(self.formula, chunk, self.weights, self.offset)


def _nodes(pf: ParsedFormula) -> list[Node]:
    nodes = [pf.response_node, *pf.fixed_terms.offsets]
    for tl in (pf.fixed_terms, *(t.terms for t in pf.random)):
        nodes.extend(node for _, node in tl.variables)
    return nodes


@dataclass
class Scan:
    """Pass 1 over some chunks: the levels their complete rows use, the variables' shapes."""

    levels: dict[str, _Levels] = field(default_factory=dict)
    shapes: dict[str, Variable] = field(default_factory=dict)
    groups: list[_Group] = field(default_factory=list)
    n: int = 0
    dropped: int = 0

    def merge(self, other: Scan) -> Scan:
        """Return the scan of both sets of chunks (levels in first-seen order, then sorted)."""
        out = Scan(dict(self.levels), dict(self.shapes), list(self.groups), self.n, self.dropped)
        for label, lev in other.levels.items():
            mine = out.levels.setdefault(label, _Levels())
            mine.merge(lev)
        for label, v in other.shapes.items():
            first = out.shapes.setdefault(label, v)
            if isinstance(first, Factor) != isinstance(v, Factor):
                raise DataError(f"{label!r} is a factor in some chunks and numbers in others")
        if not out.groups:
            out.groups = other.groups
        elif other.groups:
            out.groups = [a.merged(b) for a, b in zip(out.groups, other.groups, strict=True)]
        out.n += other.n
        out.dropped += other.dropped
        return out


def scan_chunk(spec: Spec, chunk: pd.DataFrame) -> Scan:
    """Return pass 1 over one chunk."""
    pf = spec.formula
    ch = spec.evaluate(chunk)
    keep = ch.keep
    scan = Scan(groups=[_Group([_Levels() for _ in t.factors]) for t in pf.random])
    for label, v in ch.values.items():
        scan.shapes[label] = empty(v, v.levels if isinstance(v, Factor) else None)
        if isinstance(v, Factor):
            scan.levels.setdefault(label, _Levels()).add(
                v, v.codes[keep], *_kind(chunk, _node(pf, label))
            )
    for grp, t, facs in zip(scan.groups, pf.random, ch.groupings, strict=True):
        grp.add(chunk, t.factors, facs, keep)
    scan.n, scan.dropped = int(keep.sum()), int((~keep).sum())
    return scan
