"""A random-effects term as the design describes it: a grouping factor and the columns whose effects vary by it."""

from __future__ import annotations

from dataclasses import dataclass

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
