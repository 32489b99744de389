"""Simulation-based calibration (Talts et al. 2018) of the Bayesian sampler on a small model.

Each replication draws parameters from the prior, simulates data from them, samples the
posterior and records the rank of each true parameter among thinned posterior draws. When
the sampler is calibrated the ranks are uniform; a chi-square test over 10 bins per parameter
checks that. Run from the repository root:

    .venv/bin/python benchmarks/sbc.py [--replications 200] [--method full|collapsed]

Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd
from scipy import stats

import bayesmix as bm
from bayesmix.bayes import BayesModel

GROUPS, PER_GROUP, ETA = 20, 6, 2.0
PRIORS = [
    bm.prior("Intercept", bm.Normal(0, 1)),
    bm.prior("b", bm.Normal(0, 1)),
    bm.prior("sd", bm.HalfNormal(1)),
    bm.prior("cor", bm.LKJ(ETA)),
    bm.prior("sigma", bm.HalfNormal(1)),
]
PARAMETERS = ["Intercept", "x", "sd(Intercept)", "sd(x)", "cor(Intercept, x)", "sigma"]


def draw_from_prior(rng: np.random.Generator, x: np.ndarray, g: np.ndarray) -> tuple[dict, np.ndarray]:
    """Parameters from exactly the priors above, and a response simulated from them."""
    centred_intercept, slope = rng.normal(0, 1, 2)
    intercept = centred_intercept - slope * x.mean()  # the Intercept prior is on centred predictors
    sd = np.abs(rng.normal(0, 1, 2))
    rho = 2 * rng.beta(ETA, ETA) - 1  # LKJ(eta) for a 2 x 2 correlation matrix
    sigma = abs(rng.normal(0, 1))
    cov = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    u = rng.multivariate_normal(np.zeros(2), cov, size=GROUPS, method="eigh")
    y = intercept + slope * x + u[g, 0] + u[g, 1] * x + rng.normal(0, sigma, len(x))
    truth = dict(zip(PARAMETERS, [intercept, slope, sd[0], sd[1], rho, sigma]))
    return truth, y


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--method", choices=["full", "collapsed"], default="full")
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    g = np.repeat(np.arange(GROUPS), PER_GROUP)
    x = rng.normal(size=len(g))
    _, y0 = draw_from_prior(rng, x, g)
    design = bm.make_design("y ~ x + (x | g)", pd.DataFrame({"y": y0, "x": x, "g": g}))
    model = BayesModel(design, PRIORS, method=args.method)
    ranks, divergent = {p: [] for p in PARAMETERS}, 0
    start = time.perf_counter()
    for r in range(args.replications):
        truth, y = draw_from_prior(rng, x, g)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(y=y, draws=1000, tune=1000, chains=2, seed=r, progressbar=False, target_accept=0.95)
        divergent += post.diagnostics()["divergences"] > 0
        draws = post._parameters
        for p in PARAMETERS:
            thinned = draws[p].values.ravel()[::20][:99]  # 99 draws, thinned against autocorrelation: ranks 0..99
            ranks[p].append(int((thinned < truth[p]).sum()))
    seconds = time.perf_counter() - start
    print(f"SBC, {model.description}: {args.replications} replications, {GROUPS} groups x {PER_GROUP} rows, "
          f"2 chains x 1000 draws thinned to 99, {seconds:.0f} s; replications with divergences: {divergent}")
    print()
    print("| parameter | chi-square (9 df) | p-value |")
    print("| --- | --- | --- |")
    for p in PARAMETERS:
        counts = np.bincount(np.minimum(np.asarray(ranks[p]) // 10, 9), minlength=10)
        statistic, p_value = stats.chisquare(counts)
        print(f"| {p} | {statistic:.1f} | {p_value:.3f} |")


if __name__ == "__main__":
    main()
