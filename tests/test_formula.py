"""lme4 formula text -> MixedFormula: term structure, expansions and syntax errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesmix import DataError, FormulaError, parse_formula
from bayesmix.formula.allowlist import user_transforms
from bayesmix.formula.evaluation import Evaluator

# formula, response, fixed part, bars as (expr, group, correlated)
VALID = [
    ("y ~ x + (1 | g)", "y", "x", [("1", ("g",), True)]),
    ("y ~ x1 + x2*f + (1 | g)", "y", "x1 + x2*f", [("1", ("g",), True)]),
    ("y ~ x + (x | g)", "y", "x", [("x", ("g",), True)]),
    ("y ~ x + (0 + x | g)", "y", "x", [("0 + x", ("g",), True)]),
    ("y ~ x + (x - 1 | g)", "y", "x", [("x - 1", ("g",), True)]),
    ("y ~ x + (1 + x || g)", "y", "x", [("1 + x", ("g",), False)]),
    ("y ~ x + (1 | a/b)", "y", "x", [("1", ("a",), True), ("1", ("a", "b"), True)]),
    ("y ~ x + (x || a/b)", "y", "x", [("x", ("a",), False), ("x", ("a", "b"), False)]),
    ("y ~ (1 | a/b/c)", "y", "1", [("1", ("a",), True), ("1", ("a", "b"), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ (1 | a:b/c)", "y", "1", [("1", ("a", "b"), True), ("1", ("a", "b", "c"), True)]),
    ("y ~ x + (1 | a:b)", "y", "x", [("1", ("a", "b"), True)]),
    ("y ~ x + (1 | a) + (1 | b)", "y", "x", [("1", ("a",), True), ("1", ("b",), True)]),
    ("y ~ x + (1 | g) + (0 + x | g)", "y", "x", [("1", ("g",), True), ("0 + x", ("g",), True)]),
    ("y ~ f + (f | g)", "y", "f", [("f", ("g",), True)]),
    ("np.log(y) ~ scale(x) + C(f) + (1 | g)", "np.log(y)", "scale(x) + C(f)", [("1", ("g",), True)]),
    ("y ~ 0 + x + (1 | g)", "y", "0 + x", [("1", ("g",), True)]),
    ("y ~ x - 1 + (1 | g)", "y", "x - 1", [("1", ("g",), True)]),
    ("y ~ -1 + x + (1 | g)", "y", "x - 1", [("1", ("g",), True)]),
    ("y ~ (1 | g)", "y", "1", [("1", ("g",), True)]),
    ("y ~ (1|g)+x", "y", "x", [("1", ("g",), True)]),
    ("y ~ I(x + z) + (1 | g)", "y", "I(x + z)", [("1", ("g",), True)]),
    ("y ~ x + (1 | `my group`)", "y", "x", [("1", ("my group",), True)]),
    ("y ~ (x + z) + (1 | g)", "y", "(x + z)", [("1", ("g",), True)]),
    ("y ~ x + (np.log(x) + C(f) | g)", "y", "x", [("np.log(x) + C(f)", ("g",), True)]),
]


@pytest.mark.parametrize(("text", "response", "fixed", "bars"), VALID, ids=[v[0] for v in VALID])
def test_valid_formulas(text, response, fixed, bars):
    parsed = parse_formula(text)
    assert parsed.response == response
    assert parsed.fixed == fixed
    assert [(b.expr, b.group, b.correlated) for b in parsed.bars] == bars


def test_variables_are_the_data_columns_named():
    parsed = parse_formula("np.log(y) ~ scale(x) + C(f, contr.sum) + poly(z, degree=2) + (w | a/b)")
    assert parsed.variables == ("y", "x", "f", "z", "w", "a", "b")
    assert parse_formula("y ~ x + (1 | `my group`)").variables == ("y", "x", "my group")
    # a grouping column named by a Python keyword is a column all the same (it was left out, so its
    # missing values went unnoticed)
    assert parse_formula("y ~ x + (1 | school/class)").variables == ("y", "x", "school", "class")
    assert parse_formula("y ~ x + (1 | class)").variables == ("y", "x", "class")


def test_bar_term_text():
    bar, nested = parse_formula("y ~ (x || a/b)").bars
    assert str(bar) == "(x || a)" and str(nested) == "(x || a:b)" and nested.group_name == "a:b"


# formula, message pattern, caret position
INVALID = [
    ("y ~ x", "no random-effects term.*ordinary regression", 5),
    ("y ~ x + (|g)", "left side of this '\\|' is empty", 9),
    ("y ~ x + (1|)", "right side of this '\\|' is empty", 11),
    ("y ~ x + (1 || )", "right side of this '\\|' is empty", 13),
    ("y ~ x + (1 | g", "Unclosed bracket", 8),
    ("y ~ x + (1 | g))", "Unmatched closing bracket", 15),
    ("y ~ x + + (1 | g)", "A term is missing", 8),
    ("y ~ x + (1 | g) +", "A term is missing", 17),
    ("~ x + (1 | g)", "response .* is empty", 0),
    ("y ~", "right side of '~' is empty", 3),
    ("y x + (1 | g)", "no '~'", 13),
    ("y ~ x + (1 | g) ~ z", "Only one '~'", 16),
    ("y ~ x | g", "'\\|' belongs inside a random-effects term", 6),
    ("y ~ log(x | g)", "'\\|' belongs inside a random-effects term", 10),
    ("y ~ (x | g) * z", "'\\|' belongs inside a random-effects term", 7),
    ("y ~ x + (1 | a + b)", "Only ':' and '/'", 15),
    ("y ~ x + (1 | a/)", "ends in an operator", 14),
    ("y ~ x + (1 | g | h)", "has one '\\|'", 15),
    ("y ~ x - (1 | g)", "cannot be subtracted", 8),
    ("y ~ x $ z + (1 | g)", "Unexpected character '\\$'", 6),
    ("y ~ x + (1 | 3)", "must be a column name", 13),
    ("y ~ x + 'unterminated + (1 | g)", "Unterminated quote", 8),
    ("y ~ x + (1 | g) + C(f,", "Unclosed bracket", 19),
    ("y ~ x * * z + (1 | g)", "Syntax error", None),
]


@pytest.mark.parametrize(("text", "message", "position"), INVALID, ids=[v[0] for v in INVALID])
def test_invalid_formulas(text, message, position):
    with pytest.raises(FormulaError, match=message) as info:
        parse_formula(text)
    if position is not None:
        assert info.value.position == position
        caret_line = str(info.value).splitlines()[-1]
        assert caret_line == "    " + " " * position + "^"


def test_non_string_formula():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(None)


FORMULA_ALPHABET = st.sampled_from(list("yxgab01 ~+-*/:|()[]{}.,'`\"=^%$!") + ["||", "np.log(", "C(", " | ", "~ ", "cbind(", "offset("])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(FORMULA_ALPHABET, max_size=25).map("".join)))
def test_any_string_parses_or_raises_formula_error(text):
    try:
        parsed = parse_formula(text)
    except FormulaError:
        return
    assert parsed.bars, "a parsed formula always has a random-effects term"


# ----- binomial responses cbind(successes, failures) and offset() terms, as lme4 writes them -----
# formula, response text, response_parts, fixed, offsets
GLMM = [
    ("cbind(incidence, size - incidence) ~ period + (1 | herd)",
     "cbind(incidence, size - incidence)", ("incidence", "size - incidence"), "period", ()),
    ("cbind(s, f) ~ x + (1 | g)", "cbind(s, f)", ("s", "f"), "x", ()),
    ("cbind(round(s), n^2 - round(s)) ~ (1 | g)", "cbind(round(s), n**2 - round(s))", ("round(s)", "n**2 - round(s)"), "1", ()),
    ("cbind(`my s`, Q('my f')) ~ x + (1 | g)", "cbind(`my s`, Q('my f'))", ("`my s`", "Q('my f')"), "x", ()),
    ("y ~ x + offset(log(t)) + (1 | g)", "y", (), "x", ("log(t)",)),
    ("y ~ offset(np.log(t)) + x + offset(u) + (1 | g)", "y", (), "x", ("np.log(t)", "u")),
    ("y ~ offset(np.log(t)) + (1 | g)", "y", (), "1", ("np.log(t)",)),
    ("y ~ 0 + offset(t^2) + (1 | g)", "y", (), "0", ("t**2",)),
    ("y ~ x - 1 + offset(-t) + (1 | g)", "y", (), "x - 1", ("-t",)),
    ("cbind(s, n - s) ~ x + offset(np.log(n)) + (1 | g)", "cbind(s, n - s)", ("s", "n - s"), "x", ("np.log(n)",)),
]


@pytest.mark.parametrize(("text", "response", "parts", "fixed", "offsets"), GLMM, ids=[v[0] for v in GLMM])
def test_binomial_responses_and_offsets(text, response, parts, fixed, offsets):
    parsed = parse_formula(text)
    assert (parsed.response, parsed.response_parts, parsed.fixed, parsed.offsets) == (response, parts, fixed, offsets)
    again = parse_formula(str(parsed))  # the printed formula reads back as the same model
    assert (again.response, again.response_parts, again.fixed, again.offsets, again.bars) == \
        (parsed.response, parsed.response_parts, parsed.fixed, parsed.offsets, parsed.bars)


def test_the_columns_of_cbind_and_offset_are_variables_of_the_formula():
    parsed = parse_formula("cbind(incidence, size - incidence) ~ period + offset(np.log(days)) + (1 | herd)")
    assert parsed.variables == ("incidence", "size", "period", "days", "herd")  # missing values drop the row
    assert set(parsed.numeric) == {"incidence", "size", "period", "days"}  # integers read as float64
    assert "np" in parsed.functions
    assert str(parsed) == "cbind(incidence, size - incidence) ~ period + offset(np.log(days)) + (1 | herd)"


# formula, message pattern, caret position
GLMM_INVALID = [
    ("cbind(s) ~ x + (1 | g)", r"cbind\(\) takes 2 arguments, not 1", 0),
    ("cbind(s, f, h) ~ x + (1 | g)", r"cbind\(\) takes 2 arguments, not 3", 0),
    ("cbind() ~ x + (1 | g)", r"cbind\(\) takes 2 arguments, not 0", 0),
    ("cbind(s, ) ~ x + (1 | g)", r"argument of cbind\(\) is empty", 8),
    ("cbind(successes=s, f) ~ x + (1 | g)", "by position, without names", 6),
    ("np.log(cbind(s, f)) ~ x + (1 | g)", "must be the whole response", 7),
    ("cbind(s, f) + 1 ~ x + (1 | g)", "must be the whole response", 0),
    ("y ~ cbind(s, f) + (1 | g)", "belongs on the left of '~'", 4),
    ("y ~ x + (cbind(s, f) | g)", "belongs on the left of '~'", 9),
    ("cbind(s, scale(f)) ~ x + (1 | g)", r"scale\(\) learns from the whole data", 9),
    ("cbind(s, C(f)) ~ x + (1 | g)", "categorical factor", 9),
    ("y ~ x + offset() + (1 | g)", r"offset\(\) takes 1 argument, not 0", 8),
    ("y ~ x + offset(t, u) + (1 | g)", r"offset\(\) takes 1 argument, not 2", 8),
    ("y ~ x + offset(object=t) + (1 | g)", "by position, without names", 15),
    ("y ~ x + (offset(t) | g)", "belongs to the fixed part, as in lme4", 9),
    ("y ~ x + (1 + log(offset(t)) | g)", "belongs to the fixed part, as in lme4", 17),
    ("y ~ x + log(offset(t)) + (1 | g)", "a term of its own", 12),
    ("y ~ x:offset(t) + (1 | g)", "a term of its own", 6),
    ("y ~ (1 | g) + x:offset(t)", "a term of its own", 16),
    ("y ~ (x + offset(t)) + (1 | g)", "a term of its own", 9),
    ("offset(y) ~ x + (1 | g)", "belongs on the right of '~'", 0),
    ("y ~ x - offset(t) + (1 | g)", "cannot be subtracted", 8),
    ("y ~ x + offset(poly(t, 2)) + (1 | g)", r"poly\(\) learns from the whole data", 15),
    ("y ~ x + offset(t[0]) + (1 | g)", "do not allow", None),
    # the response's counts may not predict it; the number of trials may
    ("cbind(s, n - s) ~ s + (1 | g)", "The response 's' also appears on the right-hand side.*number of trials", 18),
    ("cbind(s, f) ~ x + f + (1 | g)", "The response 'f' also appears", 18),
    ("cbind(s, f) ~ x + (1 | f)", "The response 'f' also appears", 23),
    ("cbind(n - f, f) ~ x + offset(np.log(f)) + (1 | g)", "The response 'f' also appears", 36),
    ("y ~ x + offset(np.log(y)) + (1 | g)", "The response 'y' also appears", 22),
]


@pytest.mark.parametrize(("text", "message", "position"), GLMM_INVALID, ids=[v[0] for v in GLMM_INVALID])
def test_misplaced_or_malformed_cbind_and_offset(text, message, position):
    test_invalid_formulas(text, message, position)


def test_a_number_of_trials_may_be_a_predictor():
    # lme4 fits cbind(incidence, size - incidence) ~ size: the herd's size is known before the outcome
    parsed = parse_formula("cbind(incidence, size - incidence) ~ size + offset(np.log(size)) + (1 | herd)")
    assert parsed.fixed == "size" and parsed.response_parts == ("incidence", "size - incidence")
    assert parse_formula("cbind(n - f, f) ~ n + (1 | g)").fixed == "n"


def test_cbind_and_offset_are_not_names_for_user_transforms():
    for name in ("cbind", "offset"):
        with pytest.raises(ValueError, match="is a built-in formula function already"):
            user_transforms({name: print})


# the first herd of lme4's cbpp data (incidence of 4 periods out of the herd's size), and exposure times
HERD = pd.DataFrame({
    "incidence": np.array([2, 3, 4, 0], dtype="int8"), "size": [14, 12, 9, 5], "period": ["1", "2", "3", "4"],
    "herd": ["1"] * 4, "days": [1.0, np.e, np.e**2, 10.0], "sick": [True, True, True, False],
})


def test_the_parts_evaluate_row_by_row():
    evaluator = Evaluator.of(parse_formula(
        "cbind(incidence, size - incidence) ~ period + offset(np.log(days)) + offset(size / 2) + (1 | herd)"
    ))
    successes, failures = (evaluator.values(part, HERD) for part in evaluator.formula.response_parts)
    np.testing.assert_array_equal(successes, [2, 3, 4, 0])
    np.testing.assert_array_equal(failures, [12, 9, 5, 5])  # 14 - 2, 12 - 3, 9 - 4, 5 - 0
    assert successes.dtype == failures.dtype == np.float64
    log_days, half_size = (evaluator.values(o, HERD) for o in evaluator.formula.offsets)
    np.testing.assert_allclose(log_days, [0, 1, 2, np.log(10)], rtol=1e-15, atol=1e-15)
    np.testing.assert_array_equal(half_size, [7, 6, 4.5, 2.5])
    np.testing.assert_array_equal(evaluator.values("incidence**4", HERD), [16, 81, 256, 0])  # int8 would wrap at 4**4
    np.testing.assert_array_equal(evaluator.values("sick", HERD), [1, 1, 1, 0])  # booleans are 0 and 1


def test_a_part_that_is_not_one_finite_number_per_row_is_refused():
    def pair(x):
        return np.column_stack([x, x])

    evaluator = Evaluator.of(parse_formula("incidence ~ pair(size) + (1 | herd)", ("pair",)), {"pair": pair})
    data = HERD.assign(zero=[1.0, 0.0, 2.0, 0.0])
    with pytest.raises(DataError, match=r"'np.log\(zero\)' is -inf in 2 row\(s\) \(the first: row 1\)"):
        evaluator.values("np.log(zero)", data)
    with pytest.raises(DataError, match=r"'np.sqrt\(zero - 1\)' is nan in 2 row\(s\)"):
        evaluator.values("np.sqrt(zero - 1)", data)
    with pytest.raises(DataError, match="'period' gives values that are not real numbers"):
        evaluator.values("period", data)
    with pytest.raises(FormulaError, match=r"'pair\(size\)' gives 2 columns per row"):
        evaluator.values("pair(size)", data)
    with pytest.raises(FormulaError, match="reserved"):
        evaluator.values("__import__('os')", data)


# ----- R's conveniences: '.' for every other column, factor(x) for C(x) -----
COLUMNS = ("y", "a", "b", "g", "w", "my col", "t")
# formula, columns excluded besides the formula's own (the weights= column), expanded formula
DOTS = [
    ("y ~ . + (1 | g)", (), "y ~ a + b + w + `my col` + t + (1 | g)"),
    ("y ~ . + (1 | g)", ("w",), "y ~ a + b + `my col` + t + (1 | g)"),
    ("y ~ (1 | g) + .", ("w",), "y ~ (1 | g) + a + b + `my col` + t"),
    ("y ~ . - a + (1 | g)", ("w",), "y ~ a + b + `my col` + t - a + (1 | g)"),
    ("y ~ .^2 + (1 | g)", ("w",), "y ~ (a + b + `my col` + t)^2 + (1 | g)"),
    ("y ~ (.)^2 + (1 | g)", ("w",), "y ~ (a + b + `my col` + t)^2 + (1 | g)"),
    ("y ~ . * a + (a | g)", ("w",), "y ~ (a + b + `my col` + t) * a + (a | g)"),
    ("y ~ . + offset(np.log(t)) + (1 | g)", ("w",), "y ~ a + b + `my col` + offset(np.log(t)) + (1 | g)"),
    ("cbind(a, b - a) ~ . + (1 | g)", ("w",), "cbind(a, b - a) ~ y + `my col` + t + (1 | g)"),
    ("y ~ . + (1 | g/w)", (), "y ~ a + b + `my col` + t + (1 | g/w)"),
    ("y ~ . + (1 | g) + (1 | a:b)", ("w", "my col"), "y ~ t + (1 | g) + (1 | a:b)"),
    ("y ~ np.log(a) + . + (1 | g)", ("w",), "y ~ np.log(a) + a + b + `my col` + t + (1 | g)"),
    ("y ~ np.log(a) + (1 | g)", (), "y ~ np.log(a) + (1 | g)"),  # np.log's dot is no '.'
]


@pytest.mark.parametrize(("text", "exclude", "expanded"), DOTS, ids=[f"{v[0]} {v[1]}" for v in DOTS])
def test_dot_is_every_other_column(text, exclude, expanded):
    # as R's terms(y ~ ., data) (the response left out), and the grouping factors, offsets and weights too
    assert parse_formula(text, columns=COLUMNS, exclude=exclude).text == expanded


# formula, message pattern, caret position
DOT_INVALID = [
    (". ~ x + (1 | g)", "belongs on the right of '~'", 0),
    ("y ~ x + (. | g)", "name the columns of a random-effects term", 9),
    ("y ~ x + (1 + . | g)", "name the columns of a random-effects term", 13),
    ("y ~ np.log(.) + (1 | g)", "not for a function's argument", 11),
    ("y ~ I(. + 1) + (1 | g)", "not for a function's argument", 6),
    ("y ~ {. + 1} + (1 | g)", "not for a function's argument", 5),
]


@pytest.mark.parametrize(("text", "message", "position"), DOT_INVALID, ids=[v[0] for v in DOT_INVALID])
def test_a_dot_where_it_cannot_mean_the_other_columns(text, message, position):
    test_invalid_formulas(text, message, position)  # without the data's columns
    with pytest.raises(FormulaError, match=message):
        parse_formula(text, columns=COLUMNS)


def test_a_dot_needs_the_data():
    with pytest.raises(FormulaError, match=r"which the formula alone does not know: .*bm.Model\(formula, data\)"):
        parse_formula("y ~ . + (1 | g)")
    with pytest.raises(FormulaError, match="there is none left"):
        parse_formula("y ~ . + offset(t) + (1 | g)", columns=["y", "g", "t", "w"], exclude=["w"])
    with pytest.raises(FormulaError, match="column 0 cannot be written in a formula"):
        parse_formula("y ~ . + (1 | g)", columns=["y", "g", 0])


@pytest.mark.filterwarnings("ignore:boundary")
def test_a_model_with_a_dot_is_the_model_with_the_columns_written_out(small):
    import bayesmix as bm

    data = small[["y", "x", "z", "f", "g"]].assign(w=np.linspace(1.0, 2.0, len(small)))
    dotted = bm.Model("y ~ . + (1 | g)", data, weights="w")
    written = bm.Model("y ~ x + z + f + (1 | g)", data, weights="w")
    assert dotted.formula.text == "y ~ x + z + f + (1 | g)"
    assert dotted.design.fixed_names == written.design.fixed_names == ("Intercept", "x", "z", "f[lo]", "f[mid]")
    np.testing.assert_array_equal(dotted.design.rows.X, written.design.rows.X)
    new = data.head(4)
    pd.testing.assert_series_equal(dotted.fit_reml().predict(new), written.fit_reml().predict(new))


def test_factor_is_c(small):
    import bayesmix as bm

    parsed = parse_formula("y ~ factor(k) + (factor(h) | g)")
    assert parsed.numeric == ("y",)  # k and h are read as categories, not as numbers
    as_factor = bm.Model("y ~ factor(k) + x + (1 | g)", small).design
    as_c = bm.Model("y ~ C(k) + x + (1 | g)", small).design
    assert as_factor.fixed_names == ("Intercept", "factor(k)[2]", "x")
    np.testing.assert_array_equal(as_factor.rows.X, as_c.rows.X)
    levels = bm.Model("y ~ factor(f, levels=['mid', 'lo', 'hi']) + (1 | g)", small).design.fixed_names
    assert levels == ("Intercept", "factor(f, levels=['mid', 'lo', 'hi'])[lo]", "factor(f, levels=['mid', 'lo', 'hi'])[hi]")
    with pytest.raises(FormulaError, match=r"factor\(k\) makes a categorical factor") as info:
        parse_formula("y ~ x + offset(factor(k)) + (1 | g)")
    assert info.value.position == 15
    with pytest.raises(ValueError, match="is a built-in formula function already"):
        user_transforms({"factor": print})
