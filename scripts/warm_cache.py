"""Fill numba's disk cache with bayesmix's kernels before the tests run (CI starts from a cold cache).

Usage: .venv/bin/python scripts/warm_cache.py [Q ...]     (default: q = 1 2 3 4 5)

The kernels of the collapsed sampler are compiled once per number q of random effects per
level, each in a single thread (LLVM), and the first test to need one would compile it while
the other core waits. Here the q values are shared among one process per core, so the two
cores of a CI machine compile side by side; every later process (pytest and the processes it
starts) loads the kernels from the cache. For each q it runs what the tests run: a REML fit,
a short collapsed sampling run (the log-density callback, the exact effect draws, the
cross-products in double-double) and the collapsed log-likelihood and log density called
directly (as tests/test_collapsed.py and tests/test_density.py do). Prints the seconds taken.
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor

import numpy as np

DEFAULT_QS = (1, 2, 3, 4, 5)


def compile_for(q: int) -> int:
    """Compile (or load) every kernel for q effects per level, through what the tests call."""
    import pandas as pd
    from numba import types

    import bayesmix as bm
    from bayesmix.bayes.density import log_density_kernel
    from bayesmix.linalg.collapsed import collapsed_loglik

    rng = np.random.default_rng(q)
    groups, per_group = 12, 6
    g = np.repeat(np.arange(groups), per_group)
    slopes = {f"x{k}": rng.normal(size=g.size) for k in range(1, q)}
    frame = pd.DataFrame({"y": rng.normal(size=groups)[g] + rng.normal(size=g.size), "g": g, **slopes})
    formula = f"y ~ {' + '.join(['1', *slopes])} + ({' + '.join(['1', *slopes])} | g)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a tiny run on noise: convergence warnings are expected
        model = bm.Model(formula, frame)
        model.fit_reml()
        model.sample(draws=5, tune=5, chains=1, seed=1, progressbar=False, method="collapsed")
    p, levels = q, 3
    eye = np.broadcast_to(np.eye(q), (levels, q, q)).copy()
    collapsed_loglik(np.zeros(p), np.eye(q), 1.0, eye, np.zeros((levels, q, p + 1)), np.eye(p + 1), 10.0, True)
    vector = types.float64[::1]
    log_density_kernel(q).compile((vector, vector, vector))
    return q


def main(argv: list[str]) -> int:
    qs = [int(a) for a in argv] or list(DEFAULT_QS)
    start = time.perf_counter()
    workers = min(len(qs), os.cpu_count() or 1)
    # largest q first: they take longest, so the last ones to start are short
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for q in pool.map(compile_for, sorted(qs, reverse=True)):
            print(f"warm_cache: kernels for q = {q} compiled or loaded", flush=True)
    print(f"warm_cache: {time.perf_counter() - start:.1f} s with {workers} process(es)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
