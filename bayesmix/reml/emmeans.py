"""Estimated marginal means and their pairwise contrasts, as R's emmeans computes them for a
linear mixed model.

The reference grid crosses every level of every categorical predictor of the fixed effects with
each numeric predictor at its mean over the fitted rows (or at the values given in ``at``). The
marginal mean of a level of ``specs`` is the average, with equal weights, of the grid's linear
predictors X_g β̂ over the other predictors' levels: a linear function l'β̂, whose standard
error and degrees of freedom come from the fit's method (Satterthwaite or Kenward-Roger, as
``lmer.df`` in emmeans). Pairwise contrasts are differences of those functions; their p values
are adjusted for multiplicity by Tukey's studentized range (emmeans' default for pairs),
Bonferroni, or not at all.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..data.newdata import new_data
from ..errors import ArgumentError
from .anova import DDF_NAMES

ADJUSTMENTS = ("tukey", "bonferroni", "none")


class MarginalMeans:
    """Estimated marginal means of a fit (see :meth:`bayesmix.RemlResult.emmeans`).

    Attributes
    ----------
    table
        Per level (combination) of ``specs``: the mean, its standard error, df and a ``level``
        confidence interval (columns ``emmean, std_error, df, lower, upper``).
    L
        The linear functions of β whose values the means are, one row per mean (a DataFrame
        whose columns are the fixed effects).
    """

    def __init__(self, fit, specs: list[str], L: pd.DataFrame, ddf: str, level: float):
        self.fit, self.specs, self.L, self.ddf, self.level = fit, specs, L, ddf, level
        tests = fit.contest(L, ddf=ddf, joint=False, level=level)
        self.table = pd.DataFrame(
            {"emmean": tests["estimate"], "std_error": tests["std_error"], "df": tests["df"],
             "lower": tests["lower"], "upper": tests["upper"]}
        )
        self.table.index = L.index

    def pairs(self, adjust: str = "tukey") -> pd.DataFrame:
        """Every pairwise difference of the means (``"a - b"`` for a before b), with its standard
        error, df, t ratio and p value adjusted by ``adjust``: ``"tukey"`` (the studentized
        range over the number of means, emmeans' default), ``"bonferroni"`` or ``"none"``."""
        from scipy.stats import studentized_range

        if adjust not in ADJUSTMENTS:
            raise ArgumentError(f"adjust must be one of {ADJUSTMENTS}, not {adjust!r}.")
        names = [_label(i) for i in self.L.index]
        pairs = list(itertools.combinations(range(len(names)), 2))
        if not pairs:
            raise ArgumentError("Pairwise contrasts need at least two means; specs has one level here.")
        D = pd.DataFrame([self.L.iloc[i].to_numpy() - self.L.iloc[j].to_numpy() for i, j in pairs],
                         columns=self.L.columns, index=[f"{names[i]} - {names[j]}" for i, j in pairs])
        tests = self.fit.contest(D, ddf=self.ddf, joint=False)
        p = tests["p_value"].to_numpy()
        if adjust == "tukey":
            p = studentized_range.sf(np.sqrt(2.0) * np.abs(tests["t_value"].to_numpy()), len(names), tests["df"].to_numpy())
        elif adjust == "bonferroni":
            p = np.minimum(1.0, p * len(pairs))
        out = tests[["estimate", "std_error", "df", "t_value"]].copy()
        out["p_value"] = p
        out.index.name = "contrast"
        return out

    def __str__(self) -> str:
        return (f"Estimated marginal means ({DDF_NAMES[self.ddf]} df, {self.level:.0%} intervals):\n"
                + self.table.to_string(float_format=lambda v: f"{v:.4f}"))

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        from ..tables import html_section

        return html_section(f"Estimated marginal means ({DDF_NAMES[self.ddf]} df)", self.table)


def marginal_functions(fit, specs: list[str], at: dict | None) -> pd.DataFrame:
    """The linear functions of β that are the marginal means of ``specs`` (one row per level
    combination, indexed by it), averaged over the reference grid."""
    design = fit.design
    frame, levels = design.rows.frame, design.recipe.variable_levels
    at = dict(at or {})
    unknown = [v for v in list(specs) + list(at) if v not in levels]
    if unknown:
        raise ArgumentError(
            f"{unknown} are not predictors of the fixed effects; the predictors are {sorted(levels)}."
        )
    grid = {}
    for name in design.formula.predictor_variables:
        if name in at:
            grid[name] = list(np.atleast_1d(at[name]))
        elif name in levels:
            grid[name] = [float(frame[name].mean())] if levels[name] is None else sorted(levels[name])
        else:  # a grouping factor, which the fixed effects do not read
            grid[name] = [frame[name].iloc[0]]
    names = list(grid)
    table = pd.DataFrame(list(itertools.product(*grid.values())), columns=names)
    X = new_data(design, table).X
    key = table[specs].apply(tuple, axis=1)
    order = list(dict.fromkeys(key))
    rows = [X[(key == k).to_numpy()].mean(axis=0) for k in order]
    index = pd.MultiIndex.from_tuples(order, names=specs) if len(specs) > 1 else pd.Index([k[0] for k in order], name=specs[0])
    return pd.DataFrame(rows, index=index, columns=list(design.fixed_names))


def _label(key) -> str:
    return " ".join(map(str, key)) if isinstance(key, tuple) else str(key)
