"""Degrees of freedom, t and F tests and marginal means of REML/ML fits against lmerTest, pbkrtest
and emmeans (tests/reference/inference_df.R writes the references).

The methods are checked at lme4's θ̂ (the fit's factor recomputed there), where the numbers must
agree to the references' own precision; our optimiser's θ̂ differs from lme4's by up to 1e-4 (the
music model's Solo slope SD is on the boundary, and our criterion there is the lower), which moves
the df by up to about 1e-3 relative, and the tests on our own fits allow for that.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.errors import ArgumentError, ConvergenceWarning
from bayesmix.reml.criterion import profiled_criterion

REFERENCE = Path(__file__).parent / "reference"
ALL = json.loads((REFERENCE / "inference_df.json").read_text())
MODELS = {m["name"]: m for m in ALL["models"]}
SPECS = {"music": ("perform_type", None), "sleepstudy": ("Days", {"Days": [0, 3, 6, 9]}), "crossed": ("cond", None)}


@pytest.fixture(scope="module")
def data(music, sleep):
    crossed = pd.read_csv(REFERENCE / "data" / "crossed_treatment.csv")
    return {"music": music, "sleepstudy": sleep, "crossed": crossed}


def fit_of(data, formula: str, name: str, reml: bool):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = bm.Model(formula, data[name])
        return model.fit_reml() if reml else model.fit_ml()


def at_theta(fit, theta):
    """The fit with its factor recomputed at ``theta`` (lme4's estimate)."""
    criterion = profiled_criterion(fit.design, fit.structure, fit.reml)
    assert criterion(np.asarray(theta)) == pytest.approx(fit.criterion, abs=1e-5)  # the same optimum
    return dataclasses.replace(fit, factorization=criterion.factorize(np.asarray(theta)))


_FITS = {}


def reference_fit(data, name: str, key: str):
    """(our fit, the fit at lme4's θ, the reference block) of model ``name`` by REML or ML (``key``)."""
    if (name, key) not in _FITS:
        ref = MODELS[name][key]
        fit = fit_of(data, MODELS[name]["formula"], name, key == "reml")
        _FITS[name, key] = (fit, at_theta(fit, ref["theta"]), ref)
    return _FITS[name, key]


def column(block: dict, name: str) -> np.ndarray:
    values = block[name]
    return np.array(list(values.values()) if isinstance(values, dict) else values, dtype=float)


CASES = [(name, key) for name in MODELS for key in ("reml", "ml")]


@pytest.mark.parametrize("name,key", CASES)
def test_satterthwaite_summary_matches_lmertest(data, name, key):
    _, fit, ref = reference_fit(data, name, key)
    table = fit.coef_tests()
    lmertest = ref["satterthwaite"]
    assert list(table.index) == list(fit.design.fixed_names)
    np.testing.assert_allclose(table.std_error, column(lmertest, "Std. Error"), rtol=1e-7)
    np.testing.assert_allclose(table.df, column(lmertest, "df"), rtol=1e-5)
    np.testing.assert_allclose(table.t_value, column(lmertest, "t value"), rtol=1e-7)
    np.testing.assert_allclose(table.p_value, column(lmertest, "Pr(>|t|)"), rtol=1e-4)


@pytest.mark.parametrize("name,key", CASES)
def test_satterthwaite_on_our_own_fit(data, name, key):
    ours, _, ref = reference_fit(data, name, key)
    np.testing.assert_allclose(ours.coef_tests().df, column(ref["satterthwaite"], "df"), rtol=2e-3)


@pytest.mark.parametrize("name,key", CASES)
def test_anova_and_contest_satterthwaite(data, name, key):
    _, fit, ref = reference_fit(data, name, key)
    anova, lmertest = fit.anova(), ref["anova_satterthwaite"]
    assert list(anova.index) == list(lmertest["F value"])
    for ours, theirs in [("F", "F value"), ("den_df", "DenDF"), ("sum_sq", "Sum Sq"), ("p_value", "Pr(>F)")]:
        np.testing.assert_allclose(anova[ours], column(lmertest, theirs), rtol=1e-4)
    np.testing.assert_array_equal(anova.num_df, column(lmertest, "NumDF"))
    L = np.array(ref["L"])
    one = fit.contest(L, joint=False)
    for ours, theirs in [("estimate", "Estimate"), ("std_error", "Std. Error"), ("df", "df"), ("lower", "lower"),
                         ("upper", "upper"), ("p_value", "Pr(>|t|)")]:
        np.testing.assert_allclose(one[ours], column(ref["contest_satterthwaite"], theirs), rtol=1e-4)
    joint = fit.contest(L)
    for ours, theirs in [("F", "F value"), ("den_df", "DenDF"), ("mean_sq", "Mean Sq"), ("p_value", "Pr(>F)")]:
        np.testing.assert_allclose(joint[ours], column(ref["contest_joint_satterthwaite"], theirs), rtol=1e-4)


@pytest.mark.parametrize("name", list(MODELS))
def test_kenward_roger_matches_pbkrtest(data, name):
    ours, fit, ref = reference_fit(data, name, "reml")
    np.testing.assert_allclose(fit.vcov(adjusted=True), ref["vcov_kr"], rtol=1e-8)
    table = fit.coef_tests("kenward-roger")
    np.testing.assert_allclose(table.std_error, column(ref["kenward_roger"], "Std. Error"), rtol=1e-8)
    np.testing.assert_allclose(table.df, column(ref["kenward_roger"], "df"), rtol=1e-8)
    np.testing.assert_allclose(table.p_value, column(ref["kenward_roger"], "Pr(>|t|)"), rtol=1e-7)
    L = np.array(ref["L"])
    joint, kr = fit.contest(L, ddf="kenward-roger"), ref["krmodcomp"]
    assert joint.F[0] == pytest.approx(kr["F"], rel=1e-8)
    assert joint.den_df[0] == pytest.approx(kr["ddf"], rel=1e-8)
    assert joint.p_value[0] == pytest.approx(kr["p"], rel=1e-7)
    anova = fit.anova(ddf="kenward-roger")
    for mine, theirs in [("F", "F value"), ("den_df", "DenDF"), ("sum_sq", "Sum Sq")]:
        np.testing.assert_allclose(anova[mine], column(ref["anova_kenward_roger"], theirs), rtol=1e-8)
        np.testing.assert_allclose(joint[mine], column(ref["contest_joint_kenward_roger"], theirs), rtol=1e-8)
    one = fit.contest(L, joint=False, ddf="kenward-roger")
    np.testing.assert_allclose(one.df, column(ref["contest_kenward_roger"], "df"), rtol=1e-8)
    # on our own fit, whose θ̂ is within 1e-4 of lme4's, the issue's tolerance
    np.testing.assert_allclose(ours.coef_tests("kenward-roger").df, column(ref["kenward_roger"], "df"), rtol=1e-3)
    assert ours.contest(L, ddf="kenward-roger").F[0] == pytest.approx(kr["F"], rel=1e-3)


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("method", ["satterthwaite", "kenward-roger"])
def test_emmeans_and_pairs_match_emmeans(data, name, method):
    _, fit, ref = reference_fit(data, name, "reml")
    specs, at = SPECS[name]
    means = fit.emmeans(specs, ddf=method, at=at)
    theirs = ref[f"emmeans_{method}"]
    if at:
        np.testing.assert_array_equal(np.asarray(means.table.index, dtype=float), theirs[specs])
    else:
        assert list(means.table.index) == theirs[specs]
    for ours, column_name in [("emmean", "emmean"), ("std_error", "SE"), ("df", "df"), ("lower", "lower.CL"), ("upper", "upper.CL")]:
        np.testing.assert_allclose(means.table[ours], theirs[column_name], rtol=1e-4)
    for adjust in ("tukey", "bonferroni", "none"):
        pairs, theirs = means.pairs(adjust), ref[f"pairs_{method}_{adjust}"]
        if not at:
            assert list(pairs.index) == theirs["contrast"]
        for ours, column_name in [("estimate", "estimate"), ("std_error", "SE"), ("df", "df"), ("t_value", "t.ratio"),
                                  ("p_value", "p.value")]:
            np.testing.assert_allclose(pairs[ours], theirs[column_name], rtol=1e-4)


@pytest.mark.parametrize("which", ["interaction", "factorial"])
def test_type3_hypotheses_of_interaction_models(data, which):
    """A factor by covariate interaction (the covariate's main effect becomes its slope averaged
    over the factor) and a factor by factor one."""
    ref = ALL[which]
    crossed = data["crossed"].assign(sign=np.where(data["crossed"]["x"] > 0, "pos", "neg"))
    fit = at_theta(fit_of({"crossed": crossed}, ref["formula"], "crossed", True), ref["theta"])
    from bayesmix.reml.anova import type3_hypotheses

    hypotheses = type3_hypotheses(fit)
    assert list(hypotheses) == list(ref["hypotheses"])
    for term, H in hypotheses.items():
        np.testing.assert_allclose(H, np.array(ref["hypotheses"][term]), atol=1e-7)
    for ddf, block in [("satterthwaite", "anova_satterthwaite"), ("kenward-roger", "anova_kenward_roger")]:
        anova = fit.anova(ddf=ddf)
        np.testing.assert_allclose(anova.F, column(ref[block], "F value"), rtol=1e-4)
        np.testing.assert_allclose(anova.den_df, column(ref[block], "DenDF"), rtol=1e-4)


def test_summary_shows_df_and_p_values(data):
    fit, _, _ = reference_fit(data, "music", "reml")
    summary = fit.summary()
    assert list(summary.fixed.columns) == ["estimate", "std_error", "df", "t_value", "p_value"]
    text = str(summary)
    assert "Fixed effects (Satterthwaite df):" in text and "p_value" in text
    assert "<th>df</th>" in summary._repr_html_()
    kr = fit.summary(ddf="kenward-roger")
    np.testing.assert_allclose(kr.fixed.std_error, np.sqrt(np.diag(fit.vcov(adjusted=True))))
    assert "Kenward-Roger df" in str(kr)
    assert list(fit.summary(ddf=None).fixed.columns) == ["estimate", "std_error", "t_value"]


def test_contest_reads_a_named_frame(data):
    fit, _, _ = reference_fit(data, "music", "reml")
    names = list(fit.design.fixed_names)
    L = pd.DataFrame({names[1]: [1.0], names[2]: [-1.0]}, index=["Small - Solo"])
    table = fit.contest(L, joint=False)
    assert list(table.index) == ["Small - Solo"]
    assert table.estimate.iloc[0] == pytest.approx(fit.fixef().iloc[1] - fit.fixef().iloc[2])
    # a t test's F is its t squared, with the same df
    joint = fit.contest(L)
    assert joint.F[0] == pytest.approx(table.t_value.iloc[0] ** 2)
    assert joint.den_df[0] == pytest.approx(table.df.iloc[0])


def test_inference_arguments_are_checked(data):
    fit, _, _ = reference_fit(data, "music", "reml")
    ml, _, _ = reference_fit(data, "music", "ml")
    with pytest.raises(ArgumentError, match="REML"):
        ml.coef_tests("kenward-roger")
    with pytest.raises(ArgumentError, match="ddf must be"):
        fit.coef_tests("containment")
    with pytest.raises(ArgumentError, match="one column per fixed effect"):
        fit.contest(np.ones(2))
    with pytest.raises(ArgumentError, match="not fixed effects"):
        fit.contest(pd.DataFrame({"nope": [1.0]}))
    with pytest.raises(ArgumentError, match="all 0"):
        fit.contest(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]))
    with pytest.raises(ArgumentError, match="linearly dependent"):
        fit.contest(np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]]), ddf="kenward-roger")
    dependent = fit.contest(np.array([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]]))  # Satterthwaite tests the span
    assert dependent.num_df[0] == 1
    assert dependent.F[0] == pytest.approx(fit.tvalues().iloc[1] ** 2)
    with pytest.raises(ArgumentError, match="type III"):
        fit.anova(type=1)
    with pytest.raises(ArgumentError, match="not predictors"):
        fit.emmeans("id")
    with pytest.raises(ArgumentError, match="adjust must be"):
        fit.emmeans("perform_type").pairs("holm")


@pytest.mark.parametrize("scale", ["link", "response"])
def test_glmm_emmeans_match_emmeans(cbpp, scale):
    """Asymptotic z intervals and tests; on the response scale probabilities and odds ratios. The
    reference glmer fit uses tolPwrss = 1e-12, with which lme4 reaches the optimum our fit finds
    (its default stops 5e-4 short); the two then agree to about 1e-5 in β̂, so 2e-4 here."""
    ref = ALL["glmm"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = bm.Model(ref["formula"], cbpp, "binomial").fit_ml()
    means, theirs = fit.emmeans("period", scale=scale), ref[f"emmeans_{scale}"]
    assert list(means.table.index) == theirs["period"]
    assert np.isinf(means.table.df).all()
    mean_column = "emmean" if scale == "link" else "prob"
    for ours, column_name in [("emmean", mean_column), ("std_error", "SE"), ("lower", "asymp.LCL"), ("upper", "asymp.UCL")]:
        np.testing.assert_allclose(means.table[ours], theirs[column_name], rtol=2e-4)
    for adjust in ("tukey", "bonferroni", "none"):
        pairs, theirs = means.pairs(adjust), ref[f"pairs_{scale}_{adjust}"]
        assert list(pairs.index) == [c.replace("period", "") for c in theirs["contrast"]]
        estimate_column = "estimate" if scale == "link" else "odds.ratio"
        for ours, column_name in [("estimate", estimate_column), ("std_error", "SE"), ("z_value", "z.ratio"), ("p_value", "p.value")]:
            np.testing.assert_allclose(pairs[ours], theirs[column_name], rtol=2e-4)


def test_glmm_response_scale_pairs_need_a_ratio_link(cbpp):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fit = bm.Model(ALL["glmm"]["formula"], cbpp, bm.Binomial(link="probit")).fit_ml()
    means = fit.emmeans("period", scale="response")
    link_means = fit.emmeans("period").table
    np.testing.assert_allclose(means.table.emmean, fit.design.family.inverse_link(link_means.emmean.to_numpy()))
    np.testing.assert_allclose(means.table.upper, fit.design.family.inverse_link(link_means.upper.to_numpy()))
    with pytest.raises(ArgumentError, match="use scale='link'"):
        means.pairs()
    with pytest.raises(ArgumentError, match="scale must be"):
        fit.emmeans("period", scale="probability")


def test_kenward_roger_refuses_more_random_effects_than_its_dense_algebra_holds(data, monkeypatch):
    import bayesmix.reml.kenward_roger as kr

    fit = fit_of(data, MODELS["sleepstudy"]["formula"], "sleepstudy", True)
    monkeypatch.setattr(kr, "MAX_RANDOM_EFFECTS", 35)  # sleepstudy has 18 x 2
    with pytest.raises(ArgumentError, match="36 random effects"):
        fit.coef_tests("kenward-roger")


def test_emmeans_average_over_another_factor_and_cross_two(data):
    """``cond`` averaged over ``sign`` with equal weights, and the six cells (first spec fastest,
    as emmeans orders them) with Tukey's adjustment over 15 pairs."""
    ref = ALL["factorial"]
    crossed = data["crossed"].assign(sign=np.where(data["crossed"]["x"] > 0, "pos", "neg"))
    fit = at_theta(fit_of({"crossed": crossed}, ref["formula"], "crossed", True), ref["theta"])
    for specs, ddf, means_block, pairs_block in [("cond", "satterthwaite", "emmeans_cond", "pairs_cond"),
                                                  (["cond", "sign"], "kenward-roger", "emmeans_cells", "pairs_cells")]:
        means, theirs = fit.emmeans(specs, ddf=ddf), ref[means_block]
        labels = list(zip(*[theirs[s] for s in specs])) if isinstance(specs, list) else theirs[specs]
        assert list(means.table.index) == labels
        for ours, name in [("emmean", "emmean"), ("std_error", "SE"), ("df", "df"), ("lower", "lower.CL")]:
            np.testing.assert_allclose(means.table[ours], theirs[name], rtol=1e-5)
        pairs, theirs = means.pairs(), ref[pairs_block]
        assert list(pairs.index) == theirs["contrast"]
        for ours, name in [("estimate", "estimate"), ("std_error", "SE"), ("df", "df"), ("p_value", "p.value")]:
            np.testing.assert_allclose(pairs[ours], theirs[name], rtol=1e-5)
