"""Messy data: missing values, wrong types, degenerate designs, extreme scales.

Each case either raises DataError naming the column and the fix, or warns and gives the
correct result (checked against the same fit on data cleaned by hand).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import DataError, MissingDataWarning, RankDeficiencyWarning

from .conftest import fit, quiet

F = "Reaction ~ Days + (Days | Subject)"


def same_fit(a: bm.RemlResult, b: bm.RemlResult, rtol: float = 0.0) -> None:
    """Equal estimates (exactly, unless rtol is given)."""
    assert list(a.fixef().index) == list(b.fixef().index)
    np.testing.assert_allclose(a.fixef().to_numpy(), b.fixef().to_numpy(), rtol=rtol, atol=0)
    np.testing.assert_allclose(a.theta.to_numpy(), b.theta.to_numpy(), rtol=rtol, atol=1e-300)
    np.testing.assert_allclose([a.criterion, a.sigma], [b.criterion, b.sigma], rtol=rtol, atol=0)


# ----- missing values ------------------------------------------------------------------------
@pytest.mark.parametrize("column", ["Reaction", "Days", "Subject"])
def test_missing_values_are_dropped_counted_and_reported(sleep, column):
    data = sleep.astype({"Reaction": float, "Days": float, "Subject": object})
    data.loc[[3, 50, 177], column] = None  # NaN in the float columns, None in the object one
    with pytest.warns(MissingDataWarning, match=rf"Dropped 3 of 180 rows with missing values in {column} \(3\); fill or remove"):
        model = bm.Model(F, data)
    assert model.design.n == 177 and model.design.n_dropped == 3
    assert 50 not in model.design.rows.index and 51 in model.design.rows.index
    cleaned = sleep.drop(index=[3, 50, 177])
    same_fit(model.fit_reml(), fit(F, cleaned))


def test_missing_values_in_several_columns_counted_per_column_and_once_per_row(sleep):
    data = sleep.astype({"Reaction": float, "Days": float})
    data.loc[[1, 2], "Reaction"] = np.nan
    data.loc[[2, 9], "Days"] = np.nan  # row 2 has both
    with pytest.warns(MissingDataWarning, match=r"Dropped 3 of 180 rows with missing values in Reaction \(2\), Days \(2\)"):
        model = bm.Model(F, data)
    assert model.design.n_dropped == 3


def test_nullable_dtypes_with_pd_na(sleep):
    data = sleep.assign(
        Reaction=pd.array(sleep["Reaction"], dtype="Float64"),
        Days=pd.array(sleep["Days"], dtype="Int64"),
        Subject=pd.array(sleep["Subject"].astype(str), dtype="string"),
    )
    data.loc[0, "Reaction"] = pd.NA
    data.loc[1, "Days"] = pd.NA
    data.loc[2, "Subject"] = pd.NA
    with pytest.warns(MissingDataWarning, match=r"Dropped 3 of 180 rows"):
        model = bm.Model(F, data)
    same_fit(model.fit_reml(), fit(F, sleep.drop(index=[0, 1, 2]).assign(Subject=lambda d: d["Subject"].astype(str))), rtol=1e-12)


def test_missing_values_in_an_unused_column_keep_their_rows(sleep):
    data = sleep.assign(note=[None] * 90 + ["x"] * 90)
    with warnings.catch_warnings():
        warnings.simplefilter("error", MissingDataWarning)
        model = bm.Model(F, data)
    assert model.design.n == 180 and model.design.n_dropped == 0


def test_every_row_missing(sleep):
    with pytest.warns(MissingDataWarning), pytest.raises(DataError, match="No rows are left after dropping rows with missing values"):
        bm.Model(F, sleep.assign(Days=np.nan))


# ----- types -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "dtype"),
    [
        (lambda s: s["Reaction"].astype(str), "str"),
        (lambda s: s["Reaction"].astype("category"), "category"),
        (lambda s: s["Reaction"] > 300, "bool"),
        (lambda s: s["Reaction"].astype(object), "object"),
    ],
)
def test_non_numeric_response(sleep, values, dtype):
    with pytest.raises(DataError, match=rf"response column 'Reaction' has dtype {dtype}; .*needs a numeric response.*pd.to_numeric\(data\['Reaction'\]\)"):
        bm.Model(F, sleep.assign(Reaction=values(sleep)))


def test_complex_response_is_not_silently_made_real(sleep):
    with pytest.raises(DataError, match=r"Column 'Reaction' has dtype complex128.*needs real numbers"):
        bm.Model(F, sleep.assign(Reaction=sleep["Reaction"] + 1j))


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (lambda s: pd.Timestamp("2024-01-01") + pd.to_timedelta(s["Days"], unit="D"), r"a date or time: use a number instead, e.g. \(data\['Days'\] - data\['Days'\].min\(\)\).dt.days"),
        (lambda s: pd.to_timedelta(s["Days"], unit="D"), r"a time difference: use a number instead, e.g. data\['Days'\].dt.total_seconds\(\)"),
    ],
)
def test_dates_as_predictors(sleep, values, message):
    with pytest.raises(DataError, match=rf"Column 'Days' has dtype .*which the formula cannot use; it is {message}"):
        bm.Model(F, sleep.assign(Days=values(sleep)))


def test_object_column_of_numbers_as_predictor_must_be_declared(sleep):
    # formulaic would silently treat it as categorical (one coefficient per value)
    with pytest.raises(DataError, match=r"Column 'Days' has dtype object but holds only numbers.*pd.to_numeric\(data\['Days'\]\).*astype\(str\)"):
        bm.Model(F, sleep.assign(Days=sleep["Days"].astype(object)))


def test_object_column_of_numbers_as_grouping_factor_is_fine(sleep):
    same_fit(fit(F, sleep.assign(Subject=sleep["Subject"].astype(object))), fit(F, sleep))


@pytest.mark.parametrize("column", ["Subject", "kind"])
def test_columns_mixing_text_and_numbers(sleep, column):
    data = sleep.assign(kind=["a", "b"] * 90)
    data[column] = [v if i % 2 else str(v) for i, v in enumerate(data[column].tolist())] if column == "Subject" else [1, "b"] * 90
    with pytest.raises(DataError, match=rf"Column '{column}' mixes number and text values.*astype\(str\)"):
        bm.Model("Reaction ~ Days + kind + (1 | Subject)", data)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.assign(Reaction=250.0), r"response 'Reaction' is constant \(250\); there is nothing to model"),
        (lambda s: s.assign(Reaction=s["Reaction"].replace(s["Reaction"][4], np.inf)), r"response 'Reaction' has 1 infinite"),
        (lambda s: s.assign(Days=s["Days"].replace(3, -np.inf)), r"predictor 'Days' has infinite or undefined values"),
        (lambda s: s.iloc[:0], r"^data has no rows\.$"),
        (lambda s: pd.DataFrame(), r"^data has no rows\.$"),
        (lambda s: s.to_dict(), r"data must be a data frame \(pandas or polars DataFrame, pyarrow Table\), not dict"),
        (lambda s: s.to_numpy(), r"data must be a data frame \(pandas or polars DataFrame, pyarrow Table\), not ndarray"),
        (lambda s: pd.concat([s, s[["Days"]]], axis=1), r"duplicate column name\(s\) 'Days'; rename them"),
        (lambda s: s.assign(Days=s["Days"] * 1e150), r"predictor 'Days' has values as large as 9e\+150.*divide it by 1e150"),
        (lambda s: s.assign(Reaction=s["Reaction"] * 1e300), r"response 'Reaction' has values as large as 4.66e\+302.*divide it by 1e302"),
        (lambda s: s.assign(Reaction=s["Reaction"] * 1e-300), r"response 'Reaction' has values as small as 4.66e-298.*multiply it by 1e298"),
    ],
)
def test_bad_values_name_the_column(sleep, change, message):
    with pytest.raises(DataError, match=message):
        bm.Model(F, change(sleep))


@pytest.mark.parametrize(
    ("formula", "data", "message"),
    [
        ("twice ~ Days + (1 | Subject)", "twice", r"fixed effects reproduce the response 'twice' to within 1e-10.*is it also a predictor"),
        ("Reaction ~ C(Days) + (1 | g)", "saturated", r"The model has 6 fixed-effect column\(s\) for 6 observations, so no residual variance"),
        ("np.log(Reaction - 300) ~ Days + (1 | Subject)", None, r"'np.log\(Reaction - 300\)' in the response is undefined \(NaN\) for some rows, e.g. the log of zero or of a negative"),
        ("Reaction ~ np.sqrt(Days - 5) + (1 | Subject)", None, r"'np.sqrt\(Days - 5\)' in the fixed-effects part is undefined \(NaN\)"),
    ],
)
def test_responses_left_without_residual_or_undefined(sleep, formula, data, message):
    if data == "saturated":
        data = sleep.iloc[:6].assign(g=[1, 2, 1, 2, 1, 2])
    elif data == "twice":  # the response is a predictor under another name
        data = sleep.assign(twice=2 * sleep["Days"])
    with pytest.raises(DataError, match=message):
        bm.Model(formula, sleep if data is None else data)


def test_extreme_values_inside_a_random_term(sleep):
    data = sleep.assign(w=sleep["Days"] * 1e120)
    with pytest.raises(DataError, match=r"column of term \(w \| Subject\) 'w' has values as large as 9e\+120"):
        bm.Model("Reaction ~ 1 + (w | Subject)", data)


# ----- grouping factors --------------------------------------------------------------------------
GROUP_DTYPES = {
    "int": lambda g: g,
    "float": lambda g: g.astype(float),
    "str": lambda g: g.astype(str),
    "object": lambda g: g.astype(str).astype(object),
    "category": lambda g: g.astype("category"),
    "ordered": lambda g: pd.Categorical(g, categories=sorted(g.unique())[::-1], ordered=True),
}


def test_grouping_column_dtypes_give_the_same_fit(sleep):
    fits = {name: fit(F, sleep.assign(Subject=convert(sleep["Subject"]))) for name, convert in GROUP_DTYPES.items()}
    base = fits.pop("int")
    reversed_ = fits.pop("ordered")  # levels in the reverse order: the same optimum, reached along another path
    same_fit(reversed_, base, rtol=1e-5)
    assert reversed_.criterion == pytest.approx(base.criterion, rel=1e-12)
    assert list(reversed_.ranef().index) == list(base.ranef().index)[::-1]
    np.testing.assert_allclose(reversed_.ranef().to_numpy()[::-1], base.ranef().to_numpy(), rtol=1e-4, atol=1e-6)
    for name, f in fits.items():  # the same levels in the same order: bit for bit
        same_fit(f, base)
        assert [str(v).removesuffix(".0") for v in f.ranef().index] == [str(v) for v in base.ranef().index], name
        assert np.array_equal(f.ranef().to_numpy(), base.ranef().to_numpy()), name


def test_boolean_grouping_equals_two_level_int_and_str(sleep):
    two = sleep[sleep["Subject"].isin([308, 309])]
    base = fit("Reaction ~ Days + (1 | Subject)", two)
    for values in (two["Subject"] == 309, (two["Subject"] == 309).astype(str), (two["Subject"] == 309).astype("category")):
        other = fit("Reaction ~ Days + (1 | Subject)", two.assign(Subject=values))
        same_fit(other, base, rtol=1e-12)
        np.testing.assert_allclose(other.ranef().to_numpy(), base.ranef().to_numpy(), rtol=1e-9)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.assign(Subject="only"), r"Grouping factor 'Subject' has 1 level; a random effect needs at least two groups"),
        (lambda s: s[s["Subject"] == 308], r"Grouping factor 'Subject' has 1 level.*Drop the term \(Days \| Subject\)"),
        (lambda s: s.assign(Subject=range(180)), r"Grouping factor 'Subject' has as many levels \(180\) as observations \(180\)"),
        (lambda s: s.iloc[[10 * i + i % 10 for i in range(18)]], r"Grouping factor 'Subject' has as many levels \(18\) as observations \(18\)"),
    ],
)
def test_degenerate_grouping_factors(sleep, change, message):
    with pytest.raises(DataError, match=message):
        bm.Model(F, change(sleep))


def test_groups_of_size_one_are_shrunk_by_the_exact_formula(sleep):
    # three subjects keep one row each: their conditional modes are θ²/(1 + θ²) times their residual
    keep = ~sleep["Subject"].isin([308, 309, 310]) | (sleep["Days"] == 0)
    data = sleep[keep]
    f = fit("Reaction ~ Days + (1 | Subject)", data)
    assert f.ngrps == {"Subject": 18} and f.nobs == 153
    theta = f.theta.iloc[0]
    for subject in (308, 309, 310):
        row = data[data["Subject"] == subject].iloc[0]
        residual = row["Reaction"] - f.fixef()["Intercept"] - f.fixef()["Days"] * row["Days"]
        assert f.ranef().loc[subject, "Intercept"] == pytest.approx(theta**2 / (1 + theta**2) * residual, rel=1e-9)


# ----- rank deficiency and constant columns --------------------------------------------------------
@pytest.mark.parametrize(
    ("formula", "extra", "dropped", "without"),
    [
        ("Reaction ~ Days + c + (1 | Subject)", {"c": 3.0}, "c", "Reaction ~ Days + (1 | Subject)"),
        ("Reaction ~ Days + x2 + (1 | Subject)", {"x2": lambda d: 2 * d["Days"] + 1}, "x2", "Reaction ~ Days + (1 | Subject)"),
        ("Reaction ~ x2 + Days + (1 | Subject)", {"x2": lambda d: 2 * d["Days"] + 1}, "Days", "Reaction ~ x2 + (1 | Subject)"),
        ("Reaction ~ Days + late + early + (1 | Subject)", {"late": lambda d: (d["Days"] > 4) * 1.0, "early": lambda d: (d["Days"] <= 4) * 1.0}, "early", "Reaction ~ Days + late + (1 | Subject)"),
    ],
)
def test_rank_deficient_columns_are_dropped_as_lme4(sleep, formula, extra, dropped, without):
    data = sleep.assign(**extra)
    with pytest.warns(RankDeficiencyWarning, match=rf"1 column\(s\) were dropped \(linear combinations of earlier columns\): {dropped}\."):
        model = bm.Model(formula, data)
    assert model.design.dropped_columns == (dropped,)
    same_fit(model.fit_reml(), fit(without, data))


def test_unused_categories_are_dropped_without_a_warning(sleep):
    late = np.where(sleep["Days"] > 4, "late", "early")
    padded = sleep.assign(phase=pd.Categorical(late, categories=["early", "never", "late", "unused"]), Subject=sleep["Subject"].astype("category").cat.add_categories([999]))
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.BayesmixWarning)
        model = bm.Model("Reaction ~ phase + (phase | Subject)", padded)
    assert model.design.fixed_names == ("Intercept", "phase[late]")
    assert model.design.groups == {"Subject": 18}
    same_fit(model.fit_reml(), fit("Reaction ~ phase + (phase | Subject)", sleep.assign(phase=late)))


def test_random_slope_constant_within_groups_warns(sleep):
    age = sleep["Subject"].map(dict(zip(sorted(sleep["Subject"].unique()), range(20, 38)))).astype(float)
    with pytest.warns(RankDeficiencyWarning, match=r"'age' is constant within every level of 'Subject', so its random slope on 'Subject' is confounded with the random intercept.*keep 'age' as a fixed effect"):
        model = bm.Model("Reaction ~ Days + age + (age | Subject)", sleep.assign(age=age))
    result = quiet(model.fit_reml)
    assert np.isfinite(result.fixef()).all() and np.isfinite(result.theta).all()


def test_random_slope_that_varies_within_groups_does_not_warn(sleep):
    with warnings.catch_warnings():
        warnings.simplefilter("error", RankDeficiencyWarning)
        bm.Model(F, sleep)


def test_random_slope_constant_everywhere_is_an_error(sleep):
    with pytest.raises(DataError, match=r"In the random-effects term \(c \| Subject\), column\(s\) 'c' are constant.*Remove them from the term"):
        bm.Model("Reaction ~ Days + (c | Subject)", sleep.assign(c=2.0))


def test_random_term_with_duplicate_columns_is_an_error(sleep):
    with pytest.raises(DataError, match=r"column\(s\) 'd2' are constant, all zero or linear combinations"):
        bm.Model("Reaction ~ Days + (Days + d2 | Subject)", sleep.assign(d2=sleep["Days"] * 3))
