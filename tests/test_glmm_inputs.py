"""Bad GLMM inputs through ``bm.Model``: each refused with an error naming the column, term or value.

Complements tests/test_families.py (the families' checks on sleepstudy's reaction times) and
tests/test_glmm_model.py (cbind counts, refusals of the backends): the cases here are those the
GLMM issue lists that neither covers through the Model. The counts in the messages are those
of the small frame below, counted by hand from its construction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.errors import ArgumentError, DataError, MissingDataWarning

ROWS = 40


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    """Eight groups of five rows: counts y in 0..4 (y = row mod 5), ten trials each with s = row mod 4
    successes (p = s / 10), a predictor x and an exposure t."""
    row = np.arange(ROWS)
    return pd.DataFrame({
        "g": np.repeat(list("abcdefgh"), 5), "h": np.resize(list("pqr"), ROWS), "x": np.sin(row),
        "y": (row % 5).astype(float), "s": row % 4, "n": 10, "p": (row % 4) / 10, "t": 1.0 + row / ROWS,
    })


@pytest.mark.parametrize(
    ("family", "change", "message"),
    [
        ("negative_binomial", lambda d: d.assign(y=d["y"] + 0.5), r"The response 'y' has 40 non-integer value\(s\) "
                                                                  r"\(first: 0\.5\); a negative binomial response is a count"),
        ("poisson", lambda d: d.assign(y=d["y"] - 1), r"The response 'y' has 8 negative value\(s\) \(first: -1\); a "
                                                      r"Poisson response is a count"),
        ("binomial", lambda d: d.assign(y=0), r"The response 'y' is constant \(0\)"),
        ("binomial", lambda d: d.assign(y=True), r"The response 'y' is constant \(1\)"),
        ("binomial", lambda d: d.assign(s=d["n"]), r"The response 'cbind\(s, n - s\)' is constant \(1\)"),
        ("binomial", lambda d: d.assign(s=0), r"The response 'cbind\(s, n - s\)' is constant \(0\)"),
        ("poisson", lambda d: d.assign(y=0), r"The response 'y' is constant \(0\)"),
        ("binomial", lambda d: d.assign(y=np.resize(["a", "b", "c"], ROWS)), r"The binomial response 'y' has 3 level\(s\) "
                                                                             r"\['a', 'b', 'c'\]; .* needs exactly two"),
        ("binomial", lambda d: d.assign(y=pd.Categorical(np.resize(["no", "yes", "maybe"], ROWS), ["no", "yes", "maybe"])),
         r"The binomial response 'y' has 3 level\(s\) \['no', 'yes', 'maybe'\]"),
        ("binomial", lambda d: d.assign(y="yes"), r"The binomial response 'y' has 1 level\(s\) \['yes'\]"),
    ],
    ids=["nb-non-integer", "poisson-negative", "bernoulli-all-0", "boolean-all-true", "cbind-all-successes",
         "cbind-all-failures", "poisson-all-0", "three-levels", "three-categories", "one-level"],
)
def test_bad_responses_are_named(data, family, change, message):
    formula = "cbind(s, n - s) ~ x + (1 | g)" if "cbind" in message else "y ~ x + (1 | g)"
    with pytest.raises(DataError, match=message):
        bm.Model(formula, change(data), family)


@pytest.mark.parametrize(
    ("p", "message"),
    [
        (lambda d: d["p"] * 5, r"The response 'p' has 10 value\(s\) outside \[0, 1\] \(first: 1\.5\);.* more successes "
                               r"than trials"),
        (lambda d: d["p"] - 0.15, r"The response 'p' has 20 value\(s\) outside \[0, 1\] \(first: -0\.15\)"),
        (lambda d: d["p"] * 0 + 1.0, r"The response 'p' is constant \(1\)"),
    ],
    ids=["above-one", "below-zero", "all-one"],
)
def test_a_bad_proportion_with_trials_is_named(data, p, message):
    with pytest.raises(DataError, match=message):
        bm.Model("p ~ x + (1 | g)", data.assign(p=p(data)), "binomial", weights="n")


@pytest.mark.parametrize(
    ("family", "weights", "message"),
    [
        ("binomial", lambda d: np.r_[0, d["n"].to_numpy()[1:]], r"weights of the response 'p' have 1 value\(s\) that are "
                                                                r"not positive and finite \(first: 0\)"),
        ("poisson", "w", r"weights of the response 'y' have 40 value\(s\) that are not positive and finite \(first: -1\)"),
        ("gaussian", lambda d: np.r_[np.inf, np.ones(ROWS - 1)], r"The weights= argument has 1 infinite value\(s\) \(first: "
                                                                r"inf in row 0\)"),
    ],
)
def test_non_positive_or_infinite_weights_are_named(data, family, weights, message):
    response = "p" if family == "binomial" else "y"
    weights = weights(data) if callable(weights) else weights
    with pytest.raises(DataError, match=message):
        bm.Model(f"{response} ~ x + (1 | g)", data.assign(w=-1.0), family, weights=weights)


def test_offsets_that_are_not_finite_are_named_or_dropped(data):
    with pytest.raises(DataError, match=r"offset='o' has 2 infinite value\(s\) \(first: -inf in row 3\)"):
        bm.Model("y ~ x + (1 | g)", data.assign(o=np.where(data.index % 20 == 3, -np.inf, 0.0)), "poisson", offset="o")
    with pytest.raises(DataError, match=r"The offset= argument has 1 infinite value\(s\) \(first: inf in row 7\)"):
        bm.Model("y ~ x + (1 | g)", data, "poisson", offset=np.where(data.index == 7, np.inf, 0.0))
    with pytest.raises(DataError, match=r"'log\(t\)' is -inf in 1 row\(s\) \(the first: row 5\)"):
        bm.Model("y ~ x + offset(log(t)) + (1 | g)", data.assign(t=np.where(data.index == 5, 0.0, data["t"])), "poisson")
    # a missing offset is a missing value, as in R's model frame: the row is dropped, and counted
    with pytest.warns(MissingDataWarning, match=r"Dropped 1 of 40 rows with missing values in \(offset\) \(1\)"):
        model = bm.Model("y ~ x + (1 | g)", data, "poisson", offset=np.where(data.index == 2, np.nan, 0.0))
    assert model.design.rows.y.shape == (ROWS - 1,)


def test_dask_input_refuses_what_needs_every_row(data):
    dd = pytest.importorskip("dask.dataframe")
    frame = dd.from_pandas(data, npartitions=2)
    with pytest.raises(DataError, match=r"Dask or Parquet input does not take offset\(\) terms"):
        bm.Model("y ~ x + offset(log(t)) + (1 | g)", frame)
    with pytest.raises(DataError, match=r"The response cbind\(s, n - s\) gives numbers of successes and failures, a "
                                        r"binomial response, .* family is Gaussian \(identity link\): pass family='binomial'"):
        bm.Model("cbind(s, n - s) ~ x + (1 | g)", frame)
    for formula, family, name in (("cbind(s, n - s) ~ x + (1 | g)", "binomial", r"binomial \(logit link\)"),
                                  ("y ~ x + (1 | g)", "poisson", r"Poisson \(log link\)"),
                                  ("y ~ x + (1 | g)", bm.NegativeBinomial(), r"negative binomial \(log link\)")):
        with pytest.raises(DataError, match=rf"sufficient statistics, which the {name} family does not have"):
            bm.Model(formula, frame, family)
    for argument in ({"weights": "n"}, {"offset": "t"}):
        with pytest.raises(ArgumentError, match=r"weights= and offset= are not taken with dask or Parquet input"):
            bm.Model("y ~ x + (1 | g)", frame, **argument)


@pytest.mark.parametrize(("family", "name"), [("binomial", r"binomial \(logit link\)"), ("poisson", r"Poisson \(log link\)"),
                                              ("negative_binomial", r"negative binomial \(log link\)")])
def test_reml_on_a_glmm_says_to_use_fit_ml(data, family, name):
    formula = "cbind(s, n - s) ~ x + (1 | g)" if family == "binomial" else "y ~ x + (1 | g)"
    with pytest.raises(ArgumentError, match=rf"this design's family is {name}; .* use model.fit_ml\(\)"):
        bm.Model(formula, data, family).fit_reml()


@pytest.mark.parametrize("nagq", [0, 101, 2.5, True, -1, "5"])
def test_nagq_must_be_an_integer_from_1_to_100(data, nagq):
    with pytest.raises(ArgumentError, match=rf"nagq must be an integer from 1 \(Laplace\) to 100, not {nagq!r}\."):
        bm.Model("y ~ x + (1 | g)", data, "poisson").fit_ml(nagq=nagq)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h)", "y ~ x + (1 | g) + (0 + x | g)", "y ~ x + (x | g)"],
                         ids=["crossed", "two-terms-one-factor", "vector-valued"])
def test_quadrature_needs_a_single_scalar_term(data, formula):
    with pytest.raises(ArgumentError, match=r"nagq=7 \(adaptive Gauss-Hermite quadrature\) needs a single scalar "
                                            r"random-effect term such as \(1 \| g\)"):
        bm.Model(formula, data, "poisson").fit_ml(nagq=7)
