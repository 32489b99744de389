"""The partially collapsed sampler for several grouping factors (Gaussian family, identity
link): the random effects of the first grouping factor (the one with the most levels)
integrated out, those of the other factors sampled by NUTS with β, σ, the SDs and the
correlations, then the first factor's effects drawn exactly for every draw.

Why: the fully collapsed density (:mod:`bayesmix.bayes.collapsed_factors`) integrates every
factor out through the blocked factor, whose dense block has one row per effect of the
factors after the first (m of them): its Cholesky factor and inverse cost O(m³) per
evaluation, about 76 ms for InstEval's m = 1,156. Integrating out the first factor alone
keeps only its per-level blocks (q₁ x q₁), and costs two passes over the rows.

Given the sampled effects b_k (k ≥ 2), r = y - Xβ - Σ_k Z_k b_k, and per level j of the first
factor the rows' marginal is r_j ~ N(0, σ² I + Z_j C C' Z_j'), C the factor's Cholesky factor
of its effects' covariance (block-diagonal over its terms). This is the one-factor collapsed
likelihood of :mod:`bayesmix.linalg.collapsed` with no fixed effects and response r: with
A_j = Z_j'Z_j (formed once), s_j = Z_j'r_j, T = C/σ, M_j = T'A_jT + I and g_j = M_j⁻¹T's_j,

    log p(r | C, σ) = -½ [ n log(2πσ²) + Σ_j log|M_j| + (r'r - Σ_j s_j'T g_j) / σ² ],

and its derivative in r_i is -(r_i - z_i'T g_j)/σ² (T g_j is E[b_j | r]), which the rows
carry to β and to the sampled effects. An evaluation: one pass over the rows (r, r'r and the
s_j), the per-level algebra (:func:`~bayesmix.linalg.collapsed.collapsed_loglik_body`), one
pass back (the gradient), then the priors of the sampled effects and the chain rule of the
full density (:mod:`bayesmix.bayes.full_density`, whose blob this density reads: its
coordinates are the full model's without the first factor's). The sampled factors are
centred or non-centred as the full model chooses (:mod:`bayesmix.bayes.parameterization`);
the first factor's terms are non-centred in the blob, so that its coordinates at zero
contribute nothing.

For each posterior draw the first factor's effects are drawn exactly, per level
b_j = T v_j with v_j ~ N(g_j, σ² M_j⁻¹) (:func:`~bayesmix.linalg.collapsed.conditional_spherical`),
and reported with the others as the full model reports them.

The kernels are compiled once per installation (numba's disk cache) and release the GIL, so
nutpie's chains (:func:`bayesmix.bayes.nutpie_adapter.python_model`) evaluate in parallel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.layout import GroupLayout, Structure
from ..errors import BayesmixWarning, FitError, warn
from ..jit import njit
from ..linalg.factorization import available_memory, dense_block_bytes
from ..linalg.collapsed import collapsed_loglik_body, conditional_spherical, spherical_workspace
from .collapsed_factors import ChainFunctions
from .density import ROWS, ThetaMap, Variable, chain_rule, population
from .full_density import (N_DIM, OFF_Y, Z_START, effects_backward, full_density, named_variables, predictor,
                           predictor_backward, row_layout, term_effects, term_levels)
from .priors import PriorSet

COLLAPSE = ("auto", "all", "largest")
"""What ``method="collapsed"`` integrates out with several grouping factors (``collapse=``)."""

DENSE_BLOCK_LIMIT = 1000
"""``collapse="auto"`` integrates out the first factor only when the dense block of the fully
collapsed density (one row per effect of the factors after the first) has more rows than
this (see :func:`collapse_choice`). Measured (benchmarks/RESULTS.md, "The partially collapsed
sampler"): with m = 100 (20,000 rows, 300 x 100 crossed levels) the fully collapsed sampler
gave 25x the partially collapsed one's minimum ESS per second (each evaluation 6x dearer, but
3.2 leapfrog steps per draw against 7 and ESS 6,568 against 78: the sampled effects share a
direction, their common level, that the integrated factor's effects absorb and a diagonal mass
matrix does not follow); with m = 1,156 (InstEval) the two gave about the same ESS per CPU
second (evaluations 48x cheaper, 15 steps per draw against 4.9) and the partially collapsed
one 4 x 1,000 draws in minutes rather than the better part of an hour. The crossover lies
near m = 1,000, where the dense block's O(m³) algebra overtakes the sparse passes."""


def check_dense_block(design, structure: Structure) -> None:
    """Before the fully collapsed density is built: a :class:`~bayesmix.BayesmixWarning` when
    its dense block has more than :data:`DENSE_BLOCK_LIMIT` rows (m³/3 flops for its factor and
    twice that for its inverse, in every evaluation), and a :class:`~bayesmix.FitError` when the
    block and its factor and inverse would not fit in memory; both name the alternatives."""
    m = structure.dense_block_size
    if m <= DENSE_BLOCK_LIMIT:
        return
    alternatives = ("collapse='largest' (the first factor integrated out, the others sampled) or method='full'"
                    if design.in_memory else
                    "fit_reml(), or the rows as a pandas DataFrame (then collapse='largest' or method='full'): this "
                    "design was built from dask or Parquet data, for which only the fully collapsed density applies")
    need = dense_block_bytes(m)
    if need > available_memory():
        raise FitError(f"The fully collapsed density factors a dense block of {m} x {m} in every evaluation "
                       f"({need / 2**20:,.0f} MiB for it, its factor and its inverse), more than this machine's "
                       f"{available_memory() / 2**20:,.0f} MiB: "
                       f"use {alternatives}.")
    warn(BayesmixWarning(f"The fully collapsed density factors a dense block of {m} x {m} in every evaluation (about "
                         f"{m**3 / 1e9:.1f} GFLOP): thousands of evaluations take long. Usually much faster: {alternatives}."))


def collapse_choice(design, structure: Structure) -> str:
    """What ``collapse="auto"`` integrates out: ``"largest"`` (the first factor only) for a
    design with rows in memory whose dense block has more than :data:`DENSE_BLOCK_LIMIT` rows,
    else ``"all"``."""
    return "largest" if design.in_memory and structure.dense_block_size > DENSE_BLOCK_LIMIT else "all"


@njit(cache=True, nogil=True, error_model="numpy")
def _residuals(x, blob, kept, first, level_start):
    """The full model's coordinates (the first factor's at 0), the population part at them, the
    effects, and the residuals r = y - Xβ - Σ_{k≥2} Z_k b_k with per level s_j = Z_j'r_j
    (levels x q₁ x 1) and r'r; C₁, the first factor's Cholesky factor; whether the point is in
    the support (in floating point)."""
    x_full = np.zeros(int(blob[N_DIM]))
    for i in range(kept.shape[0]):
        x_full[kept[i]] = x[i]
    beta, sigma, sd, R, lp, grad = population(x_full, blob)
    valid = np.isfinite(lp) and 0.0 < sigma < np.inf
    for k in range(sd.shape[0]):
        valid = valid and 0.0 < sd[k] < np.inf
    u, z, _ = term_effects(x_full, blob, beta, sd, R)
    n, q1, n_levels = int(blob[ROWS]), first.shape[0], level_start.shape[0] - 1
    y = blob[int(blob[OFF_Y]):int(blob[OFF_Y]) + n]
    X, Z, codes, qks, cols, starts, unit = row_layout(blob)
    r = np.empty(n)
    s = np.zeros((n_levels, q1, 1))
    rss = 0.0
    for j in range(n_levels):
        for i in range(level_start[j], level_start[j + 1]):
            e = y[i] - predictor(i, 0.0, X, beta, Z, codes, u, qks, cols, starts, unit)
            r[i] = e
            rss += e * e
            for a in range(q1):
                s[j, a, 0] += Z[i, first[a]] * e
    C1 = np.empty((q1, q1))
    for a in range(q1):
        for b in range(q1):
            C1[a, b] = sd[first[a]] * R[first[a], first[b]]
    return x_full, beta, sigma, sd, R, lp, grad, u, z, r, s, rss, C1, valid


@njit(cache=True, nogil=True, error_model="numpy")
def log_density_kernel(x, blob, kept, first, level_start, A1):
    """The log posterior density at x (up to a constant) and its exact gradient, in one
    compiled call that releases the GIL (see the module docstring).

    ``kept``: the full model's coordinates that x holds; ``first``: the columns of C (and of
    the rows' Z) of the first factor's effects; ``level_start``: where each of its levels'
    rows begin (the rows sorted by its level); ``A1``: Z_j'Z_j per level. -inf and a zero
    gradient outside the support in floating point."""
    x_full, beta, sigma, sd, R, lp, grad, u, z, r, s, rss, C1, valid = _residuals(x, blob, kept, first, level_start)
    out = np.zeros(kept.shape[0])
    if not valid:
        return -np.inf, out
    n_levels, q1 = A1.shape[0], A1.shape[1]
    modes = np.empty((n_levels, q1))
    value, _, d_C1, d_sigma = collapsed_loglik_body(np.empty(0), C1, sigma, A1, s, np.full((1, 1), rss), blob[ROWS],
                                                    True, q1, modes)
    if not np.isfinite(value):
        return -np.inf, out
    X, Z, codes, qks, cols, starts, unit = row_layout(blob)
    d_u = np.zeros(u.shape[0])
    d_beta = np.zeros(beta.shape[0])
    s2 = sigma * sigma
    for j in range(n_levels):  # the derivative in η_i: (r_i - z_i'T g_j) / σ²
        for i in range(level_start[j], level_start[j + 1]):
            e = r[i]
            for a in range(q1):
                e -= Z[i, first[a]] * modes[j, a]
            predictor_backward(i, e / s2, X, Z, codes, qks, cols, starts, unit, d_beta, d_u)
    prior, d_C = effects_backward(0.0, blob, u, z, d_u, grad, sd, R, d_beta)
    for a in range(q1):
        for b in range(q1):
            d_C[first[a], first[b]] += d_C1[a, b]
    chain_rule(x_full, blob, grad, sigma, sd, R, d_beta, d_C, d_sigma)
    value += lp + prior
    for i in range(kept.shape[0]):
        out[i] = grad[kept[i]]
        if not np.isfinite(out[i]):
            return -np.inf, np.zeros(kept.shape[0])
    if not np.isfinite(value):
        return -np.inf, np.zeros(kept.shape[0])
    return value, out


@njit(cache=True, nogil=True, error_model="numpy")
def draw_kernel(x, blob, kept, slots, first, level_start, A1, eps):
    """The full model's coordinates at x with the first factor's drawn exactly given the
    standard normals ``eps`` (levels x q₁): per level z_j = v_j / σ, v_j = g_j + σ L_j⁻ᵀ ε_j,
    so that b_j = C z_j ~ N(T g_j, σ² T M_j⁻¹ T'). ``slots``: the first factor's coordinates
    in the full model's (levels x q₁)."""
    x_full, _, sigma, _, _, _, _, _, _, _, s, _, C1, _ = _residuals(x, blob, kept, first, level_start)
    q1 = first.shape[0]
    T = C1 / sigma
    work = spherical_workspace(q1)
    v = np.empty(q1)
    for j in range(A1.shape[0]):
        conditional_spherical(T, A1[j], s[j, :, 0].copy(), sigma, eps[j], v, work, q1)
        for a in range(q1):
            x_full[slots[j, a]] = v[a] / sigma
    return x_full


@dataclass(frozen=True, eq=False)
class PartiallyCollapsedDensity(ChainFunctions):
    """The posterior of a Gaussian model with several grouping factors with the first factor's
    effects integrated out, ready for nutpie (see the module docstring).

    Attributes
    ----------
    blob
        The full density's blob (:func:`bayesmix.bayes.full_density.pack`) of the design with
        its rows sorted by the first factor's level, that factor's terms non-centred.
    variables
        The expanded variables (the full model's).
    coords
        The posterior's coordinates.
    kept
        The full model's coordinates that this density's hold, in order.
    slots
        The first factor's coordinates in the full model's (levels x q₁, in the factor
        block's order of effects).
    first
        The columns of C (and of the rows' Z) of the first factor's effects.
    level_start
        Where each level's rows begin among the sorted rows (levels + 1).
    A1
        Z_j'Z_j per level of the first factor (levels x q₁ x q₁).
    order
        The sorted rows' positions in the design.
    init
        seed -> initial point.
    """

    blob: np.ndarray
    variables: list[Variable]
    coords: dict
    kept: np.ndarray
    slots: np.ndarray
    first: np.ndarray
    level_start: np.ndarray
    A1: np.ndarray
    order: np.ndarray
    init: object

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates NUTS samples (the full model's without the first factor's)."""
        return int(self.kept.size)

    def log_density(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The log posterior density at x (up to a constant) and its exact gradient."""
        return log_density_kernel(np.asarray(x, float), self.blob, self.kept, self.first, self.level_start, self.A1)

    def full_coordinates(self, x: np.ndarray, eps: np.ndarray) -> np.ndarray:
        """The full model's coordinates at x with the first factor's drawn given the standard
        normals ``eps`` (levels x q₁): :func:`draw_kernel`."""
        return draw_kernel(np.asarray(x, float), self.blob, self.kept, self.slots, self.first, self.level_start,
                           self.A1, np.asarray(eps, float))

    def draw(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The posterior variables at the draw x, the first factor's effects drawn exactly given it."""
        return named_variables(self.blob, self.variables, self.full_coordinates(x, rng.standard_normal(self.slots.shape)))

    def compile(self) -> None:
        """Load (or compile, once per installation) the numba kernels this density calls."""
        x = self.init(0)
        self.log_density(x)
        self.draw(x, np.random.default_rng(0))

    def with_data(self, y: np.ndarray | None = None) -> PartiallyCollapsedDensity:
        """The same model with the (standardised) response ``y``, in the design's row order."""
        if y is None:
            return self
        blob = self.blob.copy()
        start = int(blob[OFF_Y])
        blob[start:start + self.order.size] = np.asarray(y, float).ravel()[self.order]
        return dataclasses.replace(self, blob=blob)


def partially_collapsed_density(design, structure: Structure, priors: PriorSet, labels: list[str],
                                layouts: list[GroupLayout], coords: dict, centred: tuple[bool, ...]
                                ) -> PartiallyCollapsedDensity:
    """The nutpie model of the posterior of ``design`` (rows in memory) with the effects of
    ``structure``'s first factor block integrated out; the other terms centred where
    ``centred`` says so (the first block's terms are non-centred: see the module docstring)."""
    block = structure.blocks[0]
    centred = tuple(c and k not in block.terms for k, c in enumerate(centred))
    order = np.argsort(block.codes, kind="stable")
    rows = design.rows
    assert rows.weights is None and rows.offset is None
    sorted_rows = dataclasses.replace(rows, X=rows.X[order], codes=tuple(c[order] for c in rows.codes),
                                      z=tuple(z[order] for z in rows.z), index=rows.index[order], y=rows.y[order],
                                      frame=None)
    full = full_density(dataclasses.replace(design, source=sorted_rows), priors, labels, layouts, coords, centred)
    blob = full.blob
    first = ThetaMap.of(design, structure).columns[0].astype(np.int64)
    levels = term_levels(blob)
    slots = np.empty((block.n_levels, block.q), np.int64)
    at_level = np.arange(block.n_levels)[:, None]
    for t, columns in zip(block.terms, block.term_slices):
        q_t = design.terms[t].q
        slots[:, columns] = int(blob[Z_START]) + int(levels[t, 1]) + at_level * q_t + np.arange(q_t)
    kept = np.setdiff1d(np.arange(int(blob[N_DIM])), slots.ravel())
    codes = block.codes[order]
    level_start = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=block.n_levels))]).astype(np.int64)
    z1 = block.z[order]
    A1 = np.stack([np.bincount(codes, weights=z1[:, a] * z1[:, b], minlength=block.n_levels)
                   for a in range(block.q) for b in range(block.q)], axis=1).reshape(block.n_levels, block.q, block.q)
    coords = dict(full.coords)
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(kept.size)])
    return PartiallyCollapsedDensity(blob, full.variables, coords, kept, slots, first, level_start, A1, order,
                                     lambda seed: full.init(seed)[kept])
