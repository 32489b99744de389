"""A random-effects term as the design describes it: a grouping factor and the columns whose effects vary by it; and the one order of the factor blocks those terms make."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


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
    levels
        The factor's levels in sorted order (as R's ``factor`` sorts them).
    columns
        Names of the term's q columns (their values per row are the data source's, see
        :class:`~bayesmix.data.design.Rows`).
    correlated
        Whether the q effects have an unstructured covariance (``|``) or are a single
        column split off an uncorrelated ``||`` term.
    """

    group: str
    levels: pd.Index
    columns: tuple[str, ...]
    correlated: bool

    def __repr__(self) -> str:
        bar = "|" if self.correlated else "||"
        return f"RandomTerm(({' + '.join(self.columns)} {bar} {self.group}), levels={self.n_levels})"


def factor_groups(groups: list[str], n_levels: list[int]) -> list[tuple[str, list[int]]]:
    """The grouping factors of terms on factors ``groups`` with ``n_levels`` levels each, in the
    order of the factor blocks (most levels first; ties in order of first appearance), each
    with the indices of its terms: the one order of the blocks, of :class:`Structure` and of
    the sufficient statistics (:class:`~bayesmix.data.statistics.SufficientStatistics`)."""
    by_group: dict[str, list[int]] = {}
    for k, group in enumerate(groups):
        by_group.setdefault(group, []).append(k)
    return [(group, by_group[group]) for group in sorted(by_group, key=lambda g: -n_levels[by_group[g][0]])]


def factor_columns(qs: list[int], members: list[int]) -> np.ndarray:
    """The columns of the terms ``members`` among all terms' columns side by side (term k has ``qs[k]``)."""
    starts = np.cumsum([0, *qs])
    return np.concatenate([np.arange(starts[k], starts[k + 1]) for k in members]).astype(np.intp)
