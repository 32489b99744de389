"""The random-effects layout: terms grouped by factor, θ's map into Λθ, and the terms' labels.

One layout serves every consumer: REML (:class:`Structure`, θ), the Bayesian model, its priors
and its posterior (:func:`term_labels`, :class:`GroupLayout`), the results and saved files.

Each random-effects term with q columns has a q x q lower-triangular template; a correlated
term uses every lower-triangular element, a term split off a ``||`` bar is 1 x 1. θ lists the
template elements term by term, column-major within a term (lme4's order), and the diagonal
elements have lower bound 0.

Terms on the same grouping factor are stacked into one *factor block*: its effects for one
level are the concatenated columns of its terms, and its Λ is the block-diagonal of the
terms' templates. Factor blocks are ordered by decreasing number of levels (lme4's and
MixedModels.jl's order), so the first block has the most levels and is factored level by level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from typing import TYPE_CHECKING

from .terms import GroupedColumns, RandomTerm, factor_groups

if TYPE_CHECKING:
    from .design import Design, Rows


@dataclass(frozen=True, eq=False)
class FactorBlock(GroupedColumns):
    """The random-effects terms that share one grouping factor.

    Attributes
    ----------
    group
        Name of the grouping factor.
    codes
        Level index of each row, shape (n,) (None for a design without rows).
    levels
        The factor's levels.
    z
        The terms' model matrices side by side, shape (n, q) (None for a design without rows).
    columns
        Names of the q columns.
    terms
        Indices (into ``Design.terms``) of the terms in this block.
    term_slices
        Columns of ``z`` belonging to each term.
    theta_rows, theta_cols
        Position in the q x q matrix Λ of each θ element of this block.
    theta_offset
        Index in the full θ vector of this block's first element.
    rms
        Root mean square of each of the q columns (the size of an effect's column, which
        makes its SD comparable with the residual SD whatever the units of its variable).
    """

    group: str
    codes: np.ndarray
    levels: pd.Index
    z: np.ndarray
    columns: tuple[str, ...]
    terms: tuple[int, ...]
    term_slices: tuple[slice, ...]
    theta_rows: np.ndarray
    theta_cols: np.ndarray
    theta_offset: int
    rms: np.ndarray

    @property
    def n_theta(self) -> int:
        """Number of θ elements in this block."""
        return len(self.theta_rows)

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        """Λ for one level (q x q, lower triangular) from the full θ vector."""
        lam = np.zeros((self.q, self.q))
        lam[self.theta_rows, self.theta_cols] = theta[self.theta_offset : self.theta_offset + self.n_theta]
        return lam


@dataclass(frozen=True, eq=False)
class Structure:
    """θ's layout over the factor blocks of a design.

    Attributes
    ----------
    blocks
        The factor blocks, most levels first.
    lower
        Lower bound of each θ element (0 on diagonals, -inf elsewhere).
    names
        lme4-style name of each θ element (``"id.Intercept"``, ``"id.x.Intercept"``).
    row_scale
        For each θ element, the root mean square of the column of z in its row of Λ. The
        optimiser works on θ̃ = θ * row_scale, the θ of the columns scaled to unit root mean
        square: an exact reparametrisation (Λ̃ = diag(s) Λ stays lower triangular) under which
        lme4's identity start is sensible whatever the units of the predictors.
    """

    blocks: tuple[FactorBlock, ...]
    lower: np.ndarray
    names: tuple[str, ...]
    row_scale: np.ndarray

    @property
    def n_theta(self) -> int:
        """Length of θ."""
        return len(self.lower)

    @property
    def dense_block_size(self) -> int:
        """Q2 = Σ levels x q over the factor blocks after the first: the rows of the blocked
        factorisation's dense block (and of the fully collapsed density's)."""
        return sum(block.n_levels * block.q for block in self.blocks[1:])

    def locate(self, term: int) -> tuple[int, slice]:
        """Which factor block holds design term ``term``, and its columns there."""
        for k, block in enumerate(self.blocks):
            if term in block.terms:
                return k, block.term_slices[block.terms.index(term)]
        raise IndexError(term)

    def per_block(self, u: np.ndarray) -> list[np.ndarray]:
        """A flat vector of effects laid out as the blocked factorisation lays them out (each
        factor block level-major, the blocks in order) per factor block, shape (levels, q)."""
        out, start = [], 0
        for block in self.blocks:
            size = block.n_levels * block.q
            out.append(u[start : start + size].reshape(block.n_levels, block.q))
            start += size
        return out

    def initial_theta(self) -> np.ndarray:
        """lme4's starting point: identity templates (1 on diagonals, 0 elsewhere)."""
        return np.where(np.isfinite(self.lower), 1.0, 0.0)

    def diagonal(self) -> np.ndarray:
        """Mask of the θ elements on a template's diagonal."""
        return np.isfinite(self.lower)


def structure_of(design: Design) -> Structure:
    """Group the design's terms by grouping factor and lay out θ (with each block's codes and z
    when the design's rows are in memory)."""
    data = design.rows if design.in_memory else None
    blocks, lower, names, scale = [], [], [], []
    offset = 0
    for group, member_terms in factor_groups([t.group for t in design.terms], [t.n_levels for t in design.terms]):
        members = [design.terms[k] for k in member_terms]
        rows, cols, slices = [], [], []
        start = 0
        for term in members:
            r, c = _template(term)
            rows.append(r + start)
            cols.append(c + start)
            slices.append(slice(start, start + term.q))
            lower.extend(np.where(r == c, 0.0, -np.inf))
            names.extend(
                f"{group}.{term.columns[i]}" if i == j else f"{group}.{term.columns[i]}.{term.columns[j]}"
                for i, j in zip(r, c)
            )
            start += term.q
        block = FactorBlock(
            group=group,
            codes=None if data is None else data.codes[member_terms[0]],
            levels=members[0].levels,
            z=None if data is None else np.column_stack([data.z[k] for k in member_terms]),
            columns=tuple(c for t in members for c in t.columns),
            terms=tuple(member_terms),
            term_slices=tuple(slices),
            theta_rows=np.concatenate(rows),
            theta_cols=np.concatenate(cols),
            theta_offset=offset,
            rms=np.concatenate([design.z_rms(k) for k in member_terms]),
        )
        offset += block.n_theta
        blocks.append(block)
        scale.extend(np.where(block.rms > 0, block.rms, 1.0)[block.theta_rows])
    return Structure(tuple(blocks), np.asarray(lower), tuple(names), np.asarray(scale))


@dataclass(frozen=True)
class GroupLayout:
    """How one grouping factor's effects are laid out in the posterior."""

    group: str
    levels: list
    effects: list[str]
    pairs: list[tuple[str, str]]  # the free correlations, in term order

    @property
    def name(self) -> str:
        """The factor's name as used in variable names (``:`` is not allowed in netCDF names)."""
        return self.group.replace(":", "_")


def term_labels(design: Design) -> list[str]:
    """lme4-style labels of the design's terms, in formula order: the group, ``g.1``, ``g.2`` for
    repeats (the one naming of terms: REML's variance components, the priors and the posterior)."""
    seen: dict[str, int] = {}
    labels = []
    for term in design.terms:
        k = seen.get(term.group, 0)
        seen[term.group] = k + 1
        labels.append(term.group if k == 0 else f"{term.group}.{k}")
    return labels


def group_layouts(design: Design) -> list[GroupLayout]:
    """One layout per grouping factor, in order of first appearance."""
    out: dict[str, GroupLayout] = {}
    for term in design.terms:
        layout = out.setdefault(term.group, GroupLayout(term.group, list(term.levels), [], []))
        layout.effects.extend(term.columns)
        if term.correlated:
            layout.pairs.extend((term.columns[i], term.columns[j]) for i in range(term.q) for j in range(i + 1, term.q))
    return list(out.values())


def pair_label(pair: tuple[str, str]) -> str:
    """Coordinate label of a correlation: ``Intercept:perform_type[Solo]``."""
    return f"{pair[0]}:{pair[1]}"


def coords(design: Design, layouts: list[GroupLayout]) -> dict:
    """Coordinates of the posterior's dims: coefficients, rows, and per factor its levels, effects and pairs."""
    out = {"coef": list(design.fixed_names)}
    if design.in_memory:
        out["obs"] = np.arange(design.n)
    for layout in layouts:
        out[f"{layout.name}_level"] = layout.levels
        out[f"{layout.name}_effect"] = layout.effects
        if layout.pairs:
            out[f"{layout.name}_pair"] = [pair_label(p) for p in layout.pairs]
    return out


def group_of(label: str) -> str:
    """The grouping factor of a term label (``id.1`` -> ``id``)."""
    head, _, tail = label.rpartition(".")
    return head if head and tail.isdigit() else label


def _template(term: RandomTerm) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the θ elements of one term, column-major lower triangle."""
    if not term.correlated:
        diagonal = np.arange(term.q)
        return diagonal, diagonal
    cols, rows = np.triu_indices(term.q)  # column-major order of the lower triangle
    return rows, cols


def random_part(structure: Structure, rows: "Rows", effects: list[np.ndarray]) -> np.ndarray:
    """Z b for several sets of random effects b: ``effects`` holds per factor block an array
    (sets, levels, q); the result is (sets, rows). A level not seen in fitting (code -1) gets 0."""
    out = np.zeros((len(effects[0]), rows.n))
    for k, (codes, z) in enumerate(zip(rows.codes, rows.z)):
        block, cols = structure.locate(k)
        b = effects[block][:, np.maximum(codes, 0)][:, :, cols]
        out += np.einsum("ij,sij->si", np.where((codes >= 0)[:, None], z, 0.0), b)
    return out
