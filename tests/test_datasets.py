"""Built-in data: the simulator with the music study's design, and the diary loader."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.datasets import PERFORM_TYPES, load_music, simulate_music

from .conftest import shared_file


def test_simulator_has_the_study_design():
    data = simulate_music(seed=3)
    assert len(data) == 497 and data["id"].nunique() == 37
    assert set(data["perform_type"]) == set(PERFORM_TYPES)
    assert data.groupby("id").size().between(2, 15).all()
    assert data.equals(simulate_music(seed=3)) and not data.equals(simulate_music(seed=4))


def test_simulator_recovers_its_parameters_on_average():
    fits = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # some simulated data sets fit singular
        for seed in range(8):
            fits.append(bm.Model("na ~ perform_type + (perform_type | id)", simulate_music(seed=seed)).fit_reml().fixef())
    mean = np.mean(fits, axis=0)
    # each REML estimate has SE about 0.55-0.75 (lecture's fit): the mean of 8 is within 3 SE / sqrt(8)
    np.testing.assert_allclose(mean, [15.0503, 0.6996, 2.0134], atol=3 * 0.75 / np.sqrt(8))


def test_simulator_rejects_bad_parameters():
    with pytest.raises(bm.DataError, match="three beta values"):
        simulate_music(beta=(1, 2))
    with pytest.raises(bm.DataError, match="sigma > 0"):
        simulate_music(sigma=0)
    with pytest.raises(bm.DataError, match="n_diaries must lie between"):
        simulate_music(n_diaries=10)


def test_load_music_from_path_or_environment(monkeypatch):
    path = shared_file("data", "musicdata.csv")
    data = load_music(path)
    assert len(data) == 497 and "Unnamed: 0" not in data.columns
    monkeypatch.setenv("BAYESMIX_MUSIC_CSV", str(path))
    assert load_music().equals(data)
    monkeypatch.delenv("BAYESMIX_MUSIC_CSV")
    with pytest.raises(bm.DataError, match="BAYESMIX_MUSIC_CSV"):
        load_music()
    with pytest.raises(bm.DataError, match="does not exist"):
        load_music("no/such/file.csv")

