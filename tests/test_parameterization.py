"""Centred, non-centred and per-factor random effects of the full model: the ``parameterization``
argument, the rule of ``"auto"`` (exact algebra of its precision ratios), and centred and
non-centred posteriors agreeing within Monte Carlo error. The densities themselves are checked
against the PyMC model's in tests/test_full_density.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.bayes.model import BayesModel
from bayesmix.bayes.parameterization import (
    CENTRED_PRECISION_RATIO, NESTED_CENTRED_PRECISION_RATIO, PARTIAL_WEIGHT, hierarchy, informative, partial_weights,
    precision_ratios,
)
from bayesmix.errors import ArgumentError


def counts(levels: int = 6, seed: int = 0) -> pd.DataFrame:
    """A count, trials and successes per row; factor g with 3, 4, ... rows per level, h crossed."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(levels), np.arange(3, 3 + levels))
    n = g.size
    return pd.DataFrame({"g": [f"g{i}" for i in g], "h": [f"h{i % 4}" for i in range(n)], "x": rng.normal(size=n),
                         "count": rng.poisson(3.0, n), "trials": rng.integers(1, 9, n),
                         "s": rng.integers(0, 2, n)})


def test_precision_ratios_are_the_levels_fisher_information_at_the_mean():
    data = counts()
    sizes = np.arange(3, 9)
    # Poisson, log link: each row's working weight is μ̄, the mean count; one factor: r_j = n_j μ̄
    ratios = precision_ratios(bm.make_design("count ~ x + (1 | g)", data, family="poisson"))
    np.testing.assert_allclose(ratios["g"], sizes * data["count"].mean(), rtol=1e-12)
    # binomial, logit: trials μ̄(1 - μ̄), μ̄ the pooled proportion; a second (crossed) factor adds
    # the variance 1 of its effects to each row's 1/W
    mu = np.minimum(data["s"], data["trials"]).sum() / data["trials"].sum()
    data["s"] = np.minimum(data["s"], data["trials"])
    ratios = precision_ratios(bm.make_design("cbind(s, trials - s) ~ x + (1 | g) + (1 | h)", data, family="binomial"))
    per_row = 1.0 / (1.0 / (data["trials"] * mu * (1 - mu)) + 1.0)
    np.testing.assert_allclose(ratios["g"], per_row.groupby(data["g"]).sum().to_numpy(), rtol=1e-12)
    np.testing.assert_allclose(ratios["h"], per_row.groupby(data["h"]).sum().to_numpy(), rtol=1e-12)


def test_auto_centres_the_factors_whose_levels_the_data_determine(cbpp):
    # cbpp: about 4 periods of 15 animals per herd, incidence 11 %: r ≈ 6, non-centred
    model = BayesModel(bm.make_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp,
                                      family="binomial"))
    assert model.centred == (False,) and model.partial == (PARTIAL_WEIGHT,)  # from r = 1: partially non-centred
    assert model.description == "full (random effects partially noncentred for herd (w = 0.5))"
    assert BayesModel(model.design, parameterization="noncentred").partial == (0.0,)  # "auto" only
    # 200 groups of 50 Bernoulli rows at a mean near 1/2: r ≈ 12, centred
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(200), 50)
    x = rng.normal(size=g.size)
    y = rng.random(g.size) < 1 / (1 + np.exp(-(x + rng.normal(0, 1, 200)[g])))
    data = pd.DataFrame({"y": y.astype(int), "x": x, "g": g.astype(str)})
    design = bm.make_design("y ~ x + (x | g)", data, family="binomial")
    assert np.median(precision_ratios(design)["g"]) > CENTRED_PRECISION_RATIO
    assert BayesModel(design).centred == (True,) and BayesModel(design).description == "full (centred random effects)"


def test_nested_factors_count_only_the_factors_that_do_not_nest_them():
    # sub splits every level of g in two, obs is one level per row: obs in sub in g
    data = counts()
    data["sub"] = data["g"] + ":" + (np.arange(len(data)) % 2).astype(str)
    data["obs"] = [f"o{i}" for i in range(len(data))]
    design = bm.make_design("count ~ x + (1 | g) + (1 | sub) + (1 | obs)", data, family="poisson")
    assert hierarchy(design).parent == (-1, 0, 1)
    ratios, mu = precision_ratios(design), data["count"].mean()
    # Poisson: W = μ̄ per row; g counts sub's and obs's variance 1 as noise, sub only obs's, obs none
    np.testing.assert_allclose(ratios["g"], data.groupby("g").size().to_numpy() / (1 / mu + 2), rtol=1e-12)
    np.testing.assert_allclose(ratios["sub"], data.groupby("sub").size().to_numpy() / (1 / mu + 1), rtol=1e-12)
    np.testing.assert_allclose(ratios["obs"], np.full(len(data), mu), rtol=1e-12)
    # the nested factors are centred from r = 1, the outermost from r = 10
    assert NESTED_CENTRED_PRECISION_RATIO <= np.median(ratios["sub"]) and np.median(ratios["g"]) < CENTRED_PRECISION_RATIO
    assert informative(design) == {"g": False, "sub": True, "obs": True}
    assert BayesModel(design, method="full").centred == (False, True, True)
    # g, left non-centred with 1 <= r < 10, is partially non-centred; centred terms never are
    assert partial_weights(design, "auto", (False, True, True)) == (PARTIAL_WEIGHT, 0.0, 0.0)
    assert partial_weights(design, "auto", (False, False, False)) == (PARTIAL_WEIGHT,) * 3
    assert partial_weights(design, "noncentred", (False, False, False)) == (0.0,) * 3


def test_parameterization_per_factor(cbpp):
    data = cbpp.assign(pair=[f"p{i % 7}" for i in range(len(cbpp))])
    design = bm.make_design("cbind(incidence, size - incidence) ~ period + (1 | herd) + (1 | pair)", data, family="binomial")
    model = BayesModel(design, parameterization={"pair": "centred"})
    assert model.centred == (False, True) and model.precompiled
    assert model.description == "full (random effects centred for pair, noncentred for herd)"
    assert BayesModel(design, parameterization="centred").centred == (True, True)
    with pytest.raises(ArgumentError, match=r"grouping factors the model does not have: 'farm'; its grouping factors are 'herd', 'pair'"):
        BayesModel(design, parameterization={"farm": "centred"})
    with pytest.raises(ArgumentError, match=r"maps each grouping factor to one of noncentred, centred, not 'herd': 'centered'"):
        BayesModel(design, parameterization={"herd": "centered"})


def test_centred_noncentred_and_partially_noncentred_posteriors_agree(cbpp):
    """The same posterior every way ("auto": partially non-centred): means within 4 combined Monte
    Carlo standard errors, posterior SDs within 10 %."""
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    a, *others = [model.sample(draws=1000, tune=1000, chains=4, seed=5, progressbar=False, target_accept=0.95,
                               parameterization=p).summary() for p in ("noncentred", "centred", "auto")]
    for b in others:
        assert list(a.index) == list(b.index)
        np.testing.assert_array_less(np.abs(a["mean"] - b["mean"]), 4 * np.hypot(a["mcse_mean"], b["mcse_mean"]))
        np.testing.assert_allclose(a["sd"], b["sd"], rtol=0.1)
