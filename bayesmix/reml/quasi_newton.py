"""Minimisers over θ for :func:`~bayesmix.reml.optimize.optimize_theta` besides L-BFGS-B: a compiled
projected BFGS for one grouping factor (the refits' optimiser) and projected Newton steps with
the average-information curvature for several (:class:`AverageInformationNewton`, the fits').

With one grouping factor the criterion and its exact gradient are one compiled call
(:func:`~bayesmix.linalg.kernels.single_factor_criterion`, microseconds for a few effects per
level), so in scipy's L-BFGS-B the optimiser's own per-call Python overhead costs more than the
criterion. :func:`projected_bfgs` runs the whole minimisation in compiled code: BFGS on θ̃ =
θ * row_scale (the scale :func:`~bayesmix.reml.optimize.optimize_theta` works on) with the lower
bounds of the diagonal elements handled by projection (Bertsekas 1982): an element at its
bound whose gradient pushes it outwards is held there, the quasi-Newton step is taken in the
others, and a backtracking line search (Armijo, on the projected path) accepts it. The same
stopping rules as L-BFGS-B's (relative reduction of the criterion, projected gradient) with
the same tolerances; a refit's BFGS matrix starts from the Hessian of the fitted model at θ̂
(:func:`start_hessian`), which the refits are near. :class:`CompiledBFGS` plugs it into
:func:`~bayesmix.reml.optimize.optimize_theta`, which keeps lme4's boundary handling (the
escape from a saddle on the bound, the final boundary check).
"""

from __future__ import annotations

import numpy as np

from ..jit import njit
from ..linalg.kernels import cholesky_into, single_factor_criterion
from .criterion import ProfiledCriterion


@njit(cache=True)
def scaled_criterion(x, scale, rows, cols, q, A11, A1X, AXX, p, dof, reml):
    """The criterion (without its Σ log w term) and its gradient at θ̃ = ``x`` (θ = x / scale)."""
    T = np.zeros((q, q))
    for k in range(x.shape[0]):
        T[rows[k], cols[k]] = x[k] / scale[k]
    value, dT = single_factor_criterion(T, A11, A1X, AXX, p, dof, reml)
    grad = np.empty(x.shape[0])
    for k in range(x.shape[0]):
        grad[k] = dT[rows[k], cols[k]] / scale[k]
    return value, grad


@njit(cache=True)
def projected_bfgs(x0, lower, B0, scale, rows, cols, q, A11, A1X, AXX, p, dof, reml, max_iter, ftol, gtol):
    """Minimise the criterion over θ̃ ≥ ``lower`` from ``x0`` with BFGS matrix ``B0`` (see the
    module docstring).

    Returns
    -------
    x, value, iterations, evaluations, status
        ``status`` 1: projected gradient below ``gtol``; 2: relative reduction of the criterion
        below ``ftol``; 0: ``max_iter`` reached; -1: the line search found no lower value
        (converged as far as the arithmetic allows, or a non-finite criterion).
    """
    n = x0.shape[0]
    x = np.maximum(x0, lower)
    f, g = scaled_criterion(x, scale, rows, cols, q, A11, A1X, AXX, p, dof, reml)
    evaluations = 1
    B = B0.copy()
    free = np.empty(n, dtype=np.bool_)
    d = np.empty(n)
    Bff = np.empty((n, n))
    Lff = np.empty((n, n))
    z = np.empty(n)
    xn = np.empty(n)
    Bs = np.empty(n)
    status = 0
    iterations = 0
    if not np.isfinite(f):
        return x, f, iterations, evaluations, -1
    while iterations < max_iter:
        # the free elements: off the bound, or on it with the gradient pointing inwards
        nf = 0
        largest = 0.0
        for k in range(n):
            free[k] = not (x[k] <= lower[k] and g[k] >= 0.0)
            if free[k]:
                nf += 1
                largest = max(largest, abs(g[k]))
        if largest < gtol:
            status = 1
            break
        idx = np.empty(nf, dtype=np.int64)
        j = 0
        for k in range(n):
            if free[k]:
                idx[j] = k
                j += 1
        # the quasi-Newton step in the free elements: B_FF d_F = -g_F
        for a in range(nf):
            for b in range(nf):
                Bff[a, b] = B[idx[a], idx[b]]
        d[:] = 0.0
        if cholesky_into(Bff, Lff, nf):
            for a in range(nf):  # forward: L z = -g_F
                s = -g[idx[a]]
                for b in range(a):
                    s -= Lff[a, b] * z[b]
                z[a] = s / Lff[a, a]
            for a in range(nf - 1, -1, -1):  # back: L' d_F = z
                s = z[a]
                for b in range(a + 1, nf):
                    s -= Lff[b, a] * d[idx[b]]
                d[idx[a]] = s / Lff[a, a]
        slope = 0.0
        for k in range(n):
            slope += g[k] * d[k]
        if not slope < 0.0:  # B lost its positive definiteness on F: steepest descent, B reset
            for a in range(n):
                for b in range(n):
                    B[a, b] = B0[a, b]
            for k in range(n):
                d[k] = -g[k] / B0[k, k] if free[k] else 0.0
            slope = 0.0
            for k in range(n):
                slope += g[k] * d[k]
        # backtracking line search along the projected path
        t = 1.0
        accepted = False
        for _ in range(60):
            decrease = 0.0
            for k in range(n):
                xn[k] = max(x[k] + t * d[k], lower[k])
                decrease += g[k] * (xn[k] - x[k])
            fn, gn = scaled_criterion(xn, scale, rows, cols, q, A11, A1X, AXX, p, dof, reml)
            evaluations += 1
            if np.isfinite(fn) and fn <= f + 1e-4 * decrease:
                accepted = True
                break
            if np.isfinite(fn):  # the minimum of the quadratic through f, the slope and fn, kept in [0.1 t, 0.5 t]
                step = -slope * t * t / (2.0 * (fn - f - slope * t))
                t = min(max(step, 0.1 * t), 0.5 * t)
            else:
                t *= 0.1
        iterations += 1
        if not accepted:
            status = -1
            break
        # BFGS update with s = xn - x, y = gn - g, skipped unless s'y > 0
        sy = 0.0
        ss = 0.0
        yy = 0.0
        for k in range(n):
            sk, yk = xn[k] - x[k], gn[k] - g[k]
            sy += sk * yk
            ss += sk * sk
            yy += yk * yk
        if sy > 1e-10 * np.sqrt(ss * yy):
            sBs = 0.0
            for a in range(n):
                s = 0.0
                for b in range(n):
                    s += B[a, b] * (xn[b] - x[b])
                Bs[a] = s
                sBs += (xn[a] - x[a]) * s
            for a in range(n):
                for b in range(n):
                    B[a, b] += (gn[a] - g[a]) * (gn[b] - g[b]) / sy - Bs[a] * Bs[b] / sBs
        reduction = f - fn
        scale_f = max(abs(f), abs(fn), 1.0)
        x[:] = xn
        f = fn
        g = gn
        if reduction <= ftol * scale_f:
            status = 2
            break
    return x, f, iterations, evaluations, status


def start_hessian(criterion: ProfiledCriterion, theta: np.ndarray) -> np.ndarray:
    """The Hessian of a one-factor criterion in θ̃ = θ * row_scale at ``theta`` (central
    differences of the exact gradient), made positive definite (eigenvalues raised to 10⁻³ of
    the largest, at least 10⁻⁸): BFGS's start for refits near ``theta``."""
    scale = criterion.structure.row_scale
    x = np.asarray(theta, dtype=float) * scale
    n, h = len(x), 1e-4
    H = np.empty((n, n))
    for k in range(n):
        step = np.zeros(n)
        step[k] = h
        _, up = criterion.value_and_gradient((x + step) / scale)
        _, down = criterion.value_and_gradient((x - step) / scale)
        H[k] = (up - down) / (2 * h) / scale
    H = (H + H.T) / 2
    values, vectors = np.linalg.eigh(H)
    if not np.isfinite(values).all():
        return np.eye(n)
    values = np.maximum(np.abs(values), max(1e-3 * np.abs(values).max(), 1e-8))
    return (vectors * values) @ vectors.T


class CompiledBFGS:
    """:func:`projected_bfgs` as the minimiser of :func:`~bayesmix.reml.optimize.optimize_theta`
    for a one-factor criterion (``criterion.cp.single_factor``).

    Parameters
    ----------
    criterion
        The criterion to minimise.
    hessian
        BFGS's starting matrix in θ̃ (:func:`start_hessian`).
    """

    method = "projected BFGS (exact gradient, compiled)"

    def __init__(self, criterion: ProfiledCriterion, hessian: np.ndarray):
        block, cp, structure = criterion.structure.blocks[0], criterion.cp, criterion.structure
        self.criterion = criterion
        self.hessian = hessian
        self.lower = np.asarray(structure.lower, dtype=float)
        self.arguments = (structure.row_scale, block.theta_rows.astype(np.int64), block.theta_cols.astype(np.int64),
                          block.q, cp.A11, cp.A1X, cp.AXX, cp.p, float(criterion.dof), bool(criterion.reml))

    def scaled(self, theta_tilde: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at θ̃ (one compiled call)."""
        self.criterion.evaluations += 1
        value, grad = scaled_criterion(np.asarray(theta_tilde, dtype=float), *self.arguments)
        return float(value) - self.criterion.log_weights, grad

    def run(self, start: np.ndarray, max_iter: int, ftol: float, gtol: float):
        """One run from θ̃ = ``start``: (θ̃, criterion, iterations, converged, message)."""
        x, value, iterations, evaluations, status = projected_bfgs(
            np.asarray(start, dtype=float), self.lower, self.hessian, *self.arguments, max_iter, ftol, gtol)
        self.criterion.evaluations += int(evaluations)
        return x, float(value) - self.criterion.log_weights, int(iterations), status > 0, MESSAGES[int(status)]


NEWTON_DECREMENT = "predicted reduction of the criterion below ftol"
MESSAGES = {1: "projected gradient below gtol", 2: "relative reduction of the criterion below ftol",
            0: "iteration limit reached", -1: "line search found no lower value"}


class AverageInformationNewton:
    """Projected Newton steps on θ̃ = θ * row_scale with the criterion's average-information
    curvature (:meth:`~bayesmix.reml.criterion.ProfiledCriterion.value_gradient_curvature`): the
    minimiser of :func:`~bayesmix.reml.optimize.optimize_theta` for several grouping factors,
    where each evaluation costs a dense (blocked) or a sparse factorisation and the number of
    evaluations is what counts (the AI-REML of Gilmour, Thompson & Cullis 1995, in θ).

    The curvature is positive semi-definite and near the optimum close to the Hessian, so the
    full step is taken almost always: InstEval's crossed model converges in 7 evaluations where
    L-BFGS-B took 25. Bounds, line search and stopping rules as :func:`projected_bfgs`: an
    element at its bound whose gradient pushes it outwards is held there, the step is taken in
    the others and accepted by a backtracking (Armijo) line search on the projected path; the run stops when the relative reduction of the criterion
    is below ``ftol`` or the projected gradient below ``gtol``, and also, which saves the last
    evaluation, when the reduction the next step predicts (half the Newton decrement g'B⁻¹g) is
    below ``ftol`` times the criterion. Interface as :class:`CompiledBFGS`.
    """

    method = "Newton (average information, exact gradient)"

    def __init__(self, criterion: ProfiledCriterion):
        self.criterion = criterion
        self.scale = criterion.structure.row_scale
        self.lower = np.asarray(criterion.structure.lower, dtype=float)
        self.last: dict[bytes, tuple[float, np.ndarray, np.ndarray]] = {}  # the latest evaluation (the start, evaluated once)

    def scaled(self, theta_tilde: np.ndarray) -> tuple[float, np.ndarray]:
        """The criterion and its gradient at θ̃."""
        value, grad, _ = self._evaluate(theta_tilde)
        return value, grad

    def _evaluate(self, theta_tilde: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The criterion, its gradient and curvature in θ̃."""
        key = np.asarray(theta_tilde, dtype=float).tobytes()
        if key not in self.last:
            value, grad, curvature = self.criterion.value_gradient_curvature(theta_tilde / self.scale)
            self.last.clear()
            self.last[key] = (value, grad / self.scale, curvature / np.outer(self.scale, self.scale))
        return self.last[key]

    def run(self, start: np.ndarray, max_iter: int, ftol: float, gtol: float):
        """One run from θ̃ = ``start``: (θ̃, criterion, iterations, converged, message)."""
        lower = self.lower
        x = np.maximum(np.asarray(start, dtype=float), lower)
        f, g, B = self._evaluate(x)
        if not np.isfinite(f):
            return x, f, 0, False, MESSAGES[-1]
        for iteration in range(1, max_iter + 1):
            free = ~((x <= lower) & (g >= 0.0))
            if not free.any() or np.abs(g[free]).max() < gtol:
                return x, f, iteration - 1, True, MESSAGES[1]
            d = np.zeros_like(x)
            d[free] = newton_step(B[np.ix_(free, free)], g[free])
            slope = g @ d
            if -0.5 * slope <= ftol * max(abs(f), 1.0):  # the Newton step's predicted reduction, g'B⁻¹g / 2
                return x, f, iteration - 1, True, NEWTON_DECREMENT
            t, accepted = 1.0, False
            for _ in range(60):
                xn = np.maximum(x + t * d, lower)
                fn, gn, Bn = self._evaluate(xn)
                if np.isfinite(fn) and fn <= f + 1e-4 * (g @ (xn - x)):
                    accepted = True
                    break
                # the minimum of the quadratic through f, the slope and fn, kept in [0.1 t, 0.5 t]
                t = min(max(-slope * t * t / (2.0 * (fn - f - slope * t)), 0.1 * t), 0.5 * t) if np.isfinite(fn) else 0.1 * t
            if not accepted:
                return x, f, iteration, False, MESSAGES[-1]
            reduction, scale_f = f - fn, max(abs(f), abs(fn), 1.0)
            x, f, g, B = xn, fn, gn, Bn
            if reduction <= ftol * scale_f:
                return x, f, iteration, True, MESSAGES[2]
        return x, f, max_iter, False, MESSAGES[0]


def newton_step(B: np.ndarray, g: np.ndarray) -> np.ndarray:
    """-B⁺g for a symmetric positive semi-definite B, its eigenvalues raised to 10⁻⁸ of the largest
    (a direction of descent where B is singular, as at a variance held at 0); -g where B is 0 or
    not finite (the line search then scales the step)."""
    if not np.isfinite(B).all() or not np.abs(B).max() > 0.0:
        return -g
    values, vectors = np.linalg.eigh(B)
    floor = 1e-8 * np.abs(values).max()
    return -vectors @ ((vectors.T @ g) / np.maximum(values, floor))
