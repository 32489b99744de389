"""Bayesian fits: a PyMC model with LKJ-correlated non-centred random effects, sampled by NUTS."""

from __future__ import annotations

from .builder import build_collapsed_model, build_model
from .model import METHODS, BayesModel, sample
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
    "LKJ",
    "METHODS",
    "ArgumentError",
    "BayesModel",
    "BayesResult",
    "CompiledSampler",
    "Distribution",
    "Exponential",
    "HalfNormal",
    "HalfStudentT",
    "Normal",
    "Prediction",
    "Prior",
    "PriorError",
    "PriorSet",
    "SamplerSettings",
    "StudentT",
    "build_collapsed_model",
    "build_model",
    "prior",
    "resolve_priors",
    "sample",
]
