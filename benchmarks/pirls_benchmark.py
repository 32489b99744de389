"""Laplace deviance evaluations: the compiled paths (one grouping factor: per level,
``bayesmix/linalg/levelwise.py``; several: on the blocked factor, ``bayesmix/linalg/blockwise.py``)
against the general PIRLS, in the same run.

Run from the repository root (with ../shared beside it):

    PYTHONPATH=. .venv/bin/python benchmarks/pirls_benchmark.py [--evaluations 2000] [--fits 7] [--cases cbpp bernoulli grouseticks crossed]

Cases: lme4's cbpp, ``cbind(incidence, size - incidence) ~ period + (1 | herd)`` (binomial, 56
rows, 15 herds); a simulated Bernoulli ``y ~ x + (x | g)`` with 100,000 rows and 2,000
groups (correlated intercept and slope); lme4's grouseticks, ``TICKS ~ YEAR + scale(HEIGHT) +
(1 | BROOD) + (1 | INDEX) + (1 | LOCATION)`` (Poisson, 403 rows, three factors: 403 x 118 x 63
levels, a dense rest block of 181); and a simulated crossed Poisson ``y ~ x + (1 | a) + (1 | b)``
(20,000 rows, 300 x 100 levels, SDs 0.5 and 0.3). For each:

- one evaluation: the mode (:meth:`~bayesmix.linalg.pirls.WarmModes.solve`) and the gradient
  (:meth:`~bayesmix.linalg.pirls.WarmModes.gradient`) at a point of a random walk around the ML
  estimates in (θ, β) (steps of 0.01 per coordinate, as along a sampler's trajectory), each
  warm-started from the last mode; the median over the walk. The two paths take the same walk,
  in alternating blocks of 50 evaluations (so that both see the same load);
- one evaluation of ``method="laplace"``'s log density and its gradient
  (:meth:`~bayesmix.bayes.embedded_laplace.LaplaceDensity.log_density`, what NUTS calls) along
  a random walk from the priors' centre in the unconstrained coordinates (steps of 0.02); with
  several factors also the general path with BLAS on its default threads (how
  ``method="laplace"`` sampled before it took one BLAS thread, :mod:`bayesmix.threads`);
- the ML fit, ``bm.Model(...).fit_ml()``: the median over ``--fits`` fits of each path,
  alternating, after one untimed round; the general path by giving the fit a
  ``WarmModes(compiled=False)``.

Everything else runs on one BLAS thread, as the fits and the sampler do. Times are CPU time of
the process (``time.process_time``): on a machine shared with other jobs, wall time mostly
measures the wait for a core. Prints a Markdown table (paste it into benchmarks/RESULTS.md).
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
from threadpoolctl import threadpool_limits

import bayesmix as bm
from bayesmix.bayes.embedded_laplace import laplace_density
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, structure_of, term_labels
from bayesmix.linalg.pirls import GlmmRows, WarmModes
from bayesmix.reml import laplace
from bayesmix.threads import one_blas_thread

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


def grouseticks() -> tuple[str, str, pd.DataFrame, bm.Poisson]:
    data = pd.read_csv(REFERENCE / "grouseticks.csv", dtype={"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})
    return ("grouseticks (403 rows, (1 | BROOD) + (1 | INDEX) + (1 | LOCATION))",
            "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", data, bm.Poisson())


def crossed(n: int = 20_000, levels: tuple[int, int] = (300, 100), seed: int = 2) -> tuple[str, str, pd.DataFrame, bm.Poisson]:
    rng = np.random.default_rng(seed)
    a, b = rng.integers(0, levels[0], n), rng.integers(0, levels[1], n)
    x = rng.normal(size=n)
    eta = 0.5 + 0.3 * x + rng.normal(0.0, 0.5, levels[0])[a] + rng.normal(0.0, 0.3, levels[1])[b]
    data = pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "a": a.astype(str), "b": b.astype(str)})
    return (f"crossed Poisson ({n:,} rows, {levels[0]} x {levels[1]} levels, (1 | a) + (1 | b))", "y ~ x + (1 | a) + (1 | b)", data,
            bm.Poisson())


CASES = {"cbpp": (cbpp, False), "bernoulli": (bernoulli, True), "grouseticks": (grouseticks, False), "crossed": (crossed, True)}


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
    """Seconds per evaluation (solve + gradient) for each path (compiled: True), in alternating blocks."""
    modes = {True: WarmModes(rows), False: WarmModes(rows, compiled=False)}
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


def density_times(design, count: int, seed: int = 0, threads: bool = False) -> dict[object, list[float]]:
    """Seconds per evaluation of method="laplace"'s log density for each path, in alternating
    blocks; with ``threads`` also the general path with BLAS on its default threads ("threads")."""
    labels, layouts = term_labels(design), group_layouts(design)
    density = laplace_density(design, resolve_priors(design, labels, None), labels, layouts, coords(design, layouts))
    rng = np.random.default_rng(seed)
    points = [density.init(seed) * 0.3]
    for _ in range(count - 1):
        points.append(points[-1] + rng.normal(0.0, 0.02, points[-1].size))
    modes = {True: WarmModes(density.rows), False: WarmModes(density.rows, compiled=False)}
    if threads:
        modes["threads"] = WarmModes(density.rows, compiled=False)
    times: dict[object, list[float]] = {path: [] for path in modes}
    for path in modes:
        density.log_density(points[0], modes[path])
    for start in range(0, count, BLOCK):
        for path in modes:
            with one_blas_thread() if path != "threads" else threadpool_limits(limits=os.cpu_count(), user_api="blas"):
                for x in points[start : start + BLOCK]:
                    t0 = time.process_time()
                    density.log_density(x, modes[path])
                    times[path].append(time.process_time() - t0)
    return times


def fit_times(model: bm.Model, fits: int) -> tuple[dict[bool, list[float]], dict[bool, object]]:
    times: dict[bool, list[float]] = {True: [], False: []}
    results = {}
    general = functools.partial(WarmModes, compiled=False)
    for round_ in range(fits + 1):  # the first round loads the kernels, untimed
        for compiled in (True, False):
            laplace.WarmModes = WarmModes if compiled else general
            try:
                t0 = time.process_time()
                results[compiled] = model.fit_ml()
                if round_ > 0:
                    times[compiled].append(time.process_time() - t0)
            finally:
                laplace.WarmModes = WarmModes
    return times, results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--evaluations", type=int, default=2000,
                        help="evaluations per path on the small cases (a tenth on the large ones)")
    parser.add_argument("--fits", type=int, default=7, help="ML fits per path (half on the large cases)")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=list(CASES))
    args = parser.parse_args()
    print(f"{time.strftime('%Y-%m-%d %H:%M', time.gmtime())} UTC, {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, numba {numba.__version__}")
    print()
    print("| case | path | evaluation, general (median) | evaluation, compiled (median) | ratio "
          "| PIRLS steps per evaluation (general / compiled) "
          "| log density, general on default BLAS threads | log density, general | log density, compiled | ratio "
          "| ML fit, general (median) | ML fit, compiled (median) | ratio | logLik general / compiled |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    start = time.process_time()
    for case in args.cases:
        make, large = CASES[case]
        name, formula, data, family = make()
        model = bm.Model(formula, data, family=family)
        design = model.design
        rows = GlmmRows.of(structure_of(design), design.rows.X, design.rows.y, design.rows.weights, design.rows.offset, family)
        several = len(rows.structure.blocks) > 1
        fits = max(1, args.fits // 2) if large else args.fits
        ftimes, results = fit_times(model, fits)
        fit = results[True].fit
        count = max(BLOCK, args.evaluations // 10) if large else args.evaluations
        with one_blas_thread():
            etimes = evaluation_times(rows, walk(fit.theta, fit.beta, count))
            steps = {}
            for compiled in (True, False):  # PIRLS steps per evaluation along the walk, untimed
                warm = WarmModes(rows, compiled=compiled)
                for theta, beta in walk(fit.theta, fit.beta, min(count, 200)):
                    warm.mode = warm.solve(theta, beta, None)
                steps[compiled] = warm.iterations / warm.evaluations
        dtimes = density_times(design, count, threads=several)
        old, new = statistics.median(etimes[False]), statistics.median(etimes[True])
        dold, dnew = statistics.median(dtimes[False]), statistics.median(dtimes[True])
        dthreads = f"{statistics.median(dtimes['threads']) * 1e3:.3f} ms" if several else "(no dense block)"
        fold, fnew = statistics.median(ftimes[False]), statistics.median(ftimes[True])
        print(f"| {name.replace('|', chr(92) + '|')} | {WarmModes(rows).path} | {old * 1e3:.3f} ms | {new * 1e3:.3f} ms | {old / new:.1f}x "
              f"| {steps[False]:.2f} / {steps[True]:.2f} "
              f"| {dthreads} | {dold * 1e3:.3f} ms | {dnew * 1e3:.3f} ms | {dold / dnew:.1f}x "
              f"| {fold * 1e3:.0f} ms | {fnew * 1e3:.0f} ms | {fold / fnew:.1f}x "
              f"| {results[False].fit.log_likelihood:.6f} / {results[True].fit.log_likelihood:.6f} |")
    print()
    print(f"load average at the end {os.getloadavg()[0]:.1f}; CPU time of the run {time.process_time() - start:.0f} s")


if __name__ == "__main__":
    main()
