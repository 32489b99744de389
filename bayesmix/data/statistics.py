"""Per-group sufficient statistics of a Gaussian mixed model, summed reproducibly.

For a Gaussian model with the identity link, the REML criterion, the collapsed samplers and
the default priors read the data only through sums over rows. Per grouping factor k, with
z_k the columns of its terms (the factor's block of Z, one level per row):

    A_kk[i] = Z_k,i'Z_k,i,   A_kX[i] = Z_k,i'[X y]   (per level i of factor k),

per pair of factors (a, b), for each *distinct pair of levels* (i, j) that occurs in the rows,

    A_ab[i, j] = Σ_{rows of level i of a and j of b} z_a z_b'

(the sparse off-diagonal block ``Z_a'Z_b``: at most one entry per distinct pair, whatever the
number of rows), ``[X y]'[X y]``, and the column sums and sums of squares of [X y] and of z.
They add up over any partition of the rows (:meth:`SufficientStatistics.__add__`), and are
accumulated in double-double (:mod:`bayesmix.sums`), so that a pandas DataFrame and any
partitioning of it into dask partitions give the same float64 statistics, hence the same fit
and the same draws. :meth:`SufficientStatistics.cross_products` lays them out as the
:class:`~bayesmix.data.blocks.CrossProducts` the factorisations read: for one factor the
level-wise blocks, for several the first factor's level-wise blocks, ``Z2'Z1`` and the rest block.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .blocks import CrossPattern, CrossProducts
from .sparse_crossprod import SparseCrossProducts, summed_cross_products
from .sums import two_product, two_sum, dd_add, products, value, variance


@dataclass(frozen=True, eq=False)
class PairSums:
    """``Σ z_a z_b'`` over the rows of each distinct pair of levels of two grouping factors a, b.

    Attributes
    ----------
    keys
        The pairs that occur, as ``level_a * levels_b + level_b``, sorted (int64).
    values
        ``(pairs, q_a, q_b, 2)``: the double-double sums, in the order of ``keys``.
    levels_b
        Number of levels of factor b.
    """

    keys: np.ndarray
    values: np.ndarray
    levels_b: int

    @classmethod
    def of(cls, codes_a: np.ndarray, codes_b: np.ndarray, z_a: np.ndarray, z_b: np.ndarray, levels_b: int) -> PairSums:
        """The sums of rows with level codes ``codes_a``, ``codes_b`` and columns ``z_a``, ``z_b``."""
        keys, slots = np.unique(codes_a.astype(np.int64) * levels_b + codes_b, return_inverse=True)
        return cls(keys, products(z_a, z_b, slots.ravel(), len(keys)), levels_b)

    def __add__(self, other: PairSums) -> PairSums:
        keys = np.union1d(self.keys, other.keys)
        values = np.zeros((len(keys), *self.values.shape[1:]))
        values[np.searchsorted(keys, self.keys)] = self.values
        at = np.searchsorted(keys, other.keys)
        values[at] = dd_add(values[at], other.values)  # adding to an exact 0 leaves other's sums as they are
        return PairSums(keys, values, self.levels_b)

    def levels(self) -> tuple[np.ndarray, np.ndarray]:
        """The levels of a and of b of each pair."""
        return np.divmod(self.keys, self.levels_b)


@dataclass(frozen=True, eq=False)
class SufficientStatistics:
    """Sums over rows; the arrays are double-double, with a last axis (hi, lo).

    Columns are those of ``[X y]`` (m = p + 1; X before or after rank-deficient columns are
    dropped, see :meth:`select`) and the columns of the random-effects terms side by side,
    in term order (z, Q columns). The grouping factors are in the order of the factor blocks
    (:func:`~bayesmix.data.terms.factor_groups`: most levels first).

    Attributes
    ----------
    n, n_dropped, n_missing
        Rows used, rows dropped for missing values, and missing values per column of the formula.
    AZZ, AZX
        Per factor k, ``(levels_k, q_k, q_k)`` and ``(levels_k, q_k, m)`` cross-products per level.
    pairs
        Per pair of factors (a, b), a < b, in the order (0, 1), (0, 2), ..., (1, 2), ...:
        their :class:`PairSums` (empty for one factor).
    columns
        Per factor, its columns among the Q columns of z.
    AXX
        ``(m, m)`` cross-products of ``[X y]``.
    xy_sum, zz, z_sum
        Column sums of ``[X y]``; ``Σ z z'`` (Q, Q) and the column sums of z.
    x_binary, z_binary
        Whether each column of X, of z, takes only the values 0 and 1.
    y_min, y_max
        Range of the response.
    """

    n: int
    n_dropped: int
    n_missing: dict
    AZZ: tuple[np.ndarray, ...]
    AZX: tuple[np.ndarray, ...]
    pairs: tuple[PairSums, ...]
    columns: tuple[np.ndarray, ...]
    AXX: np.ndarray
    xy_sum: np.ndarray
    zz: np.ndarray
    z_sum: np.ndarray
    x_binary: np.ndarray
    z_binary: np.ndarray
    y_min: float
    y_max: float

    @classmethod
    def of(cls, codes: tuple[np.ndarray, ...], z: np.ndarray, columns: tuple[np.ndarray, ...], X: np.ndarray,
           y: np.ndarray, n_levels: tuple[int, ...], n_dropped: int = 0, n_missing: dict | None = None
           ) -> SufficientStatistics:
        """The statistics of rows with, per grouping factor, level ``codes``, its ``columns``
        among the terms' columns z and ``n_levels``; fixed-effects columns X and response y."""
        XY = np.column_stack([X, y])
        ones = np.ones((len(y), 1))
        z_of = [np.ascontiguousarray(z[:, c]) for c in columns]
        return cls(
            n=len(y), n_dropped=n_dropped, n_missing=n_missing or {},
            AZZ=tuple(products(zk, zk, c, L) for zk, c, L in zip(z_of, codes, n_levels)),
            AZX=tuple(products(zk, XY, c, L) for zk, c, L in zip(z_of, codes, n_levels)),
            pairs=tuple(PairSums.of(codes[a], codes[b], z_of[a], z_of[b], n_levels[b])
                        for a, b in _factor_pairs(len(codes))),
            columns=tuple(np.asarray(c, dtype=np.intp) for c in columns),
            AXX=products(XY, XY)[0], xy_sum=products(XY, ones)[0, :, 0], zz=products(z, z)[0],
            z_sum=products(z, ones)[0, :, 0],
            x_binary=np.isin(X, (0.0, 1.0)).all(axis=0), z_binary=np.isin(z, (0.0, 1.0)).all(axis=0),
            y_min=float(y.min()) if len(y) else np.inf, y_max=float(y.max()) if len(y) else -np.inf,
        )

    @classmethod
    def empty(cls, n_levels: tuple[int, ...], columns: tuple[np.ndarray, ...], m: int, n_dropped: int,
              n_missing: dict) -> SufficientStatistics:
        """The statistics of no rows (a partition whose rows were all dropped)."""
        z = np.zeros
        q = sum(len(c) for c in columns)
        qs = [len(c) for c in columns]
        return cls(
            0, n_dropped, n_missing, tuple(z((L, k, k, 2)) for L, k in zip(n_levels, qs)),
            tuple(z((L, k, m, 2)) for L, k in zip(n_levels, qs)),
            tuple(PairSums(np.zeros(0, np.int64), z((0, qs[a], qs[b], 2)), n_levels[b]) for a, b in _factor_pairs(len(qs))),
            tuple(np.asarray(c, dtype=np.intp) for c in columns),
            z((m, m, 2)), z((m, 2)), z((q, q, 2)), z((q, 2)), np.ones(m - 1, bool), np.ones(q, bool), np.inf, -np.inf,
        )

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        missing = {k: self.n_missing.get(k, 0) + other.n_missing.get(k, 0) for k in self.n_missing | other.n_missing}
        return SufficientStatistics(
            self.n + other.n, self.n_dropped + other.n_dropped, missing,
            tuple(map(dd_add, self.AZZ, other.AZZ)), tuple(map(dd_add, self.AZX, other.AZX)),
            tuple(a + b for a, b in zip(self.pairs, other.pairs)), self.columns,
            dd_add(self.AXX, other.AXX), dd_add(self.xy_sum, other.xy_sum), dd_add(self.zz, other.zz),
            dd_add(self.z_sum, other.z_sum), self.x_binary & other.x_binary, self.z_binary & other.z_binary,
            min(self.y_min, other.y_min), max(self.y_max, other.y_max),
        )

    def select(self, kept: np.ndarray) -> SufficientStatistics:
        """The statistics with only the kept columns of X (the response column stays last)."""
        cols = np.append(np.flatnonzero(kept), len(kept))
        return dataclasses.replace(
            self, AZX=tuple(A[:, :, cols] for A in self.AZX), AXX=self.AXX[np.ix_(cols, cols)],
            xy_sum=self.xy_sum[cols], x_binary=self.x_binary[kept],
        )

    def cross_products(self, p: int, shift: np.ndarray | None = None) -> CrossProducts:
        """The :class:`~bayesmix.data.blocks.CrossProducts` of the factor blocks in order.

        With ``shift`` = c, the cross-products of ``[X, y - X c]``, taken in double-double
        before rounding, so that a response with a large mean loses no precision (see
        :func:`bayesmix.reml.profiled_criterion`).
        """
        AZX, AXX = self._shifted(shift)
        A11, A1X = value(self.AZZ[0]), value(AZX[0])
        if len(self.AZZ) == 1:
            return CrossProducts(self.n, p, A11, A1X, value(AXX))
        n_levels, qs = [len(A) for A in self.AZZ], [A.shape[1] for A in self.AZZ]
        # the rest block: the factors after the first, each level-major, side by side
        starts = np.cumsum([0] + [L * q for L, q in zip(n_levels[1:], qs[1:])])
        size = int(starts[-1])
        A22, A2X = np.zeros((size, size)), np.zeros((size, AXX.shape[0]))
        for k in range(1, len(qs)):
            at = starts[k - 1] + np.arange(n_levels[k] * qs[k]).reshape(n_levels[k], qs[k])
            A22[at[:, :, None], at[:, None, :]] = value(self.AZZ[k])
            A2X[at.ravel()] = value(AZX[k]).reshape(-1, AXX.shape[0])
        level, row, values = [], [], []
        for (a, b), pair in zip(_factor_pairs(len(qs)), self.pairs):
            i, j = pair.levels()
            v = value(pair.values)
            rows_b = starts[b - 1] + j[:, None] * qs[b] + np.arange(qs[b])  # (pairs, q_b)
            if a == 0:  # Z2'Z1: one (level of the first factor, rest row) per pair and column of b
                level.append(np.repeat(i, qs[b]))
                row.append(rows_b.ravel())
                values.append(v.transpose(0, 2, 1).reshape(-1, qs[0]))
            else:
                rows_a = starts[a - 1] + i[:, None] * qs[a] + np.arange(qs[a])
                A22[rows_a[:, :, None], rows_b[:, None, :]] = v
                A22[rows_b[:, :, None], rows_a[:, None, :]] = v.transpose(0, 2, 1)
        level, row, values = np.concatenate(level), np.concatenate(row), np.concatenate(values)
        order = np.lexsort((row, level))
        pattern = CrossPattern.of(level[order], row[order], n_levels[0], qs[0], size)
        A21, A21_levels = pattern.blocks(np.ascontiguousarray(values[order]))
        return CrossProducts(self.n, p, A11, A1X, value(AXX), A21=A21, A21_levels=A21_levels, A22=A22, A2X=A2X)

    def sparse_cross_products(self, p: int, shift: np.ndarray | None = None) -> SparseCrossProducts:
        """The :class:`~bayesmix.data.sparse_crossprod.SparseCrossProducts` of the factor blocks
        in order (``Z'Z`` stored by pairs of levels, no dense block), with ``shift`` as in
        :meth:`cross_products`."""
        AZX, AXX = self._shifted(shift)
        pairs = [(a, b, *pair.levels(), value(pair.values)) for (a, b), pair in zip(_factor_pairs(len(self.AZZ)), self.pairs)]
        return summed_cross_products(self.n, p, [value(A) for A in self.AZZ], [value(A) for A in AZX], pairs, value(AXX))

    def _shifted(self, shift: np.ndarray | None) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """AZX and AXX of ``[X, y - X c]`` (c = ``shift``; unchanged for None), in double-double."""
        if shift is None:
            return self.AZX, self.AXX
        shift = np.asarray(shift, float)
        return tuple(_shift_response(A, shift) for A in self.AZX), _shift_gram(self.AXX, shift)

    @property
    def n_levels(self) -> tuple[int, ...]:
        """Number of levels of each grouping factor."""
        return tuple(len(A) for A in self.AZZ)

    def ols_coefficients(self) -> np.ndarray:
        """Least-squares coefficients of the response on X, from X'X and X'y."""
        AXX = value(self.AXX)
        p = AXX.shape[0] - 1
        size = np.sqrt(np.diag(AXX)[:p])
        size = np.where(size > 0, size, 1.0)
        coef = np.linalg.lstsq(AXX[:p, :p] / np.outer(size, size), AXX[:p, p] / size, rcond=None)[0]
        return coef / size

    def ols_residual_sum_of_squares(self) -> float:
        """Σ (y - X c)² at the least-squares coefficients c (:meth:`ols_coefficients`), from the
        double-double sums."""
        return float(value(self._shifted(self.ols_coefficients())[1][-1, -1]))

    def x_means(self) -> np.ndarray:
        """Mean of each column of X."""
        return value(self.xy_sum[:-1]) / self.n

    def response_moments(self) -> tuple[float, float]:
        """Mean and (population) standard deviation of the response."""
        var = variance(self.xy_sum[-1], self.AXX[-1, -1], self.n)
        return float(value(self.xy_sum[-1]) / self.n), float(np.sqrt(var))

    def x_scales(self) -> np.ndarray:
        """1 for a 0/1 column of X, else its standard deviation (1 if 0)."""
        diag = self.AXX[np.arange(len(self.x_binary)), np.arange(len(self.x_binary))]
        return _scales(self.x_binary, variance(self.xy_sum[:-1], diag, self.n))

    def z_scales(self, columns: slice) -> np.ndarray:
        """As :meth:`x_scales`, for columns of z."""
        q = np.arange(self.zz.shape[0])[columns]
        return _scales(self.z_binary[columns], variance(self.z_sum[columns], self.zz[q, q], self.n))

    def z_rms(self, columns: slice) -> np.ndarray:
        """Root mean square of columns of z."""
        q = np.arange(self.zz.shape[0])[columns]
        return np.sqrt(value(self.zz[q, q]) / self.n)

    def x_rms(self) -> np.ndarray:
        """Root mean square of each column of X."""
        p = len(self.x_binary)
        return np.sqrt(value(self.AXX[np.arange(p), np.arange(p)]) / self.n)

    def rescaled(self, x_scale: np.ndarray, y_centre: float, y_scale: float, z_scale: np.ndarray,
                 intercept: int | None) -> SufficientStatistics:
        """The statistics of ``[X / x_scale, (y - y_centre) / y_scale]`` and ``z / z_scale``
        (column by column, z's in term order), in double-double: what standardising the data does to them.

        Centring reads the sums of 1 from the intercept column X[:, intercept] (so a
        nonzero ``y_centre`` needs one).
        """
        shift = np.zeros(len(self.x_binary))
        if y_centre:
            shift[intercept] = y_centre
        AZX, AXX = tuple(_shift_response(A, shift) for A in self.AZX), _shift_gram(self.AXX, shift)
        xy_sum = self.xy_sum.copy()
        if y_centre:
            xy_sum[-1:] = _minus_scaled(xy_sum[-1:], self.xy_sum[intercept:intercept + 1], y_centre)
        xy = 1.0 / np.append(x_scale, y_scale)
        z = 1.0 / np.asarray(z_scale, float)
        zk = [z[c] for c in self.columns]
        return SufficientStatistics(
            self.n, self.n_dropped, self.n_missing,
            tuple(_times(A, np.outer(f, f)) for A, f in zip(self.AZZ, zk)),
            tuple(_times(A, np.outer(f, xy)) for A, f in zip(AZX, zk)),
            tuple(dataclasses.replace(pair, values=_times(pair.values, np.outer(zk[a], zk[b])))
                  for (a, b), pair in zip(_factor_pairs(len(zk)), self.pairs)),
            self.columns, _times(AXX, np.outer(xy, xy)),
            _times(xy_sum, xy), _times(self.zz, np.outer(z, z)), _times(self.z_sum, z),
            self.x_binary & (xy[:-1] == 1.0), self.z_binary & (z == 1.0),
            (self.y_min - y_centre) / y_scale, (self.y_max - y_centre) / y_scale,
        )


def _factor_pairs(k: int) -> list[tuple[int, int]]:
    """The pairs (a, b), a < b, of k factors, in the order of :attr:`SufficientStatistics.pairs`."""
    return [(a, b) for a in range(k) for b in range(a + 1, k)]


def _times(x: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """A double-double array (last axis (hi, lo)) times float64 factors, elementwise."""
    factor = np.broadcast_to(factor, x.shape[:-1])
    p, e = two_product(x[..., 0].copy(), factor.copy())
    return np.stack([p, e + x[..., 1] * factor], axis=-1)


def _minus_scaled(y: np.ndarray, x: np.ndarray, a: float) -> np.ndarray:
    """y - a x for double-double arrays (last axis (hi, lo)) and a float a."""
    a = np.full(x.shape[:-1], a)
    p, e = two_product(x[..., 0].copy(), a)
    e = e + x[..., 1] * a
    s, t = two_sum(y[..., 0].copy(), -p)
    return np.stack([s, y[..., 1] - e + t], axis=-1)


def _shift_response(AZX: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The last column of ``Z'[X, y - X c]`` from ``Z'[X y]`` (c = ``shift``), in double-double."""
    p = len(shift)
    AZX = AZX.copy()
    for j in range(p):
        AZX[:, :, p] = _minus_scaled(AZX[:, :, p], AZX[:, :, j], shift[j])
    return AZX


def _shift_gram(AXX: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """The statistics of ``[X, y - X c]`` from those of ``[X y]``: the last row and column of
    AXX (M'AXX M with M = [[I, -c], [0, 1]]), in double-double."""
    p = len(shift)
    AXX = AXX.copy()
    for j in range(p):
        AXX[:, p] = _minus_scaled(AXX[:, p], AXX[:, j], shift[j])
    for j in range(p):
        AXX[p, :] = _minus_scaled(AXX[p, :], AXX[j, :], shift[j])
    return AXX


def _scales(binary: np.ndarray, var: np.ndarray) -> np.ndarray:
    sd = np.sqrt(var)
    return np.where(binary | (sd <= 0), 1.0, sd)


def column_scale(values: np.ndarray) -> float:
    """1 for a column of zeros and ones (intercept, indicator); its standard deviation otherwise (1 if 0)."""
    if np.isin(values, (0.0, 1.0)).all():
        return 1.0
    sd = float(np.std(values))
    return sd if sd > 0 else 1.0
