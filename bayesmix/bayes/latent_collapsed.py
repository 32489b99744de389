"""The collapsed sampler of a GLMM with an observation-level effect: NUTS on the linear predictor,
every other factor's effects integrated out exactly.

An observation-level effect ``(1 | obs)`` (one level per row, the usual way to let a Poisson or
binomial model be overdispersed: Harrison 2014) makes the linear predictor itself a latent
Gaussian variable. When the other terms are intercepts ``(1 | g)`` on factors nested in one
another (grouseticks: each row in a brood, each brood in a location), the predictor's prior
given the population parameters is Gaussian with a tree-structured covariance,

    η ~ N(X β + offset, V),   V = v₀ I + Σ_k v_k Z_k Z_k',   v_k = sd_k²,

so the factors' effects can be integrated out of the joint density exactly, as the collapsed
sampler of the Gaussian model does (:mod:`bayesmix.bayes.density`), with η in the place of the
response. NUTS then samples the population parameters (β, the SDs, a dispersion) and η, which
the data pin down row by row; the SDs are sampled on the effects' marginal, where in the full
model they are tied to the effects they scale (on grouseticks the full sampler's smallest
bulk ESS was 120-200 of 4,000 draws, sd(LOCATION) against sd(BROOD), with R-hat up to 1.04;
collapsed, 670-750 and R-hat <= 1.006 at the same number of gradient evaluations:
``benchmarks/RESULTS.md``).

The density is the log-likelihood Σ_r log p(y_r | η_r) (:func:`bayesmix.families.log_density_row`),
plus the priors of :func:`bayesmix.bayes.density.population`, plus log N(η; X β + offset, V),
evaluated with the factors from the innermost to the outermost (Woodbury's identity once per
level): for the rows A_r = 1/v₀, s_r = e_r/v₀ (e = η - X β - offset); for a level l of factor k,
A = Σ over its children of A, S = Σ of s, d_l = 1 + v_k A, and it passes A/d_l and S/d_l up;

    log N = -½ [n log v₀ + Σ_r e_r²/v₀ + Σ_k Σ_l (log d_l - v_k S_l²/d_l)] + const.

The gradient is exact, by reverse mode through the same recursion. Given a draw, the effects
are drawn exactly from the outermost factor inwards: u_l ~ N(v_k S_l/d_l, v_k/d_l) with S computed
from e less the effects already drawn, the observation-level effects being what is left of e.

Unconstrained coordinates: the population's (:func:`bayesmix.bayes.density.population`), then
η, one per row. The posterior variables are the full model's (``beta``, the dispersion,
``sd_<group>``, ``u_<group>``): the expansion reports the population's and η
(``latent_predictor``), and :func:`add_effects` replaces η by the effects.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xarray as xr
from numba import carray

from ..families import BINOMIAL_CODE, log_density_row
from ..jit import cfunc, njit
from .density import (
    EXPAND_SIGNATURE, logp_status, LOGP_SIGNATURE, N_DIM, N_EXPANDED, NO_PRIOR, OFF_SIGMA_PRIOR, P, POPULATION_HEADER, Q, ROWS, PackedDensity, Variable, blob_at,
    chain_rule, matrix, natively_supported, population, population_centre, population_into, population_sections,
)
from .priors import PriorSet

__all__ = ["LATENT", "LatentDensity", "add_effects", "latent_applicable", "latent_density"]

LATENT = "latent_predictor"
"""The name of η among the expanded variables (replaced by the effects after sampling)."""
LATENT_SD = "latent_sd"
"""The name of the SDs, one per term in term order, among the expanded variables (replaced by
``sd_<group>`` after sampling)."""

# After the population's fields: family and link codes, where η's coordinates begin, the number
# of nested factors, the observation-level term's column in the SDs, the offsets of the rows'
# sections, the factors' table (per factor, innermost first: its SD's column, its number of levels,
# where its levels begin among all factors' levels, where its parent map begins), and the
# number of all factors' levels.
(FAMILY, LINK, ETA_START, N_FACTORS, OBS_COLUMN, OFF_Y, OFF_WEIGHTS, OFF_OFFSET, OFF_X, OFF_FACTORS,
 N_LEVELS, HEADER) = range(POPULATION_HEADER, POPULATION_HEADER + 12)
FACTOR_FIELDS = 4


@dataclass(frozen=True)
class LatentStructure:
    """The terms of a design this sampler takes: the observation-level term and the nested factors.

    Attributes
    ----------
    observation
        The index of the observation-level term (one level per row).
    factors
        The other terms, innermost (most levels) first, each nested in the next.
    parents
        Per factor, the map from its children (the rows for the first, else the previous
        factor's levels) to its levels.
    row_levels
        Per factor, each row's level (factors x rows).
    """

    observation: int
    factors: tuple[int, ...]
    parents: tuple[np.ndarray, ...]
    row_levels: np.ndarray


def latent_structure(design) -> LatentStructure | str:
    """The :class:`LatentStructure` of ``design``, or why this sampler does not apply (a phrase)."""
    if not design.in_memory:
        return "it reads every row, and the design was built from dask or Parquet data"
    if design.family.has_sufficient_statistics:
        return "the Gaussian family with the identity link has a collapsed sampler of its own"
    rows, terms, n = design.rows, design.terms, design.n
    if len({t.group for t in terms}) != len(terms):
        return "a grouping factor has several terms"
    for k, term in enumerate(terms):
        if term.q != 1 or not np.all(rows.z[k] == 1.0):
            return f"the term on {term.group!r} is not an intercept (1 | {term.group})"
    observation = [k for k, t in enumerate(terms) if t.n_levels == n and np.unique(rows.codes[k]).size == n]
    if not observation:
        return "no term has one level per row (an observation-level effect, (1 | obs))"
    obs = observation[0]
    factors = sorted((k for k in range(len(terms)) if k != obs), key=lambda k: -terms[k].n_levels)
    parents, child_codes = [], np.arange(n)
    for k in factors:
        codes = rows.codes[k]
        parent = np.full(child_codes.max() + 1, -1, np.intp)
        parent[child_codes] = codes
        if not np.array_equal(parent[child_codes], codes):
            inner = "the rows" if not parents else repr(terms[factors[len(parents) - 1]].group)
            return f"{terms[k].group!r} does not nest {inner} (the factors must be nested in one another)"
        parents.append(parent)
        child_codes = codes
    row_levels = np.array([rows.codes[k] for k in factors], np.intp).reshape(len(factors), n)
    return LatentStructure(obs, tuple(factors), tuple(parents), row_levels)


def latent_applicable(design, priors: PriorSet) -> LatentStructure | str:
    """The :class:`LatentStructure` of ``design`` when this sampler can sample it with ``priors``;
    otherwise why not (a phrase)."""
    found = latent_structure(design)
    if not isinstance(found, str) and not natively_supported(priors):
        return "a prior has no native form (Normal, StudentT or Flat for the fixed effects; HalfNormal, " \
               "HalfStudentT or Exponential for the SDs and the dispersion)"
    return found


@njit(inline="always", error_model="numpy")
def _forward(e, v0, sd, blob, A, S, D):
    """The recursion of the module docstring from the rows up: A, S (per level of every factor,
    the children's sums) and D (d_l) filled; returns Σ_r e_r²/v₀ - Σ v_k S_l²/d_l and
    Σ log d_l (the quadratic form and the log-determinant of V, less n log v₀)."""
    n, nf = e.shape[0], int(blob[N_FACTORS])
    factors = matrix(blob, int(blob[OFF_FACTORS]), max(nf, 1), FACTOR_FIELDS)
    quad, logdet = 0.0, 0.0
    for r in range(n):
        quad += e[r] * e[r] / v0
    for i in range(nf):
        col, levels, at, pm = int(factors[i, 0]), int(factors[i, 1]), int(factors[i, 2]), int(factors[i, 3])
        v = sd[col] * sd[col]
        for level in range(levels):
            A[at + level] = 0.0
            S[at + level] = 0.0
        if i == 0:
            for r in range(n):
                level = at + int(blob[pm + r])
                A[level] += 1.0 / v0
                S[level] += e[r] / v0
        else:
            below, below_at = int(factors[i - 1, 1]), int(factors[i - 1, 2])
            for c in range(below):
                level = at + int(blob[pm + c])
                A[level] += A[below_at + c] / D[below_at + c]
                S[level] += S[below_at + c] / D[below_at + c]
        for level in range(at, at + levels):
            d = 1.0 + v * A[level]
            D[level] = d
            quad -= v * S[level] * S[level] / d
            logdet += np.log(d)
    return quad, logdet


@njit(inline="always", error_model="numpy")
def _marginal_backward(e, v0, sd, blob, A, S, D, gA, gS, g, d_C):
    """The gradient of -½ (quadratic form + log-determinant) (see :func:`_forward`, whose A, S and D
    it reads) in e (into ``g``) and in each factor's SD and the observation-level SD (into
    the diagonal of ``d_C``); gA and gS are scratch as long as A."""
    n, nf = e.shape[0], int(blob[N_FACTORS])
    factors = matrix(blob, int(blob[OFF_FACTORS]), max(nf, 1), FACTOR_FIELDS)
    total = int(blob[N_LEVELS])
    for level in range(total):
        gA[level] = 0.0
        gS[level] = 0.0
    for i in range(nf - 1, -1, -1):
        col, levels, at, pm = int(factors[i, 0]), int(factors[i, 1]), int(factors[i, 2]), int(factors[i, 3])
        v = sd[col] * sd[col]
        gv = 0.0
        for level in range(at, at + levels):  # f = -½ log d + ½ v S²/d, with A/d and S/d passed up
            a, s, d, ga, gs = A[level], S[level], D[level], gA[level], gS[level]
            gd = -0.5 / d - 0.5 * v * s * s / (d * d) - (ga * a + gs * s) / (d * d)
            gS[level] = v * s / d + gs / d
            gA[level] = ga / d + gd * v
            gv += 0.5 * s * s / d + gd * a
        d_C[col, col] += 2.0 * sd[col] * gv
        if i > 0:  # the sums' adjoints to the children's A/d and S/d
            below_at = int(factors[i - 1, 2])
            for c in range(int(factors[i - 1, 1])):
                gA[below_at + c] = gA[at + int(blob[pm + c])]
                gS[below_at + c] = gS[at + int(blob[pm + c])]
    gv0 = 0.0
    pm0, at0 = (int(factors[0, 3]), int(factors[0, 2])) if nf > 0 else (0, 0)
    for r in range(n):
        ga, gs = 0.0, 0.0
        if nf > 0:
            ga, gs = gA[at0 + int(blob[pm0 + r])], gS[at0 + int(blob[pm0 + r])]
        g[r] = (gs - e[r]) / v0
        gv0 += -0.5 / v0 + 0.5 * e[r] * e[r] / (v0 * v0) - (ga + gs * e[r]) / (v0 * v0)
    col0 = int(blob[OBS_COLUMN])
    d_C[col0, col0] += 2.0 * sd[col0] * gv0


@njit(inline="always", error_model="numpy")
def _log_density(x, blob, out, family, link):
    """The log posterior density at x (up to a constant), its gradient into ``out``."""
    p, q, n, total = int(blob[P]), int(blob[Q]), int(blob[ROWS]), int(blob[N_LEVELS])
    start = int(blob[ETA_START])
    workspace = np.empty(2 * p + q + 2 * q * q + 2 * n + 5 * total)
    beta, d_beta, sd = workspace[:p], workspace[p:2 * p], workspace[2 * p:2 * p + q]
    at = 2 * p + q
    R, d_C = matrix(workspace, at, q, q), matrix(workspace, at + q * q, q, q)
    at += 2 * q * q
    e, g = workspace[at:at + n], workspace[at + n:at + 2 * n]
    at += 2 * n
    A, S, D, gA, gS = (workspace[at:at + total], workspace[at + total:at + 2 * total],
                       workspace[at + 2 * total:at + 3 * total], workspace[at + 3 * total:at + 4 * total],
                       workspace[at + 4 * total:at + 5 * total])
    dispersion, lp = population_into(x, blob, beta, sd, R, out)
    if not np.isfinite(lp):
        return -np.inf
    for k in range(q):
        if not 0.0 < sd[k] < np.inf:
            return -np.inf
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR and not 0.0 < dispersion < np.inf:
        return -np.inf
    y, weights, offset = (blob[int(blob[OFF_Y]):int(blob[OFF_Y]) + n], blob[int(blob[OFF_WEIGHTS]):int(blob[OFF_WEIGHTS]) + n],
                          blob[int(blob[OFF_OFFSET]):int(blob[OFF_OFFSET]) + n])
    X = matrix(blob, int(blob[OFF_X]), n, p)
    d_dispersion = 0.0
    for r in range(n):
        value, slope, d_disp = log_density_row(family, link, y[r], x[start + r], weights[r], dispersion)
        lp += value
        d_dispersion += d_disp
        out[start + r] = slope
        e[r] = x[start + r] - offset[r]
    for j in range(p):
        b = beta[j]
        for r in range(n):
            e[r] -= X[r, j] * b
    v0 = sd[int(blob[OBS_COLUMN])] ** 2
    quad, logdet = _forward(e, v0, sd, blob, A, S, D)
    lp -= 0.5 * (n * np.log(v0) + logdet + quad)
    if not np.isfinite(lp):
        return -np.inf
    for i in range(q):
        for j in range(q):
            d_C[i, j] = 0.0
    _marginal_backward(e, v0, sd, blob, A, S, D, gA, gS, g, d_C)
    for r in range(n):
        out[start + r] += g[r]
    for j in range(p):
        value = 0.0
        for r in range(n):
            value -= g[r] * X[r, j]
        d_beta[j] = value
    chain_rule(x, blob, out, dispersion, sd, R, d_beta, d_C, d_dispersion)
    return lp


@njit(cache=True, error_model="numpy")
def expand(x, blob, out):
    """Fill out with β, the dispersion (if any), the SDs (one per term, in term order) and η."""
    p, q, n = int(blob[P]), int(blob[Q]), int(blob[ROWS])
    beta, dispersion, sd, _, _, _ = population(x, blob)
    k = 0
    for j in range(p):
        out[k] = beta[j]
        k += 1
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR:
        out[k] = dispersion
        k += 1
    for i in range(q):
        out[k] = sd[i]
        k += 1
    start = int(blob[ETA_START])
    for r in range(n):
        out[k] = x[start + r]
        k += 1


@njit(cache=True, error_model="numpy")
def draw_effects(e, sd, blob, row_levels, eps):
    """The effects of every factor and of the observation-level term, drawn exactly given the
    residuals e = η - X β - offset (draws x rows) and the SDs (draws x terms), with standard
    normals ``eps`` (draws x all factors' levels): per factor (draws x its levels, concatenated
    innermost first as the blob lays them out) and per row (the observation-level effects)."""
    n_draws, n = e.shape
    nf, total = int(blob[N_FACTORS]), int(blob[N_LEVELS])
    factors = matrix(blob, int(blob[OFF_FACTORS]), max(nf, 1), FACTOR_FIELDS)
    u = np.empty((n_draws, total))
    rest = np.empty((n_draws, n))
    A, S, D = np.empty(total), np.empty(total), np.empty(total)
    for s in range(n_draws):
        res = rest[s]
        for r in range(n):
            res[r] = e[s, r]
        v0 = sd[s, int(blob[OBS_COLUMN])] ** 2
        for i in range(nf - 1, -1, -1):  # outermost first: S from what the outer effects leave of e
            _forward(res, v0, sd[s], blob, A, S, D)
            col, levels, at = int(factors[i, 0]), int(factors[i, 1]), int(factors[i, 2])
            v = sd[s, col] ** 2
            for level in range(at, at + levels):
                u[s, level] = v * S[level] / D[level] + np.sqrt(v / D[level]) * eps[s, level]
            for r in range(n):
                res[r] -= u[s, at + row_levels[i, r]]
    return u, rest


@functools.cache
def log_density_kernel(family: int, link: int):
    """:func:`_log_density` compiled for one family and link (see
    :func:`bayesmix.bayes.full_density.log_density_kernel`)."""

    @njit(cache=True, error_model="numpy")
    def log_density(x, blob, out):
        return _log_density(x, blob, out, family, link)

    return log_density


def _expand_callback(dim, n_expanded, x_, out_, user_data):
    blob = blob_at(user_data)
    if dim != int(blob[N_DIM]) or n_expanded != int(blob[N_EXPANDED]):
        return -1
    expand(carray(x_, (dim,)), blob, carray(out_, (n_expanded,)))
    return 0


@functools.cache
def callbacks(family: int, link: int):
    """The C callbacks of the log density (for one family and link) and of the expansion,
    compiled on first use and cached on disk."""

    def logp_callback(dim, x_, out_, logp_, user_data):
        blob = blob_at(user_data)
        if dim != int(blob[N_DIM]) or int(blob[FAMILY]) != family or int(blob[LINK]) != link:
            return -1
        x = carray(x_, (dim,))
        out = carray(out_, (dim,))
        value = _log_density(x, blob, out, family, link)
        return logp_status(value, out, logp_)

    return cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")(logp_callback), _expand_cfunc()


@functools.cache
def _expand_cfunc():
    return cfunc(EXPAND_SIGNATURE, cache=True, error_model="numpy")(_expand_callback)


def pack(design, priors: PriorSet, labels: list[str], structure: LatentStructure) -> tuple[np.ndarray, list[Variable], int]:
    """The blob of ``design``'s collapsed model on its linear predictor, the expanded variables and
    the number of unconstrained coordinates."""
    rows, family = design.rows, design.family
    names = list(design.fixed_names)
    p, n, q = len(names), rows.n, len(design.terms)
    icpt = names.index("Intercept") if "Intercept" in names else -1
    population_part, n_population, _ = population_sections(design, priors, labels)
    variables = [Variable("beta", (p,), ("coef",))]
    if family.has_dispersion:
        variables.append(Variable(family.dispersion_name, (), ()))
    variables.append(Variable(LATENT_SD, (q,), ("latent_term",)))
    variables.append(Variable(LATENT, (n,), ("obs",)))
    n_expanded = sum(int(np.prod(v.shape)) for v in variables)
    n_dim = n_population + n
    fixed_sections = [
        *population_part, np.asarray(rows.y, float), np.ones(n) if rows.weights is None else np.asarray(rows.weights, float),
        np.zeros(n) if rows.offset is None else np.asarray(rows.offset, float), np.asarray(rows.X, float).ravel(),
    ]
    fixed_end = HEADER + sum(s.size for s in fixed_sections)
    table, maps, level_at, map_at = [], [], 0, fixed_end + FACTOR_FIELDS * max(len(structure.factors), 1)
    for k, parent in zip(structure.factors, structure.parents):
        table.append([float(k), float(design.terms[k].n_levels), float(level_at), float(map_at)])
        maps.append(np.asarray(parent, float))
        level_at += design.terms[k].n_levels
        map_at += parent.size
    sections = [*fixed_sections, np.ravel(np.asarray(table, float)) if table else np.zeros(FACTOR_FIELDS), *maps]
    offsets = HEADER + np.concatenate([[0], np.cumsum([s.size for s in sections])])
    header = [offsets[-1], p, q, 0, n, icpt, q, n_dim, n_expanded, *offsets[:5],
              family.code, family.link_code, n_population, len(structure.factors), structure.observation,
              *offsets[5:9], offsets[9], level_at]
    blob = np.concatenate([np.asarray(header, float), *sections])
    assert blob.size == offsets[-1] and len(header) == HEADER and offsets[9] == fixed_end
    return blob, variables, n_dim


def log_density(blob: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and benchmarks)."""
    out = np.empty(int(blob[N_DIM]))
    value = log_density_kernel(int(blob[FAMILY]), int(blob[LINK]))(np.asarray(x, float), blob, out)
    return value, out


@dataclass(frozen=True)
class LatentDensity(PackedDensity):
    """A GLMM with an observation-level effect, collapsed onto its linear predictor, ready for
    nutpie. ``with_data(y=...)`` returns the model for a new response."""

    structure: LatentStructure
    family: object
    centre: np.ndarray  # the population's start before jitter (:func:`_start`)

    def callbacks(self):
        """The C callbacks of the log density and of the expansion (see :func:`callbacks`)."""
        return callbacks(int(self.blob[FAMILY]), int(self.blob[LINK]))

    def compile(self) -> None:
        """Compile (once per installation) or load the callbacks and the effects' draws."""
        self.callbacks()
        n, q = int(self.blob[ROWS]), int(self.blob[Q])
        draw_effects(np.zeros((1, n)), np.ones((1, q)), self.blob, self.structure.row_levels,
                     np.zeros((1, int(self.blob[N_LEVELS]))))

    def with_data(self, **arrays) -> LatentDensity:
        """The same model with the response ``y`` replaced by the values the PyMC model observes
        (the binomial's successes, proportions of the trials here)."""
        blob = self.blob.copy()
        if "y" in arrays:
            n = int(blob[ROWS])
            y = np.asarray(arrays["y"], float).ravel()
            if int(blob[FAMILY]) == BINOMIAL_CODE:
                y = y / blob[int(blob[OFF_WEIGHTS]):int(blob[OFF_WEIGHTS]) + n]
            blob[int(blob[OFF_Y]):int(blob[OFF_Y]) + n] = y
            start = _start(self.centre, self.family, y, blob[int(blob[OFF_WEIGHTS]):int(blob[OFF_WEIGHTS]) + n])
            return dataclasses.replace(self, blob=blob, init=start)
        return dataclasses.replace(self, blob=blob)


def latent_density(design, priors: PriorSet, labels: list[str], coords: dict, structure: LatentStructure) -> LatentDensity:
    """The nutpie model of ``design`` collapsed onto its linear predictor (see the module docstring)."""
    blob, variables, n_dim = pack(design, priors, labels, structure)
    coords = {k: pd.Index(v) for k, v in coords.items()}
    coords["latent_term"] = pd.RangeIndex(len(design.terms))
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(n_dim)])
    centre = population_centre(design, priors, labels)
    init = _start(centre, design.family, design.rows.y, blob[int(blob[OFF_WEIGHTS]):int(blob[OFF_WEIGHTS]) + design.n])
    return LatentDensity(blob=blob, variables=variables, n_unconstrained=n_dim, coords=coords, init=init,
                         structure=structure, family=design.family, centre=centre)


def _start(centre: np.ndarray, family, y: np.ndarray, weights: np.ndarray):
    """seed -> a chain's start: the priors' centres and η at the link of the data (R's starting
    means, given the prior weights or trials), jittered by U(-1, 1)."""
    point = np.concatenate([centre, family.link_function(family.initial_mu(y, weights))])

    def init(seed):
        return point + np.random.default_rng(seed).uniform(-1.0, 1.0, point.size)

    return init


def add_effects(posterior: xr.Dataset, design, layouts, density: LatentDensity, seed: int | None) -> xr.Dataset:
    """``posterior`` with η (``latent_predictor``) and the SDs per term replaced by the full model's
    variables: ``sd_<group>`` and the effects ``u_<group>``, drawn exactly given each draw
    (:func:`draw_effects`), in the full model's order."""
    rows, structure, blob = design.rows, density.structure, density.blob
    n_chains, n_draws = posterior.sizes["chain"], posterior.sizes["draw"]
    eta = posterior[LATENT].transpose("chain", "draw", "obs").values.reshape(n_chains * n_draws, -1)
    beta = posterior["beta"].transpose("chain", "draw", "coef").values.reshape(n_chains * n_draws, -1)
    sd = np.ascontiguousarray(posterior[LATENT_SD].transpose("chain", "draw", "latent_term").values.reshape(n_chains * n_draws, -1))
    e = eta - beta @ np.asarray(rows.X, float).T - (0.0 if rows.offset is None else rows.offset)
    rng = np.random.default_rng(None if seed is None else [seed, 1])
    u, rest = draw_effects(np.ascontiguousarray(e), sd, blob, structure.row_levels,
                           rng.standard_normal((e.shape[0], int(blob[N_LEVELS]))))
    effects = {structure.observation: np.empty_like(rest)}
    effects[structure.observation][:, rows.codes[structure.observation]] = rest
    at = 0
    for k in structure.factors:
        effects[k] = u[:, at:at + design.terms[k].n_levels]
        at += design.terms[k].n_levels
    out = posterior.drop_vars([LATENT, LATENT_SD])
    population_names = list(out.data_vars)
    added = {}
    for k, (term, layout) in enumerate(zip(design.terms, layouts)):
        effect, level = f"{layout.name}_effect", f"{layout.name}_level"
        added[f"sd_{layout.name}"] = xr.DataArray(sd[:, k].reshape(n_chains, n_draws, 1), dims=("chain", "draw", effect),
                                                  coords={effect: layout.effects})
        added[f"u_{layout.name}"] = xr.DataArray(effects[k].reshape(n_chains, n_draws, -1, 1),
                                                 dims=("chain", "draw", level, effect),
                                                 coords={level: layout.levels, effect: layout.effects})
    ordered = xr.Dataset({**{name: out[name] for name in population_names}, **added}, attrs=out.attrs)
    return ordered.assign_coords({c: out.coords[c] for c in out.coords if c not in ordered.coords})
