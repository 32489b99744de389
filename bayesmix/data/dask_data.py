"""Dask DataFrames and Parquet datasets as data: one pass for the sufficient statistics, lazy predictions.

``bm.Model(formula, ddf)`` with a ``dask.dataframe.DataFrame`` (or a Parquet path) builds a
:class:`~bayesmix.data.design.Design` whose source is the rows' sufficient statistics
(:class:`~bayesmix.data.design.OutOfCore`) in two passes over the data, both run by
whatever dask scheduler is active (threads, or a ``dask.distributed`` cluster):

1. a cheap pre-pass: the sorted levels of every grouping factor and the categories of
   categorical predictors, over the rows without missing values;
2. the statistics of each partition (:func:`~bayesmix.data.sufficient.partition_statistics`),
   summed pairwise in a tree. Only these arrays reach the client: per level of each factor,
   and for crossed or nested factors per distinct pair of levels that occurs (the sparse
   ``Z_a'Z_b``), so their size is bounded by the number of levels and of distinct pairs,
   never by the number of rows.

Dask is an optional dependency (``pip install bayesmix[dask]``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from .build import evaluator_of, grouping_factor, levels_of, position_of, response_values
from ..errors import DataError, FormulaError
from ..families import Family, as_family
from ..formula import MixedFormula
from ..formula.parser import suggest
from .design import Design
from .sufficient import design_from_statistics, make_plan, partition_statistics


def is_dask_frame(data) -> bool:
    """Whether ``data`` is a dask DataFrame (without importing dask when it is not loaded)."""
    if "dask.dataframe" not in sys.modules:
        return False
    import dask.dataframe as dd

    return isinstance(data, dd.DataFrame)


def is_parquet_path(data) -> bool:
    """Whether ``data`` names a Parquet file, a directory holding them, or a glob of them."""
    if not isinstance(data, (str, os.PathLike)):
        return False
    text = str(data)
    if text.endswith(".parquet") or ("*" in text and ".parquet" in text):
        return True
    return Path(text).is_dir() and any(Path(text).glob("*.parquet"))


def read_parquet(path):
    """The Parquet dataset at ``path`` as a dask DataFrame (one partition per file or row group)."""
    dd = _dask_dataframe()
    try:
        return dd.read_parquet(path)
    except (FileNotFoundError, OSError, ValueError) as error:
        raise DataError(f"Could not read Parquet data from {str(path)!r}: {error}") from error


def dask_design(
    formula: str | MixedFormula, data, transforms: dict | None = None, family: Family | None = None
) -> Design:
    """The design of ``formula`` on a dask DataFrame, from its sufficient statistics (``transforms``
    and ``family`` as for :func:`~bayesmix.data.build.make_design`)."""
    import dask
    from dask import delayed

    family = as_family(family)
    if not family.has_sufficient_statistics:
        raise DataError(
            f"Dask or Parquet input is fitted from per-group sufficient statistics, which the {family} family does not "
            "have. Load the data into pandas (ddf.compute(), or a sample of it) and pass the pandas DataFrame."
        )
    evaluator = evaluator_of(formula, transforms, data.columns)
    parsed = evaluator.formula
    for name in parsed.variables:
        if name not in data.columns:
            raise FormulaError(f"Variable {name!r} is not a column of the data." + suggest(name, data.columns),
                               parsed.text, position_of(parsed.text, name))
    if parsed.offsets:
        raise DataError(
            "Dask or Parquet input does not take offset() terms yet: load the data into pandas (ddf.compute(), or a "
            "sample of it) and pass the pandas DataFrame."
        )
    response = data._meta[parsed.response] if parsed.response in data.columns else None
    if response is not None:
        response_values(evaluator, response.to_frame().iloc[:0], family)  # dtype check on the schema
    used = data[list(parsed.variables)]
    complete = used.dropna()
    groups = {bar.group_name: bar.group for bar in parsed.bars}
    grouping = {c for group in groups.values() for c in group}
    discrete = [c for c in parsed.variables if c not in grouping and levels_of(data._meta[c]) is not None]
    uniques = dask.compute(*[complete[list(group)].drop_duplicates() for group in groups.values()],
                           *[complete[c].drop_duplicates() for c in discrete])
    levels = {name: grouping_factor(u, group)[1] if len(u) else pd.Index([])
              for (name, group), u in zip(groups.items(), uniques)}
    categories = {c: _sorted(u) for c, u in zip(discrete, uniques[len(groups):])}
    categorical = {c: v for c, v in categories.items() if not pd.api.types.is_bool_dtype(data._meta[c])}
    group_values = {c: u[c].drop_duplicates().tolist() for u in uniques[:len(groups)] for c in u.columns}
    plan = make_plan(evaluator, family, _prototype(data._meta[list(parsed.variables)], categories, group_values),
                     levels, categorical)
    parts = [delayed(partition_statistics)(part, plan) for part in used.to_delayed()]
    while len(parts) > 1:  # pairwise tree sum: only small arrays travel
        parts = [delayed(_add)(*parts[i:i + 2]) if i + 1 < len(parts) else parts[i] for i in range(0, len(parts), 2)]
    (stats,) = dask.compute(parts[0])
    variable_levels = {c: (set(categories[c]) if c in categories else None)
                       for c in parsed.variables if c != parsed.response and c not in grouping}
    return design_from_statistics(plan, stats, variable_levels, frame=data)


def _add(a, b):
    return a + b


def _sorted(values: pd.Series) -> list:
    try:
        return sorted(values.tolist())
    except TypeError:  # mixed types
        return sorted(values.tolist(), key=str)


def _prototype(meta: pd.DataFrame, categories: dict, group_values: dict) -> pd.DataFrame:
    """A few rows with the schema of the data and every category of each discrete column.

    formulaic learns the columns of each categorical predictor from it; numeric columns hold
    1, 2, ..., k (their values do not matter, as stateful transforms are refused), and the
    grouping columns some of their values (``group_values``).
    """
    k = max([2, *map(len, group_values.values()), *map(len, categories.values())])
    frame = {}
    for column in meta.columns:
        if column in categories:
            values = categories[column]
            cycle = [values[i % len(values)] for i in range(k)] if values else [None] * k
            frame[column] = pd.Categorical(cycle, categories=values) if not pd.api.types.is_bool_dtype(meta[column]) else cycle
        elif group_values.get(column):
            values = group_values[column]
            frame[column] = [values[i % len(values)] for i in range(k)]
        else:
            numbers = pd.Series(np.arange(1.0, k + 1.0))
            frame[column] = numbers.astype(meta[column].dtype) if pd.api.types.is_numeric_dtype(meta[column]) else numbers
    return pd.DataFrame(frame)


def lazy_map(source, function, meta):
    """``function`` applied to every partition of ``source``, lazily (a dask collection)."""
    return source.map_partitions(function, meta=meta)


def complete_rows(design: Design):
    """The out-of-core rows the design was fitted to (those without missing values), lazily."""
    return design.source.frame[list(design.formula.variables)].dropna()


def response_of(design: Design, frame: pd.DataFrame) -> pd.Series:
    """The response of the rows of one partition."""
    return pd.Series(response_values(design.recipe.evaluator, frame, design.family)[0], index=frame.index,
                     name=design.response)


def _dask_dataframe():
    try:
        import dask.dataframe as dd
    except ImportError as error:
        raise DataError("Dask input needs dask: pip install 'bayesmix[dask]'.") from error
    return dd
