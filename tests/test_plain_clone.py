"""Tests from a plain clone (issue 17): without ../shared a test skips, saying why and how to get
the file, except under BAYESMIX_REQUIRE_SHARED (CI), where it fails; the music data are also
found where ``load_music()`` caches them."""

from __future__ import annotations

import pytest

from . import conftest
from .conftest import shared_file


def test_without_shared_tests_skip_saying_why(monkeypatch, tmp_path):
    monkeypatch.setattr(conftest, "SHARED", tmp_path / "no-shared")
    monkeypatch.delenv("BAYESMIX_REQUIRE_SHARED", raising=False)
    monkeypatch.delenv("BAYESMIX_MUSIC_CSV", raising=False)
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(tmp_path / "cache"))
    with pytest.raises(pytest.skip.Exception, match="sleepstudy.csv is not in ../shared.*shared folder"):
        shared_file("data", "sleepstudy.csv")
    with pytest.raises(pytest.skip.Exception, match="BAYESMIX_MUSIC_CSV.*load_music"):
        shared_file("data", "musicdata.csv")
    music = tmp_path / "cache" / "musicdata.csv"  # where load_music() caches its download
    music.parent.mkdir()
    music.write_text("id,perform_type,na\n")
    assert shared_file("data", "musicdata.csv") == music
    monkeypatch.setenv("BAYESMIX_REQUIRE_SHARED", "1")  # as CI runs: ../shared or a failure
    with pytest.raises(pytest.fail.Exception, match="BAYESMIX_REQUIRE_SHARED"):
        shared_file("data", "sleepstudy.csv")
