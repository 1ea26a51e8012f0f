"""GLMM profile intervals checked by an independent minimization (tests/glmm_profile_check.py).

For every limit that ``fit.confint("profile")`` reports, the objective minimized over all the
other parameters with that parameter held at the limit must be the χ²₁ 95% quantile above the
minimum, within 1e-3; a limit at a bound (an sd of 0, a correlation of ±1) must have the
objective there below the quantile (within 1e-3). Cases: cbpp and grouseticks (Poisson, two
crossed terms) of tests/reference/glmm, and a binomial model with a correlated random slope
(tests/reference/glmm_features/binomial_slopes_profile).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import mixedmodels as mm
from tests.glmm_profile_check import GlmmIndependentProfile
from tests.profile_check import THRESHOLD, Held

TOL = 1e-3
REF = Path(__file__).parent / "reference"
CASES = {
    "cbpp_binomial": "glmm",
    "grouseticks_poisson": "glmm",
    "binomial_slopes_profile": "glmm_features",
}


def fit_of(name: str) -> mm.GeneralizedLinearMixedModelResult:
    folder = REF / CASES[name]
    ref = json.loads((folder / f"{name}.json").read_text())
    data = pd.read_csv(folder / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    return mm.glmer(ref["formula"], data, family=ref["family"], link=ref["link"])


def held_parameters(fit: mm.GeneralizedLinearMixedModelResult) -> list[Held]:
    """Return the parameter of each confint row (sds and cors, then β)."""
    out = []
    for t, term in enumerate(fit.design.layout.terms):
        out.extend(Held("sd" if r == c else "cor", t, r, c) for r, c in term.entries)
    out.extend(Held("beta", row=j) for j in range(len(fit.beta)))
    return out


@pytest.mark.parametrize("name", list(CASES))
def test_glmm_profile_limits_are_where_the_objective_reaches_the_quantile(name):
    fit = fit_of(name)
    ci = fit.confint("profile")
    check = GlmmIndependentProfile(fit)
    assert check.d_min <= fit.objective + 1e-6
    d_min = min(check.d_min, fit.objective)
    helds = held_parameters(fit)
    assert len(helds) == len(ci)
    for held, (label, row) in zip(helds, ci.iterrows(), strict=True):
        lo, hi = {"sd": (0.0, math.inf), "cor": (-1.0, 1.0)}.get(held.kind, (-math.inf, math.inf))
        for side, value in (("lower", row.lower), ("upper", row.upper)):
            assert np.isfinite(value) or value in (lo, hi), f"{label} {side} is {value}"
            at = Held(held.kind, held.term, held.row, held.col, value)
            dev = check.deviance(at) - d_min
            msg = f"{name}: {label} {side} = {value:.8g}: objective {dev:.6f} above the minimum"
            if value in (lo, hi):
                assert dev <= THRESHOLD + TOL, msg
            else:
                assert abs(dev - THRESHOLD) <= TOL, msg
