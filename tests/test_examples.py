"""The examples in examples/ run end to end (in quick mode) and their assertions hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import shared_directory, shared_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))
FIGURES = {
    "music_lecture.py": set(),  # a notebook: its figures are cell outputs (tests/test_lecture_notebook.py)
    "music_anxiety.py": {"music_qq_reml.png", "music_qq_posterior.png", "music_ppc.png"},
    "why_mixed_models.py": {"why_mixed_models.png"},
    "case_control_gls.py": set(),
    "glmm_counts_and_proportions.py": set(),
}


def test_every_example_is_listed():
    assert {p.name for p in SCRIPTS} == set(FIGURES)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_is_a_percent_notebook_that_asserts(script):
    text = script.read_text()
    assert text.count("# %% [markdown]") >= 2 and "\n# %%\n" in text
    assert "assert " in text


@pytest.mark.slow  # each example in its own process, fits and all
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.stem)
def test_example_runs_in_quick_mode(script, tmp_path):
    env = {
        **os.environ,
        "BAYESMIX_EXAMPLES_QUICK": "1",
        "BAYESMIX_EXAMPLES_OUT": str(tmp_path / "figures"),
        "BAYESMIX_MUSIC_CSV": str(shared_file("data", "musicdata.csv")),
        "BAYESMIX_DATA_DIR": str(tmp_path / "cache"),  # never touch the user's cache
        "BAYESMIX_GLMM_DIR": str(shared_directory("reference", "glmm")),  # lme4's numbers; the example skips them if absent
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run([sys.executable, str(script)], check=False, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{script.name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    assert f"{script.stem}: all checks passed" in done.stdout
    saved = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert saved == FIGURES[script.name]
