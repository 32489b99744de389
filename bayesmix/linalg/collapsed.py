"""The collapsed Gaussian likelihood: random effects integrated out, per-group sufficient statistics.

With one grouping factor, y_i ~ Normal(X_i β, σ² I + Z_i C C' Z_i') for each group i, where
C is the Cholesky factor of the random effects' covariance (block-diagonal over the terms).
Writing T = C / σ, M_i = I + T'A_iT, b_i = Z_i'(y_i - X_iβ), w_i = T'b_i and g_i = M_i⁻¹w_i
(A_i = Z_i'Z_i), the Woodbury identity and the matrix determinant lemma give

    log p(y | β, C, σ) = -½ [ n log(2πσ²) + Σ_i log|M_i| + (RSS(β) - Σ_i w_i'g_i) / σ² ],

with RSS(β) = |y - Xβ|². Only A_i, Z_i'[X y] and [X y]'[X y] are needed (the cross-products
of the REML backend), so an evaluation costs O(groups · q³) whatever the number of rows. The
gradient is exact:

    ∂/∂β = (X'y - X'Xβ - Σ_i Z_iX_i' T g_i) / σ²
    ∂/∂T = -Σ_i A_i T M_i⁻¹ + Σ_i (b_i g_i' - A_i T g_i g_i') / σ²,    ∂/∂C = ∂/∂T / σ
    ∂/∂σ = -n/σ + Q/σ³ - ⟨∂/∂T, T⟩ / σ,    Q = RSS(β) - Σ_i w_i'g_i

Given (β, C, σ), each group's effects are exactly Normal(T g_i, σ² T M_i⁻¹ T'):
:func:`draw_effects` draws them for every posterior draw.

This is the REML algebra of :mod:`bayesmix.linalg.factorization` with β not profiled out: in
the relative parametrisation Λ = T, M_i is the per-level block Λ'A_iΛ + I of the blocked
Cholesky factor, Σ_i log|M_i| is its log|L_Z|², and RSS(β) - Σ_i w_i'g_i is the penalised
residual sum of squares at the given β instead of at β̂ (where REML adds log|R_X|² and
minimises over β). Both share the per-level factorisation kernel
:func:`~bayesmix.linalg.kernels.level_factor`.

With several grouping factors (crossed or nested) the same likelihood comes from the blocked
factor itself: :func:`factored_loglik` (its gradient through
:func:`~bayesmix.linalg.gradient.schur_gradient`) and :func:`draw_factored_effects` (all the
effects jointly, one back-substitution). These two write the algebra out through the REML
factorisation; the sampler evaluates it as one compiled call (:mod:`bayesmix.linalg.factored`),
which is tested against them and benchmarked against them
(``benchmarks/bayes_crossed_benchmark.py``): they are its reference, not its fallback.
"""

from __future__ import annotations

import functools

import numpy as np
from numba import prange

from ..data.blocks import CrossProducts
from ..data.layout import Structure
from ..jit import njit
from .factorization import Factorization, factorize
from .gradient import schur_gradient
from .kernels import level_factor

LOG_2PI = float(np.log(2.0 * np.pi))


def collapsed_loglik(beta, C, sigma, A11, A1X, AXX, n, gradient):
    """Log-likelihood with the random effects integrated out, and optionally its gradient.

    Returns (value, d_beta, d_C, d_sigma); value is -inf where a factor does not exist.
    """
    return loglik_kernel(A11.shape[1])(beta, C, sigma, A11, A1X, AXX, n, gradient)


@functools.cache
def loglik_kernel(q: int):
    """:func:`collapsed_loglik` compiled for q effects per level.

    With q a compile-time constant the small loops unroll (about 3x faster for q = 3); each q
    is compiled on first use only, and cached on disk by numba (the key includes q).
    """

    @njit(cache=True)
    def kernel(beta, C, sigma, A11, A1X, AXX, n, gradient):
        return collapsed_loglik_body(beta, C, sigma, A11, A1X, AXX, n, gradient, q, np.empty((0, q)))

    return kernel


@njit(inline="always")
def collapsed_loglik_body(beta, C, sigma, A11, A1X, AXX, n, gradient, q, modes):
    """The body of :func:`collapsed_loglik` for q effects per level, inlined into the kernels that call it.

    With the gradient, each level's conditional mean of its effects, T g_i, is written into
    ``modes`` (levels x q) unless it has no rows (``np.empty((0, q))``): the derivative of the
    log-likelihood in Z_i'(y_i - X_iβ) is T g_i / σ² (what a caller whose response varies
    needs, :mod:`bayesmix.bayes.partially_collapsed`)."""
    p = beta.shape[0]
    nl = A11.shape[0]
    T = C / sigma
    s2 = sigma * sigma
    XXb = np.zeros(p)
    for a in range(p):
        for b in range(p):
            XXb[a] += AXX[a, b] * beta[b]
    rss = AXX[p, p]
    for a in range(p):
        rss += -2.0 * beta[a] * AXX[a, p] + beta[a] * XXb[a]
    logdet = 0.0
    quad = 0.0
    dT = np.zeros((q, q))
    zx_tg = np.zeros(p)
    M = np.empty((q, q))
    L = np.empty((q, q))
    Linv = np.empty((q, q))
    Minv = np.empty((q, q))
    TA = np.empty((q, q))
    bvec = np.empty(q)
    w = np.empty(q)
    g = np.empty(q)
    tg = np.empty(q)
    for lev in range(nl):
        A = A11[lev]
        AX = A1X[lev]
        for i in range(q):
            s = AX[i, p]
            for k in range(p):
                s -= AX[i, k] * beta[k]
            bvec[i] = s
        if not level_factor(T, A, TA, M, L, Linv, q):
            return -np.inf, np.zeros(p), np.zeros((q, q)), 0.0
        for i in range(q):  # M⁻¹ = Linv' Linv
            for j in range(i + 1):
                s = 0.0
                for k in range(i, q):
                    s += Linv[k, i] * Linv[k, j]
                Minv[i, j] = s
                Minv[j, i] = s
        for i in range(q):
            logdet += 2.0 * np.log(L[i, i])
            s = 0.0
            for k in range(q):
                s += T[k, i] * bvec[k]
            w[i] = s
        for i in range(q):
            s = 0.0
            for k in range(q):
                s += Minv[i, k] * w[k]
            g[i] = s
            quad += w[i] * s
        if not gradient:
            continue
        for r in range(q):  # dT += -(A T) M⁻¹ + (b - A T g) g' / σ², with A T = TA'
            atg = 0.0
            for k in range(q):
                atg += TA[k, r] * g[k]
            resid = (bvec[r] - atg) / s2
            for c in range(q):
                s = 0.0
                for k in range(q):
                    s += TA[k, r] * Minv[k, c]
                dT[r, c] += resid * g[c] - s
        for i in range(q):
            s = 0.0
            for k in range(q):
                s += T[i, k] * g[k]
            tg[i] = s
            if modes.shape[0] > 0:
                modes[lev, i] = s
        for a in range(p):  # Σ Z_iX_i' T g_i
            s = 0.0
            for i in range(q):
                s += AX[i, a] * tg[i]
            zx_tg[a] += s
    Q = rss - quad
    value = -0.5 * (n * (LOG_2PI + np.log(s2)) + logdet + Q / s2)
    d_beta = np.empty(p)
    for a in range(p):
        d_beta[a] = (AXX[a, p] - XXb[a] - zx_tg[a]) / s2
    inner = 0.0
    for i in range(q):
        for j in range(q):
            inner += dT[i, j] * T[i, j]
    d_sigma = -n / sigma + Q / (s2 * sigma) - inner / sigma
    return value, d_beta, dT / sigma, d_sigma


def draw_effects(beta, C, sigma, A11, A1X, seeds):
    """Exact draws of every group's effects given (β, C, σ) for each posterior draw.

    ``beta`` (S, p), ``C`` (S, q, q), ``sigma`` (S,), ``seeds`` (S,) seeds of the standard
    normals of each draw; returns u (S, levels, q) with u_i = T g_i + σ T L_i⁻ᵀ ε_i
    (M_i = L_i L_i'). Posterior draws are processed in parallel; each draws its normals from
    its own seed, so the result does not depend on the number of threads.
    """
    out = np.empty((beta.shape[0], A11.shape[0], C.shape[1]))
    effects_kernel(C.shape[1])(beta, C, sigma, A11, A1X, seeds, out)
    return out


@functools.cache
def effects_kernel(q: int):
    """:func:`draw_effects` compiled for q effects per level (see :func:`loglik_kernel`)."""

    @njit(cache=True, parallel=True)
    def kernel(beta, C, sigma, A11, A1X, seeds, out):
        _draw_effects(beta, C, sigma, A11, A1X, seeds, out, q)

    return kernel


@njit(inline="always")
def _draw_effects(beta, C, sigma, A11, A1X, seeds, out, q):
    S, nl, p = beta.shape[0], A11.shape[0], beta.shape[1]
    for s_ in prange(S):
        np.random.seed(seeds[s_])
        work = spherical_workspace(q)
        bvec = np.empty(q)
        eps = np.empty(q)
        v = np.empty(q)
        T = C[s_] / sigma[s_]
        for lev in range(nl):
            for i in range(q):
                acc = A1X[lev, i, p]
                for k in range(p):
                    acc -= A1X[lev, i, k] * beta[s_, k]
                bvec[i] = acc
            for i in range(q):
                eps[i] = np.random.standard_normal()
            conditional_spherical(T, A11[lev], bvec, sigma[s_], eps, v, work, q)
            for i in range(q):
                acc = 0.0
                for k in range(q):
                    acc += T[i, k] * v[k]
                out[s_, lev, i] = acc


@njit(inline="always")
def spherical_workspace(q):
    """Scratch arrays for :func:`conditional_spherical` (TA, M, L, L⁻¹, and two vectors)."""
    return np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty((q, q)), np.empty(q), np.empty(q)


@njit(inline="always")
def conditional_spherical(T, A, bvec, sigma, eps, v, work, q):
    """One level's spherical effects given the standard normals ε, into ``v``:
    v = L⁻ᵀ(L⁻¹T'b + σ ε) ~ N(M⁻¹T'b, σ² M⁻¹), M = T'AT + I = LL', b = Z'(y - Xβ), A = Z'Z;
    the effects are Tv (mean T M⁻¹T'b, covariance σ² T M⁻¹ T')."""
    TA, M, L, Linv, tb, t = work
    level_factor(T, A, TA, M, L, Linv, q)
    for i in range(q):
        acc = 0.0
        for k in range(q):
            acc += T[k, i] * bvec[k]
        tb[i] = acc
    for i in range(q):
        acc = sigma * eps[i]
        for r in range(i + 1):
            acc += Linv[i, r] * tb[r]
        t[i] = acc
    for i in range(q):
        acc = 0.0
        for k in range(i, q):
            acc += Linv[k, i] * t[k]
        v[i] = acc


def factored_loglik(structure: Structure, cp: CrossProducts, beta: np.ndarray, theta_c: np.ndarray, sigma: float):
    """:func:`collapsed_loglik` for any number of grouping factors, through the blocked factor.

    ``theta_c`` holds the entries of C (the Cholesky factors of the random effects'
    covariances) in θ's layout (:class:`~bayesmix.data.layout.Structure`), so that the relative
    factor is Λ = C / σ, θ = ``theta_c`` / σ. With M = Λ'Z'ZΛ + I factored from the
    cross-products (:func:`~bayesmix.linalg.factorization.factorize`) and v = [-β, 1],

        log p(y | β, C, σ) = -½ [ n log(2πσ²) + log|M| + r²(β) / σ² ],    r²(β) = v'Sv,

    S the ``[X y]`` Schur complement (S = RR'): r²(β) is the penalised residual sum of squares
    at β (not profiled), the single-factor algebra of this module's docstring. Its gradient:
    ∂/∂β = (Sv)_β / σ²; ∂/∂θ is -½ that of log|M| + h(S), h(S) = v'Sv / σ², given by
    :func:`~bayesmix.linalg.gradient.schur_gradient` with F = vv' / σ²; then ∂/∂C = ∂/∂θ / σ and
    ∂/∂σ = -n/σ + r²/σ³ - ⟨∂/∂θ, θ⟩ / σ.

    Returns (value, d_beta, d_theta_c, d_sigma, factorization); numpy's LinAlgError where the
    factor does not exist.
    """
    theta = theta_c / sigma
    f = factorize(structure, cp, theta)
    v = np.append(-beta, 1.0)
    Rv = f.R.T @ v
    r2, s2 = float(Rv @ Rv), sigma * sigma
    value = -0.5 * (cp.n * (LOG_2PI + np.log(s2)) + f.logdet_z + r2 / s2)
    d_beta = (f.R @ Rv)[:-1] / s2
    d_theta = -0.5 * schur_gradient(structure, cp, f, np.outer(v, v) / s2)
    d_sigma = -cp.n / sigma + r2 / (s2 * sigma) - float(theta @ d_theta) / sigma
    return value, d_beta, d_theta / sigma, d_sigma, f


def draw_factored_effects(f: Factorization, beta: np.ndarray, sigma: float, rng: np.random.Generator
                          ) -> tuple[np.ndarray, np.ndarray | None]:
    """One exact joint draw of the spherical random effects given (β, σ) and θ (the factor ``f``
    at θ = C / σ): u = L_Z'⁻¹ (L_Z⁻¹ Λ'Z'(y - Xβ) + σ ε), i.e. u ~ N(û(β), σ² M⁻¹), laid out
    as :meth:`~bayesmix.linalg.factorization.Factorization.back_substitute` lays it out (the
    effects are b = Λu: :func:`~bayesmix.linalg.factorization.effects`)."""
    v = np.append(-beta, 1.0)
    rhs1 = f.W @ v + sigma * rng.standard_normal(f.W.shape[:2])
    rhs2 = None if f.V2 is None else f.V2 @ v + sigma * rng.standard_normal(f.V2.shape[0])
    return f.back_substitute(rhs1, rhs2)
