"""Units of work and the store of the finished ones.

A step (the cube, the generalisation benchmark, ...) is split into :class:`Unit` s: small, deterministic and
independent computations, each returning an :class:`xarray.Dataset`. A :class:`UnitStore` keeps each finished
unit's result as one checksummed NetCDF4 file, written atomically, under the results directory. The store belongs
to one set of settings: opening it with other settings discards what it holds, so a changed setting invalidates
the finished units exactly as it invalidates a step's result file. A damaged unit file counts as not finished.

>>> import tempfile, xarray as xr
>>> store = UnitStore(tempfile.mkdtemp(), "demo_step", {"fraction": 0.5})
>>> _ = store.write("block-0", xr.Dataset({"score": ("image", [1.0, 2.0])}))
>>> sorted(store.finished(["block-0", "block-1"]))
['block-0']
>>> store.read("block-0").score.values.tolist()
[1.0, 2.0]
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xarray as xr

from ..errors import LRPFacesError, LRPFacesWarning
from ..files import canonical_json, exclusive_lock, temporary_files, write_text_atomic
from ..netcdf import NetCDFFileError, read_dataset, write_dataset

__all__ = ["Unit", "UnitStore", "UnitError", "UNITS_DIR", "settings_digest", "units_root"]

UNITS_DIR = ".units"
"""Folder of a results directory that holds the finished units of each step, one sub-folder per step."""
SETTINGS_FILE = "settings.json"
LOCK_FILE = ".lock"
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=+-]*$")


class UnitError(LRPFacesError, ValueError):
    """A unit or unit store that cannot be used as asked: a bad key, a store in use, a missing result."""


@dataclass(frozen=True)
class Unit:
    """One deterministic, independent piece of a step: ``function(*arguments)`` returns an ``xarray.Dataset``.

    Parameters
    ----------
    key : str
        Unique within the step and safe as a file name (letters, digits, ``_.=+-``), e.g.
        ``"faces-gender-seed0.images-0-64"``. The same key must always mean the same computation.
    function : callable
        A module-level function (so that a worker process can import it).
    arguments : tuple
        Its positional arguments; keep them small (paths, specs, index ranges), the unit loads the rest.
    gpu : bool
        Whether the unit runs on a GPU: on a cluster it then asks for a worker resource ``GPU=1``, so CPU-only
        workers never receive it.
    """

    key: str
    function: Callable[..., xr.Dataset]
    arguments: tuple = ()
    gpu: bool = False

    def __post_init__(self):
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            raise UnitError(f"unit key {self.key!r} must be a non-empty file-name-safe string (letters, digits and "
                            "_.=+-, starting with a letter or digit)")
        if not callable(self.function):
            raise UnitError(f"unit {self.key}: function must be callable, got {type(self.function).__name__}")
        object.__setattr__(self, "arguments", tuple(self.arguments))

    def run(self) -> xr.Dataset:
        """Compute the unit here, in this process."""
        result = self.function(*self.arguments)
        if not isinstance(result, xr.Dataset):
            raise UnitError(f"unit {self.key}: {getattr(self.function, '__qualname__', self.function)} returned "
                            f"{type(result).__name__}; a unit returns an xarray.Dataset")
        return result


def settings_digest(settings: Any) -> str:
    """SHA-256 of settings (any JSON-able value) as canonical JSON."""
    return hashlib.sha256(canonical_json(settings).encode("utf-8")).hexdigest()


@contextlib.contextmanager
def units_root(units_dir: str | os.PathLike | None) -> Iterator[Path]:
    """``units_dir`` as the root of a step's :class:`UnitStore`; None: a temporary folder for the step's call (its
    units are then not kept, and nothing resumes)."""
    if units_dir is not None:
        yield Path(units_dir)
        return
    with tempfile.TemporaryDirectory(prefix="lrp_faces_units_") as folder:
        yield Path(folder)


class UnitStore:
    """The finished units of one step, on disk under ``root/<step>``, valid for one set of ``settings``.

    Parameters
    ----------
    root : str or PathLike
        The folder of all steps' units, e.g. ``results/.units``; created if needed.
    step : str
        The step's name, e.g. ``"cube"`` or ``"masking"``.
    settings : mapping
        Everything the units' results depend on (plain JSON-able data). A store opened with other settings than
        it holds is emptied first (see ``discarded``).
    log : callable, optional
        Receives one line when finished units are discarded.

    Attributes
    ----------
    discarded : int
        Finished units removed when the store was opened, because the settings changed.
    """

    def __init__(self, root: str | os.PathLike, step: str, settings: Mapping[str, Any],
                 log: Callable[[str], None] | None = None):
        if not isinstance(step, str) or not _KEY.match(step):
            raise UnitError(f"step name {step!r} must be file-name-safe")
        self.step, self.directory = step, Path(root) / step
        self.digest = settings_digest(settings)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.discarded = 0
        record = self.directory / SETTINGS_FILE
        held = None
        if record.is_file():
            with contextlib.suppress(OSError, ValueError):
                held = _digest_in(record.read_text(encoding="utf-8"))
        if held != self.digest:
            existing = self._unit_files()
            self.discarded = len(existing)
            for path in existing:
                path.unlink(missing_ok=True)
            if existing and log is not None:
                log(f"{step}: the settings changed, so {len(existing)} finished unit(s) were discarded")
            write_text_atomic(record, canonical_json({"step": step, "settings_sha256": self.digest,
                                                      "settings": settings}))

    def _unit_files(self) -> list[Path]:
        return sorted(self.directory.glob("*.nc"))

    def path(self, key: str) -> Path:
        """The file of unit ``key``."""
        return self.directory / f"{key}.nc"

    def finished(self, keys: Iterable[str]) -> set[str]:
        """Those of ``keys`` whose result is on disk and intact (header digest and every chunk's checksum, read
        through); damaged files are removed with a warning, files of other settings quietly."""
        done = set()
        for key in keys:
            path = self.path(key)
            if not path.is_file():
                continue
            try:
                attrs = read_dataset(path).attrs
            except NetCDFFileError as error:
                warnings.warn(f"{self.step}: unit file {str(path)!r} is damaged ({error}); computing it again",
                              LRPFacesWarning, stacklevel=2)
                path.unlink(missing_ok=True)
                continue
            if attrs.get("unit_settings_sha256") == self.digest and attrs.get("unit") == key:
                done.add(key)
            else:
                path.unlink(missing_ok=True)
        return done

    def write(self, key: str, result: xr.Dataset) -> Path:
        """Store the result of unit ``key`` atomically (a checksummed NetCDF4 file)."""
        return write_dataset(result, self.path(key), {"unit": key, "unit_settings_sha256": self.digest}, compress=False)

    def read(self, key: str) -> xr.Dataset:
        """The stored result of unit ``key``, verified."""
        path = self.path(key)
        if not path.is_file():
            raise UnitError(f"{self.step}: unit {key} has no result in {str(self.directory)!r}; run the step again")
        result = read_dataset(path)
        for name in ("unit", "unit_settings_sha256"):
            result.attrs.pop(name, None)
        return result

    def remove(self, keys: Iterable[str]) -> None:
        """Delete the stored results of ``keys`` (e.g. once the step's file holds them)."""
        for key in keys:
            self.path(key).unlink(missing_ok=True)

    def prune(self, keep: Iterable[str]) -> int:
        """Delete every stored result whose key is not in ``keep`` (units of an earlier plan); returns how many."""
        wanted = {f"{key}.nc" for key in keep}
        stale = [path for path in self._unit_files() if path.name not in wanted]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    @contextlib.contextmanager
    def locked(self) -> Iterator["UnitStore"]:
        """Hold an exclusive lock on the store (released by the OS if the process dies); removes stale temporaries.

        Raises
        ------
        UnitError
            Another process is running this step into the same results directory.
        """
        def busy() -> UnitError:
            return UnitError(f"another process is running step {self.step!r} into "
                             f"{str(self.directory.parent.parent)!r}; wait for it or use another results directory")

        with exclusive_lock(self.directory / LOCK_FILE, busy):
            for leftover in temporary_files(self.directory):
                leftover.unlink(missing_ok=True)
            yield self

    def clear(self) -> None:
        """Remove the store and its units (after the step's file is assembled from them), and the folder of all
        steps' units once it is empty."""
        shutil.rmtree(self.directory, ignore_errors=True)
        with contextlib.suppress(OSError):  # other steps' units are still there
            self.directory.parent.rmdir()


def _digest_in(text: str) -> str | None:
    record = json.loads(text)
    return record.get("settings_sha256") if isinstance(record, dict) else None
