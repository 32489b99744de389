"""The exact gradient of the REML and ML criteria in θ for any number of grouping factors,
against high-order finite differences, and the pieces of P = (Λ'Z'ZΛ + I)⁻¹ it reads
against the dense inverse."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayesmix as bm
import scipy.linalg as la

from bayesmix.linalg.gradient import (average_information, schur_gradient, template_gradients, template_second_order,
                                      theta_entries)
from bayesmix.linalg.kernels import schur_terms
from bayesmix.reml.optimize import LBFGSB, optimize_theta
from bayesmix.reml.quasi_newton import newton_step

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
    """Several grouping factors: projected Newton steps with the average-information curvature and
    the exact gradient, a few evaluations per θ element (L-BFGS-B took 32 here)."""
    fit = bm.fit_reml(bm.make_design("y ~ x + (x | a) + (1 | b)", DATA["crossed"]()))
    summary = fit.optsummary
    assert summary.method == "Newton (average information, exact gradient)"
    assert summary.converged
    assert summary.evaluations <= 3 * len(summary.final) + 2


def dense_average_information(design, structure, theta, reml):
    """ν/r² (w_i'Pw_j - (w_i'e)(w_j'e)/r²) from the n x n V = ZΛΛ'Z' + I, with w_i = Z ∂(ΛΛ')/∂θ_i Z'e
    (∂(ΛΛ')/∂θ_i exact by central differences, ΛΛ' being quadratic in θ), e = P(y - Xβ̂), r² = e'(y - Xβ̂)."""
    X, y = design.rows.X, design.rows.y
    n = len(y)
    Z = np.hstack([(np.eye(block.n_levels)[block.codes][:, :, None] * block.z[:, None, :]).reshape(n, -1)
                   for block in structure.blocks])

    def lam(th):
        return la.block_diag(*[np.kron(np.eye(block.n_levels), block.lambda_(th)) for block in structure.blocks])

    Vi = np.linalg.inv(Z @ lam(theta) @ lam(theta).T @ Z.T + np.eye(n))
    r = y - X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    P = Vi - Vi @ X @ np.linalg.solve(X.T @ Vi @ X, X.T @ Vi) if reml else Vi
    e = P @ (y if reml else r)
    r2 = e @ (y if reml else r)
    W = []
    for i in range(structure.n_theta):
        step = np.zeros(structure.n_theta)
        step[i] = 1e-3
        up, down = lam(theta + step), lam(theta - step)
        W.append(Z @ ((up @ up.T - down @ down.T) / 2e-3) @ Z.T @ e)
    W = np.array(W)
    dof = n - X.shape[1] if reml else n
    return dof / r2 * (W @ P @ W.T - np.outer(W @ e, W @ e) / r2)


@pytest.mark.parametrize(("source", "formula"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_average_information_equals_dense_algebra(source, formula, reml, rng):
    """The average information from the cross-products and the factor against the dense n x n algebra."""
    design = bm.make_design(formula, DATA[source]())
    crit = criterion_for(design, reml)
    theta = random_theta(crit.structure, rng)
    A = average_information(crit.structure, crit.cp, crit.factorize(theta), reml, float(crit.dof))
    expected = dense_average_information(design, crit.structure, theta, reml)
    np.testing.assert_allclose(A, expected, rtol=1e-8, atol=1e-9 * np.abs(expected).max())
    assert np.linalg.eigvalsh(A).min() > -1e-9 * np.abs(A).max()


@pytest.mark.parametrize(("source", "formula"), [CASES[0], CASES[1], CASES[6]])
def test_second_order_term_equals_finite_differences_in_sigma(source, formula, rng):
    """2 G_k[r_i, r_j] (same template column) with G_k = ∂d/∂Σ_k, against central differences of
    the criterion in Σ_k = T_k T_k' (θ from the Cholesky factor of the perturbed Σ_k)."""
    crit = criterion_for(bm.make_design(formula, DATA[source]()))
    structure = crit.structure
    theta = random_theta(structure, rng)
    f = crit.factorize(theta)
    _, F = schur_terms(f.R, crit.cp.p, float(crit.dof), True)
    term = template_second_order(structure, theta, template_gradients(structure, crit.cp, f, F))
    for block in structure.blocks:
        T = block.lambda_(theta)
        sigma = T @ T.T
        G = np.empty_like(sigma)
        for a in range(block.q):
            for b in range(a + 1):
                h = 1e-4 * np.sqrt(sigma[a, a] * sigma[b, b])  # each entry on its own scale
                S = np.zeros_like(sigma)
                S[a, b] = S[b, a] = 1.0
                values = []
                for sign in (1, -1):
                    trial = theta.copy()
                    factor = np.linalg.cholesky(sigma + sign * h * S)
                    trial[block.theta_offset : block.theta_offset + block.n_theta] = factor[block.theta_rows, block.theta_cols]
                    values.append(crit(trial))
                G[a, b] = G[b, a] = (values[0] - values[1]) / (2 * h) / (1.0 if a == b else 2.0)
        idx = block.theta_offset + np.arange(block.n_theta)
        same_column = block.theta_cols[:, None] == block.theta_cols[None, :]
        expected = np.where(same_column, 2.0 * G[block.theta_rows[:, None], block.theta_rows[None, :]], 0.0)
        np.testing.assert_allclose(term[np.ix_(idx, idx)], expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())
    assert theta_entries(structure, template_gradients(structure, crit.cp, f, F)) == pytest.approx(
        schur_gradient(structure, crit.cp, f, F), rel=1e-14)


@pytest.mark.parametrize(("source", "formula"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_newton_reaches_the_lbfgsb_optimum(source, formula, reml):
    """The Newton minimiser and L-BFGS-B reach the same criterion (Newton as low or lower)."""
    design = bm.make_design(formula, DATA[source]())
    lbfgsb_crit, newton_crit = criterion_for(design, reml), criterion_for(design, reml)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        reference = optimize_theta(lbfgsb_crit, minimizer=LBFGSB(lbfgsb_crit))
        newton = optimize_theta(newton_crit)
    assert newton.method.startswith("Newton")
    assert newton.converged
    assert newton.fmin <= reference.fmin + 1e-10 * abs(reference.fmin)


def test_newton_step_on_singular_and_broken_curvature():
    """-B⁻¹g where B is positive definite; a finite descent direction where it is singular (a
    variance held at 0); -g where it is 0 or not finite."""
    g = np.array([1.0, -2.0, 0.5])
    B = np.diag([4.0, 2.0, 1.0])
    np.testing.assert_allclose(newton_step(B, g), -np.linalg.solve(B, g))
    singular = np.diag([4.0, 2.0, 0.0])
    step = newton_step(singular, g)
    assert np.isfinite(step).all() and g @ step < 0
    np.testing.assert_allclose(step[:2], [-0.25, 1.0])
    for broken in (np.zeros((3, 3)), np.full((3, 3), np.nan)):
        np.testing.assert_array_equal(newton_step(broken, g), -g)
