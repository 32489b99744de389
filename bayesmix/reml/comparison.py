"""Likelihood-ratio tests between nested point-estimate fits of the same data (lme4's ``anova(m1, m2)``)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.design import Design
from ..errors import ArgumentError
from .point import PointFit
from .refit import maximum_likelihood


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


def likelihood_ratio_test(*fits: PointFit) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as lme4's ``anova(m1, m2, ...)``.

    Fits are ordered by their number of parameters; REML fits are refitted by maximum
    likelihood first, from their θ̂ as lme4's ``refitML`` (REML likelihoods of models with
    different fixed effects are not comparable).

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
    ml = sorted((maximum_likelihood(f) for f in fits), key=lambda f: f.n_params)
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
