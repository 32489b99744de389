"""Dask and Parquet input: the same fits and draws as from pandas, on a 2-worker LocalCluster."""

from __future__ import annotations

import warnings

import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest
from dask import distributed

import bayesmix as bm
from bayesmix import DataError, FormulaError, MissingDataWarning, RankDeficiencyWarning
from bayesmix.bayes import ArgumentError
from bayesmix.data.statistics import SufficientStatistics

from .conftest import require_cholmod

MUSIC = "na ~ perform_type + (perform_type | id)"
SIMULATED = "y ~ x1 + x2 + kind + (x1 + x2 | g)"


@pytest.fixture(scope="module")
def client():
    """A LocalCluster with two worker processes, started by the test.

    The statistics kernel is compiled here first, so that the workers load numba's cache
    instead of both compiling (and writing) it at once.
    """
    SufficientStatistics.of((np.zeros(2, dtype=np.intp),), np.ones((2, 1)), (np.array([0]),), np.ones((2, 1)), np.arange(2.0), (1,))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as c:
            yield c


@pytest.fixture(scope="module")
def simulated() -> pd.DataFrame:
    """Two slopes, a string factor, an integer grouping column and some missing values."""
    rng = np.random.default_rng(11)
    g = np.repeat(np.arange(60), rng.integers(5, 25, 60))
    n = len(g)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    u = rng.multivariate_normal([0, 0, 0], [[1.0, 0.3, 0.1], [0.3, 0.5, 0.0], [0.1, 0.0, 0.3]], size=60)
    kind = rng.choice(["a", "b", "c"], size=n)
    y = 1 + 0.5 * x1 - 0.3 * x2 + (kind == "b") + u[g, 0] + u[g, 1] * x1 + u[g, 2] * x2 + rng.normal(0, 0.7, n)
    frame = pd.DataFrame({"y": y, "x1": x1, "x2": x2, "kind": kind, "g": g})
    frame.loc[rng.choice(n, 7, replace=False), "x1"] = np.nan
    frame.loc[rng.choice(n, 3, replace=False), "y"] = np.nan
    return frame


CROSSED = "y ~ x1 + kind + (x1 | a) + (1 | b)"
NESTED = "y ~ x1 + (1 | school/room) + (0 + x1 | school)"


@pytest.fixture(scope="module")
def crossed() -> pd.DataFrame:
    """Crossed factors a (80 levels, correlated slope) and b (string levels), most pairs of
    levels seen several times, a string predictor and some missing values."""
    rng = np.random.default_rng(12)
    n = 2400
    a, b = rng.integers(0, 80, n), rng.integers(0, 15, n)
    x1 = rng.normal(size=n)
    ua = rng.multivariate_normal([0, 0], [[1.0, 0.2], [0.2, 0.4]], size=80)
    ub = rng.normal(0, 0.8, 15)
    kind = rng.choice(["p", "q"], size=n)
    y = 2 - 0.5 * x1 + 0.3 * (kind == "q") + ua[a, 0] + ua[a, 1] * x1 + ub[b] + rng.normal(0, 0.9, n)
    frame = pd.DataFrame({"y": y, "x1": x1, "kind": kind, "a": a, "b": [f"item{k:02d}" for k in b]})
    frame.loc[rng.choice(n, 9, replace=False), "x1"] = np.nan
    return frame


@pytest.fixture(scope="module")
def nested() -> pd.DataFrame:
    """Rooms nested in schools (room labels repeat across schools: only school/room tells them apart)."""
    rng = np.random.default_rng(13)
    school = np.repeat(np.arange(25), 60)
    room = rng.integers(0, 4, len(school))
    x1 = rng.normal(size=len(school))
    u_school, u_room, u_slope = rng.normal(0, 1.0, 25), rng.normal(0, 0.6, (25, 4)), rng.normal(0, 0.4, 25)
    y = 1 + 0.4 * x1 + u_school[school] + u_room[school, room] + u_slope[school] * x1 + rng.normal(0, 1.0, len(school))
    return pd.DataFrame({"y": y, "x1": x1, "school": [f"s{k}" for k in school], "room": room})


def fit_pair(formula, frame, npartitions):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.Model(formula, frame), bm.Model(formula, dd.from_pandas(frame, npartitions=npartitions))


def assert_same_reml(a: bm.RemlResult, b: bm.RemlResult):
    np.testing.assert_allclose(b.fixef(), a.fixef(), rtol=1e-8)
    np.testing.assert_allclose(b.std_errors(), a.std_errors(), rtol=1e-8)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-8, atol=1e-10)
    assert b.sigma == pytest.approx(a.sigma, rel=1e-8)
    assert b.criterion == pytest.approx(a.criterion, rel=1e-8)
    ranef_a, ranef_b = a.ranef(), b.ranef()
    if isinstance(ranef_a, dict):  # several grouping factors
        assert list(ranef_b) == list(ranef_a)
        for group, effects in ranef_a.items():
            np.testing.assert_allclose(ranef_b[group].to_numpy(), effects.to_numpy(), rtol=1e-8, atol=1e-10)
    else:
        np.testing.assert_allclose(ranef_b.to_numpy(), ranef_a.to_numpy(), rtol=1e-8, atol=1e-10)


def assert_same_fits_and_draws(pandas_model, dask_model, draws: int, seed: int):
    """REML and ML fits of both models equal (:func:`assert_same_reml`), and their collapsed
    posteriors (2 chains, ``draws`` after as many tuning steps, ``seed``; ``method="collapsed"``,
    the one method for data beyond memory, which ``"auto"`` does not always choose for pandas)
    bitwise equal; returns the ML fits and the posteriors, pandas's first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for reml in (True, False):
            a = pandas_model.fit_reml() if reml else pandas_model.fit_ml()
            b = dask_model.fit_reml() if reml else dask_model.fit_ml()
            assert_same_reml(a, b)
        settings = dict(draws=draws, tune=draws, chains=2, seed=seed, progressbar=False, method="collapsed")
        p, q = pandas_model.sample(**settings), dask_model.sample(**settings)
    for name, values in p.posterior.data_vars.items():
        np.testing.assert_array_equal(q.posterior[name].values, values.values, err_msg=name)
    return a, b, p, q


@pytest.mark.parametrize("case", ["music", "simulated"])
def test_reml_and_draws_equal_pandas_on_a_local_cluster(client, music, simulated, case):
    formula, frame = (MUSIC, music) if case == "music" else (SIMULATED, simulated)
    pandas_model, dask_model = fit_pair(formula, frame, npartitions=6)
    assert dask_model.design.n == pandas_model.design.n and dask_model.design.n_dropped == pandas_model.design.n_dropped
    assert dask_model.design.fixed_names == pandas_model.design.fixed_names
    a, b, p, q = assert_same_fits_and_draws(pandas_model, dask_model, draws=200, seed=5)
    # REML beside the posterior reads the layout's column sizes, which dask designs have from their statistics
    pd.testing.assert_frame_equal(bm.compare(b, q), bm.compare(a, p), check_exact=False, rtol=1e-8)


@pytest.mark.parametrize("case", ["crossed", "nested"])
def test_crossed_and_nested_designs_equal_pandas_on_a_local_cluster(client, crossed, nested, case):
    """Several grouping factors: the per-pair statistics summed over 7 partitions by 2 workers
    give the pandas fit (REML and ML to 1e-8) and, with the same seed, the same collapsed draws."""
    formula, frame = (CROSSED, crossed) if case == "crossed" else (NESTED, nested)
    pandas_model, dask_model = fit_pair(formula, frame, npartitions=7)
    assert dask_model.design.groups == pandas_model.design.groups and dask_model.design.n == pandas_model.design.n
    for term_a, term_b in zip(dask_model.design.terms, pandas_model.design.terms):
        assert term_a.levels.equals(term_b.levels)
    _, _, p, q = assert_same_fits_and_draws(pandas_model, dask_model, draws=60, seed=7)
    assert q.method == p.method == "collapsed (random effects integrated out, drawn exactly)"


def test_crossed_statistics_hold_one_entry_per_distinct_pair_of_levels(crossed):
    """What reaches the client grows with the levels and the distinct pairs, not the rows."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bm.Model(CROSSED, dd.from_pandas(crossed, npartitions=5))
    complete = crossed.dropna()
    (pairs,) = model.design.statistics.pairs
    assert len(pairs.keys) == len(complete[["a", "b"]].drop_duplicates()) < len(complete)
    assert model.design.statistics.n_levels == (80, 15)


def write_shuffled_parts(frame: pd.DataFrame, directory, parts: int, seed: int) -> None:
    """The rows of ``frame`` in a shuffled order, as ``parts`` Parquet files in ``directory``."""
    shuffled = frame.sample(frac=1.0, random_state=seed)
    for k, rows in enumerate(np.array_split(np.arange(len(shuffled)), parts)):
        shuffled.iloc[rows].to_parquet(directory / f"part-{k}.parquet")


def test_crossed_parquet_files_equal_pandas(tmp_path, crossed):
    write_shuffled_parts(crossed, tmp_path, parts=4, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pandas_model, parquet_model = bm.Model(CROSSED, crossed), bm.Model(CROSSED, str(tmp_path / "*.parquet"))
        a, b = pandas_model.fit_reml(), parquet_model.fit_reml()
        assert_same_reml(a, b)
        settings = dict(draws=40, tune=40, chains=1, seed=4, progressbar=False, method="collapsed")
        p, q = pandas_model.sample(**settings), parquet_model.sample(**settings)
    for name, draws in p.posterior.data_vars.items():
        np.testing.assert_array_equal(q.posterior[name].values, draws.values, err_msg=name)
    lazy = b.fitted()  # predictions on the rows, lazily, with both factors' effects
    np.testing.assert_allclose(np.sort(lazy.compute().to_numpy()), np.sort(a.fitted().to_numpy()), rtol=1e-8)


def test_missing_values_are_counted_and_reported(simulated):
    with pytest.warns(MissingDataWarning, match=r"Dropped 10 of 947 rows with missing values in y \(3\), x1 \(7\)"):
        model = bm.Model(SIMULATED, dd.from_pandas(simulated, npartitions=4))
    assert model.design.n_dropped == 10


def test_parquet_files_equal_pandas(tmp_path, music):
    write_shuffled_parts(music, tmp_path, parts=3, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pandas_model, parquet_model = bm.Model(MUSIC, music), bm.Model(MUSIC, str(tmp_path))
        reml = parquet_model.fit_reml()
        assert_same_reml(pandas_model.fit_reml(), reml)
        post = parquet_model.sample(draws=100, tune=100, chains=2, seed=3, progressbar=False)
    table = bm.compare(reml, post)  # raised TypeError for a design without rows
    assert list(table.index) == list(post.summary().index)
    from_rows = bm.compare(pandas_model.fit_reml(), post)
    np.testing.assert_allclose(table["reml"], from_rows["reml"], rtol=1e-8)
    assert table["boundary"].equals(from_rows["boundary"])


def test_predictions_are_lazy_and_equal(music):
    pandas_model, dask_model = fit_pair(MUSIC, music, npartitions=4)
    ddf = dd.from_pandas(music, npartitions=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a, b = pandas_model.fit_reml(), dask_model.fit_reml()
    lazy = b.predict(ddf)
    assert isinstance(lazy, dd.Series)
    np.testing.assert_allclose(lazy.compute().to_numpy(), a.predict(music).to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(b.fitted().compute().to_numpy(), a.fitted().to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(b.residuals().compute().to_numpy(), a.residuals().to_numpy(), rtol=1e-8, atol=1e-10)
    assert "not computed" in str(b.summary())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        settings = dict(draws=100, tune=100, chains=1, seed=2, progressbar=False)
        p, q = pandas_model.sample(**settings), dask_model.sample(**settings)
    np.testing.assert_allclose(q.predict(ddf).compute().to_numpy(), p.predict(music).mean.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(q.fitted().compute().to_numpy(), p.fitted().to_numpy(), rtol=1e-10)
    with pytest.raises(DataError, match="needs every row in memory"):
        q.loo()


def test_rank_deficient_columns_are_dropped_as_for_pandas(simulated):
    frame = simulated.assign(x3=2.0 * simulated["x1"] - simulated["x2"])
    formula = "y ~ x1 + x2 + x3 + (1 | g)"
    with pytest.warns(RankDeficiencyWarning, match="x3"):
        model = bm.Model(formula, dd.from_pandas(frame, npartitions=3))
    assert model.design.fixed_names == ("Intercept", "x1", "x2")


def test_models_that_need_every_row_are_refused(simulated):
    ddf = dd.from_pandas(simulated, npartitions=2)
    with pytest.raises(FormulaError, match="scale"):
        bm.Model("y ~ scale(x2) + (1 | g)", ddf)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = bm.Model("y ~ x1 + (1 | g)", ddf)
    with pytest.raises(ArgumentError, match="method='full'"):
        model.bayes_model(method="full")


def test_unknown_columns_and_bad_responses_name_the_column(simulated):
    ddf = dd.from_pandas(simulated, npartitions=2)
    with pytest.raises(FormulaError, match="'kindd' is not a column.*'kind'"):
        bm.Model("y ~ kindd + (1 | g)", ddf)
    with pytest.raises(DataError, match="'kind' has dtype"):
        bm.Model("kind ~ x1 + (1 | g)", ddf)
    exact = dd.from_pandas(simulated.assign(y=2.0 * simulated["x1"] + 1.0), npartitions=2)
    with pytest.raises(DataError, match="reproduce the response 'y'"):
        bm.Model("y ~ x1 + (1 | g)", exact)
    huge = dd.from_pandas(simulated.assign(x2=simulated["x2"] * 1e300), npartitions=2)
    with pytest.raises(DataError, match="predictor 'x2' has values as large as"):
        bm.Model("y ~ x2 + (1 | g)", huge)


def test_a_crossed_dask_design_takes_the_sparse_factorisation(crossed):
    """The sparse cross-products come from the per-pair statistics, so a dask design can be
    factored by CHOLMOD: the same fit as pandas's, sparse or blocked."""
    require_cholmod()
    pandas_model, dask_model = fit_pair(CROSSED, crossed, npartitions=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for fit in ("fit_reml", "fit_ml"):
            blocked = getattr(pandas_model, fit)(factorization="blocked")
            for model in (pandas_model, dask_model):
                sparse = getattr(model, fit)(factorization="sparse")
                assert sparse.optsummary.factorization == "sparse (CHOLMOD)"
                assert_same_reml(blocked, sparse)
