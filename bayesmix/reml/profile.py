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
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd

from ..errors import ArgumentError, ConvergenceWarning, FitError
from ..linalg.threads import one_blas_thread
from .criterion import ProfiledCriterion, profiled_criterion
from .intervals import normal_quantile, parameter_estimates, sd_cor, variance_parameter_names
from .optimize import optimize_theta
from .refit import fit_profiled
from .result import RemlResult

CORRELATION_EDGE = 1.0 - 1e-6  # a correlation's profile is evaluated this close to ±1 for its bound
MAX_DOUBLINGS = 40


class DevianceProfile:
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

    def __init__(self, fit: RemlResult):
        design, structure = fit.design, fit.structure
        criterion = profiled_criterion(design, structure, reml=False)
        self.ml = fit if not fit.reml else fit_profiled(design, structure, criterion, theta0=fit.theta_values, warn=False)
        self.criterion = criterion
        self.structure = structure
        self.n = design.n
        self.scale = structure.row_scale
        self.diagonal = structure.diagonal()
        self.minimum = self.ml.criterion
        self.x_hat = np.append(self.ml.theta_values * self.scale, np.log(self.ml.sigma))
        self.psi_hat = sd_cor(structure, self.ml.theta_values, self.ml.sigma)

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

    def psi(self, x: np.ndarray, k: int) -> float:
        """Variance parameter k (SDs and correlations in θ's order, then σ) at x."""
        sigma = np.exp(x[-1])
        if k == len(self.psi_hat):
            return float(sigma)
        return float(sd_cor(self.structure, x[:-1] / self.scale, sigma)[k])

    def variance_profile(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min D over x with parameter k at ``value``, from ``start``: (the minimum, its x)."""
        from scipy.optimize import minimize

        bounds = [(0.0, None) if d else (None, None) for d in self.diagonal] + [(None, None)]
        if k == len(self.psi_hat):  # σ held: minimise over θ alone
            fixed = np.log(value)
            result = minimize(lambda t: self.deviance(np.append(t, fixed)), start[:-1], method="L-BFGS-B",
                              bounds=bounds[:-1], options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000})
            return float(result.fun), np.append(result.x, fixed)
        constraint = {"type": "eq", "fun": lambda x: self.psi(x, k) - value}
        result = minimize(self.deviance, start, method="SLSQP", bounds=bounds, constraints=[constraint],
                          options={"ftol": 1e-12, "maxiter": 1000})
        x = np.asarray(result.x, dtype=float)
        if not np.isfinite(result.fun) or abs(self.psi(x, k) - value) > 1e-6 * max(1.0, abs(value)):
            return np.inf, start
        return float(result.fun), x

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

    # ----- intervals ---------------------------------------------------------------------------
    def zeta(self, profiled: float, value: float, estimate: float) -> float:
        """The signed root of the deviance difference."""
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
            if direction * (value - target) >= 0:
                return float(brentq(lambda v: zeta_of(v) - target, inner, outer, xtol=1e-10, rtol=1e-10))
            if bound is not None and outer == bound:
                return float(bound if abs(bound) != CORRELATION_EDGE else np.sign(bound))
            inner, outer = outer, estimate + 2.0 * (outer - estimate)
        raise FitError(f"The profile did not reach ζ = {target:.3g} within {MAX_DOUBLINGS} doublings of the step.", None)

    def variance_interval(self, k: int, z: float) -> tuple[float, float]:
        """Limits of variance parameter k at ζ = ±z."""
        estimate = self.psi_hat[k] if k < len(self.psi_hat) else float(np.exp(self.x_hat[-1]))
        is_cor = k < len(self.psi_hat) and not self._is_sd(k)
        cache = {"x": self.x_hat.copy()}

        def zeta_of(v: float) -> float:
            if not is_cor and v <= 0:
                profiled = self._at_zero_sd(k)
            else:
                profiled, x = self.variance_profile(k, v, cache["x"])
                if np.isfinite(profiled):
                    cache["x"] = x
            return self.zeta(profiled, v, estimate)

        out = []
        for direction in (-1, 1):
            cache["x"] = self.x_hat.copy()
            if is_cor:
                bound, step = direction * CORRELATION_EDGE, 0.1
                step = min(step, max(abs(bound - estimate) / 2, 1e-8))
            else:
                bound, step = (0.0 if direction < 0 else None), 0.2 * max(estimate, 1e-3 * np.exp(self.x_hat[-1]))
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
        bounds = [(0.0, 0.0) if h else ((0.0, None) if d else (None, None))
                  for h, d in zip(held, np.append(self.diagonal, False))]
        start = np.where(held, 0.0, self.x_hat)
        result = minimize(self.deviance, start, method="L-BFGS-B", bounds=bounds,
                          options={"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000})
        return float(result.fun)


def profile_intervals(fit: RemlResult, level: float) -> pd.DataFrame:
    """Profile-likelihood intervals of every parameter of ``fit`` (rows as
    :func:`~bayesmix.reml.intervals.parameter_estimates`); see the module docstring."""
    if not isinstance(fit, RemlResult):
        raise ArgumentError(
            f"Profile intervals are computed for linear mixed models (REML/ML fits), not a {type(fit).__name__}; "
            "use method='wald' or method='bootstrap'."
        )
    if not fit.design.in_memory:
        raise ArgumentError("Profile intervals need the rows in memory; this fit was made from dask or Parquet data.")
    z = normal_quantile(level)
    names = parameter_estimates(fit).index
    with one_blas_thread():
        profile = DevianceProfile(fit)
        limits = [profile.variance_interval(k, z) for k in range(len(profile.psi_hat) + 1)]
        limits += [profile.fixed_interval(j, z) for j in range(fit.design.p)]
    assert len(limits) == len(names) and len(variance_parameter_names(fit)) == len(profile.psi_hat)
    return pd.DataFrame(limits, index=names, columns=["lower", "upper"])
