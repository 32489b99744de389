"""Import cost (issue 12): ``import bayesmix`` and a REML fit load no Bayesian stack.

PyMC, PyTensor and nutpie (seconds to import) load only when a Bayesian model is built or
sampled; ArviZ only when a Bayesian result is summarised or plotted. Each check runs in a
fresh interpreter, since this test process has long imported all of them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from .conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pymc", "pytensor", "nutpie", "arviz")


def loaded_after(script: str) -> dict[str, list[str]]:
    """Run ``script`` in a fresh interpreter; the modules of each package in HEAVY it left loaded."""
    report = f"""
        import json, sys
        print(json.dumps({{p: sorted(m for m in sys.modules if m.split('.')[0] == p) for p in {HEAVY!r}}}))
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script) + textwrap.dedent(report)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_import_bayesmix_loads_no_bayesian_stack():
    loaded = loaded_after("import bayesmix")
    assert loaded == {p: [] for p in HEAVY}


def test_a_reml_fit_and_its_summary_load_no_bayesian_stack():
    loaded = loaded_after(f"""
        import pandas as pd
        import bayesmix as bm
        fit = bm.Model("Reaction ~ Days + (Days | Subject)", pd.read_csv({str(shared_file("data", "sleepstudy.csv"))!r})).fit_reml()
        assert fit.fixef().shape == (2,)
        str(fit.summary())
    """)
    assert loaded == {p: [] for p in HEAVY}


def test_building_a_pymc_model_loads_pymc_after_bayesmix_jit():
    """The lazily imported PyMC model still finds bayesmix.jit run first (it may set PyTensor's directory)."""
    loaded = loaded_after(f"""
        import sys
        import pandas as pd
        import bayesmix as bm
        model = bm.Model("Reaction ~ Days + (Days | Subject)", pd.read_csv({str(shared_file("data", "sleepstudy.csv"))!r}))
        assert "bayesmix.jit" in sys.modules and "pytensor" not in sys.modules
        bayes = model.bayes_model(method="full")
        assert "pymc" not in sys.modules  # a BayesModel builds its PyMC model on first use
        assert {{"beta", "sigma"}} <= set(bayes.pymc_model.named_vars)
    """)
    assert loaded["pymc"] and loaded["pytensor"]


def test_a_collapsed_fit_with_native_priors_never_loads_pymc():
    """The precompiled collapsed density goes to nutpie directly: no PyMC model, no PyTensor."""
    loaded = loaded_after(f"""
        import warnings
        import pandas as pd
        import bayesmix as bm
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # 50 draws
        model = bm.Model("Reaction ~ Days + (Days | Subject)", pd.read_csv({str(shared_file("data", "sleepstudy.csv"))!r}))
        post = model.sample(draws=50, tune=50, chains=1, seed=1, progressbar=False)
        assert post.method.startswith("collapsed") and post.posterior.sizes["draw"] == 50
    """)
    assert loaded["nutpie"] and not loaded["pymc"] and not loaded["pytensor"]


def test_a_glmm_fit_with_native_priors_never_loads_pymc():
    """The precompiled full density goes to nutpie directly too, for crossed factors and every family."""
    loaded = loaded_after(f"""
        import warnings
        import pandas as pd
        import bayesmix as bm
        warnings.simplefilter("ignore", bm.ConvergenceWarning)  # 50 draws
        cbpp = pd.read_csv({str(shared_file("reference", "glmm", "cbpp.csv"))!r})
        model = bm.Model("cbind(incidence, size - incidence) ~ period + (1 | herd)", cbpp, "binomial")
        post = model.sample(draws=50, tune=50, chains=1, seed=1, progressbar=False)
        assert post.method.startswith("full") and post.posterior.sizes["draw"] == 50
    """)
    assert loaded["nutpie"] and not loaded["pymc"] and not loaded["pytensor"]
