"""Response families: links against R's ``make.link`` formulas, every family's likelihood,
derivatives, deviance, residuals and draws against scipy and independent formulas, the
response checks, and the backends' use of the family."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

import bayesmix as bm
from bayesmix import ArgumentError, DataError
from bayesmix.families import FAMILY_NAMES, LINKS, Binomial, Gaussian, NegativeBinomial, Poisson, as_family

SLEEP = "Reaction ~ Days + (Days | Subject)"
EPS = 2.220446049250313e-16  # R's .Machine$double.eps


@pytest.fixture(scope="module")
def draws():
    """y, μ and σ shaped as the posterior's (chain, draw, obs)."""
    rng = np.random.default_rng(12)
    y = rng.normal(300.0, 50.0, 40)
    mu = y[None, None, :] + rng.normal(0.0, 30.0, (2, 5, 40))
    sigma = rng.uniform(10.0, 60.0, (2, 5, 1))
    return y, mu, sigma


# ----- the Gaussian's mathematics ------------------------------------------------------------
def test_gaussian_log_likelihood_is_the_normal_log_density(draws):
    y, mu, sigma = draws
    ll = Gaussian().log_likelihood(y[None, None, :], mu, sigma)
    assert ll.shape == (2, 5, 40)
    np.testing.assert_allclose(ll, stats.norm.logpdf(y, loc=mu, scale=sigma), rtol=1e-15)
    by_hand = -0.5 * np.log(2 * np.pi) - np.log(sigma) - 0.5 * ((y - mu) / sigma) ** 2
    np.testing.assert_allclose(ll, by_hand, rtol=1e-13)


def test_gaussian_log_likelihood_derivatives_match_finite_differences(draws):
    y, mu, sigma = draws
    family, h = Gaussian(), 1e-3
    first, second = family.log_likelihood_derivatives(y, mu, sigma)
    up, down = family.log_likelihood(y, mu + h, sigma), family.log_likelihood(y, mu - h, sigma)
    centre = family.log_likelihood(y, mu, sigma)
    np.testing.assert_allclose(first, (up - down) / (2 * h), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(second, (up - 2 * centre + down) / h**2, rtol=1e-4)
    assert second.shape == first.shape == (2, 5, 40)


def test_gaussian_deviance_residuals_are_response_residuals(draws):
    y, mu, _ = draws
    family = Gaussian()
    np.testing.assert_array_equal(family.deviance_residuals(y, mu), y - mu)
    np.testing.assert_allclose(family.unit_deviance(y, mu), (y - mu) ** 2, rtol=1e-15)
    np.testing.assert_allclose(np.sign(y - mu) * np.sqrt(family.unit_deviance(y, mu)), y - mu, rtol=1e-14)


def test_gaussian_link_and_variance():
    family, eta = Gaussian(), np.linspace(-3.0, 3.0, 7)
    assert family.inverse_link(eta) is eta  # the identity changes no number, so predictions stay bit-for-bit
    np.testing.assert_array_equal(family.link_function(eta), eta)
    np.testing.assert_array_equal(family.inverse_link_derivative(eta), np.ones(7))
    np.testing.assert_array_equal(family.variance(eta), np.ones(7))
    assert family.has_dispersion and family.has_sufficient_statistics
    assert family.dispersion_prior_scale(42.5) == 42.5
    assert family.distribution_parameters("mu", "sigma") == {"mu": "mu", "sigma": "sigma"}


def test_gaussian_predictive_draws_have_the_normal_moments():
    family, n = Gaussian(), 200_000
    mu = np.array([-2.0, 0.0, 250.0])
    sigma = np.array([[0.5], [3.0]])  # two posterior draws of σ, each for every row
    draws = family.predictive_draws(np.broadcast_to(mu, (n, 2, 3)), sigma, np.random.default_rng(1))
    z = (draws - mu) / sigma  # (n, 2, 3): standard normal if the noise is N(0, σ)
    # MC standard errors: mean 1/sqrt(n), variance sqrt(2/n), third and fourth moments sqrt(15/n), sqrt(96/n)
    assert np.abs(z.mean(axis=0)).max() < 4.5 / np.sqrt(n)
    assert np.abs(z.var(axis=0) - 1).max() < 4.5 * np.sqrt(2 / n)
    assert np.abs((z**3).mean(axis=0)).max() < 4.5 * np.sqrt(15 / n)
    assert np.abs((z**4).mean(axis=0) - 3).max() < 4.5 * np.sqrt(96 / n)


def test_gaussian_predictive_draws_are_those_of_the_seed():
    """The noise is μ + σ ε with ε from rng.standard_normal, in that order: draws made before
    the family existed are reproduced bit for bit from the same seed."""
    mu, sigma = np.arange(12.0).reshape(4, 3), np.array([[1.0], [2.0], [3.0], [4.0]])
    draws = Gaussian().predictive_draws(mu, sigma, np.random.default_rng(9))
    np.testing.assert_array_equal(draws, mu + np.random.default_rng(9).standard_normal((4, 3)) * sigma)


# ----- links: R's make.link, written out independently -----------------------------------------
ETA = np.array([-800.0, -701.0, -40.0, -30.5, -30.0, -8.2, -8.0, -3.0, -0.5, 0.0, 0.7, 2.0, 8.0, 8.2, 29.9, 30.5, 40.0, 701.0, 800.0])


def r_logit_inverse(eta):
    """R's C logit_linkinv: e/(1+e) with e = exp(eta), e = eps below -30 and 1/eps above 30."""
    inside = special.expit(eta)
    return np.where(eta < -30, EPS / (1 + EPS), np.where(eta > 30, 1 / (1 + EPS), inside))


def r_logit_mu_eta(eta):
    inside = special.expit(eta) * special.expit(-eta)
    return np.where(np.abs(eta) > 30, EPS, inside)


R_PROBIT_THRESH = -stats.norm.ppf(EPS)  # R: -qnorm(.Machine$double.eps) = 8.125890664701906

R_LINKS = {
    # name: (linkfun, linkinv, mu.eta) as R's make.link states them
    "identity": (lambda mu: mu, lambda eta: eta, lambda eta: np.ones_like(eta)),
    "log": (np.log, lambda eta: np.maximum(np.exp(eta), EPS), lambda eta: np.maximum(np.exp(eta), EPS)),
    "logit": (special.logit, r_logit_inverse, r_logit_mu_eta),
    "probit": (stats.norm.ppf,
               lambda eta: stats.norm.cdf(np.minimum(np.maximum(eta, -R_PROBIT_THRESH), R_PROBIT_THRESH)),
               lambda eta: np.maximum(stats.norm.pdf(eta), EPS)),
    "cloglog": (lambda mu: np.log(-np.log1p(-mu)),
                lambda eta: np.maximum(np.minimum(-np.expm1(-np.exp(eta)), 1 - EPS), EPS),
                lambda eta: np.maximum(np.exp(np.minimum(eta, 700)) * np.exp(-np.exp(np.minimum(eta, 700))), EPS)),
}


def test_the_links_are_rs():
    assert set(LINKS) == set(R_LINKS)
    assert R_PROBIT_THRESH == pytest.approx(8.125890664701906, rel=1e-15)


@pytest.mark.parametrize("name", sorted(R_LINKS))
def test_link_inverse_and_derivative_are_rs_formulas(name):
    link, (r_link, r_inverse, r_mu_eta) = LINKS[name], R_LINKS[name]
    with np.errstate(over="ignore"):
        expected_mu, expected_mu_eta = r_inverse(ETA), r_mu_eta(ETA)
    with np.errstate(divide="raise", invalid="raise"):  # R's guards: no 0/0 or inf - inf, on any η
        mu, mu_eta = link.inverse(ETA), link.inverse_derivative(ETA)
    if name in ("logit", "probit", "cloglog"):
        assert np.all(np.isfinite(mu)) and np.all(np.isfinite(mu_eta))
    np.testing.assert_allclose(mu, expected_mu, rtol=1e-14, atol=0)
    np.testing.assert_allclose(mu_eta, expected_mu_eta, rtol=1e-13, atol=0)
    inside = np.linspace(0.001, 0.999, 41) if name in ("logit", "probit", "cloglog") else np.linspace(0.01, 50.0, 41)
    np.testing.assert_allclose(link.link(inside), r_link(inside), rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("name", sorted(R_LINKS))
def test_link_round_trips_and_its_derivative_is_the_slope(name):
    link, eta, h = LINKS[name], np.linspace(-4.0, 2.0, 25), 1e-6
    if name == "identity":
        eta = np.linspace(0.5, 9.0, 25)
    np.testing.assert_allclose(link.link(link.inverse(eta)), eta, rtol=1e-9, atol=1e-9)
    slope = (link.inverse(eta + h) - link.inverse(eta - h)) / (2 * h)
    np.testing.assert_allclose(link.inverse_derivative(eta), slope, rtol=1e-7, atol=1e-12)


@pytest.mark.parametrize("name", ["logit", "probit", "cloglog"])
def test_probability_links_keep_the_mean_inside_zero_one(name):
    mu = LINKS[name].inverse(ETA)
    assert np.all((mu > 0) & (mu < 1)) and np.all(LINKS[name].inverse_derivative(ETA) > 0)


# ----- likelihoods against scipy ------------------------------------------------------------------
RNG = np.random.default_rng(2024)
N = 60
TRIALS = RNG.integers(1, 30, N).astype(float)
SUCCESSES = RNG.binomial(TRIALS.astype(int), 0.35).astype(float)
P = RNG.uniform(0.05, 0.95, N)
COUNTS = RNG.negative_binomial(2.0, 2.0 / 7.0, N).astype(float)  # mean 5
COUNTS[:5] = 0.0
MU = RNG.uniform(0.3, 12.0, N)
W = RNG.uniform(0.2, 3.0, N)
THETA = 2.7


def test_binomial_log_likelihood_is_scipys():
    y = SUCCESSES / TRIALS
    ll = Binomial().log_likelihood(y, P, None, TRIALS)
    np.testing.assert_allclose(ll, stats.binom.logpmf(SUCCESSES, TRIALS, P), rtol=1e-12)
    bernoulli = (SUCCESSES > 3).astype(float)
    np.testing.assert_allclose(Binomial().log_likelihood(bernoulli, P, None), stats.bernoulli.logpmf(bernoulli, P), rtol=1e-13)


def test_poisson_log_likelihood_is_scipys_times_the_weights():
    np.testing.assert_allclose(Poisson().log_likelihood(COUNTS, MU, None), stats.poisson.logpmf(COUNTS, MU), rtol=1e-13)
    np.testing.assert_allclose(Poisson().log_likelihood(COUNTS, MU, None, W), W * stats.poisson.logpmf(COUNTS, MU), rtol=1e-13)


def test_negative_binomial_log_likelihood_is_scipys_times_the_weights():
    expected = stats.nbinom.logpmf(COUNTS, THETA, THETA / (THETA + MU))
    np.testing.assert_allclose(NegativeBinomial().log_likelihood(COUNTS, MU, THETA), expected, rtol=1e-12)
    np.testing.assert_allclose(NegativeBinomial().log_likelihood(COUNTS, MU, THETA, W), W * expected, rtol=1e-12)
    # a large θ is the Poisson, without cancellation
    np.testing.assert_allclose(NegativeBinomial().log_likelihood(COUNTS, MU, 1e12), stats.poisson.logpmf(COUNTS, MU), rtol=1e-9)


def test_weighted_gaussian_log_likelihood_has_precision_weights():
    y, sigma = MU + RNG.normal(0, 1, N), 1.7
    expected = stats.norm.logpdf(y, MU, sigma / np.sqrt(W))
    np.testing.assert_allclose(Gaussian().log_likelihood(y, MU, sigma, W), expected, rtol=1e-13)
    # R's gaussian()$aic term: -2 ll sums to n log(2πσ²) + Σ w (y-μ)²/σ² - Σ log w
    by_r = N * np.log(2 * np.pi * sigma**2) + np.sum(W * (y - MU) ** 2) / sigma**2 - np.sum(np.log(W))
    assert -2 * Gaussian().log_likelihood(y, MU, sigma, W).sum() == pytest.approx(by_r, rel=1e-13)


# every family, with weights, at responses and means of its kind
CASES = {
    "gaussian": (Gaussian(), MU + RNG.normal(0, 1, N), MU, 1.3, W),
    "gaussian-log": (Gaussian(link="log"), MU + 0.2, MU, 0.8, None),
    "binomial": (Binomial(), SUCCESSES / TRIALS, P, None, TRIALS),
    "bernoulli": (Binomial(link="cloglog"), (P > 0.5).astype(float), np.clip(P + 0.1, 0, 0.97), None, None),
    "poisson": (Poisson(), COUNTS, MU, None, W),
    "negative_binomial": (NegativeBinomial(), COUNTS, MU, THETA, W),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_log_likelihood_derivatives_match_finite_differences(case):
    family, y, mu, dispersion, weights = CASES[case]
    h = 1e-5 * mu
    first, second = family.log_likelihood_derivatives(y, mu, dispersion, weights)

    def ll(m):
        return family.log_likelihood(y, m, dispersion, weights)

    np.testing.assert_allclose(first, (ll(mu + h) - ll(mu - h)) / (2 * h), rtol=1e-6, atol=1e-6)
    d1 = lambda m: family.log_likelihood_derivatives(y, m, dispersion, weights)[0]  # noqa: E731
    np.testing.assert_allclose(second, (d1(mu + h) - d1(mu - h)) / (2 * h), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("case", sorted(CASES))
def test_unit_deviance_is_twice_the_log_likelihood_from_saturation(case):
    family, y, mu, dispersion, weights = CASES[case]
    scale = 1.0 if family.name == "Gaussian" else dispersion  # the Gaussian's deviance is at σ = 1
    saturated = family.log_likelihood(y, y, scale, weights) - family.log_likelihood(y, mu, scale, weights)
    w = 1.0 if weights is None else weights
    unit = family.unit_deviance(y, mu, dispersion=dispersion)
    np.testing.assert_allclose(w * unit, 2 * saturated, rtol=1e-10, atol=1e-12)
    assert np.all(unit >= 0)


def test_unit_deviances_are_rs_dev_resids():
    """R's dev.resids with unit weights, written out (0 log 0 = 0)."""
    y = SUCCESSES / TRIALS
    ylogy = lambda a, b: np.where(a > 0, a * np.log(np.where(a > 0, a, 1) / b), 0.0)  # noqa: E731 (R's y_log_y)
    np.testing.assert_allclose(Binomial().unit_deviance(y, P), 2 * (ylogy(y, P) + ylogy(1 - y, 1 - P)), rtol=1e-13)
    np.testing.assert_allclose(Poisson().unit_deviance(COUNTS, MU), 2 * (ylogy(COUNTS, MU) - (COUNTS - MU)), rtol=1e-12, atol=1e-15)
    mass = 2 * (COUNTS * np.log(np.maximum(1, COUNTS) / MU) - (COUNTS + THETA) * np.log((COUNTS + THETA) / (MU + THETA)))
    np.testing.assert_allclose(NegativeBinomial().unit_deviance(COUNTS, MU, dispersion=THETA), mass, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("case", sorted(CASES))
def test_deviance_residuals_square_to_the_deviance(case):
    family, y, mu, dispersion, weights = CASES[case]
    residuals = family.deviance_residuals(y, mu, weights, dispersion=dispersion)
    w = 1.0 if weights is None else weights
    deviance = np.sum(w * family.unit_deviance(y, mu, dispersion=dispersion))
    assert np.sum(residuals**2) == pytest.approx(deviance, rel=1e-12)
    assert np.all(np.sign(residuals) == np.sign(y - mu))


def test_the_negative_binomial_needs_its_dispersion():
    for method in (lambda f: f.variance(MU), lambda f: f.unit_deviance(COUNTS, MU), lambda f: f.log_likelihood(COUNTS, MU, None)):
        with pytest.raises(ArgumentError, match=r"negative binomial family's .* depends on its dispersion θ: pass dispersion=θ"):
            method(NegativeBinomial())


# ----- variance, starting means, flags -------------------------------------------------------------------
def test_variance_functions_are_rs():
    np.testing.assert_array_equal(Gaussian(link="log").variance(MU), np.ones(N))
    np.testing.assert_allclose(Binomial(link="probit").variance(P), P * (1 - P), rtol=1e-15)
    np.testing.assert_allclose(Poisson().variance(MU), MU, rtol=0)
    np.testing.assert_allclose(NegativeBinomial().variance(MU, THETA), MU + MU**2 / THETA, rtol=1e-15)


def test_initial_means_are_rs_mustart():
    y = SUCCESSES / TRIALS
    np.testing.assert_allclose(Binomial().initial_mu(y, TRIALS), (SUCCESSES + 0.5) / (TRIALS + 1), rtol=1e-14)
    np.testing.assert_allclose(Binomial().initial_mu(np.array([0.0, 1.0])), [0.25, 0.75], rtol=0)
    np.testing.assert_allclose(Poisson().initial_mu(COUNTS), COUNTS + 0.1, rtol=0)
    np.testing.assert_allclose(NegativeBinomial().initial_mu(COUNTS), COUNTS + 0.1, rtol=0)
    np.testing.assert_array_equal(Gaussian(link="log").initial_mu(MU), MU)


def test_family_flags():
    table = {  # family: canonical, has_dispersion, has_sufficient_statistics, distribution
        Gaussian(): (True, True, True, "Normal"),
        Gaussian(link="log"): (False, True, False, "Normal"),
        Binomial(): (True, False, False, "Binomial"),
        Binomial(link="probit"): (False, False, False, "Binomial"),
        Binomial(link="cloglog"): (False, False, False, "Binomial"),
        Poisson(): (True, False, False, "Poisson"),
        NegativeBinomial(): (False, True, False, "NegativeBinomial"),
    }
    for family, flags in table.items():
        assert (family.canonical, family.has_dispersion, family.has_sufficient_statistics, family.distribution) == flags, family
    assert Binomial().dispersion_prior_scale(3.0) is None and Poisson().dispersion_prior_scale(3.0) is None
    assert NegativeBinomial().dispersion_prior_scale(3.0) == 1.0
    assert str(NegativeBinomial()) == "negative binomial (log link)"


# ----- the PyMC likelihood is the family's -------------------------------------------------------------------
@pytest.mark.parametrize("case", ["gaussian", "binomial", "bernoulli", "poisson", "negative_binomial"])
def test_distribution_parameters_give_pymc_the_same_log_likelihood(case):
    pm = pytest.importorskip("pymc")
    family, y, mu, dispersion, weights = CASES[case]
    if family.name in ("Poisson", "negative binomial"):
        weights = None  # PyMC's distribution cannot carry weights that multiply the log-likelihood
    distribution = getattr(pm, family.distribution).dist(**family.distribution_parameters(mu, dispersion, weights))
    logp = pm.logp(distribution, family.observed(y, weights)).eval()
    np.testing.assert_allclose(logp, family.log_likelihood(y, mu, dispersion, weights), rtol=1e-9)


@pytest.mark.parametrize("family", [Poisson(), NegativeBinomial()])
def test_pymc_parameters_refuse_weights_that_multiply_the_likelihood(family):
    with pytest.raises(ArgumentError, match=rf"{family.name} family's prior weights multiply its log-likelihood"):
        family.distribution_parameters(MU, THETA, W)


# ----- predictive draws: moments within Monte Carlo error ----------------------------------------------------
def assert_moments(draws, mean, variance):
    """Sample mean and variance over axis 0 within 4.5 Monte Carlo standard errors of the truth."""
    n = draws.shape[0]
    centred = draws - draws.mean(axis=0)
    fourth = (centred**4).mean(axis=0)
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 4.5 * np.sqrt(variance / n))
    assert np.all(np.abs(draws.var(axis=0) - variance) < 4.5 * np.sqrt((fourth - variance**2) / n))


def test_predictive_draws_have_each_familys_moments():
    n, rng = 100_000, np.random.default_rng(7)
    mu, trials = np.array([0.05, 0.4, 0.9]), np.array([1.0, 7.0, 25.0])
    draws = Binomial().predictive_draws(np.broadcast_to(mu, (n, 3)), None, rng, trials)
    assert np.all(np.isin(np.round(draws * trials, 9), np.arange(26)))  # proportions of whole successes
    assert_moments(draws, mu, mu * (1 - mu) / trials)
    bernoulli = Binomial().predictive_draws(np.broadcast_to(mu, (n, 3)), None, rng)
    assert set(np.unique(bernoulli)) == {0.0, 1.0}
    assert_moments(bernoulli, mu, mu * (1 - mu))
    counts = np.array([0.3, 4.0, 60.0])
    assert_moments(Poisson().predictive_draws(np.broadcast_to(counts, (n, 3)), None, rng), counts, counts)
    theta = np.array([0.8, 3.0, 40.0])
    assert_moments(NegativeBinomial().predictive_draws(np.broadcast_to(counts, (n, 3)), theta, rng), counts,
                   counts + counts**2 / theta)
    weights = np.array([0.25, 1.0, 9.0])
    assert_moments(Gaussian().predictive_draws(np.broadcast_to(counts, (n, 3)), 2.0, rng, weights), counts, 4.0 / weights)


# ----- names, links, and which fits take which family ----------------------------------------------------------
@pytest.mark.parametrize(("family", "link"), [(Gaussian, "logit"), (Gaussian, "Identity"), (Gaussian, None),
                                              (Binomial, "log"), (Poisson, "identity"), (NegativeBinomial, "sqrt")])
def test_a_link_the_family_does_not_have_is_refused(family, link):
    default = family.links[0]
    with pytest.raises(ArgumentError, match=rf"family supports the link\(s\) '{default}'.*, not {link!r}; "
                                            rf"write {family.__name__}\(link='{default}'\)"):
        family(link=link)


def test_families_compare_by_kind_and_link():
    assert Gaussian() == Gaussian(link="identity") and hash(Gaussian()) == hash(Gaussian())
    assert Gaussian() != Gaussian(link="log") and Binomial() != Binomial(link="probit")
    assert str(Gaussian()) == "Gaussian (identity link)"
    assert Gaussian() != Poisson()


def test_families_by_name():
    assert [as_family(name) for name in FAMILY_NAMES] == [Gaussian(), Binomial(), Poisson(), NegativeBinomial()]
    assert as_family(None) == Gaussian() and as_family(Binomial(link="probit")) == Binomial(link="probit")
    with pytest.raises(ArgumentError, match=r"family must be a bayesmix family such as bm.Binomial\(link='probit'\), or one of "
                                            r"the names 'gaussian', 'binomial', 'poisson', 'negative_binomial'; not 'gamma'"):
        as_family("gamma")
    with pytest.raises(ArgumentError, match="not <class"):
        as_family(Binomial)


# ----- the design carries the family and validates the response through it -------------------------------
def test_the_design_carries_its_family(sleep):
    design = bm.make_design(SLEEP, sleep)
    assert design.family == Gaussian()
    assert "response: Reaction (Gaussian (identity link))" in repr(design)
    counted = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"].round()), family="poisson")
    assert counted.family == Poisson()
    flags = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"] > 300), family=bm.Binomial(link="probit"))
    np.testing.assert_array_equal(flags.rows.y, (sleep["Reaction"] > 300).to_numpy(float))


@pytest.mark.parametrize(
    ("family", "change", "message"),
    [
        (Gaussian(), lambda y: y.astype(str), r"'Reaction' has dtype str; a Gaussian mixed model needs a numeric response"),
        (Gaussian(), lambda y: y > 300, r"'Reaction' has dtype bool; a Gaussian mixed model"),
        (Poisson(), lambda y: y > 300, r"'Reaction' has dtype bool; a Poisson mixed model"),
        (Binomial(), lambda y: y.astype(str), r"binomial response 'Reaction' has 180 level\(s\) .* needs exactly two"),
        (Gaussian(), lambda y: y.where(y < 400, np.inf), r"The response 'Reaction' has \d+ infinite or undefined value\(s\)"),
        (Poisson(), lambda y: y.round().where(y < 400, np.inf), r"'Reaction' has \d+ infinite or undefined"),
        (Gaussian(), lambda y: y * 0 + 250.0, r"The response 'Reaction' is constant \(250\); there is nothing to model"),
        (Binomial(), lambda y: y * 0 + 1.0, r"The response 'Reaction' is constant \(1\)"),
        (Poisson(), lambda y: y * 0 + 3.0, r"The response 'Reaction' is constant \(3\)"),
        (NegativeBinomial(), lambda y: y * 0, r"The response 'Reaction' is constant \(0\)"),
        (Poisson(), lambda y: y, r"The response 'Reaction' has 179 non-integer value\(s\) \(first: 249\.56\); a Poisson "
                                 r"response is a count"),
        (NegativeBinomial(), lambda y: (y - 300).round(), r"The response 'Reaction' has \d+ negative value\(s\) \(first: -"
                                                          r"\d+\); a negative binomial response is a count"),
        (Binomial(), lambda y: y / 300, r"The response 'Reaction' has 78 value\(s\) outside \[0, 1\] .* more successes "
                                        r"than trials"),
        (Binomial(), lambda y: y / 500, r"The response 'Reaction' has 180 value\(s\) strictly between 0 and 1 .* and no "
                                        r"weights; a binomial proportion needs weights="),
        (Gaussian(link="log"), lambda y: y - 300, r"The response 'Reaction' has 102 value\(s\) ≤ 0 .* Gaussian family with "
                                                  r"the log link starts from μ = y"),
    ],
)
def test_invalid_responses_are_named(sleep, family, change, message):
    """Counts in the messages: 179 of sleepstudy's 180 reaction times are not whole numbers, 78 exceed 300 ms and
    102 do not."""
    with pytest.raises(DataError, match=message):
        bm.make_design(SLEEP, sleep.assign(Reaction=change(sleep["Reaction"])), family=family)


@pytest.mark.parametrize(
    ("family", "y", "weights", "message"),
    [
        (Binomial(), [0.5, 0.25, 1.0], [2.0, 4.5, 3.0], r"weights of the binomial response 'y' are numbers of trials and "
                                                         r"must be whole numbers; 1 are not \(first: 4\.5\)"),
        (Binomial(), [0.5, 0.3, 1.0], [2.0, 4.0, 3.0], r"binomial response 'y' gives 1 row\(s\) a number of successes "
                                                        r".* not a whole number \(first: 1\.2\)"),
        (Binomial(), [0.5, 1.5, 1.0], [2.0, 2.0, 3.0], r"'y' has 1 value\(s\) outside \[0, 1\] \(first: 1\.5\)"),
        (Binomial(), [0.5, 0.5, 1.0], [2.0, 0.0, 3.0], r"weights of the response 'y' have 1 value\(s\) that are not positive"),
        (Gaussian(), [0.5, 0.5, 1.0], [2.0, -1.0, np.nan], r"weights of the response 'y' have 2 value\(s\) that are not "
                                                           r"positive and finite \(first: -1\)"),
        (Poisson(), [1.0, 2.0, 3.0], [1.0, np.inf, 1.0], r"weights of the response 'y' have 1 value\(s\)"),
    ],
)
def test_invalid_weights_are_named(family, y, weights, message):
    with pytest.raises(DataError, match=message):
        family.check_values("y", np.array(y), np.array(weights))


def test_valid_weighted_responses_pass():
    Binomial().check_values("y", SUCCESSES / TRIALS, TRIALS)
    Binomial().check_values("y", np.array([1 / 3, 2 / 3, 0.1]), np.array([3.0, 3.0, 10.0]))
    Poisson().check_values("y", COUNTS, W)
    NegativeBinomial().check_values("y", COUNTS)
    Gaussian(link="log").check_values("y", MU, W)


def test_a_pyarrow_or_nullable_numeric_response_is_numeric(sleep):
    plain = bm.make_design(SLEEP, sleep)
    for dtype in ("Float64", "double[pyarrow]"):
        np.testing.assert_array_equal(bm.make_design(SLEEP, sleep.astype({"Reaction": dtype})).rows.y, plain.rows.y)


# ----- the backends ask the family ------------------------------------------------------------------------
def test_reml_refuses_a_family_other_than_the_linear_gaussian(sleep):
    counts = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"].round()), family=Poisson())
    with pytest.raises(ArgumentError, match=r"REML and ML .* fits the Gaussian \(identity link\) family only .* family is "
                                            r"Poisson \(log link\); .* use model.fit_ml\(\)"):
        bm.fit_reml(counts)
    with pytest.raises(ArgumentError, match=r"family is Gaussian \(log link\)"):
        bm.fit_reml(bm.make_design(SLEEP, sleep, family=Gaussian(link="log")))


def test_the_bayesian_backend_samples_a_glmm_with_the_full_model(sleep):
    design = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"] > 300), family="binomial")
    assert bm.BayesModel(design).method == "full"
    with pytest.raises(ArgumentError, match=r"sufficient statistics, which the binomial \(logit link\) family does not "
                                            r"have, or given the linear predictor, which needs an observation-level "
                                            r"effect.*: use method='full'"):
        bm.BayesModel(design, method="collapsed")


def test_dask_input_needs_a_family_with_sufficient_statistics(sleep):
    dd = pytest.importorskip("dask.dataframe")
    from bayesmix.data.dask_data import dask_design

    with pytest.raises(DataError, match=r"sufficient statistics, which the Poisson \(log link\) family does not have"):
        dask_design(SLEEP, dd.from_pandas(sleep.assign(Reaction=sleep["Reaction"].round()), npartitions=2), family=Poisson())


def test_log1p_from_a_sum_is_log1p_to_within_five_units_in_the_last_place():
    """The logit row's log(1 + e) from one log and one division (Goldberg's formula) against
    numpy's log1p, from 0 and subnormal e up to 1, where 1 + e rounds to 1 and where it does not."""
    from bayesmix.families import log1p_from

    rng = np.random.default_rng(3)
    x = np.concatenate([[0.0, 5e-324, 1e-300, 1.1e-16, 2.3e-16, 0.5, 1.0], 10.0 ** rng.uniform(-20, 0, 20_000),
                        rng.uniform(0, 1, 20_000)])
    got = np.array([log1p_from(v, 1.0 + v) for v in x])
    expected = np.log1p(x)
    assert np.all(np.abs(got - expected) <= 5 * np.spacing(expected) + 0.0)
