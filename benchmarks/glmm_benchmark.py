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

When ``Rscript`` with lme4 (and glmmTMB) is installed, each case is also fit by lme4's
``glmer`` (glmmTMB and ``glmer.nb`` for the negative binomial) on the same CSV in the same run
(``benchmarks/glmm_lme4.R``, median of ``--r-repeat`` fits; the 1,000,000-row model once),
and the table gives that same-machine ratio beside the one against the JSON's recorded
``fit_time_s`` (R on another machine, see its ``timing_note``). ``--no-r`` skips R.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import statistics
import subprocess
import tempfile
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


def reference_cases() -> list[tuple[str, dict, int, Path]]:
    """(name, fit_laplace arguments, nagq, data CSV) for each reference model."""
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
        ("cbpp_binomial", arrays(cbpp_design, Binomial()), 1, REFERENCE / "cbpp.csv"),
        ("cbpp_binomial_agq25", arrays(cbpp_design, Binomial()), 25, REFERENCE / "cbpp.csv"),
        ("grouseticks_poisson", arrays(grouse_design, Poisson()), 1, REFERENCE / "grouseticks.csv"),
        ("poisson_offset", arrays(offset_design, Poisson()), 1, REFERENCE / "sim_poisson_offset.csv"),
        ("salamanders_nbinom2", arrays(nb_design, NegativeBinomial()), 1, REFERENCE / "salamanders.csv"),
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


def r_available() -> bool:
    """Whether ``Rscript`` with lme4, glmmTMB and jsonlite is installed."""
    if shutil.which("Rscript") is None:
        return False
    check = 'for (p in c("lme4", "glmmTMB", "jsonlite")) stopifnot(requireNamespace(p, quietly = TRUE))'
    return subprocess.run(["Rscript", "-e", check], capture_output=True).returncode == 0


def r_fit(name: str, csv: Path, repeat: int) -> dict:
    """lme4's (glmmTMB's) fit of case ``name`` on ``csv``: {function: {fit_time_s, logLik}}."""
    out = subprocess.run(["Rscript", str(ROOT / "benchmarks" / "glmm_lme4.R"), name, str(csv), str(repeat)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def r_columns(fits: dict | None, seconds: float) -> str:
    """The same-run lme4 cells: each function's time, the ratio, and its logLik."""
    if fits is None:
        return "not run | | |"
    times = "; ".join(f"{name} {fit['fit_time_s'] * 1e3:.0f} ms" for name, fit in fits.items())
    ratios = "; ".join(f"{fit['fit_time_s'] / seconds:.1f}x faster" for fit in fits.values())
    logliks = "; ".join(f"{fit['logLik']:.6f}" for fit in fits.values())
    return f"{times} | {ratios} | {logliks} |"


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
    parser.add_argument("--r-repeat", type=int, default=3, help="lme4 fits per reference model (the median is reported)")
    parser.add_argument("--no-r", action="store_true", help="do not run lme4 even where R is installed")
    args = parser.parse_args()
    models = {m["name"]: m for m in json.loads((REFERENCE / "glmm_reference.json").read_text())["models"]}
    use_r = not args.no_r and r_available()
    import numba
    import scipy

    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}, pandas {pd.__version__}")
    if use_r:
        versions = subprocess.run(["Rscript", "-e", 'cat(R.version.string, "; lme4", format(packageVersion("lme4")), '
                                   '"; glmmTMB", format(packageVersion("glmmTMB")))'], capture_output=True, text=True).stdout
        print(f"{versions.strip()}")
    print()
    print("| model | bayesmix fit (median) | lme4 / glmmTMB recorded | ratio | lme4 / glmmTMB same run | ratio | "
          "their logLik | evaluations | logLik | tight reference logLik |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, kwargs, nagq, csv in reference_cases():
        fit = fit_laplace(**kwargs, nagq=nagq)  # warms numba's caches
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            fit = fit_laplace(**kwargs, nagq=nagq)
            times.append(time.perf_counter() - t0)
        median = statistics.median(times)
        recorded = models[name]["fit_time_s"]
        same_run = r_fit(name, csv, args.r_repeat) if use_r else None
        print(f"| {name} | {median * 1e3:.0f} ms | {recorded * 1e3:.0f} ms | {recorded / median:.1f}x faster | "
              f"{r_columns(same_run, median)} {fit.evaluations} | {fit.log_likelihood:.6f} | "
              f"{tight_log_likelihood(models[name]):.6f} |")
    n, groups = (100_000, 1_000) if args.quick else (1_000_000, 10_000)
    queue = mp.get_context("spawn").Queue()
    child = mp.get_context("spawn").Process(target=large_fit, args=(n, groups, queue))
    child.start()
    result = queue.get()
    child.join()
    print(f"\nBernoulli `y ~ x + (x | g)`, {n:,} rows, {groups:,} groups: fit {result['fit_s']:.1f} s "
          f"(design {result['design_s']:.1f} s), peak resident memory {result['peak_mib']:.0f} MiB (whole process, "
          f"data included), {result['evaluations']} deviance evaluations, converged {result['converged']}, "
          f"logLik {result['log_likelihood']:.4f}; β = {np.round(result['beta'], 3).tolist()} (truth [-0.5, 1.0]), "
          f"SDs {np.round(result['sds'], 3).tolist()} (truth [1.0, 0.5]), correlation {result['correlation']:.3f} (truth 0.3)")
    if use_r:
        with tempfile.TemporaryDirectory() as directory:
            csv = Path(directory) / "bernoulli.csv"
            simulate_bernoulli(n, groups).to_csv(csv, index=False)
            fits = r_fit("bernoulli_large", csv, 1)
        lme4 = fits["glmer"]
        print(f"lme4 glmer on the same data, same run: {lme4['fit_time_s']:.1f} s ({lme4['fit_time_s'] / result['fit_s']:.1f}x "
              f"bayesmix's time), logLik {lme4['logLik']:.4f}")


if __name__ == "__main__":
    main()
