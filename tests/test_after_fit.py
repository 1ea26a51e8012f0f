"""Simulation, refitting, bootstrap and residual types."""

from __future__ import annotations

import numpy as np
import pytest

import mixedmodels as mm


@pytest.fixture(scope="module")
def fit():
    return mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))


def test_simulate_is_reproducible_and_has_the_fitted_moments(fit):
    a, b = fit.simulate(3, seed=7), fit.simulate(3, seed=7)
    assert a.shape == (180, 3) and list(a.columns) == ["sim_1", "sim_2", "sim_3"]
    np.testing.assert_array_equal(a.to_numpy(), b.to_numpy())
    many = fit.simulate(4000, seed=1).to_numpy()
    # the marginal covariance of the simulations is V
    v = fit.V(dense=True)
    emp = np.cov(many[:10])
    np.testing.assert_allclose(emp, v[:10, :10], rtol=0.15, atol=0.1 * v[:10, :10].max())
    np.testing.assert_allclose(
        many.mean(axis=1),
        fit.get_me("X") @ fit.beta,
        atol=3 * np.sqrt(np.diag(v)).max() / np.sqrt(4000) * 3,
    )


def test_refit_equals_a_fresh_fit(fit):
    y = fit.simulate(1, seed=3).sim_1.to_numpy()
    d = mm.datasets.load("sleepstudy").assign(Reaction=y)
    fresh = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    again = fit.refit(y)
    assert abs(again.objective - fresh.objective) < 1e-6 * abs(fresh.objective)
    np.testing.assert_allclose(again.beta, fresh.beta, rtol=1e-4)
    # the original fit is untouched
    assert fit.model.objective(fit.theta) == pytest.approx(fit.objective, rel=1e-12)
    np.testing.assert_array_equal(fit.get_me("y"), mm.datasets.load("sleepstudy").Reaction)
    with pytest.raises(mm.exceptions.DimensionError, match="has 3 values"):
        fit.refit([1.0, 2.0, 3.0])


def test_bootstrap_intervals(fit):
    ci = fit.confint("boot", nsim=60, seed=11)
    again = fit.confint("boot", nsim=60, seed=11, n_jobs=2)
    np.testing.assert_allclose(ci.to_numpy(), again.to_numpy())
    assert list(ci.index) == list(fit.confint("wald").index)
    est = np.concatenate([[24.74, 0.066, 5.92, 25.59], fit.beta])
    assert (ci.lower.to_numpy() < est).all() and (est < ci.upper.to_numpy()).all()


def test_residual_types_and_offset():
    d = mm.datasets.load("sleepstudy").assign(
        w=lambda x: x.Days % 3 + 1.0, off=lambda x: x.Days * 2.0
    )
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", d, weights="w")
    r = fit.resid("response").to_numpy()
    np.testing.assert_allclose(fit.resid("pearson").to_numpy(), r * np.sqrt(d.w))
    np.testing.assert_allclose(fit.resid("scaled").to_numpy(), r * np.sqrt(d.w) / fit.sigma)
    with pytest.raises(ValueError, match="unknown residual type"):
        fit.resid("deviance-ish")
    # an offset of 2 Days moves the Days coefficient by -2 and nothing else
    plain = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    shifted = mm.lmer("Reaction ~ Days + (Days | Subject)", d, offset="off")
    np.testing.assert_allclose(shifted.beta, plain.beta - [0, 2], rtol=1e-6)
    np.testing.assert_allclose(shifted.fitted, plain.fitted, rtol=1e-8)
    assert shifted.predict(d.iloc[:3], re_form="~0") == pytest.approx(
        plain.predict(d.iloc[:3], re_form="~0")
    )
    with pytest.raises(mm.DataError, match="positive"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", d.assign(w=-1.0), weights="w")


def test_predict_on_the_fitted_rows_and_partial_re_form():
    d = mm.datasets.load("sleepstudy")
    fit = mm.lmer("Reaction ~ Days + (1 | Subject) + (0 + Days | Subject)", d)
    np.testing.assert_allclose(fit.predict(), fit.fitted.to_numpy())
    np.testing.assert_allclose(fit.predict(d), fit.fitted.to_numpy(), rtol=1e-12)
    only_int = fit.predict(d, re_form="~(1|Subject)")
    b = fit.ranef["Subject"]
    want = fit.get_me("X") @ fit.beta + b["(Intercept)"].loc[d.Subject.astype(str)].to_numpy()
    np.testing.assert_allclose(only_int, want, rtol=1e-12)


def test_type3_anova_with_factor_terms_and_interactions():
    star = mm.datasets.load("star_k_sample")
    fit = mm.lmer("read ~ cltype + sx + (1 | sch)", star)
    table = mm.anova(fit)
    assert list(table.index) == ["cltype", "sx"]
    assert list(table.NumDF) == [2, 1]
    # the one-df term's F is its t²
    ct = fit.coef_table()
    assert table.F["sx"] == pytest.approx(ct.t["sxF"] ** 2, rel=1e-10)
    assert table.DenDF["sx"] == pytest.approx(ct.df["sxF"], rel=1e-10)
    with pytest.raises(NotImplementedError, match="interaction"):
        mm.anova(mm.lmer("read ~ cltype * sx + (1 | sch)", star))


def test_wald_intervals_without_fixed_effects():
    # catalogue M79: a numpy broadcast error (lower[-p:] with p = 0 is the whole array)
    fit = mm.lmer("Reaction ~ 0 + (1 | Subject)", mm.datasets.load("sleepstudy"))
    ci = fit.confint("wald")
    assert list(ci.index) == ["sd_(Intercept)|Subject", "sigma"]
    assert ci.isna().all().all()  # Wald gives no limits for variance parameters, as lme4
