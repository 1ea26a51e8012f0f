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

import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from ._chunk_scan import Scan, Spec, combined, empty, on_levels, scan_chunk
from ._model_matrix import ColumnBuilder, Variable, model_matrix
from ._progress import tracked
from ._reval import Factor, Numeric
from ._sources import ChunkSource
from ._state import BlockSums, ModelState
from ._term_maps import Centering, TermMaps
from .design import Design, TermDesign
from .exceptions import DataError
from .formula import ParsedFormula

__all__ = ["Plan", "Scan", "Spec", "Transforms", "chunked_model", "merge_sums", "scan_chunk"]

T = TypeVar("T")


def _merge_pairwise(stack: list[tuple[int, BlockSums]], sums: BlockSums) -> None:
    """Push chunk sums, merging equal-sized neighbours (a binary counter: pairwise sums)."""
    size = 1
    while stack and stack[-1][0] == size:
        _, top = stack.pop()
        sums = top.merge(sums)
        size *= 2
    stack.append((size, sums))


@dataclass(frozen=True)
class _Rows:
    """One chunk's complete rows, coded on the whole data's levels."""

    x: np.ndarray
    y: np.ndarray
    weights: np.ndarray | None
    offset: np.ndarray | None
    terms: tuple[TermDesign, ...]


@dataclass(frozen=True)
class Transforms:
    """The centring and scaling the core gets (decided from the first chunk)."""

    center: Centering | None
    maps: TermMaps | None


@dataclass(frozen=True)
class Plan:
    """The whole data's coding: levels, columns and terms (pass 1's result)."""

    spec: Spec
    levels: dict[str, tuple[str, ...]]
    x_names: tuple[str, ...]
    x_builder: ColumnBuilder
    terms: tuple[tuple[int, tuple[str, ...], ColumnBuilder, pd.Index], ...]
    """Per term in lme4's order: its index in the formula, column names, builder, levels."""
    group_levels: tuple[tuple[list[tuple[str, ...]], np.ndarray | None], ...]
    """Per term in formula order: its parts' levels, and (for a:b) the codes of its levels."""
    n: int
    dropped: int

    @classmethod
    def of(cls, spec: Spec, scan: Scan, description: str) -> Plan:
        """Return the plan of a whole scan."""
        if scan.n == 0:
            raise DataError(f"no complete rows in {description}")
        pf = spec.formula
        whole = {label: lev.levels() for label, lev in scan.levels.items()}
        blank = {label: empty(v, whole.get(label)) for label, v in scan.shapes.items()}
        _, x_names, x_builder = model_matrix(pf.fixed_terms, blank, {}, 0)
        groups = [g.levels() for g in scan.groups]
        terms = []
        for i, (t, (_, labels, _)) in enumerate(zip(pf.random, groups, strict=True)):
            _, cnames, zb = model_matrix(t.terms, blank, {}, 0, order="C")
            terms.append((i, tuple(cnames), zb, pd.Index(labels, dtype=object, name=t.group)))
        terms.sort(key=lambda e: -len(e[3]))  # lme4's order: most levels first (stable)
        return cls(
            spec,
            whole,
            tuple(x_names),
            x_builder,
            tuple(terms),
            tuple((parts, combos) for parts, _, combos in groups),
            scan.n,
            scan.dropped,
        )

    def rows(self, chunk: pd.DataFrame) -> _Rows | None:
        """Return the chunk's complete rows as the model's arrays (None: no complete row)."""
        pf = self.spec.formula
        ch = self.spec.evaluate(chunk)
        keep = ch.keep
        m = int(keep.sum())
        if m == 0:
            return None
        used = {
            label: _rows(on_levels(v, self.levels[label]) if isinstance(v, Factor) else v, keep)
            for label, v in ch.values.items()
        }
        x, _, _ = model_matrix(pf.fixed_terms, used, {}, m)
        terms = []
        for i, cnames, zb, levels in self.terms:
            t = pf.random[i]
            z, _, _ = model_matrix(t.terms, used, {}, m, order="C")
            parts, combos = self.group_levels[i]
            if combos is None:
                codes = on_levels(ch.groupings[i][0], parts[0]).codes[keep]
            else:
                raw = combined(ch.groupings[i], parts, keep)
                codes = np.searchsorted(combos, raw).astype(np.int64)
            terms.append(TermDesign(t.group, t.factors, cnames, codes, levels, z, zb))
        w = None if ch.weights is None else ch.weights[keep]
        o = None if ch.offset is None else ch.offset[keep]
        return _Rows(np.asfortranarray(x), ch.y[keep], w, o, tuple(terms))

    def transforms(self, rows: _Rows) -> Transforms:
        """Return the centring and scaling decided from one chunk's rows."""
        probe = Design(
            self.spec.formula,
            rows.y,
            rows.x,
            self.x_names,
            rows.terms,
            pd.RangeIndex(len(rows.y)),
            0,
            (),
            self.x_builder,
            rows.weights,
            rows.offset,
        )
        maps, _ = TermMaps.build(
            probe.layout, [t.z for t in rows.terms], [t.cnames for t in rows.terms], rows.weights
        )
        return Transforms(Centering.of(probe), maps)

    def first_transforms(self, chunk: pd.DataFrame) -> Transforms | None:
        """Return the transforms of a chunk (None when it has no complete row)."""
        rows = self.rows(chunk)
        return None if rows is None else self.transforms(rows)

    def sums(self, chunk: pd.DataFrame, tf: Transforms) -> BlockSums | None:
        """Return the core's cross-products of one chunk (None when it has no complete row)."""
        rows = self.rows(chunk)
        if rows is None:
            return None
        maps, center = tf.maps, tf.center
        zs = [
            t.z if maps is None or maps.maps[j] is None else t.z @ maps.maps[j]
            for j, t in enumerate(rows.terms)
        ]
        xc = rows.x if center is None else center.x(rows.x)
        yc = rows.y if center is None else rows.y - center.y_shift
        return BlockSums(
            np.asfortranarray(xc),
            np.ascontiguousarray(yc),
            [
                (t.codes, np.ascontiguousarray(z), t.n_levels)
                for t, z in zip(rows.terms, zs, strict=True)
            ],
            weights=rows.weights,
            offset=rows.offset,
        )

    def design(self) -> Design:
        """Return the model's design without its rows."""
        pf = self.spec.formula
        return Design(
            formula=pf,
            y=np.empty(0),
            X=np.empty((0, len(self.x_names)), order="F"),
            x_names=self.x_names,
            terms=tuple(
                TermDesign(
                    pf.random[i].group,
                    pf.random[i].factors,
                    cnames,
                    np.empty(0, dtype=np.int64),
                    levels,
                    np.empty((0, len(cnames))),
                    zb,
                )
                for i, cnames, zb, levels in self.terms
            ),
            row_index=pd.RangeIndex(0),
            n_dropped=self.dropped,
            dropped_columns=(),
            x_builder=self.x_builder,
            offset_spec=self.spec.offset,
            n_obs=self.n,
        )


def merge_sums(a: BlockSums | None, b: BlockSums | None) -> BlockSums | None:
    """Return the merged sums of two sets of chunks (None: no rows)."""
    return b if a is None else a if b is None else a.merge(b)


def chunked_model(
    formula: str | ParsedFormula,
    source: ChunkSource,
    weights: str | None = None,
    offset: str | None = None,
    progress: bool = False,
) -> tuple[Design, ModelState]:
    """Return the design (without rows) and the model state of data read in chunks.

    ``progress``: report the rows read by each pass on stderr (`_progress`).
    """
    spec = Spec.of(formula, weights, offset)
    scan = Scan()
    passes = ("levels (pass 1 of 2)", "cross-products (pass 2 of 2)")
    # one thread: the scan is Python holding the GIL (two threads were no faster)
    for chunk in tracked(source.chunks(spec.columns), passes[0], source.rows, progress):
        scan = scan.merge(scan_chunk(spec, chunk))
    plan = Plan.of(spec, scan, source.description)
    chunks = tracked(source.chunks(spec.columns), passes[1], source.rows, progress)
    total, tf = _summed(plan, chunks, _WORKERS)
    return plan.design(), ModelState.from_sums(total, tf.maps, tf.center)


_WORKERS = max(1, min(4, os.cpu_count() or 1))
"""Chunks whose cross-products are formed at once (threads: the core releases the GIL)."""


def _summed(
    plan: Plan, chunks: Iterator[pd.DataFrame], workers: int
) -> tuple[BlockSums, Transforms]:
    """Return the merged sums of the chunks and the transforms the first chunk decided.

    The first chunk with rows decides the centring and scaling; the others are
    formed by ``workers`` threads, at most that many chunks in flight, and
    merged pairwise in the order they were read (so the rounding does not
    depend on the threads).
    """
    stack: list[tuple[int, BlockSums]] = []
    tf: Transforms | None = None
    for chunk in chunks:
        tf = plan.first_transforms(chunk)
        if tf is not None:
            _merge_pairwise(stack, _some(plan.sums(chunk, tf)))
            break
    if tf is None:
        raise DataError("no complete rows in the chunks")  # the first pass found some
    with ThreadPoolExecutor(workers) as pool:
        for sums in _in_order(pool, lambda c: plan.sums(c, tf), chunks, workers):
            if sums is not None:
                _merge_pairwise(stack, sums)
    total = stack.pop()[1]
    while stack:
        total = stack.pop()[1].merge(total)
    return total, tf


def _in_order(
    pool: ThreadPoolExecutor,
    fn: Callable[[pd.DataFrame], T],
    chunks: Iterable[pd.DataFrame],
    n: int,
) -> Iterator[T]:
    """Yield ``fn`` of each chunk in the chunks' order, at most ``n`` chunks in flight."""
    pending: deque[Future[T]] = deque()
    for chunk in chunks:
        pending.append(pool.submit(fn, chunk))
        if len(pending) >= n:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


def _some(sums: BlockSums | None) -> BlockSums:
    assert sums is not None  # the chunk has rows: it decided the transforms
    return sums


def _rows(v: Variable, keep: np.ndarray) -> Variable:
    if isinstance(v, Factor):
        return Factor(v.codes[keep], v.levels, v.ordered, v.logical)
    return Numeric(v.values[keep], v.colnames)
