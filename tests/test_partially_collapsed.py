"""The partially collapsed sampler (the first grouping factor's effects integrated out, the
others sampled): its log density against the dense marginal, its gradient against finite
differences, the first factor's effect draws against the exact conditional, the choice of what
to collapse, and its posterior against the fully collapsed sampler's."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes import ArgumentError, BayesModel
from bayesmix.bayes.density import population
from bayesmix.bayes.full_density import N_DIM, log_density, named_variables
from bayesmix.bayes.parameterization import centring
from bayesmix.bayes.partially_collapsed import DENSE_BLOCK_LIMIT, collapse_choice, partially_collapsed_density
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, structure_of, term_labels

from .test_collapsed_factors import (CUSTOM, assert_a_replacement_response_repeats, assert_posteriors_agree, dense_z,
                                     simulated)
from .test_reml_lme4 import DATA

CASES = {
    "crossed, correlated slopes on both, noncentred": ("crossed", "y ~ x + (x | a) + (x | b)", "noncentred"),
    "crossed, correlated slopes on both, centred": ("crossed", "y ~ x + (x | a) + (x | b)", "centred"),
    "nested, two terms on the first factor": ("nested", "y ~ x + (1 | school:class) + (0 + x | school:class) + (x | school)",
                                              "centred"),
}


def build(case: str, overrides=None):
    source, formula, parameterization = CASES[case]
    design = bm.make_design(formula, DATA[source]())
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, overrides)
    structure = structure_of(design)
    density = partially_collapsed_density(design, structure, priors, labels, layouts, coords(design, layouts),
                                          centring(design, parameterization))
    return design, structure, density


def points(density, seed: int, count: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return [density.init(int(rng.integers(2**31))) * scale for _ in range(count)]


def with_first_at_zero(density, x):
    """The full model's coordinates at x, the first factor's 0 (its effects 0)."""
    x_full = np.zeros(int(density.blob[N_DIM]))
    x_full[density.kept] = x
    return x_full


def predictor_and_covariance(design, structure, density, x_full):
    """Xβ + Σ_{k≥2} Z_k b_k and σ²I + Z_1 G_1 Z_1' (dense), with σ and C at x_full."""
    variables = named_variables(density.blob, density.variables, x_full)
    beta, sigma, sd, R, _, _ = population(x_full, density.blob)
    C = sd[:, None] * R
    rows, first = design.rows, structure.blocks[0]
    eta = rows.X @ beta
    V = sigma**2 * np.eye(design.n)
    columns = {}
    for k, (term, (Z, levels, cols)) in enumerate(zip(design.terms, dense_z(design))):
        at = columns.setdefault(term.group, 0)
        columns[term.group] += term.q
        if k in first.terms:
            V += Z @ np.kron(np.eye(levels), C[cols, cols] @ C[cols, cols].T) @ Z.T
        else:
            b = variables[f"u_{term.group.replace(':', '_')}"][:, at:at + term.q]
            eta += np.einsum("ij,ij->i", rows.z[k], b[rows.codes[k]])
    return eta, V, sigma


@pytest.mark.parametrize("overrides", [None, CUSTOM], ids=["default priors", "custom priors"])
@pytest.mark.parametrize("case", list(CASES))
def test_density_is_the_dense_marginal_and_its_gradient_the_finite_differences(case, overrides):
    """log p(x) = log N(y | Xβ + Σ_{k≥2} Z_k b_k, σ²I + Z_1 G_1 Z_1') + the priors (those of the
    population and of the sampled effects: the full density at the same point with the first
    factor's effects 0, less its rows' likelihood)."""
    design, structure, density = build(case, overrides)
    for x in points(density, seed=3, count=3):
        x_full = with_first_at_zero(density, x)
        eta, V, sigma = predictor_and_covariance(design, structure, density, x_full)
        rows_loglik = float(np.sum(stats.norm(eta, sigma).logpdf(design.rows.y))) + 0.5 * design.n * np.log(2 * np.pi)
        priors = log_density(density.blob, x_full)[0] - rows_loglik  # the full density omits log √(2π) per row
        logp, grad = density.log_density(x)
        assert logp - priors == pytest.approx(stats.multivariate_normal(eta, V).logpdf(design.rows.y), rel=1e-10)
        h = 1e-3  # five-point stencil: truncation of order h⁴
        f = lambda z: density.log_density(z)[0]  # noqa: E731
        fd = [(f(x - 2 * h * e) - 8 * f(x - h * e) + 8 * f(x + h * e) - f(x + 2 * h * e)) / (12 * h) for e in np.eye(x.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


def test_first_factor_draws_are_the_exact_conditional():
    """With ε = 0 the first factor's effects are E[b_1 | y, rest] = G_1 Z_1' V⁻¹ r; the steps
    for ε = e_a (every level at once: levels are independent) are the columns of a factor K_j
    with K_j K_j' = the level's block of G_1 - G_1 Z_1' V⁻¹ Z_1 G_1 (dense algebra)."""
    design, structure, density = build("crossed, correlated slopes on both, noncentred")
    first = structure.blocks[0]
    (k,) = first.terms
    Z1, levels, cols = dense_z(design)[k]
    name = f"u_{first.group}"
    for x in points(density, seed=7, count=2):
        eta, V, sigma = predictor_and_covariance(design, structure, density, with_first_at_zero(density, x))
        _, _, sd, R, _, _ = population(with_first_at_zero(density, x), density.blob)
        C = (sd[:, None] * R)[cols, cols]
        G = np.kron(np.eye(levels), C @ C.T)
        r = design.rows.y - eta
        mean = (G @ Z1.T @ np.linalg.solve(V, r)).reshape(levels, first.q)
        cov = G - G @ Z1.T @ np.linalg.solve(V, Z1 @ G)
        eps = np.zeros((levels, first.q))
        drawn = named_variables(density.blob, density.variables, density.full_coordinates(x, eps))[name]
        np.testing.assert_allclose(drawn, mean, rtol=1e-9, atol=1e-12)
        K = np.empty((levels, first.q, first.q))
        for a in range(first.q):
            eps[:] = 0.0
            eps[:, a] = 1.0
            K[:, :, a] = named_variables(density.blob, density.variables, density.full_coordinates(x, eps))[name] - drawn
        for j in range(levels):
            block = slice(j * first.q, (j + 1) * first.q)
            np.testing.assert_allclose(K[j] @ K[j].T, cov[block, block], rtol=1e-8, atol=1e-12)


def test_what_collapse_integrates_out():
    """collapse="auto" integrates the first factor only when the dense block is large; the
    user's choice overrides it; the result says which ran."""
    crossed = bm.make_design(CASES["crossed, correlated slopes on both, noncentred"][1], DATA["crossed"]())
    structure = structure_of(crossed)
    assert structure.dense_block_size <= DENSE_BLOCK_LIMIT
    assert collapse_choice(crossed, structure) == "all" and BayesModel(crossed).collapse == "all"
    model = BayesModel(crossed, collapse="largest")
    assert model.method == "collapsed" and model.collapse == "largest" and model.precompiled
    assert model.description.startswith("collapsed over a (its random effects integrated out")
    assert "noncentred" in model.description or "centred" in model.description
    rng = np.random.default_rng(1)
    n = 4 * DENSE_BLOCK_LIMIT
    wide = bm.make_design("y ~ x + (1 | a) + (1 | b)", pd.DataFrame(
        {"y": rng.normal(size=n), "x": rng.normal(size=n), "a": np.arange(n) % (2 * DENSE_BLOCK_LIMIT),
         "b": np.arange(n) % (DENSE_BLOCK_LIMIT + 1)}))
    assert BayesModel(wide, method="collapsed").collapse == "largest" and BayesModel(wide, method="full").collapse is None
    assert BayesModel(wide).method == "full"  # method="auto": the full sampler, measured faster for such designs
    with pytest.warns(bm.BayesmixWarning, match=r"dense block of 1001 x 1001 .*collapse='largest'.*method='full'"):
        assert BayesModel(wide, collapse="all").collapse == "all"
    with pytest.raises(ArgumentError, match="collapse must be one of auto, all, largest, not 'first'"):
        BayesModel(crossed, collapse="first")
    with pytest.raises(ArgumentError, match="collapse='largest'.*method='full'.*drop collapse="):
        BayesModel(crossed, method="full", collapse="largest")


def test_a_replacement_response_reuses_the_model_and_repeats_with_the_seed():
    """sample(y=...) replaces the sorted rows' response; the same response and seed give the same draws."""
    design = bm.make_design(CASES["crossed, correlated slopes on both, noncentred"][1], DATA["crossed"]())
    assert_a_replacement_response_repeats(BayesModel(design, collapse="largest"), design)


@pytest.mark.slow  # two posteriors of 4 x 2000 draws
def test_partially_and_fully_collapsed_posteriors_agree():
    """On the simulated crossed design (25 x 12 levels, correlated slopes on the first factor):
    means within 4 combined MCSE and SDs within 10 % for every parameter and random effect."""
    design = bm.make_design("y ~ x + (x | a) + (1 | b)", simulated("crossed"))
    settings = dict(draws=2000, tune=1000, chains=4, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        everything = BayesModel(design, collapse="all").sample(seed=21, **settings)
        largest = BayesModel(design, collapse="largest").sample(seed=22, **settings)
    assert largest.method.startswith("collapsed over a") and everything.method.startswith("collapsed (")
    assert largest.diagnostics()["divergences"] == 0
    assert_posteriors_agree(everything, largest)


def test_a_dense_block_beyond_memory_is_refused_and_dask_input_is_told_its_options(monkeypatch):
    """The fully collapsed density holds its dense block, factor and inverse: a FitError when
    they would not fit in memory; with dask input (only that density applies) the messages say
    what else there is."""
    import dask.dataframe as dd

    from bayesmix.bayes import partially_collapsed

    n = 4 * DENSE_BLOCK_LIMIT
    frame = pd.DataFrame({"y": np.random.default_rng(2).normal(size=n), "a": np.arange(n) % (2 * DENSE_BLOCK_LIMIT),
                          "b": np.arange(n) % (DENSE_BLOCK_LIMIT + 1)})
    wide = bm.make_design("y ~ 1 + (1 | a) + (1 | b)", frame)
    monkeypatch.setattr(partially_collapsed, "available_memory", lambda: 2.0**20)
    with pytest.raises(bm.FitError, match=r"1001 x 1001 in every evaluation \(23 MiB for it, its factor and its inverse\), more than this machine's 1 MiB"):
        BayesModel(wide, collapse="all")
    assert BayesModel(wide, method="collapsed").collapse == "largest"  # collapse="auto" does not build that block
    monkeypatch.undo()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.MissingDataWarning)
        model = bm.Model("y ~ 1 + (1 | a) + (1 | b)", dd.from_pandas(frame, npartitions=2))
    with pytest.warns(bm.BayesmixWarning, match="fit_reml.*pandas DataFrame.*dask or Parquet"):
        assert model.bayes_model().collapse == "all"


def test_each_chain_draws_its_own_noise_and_repeats_it_with_the_seed():
    """nutpie hands every chain the same seeds (0, 0, 0): the effects' exact draws must still
    use a different stream per chain (seeded from its first draw) and the same stream again
    when a chain repeats (the same seed)."""
    _, _, density = build("crossed, correlated slopes on both, centred")
    x1, x2, x3 = points(density, seed=5, count=3)
    chains = [density.make_expand(0, 0, 0) for _ in range(3)]
    chains[0](x1), chains[1](x2), chains[2](x1)  # first draws: chains 0 and 2 start alike
    later = [expand(x3)["u_a"] for expand in chains]
    assert not np.allclose(later[0], later[1])
    np.testing.assert_array_equal(later[0], later[2])
