"""Bayesian fits: a PyMC model with LKJ-correlated random effects (non-centred or centred per grouping factor), sampled by NUTS.

Importing this package imports neither PyMC, PyTensor, nutpie nor ArviZ (seconds each): the PyMC
model (:mod:`.builder`, :mod:`.ops`) and nutpie (:mod:`.nutpie_adapter`) are imported when a
model is first built or sampled, ArviZ when a result is summarised.
"""

from __future__ import annotations

from .. import jit  # noqa: F401 - first: it may choose PyTensor's directory before PyTensor is imported
from .model import METHODS, BayesModel, sample
from .priors import (
    LKJ,
    Distribution,
    Exponential,
    Flat,
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
    "LKJ",
    "METHODS",
    "ArgumentError",
    "BayesModel",
    "BayesResult",
    "CompiledSampler",
    "Distribution",
    "Exponential",
    "Flat",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prediction",
    "Prior",
    "PriorError",
    "PriorSet",
    "SamplerSettings",
    "StudentT",
    "prior",
    "resolve_priors",
    "sample",
]
