"""The bayesmix command line."""

from __future__ import annotations

from bayesmix.cli import main

from .conftest import shared_file


def test_demo_fits_simulated_music_data(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "497 diaries of 37 musicians" in out and "REML criterion at convergence" in out


def test_fit_prints_the_summary(capsys):
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", str(shared_file("data", "sleepstudy.csv"))]) == 0
    assert "REML criterion at convergence: 1743.6283" in capsys.readouterr().out


def test_ml_fit(capsys):
    path = str(shared_file("data", "sleepstudy.csv"))
    assert main(["fit", "Reaction ~ Days + (Days | Subject)", "--data", path, "--method", "ml"]) == 0
    assert "1751.9" in capsys.readouterr().out


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
