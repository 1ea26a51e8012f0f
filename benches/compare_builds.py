"""A/B benchmark of two builds of mixedmodels: is the new one slower?

Runs `bench_fit.py` (our fits only: no lme4, no glmm) in two Python interpreters, each with
its own build installed, alternating which goes first in each round, and prints, per case, the
median over rounds of each round's median time, their ratio and whether it is within the
tolerance (default 5%). Each interpreter's own bench table (the last round's) is printed too.

    python -m venv /tmp/base && /tmp/base/bin/pip install <previous wheel>
    python benches/compare_builds.py --baseline /tmp/base/bin/python \
        --cases sleepstudy,insteval,sim500k,sim200k --rounds 3

`--new` defaults to this interpreter. Pin to one core and one thread with
`--single-thread` (taskset -c 0, RAYON_NUM_THREADS=1) for both builds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).with_name("bench_fit.py")


def run_bench(python: str, cases: str, reps: int, single: bool, out: Path) -> str:
    cmd = [python, str(BENCH), "--no-lme4", "--no-glmm", "--cases", cases]
    cmd += ["--reps", str(reps), "--json", str(out)]
    env = dict(os.environ)
    if single:
        env["RAYON_NUM_THREADS"] = "1"
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if res.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{res.stdout}\n{res.stderr}")
    return res.stdout


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--baseline", required=True, help="python of the baseline build")
    p.add_argument("--new", default=sys.executable, help="python of the new build")
    p.add_argument("--cases", default="sleepstudy,insteval,sim500k,sim200k")
    p.add_argument("--rounds", type=int, default=3, help="rounds, each build once a round")
    p.add_argument("--reps", type=int, default=5, help="bench_fit --reps")
    p.add_argument("--tolerance", type=float, default=0.05, help="allowed slowdown (0.05 = 5%%)")
    p.add_argument("--single-thread", action="store_true", help="one core, RAYON_NUM_THREADS=1")
    a = p.parse_args(argv)

    builds = {"baseline": a.baseline, "new": a.new}
    medians: dict[str, dict[str, list[float]]] = {b: {} for b in builds}
    evals: dict[str, dict[str, int]] = {b: {} for b in builds}
    tables: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            order = list(builds) if r % 2 == 0 else list(reversed(builds))
            for b in order:
                out = Path(tmp) / f"{b}-{r}.json"
                tables[b] = run_bench(builds[b], a.cases, a.reps, a.single_thread, out)
                for case in json.loads(out.read_text()):
                    t = statistics.median(case["ours"]["times"])
                    medians[b].setdefault(case["case"], []).append(t)
                    evals[b][case["case"]] = case["ours"]["feval"]
                print(f"round {r + 1}/{a.rounds}: {b} done", file=sys.stderr, flush=True)

    for b in builds:
        print(f"\n#### {b} ({builds[b]}), last round\n")
        out = tables[b]
        print(out[out.find("Times are medians") :].strip())
    mode = "one thread, one core" if a.single_thread else f"{os.cpu_count()} CPUs"
    print(f"\n#### median over {a.rounds} rounds of each round's median ({mode})\n")
    head = f"{'case':<12} {'baseline':>10} {'new':>10} {'new/base':>9} {'fevals b/n':>11}  ok"
    print(head)
    print("-" * len(head))
    worst = 0.0
    for case, base_t in medians["baseline"].items():
        tb, tn = statistics.median(base_t), statistics.median(medians["new"][case])
        ratio = tn / tb
        worst = max(worst, ratio)
        fe = f"{evals['baseline'][case]}/{evals['new'][case]}"
        ok = "yes" if ratio <= 1 + a.tolerance else "NO"
        print(f"{case:<12} {tb * 1e3:>8.2f}ms {tn * 1e3:>8.2f}ms {ratio:>9.3f} {fe:>11}  {ok}")
    print(f"\nworst new/baseline: {worst:.3f} (tolerance {1 + a.tolerance:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
