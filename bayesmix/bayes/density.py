"""The collapsed model's log posterior density, compiled once and for all, handed to nutpie.

nutpie samples a PyMC model by compiling its log density with numba: 7-25 s per model, which
dwarfs the sampling itself for a model such as the music study's (about 1 s). Here the
collapsed model (:mod:`bayesmix.linalg.collapsed`) is written directly as a numba C callback
whose every model-specific number (sizes, priors, cross-products) is read from one float64
array, the *blob*, passed as nutpie's user data. Numba caches the callback on disk, so no
model is ever compiled: building one is packing an array.

Unconstrained coordinates, in order:

- ``θ_b`` (p): the fixed effects, with the intercept of the centred predictors in place of
  the intercept (``β_0 = θ_0 - Σ_j m_j θ_j``, m_j the column means), as in the PyMC model;
- ``log σ``;
- for each random-effects term: ``log sd`` (q_t), then, for correlated terms, the
  q_t(q_t - 1)/2 unconstrained canonical partial correlations ``y`` (Lewandowski, Kurowicka
  and Joe 2009; Stan's ``cholesky_factor_corr`` transform): ``z = tanh y``,
  ``L_i0 = z_i0``, ``L_ij = z_ij (1 - Σ_{k<j} L_ik²)^½``, ``L_ii = (1 - Σ_{k<i} L_ik²)^½``.

:class:`~bayesmix.bayes.model.BayesModel` hands it the standardised design and priors
(:mod:`bayesmix.bayes.standardise`), so that its coordinates are of order 1 at any scale of the data.
The likelihood reads the response through the cross-products of y - X c, with c its least-squares
coefficients (computed in double-double; β - c enters the likelihood), so that a response with
a large mean loses no precision.

The density is the sum of the priors (Normal or Student-t for ``θ_b``; half-normal,
half-Student-t or exponential for σ and the SDs; LKJ(η) for each correlation matrix through
its Cholesky factor, ``Σ_i (q - i - 1 + 2η - 2) log L_ii``), the log-Jacobians of the
transforms, and the collapsed log-likelihood, up to constants. Its gradient is exact
(reverse mode by hand through the transforms).
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numba import carray, types

from ..jit import cfunc, njit
from ..linalg.collapsed import collapsed_loglik_body, draw_effects
from .priors import Distribution, PriorSet

# Prior families, by code; parameters in the order of the bayesmix constructors.
FAMILIES = {"Normal": 0, "StudentT": 1, "HalfNormal": 2, "HalfStudentT": 3, "Exponential": 4, "Flat": 5}
LOCATION_FAMILIES = ("Normal", "StudentT", "Flat")
NO_PRIOR = -1.0
"""The code of an absent prior: a family without a dispersion (:func:`population`)."""
SCALE_FAMILIES = ("HalfNormal", "HalfStudentT", "Exponential")

# Header of the blob: sizes, then the offset of each section. The fields up to OFF_SD_PRIOR,
# which :func:`population` and :func:`chain_rule` read, begin the full density's blob too
# (:mod:`bayesmix.bayes.full_density`); POPULATION_HEADER is their number.
(TOTAL, P, Q, LEVELS, ROWS, INTERCEPT, TERMS, N_DIM, N_EXPANDED,
 OFF_MEANS, OFF_B_PRIOR, OFF_SIGMA_PRIOR, OFF_TERMS, OFF_SD_PRIOR, OFF_A11, OFF_A1X, OFF_AXX, OFF_SHIFT,
 HEADER) = range(19)
POPULATION_HEADER = OFF_SD_PRIOR + 1


@njit(cache=True)
def copy_into(out, values):
    """``out[:] = values`` for 1-D arrays, element by element: numba compiles a slice assignment
    from an array with its shape-mismatch message, seconds of string formatting on a cold cache."""
    for i in range(values.shape[0]):
        out[i] = values[i]


@njit(inline="always", error_model="numpy")
def matrix(values, start, rows, cols):
    """``values[start:start + rows * cols]`` (1-D, contiguous) as a rows x cols view, row-major.
    numba's ``reshape`` calls a C helper, about 20 ns a call: the densities read a dozen
    matrices from their blob per evaluation of a few microseconds."""
    return np.lib.stride_tricks.as_strided(values[start:start + rows * cols], shape=(rows, cols),
                                           strides=(cols * values.itemsize, values.itemsize))


@njit(cache=True, error_model="numpy")
def prior_log_density(spec, v):
    """Log density (up to a constant) of one prior at v, and its derivative."""
    code = spec[0]
    if code == 0:  # Normal(mu, sigma)
        z = (v - spec[1]) / spec[2]
        return -0.5 * z * z, -z / spec[2]
    if code == 1:  # StudentT(nu, mu, sigma)
        nu, d, s = spec[1], v - spec[2], spec[3]
        return -0.5 * (nu + 1.0) * np.log1p(d * d / (nu * s * s)), -(nu + 1.0) * d / (nu * s * s + d * d)
    if code == 2:  # HalfNormal(sigma)
        z = v / spec[1]
        return -0.5 * z * z, -z / spec[1]
    if code == 3:  # HalfStudentT(nu, sigma)
        nu, s = spec[1], spec[2]
        return -0.5 * (nu + 1.0) * np.log1p(v * v / (nu * s * s)), -(nu + 1.0) * v / (nu * s * s + v * v)
    if code == 5:  # Flat
        return 0.0, 0.0
    return -spec[1] * v, -spec[1]  # Exponential(lam)


@njit(cache=True, error_model="numpy")
def positive_prior(spec, t):
    """Prior of v = exp(t) with the log-Jacobian t: value and derivative in t; and v."""
    v = np.exp(t)
    value, slope = prior_log_density(spec, v)
    return value + t, v * slope + 1.0, v


@njit(cache=True, error_model="numpy")
def _corr_cholesky(y, qk, L):
    """Fill L (qk x qk) from the unconstrained y; return the log-Jacobian."""
    logjac = 0.0
    for i in range(qk):
        for j in range(qk):
            L[i, j] = 0.0
    L[0, 0] = 1.0
    k = 0
    for i in range(1, qk):
        c = 0.0
        for j in range(i):
            z = np.tanh(y[k])
            k += 1
            s = np.sqrt(1.0 - c)
            logjac += np.log1p(-z * z)
            if j > 0:
                logjac += np.log(s)
            L[i, j] = z * s
            c += L[i, j] * L[i, j]
        L[i, i] = np.sqrt(1.0 - c)
    return logjac


@njit(cache=True, error_model="numpy")
def _corr_cholesky_backward(y, qk, L, dL, eta, dy):
    """Gradient in y of (lik + LKJ + log-Jacobian), given dL, the likelihood's gradient in L."""
    k0 = 0
    for i in range(1, qk):
        a = qk - i - 1 + 2.0 * eta - 2.0
        s_i = L[i, i]
        G = -(dL[i, i] + a / s_i) / (2.0 * s_i)  # gradient in c_i = Σ_{k<i} L_ik²
        for j in range(i - 1, -1, -1):
            z = np.tanh(y[k0 + j])
            s_j = np.sqrt(1.0 - _row_sumsq(L, i, j))
            g_L = dL[i, j] + 2.0 * L[i, j] * G
            g_z = g_L * s_j
            dy[k0 + j] = g_z * (1.0 - z * z) - 2.0 * z
            if j > 0:
                g_s = g_L * z + 1.0 / s_j
                G += -g_s / (2.0 * s_j)
        k0 += i


@njit(cache=True, error_model="numpy")
def _row_sumsq(L, i, j):
    c = 0.0
    for k in range(j):
        c += L[i, k] * L[i, k]
    return c


@njit(cache=True, error_model="numpy")
def population(x, blob):
    """β, the dispersion, the SDs, the block-diagonal correlation factor, and the log prior with
    Jacobians (and its gradient) at x: :func:`population_into` into new arrays.

    The dispersion (σ here) is NaN, and takes no coordinate, when its prior's code is
    :data:`NO_PRIOR` (a family without one, in the full density)."""
    p, q = int(blob[P]), int(blob[Q])
    beta, sd, R, grad = np.empty(p), np.empty(q), np.empty((q, q)), np.empty(x.shape[0])
    sigma, lp = population_into(x, blob, beta, sd, R, grad)
    return beta, sigma, sd, R, lp, grad


@njit(cache=True, error_model="numpy")
def population_into(x, blob, beta, sd, R, grad):
    """Fill β (p), the SDs (q), the block-diagonal correlation factor R (q x q) and the log
    prior's gradient (``grad``, zero beyond the population's coordinates) at x; return the
    dispersion (see :func:`population`) and the log prior with Jacobians. Nothing is allocated:
    the full density passes views of one workspace."""
    p, q, icpt, nterms = int(blob[P]), int(blob[Q]), int(blob[INTERCEPT]), int(blob[TERMS])
    means = blob[int(blob[OFF_MEANS]):int(blob[OFF_MEANS]) + p]
    bspec = matrix(blob, int(blob[OFF_B_PRIOR]), p, 4)
    sspec = matrix(blob, int(blob[OFF_SD_PRIOR]), q, 4)
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    for i in range(grad.shape[0]):
        grad[i] = 0.0
    lp = 0.0
    for j in range(p):
        beta[j] = x[j]
    for j in range(p):
        value, slope = prior_log_density(bspec[j], x[j])
        lp += value
        grad[j] = slope
        if icpt >= 0 and j != icpt:
            beta[icpt] -= means[j] * x[j]
    sigma, pos = np.nan, p
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR:
        value, slope, sigma = positive_prior(blob[int(blob[OFF_SIGMA_PRIOR]):], x[p])
        lp += value
        grad[p] = slope
        pos += 1
    for i in range(q):  # the block-diagonal Cholesky factor of the correlations: I outside the correlated blocks
        for j in range(q):
            R[i, j] = 1.0 if i == j else 0.0
    for t in range(nterms):
        qk, correlated, eta, col = int(tspec[t, 0]), tspec[t, 1] > 0, tspec[t, 2], int(tspec[t, 3])
        for i in range(qk):
            value, slope, v = positive_prior(sspec[col + i], x[pos + i])
            sd[col + i] = v
            lp += value
            grad[pos + i] = slope
        pos += qk
        if correlated:
            m = qk * (qk - 1) // 2
            block = R[col:col + qk, col:col + qk]
            lp += _corr_cholesky(x[pos:pos + m], qk, block)
            for i in range(1, qk):
                lp += (qk - i - 1 + 2.0 * eta - 2.0) * np.log(block[i, i])
            pos += m
    return sigma, lp


@njit(inline="always", error_model="numpy")
def _log_density(x, blob, out, q):
    """The log posterior density at an unconstrained point x (up to a constant), its gradient into ``out``."""
    beta, sigma, sd, R, lp, grad = population(x, blob)
    if not (np.isfinite(lp) and 0.0 < sigma < np.inf and np.all(sd > 0.0) and np.all(np.isfinite(sd))):
        return -np.inf  # outside the support in floating point (far out in the tails)
    A11, A1X, AXX = _cross_products(blob)
    shift = blob[int(blob[OFF_SHIFT]):int(blob[OFF_SHIFT]) + beta.shape[0]]
    value, d_beta, d_C, d_sigma = collapsed_loglik_body(
        beta - shift, sd.reshape((q, 1)) * R, sigma, A11, A1X, AXX, blob[ROWS], True, q, np.empty((0, q))
    )
    if not np.isfinite(value):
        return -np.inf
    chain_rule(x, blob, grad, sigma, sd, R, d_beta, d_C, d_sigma)
    copy_into(out, grad)
    return lp + value


@functools.cache
def log_density_kernel(q: int):
    """:func:`_log_density` compiled for q effects per level (a closure over q only, so that
    numba's disk cache, whose key includes the closure, finds it again in a new process)."""

    @njit(cache=True, error_model="numpy")
    def log_density(x, blob, out):
        return _log_density(x, blob, out, q)

    return log_density


@njit(cache=True, error_model="numpy")
def _cross_products(blob):
    p, q, nl = int(blob[P]), int(blob[Q]), int(blob[LEVELS])
    A11 = blob[int(blob[OFF_A11]):int(blob[OFF_A11]) + nl * q * q].reshape((nl, q, q))
    A1X = blob[int(blob[OFF_A1X]):int(blob[OFF_A1X]) + nl * q * (p + 1)].reshape((nl, q, p + 1))
    AXX = blob[int(blob[OFF_AXX]):int(blob[OFF_AXX]) + (p + 1) * (p + 1)].reshape((p + 1, p + 1))
    return A11, A1X, AXX


@njit(cache=True, error_model="numpy")
def chain_rule(x, blob, grad, sigma, sd, R, d_beta, d_C, d_sigma):
    """Add the likelihood's gradient in (β, C, σ) to ``grad``, in the unconstrained coordinates
    (C = diag(sd) R; σ, the dispersion, when it has a coordinate: see :func:`population`)."""
    p, icpt, nterms = int(blob[P]), int(blob[INTERCEPT]), int(blob[TERMS])
    for j in range(p):
        grad[j] += d_beta[j]
        if icpt >= 0 and j != icpt:
            grad[j] -= blob[int(blob[OFF_MEANS]) + j] * d_beta[icpt]
    pos = p
    if blob[int(blob[OFF_SIGMA_PRIOR])] != NO_PRIOR:
        grad[p] += sigma * d_sigma
        pos += 1
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    for t in range(nterms):
        qk, correlated, eta, col = int(tspec[t, 0]), tspec[t, 1] > 0, tspec[t, 2], int(tspec[t, 3])
        for i in range(qk):
            d_sd = 0.0
            for j in range(i + 1):
                d_sd += d_C[col + i, col + j] * R[col + i, col + j]
            grad[pos + i] += sd[col + i] * d_sd
        pos += qk
        if correlated:
            m = qk * (qk - 1) // 2
            dL = np.zeros((qk, qk))
            for i in range(qk):
                for j in range(i + 1):
                    dL[i, j] = d_C[col + i, col + j] * sd[col + i]
            dy = np.empty(m)
            _corr_cholesky_backward(x[pos:pos + m], qk, R[col:col + qk, col:col + qk], dL, eta, dy)
            for k in range(m):
                grad[pos + k] += dy[k]
            pos += m


@njit(cache=True, error_model="numpy")
def expand(x, blob, out):
    """Fill out with β, σ, the SDs, the correlations (pairs i < j by term) and C = diag(sd) R."""
    p, q, nterms = int(blob[P]), int(blob[Q]), int(blob[TERMS])
    beta, sigma, sd, R, _, _ = population(x, blob)
    tspec = matrix(blob, int(blob[OFF_TERMS]), nterms, 4)
    k = 0
    for j in range(p):
        out[k] = beta[j]
        k += 1
    out[k] = sigma
    k += 1
    for i in range(q):
        out[k] = sd[i]
        k += 1
    for t in range(nterms):
        qk, col = int(tspec[t, 0]), int(tspec[t, 3])
        if tspec[t, 1] > 0:
            for i in range(qk):
                for j in range(i + 1, qk):
                    r = 0.0
                    for c in range(qk):
                        r += R[col + i, col + c] * R[col + j, col + c]
                    out[k] = r
                    k += 1
    for i in range(q):
        for j in range(q):
            out[k] = sd[i] * R[i, j]
            k += 1


LOGP_SIGNATURE = types.int64(
    types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.CPointer(types.double), types.voidptr
)
EXPAND_SIGNATURE = types.int64(
    types.uint64, types.uint64, types.CPointer(types.double), types.CPointer(types.double), types.voidptr
)


@njit(cache=True, error_model="numpy")
def blob_at(address):
    """The blob at ``address`` (nutpie's user data), as an array of its own length (its first entry)."""
    total = int(carray(address, (1,), dtype=np.float64)[TOTAL])
    return carray(address, (total,), dtype=np.float64)


@njit(inline="always", error_model="numpy")
def logp_status(value, out, logp_):
    """Write the log density ``value`` to nutpie's ``logp_`` and return the callback's status: 0,
    4 when the density is not finite, 3 when an entry of its gradient ``out`` is not (what every
    precompiled density's log-density callback returns)."""
    carray(logp_, (1,))[0] = value
    if not np.isfinite(value):
        return 4
    for i in range(out.shape[0]):
        if not np.isfinite(out[i]):
            return 3
    return 0


def _expand_callback(dim, n_expanded, x_, out_, user_data):
    blob = blob_at(user_data)
    if dim != int(blob[N_DIM]) or n_expanded != int(blob[N_EXPANDED]):
        return -1
    expand(carray(x_, (dim,)), blob, carray(out_, (n_expanded,)))
    return 0


@functools.cache
def callbacks(q: int):
    """The C callbacks of the log density (for q effects per level) and of the expansion,
    compiled on first use and cached on disk."""

    def logp_callback(dim, x_, out_, logp_, user_data):
        blob = blob_at(user_data)
        if dim != int(blob[N_DIM]):
            return -1
        x = carray(x_, (dim,))
        out = carray(out_, (dim,))
        value = _log_density(x, blob, out, q)
        return logp_status(value, out, logp_)

    return (
        cfunc(LOGP_SIGNATURE, cache=True, error_model="numpy")(logp_callback),
        _expand_cfunc(),
    )


@functools.cache
def _expand_cfunc():
    return cfunc(EXPAND_SIGNATURE, cache=True, error_model="numpy")(_expand_callback)


def natively_supported(priors: PriorSet) -> bool:
    """Whether every prior has a native implementation (else the PyMC model is used)."""
    location = ([priors.intercept] if priors.intercept is not None else []) + list(priors.b.values())
    scale = [d for d in (priors.dispersion, *priors.sd.values()) if d is not None]
    return all(d.name in LOCATION_FAMILIES for d in location) and all(d.name in SCALE_FAMILIES for d in scale)


def prior_spec(dist: Distribution | None) -> list[float]:
    """A prior as :func:`prior_log_density` reads it: its code and parameters (:data:`NO_PRIOR` for None)."""
    values = [NO_PRIOR] if dist is None else [float(FAMILIES[dist.name]), *dist.params.values()]
    return values + [0.0] * (4 - len(values))


def population_sections(design, priors: PriorSet, labels: list[str]) -> tuple[list[np.ndarray], int, int]:
    """The blob sections that :func:`population` reads (the column means, the priors of β and of
    the dispersion, the terms, the priors of the SDs), the number of coordinates of β, the
    dispersion and the terms' covariances, and the number of free correlations."""
    names = list(design.fixed_names)
    icpt = names.index("Intercept") if "Intercept" in names else -1
    b_spec = [prior_spec(priors.intercept if j == icpt else priors.b[n]) for j, n in enumerate(names)]
    n_dim = len(names) + (priors.dispersion is not None)
    terms, sd_spec, col, n_pairs = [], [], 0, 0
    for label, term in zip(labels, design.terms):
        correlated = term.correlated and term.q > 1
        eta = priors.cor[label].params["eta"] if correlated else 0.0
        terms.append([term.q, float(correlated), eta, col])
        sd_spec += [prior_spec(priors.sd[(label, c)]) for c in term.columns]
        m = term.q * (term.q - 1) // 2 if correlated else 0
        n_dim += term.q + m
        n_pairs += m
        col += term.q
    sections = [np.asarray(design.x_means(), float), np.ravel(b_spec), np.asarray(prior_spec(priors.dispersion)),
                np.ravel(terms), np.ravel(sd_spec)]
    return sections, n_dim, n_pairs


@dataclass(frozen=True)
class Variable:
    """One posterior variable as nutpie reports it."""

    name: str
    shape: tuple[int, ...]
    dims: tuple[str, ...]


def pack(design, crossprod, priors: PriorSet, labels: list[str], layout, shift: np.ndarray | None = None
         ) -> tuple[np.ndarray, list[Variable], int]:
    """The blob of a collapsed model, its expanded variables and the number of unconstrained coordinates.

    ``crossprod`` may be those of the shifted response y - X c (``shift`` = c; see
    :func:`collapsed_cross_products`); the likelihood is then evaluated at β - c.
    """
    names = list(design.fixed_names)
    p, q = len(names), int(crossprod.A11.shape[1])
    icpt = names.index("Intercept") if "Intercept" in names else -1
    population_part, n_dim, n_pairs = population_sections(design, priors, labels)
    variables = [
        Variable("beta", (p,), ("coef",)),
        Variable("sigma", (), ()),
        Variable(f"sd_{layout.name}", (q,), (f"{layout.name}_effect",)),
    ]
    if n_pairs:
        variables.append(Variable(f"cor_{layout.name}", (n_pairs,), (f"{layout.name}_pair",)))
    variables.append(Variable("collapsed_chol", (q, q), ("collapsed_chol_dim_0", "collapsed_chol_dim_1")))
    n_expanded = sum(int(np.prod(v.shape)) for v in variables)
    sections = [
        *population_part, crossprod.A11.ravel(), crossprod.A1X.ravel(), crossprod.AXX.ravel(),
        np.zeros(p) if shift is None else np.asarray(shift, float),
    ]
    offsets = HEADER + np.concatenate([[0], np.cumsum([s.size for s in sections])])
    header = [offsets[-1], p, q, crossprod.A11.shape[0], design.n, icpt, len(design.terms), n_dim, n_expanded,
              *offsets[:-1]]
    blob = np.concatenate([np.asarray(header, float), *sections])
    return blob, variables, n_dim


def population_centre(design, priors: PriorSet, labels: list[str]) -> np.ndarray:
    """The centre of the priors in the coordinates of :func:`population`: each location prior's
    location (0 for a flat one), the log of each scale prior's scale, 0 for the correlations."""
    names = list(design.fixed_names)
    centre = [(priors.intercept if n == "Intercept" else priors.b[n]).params.get("mu", 0.0) for n in names]
    if priors.dispersion is not None:
        centre.append(np.log(_scale_centre(priors.dispersion)))
    for label, term in zip(labels, design.terms):
        centre += [np.log(_scale_centre(priors.sd[(label, c)])) for c in term.columns]
        if term.correlated and term.q > 1:
            centre += [0.0] * (term.q * (term.q - 1) // 2)
    return np.asarray(centre)


def initial_point(design, priors: PriorSet, labels: list[str], rng: np.random.Generator) -> np.ndarray:
    """A start as PyMC's: each prior's centre (log scale for SDs) jittered by U(-1, 1)."""
    centre = population_centre(design, priors, labels)
    return centre + rng.uniform(-1.0, 1.0, centre.size)


def _scale_centre(dist: Distribution) -> float:
    return 1.0 / dist.params["lam"] if dist.name == "Exponential" else dist.params["sigma"]


def log_density(blob: np.ndarray, x: np.ndarray) -> tuple[float, np.ndarray]:
    """The log density and its gradient at x (for tests and benchmarks)."""
    out = np.empty(int(blob[N_DIM]))
    value = log_density_kernel(int(blob[Q]))(np.asarray(x, float), blob, out)
    return value, out


def expanded(blob: np.ndarray, x: np.ndarray) -> np.ndarray:
    """The expanded variables at x, concatenated (for tests)."""
    out = np.empty(int(blob[N_EXPANDED]))
    expand(np.asarray(x, float), blob, out)
    return out


@dataclass(frozen=True)
class PackedDensity:
    """A precompiled model ready for nutpie: the model's blob, read by cached callbacks.

    nutpie samples it through :func:`bayesmix.bayes.nutpie_adapter.callback_model` (it is a
    :class:`~bayesmix.bayes.nutpie_adapter.CallbackDensity`). Subclasses give the callbacks
    for their blob, and ``with_data`` for a new response.
    """

    blob: np.ndarray
    variables: list[Variable]
    n_unconstrained: int
    coords: dict
    init: object  # seed -> initial point

    @property
    def user_data(self) -> np.ndarray:
        """What the callbacks read: the blob."""
        return self.blob

    @property
    def n_dim(self) -> int:
        """Number of unconstrained coordinates."""
        return self.n_unconstrained

    @property
    def n_expanded(self) -> int:
        """Total size of the expanded variables."""
        return int(self.blob[N_EXPANDED])


@dataclass(frozen=True)
class CollapsedDensity(PackedDensity):
    """A collapsed model ready for nutpie. ``with_data(A1X=..., AXX=...)`` returns the model for
    a new response (new cross-products)."""

    def callbacks(self):
        """The C callbacks of the log density and of the expansion (see :func:`callbacks`)."""
        return callbacks(int(self.blob[Q]))

    def compile(self) -> None:
        """Compile this model's numba kernels (the callbacks and the effect draws for its q), or
        load them from numba's disk cache: what happens once per installation."""
        p, q = int(self.blob[P]), int(self.blob[Q])
        callbacks(q)
        draw_effects(np.zeros((1, p)), np.eye(q)[None], np.ones(1), np.eye(q)[None], np.zeros((1, q, p + 1)),
                     np.zeros(1, dtype=np.uint64))

    def with_data(self, **arrays) -> "CollapsedDensity":
        """The same model with the cross-products ``A1X`` and/or ``AXX`` replaced."""
        blob = self.blob.copy()
        for name, section in (("A1X", OFF_A1X), ("AXX", OFF_AXX)):
            if name in arrays:
                values = np.asarray(arrays[name], float).ravel()
                start = int(blob[section])
                blob[start:start + values.size] = values
        return dataclasses.replace(self, blob=blob)


def collapsed_density(design, crossprod, priors: PriorSet, labels: list[str], layout, coords: dict,
                      shift: np.ndarray | None = None) -> CollapsedDensity:
    """The nutpie model of the collapsed posterior of ``design`` (see the module docstring and :func:`pack`)."""
    blob, variables, n_dim = pack(design, crossprod, priors, labels, layout, shift)
    q = int(crossprod.A11.shape[1])
    coords = {k: pd.Index(v) for k, v in coords.items() if k != "obs"}
    coords["collapsed_chol_dim_0"] = coords["collapsed_chol_dim_1"] = pd.RangeIndex(q)
    coords["unconstrained_parameter"] = pd.Index([f"x_{i}" for i in range(n_dim)])

    def init(seed):
        return initial_point(design, priors, labels, np.random.default_rng(seed))

    return CollapsedDensity(blob=blob, variables=variables, n_unconstrained=n_dim, coords=coords, init=init)


@dataclass(frozen=True, eq=False)
class ThetaMap:
    """Where θ of a :class:`~bayesmix.data.layout.Structure` sits in C = diag(sd) R, the
    block-diagonal factor (one row and column per effect, terms in formula order) of
    :func:`population`: the one home of the mapping between the densities' C and the blocked
    factorisation's θ (per factor block, θ lists the entries of Λ = C restricted to the block's
    terms, in the block's order).

    Attributes
    ----------
    structure
        θ's layout.
    columns
        Per factor block, the columns of C of its effects (in the block's order).
    """

    structure: object
    columns: tuple[np.ndarray, ...]

    @classmethod
    def of(cls, design, structure) -> "ThetaMap":
        """The map for ``design`` and its structure (:func:`~bayesmix.data.layout.structure_of`)."""
        starts = np.cumsum([0] + [term.q for term in design.terms])
        columns = tuple(np.concatenate([np.arange(starts[t], starts[t] + design.terms[t].q) for t in block.terms])
                        for block in structure.blocks)
        return cls(structure, columns)

    def positions(self) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols): θ's entry i is C[rows[i], cols[i]]."""
        rows, cols = np.empty(self.structure.n_theta, np.int64), np.empty(self.structure.n_theta, np.int64)
        for block, columns in zip(self.structure.blocks, self.columns):
            at = slice(block.theta_offset, block.theta_offset + block.n_theta)
            rows[at], cols[at] = columns[block.theta_rows], columns[block.theta_cols]
        return rows, cols

    def theta(self, C: np.ndarray) -> np.ndarray:
        """θ with the entries of C (Λ = C per factor block)."""
        return C[self.positions()]

    def d_C(self, d_theta: np.ndarray, q: int) -> np.ndarray:
        """A gradient in θ as one in C (q x q, zero off the terms' templates)."""
        d_C = np.zeros((q, q))
        np.add.at(d_C, self.positions(), d_theta)
        return d_C
