"""The :class:`Design`: the one description of a model every backend consumes.

A design is a description: the formula, the fixed-effect columns' names, one
:class:`~bayesmix.data.terms.RandomTerm` (grouping factor, levels, columns) per random-effects
term, the response family, and the :class:`Recipe` that materialises new data with the same
columns, contrasts and transform state (:func:`bayesmix.data.newdata.new_data`). The data sit
behind it as its *source*: :class:`Rows` in memory (``y``, ``X``, each term's integer codes and
per-row model matrix ``z``, weights, offset), built by :func:`bayesmix.data.build.make_design`;
or :class:`OutOfCore` sufficient statistics of rows that stay where they are (dask, Parquet),
built by :func:`bayesmix.data.sufficient.design_from_statistics`. Whatever needs rows asks for
``design.rows``, which raises one clear DataError for out-of-core data.
"""

from __future__ import annotations

import dataclasses
import functools
import html
from dataclasses import dataclass, field

import formulaic
import numpy as np
import pandas as pd

from ..errors import DataError
from ..families import Family, Gaussian
from ..formula import BarTerm, MixedFormula
from ..formula.evaluation import Evaluator
from ..tables import html_section
from .terms import factor_columns, factor_groups
from .statistics import SufficientStatistics, column_scale
from .terms import RandomTerm


@dataclass(frozen=True, eq=False)
class Rows:
    """Rows in memory, materialised with a design's columns: the fitted data, or new data.

    Attributes
    ----------
    X
        Fixed-effects matrix, shape (n, p).
    codes
        Per random-effects term, the level index of each row, shape (n,); in new data -1
        where the level was not seen in fitting.
    z
        Per random-effects term, its model matrix, shape (n, q): row i multiplies the effects
        of level ``codes[i]``. The n x (levels * q) matrix Z is never formed.
    index
        The rows' labels, from the data's index.
    y
        The response, shape (n,) (None for new data): for a binomial response the proportion
        of successes, the trials being the ``weights``.
    weights
        Prior weights, shape (n,), or None for none (all 1).
    offset
        The offset added to the linear predictor, shape (n,), or None for none (all 0).
    unseen
        In new data, per grouping factor with levels not seen in fitting, those levels.
    frame
        The rows used of the formula's columns, kept so that a saved result can rebuild its
        design when loaded (:func:`bayesmix.load`); backends never read them.
    """

    X: np.ndarray
    codes: tuple[np.ndarray, ...]
    z: tuple[np.ndarray, ...]
    index: pd.Index
    y: np.ndarray | None = None
    weights: np.ndarray | None = None
    offset: np.ndarray | None = None
    unseen: dict = field(default_factory=dict)
    frame: pd.DataFrame | None = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of rows."""
        return len(self.X)

    def whitened(self) -> Rows:
        """The rows of the equivalent unweighted linear model: √w (y - offset), √w X and √w z
        (the rows themselves without weights or offset). A linear mixed model with prior weights
        w (Var(e_i) = σ²/w_i, lme4's meaning) and an offset is the unweighted one of these rows."""
        if self.weights is None and self.offset is None:
            return self
        y = self.y if self.offset is None else self.y - self.offset
        if self.weights is None:
            return dataclasses.replace(self, y=y, offset=None)
        root = np.sqrt(self.weights)
        return dataclasses.replace(self, y=root * y, X=root[:, None] * self.X, z=tuple(root[:, None] * z for z in self.z),
                                   weights=None, offset=None)

    def sufficient_statistics(self, terms: tuple[RandomTerm, ...]) -> SufficientStatistics:
        """The per-group sums of the :meth:`whitened` rows of ``terms``, per grouping factor and
        per distinct pair of levels of two factors."""
        rows = self.whitened()
        factors = factor_groups([t.group for t in terms], [t.n_levels for t in terms])
        qs = [t.q for t in terms]
        return SufficientStatistics.of(
            tuple(rows.codes[members[0]] for _, members in factors), np.column_stack(rows.z),
            tuple(factor_columns(qs, members) for _, members in factors), rows.X, rows.y,
            tuple(terms[members[0]].n_levels for _, members in factors),
        )


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
class OutOfCore:
    """Rows that stay where they are (a dask DataFrame, Parquet files), known to the backends
    through their sufficient statistics.

    Attributes
    ----------
    statistics
        The per-group sums over the rows used, of the kept fixed-effect columns.
    frame
        The dask DataFrame the statistics were summed from, read again lazily for fitted values
        and residuals (None once pickled, e.g. to dask workers, or when loaded from a file).
    """

    statistics: SufficientStatistics
    frame: object = field(default=None, repr=False)

    @property
    def n(self) -> int:
        """Number of rows used."""
        return self.statistics.n

    def sufficient_statistics(self, terms: tuple[RandomTerm, ...]) -> SufficientStatistics:
        """The summed statistics (of ``terms``, or the design could not have been built)."""
        return self.statistics

    def __getstate__(self):
        """Pickled without the source frame."""
        return {"statistics": self.statistics, "frame": None}

    def __setstate__(self, state):
        for name, value in state.items():
            object.__setattr__(self, name, value)


@dataclass(frozen=True, eq=False)
class Design:
    """The description of a model: the linear predictor
    ``eta = offset + X beta + sum_k (z_k * u_k[codes_k]).sum(1)`` and the response ``y``,
    distributed given ``mu = g^-1(eta)`` as its ``family`` says (for the default
    :class:`~bayesmix.families.Gaussian`: ``y = eta + e``), and behind it the data as its
    :attr:`source`: :class:`Rows` in memory, or :class:`OutOfCore` statistics.

    Attributes
    ----------
    formula
        The parsed formula.
    fixed_names
        Names of the columns of X (``"Intercept"``, ``"perform_type[Solo]"``).
    terms
        The random-effects terms, in formula order (``||`` split into one term per column).
    response
        The response's name.
    source
        The data: :class:`Rows` (read through :attr:`rows`) or :class:`OutOfCore`.
    n_dropped
        How many rows were dropped for missing values.
    dropped_columns
        Fixed-effect columns dropped as linear combinations of earlier ones.
    family
        The response family (:class:`~bayesmix.families.Gaussian` by default): the response's
        distribution given its mean, its link, and what the backends may assume of it.
    recipe
        How new data is materialised like the fitted data (see :class:`Recipe`).
    """

    formula: MixedFormula
    fixed_names: tuple[str, ...]
    terms: tuple[RandomTerm, ...]
    response: str
    source: Rows | OutOfCore
    n_dropped: int = 0
    dropped_columns: tuple[str, ...] = ()
    family: Family = field(default_factory=Gaussian)
    recipe: Recipe | None = field(default=None, repr=False)

    @property
    def rows(self) -> Rows:
        """The rows in memory; DataError for a design built from dask or Parquet data."""
        if not self.in_memory:
            raise DataError(
                "This needs every row in memory, and this model was built from dask or Parquet data, which stay "
                "where they are: predict(newdata) works on a dask DataFrame, lazily; or build the model from a "
                "pandas DataFrame (e.g. a sample, or dask's .compute())."
            )
        return self.source

    @property
    def in_memory(self) -> bool:
        """Whether the rows are in memory (:attr:`rows`), rather than :class:`OutOfCore`."""
        return isinstance(self.source, Rows)

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.source.n

    @property
    def p(self) -> int:
        """Number of fixed-effect columns."""
        return len(self.fixed_names)

    @property
    def groups(self) -> dict[str, int]:
        """Number of levels per grouping factor, as lme4's ``ngrps``."""
        return {t.group: t.n_levels for t in self.terms}

    @functools.cached_property
    def statistics(self) -> SufficientStatistics | None:
        """Per-group sufficient statistics when the family has them (what both backends then
        read instead of the rows, for one grouping factor or several, crossed or nested), else
        None: for any other family they would be of rows whitened by weights that are not
        precisions (a binomial's trials), and its column means and scales are the rows' own."""
        if not self.terms or not self.family.has_sufficient_statistics:
            return None
        return self.source.sufficient_statistics(self.terms)

    def x_means(self) -> np.ndarray:
        """Mean of each column of X."""
        stats = self.statistics
        return stats.x_means() if stats is not None else self.rows.X.mean(axis=0)

    def response_moments(self) -> tuple[float, float]:
        """Mean and standard deviation of the response."""
        stats = self.statistics
        return stats.response_moments() if stats is not None else (float(np.mean(self.rows.y)), float(np.std(self.rows.y)))

    def x_scales(self) -> np.ndarray:
        """Scale of each column of X: 1 for a 0/1 column, else its standard deviation (1 if 0)."""
        stats = self.statistics
        return stats.x_scales() if stats is not None else np.array([column_scale(x) for x in self.rows.X.T])

    def x_rms(self) -> np.ndarray:
        """Root mean square of each column of X."""
        stats = self.statistics
        return stats.x_rms() if stats is not None else np.sqrt(np.mean(self.rows.X ** 2, axis=0))

    def z_scales(self, term: int) -> np.ndarray:
        """Scale of each column of a term's z, as :meth:`x_scales`."""
        stats = self.statistics
        if stats is not None:
            return stats.z_scales(self._term_columns(term))
        return np.array([column_scale(z) for z in self.rows.z[term].T])

    def z_rms(self, term: int) -> np.ndarray:
        """Root mean square of each column of a term's z."""
        stats = self.statistics
        if stats is not None:
            return stats.z_rms(self._term_columns(term))
        return np.sqrt(np.mean(self.rows.z[term] ** 2, axis=0))

    def _term_columns(self, term: int) -> slice:
        """The columns of a term among the terms' columns side by side."""
        start = sum(t.q for t in self.terms[:term])
        return slice(start, start + self.terms[term].q)

    def _described(self) -> tuple[list[tuple[str, str]], pd.DataFrame]:
        """What the reprs show: (what, value) lines and the random-effects terms as a table."""
        lines = [
            ("observations", f"{self.n}" + (f" ({self.n_dropped} dropped for missing values)" if self.n_dropped else "")),
            ("response", f"{self.response} ({self.family})"),
            (f"fixed effects ({self.p})", ", ".join(self.fixed_names) or "none"),
        ]
        if self.dropped_columns:
            lines.append(("dropped (rank deficient)", ", ".join(self.dropped_columns)))
        terms = pd.DataFrame(
            [(t.group, t.n_levels, ", ".join(t.columns),
              "correlated" if t.correlated and t.q > 1 else ("uncorrelated" if not t.correlated else "scalar"))
             for t in self.terms],
            columns=["group", "levels", "columns", "kind"],
        )
        return lines, terms

    def __repr__(self) -> str:
        lines, terms = self._described()
        text = [f"Design: {self.formula.text}", *(f"  {what}: {value}" for what, value in lines), "  random effects:"]
        text += [f"    {t.group} ({t.levels} levels): {t.columns} [{t.kind}]" for t in terms.itertuples()]
        return "\n".join(text)

    def _repr_html_(self, title: str = "Design") -> str:
        lines, terms = self._described()
        rows = "".join(f"<tr><th style='text-align:left'>{html.escape(what)}</th><td style='text-align:left'>"
                       f"{html.escape(value)}</td></tr>" for what, value in lines)
        return (f"<p><b>{html.escape(title)}</b> <code>{html.escape(self.formula.text)}</code></p><table>{rows}</table>"
                + html_section("Random effects", terms))
