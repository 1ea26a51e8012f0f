"""What the GLMM reference tests share: reading a case and its data, the objective at lme4's
fixed (θ, β) points, and the looser rule for fits whose optimum is below lme4's."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm


def read_case(case_file: Path, data_dir: Path) -> tuple[dict, pd.DataFrame]:
    """Return a case's reference values and its data, factors in lme4's level order."""
    ref = json.loads(case_file.read_text())
    data = pd.read_csv(data_dir / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    return ref, data


def check_objective_at_fixed_parameters(ref: dict, model: mm.GeneralizedLinearMixedModel) -> None:
    """The objective at each of lme4's fixed (θ, β) points, within 1e-7 relative."""
    for point in ref["fixed_parameters"]:
        got = model.objective(np.atleast_1d(point["theta"]), point["beta"])
        assert got == pytest.approx(point["objective"], rel=1e-7)


def looser(ref: dict, fit: mm.GeneralizedLinearMixedModelResult) -> float:
    """10 where our optimum is below lme4's tightly converged objective at lme4's optimum."""
    return 10.0 if fit.objective < ref["fixed_parameters"][0]["objective"] else 1.0
