# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Counts and proportions: generalised linear mixed models
#
# A response that is a number of successes out of a number of trials, or a count over an
# exposure, is not Gaussian. A generalised linear mixed model (GLMM) keeps the mixed model's
# linear predictor, η = offset + Xβ + Zb with b ~ N(0, ΛΛ'), and lets each response follow its
# family with mean μ = g⁻¹(η): binomial with the logit link, Poisson or negative binomial with
# the log link. bayesmix fits these by maximum likelihood as lme4's `glmer` does (the Laplace
# approximation) — see [the GLMM page](../glmm.md).
#
# This notebook simulates two data sets whose truth we know, fits them, and reads the results:
#
# 1. **proportions**: patients recovering in the two arms of a trial run in many clinics, each
#    clinic with its own baseline and its own treatment effect (a correlated random slope);
# 2. **counts over an exposure**: birds counted at sites during visits of different lengths,
#    more variable than Poisson (overdispersed): a Poisson model, a Poisson model with an
#    observation-level random effect, and a negative binomial model.
#
# Then (when lme4's reference numbers are at hand) lme4's `cbpp` example beside ours.
#
# `BAYESMIX_EXAMPLES_QUICK=1` simulates fewer clinics and sites. Every assertion compares with
# the truth within a multiple of the standard error, or with an exact identity.

# %%
import json
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import special

import bayesmix as bm

QUICK = os.environ.get("BAYESMIX_EXAMPLES_QUICK") == "1"
pd.set_option("display.width", 120)
LRT_COLUMNS = ["npar", "AIC", "logLik", "Chisq", "Df", "p_value"]
CLINICS, SITES = (30, 40) if QUICK else (60, 80)
rng = np.random.default_rng(13)

# %% [markdown]
# ## 1. Proportions: recoveries in a multi-clinic trial
#
# Clinic j treats $n_{jk}$ patients in arm k (control, treated) and $y_{jk}$ of them recover:
#
# $y_{jk} \sim \text{Binomial}(n_{jk}, p_{jk})$, $\text{logit}\, p_{jk} = \beta_0 + b_{0j} + (\beta_1 + b_{1j})\, \text{treated}_k$,
# with $(b_{0j}, b_{1j})$ bivariate normal: SDs 0.7 and 0.4, correlation -0.4 (clinics with a
# high baseline gain less).

# %%
TRUTH = {"Intercept": -0.4, "treated": 0.8, "sd(Intercept)": 0.7, "sd(treated)": 0.4, "cor": -0.4}
sd = np.array([TRUTH["sd(Intercept)"], TRUTH["sd(treated)"]])
cov = np.outer(sd, sd) * np.array([[1.0, TRUTH["cor"]], [TRUTH["cor"], 1.0]])
b = rng.multivariate_normal(np.zeros(2), cov, size=CLINICS)
trial = pd.DataFrame({
    "clinic": np.repeat([f"c{j:02d}" for j in range(CLINICS)], 2),
    "treated": np.tile([0, 1], CLINICS),
    "patients": rng.integers(10, 60, size=2 * CLINICS),
})
j = np.repeat(np.arange(CLINICS), 2)
eta = TRUTH["Intercept"] + b[j, 0] + (TRUTH["treated"] + b[j, 1]) * trial["treated"]
trial["recovered"] = rng.binomial(trial["patients"], special.expit(eta))
print(trial.head())

# %% [markdown]
# The response is written as lme4 writes it: `cbind(successes, failures)`, where each part may
# be an expression of the columns.

# %%
proportions = bm.Model("cbind(recovered, patients - recovered) ~ treated + (treated | clinic)", trial, "binomial")
fit = proportions.fit_ml()
print(fit.summary())

# %% [markdown]
# Estimates beside the truth. The fixed effects should be within a few standard errors of it;
# with a few dozen clinics the SDs and especially the correlation are estimated loosely.

# %%
table = fit.varcorr()
estimates = pd.Series({
    **fit.fixef().to_dict(),
    "sd(Intercept)": table["sdcor"].iloc[0], "sd(treated)": table["sdcor"].iloc[1], "cor": table["sdcor"].iloc[2],
})
print(pd.DataFrame({"truth": TRUTH, "estimate": estimates, "std_error": fit.std_errors()}, index=list(TRUTH)).round(3))
for name in ("Intercept", "treated"):
    assert abs(fit.fixef()[name] - TRUTH[name]) < 3 * fit.std_errors()[name], name
assert 0.4 < estimates["sd(Intercept)"] < 1.1

# %% [markdown]
# The same model, written as a proportion with the number of trials as prior weights (R's
# `glmer(p ~ ..., weights = n)`), is the same fit.

# %%
as_proportion = bm.Model("p ~ treated + (treated | clinic)", trial.assign(p=trial["recovered"] / trial["patients"]),
                         "binomial", weights="patients").fit_ml()
print(as_proportion.fixef())
np.testing.assert_allclose(as_proportion.fixef(), fit.fixef(), rtol=1e-8)
assert abs(as_proportion.loglik - fit.loglik) < 1e-8

# %% [markdown]
# **Does the treatment work?** The Wald z test is in the summary; the likelihood-ratio test
# compares the fit with the one without the fixed effect of treatment (the random slope
# stays: clinics may still differ in their response to it).

# %%
no_effect = bm.Model("cbind(recovered, patients - recovered) ~ 1 + (treated | clinic)", trial, "binomial").fit_ml()
lrt = bm.likelihood_ratio_test(no_effect, fit)
print(lrt[LRT_COLUMNS])
assert lrt["p_value"].iloc[1] < 1e-3 and fit.pvalues()["treated"] < 1e-3
assert abs(lrt["Chisq"].iloc[1] - 2 * (fit.loglik - no_effect.loglik)) < 1e-9

# %% [markdown]
# **Predictions on the response scale**: the probability of recovery for a treated patient of
# clinic c00 (its own baseline and treatment effect, the conditional modes) and of a clinic
# not in the data (random effects 0: the population-level probability).

# %%
new = pd.DataFrame({"clinic": ["c00", "c00", "new clinic", "new clinic"], "treated": [0, 1, 0, 1]})
predicted = fit.predict(new, type="response", allow_new_levels=True)
print(new.assign(probability=predicted.round(3)))
coef = fit.coef().loc["c00"]
beta = fit.fixef()
by_hand = special.expit([coef["Intercept"], coef["Intercept"] + coef["treated"],
                         beta["Intercept"], beta["Intercept"] + beta["treated"]])
np.testing.assert_allclose(predicted, by_hand, rtol=1e-12)

# %% [markdown]
# ## 2. Counts over an exposure, with overdispersion
#
# Site j is visited six times; visit i lasts $t_{ij}$ hours and $y_{ij}$ birds are counted.
# The expected count is proportional to the time spent: $\log \mu_{ij} = \log t_{ij} + \beta_0 +
# \beta_1 x_{ij} + b_j$, where x is the (standardised) temperature. The counts are simulated
# negative binomial, $\text{Var}(y) = \mu + \mu^2/\theta$ with θ = 3: more variable than
# Poisson. `offset(log(t))` puts the exposure into the linear predictor with coefficient 1.

# %%
COUNT_TRUTH = {"Intercept": 0.5, "x": 0.3, "sd(site)": 0.5, "theta": 3.0}
visits = pd.DataFrame({"site": np.repeat([f"s{j:02d}" for j in range(SITES)], 6),
                       "x": rng.normal(size=6 * SITES), "hours": rng.uniform(0.5, 4.0, size=6 * SITES)})
visits["visit"] = np.arange(len(visits)).astype(str)
site_effect = rng.normal(0.0, COUNT_TRUTH["sd(site)"], SITES)[np.repeat(np.arange(SITES), 6)]
mu = visits["hours"] * np.exp(COUNT_TRUTH["Intercept"] + COUNT_TRUTH["x"] * visits["x"] + site_effect)
theta = COUNT_TRUTH["theta"]
visits["birds"] = rng.negative_binomial(theta, theta / (theta + mu))  # numpy's (n, p): mean mu, variance mu + mu^2/theta
print(visits.head())

# %% [markdown]
# Three models for the same counts: Poisson; Poisson with an observation-level random effect
# `(1 | visit)` (a normal error on the log scale for each visit, lme4's usual remedy for
# overdispersion); and the negative binomial (NB2, glmmTMB's `nbinom2`), whose dispersion θ is
# estimated.

# %%
formula = "birds ~ x + offset(log(hours)) + (1 | site)"
poisson = bm.Model(formula, visits, "poisson").fit_ml()
with warnings.catch_warnings():  # with little overdispersion left the visit SD may sit near 0
    warnings.simplefilter("ignore", bm.ConvergenceWarning)
    observation_level = bm.Model(formula + " + (1 | visit)", visits, "poisson").fit_ml()
negative_binomial = bm.Model(formula, visits, "negative_binomial").fit_ml()
print(negative_binomial.summary())

# %% [markdown]
# The Poisson fit's Pearson residuals show the overdispersion: the sum of their squares over
# the residual degrees of freedom should be near 1 for a Poisson response, and is far above it.
# The negative binomial's is near 1. (The observation-level model's is well below 1: its
# conditional means follow each count through that count's own random effect.) Both remedies
# improve the AIC by far, and both widen the standard error of x.

# %%
def dispersion_ratio(fit):
    """Σ Pearson residual² / residual degrees of freedom."""
    return float((fit.residuals("pearson") ** 2).sum() / (fit.nobs - fit.n_params))


comparison = pd.DataFrame({
    "logLik": [m.loglik for m in (poisson, observation_level, negative_binomial)],
    "AIC": [m.aic for m in (poisson, observation_level, negative_binomial)],
    "x": [m.fixef()["x"] for m in (poisson, observation_level, negative_binomial)],
    "SE(x)": [m.std_errors()["x"] for m in (poisson, observation_level, negative_binomial)],
    "Pearson ratio": [dispersion_ratio(m) for m in (poisson, observation_level, negative_binomial)],
}, index=["Poisson", "Poisson + (1 | visit)", "negative binomial"])
print(comparison.round(3))
print(f"negative binomial theta = {negative_binomial.dispersion:.2f} (truth {theta})")
assert dispersion_ratio(poisson) > 1.5 and abs(dispersion_ratio(negative_binomial) - 1) < 0.3
assert max(negative_binomial.aic, observation_level.aic) < poisson.aic - 20
# ignoring the overdispersion makes the SE of x too small
assert poisson.std_errors()["x"] < 0.9 * negative_binomial.std_errors()["x"]
for name in ("Intercept", "x"):
    assert abs(negative_binomial.fixef()[name] - COUNT_TRUTH[name]) < 3 * negative_binomial.std_errors()[name], name
assert 1.5 < negative_binomial.dispersion < 6.0

# %% [markdown]
# The likelihood-ratio test of the observation-level effect (Poisson against Poisson with
# `(1 | visit)`) rejects the Poisson model. Its null value, a variance of 0, is on the
# boundary, so the χ²₁ p value is conservative (the correct one is about half of it). The
# Poisson and the negative binomial are different families, not nested fits:
# `likelihood_ratio_test` refuses to compare them; their AICs are compared above.

# %%
lrt = bm.likelihood_ratio_test(poisson, observation_level)
print(lrt[LRT_COLUMNS])
assert lrt["p_value"].iloc[1] < 1e-3
try:
    bm.likelihood_ratio_test(poisson, negative_binomial)
except bm.ArgumentError as error:
    print(error)
else:
    raise AssertionError("the likelihood-ratio test should refuse fits of different families")

# %% [markdown]
# **Predictions**: the expected count in a two-hour visit at 0 temperature (x = 0) at site s00
# and at a site not in the data. The offset is evaluated on the new rows, so the exposure is
# taken into account: μ = 2 exp(β₀ + b_j).

# %%
new_visits = pd.DataFrame({"site": ["s00", "new site"], "x": [0.0, 0.0], "hours": [2.0, 2.0]})
expected = negative_binomial.predict(new_visits, type="response", allow_new_levels=True)
print(new_visits.assign(expected_birds=expected.round(2)))
b_s00 = negative_binomial.ranef().loc["s00", "Intercept"]
intercept = negative_binomial.fixef()["Intercept"]
np.testing.assert_allclose(expected, 2.0 * np.exp([intercept + b_s00, intercept]), rtol=1e-12)

# %% [markdown]
# ## 3. lme4's `cbpp` beside ours
#
# lme4's classic binomial example: contagious bovine pleuropneumonia in 15 herds over four
# periods, `cbind(incidence, size - incidence) ~ period + (1 | herd)`. The reference numbers
# (lme4 1.1-31, with its default settings and with a tight PIRLS tolerance, which reaches the
# optimum) are read from the directory `BAYESMIX_GLMM_DIR` when it is set; this part is
# skipped otherwise. lme4's default fit stops slightly short of the optimum; ours agrees with
# the tight one.

# %%
GLMM_DIR = os.environ.get("BAYESMIX_GLMM_DIR")
reference_file = Path(GLMM_DIR) / "glmm_reference.json" if GLMM_DIR else None
if reference_file is not None and reference_file.is_file():
    models = json.loads(reference_file.read_text())["models"]
    lme4 = next(m for m in models if m["name"] == "cbpp_binomial")
    tight = lme4["crosscheck"]["lme4_tolPwrss_1e12"]
    cbpp = pd.read_csv(reference_file.parent / "cbpp.csv", dtype={"herd": str, "period": str})
    ours = bm.Model(lme4["formula"], cbpp, "binomial").fit_ml()
    side_by_side = pd.DataFrame({
        "bayesmix": [*ours.fixef(), *ours.std_errors(), ours.varcorr()["sdcor"].iloc[0], ours.loglik],
        "lme4 (default)": [*lme4["fixef"].values(), *lme4["se"].values(), lme4["random_effects"]["herd"]["sd"]["(Intercept)"],
                           lme4["logLik"]],
        "lme4 (tolPwrss = 1e-12)": [*tight["fixef"].values(), *tight["se"].values(), tight["theta"]["herd.(Intercept)"],
                                    tight["logLik"]],
    }, index=[*ours.fixef().index, *(f"SE({n})" for n in ours.fixef().index), "sd(herd)", "logLik"])
    print(side_by_side.round(5))
    np.testing.assert_allclose(ours.fixef(), list(tight["fixef"].values()), atol=2e-4)
    np.testing.assert_allclose(ours.std_errors(), list(tight["se"].values()), rtol=0.02)
    assert abs(ours.varcorr()["sdcor"].iloc[0] - tight["theta"]["herd.(Intercept)"]) < 1e-3
    assert tight["logLik"] - 1e-6 <= ours.loglik <= tight["logLik"] + 1e-4
    assert ours.loglik >= lme4["logLik"]  # the default lme4 fit is short of the optimum
else:
    print("BAYESMIX_GLMM_DIR is not set (or has no glmm_reference.json): skipping the comparison with lme4")

# %%
print("glmm_counts_and_proportions: all checks passed")
