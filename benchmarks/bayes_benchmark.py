"""Bayesian fits of the music model: bayesmix (collapsed and full) against bambi, in the same process.

Wall time includes everything from the formula to the posterior: building the model,
compiling it and sampling 4 chains x 1000 draws (1000 tuning steps). Efficiency is the
minimum bulk ESS over the fixed effects, random-effect SDs and residual SD (and, for
bayesmix, the correlations: bambi cannot estimate them), divided by that wall time.

    .venv/bin/python -m pip install bambi
    .venv/bin/python benchmarks/bayes_benchmark.py [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import arviz as az
import pandas as pd
import xarray as xr

import bayesmix as bm

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
FORMULA = "na ~ perform_type + (perform_type | id)"


def min_bulk_ess(dataset: xr.Dataset) -> float:
    return float(az.summary(xr.DataTree.from_dict({"posterior": dataset}), kind="diagnostics", round_to="none")["ess_bulk"].min())


def run_bayesmix(music: pd.DataFrame, seed: int, **options) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        post = bm.Model(FORMULA, music).sample(draws=1000, tune=1000, chains=4, seed=seed, progressbar=False, **options)
        wall = time.perf_counter() - start
    d = post.diagnostics()
    return {"wall": wall, "ess": d["min_ess_bulk"], "divergences": d["divergences"], "rhat": d["max_rhat"],
            "sampling": post.sampling_seconds, "compile": post.compile_seconds}


def run_bambi(music: pd.DataFrame, seed: int) -> dict:
    import bambi as bmb

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        model = bmb.Model(FORMULA, music)
        idata = model.fit(draws=1000, tune=1000, chains=4, random_seed=seed, progressbar=False)
        wall = time.perf_counter() - start
    posterior = idata["posterior"].to_dataset()
    keep = [v for v in posterior.data_vars if "|" not in str(v) or str(v).endswith("_sigma")]
    stats = idata["sample_stats"].to_dataset()
    return {"wall": wall, "ess": min_bulk_ess(posterior[keep]), "divergences": int(stats["diverging"].sum()),
            "rhat": float(az.summary(xr.DataTree.from_dict({"posterior": posterior[keep]}), kind="diagnostics",
                                     round_to="none")["r_hat"].max()), "sampling": float("nan"), "compile": float("nan")}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    music = pd.read_csv(SHARED / "musicdata.csv")
    import bambi
    import nutpie
    import pymc

    print(f"date: {time.strftime('%Y-%m-%d')}; {platform.machine()}, Python {sys.version.split()[0]}; "
          f"pymc {pymc.__version__}, nutpie {nutpie.__version__}, bambi {bambi.__version__}, bayesmix {bm.__version__}")
    print()
    print("| run | seed | wall s (all in) | compile s | sampling s | min bulk ESS | ESS/s | divergences | max R-hat |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    rows = []
    for seed in args.seeds:
        for label, runner in [("bayesmix collapsed (default; estimates rho)", lambda s: run_bayesmix(music, s)),
                              ("bayesmix full non-centred (estimates rho)", lambda s: run_bayesmix(music, s, method="full")),
                              ("bambi 0.21 (no rho)", lambda s: run_bambi(music, s))]:
            r = runner(seed)
            rows.append((label, r["ess"] / r["wall"]))
            print(f"| {label} | {seed} | {r['wall']:.1f} | {r['compile']:.1f} | {r['sampling']:.1f} | {r['ess']:.0f} | "
                  f"{r['ess'] / r['wall']:.1f} | {r['divergences']} | {r['rhat']:.3f} |")
            sys.stdout.flush()
    table = pd.DataFrame(rows, columns=["run", "ess_per_s"]).groupby("run")["ess_per_s"].median()
    print()
    print("median ESS/s: " + "; ".join(f"{k}: {v:.1f}" for k, v in table.items()))


if __name__ == "__main__":
    main()
