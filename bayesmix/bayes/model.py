"""``BayesModel``: a design and its priors as a compiled PyMC model, sampled by NUTS."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import html
import logging
import time
from typing import TYPE_CHECKING

import numpy as np
import xarray as xr

from ..data.crossprod import shifted_cross_products
from ..data.design import Design
from ..data.storage import family_attrs
from ..errors import DataError
from ..data.layout import coords, group_layouts, structure_of, term_labels
from ..linalg.collapsed import draw_effects
from ..threads import one_blas_thread
from .collapsed_factors import factors_density
from .density import collapsed_density, natively_supported
from .embedded_laplace import laplace_density
from .gibbs import gibbs_applicable, gibbs_sampler
from .importance import LOG_WEIGHT
from .latent_collapsed import add_effects, latent_applicable, latent_density
from .full_density import full_density
from .parameterization import centring, describe, partial_weights
from .partially_collapsed import (COLLAPSE, DENSE_BLOCK_LIMIT, check_dense_block, collapse_choice, partially_collapsed_density)
from .priors import Prior, resolve_priors
from .result import BayesResult, stack_draws
from .standardise import Standardisation
from .sampling import ArgumentError, CompiledSampler, SamplerSettings

if TYPE_CHECKING:
    import pymc as pm

METHODS = ("auto", "collapsed", "full", "gibbs", "laplace")


class BayesModel:
    """A design with its priors, built as a PyMC model and compiled once for repeated sampling.

    Parameters
    ----------
    design
        The materialised model.
    priors
        Overrides of the default priors (see :func:`prior`).
    method
        ``"collapsed"``: the random effects are integrated out of the likelihood and drawn
        exactly afterwards (a family with sufficient statistics, i.e. the Gaussian with the
        identity link (:attr:`~bayesmix.families.Family.has_sufficient_statistics`), and no prior
        weights or offsets; with crossed or nested grouping factors, priors of a native form:
        :mod:`bayesmix.bayes.collapsed_factors`), or, for the other families, a model with an
        observation-level effect ``(1 | obs)`` whose other terms are intercepts on nested factors:
        NUTS on the linear predictor with those factors' effects integrated out exactly
        (:mod:`bayesmix.bayes.latent_collapsed`); ``"full"``: NUTS samples them, for every family and
        any number of grouping factors; ``"auto"`` (default): for several grouping factors
        where ``"gibbs"`` applies, ``"gibbs"``; otherwise collapsed where it applies (for the
        other families with ``parameterization="auto"`` only), else
        full, and full too for several grouping factors whose effects after the first factor's
        number more than :data:`~bayesmix.bayes.partially_collapsed.DENSE_BLOCK_LIMIT` (rows in
        memory) when a fixed effect's prior is neither Normal nor flat (measured faster there;
        with such priors the partially collapsed sampler cannot integrate the fixed effects out);
        ``"laplace"``: NUTS samples the population parameters on the Laplace-approximated
        marginal posterior and the random effects are drawn from the Gaussian approximation, with
        importance weights against the exact joint (:mod:`bayesmix.bayes.embedded_laplace`;
        only when asked); ``"gibbs"``: the collapsed Gibbs sampler (the fixed effects drawn with
        each term's random effects integrated out, then its SDs and correlations by slice
        sampling, then its effects: :mod:`bayesmix.bayes.gibbs`) for the Gaussian family on any
        number of crossed or nested factors, Normal or flat priors
        on the fixed effects, native priors on σ and the SDs, no weights or offsets, rows in
        memory (``tune`` sweeps are discarded, ``target_accept`` does not apply; with
        ``sampler="pymc"``, ``"auto"`` samples the full model instead). The others run on a
        precompiled log density with nutpie (nothing is compiled per model) when every prior has
        a native form; ``sampler="pymc"`` samples the PyMC model instead (not for ``"laplace"``).
    parameterization
        For the full model, per grouping factor: ``"auto"`` (default) centres the factors whose
        levels the data determine well and leaves the others non-centred
        (:func:`bayesmix.bayes.parameterization.informative`), partially non-centring the scalar
        terms between the two (:attr:`partial`); ``"noncentred"`` or ``"centred"``
        for every factor; or a dict from grouping factor to either (factors left out are
        non-centred). Both forms run on the precompiled density (see
        :func:`bayesmix.bayes.builder.build_model`); :attr:`centred` says per term which was chosen.
    collapse
        For ``method="collapsed"`` with several grouping factors, which factors' effects are
        integrated out: ``"all"`` (through the blocked factor, whose dense block has one row per
        effect of the factors after the first: :mod:`bayesmix.bayes.collapsed_factors`),
        ``"largest"`` (only the factor with the most levels; NUTS samples the others' effects,
        centred or not as ``parameterization`` says: :mod:`bayesmix.bayes.partially_collapsed`;
        rows in memory only), or ``"auto"`` (default): ``"largest"`` where the dense block is
        large (:func:`~bayesmix.bayes.partially_collapsed.collapse_choice`), else ``"all"``.
        Either way every random effect is reported. :attr:`collapse` says which was chosen.

    Notes
    -----
    Either way NUTS samples the model of the standardised data, with the priors carried over
    exactly, and the draws are mapped back to the data's units (:mod:`bayesmix.bayes.standardise`).
    """

    def __init__(
        self,
        design: Design,
        priors: list[Prior] | None = None,
        method: str = "auto",
        parameterization: str | dict[str, str] = "auto",
        collapse: str = "auto",
    ):
        self.centred = centring(design, parameterization)
        self.partial = (0.0,) * len(design.terms)
        """Per term, the weight of its partial non-centring in the full model (0: as :attr:`centred`
        says; :func:`bayesmix.bayes.parameterization.partial_weights`)."""
        if method not in METHODS:
            raise ArgumentError(f"method must be one of {', '.join(METHODS)}, not {method!r}.")
        if collapse not in COLLAPSE:
            raise ArgumentError(f"collapse must be one of {', '.join(COLLAPSE)}, not {collapse!r}.")
        self.design = design
        self._arguments = (priors, method, parameterization, collapse)
        self.layouts = group_layouts(design)
        self.priors = resolve_priors(design, term_labels(design), priors)
        # another family with an observation-level effect: the others integrated out given the linear predictor
        found = None if design.family.has_sufficient_statistics else latent_applicable(design, self.priors)
        latent_why = found if isinstance(found, str) else None
        if method == "collapsed" and latent_why is not None:
            raise ArgumentError(
                f"method='collapsed' integrates the random effects out through sufficient statistics, which the "
                f"{design.family} family does not have, or given the linear predictor, which needs an "
                f"observation-level effect and intercepts on nested factors; here {latent_why}: use method='full'."
            )
        weighted = design.in_memory and (design.rows.weights is not None or design.rows.offset is not None)
        if method == "collapsed" and weighted and design.family.has_sufficient_statistics:
            raise ArgumentError(
                "method='collapsed' does not take prior weights or offsets yet: use method='full' (or drop weights=, "
                "offset= and offset() terms)."
            )
        # several grouping factors: the marginal likelihood through the blocked factor, a Python density
        several = len(self.layouts) > 1
        if method == "collapsed" and several and not natively_supported(self.priors):
            raise ArgumentError(
                "method='collapsed' with several grouping factors "
                f"({', '.join(repr(l.group) for l in self.layouts)}) needs priors of a "
                "native form (Normal, StudentT or Flat for the fixed effects; HalfNormal, HalfStudentT or "
                "Exponential for σ and the SDs): use method='full', or change the priors."
            )
        latent = (found is not None and latent_why is None
                  and (method == "collapsed" or (method == "auto" and parameterization == "auto")))
        collapsible = latent or (design.family.has_sufficient_statistics and not weighted
                                 and (not several or natively_supported(self.priors)))
        if method == "gibbs":
            why = gibbs_applicable(design, self.priors)
            if why is not None:
                raise ArgumentError(f"method='gibbs' cannot sample this model: {why}.")
        # several factors: the collapsed Gibbs sampler, 7-47x the ESS per second of the NUTS
        # samplers on crossed and nested designs (docs/bayes.md)
        gibbs = method == "gibbs" or (method == "auto" and collapse == "auto" and several
                                      and gibbs_applicable(design, self.priors) is None)
        if not gibbs and not latent and method == "auto" and collapse == "auto" and collapsible and several and design.in_memory:
            # a fixed effect's prior that neither the Gibbs nor the partially collapsed sampler
            # integrates (Student-t): with a large dense block the full sampler (InstEval: 1.7x the
            # partially collapsed sampler's ESS per second with β sampled, about 4x the fully collapsed one's)
            collapsible = structure_of(design).dense_block_size <= DENSE_BLOCK_LIMIT
        if gibbs or method == "laplace":
            self.method = "gibbs" if gibbs else "laplace"
        else:
            self.method = "collapsed" if method == "collapsed" or (method == "auto" and collapsible) else "full"
        if self.method in ("full", "laplace") and not design.in_memory:
            raise ArgumentError(
                f"method={self.method!r} reads every row's likelihood, and this design was built from dask or Parquet "
                "data (sufficient statistics only): use method='collapsed', or fit a pandas DataFrame."
            )
        self.parameterization = parameterization
        if collapse != "auto" and self.method != "collapsed":
            raise ArgumentError(f"collapse={collapse!r} chooses what method='collapsed' integrates out; this model is sampled "
                                f"by method={self.method!r}: drop collapse=, or use method='collapsed'.")
        if collapse == "largest" and latent:
            raise ArgumentError("collapse='largest' integrates out one factor of a Gaussian model; this model is collapsed "
                                "onto its linear predictor, every factor integrated out: drop collapse=.")
        if collapse == "largest" and not design.in_memory:
            raise ArgumentError("collapse='largest' samples the other grouping factors' effects from every row's "
                                "likelihood, and this design was built from dask or Parquet data: use collapse='all'.")
        # NUTS works on the data in units of their spread (see bayesmix.bayes.standardise)
        labels = term_labels(design)
        self._standard = Standardisation.of(design, self.priors)
        standard, priors = self._standard.design(design), self._standard.priors(self.priors, design, labels)
        self._standard_design = standard
        self._structure = None
        self.collapse = "all" if self.method == "collapsed" else None
        """What the collapsed method integrates out: ``"all"`` the random effects, or ``"largest"``
        those of the grouping factor with the most levels only (None for the other methods)."""
        if self.method == "collapsed" and several and not latent:
            self._structure = structure_of(standard)
            self.collapse = collapse_choice(standard, self._structure) if collapse == "auto" else collapse
        self._fixed_effects_integrated = False
        self._latent = None
        if latent:
            self._latent = latent_density(standard, priors, labels, coords(design, self.layouts), found)  # standardising keeps rows and codes
            self._sampler = CompiledSampler(lambda: _builder().build_model(standard, priors, self.centred), self._latent)
        elif self.collapse == "largest" and several:
            ready = partially_collapsed_density(standard, self._structure, priors, labels, self.layouts,
                                                coords(design, self.layouts), self.centred, parameterization == "auto")
            self._fixed_effects_integrated = ready.fixed_effects_integrated
            first = self._structure.blocks[0].terms  # integrated: their parameterization is the PyMC model's only
            self.centred = tuple(self.centred[k] if k in first else c for k, c in enumerate(ready.centred))
            self._sampler = CompiledSampler(lambda: _builder().build_model(standard, priors, self.centred), ready)
        elif self.method == "collapsed" and several:
            check_dense_block(standard, self._structure)
            self._crossprod, shift = shifted_cross_products(standard, self._structure)
            self._shift = np.zeros(design.p) if shift is None else shift
            ready = factors_density(standard, self._structure, self._crossprod, self._shift, priors, labels,
                                    self.layouts, coords(design, self.layouts))
            self._sampler = CompiledSampler(lambda: _builder().build_model(standard, priors, self.centred), ready)
        elif self.method == "collapsed":
            # the likelihood reads y only through cross-products; those of y - X c (c: least squares,
            # in double-double) keep their precision when Xβ explains most of y (a large mean)
            self._crossprod, shift = shifted_cross_products(standard)
            self._shift = np.zeros(0) if shift is None else shift
            ready = None
            if natively_supported(priors):
                ready = collapsed_density(standard, self._crossprod, priors, labels, self.layouts[0],
                                          coords(design, self.layouts), self._shift)
            self._sampler = CompiledSampler(
                lambda: _builder().build_collapsed_model(standard, self._crossprod, priors, self._shift), ready
            )
        elif self.method == "gibbs":
            ready = gibbs_sampler(standard, priors, labels, self.layouts, coords(design, self.layouts))
            self._sampler = CompiledSampler(lambda: _builder().build_model(standard, priors, self.centred), ready)
        elif self.method == "laplace":
            ready = laplace_density(standard, priors, labels, self.layouts, coords(design, self.layouts))
            self._sampler = CompiledSampler(lambda: _builder().build_model(standard, priors, self.centred), ready)
        else:
            self.partial = partial_weights(design, parameterization, self.centred)
            ready = None
            if natively_supported(priors):
                ready = full_density(standard, priors, labels, self.layouts, coords(design, self.layouts), self.centred,
                                     self.partial)
            self._sampler = CompiledSampler(
                lambda: _builder().build_model(standard, priors, self.centred, self.partial), ready)

    @property
    def precompiled(self) -> bool:
        """Whether nutpie samples a precompiled density (no per-model compilation).

        True when every prior has a native form (see :mod:`bayesmix.bayes.density`), for the
        collapsed method and for the full method, centred or not
        (:mod:`bayesmix.bayes.full_density`); otherwise nutpie compiles the PyMC model on first
        use. ``sampler="pymc"`` always samples the PyMC model.
        """
        return self._sampler.precompiled

    @property
    def pymc_model(self) -> pm.Model:
        """The PyMC model (for the collapsed method: with the random effects integrated out, or with
        several grouping factors the full model; for the Laplace method: the full model it
        approximates)."""
        return self._sampler.model

    @property
    def description(self) -> str:
        """How the posterior is sampled, as reported on results."""
        if self.method == "collapsed" and self.collapse == "largest" and self._structure is not None:
            group = self._structure.blocks[0].group
            if self._fixed_effects_integrated:
                return (f"collapsed over {group} and the fixed effects (integrated out and drawn exactly; the other "
                        f"factors' sampled: {describe(self.design, self.centred, (group,), 'centred by contrasts')})")
            return (f"collapsed over {group} (its random effects integrated out and drawn exactly; the other factors' "
                    f"sampled: {describe(self.design, self.centred, skip=(group,))})")
        if self._latent is not None:
            terms, found = self.design.terms, self._latent.structure
            others = ", ".join(terms[k].group for k in found.factors) or "no other factor"
            return (f"collapsed onto the linear predictor (the {terms[found.observation].group} effects sampled as it; "
                    f"those of {others} integrated out given it, drawn exactly)")
        if self.method == "collapsed":
            return "collapsed (random effects integrated out, drawn exactly)"
        if self.method == "laplace":
            return "laplace (random effects integrated out by the Laplace approximation, drawn from it)"
        if self.method == "gibbs":
            return "gibbs (collapsed Gibbs: the fixed effects and each term's covariance drawn with its random effects integrated out)"
        return f"full ({describe(self.design, self.centred, partial=self.partial)})"

    def __repr__(self) -> str:
        return (f"<BayesModel {self.design.formula.text!r}, {self.design.family}: {self.description}"
                f"{', precompiled' if self.precompiled else ''}>\n{self.priors!r}")

    def _repr_html_(self) -> str:
        return (f"<p><b>Bayesian model</b> <code>{html.escape(self.design.formula.text)}</code>, "
                f"{html.escape(str(self.design.family))}: sampled {html.escape(self.description)}"
                f"{', precompiled (nothing to compile per model)' if self.precompiled else ''}</p>"
                + self.priors._repr_html_())

    def sample(self, y=None, **settings) -> BayesResult:
        """Sample the posterior; ``settings`` are those of :class:`SamplerSettings`.

        ``y`` replaces the response (same length), reusing the compiled model: what
        simulation-based calibration needs.
        """
        arguments, settings = settings, SamplerSettings(**settings)
        own = self._structure is not None or self.method == "gibbs" or self._latent is not None
        if own and settings.sampler != "nutpie" and self._arguments[1] == "auto":
            return self._full_model.sample(y, **arguments)  # the collapsed samplers for several factors are bayesmix's own
        if self.method == "laplace" and settings.sampler != "nutpie":
            raise ArgumentError("method='laplace' runs on nutpie only: drop sampler='pymc', or use method='full'.")
        if self._latent is not None and settings.sampler != "nutpie":
            raise ArgumentError("method='collapsed' for this family runs on nutpie only: drop sampler='pymc', or use "
                                "method='full'.")
        if self.method == "gibbs" and settings.sampler != "nutpie":
            raise ArgumentError("method='gibbs' runs its own sampler: drop sampler='pymc', or use method='full'.")
        if self._structure is not None and settings.sampler != "nutpie":
            raise ArgumentError(
                "method='collapsed' with several grouping factors runs on nutpie only: drop sampler='pymc', or use "
                "method='full' (which method='auto' then uses)."
            )
        if y is not None and not self.design.in_memory:
            raise ArgumentError("A replacement response y needs the rows in memory; this design was built from dask or Parquet data.")
        design = self.design if y is None else _with_response(self.design, y)
        standard = self._standard_design if y is None else self._standard.design(design)
        if self._latent is not None:  # the effects drawn given each draw of the linear predictor
            observed = {} if y is None else {"y": design.family.observed(standard.rows.y, standard.rows.weights)}
            tree, seconds = self._sampler.sample(settings, **observed)
            start = time.perf_counter()
            tree["posterior"] = add_effects(tree["posterior"].to_dataset(), standard, self.layouts, self._latent,
                                            settings.seed)
            seconds += time.perf_counter() - start
        elif self.method in ("full", "laplace"):
            observed = {} if y is None else {"y": design.family.observed(standard.rows.y, standard.rows.weights)}
            # the Laplace method factors a dense block per evaluation, and a PyMC model's compiled code
            # may call BLAS: one thread (see bayesmix.threads); the precompiled full density calls no BLAS,
            # and finding the BLAS libraries (threadpoolctl) is a cost of its own in a new process
            blas_free = self.method == "full" and self.precompiled and settings.sampler == "nutpie"
            with contextlib.nullcontext() if blas_free else one_blas_thread():
                tree, seconds = self._sampler.sample(settings, **observed)
            if self.method == "laplace":  # the importance weights are a diagnostic, not a parameter
                posterior = tree["posterior"].to_dataset()
                tree["sample_stats"] = tree["sample_stats"].to_dataset().assign({LOG_WEIGHT: posterior[LOG_WEIGHT]})
                tree["posterior"] = posterior.drop_vars(LOG_WEIGHT)
        elif self.method == "gibbs":
            tree, seconds = self._sampler.sample(settings, **({} if y is None else {"y": standard.rows.y}))
        elif self.collapse == "largest" and self._structure is not None:  # the effects drawn by the expansion
            with one_blas_thread():
                tree, seconds = self._sampler.sample(settings, **({} if y is None else {"y": standard.rows.y}))
        elif self._structure is not None:  # the effects are drawn with each draw, by the density's expansion
            cp = None if y is None else standard.statistics.cross_products(design.p, self._shift)
            with one_blas_thread():  # each evaluation is small dense algebra: see bayesmix.threads
                tree, seconds = self._sampler.sample(settings, **({} if y is None else {"cross_products": cp}))
        else:  # the data enter only through cross-products: one pass over the rows, and none without a new y
            cp = self._crossprod if y is None else standard.statistics.cross_products(design.p, self._shift)
            tree, seconds = self._sampler.sample(settings, **({} if y is None else {"A1X": cp.A1X, "AXX": cp.AXX}))
            start = time.perf_counter()
            tree = self._add_effects(tree, cp, settings.seed)
            seconds += time.perf_counter() - start
        tree["posterior"] = self._standard.posterior(tree["posterior"].to_dataset(), design, self.layouts)
        result = BayesResult(
            design, tree, self.priors, self.layouts, settings, seconds, self._sampler.compile_seconds,
            method=self.description,
        )
        result.check()
        return result

    @functools.cached_property
    def _full_model(self) -> BayesModel:
        """The full model of the same design and priors: what ``sampler="pymc"`` samples when
        ``method="auto"`` chose the collapsed density for several factors, which runs on nutpie only."""
        priors, _, parameterization, _ = self._arguments
        return BayesModel(self.design, priors, "full", parameterization)

    def _add_effects(self, tree, cp, seed: int | None):
        """Draw the random effects exactly for every posterior draw and add ``u_<group>``."""
        posterior = tree["posterior"].to_dataset()
        stacked = stack_draws(posterior)
        layout = self.layouts[0]
        rng = np.random.default_rng(None if seed is None else [seed, 1])
        n_draws = stacked.sizes["sample"]
        u = draw_effects(
            np.ascontiguousarray(stacked["beta"].transpose("sample", ...).values - self._shift),
            np.ascontiguousarray(stacked["collapsed_chol"].transpose("sample", ...).values),
            np.ascontiguousarray(stacked["sigma"].values),
            cp.A11,
            cp.A1X,
            rng.integers(0, 2**32, n_draws, dtype=np.uint64),
        )
        n_levels, q = len(layout.levels), len(layout.effects)
        shape = (posterior.sizes["chain"], posterior.sizes["draw"], n_levels, q)
        dims = ("chain", "draw", f"{layout.name}_level", f"{layout.name}_effect")
        posterior[f"u_{layout.name}"] = xr.DataArray(
            u.reshape(shape), dims=dims,
            coords={dims[2]: layout.levels, dims[3]: layout.effects},
        )
        tree["posterior"] = posterior.drop_vars("collapsed_chol")
        return tree

    def sample_prior_predictive(self, draws: int = 500, seed: int | None = None) -> xr.DataTree:
        """Draws of the parameters from the prior, and a data set replicated from each.

        Returns
        -------
        xarray.DataTree
            ``prior``: the parameters named as the posterior names them (``beta``, ``sd_<group>``,
            ``cor_<group>``, ``u_<group>``, ``sigma`` or ``shape``), (chain, draw, ...) with one
            chain; ``prior_predictive``: ``y``, the replicated responses on the response's
            scale (a binomial's proportions), (chain, draw, obs), drawn as the posterior's
            predictive draws are (:meth:`BayesResult.predict`); ``observed_data``: ``y`` (and
            the prior ``weights``, if any). Its attributes name the response and the family,
            for :func:`bayesmix.plot_prior_predictive`.
        """
        import pymc as pm

        if not self.design.in_memory:
            raise ArgumentError("The prior predictive draws replicate every row: fit a pandas DataFrame, not dask or Parquet data.")
        if isinstance(draws, bool) or not isinstance(draws, (int, np.integer)) or draws < 1:
            raise ArgumentError(f"draws must be a positive integer, not {draws!r}.")
        parameters_seed, noise_seed = (int(s) for s in np.random.SeedSequence(seed).generate_state(2))
        pymc_log = logging.getLogger("pymc")
        level = pymc_log.level
        pymc_log.setLevel(logging.WARNING)  # not "Sampling: [_Intercept_centred, _L_0, ...]"
        try:
            with _builder().build_model(self.design, self.priors, "noncentred") as model:
                # the model's own variables (_b_1, _z_0, ...) are how it is built, not what it reports
                names = [v.name for v in [*model.free_RVs, *model.deterministics] if not v.name.startswith("_")]
                tree = pm.sample_prior_predictive(draws=draws, var_names=names, random_seed=parameters_seed)
        finally:
            pymc_log.setLevel(level)
        prior = tree["prior"].to_dataset()
        settings = SamplerSettings(draws=draws, chains=1, seed=seed)
        # the prior's draws in the posterior's place: the posterior's predictive draws are then the prior's
        as_posterior = BayesResult(self.design, xr.DataTree.from_dict({"posterior": prior}), self.priors, self.layouts,
                                   settings, 0.0, method="prior")
        rows = self.design.rows
        observed = {"y": ("obs", rows.y)} | ({} if rows.weights is None else {"weights": ("obs", rows.weights)})
        out = xr.DataTree.from_dict({
            "prior": prior,
            "prior_predictive": xr.Dataset({"y": as_posterior.predict(seed=noise_seed).draws}),
            "observed_data": xr.Dataset(observed, coords={"obs": np.arange(self.design.n)}),
        })
        out.attrs = {"response": self.design.response, **family_attrs(self.design.family)}
        return out


def _builder():
    """:mod:`bayesmix.bayes.builder`, imported on first use: it imports PyMC (seconds), which the
    collapsed density and REML users never need."""
    from . import builder

    return builder


def sample(design: Design, priors: list[Prior] | None = None, **settings) -> BayesResult:
    """Build, compile and sample the model of ``design`` (see :class:`BayesModel`)."""
    return BayesModel(design, priors).sample(**settings)


def _with_response(design: Design, y) -> Design:
    try:
        y = np.asarray(y, dtype=float)
    except (TypeError, ValueError):
        y = None
    rows = design.rows
    if y is None or y.shape != rows.y.shape or not np.isfinite(y).all():
        raise DataError(f"A replacement response must be {design.n} finite numbers.")
    return dataclasses.replace(design, source=dataclasses.replace(rows, y=y))
