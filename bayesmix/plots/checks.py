"""Checks of a model's assumptions: QQ plots, randomized quantile residuals, and the checks of
discrete outcomes (rootograms, binned residuals)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..bayes import BayesResult
from ..errors import ArgumentError
from ..families import Binomial, Gaussian, NegativeBinomial, Poisson
from ..reml import GlmmResult, RemlResult
from .common import check_result, is_binary, new_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Matplotlib and scipy.stats take seconds to import: each plot imports what it needs.

# replicated data sets simulated for a maximum-likelihood fit: at most this many numbers in all
_SIMULATED_VALUES = 20_000_000
_SIMULATIONS = 1000


def _replicated(result: BayesResult | GlmmResult, seed: int | None) -> np.ndarray:
    """Replicated responses, (data sets, rows), on the response's scale.

    A posterior's are its posterior predictive draws; a maximum-likelihood fit's are simulated
    from the family at the fitted means μ̂ (given the conditional modes, lme4's
    ``simulate(use.u = TRUE)``): 1000 data sets, fewer when there are more than 20,000 rows.
    """
    if isinstance(result, BayesResult):
        return result.posterior_predictive(seed).stack(sample=("chain", "draw")).transpose("sample", "obs").values
    rows = result.design.rows
    mu = result.fitted().to_numpy()
    simulations = max(1, min(_SIMULATIONS, _SIMULATED_VALUES // len(mu)))
    mu = np.broadcast_to(mu, (simulations, len(mu)))
    return result.family.predictive_draws(mu, result.dispersion, np.random.default_rng(seed), rows.weights)


def qq_plot(result: RemlResult | GlmmResult | BayesResult, seed: int | None = None) -> Figure:
    """Normal QQ plots of the residuals and of each random-effect column.

    Uses the conditional modes for a REML or maximum-likelihood fit and the posterior means for
    a Bayesian fit: the normality assumptions of the model, checked as in the lecture. For a
    Gaussian response the residuals are y - μ̂ (times √w with prior weights). Residuals of a
    binary or count response are not normal under any model, so for the other families the
    first panel shows randomized quantile residuals (Dunn and Smyth 1996, as R's DHARMa):
    Φ⁻¹(u) with u uniform between the share of replicated responses below y and the share
    at or below it (replicated data as in :func:`plot_rootogram`; ``seed`` fixes them and the
    randomization), which are standard normal when the model is right: their reference line is
    y = x (for the others, the line through the quartiles). A posterior's replicated data are
    drawn from the posterior predictive distribution, which is wider than the truth's, so its
    residuals are somewhat narrower than N(0, 1) even for the right model. The random effects
    are on the link scale.
    """
    from scipy import stats

    check_result(result, (RemlResult, GlmmResult, BayesResult), "qq_plot")
    # (title, values, whether the reference line is y = x rather than the fitted line)
    if isinstance(result.design.family, Gaussian):
        panels = [("residuals", np.asarray(result.residuals(), dtype=float), False)]
    else:
        panels = [("randomized quantile residuals", randomized_quantile_residuals(result, seed), True)]
    ranef = result.ranef()
    for group, frame in (ranef.items() if isinstance(ranef, dict) else [(result.design.terms[0].group, ranef)]):
        panels += [(f"{group}: {column}", frame[column].to_numpy(), False) for column in frame.columns]
    columns = min(3, len(panels))
    rows = int(np.ceil(len(panels) / columns))
    figure = new_figure(figsize=(4 * columns, 3.5 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for ax, (title, values, identity) in zip(axes, panels):
        (theoretical, ordered), (slope, intercept, _) = stats.probplot(values, dist="norm")
        ax.plot(theoretical, ordered, "o", markersize=3)
        ax.plot(theoretical, theoretical if identity else intercept + slope * theoretical, "-", color="0.4")
        ax.set(title=title, xlabel="normal quantiles", ylabel="ordered values")
    for ax in axes[len(panels):]:
        ax.set_visible(False)
    return figure


def randomized_quantile_residuals(result: GlmmResult | BayesResult, seed: int | None = None) -> np.ndarray:
    """Randomized quantile residuals Φ⁻¹(u_i) of a fit's rows (Dunn and Smyth 1996).

    u_i is uniform between the share of replicated responses of row i below y_i and the share
    at or below it (replicated as in :func:`plot_rootogram`), kept within half a replicate of 0
    and 1; under the model the residuals are standard normal whatever the family.
    """
    from scipy.special import ndtri

    check_result(result, (GlmmResult, BayesResult), "randomized_quantile_residuals")
    y, replicated = _on_count_scale(result, result.design.rows.y), _on_count_scale(result, _replicated(result, seed))
    below, tied = (replicated < y).mean(axis=0), (replicated == y).mean(axis=0)
    noise = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])  # a stream apart from the replicates'
    u = below + noise.uniform(size=len(y)) * tied
    half = 0.5 / len(replicated)
    return ndtri(np.clip(u, half, 1.0 - half))


def _on_count_scale(result, values: np.ndarray) -> np.ndarray:
    """Responses as the family counts them: a binomial proportion as its number of successes."""
    family = result.design.family
    return family.observed(values, result.design.rows.weights) if isinstance(family, Binomial) else values


def _counts(result: GlmmResult | BayesResult, function: str, seed: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Observed counts (successes for the binomial) and replicated counts, (data sets, rows)."""
    family = result.design.family
    if is_binary(result.design):
        raise ArgumentError(
            f"{function}: a 0/1 response has only two values to count; check it with "
            "bm.plot_binned_residuals(result)."
        )
    if not isinstance(family, (Poisson, NegativeBinomial, Binomial)):
        raise ArgumentError(
            f"{function} checks counts (Poisson, negative binomial, binomial successes), not a "
            f"{family.name} response; use bm.qq_plot(result) or bm.plot_ppc(result)."
        )
    observed = _on_count_scale(result, result.design.rows.y)
    replicated = _on_count_scale(result, _replicated(result, seed))
    return np.rint(observed).astype(np.int64), np.rint(replicated).astype(np.int64)


def plot_rootogram(result: GlmmResult | BayesResult, style: str = "hanging", max_count: int | None = None,
                   seed: int | None = None) -> Figure:
    """Rootogram of a count response: observed frequency of each count against its expected one.

    Bars are √(number of rows with count k), the line √(expected number): the mean over
    replicated data sets of a posterior (its posterior predictive draws, as brms's
    ``pp_check(type = "rootogram")``) or, for a maximum-likelihood fit, over 1000 data sets
    simulated at the fitted means (given the conditional modes). The band is the 90 % interval
    of the replicated √frequencies. The square root evens out the sampling noise, so rare
    counts are as visible as common ones (Kleiber and Zeileis 2016).

    Parameters
    ----------
    result
        A fit of a Poisson, negative binomial or binomial (with trials: the counts are the
        successes) model.
    style
        ``"hanging"`` (default): each bar hangs from the expected curve, so a misfit shows as a
        bar whose bottom is off zero (above: fewer rows than expected); ``"standing"``: bars
        stand on zero and the curve is drawn over them.
    max_count
        The largest count shown (default: the largest observed or with an expected frequency of
        at least 0.5); larger counts are left out.
    seed
        Seed of the replicated data (a posterior's are drawn once and kept on the result).
    """
    check_result(result, (GlmmResult, BayesResult), "plot_rootogram")
    if style not in ("hanging", "standing"):
        raise ArgumentError(f"style must be 'hanging' or 'standing', not {style!r}.")
    if max_count is not None and (isinstance(max_count, bool) or not isinstance(max_count, (int, np.integer))
                                  or max_count < 1):
        raise ArgumentError(f"max_count must be a positive integer, not {max_count!r}.")
    observed, replicated = _counts(result, "plot_rootogram", seed)
    # counts beyond twice the largest observed one (a heavy replicated tail) are not tabulated
    top = int(max_count if max_count is not None else min(replicated.max(), 2 * observed.max() + 10))
    frequencies = _frequencies(replicated, top)
    expected = frequencies.mean(axis=0)
    if max_count is None:
        max_count = int(max(observed.max(), np.flatnonzero(expected >= 0.5).max(initial=0)))
    k = np.arange(max_count + 1)
    root_observed = np.sqrt(_frequencies(observed[None, :], top)[0, : max_count + 1])
    root_expected = np.sqrt(expected[: max_count + 1])
    low, high = np.quantile(np.sqrt(frequencies[:, : max_count + 1]), [0.05, 0.95], axis=0)

    figure = new_figure(figsize=(7, 4))
    ax = figure.subplots()
    bottom = root_expected - root_observed if style == "hanging" else np.zeros_like(root_observed)
    ax.bar(k, root_observed, bottom=bottom, width=0.8, color="0.75", edgecolor="0.35", label="observed")
    ax.fill_between(k, low, high, color="C3", alpha=0.15, step=None, label="90% of replicated")
    ax.plot(k, root_expected, "o-", color="C3", markersize=3, label="expected")
    ax.axhline(0.0, color="black", linewidth=0.8)
    binomial = isinstance(result.design.family, Binomial)
    ax.set(xlabel=f"successes per row: {result.design.response}" if binomial else result.design.response,
           ylabel="√frequency (rows)", title=f"{style.capitalize()} rootogram")
    if max_count <= 20:
        ax.set_xticks(k)
    ax.legend(loc="upper right", frameon=False)
    return figure


def _frequencies(counts: np.ndarray, top: int) -> np.ndarray:
    """Number of rows with each count 0..top, per data set: (data sets, top + 1); larger counts are left out."""
    sets, width = counts.shape[0], top + 2  # the last column gathers the counts above top
    flat = (np.minimum(counts, top + 1) + width * np.arange(sets)[:, None]).ravel()
    return np.bincount(flat, minlength=sets * width).reshape(sets, width)[:, : top + 1]


def binned_residuals(result: GlmmResult | BayesResult, bins: int | None = None):
    """Gelman and Hill's binned residuals of a binomial fit (``arm::binned.resids``).

    Rows are sorted by their fitted probability μ̂ and cut into ``bins`` groups of about equal
    size (arm's breaks; default as ``arm::binnedplot``: √n bins from 100 rows, 10 below, n / 2
    below 11 rows). Per bin, weighted by the trials: the mean μ̂, the mean residual y - μ̂ and
    its standard error under the model, √(Σ w μ̂(1 - μ̂)) / Σ w (Gelman and Hill 2007, §5.6;
    arm draws 2 SD(residuals) / √n, nearly the same). About 95 % of the bins should fall within
    ±2 SE.

    Returns
    -------
    pandas.DataFrame
        One row per non-empty bin: ``fitted``, ``residual``, ``se``, ``rows``.
    """
    import pandas as pd

    check_result(result, (GlmmResult, BayesResult), "binned_residuals")
    family = result.design.family
    if not isinstance(family, Binomial):
        raise ArgumentError(
            f"binned residuals check a binary or binomial response, not a {family.name} one; "
            "use bm.plot_rootogram(result) for counts, bm.qq_plot(result) otherwise."
        )
    rows = result.design.rows
    mu = result.fitted().to_numpy()
    n = len(mu)
    if bins is None:
        bins = int(np.sqrt(n)) if n >= 100 else 10 if n > 10 else max(1, n // 2)
    elif isinstance(bins, bool) or not isinstance(bins, (int, np.integer)) or not 1 <= bins <= n:
        raise ArgumentError(f"bins must be an integer from 1 to the number of rows ({n}), not {bins!r}.")
    edges = np.sort(mu)[(n * np.arange(1, bins) // bins) - 1]
    which = np.searchsorted(edges, mu, side="left")  # R's cut(): bins (edge_{j-1}, edge_j]
    w = np.ones(n) if rows.weights is None else np.asarray(rows.weights, dtype=float)
    total = np.bincount(which, weights=w, minlength=bins)
    keep = total > 0
    sums = lambda values: np.bincount(which, weights=w * values, minlength=bins)[keep]
    return pd.DataFrame({
        "fitted": sums(mu) / total[keep],
        "residual": sums(rows.y - mu) / total[keep],
        "se": np.sqrt(sums(mu * (1.0 - mu))) / total[keep],
        "rows": np.bincount(which, minlength=bins)[keep],
    })


def plot_binned_residuals(result: GlmmResult | BayesResult, bins: int | None = None) -> Figure:
    """Binned residual plot of a binary or binomial fit (Gelman and Hill 2007, ``arm::binnedplot``).

    Points: the mean residual y - μ̂ against the mean fitted probability of each bin of
    :func:`binned_residuals`; grey lines: ±2 standard errors under the model. μ̂ is the
    posterior mean of μ for a Bayesian fit and the conditional fitted value for a
    maximum-likelihood one. Bins outside the lines (drawn in red) in more than about 1 in 20,
    or a pattern in the points, show where the model misfits.
    """
    table = binned_residuals(result, bins)
    outside = (table["residual"].abs() > 2 * table["se"]).to_numpy()
    figure = new_figure(figsize=(6, 4))
    ax = figure.subplots()
    ax.plot(table["fitted"], 2 * table["se"], "-", color="0.55", linewidth=1)
    ax.plot(table["fitted"], -2 * table["se"], "-", color="0.55", linewidth=1, label="±2 SE")
    ax.axhline(0.0, color="0.3", linewidth=0.8, linestyle=":")
    ax.plot(table["fitted"][~outside], table["residual"][~outside], "o", color="C0", markersize=4, label="bin mean")
    ax.plot(table["fitted"][outside], table["residual"][outside], "o", color="C3", markersize=4, label="outside ±2 SE")
    ax.set(xlabel="expected probability (mean fitted μ)", ylabel="average residual (y − μ)",
           title=f"Binned residuals: {int(outside.sum())} of {len(table)} bins outside ±2 SE")
    ax.legend(loc="best", frameon=False, fontsize="small")
    return figure
