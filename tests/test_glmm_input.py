"""GLMM input checks: bad responses, families, links and nagq give the package's exceptions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import ArgumentError, DataError

DATA = Path(__file__).resolve().parent / "reference" / "glmm" / "data"


@pytest.fixture(scope="module")
def cbpp() -> pd.DataFrame:
    d = pd.read_csv(DATA / "cbpp.csv")
    d["herd"] = d["herd"].astype(str)
    d["period"] = d["period"].astype(str)
    return d


def test_non_integer_poisson_counts(cbpp):
    with pytest.raises(DataError, match="whole numbers"):
        mm.glmer("prop ~ period + (1 | herd)", cbpp, family="poisson")


def test_negative_poisson_counts(cbpp):
    d = cbpp.assign(neg=-cbpp["incidence"])
    with pytest.raises(DataError, match="non-negative"):
        mm.glmer("neg ~ period + (1 | herd)", d, family="poisson")


def test_non_integer_binomial_counts(cbpp):
    d = cbpp.assign(half=cbpp["incidence"] + 0.5)
    with pytest.raises(DataError, match="whole numbers"):
        mm.glmer("cbind(half, size - incidence) ~ period + (1 | herd)", d)


def test_proportion_without_integer_successes(cbpp):
    # a proportion whose successes (weights x y) are not whole numbers
    with pytest.raises(DataError, match="non-integer number of successes"):
        mm.glmer("prop ~ period + (1 | herd)", cbpp, weights=np.full(len(cbpp), 2.5))


def test_response_outside_unit_interval(cbpp):
    with pytest.raises(DataError, match=r"in \[0, 1\]"):
        mm.glmer("incidence ~ period + (1 | herd)", cbpp, family="binomial")


def test_unknown_family_and_link(cbpp):
    with pytest.raises(ArgumentError, match="unknown family 'gamma2'"):
        mm.glmer("incidence ~ period + (1 | herd)", cbpp, family="gamma2")
    with pytest.raises(ArgumentError, match="link 'probit' is not available for the poisson"):
        mm.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson", link="probit")
    with pytest.raises(ArgumentError, match="link 'log2'"):
        mm.families.binomial("log2")


def test_nagq_above_one_needs_a_single_term(cbpp):
    d = cbpp.assign(g2=np.arange(len(cbpp)) % 7)
    with pytest.raises(ArgumentError, match="single random-effects term"):
        mm.GeneralizedLinearMixedModel.from_formula(
            "cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | g2)", d, nagq=5
        )
    with pytest.raises(ArgumentError, match="nagq must be a whole number"):
        mm.GeneralizedLinearMixedModel.from_formula(
            "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, nagq=-1
        )


def test_factor_logical_and_numeric_binary_responses_agree(cbpp):
    rng = np.random.default_rng(1)
    y = (rng.random(len(cbpp)) < cbpp["prop"].to_numpy() + 0.2).astype(int)
    d = cbpp.assign(
        y01=y,
        ylog=y.astype(bool),
        yfac=pd.Categorical(np.where(y == 1, "yes", "no"), categories=["no", "yes"]),
    )
    m = [
        mm.GeneralizedLinearMixedModel.from_formula(f"{r} ~ period + (1 | herd)", d)
        for r in ("y01", "ylog", "yfac")
    ]
    theta, beta = [0.7], [-1.0, -0.5, -0.5, -0.5]
    vals = [mod.objective(theta, beta) for mod in m]
    assert vals[1] == vals[0] and vals[2] == vals[0]


def test_cbind_equals_proportion_with_weights(cbpp):
    a = mm.GeneralizedLinearMixedModel.from_formula(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp
    )
    b = mm.GeneralizedLinearMixedModel.from_formula(
        "prop ~ period + (1 | herd)", cbpp, weights="size"
    )
    theta, beta = [0.6], [-1.4, -1.0, -1.1, -1.6]
    assert a.objective(theta, beta) == pytest.approx(b.objective(theta, beta), rel=1e-12)


def test_complete_separation_is_a_pirls_error():
    rng = np.random.default_rng(3)
    x = rng.normal(size=200)
    d = pd.DataFrame({"y": (x > 0).astype(float), "x": x, "g": np.repeat(np.arange(20), 10)})
    with pytest.raises(mm.PirlsError, match="complete separation"):
        mm.glmer("y ~ x + (1 | g)", d)


def test_fixed_parameters_do_not_need_the_fit(cbpp):
    # objective at (θ, β) and the fast-mode objective at θ are available before any fit
    m = mm.GeneralizedLinearMixedModel.from_formula(
        "cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp
    )
    with pytest.raises(mm.exceptions.ThetaError):
        m.objective([0.5, 0.5], [0, 0, 0, 0])
    with pytest.raises(ArgumentError, match="beta has 3 elements"):
        m.objective([0.5], [0, 0, 0])


def test_anova_between_glmms(cbpp):
    big = mm.glmer("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    small = mm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp)
    table = mm.anova(big, small)
    assert list(table["npar"]) == [2, 5]
    chisq = small.objective - big.objective
    assert table["Chisq"].iloc[1] == pytest.approx(chisq)
    assert table["deviance"].iloc[1] == pytest.approx(big.objective)
    lmm = mm.lmer("prop ~ period + (1 | herd)", cbpp)
    with pytest.raises(ArgumentError, match="not a linear mixed model with a GLMM"):
        mm.anova(big, lmm)
    agq = mm.glmer("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, nagq=5)
    with pytest.raises(ArgumentError, match="not comparable"):
        mm.anova(big, agq)


def test_cli_fits_a_glmm(cbpp, tmp_path, capsys):
    from mixedmodels.__main__ import main

    p = tmp_path / "cbpp.csv"
    cbpp.assign(period="p" + cbpp["period"]).to_csv(p, index=False)
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    assert main(["fit", formula, "--data", str(p), "--family", "binomial"]) == 0
    out = capsys.readouterr().out
    assert " Family: binomial  ( logit )" in out
    # lme4's AIC line for this model (tests/reference/glmm/cbpp_binomial.json: AIC 194.05)
    assert "   194.1    204.2    -92.0    184.1       51 " in out
    assert main(["fit", formula, "--data", str(p), "--link", "probit"]) == 2


def _inverse_gaussian_near_zero() -> pd.DataFrame:
    # inverse Gaussian responses whose means come near 0: with the identity link, steps of
    # Control.precise()'s size (0.75) from the start reach η < 0, outside the family's domain
    rng = np.random.default_rng(0)
    g = np.repeat(np.arange(8), 6)
    x = rng.uniform(0, 1, g.size)
    mu = np.maximum(0.15 + 0.8 * x + rng.normal(scale=0.12, size=8)[g], 0.02)
    return pd.DataFrame({"y": rng.wald(mu, 2.0), "x": x, "g": [f"g{v}" for v in g]})


def test_a_pirls_failure_at_a_trial_point_makes_the_optimizer_back_off():
    data = _inverse_gaussian_near_zero()
    kw = dict(family="inverse.gaussian", link="identity")
    default = mm.glmer("y ~ x + (1 | g)", data, **kw)
    fit = mm.glmer("y ~ x + (1 | g)", data, control=mm.Control.precise(), **kw)
    values = [v for _, v in fit.optsum.fitlog + fit.optsum_nagq0.fitlog]
    assert max(values) > 1e9  # the failed trial points, as very large objectives
    assert fit.objective <= default.objective + 1e-6 * abs(default.objective)
    # the returned point is an ordinary one: the objective there as evaluated afresh
    assert fit.objective == pytest.approx(fit.model.objective(fit.theta, fit.beta), rel=1e-10)


def test_a_pirls_failure_at_the_start_is_raised():
    data = _inverse_gaussian_near_zero()
    with pytest.raises(mm.PirlsError, match="working weight"):
        mm.glmer(
            "y ~ x + (1 | g)",
            data,
            family="inverse.gaussian",
            link="identity",
            start={"theta": [0.1], "beta": [-1.0, 0.0]},
        )
