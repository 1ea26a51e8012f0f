"""Shared fixtures: reference cases from lme4 and a session-wide cache of fits
(as MixedModels.jl's test/modelcache.jl)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mixedmodels as mm

REFERENCE = Path(__file__).parent / "reference"
CASES = sorted(p.stem for p in (REFERENCE / "cases").glob("*.json"))
SLOW_CASES = {"insteval_crossed_ml"}


def load_case(name: str) -> dict:
    return json.loads((REFERENCE / "cases" / f"{name}.json").read_text())


def case_params():
    return [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in CASES]


class ModelCache:
    def __init__(self):
        self._models: dict[str, mm.LinearMixedModel] = {}
        self._fits: dict[str, mm.LinearMixedModelResult] = {}

    def model(self, name: str) -> mm.LinearMixedModel:
        if name not in self._models:
            case = load_case(name)
            data = mm.datasets.load(Path(case["dataset"]).stem)
            self._models[name] = mm.LinearMixedModel.from_formula(
                case["formula"], data, reml=case["REML"]
            )
        return self._models[name]

    def fit(self, name: str) -> mm.LinearMixedModelResult:
        if name not in self._fits:
            self._fits[name] = self.model(name).fit()
        return self._fits[name]


@pytest.fixture(scope="session")
def cache() -> ModelCache:
    return ModelCache()
