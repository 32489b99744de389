"""Confidence intervals, simulation, refits and the parametric bootstrap (issue 16) against lme4
and pbkrtest (tests/reference/inference_ci.R writes inference_ci.json), exact algebra and
simulation truth."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

import bayesmix as bm
from bayesmix.reml.profile import DevianceProfile

REFERENCE = json.loads((Path(__file__).parent / "reference" / "inference_ci.json").read_text())
CROSSED = Path(__file__).parent / "reference" / "data" / "crossed.csv"
MODELS = {m["name"]: m for m in REFERENCE["models"]}
FORMULAS = {"music": "na ~ perform_type + (perform_type | id)", "sleep": "Reaction ~ Days + (Days | Subject)",
            "crossed": "y ~ x + (1 | a) + (1 | b)"}
Z = norm.ppf(0.975)


def reml_fit(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # the music fit is singular
        return bm.Model(formula, data).fit_reml()


@pytest.fixture(scope="module")
def fits(music, sleep):
    data = {"music": music, "sleep": sleep, "crossed": pd.read_csv(CROSSED)}
    return {name: reml_fit(FORMULAS[name], data[name]) for name in FORMULAS}


def lme4_table(name: str, method: str) -> pd.DataFrame:
    rows = MODELS[name][method]
    return pd.DataFrame({"lower": [r["lower"] for r in rows], "upper": [r["upper"] for r in rows]},
                        index=[r["parameter"] for r in rows]).apply(pd.to_numeric, errors="coerce")


def n_variance(fit) -> int:
    """Rows of the SDs, correlations and σ (they come first, as lme4's)."""
    return fit.structure.n_theta + 1


def test_rows_are_named_readably_in_lme4s_order(fits):
    ci = fits["music"].confint("wald")
    assert list(ci.index[:4]) == ["sd(Intercept)", "cor(Intercept, perform_type[Small Ensemble])",
                                  "cor(Intercept, perform_type[Solo])", "sd(perform_type[Small Ensemble])"]
    assert list(ci.index[6:]) == ["sigma", "Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]"]
    assert list(ci.columns) == ["estimate", "lower", "upper"]
    assert list(fits["crossed"].confint("wald").index[:2]) == ["sd(Intercept | a)", "sd(Intercept | b)"]
    # the estimates are varcorr's SDs and correlations
    vc = fits["sleep"].varcorr()
    np.testing.assert_allclose(fits["sleep"].confint("wald")["estimate"].iloc[:4], vc["sdcor"].to_numpy()[[0, 2, 1, 3]])


@pytest.mark.parametrize("name", list(FORMULAS))
def test_wald_intervals_match_lme4(fits, name):
    ours, ref = fits[name].confint("wald"), lme4_table(name, "wald")
    k = n_variance(fits[name])
    assert ours.iloc[:k][["lower", "upper"]].isna().all().all() and ref.iloc[:k].isna().all().all()
    np.testing.assert_allclose(ours.iloc[k:][["lower", "upper"]], ref.iloc[k:], rtol=1e-6)


@pytest.mark.parametrize("name", ["sleep", "crossed"])
def test_profile_intervals_match_lme4(fits, name):
    ours, ref = fits[name].confint("profile"), lme4_table(name, "profile")
    k = n_variance(fits[name])
    np.testing.assert_allclose(ours.iloc[k:][["lower", "upper"]], ref.iloc[k:], atol=1e-3)
    np.testing.assert_allclose(ours.iloc[:k][["lower", "upper"]], ref.iloc[:k], atol=1e-2)


def test_profile_intervals_of_the_singular_music_fit(fits):
    """Fixed effects as lme4. The variance parameters of this singular fit (a 3x3 correlation
    matrix of rank 2) match lme4 within 1e-2 or lme4 stopped short: at lme4's limit we find a
    point with that parameter value whose ML deviance is below the cutoff, so the profile has not
    crossed z there, and our wider limit is the profile's."""
    fit = fits["music"]
    ours, ref = fit.confint("profile"), lme4_table("music", "profile")
    k = n_variance(fit)
    np.testing.assert_allclose(ours.iloc[k:][["lower", "upper"]], ref.iloc[k:], atol=1e-3)
    profile = DevianceProfile(fit)
    np.testing.assert_allclose(profile.minimum, MODELS["music"]["ml_deviance"], rtol=1e-9)
    shown_short = 0
    for i in range(k):
        for side, direction in (("lower", -1), ("upper", 1)):
            mine, theirs = ours.iloc[i][side], ref.iloc[i][side]
            if abs(mine - theirs) <= 1e-2:
                continue
            assert direction * (mine - theirs) > 0, (ours.index[i], side)  # ours is wider
            deviance, _ = profile.variance_profile(i, theirs, profile.x_hat)
            assert deviance - profile.minimum < Z**2 - 0.05, (ours.index[i], side)
            shown_short += 1
    assert shown_short <= 4


def cdf_range(draws: np.ndarray, q: float) -> tuple[float, float]:
    """P(X < q) and P(X <= q) of the draws (ties within 1e-6: singular refits put atoms at a
    correlation of ±1), between which the probability of a percentile at q lies."""
    draws = draws[np.isfinite(draws)]
    tie = np.abs(draws - q) <= 1e-6
    below = float(np.mean((draws < q) & ~tie))
    return below, below + float(np.mean(tie))


@pytest.mark.parametrize("name", list(FORMULAS))
def test_bootstrap_percentiles_within_monte_carlo_error_of_lme4(fits, name):
    """lme4's percentile q_p of the same number of simulations sits at the probability p of our
    draws within Monte Carlo error: the error of a percentile on the probability scale is
    √(p(1-p)/n) for each of the two runs (the quantile's standard error √(p(1-p)/n) / f(q) by the
    delta method, without estimating the density f); at an atom (a correlation of ±1) p lies
    between P(X < q) and P(X <= q)."""
    nsim = MODELS[name]["boot_nsim"]
    result = bm.bootstrap(fits[name], nsim=nsim, seed=20261126, n_jobs=2, progress=False)
    ref = lme4_table(name, "boot")
    assert len(ref) == result.draws.shape[1]
    for i, parameter in enumerate(ref.index):
        for side, prob in (("lower", 0.025), ("upper", 0.975)):
            tolerance = 4.0 * np.sqrt(2.0 * prob * (1 - prob) / nsim)
            below, at_most = cdf_range(result.draws.iloc[:, i].to_numpy(), ref.iloc[i][side])
            assert below - tolerance < prob < at_most + tolerance, (parameter, side, below, at_most)
    intervals = fits[name].confint("bootstrap", nsim=nsim, seed=20261126, n_jobs=2)
    np.testing.assert_allclose(intervals[["lower", "upper"]], result.percentile_intervals(), rtol=1e-12)


def test_bootstrap_is_reproducible_and_independent_of_the_workers(fits):
    fit = fits["sleep"]
    one = bm.bootstrap(fit, lambda f: f.fixef(), nsim=24, seed=3, n_jobs=1, progress=False)
    two = bm.bootstrap(fit, lambda f: f.fixef(), nsim=24, seed=3, n_jobs=2, progress=False)
    pd.testing.assert_frame_equal(one.draws, two.draws)
    assert list(one.draws.columns) == ["Intercept", "Days"] and one.n_failed == 0
    # the draws are the refits of the simulated responses, in order
    y = fit.simulate(24, seed=3)
    np.testing.assert_allclose(one.draws.iloc[5], fit.refit(y["sim_6"]).fixef(), rtol=1e-10)
    summary = one.summary()
    np.testing.assert_allclose(summary["std_error"], one.draws.std(), rtol=1e-12)
    assert "24 parametric bootstrap refits" in repr(one)


def test_refit_of_the_fitted_response_is_the_fit(fits):
    for fit in fits.values():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.ConvergenceWarning)  # the music fit is singular
            again = fit.refit(fit.design.rows.y)
        assert again.criterion == pytest.approx(fit.criterion, rel=1e-12)
        np.testing.assert_allclose(again.theta_values, fit.theta_values, atol=1e-6)
        np.testing.assert_allclose(again.beta_values, fit.beta_values, rtol=1e-7)
        assert again.sigma == pytest.approx(fit.sigma, rel=1e-7)


@pytest.mark.parametrize("name", ["sleep", "crossed"])
def test_refit_equals_a_fit_built_from_new_data(fits, music, sleep, name):
    """The updated cross-products (single and crossed factors) give the fit of a design built anew."""
    fit = fits[name]
    y = fit.simulate(1, seed=11)["sim_1"].to_numpy()
    data = (sleep if name == "sleep" else pd.read_csv(CROSSED)).copy()
    data[fit.design.response] = y
    fresh, refit = reml_fit(FORMULAS[name], data), fit.refit(y)
    assert refit.criterion == pytest.approx(fresh.criterion, rel=1e-10)
    np.testing.assert_allclose(refit.beta_values, fresh.beta_values, rtol=1e-6)
    np.testing.assert_allclose(refit.theta_values, fresh.theta_values, atol=1e-5)
    assert refit.design.rows.frame[fit.design.response].tolist() == y.tolist()


def test_refit_with_weights_and_offset_equals_a_fresh_fit(sleep):
    data = sleep.assign(w=np.linspace(0.5, 2.0, len(sleep)), o=np.cos(np.arange(len(sleep))))
    model = bm.Model("Reaction ~ Days + (Days | Subject)", data, weights="w", offset="o")
    fit = model.fit_ml()
    y = fit.simulate(1, seed=2)["sim_1"].to_numpy()
    fresh = bm.Model("Reaction ~ Days + (Days | Subject)", data.assign(Reaction=y), weights="w", offset="o").fit_ml()
    refit = fit.refit(y)
    assert refit.criterion == pytest.approx(fresh.criterion, rel=1e-10)
    np.testing.assert_allclose(refit.beta_values, fresh.beta_values, rtol=1e-6)


def test_glmm_refit_and_conditional_simulation(cbpp):
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    fit = bm.Model(formula, cbpp, family="binomial").fit_ml()
    sims = fit.simulate(4000, seed=5, random=False).to_numpy()
    mu, n = fit.fitted().to_numpy(), cbpp["size"].to_numpy()
    # conditional on the modes: proportions of Binomial(n, μ), mean μ and variance μ(1-μ)/n
    se = np.sqrt(mu * (1 - mu) / n / 4000)
    assert np.max(np.abs(sims.mean(axis=1) - mu) / se) < 4.5
    y = sims[:, 0]
    refit = fit.refit(y)
    fresh = bm.Model(formula, cbpp.assign(incidence=np.rint(y * n).astype(int)), family="binomial").fit_ml()
    assert refit.loglik == pytest.approx(fresh.loglik, rel=1e-8)
    np.testing.assert_allclose(refit.beta_values, fresh.beta_values, rtol=1e-5)


def test_unconditional_simulation_has_the_models_moments(fits):
    """Mean Xβ̂, covariance Z Σ Z' + σ²I within a subject (sleepstudy), against 4000 simulations."""
    fit = fits["sleep"]
    nsim = 4000
    sims = fit.simulate(nsim, seed=7).to_numpy()
    rows = fit.design.rows
    mean = rows.X @ fit.beta_values
    cov_b = fit.covariances()[0][3]
    z = rows.z[0]
    variance = np.einsum("ij,jk,ik->i", z, cov_b, z) + fit.sigma**2
    assert np.max(np.abs(sims.mean(axis=1) - mean) / np.sqrt(variance / nsim)) < 4.5
    sd_of_variance = variance * np.sqrt(2.0 / (nsim - 1))
    assert np.max(np.abs(sims.var(axis=1, ddof=1) - variance) / sd_of_variance) < 4.5
    # rows 0 and 9 are days 0 and 9 of one subject: covariance z0 Σ z9'
    covariance = z[0] @ cov_b @ z[9]
    estimate = np.cov(sims[0], sims[9])[0, 1]
    assert abs(estimate - covariance) < 4.5 * np.sqrt((variance[0] * variance[9] + covariance**2) / nsim)
    # conditional: mean X β̂ + Z b̂, variance σ²
    conditional = fit.simulate(nsim, seed=8, random=False).to_numpy()
    fitted = fit.fitted().to_numpy()
    assert np.max(np.abs(conditional.mean(axis=1) - fitted) / (fit.sigma / np.sqrt(nsim))) < 4.5
    assert list(fit.simulate(2, seed=1).columns) == ["sim_1", "sim_2"]


def test_pb_test_matches_pbkrtest(fits, music):
    reference = REFERENCE["pbmodcomp"]
    small = reml_fit(reference["small"], music)
    result = bm.pb_test(small, fits["music"], nsim=reference["nsim"], seed=1, n_jobs=2, progress=False)
    assert result.statistic == pytest.approx(reference["LRT"], rel=1e-6)
    assert result.df == reference["LRT_df"]
    assert result.p_chisq == pytest.approx(reference["LRT_p"], rel=1e-6)
    p = reference["PBtest_p"]
    assert abs(result.p_bootstrap - p) < 4 * np.sqrt(2 * p * (1 - p) / reference["nsim"])
    assert list(result.table().index) == ["LRT", "PBtest"]


def test_arguments_are_checked(fits, cbpp):
    fit = fits["sleep"]
    with pytest.raises(bm.ArgumentError, match="one response value per fitted row"):
        fit.refit(np.ones(3))
    with pytest.raises(bm.ArgumentError, match="method must be one of"):
        fit.confint("exact")
    with pytest.raises(bm.ArgumentError, match="level must be"):
        fit.confint("wald", level=95)
    with pytest.raises(bm.ArgumentError, match="nsim must be a positive integer"):
        fit.simulate(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # sd(herd) is 0 for these counts
        counts = bm.Model("incidence ~ period + (1 | herd)", cbpp, family="negative_binomial").fit_ml()
    with pytest.raises(bm.ArgumentError, match="dispersion parameter, as lme4's"):  # lme4 does not profile them either
        counts.confint("profile")
    with pytest.raises(bm.ArgumentError, match="swap the arguments"):
        bm.pb_test(fits["music"], reml_fit("na ~ perform_type + (1 | id)", fits["music"].design.rows.frame),
                   nsim=2, progress=False)


def test_profile_limits_are_crossings_where_the_profile_flattens(fits):
    """A simulated sleepstudy data set whose correlation profile flattens below -0.85 (there an SD
    goes to 0 and the correlation is free): every limit is finite, and the profiled deviance there
    is the cutoff z² above the minimum (or, at a bound, below it)."""
    fit = fits["sleep"].refit(fits["sleep"].simulate(200, seed=2026)["sim_1"])  # the first of the coverage study
    ci = fit.confint("profile")
    assert np.isfinite(ci[["lower", "upper"]].to_numpy()).all()
    profile = DevianceProfile(fit)
    for k in range(n_variance(fit)):
        for side in ("lower", "upper"):
            limit = ci.iloc[k][side]
            if k < fit.structure.n_theta and abs(limit) in (0.0, 1.0):  # a bound: the profile stays below z²
                continue
            deviance = min(profile.variance_profile(k, limit, profile.x_hat)[0] - profile.minimum,
                           profile.variance_profile(k, limit, profile.x_hat * 0.9)[0] - profile.minimum)
            assert deviance == pytest.approx(Z**2, abs=1e-4), (ci.index[k], side)
