"""REML/ML fits never return NaN silently: failures raise FitError or warn, with the optimiser's record.

Also: estimates follow a rescaled predictor exactly (β by the inverse factor; σ's and the ML
log-likelihood unchanged; the REML criterion shifted by the Jacobian 2 log f), and argument
checks on the fitting functions.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from scipy.optimize import OptimizeResult

import bayesmix as bm
import bayesmix.reml.refit as refit_module
from bayesmix import ArgumentError, ConvergenceWarning, FitError
from bayesmix.reml import OptSummary
from bayesmix.reml.criterion import ProfiledCriterion

from .conftest import SLEEP_FORMULA, fit

# lme4's start, identity templates for the columns scaled to unit root mean square: θ(Days) = 1 / rms(Days)
START = [1.0, 0.0, 1.0 / np.sqrt(np.mean(np.arange(10.0) ** 2))]


def test_criterion_nan_at_the_start_raises_with_the_record(sleep_model, monkeypatch):
    monkeypatch.setattr(ProfiledCriterion, "__call__", lambda self, theta: np.nan)
    monkeypatch.setattr(ProfiledCriterion, "value_and_gradient", lambda self, theta: (np.nan, np.full(len(theta), np.nan)))
    with pytest.raises(FitError, match=r"criterion is nan at the starting θ \[1.0, 0.0, 0.187317\].*rescale.*Optimiser record: L-BFGS-B") as info:
        sleep_model.fit_reml()
    record = info.value.optsummary
    assert isinstance(record, OptSummary) and not record.converged
    assert record.message == "criterion not finite at the start" and np.isnan(record.fmin)


def test_criterion_nan_away_from_the_start_warns_and_stays_finite(sleep_model, monkeypatch):
    real = ProfiledCriterion.value_and_gradient

    def nan_off_start(self, theta):
        value, grad = real(self, theta)
        return (value, grad) if np.allclose(theta, START, rtol=1e-15, atol=0) else (np.nan, grad * np.nan)

    monkeypatch.setattr(ProfiledCriterion, "value_and_gradient", nan_off_start)
    with pytest.warns(ConvergenceWarning, match=r"did not report convergence: .*NOT converged") as record:
        result = sleep_model.fit_reml()
    warning = next(w.message for w in record if "convergence" in str(w.message))
    assert isinstance(warning.optsummary, OptSummary) and not warning.optsummary.converged
    np.testing.assert_allclose(result.theta.to_numpy(), START, rtol=1e-15)  # stayed at the only finite point
    assert np.isfinite(result.fixef()).all() and np.isfinite(result.sigma) and np.isfinite(result.criterion)


def test_failed_lbfgsb_warns_with_its_message(sleep_model, monkeypatch):
    def failing(fun, x0, **kwargs):
        value, _ = fun(x0)
        return OptimizeResult(x=np.asarray(x0), fun=value, success=False, nit=0, message="ABNORMAL_TERMINATION_IN_LNSRCH")

    monkeypatch.setattr(scipy.optimize, "minimize", failing)
    with pytest.warns(ConvergenceWarning, match=r"NOT converged \(ABNORMAL_TERMINATION_IN_LNSRCH\)") as record:
        result = sleep_model.fit_reml()
    warning = next(w.message for w in record if "ABNORMAL" in str(w.message))
    assert warning.optsummary is result.optsummary
    assert result.optsummary.message == "ABNORMAL_TERMINATION_IN_LNSRCH" and not result.optsummary.converged


def _corrupt_final_factor(monkeypatch, corrupt):
    real = refit_module.optimize_theta

    def optimize_then_corrupt(criterion, *args, **kwargs):
        summary = real(criterion, *args, **kwargs)
        factorize = criterion.factorize
        criterion.factorize = lambda theta: corrupt(factorize(theta))
        return summary

    monkeypatch.setattr(refit_module, "optimize_theta", optimize_then_corrupt)


def test_non_finite_estimates_raise_instead_of_returning_nan(sleep_model, monkeypatch):
    _corrupt_final_factor(monkeypatch, lambda f: dataclasses.replace(f, R=f.R * np.nan))
    with pytest.raises(FitError, match=r"non-finite Cholesky factor R \(.*Optimiser record: L-BFGS-B .*converged") as info:
        sleep_model.fit_reml()
    assert isinstance(info.value.optsummary, OptSummary) and info.value.optsummary.converged


def test_singular_fixed_effects_factor_is_a_fit_error(sleep_model, monkeypatch):
    def zero_pivot(f):
        R = f.R.copy()
        R[1, 1] = 0.0
        return dataclasses.replace(f, R=R)

    _corrupt_final_factor(monkeypatch, zero_pivot)
    with pytest.raises(FitError, match=r"The fit produced non-finite beta \(") as info:
        sleep_model.fit_reml()
    assert info.value.optsummary.converged


def test_factor_failing_at_the_optimum_is_a_fit_error(sleep_model, monkeypatch):
    def broken(f):
        raise np.linalg.LinAlgError("not positive definite")

    _corrupt_final_factor(monkeypatch, broken)
    with pytest.raises(FitError, match=r"Cholesky factor does not exist at the optimum θ = \[.*not positive definite.*Optimiser record"):
        sleep_model.fit_reml()


def test_extreme_response_stops_before_the_optimiser(sleep, monkeypatch):
    monkeypatch.setattr(scipy.optimize, "minimize", lambda *a, **k: pytest.fail("the optimiser must not run"))
    with pytest.raises(bm.DataError, match=r"response 'Reaction' has values as large as"):
        bm.Model(SLEEP_FORMULA, sleep.assign(Reaction=sleep["Reaction"] * 1e300)).fit_reml()


def test_singular_fit_warns_and_is_finite(rng):
    data = pd.DataFrame({"y": rng.normal(size=60), "x": rng.normal(size=60), "g": np.repeat(np.arange(12), 5)})
    data["y"] -= data.groupby("g")["y"].transform("mean")  # no between-group variation at all
    with pytest.warns(ConvergenceWarning, match=r"boundary \(singular\) fit"):
        result = bm.Model("y ~ x + (1 | g)", data).fit_reml()
    assert result.singular and result.theta.iloc[0] == 0.0
    assert np.isfinite(result.fixef()).all() and np.isfinite(result.sigma)


@pytest.mark.parametrize("factor", [1e-8, 1e8])
@pytest.mark.parametrize("reml", [True, False])
def test_rescaled_predictor_rescales_the_estimates_exactly(sleep, factor, reml):
    base = fit(SLEEP_FORMULA, sleep, reml)
    scaled = fit(SLEEP_FORMULA, sleep.assign(Days=sleep["Days"] * factor), reml)
    assert not scaled.singular and scaled.optsummary.converged
    # REML's log|X'V⁻¹X| gains 2 log f from the rescaled column; the ML likelihood is unchanged
    shift = 2 * np.log(factor) if reml else 0.0
    assert scaled.criterion == pytest.approx(base.criterion + shift, rel=1e-10)
    assert scaled.fixef()["Intercept"] == pytest.approx(base.fixef()["Intercept"], rel=1e-8)
    assert scaled.fixef()["Days"] * factor == pytest.approx(base.fixef()["Days"], rel=1e-8)
    assert scaled.sigma == pytest.approx(base.sigma, rel=1e-6)
    sd = scaled.varcorr()["sdcor"].to_numpy() * [1, factor, 1, 1]  # sd(Intercept), sd(Days), cor, sigma
    np.testing.assert_allclose(sd, base.varcorr()["sdcor"].to_numpy(), rtol=1e-5)
    new = pd.DataFrame({"Days": [2.5], "Subject": [308]})
    assert scaled.predict(new.assign(Days=2.5 * factor)).iloc[0] == pytest.approx(base.predict(new).iloc[0], rel=1e-7)


@pytest.mark.parametrize(("offset", "scale"), [(1e8, 1.0), (1e10, 1.0), (1e6, 1e-3), (1.0, 1e-9)])
def test_response_with_a_large_mean_keeps_its_precision(sleep, offset, scale):
    # y = offset + scale * Reaction: its cross-products used to lose the digits that carry the
    # variation (σ 1% off at 1e8 without a warning, a FitError at 1e10)
    base = fit(SLEEP_FORMULA, sleep)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        shifted = bm.Model(SLEEP_FORMULA.replace("Reaction", "y"), sleep.assign(y=offset + scale * sleep["Reaction"])).fit_reml()
    assert shifted.sigma / scale == pytest.approx(base.sigma, rel=1e-6)
    assert shifted.fixef()["Days"] / scale == pytest.approx(base.fixef()["Days"], rel=1e-6)
    assert (shifted.fixef()["Intercept"] - offset) / scale == pytest.approx(base.fixef()["Intercept"], rel=1e-6)
    np.testing.assert_allclose(shifted.theta.to_numpy(), base.theta.to_numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(shifted.ranef().to_numpy() / scale, base.ranef().to_numpy(), rtol=1e-4, atol=1e-4)


def test_small_theta_of_a_large_scale_predictor_is_not_called_singular(sleep):
    # θ of the Days slope is 2e-9 here; the singularity test looks at θ times the size of Days
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        result = bm.Model(SLEEP_FORMULA, sleep.assign(Days=sleep["Days"] * 1e8)).fit_reml()
    assert result.theta.iloc[2] < 1e-8 and not result.singular
    compared = bm.compare(result, _fake_posterior_like(result))
    assert not compared["boundary"].any()


def _fake_posterior_like(result):
    """A minimal stand-in with summary(): compare() only needs the posterior table."""

    class Posterior(bm.BayesResult):
        def __init__(self):
            self.design = result.design

        def summary(self, ci_prob=0.95):
            index = ["Intercept", "Days", "sd(Intercept)", "sd(Days)", "cor(Intercept, Days)", "sigma"]
            return pd.DataFrame({"mean": 0.0, "sd": 1.0, "ci_lb": -1.0, "ci_ub": 1.0}, index=index)

    return Posterior()


def test_tiny_data_fit_is_finite(sleep):
    data = sleep.iloc[[0, 1, 10, 11, 12]]
    result = fit("Reaction ~ Days + (1 | Subject)", data)
    assert result.nobs == 5 and np.isfinite(result.fixef()).all() and np.isfinite([result.sigma, result.criterion]).all()


@pytest.mark.parametrize("bad", ["yes", 1, None])
def test_reml_flag_must_be_boolean(sleep_model, bad):
    with pytest.raises(ArgumentError, match=rf"reml must be True \(REML\) or False \(maximum likelihood\), not {bad!r}"):
        bm.fit_reml(sleep_model.design, reml=bad)


def test_likelihood_ratio_test_arguments(sleep_reml, sleep_post):
    with pytest.raises(ArgumentError, match=r"needs at least two fits"):
        bm.likelihood_ratio_test(sleep_reml)
    with pytest.raises(ArgumentError, match=r"takes REML/ML fits .*argument 2 is a BayesResult"):
        bm.likelihood_ratio_test(sleep_reml, sleep_post)
    with pytest.raises(ArgumentError, match=r"argument 1 is a int"):
        bm.likelihood_ratio_test(3, sleep_reml)


def test_likelihood_ratio_test_needs_the_same_rows(sleep, sleep_reml):
    other = fit(SLEEP_FORMULA, sleep.iloc[:170])
    with pytest.raises(ArgumentError, match=r"fits 1 and 2 use different numbers of observations \(180 and 170\)\. Fit every model to the same rows"):
        bm.likelihood_ratio_test(sleep_reml, other)
