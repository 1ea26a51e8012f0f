"""Fit GLMMs by adaptive Gauss-Hermite quadrature with the glmm package (0.6.2) for reference.

lme4 takes nAGQ > 1 for a single scalar random-effects term only; the glmm package also takes a
single grouping factor with 2 or 3 random effects per level (a tensor-product rule of nagq^k
nodes per level). This script fits three models with glmm's ``nagq=5`` and writes its estimates
to tests/reference/glmm_agq/<name>.json; tests/reference/test_glmm_agq_package.py reads them.
Run from the repository root, in an environment with glmm 0.6.2, numpy and pandas installed
(mixedmodels is not needed):

    python scripts/make_glmm_agq_reference.py

The data: lme4's cbpp and mlmRev's Contraception as tests/reference/glmm/data/ holds them, and a
simulated Poisson data set with three random effects per level, written by this script to
tests/reference/glmm_agq/data/sim_poisson_k3.csv (numbers in Python's shortest round-trip form,
so the file reads back as exactly the doubles glmm fitted).

Fields: ``name``, ``dataset`` (relative to tests/reference), ``formula`` (this package's),
``glmm_formula`` (glmm's: ``age2`` for ``I(age^2)``), ``factor_levels``, ``family``, ``link``,
``nagq``, ``glmm_version``; glmm's ``beta`` (named), ``se``, ``varcorr`` (the k x k covariance
matrix of the random effects, from ``Fit.varcorr``), ``theta`` (its lower Cholesky factor, column
by column: lme4's θ, computed here from ``varcorr``), ``deviance`` (glmm's −2 log L by the
quadrature without the family's constant: lme4's objective for nAGQ > 1), ``loglik`` (glmm's,
which includes the constant: it is not −deviance/2 for a binomial response with more than one
trial), ``n_eval`` and ``converged``.
"""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path

import glmm
import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
REF = ROOT / "tests" / "reference"
OUT = REF / "glmm_agq"
NAGQ = 5


def sim_poisson_k3() -> pd.DataFrame:
    """Return a Poisson data set with random intercepts and two random slopes (25 x 16 rows)."""
    rng = np.random.default_rng(20240611)
    n_levels, per = 25, 16
    g = np.repeat(np.arange(n_levels), per)
    x = np.round(rng.normal(size=g.size), 3)
    z = np.round(rng.uniform(-1, 1, size=g.size), 3)
    cov = np.array([[0.5, -0.1, 0.05], [-0.1, 0.3, 0.0], [0.05, 0.0, 0.2]])
    b = rng.multivariate_normal(np.zeros(3), cov, size=n_levels)
    eta = 0.3 + 0.4 * x - 0.2 * z + b[g, 0] + b[g, 1] * x + b[g, 2] * z
    y = rng.poisson(np.exp(eta))
    return pd.DataFrame({"y": y, "x": x, "z": z, "g": [f"G{j:02d}" for j in g]})


def contraception() -> pd.DataFrame:
    d = pd.read_csv(REF / "glmm" / "data" / "contraception.csv")
    d["district"] = d["district"].astype(str)
    d["livch"] = pd.Categorical(d["livch"].astype(str), categories=["0", "1", "2", "3+"])
    d["urban"] = pd.Categorical(d["urban"], categories=["N", "Y"])
    d["age2"] = d["age"] ** 2
    return d


def cbpp() -> pd.DataFrame:
    d = pd.read_csv(REF / "glmm" / "data" / "cbpp.csv")
    d["herd"] = d["herd"].astype(str)
    d["period"] = pd.Categorical(d["period"].astype(str), categories=["1", "2", "3", "4"])
    d["fail"] = d["size"] - d["incidence"]
    return d


def record(
    name: str,
    dataset: str,
    formula: str,
    glmm_formula: str,
    data: pd.DataFrame,
    family: str,
    levels: dict[str, list[str]],
) -> dict:
    assert version("glmm") == "0.6.2", version("glmm")
    fit = glmm.fit(data, glmm_formula, family, nagq=NAGQ)
    assert fit.nagq == NAGQ and fit.diagnostics["converged"], (name, fit.warnings)
    cov = np.asarray(fit.varcorr[0], dtype=float)
    k = len(fit.re_groups[0][1])
    full = np.zeros((k, k))
    pos = 0
    for c in range(k):  # glmm's vech: the lower triangle column by column
        for r in range(c, k):
            full[r, c] = full[c, r] = cov[pos]
            pos += 1
    chol = np.linalg.cholesky(full)
    theta = [float(chol[r, c]) for c in range(k) for r in range(c, k)]
    return {
        "name": name,
        "dataset": dataset,
        "formula": formula,
        "glmm_formula": glmm_formula,
        "factor_levels": levels,
        "family": family,
        "link": fit.link,
        "nagq": NAGQ,
        "glmm_version": version("glmm"),
        "beta": dict(zip(fit.names, map(float, fit.beta), strict=True)),
        "se": [float(v) for v in fit.se],
        "varcorr": full.tolist(),
        "theta": theta,
        "deviance": float(fit.deviance),
        "loglik": float(fit.loglik),
        "n_eval": int(fit.n_eval),
        "converged": bool(fit.diagnostics["converged"]),
    }


def main() -> None:
    (OUT / "data").mkdir(parents=True, exist_ok=True)
    sim = sim_poisson_k3()
    with open(OUT / "data" / "sim_poisson_k3.csv", "w") as fh:
        fh.write("y,x,z,g\n")
        for row in sim.itertuples(index=False):
            fh.write(f"{row.y},{row.x!r},{row.z!r},{row.g}\n")
    sim = pd.read_csv(OUT / "data" / "sim_poisson_k3.csv")
    cases = [
        record(
            "cbpp_binomial_agq5",
            "glmm/data/cbpp.csv",
            "cbind(incidence, size - incidence) ~ period + (1 | herd)",
            "cbind(incidence, fail) ~ period + (1 | herd)",
            cbpp(),
            "binomial",
            {"period": ["1", "2", "3", "4"]},
        ),
        record(
            "contraception_slopes_agq5",
            "glmm/data/contraception.csv",
            "use01 ~ age + I(age^2) + urban + livch + (urban | district)",
            "use01 ~ age + age2 + urban + livch + (urban | district)",
            contraception(),
            "binomial",
            {"livch": ["0", "1", "2", "3+"], "urban": ["N", "Y"]},
        ),
        record(
            "sim_poisson_k3_agq5",
            "glmm_agq/data/sim_poisson_k3.csv",
            "y ~ x + z + (1 + x + z | g)",
            "y ~ x + z + (1 + x + z | g)",
            sim,
            "poisson",
            {},
        ),
    ]
    for case in cases:
        (OUT / f"{case['name']}.json").write_text(json.dumps(case, indent=1) + "\n")
        print(case["name"], case["deviance"], case["theta"])


if __name__ == "__main__":
    main()
