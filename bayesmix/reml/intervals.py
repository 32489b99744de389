"""Confidence intervals of a point-estimate fit, as lme4's ``confint.merMod``.

Every interval table has one row per parameter, in lme4's order: the random effects' standard
deviations and correlations in θ's order (lme4's ``.sig01``, ``.sig02``, ...), then σ (lme4's
``.sigma``, linear models only), then the fixed effects. The variance parameters are named as
:func:`bayesmix.compare` and the posterior's summary name them: ``sd(Intercept)``,
``cor(Intercept, Days)`` (with ``| group`` when the model has several grouping factors), ``sigma``.

- ``wald``: β̂ ± z SE(β̂) for the fixed effects (NaN for the variance parameters, as lme4);
- ``profile``: the likelihood-ratio profile of each parameter (:mod:`bayesmix.reml.profile`; for a GLMM
  :mod:`bayesmix.reml.laplace_profile`);
- ``bootstrap``: percentile intervals of a parametric bootstrap (:mod:`bayesmix.reml.bootstrap`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from typing import TYPE_CHECKING

from ..errors import ArgumentError
from .bootstrap import bootstrap, check_level
from .parameters import normal_quantile, parameter_estimates

if TYPE_CHECKING:
    from .point import PointFit

METHODS = ("wald", "profile", "bootstrap")


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
        A REML/ML fit of a linear mixed model or a GLMM fit (``profile`` needs a GLMM family
        without a dispersion parameter, as lme4's).
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
        from .laplace_profile import LaplaceProfile
        from .profile import DevianceProfile, profile_intervals

        linear = hasattr(fit, "factorization")  # a REML/ML fit of a linear mixed model, not a GLMM
        table = profile_intervals(fit, level, DevianceProfile if linear else LaplaceProfile)
    return pd.concat([parameter_estimates(fit), table], axis=1)
