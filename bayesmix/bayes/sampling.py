"""NUTS sampling of a built model, with nutpie (compiled once per model) or PyMC's sampler."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ArgumentError, FitError

if TYPE_CHECKING:
    import pymc as pm

SAMPLERS = ("nutpie", "pymc")


MAX_COUNT = 2**31 - 1
"""The largest ``draws``, ``tune`` or ``chains`` accepted (far beyond what memory holds)."""


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings, checked on creation (numpy scalars are accepted and stored as Python numbers).

    Attributes
    ----------
    draws, tune, chains
        Posterior draws per chain, tuning steps per chain, number of chains: integers from
        1 (``tune``: 0 with ``sampler="pymc"``, whose NUTS can skip tuning; nutpie needs at
        least one tuning step) to :data:`MAX_COUNT`.
    seed
        Seed of the sampler, an integer in [0, 2**64) or None; the same seed on the same
        model and data gives bitwise the same draws, in any process.
    target_accept
        Target acceptance probability of NUTS's step-size adaptation, in (0, 1).
    sampler
        ``"nutpie"`` (default; the model is compiled once and reused) or ``"pymc"``.
    progressbar
        Show a progress bar while sampling.
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    seed: int | None = None
    target_accept: float = 0.8
    sampler: str = "nutpie"
    progressbar: bool = True

    def __post_init__(self):
        if self.sampler not in SAMPLERS:
            raise ArgumentError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}.")
        nutpie = self.sampler == "nutpie"
        for name, minimum, hint in (
            ("draws", 1, ""),
            ("tune", 1 if nutpie else 0, " with sampler='nutpie' (tune=0 needs sampler='pymc')" if nutpie else ""),
            ("chains", 1, ""),
        ):
            value = getattr(self, name)
            if not _is_integer(value) or not minimum <= value <= MAX_COUNT:
                raise ArgumentError(f"{name} must be an integer from {minimum} to {MAX_COUNT}{hint}, not {value!r}.")
            object.__setattr__(self, name, int(value))
        if self.seed is not None:
            if not _is_integer(self.seed) or not 0 <= self.seed < 2**64:
                raise ArgumentError(f"seed must be a non-negative integer below 2**64, or None, not {self.seed!r}.")
            object.__setattr__(self, "seed", int(self.seed))
        value = self.target_accept
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (float, int, np.floating, np.integer)) or not 0 < value < 1:
            raise ArgumentError(f"target_accept must lie strictly between 0 and 1, not {value!r}.")
        object.__setattr__(self, "target_accept", float(value))
        if not isinstance(self.progressbar, (bool, np.bool_)):
            raise ArgumentError(f"progressbar must be True or False, not {self.progressbar!r}.")
        object.__setattr__(self, "progressbar", bool(self.progressbar))


def _is_integer(value) -> bool:
    """An int or numpy integer, not a bool (which Python counts as an int)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _exact_arithmetic():
    """A context in which PyTensor compiles its numba code without fast-math.

    With fast-math, LLVM may reassociate and contract floating-point operations, and does
    so differently when it compiles a whole log density at once (a cold cache) than when
    it links functions loaded from PyTensor's numba cache: the same seed then gave
    different draws in the first process after a cold cache. Without it the arithmetic is
    IEEE's, whatever was cached.
    """
    import pytensor

    return pytensor.config.change_flags(numba__fastmath=False)


@contextlib.contextmanager
def few_draws_allowed():
    """Silence ArviZ's guess that dims are misnamed when there are fewer draws than chains
    (ours are named; too few draws are reported as such by ``BayesResult.check``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer than draw dimension")
        yield


def summarise_draws(draws: xr.Dataset, ci_prob: float) -> pd.DataFrame:
    """ArviZ's summary of each (chain, draw) variable of ``draws``, one row per variable: the
    posterior mean and SD, the equal-tailed ``ci_prob`` interval (``ci_lb``, ``ci_ub``), bulk and
    tail ESS, R-hat and the Monte Carlo standard errors of the mean and SD."""
    import arviz as az  # about 1 s to import: only when a posterior is summarised

    with few_draws_allowed():
        table = az.summary(xr.DataTree.from_dict({"posterior": draws}), ci_prob=ci_prob, round_to="none")
    return pd.DataFrame(table).rename(columns=lambda c: c.replace(f"eti{round(ci_prob * 100)}_", "ci_"))


def diagnose_draws(draws: xr.Dataset) -> pd.DataFrame:
    """Bulk and tail ESS and R-hat of each (chain, draw) variable of ``draws``, one row per
    variable: the convergence columns of :func:`summarise_draws` (``ess_bulk``, ``ess_tail``,
    ``r_hat``), the same numbers, computed by ArviZ's array functions on one (variable, chain,
    draw) array rather than through a whole summary (what every fit's convergence check needs:
    a few milliseconds instead of tens)."""
    from arviz_base import rcParams
    from arviz_stats.base import array_stats

    names = list(draws.data_vars)
    values = np.stack([draws[name].transpose("chain", "draw").to_numpy() for name in names]) if names else np.empty((0, 1, 1))
    return pd.DataFrame(
        {
            "ess_bulk": array_stats.ess(values, method="bulk"),
            # the tail ESS at the quantiles az.summary uses: ArviZ's default interval probability
            "ess_tail": array_stats.ess(values, method="tail", prob=rcParams["stats.ci_prob"]),
            "r_hat": array_stats.rhat(values, method="rank"),
        },
        index=pd.Index(names),
    )


class CompiledSampler:
    """A model for NUTS: the PyMC model (built on first use) and its form for nutpie.

    nutpie compiles a PyMC model on first use (about 10 s, once per model). A model given
    ready for nutpie (the collapsed density of :mod:`bayesmix.bayes.density`, which needs no
    compilation) is used as is; the PyMC model is then built only for ``sampler="pymc"``.
    """

    def __init__(self, build_model: Callable[[], pm.Model], nutpie_model=None):
        self._build_model = build_model
        self._model = None
        self._compiled = nutpie_model
        self._ready = nutpie_model is not None
        self.compile_seconds = 0.0

    @property
    def precompiled(self) -> bool:
        """Whether the nutpie model was given ready (nothing to compile)."""
        return self._ready

    @property
    def model(self) -> pm.Model:
        """The PyMC model."""
        if self._model is None:
            self._model = self._build_model()
        return self._model

    def sample(self, settings: SamplerSettings, **data) -> tuple[xr.DataTree, float]:
        """Posterior draws (internal variables dropped) and the wall time spent sampling.

        ``data`` replaces the values of the model's ``pm.Data`` (the response ``y``).
        """
        if self._ready and hasattr(self._compiled, "run"):  # a model with a sampler of its own (bayesmix.bayes.gibbs)
            sampler = self._own_sampler()
            start = time.perf_counter()
            tree = sampler(settings, data)
        elif settings.sampler == "nutpie":
            sampler = self._nutpie_sampler()
            start = time.perf_counter()
            with few_draws_allowed():
                tree = sampler(settings, data)
        else:
            start = time.perf_counter()
            with few_draws_allowed():
                tree = self._pymc(settings, data)
        seconds = time.perf_counter() - start
        posterior = tree["posterior"].to_dataset()
        internal = [v for v in posterior.data_vars if str(v).startswith("_")]
        result = xr.DataTree.from_dict(
            {"posterior": posterior.drop_vars(internal), "sample_stats": tree["sample_stats"].to_dataset()}
        )
        return result, seconds

    def _nutpie_sampler(self):
        """The nutpie sampling function, compiling the model on first use."""
        from . import nutpie_adapter

        if self._compiled is None:
            start = time.perf_counter()
            with warnings.catch_warnings(), _exact_arithmetic():
                warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
                self._compiled = nutpie_adapter.compile_pymc(self.model)
            self.compile_seconds = time.perf_counter() - start
        elif self._ready and not self.compile_seconds:
            # numba's kernels: compiled once per installation, loaded from its disk cache after that
            start = time.perf_counter()
            self._compiled.compile()
            self.compile_seconds = time.perf_counter() - start
        return self._nutpie

    def _own_sampler(self):
        """The model's own sampling function, its kernels loaded (or compiled) on first use."""
        if not self.compile_seconds:
            start = time.perf_counter()
            self._compiled.compile()
            self.compile_seconds = time.perf_counter() - start
        return lambda settings, data: (self._compiled.with_data(**data) if data else self._compiled).run(settings)

    def _nutpie(self, settings: SamplerSettings, data: dict) -> xr.DataTree:
        """nutpie's draws; Ctrl-C raises KeyboardInterrupt (nutpie itself would return the draws so far)."""
        from . import nutpie_adapter

        compiled = self._compiled.with_data(**data) if data else self._compiled
        if self._ready:  # a precompiled density (C callbacks or Python functions), no PyMC model
            compiled = nutpie_adapter.ready_model(compiled)
        sampler = nutpie_adapter.start_sampling(compiled, settings, cores=min(settings.chains, os.cpu_count() or 1))
        try:
            return sampler.wait()
        except BaseException as exc:
            if nutpie_adapter.is_panic(exc):
                raise FitError(
                    f"nutpie stopped with an internal error ({exc}); try sampler='pymc', or other sampler settings."
                ) from exc
            sampler.cancel()  # stop the chains (a panicked sampler cannot be cancelled: it has stopped)
            raise

    def _pymc(self, settings: SamplerSettings, data: dict) -> xr.DataTree:
        """PyMC's draws; Ctrl-C raises KeyboardInterrupt (PyMC itself would return the draws so far)."""
        import pymc as pm

        with self.model, _exact_arithmetic(), _noting_interrupts() as interrupted:
            if data:
                pm.set_data(data)
            try:
                tree = pm.sample(
                    draws=settings.draws,
                    tune=settings.tune,
                    chains=settings.chains,
                    cores=min(settings.chains, os.cpu_count() or 1),
                    random_seed=settings.seed,
                    target_accept=settings.target_accept,
                    nuts_sampler="pymc",
                    progressbar=settings.progressbar,
                    compute_convergence_checks=False,
                )
            except Exception:
                if interrupted:  # interrupted while tuning, PyMC then fails to build its trace
                    raise KeyboardInterrupt from None
                raise
        if interrupted:
            raise KeyboardInterrupt
        return tree


@contextlib.contextmanager
def _noting_interrupts():
    """Note each Ctrl-C (SIGINT) in a list while passing it on as usual.

    PyMC's sampler catches the KeyboardInterrupt and returns the draws made so far, which
    would pass for a complete result; the list lets the caller raise it again. SIGINT
    handlers can only be set in the main thread, the one thread Python interrupts anyway.
    """
    noted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield noted
        return

    def note(signum, frame):
        noted.append(signum)
        previous(signum, frame)

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)
