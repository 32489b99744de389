"""Checks for discrete outcomes: rootograms against the families' probabilities (scipy), binned
residuals against arm's definition, randomized quantile residuals that are N(0, 1) under the
model and not under a misfit, and the plots of GLMM fits (ML and Bayesian) on the data they show."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from scipy import stats

import bayesmix as bm
from bayesmix.errors import ArgumentError

from .conftest import glmm_file


@pytest.fixture(scope="module")
def cbpp_ml(cbpp):
    return bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial").fit_ml()


@pytest.fixture(scope="module")
def grouse_ml():
    grouse = pd.read_csv(glmm_file("grouseticks.csv"), dtype={"YEAR": str, "BROOD": str, "INDEX": str, "LOCATION": str})
    formula = "TICKS ~ YEAR + scale(HEIGHT) + (1 | BROOD) + (1 | INDEX) + (1 | LOCATION)"
    return bm.Model(formula, grouse, family="poisson").fit_ml()


def binary_data(n_groups: int = 100, per_group: int = 20, seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=len(g))
    eta = -0.3 + 0.8 * x + rng.normal(0, 0.7, n_groups)[g]
    return pd.DataFrame({"y": rng.binomial(1, 1 / (1 + np.exp(-eta))), "x": x, "g": g.astype(str)})


@pytest.fixture(scope="module")
def binary_ml():
    return bm.Model("y ~ x + (1 | g)", binary_data(), family="binomial").fit_ml()


def counts_data(overdispersed: bool, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(60), 25)
    x = rng.normal(size=len(g))
    mu = np.exp(0.8 + 0.4 * x + rng.normal(0, 0.5, 60)[g])
    y = rng.negative_binomial(1.5, 1.5 / (1.5 + mu)) if overdispersed else rng.poisson(mu)
    return pd.DataFrame({"y": y, "x": x, "g": g.astype(str)})


def bars(figure: Figure):
    """(bottoms, heights) of the rootogram's bars."""
    patches = figure.axes[0].patches
    return np.array([p.get_y() for p in patches]), np.array([p.get_height() for p in patches])


def expected_line(figure: Figure) -> np.ndarray:
    (line,) = [line for line in figure.axes[0].get_lines() if line.get_label() == "expected"]
    return np.asarray(line.get_ydata())


# ----- rootograms ---------------------------------------------------------------------------
def test_rootogram_of_a_poisson_fit_against_scipys_probabilities(grouse_ml):
    y = grouse_ml.design.rows.y.astype(int)
    figure = bm.plot_rootogram(grouse_ml, seed=1)
    bottoms, heights = bars(figure)
    k = np.arange(len(heights))
    assert len(heights) >= y.max() + 1
    np.testing.assert_allclose(heights ** 2, np.bincount(y, minlength=len(k))[: len(k)])
    # the expected frequencies: Σ_i P(Y_i = k | μ̂_i), here from 1000 simulated data sets
    p = stats.poisson.pmf(k[:, None], grouse_ml.fitted().to_numpy()[None, :])
    exact, sd = p.sum(axis=1), np.sqrt((p * (1 - p)).sum(axis=1) / 1000)
    simulated = expected_line(figure) ** 2
    assert np.all(np.abs(simulated - exact) <= 5 * sd + 1e-12)
    # hanging: each bar hangs from the expected curve
    np.testing.assert_allclose(bottoms + heights, expected_line(figure))
    ax = figure.axes[0]
    assert ax.get_xlabel() == "TICKS" and ax.get_ylabel() == "√frequency (rows)" and ax.get_title() == "Hanging rootogram"


def test_standing_rootogram_of_binomial_successes_against_scipy(cbpp_ml, cbpp):
    figure = bm.plot_rootogram(cbpp_ml, style="standing", max_count=8, seed=1)
    bottoms, heights = bars(figure)
    assert len(heights) == 9 and np.all(bottoms == 0)
    np.testing.assert_allclose(heights ** 2, np.bincount(cbpp["incidence"], minlength=9)[:9])
    k = np.arange(9)
    p = stats.binom.pmf(k[:, None], cbpp["size"].to_numpy()[None, :], cbpp_ml.fitted().to_numpy()[None, :])
    exact, sd = p.sum(axis=1), np.sqrt((p * (1 - p)).sum(axis=1) / 1000)
    assert np.all(np.abs(expected_line(figure) ** 2 - exact) <= 5 * sd + 1e-12)
    assert figure.axes[0].get_xlabel().startswith("successes per row")


def test_rootogram_refuses_what_it_cannot_count(binary_ml, grouse_ml):
    with pytest.raises(ArgumentError, match="plot_binned_residuals"):
        bm.plot_rootogram(binary_ml)
    with pytest.raises(ArgumentError, match="style"):
        bm.plot_rootogram(grouse_ml, style="suspended")
    with pytest.raises(ArgumentError, match="max_count"):
        bm.plot_rootogram(grouse_ml, max_count=0)
    gaussian = pd.DataFrame({"y": np.repeat(np.arange(8.0), 5) + np.arange(40.0) % 3, "g": np.repeat(list("abcdefgh"), 5)})
    with pytest.raises(ArgumentError, match="RemlResult"):
        bm.plot_rootogram(bm.Model("y ~ 1 + (1 | g)", gaussian).fit_reml())


# ----- binned residuals ---------------------------------------------------------------------
def arm_binned_resids(x: np.ndarray, y: np.ndarray, nclass: int) -> pd.DataFrame:
    """arm::binned.resids, line by line: breaks at sorted x[floor(n (1:(nclass-1)) / nclass)]."""
    n = len(x)
    index = np.floor(n * np.arange(1, nclass) / nclass).astype(int)  # R's 1-based positions
    breaks = np.concatenate([[-np.inf], np.sort(x)[index - 1], [np.inf]])
    binned = pd.cut(x, breaks, right=True, labels=False)
    frame = pd.DataFrame({"x": x, "y": y, "bin": binned}).groupby("bin")
    return pd.DataFrame({"xbar": frame["x"].mean(), "ybar": frame["y"].mean(), "n": frame["y"].size()})


def test_binned_residuals_follow_arm_and_gelman_and_hill(binary_ml):
    mu = binary_ml.fitted().to_numpy()
    y = binary_ml.design.rows.y
    table = bm.binned_residuals(binary_ml)
    assert len(table) == int(np.sqrt(len(y)))  # arm::binnedplot's default number of bins
    arm = arm_binned_resids(mu, y - mu, len(table))
    np.testing.assert_allclose(table["fitted"], arm["xbar"], rtol=1e-12)
    np.testing.assert_allclose(table["residual"], arm["ybar"], atol=1e-15)
    np.testing.assert_array_equal(table["rows"], arm["n"])
    # the standard error of a bin's mean residual under the model: √(Σ μ(1 - μ)) / n
    groups = pd.Series(mu).groupby(pd.cut(mu, np.concatenate([[-np.inf], np.sort(mu)[
        np.floor(len(mu) * np.arange(1, len(table)) / len(table)).astype(int) - 1], [np.inf]]), labels=False))
    np.testing.assert_allclose(table["se"], groups.apply(lambda m: np.sqrt((m * (1 - m)).sum()) / len(m)))
    # the data were simulated from the model: about 95 % of the bins lie within ±2 SE
    assert (table["residual"].abs() <= 2 * table["se"]).mean() >= 0.85


def test_binned_residuals_of_trials_weigh_each_row_by_its_trials(cbpp_ml, cbpp):
    table = bm.binned_residuals(cbpp_ml, bins=4)
    mu = cbpp_ml.fitted().to_numpy()
    order = np.argsort(mu, kind="stable")
    first = order[: len(mu) // 4]  # the first bin: the 14 smallest fitted probabilities
    trials, successes = cbpp["size"].to_numpy()[first], cbpp["incidence"].to_numpy()[first]
    np.testing.assert_allclose(table["fitted"].iloc[0], (trials * mu[first]).sum() / trials.sum())
    np.testing.assert_allclose(table["residual"].iloc[0], (successes - trials * mu[first]).sum() / trials.sum())
    np.testing.assert_allclose(table["se"].iloc[0], np.sqrt((trials * mu[first] * (1 - mu[first])).sum()) / trials.sum())


def test_binned_residual_plot_shows_the_table(binary_ml):
    table = bm.binned_residuals(binary_ml, bins=20)
    figure = bm.plot_binned_residuals(binary_ml, bins=20)
    ax = figure.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    points = np.concatenate([lines["bin mean"].get_ydata(), lines["outside ±2 SE"].get_ydata()])
    np.testing.assert_allclose(np.sort(points), np.sort(table["residual"]))
    np.testing.assert_allclose(lines["±2 SE"].get_ydata(), -2 * table["se"])
    outside = int((table["residual"].abs() > 2 * table["se"]).sum())
    assert len(lines["outside ±2 SE"].get_ydata()) == outside
    assert ax.get_title() == f"Binned residuals: {outside} of 20 bins outside ±2 SE"
    assert ax.get_xlabel().startswith("expected probability") and ax.get_ylabel().startswith("average residual")


def test_binned_residuals_refuse_counts_and_bad_bins(grouse_ml, binary_ml):
    with pytest.raises(ArgumentError, match="plot_rootogram"):
        bm.plot_binned_residuals(grouse_ml)
    with pytest.raises(ArgumentError, match="bins"):
        bm.binned_residuals(binary_ml, bins=0)


# ----- randomized quantile residuals and QQ plots ---------------------------------------------
@pytest.mark.parametrize("data, family", [(binary_data(), "binomial"), (counts_data(False), "poisson")])
def test_randomized_quantile_residuals_are_standard_normal_under_the_model(data, family):
    fit = bm.Model("y ~ x + (1 | g)", data, family=family).fit_ml()
    r = bm.randomized_quantile_residuals(fit, seed=1)
    assert stats.kstest(r, "norm").pvalue > 0.001
    assert 0.9 < r.std() < 1.1 and abs(r.mean()) < 0.1


def test_randomized_quantile_residuals_show_overdispersion():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.Model("y ~ x + (1 | g)", counts_data(True), family="poisson").fit_ml()
    r = bm.randomized_quantile_residuals(fit, seed=1)
    assert r.std() > 1.3 and stats.kstest(r, "norm").pvalue < 1e-6


def test_qq_plot_of_a_glmm_fit(grouse_ml):
    figure = bm.qq_plot(grouse_ml, seed=1)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == [
        "randomized quantile residuals", "INDEX: Intercept", "BROOD: Intercept", "LOCATION: Intercept"]
    points, reference = visible[0].get_lines()
    np.testing.assert_allclose(points.get_ydata(), np.sort(bm.randomized_quantile_residuals(grouse_ml, seed=1)))
    np.testing.assert_allclose(reference.get_ydata(), reference.get_xdata())  # y = x: N(0, 1) under the model
    np.testing.assert_allclose(np.sort(visible[2].get_lines()[0].get_ydata()),
                               np.sort(grouse_ml.ranef()["BROOD"]["Intercept"].to_numpy()))


def test_posterior_plots_name_what_an_ml_fit_lacks(binary_ml):
    for plot in (bm.plot_trace, bm.plot_rank, bm.plot_ppc):
        with pytest.raises(ArgumentError, match="BayesResult"):
            plot(binary_ml)


# ----- Bayesian GLMM fits -----------------------------------------------------------------------
@pytest.fixture(scope="module")
def cbpp_post(cbpp):
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.sample(draws=200, tune=300, chains=2, seed=1, progressbar=False)


@pytest.fixture(scope="module")
def binary_post():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.Model("y ~ x + (1 | g)", binary_data(30, 10), family="binomial").sample(
            draws=200, tune=300, chains=2, seed=1, progressbar=False)


@pytest.mark.slow
def test_posterior_rootogram_is_the_mean_of_the_replicated_frequencies(cbpp_post, cbpp):
    figure = bm.plot_rootogram(cbpp_post, seed=1)
    _, heights = bars(figure)
    k = len(heights)
    np.testing.assert_allclose(heights ** 2, np.bincount(cbpp["incidence"], minlength=k)[:k])
    replicated = cbpp_post.posterior_predictive().stack(sample=("chain", "draw")).transpose("sample", "obs").values
    successes = np.rint(replicated * cbpp["size"].to_numpy()).astype(int)
    frequencies = np.array([np.bincount(s, minlength=60)[:k] for s in successes])
    np.testing.assert_allclose(expected_line(figure) ** 2, frequencies.mean(axis=0))


@pytest.mark.slow
def test_posterior_binned_residuals_use_the_posterior_mean(binary_post):
    table = bm.binned_residuals(binary_post, bins=5)
    mu = binary_post.fitted().to_numpy()
    assert table["rows"].sum() == len(mu) == 300
    np.testing.assert_allclose(table["fitted"].mean(), mu.mean(), rtol=1e-12)  # equal bins of 60 rows
    assert isinstance(bm.plot_binned_residuals(binary_post), Figure)


@pytest.mark.slow
def test_posterior_ppc_qq_trace_and_rank_of_a_glmm(cbpp_post, binary_post):
    ax = bm.plot_ppc(cbpp_post, num_samples=20).axes[0]
    assert ax.get_ylabel() == "empirical CDF" and ax.get_xlabel().startswith("proportion of successes")
    with pytest.raises(ArgumentError, match="0/1 response.*plot_binned_residuals"):
        bm.plot_ppc(binary_post)
    with pytest.raises(ArgumentError, match="plot_binned_residuals"):
        bm.plot_rootogram(binary_post)
    qq = [ax for ax in bm.qq_plot(binary_post, seed=1).axes if ax.get_visible()]
    assert [ax.get_title() for ax in qq] == ["randomized quantile residuals", "g: Intercept"]
    names = ["Intercept", "period[2]", "period[3]", "period[4]", "sd(Intercept)"]
    trace = bm.plot_trace(cbpp_post)
    assert [row._suptitle.get_text() for row in trace.subfigs] == names
    assert trace.get_layout_engine() is not None  # constrained: long labels do not overlap
    rank = bm.plot_rank(cbpp_post)
    assert [ax.get_title() for ax in rank.axes if ax.get_visible()] == names
