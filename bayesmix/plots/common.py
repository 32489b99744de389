"""What every plot shares: a figure a notebook shows once, the check of its argument, and the
response's label."""

from __future__ import annotations

import textwrap
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ArgumentError
from ..families import Binomial

if TYPE_CHECKING:
    from matplotlib.figure import Figure


# window backends: a script shows their figures with pyplot.show(), so pyplot keeps them
WINDOW_BACKENDS = ("gtk3agg", "gtk3cairo", "gtk4agg", "gtk4cairo", "macosx", "qtagg", "qtcairo", "qt5agg", "qt5cairo",
                   "tkagg", "tkcairo", "wx", "wxagg", "wxcairo")


def new_figure(**kwargs) -> Figure:
    """A figure, ``pyplot.figure(**kwargs)``, closed in pyplot at once unless it is drawn in a window.

    Made through pyplot, it has the active backend's canvas (in Jupyter the inline backend,
    which is what displays a figure that a cell returns); closed there, pyplot no longer
    holds it, so the notebook shows it once, as the cell's value, and not a second time when
    the cell ends (as it shows every figure pyplot still holds). With a window backend (Qt,
    Tk, macOS, ...) pyplot keeps it, so that ``pyplot.show()`` shows it. A constrained
    layout makes room for titles, tick and axis labels unless ``kwargs`` ask otherwise.
    """
    import matplotlib.pyplot as plt

    figure = plt.figure(**{"layout": "constrained", **kwargs})
    if plt.get_backend().lower() not in WINDOW_BACKENDS:
        plt.close(figure)
    return figure


def check_result(result, kinds: tuple[type, ...], function: str) -> None:
    """ArgumentError unless ``result`` is one of ``kinds`` of fit."""
    if not isinstance(result, kinds):
        names = [k.__name__ for k in kinds]
        wanted = " or ".join(filter(None, [", ".join(names[:-1]), names[-1]]))
        raise ArgumentError(f"{function} takes a {wanted} (a fitted model), not {type(result).__name__}.")


def is_binary(design) -> bool:
    """Whether the design's response is binomial with one trial per row (0/1)."""
    return binary_response(design.family, design.rows.weights)


def binary_response(family, weights) -> bool:
    """Whether a response of ``family`` with prior ``weights`` (None: all 1) is binomial with one
    trial per row (0/1)."""
    return isinstance(family, Binomial) and (weights is None or np.all(np.rint(weights) == 1))


def response_label(response: str, family) -> str:
    """The response's name, saying what a binomial response's values are."""
    return f"proportion of successes: {response}" if isinstance(family, Binomial) else response


def wrap_label(text: str, width: int) -> str:
    """``text`` in lines of at most about ``width`` characters, broken after ``", "`` or
    ``" | "`` where it can (parameter names such as ``cor(Intercept, x[level] | g)``)."""
    if len(text) <= width:
        return text
    pieces, lines = text.replace(", ", ",\0").replace(" | ", " |\0").split("\0"), [""]
    for piece in pieces:
        if lines[-1] and len(lines[-1]) + len(piece) + 1 > width:
            lines.append("")
        lines[-1] = f"{lines[-1]} {piece}" if lines[-1] else piece
    return "\n".join(textwrap.fill(line, width) for line in lines)
