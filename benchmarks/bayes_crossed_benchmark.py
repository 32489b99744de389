"""The collapsed sampler for several grouping factors at InstEval's size: the cost of one
evaluation of its density, and the posterior against the full sampler's.

Run from the repository root:

    Rscript benchmarks/insteval_export.R --out /tmp/insteval.csv     # lme4's InstEval, not committed
    PYTHONPATH=. .venv/bin/python benchmarks/bayes_crossed_benchmark.py --data /tmp/insteval.csv \
        [--evaluations] [--sample collapsed full] [--draws 1000 --tune 1000] [--full-draws 200 --full-tune 200]

Without ``--data`` a data set of InstEval's shape is simulated (``crossed_benchmark.simulate``).
The model is MixedModels.jl's ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)``
(2,972 students, 1,128 instructors and 28 department x service cells: a dense 1,156 x 1,156
block after the students in the blocked factor).

``--evaluations``: milliseconds per evaluation of the log density and its gradient at points of
a random walk (steps 0.01 from the start of chain 0), on the crossed Gaussian design of
``bayes_glmm_benchmark.py`` (20,000 rows, 300 x 100 levels) and on the InstEval model: the
compiled density (``FactorsDensity.log_density``, :mod:`bayesmix.linalg.factored`) against the
Python path it replaced (the same algebra as numpy and scipy calls around compiled kernels:
:func:`~bayesmix.linalg.collapsed.factored_loglik`), alternating in blocks in the same process;
CPU time of the process (one BLAS thread) and wall time, medians of the blocks; then the wall
time of the same evaluations spread over 4 threads (as nutpie's 4 chains call them), which
shows whether the evaluations run in parallel (the GIL released) or one after the other; and
the posterior variables at a draw, with the random effects drawn (a factorisation and one
back-substitution; the compiled density reuses the factor of its last evaluation when that was
at the draw's θ, which here it is not).

``--costs``: CPU ms per evaluation of the fully collapsed density (``collapse="all"``) against
the partially collapsed one (``collapse="largest"``: the first factor's effects integrated out,
the others sampled; :mod:`bayesmix.bayes.partially_collapsed`) on both designs, the figures
behind ``collapse="auto"``'s rule.

``--sample``: 4 chains x ``--draws`` (1000) draws of the collapsed Gibbs sampler (``gibbs``:
``method="gibbs"``, what ``"auto"`` chooses for InstEval; ``--tune`` sweeps discarded), of the fully collapsed sampler (``collapsed``:
``method="collapsed", collapse="all"``), of the partially collapsed one (``collapsed-largest``:
``collapse="largest"``), of the fully collapsed sampler with
the Python path as its density (``collapsed-python``: the sampler as it was) and of the full
sampler on the same model (``full``: ``method="full"``, its default parameterization), the latter
with ``--full-draws`` and ``--full-tune`` (it is slow at this
size: ESS per second is what is compared), on the InstEval model or (``--design crossed``) the
300 x 100 crossed design. Minimum bulk ESS over the population parameters (β, σ, the SDs) and over every
parameter and random effect, divergences, R-hat, wall and CPU time.
Prints Markdown rows for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
from dataclasses import fields
import os
import statistics
import sys
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.bayes import BayesModel, full_density
from bayesmix.bayes.collapsed_factors import FactorsDensity
from bayesmix.bayes.density import chain_rule, population
from bayesmix.linalg.collapsed import draw_factored_effects, factored_loglik
from bayesmix.linalg.factorization import factorize
from bayesmix.threads import one_blas_thread

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bayes_glmm_benchmark import cpu_seconds, load, versions  # noqa: E402
from crossed_benchmark import COLUMNS, MODELS, simulate  # noqa: E402

FORMULA = MODELS[0]


def python_log_density(density, x):
    """The log density as it was computed before :mod:`bayesmix.linalg.factored`: numpy and
    scipy around compiled kernels, holding the GIL between them."""
    beta, sigma, sd, R, lp, grad = population(x, density.blob)
    theta_c = density.theta_map.theta(sd[:, None] * R)
    value, d_beta, d_theta, d_sigma, _ = factored_loglik(density.structure, density.cross_products,
                                                         beta - density.shift, theta_c, sigma)
    chain_rule(x, density.blob, grad, sigma, sd, R, d_beta, density.theta_map.d_C(d_theta, R.shape[0]), d_sigma)
    return value + lp, grad


def python_draw(density, x, rng):
    """The posterior variables at x as before: a new factorisation, then the back-substitution."""
    beta, sigma, _, _, theta_c, _, _ = density.parameters(x)
    f = factorize(density.structure, density.cross_products, theta_c / sigma)
    u1, u2 = draw_factored_effects(f, beta - density.shift, sigma, rng)
    u = np.concatenate([u1.ravel(), u2])
    return full_density.posterior_variables(density.blob, density.variables, density.structure, x, u / sigma)


def walk(density, count: int, seed: int = 1) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    x = density.init(0)
    points = []
    for _ in range(count):
        x = x + 0.01 * rng.standard_normal(x.size)
        points.append(x.copy())
    return points


def per_evaluation(fn, points, blocks: int) -> tuple[float, float]:
    """Median over blocks of (CPU ms, wall ms) per call of fn over the points."""
    cpu, wall = [], []
    for _ in range(blocks):
        c, w = time.process_time(), time.perf_counter()
        for x in points:
            fn(x)
        cpu.append((time.process_time() - c) / len(points) * 1e3)
        wall.append((time.perf_counter() - w) / len(points) * 1e3)
    return statistics.median(cpu), statistics.median(wall)


def threaded_wall(fn, points, threads: int = 4) -> float:
    """Wall ms per evaluation when ``threads`` threads each evaluate all the points."""
    workers = [threading.Thread(target=lambda: [fn(x) for x in points]) for _ in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return (time.perf_counter() - start) / (threads * len(points)) * 1e3


def evaluations(designs: dict, counts: dict) -> None:
    print("| design | path | CPU ms / evaluation | wall ms / evaluation | wall ms / evaluation, 4 threads | "
          "CPU ms / draw of the posterior variables | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (formula, data) in designs.items():
        density = BayesModel(bm.make_design(formula, data), collapse="all")._sampler._compiled
        points = walk(density, counts[name])
        compiled = lambda x: density.log_density(x)  # noqa: E731
        python = lambda x: python_log_density(density, x)  # noqa: E731
        for fn in (compiled, python):  # compile or load every kernel first
            fn(points[0])
        value, grad = compiled(points[0])
        ref_value, ref_grad = python(points[0])
        assert abs(value - ref_value) <= 1e-9 * abs(ref_value) and np.allclose(grad, ref_grad, rtol=1e-9, atol=1e-9)
        rng = np.random.default_rng(2)
        results = {"compiled": [], "Python": []}
        load_before = os.getloadavg()[0]
        with one_blas_thread():
            for _ in range(3):  # alternate, so that both see the same load
                results["compiled"].append(per_evaluation(compiled, points, 1))
                results["Python"].append(per_evaluation(python, points, 1))
            threaded = {"compiled": threaded_wall(compiled, points[: max(1, len(points) // 4)]),
                        "Python": threaded_wall(python, points[: max(1, len(points) // 4)])}
            draws = {}
            for label, draw in (("compiled", lambda x: density.draw(x, rng)), ("Python", lambda x: python_draw(density, x, rng))):
                draw(points[-1])  # a θ other than the last evaluation's: the draws below factor again
                start = time.process_time()
                for x in points[:10]:
                    draw(x)
                draws[label] = (time.process_time() - start) / 10 * 1e3
        for label, runs in results.items():
            cpu = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"| {name} | {label} | {cpu:.2f} | {wall:.2f} | {threaded[label]:.2f} | {draws[label]:.1f} | "
                  f"{load_before:.1f} |")
        sys.stdout.flush()


def costs(designs: dict, count: int = 20) -> None:
    """CPU ms per evaluation of the fully collapsed density (``collapse="all"``) and of the
    partially collapsed one (``collapse="largest"``) at points of a random walk from each one's
    start, alternating in the same process: what the rule of ``collapse="auto"`` weighs."""

    print("| design | rows | dense block m | fully collapsed, CPU ms / evaluation | partially collapsed, CPU ms / "
          "evaluation | ratio | load before |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, (formula, data) in designs.items():
        design = bm.make_design(formula, data)
        densities = {c: BayesModel(design, method="collapsed", collapse=c)._sampler._compiled for c in ("all", "largest")}
        structure = BayesModel(design, method="collapsed", collapse="all")._structure
        load_before = os.getloadavg()[0]
        results = {c: [] for c in densities}
        with one_blas_thread():
            for c, density in densities.items():
                density.log_density(density.init(0))
            for _ in range(3):
                for c, density in densities.items():
                    results[c].append(per_evaluation(density.log_density, walk(density, count), 1)[0])
        full, partial = (statistics.median(results[c]) for c in ("all", "largest"))
        print(f"| {name} | {design.n} | {structure.dense_block_size} | {full:.2f} | {partial:.2f} | {full / partial:.1f}x | "
              f"{load_before:.1f} |")
        sys.stdout.flush()


class PythonPathDensity(FactorsDensity):
    """The collapsed density as it was before :mod:`bayesmix.linalg.factored` (the peer of the
    before/after comparison): :func:`python_log_density` and :func:`python_draw`."""

    def log_density(self, x):
        return python_log_density(self, np.asarray(x, float))

    def draw(self, x, rng):
        return python_draw(self, np.asarray(x, float), rng)


SAMPLERS = {"gibbs": ("gibbs", "auto"), "collapsed": ("collapsed", "all"), "collapsed-largest": ("collapsed", "largest"),
            "collapsed-python": ("collapsed", "all"), "full": ("full", "auto")}
"""--sample's choices: (method, collapse)."""


def sample(formula: str, data: pd.DataFrame, sampler: str, draws: int, tune: int, seed: int,
           parameterization: str = "auto") -> dict:
    load_before = os.getloadavg()[0]
    start, cpu = time.perf_counter(), cpu_seconds()
    method, collapse = SAMPLERS[sampler]
    model = BayesModel(bm.make_design(formula, data), method=method, collapse=collapse,
                       parameterization="auto" if sampler == "full" else parameterization)
    if sampler == "collapsed-python":
        density = model._sampler._compiled
        model._sampler._compiled = PythonPathDensity(**{f.name: getattr(density, f.name) for f in fields(density) if f.init})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = model.sample(draws=draws, tune=tune, chains=4, seed=seed, progressbar=False)
    wall, cpu = time.perf_counter() - start, cpu_seconds() - cpu
    summary = post.summary()  # the population parameters: fixed effects, SDs, sigma
    d = post.diagnostics()
    stats = post.idata["sample_stats"]
    steps = float(stats["n_steps"].mean()) if "n_steps" in stats else float("nan")  # none for Gibbs sweeps
    return {"sampler": sampler, "method": post.method, "steps_per_draw": steps, "draws": draws, "tune": tune, "wall": wall, "cpu": cpu,
            "sampling": post.sampling_seconds, "compile": post.compile_seconds,
            "ess_population": float(summary["ess_bulk"].min()), "ess_all": d["min_ess_bulk"],
            "rhat_population": float(summary["r_hat"].max()), "rhat": d["max_rhat"], "divergences": d["divergences"],
            "load_before": load_before,
            "load_after": os.getloadavg()[0],
            "means": summary["mean"].to_dict()}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", type=Path, help="InstEval as CSV (benchmarks/insteval_export.R); simulated when absent")
    parser.add_argument("--evaluations", action="store_true")
    parser.add_argument("--costs", action="store_true",
                        help="CPU ms per evaluation, fully against partially collapsed, on both designs")
    parser.add_argument("--design", choices=["insteval", "crossed"], default="insteval",
                        help="what --sample samples: the InstEval model, or the 300 x 100 crossed design")
    parser.add_argument("--sample", nargs="*", choices=list(SAMPLERS), default=[],
                        help="gibbs, collapsed (compiled), collapsed-largest, collapsed-python (the path it replaced), full")
    parser.add_argument("--draws", type=int, default=1000, help="per chain, collapsed")
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--full-draws", type=int, default=1000)
    parser.add_argument("--full-tune", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--parameterization", default="auto", choices=["auto", "centred", "noncentred"],
                        help="of the collapsed samplers' sampled effects (the full sampler keeps auto)")
    args = parser.parse_args()
    data = simulate() if args.data is None else pd.read_csv(args.data, dtype=COLUMNS)
    source = "simulated, InstEval's shape" if args.data is None else "lme4's InstEval"
    crossed = ("y ~ x + (1 | a) + (1 | b)", load("crossed"))
    print(versions())
    print(f"InstEval model `{FORMULA}` ({source}, {len(data)} rows)")
    print()
    if args.evaluations:
        evaluations({"crossed 300 x 100 (20,000 rows)": crossed, "InstEval": (FORMULA, data)},
                    {"crossed 300 x 100 (20,000 rows)": 200, "InstEval": 12})
        print()
    if args.costs:
        costs({"crossed 300 x 100 (20,000 rows)": crossed, "InstEval": (FORMULA, data)})
        print()
    formula, frame = (FORMULA, data) if args.design == "insteval" else crossed
    results = {}
    for sampler in args.sample:
        draws, tune = (args.full_draws, args.full_tune) if sampler == "full" else (args.draws, args.tune)
        results[sampler] = r = sample(formula, frame, sampler, draws, tune, args.seed, args.parameterization)
        print(sampler, r)
        sys.stdout.flush()
    if results:
        print()
        print(f"`{formula}`, {len(frame)} rows, seed {args.seed}, parameterization {args.parameterization!r} "
              "(collapsed samplers)")
        print()
        print("| sampler | draws x chains (tuning) | wall s | compile s | sampling s | CPU s | leapfrog steps per draw | "
              "min bulk ESS, population | min bulk ESS, all | ESS (all) per wall s | ESS (all) per CPU s | "
              "vs full (wall, CPU) | divergences | max R-hat, population | max R-hat, all | load before, after |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        full = results.get("full")
        for sampler, r in results.items():
            rate, per_cpu = r["ess_all"] / r["wall"], r["ess_all"] / r["cpu"]
            ratio = "" if full is None else (f"{rate / (full['ess_all'] / full['wall']):.1f}x, "
                                             f"{per_cpu / (full['ess_all'] / full['cpu']):.1f}x")
            print(f"| {sampler} | {r['draws']} x 4 ({r['tune']}) | {r['wall']:.0f} | {r['compile']:.1f} | "
                  f"{r['sampling']:.0f} | {r['cpu']:.0f} | {r['steps_per_draw']:.1f} | {r['ess_population']:.0f} | "
                  f"{r['ess_all']:.0f} | {rate:.2f} | {per_cpu:.3f} | {ratio} | {r['divergences']} | "
                  f"{r['rhat_population']:.3f} | {r['rhat']:.3f} | {r['load_before']:.1f}, {r['load_after']:.1f} |")


if __name__ == "__main__":
    main()
