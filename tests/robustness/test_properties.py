"""Property tests (hypothesis, derandomised, bounded): what holds for every formula and data set.

- Any formula over any small data frame either fits by REML, with finite estimates, or raises
  a BayesmixError: never another exception, never a NaN.
- Formula text from lme4's alphabet either parses or raises FormulaError.
- The REML criterion, at a fixed θ and at the optimum, does not depend on the order of the
  rows or on the names of the levels.
- Unused categories, in the fitted data or in new data, change no prediction.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import bayesmix as bm
from bayesmix.reml.criterion import ProfiledCriterion
from bayesmix.data.crossprod import cross_products
from bayesmix.data.layout import structure_of

pytestmark = pytest.mark.filterwarnings("error::pandas.errors.PandasChangeWarning")

PROPERTY = settings(
    derandomize=True, max_examples=60, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)


# ----- any formula, any data ------------------------------------------------------------------------
# usable terms first; then terms that are wrong for some or all data (each drawn about one time in ten)
FIXED_TERMS = ["x", "k", "f", "b", "x:f", "C(k)", "scale(x)", "I(x * 2)", "x + x", "center(x)"]
BAD_FIXED = ["np.log(x)", "np.exp(x)", "factor(k)", "zz", "c0", "x:zz"]
BARS = ["(1 | g)", "(x | g)", "(x || g)", "(1 | g/h)", "(1 | g:h)", "(f | g)", "(0 + x | h)", "(1 | h)", "(b | g)", "(k | g)",
        "(x + k | h)", "(1 | f)"]
BAD_BARS = ["(1 | zz)", "(c0 | g)", "(0 | g)", "(1 | b:g:h)"]
RESPONSES = ["y", "y", "y", "np.exp(y / 1e6)", "x", "k"]
BAD_RESPONSES = ["np.log(y)", "f", "zz", "b", "y + x"]


@st.composite
def frames(draw) -> pd.DataFrame:
    seed = draw(st.integers(0, 2**32 - 1))
    n = 0 if rarely(draw) else draw(st.sampled_from([40, 25, 12, 6]))
    rng = np.random.default_rng(seed)
    n_groups = draw(st.sampled_from([6, 3, 2, 1]))
    g = rng.integers(0, n_groups, n)
    frame = pd.DataFrame({
        "y": rng.normal(size=n) * draw(st.sampled_from([1e-6, 1.0, 1e6])) + rng.normal(size=n_groups)[g],
        "x": rng.normal(size=n) * draw(st.sampled_from([1e-8, 1.0, 1e8])),
        "k": rng.integers(0, 3, n),
        "f": rng.choice(["a", "b", "c"], n),
        "b": rng.random(n) > 0.5,
        "c0": np.full(n, 2.0),
        "g": g,
        "h": rng.integers(0, 3, n),
    })
    kind = draw(st.sampled_from(["int", "str", "category", "float", "bool"]))
    frame["g"] = {"int": g, "str": g.astype(str), "category": pd.Categorical(g), "float": g.astype(float), "bool": g % 2 == 0}[kind]
    if draw(st.booleans()):
        frame["f"] = pd.Categorical(frame["f"], categories=["a", "b", "c", "unused"])
    for column in draw(st.lists(st.sampled_from(["x", "y", "f", "g"]), max_size=2)):  # missing values, 10% of rows
        keep = rng.random(n) > 0.1
        frame[column] = frame[column].astype(object).where(keep, None) if column in ("f", "g") else frame[column].where(keep)
    if rarely(draw) and n:
        frame.loc[frame.index[0], "y"] = draw(st.sampled_from([np.inf, 1e300, np.nan, -np.inf]))
    return frame


def rarely(draw) -> bool:
    return draw(st.integers(0, 9)) == 9


@st.composite
def formulas(draw) -> str:
    response = draw(st.sampled_from(BAD_RESPONSES if rarely(draw) else RESPONSES))
    fixed = draw(st.lists(st.sampled_from(FIXED_TERMS), max_size=3, unique=True))
    if rarely(draw):
        fixed.append(draw(st.sampled_from(BAD_FIXED)))
    if rarely(draw):
        fixed = ["0", *fixed]
    bars = draw(st.lists(st.sampled_from(BARS), min_size=0 if rarely(draw) else 1, max_size=2, unique=True))
    if rarely(draw):
        bars.append(draw(st.sampled_from(BAD_BARS)))
    return f"{response} ~ " + " + ".join([*fixed, *bars] or ["1"])


def _finite(result: bm.RemlResult) -> bool:
    values = [result.fixef().to_numpy(), result.theta.to_numpy(), [result.sigma, result.criterion], result.fitted().to_numpy()]
    return all(np.isfinite(v).all() for v in values)


@PROPERTY
@given(formula=formulas(), data=frames())
def test_any_formula_fits_or_raises_a_bayesmix_error(formula, data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        warnings.simplefilter("error", RuntimeWarning)  # overflow or invalid values inside a fit are bugs too
        try:
            result = bm.Model(formula, data).fit_reml()
        except bm.BayesmixError as error:
            event(f"raised {type(error).__name__}")
            return
    event("fitted")
    assert _finite(result), (formula, result)


@PROPERTY
@given(text=st.lists(st.sampled_from(["y", "x", "g", "h", "~", "+", "-", "|", "||", "(", ")", "1", "0", ":", "/", "*", " ", "np.log(", "`a b`", "C(", ","]), max_size=14).map("".join))
def test_formula_text_parses_or_raises_a_formula_error(text):
    try:
        parsed = bm.parse_formula(text)
    except bm.FormulaError as error:
        assert error.position is None or 0 <= error.position <= len(text)
        return
    assert parsed.bars and parsed.response


# ----- invariances of the criterion -------------------------------------------------------------
def _crossed(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 90
    frame = pd.DataFrame({"x": rng.normal(size=n), "g": rng.integers(0, 9, n), "h": rng.integers(0, 4, n)})
    u, v = rng.normal(size=9), rng.normal(size=4)
    frame["y"] = 1 + 0.5 * frame["x"] + u[frame["g"]] * (1 + 0.3 * frame["x"]) + v[frame["h"]] + rng.normal(size=n)
    return frame


def _criterion(formula: str, data: pd.DataFrame, theta: np.ndarray) -> float:
    design = bm.make_design(formula, data)
    structure = structure_of(design)
    return ProfiledCriterion(structure, cross_products(structure, design.rows.X, design.rows.y), reml=True)(theta)


INVARIANCE_FORMULAS = ["y ~ x + (x | g)", "y ~ x + (1 | g) + (1 | h)"]


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
@settings(PROPERTY, max_examples=25)
@given(
    seed=st.integers(0, 2**32 - 1),
    formula=st.sampled_from(INVARIANCE_FORMULAS),
    theta=st.lists(st.floats(0.05, 3.0), min_size=3, max_size=3),
    names=st.permutations([f"level{k}" for k in range(9)]),
)
def test_criterion_ignores_row_order_and_level_names(seed, formula, theta, names):
    data = _crossed(seed)
    shuffled = data.sample(frac=1.0, random_state=seed % 1000).reset_index(drop=True)
    renamed = data.assign(g=data["g"].map(dict(enumerate(names))), h=data["h"].map({0: "z", 1: "b", 2: "y", 3: "a"}))
    theta = np.array(theta[:2] if "+" in formula.split("~")[1].split("(")[1] else theta)
    if formula == "y ~ x + (x | g)":
        theta[1] -= 1.5  # the off-diagonal element of a correlated term may be negative
    base = _criterion(formula, data, theta)
    assert np.isfinite(base)
    assert _criterion(formula, shuffled, theta) == pytest.approx(base, rel=1e-11)
    # renaming reorders the levels of each factor (and so the blocks of Λ): θ is unchanged
    assert _criterion(formula, renamed, theta) == pytest.approx(base, rel=1e-11)
    fits = [bm.Model(formula, frame).fit_reml() for frame in (data, shuffled, renamed)]
    for other in fits[1:]:
        assert other.criterion == pytest.approx(fits[0].criterion, rel=1e-10)
        np.testing.assert_allclose(other.fixef().to_numpy(), fits[0].fixef().to_numpy(), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(other.theta.to_numpy(), fits[0].theta.to_numpy(), rtol=1e-4, atol=1e-6)


# ----- unused factor levels -----------------------------------------------------------------------
@st.composite
def padded_categories(draw, values: list[str]) -> list[str]:
    """The sorted ``values`` (so the reference level stays the same) with unused names mixed in anywhere."""
    categories = sorted(set(values))
    for extra in draw(st.lists(st.sampled_from(["zz", "unused", "never", "0"]), max_size=3, unique=True)):
        categories.insert(draw(st.integers(0, len(categories))), extra)
    return categories


@settings(PROPERTY, max_examples=25)
@given(seed=st.integers(0, 2**32 - 1), fit_with=padded_categories(["a", "b", "c"]), predict_with=padded_categories(["a", "b", "c"]),
       pad_fit=st.booleans(), pad_new=st.booleans())
def test_unused_levels_change_no_prediction(seed, fit_with, predict_with, pad_fit, pad_new):
    rng = np.random.default_rng(seed)
    n = 60
    data = pd.DataFrame({"f": rng.choice(["a", "b", "c"], n), "x": rng.normal(size=n), "g": rng.integers(0, 6, n)})
    data["y"] = data["f"].map({"a": 0.0, "b": 1.0, "c": -1.0}) + data["x"] + rng.normal(size=6)[data["g"]] + rng.normal(size=n)
    new = pd.DataFrame({"f": ["c", "a", "b", "a"], "x": [0.1, -1.0, 2.0, 0.0], "g": [0, 5, 2, 99]})
    formula = "y ~ f + x + (1 | g)"
    plain = bm.Model(formula, data).fit_reml()
    padded_data = data.assign(f=pd.Categorical(data["f"], categories=fit_with)) if pad_fit else data
    padded_new = new.assign(f=pd.Categorical(new["f"], categories=predict_with)) if pad_new else new
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.RankDeficiencyWarning)  # unused levels are no rank deficiency
        padded = bm.Model(formula, padded_data).fit_reml()
    expected = plain.predict(new, allow_new_levels=True).to_numpy()
    assert padded.design.fixed_names == plain.design.fixed_names == ("Intercept", "f[b]", "f[c]", "x")
    assert np.array_equal(padded.predict(padded_new, allow_new_levels=True).to_numpy(), expected)
    assert np.array_equal(padded.predict(padded_new, random=False).to_numpy(), plain.predict(new, random=False).to_numpy())


@settings(PROPERTY, max_examples=10)
@given(categories=st.permutations([308, 309, 330, 1000, 2000]), pad_days=st.booleans())
def test_unused_levels_in_new_data_change_no_posterior_prediction(sleep_post, categories, pad_days):
    new = pd.DataFrame({"Days": [1.0, 5.0], "Subject": [308, 330]})
    padded = new.assign(Subject=pd.Categorical(new["Subject"], categories=categories))
    expected = sleep_post.predict(new, seed=1)
    got = sleep_post.predict(padded, seed=1)
    assert np.array_equal(got.draws.values, expected.draws.values)
