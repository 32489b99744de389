"""REML estimates next to posterior summaries, parameter by parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bayes import BayesResult
from .reml import RemlResult
from .reml.optimize import SINGULAR_TOL
from .tables import correlation_from_cov, parameter_name


def reml_parameters(fit: RemlResult) -> pd.DataFrame:
    """REML estimates named as in :meth:`BayesResult.summary`, flagging boundary values.

    A standard deviation is on the boundary when its θ is (nearly) 0, a correlation when
    |ρ| is (nearly) 1 (then the covariance matrix is singular).
    """
    several = len(fit.ngrps) > 1
    rows = [(name, value, False) for name, value in fit.fixef().items()]
    for _, group, columns, cov in fit.covariances():
        sd = np.sqrt(np.diag(cov))
        corr = correlation_from_cov(cov)
        singular = np.linalg.eigvalsh(cov).min() <= SINGULAR_TOL**2 * max(cov.trace(), 1e-300)
        for i, column in enumerate(columns):
            rows.append((parameter_name("sd", (column,), group, several), sd[i], bool(sd[i] <= SINGULAR_TOL * fit.sigma)))
        for i in range(len(columns)):
            for j in range(i + 1, len(columns)):
                rows.append((parameter_name("cor", (columns[i], columns[j]), group, several), corr[i, j], bool(singular)))
    rows.append(("sigma", fit.sigma, False))
    return pd.DataFrame(rows, columns=["parameter", "reml", "boundary"]).set_index("parameter")


def compare(reml: RemlResult, bayes: BayesResult, ci_prob: float = 0.95) -> pd.DataFrame:
    """One table: the REML estimate beside the posterior mean, SD and interval of every parameter.

    Columns: ``reml``, ``boundary`` (the REML estimate lies on the boundary of the parameter
    space: a zero SD, or correlations of a singular covariance matrix), ``mean``, ``sd``,
    ``ci_lb``, ``ci_ub`` and ``reml_in_ci``.
    """
    if reml.design.formula.text != bayes.design.formula.text:
        raise ValueError(
            f"The fits are of different models: {reml.design.formula.text!r} and {bayes.design.formula.text!r}."
        )
    posterior = bayes.summary(ci_prob)[["mean", "sd", "ci_lb", "ci_ub"]]
    table = reml_parameters(reml).join(posterior, how="outer")
    table["reml_in_ci"] = (table["reml"] >= table["ci_lb"]) & (table["reml"] <= table["ci_ub"])
    return table.loc[posterior.index]
