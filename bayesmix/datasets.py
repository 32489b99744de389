"""Data sets: the music performance anxiety diaries, and a simulator with the same design.

The diaries (Sadler and Miller 2010; Roback and Legler, *Beyond Multiple Linear Regression*,
CC BY-NC-SA 4.0) are not shipped with bayesmix: :func:`load_music` reads them from a path
or from the file named by the ``BAYESMIX_MUSIC_CSV`` environment variable.
:func:`simulate_music` makes data of the same shape from parameters you choose, and is the
built-in data of ``bayesmix demo``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

PERFORM_TYPES = ("Large Ensemble", "Small Ensemble", "Solo")

#: REML estimates of ``na ~ perform_type + (perform_type | id)`` on the diaries (lme4 1.1-31).
MUSIC_REML = {
    "beta": (15.0503, 0.6996, 2.0134),
    "sd": (1.9966, 1.4208, 1.0085),
    "corr": ((1.0, -0.4272, 0.7434), (-0.4272, 1.0, 0.2871), (0.7434, 0.2871, 1.0)),
    "sigma": 4.6138,
}

# Shares of the three performance types among the 497 diary entries.
_TYPE_SHARES = (0.2736, 0.1650, 0.5614)
_N_MUSICIANS = 37
_N_DIARIES = 497


def load_music(path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Read the music performance anxiety diaries (497 rows, 37 musicians).

    Parameters
    ----------
    path
        The book's ``musicdata.csv``. If omitted, the environment variable
        ``BAYESMIX_MUSIC_CSV`` names it.

    Returns
    -------
    DataFrame with columns such as ``id``, ``diary``, ``perform_type``, ``na``, ``pa``.
    """
    path = path or os.environ.get("BAYESMIX_MUSIC_CSV")
    if path is None:
        raise DataError(
            "No path for the music data: pass load_music('path/to/musicdata.csv') or set BAYESMIX_MUSIC_CSV."
        )
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The music data file {str(path)!r} does not exist.")
    frame = pd.read_csv(path)
    return frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])


def simulate_music(
    beta=MUSIC_REML["beta"],
    sd=MUSIC_REML["sd"],
    corr=MUSIC_REML["corr"],
    sigma: float = MUSIC_REML["sigma"],
    n_musicians: int = _N_MUSICIANS,
    n_diaries: int = _N_DIARIES,
    seed: int | None = 0,
) -> pd.DataFrame:
    """Simulate diaries from ``na ~ perform_type + (perform_type | id)`` with known parameters.

    Musicians keep between 2 and 15 diaries (like the study's 37 musicians with 497 entries in
    all), each entry's performance type is drawn with the study's shares (Large Ensemble 27%,
    Small Ensemble 17%, Solo 56%), and

        na = X beta + Z u_id + e,   u_id ~ N(0, diag(sd) corr diag(sd)),   e ~ N(0, sigma^2).

    Parameters
    ----------
    beta
        Intercept (Large Ensemble), Small Ensemble and Solo effects.
    sd, corr
        Standard deviations and correlation matrix of the musicians' three effects.
    sigma
        Residual standard deviation.
    n_musicians, n_diaries
        Size of the study.
    seed
        Seed of the random generator; the same seed gives the same data.

    Returns
    -------
    DataFrame with columns ``id`` (1..n_musicians), ``diary``, ``perform_type`` and ``na``.
    """
    beta, sd, corr = np.asarray(beta, float), np.asarray(sd, float), np.asarray(corr, float)
    if beta.shape != (3,) or sd.shape != (3,) or corr.shape != (3, 3):
        raise DataError("simulate_music needs three beta values, three sd values and a 3 x 3 corr matrix.")
    if (sd < 0).any() or sigma <= 0:
        raise DataError("simulate_music needs sd >= 0 and sigma > 0.")
    if n_diaries < 2 * n_musicians or n_diaries > 15 * n_musicians:
        raise DataError(f"n_diaries must lie between {2 * n_musicians} and {15 * n_musicians} for {n_musicians} musicians.")
    rng = np.random.default_rng(seed)
    counts = np.full(n_musicians, 2)
    while counts.sum() < n_diaries:
        open_ = np.flatnonzero(counts < 15)
        counts[rng.choice(open_, min(len(open_), n_diaries - counts.sum()), replace=False)] += 1
    ids = np.repeat(np.arange(1, n_musicians + 1), counts)
    diary = np.concatenate([np.arange(1, k + 1) for k in counts])
    kind = rng.choice(3, size=n_diaries, p=np.asarray(_TYPE_SHARES) / sum(_TYPE_SHARES))
    cov = corr * np.outer(sd, sd)
    u = rng.multivariate_normal(np.zeros(3), cov, size=n_musicians, method="eigh")
    z = np.column_stack([np.ones(n_diaries), kind == 1, kind == 2]).astype(float)
    na = z @ beta + np.einsum("ij,ij->i", z, u[ids - 1]) + rng.normal(0.0, sigma, n_diaries)
    return pd.DataFrame(
        {"id": ids, "diary": diary, "perform_type": np.asarray(PERFORM_TYPES, dtype=object)[kind], "na": na}
    )
