"""The :class:`Design`: the one description of a model every backend consumes.

A design holds the response ``y``, the fixed-effects matrix ``X`` and one
:class:`~bayesmix.data.terms.RandomTerm` per random-effects term. A term stores its grouping
factor as integer codes and its per-row model matrix ``z`` (n x q); the n x (levels * q)
matrix ``Z`` is never formed. The design's :class:`Recipe` keeps formulaic's model specs, so
that new data is materialised with the same columns, contrasts and transform state
(:func:`bayesmix.data.newdata.new_data`). It is built by :func:`bayesmix.data.build.make_design`
(rows in memory) or :func:`bayesmix.data.sufficient.design_from_statistics` (dask, Parquet).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from ..families import Family, Gaussian
from ..formula import BarTerm, MixedFormula
from ..formula.evaluation import Evaluator
from .statistics import SufficientStatistics, column_scale
from .terms import RandomTerm


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
class TermSpec:
    """How to rebuild one random-effects term on new data: its bar, formulaic's spec of its
    expression, and the one column kept when an uncorrelated term was split (else None)."""

    bar: BarTerm
    spec: formulaic.ModelSpec
    column: int | None  # the one column kept when an uncorrelated term was split


@dataclass(frozen=True, eq=False)
class Recipe:
    """How to materialise new data with a fitted design's columns, contrasts and transform state.

    Attributes
    ----------
    evaluator
        The formula and the functions its parts may call.
    fixed_spec
        formulaic's spec of the fixed part.
    kept
        Mask of the fixed-effect columns kept (the others were linear combinations of earlier ones).
    term_specs
        One per random-effects term (``||`` split), as :class:`TermSpec`.
    variable_levels
        Per predictor column: None if numeric, else the set of its levels.
    group_levels
        Per grouping column: the kind of its values and its sorted levels.
    """

    evaluator: Evaluator
    fixed_spec: formulaic.ModelSpec
    kept: np.ndarray
    term_specs: tuple[TermSpec, ...]
    variable_levels: dict
    group_levels: dict = field(default_factory=dict)


@dataclass(frozen=True, eq=False)
class Design:
    """The materialised model: the linear predictor ``eta = X beta + sum_k (z_k * u_k[codes_k]).sum(1)``
    and the response ``y``, distributed given ``mu = g^-1(eta)`` as its ``family`` says
    (for the default :class:`~bayesmix.families.Gaussian`: ``y = eta + e``).

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
    family
        The response family (:class:`~bayesmix.families.Gaussian` by default): the response's
        distribution given its mean, its link, and what the backends may assume of it.
    recipe
        How new data is materialised like the fitted data (see :class:`Recipe`).
    frame
        The rows used of the formula's columns (None for out-of-memory data), kept only so
        that a saved result can rebuild its design when loaded (:func:`bayesmix.load`);
        backends never read them.
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
    family: Family = field(default_factory=Gaussian)
    recipe: Recipe | None = field(default=None, repr=False)
    frame: pd.DataFrame | None = field(default=None, repr=False)

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

    def _term_columns(self, term: int) -> slice:
        """The columns of a term among the terms' columns side by side."""
        start = sum(t.q for t in self.terms[:term])
        return slice(start, start + self.terms[term].q)

    def __repr__(self) -> str:
        lines = [
            f"Design: {self.formula.text}",
            f"  observations: {self.n}" + (f" ({self.n_dropped} dropped for missing values)" if self.n_dropped else ""),
            f"  response: {self.response} ({self.family})",
            f"  fixed effects ({self.p}): {', '.join(self.fixed_names) or 'none'}",
        ]
        if self.dropped_columns:
            lines.append(f"  dropped (rank deficient): {', '.join(self.dropped_columns)}")
        lines.append("  random effects:")
        for t in self.terms:
            kind = "correlated" if t.correlated and t.q > 1 else ("uncorrelated" if not t.correlated else "scalar")
            lines.append(f"    {t.group} ({t.n_levels} levels): {', '.join(t.columns)} [{kind}]")
        return "\n".join(lines)
