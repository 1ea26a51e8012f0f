"""Invariants: row order, level relabelling, shifting and scaling the response."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm

FORMULAS = [
    ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
    ("pastes", "strength ~ 1 + (1 | batch/cask)"),
    ("penicillin", "diameter ~ 1 + (1 | plate) + (1 | sample)"),
]


@pytest.mark.parametrize("data, formula", FORMULAS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_row_order(data, formula, seed):
    d = mm.datasets.load(data)
    m = mm.LinearMixedModel.from_formula(formula, d)
    rng = np.random.default_rng(seed)
    shuffled = d.iloc[rng.permutation(len(d))]
    ms = mm.LinearMixedModel.from_formula(formula, shuffled)
    theta = rng.uniform(0.2, 2.0, m.n_theta) * np.where(m.lower == 0, 1, 0.3)
    assert abs(m.objective(theta) - ms.objective(theta)) < 1e-10 * abs(m.objective(theta))


@pytest.mark.parametrize("data, formula", FORMULAS)
def test_level_relabelling(data, formula):
    d = mm.datasets.load(data)
    m = mm.LinearMixedModel.from_formula(formula, d)
    relabelled = d.copy()
    for col in relabelled.columns:
        if hasattr(relabelled[col], "cat"):
            cats = list(relabelled[col].cat.categories)
            relabelled[col] = relabelled[col].cat.reorder_categories(cats[::-1])
    mr = mm.LinearMixedModel.from_formula(formula, relabelled)
    theta = np.where(m.lower == 0, 0.7, 0.1)
    assert abs(m.objective(theta) - mr.objective(theta)) < 1e-10 * abs(m.objective(theta))


@pytest.mark.parametrize("data, formula", FORMULAS)
def test_shift_and_scale_response(data, formula):
    d = mm.datasets.load(data)
    resp = formula.split("~")[0].strip()
    fit = mm.lmer(formula, d)
    a, c = 3.5, -40.0
    fit2 = mm.lmer(formula, d.assign(**{resp: a * d[resp] + c}))
    # θ is scale-free; σ scales by a; the intercept shifts
    np.testing.assert_allclose(fit2.theta, fit.theta, atol=2e-4)
    assert abs(fit2.sigma / (a * fit.sigma) - 1) < 1e-5
    # the REML criterion shifts by 2(n - p) log a
    shift = 2 * (fit.nobs - len(fit.beta)) * np.log(a)
    assert abs(fit2.objective - fit.objective - shift) < 1e-6 * abs(fit.objective)


def _assert_same_variance_components(fit, base, scale=1.0):
    # the variance components on the original scale, within 1e-6 relative: the sds, the
    # correlations and every element of the covariance matrices
    a, b = fit.varcorr, base.varcorr
    sd = a.var2.isna()
    factor = np.where(a.var1.str.startswith("Days") & sd, scale, 1.0)
    np.testing.assert_allclose(a.sdcor.to_numpy() * factor, b.sdcor.to_numpy(), rtol=1e-6)
    s = np.diag([1.0, scale])
    for cov, cov0 in zip(fit.covariances.values(), base.covariances.values(), strict=True):
        c = cov.to_numpy()
        c = s[: c.shape[0], : c.shape[0]] @ c @ s[: c.shape[0], : c.shape[0]]
        np.testing.assert_allclose(c, cov0.to_numpy(), rtol=1e-6)


@pytest.mark.parametrize("scale", [1e-6, 1e-3, 1e3, 1e6])
def test_rescaling_a_random_slope_covariate_changes_nothing(scale):
    # Days in other units: the same model. The ML deviance (1e-6 absolute), β, σ and the
    # variance components mapped back (1e-6 relative) must agree with the original fit
    # (bad-inputs catalogue N01: these stopped up to 77 units short, silently)
    d = mm.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    base = mm.lmer(f, d, reml=False)
    fit = mm.lmer(f, d.assign(Days=d.Days * scale), reml=False)
    assert fit.objective == pytest.approx(base.objective, abs=1e-6)
    np.testing.assert_allclose(fit.fixef.to_numpy() * [1, scale], base.fixef.to_numpy(), rtol=1e-6)
    assert fit.sigma == pytest.approx(base.sigma, rel=1e-6)
    _assert_same_variance_components(fit, base, scale)
    assert fit.check_optimum().optimal and fit.optsum.check.optimal
    assert not fit.is_singular


@pytest.mark.parametrize(
    "formula, column, shift",
    [
        ("Reaction ~ Days + (Days | Subject)", "Reaction", 1e6),
        ("Reaction ~ Days + (Days | Subject)", "Reaction", 1e9),
        ("Reaction ~ Days + (1 | Subject)", "Days", 1e7),
    ],
)
def test_large_means_cost_no_digits(formula, column, shift):
    # a response or covariate far from zero: the same model (catalogue N02, N04: σ was off by
    # 3e-4, +1e9 was refused as an exact fit, the slope was 10.578 instead of 10.467)
    d = mm.datasets.load("sleepstudy")
    base = mm.lmer(formula, d, reml=False)
    fit = mm.lmer(formula, d.assign(**{column: d[column] + shift}), reml=False)
    assert fit.objective == pytest.approx(base.objective, abs=1e-6)
    beta = fit.fixef.to_numpy().copy()
    if column == "Reaction":
        beta[0] -= shift
    else:
        beta[0] += shift * beta[1]
    np.testing.assert_allclose(beta, base.fixef.to_numpy(), rtol=1e-6)
    assert fit.sigma == pytest.approx(base.sigma, rel=1e-6)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-6)
    _assert_same_variance_components(fit, base)
    np.testing.assert_allclose(fit.vcov.to_numpy()[1:, 1:], base.vcov.to_numpy()[1:, 1:], rtol=1e-6)
    assert fit.check_optimum().optimal and fit.optsum.check.optimal


@pytest.mark.parametrize("shift", [100.0, 1e3, 1e7])
def test_shifting_a_random_slope_covariate_changes_nothing(shift):
    # (Days | Subject) with Days + 100 stopped 37.8 units short with no warning (the optimum
    # has intercept and slope correlated within 1e-6 of -1): the core gets the column centred
    d = mm.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    base = mm.lmer(f, d, reml=False)
    fit = mm.lmer(f, d.assign(Days=d.Days + shift), reml=False)
    assert fit.objective == pytest.approx(base.objective, abs=1e-6)
    assert fit.fixef["Days"] == pytest.approx(base.fixef["Days"], rel=1e-6)
    assert fit.sigma == pytest.approx(base.sigma, rel=1e-6)
    # the random effects of the shifted covariate are A b, their covariance A Σ Aᵀ
    a = np.array([[1.0, -shift], [0.0, 1.0]])
    lam_b = base.get_me("Lambda").toarray()[:2, :2]
    lam_f = fit.get_me("Lambda").toarray()[:2, :2]
    cov_b = base.sigma**2 * lam_b @ lam_b.T
    cov_f = fit.sigma**2 * lam_f @ lam_f.T
    want = a @ cov_b @ a.T
    np.testing.assert_allclose(cov_f, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    rb = base.ranef["Subject"].to_numpy() @ a.T
    np.testing.assert_allclose(fit.ranef["Subject"].to_numpy(), rb, rtol=1e-5, atol=1e-6 * shift)
    assert fit.optsum.check.optimal


def test_profile_of_a_model_with_a_centred_random_slope():
    d = mm.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    base = mm.lmer(f, d, reml=False).confint("profile")
    fit = mm.lmer(f, d.assign(Days=d.Days + 1e3), reml=False).confint("profile")
    for name in ("sd_Days|Subject", "sigma", "Days"):
        np.testing.assert_allclose(fit.loc[name].to_numpy(), base.loc[name].to_numpy(), rtol=1e-4)
