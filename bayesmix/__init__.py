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
    "NewData",
    "RandomTerm",
    "RankDeficiencyWarning",
    "make_design",
    "parse_formula",
]
