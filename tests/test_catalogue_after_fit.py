"""The after-the-fit cases of the bad-inputs catalogue (../shared/notes/bad-inputs-catalogue.md),
one test per catalogue ID (the ID leads the test's name).

Each asserts the exception class and the phrase that names the problem, or a
value from lme4 (tests/reference, the catalogue's lme4 figures), or an
invariant that lme4 satisfies too. ``fit`` is the catalogue's
``lmer("Reaction ~ Days + (Days | Subject)", sleepstudy)``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import mixedmodels as mm
from mixedmodels.__main__ import main as cli
from mixedmodels.exceptions import (
    ArgumentError,
    ControlError,
    ConvergenceWarning,
    DataError,
    DimensionError,
    FormulaError,
    MemoryBudgetError,
    NotPositiveDefiniteError,
    ThetaError,
    UnknownNameError,
)

REFERENCE = Path(__file__).parent / "reference"
FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def ss() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def model(ss) -> mm.LinearMixedModel:
    return mm.LinearMixedModel.from_formula(FORMULA, ss)


@pytest.fixture(scope="module")
def fit(model) -> mm.LinearMixedModelResult:
    return model.fit()


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((REFERENCE / "inference" / "sleepstudy_reml.json").read_text())


@pytest.fixture(scope="module")
def fit_f(ss):
    """A fit with a fixed-effect factor f (early/late), as the catalogue's M07 to M09."""
    d = ss.assign(f=np.where(ss.Days < 5, "early", "late"))
    return mm.lmer("Reaction ~ f + (1 | Subject)", d)


def new(days, subjects) -> pd.DataFrame:
    return pd.DataFrame({"Days": days, "Subject": pd.Series(subjects, dtype=object)})


# -- predict -------------------------------------------------------------------------------
def test_m01_newdata_without_a_fixed_effect_column(fit, ss):
    with pytest.raises(DataError, match=r"column 'Days' \(new data\) is not in the data"):
        fit.predict(ss.drop(columns=["Days"]))


def test_m02_newdata_without_the_grouping_column(fit, ss):
    with pytest.raises(DataError, match="new data lack the grouping variable.*Subject"):
        fit.predict(ss.drop(columns=["Subject"]))


def test_m03_new_levels_are_named(fit):
    with pytest.raises(DataError, match="new levels of 'Subject' in the new data: 998, 999"):
        fit.predict(new([1, 1, 1], ["308", "998", "999"]))


def test_m04_new_levels_get_the_population_prediction(fit, ref):
    nd = new([1, 1, 1], ["308", "998", "999"])
    got = fit.predict(nd, allow_new_levels=True)
    population = fit.predict(nd, re_form="~0")
    np.testing.assert_allclose(got[1:], population[1:], rtol=1e-12)
    assert population[0] == pytest.approx(sum(ref["beta"].values()), rel=1e-6)  # lme4's β0 + β1
    assert got[0] == pytest.approx(fit.predict(new([1], ["308"]))[0], rel=1e-12)
    assert got[0] != pytest.approx(population[0])


def test_m05_missing_numeric_predictor_predicts_nan(fit):
    got = fit.predict(new([1.0, np.nan], ["308", "308"]))
    assert np.isfinite(got[0]) and np.isnan(got[1])


@pytest.mark.parametrize("dtype", [object, "string"])
def test_m06_missing_grouping_value_in_newdata(fit, dtype):
    nd = pd.DataFrame(
        {"Days": [1, 1, 1, 1], "Subject": pd.Series(["308", "309", None, "372"], dtype=dtype)}
    )
    with pytest.raises(DataError, match="'Subject' have missing values in the new data"):
        fit.predict(nd)
    got = fit.predict(nd, allow_new_levels=True)
    assert got[2] == pytest.approx(fit.predict(nd, re_form="~0")[2], rel=1e-12)  # 261.87, lme4
    assert got[2] == pytest.approx(261.87239, abs=1e-4)
    np.testing.assert_allclose(got[[0, 1, 3]], fit.predict(nd.iloc[[0, 1, 3]]), rtol=1e-12)


def test_m07_unseen_level_of_a_fixed_factor(fit_f):
    nd = pd.DataFrame({"f": ["early", "zero"], "Subject": ["308", "308"]})
    with pytest.raises(DataError, match="levels of 'f' that the fit has not seen: zero"):
        fit_f.predict(nd)


def test_m08_unseen_level_of_a_factor_made_in_the_formula(ss):
    d = ss.assign(f=np.where(ss.Days < 5, "early", "late"))
    f = mm.lmer("Reaction ~ factor(f) + (1 | Subject)", d)
    nd = pd.DataFrame({"f": ["early", "middle", "late"], "Subject": ["308"] * 3})
    with pytest.raises(
        DataError, match="levels of 'factor\\(f\\)' that the fit has not seen: middle"
    ):
        f.predict(nd)


@pytest.mark.parametrize(
    "f", [pd.Series(["early", None, "late"], dtype=object), pd.Categorical(["early", None, "late"])]
)
def test_m09_missing_value_in_a_fixed_factor(fit_f, f):
    nd = pd.DataFrame({"f": f, "Subject": ["308"] * 3})
    with pytest.raises(DataError, match="column 'f' of the new data has missing values"):
        fit_f.predict(nd)


def test_m10_no_rows(fit, ss):
    assert fit.predict(ss.head(0)).shape == (0,)


def test_m11_newdata_as_a_dict(fit, ss):
    rows = ss.iloc[::9]
    as_dict = {"Days": rows.Days.tolist(), "Subject": rows.Subject.astype(str).tolist()}
    np.testing.assert_allclose(fit.predict(as_dict), fit.predict(rows), rtol=1e-12)


def test_m12_integer_subjects_in_newdata_for_a_categorical_fit(fit, ss):
    rows = ss.iloc[::7]
    as_int = rows.assign(Subject=rows.Subject.astype(str).astype(int))
    np.testing.assert_allclose(fit.predict(as_int), fit.predict(rows), rtol=1e-12)
    np.testing.assert_allclose(fit.predict(rows), fit.fitted.to_numpy()[::7], rtol=1e-12)


def test_m13_re_form_without_a_tilde(fit, ss):
    with pytest.raises(FormulaError, match="re_form must be None, '~0' or a formula"):
        fit.predict(ss, re_form="(1|Subject)")


@pytest.mark.parametrize("cid, re_form", [("M14", "~(1|Foo)"), ("M15", "~(1|Subject)")])
def test_m14_m15_re_form_term_not_in_the_model(fit, ss, cid, re_form):
    with pytest.raises(FormulaError, match=r"re_form term \(1 \| \w+\) is not a term of the model"):
        fit.predict(ss, re_form=re_form)


# -- V and its relatives -------------------------------------------------------------------
def test_m18_dense_v_over_the_budget(fit):
    with pytest.raises(MemoryBudgetError, match="dense V of this model would hold up to 32,400"):
        fit.V(dense=True, max_bytes=1000)


def test_m19_zero_max_bytes(fit):
    with pytest.raises(ArgumentError, match="max_bytes must be a positive number, not 0"):
        fit.V(max_bytes=0)


def test_m20_v_solve_wrong_rows(fit):
    with pytest.raises(DimensionError, match="B has 10 rows; V is 180 x 180"):
        fit.V_solve(np.ones(10))


def test_m21_v_solve_three_dimensional(fit):
    with pytest.raises(DimensionError, match=r"vector or a matrix.*shape \(180, 2, 2\)"):
        fit.V_solve(np.ones((180, 2, 2)))


def test_m22_v_matvec_wrong_rows(fit):
    with pytest.raises(DimensionError, match="B has 179 rows"):
        fit.V_matvec(np.ones((179, 1)))


def test_m23_v_solve_of_nan_is_nan(fit):
    assert np.isnan(fit.V_solve(np.full(180, np.nan))).all()


def test_m24_v_solve_of_text(fit):
    with pytest.raises(ArgumentError, match="B must hold numbers.*'abc'"):
        fit.V_solve("abc")


def test_m25_v_solve_with_no_columns(fit):
    assert fit.V_solve(np.ones((180, 0))).shape == (180, 0)


@pytest.mark.parametrize("cid, name", [("M26", "Zlist"), ("M27", 3)])
def test_m26_m27_get_me_unknown_name(fit, cid, name):
    with pytest.raises(UnknownNameError, match="get_me: unknown name .*known: X, y, Z"):
        fit.get_me(name)
    with pytest.raises(KeyError):  # still a KeyError, as a lookup by name
        fit.get_me(name)


# -- the objective at θ --------------------------------------------------------------------
def test_m28_theta_of_the_wrong_length(model):
    with pytest.raises(ThetaError, match="theta has 2 elements; this model has 3"):
        model.objective([1.0, 0.0])


def test_m29_negative_theta_diagonal_gives_lme4s_objective(model):
    # lme4's devFunOnly: 1773.680330616 at (1, 0, 1), the same at (-1, 0, 1)
    assert model.objective([-1, 0, 1]) == pytest.approx(1773.680330616, abs=1e-7)
    assert model.objective([-1, 0, 1]) == pytest.approx(model.objective([1, 0, 1]), rel=1e-14)


@pytest.mark.parametrize("cid, bad", [("M30", np.nan), ("M31", np.inf)])
def test_m30_m31_theta_not_finite(model, cid, bad):
    with pytest.raises(ThetaError, match=r"theta\[0\] is not finite"):
        model.objective([bad, 0, 1])


def test_m32_theta_that_overflows(model):
    with pytest.raises(NotPositiveDefiniteError, match="not positive definite"):
        model.objective([1e200, 0, 1e200])


def test_m33_theta_zero_gives_lme4s_objective(model):
    assert model.objective([0, 0, 0]) == pytest.approx(1893.66366, abs=1e-5)


def test_m34_theta_of_text(model):
    with pytest.raises(ValueError, match="could not convert string to float: 'a'"):
        model.objective(["a", "b", "c"])


def test_m35_theta_as_a_row_matrix(model):
    assert model.objective(np.array([[1, 0, 1]])) == model.objective([1, 0, 1])


def test_m36_fit_at_a_negative_theta(model):
    f = model.fit_at([-1, 0, -1])
    np.testing.assert_array_equal(f.theta, [-1, 0, -1])
    assert f.objective == pytest.approx(model.objective([1, 0, 1]), rel=1e-14)


def test_m38_start_of_the_wrong_length(ss):
    with pytest.raises(ThetaError, match="theta has 1 elements; this model has 3"):
        mm.lmer(FORMULA, ss, start=[1.0])


def test_m44_unknown_optimizer():
    with pytest.raises(ControlError, match="unknown optimizer 'BOBYQA'; choose one of bobyqa"):
        mm.Control(optimizer="BOBYQA")


def test_m45_optimizer_stopped_early_warns(ss):
    with pytest.warns(
        ConvergenceWarning,
        match=r"MAXEVAL_REACHED\) after 2 evaluations .*deviance units above the optimum",
    ):
        # lme4's start given: from the default one the second evaluation is at the method of
        # moments' θ, on this balanced design the REML optimum itself (no warning is due)
        mm.lmer(FORMULA, ss, control=mm.Control(maxeval=2), start=[1.0, 0.0, 1.0])


# -- confint, coef_table, anova ------------------------------------------------------------
def test_m46_confint_unknown_method(fit):
    with pytest.raises(ArgumentError, match="unknown method 'bogus': 'wald', 'profile' or 'boot'"):
        fit.confint("bogus")


@pytest.mark.parametrize("cid, level", [("M47", 1.5), ("M48", 0)])
def test_m47_m48_confint_level_outside_0_1(fit, cid, level):
    with pytest.raises(ArgumentError, match="level must be between 0 and 1"):
        fit.confint("wald", level=level)


def test_m49_confint_method_none(fit):
    with pytest.raises(ArgumentError, match="method must be one of 'wald'.*not None"):
        fit.confint(None)


def test_m50_bootstrap_without_simulations(fit):
    with pytest.raises(ArgumentError, match="nsim must be at least 1"):
        fit.confint("boot", nsim=0)


@pytest.mark.parametrize("n_jobs", [0, -1, 2.5, "a"])
def test_bootstrap_n_jobs_must_be_a_positive_whole_number(fit, n_jobs):
    with pytest.raises(ArgumentError, match="n_jobs must be a positive whole number"):
        fit.confint("boot", nsim=3, seed=1, n_jobs=n_jobs)


def test_m51_confint_misspelt_keyword(fit):
    with pytest.raises(TypeError, match="unexpected keyword argument 'nsims'"):
        fit.confint("wald", nsims=10)


def test_m52_coef_table_unknown_ddf(fit):
    with pytest.raises(ArgumentError, match="unknown ddf 'bogus'"):
        fit.coef_table("bogus")


def test_m53_coef_table_ddf_not_text(fit):
    with pytest.raises(ArgumentError, match="ddf must be one of 'satterthwaite'.*not 5"):
        fit.coef_table(5)


def test_m54_anova_of_fits_to_different_data(ss):
    a = mm.lmer("Reaction ~ Days + (1 | Subject)", ss)
    b = mm.lmer(FORMULA, ss.iloc[:150])
    with pytest.raises(DataError, match="same size of data set"):
        mm.anova(a, b)


def test_m55_anova_of_fits_to_different_responses(ss):
    a = mm.lmer("Reaction ~ Days + (1 | Subject)", ss)
    b = mm.lmer("R2 ~ Days + (Days | Subject)", ss.assign(R2=2 * ss.Reaction))
    with pytest.raises(DataError, match="not all fitted to the same response"):
        mm.anova(a, b)


def test_m56_anova_of_fits_with_the_same_number_of_parameters(ss):
    a = mm.lmer("Reaction ~ Days + (1 | Subject)", ss)
    b = mm.lmer("Reaction ~ 1 + (Days || Subject)", ss)
    table = mm.anova(a, b)
    assert table["Df"].iloc[-1] == 0
    assert np.isnan(table["p"].iloc[-1])


def test_m57_anova_of_a_number(fit):
    with pytest.raises(ArgumentError, match="anova takes fitted models; argument 2 is 3"):
        mm.anova(fit, 3)


def test_m58_type3_anova_with_an_interaction(ss):
    f = mm.lmer("Reaction ~ Days * g + (1 | Subject)", ss.assign(g=np.tile(["a", "b"], 90)))
    with pytest.raises(NotImplementedError, match="interaction terms are not implemented"):
        mm.anova(f)


# -- refit, resid, simulate ----------------------------------------------------------------
def test_m59_refit_wrong_length(fit):
    with pytest.raises(DimensionError, match="y has 10 values; the model has 180 rows"):
        fit.refit(np.ones(10))


def test_m60_refit_with_nan(fit, ss):
    y = ss.Reaction.to_numpy().copy()
    y[0] = np.nan
    with pytest.raises(DataError, match="new response has non-finite values"):
        fit.refit(y)


def test_m61_refit_aligns_a_series_on_the_index(fit, ss):
    shuffled = ss.Reaction.sample(frac=1, random_state=1)
    again = fit.refit(shuffled)
    np.testing.assert_allclose(again.fixef.to_numpy(), fit.fixef.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(again.theta, fit.theta, rtol=1e-4)


def test_m62_refit_with_a_constant_response(fit):
    with pytest.raises(NotPositiveDefiniteError, match="fits the data exactly"):
        fit.refit(np.ones(180))


def test_m63_refit_with_text(fit):
    with pytest.raises(ArgumentError, match="new response must hold numbers.*'a'"):
        fit.refit(["a"] * 180)


def test_m64_refit_after_a_dropped_row(ss):
    d = ss.copy()
    d.loc[0, "Days"] = np.nan
    f = mm.lmer(FORMULA, d)
    with pytest.raises(DimensionError, match="y has 180 values; the model has 179 rows"):
        f.refit(ss.Reaction.to_numpy())


def test_m65_unknown_residual_type(fit):
    with pytest.raises(ArgumentError, match="unknown residual type 'deviance'"):
        fit.resid("deviance")


@pytest.mark.parametrize(
    "cid, nsim, match",
    [("M66", 0, "nsim must be at least 1"), ("M67", 2.5, "nsim must be a whole number")],
)
def test_m66_m67_simulate_nsim(fit, cid, nsim, match):
    with pytest.raises(ArgumentError, match=match):
        fit.simulate(nsim)


def test_m68_simulate_seed_of_text(fit):
    with pytest.raises(ArgumentError, match="seed must be None, a non-negative integer"):
        fit.simulate(2, seed="abc")


def test_m69_ranef_of_an_unknown_factor(fit):
    with pytest.raises(UnknownNameError, match="no grouping factor 'Foo' in this fit"):
        fit.ranef["Foo"]


def test_m70_v_blocks_over_the_budget(fit):
    with pytest.raises(MemoryBudgetError, match="the 18 blocks of V"):
        fit.V_blocks(max_bytes=10)


# -- gls -----------------------------------------------------------------------------------
def test_m71_gls_wrong_lengths(fit):
    with pytest.raises(DimensionError, match=r"X is \(180, 2\) and y has 10 values"):
        mm.gls(fit.get_me("X"), fit.get_me("y")[:10], fit.V())


@pytest.mark.parametrize(
    "cid, V", [("M72", np.zeros((180, 180))), ("M73", sp.csc_array((180, 180)))]
)
def test_m72_m73_gls_with_a_singular_v(fit, cid, V):
    with pytest.raises(NotPositiveDefiniteError, match="V is not positive definite"):
        mm.gls(fit.get_me("X"), fit.get_me("y"), V)


def test_gls_with_v_of_the_wrong_shape(fit):
    with pytest.raises(DimensionError, match="V is 10 x 10; y has 180 values"):
        mm.gls(fit.get_me("X"), fit.get_me("y"), np.eye(10))


def test_gls_gives_lme4s_fixed_effects(fit, ref):
    res = mm.gls(fit.get_me("X"), fit.get_me("y"), fit.V())
    np.testing.assert_allclose(res.beta, list(ref["beta"].values()), rtol=1e-6)


def test_m74_summary_unknown_ddf(fit):
    with pytest.raises(ArgumentError, match="unknown ddf 'bogus'"):
        fit.summary(ddf="bogus")


def test_m75_profile_level_outside_0_1(fit):
    with pytest.raises(ArgumentError, match="level must be between 0 and 1.*not 2"):
        fit.profile(level=2)


def test_m76_profile_confint_level_outside_0_1(fit):
    with pytest.raises(ArgumentError, match="level must be between 0 and 1.*not 1.2"):
        fit.confint("profile", level=1.2)


def test_m78_weighted_v_solve_agrees_with_the_dense_v(ss):
    f = mm.lmer(FORMULA, ss, weights=np.linspace(0.5, 2, 180))
    b = np.random.default_rng(2).normal(size=(180, 3))
    dense = f.V(dense=True)
    np.testing.assert_allclose(f.V_solve(b), np.linalg.solve(dense, b), rtol=1e-9, atol=1e-14)


def test_m79_wald_intervals_without_fixed_effects(ss):
    f = mm.lmer("Reaction ~ 0 + (1 | Subject)", ss)
    ci = f.confint("wald")
    assert list(ci.index) == ["sd_(Intercept)|Subject", "sigma"]
    assert ci.isna().all().all()  # lme4's Wald intervals of variance parameters are NA


def test_m80_summary_and_coef_table_without_fixed_effects(ss):
    f = mm.lmer("Reaction ~ 0 + (1 | Subject)", ss)
    assert f.coef_table().shape[0] == 0
    assert "Subject" in f.summary()


def test_m81_array_offset_is_left_out_of_new_data_with_a_warning(ss):
    off = np.linspace(-1, 1, 180)
    f = mm.lmer("Reaction ~ Days + (1 | Subject)", ss, offset=off)
    with pytest.warns(UserWarning, match="offset was given as values.*column name"):
        got = f.predict(ss)
    np.testing.assert_allclose(got + off, f.fitted.to_numpy(), rtol=1e-12)
    by_name = mm.lmer("Reaction ~ Days + (1 | Subject)", ss.assign(o=off), offset="o")
    np.testing.assert_allclose(by_name.predict(ss.assign(o=off)), by_name.fitted.to_numpy())


def test_m82_numeric_column_of_numeric_strings_in_newdata(fit, ss):
    # text where the fit had numbers is refused, as R's model.frame refuses it
    rows = ss.iloc[:6]
    as_text = rows.assign(Days=rows.Days.astype(str).astype(object))
    with pytest.raises(DataError, match="'Days' was numeric in the fit.*text"):
        fit.predict(as_text)


def test_m83_numeric_column_of_words_in_newdata(fit, ss):
    with pytest.raises(DataError, match="'Days' was numeric in the fit.*text"):
        fit.predict(ss.iloc[:2].assign(Days="one"))


def test_m84_two_terms_on_one_factor_ranef_frame_and_coef(ss):
    f = mm.lmer("Reaction ~ Days + (1 | Subject) + (Days | Subject)", ss)
    modes = f.ranef["Subject"]
    assert list(modes.columns) == ["(Intercept)", "(Intercept)", "Days"]
    frame = f.ranef.as_frame()
    assert len(frame) == 3 * 18
    assert list(frame.term.unique()) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(frame.condval.to_numpy(), modes.to_numpy().T.ravel(), rtol=1e-14)
    coef = f.coef()["Subject"]
    assert list(coef.columns) == ["(Intercept)", "Days"]
    both = modes.iloc[:, 0].to_numpy() + modes.iloc[:, 1].to_numpy()
    np.testing.assert_allclose(coef["(Intercept)"], f.fixef["(Intercept)"] + both, rtol=1e-12)
    np.testing.assert_allclose(coef["Days"], f.fixef["Days"] + modes["Days"].to_numpy())
    # coef reproduces the fitted values: (Intercept) + Days * slope, level by level
    lev = ss.Subject.astype(str).to_numpy()
    eta = coef.loc[lev, "(Intercept)"].to_numpy() + ss.Days.to_numpy() * coef.loc[lev, "Days"]
    np.testing.assert_allclose(eta, f.fitted.to_numpy(), rtol=1e-10)


def test_m85_uncorrelated_terms_ranef_frame_and_coef(ss):
    f = mm.lmer("Reaction ~ Days + (Days || Subject)", ss)
    assert len(f.ranef.as_frame()) == 2 * 18
    coef = f.coef()["Subject"]
    lev = ss.Subject.astype(str).to_numpy()
    eta = coef.loc[lev, "(Intercept)"].to_numpy() + ss.Days.to_numpy() * coef.loc[lev, "Days"]
    np.testing.assert_allclose(eta, f.fitted.to_numpy(), rtol=1e-10)


def test_m86_singular_fit_kenward_roger_and_profile():
    case = json.loads((REFERENCE / "cases" / "dyestuff2_singular.json").read_text())
    f = mm.lmer(case["formula"], mm.datasets.load("dyestuff2"))
    assert f.is_singular
    kr = f.coef_table("kenward-roger")
    assert np.isfinite(kr.to_numpy()).all()
    assert kr["estimate"].iloc[0] == pytest.approx(list(case["beta"].values())[0], rel=1e-6)
    ci = f.confint("profile")
    assert ci.loc["sd_(Intercept)|Batch", "lower"] == 0.0


# -- the command line ----------------------------------------------------------------------
def test_m90_cli_with_a_missing_file():
    with pytest.raises(SystemExit, match="'nonexistent.csv' is neither a file nor an embedded"):
        cli(["fit", "y ~ x + (1|g)", "--data", "nonexistent.csv"])


def test_m91_cli_formula_without_random_terms(capsys):
    assert cli(["fit", "Reaction ~ Days", "--data", "sleepstudy"]) == 2
    assert "the formula has no random-effects terms" in capsys.readouterr().err


# -- Kenward-Roger on degenerate fits (the catalogue's fuzz seeds 21680 and 21899) ---------
def test_m89_kenward_roger_on_a_near_exact_fit_is_nan_with_a_warning():
    d = pd.DataFrame(
        {
            "y": [0.3168227104447234, -0.1824775209156545, 1.8298666078423236,
                  2.721219111924417, 1.6170863760517495, 1.4083471348759353],
            "x": [-1.313421746649694, -0.37608218516293546, -0.7067662336948287,
                  -0.10497117554785022, 1.1002222282113914, 0.6338577549494275],
            "z": [-1.5143139696438208, -0.5819712478614135, 0.9365419035878675,
                  -0.5032176171788288, 0.6394537673832805, -2.198393930094537],
            "g": ["G4", "G0", "G4", "G3", "G1", "G0"],
            "h": ["H0", "H1", "H1", "H1", "H0", "H1"],
        }
    )  # fmt: skip
    # at fixed θ (independent of the optimizer): the fuzz run's optimum was near θ₀ = 928.
    # At θ₀ = 500, σ = 0.0028 and the adjustment is a difference of terms about 10¹⁶ times
    # its size: θ₀ one part in 10¹¹ either side gave finite standard errors from 0.4 to 2.7
    # where θ₀ = 500 gave NaN. Every θ₀ here must give NaN and say why.
    model = mm.LinearMixedModel.from_formula("y ~ x + z + xz + (1 | g/h)", d.assign(xz=d.x * d.z))
    assert model.theta_names == ["h:g.(Intercept)", "g.(Intercept)"]
    for theta0 in (500.0 * (1 - 1e-11), 500.0, 500.0 * (1 + 1e-11), 928.0):
        fit = model.fit_at([theta0, 0.0])
        with pytest.warns(mm.PrecisionWarning, match="lost to rounding"):
            kr = fit.coef_table("kenward-roger")  # was: math domain error
        assert kr.drop(columns="estimate").isna().all().all()
        np.testing.assert_allclose(kr["estimate"], fit.fixef.to_numpy())
    # at θ₀ = 100 the terms are about 10¹² times larger: four digits left, reported
    with warnings.catch_warnings():
        warnings.simplefilter("error", mm.PrecisionWarning)
        kr = model.fit_at([100.0, 0.0]).coef_table("kenward-roger")
    assert np.isfinite(kr.to_numpy()).all() and (kr["se"] > 0).all()


def test_kenward_roger_negative_adjusted_variance_is_nan():
    # the branch taken when an adjusted variance comes out negative (degenerate fits),
    # on a fit where it does not: that coefficient alone gets NaN
    from mixedmodels._kenward_roger import kenward_roger_info

    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
    info = kenward_roger_info(fit)  # kept for this fit: the table below reads it
    info.phi_a[1, 1] = -info.phi_a[1, 1]
    kr = fit.coef_table("kenward-roger")
    assert kr.loc["Days"].drop("estimate").isna().all()
    assert np.isfinite(kr.loc["(Intercept)"].to_numpy()).all()


def test_m89_kenward_roger_singular_information_matrix():
    d = pd.DataFrame(
        {
            "y": [0.4293250739147376, 0.6683435359879334, 1.3320413341493087, 0.5925614005874671],
            "x": [
                -1.1594092427907312,
                -0.9196650021954259,
                0.8789911399749579,
                -1.0695695346345473,
            ],
            "c": [1.0, 1.0, 1.0, 1.0],
            "g": ["G0", "G4", "G2", "G4"],
        }
    )
    # c is the intercept's column, so (c || g)'s two terms have the same G: IE2 is exactly
    # singular (the fuzz case had a one-level factor f, which is now refused as in R)
    model = mm.LinearMixedModel.from_formula("y ~ x + (c || g)", d)
    f = model.fit_at([0.1844430809879266, 12.763615436905209])  # the fuzz run's optimum
    kr = f.coef_table("kenward-roger")  # was numpy LinAlgError: Singular matrix
    np.testing.assert_allclose(kr["estimate"], f.fixef.to_numpy())
    assert (kr["se"] > 0).all()


@pytest.mark.parametrize(
    "cid, start, phrase",
    [
        ("M37", [-1.0, 0.0, 1.0], r"start\[0\] = -1 is below its lower bound 0"),
        ("M39", [np.nan, 0.0, 1.0], r"start\[0\] is not finite"),
        ("M39b", [1.0, np.nan, 1.0], r"start\[1\] is not finite"),
        ("M39c", [1.0, 0.0, np.inf], r"start\[2\] is not finite"),
    ],
)
def test_m37_m39_start_is_checked_before_the_optimizer(ss, cid, start, phrase):
    with pytest.raises(ThetaError, match=phrase):
        mm.lmer("Reaction ~ Days + (Days | Subject)", ss, start=start)


@pytest.mark.parametrize(
    "cid, kwargs, phrase",
    [
        ("M40", {"initial_step": np.nan}, "initial_step must be a finite number > 0"),
        ("M41", {"xtol_rel": np.nan}, "xtol_rel must be a finite number >= 0"),
        ("M42", {"initial_step": 0.0}, "initial_step must be a finite number > 0"),
        ("M43", {"maxeval": np.nan}, "maxeval must be a whole number"),
    ],
)
def test_m40_m43_control_values_are_checked(cid, kwargs, phrase):
    with pytest.raises(ControlError, match=phrase):
        mm.Control(**kwargs)
