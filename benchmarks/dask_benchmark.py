"""10,000,000 rows in 20 Parquet files through a dask LocalCluster: REML and the collapsed sampler.

    .venv/bin/python -m pip install -e '.[dask]'
    .venv/bin/python benchmarks/dask_benchmark.py [--design one|crossed] [--dir DIR] [--rows 10000000]
        [--chains 4 --tune 1000 --draws 1000] [--peer-rows 1000000]

The files are written first, by a child process, so that the client's peak memory measures
the fit alone. Two designs:

- ``one``: ``y ~ x1 + x2 + (x1 + x2 | g)`` with 10,000 groups (correlated intercept and two
  slopes);
- ``crossed``: ``y ~ x + (x | subject) + (1 | item)``, 2,000 subjects (correlated intercept and
  slope) crossed with 100 items, each subject seeing its own 20 items: 40,000 distinct pairs
  of levels, about 250 rows each (a partially crossed design, as students and instructors);
- ``large``: ``y ~ service + (1 | s) + (1 | d)``, 20,000 students x 20,000 instructors within
  200 departments (``crossed_benchmark.simulate_large``, file by file), 2,000 ratings across
  departments in all (as in its 1,000,000-row case; many more fill the sparse factor in, as a
  randomly crossed design): a dense block of 20,000 x 20,000, so REML takes the sparse
  factorisation (CHOLMOD) from the statistics. Run it with ``--draws 0`` (REML only: the
  collapsed sampler would factor that dense block).

The client (this process) starts a LocalCluster with 2 worker processes; the workers read
the files and compute the sufficient statistics (per level, and for the crossed design per
distinct pair of levels), and only those reach the client. With ``--peer-rows`` the same
steps run from pandas on the first files (that many rows), in a child process, as the peer:
its peak memory grows with the rows, the client's with the levels and pairs. Prints Markdown
for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import resource
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

FILES = 20
DESIGNS = {
    "one": dict(formula="y ~ x1 + x2 + (x1 + x2 | g)", beta=[2.0, 0.5, -0.3], sigma=1.0),
    "crossed": dict(formula="y ~ x + (x | subject) + (1 | item)", beta=[1.0, 0.4], sigma=1.0),
    "large": dict(formula="y ~ service + (1 | s) + (1 | d)", beta=[3.2, -0.07], sigma=1.18),
}
GROUPS = 10_000  # one factor
SUBJECTS, ITEMS, SEEN = 2_000, 100, 20  # crossed: each subject sees SEEN of the items
ACROSS = 2_000  # large: ratings of an instructor outside the student's department


def write(design: str, directory: Path, rows: int, seed: int = 3) -> None:
    """The data set, one file at a time (each holds rows of every group)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    n = rows // FILES
    if design == "large":
        from crossed_benchmark import simulate_large

        for k in range(FILES):  # 2,000 ratings across departments in all, as in crossed_benchmark's 1,000,000 rows
            simulate_large(seed=100 + k, n=n, across=ACROSS / rows, effects_seed=2).to_parquet(
                directory / f"part-{k:02d}.parquet")
        return
    if design == "one":
        sd, corr = np.array([1.0, 0.5, 0.3]), np.array([[1.0, 0.3, -0.2], [0.3, 1.0, 0.1], [-0.2, 0.1, 1.0]])
        u = rng.multivariate_normal(np.zeros(3), sd[:, None] * corr * sd[None, :], size=GROUPS)
        beta = DESIGNS["one"]["beta"]
        for k in range(FILES):
            g = rng.integers(0, GROUPS, n)
            x1, x2 = rng.normal(size=n), rng.normal(size=n)
            y = beta[0] + beta[1] * x1 + beta[2] * x2 + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + rng.normal(0, 1.0, n)
            pd.DataFrame({"y": y, "x1": x1, "x2": x2, "g": g}).to_parquet(directory / f"part-{k:02d}.parquet")
        return
    u = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.15], [0.15, 0.25]], size=SUBJECTS)
    v = rng.normal(0.0, 0.7, ITEMS)
    beta = DESIGNS["crossed"]["beta"]
    seen = np.array([rng.choice(ITEMS, SEEN, replace=False) for _ in range(SUBJECTS)])
    for k in range(FILES):
        s = rng.integers(0, SUBJECTS, n)
        i = seen[s, rng.integers(0, SEEN, n)]
        x = rng.normal(size=n)
        y = beta[0] + beta[1] * x + u[s, 0] + u[s, 1] * x + v[i] + rng.normal(0, 1.0, n)
        pd.DataFrame({"y": y, "x": x, "subject": s, "item": i}).to_parquet(directory / f"part-{k:02d}.parquet")


def cpu_seconds() -> float:
    """CPU time of this process so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_gb() -> float:
    """Peak resident memory of this process, GB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def steps(model_of, settings: dict, workers_cpu=lambda: 0.0) -> dict:
    """Time building the model (the statistics), REML and collapsed NUTS: wall and CPU seconds
    (this process's, and the workers' through ``workers_cpu``)."""
    import bayesmix as bm

    out = {}

    def timed(name, function):
        wall, cpu, remote = time.perf_counter(), cpu_seconds(), workers_cpu()
        value = function()
        out[name] = (time.perf_counter() - wall, cpu_seconds() - cpu, workers_cpu() - remote)
        return value

    model = timed("statistics", model_of)
    reml = timed("reml", model.fit_reml)
    assert isinstance(model, bm.Model)
    out.update(n=model.design.n, groups=model.design.groups, beta=np.round(reml.fixef().to_numpy(), 4),
               sigma=reml.sigma, factorization=reml.optsummary.factorization)
    if not settings["draws"]:  # REML only
        return out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the collapsed NUTS sampler for both (method="auto" gives pandas data the Gibbs sampler)
        post = timed("nuts", lambda: model.sample(seed=1, progressbar=False, method="collapsed", **settings))
    d = post.diagnostics()
    out.update(method=post.method, ess=d["min_ess_bulk"], rhat=d["max_rhat"], divergences=d["divergences"],
               post_beta=np.round(post.fixef()["mean"].to_numpy(), 4))
    return out


def pandas_peer(design: str, directory: Path, rows: int, settings: dict, queue) -> None:
    """The same steps from pandas on the first files (``rows`` rows), in this child process."""
    import bayesmix as bm

    frames, total = [], 0
    for path in sorted(directory.glob("*.parquet")):
        if total >= rows:
            break
        frames.append(pd.read_parquet(path))
        total += len(frames[-1])
    frame = pd.concat(frames, ignore_index=True).iloc[:rows]
    del frames
    result = steps(lambda: bm.Model(DESIGNS[design]["formula"], frame), settings)
    result["peak"] = peak_gb()
    queue.put(result)


def table(label: str, result: dict, peak: float, workers_peak: float | None) -> None:
    sampled = f"; sampled {result['method']}" if "nuts" in result else ""
    print(f"\n{label}: {result['n']:,} rows, levels {result['groups']}; REML factorisation "
          f"{result['factorization']}{sampled}\n")
    print("| step | wall s | CPU s (client) | CPU s (workers) |")
    print("| --- | --- | --- | --- |")
    names = {"statistics": "sufficient statistics (pre-pass for the levels + one pass over the rows)",
             "reml": "REML fit from the statistics", "nuts": "collapsed NUTS and exact effect draws"}
    names = {key: name for key, name in names.items() if key in result}
    for key, name in names.items():
        wall, cpu, remote = result[key]
        print(f"| {name} | {wall:.1f} | {cpu:.1f} | {remote:.1f} |")
    print(f"| total | {sum(result[k][0] for k in names):.1f} | {sum(result[k][1] for k in names):.1f} | "
          f"{sum(result[k][2] for k in names):.1f} |")
    workers = "" if workers_peak is None else f"; each worker's peak {workers_peak:.2f} GB"
    posterior = (f"; posterior: min bulk ESS {result['ess']:.0f}, max R-hat {result['rhat']:.3f}, "
                 f"{result['divergences']} divergences") if "nuts" in result else ""
    print(f"\npeak resident memory: client {peak:.2f} GB{workers}{posterior}")
    means = f"; posterior mean β {result['post_beta']}" if "nuts" in result else ""
    print(f"REML β {result['beta']}, σ {result['sigma']:.4f}{means}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--design", choices=sorted(DESIGNS), default="one")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--peer-rows", type=int, default=0, help="also run pandas on this many rows (0: no peer)")
    args = parser.parse_args()
    directory = args.dir or Path(f"/tmp/bayesmix-parquet{'' if args.design == 'one' else '-' + args.design}")
    if len(list(directory.glob("*.parquet"))) != FILES:
        child = multiprocessing.get_context("spawn").Process(target=write, args=(args.design, directory, args.rows))
        start = time.perf_counter()
        child.start()
        child.join()
        print(f"wrote {args.rows:,} rows in {FILES} files in {time.perf_counter() - start:.0f} s")
    settings = dict(chains=args.chains, tune=args.tune, draws=args.draws)

    import dask
    import nutpie
    import pymc
    from dask.distributed import Client, LocalCluster

    import bayesmix as bm

    print(f"date: {time.strftime('%Y-%m-%d %H:%M')}; {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{sys.version.split()[0]}; dask {dask.__version__}, pymc {pymc.__version__}, nutpie {nutpie.__version__}; "
          f"load average at start {os.getloadavg()[0]:.1f}")
    print(f"design {args.design!r}: {DESIGNS[args.design]['formula']}; truth β {DESIGNS[args.design]['beta']}, σ {DESIGNS[args.design]['sigma']}; "
          + (f"NUTS {args.chains} chains x ({args.tune} tune + {args.draws} draws)" if args.draws else "REML only"))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        def workers_cpu() -> float:
            return sum(client.run(cpu_seconds).values())

        result = steps(lambda: bm.Model(DESIGNS[args.design]["formula"], str(directory)), settings, workers_cpu)
        workers_peak = max(client.run(peak_gb).values())
    table(f"dask, {FILES} Parquet files, LocalCluster with 2 worker processes", result, peak_gb(), workers_peak)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    if args.peer_rows:
        queue = multiprocessing.get_context("spawn").Queue()
        child = multiprocessing.get_context("spawn").Process(
            target=pandas_peer, args=(args.design, directory, args.peer_rows, settings, queue))
        child.start()
        peer = queue.get()
        child.join()
        table("pandas peer (the first files read into one DataFrame, in a child process)", peer, peer["peak"], None)
        ratios = ", ".join(f"{k} {result[k][0] / peer[k][0]:.1f}" for k in ("statistics", "reml", "nuts") if k in result)
        print(f"\nwall-time ratio dask {result['n']:,} rows / pandas {peer['n']:,} rows: {ratios}; peak memory ratio "
              f"{peak_gb() / peer['peak']:.2f}")
        print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
