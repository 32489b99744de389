"""Point estimates (REML, ML) next to posterior summaries, parameter by parameter."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .bayes import BayesResult
from .errors import ArgumentError
from .reml import GlmmResult, RemlResult
from .reml.optimize import SINGULAR_TOL
from .reml.point import PointFit
from .tables import correlation_from_cov, parameter_name


def point_parameters(fit: PointFit) -> pd.DataFrame:
    """A point fit's estimates named as in :meth:`BayesResult.summary`, flagging boundary values.

    A standard deviation is on the boundary when its θ is (nearly) 0, a correlation when
    |ρ| is (nearly) 1 (then the covariance matrix is singular). The column is ``reml`` for a
    linear mixed model (REML or ML), ``ml`` for a GLMM.
    """
    several = len(fit.ngrps) > 1
    rows = [(name, value, False) for name, value in fit.fixef().items()]
    scale = np.sqrt(fit.effect_scale)  # σ for the linear model, 1 (the link scale) for a GLMM
    rms = {  # the SD of an effect times its column's size is in units of η, whatever the units of x
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
            boundary = sd[i] * size[i] <= SINGULAR_TOL * scale
            rows.append((parameter_name("sd", (column,), group, several), sd[i], bool(boundary)))
        for i in range(len(columns)):
            for j in range(i + 1, len(columns)):
                rows.append((parameter_name("cor", (columns[i], columns[j]), group, several), corr[i, j], bool(singular)))
    rows += [(name, value, False) for name, value in fit.dispersion_estimates().items()]
    column = "reml" if isinstance(fit, RemlResult) else "ml"
    return pd.DataFrame(rows, columns=["parameter", column, "boundary"]).set_index("parameter")


def compare(fit: RemlResult | GlmmResult, bayes: BayesResult, ci_prob: float = 0.95) -> pd.DataFrame:
    """One table: the point estimate beside the posterior mean, SD and interval of every parameter.

    Columns: ``reml`` (``ml`` for a GLMM), ``boundary`` (the estimate lies on the boundary of
    the parameter space: a zero SD, or correlations of a singular covariance matrix), ``mean``,
    ``sd``, ``ci_lb``, ``ci_ub`` and ``reml_in_ci`` (``ml_in_ci``).
    """
    if not isinstance(fit, PointFit) or not isinstance(bayes, BayesResult):
        raise ArgumentError(
            f"compare(fit, bayes) takes a REML/ML fit and a BayesResult, not {type(fit).__name__} and "
            f"{type(bayes).__name__}: e.g. compare(model.fit_reml(), model.sample())."
        )
    if fit.design.formula.text != bayes.design.formula.text or fit.design.family != bayes.design.family:
        raise ArgumentError(
            f"The fits are of different models: {fit.design.formula.text!r} ({fit.design.family}) and "
            f"{bayes.design.formula.text!r} ({bayes.design.family})."
        )
    posterior = bayes.summary(ci_prob)[["mean", "sd", "ci_lb", "ci_ub"]]
    estimates = point_parameters(fit)
    column = estimates.columns[0]
    table = estimates.join(posterior, how="outer")
    table[f"{column}_in_ci"] = (table[column] >= table["ci_lb"]) & (table[column] <= table["ci_ub"])
    return table.loc[posterior.index]
