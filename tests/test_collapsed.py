"""The collapsed Gaussian sampler: exact likelihood, exact effect draws, same posterior as the full model."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes import ArgumentError, BayesModel
from bayesmix.linalg.collapsed import collapsed_loglik, draw_effects
from bayesmix.data.crossprod import cross_products
from bayesmix.data.layout import structure_of


def simulated(seed: int, formula: str, groups: int = 40, per_group: int = 8) -> bm.Design:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rng.integers(per_group // 2, per_group * 2, groups))
    x = rng.normal(size=len(g))
    u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.36]], size=groups)
    y = 1 + 0.5 * x + u[g, 0] + u[g, 1] * x + rng.normal(0, 0.8, len(g))
    return bm.make_design(formula, pd.DataFrame({"y": y, "x": x, "g": g}))


DESIGNS = {
    "music": lambda music: bm.make_design("na ~ perform_type + (perform_type | id)", music),
    "correlated": lambda music: simulated(1, "y ~ x + (x | g)"),
    "two terms": lambda music: simulated(2, "y ~ x + (1 | g) + (0 + x | g)"),
}


def pieces(design):
    structure = structure_of(design)
    return structure.blocks[0], cross_products(structure, design.rows.X, design.rows.y)


@pytest.mark.parametrize("name", list(DESIGNS))
def test_likelihood_is_the_marginal_density(music, name, rng):
    design = DESIGNS[name](music)
    block, cp = pieces(design)
    q, p = block.q, design.p
    beta = rng.normal(size=p)
    C = np.tril(rng.normal(0, 0.5, (q, q)))
    np.fill_diagonal(C, rng.uniform(0.5, 2.0, q))
    sigma = 1.3
    value, d_beta, d_C, d_sigma = collapsed_loglik(beta, C, sigma, cp.A11, cp.A1X, cp.AXX, float(design.n), True)
    dense = sum(
        multivariate_normal(design.rows.X[rows] @ beta, sigma**2 * np.eye(rows.sum()) + block.z[rows] @ C @ C.T @ block.z[rows].T)
        .logpdf(design.rows.y[rows])
        for rows in (block.codes == i for i in range(block.n_levels))
    )
    assert value == pytest.approx(dense, rel=1e-12)

    def f(b, c, s):
        return collapsed_loglik(b, c, s, cp.A11, cp.A1X, cp.AXX, float(design.n), False)[0]

    h = 1e-6
    np.testing.assert_allclose(d_beta, [(f(beta + e, C, sigma) - f(beta - e, C, sigma)) / (2 * h) for e in h * np.eye(p)], rtol=1e-5, atol=1e-6)
    for i, j in zip(*np.tril_indices(q)):
        E = np.zeros((q, q))
        E[i, j] = h
        assert d_C[i, j] == pytest.approx((f(beta, C + E, sigma) - f(beta, C - E, sigma)) / (2 * h), rel=1e-5, abs=1e-6)
    assert d_sigma == pytest.approx((f(beta, C, sigma + h) - f(beta, C, sigma - h)) / (2 * h), rel=1e-5)


def test_effect_draws_follow_the_exact_conditional(music, rng):
    design = DESIGNS["music"](music)
    block, cp = pieces(design)
    beta, sigma = np.array([15.0, 0.7, 2.0]), 4.6
    C = np.array([[2.0, 0.0, 0.0], [-0.6, 1.3, 0.0], [0.7, 0.4, 0.5]])
    S = 40_000
    u = draw_effects(np.tile(beta, (S, 1)), np.tile(C, (S, 1, 1)), np.full(S, sigma), cp.A11, cp.A1X,
                     rng.integers(0, 2**32, S, dtype=np.uint64))
    Sigma = C @ C.T
    for level in (0, 17):
        rows = block.codes == level
        Z = block.z[rows]
        V = sigma**2 * np.eye(rows.sum()) + Z @ Sigma @ Z.T
        mean = Sigma @ Z.T @ np.linalg.solve(V, design.rows.y[rows] - design.rows.X[rows] @ beta)
        cov = Sigma - Sigma @ Z.T @ np.linalg.solve(V, Z @ Sigma)
        se = np.sqrt(np.diag(cov) / S)
        assert (np.abs(u[:, level].mean(axis=0) - mean) < 4 * se).all()
        np.testing.assert_allclose(np.cov(u[:, level].T), cov, atol=4 * np.sqrt(2 / S) * np.abs(cov).max())


@pytest.fixture(scope="module")
def pairs(music, music_full_posterior):
    """Full and collapsed posteriors of the three designs (4 x 2000 draws each after 1000 tuning steps).

    The music model's full posterior is the session's (tests/conftest.py), which
    tests/test_bayes_music.py reads too.
    """
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, make in DESIGNS.items():
            design = make(music)
            if name == "music":
                full = music_full_posterior
            else:
                full = BayesModel(design, method="full").sample(draws=2000, tune=1000, chains=4, seed=11, progressbar=False)
            collapsed = BayesModel(design, method="collapsed").sample(draws=2000, tune=1000, chains=4, seed=12, progressbar=False)
            out[name] = (full, collapsed)
    return out


@pytest.mark.slow  # reads six posteriors of 4 x 2000 draws
@pytest.mark.parametrize("name", list(DESIGNS))
def test_collapsed_and_full_posteriors_agree(pairs, name):
    full, collapsed = pairs[name]
    assert collapsed.method.startswith("collapsed") and full.method.startswith("full")
    a, b = full.summary(), collapsed.summary()
    combined = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert ((a["mean"] - b["mean"]).abs() <= 4 * combined).all(), pd.concat([a["mean"], b["mean"], combined], axis=1)
    assert ((a["sd"] / b["sd"] - 1).abs() <= 0.10).all(), pd.concat([a["sd"], b["sd"]], axis=1)
    for var in [v for v in full.posterior.data_vars if str(v).startswith("u_")]:
        mcse = np.sqrt(az.mcse(full.posterior[var]).values ** 2 + az.mcse(collapsed.posterior[var]).values ** 2)
        diff = np.abs(full.posterior[var].mean(("chain", "draw")).values - collapsed.posterior[var].mean(("chain", "draw")).values)
        assert (diff <= 4 * mcse).all()
        ratio = full.posterior[var].std(("chain", "draw")).values / collapsed.posterior[var].std(("chain", "draw")).values
        assert (np.abs(ratio - 1) <= 0.10).all()


@pytest.mark.slow  # reads six posteriors of 4 x 2000 draws
def test_collapsed_sampler_mixes_better(pairs):
    full, collapsed = pairs["music"]
    assert collapsed.diagnostics()["divergences"] == 0
    assert collapsed.diagnostics()["max_rhat"] <= 1.01
    assert collapsed.diagnostics()["min_ess_bulk"] > 1.5 * full.diagnostics()["min_ess_bulk"]


def test_method_choice(music):
    single = bm.make_design("na ~ perform_type + (perform_type | id)", music)
    assert BayesModel(single).method == "collapsed"
    assert BayesModel(single, method="full").method == "full"
    crossed = bm.make_design("na ~ perform_type + (1 | id) + (1 | audience)", music)
    assert BayesModel(crossed).method == "gibbs"  # several factors, scalar effects: bayesmix.bayes.gibbs
    assert BayesModel(crossed, method="collapsed").method == "collapsed"  # bayesmix.bayes.collapsed_factors
    with pytest.raises(ArgumentError, match="method must be one of"):
        BayesModel(single, method="metropolis")


@pytest.mark.slow  # reads six posteriors of 4 x 2000 draws
def test_collapsed_result_reports_its_method_and_repeats_with_the_seed(pairs, music):
    _, collapsed = pairs["music"]
    assert "collapsed" in repr(collapsed)
    model = BayesModel(DESIGNS["music"](music), method="collapsed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = model.sample(draws=100, tune=100, chains=2, seed=5, progressbar=False)
        b = model.sample(draws=100, tune=100, chains=2, seed=5, progressbar=False)
    assert a.posterior["u_id"].equals(b.posterior["u_id"])
