"""The Bayesian fit of the lecture's model: diagnostics, brms agreement, predictions, checks, saving."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from matplotlib.figure import Figure

import bayesmix as bm
from bayesmix import ConvergenceWarning
from bayesmix.bayes.sampling import diagnose_draws, summarise_draws

from .conftest import MUSIC_FORMULA as FORMULA
from .conftest import shared_file

# nearly every test reads the 4 x 2000-draw full-model posterior (tests/conftest.py)
pytestmark = pytest.mark.slow

BRMS_NAMES = {
    "Intercept": "Intercept",
    "perform_typeSmall Ensemble": "perform_type[Small Ensemble]",
    "perform_typeSolo": "perform_type[Solo]",
    "sd(Intercept)": "sd(Intercept)",
    "sd(perform_typeSmall Ensemble)": "sd(perform_type[Small Ensemble])",
    "sd(perform_typeSolo)": "sd(perform_type[Solo])",
    "cor(Intercept,perform_typeSmall Ensemble)": "cor(Intercept, perform_type[Small Ensemble])",
    "cor(Intercept,perform_typeSolo)": "cor(Intercept, perform_type[Solo])",
    "cor(perform_typeSmall Ensemble,perform_typeSolo)": "cor(perform_type[Small Ensemble], perform_type[Solo])",
    "sigma": "sigma",
}


@pytest.fixture(scope="module")
def model(music):
    return bm.Model(FORMULA, music)


@pytest.fixture(scope="module")
def posterior(music_full_posterior):
    return music_full_posterior


@pytest.fixture(scope="module")
def reml(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit_reml()


def test_diagnostics_are_clean(posterior):
    d = posterior.diagnostics()
    assert d["divergences"] == 0 and d["treedepth_hits"] == 0
    assert d["max_rhat"] <= 1.01
    assert d["min_ess_bulk"] >= 400
    table = posterior.summary()
    assert list(table.index) == list(BRMS_NAMES.values())
    assert {"mean", "sd", "ci_lb", "ci_ub", "r_hat", "ess_bulk", "ess_tail", "mcse_mean"} <= set(table.columns)


def test_convergence_check_reads_the_summary_s_numbers(posterior):
    """check() and diagnostics() compute bulk and tail ESS and R-hat by ArviZ's array functions, not
    by a whole summary: the same numbers as summary()'s, to the last bit."""
    columns = ["ess_bulk", "ess_tail", "r_hat"]
    table = posterior.summary()[columns]
    narrow = diagnose_draws(posterior._parameters)
    pd.testing.assert_frame_equal(narrow[columns], table, check_exact=True)
    d = posterior.diagnostics()
    assert (d["min_ess_bulk"], d["min_ess_tail"], d["max_rhat"]) == (
        table["ess_bulk"].min(), table["ess_tail"].min(), table["r_hat"].max())


@pytest.mark.parametrize("chains, draws, constant", [(4, 3, False), (1, 50, False), (2, 50, True), (3, 40, False)])
def test_narrow_diagnostics_are_the_summary_s_where_undefined_too(chains, draws, constant):
    """Too few draws, one chain, constant draws: NaN where ArviZ's summary has NaN, else equal."""
    rng = np.random.default_rng(3)
    values = np.ones((chains, draws, 2)) if constant else rng.normal(size=(chains, draws, 2)).cumsum(axis=1)
    draws_ = xr.Dataset({"a": (("chain", "draw"), values[..., 0]), "b[x]": (("chain", "draw"), values[..., 1])})
    columns = ["ess_bulk", "ess_tail", "r_hat"]
    pd.testing.assert_frame_equal(diagnose_draws(draws_)[columns], summarise_draws(draws_, 0.95)[columns], check_exact=True)


def test_agrees_with_brms(posterior):
    brms = json.loads(shared_file("reference", "brms_music.json").read_text())["posterior_mean_sd"]
    table = posterior.summary()
    for brms_name, (mean, sd) in brms.items():
        ours = table.loc[BRMS_NAMES[brms_name]]
        # similar, not identical priors: β and σ within 0.25 posterior SD, σ_u and ρ within 0.5
        tolerance = 0.5 if brms_name.startswith(("sd(", "cor(")) else 0.25
        assert abs(ours["mean"] - mean) <= tolerance * sd, (brms_name, ours["mean"], mean, sd)
        # and our Monte Carlo error is small against that tolerance
        assert ours["mcse_mean"] < 0.05 * sd


def test_musician_one_before_a_solo(posterior, reml):
    draws = posterior.coef_draws().sel(level=1)
    solo = (draws.sel(coef="Intercept") + draws.sel(coef="perform_type[Solo]")).values.ravel()
    reml_value = reml.coef().loc[1, ["Intercept", "perform_type[Solo]"]].sum()
    assert reml_value == pytest.approx(12.38 + 0.66, abs=0.01)
    lo, hi = np.quantile(solo, [0.025, 0.975])
    assert lo < reml_value < hi
    prediction = posterior.predict(pd.DataFrame({"perform_type": ["Solo"], "id": [1]}), seed=2)
    assert prediction.mean.iloc[0] == pytest.approx(solo.mean(), rel=1e-10)
    interval = prediction.interval(0.95)
    assert interval["lower"].iloc[0] < lo and interval["upper"].iloc[0] > hi  # predictive adds σ


def test_new_levels(posterior):
    new = pd.DataFrame({"perform_type": ["Large Ensemble"] * 2, "id": [999, 1]})
    with pytest.raises(bm.DataError, match="new_levels='sample'"):
        posterior.predict(new)
    population = posterior.predict(new, new_levels="population")
    beta = posterior.posterior["beta"].sel(coef="Intercept")
    assert population.mean.iloc[0] == pytest.approx(float(beta.mean()), rel=1e-10)
    sampled = posterior.predict(new, new_levels="sample", seed=3)
    spread = float((sampled.mu.sel(obs=0) - beta).std())
    # the new level's intercept is drawn from N(0, sd(Intercept)^2) in every draw: over the
    # posterior its SD is sqrt(E[sd^2]) (Monte Carlo error under 1% with 8000 draws)
    expected = float(np.sqrt((posterior.posterior["sd_id"].sel(id_effect="Intercept") ** 2).mean()))
    assert spread == pytest.approx(expected, rel=0.05)
    fixed_only = posterior.predict(new, random=False)
    assert fixed_only.mean.iloc[1] == pytest.approx(float(beta.mean()), rel=1e-10)


def test_same_seed_same_draws_and_short_runs_warn(model):
    with pytest.warns(ConvergenceWarning, match="ESS as low as"):
        a = model.sample(draws=50, tune=50, chains=2, seed=7, progressbar=False, method="full")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        b = model.sample(draws=50, tune=50, chains=2, seed=7, progressbar=False, method="full")
        c = model.sample(draws=50, tune=50, chains=2, seed=8, progressbar=False, method="full")
    assert a.posterior["beta"].equals(b.posterior["beta"])
    assert not a.posterior["beta"].equals(c.posterior["beta"])


def test_compare_with_reml(posterior, reml):
    table = bm.compare(reml, posterior)
    assert list(table.index) == list(BRMS_NAMES.values())
    assert table.loc["Intercept", "reml"] == pytest.approx(15.0503, abs=1e-4)
    assert table.loc["sd(Intercept)", "reml"] == pytest.approx(1.9966, abs=1e-3)
    assert table.loc["cor(Intercept, perform_type[Solo])", "reml"] == pytest.approx(0.7434, abs=1e-3)
    assert table.loc["sigma", "reml"] == pytest.approx(4.6138, abs=1e-3)
    # the REML covariance matrix is singular: its correlations lie on the boundary
    assert table.filter(like="cor(", axis=0)["boundary"].all()
    assert not table.loc[["Intercept", "sigma"], "boundary"].any()
    assert table.loc[list(reml.fixef().index), "reml_in_ci"].all()


def test_posterior_predictive_check(posterior):
    ppc = posterior.ppc(seed=4)
    assert list(ppc.index) == ["mean", "sd", "min", "max", "sd of id means"]
    # the Gaussian model reproduces mean and spread...
    assert 0.05 < ppc.loc["mean", "p_value"] < 0.95 and 0.05 < ppc.loc["sd", "p_value"] < 0.95
    # ...but not the floor of the negative-affect scale (na >= 10): the check must see that
    assert ppc.loc["min", "observed"] == 10 and ppc.loc["min", "p_value"] < 0.01
    assert isinstance(bm.plot_ppc(posterior), Figure)


def test_loo_and_log_likelihood(posterior):
    ll = posterior.log_likelihood()
    assert ll.shape == (4, 2000, 497)
    loo = posterior.loo()
    assert np.isfinite(loo.elpd) and -1600 < loo.elpd < -1400


def test_plots_return_figures(posterior, reml):
    for figure in (bm.plot_trace(posterior), bm.plot_rank(posterior), bm.qq_plot(posterior), bm.qq_plot(reml)):
        assert isinstance(figure, Figure)
    assert len([ax for ax in bm.qq_plot(reml).axes if ax.get_visible()]) == 4  # residuals + 3 effects


def test_netcdf_round_trip(posterior, tmp_path):
    path = tmp_path / "music.nc"
    posterior.to_netcdf(path)
    loaded = xr.open_datatree(path)
    for name in ("beta", "sigma", "sd_id", "cor_id", "u_id"):
        np.testing.assert_array_equal(loaded["posterior"][name].values, posterior.posterior[name].values)
    assert list(loaded["posterior"]["coef"].values) == list(posterior.design.fixed_names)


def test_readable_reprs(posterior):
    assert "4 chains x 2000 draws" in repr(posterior)
    assert "<table" in posterior._repr_html_()


def test_prior_predictive_draws_on_the_data_scale(model, music):
    prior = model.sample_prior_predictive(draws=400, seed=1)
    y = prior["prior_predictive"]["y"].values
    assert y.shape[-1] == len(music)
    # default priors are scaled to the response: prior predictive draws centre near its mean
    assert abs(np.median(y) - music["na"].mean()) < 3 * music["na"].std()
    assert set(prior["prior"].data_vars) == {"beta", "sigma", "sd_id", "cor_id", "u_id"}  # the posterior's names


def test_loo_comparison_of_two_models(posterior, music):
    import arviz as az

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        simpler = bm.Model("na ~ perform_type + (1 | id)", music).sample(draws=500, chains=2, seed=1, progressbar=False)
        simpler.log_likelihood()
        posterior.log_likelihood()
        table = az.compare({"random slopes": posterior.idata, "random intercept": simpler.idata}, round_to="none")
    assert set(table.index) == {"random slopes", "random intercept"}
    assert np.isfinite(table["elpd"]).all()
