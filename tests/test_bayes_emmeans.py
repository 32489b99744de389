"""Posterior marginal means (BayesResult.emmeans): the point fits' reference grid, summarised
draw by draw.

Checked by exact algebra (the posterior of l'β is that of l'β⁽ˢ⁾ over the draws; g⁻¹ per
draw on the response scale), against the REML means where the algebra says the posterior mean
is the REML estimate (sleepstudy is balanced, so with flat priors on β the posterior mean of β
is the GLS estimate at every θ, which is least squares: equal to the REML estimate, up to the
Monte Carlo error), and against brms's posterior of cbpp's coefficients.
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import bayesmix as bm
from bayesmix.bayes.emmeans import PosteriorMarginalMeans
from .conftest import glmm_file


AT = {"Days": [0, 3, 6, 9]}
FLAT = [bm.prior("Intercept", bm.Flat()), bm.prior("b", bm.Flat())]


@pytest.fixture(scope="module")
def sleep_fits(sleep):
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    return model.fit_reml(), model.sample(FLAT, draws=2000, chains=4, seed=2, progressbar=False)


def beta_draws(post) -> np.ndarray:
    return post.posterior["beta"].transpose("chain", "draw", "coef").values.reshape(-1, len(post.design.fixed_names))


def test_posterior_means_are_the_draws_of_l_beta(sleep_fits):
    reml, post = sleep_fits
    means = post.emmeans("Days", at=AT)
    assert isinstance(means, PosteriorMarginalMeans)
    pd.testing.assert_frame_equal(means.L, reml.emmeans("Days", at=AT).L)  # one reference grid
    np.testing.assert_allclose(means.L.to_numpy(), [[1.0, d] for d in AT["Days"]], rtol=0, atol=0)
    beta = beta_draws(post)
    values = beta @ means.L.to_numpy().T
    np.testing.assert_allclose(means.table["mean"], means.L.to_numpy() @ beta.mean(axis=0), rtol=1e-12, atol=0)
    np.testing.assert_allclose(means.table["sd"], values.std(axis=0, ddof=1), rtol=1e-10)
    np.testing.assert_allclose(means.draws.values.reshape(-1, 4), values, rtol=1e-14)
    lower, upper = np.quantile(values, [0.025, 0.975], axis=0)
    np.testing.assert_allclose(means.table["ci_lb"], lower, rtol=1e-10)
    np.testing.assert_allclose(means.table["ci_ub"], upper, rtol=1e-10)
    assert list(means.table.index) == AT["Days"] and means.table.index.name == "Days"


def test_flat_prior_posterior_means_match_reml_on_a_balanced_design(sleep_fits, sleep):
    reml, post = sleep_fits
    means, point = post.emmeans("Days", at=AT).table, reml.emmeans("Days", at=AT).table
    # balanced: the REML (GLS) estimate is least squares, whatever θ
    X = np.column_stack([np.ones(len(sleep)), sleep["Days"]])
    ols = np.linalg.lstsq(X, sleep["Reaction"].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(point["emmean"], np.array([[1.0, d] for d in AT["Days"]]) @ ols, rtol=1e-8)
    # so the posterior mean is that too, within Monte Carlo error
    assert (np.abs(means["mean"] - point["emmean"]) < 4 * means["mcse_mean"]).all()
    # the posterior SD also carries the variance parameters' uncertainty (and a t-like tail with
    # 18 subjects): somewhat above the REML standard error, not below it
    ratio = means["sd"] / point["std_error"]
    assert ((ratio > 1.0) & (ratio < 1.25)).all(), ratio


def test_pairs_are_differences_per_draw_with_their_probability(sleep_fits):
    reml, post = sleep_fits
    means = post.emmeans("Days", at=AT)
    pairs = means.pairs()
    assert list(pairs.index) == list(reml.emmeans("Days", at=AT).pairs().index) == ["0 - 3", "0 - 6", "0 - 9", "3 - 6",
                                                                                   "3 - 9", "6 - 9"]
    assert pairs.index.name == "contrast"
    values = means.draws.values.reshape(-1, 4)
    first = values[:, 0] - values[:, 1]
    assert pairs.loc["0 - 3", "mean"] == pytest.approx(first.mean(), rel=1e-12)
    assert pairs.loc["0 - 3", "sd"] == pytest.approx(first.std(ddof=1), rel=1e-10)
    assert pairs.loc["0 - 3", "prob_greater"] == (first > 0).mean() == 0.0  # reaction times rise with sleep deprivation
    np.testing.assert_allclose(pairs["mean"], [means.table["mean"].iloc[i] - means.table["mean"].iloc[j]
                                               for i, j in [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]], rtol=1e-10)


def test_a_linear_model_reads_the_same_on_both_scales(sleep_fits):
    _, post = sleep_fits
    link, response = post.emmeans("Days", at=AT), post.emmeans("Days", at=AT, scale="response")
    pd.testing.assert_frame_equal(link.table, response.table)
    pd.testing.assert_frame_equal(link.pairs(), response.pairs())


def test_arguments_are_checked(sleep_fits):
    _, post = sleep_fits
    with pytest.raises(bm.ArgumentError, match="scale"):
        post.emmeans("Days", at=AT, scale="probability")
    with pytest.raises(bm.ArgumentError, match="ci_prob"):
        post.emmeans("Days", at=AT, ci_prob=95)
    with pytest.raises(bm.ArgumentError, match="not predictors"):
        post.emmeans("Subject")
    with pytest.raises(bm.ArgumentError, match="at least two means"):
        post.emmeans("Days").pairs()  # Days at its mean only


def test_the_tables_print_and_render(sleep_fits):
    _, post = sleep_fits
    means = post.emmeans("Days", at=AT, ci_prob=0.9)
    assert repr(means).startswith("Posterior marginal means (link scale, 90% equal-tailed intervals):")
    html = means._repr_html_()
    assert "<table" in html and "Posterior marginal means" in html and "ci_lb" in html


@pytest.fixture(scope="module")
def cbpp_fits(cbpp):
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    # brms 2.18's defaults (tests/test_bayes_glmm.py): flat on the coefficients
    priors = [bm.prior("b", bm.Flat()), bm.prior("Intercept", bm.StudentT(3, 0, 2.5)), bm.prior("sd", bm.HalfStudentT(3, 2.5))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return model.fit_ml(), model.sample(priors, draws=1000, chains=2, seed=1, progressbar=False)


def test_glmm_link_scale_means_match_brms(cbpp_fits):
    _, post = cbpp_fits
    reference = json.loads(glmm_file("brms_cbpp.json").read_text())
    beta = np.array([reference["posterior_mean"][k] for k in ("b_Intercept", "b_period2", "b_period3", "b_period4")])
    means = post.emmeans("period")
    # the posterior mean of l'β is l' times brms's posterior mean of β (4 x 1000 draws); the
    # tolerance is the one tests/test_bayes_glmm.py allows the coefficients themselves
    assert (np.abs(means.table["mean"] - means.L.to_numpy() @ beta) < 0.15 * means.table["sd"]).all()


def test_glmm_response_scale_maps_every_draw(cbpp_fits):
    ml, post = cbpp_fits
    link, response = post.emmeans("period"), post.emmeans("period", scale="response")
    eta = beta_draws(post) @ link.L.to_numpy().T
    np.testing.assert_allclose(response.table["mean"], expit(eta).mean(axis=0), rtol=1e-12)
    assert (response.table["mean"] > expit(link.table["mean"])).all()  # expit is convex below 0: not g⁻¹ of the mean
    # interval ends: quantiles of a monotone map (up to the interpolation between draws)
    np.testing.assert_allclose(response.table[["ci_lb", "ci_ub"]], expit(link.table[["ci_lb", "ci_ub"]]), rtol=1e-5)
    # the ML means (flat priors on β) lie inside the posterior intervals
    point = ml.emmeans("period", scale="response").table
    assert ((point["emmean"] > response.table["ci_lb"]) & (point["emmean"] < response.table["ci_ub"])).all()


def test_glmm_response_scale_pairs_are_odds_ratios(cbpp_fits):
    ml, post = cbpp_fits
    pairs, link_pairs = post.emmeans("period", scale="response").pairs(), post.emmeans("period").pairs()
    assert list(pairs.index) == list(ml.emmeans("period", scale="response").pairs().index) == [
        "1 / 2", "1 / 3", "1 / 4", "2 / 3", "2 / 4", "3 / 4"]
    eta = beta_draws(post) @ post.emmeans("period").L.to_numpy().T
    odds_ratio = np.exp(eta[:, 0] - eta[:, 1])
    assert pairs.loc["1 / 2", "mean"] == pytest.approx(odds_ratio.mean(), rel=1e-12)
    np.testing.assert_allclose(pairs["prob_greater"], link_pairs["prob_greater"], rtol=0)  # ratio > 1 iff difference > 0
    assert pairs.loc["1 / 2", "prob_greater"] == pytest.approx((odds_ratio > 1).mean(), rel=0)
    np.testing.assert_allclose(pairs[["ci_lb", "ci_ub"]], np.exp(link_pairs[["ci_lb", "ci_ub"]]), rtol=1e-5)
