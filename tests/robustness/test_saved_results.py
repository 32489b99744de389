"""Saved results: netCDF round trips exactly, and a result loaded in a new process predicts identically."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix import ArgumentError, DataError

from .conftest import TINY, quiet

pytestmark = pytest.mark.filterwarnings("error::pandas.errors.PandasChangeWarning")

NEW = pd.DataFrame({"Days": [0.5, 4.0, 9.0], "Subject": [308, 999, 372]})


def same(a, b) -> bool:
    """Exactly equal arrays (NaN equal to NaN)."""
    a, b = np.asarray(a), np.asarray(b)
    return np.array_equal(a, b, equal_nan=a.dtype.kind == "f" and b.dtype.kind == "f")


def assert_same_posterior(a: bm.BayesResult, b: bm.BayesResult) -> None:
    assert set(a.posterior.data_vars) == set(b.posterior.data_vars)
    for name in a.posterior.data_vars:
        assert same(a.posterior[name].values, b.posterior[name].values), name
        for dim in a.posterior[name].dims:
            assert [str(v) for v in a.posterior[dim].values] == [str(v) for v in b.posterior[dim].values], dim
    stats_a, stats_b = a.idata["sample_stats"], b.idata["sample_stats"]
    for name in stats_b.data_vars:
        assert same(stats_a[name].values, stats_b[name].values), name
    assert np.array_equal(a.idata["observed_data"]["y"].values, b.idata["observed_data"]["y"].values)


@pytest.fixture(scope="module")
def saved_post(sleep_post, tmp_path_factory) -> tuple[Path, bm.BayesResult]:
    path = tmp_path_factory.mktemp("saved") / "sleep.nc"
    sleep_post.to_netcdf(path)
    return path, bm.load(path)


def test_posterior_round_trips_exactly(sleep_post, saved_post):
    _, loaded = saved_post
    assert isinstance(loaded, bm.BayesResult)
    assert_same_posterior(sleep_post, loaded)
    pd.testing.assert_frame_equal(loaded.summary(), sleep_post.summary(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.coef(), sleep_post.coef(), check_exact=True)
    pd.testing.assert_frame_equal(loaded.ranef(), sleep_post.ranef(), check_exact=True)
    assert loaded.diagnostics() == sleep_post.diagnostics()
    pd.testing.assert_frame_equal(loaded.priors.table(), sleep_post.priors.table())
    assert loaded.settings == sleep_post.settings and loaded.method == sleep_post.method
    assert repr(loaded) == repr(sleep_post)
    assert loaded.design.fixed_names == sleep_post.design.fixed_names
    assert np.array_equal(loaded.design.rows.X, sleep_post.design.rows.X) and np.array_equal(loaded.design.rows.y, sleep_post.design.rows.y)


def test_loaded_posterior_predicts_identically(sleep_post, saved_post):
    _, loaded = saved_post
    for options in ({"new_levels": "sample", "seed": 3}, {"new_levels": "population", "seed": 4}, {"random": False, "seed": 5}):
        a, b = sleep_post.predict(NEW, **options), loaded.predict(NEW, **options)
        assert np.array_equal(a.draws.values, b.draws.values) and np.array_equal(a.mu.values, b.mu.values)
    assert np.array_equal(loaded.fitted().to_numpy(), sleep_post.fitted().to_numpy())
    with pytest.raises(DataError, match=r"level\(s\) \[999\] of grouping factor 'Subject'"):
        loaded.predict(NEW)


def test_saved_file_is_an_ordinary_datatree(saved_post):
    path, _ = saved_post
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        assert {"posterior", "sample_stats", "observed_data", "bayesmix"} <= set(tree.children)
        meta = tree["bayesmix"].attrs
        assert meta["formula"] == "Reaction ~ Days + (Days | Subject)" and meta["result"] == "BayesResult"
        assert json.loads(meta["settings"])["seed"] == 11
        assert tree["bayesmix"]["column_0"].attrs["name"] == "Reaction"


def test_saving_a_loaded_result_again_is_lossless(saved_post, tmp_path):
    _, loaded = saved_post
    loaded.to_netcdf(tmp_path / "again.nc")
    assert_same_posterior(loaded, bm.load(tmp_path / "again.nc"))


@pytest.fixture(scope="module")
def saved_reml(sleep_reml, tmp_path_factory) -> tuple[Path, bm.RemlResult]:
    path = tmp_path_factory.mktemp("saved") / "sleep_reml.nc"
    sleep_reml.to_netcdf(path)
    return path, bm.load(path)


def test_reml_fit_round_trips_exactly(sleep_reml, saved_reml):
    _, loaded = saved_reml
    assert isinstance(loaded, bm.RemlResult) and loaded.reml
    for name in ("fixef", "std_errors", "fitted"):
        pd.testing.assert_series_equal(getattr(loaded, name)(), getattr(sleep_reml, name)(), check_exact=True)
    for name in ("ranef", "coef", "varcorr"):
        pd.testing.assert_frame_equal(getattr(loaded, name)(), getattr(sleep_reml, name)(), check_exact=True)
    assert np.array_equal(loaded.theta, sleep_reml.theta) and loaded.criterion == sleep_reml.criterion
    assert loaded.optsummary.iterations == sleep_reml.optsummary.iterations
    assert loaded.optsummary.path == sleep_reml.optsummary.path and loaded.optsummary.message == sleep_reml.optsummary.message
    assert str(loaded.summary()) == str(sleep_reml.summary())
    a, b = sleep_reml.predict(NEW, allow_new_levels=True), loaded.predict(NEW, allow_new_levels=True)
    assert np.array_equal(a.to_numpy(), b.to_numpy())


def test_loaded_results_predict_identically_in_a_new_process(sleep_post, saved_post, sleep_reml, saved_reml, tmp_path):
    """One fresh interpreter loads both files and writes its predictions; they equal ours bit for bit."""
    script = textwrap.dedent(
        f"""
        import numpy as np, pandas as pd, bayesmix as bm
        new = pd.DataFrame({NEW.to_dict(orient="list")!r})
        post = bm.load({str(saved_post[0])!r})
        pred = post.predict(new, new_levels="sample", seed=7)
        np.save("post_draws.npy", pred.draws.values)
        np.save("post_summary.npy", post.summary().to_numpy())
        reml = bm.load({str(saved_reml[0])!r})
        np.save("reml_predict.npy", reml.predict(new, allow_new_levels=True).to_numpy())
        """
    )
    package_root = str(Path(bm.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": package_root}
    done = subprocess.run([sys.executable, "-c", script], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert np.array_equal(np.load(tmp_path / "post_draws.npy"), sleep_post.predict(NEW, new_levels="sample", seed=7).draws.values)
    assert np.array_equal(np.load(tmp_path / "post_summary.npy"), sleep_post.summary().to_numpy())
    assert np.array_equal(np.load(tmp_path / "reml_predict.npy"), sleep_reml.predict(NEW, allow_new_levels=True).to_numpy())


# ----- data of every kind --------------------------------------------------------------------
@pytest.fixture(scope="module")
def mixed_frame(sleep) -> pd.DataFrame:
    """Text subjects, an ordered categorical, a boolean, integers, row labels and two missing rows."""
    data = sleep.assign(
        who=("s" + sleep["Subject"].astype(str)).astype(object),
        phase=pd.Categorical(np.where(sleep["Days"] > 4, "late", "early"), categories=["late", "early", "never"], ordered=True),
        weekend=(sleep["Days"] % 7) >= 5,
        Days=sleep["Days"].astype("int32"),
    )
    data.index = [f"row{i}" for i in range(len(data))]
    data.loc["row3", "Reaction"] = np.nan
    data.loc["row40", "who"] = None
    return data


def test_every_column_kind_round_trips(mixed_frame, tmp_path):
    formula = "Reaction ~ scale(Days) + phase + weekend + (Days | who)"
    with pytest.warns(bm.MissingDataWarning, match="Dropped 2 of 180 rows"):
        model = bm.Model(formula, mixed_frame)
    reml = model.fit_reml()
    reml.to_netcdf(tmp_path / "mixed.nc")
    loaded = bm.load(tmp_path / "mixed.nc")
    design = loaded.design
    assert design.n_dropped == 2 and list(design.rows.index) == list(model.design.rows.index)
    assert design.fixed_names == model.design.fixed_names and np.array_equal(design.rows.X, model.design.rows.X)
    frame = design.rows.frame
    assert frame["phase"].dtype == mixed_frame["phase"].cat.remove_unused_categories().dtype
    assert frame["weekend"].dtype == bool and frame["Days"].dtype == np.int32 and frame["who"].dtype == object
    new = pd.DataFrame({"Days": [3, 8], "phase": ["early", "late"], "weekend": [False, True], "who": ["s308", "s999"]})
    assert np.array_equal(loaded.predict(new, allow_new_levels=True).to_numpy(), reml.predict(new, allow_new_levels=True).to_numpy())
    post = quiet(model.sample, seed=2, **TINY)
    post.to_netcdf(tmp_path / "mixed_post.nc")
    loaded_post = bm.load(tmp_path / "mixed_post.nc")
    assert_same_posterior(post, loaded_post)
    a = post.predict(new, new_levels="sample", seed=1)
    b = loaded_post.predict(new, new_levels="sample", seed=1)
    assert np.array_equal(a.draws.values, b.draws.values)


# ----- what load refuses ---------------------------------------------------------------------------
def test_load_missing_file(tmp_path):
    with pytest.raises(ArgumentError, match=r"No file '.*nothing.nc' to load; save a result first with result.to_netcdf\(path\)"):
        bm.load(tmp_path / "nothing.nc")


def test_load_a_file_that_is_not_netcdf(tmp_path):
    (tmp_path / "notes.nc").write_text("not a netCDF file")
    with pytest.raises(DataError, match=r"'.*notes.nc' cannot be read as a netCDF file"):
        bm.load(tmp_path / "notes.nc")


def test_load_draws_saved_without_bayesmix_metadata(sleep_post, tmp_path):
    sleep_post.idata.drop_nodes("sample_stats").to_netcdf(tmp_path / "plain.nc", engine="h5netcdf")
    with pytest.raises(DataError, match=r"has no 'bayesmix' group, so it was not saved by bayesmix's to_netcdf"):
        bm.load(tmp_path / "plain.nc")


def _rewrite(source: Path, target: Path, change) -> None:
    with xr.open_datatree(source, engine="h5netcdf") as tree:
        tree = tree.load()
    group = tree["bayesmix"].to_dataset()
    tree["bayesmix"] = change(group)
    tree.to_netcdf(target, engine="h5netcdf")


def test_load_a_newer_format(saved_post, tmp_path):
    _rewrite(saved_post[0], tmp_path / "future.nc", lambda g: g.assign_attrs(bayesmix_format=99))
    with pytest.raises(DataError, match=r"saved in format 99; this bayesmix reads up to 1: upgrade it"):
        bm.load(tmp_path / "future.nc")


def test_load_refuses_a_design_that_does_not_match_the_draws(saved_post, tmp_path):
    def tamper(group):
        group["column_0"] = group["column_0"] + 1.0  # the stored response no longer matches observed_data
        group["column_0"].attrs.update(name="Reaction", kind="number", pandas_dtype="float64")
        return group

    _rewrite(saved_post[0], tmp_path / "tampered.nc", tamper)
    with pytest.raises(DataError, match=r"cannot be rebuilt identically: the response differ"):
        bm.load(tmp_path / "tampered.nc")


def test_a_replaced_response_cannot_be_saved_as_rebuildable(sleep_model, tmp_path):
    # simulation-based calibration samples with another y: the stored rows would not give it back
    other = quiet(sleep_model.bayes_model().sample, y=sleep_model.design.rows.y[::-1].copy(), seed=3, **TINY)
    with pytest.raises(ArgumentError, match=r"response is not the one in its data .*result.idata.to_netcdf\(path\)"):
        other.to_netcdf(tmp_path / "sbc.nc")
    assert not (tmp_path / "sbc.nc").exists()
