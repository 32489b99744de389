"""The parameters of a point-estimate fit as confidence intervals and the bootstrap name and
order them: the random effects' SDs and correlations in θ's order (lme4's ``.sig01``,
``.sig02``, ...), the dispersion (σ of a linear model, lme4's ``.sigma``), the fixed effects.
The variance parameters are named as :func:`bayesmix.compare` and the posterior's summary
name them: ``sd(Intercept)``, ``cor(Intercept, Days)``, with ``| group`` when the model has
several grouping factors.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..data.layout import Structure, term_labels
from ..tables import parameter_name

if TYPE_CHECKING:
    from .point import PointFit


def variance_parameter_names(fit: PointFit) -> list[str]:
    """Names of the SDs and correlations, one per θ element (lme4's ``.sig01``, ``.sig02``, ... in order)."""
    labels = term_labels(fit.design)
    several = len(fit.ngrps) > 1
    names = []
    for block in fit.structure.blocks:
        for r, c in zip(block.theta_rows, block.theta_cols):
            term = next(t for t, cols in zip(block.terms, block.term_slices) if cols.start <= r < cols.stop)
            label = labels[term]
            if r == c:
                names.append(parameter_name("sd", (block.columns[r],), label, several))
            else:
                names.append(parameter_name("cor", (block.columns[c], block.columns[r]), label, several))
    return names


def sd_cor(structure: Structure, theta: np.ndarray, scale: float) -> np.ndarray:
    """The SDs and correlations of the random effects, one per θ element (a diagonal element
    gives its row's SD, an off-diagonal one the correlation of its row and column), for the
    covariance scale² ΛΛ' of each factor block (lme4's ``Cv_to_Sv``)."""
    out = []
    for block in structure.blocks:
        lam = block.lambda_(theta)
        cov = scale**2 * lam @ lam.T
        sd = np.sqrt(np.diag(cov))
        for r, c in zip(block.theta_rows, block.theta_cols):
            if r == c:
                out.append(sd[r])
            else:
                out.append(cov[r, c] / (sd[r] * sd[c]) if sd[r] * sd[c] > 0 else np.nan)
    return np.asarray(out, dtype=float)


def parameter_values(fit: PointFit) -> np.ndarray:
    """The values of :func:`parameter_estimates`, without building a Series (the bootstrap's
    default statistic, read off every refit)."""
    return parameter_vector(fit.structure, fit.theta_values, np.sqrt(fit.effect_scale),
                            list(fit.dispersion_estimates().values()), fit.beta_values)


def parameter_vector(structure: Structure, theta: np.ndarray, scale: float, dispersion, beta: np.ndarray) -> np.ndarray:
    """The values of :func:`parameter_estimates` from θ, the scale of Λ (σ for a linear model),
    the dispersion parameters and β."""
    return np.concatenate([sd_cor(structure, theta, scale), dispersion, beta])


def parameter_estimates(fit: PointFit) -> pd.Series:
    """Every parameter's estimate, in the order of the rows of
    :func:`~bayesmix.reml.intervals.confint`: SDs and correlations (θ's order), the dispersion
    (σ of a linear model), the fixed effects."""
    names = variance_parameter_names(fit) + list(fit.dispersion_estimates()) + list(fit.design.fixed_names)
    return pd.Series(parameter_values(fit), index=names, name="estimate")


def normal_quantile(level: float) -> float:
    """z with P(|Z| < z) = level for a standard normal Z."""
    from scipy.stats import norm

    return float(norm.ppf((1 + level) / 2))
