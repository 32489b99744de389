"""What every point-estimate fit reads alike: θ's layout, fixed effects, variance components,
conditional modes and their variances, per-level coefficients and the linear predictor.

:class:`~bayesmix.RemlResult` (a linear mixed model by REML or ML) and
:class:`~bayesmix.GlmmResult` (a generalised linear mixed model by the Laplace approximation or
quadrature) derive from :class:`PointFit`. Each supplies θ, β, the covariance of β, the
conditional modes b = Λû per factor block and their conditional covariances, and the scale of
the random effects' covariance (σ² for the linear model, whose Λ is relative to σ; 1 for a
GLMM, whose Λ is on the scale of the linear predictor).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data.design import Rows
from ..data.layout import Structure, random_part, term_labels
from ..errors import ConvergenceWarning, warn
from ..results import FittedModel
from ..tables import coef_table, correlation_from_cov, ranef_by_group
from .optimize import SINGULAR_TOL, is_singular

#: How close to ±1 a correlation of an effect on the boundary must be to be reported as ±1 (an
#: effect with a zero diagonal in Λ is exactly proportional to one earlier effect or to none).
CORRELATION_TOL = 1e-6


class PointFit(FittedModel):
    """The shared reading of a point-estimate fit of a design; see the module docstring.

    Subclasses set ``design`` and ``structure`` and implement :attr:`theta_values`,
    :attr:`beta_values`, :meth:`vcov`, :attr:`effect_scale`, :attr:`modes`,
    :meth:`conditional_covariances`, :attr:`loglik` and :attr:`n_params`.
    """

    structure: Structure

    # ----- what a subclass supplies ----------------------------------------------------------
    @property
    def theta_values(self) -> np.ndarray:
        """θ at the estimates, in :attr:`structure` order."""
        raise NotImplementedError

    @property
    def beta_values(self) -> np.ndarray:
        """β̂ as an array."""
        raise NotImplementedError

    @property
    def effect_scale(self) -> float:
        """The factor of ΛΛ' in the covariance of one level's random effects."""
        raise NotImplementedError

    @property
    def modes(self) -> list[np.ndarray]:
        """Conditional modes b = Λû per factor block, each (levels, q)."""
        raise NotImplementedError

    def conditional_covariances(self) -> list[np.ndarray]:
        """Per factor block, the conditional covariance of each level's effects, (levels, q, q)."""
        raise NotImplementedError

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of β̂."""
        raise NotImplementedError

    loglik: float
    n_params: int

    # ----- scalars -------------------------------------------------------------------------
    @property
    def theta(self) -> pd.Series:
        """The relative covariance factor's parameters, lme4's ``getME(m, "theta")``."""
        return pd.Series(self.theta_values, index=list(self.structure.names), name="theta")

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self.design.n

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return {b.group: b.n_levels for b in self.structure.blocks}

    @property
    def aic(self) -> float:
        """Akaike's information criterion, -2 logLik + 2 k."""
        return -2.0 * self.loglik + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """Bayesian information criterion, -2 logLik + k log n."""
        return -2.0 * self.loglik + self.n_params * np.log(self.nobs)

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: a variance or a correlation on the boundary of its space.

        Tested on θ scaled by the root mean square of each random-effect column, so that the
        answer does not depend on the units of the predictors (lme4 tests θ itself).
        """
        return is_singular(self.theta_values, self.structure.diagonal(), scale=self.structure.row_scale)

    def boundary(self) -> list[str]:
        """What lies on the boundary of the variance parameters' space (what makes the fit
        :attr:`singular`), in words: an SD that is 0 (``sd(Solo | id) is 0``), a correlation
        of +1 or -1, or a covariance matrix that is rank-deficient without either (an effect is
        a linear combination of several others of its term).

        A term's Cholesky factor Λ (with θ scaled as :attr:`singular` tests it) has a diagonal
        element below lme4's tolerance: when the rest of its row is below it too, that effect
        has SD 0; else the effect is a combination of the earlier ones, which is a correlation of
        ±1 when it is proportional to one of them.
        """
        scaled = self.theta_values * self.structure.row_scale
        found = []
        for block in self.structure.blocks:
            lam = block.lambda_(scaled)
            for cols in block.term_slices:
                L, names = lam[cols, cols], block.columns[cols]
                corr = correlation_from_cov(L @ L.T)
                for i in range(len(names)):
                    if L[i, i] >= SINGULAR_TOL:
                        continue
                    effect = f"{names[i]} | {block.group}"
                    if np.all(np.abs(L[i, :i]) < SINGULAR_TOL):
                        found.append(f"sd({effect}) is 0")
                        continue
                    twins = [j for j in range(i) if abs(corr[i, j]) > 1 - CORRELATION_TOL]
                    if twins:
                        found += [f"cor({names[j]}, {effect}) is {corr[i, j]:+.0f}" for j in twins]
                    else:
                        found.append(
                            f"the covariance matrix of ({', '.join(names)} | {block.group}) is rank-deficient: the "
                            f"{names[i]} effects are a linear combination of the {_listed(names[:i])} effects "
                            "(no correlation is ±1)"
                        )
        return found

    def singular_message(self) -> str:
        """The warning of a :attr:`singular` fit, naming what is on the boundary (:meth:`boundary`)."""
        return (f"boundary (singular) fit: {'; '.join(self.boundary())}. Consider a simpler random-effects structure "
                "(drop that effect, or make the term uncorrelated with ||).")

    def warn_if_singular(self) -> None:
        """Warn (ConvergenceWarning) with :meth:`singular_message` when the fit is :attr:`singular`."""
        if self.singular:
            warn(self.singular_message(), ConvergenceWarning)

    # ----- fixed effects ---------------------------------------------------------------------
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates β̂."""
        return pd.Series(self.beta_values, index=list(self.design.fixed_names), name="estimate")

    def std_errors(self) -> pd.Series:
        """Standard errors of β̂."""
        return pd.Series(np.sqrt(np.diag(self.vcov())), index=list(self.design.fixed_names), name="std_error")

    # ----- covariance parameters -------------------------------------------------------------
    def covariances(self) -> list[tuple[str, str, tuple[str, ...], np.ndarray]]:
        """Per random-effects term: lme4's label (``g.1`` for repeats), grouping factor, columns, covariance."""
        out, labels = [], term_labels(self.design)
        for block in self.structure.blocks:
            lam = block.lambda_(self.theta_values)
            cov = self.effect_scale * lam @ lam.T
            for term, cols in zip(block.terms, block.term_slices):
                out.append((labels[term], block.group, block.columns[cols], cov[cols, cols]))
        return out

    def random_table(self) -> pd.DataFrame:
        """Per random effect: group, name, variance, SD, and correlations with the effects above
        it (the random-effects table of lme4's summary, without the residual)."""
        rows = []
        for group, _, columns, cov in self.covariances():
            corr = correlation_from_cov(cov)
            for i, name in enumerate(columns):
                row = {"group": group, "name": name, "variance": cov[i, i], "std_dev": np.sqrt(cov[i, i])}
                row.update({f"corr_{columns[j]}": corr[i, j] for j in range(i)})
                rows.append(row)
        return pd.DataFrame(rows)

    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(m))``.

        One row per variance, then per covariance of each term (then, for a linear model, the
        residual); column ``vcov`` holds variances and covariances, ``sdcor`` standard
        deviations and correlations.
        """
        rows = []
        for group, _, columns, cov in self.covariances():
            sd = np.sqrt(np.diag(cov))
            corr = correlation_from_cov(cov)
            rows += [(group, c, None, cov[i, i], sd[i]) for i, c in enumerate(columns)]
            rows += [
                (group, columns[i], columns[j], cov[i, j], corr[i, j])
                for i in range(len(columns))
                for j in range(i + 1, len(columns))
            ]
        rows += self.residual_components()
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    def residual_components(self) -> list[tuple]:
        """Rows of :meth:`varcorr` after the random effects (none by default)."""
        return []

    def dispersion_estimates(self) -> dict[str, float]:
        """The estimated dispersion, named as the posterior names it (``sigma``, ``shape``), or nothing."""
        return {}

    # ----- refits ------------------------------------------------------------------------
    def refit(self, y) -> "PointFit":
        """The same model fitted to the response ``y`` (one value per fitted row, e.g. a column of
        :meth:`simulate`), on this fit's design: no formula or design is rebuilt (lme4's ``refit``)."""
        return self.refitter()(y)

    def refitter(self):
        """A callable ``(y, warn=True) -> fit`` refitting this model to new responses (what
        :meth:`refit` and the bootstrap call), set up once."""
        raise NotImplementedError

    # ----- random effects ------------------------------------------------------------------
    def _ranef_frames(self) -> dict[str, pd.DataFrame]:
        return {
            b.group: pd.DataFrame(m, index=b.levels, columns=list(b.columns))
            for b, m in zip(self.structure.blocks, self.modes)
        }

    def ranef(self, group: str | None = None):
        """Conditional modes of the random effects, one DataFrame (levels x columns) per factor.

        Returns the factor's DataFrame when the model has one grouping factor or ``group``
        names one; otherwise a dict of them keyed by factor.
        """
        return ranef_by_group(self._ranef_frames(), group)

    def cond_var(self, group: str | None = None):
        """Conditional covariance of each level's random effects, (levels, q, q) per factor
        (lme4's ``condVar``), given θ and β̂."""
        out = {b.group: c for b, c in zip(self.structure.blocks, self.conditional_covariances())}
        return ranef_by_group(out, group)

    def coef(self, group: str | None = None):
        """Per-level coefficients: fixed effects plus that level's random effects (lme4's ``coef``)."""
        fixef = self.fixef()
        frames = {g: coef_table(fixef, r) for g, r in self._ranef_frames().items()}
        return ranef_by_group(frames, group)

    def linear_predictor(self, rows: Rows, random: bool = True) -> np.ndarray:
        """η = offset + X β̂ (+ Z b̂ when ``random``) for ``rows`` (the fitted rows or new data,
        where a level not seen in fitting, code -1, gets the effect 0)."""
        eta = rows.X @ self.beta_values
        if rows.offset is not None:
            eta = eta + rows.offset
        if random:
            eta = eta + random_part(self.structure, rows, [m[None] for m in self.modes])[0]
        return eta


def _listed(names) -> str:
    """``a``, ``a and b``, ``a, b and c``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
