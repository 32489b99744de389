"""Fixtures of the robustness suite: small fits shared by its modules, and quiet fitting helpers.

The session fixtures in ../conftest.py (``sleep``, ``music``, ``small``, ``rng``) give the data;
nothing here copies it.
"""

from __future__ import annotations

import warnings

import pytest

import bayesmix as bm

SLEEP_FORMULA = "Reaction ~ Days + (Days | Subject)"
TINY = {"draws": 100, "tune": 100, "chains": 2, "progressbar": False}


def quiet(function, *args, **kwargs):
    """Call ``function`` with bayesmix's statistical warnings silenced (not other warnings)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        return function(*args, **kwargs)


def fit(formula: str, data, reml: bool = True) -> bm.RemlResult:
    """A REML (or ML) fit with bayesmix's warnings silenced."""
    model = quiet(bm.Model, formula, data)
    return quiet(model.fit_reml if reml else model.fit_ml)


@pytest.fixture(scope="session")
def sleep_model(sleep) -> bm.Model:
    return bm.Model(SLEEP_FORMULA, sleep)


@pytest.fixture(scope="session")
def sleep_reml(sleep_model) -> bm.RemlResult:
    return sleep_model.fit_reml()


@pytest.fixture(scope="session")
def sleep_post(sleep_model) -> bm.BayesResult:
    """A tiny posterior (2 chains x 100 draws, collapsed sampler): enough to exercise the interface."""
    return quiet(sleep_model.sample, seed=11, **TINY)
