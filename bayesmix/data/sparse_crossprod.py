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
ignored there and used by the products here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.sparse as sp

from ..jit import njit
from .layout import Structure


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


def node_pattern(structure: Structure) -> tuple[NodePattern, np.ndarray]:
    """The node pattern of ``Z'Z`` for the design's rows, and each row's stored block per pair of
    its factor blocks (n, K(K+1)/2) for K blocks, pairs (k, j), k >= j, in the order of
    :func:`_block_pairs`."""
    blocks = structure.blocks
    offsets = np.cumsum([0] + [b.n_levels for b in blocks])
    n_nodes = int(offsets[-1])
    node_q = np.concatenate([np.full(b.n_levels, b.q) for b in blocks]).astype(np.int64)
    node_block = np.concatenate([np.full(b.n_levels, k) for k, b in enumerate(blocks)]).astype(np.int64)
    node_start = np.concatenate([[0], np.cumsum(node_q)[:-1]]).astype(np.int64)
    nodes = np.column_stack([offsets[k] + b.codes.astype(np.int64) for k, b in enumerate(blocks)])
    pairs = _block_pairs(len(blocks))
    keys = nodes[:, pairs[:, 1]] * n_nodes + nodes[:, pairs[:, 0]]  # column node b <= row node a
    diagonal = np.arange(n_nodes, dtype=np.int64) * (n_nodes + 1)  # every node's diagonal block, seen or not
    unique, slots = np.unique(np.concatenate([diagonal, keys.ravel()]), return_inverse=True)
    slots = slots[n_nodes:].reshape(keys.shape)
    column, row = np.divmod(unique, n_nodes)  # sorted by column node, then row node
    offset, rows, indptr, indices = _layout(column, row, node_start, node_q, n_nodes)
    index_type = np.int32 if indptr[-1] < np.iinfo(np.int32).max else np.int64
    pattern = NodePattern(node_start, node_q, node_block, row, column, offset, rows,
                          indptr.astype(index_type), indices.astype(index_type))
    return pattern, slots


def sparse_cross_products(structure: Structure, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None,
                          pattern: tuple[NodePattern, np.ndarray] | None = None) -> SparseCrossProducts:
    """The cross-products of ``[Z X y]`` weighted by ``weights`` (None: 1) for the sparse
    factorisation, in one pass over the rows; ``pattern`` is :func:`node_pattern`'s result when
    already computed."""
    pattern, slots = node_pattern(structure) if pattern is None else pattern
    blocks = structure.blocks
    q_max = max(b.q for b in blocks)
    z = np.zeros((len(y), len(blocks), q_max))
    for k, b in enumerate(blocks):
        z[:, k, : b.q] = b.z
    nodes = np.column_stack([b.codes for b in blocks]).astype(np.int64)
    offsets = np.cumsum([0] + [b.n_levels for b in blocks])[:-1]
    w = np.ones(len(y)) if weights is None else np.ascontiguousarray(weights, dtype=float)
    XY = np.ascontiguousarray(np.column_stack([X, y]), dtype=float)
    A, AX, AXX = _accumulate(nodes + offsets, slots, _block_pairs(len(blocks)), z, w, XY, pattern.pair_offset,
                             pattern.pair_rows, pattern.node_start, pattern.node_q, pattern.nnz, pattern.size)
    return SparseCrossProducts(len(y), X.shape[1], pattern, A, AX, AXX)


def _block_pairs(n_blocks: int) -> np.ndarray:
    """The pairs (k, j), k >= j, of factor blocks, whose nodes share a row."""
    return np.array([(k, j) for j in range(n_blocks) for k in range(j, n_blocks)], dtype=np.int64)


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


@njit(cache=True)
def _accumulate(nodes, slots, pairs, z, w, XY, pair_offset, pair_rows, node_start, node_q, nnz, size):
    """``Z'WZ`` on the node pattern, ``Z'W[X y]`` and ``[X y]'W[X y]`` in one pass over the rows."""
    n, m = XY.shape[0], XY.shape[1]
    A = np.zeros(nnz)
    AX = np.zeros((size, m))
    AXX = np.zeros((m, m))
    for i in range(n):
        wi = w[i]
        for t in range(pairs.shape[0]):
            k, j = pairs[t, 0], pairs[t, 1]
            s = slots[i, t]
            base, stride = pair_offset[s], pair_rows[s]
            qa, qb = node_q[nodes[i, k]], node_q[nodes[i, j]]
            for d in range(qb):
                wz = wi * z[i, j, d]
                for c in range(qa):
                    A[base + d * stride + c] += wz * z[i, k, c]
        for k in range(nodes.shape[1]):
            a = nodes[i, k]
            for c in range(node_q[a]):
                wz = wi * z[i, k, c]
                for col in range(m):
                    AX[node_start[a] + c, col] += wz * XY[i, col]
        for a in range(m):
            wx = wi * XY[i, a]
            for b in range(a + 1):
                AXX[a, b] += wx * XY[i, b]
    for a in range(m):
        for b in range(a):
            AXX[b, a] = AXX[a, b]
    return A, AX, AXX
