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
"""

from __future__ import annotations

from collections.abc import Mapping

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


def informative(design) -> dict[str, bool]:
    """Per grouping factor, whether ``"auto"`` centres it: whether the median of
    :func:`precision_ratios` over its levels is at least :data:`CENTRED_PRECISION_RATIO` (none
    is for data not in memory, which only the collapsed method samples)."""
    if not design.in_memory:
        return {term.group: False for term in design.terms}
    return {group: bool(np.median(r) >= CENTRED_PRECISION_RATIO) for group, r in precision_ratios(design).items()}


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
    noise = 1.0 / np.maximum(precision, 1e-300) + (len(groups) - 1) * s2
    ratios = {}
    for group in groups:
        k = next(k for k, term in enumerate(design.terms) if term.group == group)
        z = rows.z[k][:, 0]
        ratios[group] = np.bincount(rows.codes[k], weights=z * z / noise, minlength=design.terms[k].n_levels) * s2
    return ratios


def describe(design, centred: tuple[bool, ...], skip: tuple[str, ...] = ()) -> str:
    """How the random effects are parameterised, as results report it (those of the grouping
    factors ``skip`` left out)."""
    by_group = {term.group: c for term, c in zip(design.terms, centred) if term.group not in skip}
    if all(by_group.values()) or not any(by_group.values()):
        return f"{'centred' if all(by_group.values()) and by_group else 'noncentred'} random effects"
    return ("random effects centred for " + ", ".join(g for g, c in by_group.items() if c)
            + ", noncentred for " + ", ".join(g for g, c in by_group.items() if not c))
