"""Laplace deviance evaluations with one grouping factor: the per-level compiled path
(``bayesmix/linalg/levelwise.py``) against the general PIRLS, in the same run.

Run from the repository root (with ../shared beside it):

    PYTHONPATH=. .venv/bin/python benchmarks/pirls_benchmark.py [--evaluations 2000] [--fits 7]

Cases: lme4's cbpp, ``cbind(incidence, size - incidence) ~ period + (1 | herd)`` (binomial, 56
rows, 15 herds), and a simulated Bernoulli ``y ~ x + (x | g)`` with 100,000 rows and 2,000
groups (correlated intercept and slope). For each:

- one evaluation: the mode (:meth:`~bayesmix.linalg.pirls.WarmModes.solve`) and the gradient
  (:meth:`~bayesmix.linalg.pirls.WarmModes.gradient`) at a point of a random walk around the ML
  estimates in (θ, β) (steps of 0.01 per coordinate, as along a sampler's trajectory), each
  warm-started from the last mode; the median over the walk. The two paths take the same walk,
  in alternating blocks of 50 evaluations (so that both see the same load);
- one evaluation of ``method="laplace"``'s log density and its gradient
  (:meth:`~bayesmix.bayes.embedded_laplace.LaplaceDensity.log_density`, what NUTS calls) along
  a random walk from the priors' centre in the unconstrained coordinates (steps of 0.02);
- the ML fit, ``bm.Model(...).fit_ml()``: the median over ``--fits`` fits of each path,
  alternating, after one untimed round; the old path by giving the fit a
  ``WarmModes(levelwise=False)``.

Times are CPU time of the process (``time.process_time``): on a machine shared with other
jobs, wall time mostly measures the wait for a core. Prints a Markdown table (paste it into
benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import time
from pathlib import Path

import numba
import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.bayes.embedded_laplace import laplace_density
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, structure_of, term_labels
from bayesmix.linalg.pirls import GlmmRows, WarmModes
from bayesmix.reml import laplace

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "glmm"
BLOCK = 50


def cbpp() -> tuple[str, str, pd.DataFrame, bm.Binomial]:
    data = pd.read_csv(REFERENCE / "cbpp.csv", dtype={"herd": str, "period": str})
    return "cbpp (56 rows, 15 herds, (1 | herd))", "cbind(incidence, size - incidence) ~ period + (1 | herd)", data, bm.Binomial()


def bernoulli(n: int = 100_000, groups: int = 2_000, seed: int = 1) -> tuple[str, str, pd.DataFrame, bm.Binomial]:
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal([0.0, 0.0], cov, groups)
    eta = -0.5 + x + b[g, 0] + b[g, 1] * x
    data = pd.DataFrame({"y": (rng.random(n) < 1.0 / (1.0 + np.exp(-eta))).astype(int), "x": x, "g": g.astype(str)})
    return f"Bernoulli ({n:,} rows, {groups:,} groups, (x | g))", "y ~ x + (x | g)", data, bm.Binomial()


def walk(theta: np.ndarray, beta: np.ndarray, count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """A random walk in (θ, β) from the estimates, θ's diagonal kept positive."""
    rng = np.random.default_rng(seed)
    out, t, b = [], theta.copy(), beta.copy()
    for _ in range(count):
        t = t + rng.normal(0.0, 0.01, t.size)
        b = b + rng.normal(0.0, 0.01, b.size)
        out.append((np.abs(t), b.copy()))
    return out


def evaluation_times(rows: GlmmRows, points) -> dict[bool, list[float]]:
    """Seconds per evaluation (solve + gradient) for each path, in alternating blocks."""
    modes = {True: WarmModes(rows), False: WarmModes(rows, levelwise=False)}
    times: dict[bool, list[float]] = {True: [], False: []}
    for levelwise in (True, False):  # compile / warm up
        warm = modes[levelwise]
        warm.mode = warm.solve(*points[0], None)
        warm.gradient(warm.mode)
    for start in range(0, len(points), BLOCK):
        for levelwise in (True, False):
            warm = modes[levelwise]
            for theta, beta in points[start : start + BLOCK]:
                t0 = time.process_time()
                mode = warm.solve(theta, beta, None)
                warm.mode = mode
                warm.gradient(mode)
                times[levelwise].append(time.process_time() - t0)
    return times


def density_times(design, count: int, seed: int = 0) -> dict[bool, list[float]]:
    """Seconds per evaluation of method="laplace"'s log density for each path, in alternating blocks."""
    labels, layouts = term_labels(design), group_layouts(design)
    density = laplace_density(design, resolve_priors(design, labels, None), labels, layouts, coords(design, layouts))
    rng = np.random.default_rng(seed)
    points = [density.init(seed) * 0.3]
    for _ in range(count - 1):
        points.append(points[-1] + rng.normal(0.0, 0.02, points[-1].size))
    modes = {True: WarmModes(density.rows), False: WarmModes(density.rows, levelwise=False)}
    times: dict[bool, list[float]] = {True: [], False: []}
    for levelwise in (True, False):
        density.log_density(points[0], modes[levelwise])
    for start in range(0, count, BLOCK):
        for levelwise in (True, False):
            for x in points[start : start + BLOCK]:
                t0 = time.process_time()
                density.log_density(x, modes[levelwise])
                times[levelwise].append(time.process_time() - t0)
    return times


def fit_times(model: bm.Model, fits: int) -> tuple[dict[bool, list[float]], dict[bool, object]]:
    times: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    general = functools.partial(WarmModes, levelwise=False)
    for round_ in range(fits + 1):  # the first round loads the kernels, untimed
        for levelwise in (True, False):
            laplace.WarmModes = WarmModes if levelwise else general
            try:
                t0 = time.process_time()
                results[levelwise] = model.fit_ml()
                if round_ > 0:
                    times[levelwise].append(time.process_time() - t0)
            finally:
                laplace.WarmModes = WarmModes
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=2000, help="evaluations per path on cbpp (a tenth on the large case)")
    parser.add_argument("--fits", type=int, default=7, help="ML fits per path (3 on the large case)")
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}")
    print()
    print("| case | evaluation, general (median) | evaluation, per level (median) | ratio | PIRLS steps per evaluation (general / per level) "
          "| log density, general | log density, per level | ratio "
          "| ML fit, general (median) | ML fit, per level (median) | ratio | logLik general / per level |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case, large in ((cbpp(), False), (bernoulli(), True)):
        name, formula, data, family = case
        model = bm.Model(formula, data, family=family)
        design = model.design
        rows = GlmmRows.of(structure_of(design), design.rows.X, design.rows.y, design.rows.weights, design.rows.offset, family)
        fits = max(1, args.fits // 2) if large else args.fits
        ftimes, results = fit_times(model, fits)
        fit = results[True].fit
        count = max(BLOCK, args.evaluations // 10) if large else args.evaluations
        etimes = evaluation_times(rows, walk(fit.theta, fit.beta, count))
        steps = {}
        for levelwise in (True, False):  # PIRLS steps per evaluation along the walk, untimed
            warm = WarmModes(rows, levelwise=levelwise)
            for theta, beta in walk(fit.theta, fit.beta, min(count, 200)):
                warm.mode = warm.solve(theta, beta, None)
            steps[levelwise] = warm.iterations / warm.evaluations
        dtimes = density_times(design, count)
        old, new = statistics.median(etimes[False]), statistics.median(etimes[True])
        dold, dnew = statistics.median(dtimes[False]), statistics.median(dtimes[True])
        fold, fnew = statistics.median(ftimes[False]), statistics.median(ftimes[True])
        print(f"| {name} | {old * 1e3:.3f} ms | {new * 1e3:.3f} ms | {old / new:.1f}x | {steps[False]:.2f} / {steps[True]:.2f} "
              f"| {dold * 1e3:.3f} ms | {dnew * 1e3:.3f} ms | {dold / dnew:.1f}x "
              f"| {fold * 1e3:.0f} ms | {fnew * 1e3:.0f} ms | {fold / fnew:.1f}x "
              f"| {results[False].fit.log_likelihood:.6f} / {results[True].fit.log_likelihood:.6f} |")
    print()
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
