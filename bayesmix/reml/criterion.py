"""The profiled (RE)ML criterion of θ (Bates et al. 2015, sec. 3), from the blocked Cholesky
factor of :mod:`bayesmix.linalg.factorization`.

The criteria (lme4's ``REMLcrit`` and ``deviance``) are

    ML:    log|L_Z|² + n (1 + log(2π r_yy² / n))
    REML:  log|L_Z|² + log|R_X|² + (n-p) (1 + log(2π r_yy² / (n-p)))

With a single grouping factor the gradient with respect to θ is exact and costs one more
pass over the levels (see :meth:`ProfiledCriterion.value_and_gradient`).
"""

from __future__ import annotations

import numpy as np

from ..data.blocks import CrossProducts
from ..data.crossprod import shifted_cross_products
from ..data.design import Design
from ..data.layout import Structure
from ..linalg.factorization import Factorization, factorize
from ..linalg.kernels import single_factor_criterion


class ProfiledCriterion:
    """The profiled REML or ML criterion as a function of θ.

    Parameters
    ----------
    structure
        The θ layout.
    crossprod
        The cross-products of ``[Z X y]``.
    reml
        REML criterion (True) or deviance, -2 log-likelihood (False).
    beta_shift
        If the cross-products are of ``y - X c`` (a response with its least-squares fit on X
        removed, which keeps their precision when y has a large mean), c: the criterion is
        unchanged, and the factorisations report β + c.
    log_weights
        Σ log w_i of the prior weights (0 without), which the criterion subtracts: the
        log-determinant of the residual covariance σ² W⁻¹ (lme4's ``ldW``).
    """

    def __init__(self, structure: Structure, crossprod: CrossProducts, reml: bool = True,
                 beta_shift: np.ndarray | None = None, log_weights: float = 0.0):
        self.structure = structure
        self.cp = crossprod
        self.reml = reml
        self.beta_shift = beta_shift
        self.log_weights = log_weights
        self.dof = crossprod.n - crossprod.p if reml else crossprod.n
        self.evaluations = 0

    def factorize(self, theta: np.ndarray) -> Factorization:
        """The blocked Cholesky factor at θ (raises numpy's LinAlgError if it does not exist)."""
        return factorize(self.structure, self.cp, theta, self.beta_shift)

    def from_factorization(self, f: Factorization) -> float:
        """The criterion's value given the factor at θ."""
        value = f.logdet_z + self.dof * (1.0 + np.log(2.0 * np.pi * f.pwrss / self.dof)) - self.log_weights
        return float(value + f.logdet_x if self.reml else value)

    def __call__(self, theta: np.ndarray) -> float:
        """The criterion at θ (+inf where the factorisation breaks down)."""
        self.evaluations += 1
        try:
            return self.from_factorization(self.factorize(np.asarray(theta, dtype=float)))
        except np.linalg.LinAlgError:
            return np.inf

    def value_and_gradient(self, theta: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at θ.

        With one grouping factor the gradient is exact. Writing M_i = Λ'A_iΛ + I,
        B_i = Λ'Z_i'[X y], G_i = M_i⁻¹B_i, S = [X y]'[X y] - Σ B_i'G_i and F = ∂d/∂S
        (F = S_XX⁻¹ ⊕ 0 for the REML log-determinant plus ν/r² e e' with e = (-β, 1)),

            ∂d/∂Λ = 2 (Σ_i M_i⁻¹Λ'A_i - Σ_i G_i F (Z_i'[X y] - A_iΛG_i)')'.

        With several factors a central difference is used.
        """
        theta = np.asarray(theta, dtype=float)
        if not self.cp.single_factor:
            return self(theta), self._central_difference(theta)
        self.evaluations += 1
        cp, block = self.cp, self.structure.blocks[0]
        value, dT = single_factor_criterion(block.lambda_(theta), cp.A11, cp.A1X, cp.AXX, cp.p, float(self.dof), self.reml)
        return float(value) - self.log_weights, dT[block.theta_rows, block.theta_cols]

    def _central_difference(self, theta: np.ndarray) -> np.ndarray:
        grad = np.empty_like(theta)
        for k in range(len(theta)):
            h = 1e-6 * max(1.0, abs(theta[k]))
            up, down = theta.copy(), theta.copy()
            up[k] += h
            down[k] -= h
            grad[k] = (self(up) - self(down)) / (2.0 * h)
        return grad


def profiled_criterion(design: Design, structure: Structure, reml: bool) -> ProfiledCriterion:
    """The (RE)ML criterion of ``design``, from the cross-products of the response minus its
    least-squares fit on X (:func:`~bayesmix.data.crossprod.shifted_cross_products`): the
    criterion and θ̂ are unchanged, and the factorisations add the shift back to β̂. Prior
    weights enter through the cross-products and the criterion's Σ log w."""
    crossprod, shift = shifted_cross_products(design, structure)
    weights = design.rows.weights if design.in_memory else None
    log_weights = 0.0 if weights is None else float(np.sum(np.log(weights)))
    return ProfiledCriterion(structure, crossprod, reml=reml, beta_shift=shift, log_weights=log_weights)

