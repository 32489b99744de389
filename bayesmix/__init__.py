"""bayesmix: Bayesian and REML fits of lme4-style mixed-effects models."""

from .design import Design, NewData, RandomTerm, make_design
from .errors import (
    BayesmixError,
    BayesmixWarning,
    ConvergenceWarning,
    DataError,
    FitError,
    FormulaError,
    MissingDataWarning,
    RankDeficiencyWarning,
)
from .formula import BarTerm, MixedFormula, parse_formula
from .model import Model
from .reml import RemlResult, fit_reml, likelihood_ratio_test

__version__ = "0.1.0"

__all__ = [
    "BarTerm",
    "BayesmixError",
    "BayesmixWarning",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "FitError",
    "FormulaError",
    "MissingDataWarning",
    "MixedFormula",
    "Model",
    "NewData",
    "RandomTerm",
    "RankDeficiencyWarning",
    "RemlResult",
    "fit_reml",
    "likelihood_ratio_test",
    "make_design",
    "parse_formula",
]
