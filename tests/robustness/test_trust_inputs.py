"""Issue 18, inputs that raised raw exceptions or gave silent wrong answers.

Each case now either gives the answer of the equivalent plain input, or raises a
BayesmixError (or warns) naming the culprit and the fix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import DataError

from .conftest import fit, quiet

MUSIC = "na ~ perform_type * memory + previous + (1 | instrument) + (previous | id)"
SLEEP = "Reaction ~ Days + (Days | Subject)"


def same_fit(a: bm.RemlResult, b: bm.RemlResult) -> None:
    """The same estimates, names and levels (to rounding)."""
    pd.testing.assert_series_equal(a.fixef(), b.fixef(), rtol=1e-12)
    pd.testing.assert_series_equal(a.theta, b.theta, rtol=1e-10)
    for group, frame in b.ranef().items() if isinstance(b.ranef(), dict) else [(None, b.ranef())]:
        other = a.ranef() if group is None else a.ranef()[group]
        assert list(other.index.astype(str)) == list(frame.index.astype(str))
        np.testing.assert_allclose(other.to_numpy(), frame.to_numpy(), rtol=1e-8, atol=1e-10)
    assert a.criterion == pytest.approx(b.criterion, rel=1e-12)


# ----- 1. pandas extension dtypes: nullable, string, pyarrow ---------------------------------------
EXTENSION_DTYPES = {
    "convert_dtypes": lambda d: d.convert_dtypes(),
    "pyarrow backend": lambda d: d.convert_dtypes(dtype_backend="pyarrow"),
    "string[python]": lambda d: d.astype({c: "string[python]" for c in d.columns if d[c].dtype == object or pd.api.types.is_string_dtype(d[c])}),
    "string[pyarrow]": lambda d: d.astype({c: "string[pyarrow]" for c in d.columns if d[c].dtype == object or pd.api.types.is_string_dtype(d[c])}),
}


@pytest.mark.parametrize("convert", EXTENSION_DTYPES.values(), ids=EXTENSION_DTYPES.keys())
@pytest.mark.parametrize(("dataset", "formula"), [("music", MUSIC), ("sleep", SLEEP)])
def test_extension_dtypes_fit_and_predict_as_plain_columns(request, dataset, formula, convert):
    plain = request.getfixturevalue(dataset)
    if dataset == "sleep":  # text grouping factor, as convert_dtypes makes of text
        plain = plain.assign(Subject="s" + plain["Subject"].astype(str))
    converted = convert(plain)
    assert any(isinstance(t, pd.api.extensions.ExtensionDtype) and not isinstance(t, pd.CategoricalDtype)
               for t in converted.dtypes)
    a, b = fit(formula, converted), fit(formula, plain)
    same_fit(a, b)
    rows = plain.iloc[::7]
    np.testing.assert_allclose(a.predict(convert(rows)).to_numpy(), b.predict(rows).to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(b.predict(convert(rows)).to_numpy(), b.predict(rows).to_numpy(), rtol=1e-10)


def test_nullable_columns_with_missing_values_drop_rows_as_plain_ones(sleep):
    plain = sleep.assign(Subject="s" + sleep["Subject"].astype(str), Reaction=sleep["Reaction"].astype(float))
    plain.loc[[4, 60], "Reaction"] = np.nan
    plain.loc[[9], "Subject"] = None
    converted = plain.convert_dtypes()
    assert str(converted["Reaction"].dtype) == "Float64" and str(converted["Subject"].dtype) == "string"
    same_fit(fit(SLEEP, converted), fit(SLEEP, plain.drop(index=[4, 9, 60])))


# ----- 2. interaction levels containing ':' ------------------------------------------------------
@pytest.fixture()
def colon_levels() -> pd.DataFrame:
    """Four groups whose naive 'a:b' labels collide: ('x:y', 'z') and ('x', 'y:z') both read 'x:y:z'."""
    rng = np.random.default_rng(18)
    a = np.repeat(["x:y", "x", "x:y", "x"], 6)
    b = np.repeat(["z", "y:z", "w", "w"], 6)
    y = rng.normal(size=24) + np.repeat([0.0, 6.0, 2.0, 4.0], 6)
    return pd.DataFrame({"y": y, "a": a, "b": b, "g": np.repeat(["g1", "g2", "g3", "g4"], 6)})


@pytest.mark.parametrize("formula", ["y ~ 1 + (1 | a:b)", "y ~ 1 + (1 | a/b)"])
def test_interaction_levels_containing_colons_stay_distinct(colon_levels, formula):
    interaction = fit(formula, colon_levels)
    term = interaction.design.terms[-1]
    assert term.n_levels == 4 and term.levels.is_unique
    assert set(term.levels) == {"x:w", "x:`y:z`", "`x:y`:w", "`x:y`:z"}
    reference = fit(formula.replace("a:b", "g").replace("a/b", "a/g"), colon_levels)
    assert interaction.criterion == pytest.approx(reference.criterion, rel=1e-10)
    # each row is predicted with its own group's effect
    np.testing.assert_allclose(interaction.predict(colon_levels).to_numpy(), reference.predict(colon_levels).to_numpy(), rtol=1e-6)  # same optimum, levels in another order
    ranef = interaction.ranef() if "/" not in formula else interaction.ranef()["a:b"]
    assert ranef.loc["x:`y:z`", "Intercept"] > ranef.loc["`x:y`:z", "Intercept"]  # groups 2 (mean 6) and 1 (mean 0)


# ----- 3. no fixed effects ---------------------------------------------------------------------
EMPTY_FIXED = "Reaction ~ 0 + (1 | Subject)"


@pytest.mark.parametrize("reml", [True, False])
def test_empty_fixed_part_fits_the_zero_mean_model(sleep, reml):
    from scipy.stats import multivariate_normal

    result = fit(EMPTY_FIXED, sleep, reml=reml)
    assert result.design.p == 0 and result.fixef().empty
    # with p = 0 REML is ML: the criterion is -2 log N(y; 0, sigma_u^2 ZZ' + sigma^2 I) at the estimates
    Z = (sleep["Subject"].to_numpy()[:, None] == np.unique(sleep["Subject"])[None, :]).astype(float)
    sd_u = result.theta.iloc[0] * result.sigma

    def deviance(sd_u, sigma):
        cov = sd_u**2 * Z @ Z.T + sigma**2 * np.eye(len(sleep))
        return -2 * multivariate_normal(np.zeros(len(sleep)), cov).logpdf(sleep["Reaction"].to_numpy())

    assert result.criterion == pytest.approx(deviance(sd_u, result.sigma), rel=1e-10)
    for factor in (0.98, 1.02):  # and it is the minimum
        assert deviance(sd_u * factor, result.sigma) > result.criterion
        assert deviance(sd_u, result.sigma * factor) > result.criterion
    assert "none (the formula has no fixed effects)" in str(result.summary())
    prediction = result.predict(sleep.iloc[[0, 10]])
    np.testing.assert_allclose(prediction.to_numpy(), result.ranef().loc[[308, 309], "Intercept"].to_numpy())


@pytest.mark.parametrize("method", ["collapsed", "full"])
def test_empty_fixed_part_samples(sleep, method):
    model = quiet(bm.Model, EMPTY_FIXED, sleep)
    post = quiet(model.sample, seed=3, method=method, draws=200, tune=200, chains=2, progressbar=False)
    assert post.posterior["beta"].sizes["coef"] == 0
    assert list(post.summary().index) == ["sd(Intercept)", "sigma"]
    assert np.isfinite(post.summary()[["mean", "sd"]].to_numpy()).all()
    # the prediction of a row is its subject's random effect, draw by draw
    prediction = post.predict(sleep.iloc[[0, 10]])
    np.testing.assert_allclose(prediction.mean.to_numpy(), post.ranef().loc[[308, 309], "Intercept"].to_numpy(), rtol=1e-10)
    comparison = bm.compare(model.fit_reml(), post)
    assert list(comparison.index) == ["sd(Intercept)", "sigma"] and comparison["reml_in_ci"].all()


# ----- 4. the likelihood-ratio test compares fits of the same data only ---------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.assign(Reaction=s["Reaction"].sample(frac=1, random_state=1).to_numpy()), r"have different response values \('Reaction' and 'Reaction'\)"),
        (lambda s: s.sample(frac=1, random_state=1), r"use different rows \(their row labels differ\)"),
        (lambda s: s.set_axis(s.index + 1000), r"use different rows"),
        (lambda s: s.assign(Days=s["Days"] * 2), r"have different values in column 'Days'"),
    ],
)
def test_likelihood_ratio_test_refuses_fits_to_different_data(sleep, change, message):
    small = fit("Reaction ~ 1 + (Days | Subject)", sleep)
    with pytest.raises(bm.ArgumentError, match=rf"compares fits to the same data, but fits 1 and 2 {message}"):
        bm.likelihood_ratio_test(small, fit(SLEEP, change(sleep)))


def test_likelihood_ratio_test_refuses_a_transformed_response(sleep):
    with pytest.raises(bm.ArgumentError, match=r"different response values \('Reaction' and 'np.log\(Reaction\)'\)"):
        bm.likelihood_ratio_test(fit(SLEEP, sleep), fit("np.log(Reaction) ~ Days + (Days | Subject)", sleep))


def test_likelihood_ratio_test_of_the_same_data_in_another_frame(sleep):
    small = fit("Reaction ~ 1 + (Days | Subject)", sleep)
    table = bm.likelihood_ratio_test(small, fit(SLEEP, sleep.copy().assign(unused=1.0)))
    assert table["Chisq"].iloc[1] == pytest.approx(23.537, abs=1e-3)  # lme4: anova(fm0, fm1) on sleepstudy


# ----- 5. diagnostics that cannot be computed are reported --------------------------------------
@pytest.mark.parametrize(
    ("draws", "chains", "message"),
    [
        (2, 2, r"could not be computed \(R-hat of every parameter; bulk ESS of every parameter; tail ESS of every "
               r"parameter\): too few draws \(2 per chain; R-hat and ESS need at least 4"),
        (8, 1, r"could not be computed \(R-hat of every parameter\): R-hat compares chains and there is only one"),
    ],
)
def test_diagnostics_that_are_nan_are_reported(sleep_model, draws, chains, message):
    with pytest.warns(bm.ConvergenceWarning, match=message) as record:
        post = sleep_model.sample(draws=draws, tune=20, chains=chains, seed=5, progressbar=False)
    assert not [r for r in record if "dimension to be longer" in str(r.message)]  # ArviZ's misleading guess
    assert np.isnan(post.diagnostics()["max_rhat"])
    assert any("could not be computed" in p for p in post.check())
    with pytest.warns(bm.ConvergenceWarning, match=message):
        table = post.summary()
    assert table["r_hat"].isna().all()


def test_diagnostics_of_a_sound_posterior_raise_no_such_warning(sleep_post):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.ConvergenceWarning)
        table = sleep_post.summary()
    assert table[["r_hat", "ess_bulk", "ess_tail"]].notna().all().all()


# ----- 6. two priors for one target ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("priors", "message"),
    [
        ([bm.prior("b", bm.Normal(0, 5), coef="Days"), bm.prior("b", bm.Normal(0, 1), coef="Days")],
         r"Two priors are given for fixed effect 'Days': prior\('b', Normal\(mu=0, sigma=5\), coef='Days'\) and "
         r"prior\('b', Normal\(mu=0, sigma=1\), coef='Days'\)\. Keep one of them"),
        ([bm.prior("b", bm.Normal(0, 5)), bm.prior("b", bm.Normal(0, 1))], r"Two priors are given for fixed effect 'Days'"),
        ([bm.prior("Intercept", bm.Normal(0, 5)), bm.prior("Intercept", bm.Normal(0, 1))], r"Two priors are given for the intercept"),
        ([bm.prior("sigma", bm.HalfNormal(5)), bm.prior("sigma", bm.HalfNormal(1))], r"Two priors are given for the residual SD 'sigma'"),
        ([bm.prior("sd", bm.HalfNormal(5), group="Subject"), bm.prior("sd", bm.HalfNormal(1), coef="Days")],
         r"Two priors are given for the SD of 'Days' on 'Subject'"),
        ([bm.prior("sd", bm.HalfNormal(5), group="Subject", coef="Days")] * 2, r"Two priors are given for the SD of 'Days' on 'Subject'"),
        ([bm.prior("cor", bm.LKJ(2)), bm.prior("cor", bm.LKJ(1))], r"Two priors are given for the correlations of term 'Subject'"),
    ],
)
def test_two_priors_for_one_target_are_refused(sleep_model, priors, message):
    with pytest.raises(bm.PriorError, match=message):
        sleep_model.bayes_model(priors)


def test_a_specific_prior_refines_a_class_wide_one_in_either_order(sleep_model):
    wide, days = bm.prior("b", bm.Normal(0, 5)), bm.prior("b", bm.Normal(0, 1), coef="Days")
    sd_wide, sd_one = bm.prior("sd", bm.HalfNormal(7)), bm.prior("sd", bm.HalfNormal(2), group="Subject", coef="Days")
    for priors in ([wide, days, sd_wide, sd_one], [sd_one, days, sd_wide, wide]):
        resolved = sleep_model.bayes_model(priors).priors
        assert resolved.b["Days"].params == {"mu": 0.0, "sigma": 1.0}
        assert resolved.sd[("Subject", "Days")].params == {"sigma": 2.0}
        assert resolved.sd[("Subject", "Intercept")].params == {"sigma": 7.0}


# ----- 7. other inputs that raised raw exceptions ----------------------------------------------------
@pytest.fixture()
def frame() -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "y": rng.normal(size=60) + np.repeat(np.arange(6.0), 10),
        "x": rng.normal(size=60),
        "f": np.tile(["a", "b", "c"], 20),
        "g": np.repeat([f"g{i}" for i in range(6)], 10),
    })


def test_pyarrow_dictionary_and_string_categories_fit_as_categoricals(frame):
    import pyarrow as pa

    formula = "y ~ f + (1 | g)"
    plain = fit(formula, frame)
    dictionary = frame.assign(f=pd.array(frame["f"], dtype=pd.ArrowDtype(pa.dictionary(pa.int32(), pa.string()))),
                              g=pd.array(frame["g"], dtype=pd.ArrowDtype(pa.dictionary(pa.int8(), pa.string()))))
    string_categories = frame.assign(f=frame["f"].astype(pd.CategoricalDtype(pd.Index(["a", "b", "c"], dtype="string"))))
    for data in (dictionary, string_categories):
        same_fit(fit(formula, data), plain)
        np.testing.assert_allclose(plain.predict(data.iloc[:5]).to_numpy(), plain.predict(frame.iloc[:5]).to_numpy())


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (lambda f: pd.Series([[v] for v in f["x"]], dtype=object), r"Column 'x' holds list values \(e.g. \[-?0\.\d+\]\), which the formula cannot use"),
        (lambda f: pd.Series([{"v": v} for v in f["x"]], dtype=object), r"Column 'x' holds dict values"),
        (lambda f: pd.Series([__import__("decimal").Decimal(str(v)) for v in f["x"]], dtype=object),
         r"Column 'x' has dtype object but holds only numbers, so it would be read as categorical"),
        (lambda f: pd.Series(pd.interval_range(0, len(f))), r"Column 'x' has dtype interval\[int64, right\].*it is an interval: use a number instead, e.g. its midpoint"),
    ],
    ids=["lists", "dicts", "decimals", "intervals"],
)
def test_unusable_cell_values_name_the_column(frame, values, message):
    with pytest.raises(DataError, match=message):
        bm.Model("y ~ x + (1 | g)", frame.assign(x=values(frame)))
    reml = fit("y ~ x + (1 | g)", frame)
    with pytest.raises(DataError, match=r"[Cc]olumn 'x'"):
        reml.predict(frame.assign(x=values(frame)))


def test_unseen_levels_are_shown_as_plain_values(frame):
    reml = fit("y ~ x + f + (1 | g)", frame)
    with pytest.raises(DataError, match=r"newdata column 'f' has level\(s\) \[1\] not seen"):
        reml.predict(frame.assign(f=1))


def test_entry_points_refuse_arguments_of_the_wrong_type(frame, sleep_post):
    reml = fit("y ~ x + (1 | g)", frame)
    with pytest.raises(bm.ArgumentError, match=r"No grouping factor \['g'\]; the model has 'g'"):
        reml.ranef(["g"])
    with pytest.raises(bm.ArgumentError, match=r"No grouping factor \['Subject'\]"):
        sleep_post.coef(["Subject"])
    with pytest.raises(bm.ArgumentError, match=r"fit_reml takes a Design \(model.design, or bm.make_design\(formula, data\)\), not int"):
        bm.fit_reml(3)


def test_plots_and_replacement_responses_name_the_bad_argument(sleep_post, sleep_model):
    with pytest.raises(bm.ArgumentError, match=r"plot_rank: no parameter 'Day'\. Name parameters as the summary does "
                       r"\('Intercept', 'Days'"):
        bm.plot_rank(sleep_post, ["Day"])
    with pytest.raises(bm.ArgumentError, match=r"plot_trace: no parameter 'sd'"):
        bm.plot_trace(sleep_post, "sd")
    with pytest.raises(bm.ArgumentError, match=r"qq_plot takes a RemlResult, GlmmResult or BayesResult \(a fitted model\), not int"):
        bm.qq_plot(3)
    with pytest.raises(bm.ArgumentError, match=r"plot_ppc takes a BayesResult \(a fitted model\), not RemlResult"):
        bm.plot_ppc(sleep_model.fit_reml())
    with pytest.raises(DataError, match=r"A replacement response must be 180 finite numbers"):
        sleep_model.bayes_model().sample(y=["a"] * 180, draws=5, tune=5, progressbar=False)


def test_cli_reports_each_warning_once(capsys):
    from bayesmix.cli import main

    from ..conftest import shared_file

    code = main(["fit", SLEEP, "--data", str(shared_file("data", "sleepstudy.csv")), "--method", "nuts", "--draws", "2",
                 "--chains", "2", "--seed", "1", "--no-progress"])
    err = capsys.readouterr().err
    assert code == 0
    assert err.count("bayesmix: warning: Convergence diagnostics could not be computed") == 1
    assert "too few draws (2 per chain" in err
