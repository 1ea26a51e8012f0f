"""The penalized least-squares solution at one θ, as `_state.ModelState.solve` returns it."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Solution"]


class Solution(NamedTuple):
    """The penalized least-squares solution at one θ."""

    beta: np.ndarray
    """Fixed effects β̂."""
    u: np.ndarray
    """Spherical random effects (lme4's ``u``)."""
    b: np.ndarray
    """Random effects b = Λu, in Z's column order."""
    fitted: np.ndarray | None
    """Fitted values Xβ̂ + Zb + offset, on the scale of y (None when the rows are not kept)."""
    pwrss: float
    """Penalized weighted residual sum of squares."""
    ld_l2: float
    """log det of LLᵀ = ΛᵀZᵀWZΛ + I."""
    ld_rx2: float
    """log det of RXᵀRX."""
    rx: np.ndarray
    """The fixed effects' dense factor RX (p x p, upper triangular)."""
    rzx: np.ndarray
    """RZX (q x p, rows in L's order)."""
