"""Command line: ``python -m mixedmodels fit FORMULA --data NAME|PATH [--ml | --family F]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from . import datasets
from .exceptions import MixedModelsError
from .glmm import GeneralizedLinearMixedModel
from .model import LinearMixedModel


def _read_data(spec: str) -> tuple[pd.DataFrame, str]:
    path = Path(spec)
    if path.suffix.lower() in (".csv", ".gz") and path.exists():
        return pd.read_csv(path), path.name
    if path.suffix.lower() in (".parquet", ".pq") and path.exists():
        return pd.read_parquet(path), path.name
    if path.exists():
        raise SystemExit(f"error: {spec}: only CSV and Parquet files are supported")
    try:
        return datasets.load(spec), spec
    except KeyError as e:
        raise SystemExit(
            f"error: {spec!r} is neither a file nor an embedded data set ({e.args[0]})"
        ) from None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mixedmodels",
        description="Fit linear mixed-effects models with lme4 formulas.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    fit = sub.add_parser("fit", help="fit a model and print lme4's summary")
    fit.add_argument("formula", help='lme4 formula, e.g. "Reaction ~ Days + (Days | Subject)"')
    fit.add_argument(
        "--data", required=True, help="embedded data set name, or a CSV or Parquet file"
    )
    fit.add_argument("--ml", action="store_true", help="fit by maximum likelihood (default REML)")
    fit.add_argument(
        "--family",
        help="fit a GLMM (lme4's glmer) of this family: binomial, poisson or Gamma",
    )
    fit.add_argument("--link", help="the GLMM's link (default: the family's)")
    fit.add_argument("--nagq", type=int, default=1, help="GLMM: 1 Laplace, 0 fast, up to 25")
    sub.add_parser("datasets", help="list the embedded data sets")
    args = parser.parse_args(argv)
    if args.command == "datasets":
        print("\n".join(datasets.names()))
        return 0
    data, name = _read_data(args.data)
    if args.family is None and (args.link is not None or args.nagq != 1):
        print("error: --link and --nagq are for GLMMs; give --family", file=sys.stderr)
        return 2
    try:
        if args.family is not None:
            glmm = GeneralizedLinearMixedModel.from_formula(
                args.formula,
                data,
                family=args.family,
                link=args.link,
                nagq=args.nagq,
                data_name=name,
            )
            print(glmm.fit().summary(), end="")
            return 0
        model = LinearMixedModel.from_formula(args.formula, data, reml=not args.ml, data_name=name)
        result = model.fit()
    except MixedModelsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.summary(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
