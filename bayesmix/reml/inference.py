"""Simulation from a point-estimate fit and its confidence intervals: the methods that read a
fit through the modules above :mod:`~bayesmix.reml.point` (:mod:`.simulate`, :mod:`.intervals`),
on :class:`InferableFit`, from which :class:`~bayesmix.RemlResult` and
:class:`~bayesmix.GlmmResult` derive (so that :class:`~bayesmix.reml.point.PointFit`, which
those modules read, imports none of them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..results import check_flag
from .intervals import confint
from .point import PointFit
from .simulate import check_nsim, simulate_responses


class InferableFit(PointFit):
    """A :class:`~bayesmix.reml.point.PointFit` that can be simulated from and given confidence
    intervals."""

    def simulate(self, nsim: int = 1, seed: int | None = None, random: bool = True) -> pd.DataFrame:
        """Responses simulated from the fit, as lme4's ``simulate.merMod``: one column per
        simulation (``sim_1``, ...), one row per fitted row.

        ``random`` draws new random effects for each simulation (lme4's default,
        ``use.u = FALSE``); False holds them at their conditional modes (``use.u = TRUE``). The
        response is drawn from the family given the mean (N(μ, σ̂²/w) for a linear model).
        """
        check_flag("random", random)
        draws = simulate_responses(self, check_nsim(nsim), np.random.default_rng(seed), random)
        return pd.DataFrame(draws.T, index=self.design.rows.index, columns=[f"sim_{k + 1}" for k in range(len(draws))])

    def confint(self, method: str = "profile", level: float = 0.95, nsim: int = 500, seed: int | None = None,
                n_jobs: int | None = None, progress: bool = False) -> pd.DataFrame:
        """Confidence intervals of every parameter, as lme4's ``confint.merMod``: ``method`` is
        ``"profile"`` (default), ``"wald"`` or ``"bootstrap"``; see
        :func:`bayesmix.reml.intervals.confint` for the rows and their names."""
        return confint(self, method, level, nsim, seed, n_jobs, progress)
