"""Gamma and negative binomial GLMMs against lme4 1.1-31 (tests/reference/glmm_extra).

Made by scripts/make_glmm_extra_reference.R: ``glmer(family = Gamma(link = "log"))`` and
``glmer.nb`` (the shape estimated). The same tolerances as test_lme4_glmm.py; the estimated
shape within 1e-3 relative.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from tests.reference.glmm_reference import check_objective_at_fixed_parameters, read_case
from tests.reference.glmm_reference import looser as glmm_looser

HERE = Path(__file__).resolve().parent / "glmm_extra"
CASES = ["gamma_log_sim", "gamma_log_slopes_sim", "grouseticks_nb", "nb_sim"]
NB = ["grouseticks_nb", "nb_sim"]


@functools.cache
def case(name: str) -> tuple[dict, pd.DataFrame]:
    return read_case(HERE / f"{name}.json", HERE / "data")


def model(name: str) -> mm.GeneralizedLinearMixedModel:
    """The model at lme4's family (for the negative binomial, at lme4's estimated shape)."""
    ref, data = case(name)
    if name in NB:
        fam = mm.families.negative_binomial(ref["theta_nb"], ref["link"])
    else:
        assert ref["family"] == "Gamma"
        fam = mm.families.gamma(ref["link"])
    return mm.GeneralizedLinearMixedModel.from_formula(ref["formula"], data, family=fam)


@functools.cache
def fitted(name: str) -> mm.GeneralizedLinearMixedModelResult:
    ref, data = case(name)
    if name in NB:
        return mm.glmer_nb(ref["formula"], data, link=ref["link"])
    return model(name).fit()


def looser(name: str) -> float:
    return glmm_looser(case(name)[0], fitted(name))


@pytest.mark.parametrize("name", CASES)
def test_objective_at_fixed_parameters(name):
    ref, _ = case(name)
    check_objective_at_fixed_parameters(ref, model(name))


@pytest.mark.parametrize("name", CASES)
def test_fit(name):
    ref, _ = case(name)
    fit = fitted(name)
    tol = looser(name)
    assert fit.objective <= ref["objective"] * (1 + 1e-6)
    assert fit.npar == ref["df"]
    assert fit.aic - fit.objective == pytest.approx(ref["AIC"] - ref["objective"])
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), rtol=1e-3, atol=1e-4)
    beta = np.array(list(ref["beta"].values()))
    se = np.sqrt(np.diag(ref["vcov_beta"]))
    assert np.max(np.abs(fit.beta - beta) / se) < 2e-3 * tol
    np.testing.assert_allclose(fit.stderror, se, rtol=2e-3 * tol)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)  # 1 for the negative binomial
    vc = fit.varcorr
    assert list(vc["grp"]) == [r["grp"] for r in ref["varcorr"]]
    np.testing.assert_allclose(
        vc["sdcor"], [r["sdcor"] for r in ref["varcorr"]], rtol=2e-3, atol=1e-3
    )
    np.testing.assert_allclose(fit.fitted.to_numpy()[:10], ref["fitted_head"], rtol=1e-3 * tol)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-4 * tol)


@pytest.mark.parametrize("name", CASES)
def test_ranef(name):
    ref, _ = case(name)
    got = fitted(name).ranef.as_frame()
    want = ref["ranef"]
    scale = np.max(np.abs(want["condval"]))
    assert np.max(np.abs(got["condval"] - want["condval"])) < 5e-3 * scale * looser(name)
    np.testing.assert_allclose(got["condsd"], want["condsd"], rtol=5e-3 * looser(name))


def test_summary_has_the_residual_row():
    text = str(fitted("gamma_log_sim"))
    assert " Family: Gamma  ( log )" in text
    assert "\n Residual " in text
    assert "Estimate Std. Error t value Pr(>|z|)" in text


@pytest.mark.parametrize("name", NB)
def test_negative_binomial_shape(name):
    ref, _ = case(name)
    assert fitted(name).family.shape == pytest.approx(ref["theta_nb"], rel=1e-3)


@pytest.mark.parametrize("name", NB)
def test_negative_binomial_objective_by_shape(name):
    ref, _ = case(name)
    m = model(name)
    theta, beta = np.atleast_1d(ref["theta"]), list(ref["beta"].values())
    for point in ref["shape_profile"]:
        m.set_shape(point["theta_nb"])
        assert m.objective(theta, beta) == pytest.approx(point["fixed_objective"], rel=1e-7)
        th, b, _, _ = m.optimize(mm.Control())
        assert m.objective(th, b) <= point["objective"] * (1 + 1e-6)
