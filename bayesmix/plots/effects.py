"""Plots of what a fit says about effects: caterpillar plots of the random effects, and the
conditional effects of each predictor on the expected response (brms's ``conditional_effects``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..bayes import BayesResult
from ..data.newdata import new_data
from ..errors import ArgumentError
from ..families import Binomial, NegativeBinomial, Poisson
from ..formula.parser import variables_in
from ..reml import GlmmResult, RemlResult
from ..results import check_prob
from .common import check_result, new_figure, wrap_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FITS = (RemlResult, GlmmResult, BayesResult)
GRID_POINTS = 100
MAX_LEVEL_LABELS = 60  # more levels than this are drawn without their names


def _normal_quantile(prob: float) -> float:
    from scipy.special import ndtri

    return float(ndtri((1 + prob) / 2))


def ranef_intervals(result: RemlResult | GlmmResult | BayesResult, prob: float = 0.95
                    ) -> dict[str, tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]]:
    """Per grouping factor, the random effects' estimates and the lower and upper ends of their
    intervals, each a DataFrame (levels x effects).

    A REML or maximum-likelihood fit's are the conditional modes ± z·(conditional SD) (lme4's
    ``ranef(condVar = TRUE)``, z the normal quantile of ``prob``); a posterior's are the
    posterior means and the equal-tailed ``prob`` intervals of the draws.
    """
    check_result(result, FITS, "ranef_intervals")
    check_prob("prob", prob)
    out = {}
    if isinstance(result, BayesResult):
        for layout in result.layouts:
            draws = result.ranef_draws(layout.group).stack(sample=("chain", "draw")).transpose("sample", ...).values
            low, high = np.quantile(draws, [(1 - prob) / 2, (1 + prob) / 2], axis=0)
            frame = lambda values: pd.DataFrame(values, index=pd.Index(layout.levels), columns=list(layout.effects))
            out[layout.group] = (frame(draws.mean(axis=0)), frame(low), frame(high))
        return out
    z = _normal_quantile(prob)
    for block in result.structure.blocks:
        modes = result.ranef(block.group)
        half = z * np.sqrt(np.diagonal(result.cond_var(block.group), axis1=1, axis2=2))
        out[block.group] = (modes, modes - half, modes + half)
    return out


def plot_ranef(result: RemlResult | GlmmResult | BayesResult, group: str | None = None, prob: float = 0.95) -> Figure:
    """Caterpillar plot of the random effects: each level's estimate with its interval.

    One panel per random effect (intercept, slope) of each grouping factor, the levels sorted
    by their first effect (the same order in every panel of a factor), a line at 0 (the
    population). For a REML or maximum-likelihood fit the conditional modes with ± z
    conditional SDs (z = 1.96 for ``prob=0.95``; lme4's ``dotplot(ranef(fit, condVar = TRUE))``);
    for a posterior the posterior means with equal-tailed intervals. Effects of a GLMM are on
    the link scale. With more than 60 levels their names are left out.

    Parameters
    ----------
    result
        A REML, maximum-likelihood or Bayesian fit.
    group
        The grouping factor to show (default: every one).
    prob
        The probability of the intervals.
    """
    check_result(result, FITS, "plot_ranef")
    intervals = ranef_intervals(result, prob)
    if group is not None:
        if group not in intervals:
            raise ArgumentError(f"plot_ranef: no grouping factor {group!r}; the model has {list(intervals)}.")
        intervals = {group: intervals[group]}
    bayes = isinstance(result, BayesResult)
    link = result.design.family.link
    panels = max(len(estimate.columns) for estimate, _, _ in intervals.values())
    heights = [1.2 + 0.15 * min(len(estimate), 2 * MAX_LEVEL_LABELS) for estimate, _, _ in intervals.values()]
    figure = new_figure(figsize=(max(6.4, 0.9 + 2.8 * panels), 0.6 + sum(heights)))
    rows = np.atleast_1d(figure.subfigures(len(intervals), 1, height_ratios=heights))
    for row, (name, (estimate, low, high)) in zip(rows, intervals.items()):
        order = np.argsort(estimate.iloc[:, 0].to_numpy(), kind="stable")
        levels = [str(level) for level in estimate.index[order]]
        position = np.arange(len(levels))
        axes = np.atleast_1d(row.subplots(1, len(estimate.columns), sharey=True))
        for ax, effect in zip(axes, estimate.columns):
            value = estimate[effect].to_numpy()[order]
            ax.errorbar(value, position, xerr=[value - low[effect].to_numpy()[order], high[effect].to_numpy()[order] - value],
                        fmt="o", markersize=3, color="C0", ecolor="C0", elinewidth=1, capsize=0)
            ax.axvline(0.0, color="0.4", linewidth=0.8, linestyle="--")
            ax.set_title(wrap_label(effect, 30), fontsize="medium")
            ax.set_xlabel("effect" + ("" if link == "identity" else f" ({link} scale)"))
        if len(levels) <= MAX_LEVEL_LABELS:
            axes[0].set_yticks(position, levels, fontsize="small" if len(levels) > 25 else "medium")
        else:
            axes[0].set_yticks([])
        axes[0].set_ylabel(f"{name} ({len(levels)} levels)")
        axes[0].set_ylim(-0.8, len(levels) - 0.2)
        if len(intervals) > 1:
            row.suptitle(f"grouping factor {name}", x=0.02, ha="left", fontsize="medium")
    what = (f"posterior means and {round(prob * 100)}% intervals" if bayes
            else f"conditional modes ± {_normal_quantile(prob):.2f} conditional SD")
    figure.suptitle(f"Random effects: {what}")
    return figure


def _reference_values(design) -> dict:
    """What :func:`conditional_effects` holds each predictor column at: the mean of a numeric
    column, the reference (first) level of a categorical one, the first fitted level of a
    grouping column (population-level predictions do not read it)."""
    frame = design.rows.frame
    groups = {name for bar in design.formula.bars for name in bar.group}
    values = {}
    for name in design.formula.predictor_variables:
        column = frame[name]
        if name in groups:
            values[name] = column.iloc[0]
        elif _numeric(design, name):
            values[name] = float(column.mean())
        else:
            values[name] = _levels(column)[0]
    return values


def _numeric(design, name: str) -> bool:
    """Whether the formula reads column ``name`` as a number (not only as ``C(name)``) and it holds numbers."""
    return name in design.formula.numeric and design.recipe.variable_levels.get(name) is None


def _levels(column: pd.Series) -> list:
    """A categorical column's levels in the order of its contrasts: the categories, or sorted."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return list(column.cat.remove_unused_categories().cat.categories)
    return sorted(pd.unique(column))


def _expected_label(design) -> str:
    """What μ is: a probability, an expected count, the expected response."""
    family = design.family
    if isinstance(family, Binomial):
        return f"probability: {design.response}"
    return f"expected {'count: ' if isinstance(family, (Poisson, NegativeBinomial)) else ''}{design.response}"


def _fixed_predictors(design) -> list[str]:
    """The data columns the fixed part (and its offsets) read."""
    names = set(variables_in(design.formula.fixed)) | {v for o in design.formula.offsets for v in variables_in(o)}
    return [v for v in design.formula.predictor_variables if v in names]


def conditional_effects(result: RemlResult | GlmmResult | BayesResult, predictor: str, prob: float = 0.95
                        ) -> pd.DataFrame:
    """The expected response against one predictor, the others held at reference values
    (brms's ``conditional_effects``).

    The other predictor columns are held at their mean (numeric) or reference level
    (categorical); the prediction is at the population level (random effects 0). The
    ``predictor`` takes 100 values across its observed range (numeric) or each of its levels.

    For a REML or maximum-likelihood fit: μ̂ = g⁻¹(x'β̂) with the confidence interval
    g⁻¹(x'β̂ ± z·√(x' V x)), V the covariance of β̂ (:meth:`vcov`) and z the normal quantile of
    ``prob`` (as ``emmeans`` with asymptotic degrees of freedom, back-transformed to the
    response scale); for a posterior: the posterior median of μ = g⁻¹(x'β) and its equal-tailed
    ``prob`` interval (as brms's).

    Returns
    -------
    pandas.DataFrame
        Columns ``predictor``'s name, ``estimate``, ``lower``, ``upper``; its ``attrs["held_at"]``
        says what the other columns were held at.
    """
    check_result(result, FITS, "conditional_effects")
    check_prob("prob", prob)
    design = result.design
    if not design.in_memory:
        raise ArgumentError("conditional_effects needs the fitted rows in memory: fit a pandas DataFrame, not dask or Parquet data.")
    candidates = _fixed_predictors(design)
    if predictor not in candidates:
        raise ArgumentError(
            f"conditional_effects: {predictor!r} is not a predictor of the fixed part; name one of "
            f"{', '.join(map(repr, candidates)) or '(none: the fixed part reads no data column)'}."
        )
    held = _reference_values(design)
    column = design.rows.frame[predictor]
    if _numeric(design, predictor):
        values = pd.Series(np.linspace(column.min(), column.max(), GRID_POINTS), dtype=float)
    else:
        values = pd.Series(_levels(column), dtype=column.dtype)
    grid = pd.DataFrame({name: pd.Series([value] * len(values), dtype=float if isinstance(value, float) else
                                         design.rows.frame[name].dtype) for name, value in held.items()})
    grid[predictor] = values
    inverse_link = design.family.inverse_link
    if isinstance(result, BayesResult):
        eta = result.predict(grid, random=False, type="link").mu.stack(sample=("chain", "draw")).values
        low, middle, high = np.quantile(eta, [(1 - prob) / 2, 0.5, (1 + prob) / 2], axis=-1)
    else:
        rows = new_data(design, grid)
        middle = result.linear_predictor(rows, random=False)
        se = np.sqrt(np.einsum("ij,jk,ik->i", rows.X, result.vcov().to_numpy(), rows.X))
        z = _normal_quantile(prob)
        low, high = middle - z * se, middle + z * se
    table = pd.DataFrame({predictor: values, "estimate": inverse_link(middle), "lower": inverse_link(low),
                          "upper": inverse_link(high)})
    groups = {name for bar in design.formula.bars for name in bar.group}  # not read at the population level
    table.attrs["held_at"] = {name: value for name, value in held.items() if name != predictor and name not in groups}
    return table


def plot_conditional_effects(result: RemlResult | GlmmResult | BayesResult, predictors: str | list[str] | None = None,
                             prob: float = 0.95) -> Figure:
    """Conditional effects of the fixed part's predictors: one panel per predictor.

    Each panel is :func:`conditional_effects`: the expected response (on the response's
    scale: a probability, an expected count) against the predictor, the others held at their
    mean or reference level, at the population level; a line with a band for a numeric
    predictor, points with bars for a categorical one. The bands are confidence intervals
    from the covariance of β̂ for a REML or maximum-likelihood fit, posterior intervals for a
    Bayesian fit.

    Parameters
    ----------
    result
        A REML, maximum-likelihood or Bayesian fit.
    predictors
        The predictor column(s) to show (default: every column the fixed part reads).
    prob
        The probability of the intervals.
    """
    check_result(result, FITS, "plot_conditional_effects")
    design = result.design
    if predictors is None:
        predictors = _fixed_predictors(design)
        if not predictors:
            raise ArgumentError("plot_conditional_effects: the fixed part reads no data column; there is no effect to plot.")
    predictors = [predictors] if isinstance(predictors, str) else list(predictors)
    tables = [conditional_effects(result, name, prob) for name in predictors]
    columns = min(2, len(tables))
    panels = int(np.ceil(len(tables) / columns))
    figure = new_figure(figsize=(6.4 if columns == 1 else 9.0, 0.9 + 3.6 * panels))
    axes = figure.subplots(panels, columns, squeeze=False).ravel()
    for ax, name, table in zip(axes, predictors, tables):
        if _numeric(design, name):
            ax.fill_between(table[name], table["lower"], table["upper"], color="C0", alpha=0.25, linewidth=0)
            ax.plot(table[name], table["estimate"], color="C0")
        else:
            labels = [wrap_label(str(level), 14) for level in table[name]]
            position = np.arange(len(table))
            ax.errorbar(position, table["estimate"], yerr=[table["estimate"] - table["lower"], table["upper"] - table["estimate"]],
                        fmt="o", color="C0", capsize=4)
            ax.set_xticks(position, labels)
            ax.set_xlim(-0.5, len(table) - 0.5)
        ax.set(xlabel=name, ylabel=_expected_label(design))
    for ax in axes[len(tables):]:
        ax.set_visible(False)
    bayes = isinstance(result, BayesResult)
    what = (f"posterior medians, {round(prob * 100)}% intervals" if bayes else
            f"estimates, {round(prob * 100)}% confidence intervals")
    figure.suptitle(f"Conditional effects ({what})")
    held = {k: v for k, v in _reference_values(design).items()
            if k in _fixed_predictors(design) and (len(predictors) > 1 or k != predictors[0])}
    if held:
        text = ", ".join(f"{k} = {v:.3g}" if isinstance(v, float) else f"{k} = {v}" for k, v in held.items())
        figure.supxlabel(wrap_label(f"others held at: {text}; random effects at 0", 110), fontsize="small")
    else:
        figure.supxlabel("random effects at 0", fontsize="small")
    return figure
