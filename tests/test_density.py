"""The precompiled collapsed log density: against scipy's priors, numerical Jacobians and finite differences."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.bayes import density
from bayesmix.data.layout import group_layouts, term_labels
from bayesmix.linalg.collapsed import collapsed_loglik
from bayesmix.bayes.priors import resolve_priors
from bayesmix.data.crossprod import cross_products
from bayesmix.data.layout import structure_of


def frame(seed: int, slopes: int, groups: int = 30) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rng.integers(3, 12, groups))
    data = {"g": g, "y": rng.normal(size=len(g))}
    for k in range(slopes):
        data[f"x{k}"] = rng.normal(size=len(g))
        data["y"] += (0.5 + rng.normal(size=groups)[g]) * data[f"x{k}"]
    data["y"] += 2.0 + rng.normal(size=groups)[g]
    return pd.DataFrame(data)


CUSTOM = [
    bm.prior("b", bm.StudentT(4, 0.5, 2.0)),
    bm.prior("Intercept", bm.Normal(1.0, 3.0)),
    bm.prior("sigma", bm.HalfNormal(2.0)),
    bm.prior("sd", bm.Exponential(1.5)),
    bm.prior("cor", bm.LKJ(1.5)),
]

CASES = {
    "music, default priors": (lambda music: music, "na ~ perform_type + (perform_type | id)", None),
    "music, custom priors": (lambda music: music, "na ~ perform_type + (perform_type | id)", CUSTOM),
    "q = 2 uncorrelated": (lambda music: frame(1, 1), "y ~ x0 + (x0 || g)", None),
    "two terms, q = 4": (lambda music: frame(2, 3), "y ~ x0 + x1 + x2 + (x0 + x1 | g) + (0 + x2 | g)", CUSTOM[2:]),
    "q = 5, no intercept": (lambda music: frame(3, 4), "y ~ 0 + x0 + x1 + (x0 + x1 + x2 + x3 | g)", None),
}


def build(music, case):
    make, formula, overrides = CASES[case]
    design = bm.make_design(formula, make(music))
    labels, layout = term_labels(design), group_layouts(design)[0]
    priors = resolve_priors(design, labels, overrides)
    cp = cross_products(structure_of(design), design.rows.X, design.rows.y)
    blob, variables, n_dim = density.pack(design, cp, priors, labels, layout)
    return design, priors, labels, cp, blob, n_dim


def corr_from_unconstrained(y: np.ndarray, q: int) -> np.ndarray:
    """R = LL' from Stan's transform, written independently of bayesmix's (row by row)."""
    L = np.zeros((q, q))
    L[0, 0] = 1.0
    z = iter(np.tanh(y))
    for i in range(1, q):
        for j in range(i):
            L[i, j] = next(z) * np.sqrt(1.0 - np.sum(L[i, :j] ** 2))
        L[i, i] = np.sqrt(1.0 - np.sum(L[i, :i] ** 2))
    return L


def log_abs_jacobian(y: np.ndarray, q: int) -> float:
    """log |det ∂(off-diagonal of R)/∂y| by central differences."""
    rows, cols = np.tril_indices(q, -1)

    def offdiag(v):
        L = corr_from_unconstrained(v, q)
        return (L @ L.T)[rows, cols]

    h = 1e-6
    J = np.column_stack([(offdiag(y + h * e) - offdiag(y - h * e)) / (2 * h) for e in np.eye(len(y))])
    return float(np.linalg.slogdet(J)[1])


def logpdf(dist, v: float) -> float:
    p = dist.params
    return {
        "Normal": lambda: stats.norm.logpdf(v, p["mu"], p["sigma"]),
        "StudentT": lambda: stats.t.logpdf(v, p["nu"], p["mu"], p["sigma"]),
        "HalfNormal": lambda: stats.halfnorm.logpdf(v, scale=p["sigma"]),
        "HalfStudentT": lambda: stats.t.logpdf(v, p["nu"], 0.0, p["sigma"]),
        "Exponential": lambda: stats.expon.logpdf(v, scale=1 / p["lam"]),
    }[dist.name]()


def reference_log_density(design, priors, labels, cp, x: np.ndarray) -> float:
    """Priors (scipy), log-Jacobians (numerical for the correlations), LKJ on R, collapsed likelihood."""
    names = list(design.fixed_names)
    p = len(names)
    theta = x[:p]
    lp = sum(logpdf(priors.intercept if n == "Intercept" else priors.b[n], t) for n, t in zip(names, theta))
    beta = theta.copy()
    if "Intercept" in names:
        k = names.index("Intercept")
        means = design.rows.X.mean(axis=0)
        beta[k] = theta[k] - sum(means[j] * theta[j] for j in range(p) if j != k)
    sigma = np.exp(x[p])
    lp += logpdf(priors.dispersion, sigma) + x[p]
    blocks, pos = [], p + 1
    for label, term in zip(labels, design.terms):
        sd = np.exp(x[pos:pos + term.q])
        lp += sum(logpdf(priors.sd[(label, c)], s) for c, s in zip(term.columns, sd)) + x[pos:pos + term.q].sum()
        pos += term.q
        L = np.eye(term.q)
        if term.correlated and term.q > 1:
            m = term.q * (term.q - 1) // 2
            y = x[pos:pos + m]
            L = corr_from_unconstrained(y, term.q)
            eta = priors.cor[label].params["eta"]
            lp += (eta - 1.0) * np.linalg.slogdet(L @ L.T)[1] + log_abs_jacobian(y, term.q)
            pos += m
        blocks.append(sd[:, None] * L)
    C = np.zeros((sum(b.shape[0] for b in blocks),) * 2)
    at = 0
    for b in blocks:
        C[at:at + b.shape[0], at:at + b.shape[0]] = b
        at += b.shape[0]
    return lp + collapsed_loglik(beta, C, sigma, cp.A11, cp.A1X, cp.AXX, float(design.n), False)[0]


@pytest.mark.parametrize("case", list(CASES))
def test_density_equals_priors_jacobians_and_likelihood(music, case):
    design, priors, labels, cp, blob, n_dim = build(music, case)
    rng = np.random.default_rng(5)
    start = density.initial_point(design, priors, labels, rng)
    points = [start + rng.normal(0, 0.3, n_dim) for _ in range(4)]
    native = [density.log_density(blob, x)[0] for x in points]
    reference = [reference_log_density(design, priors, labels, cp, x) for x in points]
    # equal up to one additive constant (normalising constants are left out)
    np.testing.assert_allclose(np.diff(native), np.diff(reference), rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("case", list(CASES))
def test_gradient_equals_finite_differences(music, case):
    design, priors, labels, cp, blob, n_dim = build(music, case)
    rng = np.random.default_rng(6)
    for _ in range(3):
        x = density.initial_point(design, priors, labels, rng) + rng.normal(0, 0.3, n_dim)
        _, grad = density.log_density(blob, x)
        h = 1e-6
        fd = [(density.log_density(blob, x + h * e)[0] - density.log_density(blob, x - h * e)[0]) / (2 * h)
              for e in np.eye(n_dim)]
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-5 * np.abs(grad).max())


def test_correlation_prior_of_two_effects_is_the_lkj_marginal():
    """q = 2 and no information from data: the density of y is that of ρ = tanh y under
    LKJ(η), i.e. (1 - ρ²)^(η - 1), times the Jacobian 1 - ρ²."""
    design = bm.make_design("y ~ x0 + (x0 | g)", frame(4, 1))
    labels, layout = term_labels(design), group_layouts(design)[0]
    priors = resolve_priors(design, labels, [bm.prior("cor", bm.LKJ(3.0))])
    nl = design.terms[0].n_levels
    empty = SimpleNamespace(A11=np.zeros((nl, 2, 2)), A1X=np.zeros((nl, 2, 3)), AXX=np.eye(3))
    blob, _, n_dim = density.pack(design, empty, priors, labels, layout)
    base = np.zeros(n_dim)
    ys = np.linspace(-2.5, 2.5, 11)
    values = []
    for y in ys:
        base[-1] = y
        values.append(density.log_density(blob, base)[0])
    rho = np.tanh(ys)
    np.testing.assert_allclose(np.diff(values), np.diff(3.0 * np.log1p(-rho**2)), rtol=1e-10)


def test_expanded_variables_are_the_constrained_parameters(music):
    design, priors, labels, cp, blob, n_dim = build(music, "music, default priors")
    x = density.initial_point(design, priors, labels, np.random.default_rng(7))
    out = density.expanded(blob, x)
    beta, sigma, sd, cor, chol = out[:3], out[3], out[4:7], out[7:10], out[10:].reshape(3, 3)
    means = design.rows.X.mean(axis=0)
    np.testing.assert_allclose(beta, [x[0] - means[1] * x[1] - means[2] * x[2], x[1], x[2]])
    assert sigma == pytest.approx(np.exp(x[3]))
    np.testing.assert_allclose(sd, np.exp(x[4:7]))
    L = corr_from_unconstrained(x[7:10], 3)
    R = L @ L.T
    np.testing.assert_allclose(cor, [R[0, 1], R[0, 2], R[1, 2]])
    np.testing.assert_allclose(chol, sd[:, None] * L)


def test_outside_the_support_in_floating_point_is_minus_infinity(music):
    design, priors, labels, cp, blob, n_dim = build(music, "music, default priors")
    x = density.initial_point(design, priors, labels, np.random.default_rng(8))
    x[3] = -800.0  # σ = exp(-800) underflows to 0
    assert density.log_density(blob, x)[0] == -np.inf


def test_priors_without_a_native_form_fall_back_to_the_pymc_model(music):
    model = bm.Model("na ~ perform_type + (perform_type | id)", music)
    assert model.bayes_model().precompiled
    fallback = model.bayes_model(priors=[bm.prior("b", bm.HalfNormal(3.0), coef="perform_type[Solo]")])
    assert fallback.method == "collapsed" and not fallback.precompiled


def test_a_response_with_a_large_mean_gives_the_same_posterior_density(music):
    """y + 10⁸ moves only the intercept, which the sampler sees centred (see bayesmix.bayes.standardise):
    the density at the same point is unchanged up to a constant (cross-products of the raw response
    would lose every digit of the residual)."""
    frame = music.assign(far=music["na"] + 1e8)
    points = None
    densities = []
    for response in ("na", "far"):
        model = bm.Model(f"{response} ~ perform_type + (perform_type | id)", frame).bayes_model()
        blob = model._sampler._compiled.blob
        if points is None:
            rng = np.random.default_rng(9)
            start = model._sampler._compiled.init(9)
            points = [start + rng.normal(0, 0.3, len(start)) for _ in range(4)]
        densities.append([density.log_density(blob, x)[0] for x in points])
    np.testing.assert_allclose(np.diff(densities[1]), np.diff(densities[0]), rtol=1e-6, atol=1e-6)
