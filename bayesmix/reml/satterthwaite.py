"""Satterthwaite's degrees of freedom for linear functions of β̂, as lmerTest computes them.

For a contrast l, Var(l'β̂) = l'C l with C = σ² (X'V⁻¹X)⁻¹ a function of the variance parameters
φ = (θ, σ). Satterthwaite's approximation matches the first two moments of l'Ĉl to a scaled
χ²: with g = ∂(l'C l)/∂φ and A the asymptotic covariance of φ̂,

    ν = 2 (l'C l)² / (g'A g).

lmerTest takes A = 2 H⁻¹, H the Hessian of the (RE)ML deviance in (θ, σ) (not profiled over σ),

    d(θ, σ) = log|Λ'Z'ZΛ + I| [+ log|R_X|² - p log(2πσ²)] + r²(θ)/σ² + n log(2πσ²),

and differentiates numerically (numDeriv's Richardson extrapolation). Here the parts that
depend on θ, a(θ) = log|L_Z|² [+ log|R_X|²], the penalised residual sum of squares r²(θ) and
R_X⁻¹R_X⁻ᵀ, are differentiated by central differences with Richardson extrapolation from the
blocked Cholesky factor (so it scales as the fit does), and σ enters analytically:

    ∂²d/∂θ∂θ' = ∂²a + ∂²r²/σ²,  ∂²d/∂θ∂σ = -2 ∂r²/σ³,  ∂²d/∂σ² = 6 r²/σ⁴ - 2ν_d/σ²,
    ∂C/∂θ = σ² ∂(R_X⁻¹R_X⁻ᵀ)/∂θ,  ∂C/∂σ = 2σ R_X⁻¹R_X⁻ᵀ,

with ν_d = n - p for REML and n for ML. A joint F test of several contrasts follows lmerTest's
``contestMD``: the contrasts are rotated to the eigenvectors of L C L', each gets its own
Satterthwaite ν_m, and the denominator df is 2E/(E - q) with E = Σ ν_m/(ν_m - 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConvergenceWarning, warn
from ..threads import one_blas_thread
from .criterion import profiled_criterion

# Central differences start at this fraction of |θ_k| (or of 0.1 for θ_k near 0) and are halved
# RICHARDSON_STEPS - 1 times; the extrapolation removes the h² and h⁴ error terms. On the test
# models 2, 3 or 4 steps and steps of 1e-2 or 3e-2 all agree with lmerTest to 7e-7 (its own
# numerical error); with 3, the derivatives cost 6 m² + 1 factorisations for m = dim θ.
RELATIVE_STEP = 1e-2
RICHARDSON_STEPS = 3
# eigenvalues of the deviance's Hessian below this are taken as 0 (lmerTest's tolerance)
EIGEN_TOLERANCE = 1e-8


@dataclass(frozen=True)
class VarianceDerivatives:
    """What Satterthwaite's df reads from a fit, lmerTest's ``vcov_beta``, ``Jac_list`` and ``vcov_varpar``.

    Attributes
    ----------
    vcov_beta
        C = Var(β̂), (p, p).
    jacobian
        ∂C/∂φ_k for φ = (θ, σ), (k, p, p).
    vcov_varpar
        Asymptotic covariance of φ̂, 2 H⁺ (H's pseudo-inverse over its positive eigenvalues), (k, k).
    """

    vcov_beta: np.ndarray
    jacobian: np.ndarray
    vcov_varpar: np.ndarray

    def df(self, l: np.ndarray) -> float:
        """Satterthwaite's df of l'β̂ (lmerTest's ``contest1D``)."""
        variance = l @ self.vcov_beta @ l
        gradient = np.einsum("i,kij,j->k", l, self.jacobian, l)
        return float(2.0 * variance**2 / (gradient @ self.vcov_varpar @ gradient))

    def f_test(self, L: np.ndarray, beta: np.ndarray) -> tuple[float, int, float]:
        """F statistic, numerator and denominator df of the joint hypothesis Lβ = 0 (lmerTest's
        ``contestMD``); the numerator df is the rank of L C L'."""
        values, vectors = np.linalg.eigh(L @ self.vcov_beta @ L.T)
        values, vectors = values[::-1], vectors[:, ::-1]
        keep = values > max(np.sqrt(np.finfo(float).eps) * values[0], 0.0)
        rotated = vectors[:, keep].T @ L
        q = int(keep.sum())
        F = float(np.sum((rotated @ beta) ** 2 / values[keep]) / q)
        nu = np.array([self.df(row) for row in rotated])
        return F, q, combined_df(nu)


def combined_df(nu: np.ndarray) -> float:
    """The F test's denominator df from the per-direction Satterthwaite dfs ν_m (lmerTest's
    ``get_Fstat_ddf``): ν for one direction, 2E/(E - q) with E = Σ ν_m/(ν_m - 2), and 2 when
    some ν_m ≤ 2."""
    if len(nu) == 1:
        return float(nu[0])
    if np.all(np.abs(np.diff(nu)) < 1e-8):
        return float(np.mean(nu))
    if np.any(nu <= 2):
        return 2.0
    E = float(np.sum(nu / (nu - 2.0)))
    return 2.0 * E / (E - len(nu))


def variance_derivatives(fit) -> VarianceDerivatives:
    """:class:`VarianceDerivatives` of a :class:`~bayesmix.RemlResult` (REML or ML); warns with
    :class:`~bayesmix.ConvergenceWarning`, as lmerTest does, when the deviance's Hessian has
    eigenvalues that are negative or close to 0 (a boundary fit, or not at an optimum)."""
    criterion = profiled_criterion(fit.design, fit.structure, fit.reml)
    p = fit.design.p

    def parts(theta: np.ndarray) -> np.ndarray:
        f = criterion.factorize(theta)
        log_det = f.logdet_z + f.logdet_x if fit.reml else f.logdet_z
        return np.concatenate([[log_det, f.pwrss], f.rx_inverse.ravel()])

    theta = fit.theta_values
    with one_blas_thread():  # the factorisations of small blocks, as in the fit (see bayesmix.threads)
        value, gradient, hessian = richardson(parts, theta)
    sigma, rss, nu = fit.sigma, value[1], criterion.dof
    k = len(theta) + 1
    H = np.empty((k, k))
    H[:-1, :-1] = hessian[0] + hessian[1] / sigma**2
    H[:-1, -1] = H[-1, :-1] = -2.0 * gradient[1] / sigma**3
    H[-1, -1] = 6.0 * rss / sigma**4 - 2.0 * nu / sigma**2
    rx_inverse = value[2:].reshape(p, p)
    jacobian = np.concatenate([sigma**2 * gradient[2:].T.reshape(-1, p, p), [2.0 * sigma * rx_inverse]])
    return VarianceDerivatives(sigma**2 * rx_inverse, jacobian, 2.0 * _positive_inverse(H))


def _positive_inverse(H: np.ndarray) -> np.ndarray:
    """H's pseudo-inverse over its eigenvalues above EIGEN_TOLERANCE, warning about the others."""
    values, vectors = np.linalg.eigh(H)
    small = np.abs(values) <= EIGEN_TOLERANCE
    if np.any(values < -EIGEN_TOLERANCE) or np.any(small):
        warn(
            f"The Hessian of the deviance in (theta, sigma) has eigenvalue(s) {values[values <= EIGEN_TOLERANCE].tolist()} "
            "that are negative or close to 0: the fit may be on a boundary or not at an optimum, and Satterthwaite's "
            "degrees of freedom leave those directions out (as lmerTest does).", ConvergenceWarning)
    keep = values > EIGEN_TOLERANCE
    return (vectors[:, keep] / values[keep]) @ vectors[:, keep].T


def richardson(f, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Value, gradient (m, k) and Hessian (m, k, k) of a vector-valued f at x by central
    differences with Richardson extrapolation (numDeriv's method, Richardson 1911)."""
    x = np.asarray(x, dtype=float)
    k = len(x)
    f0 = np.asarray(f(x), dtype=float)
    h0 = RELATIVE_STEP * np.maximum(np.abs(x), 0.1)
    grads, hessians = [], []
    for step in range(RICHARDSON_STEPS):
        h = h0 / 2.0**step
        up = [np.asarray(f(x + h[i] * _unit(k, i))) for i in range(k)]
        down = [np.asarray(f(x - h[i] * _unit(k, i))) for i in range(k)]
        grad = np.stack([(up[i] - down[i]) / (2.0 * h[i]) for i in range(k)], axis=-1)
        hess = np.empty(f0.shape + (k, k))
        for i in range(k):
            hess[..., i, i] = (up[i] - 2.0 * f0 + down[i]) / h[i] ** 2
            for j in range(i):
                ei, ej = h[i] * _unit(k, i), h[j] * _unit(k, j)
                cross = f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)
                hess[..., i, j] = hess[..., j, i] = cross / (4.0 * h[i] * h[j])
        grads.append(grad)
        hessians.append(hess)
    return f0, _extrapolate(grads), _extrapolate(hessians)


def _unit(k: int, i: int) -> np.ndarray:
    e = np.zeros(k)
    e[i] = 1.0
    return e


def _extrapolate(estimates: list[np.ndarray]) -> np.ndarray:
    """Richardson's table for estimates at steps h, h/2, h/4, ... whose errors are even in h."""
    table = list(estimates)
    for level in range(1, len(table)):
        factor = 4.0**level
        table = [(factor * table[i + 1] - table[i]) / (factor - 1.0) for i in range(len(table) - 1)]
    return table[0]
