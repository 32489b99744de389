"""Cross-products of ``[Z X y]``: everything the profiled criterion needs from the data.

After this step the criterion never touches the n rows again, so each evaluation costs the
same whatever n is. The first factor block (the one with the most levels) is kept level by
level, ``A11[i] = Z1_i' Z1_i`` and ``A1X[i] = Z1_i' [X y]``; the remaining factor blocks
("rest", crossed or nested factors) are stacked into one dense block of size
Q2 = sum(levels * q), with a sparse cross-product against the first block.
"""

from __future__ import annotations


import numpy as np

from typing import TYPE_CHECKING

from ..jit import njit
from .blocks import CrossPattern, CrossProducts
from .layout import Structure
from .sparse_crossprod import SparseCrossProducts

if TYPE_CHECKING:
    from .design import Design


def cross_products(structure: Structure, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> CrossProducts:
    """Compute the cross-product blocks for ``structure`` (from a Design) and data X, y.

    With ``weights`` (shape (n,), non-negative) the blocks are those of ``[Z X y]' W [Z X y]``,
    W = diag(weights). Repeated weighted cross-products of the same rows (the steps of PIRLS,
    :mod:`bayesmix.linalg.pirls`) reuse one :class:`CrossProductPlan`.
    """
    return CrossProductPlan(structure).products(X, y, weights)


class CrossProductPlan:
    """The sparsity pattern of ``Z'Z`` for one structure, laid out once, so that the weighted
    cross-products for new weights and responses cost one pass over the rows.

    Each row of Z has the same number r of entries among the factors after the first (one
    per column of each of their terms), at columns ``rest_columns`` (n, r) of the rest block
    with values ``rest_values``; its entries in ``Z2'Z1`` land in the slots ``rest_slots``
    (n, r) of the pairs of ``pattern`` (:class:`~bayesmix.data.blocks.CrossPattern`).
    """

    def __init__(self, structure: Structure):
        self.structure = structure
        first, rest = structure.blocks[0], structure.blocks[1:]
        if not rest:
            return
        columns, values, start = [], [], 0
        for block in rest:
            columns.append(start + block.codes[:, None] * block.q + np.arange(block.q))
            values.append(block.z)
            start += block.n_levels * block.q
        self.size = start
        self.rest_columns = np.ascontiguousarray(np.hstack(columns), dtype=np.int64)
        self.rest_values = np.ascontiguousarray(np.hstack(values), dtype=float)
        key = first.codes[:, None].astype(np.int64) * start + self.rest_columns
        pairs, slots = np.unique(key, return_inverse=True)
        self.rest_slots = slots.reshape(key.shape).astype(np.int64)
        level, row = np.divmod(pairs, start)
        self.pattern = CrossPattern.of(level, row, first.n_levels, first.q, start)

    def products(self, X: np.ndarray, y: np.ndarray, weights: np.ndarray | None = None) -> CrossProducts:
        """The blocks of ``[Z X y]' W [Z X y]`` (W = I without ``weights``)."""
        first, rest = self.structure.blocks[0], self.structure.blocks[1:]
        w = np.ones(len(y)) if weights is None else np.ascontiguousarray(weights, dtype=float)
        A11, A1X, AXX = first_block_crossproducts(first.codes, first.z, X, y, w, first.n_levels)
        if not rest:
            return CrossProducts(len(y), X.shape[1], A11, A1X, AXX)
        XY = np.column_stack([X, y])
        A22, A2X, values = rest_crossproducts(
            self.rest_columns, self.rest_values, self.rest_slots, w, np.ascontiguousarray(first.z, dtype=float),
            np.ascontiguousarray(XY), self.size, len(self.pattern.rows),
        )
        A21, A21_levels = self.pattern.blocks(values)
        return CrossProducts(len(y), X.shape[1], A11, A1X, AXX, A21=A21, A21_levels=A21_levels, A22=A22, A2X=A2X)


@njit(cache=True)
def rest_crossproducts(columns, values, slots, w, z1, XY, size, n_pairs):
    """``Z2'WZ2`` (dense), ``Z2'W[X y]`` and the ``Z2'WZ1`` entries per (level, rest row) slot,
    in one pass over the rows (see :class:`CrossProductPlan` for the layout)."""
    n, r = columns.shape
    q1, m = z1.shape[1], XY.shape[1]
    A22 = np.zeros((size, size))
    A2X = np.zeros((size, m))
    A21 = np.zeros((n_pairs, q1))
    for i in range(n):
        for a in range(r):
            va = w[i] * values[i, a]
            ca = columns[i, a]
            for b in range(r):
                A22[ca, columns[i, b]] += va * values[i, b]
            for c in range(m):
                A2X[ca, c] += va * XY[i, c]
            for k in range(q1):
                A21[slots[i, a], k] += va * z1[i, k]
    return A22, A2X, A21


@njit(cache=True)
def first_block_crossproducts(codes, z, X, y, w, n_levels):
    """``Z1'WZ1`` and ``Z1'W[X y]`` per level of the first factor, and ``[X y]'W[X y]``, in one
    pass over the rows (W = diag(w)): shapes (levels, q, q), (levels, q, p + 1), (p + 1, p + 1)."""
    q, p = z.shape[1], X.shape[1]
    m = p + 1
    A11 = np.zeros((n_levels, q, q))
    A1X = np.zeros((n_levels, q, m))
    AXX = np.zeros((m, m))
    xy = np.empty(m)
    for row in range(codes.size):
        level = codes[row]
        for c in range(p):
            xy[c] = X[row, c]
        xy[p] = y[row]
        for j in range(q):
            wz = z[row, j] * w[row]
            for k in range(q):
                A11[level, j, k] += wz * z[row, k]
            for c in range(m):
                A1X[level, j, c] += wz * xy[c]
        for a in range(m):
            wx = xy[a] * w[row]
            for b in range(a + 1):
                AXX[a, b] += wx * xy[b]
    for a in range(m):
        for b in range(a):
            AXX[b, a] = AXX[a, b]
    return A11, A1X, AXX


def least_squares(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of y on the rows X, with the columns scaled to unit size first."""
    size = np.abs(X).max(axis=0)
    size = np.where(size > 0, size, 1.0)
    return np.linalg.lstsq(X / size, y, rcond=None)[0] / size


def shifted_cross_products(design: Design, structure: Structure | None = None) -> tuple[CrossProducts, np.ndarray | None]:
    """The cross-products of ``[Z X, y - X c]`` and c, the least-squares coefficients of y on X
    (None without fixed effects).

    Subtracting X c changes neither the (RE)ML criterion nor θ̂, nor the collapsed likelihood
    once β is shifted by c, and it keeps the precision of the cross-products when y has a large
    mean relative to its spread (y = 1e8 + a few units loses most digits in y'y otherwise).
    For a family with sufficient statistics (the Gaussian), c and the shifted cross-products
    come from the design's double-double statistics, for one grouping factor or several, so
    that a pandas and a dask fit of the same rows stay identical; otherwise from the rows,
    laid out by ``structure``. Prior weights and an offset
    enter as in :meth:`~bayesmix.data.design.Rows.whitened`: the products are those of the
    whitened rows, and c is the weighted least-squares fit of y - offset.
    """
    stats = design.statistics
    if stats is not None:
        shift = stats.ols_coefficients() if design.p else None
        return stats.cross_products(design.p, shift), shift
    X, y, weights, shift = shifted_rows(design)
    return cross_products(structure, X, y, weights), shift


def shifted_sparse_cross_products(design: Design) -> tuple[SparseCrossProducts, np.ndarray | None]:
    """As :func:`shifted_cross_products`, laid out for the sparse factorisation
    (:mod:`~bayesmix.data.sparse_crossprod`), from the design's statistics (a linear mixed
    model's design has them, pandas or dask alike: both give the same matrix)."""
    stats = design.statistics
    shift = stats.ols_coefficients() if design.p else None
    return stats.sparse_cross_products(design.p, shift), shift


def shifted_rows(design: Design) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """X, y - offset - X c, the prior weights and c of a design in memory, as
    :func:`shifted_cross_products` takes their cross-products (c: the weighted least-squares
    coefficients of y - offset on X; None without fixed effects)."""
    rows, white = design.rows, design.rows.whitened()
    shift = least_squares(white.X, white.y) if design.p else None
    y = rows.y if rows.offset is None else rows.y - rows.offset
    if shift is not None:
        y = y - rows.X @ shift
    return rows.X, y, rows.weights, shift

