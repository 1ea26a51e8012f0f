"""Plots of a fitted model (the optional ``plot`` extra: matplotlib).

- `caterpillar`: conditional modes of the random effects with intervals
  (lme4's ``dotplot(ranef(fit, condVar = TRUE))``);
- `residuals_vs_fitted`: scaled residuals against fitted values;
- `profile_zeta`: ζ against each parameter from the profile, with the
  confidence levels marked (lme4's ``xyplot(profile(fit))``).

Each returns the matplotlib Figure; save it with ``fig.savefig(path)``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import stats

from .profile import profile

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .results import LinearMixedModelResult

__all__ = ["caterpillar", "residuals_vs_fitted", "profile_zeta"]


def _plt() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("plots need matplotlib: pip install 'mixedmodels[plot]'") from e
    return plt


def caterpillar(
    fit: LinearMixedModelResult, group: str | None = None, level: float = 0.95
) -> Figure:
    """Plot the conditional modes per level, sorted, with ±z conditional sds."""
    plt = _plt()
    group = group or next(iter(fit.ranef.modes))
    modes = fit.ranef.modes[group]
    sds = fit.ranef.condsd(group)
    z = stats.norm.ppf(1 - (1 - level) / 2)
    k = modes.shape[1]
    fig, axes = plt.subplots(1, k, figsize=(3.2 * k, max(3.0, 0.18 * len(modes))), sharey=True)
    axes = np.atleast_1d(axes)
    order = np.argsort(modes.iloc[:, 0].to_numpy())
    ypos = np.arange(len(modes))
    for ax, col in zip(axes, modes.columns, strict=True):
        m = modes[col].to_numpy()[order]
        s = sds[col].to_numpy()[order]
        ax.errorbar(m, ypos, xerr=z * s, fmt="o", ms=3, lw=1)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_title(col)
    axes[0].set_yticks(ypos)
    axes[0].set_yticklabels(np.asarray(modes.index)[order], fontsize=7)
    fig.suptitle(f"Conditional modes: {group}")
    fig.tight_layout()
    return fig


def residuals_vs_fitted(fit: LinearMixedModelResult) -> Figure:
    """Plot the scaled (Pearson / σ) residuals against the fitted values."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.scatter(fit.fitted.to_numpy(), fit.resid("scaled"), s=8, alpha=0.7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel("fitted values")
    ax.set_ylabel("scaled residuals")
    fig.tight_layout()
    return fig


def profile_zeta(
    fit: LinearMixedModelResult, levels: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)
) -> Figure:
    """Plot ζ from the profile against each parameter."""
    plt = _plt()
    tr = profile(fit, level=max(levels))
    params = list(dict.fromkeys(tr.param))
    ncol = min(3, len(params))
    nrow = int(np.ceil(len(params) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.3 * ncol, 2.8 * nrow), squeeze=False)
    for ax, name in zip(axes.ravel(), params, strict=False):
        sub = tr[tr.param == name]
        ax.plot(sub.value, sub.zeta, "-o", ms=2)
        for lv in levels:
            zz = stats.norm.ppf(1 - (1 - lv) / 2)
            ax.axhline(zz, color="grey", lw=0.5, ls=":")
            ax.axhline(-zz, color="grey", lw=0.5, ls=":")
        ax.set_title(name, fontsize=8)
        ax.set_ylabel("ζ")
    for ax in axes.ravel()[len(params) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig
