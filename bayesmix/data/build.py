"""Formula + DataFrame -> :class:`~bayesmix.data.design.Design`, in stages.

:func:`make_design` parses and checks the formula (:mod:`bayesmix.formula`), drops rows with
missing values, converts the used columns to their numpy form, then materialises the response,
the fixed-effects matrix and each random-effects term with formulaic through the allow-listed
:class:`~bayesmix.formula.evaluation.Evaluator`, with the named checks of
:mod:`bayesmix.data.checks` between the stages.
"""

from __future__ import annotations

import re

import formulaic
import numpy as np
import pandas as pd

from ..errors import ArgumentError, BayesmixError, DataError, FormulaError
from ..families import Family, as_family
from ..formula import MixedFormula, parse_formula
from ..formula.evaluation import Evaluator
from ..formula.parser import suggest, variables_in
from ..threads import one_blas_thread
from .checks import (
    check_column_type,
    check_exact_fit,
    check_finite,
    check_frame,
    check_grouping,
    check_magnitude,
    value_kind,
    warn_constant_within_groups,
    warn_missing,
    warn_rank_deficient,
)
from .design import Design, Recipe, Rows, TermSpec

from .terms import RandomTerm

RANK_TOLERANCE = 1e-7  # the tolerance of R's qr(), which lme4 uses to drop fixed-effect columns


def make_design(
    formula: str | MixedFormula,
    data: pd.DataFrame,
    transforms: dict | None = None,
    family: Family | str | None = None,
    weights=None,
    offset=None,
) -> Design:
    """Build the :class:`Design` of ``formula`` on ``data``.

    ``transforms`` maps names to the user's own functions that the formula may call besides
    the built-in allow-list (see the security page of the documentation). ``family`` is the
    response family (:class:`~bayesmix.families.Gaussian` when None; a family object or its
    name), which says which responses are valid and how the response is read: for the
    binomial, ``cbind(successes, failures)``, a 0/1 or boolean column, a two-level factor (the
    second level a success) or a proportion with ``weights`` the trials. ``weights`` (prior
    weights, lme4's meaning) and ``offset`` (added to the linear predictor, besides the
    formula's ``offset()`` terms) are each a column name of ``data`` or one number per row.

    Rows with a missing value in any column the formula uses, or in the weights or offset,
    are dropped, counted, and reported in a :class:`MissingDataWarning`. Fixed-effect columns that are linear
    combinations of earlier ones are dropped with a :class:`RankDeficiencyWarning`, as lme4
    does.

    Raises
    ------
    FormulaError
        For bad formula syntax, a part outside the allow-list, or a variable that is not a
        column of ``data``.
    DataError
        For an empty frame, a response the family cannot have (for the Gaussian: non-numeric,
        constant or infinite), infinite predictor values, or a grouping factor with fewer than
        two levels or as many levels as observations.
    ArgumentError
        When ``family`` is not a bayesmix family.
    """
    family = as_family(family)
    data = check_frame(data, "data")
    evaluator = evaluator_of(formula, transforms, data.columns, [a for a in (weights, offset) if isinstance(a, str)])
    parsed = evaluator.formula
    for name in parsed.variables:
        if name not in data.columns:
            raise FormulaError(
                f"Variable {name!r} is not a column of the data." + suggest(name, data.columns),
                parsed.text,
                position_of(parsed.text, name),
            )
    arguments = argument_columns(data, weights, offset)
    used = pd.concat([data[list(parsed.variables)], arguments], axis=1)
    missing = used.isna()
    dropped = missing.any(axis=1)
    n_dropped = int(dropped.sum())
    if n_dropped:
        warn_missing(n_dropped, len(data), missing.sum().to_dict())
        data = data.loc[~dropped.to_numpy()]
        arguments = arguments.loc[~dropped.to_numpy()]
        if data.empty:
            raise DataError("No rows are left after dropping rows with missing values in the formula's columns.")
    data = numpy_backed(data, parsed.variables)
    for name in parsed.variables:
        check_column_type(name, data[name])
    predictors = variables_in(parsed.fixed) + sum((variables_in(b.expr) for b in parsed.bars), ())
    for name in predictors:
        if data[name].dtype == object and value_kind(data[name]) == "number":
            raise DataError(
                f"Column {name!r} has dtype object but holds only numbers, so it would be read as categorical "
                f"(one coefficient per value). Say which it is: data[{name!r}] = pd.to_numeric(data[{name!r}]) for a "
                f"number, or data[{name!r}] = data[{name!r}].astype(str) for categories."
            )
    data = without_unused_categories(data, parsed.variables)

    y, prior_weights = varying_response(evaluator, data, family, argument(arguments, "weights"))
    offsets = offset_values(evaluator, data, argument(arguments, "offset"))
    fixed = materialise(evaluator, parsed.fixed, data, "fixed-effects part")
    names = [clean_name(c) for c in fixed.columns]
    X = fixed.to_numpy(dtype=float)
    check_finite(X, names, "predictor")
    check_magnitude(X, names, "predictor")
    kept = independent_columns(X)
    dropped_columns = tuple(n for n, k in zip(names, kept) if not k)
    if family.has_sufficient_statistics:  # a residual variance to estimate
        check_exact_fit(y, X[:, kept], parsed.response)
    if dropped_columns:
        warn_rank_deficient(dropped_columns)

    terms: list[RandomTerm] = []
    codes_of: list[np.ndarray] = []
    z_of: list[np.ndarray] = []
    term_specs: list[TermSpec] = []
    for bar in parsed.bars:
        mm = materialise(evaluator, bar.expr, data, f"random-effects term {bar}")
        if mm.shape[1] == 0:
            raise FormulaError(f"The random-effects term {bar} has no columns: write (1 | {bar.group_name}).", parsed.text)
        columns = [clean_name(c) for c in mm.columns]
        z = mm.to_numpy(dtype=float)
        check_finite(z, columns, f"column of term {bar}")
        check_magnitude(z, columns, f"column of term {bar}")
        independent = independent_columns(z)
        if not independent.all():
            bad = [c for c, k in zip(columns, independent) if not k]
            raise DataError(
                f"In the random-effects term {bar}, column(s) {', '.join(map(repr, bad))} are constant, all zero or "
                "linear combinations of the term's other columns, so their variances cannot be estimated. "
                f"Remove them from the term (keep them as fixed effects if needed)."
            )
        codes, levels = grouping_factor(data, bar.group)
        check_grouping(bar, len(levels), len(data), family.allows_observation_level_effects)
        split = [None] if bar.correlated else range(z.shape[1])
        for j in split:
            cols = slice(None) if j is None else slice(j, j + 1)
            terms.append(RandomTerm(bar.group_name, levels, tuple(columns[cols]), bar.correlated))
            codes_of.append(codes)
            z_of.append(z[:, cols].copy())
            term_specs.append(TermSpec(bar, mm.model_spec, j))

    warn_constant_within_groups(terms, codes_of, z_of)
    variable_levels = {name: levels_of(data[name]) for name in predictors}
    group_levels = {
        name: (value_kind(data[name]), sorted_factorize(data[name])[1]) for bar in parsed.bars for name in bar.group
    }
    rows = Rows(X[:, kept], tuple(codes_of), tuple(z_of), data.index, y=y, weights=prior_weights, offset=offsets,
                frame=pd.concat([data[list(parsed.variables)], arguments], axis=1))
    return Design(
        formula=parsed,
        fixed_names=tuple(n for n, k in zip(names, kept) if k),
        terms=tuple(terms),
        response=parsed.response,
        source=rows,
        n_dropped=n_dropped,
        dropped_columns=dropped_columns,
        family=family,
        recipe=Recipe(evaluator, fixed.model_spec, kept, tuple(term_specs), variable_levels, group_levels),
    )


def evaluator_of(
    formula: str | MixedFormula, transforms: dict | None, columns=None, exclude: list[str] | tuple[str, ...] = ()
) -> Evaluator:
    """The :class:`~bayesmix.formula.evaluation.Evaluator` of ``formula`` (text or parsed) with the user's
    ``transforms``; ``columns`` (the data's) and ``exclude`` (the weights' and offset's columns) give a
    ``.`` in the formula its meaning (:func:`~bayesmix.formula.parser.expand_dot`)."""
    names = tuple(transforms) if isinstance(transforms, dict) else ()
    parsed = formula if isinstance(formula, MixedFormula) else parse_formula(formula, names, columns, exclude)
    return Evaluator.of(parsed, transforms)


def independent_columns(X: np.ndarray, tol: float = RANK_TOLERANCE) -> np.ndarray:
    """Mask of the columns kept when later columns that depend on earlier ones are dropped.

    Column j is dropped when the part of it orthogonal to the kept earlier columns has a norm
    below ``tol`` times its own norm: R's ``qr(X, tol = 1e-7)`` with limited pivoting, which
    lme4 uses to drop fixed-effect columns. The products are thin (n x a few columns): BLAS runs
    them on one thread (:mod:`bayesmix.threads`; on InstEval's 73,421 rows, 4 ms instead of
    12 to 120 ms on a busy 2-core machine).
    """
    kept = np.zeros(X.shape[1], dtype=bool)
    basis = np.empty((X.shape[0], 0))
    with one_blas_thread():
        for j in range(X.shape[1]):
            x = X[:, j]
            norm = np.linalg.norm(x)
            r = x - basis @ (basis.T @ x)
            r = r - basis @ (basis.T @ r)
            rnorm = np.linalg.norm(r)
            if norm > 0 and rnorm > tol * norm:
                kept[j] = True
                basis = np.column_stack([basis, r / rnorm])
    return kept


ARGUMENT_COLUMNS = {"weights": "(weights)", "offset": "(offset)"}  # as R's model frame names them


def argument_columns(data: pd.DataFrame, weights, offset) -> pd.DataFrame:
    """The ``weights=`` and ``offset=`` arguments as float columns aligned with ``data``'s rows,
    named as R's model frame names them (:data:`ARGUMENT_COLUMNS`); no columns when neither is
    given. Each is a column name of ``data`` or one number per row; ArgumentError otherwise,
    DataError for values that are not numbers or are infinite (missing values are kept, for
    the caller to drop with the row)."""
    columns = {}
    for name, value in (("weights", weights), ("offset", offset)):
        if value is None:
            continue
        if isinstance(value, str):
            if value not in data.columns:
                raise ArgumentError(f"{name}={value!r} is not a column of the data." + suggest(value, data.columns))
            column = _numpy_column(data[value])
        else:
            values = np.asarray(value)
            if values.ndim != 1 or len(values) != len(data):
                raise ArgumentError(
                    f"{name} must be a column name or one number per row of the data ({len(data)} rows), "
                    f"not an array of shape {values.shape}."
                )
            column = _numpy_column(pd.Series(value, index=data.index) if not isinstance(value, pd.Series)
                                   else pd.Series(value.to_numpy(), index=data.index))
        if not (isinstance(column.dtype, np.dtype) and column.dtype.kind in "iuf"):
            raise DataError(f"The {name} must be numbers; they have dtype {column.dtype}.")
        column = column.astype(float)
        infinite = np.isinf(column.to_numpy())
        if infinite.any():
            given = f"{name}={value!r}" if isinstance(value, str) else f"The {name}= argument"
            first = int(np.argmax(infinite))
            raise DataError(
                f"{given} has {int(infinite.sum())} infinite value(s) (first: {column.iloc[first]} in row "
                f"{column.index[first]!r}); it must be finite in every row (a missing value drops the row)."
            )
        columns[ARGUMENT_COLUMNS[name]] = column
    return pd.DataFrame(columns, index=data.index)


def argument(arguments: pd.DataFrame, name: str) -> np.ndarray | None:
    """The values of the ``weights`` or ``offset`` argument among :func:`argument_columns`, or None."""
    column = ARGUMENT_COLUMNS[name]
    return arguments[column].to_numpy() if column in arguments.columns else None


def varying_response(
    evaluator: Evaluator, data: pd.DataFrame, family: Family, prior_weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """:func:`response_values`, and DataError when the family finds the response constant."""
    y, weights = response_values(evaluator, data, family, prior_weights)
    family.check_varies(evaluator.formula.response, y.min(), y.max())
    return y, weights


def response_values(
    evaluator: Evaluator, data: pd.DataFrame, family: Family, prior_weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The response as floats and the prior weights (None for none), as the family reads the
    response: a ``cbind(successes, failures)`` (:meth:`~bayesmix.families.Family.response_from_counts`:
    the proportion, with the trials times ``prior_weights`` as weights), a column of categories
    (:meth:`~bayesmix.families.Family.response_from_levels`), a numeric column or an expression.
    DataError for a column dtype or values the family cannot have
    (:meth:`~bayesmix.families.Family.check_dtype`, :meth:`~bayesmix.families.Family.check_values`)
    or values too large or small to square."""
    formula = evaluator.formula
    name = formula.response
    weights = prior_weights
    if formula.response_parts:
        successes, failures = (expression_values(evaluator, part, data, "response") for part in formula.response_parts)
        y, trials = family.response_from_counts(name, successes, failures)
        weights = trials if prior_weights is None else trials * prior_weights
    elif name in data.columns:
        column = _numpy_column(data[name])
        if isinstance(column.dtype, np.dtype) and column.dtype.kind in "iufb":
            family.check_dtype(name, column.dtype)
            y = column.to_numpy(dtype=float)
        else:
            y = family.response_from_levels(name, column)
    else:
        mm = materialise(evaluator, f"0 + {name}", data, "response")
        if mm.shape[1] != 1:
            raise DataError(f"The response {name!r} gives {mm.shape[1]} columns; it must be one numeric column.")
        y = mm.to_numpy(dtype=float)[:, 0]
    family.check_values(name, y, weights)
    check_magnitude(y[:, None], [name], "response")
    return y, weights


def offset_values(evaluator: Evaluator, data: pd.DataFrame, offset: np.ndarray | None = None) -> np.ndarray | None:
    """The sum of the formula's ``offset()`` terms and the ``offset`` argument on ``data``'s
    rows, or None when there is neither; DataError for offset() terms that are not finite (the
    argument's values were checked by :func:`argument_columns`)."""
    parts = [expression_values(evaluator, o, data, f"offset({o})") for o in evaluator.formula.offsets]
    if offset is not None:
        parts.append(offset)
    return sum(parts[1:], parts[0]) if parts else None


def expression_values(evaluator: Evaluator, expression: str, data: pd.DataFrame, what: str) -> np.ndarray:
    """:meth:`~bayesmix.formula.evaluation.Evaluator.values`, its evaluation errors turned into
    bayesmix errors as :func:`materialise` turns them."""
    try:
        return evaluator.values(expression, data)
    except BayesmixError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in materialise
        raise evaluation_error(exc, what, evaluator.formula.text) from None


def numpy_backed(data: pd.DataFrame, names) -> pd.DataFrame:
    """The frame with each named column of a pandas extension dtype in its numpy-backed form.

    Nullable numbers and booleans (``Int64``, ``Float64``, ``boolean``, what ``convert_dtypes()``
    gives) and pyarrow-backed columns (``int64[pyarrow]``, ...) become their numpy dtype, text
    of any string dtype (``string``, ``string[pyarrow]``, ``large_string[pyarrow]``) becomes
    pandas' default text dtype, and pyarrow dictionaries become categoricals (with such text
    categories), so that the model is exactly that of the plain columns. Call it only on
    columns without missing values. Other pandas dtypes are left as they are.
    """
    converted = {name: _numpy_column(data[name]) for name in names}
    changed = {name: column for name, column in converted.items() if column is not data[name]}
    return data.assign(**changed) if changed else data


def _numpy_column(column: pd.Series) -> pd.Series:
    """One column as :func:`numpy_backed` converts it (the column itself when unchanged)."""
    dtype = column.dtype
    if isinstance(dtype, pd.ArrowDtype) and str(dtype).startswith("dictionary<"):
        column = column.astype("category")
        dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        categories = dtype.categories
        if isinstance(categories.dtype, pd.api.extensions.ExtensionDtype) and pd.api.types.is_string_dtype(categories.dtype):
            return column.cat.rename_categories(categories.astype(str))
        return column
    if not isinstance(dtype, pd.api.extensions.ExtensionDtype):
        return column
    if pd.api.types.is_string_dtype(dtype):
        return column.astype(str)
    if getattr(getattr(dtype, "numpy_dtype", None), "kind", "O") in "iufcbMm":
        return pd.Series(column.to_numpy(dtype=dtype.numpy_dtype), index=column.index, name=column.name)
    return column


def without_unused_categories(data: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Drop categories no row uses (as R's model.frame drops unused levels); values are unchanged."""
    unused = [
        n for n in names
        if isinstance(data[n].dtype, pd.CategoricalDtype) and data[n].nunique() < len(data[n].cat.categories)
    ]
    if not unused:
        return data
    return data.assign(**{n: data[n].cat.remove_unused_categories() for n in unused})


def materialise(evaluator: Evaluator, expression: str, data: pd.DataFrame, what: str) -> formulaic.ModelMatrix:
    """formulaic's model matrix of ``expression``, its evaluation errors turned into bayesmix errors.

    numpy's floating-point warnings (log of 0, overflow in exp) are silenced here because the
    NaN or infinite values they announce are reported as errors naming the column.
    """
    try:
        with np.errstate(all="ignore"):
            return evaluator.model_matrix(expression, data)
    except BayesmixError:
        raise
    except Exception as exc:  # noqa: BLE001 - formulaic reports evaluation failures as its own errors and as builtins
        raise evaluation_error(exc, what, evaluator.formula.text) from None


def new_matrix(evaluator: Evaluator, spec: formulaic.ModelSpec, data: pd.DataFrame, what: str) -> formulaic.ModelMatrix:
    try:
        with np.errstate(all="ignore"):
            return evaluator.model_matrix(spec, data)
    except BayesmixError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in materialise
        raise DataError(f"newdata cannot be materialised for the {what}: {_cause(exc)}. "
                        "Give it the columns and types of the fitted data.") from None


def _cause(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__ or exc
    return f"{type(cause).__name__}: {cause}"


def evaluation_error(exc: Exception, what: str, text: str) -> FormulaError | DataError:
    factor = re.search(r"`(.+?)`", str(exc))
    culprit = factor.group(1) if factor else what
    cause = exc.__cause__ or exc.__context__ or exc
    position = text.find(culprit) if factor else -1
    if "null values after evaluation" in str(cause):
        return DataError(
            f"{culprit!r} in the {what} is undefined (NaN) for some rows, e.g. the log of zero or of a negative "
            "number. Drop or fix those rows, or use another transform."
        )
    if isinstance(cause, NameError):
        missing = getattr(cause, "name", None) or str(cause)
        return FormulaError(
            f"Cannot evaluate {culprit!r} in the {what}: {missing!r} is neither a column nor a known function. "
            f"Use numpy functions as np.log(x), and C(x), scale(x), center(x), poly(x, 2), bs(x).",
            text,
            position if position >= 0 else None,
        )
    return DataError(f"Cannot evaluate {culprit!r} in the {what} on this data: {type(cause).__name__}: "
                     f"{str(cause).rstrip('.')}. Check the type of the columns it uses.")


def grouping_factor(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and sorted levels of a grouping factor (an interaction when several names).

    An interaction's levels are the combinations of its factors' levels that occur, coded
    from the pairs of codes (so distinct combinations stay distinct) and labelled by
    :func:`level_label`.
    """
    codes, levels = sorted_factorize(data[group[0]])
    if len(group) == 1:
        return codes.astype(np.intp), levels
    parts = [[level] for level in levels]
    for name in group[1:]:
        c2, l2 = sorted_factorize(data[name])
        codes, pairs = pd.factorize(codes * len(l2) + c2, sort=True)
        parts = [parts[p // len(l2)] + [l2[p % len(l2)]] for p in pairs]
    return codes.astype(np.intp), pd.Index([level_label(p) for p in parts])


def level_label(parts) -> str:
    """The label of one level of an interaction ``a:b``: its components' text joined by ``:``.

    A component holding ``:`` or a backtick is quoted in backticks (inner backticks doubled),
    so that distinct combinations have distinct labels: (``x:y``, ``z``) is ```x:y`:z`` and
    (``x``, ``y:z``) is ``x:`y:z```.
    """
    texts = (str(part) for part in parts)
    return ":".join(f"`{t.replace('`', '``')}`" if ":" in t or "`" in t else t for t in texts)


def group_keys(data: pd.DataFrame, group: tuple[str, ...]) -> pd.Index:
    """Each row's level label of a grouping factor (as :func:`grouping_factor` labels its levels)."""
    if len(group) == 1:
        return pd.Index(data[group[0]])
    return pd.Index([level_label(parts) for parts in zip(*(data[name].astype(str) for name in group))])


def sorted_factorize(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    try:
        codes, uniques = pd.factorize(column, sort=True)
    except TypeError:  # mixed types that do not compare: sort by their text
        codes, uniques = pd.factorize(column.astype(str), sort=True)
    levels = pd.Index(np.asarray(uniques)) if isinstance(uniques, pd.Categorical) else pd.Index(uniques)
    return codes, levels


def term_matrix(evaluator: Evaluator, spec: TermSpec, data: pd.DataFrame) -> np.ndarray:
    z = new_matrix(evaluator, spec.spec, data, f"random-effects term {spec.bar}").to_numpy(dtype=float)
    return z if spec.column is None else z[:, spec.column : spec.column + 1]


def levels_of(column: pd.Series):
    """What new data must match: None for numeric columns, the set of levels otherwise."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return None
    return set(pd.unique(column))


def clean_name(column: str) -> str:
    """formulaic's treatment-contrast names without the ``T.``: ``f[T.b]`` -> ``f[b]``."""
    return column.replace("[T.", "[")


def position_of(text: str, name: str) -> int | None:
    m = re.search(rf"(?<![A-Za-z0-9_.`]){re.escape(name)}(?![A-Za-z0-9_`])", text)
    return m.start() if m else None
