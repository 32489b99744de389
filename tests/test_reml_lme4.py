"""REML/ML fits against lme4 1.1-31 at its optimum (../shared/reference and tests/reference), through
the automatic choice of factorisation (blocked for all of these) and through the sparse one (CHOLMOD)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix import ConvergenceWarning

from .conftest import require_cholmod, shared_file

HERE = Path(__file__).parent / "reference"
SHARED_MODELS = json.loads(shared_file("reference", "lme4_reference.json").read_text())
EXTRA_MODELS = json.loads((HERE / "lme4_extra.json").read_text())
DATA = {
    "music": lambda: pd.read_csv(shared_file("data", "musicdata.csv")),
    "sleep": lambda: pd.read_csv(shared_file("data", "sleepstudy.csv")),
    "crossed": lambda: pd.read_csv(HERE / "data" / "crossed.csv"),
    "nested": lambda: pd.read_csv(HERE / "data" / "nested.csv"),
    "onefactor": lambda: pd.read_csv(HERE / "data" / "onefactor.csv"),
}
SOURCE = {
    "music_m2": "music", "music_m1": "music", "music_m2_ML": "music", "music_previous": "music",
    "sleepstudy": "sleep", "sleepstudy_uncorr": "sleep", "sleep_ML": "sleep",
    "crossed_int": "crossed", "crossed_slope": "crossed", "crossed_slope_ML": "crossed",
    "nested": "nested", "nested_colon": "nested",
    "onefactor_two_terms": "onefactor", "onefactor_corr3": "onefactor", "onefactor_uncorr": "onefactor",
    "intercept_only": "onefactor",
}
MODELS = {m["name"]: m for m in SHARED_MODELS + EXTRA_MODELS}


def our_name(lme4_name: str) -> str:
    """lme4 coefficient names -> bayesmix names: ``(Intercept)`` -> ``Intercept``, ``fA`` -> ``f[A]``."""
    if lme4_name == "(Intercept)":
        return "Intercept"
    m = re.fullmatch(r"(perform_type)(.+)", lme4_name)
    return f"{m.group(1)}[{m.group(2)}]" if m else lme4_name


def our_level(group: str, level: str) -> str:
    """lme4 names ``school/class``'s inner factor ``class:school``; we name it ``school:class``."""
    return ":".join(reversed(level.split(":"))) if group == "class:school" else level


@pytest.fixture(scope="module", params=["auto", "sparse"])
def fits(request):
    factorization = request.param
    cache = {}

    def fit(name):
        if factorization == "sparse":
            require_cholmod()
        if name not in cache:
            ref = MODELS[name]
            design = bm.make_design(ref["formula"], DATA[SOURCE[name]]())
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConvergenceWarning)
                cache[name] = bm.fit_reml(design, reml=ref["REML"], factorization=factorization)
            expected = "sparse (CHOLMOD)" if factorization == "sparse" else "blocked"
            assert cache[name].optsummary.factorization == expected
        return cache[name], MODELS[name]

    return fit


ALL = sorted(MODELS)


def test_every_reference_model_is_covered():
    assert set(MODELS) == set(SOURCE) and len(MODELS) == 16


@pytest.mark.parametrize("name", ALL)
def test_criterion_reaches_lme4_optimum(fits, name):
    fit, ref = fits(name)
    assert fit.criterion <= ref["criterion"] * (1 + 1e-6)
    assert fit.criterion >= ref["criterion"] * (1 - 1e-6), "lower than lme4 by more than rounding: check"
    assert fit.loglik == pytest.approx(ref["logLik"], rel=1e-6)
    assert fit.aic == pytest.approx(ref["AIC"], rel=1e-6)
    assert fit.bic == pytest.approx(ref["BIC"], rel=1e-6)
    assert fit.nobs == ref["nobs"]


@pytest.mark.parametrize("name", ALL)
def test_fixed_effects_and_standard_errors(fits, name):
    fit, ref = fits(name)
    expected = pd.Series(ref["fixef"]).rename(index=our_name)
    pd.testing.assert_index_equal(fit.fixef().index, expected.index)
    np.testing.assert_allclose(fit.fixef(), expected, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(fit.std_errors(), pd.Series(ref["se"]), rtol=1e-4)
    np.testing.assert_allclose(fit.tvalues(), expected / pd.Series(ref["se"]).to_numpy(), rtol=1e-4)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=1e-5)
    if "vcov" in ref:
        np.testing.assert_allclose(fit.vcov(), np.asarray(ref["vcov"]), rtol=2e-4, atol=1e-8)


@pytest.mark.parametrize("name", ALL)
def test_theta_varcorr_singular(fits, name):
    fit, ref = fits(name)
    np.testing.assert_allclose(fit.theta, np.atleast_1d(ref["theta"]), atol=1e-3)
    vc = pd.DataFrame(ref["varcorr"])
    ours = fit.varcorr()
    assert len(ours) == len(vc)
    np.testing.assert_allclose(ours["vcov"], vc["vcov"], rtol=1e-3, atol=1e-3 * vc["vcov"].abs().max())
    np.testing.assert_allclose(ours["sdcor"], vc["sdcor"], rtol=1e-3, atol=1e-3)
    assert fit.singular is ref["singular"]
    assert fit.ngrps == {our_level("x", g) if g != "class:school" else "school:class": k for g, k in ref["ngrps"].items()}


@pytest.mark.parametrize("name", ALL)
def test_conditional_modes_and_variances(fits, name):
    fit, ref = fits(name)
    ranef = fit.ranef()
    ranef = ranef if isinstance(ranef, dict) else {next(iter(fit.ngrps)): ranef}
    condvar = fit.cond_var()
    condvar = condvar if isinstance(condvar, dict) else {next(iter(fit.ngrps)): condvar}
    for group, expected in ref["ranef"].items():
        ours_group = "school:class" if group == "class:school" else group
        levels = [our_level(group, str(level)) for level in expected["levels"]]
        ours = ranef[ours_group]
        position = pd.Index(ours.index.astype(str)).get_indexer(levels)
        assert (position >= 0).all()
        values = np.asarray(expected["values"], dtype=float).reshape(len(levels), -1)
        scale = np.abs(values).max()
        np.testing.assert_allclose(ours.to_numpy()[position], values, atol=1e-3 * scale)
        cv = ref.get("condvar", {}).get(group)
        if cv is None:
            continue
        ours_cv = condvar[ours_group][position]
        if isinstance(cv, dict):  # lme4 gives one array per term on this factor: the diagonal blocks
            blocks = [np.asarray(v, dtype=float).reshape(len(levels), -1) for v in cv.values()]
            np.testing.assert_allclose(np.diagonal(ours_cv, axis1=1, axis2=2), np.column_stack(blocks), rtol=2e-3)
        else:
            np.testing.assert_allclose(ours_cv, np.asarray(cv, dtype=float).reshape(ours_cv.shape), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("name", [m["name"] for m in EXTRA_MODELS])
def test_fitted_and_coef(fits, name):
    fit, ref = fits(name)
    np.testing.assert_allclose(fit.fitted().to_numpy()[:10], ref["fitted_head"], rtol=1e-4)
    coef = fit.coef()
    coef = coef if isinstance(coef, dict) else {next(iter(fit.ngrps)): coef}
    for group, expected in ref["coef"].items():
        ours_group = "school:class" if group == "class:school" else group
        levels = [our_level(group, str(level)) for level in expected["levels"]]
        columns = [our_name(c) for c in np.atleast_1d(expected["columns"])]
        ours = coef[ours_group]
        ours = ours.set_axis(ours.index.astype(str)).loc[levels, columns]
        np.testing.assert_allclose(ours, np.asarray(expected["values"], dtype=float).reshape(ours.shape), rtol=1e-3, atol=1e-3)


def test_nested_and_colon_forms_agree(fits):
    a, _ = fits("nested")
    b, _ = fits("nested_colon")
    assert a.criterion == pytest.approx(b.criterion, rel=1e-10)
    np.testing.assert_allclose(a.fixef(), b.fixef(), rtol=1e-7)
