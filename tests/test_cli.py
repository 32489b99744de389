"""The bayesmix command line."""

from __future__ import annotations

import subprocess
import sys

import pytest
import xarray as xr

from bayesmix.cli import main

from .conftest import shared_file


@pytest.mark.slow  # REML and Bayesian fits of a simulated study
def test_demo_fits_simulated_music_data(capsys):
    assert main(["demo", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "497 diaries of 37 musicians" in out and "REML criterion at convergence" in out
    # the truth column holds simulate_music's parameters (lme4's REML fit of the real study)
    table = out.split("The simulation's true values beside the REML estimates and the posterior:\n", 1)[1]
    assert table.splitlines()[0].split()[:3] == ["truth", "reml", "boundary"]
    truth = {line.rsplit(None, 8)[0].strip(): float(line.rsplit(None, 8)[1]) for line in table.splitlines()[2:12]}
    assert truth["Intercept"] == 15.050 and truth["sd(perform_type[Solo])"] == 1.008 and truth["sigma"] == 4.614
    assert truth["cor(Intercept, perform_type[Solo])"] == 0.743


def test_fit_prints_the_summary(capsys):
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(shared_file("data", "sleepstudy.csv"))]) == 0
    assert "REML criterion at convergence: 1743.6283" in capsys.readouterr().out


def test_ml_fit(capsys):
    path = str(shared_file("data", "sleepstudy.csv"))
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", path, "--method", "ml"]) == 0
    assert "1751.9" in capsys.readouterr().out


def test_glmm_fits_take_family_link_offset_and_quadrature(capsys):
    """cbpp as lme4 fits it (logLik -92.0263 at the optimum; -91.9834 with 25 quadrature points),
    the simulated Poisson with its exposure as an offset column."""
    cbpp = str(shared_file("reference", "glmm", "cbpp.csv"))
    formula = "cbind(incidence, size - incidence) ~ C(period) + (1 | herd)"
    assert main(["fit", formula, "--data", cbpp, "--family", "binomial"]) == 0
    out = capsys.readouterr().out
    assert "Family: binomial  ( logit )" in out and "    -92.0    184.1" in out
    assert main(["fit", formula, "--data", cbpp, "--family", "binomial", "--method", "ml", "--nagq", "25"]) == 0
    assert "nAGQ = 25" in capsys.readouterr().out
    assert main(["fit", formula, "--data", cbpp, "--family", "binomial", "--link", "probit"]) == 0
    assert "Family: binomial  ( probit )" in capsys.readouterr().out
    offset = str(shared_file("reference", "glmm", "sim_poisson_offset.csv"))
    assert main(["fit", "y ~ x + offset(log(t)) + (1 | g)", "--data", offset, "--family", "poisson"]) == 0
    assert "-2294.7" in capsys.readouterr().out
    assert main(["design", formula, "--data", cbpp, "--family", "binomial"]) == 0
    assert "binomial (logit link)" in capsys.readouterr().out
    assert main(["fit", formula, "--data", cbpp, "--family", "binomial", "--method", "reml"]) == 2
    assert "fitted by maximum likelihood: use --method ml" in capsys.readouterr().err
    sleep = str(shared_file("data", "sleepstudy.csv"))
    assert main(["fit", "Reaction ~ Days + (1 | Subject)", "--data", sleep, "--nagq", "5"]) == 2
    assert "--nagq applies only to --method ml" in capsys.readouterr().err


def test_errors_are_one_clear_line_and_exit_code_2(capsys, tmp_path):
    path = str(shared_file("data", "sleepstudy.csv"))
    assert main(["fit", "Reaction ~ Dayz + (1 | Subject)", "--data", path]) == 2
    err = capsys.readouterr().err
    assert err.startswith("bayesmix: error: Variable 'Dayz' is not a column") and "Did you mean 'Days'" in err
    assert main(["fit", "y ~ x + (1 | g)", "--data", str(tmp_path / "missing.csv")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_warnings_are_reported_on_stderr(capsys):
    path = str(shared_file("data", "musicdata.csv"))
    assert main(["fit", "na ~ perform_type + (perform_type | id)", "--data", path]) == 0
    assert "bayesmix: warning: boundary (singular) fit" in capsys.readouterr().err


def test_help_everywhere(capsys):
    for argv in ([], ["demo"], ["fit"], ["design"]):
        assert main([*argv, "--help"]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: bayesmix") and "--help" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("bayesmix 0.")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "the following arguments are required"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        (["fit", "y ~ x + (1 | g)"], "the following arguments are required: --data"),
        (["fit", "y ~ x + (1 | g)", "--data", "d.csv", "--draws", "many"], "argument --draws: invalid int value: 'many'"),
        (["fit", "y ~ x + (1 | g)", "--data", "d.csv", "--chains", "0"], "argument --chains: must be a positive integer"),
        (["fit", "y ~ x + (1 | g)", "--data", "d.csv", "--method", "mcmc"], "argument --method: invalid choice: 'mcmc'"),
        (["fit", "y ~ x + (1 | g)", "--data", "d.csv", "--draws", "10"], "--draws applies only to --method nuts"),
    ],
)
def test_bad_arguments_are_one_line_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("bayesmix: error: ") and message in captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err


def test_unreadable_data_is_one_line(capsys, tmp_path):
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00\x81" * 50)
    for path in (tmp_path / "empty.csv", tmp_path / "binary.csv", tmp_path, tmp_path / "missing.csv"):
        assert main(["design", "y ~ x + (1 | g)", "--data", str(path)]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"bayesmix: error: cannot read '{path}'") and err.count("\n") == 1


def test_parquet_data_are_read_with_dask(capsys, tmp_path):
    import pandas as pd

    sleep = pd.read_csv(shared_file("data", "sleepstudy.csv"))
    for k, rows in enumerate((slice(0, 90), slice(90, None))):
        sleep.iloc[rows].to_parquet(tmp_path / f"part-{k}.parquet")
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "REML criterion at convergence: 1743.6283" in out and "not computed" in out
    assert main(["design", "Reaction ~ Days + (Days | Subject) + (1 | Days)", "--data", str(tmp_path)]) == 0
    out = capsys.readouterr().out  # crossed factors are read into their statistics too
    assert "Subject (18 levels)" in out and "Days (10 levels)" in out and "observations: 180" in out


def test_design_prints_the_design(capsys):
    path = str(shared_file("data", "sleepstudy.csv"))
    assert main(["design", "Reaction ~ Days + (Days | Subject)", "--data", path]) == 0
    out = capsys.readouterr().out
    assert "Subject" in out and "Days" in out


def test_nuts_fit_prints_the_posterior_and_saves_it(capsys, tmp_path):
    path = str(shared_file("data", "sleepstudy.csv"))
    out = tmp_path / "post.nc"
    argv = ["fit", "Reaction ~ Days + (Days | Subject)", "--data", path, "--method", "nuts",
            "--draws", "200", "--chains", "2", "--seed", "3", "--no-progress"]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "2 chains x 200 draws" in captured.out and "sd(Days)" in captured.out and "r_hat" in captured.out
    assert f"posterior saved to {out}" in captured.out
    tree = xr.open_datatree(out, engine="h5netcdf")
    assert tree["posterior"]["sigma"].shape == (2, 200)
    assert main([*argv, "--out", str(tmp_path / "no" / "such" / "dir.nc")]) == 2
    assert "its directory does not exist" in capsys.readouterr().err


def test_the_installed_command_reports_errors_without_traceback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "bayesmix.cli", "fit", "y ~ x + (1 | g)", "--data", str(tmp_path / "none.csv")],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("bayesmix: error: cannot read") and "Traceback" not in done.stderr
