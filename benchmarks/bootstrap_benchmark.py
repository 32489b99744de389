"""Parametric bootstrap of the music model: bayesmix's ``bm.bootstrap`` against lme4's ``bootMer``.

Both refit ``na ~ perform_type + (perform_type | id)`` (REML) to NSIM responses simulated with
new random effects (bootMer's default ``use.u = FALSE``) and record every parameter (θ or the
SDs and correlations, σ, β) of each refit. lme4 runs through ``Rscript`` in the same run, timed
inside R (R's start-up and the first fit are left out); bayesmix is timed from the fitted model
to the draws, with its worker processes (2 on this machine) and with one process. Run from the
project root:

    PYTHONPATH=. python benchmarks/bootstrap_benchmark.py [--nsim 1000]

and copy the printed table into benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[1]
MUSIC = ROOT.parent / "shared" / "data" / "musicdata.csv"
FORMULA = "na ~ perform_type + (perform_type | id)"

R_SCRIPT = r"""
suppressMessages(library(lme4))
args <- commandArgs(TRUE)
music <- read.csv(args[1])
nsim <- as.integer(args[2])
m <- lmer(na ~ perform_type + (perform_type | id), data = music)
fun <- function(x) c(getME(x, "theta"), sigma = sigma(x), fixef(x))
t0 <- Sys.time()
c0 <- proc.time()
b <- suppressMessages(suppressWarnings(bootMer(m, fun, nsim = nsim, seed = 1, use.u = FALSE, type = "parametric")))
cpu <- sum((proc.time() - c0)[c("user.self", "sys.self")])
secs <- as.numeric(Sys.time() - t0, units = "secs")
cat(secs, cpu, sd(b$t[, "sigma"]), "\n")
cat(R.version.string, "; lme4 ", format(packageVersion("lme4")), "\n", sep = "")
"""


def run_lme4(nsim: int) -> tuple[float, float, float, str]:
    """Wall and CPU seconds of lme4's bootMer, the bootstrap SD of σ, and R's versions."""
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as script:
        script.write(R_SCRIPT)
    try:
        out = subprocess.run(["Rscript", script.name, str(MUSIC), str(nsim)], capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    first, versions = out.stdout.strip().splitlines()[:2]
    secs, cpu, sd_sigma = first.split()
    return float(secs), float(cpu), float(sd_sigma), versions


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the bootstrap's worker processes)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def run_bayesmix(fit, nsim: int, n_jobs: int) -> tuple[float, float, float, int]:
    """Wall and CPU seconds of bm.bootstrap, the bootstrap SD of σ, and the failed refits."""
    start, cpu = time.perf_counter(), cpu_seconds()
    result = bm.bootstrap(fit, nsim=nsim, seed=1, n_jobs=n_jobs, progress=False)
    return time.perf_counter() - start, cpu_seconds() - cpu, float(result.draws["sigma"].std()), result.n_failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsim", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    fit = bm.Model(FORMULA, pd.read_csv(MUSIC)).fit_reml()
    bm.bootstrap(fit, nsim=20, seed=0, n_jobs=1, progress=False)  # numba kernels loaded, scipy imported
    load = os.getloadavg()[0]
    ours2, cpu2, sd2, failed2 = run_bayesmix(fit, args.nsim, 2)
    ours1, cpu1, sd1, failed1 = run_bayesmix(fit, args.nsim, 1)
    lme4, cpu_r, sd_r, versions = run_lme4(args.nsim)
    load_end = os.getloadavg()[0]
    import numba
    import scipy

    print(f"{time.strftime('%Y-%m-%d %H:%M')}, {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start and {load_end:.1f} at the end; Python {platform.python_version()}, "
          f"numpy {np.__version__}, scipy {scipy.__version__}, numba {numba.__version__}; {versions}.")
    print(f"{args.nsim} parametric-bootstrap refits of `{FORMULA}` (REML), new random effects per simulation.\n")
    print("| run | wall s | per refit | CPU s | SD of sigma over the draws | failed refits | lme4 / this (wall) | lme4 / this (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| lme4 bootMer | {lme4:.1f} | {1000 * lme4 / args.nsim:.1f} ms | {cpu_r:.1f} | {sd_r:.4f} | | 1.0x | 1.0x |")
    for label, wall, cpu, sd, failed in (("2 processes", ours2, cpu2, sd2, failed2), ("1 process", ours1, cpu1, sd1, failed1)):
        print(f"| bm.bootstrap, {label} | {wall:.2f} | {1000 * wall / args.nsim:.2f} ms | {cpu:.2f} | {sd:.4f} | {failed} | "
              f"{lme4 / wall:.0f}x | {cpu_r / cpu:.0f}x |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
