"""Griffe extension for the docs: show Sphinx roles in docstrings as code.

The docstrings use Sphinx cross-reference roles (``:class:`~bayesmix.ConvergenceWarning```,
``:func:`prior```), which mkdocstrings would print verbatim. This turns each into a code span
with the name as Sphinx would display it (``~`` keeps only the last component).
"""

from __future__ import annotations

import re

import griffe

ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|obj|exc):`(~?)([^`]+)`")


def _display(match: re.Match) -> str:
    tilde, target = match.groups()
    return f"`{target.rsplit('.', 1)[-1] if tilde else target}`"


class SphinxRoles(griffe.Extension):
    def on_instance(self, *, obj: griffe.Object, **kwargs) -> None:
        if obj.docstring is not None:
            obj.docstring.value = ROLE.sub(_display, obj.docstring.value)
