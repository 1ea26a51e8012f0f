"""The plots render to files."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm
from mixedmodels import plots


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


@pytest.mark.parametrize("plot", [plots.caterpillar, plots.residuals_vs_fitted, plots.profile_zeta])
def test_plot_renders(fit, plot, tmp_path):
    import matplotlib.pyplot as plt

    fig = plot(fit)
    path = tmp_path / f"{plot.__name__}.png"
    fig.savefig(path, dpi=60)
    plt.close(fig)
    assert path.stat().st_size > 2000
    # a PNG of the expected size
    img = plt.imread(path)
    assert img.ndim == 3 and img.shape[0] > 100 and np.std(img) > 0.01


def test_profile_traces_cross_zero_at_the_estimates(fit):
    tr = fit.profile(points=7)
    assert set(tr.param) == set(fit.confint("wald").index)
    for name, sub in tr.groupby("param", sort=False):
        assert (sub.zeta.diff().dropna() >= -1e-6).all(), name  # ζ increases
        assert sub.zeta.min() < 0 < sub.zeta.max() or name.startswith("cor")
