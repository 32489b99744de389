"""Plots that return matplotlib figures: trace and rank plots, posterior predictive checks, QQ plots."""

from __future__ import annotations

import arviz as az
import numpy as np
import xarray as xr
from matplotlib.figure import Figure
from scipy import stats

from .bayes import BayesResult
from .reml import RemlResult


def _figure(plot_collection) -> Figure:
    return plot_collection.viz["figure"].item()


def _parameter_tree(result: BayesResult, var_names: list[str] | None) -> xr.DataTree:
    parameters = result._parameters
    if var_names is not None:
        parameters = parameters[var_names]
    return xr.DataTree.from_dict({"posterior": parameters})


def plot_trace(result: BayesResult, var_names: list[str] | None = None) -> Figure:
    """Trace and marginal density of each parameter (``arviz.plot_trace_dist``)."""
    return _figure(az.plot_trace_dist(_parameter_tree(result, var_names), backend="matplotlib"))


def plot_rank(result: BayesResult, var_names: list[str] | None = None) -> Figure:
    """Rank plots per chain of each parameter (``arviz.plot_rank``): flat when chains agree."""
    return _figure(az.plot_rank(_parameter_tree(result, var_names), backend="matplotlib"))


def plot_ppc(result: BayesResult, num_samples: int = 50, seed: int | None = None) -> Figure:
    """Density of the response against densities of replicated data sets (``arviz.plot_ppc_dist``)."""
    result.posterior_predictive(seed)
    return _figure(az.plot_ppc_dist(result.idata, num_samples=num_samples, backend="matplotlib"))


def qq_plot(result: RemlResult | BayesResult) -> Figure:
    """Normal QQ plots of the residuals and of each random-effect column.

    Uses the conditional modes for a REML fit and the posterior means for a Bayesian fit:
    the normality assumptions of the model, checked as in the lecture.
    """
    panels = [("residuals", np.asarray(result.residuals(), dtype=float))]
    ranef = result.ranef()
    for group, frame in (ranef.items() if isinstance(ranef, dict) else [(result.design.terms[0].group, ranef)]):
        panels += [(f"{group}: {column}", frame[column].to_numpy()) for column in frame.columns]
    columns = min(3, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    figure = Figure(figsize=(4 * columns, 3.5 * rows), layout="constrained")
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, values) in zip(axes, panels):
        (theoretical, ordered), (slope, intercept, _) = stats.probplot(values, dist="norm")
        ax.plot(theoretical, ordered, "o", markersize=3)
        ax.plot(theoretical, intercept + slope * theoretical, "-", color="0.4")
        ax.set(title=title, xlabel="normal quantiles", ylabel="ordered values")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return figure
