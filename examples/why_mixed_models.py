# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # Why mixed models? A simulation
#
# Observations come in groups (musicians, schools, patients) and each group has its own
# level u_j:
#
# $y_{ij} = \beta_0 + \beta_1 x_{ij} + u_j + \varepsilon_{ij}$, with
# $u_j \sim N(0, \sigma_u^2)$ and $\varepsilon_{ij} \sim N(0, 1)$.
#
# The predictor varies within and between groups: $x_{ij} = b_j + w_{ij}$, where the group
# part b_j has correlation ρ with the group effect u_j. Three ways to estimate β₁:
#
# - **least squares ignoring the groups** (OLS);
# - **fixed effects per group** (a dummy per group, i.e. the *within* estimator: only the
#   variation of x inside groups is used);
# - **the mixed model** `y ~ x + (1 | g)` fitted by REML, which weighs the within and the
#   between information by the estimated σ_u².
#
# We repeat the experiment many times for growing σ_u², once with x unrelated to the group
# effect (ρ = 0) and once with x correlated with it (ρ = 0.6), and look at the bias and the
# spread of β̂₁ and at how often the nominal 95% interval covers the truth.
#
# `BAYESMIX_EXAMPLES_QUICK=1` runs 150 replicates per setting instead of 1000. Every
# assertion allows for the Monte Carlo error of that many replicates (4 Monte Carlo SEs).

# %%
import itertools
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

import bayesmix as bm

QUICK = os.environ.get("BAYESMIX_EXAMPLES_QUICK") == "1"
OUT = os.environ.get("BAYESMIX_EXAMPLES_OUT")
REPLICATES = 150 if QUICK else 1000
GROUPS, SIZE = 30, 6  # 30 groups of 6 observations
BETA = (1.0, 0.5)
SD_BETWEEN, SD_WITHIN = 1.0, 1.0  # SDs of the group part b_j and the within part w_ij of x
VARIANCES = (0.0, 0.5, 2.0, 8.0)  # sigma_u^2; the residual variance is 1
RHOS = (0.0, 0.6)
Z = 1.959964  # 97.5% normal quantile
group = np.repeat(np.arange(GROUPS), SIZE)


def simulate(rng, var_u, rho):
    """One data set: x correlated rho with the group effect through its group part."""
    z, xi = rng.standard_normal(GROUPS), rng.standard_normal(GROUPS)
    u = np.sqrt(var_u) * z
    b = SD_BETWEEN * (rho * z + np.sqrt(1 - rho**2) * xi)
    x = b[group] + SD_WITHIN * rng.standard_normal(GROUPS * SIZE)
    y = BETA[0] + BETA[1] * x + u[group] + rng.standard_normal(GROUPS * SIZE)
    return pd.DataFrame({"y": y, "x": x, "g": group})


def ols(data):
    """Least squares ignoring the groups: slope and its usual (iid) standard error."""
    X = np.column_stack([np.ones(len(data)), data["x"]])
    coef, rss = np.linalg.lstsq(X, data["y"], rcond=None)[:2]
    s2 = rss[0] / (len(data) - 2)
    return coef[1], np.sqrt(s2 * np.linalg.inv(X.T @ X)[1, 1])


def within(data):
    """Fixed effects per group: least squares on the deviations from the group means."""
    centred = data[["x", "y"]] - data.groupby("g")[["x", "y"]].transform("mean")
    sxx = (centred["x"] ** 2).sum()
    slope = (centred["x"] * centred["y"]).sum() / sxx
    rss = ((centred["y"] - slope * centred["x"]) ** 2).sum()
    return slope, np.sqrt(rss / (len(data) - GROUPS - 1) / sxx)


def mixed(data):
    """REML fit of the random-intercept model."""
    fit = bm.Model("y ~ x + (1 | g)", data).fit_reml()
    return fit.fixef()["x"], fit.std_errors()["x"]


ESTIMATORS = {"least squares": ols, "fixed effects": within, "mixed model": mixed}

# %% [markdown]
# ## The experiment
#
# With σ_u² = 0 some REML fits end on the boundary (σ̂_u = 0) and warn that they are
# singular; here that is expected, so the warning is silenced.

# %%
rows = []
rng = np.random.default_rng(20240601)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", bm.ConvergenceWarning)
    for rho in RHOS:
        for var_u in VARIANCES:
            for _ in range(REPLICATES):
                data = simulate(rng, var_u, rho)
                for name, estimator in ESTIMATORS.items():
                    estimate, se = estimator(data)
                    rows.append((rho, var_u, name, estimate, se))
draws = pd.DataFrame(rows, columns=["rho", "var_u", "estimator", "estimate", "se"])
draws["covers"] = (draws["estimate"] - BETA[1]).abs() <= Z * draws["se"]

results = draws.groupby(["rho", "var_u", "estimator"]).agg(
    bias=("estimate", lambda e: e.mean() - BETA[1]),
    sd=("estimate", "std"),
    coverage=("covers", "mean"),
)
results["bias_se"] = results["sd"] / np.sqrt(REPLICATES)  # Monte Carlo SE of the bias
results["var"] = results["sd"] ** 2
results["var_se"] = results["var"] * np.sqrt(2 / (REPLICATES - 1))  # of a normal sample variance
results["coverage_se"] = np.sqrt(0.95 * 0.05 / REPLICATES)
print(results[["bias", "bias_se", "sd", "coverage"]].round(3).to_string())

# %% [markdown]
# ## The picture

# %%
def plot(results):
    figure = Figure(figsize=(12, 6.5), layout="constrained")
    axes = figure.subplots(len(RHOS), 3, squeeze=False)
    for row, rho in zip(axes, RHOS):
        for name in ESTIMATORS:
            r = results.loc[(rho, slice(None), name)]
            v = r.index.get_level_values("var_u")
            row[0].errorbar(v, r["bias"], yerr=2 * r["bias_se"], marker="o", capsize=3, label=name)
            row[1].plot(v, r["sd"], marker="o", label=name)
            row[2].errorbar(v, r["coverage"], yerr=2 * r["coverage_se"], marker="o", capsize=3, label=name)
        row[0].axhline(0, color="0.5", lw=0.8)
        row[2].axhline(0.95, color="0.5", lw=0.8)
        row[0].set(title=f"bias of the slope (ρ = {rho})", xlabel="σ_u²")
        row[1].set(title=f"SD of the slope (ρ = {rho})", xlabel="σ_u²")
        row[2].set(title=f"coverage of the 95% interval (ρ = {rho})", xlabel="σ_u²", ylim=(0, 1.02))
    axes[0, 0].legend()
    return figure


figure = plot(results)
if OUT:
    Path(OUT).mkdir(parents=True, exist_ok=True)
    figure.savefig(Path(OUT) / "why_mixed_models.png", dpi=80)
figure

# %% [markdown]
# ## What the simulation shows
#
# **The fixed-effects (within) estimator is unbiased** whatever σ_u² and ρ: group dummies absorb
# every group effect, correlated with x or not.

# %%
def row(rho, var_u, name):
    return results.loc[(rho, var_u, name)]


for rho in RHOS:
    for var_u in VARIANCES:
        r = row(rho, var_u, "fixed effects")
        assert abs(r["bias"]) < 4 * r["bias_se"], (rho, var_u, r["bias"])

# %% [markdown]
# **Least squares ignoring the groups is biased when x is correlated with the group effect,
# and the bias grows with σ_u²** (here by about ρ σ_u SD_b / Var(x)): the group effect hides
# in the error term and x takes credit for it.

# %%
ols_bias = [row(0.6, v, "least squares") for v in VARIANCES]
for smaller, larger in itertools.pairwise(ols_bias):
    assert larger["bias"] - smaller["bias"] > 4 * np.hypot(larger["bias_se"], smaller["bias_se"])
assert ols_bias[-1]["bias"] > 4 * ols_bias[-1]["bias_se"]
expected = 0.6 * np.sqrt(VARIANCES[-1]) * SD_BETWEEN / (SD_BETWEEN**2 + SD_WITHIN**2)
assert abs(ols_bias[-1]["bias"] - expected) < 4 * ols_bias[-1]["bias_se"] + 0.05 * expected

# %% [markdown]
# **When x is unrelated to the group effect, least squares is unbiased, but inefficient and
# with a wrong standard error**: it weighs every observation equally although observations of
# one group share their u_j, so its slope varies much more than the mixed model's once σ_u² is
# large; and it treats the 180 observations as independent, so its intervals are too narrow
# and cover the truth far less often than 95%. The mixed model's intervals keep their coverage.

# %%
for var_u in VARIANCES:
    r = row(0.0, var_u, "least squares")
    assert abs(r["bias"]) < 4 * r["bias_se"]
ols_large, mixed_large = row(0.0, VARIANCES[-1], "least squares"), row(0.0, VARIANCES[-1], "mixed model")
assert ols_large["var"] - mixed_large["var"] > 4 * np.hypot(ols_large["var_se"], mixed_large["var_se"])
assert ols_large["coverage"] < 0.95 - 4 * ols_large["coverage_se"]
assert abs(mixed_large["coverage"] - 0.95) < 4 * mixed_large["coverage_se"]

# %% [markdown]
# **The mixed model uses the between-group variation of x as well**, so its slope varies less
# than the fixed-effects slope, most clearly when σ_u² is small (then the group means carry
# much information about β₁). As σ_u² grows, the mixed model gives the group means less weight
# and approaches the within estimator. With ρ = 0 it is unbiased; with ρ = 0.6 it inherits a
# bias from the between-group part, much smaller than least squares' and shrinking again as
# σ_u² grows.

# %%
for rho in RHOS:
    for var_u in VARIANCES:
        m, f = row(rho, var_u, "mixed model"), row(rho, var_u, "fixed effects")
        assert m["var"] <= f["var"] + 4 * np.hypot(m["var_se"], f["var_se"]), (rho, var_u)
for rho in RHOS:
    m, f = row(rho, 0.0, "mixed model"), row(rho, 0.0, "fixed effects")
    assert f["var"] - m["var"] > 4 * np.hypot(m["var_se"], f["var_se"])
for var_u in VARIANCES:
    r = row(0.0, var_u, "mixed model")
    assert abs(r["bias"]) < 4 * r["bias_se"]
for var_u in VARIANCES[1:]:
    m, o = row(0.6, var_u, "mixed model"), row(0.6, var_u, "least squares")
    assert o["bias"] - m["bias"] > 4 * np.hypot(m["bias_se"], o["bias_se"])
mixed_bias = results.xs((0.6, "mixed model"), level=("rho", "estimator"))
peak, largest = mixed_bias.loc[mixed_bias["bias"].idxmax()], mixed_bias.loc[VARIANCES[-1]]
assert peak["bias"] - largest["bias"] > 4 * np.hypot(peak["bias_se"], largest["bias_se"])
print("why_mixed_models: all checks passed")
