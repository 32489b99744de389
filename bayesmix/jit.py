"""Compiled code without a writable disk: numba's ``njit`` and ``cfunc``, and PyTensor's directory.

bayesmix's kernels ask numba to cache their machine code (``cache=True``) so that only the
first process compiles them, and PyTensor keeps what it compiles under ``~/.pytensor``.
numba refuses a function outright, at decoration time, when it finds no writable place for
its cache (a read-only installation and a read-only home directory, no ``NUMBA_CACHE_DIR``),
and PyTensor's numba backend fails on import when its directory cannot be created: either
would make ``import bayesmix`` fail. Here the kernels are then compiled in memory and
PyTensor is given a temporary directory (removed at exit), with one warning; everything
works, only each process compiles again.

This module is imported before anything imports PyTensor, whose directory cannot be changed
once it is imported.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numba
from numba.core import event
from numba.core.caching import FunctionCache

from .errors import BayesmixWarning, warn

COMPILE_NOTICE = (
    "bayesmix: compiling numba kernels for this kind of model; this happens once (they are cached on disk) and "
    "can take 10-30 s"
)
"""The line printed, once per process, when a bayesmix kernel is first compiled rather than loaded from the cache."""


def njit(*args, cache: bool = False, **options):
    """``numba.njit``; ``cache=True`` caches on disk when numba can, else compiles in memory."""
    if args:  # used bare, as @njit
        return numba.njit(*args, **options)
    return lambda function: numba.njit(cache=cache and _cacheable(function), **options)(function)


def cfunc(signature, *, cache: bool = False, **options):
    """``numba.cfunc``; ``cache=True`` caches on disk when numba can, else compiles in memory."""
    return lambda function: numba.cfunc(signature, cache=cache and _cacheable(function), **options)(function)


def _cacheable(function) -> bool:
    """Whether numba finds a writable directory to cache ``function`` in (warns once if not)."""
    try:
        FunctionCache(function)  # what numba does for cache=True: finds a writable cache directory or raises
    except RuntimeError:
        _warn_no_cache()
        return False
    return True


def _pytensor_directory() -> None:
    """Point PyTensor at a temporary directory when its default one cannot be written.

    Nothing to do when PyTensor is already imported (its directory is fixed then) or the
    user chose a directory in ``PYTENSOR_FLAGS``.
    """
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "pytensor" in sys.modules or "base_compiledir" in flags:
        return
    if sys.platform == "win32":  # PyTensor's default, as pytensor.configdefaults chooses it
        default = Path(os.environ.get("LOCALAPPDATA", Path.home())) / "PyTensor"
    else:
        default = Path(os.environ.get("HOME") or Path.home()) / ".pytensor"
    try:
        default.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=default).close()
    except OSError:
        directory = tempfile.mkdtemp(prefix="bayesmix-pytensor-")
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
        os.environ["PYTENSOR_FLAGS"] = ",".join(filter(None, [flags, f"base_compiledir={directory}"]))
        _warn_no_cache()


class _CompileNotice(event.Listener):
    """Prints :data:`COMPILE_NOTICE` to stderr when numba starts compiling a bayesmix function, the
    first time in the process. numba announces each compiler pass it runs (the event
    ``numba:run_pass``) and runs none for a function it loads from its disk cache, so the line
    appears exactly when the cache is cold (or cannot be kept), whatever the kernel."""

    def __init__(self):
        self.said = False

    def on_start(self, happening: event.Event) -> None:
        if not self.said and str((happening.data or {}).get("module", "")).startswith(f"{__package__}."):
            self.said = True
            print(COMPILE_NOTICE, file=sys.stderr, flush=True)

    def on_end(self, happening: event.Event) -> None:
        pass


@functools.cache
def _warn_no_cache() -> None:
    """The warning, once per process."""
    warn(
        "Compiled code cannot be kept on disk here (numba and PyTensor find no writable cache directory: "
        "a read-only installation or home directory), so bayesmix compiles in memory, again in every process. "
        "Set NUMBA_CACHE_DIR and PYTENSOR_FLAGS=base_compiledir=... to writable directories to keep it.",
        BayesmixWarning,
    )


_pytensor_directory()
event.register("numba:run_pass", _CompileNotice())
