"""Formula + data -> Design, checked against model matrices written out by hand."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from bayesmix.data.newdata import new_data

X_ = np.arange(1.0, 10.0)
ONE = np.ones(9)
Z_ = np.array([0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 1.0, 3.0, -2.0])
F_LO = np.array([1.0, 0, 0, 1, 0, 0, 1, 0, 0])
F_MID = np.array([0.0, 1, 0, 0, 1, 0, 0, 1, 0])
F_HI = np.array([0.0, 0, 1, 0, 0, 1, 0, 0, 1])
K_2 = np.array([0.0, 1, 1, 0, 1, 1, 0, 1, 1])
G = ("g", ["g1", "g2", "g3"], [0, 0, 0, 1, 1, 1, 2, 2, 2])
H = ("h", [1, 2, 3], [2, 0, 1, 2, 0, 1, 2, 0, 1])
A = ("a", ["A", "B"], [0, 0, 0, 0, 1, 1, 1, 1, 1])
AB = ("a:b", ["A:u", "A:v", "B:u", "B:v"], [0, 0, 1, 1, 2, 2, 3, 3, 3])
SCALED = (X_ - 5.0) / np.std(X_, ddof=1)

# formula, fixed effects {name: column}, terms [(factor, {column: values}, correlated)]
CASES = [
    ("y ~ x + (1 | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ x + (x | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE, "x": X_}, True)]),
    ("y ~ x + (1 + x | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE, "x": X_}, True)]),
    ("y ~ x + (0 + x | g)", {"Intercept": ONE, "x": X_}, [(G, {"x": X_}, True)]),
    ("y ~ x + (x - 1 | g)", {"Intercept": ONE, "x": X_}, [(G, {"x": X_}, True)]),
    ("y ~ x + (1 + x || g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, False), (G, {"x": X_}, False)]),
    ("y ~ x + (x || g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, False), (G, {"x": X_}, False)]),
    (
        "y ~ x + (x + z || g)",
        {"Intercept": ONE, "x": X_},
        [(G, {"Intercept": ONE}, False), (G, {"x": X_}, False), (G, {"z": Z_}, False)],
    ),
    ("y ~ x + (0 + x || g)", {"Intercept": ONE, "x": X_}, [(G, {"x": X_}, False)]),
    ("y ~ x + (1 | a/b)", {"Intercept": ONE, "x": X_}, [(A, {"Intercept": ONE}, True), (AB, {"Intercept": ONE}, True)]),
    ("y ~ x + (1 | a:b)", {"Intercept": ONE, "x": X_}, [(AB, {"Intercept": ONE}, True)]),
    ("y ~ x + (x | a:b)", {"Intercept": ONE, "x": X_}, [(AB, {"Intercept": ONE, "x": X_}, True)]),
    ("y ~ x + (1 | g) + (1 | h)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, True), (H, {"Intercept": ONE}, True)]),
    ("y ~ x + (1 | g) + (0 + x | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, True), (G, {"x": X_}, True)]),
    ("y ~ x + (f | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE, "f[lo]": F_LO, "f[mid]": F_MID}, True)]),
    ("y ~ x + (0 + f | g)", {"Intercept": ONE, "x": X_}, [(G, {"f[hi]": F_HI, "f[lo]": F_LO, "f[mid]": F_MID}, True)]),
    ("y ~ f + (1 | g)", {"Intercept": ONE, "f[lo]": F_LO, "f[mid]": F_MID}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ 0 + f + (1 | g)", {"f[hi]": F_HI, "f[lo]": F_LO, "f[mid]": F_MID}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ np.log(x) + (1 | g)", {"Intercept": ONE, "np.log(x)": np.log(X_)}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ scale(x) + (1 | g)", {"Intercept": ONE, "scale(x)": SCALED}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ C(k) + (1 | g)", {"Intercept": ONE, "C(k)[2]": K_2}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ 0 + x + (1 | g)", {"x": X_}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ x - 1 + (1 | g)", {"x": X_}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ -1 + x + (1 | g)", {"x": X_}, [(G, {"Intercept": ONE}, True)]),
    (
        "y ~ x*f + (1 | g)",
        {"Intercept": ONE, "x": X_, "f[lo]": F_LO, "f[mid]": F_MID, "x:f[lo]": X_ * F_LO, "x:f[mid]": X_ * F_MID},
        [(G, {"Intercept": ONE}, True)],
    ),
    ("y ~ x + z + (1 | g)", {"Intercept": ONE, "x": X_, "z": Z_}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ (1 | g)", {"Intercept": ONE}, [(G, {"Intercept": ONE}, True)]),
    ("y ~ x + (1 | `my group`)", {"Intercept": ONE, "x": X_}, [(("my group", ["p", "q"], [0, 1, 0, 1, 0, 1, 0, 1, 0]), {"Intercept": ONE}, True)]),
    ("y ~ x + (scale(x) | g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE, "scale(x)": SCALED}, True)]),
    ("y~x+(1|g)", {"Intercept": ONE, "x": X_}, [(G, {"Intercept": ONE}, True)]),
]


@pytest.mark.parametrize(("formula", "fixed", "terms"), CASES, ids=[c[0] for c in CASES])
def test_design_matches_hand_computed_matrices(small, formula, fixed, terms):
    d = bm.make_design(formula, small)
    np.testing.assert_array_equal(d.rows.y, small["y"].to_numpy())
    assert d.fixed_names == tuple(fixed)
    np.testing.assert_allclose(d.rows.X, np.column_stack(list(fixed.values())), rtol=1e-12)
    assert len(d.terms) == len(terms)
    for k, (term, ((group, levels, codes), columns, correlated)) in enumerate(zip(d.terms, terms)):
        assert term.group == group
        assert list(term.levels) == levels
        np.testing.assert_array_equal(d.rows.codes[k], codes)
        assert term.columns == tuple(columns)
        assert term.correlated is correlated
        np.testing.assert_allclose(d.rows.z[k], np.column_stack(list(columns.values())), rtol=1e-12)


def test_response_transform(small):
    d = bm.make_design("np.log(y) ~ x + (1 | g)", small)
    np.testing.assert_allclose(d.rows.y, np.log(small["y"]))


def test_music_design(music):
    d = bm.make_design("na ~ perform_type + (perform_type | id)", music)
    assert d.n == 497 and d.n_dropped == 0
    assert d.fixed_names == ("Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]")
    kind = music["perform_type"].to_numpy()
    np.testing.assert_array_equal(d.rows.X[:, 0], 1.0)
    np.testing.assert_array_equal(d.rows.X[:, 1], kind == "Small Ensemble")
    np.testing.assert_array_equal(d.rows.X[:, 2], kind == "Solo")
    (term,) = d.terms
    assert term.group == "id" and term.n_levels == 37 and term.q == 3 and term.correlated
    assert term.columns == d.fixed_names
    np.testing.assert_array_equal(d.rows.z[0], d.rows.X)
    np.testing.assert_array_equal(term.levels[d.rows.codes[0]], music["id"].to_numpy())
    assert d.groups == {"id": 37}


def test_missing_values_of_a_grouping_column_named_by_a_python_keyword_are_dropped(small):
    data = small.assign(**{"class": small["g"]})
    data.loc[4, "class"] = None
    with pytest.warns(MissingDataWarning, match=r"Dropped 1 of 9 rows.*class \(1\)"):
        d = bm.make_design("y ~ x + (1 | class)", data)
    assert d.n == 8 and 4 not in d.rows.index


@pytest.mark.parametrize(
    ("formula", "message"),
    [
        ("y ~ xx + (1 | g)", "'xx' is not a column.*Did you mean 'x'"),
        ("y ~ x + (1 | gg)", "'gg' is not a column.*Did you mean 'g'"),
        ("yy ~ x + (1 | g)", "'yy' is not a column"),
        ("y ~ x + (0 | g)", "has no columns"),
        ("y ~ x + (F | g)", "'F' is not a column.*Did you mean 'f'"),
    ],
)
def test_unknown_variables_and_empty_terms(small, formula, message):
    with pytest.raises(FormulaError, match=message):
        bm.make_design(formula, small)


def test_unknown_variable_caret_points_at_it(small):
    with pytest.raises(FormulaError) as info:
        bm.make_design("y ~ x + zz + (1 | g)", small)
    assert info.value.position == 8


def test_missing_values_dropped_counted_and_reported(small):
    data = small.copy()
    data.loc[1, "y"] = np.nan
    data.loc[4, "g"] = None
    data.loc[6, "b"] = None  # b is not used by the formula: its row stays
    with pytest.warns(MissingDataWarning, match=r"Dropped 2 of 9 rows.*y \(1\), g \(1\)"):
        d = bm.make_design("y ~ x + (1 | g)", data)
    assert d.n == 7 and d.n_dropped == 2
    assert list(d.rows.index) == [0, 2, 3, 5, 6, 7, 8]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.assign(y=d["f"]), "response column 'y' has dtype"),
        (lambda d: d.assign(y=d["y"] > 3), "response column 'y' has dtype bool"),
        (lambda d: d.assign(y=2.0), "response 'y' is constant"),
        (lambda d: d.assign(y=d["y"].replace(5.0, np.inf)), "response 'y' has 1 infinite"),
        (lambda d: d.assign(x=d["x"].replace(5.0, -np.inf)), "predictor 'x' has infinite"),
        (lambda d: d.iloc[:0], "data has no rows"),
        (lambda d: d.assign(g="same"), "Grouping factor 'g' has 1 level"),
        (lambda d: d.assign(g=range(9)), "as many levels \\(9\\) as observations"),
        (lambda d: d.assign(y=np.nan), "No rows are left"),
    ],
)
def test_data_errors_name_the_column(small, change, message):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)
        with pytest.raises(DataError, match=message):
            bm.make_design("y ~ x + (1 | g)", change(small))


def test_duplicate_columns_and_non_frames(small):
    with pytest.raises(DataError, match="duplicate column name.*'x'"):
        bm.make_design("y ~ x + (1 | g)", pd.concat([small, small[["x"]]], axis=1))
    with pytest.raises(DataError, match=r"must be a data frame \(pandas or polars DataFrame, pyarrow Table\), not dict"):
        bm.make_design("y ~ x + (1 | g)", small.to_dict())


def test_collinear_column_dropped_as_lme4(small):
    data = small.assign(x2=2 * small["x"] + 1)
    with pytest.warns(RankDeficiencyWarning, match="1 column.*x2"):
        d = bm.make_design("y ~ x + x2 + z + (1 | g)", data)
    assert d.fixed_names == ("Intercept", "x", "z") and d.dropped_columns == ("x2",)
    np.testing.assert_array_equal(d.rows.X[:, 2], small["z"])


def test_grouping_factor_of_any_dtype(small):
    for values in (small["h"], small["h"].astype(str), small["h"].astype("category"), small["h"] > 1):
        d = bm.make_design("y ~ x + (1 | h)", small.assign(h=values))
        assert d.terms[0].n_levels == len(set(values))
        np.testing.assert_array_equal(d.terms[0].levels[d.rows.codes[0]], values.to_numpy())


def test_new_data_reuses_columns_contrasts_and_state(small):
    d = bm.make_design("y ~ scale(x) + f + (f | g)", small)
    new = pd.DataFrame({"x": [5.0, 10.0], "f": ["mid", "hi"], "g": ["g2", "g9"]})
    nd = new_data(d, new)
    np.testing.assert_allclose(nd.X, [[1.0, 0.0, 0.0, 1.0], [1.0, 5.0 / np.std(X_, ddof=1), 0.0, 0.0]])
    np.testing.assert_array_equal(nd.codes[0], [1, -1])
    np.testing.assert_array_equal(nd.z[0], [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    assert nd.unseen == {"g": ["g9"]}


@pytest.mark.parametrize(
    ("new", "message"),
    [
        (pd.DataFrame({"x": [1.0], "g": ["g1"]}), "lacks column.*'f'"),
        (pd.DataFrame({"x": [1.0], "f": ["top"], "g": ["g1"]}), "'f' has level.*'top'.*not seen"),
        (pd.DataFrame({"x": ["1"], "f": ["lo"], "g": ["g1"]}), "'x' has dtype .* numeric in the fitted data"),
        (pd.DataFrame({"x": [np.nan], "f": ["lo"], "g": ["g1"]}), "'x' has 1 missing"),
    ],
)
def test_new_data_errors(small, new, message):
    d = bm.make_design("y ~ x + f + (1 | g)", small)
    with pytest.raises(DataError, match=message):
        new_data(d, new)


def test_design_repr_names_terms(music):
    text = repr(bm.make_design("na ~ perform_type + (perform_type | id)", music))
    assert "id (37 levels): Intercept, perform_type[Small Ensemble], perform_type[Solo] [correlated]" in text
