"""Response families: the Gaussian's likelihood, residuals and draws against independent
formulas, response validation through the family, and the backends' use of the family."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix import ArgumentError, DataError
from bayesmix.families import Family, Gaussian

SLEEP = "Reaction ~ Days + (Days | Subject)"


@dataclasses.dataclass(frozen=True)
class Counts(Family):
    """A family without dispersion or sufficient statistics (Poisson with identity link), to
    check that the backends ask the family rather than assume the Gaussian."""

    link: str = "identity"
    name: ClassVar[str] = "Counts"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    distribution: ClassVar[str] = "Poisson"
    has_dispersion: ClassVar[bool] = False
    has_sufficient_statistics: ClassVar[bool] = False

    def variance(self, mu):
        return mu

    def log_likelihood(self, y, mu, dispersion):
        return stats.poisson.logpmf(y, mu)

    def log_likelihood_derivatives(self, y, mu, dispersion):
        return y / mu - 1, -y / mu**2

    def unit_deviance(self, y, mu):
        return 2 * (stats.poisson.logpmf(y, np.maximum(y, 1e-300)) - stats.poisson.logpmf(y, mu))

    def deviance_residuals(self, y, mu):
        return np.sign(y - mu) * np.sqrt(self.unit_deviance(y, mu))

    def predictive_draws(self, mu, dispersion, rng):
        return rng.poisson(mu).astype(float)

    def distribution_parameters(self, mu, dispersion):
        return {"mu": mu}

    def dispersion_prior_scale(self, response_sd):
        raise AssertionError("a family without dispersion has no dispersion prior")


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


# ----- construction --------------------------------------------------------------------------
@pytest.mark.parametrize("link", ["log", "logit", "Identity", None, 1])
def test_a_link_the_family_does_not_have_is_refused(link):
    with pytest.raises(ArgumentError, match=rf"Gaussian family supports the link\(s\) 'identity', not {link!r}.*"
                                            r"Gaussian\(link='identity'\)"):
        Gaussian(link=link)


def test_families_compare_by_kind_and_link():
    assert Gaussian() == Gaussian(link="identity") and hash(Gaussian()) == hash(Gaussian())
    assert str(Gaussian()) == "Gaussian (identity link)"
    assert Gaussian() != Counts()


def test_a_family_must_be_a_family_object(sleep):
    with pytest.raises(ArgumentError, match=r"family must be a bayesmix family such as bm.Gaussian\(\), not 'gaussian'"):
        bm.make_design(SLEEP, sleep, family="gaussian")


# ----- the design carries the family and validates the response through it -------------------------------
def test_the_design_carries_its_family(sleep):
    design = bm.make_design(SLEEP, sleep)
    assert design.family == Gaussian()
    assert "response: Reaction (Gaussian (identity link))" in repr(design)
    counted = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"].round()), family=Counts())
    assert isinstance(counted.family, Counts)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda y: y.astype(str), r"The response column 'Reaction' has dtype str; a Gaussian mixed model needs a numeric"),
        (lambda y: y > 300, r"The response column 'Reaction' has dtype bool; a Gaussian mixed model"),
        (lambda y: y.where(y < 400, np.inf), r"The response 'Reaction' has \d+ infinite or undefined value\(s\)"),
        (lambda y: y * 0 + 250.0, r"The response 'Reaction' is constant \(250\); there is nothing to model"),
    ],
)
def test_invalid_responses_are_named(sleep, change, message):
    with pytest.raises(DataError, match=message):
        bm.make_design(SLEEP, sleep.assign(Reaction=change(sleep["Reaction"])))


def test_the_family_decides_which_dtypes_are_responses(sleep):
    """A boolean response is refused by the Gaussian and accepted by a family that says so."""
    flag = sleep.assign(Reaction=sleep["Reaction"] > 300)

    @dataclasses.dataclass(frozen=True)
    class Flags(Counts):
        dtype_kinds: ClassVar[str] = "iufb"

    with pytest.raises(DataError, match="dtype bool; a Counts mixed model"):
        bm.make_design(SLEEP, flag, family=Counts())
    np.testing.assert_array_equal(bm.make_design(SLEEP, flag, family=Flags()).rows.y, flag["Reaction"].to_numpy(float))


def test_a_pyarrow_or_nullable_numeric_response_is_numeric(sleep):
    plain = bm.make_design(SLEEP, sleep)
    for dtype in ("Float64", "double[pyarrow]"):
        np.testing.assert_array_equal(bm.make_design(SLEEP, sleep.astype({"Reaction": dtype})).rows.y, plain.rows.y)


# ----- the backends ask the family ------------------------------------------------------------------------
def test_reml_refuses_a_family_other_than_the_gaussian(sleep):
    design = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"].round()), family=Counts())
    with pytest.raises(ArgumentError, match=r"REML and ML .* fits the Gaussian family only .* family is Counts \(identity link\)"):
        bm.fit_reml(design)


def test_the_bayesian_backend_refuses_a_family_it_does_not_fit(sleep):
    design = bm.make_design(SLEEP, sleep.assign(Reaction=sleep["Reaction"].round()), family=Counts())
    with pytest.raises(ArgumentError, match=r"The Bayesian backend fits the Gaussian family only"):
        bm.BayesModel(design)


def test_dask_input_needs_a_family_with_sufficient_statistics(sleep):
    dd = pytest.importorskip("dask.dataframe")
    from bayesmix.data.dask_data import dask_design

    with pytest.raises(DataError, match=r"sufficient statistics, which the Counts \(identity link\) family does not have"):
        dask_design(SLEEP, dd.from_pandas(sleep, npartitions=2), family=Counts())
