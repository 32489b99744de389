"""How the posterior lays out each grouping factor's effects: labels, factor layouts, coordinates.

The names here (``g.1`` term labels, ``sd_<group>``/``cor_<group>``/``u_<group>`` dims) are
shared by the PyMC model (:mod:`bayesmix.bayes.builder`), the collapsed density, priors,
standardisation, results and io; this module imports neither PyMC nor PyTensor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.design import Design


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
    """lme4-style labels of the design's terms: the group, ``g.1``, ``g.2`` for repeats."""
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
    if design.has_rows:
        out["obs"] = np.arange(design.n)
    for layout in layouts:
        out[f"{layout.name}_level"] = layout.levels
        out[f"{layout.name}_effect"] = layout.effects
        if layout.pairs:
            out[f"{layout.name}_pair"] = [pair_label(p) for p in layout.pairs]
    return out
