"""Bayesian fits: a PyMC model with LKJ-correlated non-centred random effects, sampled by NUTS."""

from __future__ import annotations

from ..design import Design
from .builder import PARAMETERIZATIONS, build_model, group_layouts, term_labels
from .priors import (
    LKJ,
    Distribution,
    Exponential,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prior,
    PriorError,
    PriorSet,
    StudentT,
    prior,
    resolve_priors,
)
from .result import BayesResult, Prediction
from .sampling import ArgumentError, CompiledSampler, SamplerSettings

__all__ = [
    "LKJ", "ArgumentError", "BayesModel", "BayesResult", "Distribution", "Exponential", "HalfNormal",
    "HalfStudentT", "Normal", "Prediction", "Prior", "PriorError", "PriorSet", "StudentT", "prior",
    "resolve_priors", "sample",
]


class BayesModel:
    """A design with its priors, built as a PyMC model and compiled once for repeated sampling.

    Parameters
    ----------
    design
        The materialised model.
    priors
        Overrides of the default priors (see :func:`prior`).
    parameterization
        ``"noncentred"`` (default) or ``"centred"`` random effects (see :func:`build_model`).
    """

    def __init__(self, design: Design, priors: list[Prior] | None = None, parameterization: str = "noncentred"):
        if parameterization not in PARAMETERIZATIONS:
            raise ArgumentError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, not {parameterization!r}.")
        self.design = design
        self.priors = resolve_priors(design, term_labels(design), priors)
        self.layouts = group_layouts(design)
        self.parameterization = parameterization
        self.pymc_model = build_model(design, self.priors, parameterization)
        self._sampler = CompiledSampler(self.pymc_model)

    def sample(self, y=None, **settings) -> BayesResult:
        """Sample the posterior; ``settings`` are those of :class:`SamplerSettings`.

        ``y`` replaces the response (same length), reusing the compiled model: what
        simulation-based calibration needs.
        """
        settings = SamplerSettings(**settings)
        design = self.design if y is None else _with_response(self.design, y)
        tree, seconds = self._sampler.sample(settings, **({} if y is None else {"y": design.y}))
        result = BayesResult(
            design, tree, self.priors, self.layouts, settings, seconds, self._sampler.compile_seconds,
            method=f"full, {self.parameterization}",
        )
        result.check()
        return result

    def sample_prior_predictive(self, draws: int = 500, seed: int | None = None):
        """Prior and prior predictive draws (a DataTree with ``prior`` and ``prior_predictive``)."""
        import pymc as pm

        with self.pymc_model:
            return pm.sample_prior_predictive(draws=draws, random_seed=seed)


def sample(design: Design, priors: list[Prior] | None = None, **settings) -> BayesResult:
    """Build, compile and sample the model of ``design`` (see :class:`BayesModel`)."""
    return BayesModel(design, priors).sample(**settings)


def _with_response(design: Design, y) -> Design:
    import dataclasses

    import numpy as np

    from ..errors import DataError

    y = np.asarray(y, dtype=float)
    if y.shape != design.y.shape or not np.isfinite(y).all():
        raise DataError(f"A replacement response must be {design.n} finite numbers.")
    return dataclasses.replace(design, y=y)
