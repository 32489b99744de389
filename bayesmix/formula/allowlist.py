"""What a formula may evaluate, checked on the expression tree before anything runs.

formulaic evaluates the Python parts of a formula (``np.log(x)``, ``I(x ** 2)``,
``C(g, contr.sum)``) with Python's ``eval``. Before bayesmix hands it any text, every such part
is parsed with :mod:`ast` and walked: it may contain only numbers and strings, the data's
columns, arithmetic and comparisons, and calls of the functions named here (plus those a user
passes explicitly as ``transforms``). There are no builtins, no attribute access except to the
listed members of ``np`` and ``contr``, no names with a double underscore, no subscripts,
lambdas, comprehensions or f-strings. Evaluation then runs with exactly these names in reach
(:func:`evaluation_context`), never the caller's variables.
"""

from __future__ import annotations

import ast
import functools
import keyword
import types
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from formulaic.transforms import TRANSFORMS as _FORMULAIC_TRANSFORMS
from formulaic.utils.code import sanitize_variable_names

from .tokens import NAMESPACES

#: numpy's elementwise functions a formula may call, as ``np.f(x)`` or as bare ``f(x)``.
NUMPY_FUNCTIONS = frozenset({
    "abs", "absolute", "arccos", "arccosh", "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "cbrt", "ceil",
    "clip", "cos", "cosh", "deg2rad", "exp", "exp2", "expm1", "fabs", "floor", "fmax", "fmin", "hypot", "isfinite",
    "log", "log10", "log1p", "log2", "logaddexp", "maximum", "minimum", "power", "rad2deg", "reciprocal", "rint",
    "round", "sign", "sin", "sinh", "sqrt", "square", "tan", "tanh", "trunc", "where",
})
#: numpy's constants a formula may read as ``np.pi`` and ``np.e``.
NUMPY_CONSTANTS = frozenset({"pi", "e"})
#: R's names of formulaic's transforms, read as them: ``factor(x)`` is ``C(x)``.
R_ALIASES = {"factor": "C"}
#: formulaic's transforms and contrast codings a formula may call (see docs/formula.md), and R's names of them.
TRANSFORMS = frozenset({
    "I", "C", "Q", "scale", "center", "standardize", "poly", "bs", "cr", "cs", "cc", "lag",
    "Treatment", "Sum", "Helmert", "Diff", "Poly",
}) | R_ALIASES.keys()
#: The calls whose first argument is read as a categorical factor, not as a number.
CATEGORICAL = frozenset({"C"} | {alias for alias, name in R_ALIASES.items() if name == "C"})
#: The codings a formula may name as ``contr.treatment`` etc.
CONTRASTS = frozenset({"treatment", "sum", "helmert", "diff", "poly"})
_NAMESPACES = dict(zip(NAMESPACES, (NUMPY_FUNCTIONS | NUMPY_CONSTANTS, CONTRASTS)))
BUILTIN_FUNCTIONS = TRANSFORMS | NUMPY_FUNCTIONS
#: The transforms that learn from the data they are first evaluated on (a mean, a scale, knots): on
#: new data they reuse what they learnt. Not allowed where a value is computed row by row, in
#: ``cbind()`` and ``offset()``.
LEARNING_TRANSFORMS = frozenset({"scale", "center", "standardize", "poly", "bs", "cr", "cs", "cc"})
#: Calls the parser reads as formula syntax, never evaluated: ``cbind(successes, failures)`` as the
#: response and ``offset(x)`` as a term (see :mod:`bayesmix.formula.parser`).
FORMULA_SYNTAX = frozenset({"cbind", "offset"})

_R_HINTS = {"ns": " For R's ns(x, df) write cr(x, df)."}

_OPERATORS = (
    ast.Add, ast.Sub, ast.Mult, ast.Div, ast.FloorDiv, ast.Mod, ast.Pow, ast.BitAnd, ast.BitOr,
    ast.USub, ast.UAdd, ast.Not, ast.Invert, ast.Eq, ast.NotEq, ast.Lt, ast.LtE, ast.Gt, ast.GtE,
)
_CONSTANTS = (int, float, complex, str, bool, type(None))


class UnsafeExpression(ValueError):
    """A formula part outside the allow-list; ``culprit`` is the offending text."""

    def __init__(self, message: str, culprit: str):
        super().__init__(message)
        self.culprit = culprit


@dataclass
class Usage:
    """The names one formula part uses.

    Attributes
    ----------
    values
        Data columns read as values (arithmetic, transforms, plain terms).
    factors
        Data columns read only as ``C(x, ...)``'s (or ``factor(x)``'s) first argument (a categorical coding).
    functions
        Function and namespace names called or read (``np``, ``C``, a user's transform).
    """

    values: dict[str, None] = field(default_factory=dict)
    factors: dict[str, None] = field(default_factory=dict)
    functions: dict[str, None] = field(default_factory=dict)

    def update(self, other: Usage) -> None:
        """Add the names ``other`` uses."""
        self.values.update(other.values)
        self.factors.update(other.factors)
        self.functions.update(other.functions)


def user_transforms(transforms: Mapping[str, Callable] | None) -> dict[str, Callable]:
    """Validate a user's ``{name: function}`` transforms; ValueError naming the bad entry."""
    if transforms is None:
        return {}
    if not isinstance(transforms, Mapping):
        raise ValueError(f"transforms must be a dict of name -> function, not {type(transforms).__name__}.")
    for name, function in transforms.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise ValueError(f"transforms name {name!r} must be a Python identifier that does not start with '_'.")
        if name in BUILTIN_FUNCTIONS or name in _NAMESPACES or name in FORMULA_SYNTAX:
            raise ValueError(f"transforms name {name!r} is a built-in formula function already; choose another name.")
        if not callable(function):
            raise ValueError(f"transforms[{name!r}] must be a function, not {type(function).__name__}.")
    return dict(transforms)


def check_expression(expr: str, functions: Iterable[str] = ()) -> Usage:
    """Check one Python part of a formula (as formulaic will evaluate it) against the allow-list.

    ``functions`` names the user's own transforms, callable in addition to the built-in ones.
    Returns the names it uses; raises :class:`UnsafeExpression` for anything else.
    """
    aliases: dict[str, str] = {}
    try:
        sanitized = sanitize_variable_names(expr, {}, aliases)
        tree = ast.parse(sanitized, mode="eval")
    except SyntaxError as exc:
        raise UnsafeExpression(f"{expr!r} is not a valid expression ({exc.msg}).", expr) from None
    for node in ast.walk(tree):
        name = node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
        if name.startswith("__") or isinstance(node, ast.Attribute) and name.startswith("_"):
            _reserved(aliases.get(name, name))
    checker = _Checker(frozenset(functions) | BUILTIN_FUNCTIONS, aliases)
    checker.visit(tree.body)
    return checker.usage


class _Checker(ast.NodeVisitor):
    def __init__(self, functions: frozenset[str], aliases: dict[str, str]):
        self.callable = functions
        self.aliases = aliases
        self.usage = Usage()

    def generic_visit(self, node: ast.AST) -> None:
        what = type(node).__name__
        raise UnsafeExpression(
            f"{ast.unparse(node)!r} uses a Python construct ({what}) that formulas do not allow: a formula may hold "
            "column names, numbers, strings, arithmetic, comparisons and calls of the allowed functions "
            "(see 'Security' in the documentation).",
            ast.unparse(node),
        )

    def visit_Constant(self, node: ast.Constant) -> None:
        if not isinstance(node.value, _CONSTANTS):
            self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        name = self._name(node.id)
        if name in self.callable or name in _NAMESPACES:
            self.usage.functions[name] = None
        else:
            self.usage.values[name] = None

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = node.value
        members = _NAMESPACES.get(base.id) if isinstance(base, ast.Name) else None
        if members is None or node.attr not in members:
            raise UnsafeExpression(
                f"{ast.unparse(node)!r} is not allowed in a formula: attribute access is limited to numpy's elementwise "
                "functions (np.log, np.exp, np.sqrt, ...) and the contrast codings (contr.treatment, contr.sum, ...); "
                "see 'Security' in the documentation.",
                node.attr,
            )
        self.usage.functions[base.id] = None

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name):
            name = self._name(func.id)
            if name not in self.callable:
                raise UnsafeExpression(
                    f"{name!r} is not a function a formula may call.{_R_HINTS.get(name, '')} Use numpy's elementwise "
                    "functions (np.log(x), np.sqrt(x), ...), I(), C(), scale(), center(), poly(), bs(), ..., or pass "
                    f"your own function explicitly: bm.Model(..., transforms={{{name!r}: {name}}}).",
                    name,
                )
            self.usage.functions[name] = None
        elif isinstance(func, ast.Attribute):
            self.visit_Attribute(func)
        else:
            self.generic_visit(func)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                self.generic_visit(arg)
        for kw in node.keywords:
            if kw.arg is None or kw.arg.startswith("_"):
                self.generic_visit(kw)
            self.visit(kw.value)
        if isinstance(func, ast.Name) and func.id == "Q":
            self._quoted(node)
            return
        for k, arg in enumerate(node.args):
            if k == 0 and isinstance(func, ast.Name) and func.id in CATEGORICAL and isinstance(arg, ast.Name):
                name = self._name(arg.id)
                if name not in self.callable:
                    self.usage.factors[name] = None
                    continue
            self.visit(arg)

    def _quoted(self, node: ast.Call) -> None:
        """``Q('a column')`` reads a column by name: the one argument must be a string."""
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Constant) \
                or not isinstance(node.args[0].value, str):
            raise UnsafeExpression(f"{ast.unparse(node)!r}: Q() takes one column name as a string, e.g. Q('my col').", "Q")
        name = node.args[0].value
        check_lookup(name)
        self.usage.values[name] = None

    def _name(self, identifier: str) -> str:
        name = self.aliases.get(identifier, identifier)
        if name.startswith("__"):
            _reserved(name)
        return name

    def visit_BinOp(self, node: ast.BinOp) -> None:
        self._operator(node.op, node)
        self.visit(node.left)
        self.visit(node.right)

    def visit_UnaryOp(self, node: ast.UnaryOp) -> None:
        self._operator(node.op, node)
        self.visit(node.operand)

    def visit_Compare(self, node: ast.Compare) -> None:
        for op in node.ops:
            self._operator(op, node)
        self.visit(node.left)
        for comparator in node.comparators:
            self.visit(comparator)

    def visit_List(self, node: ast.List) -> None:
        for element in node.elts:
            self.visit(element)

    visit_Tuple = visit_List

    def _operator(self, op: ast.AST, node: ast.AST) -> None:
        if not isinstance(op, _OPERATORS):
            self.generic_visit(node)


def check_lookup(name: str) -> None:
    """A plain column name in a formula may be anything but a reserved ``__name``."""
    if name.startswith("__"):
        _reserved(name)


def _reserved(name: str):
    raise UnsafeExpression(
        f"{name!r} is not allowed in a formula: names beginning with '__' (and attributes beginning with '_') are "
        "reserved. Rename the column if it is one.",
        name,
    )


def evaluation_context(transforms: Mapping[str, Callable] | None = None) -> dict:
    """The names a formula's evaluation can reach: the allow-list and the user's ``transforms``.

    Passed to formulaic as its context, in place of the caller's variables, so that a formula
    sees the data's columns and these names only (formulaic's own transforms stay behind them,
    but the check of :func:`check_expression` lets no other name through).
    """
    return _builtin_context() | dict(transforms or {})


@functools.cache
def _builtin_context() -> dict:
    context = {name: getattr(np, name) for name in NUMPY_FUNCTIONS}
    context |= {name: _FORMULAIC_TRANSFORMS[name] for name in BUILTIN_FUNCTIONS & _FORMULAIC_TRANSFORMS.keys()}
    context |= {alias: context[name] for alias, name in R_ALIASES.items()}
    context["np"] = types.SimpleNamespace(**{name: getattr(np, name) for name in _NAMESPACES["np"]})
    context["contr"] = types.SimpleNamespace(
        **{name: getattr(_FORMULAIC_TRANSFORMS["contr"], name) for name in CONTRASTS}
    )
    return context
