"""Generalised linear mixed models by maximum likelihood: the fit, and its result read like lme4's ``glmerMod``.

:func:`fit_glmm` fits a design whose family is not the linear Gaussian by the Laplace
approximation (``nagq=1``) or adaptive Gauss-Hermite quadrature (:mod:`bayesmix.reml.laplace`),
and :class:`GlmmResult` reads the fit: lme4-style summary, fixed effects with Wald z tests,
variance components, conditional modes and variances, fitted values and predictions on the
link or the response scale, Pearson, deviance and response residuals, and saving.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from ..data.design import Design
from ..data.reference_grid import as_specs, marginal_functions
from ..data.layout import Structure, structure_of
from ..data.storage import StoredSchema, check_rebuilt, design_dataset, write
from ..errors import ArgumentError, ConvergenceWarning, FitError, SeparationWarning, warn
from ..families import Family
from ..linalg.pirls import GlmmRows
from ..results import check_flag, lazily
from ..tables import (correlation_from_cov, fixed_correlation_text, html_section, indent, random_effects_text,
                      readable_p_values)
from .emmeans import MarginalMeans
from .laplace import LaplaceFit, at_estimates, fit_laplace
from .inference import InferableFit
from .refit import checked_response, with_response
from .separation import separated_coefficients

RESIDUAL_TYPES = ("deviance", "pearson", "response")
SCALES = ("response", "link")


def fit_glmm(design: Design, nagq: int = 1) -> GlmmResult:
    """Fit ``design`` (a family other than the linear Gaussian) by maximum likelihood, as lme4's
    ``glmer(formula, data, family, nAGQ = nagq)``, to the optimum (lme4's default tolerances
    stop short of it).

    Warns with :class:`~bayesmix.SeparationWarning` when the data separate some fixed effects
    (their estimates then run off to infinity), and with :class:`~bayesmix.ConvergenceWarning`
    for a singular (boundary) fit or an optimisation that did not converge.
    """
    rows = design.rows
    structure = structure_of(design)
    separated = separated_coefficients(design)
    if separated:
        warn(
            f"The data separate the fixed effect(s) {', '.join(map(repr, separated))}: some linear combination of them "
            f"predicts every response at its bound (all successes or all failures, or only zero counts), so their "
            "maximum-likelihood estimates are infinite and the reported values and standard errors are meaningless. "
            "Drop or merge the levels involved, or use a prior (model.sample()).",
            SeparationWarning,
        )
    try:
        fit = fit_laplace(structure, rows.X, rows.y, rows.weights, rows.offset, design.family, nagq)
    except np.linalg.LinAlgError as exc:
        cause = (f"the data separate {', '.join(map(repr, separated))} (see the SeparationWarning)" if separated else
                 "the model is not identified by these data (a fixed effect or variance no row informs)")
        raise FitError(f"The GLMM fit failed ({exc}): {cause}. Simplify the model or merge levels.", None) from None
    result = GlmmResult(design, structure, fit)
    if not fit.converged:
        warn(f"The GLMM fit did not converge: {fit.message}.", ConvergenceWarning)
    result.warn_if_singular()
    return result


@dataclass(frozen=True, eq=False)
class GlmmResult(InferableFit):
    """A maximum-likelihood fit of a generalised linear mixed model, read like lme4's ``glmerMod``.

    Attributes
    ----------
    design
        The design that was fitted.
    structure
        θ's layout over the grouping factors.
    fit
        The optimum and what was computed there (:class:`~bayesmix.reml.laplace.LaplaceFit`).
    """

    design: Design
    structure: Structure
    fit: LaplaceFit

    # ----- what PointFit reads ----------------------------------------------------------
    @property
    def theta_values(self) -> np.ndarray:
        """θ̂ (relative to the linear predictor's scale: the effects' covariance is ΛΛ')."""
        return self.fit.theta

    @property
    def beta_values(self) -> np.ndarray:
        """β̂."""
        return self.fit.beta

    @property
    def effect_scale(self) -> float:
        """1: Λ is on the scale of the linear predictor."""
        return 1.0

    @property
    def modes(self) -> list[np.ndarray]:
        """Conditional modes b̂ per factor block, each (levels, q)."""
        return list(self.fit.ranef)

    def conditional_covariances(self) -> list[np.ndarray]:
        """Λ (L L')⁻¹ Λ' per level and factor block, at the estimates (lme4's ``condVar``)."""
        return list(self.fit.condvar)

    # ----- scalars ----------------------------------------------------------------------
    @property
    def family(self) -> Family:
        """The response family."""
        return self.design.family

    @property
    def loglik(self) -> float:
        """The maximised log-likelihood, with all normalising constants (for ``nagq > 1``
        lme4's ``logLik_full``, not its ``logLik``, which is on another scale)."""
        return self.fit.log_likelihood

    @property
    def deviance(self) -> float:
        """-2 log-likelihood (the ``deviance`` column of lme4's summary)."""
        return -2.0 * self.loglik

    @property
    def n_params(self) -> int:
        """Number of estimated parameters: fixed effects, θ and the family's dispersion."""
        return self.fit.n_params

    @property
    def dispersion(self) -> float | None:
        """The family's estimated dispersion (θ of the negative binomial, σ of the Gaussian), or None."""
        return self.fit.dispersion

    def dispersion_estimates(self) -> dict[str, float]:
        """The family's dispersion under the name the posterior gives it (``shape`` for the
        negative binomial, ``sigma`` for the Gaussian), or nothing."""
        return {} if self.dispersion is None else {self.family.dispersion_name: self.dispersion}

    def refitter(self):
        """Refits of this model to new responses by maximum likelihood on the same design, with
        this fit's number of quadrature points: a callable ``(y, warn=True) -> GlmmResult`` taking
        the response as the family reads it (proportions of successes for a binomial with trials)."""
        design, nagq = self.design, self.fit.nagq

        def refit(y, warn: bool = True) -> GlmmResult:
            y = checked_response(self, y)
            design.family.check_values(design.response, y, design.rows.weights)
            with warnings.catch_warnings():
                if not warn:
                    warnings.simplefilter("ignore", ConvergenceWarning)
                return fit_glmm(with_response(design, y), nagq)

        return refit

    # ----- fixed effects ------------------------------------------------------------------
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of β̂: the inverse of the deviance's Hessian in (θ, β, dispersion)
        at the optimum, as lme4's default (``use.hessian = TRUE``)."""
        names = list(self.design.fixed_names)
        return pd.DataFrame(self.fit.vcov_beta, index=names, columns=names)

    def zvalues(self) -> pd.Series:
        """β̂ / SE, lme4's z values."""
        return (self.fixef() / self.std_errors()).rename("z_value")

    def pvalues(self) -> pd.Series:
        """Two-sided Wald p values, 2 Φ(-|z|), as lme4's summary."""
        from scipy.special import ndtr

        return pd.Series(2.0 * ndtr(-np.abs(self.zvalues().to_numpy())), index=list(self.design.fixed_names),
                         name="p_value")

    # ----- fitted values, predictions and residuals ------------------------------------------
    def fitted(self) -> pd.Series:
        """Conditional fitted means μ̂ = g⁻¹(η̂) on the response scale (for the binomial, the
        probability of a success)."""
        rows = self.design.rows
        return pd.Series(self.family.inverse_link(self.linear_predictor(rows)), index=rows.index, name="fitted")

    def predict(
        self, newdata: pd.DataFrame | None = None, type: str = "response", random: bool = True,
        allow_new_levels: bool = False,
    ) -> pd.Series:
        """Predictions on the ``"response"`` scale (μ) or the ``"link"`` scale (η), as lme4's
        ``predict(type = ...)``.

        Parameters
        ----------
        newdata
            Rows to predict (a pandas or polars DataFrame or pyarrow Table, or a dask DataFrame: the result is then a lazy
            dask Series); the fitted rows when omitted. Their offset is the formula's ``offset()``
            terms evaluated on them.
        type
            ``"response"`` (default) or ``"link"``.
        random
            Include the random effects (conditional prediction); False gives the
            population-level prediction.
        allow_new_levels
            Let levels of a grouping factor that were not in the fitted data contribute a
            random effect of 0 (the population level); otherwise they raise DataError.
        """
        if type not in SCALES:
            raise ArgumentError(f"type must be one of {SCALES}, not {type!r}.")
        check_flag("random", random)
        check_flag("allow_new_levels", allow_new_levels)
        if newdata is None:
            rows = self.design.rows
        else:
            lazy = lazily(newdata, lambda part: self.predict(part, type, random, allow_new_levels))
            if lazy is not None:
                return lazy
            rows = self._new_rows(
                newdata, random, allow_new_levels,
                "pass allow_new_levels=True to predict them at the population level (random effect 0).",
            )
        eta = self.linear_predictor(rows, random)
        values = eta if type == "link" else self.family.inverse_link(eta)
        return pd.Series(values, index=rows.index, name="predicted")

    def residuals(self, type: str = "deviance") -> pd.Series:
        """Residuals of the fitted rows, as lme4's ``residuals(type = ...)``: ``"deviance"``
        (default; sign(y - μ) √(w d(y, μ))), ``"pearson"`` ((y - μ) √w / √V(μ)) or ``"response"`` (y - μ)."""
        if type not in RESIDUAL_TYPES:
            raise ArgumentError(f"type must be one of {RESIDUAL_TYPES}, not {type!r}.")
        rows = self.design.rows
        mu = self.fitted().to_numpy()
        if type == "response":
            values = rows.y - mu
        elif type == "deviance":
            values = self.family.deviance_residuals(rows.y, mu, rows.weights, dispersion=self.dispersion)
        else:
            weights = 1.0 if rows.weights is None else rows.weights
            values = (rows.y - mu) * np.sqrt(weights / self.family.variance(mu, self.dispersion))
        return pd.Series(values, index=rows.index, name="residual")

    # ----- saving ----------------------------------------------------------------------------
    def to_netcdf(self, path) -> None:
        """Save the fit to a netCDF file; :func:`bayesmix.load` gives it back.

        The file holds the formula, family, the data rows used, the estimates, the covariance
        of β̂ and the optimiser's record; loading rebuilds the design and the conditional modes
        at the saved estimates (no refitting) and checks the log-likelihood there.
        """
        fit = self.fit
        record = {
            "nagq": fit.nagq, "evaluations": fit.evaluations, "pirls_iterations": fit.pirls_iterations,
            "converged": bool(fit.converged), "message": fit.message, "boundary": list(fit.boundary),
            "parameters": list(fit.parameters), "log_dispersion_se": fit.log_dispersion_se,
        }
        dataset = design_dataset(
            self.design, "GlmmResult",
            {"log_likelihood": float(fit.log_likelihood), "record": json.dumps(record),
             "dispersion": json.dumps(fit.dispersion), "fixed_names": json.dumps(list(self.design.fixed_names))},
        )
        dataset["theta"] = xr.Variable("theta_element", np.asarray(fit.theta, dtype=float))
        dataset["beta"] = xr.Variable("coef", np.asarray(fit.beta, dtype=float))
        dataset["vcov_beta"] = xr.Variable(("coef", "coef2"), np.asarray(fit.vcov_beta, dtype=float))
        dataset["hessian"] = xr.Variable(("parameter", "parameter2"), np.asarray(fit.hessian, dtype=float))
        write(xr.DataTree(), dataset.assign_coords(theta_element=list(self.structure.names)), path)

    stored_schema: ClassVar[StoredSchema] = StoredSchema(
        {"log_likelihood": float, "record": dict, "dispersion": str, "fixed_names": list},
        variables=("theta", "beta", "vcov_beta", "hessian"),
    )

    @classmethod
    def from_stored(cls, design: Design, tree: xr.DataTree, stored: xr.Dataset) -> GlmmResult:
        """The fit saved in ``stored`` on its rebuilt ``design``: the conditional modes at the
        saved estimates (one PIRLS solve), checked against the saved log-likelihood."""
        check_rebuilt(json.loads(stored.attrs["fixed_names"]) == list(design.fixed_names), "the fixed-effect names")
        structure = structure_of(design)
        check_rebuilt(list(stored["theta_element"].values) == list(structure.names), "the random-effect parameters")
        record = json.loads(stored.attrs["record"])
        theta, beta = stored["theta"].values.astype(float), stored["beta"].values.astype(float)
        dispersion = json.loads(stored.attrs["dispersion"])
        check_rebuilt(dispersion is None or isinstance(dispersion, float), "the dispersion")
        rows = design.rows
        glmm_rows = GlmmRows.of(structure, rows.X, rows.y, rows.weights, rows.offset, design.family)
        nagq = int(record["nagq"])
        estimates = at_estimates(glmm_rows, theta, beta, dispersion, nagq)
        saved = float(stored.attrs["log_likelihood"])
        check_rebuilt(np.isclose(estimates["log_likelihood"], saved, rtol=1e-9, atol=1e-9),
                      "the log-likelihood at the saved estimates")
        fit = LaplaceFit(
            **(estimates | {"log_likelihood": saved}),  # the fit's own value (PIRLS from a cold start agrees to ~1e-10)
            vcov_beta=stored["vcov_beta"].values.astype(float),
            hessian=stored["hessian"].values.astype(float),
            parameters=tuple(record["parameters"]), log_dispersion_se=record["log_dispersion_se"],
            nagq=nagq, evaluations=int(record["evaluations"]), pirls_iterations=int(record["pirls_iterations"]),
            converged=bool(record["converged"]), message=str(record["message"]), boundary=tuple(record["boundary"]),
        )
        return cls(design, structure, fit)

    # ----- marginal means --------------------------------------------------------------------
    def emmeans(self, specs: str | list[str], at: dict | None = None, level: float = 0.95,
                scale: str = "link") -> MarginalMeans:
        """Estimated marginal means of ``specs`` with asymptotic (z) intervals, as R's
        ``emmeans(fit, specs)`` for a ``glmer`` fit; ``scale="response"`` maps them through the
        inverse link (emmeans' ``type = "response"``); ``.pairs(adjust)`` gives their pairwise
        contrasts (ratios on the response scale of a log or logit link). ``specs`` and ``at``
        are as for :meth:`bayesmix.RemlResult.emmeans`."""
        specs = as_specs(specs)
        return MarginalMeans(self, specs, marginal_functions(self.design, specs, at), None, level, scale)

    # ----- reporting -------------------------------------------------------------------------
    def summary(self) -> GlmmSummary:
        """glmer-like summary: text via ``print``, tables as attributes, HTML in notebooks."""
        return GlmmSummary(self)

    @cached_property
    def method(self) -> str:
        """How the likelihood was approximated, as lme4 says it."""
        if self.fit.nagq == 1:
            return "Laplace Approximation"
        return f"Adaptive Gauss-Hermite Quadrature, nAGQ = {self.fit.nagq}"

    def __repr__(self) -> str:
        fixef = ", ".join(f"{k}={v:.4g}" for k, v in self.fixef().items())
        return (
            f"<GlmmResult {self.family} {self.design.formula.text!r}: {fixef}; logLik={self.loglik:.2f}"
            f"{'; singular' if self.singular else ''}>"
        )

    def _repr_html_(self) -> str:
        return self.summary()._repr_html_()


class GlmmSummary:
    """The pieces of a glmer summary as tables, printable as lme4 prints them.

    Attributes
    ----------
    fixed
        Estimate, standard error, z value and Wald p value per fixed effect.
    random
        Per random effect: group, name, variance, SD, and correlations with the effects above it.
    fixed_correlation
        Correlation matrix of the fixed-effect estimates.
    scaled_residuals
        Min, quartiles and max of the Pearson residuals (lme4's "scaled residuals").
    """

    def __init__(self, fit: GlmmResult):
        self.fit = fit
        self.fixed = pd.DataFrame(
            {"estimate": fit.fixef(), "std_error": fit.std_errors(), "z_value": fit.zvalues(), "p_value": fit.pvalues()}
        )
        self.fixed_correlation = correlation_from_cov(fit.vcov())
        r = fit.residuals("pearson").to_numpy()
        self.scaled_residuals = pd.Series(np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]),
                                          index=["min", "1Q", "median", "3Q", "max"])
        self.random = fit.random_table()

    def __str__(self) -> str:
        fit = self.fit
        lines = [
            f"Generalized linear mixed model fit by maximum likelihood ({fit.method})",
            f" Family: {fit.family.name}  ( {fit.family.link} )",
            f"Formula: {fit.design.formula.text}",
            "",
            "     AIC      BIC   logLik deviance  df.resid",
            f"{fit.aic:8.1f} {fit.bic:8.1f} {fit.loglik:8.1f} {fit.deviance:8.1f} {fit.nobs - fit.n_params:9d}",
            "",
            "Scaled residuals:",
            indent(self.scaled_residuals.to_frame().T.to_string(index=False, float_format="%.4f")),
            "",
            "Random effects:",
            indent(random_effects_text(self.random)),
            f"Number of obs: {fit.nobs}, groups:  " + ", ".join(f"{g}, {k}" for g, k in fit.ngrps.items()),
        ]
        if fit.dispersion is not None:
            lines.append(f"Dispersion parameter of the {fit.family.name} family: {fit.dispersion:.4g}")
        fixed = readable_p_values(self.fixed)
        lines += ["", "Fixed effects:", indent(fixed.to_string(float_format=lambda v: f"{v:.4f}"))]
        if len(self.fixed) > 1:
            lines += ["", "Correlation of fixed effects:", indent(fixed_correlation_text(self.fixed_correlation))]
        opt = fit.fit
        lines += ["", f"optimizer: {opt.evaluations} deviance evaluations, {opt.pirls_iterations} PIRLS steps; "
                      f"{'converged' if opt.converged else 'NOT converged'} ({opt.message})"]
        if fit.singular:
            lines.append(fit.singular_message())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        fit = self.fit
        head = (
            f"<p><b>Generalized linear mixed model fit by maximum likelihood ({fit.method})</b>: "
            f"<code>{fit.design.formula.text}</code><br>family {fit.family}; logLik {fit.loglik:.4f}; "
            f"AIC {fit.aic:.2f}; {fit.nobs} observations; "
            + ", ".join(f"{g}: {k} levels" for g, k in fit.ngrps.items())
            + ("; <b>singular fit</b>" if fit.singular else "")
            + "</p>"
        )
        return head + html_section("Random effects", self.random) + html_section("Fixed effects", readable_p_values(self.fixed))

