"""Compiled (numba) kernels for the first factor block: its factor and the exact gradient.

With one grouping factor, ``Λ'Z'ZΛ + I`` is block-diagonal with one q x q block per level,
so one pass over the levels factors it and a second pass gives the gradient. The matrices
are tiny (q is the number of effects per level), so plain loops beat batched numpy calls,
whose per-call overhead would dominate.
"""

from __future__ import annotations

import numpy as np
from ..jit import njit


@njit(inline="always")
def cholesky_into(A, out, n):
    """Lower Cholesky factor of the n x n matrix A into ``out``; False if A is not positive definite.

    The kernels here take the sizes as arguments and are inlined, so that a caller passing
    a constant size gets loops the compiler unrolls (about 3x faster for q = 3).
    """
    for j in range(n):
        s = A[j, j]
        for k in range(j):
            s -= out[j, k] * out[j, k]
        if not s > 0.0:
            return False
        d = np.sqrt(s)
        out[j, j] = d
        for i in range(j + 1, n):
            s = A[i, j]
            for k in range(j):
                s -= out[i, k] * out[j, k]
            out[i, j] = s / d
        for i in range(j):
            out[i, j] = 0.0
    return True


@njit(inline="always")
def invert_lower(L, out, n):
    """Inverse of an n x n lower-triangular matrix into ``out``."""
    for i in range(n):
        for j in range(n):
            out[i, j] = 0.0
    for i in range(n):
        out[i, i] = 1.0 / L[i, i]
        for j in range(i):
            s = 0.0
            for k in range(j, i):
                s += L[i, k] * out[k, j]
            out[i, j] = -s / L[i, i]


@njit(inline="always")
def level_factor(T, A, TA, M, L, Linv, q):
    """One level's block (q x q): ``TA = Λ'A``, ``M = Λ'AΛ + I``, its Cholesky factor L and L⁻¹.

    Returns False when M is not positive definite; log|M| = 2 Σ log L_ii.
    """
    for i in range(q):
        for j in range(q):
            s = 0.0
            for k in range(q):
                s += T[k, i] * A[k, j]
            TA[i, j] = s
    for i in range(q):
        for j in range(i + 1):
            s = 1.0 if i == j else 0.0
            for k in range(q):
                s += TA[i, k] * T[k, j]
            M[i, j] = s
            M[j, i] = s
    if not cholesky_into(M, L, q):
        return False
    invert_lower(L, Linv, q)
    return True


@njit(cache=True)
def factor_first_block(T, A11, A1X, AXX):
    """Factor ``Λ'A_iΛ + I`` level by level and downdate ``[X y]'[X y]``.

    Parameters
    ----------
    T
        Λ for one level (q x q).
    A11, A1X, AXX
        Cross-products (see :class:`~bayesmix.reml.crossprod.CrossProducts`).

    Returns
    -------
    ok, Linv (levels, q, q), W (levels, q, m), TA (levels, q, q), S (m, m), logdet
        ``ok`` is False when some block is not positive definite. ``Linv`` are the inverses
        of the Cholesky factors, ``W = Linv Λ'A1X``, ``TA = Λ'A11``,
        ``S = AXX - Σ W'W`` and ``logdet = log|Λ'A11Λ + I|``.
    """
    nl, q = A11.shape[0], A11.shape[1]
    m = AXX.shape[0]
    Linv = np.empty((nl, q, q))
    W = np.empty((nl, q, m))
    TA = np.empty((nl, q, q))
    S = AXX.copy()
    M = np.empty((q, q))
    L = np.empty((q, q))
    B = np.empty((q, m))
    logdet = 0.0
    for lev in range(nl):
        if not level_factor(T, A11[lev], TA[lev], M, L, Linv[lev], q):
            return False, Linv, W, TA, S, 0.0
        for i in range(q):
            logdet += 2.0 * np.log(L[i, i])
        for i in range(q):
            for j in range(m):
                s = 0.0
                for k in range(q):
                    s += T[k, i] * A1X[lev, k, j]
                B[i, j] = s
        for i in range(q):
            for j in range(m):
                s = 0.0
                for k in range(i + 1):
                    s += Linv[lev, i, k] * B[k, j]
                W[lev, i, j] = s
        for a in range(m):
            for b in range(a + 1):
                s = 0.0
                for k in range(q):
                    s += W[lev, k, a] * W[lev, k, b]
                S[a, b] -= s
                if a != b:
                    S[b, a] -= s
    return True, Linv, W, TA, S, logdet


@njit(cache=True)
def first_block_gradient(TA, Linv, W, A1X, F):
    """``∂d/∂Λ`` for one grouping factor, given ``F = ∂d/∂S`` (see ``ProfiledCriterion``).

    Accumulates ``H = Σ_i M_i⁻¹Λ'A_i - Σ_i G_i F (A1X_i' - G_i'Λ'A_i)`` with
    ``G_i = M_i⁻¹Λ'A1X_i = Linv_i' W_i`` and returns ``2 H'``.
    """
    nl, q = TA.shape[0], TA.shape[1]
    m = F.shape[0]
    G = np.empty((q, m))
    GF = np.empty((q, m))
    K = np.empty((m, q))
    H = np.zeros((q, q))
    for lev in range(nl):
        for i in range(q):
            for j in range(m):
                s = 0.0
                for k in range(i, q):
                    s += Linv[lev, k, i] * W[lev, k, j]
                G[i, j] = s
        for i in range(q):
            for j in range(q):
                s = 0.0
                for k in range(q):
                    minv = 0.0
                    for r in range(max(i, k), q):
                        minv += Linv[lev, r, i] * Linv[lev, r, k]
                    s += minv * TA[lev, k, j]
                H[i, j] += s
        for a in range(m):
            for j in range(q):
                s = A1X[lev, j, a]
                for k in range(q):
                    s -= G[k, a] * TA[lev, k, j]
                K[a, j] = s
        for i in range(q):
            for b in range(m):
                s = 0.0
                for a in range(m):
                    s += G[i, a] * F[a, b]
                GF[i, b] = s
        for i in range(q):
            for j in range(q):
                s = 0.0
                for b in range(m):
                    s += GF[i, b] * K[b, j]
                H[i, j] -= s
    return 2.0 * H.T


@njit(cache=True)
def schur_terms(R, p, dof, reml):
    """The criterion's terms in the ``[X y]`` Schur complement S = R R', and ``F = ∂/∂S`` of them.

    The terms are ν (1 + log(2π r_yy² / ν)), plus log|R_X|² for REML (ν = ``dof``); with
    e = (-β, 1) (R_X' β = r_yX), F = ν/r_yy² e e', plus S_XX⁻¹ = (R_X R_X')⁻¹ ⊕ 0 for REML.
    """
    m = R.shape[0]
    pwrss = R[p, p] * R[p, p]
    value = dof * (1.0 + np.log(2.0 * np.pi * pwrss / dof))
    RXinv = np.empty((p, p))
    invert_lower(R[:p, :p].copy(), RXinv, p)
    e = np.empty(m)
    for i in range(p):
        s = 0.0
        for k in range(p):
            s += RXinv[k, i] * R[p, k]
        e[i] = -s
    e[p] = 1.0
    F = np.empty((m, m))
    for a in range(m):
        for b in range(m):
            F[a, b] = dof / pwrss * e[a] * e[b]
    if reml:
        for i in range(p):
            value += 2.0 * np.log(R[i, i])
        for a in range(p):
            for b in range(p):
                s = 0.0
                for k in range(p):
                    s += RXinv[k, a] * RXinv[k, b]
                F[a, b] += s
    return value, F


@njit(cache=True)
def single_factor_criterion(T, A11, A1X, AXX, p, dof, reml):
    """Criterion and ``∂d/∂Λ`` with one grouping factor, in one compiled call.

    The same quantities as ``ProfiledCriterion.from_factorization`` and its gradient, without
    the per-call overhead of numpy and scipy on matrices this small. Returns (inf, 0) when a
    factor does not exist.
    """
    q, m = T.shape[0], AXX.shape[0]
    ok, Linv, W, TA, S, logdet = factor_first_block(T, A11, A1X, AXX)
    R = np.zeros((m, m))
    if not ok or not cholesky_into(S, R, m):
        return np.inf, np.zeros((q, q))
    value, F = schur_terms(R, p, dof, reml)
    return logdet + value, first_block_gradient(TA, Linv, W, A1X, F)


@njit(cache=True)
def rest_downdate(indptr, rows, values, P, A1X, A22, scale):
    """``diag(s) (A22 - C) diag(s)`` (its lower triangle; the upper one is A22's) with
    ``C = Σ_i A21_i P_i A21_i'``, and ``D = Σ_i A21_i P_i A1X_i`` over levels i of the first factor.

    ``P_i = Λ₁ M_i⁻¹ Λ₁'``; with them ``L22 L22' = Λ₂'(A22 - C)Λ₂ + I`` and ``L21 W = Λ₂' D``,
    so the sparse ``L21`` never has to be formed while optimising. ``s`` is Λ₂'s diagonal when
    every rest term is scalar (ones otherwise). The rows of each level are sorted
    (:class:`~bayesmix.data.crossprod.CrossProductPlan`), so pairs b <= a fall in the lower
    triangle. Costs Σ_i (rows touched by i)² / 2.
    """
    nl, q = P.shape[0], P.shape[1]
    m = A1X.shape[2]
    C = A22.copy()
    D = np.zeros((A22.shape[0], m))
    v = np.empty(q)
    for lev in range(nl):
        for a in range(indptr[lev], indptr[lev + 1]):
            for j in range(q):
                s = 0.0
                for k in range(q):
                    s += values[a, k] * P[lev, k, j]
                v[j] = s
            ra = rows[a]
            for b in range(indptr[lev], a + 1):
                s = 0.0
                for j in range(q):
                    s += v[j] * values[b, j]
                C[ra, rows[b]] -= s
            for c in range(m):
                s = 0.0
                for j in range(q):
                    s += v[j] * A1X[lev, j, c]
                D[ra, c] += s
    for i in range(C.shape[0]):
        for j in range(i + 1):
            C[i, j] *= scale[i] * scale[j]
    return C, D


@njit(cache=True)
def rest_pairs_t(rows, row_pos, row_q, column, V):
    """Λ₂' applied to a matrix with the pattern of ``Z2'Z1`` in the pair layout of
    :attr:`~bayesmix.data.blocks.CrossProducts.A21_levels` (the rows of one first-factor
    level sorted, each level of a rest factor present with all its q rows or none).

    Row r of the rest block is effect ``row_pos[r]`` of a level of a factor with ``row_q[r]``
    effects per level, and ``column[r, j]`` = Λ₂[(level, j), r]; so
    (Λ₂'V)[a] = Σ_j column[r, j] V[a - row_pos[r] + j] for pair a at row r.
    """
    out = np.zeros_like(V)
    for a in range(V.shape[0]):
        r = rows[a]
        first = a - row_pos[r]
        for j in range(row_q[r]):
            c = column[r, j]
            for k in range(V.shape[1]):
                out[a, k] += c * V[first + j, k]
    return out


@njit(cache=True)
def selected_rest_first(indptr, rows, S, P22):
    """The rest-by-first block P21 = -P22 S of P = (Λ'Z'ZΛ + I)⁻¹ on the pattern of ``Z2'Z1``
    (pair layout, as :func:`rest_pairs_t`), from S = M21 M11⁻¹ on that pattern, and the
    per-level corrections Σ_a S_a'P21_a (levels, q1, q1) that turn M11⁻¹ into P's diagonal
    blocks. Reads P22's lower triangle only; costs Σ_i (pairs of level i)² q1 / 2: only the
    entries where Z2'Z1 has entries."""
    levels, q = indptr.shape[0] - 1, S.shape[1]
    P21 = np.zeros_like(S)
    correction = np.zeros((levels, q, q))
    for lev in range(levels):
        for a in range(indptr[lev], indptr[lev + 1]):
            ra = rows[a]
            w = P22[ra, ra]
            for k in range(q):
                P21[a, k] -= w * S[a, k]
            for b in range(indptr[lev], a):  # rows[b] < rows[a]: P22's lower triangle, used for both pairs
                w = P22[ra, rows[b]]
                for k in range(q):
                    P21[a, k] -= w * S[b, k]
                    P21[b, k] -= w * S[a, k]
        for a in range(indptr[lev], indptr[lev + 1]):
            for i in range(q):
                for j in range(q):
                    correction[lev, i, j] += S[a, i] * P21[a, j]
    return P21, correction


@njit(cache=True)
def rest_pairs_trace(rows, row_pos, row_q, row_factor, P21, X, n_factors, q_max):
    """Per rest factor f, Σ over its levels l of (P21 X')_ll, the diagonal blocks of the product
    of two matrices with the pattern of ``Z2'Z1`` (pair layout, as :func:`rest_pairs_t`):
    out[f, a, b] = Σ over pairs p at row (l, b) of Σ_c P21[(l, a), c] X[p, c]."""
    out = np.zeros((n_factors, q_max, q_max))
    for p in range(X.shape[0]):
        r = rows[p]
        b = row_pos[r]
        first = p - b
        f = row_factor[r]
        for a in range(row_q[r]):
            s = 0.0
            for c in range(X.shape[1]):
                s += P21[first + a, c] * X[p, c]
            out[f, a, b] += s
    return out


@njit(cache=True)
def symmetrize_lower(A):
    """Copy the lower triangle of the square A onto its upper triangle, in place (in tiles, so
    that the transposed writes stay in cache: several times faster than numpy's ``tril``)."""
    n = A.shape[0]
    tile = 64
    for i0 in range(0, n, tile):
        for j0 in range(0, i0 + 1, tile):
            for i in range(i0, min(i0 + tile, n)):
                for j in range(j0, min(j0 + tile, i)):
                    A[j, i] = A[i, j]
    return A


@njit(cache=True)
def rest_block_trace(P22, A22, pos, q, factor, column, n_factors, q_max):
    """Per rest factor f, Σ over its levels l of (P22 Λ₂'A22)_ll:
    out[f, a, b] = Σ_l Σ_m P22[(l, a), m] (Λ₂'A22)[m, (l, b)], with the rest rows described as
    in :func:`rest_pairs_t` (Λ₂[m, m'] = column[m', pos[m]] for m, m' in the same level). One
    pass over A22, whose zeros (pairs of levels no row shares) are skipped."""
    out = np.zeros((n_factors, q_max, q_max))
    size = A22.shape[0]
    for c in range(size):
        b = pos[c]
        base = c - b
        f = factor[c]
        for m in range(size):
            v = A22[c, m]  # = A22[m, c]
            if v == 0.0:
                continue
            first = m - pos[m]
            for j in range(q[m]):
                w = column[first + j, pos[m]] * v  # Λ₂[m, m'] A22[m, c], m' = (level of m, j)
                for a in range(q[c]):
                    out[f, a, b] += P22[base + a, first + j] * w
    return out
