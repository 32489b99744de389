"""REML estimates next to posterior summaries, parameter by parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bayes import BayesResult
from .errors import ArgumentError
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
    rms = {  # the SD of an effect times its column's size is in units of y, whatever the units of x
        (block.group, column): r if r > 0 else 1.0
        for block in fit.structure.blocks
        for column, r in zip(block.columns, block.rms)
    }
    for _, group, columns, cov in fit.covariances():
        sd = np.sqrt(np.diag(cov))
        corr = correlation_from_cov(cov)
        size = np.array([rms[(group, c)] for c in columns])
        scaled = cov * np.outer(size, size)
        singular = np.linalg.eigvalsh(scaled).min() <= SINGULAR_TOL**2 * max(scaled.trace(), 1e-300)
        for i, column in enumerate(columns):
            boundary = sd[i] * size[i] <= SINGULAR_TOL * fit.sigma
            rows.append((parameter_name("sd", (column,), group, several), sd[i], bool(boundary)))
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
    if not isinstance(reml, RemlResult) or not isinstance(bayes, BayesResult):
        raise ArgumentError(
            f"compare(reml, bayes) takes a RemlResult and a BayesResult, not {type(reml).__name__} and "
            f"{type(bayes).__name__}: e.g. compare(model.fit_reml(), model.sample())."
        )
    if reml.design.formula.text != bayes.design.formula.text:
        raise ArgumentError(
            f"The fits are of different models: {reml.design.formula.text!r} and {bayes.design.formula.text!r}."
        )
    posterior = bayes.summary(ci_prob)[["mean", "sd", "ci_lb", "ci_ub"]]
    table = reml_parameters(reml).join(posterior, how="outer")
    table["reml_in_ci"] = (table["reml"] >= table["ci_lb"]) & (table["reml"] <= table["ci_ub"])
    return table.loc[posterior.index]
