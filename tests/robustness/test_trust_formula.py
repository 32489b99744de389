"""A formula is data, not code: payloads are refused before anything runs, and R's syntax keeps R's meaning.

Each payload below would create (or read) a file if formulaic evaluated it as Python; each must
end in a FormulaError with the file not created, wherever the formula comes from: ``Model``, the
response, a random-effects term, the command line or a saved result's stored formula.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix import FormulaError
from bayesmix.cli import main
from bayesmix.formula.allowlist import UnsafeExpression, check_expression

from .conftest import TINY, quiet

TARGET = "pwned.txt"

# Python parts that would create TARGET in the working directory if evaluated.
PAYLOADS = [
    f"I(open('{TARGET}', 'w'))",
    f"I(__import__('pathlib').Path('{TARGET}').touch())",
    f"I(exec(\"open('{TARGET}', 'w')\"))",
    f"I(eval(\"open('{TARGET}', 'w')\"))",
    f"np.save('{TARGET}', Days)",
    f"np.lib.npyio.save('{TARGET}', Days)",
    "I(Days.__class__.__mro__[-1].__subclasses__())",
    f"I(Days.to_csv('{TARGET}'))",
    f"poly(Days, __import__('os').system('touch {TARGET}'))",
    "C(Days, contr.__class__)",
    f"I([open('{TARGET}', 'w') for _ in Days])",
    f"I((lambda: open('{TARGET}', 'w'))())",
    f"I(f\"{{open('{TARGET}', 'w')}}\")",
    f"scale(Days, **{{'x': open('{TARGET}', 'w')}})",
    f"I(Days if open('{TARGET}', 'w') else Days)",
    f"I(globals()['__builtins__']['open']('{TARGET}', 'w'))",
    "I(Q('__builtins__'))",
    f"I(getattr(Days, 'to_csv')('{TARGET}'))",
    "I(breakpoint())",
]
READERS = ["I(len(open('/etc/passwd').read()))", "I(np.loadtxt('/etc/passwd'))"]


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


def places(payload: str) -> list[str]:
    """The payload in the fixed part, a random-effects term, the response, either count of a
    binomial response and an offset."""
    return [
        f"Reaction ~ Days + {payload} + (1 | Subject)",
        f"Reaction ~ Days + ({payload} | Subject)",
        f"Reaction ~ Days + (Days + {payload} || Subject)",
        f"{payload} ~ Days + (1 | Subject)",
        f"cbind({payload}, Reaction) ~ Days + (1 | Subject)",
        f"cbind(Reaction, 400 - {payload}) ~ Days + (1 | Subject)",
        f"Reaction ~ Days + offset({payload}) + (1 | Subject)",
        f"Reaction ~ Days + offset(np.log(Days + 1)) + offset({payload}) + (1 | Subject)",
    ]


@pytest.mark.parametrize("payload", PAYLOADS + READERS)
def test_payloads_are_refused_before_evaluation(sleep, workdir, payload):
    for formula in places(payload):
        with pytest.raises(FormulaError, match="not allowed|do not allow|not a function a formula may call|reserved"):
            bm.Model(formula, sleep)
        assert not (workdir / TARGET).exists(), formula


@pytest.mark.parametrize("payload", PAYLOADS[:6])
def test_payloads_on_the_command_line_are_refused(sleep, workdir, capsys, payload):
    sleep.to_csv("sleep.csv", index=False)
    for formula in places(payload)[:2]:
        for command in ("fit", "design"):
            assert main([command, formula, "--data", "sleep.csv"]) == 2
            err = capsys.readouterr().err
            assert err.startswith("bayesmix: error: ") and any(w in err for w in ("not allowed", "do not allow", "may call", "reserved"))
            assert not (workdir / TARGET).exists()


@pytest.mark.parametrize("payload", [PAYLOADS[0], PAYLOADS[1], PAYLOADS[4]])
def test_a_saved_file_with_a_payload_formula_is_refused(sleep, workdir, payload):
    post = quiet(bm.Model("Reaction ~ Days + (Days | Subject)", sleep).fit_reml)
    post.to_netcdf("fit.nc")
    tree = xr.open_datatree("fit.nc", engine="h5netcdf").load()
    for formula in (
        f"Reaction ~ Days + {payload} + (Days | Subject)",
        f"Reaction ~ Days + offset({payload}) + (Days | Subject)",
        f"cbind(Reaction, {payload}) ~ Days + (Days | Subject)",
    ):
        tree["bayesmix"].attrs["formula"] = formula
        tree.to_netcdf("tampered.nc", engine="h5netcdf")
        with pytest.raises(FormulaError, match="not allowed|do not allow|not a function a formula may call|reserved"):
            bm.load("tampered.nc")
        assert not (workdir / TARGET).exists()


def test_a_payload_that_evaluates_to_a_constant_no_longer_fits_silently(sleep, workdir):
    # formerly evaluated, found constant, dropped as rank deficient: the fit succeeded and the file existed
    with pytest.raises(FormulaError):
        bm.Model(f"Reaction ~ Days + I(len(str(open('{TARGET}', 'w')))) + (1 | Subject)", sleep)
    assert not (workdir / TARGET).exists()


def test_the_callers_variables_are_out_of_reach(sleep):
    secret = np.arange(len(sleep), dtype=float)  # noqa: F841 - formulaic's default context would see it
    with pytest.raises(FormulaError, match="'secret' is not a column of the data"):
        bm.Model("Reaction ~ secret + (1 | Subject)", sleep)
    with pytest.raises(FormulaError, match="'secret' is not a column of the data"):
        bm.Model("Reaction ~ I(secret * 2) + (1 | Subject)", sleep)


def test_allowed_parts_still_work(sleep):
    data = sleep.assign(kind=np.where(sleep["Days"] % 2 == 0, "even", "odd"), **{"my days": sleep["Days"]})
    formula = (
        "np.log(Reaction) ~ np.sqrt(Days + 1) + log1p(Days) + scale(Days) + C(kind, contr.sum) + poly(Days, 2)"
        " + I(`my days` * np.pi) + np.where(Days > 4, 1.0, 0.0) + (center(Days) | Subject)"
    )
    design = quiet(bm.Model, formula, data).design
    assert design.fixed_names[:3] == ("Intercept", "np.sqrt(Days + 1)", "log1p(Days)")
    np.testing.assert_allclose(design.rows.X[:, 1], np.sqrt(sleep["Days"] + 1))
    np.testing.assert_allclose(design.rows.y, np.log(sleep["Reaction"]))


def test_user_transforms_are_passed_explicitly(sleep, tmp_path):
    def logit(p):
        return np.log(p / (1 - p))

    with pytest.raises(FormulaError, match=r"'logit' is not a function a formula may call.*transforms=\{'logit': logit\}"):
        bm.Model("Reaction ~ logit(Days / 10 + 0.01) + (1 | Subject)", sleep)
    model = bm.Model("Reaction ~ logit(Days / 10 + 0.01) + (1 | Subject)", sleep, transforms={"logit": logit})
    np.testing.assert_allclose(model.design.rows.X[:, 1], logit(sleep["Days"] / 10 + 0.01))
    reml = model.fit_reml()
    new = pd.DataFrame({"Days": [2.5], "Subject": [308]})
    expected = reml.predict(new)
    reml.to_netcdf(tmp_path / "fit.nc")
    with pytest.raises(FormulaError, match="'logit'"):
        bm.load(tmp_path / "fit.nc")
    loaded = bm.load(tmp_path / "fit.nc", transforms={"logit": logit})
    np.testing.assert_array_equal(loaded.predict(new), expected)


@pytest.mark.parametrize(
    ("transforms", "message"),
    [
        ({"__import__": print}, "must be a Python identifier that does not start with '_'"),
        ({"scale": print}, "'scale' is a built-in formula function already"),
        ({"f": 3}, r"transforms\['f'\] must be a function, not int"),
        ([("f", print)], "transforms must be a dict"),
    ],
)
def test_bad_transforms_are_refused(sleep, transforms, message):
    with pytest.raises(FormulaError, match=message):
        bm.Model("Reaction ~ Days + (1 | Subject)", sleep, transforms=transforms)


def test_a_column_that_hides_a_function_is_refused(sleep):
    with pytest.raises(FormulaError, match="column named 'np', which is also a function the formula calls"):
        bm.Model("Reaction ~ np.log(Days + 1) + (1 | Subject)", sleep.assign(np=1.0))


# ----- R's meaning where the syntax is R's --------------------------------------------------
def test_caret_is_a_power_inside_calls_and_interactions_outside(sleep):
    caret = bm.Model("Reaction ~ I(Days^2) + poly(Days^2, 1) + (1 | Subject)", sleep).design
    np.testing.assert_array_equal(caret.rows.X[:, 1], sleep["Days"].to_numpy(float) ** 2)  # not Days XOR 2
    stars = bm.Model("Reaction ~ I(Days**2) + poly(Days**2, 1) + (1 | Subject)", sleep).design
    np.testing.assert_array_equal(caret.rows.X, stars.rows.X)
    data = sleep.assign(a=sleep["Days"] % 2, b=sleep["Days"] % 3)
    crossed = bm.Model("Reaction ~ (a + b)^2 + (1 | Subject)", data).design
    assert crossed.fixed_names == ("Intercept", "a", "b", "a:b")


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "Int8", "int64", "UInt16"])
def test_integer_columns_do_not_wrap_around(sleep, dtype):
    data = sleep.assign(big=(sleep["Days"] * 12).astype(dtype))  # up to 108, whose square overflows 8 bits, cube 16
    design = bm.Model("Reaction ~ I(big**2) + I(big^3) + (1 | Subject)", data).design
    expected = sleep["Days"].to_numpy(float) * 12
    np.testing.assert_array_equal(design.rows.X[:, 1], expected**2)
    np.testing.assert_array_equal(design.rows.X[:, 2], expected**3)


def test_integer_columns_keep_their_level_names_as_factors(sleep):
    design = bm.Model("Reaction ~ C(Days) + (1 | Subject)", sleep).design
    assert design.fixed_names[1] == "C(Days)[1]"


def test_a_column_named_intercept_is_refused(sleep):
    with pytest.raises(FormulaError, match="column named 'Intercept' would take the place of the model's own") as info:
        bm.Model("Reaction ~ Days + Intercept + (1 | Subject)", sleep.assign(Intercept=2.0))
    assert info.value.position == 18
    with pytest.raises(FormulaError, match="'Intercept'"):
        bm.Model("Reaction ~ Days + (Intercept | Subject)", sleep.assign(Intercept=2.0))


@pytest.mark.parametrize(
    ("formula", "position"),
    [
        ("Reaction ~ Days + (Reaction | Subject)", 19),
        ("Reaction ~ Reaction + Days + (1 | Subject)", 11),
        ("Reaction ~ Days + (1 | Reaction)", 23),
        ("np.log(Reaction) ~ Days + I(Reaction / 2) + (1 | Subject)", 28),
    ],
)
def test_the_response_may_not_appear_on_the_right(sleep, formula, position):
    with pytest.raises(FormulaError, match="The response 'Reaction' also appears on the right-hand side") as info:
        bm.Model(formula, sleep)
    assert info.value.position == position


def test_checker_reports_the_names_it_reads():
    usage = check_expression("C(g, contr.sum) + I(x ** 2) + np.log(`my col`) + Q('other')")
    assert list(usage.values) == ["x", "my col", "other"]
    assert list(usage.factors) == ["g"]
    assert set(usage.functions) == {"C", "contr", "I", "np", "Q"}
    with pytest.raises(UnsafeExpression):
        check_expression("x.real")


def test_a_sampled_fit_of_an_allowed_formula_predicts(sleep):
    post = quiet(bm.Model("Reaction ~ I(Days^2) + (1 | Subject)", sleep).sample, seed=3, **TINY)
    prediction = post.predict(pd.DataFrame({"Days": [3], "Subject": [308]}), seed=1)
    assert np.isfinite(prediction.mean).all()


def test_r_style_dotted_and_unicode_column_names(sleep):
    data = sleep.assign(**{"Sepal.Length": sleep["Days"] * 1.5, "größe": np.sqrt(sleep["Days"])})
    design = bm.Model("Reaction ~ Sepal.Length + np.log1p(größe) + (Sepal.Length | Subject)", data).design
    assert design.fixed_names == ("Intercept", "Sepal.Length", "np.log1p(größe)")
    np.testing.assert_array_equal(design.rows.X[:, 1], data["Sepal.Length"])
    np.testing.assert_allclose(design.rows.X[:, 2], np.log1p(data["größe"]))
    assert design.terms[0].columns == ("Intercept", "Sepal.Length")
    with pytest.raises(FormulaError, match="Variable 'Sepal.Width' is not a column of the data") as info:
        bm.Model("Reaction ~ Sepal.Width + (1 | Subject)", data)
    assert info.value.position == 11
    with pytest.raises(FormulaError):  # a method call is not a column name, nor allowed
        bm.Model("Reaction ~ Sepal.Length.clip(0) + (1 | Subject)", data)
