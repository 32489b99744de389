"""Prior distributions: weakly informative defaults scaled to the data, and overrides.

Default priors. For a column c of X or of a random-effects term, s_c is 1 if it takes only
the values 0 and 1 (an intercept or an indicator) and its standard deviation otherwise.

For the Gaussian family with the identity link (a linear mixed model), with s_y the standard
deviation of the response:

- ``Intercept`` (of the predictors centred at their means): Normal(mean(y), 2.5 s_y)
- ``b``, each other fixed effect: Normal(0, 2.5 s_y / s_c)
- ``sigma``, the residual SD: HalfStudentT(ν = 3, s_y)
- ``sd``, the SD of each random effect: HalfStudentT(ν = 3, s_y / s_c)
- ``cor``, each correlation matrix: LKJ(η = 2), which mildly favours smaller correlations

For every other family and link the linear predictor has units of its own (log odds, log
rates), and the priors are on that scale, whatever the response's spread:

- ``Intercept`` (of centred predictors): StudentT(3, m, 2.5), with m = 0 for the binomial
  and, for a log link, m = log(Σ w y / Σ w e^offset), the log of the overall rate (the
  intercept of the model without predictors)
- ``b``: Normal(0, 2.5 / s_c)
- ``sd``: HalfStudentT(3, 2.5 / s_c)
- ``cor``: LKJ(2)
- ``sigma`` (Gaussian with the log link; on the response's scale): HalfStudentT(3, s_y)
- ``shape``, the negative binomial's θ (Var y = μ + μ²/θ): Exponential(1), rstanarm's prior on
  its ``reciprocal_dispersion``

(``docs/priors.md`` compares them with rstanarm's, brms's and bambi's.) Override any of them with
:func:`prior`, by class and optionally by coefficient and grouping factor, as in brms;
:func:`Flat` states brms's improper default on the fixed effects.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..data.design import Design
from ..data.layout import group_of
from ..errors import PriorError

DEFAULT_ETA = 2.0
LINK_SCALE = 2.5
"""The scale of the default priors on the linear predictor of a family other than the linear
Gaussian: a coefficient of 2.5 moves a probability from 0.5 to 0.92, a rate by a factor of 12."""
DISPERSION_CLASSES = ("sigma", "shape")
PRIOR_CLASSES = ("Intercept", "b", *DISPERSION_CLASSES, "sd", "cor")


@dataclass(frozen=True)
class Distribution:
    """A univariate prior distribution, named and parametrised as in PyMC."""

    name: str
    params: dict
    positive: bool = field(default=False)

    def __post_init__(self):
        for key, value in self.params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
                raise PriorError(f"{self.name} parameter {key}={value!r} must be one finite number.")
            if key in ("sigma", "nu", "lam", "eta") and value <= 0:
                raise PriorError(f"{self.name} parameter {key}={value!r} must be positive.")
            self.params[key] = float(value)

    def pymc(self, name: str, **kwargs):
        """The PyMC random variable ``name`` with this distribution."""
        import pymc as pm

        return getattr(pm, self.name)(name, **self.params, **kwargs)

    def rescaled(self, factor: float, shift: float = 0.0) -> Distribution:
        """The distribution of (v - shift) · factor for v from this one (factor > 0).

        Every family here is closed under this map: a location family moves and scales,
        a scale family scales, and an LKJ prior (on correlations) does not change.
        """
        if self.name == "LKJ":
            return self
        if shift and self.positive:
            raise ValueError(f"{self} is for a positive quantity and cannot be shifted.")
        params = dict(self.params)
        if "mu" in params:
            params["mu"] = (params["mu"] - shift) * factor
        if "sigma" in params:
            params["sigma"] *= factor
        if "lam" in params:
            params["lam"] /= factor
        try:
            return Distribution(self.name, params, self.positive)
        except PriorError:
            raise PriorError(
                f"The prior {self} has a location or scale beyond double precision once expressed in units of the "
                "data's spread; choose a prior of the data's order of magnitude."
            ) from None

    def __str__(self) -> str:
        return f"{self.name}({', '.join(f'{k}={v:.4g}' for k, v in self.params.items())})"


def Normal(mu: float = 0.0, sigma: float = 1.0) -> Distribution:
    """Normal(mu, sigma) prior."""
    return Distribution("Normal", {"mu": mu, "sigma": sigma})


def StudentT(nu: float, mu: float = 0.0, sigma: float = 1.0) -> Distribution:
    """Student-t(nu, mu, sigma) prior."""
    return Distribution("StudentT", {"nu": nu, "mu": mu, "sigma": sigma})


def Flat() -> Distribution:
    """The improper uniform prior on the real line, for fixed effects (``b``, ``Intercept``):
    brms's default on the coefficients. The posterior is proper only when the data identify
    every coefficient it is put on."""
    return Distribution("Flat", {})


def HalfNormal(sigma: float = 1.0) -> Distribution:
    """Half-normal prior for a standard deviation."""
    return Distribution("HalfNormal", {"sigma": sigma}, positive=True)


def HalfStudentT(nu: float = 3.0, sigma: float = 1.0) -> Distribution:
    """Half-Student-t prior for a standard deviation."""
    return Distribution("HalfStudentT", {"nu": nu, "sigma": sigma}, positive=True)


def Exponential(lam: float = 1.0) -> Distribution:
    """Exponential prior for a standard deviation."""
    return Distribution("Exponential", {"lam": lam}, positive=True)


def LKJ(eta: float = DEFAULT_ETA) -> Distribution:
    """LKJ prior on a correlation matrix; eta = 1 is uniform over correlation matrices."""
    return Distribution("LKJ", {"eta": eta}, positive=True)


@dataclass(frozen=True)
class Prior:
    """One prior override: a class (``b``, ``Intercept``, ``sigma``, ``sd``, ``cor``), and
    optionally the coefficient and grouping factor it is restricted to."""

    cls: str
    dist: Distribution
    coef: str | None = None
    group: str | None = None


def prior(cls: str, dist: Distribution, coef: str | None = None, group: str | None = None) -> Prior:
    """Override a default prior, like brms's ``set_prior``.

    Parameters
    ----------
    cls
        ``"b"`` (fixed effects), ``"Intercept"``, the family's dispersion (``"sigma"``, the
        Gaussian's residual SD; ``"shape"``, the negative binomial's θ), ``"sd"``
        (random-effect SDs) or ``"cor"`` (correlation matrices; an :func:`LKJ`).
    dist
        The distribution, e.g. ``Normal(0, 5)``, ``HalfNormal(2)`` or ``Flat()``.
    coef
        Restrict to one coefficient (a fixed-effect name, or a random-effect column).
    group
        For ``sd`` and ``cor``: restrict to one grouping factor.

    Examples
    --------
    >>> priors = [prior("b", Normal(0, 5)), prior("sd", HalfNormal(3), group="id", coef="Intercept")]
    """
    if cls not in PRIOR_CLASSES:
        raise PriorError(f"Unknown prior class {cls!r}; use one of {', '.join(PRIOR_CLASSES)}.")
    if not isinstance(dist, Distribution):
        raise PriorError(f"The prior for {cls!r} must be a bayesmix distribution such as Normal(0, 1), not {dist!r}.")
    if cls in (*DISPERSION_CLASSES, "sd") and not dist.positive:
        raise PriorError(f"A prior for {cls!r} must be for a positive quantity (HalfNormal, HalfStudentT, Exponential), not {dist.name}.")
    if (cls == "cor") != (dist.name == "LKJ"):
        raise PriorError("Correlation matrices take an LKJ(eta) prior, and LKJ only suits class 'cor'.")
    if cls in ("Intercept", *DISPERSION_CLASSES, "cor") and coef is not None:
        raise PriorError(f"Class {cls!r} has no coefficients; drop coef={coef!r}.")
    for key, value in (("coef", coef), ("group", group)):
        if value is not None and not isinstance(value, str):
            raise PriorError(f"{key} must be a name (a string) or None, not {value!r}.")
    if cls in ("Intercept", "b", *DISPERSION_CLASSES) and group is not None:
        raise PriorError(
            f"Class {cls!r} is not per grouping factor; drop group={group!r} "
            "(group= restricts 'sd' and 'cor' priors)."
        )
    return Prior(cls, dist, coef, group)


@dataclass(frozen=True)
class PriorSet:
    """The priors of one model, defaults resolved and overrides applied.

    Attributes
    ----------
    intercept
        Prior of the intercept of centred predictors (None without an intercept).
    b
        Prior of each fixed effect other than the intercept, by name.
    dispersion
        Prior of the family's dispersion (None for a family without one).
    sd
        Prior of each random-effect SD, by (term label, column).
    cor
        LKJ prior of each correlated term's correlation matrix, by term label.
    dispersion_class
        The dispersion's name (:attr:`~bayesmix.families.Family.dispersion_name`), or None.
    """

    intercept: Distribution | None
    b: dict[str, Distribution]
    dispersion: Distribution | None
    sd: dict[tuple[str, str], Distribution]
    cor: dict[str, Distribution]
    dispersion_class: str | None = "sigma"

    def table(self):
        """The priors as a DataFrame (class, group, coefficient, distribution)."""
        import pandas as pd

        rows = []
        if self.intercept is not None:
            rows.append(("Intercept", "", "Intercept", str(self.intercept)))
        rows += [("b", "", name, str(d)) for name, d in self.b.items()]
        rows += [("sd", term, column, str(d)) for (term, column), d in self.sd.items()]
        rows += [("cor", term, "", str(d)) for term, d in self.cor.items()]
        if self.dispersion is not None:
            rows.append((self.dispersion_class, "", "", str(self.dispersion)))
        return pd.DataFrame(rows, columns=["class", "group", "coef", "prior"])

    def __repr__(self) -> str:
        return "Priors:\n" + self.table().to_string(index=False)

    def _repr_html_(self) -> str:
        return "<p><b>Priors</b></p>" + self.table().to_html(index=False)


def resolve_priors(design: Design, term_labels: list[str], overrides: list[Prior] | None = None) -> PriorSet:
    """Default priors for ``design`` with ``overrides`` applied (the most specific wins).

    ``term_labels`` names each random-effects term as the posterior does (``id``, ``id.1``).
    """
    family = design.family
    mean_y, s_y = design.response_moments()
    s_y = s_y or 1.0
    names = list(design.fixed_names)
    has_intercept = "Intercept" in names
    # a linear mixed model's coefficients are in the response's units; any other family's on the link scale
    if family.has_sufficient_statistics:
        b_scale, sd_scale, intercept = 2.5 * s_y, s_y, Normal(mean_y, 2.5 * s_y)
    else:
        b_scale, sd_scale, intercept = LINK_SCALE, LINK_SCALE, StudentT(3.0, _link_centre(design), LINK_SCALE)
    intercept = intercept if has_intercept else None
    x_scales = design.x_scales()
    b = {name: Normal(0.0, b_scale / x_scales[j]) for j, name in enumerate(names) if name != "Intercept"}
    dispersion = _default_dispersion(family, s_y)
    sd, cor = {}, {}
    for k, (label, term) in enumerate(zip(term_labels, design.terms)):
        for column, scale in zip(term.columns, design.z_scales(k)):
            sd[(label, column)] = HalfStudentT(3.0, sd_scale / scale)
        if term.correlated and term.q > 1:
            cor[label] = LKJ(DEFAULT_ETA)

    if overrides is not None and not isinstance(overrides, (list, tuple)):
        raise PriorError(
            f"priors must be a list of bayesmix.prior(...) overrides, not {type(overrides).__name__}; "
            "wrap a single one in a list: [bm.prior(...)]."
        )
    for p in overrides or []:
        if not isinstance(p, Prior):
            raise PriorError(f"Priors must be made with bayesmix.prior(...), not {p!r}.")
    overrides = sorted(overrides or [], key=_specificity)
    claimed: dict = {}  # (class, target) -> the override that set it
    for p in overrides:
        if p.cls == "Intercept":
            if not has_intercept:
                raise PriorError("The model has no intercept, so an 'Intercept' prior does not apply.")
            _claim(claimed, p, "Intercept")
            intercept = p.dist
        elif p.cls in DISPERSION_CLASSES:
            _check_dispersion_class(family, p.cls)
            _claim(claimed, p, p.cls)
            dispersion = p.dist
        elif p.cls == "b":
            _apply(b, p, [p.coef] if p.coef else list(b), "fixed effect", list(b), claimed)
        elif p.cls == "sd":
            keys = [k for k in sd if (p.group is None or group_of(k[0]) == p.group) and (p.coef is None or k[1] == p.coef)]
            _apply(sd, p, keys, "random effect", [f"{group_of(g)}/{c}" for g, c in sd], claimed)
        else:
            keys = [k for k in cor if p.group is None or group_of(k) == p.group]
            _apply(cor, p, keys, "correlated term", list(cor), claimed)
    return PriorSet(intercept, b, dispersion, sd, cor, family.dispersion_name)


def _link_centre(design: Design) -> float:
    """The default intercept prior's location on the link scale: 0 for the binomial, and for a
    log link the log of the overall rate Σ w y / Σ w e^offset."""
    family = design.family
    if family.link != "log":
        return 0.0
    rows = design.rows
    w = np.ones(design.n) if rows.weights is None else rows.weights
    exposure = w if rows.offset is None else w * np.exp(rows.offset)
    return float(np.log(max(np.sum(w * rows.y), 0.5) / np.sum(exposure)))


def _default_dispersion(family, s_y: float) -> Distribution | None:
    """The default prior of the family's dispersion: HalfStudentT(3, s_y) for the Gaussian's σ,
    Exponential(1) for the negative binomial's shape θ (rstanarm's), None without one."""
    if not family.has_dispersion:
        return None
    scale = family.dispersion_prior_scale(s_y)
    return Exponential(1.0 / scale) if family.dispersion_name == "shape" else HalfStudentT(3.0, scale)


def _check_dispersion_class(family, cls: str) -> None:
    """PriorError for a dispersion prior the family does not have (``sigma`` for the negative binomial...)."""
    if family.dispersion_name == cls:
        return
    if family.dispersion_name is None:
        raise PriorError(f"The {family.name} family has no dispersion parameter, so a {cls!r} prior does not apply; drop it.")
    raise PriorError(
        f"The {family.name} family's dispersion is {family.dispersion_name!r}, not {cls!r}: "
        f"write prior({family.dispersion_name!r}, ...)."
    )


def _specificity(p: Prior) -> int:
    """How many restrictions (coef, group) a prior has: the more specific wins, as in brms."""
    return (p.coef is not None) + (p.group is not None)


def _apply(target: dict, p: Prior, keys: list, what: str, known: list, claimed: dict) -> None:
    if not keys or any(k not in target for k in keys):
        raise PriorError(f"No {what} matches the {p.cls!r} prior with {_restriction(p)}; the model has: {', '.join(map(str, known))}.")
    for k in keys:
        _claim(claimed, p, k)
        target[k] = p.dist


def _claim(claimed: dict, p: Prior, key) -> None:
    """PriorError when another prior as specific as ``p`` already set ``key`` of its class."""
    rival = claimed.get((p.cls, key))
    if rival is not None and _specificity(rival) == _specificity(p):
        name = {"Intercept": "the intercept", "sigma": "the residual SD 'sigma'", "shape": "the shape 'shape'"}.get(p.cls)
        if name is None:
            name = (f"fixed effect {key!r}" if p.cls == "b" else f"the SD of {key[1]!r} on {group_of(key[0])!r}"
                    if p.cls == "sd" else f"the correlations of term {key!r}")
        raise PriorError(
            f"Two priors are given for {name}: {_describe(rival)} and {_describe(p)}. Keep one of them "
            "(a prior restricted by coef= or group= may refine a class-wide one, but two of the same reach may not)."
        )
    claimed[(p.cls, key)] = p


def _restriction(p: Prior) -> str:
    return " ".join(f"{k}={v!r}" for k, v in (("group", p.group), ("coef", p.coef)) if v is not None)


def _describe(p: Prior) -> str:
    restriction = _restriction(p)
    return f"prior({p.cls!r}, {p.dist}{', ' + restriction.replace(' ', ', ') if restriction else ''})"
