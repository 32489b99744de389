"""Saved results on disk: the netCDF layout shared by every result type, written atomically.

A saved file is an ``xarray.DataTree`` with one extra group, ``bayesmix``, that holds what is
needed to rebuild the result's :class:`~bayesmix.data.design.Design`:

- the formula text and, as variables along dimension ``row``, the rows the fit used of the
  columns the formula names, each with its pandas dtype (categories and their order for
  categoricals; strings, booleans, integers and floats are stored natively), and the row labels;
- as attributes (JSON text where structured): the kind of result, the format version, the
  number of rows dropped for missing values, and what the result type adds (its
  :class:`StoredSchema`): for a posterior the priors, the sampler settings and the method; for
  a REML/ML fit θ, the criterion and the optimiser's record.

Each result type writes and reads its own part (``to_netcdf`` and ``from_stored``);
:func:`bayesmix.load` reads a file with :func:`read` and hands it to the type it names. The
stored formula is untrusted: :func:`rebuild_design` passes it through the same allow-list as a
formula a user types.
"""

from __future__ import annotations

import dataclasses
import json
import os
import uuid
import warnings
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..families import FAMILY_NAMES, Family
from ..errors import ArgumentError, BayesmixError, BayesmixWarning, DataError, RankDeficiencyWarning, warn
from .build import ARGUMENT_COLUMNS, argument, make_design, response_values
from .design import Design

FORMAT_VERSION = 1
GROUP = "bayesmix"


@dataclass(frozen=True)
class StoredSchema:
    """What one result type keeps in the ``bayesmix`` group, checked before it is read.

    Attributes
    ----------
    attrs
        Attribute name -> its type (``list`` and ``dict`` stand for JSON text decoding to one).
    variables
        Variables the group must hold besides the rows (``theta``).
    groups
        Groups the file must hold besides ``bayesmix`` (``posterior``).
    """

    attrs: dict
    variables: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


# ----- writing ----------------------------------------------------------------------------
def design_dataset(design: Design, result: str, attrs: dict) -> xr.Dataset:
    """The ``bayesmix`` group of a saved result: the design's rows and formula, plus ``attrs``."""
    rows = design.rows if design.in_memory else None
    frame = None if rows is None else rows.frame
    if frame is None:
        raise ArgumentError(
            "This result's design does not hold its rows (it was not built from a pandas DataFrame), "
            "so it cannot be saved in a form that rebuilds it."
        )
    if not np.array_equal(response_values(design.recipe.evaluator, frame, design.family, argument(frame, "weights"))[0],
                          rows.y):
        raise ArgumentError(
            "This result's response is not the one in its data (it was replaced, e.g. by BayesModel.sample(y=...)), "
            "so loading could not rebuild it; save the draws alone with result.idata.to_netcdf(path)."
        )
    variables = {}
    for k, name in enumerate(frame.columns):
        values, meta = _encode(frame[name], f"column {name!r}")
        variables[f"column_{k}"] = xr.Variable("row", values, attrs={"name": str(name), **meta})
    try:
        values, meta = _encode(pd.Series(rows.index), "row labels")
    except DataError:
        warn(
            "The row labels (index) of the data cannot be saved; the loaded result numbers its rows 0, 1, ... instead.",
            BayesmixWarning,
        )
        values, meta = np.arange(len(rows.index)), {"pandas_dtype": "int64", "kind": "number"}
    variables["row_label"] = xr.Variable("row", values, attrs=meta)
    header = {
        "bayesmix_format": FORMAT_VERSION,
        "bayesmix_version": _version(),
        "result": result,
        "formula": design.formula.text,
        **family_attrs(design.family),
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
    try:
        return version("bayesmix")
    except PackageNotFoundError:  # run from a source tree that is not installed
        return "unknown"


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
def read(path, schemas: dict[str, StoredSchema]) -> tuple[xr.DataTree, xr.Dataset]:
    """The tree of a saved result and its ``bayesmix`` group, checked against ``schemas`` (one
    per kind of result, by name); DataError naming the file and the fault otherwise."""
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
    _check_stored(stored, tree, str(path), schemas)
    return tree.drop_nodes(GROUP), stored


# What the bayesmix group holds: attribute -> its type; list and dict stand for JSON text decoding to one.
_HEADER = {"bayesmix_format": int, "result": str, "formula": str, "n_dropped": int, "columns": int}
_COLUMN_ATTRS = {"kind": str, "pandas_dtype": str}
_CATEGORY_ATTRS = {"categories": list, "categories_dtype": str, "ordered": int}
_KINDS = ("category", "datetime", "bool", "text", "number")


def _check_stored(stored: xr.Dataset, tree: xr.DataTree, path: str, schemas: dict[str, StoredSchema]) -> None:
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
    if result not in schemas:
        raise damaged(f"it holds an unknown kind of result {result!r} (not one of {', '.join(schemas)})")
    own = schemas[result]
    check(stored.attrs, own.attrs, group)
    if int(stored.attrs["n_dropped"]) < 0 or int(stored.attrs["columns"]) < 0:
        raise damaged("a negative count of rows dropped or of columns")
    names = ["row_label"] + [f"column_{k}" for k in range(int(stored.attrs["columns"]))] + list(own.variables)
    for child in own.groups:
        if child not in tree.children:
            raise damaged(f"it has no {child!r} group")
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


def rebuild_design(stored: xr.Dataset, transforms: dict | None) -> Design:
    """The design a saved result was fitted to, rebuilt from its stored formula and rows exactly
    as :func:`~bayesmix.data.build.make_design` built it (``transforms`` as there)."""
    index = pd.Index(_decode(stored["row_label"]))
    columns = {}
    for k in range(int(stored.attrs["columns"])):
        variable = stored[f"column_{k}"]
        columns[variable.attrs["name"]] = _decode(variable).set_axis(index)
    frame = pd.DataFrame(columns, index=index)
    arguments = {name: frame.pop(column).to_numpy() for name, column in ARGUMENT_COLUMNS.items() if column in frame}
    family = stored_family(stored.attrs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)  # already reported when the model was fitted
        design = make_design(stored.attrs["formula"], frame, transforms, family, **arguments)
    return dataclasses.replace(design, n_dropped=int(stored.attrs["n_dropped"]))


def family_attrs(family: Family) -> dict[str, str]:
    """The attributes that name ``family`` in a file (:func:`stored_family` reads them back)."""
    return {"family": next(name for name, kind in FAMILY_NAMES.items() if isinstance(family, kind)), "link": family.link}


def stored_family(attrs: dict) -> Family:
    """The response family a file names (the Gaussian for files written before families were
    stored); DataError for a family or link bayesmix does not have."""
    name, link = attrs.get("family", "gaussian"), attrs.get("link")
    if not isinstance(name, str) or name not in FAMILY_NAMES:
        raise DataError(f"The file names the family {name!r}, which is not one of {', '.join(FAMILY_NAMES)}.")
    try:
        return FAMILY_NAMES[name]() if link is None else FAMILY_NAMES[name](link=link)
    except ArgumentError as exc:
        raise DataError(f"The file names a family bayesmix cannot build: {exc}") from None


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


def check_rebuilt(condition: bool, what: str) -> None:
    """DataError unless the rebuilt design agrees with the saved result in ``what``."""
    if not condition:
        raise DataError(
            f"The saved result cannot be rebuilt identically: {what} differ(s) from what was saved "
            "(different formulaic or pandas version?). Refit the model from the data instead."
        )
