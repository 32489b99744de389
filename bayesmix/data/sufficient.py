"""Designs from sufficient statistics, for data that need not fit in memory.

For a Gaussian model (identity link), both backends read the data only through sums over
rows (:class:`~bayesmix.data.statistics.SufficientStatistics`: per level of each grouping
factor, per distinct pair of levels of two factors, and of ``[X y]``), which add up over any
partition of the rows: one pass, partition by partition (:func:`partition_statistics`, with
one :class:`Plan` so that every partition gets the same columns and levels), then a sum.
:func:`design_from_statistics` builds a :class:`~bayesmix.data.design.Design` whose source is
those statistics (:class:`~bayesmix.data.design.OutOfCore`): it has no rows in memory, but the
same formula, columns, levels and model specs, so both backends fit it and its results
predict new data like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from .build import clean_name, group_keys, independent_columns, response_values, term_matrix
from .checks import check_finite, check_grouping, check_magnitude, check_residual, warn_missing, warn_rank_deficient
from .design import Design, OutOfCore, Recipe, TermSpec
from .terms import factor_columns, factor_groups
from .terms import RandomTerm
from ..errors import DataError, FormulaError
from ..families import Family
from ..formula import MixedFormula
from ..formula.evaluation import Evaluator
from .statistics import SufficientStatistics
from .sums import value


@dataclass(frozen=True)
class Plan:
    """How to turn one partition of rows into statistics: same columns and levels everywhere.

    Attributes
    ----------
    evaluator
        The parsed formula and how its parts are evaluated.
    family
        The response family, which checks each partition's response.
    fixed_spec
        formulaic's spec of the fixed part, with the categories of every categorical
        predictor over all partitions.
    term_specs
        One per random-effects term (``||`` split), as in :class:`~bayesmix.design.Design`.
    levels
        Per grouping factor (by its name, ``"a:b"`` for an interaction), its levels over all
        partitions, sorted as :func:`make_design` sorts them.
    categories
        The categories of each categorical predictor over all partitions: each partition's
        column is cast to them, so that every partition gets the same dummy columns.
    """

    evaluator: Evaluator
    family: Family
    fixed_spec: formulaic.ModelSpec
    term_specs: tuple[TermSpec, ...]
    levels: dict
    categories: dict = field(default_factory=dict)

    @property
    def formula(self) -> MixedFormula:
        """The parsed formula."""
        return self.evaluator.formula

    @property
    def factors(self) -> list[tuple[str, list[int]]]:
        """The grouping factors in the order of the factor blocks, each with the indices of its
        terms (:func:`~bayesmix.data.terms.factor_groups`)."""
        names = [spec.bar.group_name for spec in self.term_specs]
        return factor_groups(names, [len(self.levels[name]) for name in names])

    def factor_columns(self) -> tuple[np.ndarray, ...]:
        """Per grouping factor, its columns among the terms' columns side by side."""
        qs = [len(_term_columns(spec)) for spec in self.term_specs]
        return tuple(factor_columns(qs, members) for _, members in self.factors)


def partition_statistics(frame: pd.DataFrame, plan: Plan) -> SufficientStatistics:
    """The statistics of one partition of rows (rows with a missing value in a used column are dropped)."""
    used = frame[list(plan.formula.variables)]
    missing = used.isna()
    dropped = missing.any(axis=1).to_numpy()
    data = used.loc[~dropped].assign(
        **{c: pd.Categorical(used.loc[~dropped, c], categories=cats) for c, cats in plan.categories.items()}
    )
    n_missing = {c: int(k) for c, k in missing.sum().items()}
    fixed_names = [clean_name(c) for c in plan.fixed_spec.column_names]
    factors = plan.factors
    n_levels = tuple(len(plan.levels[name]) for name, _ in factors)
    if data.empty:
        return SufficientStatistics.empty(n_levels, plan.factor_columns(), len(fixed_names) + 1, int(dropped.sum()),
                                          n_missing)
    y, _ = response_values(plan.evaluator, data, plan.family)  # the Gaussian's: no weights
    X = plan.evaluator.model_matrix(plan.fixed_spec, data).to_numpy(dtype=float)
    check_finite(X, fixed_names, "predictor")
    check_magnitude(X, fixed_names, "predictor")
    z = np.column_stack([term_matrix(plan.evaluator, spec, data) for spec in plan.term_specs])
    z_names = [c for spec in plan.term_specs for c in _term_columns(spec)]
    check_finite(z, z_names, "random-effects column")
    check_magnitude(z, z_names, "random-effects column")
    codes = tuple(plan.levels[name].get_indexer(group_keys(data, plan.term_specs[members[0]].bar.group))
                  for name, members in factors)
    return SufficientStatistics.of(codes, z, plan.factor_columns(), X, y, n_levels, int(dropped.sum()), n_missing)


def _term_columns(spec: TermSpec) -> list[str]:
    names = [clean_name(c) for c in spec.spec.column_names]
    return names if spec.column is None else names[spec.column : spec.column + 1]


def make_plan(evaluator: Evaluator, family: Family, prototype: pd.DataFrame, levels: dict, categories: dict) -> Plan:
    """The plan of the evaluator's formula and response ``family``, with formulaic's specs learnt on ``prototype``.

    ``prototype`` must hold each categorical predictor as a ``pd.Categorical`` with all its
    ``categories`` (a few rows will do). Stateful transforms (``scale(x)``,
    ``center(x)``, splines) would learn their state from the prototype only, so they are refused.
    """
    formula = evaluator.formula
    fixed = evaluator.model_matrix(formula.fixed, prototype)
    specs = [fixed.model_spec]
    term_specs = []
    for bar in formula.bars:
        mm = evaluator.model_matrix(bar.expr, prototype)
        if mm.shape[1] == 0:
            raise FormulaError(f"The random-effects term {bar} has no columns: write (1 | {bar.group_name}).", formula.text)
        specs.append(mm.model_spec)
        term_specs += [TermSpec(bar, mm.model_spec, None if bar.correlated else j)
                       for j in ([None] if bar.correlated else range(mm.shape[1]))]
    stateful = [name for spec in specs for name in spec.transform_state]
    if stateful:
        raise FormulaError(
            f"{stateful[0]} learns its state from the data, which out-of-memory input cannot give it in one pass; "
            "compute the column beforehand (e.g. with dask) and use it by name.", formula.text,
        )
    return Plan(evaluator, family, fixed.model_spec, tuple(term_specs), levels, categories)


def design_from_statistics(plan: Plan, stats: SufficientStatistics, variable_levels: dict, frame=None) -> Design:
    """Check the summed statistics as :func:`~bayesmix.design.make_design` checks rows, and build the design.

    Warns about rows dropped for missing values and about rank-deficient fixed-effect
    columns (decided on the Gram matrix ``X'X``, by the same rule as on X).
    """
    formula = plan.formula
    n_dropped = stats.n_dropped
    if stats.n == 0:
        raise DataError("No rows are left after dropping rows with missing values in the formula's columns."
                        if n_dropped else "data has no rows.")
    if n_dropped:
        warn_missing(n_dropped, stats.n + n_dropped, stats.n_missing)
    plan.family.check_varies(formula.response, stats.y_min, stats.y_max)
    names = [clean_name(c) for c in plan.fixed_spec.column_names]
    kept = independent_columns(_gram_root(value(stats.AXX[:-1, :-1])))
    dropped_columns = tuple(n for n, k in zip(names, kept) if not k)
    if dropped_columns:
        warn_rank_deficient(dropped_columns)
    kept_stats, p = stats.select(kept), int(kept.sum())
    residual = value(kept_stats.AXX[-1, -1]) if p == 0 or p >= stats.n else kept_stats.ols_residual_sum_of_squares()
    check_residual(p, stats.n, float(np.sqrt(max(residual, 0.0))), float(np.sqrt(value(stats.AXX[-1, -1]))),
                   formula.response)
    for bar in formula.bars:
        check_grouping(bar, len(plan.levels[bar.group_name]), stats.n)
    terms = tuple(
        RandomTerm(spec.bar.group_name, plan.levels[spec.bar.group_name], tuple(_term_columns(spec)), spec.bar.correlated)
        for spec in plan.term_specs
    )
    return Design(
        formula=formula, fixed_names=tuple(n for n, k in zip(names, kept) if k), terms=terms,
        response=formula.response, source=OutOfCore(kept_stats, frame), n_dropped=n_dropped,
        dropped_columns=dropped_columns, family=plan.family,
        recipe=Recipe(plan.evaluator, plan.fixed_spec, kept, plan.term_specs, variable_levels),
    )


def _gram_root(gram: np.ndarray) -> np.ndarray:
    """B with B'B = gram: X's columns up to a rotation, which leaves the column dependence rule unchanged."""
    values, vectors = np.linalg.eigh(gram)
    return np.sqrt(np.clip(values, 0.0, None))[:, None] * vectors.T
