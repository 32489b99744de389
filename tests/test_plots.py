"""The plots: each returns a matplotlib Figure that pyplot does not hold (a notebook shows it
once), with the labels it promises and no overlapping tick labels; parameters chosen by either
name; the caterpillar and conditional-effects plots against lme4, emmeans and the draws; the
prior predictive draws under the posterior's names."""

from __future__ import annotations

import itertools
import json
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from scipy import stats

import bayesmix as bm

from .conftest import shared_file

REFERENCE = json.loads((Path(__file__).parent / "reference" / "conditional_effects.json").read_text())
FORMULA = "na ~ perform_type + previous + (perform_type | id)"
BINARY = "high_anxiety ~ perform_type + previous + (1 | id)"


@pytest.fixture(scope="module")
def data(music):
    return music.assign(high_anxiety=(music["na"] > 20).astype(int))


@pytest.fixture(scope="module")
def model(data):
    return bm.Model(FORMULA, data)


@pytest.fixture(scope="module")
def reml(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # the random slopes' fit is singular
        return model.fit_reml()


@pytest.fixture(scope="module")
def post(model):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # few draws
        return model.sample(draws=100, tune=150, chains=2, seed=3, progressbar=False)


@pytest.fixture(scope="module")
def binary_ml(data):
    return bm.Model(BINARY, data, family="binomial").fit_ml()


@pytest.fixture(scope="module")
def binary_post(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return bm.Model(BINARY, data, family="binomial").sample(draws=100, tune=150, chains=2, seed=3, progressbar=False)


@pytest.fixture(scope="module")
def prior(model):
    return model.sample_prior_predictive(draws=400, seed=2)


@pytest.fixture(scope="module")
def figures(reml, post, binary_ml, binary_post, prior):
    """Every plot of the gallery, each made with pyplot's registry checked before and after."""
    makers = {
        "trace": lambda: bm.plot_trace(post),
        "rank": lambda: bm.plot_rank(post),
        "ppc": lambda: bm.plot_ppc(post, num_samples=20, seed=1),
        "prior predictive": lambda: bm.plot_prior_predictive(prior, num_samples=20, seed=1),
        "ranef reml": lambda: bm.plot_ranef(reml),
        "ranef posterior": lambda: bm.plot_ranef(post),
        "conditional effects reml": lambda: bm.plot_conditional_effects(reml),
        "conditional effects binary ml": lambda: bm.plot_conditional_effects(binary_ml),
        "conditional effects binary posterior": lambda: bm.plot_conditional_effects(binary_post),
        "qq": lambda: bm.qq_plot(reml),
        "binned residuals": lambda: bm.plot_binned_residuals(binary_ml),
    }
    plt.close("all")
    out = {}
    for name, make in makers.items():
        out[name] = make()
        assert plt.get_fignums() == [], f"{name}: pyplot still holds the figure, so a notebook would show it twice"
    return out


def test_every_plot_is_a_figure_pyplot_does_not_hold(figures):
    import io

    for name, figure in figures.items():
        assert isinstance(figure, Figure), name
        png = io.BytesIO()
        figure.savefig(png, format="png", dpi=50)  # what a notebook's display of the returned figure does
        assert png.getvalue().startswith(b"\x89PNG"), name


def _overlaps(boxes) -> list:
    return [(a, b) for (a, box_a), (b, box_b) in itertools.combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_no_tick_labels_overlap(figures):
    for name, figure in figures.items():
        figure.draw_without_rendering()  # lays the figure out as saving it does
        for ax in figure.axes:
            if not ax.get_visible():
                continue
            for axis in (ax.xaxis, ax.yaxis):
                labels = [(t.get_text(), t.get_window_extent()) for t in axis.get_ticklabels()
                          if t.get_visible() and t.get_text()]
                assert not _overlaps(labels), f"{name}: tick labels overlap: {_overlaps(labels)}"


def test_titles_and_legends_do_not_overlap(figures):
    for name, figure in figures.items():
        figure.draw_without_rendering()
        texts = [figure._suptitle, figure._supxlabel, *[row._suptitle for row in figure.subfigs]]
        boxes = [(t.get_text(), t.get_window_extent()) for t in texts if t is not None and t.get_text()]
        boxes += [(f"legend {i}", legend.get_window_extent()) for i, legend in enumerate(figure.legends)]
        boxes += [(ax.get_title(), ax.title.get_window_extent()) for ax in figure.axes
                  if ax.get_visible() and ax.get_title()]
        assert not _overlaps(boxes), f"{name}: {_overlaps(boxes)}"


def _titles(figure) -> list[str]:
    return [sub._suptitle.get_text() for sub in figure.subfigs if sub._suptitle is not None]


def _legend_texts(figure) -> list[str]:
    return [t.get_text() for legend in figure.legends for t in legend.get_texts()]


def test_trace_plot_labels(post, figures):
    figure = figures["trace"]
    names = list(post.summary().index)
    assert _titles(figure) == names  # one row per parameter, titled with the summary's name
    assert _legend_texts(figure) == ["chain 0", "chain 1"]
    assert figure._suptitle.get_text() == "Posterior draws: density and trace per chain"
    assert figure.subfigs[-1].axes[1].get_xlabel() == "draw"
    # the trace panel draws each chain's draws
    sigma = figure.subfigs[names.index("sigma")].axes[1]
    np.testing.assert_array_equal(sigma.lines[1].get_ydata(), post.posterior["sigma"].sel(chain=1).values)


def test_rank_plot_labels_and_counts(post, figures):
    figure = figures["rank"]
    names = list(post.summary().index)
    titles = [ax.get_title().replace("\n", " ") for ax in figure.axes if ax.get_visible()]
    assert titles == names
    assert _legend_texts(figure) == ["chain 0", "chain 1", "flat", "99% for independent draws"]
    ax = figure.axes[names.index("sigma")]
    assert ax.get_xlabel() == "rank (all chains)" and ax.get_ylabel() == "chain"
    heights = [np.rint([bar.get_height() for bar in chain]) for chain in ax.containers]  # drawn from offsets
    assert [h.sum() for h in heights] == [100, 100]  # every draw counted once
    ranks = stats.rankdata(post.posterior["sigma"].values, axis=None).reshape(2, 100)
    np.testing.assert_array_equal(heights[0], np.histogram(ranks[0], np.linspace(0.5, 200.5, 11))[0])  # 10 bins


def test_var_names_take_summary_and_posterior_names(post):
    titles = lambda figure: [t.replace("\n", " ") for t in _titles(figure)]
    assert titles(bm.plot_trace(post, "beta")) == ["Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]",
                                                    "previous"]
    assert titles(bm.plot_trace(post, ["sd_id", "sigma"])) == [
        "sd(Intercept)", "sd(perform_type[Small Ensemble])", "sd(perform_type[Solo])", "sigma"]
    assert titles(bm.plot_trace(post, ["sd(Intercept)", "cor_id", "sd(Intercept)"])) == [
        "sd(Intercept)", "cor(Intercept, perform_type[Small Ensemble])", "cor(Intercept, perform_type[Solo])",
        "cor(perform_type[Small Ensemble], perform_type[Solo])"]
    rank = bm.plot_rank(post, ["previous", "sigma"])
    assert [ax.get_title() for ax in rank.axes if ax.get_visible()] == ["previous", "sigma"]


def test_unknown_var_names_list_the_valid_ones(post):
    with pytest.raises(bm.ArgumentError, match=r"plot_trace: no parameter 'sd\(id\)'\. Name parameters as the summary "
                       r"does \('Intercept', .*'sigma'\) or by posterior variable \('beta', 'sd_id', 'cor_id', 'sigma'\)"):
        bm.plot_trace(post, "sd(id)")
    with pytest.raises(bm.ArgumentError, match=r"plot_rank: no parameter 'u_id'.*bm\.plot_ranef\(result\)"):
        bm.plot_rank(post, ["sigma", "u_id"])
    with pytest.raises(bm.ArgumentError, match="names no parameter"):
        bm.plot_rank(post, [])


def test_ppc_labels(figures):
    ax = figures["ppc"].axes[0]
    assert ax.get_title() == "Posterior predictive check: na"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("na", "density")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["observed na", "20 replicated data sets"]


def test_prior_predictive_names_and_draws(prior, model, data):
    assert set(prior["prior"].data_vars) == {"beta", "sd_id", "cor_id", "u_id", "sigma"}
    assert list(prior["prior"]["beta"]["coef"].values) == list(model.design.fixed_names)
    assert prior["prior"]["u_id"].sizes["id_level"] == 37
    y = prior["prior_predictive"]["y"]
    assert y.dims == ("chain", "draw", "obs") and y.shape == (1, 400, len(data))
    np.testing.assert_array_equal(prior["observed_data"]["y"].values, data["na"].to_numpy(dtype=float))
    # the draws are the priors': sigma ~ HalfStudentT(3, s), the slope of previous ~ Normal(0, s')
    priors = model.bayes_model().priors
    s = priors.dispersion.params["sigma"]
    sigma = prior["prior"]["sigma"].values.ravel()
    assert stats.kstest(sigma, lambda x: 2 * stats.t.cdf(x / s, 3) - 1).pvalue > 1e-3
    slope = prior["prior"]["beta"].sel(coef="previous").values.ravel()
    assert stats.kstest(slope, stats.norm(0, priors.b["previous"].params["sigma"]).cdf).pvalue > 1e-3
    # a replicated row is its draw's mean plus normal noise of its draw's sigma
    residual = (y.values[0] - _prior_mean(prior, model)) / sigma[:, None]
    assert abs(residual.std() - 1) < 0.02 and abs(residual.mean()) < 0.02


def _prior_mean(prior, model) -> np.ndarray:
    """Xβ + Zu of every prior draw, (draws, rows)."""
    rows, draws = model.design.rows, prior["prior"]
    u = draws["u_id"].values[0][:, rows.codes[0], :]  # (draws, rows, effects)
    return draws["beta"].values[0] @ rows.X.T + np.einsum("drj,rj->dr", u, rows.z[0])


def test_prior_predictive_plot(figures):
    ax = figures["prior predictive"].axes[0]
    assert ax.get_title() == "Prior predictive check: na"
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("na", "density")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["observed na", "20 replicated data sets"]
    with pytest.raises(bm.ArgumentError, match="takes what model.sample_prior_predictive"):
        bm.plot_prior_predictive(ax)


def _caterpillar(figure, panel: int = 0):
    """(level labels from bottom to top, points, lower, upper) of a caterpillar panel."""
    ax = figure.axes[panel]
    container = ax.containers[0]
    points = container.lines[0].get_xdata()
    segments = container.lines[2][0].get_segments()
    labels = [t.get_text() for t in figure.axes[0].get_yticklabels()]
    return labels, points, np.array([s[0][0] for s in segments]), np.array([s[1][0] for s in segments])


def test_ranef_of_reml_are_modes_within_conditional_sds(reml, figures):
    figure = figures["ranef reml"]
    assert [ax.get_title() for ax in figure.axes] == ["Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]"]
    assert figure._suptitle.get_text() == "Random effects: conditional modes ± 1.96 conditional SD"
    assert figure.axes[0].get_ylabel() == "id (37 levels)" and figure.axes[0].get_xlabel() == "effect"
    modes, cond_sd = reml.ranef(), np.sqrt(np.diagonal(reml.cond_var(), axis1=1, axis2=2))
    order = np.argsort(modes["Intercept"].to_numpy(), kind="stable")
    for panel in range(3):
        labels, points, low, high = _caterpillar(figure, panel)
        assert labels == [str(level) for level in modes.index[order]]
        np.testing.assert_allclose(points, modes.iloc[order, panel])
        np.testing.assert_allclose(high - points, stats.norm.ppf(0.975) * cond_sd[order, panel])
        np.testing.assert_allclose(points - low, high - points)


def test_ranef_of_posterior_are_means_and_quantiles(post, figures):
    figure = figures["ranef posterior"]
    assert figure._suptitle.get_text() == "Random effects: posterior means and 95% intervals"
    draws = post.ranef_draws().stack(sample=("chain", "draw")).transpose("sample", ...).values
    order = np.argsort(draws.mean(axis=0)[:, 0], kind="stable")
    labels, points, low, high = _caterpillar(figure, 2)
    np.testing.assert_allclose(points, draws.mean(axis=0)[order, 2])
    np.testing.assert_allclose(low, np.quantile(draws, 0.025, axis=0)[order, 2])
    np.testing.assert_allclose(high, np.quantile(draws, 0.975, axis=0)[order, 2])
    with pytest.raises(bm.ArgumentError, match=r"no grouping factor 'Subject'; the model has \['id'\]"):
        bm.plot_ranef(post, group="Subject")


@pytest.mark.parametrize("fit, name", [("reml", "music_reml"), ("binary_ml", "music_logit_ml")])
def test_conditional_effects_of_point_fits_are_emmeans(fit, name, request):
    """emmeans at each performance type with previous at its mean, asymptotic intervals (R)."""
    reference = REFERENCE[name]
    table = bm.conditional_effects(request.getfixturevalue(fit), "perform_type")
    assert list(table["perform_type"]) == reference["levels"]
    assert table.attrs["held_at"] == pytest.approx({"previous": reference["previous_mean"]})
    # lme4's default glmer stops short of the optimum (about 1e-5 here); REML fits agree to rounding
    rtol = 1e-6 if fit == "reml" else 1e-4
    for column in ("estimate", "lower", "upper"):
        np.testing.assert_allclose(table[column], reference[column], rtol=rtol)


def test_conditional_effects_of_a_posterior_are_medians_and_quantiles_of_mu(binary_post, data):
    table = bm.conditional_effects(binary_post, "previous", prob=0.9)
    assert len(table) == 100 and table["previous"].iloc[[0, -1]].tolist() == [data["previous"].min(), data["previous"].max()]
    beta = binary_post.posterior["beta"].stack(sample=("chain", "draw")).transpose("sample", ...).values
    x = np.column_stack([np.ones(100), np.zeros(100), np.zeros(100), table["previous"]])  # Large Ensemble: reference
    # quantiles of η mapped to μ: those of μ, up to the interpolation between two draws
    low, middle, high = 1 / (1 + np.exp(-np.quantile(beta @ x.T, [0.05, 0.5, 0.95], axis=0)))
    for column, expected in (("lower", low), ("estimate", middle), ("upper", high)):
        np.testing.assert_allclose(table[column], expected, rtol=1e-10)
    assert table.attrs["held_at"] == {"perform_type": "Large Ensemble"}


def test_conditional_effects_plot_labels(figures):
    figure = figures["conditional effects binary ml"]
    axes = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_xlabel() for ax in axes] == ["perform_type", "previous"]
    assert {ax.get_ylabel() for ax in axes} == {"probability: high_anxiety"}
    assert [t.get_text() for t in axes[0].get_xticklabels()] == ["Large Ensemble", "Small Ensemble", "Solo"]
    assert figure._suptitle.get_text() == "Conditional effects (estimates, 95% confidence intervals)"
    assert figure._supxlabel.get_text() == ("others held at: perform_type = Large Ensemble, previous = 6.78; "
                                            "random effects at 0")
    assert figures["conditional effects reml"].axes[0].get_ylabel() == "expected na"
    assert figures["conditional effects binary posterior"]._suptitle.get_text() == (
        "Conditional effects (posterior medians, 95% intervals)")


def test_conditional_effects_name_the_predictors(reml):
    with pytest.raises(bm.ArgumentError, match=r"'id' is not a predictor of the fixed part; name one of "
                       r"'perform_type', 'previous'"):
        bm.conditional_effects(reml, "id")
    with pytest.raises(bm.ArgumentError, match="prob must be a probability"):
        bm.conditional_effects(reml, "previous", prob=95)


NOTEBOOK_PLOTS = [
    "bm.plot_trace(post)", "bm.plot_rank(post)", "bm.plot_ppc(post, seed=1)",
    "bm.plot_prior_predictive(model.sample_prior_predictive(draws=50, seed=1))",
    "bm.plot_ranef(reml)", "bm.plot_ranef(post)", "bm.plot_conditional_effects(reml)", "bm.qq_plot(reml)",
]


@pytest.mark.slow
def test_a_notebook_shows_each_plot_once():
    """Each plot, the value of a cell executed by a Jupyter kernel (the inline backend), gives one image."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    root = Path(__file__).resolve().parents[1]
    setup = (
        f"import sys, warnings; sys.path.insert(0, {str(root)!r}); warnings.simplefilter('ignore')\n"
        "import pandas as pd, bayesmix as bm\n"
        f"music = pd.read_csv({str(shared_file('data', 'musicdata.csv'))!r})\n"
        f"model = bm.Model({FORMULA!r}, music)\n"
        "reml = model.fit_reml()\n"
        "post = model.sample(draws=50, tune=100, chains=2, seed=1, progressbar=False)"
    )
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(setup)]
                                        + [nbformat.v4.new_code_cell(code) for code in NOTEBOOK_PLOTS])
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3").execute()
    assert bm.__file__.startswith(str(root))
    for cell in notebook.cells[1:]:
        images = [output for output in cell.outputs if "image/png" in output.get("data", {})]
        assert len(images) == 1, f"{cell.source}: {len(images)} images, outputs {[o.output_type for o in cell.outputs]}"
        assert images[0].output_type == "execute_result"  # the returned figure, not a second one pyplot held


def test_pyplot_keeps_the_figures_of_a_window_backend(monkeypatch, post):
    """A script with a window backend shows the plots with plt.show(): pyplot must hold them."""
    monkeypatch.setattr(plt, "get_backend", lambda: "QtAgg")
    plt.close("all")
    try:
        figure = bm.plot_rank(post, "sigma")
        assert plt.get_fignums() == [figure.number]
    finally:
        plt.close("all")


def test_trace_plot_marks_divergent_draws(post):
    stats_ = post.idata["sample_stats"].to_dataset()
    diverging = np.zeros(stats_["diverging"].shape, dtype=bool)
    diverging[1, [7, 42]] = True
    post.idata["sample_stats"] = stats_.assign(diverging=(stats_["diverging"].dims, diverging))
    try:
        figure = bm.plot_trace(post, "sigma")
    finally:
        post.idata["sample_stats"] = stats_
    assert _legend_texts(figure) == ["chain 0", "chain 1", "divergent (2)"]
    marks = figure.subfigs[0].axes[1].lines[-1]
    np.testing.assert_array_equal(marks.get_xdata(), [7, 42])
