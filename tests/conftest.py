"""Shared fixtures: the data sets and references of ../shared, a small hand-checkable frame, and fits that tests only read.

The data and reference files are read from ../shared (beside the project root), as in CI;
they are not copied into the repository (the project's rule for ../shared). From a plain
clone the music data are read from where ``load_music()`` finds them (``BAYESMIX_MUSIC_CSV``
or its cache), and a test whose file is nowhere is skipped, saying so and how to get it. With
``BAYESMIX_REQUIRE_SHARED=1`` (as .ci/run sets it) ../shared must be there: a missing file fails.

A fit that several test modules read is made once per session here (sampling is what makes
the suite slow); a test that changes a result makes its own."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import os  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def require_cholmod() -> None:
    """Skip the calling test without CHOLMOD (the extra ``bayesmix[sparse]``); under
    ``BAYESMIX_REQUIRE_SPARSE=1`` (as .ci/run sets it) fail instead, so CI tests the sparse path."""
    from bayesmix.linalg.sparse import INSTALL_HINT, cholmod_available

    if cholmod_available():
        return
    if os.environ.get("BAYESMIX_REQUIRE_SPARSE"):
        pytest.fail(f"scikit-sparse is not installed, and BAYESMIX_REQUIRE_SPARSE is set: {INSTALL_HINT}")
    pytest.skip(f"the sparse factorisation needs scikit-sparse: {INSTALL_HINT}")


def shared_file(*parts: str) -> Path:
    """A file of ../shared by its path there (``"data", "sleepstudy.csv"``): from ../shared when it
    is present, else for the music data the file ``load_music()`` would read; the test is
    skipped when there is none (it fails instead under ``BAYESMIX_REQUIRE_SHARED=1``)."""
    path = SHARED.joinpath(*parts)
    if path.is_file():
        return path
    if os.environ.get("BAYESMIX_REQUIRE_SHARED"):
        pytest.fail(f"{path} is missing: with BAYESMIX_REQUIRE_SHARED set the tests read ../shared beside the project root")
    candidates = []
    if parts == ("data", "musicdata.csv"):
        from bayesmix.datasets import data_dir

        candidates = [Path(p) for p in [os.environ.get("BAYESMIX_MUSIC_CSV")] if p] + [data_dir() / "musicdata.csv"]
    found = next((c for c in candidates if c.is_file()), None)
    if found is None:
        pytest.skip(f"{'/'.join(parts)} is not in ../shared beside the project root"
                    + (": set BAYESMIX_MUSIC_CSV, or run bayesmix.datasets.load_music() once to cache it"
                       if parts[-1] == "musicdata.csv" else
                       ": the project's data and references are not copied into the repository; put the shared "
                       "folder beside the project root"), allow_module_level=True)
    return found


def shared_directory(*parts: str) -> Path:
    """A directory of ../shared (``"reference", "glmm"``)."""
    return SHARED.joinpath(*parts)


def glmm_file(name: str) -> Path:
    """A file of the GLMM references (../shared/reference/glmm): lme4, glmmTMB and brms fits and their data."""
    return shared_file("reference", "glmm", name)


def glmm_reference(name: str) -> dict:
    """One model of ``glmm_reference.json`` by its name (``"cbpp_binomial"``)."""
    import json

    models = json.loads(glmm_file("glmm_reference.json").read_text())["models"]
    return next(m for m in models if m["name"] == name)


def reference_values(block: dict) -> np.ndarray:
    """A reference's named numbers (``{"(Intercept)": ..., "period2": ...}``) as an array, in order."""
    return np.array(list(block.values()), dtype=float)


@pytest.fixture(scope="session")
def cbpp() -> pd.DataFrame:
    """lme4's cbpp data, with herd and period as text (factors, as R reads them)."""
    return pd.read_csv(glmm_file("cbpp.csv"), dtype={"herd": str, "period": str})


@pytest.fixture(scope="session")
def music() -> pd.DataFrame:
    return pd.read_csv(shared_file("data", "musicdata.csv"))


@pytest.fixture(scope="session")
def sleep() -> pd.DataFrame:
    return pd.read_csv(shared_file("data", "sleepstudy.csv"))


MUSIC_FORMULA = "na ~ perform_type + (perform_type | id)"

# The test files that read a session fit below, by fixture. Under pytest-xdist (`-n 2 --dist
# loadfile`, as CI runs) one process takes each group whole, so the fit is sampled once, not
# once per process.
SESSION_FIT_READERS = {"music_full_posterior": ("tests/test_bayes_music.py", "tests/test_collapsed.py")}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """``--dist loadfile`` that sends the files of each group in SESSION_FIT_READERS to one process."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    group_of = {path: fixture for fixture, paths in SESSION_FIT_READERS.items() for path in paths}

    class SessionFitScheduling(LoadFileScheduling):
        def _split_scope(self, nodeid: str) -> str:
            path = super()._split_scope(nodeid)
            return group_of.get(path, path)

    return SessionFitScheduling(config, log)


@pytest.fixture(scope="session")
def music_full_posterior(music):
    """The full PyMC model (NUTS samples the random effects too) of the lecture's music model, 4 x 2000 draws.

    Read by tests/test_bayes_music.py (diagnostics, brms agreement, predictions) and by
    tests/test_collapsed.py (the collapsed sampler's posterior against it).
    """
    import bayesmix as bm

    # the SD of the Solo slope, whose REML estimate is on the boundary, mixes slowest (bulk ESS
    # about 480 per 4000 draws), and R-hat <= 1.01 needs more than that
    return bm.Model(MUSIC_FORMULA, music).sample(draws=2000, tune=1000, chains=4, seed=1, progressbar=False, method="full")


@pytest.fixture()
def small() -> pd.DataFrame:
    """Nine rows whose model matrices are easy to write down by hand."""
    return pd.DataFrame(
        {
            "y": [1.0, 3.0, 2.0, 5.0, 4.0, 6.0, 9.0, 7.0, 8.0],
            "x": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0],
            "z": [0.5, -1.0, 2.0, 0.0, 1.5, -0.5, 1.0, 3.0, -2.0],
            "f": ["lo", "mid", "hi", "lo", "mid", "hi", "lo", "mid", "hi"],
            "k": [1, 2, 2, 1, 2, 2, 1, 2, 2],
            "g": ["g1", "g1", "g1", "g2", "g2", "g2", "g3", "g3", "g3"],
            "h": [3, 1, 2, 3, 1, 2, 3, 1, 2],
            "a": ["A", "A", "A", "A", "B", "B", "B", "B", "B"],
            "b": ["u", "u", "v", "v", "u", "u", "v", "v", "v"],
            "my group": ["p", "q", "p", "q", "p", "q", "p", "q", "p"],
        }
    )


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(20261124)
