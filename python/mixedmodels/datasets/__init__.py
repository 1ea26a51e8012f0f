"""Data sets from lme4 and mlmRev, with lme4's factor level order.

>>> import mixedmodels as mm
>>> mm.datasets.names()[:4]
['cbpp', 'contraception', 'dyestuff', 'dyestuff2']
>>> mm.datasets.load("sleepstudy").shape
(180, 3)
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources

import pandas as pd

__all__ = ["load", "names"]

_ALIASES = {"star": "star_k_sample", "kindergarten": "star_k_sample"}


@cache
def _meta() -> dict:
    return json.loads(resources.files(__name__).joinpath("data/datasets.json").read_text())


def names() -> list[str]:
    """Names of the embedded data sets."""
    return sorted(_meta())


def load(name: str) -> pd.DataFrame:
    """Load an embedded data set as a DataFrame.

    Factor columns are pandas Categoricals in lme4's level order:
    ``sleepstudy``, ``dyestuff``, ``dyestuff2``, ``penicillin``, ``pastes``,
    ``insteval`` (lme4); ``three_level`` and ``star_k_sample`` (the examples of
    the V-matrix notes: three-level nested data and a 20% sample of mlmRev's
    kindergarten ``star`` data); for `glmer`, ``cbpp``, ``grouseticks`` and
    ``verbagg`` (lme4's) and ``contraception`` (mlmRev's, with its 0/1
    ``use01``).
    """
    key = name.lower()
    key = _ALIASES.get(key, key)
    meta = _meta()
    if key not in meta:
        raise KeyError(f"no data set named {name!r}; available: {', '.join(names())}")
    info = meta[key]
    factors: dict[str, list[str]] = info["factors"]
    with resources.files(__name__).joinpath("data", info["file"]).open("rb") as fh:
        df = pd.read_csv(fh, compression="gzip", dtype={c: str for c in factors})
    for col, levels in factors.items():
        df[col] = pd.Categorical(df[col], categories=levels)
    return df
