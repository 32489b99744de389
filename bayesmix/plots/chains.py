"""Plots of the Markov chains of a posterior: trace plots and rank histograms, per parameter."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from ..bayes import BayesResult
from ..errors import ArgumentError
from .common import check_result, new_figure, wrap_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# a rank histogram's band: the central 99 % of a bin's count when the draws are independent
BAND = 0.99


def select_parameters(result: BayesResult, var_names, function: str) -> xr.Dataset:
    """The posterior's parameters named by ``var_names`` (all when None), one (chain, draw)
    variable each, in the order asked.

    A name is a parameter's, as the summary names it (``"sd(Intercept)"``, ``"sigma"``), or a
    posterior variable's (``"beta"``, ``"sd_id"``, ``"cor_id"``), which stands for all the
    parameters read from it.
    """
    check_result(result, (BayesResult,), function)
    parameters = result._parameters
    if var_names is None:
        return parameters
    names = [var_names] if isinstance(var_names, str) else list(var_names)
    of_variable: dict[str, list[str]] = {}
    for name, values in parameters.data_vars.items():
        of_variable.setdefault(values.attrs["variable"], []).append(name)
    chosen, unknown = [], []
    for name in names:
        if isinstance(name, str) and name in parameters.data_vars:
            chosen.append(name)
        elif isinstance(name, str) and name in of_variable:
            chosen += of_variable[name]
        else:
            unknown.append(name)
    if unknown:
        effects = [name for name in unknown if isinstance(name, str) and name in result.posterior.data_vars]
        hint = f" Plot random effects ({', '.join(map(repr, effects))}) with bm.plot_ranef(result)." if effects else ""
        raise ArgumentError(
            f"{function}: no parameter {', '.join(map(repr, unknown))}. Name parameters as the summary does "
            f"({', '.join(map(repr, parameters.data_vars))}) or by posterior variable "
            f"({', '.join(map(repr, of_variable))}).{hint}"
        )
    if not chosen:
        raise ArgumentError(f"{function}: var_names names no parameter; give at least one, or None for all.")
    return parameters[list(dict.fromkeys(chosen))]


def chain_handles(chains) -> list:
    """Legend entries of the chains, in the colours their lines are drawn in."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color=f"C{i}", label=f"chain {c}") for i, c in enumerate(chains)]


def plot_trace(result: BayesResult, var_names: str | list[str] | None = None) -> Figure:
    """Trace and marginal density of each parameter, per chain.

    One row per parameter, titled with its name: on the left the kernel density of each
    chain's draws, on the right the draws in order. Chains that agree have overlapping
    densities and traces that look alike, like noise around a level; divergent transitions,
    if any, are marked below the trace. The chains' legend is at the bottom.

    Parameters
    ----------
    result
        A posterior.
    var_names
        Parameters to show (default: all of the summary's): names as the summary gives them
        (``"sd(Intercept)"``, ``"sigma"``) or posterior variables, which stand for all their
        parameters (``"beta"``: the fixed effects; ``"sd_id"``, ``"cor_id"``: the SDs and
        correlations of grouping factor ``id``).
    """
    from arviz_stats.base import array_stats

    parameters = select_parameters(result, var_names, "plot_trace")
    chains = parameters["chain"].values
    stats_ = result.idata["sample_stats"]
    divergent = stats_["diverging"].values.astype(bool) if "diverging" in stats_ else np.zeros((len(chains), 0), bool)
    figure = new_figure(figsize=(8, 0.5 + 1.7 * len(parameters.data_vars)))
    rows = np.atleast_1d(figure.subfigures(len(parameters.data_vars), 1))
    for row, (name, values) in zip(rows, parameters.data_vars.items()):
        draws = values.transpose("chain", "draw").values
        density, trace = row.subplots(1, 2, width_ratios=[1, 2])
        row.suptitle(wrap_label(name, 80), x=0.02, ha="left", fontsize="medium")
        spread = np.flatnonzero(np.isfinite(draws).all(axis=1) & (np.ptp(draws, axis=1) > 0))  # a density exists
        if spread.size:
            grid, pdf, _ = array_stats.kde(draws[spread], axis=-1)
            for k, i in enumerate(spread):
                density.plot(grid[k], pdf[k], color=f"C{i}", linewidth=1.2)
        for i in range(len(chains)):
            trace.plot(values["draw"].values, draws[i], color=f"C{i}", linewidth=0.7, alpha=0.8)
        if divergent.any():
            where = np.nonzero(divergent)
            trace.plot(values["draw"].values[where[1]], np.full(len(where[1]), np.nanmin(draws)), "|", color="black",
                       markersize=8)
        density.set_yticks([])
        density.set_ylabel("density")
        trace.set_ylabel("value")
    rows[-1].axes[1].set_xlabel("draw")
    rows[-1].axes[0].set_xlabel("value")
    handles = chain_handles(chains)
    if divergent.any():
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], color="black", marker="|", linestyle="", markersize=8,
                              label=f"divergent ({int(divergent.sum())})"))
    figure.legend(handles=handles, loc="outside lower center", ncols=len(handles), frameon=False)
    figure.suptitle("Posterior draws: density and trace per chain")
    return figure


def plot_rank(result: BayesResult, var_names: str | list[str] | None = None, bins: int | None = None) -> Figure:
    """Rank histograms of each parameter, per chain (Vehtari et al. 2021).

    The draws of all chains are ranked together; each chain's histogram counts its draws in
    ``bins`` equal ranges of rank. When the chains sample the same distribution, every
    histogram is flat: the counts scatter around the dashed line (draws / bins) within the
    grey band, where 99 % of the counts of independent draws fall. A chain stuck in one
    region piles its ranks at one end; a chain that mixes slowly gives bumps.

    Parameters
    ----------
    result
        A posterior.
    var_names
        Parameters to show, as for :func:`plot_trace` (default: all of the summary's).
    bins
        Number of bins (default: 20, fewer when a chain has fewer than 200 draws: draws / 10,
        at least 5).
    """
    from scipy import stats

    parameters = select_parameters(result, var_names, "plot_rank")
    chains = parameters["chain"].values
    n_draws = parameters.sizes["draw"]
    if bins is None:
        bins = int(min(20, max(5, n_draws // 10)))
    elif isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 2 <= bins <= n_draws:
        raise ArgumentError(f"bins must be an integer from 2 to the number of draws per chain ({n_draws}), not {bins!r}.")
    expected = n_draws / bins
    low, high = stats.binom.ppf([(1 - BAND) / 2, (1 + BAND) / 2], n_draws, 1 / bins)
    columns = 1 if len(parameters.data_vars) == 1 else 2
    panels = int(np.ceil(len(parameters.data_vars) / columns))
    figure = new_figure(figsize=(4 * columns, 0.6 + (0.45 * len(chains) + 0.9) * panels))
    axes = figure.subplots(panels, columns, squeeze=False).ravel()
    step = 1.6 * max(high, expected)  # the height of one chain's strip
    for ax, (name, values) in zip(axes, parameters.data_vars.items()):
        draws = values.transpose("chain", "draw").values
        ranks = stats.rankdata(draws, axis=None).reshape(draws.shape)
        edges = np.linspace(0.5, draws.size + 0.5, bins + 1)
        for i in range(len(chains)):
            base = i * step
            counts, _ = np.histogram(ranks[i], edges)
            ax.axhspan(base + low, base + high, color="0.88", linewidth=0)
            ax.bar(edges[:-1], counts, width=np.diff(edges), bottom=base, align="edge", color=f"C{i}",
                   edgecolor="white", linewidth=0.5)
            ax.axhline(base + expected, color="0.25", linestyle="--", linewidth=0.8)
        ax.set_yticks(np.arange(len(chains)) * step + expected, [str(c) for c in chains])
        ax.set(title=wrap_label(name, 40 if columns > 1 else 80), xlabel="rank (all chains)", ylabel="chain",
               xlim=(edges[0], edges[-1]))
        ax.title.set_fontsize("medium")
    for ax in axes[len(parameters.data_vars):]:
        ax.set_visible(False)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = chain_handles(chains) + [
        Line2D([], [], color="0.25", linestyle="--", label="flat"),
        Patch(color="0.88", label=f"{round(BAND * 100)}% for independent draws"),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), frameon=False)
    figure.suptitle("Rank histograms per chain")
    return figure
