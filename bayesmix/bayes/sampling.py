"""NUTS sampling of a built model, with nutpie (compiled once per model) or PyMC's sampler."""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm
import xarray as xr

from ..errors import ArgumentError

SAMPLERS = ("nutpie", "pymc")


@dataclass(frozen=True)
class SamplerSettings:
    """NUTS settings, checked on creation.

    Attributes
    ----------
    draws, tune, chains
        Posterior draws per chain, tuning steps per chain, number of chains.
    seed
        Seed of the sampler; the same seed on the same model gives the same draws.
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
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            minimum = 0 if name == "tune" else 1
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
                raise ArgumentError(f"{name} must be an integer >= {minimum}, not {value!r}.")
        if self.seed is not None and (
            isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or not 0 <= self.seed < 2**64
        ):
            raise ArgumentError(f"seed must be a non-negative integer below 2**64, or None, not {self.seed!r}.")
        if isinstance(self.target_accept, bool) or not isinstance(self.target_accept, (float, int)) or not 0 < self.target_accept < 1:
            raise ArgumentError(f"target_accept must lie strictly between 0 and 1, not {self.target_accept!r}.")
        if not isinstance(self.progressbar, (bool, np.bool_)):
            raise ArgumentError(f"progressbar must be True or False, not {self.progressbar!r}.")
        if self.sampler not in SAMPLERS:
            raise ArgumentError(f"sampler must be one of {', '.join(SAMPLERS)}, not {self.sampler!r}.")


@contextlib.contextmanager
def few_draws_allowed():
    """Silence ArviZ's guess that dims are misnamed when there are fewer draws than chains
    (ours are named; too few draws are reported as such by ``BayesResult.check``)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Found chain dimension to be longer than draw dimension")
        yield


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
        if settings.sampler == "nutpie":
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
        import nutpie

        if self._compiled is None:
            start = time.perf_counter()
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*could not link to a BLAS.*")
                self._compiled = nutpie.compile_pymc_model(self.model)
            self.compile_seconds = time.perf_counter() - start
        elif self._ready and not self.compile_seconds:
            # numba's kernels: compiled once per installation, loaded from its disk cache after that
            start = time.perf_counter()
            self._compiled.compile()
            self.compile_seconds = time.perf_counter() - start
        return self._nutpie

    def _nutpie(self, settings: SamplerSettings, data: dict) -> xr.DataTree:
        import nutpie

        compiled = self._compiled.with_data(**data) if data else self._compiled
        return nutpie.sample(
            compiled,
            draws=settings.draws,
            tune=settings.tune,
            chains=settings.chains,
            cores=min(settings.chains, os.cpu_count() or 1),
            seed=settings.seed,
            target_accept=settings.target_accept,
            progress_bar=settings.progressbar,
            save_warmup=False,
        )

    def _pymc(self, settings: SamplerSettings, data: dict) -> xr.DataTree:
        with self.model:
            if data:
                pm.set_data(data)
            return pm.sample(
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
