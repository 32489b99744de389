"""bayesmix: Bayesian and REML fits of lme4-style mixed-effects models.

The public names are imported on first use (PEP 562): ``import bayesmix`` costs nothing, and
``bm.Model`` loads the data layer, the families and numba's kernels when it is first touched,
not the command line's ``--help``. Submodules (``bm.datasets``, ``bm.plots``) load the same way.
The imports under ``TYPE_CHECKING`` below are the one list of the public names and their
modules: type checkers and the API documentation read them as written, and :func:`__getattr__`
reads them from this file's syntax tree (``__all__`` lists the same names, which ruff checks).
"""

from __future__ import annotations

import ast
import functools
import importlib
import sys
import types
from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
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
    from .plots import (binned_residuals, conditional_effects, plot_binned_residuals, plot_conditional_effects, plot_ppc,
                        plot_prior_predictive, plot_rank, plot_ranef, plot_rootogram, plot_trace, qq_plot,
                        randomized_quantile_residuals)
    from .reml import GlmmResult, RemlResult, fit_glmm, fit_reml, likelihood_ratio_test
    from .reml.bootstrap import BootstrapResult, ParametricBootstrapTest, bootstrap, pb_test


@functools.cache
def _homes() -> dict[str, str]:
    """Each public name's module (``"Model": "model"``), from the imports under ``TYPE_CHECKING``."""
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    block = next(node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING")
    return {alias.asname or alias.name: node.module for node in block.body for alias in node.names}


__all__ = [
    "ArgumentError",
    "BarTerm",
    "BayesModel",
    "BayesResult",
    "BayesmixError",
    "BayesmixWarning",
    "Binomial",
    "BootstrapResult",
    "ConvergenceWarning",
    "DataError",
    "Design",
    "Exponential",
    "Family",
    "FitError",
    "Flat",
    "FormulaError",
    "Gaussian",
    "GlmmResult",
    "HalfNormal",
    "HalfStudentT",
    "LKJ",
    "MissingDataWarning",
    "MixedFormula",
    "Model",
    "NegativeBinomial",
    "Normal",
    "OutOfCore",
    "ParametricBootstrapTest",
    "Poisson",
    "Prediction",
    "PriorError",
    "RandomTerm",
    "RankDeficiencyWarning",
    "RemlResult",
    "Rows",
    "SeparationWarning",
    "StudentT",
    "binned_residuals",
    "bootstrap",
    "compare",
    "conditional_effects",
    "fit_glmm",
    "fit_reml",
    "likelihood_ratio_test",
    "load",
    "make_design",
    "parse_formula",
    "pb_test",
    "plot_binned_residuals",
    "plot_conditional_effects",
    "plot_ppc",
    "plot_prior_predictive",
    "plot_ranef",
    "plot_rank",
    "plot_rootogram",
    "plot_trace",
    "prior",
    "qq_plot",
    "randomized_quantile_residuals",
]


def __getattr__(name: str):
    """A public name or a submodule, imported on first use and kept."""
    if name.startswith("__"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    importlib.import_module(".jit", __name__)  # first: it may choose PyTensor's directory before PyTensor is imported
    if name in _homes():
        value = getattr(importlib.import_module(f".{_homes()[name]}", __name__), name)
    else:
        try:
            value = importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as error:
            if error.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """The package's module type: importing a submodule binds it as an attribute of the package,
    which must not hide the public name it shares (``bayesmix.compare`` is the function, even
    after ``bayesmix.compare``, the module, is imported); the function is then looked up anew."""

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, types.ModuleType) and name in _homes() and value.__name__ == f"{__name__}.{name}":
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
