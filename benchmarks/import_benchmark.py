"""Time of ``import bayesmix`` in a fresh interpreter, against peers measured the same way.

Run from the repository root:

    .venv/bin/python benchmarks/import_benchmark.py [--runs 9] [--before PATH]

Each import runs in its own new interpreter (nothing cached in memory; the disk cache is
warmed by one unrecorded run of each first). The runs of all imports are interleaved, so
that a machine busy with other work slows them alike, and the median of ``--runs`` is
reported: the time of the import statement alone, and the wall time and CPU time (user +
system) of the whole interpreter, start-up included. On a machine busy with other work the
wall times grow and the CPU time much less: it is close to the wall time on a quiet machine. Peers: ``import statsmodels.formula.api`` (a REML user's
alternative), ``import pymc`` (what ``import bayesmix`` used to pay for) and a bare
interpreter. ``--before PATH`` also times the bayesmix package found in PATH (a checkout of
an older commit, e.g. made with ``git worktree add``), for a before/after figure.

Prints a Markdown table (paste it into benchmarks/RESULTS.md) and whether ``import bayesmix``
loaded PyMC, PyTensor, nutpie or ArviZ (it must not).
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
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pymc", "pytensor", "nutpie", "arviz")

TIMED = """
import json, sys, time
start = time.perf_counter()
import {module}
seconds = time.perf_counter() - start
print(json.dumps({{"seconds": seconds, "file": {module}.__file__,
                  "heavy": sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r}))}}))
"""


def run(module: str, path: Path | None) -> dict:
    """One fresh interpreter importing ``module`` (from ``path`` when given); its report and wall time."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if path is not None:
        env["PYTHONPATH"] = str(path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", TIMED.format(module=module, heavy=HEAVY)] if module else [sys.executable, "-c", "pass"],
        cwd=path or Path.home(), env=env, capture_output=True, text=True, check=True,
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    report = json.loads(done.stdout.splitlines()[-1]) if module else {"seconds": 0.0, "heavy": []}
    if path is not None and not Path(report["file"]).resolve().is_relative_to(path):
        raise SystemExit(f"{module} was imported from {report['file']}, not from {path}")
    return {**report, "wall": wall, "cpu": cpu}


def processor() -> str:
    """The CPU's model name (Linux), else what ``platform`` knows."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs of each import (median reported)")
    parser.add_argument("--before", type=Path, help="a directory holding an older bayesmix package, timed too")
    args = parser.parse_args()

    cases = {"bayesmix": ("bayesmix", ROOT)}
    if args.before is not None:
        cases["bayesmix (before)"] = ("bayesmix", args.before.resolve())
    cases["statsmodels.formula.api"] = ("statsmodels.formula.api", None)
    cases["pymc"] = ("pymc", None)
    cases["bare interpreter"] = ("", None)

    for module, path in cases.values():  # warm the disk cache (and numba's, PyTensor's)
        run(module, path)
    times: dict[str, list[dict]] = {name: [] for name in cases}
    for _ in range(args.runs):
        for name, (module, path) in cases.items():
            times[name].append(run(module, path))

    reference = statistics.median(r["seconds"] for r in times["bayesmix"])
    print(f"{platform.machine()} {processor()}, {os.cpu_count()} cores, load average "
          f"{', '.join(f'{x:.1f}' for x in os.getloadavg())}; Python {platform.python_version()}; "
          f"bayesmix {version('bayesmix')}, pymc {version('pymc')}, nutpie {version('nutpie')}, "
          f"arviz {version('arviz')}, statsmodels {version('statsmodels')}; median of {args.runs} runs, "
          f"{time.strftime('%Y-%m-%d')}.")
    print()
    print("| import | import statement (s) | interpreter wall time (s) | interpreter CPU time (s) | import time / bayesmix's |")
    print("|---|---|---|---|---|")
    for name, reports in times.items():
        seconds, wall, cpu = (statistics.median(r[key] for r in reports) for key in ("seconds", "wall", "cpu"))
        ratio = f"{seconds / reference:.2f}" if name != "bare interpreter" else ""
        print(f"| `{name}` | {seconds:.2f} | {wall:.2f} | {cpu:.2f} | {ratio} |")
    print()
    for name in ("bayesmix", "bayesmix (before)"):
        if name in times:
            heavy = sorted({m for r in times[name] for m in r["heavy"]})
            print(f"`import {name}` loaded {', '.join(heavy) if heavy else 'none of ' + ', '.join(HEAVY)}.")

if __name__ == "__main__":
    main()
