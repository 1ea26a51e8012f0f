"""The fixed-effects model matrix against R's model.matrix (tests/reference/model_matrix).

For each right-hand side (interactions and R's coding rules, ordered factors, logicals,
strings, arithmetic in I(), R's functions, poly/scale/ns/bs), the column names and values on
the data, and the matrix R builds for new data from the fit's terms (as predict() does).
Written by scripts/make_model_matrix_reference.R.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm

HERE = Path(__file__).parent / "model_matrix"
REF = json.loads((HERE / "model_matrix.json").read_text())


def _read(name: str) -> pd.DataFrame:
    df = pd.read_csv(HERE / name)
    for col, levels in REF["factor_levels"].items():
        df[col] = pd.Categorical(df[col], categories=levels, ordered=col in REF["ordered_factors"])
    return df


DATA = _read("data.csv")
NEW = _read("newdata.csv")


@pytest.mark.parametrize("case", REF["cases"], ids=[c["rhs"] for c in REF["cases"]])
def test_model_matrix_as_r_builds_it(case):
    design = mm.build_design(f"y ~ {case['rhs']} + (1 | g)", DATA)
    assert list(design.x_names) == list(case["colnames"])
    want = np.asarray(case["X"], dtype=float).reshape(len(DATA), -1)
    np.testing.assert_allclose(design.X, want, rtol=1e-10, atol=1e-12)
    new = np.asarray(case["X_new"], dtype=float).reshape(len(NEW), -1)
    np.testing.assert_allclose(design.x_builder.build(NEW), new, rtol=1e-10, atol=1e-12)
