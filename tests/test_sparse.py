"""The sparse factorisation (CHOLMOD, bayesmix/linalg/sparse.py) against the blocked one and exact
algebra: the criterion and its gradient to 1e-10 on crossed, nested and correlated-slope designs,
M⁻¹ on the pattern against numpy's dense inverse, the choice of factorisation and its messages.
The lme4 references are checked on the sparse path in tests/test_reml_lme4.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import BayesmixWarning, FitError
from bayesmix.data.layout import structure_of
from bayesmix.reml import criterion as criterion_module
from bayesmix.reml.criterion import choose_factorization, profiled_criterion

from .conftest import require_cholmod

DATA = Path(__file__).parent / "reference" / "data"
CASES = [
    ("crossed", "y ~ x + (1 | a) + (1 | b)"),
    ("crossed", "y ~ x + (x | a) + (1 | b)"),
    ("crossed", "y ~ x + (1 | a) + (x | b)"),
    ("crossed", "y ~ x + (x | a) + (x || b)"),
    ("nested", "y ~ x + (1 | school/class)"),
    ("nested", "y ~ x + (x | school) + (1 | school:class)"),
]


def design_of(source: str, formula: str):
    return bm.make_design(formula, pd.read_csv(DATA / f"{source}.csv"))


def random_theta(structure, rng):
    """θ away from lme4's start: diagonals in (0.3, 2), off-diagonals N(0, 0.5)."""
    diagonal = structure.diagonal()
    return np.where(diagonal, rng.uniform(0.3, 2.0, structure.n_theta), rng.normal(0.0, 0.5, structure.n_theta))


@pytest.mark.parametrize(("source", "formula"), CASES)
@pytest.mark.parametrize("reml", [True, False])
def test_sparse_and_blocked_criterion_and_gradient_agree(source, formula, reml, rng):
    require_cholmod()
    design = design_of(source, formula)
    structure = structure_of(design)
    blocked = profiled_criterion(design, structure, reml, "blocked")
    sparse = profiled_criterion(design, structure, reml, "sparse")
    assert (blocked.kind, sparse.kind) == ("blocked", "sparse (CHOLMOD)")
    for _ in range(4):
        theta = random_theta(structure, rng)
        v_blocked, g_blocked = blocked.value_and_gradient(theta)
        v_sparse, g_sparse = sparse.value_and_gradient(theta)
        assert v_sparse == pytest.approx(v_blocked, rel=1e-10)
        np.testing.assert_allclose(g_sparse, g_blocked, rtol=1e-10, atol=1e-10 * np.abs(g_blocked).max())
        assert sparse(theta) == pytest.approx(v_blocked, rel=1e-10)
        # the Newton minimiser's curvature (average information and second-order term) too
        _, g_curved, c_sparse = sparse.value_gradient_curvature(theta)
        _, _, c_blocked = blocked.value_gradient_curvature(theta)
        np.testing.assert_array_equal(g_curved, g_sparse)
        np.testing.assert_allclose(c_sparse, c_blocked, rtol=1e-9, atol=1e-10 * np.abs(c_blocked).max())


def test_selected_inverse_equals_dense_inverse(rng):
    """M⁻¹ by the Takahashi recurrences on CHOLMOD's factor equals numpy's inverse of the dense
    M = Λ'Z'ZΛ + I at every stored entry of Z'Z's pattern (correlated slopes on both factors)."""
    require_cholmod()
    design = design_of("crossed", "y ~ x + (x | a) + (x | b)")
    structure = structure_of(design)
    sparse = profiled_criterion(design, structure, True, "sparse")
    f = sparse.factorize(random_theta(structure, rng))
    pattern = sparse.cp.pattern
    lam = np.zeros((pattern.size, pattern.size))
    for rows, levels, T in f.lam.parts:
        for level in range(levels):
            start = rows.start + level * T.shape[0]
            lam[start : start + T.shape[0], start : start + T.shape[0]] = T
    ZtZ = sparse.cp.A_full.toarray()
    M = lam.T @ ZtZ @ lam + np.eye(pattern.size)
    inverse = np.linalg.inv(M)
    columns = np.repeat(np.arange(pattern.size), np.diff(pattern.indptr))
    np.testing.assert_allclose(f.selected_inverse, inverse[pattern.indices, columns], rtol=1e-10, atol=1e-13)
    assert f.logdet_z == pytest.approx(np.linalg.slogdet(M)[1], rel=1e-12)


@pytest.mark.parametrize(("source", "formula"), [CASES[1], CASES[5]])
def test_sparse_fit_equals_blocked_fit(source, formula):
    """The whole fit: θ̂, β̂, the conditional modes and variances of every factor."""
    require_cholmod()
    design = design_of(source, formula)
    blocked = bm.fit_reml(design, factorization="blocked")
    sparse = bm.fit_reml(design, factorization="sparse")
    assert "sparse (CHOLMOD) factorisation" in str(sparse.optsummary)
    assert sparse.optsummary.method == blocked.optsummary.method == "Newton (average information, exact gradient)"
    assert sparse.criterion == pytest.approx(blocked.criterion, rel=1e-10)
    np.testing.assert_allclose(sparse.theta_values, blocked.theta_values, rtol=1e-5, atol=1e-7)
    for ours, theirs in zip(sparse.conditional_covariances(), blocked.conditional_covariances()):
        np.testing.assert_allclose(ours, theirs, rtol=1e-4, atol=1e-10)
    np.testing.assert_allclose(sparse.fixef(), blocked.fixef(), rtol=1e-6)


def test_column_counts_equal_a_dense_factor(rng):
    """The elimination-tree column counts behind the automatic choice equal the non-zeros per
    column of the dense Cholesky factor of a matrix with Z'Z's pattern under CHOLMOD's ordering."""
    require_cholmod()
    design = design_of("crossed", "y ~ x + (x | a) + (1 | b)")
    structure = structure_of(design)
    sparse = profiled_criterion(design, structure, True, "sparse")
    pattern = sparse.cp.pattern
    M = pattern.symmetric(rng.uniform(0.1, 1.0, pattern.nnz)).toarray()
    M = M + M.T + 2 * pattern.size * np.eye(pattern.size)  # positive definite, Z'Z's pattern
    perm = sparse.cholesky.symbolic.P()
    L = np.linalg.cholesky(M[np.ix_(perm, perm)])
    counts = sparse.cholesky.column_counts
    np.testing.assert_array_equal(counts, (L != 0).sum(axis=0))
    assert sparse.cholesky.work == float(counts @ counts)


def test_auto_choice_follows_the_dense_block(monkeypatch):
    design = design_of("crossed", "y ~ x + (1 | a) + (1 | b)")
    structure = structure_of(design)
    size = structure.dense_block_size
    assert size == structure.blocks[1].n_levels
    assert choose_factorization(structure) == "blocked"
    assert choose_factorization(structure, "blocked") == "blocked"
    monkeypatch.setattr(criterion_module, "SPARSE_FROM", size - 1)
    monkeypatch.setattr(criterion_module, "cholmod_available", lambda: True)
    cheap, dear = 0.5 * size**3 / criterion_module.SPARSE_COST, 2.0 * size**3 / criterion_module.SPARSE_COST
    assert choose_factorization(structure, "auto", cheap) == "sparse"
    assert choose_factorization(structure, "auto", dear) == "blocked"
    monkeypatch.setattr(criterion_module, "available_memory", lambda: 1.0)  # the dense blocks would not fit
    assert choose_factorization(structure, "auto", dear) == "sparse"
    with pytest.raises(bm.ArgumentError, match="factorization must be one of"):
        choose_factorization(structure, "dense")


def test_without_cholmod_the_messages_say_how_to_install(monkeypatch):
    design = design_of("crossed", "y ~ x + (1 | a) + (1 | b)")
    structure = structure_of(design)
    monkeypatch.setattr(criterion_module, "cholmod_available", lambda: False)
    with pytest.raises(FitError, match=r'pip install "bayesmix\[sparse\]".*libsuitesparse-dev'):
        choose_factorization(structure, "sparse")
    monkeypatch.setattr(criterion_module, "SPARSE_FROM", 0)
    with pytest.warns(BayesmixWarning, match=r'sparse factorisation may be much faster.*bayesmix\[sparse\]'):
        assert choose_factorization(structure) == "blocked"
    monkeypatch.setattr(criterion_module, "available_memory", lambda: 1.0)  # the dense block would not fit
    with pytest.raises(FitError, match=r"needs the sparse factorisation.*bayesmix\[sparse\]"):
        choose_factorization(structure)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert choose_factorization(structure, "blocked") == "blocked"  # asked for: no message


@pytest.mark.parametrize(("source", "formula"), [CASES[3], CASES[5]])
def test_sparse_cross_products_from_the_statistics_equal_the_rows(source, formula):
    """Z'Z, Z'[X y] and [X y]'[X y] laid out from the per-level and per-pair sums equal the
    products of the dense Z built from the rows (correlated slopes, crossed and nested)."""
    design = design_of(source, formula)
    structure = structure_of(design)
    cp = design.statistics.sparse_cross_products(design.p)
    Z = np.zeros((design.n, cp.pattern.size))
    start = 0
    for block in structure.blocks:
        for c in range(block.q):
            Z[np.arange(design.n), start + block.codes * block.q + c] = block.z[:, c]
        start += block.n_levels * block.q
    XY = np.column_stack([design.rows.X, design.rows.y])
    np.testing.assert_allclose(cp.A_full.toarray(), Z.T @ Z, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cp.AX, Z.T @ XY, rtol=1e-12, atol=1e-10)
    np.testing.assert_allclose(cp.AXX, XY.T @ XY, rtol=1e-12)
