"""Working in a notebook: HTML tables, quiet sampling, figures that display themselves."""

from __future__ import annotations

import io
import warnings

import pandas as pd
import pytest
from matplotlib.figure import Figure

import bayesmix as bm

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def fits(sleep):
    model = bm.Model(FORMULA, sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # few draws: low ESS is expected
        post = model.sample(draws=150, tune=150, chains=2, seed=5, progressbar=False)
    return model, model.fit_reml(), post


def test_results_render_as_html_tables(fits):
    _, reml, post = fits
    for html in (reml._repr_html_(), reml.summary()._repr_html_(), post._repr_html_()):
        assert "<table" in html and "Days" in html
    assert "sd(Days)" in post._repr_html_() and FORMULA in post._repr_html_()
    for table in (bm.compare(reml, post), post.summary(), post.ppc(seed=1), reml.varcorr()):
        assert isinstance(table, pd.DataFrame) and "<table" in table._repr_html_()


def test_sampling_without_progress_bar_prints_nothing(fits, capfd):
    model, _, _ = fits
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        model.sample(draws=50, tune=50, chains=1, seed=2, progressbar=False)
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_plots_return_matplotlib_figures(fits):
    _, reml, post = fits
    figures = {
        "qq reml": bm.qq_plot(reml),
        "qq posterior": bm.qq_plot(post),
        "trace": bm.plot_trace(post, var_names=["sigma"]),
        "rank": bm.plot_rank(post, var_names=["sigma"]),
        "ppc": bm.plot_ppc(post, num_samples=20, seed=1),
    }
    for name, figure in figures.items():
        assert isinstance(figure, Figure), name
        assert any(ax.has_data() for ax in figure.axes), name
        png = io.BytesIO()
        figure.savefig(png, format="png")  # what a notebook's inline display does
        assert png.getvalue().startswith(b"\x89PNG")
