"""The collapsed sampler at scale, against the full non-centred model in the same process.

    .venv/bin/python benchmarks/collapsed_benchmark.py gradient     # (d) gradient time vs rows
    .venv/bin/python benchmarks/collapsed_benchmark.py medium       # (b) 100,000 rows, 2,000 groups
    .venv/bin/python benchmarks/collapsed_benchmark.py large        # (c) 1,000,000 rows, 10,000 groups

Each prints Markdown for benchmarks/RESULTS.md. The model is ``y ~ x1 + x2 + (x1 + x2 | g)``
(correlated intercept and two slopes). Wall times include building, compiling and sampling;
ESS is the minimum bulk ESS over β, the SDs, the correlations and σ. The collapsed model's
log density is numba code cached on disk (compiled once per installation, about 20 s, before
these runs), so its "compile" time is zero.
"""

from __future__ import annotations

import resource
import sys
import time
import warnings

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.bayes import BayesModel
from reml_benchmark import simulate_large
from bayesmix.bayes import density
from bayesmix.data.layout import group_layouts, term_labels
from bayesmix.linalg.collapsed import collapsed_loglik
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.crossprod import cross_products
from bayesmix.data.layout import structure_of

FORMULA = "y ~ x1 + x2 + (x1 + x2 | g)"


def simulate(n: int, groups: int, seed: int = 3) -> pd.DataFrame:
    return simulate_large(seed=seed, n=n, groups=groups)


def run(design, method: str, draws: int = 1000) -> dict:
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = BayesModel(design, method=method).sample(draws=draws, tune=1000, chains=4, seed=1, progressbar=False)
    wall = time.perf_counter() - start
    d = post.diagnostics()
    return {"wall": wall, "compile": post.compile_seconds, "sampling": post.sampling_seconds, **d,
            "ess_per_s": d["min_ess_bulk"] / wall}


def row(label: str, r: dict) -> str:
    return (f"| {label} | {r['wall']:.1f} | {r['compile']:.1f} | {r['sampling']:.1f} | {r['min_ess_bulk']:.0f} | "
            f"{r['ess_per_s']:.2f} | {r['divergences']} | {r['max_rhat']:.3f} |")


HEADER = ("| run | wall s | compile s | sampling s | min bulk ESS | ESS/s | divergences | max R-hat |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- |")


def medium():
    design = bm.make_design(FORMULA, simulate(100_000, 2_000))
    print("(b) 100,000 rows, 2,000 groups, 4 chains x 1000 draws\n")
    print(HEADER)
    collapsed = run(design, "collapsed")
    print(row("collapsed", collapsed))
    sys.stdout.flush()
    full = run(design, "full")
    print(row("full non-centred", full))
    print(f"\nESS/s ratio collapsed / full: {collapsed['ess_per_s'] / full['ess_per_s']:.1f}x")


def large():
    start = time.perf_counter()
    design = bm.make_design(FORMULA, simulate(1_000_000, 10_000))
    build = time.perf_counter() - start
    print(f"(c) 1,000,000 rows, 10,000 groups, 4 chains x 1000 draws (design built in {build:.1f} s)\n")
    print(HEADER)
    r = run(design, "collapsed")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(row("collapsed", r))
    print(f"\nwall including the design: {r['wall'] + build:.1f} s; peak resident memory of the process: {peak:.2f} GB")


def gradient():
    print("(d) one evaluation of the log-likelihood and its gradient, 1,000 groups, q = 3\n")
    print("| rows | collapsed likelihood kernel | collapsed log posterior (as nutpie calls it) | full model (compiled PyMC logp + gradient) |")
    print("| --- | --- | --- | --- |")
    for n in (10**4, 10**5, 10**6, 10**7):
        design = bm.make_design(FORMULA, simulate(n, 1_000))
        structure = structure_of(design)
        cp = cross_products(structure, design.X, design.y)
        beta, C, sigma = np.array([2.0, 0.5, -0.3]), np.diag([1.0, 0.5, 0.3]), 1.0
        collapsed_loglik(beta, C, sigma, cp.A11, cp.A1X, cp.AXX, float(n), True)
        reps = 200
        start = time.perf_counter()
        for _ in range(reps):
            collapsed_loglik(beta, C, sigma, cp.A11, cp.A1X, cp.AXX, float(n), True)
        collapsed_us = (time.perf_counter() - start) / reps * 1e6
        labels, layouts = term_labels(design), group_layouts(design)
        blob, _, n_dim = density.pack(design, cp, resolve_priors(design, labels), labels, layouts[0])
        x = np.zeros(n_dim)
        density.log_density(blob, x)
        start = time.perf_counter()
        for _ in range(reps):
            density.log_density(blob, x)
        posterior_us = (time.perf_counter() - start) / reps * 1e6
        model = BayesModel(design, method="full").pymc_model
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dlogp = model.compile_logp(jacobian=True), model.compile_dlogp(jacobian=True)
        point = model.initial_point()
        dlogp[1](point)
        reps_full = 5 if n >= 10**6 else 50
        start = time.perf_counter()
        for _ in range(reps_full):
            dlogp[1](point)
        full_us = (time.perf_counter() - start) / reps_full * 1e6
        print(f"| {n:,} | {collapsed_us:.0f} µs | {posterior_us:.0f} µs | {full_us:,.0f} µs |")
        sys.stdout.flush()
        del design, model


if __name__ == "__main__":
    {"medium": medium, "large": large, "gradient": gradient}[sys.argv[1]]()
