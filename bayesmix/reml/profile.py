"""Likelihood-ratio profile intervals of a linear mixed model, as lme4's ``profile.merMod`` and
``confint(method = "profile")``.

As lme4 (``devfun2``), a REML fit is refitted by maximum likelihood first, and every profile is
of the ML deviance

    D(θ, σ) = log|Λ'Z'WZΛ + I| + r²(θ)/σ² + n log(2πσ²) - Σ log w,

with β profiled out (r²(θ) the penalised residual sum of squares at β̂(θ)). For a variance
parameter ψ (an SD or a correlation of the random effects, or σ) held at v, the profiled
deviance is the minimum of D over (θ, σ) with ψ(θ, σ) = v; for a fixed effect β_j held at b,
it is the ML criterion of the model without column j and with response y - x_j b (lme4 puts
x_j b in the offset), minimised over θ. The signed root ζ(v) = sign(v - ψ̂) √(D_prof(v) - D̂)
is solved for ζ = ±z by root finding, where lme4 interpolates a spline through a grid of
profile points; where the profile does not reach ±z before the parameter's bound (0 for an
SD, ±1 for a correlation), the bound is the limit, as in lme4.

:class:`LikelihoodProfile` holds that root finding, which a GLMM's profiles
(:mod:`bayesmix.reml.laplace_profile`) share; :class:`DevianceProfile` is the linear model's.
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import ArgumentError, ConvergenceWarning, warn
from ..threads import one_blas_thread
from ..linalg.kernels import single_factor_criterion
from .criterion import ProfiledCriterion, profiled_criterion
from .parameters import normal_quantile, parameter_estimates, sd_cor
from .optimize import optimize_theta
from .refit import maximum_likelihood

if TYPE_CHECKING:
    from .point import PointFit

CORRELATION_EDGE = 1.0 - 1e-6  # a correlation's profile is evaluated this close to ±1 for its bound
MAX_DOUBLINGS = 40


class LikelihoodProfile:
    """The profiles of a deviance D(x) over the parameters of a fit and the intervals where
    their signed roots ζ reach ±z (see the module docstring); what is generic in them.

    A subclass gives the deviance in its coordinates x, whose first ``structure.n_theta``
    elements are θ̃ = θ * row_scale, and its profiles.

    Attributes
    ----------
    ml
        The maximum-likelihood fit whose parameters are profiled.
    minimum
        D at the optimum.
    x_hat
        The optimum in x.
    psi_hat
        The SDs and correlations of the random effects there, one per θ element.
    variance_hat
        ``psi_hat`` and then the dispersion (σ of a linear model) where it is profiled.
    step_scale
        The scale of the first step from an SD of 0 (σ̂ of a linear model, 1 for a GLMM).
    bounds
        Bounds of x for the optimiser (0 below for a diagonal θ element).
    """

    ml: object
    structure: object
    minimum: float
    x_hat: np.ndarray
    psi_hat: np.ndarray
    variance_hat: np.ndarray
    diagonal: np.ndarray
    step_scale: float
    bounds: list

    def deviance_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """D and its gradient in x."""
        raise NotImplementedError

    def variance_profile(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min D over x with variance parameter k at ``value``, from ``start``: (the minimum, its x)."""
        raise NotImplementedError

    def fixed_profile(self, j: int, b: float) -> float:
        """min D with β_j = b."""
        raise NotImplementedError

    # ----- intervals ---------------------------------------------------------------------------
    def zeta(self, profiled: float, value: float, estimate: float) -> float:
        """The signed root of the deviance difference (NaN where the profile failed)."""
        if np.isnan(profiled):
            return np.nan
        return float(np.sign(value - estimate) * np.sqrt(max(profiled - self.minimum, 0.0)))

    def limit(self, zeta_of, estimate: float, step: float, z: float, direction: int, bound: float | None) -> float:
        """The value where ζ = direction * z, searched from the estimate in steps that double,
        up to ``bound`` (returned when the profile does not reach z before it)."""
        from scipy.optimize import brentq

        target = direction * z
        inner, outer = estimate, estimate + direction * step
        for _ in range(MAX_DOUBLINGS):
            if bound is not None and direction * (outer - bound) >= 0:
                outer = bound
            value = zeta_of(outer)
            if not np.isfinite(value):
                return np.nan
            if direction * (value - target) >= 0:
                try:
                    return float(brentq(lambda v: zeta_of(v) - target, inner, outer, xtol=1e-9 * max(1.0, abs(estimate)),
                                        rtol=1e-10))
                except ValueError:  # a NaN on the way: the profile could not be computed there
                    return np.nan
            if bound is not None and outer == bound:
                return float(bound if abs(bound) != CORRELATION_EDGE else np.sign(bound))
            inner, outer = outer, estimate + 2.0 * (outer - estimate)
        return np.nan

    def variance_interval(self, k: int, z: float) -> tuple[float, float]:
        """Limits of variance parameter k at ζ = ±z."""
        estimate = float(self.variance_hat[k])
        is_cor = k < len(self.psi_hat) and not self._is_sd(k)
        solved: dict[float, np.ndarray] = {}

        def zeta_of(v: float) -> float:
            if not is_cor and v <= 0:
                return self.zeta(self._at_zero_sd(k), v, estimate)
            # from the optimum and from the nearest point solved: the profile is a minimum, and a warm
            # start alone can stay in another basin (e.g. where an SD is 0 and a correlation is free)
            starts = [self.x_hat]
            if solved:
                starts.append(solved[min(solved, key=lambda u: abs(u - v))])
            best, best_x = np.nan, None
            for start in starts:
                profiled, x = self.variance_profile(k, v, start)
                if np.isfinite(profiled) and not profiled >= best:
                    best, best_x = profiled, x
            if best_x is not None:
                solved[v] = best_x
            return self.zeta(best, v, estimate)

        out = []
        for direction in (-1, 1):
            if is_cor:
                bound, step = direction * CORRELATION_EDGE, 0.1
                step = min(step, max(abs(bound - estimate) / 2, 1e-8))
            else:
                bound, step = (0.0 if direction < 0 else None), 0.2 * max(estimate, 1e-3 * self.step_scale)
            if is_cor and abs(estimate - bound) < 1e-8:
                out.append(float(direction))
                continue
            out.append(self.limit(zeta_of, estimate, step, z, direction, bound))
        return out[0], out[1]

    def fixed_interval(self, j: int, z: float) -> tuple[float, float]:
        """Limits of fixed effect j at ζ = ±z."""
        estimate = float(self.ml.beta_values[j])
        se = float(np.sqrt(self.ml.vcov().to_numpy()[j, j]))

        def zeta_of(b: float) -> float:
            return self.zeta(self.fixed_profile(j, b), b, estimate)

        return tuple(self.limit(zeta_of, estimate, se, z, direction, None) for direction in (-1, 1))

    def _is_sd(self, k: int) -> bool:
        """Whether variance parameter k is an SD (a diagonal θ element)."""
        return bool(self.diagonal[k])

    def _at_zero_sd(self, k: int) -> float:
        """min D with SD k at 0: the θ elements of its row of Λ held at 0."""
        from scipy.optimize import minimize

        block = next(b for b in self.structure.blocks if b.theta_offset <= k < b.theta_offset + b.n_theta)
        row = block.theta_rows[k - block.theta_offset]
        held = np.zeros(len(self.x_hat), dtype=bool)
        held[block.theta_offset + np.flatnonzero(block.theta_rows == row)] = True
        bounds = [(0.0, 0.0) if h else b for h, b in zip(held, self.bounds)]
        start = np.where(held, 0.0, self.x_hat)
        result = minimize(self.deviance_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000})
        return float(result.fun)



class DevianceProfile(LikelihoodProfile):
    """The ML deviance D(θ, σ) of a linear mixed model and its profiles; see the module docstring.

    Parameters
    ----------
    fit
        The REML or ML fit; a REML fit is refitted by ML (from its θ̂).

    Attributes
    ----------
    ml
        The maximum-likelihood fit.
    criterion
        Its profiled ML criterion (σ and β profiled out).
    """

    def __init__(self, fit: PointFit):
        design, structure = fit.design, fit.structure
        self.ml = maximum_likelihood(fit)
        self.criterion = profiled_criterion(design, structure, reml=False, factorization="blocked")  # fixed_criterion edits its cross-products
        self.structure = structure
        self.n = design.n
        self.scale = structure.row_scale
        self.diagonal = structure.diagonal()
        self.minimum = self.ml.criterion
        self.x_hat = np.append(self.ml.theta_values * self.scale, np.log(self.ml.sigma))
        self.psi_hat = sd_cor(structure, self.ml.theta_values, self.ml.sigma)
        self.variance_hat = np.append(self.psi_hat, self.ml.sigma)
        self.step_scale = float(self.ml.sigma)
        self.bounds = [(0.0, None) if d else (None, None) for d in self.diagonal] + [(None, None)]

    # ----- the deviance in x = (θ̃, log σ) ------------------------------------------------------
    def deviance(self, x: np.ndarray) -> float:
        """D at θ = θ̃ / row_scale and σ = exp(log σ) (+inf where the factor does not exist)."""
        try:
            f = self.criterion.factorize(x[:-1] / self.scale)
        except np.linalg.LinAlgError:
            return np.inf
        log_sigma2 = 2.0 * x[-1]
        return float(f.logdet_z + f.pwrss * np.exp(-log_sigma2) + self.n * (np.log(2.0 * np.pi) + log_sigma2)
                     - self.criterion.log_weights)

    def deviance_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """D and its gradient in x. With one grouping factor the gradient is exact: the compiled
        criterion's gradient ∂log|L|² + (ν/r²) ∂r² is affine in its ν, so two calls (ν = n, 2n)
        separate ∂log|L|² and ∂r²/r², and its values log|L|² and r²; otherwise central differences."""
        if not self.criterion.cp.single_factor:
            h = 1e-6 * np.maximum(1.0, np.abs(x))
            steps = np.diag(h)
            grad = np.array([(self.deviance(x + e) - self.deviance(x - e)) / (2 * hk) for e, hk in zip(steps, h)])
            return self.deviance(x), grad
        cp, block = self.criterion.cp, self.structure.blocks[0]
        lam = block.lambda_(x[:-1] / self.scale)
        n = float(self.n)
        v1, g1 = single_factor_criterion(lam, cp.A11, cp.A1X, cp.AXX, cp.p, n, False)
        v2, g2 = single_factor_criterion(lam, cp.A11, cp.A1X, cp.AXX, cp.p, 2 * n, False)
        if not (np.isfinite(v1) and np.isfinite(v2)):
            return np.inf, np.zeros_like(x)
        c = (v2 + 2 * n * np.log(2 * n) - v1 - n * np.log(n)) / n  # 1 + log(2π r²)
        logdet = v1 + n * np.log(n) - n * c
        pwrss = np.exp(c - 1.0) / (2.0 * np.pi)
        d_logdet, d_log_pwrss = 2.0 * g1 - g2, (g2 - g1) / n
        ratio = pwrss * np.exp(-2.0 * x[-1])  # r²/σ²
        value = logdet + ratio + n * (np.log(2.0 * np.pi) + 2.0 * x[-1]) - self.criterion.log_weights
        d_theta = (d_logdet + ratio * d_log_pwrss)[block.theta_rows, block.theta_cols] / self.scale
        return float(value), np.append(d_theta, 2.0 * n - 2.0 * ratio)

    def psi(self, x: np.ndarray, k: int) -> float:
        """Variance parameter k (SDs and correlations in θ's order, then σ) at x."""
        sigma = np.exp(x[-1])
        if k == len(self.psi_hat):
            return float(sigma)
        return float(sd_cor(self.structure, x[:-1] / self.scale, sigma)[k])

    def variance_profile(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min D over x with parameter k at ``value``, from ``start``: (the minimum, its x)."""
        from scipy.optimize import minimize

        bounds = self.bounds
        if k == len(self.psi_hat):  # σ held: minimise over θ alone
            fixed = np.log(value)
            def held(t):
                value, grad = self.deviance_and_gradient(np.append(t, fixed))
                return value, grad[:-1]

            result = minimize(held, start[:-1], jac=True, method="L-BFGS-B", bounds=bounds[:-1],
                              options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000})
            return float(result.fun), np.append(result.x, fixed)
        if not self._is_sd(k):
            return self.correlation_profile(k, value, start)
        constraint = {"type": "eq", "fun": lambda x: self.psi(x, k) - value}
        result = minimize(self.deviance_and_gradient, start, jac=True, method="SLSQP", bounds=bounds, constraints=[constraint],
                          options={"ftol": 1e-12, "maxiter": 1000})
        x = np.asarray(result.x, dtype=float)
        if not np.isfinite(result.fun) or abs(self.psi(x, k) - value) > 1e-6 * max(1.0, abs(value)):
            return np.nan, start
        return float(result.fun), x

    def correlation_profile(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min D with correlation k at ``value``, in the coordinates of :class:`CorrelationChart`,
        where holding it is holding one angle."""
        from scipy.optimize import minimize

        chart = CorrelationChart(self, k)
        free = chart.free(start)
        angle = float(np.arccos(np.clip(value, -1.0, 1.0)))
        result = minimize(lambda f: self.deviance(chart.point(f, angle)), free, method="L-BFGS-B", bounds=chart.bounds,
                          options={"ftol": 1e-14, "gtol": 1e-8, "maxiter": 3000})
        if not np.isfinite(result.fun):
            return np.nan, start
        return float(result.fun), chart.point(np.asarray(result.x, dtype=float), angle)

    def fixed_criterion(self, j: int, b: float) -> ProfiledCriterion:
        """The ML criterion of the model with β_j held at b: column j of X moves into the offset."""
        cp, shift = self.criterion.cp, self.criterion.beta_shift
        p = cp.p
        keep = [c for c in range(p) if c != j]
        T = np.zeros((p + 1, p))
        T[keep, np.arange(p - 1)] = 1.0
        T[p, p - 1] = 1.0
        T[j, p - 1] = -(b - shift[j])  # the response is y - X c: β_j = b is a shift of b - c_j
        products = dataclasses.replace(
            cp, p=p - 1, A1X=cp.A1X @ T, AXX=T.T @ cp.AXX @ T, A2X=None if cp.A2X is None else cp.A2X @ T,
        )
        return ProfiledCriterion(self.structure, products, reml=False, log_weights=self.criterion.log_weights)

    def fixed_profile(self, j: int, b: float) -> float:
        """The ML deviance minimised over θ (and σ, the other β) with β_j = b."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            return optimize_theta(self.fixed_criterion(j, b), self.ml.theta_values).fmin

class CorrelationChart:
    """Coordinates in which one correlation of a correlated term is one free coordinate.

    The term's covariance is σ² Λ_T Λ_T' = D U U' D with D the SDs and U lower triangular with
    unit rows (the correlation matrix is U U'), its columns permuted so that the profiled pair
    comes first; row i of U is a unit vector in spherical angles φ ∈ [0, π], and the pair's
    correlation is cos φ of row 1's angle. Every correlation matrix, singular ones included, has
    such angles, so that holding the correlation is holding an angle within bounds (lme4 holds it
    in a parametrisation by the correlations themselves). The coordinates are the other θ̃, log σ,
    the term's SDs and its angles but the held one; Λ_T is the lower-triangular root of
    D U U' D / σ², from a QR decomposition (it exists for singular matrices too).
    """

    def __init__(self, profile: DevianceProfile, k: int):
        self.profile = profile
        structure = profile.structure
        block = next(b for b in structure.blocks if b.theta_offset <= k < b.theta_offset + b.n_theta)
        local = k - block.theta_offset
        row, col = block.theta_rows[local], block.theta_cols[local]
        cols = next(c for c in block.term_slices if c.start <= row < c.stop)
        self.q = q = cols.stop - cols.start
        in_term = (block.theta_rows >= cols.start) & (block.theta_rows < cols.stop)
        self.term_theta = block.theta_offset + np.flatnonzero(in_term)  # θ elements of the term
        self.rows, self.cols = block.theta_rows[in_term] - cols.start, block.theta_cols[in_term] - cols.start
        self.others = np.setdiff1d(np.arange(structure.n_theta), self.term_theta)
        first, second = col - cols.start, row - cols.start
        self.perm = np.array([first, second] + [i for i in range(q) if i not in (first, second)])
        n_angles = q * (q - 1) // 2
        diagonal = structure.diagonal()
        self.bounds = ([(0.0, None) if diagonal[i] else (None, None) for i in self.others] + [(None, None)]
                       + [(0.0, None)] * q + [(0.0, np.pi)] * (n_angles - 1))

    def point(self, free: np.ndarray, angle: float) -> np.ndarray:
        """x = (θ̃, log σ) at the coordinates ``free`` with the held angle ``angle``."""
        n_other, q = len(self.others), self.q
        log_sigma = free[n_other]
        sd = free[n_other + 1 : n_other + 1 + q]
        angles = np.concatenate([[angle], free[n_other + 1 + q :]])
        U = np.zeros((q, q))
        U[0, 0], start = 1.0, 0
        for i in range(1, q):
            phi = angles[start : start + i]
            start += i
            sines = np.concatenate([[1.0], np.cumprod(np.sin(phi))])
            U[i, :i] = sines[:i] * np.cos(phi)
            U[i, i] = sines[i]
        M = np.empty((q, q))
        M[self.perm] = sd[:, None] * U  # rows back in the term's order
        _, R = np.linalg.qr(M.T)  # M = R'Q': R' is a lower-triangular root of M M'
        signs = np.where(np.diag(R) < 0, -1.0, 1.0)
        lam = (R.T * signs) / np.exp(log_sigma)
        theta = np.empty(self.profile.structure.n_theta)
        theta_tilde = free[:n_other]
        theta[self.others] = theta_tilde / self.profile.scale[self.others]
        theta[self.term_theta] = lam[self.rows, self.cols]
        return np.append(theta * self.profile.scale, log_sigma)

    def free(self, x: np.ndarray) -> np.ndarray:
        """The coordinates of x (the held angle left out)."""
        theta = x[:-1] / self.profile.scale
        lam = np.zeros((self.q, self.q))
        lam[self.rows, self.cols] = theta[self.term_theta]
        M = np.exp(x[-1]) * lam[self.perm]  # rows of a root of the permuted covariance
        sd = np.sqrt(np.sum(M**2, axis=1))
        unit = np.where(sd[:, None] > 0, M / np.where(sd > 0, sd, 1.0)[:, None], np.eye(self.q))
        _, R = np.linalg.qr(unit.T)
        U = R.T * np.where(np.diag(R) < 0, -1.0, 1.0)  # lower triangular, unit rows, U U' the correlations
        angles = []
        for i in range(1, self.q):
            w = U[i, : i + 1]
            tails = np.sqrt(np.cumsum(w[::-1] ** 2)[::-1])  # ||w[j:]||
            angles += [float(np.arccos(np.clip(w[j] / tails[j], -1.0, 1.0))) if tails[j] > 0 else 0.0 for j in range(i)]
        return np.concatenate([x[:-1][self.others], [x[-1]], sd, angles[1:]])


def profile_intervals(fit: PointFit, level: float, profile_type: type[LikelihoodProfile]) -> pd.DataFrame:
    """Profile-likelihood intervals of every parameter of ``fit`` (rows as
    :func:`~bayesmix.reml.parameters.parameter_estimates`), from the profiles of ``profile_type``
    (:class:`DevianceProfile` for a linear mixed model,
    :class:`~bayesmix.reml.laplace_profile.LaplaceProfile` for a GLMM); see the module docstring."""
    if not fit.design.in_memory:
        raise ArgumentError("Profile intervals need the rows in memory; this fit was made from dask or Parquet data.")
    z = normal_quantile(level)
    names = parameter_estimates(fit).index
    with one_blas_thread():
        profile = profile_type(fit)
        limits = [profile.variance_interval(k, z) for k in range(len(profile.variance_hat))]
        limits += [profile.fixed_interval(j, z) for j in range(fit.design.p)]
    table = pd.DataFrame(limits, index=names, columns=["lower", "upper"])
    bad = table.index[table.isna().any(axis=1)]
    if len(bad):
        warn(
            f"The likelihood profile of {', '.join(bad)} could not be followed to the interval's limit (the "
            "constrained optimisation failed or the profile is not monotonic; lme4 warns 'bad profile' there): those "
            "limits are NaN. A bootstrap interval (method='bootstrap') needs no profile.", ConvergenceWarning)
    return table
