"""Penalised iteratively reweighted least squares (PIRLS) and the Laplace and adaptive
Gauss-Hermite deviance of a generalised linear mixed model.

The model (lme4's ``glmer``, MixedModels.jl's ``GeneralizedLinearMixedModel``) is

    η = offset + Xβ + ZΛu,   u ~ N(0, I),   y_i | η_i ~ family(μ_i = g⁻¹(η_i), φ, prior weight a_i),

with Λ = Λθ the relative covariance factor of :mod:`bayesmix.data.layout` (b = Λu, so that
Var(b) = ΛΛ' on the scale of η). For given θ (and β, φ) the conditional mode û of the
spherical effects minimises the penalised deviance

    g(u) = -2 Σ ℓ_i(η_i) + |u|²,

and the Laplace approximation to -2 log L(θ, β, φ) is

    d(θ, β, φ) = g(û) + log|Λ'Z'WZΛ + I|,    W = diag(-∂²ℓ_i/∂η_i²) at η̂,

with ℓ_i the log-likelihood of observation i with all its normalising constants (so that
-d/2 is lme4's ``logLik`` for canonical links and glmmTMB's for any link). W is the observed
information, the exact second derivative, which makes d the Laplace approximation proper; for
a canonical link (logit binomial, log Poisson, identity Gaussian) it equals the Fisher
information that lme4 uses, and for the negative binomial with its log link it is what
glmmTMB's Laplace uses.

Each PIRLS step is one Newton step on g: the penalised weighted least-squares problem with
working weights W and working response η - offset + W⁻¹ ∂ℓ/∂η, solved by the blocked
Cholesky factor of :mod:`bayesmix.linalg.factorization` from weighted cross-products
(:func:`bayesmix.data.crossprod.cross_products`). The step is halved while g does not
decrease, and the iteration runs to convergence (a step below 1e-9 relative, or a full Newton step
below 1e-6, after which Newton's quadratic convergence leaves an error of order 1e-12), far past lme4's default
``tolPwrss = 1e-7``, which stops short enough to move the fixed effects by 1e-3. With β
given, u alone is updated (lme4's second stage); without it, β and u jointly (lme4's first
stage, whose β is then the maximiser of the penalised likelihood, not of d).

With a single grouping factor and β given (the ML fit's evaluations and ``method="laplace"``'s),
the problem decouples by level: :func:`level_pirls` and :func:`level_laplace_gradient` solve
each level's Newton problem and take its part of the gradient in one compiled pass over rows
sorted by level (:mod:`bayesmix.linalg.levelwise`), and :class:`WarmModes` takes that path.
With several grouping factors and β given, :func:`blocked_pirls` and
:func:`blocked_laplace_gradient` run the whole of PIRLS and the adjoint gradient in compiled
code on the blocked factor (:mod:`bayesmix.linalg.blockwise`), and :class:`WarmModes` takes that
path.

Adaptive Gauss-Hermite quadrature (lme4's ``nAGQ``) applies to models with a single scalar
random-effect term, where the integral over u factorises by level: each level's integral is
taken with K nodes centred at its conditional mode and scaled by its conditional SD.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from ..data.crossprod import CrossProductPlan
from ..data.layout import Structure
from ..errors import ArgumentError
from ..families import ROW_LIKELIHOOD_CODES, Family
from .blockwise import BlockedRows, blocked_gradient, blocked_modes
from .factorization import Factorization, RestLambda, effects, factorize
from .levelwise import LevelRows, level_gradient, level_modes
from .working import add_level_products, level_matrix_products, level_sums, log_likelihood_rows, working_rows

MAX_STEPS = 200  # PIRLS steps before giving up
MAX_HALVINGS = 30  # step halvings before a step is taken to have reached rounding level
LINK_STEP = 1e-4  # central-difference step for the second derivative of a non-canonical link's inverse
STEP_TOL = 1e-9  # PIRLS stops when no coordinate of (β, u) moves more than this (relative to 1 + its size)
NEWTON_TOL = 1e-6  # ... or when a full (unhalved) Newton step moved none more than this, leaving an error of order 1e-12


@dataclass(frozen=True, eq=False)
class GlmmRows:
    """The data of a GLMM as PIRLS reads them.

    Attributes
    ----------
    structure
        The random-effects layout, with the rows' level codes and ``z`` in its blocks
        (:func:`~bayesmix.data.layout.structure_of`).
    X
        Fixed-effects model matrix, shape (n, p).
    y
        The response, shape (n,), as the family reads it (a proportion for the binomial).
    weights
        Prior weights a_i, shape (n,) (the number of trials for a binomial proportion).
    offset
        Known part of the linear predictor, shape (n,).
    family
        The response family (:mod:`bayesmix.families`).
    """

    structure: Structure
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    family: Family

    @classmethod
    def of(cls, structure: Structure, X, y, weights, offset, family: Family) -> GlmmRows:
        """The rows from arrays as a design holds them: ``weights`` None for unit weights,
        ``offset`` None for none."""
        n = len(y)
        return cls(
            structure,
            np.asarray(X, dtype=float),
            np.asarray(y, dtype=float),
            np.ones(n) if weights is None else np.asarray(weights, dtype=float),
            np.zeros(n) if offset is None else np.asarray(offset, dtype=float),
            family,
        )

    @functools.cached_property
    def plan(self) -> CrossProductPlan:
        """The layout of the weighted cross-products, shared by every PIRLS step."""
        return CrossProductPlan(self.structure)

    @functools.cached_property
    def level_rows(self) -> LevelRows:
        """The rows in the order of the first factor's levels (for :func:`level_pirls`)."""
        block = self.structure.blocks[0]
        return LevelRows.of(block.codes, block.n_levels, self.X, self.y, self.weights, self.offset, block.z, self.family.code)

    @functools.cached_property
    def blocked_rows(self) -> BlockedRows:
        """The rows as :func:`blocked_pirls` reads them (several factor blocks)."""
        return BlockedRows.of(self.structure, self.plan, self.X, self.y, self.weights, self.offset, self.family.code)

    @property
    def levelwise(self) -> bool:
        """Whether :func:`level_pirls` applies: one grouping factor (one factor block) and a
        family with compiled functions for one observation
        (:data:`~bayesmix.families.ROW_LIKELIHOOD_CODES`)."""
        return len(self.structure.blocks) == 1 and self.family.code in ROW_LIKELIHOOD_CODES

    @property
    def blocked(self) -> bool:
        """Whether :func:`blocked_pirls` applies: several factor blocks and a family with
        compiled functions for one observation."""
        return len(self.structure.blocks) > 1 and self.family.code in ROW_LIKELIHOOD_CODES

    @property
    def n(self) -> int:
        """Number of observations."""
        return len(self.y)

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return self.X.shape[1]

    @property
    def n_effects(self) -> int:
        """Length of u: Σ over factor blocks of levels x q."""
        return sum(block.n_levels * block.q for block in self.structure.blocks)

    def random_predictor(self, theta: np.ndarray, u: np.ndarray) -> np.ndarray:
        """ZΛu, shape (n,)."""
        total = np.zeros(self.n)
        for block, b in zip(self.structure.blocks, effects(self.structure, theta, u)):
            add_level_products(total, block.codes, block.z, b)
        return total

    def log_likelihood(self, eta: np.ndarray, dispersion: float | None) -> np.ndarray:
        """ℓ_i(η_i), each observation's log-likelihood with its normalising constants (η of
        shape (n,), or (k, n) for k linear predictors at once)."""
        family = self.family
        if family.kernel_code is not None:
            y, weights = self._rows_like(eta)
            values = log_likelihood_rows(family.kernel_code, family.link_code, y, weights, np.ascontiguousarray(eta).ravel(),
                                         np.nan if dispersion is None else dispersion)
            return values.reshape(eta.shape)
        return family.log_likelihood(self.y, family.inverse_link(eta), dispersion, self.weights)

    def _rows_like(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """y and the weights repeated for each row of a (k, n) η, flat (as they are for one η)."""
        if eta.ndim == 1:
            return self.y, self.weights
        return np.broadcast_to(self.y, eta.shape).ravel(), np.broadcast_to(self.weights, eta.shape).ravel()

    def working(self, eta: np.ndarray, dispersion: float | None, fisher: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """∂ℓ_i/∂η_i and the observed information -∂²ℓ_i/∂η_i² at η (shape (n,), or (k, n));
        with ``fisher`` the Fisher information instead (the same for a canonical link).

        For a canonical link the observed information is the Fisher information
        μ_η² E[-∂²ℓ/∂μ²], which is -∂²ℓ/∂μ² at y = μ. Otherwise it is
        -(∂²ℓ/∂μ² μ_η² + ∂ℓ/∂μ μ_ηη), with μ_ηη by a central difference of μ_η (the links
        are smooth; its error, about 1e-9 relative, is smooth in η and far below the
        approximation's). Families with compiled likelihood functions take one pass over the
        rows (:func:`~bayesmix.linalg.working.working_rows`).
        """
        family = self.family
        if family.kernel_code is not None:
            y, weights = self._rows_like(eta)
            score, information = working_rows(
                family.kernel_code, family.link_code, family.canonical or fisher, y, weights, np.ascontiguousarray(eta).ravel(),
                np.nan if dispersion is None else dispersion, LINK_STEP,
            )
            return score.reshape(eta.shape), information.reshape(eta.shape)
        mu = family.inverse_link(eta)
        mu_eta = family.inverse_link_derivative(eta)
        first, second = family.log_likelihood_derivatives(self.y, mu, dispersion, self.weights)
        if family.canonical or fisher:
            information = -family.log_likelihood_derivatives(mu, mu, dispersion, self.weights)[1] * mu_eta**2
        else:
            h = LINK_STEP * np.maximum(1.0, np.abs(eta))
            mu_eta_eta = (family.inverse_link_derivative(eta + h) - family.inverse_link_derivative(eta - h)) / (2.0 * h)
            information = -(second * mu_eta**2 + first * mu_eta_eta)
        return first * mu_eta, information

    def information_slope(self, eta: np.ndarray, dispersion: float | None) -> np.ndarray:
        """∂W_i/∂η_i, the derivative of the observed information, by central differences of
        :meth:`working` (smooth in η; relative error about 1e-9)."""
        h = LINK_STEP * np.maximum(1.0, np.abs(eta))
        return (self.working(eta + h, dispersion)[1] - self.working(eta - h, dispersion)[1]) / (2.0 * h)

    def dispersion_slopes(self, eta: np.ndarray, dispersion: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """∂/∂log φ of ℓ_i, ∂ℓ_i/∂η_i and W_i at η, by central differences in log φ."""
        up, down = dispersion * np.exp(LINK_STEP), dispersion * np.exp(-LINK_STEP)
        loglik = (self.log_likelihood(eta, up) - self.log_likelihood(eta, down)) / (2.0 * LINK_STEP)
        (score_up, info_up), (score_down, info_down) = self.working(eta, up), self.working(eta, down)
        return loglik, (score_up - score_down) / (2.0 * LINK_STEP), (info_up - info_down) / (2.0 * LINK_STEP)

    def level_sums(self, values: np.ndarray) -> list[np.ndarray]:
        """Z'v per factor block, each of shape (levels, q): Σ over a level's rows of v_i z_i."""
        return [level_sums(block.codes, values, block.z, block.n_levels) for block in self.structure.blocks]


@dataclass(frozen=True, eq=False)
class PirlsMode:
    """The conditional mode at one (θ, β, φ) and the Laplace deviance there.

    Attributes
    ----------
    theta, beta, dispersion
        Where it was computed (β the jointly updated one when PIRLS was given none).
    u
        Conditional modes of the spherical effects, flat: the first factor block level-major,
        then the others as :class:`~bayesmix.linalg.factorization.RestLambda` orders them.
    eta
        Linear predictor at the mode, offset included.
    factorization
        The blocked Cholesky factor of the weighted problem at the mode (its ``logdet_z`` is
        log|Λ'Z'WZΛ + I|; with joint β its R_X gives lme4's ``use.hessian = FALSE`` covariance).
    log_likelihood
        Σ ℓ_i(η̂).
    iterations
        PIRLS steps taken.
    converged
        Whether the step fell below the tolerance within ``MAX_STEPS``.
    level_products
        For a mode of :func:`level_pirls`, per level Σ W_i z_i z_i' (levels, q, q),
        Σ W_i z_i x_i' (levels, q, p) and Σ ℓ'_i z_i (levels, q) at the mode, from which the
        next solve at nearby parameters predicts its start; None otherwise.
    """

    theta: np.ndarray
    beta: np.ndarray
    dispersion: float | None
    u: np.ndarray
    eta: np.ndarray
    factorization: Factorization
    log_likelihood: float
    iterations: int
    converged: bool
    level_products: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @property
    def penalised_deviance(self) -> float:
        """g(û) = -2 Σ ℓ_i + |û|²."""
        return -2.0 * self.log_likelihood + float(self.u @ self.u)

    @property
    def laplace_deviance(self) -> float:
        """The Laplace approximation to -2 log L: g(û) + log|Λ'Z'WZΛ + I|."""
        return self.penalised_deviance + self.factorization.logdet_z


def pirls(
    rows: GlmmRows,
    theta: np.ndarray,
    beta: np.ndarray | None = None,
    dispersion: float | None = None,
    u: np.ndarray | None = None,
    joint: bool = False,
    fallback: np.ndarray | None = None,
) -> PirlsMode:
    """The conditional mode û (and β̂ with it when ``beta`` is None) at θ, by PIRLS.

    Parameters
    ----------
    rows
        The data.
    theta
        Relative covariance parameters (:class:`~bayesmix.data.layout.Structure` order).
    beta
        Fixed effects (the start of β when ``joint``); None to update β jointly with u,
        starting from the family's initial μ.
    dispersion
        The family's dispersion (φ for the negative binomial, σ for the Gaussian; None for
        families without one).
    u
        Starting value of u (a nearby mode speeds convergence); zero by default.
    joint
        Update β jointly with u (always so when ``beta`` is None).
    fallback
        A second starting value of u (with ``beta`` given): PIRLS starts from whichever of
        ``u`` and ``fallback`` has the lower penalised deviance (a predicted mode,
        :func:`predicted_modes`, and the mode it was predicted from).

    Returns
    -------
    PirlsMode
        The mode and the factor at it. Raises numpy's LinAlgError when the weighted problem
        has no Cholesky factor (non-positive weights or a rank-deficient X).
    """
    theta = np.asarray(theta, dtype=float)
    joint = joint or beta is None
    X = rows.X if joint else rows.X[:, :0]
    u = np.zeros(rows.n_effects) if u is None else np.array(u, dtype=float)
    if beta is None:
        family = rows.family
        beta = np.zeros(rows.p)
        eta = family.link_function(family.initial_mu(rows.y, rows.weights))
        g = np.inf  # the start is no (β, u): its first step is taken whole, as lme4 does
    else:
        beta = np.array(beta, dtype=float)
        fixed = rows.offset + rows.X @ beta
        eta = fixed + rows.random_predictor(theta, u)
        g = -2.0 * rows.log_likelihood(eta, dispersion).sum() + u @ u
        if fallback is not None:
            other_eta = fixed + rows.random_predictor(theta, fallback)
            other_g = -2.0 * rows.log_likelihood(other_eta, dispersion).sum() + fallback @ fallback
            if not other_g >= g:  # also when g is not a number
                u, eta, g = np.array(fallback, dtype=float), other_eta, other_g
    steps, converged = 0, False
    while True:
        first, information = rows.working(eta, dispersion)
        base = eta - rows.offset if joint else eta - fixed
        try:
            f = factorize(rows.structure, rows.plan.products(X, base + first / information, information), theta)
        except np.linalg.LinAlgError:
            if converged or steps == MAX_STEPS:  # no mode with a positive definite Hessian
                raise
            f = None
        if converged or steps == MAX_STEPS:
            break
        step = f
        if step is None:  # the observed information is not positive definite here: a Fisher-scoring step
            fisher = rows.working(eta, dispersion, fisher=True)[1]
            step = factorize(rows.structure, rows.plan.products(X, base + first / fisher, fisher), theta)
        u1, u2 = step.spherical_modes()
        new_u = u1.ravel() if u2 is None else np.concatenate([u1.ravel(), u2])
        new_beta = step.beta if joint else beta
        step_u, step_beta = new_u - u, new_beta - beta
        scale = 1.0
        for _ in range(MAX_HALVINGS):
            trial_u, trial_beta = u + scale * step_u, beta + scale * step_beta
            trial_fixed = rows.offset + rows.X @ trial_beta if joint else fixed
            trial_eta = trial_fixed + rows.random_predictor(theta, trial_u)
            trial_g = -2.0 * rows.log_likelihood(trial_eta, dispersion).sum() + trial_u @ trial_u
            if trial_g <= g:
                break
            scale *= 0.5
        else:  # no decrease at all: the mode is as exact as rounding allows
            converged = True
            continue
        steps += 1
        size = max(_relative(step_u, u), _relative(step_beta, beta)) * scale
        u, beta, eta, g = trial_u, trial_beta, trial_eta, trial_g
        # a full Newton step of size s leaves an error of order s² (quadratic convergence)
        converged = size < STEP_TOL or (scale == 1.0 and size < NEWTON_TOL)
    loglik = float(rows.log_likelihood(eta, dispersion).sum()) if np.isinf(g) else -0.5 * (g - u @ u)
    return PirlsMode(theta, beta, dispersion, u, eta, f, loglik, steps, converged)


def level_pirls(rows: GlmmRows, theta: np.ndarray, beta: np.ndarray, dispersion: float | None,
                u: np.ndarray | None = None, near: PirlsMode | None = None) -> PirlsMode:
    """The conditional mode û at (θ, β, φ) of a model with one grouping factor, level by level
    (:func:`~bayesmix.linalg.levelwise.level_modes`): the mode of :func:`pirls` with β given,
    in one compiled call.

    Parameters
    ----------
    rows
        The data (one factor block).
    theta, beta, dispersion
        As for :func:`pirls` (β required).
    u
        Starting value of u (a nearby mode); zero by default. A level whose start leads to no
        mode starts again from zero.
    near
        Instead of ``u``, a mode of :func:`level_pirls` at nearby parameters: each level starts
        from that mode corrected to first order for the change of Λ and β (from the mode's
        :attr:`~PirlsMode.level_products`, without a pass over the rows;
        :func:`~bayesmix.linalg.levelwise.level_modes`).

    Returns
    -------
    PirlsMode
        The mode, with the factor at it (the per-level blocks of L_Z and the working response's
        column, as :func:`~bayesmix.linalg.factorization.factorize` makes them with β given);
        ``iterations`` is the most Newton steps any level took. Raises numpy's LinAlgError when
        some level has no positive definite M_j.
    """
    block = rows.structure.blocks[0]
    level_rows, family = rows.level_rows, rows.family
    theta, beta = np.asarray(theta, dtype=float), np.asarray(beta, dtype=float)
    T = block.lambda_(theta)
    shape = (block.n_levels, block.q)
    predict = near is not None and near.level_products is not None
    if predict:
        start, T0, beta0 = near.u.reshape(shape), block.lambda_(near.theta), np.asarray(near.beta, dtype=float)
        A0, B0, s0 = near.level_products
    else:
        start = np.zeros(shape) if u is None else np.array(u, dtype=float).reshape(shape)
        T0, beta0, A0, B0, s0 = T, beta, np.zeros((1, 1, 1)), np.zeros((1, 1, 1)), np.zeros((1, 1))
    ok, modes, eta, loglik, logdet, Linv, Wy, schur, A, B, s, steps, converged = level_modes(
        family.code, family.link_code, family.canonical, level_rows.starts, level_rows.X, level_rows.y, level_rows.weights,
        level_rows.offset, level_rows.z, level_rows.order, level_rows.constants, T, beta,
        np.nan if dispersion is None else dispersion, start, predict, T0, beta0, A0, B0, s0,
        MAX_STEPS, MAX_HALVINGS, STEP_TOL, NEWTON_TOL, LINK_STEP,
    )
    if not ok:
        raise np.linalg.LinAlgError("PIRLS found no mode with a positive definite Hessian")
    R = np.array([[np.sqrt(schur) if schur >= 0.0 else np.nan]])  # as schur_factor with no X
    f = Factorization(theta, T, Linv, Wy[:, :, None], R, float(logdet))
    return PirlsMode(theta, beta, dispersion, modes.ravel(), eta, f, float(loglik), int(steps), bool(converged), (A, B, s))


def level_laplace_gradient(rows: GlmmRows, mode: PirlsMode) -> LaplaceGradient:
    """:func:`laplace_gradient` for a model with one grouping factor, level by level in one
    compiled call (:func:`~bayesmix.linalg.levelwise.level_gradient`)."""
    block = rows.structure.blocks[0]
    level_rows, family = rows.level_rows, rows.family
    dispersion = mode.dispersion
    G, grad_beta, grad_dispersion = level_gradient(
        family.code, family.link_code, family.canonical, family.has_dispersion, level_rows.starts, level_rows.X, level_rows.y,
        level_rows.weights, level_rows.offset, level_rows.z, block.lambda_(mode.theta), np.asarray(mode.beta, dtype=float),
        np.nan if dispersion is None else dispersion, mode.u.reshape(block.n_levels, block.q), LINK_STEP,
    )
    return LaplaceGradient(G[block.theta_rows, block.theta_cols], grad_beta,
                           float(grad_dispersion) if family.has_dispersion else None)


def blocked_pirls(rows: GlmmRows, theta: np.ndarray, beta: np.ndarray, dispersion: float | None,
                  u: np.ndarray | None = None, near: PirlsMode | None = None) -> PirlsMode:
    """The conditional mode û at (θ, β, φ) of a model with several grouping factors, in one
    compiled call (:func:`~bayesmix.linalg.blockwise.blocked_modes`): the mode of :func:`pirls`
    with β given.

    Parameters
    ----------
    rows
        The data (several factor blocks).
    theta, beta, dispersion
        As for :func:`pirls` (β required).
    u
        Starting value of u; zero by default. Where it leads to no mode, PIRLS starts again
        from zero.
    near
        Instead of ``u``, a mode at nearby parameters (of this function or of :func:`pirls`):
        PIRLS starts from that mode corrected to first order for the change of the parameters
        by one chord step with its factor (:func:`predicted_modes`), or from that mode itself
        where its penalised deviance is lower.

    Returns
    -------
    PirlsMode
        The mode, with the blocked factor at it (as :func:`~bayesmix.linalg.factorization.factorize`
        makes it from the weighted cross-products with β given). Raises numpy's LinAlgError when
        PIRLS reaches no positive definite M.
    """
    structure, blocked, family = rows.structure, rows.blocked_rows, rows.family
    theta, beta = np.asarray(theta, dtype=float), np.asarray(beta, dtype=float)
    first = structure.blocks[0]
    T1, rest = first.lambda_(theta), blocked.rest(structure, theta)
    scalar = all(block.q == 1 for block in structure.blocks[1:])
    if near is not None:
        f0 = near.factorization
        start, predict = near.u, True
        T1_0, rest_0, A21_0, L11inv_0, L22_0 = f0.lambda1, blocked.rest(structure, f0.theta), f0.A21_levels[2], f0.L11inv, f0.L22
    else:
        start = np.zeros(rows.n_effects) if u is None else np.asarray(u, dtype=float)
        predict, T1_0, rest_0, L22_0 = False, T1, rest, np.zeros((0, 0))
        A21_0, L11inv_0 = np.zeros((len(blocked.pair_rows), first.q)), np.zeros((first.n_levels, first.q, first.q))
    ok, modes, eta, loglik, logdet, L11inv, L22, A21, w1, w2, schur, steps, converged = blocked_modes(
        family.code, family.link_code, family.canonical, blocked.data(), T1, rest, scalar, beta,
        np.nan if dispersion is None else dispersion, np.ascontiguousarray(start, dtype=float), predict, T1_0, rest_0, A21_0,
        L11inv_0, L22_0, MAX_STEPS, MAX_HALVINGS, STEP_TOL, NEWTON_TOL, LINK_STEP, blocked.constant,
    )
    if not ok:
        raise np.linalg.LinAlgError("PIRLS found no mode with a positive definite Hessian")
    A21_sparse, A21_levels = rows.plan.pattern.blocks(A21)
    R = np.array([[np.sqrt(schur) if schur >= 0.0 else np.nan]])  # as _schur_factor with no X
    f = Factorization(theta, T1, L11inv, w1[:, :, None], R, float(logdet), RestLambda(structure.blocks[1:], theta),
                      A21_sparse, L22, w2[:, None], A21_levels=A21_levels)
    return PirlsMode(theta, beta, dispersion, modes, eta, f, float(loglik), int(steps), bool(converged))


def blocked_laplace_gradient(rows: GlmmRows, mode: PirlsMode) -> LaplaceGradient:
    """:func:`laplace_gradient` for a model with several grouping factors, in one compiled call
    (:func:`~bayesmix.linalg.blockwise.blocked_gradient`) given the selected inverse of M at the
    mode."""
    structure, blocked, family, f = rows.structure, rows.blocked_rows, rows.family, mode.factorization
    dispersion = mode.dispersion
    P11, P21, P22 = f.selected_inverse
    G1, G2, grad_beta, grad_dispersion = blocked_gradient(
        family.code, family.link_code, family.canonical, family.has_dispersion, blocked.data(), f.lambda1,
        blocked.rest(structure, mode.theta), np.asarray(mode.beta, dtype=float), np.nan if dispersion is None else dispersion,
        mode.u, f.L11inv, f.L22, f.A21_levels[2], P11, P21, P22, LINK_STEP,
    )
    grad_theta = np.zeros(structure.n_theta)
    for block, G in zip(structure.blocks, [G1, *G2]):
        grad_theta[block.theta_offset : block.theta_offset + block.n_theta] = G[block.theta_rows, block.theta_cols]
    return LaplaceGradient(grad_theta, grad_beta, float(grad_dispersion) if family.has_dispersion else None)


class WarmModes:
    """PIRLS modes at a sequence of nearby parameters (an optimiser's or a sampler's path), and
    the gradient of the Laplace deviance at them: the one home of the deviance evaluations of
    the ML fit (:mod:`bayesmix.reml.laplace`) and of ``method="laplace"``
    (:mod:`bayesmix.bayes.embedded_laplace`).

    Three paths, by the design (families with compiled functions for one observation take the
    compiled ones):

    - ``"levelwise"``, one grouping factor (:attr:`GlmmRows.levelwise`): each solve is
      :func:`level_pirls` from the last accepted mode corrected to first order for the change
      of the parameters, or from its u where that mode is not one of :func:`level_pirls` (the
      ML fit's first, with β updated jointly), and the gradient :func:`level_laplace_gradient`;
    - ``"blocked"``, several grouping factors (:attr:`GlmmRows.blocked`): each solve is
      :func:`blocked_pirls` from the last accepted mode's chord-step prediction (or that mode,
      or zero), and the gradient :func:`blocked_laplace_gradient`;
    - ``"general"``, otherwise: each solve is :func:`pirls` started from the last accepted
      mode corrected to first order for the change of the parameters (:func:`predicted_modes`),
      or from u = 0 where that start leads PIRLS astray (no factor, or no finite deviance: far
      from the last point, with a log link), and the gradient :func:`laplace_gradient`.

    Parameters
    ----------
    rows
        The data.
    compiled
        Use a compiled path where one applies (False: the general path always, as a reference).

    Attributes
    ----------
    rows
        The data.
    path
        ``"levelwise"``, ``"blocked"`` or ``"general"``.
    mode
        The last accepted mode (None before the first): the start of the next solve.
    evaluations, iterations, all_converged
        Solves so far, PIRLS steps they took, and whether every one converged.
    """

    def __init__(self, rows: GlmmRows, compiled: bool = True):
        self.rows = rows
        self.path = "levelwise" if compiled and rows.levelwise else "blocked" if compiled and rows.blocked else "general"
        self.mode: PirlsMode | None = None
        self.evaluations = 0
        self.iterations = 0
        self.all_converged = True

    def solve(self, theta: np.ndarray, beta: np.ndarray, dispersion: float | None) -> PirlsMode:
        """The mode at (θ, β, φ), not yet accepted. Raises numpy's LinAlgError when no start
        gives the weighted problem a Cholesky factor."""
        if self.path == "levelwise":
            mode = level_pirls(self.rows, theta, beta, dispersion, None if self.mode is None else self.mode.u, self.mode)
        elif self.path == "blocked":
            mode = blocked_pirls(self.rows, theta, beta, dispersion, near=self.mode)
        else:
            mode = self._general(theta, beta, dispersion)
        self.evaluations += 1
        self.iterations += mode.iterations
        self.all_converged &= mode.converged
        return mode

    def gradient(self, mode: PirlsMode) -> LaplaceGradient:
        """The gradient of the Laplace deviance at a mode :meth:`solve` returned."""
        if self.path == "levelwise":
            return level_laplace_gradient(self.rows, mode)
        if self.path == "blocked":
            return blocked_laplace_gradient(self.rows, mode)
        return laplace_gradient(self.rows, mode)

    def _general(self, theta: np.ndarray, beta: np.ndarray, dispersion: float | None) -> PirlsMode:
        rows = self.rows
        try:
            if self.mode is None:
                mode = pirls(rows, theta, beta, dispersion)
            else:
                start = predicted_modes(rows, self.mode, theta, beta, dispersion)
                mode = pirls(rows, theta, beta, dispersion, start, fallback=self.mode.u)
        except np.linalg.LinAlgError:
            mode = None
        if self.mode is not None and (mode is None or not np.isfinite(mode.laplace_deviance)):
            mode = pirls(rows, theta, beta, dispersion)
        if mode is None:
            raise np.linalg.LinAlgError("PIRLS found no mode with a positive definite Hessian")
        return mode


def predicted_modes(rows: GlmmRows, mode: PirlsMode, theta: np.ndarray, beta: np.ndarray, dispersion: float | None) -> np.ndarray:
    """A start for PIRLS at (θ, β, φ) from the mode at nearby parameters: û there, corrected to
    first order in the change of the parameters.

    PIRLS solves ∂g/∂u / 2 = u - Λ'Z'ℓ'(η(u)) = 0. One chord step from the old mode û₀, with
    the factor of M₀ = Λ₀'Z'W₀ZΛ₀ + I already at hand and Λ, η at the new parameters,

        u = û₀ - M₀⁻¹ (û₀ - Λ'Z'ℓ'(η(û₀))),

    has an error of order |Δψ|² where û₀ itself has one of order |Δψ| (it is the prediction
    û₀ + (dû/dψ) Δψ of the implicit-function theorem, up to second order), so PIRLS needs about
    one Newton step less; it costs one pass over the rows and a solve, no new factor.
    """
    eta = rows.offset + rows.X @ beta + rows.random_predictor(theta, mode.u)
    score = rows.working(eta, dispersion)[0]
    blocks = rows.structure.blocks
    gradient = [s @ block.lambda_(theta) - u for s, block, u in zip(rows.level_sums(score), blocks, rows.structure.per_block(mode.u))]
    d1, d2 = mode.factorization.solve(gradient[0], None if len(blocks) == 1 else np.concatenate([g.ravel() for g in gradient[1:]]))
    step = d1.ravel() if d2 is None else np.concatenate([d1.ravel(), d2])
    return mode.u + step


def _relative(step: np.ndarray, x: np.ndarray) -> float:
    """Largest |step| relative to 1 + |x|."""
    return float(np.max(np.abs(step) / (1.0 + np.abs(x)), initial=0.0))


def agq_deviance(rows: GlmmRows, mode: PirlsMode, nodes: int) -> float:
    """-2 log L by adaptive Gauss-Hermite quadrature with ``nodes`` points per level.

    For a single scalar random-effect term the integral over u factorises by level j: with
    h_j(u_j) = Σ_{i in j} ℓ_i - u_j²/2, mode û_j and conditional SD s_j = (−h_j''(û_j))^{-1/2},

        L_j = (2π)^{-1/2} ∫ exp(h_j(u)) du ≈ s_j Σ_k (w_k/√(2π)) exp(h_j(û_j + s_j t_k) + t_k²/2)

    with the probabilists' Hermite nodes t_k and weights w_k. One node gives the Laplace
    deviance. ``mode`` must be a PIRLS mode of ``rows`` (with β given or jointly updated).
    """
    blocks = rows.structure.blocks
    if len(blocks) != 1 or blocks[0].q != 1:
        raise ArgumentError(
            f"Adaptive Gauss-Hermite quadrature (nagq > 1) needs a single scalar random-effect term such as (1 | g); "
            f"this model has {sum(b.q for b in blocks)} random effects per level over {len(blocks)} grouping factor(s). Use nagq=1 (Laplace)."
        )
    sd = mode.factorization.L11inv[:, 0, 0]  # 1 / sqrt(1 + λ² Σ W_i z_i²) per level
    H = _quadrature_terms(rows, mode, nodes, sd)[3]
    top = H.max(axis=1)
    log_levels = np.log(sd) + top + np.log(np.exp(H - top[:, None]).sum(axis=1))
    return float(-2.0 * log_levels.sum())


def _quadrature_terms(rows: GlmmRows, mode: PirlsMode, nodes: int, sd: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The nodes t_k, ũ_jk = û_j + s_j t_k (nodes, levels), η_ik (nodes, n) and
    H_jk = h_j(ũ_jk) + t_k²/2 + log(w_k/√(2π)) (levels, nodes) of adaptive quadrature."""
    block = rows.structure.blocks[0]
    t, w = np.polynomial.hermite_e.hermegauss(nodes)
    lam = block.lambda_(mode.theta)[0, 0]
    node_u = mode.u[None, :] + t[:, None] * sd[None, :]
    node_eta = mode.eta[None, :] + (block.z[:, 0] * lam * sd[block.codes])[None, :] * t[:, None]
    loglik = _level_rows(block.codes, rows.log_likelihood(node_eta, mode.dispersion), block.n_levels)
    H = (loglik - node_u**2 / 2.0 + (np.log(w / np.sqrt(2.0 * np.pi)) + t**2 / 2.0)[:, None]).T
    return t, node_u, node_eta, H


def _level_rows(codes: np.ndarray, values: np.ndarray, levels: int) -> np.ndarray:
    """Per-level sums of each row of ``values`` (rows, n): shape (rows, levels)."""
    rows = values.shape[0]
    index = (np.arange(rows)[:, None] * levels + codes[None, :]).ravel()
    return np.bincount(index, weights=values.ravel(), minlength=rows * levels).reshape(rows, levels)


@dataclass(frozen=True, eq=False)
class LaplaceGradient:
    """The gradient of the Laplace deviance d(θ, β, φ) at a PIRLS mode.

    Attributes
    ----------
    theta
        ∂d/∂θ (:class:`~bayesmix.data.layout.Structure` order).
    beta
        ∂d/∂β.
    log_dispersion
        ∂d/∂log φ (None for families without a dispersion).
    """

    theta: np.ndarray
    beta: np.ndarray
    log_dispersion: float | None


def laplace_gradient(rows: GlmmRows, mode: PirlsMode) -> LaplaceGradient:
    """The exact gradient of the Laplace deviance in (θ, β, log φ) at ``mode``.

    With A = ZΛ, M = A'WA + I = L L' and P = M⁻¹, the deviance is d = g(û) + log|M| with
    g(u) = -2 Σ ℓ_i(η_i) + |u|². û moves with the parameters ψ as dû/dψ = -(2M)⁻¹ ∂²g/∂u∂ψ
    (the implicit-function theorem at ∂g/∂u = 0), g's own dependence through û vanishes there,
    and log|M| depends on û through W(η̂). So (the adjoint method), with the leverages
    h_i = a_i'P a_i (a_i = Λ'z_i, row i of A), v_i = h_i ∂W_i/∂η_i, r = P A'v and
    e = -2ℓ' + v - W ∘ (A r):

        ∂d/∂β   = X'e,
        ∂d/∂θ_k = e'ZΛ_k û + r'Λ_k'Z'ℓ' + 2 Σ_i W_i z_i'Λ_k P a_i,      Λ_k = ∂Λ/∂θ_k,
        ∂d/∂φ   = -2 Σ ∂ℓ_i/∂φ + Σ h_i ∂W_i/∂φ + (A r)'∂ℓ'/∂φ.

    P a_i is needed only in the rows of P where row i of Z has entries, which the selected
    blocks of P (:attr:`~bayesmix.linalg.factorization.Factorization.inverse_blocks`) hold.
    W must be the exact second derivative -∂²ℓ/∂η² (:meth:`GlmmRows.working`), as it is.
    """
    theta, eta, dispersion = mode.theta, mode.eta, mode.dispersion
    f = mode.factorization
    blocks = rows.structure.blocks
    score, information = rows.working(eta, dispersion)
    templates = [block.lambda_(theta) for block in blocks]
    a = [block.z @ T for block, T in zip(blocks, templates)]  # rows of A per block: a_i = T'z_i
    Pa = _selected_products(rows, f, a)
    leverage = sum(np.einsum("ij,ij->i", ai, pai) for ai, pai in zip(a, Pa))
    v = leverage * rows.information_slope(eta, dispersion)
    c = [s @ T for s, T in zip(rows.level_sums(v), templates)]  # A'v per block
    r1, r2 = f.solve(c[0], None if len(blocks) == 1 else np.concatenate([ci.ravel() for ci in c[1:]]))
    r = r1.ravel() if r2 is None else np.concatenate([r1.ravel(), r2])
    Ar = rows.random_predictor(theta, r)
    e = -2.0 * score + v - information * Ar
    grad_theta = np.zeros(rows.structure.n_theta)
    e_sums, score_sums = rows.level_sums(e), rows.level_sums(score)
    u_blocks, r_blocks = rows.structure.per_block(mode.u), rows.structure.per_block(r)
    for k, block in enumerate(blocks):
        trace = (block.z * information[:, None]).T @ Pa[k]
        G = e_sums[k].T @ u_blocks[k] + score_sums[k].T @ r_blocks[k] + 2.0 * trace
        grad_theta[block.theta_offset : block.theta_offset + block.n_theta] = G[block.theta_rows, block.theta_cols]
    grad_dispersion = None
    if rows.family.has_dispersion:
        dl, dscore, dinfo = rows.dispersion_slopes(eta, dispersion)
        grad_dispersion = float(-2.0 * dl.sum() + leverage @ dinfo + Ar @ dscore)
    return LaplaceGradient(grad_theta, rows.X.T @ e, grad_dispersion)


def _selected_products(rows: GlmmRows, f: Factorization, a: list[np.ndarray]) -> list[np.ndarray]:
    """P a_i in the effects of row i, per factor block (n, q): the rows of P A' where Z has entries."""
    blocks = rows.structure.blocks
    P11, P21, P22 = f.inverse_blocks
    codes1 = blocks[0].codes
    first = level_matrix_products(codes1, P11, a[0])
    if P21 is None:
        return [first]
    plan = rows.plan
    columns = plan.rest_columns  # (n, r): row i's columns of the rest block
    a2 = np.hstack(a[1:])  # (n, r)
    q1 = blocks[0].q
    cross = P21.reshape(P21.shape[0], -1, q1)[columns, codes1[:, None]]  # (n, r, q1): P21 at row i's pairs
    first += np.einsum("nrk,nr->nk", cross, a2)
    rest = np.einsum("nrk,nk->nr", cross, a[0]) + np.einsum("nrs,ns->nr", P22[columns[:, :, None], columns[:, None, :]], a2)
    out, start = [first], 0
    for block in blocks[1:]:
        out.append(rest[:, start : start + block.q])
        start += block.q
    return out


def agq_gradient(rows: GlmmRows, mode: PirlsMode, nodes: int) -> LaplaceGradient:
    """The exact gradient of the quadrature deviance :func:`agq_deviance` in (θ, β, log φ).

    With a single scalar term (λ = θ), level j's nodes are ũ_jk = û_j + s_j t_k, at linear
    predictors η_ik = η̂_i + z_i λ s_j t_k, and d = -2 Σ_j [log s_j + log Σ_k exp H_jk] with
    H_jk = Σ_{i in j} ℓ_i(η_ik) - ũ_jk²/2 + log w̃_k. Both û_j and s_j = M_j^{-1/2}
    (M_j = 1 + λ² Σ W_i z_i²) move with the parameters ψ: from the stationarity of level j's
    penalised deviance, dû_j/dψ = s_j² [∂λ/∂ψ Σ z_i ℓ'_i - λ Σ W_i z_i (∂η_i/∂ψ + z_i ∂λ/∂ψ û_j)
    + λ Σ z_i ∂ℓ'_i/∂ψ], and ds_j/dψ = -s_j³/2 dM_j/dψ through λ and W(η̂); then

        ∂d/∂ψ = -2 Σ_j [ds_j/dψ / s_j + Σ_k π_jk dH_jk/dψ],   π_jk = softmax_k H_jk,

    dH_jk/dψ = Σ_i ℓ'_i(η_ik) dη_ik/dψ + Σ_i ∂ℓ_i(η_ik)/∂ψ - ũ_jk dũ_jk/dψ.
    """
    block = rows.structure.blocks[0]
    z, codes, levels = block.z[:, 0], block.codes, block.n_levels
    lam = block.lambda_(mode.theta)[0, 0]
    u, eta, dispersion = mode.u, mode.eta, mode.dispersion
    has_dispersion = dispersion is not None and rows.family.has_dispersion
    n, p = rows.X.shape
    m = 1 + p + int(has_dispersion)
    fixed = np.zeros((n, m))  # ∂(offset + Xβ)/∂ψ
    fixed[:, 1 : 1 + p] = rows.X
    dlam = np.zeros(m)
    dlam[0] = 1.0
    is_dispersion = np.zeros(m)
    if has_dispersion:
        is_dispersion[-1] = 1.0
        _, dscore, dinfo = rows.dispersion_slopes(eta, dispersion)
    else:
        dscore = dinfo = np.zeros(n)
    score, information = rows.working(eta, dispersion)
    slope = rows.information_slope(eta, dispersion)

    def per_level(values: np.ndarray) -> np.ndarray:  # (n, m) -> (levels, m)
        return np.stack([np.bincount(codes, weights=values[:, c], minlength=levels) for c in range(values.shape[1])], axis=1)

    zw = np.bincount(codes, weights=information * z * z, minlength=levels)
    s = 1.0 / np.sqrt(1.0 + lam * lam * zw)
    du = s[:, None] ** 2 * (
        dlam * np.bincount(codes, weights=z * score, minlength=levels)[:, None]
        - lam * per_level((information * z)[:, None] * (fixed + np.outer(z * u[codes], dlam)))
        + lam * np.outer(np.bincount(codes, weights=z * dscore, minlength=levels), is_dispersion)
    )
    deta_mode = fixed + np.outer(z * u[codes], dlam) + (z * lam)[:, None] * du[codes]
    dM = 2.0 * lam * zw[:, None] * dlam + lam * lam * per_level((z * z)[:, None] * (slope[:, None] * deta_mode + np.outer(dinfo, is_dispersion)))
    ds = -0.5 * s[:, None] ** 3 * dM
    t, node_u, node_eta, H = _quadrature_terms(rows, mode, nodes, s)
    dnode_u = du[None, :, :] + t[:, None, None] * ds[None, :, :]  # (nodes, levels, m)
    deta = fixed[None] + (z[None, :] * node_u[:, codes])[:, :, None] * dlam + (z * lam)[None, :, None] * dnode_u[:, codes, :]
    slopes = rows.working(node_eta, dispersion)[0][:, :, None] * deta  # (nodes, n, m)
    if has_dispersion:
        slopes[:, :, -1] += rows.dispersion_slopes(node_eta, dispersion)[0]
    dH = _level_rows(codes, np.moveaxis(slopes, 2, 1).reshape(nodes * m, n), levels).reshape(nodes, m, levels)
    dH = np.moveaxis(dH, 2, 0) - (node_u.T)[:, :, None] * np.moveaxis(dnode_u, 1, 0)  # (levels, nodes, m)
    pi = np.exp(H - H.max(axis=1, keepdims=True))
    pi /= pi.sum(axis=1, keepdims=True)
    grad = -2.0 * ((ds / s[:, None]).sum(axis=0) + np.einsum("jk,jkm->m", pi, dH))
    theta = np.zeros(rows.structure.n_theta)
    theta[0] = grad[0]
    return LaplaceGradient(theta, grad[1 : 1 + p], float(grad[-1]) if has_dispersion else None)
