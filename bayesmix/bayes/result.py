"""The posterior of a mixed model, read like the REML result: estimates, effects, predictions."""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import xarray as xr

from ..data.design import Design
from ..data.reference_grid import as_specs, marginal_functions
from ..data.storage import StoredSchema, check_rebuilt, design_dataset, write
from ..results import FittedModel, check_flag, check_prob, lazily
from ..errors import ConvergenceWarning, DataError, warn
from ..families import Binomial, NegativeBinomial, Poisson
from ..tables import coef_table, html_section, parameter_name, ranef_by_group
from ..data.layout import GroupLayout, group_layouts, pair_label
from .emmeans import PosteriorMarginalMeans
from .importance import LOG_WEIGHT, ImportanceDiagnostics, importance_diagnostics
from .priors import Distribution, PriorSet
from .sampling import ArgumentError, SamplerSettings, diagnose_draws, summarise_draws

RHAT_MAX = 1.01
ESS_MIN = 400
MIN_DIAGNOSTIC_DRAWS = 4  # ArviZ's split R-hat and ESS are NaN with fewer draws per chain
DIAGNOSTICS = {"r_hat": "R-hat", "ess_bulk": "bulk ESS", "ess_tail": "tail ESS"}
NEW_LEVELS = ("error", "population", "sample")
SCALES = ("response", "link")


@dataclass(frozen=True)
class Prediction:
    """Posterior predictions for some rows.

    Attributes
    ----------
    mean
        Posterior mean per row of the expected response μ (``type="response"``) or of the
        linear predictor η (``type="link"``).
    mu
        Draws of μ or η (as ``mean``), (chain, draw, obs).
    draws
        Posterior predictive draws of the response (drawn from the family given μ: a Gaussian's
        noise, a binomial proportion of the row's trials, a count), (chain, draw, obs).
    scale
        ``"response"`` when ``mean`` and ``mu`` are of μ, ``"link"`` when of η.
    """

    mean: pd.Series
    mu: xr.DataArray
    draws: xr.DataArray
    scale: str = "response"

    #: Rows a repr shows: the first and last half of them when there are more.
    SHOWN = 10

    def interval(self, prob: float = 0.95, predictive: bool = True) -> pd.DataFrame:
        """Equal-tailed interval per row, of the predictive draws or of μ."""
        check_prob("prob", prob)
        return self._interval(slice(None), prob, predictive)

    def _interval(self, rows, prob: float, predictive: bool) -> pd.DataFrame:
        """:meth:`interval` of the rows at positions ``rows``."""
        values = (self.draws if predictive else self.mu).isel(obs=rows).stack(sample=("chain", "draw")).values
        lo, hi = np.quantile(values, [(1 - prob) / 2, (1 + prob) / 2], axis=1)
        return pd.DataFrame({"mean": self.mean.to_numpy()[rows], "lower": lo, "upper": hi}, index=self.mean.index[rows])

    def _shown(self) -> tuple[str, pd.DataFrame, int]:
        """What a repr shows: a heading, the table of the first and last rows, and how many rows it leaves out."""
        n, half = len(self.mean), self.SHOWN // 2
        rows = np.arange(n) if n <= self.SHOWN else np.r_[:half, n - half:n]
        response = self.scale == "response"
        heading = (f"Prediction of {n} row{'s' * (n != 1)} ({self.mu.sizes['chain']} chains x {self.mu.sizes['draw']} "
                   "draws): " + ("posterior mean of μ, 95% interval of the predictive draws" if response else
                                 "posterior mean and 95% interval of the linear predictor η"))
        return heading, self._interval(rows, 0.95, response), n - len(rows)

    def __repr__(self) -> str:
        heading, table, hidden = self._shown()
        text = table.to_string(float_format=lambda v: f"{v:.4g}")
        if hidden:
            lines = text.splitlines()
            half = self.SHOWN // 2
            text = "\n".join([*lines[: half + 1], f"... {hidden} more rows ...", *lines[half + 1 :]])
        return f"{heading}\n{text}\n(.mean, .mu, .draws; .interval() for every row)"

    def _repr_html_(self) -> str:
        heading, table, hidden = self._shown()
        if hidden:
            half = self.SHOWN // 2
            gap = pd.DataFrame({c: [np.nan] for c in table.columns}, index=pd.Index([f"... {hidden} more rows"]))
            table = pd.concat([table.iloc[:half].set_axis(table.index[:half].astype(str)), gap,
                               table.iloc[half:].set_axis(table.index[half:].astype(str))])
        return (f"<p>{html.escape(heading)}</p>" + table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="")
                + "<p><code>.mean</code>, <code>.mu</code>, <code>.draws</code>; <code>.interval()</code> for every row</p>")


def stack_draws(posterior: xr.Dataset) -> xr.Dataset:
    """``posterior`` with chains and draws stacked into a leading ``sample`` dimension.

    Variables with an empty dimension (``beta`` of a model without fixed effects) are stacked
    by hand: xarray's ``stack`` cannot reshape an empty array.
    """
    empty = [name for name, v in posterior.data_vars.items() if v.size == 0]
    stacked = posterior.drop_vars(empty).stack(sample=("chain", "draw")).transpose("sample", ...)
    for name in empty:
        v = posterior[name].transpose("chain", "draw", ...)
        stacked[name] = (("sample", *v.dims[2:]), v.values.reshape(v.shape[0] * v.shape[1], *v.shape[2:]))
    return stacked


class BayesResult(FittedModel):
    """A sampled posterior of a (generalised) linear mixed model.

    Attributes
    ----------
    design
        The design that was sampled.
    idata
        The ArviZ ``xarray.DataTree``: ``posterior`` (``beta``, ``sd_<group>``,
        ``cor_<group>``, ``u_<group>``, and the family's dispersion ``sigma`` or ``shape``),
        ``sample_stats``, ``observed_data``.
    priors
        The priors used.
    settings
        The sampler settings.
    sampling_seconds, compile_seconds
        Wall time spent sampling and (once per model) compiling.
    method
        How the posterior was sampled: ``"collapsed (random effects integrated out, drawn exactly)"``,
        ``"full (noncentred random effects)"`` (``centred`` with that parameterization) or
        ``"laplace (...)"`` (:mod:`bayesmix.bayes.embedded_laplace`).
    """

    def __init__(
        self,
        design: Design,
        idata: xr.DataTree,
        priors: PriorSet,
        layouts: list[GroupLayout],
        settings: SamplerSettings,
        sampling_seconds: float,
        compile_seconds: float = 0.0,
        method: str = "full, noncentred",
    ):
        self.design = design
        self.idata = idata
        self.priors = priors
        self.layouts = layouts
        self.settings = settings
        self.sampling_seconds = sampling_seconds
        self.compile_seconds = compile_seconds
        self.method = method
        if "observed_data" not in idata.children and design.in_memory:
            idata["observed_data"] = xr.Dataset({"y": ("obs", design.rows.y)}, coords={"obs": np.arange(design.n)})

    # ----- draws ------------------------------------------------------------------------
    @cached_property
    def posterior(self) -> xr.Dataset:
        """The posterior draws as an xarray Dataset."""
        return self.idata["posterior"].to_dataset()

    @cached_property
    def _draws(self) -> xr.Dataset:
        """The posterior with chains and draws stacked into a leading ``sample`` dimension."""
        return stack_draws(self.posterior)

    @property
    def n_draws(self) -> int:
        """Total number of draws over chains."""
        return self.posterior.sizes["chain"] * self.posterior.sizes["draw"]

    @cached_property
    def _parameters(self) -> xr.Dataset:
        """One (chain, draw) variable per reported parameter, named readably; its attribute
        ``variable`` names the posterior variable it is read from (``beta``, ``sd_id``, ...)."""
        post = self.posterior
        out = {name: post["beta"].sel(coef=name, drop=True) for name in self.design.fixed_names}
        for layout in self.layouts:
            sd = post[f"sd_{layout.name}"]
            several = len(self.layouts) > 1
            for effect in layout.effects:
                name = parameter_name("sd", (effect,), layout.group, several)
                out[name] = sd.sel({f"{layout.name}_effect": effect}, drop=True)
            for pair in layout.pairs:
                cor = post[f"cor_{layout.name}"].sel({f"{layout.name}_pair": pair_label(pair)}, drop=True)
                out[parameter_name("cor", pair, layout.group, several)] = cor
        name = self.design.family.dispersion_name
        if name is not None:
            out[name] = post[name]
        # each parameter says which posterior variable it is read from (plots select by either name)
        return xr.Dataset({name: values.assign_attrs(variable=values.name) for name, values in out.items()})

    @property
    def _dispersion_draws(self) -> np.ndarray | None:
        """Draws of the family's dispersion, (draws, 1) to broadcast over rows; None without one."""
        name = self.design.family.dispersion_name
        return None if name is None else self._draws[name].values[:, None]

    def summary(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Posterior mean, SD, equal-tailed interval, R-hat, bulk and tail ESS and MCSE of
        every fixed effect (on the link scale), random-effect SD, correlation and the family's
        dispersion (the residual SD ``sigma``, the negative binomial's ``shape``).

        Warns
        -----
        ConvergenceWarning
            When R-hat or ESS could not be computed (NaN in the table), saying for which
            parameters and why (too few draws, a single chain, constant draws).
        """
        table = self._table(ci_prob)
        undefined = self._undefined_diagnostics(table)
        if undefined:
            warn(undefined, ConvergenceWarning)
        return table

    def _table(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """The table of :meth:`summary`, without its warning."""
        check_prob("ci_prob", ci_prob)
        return summarise_draws(self._parameters, ci_prob)

    def _undefined_diagnostics(self, table: pd.DataFrame) -> str | None:
        """Which convergence diagnostics of ``table`` are NaN, for which parameters and why; None if none is."""
        missing = {label: list(table.index[table[column].isna()]) for column, label in DIAGNOSTICS.items()
                   if table[column].isna().any()}
        if not missing:
            return None
        draws, chains = self.posterior.sizes["draw"], self.posterior.sizes["chain"]
        if draws < MIN_DIAGNOSTIC_DRAWS:
            why = (f"too few draws ({draws} per chain; R-hat and ESS need at least {MIN_DIAGNOSTIC_DRAWS}, "
                   f"and a few hundred to be reliable): sample more draws")
        elif chains == 1 and list(missing) == ["R-hat"]:
            why = "R-hat compares chains and there is only one: sample with chains >= 2"
        else:
            why = "the draws of those parameters are constant or not finite"
        which = "; ".join(
            f"{label} of {'every parameter' if len(names) == len(table) else ', '.join(names)}" for label, names in missing.items()
        )
        return f"Convergence diagnostics could not be computed ({which}): {why}. Convergence is unchecked."

    def fixef(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Posterior summary of the fixed effects."""
        return self._table(ci_prob).loc[list(self.design.fixed_names), ["mean", "sd", "ci_lb", "ci_ub"]]

    def varcorr(self, ci_prob: float = 0.95) -> pd.DataFrame:
        """Posterior summary of the random-effect SDs, correlations and the family's dispersion."""
        return self._table(ci_prob).drop(index=list(self.design.fixed_names))[["mean", "sd", "ci_lb", "ci_ub"]]

    def ranef_draws(self, group: str | None = None) -> xr.DataArray:
        """Draws of the random effects of one grouping factor, (chain, draw, level, effect)."""
        layout = self._layout(group)
        return self.posterior[f"u_{layout.name}"]

    def ranef(self, group: str | None = None):
        """Posterior means of the random effects, one DataFrame (levels x effects) per factor."""
        frames = {l.group: self._mean_frame(self.posterior[f"u_{l.name}"], l) for l in self.layouts}
        return ranef_by_group(frames, group)

    def coef(self, group: str | None = None):
        """Posterior means of fixed plus random effects per level (lme4's ``coef``)."""
        fixef = self.posterior["beta"].mean(("chain", "draw")).to_series()
        fixef.index = list(self.design.fixed_names)
        frames = {l.group: coef_table(fixef, self._mean_frame(self.posterior[f"u_{l.name}"], l)) for l in self.layouts}
        return ranef_by_group(frames, group)

    def coef_draws(self, group: str | None = None) -> xr.DataArray:
        """Draws of fixed plus random effects per level, (chain, draw, level, coef)."""
        layout = self._layout(group)
        u = self.posterior[f"u_{layout.name}"].rename({f"{layout.name}_effect": "coef"})
        beta = self.posterior["beta"]
        return (beta + u.reindex(coef=beta["coef"].values, fill_value=0.0)).rename({f"{layout.name}_level": "level"})

    # ----- marginal means -------------------------------------------------------------------
    def emmeans(self, specs: str | list[str], at: dict | None = None, ci_prob: float = 0.95,
                scale: str = "link") -> PosteriorMarginalMeans:
        """The posterior of the estimated marginal means of ``specs``: the quantities of the point
        fits' ``emmeans`` (R's ``emmeans(fit, specs)``), summarised draw by draw; their pairwise
        contrasts, with the probability that one mean exceeds the other, by ``.pairs()``.

        Parameters
        ----------
        specs
            The categorical predictor(s) whose levels (combinations) get a mean; the other
            categorical predictors are averaged over with equal weights, numeric ones held at
            their means (the reference grid of :mod:`bayesmix.data.reference_grid`).
        at
            Values at which to hold predictors instead (``{"Days": [0, 3, 6, 9]}`` gives a mean
            per value of a numeric predictor named in ``specs``).
        ci_prob
            Probability of the equal-tailed intervals.
        scale
            ``"link"`` or ``"response"``: on the response scale the inverse link is applied to
            each draw (the means are posterior means of g⁻¹(l'β), and the pairs of a log or logit
            link are ratios exp(l_a'β - l_b'β)); the same for a linear model (identity link).

        Returns
        -------
        PosteriorMarginalMeans
            See :mod:`bayesmix.bayes.emmeans`.
        """
        specs = as_specs(specs)
        return PosteriorMarginalMeans(self, specs, marginal_functions(self.design, specs, at), ci_prob, scale)

    # ----- predictions -------------------------------------------------------------------
    def _eta(self, X: np.ndarray, codes, z, offset, new_levels: str, rng: np.random.Generator) -> np.ndarray:
        """Draws of the linear predictor η (μ = g⁻¹(η)), (draws, rows), for materialised data."""
        post = self._draws
        eta = post["beta"].values @ X.T
        if offset is not None:
            eta += offset
        offsets = self._term_offsets()
        for k, (code, zk) in enumerate(zip(codes, z)):
            layout, cols = offsets[k]
            u = post[f"u_{layout.name}"].values[:, :, cols]
            seen = code >= 0
            effect = np.zeros((u.shape[0], len(code), zk.shape[1]))
            effect[:, seen] = u[:, code[seen]]
            if (~seen).any() and new_levels == "sample":
                effect[:, ~seen] = self._new_level_draws(k, code[~seen], rng)
            eta += np.einsum("sij,ij->si", effect, zk)
        return eta

    def _new_level_draws(self, k: int, codes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One draw per new level and posterior draw from the fitted population N(0, Σ_term)."""
        term = self.design.terms[k]
        layout, cols = self._term_offsets()[k]
        post = self._draws
        sd = post[f"sd_{layout.name}"].values[:, cols]
        n_draws = sd.shape[0]
        corr = np.broadcast_to(np.eye(term.q), (n_draws, term.q, term.q)).copy()
        if term.correlated and term.q > 1:
            cor = post[f"cor_{layout.name}"]
            for i in range(term.q):
                for j in range(i + 1, term.q):
                    value = cor.sel({f"{layout.name}_pair": pair_label((term.columns[i], term.columns[j]))}).values
                    corr[:, i, j] = corr[:, j, i] = value
        chol = np.linalg.cholesky(corr + 1e-12 * np.eye(term.q)) * sd[:, :, None]
        _, inverse = np.unique(codes, return_inverse=True)
        standard = rng.standard_normal((n_draws, inverse.max() + 1, term.q))
        return np.einsum("sij,slj->sli", chol, standard)[:, inverse]

    def _term_offsets(self) -> list[tuple[GroupLayout, slice]]:
        out, used = [], {}
        by_group = {l.group: l for l in self.layouts}
        for term in self.design.terms:
            start = used.get(term.group, 0)
            out.append((by_group[term.group], slice(start, start + term.q)))
            used[term.group] = start + term.q
        return out

    def predict(
        self,
        newdata: pd.DataFrame | None = None,
        random: bool = True,
        new_levels: str = "error",
        seed: int | None = None,
        type: str = "response",
    ) -> Prediction:
        """Posterior predictions: the mean, draws of μ (or η) and posterior predictive draws.

        Parameters
        ----------
        newdata
            Rows to predict (the fitted rows when omitted; their offsets are the formula's
            ``offset()`` terms). The predictive draws of new binomial rows are of one trial.
        random
            Include the random effects; False predicts at the population level (Xβ + offset).
        new_levels
            For levels of a grouping factor not in the fitted data: ``"error"`` (raise),
            ``"population"`` (random effect 0) or ``"sample"`` (one draw per new level and
            posterior draw from the fitted distribution of the random effects).
        seed
            Seed for the residual noise and new-level draws.
        type
            ``"response"`` (default): ``mean`` and ``mu`` are of the expected response μ = g⁻¹(η);
            ``"link"``: of the linear predictor η (as lme4's and :class:`~bayesmix.GlmmResult`'s
            ``predict(type=...)``). The predictive draws are of the response either way.
        """
        if not isinstance(type, str) or type not in SCALES:
            raise ArgumentError(f"type must be one of {', '.join(SCALES)}, not {type!r}.")
        if not isinstance(new_levels, str) or new_levels not in NEW_LEVELS:
            raise ArgumentError(f"new_levels must be one of {', '.join(NEW_LEVELS)}, not {new_levels!r}.")
        check_flag("random", random)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
            raise ArgumentError(f"seed must be a non-negative integer or None, not {seed!r}.")
        lazy = lazily(newdata, lambda part: self.predict(part, random, new_levels, seed, type).mean)  # the posterior mean of μ
        if lazy is not None:
            return lazy
        rng = np.random.default_rng(seed)
        if newdata is None:
            rows = self.design.rows
        else:
            rows = self._new_rows(
                newdata, random, new_levels != "error",
                "pass new_levels='sample' (draw their effects from the fitted population) or 'population' (effect 0).",
            )
        index = rows.index
        family = self.design.family
        eta = self._eta(rows.X, list(rows.codes) if random else [], list(rows.z) if random else [], rows.offset,
                        new_levels, rng)
        mu = family.inverse_link(eta)
        draws = family.predictive_draws(mu, self._dispersion_draws, rng, rows.weights)
        if type == "link":
            mu = eta
        shape = (self.posterior.sizes["chain"], self.posterior.sizes["draw"], len(index))
        coords = {"chain": self.posterior["chain"].values, "draw": self.posterior["draw"].values, "obs": np.arange(len(index))}
        as_array = lambda a, name: xr.DataArray(a.reshape(shape), dims=("chain", "draw", "obs"), coords=coords, name=name)
        return Prediction(pd.Series(mu.mean(axis=0), index=index, name="predicted"), as_array(mu, "mu"), as_array(draws, "y"),
                          type)

    def fitted(self) -> pd.Series:
        """Posterior mean of μ for the fitted rows (a lazy dask Series for dask or Parquet data)."""
        if not self.design.in_memory:
            from ..data.dask_data import complete_rows

            return self.predict(complete_rows(self.design)).rename("fitted")
        return self.predict().mean.rename("fitted")

    def residuals(self) -> pd.Series:
        """Response minus the posterior mean of μ (lazy for dask or Parquet data)."""
        if not self.design.in_memory:
            from ..data.dask_data import complete_rows, lazy_map, response_of

            return lazy_map(complete_rows(self.design),
                            lambda part: (response_of(self.design, part) - self.predict(part).mean).rename("residual"),
                            ("residual", float))
        rows = self.design.rows
        return pd.Series(rows.y - self.fitted().to_numpy(), index=rows.index, name="residual")

    # ----- checks -----------------------------------------------------------------------------
    def log_likelihood(self) -> xr.DataArray:
        """Pointwise log-likelihood draws, (chain, draw, obs); also stored in ``idata`` for ArviZ.

        One term per row, with every normalising constant of the family's
        :meth:`~bayesmix.families.Family.log_likelihood`: a binomial row of w trials contributes
        log Binomial(w y; w, μ), as lme4 counts a row of ``cbind(successes, failures)``; prior
        weights of the Poisson and the negative binomial multiply their rows' terms.
        """
        rows = self.design.rows
        if "log_likelihood" not in self.idata.children:
            mu = self.predict().mu
            name = self.design.family.dispersion_name
            dispersion = None if name is None else self.posterior[name].values[:, :, None]
            ll = self.design.family.log_likelihood(rows.y, mu.values, dispersion, rows.weights)
            self.idata["log_likelihood"] = xr.Dataset({"y": (("chain", "draw", "obs"), ll)}, coords=mu.coords)
        return self.idata["log_likelihood"]["y"]

    def loo(self):
        """PSIS leave-one-out cross-validation (``arviz.loo``)."""
        import arviz as az

        self.log_likelihood()
        return az.loo(self.idata)

    def posterior_predictive(self, seed: int | None = None) -> xr.DataArray:
        """Replicated data sets from the posterior (stored in ``idata`` as ``posterior_predictive``)."""
        if "posterior_predictive" not in self.idata.children:
            draws = self.predict(seed=seed).draws
            self.idata["posterior_predictive"] = xr.Dataset({"y": draws})
        return self.idata["posterior_predictive"]["y"]

    def ppc(self, seed: int | None = None) -> pd.DataFrame:
        """Posterior predictive check: observed statistics against their replicated distribution.

        The statistics suit the family: for the Gaussian the mean, SD, min and max; for a count
        (Poisson, negative binomial) the mean, variance, proportion of zeros and max; for the
        binomial the overall proportion of successes (weighted by the trials), the proportion
        of rows without a success and, with trials, of rows of only successes; and for every
        family the spread (SD) of the group means of the first grouping factor (for the
        binomial, of the groups' proportions of successes). For each, the observed value, the
        replicated mean and 95% interval, and the posterior predictive p-value
        P(T(y_rep) >= T(y)).
        """
        rep = self.posterior_predictive(seed).stack(sample=("chain", "draw")).transpose("sample", "obs").values
        rows_ = self.design.rows
        y, codes = rows_.y, rows_.codes[0]
        term = self.design.terms[0]
        family = self.design.family
        binomial = isinstance(family, Binomial)
        # a binomial row's proportion counts as many times as it has trials
        w = rows_.weights if binomial and rows_.weights is not None else np.ones(len(y))
        totals = np.bincount(codes, weights=w, minlength=term.n_levels)

        def group_sd(values):
            sums = np.apply_along_axis(lambda r: np.bincount(codes, weights=w * r, minlength=term.n_levels), -1, values)
            return (sums / totals).std(axis=-1)

        def share(condition):
            return lambda values: condition(values).mean(axis=-1)

        statistics = {"mean": lambda v: (v * w).sum(axis=-1) / w.sum()}
        if binomial:
            statistics["proportion of zeros"] = share(lambda v: v == 0)
            if rows_.weights is not None:
                statistics["proportion of ones"] = share(lambda v: v == 1)
        elif isinstance(family, (Poisson, NegativeBinomial)):
            statistics["variance"] = lambda v: v.var(axis=-1)
            statistics["proportion of zeros"] = share(lambda v: v == 0)
            statistics["max"] = lambda v: v.max(axis=-1)
        else:
            statistics["sd"] = lambda v: v.std(axis=-1)
            statistics["min"] = lambda v: v.min(axis=-1)
            statistics["max"] = lambda v: v.max(axis=-1)
        statistics[f"sd of {term.group} {'proportions' if binomial else 'means'}"] = group_sd
        rows = []
        for name, statistic in statistics.items():
            observed, replicated = float(statistic(y)), statistic(rep)
            lo, hi = np.quantile(replicated, [0.025, 0.975])
            rows.append((name, observed, replicated.mean(), lo, hi, float((replicated >= observed).mean())))
        return pd.DataFrame(rows, columns=["statistic", "observed", "replicated_mean", "ci_lb", "ci_ub", "p_value"]).set_index("statistic")

    def diagnostics(self) -> dict:
        """Divergences, tree-depth saturation, worst R-hat and smallest bulk/tail ESS; for
        ``method="laplace"`` also the Pareto k̂ of the importance weights (``laplace_khat``).

        R-hat and ESS are NaN when they could not be computed for some parameter
        (:meth:`check` says why).
        """
        return self._diagnostics(self._convergence)

    @cached_property
    def _convergence(self) -> pd.DataFrame:
        """Bulk and tail ESS and R-hat per reported parameter: the columns of :meth:`summary` that
        :meth:`check` and :meth:`diagnostics` read, without the rest of the summary."""
        return diagnose_draws(self._parameters)

    @cached_property
    def importance(self) -> ImportanceDiagnostics | None:
        """For ``method="laplace"``: how well the Laplace approximation matches the exact joint
        posterior at the draws (PSIS k̂ and the weights' ESS; see
        :func:`~bayesmix.bayes.embedded_laplace.importance_diagnostics`); None otherwise."""
        stats_ = self.idata["sample_stats"]
        return importance_diagnostics(stats_[LOG_WEIGHT].values) if LOG_WEIGHT in stats_ else None

    def _diagnostics(self, table: pd.DataFrame) -> dict:
        stats_ = self.idata["sample_stats"]
        # NUTS's statistics (none from method="gibbs")
        depth = next((stats_[v] for v in ("maxdepth_reached", "reached_max_treedepth") if v in stats_), None)
        return {
            "divergences": int(stats_["diverging"].sum()) if "diverging" in stats_ else 0,
            "treedepth_hits": 0 if depth is None else int(depth.sum()),
            "max_rhat": float(np.max(table["r_hat"].to_numpy())),  # numpy's max and min keep a NaN
            "min_ess_bulk": float(np.min(table["ess_bulk"].to_numpy())),
            "min_ess_tail": float(np.min(table["ess_tail"].to_numpy())),
        } | ({} if self.importance is None else {"laplace_khat": self.importance.khat})

    def check(self) -> list[str]:
        """Warn (``ConvergenceWarning``) about divergences, high R-hat, low ESS, saturated trees,
        and R-hat or ESS that could not be computed."""
        table = self._convergence
        d = self._diagnostics(table)
        undefined = self._undefined_diagnostics(table)
        problems = [undefined] if undefined else []
        rhat, ess = table["r_hat"].max(), table[["ess_bulk", "ess_tail"]].min().min()  # of those computed
        if d["divergences"]:
            problems.append(f"{d['divergences']} divergent transitions: raise target_accept (now {self.settings.target_accept})")
        if rhat > RHAT_MAX:
            problems.append(f"R-hat up to {rhat:.3f} > {RHAT_MAX}: chains disagree, draw more")
        if ess < ESS_MIN:
            problems.append(f"ESS as low as {ess:.0f} < {ESS_MIN}: draw more")
        if d["treedepth_hits"]:
            problems.append(f"{d['treedepth_hits']} draws hit the maximum tree depth")
        if self.importance is not None and not self.importance.trustworthy:
            problems.append(f"{self.importance}")
        for problem in problems:
            warn(problem, ConvergenceWarning)
        return problems

    # ----- saving and display ----------------------------------------------------------------------
    def to_netcdf(self, path) -> None:
        """Save the result to a netCDF file; :func:`bayesmix.load` gives it back.

        The file is the DataTree (posterior, sample stats, observed data, ...; ArviZ and
        ``xarray.open_datatree`` read it) plus a ``bayesmix`` group with the formula, the data
        rows the fit used, the priors and the sampler settings, from which loading rebuilds
        the design. Sample statistics of object dtype (which netCDF cannot store) are left out.
        """
        tree = self.idata.copy()
        stats_ = tree["sample_stats"].to_dataset()
        objects = [v for v in stats_.data_vars if stats_[v].dtype == object]
        tree["sample_stats"] = stats_.drop_vars(objects)
        write(tree, design_dataset(self.design, "BayesResult", self._stored_attrs()), path)

    stored_schema = StoredSchema(
        {"priors": dict, "settings": dict, "method": str, "sampling_seconds": float, "compile_seconds": float},
        groups=("posterior",),
    )

    def _stored_attrs(self) -> dict:
        """The attributes that restore the priors, settings and method (see :meth:`from_stored`)."""
        def dist(d):
            return None if d is None else {"name": d.name, "params": d.params, "positive": d.positive}

        pr = self.priors
        priors = {
            "intercept": dist(pr.intercept),
            "b": [[name, dist(d)] for name, d in pr.b.items()],
            "dispersion": dist(pr.dispersion),
            "sd": [[label, column, dist(d)] for (label, column), d in pr.sd.items()],
            "cor": [[label, dist(d)] for label, d in pr.cor.items()],
        }
        settings = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dataclasses.asdict(self.settings).items()}
        return {
            "priors": json.dumps(priors),
            "settings": json.dumps(settings),
            "method": self.method,
            "sampling_seconds": float(self.sampling_seconds),
            "compile_seconds": float(self.compile_seconds),
        }

    @classmethod
    def from_stored(cls, design: Design, tree: xr.DataTree, stored: xr.Dataset) -> BayesResult:
        """The result saved in ``tree`` (without its ``bayesmix`` group ``stored``), on its rebuilt ``design``."""
        posterior = tree["posterior"].to_dataset()
        check_rebuilt(list(posterior["coef"].values) == list(design.fixed_names), "the fixed-effect names")
        if "observed_data" in tree.children:
            check_rebuilt(np.array_equal(tree["observed_data"]["y"].values, design.rows.y), "the response")
        layouts = group_layouts(design)
        dispersion = [design.family.dispersion_name] if design.family.has_dispersion else []
        needed = (["beta"] if design.fixed_names else []) + dispersion + [f"u_{layout.name}" for layout in layouts]
        missing = [name for name in needed if name not in posterior.data_vars]
        if missing:
            raise DataError(f"its posterior has no variable(s) {', '.join(missing)}; it was not saved whole.")
        for layout in layouts:
            stored_levels = posterior[f"u_{layout.name}"][f"{layout.name}_level"].values
            check_rebuilt([str(v) for v in stored_levels] == [str(v) for v in layout.levels], f"the levels of {layout.group!r}")

        def dist(d):
            return None if d is None else Distribution(d["name"], dict(d["params"]), bool(d["positive"]))

        p = json.loads(stored.attrs["priors"])
        priors = PriorSet(
            dist(p["intercept"]),
            {name: dist(d) for name, d in p["b"]},
            dist(p["dispersion"]),
            {(label, column): dist(d) for label, column, d in p["sd"]},
            {label: dist(d) for label, d in p["cor"]},
            design.family.dispersion_name,
        )
        settings = SamplerSettings(**json.loads(stored.attrs["settings"]))
        return cls(
            design, tree, priors, layouts, settings,
            float(stored.attrs["sampling_seconds"]), float(stored.attrs["compile_seconds"]), method=str(stored.attrs["method"]),
        )

    def _layout(self, group: str | None) -> GroupLayout:
        if group is None:
            if len(self.layouts) > 1:
                raise ArgumentError(f"The model has several grouping factors; name one of {[l.group for l in self.layouts]}.")
            return self.layouts[0]
        for layout in self.layouts:
            if layout.group == group:
                return layout
        raise ArgumentError(f"No grouping factor {group!r}; the model has {[l.group for l in self.layouts]}.")

    def _mean_frame(self, draws: xr.DataArray, layout: GroupLayout) -> pd.DataFrame:
        return pd.DataFrame(draws.mean(("chain", "draw")).values, index=pd.Index(layout.levels), columns=layout.effects)

    def __repr__(self) -> str:
        s = self.settings
        return (
            f"<BayesResult {self.design.formula.text!r}, {self.design.family}: {s.chains} chains x {s.draws} draws ({self.method}), "
            f"sampled in {self.sampling_seconds:.1f} s>"
        )

    def _repr_html_(self) -> str:
        head = (f"<p><b>Posterior</b> of <code>{self.design.formula.text}</code>, {self.design.family} family: "
                f"{self.settings.chains} chains x {self.settings.draws} draws</p>")
        check = "" if self.importance is None else f"<p>{self.importance}</p>"
        return head + check + html_section("Parameters", self._table())
