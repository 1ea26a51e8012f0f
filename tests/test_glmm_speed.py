"""The GLMM speed paths against independent computations.

The one-pass PIRLS of scalar terms in parallel row chunks (checked against a per-group Newton
solve in numpy: with one random intercept the modes are independent one-dimensional problems),
its independence of the number of threads, the remembered last evaluation, the predicted starts
of evaluations, and the vcov Hessian from one PIRLS step per point (against the Hessian of fully
converged gradients).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels._glmm_fit import gradient_hessian

REF = Path(__file__).parent / "reference" / "glmm"

# 200,000 rows: three row chunks of the parallel pass
BIG = """
import numpy as np, pandas as pd
rng = np.random.default_rng(7)
n, G = 200_000, 500
g = rng.integers(0, G, n)
x = rng.normal(size=n)
eta = -0.3 + 0.6 * x + rng.normal(scale=0.7, size=G)[g]
y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
data = pd.DataFrame({"y": y, "x": x, "g": pd.Categorical(g)})
"""


def big_data() -> pd.DataFrame:
    scope: dict = {}
    exec(BIG, scope)
    return scope["data"]


def oracle(data: pd.DataFrame, lam: float, beta: np.ndarray) -> float:
    """Return the Laplace objective of y ~ x + (1 | g) (logit) by Newton per group in numpy."""
    y, x = data["y"].to_numpy(), data["x"].to_numpy()
    g = data["g"].cat.codes.to_numpy()
    n_g = int(g.max()) + 1
    base = beta[0] + beta[1] * x
    u = np.zeros(n_g)
    for _ in range(100):
        mu = 1 / (1 + np.exp(-(base + lam * u[g])))
        grad = lam * np.bincount(g, mu - y, n_g) + u  # half the gradient of the penalized deviance
        hess = lam**2 * np.bincount(g, mu * (1 - mu), n_g) + 1
        step = grad / hess
        u -= step
        if np.max(np.abs(step)) < 1e-15:
            break
    mu = 1 / (1 + np.exp(-(base + lam * u[g])))
    dev = -2 * np.sum(y * np.log(mu) + (1 - y) * np.log1p(-mu))
    logdet = np.sum(np.log(lam**2 * np.bincount(g, mu * (1 - mu), n_g) + 1))
    return float(dev + np.sum(u**2) + logdet)


@pytest.fixture(scope="module")
def big_model() -> tuple[mm.GeneralizedLinearMixedModel, pd.DataFrame]:
    data = big_data()
    return mm.GeneralizedLinearMixedModel.from_formula("y ~ x + (1 | g)", data), data


def test_chunked_pass_objective_and_gradient_match_newton_per_group(big_model):
    model, data = big_model
    x = np.array([0.65, -0.25, 0.55])
    value, grad = model.value_gradient(x)
    assert model.constant == 0.0  # Bernoulli: no binomial constant
    want = oracle(data, x[0], x[1:])
    assert value == pytest.approx(want, rel=1e-11)
    h = 1e-5
    for i in range(3):
        e = np.zeros(3)
        e[i] = h
        fd = (oracle(data, *np.split(x + e, [1])) - oracle(data, *np.split(x - e, [1]))) / (2 * h)
        assert grad[i] == pytest.approx(fd, rel=1e-6, abs=1e-4)  # θ is λ for a scalar term


def test_chunked_pass_does_not_depend_on_the_number_of_threads():
    code = (
        BIG
        + """
import mixedmodels as mm
m = mm.GeneralizedLinearMixedModel.from_formula("y ~ x + (1 | g)", data)
v, g = m.value_gradient(np.array([0.65, -0.25, 0.55]))
print(repr(v), repr(list(g)))
"""
    )
    outs = set()
    for threads in ("1", "2", "3"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        outs.add(out.stdout.strip())
    assert len(outs) == 1, outs


def test_the_last_evaluation_is_remembered_and_modes_reset_it(big_model):
    model, _ = big_model
    theta, beta = np.array([0.5]), np.array([-0.2, 0.5])
    first = model.state.laplace(theta, beta)
    again = model.state.laplace(theta, beta)
    assert again.iterations == 0
    assert again.laplace == first.laplace
    model.state.set_modes(np.zeros(len(model.state.modes())))
    cold = model.state.laplace(theta, beta)
    assert cold.iterations > 1
    assert cold.laplace == pytest.approx(first.laplace, rel=1e-13)


def test_predicted_starts_give_the_cold_starts_objectives_in_fewer_iterations():
    ref = json.loads((REF / "verbagg_crossed_binomial.json").read_text())
    data = pd.read_csv(REF / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    model = mm.GeneralizedLinearMixedModel.from_formula(ref["formula"], data, family="binomial")
    thetas = [np.array([1.2, 0.5]) * s for s in (1.0, 1.05, 1.1, 1.12, 1.13)]
    warm = [model.state.laplace_beta(t) for t in thetas]
    cold = []
    for t in thetas:
        model.state.set_modes(None)
        cold.append(model.state.laplace_beta(t))
    for w, c in zip(warm, cold, strict=True):
        assert w.laplace == pytest.approx(c.laplace, rel=1e-12)
    assert sum(w.iterations for w in warm[1:]) < sum(c.iterations for c in cold[1:])


@pytest.mark.parametrize(
    "name", ["cbpp_binomial", "grouseticks_poisson", "verbagg_crossed_binomial"]
)
def test_one_step_hessian_is_the_converged_gradients_hessian(name):
    ref = json.loads((REF / f"{name}.json").read_text())
    data = pd.read_csv(REF / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    fit = mm.glmer(ref["formula"], data, family=ref["family"], link=ref["link"])
    model, nt = fit.model, len(fit.theta)
    assert model.state.mode_jacobian() is not None  # the one-step path is the one tested
    x = np.concatenate([fit.theta, fit.beta])
    got = model.gradient_hessian(fit.theta, fit.beta)
    want = gradient_hessian(lambda v: model.state.laplace_grad(v[:nt], v[nt:])[1], x)
    assert np.max(np.abs(got - want)) <= 1e-6 * np.max(np.abs(want))


def test_two_chunk_pass_and_hessian_copies_do_not_depend_on_the_number_of_threads():
    # VerbAgg's rows five times over (37,920 rows): two row chunks, and the Hessian's points
    # on copies of the model
    code = """
import json, numpy as np, pandas as pd, mixedmodels as mm
from pathlib import Path
ref = json.loads(Path(REF, "verbagg_crossed_binomial.json").read_text())
data = pd.read_csv(Path(REF, "data", Path(ref["dataset"]).name))
data = pd.concat([data] * 5, ignore_index=True)
for col, levels in ref["factor_levels"].items():
    data[col] = pd.Categorical(data[col].astype(str), categories=levels)
m = mm.GeneralizedLinearMixedModel.from_formula(ref["formula"], data, family="binomial")
theta, beta = np.array([1.3, 0.5]), np.array(list(ref["beta"].values()))
v, g = m.value_gradient(np.concatenate([theta, beta]))
h = m.gradient_hessian(theta, beta)
print(repr(v), repr(list(g)), repr(h.tolist()))
"""
    outs = set()
    for threads in ("1", "2"):
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        out = subprocess.run(
            [sys.executable, "-c", f"REF = {str(REF)!r}\n" + code],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        outs.add(out.stdout.strip())
    assert len(outs) == 1, outs


def test_hessian_base_point_from_the_fit_is_the_recomputed_one():
    # the fit's Hessian takes the gradient at the optimum as the optimizer left it; computed
    # again from û (the memo forgotten) every point is evaluated: the same numbers
    ref = json.loads((REF / "grouseticks_poisson.json").read_text())
    data = pd.read_csv(REF / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    fit = mm.glmer(ref["formula"], data, family=ref["family"], link=ref["link"])
    model = fit.model
    model.state.set_modes(model.state.modes())
    before = model.state.evaluations
    again = model.gradient_hessian(fit.theta, fit.beta)
    m = len(fit.theta) + len(fit.beta)
    assert model.state.evaluations - before == m + 2  # PIRLS at x, m + 1 points
    np.testing.assert_array_equal(again, fit.hessian)


def test_predicted_starts_follow_a_change_of_beta():
    # β given (the second stage): the modes move by −M⁻¹ΛᵀZᵀWXΔβ to first order, so a small
    # change of β starts PIRLS off by O(Δβ²): two iterations (one step, one to confirm)
    ref = json.loads((REF / "verbagg_crossed_binomial.json").read_text())
    data = pd.read_csv(REF / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    model = mm.GeneralizedLinearMixedModel.from_formula(ref["formula"], data, family="binomial")
    theta = np.array(ref["theta"])
    beta0 = np.array(list(ref["beta"].values()))
    rng = np.random.default_rng(3)
    betas = [beta0 + rng.normal(scale=1e-4, size=beta0.size) for _ in range(5)]
    model.state.laplace(theta, beta0)
    warm = [model.state.laplace(theta, b) for b in betas]
    cold = []
    for b in betas:
        model.state.set_modes(None)
        cold.append(model.state.laplace(theta, b))
    for w, c in zip(warm, cold, strict=True):
        assert w.laplace == pytest.approx(c.laplace, rel=1e-12)
    assert all(w.iterations <= 2 for w in warm), [w.iterations for w in warm]
