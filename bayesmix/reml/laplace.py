"""Maximum likelihood for generalised linear mixed models: the Laplace approximation (lme4's
``glmer`` with ``nAGQ = 1``, glmmTMB) and adaptive Gauss-Hermite quadrature (``nAGQ > 1``).

The deviance d(θ, β, φ) of :mod:`bayesmix.linalg.pirls` (each evaluation a PIRLS solve for
the conditional modes, warm-started from the previous one) has an exact gradient
(:func:`~bayesmix.linalg.pirls.laplace_gradient`, :func:`~bayesmix.linalg.pirls.agq_gradient`,
by the implicit-function theorem at the mode), so it is minimised

1. over x = (θ̃, β, log φ) (θ̃ = θ * row_scale) by L-BFGS-B with that gradient, from lme4's
   starting θ with β from PIRLS updating β jointly with u there;
2. by Newton's method from there, starting from the Hessian of d by central differences of
   exact gradients (2 dim(x) evaluations) and updating it by BFGS, until the Newton
   decrement g'H⁻¹g (the predicted decrease of d) is below 1e-9. θ elements that the first
   stage left on (or within lme4's boundary tolerance of) their bound 0 stay there.

Newton's method ends where lme4's default fit does not: at the optimum, to about 1e-6 in the
parameters. The Hessian there (recomputed if Newton moved further than ``HESSIAN_MOVE``)
gives the covariance of the estimates, 2 H⁻¹ (as lme4's default ``use.hessian = TRUE`` and
glmmTMB's ``sdreport``); lme4's ``use.hessian = FALSE`` covariance, (R_X R_X')⁻¹ from the
weighted factor at the mode, which ignores the uncertainty in θ and the dependence of the
weights on β, is kept beside it. The fit runs on one BLAS thread
(:mod:`bayesmix.threads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.layout import Structure
from ..errors import ArgumentError, FitError
from ..families import Family
from ..linalg.factorization import conditional_covariances, effects
from ..linalg.pirls import GlmmRows, PirlsMode, WarmModes, agq_deviance, agq_gradient, pirls
from ..threads import one_blas_thread
from .optimize import BOUNDARY_TOL

STEP = 1e-3  # central-difference step of the Hessian, relative to max(1, |x|): the gradient is smooth and exact to ~1e-8
NEWTON_STEPS = 8  # chord/Newton iterations at most
DECREMENT_TOL = 1e-9  # Newton stops when the predicted decrease g'H⁻¹g of d = -2 log L is below this
HESSIAN_MOVE = 1e-4  # the Hessian is recomputed at the optimum when Newton moved further than this (relative)


@dataclass(frozen=True, eq=False)
class LaplaceFit:
    """A maximum-likelihood GLMM fit.

    Attributes
    ----------
    theta
        Relative covariance parameters (:class:`~bayesmix.data.layout.Structure` order); with
        u ~ N(0, I) and b = Λθ u they are on the scale of the linear predictor.
    beta
        Fixed effects.
    dispersion
        The family's dispersion (φ of the negative binomial, σ of the Gaussian), or None.
    covariances
        Per factor block, the (q, q) covariance ΛΛ' of one level's effects b.
    ranef
        Per factor block, the conditional modes b̂ = Λû, shape (levels, q).
    condvar
        Per factor block, the conditional covariances of b given the data at the estimates,
        Λ (L L')⁻¹ Λ' per level (lme4's ``condVar``), shape (levels, q, q).
    vcov_beta
        Covariance of β̂ from the Hessian of the deviance in (θ, β, log φ) (lme4's default).
    vcov_beta_conditional
        (R_X R_X')⁻¹ at the estimates: the covariance given θ (lme4's ``use.hessian = FALSE``).
    hessian
        Hessian of the deviance -2 log L in the free parameters (θ̃, β, log φ) at the optimum,
        by central differences; ``parameters`` names its rows.
    parameters
        Names of the free parameters in ``hessian`` order.
    log_dispersion_se
        Standard error of log φ (None without a dispersion).
    log_likelihood
        The maximised log-likelihood (Laplace or quadrature), with all normalising constants.
    n_obs, n_params
        Observations, and parameters counted as lme4 does (θ, β and a dispersion).
    nagq
        Quadrature points per level (1: the Laplace approximation).
    evaluations
        Deviance evaluations (each one PIRLS solve).
    pirls_iterations
        PIRLS steps over all evaluations.
    converged
        Whether the final gradient met the tolerance and every PIRLS solve converged.
    message
        How the optimisation ended.
    boundary
        Names of θ elements held at their bound 0.
    mode
        The PIRLS solve at the estimates.
    """

    theta: np.ndarray
    beta: np.ndarray
    dispersion: float | None
    covariances: tuple[np.ndarray, ...]
    ranef: tuple[np.ndarray, ...]
    condvar: tuple[np.ndarray, ...]
    vcov_beta: np.ndarray
    vcov_beta_conditional: np.ndarray
    hessian: np.ndarray
    parameters: tuple[str, ...]
    log_dispersion_se: float | None
    log_likelihood: float
    n_obs: int
    n_params: int
    nagq: int
    evaluations: int
    pirls_iterations: int
    converged: bool
    message: str
    boundary: tuple[str, ...]
    mode: PirlsMode

    @property
    def deviance(self) -> float:
        """-2 log L (the ``deviance`` column of lme4's summary)."""
        return -2.0 * self.log_likelihood

    @property
    def aic(self) -> float:
        """Akaike's information criterion."""
        return self.deviance + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """Schwarz's Bayesian information criterion."""
        return self.deviance + np.log(self.n_obs) * self.n_params

    @property
    def se_beta(self) -> np.ndarray:
        """Standard errors of β̂ (from :attr:`vcov_beta`)."""
        return np.sqrt(np.diag(self.vcov_beta))

    @property
    def sds(self) -> tuple[np.ndarray, ...]:
        """Per factor block, the SDs of one level's effects (square roots of the covariances' diagonals)."""
        return tuple(np.sqrt(np.diag(c)) for c in self.covariances)

    @property
    def correlations(self) -> tuple[np.ndarray, ...]:
        """Per factor block, the correlation matrix of one level's effects (NaN where an SD is 0)."""
        out = []
        for c in self.covariances:
            sd = np.sqrt(np.diag(c))
            with np.errstate(invalid="ignore", divide="ignore"):
                out.append(c / np.outer(sd, sd))
        return tuple(out)


class LaplaceDeviance:
    """d(x) and its gradient for the free parameters x = (θ̃, β, log φ), warm-starting PIRLS
    from the last mode (:class:`~bayesmix.linalg.pirls.WarmModes`, whose accepted mode is
    the last one with a finite deviance)."""

    def __init__(self, rows: GlmmRows, nagq: int, free_theta: np.ndarray, theta_fixed: np.ndarray):
        self.rows = rows
        self.nagq = nagq
        self.scale = rows.structure.row_scale
        self.free_theta = free_theta
        self.theta_fixed = theta_fixed
        self.has_dispersion = rows.family.has_dispersion
        self.modes = WarmModes(rows)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, float | None]:
        """θ, β and φ from x."""
        k = int(self.free_theta.sum())
        theta = self.theta_fixed.copy()
        theta[self.free_theta] = x[:k] / self.scale[self.free_theta]
        p = self.rows.p
        dispersion = float(np.exp(x[k + p])) if self.has_dispersion else None
        return theta, x[k : k + p], dispersion

    def solve(self, x: np.ndarray) -> PirlsMode:
        """The PIRLS mode at x, warm-started (:class:`~bayesmix.linalg.pirls.WarmModes`)."""
        return self.modes.solve(*self.split(np.asarray(x, dtype=float)))

    def __call__(self, x: np.ndarray) -> float:
        """d(x) (inf where PIRLS has no factor or the deviance is not finite)."""
        try:
            mode = self.solve(x)
        except np.linalg.LinAlgError:
            return np.inf
        value = mode.laplace_deviance if self.nagq == 1 else agq_deviance(self.rows, mode, self.nagq)
        if not np.isfinite(value):
            return np.inf
        self.modes.mode = mode
        return value

    def with_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """d(x) and its exact gradient (:meth:`~bayesmix.linalg.pirls.WarmModes.gradient`, :func:`agq_gradient`)."""
        try:
            mode = self.solve(x)
        except np.linalg.LinAlgError:
            return np.inf, np.zeros_like(x)
        value = mode.laplace_deviance if self.nagq == 1 else agq_deviance(self.rows, mode, self.nagq)
        if not np.isfinite(value):
            return np.inf, np.zeros_like(x)
        self.modes.mode = mode
        grad = self.modes.gradient(mode) if self.nagq == 1 else agq_gradient(self.rows, mode, self.nagq)
        parts = [grad.theta[self.free_theta] / self.scale[self.free_theta], grad.beta]
        if self.has_dispersion:
            parts.append([grad.log_dispersion])
        return value, np.concatenate(parts)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The Hessian of d at x by central differences of exact gradients (2 len(x) evaluations)."""
        h = _steps(x)
        columns = []
        for j in range(len(x)):
            e = np.zeros_like(x)
            e[j] = h[j]
            columns.append((self.with_gradient(x + e)[1] - self.with_gradient(x - e)[1]) / (2.0 * h[j]))
        hess = np.array(columns)
        return (hess + hess.T) / 2.0


def fit_laplace(
    structure: Structure,
    X: np.ndarray,
    y: np.ndarray,
    weights: np.ndarray | None,
    offset: np.ndarray | None,
    family: Family,
    nagq: int = 1,
) -> LaplaceFit:
    """Fit a GLMM by maximum likelihood: Laplace (``nagq=1``) or adaptive Gauss-Hermite quadrature.

    Parameters
    ----------
    structure
        The random-effects layout with the rows' codes and z
        (:func:`~bayesmix.data.layout.structure_of` of the design).
    X
        Fixed-effects model matrix (n, p), full column rank.
    y
        The response as the family reads it (a proportion of successes for the binomial, with
        the trials as ``weights``; counts for Poisson and negative binomial).
    weights
        Prior weights (n,); None for ones.
    offset
        Offset of the linear predictor (n,); None for zeros.
    family
        The response family.
    nagq
        Quadrature points per level: 1 for the Laplace approximation; more (up to 100) only
        with a single scalar random-effect term, as lme4 allows.

    Returns
    -------
    LaplaceFit

    Raises
    ------
    ArgumentError
        For ``nagq`` not a positive integer up to 100, or ``nagq > 1`` with more than one
        random effect per observation.
    FitError
        When no finite deviance is found at the start or at the optimum.
    """
    if isinstance(nagq, bool) or not isinstance(nagq, (int, np.integer)) or not 1 <= nagq <= 100:
        raise ArgumentError(f"nagq must be an integer from 1 (Laplace) to 100, not {nagq!r}.")
    rows = GlmmRows.of(structure, X, y, weights, offset, family)
    if nagq > 1 and (len(structure.blocks) != 1 or structure.blocks[0].q != 1):
        raise ArgumentError(
            f"nagq={nagq} (adaptive Gauss-Hermite quadrature) needs a single scalar random-effect term such as (1 | g), "
            "as in lme4; use nagq=1 (the Laplace approximation) for this model."
        )
    with one_blas_thread():
        return _fit(rows, nagq)


def _fit(rows: GlmmRows, nagq: int) -> LaplaceFit:
    """:func:`fit_laplace` on its checked data."""
    from scipy.optimize import minimize  # imported on the first fit, not on import

    structure, family = rows.structure, rows.family
    scale = structure.row_scale
    k = structure.n_theta
    theta0 = structure.initial_theta() / scale  # identity templates for the columns scaled to unit size, as REML
    # the start: β jointly with u at that θ, the dispersion where the family starts it
    dispersion0 = family.initial_dispersion(rows.y, family.initial_mu(rows.y, rows.weights), rows.weights)
    try:
        start_mode = pirls(rows, theta0, None, dispersion0, joint=True)
    except np.linalg.LinAlgError:
        start_mode = None
    if start_mode is None or not np.isfinite(start_mode.laplace_deviance):
        raise FitError(f"The GLMM deviance is not finite at the starting θ {theta0.tolist()}; check the response and offset.", None)
    if family.has_dispersion:  # again, from the means of the first mode
        dispersion0 = family.initial_dispersion(rows.y, family.inverse_link(start_mode.eta), rows.weights)
    start = np.concatenate([theta0 * scale, start_mode.beta, np.log([dispersion0] * family.has_dispersion)])
    stage1 = LaplaceDeviance(rows, nagq, np.ones(k, dtype=bool), np.zeros(k))
    stage1.modes.mode = start_mode
    bounds = [(lo if np.isfinite(lo) else None, None) for lo in structure.lower] + [(None, None)] * (rows.p + family.has_dispersion)
    # stage 1: quasi-Newton with the exact gradient
    result = minimize(stage1.with_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
                      options={"ftol": 1e-12, "gtol": 1e-7, "maxiter": 1000})
    x1 = np.asarray(result.x, dtype=float)
    # θ elements on (or within the boundary tolerance of) 0 are held there
    diagonal = structure.diagonal()
    on_bound = diagonal & (x1[:k] < BOUNDARY_TOL)
    free = ~on_bound
    deviance = LaplaceDeviance(rows, nagq, free, np.where(on_bound, 0.0, x1[:k] / scale))
    deviance.modes = stage1.modes
    x = np.concatenate([x1[:k][free], x1[k:]])
    names = [n for n, f in zip(structure.names, free) if f] + [f"beta[{j}]" for j in range(rows.p)]
    names += ["log_dispersion"] * family.has_dispersion
    # stage 2: Newton steps in all free parameters from the Hessian there (updated by BFGS)
    value, grad = deviance.with_gradient(x)
    hess = model_hessian = deviance.hessian(x)
    x_hessian = x
    message, converged = "Newton iterations exhausted", False
    for _ in range(NEWTON_STEPS):
        step = _newton_step(model_hessian, grad)
        if -(grad @ step) < DECREMENT_TOL:
            message, converged = "Newton decrement below tolerance", True
            break
        t = 1.0
        while t > 1e-4:
            trial = x + t * step
            if _feasible(trial, free, diagonal):
                trial_value, new_grad = deviance.with_gradient(trial)
                if trial_value <= value:
                    break
            t *= 0.5
        else:
            message = "no decrease along the Newton direction"
            break
        model_hessian = _bfgs_update(model_hessian, trial - x, new_grad - grad)
        x, value, grad = trial, trial_value, new_grad
    if np.max(np.abs(x - x_hessian) / np.maximum(1.0, np.abs(x))) > HESSIAN_MOVE:  # the covariance needs the Hessian at the optimum
        hess = deviance.hessian(x)
    theta, beta, dispersion = deviance.split(x)
    covariance = 2.0 * np.linalg.inv(hess)
    k_free = int(free.sum())
    return LaplaceFit(
        **at_estimates(rows, theta, beta, dispersion, nagq, deviance.modes.mode.u),
        vcov_beta=covariance[k_free : k_free + rows.p, k_free : k_free + rows.p],
        hessian=hess,
        parameters=tuple(names),
        log_dispersion_se=float(np.sqrt(covariance[-1, -1])) if family.has_dispersion else None,
        nagq=nagq,
        evaluations=deviance.modes.evaluations,
        pirls_iterations=deviance.modes.iterations,
        converged=converged and deviance.modes.all_converged,
        message=message,
        boundary=tuple(name for name, b in zip(structure.names, on_bound) if b),
    )


def at_estimates(rows: GlmmRows, theta: np.ndarray, beta: np.ndarray, dispersion: float | None, nagq: int,
                 u: np.ndarray | None = None) -> dict:
    """What a fit reads at given estimates (the optimum, or a saved fit's): the fields of
    :class:`LaplaceFit` that follow from one PIRLS solve there (warm-started from ``u``) — the
    mode, the log-likelihood, the effects' covariances, conditional modes and variances and
    the covariance of β̂ given θ — and the numbers of rows and parameters.

    Raises FitError when the log-likelihood there is not finite.
    """
    structure = rows.structure
    mode = pirls(rows, theta, beta, dispersion, u)
    log_likelihood = -0.5 * (mode.laplace_deviance if nagq == 1 else agq_deviance(rows, mode, nagq))
    if not np.isfinite(log_likelihood):
        raise FitError(f"The GLMM deviance is not finite at θ = {np.asarray(theta).tolist()}.", None)
    joint = pirls(rows, theta, beta, dispersion, mode.u, joint=True)  # the weighted factor with R_X
    return dict(
        theta=theta,
        beta=beta,
        dispersion=dispersion,
        covariances=tuple(block.lambda_(theta) @ block.lambda_(theta).T for block in structure.blocks),
        ranef=tuple(effects(structure, theta, mode.u)),
        condvar=tuple(conditional_covariances(structure, joint.factorization)),
        vcov_beta_conditional=joint.factorization.rx_inverse,
        log_likelihood=float(log_likelihood),
        n_obs=rows.n,
        n_params=structure.n_theta + rows.p + int(dispersion is not None),
        mode=mode,
    )


def _feasible(x: np.ndarray, free: np.ndarray, diagonal: np.ndarray) -> bool:
    """Free diagonal θ̃ elements stay non-negative."""
    k = int(free.sum())
    return bool(np.all(x[:k][diagonal[free]] >= 0.0))


def _newton_step(hess: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """-H⁻¹ g, with H made positive definite (eigenvalues floored) if it is not."""
    values, vectors = np.linalg.eigh(hess)
    floor = 1e-8 * max(1.0, np.max(np.abs(values)))
    return -vectors @ ((vectors.T @ grad) / np.maximum(values, floor))


def _bfgs_update(hess: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The BFGS update of a Hessian approximation after the step s changed the gradient by y."""
    sy = s @ y
    Hs = hess @ s
    if sy <= 1e-12 * np.sqrt((s @ s) * (y @ y)):
        return hess  # curvature not positive along s: keep the approximation
    return hess + np.outer(y, y) / sy - np.outer(Hs, Hs) / (s @ Hs)


def _steps(x: np.ndarray) -> np.ndarray:
    return STEP * np.maximum(1.0, np.abs(x))

