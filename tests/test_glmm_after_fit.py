"""What a GLMM fit does after fitting: simulate, refit, the bootstrap and the optimality check.

Expected values are independent computations: the moments of simulated responses against
E[y] and Var[y] integrated over the random intercept by Gauss-Hermite quadrature (the family's
conditional variance φV(μ)/w, φ = σ̂² for the families with a dispersion); a refit against a
fresh fit of the same formula on the new response; the check's gap against a quadratic whose
gap is known.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels._glmm_check import gap_check
from mixedmodels.exceptions import ArgumentError, ConvergenceWarning

REF = Path(__file__).parent / "reference"


@functools.cache
def data(folder: str, name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REF / folder / f"{name}.json").read_text())
    d = pd.read_csv(REF / folder / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        d[col] = pd.Categorical(d[col].astype(str), categories=levels)
    return ref, d


@functools.cache
def fitted(kind: str) -> mm.GeneralizedLinearMixedModelResult:
    """One fit per family, each with a single random intercept."""
    if kind == "binomial":  # cbind(incidence, size - incidence): proportions of the trials
        ref, d = data("glmm", "cbpp_binomial")
        return mm.glmer(ref["formula"], d)
    if kind == "poisson":
        _, d = data("glmm_extra", "nb_sim")
        return mm.glmer("y ~ x + (1 | g)", d, family="poisson")
    if kind == "negative.binomial":
        ref, d = data("glmm_extra", "nb_sim")
        fam = mm.families.negative_binomial(ref["theta_nb"])
        return mm.glmer("y ~ x + (1 | g)", d, family=fam)
    if kind == "Gamma":
        _, d = data("glmm_extra", "gamma_log_sim")
        return mm.glmer("y ~ x + (1 | g)", d, family="Gamma", link="log")
    _, d = data("glmm_features", "ig_log")
    return mm.glmer("y ~ x + (1 | g)", d, family="inverse.gaussian", link="log")


FAMILIES = ["binomial", "poisson", "negative.binomial", "Gamma", "inverse.gaussian"]


def moments(fit: mm.GeneralizedLinearMixedModelResult) -> tuple[np.ndarray, np.ndarray]:
    """Return E[y] and Var[y] per row, integrating the random intercept b = θu, u ~ N(0, 1)."""
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    eta0 = fit.design.X @ fit.beta
    mu = fit.family.linkinv(eta0[:, None] + fit.theta[0] * nodes[None, :])
    w = fit.model.prior_weights[:, None]
    name = fit.family.name
    if name == "binomial":
        cond = mu * (1 - mu) / w
    elif name == "poisson":
        cond = mu
    elif name == "negative.binomial":
        cond = mu + mu**2 / fit.family.shape
    elif name == "Gamma":
        cond = fit.sigma**2 * mu**2 / w
    else:
        cond = fit.sigma**2 * mu**3 / w
    mean = mu @ weights
    var = cond @ weights + (mu**2) @ weights - mean**2
    return mean, var


@pytest.mark.parametrize("kind", FAMILIES)
def test_simulated_responses_have_the_fitted_models_moments(kind):
    fit = fitted(kind)
    assert len(fit.design.terms) == 1 and fit.design.terms[0].k == 1
    nsim = 4000
    sims = fit.simulate(nsim, seed=11)
    assert list(sims.columns[:2]) == ["sim_1", "sim_2"] and sims.shape == (fit.nobs, nsim)
    y = sims.to_numpy()
    mean, var = moments(fit)
    z = (y.mean(axis=1) - mean) / np.sqrt(var / nsim)
    assert np.abs(z).max() < 5.0
    # the variances pooled over the rows (lme4 1.1-31's Gamma shape σ·w would make the
    # conditional variances 3.7 times these here, its inverse Gaussian shape w/σ 2.4 times)
    ratio = y.var(axis=1, ddof=1).sum() / var.sum()
    assert ratio == pytest.approx(1.0, abs=0.05)


def test_simulate_binomial_gives_proportions_of_the_trials_and_is_reproducible():
    fit = fitted("binomial")
    a, b = fit.simulate(3, seed=5), fit.simulate(3, seed=5)
    pd.testing.assert_frame_equal(a, b)
    k = a.to_numpy() * fit.model.prior_weights[:, None]
    np.testing.assert_allclose(k, np.round(k), atol=1e-9)
    assert not a.equals(fit.simulate(3, seed=6))
    with pytest.raises(ArgumentError, match="nsim"):
        fit.simulate(0)


def test_refit_equals_a_fresh_fit_of_the_new_response():
    ref, d = data("glmm", "cbpp_binomial")
    fit = fitted("binomial")
    y = fit.simulate(1, seed=3)["sim_1"]
    again = fit.refit(y)
    size = d["size"].to_numpy()
    fresh_data = d.assign(incidence=np.round(y.to_numpy() * size))
    fresh = mm.glmer(ref["formula"], fresh_data)
    assert again.objective == pytest.approx(fresh.objective, rel=1e-8)
    np.testing.assert_allclose(again.theta, fresh.theta, rtol=1e-3)
    np.testing.assert_allclose(again.beta, fresh.beta, rtol=1e-3, atol=1e-4)
    # the model's own response gives the fit back
    same = fit.refit(fit.design.y)
    assert same.objective == pytest.approx(fit.objective, rel=1e-9)
    with pytest.raises(ArgumentError, match="rows"):
        fit.refit(np.zeros(3))


def test_bootstrap_intervals_are_the_quantiles_of_refits_to_simulated_responses():
    fit = fitted("poisson")
    nsim = 40
    ci = fit.confint("boot", nsim=nsim, seed=7)
    assert list(ci.index) == ["sd_(Intercept)|g", "(Intercept)", "x"]
    ys = fit.simulate(nsim, seed=7)
    _, d = data("glmm_extra", "nb_sim")
    rows = []
    for i in range(nsim):
        f = mm.glmer("y ~ x + (1 | g)", d.assign(y=ys.iloc[:, i].to_numpy()), family="poisson")
        rows.append([f.theta[0], *f.beta])
    boot = np.array(rows)
    np.testing.assert_allclose(ci["lower"], np.quantile(boot, 0.025, axis=0), rtol=1e-4)
    np.testing.assert_allclose(ci["upper"], np.quantile(boot, 0.975, axis=0), rtol=1e-4)


def test_bootstrap_of_a_family_with_a_dispersion_has_a_sigma_row():
    fit = fitted("Gamma")
    samples = fit.bootstrap(nsim=5, seed=1)
    assert list(samples.columns) == ["sd_(Intercept)|g", "sigma", "(Intercept)", "x"]
    assert (samples["sigma"] > 0).all()


def test_wald_rows_of_the_variance_parameters_are_missing():
    fit = fitted("binomial")
    ci = fit.confint()
    assert np.isnan(ci.loc["sd_(Intercept)|herd"]).all()
    pd.testing.assert_frame_equal(ci.iloc[1:], fit.confint_wald())


# -- the optimality check -------------------------------------------------------------------
def test_gap_of_a_quadratic_is_its_height_above_the_minimum():
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 4))
    h = a @ a.T + 4 * np.eye(4)
    xmin = np.array([0.5, 0.2, -1.0, 2.0])
    x = xmin + rng.standard_normal(4) * 1e-2
    g = h @ (x - xmin)
    gap, free = gap_check(g, h, x, np.full(4, -np.inf))
    assert gap == pytest.approx(0.5 * (x - xmin) @ h @ (x - xmin), rel=1e-12)
    assert free.all()
    # a coordinate at its bound with the gradient outward is held
    x2 = x.copy()
    x2[0] = 0.0
    g2 = g.copy()
    g2[0] = 1.0
    gap2, free2 = gap_check(g2, h, x2, np.array([0.0, -np.inf, -np.inf, -np.inf]))
    assert not free2[0] and free2[1:].all()
    sub = h[1:, 1:]
    assert gap2 == pytest.approx(0.5 * g2[1:] @ np.linalg.solve(sub, g2[1:]), rel=1e-12)
    # no local minimum in sight: an infinite gap
    assert gap_check(g, -h, x, np.full(4, -np.inf))[0] == np.inf


@pytest.mark.parametrize(
    "name",
    [
        "cbpp_binomial",
        "cbpp_binomial_agq25",
        "cbpp_proportion_weights_probit",
        "grouseticks_poisson",
        "contraception_slopes",
        "verbagg_crossed_binomial",
    ],
)
def test_reference_fits_pass_the_optimality_check(name):
    ref, d = data("glmm", name)
    w = None if ref["weights"] is None else np.asarray(ref["weights"], dtype=float)
    fit = mm.glmer(
        ref["formula"], d, family=ref["family"], link=ref["link"], weights=w, nagq=ref["nAGQ"]
    )  # (warnings are errors in these tests: no ConvergenceWarning)
    check = fit.optsum.check
    assert check is not None and check.optimal
    assert check.gap <= check.tol
    assert check.gradient.shape == (len(fit.theta) + len(fit.beta),)


def test_a_fit_cut_short_warns_with_its_gap():
    ref, d = data("glmm", "grouseticks_poisson")
    with pytest.warns(ConvergenceWarning) as record:
        fit = mm.glmer(ref["formula"], d, family="poisson", control=mm.Control(maxeval=12))
    messages = [str(r.message) for r in record]
    assert len(messages) == 1, messages  # one warning: the optimizer's stop and the gap together
    assert "MAXEVAL_REACHED" in messages[0] and "deviance units above the optimum" in messages[0]
    assert not fit.optsum.check.optimal
    assert fit.optsum.check.gap > fit.optsum.check.tol
    off = mm.glmer(ref["formula"], d, family="poisson")
    assert fit.objective - off.objective >= 0  # the gap estimates a real shortfall


def test_get_me_has_lme4s_names_and_L_factors_the_working_system():
    # crossed terms (VerbAgg's design on a subset): L Lᵀ = P(ΛᵀZᵀWZΛ + I)Pᵀ with PIRLS's working
    # weights W = w (dμ/dη)² / V(μ), computed here from μ for the logit link
    d = mm.datasets.load("verbagg")
    d = d[d.item.cat.codes < 6]
    fit = mm.glmer("r2 ~ Anger + btype + (1 | id) + (1 | item)", d)
    z, lam = fit.get_me("Z").toarray(), fit.get_me("Lambda").toarray()
    mu = fit.get_me("mu")
    np.testing.assert_allclose(mu, 1 / (1 + np.exp(-fit.get_me("eta"))), rtol=1e-12)
    w = mu * (1 - mu)
    m = lam.T @ z.T @ (w[:, None] * z) @ lam + np.eye(z.shape[1])
    lf = fit.get_me("L")
    low = lf.L.toarray()
    np.testing.assert_allclose(low @ low.T, m[np.ix_(lf.perm, lf.perm)], atol=1e-9)
    assert [g for g, _ in fit.get_me("cnms")] == ["id", "item"]
    assert fit.get_me("Gp").tolist() == [0, 316, 322]
    assert fit.get_me("flist").shape == (len(d), 2) and fit.get_me("n_rtrms") == 2
    with pytest.raises(mm.exceptions.UnknownNameError, match="available"):
        fit.get_me("nonsense")
