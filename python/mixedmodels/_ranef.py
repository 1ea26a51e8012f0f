"""The random effects after the fit.

Conditional modes and variances per grouping factor (lme4's ``ranef``),
fixed plus random coefficients (``coef``) and the variance components
(``VarCorr``).
"""

from __future__ import annotations

from collections.abc import Iterator, KeysView
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ._layout import TermLayout
from .design import Design, TermDesign
from .exceptions import UnknownNameError

__all__ = [
    "RandomEffects",
    "coefficients",
    "covariance_blocks",
    "random_effects",
    "variance_components",
]


@dataclass(frozen=True)
class RandomEffects:
    """Conditional modes of the random effects and their conditional covariances.

    Per grouping factor, as lme4's ``ranef(fit, condVar = TRUE)``:
    ``modes[g]`` is a DataFrame (levels x coefficients); ``condvar[g]`` an
    array (levels, k, k). Terms on the same grouping factor are combined, as
    lme4 does. Index it like a dict: ``fit.ranef["Subject"]``.
    """

    modes: dict[str, pd.DataFrame]
    """Conditional modes per grouping factor."""
    condvar: dict[str, np.ndarray] = field(repr=False)
    """Conditional covariances per grouping factor."""

    def __getitem__(self, group: str) -> pd.DataFrame:
        """Return the conditional modes of one grouping factor."""
        if group not in self.modes:
            have = ", ".join(map(repr, self.modes))
            raise UnknownNameError(f"no grouping factor {group!r} in this fit; it has {have}")
        return self.modes[group]

    def __iter__(self) -> Iterator[str]:
        """Iterate over the grouping factors."""
        return iter(self.modes)

    def __len__(self) -> int:
        """Return the number of grouping factors."""
        return len(self.modes)

    def keys(self) -> KeysView[str]:
        """Return the grouping factors."""
        return self.modes.keys()

    def condsd(self, group: str) -> pd.DataFrame:
        """Return the conditional standard deviations (levels x coefficients)."""
        cv = self.condvar[group]
        m = self.modes[group]
        return pd.DataFrame(np.sqrt(np.einsum("lii->li", cv)), index=m.index, columns=m.columns)

    def as_frame(self) -> pd.DataFrame:
        """Return the long format, as lme4's ``as.data.frame(ranef(fit, condVar = TRUE))``.

        Columns grpvar, term, grp, condval, condsd.
        """
        parts = []
        for g, m in self.modes.items():
            sd = self.condsd(g)
            # by position: two terms on one factor can share a column name,
            # as (1 | g) + (x | g) share (Intercept)
            for j, c in enumerate(m.columns):
                parts.append(
                    pd.DataFrame(
                        {
                            "grpvar": g,
                            "term": c,
                            "grp": m.index.astype(str),
                            "condval": m.iloc[:, j].to_numpy(),
                            "condsd": sd.iloc[:, j].to_numpy(),
                        }
                    )
                )
        return pd.concat(parts, ignore_index=True)


def random_effects(
    design: Design, b: np.ndarray, cond_var: list[np.ndarray], sigma: float
) -> RandomEffects:
    """Return the random effects b and their conditional covariances σ² · cond_var by group.

    Terms on the same grouping factor are combined, their columns side by side.
    """
    s2 = sigma**2
    pieces: dict[str, list[tuple[TermDesign, np.ndarray, np.ndarray]]] = {}
    off = 0
    for t, cv in zip(design.terms, cond_var, strict=True):
        q = t.n_levels * t.k
        modes = b[off : off + q].reshape(t.n_levels, t.k)
        off += q
        pieces.setdefault(t.group, []).append((t, modes, s2 * cv))
    modes_out, cv_out = {}, {}
    for g, parts in pieces.items():
        levels = parts[0][0].levels
        cols = [c for t, _, _ in parts for c in t.cnames]
        modes_out[g] = pd.DataFrame(np.hstack([m for _, m, _ in parts]), index=levels, columns=cols)
        ktot = len(cols)
        cvg = np.zeros((len(levels), ktot, ktot))
        o = 0
        for t, _, c in parts:
            cvg[:, o : o + t.k, o : o + t.k] = c
            o += t.k
        cv_out[g] = cvg
    return RandomEffects(modes_out, cv_out)


def coefficients(fixef: pd.Series, ranef: RandomEffects) -> dict[str, pd.DataFrame]:
    """Return fixed plus random effects per level of each grouping factor (lme4's ``coef``)."""
    out = {}
    for g, modes in ranef.modes.items():
        extra = [c for c in dict.fromkeys(modes.columns) if c not in fixef.index]
        cols = list(fixef.index) + extra
        values = np.tile([fixef.get(c, 0.0) for c in cols], (len(modes), 1))
        where = {c: i for i, c in enumerate(cols)}
        # terms on one factor that share a column ((1 | g) + (x | g)) add up
        for j, c in enumerate(modes.columns):
            values[:, where[c]] += modes.iloc[:, j].to_numpy()
        out[g] = pd.DataFrame(values, index=modes.index, columns=cols)
    return out


def covariance_blocks(design: Design, theta: np.ndarray, sigma: float) -> dict[str, pd.DataFrame]:
    """Return per term the covariance of its random effects, σ² T Tᵀ, labelled by its columns.

    Keys are lme4's group names, made unique as ``Subject``, ``Subject.1``.
    """
    out = {}
    used: dict[str, int] = {}
    covs = design.layout.covariances(theta, sigma)
    for t, cov in zip(design.terms, covs, strict=True):
        key = t.group if t.group not in used else f"{t.group}.{used[t.group]}"
        used[t.group] = used.get(t.group, 0) + 1
        out[key] = pd.DataFrame(cov, index=list(t.cnames), columns=list(t.cnames))
    return out


def variance_components(
    covariances: dict[str, pd.DataFrame], layouts: list[TermLayout], sigma: float
) -> pd.DataFrame:
    """Return lme4's ``as.data.frame(VarCorr(fit))``: grp, var1, var2, vcov, sdcor.

    Per term the variances first, then the covariances in θ order; the
    residual last.
    """
    rows: list[tuple[object, ...]] = []
    for (g, cov), layout in zip(covariances.items(), layouts, strict=True):
        names, c = list(cov.index), cov.to_numpy()
        pairs = list(zip(layout.entries, layout.sdcor(c), strict=True))
        rows += [(g, names[i], None, c[i, i], v) for (i, j), v in pairs if i == j]
        rows += [(g, names[j], names[i], c[i, j], v) for (i, j), v in pairs if i != j]
    rows.append(("Residual", None, None, sigma**2, sigma))
    return pd.DataFrame(rows, columns=["grp", "var1", "var2", "vcov", "sdcor"])
