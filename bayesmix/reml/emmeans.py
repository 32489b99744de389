"""Estimated marginal means and their pairwise contrasts, as R's emmeans computes them for a
linear mixed model.

The marginal mean of a level of ``specs`` is the average, with equal weights, of the reference
grid's linear predictors X_g β̂ over the other predictors' levels
(:mod:`bayesmix.data.reference_grid`, shared with the posterior's means): a linear function
l'β̂, whose standard
error and degrees of freedom come from the fit's method (Satterthwaite or Kenward-Roger, as
``lmer.df`` in emmeans; for a GLMM, asymptotic z tests). Pairwise contrasts are differences of
those functions; their p values are adjusted for multiplicity by Tukey's studentized range
(emmeans' default for pairs), Bonferroni, or not at all. A GLMM's means and contrasts can be
read on the response scale (emmeans' ``type = "response"``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.reference_grid import check_scale, contrasts_are_ratios, pairwise_differences
from ..errors import ArgumentError
from ..tables import TitledTable
from .anova import DDF_NAMES

ADJUSTMENTS = ("tukey", "bonferroni", "none")


class MarginalMeans(TitledTable):
    """Estimated marginal means of a fit (see :meth:`bayesmix.RemlResult.emmeans` and
    :meth:`bayesmix.GlmmResult.emmeans`).

    Attributes
    ----------
    table
        Per level (combination) of ``specs``: the mean, its standard error, df (infinite for a
        GLMM, whose tests are asymptotic z tests, as emmeans' for ``glmer``) and a ``level``
        confidence interval (columns ``emmean, std_error, df, lower, upper``), on ``scale``.
    L
        The linear functions of β whose values the means are on the link scale, one row per
        mean (a DataFrame whose columns are the fixed effects).
    scale
        ``"link"`` or ``"response"``: on the response scale the means are g⁻¹ of the link-scale
        means, their standard errors by the delta method, and the interval's ends g⁻¹ of the
        link-scale ends (emmeans' ``type = "response"``).
    """

    def __init__(self, fit, specs: list[str], L: pd.DataFrame, ddf: str | None, level: float, scale: str = "link"):
        check_scale(scale)
        self.fit, self.specs, self.L, self.ddf, self.level, self.scale = fit, specs, L, ddf, level, scale
        tests = self._tests(L, level)
        table = pd.DataFrame(
            {"emmean": tests["estimate"], "std_error": tests["std_error"], "df": tests["df"],
             "lower": tests["lower"], "upper": tests["upper"]}
        )
        family = fit.design.family
        if scale == "response" and family.link != "identity":
            eta = table["emmean"].to_numpy()
            table["std_error"] = np.abs(family.inverse_link_derivative(eta)) * table["std_error"]
            for column in ("emmean", "lower", "upper"):
                table[column] = family.inverse_link(table[column].to_numpy())
        table.index = L.index
        self.table = table

    def _tests(self, L: pd.DataFrame, level: float) -> pd.DataFrame:
        """A t test per row of L by the fit's df method, or a Wald z test (df = ∞) without one."""
        if self.ddf is not None:
            return self.fit.contest(L, ddf=self.ddf, joint=False, level=level)
        from scipy.special import ndtr, ndtri

        estimate = L.to_numpy() @ self.fit.beta_values
        se = np.sqrt(np.einsum("ri,ij,rj->r", L.to_numpy(), self.fit.vcov().to_numpy(), L.to_numpy()))
        z = estimate / se
        half = ndtri(0.5 + level / 2.0) * se
        return pd.DataFrame({"estimate": estimate, "std_error": se, "df": np.inf, "t_value": z, "lower": estimate - half,
                             "upper": estimate + half, "p_value": 2.0 * ndtr(-np.abs(z))}, index=L.index)

    def pairs(self, adjust: str = "tukey") -> pd.DataFrame:
        """Every pairwise difference of the means (``"a - b"`` for a before b), with its standard
        error, df, t ratio (``z_value`` for a GLMM) and p value adjusted by ``adjust``: ``"tukey"`` (the
        studentized range over the number of means, emmeans' default), ``"bonferroni"`` or
        ``"none"``.

        On the response scale of a log or logit link the contrasts are ratios (of means, or of
        odds) exp(a - b), with delta-method standard errors, and the tests stay on the link
        scale, as emmeans reports them; other links have no response-scale pairs.
        """
        from scipy.stats import studentized_range

        if adjust not in ADJUSTMENTS:
            raise ArgumentError(f"adjust must be one of {ADJUSTMENTS}, not {adjust!r}.")
        ratios = contrasts_are_ratios(self.scale, self.fit.design.family.link)
        D = pairwise_differences(self.L, ratios)
        tests = self._tests(D, self.level)
        p = tests["p_value"].to_numpy()
        if adjust == "tukey":
            p = studentized_range.sf(np.sqrt(2.0) * np.abs(tests["t_value"].to_numpy()), len(self.L), tests["df"].to_numpy())
        elif adjust == "bonferroni":
            p = np.minimum(1.0, p * len(D))
        out = tests[["estimate", "std_error", "df", "t_value"]].copy()
        if ratios:
            out["estimate"] = np.exp(out["estimate"])
            out["std_error"] = out["estimate"] * out["std_error"]
        out["p_value"] = p
        out.index.name = "contrast"
        return out if self.ddf is not None else out.rename(columns={"t_value": "z_value"})

    def _title(self) -> str:
        df = f"{DDF_NAMES[self.ddf]} df" if self.ddf else "asymptotic z"
        return f"Estimated marginal means ({self.scale} scale, {df}, {self.level:.0%} intervals)"
