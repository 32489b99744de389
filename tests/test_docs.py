"""The documentation site builds with ``mkdocs build --strict`` and documents every public name."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import bayesmix
from bayesmix import datasets

from .conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
DATASETS_API = ["load_music", "simulate_music", "data_dir", "MUSIC_URL", "MUSIC_REML", "MUSIC_REML_INTERCEPT", "MUSIC_ML_DEVIANCE"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)],
        check=False,
        cwd=ROOT,
        # the lecture notebook is executed in the build and reads the music data
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "BAYESMIX_MUSIC_CSV": str(shared_file("data", "musicdata.csv"))},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return out


def test_every_public_name_is_in_the_api_reference(site):
    html = (site / "api" / "index.html").read_text(encoding="utf-8")
    documented = set(re.findall(r'id="(bayesmix\.[\w.]+)"', html))
    missing = [name for name in bayesmix.__all__ if f"bayesmix.{name}" not in documented]
    assert not missing, f"add these to docs/api.md: {missing}"
    missing = [name for name in DATASETS_API if f"bayesmix.datasets.{name}" not in documented]
    assert not missing, f"add these to docs/api.md: {missing}"
    assert all(hasattr(datasets, name) for name in DATASETS_API)


def test_every_example_is_a_page_with_its_code(site):
    for script in sorted((ROOT / "examples").glob("*.py")):
        page = site / "examples" / script.stem / "index.html"
        assert page.is_file(), f"{script.name} has no page"
        html = page.read_text(encoding="utf-8")
        assert "<h1" in html and html.count('class="highlight') >= 3 and ">assert<" in html  # highlight-ipynb: a notebook


LECTURE_TABLES, LECTURE_FIGURES = 7, 3  # the notebook's data frames and results; rank, caterpillar and effects plots


def test_the_lecture_notebook_page_has_its_outputs(site):
    """The page of examples/music_lecture.ipynb carries its executed outputs: tables, figures, no errors."""
    html = (site / "examples" / "music_lecture" / "index.html").read_text(encoding="utf-8")
    assert html.count("<table") == LECTURE_TABLES
    assert len(re.findall(r'<img [^>]*src="data:image/png;base64,', html)) == LECTURE_FIGURES
    assert "music_lecture: all checks passed" in html and "Traceback" not in html
    assert (site / "examples" / "music_lecture" / "music_lecture.ipynb").is_file()  # the download link's target


def _chromium() -> str | None:
    """A Chromium for playwright: the system's (Debian's package, as .ci/run installs it) or playwright's own."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


def test_the_lecture_notebook_page_shows_its_tables_and_figures_in_a_browser(site):
    """Headless Chromium opens the page: the figures decode to images of their size and the tables have rows."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = _chromium()
    if executable is None:
        pytest.skip("no Chromium: `apt-get install chromium` (as .ci/run does when it runs as root)")
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto((site / "examples" / "music_lecture" / "index.html").as_uri())
        page.wait_for_load_state("load")
        images = page.evaluate(
            "() => [...document.images].filter(i => i.src.startsWith('data:image/png'))"
            ".map(i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width])"
        )
        tables = page.evaluate("() => [...document.querySelectorAll('table')].map(t => [t.rows.length, t.getBoundingClientRect().width])")
        browser.close()
    assert len(images) == LECTURE_FIGURES and all(w > 300 and h > 300 and shown > 300 for w, h, shown in images), images
    assert len(tables) == LECTURE_TABLES and all(rows >= 4 and width > 100 for rows, width in tables), tables


def test_guide_pages_are_built(site):
    for page in ["getting-started", "cli", "formula", "reml", "bayes", "bayes-glmm", "glmm", "priors", "reml-vs-bayes",
                 "diagnostics", "plots", "predictions", "dask", "examples", "datasets", "api"]:
        assert (site / page / "index.html").is_file(), page


def _fenced(text: str, fence: str, after: str) -> str:
    start = text.index(fence, text.index(after)) + len(fence)
    return text[start : text.index("```", start)]


def test_readme_example_prints_what_the_readme_shows(tmp_path):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    code, shown = _fenced(readme, "```python\n", "## Example"), _fenced(readme, "```text\n", "## Example")
    (tmp_path / "example.py").write_text(code)
    env = {**os.environ, "BAYESMIX_MUSIC_CSV": str(shared_file("data", "musicdata.csv")), "BAYESMIX_DATA_DIR": str(tmp_path)}
    done = subprocess.run([sys.executable, "example.py"], check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    number = re.compile(r"-?\d+\.\d+")
    assert number.sub("#", done.stdout).split() == number.sub("#", shown).split(), "the README's example output is out of date"
    printed, expected = [float(x) for x in number.findall(done.stdout)], [float(x) for x in number.findall(shown)]
    # the same seed gives the same draws; allow for changes of the sampler within Monte Carlo error
    assert max(abs(a - b) for a, b in zip(printed, expected)) < 0.25, "the README's example output is out of date"
