"""The parametric bootstrap of a point-estimate fit, as lme4's ``bootMer``.

Responses are simulated from the fit (:mod:`bayesmix.reml.simulate`), all from one seeded
generator before any refit, so that the draws do not depend on how many processes refit them;
each is refitted on the same design (:mod:`bayesmix.reml.refit`) and the statistic is read off
the refit. The refits run in worker processes (forked, so the statistic may be any function,
a lambda too), each with one BLAS thread (:mod:`bayesmix.linalg.threads`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..errors import ArgumentError, BayesmixError, ConvergenceWarning
from ..linalg.threads import one_blas_thread
from .point import PointFit
from .refit import refitter
from .simulate import check_nsim, simulate_responses

Statistic = Callable[[PointFit], "pd.Series | float | np.ndarray"]


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """Draws of a statistic over parametric-bootstrap refits (lme4's ``bootMer`` value).

    Attributes
    ----------
    original
        The statistic of the fitted model (boot's ``t0``).
    draws
        One row per simulated response, one column per element of the statistic (boot's ``t``);
        NaN rows for refits that failed.
    n_failed
        Refits that raised FitError (their rows are NaN).
    n_singular
        Refits that ended on the boundary (a zero variance or a correlation of ±1).
    n_unconverged
        Refits whose optimiser did not report convergence.
    seed, random
        The seed of the simulations, and whether new random effects were drawn (``use.u = FALSE``).
    seconds
        Wall time of the simulations and refits.
    """

    original: pd.Series
    draws: pd.DataFrame
    n_failed: int
    n_singular: int
    n_unconverged: int
    seed: int | None
    random: bool
    seconds: float

    @property
    def nsim(self) -> int:
        """Number of simulated responses."""
        return len(self.draws)

    def summary(self) -> pd.DataFrame:
        """Per statistic: the original value, the bootstrap bias (mean of the draws minus the
        original) and standard error (SD of the draws), as boot's print."""
        return pd.DataFrame({"original": self.original, "bias": self.draws.mean() - self.original,
                             "std_error": self.draws.std(ddof=1)})

    def percentile_intervals(self, level: float = 0.95) -> pd.DataFrame:
        """Percentile intervals of each statistic (boot's ``type = "perc"``): the (1 - level)/2 and
        (1 + level)/2 quantiles of the draws, failed refits left out."""
        check_level(level)
        probs = [(1 - level) / 2, (1 + level) / 2]
        q = self.draws.quantile(probs).T
        q.columns = ["lower", "upper"]
        return q

    def __repr__(self) -> str:
        lines = [f"<BootstrapResult: {self.nsim} parametric bootstrap refits "
                 f"({'new random effects' if self.random else 'random effects at their modes'}), seed {self.seed}; "
                 f"{self.n_failed} failed, {self.n_singular} singular, {self.n_unconverged} not converged; "
                 f"{self.seconds:.2f} s>"]
        lines.append(self.summary().to_string(float_format=lambda v: f"{v:.5g}"))
        return "\n".join(lines)


def check_level(level) -> float:
    """``level`` as a float in (0, 1), or ArgumentError."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ArgumentError(f"level must be a number between 0 and 1 (e.g. 0.95), not {level!r}.")
    return float(level)


def as_series(value, names: pd.Index | None = None) -> pd.Series:
    """A statistic's value as a float Series (named ``stat1``, ... when it has no names)."""
    if isinstance(value, pd.Series):
        return value.astype(float)
    values = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    index = names if names is not None and len(names) == len(values) else [f"stat{k + 1}" for k in range(len(values))]
    return pd.Series(values, index=index)


# The refit machinery and statistic of the running bootstrap, inherited by forked workers.
_JOB: dict = {}


def _refit_chunk(chunk: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, int, int, int]:
    """Refit the responses of one chunk: (its start, the statistics, failed, singular, unconverged)."""
    start, ys = chunk
    refit, statistic, width = _JOB["refit"], _JOB["statistic"], _JOB["width"]
    out = np.full((len(ys), width), np.nan)
    failed = singular = unconverged = 0
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, y in enumerate(ys):
            try:
                new = refit(y, warn=False)
            except BayesmixError:
                failed += 1
                continue
            singular += bool(new.singular)
            unconverged += not _converged(new)
            out[k] = np.asarray(statistic(new), dtype=float).ravel()
    return start, out, failed, singular, unconverged


def _converged(fit: PointFit) -> bool:
    opt = getattr(fit, "optsummary", None)
    return bool(opt.converged) if opt is not None else bool(fit.fit.converged)


def bootstrap(fit: PointFit, statistic: Statistic | None = None, nsim: int = 1000, seed: int | None = None,
              random: bool = True, n_jobs: int | None = None, progress: bool = True) -> BootstrapResult:
    """Parametric bootstrap of ``statistic`` over refits of ``fit`` to simulated responses (lme4's ``bootMer``).

    Parameters
    ----------
    fit
        A REML/ML fit (``model.fit_reml()``, ``fit_ml()``) or a GLMM fit.
    statistic
        A function of a fit returning a number, an array or a pandas Series (whose index names
        the columns of the draws); by default every parameter: the fixed effects, the random
        effects' SDs and correlations and σ (:func:`~bayesmix.reml.intervals.parameter_estimates`).
    nsim
        Number of simulated responses.
    seed
        Seed of the simulations: the same seed gives the same draws whatever ``n_jobs``.
    random
        Draw new random effects for each simulation (lme4's default, ``use.u = FALSE``); False
        holds them at the conditional modes (``use.u = TRUE``).
    n_jobs
        Worker processes for the refits (default: the machine's cores, at most 2 to 8 as
        available); 1 refits in this process.
    progress
        Show a progress line on standard error.

    Returns
    -------
    BootstrapResult
        The statistic of ``fit`` and its ``nsim`` draws, with counts of failed, singular and
        unconverged refits; ``percentile_intervals(level)`` gives percentile intervals.
    """
    from .intervals import parameter_estimates

    if not isinstance(fit, PointFit):
        raise ArgumentError(f"bootstrap takes a REML/ML or GLMM fit (model.fit_reml()), not {type(fit).__name__}.")
    nsim = check_nsim(nsim)
    if statistic is None:
        statistic = parameter_estimates
    if not callable(statistic):
        raise ArgumentError(f"statistic must be a function of a fit (e.g. lambda f: f.fixef()), not {statistic!r}.")
    if n_jobs is None:
        n_jobs = min(os.cpu_count() or 1, 8)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ArgumentError(f"n_jobs must be a positive integer (worker processes), not {n_jobs!r}.")
    t0 = time.perf_counter()
    original = as_series(statistic(fit))
    refit = refitter(fit)
    ys = simulate_responses(fit, nsim, np.random.default_rng(seed), random=random)
    size = max(1, min(50, -(-nsim // (4 * n_jobs))))
    chunks = [(k, ys[k : k + size]) for k in range(0, nsim, size)]
    draws = np.full((nsim, len(original)), np.nan)
    counts = np.zeros(3, dtype=int)
    _JOB.update(refit=refit, statistic=statistic, width=len(original))
    try:
        if n_jobs == 1:
            results = map(_refit_chunk, chunks)
            pool = None
        else:
            pool = multiprocessing.get_context("fork").Pool(n_jobs)
            results = pool.imap_unordered(_refit_chunk, chunks)
        done = 0
        for start, values, *flags in results:
            draws[start : start + len(values)] = values
            counts += flags
            done += len(values)
            if progress:
                print(f"\rbootstrap: {done}/{nsim} refits", end="", file=sys.stderr, flush=True)
        if pool is not None:
            pool.close()
            pool.join()
    finally:
        _JOB.clear()
    if progress:
        print(file=sys.stderr)
    failed, singular, unconverged = (int(c) for c in counts)
    if failed:
        warnings.warn(f"{failed} of {nsim} bootstrap refits failed; their draws are NaN and left out of the intervals.",
                      ConvergenceWarning, stacklevel=2)
    return BootstrapResult(original, pd.DataFrame(draws, columns=original.index), failed, singular, unconverged,
                           seed, bool(random), time.perf_counter() - t0)
