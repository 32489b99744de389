"""A random-effects term as the design holds it: a grouping factor and the columns whose effects vary by it."""

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
