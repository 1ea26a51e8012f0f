"""The exact gradient of the objective against finite differences of it, on every
reference case, at lme4's optimum and at lme4's start."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import case_params, load_case

import mixedmodels as mm


def central_difference(model: mm.LinearMixedModel, theta: np.ndarray) -> np.ndarray:
    fd = np.empty_like(theta)
    for j in range(theta.size):
        h = 1e-5 * max(1.0, abs(theta[j]))
        e = np.zeros_like(theta)
        e[j] = h
        fd[j] = (model.objective(theta + e) - model.objective(theta - e)) / (2 * h)
    return fd


def lme4_theta(case: dict) -> np.ndarray:
    return np.atleast_1d(np.asarray(case["theta"], dtype=np.float64))


@pytest.mark.parametrize("name", case_params())
@pytest.mark.parametrize("where", ["optimum", "start"])
def test_gradient_matches_finite_differences(cache, name, where):
    model = cache.model(name)
    theta = lme4_theta(load_case(name)) if where == "optimum" else model.start()
    g = model.gradient(theta)
    assert g.shape == theta.shape
    fd = central_difference(model, theta)
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("name", case_params())
def test_gradient_at_lme4_optimum(cache, name):
    """Interior components are near zero where lme4 stopped (it stops on a relative
    change of the objective, hence the allowance proportional to it); components on
    the boundary θ = 0 do not point into the feasible region."""
    case = load_case(name)
    model = cache.model(name)
    theta = lme4_theta(case)
    g = model.gradient(theta)
    lower = np.asarray(model.lower, dtype=np.float64)
    on_boundary = theta <= lower
    interior_tol = 1e-2 + 2e-6 * abs(case["objective"])
    assert np.all(np.abs(g[~on_boundary]) < interior_tol), g
    assert np.all(g[on_boundary] >= -1e-6), g


def test_gradient_checks_theta(cache):
    model = cache.model("sleepstudy_reml")
    with pytest.raises(mm.exceptions.ThetaError):
        model.gradient([1.0, 0.0])


@pytest.mark.parametrize("reml", [True, False])
def test_gradient_with_weights_and_offset(reml):
    data = mm.datasets.load("sleepstudy")
    n = len(data)
    model = mm.LinearMixedModel.from_formula(
        "Reaction ~ Days + (Days | Subject)",
        data,
        reml=reml,
        weights=np.linspace(0.5, 2.0, n),
        offset=np.sin(np.arange(n)),
    )
    for theta in ([1.0, 0.0, 1.0], [0.7, -0.3, 0.0], [0.0, 0.2, 0.4]):
        th = np.asarray(theta)
        np.testing.assert_allclose(
            model.gradient(th), central_difference(model, th), rtol=1e-5, atol=1e-4
        )


GRAD_THREADS = """
import numpy as np, pandas as pd, mixedmodels as mm
rng = np.random.default_rng(9)
n, m = 30_000, 6_000
g = rng.integers(0, m, n)
x = rng.standard_normal(n)
b = rng.standard_normal((m, 2)) * [1.0, 0.5]
d = pd.DataFrame({"y": 1 + x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n), "x": x,
                  "g": pd.Categorical(g)})
model = mm.LinearMixedModel.from_formula("y ~ x + (1 + x | g)", d)
print(repr(model.gradient([0.8, 0.2, 0.4]).tolist()))
"""


def test_a_single_terms_gradient_over_many_levels_is_the_same_on_any_threads():
    # 6,000 levels: the pass over the levels is split across threads in fixed chunks
    runs = [
        subprocess.run(
            [sys.executable, "-c", GRAD_THREADS],
            env={**os.environ, "RAYON_NUM_THREADS": t},
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        for t in ("1", "2", "3")
    ]
    assert runs[0] == runs[1] == runs[2] and runs[0].startswith("[")


def test_a_single_terms_gradient_over_many_levels_matches_finite_differences():
    rng = np.random.default_rng(9)
    n, m = 30_000, 6_000
    g = rng.integers(0, m, n)
    x = rng.standard_normal(n)
    b = rng.standard_normal((m, 2)) * [1.0, 0.5]
    d = {"y": 1 + x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n), "x": x, "g": g.astype(str)}
    for reml in (True, False):
        model = mm.LinearMixedModel.from_formula("y ~ x + (1 + x | g)", d, reml=reml)
        theta = np.array([0.8, 0.2, 0.4])
        fd = central_difference(model, theta)
        np.testing.assert_allclose(model.gradient(theta), fd, rtol=1e-5, atol=1e-3)
