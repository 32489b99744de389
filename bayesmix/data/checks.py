"""The named checks of a design, shared by pandas and dask input (lme4's ``checkNlevels``,
``checkZrank``, ``checkResponse`` style): each raises a :class:`~bayesmix.DataError` naming the
column, term or value and the fix, or warns of statistical trouble."""

from __future__ import annotations

import numbers
from collections.abc import Hashable

import numpy as np
import pandas as pd

from ..errors import DataError, MissingDataWarning, RankDeficiencyWarning, warn
from ..formula import BarTerm
from .crossprod import least_squares
from .terms import RandomTerm

# Values beyond these magnitudes overflow or underflow once squared in the cross-products;
# the data are rejected up front with a request to rescale (results scale back exactly).
# Values beyond these magnitudes overflow or underflow once squared in the cross-products;
# the data are rejected up front with a request to rescale (results scale back exactly).
MAX_MAGNITUDE = 1e100


MIN_MAGNITUDE = 1e-100


def warn_missing(n_dropped: int, n_rows: int, per_column: dict) -> None:
    """MissingDataWarning: how many of the rows were dropped, and the missing values per column."""
    counts = ", ".join(f"{c} ({int(k)})" for c, k in per_column.items() if k)
    warn(
        f"Dropped {n_dropped} of {n_rows} rows with missing values in {counts}; fill or remove them first to keep those rows.",
        MissingDataWarning,
    )


def warn_rank_deficient(dropped_columns: tuple[str, ...]) -> None:
    """RankDeficiencyWarning naming the fixed-effect columns dropped as combinations of earlier ones."""
    warn(
        f"The fixed-effects model matrix is rank deficient, so {len(dropped_columns)} column(s) were dropped "
        f"(linear combinations of earlier columns): {', '.join(dropped_columns)}.",
        RankDeficiencyWarning,
    )


def check_grouping(bar: BarTerm, n_levels: int, n: int, level_per_row: bool = False) -> None:
    """DataError unless the grouping factor of ``bar`` has at least two levels and, unless
    ``level_per_row`` is allowed (an observation-level effect, see
    :attr:`~bayesmix.families.Family.allows_observation_level_effects`), fewer levels than rows."""
    if n_levels < 2:
        raise DataError(
            f"Grouping factor {bar.group_name!r} has {n_levels} level; a random effect needs at least two groups. "
            f"Drop the term {bar} or use {bar.group_name!r} as a fixed effect."
        )
    if n_levels >= n and not level_per_row:
        raise DataError(
            f"Grouping factor {bar.group_name!r} has as many levels ({n_levels}) as observations ({n}), "
            "so its effects cannot be told apart from the residual. Drop the term or use a coarser grouping."
        )


def check_frame(data, what: str) -> pd.DataFrame:
    """``data`` as a pandas DataFrame (:func:`as_pandas`), with unique column names and rows."""
    data = as_pandas(data, what)
    duplicated = data.columns[data.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"{what} has duplicate column name(s) {', '.join(map(repr, pd.unique(duplicated)))}; rename them.")
    if data.empty:
        raise DataError(f"{what} has no rows.")
    return data


def as_pandas(data, what: str) -> pd.DataFrame:
    """``data`` itself when it is a pandas DataFrame; a polars DataFrame, a pyarrow Table or another
    eager data frame that narwhals reads, converted to pandas: the one place where other frames
    enter, so that everything after it (and every result) is the same as for the pandas frame
    with the same columns. A polars Categorical column, whose order is that in which its values
    first appear, is read as text (levels sorted, as for a pandas column of strings); a polars
    Enum and a pyarrow dictionary keep their order of categories, as a pandas Categorical does.
    DataError for anything else, saying what to pass."""
    if isinstance(data, pd.DataFrame):
        return data
    import narwhals as nw

    frame = nw.from_native(data, pass_through=True)
    if isinstance(frame, nw.LazyFrame):
        raise DataError(f"{what} is a lazy {type(data).__name__}: collect it first (e.g. {what}.collect()), or pass a "
                        "pandas or polars DataFrame or a pyarrow Table.")
    if not isinstance(frame, nw.DataFrame):
        raise DataError(f"{what} must be a data frame (pandas or polars DataFrame, pyarrow Table), not "
                        f"{type(data).__name__}.")
    if frame.implementation.is_polars():  # a polars Categorical has no order of its own: read it as the text it holds
        text = [name for name, dtype in frame.schema.items() if dtype == nw.Categorical]
        frame = frame.with_columns(nw.col(*text).cast(nw.String)) if text else frame
    try:
        return frame.to_pandas()
    except ModuleNotFoundError as error:  # polars converts through pyarrow
        raise DataError(f"Reading a {type(data).__module__.split('.')[0]} {type(data).__name__} needs {error.name}: "
                        f"pip install {error.name}, or pass {what}.to_pandas().") from None


def check_finite(M: np.ndarray, names: list[str], what: str) -> None:
    bad = ~np.isfinite(M).all(axis=0)
    if bad.any():
        col = names[int(np.argmax(bad))]
        raise DataError(f"The {what} {col!r} has infinite or undefined values; remove or fix those rows.")


def check_exact_fit(y: np.ndarray, X: np.ndarray, response: str) -> None:
    """DataError when the fixed effects alone reproduce the response: no residual variance is left."""
    residual_norm = np.linalg.norm(y)
    if 0 < X.shape[1] < len(y):
        residual_norm = np.linalg.norm(y - X @ least_squares(X, y))
    check_residual(X.shape[1], len(y), float(residual_norm), float(np.linalg.norm(y)), response)


def check_residual(p: int, n: int, residual_norm: float, response_norm: float, response: str) -> None:
    """DataError when p fixed-effect columns leave no residual variance: p >= n, or the least-squares
    residual of the response (norm ``residual_norm``) is within 1e-10 of the response's norm."""
    if p >= n:
        raise DataError(
            f"The model has {p} fixed-effect column(s) for {n} observations, so no residual variance "
            "is left to estimate. Use fewer fixed effects or more data."
        )
    if p and residual_norm <= 1e-10 * response_norm:
        raise DataError(
            f"The fixed effects reproduce the response {response!r} to within 1e-10 of its size (is it also a "
            "predictor, or constant but for its last digits?), so no residual variance is left to estimate. "
            "Remove it from the right-hand side, or centre and rescale the response."
        )


def check_magnitude(M: np.ndarray, names: list[str], what: str) -> None:
    """Reject columns whose squares overflow or underflow double precision (finite values only)."""
    largest = np.abs(M).max(axis=0) if len(M) else np.zeros(M.shape[1])
    for name, m in zip(names, largest):
        if m > MAX_MAGNITUDE or 0 < m < MIN_MAGNITUDE:
            power = int(np.floor(np.log10(m)))
            fix = f"divide it by 1e{power}" if m > 1 else f"multiply it by 1e{-power}"
            raise DataError(
                f"The {what} {name!r} has values as {'large' if m > 1 else 'small'} as {m:.3g}, beyond what the fit "
                f"can square in double precision. Rescale it (e.g. {fix}); estimates then scale back exactly."
            )


_DTYPE_ADVICE = {
    "M": "a date or time: use a number instead, e.g. (data[{n!r}] - data[{n!r}].min()).dt.days",
    "m": "a time difference: use a number instead, e.g. data[{n!r}].dt.total_seconds()",
    "c": "complex: a linear mixed model needs real numbers, e.g. data[{n!r}].to_numpy().real",
    "interval": "an interval: use a number instead, e.g. its midpoint data[{n!r}].array.mid",
}


def check_column_type(name: str, column: pd.Series) -> None:
    """DataError for dates, intervals, complex numbers, unhashable values (lists, arrays, dicts)
    and object columns that mix text and numbers."""
    kind = "interval" if isinstance(column.dtype, pd.IntervalDtype) else getattr(column.dtype, "kind", "O")
    if kind in _DTYPE_ADVICE or isinstance(column.dtype, (pd.PeriodDtype, pd.DatetimeTZDtype)):
        advice = _DTYPE_ADVICE.get(kind, _DTYPE_ADVICE["M"]).format(n=name)
        raise DataError(f"Column {name!r} has dtype {column.dtype}, which the formula cannot use; it is {advice}.")
    check_hashable(name, column)
    if value_kind(column) == "mixed":
        kinds = sorted({_scalar_kind(v) for v in pd.unique(column)})
        example = {k: next(v for v in pd.unique(column) if _scalar_kind(v) == k) for k in kinds}
        raise DataError(
            f"Column {name!r} mixes {' and '.join(kinds)} values (e.g. {', '.join(repr(v) for v in example.values())}), "
            f"so equal-looking values would be different levels. Make it one type, e.g. data[{name!r}] = data[{name!r}].astype(str)."
        )


def check_hashable(name: str, column: pd.Series) -> None:
    """DataError for an object column holding lists, arrays, dicts or other unhashable values."""
    if column.dtype == object:
        example = next((v for v in column if not isinstance(v, Hashable)), None)
        if example is not None:
            raise DataError(
                f"Column {name!r} holds {type(example).__name__} values (e.g. {example!r}), which the formula cannot use: "
                "each cell must be one number or one level. Expand or encode them first, e.g. as text with .astype(str)."
            )


def _scalar_kind(value) -> str:
    if isinstance(value, (bool, np.bool_)):
        return "bool"
    if isinstance(value, numbers.Number):  # also Decimal and Fraction
        return "number"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def value_kind(column: pd.Series) -> str:
    """``"number"``, ``"bool"``, ``"text"`` or ``"mixed"``: what a column's values are."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return value_kind(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_string_dtype(dtype) and dtype != object:
        return "text"
    kinds = {_scalar_kind(v) for v in pd.unique(column.dropna())}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "number")


def warn_constant_within_groups(terms: list[RandomTerm], codes: list[np.ndarray], z: list[np.ndarray]) -> None:
    """Warn when a random slope does not vary within any group of a factor with a random intercept.

    Such a slope (e.g. a person's age in ``(age | person)``) only shifts each group as a
    whole, as the intercept does: the two are separated only through how the variance
    changes with the slope's variable across groups. lme4 fits it silently; we say so.
    """
    by_group: dict[str, list[int]] = {}
    for k, term in enumerate(terms):
        by_group.setdefault(term.group, []).append(k)
    for group, members in by_group.items():
        if not any("Intercept" in terms[k].columns for k in members):
            continue
        level = codes[members[0]]
        order = np.argsort(level, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(level[order]) != 0])
        if (np.diff(np.r_[starts, len(level)]) < 2).all():
            continue
        for k in members:
            for j, column in enumerate(terms[k].columns):
                if column == "Intercept":
                    continue
                values = z[k][order, j]
                spread = np.maximum.reduceat(values, starts) - np.minimum.reduceat(values, starts)
                if (spread <= 1e-12 * np.abs(values).max()).all():
                    warn(
                        f"{column!r} is constant within every level of {group!r}, so its random slope on {group!r} "
                        f"is confounded with the random intercept of {group!r} (told apart only by how the variance "
                        f"changes with {column!r} across groups). Consider dropping it from the random part "
                        f"(keep {column!r} as a fixed effect).",
                        RankDeficiencyWarning,
                    )
