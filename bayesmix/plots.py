"""Plots that return matplotlib figures: trace and rank plots, posterior predictive checks, QQ plots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from .bayes import BayesResult
from .errors import ArgumentError
from .reml import RemlResult

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# ArviZ, Matplotlib and scipy.stats take seconds to import: each plot imports what it needs.


def _figure(plot_collection) -> Figure:
    return plot_collection.viz["figure"].item()


def _check_result(result, kinds: tuple[type, ...], function: str) -> None:
    """ArgumentError unless ``result`` is one of ``kinds`` of fit."""
    if not isinstance(result, kinds):
        wanted = " or ".join(k.__name__ for k in kinds)
        raise ArgumentError(f"{function} takes a {wanted} (a fitted model), not {type(result).__name__}.")


def _parameter_tree(result: BayesResult, var_names: list[str] | None, function: str) -> xr.DataTree:
    _check_result(result, (BayesResult,), function)
    parameters = result._parameters
    if var_names is not None:
        names = [var_names] if isinstance(var_names, str) else list(var_names)
        unknown = [n for n in names if n not in parameters.data_vars]
        if unknown:
            raise ArgumentError(
                f"{function}: no parameter {', '.join(map(repr, unknown))}; the posterior has "
                f"{', '.join(map(repr, parameters.data_vars))}."
            )
        parameters = parameters[names]
    return xr.DataTree.from_dict({"posterior": parameters})


def plot_trace(result: BayesResult, var_names: list[str] | None = None) -> Figure:
    """Trace and marginal density of each parameter (``arviz.plot_trace_dist``)."""
    import arviz as az

    return _figure(az.plot_trace_dist(_parameter_tree(result, var_names, "plot_trace"), backend="matplotlib"))


def plot_rank(result: BayesResult, var_names: list[str] | None = None) -> Figure:
    """Rank plots per chain of each parameter (``arviz.plot_rank``): flat when chains agree."""
    import arviz as az

    return _figure(az.plot_rank(_parameter_tree(result, var_names, "plot_rank"), backend="matplotlib"))


def plot_ppc(result: BayesResult, num_samples: int = 50, seed: int | None = None) -> Figure:
    """Density of the response against densities of replicated data sets (``arviz.plot_ppc_dist``)."""
    import arviz as az

    _check_result(result, (BayesResult,), "plot_ppc")
    result.posterior_predictive(seed)
    return _figure(az.plot_ppc_dist(result.idata, num_samples=num_samples, backend="matplotlib"))


def qq_plot(result: RemlResult | BayesResult) -> Figure:
    """Normal QQ plots of the residuals and of each random-effect column.

    Uses the conditional modes for a REML fit and the posterior means for a Bayesian fit:
    the normality assumptions of the model, checked as in the lecture.
    """
    from matplotlib.figure import Figure
    from scipy import stats

    _check_result(result, (RemlResult, BayesResult), "qq_plot")
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
