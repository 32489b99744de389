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
