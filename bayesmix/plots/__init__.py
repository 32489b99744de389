"""Plots that return matplotlib figures, each shown once in a notebook.

- :mod:`~bayesmix.plots.chains`: trace plots and rank histograms of a posterior's chains;
- :mod:`~bayesmix.plots.predictive`: posterior and prior predictive checks;
- :mod:`~bayesmix.plots.effects`: caterpillar plots of the random effects and conditional
  effects of the predictors, for REML, ML and Bayesian fits;
- :mod:`~bayesmix.plots.checks`: QQ plots, randomized quantile residuals, rootograms and
  binned residuals.
"""

from .chains import plot_rank, plot_trace
from .checks import binned_residuals, plot_binned_residuals, plot_rootogram, qq_plot, randomized_quantile_residuals
from .effects import conditional_effects, plot_conditional_effects, plot_ranef
from .predictive import plot_ppc, plot_prior_predictive

__all__ = [
    "binned_residuals",
    "conditional_effects",
    "plot_binned_residuals",
    "plot_conditional_effects",
    "plot_ppc",
    "plot_prior_predictive",
    "plot_rank",
    "plot_ranef",
    "plot_rootogram",
    "plot_trace",
    "qq_plot",
    "randomized_quantile_residuals",
]
