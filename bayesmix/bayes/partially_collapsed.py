"""The partially collapsed sampler for several grouping factors (Gaussian family, identity
link): the random effects of the first grouping factor (the one with the most levels)
integrated out, and with them the fixed effects where their priors allow; those of the other
factors sampled by NUTS with σ, the SDs and the correlations; then the integrated ones drawn
exactly for every draw.

Why: the fully collapsed density (:mod:`bayesmix.bayes.collapsed_factors`) integrates every
factor out through the blocked factor, whose dense block has one row per effect of the
factors after the first (m of them): its Cholesky factor and inverse cost O(m³) per
evaluation, about 76 ms for InstEval's m = 1,156. Integrating out the first factor alone
keeps only its per-level blocks (q₁ x q₁), and costs two passes over the rows.

Given the sampled effects b_k (k ≥ 2), r = y - Σ_k Z_k b_k, and per level j of the first
factor the rows' marginal is r_j ~ N(X_jβ, σ² I + Z_j C C' Z_j'), C the factor's Cholesky
factor of its effects' covariance (block-diagonal over its terms): the one-factor algebra of
REML (:func:`~bayesmix.linalg.kernels.factor_first_block`: T = C/σ, M_j = T'A_jT + I,
A_j = Z_j'Z_j, and S, the Schur complement of [X r]'[X r] after the first block, one pass over
the levels).

The fixed effects, in the population's coordinates θ_b (β = A θ_b, X̃ = X A:
:func:`bayesmix.bayes.density.population`), are integrated out too when their priors are
Normal or flat (precisions Λ_b, 0 for flat) and no centred term's mean holds them: the
likelihood is Gaussian in θ_b, so with P = S_X̃X̃/σ² + Λ_b and θ̃ its maximiser (with the prior),

    log p(r | C, σ) = -½ [ n log(2πσ²) + Σ_j log|M_j| + v'Sv/σ² + log|P| ] + log prior(θ̃),
    v = (-θ̃, 1),

exactly (a Gaussian integral; with flat priors this is the REML likelihood). Its gradient in
(C, σ) is that of the terms at θ̃ fixed (θ̃ maximises them), given by
:func:`~bayesmix.linalg.kernels.first_block_gradient` with F = vv'/σ² + P⁻¹/σ² on the X̃ block,
and ∂/∂σ = -n/σ + v'Sv/σ³ + (p - tr(P⁻¹Λ_b))/σ at fixed T; in the rows' predictor it is
(r_i - x̃_i'θ̃ - z_i'T g_j)/σ², T g_j = E[b_j | r, θ̃], which the rows carry to the sampled
effects. Without the integration (a Student-t prior on a fixed effect, or a centred term
nested in a sampled factor) θ_b is sampled and the same algebra runs with no X̃ columns.

Integrating θ_b removes the slow direction of the sampled effects, their common level with
the intercept (ESS 78 in 4,000 draws on a 300 x 100 crossed design). What the integrated
fixed effects absorb of a sampled term's effects, the span of the columns of X constant within
its levels, is then fixed by the prior alone; so a centred term is *centred by contrasts*
(:func:`_contrast_centred`): its levels' effects are Q (m C'; w) with Q orthogonal and its
first k columns spanning those columns (:func:`contrast_rotation`), m (k x q) non-centred and
the contrasts w centred, N(0, C C'). Non-centred terms stay as the full model has them.

An evaluation: one pass over the rows (r, X'r and the s_j = Z_j'r_j), the per-level algebra,
one pass back (the gradient), then the priors of the sampled effects and the chain rule of the
full density (:mod:`bayesmix.bayes.full_density`, whose blob this density reads: its
coordinates are the full model's without the integrated ones; the first factor's terms and the
terms centred by contrasts non-centred in the blob).

For each posterior draw θ_b ~ N(θ̃, P⁻¹) and then the first factor's effects are drawn
exactly, per level b_j = T v_j with v_j ~ N(g_j, σ² M_j⁻¹) at that θ_b
(:func:`~bayesmix.linalg.collapsed.conditional_spherical`), and reported with the others as
the full model reports them.

The kernels are compiled once per installation (numba's disk cache) and release the GIL, so
nutpie's chains (:func:`bayesmix.bayes.nutpie_adapter.python_model`) evaluate in parallel.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.linalg

from ..data.layout import GroupLayout, Structure
from ..errors import BayesmixWarning, FitError, warn
from ..jit import njit
from ..linalg.factorization import available_memory, dense_block_bytes
from ..linalg.collapsed import LOG_2PI, conditional_spherical, spherical_workspace
from ..linalg.kernels import cholesky_into, factor_first_block, first_block_gradient, invert_lower
from .collapsed_factors import ChainFunctions
from .density import FAMILIES, OFF_B_PRIOR, P, Q, ROWS, ThetaMap, Variable, chain_rule, population
from .full_density import (N_DIM, OFF_Y, Z_START, c_solve, c_transpose_solve, effects_backward, full_density,
                           linear_predictors, linear_predictors_backward, named_variables, row_layout, term_effects,
                           term_levels)
from .parameterization import hierarchy, informative
from .priors import PriorSet

COLLAPSE = ("auto", "all", "largest")

CONTRAST_CENTRED_PRECISION_RATIO = 1.0
"""``parameterization="auto"`` in the partially collapsed sampler with the fixed effects
integrated out centres by contrasts a factor nested in no other when the median of its
precision ratios (:func:`bayesmix.bayes.parameterization.precision_ratios`) is at least this:
where the centred form's Gibbs rate 1/(1 + r) overtakes the non-centred form's r/(1 + r), as for
nested factors. The full model's threshold (10) guards against a centred term's mean holding the
fixed effects, which are integrated out here. Measured on InstEval (benchmarks/RESULTS.md):
the instructors, median r = 8.2, non-centred gave a smallest ESS of sd(d) of 500, centred by
contrasts 3,500, at the same cost."""
"""What ``method="collapsed"`` integrates out with several grouping factors (``collapse=``)."""

DENSE_BLOCK_LIMIT = 1000
"""``collapse="auto"`` integrates out the first factor only when the dense block of the fully
collapsed density (one row per effect of the factors after the first) has more rows than
this (see :func:`collapse_choice`), where the block's O(m³) algebra in every evaluation
overtakes the sparse passes. Measured (benchmarks/RESULTS.md, "The partially collapsed
sampler"), with the fixed effects integrated out too: with m = 100 (20,000 rows, 300 x 100
crossed levels) both samplers give about the same ESS per CPU second (97 against 94: the fully
collapsed one 3.2 leapfrog steps per draw, the partially collapsed one 7 at a 6x cheaper
evaluation); with m = 1,156 (InstEval) the fully collapsed one needs the better part of an hour
for 4 x 1,000 draws and the partially collapsed one about 2 minutes, 1.7x the full sampler's ESS
per second."""


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


def fixed_effects_integrable(priors: PriorSet) -> bool:
    """Whether every fixed effect's prior is Normal or flat, so that the partially collapsed
    sampler integrates them out (their precisions: :func:`gaussian_fixed_effects_prior`)."""
    return all(dist.name in ("Normal", "Flat") for dist in [priors.intercept, *priors.b.values()] if dist is not None)


def collapse_choice(design, structure: Structure) -> str:
    """What ``collapse="auto"`` integrates out: ``"largest"`` (the first factor only) for a
    design with rows in memory whose dense block has more than :data:`DENSE_BLOCK_LIMIT` rows,
    else ``"all"``."""
    return "largest" if design.in_memory and structure.dense_block_size > DENSE_BLOCK_LIMIT else "all"


@njit(cache=True, error_model="numpy")
def _rotate(Y, term, reflectors, transpose, out):
    """out = Q Y (or Q'Y) along the levels of one term's block of the effects (``term``: a row
    of ``rotated``; the block is levels x q row-major), Q = H_1 ⋯ H_k the product of the
    term's Householder reflections H_j = I - τ_j v_j v_j' (``reflectors`` from the term's
    offset: per reflection τ_j, then v_j over the levels), whose first k columns span the
    level-constant columns of X (:func:`contrast_rotation`)."""
    qk, n_levels, at, k, offset = term[0], term[2], term[3], term[4], term[5]
    for e in range(n_levels * qk):
        out[at + e] = Y[at + e]
    for step in range(k):
        h = offset + (step if transpose else k - 1 - step) * (n_levels + 1)
        tau = reflectors[h]
        for i in range(qk):
            dot = 0.0
            for level in range(n_levels):
                dot += reflectors[h + 1 + level] * out[at + level * qk + i]
            dot *= tau
            for level in range(n_levels):
                out[at + level * qk + i] -= dot * reflectors[h + 1 + level]


@njit(cache=True, error_model="numpy")
def _contrast_centred(x_full, blob, rotated, reflectors, sd, R):
    """Replace, for each term in ``rotated`` (rows: its columns q, its first column in C, its
    number of levels ℓ, where its effects begin, k, where its reflections begin: see
    :func:`contrast_rotation`), its coordinates (m_1 ... m_k; w_1 ... w_{ℓ-k}) (levels x q
    row-major: standard normal m, centred w ~ N(0, C C')) in ``x_full`` by the non-centred ones
    the full density reads, z = Q Y with Y = (m; C⁻¹w) (:func:`_rotate`), so that u = z C' per
    level: the levels' effects are Q (m C'; w), independent N(0, C C') as in the model, with the
    directions the integrated fixed effects absorb non-centred and the rest centred. Returns Y
    (in the effects' layout; 0 elsewhere) and the log-Jacobian of (m, w) -> z, -(ℓ - k) log|C|
    per term."""
    start = int(blob[Z_START])
    Y = np.zeros(x_full.shape[0] - start)
    log_jacobian = 0.0
    for t in range(rotated.shape[0]):
        qk, col, n_levels, at, k = rotated[t, 0], rotated[t, 1], rotated[t, 2], rotated[t, 3], rotated[t, 4]
        for i in range(k * qk):
            Y[at + i] = x_full[start + at + i]
        for i in range(qk):
            log_jacobian -= (n_levels - k) * np.log(sd[col + i] * R[col + i, col + i])
        for level in range(k, n_levels):  # C y = w
            c_solve(sd, R, col, qk, x_full, start + at + level * qk, Y, at + level * qk)
        _rotate(Y, rotated[t], reflectors, False, x_full[start:])
    return Y, log_jacobian


@njit(cache=True, error_model="numpy")
def _contrast_centred_backward(grad, d_C, blob, rotated, reflectors, Y, sd, R):
    """Carry the gradient in the non-centred coordinates z of the terms in ``rotated`` (in
    ``grad``) to their coordinates (m, w) (into ``grad``) and to C (into ``d_C``), with the
    log-Jacobian's: ∂/∂Y = Q'∂/∂z, ∂/∂m = its first k rows, ∂/∂w_r = C⁻ᵀ a_r for its row a_r,
    and -C⁻ᵀ a_r y_r' - (ℓ - k)/C_ii on the diagonal into C."""
    start = int(blob[Z_START])
    g = np.empty(Y.shape[0])
    b = np.empty(int(blob[Q]))
    for t in range(rotated.shape[0]):
        qk, col, n_levels, at, k = rotated[t, 0], rotated[t, 1], rotated[t, 2], rotated[t, 3], rotated[t, 4]
        _rotate(grad[start:], rotated[t], reflectors, True, g)
        for i in range(k * qk):
            grad[start + at + i] = g[at + i]
        for i in range(qk):
            d_C[col + i, col + i] -= (n_levels - k) / (sd[col + i] * R[col + i, col + i])
        for level in range(k, n_levels):
            base = at + level * qk
            c_transpose_solve(sd, R, col, qk, g, base, b, 0)  # C' b = a
            for i in range(qk):
                grad[start + base + i] = b[i]
                for j in range(i + 1):
                    d_C[col + i, col + j] -= b[i] * Y[base + j]


@njit(cache=True, nogil=True, error_model="numpy")
def coordinates_kernel(x, blob, kept, rotated, reflectors):
    """The full model's coordinates at x (the integrated ones at 0, the terms in ``rotated`` as
    :func:`_contrast_centred` leaves them), the population part at them
    (:func:`~bayesmix.bayes.density.population`), Y and the rotation's log-Jacobian."""
    x_full = np.zeros(int(blob[N_DIM]))
    for i in range(kept.shape[0]):
        x_full[kept[i]] = x[i]
    beta, sigma, sd, R, lp, grad = population(x_full, blob)
    Y, log_jacobian = _contrast_centred(x_full, blob, rotated, reflectors, sd, R)
    return x_full, beta, sigma, sd, R, lp, grad, Y, log_jacobian


@njit(cache=True, nogil=True, error_model="numpy")
def _residuals(x, blob, kept, rotated, reflectors, first, level_start):
    """The full model's coordinates (the first factor's at 0; the terms in ``rotated`` as
    :func:`_contrast_centred` leaves them), the population part at them, the effects, and the
    residuals r = y - Xβ - Σ_{k≥2} Z_k b_k
    with per level s_j = Z_j'r_j (levels x q₁ x 1) and r'r; C₁, the first factor's Cholesky
    factor; Y and the rotation's log-Jacobian (:func:`_contrast_centred`); whether the point
    is in the support (in floating point)."""
    x_full, beta, sigma, sd, R, lp, grad, Y, log_jacobian = coordinates_kernel(x, blob, kept, rotated, reflectors)
    valid = np.isfinite(lp) and 0.0 < sigma < np.inf
    for k in range(sd.shape[0]):
        valid = valid and 0.0 < sd[k] < np.inf
    u, z, _ = term_effects(x_full, blob, beta, sd, R)
    n, q1, n_levels = int(blob[ROWS]), first.shape[0], level_start.shape[0] - 1
    y = blob[int(blob[OFF_Y]):int(blob[OFF_Y]) + n]
    X, Z, codes, qks, cols, starts, unit = row_layout(blob)
    r = np.empty(n)
    linear_predictors(r, np.zeros(n), X, beta, Z, codes, u, qks, cols, starts, unit)
    s = np.zeros((n_levels, q1, 1))
    rss = 0.0
    for i in range(n):
        r[i] = y[i] - r[i]
        rss += r[i] * r[i]
    for j in range(n_levels):
        for a in range(q1):
            value = 0.0
            for i in range(level_start[j], level_start[j + 1]):
                value += Z[i, first[a]] * r[i]
            s[j, a, 0] = value
    C1 = np.empty((q1, q1))
    for a in range(q1):
        for b in range(q1):
            C1[a, b] = sd[first[a]] * R[first[a], first[b]]
    return x_full, beta, sigma, sd, R, lp, grad, u, z, r, s, rss, C1, Y, log_jacobian, valid


@njit(cache=True, nogil=True, error_model="numpy")
def _fixed_effects_posterior(blob, r, s, rss, C1, sigma, A1, B1, XX, mix, precision, shift):
    """The first block's factorisation with the integrated fixed effects' columns X̃ = X A
    (:func:`~bayesmix.linalg.kernels.factor_first_block` on A1, [Z_j'X̃_j | s_j] and
    [X̃ r]'[X̃ r]: the REML algebra, S the [X̃ r] Schur complement), and θ_b's conditional
    posterior N(mode, P⁻¹) with P = S_X̃X̃/σ² + Λ_b (Λ_b the prior precisions), P = L_P L_P'.

    ``mix`` is A (p x p_b: θ_b -> β); with p_b = 0 nothing is integrated and the block's last
    column is the residuals' alone. Returns ok (False where a factor does not exist), the
    factorisation (A1X, L_j⁻¹, W, T'A_j, S, Σ log|M_j|), L_P and the mode."""
    n, pb = r.shape[0], XX.shape[0]
    n_levels, q1 = A1.shape[0], A1.shape[1]
    X = row_layout(blob)[0]
    Xr = np.zeros(X.shape[1])
    if pb > 0:
        for i in range(n):
            for k in range(X.shape[1]):
                Xr[k] += X[i, k] * r[i]
    A1X = np.empty((n_levels, q1, pb + 1))
    for j in range(n_levels):
        for a in range(q1):
            for k in range(pb):
                A1X[j, a, k] = B1[j, a, k]
            A1X[j, a, pb] = s[j, a, 0]
    AXX = np.empty((pb + 1, pb + 1))
    for k in range(pb):
        value = 0.0
        for m in range(X.shape[1]):
            value += mix[m, k] * Xr[m]  # X̃'r = A'X'r
        for m in range(pb):
            AXX[k, m] = XX[k, m]
        AXX[k, pb] = value
        AXX[pb, k] = value
    AXX[pb, pb] = rss
    ok, Linv, W, TA, S, logdet = factor_first_block(C1 / sigma, A1, A1X, AXX)
    s2 = sigma * sigma
    precision_matrix = np.empty((pb, pb))
    rhs = np.empty(pb)
    for k in range(pb):
        for m in range(pb):
            precision_matrix[k, m] = S[k, m] / s2
        precision_matrix[k, k] += precision[k]
        rhs[k] = S[k, pb] / s2 + shift[k]
    LP = np.zeros((pb, pb))
    mode = np.empty(pb)
    if not (ok and cholesky_into(precision_matrix, LP, pb)):
        return False, A1X, Linv, W, TA, S, logdet, LP, mode
    for k in range(pb):  # L_P L_P' mode = rhs
        value = rhs[k]
        for m in range(k):
            value -= LP[k, m] * mode[m]
        mode[k] = value / LP[k, k]
    for k in range(pb - 1, -1, -1):
        value = mode[k]
        for m in range(k + 1, pb):
            value -= LP[m, k] * mode[m]
        mode[k] = value / LP[k, k]
    return True, A1X, Linv, W, TA, S, logdet, LP, mode


@njit(cache=True, nogil=True, error_model="numpy")
def log_density_kernel(x, blob, kept, rotated, reflectors, first, level_start, A1, B1, XX, mix, precision, shift):
    """The log posterior density at x (up to a constant) and its exact gradient, in one
    compiled call that releases the GIL (see the module docstring).

    ``kept``: the full model's coordinates that x holds; ``first``: the columns of C (and of
    the rows' Z) of the first factor's effects; ``level_start``: where each of its levels'
    rows begin (the rows sorted by its level); ``A1``: Z_j'Z_j per level; ``B1``, ``XX``,
    ``mix``, ``precision``, ``shift``: Z_j'X̃_j, X̃'X̃, A, and θ_b's prior precisions Λ_b and
    Λ_b μ_b when the fixed effects are integrated out too (p_b columns; none when they are
    sampled). -inf and a zero gradient outside the support in floating point."""
    x_full, beta, sigma, sd, R, lp, grad, u, z, r, s, rss, C1, Y, log_jacobian, valid = _residuals(
        x, blob, kept, rotated, reflectors, first, level_start)
    out = np.zeros(kept.shape[0])
    if not valid:
        return -np.inf, out
    ok, A1X, Linv, W, TA, S, logdet, LP, mode = _fixed_effects_posterior(blob, r, s, rss, C1, sigma, A1, B1, XX, mix,
                                                                          precision, shift)
    if not ok:
        return -np.inf, out
    pb, q1, n, s2 = XX.shape[0], A1.shape[1], blob[ROWS], sigma * sigma
    v = np.empty(pb + 1)  # θ_b's residual direction: the penalised RSS at the mode is v'Sv
    for k in range(pb):
        v[k] = -mode[k]
    v[pb] = 1.0
    quad, logdet_p = 0.0, 0.0
    for a in range(pb + 1):
        for b in range(pb + 1):
            quad += v[a] * S[a, b] * v[b]
    LPinv = np.empty((pb, pb))
    invert_lower(LP, LPinv, pb)
    F = np.empty((pb + 1, pb + 1))  # ∂(-2 log p)/∂S: vv'/σ², plus P⁻¹/σ² on the X̃ block
    trace = 0.0
    for a in range(pb + 1):
        for b in range(pb + 1):
            F[a, b] = v[a] * v[b] / s2
    for a in range(pb):
        logdet_p += 2.0 * np.log(LP[a, a])
        for b in range(pb):
            value = 0.0
            for k in range(max(a, b), pb):
                value += LPinv[k, a] * LPinv[k, b]
            F[a, b] += value / s2
            if a == b:
                trace += value * precision[a]  # tr(P⁻¹Λ_b)
    value = -0.5 * (n * (LOG_2PI + np.log(s2)) + logdet + quad / s2 + logdet_p)
    T = C1 / sigma
    d_T = -0.5 * first_block_gradient(TA, Linv, W, A1X, F)
    inner = 0.0
    for a in range(q1):
        for b in range(q1):
            inner += d_T[a, b] * T[a, b]
    d_sigma = -n / sigma + quad / (s2 * sigma) + (pb - trace) / sigma - inner / sigma
    if pb > 0:  # the population at the mode
        for k in range(pb):
            x_full[k] = mode[k]
        beta, _, _, _, lp, grad = population(x_full, blob)
    shifted = beta if pb > 0 else np.zeros(beta.shape[0])  # A mode: the integrated fixed effects in the predictor
    X, Z, codes, qks, cols, starts, unit = row_layout(blob)
    d_u = np.zeros(u.shape[0])
    d_beta = np.zeros(beta.shape[0])
    wv = np.empty(q1)
    slope = np.empty(r.shape[0])
    g = np.empty(q1)
    mean = np.empty(q1)
    for j in range(A1.shape[0]):  # E[b_j | rest] = T M_j⁻¹T'(s_j - B_j mode) = T L_j⁻ᵀ W_j v
        for a in range(q1):
            acc = 0.0
            for b in range(pb + 1):
                acc += W[j, a, b] * v[b]
            wv[a] = acc
        for a in range(q1):
            acc = 0.0
            for b in range(a, q1):
                acc += Linv[j, b, a] * wv[b]
            g[a] = acc
        for a in range(q1):
            acc = 0.0
            for b in range(q1):
                acc += T[a, b] * g[b]
            mean[a] = acc
        for i in range(level_start[j], level_start[j + 1]):  # the derivative in η_i: (r_i - x̃_i'mode - z_i'E[b_j]) / σ²
            e = r[i]
            for m in range(beta.shape[0]):
                e -= X[i, m] * shifted[m]
            for a in range(q1):
                e -= Z[i, first[a]] * mean[a]
            slope[i] = e / s2
    linear_predictors_backward(slope, X, Z, codes, qks, cols, starts, unit, d_beta, d_u)
    prior, d_C = effects_backward(0.0, blob, u, z, d_u, grad, sd, R, d_beta)
    for a in range(q1):
        for b in range(q1):
            d_C[first[a], first[b]] += d_T[a, b] / sigma
    _contrast_centred_backward(grad, d_C, blob, rotated, reflectors, Y, sd, R)
    chain_rule(x_full, blob, grad, sigma, sd, R, d_beta, d_C, d_sigma)
    value += lp + prior + log_jacobian
    for i in range(kept.shape[0]):
        out[i] = grad[kept[i]]
        if not np.isfinite(out[i]):
            return -np.inf, np.zeros(kept.shape[0])
    if not np.isfinite(value):
        return -np.inf, np.zeros(kept.shape[0])
    return value, out


@njit(cache=True, nogil=True, error_model="numpy")
def draw_kernel(x, blob, kept, rotated, reflectors, slots, first, level_start, A1, B1, XX, mix, precision, shift, eps, eps_b):
    """The full model's coordinates at x with the integrated ones drawn exactly given the
    standard normals: θ_b = mode + L_P⁻ᵀ ε_b (``eps_b``, p_b of them; see
    :func:`_fixed_effects_posterior`), then per level of the first factor (``eps``: levels x q₁)
    z_j = v_j / σ, v_j = g_j + σ L_j⁻ᵀ ε_j with g_j at θ_b, so that b_j = C z_j ~
    N(T g_j, σ² T M_j⁻¹ T'). ``slots``: the first factor's coordinates in the full model's
    (levels x q₁)."""
    x_full, _, sigma, _, _, _, _, _, _, r, s, rss, C1, _, _, _ = _residuals(x, blob, kept, rotated, reflectors, first, level_start)
    _, _, _, _, _, _, _, LP, mode = _fixed_effects_posterior(blob, r, s, rss, C1, sigma, A1, B1, XX, mix, precision,
                                                             shift)
    pb, q1 = XX.shape[0], A1.shape[1]
    theta_b = np.empty(pb)
    for k in range(pb - 1, -1, -1):  # L_P' t = ε_b
        value = eps_b[k]
        for m in range(k + 1, pb):
            value -= LP[m, k] * theta_b[m]
        theta_b[k] = value / LP[k, k]
    for k in range(pb):
        theta_b[k] += mode[k]
        x_full[k] = theta_b[k]
    T = C1 / sigma
    work = spherical_workspace(q1)
    v = np.empty(q1)
    b = np.empty(q1)
    for j in range(A1.shape[0]):
        for a in range(q1):
            acc = s[j, a, 0]
            for k in range(pb):
                acc -= B1[j, a, k] * theta_b[k]
            b[a] = acc
        conditional_spherical(T, A1[j], b, sigma, eps[j], v, work, q1)
        for a in range(q1):
            x_full[slots[j, a]] = v[a] / sigma
    return x_full


@dataclass(frozen=True, eq=False)
class PartiallyCollapsedDensity(ChainFunctions):
    """The posterior of a Gaussian model with several grouping factors with the first factor's
    effects (and, where their priors allow, the fixed effects) integrated out, ready for nutpie
    (see the module docstring).

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
    rotated, reflectors
        The sampled terms whose levels' effects are centred by contrasts (:func:`_contrast_centred`),
        one row each, and their Householder reflections (:func:`contrast_rotation`).
    slots
        The first factor's coordinates in the full model's (levels x q₁, in the factor
        block's order of effects).
    first
        The columns of C (and of the rows' Z) of the first factor's effects.
    level_start
        Where each level's rows begin among the sorted rows (levels + 1).
    A1
        Z_j'Z_j per level of the first factor (levels x q₁ x q₁).
    B1, XX, mix, precision, shift
        With the fixed effects integrated out (p_b = p; else p_b = 0 and these are empty):
        Z_j'X̃_j per level (levels x q₁ x p_b), X̃'X̃, A (β = A θ_b, X̃ = X A), and θ_b's prior
        precisions Λ_b and Λ_b μ_b (0 for a flat prior).
    order
        The sorted rows' positions in the design.
    init
        seed -> initial point.
    centred
        Per term, whether it is centred (by contrasts when the fixed effects are integrated out).
    """

    blob: np.ndarray
    variables: list[Variable]
    coords: dict
    kept: np.ndarray
    rotated: np.ndarray
    reflectors: np.ndarray
    slots: np.ndarray
    first: np.ndarray
    level_start: np.ndarray
    A1: np.ndarray
    B1: np.ndarray
    XX: np.ndarray
    mix: np.ndarray
    precision: np.ndarray
    shift: np.ndarray
    order: np.ndarray
    init: object
    centred: tuple[bool, ...]

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates NUTS samples (the full model's without the integrated ones)."""
        return int(self.kept.size)

    @property
    def fixed_effects_integrated(self) -> bool:
        """Whether the fixed effects are integrated out (drawn exactly for each draw) rather than sampled."""
        return self.XX.shape[0] > 0

    def log_density(self, x: np.ndarray) -> tuple[float, np.ndarray]:
        """The log posterior density at x (up to a constant) and its exact gradient."""
        return log_density_kernel(np.asarray(x, float), self.blob, self.kept, self.rotated, self.reflectors, self.first,
                                  self.level_start, self.A1, self.B1, self.XX, self.mix, self.precision, self.shift)

    def coordinates(self, x: np.ndarray) -> np.ndarray:
        """The full model's coordinates at x, the integrated ones at 0 (:func:`coordinates_kernel`)."""
        return coordinates_kernel(np.asarray(x, float), self.blob, self.kept, self.rotated, self.reflectors)[0]

    def full_coordinates(self, x: np.ndarray, eps: np.ndarray, eps_b: np.ndarray | None = None) -> np.ndarray:
        """The full model's coordinates at x with the integrated ones drawn given the standard
        normals ``eps`` (levels x q₁) and ``eps_b`` (p_b; zeros if omitted): :func:`draw_kernel`."""
        eps_b = np.zeros(self.XX.shape[0]) if eps_b is None else np.asarray(eps_b, float)
        return draw_kernel(np.asarray(x, float), self.blob, self.kept, self.rotated, self.reflectors, self.slots, self.first,
                           self.level_start, self.A1, self.B1, self.XX, self.mix, self.precision, self.shift,
                           np.asarray(eps, float), eps_b)

    def draw(self, x: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """The posterior variables at the draw x, the integrated effects drawn exactly given it."""
        eps = rng.standard_normal(self.slots.shape)
        return named_variables(self.blob, self.variables,
                               self.full_coordinates(x, eps, rng.standard_normal(self.XX.shape[0])))

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


def gaussian_fixed_effects_prior(blob: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For fixed-effect priors that are all Normal or flat (:func:`fixed_effects_integrable`), as
    the blob holds them: A (p x p, β = A θ_b: the population's map from its coordinates θ_b,
    :func:`bayesmix.bayes.density.population`), θ_b's prior precisions Λ_b (0 for a flat prior)
    and Λ_b μ_b. What a sampler that draws or integrates θ_b exactly from a Gaussian needs."""
    p = int(blob[P])
    spec = blob[int(blob[OFF_B_PRIOR]):int(blob[OFF_B_PRIOR]) + 4 * p].reshape(p, 4)
    assert np.isin(spec[:, 0], [FAMILIES["Normal"], FAMILIES["Flat"]]).all()
    normal = spec[:, 0] == FAMILIES["Normal"]
    precision = np.where(normal, 1.0 / np.where(normal, spec[:, 2], 1.0) ** 2, 0.0)
    origin = np.zeros(int(blob[N_DIM]))
    beta0 = population(origin, blob)[0]
    mix = np.zeros((p, p))
    for k in range(p):  # read off the population's map
        mix[:, k] = population(np.where(np.arange(origin.size) == k, 1.0, 0.0), blob)[0] - beta0
    return mix, precision, precision * np.where(normal, spec[:, 1], 0.0)


def contrast_rotation(V: np.ndarray) -> tuple[int, np.ndarray]:
    """The Householder reflections of the QR decomposition of V (levels x columns: per level of
    a term, the columns of X constant within its levels), Q = H_1 ⋯ H_k, whose first k columns
    span V's columns (k its rank): what the integrated fixed effects absorb of a term's
    effects, which :func:`_contrast_centred` leaves non-centred. Returns k and, per reflection,
    τ_j and v_j (levels + 1 numbers each; LAPACK's geqrf convention, v_j zero above j and 1 at j)."""
    n_levels = V.shape[0]
    if V.shape[1] == 0:
        return 0, np.zeros(0)
    _, R, pivots = scipy.linalg.qr(V, mode="economic", pivoting=True)
    diagonal = np.abs(np.diag(R))
    rank = int(np.sum(diagonal > 1e-10 * diagonal[0]))
    if rank == 0:
        return 0, np.zeros(0)
    (h, tau), _ = scipy.linalg.qr(V[:, np.sort(pivots[:rank])], mode="raw")
    out = np.zeros((rank, n_levels + 1))
    for j in range(rank):
        out[j, 0] = tau[j]
        out[j, 1 + j] = 1.0
        out[j, 2 + j:] = h[j + 1:, j]
    return rank, out.ravel()


def partially_collapsed_density(design, structure: Structure, priors: PriorSet, labels: list[str],
                                layouts: list[GroupLayout], coords: dict, centred: tuple[bool, ...],
                                auto: bool = False) -> PartiallyCollapsedDensity:
    """The nutpie model of the posterior of ``design`` (rows in memory) with the effects of
    ``structure``'s first factor block integrated out; the other terms centred where
    ``centred`` says so (the first block's terms are non-centred: see the module docstring).

    When every fixed effect's prior is Normal or flat and no centred term is nested in another
    factor, the fixed effects are integrated out too, and a centred term is centred by
    contrasts (:func:`_contrast_centred`: the intercept it would be centred on is integrated
    out); otherwise the fixed effects are sampled and centred terms centred on them. ``auto``
    (``centred`` is then ``parameterization="auto"``'s choice for the full model): with the
    fixed effects integrated out, the factors nested in no other are centred by contrasts from
    the lower threshold :data:`CONTRAST_CENTRED_PRECISION_RATIO`. The density's ``centred``
    says what was chosen."""
    block = structure.blocks[0]
    found = hierarchy(design)
    order = np.argsort(block.codes, kind="stable")
    rows = design.rows
    assert rows.weights is None and rows.offset is None
    sorted_rows = dataclasses.replace(rows, X=rows.X[order], codes=tuple(c[order] for c in rows.codes),
                                      z=tuple(z[order] for z in rows.z), index=rows.index[order], y=rows.y[order],
                                      frame=None)
    sorted_design = dataclasses.replace(design, source=sorted_rows)
    full = full_density(sorted_design, priors, labels, layouts, coords, (False,) * len(centred))
    blob = full.blob
    p = int(blob[P])
    levels = term_levels(blob)

    def sampled(choice: tuple[bool, ...]) -> tuple[bool, ...]:
        return tuple(c and k not in block.terms for k, c in enumerate(choice))

    def integrable(choice: tuple[bool, ...]) -> bool:
        return p > 0 and fixed_effects_integrable(priors) and not any(c and found.parent[k] >= 0 for k, c in enumerate(choice))

    if auto:
        chosen = informative(design, CONTRAST_CENTRED_PRECISION_RATIO)
        contrasts = sampled(tuple(chosen[term.group] for term in design.terms))
        if integrable(contrasts):
            centred = contrasts
    centred = sampled(centred)
    integrated = integrable(centred)
    if not integrated and any(centred):
        full = full_density(sorted_design, priors, labels, layouts, coords, centred)
        blob = full.blob
    columns = np.cumsum([0] + [term.q for term in design.terms])
    rotated, reflectors = [], []
    for k, term in enumerate(design.terms):
        if integrated and centred[k]:
            rank, householder = contrast_rotation(design.rows.X[found.first_rows[k]][:, found.constant[k]])
            rotated.append([term.q, columns[k], term.n_levels, levels[k, 1], rank, sum(r.size for r in reflectors)])
            reflectors.append(householder)
    rotated = np.array(rotated, np.int64).reshape(-1, 6)
    reflectors = np.concatenate([np.zeros(0)] + reflectors)
    first = ThetaMap.of(design, structure).columns[0].astype(np.int64)
    slots = np.empty((block.n_levels, block.q), np.int64)
    at_level = np.arange(block.n_levels)[:, None]
    for t, term_columns in zip(block.terms, block.term_slices):
        q_t = design.terms[t].q
        slots[:, term_columns] = int(blob[Z_START]) + int(levels[t, 1]) + at_level * q_t + np.arange(q_t)
    codes = block.codes[order]
    level_start = np.concatenate([[0], np.cumsum(np.bincount(codes, minlength=block.n_levels))]).astype(np.int64)
    z1 = block.z[order]

    def per_level(values: np.ndarray) -> np.ndarray:
        """Z_j' values per level (levels x q₁ x columns)."""
        return np.stack([np.bincount(codes, weights=z1[:, a] * c, minlength=block.n_levels)
                         for a in range(block.q) for c in values.T], axis=1).reshape(block.n_levels, block.q, -1)

    A1 = per_level(z1)
    if integrated:
        mix, precision, shift = gaussian_fixed_effects_prior(blob)
        X_tilde = sorted_rows.X @ mix
        B1, XX = per_level(X_tilde), X_tilde.T @ X_tilde
    else:
        precision = shift = np.zeros(0)
        mix, B1, XX = np.zeros((p, 0)), np.zeros((block.n_levels, block.q, 0)), np.zeros((0, 0))
    dropped = np.concatenate([slots.ravel(), np.arange(p if integrated else 0)])
    kept = np.setdiff1d(np.arange(int(blob[N_DIM])), dropped)
    coords = dict(full.coords)
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(kept.size)])
    return PartiallyCollapsedDensity(blob, full.variables, coords, kept, rotated, reflectors, slots, first, level_start, A1, B1,
                                     XX, mix, precision, shift, order, lambda seed: full.init(seed)[kept], centred)
