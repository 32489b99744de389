"""Confidence intervals of a point-estimate fit, as lme4's ``confint.merMod``.

Every interval table has one row per parameter, in lme4's order: the random effects' standard
deviations and correlations in θ's order (lme4's ``.sig01``, ``.sig02``, ...), then σ (lme4's
``.sigma``, linear models only), then the fixed effects. The variance parameters are named as
:func:`bayesmix.compare` and the posterior's summary name them: ``sd(Intercept)``,
``cor(Intercept, Days)`` (with ``| group`` when the model has several grouping factors), ``sigma``.

- ``wald``: β̂ ± z SE(β̂) for the fixed effects (NaN for the variance parameters, as lme4);
- ``profile``: the likelihood-ratio profile of each parameter (:mod:`bayesmix.reml.profile`);
- ``bootstrap``: percentile intervals of a parametric bootstrap (:mod:`bayesmix.reml.bootstrap`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.layout import Structure, term_labels
from ..errors import ArgumentError
from ..tables import parameter_name
from .bootstrap import bootstrap, check_level
from .point import PointFit

METHODS = ("wald", "profile", "bootstrap")


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


def parameter_estimates(fit: PointFit) -> pd.Series:
    """Every parameter's estimate in the order of :func:`confint`'s rows: SDs and correlations
    (θ's order), the dispersion (σ of a linear model), the fixed effects. The default statistic
    of :func:`~bayesmix.reml.bootstrap.bootstrap`."""
    values = sd_cor(fit.structure, fit.theta_values, np.sqrt(fit.effect_scale))
    dispersion = fit.dispersion_estimates()
    return pd.concat([
        pd.Series(values, index=variance_parameter_names(fit)),
        pd.Series(dispersion, dtype=float),
        fit.fixef().astype(float),
    ]).rename("estimate")


def normal_quantile(level: float) -> float:
    """z with P(|Z| < z) = level for a standard normal Z."""
    from scipy.stats import norm

    return float(norm.ppf((1 + level) / 2))


def wald_intervals(fit: PointFit, level: float) -> pd.DataFrame:
    """β̂ ± z SE for the fixed effects; NaN for the variance parameters (lme4's ``method = "Wald"``)."""
    estimates = parameter_estimates(fit)
    z = normal_quantile(level)
    beta, se = fit.fixef(), fit.std_errors()
    table = pd.DataFrame({"lower": np.nan, "upper": np.nan}, index=estimates.index)
    table.loc[beta.index, "lower"] = beta - z * se
    table.loc[beta.index, "upper"] = beta + z * se
    return table


def confint(fit: PointFit, method: str = "profile", level: float = 0.95, nsim: int = 500, seed: int | None = None,
            n_jobs: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Confidence intervals of every parameter (lme4's ``confint.merMod``); see the module docstring.

    Parameters
    ----------
    fit
        A REML/ML fit of a linear mixed model (``profile`` and ``bootstrap`` also take a GLMM for
        ``bootstrap``; ``wald`` takes either).
    method
        ``"profile"`` (lme4's default), ``"wald"`` or ``"bootstrap"``.
    level
        Confidence level.
    nsim, seed, n_jobs, progress
        For ``"bootstrap"``: simulations, their seed, worker processes and a progress line
        (see :func:`~bayesmix.reml.bootstrap.bootstrap`).

    Returns
    -------
    pandas.DataFrame
        Columns ``estimate``, ``lower``, ``upper``; one row per parameter. For a REML fit the
        profile intervals are those of the maximum-likelihood deviance (lme4 refits by ML to
        profile), and ``estimate`` is the REML estimate.
    """
    level = check_level(level)
    method = method.lower() if isinstance(method, str) else method
    if method not in METHODS:
        raise ArgumentError(f"method must be one of {', '.join(map(repr, METHODS))}, not {method!r}.")
    if method == "wald":
        table = wald_intervals(fit, level)
    elif method == "bootstrap":
        table = bootstrap(fit, nsim=nsim, seed=seed, n_jobs=n_jobs, progress=progress).percentile_intervals(level)
    else:
        from .profile import profile_intervals

        table = profile_intervals(fit, level)
    return pd.concat([parameter_estimates(fit), table], axis=1)
