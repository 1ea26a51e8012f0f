"""Benchmark: a fit of Parquet data larger than memory, against one pyarrow read of it.

Writes (once, seeded) a Parquet dataset of ``--rows`` rows for
``y ~ 1 + x + (1 | g1) + (1 | g2)`` (g1 and g2 with ``--levels`` levels; 50,000,000 rows and
100,000 x 1,000 levels are about 1.2 GB, issue 12's case), then in fresh subprocesses:

- ``read``: one pyarrow pass over the same columns (the physical limit of an exact fit): the
  faster of a read file by file (as the fit reads) and pyarrow's scan of the whole dataset;
- ``fit``: ``mm.lmer(formula, path, reml=False)`` (two passes: levels, then cross-products);
- ``dask``: the same on a Dask local cluster of ``--dask-workers`` workers (``--dask``).

Each prints its wall time and the peak resident memory of its process (VmHWM); the ratio
fit / read is the issue's target (at most 1.5x, peak memory under 2 GiB).

    python benches/bench_out_of_core.py --rows 5000000 --dir /tmp/ooc5m
    python benches/bench_out_of_core.py --dask          # 50M rows, about 1.2 GB on disk
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

FORMULA = "y ~ 1 + x + (1 | g1) + (1 | g2)"


def write(path: str, rows: int, levels: tuple[int, int], seed: int = 12) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    os.makedirs(path, exist_ok=True)
    rng = np.random.default_rng(seed)
    b1 = rng.normal(0.0, 1.0, levels[0])
    b2 = rng.normal(0.0, 0.5, levels[1])
    per_file = 5_000_000
    for i, start in enumerate(range(0, rows, per_file)):
        n = min(per_file, rows - start)
        g1 = rng.integers(0, levels[0], n, dtype=np.int32)
        g2 = rng.integers(0, levels[1], n, dtype=np.int32)
        x = rng.standard_normal(n)
        y = 1.0 + 0.5 * x + b1[g1] + b2[g2] + rng.standard_normal(n)
        table = pa.table({"y": y, "x": x, "g1": g1, "g2": g2})
        pq.write_table(table, os.path.join(path, f"part-{i:04d}.parquet"), row_group_size=1 << 20)


def peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def child(kind: str, path: str, workers: int) -> None:
    t0 = time.perf_counter()
    if kind == "read":
        import pyarrow.dataset as ds

        # the faster of pyarrow's two ways (file by file, as the fit reads; the whole
        # dataset's scan, its default), so the ratio is against the fastest read
        cols, total = ["y", "x", "g1", "g2"], 0
        dataset = ds.dataset(path)
        for fragment in dataset.get_fragments():
            for batch in fragment.to_batches(columns=cols, batch_size=1 << 20):
                total += batch.num_rows
        t_files = time.perf_counter() - t0
        t1 = time.perf_counter()
        for batch in dataset.to_batches(columns=cols, batch_size=1 << 20):
            total -= batch.num_rows
        t_scan = time.perf_counter() - t1
        assert total == 0
        out = {"seconds": min(t_files, t_scan), "by_file": t_files, "scan": t_scan}
        out.update(peak_rss=peak_rss())
        print(json.dumps(out))
        return
    elif kind == "fit":
        import mixedmodels as mm

        fit = mm.lmer(FORMULA, os.path.join(path, "*.parquet"), reml=False)
        out = {"objective": fit.objective, "theta": fit.theta.tolist(), "feval": fit.optsum.feval}
    else:
        import dask.dataframe as dd
        from distributed import Client, LocalCluster

        import mixedmodels as mm

        with (
            LocalCluster(
                n_workers=workers, threads_per_worker=1, dashboard_address=":0"
            ) as cluster,
            Client(cluster),
        ):
            ddf = dd.read_parquet(path, columns=["y", "x", "g1", "g2"])
            fit = mm.lmer(FORMULA, ddf, reml=False)
        out = {"objective": fit.objective, "theta": fit.theta.tolist()}
    out.update(seconds=time.perf_counter() - t0, peak_rss=peak_rss())
    print(json.dumps(out))


def run(kind: str, path: str, workers: int) -> dict:
    cmd = [sys.executable, __file__, "--child", kind, "--dir", path, "--dask-workers", str(workers)]
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--levels", default="100000,1000")
    ap.add_argument("--dir", default="/tmp/mixedmodels-ooc")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--dask", action="store_true")
    ap.add_argument("--dask-workers", type=int, default=2)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.dir, args.dask_workers)
        return
    if not os.path.isdir(args.dir) or not os.listdir(args.dir):
        lv = tuple(int(v) for v in args.levels.split(","))
        print(f"writing {args.rows:,} rows to {args.dir} ...", flush=True)
        write(args.dir, args.rows, (lv[0], lv[1]))
    kinds = ["read", "fit"] + (["dask"] if args.dask else [])
    results = {k: [run(k, args.dir, args.dask_workers) for _ in range(args.reps)] for k in kinds}
    med = {k: float(np.median([r["seconds"] for r in v])) for k, v in results.items()}
    rss = {k: max(r["peak_rss"] for r in v) / 2**30 for k, v in results.items()}
    for k in kinds:
        ratio = med[k] / med["read"]
        print(
            f"{k:5} {med[k]:8.2f} s (median of {args.reps})  x{ratio:5.2f} of one read  "
            f"peak RSS {rss[k]:.2f} GiB"
        )
    fit = results["fit"][0]
    print(f"objective {fit['objective']:.6f}, theta {fit['theta']}, evaluations {fit['feval']}")


if __name__ == "__main__":
    main()
