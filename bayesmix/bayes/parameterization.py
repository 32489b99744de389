"""Which random-effects terms of the full model are centred: the ``parameterization`` argument.

``"noncentred"`` (every term), ``"centred"`` (every term), a dict from grouping factor to
either (factors left out are non-centred), or ``"auto"``: :func:`informative` decides per
grouping factor.

Non-centred effects (u = sd z, z ~ N(0, 1)) suit levels the data say little about: their
posterior is then close to the prior, and z is independent of sd. Centred effects (θ ~ N(m, sd²))
suit levels the data pin down: their posterior is then close to the likelihood, and θ is
independent of sd, while z = u/sd would be tied to it. For the normal hierarchical model the
Gibbs sampler's rate is 1/(1 + r) centred and r/(1 + r) non-centred, r the ratio of a level's
data precision to its prior precision 1/sd² (Papaspiliopoulos, Roberts and Sköld 2007, "A
general framework for the parametrization of hierarchical models"; Gorinova, Moore and
Hoffman 2020 choose per variable by the same logic). :func:`informative` estimates r before
sampling, from the data alone.

Centred terms are centred hierarchically (Gelfand, Sahu and Carlin 1995, "Efficient
parametrisations for normal linear mixed models"): a level's coefficients θ have the mean of
everything above it, not only the fixed effects of its shared columns. :func:`hierarchy`
finds, from the data, the fixed-effect columns constant within each level of a term's factor
(a brood's year, a location's height: their fixed effects join the mean of the term's
intercept) and the term whose grouping factor nests the term's (every level of the inner
factor within one level of the outer: BROOD in LOCATION, one level per row in both), whose
effects join the mean too. A centred term nested in others then has the coordinate the data
determine, the sum of its effect and its ancestors' (for an observation-level factor the
whole linear predictor), instead of a sum the data fix and the sampler must move in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from ..errors import ArgumentError

CHOICES = ("noncentred", "centred")
PARAMETERIZATIONS = (*CHOICES, "auto")

CENTRED_PRECISION_RATIO = 10.0
"""``"auto"`` centres a grouping factor when the median over its levels of r (the ratio of a
level's data precision to the prior precision of its effect, see :func:`precision_ratios`) is at
least this: the data then determine each level's effect to a third of its SD or better. Below,
down to r ≈ 1, neither form is clearly better and the non-centred one, which does not diverge
when an SD approaches 0, is kept (on cbpp, r ≈ 6, the centred form gave a higher ESS but 2
divergences; benchmarks/RESULTS.md)."""

NESTED_CENTRED_PRECISION_RATIO = 1.0
"""``"auto"`` centres a grouping factor nested in another one (:func:`hierarchy`) when the median
of its r is at least this, r counting as noise only the factors that do not nest it (its
ancestors' effects are part of its hierarchical mean, not noise): the point where the centred
form's Gibbs rate 1/(1 + r) overtakes the non-centred form's r/(1 + r). Lower than for factors
that nest in nothing because hierarchical centring also removes the trade-off between a
level's effect and its ancestors' that the data leave undetermined (on grouseticks, r ≈ 2.6 for
broods in locations and 6 for the observation-level factor: both centred tripled the smallest
ESS; benchmarks/RESULTS.md)."""

PARTIAL_WEIGHT = 0.5
"""The weight w of the partial non-centring (u = sd^(1-w) z, z ~ N(0, sd^(2w)): Papaspiliopoulos,
Roberts and Sköld 2007) that ``"auto"`` gives a scalar term left non-centred whose median r is
from :data:`NESTED_CENTRED_PRECISION_RATIO` up to :data:`CENTRED_PRECISION_RATIO`, where
neither form is clearly better. Their optimum for the normal hierarchical model is r/(1 + r) at
the true SD, which is unknown before sampling; on cbpp (r ≈ 6, 15 herds) w from 0.3 to 0.8 all
raised the smallest bulk ESS from 917-1205 (non-centred) to 1386-1975, 0.5 and 0.65 the most
(1651-1954 and 1679-1896, seeds 1-4, the same gradient evaluations, no divergences;
benchmarks/RESULTS.md)."""

REFERENCE_SD = 1.0
"""The SD of the effects at which r is evaluated, on the link scale (for the identity link in
units of the response's residual SD): the size of a typical random effect on the logit or log
scale, where the default priors of the SDs put most of their mass."""


def centring(design, parameterization: str | Mapping[str, str]) -> tuple[bool, ...]:
    """Per term of ``design``, whether it is centred under ``parameterization`` (checked)."""
    groups = list(dict.fromkeys(term.group for term in design.terms))
    if isinstance(parameterization, Mapping):
        unknown = [g for g in parameterization if g not in groups]
        wrong = {g: c for g, c in parameterization.items() if c not in CHOICES}
        if unknown:
            raise ArgumentError(f"parameterization names grouping factors the model does not have: {', '.join(map(repr, unknown))}; "
                                f"its grouping factors are {', '.join(map(repr, groups))}.")
        if wrong:
            raise ArgumentError(f"parameterization maps each grouping factor to one of {', '.join(CHOICES)}, not "
                                + ", ".join(f"{g!r}: {c!r}" for g, c in wrong.items()) + ".")
        chosen = {g: parameterization.get(g, "noncentred") == "centred" for g in groups}
    elif isinstance(parameterization, str) and parameterization in PARAMETERIZATIONS:
        chosen = informative(design) if parameterization == "auto" else {g: parameterization == "centred" for g in groups}
    else:
        raise ArgumentError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, or a dict from grouping "
                            f"factor to {' or '.join(CHOICES)}, not {parameterization!r}.")
    return tuple(chosen[term.group] for term in design.terms)


def partial_weights(design, parameterization, centred: tuple[bool, ...]) -> tuple[float, ...]:
    """Per term of ``design``, the weight of its partial non-centring: :data:`PARTIAL_WEIGHT` under
    ``"auto"`` for a scalar term left non-centred (``centred``) whose factor's median
    :func:`precision_ratios` is at least :data:`NESTED_CENTRED_PRECISION_RATIO`, else 0 (non-centred
    as chosen)."""
    if parameterization != "auto" or not design.in_memory or not design.terms:
        return (0.0,) * len(design.terms)
    median = {group: float(np.median(r)) for group, r in precision_ratios(design).items()}
    return tuple(PARTIAL_WEIGHT if not c and term.q == 1 and median[term.group] >= NESTED_CENTRED_PRECISION_RATIO
                 else 0.0 for term, c in zip(design.terms, centred))


def informative(design, ratio: float = CENTRED_PRECISION_RATIO) -> dict[str, bool]:
    """Per grouping factor, whether ``"auto"`` centres it: whether the median of
    :func:`precision_ratios` over its levels is at least ``ratio`` (:data:`CENTRED_PRECISION_RATIO`
    by default), or :data:`NESTED_CENTRED_PRECISION_RATIO` for a factor nested in another (none
    is for data not in memory, which only the collapsed method samples)."""
    if not design.in_memory:
        return {term.group: False for term in design.terms}
    nested = {design.terms[k].group for k, parent in enumerate(hierarchy(design).parent) if parent >= 0}
    return {group: bool(np.median(r) >= (NESTED_CENTRED_PRECISION_RATIO if group in nested else ratio))
            for group, r in precision_ratios(design).items()}


def precision_ratios(design) -> dict[str, np.ndarray]:
    """Per grouping factor, r of each level: the data precision of the level's effect (its first
    column, the intercept in the usual terms) over its prior precision, at effect SDs of
    :data:`REFERENCE_SD`, before any fit.

    Each row's precision on the link scale is the GLM working weight w μ'(η)²/(φ V(μ)) at the mean
    response (φ = σ² for the Gaussian, from the residuals about that mean; the negative
    binomial's θ = 1); the effects of the other grouping factors add their variance,
    REFERENCE_SD² each, to every row's (they are unknown too, and nested or crossed factors
    compete for the same rows). Then r_j = Σ_{rows of level j} z² / (1/W + (G - 1) s²) · s²,
    s = REFERENCE_SD, G the number of grouping factors: for one factor, the level's Fisher
    information times the effect's variance."""
    rows, family = design.rows, design.family
    weights = np.ones(design.n) if rows.weights is None else np.asarray(rows.weights, float)
    mean = np.full(1, np.average(rows.y, weights=weights))
    eta = family.link_function(mean)
    dispersion = family.initial_dispersion(rows.y, mean, weights)
    gaussian = family.dispersion_name == "sigma"  # φ = σ²; the negative binomial's θ enters V(μ)
    phi = dispersion ** 2 if gaussian else 1.0
    variance = family.variance(mean, None if gaussian else dispersion)
    precision = weights * float(family.inverse_link_derivative(eta)[0] ** 2 / (phi * variance[0]))
    groups = list(dict.fromkeys(term.group for term in design.terms))
    s2 = REFERENCE_SD ** 2
    ancestors = _ancestor_groups(design)
    ratios = {}
    for group in groups:
        k = next(k for k, term in enumerate(design.terms) if term.group == group)
        noise = 1.0 / np.maximum(precision, 1e-300) + (len(groups) - 1 - len(ancestors[group])) * s2
        z = rows.z[k][:, 0]
        ratios[group] = np.bincount(rows.codes[k], weights=z * z / noise, minlength=design.terms[k].n_levels) * s2
    return ratios


@dataclass(frozen=True)
class Hierarchy:
    """What a hierarchically centred term is centred on, found from the data.

    Attributes
    ----------
    parent
        Per term, the term whose grouping factor nests its own (the nesting factor with the
        most levels, among those that have a column of the same name and values), or -1.
    parent_columns
        Per term, per column, the parent's column of the same name (within the parent), or -1.
    first_rows
        Per term, per level, the first row of that level (where a level's constant columns and
        its parent's level are read).
    constant
        Terms x p: whether each column of X is constant within every level of the term's factor
        (and is not another column of the term): the fixed effects that join the mean of the
        term's intercept.
    """

    parent: tuple[int, ...]
    parent_columns: tuple[np.ndarray, ...]
    first_rows: tuple[np.ndarray, ...]
    constant: np.ndarray

    def order(self) -> list[int]:
        """The terms, each after its parent (a parent has fewer levels than its child)."""
        return sorted(range(len(self.parent)), key=lambda k: (self.depth(k), k))

    def depth(self, k: int) -> int:
        """How many ancestors term ``k`` has."""
        return 0 if self.parent[k] < 0 else 1 + self.depth(self.parent[k])


def hierarchy(design) -> Hierarchy:
    """The :class:`Hierarchy` of ``design``'s terms (nothing nested for data not in memory)."""
    terms = design.terms
    if not design.in_memory:
        return Hierarchy((-1,) * len(terms), tuple(np.full(t.q, -1) for t in terms),
                         tuple(np.zeros(t.n_levels, np.intp) for t in terms), np.zeros((len(terms), design.p), bool))
    rows = design.rows
    names = list(design.fixed_names)
    first_rows, constant = [], np.zeros((len(terms), design.p), bool)
    for k, term in enumerate(terms):
        codes = rows.codes[k]
        first = np.zeros(term.n_levels, np.intp)
        order = np.argsort(codes, kind="stable")[::-1]
        first[codes[order]] = order  # the last write per level is its first row
        first_rows.append(first)
        own = {c for c in term.columns if c != "Intercept"}
        for j, name in enumerate(names):
            constant[k, j] = name not in own and bool(np.all(rows.X[:, j] == rows.X[first[codes], j]))
    parents, parent_columns = [], []
    for k, term in enumerate(terms):
        best, columns = -1, np.full(term.q, -1)
        for o, outer in enumerate(terms):
            if outer.group == term.group or outer.n_levels >= term.n_levels:
                continue
            if best >= 0 and terms[best].n_levels >= outer.n_levels:
                continue
            if not np.all(rows.codes[o] == rows.codes[o][first_rows[k][rows.codes[k]]]):
                continue  # some level of the term's factor spans several levels of the outer one
            matched = np.array([outer.columns.index(c) if c in outer.columns
                                and np.array_equal(rows.z[k][:, i], rows.z[o][:, outer.columns.index(c)]) else -1
                                for i, c in enumerate(term.columns)])
            if np.any(matched >= 0):
                best, columns = o, matched
        parents.append(best)
        parent_columns.append(columns)
    return Hierarchy(tuple(parents), tuple(parent_columns), tuple(first_rows), constant)


def _ancestor_groups(design) -> dict[str, set[str]]:
    """Per grouping factor, the factors that nest it (through :func:`hierarchy`'s parents)."""
    found = hierarchy(design)
    ancestors: dict[str, set[str]] = {term.group: set() for term in design.terms}
    for k, term in enumerate(design.terms):
        parent = found.parent[k]
        while parent >= 0:
            ancestors[term.group].add(design.terms[parent].group)
            parent = found.parent[parent]
    return ancestors


def describe(design, centred: tuple[bool, ...], skip: tuple[str, ...] = (), how: str = "centred",
             partial: tuple[float, ...] | None = None) -> str:
    """How the random effects are parameterised, as results report it (those of the grouping
    factors ``skip`` left out; ``how`` the centred ones are centred, e.g. "centred by contrasts";
    the factors with a ``partial`` weight named with it)."""
    weighted = {term.group: w for term, w in zip(design.terms, partial or ()) if w and term.group not in skip}
    if weighted:
        rest = describe(design, centred, skip + tuple(weighted), how) if len(weighted) < len(
            {t.group for t in design.terms if t.group not in skip}) else ""
        named = ", ".join(f"{g} (w = {w:g})" for g, w in weighted.items())
        return f"random effects partially noncentred for {named}" + (f"; {rest}" if rest else "")
    by_group = {term.group: c for term, c in zip(design.terms, centred) if term.group not in skip}
    if all(by_group.values()) and by_group:
        return f"random effects {how}" if " " in how else f"{how} random effects"
    if not any(by_group.values()):
        return "noncentred random effects"
    return (f"random effects {how} for " + ", ".join(g for g, c in by_group.items() if c)
            + ", noncentred for " + ", ".join(g for g, c in by_group.items() if not c))
