"""MkDocs hooks: render the jupytext percent-format scripts in examples/ as documentation pages.

Each ``examples/NAME.py`` becomes the page ``examples/NAME.md``: markdown cells (``# %% [markdown]``)
become text, code cells (``# %%``) become Python code blocks. A script paired by jupytext with a
notebook ``examples/NAME.ipynb`` is instead rendered from the notebook, with the outputs of its
execution, by the mkdocs-jupyter plugin (which sees the file because these hooks run first).
The scripts and notebooks stay the single source; nothing is written into docs/.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def percent_to_markdown(text: str, name: str) -> str:
    """Markdown for a jupytext percent-format script."""
    lines = text.splitlines()
    if lines and lines[0] == "# ---":  # jupytext header
        lines = lines[lines.index("# ---", 1) + 1 :]
    cells, kind, body = [], None, []
    for line in [*lines, "# %%"]:
        if line.startswith("# %%"):
            if kind is not None:
                cells.append((kind, body))
            kind, body = ("markdown" if "[markdown]" in line else "code"), []
        elif kind is not None:
            body.append(line)
    out = []
    for kind, body in cells:
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        if not body:
            continue
        if kind == "markdown":
            out.append("\n".join(line[2:] if line.startswith("# ") else line.lstrip("#") for line in body))
        else:
            out.append("```python\n" + "\n".join(body) + "\n```")
    note = (
        f"!!! note \"Run it\"\n    This page is the script `examples/{name}`. Run it with "
        f"`python examples/{name}`, or open it in Jupyter as a notebook with jupytext.\n"
    )
    return out[0] + "\n\n" + note + "\n" + "\n\n".join(out[1:]) + "\n"


@event_priority(50)  # before mkdocs-jupyter's on_files, which renders the notebooks added here
def on_files(files, config):
    for script in sorted(EXAMPLES.glob("*.py")):
        notebook = script.with_suffix(".ipynb")
        if notebook.is_file():
            files.append(File.generated(config, f"examples/{notebook.name}", abs_src_path=str(notebook)))
            continue
        content = percent_to_markdown(script.read_text(encoding="utf-8"), script.name)
        files.append(File.generated(config, f"examples/{script.stem}.md", content=content))
    return files


def on_serve(server, config, builder):
    server.watch(str(EXAMPLES))
    return server
