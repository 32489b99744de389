"""Nothing lost, same seed same draws, never crash (issue 18).

Saves replace the previous file only when complete; damaged, tampered or foreign files are
refused with a DataError naming the file and what is wrong; Ctrl-C during sampling raises
KeyboardInterrupt; sampler settings nutpie cannot take are refused up front; bayesmix imports
and fits without a writable cache; the same seed gives bitwise the same draws in a fresh
process, with a cold or a warm compilation cache.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix import ArgumentError, DataError, FitError
from bayesmix.bayes.sampling import SamplerSettings

from ..conftest import shared_file
from .conftest import SLEEP_FORMULA, TINY, quiet
from .test_saved_results import _rewrite, assert_same_posterior

PACKAGE = Path(bm.__file__).resolve().parent


def environment(**changes: str) -> dict[str, str]:
    """This process's environment without numba's and PyTensor's settings, importing this bayesmix, with ``changes``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA_", "PYTENSOR_"))}
    return {**env, "PYTHONPATH": str(PACKAGE.parent), **changes}


def run_python(script: str, env: dict[str, str], cwd: Path, timeout: int = 300) -> str:
    """Run ``script`` in a fresh interpreter with environment ``env``; its standard output."""
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


# ----- atomic saves ------------------------------------------------------------------------------
@pytest.fixture(params=["reml", "posterior"])
def result(request, sleep_reml, sleep_post):
    return sleep_reml if request.param == "reml" else sleep_post


def _loads_as(path: Path, result) -> None:
    loaded = bm.load(path)
    if isinstance(result, bm.BayesResult):
        assert_same_posterior(result, loaded)
    else:
        assert loaded.criterion == result.criterion and loaded.fixef().equals(result.fixef())


@pytest.mark.parametrize(
    ("failure", "expected", "message"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), ArgumentError, r"Cannot write '.*old.nc' \(No space left on device\)"),
        (ValueError("h5py cannot store this"), DataError, r"cannot be saved to '.*old.nc' \(ValueError: h5py cannot store this\)"),
        (KeyboardInterrupt(), KeyboardInterrupt, None),
    ],
)
def test_a_save_that_fails_half_way_leaves_the_old_file_intact(result, tmp_path, monkeypatch, failure, expected, message):
    path = tmp_path / "old.nc"
    result.to_netcdf(path)
    before = path.read_bytes()

    def write_half_then_fail(tree, target, **kwargs):
        Path(target).write_bytes(before[: len(before) // 2])  # as a disk filling up would leave it
        raise failure

    monkeypatch.setattr(xr.DataTree, "to_netcdf", write_half_then_fail)
    with pytest.raises(expected, match=message):
        result.to_netcdf(path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["old.nc"]  # no temporary file left behind
    _loads_as(path, result)


def test_a_level_with_a_nul_character_is_refused_and_the_old_file_kept(sleep, sleep_reml, tmp_path):
    path = tmp_path / "fit.nc"
    sleep_reml.to_netcdf(path)
    before = path.read_bytes()
    nul = quiet(bm.Model, "Reaction ~ Days + (1 | Subject)", sleep.assign(Subject="s\x00" + sleep["Subject"].astype(str)))
    with pytest.raises(DataError, match=r"column 'Subject' holds text with a NUL character .* fit again to save"):
        quiet(nul.fit_reml).to_netcdf(path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["fit.nc"]
    _loads_as(path, sleep_reml)


def test_a_save_replaces_the_file_there(sleep_reml, sleep_post, tmp_path):
    path = tmp_path / "result.nc"
    sleep_reml.to_netcdf(path)
    sleep_post.to_netcdf(str(path))
    assert isinstance(bm.load(path), bm.BayesResult)
    assert [p.name for p in tmp_path.iterdir()] == ["result.nc"]


@pytest.mark.parametrize(
    ("where", "message"),
    [
        (lambda tmp: tmp / "missing" / "fit.nc", r"Cannot save to '.*missing/fit.nc': the directory '.*missing' does not exist"),
        (lambda tmp: tmp, r"'.*' is a directory; give a file name, e.g. '.*result.nc'"),
        (lambda tmp: Path("/sys/fit.nc"), r"Cannot write '/sys/fit.nc' \(Permission denied\); save to a writable directory"),
        (lambda tmp: 3, r"path must be a file name \(a str or pathlib.Path\), not 3"),
        (lambda tmp: None, r"path must be a file name \(a str or pathlib.Path\), not None"),
    ],
    ids=["no directory", "a directory", "not writable", "a number", "None"],
)
def test_save_path_problems(result, tmp_path, where, message):
    path = where(tmp_path)
    if path == Path("/sys/fit.nc") and not Path("/sys").is_dir():
        pytest.skip("no /sys (not Linux)")
    with pytest.raises(ArgumentError, match=message):
        result.to_netcdf(path)
    assert list(tmp_path.iterdir()) == []


# ----- damaged, tampered and foreign files ------------------------------------------------------
@pytest.fixture(scope="module")
def saved(sleep_reml, sleep_post, tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("trust_saved")
    sleep_reml.to_netcdf(folder / "reml.nc")
    sleep_post.to_netcdf(folder / "post.nc")
    return {"reml": folder / "reml.nc", "post": folder / "post.nc"}


def _without(name):
    def change(group):
        del group.attrs[name]
        return group

    return change


def _with(**attrs):
    return lambda g: g.assign_attrs(attrs)


def _column_attrs(**attrs):
    def change(group):
        group["column_1"].attrs.update(attrs)
        return group

    return change


TAMPERED = [
    ("reml", _without("formula"), r"not a valid bayesmix file: the 'bayesmix' group has no attribute 'formula'"),
    ("post", _without("settings"), r"not a valid bayesmix file: the 'bayesmix' group has no attribute 'settings'"),
    ("reml", _without("bayesmix_format"), r"has no attribute 'bayesmix_format'"),
    ("post", _with(priors="{not json"), r"attribute 'priors' of the 'bayesmix' group is not valid JSON"),
    ("reml", _with(optsummary="[1, 2]"), r"attribute 'optsummary' of the 'bayesmix' group is \[1, 2\], not a JSON object"),
    ("reml", _with(columns="two"), r"attribute 'columns' of the 'bayesmix' group is 'two', not an integer"),
    ("reml", _with(criterion="low"), r"attribute 'criterion' of the 'bayesmix' group is 'low', not a number"),
    ("reml", _with(bayesmix_format="1"), r"attribute 'bayesmix_format' of the 'bayesmix' group is '1', not an integer"),
    ("post", _with(bayesmix_format=2), r"saved in format 2; this bayesmix reads up to 1: upgrade it"),
    ("reml", _with(result="LaplaceResult"), r"unknown kind of result 'LaplaceResult' \(not one of BayesResult, RemlResult, GlmmResult\)"),
    ("reml", _with(columns=9), r"the 'bayesmix' group has no variable 'column_3'"),
    ("reml", _with(n_dropped=-1), r"a negative count of rows dropped or of columns"),
    ("reml", _column_attrs(kind="complex"), r"variable 'column_1' has an unknown kind 'complex'"),
    ("reml", _column_attrs(kind="category"), r"variable 'column_1' has no attribute 'categories'"),
    ("post", _with(settings=json.dumps({"draws": 100, "tune": 0, "chains": 2})), r"cannot be loaded: tune must be an integer from 1"),
    ("post", _with(priors=json.dumps({"intercept": None})), r"is damaged: its contents do not fit together \(KeyError: 'b'\)"),
    ("post", _with(sampling_seconds=[1.0, 2.0]), r"attribute 'sampling_seconds' of the 'bayesmix' group is .*, not a number"),
]


@pytest.mark.parametrize(("kind", "change", "message"), TAMPERED)
def test_tampered_files_are_refused_naming_the_file_and_the_fault(saved, tmp_path, kind, change, message):
    path = tmp_path / "tampered.nc"
    _rewrite(saved[kind], path, change)
    with pytest.raises(DataError, match=rf"'.*tampered.nc' .*{message}"):
        bm.load(path)


def test_a_posterior_file_without_its_draws_is_refused(saved, tmp_path):
    with xr.open_datatree(saved["post"], engine="h5netcdf") as tree:
        tree = tree.load()
    tree.drop_nodes("posterior").to_netcdf(tmp_path / "nodraws.nc", engine="h5netcdf")
    with pytest.raises(DataError, match=r"'.*nodraws.nc' is not a valid bayesmix file: it has no 'posterior' group"):
        bm.load(tmp_path / "nodraws.nc")
    tree["posterior"] = tree["posterior"].to_dataset().drop_vars("beta")
    tree.to_netcdf(tmp_path / "nobeta.nc", engine="h5netcdf")
    with pytest.raises(DataError, match=r"'.*nobeta.nc' cannot be loaded: its posterior has no variable\(s\) beta; it was not saved whole"):
        bm.load(tmp_path / "nobeta.nc")


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.9, 0.99])
def test_truncated_files_are_refused(saved, tmp_path, fraction):
    content = saved["post"].read_bytes()
    path = tmp_path / "cut.nc"
    path.write_bytes(content[: int(len(content) * fraction)])
    with pytest.raises(DataError, match=r"'.*cut.nc' (cannot be read|is not a valid|is damaged)"):
        bm.load(path)


def test_foreign_files_are_refused(tmp_path):
    xr.Dataset({"x": ("i", np.arange(3.0))}).to_netcdf(tmp_path / "other.nc", engine="h5netcdf")
    with pytest.raises(DataError, match=r"'.*other.nc' has no 'bayesmix' group"):
        bm.load(tmp_path / "other.nc")
    (tmp_path / "noise.nc").write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(DataError, match=r"'.*noise.nc' cannot be read as a netCDF file"):
        bm.load(tmp_path / "noise.nc")
    with pytest.raises(ArgumentError, match=r"path must be a file name \(a str or pathlib.Path\), not 3.5"):
        bm.load(3.5)


# ----- Ctrl-C during sampling --------------------------------------------------------------------
def _interrupt() -> None:
    """What Ctrl-C does: SIGINT to this process, handled by the main thread at its next check."""
    os.kill(os.getpid(), signal.SIGINT)


@pytest.fixture(autouse=True)
def _ctrl_c_raises():
    """Python's own SIGINT handler, as in an interactive session: a shell that starts a job in the
    background (as CI may) leaves SIGINT ignored, and the signal these tests send would be lost."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.parametrize("phase", ["tuning", "drawing"])
def test_ctrl_c_during_nutpie_sampling_raises_keyboard_interrupt(sleep_model, monkeypatch, phase):
    import nutpie

    sample = nutpie.sample
    seen = []

    def sample_and_interrupt(*args, **kwargs):
        def progress(chains):
            # the signal is sent once, mid-phase: after 50 steps of the phase in the first chain
            first = chains[0]
            done = first.finished_draws if phase == "tuning" else first.finished_draws - kwargs["tune"]
            if not seen and first.tuning == (phase == "tuning") and done >= 50:
                seen.append(first.finished_draws)
                _interrupt()

        return sample(*args, progress_callback=progress, progress_rate=1, **kwargs)

    monkeypatch.setattr(nutpie, "sample", sample_and_interrupt)
    with pytest.raises(KeyboardInterrupt):  # not a result with fewer draws than asked, nor an IndexError
        sleep_model.sample(draws=10**5 if phase == "drawing" else 10, tune=10**5 if phase == "tuning" else 100,
                           chains=2, seed=1, progressbar=False)
    assert seen, "the interrupt was not sent while sampling"
    monkeypatch.undo()
    post = quiet(sleep_model.sample, seed=1, **TINY)  # nothing left broken
    assert post.posterior.sizes["draw"] == TINY["draws"]


@pytest.mark.parametrize("step", [5, 30])  # in tuning (tune=20), and in drawing
def test_ctrl_c_during_pymc_sampling_raises_keyboard_interrupt(sleep_model, monkeypatch, step):
    from pymc.step_methods.hmc.nuts import NUTS

    astep, steps = NUTS.astep, []

    def astep_and_interrupt(self, q0):
        steps.append(1)
        if len(steps) == step:
            _interrupt()
        return astep(self, q0)

    handler = signal.getsignal(signal.SIGINT)
    monkeypatch.setattr(NUTS, "astep", astep_and_interrupt)
    with pytest.raises(KeyboardInterrupt):  # PyMC alone returns fewer draws, or fails with ValueError in tuning
        sleep_model.sample(draws=20, tune=20, chains=1, seed=1, progressbar=False, sampler="pymc")
    assert len(steps) == step  # stopped at once
    assert signal.getsignal(signal.SIGINT) is handler  # bayesmix's handler, which notes the interrupt, is gone


# ----- sampler settings ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tune": 0}, r"tune must be an integer from 1 to 2147483647 with sampler='nutpie' \(tune=0 needs sampler='pymc'\), not 0"),
        ({"tune": np.int64(0)}, r"tune must be an integer from 1 .* not np.int64\(0\)"),
        ({"tune": -1, "sampler": "pymc"}, r"tune must be an integer from 0 to 2147483647, not -1"),
        ({"draws": 100.0}, r"draws must be an integer from 1 to 2147483647, not 100.0"),
        ({"draws": np.float64(100)}, r"draws must be an integer from 1 to 2147483647, not np.float64\(100.0\)"),
        ({"draws": 2**31}, r"draws must be an integer from 1 to 2147483647, not 2147483648"),
        ({"draws": 2**70}, r"draws must be an integer from 1 to 2147483647, not 1180591620717411303424"),
        ({"chains": np.bool_(True)}, r"chains must be an integer from 1 to 2147483647, not np.True_"),
        ({"chains": np.uint8(0)}, r"chains must be an integer from 1 to 2147483647, not np.uint8\(0\)"),
        ({"seed": np.bool_(False)}, r"seed must be a non-negative integer below 2\*\*64, or None, not np.False_"),
        ({"seed": 3.0}, r"seed must be a non-negative integer below 2\*\*64, or None, not 3.0"),
        ({"target_accept": np.float32(1.5)}, r"target_accept must lie strictly between 0 and 1, not np.float32\(1.5\)"),
        ({"target_accept": np.bool_(True)}, r"target_accept must lie strictly between 0 and 1, not np.True_"),
        ({"target_accept": 1e-400}, r"target_accept must lie strictly between 0 and 1, not 0.0"),
    ],
)
def test_settings_nutpie_cannot_take_are_refused_up_front(sleep_model, settings, message):
    with pytest.raises(ArgumentError, match=message):
        sleep_model.sample(**{**TINY, **settings})


def test_numpy_scalar_settings_are_accepted_and_stored_as_python_numbers(sleep_model):
    settings = SamplerSettings(draws=np.int64(1000), tune=np.uint16(500), chains=np.int8(2), seed=np.uint64(7),
                               target_accept=np.float32(0.9), progressbar=np.bool_(False))
    assert settings == SamplerSettings(draws=1000, tune=500, chains=2, seed=7, target_accept=float(np.float32(0.9)),
                                       progressbar=False)
    assert all(type(v) in (int, float, bool, str) for v in vars(settings).values())
    assert SamplerSettings(tune=0, sampler="pymc").tune == 0  # PyMC's NUTS can skip tuning
    post = quiet(sleep_model.sample, draws=np.int64(20), tune=np.int32(20), chains=np.int64(1), seed=np.int64(3),
                 target_accept=np.float32(0.9), progressbar=False)
    assert post.settings.target_accept == float(np.float32(0.9)) and post.posterior.sizes["draw"] == 20


def test_a_nutpie_panic_becomes_a_fit_error(sleep):
    """A Rust panic (a BaseException, which `except Exception` misses) is a FitError; here tune=0 slipped past the check."""
    settings = SamplerSettings(**TINY)
    object.__setattr__(settings, "tune", 0)
    with pytest.raises(FitError, match=r"nutpie stopped with an internal error .* try sampler='pymc'"):
        bm.Model(SLEEP_FORMULA, sleep).bayes_model()._sampler.sample(settings)


# ----- no writable cache ---------------------------------------------------------------------------
@pytest.mark.slow  # every kernel is compiled in memory: about 20 s
def test_bayesmix_imports_and_fits_without_a_writable_cache(tmp_path):
    """A read-only installation and a read-only home: numba has nowhere to cache, nor PyTensor.

    Tests run as root, for whom permission bits do not stop writing, so the directories
    are made impossible instead: every ``__pycache__`` of the copied package is a file, and
    HOME and XDG_CACHE_HOME lie under a file.
    """
    copy = tmp_path / "site" / "bayesmix"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for folder in [copy, *(p for p in copy.rglob("*") if p.is_dir())]:
        (folder / "__pycache__").write_text("not a directory")
    (tmp_path / "blocked").write_text("not a directory")
    env = environment(PYTHONPATH=str(tmp_path / "site"), HOME=str(tmp_path / "blocked" / "home"),
                      XDG_CACHE_HOME=str(tmp_path / "blocked" / "cache"), MPLCONFIGDIR=str(tmp_path / "mpl"))
    out = run_python(
        f"""
        import json, warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import bayesmix as bm
            import pandas as pd
            model = bm.Model("Reaction ~ Days + (Days | Subject)", pd.read_csv({str(shared_file('data', 'sleepstudy.csv'))!r}))
            reml = model.fit_reml()
            post = model.sample(draws=20, tune=20, chains=2, seed=1, progressbar=False)
        print(json.dumps({{
            "file": bm.__file__,
            "warnings": [str(w.message) for w in caught if issubclass(w.category, bm.BayesmixWarning) and not issubclass(w.category, bm.ConvergenceWarning)],
            "reml": reml.fixef().tolist(), "post": float(post.posterior["sigma"].mean()),
        }}))
        """,
        env,
        tmp_path,
    )
    report = json.loads(out.splitlines()[-1])
    assert report["file"].startswith(str(copy))
    assert len(report["warnings"]) == 1 and "Compiled code cannot be kept on disk here" in report["warnings"][0]
    assert np.allclose(report["reml"], [251.405, 10.467], atol=1e-3) and np.isfinite(report["post"])


def test_numba_is_given_no_cache_only_when_it_has_nowhere_to_write(tmp_path):
    """With NUMBA_CACHE_DIR unwritable but the installation writable, numba caches beside the code: no warning."""
    (tmp_path / "blocked").write_text("not a directory")
    out = run_python(
        """
        import warnings
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import bayesmix
        print([str(w.message) for w in caught if issubclass(w.category, bayesmix.BayesmixWarning)])
        """,
        environment(NUMBA_CACHE_DIR=str(tmp_path / "blocked" / "numba")),
        tmp_path,
        timeout=120,
    )
    assert out.strip() == "[]"


# ----- same seed, same draws -----------------------------------------------------------------------
@pytest.mark.slow
def test_same_seed_gives_bitwise_the_same_draws_with_a_cold_and_a_warm_cache(tmp_path):
    """Two fresh processes share a cache that is empty when the first starts: every method draws the same bits.

    Before, PyTensor's numba code was compiled with fast-math, which LLVM applied differently
    to a whole log density compiled at once (cold cache) than to cached pieces: the first
    process after a cold cache drew differently from all later ones.
    """
    cache = tmp_path / "cache"
    env = environment(NUMBA_CACHE_DIR=str(cache / "numba"), PYTENSOR_FLAGS=f"base_compiledir={cache / 'pytensor'}")
    script = """
        import hashlib, warnings
        import numpy as np, pandas as pd, bayesmix as bm
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(5)
        a, b, x = rng.integers(0, 6, 120), rng.integers(0, 5, 120), rng.normal(size=120)
        data = pd.DataFrame({"y": 1 + 0.5 * x + rng.normal(size=6)[a] + rng.normal(size=5)[b] + rng.normal(size=120),
                             "x": x, "a": [f"a{i}" for i in a], "b": [f"b{i}" for i in b]})
        cases = [("y ~ x + (1|a) + (1|b)", "full", "pymc"), ("y ~ x + (1|a) + (1|b)", "full", "nutpie"),
                 ("y ~ x + (x|a)", "collapsed", "nutpie")]
        for formula, method, sampler in cases:  # the PyMC model, the precompiled full density, the collapsed one
            post = bm.Model(formula, data).sample(draws=20, tune=30, chains=2, seed=7, progressbar=False, method=method,
                                                  sampler=sampler)
            digest = hashlib.sha256()
            for name in sorted(post.posterior.data_vars):
                digest.update(np.ascontiguousarray(post.posterior[name].values).tobytes())
            print(method, sampler, formula, digest.hexdigest())
        """
    cold = run_python(script, env, tmp_path, timeout=600)
    assert (cache / "pytensor" / "numba").is_dir() and any((cache / "numba").iterdir())  # the first process filled the cache
    warm = run_python(script, env, tmp_path, timeout=600)
    assert len(cold.splitlines()) == 3
    assert cold == warm
