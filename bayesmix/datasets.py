"""Data sets: the music performance anxiety diaries, and a simulator with the same design.

The diaries (Sadler and Miller 2010; Roback and Legler, *Beyond Multiple Linear Regression*,
CC BY-NC-SA 4.0) are not shipped with bayesmix: :func:`load_music` reads them from a path,
from the file named by the ``BAYESMIX_MUSIC_CSV`` environment variable, or downloads the
book's file once into a cache directory (:func:`data_dir`).
:func:`simulate_music` makes data of the same shape from parameters you choose, and is the
built-in data of ``bayesmix demo``.
"""

from __future__ import annotations

import io
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError

PERFORM_TYPES = ("Large Ensemble", "Small Ensemble", "Solo")

#: Public address of the book's ``musicdata.csv`` (Roback and Legler, CC BY-NC-SA 4.0).
MUSIC_URL = "https://raw.githubusercontent.com/proback/BeyondMLR/master/data/musicdata.csv"

#: REML estimates of ``na ~ perform_type + (perform_type | id)`` on the diaries (lme4 1.1-31):
#: fixed effects (Large Ensemble baseline, Small Ensemble, Solo), SDs and correlation matrix of
#: the musicians' effects, residual SD, REML criterion, and musician 1's predicted ``na`` before
#: a solo (fixed effects plus lme4's conditional modes).
MUSIC_REML = {
    "beta": (15.0503, 0.6996, 2.0134),
    "sd": (1.9966, 1.4208, 1.0085),
    "corr": ((1.0, -0.4272, 0.7434), (-0.4272, 1.0, 0.2871), (0.7434, 0.2871, 1.0)),
    "sigma": 4.6138,
    "criterion": 2985.8394,
    "musician_1_solo": 13.0346,
}

#: REML estimates of the random-intercept model ``na ~ perform_type + (1 | id)`` (lme4 1.1-31).
MUSIC_REML_INTERCEPT = {
    "beta": (14.9654, 0.7709, 2.0142),
    "se": (0.5920, 0.7210, 0.5521),
    "sd": (2.3580,),
    "sigma": 4.6636,
    "criterion": 2990.3230,
}

#: ML deviance of ``na ~ perform_type + (perform_type | id)`` (lme4 1.1-31, ``REML = FALSE``).
MUSIC_ML_DEVIANCE = 2987.5906

_MUSIC_COLUMNS = ("id", "perform_type", "na")

# Shares of the three performance types among the 497 diary entries.
_TYPE_SHARES = (0.2736, 0.1650, 0.5614)
_N_MUSICIANS = 37
_N_DIARIES = 497


def data_dir() -> Path:
    """The directory where downloaded data sets are cached.

    ``$BAYESMIX_DATA_DIR`` if set, else ``$XDG_CACHE_HOME/bayesmix`` (``~/.cache/bayesmix``).
    """
    if os.environ.get("BAYESMIX_DATA_DIR"):
        return Path(os.environ["BAYESMIX_DATA_DIR"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache).expanduser() / "bayesmix"


def load_music(path: str | os.PathLike | None = None, *, download: bool = True, url: str | None = None) -> pd.DataFrame:
    """Read the music performance anxiety diaries (497 rows, 37 musicians).

    The file is looked for, in this order: ``path``; the file named by the environment
    variable ``BAYESMIX_MUSIC_CSV``; ``musicdata.csv`` in the cache directory
    (:func:`data_dir`); and otherwise it is downloaded from the book's repository
    (:data:`MUSIC_URL`) into the cache directory, once.

    Parameters
    ----------
    path
        The book's ``musicdata.csv``.
    download
        Download the file when it is neither given nor cached (default True).
    url
        Where to download it from (default :data:`MUSIC_URL`).

    Returns
    -------
    DataFrame
        Columns such as ``id``, ``diary``, ``perform_type``, ``na``, ``pa``.

    Raises
    ------
    DataError
        The file does not exist, cannot be read or downloaded, or lacks the columns
        ``id``, ``perform_type`` and ``na``.
    """
    path = path or os.environ.get("BAYESMIX_MUSIC_CSV")
    if path is None:
        path = data_dir() / "musicdata.csv"
        if not path.is_file():
            if not download:
                raise DataError(
                    "No path for the music data: pass load_music('path/to/musicdata.csv'), set BAYESMIX_MUSIC_CSV, "
                    "or allow the download (download=True)."
                )
            _download(url or MUSIC_URL, path)
    path = Path(path)
    if not path.is_file():
        raise DataError(f"The music data file {str(path)!r} does not exist.")
    return _read_music(path.read_bytes(), str(path))


def _read_music(content: bytes, source: str) -> pd.DataFrame:
    try:
        frame = pd.read_csv(io.BytesIO(content))
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataError(f"Cannot read the music data from {source}: {exc}") from None
    missing = [c for c in _MUSIC_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{source} is not the music data: it has no column(s) {missing}.")
    return frame.drop(columns=[c for c in frame.columns if c.startswith("Unnamed")])


def _download(url: str, target: Path) -> None:
    """Fetch ``url`` and store it as ``target`` once it is known to be the music data."""
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            content = response.read()
    except (urllib.error.URLError, OSError) as exc:
        reason = f"HTTP {exc.code} {exc.reason}" if isinstance(exc, urllib.error.HTTPError) else getattr(exc, "reason", exc)
        raise DataError(
            f"Could not download the music data from {url} ({reason}). Without network access, download "
            "musicdata.csv elsewhere and pass load_music('path/to/musicdata.csv') or set BAYESMIX_MUSIC_CSV."
        ) from None
    _read_music(content, url)  # refuse to cache anything that is not the data
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target.parent, prefix=".musicdata-", delete=False) as tmp:
            tmp.write(content)
        os.replace(tmp.name, target)
    except OSError as exc:
        raise DataError(
            f"Downloaded the music data but cannot store it in {target.parent} ({exc}); "
            "set BAYESMIX_DATA_DIR to a writable directory."
        ) from None


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
