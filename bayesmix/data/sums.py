"""Sums of products that do not depend on how the rows are split: double-double accumulation.

The sufficient statistics of a model are sums over rows. Summed in plain floating point,
their last bits depend on the order of the rows and on how they are split into partitions;
and NUTS amplifies a one-ulp change of the log density into entirely different draws. So
every statistic is accumulated exactly enough that its rounding to float64 no longer
depends on the order: each product a·b is split exactly into p + e (Dekker's TwoProduct),
and added to a running (hi, lo) pair with Knuth's TwoSum (Ogita, Rump and Oishi's cascaded
summation: the result is as accurate as if computed in twice the precision). Partial sums
of partitions are added the same way (:func:`dd_add`), and only the final value
``hi + lo`` is rounded, identically on every path with overwhelming probability.
"""

from __future__ import annotations

import numpy as np
from ..jit import njit

_SPLIT = 134217729.0  # 2**27 + 1, Veltkamp's splitter for float64


def two_product(a, b):
    """a·b = p + e exactly (Dekker); elementwise on arrays too.

    Plain Python, run by numpy on arrays (numba would compile an array version for each number of
    dimensions, seconds each on a cold cache), and compiled for the scalar loop of
    :func:`level_products`: the same operations, rounded alike."""
    p = a * b
    c = _SPLIT * a
    a_hi = c - (c - a)
    a_lo = a - a_hi
    c = _SPLIT * b
    b_hi = c - (c - b)
    b_lo = b - b_hi
    return p, ((a_hi * b_hi - p) + a_hi * b_lo + a_lo * b_hi) + a_lo * b_lo


def two_sum(a, b):
    """a + b = s + e exactly (Knuth); elementwise on arrays too (plain Python, as :func:`two_product`)."""
    s = a + b
    v = s - a
    return s, (a - (s - v)) + (b - v)


_two_product = njit(cache=True, inline="always")(two_product)
_two_sum = njit(cache=True, inline="always")(two_sum)


@njit(cache=True)
def level_products(codes, a, b, n_levels):
    """``Σ_{rows r of level i} a_r b_r'`` for every level i, as (hi, lo) arrays of shape (levels, ka, kb)."""
    n, ka, kb = a.shape[0], a.shape[1], b.shape[1]
    hi = np.zeros((n_levels, ka, kb))
    lo = np.zeros((n_levels, ka, kb))
    for r in range(n):
        level = codes[r]
        for j in range(ka):
            x = a[r, j]
            for k in range(kb):
                p, e = _two_product(x, b[r, k])
                s, t = _two_sum(hi[level, j, k], p)
                hi[level, j, k] = s
                lo[level, j, k] += t + e
    return hi, lo


def products(a: np.ndarray, b: np.ndarray, codes: np.ndarray | None = None, n_levels: int = 1) -> np.ndarray:
    """Double-double ``Σ a_r b_r'`` (per level when ``codes`` is given): an array with a last axis (hi, lo)."""
    if codes is None:
        codes = np.zeros(len(a), dtype=np.intp)
    hi, lo = level_products(np.ascontiguousarray(codes, dtype=np.intp), np.ascontiguousarray(a, dtype=float),
                            np.ascontiguousarray(b, dtype=float), n_levels)
    return np.stack([hi, lo], axis=-1)


def dd_add(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sum of two double-double arrays (last axis (hi, lo))."""
    s, t = two_sum(x[..., 0], y[..., 0])
    return np.stack([s, x[..., 1] + y[..., 1] + t], axis=-1)


def value(x: np.ndarray) -> np.ndarray:
    """The float64 value of a double-double array."""
    return x[..., 0] + x[..., 1]


def variance(total: np.ndarray, total_squares: np.ndarray, n: int) -> np.ndarray:
    """Population variance from double-double Σx and Σx², without cancellation:
    (n Σx² - (Σx)²) / n², with the difference taken in double-double."""
    shape = total.shape[:-1]
    total, total_squares = total.reshape(-1, 2), total_squares.reshape(-1, 2)
    p, e = two_product(np.full(len(total), float(n)), total_squares[:, 0].copy())
    e = e + n * total_squares[:, 1]
    q, f = two_product(total[:, 0].copy(), total[:, 0].copy())
    f = f + 2.0 * total[:, 0] * total[:, 1]
    s, t = two_sum(p, -q)
    return np.maximum((s + (t + e - f)) / (float(n) * n), 0.0).reshape(shape)
