"""``Model``: one formula, data set and response family, fitted by REML/ML or sampled."""

from __future__ import annotations

from .bayes import BayesModel, BayesResult, Prior
from .bayes.sampling import SamplerSettings
from .data.dask_data import dask_design, is_dask_frame, is_parquet_path, read_parquet
from .data.build import make_design
from .data.design import Design
from .formula import MixedFormula
from .errors import ArgumentError
from .families import Family
from .reml import RemlResult, fit_reml
from .reml.glmm import GlmmResult, fit_glmm


class Model:
    """A mixed model from an lme4-style formula, a DataFrame and a response family.

    Parameters
    ----------
    formula
        E.g. ``"na ~ perform_type + (perform_type | id)"``; see the formula syntax reference.
    data
        The data: a pandas DataFrame (or a polars DataFrame or pyarrow Table, converted to pandas
        once); or, for models whose random effects are all on one
        grouping factor, a dask DataFrame or the path of a Parquet dataset, which is read once
        (in parallel by the active dask scheduler) into per-group sufficient statistics (see
        ``bayesmix.dask_data``). Rows with missing values in used columns are dropped with a warning.
    family
        The response family: ``"gaussian"`` (default), ``"binomial"``, ``"poisson"``,
        ``"negative_binomial"``, or a family object such as ``bm.Binomial(link="probit")``.
        A binomial response is ``cbind(successes, failures)`` in the formula, a 0/1 or boolean
        column, a two-level factor (the second level is a success) or a proportion with
        ``weights`` the numbers of trials.
    weights
        Prior weights, lme4's meaning (a column name or one number per row): precisions for
        the Gaussian (Var(e_i) = σ²/w_i), numbers of trials for a binomial proportion.
    offset
        A known term added to the linear predictor (a column name or one number per row),
        besides the formula's ``offset()`` terms, e.g. ``np.log(exposure)``.
    transforms
        Your own functions the formula may call, by name, e.g. ``{"logit": scipy.special.logit}``
        for ``y ~ logit(p) + (1 | g)``. A formula can call only numpy's elementwise functions,
        formulaic's transforms (``I``, ``C``, ``scale``, ``poly``, ...) and these; it never
        reaches other Python names (see the security page of the documentation).

    Examples
    --------
    >>> model = Model("na ~ perform_type + (perform_type | id)", music)  # doctest: +SKIP
    >>> reml = model.fit_reml()                                            # doctest: +SKIP
    >>> reml.coef().loc[1]                                                 # doctest: +SKIP
    >>> post = model.sample(seed=1)                                        # doctest: +SKIP
    """

    def __init__(self, formula: str | MixedFormula, data, family: Family | str | None = None, *,
                 weights=None, offset=None, transforms: dict | None = None):
        if is_parquet_path(data):
            data = read_parquet(data)
        if is_dask_frame(data):
            if weights is not None or offset is not None:
                raise ArgumentError(
                    "weights= and offset= are not taken with dask or Parquet input yet: load the data into pandas "
                    "(ddf.compute(), or a sample of it) and pass the pandas DataFrame."
                )
            self.design: Design = dask_design(formula, data, transforms, family)
        else:
            self.design = make_design(formula, data, transforms, family, weights, offset)
        self._bayes: dict[str, BayesModel] = {}

    @property
    def formula(self) -> MixedFormula:
        """The parsed formula."""
        return self.design.formula

    def fit_reml(self, factorization: str = "auto") -> RemlResult:
        """REML estimates, as lme4's ``lmer(formula, data)`` (linear mixed models only).
        ``factorization`` (``"auto"``, ``"blocked"`` or ``"sparse"``) as for
        :func:`bayesmix.fit_reml`."""
        return fit_reml(self.design, reml=True, factorization=factorization)

    def fit_ml(self, nagq: int = 1, factorization: str = "auto") -> RemlResult | GlmmResult:
        """Maximum-likelihood estimates: for the linear Gaussian model as lme4's
        ``lmer(formula, data, REML = FALSE)`` (``factorization`` as for :func:`bayesmix.fit_reml`);
        for any other family as lme4's ``glmer(formula, data, family, nAGQ = nagq)``, by the
        Laplace approximation (``nagq=1``) or adaptive Gauss-Hermite quadrature with ``nagq``
        points (a single scalar random-effect term only), to the optimum."""
        if self.design.family.has_sufficient_statistics:
            if nagq != 1:
                raise ArgumentError(
                    f"nagq={nagq!r}: a linear mixed model's likelihood is exact (no quadrature); use fit_ml()."
                )
            return fit_reml(self.design, reml=False, factorization=factorization)
        if factorization != "auto":
            raise ArgumentError(
                f"factorization={factorization!r} chooses how a linear mixed model's criterion is factored; a "
                f"{self.design.family} model's Laplace fit factors its own blocks: drop factorization=."
            )
        return fit_glmm(self.design, nagq)

    def bayes_model(
        self, priors: list[Prior] | None = None, method: str = "auto", parameterization: str | dict[str, str] = "auto",
        collapse: str = "auto",
    ) -> BayesModel:
        """The PyMC model with these priors, built and compiled once per prior set, method,
        parameterization and collapse."""
        key = repr((priors, method, parameterization, collapse))
        if key not in self._bayes:
            self._bayes[key] = BayesModel(self.design, priors, method, parameterization, collapse)
        return self._bayes[key]

    def sample(
        self,
        priors: list[Prior] | None = None,
        *,
        draws: int = SamplerSettings.draws,
        tune: int = SamplerSettings.tune,
        chains: int = SamplerSettings.chains,
        seed: int | None = SamplerSettings.seed,
        target_accept: float = SamplerSettings.target_accept,
        sampler: str = SamplerSettings.sampler,
        progressbar: bool = SamplerSettings.progressbar,
        method: str = "auto",
        parameterization: str | dict[str, str] = "auto",
        collapse: str = "auto",
    ) -> BayesResult:
        """Sample the posterior with NUTS.

        Parameters
        ----------
        priors
            Overrides of the default priors, e.g. ``[bm.prior("b", bm.Normal(0, 5))]``.
        draws, tune, chains
            Draws kept and tuning steps per chain, and the number of chains.
        seed
            The same seed on the same model gives identical draws.
        target_accept
            NUTS's target acceptance rate; raise it (0.9, 0.95) when there are divergences.
        sampler
            ``"nutpie"`` (compiled once per model, then fast) or ``"pymc"``.
        progressbar
            Show progress while sampling.
        method
            ``"auto"`` (default): ``"collapsed"`` for a linear Gaussian model (identity link, no
            prior weights or offsets) whose random-effects terms are all on one grouping factor
            (the random effects are integrated out of the likelihood, which NUTS then explores
            without the hierarchical funnel, and drawn exactly afterwards); ``"gibbs"`` for one
            with several grouping factors (crossed or nested), Normal or flat priors on the fixed
            effects and the rows in memory (the collapsed Gibbs sampler: the fixed effects drawn
            with each term's effects integrated out, then its SDs and correlations, then its
            effects; σ by slice sampling);
            ``"collapsed"`` for other linear Gaussian models with several factors; ``"full"``
            otherwise (NUTS samples the random effects too; every family). Each can be forced
            where it applies; ``"laplace"`` only when asked (see :class:`~bayesmix.bayes.BayesModel`).
        parameterization
            For the full model, per grouping factor: ``"auto"`` (default) centres a factor whose
            levels the data determine well (the median level's data precision at least 10 times
            the prior precision of its effect, at an effect SD of 1 on the link scale) and leaves
            the others non-centred; ``"noncentred"`` (best when groups are small or their variance
            is near 0) or ``"centred"`` (best when every group has many rows) for every factor; or a
            dict such as ``{"herd": "centred"}`` (factors left out are non-centred).
        collapse
            For the collapsed method with several grouping factors: ``"all"`` integrates every
            factor's effects out (best when the factors after the one with the most levels have
            few levels between them), ``"largest"`` only those of the factor with the most levels
            (NUTS samples the others', parameterised as ``parameterization`` says: best when the
            other factors have many levels, e.g. InstEval's 1,128 instructors), ``"auto"``
            (default) chooses by their number of effects (more than 1,000: ``"largest"``). Every
            random effect is reported either way; the result's ``method`` says which ran.

        Warns
        -----
        ConvergenceWarning
            On divergences, R-hat > 1.01, bulk or tail ESS < 400, or saturated trees.
        """
        return self.bayes_model(priors, method, parameterization, collapse).sample(
            draws=draws, tune=tune, chains=chains, seed=seed, target_accept=target_accept,
            sampler=sampler, progressbar=progressbar,
        )

    def sample_prior_predictive(self, priors: list[Prior] | None = None, *, draws: int = 500,
                                seed: int | None = None):
        """Draws from the prior and data sets replicated from them: the prior predictive check.

        Parameters
        ----------
        priors
            Overrides of the default priors, as for :meth:`sample`.
        draws
            Number of draws.
        seed
            The same seed gives the same draws.

        Returns
        -------
        xarray.DataTree
            ``prior`` (``beta``, ``sd_<group>``, ``cor_<group>``, ``u_<group>``, ``sigma``:
            the posterior's names), ``prior_predictive`` (``y``) and ``observed_data``; see
            :meth:`BayesModel.sample_prior_predictive`. ``bm.plot_prior_predictive`` draws the
            replicated data against the data.
        """
        return self.bayes_model(priors).sample_prior_predictive(draws, seed)

    def __repr__(self) -> str:
        return f"Model({self.design.formula.text!r}, family={self.design.family}, n={self.design.n})"

    def _repr_html_(self) -> str:
        return self.design._repr_html_("Model")
