"""10,000,000 rows in 20 Parquet files through a dask LocalCluster: REML and the collapsed sampler.

    .venv/bin/python -m pip install -e '.[dask]'
    .venv/bin/python benchmarks/dask_benchmark.py [--dir /tmp/bayesmix-parquet] [--rows 10000000]

The files are written first, by a child process, so that the client's peak memory measures
the fit alone: ``y ~ x1 + x2 + (x1 + x2 | g)`` with 10,000 groups (correlated intercept and
two slopes). The client (this process) starts a LocalCluster with 2 worker processes; the
workers read the files and compute the per-group sufficient statistics, and only those reach
the client. Prints Markdown for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FORMULA = "y ~ x1 + x2 + (x1 + x2 | g)"
FILES, GROUPS = 20, 10_000
BETA, SIGMA = np.array([2.0, 0.5, -0.3]), 1.0
SD, CORR = np.array([1.0, 0.5, 0.3]), np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])


def write(directory: Path, rows: int, seed: int = 3) -> None:
    """The data set, one file at a time (each holds rows of every group)."""
    rng = np.random.default_rng(seed)
    cov = SD[:, None] * CORR * SD[None, :]
    u = rng.multivariate_normal(np.zeros(3), cov, size=GROUPS)
    directory.mkdir(parents=True, exist_ok=True)
    for k in range(FILES):
        n = rows // FILES
        g = rng.integers(0, GROUPS, n)
        x1, x2 = rng.normal(size=n), rng.normal(size=n)
        y = BETA[0] + BETA[1] * x1 + BETA[2] * x2 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + rng.normal(0, SIGMA, n)
        pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g}).to_parquet(directory / f"part-{k:02d}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, default=Path("/tmp/bayesmix-parquet"))
    parser.add_argument("--rows", type=int, default=10_000_000)
    args = parser.parse_args()
    if len(list(args.dir.glob("*.parquet"))) != FILES:
        child = multiprocessing.get_context("spawn").Process(target=write, args=(args.dir, args.rows))
        start = time.perf_counter()
        child.start()
        child.join()
        print(f"wrote {args.rows:,} rows in {FILES} files in {time.perf_counter() - start:.0f} s")

    import dask
    import nutpie
    import pymc
    from dask.distributed import Client, LocalCluster

    import bayesmix as bm

    print(f"date: {time.strftime('%Y-%m-%d')}; {platform.machine()}, Python {sys.version.split()[0]}; "
          f"dask {dask.__version__}, pymc {pymc.__version__}, nutpie {nutpie.__version__}")
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster):
        start = time.perf_counter()
        model = bm.Model(FORMULA, str(args.dir))
        statistics = time.perf_counter() - start
        start = time.perf_counter()
        reml = model.fit_reml()
        reml_seconds = time.perf_counter() - start
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(draws=1000, tune=1000, chains=4, seed=1, progressbar=False)
        sampling = time.perf_counter() - start
        d = post.diagnostics()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(f"\n{model.design.n:,} rows, {model.design.groups['g']:,} groups, {FILES} Parquet files, "
          "LocalCluster with 2 worker processes\n")
    print("| step | wall s |")
    print("| --- | --- |")
    print(f"| sufficient statistics (pre-pass for levels + one pass over the files) | {statistics:.1f} |")
    print(f"| REML fit from the statistics | {reml_seconds:.2f} |")
    print(f"| collapsed NUTS, 4 chains x 1000 draws, and exact effect draws | {sampling:.1f} |")
    print(f"| total | {statistics + reml_seconds + sampling:.1f} |")
    print(f"\nclient peak resident memory: {peak:.2f} GB; posterior: min bulk ESS {d['min_ess_bulk']:.0f}, "
          f"max R-hat {d['max_rhat']:.3f}, {d['divergences']} divergences")
    print(f"REML β {np.round(reml.fixef().to_numpy(), 4)} (truth {BETA}); σ {reml.sigma:.4f} (truth {SIGMA}); "
          f"posterior mean β {np.round(post.fixef()['mean'].to_numpy(), 4)}")


if __name__ == "__main__":
    main()
