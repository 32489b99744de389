"""The bayesmix exception and warning family.

Every error a user can cause is a :class:`BayesmixError`; its message names the
formula term, column or value at fault and says how to fix it. Statistical trouble
that still leaves a usable answer (a singular fit, divergences, high R-hat) is a
:class:`BayesmixWarning` instead.
"""

from __future__ import annotations

import os
import warnings

#: The directory of the bayesmix package: frames in it are not where a warning is shown.
PACKAGE_DIRECTORY = os.path.dirname(os.path.abspath(__file__)) + os.sep


class BayesmixError(Exception):
    """Base class of every error bayesmix raises on purpose."""


class FormulaError(BayesmixError, ValueError):
    """The formula text cannot be read as an lme4-style mixed-model formula.

    Parameters
    ----------
    message
        What is wrong and how to fix it.
    formula
        The formula text, if known; shown with a caret under ``position``.
    position
        0-based character offset of the offending place in ``formula``.
    """

    def __init__(self, message: str, formula: str | None = None, position: int | None = None):
        self.message = message
        self.formula = formula
        self.position = position
        text = message
        if formula is not None:
            text += f"\n    {formula}"
            if position is not None:
                text += "\n    " + " " * max(0, min(position, len(formula))) + "^"
        super().__init__(text)


class DataError(BayesmixError, ValueError):
    """The data cannot be used with the formula (missing column, wrong type, ...)."""


class FitError(BayesmixError, RuntimeError):
    """A fit could not be completed (the optimiser found no finite criterion, non-finite estimates, ...).

    Parameters
    ----------
    message
        What went wrong and what to try.
    optsummary
        The optimiser's record (:class:`bayesmix.reml.OptSummary`), when an optimisation failed.
    """

    def __init__(self, message: str, optsummary=None):
        super().__init__(message)
        self.optsummary = optsummary


class PriorError(BayesmixError, ValueError):
    """A prior specification that cannot be used (wrong class, shape, sign or target)."""


class ArgumentError(BayesmixError, ValueError):
    """An argument out of its range or of the wrong type (sampler settings, options, ...)."""


class BayesmixWarning(UserWarning):
    """Base class of every warning bayesmix issues."""


class MissingDataWarning(BayesmixWarning):
    """Rows were dropped because a used column had a missing value."""


class RankDeficiencyWarning(BayesmixWarning):
    """Columns are linearly dependent: fixed-effect columns were dropped (as lme4 does), or a
    random slope is constant within every group and so confounded with the random intercept."""


class ConvergenceWarning(BayesmixWarning):
    """A fit reached a boundary, failed to converge, or sampled poorly.

    ``optsummary`` holds the optimiser's record when the warning comes from a REML/ML fit
    (``record.message.optsummary`` of a caught warning), else None.
    """

    def __init__(self, message: str = "", optsummary=None):
        super().__init__(message)
        self.optsummary = optsummary


class SeparationWarning(BayesmixWarning):
    """The data separate some fixed effects of a binomial or count model: a linear combination
    of them predicts every response at its bound (all successes or all failures, or zero
    counts), so their maximum-likelihood estimates are infinite."""


def warn(message: str | Warning, category: type[Warning] | None = None) -> None:
    """Issue a warning attributed to the caller's own code: the first frame outside the bayesmix
    package (the notebook cell or script line that called bayesmix), however deep inside bayesmix
    the warning is raised. The one way bayesmix warns (``warnings.warn`` with
    ``skip_file_prefixes``; a ``message`` that is a Warning instance carries its category)."""
    warnings.warn(message, category, skip_file_prefixes=(PACKAGE_DIRECTORY,))
