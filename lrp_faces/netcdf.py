"""NetCDF4 files of results: written atomically and checksummed, read back verified.

Every array variable is stored with HDF5's ``fletcher32`` checksum, so a damaged chunk fails to read instead of
giving other numbers, and the header (global attributes, variable names, dims, shapes, types, attributes and the
values of scalar variables) is digested into the ``lrp_faces_sha256`` attribute, so a flipped byte in the metadata
is found too. :func:`read_dataset` and :func:`read_attributes` check both and raise :class:`NetCDFFileError`,
naming the file, for anything unreadable, truncated or damaged.

Strings (coordinates and variables) are stored as UTF-8 character arrays, which read back as ``str``: writing
netCDF-4 variable-length strings crashes some netCDF-C/HDF5 builds when files are read from several threads.

>>> import tempfile, pathlib, xarray as xr
>>> path = pathlib.Path(tempfile.mkdtemp()) / "result.nc"
>>> _ = write_dataset(xr.Dataset({"accuracy": ("model", [0.9, 0.8])}, coords={"model": ["a", "b"]}), path)
>>> read_dataset(path).accuracy.sel(model="b").item()
0.8
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import pandas as pd
import xarray as xr

from .errors import LRPFacesError
from .files import atomic_path

__all__ = ["write_dataset", "read_dataset", "read_attributes", "header_digest", "verify_header", "plain",
           "attribute_value", "NetCDFFileError", "DIGEST_ATTR"]

DIGEST_ATTR = "lrp_faces_sha256"
"""Global attribute holding the SHA-256 of the file's header (see :func:`header_digest`)."""


class NetCDFFileError(LRPFacesError, ValueError):
    """A NetCDF file that is missing, truncated, damaged or was not written by lrp_faces.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "result.nc"
    >>> _ = path.write_bytes(b"CDF" + bytes(10))  # a truncated file
    >>> try:
    ...     read_dataset(path)
    ... except NetCDFFileError as error:
    ...     print(str(error).startswith(repr(str(path))), isinstance(error, ValueError))
    True True
    """


def plain(value: Any) -> Any:
    """JSON-able plain data: tuples as lists, paths as strings, numpy scalars as numbers, dataclasses as dicts.

    Examples
    --------
    >>> import pathlib
    >>> plain({"fractions": (0.0, 0.5), "path": pathlib.Path("a/b"), "count": np.int64(3)})
    {'fractions': [0.0, 0.5], 'path': 'a/b', 'count': 3}
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.ndarray):
        return plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    return value


def attribute_value(value: Any) -> Any:
    """A NetCDF-safe attribute value: bools as ints, None and containers as JSON, numbers and strings as they are.

    Examples
    --------
    >>> attribute_value(True), attribute_value(0.5), attribute_value(None), attribute_value({"fill": "mean"})
    (1, 0.5, 'null', '{"fill": "mean"}')
    """
    if isinstance(value, (bool, np.bool_)):
        return int(value)
    if isinstance(value, (str, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, np.ndarray) and value.dtype.kind in "iuf" and value.ndim == 1:
        return value
    return json.dumps(plain(value), default=repr)


def _text(item: Any) -> str:
    """One string of a string variable: bytes decoded as UTF-8, missing values (None, NaN) as ""."""
    if isinstance(item, bytes):
        return item.decode("utf-8")
    if item is None or (isinstance(item, float) and item != item):
        return ""
    return str(item)


def _netcdf_ready(dataset: xr.Dataset, compress: bool = True) -> tuple[xr.Dataset, dict]:
    """Plain indexes, str instead of bytes, NetCDF-safe attributes; and the encoding with checksums and chars."""
    multi = [name for name, index in dataset.indexes.items() if isinstance(index, pd.MultiIndex)]
    if multi:
        dataset = dataset.reset_index(multi)
    dataset = dataset.copy()
    encoding = {}
    for name, variable in list(dataset.variables.items()):
        options: dict[str, Any] = {}
        if variable.dtype.kind in "OSU":
            values = np.array([_text(item) for item in variable.values.ravel()], dtype=object)
            dataset[name] = variable.copy(data=values.reshape(variable.shape))
            options["dtype"] = "S1"
        if variable.ndim and variable.size:  # checksums need chunked storage, which scalars and empty arrays lack
            options.update(fletcher32=True, zlib=compress, complevel=1 if compress else None)
        encoding[name] = options
        dataset[name].attrs = {key: attribute_value(value) for key, value in variable.attrs.items()
                               if value is not None}
        dataset[name].encoding = {}
    dataset.attrs = {key: attribute_value(value) for key, value in dataset.attrs.items()
                     if value is not None and key != DIGEST_ATTR}
    return dataset, encoding


def _json_safe(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_json_safe(item) for item in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:
        return "NaN"
    return value


def header_digest(nc: netCDF4.Dataset) -> str:
    """SHA-256 of an open file's header: global attributes (but the digest), and per variable its dims, shape,
    type, attributes and, for scalars, its value.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = write_dataset(xr.Dataset({"auc": 0.7}), pathlib.Path(tempfile.mkdtemp()) / "result.nc")
    >>> with netCDF4.Dataset(path) as nc:
    ...     header_digest(nc) == nc.getncattr(DIGEST_ATTR)
    True
    """
    header = {"attributes": {key: _json_safe(nc.getncattr(key)) for key in nc.ncattrs() if key != DIGEST_ATTR},
              "dimensions": {name: len(dim) for name, dim in nc.dimensions.items()}, "variables": {}}
    for name, variable in nc.variables.items():
        entry = {"dims": list(variable.dimensions), "shape": list(variable.shape), "dtype": str(variable.dtype),
                 "attributes": {key: _json_safe(variable.getncattr(key)) for key in variable.ncattrs()}}
        if variable.ndim == 0:
            variable.set_auto_maskandscale(False)
            entry["value"] = _json_safe(np.asarray(variable[...]).item())
        header["variables"][name] = entry
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def verify_header(nc: netCDF4.Dataset, path: str | os.PathLike) -> None:
    """Raise :class:`NetCDFFileError` unless the open file's header matches its recorded digest.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = write_dataset(xr.Dataset({"auc": 0.7}), pathlib.Path(tempfile.mkdtemp()) / "result.nc")
    >>> with netCDF4.Dataset(path, "a") as nc:
    ...     nc.setncattr("method", "changed afterwards")
    >>> with netCDF4.Dataset(path) as nc:
    ...     verify_header(nc, path)
    Traceback (most recent call last):
    lrp_faces.netcdf.NetCDFFileError: '...result.nc' is damaged: its attributes or layout do not match their ...
    """
    if DIGEST_ATTR not in nc.ncattrs():
        raise NetCDFFileError(f"{str(path)!r} has no {DIGEST_ATTR} attribute: it was not written by lrp_faces, or by "
                              "an older version; delete it and rerun the step that writes it")
    if nc.getncattr(DIGEST_ATTR) != header_digest(nc):
        raise NetCDFFileError(f"{str(path)!r} is damaged: its attributes or layout do not match their recorded "
                              "digest; delete it and rerun the step that writes it")


def write_dataset(dataset: xr.Dataset, path: str | os.PathLike, attrs: Mapping[str, Any] | None = None,
                  compress: bool = True) -> Path:
    """Write ``dataset`` (with extra global ``attrs``) to a checksummed NetCDF4 file at ``path``, atomically.

    MultiIndexes are reset to plain coordinates; booleans and containers in attributes become ints and JSON. The
    file is complete or absent: it is written beside ``path`` under a temporary name and renamed when done.
    ``compress=False`` skips zlib (for short-lived files written on a hot path; the checksums stay).

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    TypeError
        ``dataset`` is not an :class:`xarray.Dataset`.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> result = xr.Dataset({"accuracy": ("fraction", [1.0, 0.4])}, coords={"fraction": [0.0, 0.5]})
    >>> path = write_dataset(result, pathlib.Path(tempfile.mkdtemp()) / "curves.nc", attrs={"order": "morf"})
    >>> read_attributes(path)["order"], read_dataset(path).accuracy.values.tolist()
    ('morf', [1.0, 0.4])
    """
    if not isinstance(dataset, xr.Dataset):
        raise TypeError(f"write_dataset writes an xarray.Dataset, got {type(dataset).__name__}")
    path = Path(path)
    ready, encoding = _netcdf_ready(dataset, compress)
    for key, value in (attrs or {}).items():
        ready.attrs[key] = attribute_value(value)
    with atomic_path(path) as temporary:
        ready.to_netcdf(temporary, engine="netcdf4", format="NETCDF4", encoding=encoding)
        with netCDF4.Dataset(temporary, "a") as nc:
            nc.setncattr(DIGEST_ATTR, header_digest(nc))
    return path


def _open_error(path: Path, error: BaseException) -> NetCDFFileError:
    return NetCDFFileError(f"{str(path)!r} is not a readable NetCDF4 file (truncated or damaged: "
                           f"{type(error).__name__}: {error}); delete it and rerun the step that writes it")


def read_attributes(path: str | os.PathLike, verify: bool = True) -> dict:
    """The global attributes of a file written by :func:`write_dataset`, after checking its header digest.

    ``verify=False`` reads the attributes of any NetCDF file without the check (e.g. to tell what kind of file it
    is).

    Raises
    ------
    NetCDFFileError
        The file is missing, unreadable or its header was changed.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = write_dataset(xr.Dataset({"auc": 0.7}), pathlib.Path(tempfile.mkdtemp()) / "r.nc", {"kind": "demo"})
    >>> read_attributes(path)
    {'kind': 'demo'}
    """
    path = Path(path)
    if not path.is_file():
        raise NetCDFFileError(f"{str(path)!r} does not exist or is not a file")
    try:
        with netCDF4.Dataset(path, "r") as nc:
            if verify:
                verify_header(nc, path)
            return {key: nc.getncattr(key) for key in nc.ncattrs() if key != DIGEST_ATTR}
    except NetCDFFileError:
        raise
    except (OSError, RuntimeError, ValueError, KeyError) as error:
        raise _open_error(path, error) from None


def read_dataset(path: str | os.PathLike) -> xr.Dataset:
    """A file written by :func:`write_dataset`, loaded into memory and verified (header digest and checksums).

    Raises
    ------
    NetCDFFileError
        The file is missing, unreadable, or its header or data were damaged.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = write_dataset(xr.Dataset({"auc": ("model", [0.7, 0.6])}), pathlib.Path(tempfile.mkdtemp()) / "r.nc")
    >>> read_dataset(path).auc.values.tolist()
    [0.7, 0.6]
    """
    path = Path(path)
    read_attributes(path)
    try:
        with xr.open_dataset(path, engine="netcdf4") as dataset:
            loaded = dataset.load()
    except (OSError, RuntimeError, ValueError) as error:
        raise _open_error(path, error) from None
    loaded.attrs.pop(DIGEST_ATTR, None)
    return loaded
