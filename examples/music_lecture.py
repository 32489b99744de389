# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The lecture in a notebook: music performance anxiety
#
# 37 musicians kept diaries of their negative affect `na` before 497 performances of three
# types: Large Ensemble (the baseline), Small Ensemble and Solo (Sadler and Miller 2010; Roback
# and Legler, *Beyond Multiple Linear Regression*, chapter 8). The lecture's model gives each
# musician an own baseline and own reactions to the performance types, correlated within a
# musician:
#
# $$na_{ij} = (\beta_0 + u_{0i}) + (\beta_1 + u_{1i})\,\text{Small}_{ij} + (\beta_2 + u_{2i})\,\text{Solo}_{ij}
#   + \varepsilon_{ij},\qquad u_i \sim N(0, \Sigma_u),\ \varepsilon_{ij} \sim N(0, \sigma^2)$$
#
# In lme4's notation: `na ~ perform_type + (perform_type | id)`. This notebook fits it by REML
# and by NUTS and reads off β, the SDs σ_u, the correlations ρ and each musician's coefficients.
# It is `examples/music_lecture.ipynb`, paired by jupytext with the script
# `examples/music_lecture.py`; the sampler draws little (2 chains x 300 draws) so that it runs
# in seconds. Draw more (the defaults) for numbers to report.

# %%
import warnings

import pandas as pd

import bayesmix as bm
from bayesmix.datasets import MUSIC_REML, load_music

# %% [markdown]
# ## The data
#
# `load_music()` reads the book's `musicdata.csv`: from a path you give, from the file named by
# `BAYESMIX_MUSIC_CSV`, or downloaded once into `~/.cache/bayesmix`.

# %%
music = load_music()
assert len(music) == 497 and music["id"].nunique() == 37
music.groupby("perform_type")["na"].describe().round(2)

# %% [markdown]
# ## The REML fit
#
# `fit_reml()` is lme4's `lmer`: the same estimates to the digits lme4 prints. The fit is
# singular (the correlations sit on the boundary of their space), and says so in a warning.

# %%
model = bm.Model("na ~ perform_type + (perform_type | id)", music)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", bm.ConvergenceWarning)  # the singular fit, discussed below
    reml = model.fit_reml()
reml

# %% [markdown]
# β, the SDs σ_u and the correlations ρ of the musicians' effects, and σ, as lme4 reports them:

# %%
print("beta:", reml.fixef().round(3).to_dict())
reml.varcorr()

# %%
assert abs(reml.fixef()["perform_type[Solo]"] - MUSIC_REML["beta"][2]) < 1e-3

# %% [markdown]
# ## The posterior
#
# `sample()` runs NUTS with weakly informative priors scaled to the data and an LKJ(2) prior on
# the correlation matrix. The random effects are integrated out while sampling and drawn
# exactly afterwards.

# %%
with warnings.catch_warnings():
    warnings.simplefilter("ignore", bm.ConvergenceWarning)  # few draws: low ESS is expected
    post = model.sample(draws=300, tune=300, chains=2, seed=1, progressbar=False)
post

# %% [markdown]
# ## REML beside the posterior
#
# `compare()` puts each REML estimate beside the posterior mean, SD and 95 % interval. β and σ
# agree; the correlations that REML puts on the boundary get wide posteriors containing 0: the
# data barely inform them.

# %%
table = bm.compare(reml, post)
assert table.loc[["Intercept", "perform_type[Solo]", "sigma"], "reml_in_ci"].all()
table.round(2)

# %% [markdown]
# ## The chains
#
# A rank plot: each chain's ranks among all draws should be uniform (flat bars) when the
# chains mix.

# %%
bm.plot_rank(post, var_names=["beta", "sd_id", "sigma"])

# %% [markdown]
# ## Each musician's coefficients
#
# `coef()` is lme4's `coef`: the fixed effects plus each musician's own effects (REML: the
# conditional modes; posterior: the posterior means).

# %%
coefficients = pd.concat({"REML": reml.coef().head(), "posterior": post.coef().head()}, axis=1)
assert (reml.coef().loc[1] - reml.fixef() - reml.ranef().loc[1]).abs().max() < 1e-10
coefficients.round(2)

# %% [markdown]
# The musicians' effects with their intervals, sorted (a caterpillar plot):

# %%
bm.plot_ranef(post)

# %% [markdown]
# ## Conditional effects
#
# The expected negative affect for each performance type, the musician's effects set to 0,
# with 95 % intervals (brms's `conditional_effects`):

# %%
bm.plot_conditional_effects(post)

# %%
print("music_lecture: all checks passed")
