"""Formula + DataFrame -> :class:`Design`, the one description every backend consumes.

A design holds the response ``y``, the fixed-effects matrix ``X`` and one
:class:`RandomTerm` per random-effects term. A term stores its grouping factor as integer
codes and its per-row model matrix ``z`` (n x q); the n x (levels * q) matrix ``Z`` is never
formed. The design also keeps formulaic's model specs, so that new data is materialised with
the same columns, contrasts and transform state (:meth:`Design.new_data`).
"""

from __future__ import annotations

import functools
import numbers
import re
import warnings
from collections.abc import Hashable
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from .errors import BayesmixError, DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from .formula import BarTerm, MixedFormula, parse_formula
from .formula.evaluation import Evaluator
from .formula.parser import suggest, variables_in
from .statistics import SufficientStatistics

RANK_TOLERANCE = 1e-7  # the tolerance of R's qr(), which lme4 uses to drop fixed-effect columns
# Values beyond these magnitudes overflow or underflow once squared in the cross-products;
# the data are rejected up front with a request to rescale (results scale back exactly).
MAX_MAGNITUDE = 1e100
MIN_MAGNITUDE = 1e-100


class GroupedColumns:
    """Shared reading of objects with q named ``columns`` and a grouping factor's ``levels``."""

    columns: tuple[str, ...]
    levels: pd.Index

    @property
    def q(self) -> int:
        """Number of effects per level."""
        return len(self.columns)

    @property
    def n_levels(self) -> int:
        """Number of levels of the grouping factor."""
        return len(self.levels)


@dataclass(frozen=True, eq=False)
class RandomTerm(GroupedColumns):
    """One random-effects term: a grouping factor and the columns whose effects vary by it.

    Attributes
    ----------
    group
        The grouping factor's name as lme4 prints it (``"id"``, ``"a:b"``).
    codes
        Integer level index of each row, shape (n,), values in ``0 .. len(levels) - 1``.
    levels
        The factor's levels in sorted order (as R's ``factor`` sorts them).
    z
        The term's model matrix, shape (n, q): row i multiplies the effects of level ``codes[i]``.
    columns
        Names of the q columns of ``z``.
    correlated
        Whether the q effects have an unstructured covariance (``|``) or are a single
        column split off an uncorrelated ``||`` term.
    """

    group: str
    codes: np.ndarray
    levels: pd.Index
    z: np.ndarray
    columns: tuple[str, ...]
    correlated: bool

    def __repr__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"RandomTerm(({' + '.join(self.columns)} {bar} {self.group}), levels={self.n_levels})"


@dataclass(frozen=True)
class NewData:
    """New data materialised with a fitted design's columns and contrasts.

    Attributes
    ----------
    X
        Fixed-effects matrix, with the design's columns.
    codes
        Per random term, the level index of each row; -1 where the level was not seen in fitting.
    z
        Per random term, the (n, q) term matrix.
    unseen
        Per grouping factor with unseen levels, those levels.
    index
        Row labels of the new data.
    """

    X: np.ndarray
    codes: tuple[np.ndarray, ...]
    z: tuple[np.ndarray, ...]
    unseen: dict[str, list]
    index: pd.Index


@dataclass(frozen=True)
class _TermSpec:
    """How to rebuild one RandomTerm on new data."""

    bar: BarTerm
    spec: formulaic.ModelSpec
    column: int | None  # the one column kept when an uncorrelated term was split


@dataclass(frozen=True, eq=False)
class Design:
    """The materialised model: ``y = X beta + sum_k (z_k * u_k[codes_k]).sum(1) + e``.

    Attributes
    ----------
    formula
        The parsed formula.
    y
        Response, shape (n,).
    X
        Fixed-effects matrix, shape (n, p), full column rank.
    fixed_names
        Names of the columns of X (``"Intercept"``, ``"perform_type[Solo]"``).
    terms
        The random-effects terms, in formula order (``||`` split into one term per column).
    response
        The response's name.
    index
        Labels of the rows used, from the data's index.
    n_dropped
        How many rows were dropped for missing values.
    dropped_columns
        Fixed-effect columns dropped as linear combinations of earlier ones.

    The rows used of the formula's columns are kept (privately) only so that a saved result
    can rebuild its design when loaded (:func:`bayesmix.load`); backends never read them.
    """

    formula: MixedFormula
    y: np.ndarray
    X: np.ndarray
    fixed_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]
    response: str
    index: pd.Index
    n_dropped: int = 0
    dropped_columns: tuple[str, ...] = ()
    _fixed_spec: formulaic.ModelSpec | None = field(default=None, repr=False)
    _kept: np.ndarray | None = field(default=None, repr=False)
    _term_specs: tuple[_TermSpec, ...] = field(default=(), repr=False)
    _variable_levels: dict = field(default_factory=dict, repr=False)
    _group_levels: dict = field(default_factory=dict, repr=False)
    _frame: pd.DataFrame | None = field(default=None, repr=False)
    _evaluator: Evaluator | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of observations."""
        return len(self.y)

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return self.X.shape[1]

    @property
    def groups(self) -> dict[str, int]:
        """Number of levels per grouping factor, as lme4's ``ngrps``."""
        return {t.group: t.n_levels for t in self.terms}

    @property
    def has_rows(self) -> bool:
        """Whether ``y``, ``X`` and the terms' codes and z are in memory (see ``bayesmix.sufficient``)."""
        return True

    @functools.cached_property
    def statistics(self) -> SufficientStatistics | None:
        """Per-group sufficient statistics when every random-effects term is on one grouping
        factor (what both backends then read instead of the rows), else None."""
        if len({t.group for t in self.terms}) != 1:
            return None
        z = np.column_stack([t.z for t in self.terms])
        return SufficientStatistics.of(self.terms[0].codes, z, self.X, self.y, self.terms[0].n_levels)

    def x_means(self) -> np.ndarray:
        """Mean of each column of X."""
        stats = self.statistics
        return stats.x_means() if stats is not None else self.X.mean(axis=0)

    def response_moments(self) -> tuple[float, float]:
        """Mean and standard deviation of the response."""
        stats = self.statistics
        return stats.response_moments() if stats is not None else (float(np.mean(self.y)), float(np.std(self.y)))

    def x_scales(self) -> np.ndarray:
        """Scale of each column of X: 1 for a 0/1 column, else its standard deviation (1 if 0)."""
        stats = self.statistics
        return stats.x_scales() if stats is not None else np.array([column_scale(x) for x in self.X.T])

    def x_rms(self) -> np.ndarray:
        """Root mean square of each column of X."""
        stats = self.statistics
        return stats.x_rms() if stats is not None else np.sqrt(np.mean(self.X ** 2, axis=0))

    def z_scales(self, term: int) -> np.ndarray:
        """Scale of each column of a term's z, as :meth:`x_scales`."""
        stats = self.statistics
        if stats is not None:
            return stats.z_scales(self._term_columns(term))
        return np.array([column_scale(z) for z in self.terms[term].z.T])

    def z_rms(self, term: int) -> np.ndarray:
        """Root mean square of each column of a term's z."""
        stats = self.statistics
        if stats is not None:
            return stats.z_rms(self._term_columns(term))
        return np.sqrt(np.mean(self.terms[term].z ** 2, axis=0))

    def cross_products(self, structure):
        """The cross-products of ``[Z X y]`` laid out by ``structure`` (see ``bayesmix.reml.crossprod``)."""
        from .reml.crossprod import cross_products

        stats = self.statistics
        return stats.cross_products(self.p) if stats is not None else cross_products(structure, self.X, self.y)

    def _term_columns(self, term: int) -> slice:
        """The columns of a term among the terms' columns side by side."""
        start = sum(t.q for t in self.terms[:term])
        return slice(start, start + self.terms[term].q)

    def __repr__(self) -> str:
        lines = [
            f"Design: {self.formula.text}",
            f"  observations: {self.n}" + (f" ({self.n_dropped} dropped for missing values)" if self.n_dropped else ""),
            f"  response: {self.response}",
            f"  fixed effects ({self.p}): {', '.join(self.fixed_names) or 'none'}",
        ]
        if self.dropped_columns:
            lines.append(f"  dropped (rank deficient): {', '.join(self.dropped_columns)}")
        lines.append("  random effects:")
        for t in self.terms:
            kind = "correlated" if t.correlated and t.q > 1 else ("uncorrelated" if not t.correlated else "scalar")
            lines.append(f"    {t.group} ({t.n_levels} levels): {', '.join(t.columns)} [{kind}]")
        return "\n".join(lines)

    def new_data(self, data: pd.DataFrame) -> NewData:
        """Materialise ``data`` with this design's columns, contrasts and transform state.

        Levels of a grouping factor not seen in fitting get code -1 and are listed in
        :attr:`NewData.unseen`; what to do with them is the caller's choice. Missing values,
        missing columns, unseen levels of categorical predictors, a column whose kind of values
        differs from the fitted data (text where numbers were fitted, ...) and infinite values
        raise :class:`DataError`.
        """
        data = _check_frame(data, "newdata")
        needed = [v for v in self.formula.variables if v != self.response]
        missing = [v for v in needed if v not in data.columns]
        if missing:
            raise DataError(
                f"newdata lacks column(s) {', '.join(map(repr, missing))} used by the formula."
                + suggest(missing[0], data.columns)
            )
        for name in needed:
            column = data[name]
            if column.isna().any():
                raise DataError(
                    f"newdata column {name!r} has {int(column.isna().sum())} missing value(s); "
                    "predictions need every used column: fill or drop those rows first."
                )
        data = _numpy_backed(data, needed)
        for name in needed:
            column = data[name]
            _check_hashable(name, column)
            if name in self._variable_levels:
                _check_like_training(name, column, self._variable_levels[name])
            if name in self._group_levels:
                _check_group_kind(name, column, *self._group_levels[name])
        data = _without_unused_categories(data, tuple(needed))
        fixed = _new_matrix(self._evaluator, self._fixed_spec, data, "fixed effects")
        X = fixed.to_numpy(dtype=float)[:, self._kept]
        _check_finite(X, [n for n, k in zip(map(_clean, fixed.columns), self._kept) if k], "newdata predictor")
        codes, zs, unseen = [], [], {}
        for spec, term in zip(self._term_specs, self.terms):
            z = _term_matrix(self._evaluator, spec, data)
            _check_finite(z, list(term.columns), f"newdata column of term {spec.bar}")
            code, new_keys = self._group_codes(data, spec.bar.group, term)
            if (code < 0).any():
                unseen[term.group] = list(pd.unique(new_keys[code < 0]))
            codes.append(code)
            zs.append(z)
        return NewData(X, tuple(codes), tuple(zs), unseen, data.index)

    def _group_codes(self, data: pd.DataFrame, group: tuple[str, ...], term: RandomTerm) -> tuple[np.ndarray, pd.Index]:
        """Level index of each new row in ``term.levels`` (-1 if unseen), and the rows' level labels.

        An interaction ``a:b`` is matched component by component against the fitted levels of
        ``a`` and ``b``, so that e.g. 308.0 in new data matches a fitted integer level 308.
        """
        if len(group) == 1 or not all(name in self._group_levels for name in group):
            key = _group_keys(data, group)
            return term.levels.get_indexer(key), key
        labels, seen = [], np.ones(len(data), dtype=bool)
        for name in group:
            levels = self._group_levels[name][1]
            code = levels.get_indexer(pd.Index(data[name]))
            seen &= code >= 0
            known = np.asarray(levels.astype(str), dtype=object)[np.maximum(code, 0)]
            labels.append(np.where(code >= 0, known, data[name].astype(str).to_numpy(dtype=object)))
        key = pd.Index([_level_label(parts) for parts in zip(*labels)])
        code = np.where(seen, term.levels.get_indexer(key), -1)
        return code, key


def make_design(formula: str | MixedFormula, data: pd.DataFrame, transforms: dict | None = None) -> Design:
    """Build the :class:`Design` of ``formula`` on ``data``.

    ``transforms`` maps names to the user's own functions that the formula may call besides
    the built-in allow-list (see the security page of the documentation).

    Rows with a missing value in any column the formula uses are dropped, counted, and
    reported in a :class:`MissingDataWarning`. Fixed-effect columns that are linear
    combinations of earlier ones are dropped with a :class:`RankDeficiencyWarning`, as lme4
    does.

    Raises
    ------
    FormulaError
        For bad formula syntax, a part outside the allow-list, or a variable that is not a
        column of ``data``.
    DataError
        For an empty frame, a non-numeric, constant or infinite response, infinite
        predictor values, or a grouping factor with fewer than two levels or as many levels
        as observations.
    """
    evaluator = evaluator_of(formula, transforms)
    parsed = evaluator.formula
    data = _check_frame(data, "data")
    for name in parsed.variables:
        if name not in data.columns:
            raise FormulaError(
                f"Variable {name!r} is not a column of the data." + suggest(name, data.columns),
                parsed.text,
                _position(parsed.text, name),
            )
    used = data[list(parsed.variables)]
    missing = used.isna()
    dropped = missing.any(axis=1)
    n_dropped = int(dropped.sum())
    if n_dropped:
        warn_missing(n_dropped, len(data), missing.sum().to_dict(), stacklevel=3)
        data = data.loc[~dropped.to_numpy()]
        if data.empty:
            raise DataError("No rows are left after dropping rows with missing values in the formula's columns.")
    data = _numpy_backed(data, parsed.variables)
    for name in parsed.variables:
        _check_column_type(name, data[name])
    predictors = variables_in(parsed.fixed) + sum((variables_in(b.expr) for b in parsed.bars), ())
    for name in predictors:
        if data[name].dtype == object and _value_kind(data[name]) == "number":
            raise DataError(
                f"Column {name!r} has dtype object but holds only numbers, so it would be read as categorical "
                f"(one coefficient per value). Say which it is: data[{name!r}] = pd.to_numeric(data[{name!r}]) for a "
                f"number, or data[{name!r}] = data[{name!r}].astype(str) for categories."
            )
    data = _without_unused_categories(data, parsed.variables)

    y = _response(evaluator, data)
    fixed = _materialise(evaluator, parsed.fixed, data, "fixed-effects part")
    names = [_clean(c) for c in fixed.columns]
    X = fixed.to_numpy(dtype=float)
    _check_finite(X, names, "predictor")
    _check_magnitude(X, names, "predictor")
    kept = independent_columns(X)
    dropped_columns = tuple(n for n, k in zip(names, kept) if not k)
    _check_residual(y, X[:, kept], parsed.response)
    if dropped_columns:
        warn_rank_deficient(dropped_columns, stacklevel=3)

    terms: list[RandomTerm] = []
    term_specs: list[_TermSpec] = []
    for bar in parsed.bars:
        mm = _materialise(evaluator, bar.expr, data, f"random-effects term {bar}")
        if mm.shape[1] == 0:
            raise FormulaError(f"The random-effects term {bar} has no columns: write (1 | {bar.group_name}).", parsed.text)
        columns = [_clean(c) for c in mm.columns]
        z = mm.to_numpy(dtype=float)
        _check_finite(z, columns, f"column of term {bar}")
        _check_magnitude(z, columns, f"column of term {bar}")
        independent = independent_columns(z)
        if not independent.all():
            bad = [c for c, k in zip(columns, independent) if not k]
            raise DataError(
                f"In the random-effects term {bar}, column(s) {', '.join(map(repr, bad))} are constant, all zero or "
                "linear combinations of the term's other columns, so their variances cannot be estimated. "
                f"Remove them from the term (keep them as fixed effects if needed)."
            )
        codes, levels = _factor(data, bar.group)
        check_grouping(bar, len(levels), len(data))
        split = [None] if bar.correlated else range(z.shape[1])
        for j in split:
            cols = slice(None) if j is None else slice(j, j + 1)
            terms.append(RandomTerm(bar.group_name, codes, levels, z[:, cols].copy(), tuple(columns[cols]), bar.correlated))
            term_specs.append(_TermSpec(bar, mm.model_spec, j))

    _warn_constant_within_groups(terms)
    variable_levels = {name: _levels_of(data[name]) for name in predictors}
    group_levels = {
        name: (_value_kind(data[name]), _sorted_factorize(data[name])[1]) for bar in parsed.bars for name in bar.group
    }
    return Design(
        formula=parsed,
        y=y,
        X=X[:, kept],
        fixed_names=tuple(n for n, k in zip(names, kept) if k),
        terms=tuple(terms),
        response=parsed.response,
        index=data.index,
        n_dropped=n_dropped,
        dropped_columns=dropped_columns,
        _fixed_spec=fixed.model_spec,
        _kept=kept,
        _term_specs=tuple(term_specs),
        _variable_levels=variable_levels,
        _group_levels=group_levels,
        _frame=data[list(parsed.variables)],
        _evaluator=evaluator,
    )


def evaluator_of(formula: str | MixedFormula, transforms: dict | None) -> Evaluator:
    """The :class:`~bayesmix.formula.evaluation.Evaluator` of ``formula`` (text or parsed) with the user's ``transforms``."""
    names = tuple(transforms) if isinstance(transforms, dict) else ()
    parsed = formula if isinstance(formula, MixedFormula) else parse_formula(formula, names)
    return Evaluator.of(parsed, transforms)


def warn_missing(n_dropped: int, n_rows: int, per_column: dict, stacklevel: int) -> None:
    """MissingDataWarning: how many of the rows were dropped, and the missing values per column."""
    counts = ", ".join(f"{c} ({int(k)})" for c, k in per_column.items() if k)
    warnings.warn(
        f"Dropped {n_dropped} of {n_rows} rows with missing values in {counts}; fill or remove them first to keep those rows.",
        MissingDataWarning,
        stacklevel=stacklevel + 1,
    )


def warn_rank_deficient(dropped_columns: tuple[str, ...], stacklevel: int) -> None:
    """RankDeficiencyWarning naming the fixed-effect columns dropped as combinations of earlier ones."""
    warnings.warn(
        f"The fixed-effects model matrix is rank deficient, so {len(dropped_columns)} column(s) were dropped "
        f"(linear combinations of earlier columns): {', '.join(dropped_columns)}.",
        RankDeficiencyWarning,
        stacklevel=stacklevel + 1,
    )


def check_grouping(bar: BarTerm, n_levels: int, n: int) -> None:
    """DataError unless the grouping factor of ``bar`` has at least two levels and fewer levels than rows."""
    if n_levels < 2:
        raise DataError(
            f"Grouping factor {bar.group_name!r} has {n_levels} level; a random effect needs at least two groups. "
            f"Drop the term {bar} or use {bar.group_name!r} as a fixed effect."
        )
    if n_levels >= n:
        raise DataError(
            f"Grouping factor {bar.group_name!r} has as many levels ({n_levels}) as observations ({n}), "
            "so its effects cannot be told apart from the residual. Drop the term or use a coarser grouping."
        )


def column_scale(values: np.ndarray) -> float:
    """1 for a column of zeros and ones (intercept, indicator); its standard deviation otherwise (1 if 0)."""
    if np.isin(values, (0.0, 1.0)).all():
        return 1.0
    sd = float(np.std(values))
    return sd if sd > 0 else 1.0


def independent_columns(X: np.ndarray, tol: float = RANK_TOLERANCE) -> np.ndarray:
    """Mask of the columns kept when later columns that depend on earlier ones are dropped.

    Column j is dropped when the part of it orthogonal to the kept earlier columns has a norm
    below ``tol`` times its own norm: R's ``qr(X, tol = 1e-7)`` with limited pivoting, which
    lme4 uses to drop fixed-effect columns.
    """
    kept = np.zeros(X.shape[1], dtype=bool)
    basis = np.empty((X.shape[0], 0))
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


def _check_frame(data, what: str) -> pd.DataFrame:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame, not {type(data).__name__}.")
    duplicated = data.columns[data.columns.duplicated()]
    if len(duplicated):
        raise DataError(f"{what} has duplicate column name(s) {', '.join(map(repr, pd.unique(duplicated)))}; rename them.")
    if data.empty:
        raise DataError(f"{what} has no rows.")
    return data


def _response(evaluator: Evaluator, data: pd.DataFrame) -> np.ndarray:
    y = _response_values(evaluator, data)
    if np.ptp(y) == 0:
        raise DataError(f"The response {evaluator.formula.response!r} is constant ({y[0]:g}); there is nothing to model.")
    return y


def _response_values(evaluator: Evaluator, data: pd.DataFrame) -> np.ndarray:
    """The response as floats; DataError for a non-numeric or non-finite response."""
    name = evaluator.formula.response
    if name in data.columns:
        column = data[name]
        if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
            raise DataError(
                f"The response column {name!r} has dtype {column.dtype}; a Gaussian mixed model needs a numeric "
                f"response. Convert it, e.g. data[{name!r}] = pd.to_numeric(data[{name!r}])."
            )
        y = column.to_numpy(dtype=float)
    else:
        mm = _materialise(evaluator, f"0 + {name}", data, "response")
        if mm.shape[1] != 1:
            raise DataError(f"The response {name!r} gives {mm.shape[1]} columns; it must be one numeric column.")
        y = mm.to_numpy(dtype=float)[:, 0]
    if not np.isfinite(y).all():
        raise DataError(f"The response {name!r} has {int((~np.isfinite(y)).sum())} infinite or undefined value(s); remove or fix them.")
    _check_magnitude(y[:, None], [name], "response")
    return y


def _check_finite(M: np.ndarray, names: list[str], what: str) -> None:
    bad = ~np.isfinite(M).all(axis=0)
    if bad.any():
        col = names[int(np.argmax(bad))]
        raise DataError(f"The {what} {col!r} has infinite or undefined values; remove or fix those rows.")


def _check_residual(y: np.ndarray, X: np.ndarray, response: str) -> None:
    """DataError when the fixed effects alone reproduce the response: no residual variance is left."""
    residual_norm = np.linalg.norm(y)
    if 0 < X.shape[1] < len(y):
        scale = np.abs(X).max(axis=0)
        coef, *_ = np.linalg.lstsq(X / scale, y, rcond=None)
        residual_norm = np.linalg.norm(y - (X / scale) @ coef)
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


def _check_magnitude(M: np.ndarray, names: list[str], what: str) -> None:
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


def _check_column_type(name: str, column: pd.Series) -> None:
    """DataError for dates, intervals, complex numbers, unhashable values (lists, arrays, dicts)
    and object columns that mix text and numbers."""
    kind = "interval" if isinstance(column.dtype, pd.IntervalDtype) else getattr(column.dtype, "kind", "O")
    if kind in _DTYPE_ADVICE or isinstance(column.dtype, (pd.PeriodDtype, pd.DatetimeTZDtype)):
        advice = _DTYPE_ADVICE.get(kind, _DTYPE_ADVICE["M"]).format(n=name)
        raise DataError(f"Column {name!r} has dtype {column.dtype}, which the formula cannot use; it is {advice}.")
    _check_hashable(name, column)
    if _value_kind(column) == "mixed":
        kinds = sorted({_scalar_kind(v) for v in pd.unique(column)})
        example = {k: next(v for v in pd.unique(column) if _scalar_kind(v) == k) for k in kinds}
        raise DataError(
            f"Column {name!r} mixes {' and '.join(kinds)} values (e.g. {', '.join(repr(v) for v in example.values())}), "
            f"so equal-looking values would be different levels. Make it one type, e.g. data[{name!r}] = data[{name!r}].astype(str)."
        )


def _check_hashable(name: str, column: pd.Series) -> None:
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


def _value_kind(column: pd.Series) -> str:
    """``"number"``, ``"bool"``, ``"text"`` or ``"mixed"``: what a column's values are."""
    dtype = column.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _value_kind(pd.Series(dtype.categories))
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_numeric_dtype(dtype):
        return "number"
    if pd.api.types.is_string_dtype(dtype) and dtype != object:
        return "text"
    kinds = {_scalar_kind(v) for v in pd.unique(column.dropna())}
    return kinds.pop() if len(kinds) == 1 else ("mixed" if kinds else "number")


def _numpy_backed(data: pd.DataFrame, names) -> pd.DataFrame:
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
    """One column as :func:`_numpy_backed` converts it (the column itself when unchanged)."""
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


def _without_unused_categories(data: pd.DataFrame, names: tuple[str, ...]) -> pd.DataFrame:
    """Drop categories no row uses (as R's model.frame drops unused levels); values are unchanged."""
    unused = [
        n for n in names
        if isinstance(data[n].dtype, pd.CategoricalDtype) and data[n].nunique() < len(data[n].cat.categories)
    ]
    if not unused:
        return data
    return data.assign(**{n: data[n].cat.remove_unused_categories() for n in unused})


def _materialise(evaluator: Evaluator, expression: str, data: pd.DataFrame, what: str) -> formulaic.ModelMatrix:
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
        raise _evaluation_error(exc, what, evaluator.formula.text) from None


def _new_matrix(evaluator: Evaluator, spec: formulaic.ModelSpec, data: pd.DataFrame, what: str) -> formulaic.ModelMatrix:
    try:
        with np.errstate(all="ignore"):
            return evaluator.model_matrix(spec, data)
    except BayesmixError:
        raise
    except Exception as exc:  # noqa: BLE001 - as in _materialise
        raise DataError(f"newdata cannot be materialised for the {what}: {_cause(exc)}. "
                        "Give it the columns and types of the fitted data.") from None


def _cause(exc: Exception) -> str:
    cause = exc.__cause__ or exc.__context__ or exc
    return f"{type(cause).__name__}: {cause}"


def _evaluation_error(exc: Exception, what: str, text: str) -> FormulaError | DataError:
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
        hint = " For R's factor(x) write C(x)." if missing == "factor" else ""
        return FormulaError(
            f"Cannot evaluate {culprit!r} in the {what}: {missing!r} is neither a column nor a known function. "
            f"Use numpy functions as np.log(x), and C(x), scale(x), center(x), poly(x, 2), bs(x).{hint}",
            text,
            position if position >= 0 else None,
        )
    return DataError(f"Cannot evaluate {culprit!r} in the {what} on this data: {type(cause).__name__}: "
                     f"{str(cause).rstrip('.')}. Check the type of the columns it uses.")


def _warn_constant_within_groups(terms: list[RandomTerm]) -> None:
    """Warn when a random slope does not vary within any group of a factor with a random intercept.

    Such a slope (e.g. a person's age in ``(age | person)``) only shifts each group as a
    whole, as the intercept does: the two are separated only through how the variance
    changes with the slope's variable across groups. lme4 fits it silently; we say so.
    """
    by_group: dict[str, list[RandomTerm]] = {}
    for term in terms:
        by_group.setdefault(term.group, []).append(term)
    for group, members in by_group.items():
        if not any("Intercept" in t.columns for t in members):
            continue
        codes = members[0].codes
        order = np.argsort(codes, kind="stable")
        starts = np.flatnonzero(np.r_[True, np.diff(codes[order]) != 0])
        if (np.diff(np.r_[starts, len(codes)]) < 2).all():
            continue
        for term in members:
            for j, column in enumerate(term.columns):
                if column == "Intercept":
                    continue
                values = term.z[order, j]
                spread = np.maximum.reduceat(values, starts) - np.minimum.reduceat(values, starts)
                if (spread <= 1e-12 * np.abs(values).max()).all():
                    warnings.warn(
                        f"{column!r} is constant within every level of {group!r}, so its random slope on {group!r} "
                        f"is confounded with the random intercept of {group!r} (told apart only by how the variance "
                        f"changes with {column!r} across groups). Consider dropping it from the random part "
                        f"(keep {column!r} as a fixed effect).",
                        RankDeficiencyWarning,
                        stacklevel=3,
                    )


def _check_group_kind(name: str, column: pd.Series, kind: str, levels: pd.Index) -> None:
    """New values of a grouping column must be the kind of values it was fitted with."""
    new_kind = _value_kind(column)
    if new_kind != kind:
        example = levels[0]
        shown = example.item() if isinstance(example, np.generic) else example
        raise DataError(
            f"newdata column {name!r} holds {new_kind} values, but grouping factor {name!r} was fitted with {kind} "
            f"levels (e.g. {shown!r}), so no row would match a fitted level. Convert it, e.g. "
            f"newdata[{name!r}] = newdata[{name!r}].astype({type(example).__name__!r})."
        )


def _factor(data: pd.DataFrame, group: tuple[str, ...]) -> tuple[np.ndarray, pd.Index]:
    """Integer codes and sorted levels of a grouping factor (an interaction when several names).

    An interaction's levels are the combinations of its factors' levels that occur, coded
    from the pairs of codes (so distinct combinations stay distinct) and labelled by
    :func:`_level_label`.
    """
    codes, levels = _sorted_factorize(data[group[0]])
    if len(group) == 1:
        return codes.astype(np.intp), levels
    parts = [[level] for level in levels]
    for name in group[1:]:
        c2, l2 = _sorted_factorize(data[name])
        codes, pairs = pd.factorize(codes * len(l2) + c2, sort=True)
        parts = [parts[p // len(l2)] + [l2[p % len(l2)]] for p in pairs]
    return codes.astype(np.intp), pd.Index([_level_label(p) for p in parts])


def _level_label(parts) -> str:
    """The label of one level of an interaction ``a:b``: its components' text joined by ``:``.

    A component holding ``:`` or a backtick is quoted in backticks (inner backticks doubled),
    so that distinct combinations have distinct labels: (``x:y``, ``z``) is ```x:y`:z`` and
    (``x``, ``y:z``) is ``x:`y:z```.
    """
    texts = (str(part) for part in parts)
    return ":".join(f"`{t.replace('`', '``')}`" if ":" in t or "`" in t else t for t in texts)


def _group_keys(data: pd.DataFrame, group: tuple[str, ...]) -> pd.Index:
    """Each row's level label of a grouping factor (as :func:`_factor` labels its levels)."""
    if len(group) == 1:
        return pd.Index(data[group[0]])
    return pd.Index([_level_label(parts) for parts in zip(*(data[name].astype(str) for name in group))])


def _sorted_factorize(column: pd.Series) -> tuple[np.ndarray, pd.Index]:
    try:
        codes, uniques = pd.factorize(column, sort=True)
    except TypeError:  # mixed types that do not compare: sort by their text
        codes, uniques = pd.factorize(column.astype(str), sort=True)
    levels = pd.Index(np.asarray(uniques)) if isinstance(uniques, pd.Categorical) else pd.Index(uniques)
    return codes, levels


def _term_matrix(evaluator: Evaluator, spec: _TermSpec, data: pd.DataFrame) -> np.ndarray:
    z = _new_matrix(evaluator, spec.spec, data, f"random-effects term {spec.bar}").to_numpy(dtype=float)
    return z if spec.column is None else z[:, spec.column : spec.column + 1]


def _levels_of(column: pd.Series):
    """What new data must match: None for numeric columns, the set of levels otherwise."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return None
    return set(pd.unique(column))


def _check_like_training(name: str, column: pd.Series, levels: set | None) -> None:
    """New data for a predictor must be numeric where it was numeric, and use only seen levels."""
    if levels is None:
        if _levels_of(column) is not None:
            raise DataError(
                f"newdata column {name!r} has dtype {column.dtype}, but it was numeric in the fitted data; "
                f"convert it, e.g. newdata[{name!r}] = pd.to_numeric(newdata[{name!r}])."
            )
        return
    unseen = [v.item() if isinstance(v, np.generic) else v for v in pd.unique(column) if v not in levels]
    if unseen:
        raise DataError(
            f"newdata column {name!r} has level(s) {unseen[:5]} not seen in the fitted data "
            f"(known: {sorted(map(str, levels))[:10]}); a fixed effect cannot be predicted for them."
        )


def _clean(column: str) -> str:
    """formulaic's treatment-contrast names without the ``T.``: ``f[T.b]`` -> ``f[b]``."""
    return column.replace("[T.", "[")


def _position(text: str, name: str) -> int | None:
    m = re.search(rf"(?<![A-Za-z0-9_.`]){re.escape(name)}(?![A-Za-z0-9_`])", text)
    return m.start() if m else None
