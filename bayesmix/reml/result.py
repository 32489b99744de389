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
from ..data.layout import Structure, structure_of, term_labels
from ..data.storage import StoredSchema, check_rebuilt, design_dataset, write
from ..results import FittedModel, check_flag, lazily
from ..linalg.factorization import Factorization
from ..tables import coef_table, correlation_from_cov, html_section, ranef_by_group
from .criterion import profiled_criterion
from .optimize import OptSummary, is_singular


@dataclass(frozen=True, eq=False)
class RemlResult(FittedModel):
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

    # ----- scalars -------------------------------------------------------------------
    @property
    def theta(self) -> pd.Series:
        """The relative covariance factor's parameters, lme4's ``getME(m, "theta")``."""
        return pd.Series(self.factorization.theta, index=list(self.structure.names), name="theta")

    @property
    def nobs(self) -> int:
        """Number of observations."""
        return self.design.n

    @property
    def ngrps(self) -> dict[str, int]:
        """Number of levels of each grouping factor."""
        return {b.group: b.n_levels for b in self.structure.blocks}

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

    @property
    def aic(self) -> float:
        """Akaike's information criterion, -2 logLik + 2 k."""
        return self.criterion + 2.0 * self.n_params

    @property
    def bic(self) -> float:
        """Bayesian information criterion, -2 logLik + k log n."""
        return self.criterion + self.n_params * np.log(self.nobs)

    @property
    def singular(self) -> bool:
        """lme4's ``isSingular``: a variance or a correlation on the boundary of its space.

        Tested on θ scaled by the root mean square of each random-effect column, so that the
        answer does not depend on the units of the predictors (lme4 tests θ itself).
        """
        return is_singular(self.factorization.theta, self.structure.diagonal(), scale=self.structure.row_scale)

    # ----- fixed effects -------------------------------------------------------------
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates β̂."""
        return pd.Series(self.factorization.beta, index=list(self.design.fixed_names), name="estimate")

    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of β̂, σ̂² (X'V⁻¹X)⁻¹."""
        names = list(self.design.fixed_names)
        return pd.DataFrame(self.sigma**2 * self.factorization.rx_inverse, index=names, columns=names)

    def std_errors(self) -> pd.Series:
        """Standard errors of β̂."""
        return pd.Series(np.sqrt(np.diag(self.vcov())), index=list(self.design.fixed_names), name="std_error")

    def tvalues(self) -> pd.Series:
        """β̂ / SE, lme4's t values."""
        return (self.fixef() / self.std_errors()).rename("t_value")

    # ----- covariance parameters -----------------------------------------------------
    def covariances(self) -> list[tuple[str, str, tuple[str, ...], np.ndarray]]:
        """Per random-effects term: lme4's label (``g.1`` for repeats), grouping factor, columns, covariance."""
        out, labels = [], term_labels(self.design)
        for block in self.structure.blocks:
            lam = block.lambda_(self.factorization.theta)
            cov = self.sigma**2 * lam @ lam.T
            for term, cols in zip(block.terms, block.term_slices):
                out.append((labels[term], block.group, block.columns[cols], cov[cols, cols]))
        return out

    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(m))``.

        One row per variance, then per covariance of each term, then the residual; column
        ``vcov`` holds variances and covariances, ``sdcor`` standard deviations and correlations.
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
        rows.append(("Residual", None, None, self.sigma**2, self.sigma))
        return pd.DataFrame(rows, columns=["group", "var1", "var2", "vcov", "sdcor"])

    # ----- random effects ------------------------------------------------------------
    @cached_property
    def _modes(self) -> list[np.ndarray]:
        """Conditional modes b = Λu per factor block, each (levels, q)."""
        u1, u2 = self.factorization.spherical_modes()
        blocks = self.structure.blocks
        out = [u1 @ blocks[0].lambda_(self.factorization.theta).T]
        start = 0
        for block in blocks[1:]:
            size = block.n_levels * block.q
            u = u2[start : start + size].reshape(block.n_levels, block.q)
            out.append(u @ block.lambda_(self.factorization.theta).T)
            start += size
        return out

    def _ranef_frames(self) -> dict[str, pd.DataFrame]:
        return {
            b.group: pd.DataFrame(m, index=b.levels, columns=list(b.columns))
            for b, m in zip(self.structure.blocks, self._modes)
        }

    def ranef(self, group: str | None = None):
        """Conditional modes of the random effects, one DataFrame (levels x columns) per factor.

        Returns the factor's DataFrame when the model has one grouping factor or ``group``
        names one; otherwise a dict of them keyed by factor.
        """
        return ranef_by_group(self._ranef_frames(), group)

    def cond_var(self, group: str | None = None):
        """Conditional covariance of each level's random effects, (levels, q, q) per factor.

        σ̂² Λ [(Λ'Z'ZΛ + I)⁻¹]_level Λ', given θ and β̂ (lme4's ``condVar``).
        """
        first, rest = self.factorization.spherical_variances()
        theta = self.factorization.theta
        out, start = {}, 0
        for k, block in enumerate(self.structure.blocks):
            lam = block.lambda_(theta)
            if k == 0:
                spherical = first
            else:
                idx = start + np.arange(block.n_levels * block.q).reshape(block.n_levels, block.q)
                spherical = rest[idx[:, :, None], idx[:, None, :]]
                start += block.n_levels * block.q
            out[block.group] = self.sigma**2 * lam @ spherical @ lam.T
        return ranef_by_group(out, group)

    def coef(self, group: str | None = None):
        """Per-level coefficients: fixed effects plus that level's random effects (lme4's ``coef``)."""
        fixef = self.fixef()
        frames = {g: coef_table(fixef, r) for g, r in self._ranef_frames().items()}
        return ranef_by_group(frames, group)

    # ----- fitted values and predictions ------------------------------------------------
    def fitted(self) -> pd.Series:
        """Conditional fitted values X β̂ + Z b̂ (a lazy dask Series for dask or Parquet data)."""
        if not self.design.in_memory:
            return _per_partition(self, lambda part: self.predict(part).rename("fitted"), "fitted")
        values = self.design.rows.X @ self.factorization.beta
        for block, modes in zip(self.structure.blocks, self._modes):
            values = values + np.einsum("ij,ij->i", block.z, modes[block.codes])
        return pd.Series(values, index=self.design.rows.index, name="fitted")

    def residuals(self, scaled: bool = False) -> pd.Series:
        """Response minus conditional fitted values (divided by σ̂ when ``scaled``; lazy for dask data)."""
        if not self.design.in_memory:
            from ..data.dask_data import response_of

            scale = self.sigma if scaled else 1.0
            return _per_partition(
                self, lambda part: ((response_of(self.design, part) - self.predict(part)) / scale).rename("residual"), "residual"
            )
        rows = self.design.rows
        r = rows.y - self.fitted().to_numpy()
        return pd.Series(r / self.sigma if scaled else r, index=rows.index, name="residual")

    def predict(
        self, newdata: pd.DataFrame | None = None, random: bool = True, allow_new_levels: bool = False
    ) -> pd.Series:
        """Predicted mean response.

        Parameters
        ----------
        newdata
            Rows to predict (a pandas DataFrame, or a dask DataFrame: the result is then a lazy
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
            return self.fitted() if random else pd.Series(rows.X @ self.factorization.beta, index=rows.index)
        lazy = lazily(newdata, lambda part: self.predict(part, random, allow_new_levels))
        if lazy is not None:
            return lazy
        new = self._new_rows(
            newdata, random, allow_new_levels,
            "pass allow_new_levels=True to predict them at the population level (random effect 0).",
        )
        values = new.X @ self.factorization.beta
        if random:
            for k, (codes, z) in enumerate(zip(new.codes, new.z)):
                block, cols = self.structure.locate(k)
                b = np.where((codes >= 0)[:, None], self._modes[block][np.maximum(codes, 0)][:, cols], 0.0)
                values = values + np.einsum("ij,ij->i", z, b)
        return pd.Series(values, index=new.index, name="predicted")

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
    def summary(self) -> "RemlSummary":
        """lmer-like summary: text via ``print``, tables as attributes, HTML in notebooks."""
        return RemlSummary(self)

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
        Estimate, standard error and t value per fixed effect.
    random
        Per random effect: group, name, variance, SD, and correlations with the effects above it.
    fixed_correlation
        Correlation matrix of the fixed-effect estimates.
    scaled_residuals
        Min, quartiles and max of the residuals divided by σ̂ (None for dask or Parquet data,
        whose rows are not in memory).
    """

    def __init__(self, fit: RemlResult):
        self.fit = fit
        self.fixed = pd.DataFrame(
            {"estimate": fit.fixef(), "std_error": fit.std_errors(), "t_value": fit.tvalues()}
        )
        self.fixed_correlation = correlation_from_cov(fit.vcov())
        self.scaled_residuals = None
        if fit.design.in_memory:
            r = fit.residuals(scaled=True).to_numpy()
            self.scaled_residuals = pd.Series(
                np.quantile(r, [0, 0.25, 0.5, 0.75, 1.0]), index=["min", "1Q", "median", "3Q", "max"]
            )
        rows = []
        for group, _, columns, cov in fit.covariances():
            corr = correlation_from_cov(cov)
            for i, name in enumerate(columns):
                row = {"group": group, "name": name, "variance": cov[i, i], "std_dev": np.sqrt(cov[i, i])}
                row.update({f"corr_{columns[j]}": corr[i, j] for j in range(i)})
                rows.append(row)
        rows.append({"group": "Residual", "name": "", "variance": fit.sigma**2, "std_dev": fit.sigma})
        self.random = pd.DataFrame(rows)

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
            lines += ["", "Scaled residuals:", _indent(self.scaled_residuals.to_frame().T.to_string(index=False, float_format="%.4f")), ""]
        else:
            lines += ["", "Scaled residuals: not computed (the rows are not in memory; residuals() gives them lazily)", ""]
        lines.append("Random effects:")
        lines.append(_indent(_random_text(self.random)))
        groups = ", ".join(f"{g}, {k}" for g, k in fit.ngrps.items())
        lines.append(f"Number of obs: {fit.nobs}, groups:  {groups}")
        fixed = self.fixed.to_string(float_format=_fixed_format) if len(self.fixed) else "none (the formula has no fixed effects)"
        lines += ["", "Fixed effects:", _indent(fixed)]
        if len(self.fixed) > 1:
            corr = self.fixed_correlation.where(np.tril(np.ones(self.fixed_correlation.shape, dtype=bool), -1))
            corr = corr.iloc[1:, :-1].apply(lambda c: c.map(lambda v: "" if pd.isna(v) else f"{v:.3f}"))
            lines += ["", "Correlation of fixed effects:", _indent(corr.to_string())]
        lines.append("")
        lines.append(f"optimizer: {fit.optsummary}")
        if fit.singular:
            lines.append("boundary (singular) fit: a variance is 0 or a correlation is +-1 (see RemlResult.singular)")
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
        return head + html_section("Random effects", self.random) + html_section("Fixed effects", self.fixed)


def _random_text(table: pd.DataFrame) -> str:
    frame = table.copy()
    frame["group"] = frame["group"].where(frame["group"].ne(frame["group"].shift()), "")
    return frame.to_string(index=False, na_rep="", float_format="%.4f")


def _fixed_format(value: float) -> str:
    return f"{value:.4f}"


def _indent(text: str) -> str:
    return "\n".join(" " + line for line in text.splitlines())


def _per_partition(fit: RemlResult, function, name: str):
    """``function`` of each partition of the rows a dask-backed fit used, as a lazy dask Series."""
    from ..data.dask_data import complete_rows, lazy_map

    return lazy_map(complete_rows(fit.design), function, (name, float))
