"""Formula language: lme4's random-effects syntax and R's term algebra."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.formula import parse_formula


@pytest.mark.parametrize(
    "text, fixed, random",
    [
        ("y ~ x + (x | g)", "x", [("x", "g")]),
        ("y ~ 1 + (1 | a/b)", "1", [("1", "a"), ("1", "b:a")]),
        ("y ~ 1 + (1 | a/b/c)", "1", [("1", "a"), ("1", "b:a"), ("1", "c:b:a")]),
        ("y ~ x + (x || g)", "x", [("1", "g"), ("0 + x", "g")]),
        ("y ~ x + (0 + x + z || g)", "x", [("0 + x", "g"), ("0 + z", "g")]),
        ("y ~ (1 | a:b) + (1 | c)", "1", [("1", "a:b"), ("1", "c")]),
        ("y ~ x - 1 + (1 | g)", "x - 1", [("1", "g")]),
        ("y ~ 0 + x + (1 | `my g`)", "0 + x", [("1", "my g")]),
        ("y ~ log(x) + I(x**2) + (1 | g)", "log(x) + I(x^2)", [("1", "g")]),
    ],
)
def test_parse(text, fixed, random):
    f = parse_formula(text)
    assert f.fixed == fixed
    assert [(t.expr, t.group) for t in f.random] == random


def test_nested_equals_explicit_interaction():
    d = mm.datasets.load("pastes")
    a = mm.lmer("strength ~ 1 + (1 | batch/cask)", d)
    b = mm.lmer("strength ~ 1 + (1 | batch) + (1 | cask:batch)", d)
    assert abs(a.objective - b.objective) < 1e-9 * abs(a.objective)
    assert set(a.ngrps) == {"cask:batch", "batch"}


def test_fixed_effects_with_r_names():
    rng = np.random.default_rng(1)
    n = 300
    df = pd.DataFrame(
        {
            "g": rng.integers(0, 15, n),
            "x": rng.uniform(1, 5, n),
            "f": pd.Categorical(rng.choice(["lo", "mid", "hi"], n), categories=["lo", "mid", "hi"]),
            "s": rng.choice(["b", "a", "c"], n),
        }
    )
    df["y"] = 1 + np.log(df.x) + (df.f == "hi") * 2 + rng.normal(size=n) + df.g * 0.1
    fit = mm.lmer("y ~ log(x) + I(x**2) + f*s + (1 | g)", df)
    names = list(fit.fixef.index)
    assert names[:5] == ["(Intercept)", "log(x)", "I(x^2)", "fmid", "fhi"]  # R's names
    assert "sb" in names and "sc" in names  # string column: sorted levels, 'a' is the baseline
    assert "fmid:sb" in names
    # a backtick-quoted name
    df2 = df.rename(columns={"x": "my x"})
    fit2 = mm.lmer("y ~ `my x` + (1 | g)", df2)
    assert list(fit2.fixef.index) == ["(Intercept)", "`my x`"]  # R keeps the backticks


def test_grouping_columns_of_any_dtype():
    d = mm.datasets.load("sleepstudy")
    ref = mm.lmer("Reaction ~ Days + (Days | Subject)", d)
    for conv in (
        lambda s: s.astype(str),
        lambda s: s.astype(str).astype(int),
        lambda s: s.astype(str).astype(float),
        lambda s: pd.Categorical(
            s.astype(str), categories=sorted(set(s.astype(str)), reverse=True)
        ),
    ):
        fit = mm.lmer("Reaction ~ Days + (Days | Subject)", d.assign(Subject=conv(d.Subject)))
        assert abs(fit.objective - ref.objective) < 1e-8 * ref.objective


def test_dotted_names_and_intercept_only_random_slope_terms():
    d = mm.datasets.load("three_level")
    fit = mm.lmer("y ~ x1 + (1|sch.cl/tch.cl)", d)
    assert fit.ngrps == {"tch.cl:sch.cl": 30, "sch.cl": 10}
    d2 = mm.datasets.load("sleepstudy")
    a = mm.lmer("Reaction ~ Days + (0 + Days | Subject) + (1 | Subject)", d2)
    b = mm.lmer("Reaction ~ Days + (Days || Subject)", d2)
    assert abs(a.objective - b.objective) < 1e-8 * a.objective


def test_nullable_pandas_dtypes_are_read_with_their_missing_values():
    d = mm.datasets.load("sleepstudy")
    d2 = d.assign(Days=d.Days.astype("Int64"), Reaction=d.Reaction.astype("Float64"))
    d2.loc[3, "Days"] = pd.NA
    d2.loc[7, "Reaction"] = pd.NA
    fit = mm.lmer("Reaction ~ Days + (Days | Subject)", d2)
    ref = mm.lmer("Reaction ~ Days + (Days | Subject)", d.drop(index=[3, 7]))
    assert fit.nobs == 178 and fit.n_dropped == 2
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
