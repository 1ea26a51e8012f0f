"""Random inputs that must never abort the interpreter.

Each case is a small random data set, a formula, a `start` and `Control` values (some of them
invalid: NaN, ±inf, zero, negative, wrong length) and, sometimes, a profile interval. A case
passes when the fit returns, or raises one of the package's exceptions; it fails when it
raises anything else, hangs, or kills the process (NLopt handed a NaN corrupts the heap).

Cases run in a worker subprocess, one after the other; when the worker dies, every case it had
started since its last restart is run again alone, each in its own subprocess, so that an abort
is pinned on the case that caused it (a corrupted heap may abort a later case).

    python tests/fuzz_inputs.py --cases 2000            # the full run; prints a summary
    python tests/fuzz_inputs.py --cases 50 --seed 7     # another sample

`tests/test_no_abort.py` runs a sample of these in the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import subprocess
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass

import numpy as np

FORMULAS = [
    "y ~ x + (1 | g)",
    "y ~ x + (x | g)",
    "y ~ x + (x || g)",
    "y ~ 1 + (1 | g) + (1 | h)",
    "y ~ x + (1 | g/h)",
    "y ~ x + (1 + x | g) + (1 | h)",
    "y ~ x + I(x**2) + (1 + x | g)",
    "y ~ 1 + (1 + x + z | g)",
]

ODD = [math.nan, math.inf, -math.inf, 0.0, -1.0, 1e-300, 1e300]


def _odd_or(rng: np.random.Generator, good: float, p: float = 0.25) -> float:
    return float(rng.choice(ODD)) if rng.random() < p else good


def make_case(seed: int) -> dict:
    """A JSON-serializable description of one random case."""
    rng = np.random.default_rng(seed)
    formula = str(rng.choice(FORMULAS))
    n_theta_guess = {"(x | g)": 3, "(1 + x | g)": 3, "(1 + x + z | g)": 6}
    case: dict = {
        "seed": seed,
        "formula": formula,
        "reml": bool(rng.random() < 0.5),
        "groups": int(rng.integers(2, 12)),
        "per_group": int(rng.integers(1, 8)),
        "x_scale": float(10.0 ** rng.integers(-6, 7)),
        "y_shift": float(rng.choice([0.0, 0.0, 1e3, 1e6])),
        "noise_only": bool(rng.random() < 0.3),
        "start": None,
        "control": {},
        "profile": bool(rng.random() < 0.15),
    }
    k = next((v for key, v in n_theta_guess.items() if key in formula), 1)
    r = rng.random()
    if r < 0.5:
        start = [1.0 if i == 0 else float(rng.normal()) for i in range(k)]
        case["start"] = [_odd_or(rng, v, 0.3) for v in start]
        if rng.random() < 0.2:  # wrong length
            case["start"] = case["start"] + [1.0]
    ctrl: dict = {}
    for name, good in [
        ("xtol_rel", 1e-4),
        ("ftol_abs", 1e-8),
        ("ftol_rel", 0.0),
        ("xtol_abs", 1e-8),
        ("initial_step", 0.75),
    ]:
        if rng.random() < 0.2:
            ctrl[name] = _odd_or(rng, good, 0.6)
    if rng.random() < 0.15:
        ctrl["maxeval"] = int(rng.choice([1, 2, 5, 10, 0, -1]))
    if rng.random() < 0.1:
        ctrl["optimizer"] = "cobyqa"
    case["control"] = ctrl
    return case


def _data(case: dict):
    import pandas as pd

    rng = np.random.default_rng(case["seed"] + 10_000)
    ng, per = case["groups"], case["per_group"]
    n = ng * per
    g = np.repeat(np.arange(ng), per)
    h = rng.integers(0, max(2, ng // 2 + 1), n)
    x = rng.standard_normal(n) * case["x_scale"]
    z = rng.standard_normal(n)
    b = rng.standard_normal(ng)
    y = rng.standard_normal(n) + case["y_shift"]
    if not case["noise_only"]:
        y = y + b[g] + 0.5 * x / case["x_scale"]
    order = rng.permutation(n)
    df = pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str), "h": h.astype(str)})
    return df.iloc[order].reset_index(drop=True)


def run_case(case: dict) -> str:
    """Runs one case in this process; returns 'ok', 'error:<class>' or 'foreign:<class>'."""
    import mixedmodels as mm
    from mixedmodels.exceptions import MixedModelsError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            control = mm.Control(**case["control"])
            fit = mm.lmer(
                case["formula"],
                _data(case),
                reml=case["reml"],
                control=control,
                start=case["start"],
            )
            if case["profile"]:
                fit.confint("profile")
    except MixedModelsError as e:
        return f"error:{type(e).__name__}"
    except Exception as e:  # noqa: BLE001 - recorded, reported as a failure
        return f"foreign:{type(e).__name__}: {str(e)[:120]}"
    return "ok"


def _worker() -> None:
    for line in sys.stdin:
        case = json.loads(line)
        print(f"start {case['seed']}", flush=True)
        out = run_case(case)
        print(f"done {case['seed']} {out}", flush=True)


@dataclass
class Outcome:
    seed: int
    result: str  # ok, error:..., foreign:..., abort:<rc>, hang


def _run_alone(case: dict, timeout: float) -> Outcome:
    cmd = [sys.executable, __file__, "--worker"]
    try:
        res = subprocess.run(
            cmd, input=json.dumps(case) + "\n", capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return Outcome(case["seed"], "hang")
    for line in res.stdout.splitlines():
        if line.startswith(f"done {case['seed']} "):
            return Outcome(case["seed"], line.split(" ", 2)[2])
    return Outcome(case["seed"], f"abort:{res.returncode}")


def _read_done(fd: int, pending: bytearray, timeout: float) -> str | None:
    """Read the worker's output up to its next "done" line; None on EOF or after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        while b"\n" in pending:
            raw, _, rest = bytes(pending).partition(b"\n")
            pending[:] = rest
            line = raw.decode()
            if line.startswith("done "):
                return line
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return None
        chunk = os.read(fd, 65536)
        if not chunk:
            return None
        pending.extend(chunk)


def _run_batch(batch: list[dict], timeout: float) -> tuple[list[Outcome], bool]:
    """Runs cases in one worker until it dies; returns their outcomes and whether it died."""
    cmd = [sys.executable, __file__, "--worker"]
    outcomes: list[Outcome] = []
    died = False
    pending = bytearray()
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, bufsize=0
    ) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        for case in batch:
            try:
                proc.stdin.write((json.dumps(case) + "\n").encode())
                proc.stdin.flush()
            except BrokenPipeError:
                died = True
                break
            line = _read_done(proc.stdout.fileno(), pending, timeout)
            if line is None:  # the worker died or hangs
                died = True
                break
            outcomes.append(Outcome(case["seed"], line.split(" ", 2)[2]))
        if proc.poll() is None:
            proc.kill()
        try:
            proc.stdin.close()
        except BrokenPipeError:
            pass
    return outcomes, died


def run_cases(cases: list[dict], timeout: float = 120.0, batch: int = 25) -> list[Outcome]:
    """Runs the cases in worker subprocesses, isolating any case that kills its worker.

    When a worker dies during a case, that case is run alone; if it passes alone, the heap was
    corrupted earlier, so every case of the batch is run alone to find the one that did it.
    """
    outcomes: list[Outcome] = []
    i = 0
    while i < len(cases):
        chunk = cases[i : i + batch]
        got, died = _run_batch(chunk, timeout)
        if not died:
            outcomes.extend(got)
            i += len(chunk)
            continue
        culprit = chunk[len(got)]
        alone = _run_alone(culprit, timeout)
        if alone.result.startswith(("abort", "hang")):
            outcomes.extend(got)
        else:
            got = [_run_alone(c, timeout) for c in chunk[: len(got)]]
            outcomes.extend(got)
        outcomes.append(alone)
        i += len(got) + 1
    return outcomes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="first case's seed")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        _worker()
        return 0
    t0 = time.perf_counter()
    cases = [make_case(a.seed + i) for i in range(a.cases)]
    outcomes = run_cases(cases)
    kinds = Counter(o.result.split(":")[0] for o in outcomes)
    print(f"{len(outcomes)} cases in {time.perf_counter() - t0:.0f} s: {dict(kinds)}")
    for o in outcomes:
        if o.result.startswith(("abort", "hang", "foreign")):
            print(f"  seed {o.seed}: {o.result}  {json.dumps(make_case(o.seed))}")
    bad = sum(kinds[k] for k in ("abort", "hang", "foreign"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
