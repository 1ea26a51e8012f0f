"""A model of data read in chunks: its design without the rows, its cross-products summed.

Two passes over the source (`_sources.ChunkSource`):

1. the levels: every chunk's variables are evaluated, its complete rows found
   (a row with a missing value in any variable of the model is dropped, as
   lme4 drops it), and the levels used by those rows collected, for each
   factor of the fixed and random parts and each grouping factor. Levels are
   ordered as the in-memory fit orders them: a pandas Categorical's
   categories, numbers by value, text as text.
2. the sums: each chunk is coded on those levels, its X, y and Z built as the
   in-memory design builds them, and its cross-product blocks formed in the
   core (`_core.BlockSums`); the partial sums are merged pairwise. The first
   chunk decides the centring and scaling the core gets (`Centering`,
   `TermMaps`): any shift or power of two is exact, so the first chunk's is
   as good as the whole data's.

Transforms whose columns depend on the whole data (``poly``, ``scale``,
``ns``, ``bs``) are refused: compute them into a column first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ._model_matrix import Variable, evaluate, missing_rows, model_matrix
from ._model_matrix import sum_offsets as formula_offsets
from ._reval import Evaluator, Factor, Numeric
from ._rexpr import BinOp, Call, Const, Name, Node, Paren, Unary, deparse
from ._sources import ChunkSource
from ._state import BlockSums, Centering, ModelState
from ._term_maps import TermMaps
from .design import Design, TermDesign
from .exceptions import DataError, FormulaError
from .formula import ParsedFormula, names_in, parse_formula

__all__ = ["chunked_model"]

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
        for code in np.flatnonzero(np.bincount(used[used >= 0], minlength=len(fac.levels))):
            lab = fac.levels[code]
            if lab not in self.keys:
                self.keys[lab] = float(lab) if kind == "number" else lab

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
    values: dict[str, Variable] = {}
    evaluate(pf.fixed_terms, ev, values)
    for t in pf.random:
        evaluate(t.terms, ev, values)
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
    missing = np.isnan(response.values[:, 0])
    for v in values.values():
        missing |= missing_rows(v)
    for parts in groupings:
        for g in parts:
            missing |= g.codes < 0
    for extra_v in (wv, ov):
        if extra_v is not None:
            missing |= np.isnan(extra_v)
    return _Chunk(response.values[:, 0], values, groupings, wv, ov, ~missing)


def _on(fac: Factor, levels: tuple[str, ...]) -> Factor:
    """Return a chunk's factor coded on the whole data's levels."""
    index = {lab: i for i, lab in enumerate(levels)}
    remap = np.array([index.get(lab, -1) for lab in fac.levels], dtype=np.int64)
    codes = np.where(fac.codes < 0, -1, remap[np.maximum(fac.codes, 0)] if len(remap) else -1)
    return Factor(codes, levels, fac.ordered, fac.logical)


def _combined(parts: list[Factor], levels: list[tuple[str, ...]], keep: np.ndarray) -> np.ndarray:
    """Return the codes of an interaction a:b:... on its parts' levels (a varies slowest)."""
    codes = np.zeros(int(keep.sum()), dtype=np.int64)
    for p, lev in zip(parts, levels, strict=True):
        codes = codes * len(lev) + _on(p, lev).codes[keep]
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


def _empty(v: Variable, levels: tuple[str, ...] | None) -> Variable:
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


def _merge_pairwise(stack: list[tuple[int, BlockSums]], sums: BlockSums) -> None:
    """Push chunk sums, merging equal-sized neighbours (a binary counter: pairwise sums)."""
    size = 1
    while stack and stack[-1][0] == size:
        _, top = stack.pop()
        sums = top.merge(sums)
        size *= 2
    stack.append((size, sums))


def chunked_model(
    formula: str | ParsedFormula,
    source: ChunkSource,
    weights: str | None = None,
    offset: str | None = None,
) -> tuple[Design, ModelState]:
    """Return the design (without rows) and the model state of data read in chunks."""
    pf = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    nodes = [pf.response_node, *pf.fixed_terms.offsets]
    for tl in (pf.fixed_terms, *(t.terms for t in pf.random)):
        nodes.extend(node for _, node in tl.variables)
    for node in nodes:
        _refuse_whole_data_transforms(node)
    columns = sorted(
        set().union(*(names_in(n) for n in nodes), *(t.factors for t in pf.random))
        | ({weights} if weights else set())
        | ({offset} if offset else set())
    )
    # pass 1: the levels used by complete rows, the shapes of the variables
    levels: dict[str, _Levels] = {}
    shapes: dict[str, Variable] = {}
    groups = [_Group([_Levels() for _ in t.factors]) for t in pf.random]
    n = dropped = 0
    for chunk in source.chunks([c for c in columns if c != "pi"]):
        ch = _evaluate(pf, chunk, weights, offset)
        keep = ch.keep
        for label, v in ch.values.items():
            first = shapes.setdefault(label, v)
            if isinstance(first, Factor) != isinstance(v, Factor):
                raise DataError(f"{label!r} is a factor in some chunks and numbers in others")
            if isinstance(v, Factor):
                levels.setdefault(label, _Levels()).add(
                    v, v.codes[keep], *_kind(chunk, _node(pf, label))
                )
        for grp, t, facs in zip(groups, pf.random, ch.groupings, strict=True):
            grp.add(chunk, t.factors, facs, keep)
        n += int(keep.sum())
        dropped += int((~keep).sum())
    if n == 0:
        raise DataError(f"no complete rows in {source.description}")
    whole = {label: lev.levels() for label, lev in levels.items()}
    empty = {label: _empty(v, whole.get(label)) for label, v in shapes.items()}
    _, x_names, x_builder = model_matrix(pf.fixed_terms, empty, {}, 0)
    group_levels = [g.levels() for g in groups]
    term_specs = []
    for t, (_, labels, _) in zip(pf.random, group_levels, strict=True):
        _, cnames, zb = model_matrix(t.terms, empty, {}, 0, order="C")
        term_specs.append((t, cnames, zb, labels))
    order = sorted(range(len(term_specs)), key=lambda i: -len(term_specs[i][3]))
    # pass 2: the cross-products, chunk by chunk
    stack: list[tuple[int, BlockSums]] = []
    maps: TermMaps | None = None
    center: Centering | None = None
    layout = None
    for chunk in source.chunks([c for c in columns if c != "pi"]):
        ch = _evaluate(pf, chunk, weights, offset)
        keep = ch.keep
        m = int(keep.sum())
        if m == 0:
            continue
        used = {
            label: (_on(v, whole[label]) if isinstance(v, Factor) else v)
            for label, v in ch.values.items()
        }
        used = {label: _rows(v, keep) for label, v in used.items()}
        x, _, _ = model_matrix(pf.fixed_terms, used, {}, m)
        y = ch.y[keep]
        w = None if ch.weights is None else ch.weights[keep]
        o = None if ch.offset is None else ch.offset[keep]
        terms = []
        for i in order:
            t, cnames, zb, labels = term_specs[i]
            z, _, _ = model_matrix(t.terms, used, {}, m, order="C")
            parts_levels, _, combos = group_levels[i]
            if combos is None:
                codes = _on(ch.groupings[i][0], parts_levels[0]).codes[keep]
            else:
                raw = _combined(ch.groupings[i], parts_levels, keep)
                codes = np.searchsorted(combos, raw).astype(np.int64)
            terms.append(
                TermDesign(
                    t.group,
                    t.factors,
                    tuple(cnames),
                    codes,
                    pd.Index(labels, dtype=object, name=t.group),
                    z,
                    zb,
                )
            )
        if layout is None:  # the first chunk decides the centring and scaling the core gets
            probe = Design(
                pf,
                y,
                np.asfortranarray(x),
                tuple(x_names),
                tuple(terms),
                pd.RangeIndex(m),
                0,
                (),
                x_builder,
                w,
                o,
            )
            layout = probe.layout
            center = Centering.of(probe)
            maps, _ = TermMaps.build(layout, [t.z for t in terms], [t.cnames for t in terms], w)
        zs = [
            t.z if maps is None or maps.maps[j] is None else t.z @ maps.maps[j]
            for j, t in enumerate(terms)
        ]
        xc = x if center is None else center.x(x)
        yc = y if center is None else y - center.y_shift
        sums = BlockSums(
            np.asfortranarray(xc),
            np.ascontiguousarray(yc),
            [
                (t.codes, np.ascontiguousarray(z), t.n_levels)
                for t, z in zip(terms, zs, strict=True)
            ],
            weights=w,
            offset=o,
        )
        _merge_pairwise(stack, sums)
    total = stack.pop()[1]
    while stack:
        total = stack.pop()[1].merge(total)
    p = len(x_names)
    design = Design(
        formula=pf,
        y=np.empty(0),
        X=np.empty((0, p), order="F"),
        x_names=tuple(x_names),
        terms=tuple(
            TermDesign(
                t.group,
                t.factors,
                tuple(cnames),
                np.empty(0, dtype=np.int64),
                pd.Index(labels, dtype=object, name=t.group),
                np.empty((0, len(cnames))),
                zb,
            )
            for t, cnames, zb, labels in (term_specs[i] for i in order)
        ),
        row_index=pd.RangeIndex(0),
        n_dropped=dropped,
        dropped_columns=(),
        x_builder=x_builder,
        offset_spec=offset,
        n_obs=n,
    )
    return design, ModelState.from_sums(total, maps, center)


def _rows(v: Variable, keep: np.ndarray) -> Variable:
    if isinstance(v, Factor):
        return Factor(v.codes[keep], v.levels, v.ordered, v.logical)
    return Numeric(v.values[keep], v.colnames)
