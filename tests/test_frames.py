"""Data frames beyond pandas (issue 17): a polars DataFrame or a pyarrow Table is read wherever a
pandas DataFrame is, by one conversion at the boundary, and gives the same fits and predictions."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm

pl = pytest.importorskip("polars")
pa = pytest.importorskip("pyarrow")

CONVERSIONS = {"polars": pl.from_pandas, "pyarrow": lambda frame: pa.Table.from_pandas(frame, preserve_index=False)}


@pytest.fixture(scope="module")
def music_frame(music):
    """The music data with a missing value (dropped alike) and a categorical column."""
    data = music[["id", "perform_type", "na", "age"]].copy()
    data.loc[5, "na"] = np.nan
    data["instrument"] = pd.Categorical(music["instrument"])
    return data.reset_index(drop=True)


@pytest.mark.parametrize("kind", CONVERSIONS)
def test_reml_fits_and_predictions_are_those_of_pandas(music_frame, kind):
    formula = "na ~ perform_type + age + instrument + (perform_type | id)"
    other = CONVERSIONS[kind](music_frame)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)  # the dropped row and the singular fit, alike
        expected = bm.Model(formula, music_frame).fit_reml()
        fit = bm.Model(formula, other).fit_reml()
    assert fit.design.fixed_names == expected.design.fixed_names
    assert fit.criterion == expected.criterion
    np.testing.assert_array_equal(fit.theta_values, expected.theta_values)
    np.testing.assert_array_equal(fit.beta_values, expected.beta_values)
    new = music_frame.head(7).dropna()
    np.testing.assert_array_equal(fit.predict(CONVERSIONS[kind](new)).to_numpy(), expected.predict(new).to_numpy())
    population = new[["perform_type", "age", "instrument"]]
    np.testing.assert_array_equal(fit.predict(CONVERSIONS[kind](population), random=False).to_numpy(),
                                  expected.predict(population, random=False).to_numpy())


@pytest.mark.parametrize("kind", CONVERSIONS)
def test_glmm_and_posterior_are_those_of_pandas(cbpp, sleep, kind):
    formula = "cbind(incidence, size - incidence) ~ period + (1 | herd)"
    expected = bm.Model(formula, cbpp, family="binomial").fit_ml()
    fit = bm.Model(formula, CONVERSIONS[kind](cbpp), family="binomial").fit_ml()
    assert fit.loglik == expected.loglik
    np.testing.assert_array_equal(fit.beta_values, expected.beta_values)
    settings = dict(draws=30, tune=30, chains=1, seed=3, progressbar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # 30 draws
        post = bm.Model("Reaction ~ Days + (Days | Subject)", CONVERSIONS[kind](sleep), weights=None).sample(**settings)
        reference = bm.Model("Reaction ~ Days + (Days | Subject)", sleep).sample(**settings)
    np.testing.assert_array_equal(post.posterior["beta"].values, reference.posterior["beta"].values)
    new = sleep.head(4)
    np.testing.assert_array_equal(post.predict(CONVERSIONS[kind](new), seed=1).draws.values,
                                  reference.predict(new, seed=1).draws.values)


def test_other_inputs_say_what_to_pass(sleep):
    lazy = pl.from_pandas(sleep).lazy()
    with pytest.raises(bm.DataError, match=r"data is a lazy LazyFrame: collect it first"):
        bm.Model("Reaction ~ Days + (1 | Subject)", lazy)
    with pytest.raises(bm.DataError, match=r"must be a data frame \(pandas or polars DataFrame, pyarrow Table\), not list"):
        bm.Model("Reaction ~ Days + (1 | Subject)", [1, 2])
    with pytest.raises(bm.DataError, match="newdata is a lazy LazyFrame"):
        bm.Model("Reaction ~ Days + (1 | Subject)", sleep).fit_reml().predict(lazy)


def test_an_enum_keeps_its_order_as_a_pandas_categorical_does(music):
    """The baseline of a categorical predictor is its first category: a polars Enum and a pyarrow
    dictionary keep theirs (here Solo first), a polars Categorical reads as sorted text."""
    order = ["Solo", "Large Ensemble", "Small Ensemble"]
    data = music[["id", "na"]].assign(perform_type=pd.Categorical(music["perform_type"], categories=order))
    names = bm.Model("na ~ perform_type + (1 | id)", data).design.fixed_names
    assert names == ("Intercept", "perform_type[Large Ensemble]", "perform_type[Small Ensemble]")
    enum = pl.from_pandas(music[["id", "na", "perform_type"]]).with_columns(pl.col("perform_type").cast(pl.Enum(order)))
    assert bm.Model("na ~ perform_type + (1 | id)", enum).design.fixed_names == names
    table = pa.Table.from_pandas(data, preserve_index=False)
    assert bm.Model("na ~ perform_type + (1 | id)", table).design.fixed_names == names
    categorical = enum.with_columns(pl.col("perform_type").cast(pl.String).cast(pl.Categorical))
    assert bm.Model("na ~ perform_type + (1 | id)", categorical).design.fixed_names == (
        "Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]")
