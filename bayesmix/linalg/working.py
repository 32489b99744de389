"""Compiled passes over the rows of a generalised linear mixed model, for PIRLS.

Each PIRLS step (:mod:`bayesmix.linalg.pirls`) reads every row a few times: the linear
predictor η = offset + Xβ + ZΛu, each row's log-likelihood ℓ_i(η_i), its score ∂ℓ_i/∂η_i
and its information -∂²ℓ_i/∂η_i², and sums over the rows of each level. Done with numpy,
each of these is a chain of whole-array operations, each allocating and reading a temporary
of n numbers; here each is one loop over the rows.

The mathematics stays in :mod:`bayesmix.families`: the loops call the family's compiled
functions for one observation (:func:`~bayesmix.families.link_inverse_row`,
:func:`~bayesmix.families.log_likelihood_row`,
:func:`~bayesmix.families.log_likelihood_derivatives_row`), selected by the family's and the
link's codes.
"""

from __future__ import annotations

import numpy as np

from ..families import link_inverse_row, log_likelihood_derivatives_row, log_likelihood_kernel_row, log_likelihood_row
from ..jit import njit


@njit(cache=True)
def log_likelihood_rows(family, link, y, weights, eta, dispersion):
    """ℓ_i(η_i) for each row: the family's log-likelihood at μ_i = g⁻¹(η_i)."""
    out = np.empty(eta.size)
    for i in range(eta.size):
        mu = link_inverse_row(link, eta[i])[0]
        out[i] = log_likelihood_row(family, y[i], mu, weights[i], dispersion)
    return out


@njit(inline="always")
def _score_information(family, link, canonical, y, weight, eta, mu, mu_eta, dispersion, link_step):
    """:func:`working_row` given μ and μ_η at η."""
    first, second = log_likelihood_derivatives_row(family, y, mu, weight, dispersion)
    if canonical:
        return first * mu_eta, -log_likelihood_derivatives_row(family, mu, mu, weight, dispersion)[1] * mu_eta * mu_eta
    h = link_step * max(1.0, abs(eta))
    mu_eta_eta = (link_inverse_row(link, eta + h)[1] - link_inverse_row(link, eta - h)[1]) / (2.0 * h)
    return first * mu_eta, -(second * mu_eta * mu_eta + first * mu_eta_eta)


@njit(inline="always")
def working_row(family, link, canonical, y, weight, eta, dispersion, link_step):
    """The score ∂ℓ/∂η and the observed information W = -∂²ℓ/∂η² of one row.

    With μ_η = dμ/dη: the score is ℓ'(μ) μ_η. For a canonical link the information is the
    Fisher information -ℓ''(μ; y = μ) μ_η² (equal to the observed one there); otherwise it
    is -(ℓ''(μ) μ_η² + ℓ'(μ) μ_ηη), with μ_ηη by a central difference of μ_η with step
    ``link_step`` max(1, |η|).
    """
    mu, mu_eta = link_inverse_row(link, eta)
    return _score_information(family, link, canonical, y, weight, eta, mu, mu_eta, dispersion, link_step)


@njit(inline="always")
def row_terms(family, link, canonical, y, weight, eta, dispersion, link_step):
    """ℓ(η) without its terms free of η and of the dispersion
    (:func:`~bayesmix.families.log_likelihood_kernel_row`), and the score and information
    (:func:`working_row`) of one row, from one evaluation of the link's inverse."""
    mu, mu_eta = link_inverse_row(link, eta)
    score, information = _score_information(family, link, canonical, y, weight, eta, mu, mu_eta, dispersion, link_step)
    return log_likelihood_kernel_row(family, y, mu, weight, dispersion), score, information


@njit(inline="always")
def weighted_working_response(score, information, base):
    """W ỹ and W ỹ² of one row, ỹ = base + score / W its working response (W the observed
    information, ``base`` the row's η less its fixed part): what PIRLS accumulates per level."""
    response = information * base + score
    return response, response * (base + score / information)


@njit(cache=True)
def working_rows(family, link, canonical, y, weights, eta, dispersion, link_step):
    """The score and the observed information of each row (:func:`working_row`)."""
    n = eta.size
    score, information = np.empty(n), np.empty(n)
    for i in range(n):
        score[i], information[i] = working_row(family, link, canonical, y[i], weights[i], eta[i], dispersion, link_step)
    return score, information


@njit(cache=True)
def add_level_products(total, codes, z, b):
    """total_i += z_i'b[codes_i] for each row i (Zb for one factor block, added to ``total``)."""
    q = z.shape[1]
    for i in range(total.size):
        s = 0.0
        level = codes[i]
        for k in range(q):
            s += z[i, k] * b[level, k]
        total[i] += s


@njit(cache=True)
def level_sums(codes, values, z, levels):
    """Σ over each level's rows of v_i z_i: shape (levels, q) (Z'v for one factor block)."""
    q = z.shape[1]
    out = np.zeros((levels, q))
    for i in range(values.size):
        level = codes[i]
        for k in range(q):
            out[level, k] += values[i] * z[i, k]
    return out


@njit(cache=True)
def level_matrix_products(codes, P, a):
    """P[codes_i] a_i for each row i: shape (n, q), from per-level (q, q) matrices P."""
    n, q = a.shape
    out = np.empty((n, q))
    for i in range(n):
        level = codes[i]
        for j in range(q):
            s = 0.0
            for k in range(q):
                s += P[level, j, k] * a[i, k]
            out[i, j] = s
    return out


@njit(cache=True, error_model="numpy")
def fixed_part(X, offset, beta, lo, hi, out):
    """offset_i + x_i'β for the rows lo:hi, into ``out``."""
    for i in range(lo, hi):
        s = offset[i]
        for k in range(beta.size):
            s += X[i, k] * beta[k]
        out[i] = s


@njit(cache=True, error_model="numpy")
def level_effects(T, u, b):
    """b = Λu for one level (Λ = T lower triangular, q x q)."""
    q = u.size
    for k in range(q):
        s = 0.0
        for m in range(k + 1):
            s += T[k, m] * u[m]
        b[k] = s


@njit(inline="always")
def information_slope_row(family, link, canonical, y, weight, eta, dispersion, link_step):
    """∂W/∂η of one row, W its observed information (:func:`working_row`), by a central difference
    with step ``link_step`` max(1, |η|), as :meth:`~bayesmix.linalg.pirls.GlmmRows.information_slope`."""
    h = link_step * max(1.0, abs(eta))
    return (working_row(family, link, canonical, y, weight, eta + h, dispersion, link_step)[1]
            - working_row(family, link, canonical, y, weight, eta - h, dispersion, link_step)[1]) / (2.0 * h)


@njit(inline="always")
def dispersion_slopes_row(family, link, canonical, y, weight, eta, dispersion, link_step):
    """∂/∂log φ of ℓ, of the score and of W for one row, by central differences in log φ, as
    :meth:`~bayesmix.linalg.pirls.GlmmRows.dispersion_slopes` (the terms of ℓ free of the
    dispersion cancel in the differences)."""
    up, down = dispersion * np.exp(link_step), dispersion * np.exp(-link_step)
    loglik_up, score_up, information_up = row_terms(family, link, canonical, y, weight, eta, up, link_step)
    loglik_down, score_down, information_down = row_terms(family, link, canonical, y, weight, eta, down, link_step)
    step = 2.0 * link_step
    return (loglik_up - loglik_down) / step, (score_up - score_down) / step, (information_up - information_down) / step
