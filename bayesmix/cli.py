"""The ``bayesmix`` command line: ``bayesmix demo``, ``bayesmix fit`` and ``bayesmix design``.

``bayesmix --help`` imports nothing but argparse: each subcommand's arguments (which need the
families' and the sampler's defaults) are added when that subcommand is parsed or its help is
asked for, and the modelling stack is imported when a command runs.
"""

from __future__ import annotations

import argparse
import functools
import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .errors import BayesmixError

if TYPE_CHECKING:
    from .model import Model

DEMO_FORMULA = "na ~ perform_type + (perform_type | id)"


class _UsageError(Exception):
    """A command-line argument that argparse rejected; reported as one line."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose arguments ``arguments(parser)`` adds when it is first used."""

    def __init__(self, *args, arguments: Callable[[argparse.ArgumentParser], None] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self._pending = arguments

    def _add_pending(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending(self)

    def parse_known_args(self, args=None, namespace=None):
        self._add_pending()
        return super().parse_known_args(args, namespace)

    def format_usage(self) -> str:
        self._add_pending()
        return super().format_usage()

    def format_help(self) -> str:
        self._add_pending()
        return super().format_help()

    def error(self, message: str):
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid int value: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


@functools.cache
def _nuts_defaults() -> dict:
    """The sampler's own defaults (one home: SamplerSettings); --out has none."""
    from .bayes.sampling import SamplerSettings

    return {"draws": SamplerSettings.draws, "chains": SamplerSettings.chains, "seed": SamplerSettings.seed, "out": None}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``bayesmix`` command and its subcommands."""
    parser = _Parser(prog="bayesmix", description="Mixed-effects models with lme4 formulas, fitted by REML or NUTS.")
    parser.add_argument("--version", action="version", version=f"bayesmix {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="{demo,fit,design}", parser_class=_Parser)
    commands.add_parser(
        "demo",
        arguments=_demo_arguments,
        help="REML and Bayesian fits of simulated music-anxiety data, side by side",
        description="Simulate diaries with the music study's design, fit "
        f"'{DEMO_FORMULA}' by REML and by NUTS, and print both beside the simulation's true values.",
    )
    commands.add_parser(
        "fit",
        arguments=_fit_arguments,
        help="fit FORMULA to a CSV file and print the summary",
        description="Fit an lme4-style formula to a CSV file by REML (default), ML or NUTS and print the summary.",
        epilog="example: bayesmix fit 'na ~ perform_type + (perform_type | id)' --data musicdata.csv --method nuts",
    )
    commands.add_parser(
        "design",
        arguments=_design_arguments,
        help="print the parsed design of FORMULA on a CSV file",
        description="Parse FORMULA, build its design on a CSV file and print it (no fitting).",
    )
    return parser


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    demo.add_argument("--seed", type=int, default=0, help="seed of the simulated data and the sampler (default 0)")
    demo.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")


def _fit_arguments(fit: argparse.ArgumentParser) -> None:
    defaults = _nuts_defaults()
    fit.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    fit.add_argument("--data", required=True,
                     help="CSV file with the formula's columns, or a Parquet file, directory or glob (read with dask)")
    fit.add_argument("--method", choices=["reml", "ml", "nuts"],
                     help="REML, ML or NUTS (default: reml for the gaussian family, ml for the others)")
    _model_arguments(fit)
    fit.add_argument("--nagq", type=_positive_int, default=1,
                     help="quadrature points per group for --method ml of a GLMM with one scalar random-effect term "
                          "(default 1: the Laplace approximation)")
    fit.add_argument("--draws", type=_positive_int, default=defaults["draws"],
                     help=f"NUTS draws per chain (default {defaults['draws']})")
    fit.add_argument("--chains", type=_positive_int, default=defaults["chains"],
                     help=f"NUTS chains (default {defaults['chains']})")
    fit.add_argument("--seed", type=int, default=None, help="NUTS seed")
    fit.add_argument("--out", help="save the NUTS posterior to this netCDF file")
    fit.add_argument("--no-progress", action="store_true", help="hide the sampler's progress bar")


def _design_arguments(design: argparse.ArgumentParser) -> None:
    design.add_argument("formula", help="lme4-style formula, e.g. 'y ~ x + (x | g)'")
    design.add_argument("--data", required=True,
                        help="CSV file with the formula's columns, or a Parquet file, directory or glob (read with dask)")
    _model_arguments(design)


def _model_arguments(command: argparse.ArgumentParser) -> None:
    """The response family, its link, prior weights and an offset, as ``bm.Model`` takes them."""
    from .families import FAMILY_NAMES

    command.add_argument("--family", choices=list(FAMILY_NAMES), default="gaussian",
                         help="response family (default gaussian); binomial responses as cbind(successes, failures)")
    command.add_argument("--link", help="the family's link, e.g. probit for binomial (default: the family's first)")
    command.add_argument("--weights", metavar="COLUMN", help="column of prior weights (binomial: trials of a proportion)")
    command.add_argument("--offset", metavar="COLUMN", help="column added to the linear predictor")


def _model(args: argparse.Namespace) -> Model:
    from .families import FAMILY_NAMES
    from .model import Model

    kind = FAMILY_NAMES[args.family]
    family = kind() if args.link is None else kind(link=args.link)
    return Model(args.formula, _read(args.data), family, weights=args.weights, offset=args.offset)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``bayesmix`` command; returns the exit code.

    Errors (bad arguments, unreadable files, a formula or data that cannot be used) are
    printed as ``bayesmix: error: ...`` on stderr with exit code 2; warnings as
    ``bayesmix: warning: ...``.
    """
    try:
        args = build_parser().parse_args(argv)
    except _UsageError as exc:
        print(f"bayesmix: error: {exc}", file=sys.stderr)
        return 2
    except SystemExit as exc:  # --help and --version
        return exc.code if isinstance(exc.code, int) else 0
    if args.command == "fit" and args.method is None:
        args.method = "reml" if args.family == "gaussian" and args.link in (None, "identity") else "ml"
    if args.command == "fit" and args.method == "reml" and args.family != "gaussian":
        print(f"bayesmix: error: the {args.family} family is fitted by maximum likelihood: use --method ml", file=sys.stderr)
        return 2
    if args.command == "fit" and args.method != "nuts":
        ignored = [f"--{name}" for name in ("draws", "chains", "seed", "out") if getattr(args, name) != _nuts_defaults()[name]]
        if ignored:
            verb = "apply" if len(ignored) > 1 else "applies"
            print(f"bayesmix: error: {', '.join(ignored)} {verb} only to --method nuts", file=sys.stderr)
            return 2
    if args.command == "fit" and args.nagq != 1 and args.method != "ml":
        print("bayesmix: error: --nagq applies only to --method ml", file=sys.stderr)
        return 2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            _run(args)
            code = 0
        except BayesmixError as exc:
            print(f"bayesmix: error: {exc}", file=sys.stderr)
            code = 2
        except OSError as exc:
            print(f"bayesmix: error: {exc}", file=sys.stderr)
            code = 2
    for message in dict.fromkeys(str(w.message) for w in caught):  # each once, in order
        print(f"bayesmix: warning: {message}", file=sys.stderr)
    return code


def _run(args: argparse.Namespace) -> None:
    if args.command == "demo":
        from .compare import compare
        from .datasets import simulate_music
        from .model import Model

        data = simulate_music(seed=args.seed)
        print(f"Simulated music-anxiety data: {len(data)} diaries of {data['id'].nunique()} musicians.\n")
        model = Model(DEMO_FORMULA, data)
        reml = model.fit_reml()
        print(reml.summary())
        post = model.sample(seed=args.seed, progressbar=not args.no_progress)
        print(f"\nPosterior ({post.method}; {post.settings.chains} chains x {post.settings.draws} draws, "
              f"compiled in {post.compile_seconds:.1f} s, sampled in {post.sampling_seconds:.1f} s):")
        print(post.summary().round(3).to_string())
        print("\nThe simulation's true values beside the REML estimates and the posterior:")
        table = compare(reml, post)
        table.insert(0, "truth", _music_truth(model))
        print(table.round(3).to_string())
    elif args.command == "fit":
        model = _model(args)
        if args.method == "nuts":
            if args.out and not Path(args.out).resolve().parent.is_dir():
                raise BayesmixError(f"cannot write {args.out!r}: its directory does not exist")
            post = model.sample(draws=args.draws, chains=args.chains, seed=args.seed, progressbar=not args.no_progress)
            print(f"Posterior of {args.formula}: {post.settings.chains} chains x {post.settings.draws} draws, "
                  f"sampled in {post.sampling_seconds:.1f} s\nsampler: {post.method}\n")
            print(post.summary().round(4).to_string())
            if args.out:
                post.to_netcdf(args.out)  # path problems raise ArgumentError, a BayesmixError
                print(f"\nposterior saved to {args.out}")
        elif args.method == "reml":
            print(model.fit_reml().summary())
        else:
            print(model.fit_ml(args.nagq).summary())
    else:
        print(_model(args).design)


def _music_truth(model: Model):
    """The parameters ``simulate_music`` draws from (its defaults), named as the summaries name them."""
    import pandas as pd

    from .datasets import MUSIC_REML
    from .tables import parameter_name

    (term,) = model.design.terms
    columns, q = term.columns, term.q
    truth = dict(zip(model.design.fixed_names, MUSIC_REML["beta"]))
    truth |= {parameter_name("sd", (c,), term.group, False): v for c, v in zip(columns, MUSIC_REML["sd"])}
    truth |= {parameter_name("cor", (columns[i], columns[j]), term.group, False): MUSIC_REML["corr"][i][j]
              for i in range(q) for j in range(i + 1, q)}
    truth["sigma"] = MUSIC_REML["sigma"]
    return pd.Series(truth)


def _read(path: str):
    """A CSV file as a DataFrame; a Parquet dataset as its path (Model reads it with dask, one pass)."""
    import pandas as pd

    from .data.dask_data import is_parquet_path

    if is_parquet_path(path):
        return path
    try:
        return pd.read_csv(path)
    except (OSError, ValueError) as exc:  # missing, unreadable, empty, not a CSV
        raise BayesmixError(f"cannot read {path!r}: {' '.join(str(exc).split())}") from None


if __name__ == "__main__":
    sys.exit(main())
