"""Simulation-based calibration (Talts et al. 2018) of the Bayesian samplers on small models.

Each replication draws parameters from the prior, simulates data from them, samples the
posterior and records the rank of each true parameter among thinned posterior draws. When
the sampler is calibrated the ranks are uniform; a chi-square test over 10 bins per parameter
checks that, and a Bonferroni correction over a case's parameters bounds the chance of a
false alarm at the stated level. Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/sbc.py --case gaussian|gaussian-crossed|gaussian-nested|gaussian-nested-slope|binomial-slope|poisson-crossed|poisson-olre|poisson-counts \
        [--replications 200] [--method auto|full|collapsed|gibbs|...] [--draws 500] [--tune 500]

``--method`` is passed to ``BayesModel(..., method=...)`` as it is (the library checks it).
Every case states its priors and draws its parameters exactly from them:

- ``gaussian``: ``y ~ x + (x | g)``, 20 groups x 6 rows; Intercept, b ~ Normal(0, 1),
  sd ~ HalfNormal(1), LKJ(2), sigma ~ HalfNormal(1).
- ``gaussian-crossed``: ``y ~ x + (1 | a) + (1 | b)``, the crossed design of ``poisson-crossed``
  (for ``--method collapsed``, the sampler of several grouping factors); Intercept, b ~ Normal(0, 1),
  sd ~ HalfNormal(1), sigma ~ HalfNormal(1).
- ``binomial-slope``: ``cbind(s, n - s) ~ x + (x | g)`` (logit), 20 groups x 5 rows of 5
  trials; Intercept, b ~ Normal(0, 1), sd ~ HalfNormal(1), LKJ(2).
- ``poisson-olre``: ``y ~ x + (1 | a) + (1 | a:b) + (1 | obs)`` (log), the cells of the crossed
  design nested in a and one level per row (for ``method="auto"``, the sampler collapsed onto the
  linear predictor); the priors of ``poisson-crossed``.
- ``poisson-counts``: ``y ~ x + (1 | g)`` (log), 15 groups x 6 rows, counts of about 20, where
  the Laplace approximation is good (for ``--method laplace``); Intercept ~ Normal(3, 0.3),
  b ~ Normal(0, 0.3), sd ~ HalfNormal(0.5).
- ``poisson-crossed``: ``y ~ x + (1 | a) + (1 | b)`` (log), 12 x 8 crossed levels, one row per
  cell plus 24 more at random cells; Intercept ~ Normal(1, 0.5), b ~ Normal(0, 0.5),
  sd ~ HalfNormal(0.7).

Prints a Markdown table for benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

import bayesmix as bm
from bayesmix.bayes import BayesModel

RANKS = 99  # thinned draws per replication: ranks 0..99, counted in 10 bins of 10
BINS = 10


@dataclass(frozen=True)
class Case:
    """A model whose parameters SBC draws from its priors.

    ``covariates(rng)`` gives the fixed part of the data (everything but the response);
    ``simulate(rng, data)`` gives the true parameters, named as :func:`parameters`
    names the posterior's, and a response drawn from them (in the design's units: for a
    binomial of ``cbind`` counts, the proportion of successes).
    """

    formula: str
    family: str
    priors: list
    covariates: Callable[[np.random.Generator], pd.DataFrame]
    simulate: Callable[[np.random.Generator, pd.DataFrame], tuple[dict, np.ndarray]]


def correlated_effects(rng, groups: int, sd: np.ndarray, rho: float) -> np.ndarray:
    """(groups, 2) effects of SDs ``sd`` and correlation ``rho``."""
    cov = np.outer(sd, sd) * np.array([[1.0, rho], [rho, 1.0]])
    return rng.multivariate_normal(np.zeros(2), cov, size=groups, method="eigh")


def intercept_of(data: pd.DataFrame, centred_intercept: float, slope: float) -> float:
    """The intercept whose prior is that of centred predictors (bayesmix's convention)."""
    return centred_intercept - slope * data["x"].mean()


def truth_slope_model(data, centred_intercept, slope, sd, rho, extra=None) -> dict:
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_g[Intercept]": sd[0], "sd_g[x]": sd[1], "cor_g[Intercept:x]": rho}
    return {**truth, **(extra or {})}


# ----- gaussian: y ~ x + (x | g) -----------------------------------------------------------
LKJ_ETA = 2.0


def gaussian_covariates(rng):
    g = np.repeat(np.arange(20), 6)
    return pd.DataFrame({"x": rng.normal(size=len(g)), "g": g})


def gaussian_simulate(rng, data):
    x, g = data["x"].to_numpy(), data["g"].to_numpy()
    centred_intercept, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 2))
    rho = 2 * rng.beta(LKJ_ETA, LKJ_ETA) - 1  # LKJ(eta) for a 2 x 2 correlation matrix
    sigma = abs(rng.normal(0, 1))
    u = correlated_effects(rng, g.max() + 1, sd, rho)
    truth = truth_slope_model(data, centred_intercept, slope, sd, rho, {"sigma": sigma})
    y = truth["beta[Intercept]"] + slope * x + u[g, 0] + u[g, 1] * x + rng.normal(0, sigma, len(x))
    return truth, y


# ----- binomial-slope: cbind(s, n - s) ~ x + (x | g) ---------------------------------------
TRIALS = 5


def binomial_covariates(rng):
    g = np.repeat(np.arange(20), 5)
    return pd.DataFrame({"x": rng.normal(size=len(g)), "g": g, "n": TRIALS})


def binomial_simulate(rng, data):
    x, g = data["x"].to_numpy(), data["g"].to_numpy()
    centred_intercept, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 2))
    rho = 2 * rng.beta(LKJ_ETA, LKJ_ETA) - 1
    u = correlated_effects(rng, g.max() + 1, sd, rho)
    truth = truth_slope_model(data, centred_intercept, slope, sd, rho)
    eta = truth["beta[Intercept]"] + slope * x + u[g, 0] + u[g, 1] * x
    successes = rng.binomial(TRIALS, 1.0 / (1.0 + np.exp(-eta)))
    return truth, successes / TRIALS


# ----- poisson-crossed: y ~ x + (1 | a) + (1 | b) ------------------------------------------
A_LEVELS, B_LEVELS, EXTRA_ROWS = 12, 8, 24
POISSON = {"Intercept": (1.0, 0.5), "b": (0.0, 0.5), "sd": 0.7}


def poisson_covariates(rng):
    a = np.concatenate([np.repeat(np.arange(A_LEVELS), B_LEVELS), rng.integers(0, A_LEVELS, EXTRA_ROWS)])
    b = np.concatenate([np.tile(np.arange(B_LEVELS), A_LEVELS), rng.integers(0, B_LEVELS, EXTRA_ROWS)])
    return pd.DataFrame({"x": rng.normal(size=len(a)), "a": a, "b": b})


def poisson_simulate(rng, data):
    x, a, b = (data[c].to_numpy() for c in ("x", "a", "b"))
    centred_intercept = rng.normal(*POISSON["Intercept"])
    slope = rng.normal(*POISSON["b"])
    sd = np.abs(rng.normal(0, POISSON["sd"], 2))
    u_a, u_b = rng.normal(0, sd[0], A_LEVELS), rng.normal(0, sd[1], B_LEVELS)
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_a[Intercept]": sd[0], "sd_b[Intercept]": sd[1]}
    y = rng.poisson(np.exp(truth["beta[Intercept]"] + slope * x + u_a[a] + u_b[b]))
    return truth, y.astype(float)


# ----- gaussian-crossed: y ~ x + (1 | a) + (1 | b) (the crossed design of poisson-crossed) --------


def gaussian_crossed_simulate(rng, data):
    x, a, b = (data[c].to_numpy() for c in ("x", "a", "b"))
    centred_intercept, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 2))
    sigma = abs(rng.normal(0, 1))
    u_a, u_b = rng.normal(0, sd[0], A_LEVELS), rng.normal(0, sd[1], B_LEVELS)
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_a[Intercept]": sd[0], "sd_b[Intercept]": sd[1], "sigma": sigma}
    y = truth["beta[Intercept]"] + slope * x + u_a[a] + u_b[b] + rng.normal(0, sigma, len(x))
    return truth, y


# ----- gaussian-nested: y ~ x + (1 | a) + (1 | a:b) (b's levels nested in a's: the cells of the crossed design) ----


def gaussian_nested_simulate(rng, data):
    x, a, b = (data[c].to_numpy() for c in ("x", "a", "b"))
    centred_intercept, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 2))
    sigma = abs(rng.normal(0, 1))
    u_a, u_ab = rng.normal(0, sd[0], A_LEVELS), rng.normal(0, sd[1], (A_LEVELS, B_LEVELS))
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_a[Intercept]": sd[0], "sd_a_b[Intercept]": sd[1], "sigma": sigma}
    y = truth["beta[Intercept]"] + slope * x + u_a[a] + u_ab[a, b] + rng.normal(0, sigma, len(x))
    return truth, y


# ----- gaussian-nested-slope: y ~ x + (x | a) + (1 | a:b) (a correlated slope on the outer factor) -----


def gaussian_nested_slope_simulate(rng, data):
    x, a, b = (data[c].to_numpy() for c in ("x", "a", "b"))
    centred_intercept, slope = rng.normal(0, 1, 2)
    sd = np.abs(rng.normal(0, 1, 3))
    rho = 2 * rng.beta(LKJ_ETA, LKJ_ETA) - 1  # LKJ(eta) for a 2 x 2 correlation matrix
    sigma = abs(rng.normal(0, 1))
    u = correlated_effects(rng, A_LEVELS, sd[:2], rho)
    u_ab = rng.normal(0, sd[2], (A_LEVELS, B_LEVELS))
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_a[Intercept]": sd[0], "sd_a[x]": sd[1], "cor_a[Intercept:x]": rho, "sd_a_b[Intercept]": sd[2],
             "sigma": sigma}
    y = truth["beta[Intercept]"] + slope * x + u[a, 0] + u[a, 1] * x + u_ab[a, b] + rng.normal(0, sigma, len(x))
    return truth, y


# ----- poisson-olre: y ~ x + (1 | a) + (1 | a:b) + (1 | obs) (nested factors and an observation-level effect) -----


def olre_covariates(rng):
    return poisson_covariates(rng).assign(obs=lambda d: np.arange(len(d)))


def olre_simulate(rng, data):
    x, a, b = (data[c].to_numpy() for c in ("x", "a", "b"))
    centred_intercept = rng.normal(*POISSON["Intercept"])
    slope = rng.normal(*POISSON["b"])
    sd = np.abs(rng.normal(0, POISSON["sd"], 3))
    u_a, u_ab, u_obs = rng.normal(0, sd[0], A_LEVELS), rng.normal(0, sd[1], (A_LEVELS, B_LEVELS)), rng.normal(0, sd[2], len(x))
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope,
             "sd_a[Intercept]": sd[0], "sd_a_b[Intercept]": sd[1], "sd_obs[Intercept]": sd[2]}
    y = rng.poisson(np.exp(truth["beta[Intercept]"] + slope * x + u_a[a] + u_ab[a, b] + u_obs))
    return truth, y.astype(float)


# ----- poisson-counts: y ~ x + (1 | g), counts of about 20 (the Laplace approximation is good) -------
COUNTS = {"groups": 15, "per_group": 6, "Intercept": (3.0, 0.3), "b": (0.0, 0.3), "sd": 0.5}


def counts_covariates(rng):
    g = np.repeat(np.arange(COUNTS["groups"]), COUNTS["per_group"])
    return pd.DataFrame({"x": rng.normal(size=len(g)), "g": g})


def counts_simulate(rng, data):
    x, g = data["x"].to_numpy(), data["g"].to_numpy()
    centred_intercept, slope = rng.normal(*COUNTS["Intercept"]), rng.normal(*COUNTS["b"])
    sd = abs(rng.normal(0, COUNTS["sd"]))
    truth = {"beta[Intercept]": intercept_of(data, centred_intercept, slope), "beta[x]": slope, "sd_g[Intercept]": sd}
    y = rng.poisson(np.exp(truth["beta[Intercept]"] + slope * x + rng.normal(0, sd, COUNTS["groups"])[g]))
    return truth, y.astype(float)


CASES = {
    "gaussian": Case(
        "y ~ x + (x | g)", "gaussian",
        [bm.prior("Intercept", bm.Normal(0, 1)), bm.prior("b", bm.Normal(0, 1)), bm.prior("sd", bm.HalfNormal(1)),
         bm.prior("cor", bm.LKJ(LKJ_ETA)), bm.prior("sigma", bm.HalfNormal(1))],
        gaussian_covariates, gaussian_simulate,
    ),
    "gaussian-crossed": Case(
        "y ~ x + (1 | a) + (1 | b)", "gaussian",
        [bm.prior("Intercept", bm.Normal(0, 1)), bm.prior("b", bm.Normal(0, 1)), bm.prior("sd", bm.HalfNormal(1)),
         bm.prior("sigma", bm.HalfNormal(1))],
        poisson_covariates, gaussian_crossed_simulate,
    ),
    "gaussian-nested": Case(
        "y ~ x + (1 | a) + (1 | a:b)", "gaussian",
        [bm.prior("Intercept", bm.Normal(0, 1)), bm.prior("b", bm.Normal(0, 1)), bm.prior("sd", bm.HalfNormal(1)),
         bm.prior("sigma", bm.HalfNormal(1))],
        poisson_covariates, gaussian_nested_simulate,
    ),
    "gaussian-nested-slope": Case(
        "y ~ x + (x | a) + (1 | a:b)", "gaussian",
        [bm.prior("Intercept", bm.Normal(0, 1)), bm.prior("b", bm.Normal(0, 1)), bm.prior("sd", bm.HalfNormal(1)),
         bm.prior("cor", bm.LKJ(LKJ_ETA)), bm.prior("sigma", bm.HalfNormal(1))],
        poisson_covariates, gaussian_nested_slope_simulate,
    ),
    "binomial-slope": Case(
        "cbind(s, n - s) ~ x + (x | g)", "binomial",
        [bm.prior("Intercept", bm.Normal(0, 1)), bm.prior("b", bm.Normal(0, 1)), bm.prior("sd", bm.HalfNormal(1)),
         bm.prior("cor", bm.LKJ(LKJ_ETA))],
        binomial_covariates, binomial_simulate,
    ),
    "poisson-crossed": Case(
        "y ~ x + (1 | a) + (1 | b)", "poisson",
        [bm.prior("Intercept", bm.Normal(*POISSON["Intercept"])), bm.prior("b", bm.Normal(*POISSON["b"])),
         bm.prior("sd", bm.HalfNormal(POISSON["sd"]))],
        poisson_covariates, poisson_simulate,
    ),
    "poisson-olre": Case(
        "y ~ x + (1 | a) + (1 | a:b) + (1 | obs)", "poisson",
        [bm.prior("Intercept", bm.Normal(*POISSON["Intercept"])), bm.prior("b", bm.Normal(*POISSON["b"])),
         bm.prior("sd", bm.HalfNormal(POISSON["sd"]))],
        olre_covariates, olre_simulate,
    ),
    "poisson-counts": Case(
        "y ~ x + (1 | g)", "poisson",
        [bm.prior("Intercept", bm.Normal(*COUNTS["Intercept"])), bm.prior("b", bm.Normal(*COUNTS["b"])),
         bm.prior("sd", bm.HalfNormal(COUNTS["sd"]))],
        counts_covariates, counts_simulate,
    ),
}


def parameter_draws(posterior) -> dict[str, np.ndarray]:
    """Every population parameter's draws (chains concatenated), named ``variable[coordinate]``."""
    out = {}
    for name, values in posterior.data_vars.items():
        if name == "beta" or name.startswith(("sd_", "cor_")):
            (dim,) = [d for d in values.dims if d not in ("chain", "draw")]
            for coordinate in values[dim].values:
                out[f"{name}[{coordinate}]"] = values.sel({dim: coordinate}).values.ravel()
        elif values.dims == ("chain", "draw"):  # the family's dispersion
            out[name] = values.values.ravel()
    return out


def chi_square_table(ranks: dict[str, list[int]]) -> list[tuple[str, float, float, float]]:
    """Per parameter: chi-square of the 10 rank bins, its p-value and the Bonferroni-adjusted one."""
    rows = []
    for name, values in ranks.items():
        counts = np.bincount(np.asarray(values) * BINS // (RANKS + 1), minlength=BINS)
        statistic, p = stats.chisquare(counts)
        rows.append((name, float(statistic), float(p), min(1.0, float(p) * len(ranks))))
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--case", choices=list(CASES), default="gaussian")
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--seed", type=int, default=20261124)
    parser.add_argument("--method", default="full", help="passed to BayesModel(method=...)")
    parser.add_argument("--draws", type=int, default=500, help="per chain (2 chains)")
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--target-accept", type=float, default=0.95)
    args = parser.parse_args()
    case = CASES[args.case]
    rng = np.random.default_rng(args.seed)
    data = case.covariates(rng)
    _, y0 = case.simulate(rng, data)
    if case.family == "binomial":
        data = data.assign(s=np.round(y0 * data["n"]).astype(int))
    else:
        data = data.assign(y=y0)
    design = bm.make_design(case.formula, data, family=case.family)
    model = BayesModel(design, case.priors, method=args.method)
    chains, step = 2, max(1, 2 * args.draws // RANKS)
    ranks: dict[str, list[int]] = {}
    divergent_replications = divergences = 0
    load_before, start = os.getloadavg(), time.perf_counter()
    for r in range(args.replications):
        truth, y = case.simulate(rng, data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            post = model.sample(y=y, draws=args.draws, tune=args.tune, chains=chains, seed=r, progressbar=False,
                                target_accept=args.target_accept)
        stats = post.idata["sample_stats"]
        n_divergent = int(stats["diverging"].sum()) if "diverging" in stats else 0  # method="gibbs": none
        divergences += n_divergent
        divergent_replications += n_divergent > 0
        draws = parameter_draws(post.posterior)
        if set(draws) != set(truth):
            raise RuntimeError(f"the posterior's parameters {sorted(draws)} are not the simulated {sorted(truth)}")
        for name, value in truth.items():
            thinned = draws[name][::step][:RANKS]  # thinned against autocorrelation
            ranks.setdefault(name, []).append(int((thinned < value).sum()))
    seconds = time.perf_counter() - start
    rows = chi_square_table(ranks)
    print(f"SBC {args.case} `{case.formula}` ({case.family}), {model.description}, method={args.method!r}: "
          f"{args.replications} replications, {design.n} rows, {chains} chains x {args.draws} draws after {args.tune} "
          f"tuning steps (target_accept {args.target_accept}) thinned to {RANKS}, seed {args.seed}; {seconds:.0f} s "
          f"({seconds / args.replications:.2f} s per replication); load {load_before[0]:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after; divergences: {divergences} in {divergent_replications} replications; "
          f"smallest p-value {min(p for _, _, p, _ in rows):.3f}, Bonferroni-adjusted (x {len(rows)}) "
          f"{min(adj for *_, adj in rows):.3f}")
    print()
    print("| parameter | chi-square (9 df) | p-value | Bonferroni-adjusted |")
    print("| --- | --- | --- | --- |")
    for name, statistic, p, adjusted in rows:
        print(f"| {name} | {statistic:.1f} | {p:.3f} | {adjusted:.3f} |")


if __name__ == "__main__":
    main()
