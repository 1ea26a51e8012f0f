"""Benchmark: mm.glmer vs R's lme4 glmer (through Rscript) vs the `glmm` package from PyPI.

Fits the reference GLMMs (tests/reference/glmm: cbpp, grouseticks, VerbAgg) with each package in
one run and prints median times, ratios (their time / ours), objectives, and our objective
evaluations and PIRLS iterations (whole fit: both stages and the Hessian). lme4 is skipped when
Rscript or lme4 is missing, glmm when it is not importable.

The large case (``--big``, on by default; ``--no-big`` skips it) is a simulated Bernoulli model
``y ~ x + (1 | g)`` with 1,000,000 rows and 10,000 groups (fixed seed): ours and glmm each fit it
in a fresh subprocess, which reports the fit's wall time and the process's peak resident memory
(data included; the data alone is printed beside it) and CPU time (ours runs the per-row passes
on all cores, in chunks fixed by n; glmm's fit runs on one). Target: at least 2x faster than glmm
and under 1 GiB.

    python benches/bench_glmm.py [--reps 5] [--lme4-reps 3] [--no-big]

What is timed: ours, `mm.glmer(formula, df, family)` from the pandas DataFrame; lme4,
`glmer(...)` inside R with `proc.time()`, data loaded; glmm, `glmm.fit(df, formula, family)`
with `satterthwaite=False` (Wald standard errors from its Hessian, as lme4's and ours).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

import mixedmodels as mm

REF = Path(__file__).resolve().parent.parent / "tests" / "reference" / "glmm"
CASES = ["cbpp_binomial", "grouseticks_poisson", "verbagg_crossed_binomial"]
TARGETS = {"cbpp_binomial": 20.0, "verbagg_crossed_binomial": 20.0}


def load(name: str) -> tuple[dict, pd.DataFrame]:
    ref = json.loads((REF / f"{name}.json").read_text())
    data = pd.read_csv(REF / "data" / Path(ref["dataset"]).name)
    for col, levels in ref["factor_levels"].items():
        data[col] = pd.Categorical(data[col].astype(str), categories=levels)
    return ref, data


def run_ours(ref: dict, data: pd.DataFrame, reps: int) -> dict:
    times, fit = [], None
    for _ in range(reps):
        t = time.perf_counter()
        fit = mm.glmer(ref["formula"], data, family=ref["family"], link=ref["link"])
        times.append(time.perf_counter() - t)
    assert fit is not None
    return {
        "time": statistics.median(times),
        "objective": fit.objective,
        "evals": fit.evaluations,
        "pirls": fit.pirls_iterations,
    }


R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
args <- commandArgs(trailingOnly = TRUE)
df <- read.csv(args[1], stringsAsFactors = TRUE)
for (col in strsplit(args[4], ",")[[1]]) if (nzchar(col)) df[[col]] <- factor(df[[col]])
fam <- get(args[3])()
reps <- as.integer(args[5])
f <- as.formula(args[2])
fit <- glmer(f, data = df, family = fam)
times <- numeric(reps)
for (i in seq_len(reps)) {
  t <- proc.time()[["elapsed"]]
  fit <- glmer(f, data = df, family = fam)
  times[i] <- proc.time()[["elapsed"]] - t
}
cat(sprintf("%.6g %.15g %d\n", median(times), fit@devcomp$cmp[["dev"]], fit@optinfo$feval))
"""


def run_lme4(ref: dict, reps: int) -> dict | None:
    if shutil.which("Rscript") is None:
        print("lme4: skipped (Rscript not found)")
        return None
    groups = [f for t in mm.parse_formula(ref["formula"]).random for f in t.factors]
    grouping = sorted(set(ref["factor_levels"]) | set(groups))
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "bench.R"
        script.write_text(R_SCRIPT)
        args = [
            str(REF / "data" / Path(ref["dataset"]).name),
            ref["formula"],
            ref["family"],
            ",".join(grouping),
            str(reps),
        ]
        out = subprocess.run(
            ["Rscript", "--vanilla", str(script), *args], capture_output=True, text=True
        )
    if out.returncode != 0:
        print(f"lme4: failed\n{out.stderr[-1000:]}")
        return None
    t, dev, feval = out.stdout.split()[:3]
    return {"time": float(t), "objective": float(dev), "evals": int(float(feval))}


def run_glmm(ref: dict, data: pd.DataFrame, reps: int) -> dict | None:
    try:
        import glmm
    except ImportError:
        print("glmm: skipped (not importable)")
        return None
    formula = ref["formula"]
    df = data.copy()
    if formula.startswith("cbind("):  # glmm takes a proportion with weights = trials
        df["_prop"] = df["incidence"] / df["size"]
        formula = "_prop ~" + formula.split("~", 1)[1]
        kw = {"weights": df["size"].to_numpy(dtype=float)}
    else:
        kw = {}
    lhs = formula.split("~", 1)[0].strip()
    if isinstance(df[lhs].dtype, pd.CategoricalDtype):  # glmm takes 0/1: first level = 0
        df[lhs] = (df[lhs].cat.codes > 0).astype(float)
    for col in df.columns:  # and plain string factors
        if isinstance(df[col].dtype, pd.CategoricalDtype):
            df[col] = df[col].astype(str)
    times, fit = [], None
    for _ in range(reps):
        t = time.perf_counter()
        fit = glmm.fit(df, formula, family=ref["family"], satterthwaite=False, **kw)
        times.append(time.perf_counter() - t)
    return {"time": statistics.median(times), "objective": float(-2 * fit.loglik)}


BIG_SCRIPT = r"""
import json, resource, sys, time
import numpy as np, pandas as pd
rng = np.random.default_rng(1)
n, G = 1_000_000, 10_000
g = rng.integers(0, G, n); x = rng.normal(size=n); b = rng.normal(scale=0.5, size=G)
eta = -0.5 + 0.8 * x + b[g]
y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(float)
d = pd.DataFrame({"y": y, "x": x, "g": np.char.add("g", g.astype(str))})
del g, x, b, eta, y
data_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out = {"data_mib": data_mib}
if sys.argv[1] == "ours":
    import mixedmodels as mm
    t, c = time.perf_counter(), time.process_time()
    fit = mm.glmer("y ~ x + (1 | g)", d, family="binomial")
    out["time"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
    out.update(objective=fit.objective, evals=fit.evaluations, pirls=fit.pirls_iterations)
else:
    import glmm
    t, c = time.perf_counter(), time.process_time()
    fit = glmm.fit(d, "y ~ x + (1 | g)", family="binomial", satterthwaite=False)
    out["time"], out["cpu"] = time.perf_counter() - t, time.process_time() - c
    out["objective"] = float(-2 * fit.loglik)
out["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_big(which: str) -> dict | None:
    """Fit the 1,000,000-row Bernoulli model in a fresh process: time, peak memory, objective."""
    out = subprocess.run([sys.executable, "-c", BIG_SCRIPT, which], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"{which} (1M rows): failed\n{out.stderr[-1000:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def big_case() -> None:
    try:
        import glmm  # noqa: F401
    except ImportError:
        glmm_res = None
        print("glmm: skipped (not importable)")
    else:
        glmm_res = run_big("glmm")
    ours = run_big("ours")
    if ours is None:
        return
    print(
        f"\n1,000,000-row Bernoulli, y ~ x + (1 | g), 10,000 groups (fresh process each; "
        f"data alone {ours['data_mib']:.0f} MiB)"
    )
    print(
        f"{'':8s} {'time s':>8s} {'CPU s':>8s} {'peak MiB':>9s} {'objective':>16s} "
        f"{'evals':>6s} {'PIRLS':>6s}"
    )
    print(
        f"{'ours':8s} {ours['time']:8.3f} {ours['cpu']:8.3f} {ours['peak_mib']:9.0f} "
        f"{ours['objective']:16.6f} {ours['evals']:6d} {ours['pirls']:6d}"
    )
    if glmm_res is not None:
        print(
            f"{'glmm':8s} {glmm_res['time']:8.3f} {glmm_res['cpu']:8.3f} "
            f"{glmm_res['peak_mib']:9.0f} {glmm_res['objective']:16.6f}"
        )
        ratio = glmm_res["time"] / ours["time"]
        print(
            f"glmm/ours {ratio:.2f}x (target 2x); our peak under 1 GiB: {ours['peak_mib'] < 1024}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--lme4-reps", type=int, default=3)
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--big", action=argparse.BooleanOptionalAction, default=True)
    args = ap.parse_args()
    rows = []
    for name in args.cases.split(","):
        ref, data = load(name)
        ours = run_ours(ref, data, args.reps)
        lme4 = run_lme4(ref, args.lme4_reps)
        other = run_glmm(ref, data, args.reps)
        rows.append((name, ours, lme4, other))
    print(
        f"{'case':26s} {'ours s':>8s} {'lme4 s':>8s} {'glmm s':>8s} {'lme4/ours':>9s} "
        f"{'glmm/ours':>9s} {'target':>7s} {'obj ours':>12s} {'obj lme4':>12s} {'obj glmm':>12s} "
        f"{'evals':>6s} {'PIRLS':>6s} {'lme4 fevals':>11s}"
    )
    for name, ours, lme4, other in rows:

        def f(res: dict | None, key: str, fmt: str) -> str:
            return "-" if res is None else format(res[key], fmt)

        r1 = "-" if lme4 is None else f"{lme4['time'] / ours['time']:.1f}x"
        r2 = "-" if other is None else f"{other['time'] / ours['time']:.1f}x"
        target = f"{TARGETS[name]:.0f}x" if name in TARGETS else "-"
        print(
            f"{name:26s} {ours['time']:8.3f} {f(lme4, 'time', '8.3f'):>8s} "
            f"{f(other, 'time', '8.3f'):>8s} {r1:>9s} {r2:>9s} {target:>7s} "
            f"{ours['objective']:12.4f} {f(lme4, 'objective', '12.4f'):>12s} "
            f"{f(other, 'objective', '12.4f'):>12s} {ours['evals']:6d} {ours['pirls']:6d} "
            f"{f(lme4, 'evals', 'd'):>11s}"
        )
    if args.big:
        big_case()


if __name__ == "__main__":
    main()
