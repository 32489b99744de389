"""GLMM maximum-likelihood fit times: bayesmix's Laplace/AGQ fit against lme4's recorded times.

Run from the repository root (with ../shared beside it):

    .venv/bin/python benchmarks/glmm_benchmark.py [--quick] [--repeat 7]

Prints a Markdown table (paste it into benchmarks/RESULTS.md). Cases:

- the reference models of ``../shared/reference/glmm/glmm_reference.json`` (cbpp binomial with
  Laplace and nAGQ = 25, grouseticks Poisson with three factors, a Poisson with an offset,
  Salamanders negative binomial), each fit's time the median of ``--repeat`` fits of a built
  design, against lme4's (glmmTMB's for the negative binomial) recorded ``fit_time_s``; the
  log-likelihood against the tight reference (lme4 at ``tolPwrss = 1e-12`` or glmmTMB);
- a simulated Bernoulli model ``y ~ x + (x | g)`` with 1,000,000 rows and 10,000 groups (a
  correlated random intercept and slope), fit once in a child process that reports its time
  and peak resident memory (``--quick``: 100,000 rows and 1,000 groups).

R is not needed: lme4's times are the JSON's (measured with R on another machine, see its
``timing_note``), so compare ratios with that in mind.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bayesmix.data.build import make_design
from bayesmix.data.layout import structure_of
from bayesmix.families import Binomial, NegativeBinomial, Poisson
from bayesmix.reml.laplace import fit_laplace

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT.parent / "shared" / "reference" / "glmm"


def arrays(design, family) -> dict:
    rows = design.rows
    return dict(structure=structure_of(design), X=rows.X, y=rows.y.astype(float), weights=rows.weights,
                offset=rows.offset, family=family)


def reference_cases() -> list[tuple[str, dict, int]]:
    """(name, fit_laplace arguments, nagq) for each reference model."""
    cbpp = pd.read_csv(REFERENCE / "cbpp.csv", dtype={"herd": str, "period": str})
    cbpp_design = make_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family=Binomial())
    grouse = pd.read_csv(REFERENCE / "grouseticks.csv", dtype={"INDEX": str, "BROOD": str, "LOCATION": str, "YEAR": str})
    grouse_design = make_design("TICKS ~ YEAR + HEIGHT_scaled + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", grouse, family=Poisson())
    offset = pd.read_csv(REFERENCE / "sim_poisson_offset.csv", dtype={"g": str})
    offset_design = make_design("y ~ x + offset(log(t)) + (1 | g)", offset, family=Poisson())
    salamanders = pd.read_csv(REFERENCE / "salamanders.csv")
    salamanders["mined"] = pd.Categorical(salamanders["mined"], ["yes", "no"])
    nb_design = make_design("count ~ mined + (1 | site)", salamanders, family=NegativeBinomial())
    return [
        ("cbpp_binomial", arrays(cbpp_design, Binomial()), 1),
        ("cbpp_binomial_agq25", arrays(cbpp_design, Binomial()), 25),
        ("grouseticks_poisson", arrays(grouse_design, Poisson()), 1),
        ("poisson_offset", arrays(offset_design, Poisson()), 1),
        ("salamanders_nbinom2", arrays(nb_design, NegativeBinomial()), 1),
    ]


def tight_log_likelihood(model: dict) -> float:
    if model["name"] == "salamanders_nbinom2":
        return model["logLik"]
    if model["name"] == "cbpp_binomial_agq25":
        return model["logLik_full"]
    return model["crosscheck"]["lme4_tolPwrss_1e12"]["logLik"]


def simulate_bernoulli(n: int, groups: int, seed: int = 13) -> pd.DataFrame:
    """y ~ x + (x | g): intercept -0.5, slope 1, SDs 1 and 0.5 with correlation 0.3."""
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    sd = np.array([1.0, 0.5])
    b = rng.multivariate_normal(np.zeros(2), np.array([[1.0, 0.3], [0.3, 1.0]]) * np.outer(sd, sd), size=groups)
    eta = -0.5 + x + b[g, 0] + b[g, 1] * x
    y = (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(float)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def large_fit(n: int, groups: int, queue) -> None:
    """Child process: simulate, build, fit; report times, estimates and peak memory."""
    data = simulate_bernoulli(n, groups)
    start = time.perf_counter()
    design = make_design("y ~ x + (x | g)", data, family=Binomial())
    built = time.perf_counter()
    fit = fit_laplace(**arrays(design, Binomial()))
    done = time.perf_counter()
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    queue.put(dict(design_s=built - start, fit_s=done - built, peak_mib=peak_mib, beta=fit.beta.tolist(),
                   sds=fit.sds[0].tolist(), correlation=float(fit.correlations[0][1, 0]), evaluations=fit.evaluations,
                   converged=fit.converged, log_likelihood=fit.log_likelihood))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 rows and 1,000 groups for the simulated model")
    parser.add_argument("--repeat", type=int, default=7, help="fits per reference model (the median is reported)")
    args = parser.parse_args()
    models = {m["name"]: m for m in json.loads((REFERENCE / "glmm_reference.json").read_text())["models"]}
    import numba
    import scipy

    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}, pandas {pd.__version__}\n")
    print("| model | bayesmix fit (median) | lme4 / glmmTMB recorded | ratio | evaluations | logLik | tight reference logLik |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, kwargs, nagq in reference_cases():
        fit = fit_laplace(**kwargs, nagq=nagq)  # warms numba's caches
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fit = fit_laplace(**kwargs, nagq=nagq)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        recorded = models[name]["fit_time_s"]
        print(f"| {name} | {median * 1e3:.0f} ms | {recorded * 1e3:.0f} ms | {recorded / median:.1f}x faster | "
              f"{fit.evaluations} | {fit.log_likelihood:.6f} | {tight_log_likelihood(models[name]):.6f} |")
    n, groups = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    queue = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(target=large_fit, args=(n, groups, queue))
    child.start()
    result = queue.get()
    child.join()
    print(f"\nBernoulli `y ~ x + (x | g)`, {n:,} rows, {groups:,} groups: fit {result['fit_s']:.1f} s "
          f"(design {result['design_s']:.1f} s), peak resident memory {result['peak_mib']:.0f} MiB (whole process, "
          f"data included), {result['evaluations']} deviance evaluations, converged {result['converged']}; "
          f"β = {np.round(result['beta'], 3).tolist()} (truth [-0.5, 1.0]), SDs {np.round(result['sds'], 3).tolist()} "
          f"(truth [1.0, 0.5]), correlation {result['correlation']:.3f} (truth 0.3)")


if __name__ == "__main__":
    main()
