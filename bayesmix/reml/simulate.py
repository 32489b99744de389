"""Responses simulated from a point-estimate fit, as lme4's ``simulate.merMod``.

Unconditionally (lme4's default, ``use.u = FALSE``): new random effects b = √s Λθ̂ u with
u ~ N(0, I) for every level (s = σ̂² for a linear model, 1 for a GLMM), then the response
given the mean g⁻¹(offset + Xβ̂ + Zb) from the family's predictive distribution (for the linear
model N(μ, σ̂²/w)). Conditionally (``use.u = TRUE``): b is held at the conditional modes b̂.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError
from ..data.layout import random_part

if TYPE_CHECKING:
    from .point import PointFit


def check_nsim(nsim) -> int:
    """``nsim`` as a positive int, or ArgumentError."""
    if isinstance(nsim, bool) or not isinstance(nsim, (int, np.integer)) or nsim < 1:
        raise ArgumentError(f"nsim must be a positive integer (the number of simulated responses), not {nsim!r}.")
    return int(nsim)


def simulate_responses(fit: PointFit, nsim: int, rng: np.random.Generator, random: bool = True) -> np.ndarray:
    """``nsim`` responses simulated from ``fit``, shape (nsim, n); ``random`` draws new random
    effects (unconditional), else holds them at the conditional modes (see the module docstring)."""
    rows = fit.design.rows
    structure = fit.structure
    theta = fit.theta_values
    if random:
        scale = np.sqrt(fit.effect_scale)
        b = [scale * rng.standard_normal((nsim, block.n_levels, block.q)) @ block.lambda_(theta).T
             for block in structure.blocks]
    else:
        b = [m[None] for m in fit.modes]
    eta = rows.X @ fit.beta_values + random_part(structure, rows, b)
    if rows.offset is not None:
        eta = eta + rows.offset
    family = fit.design.family
    mu = np.broadcast_to(family.inverse_link(eta), (nsim, rows.n))
    dispersion = next(iter(fit.dispersion_estimates().values()), None)
    return family.predictive_draws(mu, dispersion, rng, rows.weights)
