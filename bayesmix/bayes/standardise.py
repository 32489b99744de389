"""Internal standardisation: the samplers see the data in units of their spread, whatever the user's units.

NUTS adapts its step size and mass matrix from a start of order 1, so a posterior whose scale
is 1e20 or 1e-8 (a response in other units) is out of its reach: it stalls or diverges. Before
sampling, the data are therefore standardised,

    y' = (y - a) / s_y,    X'_j = X_j / s_j,    z'_tj = z_tj / s_tj,

with a the mean response (0 without an intercept), s_y its standard deviation, and s_j the
scale of each column (its standard deviation; its root mean square for a 0/1 or constant
column, which leaves the intercept alone). The model in these units is the same model
reparametrised:

    β_0 = a + s_y β'_0,   β_j = s_y β'_j / s_j,   σ = s_y σ',   sd_tj = s_y sd'_tj / s_tj,
    u_tj = s_y u'_tj / s_tj,   correlations unchanged,

and every prior family of :mod:`bayesmix.bayes.priors` is closed under these maps
(:meth:`~bayesmix.bayes.priors.Distribution.rescaled`), so the priors the user gave in the
original units are carried over exactly and the draws mapped back are exact draws of the
posterior in the original units. Rescaling the response or a predictor rescales the draws and
nothing else (to rounding).

Only a linear mixed model's response (the Gaussian family with the identity link) is
standardised. Any other family's response is left as it is: counts and proportions have no
unit to change (a binomial or Poisson response divided by its SD is not binomial or Poisson),
and the Gaussian with the log link has its scale in the intercept, whose prior is already on
the link scale. Its columns of X and z are still scaled (a reparametrisation, exact as above
with a = 0 and s_y = 1), so that a predictor in large units does not leave NUTS a coefficient
of order 1e-6. An offset is in the linear predictor's units: it is divided by s_y.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..data.design import Design, OutOfCore
from ..data.layout import GroupLayout
from .priors import PriorSet


@dataclass(frozen=True)
class Standardisation:
    """The affine map from a design's units to the sampler's.

    Attributes
    ----------
    y_centre, y_scale
        a and s_y: y' = (y - a) / s_y.
    x_scale
        s_j for each column of X (1 for the intercept).
    z_scale
        For each random-effects term, s_tj for each of its columns.
    intercept
        Index of the intercept among X's columns, or None.
    """

    y_centre: float
    y_scale: float
    x_scale: np.ndarray
    z_scale: tuple[np.ndarray, ...]
    intercept: int | None

    @classmethod
    def of(cls, design: Design, priors: PriorSet) -> Standardisation:
        """The standardisation of ``design``, whose priors (in its units) are ``priors``.

        A linear mixed model's response is centred when the intercept's prior is of a location
        family (a shifted half-normal, say, is no longer a bayesmix prior; a flat prior stays
        flat) and scaled in any case; any other family's response is neither.
        """
        names = list(design.fixed_names)
        intercept = names.index("Intercept") if "Intercept" in names else None
        mean_y, s_y = design.response_moments() if design.family.has_sufficient_statistics else (0.0, 1.0)
        centre = intercept is not None and not priors.intercept.positive
        x_scale = _spread(design.x_scales(), design.x_rms())
        z_scale = []
        for k, term in enumerate(design.terms):
            own = _spread(design.z_scales(k), design.z_rms(k))
            # a column shared with X gets X's scale, so the two stay identical (the centred parametrisation needs it)
            z_scale.append(np.array([x_scale[names.index(c)] if c in names else s for c, s in zip(term.columns, own)]))
        return cls(mean_y if centre else 0.0, s_y if s_y > 0 else 1.0, x_scale, tuple(z_scale), intercept)

    def design(self, design: Design) -> Design:
        """The standardised design: its rows, or for a design of sufficient statistics, its statistics."""
        stats = design.statistics  # None for a family without sufficient statistics
        if stats is not None:
            stats = stats.rescaled(self.x_scale, self.y_centre, self.y_scale, np.concatenate(self.z_scale),
                                   self.intercept)
        if not design.in_memory:
            return dataclasses.replace(design, source=OutOfCore(stats))
        rows = design.rows
        standard = dataclasses.replace(design, source=dataclasses.replace(
            rows,
            y=(rows.y - self.y_centre) / self.y_scale,
            offset=None if rows.offset is None else rows.offset / self.y_scale,
            X=rows.X / self.x_scale,
            z=tuple(z / s for z, s in zip(rows.z, self.z_scale)),
        ))
        if stats is not None:
            # the rescaled statistics rather than those of the rescaled rows: the same numbers as for the
            # same data from dask (hence the same draws); ``statistics`` is a cached property
            standard.__dict__["statistics"] = stats
        return standard

    def priors(self, priors: PriorSet, design: Design, labels: list[str]) -> PriorSet:
        """The priors of the standardised parameters (``labels``: the labels of the design's terms)."""
        s_y = self.y_scale
        b = {name: priors.b[name].rescaled(s / s_y)
             for name, s in zip(design.fixed_names, self.x_scale) if name in priors.b}
        scale_of = {(label, column): s for label, term, scales in zip(labels, design.terms, self.z_scale)
                    for column, s in zip(term.columns, scales)}
        sd = {key: dist.rescaled(scale_of[key] / s_y) for key, dist in priors.sd.items()}
        intercept = None if priors.intercept is None else priors.intercept.rescaled(1.0 / s_y, self.y_centre)
        dispersion = None if priors.dispersion is None else priors.dispersion.rescaled(1.0 / s_y)
        return PriorSet(intercept, b, dispersion, sd, dict(priors.cor), priors.dispersion_class)

    def posterior(self, posterior: xr.Dataset, design: Design, layouts: list[GroupLayout]) -> xr.Dataset:
        """Draws of the standardised parameters mapped back to the design's units."""
        out = posterior.copy()
        shift = np.zeros(len(self.x_scale))
        if self.y_centre:
            shift[self.intercept] = self.y_centre
        per_coef = xr.DataArray(self.y_scale / self.x_scale, dims="coef")
        out["beta"] = posterior["beta"] * per_coef + xr.DataArray(shift, dims="coef")
        if design.family.has_dispersion:  # the Gaussian's σ; other dispersions are unscaled (s_y = 1)
            name = design.family.dispersion_name
            out[name] = posterior[name] * self.y_scale
        for layout in layouts:
            scale = np.concatenate([s for t, s in zip(design.terms, self.z_scale) if t.group == layout.group])
            factor = xr.DataArray(self.y_scale / scale, dims=f"{layout.name}_effect")
            for name in (f"sd_{layout.name}", f"u_{layout.name}"):
                out[name] = posterior[name] * factor
        return out


def _spread(scales: np.ndarray, rms: np.ndarray) -> np.ndarray:
    """Column scales for standardising: the standard deviation, or the root mean square where
    that is not a spread (a 0/1 column, a constant one: :meth:`Design.x_scales` gives 1 there, and
    for a column whose SD is exactly 1, which is harmless: every positive scale is exact)."""
    return np.where(scales == 1.0, np.where(rms > 0, rms, 1.0), scales)
