"""The collapsed Gibbs sampler (``method="gibbs"``): its block draw against the exact Gaussian
conditional, its slice sampler against a known density, its posterior against the collapsed
NUTS sampler's on crossed and nested designs, and what it refuses."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes import ArgumentError, BayesModel
from bayesmix.bayes.gibbs import (draw_fixed_effects, draw_term_effects, gibbs_sampler, level_residuals, slice_update,
                                  term_marginal)
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, term_labels

from .test_collapsed_factors import assert_a_replacement_response_repeats, assert_posteriors_agree, simulated

FORMULAS = {
    "crossed": ("y ~ x + (1 | a) + (1 | b)", "crossed"),
    "nested": ("y ~ x + (1 | a) + (1 | a:b)", "nested"),
    "crossed, an uncorrelated slope": ("y ~ x + (1 | a) + (0 + x | a) + (1 | b)", "crossed"),
    "crossed, a correlated slope": ("y ~ x + (x | a) + (1 | b)", "crossed"),
    "nested, a correlated slope": ("y ~ x + (x | a) + (1 | a:b)", "nested"),
    "crossed, no fixed intercept": ("y ~ 0 + x + (1 | a) + (1 | b)", "crossed"),
    "crossed, no fixed effects": ("y ~ 0 + (1 | a) + (1 | b)", "crossed"),
}
TRANSLATED = ("nested", "nested, a correlated slope", "crossed, no fixed intercept", "crossed, no fixed effects")
"""The cases with translation moves: nested terms, and crossed intercepts that no fixed effect absorbs."""


def sampler(case: str):
    formula, kind = FORMULAS[case]
    design = bm.make_design(formula, simulated(kind))
    return design, BayesModel(design, method="gibbs")._sampler._compiled


def dense_effects(g, k):
    """Term k's rows' Z (rows x levels·q, level-major) from the sampler's arrays."""
    n, q = g.Z.shape[0], int(g.qs[k])
    Zk = np.zeros((n, g.starts[k + 1] - g.starts[k]))
    for i in range(q):
        Zk[np.arange(n), g.codes[:, k] * q + i] = g.Z[:, g.cols[k] + i]
    return Zk


def covariance_of_effects(q: int, rng) -> np.ndarray:
    C = np.tril(rng.normal(size=(q, q)), -1) + np.diag(rng.uniform(0.5, 1.5, q))
    return C @ C.T


@pytest.mark.parametrize("case", list(FORMULAS))
@pytest.mark.parametrize("k", [0, 1])
def test_the_block_draw_is_the_exact_conditional_of_the_fixed_and_one_terms_effects(case, k):
    """(θ_b, u_k) given the residuals w without term k and without X̃θ_b, σ and Σ_k: the draw at
    zero normals is the conditional mean, and its derivative J in the normals gives J J' = the
    conditional covariance, both from the dense precision of the joint Gaussian."""
    design, g = sampler(case)
    rng = np.random.default_rng(3)
    n, p = g.X.shape
    q = int(g.qs[k])
    w = rng.normal(size=n)
    sigma2 = 0.7
    Sigma = covariance_of_effects(q, rng)
    Sinv = np.linalg.inv(Sigma)
    Zk = dense_effects(g, k)
    size = Zk.shape[1]
    precision = np.block([[g.X.T @ g.X / sigma2 + np.diag(g.precision), g.X.T @ Zk / sigma2],
                          [Zk.T @ g.X / sigma2, Zk.T @ Zk / sigma2 + np.kron(np.eye(size // q), Sinv)]])
    covariance = np.linalg.inv(precision)
    mean = covariance @ np.concatenate([g.X.T @ w / sigma2 + g.shift, Zk.T @ w / sigma2])
    S = np.zeros(g.starts[-1])
    S[g.starts[k]:g.starts[k + 1]] = Zk.T @ w

    def draw(eps):  # steps 1 and 3 of the sweep at the same Σ_k
        x, u, m = np.zeros(g.n_population), np.zeros(g.starts[-1]), np.zeros(size)
        assert draw_fixed_effects(x, k, S, g.X.T @ w, sigma2, Sinv, g.A, g.a_at, g.G, g.g_at, g.qs, g.starts, g.XX,
                                  g.precision, g.shift, eps[:p].copy())
        level_residuals(x, k, S, g.G, g.g_at, g.qs, g.starts, p, m)
        assert draw_term_effects(u, k, m, sigma2, Sinv, g.A, g.a_at, g.qs, g.starts, eps[p:].copy())
        return np.concatenate([x[:p], u[g.starts[k]:g.starts[k + 1]]])

    at_zero = draw(np.zeros(p + size))
    np.testing.assert_allclose(at_zero, mean, rtol=1e-9, atol=1e-12)
    J = np.column_stack([draw(np.eye(p + size)[i]) - at_zero for i in range(p + size)])
    np.testing.assert_allclose(J @ J.T, covariance, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("case", list(FORMULAS))
def test_the_marginal_likelihood_of_a_terms_covariance_is_the_dense_gaussians(case):
    """term_marginal at two covariances of each term differs as log N(w - X̃θ_b | 0, σ²I + Z Σ Z')
    does (scipy, dense): what the SDs' and correlations' updates read."""
    design, g = sampler(case)
    rng = np.random.default_rng(5)
    n, p = g.X.shape
    w, theta, sigma2 = rng.normal(size=n), rng.normal(size=p), 0.6
    for k in range(len(design.terms)):
        q, Zk = int(g.qs[k]), dense_effects(g, k)
        S = np.zeros(g.starts[-1])
        S[g.starts[k]:g.starts[k + 1]] = Zk.T @ w
        x = np.zeros(g.n_population)
        x[:p] = theta
        m = np.zeros(Zk.shape[1])
        level_residuals(x, k, S, g.G, g.g_at, g.qs, g.starts, p, m)
        m2 = np.zeros(g.group_a.size)
        if q == 1:
            np.add.at(m2, g.groups[g.starts[k]:g.starts[k + 1]], m ** 2)
        values, dense = [], []
        for Sigma in (covariance_of_effects(q, rng), covariance_of_effects(q, rng)):
            C = np.linalg.cholesky(Sigma)
            sd = np.ones(g.Z.shape[1])
            R = np.eye(g.Z.shape[1])
            col = int(g.cols[k])
            sd[col:col + q] = np.sqrt(np.diag(Sigma))
            R[col:col + q, col:col + q] = C / sd[col:col + q, None]
            values.append(term_marginal(k, sigma2, sd, R, m, g.A, g.a_at, g.qs, g.cols, g.starts, g.group_a, g.group_n,
                                        m2, g.group_at))
            V = sigma2 * np.eye(n) + Zk @ np.kron(np.eye(Zk.shape[1] // q), Sigma) @ Zk.T
            dense.append(stats.multivariate_normal(np.zeros(n), V).logpdf(w - g.X @ theta))
        assert values[1] - values[0] == pytest.approx(dense[1] - dense[0], rel=1e-9, abs=1e-9), k


def test_the_slice_sampler_leaves_the_conditional_of_log_sigma_invariant():
    """20,000 updates of log σ, whose density is its prior (scipy's half-normal) with the Jacobian
    times σ^-n exp(-rss/(2σ²)): the mean and the 10 % and 90 % quantiles within 4 standard errors
    (batch means) of the values by quadrature."""
    formula, kind = FORMULAS["crossed"]
    design = bm.make_design(formula, simulated(kind))
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, [bm.prior("sigma", bm.HalfNormal(2.0))])
    g = gibbs_sampler(design, priors, labels, layouts, coords(design, layouts))
    n, rss = 40, 30.0
    t = np.linspace(-6, 6, 200_001)
    log_density = stats.halfnorm(scale=2.0).logpdf(np.exp(t)) + t - n * t - rss * np.exp(-2 * t) / 2
    density = np.exp(log_density - log_density.max())
    cdf = np.cumsum(density) / density.sum()
    exact_mean, exact_quantiles = np.sum(t * density) / density.sum(), np.interp([0.1, 0.9], cdf, t)
    rng = np.random.default_rng(11)
    x = g._start(0)[0]
    work, none = np.empty_like(x), np.zeros(0)
    draws = np.empty(20_000)
    for i in range(draws.size):
        slice_update(g.sigma_at, x, work, g.blob, -1, 0.0, n, rss, none, g.A, g.a_at, g.qs, g.cols, g.starts, g.group_a,
                     g.group_n, none, g.group_at, rng)
        draws[i] = x[g.sigma_at]
    batches = draws.reshape(40, -1)
    assert abs(draws.mean() - exact_mean) <= 4 * batches.mean(axis=1).std(ddof=1) / np.sqrt(40)
    for q, exact in zip([0.1, 0.9], exact_quantiles):
        per_batch = np.quantile(batches, q, axis=1)
        assert abs(np.quantile(draws, q) - exact) <= 4 * per_batch.std(ddof=1) / np.sqrt(40) + 1e-3, q


@pytest.mark.slow
@pytest.mark.parametrize("case", list(FORMULAS))
def test_the_posterior_agrees_with_the_collapsed_nuts_sampler(case):
    """Means within 4 combined MCSE and SDs within 10 % for every parameter and random effect,
    against the collapsed sampler (every factor integrated out, NUTS on the rest)."""
    formula, kind = FORMULAS[case]
    design = bm.make_design(formula, simulated(kind))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gibbs = BayesModel(design, method="gibbs").sample(seed=1, progressbar=False)
        nuts = BayesModel(design, method="collapsed").sample(seed=2, progressbar=False)
    assert gibbs.diagnostics()["max_rhat"] < 1.01 and gibbs.diagnostics()["min_ess_bulk"] > 400
    assert_posteriors_agree(gibbs, nuts)


def test_the_same_seed_repeats_the_draws_and_a_replacement_response_reuses_the_model():
    design = bm.make_design(*FORMULAS["crossed"][:1], simulated("crossed"))
    model = BayesModel(design, method="gibbs")
    assert_a_replacement_response_repeats(model, design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = model.sample(draws=20, tune=20, chains=2, seed=5, progressbar=False)
        b = model.sample(draws=20, tune=20, chains=2, seed=6, progressbar=False)
    chains = a.posterior["sigma"].values
    assert not np.array_equal(chains[0], chains[1])  # the chains are not copies of each other
    assert not a.posterior["sigma"].equals(b.posterior["sigma"])


def test_the_result_reports_the_method_and_checks_convergence_without_nuts_statistics():
    design = bm.make_design(*FORMULAS["crossed"][:1], simulated("crossed"))
    model = BayesModel(design, method="gibbs")
    assert model.method == "gibbs" and "collapsed Gibbs" in model.description and "gibbs" in repr(model)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)  # a converged run warns about nothing
        post = model.sample(seed=3, progressbar=False)
    d = post.diagnostics()
    assert d["divergences"] == 0 and d["treedepth_hits"] == 0 and d["max_rhat"] < 1.01
    assert "collapsed Gibbs" in post.method
    assert set(post.posterior.data_vars) == {"beta", "sigma", "sd_a", "sd_b", "u_a", "u_b"}
    with pytest.warns(ConvergenceWarning, match="ESS|R-hat"):
        model.sample(draws=20, tune=20, chains=2, seed=3, progressbar=False)


@pytest.mark.parametrize("formula, family, priors, data_change, message", [
    ("y ~ x + (1 | a) + (1 | b)", "poisson", None, None, "Gaussian family"),
    ("y ~ x + (1 | a) + (1 | b)", "gaussian", [bm.prior("b", bm.StudentT(3, 0, 1))], None, "Normal or flat"),
    ("y ~ x + (1 | a) + (1 | b)", "gaussian", None, "weights", "weights"),
])
def test_what_it_cannot_sample_is_refused_with_the_alternative(formula, family, priors, data_change, message):
    data = simulated("crossed")
    if family == "poisson":
        data = data.assign(y=np.round(np.exp(data["y"] / 4)))
    kwargs = {"weights": "w"} if data_change == "weights" else {}
    if data_change == "weights":
        data = data.assign(w=1.0 + np.arange(len(data)) % 3)
    design = bm.make_design(formula, data, family=family, **kwargs)
    with pytest.raises(ArgumentError, match=message):
        BayesModel(design, priors, method="gibbs")


def test_sampler_pymc_is_refused():
    design = bm.make_design(*FORMULAS["crossed"][:1], simulated("crossed"))
    with pytest.raises(ArgumentError, match="its own sampler"):
        BayesModel(design, method="gibbs").sample(sampler="pymc", draws=10, tune=10)


@pytest.mark.parametrize("case", list(FORMULAS))
def test_the_residuals_carried_from_term_to_term_stay_those_of_the_state(case):
    """After sweeps (the fused passes, the shifts of nested effects), w is the residual without the
    last term's effects and without X̃θ_b, recomputed from the state: what the next sweep's σ
    and first term read."""
    design, g = sampler(case)
    x, u, w = g._start(4)
    none = np.empty((0, x.size)), np.empty((0, u.size))
    assert g._run(x, u, w, 7, 7, np.random.default_rng(2), *none) == 7
    fitted = sum(dense_effects(g, k) @ u[g.starts[k]:g.starts[k + 1]] for k in range(len(design.terms) - 1))
    np.testing.assert_allclose(w, g.y - fitted, rtol=1e-12, atol=1e-12)
    assert (g.pairs.shape[0] > 0) == (case in TRANSLATED)


def test_ctrl_c_stops_every_chain(monkeypatch):
    """A KeyboardInterrupt while waiting for the chains (here: once they have begun) stops them at
    their next chunk of sweeps, far short of the draws asked for, and reaches the caller."""
    from bayesmix.bayes import gibbs

    seen = []

    def interrupted(futures, done, total, progressbar):
        while sum(done) == 0:
            time.sleep(0.001)
        seen.append((done, total))
        raise KeyboardInterrupt

    design = bm.make_design(*FORMULAS["crossed"][:1], simulated("crossed"))
    model = BayesModel(design, method="gibbs")
    monkeypatch.setattr(gibbs, "_follow", interrupted)
    with pytest.raises(KeyboardInterrupt):
        model.sample(draws=200_000, tune=10, chains=2, progressbar=False)
    (done, total), = seen
    assert 0 < sum(done) <= 20 * gibbs.CHUNK < total  # the pool has joined: every chain has stopped
