"""Adaptive quadrature (nagq = 5) against the glmm package 0.6.2 (tests/reference/glmm_agq, written
by scripts/make_glmm_agq_reference.py): a scalar term (cbpp, where lme4 agrees too), two random
effects per level (Contraception's ``(urban | district)``) and three (a simulated Poisson model).

glmm adapts its tensor-product rule as this package does (per level the conditional mode and the
Cholesky factor of the level's block of ΛᵀZᵀWZΛ + I), so the objective at glmm's estimates
matches glmm's ``deviance`` to rounding and PIRLS's tolerance. Conventions: glmm's ``deviance``
is −2 log L without the family's constant, as lme4's objective for nAGQ > 1 and ours; glmm's
``loglik`` includes the constant, while lme4 and this package report ``loglik = −objective/2``
for nAGQ > 1 (the two differ for binomial responses with more than one trial and for Poisson).
Tolerances of the estimates as test_lme4_glmm.py.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

HERE = Path(__file__).resolve().parent
CASES = ["cbpp_binomial_agq5", "contraception_slopes_agq5", "sim_poisson_k3_agq5"]


@functools.cache
def case(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((HERE / "glmm_agq" / f"{name}.json").read_text())
    data = pd.read_csv(HERE / ref["dataset"])
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    for col in ("herd", "district", "g"):
        if col in data:
            data[col] = data[col].astype(str)
    return ref, data


def model(name: str) -> mm.GeneralizedLinearMixedModel:
    ref, data = case(name)
    return mm.GeneralizedLinearMixedModel.from_formula(
        ref["formula"], data, family=ref["family"], link=ref["link"], nagq=ref["nagq"]
    )


@functools.cache
def fitted(name: str) -> mm.GeneralizedLinearMixedModelResult:
    return model(name).fit()


@pytest.mark.parametrize("name", CASES)
def test_objective_at_glmm_estimates(name):
    ref, _ = case(name)
    m = model(name)
    assert m.design.terms[0].k == len(ref["varcorr"])
    value = m.objective(ref["theta"], list(ref["beta"].values()))
    assert value == pytest.approx(ref["deviance"], rel=1e-8)


@pytest.mark.parametrize("name", CASES)
def test_loglik_conventions(name):
    ref, _ = case(name)
    m = model(name)
    # glmm's loglik includes the constant that its deviance (and our objective) leaves out
    assert ref["loglik"] == pytest.approx(-(ref["deviance"] + m.constant) / 2, rel=1e-10)
    fit = fitted(name)
    assert fit.loglik == pytest.approx(-fit.objective / 2, rel=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_fit_matches_glmm(name):
    ref, _ = case(name)
    fit = fitted(name)
    assert fit.objective <= ref["deviance"] * (1 + 1e-6)
    se_ref = np.asarray(ref["se"])
    beta_ref = np.asarray(list(ref["beta"].values()))
    assert np.all(np.abs(fit.beta - beta_ref) <= 2e-3 * se_ref)
    theta_ref = np.asarray(ref["theta"])
    np.testing.assert_allclose(fit.theta, theta_ref, rtol=1e-3, atol=1e-3 * np.abs(theta_ref).max())
    np.testing.assert_allclose(np.sqrt(np.diag(fit.vcov)), se_ref, rtol=2e-3)
