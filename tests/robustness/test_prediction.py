"""predict(newdata) on bad or unusual new data, for the REML fit and the posterior."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import ArgumentError, DataError

from .conftest import fit

NEW = pd.DataFrame({"Days": [1.0, 2.0, 3.0], "Subject": [308, 999, 309]}, index=["a", "b", "c"])


# ----- new levels ------------------------------------------------------------------------------
def test_reml_new_level_is_an_error_by_default(sleep_reml):
    with pytest.raises(DataError, match=r"level\(s\) \[999\] of grouping factor 'Subject' that were not in the fitted data; pass allow_new_levels=True"):
        sleep_reml.predict(NEW)


def test_reml_allow_new_levels_predicts_the_population_level(sleep_reml):
    conditional = sleep_reml.predict(NEW, allow_new_levels=True)
    population = sleep_reml.predict(NEW, random=False)
    assert list(conditional.index) == ["a", "b", "c"]
    assert conditional["b"] == population["b"]  # the new subject gets random effect 0
    coef = sleep_reml.coef()
    assert conditional["a"] == pytest.approx(coef.loc[308, "Intercept"] + coef.loc[308, "Days"] * 1.0, rel=1e-12)
    assert conditional["a"] != population["a"]


def test_bayes_new_level_is_an_error_by_default(sleep_post):
    with pytest.raises(DataError, match=r"level\(s\) \[999\] of grouping factor 'Subject'.*new_levels='sample'.*or 'population'"):
        sleep_post.predict(NEW)


def test_bayes_new_levels_population(sleep_post):
    population = sleep_post.predict(NEW, new_levels="population", seed=1)
    fixed = sleep_post.predict(NEW, random=False, seed=1)
    conditional = sleep_post.predict(NEW.iloc[[0, 2]], seed=1)
    assert np.array_equal(population.mu.values[:, :, 1], fixed.mu.values[:, :, 1])
    assert np.array_equal(population.mu.values[:, :, [0, 2]], conditional.mu.values)
    assert list(population.mean.index) == ["a", "b", "c"]


def test_bayes_new_levels_sample_is_reproducible_and_wider(sleep_post):
    first = sleep_post.predict(NEW, new_levels="sample", seed=5)
    again = sleep_post.predict(NEW, new_levels="sample", seed=5)
    other = sleep_post.predict(NEW, new_levels="sample", seed=6)
    population = sleep_post.predict(NEW, new_levels="population", seed=5)
    assert np.array_equal(first.draws.values, again.draws.values)
    assert not np.array_equal(first.mu.values[:, :, 1], other.mu.values[:, :, 1])
    assert np.array_equal(first.mu.values[:, :, [0, 2]], population.mu.values[:, :, [0, 2]])
    # the new subject's μ spreads by the between-subject SD (about 25 ms) on top of the fixed effects
    assert first.mu.values[:, :, 1].std() > 3 * population.mu.values[:, :, 1].std()


@pytest.mark.parametrize("value", ["zero", None, True])
def test_bayes_new_levels_option_is_checked(sleep_post, value):
    with pytest.raises(ArgumentError, match=rf"new_levels must be one of error, population, sample, not {value!r}"):
        sleep_post.predict(NEW, new_levels=value)


# ----- wrong types in newdata --------------------------------------------------------------------
@pytest.fixture(params=["reml", "bayes"])
def result(request, sleep_reml, sleep_post):
    return sleep_reml if request.param == "reml" else sleep_post


def _predict(result, newdata, **options):
    if isinstance(result, bm.RemlResult):
        return result.predict(newdata, allow_new_levels=options.get("allow", False))
    return result.predict(newdata, new_levels="population" if options.get("allow") else "error", seed=1).mean


@pytest.mark.parametrize("allow", [False, True])
def test_text_subject_where_integers_were_fitted(result, allow):
    # used to be reported as 'new levels' (or, with allow_new_levels, silently predicted at the population level)
    with pytest.raises(DataError, match=r"newdata column 'Subject' holds text values, but grouping factor 'Subject' was fitted with number levels \(e.g. 308\).*astype\('int64'\)"):
        _predict(result, NEW.assign(Subject=["308", "999", "309"]), allow=allow)


def test_float_subject_matches_integer_levels(result):
    seen = NEW.iloc[[0, 2]]
    assert np.array_equal(_predict(result, seen.assign(Subject=[308.0, 309.0])).to_numpy(), _predict(result, seen).to_numpy())


def test_categorical_subject_with_unused_categories(result):
    seen = NEW.iloc[[0, 2]]
    padded = seen.assign(Subject=pd.Categorical([308, 309], categories=[400, 309, 308, 500]))
    assert np.array_equal(_predict(result, padded).to_numpy(), _predict(result, seen).to_numpy())


@pytest.mark.parametrize(
    ("days", "dtype"),
    [(["1", "2", "3"], "str"), ([True, False, True], "bool"), (pd.to_datetime(["2024-01-01"] * 3), "datetime64"), (pd.Series([1, 2, 3], dtype=object), "object")],
)
def test_non_numeric_values_for_a_numeric_predictor(result, days, dtype):
    with pytest.raises(DataError, match=rf"newdata column 'Days' has dtype {dtype}.*numeric in the fitted data.*pd.to_numeric\(newdata\['Days'\]\)"):
        _predict(result, NEW.assign(Days=np.asarray(days) if dtype != "object" else days.to_numpy()), allow=True)


@pytest.mark.parametrize(
    ("newdata", "message"),
    [
        (NEW[["Days"]], r"newdata lacks column\(s\) 'Subject' used by the formula"),
        (NEW.rename(columns={"Subject": "subject"}), r"lacks column\(s\) 'Subject'.*Did you mean 'subject'"),
        (NEW.assign(Days=[1.0, np.nan, np.nan]), r"newdata column 'Days' has 2 missing value\(s\).*fill or drop those rows"),
        (NEW.assign(Subject=[308, None, 309]), r"newdata column 'Subject' has 1 missing value\(s\)"),
        (NEW.assign(Days=[1.0, np.inf, 3.0]), r"newdata predictor 'Days' has infinite or undefined values"),
        (NEW.iloc[:0], r"^newdata has no rows\.$"),
        (pd.concat([NEW, NEW[["Days"]]], axis=1), r"newdata has duplicate column name\(s\) 'Days'"),
        (NEW.to_dict(), r"newdata must be a data frame \(pandas or polars DataFrame, pyarrow Table\), not dict"),
    ],
)
def test_bad_newdata(result, newdata, message):
    with pytest.raises(DataError, match=message):
        _predict(result, newdata, allow=True)


def test_extra_columns_and_column_order_do_not_matter(result):
    shuffled = NEW[["Subject", "Days"]].assign(note="x", Reaction=np.nan)
    assert np.array_equal(_predict(result, shuffled, allow=True).to_numpy(), _predict(result, NEW, allow=True).to_numpy())


@pytest.mark.parametrize("flag", ["random", "allow_new_levels"])
def test_reml_predict_flags_must_be_boolean(sleep_reml, flag):
    with pytest.raises(ArgumentError, match=rf"{flag} must be True or False, not 'yes'"):
        sleep_reml.predict(NEW, **{flag: "yes"})


@pytest.mark.parametrize("seed", ["x", -1, 1.5])
def test_bayes_predict_seed_is_checked(sleep_post, seed):
    with pytest.raises(ArgumentError, match=rf"seed must be a non-negative integer or None, not {seed!r}"):
        sleep_post.predict(NEW, new_levels="population", seed=seed)


@pytest.mark.parametrize("method", ["ranef", "coef"])
def test_unknown_grouping_factor_in_readers(result, method):
    with pytest.raises(ArgumentError, match=r"No grouping factor 'subject'"):
        getattr(result, method)("subject")


# ----- categorical predictors --------------------------------------------------------------------
@pytest.fixture(scope="module")
def phase_fit(sleep):
    data = sleep.assign(phase=np.where(sleep["Days"] > 4, "late", "early"))
    return fit("Reaction ~ phase + (1 | Subject)", data)


def test_unseen_level_of_a_categorical_predictor(phase_fit):
    with pytest.raises(DataError, match=r"newdata column 'phase' has level\(s\) \['middle'\] not seen in the fitted data \(known: \['early', 'late'\]\)"):
        phase_fit.predict(pd.DataFrame({"phase": ["middle"], "Subject": [308]}))


def test_categorical_newdata_with_unused_and_reordered_categories(phase_fit):
    plain = pd.DataFrame({"phase": ["late", "early"], "Subject": [308, 309]})
    padded = plain.assign(phase=pd.Categorical(["late", "early"], categories=["never", "late", "early", "soon"]))
    assert np.array_equal(phase_fit.predict(padded).to_numpy(), phase_fit.predict(plain).to_numpy())


def test_interaction_grouping_matches_levels_component_by_component(sleep):
    data = sleep.assign(block=(sleep["Days"] > 4).astype(int))
    f = fit("Reaction ~ Days + (1 | Subject:block)", data)
    ints = pd.DataFrame({"Days": [1.0, 7.0], "Subject": [308, 309], "block": [0, 1]})
    floats = ints.astype({"Subject": float, "block": float})
    assert np.array_equal(f.predict(floats).to_numpy(), f.predict(ints).to_numpy())
    with pytest.raises(DataError, match=r"level\(s\) \['308:7'\] of grouping factor 'Subject:block'"):
        f.predict(ints.assign(block=[7, 1]))


def test_transform_undefined_on_newdata(sleep):
    f = fit("Reaction ~ np.log(Days + 1) + (1 | Subject)", sleep)
    with pytest.raises(DataError, match=r"newdata cannot be materialised for the fixed effects: .*np.log\(Days \+ 1\).*null values"):
        f.predict(pd.DataFrame({"Days": [-3.0], "Subject": [308]}))
    assert np.isfinite(f.predict(pd.DataFrame({"Days": [2.0], "Subject": [308]}))).all()
