"""bayesmix: Bayesian and REML fits of lme4-style mixed-effects models."""

from . import jit  # noqa: F401 - first, for its side effect: it may choose PyTensor's directory before PyTensor is imported
from . import datasets as datasets
from .bayes import (
    LKJ,
    BayesModel,
    BayesResult,
    Exponential,
    Flat,
    HalfNormal,
    HalfStudentT,
    Normal,
    Prediction,
    StudentT,
    prior,
)
from .compare import compare
from .data.build import make_design
from .data.design import Design, OutOfCore, Rows
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
    SeparationWarning,
)
from .families import Binomial, Family, Gaussian, NegativeBinomial, Poisson
from .formula import BarTerm, MixedFormula, parse_formula
from .io import load
from .model import Model
from .plots import (binned_residuals, plot_binned_residuals, plot_ppc, plot_rank, plot_rootogram, plot_trace, qq_plot,
                    randomized_quantile_residuals)
from .reml import GlmmResult, RemlResult, fit_glmm, fit_reml, likelihood_ratio_test
from .reml.bootstrap import BootstrapResult, ParametricBootstrapTest, bootstrap, pb_test

__version__ = "0.1.0"

__all__ = [
    "LKJ",
    "ArgumentError",
    "BarTerm",
    "BayesModel",
    "BayesResult",
    "BayesmixError",
    "BayesmixWarning",
    "BootstrapResult",
    "Binomial",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Exponential",
    "Flat",
    "Family",
    "FitError",
    "FormulaError",
    "Gaussian",
    "GlmmResult",
    "HalfNormal",
    "HalfStudentT",
    "MissingDataWarning",
    "MixedFormula",
    "Model",
    "NegativeBinomial",
    "OutOfCore",
    "Rows",
    "Normal",
    "ParametricBootstrapTest",
    "Poisson",
    "Prediction",
    "PriorError",
    "RandomTerm",
    "RankDeficiencyWarning",
    "RemlResult",
    "SeparationWarning",
    "StudentT",
    "binned_residuals",
    "bootstrap",
    "compare",
    "fit_glmm",
    "fit_reml",
    "likelihood_ratio_test",
    "load",
    "make_design",
    "parse_formula",
    "pb_test",
    "plot_binned_residuals",
    "plot_ppc",
    "plot_rank",
    "plot_rootogram",
    "plot_trace",
    "prior",
    "qq_plot",
    "randomized_quantile_residuals",
]
