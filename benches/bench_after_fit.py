"""Benchmarks of the after-the-fit workflows of sleepstudy, against lme4.

    python benches/bench_after_fit.py [--refits 1000] [--boot 500]

- 1,000 refits of sleepstudy with simulated responses through ``fit.refit(y)``
  against 1,000 calls of ``mm.lmer`` on the same responses (target: refit at
  least 10 times faster than lme4's lmer called 1,000 times; both of ours are
  printed, and lme4's when R is available);
- a 500-replicate parametric bootstrap (``fit.confint("boot")``) against
  lme4's ``bootMer`` with the same number of replicates (target: 10x).

lme4 is timed inside R with the data loaded; it is skipped, with a message,
when Rscript or lme4 is not available.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

import mixedmodels as mm

FORMULA = "Reaction ~ Days + (Days | Subject)"

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
ys <- as.matrix(read.csv(args[1]))
nboot <- as.integer(args[2])
m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)
t_lmer <- system.time(for (i in seq_len(ncol(ys))) {
  d <- sleepstudy; d$Reaction <- ys[, i]
  lmer(Reaction ~ Days + (Days | Subject), d)
})[["elapsed"]]
t_refit <- system.time(for (i in seq_len(ncol(ys))) refit(m, ys[, i]))[["elapsed"]]
f <- function(fit) c(getME(fit, "theta"), sigma(fit), fixef(fit))
t_boot <- system.time(bootMer(m, f, nsim = nboot, seed = 1))[["elapsed"]]
cat(t_lmer, t_refit, t_boot, "\n")
"""


def r_times(ys: np.ndarray, nboot: int) -> tuple[float, float, float] | None:
    if shutil.which("Rscript") is None:
        print("lme4: Rscript not found, skipping the lme4 timings")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "ys.csv"
        np.savetxt(
            csv,
            ys,
            delimiter=",",
            header=",".join(f"y{i}" for i in range(ys.shape[1])),
            comments="",
        )
        script = Path(tmp) / "after.R"
        script.write_text(R_SCRIPT)
        r = subprocess.run(
            ["Rscript", str(script), str(csv), str(nboot)], capture_output=True, text=True
        )
        if r.returncode != 0:
            print("lme4: the R script failed, skipping:", r.stderr.strip()[-300:])
            return None
        a, b, c = map(float, r.stdout.split())
        return a, b, c


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--refits", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=500)
    ap.add_argument("--no-r", action="store_true")
    args = ap.parse_args()

    data = mm.datasets.load("sleepstudy")
    fit = mm.lmer(FORMULA, data)
    ys = fit.simulate(args.refits, seed=42).to_numpy()

    t = time.perf_counter()
    for i in range(args.refits):
        fit.refit(ys[:, i])
    t_refit = time.perf_counter() - t

    t = time.perf_counter()
    for i in range(args.refits):
        mm.lmer(FORMULA, data.assign(Reaction=ys[:, i]))
    t_lmer = time.perf_counter() - t

    t = time.perf_counter()
    fit.confint("boot", nsim=args.boot, seed=1, progress=False)
    t_boot = time.perf_counter() - t

    r = None if args.no_r else r_times(ys, args.boot)
    header = f"{'workflow':40s} {'ours (s)':>9s} {'lme4 (s)':>9s} {'ratio':>7s} {'target':>7s}"
    print(header + " met")

    def row(name, ours, theirs, target):
        if theirs is None:
            print(f"{name:40s} {ours:9.3f} {'n/a':>9s} {'':>7s} {target:>7s}")
        else:
            ratio = theirs / ours
            met = "" if target == "-" else ("yes" if ratio >= float(target.rstrip("x")) else "NO")
            print(f"{name:40s} {ours:9.3f} {theirs:9.3f} {ratio:6.1f}x {target:>7s} {met:>4s}")

    row(f"{args.refits} refits, fit.refit(y) vs lmer", t_refit, r[0] if r else None, "10x")
    row(f"{args.refits} lmer calls, mm.lmer vs lmer", t_lmer, r[0] if r else None, "-")
    row(f"{args.refits} refits vs lme4 refit()", t_refit, r[1] if r else None, "-")
    row(f"bootstrap {args.boot} vs bootMer", t_boot, r[2] if r else None, "10x")


if __name__ == "__main__":
    main()
