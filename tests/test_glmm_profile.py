"""Profile-likelihood intervals of GLMM fits against lme4's ``confint(fit, method = "profile")``
(tests/reference/glmm_profile.R: cbpp by Laplace and by 25-point adaptive quadrature,
grouseticks with one and with two grouping factors, a simulated binomial model with a
correlated random intercept and slope and a simulated singular one (sd 0), each
fitted by glmer with tolPwrss = 1e-12 so that lme4 reaches the optimum our fits reach)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.reml.laplace_profile import LaplaceProfile

from .conftest import glmm_file

REFERENCE = {m["name"]: m for m in json.loads((Path(__file__).parent / "reference" / "glmm_profile.json").read_text())["models"]}
Z = 1.959963984540054


def ticks() -> pd.DataFrame:
    return pd.read_csv(glmm_file("grouseticks.csv"), dtype={"INDEX": str, "BROOD": str, "YEAR": str, "LOCATION": str})


def local(name: str) -> pd.DataFrame:
    """A data set the reference script simulated (tests/reference/data)."""
    return pd.read_csv(Path(__file__).parent / "reference" / "data" / name)


def fit_of(name: str, cbpp: pd.DataFrame):
    reference = REFERENCE[name]
    data = {"cbpp": cbpp, "cbpp_agq25": cbpp, "grouseticks": ticks(), "grouseticks_two_factors": ticks(),
            "slopes": local("glmm_slopes.csv"), "singular": local("glmm_singular.csv")}[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # the singular fit says so
        return bm.Model(reference["formula"], data, reference["family"]).fit_ml(nagq=reference["nAGQ"])


@pytest.mark.parametrize("name", ["cbpp", "cbpp_agq25", "grouseticks", "singular",
                                  pytest.param("grouseticks_two_factors", marks=pytest.mark.slow),
                                  pytest.param("slopes", marks=pytest.mark.slow)])
def test_profile_intervals_match_lme4(name, cbpp):
    reference = REFERENCE[name]
    fit = fit_of(name, cbpp)
    np.testing.assert_allclose(fit.theta_values, reference["theta"], rtol=2e-5, atol=0)  # both at the optimum
    table = fit.confint("profile")
    assert list(table.columns) == ["estimate", "lower", "upper"]
    assert len(table) == len(reference["parameters"])
    k = fit.structure.n_theta  # SDs and correlations first (lme4's .sig01, ...), then the fixed effects
    lower, upper = np.array(reference["lower"]), np.array(reference["upper"])
    np.testing.assert_allclose(table["lower"].iloc[:k], lower[:k], rtol=0, atol=1e-2)
    np.testing.assert_allclose(table["upper"].iloc[:k], upper[:k], rtol=0, atol=1e-2)
    np.testing.assert_allclose(table["lower"].iloc[k:], lower[k:], rtol=0, atol=1e-3)
    np.testing.assert_allclose(table["upper"].iloc[k:], upper[k:], rtol=0, atol=1e-3)
    np.testing.assert_allclose(table["estimate"].iloc[k:], fit.beta_values, rtol=0, atol=0)
    at_bound = lower == 0.0  # the profile stays below the cutoff down to an SD of 0: the bound is the limit
    assert (table["lower"][at_bound] == 0.0).all()
    assert (table["lower"][~at_bound] < table["estimate"][~at_bound]).all() and (table["estimate"] < table["upper"]).all()


def test_profile_limits_are_where_the_deviance_rises_by_z_squared(cbpp):
    """At each limit, the deviance minimised over the other parameters is z² above its minimum
    (ζ = ±z), to the root finder's tolerance."""
    fit = fit_of("cbpp", cbpp)
    table = fit.confint("profile")
    profile = LaplaceProfile(fit)
    assert profile.minimum == pytest.approx(-2 * REFERENCE["cbpp"]["logLik"], abs=1e-6)
    for side in ("lower", "upper"):
        sd = table.loc["sd(Intercept)", side]
        deviance, _ = profile.variance_profile(0, sd, profile.x_hat)
        assert deviance - profile.minimum == pytest.approx(Z**2, abs=1e-6)
        for j, name in enumerate(fit.design.fixed_names):
            assert profile.fixed_profile(j, table.loc[name, side]) - profile.minimum == pytest.approx(Z**2, abs=1e-6)

