"""A Dask DataFrame reduced with Dask itself: the chunk functions mapped over its partitions.

The same two passes as `_chunked.chunked_model`, as Dask tasks: pass 1 scans
every partition and the scans are combined in a tree; the first partition
with complete rows decides the centring and scaling; pass 2 forms every
partition's cross-products in the core and merges them in a tree, so no
partition's rows leave its worker, only its cross-products (`BlockSums`,
which pickle). The active scheduler runs the graph: a ``distributed``
client's cluster when one is active, else Dask's local threads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ._chunked import Plan, Scan, Spec, merge_sums, scan_chunk
from ._sources import ChunkSource
from ._state import ModelState
from .design import Design
from .exceptions import DataError

__all__ = ["dask_model"]

T = TypeVar("T")


def _tree(items: list[Any], combine: Callable[[T, T], T]) -> Any:
    """Combine delayed items pairwise, level by level (a balanced tree of tasks)."""
    import dask

    while len(items) > 1:
        pairs = [
            dask.delayed(combine)(items[i], items[i + 1]) if i + 1 < len(items) else items[i]
            for i in range(0, len(items), 2)
        ]
        items = pairs
    return items[0]


def dask_model(spec: Spec, source: ChunkSource) -> tuple[Design, ModelState]:
    """Return the design (without rows) and the model state of a Dask DataFrame."""
    import dask

    parts = source.dask[spec.columns].to_delayed()
    if not parts:
        raise DataError(f"{source.description} has no partitions")
    scan: Scan = _tree([dask.delayed(scan_chunk)(spec, p) for p in parts], Scan.merge).compute()
    plan = Plan.of(spec, scan, source.description)
    tf = None
    for p in parts:  # the first partition with complete rows decides the transforms
        tf = dask.delayed(plan.first_transforms)(p).compute()
        if tf is not None:
            break
    assert tf is not None  # the scan found complete rows
    sums = _tree([dask.delayed(plan.sums)(p, tf) for p in parts], merge_sums).compute()
    return plan.design(), ModelState.from_sums(sums, tf.maps, tf.center)
