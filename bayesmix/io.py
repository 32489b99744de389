"""Loading saved results: :func:`load` reads a file and hands it to the result type it names.

The file layout and the checks of a file are in :mod:`bayesmix.data.storage`; each result type
writes and reads its own part (``to_netcdf``, ``from_stored``).
"""

from __future__ import annotations

from .bayes.result import BayesResult
from .data.storage import read, rebuild_design
from .errors import BayesmixError, DataError, FormulaError
from .reml.glmm import GlmmResult
from .reml.result import RemlResult

RESULT_TYPES = {cls.__name__: cls for cls in (BayesResult, RemlResult, GlmmResult)}


def load(path, transforms: dict | None = None):
    """Load a result saved with ``to_netcdf``: a posterior or a REML/ML fit, ready to use.

    The design (formula, model matrices, levels, contrasts and transform state) is rebuilt
    from the formula text and the data rows stored in the file, so that the loaded result
    can ``predict(newdata)``, ``summary()``, ``coef()`` and so on exactly as the original:
    posterior draws are the stored ones and REML estimates are recomputed at the stored θ.
    Loading is the one exception to "a result never re-parses its formula". The stored formula
    is treated as untrusted: it passes the same allow-list as a formula typed by a user, and
    calls only built-in formula functions unless ``transforms`` supplies the user's own.

    Parameters
    ----------
    path
        A file written by :meth:`BayesResult.to_netcdf` or :meth:`RemlResult.to_netcdf`.
    transforms
        The user's own functions the stored formula calls, by name, as given to
        :class:`~bayesmix.Model` when the result was fitted.

    Returns
    -------
    BayesResult or RemlResult
        The result, of the kind that was saved.

    Raises
    ------
    ArgumentError
        When ``path`` is not an existing file.
    FormulaError
        When the stored formula is outside the allow-list or calls a function not given in
        ``transforms``.
    DataError
        When the file is not a netCDF file saved by bayesmix, is truncated or damaged (an
        attribute missing, not valid JSON or of the wrong type: the message names it), was
        written by a newer format, or its design cannot be rebuilt identically (e.g. after a
        formulaic upgrade that changed column names).

    Examples
    --------
    >>> post.to_netcdf("music.nc")          # doctest: +SKIP
    >>> post2 = bm.load("music.nc")         # doctest: +SKIP
    >>> post2.predict(new, seed=1).mean     # doctest: +SKIP
    """
    tree, stored = read(path, {name: cls.stored_schema for name, cls in RESULT_TYPES.items()})
    try:
        return RESULT_TYPES[stored.attrs["result"]].from_stored(rebuild_design(stored, transforms), tree, stored)
    except FormulaError:
        raise
    except BayesmixError as exc:
        raise DataError(f"{str(path)!r} cannot be loaded: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a well-formed but inconsistent file (edited by hand)
        raise DataError(
            f"{str(path)!r} is damaged: its contents do not fit together ({type(exc).__name__}: {exc}). "
            "Save the result again, or refit the model."
        ) from exc
