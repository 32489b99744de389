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
from bayesmix.bayes.full_density import N_DIM, Z_START, log_density, named_variables, term_levels
from bayesmix.bayes.parameterization import centring, hierarchy
from bayesmix.bayes.partially_collapsed import (DENSE_BLOCK_LIMIT, collapse_choice, contrast_rotation,
                                                partially_collapsed_density)
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, structure_of, term_labels

from .test_collapsed_factors import (CUSTOM, applicable, assert_a_replacement_response_repeats, assert_posteriors_agree, dense_z,
                                     simulated)
from .test_reml_lme4 import DATA

CASES = {
    "crossed, correlated slopes on both, noncentred": ("crossed", "y ~ x + (x | a) + (x | b)", "noncentred"),
    "crossed, correlated slopes on both, centred": ("crossed", "y ~ x + (x | a) + (x | b)", "centred"),
    "nested, two terms on the first factor": ("nested", "y ~ x + (1 | school:class) + (0 + x | school:class) + (x | school)",
                                              "centred"),
    "nested, centred on a sampled parent": ("nested with a pair factor", "y ~ x + (1 | pair) + (1 | school:class) + (1 | school)",
                                            "centred"),
    "crossed, a covariate constant within the sampled factor": ("crossed with a level covariate",
                                                                 "y ~ x + xb + (1 | a) + (x | b)", "centred"),
}
DATA = {**DATA, "nested with a pair factor": lambda: DATA["nested"]().pipe(lambda d: d.assign(pair=np.arange(len(d)) // 2)),
        "crossed with a level covariate": lambda: DATA["crossed"]().pipe(
            lambda d: d.assign(xb=np.cos(pd.factorize(d["b"])[0])))}


def build(case: str, overrides=None):
    source, formula, parameterization = CASES[case]
    design = bm.make_design(formula, DATA[source]())
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, applicable(overrides, design))
    structure = structure_of(design)
    density = partially_collapsed_density(design, structure, priors, labels, layouts, coords(design, layouts),
                                          centring(design, parameterization))
    return design, structure, density


def points(density, seed: int, count: int, scale: float = 0.5):
    rng = np.random.default_rng(seed)
    return [density.init(int(rng.integers(2**31))) * scale for _ in range(count)]


def with_first_at_zero(density, x, design=None):
    """The full model's coordinates at x, the first factor's 0 (its effects 0); for the terms
    centred by contrasts, the non-centred coordinates z, checked (given ``design``) against the
    effects' definition: Q (m C'; w) per level, Q orthogonal with its first k columns spanning
    the term's level-constant columns of X."""
    x_full = density.coordinates(x)
    if design is None:
        return x_full
    start = int(density.blob[Z_START])
    _, _, sd, R, _, _ = population(x_full, density.blob)
    found = hierarchy(design)
    held = np.zeros(int(density.blob[N_DIM]))
    held[density.kept] = x
    rotated = iter(density.rotated)
    for t, term in enumerate(design.terms):
        if not any(row[3] == term_levels(density.blob)[t, 1] for row in density.rotated):
            continue
        q, col, levels, at, k, offset = next(rotated)
        V = design.rows.X[found.first_rows[t]][:, found.constant[t]]
        Q = householder_product(density.reflectors[offset:], k, levels)
        np.testing.assert_allclose(Q.T @ Q, np.eye(levels), atol=1e-12)
        assert k == np.linalg.matrix_rank(V) and k >= 1  # the intercept at least
        np.testing.assert_allclose(Q[:, :k] @ (Q[:, :k].T @ V), V, atol=1e-10)
        C = (sd[:, None] * R)[col:col + q, col:col + q]
        mw = held[start + at:start + at + levels * q].reshape(levels, q)
        effects = Q @ np.vstack([mw[:k] @ C.T, mw[k:]])
        np.testing.assert_allclose(x_full[start + at:start + at + levels * q].reshape(levels, q) @ C.T, effects,
                                   rtol=1e-12, atol=1e-12)
    return x_full


def householder_product(reflectors, k: int, levels: int) -> np.ndarray:
    """H_1 ⋯ H_k, H_j = I - τ_j v_j v_j', from the first k reflections (τ_j, v_j) in ``reflectors``."""
    Q = np.eye(levels)
    for j in range(k):
        block = reflectors[j * (levels + 1):(j + 1) * (levels + 1)]
        Q = Q @ (np.eye(levels) - block[0] * np.outer(block[1:], block[1:]))
    return Q


def contrast_jacobian(density, x_full) -> float:
    """log|∂z/∂(m, w)| = -(ℓ - k) log|C| per term centred by contrasts."""
    _, _, sd, R, _, _ = population(x_full, density.blob)
    return sum(-(levels - k) * np.sum(np.log(sd[col:col + q] * np.diag(R)[col:col + q]))
               for q, col, levels, _, k, _ in density.rotated)


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


FLAT = [bm.prior("b", bm.Flat()), bm.prior("Intercept", bm.Flat())]
PRIORS = {"default priors": None, "custom priors": CUSTOM, "flat fixed effects": FLAT}


def test_what_is_integrated_and_what_is_centred_by_contrasts():
    """The fixed effects are integrated out when their priors are Normal or flat and no centred
    term is nested in a sampled factor; centred terms are then centred by contrasts, with as
    many non-centred directions as their level-constant columns of X have rank."""
    for case, overrides, integrated, rotated in [("crossed, correlated slopes on both, noncentred", None, True, []),
                                                 ("crossed, correlated slopes on both, noncentred", FLAT, True, []),
                                                 ("crossed, correlated slopes on both, noncentred", CUSTOM, False, []),
                                                 ("crossed, correlated slopes on both, centred", None, True, [1]),
                                                 ("crossed, correlated slopes on both, centred", CUSTOM, False, []),
                                                 ("nested, two terms on the first factor", None, True, [1]),
                                                 ("nested, centred on a sampled parent", None, False, []),
                                                 ("crossed, a covariate constant within the sampled factor", None, True,
                                                  [2])]:
        design, _, density = build(case, overrides)
        assert density.fixed_effects_integrated == integrated
        assert list(density.rotated[:, 4]) == rotated
        assert density.n_dim == int(density.blob[N_DIM]) - density.slots.size - integrated * len(design.fixed_names)
        if integrated:  # β = A θ_b, the population's map
            x_full = with_first_at_zero(density, points(density, seed=1, count=1)[0])
            x_full[:len(design.fixed_names)] = np.random.default_rng(2).normal(size=len(design.fixed_names))
            np.testing.assert_allclose(population(x_full, density.blob)[0],
                                       density.mix @ x_full[:len(design.fixed_names)], rtol=1e-14, atol=1e-14)


def integrated_marginal(design, density, eta, V) -> float:
    """With θ_b integrated out (prior precisions Λ, Λμ = ``shift``): the log of
    ∫ N(y | η + X̃θ, V) exp(-½(θ - μ)'Λ(θ - μ) + ½μ'Λμ) dθ less (p/2) log 2π (the density's
    constant), -½[n log 2π + log|V| + r'V⁻¹r - c'P⁻¹c + log|P|] with r = y - η,
    P = X̃'V⁻¹X̃ + Λ, c = X̃'V⁻¹r + Λμ; by dense algebra, flat priors (Λ = 0) included."""
    Xt = design.rows.X @ density.mix
    r = design.rows.y - eta
    Vinv_r, Vinv_X = np.linalg.solve(V, r), np.linalg.solve(V, Xt)
    P = Xt.T @ Vinv_X + np.diag(density.precision)
    c = Xt.T @ Vinv_r + density.shift
    return -0.5 * (design.n * np.log(2 * np.pi) + np.linalg.slogdet(V)[1] + r @ Vinv_r - c @ np.linalg.solve(P, c)
                   + np.linalg.slogdet(P)[1])


@pytest.mark.parametrize("overrides", list(PRIORS.values()), ids=list(PRIORS))
@pytest.mark.parametrize("case", list(CASES))
def test_density_is_the_dense_marginal_and_its_gradient_the_finite_differences(case, overrides):
    """log p(x) = log N(y | Xβ + Σ_{k≥2} Z_k b_k, σ²I + Z_1 G_1 Z_1') + the priors (those of the
    population and of the sampled effects: the full density at the same point with the first
    factor's effects 0, less its rows' likelihood); with the fixed effects integrated out too,
    :func:`integrated_marginal` (the priors then at θ_b = 0)."""
    design, structure, density = build(case, overrides)
    for x in points(density, seed=3, count=3):
        x_full = with_first_at_zero(density, x, design)
        eta, V, sigma = predictor_and_covariance(design, structure, density, x_full)
        rows_loglik = float(np.sum(stats.norm(eta, sigma).logpdf(design.rows.y))) + 0.5 * design.n * np.log(2 * np.pi)
        priors = log_density(density.blob, x_full)[0] - rows_loglik  # the full density omits log √(2π) per row
        priors += contrast_jacobian(density, x_full)
        logp, grad = density.log_density(x)
        expected = (integrated_marginal(design, density, eta, V) if density.fixed_effects_integrated
                    else stats.multivariate_normal(eta, V).logpdf(design.rows.y))
        assert logp - priors == pytest.approx(expected, rel=1e-10)
        h = 1e-3  # five-point stencil: truncation of order h⁴
        f = lambda z: density.log_density(z)[0]  # noqa: E731
        fd = [(f(x - 2 * h * e) - 8 * f(x - h * e) + 8 * f(x + h * e) - f(x + 2 * h * e)) / (12 * h) for e in np.eye(x.size)]
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("overrides", [None, CUSTOM], ids=["fixed effects integrated", "fixed effects sampled"])
def test_integrated_draws_are_the_exact_conditional(overrides):
    """The integrated coordinates w (θ_b when integrated, and the first factor's effects b_1)
    are drawn from their exact joint conditional, N(Σ (W'r/σ² + G_0⁻¹m_0), Σ) with
    Σ = (W'W/σ² + G_0⁻¹)⁻¹, W = [X̃ Z_1] (or Z_1), prior N(m_0, G_0) = N(μ, Λ⁻¹) x N(0, G_1), by
    dense algebra: with every standard normal 0 the draw is the mean, and the draw is linear in
    the normals with a Jacobian J such that J J' = Σ."""
    design, structure, density = build("crossed, correlated slopes on both, noncentred", overrides)
    first = structure.blocks[0]
    (k,) = first.terms
    Z1, levels, cols = dense_z(design)[k]
    name = f"u_{first.group}"
    pb = density.XX.shape[0]
    assert density.fixed_effects_integrated == (overrides is None)
    for x in points(density, seed=7, count=2):
        eta, V, sigma = predictor_and_covariance(design, structure, density, with_first_at_zero(density, x))
        _, _, sd, R, _, _ = population(with_first_at_zero(density, x), density.blob)
        C = (sd[:, None] * R)[cols, cols]
        G = np.kron(np.eye(levels), C @ C.T)
        W = np.hstack([design.rows.X @ density.mix, Z1])
        prior_precision = np.zeros((pb + G.shape[0],) * 2)
        prior_precision[:pb, :pb] = np.diag(density.precision)
        prior_precision[pb:, pb:] = np.linalg.inv(G)
        cov = np.linalg.inv(W.T @ W / sigma**2 + prior_precision)
        mean = cov @ (W.T @ (design.rows.y - eta) / sigma**2 + np.concatenate([density.shift, np.zeros(G.shape[0])]))

        def drawn(eps_b, eps):
            x_full = density.full_coordinates(x, eps.reshape(levels, first.q), eps_b)
            return np.concatenate([x_full[:pb], named_variables(density.blob, density.variables, x_full)[name].ravel()])

        at_zero = drawn(np.zeros(pb), np.zeros(levels * first.q))
        np.testing.assert_allclose(at_zero, mean, rtol=1e-9, atol=1e-12)
        unit = np.eye(pb + levels * first.q)
        J = np.column_stack([drawn(e[:pb], e[pb:]) - at_zero for e in unit])
        np.testing.assert_allclose(J @ J.T, cov, rtol=1e-8, atol=1e-12)


def test_what_collapse_integrates_out():
    """collapse="auto" integrates the first factor only when the dense block is large; the
    user's choice overrides it; the result says which ran."""
    crossed = bm.make_design(CASES["crossed, correlated slopes on both, noncentred"][1], DATA["crossed"]())
    structure = structure_of(crossed)
    assert structure.dense_block_size <= DENSE_BLOCK_LIMIT
    assert collapse_choice(crossed, structure) == "all" and BayesModel(crossed, method="collapsed").collapse == "all"
    model = BayesModel(crossed, collapse="largest")
    assert model.method == "collapsed" and model.collapse == "largest" and model.precompiled
    assert model.description.startswith("collapsed over a and the fixed effects (integrated out and drawn exactly; "
                                        "the other factors' sampled: ")
    assert BayesModel(crossed, collapse="largest", parameterization="centred").description.endswith(
        "sampled: random effects centred by contrasts)")
    # auto: b's median precision ratio, 8.3, is below the full model's threshold (10) and above
    # the one for centring by contrasts (1), which applies only with the fixed effects integrated out
    assert BayesModel(crossed).centred == (False, False) and model.centred == (False, True)
    assert model.description.endswith("sampled: random effects centred by contrasts)")
    student = BayesModel(crossed, collapse="largest", priors=[bm.prior("b", bm.StudentT(3, 0, 1))])
    assert student.centred == (False, False) and student.description.endswith("sampled: noncentred random effects)")
    assert BayesModel(crossed, collapse="largest", priors=[bm.prior("b", bm.StudentT(3, 0, 1))]).description.startswith(
        "collapsed over a (its random effects integrated out")
    assert "noncentred" in model.description or "centred" in model.description
    rng = np.random.default_rng(1)
    n = 4 * DENSE_BLOCK_LIMIT
    frame = pd.DataFrame({"y": rng.normal(size=n), "x": rng.normal(size=n), "a": np.arange(n) % (2 * DENSE_BLOCK_LIMIT),
                          "b": np.arange(n) % (DENSE_BLOCK_LIMIT + 1)})
    wide = bm.make_design("y ~ x + (1 | a) + (1 | b)", frame)
    assert BayesModel(wide, method="collapsed").collapse == "largest" and BayesModel(wide, method="full").collapse is None
    # method="auto": the collapsed Gibbs sampler where it applies (Normal or flat fixed-effect
    # priors); with a Student-t prior on a fixed effect, which neither it nor the partially
    # collapsed sampler integrates, the full sampler (measured faster than the latter with β sampled)
    assert BayesModel(wide).method == "gibbs"
    student = [bm.prior("b", bm.StudentT(3, 0, 1))]
    assert BayesModel(wide, student).method == "full"
    assert BayesModel(wide, student, method="collapsed").collapse == "largest"
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
@pytest.mark.parametrize("parameterization", ["noncentred", "centred"])
def test_partially_and_fully_collapsed_posteriors_agree(parameterization):
    """On the simulated crossed design (25 x 12 levels, correlated slopes on the first factor;
    the fixed effects integrated out too, b non-centred or centred by contrasts): means within 4
    combined MCSE and SDs within 10 % for every parameter and random effect."""
    design = bm.make_design("y ~ x + (x | a) + (1 | b)", simulated("crossed"))
    settings = dict(draws=2000, tune=1000, chains=4, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        everything = BayesModel(design, collapse="all").sample(seed=21, **settings)
        largest = BayesModel(design, collapse="largest", parameterization=parameterization).sample(seed=22, **settings)
    assert "and the fixed effects" in largest.method and ("by contrasts" in largest.method) == (parameterization == "centred")
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


def test_contrast_rotation_spans_the_level_constant_columns_and_drops_dependent_ones():
    """Q = H_1 ⋯ H_k is orthogonal and its first k columns span V's columns, k = rank V (a
    column that is a multiple of another adds no direction; none, or zeros, give k = 0)."""
    levels = 6
    V = np.column_stack([np.ones(levels), np.arange(levels, dtype=float), 2 * np.arange(levels, dtype=float)])
    k, reflectors = contrast_rotation(V)
    assert k == 2 and reflectors.size == k * (levels + 1)
    Q = householder_product(reflectors, k, levels)
    np.testing.assert_allclose(Q.T @ Q, np.eye(levels), atol=1e-14)
    np.testing.assert_allclose(Q[:, :k] @ (Q[:, :k].T @ V), V, atol=1e-12)
    assert contrast_rotation(np.zeros((levels, 1)))[0] == 0 and contrast_rotation(np.ones((levels, 0)))[0] == 0
