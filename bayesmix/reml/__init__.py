"""Point estimates: REML and ML fits of linear mixed models with lme4's profiled criterion (Bates, Mächler,
Bolker and Walker 2015), and maximum-likelihood fits of GLMMs by the Laplace approximation or quadrature."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from ..data.design import Design
from ..errors import ArgumentError, ConvergenceWarning
from ..families import Gaussian, check_supported
from .criterion import profiled_criterion
from .optimize import OptSummary
from .glmm import GlmmResult, GlmmSummary, fit_glmm
from .point import PointFit
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


def _data_difference(a: Design, b: Design) -> str | None:
    """How two designs' data differ (rows, response values, shared columns), or None if they do not."""
    if a.n != b.n:
        return f"use different numbers of observations ({a.n} and {b.n})"
    if not (a.in_memory and b.in_memory):  # statistics only: compare the response's moments
        if not np.allclose(a.response_moments(), b.response_moments(), rtol=1e-12, atol=0):
            return f"have different responses ({a.response!r} and {b.response!r}: their means or SDs differ)"
        return None
    ra, rb = a.rows, b.rows
    if not ra.index.equals(rb.index):
        return "use different rows (their row labels differ)"
    if not np.array_equal(ra.y, rb.y):
        return f"have different response values ({a.response!r} and {b.response!r})"
    for column in set(ra.frame.columns) & set(rb.frame.columns):
        if not ra.frame[column].equals(rb.frame[column]):
            return f"have different values in column {column!r}"
    return None


def likelihood_ratio_test(*fits: RemlResult | GlmmResult) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as lme4's ``anova(m1, m2, ...)``.

    Fits are ordered by their number of parameters; REML fits are refitted by maximum
    likelihood first (REML likelihoods of models with different fixed effects are not comparable).

    Raises
    ------
    ArgumentError
        Unless every fit has the same response family and used the same rows, the same
        response values and the same values in the columns they share: likelihoods of
        different data are not comparable.
    """
    from scipy.stats import chi2  # scipy.stats takes about 0.5 s to import: only for this test

    if len(fits) < 2:
        raise ArgumentError("likelihood_ratio_test needs at least two fits, e.g. likelihood_ratio_test(small, big).")
    for k, f in enumerate(fits):
        if not isinstance(f, PointFit):
            raise ArgumentError(
                f"likelihood_ratio_test takes REML/ML fits (model.fit_reml() or fit_ml()); argument {k + 1} is a "
                f"{type(f).__name__}."
            )
    for k, f in enumerate(fits[1:], start=2):
        if f.design.family != fits[0].design.family:
            raise ArgumentError(
                f"likelihood_ratio_test compares fits of one response family, but fit 1 is {fits[0].design.family} "
                f"and fit {k} is {f.design.family}."
            )
        difference = _data_difference(fits[0].design, f.design)
        if difference:
            raise ArgumentError(
                f"likelihood_ratio_test compares fits to the same data, but fits 1 and {k} {difference}. "
                "Fit every model to the same rows of one data frame, with the same response."
            )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ml = sorted((fit_reml(f.design, reml=False) if getattr(f, "reml", False) else f for f in fits),
                    key=lambda f: f.n_params)
    rows = []
    for k, f in enumerate(ml):
        row = {"model": f.design.formula.text, "npar": f.n_params, "AIC": f.aic, "BIC": f.bic,
               "logLik": f.loglik, "deviance": -2.0 * f.loglik, "Chisq": None, "Df": None, "p_value": None}
        if k:
            prev = ml[k - 1]
            stat = max(2.0 * (f.loglik - prev.loglik), 0.0)
            df = f.n_params - prev.n_params
            row.update(Chisq=stat, Df=df, p_value=float(chi2.sf(stat, df)) if df > 0 else None)
        rows.append(row)
    return pd.DataFrame(rows)
