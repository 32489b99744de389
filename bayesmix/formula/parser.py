"""lme4 formula text -> :class:`MixedFormula`.

The layer we own is the bar terms: ``(expr | g)``, ``(expr || g)``, ``(expr | a/b)`` and
``(expr | a:b)``, and lme4's two calls that are syntax rather than functions: a binomial
response ``cbind(successes, failures)`` and ``offset(x)`` terms in the fixed part. The fixed
part and the expression inside each bar are ordinary Wilkinson formulas; they are syntax-checked
here (by formulaic), their Python parts are checked against the allow-list of
:mod:`bayesmix.formula.allowlist` (nothing is evaluated here), and they are materialised later
by :mod:`bayesmix.data`. The arguments of ``cbind()`` and ``offset()`` are single expressions
(``size - incidence`` is a difference, not a Wilkinson formula), checked against the same
allow-list and evaluated by :meth:`bayesmix.formula.evaluation.Evaluator.values`.

Where the syntax is R's, so is the meaning: ``^`` inside a function call (``I(x^2)``,
``poly(x^2, 2)``) is a power, as in R, not Python's bitwise exclusive or; at the top level
``(a + b)^2`` keeps its Wilkinson meaning (all interactions up to order 2).
"""

from __future__ import annotations

import difflib
import functools
import itertools
import keyword
import re
from collections.abc import Iterable
from dataclasses import dataclass

import formulaic
from formulaic.errors import FormulaicError

from ..errors import FormulaError
from .allowlist import (
    CATEGORICAL,
    FORMULA_SYNTAX,
    LEARNING_TRANSFORMS,
    UnsafeExpression,
    Usage,
    check_expression,
    check_lookup,
)
from .tokens import OPENING, Token, depths, matching_close, tokenize


@dataclass(frozen=True)
class BarTerm:
    """One random-effects term ``(expr | group)`` after lme4's expansions.

    Attributes
    ----------
    expr
        Wilkinson formula of the term's columns (``"1 + Days"``); an intercept is implied
        unless the text says ``0 +`` or ``- 1``, as in lme4.
    group
        The grouping variables; ``("a", "b")`` is the interaction factor ``a:b``.
    correlated
        False for ``||`` terms, which the design splits into one term per column.
    """

    expr: str
    group: tuple[str, ...]
    correlated: bool

    @property
    def group_name(self) -> str:
        """The grouping factor as lme4 prints it: ``"id"`` or ``"a:b"``."""
        return ":".join(self.group)

    def __str__(self) -> str:
        return f"({self.expr} {'|' if self.correlated else '||'} {self.group_name})"


@dataclass(frozen=True)
class MixedFormula:
    """A parsed mixed-model formula: response, fixed part and random-effects terms.

    Attributes
    ----------
    text
        The formula as written.
    response
        The left-hand side as written (``"na"``, ``"np.log(y)"``, or for a binomial response
        ``"cbind(incidence, size - incidence)"``, as lme4 prints it).
    fixed
        The fixed-effects part as a Wilkinson formula (``"1"`` if only bars were given), without
        its ``offset()`` terms.
    bars
        The random-effects terms, nested grouping (``a/b``) already expanded.
    variables
        Names of every data column the formula refers to, in order of appearance (those of
        ``cbind()`` and ``offset()`` included, so that a missing value in any of them drops the row).
    numeric
        The columns read as numbers by the response, fixed part, offsets or term expressions
        (all of their columns except those read only as ``C(x)``); integer columns among them
        are promoted to float64 before evaluation, so that ``I(x**2)`` cannot wrap around.
    functions
        The functions and namespaces the formula calls (``np``, ``C``, a user's transform).
    transforms
        The names of the user's own functions the formula was checked against.
    response_parts
        For a binomial response ``cbind(successes, failures)``, its two argument expressions,
        ``("incidence", "size - incidence")``: the number of successes and the number of
        failures per row (trials = successes + failures). Empty for any other response.
    offsets
        The expressions inside the ``offset()`` terms of the fixed part, in order
        (``("np.log(t)",)``): each is added, with coefficient one, to the linear predictor.
        Several offsets add up, as in R.
    """

    text: str
    response: str
    fixed: str
    bars: tuple[BarTerm, ...]
    variables: tuple[str, ...]
    numeric: tuple[str, ...] = ()
    functions: tuple[str, ...] = ()
    transforms: tuple[str, ...] = ()
    response_parts: tuple[str, ...] = ()
    offsets: tuple[str, ...] = ()

    @property
    def predictor_variables(self) -> tuple[str, ...]:
        """The columns the right-hand side reads (the fixed part, offsets, random-effects terms
        and grouping factors): what new data must hold to be predicted."""
        parts = [self.fixed, *self.offsets, *(bar.expr for bar in self.bars)]
        return self._reading(parts, {g for bar in self.bars for g in bar.group})

    @property
    def fixed_variables(self) -> tuple[str, ...]:
        """The columns the fixed part and the offsets read: what new data must hold to be
        predicted at the population level (without the random effects)."""
        return self._reading([self.fixed, *self.offsets], set())

    def _reading(self, parts: list[str], names: set[str]) -> tuple[str, ...]:
        """The variables, in order, that ``parts`` (Wilkinson expressions) read, or in ``names``."""
        names = names | {name for part in parts for name in variables_in(part)}
        return tuple(v for v in self.variables if v in names)

    def __str__(self) -> str:
        terms = [self.fixed, *(f"offset({o})" for o in self.offsets), *(str(b) for b in self.bars)]
        return f"{self.response} ~ " + " + ".join(terms)


_NOT_VARIABLES = set(keyword.kwlist) | {"True", "False", "None"}


def parse_formula(
    text: str, transforms: tuple[str, ...] = (), columns: Iterable | None = None, exclude: Iterable[str] = ()
) -> MixedFormula:
    """Parse lme4-style formula ``text`` (results are cached: a MixedFormula is immutable).

    ``transforms`` names the user's own functions the formula may call besides the built-in
    allow-list (see :mod:`bayesmix.formula.allowlist`). ``columns``, the data's column names,
    give R's ``.`` its meaning, every other column (:func:`expand_dot`; ``exclude`` names the
    columns the model uses otherwise, its ``weights=`` and ``offset=`` arguments); the parsed
    formula's ``text`` is then the expanded one.

    Raises
    ------
    FormulaError
        On any syntax error (with a caret under the offending place), a side of ``~`` or of
        a bar that is empty, a formula with no random-effects term, a Python part outside the
        allow-list, or a response that also appears on the right-hand side; a ``cbind()``
        other than the whole response with two arguments, an ``offset()`` other than a term of the
        fixed part with one argument, or either one's argument calling a transform that learns
        from the data (``scale``, ``poly``, ...); a ``.`` where it cannot stand for the other
        columns, or without ``columns``.
    """
    if not isinstance(text, str):
        raise FormulaError(f"The formula must be a string such as 'y ~ x + (1 | g)', not {type(text).__name__}.")
    if columns is not None:
        text = expand_dot(text, columns, exclude)
    return _parse(text, tuple(sorted(transforms)))


def expand_dot(text: str, columns: Iterable, exclude: Iterable[str] = ()) -> str:
    """``text`` with R's ``.`` written out as the data's other columns, in the data's order.

    As in R, ``y ~ . + (1 | g)`` reads every column of the data as a fixed-effect term except
    the response's; unlike R (whose ``.`` knows nothing of bars), the grouping factors, the
    columns of ``offset()`` terms and ``exclude`` (the ``weights=`` and ``offset=`` columns) are
    left out too. A ``.`` that is a term of its own becomes ``a + b + c``; one inside an
    expression of terms (``.^2``, ``. * x``, ``x - .``) becomes ``(a + b + c)``. ``text``
    without a ``.`` is returned as it is.

    Raises
    ------
    FormulaError
        For a ``.`` on the left of ``~``, in a random-effects term, or inside a function call,
        where it cannot stand for terms; for a column name a formula cannot quote (non-string,
        or holding a backtick); and when no other column is left.
    """
    tokens = tokenize(text)
    tildes = [i for i, t in enumerate(tokens) if t.text == "~" and t.kind == "op" and depths(tokens)[i] == 0]
    if len(tildes) != 1 or not (dots := _placed_dots(text, tokens, tildes[0])):
        return text  # nothing to expand, or a formula the parser refuses with its own message
    split = tildes[0]
    used = set(_variables(tokens[:split])) | set(exclude)
    whole = set()
    for sign, chunk in _additive_chunks(text, tokens, split + 1, len(tokens)):
        if _is_bar(tokens, chunk):
            used |= {name for group in _grouping(text, tokens[_bar_index(tokens, chunk) + 1 : chunk[1] - 1])
                     for name in group}
        elif _call_at(tokens, chunk, "offset"):
            used |= set(_variables(tokens[chunk[0] : chunk[1]]))
        elif chunk[1] - chunk[0] == 1 and sign == "+":
            whole.add(chunk[0])
    others = [_quoted(name, text, tokens[dots[0]].start) for name in columns if name not in used]
    if not others:
        raise FormulaError(
            "'.' stands for every column of the data that the formula does not use otherwise, but there is none "
            "left: every column is the response, a grouping factor, an offset or the weights. Remove the '.'.",
            text,
            tokens[dots[0]].start,
        )
    terms = " + ".join(others)
    for k in reversed(dots):
        bare = k in whole or len(others) == 1 or tokens[k - 1].text == "(" and tokens[k + 1].text == ")"
        text = text[: tokens[k].start] + (terms if bare else f"({terms})") + text[tokens[k].end :]
    return text


def _placed_dots(text: str, tokens: list[Token], split: int) -> list[int]:
    """Indices of the tokens that are R's ``.`` (a ``.`` standing alone, not a member access as in
    ``np.log``), after checking that each stands where it can mean the other columns: among the
    terms of the fixed part, not on the left of ``~``, in a bar or inside a call."""
    depth = depths(tokens)
    dots = [k for k, tok in enumerate(tokens) if tok.kind == "op" and tok.text == "."
            and (k == 0 or tokens[k - 1].kind == "op" and tokens[k - 1].text != "." or tokens[k - 1].text in OPENING)]
    for k in dots:
        if k < split:
            raise FormulaError(
                "'.' means every other column of the data, which belongs on the right of '~': write the response "
                "on the left, e.g. 'y ~ . + (1 | g)'.", text, tokens[k].start,
            )
        opening = [j for j in range(split + 1, k) if tokens[j].text in OPENING and matching_close(tokens, j) > k]
        outer = next((j for j in opening if depth[j] == 0), None)
        if outer is not None and _is_bar(tokens, (outer, matching_close(tokens, outer) + 1)):
            raise FormulaError(
                "'.' (every other column) is a shorthand for the fixed part only: name the columns of a "
                "random-effects term, e.g. (1 + x | g).", text, tokens[k].start,
            )
        call = next((j for j in opening if tokens[j].text == "{" or j > 0 and tokens[j - 1].kind in ("name", "backtick")),
                    None)
        if call is not None:
            raise FormulaError(
                "'.' stands for terms (every other column), not for a function's argument: apply the function to "
                "each column by name, e.g. np.log(a) + np.log(b).", text, tokens[k].start,
            )
    return dots


def _bar_index(tokens: list[Token], chunk: tuple[int, int]) -> int:
    """The index of the ``|`` or ``||`` of the bar term tokens[chunk]."""
    inner = depths(tokens[chunk[0] + 1 : chunk[1] - 1])
    return next(chunk[0] + 1 + k for k, d in enumerate(inner) if d == 0 and tokens[chunk[0] + 1 + k].text in ("|", "||"))


def _quoted(name, text: str, position: int) -> str:
    """A column ``name`` as a formula writes it: as it is when it is an identifier, else in backticks."""
    if not isinstance(name, str) or "`" in name:
        raise FormulaError(
            f"'.' stands for every other column, but column {name!r} cannot be written in a formula "
            f"({'its name is not a string' if not isinstance(name, str) else 'its name holds a backtick'}): "
            "rename it (data.columns = data.columns.astype(str)), or name the columns instead of '.'.",
            text, position,
        )
    return name if name.isidentifier() and name not in _NOT_VARIABLES else f"`{name}`"


@functools.lru_cache(maxsize=256)
def _parse(text: str, transforms: tuple[str, ...]) -> MixedFormula:
    tokens = _r_powers(text, tokenize(text))
    usage = Usage()
    check = functools.partial(_validated, text, transforms=transforms, usage=usage)
    depth = depths(tokens)
    tildes = [i for i, t in enumerate(tokens) if t.text == "~" and t.kind == "op"]
    if not tildes:
        raise FormulaError(
            "The formula has no '~': write the response on the left, e.g. 'y ~ x + (1 | g)'.", text, len(text)
        )
    for i in tildes:
        if depth[i] != 0 or i != tildes[0]:
            raise FormulaError("Only one '~' is allowed, at the top level of the formula.", text, tokens[i].start)
    split = tildes[0]
    if split == 0:
        raise FormulaError("The response (left of '~') is empty: write e.g. 'y ~ x + (1 | g)'.", text, 0)
    if split == len(tokens) - 1:
        raise FormulaError("The right side of '~' is empty: add predictors and a term like (1 | g).", text, len(text))
    if dots := _placed_dots(text, tokens, split):
        raise FormulaError(
            "'.' means every other column of the data, which the formula alone does not know: give the formula with "
            "its data, bm.Model(formula, data), or name the columns.", text, tokens[dots[0]].start,
        )
    chunks = list(_additive_chunks(text, tokens, split + 1, len(tokens)))
    cbind = _call_at(tokens, (0, split), "cbind")
    offset_chunks = [chunk for _, chunk in chunks if _call_at(tokens, chunk, "offset")]
    _check_syntax_calls(text, tokens, split, {0} if cbind else set(), {chunk[0] for chunk in offset_chunks})
    expression = functools.partial(_expression, text, transforms=transforms, usage=usage)
    if cbind:
        parts = [expression(arg, "cbind") for arg in _arguments(text, tokens, 0, 2)]
        response, response_parts = _source(text, tokens[:split]), tuple(piece for piece, _ in parts)
        counts = _count_columns([reads for _, reads in parts])
    else:
        response, response_parts = check(tokens[:split]), ()
        counts = dict(usage.values)

    added: list[str] = []
    removed: list[str] = []
    bars: list[BarTerm] = []
    offsets: list[str] = []
    for sign, chunk in chunks:
        if chunk in offset_chunks:
            if sign == "-":
                raise FormulaError(
                    "An offset cannot be subtracted: write its negative inside, e.g. + offset(-x).", text,
                    tokens[chunk[0]].start,
                )
            offsets.append(expression(_arguments(text, tokens, chunk[0], 1)[0], "offset")[0])
            continue
        if _is_bar(tokens, chunk):
            if sign == "-":
                raise FormulaError("A random-effects term cannot be subtracted; remove the '-'.", text, tokens[chunk[0]].start)
            bars.extend(_bar_terms(text, tokens, chunk, check))
            continue
        for j in range(*chunk):
            if tokens[j].text in ("|", "||"):
                raise FormulaError(
                    "A '|' belongs inside a random-effects term of its own, wrapped in parentheses and "
                    "joined by '+', e.g. 'y ~ x + (x | g)'.",
                    text,
                    tokens[j].start,
                )
        (added if sign == "+" else removed).append(check(tokens[chunk[0] : chunk[1]]))
    if not bars:
        raise FormulaError(
            "The formula has no random-effects term such as (1 | g), so this is an ordinary regression, "
            "not a mixed model. Add a term like (1 | group), or fit it with statsmodels.formula.api.ols.",
            text,
            len(text),
        )
    fixed = " + ".join(added or ["1"]) + "".join(f" - {part}" for part in removed)
    named = _variables(tokens)
    grouping = (name for bar in bars for name in bar.group)  # a grouping column may be a Python keyword
    variables = named + tuple(dict.fromkeys(v for v in (*usage.values, *grouping) if v not in named))
    _check_response_not_predictor(text, tokens[split + 1 :], counts, bars, binomial=bool(cbind))
    _check_generated_names(text, tokens[split + 1 :], bars)
    numeric = tuple(v for v in usage.values if v in variables)
    return MixedFormula(
        text, response, fixed, tuple(bars), variables, numeric, tuple(usage.functions), transforms,
        response_parts, tuple(offsets),
    )


def _call_at(tokens: list[Token], chunk: tuple[int, int], name: str) -> bool:
    """Whether tokens[chunk] is exactly one call ``name(...)``."""
    start, stop = chunk
    return (
        stop - start >= 3 and tokens[start].kind == "name" and tokens[start].text == name
        and tokens[start + 1].text == "(" and matching_close(tokens, start + 1) == stop - 1
    )


_MISPLACED = {
    ("cbind", "lhs"): "cbind(successes, failures) must be the whole response, not part of an expression: "
    "write e.g. cbind(incidence, size - incidence) ~ period + (1 | herd), with any arithmetic inside its arguments.",
    ("cbind", "rhs"): "cbind(successes, failures) is a binomial response: it belongs on the left of '~', "
    "e.g. cbind(incidence, size - incidence) ~ period + (1 | herd).",
    ("offset", "lhs"): "offset() belongs on the right of '~', as a term of the fixed part: "
    "e.g. y ~ x + offset(np.log(t)) + (1 | g).",
    ("offset", "bar"): "An offset belongs to the fixed part, as in lme4, not to a random-effects term: "
    "move it out of the bar, e.g. y ~ x + offset(np.log(t)) + (1 | g).",
    ("offset", "rhs"): "offset() is a term of its own, joined to the others by '+' (not inside a call, "
    "an interaction or parentheses): e.g. y ~ x + offset(np.log(t)) + (1 | g).",
}


def _check_syntax_calls(text: str, tokens: list[Token], split: int, response: set[int], offsets: set[int]) -> None:
    """FormulaError at a ``cbind()`` or ``offset()`` call anywhere but where it means something:
    the whole response for cbind, a term of the fixed part for offset (at token indices
    ``response`` and ``offsets``)."""
    depth = depths(tokens)
    for k, tok in enumerate(tokens[:-1]):
        if tok.kind != "name" or tok.text not in FORMULA_SYNTAX or tokens[k + 1].text != "(":
            continue
        if (k > 0 and tokens[k - 1].text == ".") or k in response or k in offsets:
            continue
        if k < split:
            where = "lhs"
        else:
            outer = next((j for j in range(split + 1, k) if tokens[j].text == "(" and depth[j] == 0
                          and matching_close(tokens, j) > k), None)
            in_bar = outer is not None and _is_bar(tokens, (outer, matching_close(tokens, outer) + 1))
            where = "bar" if tok.text == "offset" and in_bar else "rhs"
        raise FormulaError(_MISPLACED[tok.text, where], text, tok.start)


def _arguments(text: str, tokens: list[Token], call: int, count: int) -> list[list[Token]]:
    """The ``count`` positional arguments of the call whose name is tokens[call]; FormulaError for
    another number of arguments, an empty one or a keyword argument."""
    name, close = tokens[call].text, matching_close(tokens, call + 1)
    inner = tokens[call + 1 : close + 1]
    depth = depths(inner)
    bounds = [0, *(k for k, tok in enumerate(inner) if depth[k] == 1 and tok.text == ","), len(inner) - 1]
    args = [inner[a + 1 : b] for a, b in itertools.pairwise(bounds)]
    usage = "cbind(successes, failures), e.g. cbind(incidence, size - incidence)" if name == "cbind" else \
        "offset(x), e.g. offset(np.log(t)); for several offsets add several terms"
    given = 0 if args == [[]] else len(args)
    if given != count:
        raise FormulaError(f"{name}() takes {count} argument{'s' * (count > 1)}, not {given}: write {usage}.", text,
                           tokens[call].start)
    for before, arg in zip(bounds, args):
        if not arg:
            raise FormulaError(f"An argument of {name}() is empty: write {usage}.", text, inner[before].end)
        if len(arg) > 2 and arg[0].kind == "name" and arg[1].text == "=" and arg[2].text != "=":
            raise FormulaError(f"{name}() takes its arguments by position, without names: write {usage}.", text,
                               arg[0].start)
    return args


def _expression(
    text: str, toks: list[Token], call: str, *, transforms: tuple[str, ...], usage: Usage
) -> tuple[str, tuple[str, ...]]:
    """The text of one argument of ``cbind()`` or ``offset()``, a single expression computed row by
    row, and the columns it reads, after checking it against the allow-list; the names it uses
    are added to ``usage``."""
    start = toks[0].start
    piece = _source(text, toks)
    try:
        used = check_expression(piece, transforms)
    except UnsafeExpression as exc:
        raise FormulaError(str(exc), text, _locate(text, exc.culprit, start)) from None
    learning = [f for f in used.functions if f in LEARNING_TRANSFORMS]
    if learning:
        raise FormulaError(
            f"{learning[0]}() learns from the whole data (a mean, a scale, knots), but {call}() takes a value "
            f"computed row by row. Compute it beforehand, e.g. data['x_{learning[0]}'] = ..., and use that column.",
            text,
            _locate(text, learning[0], start),
        )
    if used.factors:
        name = next(iter(used.factors))
        coding = next(f for f in used.functions if f in CATEGORICAL)
        raise FormulaError(
            f"{call}() takes numbers, but {coding}({name}) makes a categorical factor. Use the numeric column itself.",
            text,
            _locate(text, f"{coding}(", start),
        )
    usage.update(used)
    return piece, tuple(used.values)


def _count_columns(reads: list[tuple[str, ...]]) -> dict[str, None]:
    """The columns of ``cbind(successes, failures)`` that are counts of the response, which may not
    be predictors: a part's column when the part reads one column (``incidence``, ``failures``),
    and a column both parts read (``incidence`` in ``size - incidence``). A column read by one
    part among others (``size`` in ``size - incidence``) is the number of trials, known before the
    outcome, and may be a predictor. ``reads``: the columns each part reads."""
    counts = {name: None for names in reads if len(names) == 1 for name in names}
    counts |= {name: None for name in reads[0] if name in reads[1]}
    return counts


def _check_response_not_predictor(
    text: str, rhs: list[Token], response: dict[str, None], bars: list[BarTerm], *, binomial: bool
) -> None:
    """FormulaError when a column of the response (``response``: its names; for a ``binomial``
    response its count columns, :func:`_count_columns`) is also used on the right-hand side."""
    rhs_names = set(_variables(rhs)) | {name for bar in bars for name in bar.group}
    for name in response:
        if name in rhs_names:
            where = next((t.start for t in rhs if t.kind in ("name", "backtick") and _unquote(t.text) == name), None)
            raise FormulaError(
                f"The response {name!r} also appears on the right-hand side; a model cannot predict a variable "
                f"from itself. Remove {name!r} from the right-hand side (fixed part and random-effects terms)."
                + (" (A number of trials may be a predictor: write the failures as trials minus successes, e.g. "
                   "cbind(incidence, size - incidence) ~ size + ...)" if binomial else ""),
                text,
                where,
            )


GENERATED_NAMES = ("Intercept",)


def _check_generated_names(text: str, rhs: list[Token], bars) -> None:
    """FormulaError for a predictor column named like a column the model makes itself (``Intercept``),
    which would silently take its place."""
    groups = {name for bar in bars for name in bar.group}
    for tok in rhs:
        name = _unquote(tok.text)
        if tok.kind in ("name", "backtick") and name in GENERATED_NAMES and name not in groups:
            raise FormulaError(
                f"A column named {name!r} would take the place of the model's own {name} column. Rename it, "
                f"e.g. data.rename(columns={{{name!r}: '{name.lower()}_value'}}), and use the new name.",
                text,
                tok.start,
            )


def _r_powers(text: str, tokens: list[Token]) -> list[Token]:
    """Read ``^`` inside a function call or ``{...}`` as R does, as a power: the token becomes ``**``."""
    out: list[Token] = []
    calls: list[bool] = []  # for each open bracket: does it open a call (or {...}, formulaic's I())?
    for k, tok in enumerate(tokens):
        if tok.kind == "bracket" and tok.text in "([{":
            calls.append(tok.text == "{" or (tok.text == "(" and k > 0 and tokens[k - 1].kind in ("name", "backtick")))
        elif tok.kind == "bracket":
            calls.pop()
        if tok.kind == "op" and tok.text == "^" and any(calls):
            tok = Token("op", "**", tok.start, width=1)
        out.append(tok)
    return out


def variables_in(expression: str) -> tuple[str, ...]:
    """Data columns named in a Wilkinson ``expression`` (names that are not functions or keywords)."""
    return _variables(tokenize(expression))


def suggest(name: str, candidates) -> str:
    """'Did you mean' text for an unknown ``name`` among ``candidates`` (empty if nothing is close)."""
    close = difflib.get_close_matches(name, [str(c) for c in candidates], n=3, cutoff=0.6)
    if not close:
        lowered = {str(c).lower(): str(c) for c in candidates}
        close = [lowered[name.lower()]] if name.lower() in lowered else []
    return f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""


def _additive_chunks(text: str, tokens: list[Token], lo: int, hi: int):
    """Yield (sign, (start, stop)) for the '+'/'-'-separated top-level pieces of tokens[lo:hi]."""
    depth = depths(tokens[lo:hi])
    sign, start = "+", lo
    for k in range(lo, hi + 1):
        at_end = k == hi
        tok = None if at_end else tokens[k]
        if at_end or (depth[k - lo] == 0 and tok.kind == "op" and tok.text in "+-"):
            if k == start:
                if k == lo and tok is not None and tok.text == "-":
                    sign, start = "-", k + 1
                    continue
                where = tokens[k].start if not at_end else (tokens[hi - 1].end if hi > lo else len(text))
                raise FormulaError("A term is missing here (two operators in a row, or one at the end).", text, where)
            yield sign, (start, k)
            if not at_end:
                sign, start = tok.text, k + 1


def _is_bar(tokens: list[Token], chunk: tuple[int, int]) -> bool:
    start, stop = chunk
    if tokens[start].text != "(" or matching_close(tokens, start) != stop - 1:
        return False
    inner = depths(tokens[start + 1 : stop - 1])
    return any(tokens[start + 1 + k].text in ("|", "||") and d == 0 for k, d in enumerate(inner))


def _bar_terms(text: str, tokens: list[Token], chunk: tuple[int, int], check) -> list[BarTerm]:
    lo, hi = chunk[0] + 1, chunk[1] - 1
    inner_depth = depths(tokens[lo:hi])
    bars = [lo + k for k, d in enumerate(inner_depth) if d == 0 and tokens[lo + k].text in ("|", "||")]
    if len(bars) > 1:
        raise FormulaError("A random-effects term has one '|' (or '||'); split it into two terms.", text, tokens[bars[1]].start)
    bar = bars[0]
    if bar == lo:
        raise FormulaError(
            "The left side of this '|' is empty: write (1 | g) for a random intercept.", text, tokens[bar].start
        )
    if bar == hi - 1:
        raise FormulaError(
            "The right side of this '|' is empty: name the grouping column, e.g. (1 | g).", text, tokens[bar].end
        )
    expr = check(tokens[lo:bar])
    groups = _grouping(text, tokens[bar + 1 : hi])
    correlated = tokens[bar].text == "|"
    return [BarTerm(expr, g, correlated) for g in groups]


def _grouping(text: str, toks: list[Token]) -> list[tuple[str, ...]]:
    """``a`` -> [(a,)], ``a:b`` -> [(a, b)], ``a/b`` -> [(a,), (a, b)] (lme4's nesting)."""
    nested: list[tuple[str, ...]] = [()]
    expect_name = True
    for k, tok in enumerate(toks):
        if tok.text == "(" and k > 0 and toks[k - 1].kind == "name":
            name = toks[k - 1].text
            raise FormulaError(
                f"The grouping side of a bar takes column names, not a function call such as {name}(...): "
                "grouping columns are used as factors whatever their type, so write the column itself, "
                "e.g. (1 | g) for (1 | factor(g)).",
                text,
                toks[k - 1].start,
            )
        if expect_name:
            if tok.kind not in ("name", "backtick"):
                raise FormulaError(
                    "The grouping side of a bar must be a column name, 'a:b' (interaction) or 'a/b' (nesting).",
                    text,
                    tok.start,
                )
            nested[-1] = nested[-1] + (_unquote(tok.text),)
        elif tok.text == "/":
            nested.append(nested[-1])
        elif tok.text != ":":
            raise FormulaError(
                "Only ':' and '/' may join grouping factors; write crossed factors as separate terms, "
                "e.g. (1 | a) + (1 | b).",
                text,
                tok.start,
            )
        expect_name = not expect_name
    if expect_name:
        raise FormulaError("The grouping side of this bar ends in an operator.", text, toks[-1].start)
    return nested


def _validated(text: str, toks: list[Token], *, transforms: tuple[str, ...], usage: Usage) -> str:
    """The text of ``toks`` (R's ``^`` made ``**``), after checking that formulaic can parse it and
    that each of its Python parts is within the allow-list; the names it uses are added to ``usage``."""
    start = toks[0].start
    piece = _source(text, toks)
    try:
        terms = formulaic.Formula(piece)
    except FormulaicError as exc:
        raise _from_formulaic(exc, text, start) from None
    except Exception as exc:  # formulaic reports some malformed input with builtin exceptions
        raise FormulaError(f"Cannot read {piece!r}: {exc}", text, start) from None
    for term in terms:
        for factor in term.factors:
            try:
                if factor.eval_method.value == "lookup":
                    check_lookup(factor.expr)
                    usage.values[factor.expr] = None
                elif factor.eval_method.value == "python":
                    usage.update(check_expression(factor.expr, transforms))
            except UnsafeExpression as exc:
                raise FormulaError(str(exc), text, _locate(text, exc.culprit, start)) from None
    return piece


def _source(text: str, toks: list[Token]) -> str:
    """The text spanned by ``toks``, with the tokens' own text where it differs from the source."""
    parts, at = [], toks[0].start
    for tok in toks:
        if text[tok.start : tok.end] != tok.text:
            parts += [text[at : tok.start], tok.text]
            at = tok.end
    return "".join(parts) + text[at : toks[-1].end]


def _locate(text: str, culprit: str, start: int) -> int:
    """Where ``culprit`` first stands in ``text`` at or after ``start`` (else ``start``)."""
    found = text.find(culprit, start)
    return found if found >= 0 else start


def _from_formulaic(exc: Exception, text: str, offset: int) -> FormulaError:
    message = str(exc)
    first = message.split("\n", 1)[0].rstrip(".") or type(exc).__name__
    position = offset
    marked = message.rsplit("\n", 1)[-1]
    if "⧛" in marked:
        position += len(re.sub(r"\x1b\[[0-9;]*m", "", marked.split("⧛", 1)[0]))
    return FormulaError(f"Syntax error: {first}.", text, position)


def _variables(tokens: list[Token]) -> tuple[str, ...]:
    """Data columns named in the formula: names that are not functions, attributes or keywords."""
    found: dict[str, None] = {}
    for k, tok in enumerate(tokens):
        if tok.kind == "backtick":
            found[_unquote(tok.text)] = None
            continue
        if tok.kind != "name" or tok.text in _NOT_VARIABLES:
            continue
        before = tokens[k - 1].text if k > 0 else ""
        after = tokens[k + 1].text if k + 1 < len(tokens) else ""
        if after in ("(", ".", "=") or before == ".":
            continue
        found[tok.text] = None
    return tuple(found)


def _unquote(name: str) -> str:
    return name[1:-1] if name.startswith("`") else name
