"""Response families: everything about the distribution of the response given its mean.

A mixed model splits into a *predictor* (the linear predictor η = Xβ + Zu, with the
random-effects layout and the linear algebra of :mod:`bayesmix.linalg`) and a *response*:
how y is distributed given μ = g⁻¹(η). lme4 keeps the two apart (``merPredD`` beside
``lmerResp`` / ``glmResp``), and MixedModels.jl's ``GeneralizedLinearMixedModel`` holds a
linear mixed model (its local, PIRLS, approximation) plus a ``GlmResp``. Here the response
side is a :class:`Family` object carried by the :class:`~bayesmix.Design`; it owns

- which responses (and prior weights) are valid (:meth:`Family.check_dtype`,
  :meth:`Family.check_values`, :meth:`Family.check_varies`), called by the data layer for
  pandas and dask input alike;
- the link g and its inverse (:meth:`Family.link_function`, :meth:`Family.inverse_link`,
  :meth:`Family.inverse_link_derivative`, :attr:`Family.canonical`) and the variance
  function V(μ);
- the log-likelihood of y given μ, the dispersion and the prior weights, with all its
  normalising constants, its first two derivatives in μ, the unit deviance and the deviance
  residuals, and the starting means of an iterative fit (:meth:`Family.initial_mu`); the
  links' inverses and the binomial and Poisson log-likelihoods are written once, as compiled
  (numba) functions of one observation that the numpy methods apply to arrays and PIRLS calls
  inside its own loops (:mod:`bayesmix.linalg.working`);
- predictive draws (the noise a posterior predictive draw adds to μ);
- whether it has a dispersion parameter and its default prior scale, the name and
  parameters of its distribution as the Bayesian backend builds it, and whether per-group
  sufficient statistics exist for it (the collapsed sampler, dask and Parquet input, and
  REML's cross-products need them).

The families are :class:`Gaussian` (identity or log link), :class:`Binomial` (logit, probit
or cloglog), :class:`Poisson` (log) and :class:`NegativeBinomial` (NB2, log). Their links
are R's ``make.link``, with its guards against under- and overflow, in :data:`LINKS`.

The *dispersion* is each family's own parameter, in its natural parametrisation: the
residual standard deviation σ for the Gaussian (Var y = σ²/w), the shape θ of the negative
binomial (Var y = μ + μ²/θ; R's ``theta``, glmmTMB's dispersion); the binomial and Poisson
have none (pass None). Prior *weights* w are R's ``weights``: the number of trials for the
binomial (y is then the proportion of successes), precisions for the Gaussian, and factors
multiplying the log-likelihood for the Poisson and the negative binomial.

This module imports only numpy, pandas, scipy, :mod:`bayesmix.errors` and :mod:`bayesmix.jit` (numba): it sits below the data
layer, which validates responses through it.
"""

from __future__ import annotations

import abc
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd
from scipy import special, stats

from .errors import ArgumentError, DataError
from .jit import njit

__all__ = [
    "FAMILY_NAMES",
    "LINKS",
    "Binomial",
    "Family",
    "Gaussian",
    "Link",
    "NegativeBinomial",
    "Poisson",
    "as_family",
    "check_supported",
]

#: R's ``.Machine$double.eps``: the guard of R's link inverses.
EPS = np.finfo(float).eps


@dataclass(frozen=True)
class Link:
    """A link function g, with η = g(μ), its inverse and the derivative dμ/dη of the inverse.

    Attributes
    ----------
    name
        The link's name, as R spells it (``"identity"``, ``"logit"``, ``"log"``).
    link
        g: mean -> linear predictor (R's ``linkfun``).
    inverse
        g⁻¹: linear predictor -> mean (R's ``linkinv``), kept inside the mean's open range
        as R keeps it (so that the variance and the log-likelihood stay finite).
    inverse_derivative
        dμ/dη at η (R's ``mu.eta``), which PIRLS weights need; at least ``EPS`` where R's is.
    """

    name: str
    link: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    inverse_derivative: Callable[[np.ndarray], np.ndarray]


def _identity(x):
    """The argument itself (not a copy: the identity link changes no number)."""
    return x


# ----- the elementwise mathematics, compiled -----------------------------------------------
# Each link's inverse and each family's log-likelihood is written once, for one number, as a
# compiled (numba) function selected by a code: the numpy methods below apply it to arrays,
# and PIRLS's fused passes over the rows (:mod:`bayesmix.linalg.working`) call it inside
# their own loops. Numba raises no floating-point warnings, so R's guards below are all the
# protection against over- and underflow there is.

#: The code of each link in :func:`link_inverse_row`.
LINK_CODES: dict[str, int] = {"identity": 0, "log": 1, "logit": 2, "probit": 3, "cloglog": 4}

#: R's ``THRESH``: beyond ±30 the logistic inverse and its derivative are held constant.
LOGIT_THRESHOLD = 30.0

#: R's probit threshold ``-qnorm(.Machine$double.eps)``: η is clamped to ± this before Φ.
PROBIT_THRESHOLD = float(-special.ndtri(EPS))

_SQRT_HALF = math.sqrt(0.5)
_SQRT_2PI = math.sqrt(2.0 * math.pi)


@njit(cache=True)
def link_inverse_row(code, eta):
    """(μ, dμ/dη) at one η for the link with code ``code`` (:data:`LINK_CODES`), as R's
    ``make.link`` computes them.

    - identity: (η, 1);
    - log: max(exp(η), ε) for both;
    - logit: e/(1 + e) and e/(1 + e)², e = exp(η), with e held at ε below η = -30 and at 1/ε
      above 30, and the derivative ε where |η| > 30;
    - probit: Φ(η) with η clamped to ±``PROBIT_THRESHOLD`` (Φ as cephes' ``ndtr`` computes it),
      and max(φ(η), ε);
    - cloglog: 1 - exp(-exp(η)) held inside [ε, 1 - ε], and max(e exp(-e), ε) with
      e = exp(min(η, 700)).
    """
    if code == 0:
        return eta, 1.0
    if code == 1:
        e = max(math.exp(eta), EPS)
        return e, e
    if code == 2:
        if eta < -LOGIT_THRESHOLD:
            e = EPS
        elif eta > LOGIT_THRESHOLD:
            e = 1.0 / EPS
        else:
            e = math.exp(eta)
        slope = EPS if abs(eta) > LOGIT_THRESHOLD else e / ((1.0 + e) * (1.0 + e))
        return e / (1.0 + e), slope
    if code == 3:
        x = min(max(eta, -PROBIT_THRESHOLD), PROBIT_THRESHOLD) * _SQRT_HALF
        z = abs(x)
        if z < _SQRT_HALF:
            mu = 0.5 + 0.5 * math.erf(x)
        else:
            mu = 0.5 * math.erfc(z)
            if x > 0.0:
                mu = 1.0 - mu
        return mu, max(math.exp(-0.5 * eta * eta) / _SQRT_2PI, EPS)
    if code == 4:
        mu = min(max(-math.expm1(-math.exp(eta)), EPS), 1.0 - EPS)
        e = math.exp(min(eta, 700.0))
        return mu, max(e * math.exp(-e), EPS)
    return math.nan, math.nan


@njit(cache=True)
def _link_inverse_rows(code, eta):
    """μ and dμ/dη for a flat array of η."""
    mu, slope = np.empty(eta.size), np.empty(eta.size)
    for i in range(eta.size):
        mu[i], slope[i] = link_inverse_row(code, eta[i])
    return mu, slope


def _link_inverse(code: int, which: int, eta):
    """μ (``which`` 0) or dμ/dη (``which`` 1) at η, any shape, by :func:`link_inverse_row`."""
    eta = np.asarray(eta, dtype=float)
    return _link_inverse_rows(code, np.ascontiguousarray(eta).ravel())[which].reshape(eta.shape)


@njit(cache=True)
def _xlogy(x, y):
    """x log y, and 0 where x = 0 (scipy's ``xlogy``)."""
    return 0.0 if x == 0.0 and not math.isnan(y) else x * math.log(y)


#: The code of each family in the compiled likelihood functions (:func:`log_likelihood_row`,
#: :func:`log_likelihood_derivatives_row`, :func:`log_density_row`).
BINOMIAL_CODE, POISSON_CODE = 1, 2
GAUSSIAN_CODE, NEGATIVE_BINOMIAL_CODE = 0, 3

#: The family codes for which :func:`log_likelihood_row` and :func:`log_likelihood_derivatives_row`
#: are written (what the per-level PIRLS of :mod:`bayesmix.linalg.levelwise` needs).
ROW_LIKELIHOOD_CODES = frozenset({GAUSSIAN_CODE, BINOMIAL_CODE, POISSON_CODE, NEGATIVE_BINOMIAL_CODE})

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)


@njit(cache=True)
def log_likelihood_row(code, y, mu, weight, dispersion):
    """ℓ(y; μ, φ, w) of one observation for the family with code ``code``, with its normalising
    constants (see each family's :meth:`Family.log_likelihood`): the sum of
    :func:`log_likelihood_kernel_row` and :func:`log_likelihood_constant_row`.

    The binomial's and the Poisson's numpy methods apply it; the Gaussian's and the negative
    binomial's keep scipy's (whose log-coefficient of the negative binomial, through ``betaln``,
    stays exact at any θ, where the one here has the relative error of
    :data:`NB_SERIES_COUNTS`), and the per-level PIRLS of one grouping factor
    (:mod:`bayesmix.linalg.levelwise`) calls its two parts for every family.
    """
    return log_likelihood_kernel_row(code, y, mu, weight, dispersion) + log_likelihood_constant_row(code, y, weight)


@njit(cache=True)
def log_likelihood_constant_row(code, y, weight):
    """The terms of ℓ free of μ and of the dispersion: log C(w, k) of the binomial (k = w y
    successes of w trials), -w log y! of the Poisson and the negative binomial, and
    (log w - log 2π)/2 of the Gaussian."""
    if code == BINOMIAL_CODE:
        k = weight * y
        if k > 0.0 and k < weight:  # log C(n, 0) = log C(n, n) = 0: every row of a 0/1 response
            return math.lgamma(weight + 1.0) - math.lgamma(k + 1.0) - math.lgamma(weight - k + 1.0)
        return 0.0
    if code == POISSON_CODE or code == NEGATIVE_BINOMIAL_CODE:
        return -weight * math.lgamma(y + 1.0)
    if code == GAUSSIAN_CODE:
        return 0.5 * math.log(weight) - _LOG_SQRT_2PI
    return math.nan


@njit(cache=True)
def log_likelihood_kernel_row(code, y, mu, weight, dispersion):
    """The terms of ℓ that depend on μ or the dispersion (:func:`log_likelihood_row` without
    :func:`log_likelihood_constant_row`)."""
    if code == BINOMIAL_CODE:
        k, rest = weight * y, weight * (1.0 - y)
        return _xlogy(k, mu) + (0.0 if rest == 0.0 else rest * math.log1p(-mu))
    if code == POISSON_CODE:
        return weight * (_xlogy(y, mu) - mu)
    if code == NEGATIVE_BINOMIAL_CODE:
        theta = dispersion
        return weight * (_rising_log_factorial(y, theta)[0] - theta * math.log1p(mu / theta) + _xlogy(y, mu / (mu + theta)))
    if code == GAUSSIAN_CODE:
        r = y - mu
        return -0.5 * weight * r * r / (dispersion * dispersion) - math.log(dispersion)
    return math.nan


@njit(cache=True)
def log_likelihood_derivatives_row(code, y, mu, weight, dispersion):
    """∂ℓ/∂μ and ∂²ℓ/∂μ² of one observation for the family with code ``code``."""
    if code == BINOMIAL_CODE:
        return weight * (y - mu) / (mu * (1.0 - mu)), -weight * (y / (mu * mu) + (1.0 - y) / ((1.0 - mu) * (1.0 - mu)))
    if code == POISSON_CODE:
        return weight * (y / mu - 1.0), -weight * y / (mu * mu)
    if code == NEGATIVE_BINOMIAL_CODE:
        total = mu + dispersion
        return weight * (y / mu - (y + dispersion) / total), weight * ((y + dispersion) / (total * total) - y / (mu * mu))
    if code == GAUSSIAN_CODE:
        precision = weight / (dispersion * dispersion)
        return precision * (y - mu), -precision
    return math.nan, math.nan


#: Below this count, log Γ(y + θ) - log Γ(θ) and ψ(y + θ) - ψ(θ) are summed term by term
#: (exact at any θ); from it on, they are differences of log Γ and ψ, whose relative error
#: grows as ε θ / y: negligible for θ below 10⁸, far beyond what a negative binomial's
#: shape is ever estimated at (a larger θ is a Poisson response).
NB_SERIES_COUNTS = 16

_LOG_HALF = math.log(0.5)


@njit(cache=True)
def _log_normal_cdf(x):
    """log Φ(x) and φ(x)/Φ(x) (the inverse Mills ratio), accurate in the far lower tail, where
    Φ underflows: there the asymptotic series Φ(x) = φ(x)/|x| (1 - 1/x² + 3/x⁴ - 15/x⁶ + 105/x⁸ ...)."""
    if x > -35.0:
        cdf = 0.5 * math.erfc(-x * _SQRT_HALF)
        return math.log(cdf), math.exp(-0.5 * x * x) / _SQRT_2PI / cdf
    r = 1.0 / (x * x)
    series = 1.0 - r * (1.0 - r * (3.0 - r * (15.0 - r * 105.0)))
    return -0.5 * x * x - math.log(-x * _SQRT_2PI) + math.log(series), -x / series


@njit(cache=True)
def log1p_from(x, total):
    """log(1 + x) for x >= 0 given ``total`` = 1 + x in floating point, to within 5 units in the
    last place like ``log1p`` (Goldberg 1991, Theorem 4: log(total) x / (total - 1), total - 1
    exact), with one ``log`` and one division: about 5 ns where libm's ``log1p`` takes 11, in the
    logit row that a sampler evaluates for every row."""
    if total == 1.0:
        return x
    return math.log(total) * (x / (total - 1.0))


@njit(cache=True)
def _log_mean_and_complement(code, eta):
    """log μ, log(1 - μ) and their derivatives in η for a link onto (0, 1), computed from η
    directly (no rounding of μ to 1, and no clamping of η: exact gradients in both tails)."""
    if code == 2:  # logit: μ = 1/(1 + e^-η); with e = exp(-|η|) one exp and one log
        e = math.exp(-abs(eta))
        total = 1.0 + e
        log_total = log1p_from(e, total)  # log(1 + e): softplus(-|η|)
        inverse = 1.0 / total
        # selections, not branches on the sign of η (which a sampler's rows take at random: a
        # mispredicted branch per row cost a quarter of the row)
        positive = eta >= 0.0
        return ((-log_total) if positive else eta - log_total, (-eta - log_total) if positive else -log_total,
                e * inverse if positive else inverse, (-inverse) if positive else -e * inverse)
    if code == 3:  # probit: μ = Φ(η), 1 - μ = Φ(-η)
        log_mu, ratio = _log_normal_cdf(eta)
        log_rest, ratio_rest = _log_normal_cdf(-eta)
        return log_mu, log_rest, ratio, -ratio_rest
    # cloglog: μ = 1 - exp(-e^η), 1 - μ = exp(-e^η)
    e = math.exp(eta)
    if eta < -30.0:  # log(1 - exp(-e)) = log e - e/2 + O(e²), where e underflows
        log_mu = eta - 0.5 * e
    else:
        log_mu = math.log1p(-math.exp(-e)) if e > -_LOG_HALF else math.log(-math.expm1(-e))
    slope = 1.0 if e == 0.0 else (0.0 if e > 700.0 else e / math.expm1(e))
    return log_mu, -e, slope, -e


@njit(cache=True)
def _digamma(x):
    """ψ(x) for x > 0: the recurrence up to x ≥ 6, then the asymptotic series (error below 1e-15)."""
    out = 0.0
    while x < 6.0:
        out -= 1.0 / x
        x += 1.0
    r = 1.0 / (x * x)
    return out + math.log(x) - 0.5 / x - r * (1.0 / 12 - r * (1.0 / 120 - r * (1.0 / 252 - r * (1.0 / 240 - r / 132))))


@njit(cache=True)
def _rising_log_factorial(y, theta):
    """log Γ(y + θ) - log Γ(θ) and its derivative ψ(y + θ) - ψ(θ) in θ, for a count y."""
    if y < NB_SERIES_COUNTS:
        value, slope = 0.0, 0.0
        for k in range(int(y)):
            value += math.log(theta + k)
            slope += 1.0 / (theta + k)
        return value, slope
    return math.lgamma(y + theta) - math.lgamma(theta), _digamma(y + theta) - _digamma(theta)


@njit(cache=True)
def log_density_row(family, link, y, eta, weight, dispersion):
    """One observation's log-likelihood as a function of the linear predictor η, without the
    terms free of η and of the dispersion, and its derivatives in η and in the dispersion:
    what a sampler of the posterior evaluates at every row.

    ``family`` is a family's :attr:`Family.code`, ``link`` its link's code; y, the weight and
    the dispersion as in :meth:`Family.log_likelihood` (1 for no weight, anything for no
    dispersion). The means are the links' exact inverses (no guards, unlike
    :func:`link_inverse_row`), written in η so that they keep their precision in both tails:

    - Gaussian: -w (y - μ)²/(2σ²) - log σ;
    - binomial: k log μ + (w - k) log(1 - μ), with k = w y successes of w trials;
    - Poisson: w (y η - e^η);
    - negative binomial: w (log Γ(y + θ) - log Γ(θ) - θ log(1 + μ/θ) + y (η - log(θ + μ)))
      (see :data:`NB_SERIES_COUNTS` for the gamma terms).
    """
    if family == BINOMIAL_CODE:
        k = weight * y
        log_mu, log_rest, d_mu, d_rest = _log_mean_and_complement(link, eta)
        rest = weight - k  # selections rather than branches on k > 0 and w > k (see above)
        value = (k * log_mu if k > 0.0 else 0.0) + (rest * log_rest if weight > k else 0.0)
        slope = (k * d_mu if k > 0.0 else 0.0) + (rest * d_rest if weight > k else 0.0)
        return value, slope, 0.0
    mu = eta if link == 0 else math.exp(eta)
    if family == POISSON_CODE:
        return weight * (y * eta - mu), weight * (y - mu), 0.0
    if family == NEGATIVE_BINOMIAL_CODE:
        theta = dispersion
        gamma_terms, d_gamma = _rising_log_factorial(y, theta)
        log_total = math.log(theta + mu)
        value = gamma_terms - theta * math.log1p(mu / theta) + y * (eta - log_total)
        d_theta = d_gamma - math.log1p(mu / theta) + (mu - y) / (theta + mu)
        return weight * value, weight * theta * (y - mu) / (theta + mu), weight * d_theta
    # Gaussian
    precision = weight / (dispersion * dispersion)
    r = y - mu
    return (-0.5 * precision * r * r - math.log(dispersion), precision * r * (1.0 if link == 0 else mu),
            precision * r * r / dispersion - 1.0 / dispersion)


@njit(cache=True)
def _log_likelihood_rows(code, y, mu, weight, dispersion):
    """:func:`log_likelihood_row` over flat arrays."""
    out = np.empty(y.size)
    for i in range(y.size):
        out[i] = log_likelihood_row(code, y[i], mu[i], weight[i], dispersion[i])
    return out


@njit(cache=True)
def _log_likelihood_derivatives_rows(code, y, mu, weight, dispersion):
    """:func:`log_likelihood_derivatives_row` over flat arrays."""
    first, second = np.empty(y.size), np.empty(y.size)
    for i in range(y.size):
        first[i], second[i] = log_likelihood_derivatives_row(code, y[i], mu[i], weight[i], dispersion[i])
    return first, second


def _elementwise(kernel, code: int, y, mu, weights, dispersion):
    """``kernel`` (one of the row loops above) on y, μ, the weights (1 for None) and the
    dispersion (NaN for None), broadcast together: one array, or a tuple of arrays, of their shape."""
    arrays = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in
                                   (y, mu, 1.0 if weights is None else weights, math.nan if dispersion is None else dispersion)))
    out = kernel(code, *(np.ascontiguousarray(a).ravel() for a in arrays))
    shape = arrays[0].shape
    return tuple(o.reshape(shape) for o in out) if isinstance(out, tuple) else out.reshape(shape)


def _compiled_link(name: str, link: Callable[[np.ndarray], np.ndarray]) -> Link:
    """The link ``name`` with its inverse and derivative from :func:`link_inverse_row`."""
    code = LINK_CODES[name]
    return Link(name, link, functools.partial(_link_inverse, code, 0), functools.partial(_link_inverse, code, 1))


def _cloglog_link(mu):
    """log(-log(1 - μ))."""
    return np.log(-np.log(1.0 - np.asarray(mu, dtype=float)))


LINKS: dict[str, Link] = {
    "identity": Link("identity", _identity, _identity, lambda eta: np.ones_like(eta, dtype=float)),
    "log": _compiled_link("log", np.log),
    "logit": _compiled_link("logit", lambda mu: np.log(mu / (1.0 - mu))),
    "probit": _compiled_link("probit", special.ndtri),
    "cloglog": _compiled_link("cloglog", _cloglog_link),
}


def _trials(weights):
    """The prior weights as floats, or 1.0 (every weight one) when there are none."""
    return 1.0 if weights is None else np.asarray(weights, dtype=float)


def _not_whole(x: np.ndarray) -> np.ndarray:
    """Where x is not a whole number (to 1e-6 relative: a proportion times its trials is not exact)."""
    return np.abs(x - np.round(x)) > 1e-6 * np.maximum(1.0, np.abs(x))


def _first(values: np.ndarray, bad: np.ndarray) -> str:
    """The first bad value, for messages."""
    return f"{values[np.flatnonzero(bad)[0]]:g}"


@dataclass(frozen=True)
class Family(abc.ABC):
    """The distribution of the response given its mean: base class of the response families.

    Subclasses set the class attributes below and implement the abstract methods; the link
    is chosen per instance among ``links``.

    Attributes
    ----------
    link
        The link's name; one of the family's ``links``.
    name
        The family's name in messages and summaries (``"Gaussian"``).
    links
        The links this family supports, the default first.
    canonical_link
        The family's canonical link (the one for which η is the natural parameter), or None.
    distribution
        The distribution's name as the Bayesian backend (PyMC) spells it (``"Normal"``); its
        parameters are :meth:`distribution_parameters`.
    has_dispersion
        Whether the family has a dispersion parameter (σ for the Gaussian, θ for the negative
        binomial) that a fit estimates.
    dispersion_name
        The dispersion's name in a Bayesian posterior and as a prior class (``"sigma"`` for the
        Gaussian, ``"shape"`` for the negative binomial, as brms names them); None without one.
    weights_multiply_log_likelihood
        Whether prior weights multiply each row's log-likelihood (the Poisson and the negative
        binomial, as in R) rather than entering the distribution (the binomial's trials, the
        Gaussian's precisions).
    dtype_kinds
        The numpy dtype kinds a response column may have (``"iuf"``: integers and floats).
    allows_observation_level_effects
        Whether a grouping factor may have a level per row (an observation-level random
        effect, which models overdispersion in a count or binomial model); not for the
        Gaussian, whose residual it would duplicate (lme4 refuses it for ``lmer`` only).
    code
        The family's code in :func:`log_density_row`, the compiled log-likelihood in η that the
        posterior's precompiled density evaluates (every family has one).
    kernel_code
        The code with which the family's numpy methods and the general PIRLS call its compiled
        log-likelihood and its derivatives (:func:`log_likelihood_row`,
        :func:`log_likelihood_derivatives_row`), or None for a family whose numpy methods
        compute them (the per-level PIRLS calls the compiled ones with :attr:`code` for every family).
    """

    link: str
    name: ClassVar[str]
    links: ClassVar[tuple[str, ...]]
    canonical_link: ClassVar[str | None]
    distribution: ClassVar[str]
    has_dispersion: ClassVar[bool]
    dispersion_name: ClassVar[str | None] = None
    weights_multiply_log_likelihood: ClassVar[bool] = False
    dtype_kinds: ClassVar[str] = "iuf"
    allows_observation_level_effects: ClassVar[bool] = True
    code: ClassVar[int]
    kernel_code: ClassVar[int | None] = None

    def __post_init__(self):
        if not isinstance(self.link, str) or self.link not in self.links:
            raise ArgumentError(
                f"The {self.name} family supports the link(s) {', '.join(map(repr, self.links))}, not {self.link!r}; "
                f"write {type(self).__name__}(link={self.links[0]!r})."
            )

    @property
    def has_sufficient_statistics(self) -> bool:
        """Whether the likelihood reads the data only through per-group cross-products of
        ``[Z X y]`` (:class:`~bayesmix.data.statistics.SufficientStatistics`): what the collapsed
        sampler, REML and dask or Parquet input need. Only the Gaussian with the identity link."""
        return False

    @property
    def canonical(self) -> bool:
        """Whether the link is the family's canonical link, so that the Fisher (expected) and the
        observed information, and so PIRLS's working weights, coincide."""
        return self.link == self.canonical_link

    @property
    def link_code(self) -> int:
        """The code that selects the link's compiled inverse (:func:`link_inverse_row`)."""
        return LINK_CODES[self.link]

    # ----- the response's validity --------------------------------------------------------
    def check_dtype(self, name: str, dtype) -> None:
        """DataError unless a response column of ``dtype`` can be this family's response.

        ``dtype`` is the column's dtype after conversion of pandas' nullable and pyarrow
        numbers to numpy; categorical and text dtypes are never numpy dtypes (a two-level
        factor for the binomial is converted to 0/1 by the data layer before this check).
        """
        if not (isinstance(dtype, np.dtype) and dtype.kind in self.dtype_kinds):
            needs = "a numeric or boolean" if "b" in self.dtype_kinds else "a numeric"
            raise DataError(
                f"The response column {name!r} has dtype {dtype}; a {self.name} mixed model needs {needs} response. "
                f"Convert it, e.g. data[{name!r}] = pd.to_numeric(data[{name!r}])."
            )

    def check_values(self, name: str, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """DataError for response values (or prior weights) the family cannot have.

        Every family refuses infinite or undefined responses and weights that are not positive
        and finite; subclasses add their own checks (counts, proportions, trials).

        Parameters
        ----------
        name
            The response column's name, for messages.
        y
            The response as floats.
        weights
            The prior weights, one per row, or None.
        """
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"The response {name!r} has {int(bad.sum())} infinite or undefined value(s); remove or fix them.")
        if weights is not None:
            weights = np.asarray(weights, dtype=float)
            bad = ~(np.isfinite(weights) & (weights > 0))
            if bad.any():
                raise DataError(
                    f"The weights of the response {name!r} have {int(bad.sum())} value(s) that are not positive and finite "
                    f"(first: {_first(weights, bad)}); prior weights must be positive numbers: drop the rows with weight 0."
                )

    def response_from_counts(self, name: str, successes: np.ndarray, failures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The response and prior weights of a ``cbind(successes, failures)`` response: DataError
        here, since only the binomial family has such a response."""
        raise DataError(
            f"The response {name} gives numbers of successes and failures, a binomial response, and this model's "
            f"family is {self}: pass family='binomial' (or bm.Binomial())."
        )

    def response_from_levels(self, name: str, column: pd.Series) -> np.ndarray:
        """The response of a column that holds categories rather than numbers: DataError here
        (the binomial family reads a two-level one as 0/1)."""
        raise DataError(
            f"The response column {name!r} has dtype {column.dtype}; a {self.name} mixed model needs a numeric response. "
            f"Convert it, e.g. data[{name!r}] = pd.to_numeric(data[{name!r}])."
        )

    def at_bounds(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Masks of the responses at the lower and at the upper bound of the mean's range (no
        successes, all successes; zero counts), where the likelihood keeps increasing as the
        linear predictor goes to -∞ or +∞: what a separation check needs. None here."""
        none = np.zeros(np.shape(y), dtype=bool)
        return none, none

    def check_varies(self, name: str, lowest: float, highest: float) -> None:
        """DataError when the response is constant (its lowest and highest values are equal)."""
        if lowest == highest:
            raise DataError(f"The response {name!r} is constant ({lowest:g}); there is nothing to model.")

    # ----- link and variance --------------------------------------------------------------
    def link_function(self, mu: np.ndarray) -> np.ndarray:
        """η = g(μ)."""
        return LINKS[self.link].link(mu)

    def inverse_link(self, eta: np.ndarray) -> np.ndarray:
        """μ = g⁻¹(η)."""
        return LINKS[self.link].inverse(eta)

    def inverse_link_derivative(self, eta: np.ndarray) -> np.ndarray:
        """dμ/dη at η (R's ``mu.eta``)."""
        return LINKS[self.link].inverse_derivative(eta)

    @abc.abstractmethod
    def variance(self, mu: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """The variance function V(μ) (R's ``family$variance``): Var(y) = φ V(μ) / w.

        φ is σ² for the Gaussian and 1 for the others; the negative binomial's V(μ) = μ + μ²/θ
        needs its ``dispersion`` θ (R's ``negative.binomial(theta)$variance``).
        """

    def initial_mu(self, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Starting means of an iterative fit (R's ``family$initialize`` ``mustart``); here μ = y."""
        return np.asarray(y, dtype=float)

    # ----- likelihood ----------------------------------------------------------------------
    @abc.abstractmethod
    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """Pointwise log-likelihood of ``y`` given mean ``mu``, ``dispersion`` and prior ``weights``
        (all broadcast), with every normalising constant: -2 times its sum is R's
        ``family$aic`` quantity (before the 2k)."""

    @abc.abstractmethod
    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivatives of :meth:`log_likelihood` with respect to μ."""

    @abc.abstractmethod
    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, *, dispersion: np.ndarray | None = None) -> np.ndarray:
        """Each observation's contribution d(y, μ) to the deviance per unit weight (R's ``dev.resids``
        with weight 1): 2 (ℓ(y; y) - ℓ(y; μ)) at unit weight and, for the Gaussian, σ = 1.

        Only the negative binomial reads ``dispersion`` (its θ, held fixed as in R's
        ``negative.binomial(theta)``).
        """

    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None, *,
                           dispersion: np.ndarray | None = None) -> np.ndarray:
        """sign(y - μ) √(w d(y, μ)) (R's ``residuals(type = "deviance")``); their squares sum to the deviance."""
        deviance = _trials(weights) * self.unit_deviance(y, mu, dispersion=dispersion)
        return np.sign(y - mu) * np.sqrt(np.maximum(deviance, 0.0))

    # ----- the Bayesian backend -------------------------------------------------------------
    @abc.abstractmethod
    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """Draws of y, on the scale of the response, given draws of μ and of the dispersion
        (broadcast), from ``rng``."""

    @abc.abstractmethod
    def distribution_parameters(self, mu, dispersion, weights: np.ndarray | None = None) -> dict:
        """The parameters of :attr:`distribution` for mean ``mu``, ``dispersion`` (arrays or tensors)
        and prior ``weights`` (an array or None); the distribution observes :meth:`observed`."""

    def observed(self, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The values :attr:`distribution` observes: the response itself (the binomial's are counts)."""
        return y

    @abc.abstractmethod
    def dispersion_prior_scale(self, response_sd: float) -> float | None:
        """Scale of the default prior of the dispersion, given the response's standard deviation;
        None for a family without dispersion (:attr:`has_dispersion` false)."""

    def initial_dispersion(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None) -> float | None:
        """Where a fit starts the dispersion, given first means μ: 1 (the negative binomial's θ),
        None without a dispersion."""
        return 1.0 if self.has_dispersion else None

    def __str__(self) -> str:
        return f"{self.name} ({self.link} link)"


def _require_dispersion(family: Family, dispersion, what: str):
    """``dispersion``, or ArgumentError when a family that needs it for ``what`` was given None."""
    if dispersion is None:
        raise ArgumentError(f"The {family.name} family's {what} depends on its dispersion θ: pass dispersion=θ.")
    return dispersion


def _no_likelihood_weights(family: Family, weights) -> None:
    """ArgumentError for prior weights in a PyMC likelihood that cannot carry them."""
    if weights is not None:
        raise ArgumentError(
            f"The {family.name} family's prior weights multiply its log-likelihood, which PyMC's "
            f"{family.distribution} cannot express; fit without weights, or by maximum likelihood (fit_ml)."
        )


@dataclass(frozen=True)
class Gaussian(Family):
    """The Gaussian family: y ~ Normal(μ, σ/√w), μ = η (identity link) or μ = exp(η) (log link).

    Parameters
    ----------
    link
        ``"identity"`` (the default: a linear mixed model) or ``"log"``.

    Notes
    -----
    The dispersion is the residual standard deviation σ. Prior weights w are precisions, as
    in lme4: Var(y) = σ²/w. With the identity link the model is a linear mixed model: its
    likelihood depends on the data only through the cross-products of ``[Z X y]``, which REML
    profiles and the collapsed sampler integrates exactly. With the log link the response
    must be positive: the fit starts from μ = y, as R's ``gaussian(link = "log")`` does, which
    stops with "cannot find valid starting values" for a response ≤ 0.
    """

    link: str = "identity"
    code: ClassVar[int] = GAUSSIAN_CODE
    name: ClassVar[str] = "Gaussian"
    links: ClassVar[tuple[str, ...]] = ("identity", "log")
    canonical_link: ClassVar[str] = "identity"
    distribution: ClassVar[str] = "Normal"
    has_dispersion: ClassVar[bool] = True
    dispersion_name: ClassVar[str] = "sigma"
    allows_observation_level_effects: ClassVar[bool] = False

    @property
    def has_sufficient_statistics(self) -> bool:
        """True with the identity link (the likelihood reads only the cross-products of ``[Z X y]``)."""
        return self.link == "identity"

    def check_values(self, name: str, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """The base checks; with the log link, DataError for a response ≤ 0 (no starting mean)."""
        super().check_values(name, y, weights)
        bad = y <= 0
        if self.link == "log" and bad.any():
            raise DataError(
                f"The response {name!r} has {int(bad.sum())} value(s) ≤ 0 (first: {_first(y, bad)}); the Gaussian family "
                f"with the log link starts from μ = y, as R's gaussian(link = 'log') does, and a mean must be positive. "
                f"Use the identity link, or model a positive response."
            )

    def variance(self, mu: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """V(μ) = 1."""
        return np.ones_like(mu, dtype=float)

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """log N(y; μ, σ/√w), with σ = ``dispersion``."""
        scale = dispersion if weights is None else dispersion / np.sqrt(weights)
        return stats.norm.logpdf(y, mu, scale)

    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """w (y - μ) / σ² and -w / σ²."""
        precision = _trials(weights) / np.square(dispersion)
        first = (y - mu) * precision
        return first, -precision * np.ones_like(first)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, *, dispersion: np.ndarray | None = None) -> np.ndarray:
        """(y - μ)²."""
        return np.square(y - mu)

    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None, *,
                           dispersion: np.ndarray | None = None) -> np.ndarray:
        """√w (y - μ) (exactly y - μ without weights: not through the square root of the unit deviance)."""
        return y - mu if weights is None else np.sqrt(weights) * (y - mu)

    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """μ + σ/√w ε with ε standard normal, one per entry of ``mu``."""
        scale = dispersion if weights is None else dispersion / np.sqrt(weights)
        return mu + rng.standard_normal(np.shape(mu)) * scale

    def distribution_parameters(self, mu, dispersion, weights: np.ndarray | None = None) -> dict:
        """``{"mu": μ, "sigma": σ/√w}``."""
        return {"mu": mu, "sigma": dispersion if weights is None else dispersion / np.sqrt(weights)}

    def dispersion_prior_scale(self, response_sd: float) -> float:
        """The response's standard deviation: σ's default prior is HalfStudentT(3, s_y)."""
        return response_sd

    def initial_dispersion(self, y: np.ndarray, mu: np.ndarray, weights: np.ndarray | None = None) -> float:
        """The root mean square of the weighted residuals √w (y - μ): σ on the response's scale."""
        residuals = (y - mu) * np.sqrt(_trials(weights))
        return float(np.sqrt(np.mean(np.square(residuals)))) or 1.0


@dataclass(frozen=True)
class Binomial(Family):
    """The binomial family: w y ~ Binomial(w, μ), with y the proportion of successes in w trials.

    Parameters
    ----------
    link
        ``"logit"`` (the default and canonical link), ``"probit"`` or ``"cloglog"``.

    Notes
    -----
    As in R's ``glm``, the response is 0/1 (a boolean, or 0/1 numbers) with no weights, or
    the proportion of successes with prior weights giving the number of trials (the data layer
    turns ``cbind(successes, failures)`` and a two-level factor into these). There is no
    dispersion. Predictive draws are proportions, on the response's own scale.
    """

    link: str = "logit"
    code: ClassVar[int] = BINOMIAL_CODE
    name: ClassVar[str] = "binomial"
    links: ClassVar[tuple[str, ...]] = ("logit", "probit", "cloglog")
    canonical_link: ClassVar[str] = "logit"
    distribution: ClassVar[str] = "Binomial"
    has_dispersion: ClassVar[bool] = False
    kernel_code: ClassVar[int] = BINOMIAL_CODE
    dtype_kinds: ClassVar[str] = "iufb"

    def check_values(self, name: str, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """The base checks, then DataError for a proportion outside [0, 1], a response other than
        0/1 without weights, trials that are not whole numbers and successes w y that are not."""
        super().check_values(name, y, weights)
        bad = (y < 0) | (y > 1)
        if bad.any():
            raise DataError(
                f"The response {name!r} has {int(bad.sum())} value(s) outside [0, 1] (first: {_first(y, bad)}); a binomial "
                f"response is 0/1, or the proportion of successes with weights= the number of trials (a proportion "
                f"above 1 would be more successes than trials)."
            )
        if weights is None:
            bad = (y != 0) & (y != 1)
            if bad.any():
                raise DataError(
                    f"The response {name!r} has {int(bad.sum())} value(s) strictly between 0 and 1 (first: {_first(y, bad)}) "
                    f"and no weights; a binomial proportion needs weights= giving each row's number of trials, "
                    f"or write the response as cbind(successes, failures)."
                )
            return
        weights = np.asarray(weights, dtype=float)
        bad = _not_whole(weights)
        if bad.any():
            raise DataError(
                f"The weights of the binomial response {name!r} are numbers of trials and must be whole numbers; "
                f"{int(bad.sum())} are not (first: {_first(weights, bad)})."
            )
        successes = weights * y
        bad = _not_whole(successes)
        if bad.any():
            raise DataError(
                f"The binomial response {name!r} gives {int(bad.sum())} row(s) a number of successes (proportion times "
                f"trials) that is not a whole number (first: {_first(successes, bad)}); the response must be "
                f"successes / trials with weights= the trials."
            )

    def response_from_counts(self, name: str, successes: np.ndarray, failures: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """y = successes / trials and the trials = successes + failures as prior weights, as R's
        ``binomial()$initialize`` reads a two-column response; DataError for negative or
        non-integer counts and for rows without trials."""
        for values, what in ((successes, "successes"), (failures, "failures")):
            for bad, kind in ((values < 0, "negative"), (_not_whole(values), "non-integer")):
                if bad.any():
                    raise DataError(
                        f"The {what} of the response {name} have {int(bad.sum())} {kind} value(s) (first: "
                        f"{_first(values, bad)}); cbind(successes, failures) takes counts."
                    )
        trials = successes + failures
        if (trials == 0).any():
            raise DataError(
                f"The response {name} has {int((trials == 0).sum())} row(s) with no trials (0 successes and 0 failures), "
                "which carry no information; drop them."
            )
        return successes / trials, trials

    def response_from_levels(self, name: str, column: pd.Series) -> np.ndarray:
        """1 for the second of two levels (a success, as R reads a factor response), else 0;
        DataError for another number of levels."""
        if isinstance(column.dtype, pd.CategoricalDtype):
            levels = list(column.cat.categories)
        else:
            levels = sorted(pd.unique(column), key=str)
        if len(levels) != 2:
            raise DataError(
                f"The binomial response {name!r} has {len(levels)} level(s) {levels[:5]}; a factor response needs exactly "
                f"two (the second, {levels[1] if len(levels) > 1 else '...'!r}, is a success, as in R). Recode it to 0/1."
            )
        return (column == levels[1]).to_numpy(dtype=float)

    def at_bounds(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """No successes (y = 0) and all successes (y = 1)."""
        return y == 0, y == 1

    def variance(self, mu: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """V(μ) = μ (1 - μ)."""
        return mu * (1.0 - mu)

    def initial_mu(self, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """(w y + 1/2) / (w + 1), R's binomial ``mustart``."""
        w = _trials(weights)
        return (w * np.asarray(y, dtype=float) + 0.5) / (w + 1.0)

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None = None,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """log Binomial(w y; w, μ) = log C(w, w y) + w y log μ + w (1 - y) log(1 - μ); ``dispersion`` is unused."""
        return _elementwise(_log_likelihood_rows, self.kernel_code, y, mu, weights, None)

    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None = None,
                                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """w (y - μ) / (μ (1 - μ)) and -w (y / μ² + (1 - y) / (1 - μ)²)."""
        return _elementwise(_log_likelihood_derivatives_rows, self.kernel_code, y, mu, weights, None)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, *, dispersion: np.ndarray | None = None) -> np.ndarray:
        """2 (y log(y/μ) + (1 - y) log((1 - y)/(1 - μ))), with 0 log 0 = 0."""
        return 2.0 * (special.xlogy(y, y / mu) + special.xlogy(1.0 - y, (1.0 - y) / (1.0 - mu)))

    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """Proportions of successes: Binomial(w, μ) / w (0/1 without weights), as floats."""
        n = np.rint(_trials(weights)).astype(np.int64)
        n, mu = np.broadcast_arrays(n, mu)
        return rng.binomial(n, mu) / n

    def distribution_parameters(self, mu, dispersion, weights: np.ndarray | None = None) -> dict:
        """``{"n": w, "p": μ}`` (w = 1 without weights); the distribution observes the successes w y."""
        return {"n": 1 if weights is None else np.rint(weights).astype(np.int64), "p": mu}

    def observed(self, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """The numbers of successes w y, as integers."""
        return np.rint(_trials(weights) * y).astype(np.int64)

    def dispersion_prior_scale(self, response_sd: float) -> None:
        """None: the binomial has no dispersion."""
        return None


@dataclass(frozen=True)
class _Counts(Family):
    """What the count families share: non-negative whole-number responses, log link, the
    Poisson's starting means, and prior weights that multiply the log-likelihood."""

    link: str = "log"
    links: ClassVar[tuple[str, ...]] = ("log",)
    weights_multiply_log_likelihood: ClassVar[bool] = True

    def check_values(self, name: str, y: np.ndarray, weights: np.ndarray | None = None) -> None:
        """The base checks, then DataError for negative or non-integer counts."""
        super().check_values(name, y, weights)
        for bad, what in ((y < 0, "negative"), (_not_whole(y), "non-integer")):
            if bad.any():
                raise DataError(
                    f"The response {name!r} has {int(bad.sum())} {what} value(s) (first: {_first(y, bad)}); "
                    f"a {self.name} response is a count (0, 1, 2, ...)."
                )

    def at_bounds(self, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Zero counts (the mean's lower bound); counts have no upper bound."""
        return y == 0, np.zeros(np.shape(y), dtype=bool)

    def initial_mu(self, y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """y + 0.1, R's Poisson ``mustart`` (which ``glmer.nb`` starts from too)."""
        return np.asarray(y, dtype=float) + 0.1


@dataclass(frozen=True)
class Poisson(_Counts):
    """The Poisson family: y ~ Poisson(μ), log μ = η.

    Parameters
    ----------
    link
        ``"log"``, the canonical link.

    Notes
    -----
    No dispersion. Prior weights multiply each observation's log-likelihood, as in R's
    ``glm``; predictive draws ignore them (a draw is of one observation).
    """

    code: ClassVar[int] = POISSON_CODE
    name: ClassVar[str] = "Poisson"
    canonical_link: ClassVar[str] = "log"
    distribution: ClassVar[str] = "Poisson"
    has_dispersion: ClassVar[bool] = False
    kernel_code: ClassVar[int] = POISSON_CODE

    def variance(self, mu: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """V(μ) = μ."""
        return np.asarray(mu, dtype=float)

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None = None,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """w (y log μ - μ - log y!); ``dispersion`` is unused."""
        return _elementwise(_log_likelihood_rows, self.kernel_code, y, mu, weights, None)

    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None = None,
                                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """w (y/μ - 1) and -w y/μ²."""
        return _elementwise(_log_likelihood_derivatives_rows, self.kernel_code, y, mu, weights, None)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, *, dispersion: np.ndarray | None = None) -> np.ndarray:
        """2 (y log(y/μ) - (y - μ)), with 0 log 0 = 0."""
        return 2.0 * (special.xlogy(y, y / mu) - (y - mu))

    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """Poisson(μ) counts, as floats."""
        return rng.poisson(mu).astype(float)

    def distribution_parameters(self, mu, dispersion, weights: np.ndarray | None = None) -> dict:
        """``{"mu": μ}``; ArgumentError with prior weights, which PyMC's Poisson cannot carry."""
        _no_likelihood_weights(self, weights)
        return {"mu": mu}

    def dispersion_prior_scale(self, response_sd: float) -> None:
        """None: the Poisson has no dispersion."""
        return None


@dataclass(frozen=True)
class NegativeBinomial(_Counts):
    """The negative binomial family (NB2): y ~ NB(μ, θ), Var(y) = μ + μ²/θ, log μ = η.

    Parameters
    ----------
    link
        ``"log"``.

    Notes
    -----
    The dispersion is the shape θ (R's ``theta`` in ``MASS::negative.binomial`` and
    ``glmer.nb``, glmmTMB's ``nbinom2`` dispersion, PyMC's ``alpha``), which a fit estimates;
    the variance function, the unit deviance and the deviance residuals need it. The log link
    is not canonical for a fixed θ. Prior weights multiply the log-likelihood, as in R.
    """

    code: ClassVar[int] = NEGATIVE_BINOMIAL_CODE
    name: ClassVar[str] = "negative binomial"
    canonical_link: ClassVar[None] = None
    distribution: ClassVar[str] = "NegativeBinomial"
    has_dispersion: ClassVar[bool] = True
    dispersion_name: ClassVar[str] = "shape"

    def variance(self, mu: np.ndarray, dispersion: np.ndarray | None = None) -> np.ndarray:
        """V(μ) = μ + μ²/θ, θ = ``dispersion`` (required)."""
        theta = _require_dispersion(self, dispersion, "variance function")
        return mu + np.square(mu) / theta

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                       weights: np.ndarray | None = None) -> np.ndarray:
        """w (log Γ(y + θ) - log Γ(θ) - log y! + θ log(θ/(θ + μ)) + y log(μ/(θ + μ))).

        The gamma terms are computed as -log y - log B(y, θ) (0 at y = 0), which keeps their
        precision when θ is large (a nearly Poisson response), where the difference of log Γ's
        loses it.
        """
        theta = _require_dispersion(self, dispersion, "log-likelihood")
        positive = np.maximum(y, 1.0)
        log_coefficient = np.where(y > 0, -np.log(positive) - special.betaln(positive, theta), 0.0)
        return _trials(weights) * (log_coefficient - theta * np.log1p(mu / theta) + special.xlogy(y, mu / (mu + theta)))

    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None,
                                   weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """w (y/μ - (y + θ)/(μ + θ)) and w (-y/μ² + (y + θ)/(μ + θ)²)."""
        theta = _require_dispersion(self, dispersion, "log-likelihood")
        w = _trials(weights)
        return (w * (y / mu - (y + theta) / (mu + theta)),
                w * ((y + theta) / np.square(mu + theta) - y / np.square(mu)))

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray, *, dispersion: np.ndarray | None = None) -> np.ndarray:
        """2 (y log(y/μ) - (y + θ) log((y + θ)/(μ + θ))), with 0 log 0 = 0 (MASS's ``dev.resids``)."""
        theta = _require_dispersion(self, dispersion, "unit deviance")
        return 2.0 * (special.xlogy(y, y / mu) - (y + theta) * np.log((y + theta) / (mu + theta)))

    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator,
                         weights: np.ndarray | None = None) -> np.ndarray:
        """NB(μ, θ) counts, as floats: numpy's negative binomial with n = θ, p = θ/(θ + μ)."""
        theta = _require_dispersion(self, dispersion, "predictive distribution")
        theta, mu = np.broadcast_arrays(np.asarray(theta, dtype=float), mu)
        return rng.negative_binomial(theta, theta / (theta + mu)).astype(float)

    def distribution_parameters(self, mu, dispersion, weights: np.ndarray | None = None) -> dict:
        """``{"mu": μ, "alpha": θ}``; ArgumentError with prior weights, which PyMC's NegativeBinomial cannot carry."""
        _no_likelihood_weights(self, weights)
        return {"mu": mu, "alpha": dispersion}

    def dispersion_prior_scale(self, response_sd: float) -> float:
        """1, whatever the response's spread: rstanarm's default prior on θ (its ``reciprocal_dispersion``)
        is exponential with rate 1, not scaled by the response."""
        return 1.0


#: The family names :func:`as_family` accepts, as R spells them, and each one's default.
FAMILY_NAMES: dict[str, type[Family]] = {
    "gaussian": Gaussian,
    "binomial": Binomial,
    "poisson": Poisson,
    "negative_binomial": NegativeBinomial,
}


def as_family(family: Family | str | None) -> Family:
    """``family`` itself, the default-link family of a name in :data:`FAMILY_NAMES`, or
    :class:`Gaussian` () for None; ArgumentError for anything else."""
    if family is None:
        return Gaussian()
    if isinstance(family, str) and family in FAMILY_NAMES:
        return FAMILY_NAMES[family]()
    if not isinstance(family, Family):
        raise ArgumentError(
            f"family must be a bayesmix family such as bm.Binomial(link='probit'), or one of the names "
            f"{', '.join(map(repr, FAMILY_NAMES))}; not {family!r}."
        )
    return family


def check_supported(family: Family, supported: tuple[Family, ...], backend: str, remedy: str | None = None) -> None:
    """ArgumentError unless ``family`` is one of the ``supported`` families (kind and link) of ``backend``.

    The message ends with ``remedy``, by default: build the design with the first supported family.
    """
    if family not in supported:
        names = " and ".join(map(str, supported))
        remedy = remedy or f"build the design with family=bm.{supported[0]!r}"
        raise ArgumentError(f"{backend} fits the {names} family only (for now), and this design's family is {family}; {remedy}.")
