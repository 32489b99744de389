"""Bayesian GLMMs: bayesmix against bambi (and brms's recorded run), from the formula to the posterior.

Run from the repository root (with ../shared beside it, and bambi installed: the ``bench`` extra):

    .venv/bin/python benchmarks/bayes_glmm_benchmark.py [--quick] [--seeds 1] [--no-large]
    .venv/bin/python benchmarks/bayes_glmm_benchmark.py --no-small --large-caches cold   # the large model once

Prints Markdown tables (paste them into benchmarks/RESULTS.md). Every run samples 4 chains x
1000 draws after 1000 tuning steps in a child process of its own, so that nothing compiled in
one run helps another except through the on-disk caches: each case is run first with empty
caches (fresh ``NUMBA_CACHE_DIR`` and PyTensor ``base_compiledir``: "cold", the first fit after
installation) and then again with the caches that run left ("warm", every later fit). Wall time
is everything from the formula and the DataFrame to the posterior (building, compiling and
sampling; not importing the packages).

- cbpp (binomial, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``) and grouseticks
  (Poisson, ``TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)``),
  from ``../shared/reference/glmm`` with the formulas and families of ``glmm_reference.json``,
  by bayesmix (its default sampler for the design, each package's default priors) and by bambi
  (``p(incidence, size) ~ period + (1|herd)``; grouseticks with the column ``HEIGHT_scaled``,
  R's ``scale(HEIGHT)``, and PyMC's default NUTS). ESS per second is the minimum bulk ESS over
  the parameters both estimate (fixed effects and random-effect SDs) divided by the wall time.
  brms 2.18's recorded cbpp run (``brms_cbpp.json``, the same sampler settings, R on this
  kind of machine) is printed beside them.
- a Bernoulli model ``y ~ x + (x | g)`` with 100,000 rows and 2,000 groups (a correlated
  random intercept and slope), bayesmix only (bambi cannot estimate the correlation), warm
  caches; the goal of issue 14 is under 3 minutes with a bulk ESS of at least 400.
  ``--quick``: 10,000 rows and 200 groups.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "glmm"
SETTINGS = {"draws": 1000, "tune": 1000, "chains": 4}

# case -> (bayesmix formula, bambi formula, family)
CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "p(incidence, size) ~ period + (1|herd)",
             "binomial"),
    "grouseticks": ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)",
                    "TICKS ~ YEAR + HEIGHT_scaled + (1|BROOD) + (1|INDEX) + (1|LOCATION)", "poisson"),
}
LARGE_FORMULA = "y ~ x + (x | g)"


def load(case: str, quick: bool = False):
    import numpy as np
    import pandas as pd

    if case == "cbpp":
        return pd.read_csv(REFERENCE / "cbpp.csv", dtype={"herd": str, "period": str})
    if case == "grouseticks":
        return pd.read_csv(REFERENCE / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})
    n, groups = (10_000, 200) if quick else (100_000, 2_000)
    rng = np.random.default_rng(14)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    sd, rho = np.array([1.0, 0.5]), 0.3
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, groups)
    eta = -0.5 + x + b[g, 0] + b[g, 1] * x
    return pd.DataFrame({"y": rng.binomial(1, 1.0 / (1.0 + np.exp(-eta))), "x": x, "g": g.astype(str)})


def diagnostics_of(posterior, sample_stats) -> dict:
    """Minimum bulk ESS and maximum R-hat over ``posterior``'s variables, and the divergences."""
    import arviz as az
    import xarray as xr

    table = az.summary(xr.DataTree.from_dict({"posterior": posterior}), kind="diagnostics", round_to="none")
    return {"ess": float(table["ess_bulk"].min()), "rhat": float(table["r_hat"].max()),
            "divergences": int(sample_stats["diverging"].sum())}


def run_bayesmix(case: str, seed: int, quick: bool) -> dict:
    import bayesmix as bm

    data = load(case, quick)
    formula, family = (LARGE_FORMULA, "binomial") if case == "large" else (CASES[case][0], CASES[case][2])
    start = time.perf_counter()
    post = bm.Model(formula, data, family=family).sample(seed=seed, progressbar=False, **SETTINGS)
    wall = time.perf_counter() - start
    d = post.diagnostics()
    return {"wall": wall, "ess": d["min_ess_bulk"], "rhat": d["max_rhat"], "divergences": d["divergences"],
            "compile": post.compile_seconds, "sampling": post.sampling_seconds, "method": post.method,
            "estimates": {name: float(v) for name, v in post.summary()["mean"].items()}}


def run_bambi(case: str, seed: int, quick: bool) -> dict:
    import bambi as bmb

    data = load(case, quick)
    start = time.perf_counter()
    model = bmb.Model(CASES[case][1], data, family=CASES[case][2])
    idata = model.fit(draws=SETTINGS["draws"], tune=SETTINGS["tune"], chains=SETTINGS["chains"], random_seed=seed,
                      progressbar=False)
    wall = time.perf_counter() - start
    posterior = idata["posterior"].to_dataset()
    # the parameters bayesmix reports too: fixed effects and SDs, not the random effects themselves
    common = [v for v in posterior.data_vars if "|" not in str(v) or str(v).endswith("_sigma")]
    result = diagnostics_of(posterior[common], idata["sample_stats"].to_dataset())
    return {**result, "wall": wall, "compile": float("nan"), "sampling": float("nan"), "method": "PyMC NUTS",
            "parameters": common}


def worker(arguments: str) -> None:
    """Child process: one run, its figures as a JSON line on stdout."""
    import warnings

    spec = json.loads(arguments)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = run_bayesmix if spec["tool"] == "bayesmix" else run_bambi
        result = runner(spec["case"], spec["seed"], spec["quick"])
    result["load"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(result))


def child(tool: str, case: str, seed: int, quick: bool, caches: Path, timeout: float = 3600) -> dict:
    """Run one case in a fresh process whose numba and PyTensor caches live in ``caches``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(caches / "numba"),
           "PYTENSOR_FLAGS": f"base_compiledir={caches / 'pytensor'}"}
    spec = json.dumps({"tool": tool, "case": case, "seed": seed, "quick": quick})
    load_before = os.getloadavg()[0]
    done = subprocess.run([sys.executable, __file__, "--worker", spec], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{tool} {case} failed:\n{done.stderr[-3000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    result["load_before"] = load_before
    return result


def versions() -> str:
    from importlib.metadata import version

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    packages = ["bayesmix", "pymc", "pytensor", "nutpie", "numba", "bambi", "arviz"]
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {cpu}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}; " + ", ".join(f"{p} {version(p)}" for p in packages))


def row(label: str, cache: str, r: dict) -> str:
    compile_ = "" if r["compile"] != r["compile"] else f"{r['compile']:.1f}"
    sampling = "" if r["sampling"] != r["sampling"] else f"{r['sampling']:.1f}"
    return (f"| {label} | {cache} | {r['wall']:.1f} | {compile_} | {sampling} | {r['ess']:.0f} | "
            f"{r['ess'] / r['wall']:.1f} | {r['divergences']} | {r['rhat']:.3f} | {r['load_before']:.1f} |")


def brms_row() -> str:
    brms = json.loads((REFERENCE / "brms_cbpp.json").read_text())
    ess, wall = min(brms["ess_bulk"].values()), brms["wall_time_total_s"]
    load = float(brms["load_at_start"].split()[0])
    return (f"| brms {brms['versions']['brms']} (recorded, rstan, cores = {brms['cores']}) | its own | {wall:.1f} | "
            f"{brms['wall_time_compile_s']:.1f} | {brms['wall_time_sampling_s']:.1f} | {ess:.0f} | {ess / wall:.1f} | "
            f"{brms['n_divergent']} | {max(brms['rhat'].values()):.3f} | {load:.1f} |")


HEADER = ("| run | numba/PyTensor cache | wall s (formula to posterior) | compile s | sampling s | min bulk ESS | "
          "ESS/s | divergences | max R-hat | load before |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--quick", action="store_true", help="the large model at 10,000 rows and 200 groups")
    parser.add_argument("--no-large", action="store_true", help="skip the large Bernoulli model")
    parser.add_argument("--no-bambi", action="store_true")
    parser.add_argument("--no-small", action="store_true", help="only the large model")
    parser.add_argument("--large-caches", nargs="+", choices=["cold", "warm"], default=["cold", "warm"],
                        help="the large model's runs (each takes minutes at full size)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)

    print(versions())
    print()
    with tempfile.TemporaryDirectory(prefix="bayes-glmm-bench-") as scratch:
        for case in [] if args.no_small else CASES:
            print(f"{case}: `{CASES[case][0]}` ({CASES[case][2]}), 4 chains x 1000 draws after 1000 tuning steps")
            print()
            print(HEADER)
            if case == "cbpp":
                print(brms_row())
            for seed in args.seeds:
                tools = ["bayesmix"] + ([] if args.no_bambi else ["bambi"])
                for tool in tools:
                    caches = Path(scratch) / f"{tool}-{case}-{seed}"
                    for cache in ("cold", "warm"):
                        r = child(tool, case, seed, False, caches)
                        label = f"bayesmix {r['method']}" if tool == "bayesmix" else "bambi (PyMC NUTS)"
                        print(row(f"{label}, seed {seed}", cache, r))
                        sys.stdout.flush()
            print()
        if not args.no_large:
            size = "10,000 rows, 200 groups" if args.quick else "100,000 rows, 2,000 groups"
            print(f"large: Bernoulli `{LARGE_FORMULA}`, {size}, correlated intercept and slope "
                  f"(truth: beta = (-0.5, 1), SDs (1, 0.5), rho = 0.3)")
            print()
            print(HEADER)
            caches = Path(scratch) / "bayesmix-large"
            for seed in args.seeds:
                for cache in args.large_caches:
                    r = child("bayesmix", "large", seed, args.quick, caches, timeout=7200)
                    print(row(f"bayesmix {r['method']}, seed {seed}", cache, r))
                    sys.stdout.flush()
                print()
                print("posterior means: " + ", ".join(f"{k} {v:.3f}" for k, v in r["estimates"].items()))


if __name__ == "__main__":
    main()
