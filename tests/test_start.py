"""The core BFGS's first trial point: θ by MIVQUE0, from the cross-products alone.

Checked against MIVQUE0 computed from dense matrices (Rao 1971; LaMotte 1973): with
Q = I − X(XᵀX)⁻¹Xᵀ, the quadratic forms yᵀQ C_e Q y equated to their expectations
Σ_u tr(Q C_e Q D_u) x_u, for the unknowns x = (σ², vech Σ_t) with D_u the covariance
each contributes (I, and Z_t (I ⊗ sym E_ab) Z_tᵀ), and the forms C_e = I (the residual
sum of squares) and Z_t (I ⊗ sym E_ij) Z_tᵀ (the level sums of the residuals, multiplied
entry by entry).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from tests.conftest import load_case


def _term_z(data: pd.DataFrame, group: str, cols: list[np.ndarray]) -> np.ndarray:
    codes = pd.Categorical(data[group]).codes
    levels, k = codes.max() + 1, len(cols)
    z = np.zeros((len(data), levels * k))
    for j, c in enumerate(cols):
        z[np.arange(len(data)), codes * k + j] = c
    return z


def _dense_mivque0(y: np.ndarray, x: np.ndarray, terms: list[tuple[np.ndarray, int]]):
    n = len(y)
    q = np.eye(n) - x @ np.linalg.solve(x.T @ x, x.T)
    mats = [np.eye(n)]
    for z, k in terms:
        for b in range(k):
            for a in range(b, k):
                e = np.zeros((k, k))
                e[a, b] = e[b, a] = 1.0
                mats.append(z @ np.kron(np.eye(z.shape[1] // k), e) @ z.T)
    qm = [q @ m @ q for m in mats]
    # the forms use sym E_ab / 2 off the diagonal (Σ_l r_a r_b); the scale of an equation
    # does not change the solution
    lhs = np.array([[np.sum(a * b.T) for b in mats] for a in qm])
    rhs = np.array([y @ a @ y for a in qm])
    sol = np.linalg.solve(lhs, rhs)
    sigma2, theta, u = sol[0], [], 1
    for _, k in terms:
        m = k * (k + 1) // 2
        cov = np.zeros((k, k))
        idx = [(a, b) for b in range(k) for a in range(b, k)]
        for (a, b), v in zip(idx, sol[u : u + m], strict=True):
            cov[a, b] = cov[b, a] = v
        chol = np.linalg.cholesky(cov / sigma2)
        theta.extend(chol[a, b] for a, b in idx)
        u += m
    return np.array(theta)


def test_moment_start_is_mivque0_for_a_random_slope_on_unbalanced_data():
    d = mm.datasets.load("sleepstudy")
    d = d.iloc[np.random.default_rng(3).permutation(len(d))[:130]].reset_index(drop=True)
    model = mm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", d)
    x = np.column_stack([np.ones(len(d)), d.Days])
    z = _term_z(d, "Subject", [np.ones(len(d)), d.Days.to_numpy(float)])
    expected = _dense_mivque0(d.Reaction.to_numpy(float), x, [(z, 2)])
    np.testing.assert_allclose(model.state.moment_start(), expected, rtol=1e-9)


def test_moment_start_is_mivque0_for_crossed_terms_on_unbalanced_data():
    d = mm.datasets.load("penicillin")
    d = d.iloc[np.random.default_rng(4).permutation(len(d))[:100]].reset_index(drop=True)
    model = mm.LinearMixedModel.from_formula("diameter ~ 1 + (1 | plate) + (1 | sample)", d)
    one = np.ones(len(d))
    terms = [(_term_z(d, g, [one]), 1) for g in ("plate", "sample")]
    expected = _dense_mivque0(d.diameter.to_numpy(float), one[:, None], terms)
    np.testing.assert_allclose(model.state.moment_start(), expected, rtol=1e-9)


@pytest.mark.parametrize(
    "name", ["dyestuff", "pastes_nested", "penicillin_crossed", "sleepstudy_reml"]
)
def test_the_moment_start_is_the_reml_optimum_on_balanced_designs(cache, name):
    # MIVQUE0 gives the ANOVA estimates, which on balanced data are REML's when positive
    # (Searle, Casella and McCulloch 1992, ch. 4 and 6): lme4's θ to its precision, and the
    # optimizer's from lme4's start to the optimum's
    model = cache.model(name)
    start = model.state.moment_start()
    np.testing.assert_allclose(start, load_case(name)["theta"], rtol=1e-4)
    fit = model.fit(start=model.start())
    np.testing.assert_allclose(start, fit.theta, rtol=1e-7)
    assert cache.fit(name).optsum.feval <= 3  # lme4's start, this θ, at most one step
