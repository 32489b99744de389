"""The REML/ML fit: estimates, random effects, predictions and an lmer-like summary."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from ..data.design import Design
from ..data.reference_grid import as_specs, marginal_functions
from ..data.layout import Structure, structure_of
from ..errors import ArgumentError
from ..data.storage import StoredSchema, check_rebuilt, design_dataset, write
from ..results import check_flag, lazily
from ..linalg.factorization import Factorization, conditional_covariances, effects
from ..tables import (correlation_from_cov, fixed_correlation_text, html_section, indent, random_effects_text,
                      readable_p_values)
from .anova import DDF_NAMES, check_ddf, contrast_matrix, f_row, t_table, type3_hypotheses
from .criterion import profiled_criterion
from .emmeans import MarginalMeans
from .kenward_roger import KenwardRoger, kenward_roger
from .optimize import OptSummary
from .inference import InferableFit
from .satterthwaite import VarianceDerivatives, variance_derivatives
from .refit import LinearRefit


@dataclass(frozen=True, eq=False)
class RemlResult(InferableFit):
    """A REML or ML fit of a linear mixed model, read like lme4's ``merMod``.

    Attributes
    ----------
    design
        The design that was fitted.
    reml
        True for REML, False for maximum likelihood.
    structure
        θ's layout over the grouping factors.
    factorization
        The blocked Cholesky factor at the optimum.
    optsummary
        The optimiser's record.
    criterion
        REML criterion at the optimum, or the deviance (-2 log-likelihood) for ML.
    """

    design: Design
    reml: bool
    structure: Structure
    factorization: Factorization
    optsummary: OptSummary
    criterion: float

    # ----- what PointFit reads ----------------------------------------------------------
    @property
    def theta_values(self) -> np.ndarray:
        """θ̂."""
        return self.factorization.theta

    @property
    def beta_values(self) -> np.ndarray:
        """β̂."""
        return self.factorization.beta

    @property
    def effect_scale(self) -> float:
        """σ̂²: Λ is relative to the residual SD."""
        return self.sigma**2

    # ----- scalars -------------------------------------------------------------------
    @cached_property
    def sigma(self) -> float:
        """Residual standard deviation σ̂."""
        dof = self.design.n - self.design.p if self.reml else self.design.n
        return float(np.sqrt(self.factorization.pwrss / dof))

    @property
    def loglik(self) -> float:
        """Log-likelihood at the optimum (the REML log-likelihood for REML fits), as lme4's ``logLik``."""
        return -self.criterion / 2.0

    @property
    def n_params(self) -> int:
        """Number of estimated parameters: fixed effects, θ and σ."""
        return self.design.p + self.structure.n_theta + 1

    # ----- fixed effects -------------------------------------------------------------
    def vcov(self, adjusted: bool = False) -> pd.DataFrame:
        """Covariance matrix of β̂, σ̂² (X'V⁻¹X)⁻¹; with ``adjusted``, Kenward and Roger's adjusted
        covariance (pbkrtest's ``vcovAdj``; REML fits only, see :attr:`kenward_roger`)."""
        check_flag("adjusted", adjusted)
        names = list(self.design.fixed_names)
        cov = self.kenward_roger.vcov_adjusted if adjusted else self.sigma**2 * self.factorization.rx_inverse
        return pd.DataFrame(cov, index=names, columns=names)

    def tvalues(self) -> pd.Series:
        """β̂ / SE, lme4's t values."""
        return (self.fixef() / self.std_errors()).rename("t_value")

    # ----- tests of the fixed effects (lmerTest, pbkrtest; see docs/inference.md) -------
    @cached_property
    def variance_derivatives(self) -> VarianceDerivatives:
        """What Satterthwaite's degrees of freedom read: Var(β̂), its derivatives in (θ, σ) and
        the asymptotic covariance of (θ̂, σ̂) (see :mod:`bayesmix.reml.satterthwaite`)."""
        return variance_derivatives(self)

    @cached_property
    def kenward_roger(self) -> KenwardRoger:
        """Kenward and Roger's adjusted covariance of β̂ and what their df read (see
        :mod:`bayesmix.reml.kenward_roger`); ArgumentError for an ML fit."""
        check_ddf("kenward-roger", self.reml)
        criterion = profiled_criterion(self.design, self.structure, self.reml, factorization="blocked")  # reads the dense blocks
        return kenward_roger(criterion.cp, self.structure, self.theta_values, self.sigma,
                             self.sigma**2 * self.factorization.rx_inverse)

    def coef_tests(self, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Per fixed effect: estimate, standard error, df, t value and two-sided p value, as
        lmerTest's ``summary`` (``ddf="satterthwaite"``, the default) or with ``ddf="kenward-roger"``
        (whose standard errors are the adjusted ones)."""
        table = t_table(self, np.eye(self.design.p), ddf, names=list(self.design.fixed_names))
        return table[["estimate", "std_error", "df", "t_value", "p_value"]]

    def contest(self, L, ddf: str = "satterthwaite", joint: bool = True, rhs=0.0, level: float = 0.95) -> pd.DataFrame:
        """Tests of the linear hypotheses Lβ = rhs, as lmerTest's ``contest``.

        Parameters
        ----------
        L
            The hypothesis matrix, one column per fixed effect (a vector for one hypothesis), or
            a DataFrame whose columns name fixed effects (absent ones are 0).
        ddf
            ``"satterthwaite"`` or ``"kenward-roger"`` (REML fits only).
        joint
            One F test of all rows together (columns ``sum_sq, mean_sq, num_df, den_df, F,
            p_value``), or a t test per row (``estimate, std_error, df, t_value, lower, upper,
            p_value``, with a ``level`` confidence interval).
        rhs
            The hypothesised value(s) of Lβ.
        """
        check_flag("joint", joint)
        index = list(L.index) if isinstance(L, pd.DataFrame) else None
        L = contrast_matrix(self, L)
        if joint:
            return pd.DataFrame([f_row(self, L, ddf, rhs)])
        return t_table(self, L, ddf, rhs, level, index)

    def anova(self, type: int = 3, ddf: str = "satterthwaite") -> pd.DataFrame:
        """Type III F test of each fixed-effect term, as lmerTest's ``anova(m, type = 3)``; the
        hypotheses are lmerTest's for the treatment coding (see :mod:`bayesmix.reml.anova`).
        Columns ``sum_sq, mean_sq, num_df, den_df, F, p_value``, one row per term."""
        if type not in (3, "3", "III"):
            raise ArgumentError(f"anova computes type III tests (type=3), not type={type!r}.")
        rows = {term: f_row(self, L, ddf) for term, L in type3_hypotheses(self).items()}
        return pd.DataFrame.from_dict(rows, orient="index")

    def emmeans(self, specs: str | list[str], ddf: str = "satterthwaite", at: dict | None = None,
                level: float = 0.95, scale: str = "link") -> MarginalMeans:
        """Estimated marginal means of ``specs``, as R's ``emmeans(fit, specs)``; their pairwise
        contrasts by ``.pairs(adjust="tukey")``.

        Parameters
        ----------
        specs
            The categorical predictor(s) whose levels (combinations) get a mean; the other
            categorical predictors are averaged over with equal weights, numeric ones held at
            their means.
        ddf
            ``"satterthwaite"`` or ``"kenward-roger"`` (emmeans' ``lmer.df``).
        at
            Values at which to hold predictors instead (``{"Days": [0, 3, 6, 9]}`` gives a mean
            per value of a numeric predictor named in ``specs``).
        level
            Confidence level of the intervals.
        scale
            ``"link"`` or ``"response"``: the same for a linear mixed model (identity link).
        """
        specs = as_specs(specs)
        return MarginalMeans(self, specs, marginal_functions(self.design, specs, at), check_ddf(ddf, self.reml), level, scale)

    # ----- covariance parameters and random effects -------------------------------------
    def residual_components(self) -> list[tuple]:
        """The residual's row of :meth:`varcorr`."""
        return [("Residual", None, None, self.sigma**2, self.sigma)]

    def dispersion_estimates(self) -> dict[str, float]:
        """``{"sigma": σ̂}``."""
        return {"sigma": self.sigma}

    @cached_property
    def modes(self) -> list[np.ndarray]:
        """Conditional modes b = Λu per factor block, each (levels, q)."""
        u1, u2 = self.factorization.spherical_modes()
        u = u1.ravel() if u2 is None else np.concatenate([u1.ravel(), u2])
        return effects(self.structure, self.factorization.theta, u)

    def conditional_covariances(self) -> list[np.ndarray]:
        """σ̂² Λ [(Λ'Z'ZΛ + I)⁻¹]_level Λ' per factor block, given θ and β̂."""
        return [self.sigma**2 * c for c in conditional_covariances(self.structure, self.factorization)]

    # ----- fitted values and predictions ------------------------------------------------
    def fitted(self) -> pd.Series:
        """Conditional fitted values X β̂ + Z b̂ (a lazy dask Series for dask or Parquet data)."""
        if not self.design.in_memory:
            return _per_partition(self, lambda part: self.predict(part).rename("fitted"), "fitted")
        rows = self.design.rows
        return pd.Series(self.linear_predictor(rows), index=rows.index, name="fitted")

    def residuals(self, scaled: bool = False) -> pd.Series:
        """Response minus conditional fitted values; when ``scaled``, times √w / σ̂ (lme4's scaled Pearson
        residuals; divided by σ̂ without weights). Lazy for dask data."""
        if not self.design.in_memory:
            from ..data.dask_data import response_of

            scale = self.sigma if scaled else 1.0
            return _per_partition(
                self, lambda part: ((response_of(self.design, part) - self.predict(part)) / scale).rename("residual"), "residual"
            )
        rows = self.design.rows
        r = rows.y - self.fitted().to_numpy()
        if scaled:  # lme4's residuals(type = "pearson", scaled = TRUE)
            r = r / self.sigma if rows.weights is None else r * np.sqrt(rows.weights) / self.sigma
        return pd.Series(r, index=rows.index, name="residual")

    def predict(
        self, newdata: pd.DataFrame | None = None, random: bool = True, allow_new_levels: bool = False
    ) -> pd.Series:
        """Predicted mean response.

        Parameters
        ----------
        newdata
            Rows to predict (a pandas or polars DataFrame or pyarrow Table, or a dask DataFrame: the result is then a lazy
            dask Series); the fitted rows when omitted.
        random
            Include the random effects (conditional prediction); False gives the
            population-level prediction X β̂.
        allow_new_levels
            Let levels of a grouping factor that were not in the fitted data contribute a
            random effect of 0 (the population level); otherwise they raise DataError.
        """
        check_flag("random", random)
        check_flag("allow_new_levels", allow_new_levels)
        if newdata is None and not self.design.in_memory:
            return _per_partition(self, lambda part: self.predict(part, random, allow_new_levels), "predicted")
        if newdata is None:
            rows = self.design.rows
            return self.fitted() if random else pd.Series(self.linear_predictor(rows, False), index=rows.index)
        lazy = lazily(newdata, lambda part: self.predict(part, random, allow_new_levels))
        if lazy is not None:
            return lazy
        new = self._new_rows(
            newdata, random, allow_new_levels,
            "pass allow_new_levels=True to predict them at the population level (random effect 0).",
        )
        return pd.Series(self.linear_predictor(new, random), index=new.index, name="predicted")

    def refitter(self) -> "LinearRefit":
        """Refits of this model to new responses, reusing its cross-products (:class:`~bayesmix.reml.refit.LinearRefit`)."""
        if not self.design.in_memory:
            raise ArgumentError("refit and simulate need the rows in memory; this fit was made from dask or Parquet data.")
        return LinearRefit(self)

    # ----- saving ----------------------------------------------------------------------
    def to_netcdf(self, path) -> None:
        """Save the fit to a netCDF file; :func:`bayesmix.load` gives it back.

        The file holds the formula, the data rows used, θ, the criterion and the optimiser's
        record; loading rebuilds the design and the Cholesky factor at the saved θ (no
        refitting), so estimates and predictions are those of this fit.
        """
        opt = self.optsummary
        record = {
            "method": opt.method, "initial": np.asarray(opt.initial, dtype=float).tolist(),
            "final": np.asarray(opt.final, dtype=float).tolist(), "fmin": float(opt.fmin),
            "evaluations": int(opt.evaluations), "iterations": int(opt.iterations), "converged": bool(opt.converged),
            "message": str(opt.message), "boundary": list(opt.boundary), "path": [float(v) for v in opt.path],
        }
        dataset = design_dataset(
            self.design, "RemlResult",
            {"reml": int(self.reml), "criterion": float(self.criterion), "optsummary": json.dumps(record),
             "fixed_names": json.dumps(list(self.design.fixed_names))},
        )
        dataset["theta"] = xr.Variable("theta_element", np.asarray(self.factorization.theta, dtype=float))
        write(xr.DataTree(), dataset.assign_coords(theta_element=list(self.structure.names)), path)

    stored_schema: ClassVar[StoredSchema] = StoredSchema(
        {"reml": int, "criterion": float, "optsummary": dict, "fixed_names": list}, variables=("theta",)
    )

    @classmethod
    def from_stored(cls, design: Design, tree: xr.DataTree, stored: xr.Dataset) -> RemlResult:
        """The fit saved in ``stored`` (its ``bayesmix`` group) on its rebuilt ``design``: the
        Cholesky factor at the saved θ, checked against the saved criterion (no refitting)."""
        check_rebuilt(json.loads(stored.attrs["fixed_names"]) == list(design.fixed_names), "the fixed-effect names")
        structure = structure_of(design)
        check_rebuilt(list(stored["theta_element"].values) == list(structure.names), "the random-effect parameters")
        reml = bool(stored.attrs["reml"])
        criterion = profiled_criterion(design, structure, reml)
        theta = stored["theta"].values.astype(float)
        value = float(stored.attrs["criterion"])
        check_rebuilt(np.isclose(criterion(theta), value, rtol=1e-10, atol=0.0), "the criterion at the saved θ")
        record = json.loads(stored.attrs["optsummary"])
        opt = OptSummary(
            record["method"], np.array(record["initial"]), np.array(record["final"]), record["fmin"],
            record["evaluations"], record["iterations"], record["converged"], record["message"],
            tuple(record["boundary"]), list(record["path"]),
        )
        return cls(design, reml, structure, criterion.factorize(theta), opt, value)

    # ----- reporting -------------------------------------------------------------------
    def summary(self, ddf: str | None = "satterthwaite") -> "RemlSummary":
        """lmer-like summary: text via ``print``, tables as attributes, HTML in notebooks.

        The fixed-effects table has lmerTest's df and p values by ``ddf`` (``"satterthwaite"``
        or ``"kenward-roger"``, whose standard errors are the adjusted ones), or lme4's table
        without them for ``ddf=None``.
        """
        return RemlSummary(self, ddf)

    def __repr__(self) -> str:
        method = "REML" if self.reml else "ML"
        fixef = ", ".join(f"{k}={v:.4g}" for k, v in self.fixef().items())
        return (
            f"<RemlResult {method} {self.design.formula.text!r}: {fixef}; sigma={self.sigma:.4g}; "
            f"{'criterion' if self.reml else 'deviance'}={self.criterion:.2f}{'; singular' if self.singular else ''}>"
        )

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


class RemlSummary:
    """The pieces of an lmer summary as tables, printable as lme4 prints them.

    Attributes
    ----------
    fixed
        Estimate, standard error, t value and (unless ``ddf`` is None) df and p value per fixed effect.
    random
        Per random effect: group, name, variance, SD, and correlations with the effects above it.
    fixed_correlation
        Correlation matrix of the fixed-effect estimates.
    scaled_residuals
        Min, quartiles and max of the residuals divided by σ̂ (None for dask or Parquet data,
        whose rows are not in memory).
    """

    def __init__(self, fit: RemlResult, ddf: str | None = "satterthwaite"):
        self.fit = fit
        self.ddf = ddf
        if ddf is None or not fit.design.p:
            self.fixed = pd.DataFrame({"estimate": fit.fixef(), "std_error": fit.std_errors(), "t_value": fit.tvalues()})
        else:
            self.fixed = fit.coef_tests(ddf)
        self.fixed_correlation = correlation_from_cov(fit.vcov())
        self.scaled_residuals = None
        if fit.design.in_memory:
            r = fit.residuals(scaled=True).to_numpy()
            self.scaled_residuals = pd.Series(
                np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]), index=["min", "1Q", "median", "3Q", "max"]
            )
        residual = pd.DataFrame([{"group": "Residual", "name": "", "variance": fit.sigma**2, "std_dev": fit.sigma}])
        self.random = pd.concat([fit.random_table(), residual], ignore_index=True)

    def __str__(self) -> str:
        fit = self.fit
        lines = [
            f"Linear mixed model fit by {'REML' if fit.reml else 'maximum likelihood'}",
            f"Formula: {fit.design.formula.text}",
            "",
        ]
        if fit.reml:
            lines.append(f"REML criterion at convergence: {fit.criterion:.4f}")
        else:
            lines.append("     AIC      BIC   logLik deviance  df.resid")
            lines.append(
                f"{fit.aic:8.1f} {fit.bic:8.1f} {fit.loglik:8.1f} {fit.criterion:8.1f} {fit.nobs - fit.n_params:9d}"
            )
        if self.scaled_residuals is not None:
            lines += ["", "Scaled residuals:", indent(self.scaled_residuals.to_frame().T.to_string(index=False, float_format="%.4f")), ""]
        else:
            lines += ["", "Scaled residuals: not computed (the rows are not in memory; residuals() gives them lazily)", ""]
        lines.append("Random effects:")
        lines.append(indent(random_effects_text(self.random)))
        groups = ", ".join(f"{g}, {k}" for g, k in fit.ngrps.items())
        lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
        fixed = readable_p_values(self.fixed)
        fixed = fixed.to_string(float_format=lambda v: f"{v:.4f}") if len(fixed) else "none (the formula has no fixed effects)"
        heading = "Fixed effects:" if "df" not in self.fixed else f"Fixed effects ({DDF_NAMES[check_ddf(self.ddf, fit.reml)]} df):"
        lines += ["", heading, indent(fixed)]
        if len(self.fixed) > 1:
            lines += ["", "Correlation of fixed effects:", indent(fixed_correlation_text(self.fixed_correlation))]
        lines.append("")
        lines.append(f"optimizer: {fit.optsummary}")
        if fit.singular:
            lines.append(fit.singular_message())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        fit = self.fit
        head = (
            f"<p><b>Linear mixed model fit by {'REML' if fit.reml else 'ML'}</b>: <code>{fit.design.formula.text}</code><br>"
            f"{'REML criterion' if fit.reml else 'deviance'} {fit.criterion:.4f}; {fit.nobs} observations; "
            + ", ".join(f"{g}: {k} levels" for g, k in fit.ngrps.items())
            + ("; <b>singular fit</b>" if fit.singular else "")
            + "</p>"
        )
        return head + html_section("Random effects", self.random) + html_section("Fixed effects", readable_p_values(self.fixed))


def _per_partition(fit: RemlResult, function, name: str):
    """``function`` of each partition of the rows a dask-backed fit used, as a lazy dask Series."""
    from ..data.dask_data import complete_rows, lazy_map

    return lazy_map(complete_rows(fit.design), function, (name, float))
