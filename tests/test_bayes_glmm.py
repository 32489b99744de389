"""Bayesian GLMMs through the PyMC model: the likelihood of every family against scipy, the
link-scale default priors, agreement with brms on cbpp, recovery of simulated truths, and
what a GLMM posterior reports (predictions on both scales, log-likelihood, checks, saving)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.bayes.priors import LINK_SCALE, resolve_priors
from bayesmix.bayes.standardise import Standardisation
from bayesmix.data.layout import group_layouts, term_labels
from bayesmix.errors import ArgumentError, PriorError

from .conftest import glmm_file


def simulated(n_groups: int = 12, per_group: int = 6, seed: int = 0) -> pd.DataFrame:
    """Two crossed factors, a predictor, exposures, trials and prior weights for every family."""
    rng = np.random.default_rng(seed)
    n = n_groups * per_group
    frame = pd.DataFrame({
        "g": np.repeat([f"g{i}" for i in range(n_groups)], per_group),
        "h": [f"h{i % 5}" for i in range(n)],
        "x": rng.normal(size=n),
        "t": rng.uniform(0.5, 3.0, n),
        "w": rng.uniform(0.5, 2.0, n),
        "trials": rng.integers(1, 12, n),
    })
    frame["s"] = rng.binomial(frame["trials"], 0.3)
    frame["count"] = rng.poisson(2.0 * frame["t"])
    frame["y"] = rng.gamma(4.0, 1.0, n)
    return frame


# family, formula, keyword arguments of bm.Model
CASES = {
    "binomial-logit": (bm.Binomial(), "cbind(s, trials - s) ~ x + (x | g) + (1 | h)", {}),
    "binomial-probit": (bm.Binomial(link="probit"), "cbind(s, trials - s) ~ x + (1 | g) + (1 | h)", {}),
    "binomial-cloglog": (bm.Binomial(link="cloglog"), "cbind(s, trials - s) ~ x + (1 | g)", {}),
    "poisson": (bm.Poisson(), "count ~ x + offset(log(t)) + (x | g) + (1 | h)", {"weights": "w"}),
    "negative-binomial": (bm.NegativeBinomial(), "count ~ x + (1 | g) + (1 | h)", {"weights": "w", "offset": "t"}),
    "gaussian-identity": (bm.Gaussian(), "y ~ x + (1 | g) + (1 | h)", {"weights": "w", "offset": "t"}),
    "gaussian-log": (bm.Gaussian(link="log"), "y ~ x + (x | g)", {"weights": "w"}),
}


def scipy_log_likelihood(family, y, mu, dispersion, weights):
    """The family's log-likelihood of the rows, summed, written with scipy's distributions."""
    w = np.ones_like(y) if weights is None else weights
    if isinstance(family, bm.Binomial):
        return stats.binom.logpmf(np.rint(w * y), w, mu).sum()
    if isinstance(family, bm.Poisson):
        return (w * stats.poisson.logpmf(y, mu)).sum()
    if isinstance(family, bm.NegativeBinomial):
        return (w * stats.nbinom.logpmf(y, dispersion, dispersion / (dispersion + mu))).sum()
    return stats.norm.logpdf(y, mu, dispersion / np.sqrt(w)).sum()


@pytest.mark.parametrize("case", list(CASES))
def test_the_pymc_likelihood_is_the_familys_at_a_random_point(case):
    from bayesmix.bayes.builder import build_model

    family, formula, arguments = CASES[case]
    frame = simulated()
    arguments = {k: frame[v] for k, v in arguments.items()}
    design = bm.Model(formula, frame, family, **arguments).design
    model = build_model(design)
    rng = np.random.default_rng(1)
    point = {name: value + rng.normal(scale=0.3, size=np.shape(value)) for name, value in model.initial_point().items()}
    likelihood = model.observed_RVs + model.potentials
    assert len(likelihood) == 1  # the Poisson's weights make it a Potential, every other likelihood observes y
    logp = model.compile_fn(model.logp(vars=likelihood))(point)
    names = ["beta", *[f"u_{g}" for g in ("g", "h") if f"u_{g}" in model.named_vars]]
    if family.dispersion_name:
        names.append(family.dispersion_name)
    outputs = model.replace_rvs_by_values([model[n] for n in names])  # at the point, not drawn from the prior
    evaluate = model.compile_fn(outputs, inputs=model.value_vars, on_unused_input="ignore")
    values = dict(zip(names, evaluate(point)))
    rows = design.rows
    eta = rows.X @ values["beta"] + (0.0 if rows.offset is None else rows.offset)
    layouts = {layout.group: layout for layout in group_layouts(design)}
    start = {}
    for k, term in enumerate(design.terms):
        u = values[f"u_{layouts[term.group].name}"]
        first = start.get(term.group, 0)
        eta = eta + (rows.z[k] * u[rows.codes[k], first:first + term.q]).sum(axis=1)
        start[term.group] = first + term.q
    expected = scipy_log_likelihood(family, rows.y, family.inverse_link(eta), values.get(family.dispersion_name), rows.weights)
    assert logp == pytest.approx(expected, rel=1e-10, abs=1e-8)


def test_default_priors_are_on_the_link_scale(cbpp):
    design = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial").design
    priors = resolve_priors(design, term_labels(design))
    assert str(priors.intercept) == "StudentT(nu=3, mu=0, sigma=2.5)"
    assert priors.dispersion is None and "sigma" not in set(priors.table()["class"])
    # period[k] is an indicator: its scale is 1, so every coefficient gets Normal(0, 2.5)
    assert {str(d) for d in priors.b.values()} == {"Normal(mu=0, sigma=2.5)"}
    assert str(priors.sd[("herd", "Intercept")]) == "HalfStudentT(nu=3, sigma=2.5)"

    frame = simulated()
    design = bm.Model("count ~ x + offset(log(t)) + (x | g)", frame, "negative_binomial").design
    priors = resolve_priors(design, term_labels(design))
    rate = frame["count"].sum() / frame["t"].sum()  # the intercept of the model without predictors
    assert priors.intercept.params == {"nu": 3.0, "mu": pytest.approx(np.log(rate)), "sigma": LINK_SCALE}
    sd_x = frame["x"].std(ddof=0)
    assert priors.b["x"].params["sigma"] == pytest.approx(LINK_SCALE / sd_x)
    assert priors.sd[("g", "x")].params["sigma"] == pytest.approx(LINK_SCALE / sd_x)
    assert str(priors.dispersion) == "Exponential(lam=1)"  # rstanarm's prior on the NB's reciprocal dispersion θ
    assert list(priors.table()["class"])[-1] == "shape"


def test_the_linear_gaussians_defaults_stay_in_the_responses_units():
    frame = simulated()
    design = bm.Model("y ~ x + (x | g)", frame).design
    priors = resolve_priors(design, term_labels(design))
    s_y, s_x = frame["y"].std(ddof=0), frame["x"].std(ddof=0)
    assert priors.intercept.params == {"mu": pytest.approx(frame["y"].mean()), "sigma": pytest.approx(2.5 * s_y)}
    assert priors.b["x"].params == {"mu": 0.0, "sigma": pytest.approx(2.5 * s_y / s_x)}
    assert priors.sd[("g", "Intercept")].params == {"nu": 3.0, "sigma": pytest.approx(s_y)}
    assert priors.sd[("g", "x")].params == {"nu": 3.0, "sigma": pytest.approx(s_y / s_x)}
    assert priors.dispersion.params == {"nu": 3.0, "sigma": pytest.approx(s_y)}


def test_a_non_gaussian_response_is_not_standardised():
    frame = simulated()
    frame["x"] *= 1000.0
    design = bm.Model("count ~ x + (1 | g)", frame, "poisson", offset=np.log(frame["t"])).design
    priors = resolve_priors(design, term_labels(design))
    standard = Standardisation.of(design, priors)
    assert (standard.y_centre, standard.y_scale) == (0.0, 1.0)
    rows = standard.design(design).rows
    np.testing.assert_array_equal(rows.y, design.rows.y)
    np.testing.assert_array_equal(rows.offset, design.rows.offset)
    assert rows.X[:, 1].std() == pytest.approx(1.0)  # the predictor still is


def test_dispersion_priors_are_named_by_the_family(cbpp):
    binomial = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    with pytest.raises(PriorError, match="binomial family has no dispersion parameter"):
        binomial.bayes_model([bm.prior("sigma", bm.HalfNormal(1))])
    counts = bm.Model("incidence ~ period + (1 | herd)", cbpp, "negative_binomial")
    with pytest.raises(PriorError, match="dispersion is 'shape', not 'sigma'"):
        counts.bayes_model([bm.prior("sigma", bm.HalfNormal(1))])
    assert str(counts.bayes_model([bm.prior("shape", bm.HalfNormal(5))]).priors.dispersion) == "HalfNormal(sigma=5)"
    with pytest.raises(PriorError, match="positive quantity"):
        bm.prior("sd", bm.Flat())
    assert binomial.bayes_model().method == "full"  # auto: the collapsed sampler is the linear Gaussian's


def brms_priors():
    """brms 2.18's defaults for cbpp: flat on the coefficients, Student-t(3, 0, 2.5) on the
    intercept of the centred predictors and on the SD."""
    return [bm.prior("b", bm.Flat()), bm.prior("Intercept", bm.StudentT(3, 0, 2.5)), bm.prior("sd", bm.HalfStudentT(3, 2.5))]


@pytest.mark.slow
def test_cbpp_agrees_with_brms(cbpp):
    reference = json.loads((glmm_file("brms_cbpp.json")).read_text())
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    post = model.sample(brms_priors(), draws=2000, tune=1000, chains=2, seed=1, progressbar=False)
    assert post.diagnostics()["divergences"] == 0
    table = post.summary()
    names = {"b_Intercept": "Intercept", "b_period2": "period[2]", "b_period3": "period[3]", "b_period4": "period[4]",
             "sd_herd__Intercept": "sd(Intercept)"}
    for theirs, ours in names.items():
        mean, sd = reference["posterior_mean"][theirs], reference["posterior_sd"][theirs]
        assert abs(table.loc[ours, "mean"] - mean) < 0.15 * sd, theirs
        assert table.loc[ours, "sd"] == pytest.approx(sd, rel=0.10), theirs
    # the maximum-likelihood fit beside the posterior: flat priors on the coefficients, so their
    # posterior means are near the ML estimates, each inside its 95% interval
    ml = model.fit_ml()
    compared = bm.compare(ml, post)
    assert list(compared.columns) == ["ml", "boundary", "mean", "sd", "ci_lb", "ci_ub", "ml_in_ci"]
    np.testing.assert_array_equal(compared.loc[list(ml.fixef().index), "ml"], ml.fixef())
    assert compared.loc[list(ml.fixef().index), "ml_in_ci"].all()
    assert compared.loc["sd(Intercept)", "ml"] == pytest.approx(ml.varcorr()["sdcor"].iloc[0])


def assert_recovered(post, truth: dict[str, float]):
    """Each parameter's truth lies within 3 posterior SDs of its posterior mean."""
    table = post.summary()
    for name, value in truth.items():
        assert abs(table.loc[name, "mean"] - value) < 3 * table.loc[name, "sd"], (name, table.loc[name, "mean"], value)


@pytest.mark.slow
def test_a_poisson_model_with_an_offset_recovers_the_simulation():
    rng = np.random.default_rng(11)
    n_groups, per_group = 40, 15
    g = np.repeat(np.arange(n_groups), per_group)
    x, t = rng.normal(size=g.size), rng.uniform(0.5, 3.0, g.size)
    b = rng.normal(scale=0.7, size=n_groups)
    frame = pd.DataFrame({"g": g.astype(str), "x": x, "t": t, "y": rng.poisson(t * np.exp(0.3 + 0.6 * x + b[g]))})
    post = bm.Model("y ~ x + offset(log(t)) + (1 | g)", frame, "poisson").sample(
        draws=500, tune=500, chains=2, seed=2, progressbar=False)
    assert_recovered(post, {"Intercept": 0.3, "x": 0.6, "sd(Intercept)": 0.7})


@pytest.mark.slow
def test_a_binomial_model_with_trials_as_weights_recovers_the_simulation():
    rng = np.random.default_rng(12)
    n_groups, per_group = 40, 10
    g = np.repeat(np.arange(n_groups), per_group)
    x, trials = rng.normal(size=g.size), rng.integers(1, 20, g.size)
    b = rng.normal(scale=0.5, size=n_groups)
    successes = rng.binomial(trials, 1.0 / (1.0 + np.exp(-(-0.5 + 0.8 * x + b[g]))))
    frame = pd.DataFrame({"g": g.astype(str), "x": x, "p": successes / trials})
    post = bm.Model("p ~ x + (1 | g)", frame, "binomial", weights=trials).sample(
        draws=500, tune=500, chains=2, seed=3, progressbar=False)
    assert_recovered(post, {"Intercept": -0.5, "x": 0.8, "sd(Intercept)": 0.5})


@pytest.fixture(scope="module")
def cbpp_posterior(cbpp):
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return model.sample(draws=200, tune=300, chains=2, seed=4, progressbar=False)


@pytest.mark.slow
def test_a_glmm_posterior_predicts_on_both_scales_and_draws_trials(cbpp_posterior, cbpp):
    post = cbpp_posterior
    link, response = post.predict(type="link", seed=1), post.predict(seed=1)
    np.testing.assert_allclose(response.mu.values, 1.0 / (1.0 + np.exp(-link.mu.values)), rtol=1e-12)
    # predictive proportions are of each row's trials: multiplied by them, whole numbers up to the trials
    successes = response.draws.values * cbpp["size"].to_numpy()
    np.testing.assert_allclose(successes, np.rint(successes), atol=1e-9)
    assert successes.min() >= 0 and (successes <= cbpp["size"].to_numpy()).all()
    with pytest.raises(ArgumentError, match="type must be one of response, link"):
        post.predict(type="logit")
    assert "binomial (logit link)" in repr(post)


@pytest.mark.slow
def test_a_glmm_log_likelihood_has_one_binomial_term_per_row(cbpp_posterior, cbpp):
    post = cbpp_posterior
    ll = post.log_likelihood()
    mu = post.predict().mu
    first = stats.binom.logpmf(cbpp["incidence"], cbpp["size"], mu.values[0, 0])
    np.testing.assert_allclose(ll.values[0, 0], first, rtol=1e-10)
    assert ll.sizes["obs"] == len(cbpp)
    assert np.isfinite(post.loo().elpd)
    ppc = post.ppc(seed=1)
    assert list(ppc.index) == ["mean", "proportion of zeros", "proportion of ones", "sd of herd proportions"]
    overall = cbpp["incidence"].sum() / cbpp["size"].sum()
    assert ppc.loc["mean", "observed"] == pytest.approx(overall)
    assert ppc.loc["proportion of zeros", "observed"] == pytest.approx((cbpp["incidence"] == 0).mean())


@pytest.mark.slow
def test_a_glmm_posterior_is_saved_with_its_family(cbpp_posterior, tmp_path):
    path = tmp_path / "cbpp.nc"
    cbpp_posterior.to_netcdf(path)
    loaded = bm.load(path)
    assert loaded.design.family == bm.Binomial()
    assert loaded.priors == cbpp_posterior.priors
    pd.testing.assert_frame_equal(loaded.fixef(), cbpp_posterior.fixef())


@pytest.mark.slow
def test_a_negative_binomial_posterior_reports_its_shape(tmp_path):
    frame = simulated(n_groups=15, per_group=8, seed=5)
    post = bm.Model("count ~ x + (1 | g)", frame, "negative_binomial").sample(
        draws=200, tune=300, chains=2, seed=6, progressbar=False)
    assert "shape" in post.varcorr().index
    fit = bm.Model("count ~ x + (1 | g)", frame, "negative_binomial").fit_ml()
    assert bm.compare(fit, post).loc["shape", "ml"] == fit.dispersion
    assert list(post.ppc(seed=1).index) == ["mean", "variance", "proportion of zeros", "max", "sd of g means"]
    post.to_netcdf(tmp_path / "nb.nc")
    assert bm.load(tmp_path / "nb.nc").priors.dispersion_class == "shape"


@pytest.mark.parametrize("method", ["full", "laplace"])
def test_a_binomial_replacement_response_round_trips(cbpp, method):
    """sample(y=...) takes the response in the design's own units (the binomial's proportions of
    the trials), and the precompiled densities turn the PyMC model's successes back into them:
    the design's own response and the same seed give the same draws, and a changed one moves them."""
    model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
    bayes = model.bayes_model(method=method)
    settings = dict(draws=20, tune=20, chains=2, seed=4, progressbar=False)
    y = bayes.design.rows.y
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = bayes.sample(**settings)
        b = bayes.sample(y=y.copy(), **settings)
        c = bayes.sample(y=np.where(y > 0, y / 2, 0.5), **settings)
    for var in a.posterior.data_vars:
        assert a.posterior[var].equals(b.posterior[var]), var
    assert a.posterior["beta"].mean() != c.posterior["beta"].mean()
