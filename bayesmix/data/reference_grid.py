"""The reference grid of estimated marginal means (R's emmeans): the linear functions of β
whose values are the marginal means of some predictors, read by the point fits' and the
posterior's ``emmeans``.

The grid crosses every level of every categorical predictor of the fixed effects with each
numeric predictor at its mean over the fitted rows (or at the values given in ``at``). The
marginal mean of a level (combination) of ``specs`` averages the grid's rows x_g of the
fixed-effects matrix over the other predictors' levels with equal weights: it is l'β with l
that average. Pairwise contrasts of the means are differences of those rows.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from ..errors import ArgumentError
from .design import Design
from .newdata import new_data


def as_specs(specs: str | list[str]) -> list[str]:
    """``specs`` as a list of predictor names."""
    return [specs] if isinstance(specs, str) else list(specs)


def marginal_functions(design: Design, specs: list[str], at: dict | None) -> pd.DataFrame:
    """The linear functions of β that are the marginal means of ``specs`` (one row per level
    combination, indexed by it, the first spec varying fastest as in emmeans), averaged over the
    reference grid of ``design``; see the module docstring.

    Raises
    ------
    ArgumentError
        When ``specs`` or ``at`` name a column that is not a predictor of the fixed effects.
    """
    frame, levels = design.rows.frame, design.recipe.variable_levels
    at = dict(at or {})
    unknown = [v for v in list(specs) + list(at) if v not in levels]
    if unknown:
        raise ArgumentError(
            f"{unknown} are not predictors of the fixed effects; the predictors are {sorted(levels)}."
        )
    grid = {}
    for name in design.formula.predictor_variables:
        if name in at:
            grid[name] = list(np.atleast_1d(at[name]))
        elif name in levels:
            grid[name] = [float(frame[name].mean())] if levels[name] is None else sorted(levels[name])
        else:  # a grouping factor, which the fixed effects do not read
            grid[name] = [frame[name].iloc[0]]
    names = list(grid)
    table = pd.DataFrame(list(itertools.product(*grid.values())), columns=names)
    X = new_data(design, table).X
    key = table[specs].apply(tuple, axis=1)
    # emmeans' order: the first of several specs varies fastest
    order = [tuple(reversed(combination)) for combination in itertools.product(*(grid[v] for v in reversed(specs)))]
    rows = [X[(key == k).to_numpy()].mean(axis=0) for k in order]
    index = pd.MultiIndex.from_tuples(order, names=specs) if len(specs) > 1 else pd.Index([k[0] for k in order], name=specs[0])
    return pd.DataFrame(rows, index=index, columns=list(design.fixed_names))


def pairwise_differences(L: pd.DataFrame, ratios: bool = False) -> pd.DataFrame:
    """Every difference of two rows of ``L``, row a minus row b for a before b, indexed
    ``"a - b"`` (``"a / b"`` with ``ratios``, for contrasts read as exp(a - b)).

    Raises
    ------
    ArgumentError
        When ``L`` has fewer than two rows.
    """
    names = [label(i) for i in L.index]
    pairs = list(itertools.combinations(range(len(names)), 2))
    if not pairs:
        raise ArgumentError("Pairwise contrasts need at least two means; specs has one level here.")
    sign = "/" if ratios else "-"
    values = L.to_numpy()
    return pd.DataFrame([values[i] - values[j] for i, j in pairs], columns=L.columns,
                        index=pd.Index([f"{names[i]} {sign} {names[j]}" for i, j in pairs], name="contrast"))


def label(key) -> str:
    """A grid row's label: its level, or its levels joined by spaces."""
    return " ".join(map(str, key)) if isinstance(key, tuple) else str(key)


SCALES = ("link", "response")


def check_scale(scale: str) -> str:
    """``scale`` if it is ``"link"`` or ``"response"``; ArgumentError otherwise."""
    if not isinstance(scale, str) or scale not in SCALES:
        raise ArgumentError(f"scale must be one of {SCALES}, not {scale!r}.")
    return scale


def contrasts_are_ratios(scale: str, link: str) -> bool:
    """Whether pairwise contrasts on ``scale`` are ratios exp(a - b) (of means for the log link,
    of odds for the logit link: emmeans' ``type = "response"``) rather than differences a - b.

    Raises
    ------
    ArgumentError
        On the response scale of a link other than identity, log and logit, which has no
        response-scale contrasts.
    """
    ratios = scale == "response" and link != "identity"
    if ratios and link not in ("log", "logit"):
        raise ArgumentError(
            f"Pairwise contrasts on the response scale are ratios for the log and logit links; this fit's link is "
            f"{link!r}: use scale='link'."
        )
    return ratios
