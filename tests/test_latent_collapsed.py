"""The sampler collapsed onto the linear predictor (an observation-level effect, the other
factors' effects integrated out): its density against the dense joint density (the family's
log-likelihood plus log N(η; Xβ + offset, V) with V built entry by entry), its gradient against
finite differences, the exact draws of the effects against the dense Gaussian conditional, which
designs it takes, and its posterior against the full sampler's on grouseticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats as st

import bayesmix as bm
from bayesmix.bayes import latent_collapsed as lc
from bayesmix.bayes.density import population
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, term_labels
from bayesmix.errors import ArgumentError

from .test_full_density import FAMILIES, frame

STRUCTURES = {
    "observation only": "x + (1 | obs)",
    "one factor": "x + (1 | a) + (1 | obs)",
    "two nested": "x + xa + (1 | a) + (1 | a:c) + (1 | obs)",
}
LATENT_FAMILIES = [f for f in FAMILIES if not f.startswith("gaussian")]  # the Gaussian takes no observation-level effect
GROUSETICKS = Path(__file__).resolve().parents[2] / "shared" / "reference" / "glmm" / "grouseticks.csv"


def design_of(family_case: str, predictors: str):
    family, response, kwargs = FAMILIES[family_case]
    data = frame()
    kwargs = {k: data[v].to_numpy() if k == "weights" else np.log(data[v].to_numpy()) for k, v in kwargs.items()}
    return bm.make_design(f"{response} ~ {predictors}", data, family=family, **kwargs)


def density_of(design, priors=None):
    labels = term_labels(design)
    structure = lc.latent_structure(design)
    assert not isinstance(structure, str), structure
    return lc.latent_density(design, resolve_priors(design, labels, priors), labels,
                             coords(design, group_layouts(design)), structure)


def covariance(design, sd: np.ndarray) -> np.ndarray:
    """V = Σ_k sd_k² Z_k Z_k', entry by entry from the codes (the observation-level term's Z is I)."""
    rows = design.rows
    V = np.zeros((design.n, design.n))
    for k in range(len(design.terms)):
        V += sd[k] ** 2 * (rows.codes[k][:, None] == rows.codes[k][None, :])
    return V


def dense_log_density(design, blob, x) -> float:
    beta, dispersion, sd, _, lp, _ = population(x, blob)
    rows, n = design.rows, design.n
    eta = x[-n:]
    offset = 0.0 if rows.offset is None else rows.offset
    mu = design.family.inverse_link(eta)
    loglik = design.family.log_likelihood(rows.y, mu, None if np.isnan(dispersion) else np.array(dispersion), rows.weights)
    prior = st.multivariate_normal(rows.X @ beta + offset, covariance(design, sd)).logpdf(eta)
    return lp + float(np.sum(loglik)) + prior


@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("family_case", LATENT_FAMILIES)
def test_density_is_the_dense_joint_density(family_case, structure):
    design = design_of(family_case, STRUCTURES[structure])
    density = density_of(design)
    points = [density.init(seed) for seed in range(3)]
    ours = [lc.log_density(density.blob, x)[0] for x in points]
    dense = [dense_log_density(design, density.blob, x) for x in points]
    # up to a constant: the differences between points agree
    np.testing.assert_allclose(np.diff(ours), np.diff(dense), rtol=1e-10, atol=1e-8 * np.abs(dense).max())


@pytest.mark.parametrize("structure", list(STRUCTURES))
@pytest.mark.parametrize("family_case", LATENT_FAMILIES)
def test_gradient_matches_finite_differences(family_case, structure):
    design = design_of(family_case, STRUCTURES[structure])
    density = density_of(design)
    x = density.init(5)
    _, gradient = lc.log_density(density.blob, x)
    h = 1e-5
    numeric = np.array([(lc.log_density(density.blob, x + h * e)[0] - lc.log_density(density.blob, x - h * e)[0]) / (2 * h)
                        for e in np.eye(x.size)])
    np.testing.assert_allclose(gradient, numeric, rtol=1e-6, atol=1e-6 * (1 + np.abs(numeric).max()))


def test_custom_priors_enter_the_density():
    design = design_of("poisson", STRUCTURES["two nested"])
    priors = [bm.prior("b", bm.StudentT(4, 0.5, 2.0)), bm.prior("Intercept", bm.Flat()), bm.prior("sd", bm.Exponential(1.5))]
    density = density_of(design, priors)
    points = [density.init(seed) for seed in range(2)]
    ours = [lc.log_density(density.blob, x)[0] for x in points]
    dense = [dense_log_density(design, density.blob, x) for x in points]
    np.testing.assert_allclose(np.diff(ours), np.diff(dense), rtol=1e-10)


def test_effects_are_drawn_from_their_exact_conditional():
    """With standard normals 0 the draw is the conditional mean; with unit vectors its columns
    are a square root of the conditional covariance: both against the dense Gaussian algebra
    (prior diag(v) for the factors' effects, e = Σ_k Z_k u_k + u_obs, Cov(e) = V)."""
    design = design_of("poisson", STRUCTURES["two nested"])
    density = density_of(design)
    structure, rows, n = density.structure, design.rows, design.n
    rng = np.random.default_rng(3)
    e = rng.normal(0.0, 1.2, n)
    sd = np.array([0.7, 0.4, 0.9])  # per term: a, a:c, obs
    levels = [design.terms[k].n_levels for k in structure.factors]
    Z = np.hstack([(rows.codes[k][:, None] == np.arange(design.terms[k].n_levels)).astype(float) for k in structure.factors])
    prior = np.concatenate([np.full(m, sd[k] ** 2) for k, m in zip(structure.factors, levels)])
    V = covariance(design, sd)
    gain = prior[:, None] * Z.T @ np.linalg.inv(V)
    mean, cov = gain @ e, np.diag(prior) - gain @ Z * prior[None, :]
    total = sum(levels)

    def draw(eps):
        return lc.draw_effects(e[None], sd[None], density.blob, structure.row_levels, eps[None])

    u0, rest0 = draw(np.zeros(total))
    np.testing.assert_allclose(u0[0], mean, atol=1e-12)
    np.testing.assert_allclose(rest0[0], e - Z @ u0[0], atol=1e-12)
    root = np.column_stack([draw(unit)[0][0] - u0[0] for unit in np.eye(total)])
    np.testing.assert_allclose(root @ root.T, cov, atol=1e-12)


@pytest.mark.parametrize(("formula", "phrase"), [
    ("count ~ x + (1 | a) + (1 | b) + (1 | obs)", "nested in one another"),
    ("count ~ x + (x | a) + (1 | obs)", "is not an intercept"),
    ("count ~ x + (1 | a)", "one level per row"),
])
def test_designs_it_does_not_take_say_why(formula, phrase):
    design = bm.make_design(formula, frame(), family=bm.Poisson())
    assert phrase in lc.latent_structure(design)
    with pytest.raises(ArgumentError, match="method='collapsed'"):
        bm.BayesModel(design, method="collapsed")


def test_gaussian_family_has_its_own_collapsed_sampler():
    design = bm.make_design("y ~ x + (1 | a) + (1 | a:c)", frame(), family=bm.Gaussian())
    assert "collapsed sampler of its own" in lc.latent_structure(design)


def test_auto_chooses_it_and_reports_it():
    design = design_of("poisson", STRUCTURES["two nested"])
    model = bm.BayesModel(design)
    assert model.method == "collapsed"
    assert "collapsed onto the linear predictor" in model.description
    assert bm.BayesModel(design, parameterization="centred").method == "full"  # a parameterisation is the full model's


@pytest.mark.filterwarnings("ignore::bayesmix.errors.ConvergenceWarning")  # 50 draws: the layout is what is checked
def test_posterior_variables_are_the_full_models():
    design = design_of("poisson", STRUCTURES["two nested"])
    post = bm.BayesModel(design).sample(seed=1, draws=50, tune=50, chains=2, progressbar=False)
    full = bm.BayesModel(design, method="full").sample(seed=1, draws=50, tune=50, chains=2, progressbar=False)
    assert list(post.posterior.data_vars) == list(full.posterior.data_vars)
    for name in post.posterior.data_vars:
        assert post.posterior[name].dims == full.posterior[name].dims
        for dim in post.posterior[name].dims[2:]:
            assert list(post.posterior[name][dim].values) == list(full.posterior[name][dim].values)
    again = bm.BayesModel(design).sample(seed=1, draws=50, tune=50, chains=2, progressbar=False)
    np.testing.assert_array_equal(post.posterior["u_a"].values, again.posterior["u_a"].values)


@pytest.mark.slow
def test_grouseticks_posterior_agrees_with_the_full_sampler():
    """Every parameter and random effect within 4 combined Monte Carlo SEs of a long full run,
    posterior SDs within 10 %; and the collapsed chains converge (R-hat <= 1.01, ESS >= 400)."""
    data = pd.read_csv(GROUSETICKS, dtype={"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})
    model = bm.Model("TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)", data, family="poisson")
    collapsed = model.sample(seed=11, draws=2000, progressbar=False)
    full = model.sample(seed=11, draws=3000, progressbar=False, method="full")
    assert "linear predictor" in collapsed.method
    diagnostics = collapsed.diagnostics()
    assert diagnostics["max_rhat"] <= 1.01 and diagnostics["min_ess_bulk"] >= 400 and diagnostics["divergences"] == 0
    a, b = collapsed.summary(), full.summary()
    z = (a["mean"] - b["mean"]) / np.hypot(a["mcse_mean"], b["mcse_mean"])
    assert z.abs().max() < 4.0
    np.testing.assert_allclose(a["sd"], b["sd"], rtol=0.1)
    for group in ("BROOD", "LOCATION", "INDEX"):
        x, y = collapsed.ranef_draws(group), full.ranef_draws(group)
        se = np.hypot(x.std(("chain", "draw")) / np.sqrt(1000), y.std(("chain", "draw")) / np.sqrt(1000))
        assert float((np.abs(x.mean(("chain", "draw")) - y.mean(("chain", "draw"))) / se).max()) < 4.5
