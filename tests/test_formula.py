"""lme4 formula text -> MixedFormula: term structure, expansions and syntax errors."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesmix import FormulaError, parse_formula

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


FORMULA_ALPHABET = st.sampled_from(list("yxgab01 ~+-*/:|()[]{}.,'`\"=^%$!") + ["||", "np.log(", "C(", " | ", "~ "])


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=40), st.lists(FORMULA_ALPHABET, max_size=25).map("".join)))
def test_any_string_parses_or_raises_formula_error(text):
    try:
        parsed = parse_formula(text)
    except FormulaError:
        return
    assert parsed.bars, "a parsed formula always has a random-effects term"
