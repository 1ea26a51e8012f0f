"""mixedmodels: linear mixed-effects models with lme4's formulas and numbers.

>>> import mixedmodels as mm
>>> fit = mm.lmer("Reaction ~ Days + (Days | Subject)", mm.datasets.load("sleepstudy"))
>>> fit.fixef.round(3).to_dict()
{'(Intercept)': 251.405, 'Days': 10.467}
"""

from __future__ import annotations

from . import datasets, exceptions, families
from ._core import __version__ as _core_version
from .design import Design, build_design
from .exceptions import (
    ConvergenceWarning,
    DataError,
    DataWarning,
    FormulaError,
    MixedModelsError,
    PirlsError,
    PrecisionWarning,
    RankDeficiencyWarning,
    ThetaError,
)
from .formula import parse_formula
from .glmm import GeneralizedLinearMixedModel, glmer
from .glmm_nb import glmer_nb
from .glmm_results import GeneralizedLinearMixedModelResult
from .inference import anova
from .matrices import GLSResult, LFactor, VBlock, gls
from .model import LinearMixedModel, lmer
from .optimize import Control, OptSummary
from .results import LinearMixedModelResult, RandomEffects

__version__ = _core_version

__all__ = [
    "Control",
    "ConvergenceWarning",
    "DataWarning",
    "DataError",
    "Design",
    "FormulaError",
    "GeneralizedLinearMixedModel",
    "GeneralizedLinearMixedModelResult",
    "GLSResult",
    "LFactor",
    "LinearMixedModel",
    "LinearMixedModelResult",
    "MixedModelsError",
    "OptSummary",
    "PirlsError",
    "PrecisionWarning",
    "RandomEffects",
    "RankDeficiencyWarning",
    "ThetaError",
    "VBlock",
    "anova",
    "build_design",
    "datasets",
    "exceptions",
    "families",
    "glmer",
    "glmer_nb",
    "gls",
    "lmer",
    "parse_formula",
]
