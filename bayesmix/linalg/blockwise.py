"""PIRLS and the gradient of the Laplace deviance for several grouping factors, compiled, on the
blocked factor.

With several grouping factors and β given, M = Λ'Z'WZΛ + I (:mod:`bayesmix.linalg.pirls`) has
the blocks of the factor of :mod:`bayesmix.linalg.factorization`: M11, block diagonal with one
q1 x q1 block per level of the first factor (the one with the most levels), M21 = Λ₂'Z2'WZ1Λ₁,
sparse (nonzero only for a first-factor level and a rest row that share observations), and
M22 = Λ₂'Z2'WZ2Λ₂ + I, dense. So the modes do not decouple by level as they do with one factor
(:mod:`bayesmix.linalg.levelwise`), but each Newton step of PIRLS is one pass over the rows and
one blocked factor: the weighted cross-products Z'WZ in the layout of
:class:`~bayesmix.data.crossprod.CrossProductPlan` (:func:`_evaluate`), M11 factored level by
level and the rest block downdated by the first (:func:`~bayesmix.linalg.kernels.level_factor`,
:func:`~bayesmix.linalg.kernels.rest_downdate`, the kernels of
:func:`~bayesmix.linalg.factorization.factorize`), then the dense Cholesky factor of the Schur
complement (LAPACK, through numba). :func:`blocked_modes` runs the whole of PIRLS in one call:
the start (the last mode corrected to first order for the change of the parameters by one
chord step with its factor, as :func:`~bayesmix.linalg.pirls.predicted_modes`; the last mode
itself where that is better; zero where neither leads to a mode), the Newton steps with step
halving and the convergence rule of the per-level path, and the factor at the mode.

:func:`blocked_gradient` is the adjoint gradient of
:func:`~bayesmix.linalg.pirls.laplace_gradient` in two passes over the rows, given the selected
inverse of M at the mode (:attr:`~bayesmix.linalg.factorization.Factorization.selected_inverse`,
the entries of M⁻¹ where Z'Z has entries, which is all the leverages and traces read): per row
the effects' loadings a_i = Λ'z_i, P a_i in row i's effects, the leverage, ∂W/∂η and the
derivatives in log φ by the central differences of :class:`~bayesmix.linalg.pirls.GlmmRows`
(:mod:`bayesmix.linalg.working`); the one solve r = M⁻¹A'v with the factor; and the sums over
the rows that give ∂d/∂Λ per factor, ∂d/∂β and ∂d/∂log φ.

Both kernels release the GIL, so that the chains of a sampler running in threads (nutpie's)
evaluate their densities in parallel. The dense LAPACK calls should run on one BLAS thread
(:mod:`bayesmix.threads`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.crossprod import CrossProductPlan
from ..data.layout import Structure
from ..families import link_inverse_row, log_likelihood_kernel_row
from ..jit import njit
from .factorization import RestLambda
from .kernels import level_factor, rest_downdate, symmetrize_lower
from .levelwise import level_constants, level_solve
from .working import (dispersion_slopes_row, fixed_part, information_slope_row, level_effects, row_terms,
                      weighted_working_response, working_row)


@dataclass(frozen=True, eq=False)
class BlockedRows:
    """The rows of a model with several grouping factors, as the blocked kernels read them.

    Attributes
    ----------
    X, y, weights, offset
        The fixed-effects matrix (n, p), the response, the prior weights and the offset.
    codes, z
        The first factor block's level of each row (n,) and its random-effects matrix (n, q1).
    columns, values, slots, indptr, pair_rows
        The rest block's pattern (:class:`~bayesmix.data.crossprod.CrossProductPlan`): row i's
        columns of the rest block and Z's values there (n, r), their slots among the pairs of
        ``Z2'Z1``, and the pair layout (first-factor level l's pairs are
        ``indptr[l]:indptr[l + 1]``, at rest rows ``pair_rows``).
    positions, sizes, factors
        Per rest row: its effect's position within its level, the number of effects per level
        of its factor, and the factor's index among the rest factor blocks
        (:meth:`~bayesmix.linalg.factorization.RestLambda.row_templates`).
    constant
        The sum over the rows of the terms of ℓ free of η and of the dispersion
        (:func:`~bayesmix.families.log_likelihood_constant_row`).
    """

    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    codes: np.ndarray
    z: np.ndarray
    columns: np.ndarray
    values: np.ndarray
    slots: np.ndarray
    indptr: np.ndarray
    pair_rows: np.ndarray
    positions: np.ndarray
    sizes: np.ndarray
    factors: np.ndarray
    constant: float

    @classmethod
    def of(cls, structure: Structure, plan: CrossProductPlan, X, y, weights, offset, family: int) -> BlockedRows:
        """The rows of ``structure`` (several factor blocks), with ``plan`` its cross-product
        layout, for the family with code ``family``."""
        first = structure.blocks[0]
        X, y, weights, offset, z = (np.ascontiguousarray(np.asarray(a, dtype=float)) for a in (X, y, weights, offset, first.z))
        positions, sizes, factors, _ = RestLambda(structure.blocks[1:], structure.initial_theta()).row_templates()
        constant = level_constants(family, np.array([0, len(y)], dtype=np.int64), y, weights)[0]
        return cls(X, y, weights, offset, np.ascontiguousarray(first.codes, dtype=np.int64), z, plan.rest_columns,
                   plan.rest_values, plan.rest_slots, plan.pattern.indptr, plan.pattern.rows, positions.astype(np.int64),
                   sizes.astype(np.int64), factors.astype(np.int64), float(constant))

    def data(self) -> tuple:
        """The arrays as the kernels take them."""
        return (self.X, self.y, self.weights, self.offset, self.codes, self.z, self.columns, self.values, self.slots,
                self.indptr, self.pair_rows)

    def rest(self, structure: Structure, theta: np.ndarray) -> tuple:
        """Λ₂ as the kernels take it: the rest factors' templates stacked (factors, q, q) and
        the rows' descriptors."""
        blocks = structure.blocks[1:]
        q = max(block.q for block in blocks)
        T2 = np.zeros((len(blocks), q, q))
        for k, block in enumerate(blocks):
            T2[k, : block.q, : block.q] = block.lambda_(theta)
        return T2, self.factors, self.positions, self.sizes


@njit(cache=True, error_model="numpy")
def _rest_effects(rest, u2, out):
    """out = Λ₂u₂ (Λ₂ block diagonal with the factors' lower-triangular templates)."""
    T2, factors, positions, _ = rest
    for r in range(u2.size):
        f, p = factors[r], positions[r]
        s = 0.0
        for j in range(p + 1):
            s += T2[f, p, j] * u2[r - p + j]
        out[r] = s


@njit(cache=True, error_model="numpy")
def _rest_t(rest, v, out):
    """out = Λ₂'v."""
    T2, factors, positions, sizes = rest
    for r in range(v.size):
        f, p = factors[r], positions[r]
        s = 0.0
        for j in range(p, sizes[r]):
            s += T2[f, j, p] * v[r - p + j]
        out[r] = s


@njit(cache=True, error_model="numpy")
def _rest_congruence(C, rest):
    """Λ₂'CΛ₂ for a symmetric C, whose lower triangle is given (a new array)."""
    symmetrize_lower(C)
    size = C.shape[0]
    E = np.empty((size, size))
    column, out = np.empty(size), np.empty(size)
    for j in range(size):  # E = Λ₂'C, column by column
        for i in range(size):
            column[i] = C[i, j]
        _rest_t(rest, column, out)
        E[:, j] = out
    F = np.empty((size, size))
    for j in range(size):  # Λ₂'E' = Λ₂'CΛ₂
        _rest_t(rest, E[j], out)
        F[:, j] = out
    return F


@njit(cache=True, error_model="numpy")
def _evaluate(family, link, canonical, data, fixed, T1, rest, u1, u2, dispersion, link_step, accumulate, eta, b1, b2, A11, A21,
              A22, s1, s2, c1, c2):
    """The rows at the effects (u1, u2) in one pass: η_i = fixed_i + z_i'Λu (into ``eta``) and
    g(u) = -2 Σ ℓ_i + |u|² (without ℓ's terms free of η and of the dispersion,
    :attr:`BlockedRows.constant`), returned with Σ W_i ỹ_i² (ỹ the working response
    η_i - fixed_i + ℓ'_i/W_i). With ``accumulate``, also the weighted cross-products at u in the
    layout of :class:`~bayesmix.data.crossprod.CrossProductPlan` (``canonical`` True for the
    Fisher information): A11 = Z1'WZ1 per level, A21 = Z2'WZ1 per pair, the lower triangle of
    A22 = Z2'WZ2, the score's sums s = Z'ℓ' and c = Z'Wỹ, the first block's per level and the
    rest's (into A11, A21, A22, s1, s2, c1, c2); else 0 for Σ W_i ỹ_i²."""
    X, y, weights, offset, codes, z, columns, values, slots, indptr, pair_rows = data
    levels, q1 = u1.shape
    r = columns.shape[1]
    for j in range(levels):
        level_effects(T1, u1[j], b1[j])
    _rest_effects(rest, u2, b2)
    if accumulate:
        A11[:] = 0.0
        A21[:] = 0.0
        A22[:] = 0.0
        s1[:] = 0.0
        s2[:] = 0.0
        c1[:] = 0.0
        c2[:] = 0.0
    total, yy = 0.0, 0.0
    for i in range(y.size):
        level = codes[i]
        e = fixed[i]
        for k in range(q1):
            e += z[i, k] * b1[level, k]
        for a in range(r):
            e += values[i, a] * b2[columns[i, a]]
        eta[i] = e
        if not accumulate:
            mu = link_inverse_row(link, e)[0]
            total += log_likelihood_kernel_row(family, y[i], mu, weights[i], dispersion)
            continue
        loglik, score, information = row_terms(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
        total += loglik
        response, weighted_square = weighted_working_response(score, information, e - fixed[i])
        yy += weighted_square
        for k in range(q1):
            zk = z[i, k]
            s1[level, k] += score * zk
            c1[level, k] += response * zk
            for m in range(q1):
                A11[level, k, m] += information * zk * z[i, m]
        for a in range(r):
            va = values[i, a]
            ca = columns[i, a]
            wa = information * va
            s2[ca] += score * va
            c2[ca] += response * va
            for b in range(a + 1):  # a row's columns increase: the lower triangle
                A22[ca, columns[i, b]] += wa * values[i, b]
            slot = slots[i, a]
            for k in range(q1):
                A21[slot, k] += wa * z[i, k]
    norm = 0.0
    for j in range(levels):
        for k in range(q1):
            norm += u1[j, k] * u1[j, k]
    for k in range(u2.size):
        norm += u2[k] * u2[k]
    return -2.0 * total + norm, yy


@njit(cache=True, error_model="numpy")
def _factor(T1, rest, scalar, indptr, pair_rows, A11, A21, A22, L11inv, P1):
    """The blocked Cholesky factor of M = Λ'AΛ + I from the cross-products A (as
    :func:`_evaluate` leaves them): L11⁻¹ per level (into ``L11inv``), Λ₁M11⁻¹Λ₁' per level (into
    ``P1``), and L22, the lower Cholesky factor of M22 - M21 M11⁻¹ M12. Returns (ok, log|M|, L22);
    ``ok`` False where M is not positive definite. ``scalar``: every rest term has one effect
    per level (Λ₂ diagonal)."""
    T2, factors, _, _ = rest
    levels, q1 = A11.shape[0], A11.shape[1]
    TA, M, L = np.empty((q1, q1)), np.empty((q1, q1)), np.empty((q1, q1))
    logdet = 0.0
    for j in range(levels):
        if not level_factor(T1, A11[j], TA, M, L, L11inv[j], q1):
            return False, np.nan, np.empty((0, 0))
        for k in range(q1):
            logdet += 2.0 * np.log(L[k, k])
            for m in range(q1):  # M11⁻¹ = L11⁻ᵀL11⁻¹
                t = 0.0
                for s in range(max(k, m), q1):
                    t += L11inv[j, s, k] * L11inv[j, s, m]
                M[k, m] = t
        for k in range(q1):
            for m in range(q1):
                t = 0.0
                for s in range(q1):
                    for v in range(q1):
                        t += T1[k, s] * M[s, v] * T1[m, v]
                P1[j, k, m] = t
    size = A22.shape[0]
    scale = np.ones(size)
    if scalar:
        for c in range(size):
            scale[c] = T2[factors[c], 0, 0]
    C, _ = rest_downdate(indptr, pair_rows, A21, P1, np.zeros((levels, q1, 0)), A22, scale)
    if not scalar:
        C = _rest_congruence(C, rest)
    for c in range(size):
        C[c, c] += 1.0
    try:
        L22 = np.linalg.cholesky(C)  # reads the lower triangle
    except Exception:  # not positive definite, or not finite
        return False, np.nan, np.empty((0, 0))
    for c in range(size):
        logdet += 2.0 * np.log(L22[c, c])
    return True, logdet, L22


@njit(cache=True, error_model="numpy")
def _forward(T1, rest, indptr, pair_rows, A21, L11inv, L22, r1, r2, y1, w1, w2):
    """The forward half of M x = r with the blocked factor: y1 = M11⁻¹r1 and w1 = L11⁻¹r1 per
    level, and w2 = L22⁻¹(r2 - M21 y1) (M21 y1 = Λ₂'Σ_pairs A21 Λ₁ y1), into y1, w1, w2."""
    levels, q1 = r1.shape
    size = r2.size
    t1, half = np.empty(q1), np.empty(q1)
    raw = np.zeros(size)
    for j in range(levels):
        level_solve(L11inv[j], r1[j], y1[j], half)
        for k in range(q1):
            t = 0.0
            for m in range(k + 1):
                t += L11inv[j, k, m] * r1[j, m]
            w1[j, k] = t
        level_effects(T1, y1[j], t1)
        for a in range(indptr[j], indptr[j + 1]):
            t = 0.0
            for k in range(q1):
                t += A21[a, k] * t1[k]
            raw[pair_rows[a]] += t
    _rest_t(rest, raw, w2)
    for c in range(size):  # L22⁻¹
        t = r2[c] - w2[c]
        for m in range(c):
            t -= L22[c, m] * w2[m]
        w2[c] = t / L22[c, c]


@njit(cache=True, error_model="numpy")
def _solve(T1, rest, indptr, pair_rows, A21, L11inv, L22, r1, r2, x1, x2):
    """x = M⁻¹r with the blocked factor, by block elimination: x2 = (L22 L22')⁻¹(r2 - M21 M11⁻¹r1),
    x1 = M11⁻¹(r1 - M12 x2); into x1 (levels, q1) and x2 (Q2,)."""
    levels, q1 = r1.shape
    size = r2.size
    y1, w1 = np.empty((levels, q1)), np.empty((levels, q1))
    _forward(T1, rest, indptr, pair_rows, A21, L11inv, L22, r1, r2, y1, w1, x2)
    for c in range(size - 1, -1, -1):  # L22'⁻¹, by columns of L22' (rows of L22)
        x2[c] /= L22[c, c]
        for m in range(c):
            x2[m] -= L22[c, m] * x2[c]
    b2 = np.empty(size)
    _rest_effects(rest, x2, b2)
    raw, t1, half = np.empty(q1), np.empty(q1), np.empty(q1)
    for j in range(levels):  # M12 x2 at level j: Λ₁'Σ_pairs A21'(Λ₂x2)
        raw[:] = 0.0
        for a in range(indptr[j], indptr[j + 1]):
            for k in range(q1):
                raw[k] += A21[a, k] * b2[pair_rows[a]]
        for k in range(q1):
            t = r1[j, k]
            for m in range(k, q1):
                t -= T1[m, k] * raw[m]
            t1[k] = t
        level_solve(L11inv[j], t1, x1[j], half)


@njit(cache=True, error_model="numpy")
def _gradient_half(T1, rest, u1, u2, s1, s2, g1, g2):
    """(∂g/∂u)/2 = u - Λ'Z'ℓ' from the score's sums s, into g1, g2."""
    levels, q1 = u1.shape
    for j in range(levels):
        for k in range(q1):
            t = u1[j, k]
            for m in range(k, q1):
                t -= T1[m, k] * s1[j, m]
            g1[j, k] = t
    _rest_t(rest, s2, g2)
    for c in range(u2.size):
        g2[c] = u2[c] - g2[c]


@njit(cache=True, error_model="numpy")
def _pirls(family, link, canonical, data, fixed, T1, rest, scalar, u1, u2, dispersion, eta, trial_eta, work, max_steps,
           max_halvings, step_tol, newton_tol, link_step):
    """Newton's method with step halving on g from (u1, u2) (overwritten by the mode), with the
    rule of the per-level path (:func:`~bayesmix.linalg.levelwise.level_modes`): a full step
    below the Newton tolerance is taken without testing that g decreases (its decrease is below
    g's rounding), and a Fisher-scoring step where the observed information gives no positive
    definite M. ``work`` holds the cross-products and factor (see :func:`blocked_modes`), left
    at the mode. Returns (ok, g, log|M|, L22, Σ W_i ỹ_i², steps, converged)."""
    X, y, weights, offset, codes, z, columns, values, slots, indptr, pair_rows = data
    A11, A21, A22, s1, s2, c1, c2, b1, b2, L11inv, P1 = work
    levels, q1 = u1.shape
    size = u2.size
    g, yy = _evaluate(family, link, canonical, data, fixed, T1, rest, u1, u2, dispersion, link_step, True, eta, b1, b2, A11, A21,
                      A22, s1, s2, c1, c2)
    g1, g2 = np.empty((levels, q1)), np.empty(size)
    d1, d2 = np.empty((levels, q1)), np.empty(size)
    t1, t2 = np.empty((levels, q1)), np.empty(size)
    steps, converged = 0, False
    while True:
        ok, logdet, L22 = _factor(T1, rest, scalar, indptr, pair_rows, A11, A21, A22, L11inv, P1)
        if converged or steps == max_steps:
            break
        fisher = not ok
        if fisher:  # the observed information is not positive definite here: a Fisher-scoring step
            _evaluate(family, link, True, data, fixed, T1, rest, u1, u2, dispersion, link_step, True, trial_eta, b1, b2, A11, A21,
                      A22, s1, s2, c1, c2)
            ok, _, L22 = _factor(T1, rest, scalar, indptr, pair_rows, A11, A21, A22, L11inv, P1)
            if not ok:
                return False, g, np.nan, L22, 0.0, steps, False
        _gradient_half(T1, rest, u1, u2, s1, s2, g1, g2)
        _solve(T1, rest, indptr, pair_rows, A21, L11inv, L22, g1, g2, d1, d2)  # the Newton step is -d
        full = 0.0
        for j in range(levels):
            for k in range(q1):
                full = max(full, abs(d1[j, k]) / (1.0 + abs(u1[j, k])))
        for c in range(size):
            full = max(full, abs(d2[c]) / (1.0 + abs(u2[c])))
        scale = 1.0
        accepted = False
        trial_g = g
        for _ in range(max_halvings):
            for j in range(levels):
                for k in range(q1):
                    t1[j, k] = u1[j, k] - scale * d1[j, k]
            for c in range(size):
                t2[c] = u2[c] - scale * d2[c]
            trial_g = _evaluate(family, link, canonical, data, fixed, T1, rest, t1, t2, dispersion, link_step, False, trial_eta,
                                b1, b2, A11, A21, A22, s1, s2, c1, c2)[0]
            if trial_g <= g or full < newton_tol:
                accepted = True
                break
            scale *= 0.5
        if not accepted:  # no decrease at all: the mode is as exact as rounding allows
            converged = True
            if fisher:  # the cross-products at u, with the observed information again
                _evaluate(family, link, canonical, data, fixed, T1, rest, u1, u2, dispersion, link_step, True, eta, b1, b2, A11,
                          A21, A22, s1, s2, c1, c2)
            continue
        steps += 1
        u1[:] = t1
        u2[:] = t2
        g, yy = _evaluate(family, link, canonical, data, fixed, T1, rest, u1, u2, dispersion, link_step, True, eta, b1, b2, A11,
                          A21, A22, s1, s2, c1, c2)
        size_step = full * scale
        # a full Newton step of size s leaves an error of order s² (quadratic convergence)
        converged = size_step < step_tol or (scale == 1.0 and size_step < newton_tol)
    if not ok:
        return False, g, np.nan, L22, 0.0, steps, converged
    return True, g, logdet, L22, yy, steps, converged


@njit(cache=True, error_model="numpy", nogil=True)
def blocked_modes(family, link, canonical, data, T1, rest, scalar, beta, dispersion, u0, predict, T1_0, rest_0, A21_0, L11inv_0,
                  L22_0, max_steps, max_halvings, step_tol, newton_tol, link_step, constant):
    """The conditional mode of u at (Λ, β, φ) with several factors (see the module docstring)
    and its blocked factor.

    Parameters
    ----------
    family, link, canonical
        The family's :attr:`~bayesmix.families.Family.code`, its link's code, and whether the link is canonical.
    data
        The rows (:meth:`BlockedRows.data`).
    T1, rest, scalar
        Λ₁ (q1 x q1), Λ₂ (:meth:`BlockedRows.rest`), and whether Λ₂ is diagonal.
    beta, dispersion
        β and the dispersion (NaN for none).
    u0
        The start, flat (the first block level-major, then the rest block).
    predict, T1_0, rest_0, A21_0, L11inv_0, L22_0
        With ``predict``, u0 is a mode at nearby parameters (Λ₁ = T1_0, Λ₂ = rest_0) whose
        factor is L11inv_0, L22_0 with Z2'WZ1 = A21_0: PIRLS starts from its chord-step
        prediction (:func:`~bayesmix.linalg.pirls.predicted_modes`) or from u0, whichever has
        the lower penalised deviance.
    max_steps, max_halvings, step_tol, newton_tol, link_step
        PIRLS's limits and tolerances (:mod:`bayesmix.linalg.pirls`).
    constant
        :attr:`BlockedRows.constant`.

    Returns
    -------
    ok, u, eta, log_likelihood, logdet, L11inv, L22, A21, w1, w2, schur, steps, converged
        ``ok`` False when no start reaches a positive definite M; û (flat); η̂; Σ ℓ_i(η̂_i);
        log|M|; the factor at the mode (L11⁻¹ per level, L22) and Z2'WZ1 there (per pair); the
        working response's column of the factor, L⁻¹Λ'Z'Wỹ (first block, rest block), and its
        Schur complement Σ W_i ỹ_i² - |L⁻¹Λ'Z'Wỹ|²; Newton steps; whether PIRLS converged.
    """
    X, y, weights, offset, codes, z, columns, values, slots, indptr, pair_rows = data
    n = y.size
    levels, q1 = L11inv_0.shape[0], T1.shape[0]
    size = u0.size - levels * q1
    fixed, eta, trial_eta = np.empty(n), np.empty(n), np.empty(n)
    fixed_part(X, offset, beta, 0, n, fixed)
    work = (np.empty((levels, q1, q1)), np.empty(A21_0.shape), np.empty((size, size)), np.empty((levels, q1)), np.empty(size),
            np.empty((levels, q1)), np.empty(size), np.empty((levels, q1)), np.empty(size), np.empty((levels, q1, q1)),
            np.empty((levels, q1, q1)))
    A11, A21, A22, s1, s2, c1, c2, b1, b2, L11inv, P1 = work
    u1 = u0[: levels * q1].copy().reshape(levels, q1)
    u2 = u0[levels * q1 :].copy()
    started_at_zero = not np.any(u0 != 0.0)
    if predict:  # one chord step with the old factor, at the new parameters
        g0 = _evaluate(family, link, canonical, data, fixed, T1, rest, u1, u2, dispersion, link_step, True, eta, b1, b2, A11, A21,
                       A22, s1, s2, c1, c2)[0]
        g1, g2 = np.empty((levels, q1)), np.empty(size)
        d1, d2 = np.empty((levels, q1)), np.empty(size)
        _gradient_half(T1, rest, u1, u2, s1, s2, g1, g2)
        _solve(T1_0, rest_0, indptr, pair_rows, A21_0, L11inv_0, L22_0, g1, g2, d1, d2)
        d1 = u1 - d1
        d2 = u2 - d2
        g_predicted = _evaluate(family, link, canonical, data, fixed, T1, rest, d1, d2, dispersion, link_step, False, trial_eta, b1,
                                b2, A11, A21, A22, s1, s2, c1, c2)[0]
        if g_predicted <= g0 or not g0 == g0:  # else the old mode itself (also when the prediction's g is not a number)
            u1, u2 = d1, d2
    ok, g, logdet, L22, yy, steps, converged = _pirls(family, link, canonical, data, fixed, T1, rest, scalar, u1, u2, dispersion,
                                                     eta, trial_eta, work, max_steps, max_halvings, step_tol, newton_tol,
                                                     link_step)
    if not (ok and np.isfinite(g + logdet)) and not started_at_zero:  # the start led astray: from zero
        u1[:] = 0.0
        u2[:] = 0.0
        ok, g, logdet, L22, yy, steps, converged = _pirls(family, link, canonical, data, fixed, T1, rest, scalar, u1, u2,
                                                         dispersion, eta, trial_eta, work, max_steps, max_halvings, step_tol,
                                                         newton_tol, link_step)
    u = np.concatenate((u1.ravel(), u2))
    w1, w2 = np.empty((levels, q1)), np.empty(size)
    if not ok:
        return False, u, eta, np.nan, np.nan, L11inv, L22, A21, w1, w2, np.nan, steps, False
    # the working response's column: L⁻¹Λ'Z'Wỹ
    r1, r2, y1 = np.empty((levels, q1)), np.empty(size), np.empty((levels, q1))
    for j in range(levels):
        for k in range(q1):
            t = 0.0
            for m in range(k, q1):
                t += T1[m, k] * c1[j, m]
            r1[j, k] = t
    _rest_t(rest, c2, r2)
    _forward(T1, rest, indptr, pair_rows, A21, L11inv, L22, r1, r2, y1, w1, w2)
    schur = yy
    for j in range(levels):
        for k in range(q1):
            schur -= w1[j, k] * w1[j, k]
    for c in range(size):
        schur -= w2[c] * w2[c]
    norm = 0.0
    for k in range(u.size):
        norm += u[k] * u[k]
    log_likelihood = constant - 0.5 * (g - norm)
    return True, u, eta, log_likelihood, logdet, L11inv, L22, A21, w1, w2, schur, steps, converged


@njit(cache=True, error_model="numpy", nogil=True)
def blocked_gradient(family, link, canonical, has_dispersion, data, T1, rest, beta, dispersion, u, L11inv, L22, A21, P11, P21,
                     P22, link_step):
    """The gradient of the Laplace deviance at the mode ``u`` (flat) with several factors: the
    adjoint formulas of :func:`~bayesmix.linalg.pirls.laplace_gradient` in two passes over the
    rows.

    Arguments as for :func:`blocked_modes`; ``has_dispersion`` whether the family has one;
    L11inv, L22 and A21 the factor at the mode and Z2'WZ1 there (as :func:`blocked_modes`
    returns them), P11 (levels, q1, q1), P21 (pairs, q1) and P22 (Q2, Q2, whole) the selected
    inverse of M there (:attr:`~bayesmix.linalg.factorization.Factorization.selected_inverse`).

    Returns
    -------
    G1, G2, beta_gradient, log_dispersion_gradient
        ∂d/∂Λ₁ (q1 x q1) and ∂d/∂Λ_f per rest factor (factors, q, q): per factor block,
        G = Σ_i [e_i z_i û_l' + ℓ'_i z_i r_l' + 2 W_i z_i (P a_i)'] over its levels l and the
        rows i of each (∂d/∂θ is G at θ's positions in Λ); ∂d/∂β = X'e; ∂d/∂log φ (0 without a
        dispersion).
    """
    X, y, weights, offset, codes, z, columns, values, slots, indptr, pair_rows = data
    T2, factors, positions, sizes = rest
    n, p = X.shape
    levels, q1 = L11inv.shape[0], T1.shape[0]
    r = columns.shape[1]
    size = u.size - levels * q1
    u1 = u[: levels * q1].reshape(levels, q1)
    u2 = u[levels * q1 :]
    fixed = np.empty(n)
    fixed_part(X, offset, beta, 0, n, fixed)
    b1, b2 = np.empty((levels, q1)), np.empty(size)
    for j in range(levels):
        level_effects(T1, u1[j], b1[j])
    _rest_effects(rest, u2, b2)
    eta, score, information, v = np.empty(n), np.empty(n), np.empty(n), np.empty(n)
    a1, a2, Pa1, Pa2 = np.empty((n, q1)), np.empty((n, r)), np.empty((n, q1)), np.empty((n, r))
    c1, c2 = np.zeros((levels, q1)), np.zeros(size)
    for i in range(n):  # first pass: η, ℓ', W, a_i = Λ'z_i, P a_i, v_i = h_i ∂W_i/∂η_i and c = A'v
        level = codes[i]
        e = fixed[i]
        for k in range(q1):
            e += z[i, k] * b1[level, k]
            t = 0.0
            for m in range(k, q1):
                t += T1[m, k] * z[i, m]
            a1[i, k] = t
        for a in range(r):
            ca = columns[i, a]
            e += values[i, a] * b2[ca]
            f, pos = factors[ca], positions[ca]
            t = 0.0
            for j in range(pos, sizes[ca]):
                t += T2[f, j, pos] * values[i, a - pos + j]
            a2[i, a] = t
        eta[i] = e
        score[i], information[i] = working_row(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
        slope = information_slope_row(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
        leverage = 0.0
        for k in range(q1):
            t = 0.0
            for m in range(q1):
                t += P11[level, k, m] * a1[i, m]
            for a in range(r):
                t += P21[slots[i, a], k] * a2[i, a]
            Pa1[i, k] = t
            leverage += a1[i, k] * t
        for a in range(r):
            pair = slots[i, a]
            ca = columns[i, a]
            t = 0.0
            for k in range(q1):
                t += P21[pair, k] * a1[i, k]
            for b in range(r):
                t += P22[ca, columns[i, b]] * a2[i, b]
            Pa2[i, a] = t
            leverage += a2[i, a] * t
        v[i] = leverage * slope
        for k in range(q1):
            c1[level, k] += v[i] * a1[i, k]
        for a in range(r):
            c2[columns[i, a]] += v[i] * a2[i, a]
    r1, r2 = np.empty((levels, q1)), np.empty(size)
    _solve(T1, rest, indptr, pair_rows, A21, L11inv, L22, c1, c2, r1, r2)  # r = M⁻¹A'v
    G1 = np.zeros((q1, q1))
    G2 = np.zeros(T2.shape)
    beta_gradient = np.zeros(p)
    dispersion_gradient = 0.0
    for i in range(n):  # second pass: A r, e = -2ℓ' + v - W∘(A r), and the sums
        level = codes[i]
        Ar = 0.0
        for k in range(q1):
            Ar += a1[i, k] * r1[level, k]
        for a in range(r):
            Ar += a2[i, a] * r2[columns[i, a]]
        e = -2.0 * score[i] + v[i] - information[i] * Ar
        for k in range(p):
            beta_gradient[k] += X[i, k] * e
        for k in range(q1):
            zk = z[i, k]
            for m in range(q1):
                G1[k, m] += e * zk * u1[level, m] + score[i] * zk * r1[level, m] + 2.0 * information[i] * zk * Pa1[i, m]
        for a in range(r):
            ca = columns[i, a]
            f, pos = factors[ca], positions[ca]
            va = values[i, a]
            for j in range(sizes[ca]):
                G2[f, pos, j] += (e * va * u2[ca - pos + j] + score[i] * va * r2[ca - pos + j]
                                  + 2.0 * information[i] * va * Pa2[i, a - pos + j])
        if has_dispersion:
            leverage = 0.0
            for k in range(q1):
                leverage += a1[i, k] * Pa1[i, k]
            for a in range(r):
                leverage += a2[i, a] * Pa2[i, a]
            dl, dscore, dinformation = dispersion_slopes_row(family, link, canonical, y[i], weights[i], eta[i], dispersion,
                                                             link_step)
            dispersion_gradient += -2.0 * dl + leverage * dinformation + Ar * dscore
    return G1, G2, beta_gradient, dispersion_gradient
