"""Bad formulas: each raises FormulaError naming the culprit (with a caret) and the fix."""

from __future__ import annotations

import numpy as np
import pytest

import bayesmix as bm
from bayesmix import DataError, FormulaError


@pytest.mark.parametrize(
    ("formula", "message", "position"),
    [
        ("Reaction + (1 | Subject)", r"no '~'.*write the response on the left", 24),
        ("", r"no '~'", 0),
        ("~ Days + (1 | Subject)", r"response \(left of '~'\) is empty", 0),
        ("Reaction ~", r"right side of '~' is empty", 10),
        ("Reaction ~ Days", r"no random-effects term.*Add a term like \(1 \| group\)", 15),
        ("Reaction ~ Days + (1 | Subject", r"Unclosed bracket '\('", 18),
        ("Reaction ~ Days) + (1 | Subject)", r"Unmatched closing bracket '\)'", 15),
        ("Reaction ~ Days + ( | Subject)", r"left side of this '\|' is empty.*\(1 \| g\)", 20),
        ("Reaction ~ Days + (1 | )", r"right side of this '\|' is empty", 22),
        ("Reaction ~ Days - (1 | Subject)", r"cannot be subtracted", 18),
        ("Reaction ~ Days + (1 | factor(Subject))", r"grouping side of a bar takes column names, not a function call such as factor.*\(1 \| g\) for \(1 \| factor\(g\)\)", 23),
        ("Reaction ~ Days + 1 | Subject", r"belongs inside a random-effects term", 20),
        ("Reaction ~ Days + (1 | Subject | Days)", r"one '\|'.*split it into two terms", 31),
        ("Reaction ~ Days ~ Subject + (1 | Subject)", r"Only one '~'", 16),
        ("Reaction ~ Days + + (1 | Subject)", r"A term is missing here", 18),
    ],
)
def test_syntax_errors_point_at_the_culprit(sleep, formula, message, position):
    with pytest.raises(FormulaError, match=message) as info:
        bm.Model(formula, sleep)
    assert info.value.position == position
    assert info.value.formula == formula
    if formula:
        assert str(info.value).splitlines()[-1] == "    " + " " * position + "^"


@pytest.mark.parametrize("formula", [3, None, ["Reaction ~ Days + (1 | Subject)"]])
def test_formula_must_be_text(sleep, formula):
    with pytest.raises(FormulaError, match=f"must be a string such as 'y ~ x \\+ \\(1 \\| g\\)', not {type(formula).__name__}"):
        bm.Model(formula, sleep)


@pytest.mark.parametrize(
    ("formula", "column", "suggestion", "position"),
    [
        ("Reaction ~ days + (1 | Subject)", "days", "Days", 11),
        ("Reaction ~ Days + (1 | subject)", "subject", "Subject", 23),
        ("reaction ~ Days + (1 | Subject)", "reaction", "Reaction", 0),
        ("np.log(Reactoin) ~ Days + (1 | Subject)", "Reactoin", "Reaction", 7),
        ("Reaction ~ Days + (Dayz | Subject)", "Dayz", "Days", 19),
    ],
)
def test_unknown_columns_get_a_close_match(sleep, formula, column, suggestion, position):
    with pytest.raises(FormulaError, match=f"Variable '{column}' is not a column of the data. Did you mean '{suggestion}'") as info:
        bm.Model(formula, sleep)
    assert info.value.position == position


def test_unknown_column_without_close_match_says_only_that(sleep):
    with pytest.raises(FormulaError, match=r"Variable 'zzz' is not a column of the data\.\n"):
        bm.Model("Reaction ~ zzz + (1 | Subject)", sleep)


def test_r_factor_function_is_c(sleep):
    # R's factor(x) is the allow-list's name for formulaic's C(x): the days become ten levels
    design = bm.Model("Reaction ~ factor(Days) + (1 | Subject)", sleep).design
    assert design.fixed_names == ("Intercept", *(f"factor(Days)[{d}]" for d in range(1, 10)))
    np.testing.assert_array_equal(design.rows.X, bm.Model("Reaction ~ C(Days) + (1 | Subject)", sleep).design.rows.X)


def test_unknown_function_in_a_random_term(sleep):
    with pytest.raises(FormulaError, match=r"'logg' is not a function a formula may call.*\n.*\(logg\(Days\) \| Subject\)\n {23}\^"):
        bm.Model("Reaction ~ Days + (logg(Days) | Subject)", sleep)


def test_function_that_fails_on_the_data_is_a_data_error(sleep):
    data = sleep.assign(kind=["a", "b"] * 90)
    with pytest.raises(DataError, match=r"Cannot evaluate 'np.log\(kind\)' in the fixed-effects part.*Check the type of the columns"):
        bm.Model("Reaction ~ np.log(kind) + (1 | Subject)", data)


def test_random_term_without_columns(sleep):
    with pytest.raises(FormulaError, match=r"\(0 \| Subject\) has no columns: write \(1 \| Subject\)"):
        bm.Model("Reaction ~ Days + (0 | Subject)", sleep)


def test_response_of_two_columns(sleep):
    with pytest.raises(DataError, match=r"response 'Reaction \+ Days' gives 2 columns; it must be one numeric column"):
        bm.Model("Reaction + Days ~ 1 + (1 | Subject)", sleep)
