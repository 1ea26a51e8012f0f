"""The formula cases of the bad-inputs catalogue (../shared/notes/bad-inputs-catalogue.md, F01-F73).

Every case either fits with lme4's numbers (tests/reference/catalogue/formula_cases.json, from
scripts/make_catalogue_formula_reference.R) or raises one of the package's exceptions with a
message that names the problem.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from mixedmodels.exceptions import DataError, DataWarning, FormulaError

REF = json.loads(
    (Path(__file__).parent / "reference" / "catalogue" / "formula_cases.json").read_text()
)["cases"]


def _data() -> dict[str, pd.DataFrame]:
    ss = mm.datasets.load("sleepstudy")
    d = ss.copy()
    d["f"] = pd.Categorical(np.array(["a", "b", "c"])[d.Days % 3])
    for name in ("n.days", "n days", "Tage_é"):
        d[name] = d.Days
    for name in ("Sujet_é", "the subject", "1subj"):
        d[name] = d.Subject
    d["half"] = np.where(d.Days < 5, "early", "late")
    dneg = ss.copy()
    dneg.loc[dneg.index[0], "Reaction"] = -5.0
    dzero = ss.copy()
    dzero.loc[dzero.index[0], "Reaction"] = 0.0
    return {
        "ss": ss,
        "d": d,
        "dneg": dneg,
        "dzero": dzero,
        "dstr": ss.assign(s=ss.Reaction.astype(str)),
    }


DATA = _data()


@pytest.mark.parametrize("cid", sorted(REF))
def test_fits_with_lme4s_numbers(cid):
    case = REF[cid]
    data = DATA[case["data"]]
    if cid == "F35":  # log of a negative response: R drops the NaN row with a warning
        with pytest.warns(DataWarning, match="NaNs produced for 1 rows"):
            fit = mm.lmer(case["formula"], data)
    else:
        fit = mm.lmer(case["formula"], data)
    assert fit.nobs == case["nobs"]
    ref_beta = case["fixef"] if isinstance(case["fixef"], dict) else {}
    assert list(fit.fixef.index) == list(ref_beta)
    # the reference is lme4 with tight tolerances (its default stops short on F30 and F72d)
    ref = case["objective"]
    assert fit.objective <= case["objective_default"] + 1e-9 * abs(ref)
    assert abs(fit.objective - ref) <= 1e-6 * max(1.0, abs(ref)), (fit.objective, ref)
    if ref_beta:
        want = np.array(list(ref_beta.values()))
        np.testing.assert_allclose(
            fit.fixef.to_numpy(), want, rtol=1e-5, atol=1e-7 * abs(want).max()
        )
    assert abs(fit.sigma - case["sigma"]) <= 1e-5 * case["sigma"]
    assert {k: int(v) for k, v in fit.ngrps.items()} == case["ngrps"]


ERRORS = [
    ("F01", "Reaction ~ Days + (Days | Subject", "ss", FormulaError, r"missing '\)'"),
    ("F02", "Reaction ~ Days) + (1 | Subject)", "ss", FormulaError, r"unbalanced '\)'"),
    ("F03", "Reaction Days + (1 | Subject)", "ss", FormulaError, "no '~'"),
    ("F04", "Reaction ~ Days ~ (1 | Subject)", "ss", FormulaError, "more than one '~'"),
    ("F05", "", "ss", FormulaError, "no '~'"),
    ("F06", None, "ss", FormulaError, "must be a string, not NoneType"),
    ("F07", "Reaction ~ Days + (1 | Subject) +", "ss", FormulaError, "missing term after '\\+'"),
    ("F09", "Reaction ~ Dayz + (1 | Subject)", "ss", DataError, "'Dayz'.*did you mean 'Days'"),
    ("F10", "Reactoin ~ Days + (1 | Subject)", "ss", DataError, "'Reactoin'.*'Reaction'"),
    ("F11", "Reaction ~ Days + (1 | Subjct)", "ss", DataError, "'Subjct'.*grouping.*'Subject'"),
    ("F12", "Reaction ~ Days + (Dayz | Subject)", "ss", DataError, "'Dayz' \\(random effects"),
    ("F13", "Reaction ~ Days + ( | Subject)", "ss", FormulaError, "missing model terms before"),
    ("F14", "Reaction ~ Days + (1 | )", "ss", FormulaError, "missing grouping factor after"),
    ("F15", "Reaction ~ Days + () + (1|Subject)", "ss", FormulaError, "empty parentheses"),
    ("F18", "Reaction ~ Days + 1 | Subject", "ss", FormulaError, "must be in parentheses"),
    ("F19", "Reaction ~ Days", "ss", FormulaError, "no random-effects terms"),
    (
        "F26",
        "Reaction ~ Days + (0 | Subject)",
        "ss",
        FormulaError,
        r"\(0 \| Subject\) has no columns",
    ),
    ("F34", "log(Reaction) ~ Days + (1 | Subject)", "dzero", DataError, "non-finite values"),
    ("F37", "s ~ Days + (1 | Subject)", "dstr", DataError, "response 's' must be numeric"),
    ("F47", "Reaction ~ n days + (1 | Subject)", "d", FormulaError, "operator is missing"),
    ("F48", "Reaction ~ Days + (1 | factor(Subject))", "ss", FormulaError, "not a variable name"),
    ("F51", "Reaction ~ Days - (1 | Subject)", "ss", FormulaError, "cannot be subtracted"),
    ("F52", "Reaction ~ Days + I(1 | Subject)", "ss", FormulaError, "no random-effects terms"),
    (
        "F53",
        "Reaction ~ Days + (1 | Subject) + log(Days | 1)",
        "ss",
        FormulaError,
        "in parentheses",
    ),
    ("F54", "~ Days + (1 | Subject)", "ss", FormulaError, "no response"),
    ("F59", "Reaction ~ Days + (1 | Subject + Days)", "ss", FormulaError, "not a variable name"),
    ("F64", "Reaction ~ . + (1 | Subject)", "ss", FormulaError, r"'\.' \(all other columns\)"),
    ("F65", "Reaction ~ Days + (1 ||| Subject)", "ss", FormulaError, "unexpected '\\|'"),
    ("F66", "Reaction ~ Days + (1 | Subject | Days)", "ss", FormulaError, "has one '\\|'"),
    ("F67", "Reaction ~ 2 + (1 | Subject)", "ss", FormulaError, "invalid model term '2'"),
    ("F68", "1 ~ Days + (1 | Subject)", "ss", FormulaError, "constant"),
    ("F70", "Reaction ~ `Days + (1 | Subject)", "ss", FormulaError, "unclosed backtick"),
    (
        "F72e",
        "Reaction ~ center(Days) + (1 | Subject)",
        "ss",
        FormulaError,
        "'center' is not supported",
    ),
    (
        "F-in",
        "Reaction ~ Days %in% Subject + (1 | Subject)",
        "ss",
        FormulaError,
        "'%in%' is not supported",
    ),
    ("F-C", "Reaction ~ C(f, sum) + (1 | Subject)", "d", FormulaError, "contrasts argument"),
    ("F-ops", "Reaction ~ (Days == 2) + (1 | Subject)", "ss", FormulaError, "wrap it in I\\(\\)"),
    ("F-pow", "Reaction ~ (Days + f)^x + (1 | Subject)", "d", FormulaError, "power of terms"),
]


@pytest.mark.parametrize("cid, formula, data, exc, phrase", ERRORS, ids=[e[0] for e in ERRORS])
def test_refused_with_a_message_naming_the_problem(cid, formula, data, exc, phrase):
    with pytest.raises(exc, match=phrase):
        mm.lmer(formula, DATA[data])


def test_f08_unary_plus_is_read_as_r_reads_it():
    # `++` is a sum and a unary plus in R: the same model as one `+`
    a = mm.lmer("Reaction ~ Days ++ (1 | Subject)", DATA["ss"])
    b = mm.lmer("Reaction ~ Days + (1 | Subject)", DATA["ss"])
    assert a.objective == pytest.approx(b.objective, rel=1e-12)


def test_f28_two_identical_terms_fit_as_lme4_does():
    # lme4 fits it (with a convergence warning); the criterion is that of one term
    fit = mm.lmer("Reaction ~ Days + (1 | Subject) + (1 | Subject)", DATA["ss"])
    one = mm.lmer("Reaction ~ Days + (1 | Subject)", DATA["ss"])
    assert fit.objective == pytest.approx(one.objective, abs=1e-6)


def test_columns_named_like_helpers_are_columns():
    ss = DATA["ss"]
    rng = np.random.default_rng(3)
    noise = {name: rng.normal(size=len(ss)) for name in ("I", "poly")}
    d = ss.assign(C=ss.Days, Treatment=ss.Days % 2 == 0, **noise)
    fit = mm.lmer("Reaction ~ C + I + poly + Treatment + (1 | Subject)", d)
    assert list(fit.fixef.index) == ["(Intercept)", "C", "I", "poly", "TreatmentTRUE"]
