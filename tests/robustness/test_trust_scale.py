"""Posteriors are right at every scale the design check accepts (issue 18).

NUTS samples the data standardised (``bayesmix.bayes.standardise``) and the draws are mapped
back, so multiplying the response by f and a predictor by g multiplies the draws of β, σ, the
SDs and the effects by the matching factors and changes nothing else. With f and g powers of
two every step of the standardisation is exact, so the draws are identical bit for bit to those
at scale 1; with decimal factors the data differ in their last bits, which NUTS amplifies over
a long run, so there the posterior means are compared within their Monte Carlo errors, and
with REML fitted to the same rescaled data.
"""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm

from .conftest import SLEEP_FORMULA, quiet

SETTINGS = {"chains": 2, "draws": 200, "tune": 200, "seed": 5, "progressbar": False}
# (response factor, Days factor): powers of two, up to about 1e±20 and 1e±18
EXACT = [(2.0**-66, 1.0), (2.0**-27, 1.0), (2.0**27, 1.0), (2.0**66, 1.0), (1.0, 2.0**-60), (1.0, 2.0**60),
         (2.0**66, 2.0**-60)]
DECIMAL = [(1e-20, 1.0), (1e-8, 1.0), (1e8, 1.0), (1e20, 1.0), (1.0, 1e-20), (1.0, 1e20)]


def rescaled(sleep, fy: float, fx: float):
    return sleep.assign(Reaction=sleep["Reaction"] * fy, Days=sleep["Days"] * fx)


def sample(data, formula: str = SLEEP_FORMULA, **settings) -> bm.BayesResult:
    return quiet(bm.Model(formula, data).sample, **(SETTINGS | settings))


def unscaled(post: bm.BayesResult, fy: float, fx: float) -> dict[str, np.ndarray]:
    """The draws mapped back to the units of scale 1: Days' coefficients times fx, everything over fy."""
    days = np.array([fx if "Days" in name else 1.0 for name in post.design.fixed_names])
    effects = np.array([fx if "Days" in name else 1.0 for name in post.layouts[0].effects])
    p = post.posterior
    out = {
        "beta": p["beta"].values * days / fy,
        "sigma": p["sigma"].values / fy,
        "sd": p["sd_Subject"].values * effects / fy,
        "u": p["u_Subject"].values * effects / fy,
    }
    if "cor_Subject" in p:
        out["cor"] = p["cor_Subject"].values
    return out


def assert_same_draws(post, reference, fy: float, fx: float, rtol: float = 1e-12) -> None:
    mine, theirs = unscaled(post, fy, fx), unscaled(reference, 1.0, 1.0)
    for name in theirs:
        atol = rtol * np.abs(theirs[name]).max()
        np.testing.assert_allclose(mine[name], theirs[name], rtol=rtol, atol=atol, err_msg=name)


@pytest.fixture(scope="module")
def reference(sleep) -> bm.BayesResult:
    return sample(sleep)


@pytest.mark.parametrize(("fy", "fx"), EXACT)
def test_draws_follow_a_rescaled_response_or_predictor_exactly(sleep, reference, fy, fx):
    post = sample(rescaled(sleep, fy, fx))
    assert_same_draws(post, reference, fy, fx)
    np.testing.assert_allclose(post.predict().mean / fy, reference.predict().mean, rtol=1e-12)
    # the log-likelihood is in the data's units: each row's density carries the Jacobian 1 / fy
    np.testing.assert_allclose(post.log_likelihood().values + np.log(fy), reference.log_likelihood().values, atol=1e-9)


@pytest.mark.parametrize(("fy", "fx"), DECIMAL)
def test_posterior_at_a_decimal_scale_matches_scale_one_and_reml(sleep, reference, fy, fx):
    data = rescaled(sleep, fy, fx)
    post = sample(data)
    table, base = post.summary(), reference.summary()
    factor = {"Intercept": fy, "Days": fy / fx, "sigma": fy}
    for name, f in factor.items():
        # the two runs are correlated (same seed, nearly the same data): independent-run MCSEs are conservative
        tolerance = 4 * np.hypot(table.loc[name, "mcse_mean"] / f, base.loc[name, "mcse_mean"])
        assert abs(table.loc[name, "mean"] / f - base.loc[name, "mean"]) < tolerance, name
    slope = quiet(bm.Model(SLEEP_FORMULA, data).fit_reml).fixef()["Days"]
    assert abs(table.loc["Days", "mean"] - slope) < table.loc["Days", "sd"]
    assert abs(slope * fx / fy - 10.4673) < 1e-3  # lme4's estimate at scale 1


def test_decimal_scales_agree_to_rounding_over_a_short_run(sleep):
    """Before NUTS has had time to amplify the last bits, decimal rescaling changes the draws only by rounding."""
    short = {"draws": 30, "tune": 30}
    base = sample(sleep, **short)
    for fy, fx in [(1e-20, 1e20), (1e20, 1e-8)]:
        assert_same_draws(sample(rescaled(sleep, fy, fx), **short), base, fy, fx, rtol=1e-6)


def test_priors_keep_their_meaning_in_the_data_units(sleep):
    """User priors of every family, given in the data's units, are carried exactly to the sampler's."""

    def priors(f):
        return [
            bm.prior("Intercept", bm.StudentT(4, 250 * f, 50 * f)),
            bm.prior("b", bm.Normal(5 * f, 1 * f), coef="Days"),  # informative: pulls the slope from 10.5 towards 5
            bm.prior("sigma", bm.Exponential(1 / (30 * f))),
            bm.prior("sd", bm.HalfNormal(30 * f), coef="Intercept"),
            bm.prior("sd", bm.HalfStudentT(3, 5 * f), coef="Days"),
            bm.prior("cor", bm.LKJ(3.0)),
        ]

    base = sample(sleep, priors=priors(1.0))
    for f in (2.0**-66, 2.0**66):
        assert_same_draws(sample(rescaled(sleep, f, 1.0), priors=priors(f)), base, f, 1.0)
    post = sample(rescaled(sleep, 1e20, 1.0), priors=priors(1e20))
    for result, f in ((base, 1.0), (post, 1e20)):
        assert 5.5 < result.fixef().loc["Days", "mean"] / f < 8.5


def test_a_model_without_intercept_is_scaled_without_centring(sleep):
    formula = "Reaction ~ 0 + Days + (Days || Subject)"
    base = sample(sleep, formula)
    assert_same_draws(sample(rescaled(sleep, 2.0**-66, 2.0**40), formula), base, 2.0**-66, 2.0**40)


@pytest.mark.slow  # nutpie compiles the full PyMC model
def test_the_full_model_follows_a_rescaled_response_and_predictor_exactly(sleep):
    """method='full' (a PyMC model compiled by nutpie) standardises the rows as the collapsed method does."""
    settings = {"method": "full", "draws": 100, "tune": 100}
    base = sample(sleep, **settings)
    fy, fx = 2.0**66, 2.0**-60
    assert_same_draws(sample(rescaled(sleep, fy, fx), **settings), base, fy, fx)
    assert abs(base.fixef().loc["Days", "mean"] - 10.4673) < base.fixef().loc["Days", "sd"]
