"""The exact gradient of a GLMM's objective against finite differences of the objective.

The gradient (rust/core/glmm/grad.rs: envelope theorem, an adjoint solve, M⁻¹ on A's pattern)
and the objective are computed independently; a five-point central difference of the objective
(step 1e-4 in (θ, β), 1e-3 in θ with β inside PIRLS) agrees to about 1e-8 of the largest
component here.
"""

from __future__ import annotations

import numpy as np
import pytest

from mixedmodels.glmm import finite_difference_hessian
from tests.reference.test_lme4_glmm import case, model

CASES = ["cbpp_binomial", "contraception_slopes", "grouseticks_poisson", "verbagg_crossed_binomial"]


def five_point(f, x: np.ndarray, h: float = 1e-3) -> np.ndarray:
    out = []
    for e in np.eye(len(x)) * h:
        out.append((-f(x + 2 * e) + 8 * f(x + e) - 8 * f(x - e) + f(x - 2 * e)) / (12 * h))
    return np.array(out)


def start(name: str) -> tuple[np.ndarray, np.ndarray]:
    ref, _ = case(name)
    theta = np.atleast_1d(np.asarray(ref["theta"], dtype=float)) * 1.05 + 0.01
    return theta, np.asarray(list(ref["beta"].values())) + 0.01


@pytest.mark.parametrize("name", CASES)
def test_laplace_gradient(name):
    m = model(name)
    theta, beta = start(name)
    nt = len(theta)
    x = np.concatenate([theta, beta])
    _, grad = m.state.laplace_grad(theta, beta)
    fd = five_point(lambda v: m.objective(v[:nt], v[nt:]), x, h=1e-4)
    assert np.max(np.abs(grad - fd)) <= 1e-7 * max(1.0, np.max(np.abs(fd)))


@pytest.mark.parametrize("name", CASES)
def test_nagq0_gradient(name):
    m = model(name)
    theta, _ = start(name)
    _, grad = m.state.laplace_beta_grad(theta)
    fd = five_point(m.objective_nagq0, theta)
    assert np.max(np.abs(grad - fd)) <= 1e-6 * max(1.0, np.max(np.abs(fd)))


def test_gradient_hessian_is_the_objectives():
    name = "cbpp_binomial"
    m = model(name)
    ref, _ = case(name)
    theta = np.atleast_1d(ref["theta"])
    x = np.concatenate([theta, list(ref["beta"].values())])
    nt = len(theta)
    want = finite_difference_hessian(lambda v: m.objective(v[:nt], v[nt:]), x)
    from mixedmodels._glmm_fit import gradient_hessian

    got = gradient_hessian(lambda v: m.state.laplace_grad(v[:nt], v[nt:])[1], x)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_no_gradient_for_a_non_canonical_link():
    m = model("cbpp_proportion_weights_probit")
    assert not m.has_gradient
    assert m.default_control().optimizer == "bobyqa"
