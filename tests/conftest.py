"""Shared fixtures: the data sets in ../shared/data and a small hand-checkable frame."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def shared_file(*parts: str) -> Path:
    """A file under ../shared (beside the project root); fails loudly when it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.is_file():
        pytest.fail(f"{path} is missing: the tests read ../shared beside the project root")
    return path


@pytest.fixture(scope="session")
def music() -> pd.DataFrame:
    return pd.read_csv(shared_file("data", "musicdata.csv"))


@pytest.fixture(scope="session")
def sleep() -> pd.DataFrame:
    return pd.read_csv(shared_file("data", "sleepstudy.csv"))


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
