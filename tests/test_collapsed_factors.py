"""The collapsed sampler for several grouping factors (crossed, nested): the log density against
the exact marginal (dense multivariate-normal algebra), its gradient against finite differences,
the effect draws against the exact conditional, and the posterior against the full sampler's."""

from __future__ import annotations

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.linalg import block_diag

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes import ArgumentError, BayesModel
from bayesmix.bayes.collapsed_factors import factors_density
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.crossprod import shifted_cross_products
from bayesmix.data.layout import coords, group_layouts, structure_of, term_labels
from bayesmix.linalg import factored
from bayesmix.linalg.collapsed import draw_factored_effects, factored_loglik
from bayesmix.linalg.factorization import factorize

from .test_reml_lme4 import DATA

CASES = {
    "crossed, correlated slopes": ("crossed", "y ~ x + (x | a) + (1 | b)"),
    "crossed, independent slopes": ("crossed", "y ~ x + (1 | a) + (x || b)"),
    "nested, correlated slopes": ("nested", "y ~ x + (x | school/class)"),
    "nested, two blocks on one factor": ("nested", "y ~ x + (1 | school) + (x | school:class) + (0 + x | school)"),
}
CUSTOM = [bm.prior("b", bm.StudentT(4, 0.5, 2.0)), bm.prior("Intercept", bm.Flat()), bm.prior("sd", bm.Exponential(1.5)),
          bm.prior("cor", bm.LKJ(1.5))]


def applicable(overrides, design):
    """The prior overrides without the correlations' when ``design`` has no correlated term."""
    if overrides and not any(term.correlated and term.q > 1 for term in design.terms):
        return [p for p in overrides if p.cls != "cor"]
    return overrides


def build(case: str, overrides=None):
    source, formula = CASES[case]
    design = bm.make_design(formula, DATA[source]())
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, applicable(overrides, design))
    structure = structure_of(design)
    cp, shift = shifted_cross_products(design, structure)
    return design, factors_density(design, structure, cp, shift, priors, labels, layouts, coords(design, layouts))


def points(density, seed: int, count: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return [density.init(int(rng.integers(2**31))) * scale for _ in range(count)]


def dense_z(design):
    """Z (all terms' columns, term by term, level-major) and the per-term columns of C."""
    rows, blocks, col = design.rows, [], 0
    for k, term in enumerate(design.terms):
        Z = np.zeros((design.n, term.n_levels * term.q))
        for i in range(term.q):
            Z[np.arange(design.n), rows.codes[k] * term.q + i] = rows.z[k][:, i]
        blocks.append((Z, term.n_levels, slice(col, col + term.q)))
        col += term.q
    return blocks


def dense_marginal(design, beta, C, sigma) -> float:
    """log N(y; Xβ, Z G Z' + σ² I) by dense algebra."""
    blocks = dense_z(design)
    Z = np.hstack([Zt for Zt, _, _ in blocks])
    G = block_diag(*[np.kron(np.eye(levels), C[cols, cols] @ C[cols, cols].T) for _, levels, cols in blocks])
    V = Z @ G @ Z.T + sigma**2 * np.eye(design.n)
    return stats.multivariate_normal(design.rows.X @ beta, V).logpdf(design.rows.y)


@pytest.mark.parametrize("overrides", [None, CUSTOM], ids=["default priors", "custom priors"])
@pytest.mark.parametrize("case", list(CASES))
def test_density_is_the_exact_marginal_and_its_gradient_the_finite_differences(case, overrides):
    design, density = build(case, overrides)
    assert not density.cross_products.single_factor
    for x in points(density, seed=3, count=2):
        logp, grad = density.log_density(x)
        beta, sigma, sd, R, _, lp, _ = density.parameters(x)
        assert logp - lp == pytest.approx(dense_marginal(design, beta, sd[:, None] * R, sigma), rel=1e-11)
        h = 1e-3  # five-point stencil: truncation of order h⁴
        f = lambda z: density.log_density(z)[0]  # noqa: E731
        fd = [(f(x - 2 * h * e) - 8 * f(x - h * e) + 8 * f(x + h * e) - f(x + 2 * h * e)) / (12 * h) for e in np.eye(x.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("case", list(CASES))
def test_compiled_evaluation_is_the_blocked_algebra(case):
    """bayesmix.linalg.factored (one compiled call) against factored_loglik (numpy and scipy
    around the blocked factor) to rounding, and its effect draw against draw_factored_effects
    with the same normals."""
    _, density = build(case)
    model = factored.FactoredModel.of(density.structure, density.cross_products)
    routines = factored.lapack_routines()
    for x in points(density, seed=5, count=2):
        beta, sigma, _, _, theta_c, _, _ = density.parameters(x)
        value, d_beta, d_theta, d_sigma, f = factored_loglik(density.structure, density.cross_products,
                                                             beta - density.shift, theta_c, sigma)
        got = factored.evaluate(theta_c, beta - density.shift, sigma, model.n, model.data, model.layout, routines)
        assert got[0] == pytest.approx(value, rel=1e-13)
        np.testing.assert_allclose(got[1], d_beta, rtol=1e-11, atol=1e-12 * np.abs(d_beta).max())
        np.testing.assert_allclose(got[2], d_theta, rtol=1e-11, atol=1e-12 * np.abs(d_theta).max())
        assert got[3] == pytest.approx(d_sigma, rel=1e-11)
        eps = [np.random.default_rng(1).standard_normal(s) for s in (f.W.shape[:2], f.V2.shape[0])]
        u1, u2 = draw_factored_effects(f, beta - density.shift, sigma, FixedNormals([e.copy() for e in eps]))
        u = factored.draw_effects(model.data, model.layout, routines, got[4], beta - density.shift, sigma, *eps)
        np.testing.assert_allclose(u, np.concatenate([u1.ravel(), u2]), rtol=1e-10, atol=1e-12)


def test_a_draw_reuses_the_factor_of_the_last_evaluation_at_its_theta():
    """The effects drawn with the kept factor (the density evaluated at the draw's θ just
    before) equal those drawn with a new factorisation, for the same normals."""
    _, density = build("crossed, correlated slopes")
    x, other = points(density, seed=6, count=2)
    density.log_density(x)
    _, sigma, _, _, theta_c, _, _ = density.parameters(x)
    np.testing.assert_array_equal(density._last.factor[0], theta_c / sigma)  # kept, at x's θ
    kept = density.draw(x, np.random.default_rng(3))
    density.log_density(other)  # the kept factor is now at another θ: the draw factors again
    fresh = density.draw(x, np.random.default_rng(3))
    for name in kept:
        np.testing.assert_allclose(kept[name], fresh[name], rtol=1e-12, atol=1e-14)


class FixedNormals:
    """A stand-in for a Generator whose standard normals are given."""

    def __init__(self, values):
        self.values = list(values)

    def standard_normal(self, shape):
        return self.values.pop(0).reshape(shape)


def dense_factor_layout(structure, theta):
    """Z and Λ with the columns as the factorisation orders them (the first block level by
    level, then the other blocks factor by factor, level-major)."""
    Zs, lams = [], []
    for block in structure.blocks:
        Z = np.zeros((len(block.codes), block.n_levels * block.q))
        for j in range(block.q):
            Z[np.arange(len(block.codes)), block.codes * block.q + j] = block.z[:, j]
        Zs.append(Z)
        lams.append(np.kron(np.eye(block.n_levels), block.lambda_(theta)))
    return np.hstack(Zs), block_diag(*lams)


@pytest.mark.parametrize("case", list(CASES))
def test_effect_draws_are_the_exact_conditional(case, rng):
    """u = û + σ L_Z'⁻¹ ε: with ε = 0, û = M⁻¹Λ'Z'(y - Xβ) and b = Λû = G Z' V⁻¹ (y - Xβ) (dense
    algebra, M = Λ'Z'ZΛ + I, G = σ²ΛΛ', V = ZGZ' + σ²I); for any ε, L_Z'(u - û) / σ = ε with
    L_Z the dense Cholesky factor of M (so u - û ~ N(0, σ²M⁻¹))."""
    design, density = build(case)
    structure, cp = density.structure, density.cross_products
    beta, sigma, _, _, theta_c, _, _ = density.parameters(points(density, seed=7, count=1)[0])
    f = factorize(structure, cp, theta_c / sigma)
    shapes = [(structure.blocks[0].n_levels, structure.blocks[0].q), (f.L22.shape[0],)]
    u1, u2 = draw_factored_effects(f, beta - density.shift, sigma, FixedNormals([np.zeros(s) for s in shapes]))
    u_hat = np.concatenate([u1.ravel(), u2])
    Z, lam = dense_factor_layout(structure, f.theta)
    M = lam.T @ Z.T @ Z @ lam + np.eye(len(u_hat))
    r = design.rows.y - design.rows.X @ beta
    np.testing.assert_allclose(u_hat, np.linalg.solve(M, lam.T @ Z.T @ r), rtol=1e-9, atol=1e-12)
    G = sigma**2 * lam @ lam.T
    b = G @ Z.T @ np.linalg.solve(Z @ G @ Z.T + sigma**2 * np.eye(design.n), r)
    np.testing.assert_allclose(lam @ u_hat, b, rtol=1e-8, atol=1e-10)
    L = np.linalg.cholesky(M)
    for _ in range(3):
        eps = [rng.standard_normal(s) for s in shapes]
        v1, v2 = draw_factored_effects(f, beta - density.shift, sigma, FixedNormals([e.copy() for e in eps]))
        step = np.concatenate([v1.ravel(), v2]) - u_hat
        np.testing.assert_allclose(L.T @ step / sigma, np.concatenate([e.ravel() for e in eps]), rtol=1e-9, atol=1e-10)


def test_posterior_variables_are_the_full_models():
    """The expansion reports the full model's variables (u_<group> = b = Λu per factor, in the
    full model's layout) and the population parameters at the draw."""
    design, density = build("nested, two blocks on one factor")
    assert {v.name for v in density.variables} == {
        "beta", "sigma", "sd_school", "u_school", "sd_school_class", "cor_school_class", "u_school_class"
    }
    x = points(density, seed=9, count=1)[0]
    draws = density.draw(x, np.random.default_rng(1))
    levels = {t.group: t.n_levels for t in design.terms}
    assert draws["u_school"].shape == (levels["school"], 2)
    assert draws["u_school_class"].shape == (levels["school:class"], 2)
    beta, sigma, _, _, _, _, _ = density.parameters(x)
    np.testing.assert_allclose(draws["beta"], beta, rtol=1e-15)
    assert draws["sigma"] == pytest.approx(sigma, rel=1e-15)


def test_method_choice():
    crossed = bm.make_design(CASES["crossed, correlated slopes"][1], DATA["crossed"]())
    assert BayesModel(crossed).method == "gibbs" and BayesModel(crossed).precompiled  # bayesmix.bayes.gibbs
    collapsed = BayesModel(crossed, method="collapsed")
    assert collapsed.method == "collapsed" and collapsed.precompiled
    assert BayesModel(crossed, priors=[bm.prior("b", bm.StudentT(3, 0, 1))]).method == "collapsed"  # not Gibbs's
    assert BayesModel(crossed, method="full").method == "full"
    not_native = [bm.prior("b", bm.HalfNormal(3.0), coef="x")]
    assert BayesModel(crossed, not_native).method == "full"
    with pytest.raises(ArgumentError, match="several grouping factors.*'a', 'b'.*native form.*method='full'"):
        BayesModel(crossed, not_native, method="collapsed")
    with pytest.raises(ArgumentError, match="nutpie only"):
        BayesModel(crossed, method="collapsed").sample(sampler="pymc", draws=10, tune=10, chains=1)


def test_auto_samples_the_full_model_with_pymc():
    """The collapsed samplers for several factors (Gibbs, the collapsed density) are bayesmix's own
    or nutpie's: with sampler="pymc", method="auto" samples the full PyMC model instead."""
    crossed = bm.make_design(CASES["crossed, independent slopes"][1], DATA["crossed"]())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        post = BayesModel(crossed).sample(sampler="pymc", draws=20, tune=20, chains=1, seed=1, progressbar=False)
    assert post.method.startswith("full") and post.posterior["u_b"].shape[-1] == 2


def simulated(kind: str, seed: int = 15) -> pd.DataFrame:
    """Crossed: 25 x 12 levels, about 3 rows per cell at random; nested: 12 schools x 4 classes,
    8-20 pupils per class; a random intercept and slope on the first factor (correlated)."""
    rng = np.random.default_rng(seed)
    if kind == "crossed":
        n = 900
        a, b = rng.integers(0, 25, n), rng.integers(0, 12, n)
    else:
        sizes = rng.integers(8, 21, 48)
        cls = np.repeat(np.arange(48), sizes)
        a, b = cls // 4, cls
        n = cls.size
    x = rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.36]], size=a.max() + 1)
    ub = rng.normal(0, 0.7, b.max() + 1)
    y = 1 + 0.5 * x + ua[a, 0] + ua[a, 1] * x + ub[b] + rng.normal(0, 0.8, n)
    return pd.DataFrame({"y": y, "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})


SIMULATED = {
    "crossed": ("y ~ x + (x | a) + (1 | b)", "crossed"),
    "nested": ("y ~ x + (x | a) + (1 | a:b)", "nested"),
}


@pytest.fixture(scope="module")
def posteriors():
    """Full and collapsed posteriors of the simulated crossed and nested designs (4 x 2000 draws after 1000 tuning steps)."""
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for name, (formula, kind) in SIMULATED.items():
            design = bm.make_design(formula, simulated(kind))
            settings = dict(draws=2000, tune=1000, chains=4, progressbar=False)
            full = BayesModel(design, method="full").sample(seed=11, **settings)
            collapsed = BayesModel(design, method="collapsed").sample(seed=12, **settings)
            out[name] = (full, collapsed)
    return out


@pytest.mark.slow  # four posteriors of 4 x 2000 draws
@pytest.mark.parametrize("name", list(SIMULATED))
def test_collapsed_and_full_posteriors_agree(posteriors, name):
    """Means within 4 combined MCSE and SDs within 10 % for every parameter and random effect."""
    full, collapsed = posteriors[name]
    assert collapsed.method.startswith("collapsed") and full.method.startswith("full")
    assert collapsed.diagnostics()["divergences"] == 0
    assert_posteriors_agree(full, collapsed)


def assert_posteriors_agree(full, collapsed):
    """Means within 4 combined MCSE and SDs within 10 % for every parameter and random effect
    of two posteriors of the same model (two random-effects variables)."""
    a, b = full.summary(), collapsed.summary()
    combined = np.sqrt(a["mcse_mean"] ** 2 + b["mcse_mean"] ** 2)
    assert ((a["mean"] - b["mean"]).abs() <= 4 * combined).all(), pd.concat([a["mean"], b["mean"], combined], axis=1)
    assert ((a["sd"] / b["sd"] - 1).abs() <= 0.10).all(), pd.concat([a["sd"], b["sd"]], axis=1)
    effects = [v for v in full.posterior.data_vars if str(v).startswith("u_")]
    assert effects == [v for v in collapsed.posterior.data_vars if str(v).startswith("u_")] and len(effects) == 2
    for var in effects:
        f, c = full.posterior[var], collapsed.posterior[var]
        assert f.dims == c.dims and (f.coords[f.dims[2]].values == c.coords[c.dims[2]].values).all()
        mcse = np.sqrt(az.mcse(f).values ** 2 + az.mcse(c).values ** 2)
        diff = np.abs(f.mean(("chain", "draw")).values - c.mean(("chain", "draw")).values)
        assert (diff <= 4 * mcse).all(), var
        ratio = f.std(("chain", "draw")).values / c.std(("chain", "draw")).values
        assert (np.abs(ratio - 1) <= 0.10).all(), var


def test_a_replacement_response_reuses_the_model_and_repeats_with_the_seed():
    """sample(y=...) recomputes the cross-products only; the same response and seed give the same draws."""
    design = bm.make_design(CASES["crossed, independent slopes"][1], DATA["crossed"]())
    assert_a_replacement_response_repeats(BayesModel(design, method="collapsed"), design)


def assert_a_replacement_response_repeats(model, design):
    """The same response and seed give the same draws; another response other draws."""
    settings = dict(draws=30, tune=30, chains=2, seed=5, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        a = model.sample(**settings)
        b = model.sample(y=design.rows.y.copy(), **settings)
        c = model.sample(y=design.rows.y + 10.0, **settings)
    for var in ("beta", "sigma", "u_a", "u_b"):
        assert a.posterior[var].equals(b.posterior[var]), var
    assert not a.posterior["beta"].equals(c.posterior["beta"])
