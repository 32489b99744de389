"""New data materialised with a fitted design's columns, contrasts and transform state."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import DataError
from ..formula.parser import suggest
from .build import (
    clean_name,
    group_keys,
    levels_of,
    level_label,
    new_matrix,
    numpy_backed,
    offset_values,
    term_matrix,
    without_unused_categories,
)
from .checks import check_finite, check_frame, check_hashable, value_kind
from .design import Design, Rows
from .terms import RandomTerm


def check_group_kind(name: str, column: pd.Series, kind: str, levels: pd.Index) -> None:
    """New values of a grouping column must be the kind of values it was fitted with."""
    new_kind = value_kind(column)
    if new_kind != kind:
        example = levels[0]
        shown = example.item() if isinstance(example, np.generic) else example
        raise DataError(
            f"newdata column {name!r} holds {new_kind} values, but grouping factor {name!r} was fitted with {kind} "
            f"levels (e.g. {shown!r}), so no row would match a fitted level. Convert it, e.g. "
            f"newdata[{name!r}] = newdata[{name!r}].astype({type(example).__name__!r})."
        )


def check_like_training(name: str, column: pd.Series, levels: set | None) -> None:
    """New data for a predictor must be numeric where it was numeric, and use only seen levels."""
    if levels is None:
        if levels_of(column) is not None:
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


def new_data(design: Design, data: pd.DataFrame, random: bool = True) -> Rows:
    """Materialise ``data`` with the design's columns, contrasts and transform state.

    Levels of a grouping factor not seen in fitting get code -1 and are listed in
    :attr:`Rows.unseen`; what to do with them is the caller's choice. Without ``random``
    effects only the fixed part and the offsets are materialised (the rows have no ``codes``
    and ``z``), so ``data`` needs neither the grouping columns nor the terms' own columns. The rows' offset is that
    of the formula's ``offset()`` terms (as lme4's ``predict``, an ``offset=`` argument given
    when fitting is not part of it). Missing values,
    missing columns, unseen levels of categorical predictors, a column whose kind of values
    differs from the fitted data (text where numbers were fitted, ...) and infinite values
    raise :class:`DataError`.
    """
    recipe = design.recipe
    data = check_frame(data, "newdata")
    needed = list(design.formula.predictor_variables if random else design.formula.fixed_variables)
    missing = [v for v in needed if v not in data.columns]
    if missing:
        raise DataError(
            f"newdata lacks column(s) {', '.join(map(repr, missing))} used by the formula"
            + ("" if random else " (the fixed part, which predict(random=False) reads)") + "."
            + suggest(missing[0], data.columns)
        )
    for name in needed:
        column = data[name]
        if column.isna().any():
            raise DataError(
                f"newdata column {name!r} has {int(column.isna().sum())} missing value(s); "
                "predictions need every used column: fill or drop those rows first."
            )
    data = numpy_backed(data, needed)
    for name in needed:
        column = data[name]
        check_hashable(name, column)
        if name in recipe.variable_levels:
            check_like_training(name, column, recipe.variable_levels[name])
        if name in design.recipe.group_levels:
            check_group_kind(name, column, *design.recipe.group_levels[name])
    data = without_unused_categories(data, tuple(needed))
    fixed = new_matrix(recipe.evaluator, recipe.fixed_spec, data, "fixed effects")
    X = fixed.to_numpy(dtype=float)[:, recipe.kept]
    check_finite(X, [n for n, k in zip(map(clean_name, fixed.columns), recipe.kept) if k], "newdata predictor")
    codes, zs, unseen = [], [], {}
    for spec, term in zip(recipe.term_specs, design.terms) if random else ():
        z = term_matrix(recipe.evaluator, spec, data)
        check_finite(z, list(term.columns), f"newdata column of term {spec.bar}")
        code, new_keys = group_codes(design, data, spec.bar.group, term)
        if (code < 0).any():
            unseen[term.group] = list(pd.unique(new_keys[code < 0]))
        codes.append(code)
        zs.append(z)
    return Rows(X, tuple(codes), tuple(zs), data.index, offset=offset_values(recipe.evaluator, data), unseen=unseen)

def group_codes(design: Design, data: pd.DataFrame, group: tuple[str, ...], term: RandomTerm) -> tuple[np.ndarray, pd.Index]:
    """Level index of each new row in ``term.levels`` (-1 if unseen), and the rows' level labels.

    An interaction ``a:b`` is matched component by component against the fitted levels of
    ``a`` and ``b``, so that e.g. 308.0 in new data matches a fitted integer level 308.
    """
    if len(group) == 1 or not all(name in design.recipe.group_levels for name in group):
        key = group_keys(data, group)
        return term.levels.get_indexer(key), key
    labels, seen = [], np.ones(len(data), dtype=bool)
    for name in group:
        levels = design.recipe.group_levels[name][1]
        code = levels.get_indexer(pd.Index(data[name]))
        seen &= code >= 0
        known = np.asarray(levels.astype(str), dtype=object)[np.maximum(code, 0)]
        labels.append(np.where(code >= 0, known, data[name].astype(str).to_numpy(dtype=object)))
    key = pd.Index([level_label(parts) for parts in zip(*labels)])
    code = np.where(seen, term.levels.get_indexer(key), -1)
    return code, key
