"""Benchmark: the front end (formula, data, design) and small end-to-end fits, against glmm 0.6.2.

Issue 10's targets, measured in one run on this machine (medians of many repetitions, after a
warm-up; the ratio is glmm's time / ours, so above 1 means we are faster):

- sleepstudy ``Reaction ~ Days + (Days | Subject)`` (REML) end to end, ``mm.lmer(formula, data)``:
  at least as fast as glmm and under 0.5 ms;
- the 234-row ``y ~ x + I(x^2) + (x | g)`` fit (tests/reference/formulas/data/quadratic_sim.csv)
  end to end: under 1 ms;
- building the design (``mm.build_design``) of the 200,000-row, 10,000-group
  ``y ~ 1 + x + (1 + x | g)`` model of benches/bench_fit.py: under 5 ms.

    python benches/bench_front_end.py [--reps 200] [--rounds 3]

glmm is skipped, with a message, when it cannot be imported (``pip install glmm==0.6.2``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import mixedmodels as mm

sys.path.insert(0, str(Path(__file__).parent))
from bench_fit import simulate  # noqa: E402

ROOT = Path(__file__).parent.parent


def median_time(f: Callable[[], object], reps: int) -> float:
    f()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def glmm_fit(data: pd.DataFrame, formula: str) -> Callable[[], object] | None:
    try:
        import glmm
    except Exception as e:  # noqa: BLE001 - any import failure means "skip"
        print(f"glmm skipped: {type(e).__name__}: {e} (pip install glmm==0.6.2)")
        return None

    def run() -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return glmm.fit(data, formula, reml=True)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    sleep = mm.datasets.load("sleepstudy")
    quad = pd.read_csv(ROOT / "tests/reference/formulas/data/quadratic_sim.csv")
    big = simulate("slope", 200_000, (10_000,), 200)
    f_sleep = "Reaction ~ Days + (Days | Subject)"
    f_quad = "y ~ x + I(x^2) + (x | g)"
    f_big = "y ~ 1 + x + (1 + x | g)"
    cases: list[tuple[str, Callable[[], object], Callable[[], object] | None, float, int]] = [
        (
            "sleepstudy end to end",
            lambda: mm.lmer(f_sleep, sleep),
            glmm_fit(sleep, f_sleep),
            0.5e-3,
            args.reps,
        ),
        (
            "234-row quadratic end to end",
            lambda: mm.lmer(f_quad, quad),
            glmm_fit(quad, f_quad),
            1e-3,
            args.reps,
        ),
        ("200k-row design", lambda: mm.build_design(f_big, big), None, 5e-3, 20),
        (
            "sleepstudy fit() on a built model",
            (lambda m: lambda: m.fit())(mm.LinearMixedModel.from_formula(f_sleep, sleep)),
            None,
            0.15e-3,
            args.reps,
        ),
    ]
    print(f"{'case':36} {'ours ms':>9} {'glmm ms':>9} {'glmm/ours':>9} {'target':>10}  met")
    for name, ours, theirs, target, reps in cases:
        rounds = [
            (median_time(ours, reps), median_time(theirs, reps) if theirs else None)
            for _ in range(args.rounds)
        ]
        t_ours = statistics.median(r[0] for r in rounds)
        t_glmm = statistics.median(r[1] for r in rounds) if theirs else None  # type: ignore[type-var]
        ratio = f"{t_glmm / t_ours:9.2f}" if t_glmm else f"{'-':>9}"
        glmm_ms = f"{t_glmm * 1e3:9.3f}" if t_glmm else f"{'-':>9}"
        met = t_ours < target and (
            t_glmm is None or "sleepstudy end" not in name or t_glmm >= t_ours
        )
        limit = f"<{target * 1e3:g} ms"
        print(
            f"{name:36} {t_ours * 1e3:9.3f} {glmm_ms} {ratio} {limit:>10}  {'yes' if met else 'NO'}"
        )


if __name__ == "__main__":
    main()
