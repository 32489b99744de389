"""Everything bayesmix asks of nutpie: the one module to update when nutpie changes.

bayesmix uses two public functions of nutpie (``compile_pymc_model`` and ``sample``) and,
to sample the precompiled collapsed density (:mod:`bayesmix.bayes.density`) without a PyMC
model, part of nutpie's private interface:

- ``nutpie.sample.CompiledModel``, the base class of what ``nutpie.sample`` accepts, and its
  ``_make_sampler`` / ``_make_model`` hooks;
- ``nutpie._lib``, nutpie's Rust extension: ``PySampler.from_pymc``, ``LogpFunc``,
  ``ExpandFunc``, ``PyVariable.new_variables`` and ``PyMcModel``, which take C callbacks of
  exactly the signatures that the numba path of ``nutpie.compile_pymc_model`` hands them;
- ``nutpie.transform_adapter.make_transform_adapter`` (normalizing flows);
- ``nutpie.compiled_pyfunc.from_pyfunc``, for a density given as Python functions (the
  Laplace-approximated posterior of :mod:`bayesmix.bayes.embedded_laplace`);
- a Rust panic inside nutpie surfaces as pyo3's ``PanicException``, a ``BaseException``
  from the module ``pyo3_runtime``.

None of the private part is a stable API: this module is written against the nutpie versions
that ``pyproject.toml`` allows, and ``tests/test_density.py`` and ``tests/test_collapsed.py``
fail when a new nutpie changes it. This module imports nutpie (and with it ArviZ), so it is
imported only when a model is sampled with nutpie, never by ``import bayesmix``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import nutpie
from nutpie import _lib
from nutpie.sample import CompiledModel


class CallbackDensity(Protocol):
    """A log density given as numba C callbacks that read all model data from one float64 array.

    :class:`bayesmix.bayes.density.CollapsedDensity` is one.
    """

    user_data: object  # a float64 array: the callbacks' user data, kept alive by the model
    variables: list  # objects with name, shape and dims: the expanded variables
    coords: dict  # dim name -> pd.Index
    n_dim: int  # number of unconstrained coordinates
    n_expanded: int  # total size of the expanded variables

    def callbacks(self) -> tuple:
        """The numba ``cfunc`` of the log density and gradient, and that of the expansion."""

    def init(self, seed) -> object:
        """An initial point for a chain."""


def compile_pymc(model):
    """nutpie's compiled form of a PyMC model (numba backend; about 10 s per model)."""
    return nutpie.compile_pymc_model(model)


def callback_model(density: CallbackDensity) -> CompiledModel:
    """What ``nutpie.sample`` takes for a density given as C callbacks."""
    return _CallbackModel(dims={v.name: v.dims for v in density.variables}, density=density)


class PythonDensity(Protocol):
    """A log density given as Python functions (:class:`bayesmix.bayes.embedded_laplace.LaplaceDensity`).

    nutpie calls ``make_logp()`` and ``make_expand(seed1, seed2, chain)`` once per chain; the
    functions they return take the unconstrained point and return (logp, gradient) and a dict
    of the expanded variables.
    """

    variables: list  # objects with name, shape and dims: the expanded variables
    coords: dict  # dim name -> pd.Index
    n_dim: int  # number of unconstrained coordinates

    def make_logp(self): ...

    def make_expand(self, seed1: int, seed2: int, chain: int): ...

    def init(self, seed) -> object:
        """An initial point for a chain."""


def python_model(density: PythonDensity) -> CompiledModel:
    """What ``nutpie.sample`` takes for a density given as Python functions (nutpie's ``from_pyfunc``)."""
    from nutpie.compiled_pyfunc import from_pyfunc

    return from_pyfunc(
        density.n_dim,
        density.make_logp,
        density.make_expand,
        [np.dtype("float64")] * len(density.variables),
        [v.shape for v in density.variables],
        [v.name for v in density.variables],
        coords=dict(density.coords),
        dims={v.name: v.dims for v in density.variables},
        make_initial_point_fn=density.init,
    )


def ready_model(density: CallbackDensity | PythonDensity) -> CompiledModel:
    """What ``nutpie.sample`` takes for a precompiled density of either kind."""
    return python_model(density) if hasattr(density, "make_logp") else callback_model(density)


def start_sampling(model: CompiledModel, settings, cores: int):
    """Start nutpie's chains in the background; ``.wait()`` returns the draws, ``.cancel()`` stops them.

    ``settings`` is a :class:`~bayesmix.bayes.sampling.SamplerSettings`.
    """
    return nutpie.sample(
        model,
        draws=settings.draws,
        tune=settings.tune,
        chains=settings.chains,
        cores=cores,
        seed=settings.seed,
        target_accept=settings.target_accept,
        progress_bar=settings.progressbar,
        save_warmup=False,
        blocking=False,
    )


def is_panic(exc: BaseException) -> bool:
    """Whether ``exc`` is a Rust panic inside nutpie (which ``except Exception`` does not catch)."""
    return type(exc).__module__ == "pyo3_runtime"


@dataclass(frozen=True)
class _CallbackModel(CompiledModel):
    """nutpie's model interface around a :class:`CallbackDensity`."""

    density: CallbackDensity

    @property
    def n_dim(self) -> int:
        return self.density.n_dim

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {v.name: v.shape for v in self.density.variables}

    @property
    def coords(self) -> dict:
        return self.density.coords

    def _make_sampler(self, settings, init_mean, cores, progress_type, extra_callback, extra_callback_rate, store):
        return _lib.PySampler.from_pymc(
            settings, cores, self._make_model(init_mean), progress_type, extra_callback, extra_callback_rate, store
        )

    def _make_model(self, init_mean):
        density = self.density
        logp_callback, expand_callback = density.callbacks()
        address = density.user_data.ctypes.data
        logp = _lib.LogpFunc(logp_callback.address, address, density)
        expand = _lib.ExpandFunc(density.n_dim, density.n_expanded, expand_callback.address, address, density)
        dim_sizes = {name: len(values) for name, values in density.coords.items()}
        variables = _lib.PyVariable.new_variables(
            [v.name for v in density.variables], ["float64"] * len(density.variables),
            [v.shape for v in density.variables], dim_sizes, dict(self.dims),
        )
        return _lib.PyMcModel(
            logp, expand, variables, density.n_dim, dim_sizes, dict(density.coords), density.init, _transform_adapter
        )


def _transform_adapter(*args, **kwargs):
    """nutpie's normalizing-flow adapter (used only if a flow is requested), as for PyMC models."""
    from nutpie.transform_adapter import make_transform_adapter

    return make_transform_adapter()(*args, **kwargs, logp_fn=None)
