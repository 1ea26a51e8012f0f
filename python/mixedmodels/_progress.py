"""Progress of the passes over data read in chunks: rows read, on stderr.

tqdm's bar when tqdm is installed (it is optional), else one line rewritten
in place. Off unless asked for, or (``progress=None``) when stderr is a
terminal.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd

__all__ = ["tracked", "wanted"]


def wanted(progress: bool | None) -> bool:
    """Whether to show progress: as asked, or by default when stderr is a terminal."""
    if progress is None:
        return sys.stderr.isatty()
    return bool(progress)


def tracked(
    frames: Iterator[pd.DataFrame], label: str, total: int | None, on: bool
) -> Iterator[pd.DataFrame]:
    """Yield the frames, reporting the rows read so far (``total``: the rows expected)."""
    if not on:
        yield from frames
        return
    bar = _bar(label, total)
    try:
        for frame in frames:
            yield frame
            bar.update(len(frame))
    finally:
        bar.close()


def _bar(label: str, total: int | None) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Line(label, total)
    return tqdm(total=total, desc=label, unit=" rows", unit_scale=True, file=sys.stderr)


class _Line:
    """tqdm's update/close on one line of stderr."""

    def __init__(self, label: str, total: int | None):
        self.label, self.total, self.done = label, total, 0
        self.t0 = time.perf_counter()

    def update(self, rows: int) -> None:
        self.done += rows
        of = f" of {self.total:,}" if self.total else ""
        el = time.perf_counter() - self.t0
        sys.stderr.write(f"\r{self.label}: {self.done:,}{of} rows, {el:.1f} s")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()
