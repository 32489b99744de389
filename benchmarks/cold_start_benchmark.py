"""A new user's first waits: ``bayesmix --help``, and the first Bayesian fit on a cold numba cache.

Run from the repository root:

    .venv/bin/python benchmarks/cold_start_benchmark.py [--runs 5] [--models gaussian,binomial,...] [--before PATH]

``--help``: the command's own code (``python -m bayesmix.cli --help``, what the installed
``bayesmix`` script runs) in a fresh interpreter, against a bare interpreter (``python -c pass``)
and ``python -c "import pandas"`` as peers, runs interleaved, median of ``--runs``.

The first fit: each model is fitted in a fresh interpreter with an empty numba cache directory
(``NUMBA_CACHE_DIR``), so that every bayesmix kernel it needs is compiled, then again in a new
interpreter with that cache (warm: the kernels are loaded), the peer. Each run imports bayesmix,
builds the model, and samples 2 chains x 200 draws after 200 tuning steps; the times are the
import, the model, the sampling call (which compiles) and the whole interpreter. The compile
notice (``bayesmix.jit.COMPILE_NOTICE``) must appear in the cold run's stderr and not in the warm
one's. Models: the music study simulated (a Gaussian model on one grouping factor, the collapsed
sampler), a binomial and a Poisson GLMM on one factor, and a Gaussian model on crossed factors
(the collapsed Gibbs sampler since method="auto" chose it; the precompiled full density before),
all simulated here. The times are wall times and the
interpreter's CPU time (user + system, all threads): on a machine busy with other work the wall
times grow, the CPU time much less. ``--before PATH`` times the bayesmix package in PATH too
(an older commit, e.g. ``git archive COMMIT | tar -x -C PATH``), for a before/after figure.

Prints Markdown tables for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTICE = "bayesmix: compiling numba kernels"  # the start of bayesmix.jit.COMPILE_NOTICE (absent before it existed)

DATA = {
    "gaussian": """
data = bm.datasets.simulate_music(seed=1)
model = bm.Model("na ~ perform_type + (perform_type | id)", data)""",
    "binomial": """
rng = np.random.default_rng(1)
g = rng.integers(0, 30, 600); x = rng.normal(size=600); u = rng.normal(0, 0.8, 30)
n = rng.integers(1, 10, 600)
s = rng.binomial(n, 1 / (1 + np.exp(-(-0.5 + 0.7 * x + u[g]))))
data = pd.DataFrame({"s": s, "f": n - s, "x": x, "g": g})
model = bm.Model("cbind(s, f) ~ x + (1 | g)", data, family="binomial")""",
    "poisson": """
rng = np.random.default_rng(1)
g = rng.integers(0, 30, 600); x = rng.normal(size=600); u = rng.normal(0, 0.5, 30)
data = pd.DataFrame({"y": rng.poisson(np.exp(0.3 + 0.4 * x + u[g])), "x": x, "g": g})
model = bm.Model("y ~ x + (1 | g)", data, family="poisson")""",
    "crossed": """
rng = np.random.default_rng(1)
a = rng.integers(0, 40, 800); b = rng.integers(0, 25, 800); x = rng.normal(size=800)
y = 1 + 0.5 * x + rng.normal(0, 0.7, 40)[a] + rng.normal(0, 0.4, 25)[b] + rng.normal(0, 1, 800)
data = pd.DataFrame({"y": y, "x": x, "a": a, "b": b})
model = bm.Model("y ~ x + (1 | a) + (1 | b)", data)""",
}

FIT = """
import json, time, warnings
start = time.perf_counter()
import numpy as np, pandas as pd
import bayesmix as bm
bm.Model
imported = time.perf_counter()
{data}
built = time.perf_counter()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    post = model.sample(draws=200, tune=200, chains=2, seed=1, progressbar=False)
sampled = time.perf_counter()
print(json.dumps({{"import": imported - start, "model": built - imported, "sample": sampled - built,
                  "compile": post.compile_seconds, "method": post.method}}))
"""


def fit(name: str, cache: Path, root: Path) -> dict:
    """One fresh interpreter fitting model ``name`` with bayesmix from ``root`` and numba's cache in ``cache``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(root)}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", FIT.format(data=DATA[name])], cwd=root, env=env,
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise SystemExit(f"{name}: {done.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(done.stdout.splitlines()[-1]), "wall": wall, "cpu": cpu, "notice": NOTICE in done.stderr}


def interpreter(code: list[str], root: Path) -> float:
    """Wall time of one fresh interpreter running ``code`` (arguments after the interpreter) with bayesmix from ``root``."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    start = time.perf_counter()
    subprocess.run([sys.executable, *code], cwd=root, env=env, capture_output=True, check=True)
    return time.perf_counter() - start


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="runs of each --help timing (median reported)")
    parser.add_argument("--models", default=",".join(DATA), help=f"comma-separated, of {', '.join(DATA)}")
    parser.add_argument("--before", type=Path, help="also time the bayesmix package in this directory")
    args = parser.parse_args()
    trees = {"": ROOT} | ({" (before)": args.before.resolve()} if args.before else {})
    print(f"{time.strftime('%Y-%m-%d %H:%M')} UTC, {platform.machine()}, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}; Python {platform.python_version()}, numba {version('numba')}, "
          f"nutpie {version('nutpie')}, pandas {version('pandas')}\n")

    peers = {f"`bayesmix --help`{label}": (["-m", "bayesmix.cli", "--help"], root) for label, root in trees.items()}
    peers |= {"`python -c 'import pandas'`": (["-c", "import pandas"], ROOT), "`python -c pass`": (["-c", "pass"], ROOT)}
    for code, root in peers.values():
        interpreter(code, root)  # warm the disk cache
    times = {label: [] for label in peers}
    for _ in range(args.runs):
        for label, (code, root) in peers.items():
            times[label].append(interpreter(code, root))
    bare = statistics.median(times["`python -c pass`"])
    print("| command | wall s (median) | / bare interpreter |\n| --- | --- | --- |")
    for label, runs in times.items():
        print(f"| {label} | {statistics.median(runs):.2f} | {statistics.median(runs) / bare:.1f} |")

    print("\n| model | sampler | cache | import s | model s | sample s (of it compiling) | interpreter wall s | "
          "interpreter CPU s | notice | cold / warm (CPU) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name in args.models.split(","):
        for label, root in trees.items():
            with tempfile.TemporaryDirectory(prefix="bayesmix-numba-") as cache:
                cold = fit(name, Path(cache), root)
                warm = fit(name, Path(cache), root)
            for kind, run in (("cold", cold), ("warm", warm)):
                ratio = f"{cold['cpu'] / warm['cpu']:.1f}" if kind == "cold" else ""
                print(f"| {name}{label} | {run['method'].split(' (')[0]} | {kind} | {run['import']:.1f} | {run['model']:.1f} | "
                      f"{run['sample']:.1f} ({run['compile']:.1f}) | {run['wall']:.1f} | {run['cpu']:.1f} | "
                      f"{'yes' if run['notice'] else 'no'} | {ratio} |", flush=True)


if __name__ == "__main__":
    main()
