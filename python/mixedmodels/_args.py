"""Checks of method arguments: a clear error of the package, never a bare Python one."""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np

from .exceptions import ArgumentError

__all__ = ["check_bool", "check_choice", "check_level", "check_positive"]


def check_level(level: object, what: str = "level") -> float:
    """Return a confidence level after checking that it is a number in (0, 1)."""
    if not isinstance(level, int | float | np.integer | np.floating) or isinstance(level, bool):
        raise ArgumentError(f"{what} must be a number between 0 and 1, not {level!r}")
    if not 0.0 < float(level) < 1.0:
        raise ArgumentError(f"{what} must be between 0 and 1 (e.g. 0.95), not {level!r}")
    return float(level)


def check_choice(value: object, what: str, choices: Iterable[str]) -> str:
    """Return a string option after checking its type (its value is checked by the caller)."""
    if not isinstance(value, str):
        options = ", ".join(repr(c) for c in choices)
        raise ArgumentError(f"{what} must be one of {options}, not {value!r}")
    return value


def check_bool(value: object, what: str) -> bool:
    """Return a flag after checking that it is True or False (``bool('ML')`` is True)."""
    if not isinstance(value, bool | np.bool_):
        raise ArgumentError(f"{what} must be True or False, not {value!r}")
    return bool(value)


def check_positive(value: object, what: str) -> float:
    """Return a positive finite number after checking it."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ArgumentError(f"{what} must be a positive number, not {value!r}")
    v = float(value)
    if not math.isfinite(v) or v <= 0:
        raise ArgumentError(f"{what} must be a positive number, not {value!r}")
    return v
