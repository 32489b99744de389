"""The collapsed sampler for several grouping factors (crossed or nested; Gaussian family,
identity link): NUTS on (β, σ, the SDs and correlations) with every random effect integrated
out, then exact joint draws of the effects.

The log density is the priors and transforms of :func:`bayesmix.bayes.density.population`
(the coordinates, priors and Jacobians of the collapsed and full densities) plus the marginal
log-likelihood

    log p(y | β, σ, C) = -½ [ n log(2πσ²) + log|Λ'Z'ZΛ + I| + r²(β) / σ² ],    Λ = C / σ,

r²(β) the penalised residual sum of squares at β, computed by the blocked factorisation of the
REML criterion from the cross-products of ``[Z X y]``, formed once per design
(:func:`bayesmix.linalg.collapsed.factored_loglik`). An evaluation costs one factorisation and
the exact gradient of :func:`~bayesmix.linalg.gradient.schur_gradient`, and no pass over the
rows. The gradient in θ (the entries of C per factor block, :class:`~bayesmix.bayes.density.ThetaMap`)
is carried to the unconstrained coordinates by :func:`~bayesmix.bayes.density.chain_rule`.

For each posterior draw all random effects are drawn jointly and exactly,
u = û(β) + σ L_Z'⁻¹ ε, b = Λu (:func:`~bayesmix.linalg.collapsed.draw_factored_effects`: one
factorisation and one back-substitution per draw), and reported as the full model's
``u_<group>`` (with the full density's expansion, :func:`bayesmix.bayes.full_density.expanded`),
so that results do not depend on which sampler ran. With one grouping factor the compiled
density of :mod:`bayesmix.bayes.density` is used instead.

The density runs as Python functions handed to nutpie (its ``from_pyfunc`` interface,
:func:`bayesmix.bayes.nutpie_adapter.python_model`), with numpy and the numba kernels of the
factorisation inside, compiled once per installation: nothing is compiled per model.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.blocks import CrossProducts
from ..data.layout import GroupLayout, Structure
from ..linalg.collapsed import draw_factored_effects, factored_loglik
from ..linalg.factorization import factorize
from . import full_density
from .density import Q, ThetaMap, Variable, chain_rule, initial_point, population
from .priors import PriorSet


@dataclass(frozen=True, eq=False)
class FactorsDensity:
    """The collapsed posterior of a Gaussian model with several grouping factors, ready for nutpie.

    Attributes
    ----------
    structure
        The factor blocks and θ's layout.
    cross_products
        Of ``[Z X, y - X c]`` (c = ``shift``) for ``structure``.
    shift
        c: the likelihood is evaluated at β - c (see :func:`~bayesmix.data.crossprod.shifted_cross_products`).
    blob
        The full density's blob (:func:`bayesmix.bayes.full_density.pack`): its population part
        gives the priors and transforms, its expansion plan the posterior variables.
    variables
        The expanded variables (the full model's).
    coords
        The posterior's coordinates.
    theta_map
        Where θ sits in C = diag(sd) R.
    init
        seed -> initial point.
    """

    structure: Structure
    cross_products: CrossProducts
    shift: np.ndarray
    blob: np.ndarray
    variables: list[Variable]
    coords: dict
    theta_map: ThetaMap
    init: object

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates NUTS samples (β, log σ, the SDs and correlations)."""
        return int(self.blob[full_density.Z_START])

    def compile(self) -> None:
        """Load (or compile, once per installation) the numba kernels this density calls."""
        self.log_density(self.init(0))

    def with_data(self, cross_products: CrossProducts | None = None) -> FactorsDensity:
        """The same model with the cross-products of a new response."""
        return self if cross_products is None else dataclasses.replace(self, cross_products=cross_products)

    def parameters(self, x: np.ndarray):
        """β, σ, the SDs, the correlation factor R, θ (C's entries), and the log prior with its
        gradient, at x."""
        beta, sigma, sd, R, lp, grad = population(np.asarray(x, float), self.blob)
        return beta, sigma, sd, R, self.theta_map.theta(sd[:, None] * R), lp, grad

    def log_density(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The log posterior density at x (up to a constant) and its exact gradient."""
        x = np.asarray(x, float)
        beta, sigma, sd, R, theta_c, lp, grad = self.parameters(x)
        invalid = -np.inf, np.zeros_like(grad)
        if not (np.isfinite(lp) and 0.0 < sigma < np.inf and np.all(sd > 0.0) and np.all(np.isfinite(sd))):
            return invalid  # outside the support in floating point (far out in the tails)
        try:
            value, d_beta, d_theta, d_sigma, _ = factored_loglik(self.structure, self.cross_products,
                                                                 beta - self.shift, theta_c, sigma)
        except np.linalg.LinAlgError:
            return invalid
        chain_rule(x, self.blob, grad, sigma, sd, R, d_beta, self.theta_map.d_C(d_theta, int(self.blob[Q])), d_sigma)
        value += lp
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return invalid
        return float(value), grad

    def draw(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The posterior variables at the draw x, with all random effects drawn exactly given it."""
        x = np.asarray(x, float)
        beta, sigma, _, _, theta_c, _, _ = self.parameters(x)
        f = factorize(self.structure, self.cross_products, theta_c / sigma)
        u1, u2 = draw_factored_effects(f, beta - self.shift, sigma, rng)
        u = u1.ravel() if u2 is None else np.concatenate([u1.ravel(), u2])
        # the full density's z, b = C z per level with C = σΛ: z = u / σ
        return full_density.posterior_variables(self.blob, self.variables, self.structure, x, u / sigma)

    # ----- nutpie's interface ------------------------------------------------------------------
    def make_logp(self):
        """A log density function (x -> (logp, gradient)), for one chain."""
        return lambda x, **_: self.log_density(x)

    def make_expand(self, seed1: int, seed2: int, chain: int):
        """An expansion function (x -> the posterior variables) for one chain, seeded by nutpie."""
        rng = np.random.default_rng([seed1, seed2, chain])
        lock = threading.Lock()

        def expand(x, **_):
            with lock:
                return self.draw(x, rng)

        return expand


def factors_density(design, structure: Structure, cross_products: CrossProducts, shift: np.ndarray,
                    priors: PriorSet, labels: list[str], layouts: list[GroupLayout], coords: dict) -> FactorsDensity:
    """The nutpie model of the collapsed posterior of ``design`` (see the module docstring);
    ``cross_products`` those of ``[Z X, y - X c]`` laid out by ``structure``, c = ``shift``."""
    blob, variables, _ = full_density.pack(design, priors, labels, layouts)
    coords = {k: pd.Index(v) for k, v in coords.items() if k != "obs"}
    n_dim = int(blob[full_density.Z_START])
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(n_dim)])

    def init(seed):
        return initial_point(design, priors, labels, np.random.default_rng(seed))

    return FactorsDensity(structure, cross_products, np.asarray(shift, float), blob, variables, coords,
                          ThetaMap.of(design, structure), init)
