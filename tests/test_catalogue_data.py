"""The data cases of the bad-inputs catalogue (../shared/notes/bad-inputs-catalogue.md), one
test per catalogue ID (the ID leads the test's name).

Each asserts the exception class and the phrase that names the problem, or a
value from lme4 (tests/reference), or an invariant that lme4 also satisfies
(the same fit as another way of writing the same data). Most use the
catalogue's 60-row toy frame: numeric y, x and z, a string factor g (6
levels of 10 rows) and a string factor h (4 levels).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import (
    ArgumentError,
    DataError,
    NotPositiveDefiniteError,
    RankDeficiencyWarning,
)

REFERENCE = Path(__file__).parent / "reference"


def toy(seed: int = 0) -> pd.DataFrame:
    r = np.random.default_rng(seed)
    g = np.repeat([f"g{i}" for i in range(6)], 10)
    h = np.tile([f"h{i}" for i in range(4)], 15)
    x, z = r.normal(size=60), r.normal(size=60)
    eff = r.normal(size=6)[np.repeat(np.arange(6), 10)]
    return pd.DataFrame(
        {"y": 1 + 0.5 * x + eff + r.normal(size=60), "x": x, "z": z, "g": g, "h": h}
    )


@pytest.fixture(scope="module")
def ss() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def base():
    """The toy frame's y ~ x + (1 | g) fit, the reference of the invariants."""
    return mm.lmer("y ~ x + (1 | g)", toy())


def same_fit(a, b, rtol: float = 1e-7) -> None:
    assert a.nobs == b.nobs
    np.testing.assert_allclose(a.theta, b.theta, rtol=rtol, atol=1e-7)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=rtol)
    assert a.objective == pytest.approx(b.objective, rel=1e-9)


def lme4_case(name: str) -> dict:
    return json.loads((REFERENCE / "cases" / f"{name}.json").read_text())


# -- empty, tiny and missing -------------------------------------------------------------
def test_d01_empty_frame_with_the_columns():
    with pytest.raises(DataError, match="no rows"):
        mm.lmer("y ~ x + (1 | g)", toy().iloc[:0])


def test_d02_empty_frame_without_columns():
    with pytest.raises(DataError, match="no rows"):
        mm.lmer("y ~ x + (1 | g)", pd.DataFrame())


def test_d03_one_row():
    with pytest.warns(RankDeficiencyWarning), pytest.raises(DataError, match="more than 1 sampled"):
        mm.lmer("y ~ x + (1 | g)", toy().iloc[:1])


def test_d04_two_rows_two_groups():
    d = toy().iloc[[0, 10]]
    with pytest.raises(DataError, match="number of levels of each grouping factor must be <"):
        mm.lmer("y ~ 1 + (1 | g)", d)


def test_d05_predictor_all_missing():
    with pytest.raises(DataError, match="no rows left after dropping the 60 rows"):
        mm.lmer("y ~ x + (1 | g)", toy().assign(x=np.nan))


def test_d06_all_missing_column_not_in_the_formula(base):
    fit = mm.lmer("y ~ x + (1 | g)", toy().assign(other=np.nan))
    assert (fit.nobs, fit.n_dropped) == (60, 0)
    same_fit(fit, base)


def test_d07_missing_responses_drop_their_rows():
    d = toy()
    d.loc[[4, 33], "y"] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert (fit.nobs, fit.n_dropped) == (58, 2)
    assert "2 observations deleted" in str(fit) or "dropped" in str(fit)
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[4, 33])))


def test_d08_infinite_response():
    d = toy()
    d.loc[3, "y"] = np.inf
    with pytest.raises(DataError, match="response 'y' has non-finite values"):
        mm.lmer("y ~ x + (1 | g)", d)


def test_d09_infinite_predictor():
    d = toy()
    d.loc[3, "x"] = -np.inf
    with pytest.raises(DataError, match="fixed-effects model matrix has non-finite values"):
        mm.lmer("y ~ x + (1 | g)", d)


def test_d10_missing_predictor_drops_the_row():
    d = toy()
    d.loc[5, "x"] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[5])))


def test_d11_infinite_random_slope_covariate():
    d = toy()
    d.loc[3, "z"] = np.inf
    with pytest.raises(DataError, match=r"model matrix of \(z \| g\) has non-finite values"):
        mm.lmer("y ~ x + (z | g)", d)


def test_d12_missing_grouping_value_drops_the_row():
    d = toy().astype({"g": object})
    d.loc[7, "g"] = None
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[7])))


@pytest.mark.parametrize(
    "cid, formula", [("D13", "y ~ x + (1 | g)"), ("D14", "y ~ 1 + (1 | g)")], ids=["D13", "D14"]
)
def test_d13_d14_constant_response(cid, formula):
    with pytest.raises(NotPositiveDefiniteError, match="fits the data exactly"):
        mm.lmer(formula, toy().assign(y=5.0))


# -- rank deficiency ---------------------------------------------------------------------
def _dropped(formula: str, d: pd.DataFrame, column: str):
    with pytest.warns(RankDeficiencyWarning, match=f"dropping 1 column / coefficient: {column}"):
        fit = mm.lmer(formula, d)
    assert column not in fit.fixef.index
    return fit


def test_d15_constant_predictor(base):
    fit = _dropped("y ~ x + c + (1 | g)", toy().assign(c=3.0), "c")
    same_fit(fit, base)


def test_d16_predictor_a_linear_function_of_another(base):
    d = toy()
    fit = _dropped("y ~ x + x2 + (1 | g)", d.assign(x2=2 * d.x + 1), "x2")
    same_fit(fit, base)


def test_d17_proportional_predictors_without_intercept():
    d = toy()
    fit = _dropped("y ~ 0 + x + x2 + (1 | g)", d.assign(x2=2 * d.x), "x2")
    same_fit(fit, mm.lmer("y ~ 0 + x + (1 | g)", d))


def test_d18_nearly_collinear_predictor(base):
    d = toy()
    noise = np.random.default_rng(5).normal(size=60) * 1e-9
    _dropped("y ~ x + x2 + (1 | g)", d.assign(x2=d.x + noise), "x2")


# -- types of the response, predictors and groups ----------------------------------------
@pytest.mark.parametrize(
    "cid, make",
    [
        ("D19", lambda y: y.astype(str)),
        ("D20", lambda y: y.astype(object)),
        ("D21", lambda y: y > 1),
    ],
    ids=["D19", "D20", "D21"],
)
def test_d19_d20_d21_response_that_is_not_numeric(cid, make):
    d = toy()
    d["y"] = make(d["y"])
    with pytest.raises(DataError, match="response 'y' must be numeric"):
        mm.lmer("y ~ x + (1 | g)", d)


def test_d22_boolean_predictor_is_a_factor():
    d = toy()
    fit = mm.lmer("y ~ b + (1 | g)", d.assign(b=d.x > 0))
    assert list(fit.fixef.index) == ["(Intercept)", "bTRUE"]
    same_fit(fit, mm.lmer("y ~ b + (1 | g)", d.assign(b=(d.x > 0).astype(float))))


def test_d23_boolean_grouping_factor():
    d = toy()
    fit = mm.lmer("y ~ x + (1 | b)", d.assign(b=d.g.isin(["g0", "g1", "g2"])))
    assert list(fit.ranef["b"].index) == ["FALSE", "TRUE"]


def test_d24_integer_codes_and_strings_give_the_same_fit(base):
    d = toy()
    fit = mm.lmer("y ~ x + (1 | g)", d.assign(g=d.g.str[1:].astype(int)))
    same_fit(fit, base)


def test_d25_integer_levels_sort_as_numbers_strings_as_text():
    d = toy()
    codes = np.tile(np.arange(12), 5)
    by_int = mm.lmer("y ~ x + (1 | k)", d.assign(k=codes))
    by_str = mm.lmer("y ~ x + (1 | k)", d.assign(k=codes.astype(str)))
    assert list(by_int.ranef["k"].index) == [str(i) for i in range(12)]
    assert list(by_str.ranef["k"].index) == sorted(str(i) for i in range(12))
    same_fit(by_int, by_str)


def test_d26_float_grouping_values():
    d = toy()
    fit = mm.lmer("y ~ x + (1 | k)", d.assign(k=np.repeat(np.arange(6) + 0.5, 10)))
    assert list(fit.ranef["k"].index) == ["0.5", "1.5", "2.5", "3.5", "4.5", "5.5"]


def test_d27_categorical_grouping_with_unused_categories(base):
    d = toy()
    g = pd.Categorical(d.g, categories=["unused1"] + sorted(set(d.g)) + ["unused2"])
    fit = mm.lmer("y ~ x + (1 | g)", d.assign(g=g))
    assert list(fit.ranef["g"].index) == sorted(set(d.g))
    same_fit(fit, base)


def test_d28_categorical_factor_with_an_unused_last_category():
    d = toy()
    h = pd.Categorical(d.h, categories=["h0", "h1", "h2", "h3", "hX"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit = mm.lmer("y ~ h + (1 | g)", d.assign(h=h))
    assert list(fit.fixef.index) == ["(Intercept)", "hh1", "hh2", "hh3"]


def test_d29_categorical_factor_with_an_unused_first_category():
    d = toy()
    h = pd.Categorical(d.h, categories=["hX", "h0", "h1", "h2", "h3"])
    fit = mm.lmer("y ~ h + (1 | g)", d.assign(h=h))
    assert list(fit.fixef.index) == ["(Intercept)", "hh1", "hh2", "hh3"]  # baseline h0, as lme4


def test_d30_unused_first_category_next_to_an_interaction(ss):
    z = np.random.default_rng(0).normal(size=180)
    h = pd.Categorical(np.tile(["h0", "h1", "h2"], 60), categories=["hX", "h0", "h1", "h2"])
    fit = mm.lmer("Reaction ~ h + Days:z + (1 | Subject)", ss.assign(h=h, z=z))
    assert list(fit.fixef.index) == ["(Intercept)", "hh1", "hh2", "Days:z"]  # lme4's
    used = ss.assign(h=h.remove_unused_categories(), z=z)
    same_fit(fit, mm.lmer("Reaction ~ h + Days:z + (1 | Subject)", used), 1e-10)


# -- level and observation counts --------------------------------------------------------
def test_d31_grouping_factor_with_one_level():
    with pytest.raises(DataError, match="grouping factor 'g1' must have more than 1 sampled level"):
        mm.lmer("y ~ x + (1 | g1)", toy().assign(g1="a"))


def test_d32_grouping_factor_with_a_level_per_row():
    with pytest.raises(DataError, match="problems: gid has 60 levels for 60 observations"):
        mm.lmer("y ~ x + (1 | gid)", toy().assign(gid=np.arange(60)))


def test_d33_more_random_effects_than_observations():
    d = toy().iloc[:20].assign(g=np.repeat(np.arange(10), 2))
    with pytest.raises(
        DataError, match=r"observations \(=20\) <= number of random effects \(=30\)"
    ):
        mm.lmer("y ~ 1 + (x + z | g)", d)


def test_d34_crossed_terms_are_checked_one_by_one():
    d = (
        toy()
        .iloc[:20]
        .assign(a=np.repeat(np.arange(10), 2), b=np.tile(np.arange(10), 2)[np.arange(20) % 20])
    )
    fit = mm.lmer("y ~ 1 + (1 | a) + (1 | b)", d)  # 20 random effects for 20 rows, 10 per term
    assert fit.nobs == 20 and len(fit.theta) == 2


def test_d35_many_rows_and_levels():
    r = np.random.default_rng(3)
    d = pd.DataFrame({"y": r.normal(size=200_000), "g": r.integers(0, 80_000, 200_000)})
    fit = mm.lmer("y ~ 1 + (1 | g)", d)
    assert len(fit.ranef["g"]) == len(np.unique(d.g))
    assert fit.nobs == 200_000


# -- what data may be --------------------------------------------------------------------
def test_d36_dict_of_arrays(base):
    d = toy()
    same_fit(mm.lmer("y ~ x + (1 | g)", {c: d[c].to_numpy() for c in d.columns}), base, 1e-12)


def test_d37_polars_frame(base):
    same_fit(mm.lmer("y ~ x + (1 | g)", pl.from_pandas(toy())), base, 1e-12)


def test_d38_pyarrow_table(base):
    same_fit(mm.lmer("y ~ x + (1 | g)", pa.Table.from_pandas(toy())), base, 1e-12)


def test_d39_record_array_is_refused():
    rec = toy().to_records(index=False)
    with pytest.raises(DataError, match="pandas, polars or pyarrow table.*not numpy.recarray"):
        mm.lmer("y ~ x + (1 | g)", rec)


# -- weights and offsets -----------------------------------------------------------------
@pytest.mark.parametrize(
    "cid, value", [("D40", -1.0), ("D41", 0.0), ("D44", np.inf)], ids=["D40", "D41", "D44"]
)
def test_d40_d41_d44_weights_that_are_not_positive_and_finite(cid, value):
    w = np.ones(60)
    w[3] = value
    with pytest.raises(DataError, match="prior weights must be finite and positive"):
        mm.lmer("y ~ x + (1 | g)", toy(), weights=w)


@pytest.mark.parametrize(
    "cid, weights, n",
    [("D42", np.ones(59), 59), ("D47", 2.0, 1), ("D53", np.ones((60, 2)), 120)],
    ids=["D42", "D47", "D53"],
)
def test_d42_d47_d53_weights_of_the_wrong_length(cid, weights, n):
    with pytest.raises(DataError, match=f"weights has {n} values; the data have 60 rows"):
        mm.lmer("y ~ x + (1 | g)", toy(), weights=weights)


def test_d43_missing_weight_drops_the_row():
    w = np.linspace(0.5, 2, 60)
    w[9] = np.nan
    d = toy()
    fit = mm.lmer("y ~ x + (1 | g)", d, weights=w)
    assert fit.n_dropped == 1
    keep = np.arange(60) != 9
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d[keep], weights=w[keep]))


def test_d45_weights_column_not_in_the_data():
    with pytest.raises(DataError, match=r"column 'ww' \(weights\) is not in the data"):
        mm.lmer("y ~ x + (1 | g)", toy(), weights="ww")


def test_d46_weights_column_of_strings():
    with pytest.raises(DataError, match="weights column 'w' must be numeric"):
        mm.lmer("y ~ x + (1 | g)", toy().assign(w="a"), weights="w")


def test_d48_offset_column_with_a_missing_value():
    d = toy().assign(o=np.linspace(-1, 1, 60))
    d.loc[2, "o"] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d, offset="o")
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[2]), offset="o"))


def test_d49_infinite_offset():
    o = np.zeros(60)
    o[0] = np.inf
    with pytest.raises(DataError, match="the offset has non-finite values"):
        mm.lmer("y ~ x + (1 | g)", toy(), offset=o)


def test_d50_offset_of_the_wrong_length():
    with pytest.raises(DataError, match="offset has 3 values; the data have 60 rows"):
        mm.lmer("y ~ x + (1 | g)", toy(), offset=np.zeros(3))


def test_d51_offset_array_with_a_missing_value():
    o = np.linspace(-1, 1, 60)
    o[11] = np.nan
    d = toy()
    fit = mm.lmer("y ~ x + (1 | g)", d, offset=o)
    assert fit.n_dropped == 1
    keep = np.arange(60) != 11
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d[keep], offset=o[keep]))


def test_d52_weights_as_a_list():
    w = np.linspace(0.5, 2, 60)
    d = toy()
    same_fit(
        mm.lmer("y ~ x + (1 | g)", d, weights=list(w)),
        mm.lmer("y ~ x + (1 | g)", d, weights=w),
        1e-12,
    )


# -- column names and row indexes --------------------------------------------------------
def test_d54_duplicated_column_name():
    d = toy()
    d = pd.concat([d, d[["x"]]], axis=1)
    with pytest.raises(DataError, match="duplicated column names: 'x'"):
        mm.lmer("y ~ x + (1 | g)", d)


def test_d55_integer_column_label(base):
    d = toy()
    d[0] = 1.0
    same_fit(mm.lmer("y ~ x + (1 | g)", d), base, 1e-12)


def test_d56_non_unique_row_index(base):
    d = toy()
    d.index = np.repeat(np.arange(30), 2)
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert len(fit.fitted) == 60
    same_fit(fit, base, 1e-12)


def test_d57_non_unique_row_index_and_a_dropped_row():
    d = toy()
    d.index = np.repeat(np.arange(30), 2)
    d.iloc[4, d.columns.get_loc("y")] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert fit.nobs == 59 and len(fit.fitted) == 59


def test_d58_multi_level_column_names():
    d = toy()
    d.columns = pd.MultiIndex.from_tuples([(c, "") for c in d.columns])
    with pytest.raises(DataError, match="multi-level column names"):
        mm.lmer("y ~ x + (1 | g)", d)


# -- pandas' nullable types --------------------------------------------------------------
def test_d59_nullable_integer_predictor_with_a_missing_value():
    d = toy().assign(k=np.tile(np.arange(5), 12))
    nd = d.assign(k=pd.array(d.k, dtype="Int64"))
    nd.loc[6, "k"] = pd.NA
    fit = mm.lmer("y ~ k + (1 | g)", nd)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ k + (1 | g)", d.drop(index=[6])))


def test_d60_nullable_float_response_with_a_missing_value():
    d = toy()
    nd = d.assign(y=pd.array(d.y, dtype="Float64"))
    nd.loc[8, "y"] = pd.NA
    fit = mm.lmer("y ~ x + (1 | g)", nd)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[8])))


def test_d61_string_grouping_with_a_missing_value():
    d = toy()
    nd = d.assign(g=pd.array(d.g, dtype="string"))
    nd.loc[12, "g"] = pd.NA
    fit = mm.lmer("y ~ x + (1 | g)", nd)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[12])))


# -- level labels ------------------------------------------------------------------------
def test_d64_object_grouping_mixing_an_int_and_a_string():
    d = toy()
    g = pd.Series([1 if v < "g3" else "a" for v in d.g], dtype=object)
    fit = mm.lmer("y ~ x + (1 | k)", d.assign(k=g))
    assert sorted(fit.ranef["k"].index) == ["1", "a"]


def test_d65_an_int_1_and_a_str_1_in_one_grouping_column(ss):
    codes = ss.Subject.cat.codes.to_numpy()
    g = pd.Series([1 if c == 0 else ("1" if c == 1 else c + 10) for c in codes], dtype=object)
    with pytest.raises(
        DataError, match=r"column 'g' has distinct values .*1 \(int\) and '1' \(str\)"
    ):
        mm.lmer("Reaction ~ Days + (1 | g)", ss.assign(g=g))
    # as one type the column fits, with one level per subject
    fit = mm.lmer("Reaction ~ Days + (1 | g)", ss.assign(g=g.astype(str)))
    assert len(fit.ranef["g"]) == 17  # subjects 0 and 1 are now one level "1", as R makes them


# -- scale -------------------------------------------------------------------------------
@pytest.mark.parametrize("cid, a", [("D66", 1e12), ("D67", 1e-12)], ids=["D66", "D67"])
def test_d66_d67_scaled_response(base, cid, a):
    fit = mm.lmer("y ~ x + (1 | g)", toy().assign(y=lambda d: d.y * a))
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-4)
    np.testing.assert_allclose(fit.fixef.to_numpy(), a * base.fixef.to_numpy(), rtol=1e-4)
    assert fit.sigma == pytest.approx(a * base.sigma, rel=1e-5)


def test_d68_scaled_fixed_effect_covariate(base):
    fit = mm.lmer("y ~ x + (1 | g)", toy().assign(x=lambda d: d.x * 1e10))
    assert fit.fixef["x"] == pytest.approx(base.fixef["x"] * 1e-10, rel=1e-6)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-4)


def test_d69_integer_ids_near_2_to_the_62(base):
    d = toy()
    ids = np.array([2**62 - 3, 2**62 - 2, 2**62 - 1, -(2**62), -(2**62) + 1, 2**62], np.int64)
    fit = mm.lmer("y ~ x + (1 | k)", d.assign(k=ids[np.repeat(np.arange(6), 10)]))
    assert sorted(fit.ranef["k"].index, key=int) == [str(int(i)) for i in sorted(ids)]
    same_fit(fit, base)


def test_d70_missing_value_in_an_object_factor():
    d = toy().astype({"h": object})
    d.loc[13, "h"] = pd.NA
    fit = mm.lmer("y ~ h + (1 | g)", d)
    assert fit.n_dropped == 1
    same_fit(fit, mm.lmer("y ~ h + (1 | g)", d.drop(index=[13])))


def test_d71_as_many_fixed_effects_as_rows():
    d = toy().iloc[:12].assign(f=[f"f{i:02d}" for i in range(12)], g=np.repeat([0, 1, 2], 4))
    with pytest.raises(NotPositiveDefiniteError, match="fits the data exactly"):
        mm.lmer("y ~ f + (1 | g)", d)


def test_d72_six_fixed_effects_on_twelve_rows():
    d = toy().iloc[:12].assign(f=np.repeat([f"f{i}" for i in range(6)], 2), g=np.tile([0, 1, 2], 4))
    fit = mm.lmer("y ~ f + (1 | g)", d)
    assert len(fit.fixef) == 6 and np.isfinite(fit.objective)


def test_d74_categorical_grouping_with_missing_values():
    d = toy()
    g = pd.Categorical(d.g)
    g[[0, 21]] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d.assign(g=g))
    assert fit.n_dropped == 2
    same_fit(fit, mm.lmer("y ~ x + (1 | g)", d.drop(index=[0, 21])))


def test_d75_interaction_grouping_with_an_unused_category():
    d = toy()
    gc = pd.Categorical(d.g, categories=sorted(set(d.g)) + ["zz"])
    fit = mm.lmer("y ~ x + (1 | gc:h)", d.assign(gc=gc))
    assert len(fit.ranef["gc:h"]) == 24
    assert "g0:h0" in fit.ranef["gc:h"].index


def test_d76_equal_weights_rescale_sigma_and_theta(base):
    # Var(e) = sigma^2 / 2: sigma grows by sqrt(2), theta = sd(b) / sigma shrinks by it
    fit = mm.lmer("y ~ x + (1 | g)", toy(), weights=np.full(60, 2.0))
    np.testing.assert_allclose(fit.theta, base.theta / np.sqrt(2.0), rtol=1e-5)
    np.testing.assert_allclose(fit.fixef.to_numpy(), base.fixef.to_numpy(), rtol=1e-6)
    assert fit.sigma == pytest.approx(base.sigma * np.sqrt(2.0), rel=1e-6)


def test_d77_string_row_index_and_a_dropped_row():
    d = toy()
    d.index = [f"r{i}" for i in range(60)]
    d.loc["r5", "x"] = np.nan
    fit = mm.lmer("y ~ x + (1 | g)", d)
    assert list(fit.fitted.index) == [f"r{i}" for i in range(60) if i != 5]
    assert list(fit.resid().index) == list(fit.fitted.index)


def test_d78_weights_give_lme4s_weighted_fit():
    ref = json.loads((REFERENCE / "inference" / "sleepstudy_weighted.json").read_text())
    d = mm.datasets.load("sleepstudy")
    w = np.asarray(ref["weights"], dtype=float)
    fit = mm.lmer(ref["formula"], d, weights=w, reml=ref.get("REML", True))
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["beta"].values()), rtol=1e-6)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)


def test_d79_float_ids_beyond_2_to_the_63_keep_distinct_labels(ss):
    d = ss.assign(g=ss.Subject.cat.codes.astype(float) * 1e20 + 1e20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no numpy cast warning
        fit = mm.lmer("Reaction ~ Days + (1 | g)", d)
    assert len(set(fit.ranef["g"].index)) == 18
    assert fit.ranef["g"].index[0] == "1e+20"  # R's label of 1e20
    np.testing.assert_allclose(fit.predict(d), fit.fitted.to_numpy(), rtol=1e-12)
    same_fit(fit, mm.lmer("Reaction ~ Days + (1 | Subject)", ss))


def test_d80_infinite_grouping_values_are_levels():
    d = toy()
    k = np.repeat([-np.inf, 1.0, 2.0, 3.0, 4.0, np.inf], 10)
    fit = mm.lmer("y ~ x + (1 | k)", d.assign(k=k))
    assert list(fit.ranef["k"].index) == ["-inf", "1", "2", "3", "4", "inf"]


def test_d81_float_ids_label_the_same_in_the_fit_and_in_new_data(ss):
    codes = ss.Subject.cat.codes
    d = ss.assign(g=codes.astype(float) + np.where(codes == 1, 0.5, 0.0))
    fit = mm.lmer("Reaction ~ Days + (1 | g)", d)
    assert list(fit.ranef["g"].index[:3]) == ["0", "1.5", "2"]
    rows = d[d.g == 0.0].head(3)  # only integer-valued ids in the new data
    np.testing.assert_allclose(fit.predict(rows), fit.fitted.to_numpy()[:3], rtol=1e-12)
    np.testing.assert_allclose(
        fit.predict(rows, allow_new_levels=True), fit.fitted.to_numpy()[:3], rtol=1e-12
    )
    # and an integer column in new data finds the same levels
    as_int = rows.assign(g=rows.g.astype(int))
    np.testing.assert_allclose(fit.predict(as_int), fit.fitted.to_numpy()[:3], rtol=1e-12)


def test_d82_weights_series_aligned_on_the_index():
    d = mm.datasets.load("sleepstudy").assign(w=np.linspace(0.5, 2, 180))
    shuffled = d["w"].sample(frac=1, random_state=0)
    by_name = mm.lmer("Reaction ~ Days + (1 | Subject)", d, weights="w")
    same_fit(mm.lmer("Reaction ~ Days + (1 | Subject)", d, weights=shuffled), by_name, 1e-10)
    other = pd.Series(d["w"].to_numpy(), index=np.arange(1000, 1180))
    with pytest.raises(DataError, match="index of the weights Series does not match"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", d, weights=other)


def test_d83_reml_must_be_a_flag(ss):
    with pytest.raises(ArgumentError, match="reml must be True or False, not 'ML'"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", ss, reml="ML")


def test_d84_no_data():
    with pytest.raises(DataError, match="must be a pandas, polars or pyarrow table.*not NoneType"):
        mm.lmer("y ~ x + (1 | g)", None)


def test_lme4_sleepstudy_intercept_from_integer_subject_ids(ss):
    """Subject ids as integers, as floats and as strings: lme4's fit each time."""
    ref = lme4_case("sleepstudy_intercept")
    ids = ss.Subject.astype(str).astype(int)
    for g in (ids, ids.astype(float), ids.astype(str)):
        fit = mm.lmer(ref["formula"], ss.assign(Subject=g))
        np.testing.assert_allclose(fit.theta, ref["theta"], rtol=1e-5)
        assert fit.objective == pytest.approx(ref["objective"], abs=1e-6)
        assert list(fit.ranef["Subject"].index) == [str(i) for i in sorted(ids.unique())]


def test_d62_a_date_time_column_is_its_number_of_seconds_as_in_r():
    ss = mm.datasets.load("sleepstudy")
    when = pd.Timestamp("2020-01-01") + pd.to_timedelta(ss.Days, unit="D")
    fit = mm.lmer("Reaction ~ t + (1 | Subject)", ss.assign(t=when))
    days = mm.lmer("Reaction ~ Days + (1 | Subject)", ss)
    assert fit.fixef["t"] * 86400 == pytest.approx(days.fixef["Days"], rel=1e-8)
    # X scaled by 86400 s a day: log det(RX^T RX) grows by 2 log 86400 (REML)
    assert fit.objective == pytest.approx(days.objective + 2 * np.log(86400), rel=1e-10)


def test_d63_a_complex_column_is_refused():
    ss = mm.datasets.load("sleepstudy")
    with pytest.raises(DataError, match="'c' holds complex numbers"):
        mm.lmer("Reaction ~ c + (1 | Subject)", ss.assign(c=ss.Days + 1j))
