"""Data that come in chunks: Parquet files, Arrow datasets, Dask frames, lists of tables.

A model fitted from data larger than memory reads its source twice: once for
the levels of its factors and the statistics of its columns, once for the
cross-products. `ChunkSource` gives each pass a fresh iterator of pandas
frames holding only the model's columns:

- a path, a glob or a list of paths of Parquet files, or a
  ``pyarrow.dataset.Dataset``: read with pyarrow in record batches of
  ``batch_rows`` rows (bounded memory);
- a Dask DataFrame: partition by partition (`partitions`), for the Dask
  reduction in `_distributed`;
- a list or tuple of tables (pandas, pyarrow, polars, dicts), or a function
  that returns a fresh iterable of them on each call.

- an iterator of tables (read once): its chunks are kept on disk as they
  pass, in a private temporary directory removed with the source (`_Spool`),
  and the second pass reads them from there.

`ChunkSource.rows` is the number of rows when the source knows it without a
pass (Parquet metadata, a list of tables): the progress bar's total.
"""

from __future__ import annotations

import glob
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ._tables import as_frame
from .exceptions import ArgumentError, DataError

__all__ = ["ChunkSource", "chunk_source", "is_chunked"]


def _is_dask(obj: Any) -> bool:
    return type(obj).__module__.startswith("dask") and hasattr(obj, "to_delayed")


def _is_dataset(obj: Any) -> bool:
    """Whether ``obj`` is a ``pyarrow.dataset.Dataset`` (not a Table: that is one table)."""
    ds = sys.modules.get("pyarrow.dataset")
    return ds is not None and isinstance(obj, ds.Dataset)


def is_chunked(source: Any) -> bool:
    """Whether ``data`` is a source read in chunks rather than one table in memory."""
    if isinstance(source, str | os.PathLike):
        return True
    if isinstance(source, list | tuple) and source:
        return all(isinstance(s, str | os.PathLike) for s in source) or not isinstance(
            source[0], int | float
        )
    if isinstance(source, Iterator):
        return True
    return _is_dask(source) or _is_dataset(source) or callable(source)


@dataclass(frozen=True)
class ChunkSource:
    """A re-readable source of data chunks (see the module's docstring)."""

    open: Callable[[list[str]], Iterator[pd.DataFrame]]
    """Returns a fresh iterator of frames with (at least) the given columns."""
    description: str
    """What the source is, for messages."""
    dask: Any = None
    """The Dask DataFrame, when the source is one."""
    rows: int | None = None
    """The number of rows, when known without a pass (None: unknown)."""

    def chunks(self, columns: Sequence[str]) -> Iterator[pd.DataFrame]:
        """Iterate over the chunks, each a pandas frame of ``columns``."""
        for frame in self.open(list(columns)):
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise DataError(f"column {missing[0]!r} is not in the chunks of {self.description}")
            yield frame


def _parquet_paths(source: str | os.PathLike[str] | Sequence[Any]) -> list[str]:
    items = [source] if isinstance(source, str | os.PathLike) else list(source)
    paths: list[str] = []
    for item in items:
        text = os.fspath(item)
        found = sorted(glob.glob(text)) if any(ch in text for ch in "*?[") else [text]
        if not found or not all(os.path.exists(p) for p in found):
            raise DataError(f"no Parquet file or directory at {text!r}")
        paths.extend(found)
    if len(paths) > 1:  # directories among several paths: their files (pyarrow's rule)
        paths = [f for p in paths for f in (_files_in(p) if os.path.isdir(p) else [p])]
    return paths


def _files_in(directory: str) -> list[str]:
    """Return the data files under a directory, as pyarrow lists them (no ``.`` or ``_`` names)."""
    out: list[str] = []
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith((".", "_")))
    return out


def _arrow_frames(dataset: Any, columns: list[str], batch_rows: int) -> Iterator[pd.DataFrame]:
    names = set(dataset.schema.names)
    absent = [c for c in columns if c not in names]
    if absent:
        raise DataError(f"column {absent[0]!r} is not in the Parquet data")
    for batch in _batches(dataset, columns, batch_rows):
        if batch.num_rows:
            yield as_frame(batch)
    # the pool keeps freed batches' pages (mimalloc): give them back between passes
    sys.modules["pyarrow"].default_memory_pool().release_unused()


def _batches(dataset: Any, columns: list[str], batch_rows: int) -> Iterator[Any]:
    """Record batches of the dataset, file by file, each read with one batch of readahead.

    pyarrow's scan of a whole dataset reads ahead of a slow consumer: fitting 50M rows
    it held 0.9 GiB of batches whatever its readahead settings, and its scan took five
    times one read of the files. A filtered dataset has no fragments: it is scanned whole.
    """
    try:
        fragments = dataset.get_fragments()
    except ValueError:  # "filtered or projected dataset"
        yield from dataset.to_batches(
            columns=columns, batch_size=batch_rows, batch_readahead=1, fragment_readahead=1
        )
        return
    for fragment in fragments:
        yield from fragment.to_batches(
            schema=dataset.schema, columns=columns, batch_size=batch_rows, batch_readahead=1
        )


def chunk_source(source: Any, batch_rows: int = 1 << 20) -> ChunkSource:
    """Return the chunk source of ``source`` (see the module's docstring).

    Raises
    ------
    ArgumentError
        For a one-shot iterator, or an object that is no source of tables.
    DataError
        For Parquet paths that do not exist.
    """
    if _is_dask(source):
        ddf = source

        def dask_frames(columns: list[str]) -> Iterator[pd.DataFrame]:
            for part in ddf[columns].to_delayed():
                yield part.compute()

        return ChunkSource(dask_frames, "the Dask DataFrame", dask=ddf)
    if (
        _is_dataset(source)
        or isinstance(source, str | os.PathLike)
        or (
            isinstance(source, list | tuple)
            and source
            and all(isinstance(s, str | os.PathLike) for s in source)
        )
    ):
        import pyarrow.dataset as ds

        if _is_dataset(source):
            dataset = source
        else:
            paths = _parquet_paths(source)
            # a directory is a dataset of its files (pyarrow's discovery); files are listed
            one_dir = len(paths) == 1 and os.path.isdir(paths[0])
            dataset = ds.dataset(paths[0] if one_dir else paths, format="parquet")
        label = "the Arrow dataset" if _is_dataset(source) else f"the Parquet data {source!r}"
        return ChunkSource(
            lambda cols: _arrow_frames(dataset, cols, batch_rows),
            label,
            rows=dataset.count_rows(),  # from the files' metadata
        )
    if isinstance(source, list | tuple):
        tables = list(source)
        sized = all(not isinstance(t, dict) and hasattr(t, "__len__") for t in tables)
        return ChunkSource(
            lambda cols: _frames(tables, cols),
            f"the list of {len(tables)} tables",
            rows=sum(len(t) for t in tables) if sized else None,
        )
    if isinstance(source, Iterator):
        return ChunkSource(_Spool(source).open, "the iterator of tables")
    if callable(source):
        make: Callable[[], Iterable[Any]] = source

        def called(cols: list[str]) -> Iterator[pd.DataFrame]:
            return _frames(make(), cols)

        return ChunkSource(called, "the tables of the function's iterator")
    raise ArgumentError(
        f"data of type {type(source).__name__} is not a table or a source of tables"
    )


def _frames(tables: Iterable[Any], columns: list[str]) -> Iterator[pd.DataFrame]:
    for t in tables:
        frame = as_frame(t)
        if len(frame):
            yield frame[[c for c in columns if c in frame.columns]]


class _Spool:
    """The chunks of a one-shot iterator, kept on disk as the first pass reads them.

    Each frame (the columns the first pass asks for) is pickled into a private
    temporary directory, removed when the spool is garbage-collected; later
    passes read the files back, so memory holds one chunk at a time.
    """

    def __init__(self, tables: Iterator[Any]):
        self._tables = tables
        self._dir = tempfile.mkdtemp(prefix="mixedmodels-chunks-")
        weakref.finalize(self, shutil.rmtree, self._dir, ignore_errors=True)
        self._files: list[str] | None = None
        self._started = False

    def open(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        if self._files is not None:
            return self._again(self._files, columns)
        if self._started:
            raise DataError(
                "the iterator of tables was read only in part (an earlier pass stopped): "
                "pass a new iterator"
            )
        self._started = True
        return self._first(columns)

    def _first(self, columns: list[str]) -> Iterator[pd.DataFrame]:
        files: list[str] = []
        for frame in _frames(self._tables, columns):
            path = os.path.join(self._dir, f"{len(files):08d}.pkl")
            frame.to_pickle(path)
            files.append(path)
            yield frame
        self._files = files

    @staticmethod
    def _again(files: list[str], columns: list[str]) -> Iterator[pd.DataFrame]:
        for path in files:
            frame = pd.read_pickle(path)
            yield frame[[c for c in columns if c in frame.columns]]
