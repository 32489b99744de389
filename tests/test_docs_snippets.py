"""The ```python blocks of the documentation pages run against the installed package.

Rule: every ```python block in docs/*.md runs, except one whose preceding line is an HTML
comment starting with ``<!-- no-run`` (say why after it, e.g. ``<!-- no-run: needs a dask
cluster -->``). The blocks of a page run in order in one namespace, as a reader pastes them
into one session, with nothing defined beforehand: each page imports and loads what it uses.
The README's example is run, and its output compared, by tests/test_docs.py.

All pages run in one subprocess (one import of bayesmix, ~4 s), each page in a fresh
namespace and a fresh working directory, with BAYESMIX_MUSIC_CSV pointing at the shared music
data. The test fails naming the page, block and traceback of every block that raises.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
NO_RUN = "<!-- no-run"
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)

RUNNER = r'''
import json, os, sys, traceback, warnings
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

pages = json.loads(open(sys.argv[1], encoding="utf-8").read())
root = os.getcwd()
failures = 0
for page, blocks in pages.items():
    where = os.path.join(root, page.replace("/", "_").removesuffix(".md"))
    os.makedirs(where)
    os.chdir(where)
    namespace = {"__name__": "__main__"}
    for index, (line, code) in enumerate(blocks):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the pages fit a singular model on purpose
                exec(compile(code, f"{page}, block {index + 1} (line {line})", "exec"), namespace)
        except BaseException:
            failures += 1
            print(f"FAILED {page}, block {index + 1} (line {line}):\n{code}\n{traceback.format_exc()}", file=sys.stderr)
            break  # later blocks of the page depend on this one
    plt.close("all")
    print(f"ran {page}: {len(blocks)} block(s)", flush=True)
sys.exit(1 if failures else 0)
'''


def runnable_blocks(text: str) -> list[tuple[int, str]]:
    """(line number, code) of every ```python block not marked ``<!-- no-run``."""
    blocks = []
    for match in FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1].strip()
        if not before.startswith(NO_RUN):
            blocks.append((text.count("\n", 0, match.start()) + 2, match.group(1)))
    return blocks


def doc_pages() -> dict[str, list[tuple[int, str]]]:
    pages = {}
    for path in sorted(DOCS.glob("*.md")):
        blocks = runnable_blocks(path.read_text(encoding="utf-8"))
        if blocks:
            pages[f"docs/{path.name}"] = blocks
    return pages


def test_the_rule_picks_blocks():
    text = "a\n\n```python\nx = 1\n```\n\n<!-- no-run: a cluster -->\n```python\nraise SystemExit\n```\n```text\nno\n```\n"
    assert runnable_blocks(text) == [(4, "x = 1\n")]
    pages = doc_pages()
    # the guide pages that show code a reader runs
    for page in ["getting-started", "reml", "bayes", "priors", "diagnostics", "predictions"]:
        assert f"docs/{page}.md" in pages, page
    # every no-run marker stands right before a python block
    for path in DOCS.glob("*.md"):
        lines = path.read_text(encoding="utf-8").splitlines()
        for k, line in enumerate(lines):
            if line.strip().startswith(NO_RUN):
                assert k + 1 < len(lines) and lines[k + 1].startswith("```python"), f"{path.name}:{k + 1}"


@pytest.mark.slow  # every page samples or fits in a subprocess
def test_every_python_block_in_the_docs_runs(tmp_path):
    (tmp_path / "pages.json").write_text(json.dumps(doc_pages()), encoding="utf-8")
    (tmp_path / "runner.py").write_text(RUNNER, encoding="utf-8")
    env = {
        **os.environ,
        "BAYESMIX_MUSIC_CSV": str(shared_file("data", "musicdata.csv")),
        "BAYESMIX_DATA_DIR": str(tmp_path / "cache"),  # nothing is downloaded or cached elsewhere
        "MPLBACKEND": "Agg",
    }
    done = subprocess.run(
        [sys.executable, str(tmp_path / "runner.py"), str(tmp_path / "pages.json")],
        check=False, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-8000:]}"
