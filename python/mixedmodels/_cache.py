"""Quantities computed once per fit and kept as long as the fit lives."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from .results import LinearMixedModelResult

__all__ = ["per_fit"]

T = TypeVar("T")


def per_fit(
    compute: Callable[[LinearMixedModelResult], T],
) -> Callable[[LinearMixedModelResult], T]:
    """Wrap ``compute(fit)`` so that it runs once per fit.

    The values are held in a weak-key dictionary, so a fit's entry goes with
    the fit; a value must not refer to its fit (that would keep it alive).
    """
    values: weakref.WeakKeyDictionary[LinearMixedModelResult, T] = weakref.WeakKeyDictionary()

    @functools.wraps(compute)
    def cached(fit: LinearMixedModelResult) -> T:
        if fit not in values:
            values[fit] = compute(fit)
        return values[fit]

    return cached
