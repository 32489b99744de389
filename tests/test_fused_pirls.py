"""The compiled PIRLS and Laplace gradient, per level for one grouping factor
(:mod:`bayesmix.linalg.levelwise`) and on the blocked factor for several
(:mod:`bayesmix.linalg.blockwise`), against the general path (:func:`~bayesmix.linalg.pirls.pirls`,
:func:`~bayesmix.linalg.pirls.laplace_gradient`): every family and link, correlated, scalar and
uncorrelated effects, crossed and nested factors, with weights and offsets."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from bayesmix.data.layout import structure_of
from bayesmix.families import GAUSSIAN_CODE, NEGATIVE_BINOMIAL_CODE, log_likelihood_derivatives_row, log_likelihood_row
from bayesmix.linalg.pirls import (
    GlmmRows,
    WarmModes,
    blocked_laplace_gradient,
    blocked_pirls,
    laplace_gradient,
    level_laplace_gradient,
    level_pirls,
    pirls,
)

from .test_full_density import FAMILIES, family_design

STRUCTURES = {"correlated": "x + (x | a)", "scalar": "x + (1 | a)", "uncorrelated": "x + (x || a)"}
SEVERAL = {"two crossed": "x + (1 | a) + (1 | b)", "crossed, uncorrelated slope": "x + (1 | a) + (x || b)",
           "nested, correlated": "x + (x | a) + (1 | a:c)", "three crossed": "x + (1 | a) + (1 | b) + (1 | c)"}
DISPERSION = {"negative-binomial": 3.0, "gaussian-identity": 1.3, "gaussian-log": 1.1}


def glmm_rows(family_case: str, structure: str) -> GlmmRows:
    design = family_design(family_case, {**STRUCTURES, **SEVERAL}[structure])
    rows = design.rows
    return GlmmRows.of(structure_of(design), rows.X, rows.y, rows.weights, rows.offset, design.family)


def points(rows: GlmmRows, family_case: str, count: int, seed: int = 1):
    """(θ, β, φ) near the data: β of PIRLS updating β jointly at a θ, both jittered."""
    rng = np.random.default_rng(seed)
    structure = rows.structure
    dispersion = DISPERSION.get(family_case)
    theta0 = 0.6 * structure.initial_theta()
    beta0 = pirls(rows, theta0, None, dispersion).beta
    out = []
    for _ in range(count):
        theta = theta0 + rng.uniform(-0.2, 0.2, theta0.size) * np.where(np.isfinite(structure.lower), 1.0, 0.5)
        theta = np.where(np.isfinite(structure.lower), np.abs(theta), theta)
        beta = beta0 + rng.uniform(-0.1, 0.1, beta0.size)
        out.append((theta, beta, None if dispersion is None else dispersion * np.exp(rng.uniform(-0.2, 0.2))))
    return out


def stationarity(rows: GlmmRows, mode) -> np.ndarray:
    """The Newton step from the mode to the exact one, M⁻¹(u - Λ'Z'ℓ'(η)) (M⁻¹ ∂g/∂u / 2), flat."""
    structure = rows.structure
    score = rows.working(mode.eta, mode.dispersion)[0]
    residual = [u - s @ block.lambda_(mode.theta)
                for u, s, block in zip(structure.per_block(mode.u), rows.level_sums(score), structure.blocks)]
    rest = None if len(residual) == 1 else np.concatenate([r.ravel() for r in residual[1:]])
    first, second = mode.factorization.solve(residual[0], rest)
    return first.ravel() if second is None else np.concatenate([first.ravel(), second])


def general_mode(rows: GlmmRows, theta, beta, dispersion):
    """The general path's mode, made exact: :func:`pirls` from zero, whose test that g decreases
    can stop it up to a few 1e-8 short of the mode (the decrease of a step that small is below
    the rounding of g), then :func:`pirls` again from that mode plus its Newton correction
    (:func:`stationarity`), which it keeps."""
    rough = pirls(rows, theta, beta, dispersion)
    mode = pirls(rows, theta, beta, dispersion, rough.u - stationarity(rows, rough))
    np.testing.assert_allclose(stationarity(rows, mode), 0.0, atol=1e-11)
    return mode


def assert_same_gradient(fused, general):
    for a, b in [(fused.theta, general.theta), (fused.beta, general.beta)]:
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-7 * np.max(np.abs(b)))
    if general.log_dispersion is None:
        assert fused.log_dispersion is None
    else:
        np.testing.assert_allclose(fused.log_dispersion, general.log_dispersion, rtol=1e-7)


CASES = [(f, s) for f in FAMILIES for s in STRUCTURES]


@pytest.mark.parametrize(("family_case", "structure"), CASES)
def test_levelwise_mode_deviance_and_gradient_equal_the_general_path(family_case, structure):
    rows = glmm_rows(family_case, structure)
    assert rows.levelwise
    for theta, beta, dispersion in points(rows, family_case, 3):
        general = general_mode(rows, theta, beta, dispersion)
        fused = level_pirls(rows, theta, beta, dispersion)
        assert general.converged and fused.converged
        np.testing.assert_allclose(stationarity(rows, fused), 0.0, atol=1e-11)
        np.testing.assert_allclose(fused.u, general.u, rtol=0, atol=1e-8)
        np.testing.assert_allclose(fused.eta, general.eta, rtol=0, atol=1e-8)
        np.testing.assert_allclose(fused.laplace_deviance, general.laplace_deviance, rtol=1e-9)
        np.testing.assert_allclose(fused.log_likelihood, general.log_likelihood, rtol=1e-9)
        # the factor at the mode, which the draws of method="laplace" back-substitute with
        f, g = fused.factorization, general.factorization
        np.testing.assert_allclose(f.L11inv, g.L11inv, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(f.logdet_z, g.logdet_z, rtol=1e-9)
        np.testing.assert_allclose(f.W, g.W, rtol=1e-6, atol=1e-8)
        eps = np.random.default_rng(0).standard_normal(f.L11inv.shape[:2])
        np.testing.assert_allclose(f.back_substitute(eps, None)[0], g.back_substitute(eps, None)[0], rtol=1e-8, atol=1e-10)
        assert_same_gradient(level_laplace_gradient(rows, fused), laplace_gradient(rows, general))


@pytest.mark.parametrize("family_case", ["bernoulli-logit", "poisson", "negative-binomial", "gaussian-log"])
@pytest.mark.parametrize(("structure", "path", "u_atol", "deviance_rtol"),
                         [("correlated", "levelwise", 1e-8, 1e-9), ("nested, correlated", "blocked", 1e-10, 1e-10)])
def test_warm_modes_along_a_path_equal_the_general_path(family_case, structure, path, u_atol, deviance_rtol):
    """A sampler's path, each solve warm-started from the last (with several factors, from the
    last mode's chord-step prediction): the compiled path (per level with one factor, on the
    blocked factor with several) gives the mode, deviance and gradient of the general path
    started afresh. (The general path warm-started from its first-order prediction can stop a
    few 1e-9 short of the mode, its gradient then off by 1e-6 relative: not the reference here.)"""
    rows = glmm_rows(family_case, structure)
    warm = WarmModes(rows)
    assert warm.path == path and WarmModes(rows, compiled=False).path == "general"
    for theta, beta, dispersion in points(rows, family_case, 6, seed=2):
        mode = warm.solve(theta, beta, dispersion)
        warm.mode = mode
        general = general_mode(rows, theta, beta, dispersion)
        np.testing.assert_allclose(stationarity(rows, mode), 0.0, atol=1e-11)
        np.testing.assert_allclose(mode.u, general.u, rtol=0, atol=u_atol)
        np.testing.assert_allclose(mode.laplace_deviance, general.laplace_deviance, rtol=deviance_rtol)
        assert_same_gradient(warm.gradient(mode), laplace_gradient(rows, general))
    assert warm.all_converged and warm.evaluations == 6


def test_a_start_far_from_the_mode_is_abandoned_for_zero():
    """A warm start where exp(η) overflows (log link) leaves no finite deviance: each such
    level starts again from zero and reaches the mode PIRLS finds from zero."""
    rows = glmm_rows("poisson", "correlated")
    theta, beta, _ = points(rows, "poisson", 1)[0]
    far = np.full(rows.n_effects, 2000.0)
    fused = level_pirls(rows, theta, beta, None, far)
    general = general_mode(rows, theta, beta, None)
    np.testing.assert_allclose(fused.u, general.u, rtol=0, atol=1e-8)
    np.testing.assert_allclose(fused.laplace_deviance, general.laplace_deviance, rtol=1e-9)


@pytest.mark.parametrize(("family_case", "structure"), [(f, s) for f in FAMILIES for s in SEVERAL])
def test_blocked_mode_deviance_and_gradient_equal_the_general_path(family_case, structure):
    """Several factors: the compiled PIRLS on the blocked factor reaches the general path's
    exact mode, deviance and factor, and its gradient equals the general adjoint gradient."""
    rows = glmm_rows(family_case, structure)
    assert rows.blocked and not rows.levelwise
    for theta, beta, dispersion in points(rows, family_case, 2):
        general = general_mode(rows, theta, beta, dispersion)
        fused = blocked_pirls(rows, theta, beta, dispersion)
        assert general.converged and fused.converged
        np.testing.assert_allclose(stationarity(rows, fused), 0.0, atol=1e-11)
        np.testing.assert_allclose(fused.u, general.u, rtol=0, atol=1e-10)
        np.testing.assert_allclose(fused.eta, general.eta, rtol=0, atol=1e-10)
        np.testing.assert_allclose(fused.laplace_deviance, general.laplace_deviance, rtol=1e-10)
        np.testing.assert_allclose(fused.log_likelihood, general.log_likelihood, rtol=1e-10)
        f, g = fused.factorization, general.factorization
        np.testing.assert_allclose(f.logdet_z, g.logdet_z, rtol=1e-10)
        np.testing.assert_allclose(f.L22, g.L22, rtol=1e-8, atol=1e-10)
        rng = np.random.default_rng(0)
        eps1, eps2 = rng.standard_normal(f.L11inv.shape[:2]), rng.standard_normal(f.L22.shape[0])
        for a, b in zip(f.back_substitute(eps1, eps2), g.back_substitute(eps1, eps2)):
            np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-10)
        # the working response's column: spherical_modes gives û back
        np.testing.assert_allclose(np.concatenate([p.ravel() for p in f.spherical_modes()]), fused.u, rtol=0, atol=1e-8)
        # the same formulas; ∂W/∂η (and μ_ηη of a non-canonical link) by central differences of
        # step 1e-4 turn rounding-level differences of W (the general path's Gaussian and negative
        # binomial W are scipy's, the compiled paths' their row functions) into up to 1e-8 of the gradient
        assert_same_gradient(blocked_laplace_gradient(rows, fused), laplace_gradient(rows, general))


def test_a_far_start_with_several_factors_is_abandoned_for_zero():
    rows = glmm_rows("poisson", "two crossed")
    theta, beta, _ = points(rows, "poisson", 1)[0]
    fused = blocked_pirls(rows, theta, beta, None, np.full(rows.n_effects, 2000.0))
    general = general_mode(rows, theta, beta, None)
    np.testing.assert_allclose(fused.u, general.u, rtol=0, atol=1e-10)
    np.testing.assert_allclose(fused.laplace_deviance, general.laplace_deviance, rtol=1e-10)


def test_compiled_gaussian_and_negative_binomial_rows_equal_scipy():
    """The row functions the per-level path calls for the two families whose numpy methods use
    scipy: log N(y; μ, σ/√w) and w log NB(y; μ, θ), and their first two derivatives in μ
    against central differences (of the log-likelihood, and of the first derivative)."""
    rng = np.random.default_rng(3)
    y, mu, w = rng.gamma(2.0, 2.0, 50), rng.gamma(2.0, 2.0, 50), rng.uniform(0.5, 2.0, 50)
    counts = rng.poisson(4.0, 50).astype(float)
    counts[:5] = [0.0, 1.0, 15.0, 16.0, 40.0]  # both sides of the series' threshold
    sigma, theta, h = 1.3, 2.7, 1e-5
    cases = [(GAUSSIAN_CODE, y, sigma, stats.norm.logpdf(y, mu, sigma / np.sqrt(w))),
             (NEGATIVE_BINOMIAL_CODE, counts, theta, w * stats.nbinom.logpmf(counts, theta, theta / (theta + mu)))]
    for code, response, dispersion, expected in cases:
        def loglik(m, code=code, response=response, dispersion=dispersion):
            return np.array([log_likelihood_row(code, a, b, c, dispersion) for a, b, c in zip(response, m, w)])
        def derivatives(m, code=code, response=response, dispersion=dispersion):
            return np.array([log_likelihood_derivatives_row(code, a, b, c, dispersion) for a, b, c in zip(response, m, w)]).T

        np.testing.assert_allclose(loglik(mu), expected, rtol=1e-12)
        first, second = derivatives(mu)
        np.testing.assert_allclose(first, (loglik(mu + h) - loglik(mu - h)) / (2 * h), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(second, (derivatives(mu + h)[0] - derivatives(mu - h)[0]) / (2 * h), rtol=1e-6, atol=1e-8)
