"""``Model``: one formula and data set, fitted by REML/ML or (later) sampled."""

from __future__ import annotations

import pandas as pd

from .design import Design, make_design
from .formula import MixedFormula
from .reml import RemlResult, fit_reml


class Model:
    """A linear mixed model from an lme4-style formula and a DataFrame.

    Parameters
    ----------
    formula
        E.g. ``"na ~ perform_type + (perform_type | id)"``; see the formula syntax reference.
    data
        The data; rows with missing values in used columns are dropped with a warning.

    Examples
    --------
    >>> model = Model("na ~ perform_type + (perform_type | id)", music)  # doctest: +SKIP
    >>> reml = model.fit_reml()                                            # doctest: +SKIP
    >>> reml.coef().loc[1]                                                 # doctest: +SKIP
    """

    def __init__(self, formula: str | MixedFormula, data: pd.DataFrame):
        self.design: Design = make_design(formula, data)

    @property
    def formula(self) -> MixedFormula:
        """The parsed formula."""
        return self.design.formula

    def fit_reml(self) -> RemlResult:
        """REML estimates, as lme4's ``lmer(formula, data)``."""
        return fit_reml(self.design, reml=True)

    def fit_ml(self) -> RemlResult:
        """Maximum-likelihood estimates, as lme4's ``lmer(formula, data, REML = FALSE)``."""
        return fit_reml(self.design, reml=False)

    def __repr__(self) -> str:
        return f"Model({self.design.formula.text!r}, n={self.design.n})"
