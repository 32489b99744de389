"""Point estimates: REML and ML fits of linear mixed models with lme4's profiled criterion (Bates, Mächler,
Bolker and Walker 2015), and maximum-likelihood fits of GLMMs by the Laplace approximation or quadrature."""

from __future__ import annotations

import numpy as np

from ..data.design import Design
from ..errors import ArgumentError
from ..families import Gaussian, check_supported
from .comparison import likelihood_ratio_test
from .criterion import profiled_criterion
from .optimize import OptSummary
from .glmm import GlmmResult, GlmmSummary, fit_glmm
from .refit import fit_profiled
from .result import RemlResult, RemlSummary
from ..data.layout import structure_of

__all__ = ["GlmmResult", "GlmmSummary", "OptSummary", "RemlResult", "RemlSummary", "fit_glmm", "fit_reml",
           "likelihood_ratio_test"]


def fit_reml(design: Design, reml: bool = True, factorization: str = "auto") -> RemlResult:
    """Fit ``design`` by REML (default) or maximum likelihood, as lme4's ``lmer``.

    ``factorization`` chooses how Λ'Z'ZΛ + I is factored: ``"blocked"`` (a dense block for the
    grouping factors after the first), ``"sparse"`` (CHOLMOD, the extra ``bayesmix[sparse]``)
    or ``"auto"``: sparse when that dense block would have more than 2,000 rows, CHOLMOD is
    installed and its fill-reduced factor is cheap enough, or the dense block would not fit in
    memory (see docs/reml.md). ``fit.optsummary.factorization`` says which was used.

    Warns with :class:`~bayesmix.ConvergenceWarning` for a singular (boundary) fit or when
    the optimiser did not report convergence. Raises :class:`~bayesmix.FitError` (with the
    optimiser's record as ``optsummary``) rather than return a non-finite estimate, and
    :class:`~bayesmix.ArgumentError` for a design whose family is not the Gaussian
    (generalised linear mixed models are not fitted by REML).
    """
    if not isinstance(design, Design):
        raise ArgumentError(
            f"fit_reml takes a Design (model.design, or bm.make_design(formula, data)), not {type(design).__name__}; "
            "or fit with bm.Model(formula, data).fit_reml()."
        )
    check_supported(design.family, (Gaussian(),), "REML and ML (lme4's linear mixed model criterion)",
                    "a generalised linear mixed model is fitted by maximum likelihood (the Laplace approximation): "
                    "use model.fit_ml()")
    if not isinstance(reml, (bool, np.bool_)):
        raise ArgumentError(f"reml must be True (REML) or False (maximum likelihood), not {reml!r}.")
    structure = structure_of(design)
    return fit_profiled(RemlResult, design, structure, profiled_criterion(design, structure, reml, factorization))
