"""Benchmark: mixedmodels vs R's lme4 (through Rscript) vs the `glmm` package from PyPI.

One run measures every selected case on this machine and prints one table: the median
time of each package, the ratios (their time / ours, so above 1 means we are faster), the
project's target, whether it is met, the objectives side by side and the number of
objective evaluations to convergence.

    python benches/bench_fit.py                                 # every case, lme4 on the small two
    python benches/bench_fit.py --cases sleepstudy,insteval     # a selection
    python benches/bench_fit.py --with-lme4-large               # lme4 on the simulated cases too

lme4 is skipped, with a message, when `Rscript` or the lme4 package is not available; glmm
when it cannot be imported (`pip install glmm==0.6.2`). See benches/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from importlib.metadata import version as dist_version

import numpy as np
import pandas as pd

import mixedmodels as mm

GIB = 1024**3


# --------------------------------------------------------------------------------------------
# cases


@dataclass(frozen=True)
class Target:
    kind: str  # "lme4" / "glmm": speed-up at least `value`; "time": seconds; "rss": bytes;
    # "obj": relative objective difference to lme4 at most `value`
    value: float

    def label(self) -> str:
        if self.kind in ("lme4", "glmm"):
            if self.value == 1:
                return "as fast as glmm" if self.kind == "glmm" else "as fast as lme4"
            return f">={self.value:g}x vs {self.kind}"
        if self.kind == "time":
            return f"fit < {self.value:g} s"
        if self.kind == "rss":
            return f"peak RSS < {self.value / GIB:g} GiB"
        if self.kind == "obj":
            return f"obj rel.diff lme4 <= {self.value:g}"
        raise ValueError(self.kind)


@dataclass(frozen=True)
class Case:
    name: str
    formula: str
    reml: bool
    source: str  # "sleepstudy", "insteval" or "sim"
    targets: tuple[Target, ...]
    large: bool = False  # lme4 only with --with-lme4-large
    subprocess: bool = False  # our fit in a fresh process, to measure its peak memory
    sim: dict = field(default_factory=dict)
    r_data: str = ""  # lme4's own copy of an embedded data set


CASES = {
    c.name: c
    for c in [
        Case(
            "sleepstudy",
            "Reaction ~ Days + (Days | Subject)",
            True,
            "sleepstudy",
            (Target("lme4", 10),),
            r_data="sleepstudy",
        ),
        Case(
            "insteval",
            "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept)",
            False,
            "insteval",
            (Target("lme4", 20), Target("glmm", 2.0), Target("obj", 1e-6)),
            r_data="InstEval",
        ),
        Case(
            "sim500k",
            "y ~ 1 + x + (1 | g1) + (1 | g2)",
            False,
            "sim",
            (Target("glmm", 1.5),),
            large=True,
            sim={"kind": "crossed", "n": 500_000, "levels": (5_000, 2_000), "seed": 500},
        ),
        Case(
            "sim200k",
            "y ~ 1 + x + (1 + x | g)",
            True,
            "sim",
            (Target("glmm", 1.5),),
            large=True,
            sim={"kind": "slope", "n": 200_000, "levels": (10_000,), "seed": 200},
        ),
        Case(
            "sim1m",
            "y ~ 1 + x + (1 | g1) + (1 | g2)",
            False,
            "sim",
            (Target("time", 10.0), Target("rss", 1.0 * GIB)),
            large=True,
            subprocess=True,
            sim={"kind": "crossed", "n": 1_000_000, "levels": (20_000, 500), "seed": 1000},
        ),
    ]
}


def simulate(kind: str, n: int, levels: tuple[int, ...], seed: int) -> pd.DataFrame:
    """Simulated data with a fixed seed: x ~ N(0, 1), a random effect per level, noise."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    cols: dict[str, object] = {}
    if kind == "crossed":
        g1 = rng.integers(0, levels[0], n)
        g2 = rng.integers(0, levels[1], n)
        b1 = rng.normal(0.0, 1.0, levels[0])
        b2 = rng.normal(0.0, 0.5, levels[1])
        y = 1.0 + 0.5 * x + b1[g1] + b2[g2] + rng.standard_normal(n)
        cols = {"y": y, "x": x, "g1": g1, "g2": g2}
    elif kind == "slope":
        g = rng.integers(0, levels[0], n)
        sd = np.array([1.0, 0.5])
        corr = np.array([[1.0, 0.3], [0.3, 1.0]])
        b = rng.multivariate_normal([0.0, 0.0], corr * np.outer(sd, sd), levels[0])
        y = 1.0 + 0.5 * x + b[g, 0] + b[g, 1] * x + rng.standard_normal(n)
        cols = {"y": y, "x": x, "g": g}
    else:
        raise ValueError(kind)
    df = pd.DataFrame(cols)
    for name in df.columns:
        if name.startswith("g"):
            df[name] = pd.Categorical(df[name]).remove_unused_categories()
    return df


def load_data(case: Case) -> pd.DataFrame:
    if case.source == "sim":
        return simulate(**case.sim)
    return mm.datasets.load(case.source)


def write_csv(df: pd.DataFrame, path: str) -> None:
    # 17 significant digits: R reads back exactly the doubles the Python fits see
    df.to_csv(path, index=False, float_format="%.17g")


# --------------------------------------------------------------------------------------------
# runners: each returns a dict with times (list of s), objective, feval, theta, notes


def run_ours(case: Case, df: pd.DataFrame, reps: int, warmup: bool) -> dict:
    caught = []
    if warmup:
        mm.lmer(case.formula, df, reml=case.reml)
    times = []
    fit = None
    for _ in range(reps):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            fit = mm.lmer(case.formula, df, reml=case.reml)
            times.append(time.perf_counter() - t0)
        caught = [f"{x.category.__name__}: {x.message}" for x in w]
    return {
        "times": times,
        "objective": float(fit.objective),
        "feval": int(fit.optsum.feval),
        "ngrad": int(fit.optsum.geval + (fit.optsum.check.geval if fit.optsum.check else 0)),
        "theta": [float(v) for v in fit.theta],
        "notes": caught,
    }


def glmm_module():
    try:
        import glmm
    except Exception as e:  # noqa: BLE001 - any import failure means "skip"
        return None, f"glmm not importable ({type(e).__name__}: {e}); pip install glmm==0.6.2"
    return glmm, None


def run_glmm(case: Case, df: pd.DataFrame, reps: int, warmup: bool, lean: bool) -> dict:
    """glmm.fit(data, formula, reml=...); objective = -2 * loglik (glmm's `deviance` is lme4's
    criterion minus a data-independent constant, so it is not comparable)."""
    glmm, _ = glmm_module()
    kw = {"reml": case.reml}
    if lean:  # no lmerTest Satterthwaite pass, standard errors from RX instead of the Hessian
        kw.update(satterthwaite=False, wald_se="rx")
    times = []
    fit = None
    caught = []
    if warmup:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            glmm.fit(df, case.formula, **kw)
    for _ in range(reps):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t0 = time.perf_counter()
            fit = glmm.fit(df, case.formula, **kw)
            times.append(time.perf_counter() - t0)
        caught = [f"{x.category.__name__}: {x.message}" for x in w]
    if not fit.converged:
        caught.append("glmm: converged=False")
    return {
        "times": times,
        "objective": -2.0 * float(fit.loglik),
        "feval": int(fit.n_eval),
        "ngrad": int(fit.n_grad),
        "notes": caught,
    }


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (VmHWM; ru_maxrss as a fallback)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024


def child_main(case_name: str, engine: str, reps: int, lean: bool) -> None:
    """In a fresh process: make the data, fit `reps` times, print one JSON line."""
    case = CASES[case_name]
    t0 = time.perf_counter()
    df = load_data(case)
    data_s = time.perf_counter() - t0
    rss_data = peak_rss_bytes()
    if engine == "ours":
        res = run_ours(case, df, reps, warmup=False)
    else:
        res = run_glmm(case, df, reps, warmup=False, lean=lean)
    res["peak_rss"] = peak_rss_bytes()
    res["peak_rss_after_data"] = rss_data
    res["data_s"] = data_s
    print("CHILD_RESULT " + json.dumps(res))


def run_child(case: Case, engine: str, reps: int, lean: bool) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", case.name, "--engine", engine]
    cmd += ["--reps", str(reps)] + (["--glmm-lean"] if lean else [])
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        if line.startswith("CHILD_RESULT "):
            return json.loads(line[len("CHILD_RESULT ") :])
    raise RuntimeError(f"{engine} subprocess failed:\n{out.stdout}\n{out.stderr}")


# --------------------------------------------------------------------------------------------
# lme4 through Rscript

R_SCRIPT = r"""
suppressPackageStartupMessages(library(lme4))
a <- commandArgs(trailingOnly = TRUE)
formula <- as.formula(a[1]); reml <- a[2] == "TRUE"; reps <- as.integer(a[3])
src <- a[4]; warmup <- a[5] == "TRUE"
if (startsWith(src, "builtin:")) {
  d <- get(sub("builtin:", "", src, fixed = TRUE), envir = asNamespace("lme4"))
} else {
  d <- read.csv(src)
  for (nm in names(d)) if (startsWith(nm, "g")) d[[nm]] <- factor(d[[nm]])
}
cat("LME4VERSION", as.character(packageVersion("lme4")), "\n")
if (warmup) invisible(lmer(formula, d, REML = reml))
for (i in seq_len(reps)) {
  t0 <- proc.time()[["elapsed"]]
  fit <- lmer(formula, d, REML = reml)
  el <- proc.time()[["elapsed"]] - t0
  cat(sprintf("TIME %.6f\n", el))
}
obj <- if (reml) REMLcrit(fit) else deviance(fit)
cat(sprintf("OBJ %.12f\n", obj))
cat(sprintf("FEVAL %d\n", as.integer(fit@optinfo$feval)))
cat("THETA", sprintf("%.10g", getME(fit, "theta")), "\n")
msgs <- c(fit@optinfo$conv$lme4$messages, fit@optinfo$warnings)
for (m in msgs) cat("NOTE", gsub("\n", " ", as.character(m)), "\n")
"""


def lme4_available() -> tuple[bool, str]:
    rscript = shutil.which("Rscript")
    if rscript is None:
        return False, "Rscript not found on PATH"
    probe = 'quit(status = if (requireNamespace("lme4", quietly = TRUE)) 0 else 1)'
    try:
        r = subprocess.run([rscript, "-e", probe], capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"Rscript failed to start ({e})"
    if r.returncode != 0:
        return False, "the R package lme4 is not installed (apt-get install r-cran-lme4)"
    return True, ""


def run_lme4(case: Case, source: str, reps: int, warmup: bool, timeout: float) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as fh:
        fh.write(R_SCRIPT)
        script = fh.name
    try:
        args = [case.formula, "TRUE" if case.reml else "FALSE", str(reps), source]
        args.append("TRUE" if warmup else "FALSE")
        out = subprocess.run(
            ["Rscript", "--vanilla", script, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    finally:
        os.unlink(script)
    res: dict = {"times": [], "notes": []}
    for line in out.stdout.splitlines():
        key, _, rest = line.partition(" ")
        if key == "TIME":
            res["times"].append(float(rest))
        elif key == "OBJ":
            res["objective"] = float(rest)
        elif key == "FEVAL":
            res["feval"] = int(rest)
        elif key == "THETA":
            res["theta"] = [float(v) for v in rest.split()]
        elif key == "LME4VERSION":
            res["version"] = rest.strip()
        elif key == "NOTE":
            res["notes"].append(rest.strip())
    if out.returncode != 0 or not res["times"]:
        raise RuntimeError(f"Rscript failed (exit {out.returncode}):\n{out.stderr[-2000:]}")
    return res


# --------------------------------------------------------------------------------------------
# report


def med(res: dict | None) -> float | None:
    return statistics.median(res["times"]) if res and res.get("times") else None


def fmt_s(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v * 1e3:.2f} ms" if v < 1 else f"{v:.2f} s"


def fmt_x(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}x"


def fmt_obj(v: float | None) -> str:
    return "-" if v is None else f"{v:.6f}"


def rel(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return abs(a - b) / max(abs(b), 1e-300)


def evaluate(target: Target, r: dict) -> tuple[str, str]:
    """(got, met) for one target; met is 'yes', 'NO' or 'n/a'."""
    ours = med(r["ours"])
    if target.kind in ("lme4", "glmm"):
        other = med(r.get(target.kind))
        if other is None or ours is None:
            return "-", "n/a"
        x = other / ours
        return fmt_x(x), "yes" if x >= target.value else "NO"
    if target.kind == "time":
        return fmt_s(ours), "yes" if ours < target.value else "NO"
    if target.kind == "rss":
        rss = r["ours"].get("peak_rss")
        if rss is None:
            return "-", "n/a"
        return f"{rss / 2**20:.0f} MiB", "yes" if rss < target.value else "NO"
    if target.kind == "obj":
        lme4 = r.get("lme4")
        d = rel(r["ours"]["objective"], lme4.get("objective") if lme4 else None)
        if d is None:
            return "-", "n/a"
        return f"{d:.1e}", "yes" if d <= target.value else "NO"
    raise ValueError(target.kind)


def print_table(results: list[dict]) -> None:
    head = [
        "case",
        "ours",
        "lme4",
        "glmm",
        "lme4/ours",
        "glmm/ours",
        "target",
        "got",
        "met",
        "obj ours",
        "obj lme4",
        "obj glmm",
        "rel lme4",
        "rel glmm",
        "feval o/l/g",
    ]
    rows = []
    for r in results:
        ours, lme4, glmm = r["ours"], r.get("lme4"), r.get("glmm")
        t_o, t_l, t_g = med(ours), med(lme4), med(glmm)

        def obj(x):
            return x.get("objective") if x else None

        def fe(x):
            if not x or "feval" not in x:
                return "-"
            return f"{x['feval']}+{x['ngrad']}g" if x.get("ngrad") else str(x["feval"])

        first = [
            r["case"],
            fmt_s(t_o),
            fmt_s(t_l) if lme4 else r.get("lme4_skip", "-"),
            fmt_s(t_g) if glmm else r.get("glmm_skip", "-"),
            fmt_x(t_l / t_o) if t_l else "-",
            fmt_x(t_g / t_o) if t_g else "-",
        ]
        tail = [
            fmt_obj(obj(ours)),
            fmt_obj(obj(lme4)),
            fmt_obj(obj(glmm)),
            "-" if rel(obj(ours), obj(lme4)) is None else f"{rel(obj(ours), obj(lme4)):.1e}",
            "-" if rel(obj(ours), obj(glmm)) is None else f"{rel(obj(ours), obj(glmm)):.1e}",
            f"{fe(ours)}/{fe(lme4)}/{fe(glmm)}",
        ]
        for i, tg in enumerate(r["targets"]):
            got, met = evaluate(tg, r)
            lead = first if i == 0 else [""] * len(first)
            rows.append(lead + [tg.label(), got, met] + (tail if i == 0 else [""] * len(tail)))
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# --------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated cases (default all): {', '.join(CASES)}",
    )
    p.add_argument("--reps", type=int, default=5, help="repetitions, ours and glmm (default 5)")
    p.add_argument(
        "--reps-sleepstudy", type=int, default=200, help="ours/glmm on sleepstudy (default 200)"
    )
    p.add_argument("--lme4-reps", type=int, default=3, help="lme4 repetitions (default 3)")
    p.add_argument(
        "--lme4-reps-sleepstudy", type=int, default=50, help="lme4 on sleepstudy (default 50)"
    )
    p.add_argument(
        "--lme4-reps-large",
        type=int,
        default=1,
        help="lme4 on the simulated cases (default 1)",
    )
    p.add_argument(
        "--with-lme4-large",
        action="store_true",
        help="also run lme4 on the simulated cases (minutes: ~70 s a fit on sim500k)",
    )
    p.add_argument("--no-lme4", action="store_true", help="skip lme4 everywhere")
    p.add_argument("--no-glmm", action="store_true", help="skip glmm everywhere")
    p.add_argument(
        "--glmm-lean",
        action="store_true",
        help="glmm with satterthwaite=False, wald_se='rx' (default: glmm's defaults)",
    )
    p.add_argument("--r-timeout", type=float, default=3600, help="seconds per Rscript run")
    p.add_argument("--json", help="also write the raw results to this file")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--engine", default="ours", help=argparse.SUPPRESS)
    a = p.parse_args(argv)

    if a.child:
        child_main(a.child, a.engine, a.reps, a.glmm_lean)
        return 0

    names = [c.strip() for c in a.cases.split(",") if c.strip()]
    unknown = [n for n in names if n not in CASES]
    if unknown:
        p.error(f"unknown case(s) {unknown}; choose from {list(CASES)}")

    if a.no_lme4:
        have_r, why_r = False, "disabled (--no-lme4)"
    else:
        have_r, why_r = lme4_available()
    glmm, why_g = glmm_module()
    if a.no_glmm:
        glmm, why_g = None, "disabled (--no-glmm)"
    if not have_r:
        print(f"lme4: skipped: {why_r}")
    if glmm is None:
        print(f"glmm: skipped: {why_g}")

    print(
        f"mixedmodels {mm.__version__}; glmm {dist_version('glmm') if glmm else '-'}"
        f"; python {platform.python_version()}; {os.cpu_count()} CPUs; glmm "
        f"{'lean (satterthwaite=False, wald_se=rx)' if a.glmm_lean else 'default options'}"
    )

    results = []
    tmpdir = tempfile.mkdtemp(prefix="mm_bench_")
    try:
        for name in names:
            case = CASES[name]
            small = name == "sleepstudy"
            reps = a.reps_sleepstudy if small else a.reps
            print(f"\n== {name}: {case.formula} ({'REML' if case.reml else 'ML'})", flush=True)
            r: dict = {"case": name, "targets": case.targets}
            t0 = time.perf_counter()
            df = load_data(case)
            print(f"   data: {len(df):,} rows ({time.perf_counter() - t0:.1f} s)", flush=True)

            if case.subprocess:
                r["ours"] = run_child(case, "ours", reps, a.glmm_lean)
            else:
                r["ours"] = run_ours(case, df, reps, warmup=small)
            extra = ""
            if "peak_rss" in r["ours"]:
                extra = f", peak RSS {r['ours']['peak_rss'] / 2**20:.0f} MiB (fresh process)"
            print(f"   ours: {fmt_s(med(r['ours']))} (median of {reps}){extra}", flush=True)

            if glmm is not None:
                if case.subprocess:
                    r["glmm"] = run_child(case, "glmm", reps, a.glmm_lean)
                else:
                    r["glmm"] = run_glmm(case, df, reps, warmup=small, lean=a.glmm_lean)
                extra = ""
                if "peak_rss" in r["glmm"]:
                    extra = f", peak RSS {r['glmm']['peak_rss'] / 2**20:.0f} MiB (fresh process)"
                print(f"   glmm: {fmt_s(med(r['glmm']))} (median of {reps}){extra}", flush=True)
            else:
                r["glmm_skip"] = "skipped"

            if not have_r:
                r["lme4_skip"] = "skipped"
            elif case.large and not a.with_lme4_large:
                r["lme4_skip"] = "(flag)"
                print("   lme4: not run (add --with-lme4-large)")
            else:
                if case.source == "sim":
                    src = os.path.join(tmpdir, f"{name}.csv")
                    write_csv(df, src)
                else:
                    src = f"builtin:{case.r_data}"
                lreps = a.lme4_reps_sleepstudy if small else a.lme4_reps
                if case.large:
                    lreps = a.lme4_reps_large
                try:
                    r["lme4"] = run_lme4(case, src, lreps, warmup=small, timeout=a.r_timeout)
                    print(f"   lme4: {fmt_s(med(r['lme4']))} (median of {lreps})", flush=True)
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    r["lme4_skip"] = "failed"
                    print(f"   lme4: failed: {e}")
            for who in ("ours", "glmm", "lme4"):
                for note in (r.get(who) or {}).get("notes", []):
                    print(f"   {who} note: {note}")
            del df
            results.append(r)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    print(
        "\nTimes are medians; ratios are their time / ours (above 1: we are faster). "
        "Objectives: REML criterion or ML deviance (-2 logLik; glmm's -2 * loglik).\n"
        "feval: objective evaluations to convergence, ours/lme4/glmm (+N gradient evals)."
    )
    print()
    print_table(results)

    if a.json:
        with open(a.json, "w") as fh:
            json.dump(
                [
                    {k: (v if k != "targets" else [t.label() for t in v]) for k, v in r.items()}
                    for r in results
                ],
                fh,
                indent=1,
            )
    missed = [
        (r["case"], t.label()) for r in results for t in r["targets"] if evaluate(t, r)[1] == "NO"
    ]
    if missed:
        print("\nTargets missed: " + "; ".join(f"{c}: {t}" for c, t in missed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
