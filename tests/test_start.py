"""A new user's first steps (issue 17): ``import bayesmix`` and ``bayesmix --help`` load nothing heavy,
every public name loads on first use, and a cold numba cache is announced in one line, once."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import bayesmix
from bayesmix.jit import COMPILE_NOTICE

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numpy", "pandas", "numba", "scipy", "formulaic", "xarray", "pymc", "pytensor", "nutpie", "arviz", "matplotlib")


def run(script: str, **env: str) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter at the project root (this checkout's bayesmix)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_help_and_version_load_no_library():
    done = run(f"""
        import contextlib, io, sys
        from bayesmix.cli import main
        with contextlib.redirect_stdout(io.StringIO()) as out:
            assert main(["--help"]) == 0 and main(["--version"]) == 0
        assert "usage: bayesmix" in out.getvalue() and "bayesmix 0." in out.getvalue()
        print(sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})))
    """)
    assert done.stdout.splitlines()[-1] == "[]"


def test_every_public_name_loads_on_first_use():
    for name in bayesmix.__all__:
        assert getattr(bayesmix, name).__module__.startswith("bayesmix"), name
    assert set(bayesmix.__all__) <= set(dir(bayesmix))
    # __all__ names each public name once, and exactly the names imported under TYPE_CHECKING
    assert len(bayesmix.__all__) == len(set(bayesmix.__all__))
    assert set(bayesmix.__all__) == set(bayesmix._homes())
    assert bayesmix.datasets.__name__ == "bayesmix.datasets"  # submodules too
    from bayesmix import Model, plot_trace  # noqa: F401 - from-imports resolve the same way
    importlib.import_module("bayesmix.compare")  # the submodule: bayesmix.compare stays the function of that name
    assert bayesmix.compare.__module__ == "bayesmix.compare" and callable(bayesmix.compare)
    with pytest.raises(AttributeError, match="has no attribute 'Modle'"):
        bayesmix.Modle  # noqa: B018


def test_a_cold_numba_cache_is_announced_once(tmp_path):
    """The notice appears when a bayesmix kernel is compiled (here the double-double sums of the
    sufficient statistics, for two types of level codes: two compilations), once per process,
    and not when the kernels come from the disk cache."""
    script = """
        import numpy as np
        from bayesmix.data.sums import level_products, products
        a = np.arange(6.0).reshape(3, 2)
        level_products(np.array([0, 1, 1], dtype=np.int32), a, a, 2)
        print(products(a, a)[0, ..., 0].tolist())
    """
    cold = run(script, NUMBA_CACHE_DIR=str(tmp_path))
    assert cold.stderr.count(COMPILE_NOTICE) == 1
    assert cold.stdout.splitlines()[-1] == "[[20.0, 26.0], [26.0, 35.0]]"  # Σ a_r a_r': 0+4+16, 1*0+3*2+5*4, 1+9+25
    warm = run(script, NUMBA_CACHE_DIR=str(tmp_path))
    assert COMPILE_NOTICE not in warm.stderr
