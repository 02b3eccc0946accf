"""Result files of a study: NetCDF4 written atomically, with strings stored as characters and the step's settings.

Every result file of a study run is written by :func:`write_result` (also reachable as
``lrp_faces.cli.study.write_result``) and read back by :func:`read_result`.
"""
from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

__all__ = ["write_result", "read_result", "result_attrs", "STEP_ATTR", "ResultFileError"]


class ResultFileError(ValueError):
    """A result file that cannot be read."""


def _plain(value: Any) -> Any:
    """JSON-able plain data: tuples as lists, paths as strings, numpy scalars as numbers, dataclasses as dicts."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    return value

STEP_ATTR = "lrp_faces_step"
"""Result-file attribute holding the step's settings (JSON); a rerun skips the step when they match."""


def _attr_value(value: Any) -> Any:
    """A NetCDF-safe attribute value: bools as ints, None and containers as JSON, numbers and strings as they are."""
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        return value
    return json.dumps(_plain(value.tolist() if isinstance(value, np.ndarray) else value), default=repr)


def _text(item: Any) -> str:
    """One string of a string variable: bytes decoded as UTF-8, missing values (None, NaN) as ""."""
    if isinstance(item, bytes):
        return item.decode("utf-8")
    if item is None or (isinstance(item, float) and item != item):
        return ""
    return str(item)


def _netcdf_ready(dataset: xr.Dataset) -> tuple[xr.Dataset, dict]:
    """Plain indexes, str instead of bytes, NetCDF-safe attributes; and the encoding that stores strings as chars."""
    multi = [name for name, index in dataset.indexes.items() if isinstance(index, pd.MultiIndex)]
    if multi:
        dataset = dataset.reset_index(multi)
    dataset = dataset.copy()
    encoding = {}
    for name, variable in list(dataset.variables.items()):
        values = variable.values if variable.dtype.kind in "OSU" else None
        if values is not None:
            values = np.array([_text(item) for item in values.ravel()], dtype=object).reshape(values.shape)
            dataset[name] = variable.copy(data=values)
            encoding[name] = {"dtype": "S1"}
        dataset[name].attrs = {key: _attr_value(value) for key, value in variable.attrs.items() if value is not None}
        dataset[name].encoding = {}
    dataset.attrs = {key: _attr_value(value) for key, value in dataset.attrs.items() if value is not None}
    return dataset, encoding


def write_result(dataset: xr.Dataset, path: str | os.PathLike, settings: Mapping | None = None) -> Path:
    """Write a result Dataset to a NetCDF4 file atomically (a temporary file beside it, renamed when complete).

    Strings (coordinates and variables) are stored as UTF-8 char arrays, which read back as ``str``; writing
    netCDF-4 variable-length strings crashes some netCDF-C/HDF5 builds. MultiIndexes are reset to plain coordinates,
    booleans and containers in attributes become ints and JSON. ``settings`` (plain data) are recorded as JSON in
    the ``lrp_faces_step`` attribute, which :func:`result_attrs` reads and ``lrp-faces run`` compares to resume.

    Returns
    -------
    Path
        ``path``.
    """
    if not isinstance(dataset, xr.Dataset):
        raise TypeError(f"write_result writes an xarray.Dataset, got {type(dataset).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ready, encoding = _netcdf_ready(dataset)
    if settings is not None:
        ready.attrs[STEP_ATTR] = json.dumps(_plain(settings), sort_keys=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        ready.to_netcdf(temporary, engine="netcdf4", format="NETCDF4", encoding=encoding)
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def read_result(path: str | os.PathLike) -> xr.Dataset:
    """A result file written by :func:`write_result`, loaded into memory (the file is closed again)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"result file {str(path)!r} does not exist")
    try:
        with xr.open_dataset(path, engine="netcdf4") as dataset:
            return dataset.load()
    except (OSError, ValueError, RuntimeError) as error:
        raise ResultFileError(f"{str(path)!r} is not a readable NetCDF result file ({error}); delete it and rerun the "
                         f"step to recompute it") from None


def result_attrs(path: str | os.PathLike) -> dict | None:
    """The global attributes of a NetCDF file, read without its data; None if it cannot be read."""
    try:
        with netCDF4.Dataset(path, "r") as nc:
            return {key: nc.getncattr(key) for key in nc.ncattrs()}
    except (OSError, RuntimeError, ValueError):
        return None
