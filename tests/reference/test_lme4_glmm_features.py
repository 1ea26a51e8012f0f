"""The GLMM result API against lme4 1.1-31: the inverse Gaussian family, profile intervals, V.

Made by scripts/make_glmm_features_reference.R (tests/reference/glmm_features), and the profile
limits of tests/reference/glmm (cbpp_binomial, grouseticks_poisson: confint_profile).

- The inverse Gaussian with each of its links (1/mu^2, inverse, log, identity): the objective
  at fixed (θ, β) within 1e-7 relative; the optimum at most lme4's objective at lme4's optimum
  (with tight PIRLS: lme4's reported objective comes from its loose PIRLS, 1e-3 lower on the
  identity link) + 1e-6 relative; the test_lme4_glmm.py tolerances on θ, β, standard errors,
  σ and fitted values, ten times looser where our optimum is below lme4's.
- Profile limits within 1e-3 of the interval's width of lme4's (lme4 interpolates a spline
  through its profile: tests/test_glmm_profile_check.py checks ours independently).
- The linearized model of cbpp: the working weights and V = W⁻¹ + ZΛΛᵀZᵀ as lme4's at its
  optimum (1e-3 relative: the optima differ by that little), log det V within 1e-3 per row.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import ArgumentError, DataError, DimensionError, MemoryBudgetError
from tests.reference.glmm_reference import check_objective_at_fixed_parameters, read_case

HERE = Path(__file__).resolve().parent
IG = ["ig_mu2", "ig_inverse", "ig_log", "ig_identity"]


@functools.cache
def case(folder: str, name: str) -> tuple[dict, pd.DataFrame]:
    return read_case(HERE / folder / f"{name}.json", HERE / folder / "data")


def ig_model(name: str) -> mm.GeneralizedLinearMixedModel:
    ref, data = case("glmm_features", name)
    assert ref["family"] == "inverse.gaussian"
    fam = mm.families.inverse_gaussian(ref["link"])
    return mm.GeneralizedLinearMixedModel.from_formula(ref["formula"], data, family=fam)


@functools.cache
def ig_fit(name: str) -> mm.GeneralizedLinearMixedModelResult:
    return ig_model(name).fit()


@pytest.mark.parametrize("name", IG)
def test_inverse_gaussian_objective_at_fixed_parameters(name):
    ref, _ = case("glmm_features", name)
    check_objective_at_fixed_parameters(ref, ig_model(name))


@pytest.mark.parametrize("name", IG)
def test_inverse_gaussian_fit(name):
    ref, _ = case("glmm_features", name)
    fit = ig_fit(name)
    tight = ref["fixed_parameters"][0]["objective"]  # lme4's optimum, PIRLS converged
    assert fit.objective <= tight * (1 + 1e-6)
    tol = 10.0 if fit.objective < tight else 1.0
    assert fit.family.name == "inverse.gaussian" and fit.family.link == ref["link"]
    assert fit.npar == ref["df"]
    assert fit.aic - fit.objective == pytest.approx(ref["AIC"] - ref["objective"])
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), rtol=1e-3 * tol)
    beta = np.array(list(ref["beta"].values()))
    se = np.sqrt(np.diag(ref["vcov_beta"]))
    assert np.max(np.abs(fit.beta - beta) / se) < 2e-3 * tol
    np.testing.assert_allclose(fit.stderror, se, rtol=2e-3 * tol)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-3)
    np.testing.assert_allclose(
        fit.varcorr["sdcor"], [r["sdcor"] for r in ref["varcorr"]], rtol=2e-3 * tol
    )
    np.testing.assert_allclose(fit.fitted.to_numpy()[:10], ref["fitted_head"], rtol=1e-3 * tol)
    assert fit.deviance == pytest.approx(ref["deviance"], rel=1e-4 * tol)


def test_inverse_gaussian_summary_and_names():
    text = str(ig_fit("ig_mu2"))
    assert " Family: inverse.gaussian  ( 1/mu^2 )" in text
    assert "\n Residual " in text
    assert "Estimate Std. Error t value Pr(>|z|)" in text
    assert mm.families.family("inverse.gaussian") == mm.families.inverse_gaussian("1/mu^2")
    with pytest.raises(ArgumentError, match="available links"):
        mm.families.inverse_gaussian("logit")


def test_inverse_gaussian_response_must_be_positive():
    _, data = case("glmm_features", "ig_log")
    bad = data.assign(y=data["y"].where(data.index != 3, 0.0))
    with pytest.raises(DataError, match="inverse.gaussian response must be positive"):
        mm.glmer("y ~ x + (1 | g)", bad, family="inverse.gaussian", link="log")


# -- profile intervals ------------------------------------------------------------------
PROFILES = [
    ("glmm", "cbpp_binomial"),
    ("glmm", "grouseticks_poisson"),
    ("glmm_features", "binomial_slopes_profile"),
]


@functools.cache
def profile_fit(folder: str, name: str) -> mm.GeneralizedLinearMixedModelResult:
    ref, data = case(folder, name)
    return mm.glmer(ref["formula"], data, family=ref["family"], link=ref["link"])


@functools.cache
def profile_ci(folder: str, name: str) -> pd.DataFrame:
    return profile_fit(folder, name).confint("profile")


@pytest.mark.parametrize(("folder", "name"), PROFILES)
def test_profile_limits_match_lme4(folder, name):
    ref, _ = case(folder, name)
    want = ref["confint_profile"]
    ci = profile_ci(folder, name)
    fit = profile_fit(folder, name)
    assert list(ci.index) == [*fit.design.layout.sdcor_names, *fit.design.x_names]
    assert len(ci) == len(want["names"])
    width = np.asarray(want["upper"]) - np.asarray(want["lower"])
    for side in ("lower", "upper"):
        err = np.abs(ci[side].to_numpy() - np.asarray(want[side])) / width
        assert err.max() < 1e-3, f"{side}: {dict(zip(ci.index, err.round(6), strict=True))}"


def test_profile_limit_at_a_bound():
    # grouseticks: the sd of LOCATION's lower limit is 0 (the profile stays below the
    # quantile), binomial_slopes: the correlation's upper limit is 1, as lme4's
    ci = profile_ci("glmm", "grouseticks_poisson")
    assert ci.loc["sd_(Intercept)|LOCATION", "lower"] == 0.0
    ci = profile_ci("glmm_features", "binomial_slopes_profile")
    assert ci.loc["cor_x.(Intercept)|g", "upper"] == 1.0


def test_profile_traces_pass_through_the_estimate_and_the_limits():
    fit = profile_fit("glmm", "cbpp_binomial")
    tr = fit.profile(level=0.95, points=5)
    ci = profile_ci("glmm", "cbpp_binomial")
    for name, part in tr.groupby("param", sort=False):
        assert part["zeta"].is_monotonic_increasing
        z = np.interp([ci.loc[name, "lower"], ci.loc[name, "upper"]], part["value"], part["zeta"])
        np.testing.assert_allclose(z, [-1.959964, 1.959964], atol=1e-5)


def test_profile_refuses_a_dispersion_and_nagq0():
    ref, data = case("glmm_features", "ig_log")
    with pytest.raises(ArgumentError, match="non-fixed scale parameters"):
        ig_fit("ig_log").confint("profile")
    ref, data = case("glmm", "cbpp_binomial")
    fast = mm.glmer(ref["formula"], data, nagq=0)
    with pytest.raises(ArgumentError, match="nagq=0"):
        fast.confint("profile")


# -- the linearized model ------------------------------------------------------------------
@functools.cache
def cbpp_fit() -> mm.GeneralizedLinearMixedModelResult:
    ref, data = case("glmm_features", "cbpp_linearized")
    return mm.glmer(ref["formula"], data)


def test_working_weights_and_V_match_lme4():
    ref, _ = case("glmm_features", "cbpp_linearized")
    fit = cbpp_fit()
    np.testing.assert_allclose(fit.working_weights, ref["working_weights"], rtol=1e-3)
    v = fit.V(dense=True)
    np.testing.assert_allclose(np.diag(v), ref["V_diag"], rtol=1e-3)
    np.testing.assert_allclose(v[0], ref["V_row1"], rtol=1e-3, atol=1e-12)
    # log det V sums the logs of 56 rows' variances, each within 1e-3 of lme4's
    assert abs(fit.V_logdet() - ref["V_logdet"]) < 56 * 1e-3
    assert fit.V_logdet() == pytest.approx(np.linalg.slogdet(v)[1], rel=1e-12)
    sparse = fit.V()
    np.testing.assert_array_equal(sparse.toarray(), v)


def test_V_solve_and_matvec_agree_with_the_dense_V():
    fit = cbpp_fit()
    v = fit.V(dense=True)
    b = np.random.default_rng(3).standard_normal((fit.nobs, 2))
    np.testing.assert_allclose(fit.V_matvec(b), v @ b, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fit.V_solve(b), np.linalg.solve(v, b), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(fit.V_solve(b[:, 0]), np.linalg.solve(v, b[:, 0]), rtol=1e-10)
    with pytest.raises(DimensionError, match="one row per observation"):
        fit.V_solve(np.ones(3))
    with pytest.raises(MemoryBudgetError):
        fit.V(dense=True, max_bytes=100)


def test_gls_with_V_is_pirls_at_the_fast_fit():
    # At nAGQ = 0 β is PIRLS's at θ̂: generalized least squares of the working response with V
    # gives it back, and (XᵀV⁻¹X)⁻¹ is (RXᵀRX)⁻¹
    ref, data = case("glmm_features", "cbpp_linearized")
    fit = mm.glmer(ref["formula"], data, nagq=0)
    d = fit.family.mu_eta(fit.eta)
    z = fit.eta + (fit.design.y - fit.mu) / d  # (no offset in this model)
    res = mm.gls(fit.design.X, z, fit.V(dense=True))
    np.testing.assert_allclose(res.beta, fit.beta, rtol=1e-9)
    np.testing.assert_allclose(res.cov, fit.vcov_rx.to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(mm.gls(fit.design.X, z, fit).beta, fit.beta, rtol=1e-9)
