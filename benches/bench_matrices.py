"""Benchmarks of the model's matrices (V, V_solve), against the targets of the
issue "The model's matrices".

    python benches/bench_matrices.py [--repeat 5]

Prints, for each measurement, the median time, the target and whether it is
met:
- V for a 200,000-row model y ~ x + (1 + x | g) with 20,000 groups: < 0.5 s;
- V_solve of a 73,421-vector on the InstEval fit: < 0.2 s;
- fit.V() on InstEval refuses with MemoryBudgetError at once (< 0.1 s).
For comparison it also times the R route of the notes (getME + a sparse
triple product Zt' Lambdat' Lambdat Zt) when R with lme4 is available, and
says so when it is not.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

import mixedmodels as mm


def timeit(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def slope_data(n=200_000, groups=20_000, seed=2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(size=groups)[g] + 0.5 * rng.normal(size=groups)[g] * x
    return pd.DataFrame({"y": y + rng.normal(size=n), "x": x, "g": g})


R_V = r"""
suppressMessages(library(lme4))
d <- read.csv(commandArgs(TRUE)[1]); d$g <- factor(d$g)
m <- lmer(y ~ x + (1 + x | g), d)
t <- system.time({
  Zt <- getME(m, "Zt"); L <- getME(m, "Lambdat")
  V <- sigma(m)^2 * (crossprod(L %*% Zt) + Matrix::Diagonal(nrow(d)))
})
cat(t[["elapsed"]], "\n")
"""


def r_v_seconds(df: pd.DataFrame) -> float | None:
    if shutil.which("Rscript") is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "d.csv"
        df.to_csv(csv, index=False)
        script = Path(tmp) / "v.R"
        script.write_text(R_V)
        r = subprocess.run(["Rscript", str(script), str(csv)], capture_output=True, text=True)
        if r.returncode != 0:
            return None
        return float(r.stdout.split()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-r", action="store_true", help="skip the R comparison")
    args = ap.parse_args()
    rows = []

    df = slope_data()
    fit = mm.lmer("y ~ x + (1 + x | g)", df)
    t_v = timeit(fit.V, args.repeat)
    rt = None if args.no_r else r_v_seconds(df)
    rows.append(("V, 200k rows, (1 + x | g), 20k groups", t_v, 0.5, rt))

    ie = mm.lmer(
        "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
        mm.datasets.load("insteval"),
        reml=False,
    )
    y = ie.get_me("y")
    rows.append(
        ("V_solve, InstEval, 73,421-vector", timeit(lambda: ie.V_solve(y), args.repeat), 0.2, None)
    )

    def refuse():
        try:
            ie.V()
        except mm.exceptions.MemoryBudgetError:
            return
        raise AssertionError("InstEval's V was not refused")

    rows.append(("V() refused on InstEval", timeit(refuse, args.repeat), 0.1, None))

    print(
        f"{'measurement':42s} {'ours (s)':>10s} {'target':>8s} {'met':>4s} "
        f"{'R getME route (s)':>18s}"
    )
    for name, t, target, r in rows:
        rtxt = "n/a" if r is None else f"{r:.3f} ({r / t:.0f}x)"
        print(f"{name:42s} {t:10.4f} {target:8.2f} {'yes' if t < target else 'NO':>4s} {rtxt:>18s}")


if __name__ == "__main__":
    main()
