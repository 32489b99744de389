"""The exact gradient of the REML and ML criteria in θ for any number of grouping factors,
against high-order finite differences, and the pieces of P = (Λ'Z'ZΛ + I)⁻¹ it reads
against the dense inverse."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.linalg.gradient import schur_gradient
from bayesmix.linalg.kernels import schur_terms

from .test_reml_algebra import criterion_for
from .test_reml_lme4 import DATA

CASES = [
    ("music", "na ~ perform_type + (perform_type | id) + (1 | audience)"),  # correlated slopes, crossed with a scalar factor
    ("music", "na ~ previous + (previous | id) + (previous | audience)"),  # correlated slopes on both crossed factors
    ("sleep", "Reaction ~ Days + (Days | Subject) + (1 | Days)"),
    ("crossed", "y ~ x + (x | a) + (x | b)"),
    ("crossed", "y ~ x + (1 | a) + (x || b)"),
    ("nested", "y ~ x + (x | school/class)"),  # nested, correlated slopes at both levels
    ("nested", "y ~ x + (1 | school) + (x | school:class) + (0 + x | school)"),  # mixed: two blocks on school
]


def five_point(crit, theta, h):
    """The fourth-order central difference of the criterion along each θ element."""
    grad = np.empty(len(theta))
    for k in range(len(theta)):
        e = np.zeros(len(theta))
        e[k] = h
        grad[k] = (crit(theta - 2 * e) - 8 * crit(theta - e) + 8 * crit(theta + e) - crit(theta + 2 * e)) / (12 * h)
    return grad


def random_theta(structure, rng):
    theta = np.where(structure.diagonal(), rng.uniform(0.2, 1.5, structure.n_theta), rng.normal(0, 0.3, structure.n_theta))
    return theta / structure.row_scale


@pytest.mark.parametrize(("source", "formula"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_gradient_equals_finite_differences(source, formula, reml, rng):
    crit = criterion_for(bm.make_design(formula, DATA[source]()), reml)
    assert not crit.cp.single_factor
    for _ in range(2):
        theta = random_theta(crit.structure, rng)
        value, grad = crit.value_and_gradient(theta)
        assert value == pytest.approx(crit(theta), rel=1e-14)
        # truncation error of order h⁴ (about 1e-11 relative here), rounding about 1e-10
        expected = five_point(crit, theta, 1e-3 * np.max(np.abs(theta)))
        np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-6 * np.max(np.abs(expected)))


@pytest.mark.parametrize("reml", [True, False])
def test_general_gradient_equals_single_factor_kernel(music, reml, rng):
    """With one grouping factor, the blocked gradient and the compiled one-factor kernel agree."""
    crit = criterion_for(bm.make_design("na ~ perform_type + (perform_type | id)", music), reml)
    theta = random_theta(crit.structure, rng)
    f = crit.factorize(theta)
    _, F = schur_terms(f.R, crit.cp.p, float(crit.dof), reml)
    np.testing.assert_allclose(schur_gradient(crit.structure, crit.cp, f, F), crit.value_and_gradient(theta)[1], rtol=1e-10)


@pytest.mark.parametrize(("source", "formula"), [CASES[0], CASES[3], CASES[6]])
def test_selected_inverse_equals_dense_inverse(source, formula, rng):
    """P's first-factor diagonal blocks, P21 on the pattern of Z2'Z1 and P22 against the inverse
    of the dense Λ'Z'ZΛ + I assembled from the cross-products."""
    crit = criterion_for(bm.make_design(formula, DATA[source]()))
    cp, structure = crit.cp, crit.structure
    theta = random_theta(structure, rng)
    f = crit.factorize(theta)
    first = structure.blocks[0]
    levels, q = first.n_levels, first.q
    size1 = levels * q
    A = np.zeros((size1 + len(cp.A22),) * 2)
    for i in range(levels):
        A[i * q : (i + 1) * q, i * q : (i + 1) * q] = cp.A11[i]
    A[size1:, :size1] = cp.A21.toarray()
    A[:size1, size1:] = cp.A21.toarray().T
    A[size1:, size1:] = cp.A22
    lam = np.zeros_like(A)
    start = 0
    for block in structure.blocks:
        size = block.n_levels * block.q
        lam[start : start + size, start : start + size] = np.kron(np.eye(block.n_levels), block.lambda_(theta))
        start += size
    P = np.linalg.inv(lam.T @ A @ lam + np.eye(len(A)))
    P11, P21, P22 = f.selected_inverse
    for i in range(levels):
        np.testing.assert_allclose(P11[i], P[i * q : (i + 1) * q, i * q : (i + 1) * q], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(P22, P[size1:, size1:], rtol=1e-9, atol=1e-13)
    indptr, pair_rows, _ = f.A21_levels
    level = np.repeat(np.arange(levels), np.diff(indptr))
    dense21 = P[size1:, :size1].reshape(len(P22), levels, q)
    np.testing.assert_allclose(P21, dense21[pair_rows, level], rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(f.inverse_blocks[1], P[size1:, :size1], rtol=1e-9, atol=1e-13)


def test_crossed_fit_uses_few_evaluations():
    """L-BFGS-B with the exact gradient: the optimiser record says so, and the crossed fit takes
    about one evaluation per iteration (central differences took 2 dim(θ) + 1 = 9)."""
    fit = bm.fit_reml(bm.make_design("y ~ x + (x | a) + (1 | b)", DATA["crossed"]()))
    summary = fit.optsummary
    assert "exact gradient" in summary.method
    assert summary.converged
    assert summary.evaluations < 3 * summary.iterations + 10
