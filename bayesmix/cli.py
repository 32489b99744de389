"""The ``bayesmix`` command line: ``bayesmix demo``, ``bayesmix fit`` and ``bayesmix design``."""

from __future__ import annotations

import argparse
import sys
import warnings

import pandas as pd

from .compare import compare
from .datasets import simulate_music
from .design import make_design
from .errors import BayesmixError
from .model import Model
from .reml import fit_reml

DEMO_FORMULA = "na ~ perform_type + (perform_type | id)"


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmix`` command; returns the exit code."""
    parser = argparse.ArgumentParser(prog="bayesmix", description="Mixed-effects models with lme4 formulas.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="REML and Bayesian fits of simulated music-anxiety data, side by side")
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data and the sampler (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")
    fit = commands.add_parser("fit", help="fit FORMULA to a CSV file and print the summary")
    fit.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    fit.add_argument("--data", required=True, help="CSV file with the formula's columns")
    fit.add_argument("--method", choices=["reml", "ml", "nuts"], default="reml", help="REML, ML or NUTS (default reml)")
    fit.add_argument("--draws", type=int, default=1000, help="NUTS draws per chain (default 1000)")
    fit.add_argument("--chains", type=int, default=4, help="NUTS chains (default 4)")
    fit.add_argument("--seed", type=int, default=None, help="NUTS seed")
    fit.add_argument("--out", help="save the NUTS posterior to this netCDF file")
    fit.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")
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
        model = Model(DEMO_FORMULA, data)
        reml = model.fit_reml()
        print(reml.summary())
        post = model.sample(seed=args.seed, progressbar=not args.no_progress)
        print(f"\nPosterior ({post.method}; {post.settings.chains} chains x {post.settings.draws} draws, "
              f"compiled in {post.compile_seconds:.1f} s, sampled in {post.sampling_seconds:.1f} s):")
        print(post.summary().round(3).to_string())
        print("\nREML estimates beside the posterior:")
        print(compare(reml, post).round(3).to_string())
    elif args.command == "fit":
        model = Model(args.formula, _read_csv(args.data))
        if args.method == "nuts":
            post = model.sample(draws=args.draws, chains=args.chains, seed=args.seed, progressbar=not args.no_progress)
            print(post.summary().round(4).to_string())
            if args.out:
                post.to_netcdf(args.out)
                print(f"\nposterior saved to {args.out}")
        else:
            print(fit_reml(model.design, reml=args.method == "reml").summary())
    else:
        print(make_design(args.formula, _read_csv(args.data)))


def _read_csv(path: str) -> pd.DataFrame:
    try:
        return pd.read_csv(path)
    except (OSError, pd.errors.ParserError) as exc:
        raise BayesmixError(f"cannot read {path!r}: {exc}") from None


if __name__ == "__main__":
    sys.exit(main())
