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
u = û(β) + σ L_Z'⁻¹ ε, b = Λu (one back-substitution with the factor at the draw's θ: that of
the chain's last evaluation when it was there, else a new one), and reported as the full
model's ``u_<group>`` (with the full density's expansion, :func:`bayesmix.bayes.full_density.expanded`),
so that results do not depend on which sampler ran. With one grouping factor the compiled
density of :mod:`bayesmix.bayes.density` is used instead.

The whole evaluation (priors and transforms, factor, log-likelihood, gradient, chain rule) is
one compiled call, :func:`log_density_kernel` (the likelihood by :mod:`bayesmix.linalg.factored`),
which releases the GIL: nutpie calls it through its ``from_pyfunc`` interface
(:func:`bayesmix.bayes.nutpie_adapter.python_model`) from one thread per chain, and the chains
evaluate in parallel. The kernels are compiled once per installation: nothing is compiled per
model.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.blocks import CrossProducts
from ..data.layout import GroupLayout, Structure
from ..jit import njit
from ..linalg import factored
from ..linalg.factored import FactoredModel, lapack_routines
from . import full_density
from .density import ThetaMap, Variable, chain_rule, initial_point, population
from .priors import PriorSet


@njit(cache=True, nogil=True, error_model="numpy")
def log_density_kernel(x, blob, shift, c_rows, c_cols, n, model_data, layout, routines):
    """The log posterior density at x and its gradient, and the factor at the point's θ (see
    :meth:`FactorsDensity.log_density`), in one compiled call that releases the GIL.

    θ_c[i] = C[c_rows[i], c_cols[i]] (:class:`~bayesmix.bayes.density.ThetaMap`). Returns
    (value, gradient, θ, factor, valid): ``valid`` False, value -inf and the gradient zero
    outside the support in floating point (far out in the tails) or where the factor does not
    exist; ``factor`` is what :func:`~bayesmix.linalg.factored.draw_effects` reads.
    """
    beta, sigma, sd, R, lp, grad = population(x, blob)
    valid = np.isfinite(lp) and 0.0 < sigma < np.inf
    for k in range(sd.shape[0]):
        valid = valid and 0.0 < sd[k] < np.inf
    theta_c = np.empty(c_rows.shape[0])
    for i in range(theta_c.shape[0]):
        theta_c[i] = sd[c_rows[i]] * R[c_rows[i], c_cols[i]]
    if not valid:  # evaluated at σ = 1 and θ = 0 only for the factor's types
        sigma, theta_c[:] = 1.0, 0.0
    value, d_beta, d_theta, d_sigma, parts = factored.evaluate(theta_c, beta - shift, sigma, n, model_data, layout,
                                                               routines)
    if not valid or not np.isfinite(value):
        return -np.inf, np.zeros_like(grad), theta_c / sigma, parts, False
    d_C = np.zeros(R.shape)
    for i in range(theta_c.shape[0]):
        d_C[c_rows[i], c_cols[i]] += d_theta[i]
    chain_rule(x, blob, grad, sigma, sd, R, d_beta, d_C, d_sigma)
    value += lp
    valid = np.isfinite(value)
    for j in range(grad.shape[0]):
        valid = valid and np.isfinite(grad[j])
    if not valid:
        return -np.inf, np.zeros_like(grad), theta_c / sigma, parts, False
    return value, grad, theta_c / sigma, parts, True


def chain_generator(seed1: int, seed2: int, chain: int):
    """The random numbers of one chain's expansion (the integrated effects' exact draws), as a
    function x -> the chain's generator.

    nutpie 0.16 hands every chain of every run the same seeds (0, 0, 0), so a generator seeded
    from them alone would repeat the same normals in every chain and every run: the chains'
    effect draws would share their noise. The generator is therefore seeded from them and from
    the chain's first draw x, which differs between chains and between runs with different
    seeds and repeats with the same seed; later draws continue its stream."""
    state: list[np.random.Generator] = []

    def generator(x: np.ndarray) -> np.random.Generator:
        if not state:
            digest = hashlib.blake2b(np.ascontiguousarray(x, float).tobytes(), digest_size=8).digest()
            state.append(np.random.default_rng([seed1, seed2, chain, int.from_bytes(digest, "little")]))
        return state[0]

    return generator


class ChainFunctions:
    """nutpie's interface to a density given as Python functions
    (:func:`bayesmix.bayes.nutpie_adapter.python_model`): per chain, the log density and an
    expansion that calls the density's ``draw(x, rng)`` with the chain's own generator
    (:func:`chain_generator`)."""

    def make_logp(self):
        """A log density function (x -> (logp, gradient)), for one chain."""
        return lambda x, **_: self.log_density(x)

    def make_expand(self, seed1: int, seed2: int, chain: int):
        """An expansion function (x -> the posterior variables) for one chain."""
        generator = chain_generator(seed1, seed2, chain)
        lock = threading.Lock()

        def expand(x, **_):
            with lock:
                return self.draw(x, generator(x))

        return expand


@dataclass(frozen=True, eq=False)
class FactorsDensity(ChainFunctions):
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
    _last: threading.local = dataclasses.field(default_factory=threading.local, init=False, repr=False)

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates NUTS samples (β, log σ, the SDs and correlations)."""
        return int(self.blob[full_density.Z_START])

    @functools.cached_property
    def _kernel_arguments(self) -> tuple:
        """What :func:`log_density_kernel` reads besides x."""
        model = FactoredModel.of(self.structure, self.cross_products)
        c_rows, c_cols = self.theta_map.positions()
        return self.blob, self.shift, c_rows, c_cols, model.n, model.data, model.layout, lapack_routines()

    def compile(self) -> None:
        """Load (or compile, once per installation) the numba kernels this density calls."""
        x = self.init(0)
        self.log_density(x)
        self.draw(x, np.random.default_rng(0))

    def with_data(self, cross_products: CrossProducts | None = None) -> FactorsDensity:
        """The same model with the cross-products of a new response."""
        return self if cross_products is None else dataclasses.replace(self, cross_products=cross_products)

    def parameters(self, x: np.ndarray):
        """β, σ, the SDs, the correlation factor R, θ (C's entries), and the log prior with its
        gradient, at x."""
        beta, sigma, sd, R, lp, grad = population(np.asarray(x, float), self.blob)
        return beta, sigma, sd, R, self.theta_map.theta(sd[:, None] * R), lp, grad

    def log_density(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The log posterior density at x (up to a constant) and its exact gradient.

        The factor at x's θ is kept (per thread: nutpie runs a chain per thread) for a draw of
        the random effects at the same θ (:meth:`draw`)."""
        value, grad, theta, parts, valid = log_density_kernel(np.asarray(x, float), *self._kernel_arguments)
        if valid:
            self._last.factor = theta, parts
        return value, grad

    def draw(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The posterior variables at the draw x, with all random effects drawn exactly given it
        (:func:`~bayesmix.linalg.factored.draw_effects`; the factor of the last evaluation in
        this thread when it was at x's θ, else a new one)."""
        x = np.asarray(x, float)
        beta, sigma, _, _, theta_c, _, _ = self.parameters(x)
        _, _, _, _, _, model_data, layout, routines = self._kernel_arguments
        theta = theta_c / sigma
        last_theta, parts = getattr(self._last, "factor", (None, None))
        if last_theta is None or not np.array_equal(last_theta, theta):
            ok, *factor = factored.factor(theta, model_data, layout, routines)
            if not ok:
                raise np.linalg.LinAlgError("Λ'Z'ZΛ + I is not positive definite at this draw")
            T1, column, L11inv, W, L22, V2, _, _, _ = factor
            parts = T1, column, L11inv, W, L22, V2
        first = self.structure.blocks[0]
        eps1 = rng.standard_normal((first.n_levels, first.q))
        eps2 = rng.standard_normal(parts[4].shape[0])
        u = factored.draw_effects(model_data, layout, routines, parts, beta - self.shift, sigma, eps1, eps2)
        # the full density's z, b = C z per level with C = σΛ: z = u / σ
        return full_density.posterior_variables(self.blob, self.variables, self.structure, x, u / sigma)


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
