"""The ``bayesmix`` command line: ``bayesmix demo``, ``bayesmix fit`` and ``bayesmix design``."""

from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd

from .datasets import simulate_music
from .design import make_design
from .errors import BayesmixError
from .reml import fit_reml

DEMO_FORMULA = "na ~ perform_type + (perform_type | id)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmix`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="bayesmix", description="Mixed-effects models with lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job on simulated music-anxiety data")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data (default 0)")
    fit = commands.add_parser("fit", help="fit FORMULA to a CSV file and print the summary")
    fit.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    fit.add_argument("--data", required=True, help="CSV file with the formula's columns")
    fit.add_argument("--method", choices=["reml", "ml"], default="reml", help="estimation method (default reml)")
    design = commands.add_parser("design", help="print the parsed design of FORMULA on a CSV file")
    design.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    design.add_argument("--data", required=True, help="CSV file with the formula's columns")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _run(args)
            code = 0
        except BayesmixError as exc:
            print(f"bayesmix: error: {exc}", file=sys.stderr)
            code = 2
    for warning in caught:
        print(f"bayesmix: warning: {warning.message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        data = simulate_music(seed=args.seed)
        print(f"Simulated music-anxiety data: {len(data)} diaries of {data['id'].nunique()} musicians.\n")
        print(fit_reml(make_design(DEMO_FORMULA, data)).summary())
    elif args.command == "fit":
        design = make_design(args.formula, _read_csv(args.data))
        print(fit_reml(design, reml=args.method == "reml").summary())
    else:
        print(make_design(args.formula, _read_csv(args.data)))


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise BayesmixError(f"cannot read {path!r}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
