"""Design -> PyMC model: fixed effects, LKJ-correlated random effects (non-centred or centred per term), the family's likelihood.

Parametrisation, for each random-effects term t with q_t columns and levels ℓ_t:

    z_t ~ Normal(0, 1), shape (ℓ_t, q_t)          (non-centred)
    u_t = z_t (diag(sd_t) L_t)'                   (L_t ~ LKJCorr(η): Cholesky factor of the correlation)
    u_t = z_t * sd_t                              (scalar and ``||`` terms)
    η = X β + Σ_t Σ_j z_tj(row) u_t[level(row), j] + offset
    y ~ the design's family given μ = g⁻¹(η) (its ``distribution``: Normal(μ, σ/√w) for the
        Gaussian, Binomial(w, μ) of the successes w y for the binomial, Poisson(μ),
        NegativeBinomial(μ, θ))

g⁻¹ is the link's inverse in PyTensor (:data:`INVERSE_LINKS`; R's guards against under- and
overflow are left out, so that the gradient is exact everywhere). Prior weights enter the
binomial (trials) and the Gaussian (precisions) through their distributions; those of the
Poisson and the negative binomial multiply each row's log-likelihood, which no PyMC
distribution carries, so the likelihood of such a model is a ``pm.Potential`` (``y_loglik``)
of Σ w_i log p(y_i | μ_i): the same density, without an observed variable.

Non-intercept columns of X are centred while sampling (their intercept is then the mean
response at average predictors, which decorrelates it from the slopes); the reported
``Intercept`` is transformed back.

Posterior variables, named for users:

- ``beta`` (``coef``): fixed effects;
- ``sigma`` (Gaussian) or ``shape`` (negative binomial): the family's dispersion
  (:attr:`~bayesmix.families.Family.dispersion_name`; none for the binomial and Poisson);
- ``sd_<group>`` (``<group>_effect``): SDs of the effects of one grouping factor;
- ``cor_<group>`` (``<group>_pair``): its free correlations, one per pair of effects in a
  correlated term (``Intercept:perform_type[Solo]``);
- ``u_<group>`` (``<group>_level``, ``<group>_effect``): the random effects.

This module imports PyMC and PyTensor, so it is imported only when a PyMC model is built
(``BayesModel.pymc_model``, sampling with ``sampler="pymc"``, the full model with nutpie, priors
without a native form), never by ``import bayesmix``; :mod:`bayesmix.jit`, which may choose
PyTensor's compile directory, has run by then (``bayesmix/bayes/__init__.py`` imports it first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from ..data.design import Design
from ..data.layout import GroupLayout, coords, group_layouts, term_labels
from .full_density import shared_columns
from .parameterization import hierarchy
from .priors import Distribution, PriorSet, resolve_priors

SQRT2 = float(np.sqrt(2.0))

#: μ = g⁻¹(η) in PyTensor, per link (the numpy forms, with R's guards, are :data:`bayesmix.families.LINKS`).
INVERSE_LINKS: dict[str, Callable] = {
    "identity": lambda eta: eta,
    "log": pt.exp,
    "logit": pt.sigmoid,
    "probit": lambda eta: 0.5 * pt.erfc(-eta / SQRT2),
    "cloglog": lambda eta: -pt.expm1(-pt.exp(eta)),
}


@dataclass
class _TermCovariance:
    """A term's SDs and, for correlated terms, the Cholesky factor of its correlation matrix."""

    sd: object
    chol: object | None

    def cov_chol(self):
        """Cholesky factor of the term's covariance (a column of SDs for scalar terms)."""
        return self.sd[:, None] * self.chol if self.chol is not None else pt.diag(self.sd)


def _population(design: Design, priors: PriorSet, layouts: list[GroupLayout]):
    """β, the family's dispersion (or None), and each term's covariance, with the ``sd_<group>`` and
    ``cor_<group>`` variables."""
    beta = _fixed_effects(design, priors)
    terms = []
    sds: dict[str, list] = {layout.group: [] for layout in layouts}
    cors: dict[str, list] = {layout.group: [] for layout in layouts}
    for k, (label, term) in enumerate(zip(term_labels(design), design.terms)):
        sd = _stack([priors.sd[(label, c)] for c in term.columns], f"_sd_{k}")
        chol = None
        if term.correlated and term.q > 1:
            chol = pm.LKJCorr(f"_L_{k}", n=term.q, eta=priors.cor[label].params["eta"])
            rows, cols = np.triu_indices(term.q, 1)
            cors[term.group].append(pt.dot(chol, chol.T)[rows, cols])
        sds[term.group].append(sd)
        terms.append(_TermCovariance(sd, chol))
    for layout in layouts:
        pm.Deterministic(f"sd_{layout.name}", pt.concatenate(sds[layout.group]), dims=f"{layout.name}_effect")
        if cors[layout.group]:
            pm.Deterministic(f"cor_{layout.name}", pt.concatenate(cors[layout.group]), dims=f"{layout.name}_pair")
    dispersion = None if priors.dispersion is None else priors.dispersion.pymc(design.family.dispersion_name)
    return beta, dispersion, terms


def build_model(design: Design, priors: PriorSet | None = None,
                parameterization: str | tuple[bool, ...] = "noncentred", partial: tuple[float, ...] | None = None) -> pm.Model:
    """The PyMC model of ``design`` with ``priors`` (defaults from :func:`resolve_priors`).

    ``parameterization="centred"`` (or, per term, a tuple of booleans, True for a centred
    term) samples each level's coefficients directly and hierarchically centred:
    θ_t ~ MvNormal(m_t + a_t, diag(sd_t) R_t diag(sd_t)) per level, with u_t = θ_t - m_t - a_t,
    where m_t holds the fixed effect of each column that is also a fixed-effect column (else 0),
    for the intercept the fixed effects of every column of X constant within the level, and a_t
    the effects of the terms whose factors nest the term's (its parent's effects plus the
    parent's a: :func:`bayesmix.bayes.parameterization.hierarchy`). Better than the non-centred
    default when the data pin down each level's coefficients, and β is their mean.

    ``partial`` gives, per term, the weight w of a non-centred scalar term's partial non-centring
    (0 by default): z_t ~ Normal(0, sd_t^w), u_t = z_t sd_t^(1-w).
    """
    priors = priors or resolve_priors(design, term_labels(design))
    layouts = group_layouts(design)
    rows = design.rows
    family = design.family
    centred = ((parameterization == "centred",) * len(design.terms) if isinstance(parameterization, str)
               else tuple(parameterization))
    found = hierarchy(design)
    with pm.Model(coords=coords(design, layouts)) as model:
        y = pm.Data("y", family.observed(rows.y, rows.weights), dims="obs")
        beta, dispersion, covariances = _population(design, priors, layouts)
        eta = pt.dot(rows.X, beta) if rows.offset is None else pt.dot(rows.X, beta) + rows.offset
        effects: dict[str, list] = {layout.group: [] for layout in layouts}
        u, a = [None] * len(design.terms), [None] * len(design.terms)
        for k in found.order():  # parents first
            term, cov = design.terms[k], covariances[k]
            shape = (term.n_levels, term.q)
            a[k] = _ancestors(design, found, k, u, a)
            if centred[k]:
                mean = _level_means(design, found, k, beta) + a[k]
                if cov.chol is None:
                    theta = pm.Normal(f"_theta_{k}", mean, cov.sd[None, :], shape=shape)
                else:
                    theta = pm.MvNormal(f"_theta_{k}", mu=mean, chol=cov.cov_chol(), shape=shape)
                u[k] = theta - mean
            elif partial is not None and partial[k]:
                w = partial[k]
                u[k] = pm.Normal(f"_z_{k}", 0.0, cov.sd[None, :] ** w, shape=shape) * cov.sd[None, :] ** (1.0 - w)
            else:
                u[k] = pt.dot(pm.Normal(f"_z_{k}", 0.0, 1.0, shape=shape), cov.cov_chol().T)
        for k, term in enumerate(design.terms):
            eta = eta + (rows.z[k] * u[k][rows.codes[k]]).sum(axis=1)
            effects[term.group].append(u[k])
        for layout in layouts:
            dims = (f"{layout.name}_level", f"{layout.name}_effect")
            pm.Deterministic(f"u_{layout.name}", pt.concatenate(effects[layout.group], axis=1), dims=dims)
        likelihood = getattr(pm, family.distribution)
        mu = INVERSE_LINKS[family.link](eta)
        if rows.weights is not None and family.weights_multiply_log_likelihood:
            pointwise = pm.logp(likelihood.dist(**family.distribution_parameters(mu, dispersion)), y)
            pm.Potential("y_loglik", pt.dot(rows.weights, pointwise))
        else:
            likelihood("y_obs", **family.distribution_parameters(mu, dispersion, rows.weights), observed=y, dims="obs")
    return model


def build_collapsed_model(design: Design, crossprod, priors: PriorSet | None = None, shift=None) -> pm.Model:
    """The PyMC model with the random effects integrated out (one grouping factor only).

    The likelihood is :class:`~bayesmix.bayes.ops.CollapsedLogLik` of the
    cross-products ``A11``, ``A1X`` and ``AXX`` (the latter two ``pm.Data``, so a new response
    needs no recompilation). ``collapsed_chol``, the Cholesky factor of the covariance of the
    factor's effects, is kept for drawing the effects after sampling. With ``shift`` = c the
    cross-products are those of the response y - X c, and the likelihood is taken at β - c.
    """
    from .ops import CollapsedLogLik

    priors = priors or resolve_priors(design, term_labels(design))
    layouts = group_layouts(design)
    if len(layouts) != 1:
        raise ValueError("The collapsed likelihood needs every random-effects term on one grouping factor.")
    with pm.Model(coords=coords(design, layouts)) as model:
        A1X = pm.Data("A1X", crossprod.A1X)
        AXX = pm.Data("AXX", crossprod.AXX)
        beta, sigma, covariances = _population(design, priors, layouts)  # the Gaussian's: sigma
        chol = pt.linalg.block_diag(*[cov.cov_chol() for cov in covariances])
        pm.Deterministic("collapsed_chol", chol)
        pm.Potential("collapsed_loglik", CollapsedLogLik(crossprod.A11.shape[1])(
            beta if shift is None else beta - shift, chol, sigma, crossprod.A11, A1X, AXX, float(design.n)
        ))
    return model


def _level_means(design: Design, found, k: int, beta):
    """Per level and column of term ``k``, the fixed-effect part of a centred level's mean: the
    fixed effect of the identical column of X, for the intercept those of the columns constant
    within the level, or 0 (levels x columns)."""
    names, first = list(design.fixed_names), found.first_rows[k]
    intercept = names.index("Intercept") if "Intercept" in names else -1
    constant = np.flatnonzero(found.constant[k])
    columns = []
    for j in shared_columns(design, k):
        if j < 0:
            columns.append(pt.zeros(len(first)))
        elif j == intercept:
            columns.append(pt.dot(design.rows.X[first][:, constant], beta[constant]))
        else:
            columns.append(pt.ones(len(first)) * beta[j])
    return pt.stack(columns, axis=1)


def _ancestors(design: Design, found, k: int, u: list, a: list):
    """a of term ``k``: per level and column, its parent's effects plus the parent's a at the
    parent's level that contains it (0 without a parent, and in columns the parent lacks)."""
    parent = found.parent[k]
    if parent < 0:
        return 0.0
    parent_levels = design.rows.codes[parent][found.first_rows[k]]
    total = (u[parent] + a[parent])[parent_levels]
    zero = pt.zeros(len(parent_levels))
    return pt.stack([total[:, c] if c >= 0 else zero for c in found.parent_columns[k]], axis=1)


def _fixed_effects(design: Design, priors: PriorSet):
    """β with the intercept of centred predictors sampled, and reported on the original scale."""
    names = list(design.fixed_names)
    others = [j for j, n in enumerate(names) if n != "Intercept"]
    slopes = [_stack([priors.b[names[j]]], f"_b_{j}")[0] for j in others]
    if priors.intercept is None:  # no fixed effects at all (y ~ 0 + (1 | g)) is a model too
        return pm.Deterministic("beta", pt.stack(slopes) if slopes else pt.zeros(0), dims="coef")
    centred_intercept = priors.intercept.pymc("_Intercept_centred")
    means = design.x_means()[others]
    intercept = centred_intercept - (pt.dot(means, pt.stack(slopes)) if others else 0.0)
    values = [None] * len(names)
    values[names.index("Intercept")] = intercept
    for j, s in zip(others, slopes):
        values[j] = s
    return pm.Deterministic("beta", pt.stack(values), dims="coef")


def _stack(dists: list[Distribution], name: str):
    """A vector of independent random variables: one vector RV when all share a family."""
    first = dists[0]
    if all(d.name == first.name and d.params.keys() == first.params.keys() for d in dists):
        params = {k: np.array([d.params[k] for d in dists]) for k in first.params}
        return getattr(pm, first.name)(name, **params, shape=len(dists))
    return pt.stack([d.pymc(f"{name}_{i}") for i, d in enumerate(dists)])
