"""PIRLS and the gradient of the Laplace deviance for one grouping factor, level by level, compiled.

With a single grouping factor and β given, the penalised deviance g(u) = -2 Σ ℓ_i(η_i) + |u|²
(:mod:`bayesmix.linalg.pirls`) is a sum over the levels j of g_j(u_j), each depending only on
the q effects of its level through its own rows, and M = Λ'Z'WZΛ + I is block diagonal with
one q x q block M_j per level. So the conditional modes decouple: each level's q-dimensional
Newton problem is solved on its own (:func:`level_modes`), with the step halving and the
convergence rule of :func:`~bayesmix.linalg.pirls.pirls` applied to that level's g_j and
effects, and the Laplace deviance is Σ_j [g_j(û_j) + log|M_j|]. The adjoint gradient of
:func:`~bayesmix.linalg.pirls.laplace_gradient` specialises the same way
(:func:`level_gradient`): P_j = M_j⁻¹, the leverages h_i = a_i'P_j a_i, v_i = h_i ∂W_i/∂η_i,
r_j = P_j Σ_i a_i v_i and e_i = -2ℓ'_i + v_i - W_i a_i'r_j, all within a level.

The two kernels release the GIL, so that the chains of a sampler running in threads
(nutpie's) evaluate their densities in parallel.

The rows are read in level order (:class:`LevelRows`, made once per data set), so that each
level's rows are contiguous and its Newton iterations run in cache: one call does what the
general PIRLS does in some fifteen numpy and numba passes over all the rows. ℓ, the score and
W come from the families' row functions exactly as the general path computes them
(:func:`~bayesmix.linalg.working.row_terms`, :func:`~bayesmix.linalg.working.working_row`,
called with the family's :attr:`~bayesmix.families.Family.code`; the terms of ℓ free of η and
of the dispersion, log C(n, k) and log y!, are summed per level once per data set), and ∂W/∂η
and the derivatives in log φ by the same central differences as
:class:`~bayesmix.linalg.pirls.GlmmRows`.

Each level starts from the given effects, or from the mode at nearby parameters (the last one
along an optimiser's or a sampler's path) corrected to first order for the change of Λ and β
from per-level sums kept with that mode (:func:`_predicted`: no pass over the rows), and, when
that start leads nowhere (no positive definite M_j at its end, or no finite deviance), from
zero, level by level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..families import log_likelihood_constant_row
from ..jit import njit
from .kernels import level_factor
from .working import (dispersion_slopes_row, fixed_part, information_slope_row, level_effects, row_terms,
                      weighted_working_response, working_row)


@dataclass(frozen=True, eq=False)
class LevelRows:
    """The rows of a model with one grouping factor, in level order.

    Attributes
    ----------
    order
        The original index of each row in level order, shape (n,).
    starts
        Level j's rows are ``starts[j]:starts[j + 1]`` (levels + 1,).
    X, y, weights, offset, z
        The fixed-effects matrix (n, p), the response, the prior weights, the offset and the
        factor's random-effects matrix (n, q), in level order.
    constants
        Per level, the sum over its rows of the terms of ℓ free of η and of the dispersion
        (:func:`~bayesmix.families.log_likelihood_constant_row`).
    """

    order: np.ndarray
    starts: np.ndarray
    X: np.ndarray
    y: np.ndarray
    weights: np.ndarray
    offset: np.ndarray
    z: np.ndarray
    constants: np.ndarray

    @classmethod
    def of(cls, codes: np.ndarray, levels: int, X, y, weights, offset, z, family: int) -> LevelRows:
        """The rows sorted by their level codes (stably: each level keeps its rows' order), for
        the family with code ``family``."""
        order = np.argsort(codes, kind="stable")
        starts = np.zeros(levels + 1, dtype=np.int64)
        np.cumsum(np.bincount(codes, minlength=levels), out=starts[1:])
        X, y, weights, offset, z = (np.ascontiguousarray(np.asarray(a, dtype=float)[order]) for a in (X, y, weights, offset, z))
        return cls(order, starts, X, y, weights, offset, z, level_constants(family, starts, y, weights))


@njit(cache=True, error_model="numpy")
def level_constants(family, starts, y, weights):
    """Per level, Σ of :func:`~bayesmix.families.log_likelihood_constant_row` over its rows."""
    out = np.zeros(starts.size - 1)
    for j in range(out.size):
        for i in range(starts[j], starts[j + 1]):
            out[j] += log_likelihood_constant_row(family, y[i], weights[i])
    return out


@njit(cache=True, error_model="numpy")
def _evaluate(family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u, dispersion, link_step, eta, b, A, B, s, c):
    """Level j at the effects u, in one pass over its rows lo:hi: η_i = fixed_i + z_i'Λu (into
    ``eta``), the weighted cross-products A = Σ W_i z_i z_i', B = Σ W_i z_i x_i', s = Σ ℓ'_i z_i
    and, for the working response ỹ_i = η_i - fixed_i + ℓ'_i/W_i, c = Σ W_i ỹ_i z_i (into A, B,
    s, c; ``canonical`` True for the Fisher information). Returns g_j(u) = -2 Σ ℓ_i + |u|²
    (without the level's constant terms, :attr:`LevelRows.constants`) and Σ W_i ỹ_i²."""
    q, p = u.size, X.shape[1]
    level_effects(T, u, b)
    A[:, :] = 0.0
    B[:, :] = 0.0
    s[:] = 0.0
    c[:] = 0.0
    total, yy = 0.0, 0.0
    for i in range(lo, hi):
        e = fixed[i]
        for k in range(q):
            e += z[i, k] * b[k]
        eta[i] = e
        loglik, score, information = row_terms(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
        total += loglik
        response, weighted_square = weighted_working_response(score, information, e - fixed[i])
        yy += weighted_square
        for k in range(q):
            zk = z[i, k]
            s[k] += score * zk
            c[k] += response * zk
            for m in range(k + 1):
                A[k, m] += information * zk * z[i, m]
            for m in range(p):
                B[k, m] += information * zk * X[i, m]
    norm = 0.0
    for k in range(q):
        norm += u[k] * u[k]
        for m in range(k):
            A[m, k] = A[k, m]
    return -2.0 * total + norm, yy


@njit(cache=True, error_model="numpy")
def level_solve(Linv, v, out, half):
    """out = M_l⁻¹v = L_l⁻ᵀL_l⁻¹v for one level's block (``half`` scratch of length q)."""
    q = v.size
    for k in range(q):
        t = 0.0
        for m in range(k + 1):
            t += Linv[k, m] * v[m]
        half[k] = t
    for k in range(q):
        t = 0.0
        for m in range(k, q):
            t += Linv[m, k] * half[m]
        out[k] = t


@njit(cache=True, error_model="numpy")
def _newton_direction(T, Linv, u, s, gradient, half, out):
    """out = M⁻¹(u - Λ's) = L'⁻¹L⁻¹ (u - Λ's) for one level (M = L L', Linv = L⁻¹; s its score's
    sum Z'ℓ'): the Newton direction of the level's penalised deviance (``gradient`` and ``half``
    are work arrays of length q)."""
    q = u.shape[0]
    for k in range(q):
        t = u[k]
        for m in range(k, q):
            t -= T[m, k] * s[m]
        gradient[k] = t
    level_solve(Linv, gradient, out, half)


@njit(cache=True, error_model="numpy")
def _solve_level(family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u, dispersion, eta, trial_eta, Linv, Wy, A, B, s,
                 matrices, trial_B, vectors, max_steps, max_halvings, step_tol, newton_tol, link_step):
    """Newton's method with step halving on level j's g_j from ``u`` (overwritten by the mode),
    as :func:`~bayesmix.linalg.pirls.pirls` on the whole of u, but for one thing: a full step
    below the Newton tolerance is taken without testing that g_j decreases. Its decrease, of
    order |step|², is then below g_j's rounding, so that the test would fail at random and
    halve the step to nothing, stopping up to 1e-8 short of the mode; the step itself leaves
    an error of order 1e-12 (quadratic convergence). Each trial point is evaluated in one pass
    (:func:`_evaluate`), which also gives the next step's cross-products.

    Returns (ok, g_j, log|M_j|, Σ W_i ỹ_i², steps, converged); ``ok`` is False when M_j is not
    positive definite at the end (nor, during the iterations, with the Fisher information).
    Writes η at the mode into ``eta``, L_j⁻¹ into ``Linv``, L_j⁻¹Λ'c into ``Wy`` and the
    cross-products A, B and s of :func:`_evaluate` at the mode into ``A``, ``B`` and ``s``.
    ``matrices`` (4, q, q), ``trial_B`` (q, p) and ``vectors`` (8, q) are scratch space.
    """
    q = u.size
    TA, M, L, trial_A = matrices[0], matrices[1], matrices[2], matrices[3]
    c, trial_s, trial_c, b = vectors[0], vectors[1], vectors[2], vectors[3]
    gradient, half, step, trial = vectors[4], vectors[5], vectors[6], vectors[7]
    g, yy = _evaluate(family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u, dispersion, link_step, eta, b, A, B, s, c)
    steps, converged = 0, False
    while True:
        ok = level_factor(T, A, TA, M, L, Linv, q)
        if converged or steps == max_steps:
            break
        fisher = not ok
        if fisher:  # the observed information is not positive definite here: a Fisher-scoring step
            _evaluate(family, link, True, X, y, weights, fixed, z, lo, hi, T, u, dispersion, link_step, trial_eta, b, A, B, s, c)
            if not level_factor(T, A, TA, M, L, Linv, q):
                return False, g, 0.0, 0.0, steps, False
        # the Newton step -M⁻¹(u - Λ'Z'ℓ') = -L'⁻¹L⁻¹ (∂g/∂u)/2
        _newton_direction(T, Linv, u, s, gradient, half, step)
        full = 0.0
        for k in range(q):
            full = max(full, abs(step[k]) / (1.0 + abs(u[k])))
            step[k] = -step[k]
        # a full step this small changes g_j by less than its rounding: taken without the test
        scale = 1.0
        accepted = False
        for _ in range(max_halvings):
            for k in range(q):
                trial[k] = u[k] + scale * step[k]
            trial_g, trial_yy = _evaluate(family, link, canonical, X, y, weights, fixed, z, lo, hi, T, trial, dispersion, link_step,
                                          trial_eta, b, trial_A, trial_B, trial_s, trial_c)
            if trial_g <= g or full < newton_tol:
                accepted = True
                break
            scale *= 0.5
        if not accepted:  # no decrease at all: the mode is as exact as rounding allows
            converged = True
            if fisher:  # the cross-products at u, with the observed information again
                _evaluate(family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u, dispersion, link_step, eta, b, A, B, s, c)
            continue
        steps += 1
        for k in range(q):
            u[k] = trial[k]
        for i in range(lo, hi):
            eta[i] = trial_eta[i]
        g, yy = trial_g, trial_yy
        A[:, :] = trial_A
        B[:, :] = trial_B
        s[:] = trial_s
        c[:] = trial_c
        size = full * scale
        # a full Newton step of size s leaves an error of order s² (quadratic convergence)
        converged = size < step_tol or (scale == 1.0 and size < newton_tol)
    if not ok:
        return False, g, 0.0, 0.0, steps, converged
    logdet = 0.0
    for k in range(q):
        logdet += 2.0 * np.log(L[k, k])
        t = 0.0
        for m in range(k, q):
            t += T[m, k] * c[m]
        half[k] = t
    for k in range(q):
        t = 0.0
        for m in range(k + 1):
            t += Linv[k, m] * half[m]
        Wy[k] = t
    return True, g, logdet, yy, steps, converged


@njit(cache=True, error_model="numpy")
def _predicted(T, T0, u0, A0, B0, s0, beta_change, out, matrices, vectors):
    """The start of one level's Newton iterations from its mode û₀ at nearby parameters (Λ₀, β₀):
    one Newton step from û₀ on the gradient linearised about the old mode,

        u = û₀ - M̃⁻¹ (û₀ - Λ'[s₀ - B₀Δβ - A₀(Λ - Λ₀)û₀]),   M̃ = Λ'A₀Λ + I,

    with A₀ = Σ W_i z_i z_i', B₀ = Σ W_i z_i x_i' and s₀ = Σ ℓ'_i z_i at the old mode: the
    implicit-function theorem's first-order prediction (error of order |Δψ|², as
    :func:`~bayesmix.linalg.pirls.predicted_modes`), from per-level sums alone, without a pass
    over the rows. û₀ itself where M̃ is not positive definite. ``matrices`` (4, q, q) and
    ``vectors`` (4, q) are scratch space."""
    q, p = u0.size, beta_change.size
    TA, M, L, Linv = matrices[0], matrices[1], matrices[2], matrices[3]
    moved, score, gradient, half = vectors[0], vectors[1], vectors[2], vectors[3]
    out[:] = u0
    if not level_factor(T, A0, TA, M, L, Linv, q):
        return
    for k in range(q):  # (Λ - Λ₀)û₀
        t = 0.0
        for m in range(k + 1):
            t += (T[k, m] - T0[k, m]) * u0[m]
        moved[k] = t
    for k in range(q):  # the score's sum, linearised
        t = s0[k]
        for m in range(p):
            t -= B0[k, m] * beta_change[m]
        for m in range(q):
            t -= A0[k, m] * moved[m]
        score[k] = t
    _newton_direction(T, Linv, u0, score, gradient, half, out)
    for k in range(q):
        out[k] = u0[k] - out[k]


@njit(cache=True, error_model="numpy", nogil=True)
def level_modes(family, link, canonical, starts, X, y, weights, offset, z, order, constants, T, beta, dispersion, u0,
                predict, T0, beta0, A0, B0, s0, max_steps, max_halvings, step_tol, newton_tol, link_step):
    """The conditional modes of every level (see the module docstring) and what the Laplace
    deviance and its factor need.

    Parameters
    ----------
    family, link, canonical
        The family's :attr:`~bayesmix.families.Family.code`, its link's code, and whether the link is canonical.
    starts, X, y, weights, offset, z, order, constants
        The rows in level order (:class:`LevelRows`).
    T
        Λ (q x q, lower triangular).
    beta, dispersion
        β and the dispersion (NaN for none).
    u0
        Starting effects (levels, q).
    predict, T0, beta0, A0, B0, s0
        With ``predict``, u0 is the mode at Λ₀ = T0 and β₀ with the cross-products A₀, B₀, s₀
        there (as this function returns them), and each level starts from its first-order
        prediction (:func:`_predicted`).
    max_steps, max_halvings, step_tol, newton_tol, link_step
        PIRLS's limits and tolerances (:mod:`bayesmix.linalg.pirls`).

    Returns
    -------
    ok, u, eta, log_likelihood, logdet, Linv, Wy, schur, A, B, s, steps, converged
        ``ok`` False when some level has no positive definite M_j from either start; û
        (levels, q); η̂ in the rows' own order; Σ ℓ_i(η̂_i); log|M| = Σ_j log|M_j|; L_j⁻¹
        (levels, q, q); L_j⁻¹Λ'c_j (levels, q) and Σ W_i ỹ_i² - Σ_j |L_j⁻¹Λ'c_j|², the working
        response's column of the factor and its Schur complement; the cross-products at the
        mode per level, Σ W_i z_i z_i' (levels, q, q), Σ W_i z_i x_i' (levels, q, p) and
        Σ ℓ'_i z_i (levels, q); the most Newton steps any level took; whether every level
        converged.
    """
    levels = starts.size - 1
    n, q = z.shape
    p = beta.size
    u = u0.copy()
    fixed, sorted_eta, trial_eta = np.empty(n), np.empty(n), np.empty(n)
    Linv, Wy = np.empty((levels, q, q)), np.empty((levels, q))
    A, B, s = np.empty((levels, q, q)), np.empty((levels, q, p)), np.empty((levels, q))
    matrices, trial_B, vectors = np.empty((4, q, q)), np.empty((q, p)), np.empty((8, q))
    beta_change = beta - beta0
    log_likelihood, logdet, schur = 0.0, 0.0, 0.0
    most_steps, converged = 0, True
    for j in range(levels):
        lo, hi = starts[j], starts[j + 1]
        fixed_part(X, offset, beta, lo, hi, fixed)
        if predict:
            _predicted(T, T0, u0[j], A0[j], B0[j], s0[j], beta_change, u[j], matrices, vectors)
        ok, g, logdet_j, yy, steps, converged_j = _solve_level(
            family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u[j], dispersion, sorted_eta, trial_eta, Linv[j], Wy[j],
            A[j], B[j], s[j], matrices, trial_B, vectors, max_steps, max_halvings, step_tol, newton_tol, link_step)
        if not (ok and np.isfinite(g + logdet_j)) and np.any(u0[j] != 0.0):  # the start led astray: from zero
            u[j, :] = 0.0
            ok, g, logdet_j, yy, steps, converged_j = _solve_level(
                family, link, canonical, X, y, weights, fixed, z, lo, hi, T, u[j], dispersion, sorted_eta, trial_eta, Linv[j],
                Wy[j], A[j], B[j], s[j], matrices, trial_B, vectors, max_steps, max_halvings, step_tol, newton_tol, link_step)
        if not ok:
            return False, u, sorted_eta, np.nan, np.nan, Linv, Wy, np.nan, A, B, s, most_steps, False
        norm = 0.0
        for k in range(q):
            norm += u[j, k] * u[j, k]
            schur -= Wy[j, k] * Wy[j, k]
        log_likelihood += constants[j] - 0.5 * (g - norm)
        logdet += logdet_j
        schur += yy
        most_steps = max(most_steps, steps)
        converged = converged and converged_j
    eta = np.empty(n)
    for i in range(n):
        eta[order[i]] = sorted_eta[i]
    return True, u, eta, log_likelihood, logdet, Linv, Wy, schur, A, B, s, most_steps, converged


@njit(cache=True, error_model="numpy", nogil=True)
def level_gradient(family, link, canonical, has_dispersion, starts, X, y, weights, offset, z, T, beta, dispersion, u, link_step):
    """The gradient of the Laplace deviance at the modes ``u`` (levels, q), level by level: the
    adjoint formulas of :func:`~bayesmix.linalg.pirls.laplace_gradient` with one factor.

    Arguments as for :func:`level_modes`; ``has_dispersion`` whether the family has one.

    Returns
    -------
    G, beta_gradient, log_dispersion_gradient
        ∂d/∂Λ as the q x q matrix G = Σ_j [(Σ_i e_i z_i) û_j' + (Σ_i ℓ'_i z_i) r_j'] + 2 Σ_i W_i z_i (P_j a_i)'
        (∂d/∂θ is G at θ's positions in Λ), ∂d/∂β = X'e and ∂d/∂log φ (0 without a dispersion).
        NaN where some M_j is not positive definite.
    """
    levels = starts.size - 1
    n, q = z.shape
    p = beta.size
    G = np.zeros((q, q))
    beta_gradient = np.zeros(p)
    dispersion_gradient = 0.0
    fixed, eta = np.empty(n), np.empty(n)
    score, information, slope = np.empty(n), np.empty(n), np.empty(n)
    A, TA, M, L, Linv, P = np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty((q, q))
    b, a, Pa, c, r, e_sum, score_sum = np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q), np.empty(q)
    for j in range(levels):
        lo, hi = starts[j], starts[j + 1]
        fixed_part(X, offset, beta, lo, hi, fixed)
        level_effects(T, u[j], b)
        A[:, :] = 0.0
        for i in range(lo, hi):
            e = fixed[i]
            for k in range(q):
                e += z[i, k] * b[k]
            eta[i] = e
            score[i], information[i] = working_row(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
            slope[i] = information_slope_row(family, link, canonical, y[i], weights[i], e, dispersion, link_step)
            for k in range(q):
                for m in range(k + 1):
                    A[k, m] += information[i] * z[i, k] * z[i, m]
        for k in range(q):
            for m in range(k):
                A[m, k] = A[k, m]
        if not level_factor(T, A, TA, M, L, Linv, q):
            return np.full((q, q), np.nan), np.full(p, np.nan), np.nan
        for k in range(q):  # P = L'⁻¹L⁻¹
            for m in range(q):
                t = 0.0
                for l in range(max(k, m), q):
                    t += Linv[l, k] * Linv[l, m]
                P[k, m] = t
        # first pass: v_i = h_i ∂W_i/∂η_i (kept in ``slope``) and c = Σ a_i v_i
        c[:] = 0.0
        for i in range(lo, hi):
            leverage = _leverage(T, P, z, i, a, Pa)
            slope[i] *= leverage
            for k in range(q):
                c[k] += a[k] * slope[i]
        for k in range(q):
            t = 0.0
            for m in range(q):
                t += P[k, m] * c[m]
            r[k] = t
        e_sum[:] = 0.0
        score_sum[:] = 0.0
        for i in range(lo, hi):
            leverage = _leverage(T, P, z, i, a, Pa)
            Ar = 0.0
            for k in range(q):
                Ar += a[k] * r[k]
            e = -2.0 * score[i] + slope[i] - information[i] * Ar
            for k in range(p):
                beta_gradient[k] += X[i, k] * e
            for k in range(q):
                e_sum[k] += e * z[i, k]
                score_sum[k] += score[i] * z[i, k]
                for m in range(q):
                    G[k, m] += 2.0 * information[i] * z[i, k] * Pa[m]
            if has_dispersion:
                dl, dscore, dinformation = dispersion_slopes_row(family, link, canonical, y[i], weights[i], eta[i], dispersion,
                                                                 link_step)
                dispersion_gradient += -2.0 * dl + leverage * dinformation + Ar * dscore
        for k in range(q):
            for m in range(q):
                G[k, m] += e_sum[k] * u[j, m] + score_sum[k] * r[m]
    return G, beta_gradient, dispersion_gradient


@njit(cache=True, error_model="numpy")
def _leverage(T, P, z, i, a, Pa):
    """a_i = Λ'z_i and P a_i into ``a`` and ``Pa``; returns the leverage a_i'P a_i."""
    q = a.size
    for k in range(q):
        t = 0.0
        for m in range(k, q):
            t += T[m, k] * z[i, m]
        a[k] = t
    leverage = 0.0
    for k in range(q):
        t = 0.0
        for m in range(q):
            t += P[k, m] * a[m]
        Pa[k] = t
        leverage += a[k] * t
    return leverage
