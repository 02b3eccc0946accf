"""Result files of a study: checksummed NetCDF4 (:mod:`lrp_faces.netcdf`) that record the step's settings.

Every result file of a study run is written by :func:`write_result` (also reachable as
``lrp_faces.cli.study.write_result``) and read back, verified, by :func:`read_result`.
"""
from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import xarray as xr

from ..netcdf import NetCDFFileError, plain, read_attributes, read_dataset, write_dataset

__all__ = ["write_result", "read_result", "result_attrs", "STEP_ATTR", "ResultFileError"]

ResultFileError = NetCDFFileError
"""A result file that is missing, unreadable or damaged."""

STEP_ATTR = "lrp_faces_step"
"""Result-file attribute holding the step's settings (JSON); a rerun skips the step when they match."""


def write_result(dataset: xr.Dataset, path: str | os.PathLike, settings: Mapping | None = None) -> Path:
    """Write a result Dataset to a checksummed NetCDF4 file atomically (see :func:`lrp_faces.netcdf.write_dataset`).

    ``settings`` (plain data) are recorded as JSON in the ``lrp_faces_step`` attribute, which :func:`result_attrs`
    reads and ``lrp-faces run`` compares to resume.

    Returns
    -------
    Path
        ``path``.
    """
    attrs = None if settings is None else {STEP_ATTR: json.dumps(plain(settings), sort_keys=True)}
    return write_dataset(dataset, path, attrs)


def read_result(path: str | os.PathLike) -> xr.Dataset:
    """A result file written by :func:`write_result`, loaded into memory and verified.

    Raises
    ------
    ResultFileError
        The file is missing, unreadable or damaged; the message names it and says to rerun its step.
    """
    return read_dataset(path)


def result_attrs(path: str | os.PathLike) -> dict | None:
    """The verified global attributes of a result file; None if it is missing, unreadable or damaged."""
    try:
        return read_attributes(path)
    except NetCDFFileError:
        return None
