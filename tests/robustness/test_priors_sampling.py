"""Priors of the wrong shape, sign or target, and sampling settings out of range: PriorError / ArgumentError."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix import ArgumentError, PriorError


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: bm.Normal(np.zeros(2), 1), r"Normal parameter mu=array\(\[0., 0.\]\) must be one finite number"),
        (lambda: bm.Normal(0, [1, 2]), r"Normal parameter sigma=\[1, 2\] must be one finite number"),
        (lambda: bm.Normal(np.array(1.0), 1), r"Normal parameter mu=array\(1.\) must be one finite number"),
        (lambda: bm.Normal("0", 1), r"Normal parameter mu='0' must be one finite number"),
        (lambda: bm.Normal(0, True), r"Normal parameter sigma=True must be one finite number"),
        (lambda: bm.Normal(np.nan, 1), r"Normal parameter mu=nan must be one finite number"),
        (lambda: bm.Exponential(np.inf), r"Exponential parameter lam=inf must be one finite number"),
        (lambda: bm.Normal(0, -1), r"Normal parameter sigma=-1 must be positive"),
        (lambda: bm.HalfNormal(0), r"HalfNormal parameter sigma=0 must be positive"),
        (lambda: bm.HalfStudentT(3, -2.5), r"HalfStudentT parameter sigma=-2.5 must be positive"),
        (lambda: bm.StudentT(-1), r"StudentT parameter nu=-1 must be positive"),
        (lambda: bm.LKJ(-1), r"LKJ parameter eta=-1 must be positive"),
        (lambda: bm.Exponential(0), r"Exponential parameter lam=0 must be positive"),
        (lambda: bm.prior("beta", bm.Normal()), r"Unknown prior class 'beta'; use one of Intercept, b, sigma, shape, sd, cor"),
        (lambda: bm.prior("b", 3), r"must be a bayesmix distribution such as Normal\(0, 1\), not 3"),
        (lambda: bm.prior("sd", bm.Normal()), r"prior for 'sd' must be for a positive quantity .*not Normal"),
        (lambda: bm.prior("b", bm.LKJ()), r"LKJ only suits class 'cor'"),
        (lambda: bm.prior("cor", bm.HalfNormal()), r"Correlation matrices take an LKJ\(eta\) prior"),
        (lambda: bm.prior("Intercept", bm.Normal(), coef="Days"), r"Class 'Intercept' has no coefficients; drop coef='Days'"),
        (lambda: bm.prior("sigma", bm.HalfNormal(), group="Subject"), r"Class 'sigma' is not per grouping factor; drop group='Subject'"),
        (lambda: bm.prior("b", bm.Normal(), group="Subject"), r"Class 'b' is not per grouping factor; drop group='Subject'"),
        (lambda: bm.prior("b", bm.Normal(), coef=3), r"coef must be a name \(a string\) or None, not 3"),
        (lambda: bm.prior("sd", bm.HalfNormal(), group=["Subject"]), r"group must be a name \(a string\) or None, not \['Subject'\]"),
    ],
)
def test_bad_prior_specifications(make, message):
    with pytest.raises(PriorError, match=message):
        make()


@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ([bm.prior("b", bm.Normal(), coef="days")], r"No fixed effect matches the 'b' prior with coef='days'; the model has: Days"),
        ([bm.prior("sd", bm.HalfNormal(), group="subject")], r"No random effect matches the 'sd' prior with group='subject'; the model has: Subject/Intercept, Subject/Days"),
        ([bm.prior("sd", bm.HalfNormal(), coef="days")], r"No random effect matches the 'sd' prior with coef='days'"),
        ([bm.prior("cor", bm.LKJ(), group="subject")], r"No correlated term matches the 'cor' prior with group='subject'; the model has: Subject"),
        (bm.prior("b", bm.Normal()), r"priors must be a list of bayesmix.prior\(...\) overrides, not Prior; wrap a single one in a list"),
        (["b"], r"Priors must be made with bayesmix.prior\(...\), not 'b'"),
        ([bm.Normal(0, 1)], r"Priors must be made with bayesmix.prior\(...\), not Distribution"),
    ],
)
def test_priors_that_do_not_fit_the_model(sleep_model, priors, message):
    with pytest.raises(PriorError, match=message):
        sleep_model.sample(priors, draws=10, tune=10, chains=1, progressbar=False)


def test_intercept_prior_without_an_intercept(sleep):
    model = bm.Model("Reaction ~ 0 + Days + (1 | Subject)", sleep)
    with pytest.raises(PriorError, match=r"no intercept, so an 'Intercept' prior does not apply"):
        model.bayes_model([bm.prior("Intercept", bm.Normal(250, 50))])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"draws": 0}, r"draws must be an integer from 1 to 2147483647, not 0"),
        ({"draws": -5}, r"draws must be an integer from 1 to 2147483647, not -5"),
        ({"draws": 1.5}, r"draws must be an integer from 1 to 2147483647, not 1.5"),
        ({"draws": "100"}, r"draws must be an integer from 1 to 2147483647, not '100'"),
        ({"draws": True}, r"draws must be an integer from 1 to 2147483647, not True"),
        ({"chains": 0}, r"chains must be an integer from 1 to 2147483647, not 0"),
        ({"chains": None}, r"chains must be an integer from 1 to 2147483647, not None"),
        ({"tune": -1}, r"tune must be an integer from 1 to 2147483647 with sampler='nutpie' \(tune=0 needs sampler='pymc'\), not -1"),
        ({"target_accept": 0}, r"target_accept must lie strictly between 0 and 1, not 0"),
        ({"target_accept": 1.0}, r"target_accept must lie strictly between 0 and 1, not 1.0"),
        ({"target_accept": "0.9"}, r"target_accept must lie strictly between 0 and 1, not '0.9'"),
        ({"target_accept": np.nan}, r"target_accept must lie strictly between 0 and 1, not nan"),
        ({"target_accept": True}, r"target_accept must lie strictly between 0 and 1, not True"),
        ({"seed": -1}, r"seed must be a non-negative integer below 2\*\*64, or None, not -1"),
        ({"seed": 1.5}, r"seed must be a non-negative integer .*not 1.5"),
        ({"seed": "a"}, r"seed must be a non-negative integer .*not 'a'"),
        ({"seed": np.random.default_rng(1)}, r"seed must be a non-negative integer .*not Generator"),
        ({"seed": 2**64}, r"seed must be a non-negative integer below 2\*\*64, or None, not 18446744073709551616"),
        ({"sampler": "stan"}, r"sampler must be one of nutpie, pymc, not 'stan'"),
        ({"progressbar": "no"}, r"progressbar must be True or False, not 'no'"),
        ({"method": "fast"}, r"method must be one of auto, collapsed, full, gibbs, laplace, not 'fast'"),
        ({"parameterization": "centered"}, r"parameterization must be one of noncentred, centred, auto, or a dict from grouping factor to noncentred or centred, not 'centered'"),
    ],
)
def test_sampling_settings_out_of_range(sleep_model, settings, message):
    with pytest.raises(ArgumentError, match=message):
        sleep_model.sample(**{"draws": 10, "tune": 10, "chains": 1, "progressbar": False, **settings})


def test_numpy_integer_settings_are_accepted(sleep_model):
    with pytest.warns(bm.ConvergenceWarning):  # 2 x 20 draws cannot reach 400 effective draws
        post = sleep_model.sample(draws=np.int64(20), tune=np.int32(20), chains=np.int64(2), seed=np.uint64(2**63 + 1), progressbar=False)
    assert post.posterior.sizes == {"chain": 2, "draw": 20, **{k: v for k, v in post.posterior.sizes.items() if k not in ("chain", "draw")}}


@pytest.mark.parametrize("prob", [0, 1, 1.5, -0.1, "0.9", True])
def test_interval_probabilities_are_checked(sleep_post, prob):
    with pytest.raises(ArgumentError, match=rf"ci_prob must be a probability strictly between 0 and 1, e.g. 0.95, not {prob!r}"):
        sleep_post.summary(ci_prob=prob)
    with pytest.raises(ArgumentError, match=r"prob must be a probability strictly between 0 and 1"):
        sleep_post.predict().interval(prob)


def test_compare_takes_a_reml_fit_and_a_posterior(sleep_reml, sleep_post):
    with pytest.raises(ArgumentError, match=r"compare\(fit, bayes\) takes a REML/ML fit and a BayesResult, not BayesResult and BayesResult"):
        bm.compare(sleep_post, sleep_post)
    with pytest.raises(ArgumentError, match=r"not RemlResult and int"):
        bm.compare(sleep_reml, 3)
    table = bm.compare(sleep_reml, sleep_post)
    assert list(table.index) == list(sleep_post.summary().index) and not table["boundary"].any()
