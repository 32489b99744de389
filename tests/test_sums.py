"""Double-double sums: as accurate as exact summation, and the same whatever the partition of the rows."""

from __future__ import annotations

from fractions import Fraction
from functools import reduce

import numpy as np
import pytest

from bayesmix.data.statistics import SufficientStatistics
from bayesmix.data.sums import dd_add, products, value, variance


def test_products_are_correctly_rounded_sums(rng):
    a = rng.normal(size=(5000, 2)) * 10.0 ** rng.integers(-8, 8, size=(5000, 2))
    b = rng.normal(size=(5000, 3))
    got = value(products(a, b)[0])
    for j in range(2):
        for k in range(3):
            exact = sum(Fraction(float(x)) * Fraction(float(y)) for x, y in zip(a[:, j], b[:, k]))
            assert got[j, k] == float(exact)


def test_statistics_do_not_depend_on_the_partition_of_the_rows(rng):
    n, levels = 3000, 40
    codes = rng.integers(0, levels, n)
    z = np.column_stack([np.ones(n), rng.normal(size=n) * 1e3])
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.exponential(size=n) * 1e-4])
    y = rng.normal(size=n) * 1e5 + 3e7
    whole = SufficientStatistics.of(codes, z, X, y, levels)
    for parts in (2, 7, 31):
        cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False))
        order = rng.permutation(n)
        pieces = [SufficientStatistics.of(codes[i], z[i], X[i], y[i], levels) for i in np.split(order, cuts)]
        split = reduce(lambda s, t: s + t, pieces)
        for name in ("A11", "A1X", "AXX", "xy_sum", "zz", "z_sum"):
            np.testing.assert_array_equal(value(getattr(split, name)), value(getattr(whole, name)), err_msg=name)
        assert split.response_moments() == whole.response_moments()
        np.testing.assert_array_equal(split.x_scales(), whole.x_scales())


def test_variance_has_no_cancellation_for_a_large_mean(rng):
    y = 1e8 + rng.normal(size=10_000)
    ones = np.ones((len(y), 1))
    total, squares = products(y[:, None], ones)[0, 0, 0], products(y[:, None], y[:, None])[0, 0, 0]
    exact_mean = sum(map(Fraction, y.tolist())) / len(y)
    exact = sum((Fraction(v) - exact_mean) ** 2 for v in y.tolist()) / len(y)
    assert float(variance(total, squares, len(y))) == pytest.approx(float(exact), rel=1e-14)
    assert value(dd_add(total, total)) == 2 * value(total)
