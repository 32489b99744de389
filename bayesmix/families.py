"""Response families: everything about the distribution of the response given its mean.

A mixed model splits into a *predictor* (the linear predictor η = Xβ + Zu, with the
random-effects layout and the linear algebra of :mod:`bayesmix.linalg`) and a *response*:
how y is distributed given μ = g⁻¹(η). lme4 keeps the two apart (``merPredD`` beside
``lmerResp`` / ``glmResp``), and MixedModels.jl's ``GeneralizedLinearMixedModel`` holds a
linear mixed model (its local, PIRLS, approximation) plus a ``GlmResp``. Here the response
side is a :class:`Family` object carried by the :class:`~bayesmix.Design`; it owns

- which responses are valid (:meth:`Family.check_dtype`, :meth:`Family.check_values`,
  :meth:`Family.check_varies`), called by the data layer for pandas and dask input alike;
- the link g and its inverse (:meth:`Family.link_function`, :meth:`Family.inverse_link`,
  :meth:`Family.inverse_link_derivative`) and the variance function V(μ);
- the log-likelihood of y given μ and the dispersion, its first two derivatives in μ, the
  unit deviance and the deviance residuals;
- predictive draws (the noise a posterior predictive draw adds to μ);
- whether it has a dispersion parameter (σ) and its default prior scale, the name and
  parameters of its distribution as the Bayesian backend builds it, and whether per-group
  sufficient statistics exist for it (the collapsed sampler, dask and Parquet input, and
  REML's cross-products need them).

Only :class:`Gaussian` with the identity link is implemented. A new family (binomial,
Poisson, negative binomial) is a new subclass here, its links in :data:`LINKS`, plus the
backend code that fits it; nothing else reads the family's kind.

This module imports only numpy, scipy and :mod:`bayesmix.errors`: it sits below the data
layer, which validates responses through it.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy import stats

from .errors import ArgumentError, DataError

__all__ = ["LINKS", "Family", "Gaussian", "Link", "as_family", "check_supported"]


@dataclass(frozen=True)
class Link:
    """A link function g, with η = g(μ), its inverse and the derivative dμ/dη of the inverse.

    Attributes
    ----------
    name
        The link's name, as R spells it (``"identity"``, ``"logit"``, ``"log"``).
    link
        g: mean -> linear predictor.
    inverse
        g⁻¹: linear predictor -> mean.
    inverse_derivative
        dμ/dη at η (R's ``mu.eta``), which PIRLS weights need.
    """

    name: str
    link: Callable[[np.ndarray], np.ndarray]
    inverse: Callable[[np.ndarray], np.ndarray]
    inverse_derivative: Callable[[np.ndarray], np.ndarray]


def _identity(x):
    """The argument itself (not a copy: the identity link changes no number)."""
    return x


LINKS: dict[str, Link] = {
    "identity": Link("identity", _identity, _identity, lambda eta: np.ones_like(eta, dtype=float)),
}


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
        The links this family supports.
    distribution
        The distribution's name as the Bayesian backend (PyMC) spells it (``"Normal"``); its
        parameters are :meth:`distribution_parameters`.
    has_dispersion
        Whether the family has a dispersion parameter (the residual SD σ for the Gaussian),
        sampled as ``sigma``.
    has_sufficient_statistics
        Whether the likelihood reads the data only through per-group cross-products of
        ``[Z X y]`` (:class:`~bayesmix.data.statistics.SufficientStatistics`): what the collapsed
        sampler, REML and dask or Parquet input need.
    dtype_kinds
        The numpy dtype kinds a response column may have (``"iuf"``: integers and floats).
    """

    link: str
    name: ClassVar[str]
    links: ClassVar[tuple[str, ...]]
    distribution: ClassVar[str]
    has_dispersion: ClassVar[bool]
    has_sufficient_statistics: ClassVar[bool]
    dtype_kinds: ClassVar[str] = "iuf"

    def __post_init__(self):
        if not isinstance(self.link, str) or self.link not in self.links:
            raise ArgumentError(
                f"The {self.name} family supports the link(s) {', '.join(map(repr, self.links))}, not {self.link!r}; "
                f"write {type(self).__name__}(link={self.links[0]!r})."
            )

    # ----- the response's validity --------------------------------------------------------
    def check_dtype(self, name: str, dtype) -> None:
        """DataError unless a response column of ``dtype`` can be this family's response.

        ``dtype`` is the column's dtype after conversion of pandas' nullable and pyarrow
        numbers to numpy; categorical and text dtypes are never numpy dtypes.
        """
        if not (isinstance(dtype, np.dtype) and dtype.kind in self.dtype_kinds):
            raise DataError(
                f"The response column {name!r} has dtype {dtype}; a {self.name} mixed model needs a numeric response. "
                f"Convert it, e.g. data[{name!r}] = pd.to_numeric(data[{name!r}])."
            )

    def check_values(self, name: str, y: np.ndarray) -> None:
        """DataError for response values the family cannot have (here: infinite or undefined ones)."""
        bad = ~np.isfinite(y)
        if bad.any():
            raise DataError(f"The response {name!r} has {int(bad.sum())} infinite or undefined value(s); remove or fix them.")

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
    def variance(self, mu: np.ndarray) -> np.ndarray:
        """The variance function V(μ): Var(y) = φ V(μ) for dispersion φ (σ² for the Gaussian)."""

    # ----- likelihood ----------------------------------------------------------------------
    @abc.abstractmethod
    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None) -> np.ndarray:
        """Pointwise log-density of ``y`` given mean ``mu`` and ``dispersion`` (broadcast)."""

    @abc.abstractmethod
    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None
                                   ) -> tuple[np.ndarray, np.ndarray]:
        """First and second derivatives of :meth:`log_likelihood` with respect to μ."""

    @abc.abstractmethod
    def unit_deviance(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """Each observation's contribution d(y, μ) to the deviance (R's ``dev.resids`` without weights)."""

    @abc.abstractmethod
    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """sign(y - μ) √d(y, μ)."""

    # ----- the Bayesian backend -------------------------------------------------------------
    @abc.abstractmethod
    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """Draws of y given draws of μ and of the dispersion (broadcast), from ``rng``."""

    @abc.abstractmethod
    def distribution_parameters(self, mu, dispersion) -> dict:
        """The parameters of :attr:`distribution` for mean ``mu`` and ``dispersion`` (arrays or tensors)."""

    @abc.abstractmethod
    def dispersion_prior_scale(self, response_sd: float) -> float:
        """Scale of the default prior of the dispersion, given the response's standard deviation."""

    def __str__(self) -> str:
        return f"{self.name} ({self.link} link)"


@dataclass(frozen=True)
class Gaussian(Family):
    """The Gaussian family: y ~ Normal(μ, σ), μ = η (identity link).

    Parameters
    ----------
    link
        ``"identity"``, the only link implemented.

    Notes
    -----
    With the identity link the model is a linear mixed model: its likelihood depends on the
    data only through the cross-products of ``[Z X y]``, which REML profiles and the collapsed
    sampler integrates exactly.
    """

    link: str = "identity"
    name: ClassVar[str] = "Gaussian"
    links: ClassVar[tuple[str, ...]] = ("identity",)
    distribution: ClassVar[str] = "Normal"
    has_dispersion: ClassVar[bool] = True
    has_sufficient_statistics: ClassVar[bool] = True

    def variance(self, mu: np.ndarray) -> np.ndarray:
        """V(μ) = 1."""
        return np.ones_like(mu, dtype=float)

    def log_likelihood(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None) -> np.ndarray:
        """log N(y; μ, σ), with σ = ``dispersion``."""
        return stats.norm.logpdf(y, mu, dispersion)

    def log_likelihood_derivatives(self, y: np.ndarray, mu: np.ndarray, dispersion: np.ndarray | None
                                   ) -> tuple[np.ndarray, np.ndarray]:
        """(y - μ) / σ² and -1 / σ²."""
        precision = 1.0 / np.square(dispersion)
        first = (y - mu) * precision
        return first, -precision * np.ones_like(first)

    def unit_deviance(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """(y - μ)²."""
        return np.square(y - mu)

    def deviance_residuals(self, y: np.ndarray, mu: np.ndarray) -> np.ndarray:
        """y - μ (exactly: not through the square root of the unit deviance)."""
        return y - mu

    def predictive_draws(self, mu: np.ndarray, dispersion: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
        """μ + σ ε with ε standard normal, one per entry of ``mu``."""
        return mu + rng.standard_normal(np.shape(mu)) * dispersion

    def distribution_parameters(self, mu, dispersion) -> dict:
        """``{"mu": μ, "sigma": σ}``."""
        return {"mu": mu, "sigma": dispersion}

    def dispersion_prior_scale(self, response_sd: float) -> float:
        """The response's standard deviation: σ's default prior is HalfStudentT(3, s_y)."""
        return response_sd


def as_family(family: Family | None) -> Family:
    """``family`` itself, or :class:`Gaussian` () for None; ArgumentError for anything else."""
    if family is None:
        return Gaussian()
    if not isinstance(family, Family):
        raise ArgumentError(f"family must be a bayesmix family such as bm.Gaussian(), not {family!r}.")
    return family


def check_supported(family: Family, supported: tuple[type[Family], ...], backend: str) -> None:
    """ArgumentError unless ``family`` is one of the ``supported`` families of ``backend``."""
    if not isinstance(family, supported):
        names = " and ".join(f.name for f in supported)
        raise ArgumentError(
            f"{backend} fits the {names} family only (for now), and this design's family is {family}; "
            f"build the design with family={supported[0].__name__}()."
        )
