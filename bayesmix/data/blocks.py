"""The blocks of the cross-product matrix ``[Z X y]' W [Z X y]`` that the factorisations read.

Computed from rows (:mod:`bayesmix.data.crossprod`) or from per-group sufficient statistics
(:mod:`bayesmix.data.statistics`); read by :mod:`bayesmix.linalg.factorization`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


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


@dataclass(frozen=True, eq=False)
class CrossPattern:
    """Where the entries of ``Z2'Z1`` sit: one (first-factor level, rest-block row) pair for
    each distinct combination that occurs in the rows, sorted by level then row.

    Laid out once per design (by :class:`~bayesmix.data.crossprod.CrossProductPlan` from rows,
    or by :class:`~bayesmix.data.statistics.SufficientStatistics` from the distinct pairs of
    levels), it turns the values of the pairs, shape (pairs, q1), into
    :attr:`CrossProducts.A21` and :attr:`CrossProducts.A21_levels` (:meth:`blocks`).

    Attributes
    ----------
    indptr
        ``(levels1 + 1,)``: level i owns pairs ``indptr[i]:indptr[i+1]``.
    rows
        The rest-block row of each pair.
    csr_order, csr_indices, csr_indptr
        The pairs' (pair, k) entries in the order, column indices and row pointers of the CSR
        matrix ``Z2'Z1``: entry (pair, k) sits at row ``rows[pair]``, column ``level * q1 + k``.
    shape
        ``(Q2, levels1 * q1)``.
    """

    indptr: np.ndarray
    rows: np.ndarray
    csr_order: np.ndarray
    csr_indices: np.ndarray
    csr_indptr: np.ndarray
    shape: tuple[int, int]

    @classmethod
    def of(cls, level: np.ndarray, row: np.ndarray, n_levels: int, q1: int, size: int) -> CrossPattern:
        """The pattern of the pairs (``level``, ``row``), distinct and sorted by level then row."""
        coo_rows = np.repeat(row, q1)
        coo_cols = (level[:, None] * q1 + np.arange(q1)).ravel()
        order = np.lexsort((coo_cols, coo_rows))
        return cls(
            indptr=np.searchsorted(level, np.arange(n_levels + 1)).astype(np.int64),
            rows=np.asarray(row, dtype=np.int64),
            csr_order=order,
            csr_indices=coo_cols[order].astype(np.int32),
            csr_indptr=np.searchsorted(coo_rows[order], np.arange(size + 1)).astype(np.int32),
            shape=(size, n_levels * q1),
        )

    def blocks(self, values: np.ndarray) -> tuple[sp.csr_array, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """``A21`` (CSR) and ``A21_levels`` from the pairs' values, shape (pairs, q1)."""
        A21 = sp.csr_array((values.ravel()[self.csr_order], self.csr_indices, self.csr_indptr), shape=self.shape)
        return A21, (self.indptr, self.rows, values)
