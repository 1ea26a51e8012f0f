"""Copy lme4's reference results and data sets into the project.

Run from the repository root with the shared reference folder beside it:

    python scripts/import_reference.py ../shared/reference

It writes
- python/mixedmodels/datasets/data/<name>.csv.gz: the data, as R wrote it (the
  linear and the generalized cases' data sets);
- python/mixedmodels/datasets/data/datasets.json: per data set, which columns
  are factors (R's write.csv quotes them) and their level order (lme4's, where
  the reference gives it; otherwise R's default: sorted, numerically when
  every label is an integer);
- tests/reference/cases/*.json and tests/reference/inference/*.json.

The reference values themselves come from scripts/make_reference.R (lme4).
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import sys
from pathlib import Path

FIELD = re.compile(r'(?:^|,)("(?:[^"]|"")*"|[^,]*)')


def quoted_columns(path: Path) -> tuple[list[str], set[str]]:
    lines = path.read_text().splitlines()
    header = [h.strip('"') for h in lines[0].split(",")]
    quoted: set[str] = set()
    for line in lines[1:]:
        fields = FIELD.findall(line)
        for name, field in zip(header, fields, strict=True):
            if field.startswith('"'):
                quoted.add(name)
    return header, quoted


def default_levels(values: set[str]) -> list[str]:
    if all(re.fullmatch(r"-?\d+", v) for v in values):
        return sorted(values, key=int)
    return sorted(values)


def main(ref: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    data_out = root / "python" / "mixedmodels" / "datasets" / "data"
    data_out.mkdir(parents=True, exist_ok=True)
    levels_from_cases: dict[str, dict[str, list[str]]] = {}
    for case in sorted([*(ref / "cases").glob("*.json"), *(ref / "glmm").glob("*.json")]):
        d = json.loads(case.read_text())
        name = Path(d["dataset"]).stem
        levels_from_cases.setdefault(name, {}).update(d.get("factor_levels") or {})
    meta = {}
    for csv in sorted((ref / "data").glob("*.csv")):
        name = csv.stem
        header, quoted = quoted_columns(csv)
        import pandas as pd

        given_cols = set(levels_from_cases.get(name, {}))
        df = pd.read_csv(csv, dtype={c: str for c in quoted | given_cols}, keep_default_na=True)
        factors = {}
        for col in header:
            given = levels_from_cases.get(name, {}).get(col)
            if col not in quoted and given is None:  # factors: quoted, or levels given
                continue
            present = set(df[col].dropna().unique())
            factors[col] = given if given is not None else default_levels(present)
            missing = present - set(factors[col])
            if missing:
                raise SystemExit(
                    f"{name}.{col}: levels {sorted(missing)[:5]} not in the reference order"
                )
        meta[name] = {"file": f"{name}.csv.gz", "factors": factors}
        with (
            open(csv, "rb") as src,
            gzip.GzipFile(data_out / f"{name}.csv.gz", "wb", mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst)
    (data_out / "datasets.json").write_text(json.dumps(meta, indent=1) + "\n")
    for sub in ("cases", "inference"):
        out = root / "tests" / "reference" / sub
        out.mkdir(parents=True, exist_ok=True)
        for f in sorted((ref / sub).glob("*.json")):
            shutil.copyfile(f, out / f.name)
    print(f"imported {len(meta)} data sets")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference"))
