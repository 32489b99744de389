"""Importance weights of the exact joint posterior against an approximation, and their
Pareto-smoothed diagnostics (``method="laplace"``: :mod:`bayesmix.bayes.embedded_laplace`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_WEIGHT = "log_importance_weight"
"""The name of the log importance weights among the sampler's variables and in ``sample_stats``."""

KHAT_GOOD = 0.7
"""Pareto k̂ above which the importance weights, and so the approximation, are not to be trusted
(Vehtari et al. 2024, "Pareto smoothed importance sampling")."""

MIN_DRAWS = 30
"""The fewest draws whose Pareto tail PSIS fits: ArviZ takes n/5 of up to 225 draws as the tail;
with fewer than 25 it raises an error, and from 25 to 29 (a tail of 5) it gives no k̂."""


@dataclass(frozen=True)
class ImportanceDiagnostics:
    """How well the Laplace approximation matches the exact joint posterior at the draws.

    Attributes
    ----------
    khat
        Pareto-smoothed importance sampling's k̂ of the weights: below :data:`KHAT_GOOD` (0.7)
        the approximation is usable; above, it is not (Vehtari et al. 2024).
    ess
        Effective sample size of the smoothed weights, 1 / Σ w², out of ``n`` draws.
    n
        Number of draws.
    """

    khat: float
    ess: float
    n: int

    @property
    def trustworthy(self) -> bool:
        """Whether k̂ is below :data:`KHAT_GOOD` (-inf for an exact approximation; NaN, weights
        that are not all finite, is not)."""
        return bool(self.khat < KHAT_GOOD)

    def __str__(self) -> str:
        if np.isnan(self.khat) and self.n < MIN_DRAWS:
            return (f"Laplace importance check: Pareto k not computed from {self.n} draws (PSIS needs at least "
                    f"{MIN_DRAWS}): the approximation is unchecked; draw more")
        if np.isnan(self.khat):
            return ("Laplace importance check: Pareto k could not be computed (some importance weights are not finite): "
                    "the approximation cannot be trusted; use method='full'")
        khat = "-inf (exact)" if self.khat == -np.inf else f"{self.khat:.2f}"
        verdict = "the approximation is good" if self.trustworthy else "the approximation is poor: use method='full'"
        return f"Laplace importance check: Pareto k = {khat}, weights' ESS {self.ess:.0f} of {self.n} ({verdict})"


def importance_diagnostics(log_weights) -> ImportanceDiagnostics:
    """PSIS k̂ and the effective sample size of the log importance weights (all draws pooled).

    Weights that are constant (an exact approximation: the Gaussian family) give k̂ = -inf; fewer
    than :data:`MIN_DRAWS`, or weights not all finite, k̂ = NaN (unchecked, so not trustworthy)."""
    values = np.asarray(log_weights, float).ravel()
    n = values.size
    if not np.all(np.isfinite(values)):
        return ImportanceDiagnostics(np.nan, np.nan, n)
    spread = np.ptp(values) if n else 0.0
    if spread < 1e-8:
        return ImportanceDiagnostics(-np.inf, float(n), n)
    if n < MIN_DRAWS:
        return ImportanceDiagnostics(np.nan, np.nan, n)
    import arviz_stats  # noqa: F401  (registers the .azstats accessor)
    import xarray as xr

    # ArviZ smooths the log ratios of leave-one-out, -log p(y_i | θ): it takes the negated log weights
    smoothed, khat = xr.DataArray(-values, dims=["sample"]).azstats.psislw(dim="sample")
    w = np.exp(smoothed.values)  # normalised
    return ImportanceDiagnostics(float(khat), float(1.0 / np.sum(w * w)), n)
