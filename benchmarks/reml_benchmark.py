"""REML fit times: bayesmix against statsmodels MixedLM on the same data, in the same process.

Run from the repository root (with ../shared beside it):

    .venv/bin/python -m pip install statsmodels   # the test extra has it
    .venv/bin/python benchmarks/reml_benchmark.py [--skip-statsmodels-large]

Prints a Markdown table (paste it into benchmarks/RESULTS.md). Cases:

- music: ``na ~ perform_type + (perform_type | id)``, 497 rows, 37 groups;
- sleepstudy: ``Reaction ~ Days + (Days | Subject)``, 180 rows;
- crossed: ~70,000 rows, two crossed factors of 3,000 and 1,000 levels, ``y ~ x + (1|a) + (1|b)``;
- large: 1,000,000 rows, 10,000 groups, correlated intercept and two slopes.

statsmodels MixedLM cannot fit crossed factors directly; it is run on the other cases (on the
1,000,000-row case only when it finishes within its 10-minute budget, measured in a child process).
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
STATSMODELS_BUDGET = 600.0


def simulate_crossed(seed=1, n=70_000, na=3_000, nb=1_000):
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, na, n), rng.integers(0, nb, n)
    x = rng.normal(size=n)
    y = 1 + 0.5 * x + rng.normal(0, 1.0, na)[a] + rng.normal(0, 0.5, nb)[b] + rng.normal(0, 1.0, n)
    return pd.DataFrame({"y": y, "x": x, "a": a, "b": b})


def simulate_large(seed=2, n=1_000_000, groups=10_000):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    sd = np.array([1.0, 0.5, 0.3])
    corr = np.array([[1.0, 0.4, -0.2], [0.4, 1.0, 0.1], [-0.2, 0.1, 1.0]])
    u = rng.multivariate_normal(np.zeros(3), corr * np.outer(sd, sd), size=groups)
    y = 2 + 0.5 * x1 - 0.3 * x2 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + rng.normal(0, 1.0, n)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g})


def time_it(fn, repeat):
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def bayesmix_fit(formula, data, repeat):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = bm.make_design(formula, data)
        bm.fit_reml(design)  # compile the kernels once
        fit_only, fit = time_it(lambda: bm.fit_reml(design), repeat)
        end_to_end, _ = time_it(lambda: bm.fit_reml(bm.make_design(formula, data)), max(1, repeat // 5))
    return fit_only, end_to_end, fit


def statsmodels_fit(fixed, groups, re_formula, data, queue=None):
    import statsmodels.formula.api as smf

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = time.perf_counter()
        model = smf.mixedlm(fixed, data, groups=data[groups], re_formula=re_formula)
        result = model.fit(reml=True)
        seconds = time.perf_counter() - t
    # statsmodels' llf for REML is the REML log-likelihood: -2 llf is lme4's REML criterion
    out = (seconds, -2.0 * result.llf)
    if queue is not None:
        queue.put(out)
    return out


def statsmodels_with_budget(fixed, groups, re_formula, data):
    queue = mp.get_context("fork").Queue()
    proc = mp.get_context("fork").Process(target=statsmodels_fit, args=(fixed, groups, re_formula, data, queue))
    proc.start()
    proc.join(STATSMODELS_BUDGET)
    if proc.is_alive():
        proc.terminate()
        return None
    return queue.get() if not queue.empty() else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-statsmodels-large", action="store_true")
    args = parser.parse_args()
    music = pd.read_csv(SHARED / "musicdata.csv")
    sleep = pd.read_csv(SHARED / "sleepstudy.csv")
    cases = [
        ("music (497 rows, 37 groups, q=3)", "na ~ perform_type + (perform_type | id)", music,
         ("na ~ perform_type", "id", "~perform_type"), 50),
        ("sleepstudy (180 rows, 18 groups, q=2)", "Reaction ~ Days + (Days | Subject)", sleep,
         ("Reaction ~ Days", "Subject", "~Days"), 50),
        ("crossed (70,000 rows, 3,000 x 1,000 levels)", "y ~ x + (1 | a) + (1 | b)", simulate_crossed(), None, 3),
        ("large (1,000,000 rows, 10,000 groups, q=3)", "y ~ x1 + x2 + (x1 + x2 | g)", simulate_large(),
         None if args.skip_statsmodels_large else ("y ~ x1 + x2", "g", "~x1 + x2"), 3),
    ]
    print(f"date: {time.strftime('%Y-%m-%d')}; machine: {platform.machine()}, {mp.cpu_count()} cores; "
          f"Python {sys.version.split()[0]}; numpy {np.__version__}")
    print()
    print("| case | bayesmix fit (design built) | bayesmix end to end | criterion | statsmodels | statsmodels criterion | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for label, formula, data, sm, repeat in cases:
        fit_only, end_to_end, fit = bayesmix_fit(formula, data, repeat)
        sm_text, sm_crit, ratio = "not run (crossed factors)", "", ""
        if sm is not None:
            result = statsmodels_with_budget(*sm, data) if len(data) > 100_000 else statsmodels_fit(*sm, data)
            if result is None:
                sm_text = f"> {STATSMODELS_BUDGET:.0f} s (stopped)"
            else:
                sm_seconds, sm_criterion = result
                sm_text, sm_crit = f"{sm_seconds * 1e3:.1f} ms", f"{sm_criterion:.4f}"
                ratio = f"{sm_seconds / end_to_end:.0f}x"
        print(f"| {label} | {fit_only * 1e3:.1f} ms | {end_to_end * 1e3:.1f} ms | {fit.criterion:.4f} | "
              f"{sm_text} | {sm_crit} | {ratio} |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
