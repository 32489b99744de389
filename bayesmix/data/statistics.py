"""Per-group sufficient statistics of a one-factor Gaussian mixed model, summed reproducibly.

For a model whose random-effects terms all share one grouping factor, the REML criterion,
the collapsed sampler and the default priors read the data only through sums over rows:

    A11_i = Z_i'Z_i,   A1X_i = Z_i'[X_i y_i]   (per level i),   AXX = [X y]'[X y],

and the column sums and sums of squares of [X y] and of z. They add up over any partition of
the rows (:meth:`SufficientStatistics.__add__`), and are accumulated in double-double
(:mod:`bayesmix.sums`), so that a pandas DataFrame and any partitioning of it into dask
partitions give the same float64 statistics, hence the same fit and the same draws.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .blocks import CrossProducts
from .sums import two_product, two_sum, dd_add, products, value, variance


@dataclass(frozen=True, eq=False)
class SufficientStatistics:
    """Sums over rows; the arrays are double-double, with a last axis (hi, lo).

    Columns are those of ``[X y]`` (m = p + 1; X before or after rank-deficient columns are
    dropped, see :meth:`select`) and the q columns of the factor's terms side by side.

    Attributes
    ----------
    n, n_dropped, n_missing
        Rows used, rows dropped for missing values, and missing values per column of the formula.
    A11, A1X, AXX
        ``(levels, q, q)``, ``(levels, q, m)`` and ``(m, m)`` cross-products.
    xy_sum, zz, z_sum
        Column sums of ``[X y]``; ``Σ z z'`` (q, q) and the column sums of z.
    x_binary, z_binary
        Whether each column of X, of z, takes only the values 0 and 1.
    y_min, y_max
        Range of the response.
    """

    n: int
    n_dropped: int
    n_missing: dict
    A11: np.ndarray
    A1X: np.ndarray
    AXX: np.ndarray
    xy_sum: np.ndarray
    zz: np.ndarray
    z_sum: np.ndarray
    x_binary: np.ndarray
    z_binary: np.ndarray
    y_min: float
    y_max: float

    @classmethod
    def of(cls, codes: np.ndarray, z: np.ndarray, X: np.ndarray, y: np.ndarray, n_levels: int,
           n_dropped: int = 0, n_missing: dict | None = None) -> SufficientStatistics:
        """The statistics of rows with level codes, term columns z, fixed-effects columns X and response y."""
        XY = np.column_stack([X, y])
        ones = np.ones((len(y), 1))
        return cls(
            n=len(y), n_dropped=n_dropped, n_missing=n_missing or {},
            A11=products(z, z, codes, n_levels), A1X=products(z, XY, codes, n_levels), AXX=products(XY, XY)[0],
            xy_sum=products(XY, ones)[0, :, 0], zz=products(z, z)[0], z_sum=products(z, ones)[0, :, 0],
            x_binary=np.isin(X, (0.0, 1.0)).all(axis=0), z_binary=np.isin(z, (0.0, 1.0)).all(axis=0),
            y_min=float(y.min()) if len(y) else np.inf, y_max=float(y.max()) if len(y) else -np.inf,
        )

    @classmethod
    def empty(cls, n_levels: int, q: int, m: int, n_dropped: int, n_missing: dict) -> SufficientStatistics:
        """The statistics of no rows (a partition whose rows were all dropped)."""
        z = np.zeros
        return cls(0, n_dropped, n_missing, z((n_levels, q, q, 2)), z((n_levels, q, m, 2)), z((m, m, 2)), z((m, 2)),
                   z((q, q, 2)), z((q, 2)), np.ones(m - 1, bool), np.ones(q, bool), np.inf, -np.inf)

    def __add__(self, other: SufficientStatistics) -> SufficientStatistics:
        missing = {k: self.n_missing.get(k, 0) + other.n_missing.get(k, 0) for k in self.n_missing | other.n_missing}
        return SufficientStatistics(
            self.n + other.n, self.n_dropped + other.n_dropped, missing,
            dd_add(self.A11, other.A11), dd_add(self.A1X, other.A1X), dd_add(self.AXX, other.AXX),
            dd_add(self.xy_sum, other.xy_sum), dd_add(self.zz, other.zz), dd_add(self.z_sum, other.z_sum),
            self.x_binary & other.x_binary, self.z_binary & other.z_binary,
            min(self.y_min, other.y_min), max(self.y_max, other.y_max),
        )

    def select(self, kept: np.ndarray) -> SufficientStatistics:
        """The statistics with only the kept columns of X (the response column stays last)."""
        cols = np.append(np.flatnonzero(kept), len(kept))
        return dataclasses.replace(
            self, A1X=self.A1X[:, :, cols], AXX=self.AXX[np.ix_(cols, cols)], xy_sum=self.xy_sum[cols],
            x_binary=self.x_binary[kept],
        )

    def cross_products(self, p: int, shift: np.ndarray | None = None) -> CrossProducts:
        """The :class:`~bayesmix.data.blocks.CrossProducts` of one factor.

        With ``shift`` = c, the cross-products of ``[X, y - X c]``, taken in double-double
        before rounding, so that a response with a large mean loses no precision (see
        :func:`bayesmix.reml.profiled_criterion`).
        """
        A1X, AXX = (self.A1X, self.AXX) if shift is None else _shift_response(self.A1X, self.AXX, np.asarray(shift, float))
        return CrossProducts(self.n, p, value(self.A11), value(A1X), value(AXX))

    def ols_coefficients(self) -> np.ndarray:
        """Least-squares coefficients of the response on X, from X'X and X'y."""
        AXX = value(self.AXX)
        p = AXX.shape[0] - 1
        size = np.sqrt(np.diag(AXX)[:p])
        size = np.where(size > 0, size, 1.0)
        coef = np.linalg.lstsq(AXX[:p, :p] / np.outer(size, size), AXX[:p, p] / size, rcond=None)[0]
        return coef / size

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
        (column by column), in double-double: what standardising the data does to them.

        Centring reads the sums of 1 from the intercept column X[:, intercept] (so a
        nonzero ``y_centre`` needs one).
        """
        shift = np.zeros(len(self.x_binary))
        if y_centre:
            shift[intercept] = y_centre
        A1X, AXX = _shift_response(self.A1X, self.AXX, shift)
        xy_sum = self.xy_sum.copy()
        if y_centre:
            xy_sum[-1:] = _minus_scaled(xy_sum[-1:], self.xy_sum[intercept:intercept + 1], y_centre)
        xy = 1.0 / np.append(x_scale, y_scale)
        z = 1.0 / np.asarray(z_scale, float)
        return SufficientStatistics(
            self.n, self.n_dropped, self.n_missing,
            _times(self.A11, np.outer(z, z)), _times(A1X, np.outer(z, xy)), _times(AXX, np.outer(xy, xy)),
            _times(xy_sum, xy), _times(self.zz, np.outer(z, z)), _times(self.z_sum, z),
            self.x_binary & (xy[:-1] == 1.0), self.z_binary & (z == 1.0),
            (self.y_min - y_centre) / y_scale, (self.y_max - y_centre) / y_scale,
        )


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


def _shift_response(A1X: np.ndarray, AXX: np.ndarray, shift: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The statistics of ``[X, y - X c]`` from those of ``[X y]``: the last column of A1X, and
    the last row and column of AXX (M'AXX M with M = [[I, -c], [0, 1]]), in double-double."""
    p = len(shift)
    A1X, AXX = A1X.copy(), AXX.copy()
    for j in range(p):
        A1X[:, :, p] = _minus_scaled(A1X[:, :, p], A1X[:, :, j], shift[j])
    for j in range(p):
        AXX[:, p] = _minus_scaled(AXX[:, p], AXX[:, j], shift[j])
    for j in range(p):
        AXX[p, :] = _minus_scaled(AXX[p, :], AXX[j, :], shift[j])
    return A1X, AXX


def _scales(binary: np.ndarray, var: np.ndarray) -> np.ndarray:
    sd = np.sqrt(var)
    return np.where(binary | (sd <= 0), 1.0, sd)


def column_scale(values: np.ndarray) -> float:
    """1 for a column of zeros and ones (intercept, indicator); its standard deviation otherwise (1 if 0)."""
    if np.isin(values, (0.0, 1.0)).all():
        return 1.0
    sd = float(np.std(values))
    return sd if sd > 0 else 1.0
