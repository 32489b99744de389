"""The collapsed Gibbs sampler (``method="gibbs"``): its block draw against the exact Gaussian
conditional, its slice sampler against a known density, its posterior against the collapsed
NUTS sampler's on crossed and nested designs, and what it refuses."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes import ArgumentError, BayesModel
from bayesmix.bayes.density import FAMILIES
from bayesmix.bayes.gibbs import draw_fixed_effects, draw_term_effects, level_residuals, slice_log_scale

from .test_collapsed_factors import assert_a_replacement_response_repeats, assert_posteriors_agree, simulated

FORMULAS = {
    "crossed": ("y ~ x + (1 | a) + (1 | b)", "crossed"),
    "nested": ("y ~ x + (1 | a) + (1 | a:b)", "nested"),
    "crossed, an uncorrelated slope": ("y ~ x + (1 | a) + (0 + x | a) + (1 | b)", "crossed"),
}


def sampler(case: str):
    formula, kind = FORMULAS[case]
    design = bm.make_design(formula, simulated(kind))
    return design, BayesModel(design, method="gibbs")._sampler._compiled


@pytest.mark.parametrize("case", list(FORMULAS))
@pytest.mark.parametrize("k", [0, 1])
def test_the_block_draw_is_the_exact_conditional_of_the_fixed_and_one_terms_effects(case, k):
    """(θ_b, u_k) given the residuals w without term k and without X̃θ_b, σ and τ_k: the draw at
    zero normals is the conditional mean, and its derivative J in the normals gives J J' = the
    conditional covariance, both from the dense precision of the joint Gaussian."""
    design, g = sampler(case)
    rng = np.random.default_rng(3)
    n, p = g.X.shape
    w = rng.normal(size=n)
    sigma2, tau2 = 0.7, 1.3
    levels = slice(g.starts[k], g.starts[k + 1])
    L = g.starts[k + 1] - g.starts[k]
    Zk = np.zeros((n, L))
    Zk[np.arange(n), g.codes[:, k]] = g.Z[:, k]
    precision = np.block([[g.X.T @ g.X / sigma2 + np.diag(g.precision), g.X.T @ Zk / sigma2],
                          [Zk.T @ g.X / sigma2, Zk.T @ Zk / sigma2 + np.eye(L) / tau2]])
    covariance = np.linalg.inv(precision)
    mean = covariance @ np.concatenate([g.X.T @ w / sigma2 + g.shift, Zk.T @ w / sigma2])
    S = np.zeros(g.a.size)
    S[levels] = Zk.T @ w

    def draw(eps):  # steps 1 and 3 of the sweep at the same τ_k
        x, u, m = np.zeros(p + 1 + len(design.terms)), np.zeros(g.a.size), np.zeros(L)
        assert draw_fixed_effects(x, k, S, g.X.T @ w, sigma2, tau2, g.starts, g.a, g.g, g.XX, g.precision, g.shift,
                                  eps[:p].copy())
        level_residuals(x, k, S, g.starts, g.g, m)
        draw_term_effects(u, k, m, sigma2, tau2, g.starts, g.a, eps[p:].copy())
        return np.concatenate([x[:p], u[levels]])

    at_zero = draw(np.zeros(p + L))
    np.testing.assert_allclose(at_zero, mean, rtol=1e-9, atol=1e-12)
    J = np.column_stack([draw(np.eye(p + L)[i]) - at_zero for i in range(p + L)])
    np.testing.assert_allclose(J @ J.T, covariance, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize("prior, count, ss", [
    (("HalfNormal", 2.0), 40, 30.0),  # a residual SD: many rows
    (("HalfStudentT", 3.0, 1.0), 6, 0.4),  # an SD with few levels: the prior's tail matters
])
def test_the_slice_sampler_leaves_the_conditional_of_a_log_scale_invariant(prior, count, ss):
    """20,000 updates of log v, whose density is the prior of v (scipy's) with its Jacobian times
    v^-count exp(-ss/(2v²)): the mean and the 10 % and 90 % quantiles of log v within 4 standard
    errors (batch means) of the values by quadrature."""
    name, *parameters = prior
    spec = np.zeros(4)
    spec[0], spec[1:1 + len(parameters)] = FAMILIES[name], parameters
    scipy_prior = (stats.halfnorm(scale=parameters[0]) if name == "HalfNormal"
                   else stats.t(df=parameters[0], scale=parameters[1]))  # on v > 0: the half-t up to a constant
    t = np.linspace(-8, 6, 200_001)
    v = np.exp(t)
    log_density = scipy_prior.logpdf(v) + t - count * t - ss / (2 * v * v)
    density = np.exp(log_density - log_density.max())
    cdf = np.cumsum(density)
    cdf /= cdf[-1]
    exact_mean = np.sum(t * density) / np.sum(density)
    exact_quantiles = np.interp([0.1, 0.9], cdf, t)
    rng = np.random.default_rng(11)
    draws = np.empty(20_000)
    value, none = 0.0, np.zeros(0)
    for i in range(draws.size):
        value = slice_log_scale(value, spec, 1.0, count, ss, none, none, none, rng)
        draws[i] = value
    batches = draws.reshape(40, -1)
    se_mean = batches.mean(axis=1).std(ddof=1) / np.sqrt(40)
    assert abs(draws.mean() - exact_mean) <= 4 * se_mean
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
    ("y ~ x + (x | a) + (1 | b)", "gaussian", None, None, r"\(Intercept \+ x \| a\) has correlated columns"),
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
    fitted = sum(g.Z[:, k] * u[g.starts[k] + g.codes[:, k]] for k in range(len(design.terms) - 1))
    np.testing.assert_allclose(w, g.y - fitted, rtol=1e-12, atol=1e-12)
    assert (g.pairs.shape[0] > 0) == (case == "nested")
