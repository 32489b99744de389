"""Bayesian GLMMs: bayesmix against bambi (and brms's recorded run), from the formula to the posterior.

Run from the repository root (with ../shared beside it, and bambi installed: the ``bench`` extra):

    PYTHONPATH=. .venv/bin/python benchmarks/bayes_glmm_benchmark.py [--quick] [--seeds 1] [--cases cbpp grouseticks crossed large]
    PYTHONPATH=. .venv/bin/python benchmarks/bayes_glmm_benchmark.py --cases large --large-caches cold  # the large model once
    PYTHONPATH=. .venv/bin/python benchmarks/bayes_glmm_benchmark.py --cases crossed --method full laplace

``--method`` (default ``auto``) is passed to ``bm.Model.sample(method=...)``: one bayesmix row
per method, each beside the same peer runs, with its ESS per second as a multiple of the peer's
in the same cache state ("ESS/s vs peer").

Prints Markdown tables (paste them into benchmarks/RESULTS.md). Every run samples 4 chains x
1000 draws after 1000 tuning steps (``--draws``, ``--tune`` change that for every run) in a child process of its own, so that nothing compiled in
one run helps another except through the on-disk caches: each case is run first with empty
caches (fresh ``NUMBA_CACHE_DIR`` and PyTensor ``base_compiledir``: "cold", the first fit after
installation) and then again with the caches that run left ("warm", every later fit). Wall time
is everything from the formula and the DataFrame to the posterior (building, compiling and
sampling; not importing the packages); the packages a tool imports on first use
(bayesmix: nutpie, ArviZ and its own modelling layer, which ``import bayesmix`` defers) are
imported before the clock starts, as ``import bambi`` imports PyMC and ArviZ; work those packages do on
their first use in a process (numba loading its registries before the first cached kernel, xarray
importing ``dask.array`` when dask is installed, PyTensor loading its compiled modules) is inside the
span for both tools, as every run starts in a new process. "CPU s" is the CPU time the run took (all threads and
child processes), what a shared machine's load does not inflate; "ESS per CPU s vs peer" is
the ratio of ESS per CPU second, the comparison that holds when the load changes between runs.

- cbpp (binomial, ``cbind(incidence, size - incidence) ~ period + (1 | herd)``) and grouseticks
  (Poisson, ``TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)``),
  from ``../shared/reference/glmm`` with the formulas and families of ``glmm_reference.json``,
  by bayesmix (its default sampler for the design, each package's default priors) and by bambi
  (``p(incidence, size) ~ period + (1|herd)``; grouseticks with the column ``HEIGHT_scaled``,
  R's ``scale(HEIGHT)``, and PyMC's default NUTS). ESS per second is the minimum bulk ESS over
  the parameters both estimate (fixed effects and random-effect SDs) divided by the wall time.
  brms 2.18's recorded cbpp run (``brms_cbpp.json``, the same sampler settings, R on this
  kind of machine) is printed beside them.
- a crossed Gaussian model ``y ~ x + (1 | a) + (1 | b)`` (20,000 rows, 300 x 100 levels;
  truth β = (1, 0.5), SDs (1, 0.5), σ = 1) against the same model as bayesmix sampled it before
  the precompiled full density ("PyMC path"): the benchmark hands ``BayesModel.pymc_model`` to
  ``nutpie.compile_pymc_model`` (numba backend, without fast-math, as bayesmix compiled it) and
  samples that with the same settings. ESS is the minimum bulk ESS over β, σ and the SDs; the
  PyMC path's draws are on bayesmix's internal standardised scale, an increasing affine map of
  each parameter, which leaves the (rank-based) bulk ESS unchanged.
- a Bernoulli model ``y ~ x + (x | g)`` with 100,000 rows and 2,000 groups (a correlated
  random intercept and slope), bayesmix only (bambi cannot estimate the correlation); the goal of issue 14 is under 3 minutes with a bulk ESS of at least 400.
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

# case -> (bayesmix formula, family, peer, bambi formula or None)
CASES = {
    "cbpp": ("cbind(incidence, size - incidence) ~ period + (1 | herd)", "binomial", "bambi",
             "p(incidence, size) ~ period + (1|herd)"),
    "grouseticks": ("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", "poisson", "bambi",
                    "TICKS ~ YEAR + HEIGHT_scaled + (1|BROOD) + (1|INDEX) + (1|LOCATION)"),
    "crossed": ("y ~ x + (1 | a) + (1 | b)", "gaussian", "pymc-path", None),
    "large": ("y ~ x + (x | g)", "binomial", None, None),
}
PEER_LABELS = {"bambi": "bambi (PyMC NUTS)", "pymc-path": "PyMC path (nutpie compiling the PyMC model)"}


def load(case: str, quick: bool = False):
    import numpy as np
    import pandas as pd

    if case == "cbpp":
        return pd.read_csv(REFERENCE / "cbpp.csv", dtype={"herd": str, "period": str})
    if case == "grouseticks":
        return pd.read_csv(REFERENCE / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})
    if case == "crossed":
        rng = np.random.default_rng(14)
        n, levels_a, levels_b = 20_000, 300, 100
        a, b = rng.integers(0, levels_a, n), rng.integers(0, levels_b, n)
        x = rng.normal(size=n)
        y = 1.0 + 0.5 * x + rng.normal(0, 1.0, levels_a)[a] + rng.normal(0, 0.5, levels_b)[b] + rng.normal(0, 1.0, n)
        return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})
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


def population_variables(posterior) -> list[str]:
    """β, the SDs, the correlations and the dispersion: the parameters whose ESS is compared."""
    return [v for v in posterior.data_vars if v == "beta" or str(v).startswith(("sd_", "cor_"))
            or posterior[v].dims == ("chain", "draw")]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (PyMC's chains run in child processes)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_bayesmix(case: str, seed: int, quick: bool, method: str = "auto") -> dict:
    import arviz  # noqa: F401  bayesmix imports these on first use; bambi's import has imported its own
    import nutpie  # noqa: F401

    import bayesmix as bm

    bm.Model  # noqa: B018  bayesmix imports its modelling layer on first use: part of importing the package
    data = load(case, quick)
    formula, family = CASES[case][:2]
    start, cpu = time.perf_counter(), cpu_seconds()
    post = bm.Model(formula, data, family=family).sample(seed=seed, progressbar=False, method=method, **SETTINGS)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    d = post.diagnostics()
    return {"wall": wall, "cpu": cpu, "ess": d["min_ess_bulk"], "rhat": d["max_rhat"], "divergences": d["divergences"],
            "compile": post.compile_seconds, "sampling": post.sampling_seconds, "method": post.method,
            "estimates": {name: float(v) for name, v in post.summary()["mean"].items()}}


def run_pymc_path(case: str, seed: int, quick: bool, method: str = "full") -> dict:
    """The model bayesmix sampled before the precompiled density: nutpie compiling its PyMC model."""
    import bayesmix as bm
    import nutpie
    import pytensor

    data = load(case, quick)
    formula, family = CASES[case][:2]
    start, cpu = time.perf_counter(), cpu_seconds()
    bayes_model = bm.Model(formula, data, family=family).bayes_model(method=method)
    with pytensor.config.change_flags(numba__fastmath=False):
        compiled = nutpie.compile_pymc_model(bayes_model.pymc_model)
    compile_seconds = time.perf_counter() - start
    tree = nutpie.sample(compiled, seed=seed, progress_bar=False, cores=min(SETTINGS["chains"], os.cpu_count() or 1),
                         **SETTINGS)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    posterior = tree["posterior"].to_dataset()
    result = diagnostics_of(posterior[population_variables(posterior)], tree["sample_stats"].to_dataset())
    return {**result, "wall": wall, "cpu": cpu, "compile": compile_seconds, "sampling": wall - compile_seconds,
            "method": "nutpie compiling the PyMC model"}


def run_bambi(case: str, seed: int, quick: bool, method: str = "") -> dict:
    import bambi as bmb

    data = load(case, quick)
    start, cpu = time.perf_counter(), cpu_seconds()
    model = bmb.Model(CASES[case][3], data, family=CASES[case][1])
    idata = model.fit(draws=SETTINGS["draws"], tune=SETTINGS["tune"], chains=SETTINGS["chains"], random_seed=seed,
                      progressbar=False)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    posterior = idata["posterior"].to_dataset()
    # the parameters bayesmix reports too: fixed effects and SDs, not the random effects themselves
    common = [v for v in posterior.data_vars if "|" not in str(v) or str(v).endswith("_sigma")]
    result = diagnostics_of(posterior[common], idata["sample_stats"].to_dataset())
    return {**result, "wall": wall, "cpu": cpu, "compile": float("nan"), "sampling": float("nan"), "method": "PyMC NUTS",
            "parameters": common}


def worker(arguments: str) -> None:
    """Child process: one run, its figures as a JSON line on stdout."""
    import warnings

    spec = json.loads(arguments)
    SETTINGS.update(spec.get("settings", {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = {"bayesmix": run_bayesmix, "bambi": run_bambi, "pymc-path": run_pymc_path}[spec["tool"]]
        result = runner(spec["case"], spec["seed"], spec["quick"], spec["method"])
    result["load"] = os.getloadavg()[0]
    print("RESULT " + json.dumps(result))


WARM_UP = {"draws": 10, "tune": 10, "chains": 1}  # fills a fresh cache: the kernels depend on the model, not the data's size


def child(tool: str, case: str, seed: int, quick: bool, caches: Path, method: str = "auto",
          timeout: float = 3600, settings: dict | None = None) -> dict:
    """Run one case in a fresh process whose numba and PyTensor caches live in ``caches``
    (``settings``: the sampler's, SETTINGS unless given)."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(caches / "numba"),
           "PYTENSOR_FLAGS": f"base_compiledir={caches / 'pytensor'}"}
    spec = json.dumps({"tool": tool, "case": case, "seed": seed, "quick": quick, "method": method,
                       "settings": SETTINGS if settings is None else settings})
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
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    packages = ["bayesmix", "pymc", "pytensor", "nutpie", "numba", "bambi", "arviz"]
    return (f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {cpu}, {os.cpu_count()} cores; Python "
            f"{platform.python_version()}; " + ", ".join(f"{p} {_version(p)}" for p in packages))


def _version(package: str) -> str:
    """The installed version of ``package`` ("not installed" for bambi without the bench extra, with --no-peer)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "not installed"



HEADER = ("| run | numba/PyTensor cache | wall s (formula to posterior) | compile s | sampling s | min bulk ESS | "
          "ESS/s | ESS/s vs peer | divergences | max R-hat | CPU s | ESS per CPU s vs peer | load before |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")


def row(label: str, cache: str, r: dict, peer: dict | None) -> str:
    compile_ = "" if r["compile"] != r["compile"] else f"{r['compile']:.2f}"
    sampling = "" if r["sampling"] != r["sampling"] else f"{r['sampling']:.2f}"
    ratio = "" if peer is None else f"{(r['ess'] / r['wall']) / (peer['ess'] / peer['wall']):.1f}x"
    cpu_ratio = "" if peer is None else f"{(r['ess'] / r['cpu']) / (peer['ess'] / peer['cpu']):.1f}x"
    return (f"| {label} | {cache} | {r['wall']:.2f} | {compile_} | {sampling} | {r['ess']:.0f} | "
            f"{r['ess'] / r['wall']:.1f} | {ratio} | {r['divergences']} | {r['rhat']:.3f} | {r['cpu']:.2f} | {cpu_ratio} | "
            f"{r['load_before']:.1f} |")


def brms_row() -> str:
    brms = json.loads((REFERENCE / "brms_cbpp.json").read_text())
    ess, wall = min(brms["ess_bulk"].values()), brms["wall_time_total_s"]
    load = float(brms["load_at_start"].split()[0])
    return (f"| brms {brms['versions']['brms']} (recorded, rstan, cores = {brms['cores']}) | its own | {wall:.1f} | "
            f"{brms['wall_time_compile_s']:.1f} | {brms['wall_time_sampling_s']:.1f} | {ess:.0f} | {ess / wall:.1f} | | "
            f"{brms['n_divergent']} | {max(brms['rhat'].values()):.3f} | | | {load:.1f} |")


def describe(case: str, quick: bool) -> str:
    formula, family = CASES[case][:2]
    what = {"crossed": "20,000 rows, 300 x 100 levels (truth: beta = (1, 0.5), SDs (1, 0.5), sigma 1)",
            "large": f"{'10,000 rows, 200 groups' if quick else '100,000 rows, 2,000 groups'}, correlated intercept "
                     "and slope (truth: beta = (-0.5, 1), SDs (1, 0.5), rho = 0.3)"}.get(case, "")
    return (f"{case}: `{formula}` ({family}{', ' + what if what else ''}), {SETTINGS['chains']} chains x "
            f"{SETTINGS['draws']} draws after {SETTINGS['tune']} tuning steps")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--method", nargs="+", default=["auto"],
                        help="bayesmix's methods, one row each (passed to bm.Model.sample(method=...))")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--quick", action="store_true", help="the large model at 10,000 rows and 200 groups")
    parser.add_argument("--no-peer", action="store_true", help="bayesmix only (no bambi, no PyMC path)")
    parser.add_argument("--large-caches", nargs="+", choices=["cold", "warm"], default=["cold", "warm"],
                        help="the large model's runs (each takes minutes at full size)")
    parser.add_argument("--draws", type=int, default=SETTINGS["draws"], help="draws per chain (every run)")
    parser.add_argument("--tune", type=int, default=SETTINGS["tune"], help="tuning steps per chain (every run)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)
    SETTINGS.update(draws=args.draws, tune=args.tune)

    print(versions())
    print()
    with tempfile.TemporaryDirectory(prefix="bayes-glmm-bench-") as scratch:
        for case in args.cases:
            peer = None if args.no_peer else CASES[case][2]
            print(describe(case, args.quick))
            print()
            print(HEADER)
            if case == "cbpp":
                print(brms_row())
            caches_states = args.large_caches if case == "large" else ["cold", "warm"]
            for seed in args.seeds:
                peer_results = {}
                if peer is not None:  # first, so that every bayesmix row can be set beside it
                    if "cold" not in caches_states:  # "warm" alone: fill the fresh cache first
                        child(peer, case, seed, True, Path(scratch) / f"{peer}-{case}-{seed}", "full", settings=WARM_UP)
                    for cache in caches_states:
                        peer_results[cache] = child(peer, case, seed, args.quick, Path(scratch) / f"{peer}-{case}-{seed}",
                                                    method="full")
                for method in args.method:
                    caches = Path(scratch) / f"bayesmix-{case}-{seed}-{method}"
                    if "cold" not in caches_states:  # "warm" alone: fill the fresh cache first
                        child("bayesmix", case, seed, True, caches, method=method, settings=WARM_UP)
                    for cache in caches_states:
                        r = child("bayesmix", case, seed, args.quick, caches, method=method, timeout=7200)
                        label = f"bayesmix {r['method']} (method={method!r}), seed {seed}"
                        print(row(label, cache, r, peer_results.get(cache)))
                        sys.stdout.flush()
                for cache, r in peer_results.items():
                    print(row(f"{PEER_LABELS[peer]}, seed {seed}", cache, r, None))
                if case == "large":
                    print()
                    print("posterior means: " + ", ".join(f"{k} {v:.3f}" for k, v in r["estimates"].items()))
            print()
            sys.stdout.flush()


if __name__ == "__main__":
    main()
