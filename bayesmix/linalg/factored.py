"""The collapsed likelihood of several grouping factors, compiled whole: the blocked factor,
the log-likelihood and its exact gradient in one numba call that runs without the GIL.

This is :func:`~bayesmix.linalg.collapsed.factored_loglik` (the algebra and its notation are
there and in :mod:`~bayesmix.linalg.gradient`) without Python between the steps: the factor
of :func:`~bayesmix.linalg.factorization.factorize`, then the gradient of
:func:`~bayesmix.linalg.gradient.schur_gradient` with F = vv'/σ² (v = [-β, 1]), for which
Σ_l G_l F K_l' = Σ_l (G_l v)(K_l v)'/σ² needs the spherical modes of the single column
``[X y] v`` rather than those of every column. The dense rest block is factored, inverted
and solved with by LAPACK and BLAS (``dpotrf``, ``dpotri``, ``dtrsm``, through SciPy's
Cython bindings, whose addresses the kernels take as arguments so that numba caches them on
disk); the sparse parts are the kernels of :mod:`~bayesmix.linalg.kernels`. Compiled with
``nogil=True``, so that nutpie's chains evaluate in parallel threads.

:func:`evaluate` returns the factor with the value, and :func:`draw_effects` draws the
random effects from such a factor, so that a posterior draw at the θ of the last evaluation
needs no second factorisation.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

import numpy as np
from numba.extending import get_cython_function_address

from ..data.blocks import CrossProducts
from ..data.layout import Structure
from ..jit import njit
from .factorization import RestLambda
from .kernels import (factor_first_block, rest_block_trace, rest_downdate, rest_pairs_t, rest_pairs_trace,
                      selected_rest_first, symmetrize_lower)

LOG_2PI = float(np.log(2.0 * np.pi))
_UPPER, _RIGHT, _NO, _TRANSPOSE = ord("U"), ord("R"), ord("N"), ord("T")


@functools.cache
def lapack_routines() -> tuple:
    """SciPy's ``dpotrf``, ``dpotri`` (LAPACK) and ``dtrsm`` (BLAS), as ctypes function pointers
    (every argument a pointer, Fortran's convention)."""
    def routine(module: str, name: str, n_args: int):
        address = get_cython_function_address(f"scipy.linalg.cython_{module}", name)
        return ctypes.CFUNCTYPE(None, *[ctypes.c_void_p] * n_args)(address)

    return routine("lapack", "dpotrf", 5), routine("lapack", "dpotri", 5), routine("blas", "dtrsm", 11)


@dataclass(frozen=True, eq=False)
class FactoredModel:
    """What the kernels read: the cross-products and θ's layout, as arrays.

    Attributes
    ----------
    data
        ``(A11, A1X, AXX, indptr, rows, values, A22, A2X, pair_level)``: the cross-products
        (:class:`~bayesmix.data.blocks.CrossProducts`, ``Z2'Z1`` in its pair layout) and the
        first factor's level of each pair.
    layout
        ``(block, row, col, pos, q, factor)``: θ's entry i is Λ_block[row, col] (block 0 the
        first factor's); rest row r is effect ``pos[r]`` of a level of rest factor ``factor[r]``
        (0 for the second block), which has ``q[r]`` effects per level
        (:meth:`~bayesmix.linalg.factorization.RestLambda.row_templates`).
    n
        Number of observations.
    """

    data: tuple
    layout: tuple
    n: float

    @classmethod
    def of(cls, structure: Structure, cp: CrossProducts) -> FactoredModel:
        """The arrays of ``cp`` (several grouping factors) laid out by ``structure``."""
        indptr, rows, values = cp.A21_levels
        pair_level = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
        blocks = structure.blocks
        pos, q, factor, _ = RestLambda(blocks[1:], np.zeros(structure.n_theta)).row_templates()
        block = np.concatenate([np.full(b.n_theta, k) for k, b in enumerate(blocks)])
        row = np.concatenate([b.theta_rows for b in blocks])
        col = np.concatenate([b.theta_cols for b in blocks])
        as_int = lambda a: np.ascontiguousarray(a, dtype=np.int64)  # noqa: E731
        data = tuple(np.ascontiguousarray(a, dtype=float) for a in (cp.A11, cp.A1X, cp.AXX))
        data += (as_int(indptr), as_int(rows), np.ascontiguousarray(values, dtype=float),
                 np.ascontiguousarray(cp.A22, dtype=float), np.ascontiguousarray(cp.A2X, dtype=float), as_int(pair_level))
        layout = tuple(as_int(a) for a in (block, row, col, pos, q, factor))
        return cls(data, layout, float(cp.n))


# ----- LAPACK and BLAS on row-major arrays -------------------------------------------------------
# A C-ordered lower-triangular L is, to Fortran, the upper-triangular L'.


@njit(inline="always")
def _square_arguments(A):
    """LAPACK's uplo, n (= lda) and info for the square A, as arrays to point to."""
    n = np.full(1, A.shape[0], np.int32)
    info = np.zeros(1, np.int32)
    uplo = np.full(1, _UPPER, np.uint8)
    return uplo, n, info


@njit(cache=True, nogil=True)
def potrf(routines, A):
    """Lower Cholesky factor of the symmetric A (from its lower triangle), in place in A's
    lower triangle (the upper is left as it was); returns LAPACK's info (0: success)."""
    uplo, n, info = _square_arguments(A)
    routines[0](uplo.ctypes, n.ctypes, A.ctypes, n.ctypes, info.ctypes)
    return info[0]


@njit(cache=True, nogil=True)
def potri(routines, L):
    """(LL')⁻¹ from the lower Cholesky factor L, in place in L's lower triangle; LAPACK's info."""
    uplo, n, info = _square_arguments(L)
    routines[1](uplo.ctypes, n.ctypes, L.ctypes, n.ctypes, info.ctypes)
    return info[0]


@njit(cache=True, nogil=True)
def trsm(routines, L, B, transpose):
    """B ← L⁻¹B (or L'⁻¹B) in place, for the lower-triangular L (n x n) and B of n rows (a
    vector or a C-ordered matrix)."""
    n = L.shape[0]
    k = B.size // n if n > 0 else 0
    side, uplo = np.full(1, _RIGHT, np.uint8), np.full(1, _UPPER, np.uint8)
    trans, diag = np.full(1, _TRANSPOSE if transpose else _NO, np.uint8), np.full(1, _NO, np.uint8)
    sizes = np.array([k, n], np.int32)  # Fortran sees B' (k x n) and solves X L' = B' (or X L = B')
    alpha = np.ones(1)
    routines[2](side.ctypes, uplo.ctypes, trans.ctypes, diag.ctypes, sizes[0:1].ctypes, sizes[1:2].ctypes,
                alpha.ctypes, L.ctypes, sizes[1:2].ctypes, B.ctypes, sizes[0:1].ctypes)


# ----- the factor ---------------------------------------------------------------------------------


@njit(cache=True)
def templates(theta, layout, q1):
    """Λ's template for the first factor (q1 x q1) and ``column[r, j]`` = Λ₂[(level, j), r] for
    each rest row r (as :meth:`~bayesmix.linalg.factorization.RestLambda.row_templates`)."""
    block, row, col, pos, q, factor = layout
    q_max = max(q1, q.max())
    T = np.zeros((block.max() + 1, q_max, q_max))
    for i in range(theta.shape[0]):
        T[block[i], row[i], col[i]] = theta[i]
    column = np.zeros((pos.shape[0], q.max()))
    for r in range(pos.shape[0]):
        for j in range(q[r]):
            column[r, j] = T[factor[r] + 1, j, pos[r]]
    return T[0, :q1, :q1].copy(), column


@njit(inline="always")
def _small_product(A, B, out, transpose_a, accumulate):
    """out (+)= A B or A'B for the small matrices A and B (loops: BLAS calls cost more at this size)."""
    rows, inner = (A.shape[1], A.shape[0]) if transpose_a else (A.shape[0], A.shape[1])
    for i in range(rows):
        for j in range(B.shape[1]):
            s = out[i, j] if accumulate else 0.0
            for k in range(inner):
                s += (A[k, i] if transpose_a else A[i, k]) * B[k, j]
            out[i, j] = s


@njit(inline="always")
def _small_vector(A, x, out, accumulate):
    """out (+)= A x for a small matrix A."""
    for i in range(A.shape[0]):
        s = out[i] if accumulate else 0.0
        for k in range(A.shape[1]):
            s += A[i, k] * x[k]
        out[i] = s


@njit(inline="always")
def _lambda_t(column, pos, q, Y):
    """Λ₂'Y for Y of the rest block's rows (a vector or a matrix)."""
    out = np.zeros_like(Y)
    for r in range(pos.shape[0]):
        first = r - pos[r]
        for j in range(q[r]):
            out[r] += column[r, j] * Y[first + j]
    return out


@njit(inline="always")
def _lambda(column, pos, q, y):
    """Λ₂y for a vector y of the rest block's rows."""
    out = np.zeros_like(y)
    for r in range(pos.shape[0]):
        first = r - pos[r]
        for j in range(q[r]):
            out[r] += column[first + j, pos[r]] * y[first + j]
    return out


@njit(cache=True, nogil=True)
def factor(theta, model_data, layout, routines):
    """The blocked factor at θ (as :func:`~bayesmix.linalg.factorization.factorize`).

    Returns (ok, T1, column, L11inv, W, L22, V2, S, logdet, minv): ``L22`` in the lower
    triangle (the upper holds scratch), ``S`` the ``[X y]`` Schur complement, ``minv`` the
    per-level inverses M11⁻¹ of the first block; ok False where the factor does not exist.
    """
    A11, A1X, AXX, indptr, rows, values, A22, A2X, _ = model_data
    _, _, _, pos, q, _ = layout
    levels, q1, m = A1X.shape
    T1, column = templates(theta, layout, q1)
    ok, L11inv, W, _, S, logdet = factor_first_block(T1, A11, A1X, AXX)
    minv = np.empty((levels, q1, q1))
    L22 = np.empty((0, 0))
    V2 = np.empty((0, m))
    if not ok:
        return False, T1, column, L11inv, W, L22, V2, S, logdet, minv
    P = np.empty((levels, q1, q1))
    TM = np.empty((q1, q1))
    for lev in range(levels):
        _small_product(L11inv[lev], L11inv[lev], minv[lev], True, False)
        _small_product(T1, minv[lev], TM, False, False)
        _small_product(TM, T1.T, P[lev], False, False)
    size = A22.shape[0]
    scalar = q.max() == 1
    if scalar:
        L22, D = rest_downdate(indptr, rows, values, P, A1X, A22, column[:, 0].copy())
    else:
        L22, D = rest_downdate(indptr, rows, values, P, A1X, A22, np.ones(size))
        symmetrize_lower(L22)
        L22 = _lambda_t(column, pos, q, _lambda_t(column, pos, q, L22).T.copy())
    for i in range(size):
        L22[i, i] += 1.0
    if potrf(routines, L22) != 0:
        return False, T1, column, L11inv, W, L22, V2, S, logdet, minv
    for i in range(size):
        logdet += 2.0 * np.log(L22[i, i])
    V2 = _lambda_t(column, pos, q, A2X - D)
    trsm(routines, L22, V2, False)
    S -= V2.T @ V2
    return True, T1, column, L11inv, W, L22, V2, S, logdet, minv


@njit(cache=True, nogil=True)
def back_substitute(model_data, layout, routines, T1, column, L11inv, L22, rhs1, rhs2):
    """Solve L_Z'x = rhs for one right-hand side (rhs1 (levels1, q1), rhs2 (Q2,)), as
    :meth:`~bayesmix.linalg.factorization.Factorization.back_substitute`; returns (x1, x2)."""
    _, _, _, indptr, rows, values, _, _, _ = model_data
    _, _, _, pos, q, _ = layout
    levels, q1 = rhs1.shape
    x2 = rhs2.copy()
    trsm(routines, L22, x2, True)
    y = _lambda(column, pos, q, x2)
    x1 = np.empty_like(rhs1)
    z = np.empty(q1)
    r = np.empty(q1)
    for lev in range(levels):
        z[:] = 0.0
        for a in range(indptr[lev], indptr[lev + 1]):  # A21'Λ₂x2, this level's rows
            for k in range(q1):
                z[k] += values[a, k] * y[rows[a]]
        for i in range(q1):  # rhs1 - L11⁻¹ Λ₁'z
            s = rhs1[lev, i]
            for j in range(q1):
                t = 0.0
                for k in range(q1):
                    t += T1[k, j] * z[k]
                s -= L11inv[lev, i, j] * t
            r[i] = s
        for i in range(q1):  # L11⁻ᵀ
            s = 0.0
            for j in range(q1):
                s += L11inv[lev, j, i] * r[j]
            x1[lev, i] = s
    return x1, x2


# ----- the log-likelihood and its gradient -------------------------------------------------------


@njit(cache=True, nogil=True, error_model="numpy")
def evaluate(theta_c, beta, sigma, n, model_data, layout, routines):
    """log p(y | β, C, σ) and its gradient (as :func:`~bayesmix.linalg.collapsed.factored_loglik`).

    Returns (value, d_beta, d_theta_c, d_sigma, factor): value -inf (and zero gradients) where
    the factor does not exist; ``factor`` = (T1, column, L11inv, W, L22, V2) at θ = θ_c/σ,
    what :func:`draw_effects` reads.
    """
    A11, A1X, AXX, indptr, rows, values, A22, A2X, pair_level = model_data
    block, t_row, t_col, pos, q, factor_of = layout
    theta = theta_c / sigma
    ok, T1, column, L11inv, W, L22, V2, S, logdet, minv = factor(theta, model_data, layout, routines)
    p = beta.shape[0]
    n_theta = theta.shape[0]
    parts = (T1, column, L11inv, W, L22, V2)
    if not ok:
        return -np.inf, np.zeros(p), np.zeros(n_theta), 0.0, parts
    levels, q1, m = A1X.shape
    size = A22.shape[0]
    v = np.empty(m)
    v[:p] = -beta
    v[p] = 1.0
    Sv = S @ v
    r2 = v @ Sv
    s2 = sigma * sigma
    value = -0.5 * (n * (LOG_2PI + np.log(s2)) + logdet + r2 / s2)
    d_beta = Sv[:p] / s2
    # G v: the spherical modes of [X y] v, and K v = Z'[X y] v - Z'ZΛ G v
    Wv = np.empty((levels, q1))
    for lev in range(levels):
        _small_vector(W[lev], v, Wv[lev], False)
    g1, g2 = back_substitute(model_data, layout, routines, T1, column, L11inv, L22, Wv, V2 @ v)
    lg1 = np.empty((levels, q1))
    for lev in range(levels):
        _small_vector(T1, g1[lev], lg1[lev], False)
    lg2 = _lambda(column, pos, q, g2)
    k1 = np.empty((levels, q1))
    k2 = A2X @ v - A22 @ lg2
    for lev in range(levels):
        _small_vector(A1X[lev], v, k1[lev], False)
        for i in range(q1):
            for k in range(q1):
                k1[lev, i] -= A11[lev, i, k] * lg1[lev, k]
        for a in range(indptr[lev], indptr[lev + 1]):
            r = rows[a]
            for k in range(q1):
                k1[lev, k] -= values[a, k] * lg2[r]
                k2[r] -= values[a, k] * lg1[lev, k]
    # the selected inverse (Factorization.selected_inverse)
    rest_first = rest_pairs_t(rows, pos, q, column, values)
    TM = np.empty((levels, q1, q1))  # Λ₁M11⁻¹ per level
    for lev in range(levels):
        _small_product(T1, minv[lev], TM[lev], False, False)
    S21 = np.zeros_like(rest_first)
    for a in range(S21.shape[0]):
        for j in range(q1):
            for k in range(q1):
                S21[a, j] += rest_first[a, k] * TM[pair_level[a], k, j]
    P22 = L22.copy()
    potri(routines, P22)
    P21, correction = selected_rest_first(indptr, rows, S21, P22)
    symmetrize_lower(P22)
    # H per block (gradient.schur_gradient), F = vv'/σ²
    H1 = P21.T @ rest_first
    TA = np.empty((q1, q1))
    P11 = minv - correction
    for lev in range(levels):
        _small_product(T1, A11[lev], TA, True, False)
        _small_product(P11[lev], TA, H1, False, True)
        for i in range(q1):
            for j in range(q1):
                H1[i, j] -= g1[lev, i] * k1[lev, j] / s2
    n_rest = factor_of.max() + 1
    q_max = q.max()
    H2 = rest_pairs_trace(rows, pos, q, factor_of, P21, values @ T1, n_rest, q_max)
    H2 += rest_block_trace(P22, A22, pos, q, factor_of, column, n_rest, q_max)
    for r in range(size):
        first = r - pos[r]
        for b in range(q[r]):
            H2[factor_of[r], pos[r], b] -= g2[r] * k2[first + b] / s2
    d_theta = np.empty(n_theta)
    inner = 0.0
    for i in range(n_theta):  # ∂/∂θ = -½ · 2 H'
        if block[i] == 0:
            d_theta[i] = -H1[t_col[i], t_row[i]]
        else:
            d_theta[i] = -H2[block[i] - 1, t_col[i], t_row[i]]
        inner += theta[i] * d_theta[i]
    d_sigma = -n / sigma + r2 / (s2 * sigma) - inner / sigma
    return value, d_beta, d_theta / sigma, d_sigma, parts


@njit(cache=True, nogil=True)
def draw_effects(model_data, layout, routines, parts, beta, sigma, eps1, eps2):
    """One exact joint draw of the spherical random effects, u = L_Z'⁻¹(L_Z⁻¹Λ'Z'(y - Xβ) + σε)
    (as :func:`~bayesmix.linalg.collapsed.draw_factored_effects`), from the factor ``parts``
    of :func:`evaluate` and the standard normals ε = (eps1 (levels1, q1), eps2 (Q2,)); returns
    u laid out as the factorisation lays it out (the first block level by level, then the rest)."""
    T1, column, L11inv, W, L22, V2 = parts
    p = beta.shape[0]
    v = np.empty(p + 1)
    v[:p] = -beta
    v[p] = 1.0
    rhs1 = sigma * eps1
    for lev in range(eps1.shape[0]):
        _small_vector(W[lev], v, rhs1[lev], True)
    x1, x2 = back_substitute(model_data, layout, routines, T1, column, L11inv, L22, rhs1, V2 @ v + sigma * eps2)
    return np.concatenate((x1.ravel(), x2))
