"""Built-in data: the simulator with the music study's design, and the diary loader."""

from __future__ import annotations

import http.server
import json
import shutil
import threading
import warnings

import numpy as np
import pytest

import bayesmix as bm
from bayesmix import datasets
from bayesmix.datasets import (
    MUSIC_ML_DEVIANCE,
    MUSIC_REML,
    MUSIC_REML_INTERCEPT,
    PERFORM_TYPES,
    load_music,
    simulate_music,
)

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


def test_load_music_from_path_or_environment(monkeypatch, tmp_path):
    path = shared_file("data", "musicdata.csv")
    data = load_music(path)
    assert len(data) == 497 and "Unnamed: 0" not in data.columns
    monkeypatch.setenv("BAYESMIX_MUSIC_CSV", str(path))
    assert load_music().equals(data)
    monkeypatch.delenv("BAYESMIX_MUSIC_CSV")
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(tmp_path))
    with pytest.raises(bm.DataError, match="BAYESMIX_MUSIC_CSV"):
        load_music(download=False)
    with pytest.raises(bm.DataError, match="does not exist"):
        load_music("no/such/file.csv")


def test_data_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("BAYESMIX_DATA_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.data_dir() == tmp_path / "xdg" / "bayesmix"
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(tmp_path / "mine"))
    assert datasets.data_dir() == tmp_path / "mine"


class _Server:
    """A local HTTP server for the files in one directory, counting the requests it answers."""

    def __init__(self, root):
        self.requests = []
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(root), **kwargs)

            def do_GET(self):
                server.requests.append(self.path)
                super().do_GET()

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture()
def served_music(tmp_path):
    root = tmp_path / "www"
    root.mkdir()
    shutil.copy(shared_file("data", "musicdata.csv"), root / "musicdata.csv")
    (root / "other.csv").write_text("a,b\n1,2\n")
    with _Server(root) as server:
        yield server


def test_load_music_downloads_once_into_the_cache(monkeypatch, tmp_path, served_music):
    monkeypatch.delenv("BAYESMIX_MUSIC_CSV", raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(cache))
    monkeypatch.setattr(datasets, "MUSIC_URL", f"{served_music.url}/musicdata.csv")
    data = load_music()
    assert served_music.requests == ["/musicdata.csv"]
    assert (cache / "musicdata.csv").read_bytes() == shared_file("data", "musicdata.csv").read_bytes()
    assert list(cache.iterdir()) == [cache / "musicdata.csv"]  # no temporary file left behind
    assert load_music().equals(data) and len(served_music.requests) == 1  # the second call reads the cache
    assert data.equals(load_music(shared_file("data", "musicdata.csv")))


def test_failed_download_says_to_pass_a_path(monkeypatch, tmp_path, served_music):
    monkeypatch.delenv("BAYESMIX_MUSIC_CSV", raising=False)
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(bm.DataError, match=r"Could not download.*HTTP 404.*pass load_music\('path/to/musicdata.csv'\)"):
        load_music(url=f"{served_music.url}/missing.csv")
    with pytest.raises(bm.DataError, match="not the music data"):
        load_music(url=f"{served_music.url}/other.csv")
    # nothing listens on the port of a closed server: the error of a machine without network
    closed = _Server(tmp_path)
    closed.httpd.server_close()
    with pytest.raises(bm.DataError, match="Could not download.*BAYESMIX_MUSIC_CSV"):
        load_music(url=closed.url + "/musicdata.csv")
    assert not (tmp_path / "cache" / "musicdata.csv").exists()


def test_lme4_figures_match_the_reference_file():
    reference = {m["name"]: m for m in json.loads(shared_file("reference", "lme4_reference.json").read_text())}
    m2, m1, ml = reference["music_m2"], reference["music_m1"], reference["music_m2_ML"]
    sd = lambda m: [r["sdcor"] for r in m["varcorr"] if r["grp"] == "id" and r["var2"] is None]
    cor = [r["sdcor"] for r in m2["varcorr"] if r["var2"] is not None]
    close = lambda ours, theirs: np.testing.assert_allclose(ours, theirs, atol=5.1e-5)
    close(MUSIC_REML["beta"], list(m2["fixef"].values()))
    close(MUSIC_REML["sd"], sd(m2))
    close([MUSIC_REML["corr"][0][1], MUSIC_REML["corr"][0][2], MUSIC_REML["corr"][1][2]], cor)
    close(MUSIC_REML["sigma"], m2["sigma"])
    close(MUSIC_REML["criterion"], m2["criterion"])
    ranef = m2["ranef"]["id"]
    one = ranef["values"][ranef["levels"].index("1")]
    close(MUSIC_REML["musician_1_solo"], m2["fixef"]["(Intercept)"] + m2["fixef"]["perform_typeSolo"] + one[0] + one[2])
    close(MUSIC_REML_INTERCEPT["beta"], list(m1["fixef"].values()))
    close(MUSIC_REML_INTERCEPT["se"], list(m1["se"].values()))
    close(MUSIC_REML_INTERCEPT["sd"], sd(m1))
    close(MUSIC_REML_INTERCEPT["sigma"], m1["sigma"])
    close(MUSIC_REML_INTERCEPT["criterion"], m1["criterion"])
    close(MUSIC_ML_DEVIANCE, ml["criterion"])
