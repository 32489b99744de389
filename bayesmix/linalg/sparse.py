"""The sparse Cholesky factor of Λ'Z'ZΛ + I (CHOLMOD through scikit-sparse), for designs whose
dense block (:mod:`bayesmix.linalg.factorization`) would be too large.

The blocked factorisation keeps a dense block for every factor after the first, of size Q2 =
Σ levels x q: 20,000 crossed levels make it 3.2 GB and n³/3 flops per evaluation. Here
M = Λ'Z'ZΛ + I is factored as a sparse matrix, as lme4 does through Matrix: CHOLMOD orders
its columns to reduce the fill-in (METIS nested dissection, else AMD) and analyses the pattern
once per design (:class:`SparseCholesky`); each θ refills the values on that pattern and
factors them numerically. The ``[X y]`` part is then dense and small: with B = Λ'Z'[X y] and
G = M⁻¹B, the Schur complement is S = [X y]'[X y] - B'G and its factor R gives the criterion
as in the blocked path.

The exact gradient (:mod:`bayesmix.linalg.gradient` for the algebra) needs P = M⁻¹ where Z'Z
has entries. CHOLMOD has no selected inverse: :func:`takahashi` computes P on the pattern of
the factor L (which holds that of M) by the Takahashi recurrences, supernode by supernode from
the last, with dense products inside each (Takahashi, Fagan and Chen 1973; Erisman and Tinney
1975; Lin et al.'s SelInv, 2011).

The sparse path needs the optional extra ``bayesmix[sparse]`` (scikit-sparse, built against
SuiteSparse: Debian's ``libsuitesparse-dev``, conda's ``suitesparse``); :func:`cholmod_available`
says whether it is installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..data.layout import Structure
from ..data.sparse_crossprod import SparseCrossProducts
from ..jit import njit
from .factorization import RestLambda, SchurFactor, schur_factor
from .gradient import information_from, sigma_derivatives, theta_entries
from .kernels import invert_lower

INSTALL_HINT = (
    'pip install "bayesmix[sparse]" after installing SuiteSparse (Debian/Ubuntu: apt-get install libsuitesparse-dev; '
    "conda: conda install -c conda-forge suitesparse)"
)


@functools.cache
def cholmod_available() -> bool:
    """Whether scikit-sparse's CHOLMOD can be imported (the extra ``bayesmix[sparse]``)."""
    try:
        import sksparse.cholmod  # noqa: F401
    except ImportError:
        return False
    return True


class SparseCholesky:
    """The symbolic analysis of M = Λ'Z'ZΛ + I for one design, done once, and its numeric
    factor at any θ.

    Parameters
    ----------
    structure
        The θ layout.
    cp
        The sparse cross-products (:func:`~bayesmix.data.sparse_crossprod.sparse_cross_products`).
    beta_shift
        As for :class:`~bayesmix.linalg.factorization.Factorization`.
    """

    def __init__(self, structure: Structure, cp: SparseCrossProducts, beta_shift: np.ndarray | None = None):
        from sksparse.cholmod import CholmodError, analyze

        self.structure, self.cp, self.beta_shift = structure, cp, beta_shift
        pattern = cp.pattern
        matrix = pattern.matrix(cp.A + _identity_on(pattern))
        try:  # nested dissection: far less fill than AMD on crossed designs with some locality
            self.symbolic = analyze(matrix, mode="supernodal", ordering_method="metis")
        except CholmodError:  # a CHOLMOD built without METIS
            self.symbolic = analyze(matrix, mode="supernodal")
        self._positions: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None

    @functools.cached_property
    def column_counts(self) -> np.ndarray:
        """The number of entries of each column of the factor L under CHOLMOD's ordering (without
        the supernodal padding), from the elimination tree, in time proportional to L's entries."""
        perm = self.symbolic.P()
        full = self.cp.pattern.symmetric(np.ones(self.cp.pattern.nnz))
        permuted = sp.csc_array(full[perm][:, perm])
        return column_counts(permuted.indptr.astype(np.int64), permuted.indices.astype(np.int64))

    @property
    def work(self) -> float:
        """Σ_j c_j² over L's column counts c_j: about twice the flops of the numeric factor, and
        of the same order as those of the selected inverse."""
        counts = self.column_counts.astype(float)
        return float(counts @ counts)

    def templates(self, theta: np.ndarray) -> np.ndarray:
        """Λ's template of each factor block, padded to (blocks, q_max, q_max)."""
        blocks = self.structure.blocks
        q_max = max(b.q for b in blocks)
        out = np.zeros((len(blocks), q_max, q_max))
        for k, b in enumerate(blocks):
            out[k, : b.q, : b.q] = b.lambda_(theta)
        return out

    def factorize(self, theta: np.ndarray) -> SparseFactorization:
        """The factor at θ (numpy's LinAlgError if it does not exist)."""
        from sksparse.cholmod import CholmodNotPositiveDefiniteError

        theta = np.asarray(theta, dtype=float)
        pattern, cp = self.cp.pattern, self.cp
        T = self.templates(theta)
        data = scaled_blocks(cp.A, T, pattern.pair_row, pattern.pair_column, pattern.pair_offset, pattern.pair_rows,
                             pattern.node_q, pattern.node_block)
        try:
            factor = self.symbolic.cholesky(pattern.matrix(data), beta=1.0)  # a copy of the analysis, refilled
        except CholmodNotPositiveDefiniteError:
            raise np.linalg.LinAlgError("Λ'Z'ZΛ + I is not positive definite") from None
        lam = RestLambda(self.structure.blocks, theta)
        B = lam.t_rows(cp.AX)
        G = factor.solve_A(B)
        S = cp.AXX - B.T @ G
        R = schur_factor(0.5 * (S + S.T))
        return SparseFactorization(theta, R, float(factor.logdet()), self.beta_shift, self, factor, T, lam, G)

    def positions(self, L) -> np.ndarray:
        """For each stored entry of the node pattern, its position in the factor ``L`` (CSC,
        permuted): where the Takahashi recurrences leave its entry of M⁻¹. Computed once per
        pattern of L (the same for every θ: it is the symbolic analysis')."""
        if self._positions is None or not np.array_equal(self._positions[0], L.indptr):
            pattern = self.cp.pattern
            inverse = np.empty_like(self.symbolic.P())
            inverse[self.symbolic.P()] = np.arange(len(inverse))
            columns = np.repeat(np.arange(pattern.size), np.diff(pattern.indptr))
            found = _locate(L.indptr.astype(np.int64), L.indices.astype(np.int64),
                            inverse[pattern.indices].astype(np.int64), inverse[columns].astype(np.int64))
            if (found < 0).any():
                raise np.linalg.LinAlgError("CHOLMOD's factor does not hold the pattern of Λ'Z'ZΛ + I")
            self._positions = (L.indptr.copy(), L.indices.copy(), found)
        return self._positions[2]


@dataclass(frozen=True, eq=False)
class SparseFactorization(SchurFactor):
    """The sparse Cholesky factor at one θ, and what the fits and the gradient need from it.

    Attributes
    ----------
    theta, R, logdet_z, beta_shift
        As for :class:`~bayesmix.linalg.factorization.Factorization`.
    plan
        The :class:`SparseCholesky` (symbolic analysis and cross-products) it came from.
    factor
        CHOLMOD's numeric factor of M = Λ'Z'ZΛ + I.
    templates
        Λ's template per factor block (:meth:`SparseCholesky.templates`).
    lam
        Λ of all factor blocks (:class:`~bayesmix.linalg.factorization.RestLambda`).
    G
        M⁻¹Λ'Z'[X y] (Q, p + 1): the spherical modes of each column of ``[X y]``.
    """

    theta: np.ndarray
    R: np.ndarray
    logdet_z: float
    beta_shift: np.ndarray | None
    plan: SparseCholesky
    factor: object
    templates: np.ndarray
    lam: RestLambda
    G: np.ndarray

    kind = "sparse"

    def spherical_modes(self) -> tuple[np.ndarray, np.ndarray | None]:
        """Conditional modes of u (b = Λu): the first factor block (levels1, q1) and the rest
        (Q2,), None with a single factor, laid out as the blocked factorisation lays them out."""
        u = self.G[:, -1] - self.G[:, :-1] @ self.factored_beta
        first = self.plan.structure.blocks[0]
        size = first.n_levels * first.q
        return u[:size].reshape(first.n_levels, first.q), (u[size:] if len(u) > size else None)

    @functools.cached_property
    def selected_inverse(self) -> np.ndarray:
        """M⁻¹ on the stored node pattern of Z'Z (the values of
        :meth:`~bayesmix.data.sparse_crossprod.NodePattern.matrix`)."""
        L = self.factor.L()
        L.sort_indices()
        Z = takahashi(L.indptr.astype(np.int64), L.indices.astype(np.int64), L.data)
        if Z is None:
            raise np.linalg.LinAlgError("CHOLMOD's factor pattern is not closed under fill-in")
        return Z[self.plan.positions(L)]

    def level_variances(self) -> list[np.ndarray]:
        """The diagonal blocks of M⁻¹ per level, for each factor block (levels, q, q)."""
        pattern = self.plan.cp.pattern
        P = self.selected_inverse
        diagonal = np.flatnonzero(pattern.pair_row == pattern.pair_column)  # one per node, in node order
        out, start = [], 0
        for block in self.plan.structure.blocks:
            q = block.q
            first = pattern.pair_offset[diagonal[start : start + block.n_levels]]
            stride = pattern.pair_rows[diagonal[start : start + block.n_levels]]
            idx = first[:, None, None] + np.arange(q)[None, None, :] * stride[:, None, None] + np.arange(q)[None, :, None]
            out.append(P[idx])
            start += block.n_levels
        return out

    def gradient(self, F: np.ndarray) -> np.ndarray:
        """∂/∂θ of log|M| + h(S) given F = ∂h/∂S (as
        :func:`~bayesmix.linalg.gradient.schur_gradient` for the blocked factor): per factor
        block, 2 (Σ_l H_ll)' with H = M⁻¹Λ'Z'Z - G F K' and K = Z'[X y] - Z'ZΛG."""
        return theta_entries(self.plan.structure, self.template_gradients(F))

    def template_gradients(self, F: np.ndarray) -> list[np.ndarray]:
        """∂/∂T_k of log|M| + h(S) for each factor block's template, every entry (as
        :func:`~bayesmix.linalg.gradient.template_gradients` for the blocked factor)."""
        structure, cp = self.plan.structure, self.plan.cp
        pattern = cp.pattern
        n_blocks, q_max = self.templates.shape[:2]
        H = np.zeros((n_blocks, q_max, q_max))
        inverse_trace(self.selected_inverse, cp.A, self.templates, pattern.pair_row, pattern.pair_column,
                      pattern.pair_offset, pattern.pair_rows, pattern.node_q, pattern.node_block, H)
        out = []
        for k, (block, (rows, levels, T)) in enumerate(zip(structure.blocks, self.lam.parts)):
            q = block.q
            Gk, Kk = self.G[rows].reshape(levels, q, -1), self.residual_products[rows].reshape(levels, q, -1)
            out.append(2.0 * (H[k, :q, :q] - np.einsum("lam,mn,lbn->ab", Gk, F, Kk)).T)
        return out

    @functools.cached_property
    def residual_products(self) -> np.ndarray:
        """K = Z'[X y] - Z'ZΛG (Q, p + 1)."""
        cp = self.plan.cp
        return cp.AX - cp.A_full @ self.lam.rows(self.G)

    def average_information(self, reml: bool, dof: float) -> np.ndarray:
        """The average information of θ (:func:`~bayesmix.linalg.gradient.average_information`,
        which gives its algebra), from the sparse cross-products and one CHOLMOD solve with
        dim(θ) right-hand sides."""
        structure, cp, lam = self.plan.structure, self.plan.cp, self.lam
        z = self.residual_products @ np.append(-self.factored_beta, 1.0)  # Z'e
        C = np.zeros((structure.n_theta, len(z)))  # rows c_i = ∂(ΛΛ')/∂θ_i Z'e
        for i, k, dSigma in sigma_derivatives(structure, self.theta):
            rows, levels, T = lam.parts[k]
            C[i, rows] = (z[rows].reshape(levels, len(T)) @ dSigma).ravel()
        AC = cp.A_full @ C.T
        V = lam.t_rows(AC)
        S = self.factor.solve_A(V)
        projected = (C - lam.rows(S).T) @ cp.AX[:, : self.p]
        return information_from(C @ AC - V.T @ S, projected, C @ z, self, reml, dof)


def _identity_on(pattern) -> np.ndarray:
    """The identity's values on the node pattern (1 on the scalar diagonal)."""
    columns = np.repeat(np.arange(pattern.size), np.diff(pattern.indptr))
    return (pattern.indices == columns).astype(float)


@njit(cache=True)
def scaled_blocks(A, T, pair_row, pair_column, pair_offset, pair_rows, node_q, node_block):
    """Λ'AΛ on the node pattern: block (a, b) is T_a' A_ab T_b, T_k the template of node k's block."""
    out = np.empty_like(A)
    q_max = T.shape[1]
    AT = np.empty((q_max, q_max))
    for t in range(len(pair_row)):
        a, b = pair_row[t], pair_column[t]
        qa, qb = node_q[a], node_q[b]
        Ta, Tb = T[node_block[a]], T[node_block[b]]
        base, stride = pair_offset[t], pair_rows[t]
        for c in range(qa):  # AT = A_ab T_b
            for d in range(qb):
                s = 0.0
                for e in range(qb):
                    s += A[base + e * stride + c] * Tb[e, d]
                AT[c, d] = s
        for c in range(qa):  # T_a' AT
            for d in range(qb):
                s = 0.0
                for e in range(qa):
                    s += Ta[e, c] * AT[e, d]
                out[base + d * stride + c] = s
    return out


@njit(cache=True)
def inverse_trace(P, A, T, pair_row, pair_column, pair_offset, pair_rows, node_q, node_block, H):
    """Add Σ_l (M⁻¹Λ'Z'Z)_ll over the levels l of each factor block to ``H`` (blocks, q_max, q_max),
    from M⁻¹ (``P``) and Z'Z (``A``) on the node pattern: the stored block (a, b), a >= b, gives
    P_ab' T_a' A_ab to node b's block and, off the diagonal, P_ab T_b' A_ab' to node a's."""
    q_max = T.shape[1]
    TA = np.empty((q_max, q_max))
    for t in range(len(pair_row)):
        a, b = pair_row[t], pair_column[t]
        qa, qb = node_q[a], node_q[b]
        ka, kb = node_block[a], node_block[b]
        base, stride = pair_offset[t], pair_rows[t]
        for c in range(qa):  # TA = T_a' A_ab (qa x qb)
            for d in range(qb):
                s = 0.0
                for e in range(qa):
                    s += T[ka, e, c] * A[base + d * stride + e]
                TA[c, d] = s
        for i in range(qb):  # node b: P_ab' TA
            for j in range(qb):
                s = 0.0
                for c in range(qa):
                    s += P[base + i * stride + c] * TA[c, j]
                H[kb, i, j] += s
        if a != b:
            for i in range(qa):  # node a: P_ab T_b' A_ab'
                for j in range(qa):
                    s = 0.0
                    for d in range(qb):
                        u = 0.0
                        for e in range(qb):
                            u += T[kb, e, d] * A[base + e * stride + j]
                        s += P[base + d * stride + i] * u
                    H[ka, i, j] += s


@njit(cache=True)
def takahashi(Lp, Li, Lx):
    """M⁻¹ on the pattern of its lower Cholesky factor L (CSC, rows sorted, diagonal first; M = LL'),
    by the Takahashi recurrences, one supernode at a time from the last.

    A supernode is a run of columns J whose patterns nest (column j's is j and column j+1's); its
    rows below J are the same set S for every column. With L_JJ, L_SJ its dense blocks,
    U = L_SJ L_JJ⁻¹ and M⁻¹ already known on S x S (which the pattern holds whole),

        Z_SJ = -Z_SS U,    Z_JJ = L_JJ⁻ᵀ L_JJ⁻¹ - U' Z_SJ,

    (from Z L = L⁻ᵀ, upper triangular), dense products. Returns None if some entry of S x S is not
    in the pattern (a pattern not closed under fill-in)."""
    n = len(Lp) - 1
    Z = np.zeros(len(Lx))
    last = n
    while last > 0:
        first = last - 1  # extend the supernode J = [first, last) while the columns nest
        while first > 0 and Lp[first] - Lp[first - 1] == Lp[first + 1] - Lp[first] + 1 and Li[Lp[first - 1] + 1] == first:
            first -= 1
        ns = last - first
        S = Li[Lp[last - 1] + 1 : Lp[last]]
        m = len(S)
        LJJ = np.zeros((ns, ns))
        LSJ = np.empty((m, ns))
        for c in range(ns):
            p = Lp[first + c]
            for r in range(c, ns):
                LJJ[r, c] = Lx[p + r - c]
            for a in range(m):
                LSJ[a, c] = Lx[p + ns - c + a]
        ZSS = np.empty((m, m))
        for b in range(m):
            q, end = Lp[S[b]], Lp[S[b] + 1]
            ZSS[b, b] = Z[q]
            q += 1
            for a in range(b + 1, m):
                while q < end and Li[q] < S[a]:
                    q += 1
                if q == end or Li[q] != S[a]:
                    return None
                ZSS[a, b] = Z[q]
                ZSS[b, a] = Z[q]
        Linv = np.empty((ns, ns))  # L_JJ⁻¹, lower triangular
        invert_lower(LJJ, Linv, ns)
        U = LSJ @ Linv
        ZSJ = -(ZSS @ U)
        ZJJ = Linv.T @ Linv - U.T @ ZSJ
        for c in range(ns):
            p = Lp[first + c]
            for r in range(c, ns):
                Z[p + r - c] = ZJJ[r, c]
            for a in range(m):
                Z[p + ns - c + a] = ZSJ[a, c]
        last = first
    return Z


@njit(cache=True)
def _locate(Lp, Li, rows, columns):
    """Position in L (CSC, rows sorted) of the entry (max, min) of each (row, column) pair, -1 if absent."""
    out = np.empty(len(rows), dtype=np.int64)
    for e in range(len(rows)):
        r, c = rows[e], columns[e]
        if r < c:
            r, c = c, r
        lo, hi = Lp[c], Lp[c + 1]
        while lo < hi:
            mid = (lo + hi) // 2
            if Li[mid] < r:
                lo = mid + 1
            else:
                hi = mid
        out[e] = lo if lo < Lp[c + 1] and Li[lo] == r else -1
    return out


@njit(cache=True)
def column_counts(indptr, indices):
    """Column counts of the Cholesky factor of a symmetric matrix given by its whole pattern (CSC),
    diagonal included: the elimination tree (Liu's algorithm, with path compression), then each
    row's pattern in L as the union of the tree paths from its entries left of the diagonal."""
    n = len(indptr) - 1
    parent = np.full(n, -1)
    ancestor = np.full(n, -1)
    for i in range(n):
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            while k != -1 and k < i:
                up = ancestor[k]
                ancestor[k] = i
                if up == -1:
                    parent[k] = i
                k = up
    counts = np.ones(n, dtype=np.int64)
    mark = np.full(n, -1)
    for i in range(n):
        mark[i] = i
        for p in range(indptr[i], indptr[i + 1]):
            k = indices[p]
            while k < i and mark[k] != i:
                counts[k] += 1
                mark[k] = i
                k = parent[k]
    return counts
