"""Cross-products of ``[Z X y]``: everything the profiled criterion needs from the data.

After this step the criterion never touches the n rows again, so each evaluation costs the
same whatever n is. The first factor block (the one with the most levels) is kept level by
level, ``A11[i] = Z1_i' Z1_i`` and ``A1X[i] = Z1_i' [X y]``; the remaining factor blocks
("rest", crossed or nested factors) are stacked into one dense block of size
Q2 = sum(levels * q), with a sparse cross-product against the first block.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from typing import TYPE_CHECKING

from .layout import FactorBlock, Structure

if TYPE_CHECKING:
    from .design import Design


@dataclass(frozen=True, eq=False)
class CrossProducts:
    """Blocks of ``[Z X y]'[Z X y]`` (m = p + 1 columns of ``[X y]``).

    Attributes
    ----------
    n, p
        Number of observations and of fixed effects.
    A11
        ``(levels1, q1, q1)``: per level of the first factor, ``Z1_i' Z1_i``.
    A1X
        ``(levels1, q1, m)``: per level, ``Z1_i' [X y]``.
    AXX
        ``(m, m)``: ``[X y]' [X y]``.
    A21
        Sparse ``(Q2, levels1 * q1)``: ``Z2' Z1`` (None for a single factor).
    A21_levels
        ``Z2' Z1`` per level i of the first factor, as ``(indptr, rows, values)``: level i
        touches the rest-block rows ``rows[indptr[i]:indptr[i+1]]`` with the (rows, q1) block
        ``values[indptr[i]:indptr[i+1]]``.
    A22
        Dense ``(Q2, Q2)``: ``Z2' Z2`` (None for a single factor).
    A2X
        Dense ``(Q2, m)``: ``Z2' [X y]`` (None for a single factor).
    """

    n: int
    p: int
    A11: np.ndarray
    A1X: np.ndarray
    AXX: np.ndarray
    A21: sp.csr_array | None = None
    A21_levels: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
    A22: np.ndarray | None = None
    A2X: np.ndarray | None = None

    @property
    def single_factor(self) -> bool:
        """True when all random effects belong to one grouping factor."""
        return self.A22 is None


def cross_products(structure: Structure, X: np.ndarray, y: np.ndarray) -> CrossProducts:
    """Compute the cross-product blocks for ``structure`` (from a Design) and data X, y."""
    first, rest = structure.blocks[0], structure.blocks[1:]
    XY = np.column_stack([X, y])
    A11 = per_level_crossprod(first.codes, first.z, first.z, first.n_levels)
    A1X = per_level_crossprod(first.codes, first.z, XY, first.n_levels)
    AXX = XY.T @ XY
    if not rest:
        return CrossProducts(len(y), X.shape[1], A11, A1X, AXX)
    Z1 = sparse_z(first)
    Z2 = sp.hstack([sparse_z(b) for b in rest], format="csc")
    A21 = sp.csr_array(Z2.T @ Z1)
    return CrossProducts(
        len(y),
        X.shape[1],
        A11,
        A1X,
        AXX,
        A21=A21,
        A21_levels=_per_level(A21, first.n_levels, first.q),
        A22=(Z2.T @ Z2).toarray(),
        A2X=np.asarray(Z2.T @ XY),
    )


def _per_level(A21: sp.csr_array, n_levels: int, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regroup the columns of ``Z2'Z1`` by level of the first factor (see ``A21_levels``)."""
    coo = A21.tocoo()
    level, column = np.divmod(coo.col, q)
    key = level.astype(np.int64) * A21.shape[0] + coo.row
    pairs, slot = np.unique(key, return_inverse=True)
    values = np.zeros((len(pairs), q))
    np.add.at(values, (slot, column), coo.data)
    indptr = np.searchsorted(pairs // A21.shape[0], np.arange(n_levels + 1))
    return indptr.astype(np.int64), (pairs % A21.shape[0]).astype(np.int64), values


def per_level_crossprod(codes: np.ndarray, a: np.ndarray, b: np.ndarray, n_levels: int) -> np.ndarray:
    """``out[i] = a_i' b_i`` summed over the rows of level i: shape (n_levels, a.shape[1], b.shape[1])."""
    out = np.empty((n_levels, a.shape[1], b.shape[1]))
    for j in range(a.shape[1]):
        for k in range(b.shape[1]):
            out[:, j, k] = np.bincount(codes, weights=a[:, j] * b[:, k], minlength=n_levels)
    return out


def sparse_z(block: FactorBlock) -> sp.csc_array:
    """The block's n x (levels * q) model matrix, level-major columns, as a sparse matrix."""
    n, q = block.z.shape
    rows = np.repeat(np.arange(n), q)
    cols = (block.codes[:, None] * q + np.arange(q)).ravel()
    return sp.csc_array((block.z.ravel(), (rows, cols)), shape=(n, block.n_levels * q))


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
    With one grouping factor, c and the shifted cross-products come from the design's
    double-double sufficient statistics, so that a pandas and a dask fit of the same rows stay
    identical; otherwise from the rows, laid out by ``structure``.
    """
    stats = design.statistics
    if stats is not None:
        shift = stats.ols_coefficients() if design.p else None
        return stats.cross_products(design.p, shift), shift
    rows = design.rows
    shift = least_squares(rows.X, rows.y) if design.p else None
    y = rows.y if shift is None else rows.y - rows.X @ shift
    return cross_products(structure, rows.X, y), shift

