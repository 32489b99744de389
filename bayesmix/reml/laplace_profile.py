"""Likelihood-ratio profile intervals of a GLMM fit, as lme4's ``profile.merMod`` and
``confint(method = "profile")`` for a ``glmer`` fit.

As lme4 (``devfun2`` for a GLMM), every profile is of the fit's own deviance d(θ, β): the
Laplace approximation (or adaptive Gauss-Hermite quadrature with ``nagq > 1``) at the
conditional modes that PIRLS finds for each (θ, β) (:class:`~bayesmix.reml.laplace.LaplaceDeviance`,
with its exact gradient). For an SD or a correlation ψ of the random effects held at v, the
profiled deviance is the minimum of d over (θ, β) with ψ(θ) = v (an SD of a term with a single
θ element in its row is that element, held by a bound; otherwise ψ(θ) = v is a constraint); for
a fixed effect β_j held at b, it is the minimum over θ and the other β. The signed roots ζ and
the intervals' limits are found as for a linear mixed model (:mod:`bayesmix.reml.profile`).
lme4 does not profile a GLMM whose family has a dispersion parameter ("can't (yet) profile
GLMMs with non-fixed scale parameters"); neither does this.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError
from ..linalg.pirls import GlmmRows
from .laplace import LaplaceDeviance
from .parameters import sd_cor
from .profile import LikelihoodProfile

if TYPE_CHECKING:
    from .point import PointFit

OPTIONS = {"ftol": 1e-14, "gtol": 1e-9, "maxiter": 2000}


class LaplaceProfile(LikelihoodProfile):
    """The deviance d(θ, β) of a GLMM fit and its profiles, in x = (θ̃, β) with θ̃ = θ * row_scale;
    see the module docstring.

    Parameters
    ----------
    fit
        The GLMM fit (:class:`~bayesmix.GlmmResult`), at its optimum.

    Raises
    ------
    ArgumentError
        For a family with a dispersion parameter (negative binomial, Gaussian with a non-identity link).
    """

    def __init__(self, fit: PointFit):
        design, structure = fit.design, fit.structure
        family = design.family
        if family.has_dispersion:
            raise ArgumentError(
                f"Profile intervals of a GLMM are computed for families without a dispersion parameter, as lme4's; the "
                f"{family} family has one ({family.dispersion_name}): use method='wald' or method='bootstrap'."
            )
        rows = design.rows
        glmm_rows = GlmmRows.of(structure, rows.X, rows.y, rows.weights, rows.offset, family)
        k = structure.n_theta
        self.ml = fit
        self.structure = structure
        self.n_theta = k
        self.laplace = LaplaceDeviance(glmm_rows, fit.fit.nagq, np.ones(k, dtype=bool), np.zeros(k))
        self.scale = structure.row_scale
        self.diagonal = structure.diagonal()
        self.x_hat = np.concatenate([fit.theta_values * self.scale, fit.beta_values])
        self.minimum = fit.fit.deviance
        self.psi_hat = sd_cor(structure, fit.theta_values, 1.0)
        self.variance_hat = self.psi_hat
        self.step_scale = 1.0
        self.bounds = [(0.0, None) if d else (None, None) for d in self.diagonal] + [(None, None)] * design.p
        self.alone = self._alone_in_row()

    def deviance_and_gradient(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """d and its exact gradient in x (inf where PIRLS fails)."""
        return self.laplace.with_gradient(np.asarray(x, dtype=float))

    def psi(self, x: np.ndarray, k: int) -> float:
        """Variance parameter k (SDs and correlations in θ's order) at x."""
        return float(sd_cor(self.structure, x[: self.n_theta] / self.scale, 1.0)[k])

    def held(self, index: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min d over x with x[index] = value, from ``start``."""
        from scipy.optimize import minimize

        bounds = list(self.bounds)
        bounds[index] = (value, value)
        start = np.array(start, dtype=float)
        start[index] = value
        result = minimize(self.deviance_and_gradient, start, jac=True, method="L-BFGS-B", bounds=bounds, options=OPTIONS)
        if not np.isfinite(result.fun):
            return np.nan, start
        return float(result.fun), np.asarray(result.x, dtype=float)

    def variance_profile(self, k: int, value: float, start: np.ndarray) -> tuple[float, np.ndarray]:
        """min d over x with variance parameter k at ``value``, from ``start``: (the minimum, its x)."""
        from scipy.optimize import minimize

        if self.alone[k]:  # the SD is the θ element itself
            return self.held(k, value * self.scale[k], start)
        constraint = {"type": "eq", "fun": lambda x: self.psi(x, k) - value}
        result = minimize(self.deviance_and_gradient, start, jac=True, method="SLSQP", bounds=self.bounds,
                          constraints=[constraint], options={"ftol": 1e-12, "maxiter": 1000})
        x = np.asarray(result.x, dtype=float)
        if not np.isfinite(result.fun) or abs(self.psi(x, k) - value) > 1e-6 * max(1.0, abs(value)):
            return np.nan, start
        return float(result.fun), x

    def fixed_profile(self, j: int, b: float) -> float:
        """min d over θ and the other fixed effects with β_j = b."""
        return self.held(self.n_theta + j, b, self.x_hat)[0]

    def _alone_in_row(self) -> np.ndarray:
        """Per θ element: whether it is a diagonal element alone in its row of Λ (then it is the row's SD)."""
        alone = np.zeros(self.n_theta, dtype=bool)
        for block in self.structure.blocks:
            counts = np.bincount(block.theta_rows, minlength=block.q)
            for local, (r, c) in enumerate(zip(block.theta_rows, block.theta_cols)):
                alone[block.theta_offset + local] = r == c and counts[r] == 1
        return alone
