"""Predictive checks: the data against data sets replicated from the posterior or the prior."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from ..bayes import BayesResult
from ..errors import ArgumentError
from ..data.storage import stored_family
from ..families import Gaussian
from .common import binary_response, check_result, new_figure, response_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_ppc(result: BayesResult, num_samples: int = 50, seed: int | None = None) -> Figure:
    """The response's distribution against those of data sets replicated from the posterior.

    Densities for a Gaussian response; empirical CDFs for counts and binomial proportions,
    whose values are discrete (a density smooths them into shapes the data do not have). A 0/1
    response has no distribution to compare beyond its proportion of ones: use
    :func:`plot_binned_residuals` and :meth:`BayesResult.ppc` instead.

    Parameters
    ----------
    result
        A posterior.
    num_samples
        How many replicated data sets to draw, picked at random among the posterior draws.
    seed
        Seed of the replicated data (drawn once and kept on the result) and of the pick.
    """
    check_result(result, (BayesResult,), "plot_ppc")
    design = result.design
    if binary_response(design.family, design.rows.weights):
        raise ArgumentError(
            "plot_ppc: a 0/1 response has no distribution to compare beyond its proportion of ones; "
            "check it with bm.plot_binned_residuals(result) and result.ppc()."
        )
    replicated = result.posterior_predictive(seed)
    return predictive_figure(design.rows.y, replicated, design.response, design.family, num_samples, seed,
                             "Posterior predictive check")


def plot_prior_predictive(prior: xr.DataTree, num_samples: int = 50, seed: int | None = None) -> Figure:
    """The response's distribution against those of data sets replicated from the prior.

    The prior predictive check: are the data a plausible draw of the model before it has seen
    them? Priors that put most replicated data sets far outside the data's range (or all of
    them within a sliver of it) say more, or less, than intended. Drawn as :func:`plot_ppc`
    draws the posterior's: densities for a Gaussian response, empirical CDFs otherwise; the
    horizontal axis spans the data and the central 99 % of the replicated values (a few
    extreme replicated values would squeeze everything else).

    Parameters
    ----------
    prior
        What :meth:`Model.sample_prior_predictive` returns.
    num_samples
        How many replicated data sets to draw, picked at random among the prior's draws.
    seed
        Seed of the pick.
    """
    if not isinstance(prior, xr.DataTree) or not {"prior_predictive", "observed_data"} <= set(prior.children) \
            or "family" not in prior.attrs:
        raise ArgumentError(
            f"plot_prior_predictive takes what model.sample_prior_predictive() returns, not {type(prior).__name__}."
        )
    observed = prior["observed_data"]
    family = stored_family(prior.attrs)
    weights = observed["weights"].values if "weights" in observed else None
    if binary_response(family, weights):
        raise ArgumentError(
            "plot_prior_predictive: a 0/1 response has no distribution to compare beyond its proportion of ones; "
            "look at the prior predictive proportions, prior['prior_predictive']['y'].mean('obs')."
        )
    return predictive_figure(observed["y"].values, prior["prior_predictive"]["y"], prior.attrs["response"], family,
                             num_samples, seed, "Prior predictive check")


def predictive_figure(observed: np.ndarray, replicated: xr.DataArray, response: str, family, num_samples: int,
                      seed: int | None, title: str) -> Figure:
    """``observed`` against ``num_samples`` of the ``replicated`` data sets (chain, draw, obs)."""
    from arviz_stats.base import array_stats
    from matplotlib.lines import Line2D

    if isinstance(num_samples, bool) or not isinstance(num_samples, (int, np.integer)) or num_samples < 1:
        raise ArgumentError(f"num_samples must be a positive integer, not {num_samples!r}.")
    sets = replicated.stack(sample=("chain", "draw")).transpose("sample", "obs").values
    picked = sets[np.random.default_rng(seed).choice(len(sets), size=min(num_samples, len(sets)), replace=False)]
    figure = new_figure(figsize=(6.4, 4.8))
    ax = figure.subplots()
    density = isinstance(family, Gaussian)
    if density:
        grid, pdf, _ = array_stats.kde(picked, axis=-1)
        ax.plot(grid.T, pdf.T, color="C0", alpha=0.25, linewidth=0.8)
        grid, pdf, _ = array_stats.kde(observed)
        ax.plot(grid, pdf, color="black", linewidth=2)
        ax.set_ylim(bottom=0)
    else:
        for values in picked:
            ax.ecdf(values, color="C0", alpha=0.25, linewidth=0.8)
        ax.ecdf(observed, color="black", linewidth=2)
    low, high = np.quantile(picked, [0.005, 0.995])
    low, high = min(low, observed.min()), max(high, observed.max())
    pad = 0.03 * (high - low) or 0.5
    ax.set_xlim(low - pad, high + pad)
    ax.set(title=f"{title}: {response}", xlabel=response_label(response, family),
           ylabel="density" if density else "empirical CDF")
    ax.legend(handles=[Line2D([], [], color="black", linewidth=2, label=f"observed {response}"),
                       Line2D([], [], color="C0", alpha=0.6, label=f"{len(picked)} replicated data sets")],
              loc="best", frameon=False)
    return figure
