"""Relevance cubes: every map of every model for every image, as one labelled xarray Dataset.

>>> from lrp_faces import cube                                                        # doctest: +SKIP
>>> relevance = cube.compute(zoo, dataset, "study/cube")                              # doctest: +SKIP
>>> relevance = cube.open("study/cube")                                               # doctest: +SKIP
>>> relevance.relevance.sel(task="gender").mean("seed")                               # doctest: +SKIP

On disk a cube is a directory with one NetCDF4 file per model (``faces-gender-seed0.nc``), each readable with plain
``xarray.open_dataset``. Files are written under a hidden temporary name and renamed when complete, so an
interrupted :func:`compute` resumes where it stopped. Importing this module registers the ``.lrp`` accessor.
"""
from ._compute import compute
from ._open import open_cube as open  # noqa: A001 - the public name; the builtin stays reachable as builtins.open
from ._store import (FORMAT, FORMAT_VERSION, CubeError, CubeFileError, CubeInputError, CubeMismatchError,
                     file_name)
from .accessor import LRPAccessor

__all__ = ["compute", "open", "CubeError", "CubeFileError", "CubeInputError", "CubeMismatchError", "LRPAccessor",
           "file_name", "FORMAT", "FORMAT_VERSION"]
