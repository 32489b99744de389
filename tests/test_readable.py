"""Results that read well in a notebook (issue 17): short reprs, warnings at the caller's line, a
singular fit that names what is on its boundary, population-level predictions without the
grouping columns."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.datasets import MUSIC_REML


@pytest.fixture(scope="module")
def sleep_posterior(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # 2 x 100 draws
        return bm.Model("Reaction ~ Days + (Days | Subject)", sleep).sample(draws=100, tune=100, chains=2, seed=1,
                                                                            progressbar=False)


def test_a_prediction_shows_its_first_and_last_rows(sleep_posterior):
    prediction = sleep_posterior.predict()
    text = repr(prediction)
    lines = text.splitlines()
    assert len(lines) <= 14 and "Prediction of 180 rows (2 chains x 100 draws)" in lines[0]
    assert "... 170 more rows ..." in text
    interval = prediction.interval()
    for row in (0, 4, 175, 179):  # the rows shown are those of interval(), to 4 significant digits
        shown = next(line for line in lines if line.split()[0] == str(row)).split()[1:]
        np.testing.assert_allclose([float(v) for v in shown], interval.iloc[row].to_numpy(), rtol=5e-4)
    page = prediction._repr_html_()
    assert page.count("<tr") == 12 and "... 170 more rows" in page  # header, 10 rows and the gap
    link = sleep_posterior.predict(type="link")
    assert "linear predictor" in repr(link) and link.scale == "link"


def test_priors_models_and_bayesian_models_read_as_tables(sleep, sleep_posterior):
    priors = sleep_posterior.priors
    text = repr(priors)
    table = priors.table()
    assert text.splitlines()[0] == "Priors:" and len(text.splitlines()) == len(table) + 2
    assert all(prior in text for prior in table["prior"]) and priors._repr_html_().count("<tr") == len(table) + 1
    model = bm.Model("Reaction ~ Days + (Days | Subject)", sleep)
    page = model._repr_html_()
    assert "Reaction ~ Days + (Days | Subject)" in page and "<td>18</td>" in page and "correlated" in page
    bayes = model.bayes_model()
    assert repr(bayes).startswith("<BayesModel 'Reaction ~ Days + (Days | Subject)'") and "HalfStudentT" in repr(bayes)
    assert "collapsed" in bayes._repr_html_() and "<table" in bayes._repr_html_()


def test_warnings_point_at_the_callers_line(sleep, music):
    data = sleep.assign(Days2=sleep["Days"] * 2.0)
    data.loc[3, "Reaction"] = np.nan
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bm.Model("Reaction ~ Days + Days2 + (1 | Subject)", data).fit_reml()  # a missing value, a dependent column
        bm.Model("na ~ perform_type + (perform_type | id)", music).fit_reml()  # singular
        bm.Model("Reaction ~ Days + (Days | Subject)", sleep).sample(draws=20, tune=20, chains=1, seed=1,
                                                                     progressbar=False)  # too few draws
    kinds = {type(w.message) for w in caught}
    assert {bm.MissingDataWarning, bm.RankDeficiencyWarning, bm.ConvergenceWarning} <= kinds
    assert {w.filename for w in caught} == {__file__}


def _singular_message(fit) -> tuple[object, str]:
    """The result of ``fit()`` and the message of its singular-fit warning."""
    with pytest.warns(bm.ConvergenceWarning, match="boundary") as caught:
        result = fit()
    return result, str(caught[0].message)


def test_a_zero_sd_is_named():
    """Every group holds the same values, so the between-group variance, and its REML and ML
    estimates, are exactly 0."""
    rng = np.random.default_rng(3)
    values = rng.normal(size=6)
    data = pd.DataFrame({"y": np.concatenate([rng.permutation(values) for _ in range(5)]), "g": np.repeat(list("abcde"), 6)})
    _, message = _singular_message(bm.Model("y ~ 1 + (1 | g)", data).fit_reml)
    assert message.startswith("boundary (singular) fit: sd(Intercept | g) is 0.")
    binomial = pd.DataFrame({"y": np.tile([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], 20), "g": np.repeat(np.arange(20), 10)})
    _, message = _singular_message(bm.Model("y ~ 1 + (1 | g)", binomial, family="binomial").fit_ml)
    assert message.startswith("boundary (singular) fit: sd(Intercept | g) is 0.")


def test_a_correlation_of_one_is_named():
    rng = np.random.default_rng(1)
    g, x = np.repeat(np.arange(6), 8), np.tile(np.arange(8.0), 6)
    a = rng.normal(0, 1, 6)  # the slopes are proportional to the intercepts
    data = pd.DataFrame({"y": 1 + 0.5 * x + a[g] + 0.3 * a[g] * x + rng.normal(0, 1, len(g)), "x": x, "g": g})
    reml, message = _singular_message(bm.Model("y ~ x + (x | g)", data).fit_reml)
    assert "cor(Intercept, x | g) is +1" in message
    assert reml.varcorr()["sdcor"].iloc[2] == pytest.approx(1.0, abs=1e-6)  # the printed correlation


def test_a_rank_deficient_covariance_matrix_is_named(music):
    """The music model: lme4's correlations are -0.43, 0.74 and 0.29, none of them +-1, yet its
    3 x 3 covariance matrix has rank 2 (the Solo row of Λ has a zero diagonal)."""
    reml, message = _singular_message(bm.Model("na ~ perform_type + (perform_type | id)", music).fit_reml)
    assert ("the covariance matrix of (Intercept, perform_type[Small Ensemble], perform_type[Solo] | id) is "
            "rank-deficient: the perform_type[Solo] effects are a linear combination of the Intercept and "
            "perform_type[Small Ensemble] effects (no correlation is ±1)") in message
    corr = reml.varcorr()["sdcor"].iloc[3:6].to_numpy()
    np.testing.assert_allclose(corr, [MUSIC_REML["corr"][0][1], MUSIC_REML["corr"][0][2], MUSIC_REML["corr"][1][2]], atol=2e-3)
    assert message.split("fit: ", 1)[1] in str(reml.summary())


def test_population_predictions_need_no_grouping_column(sleep, sleep_posterior, cbpp):
    new = pd.DataFrame({"Days": [0.0, 4.5, 9.0]})
    with_group = new.assign(Subject=308)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        reml = bm.Model("Reaction ~ Days + (Days | Subject)", sleep).fit_reml()
        glmm = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, family="binomial").fit_ml()
    pd.testing.assert_series_equal(reml.predict(new, random=False), reml.predict(with_group, random=False))
    np.testing.assert_allclose(reml.predict(new, random=False), reml.fixef()["Intercept"] + reml.fixef()["Days"] * new["Days"],
                               rtol=1e-12)
    periods = pd.DataFrame({"period": ["1", "4"]})
    pd.testing.assert_series_equal(glmm.predict(periods, random=False),
                                   glmm.predict(periods.assign(herd="1"), random=False))
    a = sleep_posterior.predict(new, random=False, seed=2)
    b = sleep_posterior.predict(with_group, random=False, seed=2)
    np.testing.assert_array_equal(a.mu.values, b.mu.values)
    with pytest.raises(bm.DataError, match="lacks column.*'Subject'"):
        reml.predict(new)  # the random effects need the grouping column
    with pytest.raises(bm.DataError, match=r"lacks column\(s\) 'Days'.*predict\(random=False\)"):
        reml.predict(pd.DataFrame({"Subject": [308]}), random=False)
