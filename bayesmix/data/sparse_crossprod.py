"""Cross-products of ``[Z X y]`` for the sparse factorisation: ``Z'Z`` as a sparse matrix over
all grouping factors, without the dense block of :mod:`bayesmix.data.crossprod`.

The columns of Z are laid out as the blocked factorisation lays them out (the factor blocks in
order, each level-major). A *node* is one level of one factor block, with q columns. ``Z'Z``
has a non-zero block (a, b) exactly where some row has level a and level b, so it is stored
by nodes: the lower block triangle in compressed sparse columns, each node's diagonal block
whole (both triangles), every column of a node with the same rows. Node column b then is a
dense slab of R_b rows (the q of each node a >= b it meets) by q_b columns, and entry (c, d)
of its block (a, b) sits at ``slab[b] + d * R_b + row_offset(a in b) + c``. CHOLMOD reads the
lower triangle of this pattern; the entries above the diagonal inside a diagonal block are
ignored there and used by the products here. The values come from the design's sufficient
statistics (:meth:`~bayesmix.data.statistics.SufficientStatistics.sparse_cross_products`: per
level and per distinct pair of levels), so pandas and dask designs give the same matrix.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..jit import njit


@dataclass(frozen=True, eq=False)
class NodePattern:
    """The block pattern of ``Z'Z`` by nodes (levels of factor blocks), see the module docstring.

    Attributes
    ----------
    node_start, node_q, node_block
        Per node: its first column, its number of columns and its factor block's index.
    pair_row, pair_column
        Per stored block (a, b), a >= b, in storage order (by column node, then row node).
    pair_offset, pair_rows
        Per stored block: the position of its (0, 0) entry in the data and R_b, the rows of its
        column slab (the stride between its columns).
    indptr, indices
        The scalar compressed-column pattern (int32 or int64, as CHOLMOD takes them).
    """

    node_start: np.ndarray
    node_q: np.ndarray
    node_block: np.ndarray
    pair_row: np.ndarray
    pair_column: np.ndarray
    pair_offset: np.ndarray
    pair_rows: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray

    @property
    def size(self) -> int:
        """Number of columns of Z."""
        return int(self.node_start[-1] + self.node_q[-1])

    @property
    def nnz(self) -> int:
        """Number of stored scalar entries."""
        return int(self.indptr[-1])

    def matrix(self, data: np.ndarray) -> sp.csc_matrix:
        """The stored lower pattern with values ``data``, as CHOLMOD reads it."""
        return sp.csc_matrix((data, self.indices, self.indptr), shape=(self.size, self.size))

    @cached_property
    def off_diagonal(self) -> np.ndarray:
        """Mask of the stored entries outside the nodes' diagonal blocks."""
        mask = np.zeros(self.nnz, dtype=bool)
        _mark_blocks(self.pair_offset, self.pair_rows, self.node_q[self.pair_row], self.node_q[self.pair_column],
                     self.pair_row != self.pair_column, mask)
        return mask

    def symmetric(self, data: np.ndarray) -> sp.csr_array:
        """The whole symmetric matrix whose stored part has values ``data`` (for products)."""
        lower = sp.csr_array(self.matrix(data))
        strict = sp.csr_array(self.matrix(np.where(self.off_diagonal, data, 0.0)))
        return lower + strict.T


@dataclass(frozen=True, eq=False)
class SparseCrossProducts:
    """``[Z X y]'W[Z X y]`` for the sparse factorisation (m = p + 1 columns of ``[X y]``).

    Attributes
    ----------
    n, p
        Number of observations and of fixed effects.
    pattern
        The node pattern of ``Z'Z`` (:class:`NodePattern`).
    A
        ``Z'WZ`` on the pattern (its stored values).
    AX
        ``(Q, m)``: ``Z'W[X y]``.
    AXX
        ``(m, m)``: ``[X y]'W[X y]``.
    """

    n: int
    p: int
    pattern: NodePattern
    A: np.ndarray
    AX: np.ndarray
    AXX: np.ndarray

    single_factor = False  # read by the callers of the blocked cross-products' attribute of that name

    @cached_property
    def A_full(self) -> sp.csr_array:
        """``Z'WZ``, the whole symmetric matrix."""
        return self.pattern.symmetric(self.A)


def pattern_of_pairs(n_levels, qs, keys: np.ndarray) -> tuple[NodePattern, np.ndarray]:
    """The node pattern of factor blocks with ``n_levels`` levels and ``qs`` columns each, whose
    off-diagonal blocks are the pairs of nodes ``keys`` (column node b <= row node a, as
    ``b * nodes + a``; repeats allowed), and the stored block of each key. Every node's diagonal
    block is stored, whether a key names it or not."""
    n_nodes = int(np.sum(n_levels))
    node_q = np.repeat(np.asarray(qs, dtype=np.int64), n_levels)
    node_block = np.repeat(np.arange(len(qs), dtype=np.int64), n_levels)
    node_start = np.concatenate([[0], np.cumsum(node_q)[:-1]]).astype(np.int64)
    diagonal = np.arange(n_nodes, dtype=np.int64) * (n_nodes + 1)
    unique, slots = np.unique(np.concatenate([diagonal, keys]), return_inverse=True)
    column, row = np.divmod(unique, n_nodes)  # sorted by column node, then row node
    offset, rows, indptr, indices = _layout(column, row, node_start, node_q, n_nodes)
    index_type = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    pattern = NodePattern(node_start, node_q, node_block, row, column, offset, rows,
                          indptr.astype(index_type), indices.astype(index_type))
    return pattern, slots.ravel()[n_nodes:]


def summed_cross_products(n: int, p: int, AZZ, AZX, pairs, AXX: np.ndarray) -> SparseCrossProducts:
    """The sparse cross-products from sums over the rows (float64): per factor block k,
    ``AZZ[k]`` (levels, q, q) and ``AZX[k]`` (levels, q, m); per pair of blocks a < b that
    share rows, ``(a, b, i, j, V)``: the levels i of a and j of b of each distinct pair of
    levels, and V (pairs, q_a, q_b) their sums ``Σ z_a z_b'``; and ``AXX``. What a design's
    sufficient statistics give (pandas or dask alike): the matrix :func:`sparse_cross_products`
    would take from the rows."""
    n_levels, qs = [len(A) for A in AZZ], [A.shape[1] for A in AZZ]
    offsets = np.cumsum([0] + n_levels)
    n_nodes = int(offsets[-1])
    keys = [(offsets[a] + np.asarray(i, np.int64)) * n_nodes + offsets[b] + np.asarray(j, np.int64)
            for a, b, i, j, _ in pairs]  # column node (of a) <= row node (of b)
    pattern, slots = pattern_of_pairs(n_levels, qs, np.concatenate([np.zeros(0, np.int64), *keys]))
    stored = np.searchsorted(pattern.pair_column * n_nodes + pattern.pair_row, np.arange(n_nodes) * (n_nodes + 1))
    blocks = [(stored[offsets[k]:offsets[k + 1]], AZZ[k]) for k in range(len(qs))]
    at = np.cumsum([0] + [len(k) for k in keys])
    blocks += [(slots[at[t]:at[t + 1]], pair[4]) for t, pair in enumerate(pairs)]
    A = np.zeros(pattern.nnz)
    for where, V in blocks:  # entry (c, d) of stored block (row node, column node) is V[d, c]
        base, stride = pattern.pair_offset[where], pattern.pair_rows[where]
        A[base[:, None, None] + np.arange(V.shape[1])[:, None] * stride[:, None, None] + np.arange(V.shape[2])] = V
    AX = np.concatenate([A_k.reshape(-1, A_k.shape[-1]) for A_k in AZX])
    return SparseCrossProducts(n, p, pattern, A, AX, np.asarray(AXX, float))


def _layout(column, row, node_start, node_q, n_nodes):
    """Offsets, slab rows and the scalar compressed-column pattern of the stored blocks."""
    counts = np.bincount(column, minlength=n_nodes)
    first = np.concatenate([[0], np.cumsum(counts)])
    slab_rows = np.bincount(column, weights=node_q[row], minlength=n_nodes).astype(np.int64)
    row_offset = np.zeros(len(row), dtype=np.int64)  # offset of block (a, b) within node b's slab
    cum = np.cumsum(node_q[row])
    row_offset[:] = cum - node_q[row] - np.repeat(np.concatenate([[0], cum])[first[:-1]], counts)
    slab = np.concatenate([[0], np.cumsum(slab_rows * node_q)])  # data offset of each node's slab
    offset = slab[column] + row_offset
    indptr = np.concatenate([[0], np.cumsum(np.repeat(slab_rows, node_q))])
    indices = _indices(row, first, node_start, node_q, slab_rows, int(indptr[-1]))
    return offset, slab_rows[column], indptr, indices


@njit(cache=True)
def _indices(row, first, node_start, node_q, slab_rows, nnz):
    """Row indices of the scalar pattern: each column of node b lists the columns of the nodes
    in b's slab, in order."""
    out = np.empty(nnz, dtype=np.int64)
    pos = 0
    for b in range(len(first) - 1):
        for d in range(node_q[b]):
            for t in range(first[b], first[b + 1]):
                a = row[t]
                for c in range(node_q[a]):
                    out[pos] = node_start[a] + c
                    pos += 1
    return out


@njit(cache=True)
def _mark_blocks(offset, rows, qa, qb, select, mask):
    """Set ``mask`` on the entries of the selected stored blocks."""
    for t in range(len(offset)):
        if select[t]:
            for d in range(qb[t]):
                for c in range(qa[t]):
                    mask[offset[t] + d * rows[t] + c] = True
