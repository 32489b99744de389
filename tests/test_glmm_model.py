"""GLMMs as a user fits them: ``bm.Model(formula, data, family=...).fit_ml()`` on lme4's formulas.

The numbers are those of ``glmm_reference.json`` (lme4 with ``tolPwrss = 1e-12`` and glmmTMB,
which agree; glmmTMB for the negative binomial); the response forms, offsets and weights are
checked against exact identities (a binomial fit equals the fit of its Bernoulli rows up to
the binomial coefficients; a Gaussian fit with weights c equals the unweighted one rescaled).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import bayesmix as bm
from bayesmix.errors import ArgumentError, DataError, SeparationWarning

from .conftest import glmm_file, glmm_reference, reference_values


def quiet(function, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return function(*args, **kwargs)


@pytest.fixture(scope="module")
def cbpp_fit(cbpp):
    return bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial").fit_ml()


def models():
    grouse = pd.read_csv(glmm_file("grouseticks.csv"), dtype={"INDEX": str, "BROOD": str, "LOCATION": str, "YEAR": str})
    salamanders = pd.read_csv(glmm_file("salamanders.csv"))
    salamanders["mined"] = pd.Categorical(salamanders["mined"], ["yes", "no"])  # R's level order
    return {
        "cbpp_binomial": (pd.read_csv(glmm_file("cbpp.csv"), dtype={"herd": str, "period": str}), "binomial"),
        "grouseticks_poisson": (grouse, "poisson"),
        "poisson_offset": (pd.read_csv(glmm_file("sim_poisson_offset.csv"), dtype={"g": str}), "poisson"),
        "salamanders_nbinom2": (salamanders, "negative_binomial"),
    }


def target(ref: dict) -> dict:
    """The tight optimum: lme4 at tolPwrss = 1e-12, or glmmTMB where lme4 is not the reference.

    For grouseticks the fixed effects are compared with glmmTMB: lme4-tight's are 2.25e-4 from
    glmmTMB's and its log-likelihood 2.4e-5 lower, so it stops short there too."""
    cross = ref["crosscheck"]
    if ref["package"] == "glmmTMB":
        return {"fixef": reference_values(ref["fixef"]), "se": reference_values(ref["se"]), "logLik": ref["logLik"],
                "sd": {g: reference_values(r["sd"]) for g, r in ref["random_effects"].items()}}
    tight = cross["lme4_tolPwrss_1e12"]
    tmb = cross.get("glmmTMB")
    fixef = reference_values((tmb if ref["name"].startswith("grouse") else tight)["fixef"])
    sd = ({g: reference_values(s) for g, s in tmb["sd"].items()} if tmb else
          {g: reference_values(r["sd"]) for g, r in ref["random_effects"].items()})
    return {"fixef": fixef, "se": reference_values(tight["se"]), "logLik": tight["logLik"], "sd": sd}


@pytest.mark.parametrize("name", ["cbpp_binomial", "grouseticks_poisson", "poisson_offset", "salamanders_nbinom2"])
def test_reference_models_through_the_model(name):
    ref = glmm_reference(name)
    data, family = models()[name]
    formula = ref["formula"]
    fit = quiet(bm.Model(formula, data, family).fit_ml)
    goal = target(ref)
    assert goal["logLik"] - 1e-6 <= fit.loglik <= goal["logLik"] + 1e-4
    np.testing.assert_allclose(fit.fixef().to_numpy(), goal["fixef"], atol=2e-4, rtol=0)
    np.testing.assert_allclose(fit.std_errors().to_numpy(), goal["se"], rtol=0.02)
    table = fit.varcorr()
    for group, sd in goal["sd"].items():
        np.testing.assert_allclose(table.loc[(table["group"] == group) & table["var2"].isna(), "sdcor"], sd, atol=1e-3)
    assert fit.nobs == ref["nobs"] and fit.ngrps == {g: ref["ngroups"][g] for g in fit.ngrps}
    assert fit.n_params == ref["df"]
    np.testing.assert_allclose([fit.aic, fit.bic], [-2 * fit.loglik + 2 * ref["df"],
                                                   -2 * fit.loglik + ref["df"] * np.log(ref["nobs"])])
    if family == "negative_binomial":
        np.testing.assert_allclose(fit.dispersion, ref["dispersion"], rtol=1e-3)


def test_quadrature_through_the_model(cbpp):
    ref = glmm_reference("cbpp_binomial_agq25")
    fit = bm.Model(ref["formula"], cbpp, "binomial").fit_ml(nagq=25)
    assert abs(fit.loglik - ref["logLik_full"]) < 1e-4
    assert "Adaptive Gauss-Hermite Quadrature, nAGQ = 25" in str(fit.summary())


def test_summary_reads_like_glmer(cbpp_fit):
    text = str(cbpp_fit.summary())
    assert "Family: binomial  ( logit )" in text
    assert "Formula: cbind(incidence, size - incidence) ~ period + (1 | herd)" in text
    assert "  194.1    204.2    -92.0    184.1        51" in text  # AIC BIC logLik deviance df.resid
    table = cbpp_fit.summary().fixed
    assert list(table.columns) == ["estimate", "std_error", "z_value", "p_value"]
    z = table["estimate"] / table["std_error"]
    np.testing.assert_allclose(table["p_value"], 2 * stats.norm.sf(np.abs(z)))
    assert "<table" in cbpp_fit._repr_html_()
    assert "GlmmResult binomial (logit link)" in repr(cbpp_fit)


def test_fitted_predictions_and_residuals_follow_their_definitions(cbpp, cbpp_fit):
    y, n = (cbpp["incidence"] / cbpp["size"]).to_numpy(), cbpp["size"].to_numpy(float)
    eta = cbpp_fit.predict(type="link").to_numpy()
    mu = special.expit(eta)
    np.testing.assert_allclose(cbpp_fit.fitted().to_numpy(), mu, rtol=1e-12)
    np.testing.assert_allclose(cbpp_fit.predict().to_numpy(), mu, rtol=1e-12)
    coef = cbpp_fit.coef()
    by_hand = coef.loc[cbpp["herd"], "Intercept"].to_numpy() + np.select(
        [cbpp["period"] == p for p in "234"], [coef.loc[cbpp["herd"], f"period[{p}]"].to_numpy() for p in "234"], 0.0)
    np.testing.assert_allclose(eta, by_hand, rtol=1e-12)
    np.testing.assert_allclose(cbpp_fit.residuals("response"), y - mu, rtol=1e-12)
    np.testing.assert_allclose(cbpp_fit.residuals("pearson"), (y - mu) * np.sqrt(n / (mu * (1 - mu))), rtol=1e-10)
    deviance = 2 * n * (special.xlogy(y, y / mu) + special.xlogy(1 - y, (1 - y) / (1 - mu)))
    residuals = cbpp_fit.residuals()
    np.testing.assert_allclose(residuals ** 2, deviance, rtol=1e-10)
    assert (np.sign(residuals) == np.sign(y - mu)).all()
    # lme4's deviance(): the conditional deviance at its (default, slightly short) optimum
    np.testing.assert_allclose((residuals ** 2).sum(), glmm_reference("cbpp_binomial")["deviance_lme4"], rtol=2e-3)
    population = cbpp_fit.predict(cbpp.assign(herd="new"), random=False, type="link")
    fixef = cbpp_fit.fixef()
    np.testing.assert_allclose(population.iloc[:4], fixef["Intercept"] + np.r_[0, fixef.iloc[1:].to_numpy()], rtol=1e-12)
    with pytest.raises(DataError, match="not in the fitted data"):
        cbpp_fit.predict(cbpp.assign(herd="new"))
    with pytest.raises(ArgumentError, match="type must be one of"):
        cbpp_fit.predict(type="probability")
    with pytest.raises(ArgumentError, match="type must be one of"):
        cbpp_fit.residuals("studentized")


def test_saved_and_loaded_fit_is_the_same(cbpp_fit, tmp_path):
    path = tmp_path / "cbpp.nc"
    cbpp_fit.to_netcdf(path)
    loaded = bm.load(path)
    assert isinstance(loaded, bm.GlmmResult) and loaded.family == bm.Binomial()
    np.testing.assert_array_equal(loaded.fixef(), cbpp_fit.fixef())
    np.testing.assert_array_equal(loaded.vcov(), cbpp_fit.vcov())
    assert loaded.loglik == cbpp_fit.loglik
    # the modes are solved again at the saved estimates: the same to PIRLS's convergence (a last
    # Newton step below 1e-6 leaves an error of order its square)
    np.testing.assert_allclose(loaded.ranef().to_numpy(), cbpp_fit.ranef().to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(loaded.cond_var(), cbpp_fit.cond_var(), rtol=1e-7)
    np.testing.assert_allclose(loaded.fitted(), cbpp_fit.fitted(), rtol=1e-8)
    assert str(loaded.summary()).splitlines()[:6] == str(cbpp_fit.summary()).splitlines()[:6]


def test_likelihood_ratio_test_between_glmm_fits(cbpp, cbpp_fit):
    small = bm.Model("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", cbpp, "binomial").fit_ml()
    table = bm.likelihood_ratio_test(cbpp_fit, small)
    assert list(table["npar"]) == [2, 5]
    np.testing.assert_allclose(table["Chisq"].iloc[1], 2 * (cbpp_fit.loglik - small.loglik))
    np.testing.assert_allclose(table["p_value"].iloc[1], stats.chi2.sf(2 * (cbpp_fit.loglik - small.loglik), 3))
    gaussian = quiet(bm.Model("incidence ~ period + (1 | herd)", cbpp).fit_ml)
    with pytest.raises(ArgumentError, match="one response family"):
        bm.likelihood_ratio_test(cbpp_fit, gaussian)


# ----- response forms --------------------------------------------------------------------------------
def bernoulli_rows(cbpp: pd.DataFrame) -> pd.DataFrame:
    """One row per animal: cbpp's successes and failures as 0/1."""
    rows = []
    for _, r in cbpp.iterrows():
        rows += [(r["herd"], r["period"], 1)] * int(r["incidence"]) + [(r["herd"], r["period"], 0)] * int(r["size"] - r["incidence"])
    return pd.DataFrame(rows, columns=["herd", "period", "sick"])


def test_every_binomial_response_form_gives_the_same_fit(cbpp, cbpp_fit):
    proportion = bm.Model("p ~ period + (1 | herd)", cbpp.assign(p=cbpp["incidence"] / cbpp["size"]), "binomial",
                          weights="size").fit_ml()
    np.testing.assert_allclose(proportion.fixef(), cbpp_fit.fixef(), rtol=1e-10)
    assert proportion.loglik == pytest.approx(cbpp_fit.loglik, abs=1e-9)
    animals = bernoulli_rows(cbpp)
    bernoulli = bm.Model("sick ~ period + (1 | herd)", animals, "binomial").fit_ml()
    np.testing.assert_allclose(bernoulli.fixef(), cbpp_fit.fixef(), atol=2e-6)
    np.testing.assert_allclose(bernoulli.theta, cbpp_fit.theta, atol=2e-6)
    # the same likelihood up to the binomial coefficients log C(n, k), which the Bernoulli rows do not have
    log_choose = special.gammaln(cbpp["size"] + 1) - special.gammaln(cbpp["incidence"] + 1) \
        - special.gammaln(cbpp["size"] - cbpp["incidence"] + 1)
    assert bernoulli.loglik == pytest.approx(cbpp_fit.loglik - log_choose.sum(), abs=1e-7)
    for column in (animals["sick"].map({0: "healthy", 1: "sick"}), animals["sick"] == 1,
                   pd.Categorical(animals["sick"].map({0: "no", 1: "yes"}), ["no", "yes"])):
        again = bm.Model("sick ~ period + (1 | herd)", animals.assign(sick=column), "binomial").fit_ml()
        np.testing.assert_array_equal(again.fixef(), bernoulli.fixef())


def test_offsets_in_the_formula_and_as_an_argument_agree():
    data = pd.read_csv(glmm_file("sim_poisson_offset.csv"), dtype={"g": str})
    in_formula = bm.Model("y ~ x + offset(log(t)) + (1 | g)", data, "poisson").fit_ml()
    by_name = bm.Model("y ~ x + (1 | g)", data.assign(log_t=np.log(data["t"])), "poisson", offset="log_t").fit_ml()
    by_values = bm.Model("y ~ x + (1 | g)", data, "poisson", offset=np.log(data["t"].to_numpy())).fit_ml()
    for other in (by_name, by_values):
        np.testing.assert_allclose(other.fixef(), in_formula.fixef(), rtol=1e-12)
        assert other.loglik == pytest.approx(in_formula.loglik, abs=1e-10)
    # predictions carry the formula's offset to new data
    new = data.iloc[:3].assign(t=[1.0, 2.0, 4.0])
    eta = in_formula.predict(new, type="link").to_numpy()
    b = in_formula.ranef().loc[new["g"], "Intercept"].to_numpy()
    fixef = in_formula.fixef()
    np.testing.assert_allclose(eta, np.log([1.0, 2.0, 4.0]) + fixef["Intercept"] + fixef["x"] * new["x"] + b, rtol=1e-12)


# ----- the linear model with weights and offsets -----------------------------------------------------
def test_constant_weights_rescale_the_linear_model_exactly(sleep):
    formula = "Reaction ~ Days + (Days | Subject)"
    plain = bm.Model(formula, sleep).fit_ml()
    weighted = bm.Model(formula, sleep, weights=np.full(len(sleep), 4.0)).fit_ml()
    # Var(e) = σ_w²/4 and b ~ σ_w² ΛΛ': the same distribution with σ_w = 2σ
    assert weighted.loglik == pytest.approx(plain.loglik, abs=1e-7)
    np.testing.assert_allclose(weighted.fixef(), plain.fixef(), rtol=1e-7)
    assert weighted.sigma == pytest.approx(2 * plain.sigma, rel=1e-6)
    np.testing.assert_allclose(weighted.varcorr()["vcov"].iloc[:3], plain.varcorr()["vcov"].iloc[:3], rtol=1e-5)


def test_weighted_linear_model_is_the_gls_likelihood(sleep):
    w = 1.0 + (sleep["Days"].to_numpy() % 3)
    fit = bm.Model("Reaction ~ Days + (1 | Subject)", sleep, weights=w, offset=sleep["Days"].to_numpy() * 2.0).fit_ml()
    codes = pd.factorize(sleep["Subject"], sort=True)[0]
    Z = np.eye(codes.max() + 1)[codes]
    tau2 = fit.varcorr()["vcov"].iloc[0]
    V = tau2 * Z @ Z.T + fit.sigma**2 * np.diag(1.0 / w)
    X = np.column_stack([np.ones(len(sleep)), sleep["Days"]])
    y = sleep["Reaction"].to_numpy() - 2.0 * sleep["Days"].to_numpy()
    dense = stats.multivariate_normal(X @ fit.fixef().to_numpy(), V).logpdf(y)
    assert fit.loglik == pytest.approx(dense, abs=1e-8)
    # the optimum: the GLS estimate of β given V, and no higher likelihood at nearby variances
    Vinv = np.linalg.inv(V)
    np.testing.assert_allclose(fit.fixef(), np.linalg.solve(X.T @ Vinv @ X, X.T @ Vinv @ y), rtol=1e-7)
    for factor in (0.97, 1.03):
        for scale_tau, scale_sigma in ((factor, 1.0), (1.0, factor)):
            other = stats.multivariate_normal(X @ fit.fixef().to_numpy(),
                                              scale_tau * tau2 * Z @ Z.T + scale_sigma * fit.sigma**2 * np.diag(1 / w))
            assert other.logpdf(y) < dense
    offset_by_hand = bm.Model("r ~ Days + (1 | Subject)", sleep.assign(r=y), weights=w).fit_ml()
    np.testing.assert_allclose(offset_by_hand.fixef(), fit.fixef(), rtol=1e-9)
    np.testing.assert_allclose(fit.fitted() - 2.0 * sleep["Days"], offset_by_hand.fitted(), rtol=1e-9)


# ----- what the backends refuse and what they warn about ---------------------------------------------
def test_refusals_name_the_remedy(cbpp, sleep):
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    with pytest.raises(ArgumentError, match="fit_ml"):
        model.fit_reml()
    with pytest.raises(ArgumentError, match="does not have, or given the linear predictor, which needs an observation-level effect.*: use method='full'"):
        model.bayes_model(method="collapsed")
    with pytest.raises(ArgumentError, match="exact"):
        bm.Model("Reaction ~ Days + (1 | Subject)", sleep).fit_ml(nagq=5)
    with pytest.raises(ArgumentError, match="single scalar random-effect term"):
        bm.Model("cbind(incidence, size - incidence) ~ period + (period | herd)", cbpp, "binomial").fit_ml(nagq=5)
    with pytest.raises(ArgumentError, match="weights or offsets yet: use method='full'"):
        bm.Model("Reaction ~ Days + (1 | Subject)", sleep, weights=sleep["Days"] + 1.0).bayes_model(method="collapsed")
    with pytest.raises(DataError, match="a binomial response, .* pass family='binomial'"):
        bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp)
    with pytest.raises(ArgumentError, match="not a column of the data"):
        bm.Model("incidence ~ period + (1 | herd)", cbpp, "poisson", offset="exposure")
    with pytest.raises(ArgumentError, match="one number per row"):
        bm.Model("incidence ~ period + (1 | herd)", cbpp, "poisson", offset=np.ones(3))


@pytest.mark.parametrize(
    ("column", "message"),
    [
        (lambda d: d["incidence"] - 3, r"successes of the response cbind\(s, size - s\) have \d+ negative"),
        (lambda d: d["incidence"] + 0.5, r"successes .* non-integer"),
        (lambda d: d["size"] + 1, r"failures of the response .* negative"),
    ],
)
def test_bad_binomial_counts_are_named(cbpp, column, message):
    with pytest.raises(DataError, match=message):
        bm.Model("cbind(s, size - s) ~ period + (1 | herd)", cbpp.assign(s=column(cbpp)), "binomial")


def test_separation_is_warned_naming_the_coefficient(cbpp):
    animals = bernoulli_rows(cbpp)
    animals["vaccinated"] = (animals["sick"] == 0) & (animals.index % 3 == 0)  # no vaccinated animal is sick
    model = bm.Model("sick ~ period + vaccinated + (1 | herd)", animals, "binomial")
    with pytest.warns(SeparationWarning, match="separate the fixed effect\\(s\\) 'vaccinated':"):
        try:
            quiet_convergence(model.fit_ml)
        except bm.FitError as error:  # the Hessian may be singular along the separating direction
            assert "separate 'vaccinated'" in str(error)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SeparationWarning)
        quiet_convergence(bm.Model("sick ~ period + (1 | herd)", animals, "binomial").fit_ml)


def quiet_convergence(function):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return function()


def test_separation_check_sees_every_row_beyond_its_first_sample():
    """The programme starts from a sample of 5,000 distinct rows; one row outside it that breaks
    the separation must be found (then nothing is separated), and without that row the
    separated category must be named."""
    from bayesmix.data.build import make_design
    from bayesmix.reml.separation import SAMPLE, separated_coefficients

    rng = np.random.default_rng(7)
    n = 4 * SAMPLE
    data = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 50, n), "rare": np.zeros(n, dtype=bool)})
    data["y"] = (rng.random(n) < special.expit(0.3 + data["x"])).astype(float)
    rare = np.flatnonzero(data["y"] == 0)[:40]  # a category of 40 failures ...
    data.loc[rare, "rare"] = True
    separated = make_design("y ~ x + rare + (1 | g)", data, family="binomial")
    assert separated_coefficients(separated) == ["rare"]
    data.loc[np.flatnonzero(data["y"] == 1)[-1], "rare"] = True  # ... and one success, far from the sample's start
    assert separated_coefficients(make_design("y ~ x + rare + (1 | g)", data, family="binomial")) == []


def test_gaussian_log_link_likelihood_is_the_integral_over_each_group(sleep):
    """y_ij ~ N(exp(β0 + β1 day + b_j), σ), b_j ~ N(0, τ²): with 25 quadrature points the fit's
    log-likelihood at its estimates is Σ_j log ∫ Π_i N(y_ij; μ_ij(b), σ) N(b; 0, τ²) db, computed
    here by adaptive integration; the Laplace fit is close to it and starts the dispersion well
    (σ ~ 30 ms, far from 1)."""
    from scipy import integrate
    from scipy.optimize import minimize_scalar

    model = bm.Model("Reaction ~ Days + (1 | Subject)", sleep, bm.Gaussian(link="log"))
    laplace, quadrature = model.fit_ml(), model.fit_ml(nagq=25)
    beta, sigma = quadrature.fixef().to_numpy(), quadrature.dispersion
    tau = quadrature.varcorr()["sdcor"].iloc[0]
    total = 0.0
    for _, rows in sleep.groupby("Subject"):
        y, days = rows["Reaction"].to_numpy(), rows["Days"].to_numpy()

        def log_integrand(b):
            return stats.norm.logpdf(y, np.exp(beta[0] + beta[1] * days + b), sigma).sum() + stats.norm.logpdf(b, 0, tau)

        peak = -minimize_scalar(lambda b: -log_integrand(b), bracket=(-tau, tau)).fun
        value, _ = integrate.quad(lambda b: np.exp(log_integrand(b) - peak), -12 * tau, 12 * tau, epsabs=0, epsrel=1e-12,
                                  limit=200)
        total += peak + np.log(value)
    assert quadrature.loglik == pytest.approx(total, abs=1e-6)
    assert abs(laplace.loglik - quadrature.loglik) < 0.05
    assert 20 < laplace.dispersion < 40 and laplace.fit.converged
    # a random slope on the log scale: far from the start, PIRLS restarts from u = 0 where the last
    # mode leads it astray; the bigger model's likelihood is at least the smaller's
    slopes = bm.Model("Reaction ~ Days + (Days | Subject)", sleep, bm.Gaussian(link="log")).fit_ml()
    assert slopes.fit.converged and slopes.loglik >= laplace.loglik - 1e-6
