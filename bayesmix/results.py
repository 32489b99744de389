"""What both kinds of result do alike with new data: materialise it like the fitted rows, refuse
levels not seen in fitting unless told what to do with them, and hand dask input to a lazy map.

:class:`~bayesmix.RemlResult` and :class:`~bayesmix.BayesResult` derive from :class:`FittedModel`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from .data.dask_data import is_dask_frame, lazy_map
from .data.design import Design, Rows
from .data.newdata import new_data
from .errors import ArgumentError, DataError


class FittedModel:
    """A fit of a :class:`~bayesmix.data.design.Design`: the shared preamble of ``predict``."""

    design: Design

    def _new_rows(self, newdata: pd.DataFrame, random: bool, unseen_allowed: bool, remedy: str) -> Rows:
        """``newdata`` materialised like the fitted rows; DataError naming the first grouping factor
        with levels not in the fitted data when ``random`` effects are asked for and
        ``unseen_allowed`` is False (``remedy`` says which argument allows them)."""
        new = new_data(self.design, newdata, random)
        if random and new.unseen and not unseen_allowed:
            group, levels = next(iter(new.unseen.items()))
            raise DataError(
                f"newdata has level(s) {levels[:5]} of grouping factor {group!r} that were not in the fitted data; "
                f"{remedy}"
            )
        return new


def check_flag(name: str, value) -> None:
    """ArgumentError unless ``value`` is True or False."""
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentError(f"{name} must be True or False, not {value!r}.")


def check_prob(name: str, value) -> None:
    """ArgumentError unless ``value`` is a probability strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not 0 < value < 1:
        raise ArgumentError(f"{name} must be a probability strictly between 0 and 1, e.g. 0.95, not {value!r}.")


def lazily(newdata, predict: Callable[[pd.DataFrame], pd.Series]):
    """For a dask DataFrame, ``predict`` mapped over its partitions (a lazy dask Series named
    ``predicted``); None for any other input."""
    return lazy_map(newdata, predict, ("predicted", float)) if is_dask_frame(newdata) else None
