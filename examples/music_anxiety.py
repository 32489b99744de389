# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Music performance anxiety, step by step
#
# 37 undergraduate musicians kept diaries before their performances (Sadler and Miller 2010;
# Roback and Legler, *Beyond Multiple Linear Regression*, chapter 8). Each of the 497 diary
# entries records the negative affect `na` felt before the performance and its type: Large
# Ensemble (the baseline), Small Ensemble or Solo. Entries of one musician are not
# independent: some musicians are more anxious than others, and some react more to a solo.
#
# The lecture fits, as R's lme4 would:
#
# 1. `na ~ perform_type + (1 | id)`: a random intercept per musician;
# 2. `na ~ perform_type + (perform_type | id)`: a random intercept *and* random effects of the
#    performance type, correlated within a musician.
#
# This notebook fits both by REML and by NUTS, compares the answers, predicts musician 1's
# anxiety before a solo, checks the model's assumptions, and compares the two models.
#
# Run it as a script (`python examples/music_anxiety.py`) or open it in Jupyter with jupytext.
# With `BAYESMIX_EXAMPLES_QUICK=1` the sampler draws less (2 chains x 300 draws instead of
# 4 x 1000), as in the project's tests; `BAYESMIX_EXAMPLES_OUT=dir` saves the figures there.
# Every `assert` checks a number against lme4 or against another way of computing it.

# %%
import os
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
from scipy import stats

import bayesmix as bm
from bayesmix.datasets import MUSIC_ML_DEVIANCE, MUSIC_REML, MUSIC_REML_INTERCEPT, load_music

QUICK = os.environ.get("BAYESMIX_EXAMPLES_QUICK") == "1"
OUT = os.environ.get("BAYESMIX_EXAMPLES_OUT")
DRAWS, CHAINS = (300, 2) if QUICK else (1000, 4)


def show(figure, name):
    """Save the figure when BAYESMIX_EXAMPLES_OUT names a directory; return it (a notebook displays it)."""
    if OUT:
        Path(OUT).mkdir(parents=True, exist_ok=True)
        figure.savefig(Path(OUT) / f"{name}.png", dpi=80)
    return figure


# %% [markdown]
# ## The data
#
# `load_music()` reads the book's `musicdata.csv`: from a path you give, from the file named by
# `BAYESMIX_MUSIC_CSV`, or downloaded once from the book's repository into `~/.cache/bayesmix`.

# %%
music = load_music()
print(f"{len(music)} diaries of {music['id'].nunique()} musicians")
print(music.groupby("perform_type")["na"].describe().round(2))
assert len(music) == 497 and music["id"].nunique() == 37

# %% [markdown]
# ## Model 1: a random intercept per musician
#
# $na_{ij} = \beta_0 + \beta_1 \text{Small}_{ij} + \beta_2 \text{Solo}_{ij} + u_i + \varepsilon_{ij}$,
# with $u_i \sim N(0, \sigma_u^2)$ and $\varepsilon_{ij} \sim N(0, \sigma^2)$.

# %%
model1 = bm.Model("na ~ perform_type + (1 | id)", music)
reml1 = model1.fit_reml()
print(reml1.summary())

# %% [markdown]
# The estimates are lme4's (`lmer(na ~ perform_type + (1 | id), music)`), to the printed digits.
# The intraclass correlation σ_u² / (σ_u² + σ²) is the correlation of two diary entries of
# one musician.

# %%
np.testing.assert_allclose(reml1.fixef(), MUSIC_REML_INTERCEPT["beta"], atol=5e-5)
np.testing.assert_allclose(reml1.std_errors(), MUSIC_REML_INTERCEPT["se"], atol=5e-5)
sd_u1 = reml1.varcorr().set_index("group").loc["id", "sdcor"]
assert abs(sd_u1 - MUSIC_REML_INTERCEPT["sd"][0]) < 5e-5 and abs(reml1.sigma - MUSIC_REML_INTERCEPT["sigma"]) < 5e-5
assert abs(reml1.criterion - MUSIC_REML_INTERCEPT["criterion"]) < 5e-4
icc = sd_u1**2 / (sd_u1**2 + reml1.sigma**2)
icc_lme4 = MUSIC_REML_INTERCEPT["sd"][0] ** 2 / (MUSIC_REML_INTERCEPT["sd"][0] ** 2 + MUSIC_REML_INTERCEPT["sigma"] ** 2)
print(f"intraclass correlation: {icc:.3f}")
assert abs(icc - icc_lme4) < 1e-4

# %% [markdown]
# ## Model 2: musicians differ in how they react to the type of performance
#
# Each musician gets three effects $(u_{0i}, u_{1i}, u_{2i}) \sim N(0, \Sigma)$ on the
# intercept, the Small Ensemble and the Solo effect, with SDs σ₀, σ₁, σ₂ and correlations ρ.
# REML puts this fit on the boundary: Σ is singular (a warning says so, as lme4's
# `boundary (singular) fit` does).

# %%
model2 = bm.Model("na ~ perform_type + (perform_type | id)", music)
reml2 = model2.fit_reml()
print(reml2.summary())  # in a notebook, `reml2.summary()` alone displays it as an HTML table

# %%
varcorr = reml2.varcorr()
sds = varcorr.query("group == 'id' and var2.isna()")["sdcor"].to_numpy()
cors = varcorr.query("var2.notna()")["sdcor"].to_numpy()
reference_cors = [MUSIC_REML["corr"][0][1], MUSIC_REML["corr"][0][2], MUSIC_REML["corr"][1][2]]
np.testing.assert_allclose(reml2.fixef(), MUSIC_REML["beta"], atol=5e-5)  # 15.0503, 0.6996, 2.0134
np.testing.assert_allclose(sds, MUSIC_REML["sd"], atol=5e-5)  # 1.9966, 1.4208, 1.0085
np.testing.assert_allclose(cors, reference_cors, atol=5e-5)  # -0.4272, 0.7434, 0.2871
assert abs(reml2.sigma - MUSIC_REML["sigma"]) < 5e-5  # 4.6138
assert abs(reml2.criterion - MUSIC_REML["criterion"]) < 5e-4
assert reml2.singular

# %% [markdown]
# ## The same model, sampled: a posterior for β, the SDs, ρ and σ
#
# The default priors are weakly informative and scaled to the data (see the priors page);
# the correlation matrix gets an LKJ(2) prior. The random effects are integrated out while
# sampling and drawn exactly afterwards.

# %%
post = model2.sample(draws=DRAWS, tune=DRAWS, chains=CHAINS, seed=1, progressbar=not QUICK)
post

# %%
diagnostics = post.diagnostics()
print(diagnostics)
assert diagnostics["divergences"] == 0 and diagnostics["max_rhat"] < 1.02
table = bm.compare(reml2, post)
print(table.round(3).to_string())

# %% [markdown]
# Where the likelihood is informative (β and σ), the posterior mean sits next to the REML
# estimate. The correlations are another matter: REML reports values on the boundary of
# the parameter space, while the posterior says the data barely inform ρ (wide intervals that
# contain 0). The musicians' SDs have right-skewed posteriors.

# %%
location = ["Intercept", "perform_type[Small Ensemble]", "perform_type[Solo]", "sigma"]
gap = (table.loc[location, "mean"] - table.loc[location, "reml"]).abs() / table.loc[location, "sd"]
assert table.loc[location, "reml_in_ci"].all() and (gap < 0.5).all(), gap
correlations = table[table.index.str.startswith("cor(")]
assert correlations["boundary"].all()  # REML: a singular covariance matrix
assert ((correlations["ci_lb"] < 0) & (correlations["ci_ub"] > 0)).all() and (correlations["sd"] > 0.25).all()

# %% [markdown]
# Musician 1's coefficients: the fixed effects plus the musician's own effects.

# %%
print(pd.DataFrame({"REML": reml2.coef().loc[1], "posterior mean": post.coef().loc[1]}).round(3))

# %% [markdown]
# ## Musician 1 before a solo
#
# The predicted negative affect is the intercept plus the Solo effect, each with musician 1's
# own random effects. `predict` takes a data frame of new rows.

# %%
solo = pd.DataFrame({"perform_type": ["Solo"], "id": [1]})
reml_solo = reml2.predict(solo).iloc[0]
prediction = post.predict(solo, seed=1)
mu = prediction.mu.values.ravel()
print(f"REML: {reml_solo:.2f}; posterior mean {prediction.mean.iloc[0]:.2f}, "
      f"95% interval of the mean {np.quantile(mu, 0.025):.2f} to {np.quantile(mu, 0.975):.2f}, "
      f"of a new diary entry {prediction.interval().iloc[0]['lower']:.2f} to {prediction.interval().iloc[0]['upper']:.2f}")
coef1 = reml2.coef().loc[1]
assert abs(reml_solo - (coef1["Intercept"] + coef1["perform_type[Solo]"])) < 1e-10
assert abs(reml_solo - MUSIC_REML["musician_1_solo"]) < 1e-3  # lme4: 13.0346
assert abs(prediction.mean.iloc[0] - reml_solo) < 0.5 * mu.std()
assert np.quantile(mu, 0.025) < reml_solo < np.quantile(mu, 0.975)

# %% [markdown]
# A musician not in the study gets effects drawn from the fitted population, N(0, Σ): a wider
# interval around the population mean β₀ + β₂.

# %%
newcomer = pd.DataFrame({"perform_type": ["Solo"], "id": [999]})
print(reml2.predict(newcomer, allow_new_levels=True))
print(post.predict(newcomer, new_levels="sample", seed=1).interval())
assert abs(reml2.predict(newcomer, allow_new_levels=True).iloc[0] - sum(reml2.fixef()[["Intercept", "perform_type[Solo]"]])) < 1e-10

# %% [markdown]
# ## Checking the assumptions: QQ plots
#
# Residuals and each column of random effects should look normal. The residuals bend away from
# the line at the top: negative affect is skewed to the right (it has a floor at 10).

# %%
qq = show(bm.qq_plot(reml2), "music_qq_reml")
assert [ax.get_title() for ax in qq.axes if ax.get_visible()] == [
    "residuals", "id: Intercept", "id: perform_type[Small Ensemble]", "id: perform_type[Solo]"
]
residuals = reml2.residuals()
print(f"skewness of the residuals: {stats.skew(residuals):.2f}")
assert stats.skew(residuals) > 0.5
qq

# %%
show(bm.qq_plot(post), "music_qq_posterior")

# %% [markdown]
# ## Posterior predictive check
#
# Data sets replicated from the posterior reproduce the mean, the spread and the spread of the
# musicians' means, but not the floor: replicated minima fall far below the observed 10.

# %%
check = post.ppc(seed=1)
print(check.round(3))
assert (check.loc[["mean", "sd", "sd of id means"], "p_value"].between(0.05, 0.95)).all()
assert check.loc["min", "p_value"] < 0.01 and check.loc["min", "observed"] == 10
show(bm.plot_ppc(post, seed=1), "music_ppc")

# %% [markdown]
# ## Which model? Leave-one-out cross-validation and the likelihood-ratio test
#
# Both criteria say the same: the random slopes do not buy a better fit. PSIS-LOO estimates
# each model's expected log predictive density (elpd); the difference is within its standard
# error. The likelihood-ratio test refits both models by ML, as lme4's `anova()` does (the
# χ² p-value is conservative for variances on the boundary).

# %%
post1 = model1.sample(draws=DRAWS, tune=DRAWS, chains=CHAINS, seed=1, progressbar=not QUICK)
loo1, loo2 = post1.loo(), post.loo()
print(loo2)
loo_table = az.compare({"random intercept": loo1, "random slopes": loo2}, round_to="none")
print(loo_table[["rank", "elpd", "p", "elpd_diff", "dse", "weight"]].round(2))
# PSIS is reliable when the Pareto k of (nearly) every observation is below ArviZ's threshold
# (0.64 for 600 draws, 0.7 for more); a single diary entry above it happens in short runs.
for result in (loo1, loo2):
    k = result.pareto_k.values
    assert (k < 1).all() and np.mean(k >= result.good_k) <= 0.01
elpd_diff, diff_se = loo_table["elpd_diff"].iloc[1], loo_table["dse"].iloc[1]
assert abs(abs(elpd_diff) - abs(loo1.elpd - loo2.elpd)) < 1e-8
assert abs(elpd_diff) < 2 * diff_se

# %%
lrt = bm.likelihood_ratio_test(reml1, reml2)
print(lrt.to_string())
assert list(lrt["npar"]) == [5, 10] and lrt["Df"].iloc[1] == 5
assert abs(lrt["deviance"].iloc[1] - MUSIC_ML_DEVIANCE) < 5e-4  # lme4's ML deviance of model 2
assert abs(lrt["p_value"].iloc[1] - stats.chi2.sf(lrt["Chisq"].iloc[1], 5)) < 1e-12
assert lrt["p_value"].iloc[1] > 0.05
print("music_anxiety: all checks passed")
