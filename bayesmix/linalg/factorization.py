"""The blocked Cholesky factor of Λ'Z'ZΛ + I and ``[X y]`` (Bates et al. 2015, sec. 3).

For a given θ, the lower-triangular L with

    L L' = [ Λ'Z'ZΛ + I   Λ'Z'[X y] ]
           [ [X y]'ZΛ     [X y]'[X y] ]

is computed block by block, in the style of MixedModels.jl:

- ``L11`` (levels1 blocks of q1 x q1): the first factor's block is block-diagonal, so it is
  factored level by level (batched);
- ``L21`` (sparse) and ``L22`` (dense): the remaining factors, when there are any;
- ``R`` ((p+1) x (p+1)): the Cholesky factor of the Schur complement for ``[X y]``, whose
  last diagonal element r_yy gives the penalised residual sum of squares r_yy² and whose
  leading block R_X gives log|X'V⁻¹X| (up to σ²).

The REML backend profiles β and σ out of it (:mod:`bayesmix.reml.criterion`); the collapsed
likelihood of the Bayesian backend is the same algebra at a given β
(:mod:`bayesmix.linalg.collapsed`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import scipy.linalg as la
import scipy.sparse as sp

from ..data.blocks import CrossProducts
from ..data.layout import FactorBlock, Structure
from .kernels import factor_first_block, rest_downdate, rest_pairs_t, selected_rest_first, symmetrize_lower


class SchurFactor:
    """What the fits read from the Cholesky factor R of the ``[X y]`` Schur complement, whichever
    factorisation of Λ'Z'ZΛ + I (blocked here, sparse in :mod:`bayesmix.linalg.sparse`) gave it.
    Subclasses have the attributes ``R`` ((p+1) x (p+1), lower), ``beta_shift`` and ``theta``."""

    R: np.ndarray
    beta_shift: np.ndarray | None

    @property
    def p(self) -> int:
        """Number of fixed effects."""
        return self.R.shape[0] - 1

    @property
    def pwrss(self) -> float:
        """Penalised weighted residual sum of squares r_yy²."""
        return float(self.R[-1, -1] ** 2)

    @property
    def logdet_x(self) -> float:
        """log|R_X|² = log|X'V⁻¹X| with V scaled by 1/σ²."""
        return float(2.0 * np.log(np.diag(self.R)[:-1]).sum())

    @property
    def beta(self) -> np.ndarray:
        """The GLS estimate of β given θ."""
        return self.factored_beta if self.beta_shift is None else self.factored_beta + self.beta_shift

    @property
    def factored_beta(self) -> np.ndarray:
        """β of the response the cross-products were computed from."""
        p = self.p
        if p == 0:  # PIRLS with β given
            return np.zeros(0)
        return la.solve_triangular(self.R[:p, :p].T, self.R[p, :p], lower=False, check_finite=False)

    @property
    def rx_inverse(self) -> np.ndarray:
        """(R_X R_X')⁻¹, which times σ² is the covariance of β̂."""
        p = self.p
        return la.cho_solve((self.R[:p, :p], True), np.eye(p))



@dataclass(frozen=True, eq=False)
class Factorization(SchurFactor):
    """The blocked Cholesky factor at one θ, and what the results need from it.

    Attributes
    ----------
    theta
        Where it was computed.
    lambda1
        Λ of the first factor block (q1 x q1).
    L11inv
        ``(levels1, q1, q1)``: inverses of the per-level blocks of L11.
    W
        ``(levels1, q1, p+1)``: the first factor's rows of the ``[X y]`` columns of L.
    lambda2, A21, L22, V2
        Λ of the remaining factors, the cross-product ``Z2'Z1``, the dense Cholesky factor
        of their block, and their rows of the ``[X y]`` columns of L (None with a single
        factor). ``L21 = Λ₂'A21 Λ₁ L11⁻ᵀ`` is used only through products.
    A21_levels
        ``Z2'Z1`` in the pair layout of :attr:`~bayesmix.data.blocks.CrossProducts.A21_levels`
        (None with a single factor).
    R
        Lower Cholesky factor of the ``[X y]`` Schur complement, (p+1) x (p+1).
    logdet_z
        log|L_Z|² = log|Λ'Z'ZΛ + I|.
    beta_shift
        When the cross-products are of y - X c rather than y (see :class:`ProfiledCriterion`),
        c, which :attr:`beta` adds back; None otherwise.
    """

    theta: np.ndarray
    lambda1: np.ndarray
    L11inv: np.ndarray
    W: np.ndarray
    R: np.ndarray
    logdet_z: float
    lambda2: "RestLambda | None" = None
    A21: sp.csr_array | None = None
    L22: np.ndarray | None = None
    V2: np.ndarray | None = None
    beta_shift: np.ndarray | None = None
    A21_levels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    def spherical_modes(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Conditional modes of the spherical effects u (b = Λu): first block, rest block."""
        p = self.p
        rhs1 = self.W[:, :, p] - self.W[:, :, :p] @ self.factored_beta
        rhs2 = None if self.L22 is None else self.V2[:, p] - self.V2[:, :p] @ self.factored_beta
        return self.back_substitute(rhs1, rhs2)

    def solve(self, c1: np.ndarray, c2: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """(Λ'Z'ZΛ + I)⁻¹ c, with c and the result split as the first block (levels1, q1, ...) and
        the rest block (Q2, ...) (None with a single factor): one or several right-hand sides."""
        w1 = np.einsum("lij,lj...->li...", self.L11inv, c1)  # L11⁻¹ c1
        if self.L22 is None:
            return self.back_substitute(w1, None)
        # L21 w1 = Λ₂' A21 Λ₁ L11⁻ᵀ w1
        spread = np.einsum("ij,lj...->li...", self.lambda1, _upper_solve(self.L11inv, w1)).reshape(-1, *c2.shape[1:])
        columns = (self.A21 @ spread).reshape(len(c2), -1)
        l21_w1 = self.lambda2.t_rows(columns).reshape(c2.shape)
        return self.back_substitute(w1, la.solve_triangular(self.L22, c2 - l21_w1, lower=True, check_finite=False))

    def effects_solution(self) -> tuple[np.ndarray, np.ndarray | None]:
        """G = (Λ'Z'ZΛ + I)⁻¹ Λ'Z'[X y], the spherical modes of each column of ``[X y]``: the
        first block (levels1, q1, p+1) and the rest block (Q2, p+1) (None with a single factor)."""
        return self.back_substitute(self.W, self.V2)

    def back_substitute(self, rhs1: np.ndarray, rhs2: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Solve L_Z' x = rhs for the lower-triangular factor L_Z of Λ'Z'ZΛ + I (rhs1 of shape
        (levels1, q1, ...), rhs2 of shape (Q2, ...): one or several right-hand sides, split as
        :meth:`solve` splits): with rhs standard normal, x ~ N(0, (Λ'Z'ZΛ + I)⁻¹)."""
        if self.L22 is None:
            return _upper_solve(self.L11inv, rhs1), None
        x2 = la.solve_triangular(self.L22.T, rhs2, lower=False, check_finite=False)
        columns = x2.reshape(len(x2), -1)
        z = (self.A21.T @ self.lambda2.rows(columns)).reshape(*rhs1.shape[:2], -1)
        z = np.einsum("ij,lic->ljc", self.lambda1, z).reshape(rhs1.shape)
        rhs1 = rhs1 - np.einsum("lij,lj...->li...", self.L11inv, z)  # L21' x2 = L11⁻¹ Λ₁' A21' Λ₂ x2
        return _upper_solve(self.L11inv, rhs1), x2

    def level_variances(self) -> list[np.ndarray]:
        """The diagonal blocks of (L_Z L_Z')⁻¹ per level, for each factor block (levels, q, q).

        Times σ² and pre/post-multiplied by Λ, these are lme4's conditional variances.
        """
        first, _, rest = self.selected_inverse
        out = [first]
        if rest is not None:
            for rows, levels, T in self.lambda2.parts:
                idx = rows.start + np.arange(levels * T.shape[0]).reshape(levels, T.shape[0])
                out.append(rest[idx[:, :, None], idx[:, None, :]])
        return out

    @functools.cached_property
    def rest_first(self) -> np.ndarray | None:
        """Λ₂'Z2'Z1 in the pair layout of ``A21_levels`` (pairs, q1); None with a single factor."""
        if self.L22 is None:
            return None
        _, rows, values = self.A21_levels
        return self.lambda2.t_pairs(rows, values)

    @functools.cached_property
    def selected_inverse(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """P = (Λ'Z'ZΛ + I)⁻¹ where Λ'Z'ZΛ has entries: its diagonal blocks per level of the
        first factor (levels1, q1, q1), its rest-by-first block P21 on the pattern of Z2'Z1
        (pair layout of ``A21_levels``, (pairs, q1)) and its rest block P22 (Q2, Q2) (both None
        with a single factor).

        With M11 = L11 L11' (block diagonal) and the sparse S = M21 M11⁻¹ (M21 = Λ₂'A21Λ₁),
        P22 = (L22 L22')⁻¹, P21 = -P22 S and the first block's diagonal blocks are
        M11⁻¹ + S_i'P22 S_i = M11⁻¹ - S_i'P21_i (S_i, P21_i: level i's columns). P21 is
        computed only where S has entries (:func:`~bayesmix.linalg.kernels.selected_rest_first`).
        """
        first = self._first_inverse
        if self.L22 is None:
            return first, None, None
        indptr, rows, _ = self.A21_levels
        S = np.einsum("ak,akj->aj", self.rest_first, (self.lambda1 @ first)[self._pair_levels])
        P22 = la.lapack.dpotri(self.L22, lower=1)[0]  # (L22 L22')⁻¹ from its factor: the lower triangle (the upper is L22's, 0)
        P21, correction = selected_rest_first(indptr, rows, S, P22)
        symmetrize_lower(P22)
        return first - correction, P21, P22

    @functools.cached_property
    def inverse_blocks(self) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """P = (Λ'Z'ZΛ + I)⁻¹ where the gradient of a GLMM's Laplace deviance reads it: as
        :attr:`selected_inverse`, with the whole of P21 (Q2, levels1 * q1), P21 = -P22 S."""
        first, _, P22 = self.selected_inverse
        if P22 is None:
            return first, None, None
        S = sp.csr_array(_scale_rows(self.A21 @ _block_diagonal(self.lambda1 @ self._first_inverse), self.lambda2))
        return first, -np.asarray((S.T @ P22).T), P22

    @functools.cached_property
    def _first_inverse(self) -> np.ndarray:
        """M11⁻¹ per level of the first factor (levels1, q1, q1), M11 = L11 L11'."""
        return np.swapaxes(self.L11inv, 1, 2) @ self.L11inv

    @functools.cached_property
    def _pair_levels(self) -> np.ndarray:
        """The first factor's level of each pair of ``A21_levels``."""
        indptr = self.A21_levels[0]
        return np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))


def effects(structure: Structure, theta: np.ndarray, u: np.ndarray) -> list[np.ndarray]:
    """b = Λu per factor block, each of shape (levels, q), from the spherical effects u laid out
    as the factorisation lays them out (the first block level by level, then the others as
    :class:`RestLambda` orders them)."""
    blocks = structure.blocks
    first = blocks[0]
    size1 = first.n_levels * first.q
    out = [u[:size1].reshape(first.n_levels, first.q) @ first.lambda_(theta).T]
    if len(blocks) > 1:
        b2 = RestLambda(blocks[1:], theta).rows(u[size1:, None])[:, 0]
        start = 0
        for block in blocks[1:]:
            size = block.n_levels * block.q
            out.append(b2[start : start + size].reshape(block.n_levels, block.q))
            start += size
    return out


def conditional_covariances(structure: Structure, f: Factorization) -> list[np.ndarray]:
    """Per factor block, Λ [(L_Z L_Z')⁻¹]_level Λ' for each level, (levels, q, q): the conditional
    covariances of the random effects b = Λu (lme4's ``condVar``, times σ² for a linear model),
    from ``f``'s :meth:`level_variances` (the blocked or the sparse factorisation)."""
    return [block.lambda_(f.theta) @ spherical @ block.lambda_(f.theta).T
            for block, spherical in zip(structure.blocks, f.level_variances())]


def factorize(structure: Structure, cp: CrossProducts, theta: np.ndarray, beta_shift: np.ndarray | None = None) -> Factorization:
    """The blocked Cholesky factor of the cross-products ``cp`` at θ (numpy's LinAlgError if it
    does not exist); ``beta_shift`` as for :class:`Factorization`."""
    blocks = structure.blocks
    T1 = blocks[0].lambda_(theta)
    ok, L11inv, W, _, S, logdet_z = factor_first_block(T1, cp.A11, cp.A1X, cp.AXX)
    if not ok:
        raise np.linalg.LinAlgError("Λ'Z'ZΛ + I or the [X y] Schur complement is not positive definite")
    if cp.single_factor:
        return Factorization(theta, T1, L11inv, W, schur_factor(S), float(logdet_z), beta_shift=beta_shift)
    lam2 = RestLambda(blocks[1:], theta)
    minv = np.swapaxes(L11inv, 1, 2) @ L11inv
    if lam2.scalar:
        M22, D = rest_downdate(*cp.A21_levels, T1 @ minv @ T1.T, cp.A1X, cp.A22, lam2.scale)
    else:
        M22, D = rest_downdate(*cp.A21_levels, T1 @ minv @ T1.T, cp.A1X, cp.A22, np.ones(len(cp.A22)))
        M22 = lam2.t_rows(lam2.t_rows(symmetrize_lower(M22)).T)
    M22[np.diag_indices_from(M22)] += 1.0
    L22, info = la.lapack.dpotrf(M22, lower=1, clean=1, overwrite_a=1)  # reads the lower triangle
    if info != 0:
        raise np.linalg.LinAlgError("Λ'Z'ZΛ + I is not positive definite")
    logdet_z += 2.0 * np.log(np.diag(L22)).sum()
    V2 = la.solve_triangular(L22, lam2.t_rows(cp.A2X - D), lower=True, check_finite=False)
    R = schur_factor(S - V2.T @ V2)
    return Factorization(theta, T1, L11inv, W, R, float(logdet_z), lam2, cp.A21, L22, V2, beta_shift, cp.A21_levels)


DENSE_MEMORY = 3
"""Q2 x Q2 matrices of doubles a factorisation of the dense block holds at once: the block, its
factor and its inverse."""


def dense_block_bytes(size: int) -> float:
    """The bytes of the :data:`DENSE_MEMORY` matrices of a dense block of ``size`` rows."""
    return DENSE_MEMORY * 8.0 * size**2


def available_memory() -> float:
    """Physical memory in bytes (inf where the system does not say): what decides whether a
    design's dense blocks can be held at all."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return float("inf")


def schur_factor(S: np.ndarray) -> np.ndarray:
    """The lower Cholesky factor R of the ``[X y]`` Schur complement S.

    With negative working weights (PIRLS for a link whose observed information is negative in
    places, such as the Gaussian's log link) r_yy² may be negative while the X block and the
    y row, all that PIRLS reads, exist: r_yy is then NaN rather than the factor failing.
    """
    try:
        return np.linalg.cholesky(S)
    except np.linalg.LinAlgError:
        p = S.shape[0] - 1
        R = np.zeros_like(S)
        R[:p, :p] = np.linalg.cholesky(S[:p, :p])
        R[p, :p] = la.solve_triangular(R[:p, :p], S[:p, p], lower=True, check_finite=False)
        rest = S[p, p] - R[p, :p] @ R[p, :p]
        R[p, p] = np.sqrt(rest) if rest >= 0 else np.nan
        return R


class RestLambda:
    """Λ₂, the block-diagonal Λ of the factors after the first, applied without forming it.

    For a factor with ℓ levels and template T (q x q), its part of Λ₂ is kron(I_ℓ, T); rows
    and columns of the rest block are ordered factor by factor, level-major.
    """

    def __init__(self, blocks: tuple[FactorBlock, ...], theta: np.ndarray):
        self.parts = []
        start = 0
        for block in blocks:
            size = block.n_levels * block.q
            self.parts.append((slice(start, start + size), block.n_levels, block.lambda_(theta)))
            start += size

    def t_rows(self, Y: np.ndarray) -> np.ndarray:
        """Λ₂' Y."""
        return self._apply(Y, transpose=True)

    def rows(self, Y: np.ndarray) -> np.ndarray:
        """Λ₂ Y."""
        return self._apply(Y, transpose=False)

    def t_pairs(self, rows: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Λ₂'V for V with the pattern of ``Z2'Z1`` in the pair layout of
        :attr:`~bayesmix.data.blocks.CrossProducts.A21_levels` (pair a at rest row ``rows[a]``)."""
        if self.scalar:
            return V * self.scale[rows][:, None]
        pos, q, _, column = self.row_templates()
        return rest_pairs_t(rows, pos, q, column, V)

    @property
    def scalar(self) -> bool:
        """Whether every rest factor has one effect per level (Λ₂ diagonal)."""
        return all(T.shape[0] == 1 for _, _, T in self.parts)

    @property
    def scale(self) -> np.ndarray:
        """The diagonal of Λ₂ when it is diagonal (:attr:`scalar`)."""
        return np.concatenate([np.full(levels, T[0, 0]) for _, levels, T in self.parts])

    def row_templates(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per row r of the rest block: its effect's position within its level, the number of
        effects per level of its factor, the factor's index (0 for the second factor block) and
        ``column[r, j] = Λ₂[(level, j), r]`` (its column of Λ₂ within the level)."""
        q_max = max(T.shape[0] for _, _, T in self.parts)
        pos, q, factor, column = [], [], [], []
        for k, (_, levels, T) in enumerate(self.parts):
            size = T.shape[0]
            pos.append(np.tile(np.arange(size), levels))
            q.append(np.full(levels * size, size))
            factor.append(np.full(levels * size, k))
            column.append(np.tile(np.pad(T.T, ((0, 0), (0, q_max - size))), (levels, 1)))
        return np.concatenate(pos), np.concatenate(q), np.concatenate(factor), np.concatenate(column)

    def _apply(self, Y: np.ndarray, transpose: bool) -> np.ndarray:
        out = np.empty_like(Y)
        for rows, levels, T in self.parts:
            if T.shape[0] == 1:  # scalar term: Λ is a multiple of the identity
                np.multiply(Y[rows], T[0, 0], out=out[rows])
                continue
            block = Y[rows].reshape(levels, T.shape[0], Y.shape[1])
            out[rows] = np.einsum("ji,ljc->lic" if transpose else "ij,ljc->lic", T, block).reshape(-1, Y.shape[1])
        return out


def _scale_rows(A: sp.sparray, lam: RestLambda) -> sp.sparray:
    """Λ₂' A for a sparse A: a row scaling when every rest term is scalar, dense otherwise."""
    if lam.scalar:
        return sp.diags_array(lam.scale) @ A
    return lam.t_rows(A.toarray())


def _block_diagonal(blocks: np.ndarray) -> sp.bsr_array:
    """Sparse block-diagonal matrix from an array of square blocks (levels, q, q)."""
    levels, q, _ = blocks.shape
    return sp.bsr_array((blocks, np.arange(levels), np.arange(levels + 1)), shape=(levels * q, levels * q))


def _upper_solve(Linv: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """Solve L_i' u_i = rhs_i for every level, given the inverses of the L_i."""
    return np.einsum("lji,lj...->li...", Linv, rhs)
