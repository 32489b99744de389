"""Fuzz: odd data frames and formula fragments through every public entry point.

hypothesis (derandomised, bounded) draws a frame whose columns have any pandas dtype (nullable
integers and floats, pyarrow strings, categoricals, int8 to uint64, complex, datetimes, object
mixes, ...) and a formula built from fragments, and runs ``Model``, ``fit_reml``, ``fit_ml``,
``sample`` with few draws, ``predict``, ``to_netcdf``/``load`` and the command line. Each must
either succeed with finite numbers or raise a ``BayesmixError``: never another exception, never
a NaN estimate.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayesmix as bm
from bayesmix.cli import main

KINDS = [
    "float64", "float32", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "Int64", "Int8", "UInt32", "Float64", "boolean", "bool", "str", "string", "string[pyarrow]",
    "category", "category-int", "complex", "datetime", "timedelta", "object-mixed", "object-numbers",
    "int64[pyarrow]", "double[pyarrow]", "with-missing", "constant", "huge", "tiny",
]
RESPONSES = ["y", "np.log(np.abs(y) + 1)", "I(y * 2)", "scale(y)"]
FIXED = ["x", "1", "0 + x", "C(x)", "I(x^2)", "scale(x)", "x + z", "x * z", "np.sqrt(np.abs(x))", "poly(x, 2)"]
RANDOM = ["(1 | g)", "(x | g)", "(x || g)", "(1 | g:h)", "(1 | g) + (1 | h)", "(0 + x | g)"]

SETTINGS = settings(
    derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck), max_examples=60
)


def column(kind: str, n: int, rng: np.random.Generator, levels: int) -> pd.Series:
    """n values of the given kind."""
    codes = rng.integers(0, levels, n)
    numbers = rng.normal(size=n) * 3
    match kind:
        case "float64" | "float32" | "complex":
            return pd.Series(numbers.astype(kind))
        case "int8" | "int16" | "int32" | "int64" | "uint8" | "uint16" | "uint32" | "uint64" | "Int64" | "Int8" | "UInt32":
            return pd.Series(codes).astype(kind)
        case "Float64":
            return pd.Series(numbers).astype("Float64")
        case "boolean" | "bool":
            return pd.Series(codes % 2 == 0).astype(kind)
        case "str":
            return pd.Series([f"L{c}" for c in codes], dtype=object)
        case "string" | "string[pyarrow]":
            return pd.Series([f"L:{c}" for c in codes], dtype=kind)
        case "category":
            return pd.Series(pd.Categorical([f"c{c}" for c in codes], categories=[f"c{k}" for k in range(levels + 1)]))
        case "category-int":
            return pd.Series(pd.Categorical(codes))
        case "datetime":
            return pd.Series(pd.Timestamp("2020-01-01") + pd.to_timedelta(codes, unit="D"))
        case "timedelta":
            return pd.Series(pd.to_timedelta(codes, unit="h"))
        case "object-mixed":
            return pd.Series([c if c % 2 else f"s{c}" for c in codes], dtype=object)
        case "object-numbers":
            return pd.Series(list(codes), dtype=object)
        case "int64[pyarrow]" | "double[pyarrow]":
            values = codes if kind.startswith("int") else numbers
            return pd.Series(values).astype(kind)
        case "with-missing":
            return pd.Series(np.where(rng.random(n) < 0.2, np.nan, numbers))
        case "constant":
            return pd.Series(np.full(n, 2.5))
        case "huge":
            return pd.Series(numbers * 1e150)
        case "tiny":
            return pd.Series(numbers * 1e-150)
    raise AssertionError(kind)


@st.composite
def cases(draw):
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    n = draw(st.sampled_from([12, 30, 60]))
    levels = draw(st.sampled_from([2, 4, 6]))
    frame = pd.DataFrame({
        "y": column(draw(st.sampled_from(KINDS[:3] + KINDS[10:16] + ["with-missing", "huge", "tiny", "constant", "str"])), n, rng, levels),
        "x": column(draw(st.sampled_from(KINDS)), n, rng, levels),
        "z": column(draw(st.sampled_from(KINDS)), n, rng, levels),
        "g": column(draw(st.sampled_from(KINDS)), n, rng, levels),
        "h": column(draw(st.sampled_from(KINDS)), n, rng, 3),
    })
    if frame["y"].dtype.kind == "f":  # a response with some signal, so that many cases fit
        frame["y"] = frame["y"] + rng.normal(size=n)
    formula = f"{draw(st.sampled_from(RESPONSES))} ~ {draw(st.sampled_from(FIXED))} + {draw(st.sampled_from(RANDOM))}"
    return formula, frame


def finite(values) -> bool:
    array = np.asarray(values, dtype=float)
    return bool(np.isfinite(array).all())


def run(entry: str, function, *args, **kwargs):
    """Call ``function``; a BayesmixError ends the case (returns None), any other exception fails it."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return function(*args, **kwargs)
    except bm.BayesmixError:
        return None
    except Exception as exc:  # noqa: BLE001 - the point of the test
        raise AssertionError(f"{entry} raised {type(exc).__name__}: {exc}") from exc


@SETTINGS
@given(cases())
def test_reml_ml_predict_and_saving_succeed_or_raise_a_bayesmix_error(tmp_path_factory, case):
    formula, frame = case
    model = run("Model", bm.Model, formula, frame)
    if model is None:
        return
    for fit in (model.fit_reml, model.fit_ml):
        result = run(fit.__name__, fit)
        if result is None:
            continue
        assert finite(result.fixef()) and finite(result.sigma), (formula, result.fixef())
        assert finite(result.varcorr()["vcov"]), formula
        predicted = run("predict", result.predict, frame.head(5))
        if predicted is not None:
            assert finite(predicted), formula
        path = tmp_path_factory.mktemp("fuzz") / "fit.nc"
        if run("to_netcdf", result.to_netcdf, path) is not None or path.exists():
            loaded = run("load", bm.load, path)
            if loaded is not None:
                np.testing.assert_array_equal(np.asarray(loaded.fixef()), np.asarray(result.fixef()))


@pytest.mark.slow  # up to 12 sampling runs; models the collapsed sampler cannot take are compiled by nutpie
@settings(SETTINGS, max_examples=12)
@given(cases())
def test_sampling_with_few_draws_succeeds_or_raises_a_bayesmix_error(case):
    formula, frame = case
    model = run("Model", bm.Model, formula, frame)
    if model is None or model.design.n > 40:
        return
    post = run("sample", model.sample, draws=30, tune=30, chains=1, seed=1, progressbar=False)
    if post is not None:
        assert finite(post.fixef()["mean"]), formula


@settings(SETTINGS, max_examples=15)
@given(cases())
def test_the_command_line_exits_0_or_2(tmp_path_factory, capsys, case):
    formula, frame = case
    path = tmp_path_factory.mktemp("cli") / "data.csv"
    frame.to_csv(path, index=False)
    for command in (["design"], ["fit"], ["fit", "--method", "ml"]):
        code = run("cli", main, [command[0], formula, "--data", str(path), *command[1:]])
        assert code in (0, 2), (command, formula)
        err = capsys.readouterr().err
        assert code == 0 or "bayesmix: error: " in err


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_of_column_as_a_predictor_and_a_group(sleep, kind):
    rng = np.random.default_rng(1)
    data = sleep.assign(x=column(kind, len(sleep), rng, 4).to_numpy(), g=column(kind, len(sleep), rng, 6).to_numpy())
    data["x"] = column(kind, len(sleep), rng, 4).set_axis(sleep.index)
    data["g"] = column(kind, len(sleep), rng, 6).set_axis(sleep.index)
    for formula in ("Reaction ~ x + (1 | Subject)", "Reaction ~ Days + (1 | g)", "Reaction ~ Days + (x | Subject)"):
        model = run("Model", bm.Model, formula, data)
        if model is not None:
            result = run("fit_reml", model.fit_reml)
            if result is not None:
                assert finite(result.fixef()), (kind, formula)
