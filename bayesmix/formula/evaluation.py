"""Evaluating a checked formula's parts on data, with only the allow-listed names in reach.

Every model matrix bayesmix builds (fitting, new data, out-of-memory partitions) goes through
:class:`Evaluator`, so that the rules of :mod:`bayesmix.formula.allowlist` hold everywhere:
the formula was checked when it was parsed, and here it is evaluated with a context holding
the allow-list and the user's own ``transforms`` only, never the caller's variables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import formulaic
import numpy as np
import pandas as pd
from formulaic.parser.types import Factor

from ..errors import DataError, FormulaError
from .allowlist import BUILTIN_FUNCTIONS, UnsafeExpression, check_expression, evaluation_context, user_transforms
from .parser import MixedFormula
from .tokens import NAMESPACES


@dataclass(frozen=True, eq=False)
class Evaluator:
    """How one formula's parts are evaluated on a DataFrame.

    Attributes
    ----------
    formula
        The parsed (and checked) formula.
    transforms
        The user's own functions the formula may call, by name.
    """

    formula: MixedFormula
    transforms: dict

    @property
    def context(self) -> dict:
        """The names evaluation can reach besides the data's columns (:func:`evaluation_context`);
        made on use, so that an evaluator pickles (to dask workers) as its formula and transforms."""
        return evaluation_context(self.transforms)

    @classmethod
    def of(cls, formula: MixedFormula, transforms: Mapping[str, Callable] | None = None) -> Evaluator:
        """The evaluator of ``formula``; FormulaError if it calls a function that is neither
        built in nor among ``transforms``, or ``transforms`` is malformed."""
        try:
            own = user_transforms(transforms)
        except ValueError as exc:
            raise FormulaError(str(exc)) from None
        unknown = [f for f in formula.functions if f not in BUILTIN_FUNCTIONS and f not in NAMESPACES and f not in own]
        if unknown:
            raise FormulaError(
                f"The formula calls {unknown[0]!r}, which is not a built-in formula function; pass it explicitly, "
                f"e.g. transforms={{{unknown[0]!r}: {unknown[0]}}}.",
                formula.text,
            )
        return cls(formula, own)

    def prepare(self, data: pd.DataFrame) -> pd.DataFrame:
        """``data`` as evaluation reads it: the formula's integer columns read as numbers become
        float64 (as in R, where ``x^2`` cannot wrap around). FormulaError when a column's name
        is also a function the formula calls, which the column would hide."""
        shadowing = [f for f in self.formula.functions if f in data.columns]
        if shadowing:
            raise FormulaError(
                f"The data has a column named {shadowing[0]!r}, which is also a function the formula calls; "
                f"rename the column (e.g. data.rename(columns={{{shadowing[0]!r}: '{shadowing[0]}_'}})).",
                self.formula.text,
            )
        promoted = {
            name: data[name].astype("float64")
            for name in self.formula.numeric
            if name in data.columns and _is_integer(data[name])
        }
        return data.assign(**promoted) if promoted else data

    def model_matrix(
        self, what: str | formulaic.ModelSpec, data: pd.DataFrame, na_action: str = "raise"
    ) -> formulaic.ModelMatrix:
        """formulaic's model matrix of an expression (learning its spec) or of a fitted spec, on ``data``;
        ``na_action`` (for an expression) is formulaic's: ``"raise"`` on a value that evaluates
        to NaN, ``"ignore"`` to keep it."""
        data = self.prepare(data)
        if isinstance(what, str):
            return formulaic.model_matrix(what, data, na_action=na_action, context=self.context)
        return what.get_model_matrix(data, context=self.context)

    def values(self, expression: str, data: pd.DataFrame) -> np.ndarray:
        """The finite numbers one expression gives per row of ``data``, as float64.

        ``expression`` is a single expression computed row by row (an argument of ``cbind()`` or
        ``offset()``: ``"size - incidence"``, ``"np.log(t)"``), read as Python arithmetic, not as
        a Wilkinson formula. It is checked against the allow-list and evaluated like every other
        part of the formula (with formulaic's ``I()``); booleans read as 0 and 1.

        Raises
        ------
        FormulaError
            If the expression is outside the allow-list, or gives several columns per row.
        DataError
            If it gives values that are not numbers (text, categories), or values that are NaN or
            infinite (the log of zero, a division by zero): the message names the expression and
            the first such row.

        Errors in evaluating it (a column of the wrong type) propagate as from
        :meth:`model_matrix`, for the caller to report as it reports those of the other parts.
        """
        try:
            check_expression(expression, tuple(self.transforms))
        except UnsafeExpression as exc:
            raise FormulaError(str(exc), self.formula.text) from None
        with np.errstate(all="ignore"):  # the NaN or infinite values it warns of are reported below
            mm = self.model_matrix(f"0 + I({expression})", data, na_action="ignore")
        ((kind, _),) = mm.model_spec.encoder_state.values()
        if kind is not Factor.Kind.NUMERICAL or any(getattr(t, "kind", "O") not in "biuf" for t in mm.dtypes):
            raise DataError(
                f"{expression!r} gives values that are not real numbers (text, categories, complex numbers); it must give one number "
                "per row. Check the type of the columns it uses, e.g. data['x'] = pd.to_numeric(data['x'])."
            )
        if mm.shape[1] != 1:
            raise FormulaError(
                f"{expression!r} gives {mm.shape[1]} columns per row; it must give one number per row.",
                self.formula.text,
            )
        values = mm.to_numpy(dtype=float)[:, 0]
        bad = ~np.isfinite(values)
        if bad.any():
            row = data.index[np.argmax(bad)]
            raise DataError(
                f"{expression!r} is {values[np.argmax(bad)]} in {int(bad.sum())} row(s) (the first: row {row!r}), "
                "e.g. the log of zero or of a negative number, or a division by zero; it must be a finite number in every row. "
                "Drop or fix those rows."
            )
        return values


def _is_integer(column: pd.Series) -> bool:
    return pd.api.types.is_integer_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)
