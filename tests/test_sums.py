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
    """Also for two crossed factors: the per-pair sums of Z_a'Z_b merge exactly across partitions."""
    n, levels = 3000, (40, 9)
    codes = (rng.integers(0, levels[0], n), rng.integers(0, levels[1], n))
    z = np.column_stack([np.ones(n), rng.normal(size=n) * 1e3, rng.normal(size=n)])
    columns = (np.array([0, 1]), np.array([2]))
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.exponential(size=n) * 1e-4])
    y = rng.normal(size=n) * 1e5 + 3e7
    whole = SufficientStatistics.of(codes, z, columns, X, y, levels)
    assert len(whole.pairs[0].keys) == len(np.unique(codes[0] * levels[1] + codes[1]))
    for parts in (2, 7, 31):
        cuts = np.sort(rng.choice(np.arange(1, n), parts - 1, replace=False))
        order = rng.permutation(n)
        pieces = [SufficientStatistics.of((codes[0][i], codes[1][i]), z[i], columns, X[i], y[i], levels)
                  for i in np.split(order, cuts)]
        split = reduce(lambda s, t: s + t, pieces)
        for name in ("AXX", "xy_sum", "zz", "z_sum"):
            np.testing.assert_array_equal(value(getattr(split, name)), value(getattr(whole, name)), err_msg=name)
        for k in range(2):
            np.testing.assert_array_equal(value(split.AZZ[k]), value(whole.AZZ[k]))
            np.testing.assert_array_equal(value(split.AZX[k]), value(whole.AZX[k]))
        np.testing.assert_array_equal(split.pairs[0].keys, whole.pairs[0].keys)
        np.testing.assert_array_equal(value(split.pairs[0].values), value(whole.pairs[0].values))
        assert split.response_moments() == whole.response_moments()
        np.testing.assert_array_equal(split.x_scales(), whole.x_scales())


def test_pair_sums_are_the_off_diagonal_block(rng):
    """Z_a'Z_b from the pair sums is the dense product of the indicator-expanded columns."""
    n, levels = 500, (7, 5)
    codes = (rng.integers(0, levels[0], n), rng.integers(0, levels[1], n))
    z = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    stats = SufficientStatistics.of(codes, z, (np.array([0, 1]), np.array([2])), np.ones((n, 1)), rng.normal(size=n), levels)
    Za = (np.eye(levels[0])[codes[0]][:, :, None] * z[:, None, :2]).reshape(n, -1)
    Zb = np.eye(levels[1])[codes[1]] * z[:, 2:]
    dense = np.zeros((levels[0] * 2, levels[1]))
    i, j = stats.pairs[0].levels()
    dense.reshape(levels[0], 2, levels[1])[i, :, j] = value(stats.pairs[0].values)[:, :, 0]
    np.testing.assert_allclose(dense, Za.T @ Zb, rtol=1e-13, atol=1e-12)
    cp = stats.cross_products(1)  # the rest block is factor b: Z2'Z1 = (Z_a'Z_b)'
    np.testing.assert_allclose(cp.A21.toarray(), (Za.T @ Zb).T, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(cp.A22, Zb.T @ Zb, rtol=1e-13)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_variance_has_no_cancellation_for_a_large_mean(seed):
    """Against the exact variance (fractions), within the error bound of the double-double sums:
    the low parts accumulate in double, so Σx² is off by up to about n²u²·mean(x²) and the
    variance by n·u²·mean(x²) (u = 2⁻⁵³): 1e-12 of it here, where sums in double lose all
    digits (n·u·mean(x²) = 1e4). Its own generator: the session's shared one gave data that
    depended on which tests ran before, and a tolerance of 1e-14 that held for some draws only."""
    y = 1e8 + np.random.default_rng(seed).normal(size=10_000)
    ones = np.ones((len(y), 1))
    total, squares = products(y[:, None], ones)[0, 0, 0], products(y[:, None], y[:, None])[0, 0, 0]
    exact_mean = sum(map(Fraction, y.tolist())) / len(y)
    exact = sum((Fraction(v) - exact_mean) ** 2 for v in y.tolist()) / len(y)
    bound = 4 * len(y) * 2.0**-106 * float(np.mean(y**2))
    assert abs(float(variance(total, squares, len(y))) - float(exact)) <= bound
    assert value(dd_add(total, total)) == 2 * value(total)
