"""The parametric bootstrap of a point-estimate fit, as lme4's ``bootMer``.

Responses are simulated from the fit (:mod:`bayesmix.reml.simulate`), all from one seeded
generator before any refit, so that the draws do not depend on how many processes refit them;
each is refitted on the same design (:mod:`bayesmix.reml.refit`) and the statistic is read off
the refit. The refits run in worker processes (forked, so the statistic may be any function,
a lambda too), each with one BLAS thread (:mod:`bayesmix.threads`).
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ArgumentError, BayesmixError, ConvergenceWarning, warn
from ..threads import one_blas_thread
from .comparison import likelihood_ratio_test
from .parameters import parameter_estimates, parameter_values
from .refit import LinearRefit, maximum_likelihood
from .simulate import check_nsim, simulate_responses

if TYPE_CHECKING:
    from .point import PointFit

Statistic = Callable[["PointFit"], "pd.Series | float | np.ndarray"]


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


def check_point_fit(function: str, name: str, fit) -> None:
    """ArgumentError unless ``fit`` is a point-estimate fit (it can refit itself)."""
    if not callable(getattr(fit, "refitter", None)):
        raise ArgumentError(f"{function} takes a REML/ML or GLMM fit (model.fit_reml(), fit_ml()); {name} is a "
                            f"{type(fit).__name__}.")


def check_level(level) -> float:
    """``level`` as a float in (0, 1), or ArgumentError."""
    if isinstance(level, bool) or not isinstance(level, (int, float, np.floating)) or not 0 < level < 1:
        raise ArgumentError(f"level must be a number between 0 and 1 (e.g. 0.95), not {level!r}.")
    return float(level)


def as_series(value) -> pd.Series:
    """A statistic's value as a float Series (named ``stat1``, ``stat2``, ... unless it is a Series)."""
    if isinstance(value, pd.Series):
        return value.astype(float)
    values = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    return pd.Series(values, index=[f"stat{k + 1}" for k in range(len(values))])


# The refit job of the running bootstrap, inherited by forked workers.
_JOB: dict = {}


def _run_chunk(chunk: tuple[int, np.ndarray]) -> tuple[int, np.ndarray, int, int, int]:
    """Run the job on the responses of one chunk: (its start, the values, failed, singular, unconverged)."""
    start, ys = chunk
    job, width = _JOB["job"], _JOB["width"]
    out = np.full((len(ys), width), np.nan)
    failed = singular = unconverged = 0
    with one_blas_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for k, y in enumerate(ys):
            try:
                values, is_singular, converged = job(y)
            except BayesmixError:
                failed += 1
                continue
            singular += is_singular
            unconverged += not converged
            out[k] = values
    return start, out, failed, singular, unconverged


def _converged(fit: PointFit) -> bool:
    opt = getattr(fit, "optsummary", None)
    return bool(opt.converged) if opt is not None else bool(fit.fit.converged)


def refit_loglik(refit, y: np.ndarray) -> tuple[float, bool, bool]:
    """The log-likelihood of the refit to ``y`` by ``refit`` (a fit's :meth:`refitter`), whether
    it is singular and whether its optimiser converged; a linear model's without building the fit
    (:meth:`LinearRefit.estimates`)."""
    if isinstance(refit, LinearRefit):
        estimates = refit.estimates(y)
        return -estimates.criterion / 2.0, estimates.singular, estimates.converged
    fit = refit(y, warn=False)
    return fit.loglik, fit.singular, _converged(fit)


def check_jobs(n_jobs) -> int:
    """``n_jobs`` (None: the machine's cores, at most 8) as a positive int, or ArgumentError."""
    if n_jobs is None:
        return min(os.cpu_count() or 1, 8)
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, (int, np.integer)) or n_jobs < 1:
        raise ArgumentError(f"n_jobs must be a positive integer (worker processes), not {n_jobs!r}.")
    return int(n_jobs)


def run_refits(job, ys: np.ndarray, width: int, n_jobs: int, progress: bool) -> tuple[np.ndarray, tuple[int, int, int]]:
    """``job(y)`` -> (``width`` values, whether a refit was singular, whether all converged) for
    each simulated response ``ys[k]``, in ``n_jobs`` forked processes: the values (NaN rows for
    failed refits) and the numbers of failed, singular and unconverged runs."""
    nsim = len(ys)
    size = max(1, min(50, -(-nsim // (4 * n_jobs))))
    chunks = [(k, ys[k : k + size]) for k in range(0, nsim, size)]
    values = np.full((nsim, width), np.nan)
    counts = np.zeros(3, dtype=int)
    _JOB.update(job=job, width=width)
    pool = None
    try:
        if n_jobs == 1:
            results = map(_run_chunk, chunks)
        else:
            with warnings.catch_warnings():
                # Python warns that forking a process with threads (BLAS's idle pool) may deadlock; the
                # workers only refit, holding no lock those threads could hold, and fork is what lets
                # them inherit the job (any statistic, a lambda too) without pickling it.
                warnings.filterwarnings("ignore", "This process .* is multi-threaded", DeprecationWarning)
                pool = multiprocessing.get_context("fork").Pool(n_jobs)
            results = pool.imap_unordered(_run_chunk, chunks)
        done = 0
        for start, chunk_values, *flags in results:
            values[start : start + len(chunk_values)] = chunk_values
            counts += flags
            done += len(chunk_values)
            if progress:
                print(f"\rbootstrap: {done}/{nsim} refits", end="", file=sys.stderr, flush=True)
    finally:
        if pool is not None:
            pool.close()
            pool.join()
        _JOB.clear()
        if progress:
            print(file=sys.stderr)
    failed, singular, unconverged = (int(c) for c in counts)
    return values, (failed, singular, unconverged)


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
        effects' SDs and correlations and σ, named as the rows of ``fit.confint()``.
    nsim
        Number of simulated responses.
    seed
        Seed of the simulations: the same seed gives the same draws whatever ``n_jobs``.
    random
        Draw new random effects for each simulation (lme4's default, ``use.u = FALSE``); False
        holds them at the conditional modes (``use.u = TRUE``).
    n_jobs
        Worker processes for the refits (default: the machine's cores, at most 8); 1 refits
        in this process.
    progress
        Show a progress line on standard error.

    Returns
    -------
    BootstrapResult
        The statistic of ``fit`` and its ``nsim`` draws, with counts of failed, singular and
        unconverged refits; ``percentile_intervals(level)`` gives percentile intervals.
    """
    check_point_fit("bootstrap", "fit", fit)
    nsim = check_nsim(nsim)
    if statistic is not None and not callable(statistic):
        raise ArgumentError(f"statistic must be a function of a fit (e.g. lambda f: f.fixef()), not {statistic!r}.")
    n_jobs = check_jobs(n_jobs)
    t0 = time.perf_counter()
    refit = fit.refitter()
    # every parameter (confint's rows) by default: a linear model's read off each optimum, no fit object built
    lean = statistic is None and isinstance(refit, LinearRefit)
    if statistic is None:
        statistic, original = parameter_values, parameter_estimates(fit)
    else:
        original = as_series(statistic(fit))

    def job(y):
        if lean:
            estimates = refit.estimates(y)
            return estimates.parameters, estimates.singular, estimates.converged
        new = refit(y, warn=False)
        return np.asarray(statistic(new), dtype=float).ravel(), new.singular, _converged(new)

    ys = simulate_responses(fit, nsim, np.random.default_rng(seed), random=random)
    draws, (failed, singular, unconverged) = run_refits(job, ys, len(original), n_jobs, progress)
    if failed:
        warn(f"{failed} of {nsim} bootstrap refits failed; their draws are NaN and left out of the intervals.", ConvergenceWarning)
    return BootstrapResult(original, pd.DataFrame(draws, columns=original.index), failed, singular, unconverged,
                           seed, bool(random), time.perf_counter() - t0)


@dataclass(frozen=True, eq=False)
class ParametricBootstrapTest:
    """A likelihood-ratio test between nested models with a parametric-bootstrap reference
    distribution (pbkrtest's ``PBmodcomp``).

    Attributes
    ----------
    statistic
        The likelihood-ratio statistic 2 (ℓ_large - ℓ_small) of the maximum-likelihood fits.
    df
        The difference in the numbers of parameters.
    p_chisq
        The p value from the χ²(df) distribution (wrong for variances on the boundary, where
        the bootstrap's is the one to read).
    p_bootstrap
        (1 + #{reference ≥ statistic}) / (1 + number of valid references), as pbkrtest.
    reference
        The statistic on responses simulated from the small model (NaN where a refit failed).
    n_failed
        Simulations where a refit failed.
    """

    statistic: float
    df: int
    p_chisq: float
    p_bootstrap: float
    reference: np.ndarray
    n_failed: int

    def table(self) -> pd.DataFrame:
        """pbkrtest's table: rows ``LRT`` and ``PBtest``, columns ``stat``, ``df``, ``p_value``."""
        return pd.DataFrame({"stat": [self.statistic, self.statistic], "df": [self.df, np.nan],
                             "p_value": [self.p_chisq, self.p_bootstrap]}, index=["LRT", "PBtest"])

    def __repr__(self) -> str:
        valid = int(np.isfinite(self.reference).sum())
        return (f"<ParametricBootstrapTest: {valid} simulations ({self.n_failed} failed)>\n"
                + self.table().to_string(float_format=lambda v: f"{v:.5g}"))


def pb_test(small: PointFit, large: PointFit, nsim: int = 1000, seed: int | None = None, n_jobs: int | None = None,
            progress: bool = True) -> ParametricBootstrapTest:
    """Parametric-bootstrap likelihood-ratio test of ``small`` against the larger model ``large``
    that contains it (pbkrtest's ``PBmodcomp``): useful where the χ² reference fails, as for a
    variance on the boundary of its space (e.g. a random slope against a random intercept).

    Both models are fitted by maximum likelihood (REML fits are refitted); ``nsim`` responses are
    simulated from the small model's fit, new random effects each time, and both models refitted
    to each.

    Raises
    ------
    ArgumentError
        Unless both fits are of one family and the same data, and ``large`` has more parameters
        (as :func:`~bayesmix.likelihood_ratio_test`).
    """
    from scipy.stats import chi2

    for name, fit in (("small", small), ("large", large)):
        check_point_fit("pb_test", name, fit)
    nsim = check_nsim(nsim)
    n_jobs = check_jobs(n_jobs)
    likelihood_ratio_test(small, large)
    small_ml, large_ml = maximum_likelihood(small), maximum_likelihood(large)
    df = large_ml.n_params - small_ml.n_params
    if df <= 0:
        raise ArgumentError(f"pb_test(small, large): the large model must have more parameters than the small one "
                            f"({large_ml.n_params} and {small_ml.n_params}); swap the arguments.")
    statistic = max(2.0 * (large_ml.loglik - small_ml.loglik), 0.0)
    refit_small, refit_large = small_ml.refitter(), large_ml.refitter()

    def job(y):
        (small_loglik, small_singular, small_converged), (large_loglik, large_singular, large_converged) = (
            refit_loglik(refit_small, y), refit_loglik(refit_large, y))
        return (np.array([max(2.0 * (large_loglik - small_loglik), 0.0)]), small_singular or large_singular,
                small_converged and large_converged)

    ys = simulate_responses(small_ml, nsim, np.random.default_rng(seed), random=True)
    reference, (failed, _, _) = run_refits(job, ys, 1, n_jobs, progress)
    reference = reference[:, 0]
    valid = reference[np.isfinite(reference)]
    p_boot = (1.0 + np.sum(valid >= statistic)) / (1.0 + len(valid))
    return ParametricBootstrapTest(statistic, int(df), float(chi2.sf(statistic, df)), float(p_boot), reference, failed)
