"""R's formula language against lme4 (tests/reference/formulas, lme4 1.1-31).

Each case is a formula feature (``I(x^2)``, ``poly``, ``scale``, ``ns``/``bs``,
``offset()``, a transformed response, an ordered factor, crossing, a column
named like a helper): the model matrix (names, first rows, column sums), the
objective at fixed θ, and the estimates.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

FORMULAS = Path(__file__).parent / "formulas"
CASES = sorted(p.stem for p in FORMULAS.glob("*.json"))


def load(name: str) -> tuple[dict, pd.DataFrame]:
    case = json.loads((FORMULAS / f"{name}.json").read_text())
    data = pd.read_csv(FORMULAS / "data" / Path(case["dataset"]).name)
    ordered = set(case["ordered_factors"])
    for col, levels in case["factor_levels"].items():
        if col in data.columns:
            data[col] = pd.Categorical(
                data[col].astype(str), categories=levels, ordered=col in ordered
            )
    return case, data


_MODELS: dict[str, tuple[dict, mm.LinearMixedModel]] = {}


def model(name: str) -> tuple[dict, mm.LinearMixedModel]:
    if name not in _MODELS:
        case, data = load(name)
        _MODELS[name] = (
            case,
            mm.LinearMixedModel.from_formula(case["formula"], data, reml=case["REML"]),
        )
    return _MODELS[name]


def as_list(x):
    return x if isinstance(x, list) else [x]


@pytest.mark.parametrize("name", CASES)
def test_model_matrix(name):
    case, m = model(name)
    X = m.design.X
    assert list(m.design.x_names) == case["X_head"]["colnames"]
    head = np.asarray(case["X_head"]["rows"], dtype=float)
    np.testing.assert_allclose(X[: len(head)], head, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(X.sum(axis=0), case["X_colsums"], rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(m.design.y[:10], case["y_head"], rtol=1e-12)
    off = m.design.offset if m.design.offset is not None else np.zeros(m.nobs)
    np.testing.assert_allclose(off[:10], case["offset_head"], rtol=1e-12, atol=0)
    assert m.nobs == case["nobs"]
    for term, ref in zip(m.design.terms, case["re_terms"], strict=True):
        assert list(term.cnames) == ref["colnames"]
        np.testing.assert_allclose(term.z[: len(ref["rows"])], ref["rows"], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", CASES)
def test_objective_at_fixed_theta(name):
    case, m = model(name)
    for point in case["fixed_theta"]:
        got = m.objective(np.atleast_1d(point["theta"]))
        assert abs(got - point["objective"]) < 1e-9 * abs(point["objective"]), (point, got)


@pytest.mark.parametrize("name", CASES)
def test_estimates(name):
    case, m = model(name)
    fit = m.fit()
    assert fit.objective <= case["objective"] + 1e-6 * abs(case["objective"])
    assert list(fit.fixef.index) == list(case["beta"])
    p = len(case["beta"])
    se = np.sqrt(np.diag(np.asarray(case["vcov_beta"], dtype=float).reshape(p, p)))
    beta_ref = np.array(list(case["beta"].values()))
    np.testing.assert_array_less(np.abs(fit.beta - beta_ref) / se, 1e-3)
    assert abs(fit.sigma - case["sigma"]) < 1e-4 * case["sigma"]
    assert m.theta_names == as_list(case["theta_names"])


@pytest.mark.parametrize("name", CASES)
def test_predict_on_the_data_rebuilds_the_fit(name):
    # new data = the data: the transforms' state (poly, scale, ns, bs), the factor coding and
    # the formula's offset must give back the fitted values
    case, m = model(name)
    _, data = load(name)
    fit = m.fit()
    np.testing.assert_allclose(fit.predict(data), fit.fitted.to_numpy(), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(
        fit.predict(data.iloc[::-1]), fit.fitted.to_numpy()[::-1], rtol=1e-10
    )
