"""The lecture notebook examples/music_lecture.ipynb: paired with its percent-format script by
jupytext, and executed by a Jupyter kernel (nbclient), showing the fits' tables and one figure per plot.

Its rendered page in the documentation site (executed in the build) is checked in tests/test_docs.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import shared_file

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOK, SCRIPT = EXAMPLES / "music_lecture.ipynb", EXAMPLES / "music_lecture.py"
PLOTS = ["bm.plot_rank(", "bm.plot_ranef(", "bm.plot_conditional_effects("]


def test_the_notebook_is_the_script_paired_by_jupytext():
    jupytext = pytest.importorskip("jupytext")
    nbformat = pytest.importorskip("nbformat")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    from_script = jupytext.read(SCRIPT)
    cells = [(cell.cell_type, cell.source) for cell in notebook.cells]
    assert cells == [(cell.cell_type, cell.source) for cell in from_script.cells], (
        "examples/music_lecture.ipynb and .py differ: run `jupytext --sync examples/music_lecture.py`"
    )
    assert notebook.metadata["jupytext"]["formats"] == "ipynb,py:percent"
    # committed without outputs: they come from executing it (here and in the docs build)
    assert all(not cell.get("outputs") and cell.get("execution_count") is None for cell in notebook.cells if cell.cell_type == "code")


@pytest.mark.slow  # a kernel fits the model by REML and samples it
def test_the_notebook_runs_in_a_kernel_and_shows_its_tables_and_figures(tmp_path, monkeypatch):
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("ipykernel")
    monkeypatch.setenv("BAYESMIX_MUSIC_CSV", str(shared_file("data", "musicdata.csv")))
    monkeypatch.setenv("BAYESMIX_DATA_DIR", str(tmp_path))  # never touch the user's cache
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert not [o for cell in code for o in cell.outputs if o.output_type == "error"]
    printed = "".join(o.get("text", "") for cell in code for o in cell.outputs if o.output_type == "stream")
    assert "music_lecture: all checks passed" in printed  # the notebook's asserts against lme4's numbers held

    def shown(last_line: str) -> list[dict]:
        """What the cell whose last line starts with ``last_line`` displayed."""
        (cell,) = [cell for cell in code if (cell.source.splitlines()[-1] + "\n").startswith(last_line)]
        return [o.data for o in cell.outputs if o.output_type in ("execute_result", "display_data")]

    for plot in PLOTS:  # each plot: one figure, once
        images = [data for data in shown(plot) if "image/png" in data]
        assert len(images) == 1, f"{plot} showed {len(images)} images"
    tables = {  # each result: an HTML table with its numbers
        "reml\n": ["perform_type[Solo]", "REML"],
        "reml.varcorr()": ["sd", "Intercept"],
        "post\n": ["sd(Intercept)", "perform_type[Solo]"],
        "table.round(2)": ["reml_in_ci", "cor(Intercept, perform_type[Solo])"],
        "coefficients.round(2)": ["posterior", "perform_type[Small Ensemble]"],
    }
    for value, words in tables.items():
        (data,) = shown(value)
        assert "<table" in data["text/html"] and all(word in data["text/html"] for word in words), value
