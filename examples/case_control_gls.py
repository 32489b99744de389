# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
# ---

# %% [markdown]
# # What the mixed model's estimate is: a weighted difference of group means
#
# In a case-control design every group (a family, a clinic, a musician) is either a case or a
# control, so the predictor `case` is constant within a group:
#
# $y_{ij} = \beta_0 + \beta_1 \text{case}_j + u_j + \varepsilon_{ij}$, with
# $u_j \sim N(0, \sigma_u^2)$, $\varepsilon_{ij} \sim N(0, \sigma^2)$, group sizes $n_j$.
#
# The mean of group j, $\bar y_j$, has variance $\sigma_u^2 + \sigma^2 / n_j$, and the group
# means are independent. For known variances the GLS estimate of β₁ is therefore the
# difference of two *weighted* averages of group means,
#
# $\hat\beta_1 = \frac{\sum_{cases} w_j \bar y_j}{\sum_{cases} w_j} - \frac{\sum_{controls} w_j \bar y_j}{\sum_{controls} w_j}$,
# $\quad w_j = \frac{1}{\sigma_u^2 + \sigma^2/n_j} = \frac{n_j}{n_j \sigma_u^2 + \sigma^2}$,
#
# with variance $1/\sum_{cases} w_j + 1/\sum_{controls} w_j$. Least squares ignoring the groups
# weighs each group by its size n_j instead (σ_u² = 0); as σ_u² grows the weights become equal,
# and every group counts once whatever its size.
#
# The mixed model fitted by REML is this GLS estimate at the estimated variances. This
# notebook checks that to 1e-8, the standard error too.

# %%
import numpy as np
import pandas as pd

import bayesmix as bm

rng = np.random.default_rng(2024)
controls, cases = 15, 25
sizes = rng.integers(2, 16, size=controls + cases)  # unequal group sizes: the weights differ
group = np.repeat(np.arange(controls + cases), sizes)
case = (group >= controls).astype(float)
y = 10.0 + 1.5 * case + rng.normal(0, 1.2, controls + cases)[group] + rng.normal(0, 2.0, len(group))
data = pd.DataFrame({"y": y, "case": case, "g": group})
print(f"{controls} control and {cases} case groups, {len(data)} observations, sizes {sizes.min()} to {sizes.max()}")

# %% [markdown]
# ## The REML fit

# %%
fit = bm.Model("y ~ case + (1 | g)", data).fit_reml()
print(fit.summary())

# %% [markdown]
# ## The closed form at the fitted variances

# %%
means = data.groupby("g")["y"].mean().to_numpy()
is_case = np.arange(controls + cases) >= controls


def weighted_difference(var_u, var_e):
    """GLS estimate of beta_1 and its standard error for known variances."""
    w = sizes / (sizes * var_u + var_e)
    difference = np.average(means[is_case], weights=w[is_case]) - np.average(means[~is_case], weights=w[~is_case])
    return difference, np.sqrt(1 / w[is_case].sum() + 1 / w[~is_case].sum())


def variances(fit):
    table = fit.varcorr().set_index("group")["vcov"]
    return table["g"], table["Residual"]


var_u, var_e = variances(fit)
beta1, se1 = weighted_difference(var_u, var_e)
print(f"REML:        beta_1 = {fit.fixef()['case']:.10f}, SE = {fit.std_errors()['case']:.10f}")
print(f"closed form: beta_1 = {beta1:.10f}, SE = {se1:.10f}")
assert abs(fit.fixef()["case"] - beta1) < 1e-8
assert abs(fit.std_errors()["case"] - se1) < 1e-8

# %% [markdown]
# The intercept is the weighted mean of the control groups, by the same weights.

# %%
w = sizes / (sizes * var_u + var_e)
assert abs(fit.fixef()["Intercept"] - np.average(means[~is_case], weights=w[~is_case])) < 1e-8

# %% [markdown]
# The identity does not depend on how the variances were estimated: the ML fit (smaller σ̂_u²)
# is the weighted difference at its own variances.

# %%
ml = bm.Model("y ~ case + (1 | g)", data).fit_ml()
ml_beta1, ml_se1 = weighted_difference(*variances(ml))
print(f"ML: beta_1 = {ml.fixef()['case']:.6f} (closed form {ml_beta1:.6f})")
assert abs(ml.fixef()["case"] - ml_beta1) < 1e-8 and abs(ml.std_errors()["case"] - ml_se1) < 1e-8
assert variances(ml)[0] < var_u

# %% [markdown]
# ## The two limits
#
# Least squares ignoring the groups is the size-weighted difference (σ_u² → 0); a very large
# σ_u² gives the plain difference of the averages of group means.

# %%
X = np.column_stack([np.ones(len(data)), data["case"]])
ols = np.linalg.lstsq(X, data["y"], rcond=None)[0][1]
by_size = np.average(means[is_case], weights=sizes[is_case]) - np.average(means[~is_case], weights=sizes[~is_case])
unweighted = means[is_case].mean() - means[~is_case].mean()
table = pd.DataFrame(
    {"beta_1": [ols, beta1, unweighted]},
    index=["least squares (weights n_j)", "mixed model, REML (weights n_j / (n_j σ_u² + σ²))", "mean of group means (equal weights)"],
)
print(table.round(4))
assert abs(ols - by_size) < 1e-10
assert abs(weighted_difference(0.0, var_e)[0] - ols) < 1e-10
assert abs(weighted_difference(1e12, var_e)[0] - unweighted) < 1e-8
print("case_control_gls: all checks passed")
