"""``method="laplace"``: NUTS on the Laplace-approximated marginal posterior.

The log density's gradient against finite differences for every family, link and structure of
the full density's tests; for the Gaussian family, the density against the exact marginal
(dense multivariate-normal algebra) and the posterior against the collapsed sampler's; the
importance weights' diagnostics on a case where the approximation is good and one where it
is known to be poor (binary outcomes, two per group, a large SD)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.bayes.embedded_laplace import laplace_density
from bayesmix.bayes.importance import importance_diagnostics
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, term_labels
from bayesmix.errors import ArgumentError
from bayesmix.linalg.pirls import WarmModes

from .test_full_density import FAMILIES, STRUCTURES, family_design


def build(family_case: str, structure: str):
    design = family_design(family_case, STRUCTURES[structure])
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, None)
    return design, laplace_density(design, priors, labels, layouts, coords(design, layouts))


def points(density, seed: int, count: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return [density.init(int(rng.integers(2**31))) * scale for _ in range(count)]


def value(density, x):
    return density.log_density(x, WarmModes(density.rows))[0]


@pytest.mark.parametrize(("family_case", "structure"), [(f, s) for f in FAMILIES for s in STRUCTURES])
def test_gradient_equals_finite_differences(family_case, structure):
    _, density = build(family_case, structure)
    for x in points(density, seed=2, count=2):
        logp, grad = density.log_density(x, WarmModes(density.rows))
        assert np.isfinite(logp)
        # PIRLS leaves the value a rounding error of order 1e-10: a wide five-point stencil
        h = 1e-3
        fd = [(value(density, x - 2 * h * e) - 8 * value(density, x - h * e) + 8 * value(density, x + h * e)
               - value(density, x + 2 * h * e)) / (12 * h) for e in np.eye(x.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(grad).max())


def test_warm_start_gives_the_cold_value():
    """A chain's warm-started PIRLS reaches the mode a cold start reaches."""
    _, density = build("negative-binomial", "two crossed")
    modes = WarmModes(density.rows)
    for x in points(density, seed=4, count=5, scale=0.3):
        warm = density.log_density(x, modes)
        cold = density.log_density(x, WarmModes(density.rows))
        assert warm[0] == pytest.approx(cold[0], rel=1e-10, abs=1e-8)
        np.testing.assert_allclose(warm[1], cold[1], rtol=1e-6, atol=1e-8)


def exact_gaussian_marginal(design, density, x) -> float:
    """log p(ψ) + log N(y; offset + Xβ, Z G Z' + σ² W⁻¹) by dense algebra, with the log prior
    (and Jacobians) of the same coordinates."""
    beta, sigma, sd, R, _, lp, _ = density.parameters(x)
    rows = design.rows
    C = sd[:, None] * R
    Z_blocks, G_blocks, col = [], [], 0
    for k, term in enumerate(design.terms):
        Ct = C[col:col + term.q, col:col + term.q]
        Z = np.zeros((design.n, term.n_levels * term.q))
        for i in range(term.q):
            Z[np.arange(design.n), rows.codes[k] * term.q + i] = rows.z[k][:, i]
        Z_blocks.append(Z)
        G_blocks.append(np.kron(np.eye(term.n_levels), Ct @ Ct.T))
        col += term.q
    Z = np.hstack(Z_blocks)
    from scipy.linalg import block_diag

    V = Z @ block_diag(*G_blocks) @ Z.T + np.diag(sigma**2 / rows.weights)
    mean = rows.offset + rows.X @ beta
    return lp + stats.multivariate_normal(mean, V).logpdf(rows.y)


@pytest.mark.parametrize("structure", list(STRUCTURES))
def test_gaussian_density_is_the_exact_marginal(structure):
    """For the linear Gaussian model the Laplace approximation is exact: differences of the log
    density equal those of the exact marginal posterior."""
    design, density = build("gaussian-identity", structure)
    xs = points(density, seed=5, count=3, scale=0.3)
    ours = [value(density, x) for x in xs]
    exact = [exact_gaussian_marginal(design, density, x) for x in xs]
    np.testing.assert_allclose(np.diff(ours), np.diff(exact), rtol=1e-9, atol=1e-8)


def test_gaussian_posterior_is_the_collapsed_samplers(sleep):
    """sleepstudy by method="laplace" and by the collapsed sampler: means within 4 combined
    MCSE, SDs within 10 %, and importance weights that are all equal (the approximation is exact)."""
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    settings = dict(draws=1000, tune=1000, chains=2, seed=3, progressbar=False)
    laplace = model.sample(method="laplace", **settings)
    collapsed = model.sample(method="collapsed", **settings)
    a, b = laplace.summary(), collapsed.summary()
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert np.abs(z).max() < 4, z
    np.testing.assert_allclose(a["sd"], b["sd"], rtol=0.10)
    assert laplace.importance.khat == -np.inf and laplace.importance.trustworthy
    assert laplace.method.startswith("laplace")
    u_a, u_b = laplace.ranef(), collapsed.ranef()
    mcse = np.hypot(laplace.ranef_draws().std(("chain", "draw")), collapsed.ranef_draws().std(("chain", "draw"))).values
    # the effects' means: within 4 combined MCSE at the posterior ESS of the parameters (at least 400)
    assert (np.abs(u_a.to_numpy() - u_b.to_numpy()) / (mcse / np.sqrt(400))).max() < 4


def poisson_counts(seed: int = 1) -> pd.DataFrame:
    """Large counts: the Laplace approximation is good."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(15), 6)
    x = rng.normal(size=g.size)
    eta = 3.0 + 0.3 * x + rng.normal(0, 0.5, 15)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g.astype(str)})


def sparse_binary(seed: int = 2) -> pd.DataFrame:
    """Two binary outcomes per group and a large SD: the approximation is known to be poor."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(60), 2)
    eta = 0.5 + rng.normal(0, 3.0, 60)[g]
    return pd.DataFrame({"y": (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int), "g": g.astype(str)})


@pytest.mark.slow
def test_importance_check_passes_where_the_approximation_is_good():
    model = bm.Model("y ~ x + (1 | g)", poisson_counts(), family="poisson")
    post = model.sample(method="laplace", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    assert post.importance.khat < 0.5, post.importance
    assert "laplace_khat" in post.diagnostics()
    full = model.sample(draws=500, tune=500, chains=2, seed=1, progressbar=False)
    a, b = post.summary(), full.summary()
    assert (np.abs(a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])).max() < 4


@pytest.mark.slow
def test_importance_check_flags_a_poor_approximation():
    model = bm.Model("y ~ 1 + (1 | g)", sparse_binary(), family="binomial")
    with pytest.warns(bm.ConvergenceWarning, match="Laplace importance check"):
        post = model.sample(method="laplace", draws=500, tune=500, chains=2, seed=1, progressbar=False)
    assert post.importance.khat > 0.7 and not post.importance.trustworthy


def test_importance_diagnostics_of_known_weights():
    """Constant weights (an exact approximation) and weights with a heavy right tail."""
    exact = importance_diagnostics(np.full(400, 3.2))
    assert exact.khat == -np.inf and exact.ess == 400
    rng = np.random.default_rng(0)
    light = importance_diagnostics(rng.normal(0, 0.1, 4000))
    assert light.khat < 0.3 and light.ess > 3500
    heavy = importance_diagnostics(np.log(rng.pareto(1.0, 4000) + 1.0))  # tail index 1: k = 1
    assert heavy.khat > 0.7 and not heavy.trustworthy
    few = importance_diagnostics(rng.normal(0, 0.1, 20))  # too few draws for PSIS's tail (a short run)
    assert np.isnan(few.khat) and not few.trustworthy and "from 20 draws (PSIS needs at least 30)" in str(few)
    assert "from 29 draws" in str(importance_diagnostics(rng.normal(0, 0.1, 29)))
    assert importance_diagnostics(rng.normal(0, 0.1, 30)).trustworthy
    broken = importance_diagnostics(np.r_[rng.normal(0, 0.1, 100), np.nan])  # a weight that overflowed
    assert np.isnan(broken.khat) and not broken.trustworthy and "could not be computed" in str(broken)


def test_laplace_runs_on_nutpie_only(sleep):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    with pytest.raises(ArgumentError, match="nutpie only"):
        model.sample(method="laplace", sampler="pymc", draws=10, tune=10, chains=1)


def test_a_short_laplace_run_reports_its_importance_check_as_unchecked():
    """Too few draws for PSIS's Pareto tail: the run completes and says the check was not made."""
    model = bm.Model("y ~ 1 + (1 | g)", sparse_binary(), family="binomial")
    with pytest.warns(bm.ConvergenceWarning, match="Pareto k not computed from 20 draws"):
        post = model.sample(method="laplace", draws=20, tune=20, chains=1, seed=1, progressbar=False)
    assert np.isnan(post.importance.khat) and not post.importance.trustworthy
