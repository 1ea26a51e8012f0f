"""Bad input gets a clear exception that names the problem."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import DataError, FormulaError, ThetaError


@pytest.fixture(scope="module")
def sleep():
    return mm.datasets.load("sleepstudy")


def test_unknown_column_suggests_the_closest(sleep):
    with pytest.raises(DataError, match=r"column 'Dayz' .*did you mean 'Days'\?"):
        mm.lmer("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(DataError, match="'Subjekt'.*did you mean 'Subject'"):
        mm.lmer("Reaction ~ Days + (1 | Subjekt)", sleep)


def test_unparseable_formula_points_at_the_spot(sleep):
    with pytest.raises(FormulaError, match=r"missing '\)'") as e:
        mm.lmer("Reaction ~ Days + (1 | Subject", sleep)
    assert "^" in str(e.value)
    with pytest.raises(FormulaError, match="no '~'"):
        mm.lmer("Reaction Days", sleep)
    with pytest.raises(FormulaError, match="no random-effects terms"):
        mm.lmer("Reaction ~ Days", sleep)
    with pytest.raises(FormulaError, match="in parentheses"):
        mm.lmer("Reaction ~ Days + 1 | Subject", sleep)


def test_non_numeric_response(sleep):
    df = sleep.assign(R=sleep.Reaction.astype(str))
    with pytest.raises(DataError, match="response 'R' must be numeric"):
        mm.lmer("R ~ Days + (1 | Subject)", df)


def test_grouping_factor_with_a_level_per_observation(sleep):
    df = sleep.assign(obs=np.arange(len(sleep)))
    with pytest.raises(DataError, match="number of levels of each grouping factor"):
        mm.lmer("Reaction ~ Days + (1 | obs)", df)


def test_too_many_random_effects_for_the_data(sleep):
    df = sleep.assign(half=np.arange(len(sleep)) // 2)
    with pytest.raises(DataError, match="number of random effects"):
        mm.lmer("Reaction ~ Days + (Days | half)", df)


def test_no_rows_left_after_dropping_missing(sleep):
    df = sleep.assign(Days=np.nan)
    with pytest.raises(DataError, match="no rows left"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", df)


def test_missing_rows_are_dropped_and_counted(sleep):
    df = sleep.copy()
    df.loc[[3, 50], "Reaction"] = np.nan
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", df)
    assert fit.nobs == 178 and fit.n_dropped == 2
    assert "2 observations deleted" in fit.summary()
    full = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep.drop(index=[3, 50]))
    assert abs(fit.objective - full.objective) < 1e-8 * full.objective


def test_rank_deficient_fixed_effects_drop_columns_as_lme4(sleep):
    df = sleep.assign(Days2=2 * sleep.Days)
    with pytest.warns(mm.RankDeficiencyWarning, match="dropping 1 column.*Days2"):
        fit = mm.lmer("Reaction ~ Days + Days2 + (1 | Subject)", df)
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    ref = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    assert abs(fit.objective - ref.objective) < 1e-8 * ref.objective


def test_theta_of_the_wrong_length(sleep):
    model = mm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(ThetaError, match="theta has 2 elements; this model has 3"):
        model.objective([1.0, 1.0])
    with pytest.raises(ThetaError, match="not finite"):
        model.objective([1.0, np.nan, 1.0])


def test_data_must_be_a_table():
    with pytest.raises(DataError, match="must be a pandas, polars or pyarrow table.*not list"):
        mm.lmer("y ~ 1 + (1 | g)", [[1, 2], [1, 2]])


def test_unknown_dataset():
    with pytest.raises(KeyError, match="no data set named 'nope'"):
        mm.datasets.load("nope")


def test_errors_are_mixedmodels_errors(sleep):
    with pytest.raises(mm.MixedModelsError):
        mm.lmer("Reaction ~ Dayz + (1 | Subject)", sleep)
    with pytest.raises(ValueError):
        mm.lmer("Reaction ~ Dayz + (1 | Subject)", pd.DataFrame(sleep))


@pytest.mark.parametrize(
    "settings, phrase",
    [
        ({"xtol_rel": np.nan}, "xtol_rel must be a finite number >= 0"),
        ({"ftol_abs": -1.0}, "ftol_abs must be a finite number >= 0"),
        ({"xtol_abs": np.inf}, "xtol_abs must be a finite number >= 0"),
        ({"initial_step": np.nan}, "initial_step must be a finite number > 0"),
        ({"initial_step": 0.0}, "initial_step must be a finite number > 0"),
        ({"maxeval": 0}, "maxeval must be at least 1"),
        ({"maxeval": 2.5}, "maxeval must be a whole number"),
        ({"optimizer": "nelder"}, "unknown optimizer 'nelder'"),
        (
            {"ftol_rel": 0.0, "ftol_abs": 0.0, "xtol_rel": 0.0, "xtol_abs": 0.0},
            "at least one of ftol_rel",
        ),
    ],
)
def test_invalid_control_settings_are_refused(settings, phrase):
    with pytest.raises(mm.exceptions.ControlError, match=phrase):
        mm.Control(**settings)


@pytest.mark.parametrize(
    "start, phrase",
    [
        ([np.nan, 0.0, 1.0], r"start\[0\] is not finite"),
        ([1.0, 0.0, np.nan], r"start\[2\] is not finite"),
        ([1.0, np.inf, 1.0], r"start\[1\] is not finite"),
        ([-1.0, 0.0, 1.0], r"start\[0\] = -1 is below its lower bound 0"),
    ],
)
def test_invalid_start_is_refused_before_the_optimizer(sleep, start, phrase):
    with pytest.raises(ThetaError, match=phrase):
        mm.lmer("Reaction ~ Days + (Days | Subject)", sleep, start=start)


def test_profile_of_a_singular_correlated_term_does_not_abort():
    # dyestuff2 with a noise covariate: the fit is singular and the correlation undefined
    # (NaN); NLopt handed that NaN as a start corrupted the heap (bad-inputs catalogue M87)
    d = mm.datasets.load("dyestuff2")
    d = d.assign(x=np.random.default_rng(1).standard_normal(len(d)))
    fit = mm.lmer("Yield ~ 1 + (1 + x | Batch)", d)
    ci = fit.confint("profile")
    cor = [n for n in ci.index if n.startswith("cor_")]
    # the correlation does not change the model at the optimum: its profile is flat, its
    # interval [-1, 1] (tests/test_profile_check.py checks every limit of this fit)
    assert cor and (ci.loc[cor].to_numpy() == [-1.0, 1.0]).all()
    assert np.isfinite(ci.loc["sigma"]).all()


def test_predict_refuses_missing_grouping_values_unless_new_levels_are_allowed(sleep):
    # catalogue M06: the missing row got another level's random effect, silently
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    nd = sleep.head(3).copy()
    nd["Subject"] = nd["Subject"].astype(object)
    nd.loc[1, "Subject"] = None
    with pytest.raises(DataError, match="'Subject' have missing values in the new data"):
        fit.predict(nd)
    got = fit.predict(nd, allow_new_levels=True)
    population = fit.predict(nd, re_form="~0")
    assert got[1] == pytest.approx(population[1], rel=1e-12)  # lme4: the population level
    assert got[0] == pytest.approx(fit.fitted.iloc[0], rel=1e-12)


@pytest.mark.parametrize("categorical", [False, True])
def test_predict_refuses_a_missing_fixed_effect_factor(sleep, categorical):
    # catalogue M09: predicted at the last label present, or at the baseline, silently
    d = sleep.assign(g=np.where(sleep.Days < 5, "early", "late"))
    fit = mm.lmer("Reaction ~ g + (1 | Subject)", d)
    nd = d.head(3).copy()
    if categorical:
        nd["g"] = pd.Categorical(nd["g"], categories=["early", "late"])
    nd.loc[1, "g"] = None
    with pytest.raises(DataError, match="column 'g' of the new data has missing values"):
        fit.predict(nd)


def test_anova_refuses_fits_to_different_data(sleep):
    # catalogue M54: an LRT between fits to 180 and 150 rows (Chisq 324.6), silently
    f0 = mm.lmer("Reaction ~ Days + (1 | Subject)", sleep)
    f1 = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep.iloc[:150])
    with pytest.raises(DataError, match="same size of data set"):
        mm.anova(f0, f1)
    f2 = mm.lmer("Reaction ~ Days + (Days | Subject)", sleep.assign(Reaction=sleep.Reaction * 2))
    with pytest.raises(DataError, match="same response"):
        mm.anova(f0, f2)


@pytest.fixture(scope="module")
def sleep_fit(sleep):
    return mm.lmer("Reaction ~ Days + (Days | Subject)", sleep)


@pytest.mark.parametrize(
    "call, phrase",
    [
        (lambda f: f.confint("wald", level=1.5), "level must be between 0 and 1"),  # M47
        (lambda f: f.confint("profile", level=1.2), "level must be between 0 and 1"),  # M76
        (lambda f: f.profile(level=2), "level must be between 0 and 1"),  # M75
        (lambda f: f.confint(None), "method must be one of 'wald', 'profile', 'boot'"),  # M49
        (lambda f: f.coef_table(5), "ddf must be one of 'satterthwaite'"),  # M53
        (lambda f: mm.anova(f, 3), "anova takes fitted models; argument 2 is 3"),  # M57
        (lambda f: f.V(max_bytes=0), "max_bytes must be a positive number"),  # M19
    ],
)
def test_argument_errors_name_the_problem(sleep_fit, call, phrase):
    with pytest.raises(mm.exceptions.ArgumentError, match=phrase):
        call(sleep_fit)


def test_unknown_grouping_factor_in_ranef(sleep_fit):
    # M69: a bare KeyError before; still a KeyError, and one of the package's errors
    with pytest.raises(mm.exceptions.UnknownNameError, match="no grouping factor 'Foo'.*'Subject'"):
        sleep_fit.ranef["Foo"]
    with pytest.raises(KeyError):
        sleep_fit.ranef["Foo"]


def test_reml_must_be_a_flag(sleep):
    # D83: bool('ML') is True, so reml='ML' silently fitted by REML
    with pytest.raises(mm.exceptions.ArgumentError, match="reml must be True or False, not 'ML'"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, reml="ML")
    assert not mm.lmer("Reaction ~ Days + (1 | Subject)", sleep, reml=np.bool_(False)).reml


def test_series_arguments_align_on_the_data_index(sleep):
    # catalogue D82: a weights Series with a permuted index was used positionally, silently
    w = pd.Series(np.random.default_rng(3).uniform(0.5, 2.0, len(sleep)), index=sleep.index)
    f = "Reaction ~ Days + (Days | Subject)"
    plain = mm.lmer(f, sleep, weights=w.to_numpy())
    shuffled = mm.lmer(f, sleep, weights=w.sample(frac=1, random_state=1))
    assert shuffled.objective == pytest.approx(plain.objective, rel=1e-12)
    with pytest.raises(DataError, match="index of the weights Series does not match"):
        mm.lmer(f, sleep, weights=w.set_axis(np.arange(len(w)) + 1000))
    y = sleep.Reaction * 1.5
    assert plain.refit(y.sample(frac=1, random_state=2)).objective == pytest.approx(
        plain.refit(y.to_numpy()).objective, rel=1e-12
    )
    with pytest.raises(DataError, match="index of the new response Series does not match"):
        plain.refit(y.reset_index(drop=True).set_axis(np.arange(len(y)) + 5000))
