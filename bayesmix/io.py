"""Saving results to netCDF and loading them back: :func:`load`.

A saved file is an ``xarray.DataTree`` (what :meth:`BayesResult.to_netcdf` and
:meth:`RemlResult.to_netcdf` write) with one extra group, ``bayesmix``, that holds what is
needed to rebuild the result's :class:`~bayesmix.Design`:

- the formula text and, as variables along dimension ``row``, the rows the fit used of the
  columns the formula names, each with its pandas dtype (categories and their order for
  categoricals; strings, booleans, integers and floats are stored natively), and the row labels;
- as attributes (JSON text where structured): the kind of result, the format version, the
  number of rows dropped for missing values, and for a posterior the priors, the sampler
  settings and the method; for a REML/ML fit θ, the criterion and the optimiser's record.

Loading is the one place where a result re-parses its formula: the design is rebuilt from
the stored formula and rows exactly as :func:`~bayesmix.make_design` built it, and checked
against the stored estimates (coefficient names, levels, the response), so that predictions
from a loaded result equal those of the original. Nothing is refitted or resampled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from .data.build import make_design, response_values
from .data.design import Design
from .errors import ArgumentError, BayesmixError, BayesmixWarning, DataError, FormulaError, RankDeficiencyWarning

FORMAT_VERSION = 1
GROUP = "bayesmix"


# ----- writing ----------------------------------------------------------------------------
def design_dataset(design: Design, result: str, attrs: dict) -> xr.Dataset:
    """The ``bayesmix`` group of a saved result: the design's rows and formula, plus ``attrs``."""
    frame = design.frame
    if frame is None:
        raise ArgumentError(
            "This result's design does not hold its rows (it was not built from a pandas DataFrame), "
            "so it cannot be saved in a form that rebuilds it."
        )
    if not np.array_equal(response_values(design.recipe.evaluator, frame), design.y):
        raise ArgumentError(
            "This result's response is not the one in its data (it was replaced, e.g. by BayesModel.sample(y=...)), "
            "so loading could not rebuild it; save the draws alone with result.idata.to_netcdf(path)."
        )
    variables = {}
    for k, name in enumerate(frame.columns):
        values, meta = _encode(frame[name], f"column {name!r}")
        variables[f"column_{k}"] = xr.Variable("row", values, attrs={"name": str(name), **meta})
    try:
        values, meta = _encode(pd.Series(design.index), "row labels")
    except DataError:
        warnings.warn(
            "The row labels (index) of the data cannot be saved; the loaded result numbers its rows 0, 1, ... instead.",
            BayesmixWarning,
            stacklevel=3,
        )
        values, meta = np.arange(len(design.index)), {"pandas_dtype": "int64", "kind": "number"}
    variables["row_label"] = xr.Variable("row", values, attrs=meta)
    header = {
        "bayesmix_format": FORMAT_VERSION,
        "bayesmix_version": _version(),
        "result": result,
        "formula": design.formula.text,
        "n_dropped": int(design.n_dropped),
        "columns": len(frame.columns),
    }
    return xr.Dataset(variables, attrs={**header, **attrs})


def _encode(column: pd.Series, what: str) -> tuple[np.ndarray, dict]:
    """Values netCDF can store, and what is needed to give them back their pandas dtype."""
    dtype = column.dtype
    meta = {"pandas_dtype": str(dtype)}
    if isinstance(dtype, pd.CategoricalDtype):
        categories, kind = _plain(pd.Series(dtype.categories), what)
        meta.update(
            kind="category",
            categories=json.dumps(categories),
            categories_kind=kind,
            categories_dtype=str(dtype.categories.dtype),
            ordered=int(bool(dtype.ordered)),
        )
        return column.cat.codes.to_numpy(dtype=np.int64), meta
    if pd.api.types.is_datetime64_any_dtype(dtype) and not isinstance(dtype, pd.DatetimeTZDtype):
        meta["kind"] = "datetime"
        return column.to_numpy(dtype="datetime64[ns]").view(np.int64), meta
    values, kind = _plain(column, what)
    meta["kind"] = kind
    if kind == "text":
        return np.array(values, dtype=object), meta
    if kind == "bool":
        return np.array(values, dtype=np.int8), meta
    if pd.api.types.is_numeric_dtype(dtype):
        return column.to_numpy(dtype=getattr(dtype, "numpy_dtype", dtype)), meta
    return np.asarray(values), meta  # numbers in an object column: int64 if all are integers


def _plain(column: pd.Series, what: str) -> tuple[list, str]:
    """The values as a list of Python scalars of one kind (text, bool or number)."""
    if pd.api.types.is_bool_dtype(column.dtype):
        return [bool(v) for v in column], "bool"
    if pd.api.types.is_numeric_dtype(column.dtype):
        return [v.item() if isinstance(v, np.generic) else v for v in column.to_numpy()], "number"
    values = column.tolist()
    kinds = {"text" if isinstance(v, str) else "bool" if isinstance(v, (bool, np.bool_))
             else "number" if isinstance(v, (int, float, np.number)) else type(v).__name__ for v in values}
    if len(kinds) > 1 or (kinds and kinds.pop() not in ("text", "bool", "number")):
        raise DataError(
            f"The {what} holds values of type(s) {', '.join(sorted({type(v).__name__ for v in values}))}, which cannot "
            "be saved; convert it to text, numbers or booleans before fitting."
        )
    kind = "text" if all(isinstance(v, str) for v in values) else "bool" if all(isinstance(v, (bool, np.bool_)) for v in values) else "number"
    if kind == "text" and any("\x00" in v for v in values):
        raise DataError(
            f"The {what} holds text with a NUL character ('\\x00'), which netCDF cannot store; "
            "remove it from the data (e.g. .str.replace('\\x00', '')) and fit again to save the result."
        )
    return [v.item() if isinstance(v, np.generic) else v for v in values], kind


def _version() -> str:
    from . import __version__

    return __version__


def write(tree: xr.DataTree, dataset: xr.Dataset, path) -> None:
    """Write ``tree`` with ``dataset`` as its ``bayesmix`` group to the netCDF file ``path``.

    The file is written under a temporary name in the same directory and renamed over
    ``path`` when complete, so that a save that fails (or is interrupted) leaves the file
    that was there before intact, and no partial file behind.

    Raises
    ------
    ArgumentError
        When ``path`` is not a file name in an existing, writable directory.
    DataError
        When the result cannot be stored as netCDF.
    """
    path = _as_path(path)
    if path.is_dir():
        raise ArgumentError(f"{str(path)!r} is a directory; give a file name, e.g. {str(path / 'result.nc')!r}.")
    if not path.parent.is_dir():
        raise ArgumentError(f"Cannot save to {str(path)!r}: the directory {str(path.parent)!r} does not exist; create it first.")
    tree = tree.copy()
    tree[GROUP] = dataset
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        tree.to_netcdf(temporary, engine="h5netcdf")
        os.replace(temporary, path)
    except BaseException as exc:
        temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise ArgumentError(
                f"Cannot write {str(path)!r} ({os.strerror(exc.errno) if exc.errno else exc}); save to a writable directory. "
                "The file that was there, if any, is unchanged."
            ) from exc
        if isinstance(exc, Exception) and not isinstance(exc, BayesmixError):
            raise DataError(
                f"The result cannot be saved to {str(path)!r} ({type(exc).__name__}: {exc}). "
                "The file that was there, if any, is unchanged."
            ) from exc
        raise


def _as_path(path) -> Path:
    """``path`` (a str, bytes or os.PathLike) as a Path; anything else is an ArgumentError."""
    try:
        return Path(os.fsdecode(path))
    except TypeError:
        raise ArgumentError(f"path must be a file name (a str or pathlib.Path), not {path!r}.") from None


# ----- reading ----------------------------------------------------------------------------
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
    path = _as_path(path)
    if not path.is_file():
        raise ArgumentError(f"No file {str(path)!r} to load; save a result first with result.to_netcdf(path).")
    try:
        tree = xr.open_datatree(path, engine="h5netcdf")
    except Exception as exc:  # noqa: BLE001 - h5py and xarray raise assorted OSError and ValueError subclasses
        raise DataError(f"{str(path)!r} cannot be read as a netCDF file ({type(exc).__name__}: {exc}).") from None
    try:
        tree = tree.load()
    except Exception as exc:  # noqa: BLE001 - a truncated file opens, and fails when its data are read
        raise DataError(f"{str(path)!r} cannot be read: it is damaged or truncated ({type(exc).__name__}: {exc}).") from None
    finally:
        tree.close()
    if GROUP not in tree.children:
        raise DataError(
            f"{str(path)!r} has no '{GROUP}' group, so it was not saved by bayesmix's to_netcdf "
            "(files from versions before 0.1 hold only the draws: read them with xarray.open_datatree)."
        )
    stored = tree[GROUP].to_dataset()
    _check_stored(stored, tree, str(path))
    try:
        design = _rebuild_design(stored, transforms)
        rest = tree.drop_nodes(GROUP)
        if stored.attrs["result"] == "BayesResult":
            return _bayes_result(design, rest, stored)
        return _reml_result(design, stored)
    except FormulaError:
        raise
    except BayesmixError as exc:
        raise DataError(f"{str(path)!r} cannot be loaded: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - a well-formed but inconsistent file (edited by hand)
        raise DataError(
            f"{str(path)!r} is damaged: its contents do not fit together ({type(exc).__name__}: {exc}). "
            "Save the result again, or refit the model."
        ) from exc


# What the bayesmix group holds: attribute -> its type; list and dict stand for JSON text decoding to one.
_HEADER = {"bayesmix_format": int, "result": str, "formula": str, "n_dropped": int, "columns": int}
_RESULT_ATTRS = {
    "BayesResult": {"priors": dict, "settings": dict, "method": str, "sampling_seconds": float, "compile_seconds": float},
    "RemlResult": {"reml": int, "criterion": float, "optsummary": dict, "fixed_names": list},
}
_COLUMN_ATTRS = {"kind": str, "pandas_dtype": str}
_CATEGORY_ATTRS = {"categories": list, "categories_dtype": str, "ordered": int}
_KINDS = ("category", "datetime", "bool", "text", "number")


def _check_stored(stored: xr.Dataset, tree: xr.DataTree, path: str) -> None:
    """Refuse a bayesmix group that is not one this version wrote: missing or malformed attributes
    and variables, a newer format, an unknown kind of result (each a DataError naming the file)."""

    def damaged(what: str) -> DataError:
        return DataError(f"{path!r} is not a valid bayesmix file: {what}. Save the result again, or refit the model.")

    def check(attrs, schema: dict, where: str) -> None:
        for name, kind in schema.items():
            if name not in attrs:
                raise damaged(f"{where} has no attribute {name!r}")
            value = attrs[name]
            if kind in (list, dict):
                try:
                    value = json.loads(value) if isinstance(value, str) else None
                except json.JSONDecodeError:
                    raise damaged(f"attribute {name!r} of {where} is not valid JSON") from None
            if not _is_a(value, kind):
                raise damaged(f"attribute {name!r} of {where} is {value!r}, not {_NAMES[kind]}")

    group = f"the {GROUP!r} group"
    check(stored.attrs, {"bayesmix_format": int}, group)
    version = int(stored.attrs["bayesmix_format"])
    if version > FORMAT_VERSION:
        raise DataError(f"{path!r} was saved in format {version}; this bayesmix reads up to {FORMAT_VERSION}: upgrade it.")
    check(stored.attrs, _HEADER, group)
    result = stored.attrs["result"]
    if result not in _RESULT_ATTRS:
        raise damaged(f"it holds an unknown kind of result {result!r} (not one of {', '.join(_RESULT_ATTRS)})")
    check(stored.attrs, _RESULT_ATTRS[result], group)
    if int(stored.attrs["n_dropped"]) < 0 or int(stored.attrs["columns"]) < 0:
        raise damaged("a negative count of rows dropped or of columns")
    names = ["row_label"] + [f"column_{k}" for k in range(int(stored.attrs["columns"]))]
    if result == "RemlResult":
        names.append("theta")
    elif "posterior" not in tree.children:
        raise damaged("it has no 'posterior' group")
    for name in names:
        if name not in stored.variables:
            raise damaged(f"{group} has no variable {name!r}")
        attrs = stored[name].attrs
        if name.startswith("column_") or name == "row_label":
            check(attrs, {"name": str, **_COLUMN_ATTRS} if name != "row_label" else _COLUMN_ATTRS, f"variable {name!r}")
            if attrs["kind"] not in _KINDS:
                raise damaged(f"variable {name!r} has an unknown kind {attrs['kind']!r}")
            if attrs["kind"] == "category":
                check(attrs, _CATEGORY_ATTRS, f"variable {name!r}")


_NAMES = {int: "an integer", float: "a number", str: "text", list: "a JSON list", dict: "a JSON object"}


def _is_a(value, kind: type) -> bool:
    """Whether an attribute value read back from netCDF is of ``kind`` (numpy scalars count)."""
    if isinstance(value, (bool, np.bool_)):
        return False
    if kind is int:
        return isinstance(value, (int, np.integer))
    if kind is float:
        return isinstance(value, (int, float, np.integer, np.floating))
    return isinstance(value, kind)


def _rebuild_design(stored: xr.Dataset, transforms: dict | None) -> Design:
    index = pd.Index(_decode(stored["row_label"]))
    columns = {}
    for k in range(int(stored.attrs["columns"])):
        variable = stored[f"column_{k}"]
        columns[variable.attrs["name"]] = _decode(variable).set_axis(index)
    frame = pd.DataFrame(columns, index=index)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)  # already reported when the model was fitted
        design = make_design(stored.attrs["formula"], frame, transforms)
    return dataclasses.replace(design, n_dropped=int(stored.attrs["n_dropped"]))


def _decode(variable: xr.DataArray) -> pd.Series:
    attrs = variable.attrs
    values = variable.values
    kind = attrs["kind"]
    if kind == "category":
        categories = json.loads(attrs["categories"])
        categories = pd.Index(categories, dtype=attrs["categories_dtype"]) if categories else pd.Index([])
        return pd.Series(pd.Categorical.from_codes(values.astype(np.int64), categories=categories, ordered=bool(attrs["ordered"])))
    if kind == "datetime":
        series = pd.Series(values.astype(np.int64).view("datetime64[ns]"))
    elif kind == "bool":
        series = pd.Series(values.astype(bool))
    elif kind == "text":
        series = pd.Series([str(v) for v in values], dtype=object)
    else:
        series = pd.Series(values)
    try:
        return series.astype(attrs["pandas_dtype"])
    except (TypeError, ValueError):
        return series


def _check(condition: bool, what: str) -> None:
    if not condition:
        raise DataError(
            f"The saved result cannot be rebuilt identically: {what} differ(s) from what was saved "
            "(different formulaic or pandas version?). Refit the model from the data instead."
        )


def _bayes_result(design: Design, tree: xr.DataTree, stored: xr.Dataset):
    from .bayes.layout import group_layouts
    from .bayes.priors import Distribution, PriorSet
    from .bayes.result import BayesResult
    from .bayes.sampling import SamplerSettings

    posterior = tree["posterior"].to_dataset()
    _check(list(posterior["coef"].values) == list(design.fixed_names), "the fixed-effect names")
    if "observed_data" in tree.children:
        _check(np.array_equal(tree["observed_data"]["y"].values, design.y), "the response")
    layouts = group_layouts(design)
    needed = (["beta"] if design.fixed_names else []) + ["sigma"] + [f"u_{layout.name}" for layout in layouts]
    missing = [name for name in needed if name not in posterior.data_vars]
    if missing:
        raise DataError(f"its posterior has no variable(s) {', '.join(missing)}; it was not saved whole.")
    for layout in layouts:
        stored_levels = posterior[f"u_{layout.name}"][f"{layout.name}_level"].values
        _check([str(v) for v in stored_levels] == [str(v) for v in layout.levels], f"the levels of {layout.group!r}")

    def dist(d):
        return None if d is None else Distribution(d["name"], dict(d["params"]), bool(d["positive"]))

    p = json.loads(stored.attrs["priors"])
    priors = PriorSet(
        dist(p["intercept"]),
        {name: dist(d) for name, d in p["b"]},
        dist(p["sigma"]),
        {(label, column): dist(d) for label, column, d in p["sd"]},
        {label: dist(d) for label, d in p["cor"]},
    )
    settings = SamplerSettings(**json.loads(stored.attrs["settings"]))
    return BayesResult(
        design, tree, priors, layouts, settings,
        float(stored.attrs["sampling_seconds"]), float(stored.attrs["compile_seconds"]), method=str(stored.attrs["method"]),
    )


def bayes_attrs(result) -> dict:
    """The attributes that restore a BayesResult's priors, settings and method."""
    def dist(d):
        return None if d is None else {"name": d.name, "params": d.params, "positive": d.positive}

    pr = result.priors
    priors = {
        "intercept": dist(pr.intercept),
        "b": [[name, dist(d)] for name, d in pr.b.items()],
        "sigma": dist(pr.sigma),
        "sd": [[label, column, dist(d)] for (label, column), d in pr.sd.items()],
        "cor": [[label, dist(d)] for label, d in pr.cor.items()],
    }
    settings = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dataclasses.asdict(result.settings).items()}
    return {
        "priors": json.dumps(priors),
        "settings": json.dumps(settings),
        "method": result.method,
        "sampling_seconds": float(result.sampling_seconds),
        "compile_seconds": float(result.compile_seconds),
    }


def reml_dataset(result) -> xr.Dataset:
    """The ``bayesmix`` group of a saved REML/ML fit: design rows, θ, criterion and optimiser record."""
    opt = result.optsummary
    record = {
        "method": opt.method, "initial": np.asarray(opt.initial, dtype=float).tolist(),
        "final": np.asarray(opt.final, dtype=float).tolist(), "fmin": float(opt.fmin),
        "evaluations": int(opt.evaluations), "iterations": int(opt.iterations), "converged": bool(opt.converged),
        "message": str(opt.message), "boundary": list(opt.boundary), "path": [float(v) for v in opt.path],
    }
    dataset = design_dataset(
        result.design, "RemlResult",
        {"reml": int(result.reml), "criterion": float(result.criterion), "optsummary": json.dumps(record),
         "fixed_names": json.dumps(list(result.design.fixed_names))},
    )
    dataset["theta"] = xr.Variable("theta_element", np.asarray(result.factorization.theta, dtype=float))
    dataset = dataset.assign_coords(theta_element=list(result.structure.names))
    return dataset


def _reml_result(design: Design, stored: xr.Dataset):
    from .reml import profiled_criterion
    from .reml.optimize import OptSummary
    from .reml.result import RemlResult
    from .data.layout import structure_of

    _check(json.loads(stored.attrs["fixed_names"]) == list(design.fixed_names), "the fixed-effect names")
    structure = structure_of(design)
    _check(list(stored["theta_element"].values) == list(structure.names), "the random-effect parameters")
    reml = bool(stored.attrs["reml"])
    criterion = profiled_criterion(design, structure, reml)
    theta = stored["theta"].values.astype(float)
    value = float(stored.attrs["criterion"])
    _check(np.isclose(criterion(theta), value, rtol=1e-10, atol=0.0), "the criterion at the saved θ")
    record = json.loads(stored.attrs["optsummary"])
    opt = OptSummary(
        record["method"], np.array(record["initial"]), np.array(record["final"]), record["fmin"], record["evaluations"],
        record["iterations"], record["converged"], record["message"], tuple(record["boundary"]), list(record["path"]),
    )
    return RemlResult(design, reml, structure, criterion.factorize(theta), opt, value)
