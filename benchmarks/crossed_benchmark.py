"""Crossed REML at InstEval's size: bayesmix against lme4 (run by Rscript in the same script).

Run from the repository root:

    Rscript benchmarks/insteval_export.R --out /tmp/insteval.csv     # lme4's InstEval, not committed
    PYTHONPATH=. .venv/bin/python benchmarks/crossed_benchmark.py --data /tmp/insteval.csv [--profile]

Without ``--data`` a data set of InstEval's shape is simulated (73,421 rows; 2,972 students s,
1,128 instructors d, each in one of 14 departments; a binary ``service``). Models:

- ``y ~ service + (1 | s) + (1 | d) + (1 | dept:service)`` (MixedModels.jl's InstEval benchmark);
- ``y ~ 1 + (1 | s) + (1 | d) + (1 | dept)``.

For each: bayesmix's REML fit on a built design ("fit", median of ``--repeats``) and from the
DataFrame ("end to end": formula, design, fit), with the CPU time of the fit beside its wall
time (the machine is shared: CPU time is nearer what the fit takes on an idle core), its
criterion evaluations (Newton steps with the average-information curvature and the exact
gradient), and as a peer in the same process the same criterion minimised by L-BFGS-B with the
exact gradient (bayesmix's optimiser for crossed designs before), its evaluations and the time
of the optimisation alone; lme4 1.1's ``lmer``
(``benchmarks/crossed_lme4.R``: fit on data already read, and end to end from the CSV). The
data are read once, as strings; end to end starts from that DataFrame. statsmodels' MixedLM has
no crossed random effects (only variance components within one group, here a single group of
73,421 rows with dense n x n algebra), so it is not run. ``--profile`` prints the top of
cProfile for one fit. Prints Markdown rows for benchmarks/RESULTS.md.

``--large`` runs the case of 1,000,000 rows with 20,000 students x 20,000 instructors instead
(simulated, seed fixed; :func:`simulate_large`): each department has 100 students and 100
instructors, and a student's ratings are of instructors of their department but for a fraction
``--across`` (default 0.002) of instructors anywhere. The dense block of the blocked path would be
20,000 x 20,000 (3.2 GB, three of them at once), so bayesmix takes the sparse path (CHOLMOD);
each fit runs in its own process, for its peak resident memory (``ru_maxrss``): bayesmix's REML
fit ("fit": on a built design; "end to end": from the DataFrame) and lme4's ``lmer`` on the same
data written to /tmp; and, as a peer that both paths can handle, the same design scaled down
(``--scaled-levels``, default 4,000 x 4,000 on 200,000 rows) by the blocked and the sparse path.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayesmix as bm
from bayesmix.data.layout import structure_of
from bayesmix.threads import one_blas_thread
from bayesmix.reml.criterion import profiled_criterion
from bayesmix.reml.optimize import LBFGSB, optimize_theta

HERE = Path(__file__).resolve().parent
MODELS = (
    "y ~ service + (1 | s) + (1 | d) + (1 | dept:service)",
    "y ~ 1 + (1 | s) + (1 | d) + (1 | dept)",
)
COLUMNS = {"s": str, "d": str, "dept": str, "service": str}


def simulate(seed: int = 1, n: int = 73_421, students: int = 2_972, instructors: int = 1_128, departments: int = 14) -> pd.DataFrame:
    """A data set of InstEval's shape: random student-instructor pairs, instructors in departments."""
    rng = np.random.default_rng(seed)
    s, d = rng.integers(0, students, n), rng.integers(0, instructors, n)
    dept = rng.integers(0, departments, instructors)[d]
    service = rng.random(n) < 0.43
    y = 3.2 - 0.07 * service + rng.normal(0, 0.32, students)[s] + rng.normal(0, 0.51, instructors)[d]
    y += rng.normal(0, 0.11, (departments, 2))[dept, service.astype(int)] + rng.normal(0, 1.18, n)
    return pd.DataFrame({"s": s.astype(str), "d": d.astype(str), "dept": dept.astype(str),
                         "service": service.astype(int).astype(str), "y": y})


def simulate_large(seed: int = 2, n: int = 1_000_000, students: int = 20_000, instructors: int = 20_000,
                   departments: int = 200, across: float = 0.002, effects_seed: int | None = None) -> pd.DataFrame:
    """Students x instructors within departments (``students / departments`` of each per
    department), a fraction ``across`` of the ratings given to an instructor of any department;
    ``y ~ service + (1 | s) + (1 | d)`` with InstEval's variance components. The effects are
    drawn after the rows from ``seed``'s generator, or, with ``effects_seed``, from their own,
    so that data written part by part (a ``seed`` per part) share them."""
    rng = np.random.default_rng(seed)
    s = rng.integers(0, students, n)
    per = instructors // departments
    home = s * departments // students
    d = np.where(rng.random(n) < across, rng.integers(0, instructors, n), home * per + rng.integers(0, per, n))
    service = rng.random(n) < 0.43
    effects = rng if effects_seed is None else np.random.default_rng(effects_seed)
    u_s, u_d = effects.normal(0, 0.32, students), effects.normal(0, 0.51, instructors)
    y = 3.2 - 0.07 * service + u_s[s] + u_d[d] + rng.normal(0, 1.18, n)
    return pd.DataFrame({"s": s.astype(str), "d": d.astype(str), "dept": (d // per).astype(str),
                         "service": service.astype(int).astype(str), "y": y})


LARGE_MODEL = "y ~ service + (1 | s) + (1 | d)"


def large_child(csv: Path, factorization: str) -> dict:
    """One bayesmix REML fit of ``LARGE_MODEL`` on the CSV (run in a child process of its own):
    the design's time, the fit's wall and CPU time, the end-to-end time, and what the fit found."""
    data = pd.read_csv(csv, dtype=COLUMNS)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start = time.perf_counter()
        design = bm.make_design(LARGE_MODEL, data)
        design_s = time.perf_counter() - start
        wall, cpu = time.perf_counter(), time.process_time()
        fit = bm.fit_reml(design, factorization=factorization)
        fit_s, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu
    opt = fit.optsummary
    return {"design_s": design_s, "fit_s": fit_s, "fit_cpu_s": fit_cpu, "e2e_s": design_s + fit_s, "criterion": opt.fmin,
            "evaluations": opt.evaluations, "iterations": opt.iterations, "factorization": opt.factorization,
            "theta": opt.final.tolist(), "sigma": fit.sigma}


def measured(command: list[str]) -> tuple[str, float]:
    """Run ``command`` in a child of a child and return its output and its peak resident memory in GB."""
    wrapper = ("import resource, subprocess, sys; out = subprocess.run(sys.argv[1:], capture_output=True, text=True, check=True); "
               "sys.stdout.write(out.stdout); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")
    out = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(HERE.parent)})
    lines = out.stdout.strip().splitlines()
    return lines[-2], int(lines[-1]) / 2**20  # ru_maxrss is in KiB on Linux


def large_runs(args) -> None:
    """The 1,000,000-row case and its peers (see the module docstring); prints Markdown rows."""
    rows = {"large": simulate_large(across=args.across)}
    levels = args.scaled_levels
    rows["scaled"] = simulate_large(n=50 * levels, students=levels, instructors=levels, departments=levels // 100, across=args.across)
    csvs = {}
    for key, data in rows.items():
        csvs[key] = Path(tempfile.gettempdir()) / f"bayesmix_crossed_{key}.csv"
        data.to_csv(csvs[key], index=False)
    large = rows["large"]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}, numpy {np.__version__}; `{LARGE_MODEL}`, "
          f"{len(large)} rows, {large.s.nunique()} s x {large.d.nunique()} d, across = {args.across}\n")
    print("| data | run | factorisation | design | fit (CPU) | end to end | peak memory | evaluations | REML criterion |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    runs = [("large", "sparse"), ("scaled", "sparse"), ("scaled", "blocked")]
    for key, factorization in runs:
        text, peak = measured([sys.executable, str(Path(__file__).resolve()), "--child", str(csvs[key]), factorization])
        r = json.loads(text)
        data = rows[key]
        print(f"| {len(data):,} rows, {data.s.nunique():,} x {data.d.nunique():,} | bayesmix | {r['factorization']} "
              f"| {r['design_s']:.1f} s | {r['fit_s']:.1f} s ({r['fit_cpu_s']:.1f} s) | {r['e2e_s']:.1f} s | {peak:.2f} GB "
              f"| {r['evaluations']} ({r['iterations']} iterations) | {r['criterion']:.4f} |", flush=True)
    if not args.skip_lme4:
        for key in ("scaled", "large"):
            text, peak = measured(["Rscript", str(HERE / "crossed_lme4.R"), str(csvs[key]), LARGE_MODEL, "1"])
            r = json.loads(text)
            data = rows[key]
            print(f"| {len(data):,} rows, {data.s.nunique():,} x {data.d.nunique():,} | lme4 {r['lme4']} | CHOLMOD (Matrix) "
                  f"| | {r['fit_seconds']:.1f} s ({r['fit_cpu_seconds']:.1f} s) | {r['end_to_end_seconds']:.1f} s "
                  f"| {peak:.2f} GB | {r['evaluations']} | {r['criterion']:.4f} |", flush=True)
    for csv in csvs.values():
        csv.unlink()


def median_time(fn, repeats: int, clock=time.perf_counter):
    times, out = [], None
    for _ in range(repeats):
        start = clock()
        out = fn()
        times.append(clock() - start)
    return statistics.median(times), out


def bayesmix_runs(formula: str, data: pd.DataFrame, repeats: int) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = bm.make_design(formula, data)
        bm.fit_reml(design)  # load the compiled kernels
        fit_s, fit = median_time(lambda: bm.fit_reml(design), repeats)
        cpu_s, _ = median_time(lambda: bm.fit_reml(design), repeats, time.process_time)
        e2e_s, _ = median_time(lambda: bm.fit_reml(bm.make_design(formula, data)), repeats)
        structure = structure_of(design)
        exact = profiled_criterion(design, structure, True)
        with one_blas_thread():  # the same optimisation by L-BFGS-B (bayesmix's optimiser before the Newton steps)
            wall, cpu = time.perf_counter(), time.process_time()
            peer = profiled_criterion(design, structure, True)
            peer_summary = optimize_theta(peer, minimizer=LBFGSB(peer))
            peer_s, peer_cpu_s = time.perf_counter() - wall, time.process_time() - cpu
        with one_blas_thread():  # one evaluation, and one with gradient and curvature, near the optimum (medians of 5)
            value_s = statistics.median(
                median_time(lambda: exact(fit.optsummary.final * (1.0 + 1e-3 * k)), 1)[0] for k in range(1, 6)
            )  # distinct points: the criterion keeps the factor at its lowest value
            gradient_s = statistics.median(
                median_time(lambda: exact.value_gradient_curvature(fit.optsummary.final * (1.0 - 1e-3 * k)), 1)[0]
                for k in range(1, 6)
            )
    return {
        "fit_s": fit_s, "cpu_s": cpu_s, "e2e_s": e2e_s, "criterion": fit.optsummary.fmin, "evaluations": fit.optsummary.evaluations,
        "iterations": fit.optsummary.iterations, "method": fit.optsummary.method,
        "peer_s": peer_s, "peer_cpu_s": peer_cpu_s, "peer_evaluations": peer_summary.evaluations, "peer_criterion": peer_summary.fmin,
        "value_ms": 1e3 * value_s, "value_gradient_ms": 1e3 * gradient_s, "theta": fit.optsummary.final,
    }


def lme4_run(formula: str, csv: Path, repeats: int) -> dict:
    out = subprocess.run(["Rscript", str(HERE / "crossed_lme4.R"), str(csv), formula, str(repeats)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile(formula: str, data: pd.DataFrame, top: int = 15) -> str:
    design = bm.make_design(formula, data)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bm.fit_reml(design)
        profiler = cProfile.Profile()
        profiler.enable()
        bm.fit_reml(bm.make_design(formula, data))
        profiler.disable()
    stream = io.StringIO()
    pstats.Stats(profiler, stream=stream).sort_stats("tottime").print_stats(top)
    return stream.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, help="InstEval as CSV (benchmarks/insteval_export.R); simulated when absent")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lme4-repeats", type=int, default=1)
    parser.add_argument("--skip-lme4", action="store_true")
    parser.add_argument("--profile", action="store_true", help="print cProfile's top functions for one end-to-end fit")
    parser.add_argument("--large", action="store_true", help="the 1,000,000-row case with 20,000 x 20,000 crossed levels")
    parser.add_argument("--across", type=float, default=0.002, help="--large: fraction of ratings across departments")
    parser.add_argument("--scaled-levels", type=int, default=4_000, help="--large: levels of each factor in the scaled-down peer")
    parser.add_argument("--child", nargs=2, metavar=("CSV", "FACTORIZATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(large_child(Path(args.child[0]), args.child[1])))
        return
    if args.large:
        large_runs(args)
        return
    if args.data is None:
        data = simulate()
        handle, name = tempfile.mkstemp(suffix=".csv")
        os.close(handle)
        csv = Path(name)
        data.to_csv(csv, index=False)
        source = "simulated, InstEval's shape"
    else:
        csv = args.data
        data = pd.read_csv(csv, dtype=COLUMNS)
        source = "lme4's InstEval"
    data = data[list(COLUMNS) + ["y"]]
    print(f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; {platform.machine()} {platform.processor() or ''}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, "
          f"numpy {np.__version__}, bayesmix {bm.__version__}; data: {source} ({len(data)} rows, "
          f"{data.s.nunique()} s x {data.d.nunique()} d, {data.dept.nunique()} dept)\n")
    print("| model | bayesmix fit (CPU) | bayesmix end to end | evaluations (Newton, average information) "
          "| one evaluation / with gradient and curvature | L-BFGS-B (exact gradient): evaluations, optimisation (CPU) | lme4 fit (CPU) | lme4 end to end | lme4 evaluations | REML criterion "
          "(bayesmix / lme4) | speed-up (fit, end to end) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for formula in MODELS:
        ours = bayesmix_runs(formula, data, args.repeats)
        theirs = None if args.skip_lme4 else lme4_run(formula, csv, args.lme4_repeats)
        lme4_cols = ("not run",) * 3 if theirs is None else (
            f"{theirs['fit_seconds']:.2f} s ({theirs['fit_cpu_seconds']:.2f} s)", f"{theirs['end_to_end_seconds']:.2f} s", str(theirs["evaluations"]))
        crit = f"{ours['criterion']:.4f}" + ("" if theirs is None else f" / {theirs['criterion']:.4f}")
        speed = "" if theirs is None else (f"{theirs['fit_seconds'] / ours['fit_s']:.0f}x ({theirs['fit_cpu_seconds'] / ours['cpu_s']:.0f}x CPU), "
                                           f"{theirs['end_to_end_seconds'] / ours['e2e_s']:.0f}x")
        cell = formula.replace("|", "\\|")  # a bar inside a table cell
        print(f"| `{cell}` | {ours['fit_s']:.2f} s ({ours['cpu_s']:.2f} s) | {ours['e2e_s']:.2f} s | {ours['evaluations']} ({ours['iterations']} iterations) "
              f"| {ours['value_ms']:.0f} ms / {ours['value_gradient_ms']:.0f} ms "
              f"| {ours['peer_evaluations']}, {ours['peer_s']:.2f} s ({ours['peer_cpu_s']:.2f} s) "
              f"| {' | '.join(lme4_cols)} | {crit} | {speed} |", flush=True)
    if args.profile:
        print("\ncProfile of one end-to-end fit of", MODELS[0])
        print(profile(MODELS[0], data))
    if args.data is None:
        csv.unlink()


if __name__ == "__main__":
    sys.exit(main())
