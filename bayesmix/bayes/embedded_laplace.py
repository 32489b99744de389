"""NUTS on the Laplace-approximated marginal posterior (``method="laplace"``).

The random effects are integrated out of the posterior by the Laplace approximation of the
maximum-likelihood fit (:mod:`bayesmix.linalg.pirls`, lme4's ``glmer`` with ``nAGQ = 1``),
and NUTS samples what is left: the population parameters ψ = (β, the dispersion, the SDs and
the correlations), in the unconstrained coordinates and with the priors of the full density
(:func:`bayesmix.bayes.density.population`). The log density is

    log p(ψ) - d(θ(ψ), β, φ) / 2,

with d the Laplace deviance (Margossian et al. 2020, "Hamiltonian Monte Carlo using an
adjoint-differentiated Laplace approximation"; the idea behind INLA and Stan's embedded
Laplace). For each evaluation the conditional mode û is found by PIRLS (Newton) warm-started
from the last mode, corrected to first order for the change of ψ
(:class:`~bayesmix.linalg.pirls.WarmModes`), and the gradient is the exact adjoint one of
:func:`~bayesmix.linalg.pirls.laplace_gradient` (the implicit-function theorem at the mode;
nothing is differentiated through the iterations). With one grouping factor both run level by
level in compiled code (:mod:`bayesmix.linalg.levelwise`), with several on the blocked factor
(:mod:`bayesmix.linalg.blockwise`). θ is the relative covariance factor of the
ML fit, Λ = diag(sd) L per level (L the Cholesky factor of the correlations), so
∂d/∂θ is carried to the SDs and correlations by the full density's chain rule
(:func:`bayesmix.bayes.density.chain_rule`).

β is sampled by NUTS with ψ rather than integrated out with u: its prior stays what the user
states (a Student-t intercept, flat coefficients), the dimension NUTS sees stays small (β and
the variance parameters), and d is exact in β for the Gaussian family.

For each posterior draw of ψ the spherical effects are drawn from the Gaussian approximation
u ~ N(û, M⁻¹), M = Λ'Z'WZΛ + I (one back-substitution with the factor at the mode), and mapped
to b = Λu as the full model's ``u_<group>``. With them comes the log importance weight of the
exact joint posterior against this approximation,

    log w = [Σ ℓ_i(η(u)) - |u|²/2] - [Σ ℓ_i(η(û)) - |û|²/2] + |ε|²/2,    u = û + L_Z'⁻¹ ε,

(log|M| cancels), whose Pareto-smoothed k̂ (:mod:`bayesmix.bayes.importance`) says whether the
approximation can be trusted: below 0.7 the draws are usable (and reweighting them corrects
expectations); above, they are not. For the Gaussian family with the identity link the
approximation is exact (d is the marginal deviance, PIRLS converges in one step, log w = 0),
so the posterior is the collapsed sampler's.

The density runs as Python functions handed to nutpie (its ``from_pyfunc`` interface,
:func:`bayesmix.bayes.nutpie_adapter.python_model`): the model-specific work is PIRLS and the
gradient, numpy and numba code compiled once per installation, so nothing is compiled per model.
"""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.layout import GroupLayout, structure_of
from ..linalg.pirls import GlmmRows, PirlsMode, WarmModes
from . import full_density
from .collapsed_factors import chain_generator
from .density import ThetaMap, Variable, chain_rule, initial_point, population
from .importance import LOG_WEIGHT
from .priors import PriorSet

@dataclass(frozen=True, eq=False)
class LaplaceDensity:
    """The Laplace-approximated marginal posterior of a design, ready for nutpie.

    Attributes
    ----------
    rows
        The data as PIRLS reads them (of the standardised design).
    blob
        The full density's blob (:func:`bayesmix.bayes.full_density.pack`): its population
        part gives the priors and transforms, its expansion plan the posterior variables.
    variables
        The expanded variables: the full model's, then the log importance weight.
    coords
        The posterior's coordinates.
    n_population
        Number of unconstrained coordinates (β, the dispersion, the SDs and correlations).
    theta_map
        Where θ of the factorisation sits in C = diag(sd) L (:class:`~bayesmix.bayes.density.ThetaMap`).
    init
        seed -> initial point (the priors' centres, jittered by U(-1, 1) as PyMC does).
    """

    rows: GlmmRows
    blob: np.ndarray
    variables: list[Variable]
    coords: dict
    n_population: int
    theta_map: ThetaMap
    init: object

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates NUTS samples."""
        return self.n_population

    @property
    def has_dispersion(self) -> bool:
        """Whether the family has a dispersion parameter (σ, θ)."""
        return self.rows.family.has_dispersion

    def compile(self) -> None:
        """Load (or compile, once per installation) the numba kernels this density calls."""
        self.log_density(self.init(0), WarmModes(self.rows))

    def with_data(self, y=None) -> LaplaceDensity:
        """The same model with the response replaced by the values the PyMC model observes
        (:meth:`~bayesmix.families.Family.observed`: the binomial's successes, proportions here)."""
        if y is None:
            return self
        y = np.asarray(y, float).ravel()
        if self.rows.family.name == "binomial":
            y = y / self.rows.weights
        return dataclasses.replace(self, rows=dataclasses.replace(self.rows, y=y))

    # ----- the parameters ----------------------------------------------------------------------
    def parameters(self, x: np.ndarray):
        """β, the dispersion (None without one), the SDs, the correlation factor, θ, and the log
        prior with its gradient, at x."""
        beta, dispersion, sd, R, lp, grad = population(np.asarray(x, float), self.blob)
        theta = self.theta_map.theta(sd[:, None] * R)
        return beta, (dispersion if self.has_dispersion else None), sd, R, theta, lp, grad

    def log_density(self, x: np.ndarray, modes: WarmModes) -> tuple[float, np.ndarray]:
        """The log posterior density of ψ at x under the Laplace approximation (up to a
        constant) and its exact gradient; ``modes`` warm-starts PIRLS along a chain."""
        beta, dispersion, sd, R, theta, lp, grad = self.parameters(x)
        invalid = -np.inf, np.zeros_like(grad)
        if not (np.isfinite(lp) and np.all(sd > 0.0) and np.all(np.isfinite(sd))):
            return invalid
        if self.has_dispersion and not 0.0 < dispersion < np.inf:
            return invalid
        try:
            mode = modes.solve(theta, beta, dispersion)
        except np.linalg.LinAlgError:
            return invalid
        deviance = mode.laplace_deviance
        if not np.isfinite(deviance):
            return invalid
        modes.mode = mode
        g = modes.gradient(mode)
        d_C = self.theta_map.d_C(-0.5 * g.theta, sd.size)
        d_dispersion = -0.5 * g.log_dispersion / dispersion if self.has_dispersion else 0.0
        chain_rule(np.asarray(x, float), self.blob, grad, np.nan if dispersion is None else dispersion, sd, R,
                   -0.5 * g.beta, d_C, d_dispersion)
        value = lp - 0.5 * deviance
        if not (np.isfinite(value) and np.all(np.isfinite(grad))):
            return invalid
        return float(value), grad

    # ----- the draws ---------------------------------------------------------------------------
    def draw(self, x: np.ndarray, modes: WarmModes, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The posterior variables at the draw x: ψ's, the random effects drawn from the
        Gaussian approximation at ψ, and the log importance weight of the exact joint."""
        beta, dispersion, _, _, theta, _, _ = self.parameters(x)
        mode = modes.solve(theta, beta, dispersion)
        modes.mode = mode
        u, log_weight = self.effects_draw(mode, rng)
        draws = full_density.posterior_variables(self.blob, self.variables[:-1], self.rows.structure, x, u)
        draws[LOG_WEIGHT] = np.asarray(log_weight)
        return draws

    def effects_draw(self, mode: PirlsMode, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Spherical effects u ~ N(û, M⁻¹) and the log importance weight of the exact joint
        against the approximation (see the module docstring)."""
        rows, f = self.rows, mode.factorization
        first = rows.structure.blocks[0]
        eps1 = rng.standard_normal((first.n_levels, first.q))
        eps2 = None if f.L22 is None else rng.standard_normal(f.L22.shape[0])
        x1, x2 = f.back_substitute(eps1, eps2)
        step = x1.ravel() if x2 is None else np.concatenate([x1.ravel(), x2])
        u = mode.u + step
        eta = mode.eta + rows.random_predictor(mode.theta, step)
        joint = rows.log_likelihood(eta, mode.dispersion).sum() - 0.5 * u @ u
        at_mode = mode.log_likelihood - 0.5 * mode.u @ mode.u
        eps = eps1.ravel() if eps2 is None else np.concatenate([eps1.ravel(), eps2])
        return u, float(joint - at_mode + 0.5 * eps @ eps)

    # ----- nutpie's interface ------------------------------------------------------------------
    def make_logp(self):
        """A log density function (x -> (logp, gradient)) with its own warm start, for one chain."""
        modes = WarmModes(self.rows)
        return lambda x, **_: self.log_density(x, modes)

    def make_expand(self, seed1: int, seed2: int, chain: int):
        """An expansion function (x -> the posterior variables) for one chain
        (:func:`~bayesmix.bayes.collapsed_factors.chain_generator`)."""
        modes = WarmModes(self.rows)
        generator = chain_generator(seed1, seed2, chain)
        lock = threading.Lock()

        def expand(x, **_):
            with lock:
                return self.draw(np.asarray(x, float), modes, generator(x))

        return expand


def laplace_density(design, priors: PriorSet, labels: list[str], layouts: list[GroupLayout], coords: dict) -> LaplaceDensity:
    """The nutpie model of the Laplace-approximated posterior of ``design`` (see the module docstring)."""
    blob, variables, _ = full_density.pack(design, priors, labels, layouts)
    structure = structure_of(design)
    rows = design.rows
    glmm_rows = GlmmRows.of(structure, rows.X, rows.y, rows.weights, rows.offset, design.family)
    coords = {k: pd.Index(v) for k, v in coords.items() if k != "obs"}
    n_population = int(blob[full_density.Z_START])
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(n_population)])

    def init(seed):
        return initial_point(design, priors, labels, np.random.default_rng(seed))

    return LaplaceDensity(
        rows=glmm_rows, blob=blob, variables=[*variables, Variable(LOG_WEIGHT, (), ())], coords=coords,
        n_population=n_population, theta_map=ThetaMap.of(design, structure), init=init,
    )
