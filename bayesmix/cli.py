"""The ``bayesmix`` command line: ``bayesmix demo`` and ``bayesmix design``."""

from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd

from .datasets import simulate_music
from .design import make_design
from .errors import BayesmixError

DEMO_FORMULA = "na ~ perform_type + (perform_type | id)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmix`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="bayesmix", description="Mixed-effects models with lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="run the main job on simulated music-anxiety data")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data (default 0)")
    design = commands.add_parser("design", help="print the parsed design of FORMULA on a CSV file")
    design.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    design.add_argument("--data", required=True, help="CSV file with the formula's columns")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            if args.command == "demo":
                data = simulate_music(seed=args.seed)
                print(f"Simulated music-anxiety data: {len(data)} diaries of {data['id'].nunique()} musicians.\n")
                print(make_design(DEMO_FORMULA, data))
            else:
                print(make_design(args.formula, _read_csv(args.data)))
    except BayesmixError as exc:
        print(f"bayesmix: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise BayesmixError(f"cannot read {path!r}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
