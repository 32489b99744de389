"""bayesmix: Bayesian and REML fits of lme4-style mixed-effects models."""

from . import jit  # first: it may have to choose PyTensor's directory before PyTensor is imported
from . import datasets
from .bayes import (
    LKJ,
    BayesModel,
    BayesResult,
    Exponential,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prediction,
    StudentT,
    prior,
)
from .compare import compare
from .data.build import make_design
from .data.design import Design, NewData
from .data.terms import RandomTerm
from .errors import (
    ArgumentError,
    BayesmixError,
    BayesmixWarning,
    ConvergenceWarning,
    DataError,
    FitError,
    FormulaError,
    MissingDataWarning,
    PriorError,
    RankDeficiencyWarning,
)
from .families import Binomial, Family, Gaussian, NegativeBinomial, Poisson
from .formula import BarTerm, MixedFormula, parse_formula
from .io import load
from .model import Model
from .plots import plot_ppc, plot_rank, plot_trace, qq_plot
from .reml import RemlResult, fit_reml, likelihood_ratio_test

__version__ = "0.1.0"

__all__ = [
    "LKJ",
    "ArgumentError",
    "BarTerm",
    "BayesModel",
    "BayesResult",
    "BayesmixError",
    "BayesmixWarning",
    "Binomial",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Exponential",
    "Family",
    "FitError",
    "FormulaError",
    "Gaussian",
    "HalfNormal",
    "HalfStudentT",
    "MissingDataWarning",
    "MixedFormula",
    "Model",
    "NegativeBinomial",
    "NewData",
    "Normal",
    "Poisson",
    "Prediction",
    "PriorError",
    "RandomTerm",
    "RankDeficiencyWarning",
    "RemlResult",
    "StudentT",
    "compare",
    "fit_reml",
    "likelihood_ratio_test",
    "load",
    "make_design",
    "parse_formula",
    "plot_ppc",
    "plot_rank",
    "plot_trace",
    "prior",
    "qq_plot",
]
