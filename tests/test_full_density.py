"""The precompiled full log density against the PyMC model's, and its gradient against finite
differences: every family and link, with one, two crossed, two and three nested grouping
factors, weights and offsets, non-centred, centred, mixed (some terms centred) and centred
inside (only the nested terms centred, hierarchically on non-centred ancestors)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.bayes import builder, full_density
from bayesmix.bayes.parameterization import hierarchy
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.layout import coords, group_layouts, term_labels

from .test_density import corr_from_unconstrained


def frame(seed: int = 0) -> pd.DataFrame:
    """Crossed factors a and b, c nested in a, a predictor, trials, exposures and weights; a
    predictor xa constant within the levels of a, and obs, one level per row."""
    rng = np.random.default_rng(seed)
    n = 120
    a = rng.integers(0, 8, n)
    data = pd.DataFrame({
        "a": [f"a{i}" for i in a],
        "b": [f"b{i}" for i in rng.integers(0, 5, n)],
        "c": [f"c{i}" for i in rng.integers(0, 3, n)],
        "x": rng.normal(size=n),
        "t": rng.uniform(0.5, 3.0, n),
        "w": rng.uniform(0.5, 2.0, n),
        "trials": rng.integers(1, 12, n),
    })
    eta = 0.2 + 0.5 * data["x"] + rng.normal(0, 0.7, 8)[a]
    data["s"] = rng.binomial(data["trials"], 1 / (1 + np.exp(-eta)))
    data["hit"] = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int)
    data["count"] = rng.poisson(np.exp(eta) * data["t"])
    data["y"] = rng.gamma(4.0, 1.0, n) * np.exp(0.2 * eta)
    data["xa"] = rng.normal(size=8)[a]
    data["obs"] = [f"o{i}" for i in range(n)]
    return data


FAMILIES = {
    "binomial-logit": (bm.Binomial(), "cbind(s, trials - s)", {}),
    "bernoulli-logit": (bm.Binomial(), "hit", {}),
    "binomial-probit": (bm.Binomial(link="probit"), "cbind(s, trials - s)", {}),
    "binomial-cloglog": (bm.Binomial(link="cloglog"), "cbind(s, trials - s)", {}),
    "poisson": (bm.Poisson(), "count", {"weights": "w", "offset": "t"}),
    "negative-binomial": (bm.NegativeBinomial(), "count", {"weights": "w"}),
    "gaussian-identity": (bm.Gaussian(), "y", {"weights": "w", "offset": "t"}),
    "gaussian-log": (bm.Gaussian(link="log"), "y", {"weights": "w"}),
}
STRUCTURES = {
    "one factor": "x + (x | a)",
    "two crossed": "x + (1 | a) + (x || b)",
    "two nested": "x + (x | a) + (1 | a:c)",
}
NESTED = {"three nested": "x + xa + (1 | a) + (1 | a:c) + (1 | obs)"}
"""A chain of nested factors down to one level per row (for families with a dispersion other
than the Gaussian's, which an observation-level factor leaves unidentified), with a predictor
constant within a's levels: what hierarchical centring reads."""
CUSTOM = [bm.prior("b", bm.StudentT(4, 0.5, 2.0)), bm.prior("Intercept", bm.Flat()), bm.prior("sd", bm.Exponential(1.5)),
          bm.prior("cor", bm.LKJ(1.5))]


def family_design(family_case: str, predictors: str):
    """The design of ``response ~ predictors`` for one of :data:`FAMILIES` on :func:`frame`."""
    family, response, kwargs = FAMILIES[family_case]
    data = frame()
    kwargs = {k: data[v].to_numpy() if k == "weights" else np.log(data[v].to_numpy()) for k, v in kwargs.items()}
    if family_case == "gaussian-identity" and "offset" in kwargs:  # the offset in the response's units
        kwargs["offset"] = data["t"].to_numpy()
    return bm.make_design(f"{response} ~ {predictors}", data, family=family, **kwargs)


def centring(design, parameterization: str) -> tuple[bool, ...]:
    """Per term, whether it is centred: none, all, every other one ("mixed"), or those nested in
    another term's factor ("inside")."""
    parents = hierarchy(design).parent
    return tuple({"noncentred": False, "centred": True, "mixed": k % 2 == 0, "inside": parents[k] >= 0,
                  "partial": False, "partial-mixed": k % 2 == 0}[parameterization]
                 for k in range(len(design.terms)))


def partial_of(design, parameterization: str) -> tuple[float, ...] | None:
    """Per term, the weight of its partial non-centring: 0.6 for the scalar terms left
    non-centred under "partial" and "partial-mixed" (None, all 0, otherwise)."""
    if not parameterization.startswith("partial"):
        return None
    centred = centring(design, parameterization)
    return tuple(0.6 if term.q == 1 and not c else 0.0 for term, c in zip(design.terms, centred))


def build(family_case: str, structure: str, overrides=None, parameterization: str = "noncentred"):
    design = family_design(family_case, {**STRUCTURES, **NESTED}[structure])
    labels, layouts = term_labels(design), group_layouts(design)
    priors = resolve_priors(design, labels, overrides)
    blob, variables, n_dim = full_density.pack(design, priors, labels, layouts, centring(design, parameterization),
                                               partial_of(design, parameterization))
    return design, priors, labels, blob, n_dim


def random_points(design, priors, labels, n_dim, seed, count, scale=0.7, centred=None):
    """Sampler starts (the priors' centres jittered), shrunk by ``scale`` towards 0."""
    rng = np.random.default_rng(seed)
    layouts = group_layouts(design)
    start = full_density.full_density(design, priors, labels, layouts, coords(design, layouts), centred)
    return [start.init(int(rng.integers(2**31))) * scale for _ in range(count)]


def constrained(design, priors, labels, x, centred=None):
    """The PyMC model's random variables at the unconstrained point x (our coordinates, decoded
    independently of bayesmix), and the log-Jacobian of our transforms."""
    names = list(design.fixed_names)
    p = len(names)
    values, logjac, pos = {}, 0.0, p
    for j, name in enumerate(names):
        values["_Intercept_centred" if name == "Intercept" else f"_b_{j}"] = x[j] if name == "Intercept" else x[j:j + 1]
    if priors.dispersion is not None:
        values[design.family.dispersion_name] = np.exp(x[p])
        logjac += x[p]
        pos += 1
    for k, (label, term) in enumerate(zip(labels, design.terms)):
        values[f"_sd_{k}"] = np.exp(x[pos:pos + term.q])
        logjac += x[pos:pos + term.q].sum()
        pos += term.q
        if term.correlated and term.q > 1:
            m = term.q * (term.q - 1) // 2
            y = x[pos:pos + m]
            values[f"_L_{k}"] = corr_from_unconstrained(y, term.q)
            logjac += _cholesky_log_jacobian(y, term.q)
            pos += m
    for k, term in enumerate(design.terms):
        size = term.n_levels * term.q
        values[f"_theta_{k}" if centred and centred[k] else f"_z_{k}"] = x[pos:pos + size].reshape(term.n_levels, term.q)
        pos += size
    assert pos == len(x)
    return values, logjac


def _cholesky_log_jacobian(y: np.ndarray, q: int) -> float:
    """log |det ∂(strict lower triangle of L)/∂y| by central differences."""
    rows, cols = np.tril_indices(q, -1)
    h = 1e-6
    J = np.column_stack([(corr_from_unconstrained(y + h * e, q)[rows, cols] - corr_from_unconstrained(y - h * e, q)[rows, cols])
                         / (2 * h) for e in np.eye(len(y))])
    return float(np.linalg.slogdet(J)[1])


def pymc_log_density(model, values: dict) -> float:
    """The PyMC model's log density of the constrained parameters (no Jacobians) at ``values``."""
    point = {}
    for rv in model.free_RVs:
        value_var = model.rvs_to_values[rv]
        transform = model.rvs_to_transforms.get(rv)
        v = values[rv.name]
        point[value_var.name] = v if transform is None else transform.forward(v, *rv.owner.inputs).eval()
    return float(model.compile_logp(jacobian=False, mode="FAST_COMPILE")(point))


CASES = [(f, s, "noncentred") for f in FAMILIES for s in STRUCTURES] + [
    (f, s, c) for f in ("binomial-logit", "poisson", "negative-binomial", "gaussian-identity") for s in STRUCTURES
    for c in ("centred", "mixed")] + [
    (f, s, "inside") for f in ("binomial-logit", "poisson") for s in ("two nested", "three nested")] + [
    ("poisson", "three nested", c) for c in ("noncentred", "centred", "mixed")] + [
    (f, s, c) for f in ("binomial-logit", "poisson", "gaussian-identity") for s in STRUCTURES
    for c in ("partial", "partial-mixed")]


def test_hierarchy_finds_the_nesting_and_the_level_constant_columns():
    design = family_design("poisson", NESTED["three nested"])
    found = hierarchy(design)
    assert [t.group for t in design.terms] == ["a", "a:c", "obs"]
    assert found.parent == (-1, 0, 1) and found.order() == [0, 1, 2]
    assert [list(c) for c in found.parent_columns] == [[-1], [0], [0]]
    # xa is constant within a (and so within a:c and obs), x only within obs
    assert found.constant.tolist() == [[True, False, True], [True, False, True], [True, True, True]]
    data = frame()
    first = found.first_rows[1]
    assert all(data["a"].iloc[first[j]] + ":" + data["c"].iloc[first[j]] == level
               for j, level in enumerate(design.terms[1].levels))
    # crossed factors nest nothing
    assert hierarchy(family_design("poisson", STRUCTURES["two crossed"])).parent == (-1, -1, -1)


@pytest.mark.parametrize(("family_case", "structure", "parameterization"), CASES)
def test_density_equals_the_pymc_models(family_case, structure, parameterization):
    overrides = CUSTOM if structure == "two nested" else None
    design, priors, labels, blob, n_dim = build(family_case, structure, overrides, parameterization)
    centred = centring(design, parameterization)
    model = builder.build_model(design, priors, centred, partial_of(design, parameterization))
    native, reference = [], []
    # moderate points: PyMC's inverse links round μ to 0 or 1 in the far tails (-inf), ours do not
    for x in random_points(design, priors, labels, n_dim, seed=1, count=3, scale=0.4, centred=centred):
        values, logjac = constrained(design, priors, labels, x, centred)
        native.append(full_density.log_density(blob, x)[0] - logjac)
        reference.append(pymc_log_density(model, values))
    # equal up to one additive constant (terms free of the parameters are left out)
    np.testing.assert_allclose(np.diff(native), np.diff(reference), rtol=1e-8, atol=1e-7)


@pytest.mark.parametrize(("family_case", "structure", "parameterization"), CASES)
def test_gradient_equals_finite_differences(family_case, structure, parameterization):
    design, priors, labels, blob, n_dim = build(family_case, structure, parameterization=parameterization)
    centred = centring(design, parameterization)
    for x in random_points(design, priors, labels, n_dim, seed=2, count=2, centred=centred):
        _, grad = full_density.log_density(blob, x)
        h = 1e-6
        fd = [(full_density.log_density(blob, x + h * e)[0] - full_density.log_density(blob, x - h * e)[0]) / (2 * h)
              for e in np.eye(n_dim)]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-6 * np.abs(grad).max())


@pytest.mark.parametrize("parameterization", ["noncentred", "mixed"])
def test_expanded_variables_are_the_pymc_models_deterministics(parameterization):
    design, priors, labels, blob, n_dim = build("poisson", "two nested", parameterization=parameterization)
    centred = centring(design, parameterization)
    model = builder.build_model(design, priors, centred, partial_of(design, parameterization))
    x = random_points(design, priors, labels, n_dim, seed=3, count=1, centred=centred)[0]
    values, _ = constrained(design, priors, labels, x, centred)
    _, variables, _ = full_density.pack(design, priors, labels, group_layouts(design), centred)
    out, at = full_density.expanded(blob, x), 0
    point = {model.rvs_to_values[rv].name: (v if (t := model.rvs_to_transforms.get(rv)) is None
                                            else t.forward(v, *rv.owner.inputs).eval())
             for rv in model.free_RVs for v in [values[rv.name]]}
    for variable in variables:
        size = int(np.prod(variable.shape))
        graph = model.replace_rvs_by_values([model[variable.name]])[0]
        expected = model.compile_fn(graph, inputs=model.value_vars, on_unused_input="ignore", mode="FAST_COMPILE")(point)
        np.testing.assert_allclose(out[at:at + size].reshape(variable.shape), expected, rtol=1e-10, atol=1e-12)
        at += size
    assert at == out.size


def test_tails_keep_finite_values_and_gradients():
    """Far out in the tails, where μ rounds to 0 or 1, the log-likelihood of each link stays
    exact (compared with the two-sided closed forms)."""
    from bayesmix.families import BINOMIAL_CODE, LINK_CODES, log_density_row
    from scipy import special, stats

    for eta in (-40.0, -12.0, 0.3, 12.0, 40.0):
        value, slope, _ = log_density_row(BINOMIAL_CODE, LINK_CODES["logit"], 1.0, eta, 1.0, np.nan)
        assert value == pytest.approx(-np.logaddexp(0, -eta), rel=1e-12)
        assert slope == pytest.approx(special.expit(-eta), rel=1e-12)
        value, slope, _ = log_density_row(BINOMIAL_CODE, LINK_CODES["probit"], 0.0, eta, 1.0, np.nan)
        assert value == pytest.approx(stats.norm.logcdf(-eta), rel=1e-10)
        assert slope == pytest.approx(-np.exp(stats.norm.logpdf(eta) - stats.norm.logcdf(-eta)), rel=1e-8)
        value, slope, _ = log_density_row(BINOMIAL_CODE, LINK_CODES["cloglog"], 0.0, eta, 1.0, np.nan)
        assert value == pytest.approx(-np.exp(eta), rel=1e-12)
