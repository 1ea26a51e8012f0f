"""Adaptive Gauss-Hermite quadrature beyond lme4: one grouping factor with 2 or 3 random effects.

The quadrature's −2 log L (without the family's constant, lme4's convention for nAGQ > 1) is
checked against an independent computation of the marginal likelihood: per level, the mode by
scipy's BFGS, the curvature by finite differences, and the integral by the trapezoid rule on a
dense tensor grid (spectrally accurate for these smooth, fast-decaying integrands), with the
deviance residuals written out here in numpy. The scalar case is lme4's (tests/reference).
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
import scipy.special

import mixedmodels as mm
from mixedmodels.exceptions import ArgumentError

FORMULA = {2: "y ~ x + (1 + x | g)", 3: "y ~ x + (1 + x + z | g)"}
# (k, family, θ, β) at which the objective is checked
POINTS = [
    (2, "binomial", [0.9, 0.2, 0.6], [0.2, 0.4]),
    (3, "poisson", [0.9, 0.1, -0.1, 0.6, 0.1, 0.5], [0.2, 0.4]),
]


@functools.cache
def simulate(k: int, family: str, n_levels: int = 12, per: int = 10) -> pd.DataFrame:
    """Return a small data set with k random effects per level (intercept, x, z)."""
    rng = np.random.default_rng(7)
    g = np.repeat(np.arange(n_levels), per)
    x, z = rng.normal(size=g.size), rng.normal(size=g.size)
    b = rng.normal(size=(n_levels, 3)) * [0.9, 0.6, 0.5]
    eta = 0.2 + 0.4 * x + b[g, 0] + b[g, 1] * x + (b[g, 2] * z if k == 3 else 0.0)
    if family == "binomial":
        y = rng.binomial(1, 1 / (1 + np.exp(-eta)))
    else:
        y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"L{j:02d}" for j in g]})


def deviance_residuals(family: str, y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    """Return the deviance residuals of 0/1 (binomial, logit) or count (Poisson, log) responses."""
    if family == "binomial":
        return 2 * (np.logaddexp(0, eta) - y * eta)
    return 2 * (scipy.special.xlogy(y, y) - y * eta - (y - np.exp(eta)))


def marginal_deviance(
    data: pd.DataFrame, family: str, theta: list, beta: list, k: int, h: float, half: float
) -> float:
    """Return Σ_levels −2 log ∫ exp(−(Σ dᵢ(u) + ‖u‖²)/2) (2π)^(−k/2) du by the trapezoid rule."""
    lam = np.zeros((k, k))
    lam[np.triu_indices(k)[::-1]] = theta  # the lower triangle, column by column
    x = np.column_stack([np.ones(len(data)), data["x"]])
    zk = np.column_stack([np.ones(len(data)), data["x"], data["z"]])[:, :k] @ lam
    xb = x @ np.asarray(beta)
    axis = np.arange(-half, half + h / 2, h)
    grid = np.stack(np.meshgrid(*[axis] * k, indexing="ij"), -1).reshape(-1, k)
    total = 0.0
    for level in np.unique(data["g"]):
        rows = (data["g"] == level).to_numpy()
        y, zl, xbl = data["y"].to_numpy()[rows], zk[rows], xb[rows]

        def f(u, y=y, zl=zl, xbl=xbl):
            return deviance_residuals(family, y, xbl + zl @ u).sum() + u @ u

        mode = scipy.optimize.minimize(f, np.zeros(k), method="BFGS", options={"gtol": 1e-9}).x
        # the curvature (central differences) only places the grid: any L gives the integral
        eye, e = np.eye(k), 1e-3
        hess = np.array(
            [
                [
                    (
                        f(mode + e * (eye[a] + eye[c]))
                        - f(mode + e * (eye[a] - eye[c]))
                        - f(mode - e * (eye[a] - eye[c]))
                        + f(mode - e * (eye[a] + eye[c]))
                    )
                    / (4 * e * e)
                    for c in range(k)
                ]
                for a in range(k)
            ]
        )
        chol = np.linalg.cholesky(hess / 2)
        u = mode + np.linalg.solve(chol.T, grid.T).T
        fu = deviance_residuals(family, y[None, :], xbl[None, :] + u @ zl.T).sum(1)
        fu += (u * u).sum(1)
        f0 = f(mode)
        s = np.exp(-(fu - f0) / 2).sum() * h**k * (2 * np.pi) ** (-k / 2)
        total += f0 + 2 * np.log(np.diag(chol)).sum() - 2 * np.log(s)
    return total


@functools.cache
def brute_force(k: int) -> float:
    _, family, theta, beta = next(p for p in POINTS if p[0] == k)
    return marginal_deviance(simulate(k, family), family, theta, beta, k, h=0.35, half=8.4)


def agq(k: int, nagq: int) -> float:
    _, family, theta, beta = next(p for p in POINTS if p[0] == k)
    model = mm.GeneralizedLinearMixedModel.from_formula(
        FORMULA[k], simulate(k, family), family=family, nagq=nagq
    )
    return model.objective(theta, beta)


@pytest.mark.parametrize("k", [2, 3])
def test_the_grid_integral_is_converged(k):
    _, family, theta, beta = next(p for p in POINTS if p[0] == k)
    finer = marginal_deviance(simulate(k, family), family, theta, beta, k, h=0.28, half=9.5)
    assert finer == pytest.approx(brute_force(k), rel=1e-10)


@pytest.mark.parametrize("k", [2, 3])
def test_quadrature_converges_to_the_marginal_likelihood(k):
    exact = brute_force(k)
    err = {q: abs(agq(k, q) - exact) / exact for q in (3, 7, 15)}
    assert err[15] < 1e-6, err
    assert err[15] < err[7] < err[3], err


@pytest.mark.parametrize("k", [2, 3])
def test_one_node_is_the_laplace_approximation(k):
    _, family, theta, beta = next(p for p in POINTS if p[0] == k)
    model = mm.GeneralizedLinearMixedModel.from_formula(
        FORMULA[k], simulate(k, family), family=family
    )
    laplace = model.objective(theta, beta) - model.constant  # nAGQ = 1 includes the constant
    th, b = np.asarray(theta, float), np.asarray(beta, float)
    one = model.state.agq(th, b, np.zeros(1), np.ones(1))[0]
    assert one == pytest.approx(laplace, rel=1e-13)
    # and it is off the marginal likelihood by more than the quadrature's tolerance
    assert abs(laplace - brute_force(k)) / brute_force(k) > 1e-4


@pytest.fixture(scope="module")
def slopes_fits() -> tuple[mm.GeneralizedLinearMixedModelResult, ...]:
    data = simulate(2, "binomial", n_levels=30, per=12)
    return tuple(mm.glmer(FORMULA[2], data, nagq=q) for q in (1, 5))


def test_fit_with_five_nodes_on_random_slopes(slopes_fits):
    laplace, fit = slopes_fits
    assert fit.nagq == 5
    text = str(fit)
    assert "maximum likelihood (Adaptive Gauss-Hermite Quadrature, nAGQ = 5) [glmerMod]" in text
    assert "Laplace" not in text
    # the reported objective is the quadrature's at the estimates, and no higher there than
    # at the Laplace fit's estimates
    assert fit.objective == pytest.approx(fit.model.objective(fit.theta, fit.beta), rel=1e-12)
    assert fit.objective <= fit.model.objective(laplace.theta, laplace.beta)
    assert fit.loglik == pytest.approx(-fit.objective / 2)
    se = np.sqrt(np.diag(fit.vcov))
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    assert np.abs(fit.beta - laplace.beta).max() < 0.2 * se.max()
    assert fit.ranef["g"].shape == (30, 2)


def test_quadrature_refusals():
    data = simulate(3, "poisson").assign(w=lambda d: d["x"] * d["z"], h=lambda d: d.index % 5)
    with pytest.raises(ArgumentError, match="single random-effects term"):
        mm.GeneralizedLinearMixedModel.from_formula(
            "y ~ x + (1 + x | g) + (1 | h)", data, family="poisson", nagq=3
        )
    with pytest.raises(ArgumentError, match="at most 3 random effects per level"):
        mm.GeneralizedLinearMixedModel.from_formula(
            "y ~ x + (1 + x + z + w | g)", data, family="poisson", nagq=3
        )
    with pytest.raises(ArgumentError, match=r"16\^3 = 4096 nodes per level.*nagq <= 15"):
        mm.GeneralizedLinearMixedModel.from_formula(FORMULA[3], data, family="poisson", nagq=16)
    with pytest.raises(ArgumentError, match="at most 25"):
        mm.GeneralizedLinearMixedModel.from_formula(FORMULA[2], data, family="poisson", nagq=26)
    # the limits allowed: 25 nodes for two effects, 15 for three
    mm.GeneralizedLinearMixedModel.from_formula(FORMULA[2], data, family="poisson", nagq=25)
    mm.GeneralizedLinearMixedModel.from_formula(FORMULA[3], data, family="poisson", nagq=15)
