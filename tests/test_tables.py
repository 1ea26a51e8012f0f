"""Tables in: polars, pyarrow and dicts of columns fit and predict as pandas does.

The reference is the same model fitted on the pandas frame (and, for
sleepstudy, lme4's estimates in tests/reference): a table library changes
how the columns are held, never the model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import mixedmodels as mm
from mixedmodels._tables import as_frame, plain_column
from mixedmodels.exceptions import DataError

REFERENCE = Path(__file__).parent / "reference" / "cases"


@pytest.fixture(scope="module")
def sleep() -> pd.DataFrame:
    return mm.datasets.load("sleepstudy")


def _dict_of_arrays(df: pd.DataFrame) -> dict[str, np.ndarray]:
    return {c: df[c].to_numpy() for c in df.columns}


def _dict_of_lists(df: pd.DataFrame) -> dict[str, list]:
    return {c: df[c].tolist() for c in df.columns}


def _polars(df: pd.DataFrame):
    cols = {}
    for c in df.columns:
        s = df[c]
        if isinstance(s.dtype, pd.CategoricalDtype):
            cats = [str(v) for v in s.cat.categories]
            cols[c] = pl.Series(c, s.astype(str).tolist(), dtype=pl.Enum(cats))
        else:
            cols[c] = pl.Series(c, s.tolist())
    return pl.DataFrame(cols)


def _arrow(df: pd.DataFrame):
    return pa.Table.from_pandas(df, preserve_index=False)


CONVERTERS = {
    "polars": _polars,
    "pyarrow": _arrow,
    "dict-of-arrays": _dict_of_arrays,
    "dict-of-lists": _dict_of_lists,
}


def _same_fit(a: mm.LinearMixedModelResult, b: mm.LinearMixedModelResult) -> None:
    assert b.nobs == a.nobs
    assert list(b.fixef.index) == list(a.fixef.index)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(b.fixef.to_numpy(), a.fixef.to_numpy(), rtol=1e-10)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    for g in a.ranef:
        assert list(b.ranef[g].index) == list(a.ranef[g].index)
        np.testing.assert_allclose(b.ranef[g].to_numpy(), a.ranef[g].to_numpy(), rtol=1e-8)


@pytest.mark.parametrize("kind", list(CONVERTERS))
def test_sleepstudy_from_each_table_gives_lme4s_fit(sleep, kind):
    ref = json.loads((REFERENCE / "sleepstudy_reml.json").read_text())
    formula = ref["formula"]
    base = mm.lmer(formula, sleep)
    fit = mm.lmer(formula, CONVERTERS[kind](sleep))
    _same_fit(base, fit)
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=2e-4, atol=1e-5)
    np.testing.assert_allclose(fit.fixef.to_numpy(), list(ref["beta"].values()), rtol=1e-5)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    assert fit.objective == pytest.approx(ref["objective"], abs=1e-4)
    # predict from each kind of table, with a level order the fit did not see
    new = sleep.iloc[::7].copy()
    np.testing.assert_allclose(fit.predict(CONVERTERS[kind](new)), base.predict(new), rtol=1e-12)
    np.testing.assert_allclose(
        fit.predict(CONVERTERS[kind](new), re_form="~0"), base.predict(new, re_form="~0")
    )


@pytest.fixture(scope="module")
def factors(sleep) -> pd.DataFrame:
    """sleepstudy with a string factor and a categorical with its own level order."""
    period = np.where(sleep.Days < 3, "early", np.where(sleep.Days < 7, "mid", "late"))
    return sleep.assign(
        period=period,
        dose=pd.Categorical(
            np.tile(["high", "low", "none"], 60), categories=["none", "low", "high"]
        ),
    )


@pytest.mark.parametrize("kind", list(CONVERTERS))
def test_factor_and_ordered_categorical_from_each_table(factors, kind):
    formula = "Reaction ~ Days + period + dose + (1 | Subject)"
    base = mm.lmer(formula, factors)
    # the baseline of dose is its first category, 'none' (not the alphabetical 'high')
    assert list(base.fixef.index) == [
        "(Intercept)",
        "Days",
        "periodlate",
        "periodmid",
        "doselow",
        "dosehigh",
    ]
    table = CONVERTERS[kind](factors)
    if kind.startswith("dict"):  # a dict of arrays or lists cannot hold a level order
        table["dose"] = factors["dose"].array
    fit = mm.lmer(formula, table)
    _same_fit(base, fit)
    new = factors.iloc[3::11]
    np.testing.assert_allclose(fit.predict(CONVERTERS[kind](new)), base.predict(new), rtol=1e-12)


def test_arrow_dictionary_column_keeps_its_order(factors):
    t = _arrow(factors)
    assert pa.types.is_dictionary(t.schema.field("dose").type)
    frame = as_frame(t)
    assert list(frame["dose"].cat.categories) == ["none", "low", "high"]
    assert frame["Days"].dtype.kind in "iu"


def test_polars_nulls_become_missing_values_and_ints_stay_ints():
    df = pl.DataFrame(
        {
            "n": [1, None, 3],
            "s": ["a", None, "c"],
            "b": [True, None, False],
            "x": [1.5, None, float("nan")],
            "e": pl.Series(["z", "y", None], dtype=pl.Enum(["z", "y"])),
        }
    )
    frame = as_frame(df)
    assert str(frame["n"].dtype) == "Int64"
    assert frame["n"].isna().tolist() == [False, True, False]
    assert frame["n"].iloc[2] == 3
    assert frame["s"].isna().tolist() == [False, True, False]
    assert frame["s"].iloc[0] == "a"
    assert str(frame["b"].dtype) == "boolean"
    assert frame["b"].isna().tolist() == [False, True, False]
    assert frame["x"].isna().tolist() == [False, True, True]
    assert list(frame["e"].cat.categories) == ["z", "y"]
    assert frame["e"].isna().tolist() == [False, False, True]


def test_arrow_nulls_become_missing_values():
    t = pa.table({"n": pa.array([1, None, 3]), "b": pa.array([True, None, False])})
    frame = as_frame(t)
    assert str(frame["n"].dtype) == "Int64"
    assert frame["n"].isna().tolist() == [False, True, False]
    assert str(frame["b"].dtype) == "boolean"


def test_rows_with_nulls_are_dropped_as_with_pandas(sleep):
    d = sleep.assign(Days=sleep.Days.astype(float))
    d.loc[[3, 50], "Days"] = np.nan
    d["Subject"] = d["Subject"].astype(str).astype(object)
    d.loc[7, "Subject"] = None
    base = mm.lmer("Reaction ~ Days + (1 | Subject)", d)
    assert base.n_dropped == 3
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", pl.from_pandas(d))
    assert fit.n_dropped == 3
    _same_fit(base, fit)


def test_model_and_design_take_tables(sleep):
    t = _arrow(sleep)
    model = mm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", t)
    base = mm.LinearMixedModel.from_formula("Reaction ~ Days + (Days | Subject)", sleep)
    assert model.objective([1, 0, 1]) == base.objective([1, 0, 1])
    design = mm.build_design("Reaction ~ Days + (1 | Subject)", _polars(sleep))
    assert design.n == 180
    assert list(design.terms[0].levels) == [str(s) for s in sleep.Subject.cat.categories]


def test_weights_by_name_from_a_polars_frame(sleep):
    d = sleep.assign(w=np.linspace(0.5, 2, 180))
    base = mm.lmer("Reaction ~ Days + (1 | Subject)", d, weights="w")
    fit = mm.lmer("Reaction ~ Days + (1 | Subject)", pl.from_pandas(d), weights="w")
    _same_fit(base, fit)


def test_dict_with_columns_of_different_lengths():
    with pytest.raises(DataError, match="different lengths"):
        as_frame({"y": [1.0, 2.0, 3.0], "g": ["a", "b"]})


def test_dict_with_a_scalar_or_a_matrix_column():
    with pytest.raises(DataError, match="single value"):
        as_frame({"y": [1.0, 2.0], "g": 3})
    with pytest.raises(DataError, match="one-dimensional"):
        as_frame({"y": [1.0, 2.0], "x": np.ones((2, 2))})


def test_dict_of_series_with_different_indexes():
    with pytest.raises(DataError, match="different indexes"):
        as_frame({"y": pd.Series([1.0, 2.0], index=[0, 1]), "x": pd.Series([1, 2], index=[5, 6])})


def test_a_lazy_frame_is_refused_with_a_hint(sleep):
    lazy = pl.from_pandas(sleep).lazy()
    with pytest.raises(DataError, match=r"polars\.LazyFrame.*collect\(\)"):
        mm.lmer("Reaction ~ Days + (1 | Subject)", lazy)


def test_a_pandas_frame_is_not_copied(sleep):
    assert as_frame(sleep) is sleep


def test_pandas_frame_with_arrow_dtypes(factors):
    """pandas' pyarrow-backed columns (read_parquet(dtype_backend="pyarrow")): the same fit."""
    formula = "Reaction ~ Days + period + dose + (1 | Subject)"
    base = mm.lmer(formula, factors)
    arrow_backed = _arrow(factors).to_pandas(types_mapper=pd.ArrowDtype)
    arrow_backed.index = arrow_backed.index + 1000
    assert isinstance(arrow_backed["dose"].dtype, pd.ArrowDtype)
    fit = mm.lmer(formula, arrow_backed)
    _same_fit(base, fit)
    assert list(fit.fitted.index) == list(arrow_backed.index)
    new = arrow_backed.iloc[3::11]
    np.testing.assert_allclose(fit.predict(new), base.predict(factors.iloc[3::11]), rtol=1e-12)


def test_arrow_dtypes_with_nulls_are_missing_values():
    # a pandas frame's pyarrow-backed columns are unwrapped where they are read
    frame = pd.DataFrame({"n": pd.array([1, None, 3], dtype="int64[pyarrow]")})
    col = plain_column(as_frame(frame)["n"])
    assert str(col.dtype) == "Int64"
    assert col.isna().tolist() == [False, True, False]


def test_dict_of_polars_series_and_arrow_backed_series(factors):
    formula = "Reaction ~ Days + dose + (1 | Subject)"
    base = mm.lmer(formula, factors)
    arrow_backed = _arrow(factors).to_pandas(types_mapper=pd.ArrowDtype)
    columns = {
        "Reaction": pl.Series(factors.Reaction.to_numpy()),
        "Days": arrow_backed["Days"],
        "dose": arrow_backed["dose"],
        "Subject": factors.Subject.astype(str).tolist(),
    }
    _same_fit(base, mm.lmer(formula, columns))
