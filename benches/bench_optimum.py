"""The optimizers and the optimality check, side by side, on the reference cases and benchmarks.

For each case the model is built once and ``model.fit(control)`` is timed (median of ``--reps``)
with:

- ``bobyqa-nocheck``: BOBYQA, ``check=False`` (the fit as it was before the check);
- ``bobyqa``: BOBYQA with the check (the default);
- ``bfgs``: the core's projected BFGS on the exact gradient, with the check;
- ``lbfgsb``: scipy's L-BFGS-B on the exact gradient, with the check.

It prints the objective reached (difference to lme4's where a reference exists), the objective
and gradient evaluations (the check's share in brackets), the check's verdict and gap, and the
wall and CPU (process) time; CPU time is the steadier figure on a loaded machine. The check's
overhead is ``bobyqa`` over ``bobyqa-nocheck``.

    python benches/bench_optimum.py                       # reference cases + benchmarks
    python benches/bench_optimum.py --cases insteval,sim200k --reps 5
    RAYON_NUM_THREADS=1 taskset -c 0 python benches/bench_optimum.py --cases insteval

The machine is shared: treat times as indicative, compare within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import warnings
from pathlib import Path

import mixedmodels as mm

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benches"))

from bench_fit import CASES as BENCH_CASES  # noqa: E402
from bench_fit import load_data  # noqa: E402

VARIANTS = {
    "bobyqa-nocheck": mm.Control(optimizer="bobyqa", check=False),
    "bobyqa": mm.Control(optimizer="bobyqa"),
    "bfgs": mm.Control(optimizer="bfgs"),
    "lbfgsb": mm.Control(optimizer="lbfgsb"),
}


def models(names: list[str] | None) -> dict[str, tuple[mm.LinearMixedModel, float | None]]:
    out: dict[str, tuple[mm.LinearMixedModel, float | None]] = {}
    for path in sorted((ROOT / "tests" / "reference" / "cases").glob("*.json")):
        if names and path.stem not in names:
            continue
        case = json.loads(path.read_text())
        data = mm.datasets.load(Path(case["dataset"]).stem)
        m = mm.LinearMixedModel.from_formula(case["formula"], data, reml=case["REML"])
        out[path.stem] = (m, case["objective"])
    for name in ("sleepstudy", "insteval", "sim200k", "sim500k"):
        if (names and name not in names) or (not names and name == "sim500k"):
            continue
        c = BENCH_CASES[name]
        out[name] = (mm.LinearMixedModel.from_formula(c.formula, load_data(c), reml=c.reml), None)
    return out


def run(model: mm.LinearMixedModel, control: mm.Control, reps: int) -> dict:
    times, cpu = [], []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = model.fit(control)  # warm-up, and the fit reported
        for _ in range(reps):
            t0, c0 = time.perf_counter(), time.process_time()
            model.fit(control)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
    o, c = fit.optsum, fit.optsum.check
    return {
        "objective": float(fit.objective),
        "feval": o.feval,
        "geval": o.geval + (c.geval if c else 0),
        "check_feval": c.feval if c else 0,
        "check_geval": c.geval if c else 0,
        "gap": c.gap if c else None,
        "optimal": c.optimal if c else None,
        "restarts": c.restarts if c else 0,
        "method": c.method if c else "",
        "time": statistics.median(times),
        "times": times,
        "cpu": statistics.median(cpu),
        "warnings": [str(w.message) for w in caught],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", help="comma-separated case names (default: all but sim500k)")
    ap.add_argument("--reps", type=int, default=3, help="timed fits per variant (median)")
    ap.add_argument("--small-reps", type=int, default=200, help="reps for fits under 10 ms")
    ap.add_argument("--json", help="write the raw results here")
    args = ap.parse_args()
    names = args.cases.split(",") if args.cases else None
    results: dict[str, dict] = {}
    head = (
        f"{'case':24s} {'variant':15s} {'objective - ref':>15s} {'feval(check)':>13s} "
        f"{'geval(check)':>12s} {'gap':>9s} {'ok':>3s} {'wall ms':>9s} {'vs nocheck':>10s} "
        f"{'cpu ms':>9s} {'vs nocheck':>8s}"
    )
    print(head)
    for name, (model, ref) in models(names).items():
        base = None
        results[name] = {}
        for variant, control in VARIANTS.items():
            r = run(model, control, args.reps)
            if r["time"] < 0.01 and args.small_reps > args.reps:
                r = run(model, control, args.small_reps)
            results[name][variant] = r
            base = r if base is None else base
            diff = r["objective"] - (ref if ref is not None else base["objective"])
            gap = "" if r["gap"] is None else f"{r['gap']:.1e}"
            ok = "" if r["optimal"] is None else ("yes" if r["optimal"] else "NO")
            print(
                f"{name:24s} {variant:15s} {diff:15.2e} "
                f"{r['feval']:>7d}({r['check_feval']:>3d}) "
                f"{r['geval']:>7d}({r['check_geval']:>2d}) "
                f"{gap:>9s} {ok:>3s} {1e3 * r['time']:9.3f} {r['time'] / base['time']:10.3f} "
                f"{1e3 * r['cpu']:9.3f} {r['cpu'] / base['cpu']:8.3f}"
                + (f"  warnings: {r['warnings']}" if r["warnings"] else ""),
                flush=True,
            )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
