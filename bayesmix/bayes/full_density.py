"""The full model's log posterior density, compiled once and for all, handed to nutpie.

The same model as :func:`bayesmix.bayes.builder.build_model`, each term non-centred or centred
as chosen per term, for every family
and link and any number of grouping factors, written as numba C callbacks that read every
model-specific number (sizes, priors, the rows, which terms are centred) from one float64 array, the *blob*, as the
collapsed density does (:mod:`bayesmix.bayes.density`, whose population part, i.e. the fixed
effects, the dispersion, the SDs and the correlations with their priors and transforms, this
module shares). Nothing is compiled per model: building one is packing an array, and numba
caches the callbacks on disk once per installation.

Unconstrained coordinates, in order:

- those of :func:`bayesmix.bayes.density.population`: θ_b (p), the log of the family's
  dispersion (σ for the Gaussian, θ for the negative binomial; none for the binomial and
  the Poisson), and per term the log SDs and the canonical partial correlations;
- per term t, ℓ_t levels x q_t, row-major: the standard normal z_t of a non-centred term, or the
  coefficients θ_t of a centred one (or, for a scalar term partially non-centred with weight w,
  z_t ~ N(0, sd_t^(2w)) with u_t = sd_t^(1-w) z_t: Papaspiliopoulos, Roberts and Sköld 2007).

The effects are u_t = z_t (diag(sd_t) L_t)' (non-centred) or u_t = θ_t - m_t - a_t (centred,
hierarchically: m_t holds, per level and column, the fixed effect of the identical column of X
(:func:`shared_columns`), for the intercept those of every column of X constant within the
level, or 0; a_t the effects of the ancestors, the terms whose factors nest the term's, i.e. its
parent's effects plus the parent's a: :func:`bayesmix.bayes.parameterization.hierarchy`; terms
are evaluated parents first and differentiated children first), the linear predictor
η = X β + Σ_t Σ_j Z_tj(row) u_t[level(row), j] + offset, and the log-likelihood is
:func:`bayesmix.families.log_density_row` of each row (the one compiled home of each family's
log-likelihood in η). The density is the log-likelihood plus the priors and log-Jacobians of
the population part plus, per term, -½ Σ z² (non-centred) or Σ_levels log N(θ | m + a, C C'),
C = diag(sd) L (centred): the PyMC model's (with the transform of the correlations
Stan's rather than PyMC's, so the two agree as densities of the constrained parameters) up
to a constant. Its gradient is exact (reverse mode by hand: rows -> η -> β and u ->
z or θ, m, a and C = diag(sd) L -> the population's coordinates and the ancestors' effects).

An evaluation allocates one workspace for every intermediate array and reads the blob through
views, terms of one column as scalars and the rows column by column (see ``benchmarks/RESULTS.md``,
"A cheaper evaluation of the full density", for what each saved).

The posterior variables are the PyMC model's (``beta``, ``sigma`` or ``shape``, ``sd_<group>``,
``cor_<group>``, ``u_<group>``), so that results do not depend on which sampler ran.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import carray

from ..jit import cfunc, njit
from ..families import BINOMIAL_CODE, log_density_row
from ..data.design import Rows
from ..data.layout import GroupLayout
from .density import (
    EXPAND_SIGNATURE, logp_status, INTERCEPT, LOGP_SIGNATURE, N_DIM, N_EXPANDED, NO_PRIOR, PackedDensity, OFF_SIGMA_PRIOR, OFF_TERMS, P, POPULATION_HEADER, Q, ROWS, TERMS, Variable, blob_at, chain_rule, matrix, natively_supported, population, population_centre, population_into, population_sections,
)
from .parameterization import hierarchy
from .priors import PriorSet

__all__ = ["FullDensity", "N_EFFECTS", "effect_coordinates", "expanded", "full_density", "natively_supported", "pack", "term_levels"]

# The header after the population's fields: the family and link codes, where the coordinates
# of the effects begin, how many there are, then the offset of each section.
(FAMILY, LINK, Z_START, N_EFFECTS, OFF_Y, OFF_WEIGHTS, OFF_OFFSET, OFF_X, OFF_Z, OFF_CODES,
 OFF_LEVELS, OFF_PLAN, OFF_SHARED, OFF_PARENT_COLUMNS, OFF_LEVEL_ROWS, OFF_CONSTANT, OFF_ORDER, PLAN_ROWS,
 HEADER) = range(POPULATION_HEADER, POPULATION_HEADER + 19)

# Per term, in the levels section: its number of levels, where its coordinates begin, whether
# it is a term of one column of ones, whether it is centred, its parent term (or -1), where its
# levels begin in the level-rows section (which holds, per level of every term, where the
# effects of its parent's level begin, or -1, then the level's row of X), and the weight w of
# its partial non-centring (0: non-centred; scalar non-centred terms only).
LEVEL_FIELDS = 7

# What each row of the expansion plan copies into the expanded variables (after β and the dispersion).
PLAN_SD, PLAN_COR, PLAN_EFFECT = 0.0, 1.0, 2.0


@njit(cache=True, error_model="numpy")
def _section(blob, offset, size):
    start = int(blob[offset])
    return blob[start:start + size]


@njit(cache=True, error_model="numpy")
def _term_order(blob):
    """The terms, each after its parent (which has fewer levels): pack's order, by number of levels."""
    return _section(blob, OFF_ORDER, int(blob[TERMS]))


@njit(cache=True, error_model="numpy")
def _hierarchy(blob):
    """The sections a centred term's mean reads: per column the identical column of X (or -1)
    and the parent's matching column (or -1), the level rows (per level of every term: where its
    parent level's effects begin, then its row of X), and per term the columns of X constant
    within its levels (terms x p)."""
    q, nterms, p = int(blob[Q]), int(blob[TERMS]), int(blob[P])
    level_rows = matrix(blob, int(blob[OFF_LEVEL_ROWS]), (int(blob[OFF_CONSTANT]) - int(blob[OFF_LEVEL_ROWS])) // (p + 1), p + 1)
    constant = matrix(blob, int(blob[OFF_CONSTANT]), nterms, p)
    return _section(blob, OFF_SHARED, q), _section(blob, OFF_PARENT_COLUMNS, q), level_rows, constant


@njit(cache=True, error_model="numpy")
def term_effects(x, blob, beta, sd, R):
    """u (the effects of every term, laid out as their coordinates) at x, the coordinates
    themselves, and a, per level and column the sum of its ancestors' effects: z (non-centred
    terms, u = z (diag(sd) R)' per level) or θ (centred terms, u = θ - m - a per level, m the
    fixed effects of the term's shared columns and, for its intercept, of the columns constant
    within the level). :func:`effects_into` into new arrays."""
    z = x[int(blob[Z_START]):]
    u, a = np.empty(z.shape[0]), np.empty(z.shape[0])
    effects_into(z, blob, beta, sd, R, u, a)
    return u, z, a


@njit(cache=True, error_model="numpy")
def effects_into(z, blob, beta, sd, R, u, a):
    """Fill u and a (see :func:`term_effects`) from the effects' coordinates z, terms parents
    first; nothing allocated."""
    nterms, icpt = int(blob[TERMS]), int(blob[INTERCEPT])
    levels = matrix(blob, int(blob[OFF_LEVELS]), nterms, LEVEL_FIELDS)
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    shared, parent_columns, level_rows, constant = _hierarchy(blob)
    order = _term_order(blob)
    for o in range(nterms):
        t = int(order[o])
        qk, col, n_levels, at = int(tspec[t, 0]), int(tspec[t, 3]), int(levels[t, 0]), int(levels[t, 1])
        centred, rows_at = levels[t, 3] > 0, int(levels[t, 5])
        if qk == 1:  # one column (the common (1 | g)): the same sums as below, as scalars
            pc, j = int(parent_columns[col]), int(shared[col])
            scale = _noncentred_scale(sd[col] * R[col, col], levels[t, 6])
            for level in range(n_levels):
                r = rows_at + level
                base = at + level
                av = 0.0
                if pc >= 0:
                    pbase = int(level_rows[r, 0])
                    av = u[pbase + pc] + a[pbase + pc]
                a[base] = av
                if centred:
                    mean = 0.0 if j < 0 else (_constant_mean(level_rows, r, beta, constant, t) if j == icpt else beta[j])
                    u[base] = z[base] - mean - av
                else:
                    u[base] = scale * z[base]
            continue
        for level in range(n_levels):
            base = at + level * qk
            r = rows_at + level
            for i in range(qk):  # a: the parent's effects plus its own a, per matched column (-1 without a parent)
                pc = int(parent_columns[col + i])
                if pc >= 0:
                    pbase = int(level_rows[r, 0])
                    a[base + i] = u[pbase + pc] + a[pbase + pc]
                else:
                    a[base + i] = 0.0
            if centred:  # the mean: β of the identical column of X, for the intercept the constant columns'
                for i in range(qk):
                    j = int(shared[col + i])
                    mean = 0.0 if j < 0 else (_constant_mean(level_rows, r, beta, constant, t) if j == icpt else beta[j])
                    u[base + i] = z[base + i] - mean - a[base + i]
            else:
                for i in range(qk):
                    value = 0.0
                    for j in range(i + 1):
                        value += z[base + j] * R[col + i, col + j]
                    u[base + i] = sd[col + i] * value


@njit(inline="always", error_model="numpy")
def _noncentred_scale(C, w):
    """u = C^(1-w) z for a scalar non-centred term with C = sd (partial non-centring of weight w,
    Papaspiliopoulos, Roberts and Sköld 2007: z ~ N(0, C^(2w)); w = 0 is the non-centred form)."""
    return C if w == 0.0 else C ** (1.0 - w)


@njit(inline="always", error_model="numpy")
def _constant_mean(level_rows, r, beta, constant, t):
    """Σ_k X[r, k] β_k over the columns k constant within term t's levels (r: the level's row
    in the level-rows section): what joins the mean of a centred term's intercept."""
    value = 0.0
    for k in range(beta.shape[0]):
        value += level_rows[r, 1 + k] * (beta[k] * constant[t, k])
    return value


@njit(inline="always", error_model="numpy")
def c_solve(sd, R, col, qk, rhs, rhs_at, out, out_at):
    """One level's C out = rhs (C = diag(sd) R, the term's columns from ``col``: lower
    triangular), rhs and out from the offsets given."""
    for i in range(qk):
        value = rhs[rhs_at + i]
        for j in range(i):
            value -= sd[col + i] * R[col + i, col + j] * out[out_at + j]
        out[out_at + i] = value / (sd[col + i] * R[col + i, col + i])


@njit(inline="always", error_model="numpy")
def c_transpose_solve(sd, R, col, qk, rhs, rhs_at, out, out_at):
    """One level's C' out = rhs (see :func:`c_solve`)."""
    for i in range(qk - 1, -1, -1):
        value = rhs[rhs_at + i]
        for j in range(i + 1, qk):
            value -= sd[col + j] * R[col + j, col + i] * out[out_at + j]
        out[out_at + i] = value / (sd[col + i] * R[col + i, col + i])


@njit(inline="always", error_model="numpy")
def _centred_level(lp, u, base, qk, col, sd, R, w, v):
    """``lp`` plus a centred level's prior, -½|w|² up to a constant, with w = C⁻¹ u (C = diag(sd) R,
    in ``w``) and v = C⁻ᵀ w (in ``v``): the prior's derivative is -v in u and v_i w_j in C_ij
    (with -ℓ / C_ii per term: see :func:`effects_backward_into`)."""
    c_solve(sd, R, col, qk, u, base, w, 0)
    c_transpose_solve(sd, R, col, qk, w, 0, v, 0)
    for i in range(qk):
        lp -= 0.5 * w[i] * w[i]
    return lp


@njit(cache=True, error_model="numpy")
def row_layout(blob):
    """X, Z (every term's columns) and the codes of the rows, and per term its number of
    columns, its first column in Z, where its effects begin, and whether it is a term of one
    column of ones (``(1 | g)``: no multiplications; 1.0 or 0.0): views of the blob, the per-term
    ones of whole numbers as floats."""
    p, q, nterms, n = int(blob[P]), int(blob[Q]), int(blob[TERMS]), int(blob[ROWS])
    X = matrix(blob, int(blob[OFF_X]), n, p)
    Z = matrix(blob, int(blob[OFF_Z]), n, q)
    codes = matrix(blob, int(blob[OFF_CODES]), n, nterms)
    levels = matrix(blob, int(blob[OFF_LEVELS]), nterms, LEVEL_FIELDS)
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    return X, Z, codes, tspec[:, 0], tspec[:, 3], levels[:, 1], levels[:, 2]


@njit(cache=True, error_model="numpy")
def linear_predictors(eta, offset, X, beta, Z, codes, u, qks, cols, starts, unit):
    """Every row's linear predictor into ``eta``: the offset + X_r β + Σ_t Z_tr u_t[level], added
    column by column in that order, in loops without dependences from row to row."""
    n = eta.shape[0]
    for r in range(n):
        eta[r] = offset[r]
    for j in range(beta.shape[0]):
        b = beta[j]
        for r in range(n):
            eta[r] += X[r, j] * b
    for t in range(qks.shape[0]):
        qk, col, start = int(qks[t]), int(cols[t]), int(starts[t])
        if unit[t] > 0:
            for r in range(n):
                eta[r] += u[start + int(codes[r, t])]
        else:
            for r in range(n):
                base = start + int(codes[r, t]) * qk
                for i in range(qk):
                    eta[r] += Z[r, col + i] * u[base + i]


@njit(cache=True, error_model="numpy")
def linear_predictors_backward(slope, X, Z, codes, qks, cols, starts, unit, d_beta, d_u):
    """Add the derivatives ``slope`` in every row's linear predictor to those in β and in the
    effects u, column by column (each sum over the rows in row order), β's in registers."""
    n = slope.shape[0]
    for j in range(d_beta.shape[0]):
        value = d_beta[j]
        for r in range(n):
            value += slope[r] * X[r, j]
        d_beta[j] = value
    for t in range(qks.shape[0]):
        qk, col, start = int(qks[t]), int(cols[t]), int(starts[t])
        if unit[t] > 0:
            for r in range(n):
                d_u[start + int(codes[r, t])] += slope[r]
        else:
            for r in range(n):
                base = start + int(codes[r, t]) * qk
                for i in range(qk):
                    d_u[base + i] += slope[r] * Z[r, col + i]


@njit(cache=True, error_model="numpy")
def effects_backward(lp, blob, u, z, d_u, grad, sd, R, d_beta):
    """``lp`` plus the effects' priors, returned with d_C, the gradient in C = diag(sd) R:
    :func:`effects_backward_into` with new arrays."""
    q, n = int(blob[Q]), u.shape[0]
    d_C = np.empty((q, q))
    workspace = np.empty(2 * n + 2 * q)
    lp = effects_backward_into(lp, blob, u, z, d_u, grad, sd, R, d_beta, d_C, workspace[:n], workspace[n:2 * n],
                               workspace[2 * n:2 * n + q], workspace[2 * n + q:])
    return lp, d_C


@njit(cache=True, error_model="numpy")
def effects_backward_into(lp, blob, u, z, d_u, grad, sd, R, d_beta, d_C, d_mean, d_a, w, v):
    """``lp`` plus the effects' priors (-½ Σ z² for a non-centred term, Σ_levels log N(θ | m + a,
    C C') for a centred one, terms children first), returned; d_C, the gradient in
    C = diag(sd) R, filled; the likelihood's gradient in the effects (``d_u``) carried to their
    coordinates (into ``grad``), to C and, through the centred terms' means, to β (into
    ``d_beta``) and to the ancestors' effects. ``d_mean`` (in a centred intercept's mean), ``d_a``
    (in a, from the terms nested in a term), both as long as u, and ``w`` and ``v`` (q) are
    scratch; nothing allocated.

    A centred level's prior is -½|w|² - Σ_i log C_ii with w = C⁻¹ u and v = C⁻ᵀ w
    (:func:`_centred_level`), whose derivatives are -v in u and v_i w_j - [i = j] / C_ii in C_ij."""
    q, nterms, start, icpt = int(blob[Q]), int(blob[TERMS]), int(blob[Z_START]), int(blob[INTERCEPT])
    levels = matrix(blob, int(blob[OFF_LEVELS]), nterms, LEVEL_FIELDS)
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    shared, parent_columns, level_rows, constant = _hierarchy(blob)
    order = _term_order(blob)
    for i in range(q):
        for j in range(q):
            d_C[i, j] = 0.0
    for i in range(d_a.shape[0]):
        d_a[i] = 0.0
    for o in range(nterms - 1, -1, -1):
        t = int(order[o])
        qk, col, n_levels, at = int(tspec[t, 0]), int(tspec[t, 3]), int(levels[t, 0]), int(levels[t, 1])
        centred, rows_at = levels[t, 3] > 0, int(levels[t, 5])
        intercept = -1  # the column whose mean holds the constant columns' fixed effects
        for i in range(qk):
            if centred and icpt >= 0 and int(shared[col + i]) == icpt:
                intercept = i
        prior = 0.0
        if qk == 1:  # one column: scalars (C = sd R_00), and the sums in registers
            diagonal, pc, j, d_diagonal = sd[col] * R[col, col], int(parent_columns[col]), int(shared[col]), d_C[col, col]
            # partial non-centring of weight w: u = C^(1-w) z, prior -½ z²/C^(2w) - w log C per level
            w_partial = levels[t, 6]
            scale = _noncentred_scale(diagonal, w_partial)
            precision = 1.0 if w_partial == 0.0 else diagonal ** (-2.0 * w_partial)
            held, held_u, held_a = -1, 0.0, 0.0  # the parent's entry of the last levels (a run of one parent level)
            for level in range(n_levels):
                base = at + level
                da = d_a[base]
                if centred:
                    w0 = u[base] / diagonal
                    v0 = w0 / diagonal
                    prior -= 0.5 * w0 * w0
                    g = d_u[base] - v0
                    grad[start + base] += g
                    d_diagonal += v0 * w0
                    if intercept == 0:
                        d_mean[base] = -g
                    elif j >= 0:
                        d_beta[j] -= g
                    da -= g
                    d_a[base] = da
                else:
                    g = d_u[base]
                    zz = z[base]
                    grad[start + base] += g * scale - zz * precision
                    lp -= 0.5 * zz * zz * precision
                    if w_partial == 0.0:
                        d_diagonal += g * zz
                    else:
                        d_diagonal += ((1.0 - w_partial) * g * scale * zz + w_partial * zz * zz * precision) / diagonal
                if pc >= 0:  # the same additions to the parent's entries, held in registers over a run
                    parent_at = int(level_rows[rows_at + level, 0]) + pc
                    if parent_at != held:
                        if held >= 0:
                            d_u[held], d_a[held] = held_u, held_a
                        held, held_u, held_a = parent_at, d_u[parent_at], d_a[parent_at]
                    held_u += da
                    held_a += da
            if held >= 0:
                d_u[held], d_a[held] = held_u, held_a
            if w_partial != 0.0:  # non-centred terms only (pack)
                lp -= n_levels * w_partial * np.log(diagonal)
                d_diagonal -= n_levels * w_partial / diagonal
            d_C[col, col] = d_diagonal
        for level in range(n_levels if qk > 1 else 0):
            base = at + level * qk
            if centred:
                prior = _centred_level(prior, u, base, qk, col, sd, R, w, v)
                for i in range(qk):
                    g = d_u[base + i] - v[i]
                    grad[start + base + i] += g
                    for j in range(i + 1):
                        d_C[col + i, col + j] += v[i] * w[j]
                    j = int(shared[col + i])  # the mean's derivative: to β and to a
                    if i == intercept:
                        d_mean[base + i] = -g
                    elif j >= 0:
                        d_beta[j] -= g
                    d_a[base + i] -= g
            else:
                for i in range(qk):  # u = z (diag(sd) R)' per level, and z's prior -½ z²
                    g = d_u[base + i]
                    for j in range(i + 1):
                        grad[start + base + j] += g * sd[col + i] * R[col + i, col + j]
                        d_C[col + i, col + j] += g * z[base + j]
                    lp -= 0.5 * z[base + i] * z[base + i]
                    grad[start + base + i] -= z[base + i]
            for i in range(qk):  # a = u + a of the parent's level (-1 without a parent): the gradient in a to both
                pc = int(parent_columns[col + i])
                if pc >= 0:
                    pbase = int(level_rows[rows_at + level, 0])
                    d_u[pbase + pc] += d_a[base + i]
                    d_a[pbase + pc] += d_a[base + i]
        if centred:
            for i in range(qk):
                diagonal = sd[col + i] * R[col + i, col + i]
                prior -= n_levels * np.log(diagonal)
                d_C[col + i, col + i] -= n_levels / diagonal
            lp += prior
        if intercept >= 0:  # the constant columns' part of the intercept's mean (c = 0 elsewhere)
            p = d_beta.shape[0]
            for k in range(0, p - 3, 4):  # four columns of X at a time: four independent sums over the levels
                c0, c1, c2, c3 = constant[t, k], constant[t, k + 1], constant[t, k + 2], constant[t, k + 3]
                s0, s1, s2, s3 = d_beta[k], d_beta[k + 1], d_beta[k + 2], d_beta[k + 3]
                for level in range(n_levels):
                    g, r = d_mean[at + level * qk + intercept], rows_at + level
                    s0 += g * level_rows[r, 1 + k] * c0
                    s1 += g * level_rows[r, 2 + k] * c1
                    s2 += g * level_rows[r, 3 + k] * c2
                    s3 += g * level_rows[r, 4 + k] * c3
                d_beta[k], d_beta[k + 1], d_beta[k + 2], d_beta[k + 3] = s0, s1, s2, s3
            for k in range(p - p % 4, p):
                c, value = constant[t, k], d_beta[k]
                for level in range(n_levels):
                    value += d_mean[at + level * qk + intercept] * level_rows[rows_at + level, 1 + k] * c
                d_beta[k] = value
    return lp


@njit(inline="always", error_model="numpy")
def _log_density(x, blob, out, family, link):
    """The log posterior density at an unconstrained point x (up to a constant), its gradient into
    ``out``, for the family and link of these codes (constants of the compiled kernel). One
    workspace holds every intermediate array, in views."""
    p, q, n = int(blob[P]), int(blob[Q]), int(blob[ROWS])
    m = int(blob[N_EFFECTS])
    workspace = np.empty(2 * p + 2 * q * q + 3 * q + 5 * m + n + 1)
    beta, d_beta, sd, w, v = workspace[:p], workspace[p:2 * p], workspace[2 * p:2 * p + q], workspace[2 * p + q:2 * p + 2 * q], workspace[2 * p + 2 * q:2 * p + 3 * q]
    at = 2 * p + 3 * q
    R, d_C = matrix(workspace, at, q, q), matrix(workspace, at + q * q, q, q)
    at += 2 * q * q
    u, a, d_u, d_mean, d_a = workspace[at:at + m], workspace[at + m:at + 2 * m], workspace[at + 2 * m:at + 3 * m], workspace[at + 3 * m:at + 4 * m], workspace[at + 4 * m:at + 5 * m]
    eta = workspace[at + 5 * m:at + 5 * m + n]
    dispersion, lp = population_into(x, blob, beta, sd, R, out)
    if not np.isfinite(lp):
        return -np.inf
    for k in range(q):
        if not 0.0 < sd[k] < np.inf:
            return -np.inf  # outside the support in floating point (far out in the tails)
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR and not 0.0 < dispersion < np.inf:
        return -np.inf
    y = _section(blob, OFF_Y, n)
    weights = _section(blob, OFF_WEIGHTS, n)
    offset = _section(blob, OFF_OFFSET, n)
    X, Z, codes, qks, cols, starts, unit = row_layout(blob)
    effects_into(x[int(blob[Z_START]):], blob, beta, sd, R, u, a)
    for k in range(m):
        d_u[k] = 0.0
    for k in range(p):
        d_beta[k] = 0.0
    linear_predictors(eta, offset, X, beta, Z, codes, u, qks, cols, starts, unit)
    d_dispersion = 0.0
    for r in range(n):  # the rows' log-likelihoods, and their slopes in η in place of η
        value, slope, d_disp = log_density_row(family, link, y[r], eta[r], weights[r], dispersion)
        lp += value
        d_dispersion += d_disp
        eta[r] = slope
    linear_predictors_backward(eta, X, Z, codes, qks, cols, starts, unit, d_beta, d_u)
    if not np.isfinite(lp):
        return -np.inf
    lp = effects_backward_into(lp, blob, u, x[int(blob[Z_START]):], d_u, out, sd, R, d_beta, d_C, d_mean, d_a, w, v)
    chain_rule(x, blob, out, dispersion, sd, R, d_beta, d_C, d_dispersion)
    return lp


@njit(cache=True, error_model="numpy")
def expand(x, blob, out):
    """Fill out with β, the dispersion (if any), then per grouping factor its SDs, correlations
    and effects, as the expansion plan orders them."""
    p = int(blob[P])
    beta, dispersion, sd, R, _, _ = population(x, blob)
    u, _, _ = term_effects(x, blob, beta, sd, R)
    k = 0
    for j in range(p):
        out[k] = beta[j]
        k += 1
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR:
        out[k] = dispersion
        k += 1
    plan = matrix(blob, int(blob[OFF_PLAN]), int(blob[PLAN_ROWS]), 3)
    for row in range(plan.shape[0]):
        kind, a = plan[row, 0], int(plan[row, 1])
        if kind == PLAN_SD:
            out[k] = sd[a]
        elif kind == PLAN_EFFECT:
            out[k] = u[a]
        else:  # a correlation: rows a and b of the block-diagonal R (zero outside their block)
            b = int(plan[row, 2])
            value = 0.0
            for c in range(R.shape[0]):
                value += R[a, c] * R[b, c]
            out[k] = value
        k += 1


def _expand_callback(dim, n_expanded, x_, out_, user_data):
    blob = blob_at(user_data)
    if dim != int(blob[N_DIM]) or n_expanded != int(blob[N_EXPANDED]):
        return -1
    expand(carray(x_, (dim,)), blob, carray(out_, (n_expanded,)))
    return 0


@functools.cache
def log_density_kernel(family: int, link: int):
    """:func:`_log_density` compiled for one family and link (codes; a closure over them only, so
    that numba's disk cache, whose key includes the closure, finds it again in a new process):
    the family's row function is then inlined and its branches on the codes fold away."""

    @njit(cache=True, error_model="numpy")
    def log_density(x, blob, out):
        return _log_density(x, blob, out, family, link)

    return log_density


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


def pack(design, priors: PriorSet, labels: list[str], layouts: list[GroupLayout], centred: tuple[bool, ...] | None = None,
         partial: tuple[float, ...] | None = None) -> tuple[np.ndarray, list[Variable], int]:
    """The blob of the full model of ``design``, its expanded variables and the number of
    unconstrained coordinates; ``centred`` says per term whether it is centred (default: none is),
    ``partial`` the weight of each non-centred scalar term's partial non-centring (default: 0,
    non-centred; see :func:`_noncentred_scale`).
    A design without rows in memory (dask, Parquet) gets a blob without rows: its population
    part and expansion plan, what the collapsed density of several factors reads
    (:mod:`bayesmix.bayes.collapsed_factors`)."""
    family = design.family
    rows = design.rows if design.in_memory else _no_rows(design)
    names = list(design.fixed_names)
    p, n = len(names), rows.n
    icpt = names.index("Intercept") if "Intercept" in names else -1
    population_part, n_population, _ = population_sections(design, priors, labels)
    q = sum(term.q for term in design.terms)
    centred = (False,) * len(design.terms) if centred is None else tuple(centred)
    partial = (0.0,) * len(design.terms) if partial is None else tuple(partial)
    if any(w and (c or term.q != 1) for w, c, term in zip(partial, centred, design.terms)):
        raise ValueError("partial non-centring applies to non-centred terms of one column only")
    found = hierarchy(design)
    parent = _centred_ancestry(found.parent, centred)
    levels, at, first = [], 0, 0
    for k, term in enumerate(design.terms):
        unit = float(term.q == 1 and bool(np.all(rows.z[k] == 1.0)))
        levels.append([term.n_levels, at, unit, float(centred[k]), parent[k], first, float(partial[k])])
        at += term.n_levels * term.q
        first += term.n_levels
    shared = [float(j) for k, term in enumerate(design.terms)
              for j in (shared_columns(design, k) if centred[k] else [-1] * term.q)]
    parent_columns = [float(c) for k in range(len(design.terms)) for c in
                      (found.parent_columns[k] if parent[k] >= 0 else np.full(design.terms[k].q, -1))]
    n_effects = at
    variables = [Variable("beta", (p,), ("coef",))]
    if family.has_dispersion:
        variables.append(Variable(family.dispersion_name, (), ()))
    plan = []
    for layout in layouts:
        members = [k for k, term in enumerate(design.terms) if term.group == layout.group]
        cols = [levels_col for k in members for levels_col in _columns(design, k)]
        plan += [[PLAN_SD, c, 0.0] for c in cols]
        variables.append(Variable(f"sd_{layout.name}", (len(cols),), (f"{layout.name}_effect",)))
        pairs = [[PLAN_COR, a, b] for k in members if design.terms[k].correlated
                 for i, a in enumerate(_columns(design, k)) for b in _columns(design, k)[i + 1:]]
        if pairs:
            plan += pairs
            variables.append(Variable(f"cor_{layout.name}", (len(pairs),), (f"{layout.name}_pair",)))
        n_levels = design.terms[members[0]].n_levels
        plan += [[PLAN_EFFECT, levels[k][1] + level * design.terms[k].q + i, 0.0]
                 for level in range(n_levels) for k in members for i in range(design.terms[k].q)]
        variables.append(Variable(f"u_{layout.name}", (n_levels, len(cols)),
                                  (f"{layout.name}_level", f"{layout.name}_effect")))
    n_expanded = sum(int(np.prod(v.shape)) for v in variables)
    Z = np.column_stack(rows.z) if design.terms else np.zeros((n, 0))
    codes = np.column_stack(rows.codes) if design.terms else np.zeros((n, 0))
    sections = [
        *population_part,
        np.asarray(rows.y, float),
        np.ones(n) if rows.weights is None else np.asarray(rows.weights, float),
        np.zeros(n) if rows.offset is None else np.asarray(rows.offset, float),
        np.asarray(rows.X, float).ravel(), np.asarray(Z, float).ravel(), np.asarray(codes, float).ravel(),
        np.ravel(np.asarray(levels, float)), np.ravel(np.asarray(plan, float)), np.asarray(shared, float),
        np.asarray(parent_columns, float), _level_rows(design, rows, found, parent, levels).ravel(),
        found.constant.astype(float).ravel(),
        np.argsort([term.n_levels for term in design.terms], kind="mergesort").astype(float),
    ]
    offsets = HEADER + np.concatenate([[0], np.cumsum([s.size for s in sections])])
    n_dim = n_population + n_effects
    header = [offsets[-1], p, q, 0, n, icpt, len(design.terms), n_dim, n_expanded, *offsets[:5],
              family.code, family.link_code, n_population, n_effects, *offsets[5:-1], len(plan)]
    blob = np.concatenate([np.asarray(header, float), *sections])
    assert blob.size == offsets[-1] and len(header) == HEADER
    return blob, variables, n_dim


def _level_rows(design, rows, found, parent: list[int], levels: list) -> np.ndarray:
    """Per level of every term (terms in order): where the effects of its parent's level begin
    among the effects (-1 without a parent), then the level's row of X."""
    blocks = []
    for k, term in enumerate(design.terms):
        first = found.first_rows[k]
        where = np.full(term.n_levels, -1.0)
        if parent[k] >= 0:
            where = levels[parent[k]][1] + rows.codes[parent[k]][first] * design.terms[parent[k]].q
        X = rows.X[first] if rows.n else np.zeros((term.n_levels, design.p))
        blocks.append(np.column_stack([where, X]))
    return np.concatenate(blocks) if blocks else np.zeros((0, design.p + 1))


def _centred_ancestry(parents: tuple[int, ...], centred: tuple[bool, ...]) -> list[int]:
    """The parents (:func:`~bayesmix.bayes.parameterization.hierarchy`) a centred term's mean
    needs: those of the centred terms and of their ancestors; -1 for the others."""
    kept = [-1] * len(parents)
    for k, is_centred in enumerate(centred):
        while is_centred and parents[k] >= 0 and kept[k] < 0:
            kept[k] = parents[k]
            k = parents[k]
    return kept


def _no_rows(design) -> Rows:
    """Zero rows with the design's columns: what :func:`pack` stores for a design without rows."""
    return Rows(np.zeros((0, design.p)), tuple(np.zeros(0, np.intp) for _ in design.terms),
                tuple(np.zeros((0, term.q)) for term in design.terms), pd.RangeIndex(0), y=np.zeros(0))


def term_levels(blob: np.ndarray) -> np.ndarray:
    """Per term (rows): its number of levels, where its effects begin among the coordinates,
    whether it is a term of one column of ones, whether it is centred, its parent term (or -1)
    and where its levels' first rows begin."""
    return _section(blob, OFF_LEVELS, LEVEL_FIELDS * int(blob[TERMS])).reshape((-1, LEVEL_FIELDS))


def shared_columns(design, k: int) -> list[int]:
    """Per column of term ``k``, the index of the identical column of X (a centred term's levels
    are centred on its fixed effect), or -1."""
    names, rows = list(design.fixed_names), design.rows
    return [names.index(c) if c in names and np.array_equal(rows.X[:, names.index(c)], rows.z[k][:, j]) else -1
            for j, c in enumerate(design.terms[k].columns)]


def _columns(design, k: int) -> list[int]:
    """The columns of term k among all terms' (the rows of the block-diagonal R)."""
    start = sum(term.q for term in design.terms[:k])
    return list(range(start, start + design.terms[k].q))


def log_density(blob: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and benchmarks)."""
    out = np.empty(int(blob[N_DIM]))
    value = log_density_kernel(int(blob[FAMILY]), int(blob[LINK]))(np.asarray(x, float), blob, out)
    return value, out


def expanded(blob: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The expanded variables at x, concatenated (what the expansion callback writes)."""
    out = np.empty(int(blob[N_EXPANDED]))
    expand(np.asarray(x, float), blob, out)
    return out


@dataclass(frozen=True)
class FullDensity(PackedDensity):
    """A full model ready for nutpie. ``with_data(y=...)`` returns the model for a new response."""

    def callbacks(self):
        """The C callbacks of the log density and of the expansion (see :func:`callbacks`)."""
        return callbacks(int(self.blob[FAMILY]), int(self.blob[LINK]))

    def compile(self) -> None:
        """Compile this model's callbacks (for its family and link), or load them from numba's disk
        cache: what happens once per installation."""
        self.callbacks()

    def with_data(self, **arrays) -> FullDensity:
        """The same model with the response ``y`` replaced by the values the PyMC model observes
        (:meth:`~bayesmix.families.Family.observed`: the binomial's successes, which become
        proportions of the trials here)."""
        blob = self.blob.copy()
        if "y" in arrays:
            n = int(blob[ROWS])
            y = np.asarray(arrays["y"], float).ravel()
            if int(blob[FAMILY]) == BINOMIAL_CODE:
                y = y / blob[int(blob[OFF_WEIGHTS]):int(blob[OFF_WEIGHTS]) + n]
            start = int(blob[OFF_Y])
            blob[start:start + n] = y
        return dataclasses.replace(self, blob=blob)


def full_density(design, priors: PriorSet, labels: list[str], layouts: list[GroupLayout], coords: dict,
                 centred: tuple[bool, ...] | None = None, partial: tuple[float, ...] | None = None) -> FullDensity:
    """The nutpie model of the full posterior of ``design``, each term non-centred or, where
    ``centred`` says so, centred, and non-centred terms partially where ``partial`` says so (see
    the module docstring and :func:`pack`)."""
    blob, variables, n_dim = pack(design, priors, labels, layouts, centred, partial)
    coords = {k: pd.Index(v) for k, v in coords.items() if k != "obs"}
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(n_dim)])
    centre = population_centre(design, priors, labels)
    any_centred = centred is not None and any(centred)

    def init(seed):
        """A start as PyMC's: the priors' centres, and the effects u = 0 (z = 0, or θ at its
        mean), jittered by U(-1, 1)."""
        rng = np.random.default_rng(seed)
        x = np.concatenate([centre, np.zeros(n_dim - centre.size)]) + rng.uniform(-1.0, 1.0, n_dim)
        if not any_centred:  # z = 0 is u = 0: no mean to add (nor its kernels to load from numba's cache)
            return x
        jitter = x.copy()
        levels, tspec = term_levels(blob), _section(blob, OFF_TERMS, 4 * int(blob[TERMS])).reshape((-1, 4))
        for t in _term_order(blob).astype(int):  # parents first: a term's mean holds their effects
            n_levels, at, _, centred_term = levels[t, :4]
            if centred_term:  # θ = x holds the jitter: θ + jitter - u = mean + a + jitter
                beta, _, sd, R, _, _ = population(x, blob)
                u = term_effects(x, blob, beta, sd, R)[0]
                span = slice(int(at), int(at) + int(n_levels) * int(tspec[t, 0]))
                x[int(blob[Z_START]):][span] += jitter[int(blob[Z_START]):][span] - u[span]
        return x

    return FullDensity(blob=blob, variables=variables, n_unconstrained=n_dim, coords=coords, init=init)


def effect_coordinates(blob: np.ndarray, structure, u: np.ndarray) -> np.ndarray:
    """The coordinates z of the effects (b_t = z_t (diag(sd_t) L_t)', per term levels x q_t,
    row-major, as :func:`expand` reads them after the population's) from the spherical effects
    u laid out as the blocked factorisation lays them out (:meth:`~bayesmix.data.layout.Structure.per_block`);
    for a blob of non-centred terms (:func:`pack`'s default)."""
    per_block = structure.per_block(u)
    z = np.empty(int(blob[N_EFFECTS]))
    levels = term_levels(blob)
    for t in range(levels.shape[0]):
        k, columns = structure.locate(t)
        values = per_block[k][:, columns]
        at = int(levels[t, 1])
        z[at : at + values.size] = values.ravel()
    return z


def posterior_variables(blob: np.ndarray, variables: list[Variable], structure, x: np.ndarray, u: np.ndarray
                        ) -> dict[str, np.ndarray]:
    """The posterior variables (β, the dispersion, SDs, correlations, effects) at the population
    coordinates x with the spherical effects u (see :func:`effect_coordinates`), by name: what a
    sampler that draws the effects itself reports for each draw."""
    return named_variables(blob, variables, np.concatenate([x, effect_coordinates(blob, structure, u)]))


def named_variables(blob: np.ndarray, variables: list[Variable], x: np.ndarray) -> dict[str, np.ndarray]:
    """The posterior variables at the full model's coordinates x (the population's, then every
    term's effects), by name."""
    out = expanded(blob, x)
    draws, start = {}, 0
    for v in variables:
        size = int(np.prod(v.shape))
        draws[v.name] = out[start : start + size].reshape(v.shape)
        start += size
    return draws
