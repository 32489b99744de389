"""Separation of fixed effects in binomial and count models (Konis 2007, as R's ``detectseparation``).

The maximum-likelihood estimate of β is finite unless some direction d ≠ 0 moves every
response at a bound of its mean's range towards it without moving any other: x_i'd ≤ 0 where
the response is at its lower bound (no successes; a zero count), x_i'd ≥ 0 at its upper bound
(all successes), x_i'd = 0 elsewhere, with some inequality strict. Then the likelihood keeps
increasing along d (the random effects cannot stop it: their penalty does not involve β), and
the estimates of the coefficients d moves run off to infinity. One linear programme over the
distinct rows finds such a d when there is one.
"""

from __future__ import annotations

import numpy as np

from ..data.design import Design

TOLERANCE = 1e-7  # of the linear programme's objective, relative to the number of rows at a bound


def separated_coefficients(design: Design) -> list[str]:
    """Names of the fixed effects the data separate (empty when none are)."""
    rows = design.rows
    lower, upper = design.family.at_bounds(rows.y)
    if design.p == 0 or not (lower.any() or upper.any()):
        return []
    from scipy.optimize import linprog

    sign = np.where(lower, -1.0, np.where(upper, 1.0, 0.0))
    distinct = np.unique(np.column_stack([sign, rows.X]), axis=0)
    sign, X = distinct[:, 0], distinct[:, 1:]
    # oriented rows s_i x_i: d must make each ≥ 0 where s_i ≠ 0, and x_i'd = 0 where s_i = 0
    bounded, interior = X[sign != 0] * sign[sign != 0, None], X[sign == 0]
    result = linprog(
        -bounded.sum(axis=0),
        A_ub=-bounded, b_ub=np.zeros(len(bounded)),
        A_eq=interior if len(interior) else None, b_eq=np.zeros(len(interior)) if len(interior) else None,
        bounds=[(-1.0, 1.0)] * design.p, method="highs",
    )
    if result.status != 0 or -result.fun <= TOLERANCE * max(len(bounded), 1):
        return []
    direction = np.asarray(result.x)
    return [name for name, d in zip(design.fixed_names, direction) if abs(d) > 1e-6]
