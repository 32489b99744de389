"""Posterior summaries of estimated marginal means and their pairwise contrasts: the quantities
of R's emmeans (and of the point fits' ``emmeans``), computed draw by draw.

A marginal mean is a linear function l'β of the fixed effects, l a row of the reference grid's
matrix L (:mod:`bayesmix.data.reference_grid`, the point fits' grid). Its posterior is that of
l'β: each draw β⁽ˢ⁾ gives the draw l'β⁽ˢ⁾. On the response scale the inverse link is applied
to every draw, g⁻¹(l'β⁽ˢ⁾), so that the summaries (mean, SD, equal-tailed interval) are those of
the mean on that scale, not g⁻¹ of the link-scale summaries (the interval's ends agree up to the
interpolation between draws, being quantiles of a monotone map; the posterior mean does not). A pairwise contrast is (l_a - l_b)'β
per draw, or on the response scale of a log or logit link the ratio exp((l_a - l_b)'β), as the
point fits report them; with each comes the posterior probability that the first mean exceeds
the second. No multiplicity adjustment applies: each contrast's posterior is its own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from ..data.reference_grid import check_scale, contrasts_are_ratios, label, pairwise_differences
from ..results import check_prob
from ..tables import TitledTable
from .sampling import summarise_draws


class PosteriorMarginalMeans(TitledTable):
    """The posterior of estimated marginal means (see :meth:`bayesmix.BayesResult.emmeans`).

    Attributes
    ----------
    table
        Per level (combination) of ``specs``: ArviZ's summary of the mean's draws on ``scale``
        (``mean, sd, ci_lb, ci_ub``, the equal-tailed ``ci_prob`` interval, then ESS, R-hat and
        the Monte Carlo standard errors), as :meth:`bayesmix.BayesResult.summary`.
    draws
        The draws of the means on ``scale``, dims (chain, draw, emmean).
    L
        The linear functions of β whose values the means are on the link scale, one row per
        mean (a DataFrame whose columns are the fixed effects).
    scale
        ``"link"`` or ``"response"`` (the inverse link applied to every draw).
    ci_prob
        The probability of the intervals.
    """

    def __init__(self, result, specs: list[str], L: pd.DataFrame, ci_prob: float, scale: str = "link"):
        check_prob("ci_prob", ci_prob)
        self.result, self.specs, self.L, self.ci_prob, self.scale = result, specs, L, ci_prob, check_scale(scale)
        eta = self._linear(L)
        values = result.design.family.inverse_link(eta) if scale == "response" else eta
        self.draws = self._as_draws(values, [label(i) for i in L.index], "emmean")
        self.table = self._summary(self.draws, L.index)

    def _linear(self, L: pd.DataFrame) -> np.ndarray:
        """The draws of L β, (chain, draw, rows of L)."""
        beta = self.result.posterior["beta"].transpose("chain", "draw", "coef")
        return beta.values @ L.to_numpy().T

    def _as_draws(self, values: np.ndarray, names: list[str], dim: str) -> xr.DataArray:
        posterior = self.result.posterior
        return xr.DataArray(values, dims=("chain", "draw", dim),
                            coords={"chain": posterior["chain"].values, "draw": posterior["draw"].values, dim: names})

    def _summary(self, draws: xr.DataArray, index: pd.Index) -> pd.DataFrame:
        """ArviZ's summary of each column of ``draws``, indexed by ``index``."""
        dim = draws.dims[-1]
        dataset = xr.Dataset({f"v{k}": draws.isel({dim: k}, drop=True) for k in range(draws.sizes[dim])})
        table = summarise_draws(dataset, self.ci_prob)
        table.index = index
        return table

    def pairs(self) -> pd.DataFrame:
        """The posterior of every pairwise contrast of the means (``"a - b"`` for a before b, per
        draw), with ``prob_greater``, the posterior probability that a exceeds b.

        On the response scale of a log or logit link the contrasts are ratios (of means, or of
        odds) exp(a - b) per draw, labelled ``"a / b"``, as the point fits' ``pairs`` report them;
        other links have no response-scale pairs.

        Raises
        ------
        ArgumentError
            With a single mean, or on the response scale of a link other than identity, log and logit.
        """
        ratios = contrasts_are_ratios(self.scale, self.result.design.family.link)
        D = pairwise_differences(self.L, ratios)
        difference = self._linear(D)
        draws = self._as_draws(np.exp(difference) if ratios else difference, list(D.index), "contrast")
        table = self._summary(draws, D.index)
        table.insert(4, "prob_greater", (difference > 0).mean(axis=(0, 1)))
        return table

    def _title(self) -> str:
        return f"Posterior marginal means ({self.scale} scale, {self.ci_prob:.0%} equal-tailed intervals)"
