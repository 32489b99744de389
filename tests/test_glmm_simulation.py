"""GLMM fits against simulation truth: the Wald intervals of the fixed effects cover the truth at
the nominal rate over repeated simulations, and the random-effect SDs are recovered.

Each test simulates R independent data sets from a known model with a fixed seed, fits each by
``fit_ml()`` (the Laplace approximation) and counts how often the 95 % Wald interval
β̂ ± z₀.₉₇₅ SE(β̂) contains the true β. If the intervals have their nominal coverage, the count
for each fixed effect is Binomial(R, 0.95); an exact two-sided binomial test (scipy's
``binomtest``) at level 0.001 then rejects a correct fit with probability at most 0.001 per
coefficient. At R = 200 it accepts 179 to 198 intervals that cover; SEs 25 % too small
(coverage 0.86) are rejected with probability 0.92, a bias of half an SE (coverage 0.92) only
with probability 0.07: it checks the calibration of the intervals, not small biases. (At these
seeds the intervals cover 187 and 192 times of 200 for the binomial, 195 and 190 for the Poisson.)

The random-effect SDs are compared by the mean of their R estimates. Maximum likelihood
estimates a variance component from G groups with a downward bias of order 1/G (in the balanced
one-way linear model E σ̂²_ML = σ² − (σ² + σ_e²/m)/G, and the square root subtracts about
Var(σ̂²)/(8σ³) more; the Laplace approximation adds a little for binary data with few rows per
group, which these designs avoid: ten trials per row, eight rows per group). So the mean SD may
fall short of the truth by at most 2/G of it (3.3 % at G = 60; the observed shortfall is 2-3 %)
plus three Monte Carlo standard errors (SD of the estimates / √R), and exceed it by at most the
three Monte Carlo standard errors. The correlation is compared within three Monte Carlo
standard errors.

Both tests fail for a wrong truth (checked by hand on the same fits: a binomial slope of 1.1
instead of 1.0 is covered 140 times, an intercept of -0.6 instead of -0.5 166 times; an intercept
SD of 0.9 instead of 0.8, a slope SD of 0.55 instead of 0.5, a correlation of 0.45 instead of
0.3, a Poisson slope of 0.53 instead of 0.5 or SD of 0.66 instead of 0.6 each fail).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

import bayesmix as bm

GROUPS, ROWS_PER_GROUP, TRIALS = 60, 8, 10
REPLICATES = 200
Z = stats.norm.ppf(0.975)

BINOMIAL = {"beta": {"Intercept": -0.5, "x": 1.0}, "sd": {"Intercept": 0.8, "x": 0.5}, "cor": 0.3}
POISSON = {"beta": {"Intercept": 0.3, "x": 0.5}, "sd": {"Intercept": 0.6}}


def simulate_binomial(rng: np.random.Generator) -> pd.DataFrame:
    """Successes out of TRIALS per row, logit(p) = β₀ + b₀ + (β₁ + b₁) x with (b₀, b₁) correlated."""
    sd = np.array(list(BINOMIAL["sd"].values()))
    corr = np.array([[1.0, BINOMIAL["cor"]], [BINOMIAL["cor"], 1.0]])
    b = rng.multivariate_normal(np.zeros(2), corr * np.outer(sd, sd), size=GROUPS)
    g = np.repeat(np.arange(GROUPS), ROWS_PER_GROUP)
    x = rng.normal(size=len(g))
    beta = BINOMIAL["beta"]
    eta = beta["Intercept"] + b[g, 0] + (beta["x"] + b[g, 1]) * x
    return pd.DataFrame({"s": rng.binomial(TRIALS, special.expit(eta)), "n": TRIALS, "x": x, "g": g})


def simulate_poisson(rng: np.random.Generator) -> pd.DataFrame:
    """Counts over an exposure t: log μ = log t + β₀ + β₁ x + b₀."""
    g = np.repeat(np.arange(GROUPS), ROWS_PER_GROUP)
    x = rng.normal(size=len(g))
    t = rng.uniform(0.5, 5.0, size=len(g))
    beta = POISSON["beta"]
    eta = np.log(t) + beta["Intercept"] + beta["x"] * x + rng.normal(0.0, POISSON["sd"]["Intercept"], GROUPS)[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "t": t, "g": g})


def replicate(simulate, formula: str, family: str, seed: int) -> dict[str, pd.DataFrame]:
    """Fit REPLICATES simulated data sets; the estimates, SEs and variance components of each."""
    rng = np.random.default_rng(seed)
    estimates, errors, components = [], [], []
    for _ in range(REPLICATES):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.ConvergenceWarning)  # an occasional singular fit is part of the sample
            fit = bm.Model(formula, simulate(rng), family).fit_ml()
        estimates.append(fit.fixef())
        errors.append(fit.std_errors())
        table = fit.varcorr()
        components.append(pd.Series(table["sdcor"].to_numpy(), index=[
            f"sd({a})" if pd.isna(b) else f"cor({a}, {b})" for a, b in zip(table["var1"], table["var2"])]))
    return {name: pd.DataFrame(rows).reset_index(drop=True)
            for name, rows in (("estimate", estimates), ("std_error", errors), ("components", components))}


def assert_wald_coverage(fits: dict[str, pd.DataFrame], beta: dict[str, float]) -> None:
    truth = pd.Series(beta)
    covered = ((fits["estimate"] - truth).abs() <= Z * fits["std_error"]).sum()
    for name, count in covered.items():
        p_value = stats.binomtest(int(count), REPLICATES, 0.95).pvalue
        assert p_value > 1e-3, f"{name}: the 95% Wald interval covered the truth in {count} of {REPLICATES} fits"


def assert_components_recovered(fits: dict[str, pd.DataFrame], truth: dict[str, float]) -> None:
    components = fits["components"]
    for name, value in truth.items():
        draws = components[name]
        monte_carlo = 3 * draws.std() / np.sqrt(REPLICATES)
        allowance = 2 / GROUPS * value if name.startswith("sd(") else 0.0  # ML's downward O(1/G) bias
        assert value - allowance - monte_carlo <= draws.mean() <= value + monte_carlo, (
            f"{name}: mean estimate {draws.mean():.4f}, truth {value}, Monte Carlo error {monte_carlo:.4f}")


@pytest.mark.slow  # 200 binomial fits with a correlated random slope
def test_binomial_with_a_correlated_random_slope_recovers_the_truth():
    fits = replicate(simulate_binomial, "cbind(s, n - s) ~ x + (x | g)", "binomial", seed=7)
    assert_wald_coverage(fits, BINOMIAL["beta"])
    assert_components_recovered(fits, {f"sd({k})": v for k, v in BINOMIAL["sd"].items()}
                                | {"cor(Intercept, x)": BINOMIAL["cor"]})


@pytest.mark.slow  # 200 Poisson fits
def test_poisson_with_an_offset_recovers_the_truth():
    fits = replicate(simulate_poisson, "y ~ x + offset(log(t)) + (1 | g)", "poisson", seed=11)
    assert_wald_coverage(fits, POISSON["beta"])
    assert_components_recovered(fits, {f"sd({k})": v for k, v in POISSON["sd"].items()})
