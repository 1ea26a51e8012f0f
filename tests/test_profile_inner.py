"""The profile's inner parametrization: every point is a valid θ that holds the parameter exactly.

Random free variables (any real numbers, as the inner optimizer may try) are
mapped to (θ, σ); θ must satisfy its lower bounds (a valid template, so a
positive semidefinite covariance) and the held sd, correlation or σ must be
the held value, on a three-effect term, on two correlated terms, and on a
model whose random-effect columns the core rescales (Days × 1000).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels._profile_inner import InnerProblem, Point
from tests.conftest import REFERENCE


def quadratic() -> mm.LinearMixedModel:
    data = pd.read_csv(REFERENCE / "formulas" / "data" / "quadratic_re_sim.csv")
    data["x2"] = data["x"] ** 2
    return mm.LinearMixedModel.from_formula("y ~ x + x2 + (1 + x + x2 | g)", data, reml=False)


def two_terms() -> mm.LinearMixedModel:
    data = mm.datasets.load("star_k_sample")
    return mm.LinearMixedModel.from_formula("read ~ cltype + sx + (sx | sch/tch)", data)


def rescaled() -> mm.LinearMixedModel:
    data = mm.datasets.load("sleepstudy")
    data = data.assign(Days=data["Days"] * 1000.0)
    return mm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", data)


MODELS = {"quadratic": quadratic, "two_terms": two_terms, "rescaled": rescaled}


def problems(
    model: mm.LinearMixedModel, rng: np.random.Generator
) -> list[tuple[InnerProblem, int]]:
    """Return inner problems for every sd and correlation of the model and σ, at random values,
    with the index of the held parameter in (sds and correlations, σ)."""
    layout = model.design.layout
    out = []
    i = 0
    for t, term in enumerate(layout.terms):
        for r, c in term.entries:
            if r == c:
                for value in (0.0, float(rng.uniform(0.1, 30.0))):
                    out.append((InnerProblem(model.state, layout, "sd", value, t, r, c), i))
            else:
                for value in (-1.0, float(rng.uniform(-0.99, 0.99)), 1.0):
                    out.append((InnerProblem(model.state, layout, "cor", value, t, r, c), i))
            i += 1
    out.append((InnerProblem(model.state, layout, "sigma", float(rng.uniform(0.5, 30.0))), i))
    out.append((InnerProblem(model.state, layout, "free"), -1))
    return out


def held_value(model: mm.LinearMixedModel, core_theta: np.ndarray, sigma: float, i: int) -> float:
    theta = model.state.model_theta(core_theta)
    return float(np.append(model.design.layout.sdcor(theta, sigma), sigma)[i])


@pytest.mark.parametrize("name", list(MODELS))
def test_every_inner_point_is_a_valid_theta_that_holds_the_value(name):
    model = MODELS[name]()
    rng = np.random.default_rng(7)
    lower = model.lower
    start = Point(model.state.core_theta(model.start()), 10.0)
    for prob, i in problems(model, rng):
        n = prob.x_from(start).shape[0]
        for _ in range(20):
            x = rng.normal(0.0, rng.choice([0.01, 1.0, 10.0]), n)
            theta, sigma = prob.point(x)
            assert np.all(theta >= lower), (prob, theta)
            full = prob.full_point(x)
            assert np.array_equal(full.theta, theta)
            assert full.sigma > 0 and not np.isnan(prob.deviance(x))
            if i >= 0:
                got = held_value(model, full.theta, full.sigma, i)
                if prob.kind == "cor" and np.isnan(got):
                    continue  # a zero row: the correlation is undefined, the model valid
                assert got == pytest.approx(prob.value, rel=1e-12, abs=1e-12), prob


@pytest.mark.parametrize("name", list(MODELS))
def test_a_start_keeps_the_point_when_it_already_holds_the_value(name):
    # x_from then point gives back the same covariance and σ when the point satisfies the
    # constraint: continuation starts where the previous solution was
    model = MODELS[name]()
    rng = np.random.default_rng(11)
    layout = model.design.layout
    theta = np.where(
        model.lower == 0, rng.uniform(0.2, 2.0, model.n_theta), rng.normal(0, 1, model.n_theta)
    )
    point = Point(model.state.core_theta(theta), 7.5)
    psi = np.append(layout.sdcor(theta, 7.5), 7.5)
    for prob, i in problems(model, rng):
        if i >= 0:
            t, r, c = prob.term, prob.row, prob.col
            prob = InnerProblem(prob.state, layout, prob.kind, float(psi[i]), t, r, c)
        got_theta, got_sigma = prob.point(prob.x_from(point))
        got = layout.covariances(model.state.model_theta(got_theta), got_sigma or 7.5)
        want = layout.covariances(theta, 7.5)
        for g, w in zip(got, want, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10 * np.abs(w).max())
