"""Coverage of the profile and parametric-bootstrap intervals over repeated simulated data sets.

The truth is the sleepstudy REML fit of ``Reaction ~ Days + (Days | Subject)`` (18 subjects,
10 days each). Each replication simulates a response from it (new random effects), refits,
and computes 95% profile and bootstrap percentile intervals; the table gives, per parameter,
the fraction of intervals that cover the true value, with its binomial standard error
√(0.95 · 0.05 / R). Run from the project root:

    PYTHONPATH=. python benchmarks/coverage_study.py [--replications 200] [--nsim 200]

and copy the printed table into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.reml.parameters import parameter_estimates

SLEEP = Path(__file__).resolve().parents[2] / "shared" / "data" / "sleepstudy.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--nsim", type=int, default=200, help="bootstrap refits per replication")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    truth_fit = bm.Model("Reaction ~ Days + (Days | Subject)", pd.read_csv(SLEEP)).fit_reml()
    truth = parameter_estimates(truth_fit)
    responses = truth_fit.simulate(args.replications, seed=2026)
    covered = {"profile": [], "bootstrap": []}
    start = time.perf_counter()
    for k, column in enumerate(responses.columns):
        fit = truth_fit.refit(responses[column])
        for method in covered:
            ci = fit.confint(method, nsim=args.nsim, seed=k, n_jobs=2)
            covered[method].append((ci["lower"] <= truth) & (truth <= ci["upper"]))
    seconds = time.perf_counter() - start
    se = np.sqrt(0.95 * 0.05 / args.replications)
    table = pd.DataFrame({method: pd.concat(rows, axis=1).mean(axis=1) for method, rows in covered.items()})
    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()}, {os.cpu_count()} cores; {args.replications} replications, "
          f"{args.nsim} bootstrap refits each; {seconds:.0f} s. Binomial SE of a coverage of 0.95: {se:.4f}.\n")
    print("| parameter | truth | profile coverage | bootstrap coverage |")
    print("| --- | --- | --- | --- |")
    for name, row in table.iterrows():
        print(f"| {name} | {truth[name]:.4g} | {row['profile']:.3f} | {row['bootstrap']:.3f} |")


if __name__ == "__main__":
    main()
