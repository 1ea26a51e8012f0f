"""Every case of tests/reference/cases (lme4 1.1-31) in tiers:

1. the objective at fixed θ (lme4's devFunOnly): independent of any optimizer;
2. the estimates at the optimum;
3. the layout (θ names and bounds, nobs, ngrps) and derived quantities.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import case_params, load_case


def as_list(x):
    """R's JSON writer unboxes length-one vectors."""
    return x if isinstance(x, list) else [x]


def rel(a, b):
    return abs(a - b) / abs(b)


@pytest.mark.parametrize("name", case_params())
def test_objective_at_fixed_theta(cache, name):
    case = load_case(name)
    model = cache.model(name)
    for point in case["fixed_theta"]:
        got = model.objective(np.atleast_1d(point["theta"]))
        assert rel(got, point["objective"]) < 1e-9, (point, got)


@pytest.mark.parametrize("name", case_params())
def test_layout(cache, name):
    case = load_case(name)
    model = cache.model(name)
    assert model.nobs == case["nobs"]
    assert model.theta_names == as_list(case["theta_names"])
    lower = [-np.inf if v is None else v for v in as_list(case["lower"])]
    np.testing.assert_array_equal(model.lower, lower)
    fit = cache.fit(name)
    assert fit.ngrps == case["ngrps"]
    assert list(fit.fixef.index) == list(case["beta"])


@pytest.mark.parametrize("name", case_params())
def test_optimum(cache, name):
    case = load_case(name)
    fit = cache.fit(name)
    ref_obj = case["objective"]
    # the objective: within 1e-6 relative of lme4's, or lower
    assert fit.objective <= ref_obj or rel(fit.objective, ref_obj) < 1e-6
    assert fit.is_singular == case["is_singular"]
    se = np.sqrt(np.diag(np.asarray(case["vcov_beta"], dtype=float).reshape(len(case["beta"]), -1)))
    beta_ref = np.array(list(case["beta"].values()))
    sd_rows = [r for r in case["varcorr"] if r["var2"] is None and r["grp"] != "Residual"]
    sd_ref = np.array([r["sdcor"] for r in sd_rows])
    ours = fit.varcorr
    sd_ours = ours[(ours.var2.isna()) & (ours.grp != "Residual")].sdcor.to_numpy()
    beta_tol, sigma_tol, sd_tol = 1e-3, 1e-4, 1e-3
    np.testing.assert_array_less(np.abs(fit.beta - beta_ref) / se, beta_tol)
    assert rel(fit.sigma, case["sigma"]) < sigma_tol
    scale = sd_ref.max() if sd_ref.max() > 0 else case["sigma"]
    np.testing.assert_array_less(np.abs(sd_ours - sd_ref) / scale, sd_tol)


@pytest.mark.parametrize("name", case_params())
def test_likelihood_summaries(cache, name):
    case = load_case(name)
    fit = cache.fit(name)
    tol = 1e-6 * abs(case["objective"])
    if fit.objective < case["objective"] - tol:
        pytest.fail("lower objective than lme4: compare by hand")
    assert abs(fit.loglik - case["logLik"]) < tol
    assert abs(fit.aic - case["AIC"]) < tol
    assert abs(fit.bic - case["BIC"]) < tol
    assert fit.npar == case["df"]


@pytest.mark.parametrize("name", case_params())
def test_fitted_and_residual_quantiles(cache, name):
    case = load_case(name)
    fit = cache.fit(name)
    scale = np.abs(case["fitted_head"]).max()
    tol = 1e-4
    np.testing.assert_allclose(fit.fitted.to_numpy()[:10], case["fitted_head"], atol=tol * scale)
    sr = fit.residuals.to_numpy() / fit.sigma
    q = np.quantile(sr, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(q, case["scaled_resid_quantiles"], atol=tol * 10)


@pytest.mark.parametrize("name", case_params())
def test_ranef(cache, name):
    case = load_case(name)
    fit = cache.fit(name)
    ref = case["ranef"]
    ours = fit.ranef.as_frame()
    assert list(ours.grpvar) == as_list(ref["grpvar"])
    assert list(ours.term) == as_list(ref["term"])
    assert list(ours.grp) == as_list(ref["grp"])
    tol = 1e-3
    scale = np.abs(ref["condval"]).max()
    np.testing.assert_allclose(ours.condval, ref["condval"], atol=tol * scale)
    np.testing.assert_allclose(ours.condsd, ref["condsd"], rtol=tol, atol=tol * max(ref["condsd"]))
