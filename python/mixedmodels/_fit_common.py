"""What every fit (linear or generalized) reads the same way from its design, β and RX."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pandas as pd

from .design import Design, DesignAttributes

__all__ = ["FitAttributes"]


class _Model(Protocol):
    @property
    def design(self) -> Design: ...


class _HasModel(Protocol):
    @property
    def model(self) -> _Model: ...


class _HasFit(Protocol):
    @property
    def design(self) -> Design: ...
    @property
    def beta(self) -> np.ndarray: ...
    @property
    def rx(self) -> np.ndarray: ...


class FitAttributes(DesignAttributes):
    """The attributes a linear and a generalized fit share (with `DesignAttributes`)."""

    @property
    def design(self: _HasModel) -> Design:
        """Return the model's design (its arrays)."""
        return self.model.design

    @property
    def ngrps(self: _HasFit) -> dict[str, int]:
        """Return the levels per grouping factor (each factor once), lme4's ``ngrps``."""
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, t.n_levels)
        return out

    @property
    def fixef(self: _HasFit) -> pd.Series:
        """Return the fixed-effects estimates β̂, labelled by the columns of X."""
        return pd.Series(self.beta, index=list(self.design.x_names), name="Estimate")

    def rx_covariance(self: _HasFit, scale: float = 1.0) -> pd.DataFrame:
        """Return ``scale`` (RXᵀRX)⁻¹, labelled by the columns of X."""
        p = len(self.beta)
        rinv = np.linalg.solve(self.rx, np.eye(p)) if p else np.empty((0, 0))
        names = list(self.design.x_names)
        v = rinv @ rinv.T if scale == 1.0 else scale * rinv @ rinv.T  # (scale·R⁻¹) R⁻ᵀ
        return pd.DataFrame(v, index=names, columns=names)
