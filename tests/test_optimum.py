"""The optimality check: the fit's θ is the optimum, or the check says by how much it is not."""

from __future__ import annotations

import pytest

import mixedmodels as mm
from mixedmodels.exceptions import ConvergenceWarning
from tests.conftest import case_params


@pytest.mark.parametrize("name", case_params())
def test_reference_fits_are_optimal(cache, name):
    check = cache.fit(name).check_optimum()
    assert check.optimal, check.describe()
    assert check.gap <= 1e-5 and check.decrease == 0.0


def test_a_fit_cut_short_is_not_optimal_and_the_check_says_how_far():
    d = mm.datasets.load("sleepstudy")
    with pytest.warns(ConvergenceWarning, match="did not converge"):
        fit = mm.lmer("Reaction ~ Days + (Days | Subject)", d, control=mm.Control(maxeval=5))
    check = fit.check_optimum()
    assert not check.optimal
    # the line search found a lower objective: a proven lower bound on the gap
    assert check.decrease > 1.0
    assert fit.model.objective(check.better_theta) == pytest.approx(
        fit.objective - check.decrease, rel=1e-12
    )
    assert "deviance units above the optimum" in check.describe()
