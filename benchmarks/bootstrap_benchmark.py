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
b <- suppressMessages(suppressWarnings(bootMer(m, fun, nsim = nsim, seed = 1, use.u = FALSE, type = "parametric")))
secs <- as.numeric(Sys.time() - t0, units = "secs")
cat(secs, sum(is.na(b$t[, 1])), sd(b$t[, "sigma"]), "\n")
cat(R.version.string, "; lme4 ", format(packageVersion("lme4")), "\n", sep = "")
"""


def run_lme4(nsim: int) -> tuple[float, float, str]:
    """Seconds of lme4's bootMer, the bootstrap SD of σ, and R's versions."""
    with tempfile.NamedTemporaryFile("w", suffix=".R", delete=False) as script:
        script.write(R_SCRIPT)
    try:
        out = subprocess.run(["Rscript", script.name, str(MUSIC), str(nsim)], capture_output=True, text=True, check=True)
    finally:
        os.unlink(script.name)
    first, versions = out.stdout.strip().splitlines()[:2]
    secs, _, sd_sigma = first.split()
    return float(secs), float(sd_sigma), versions


def run_bayesmix(fit, nsim: int, n_jobs: int) -> tuple[float, float, int]:
    """Seconds of bm.bootstrap, the bootstrap SD of σ, and the failed refits."""
    start = time.perf_counter()
    result = bm.bootstrap(fit, nsim=nsim, seed=1, n_jobs=n_jobs, progress=False)
    return time.perf_counter() - start, float(result.draws["sigma"].std()), result.n_failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nsim", type=int, default=1000)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    fit = bm.Model(FORMULA, pd.read_csv(MUSIC)).fit_reml()
    bm.bootstrap(fit, nsim=20, seed=0, n_jobs=1, progress=False)  # numba kernels loaded, scipy imported
    load = os.getloadavg()[0]
    ours2, sd2, failed2 = run_bayesmix(fit, args.nsim, 2)
    ours1, sd1, failed1 = run_bayesmix(fit, args.nsim, 1)
    lme4, sd_r, versions = run_lme4(args.nsim)
    import numba
    import scipy

    print(f"{time.strftime('%Y-%m-%d')}, {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load average {load:.1f} at the start; Python {platform.python_version()}, numpy {np.__version__}, "
          f"scipy {scipy.__version__}, numba {numba.__version__}; {versions}.")
    print(f"{args.nsim} parametric-bootstrap refits of `{FORMULA}` (REML), new random effects per simulation.\n")
    print("| run | seconds | per refit | SD of sigma over the draws | failed refits | lme4 / this |")
    print("| --- | --- | --- | --- | --- | --- |")
    print(f"| lme4 bootMer | {lme4:.1f} | {1000 * lme4 / args.nsim:.1f} ms | {sd_r:.4f} | | 1.0x |")
    print(f"| bm.bootstrap, 2 processes | {ours2:.2f} | {1000 * ours2 / args.nsim:.2f} ms | {sd2:.4f} | {failed2} | "
          f"{lme4 / ours2:.0f}x |")
    print(f"| bm.bootstrap, 1 process | {ours1:.2f} | {1000 * ours1 / args.nsim:.2f} ms | {sd1:.4f} | {failed1} | "
          f"{lme4 / ours1:.0f}x |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
