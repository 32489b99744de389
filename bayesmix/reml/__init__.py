"""REML and ML fits with lme4's profiled criterion (Bates, Mächler, Bolker and Walker 2015)."""

from __future__ import annotations

import functools
import warnings

import pandas as pd
from scipy.stats import chi2
from threadpoolctl import ThreadpoolController

from ..design import Design
from ..errors import BayesmixError, ConvergenceWarning
from .criterion import ProfiledCriterion
from .optimize import OptSummary, optimize_theta
from .result import RemlResult, RemlSummary
from .structure import structure_of

__all__ = ["OptSummary", "RemlResult", "RemlSummary", "fit_reml", "likelihood_ratio_test"]


def fit_reml(design: Design, reml: bool = True) -> RemlResult:
    """Fit ``design`` by REML (default) or maximum likelihood, as lme4's ``lmer``.

    Warns with :class:`~bayesmix.ConvergenceWarning` for a singular (boundary) fit or when
    the optimiser did not report convergence.
    """
    structure = structure_of(design)
    criterion = ProfiledCriterion(structure, design.cross_products(structure), reml=reml)
    # BLAS threads save at most a factor of the core count on the dense crossed block, and
    # cost 5 to 30 times that when another process keeps a core busy: fits use one thread.
    with _blas_threads().limit(limits=1, user_api="blas"):
        opt = optimize_theta(criterion)
    result = RemlResult(design, reml, structure, criterion.factorize(opt.final), opt, opt.fmin)
    if result.singular:
        warnings.warn(
            "boundary (singular) fit: a random-effect variance is (nearly) 0 or a correlation is +-1; "
            "consider a simpler random-effects structure.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return result


@functools.cache
def _blas_threads() -> ThreadpoolController:
    return ThreadpoolController()


def likelihood_ratio_test(*fits: RemlResult) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as lme4's ``anova(m1, m2, ...)``.

    Fits are ordered by their number of parameters; REML fits are refitted by maximum
    likelihood first (REML likelihoods of models with different fixed effects are not comparable).
    """
    if len(fits) < 2:
        raise BayesmixError("likelihood_ratio_test needs at least two fits.")
    if len({f.nobs for f in fits}) > 1:
        raise BayesmixError("The fits use different numbers of observations; fit them to the same rows.")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ml = sorted((f if not f.reml else fit_reml(f.design, reml=False) for f in fits), key=lambda f: f.n_params)
    rows = []
    for k, f in enumerate(ml):
        row = {"model": f.design.formula.text, "npar": f.n_params, "AIC": f.aic, "BIC": f.bic,
               "logLik": f.loglik, "deviance": f.criterion, "Chisq": None, "Df": None, "p_value": None}
        if k:
            prev = ml[k - 1]
            stat = max(prev.criterion - f.criterion, 0.0)
            df = f.n_params - prev.n_params
            row.update(Chisq=stat, Df=df, p_value=float(chi2.sf(stat, df)) if df > 0 else None)
        rows.append(row)
    return pd.DataFrame(rows)
