"""Separation of fixed effects in binomial and count models (Konis 2007, as R's ``detectseparation``).

The maximum-likelihood estimate of β is finite unless some direction d ≠ 0 moves every
response at a bound of its mean's range towards it without moving any other: x_i'd ≤ 0 where
the response is at its lower bound (no successes; a zero count), x_i'd ≥ 0 at its upper bound
(all successes), x_i'd = 0 elsewhere, with some inequality strict. Then the likelihood keeps
increasing along d (the random effects cannot stop it: their penalty does not involve β), and
the estimates of the coefficients d moves run off to infinity.

A linear programme finds such a d when there is one: maximise Σ_i s_i x_i'd (s_i = -1, +1 or 0
as above) subject to the constraints, in the box |d_j| ≤ 1. It is solved by cutting planes, so
that a million rows cost little more than a few thousand: the programme over a sample of the
distinct rows (with the objective of all of them) bounds the full one from above; when its
optimum is 0 no row can be separated, and when its d satisfies every row it is the answer;
otherwise the violated rows join the sample and it is solved again.
"""

from __future__ import annotations

import numpy as np

from ..data.design import Design

TOLERANCE = 1e-7  # of the programme's optimum, relative to the size of its objective
SAMPLE = 5_000  # distinct rows in the first programme
CUTS = 5_000  # most violated rows added per round


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
    oriented = X * np.where(sign == 0, 1.0, sign)[:, None]  # each must be ≥ 0 (= 0 where s_i = 0)
    objective = -(X * sign[:, None]).sum(axis=0)
    scale = np.abs(objective).sum() + 1.0
    rng = np.random.default_rng(0)
    chosen = np.zeros(len(sign), dtype=bool)
    chosen[rng.choice(len(sign), size=min(SAMPLE, len(sign)), replace=False)] = True
    while True:
        bounded, interior = chosen & (sign != 0), chosen & (sign == 0)
        result = linprog(
            objective,
            A_ub=-oriented[bounded] if bounded.any() else None, b_ub=np.zeros(bounded.sum()) if bounded.any() else None,
            A_eq=oriented[interior] if interior.any() else None, b_eq=np.zeros(interior.sum()) if interior.any() else None,
            bounds=[(-1.0, 1.0)] * design.p, method="highs",
        )
        if result.status != 0 or -result.fun <= TOLERANCE * scale:
            return []
        direction = np.asarray(result.x)
        slack = oriented @ direction
        violation = np.where(sign == 0, np.abs(slack), -slack)
        violated = ~chosen & (violation > 1e-9 * np.abs(oriented).sum(axis=1).clip(min=1.0))
        if not violated.any():
            return [name for name, d in zip(design.fixed_names, direction) if abs(d) > 1e-6]
        worst = np.flatnonzero(violated)[np.argsort(-violation[violated])[:CUTS]]
        chosen[worst] = True
