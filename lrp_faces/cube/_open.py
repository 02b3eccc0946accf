"""``open``: a cube directory as one lazy, dask-backed xarray Dataset, after checking that its files agree."""
from __future__ import annotations

import json
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import xarray as xr

from ..files import canonical_json
from ._store import (PER_IMAGE, SHARED, VERSION_ATTRS, ChunkReader, CubeFileError, CubeMismatchError, Header,
                     cube_files, read_header, recompute_hint, verify_file)

#: File attributes that describe one model; in the cube they are gathered per model into ``models``.
MODEL_ATTRS = ("pretraining", "task", "seed", "model", "model_file", "model_file_format", "model_file_sha256",
               "model_weights_sha256", "model_num_classes", "class_names", "preprocessing", "architecture",
               "labels_sha256", "created", "seconds", "history", "complete")
#: Where a model of an incomplete grid has no file: NaN maps and outputs, class -1, not correct.
FILL = {"relevance": np.nan, "output": np.nan, "prediction": -1, "label": -1, "correct": False}


def open_cube(path: str | os.PathLike, chunks=None) -> xr.Dataset:
    """Open a cube directory written by :func:`compute` lazily, as one dask-backed Dataset.

    Parameters
    ----------
    path : str or PathLike
        The cube directory (or a single model's file).
    chunks : dict or "auto", optional
        Dask chunks, as for :func:`xarray.open_dataset`. The default, the chunks on disk (one batch of images of one
        model), lets a reader take a block of images without reading the rest; ``"auto"`` makes one chunk per model.

    Returns
    -------
    xarray.Dataset
        ``relevance`` (pretraining, task, seed, image, y, x) and per model × image ``output``, ``prediction``,
        ``label`` and ``correct``; the attributes of the run, with the per-model ones gathered as JSON in ``models``
        and ``preprocessing``. Models missing from the grid are NaN (classes -1), marked by a ``computed``
        coordinate.

    Raises
    ------
    CubeFileError
        No cube files, or a truncated or damaged one (named); also later, when a chunk that is read fails its
        checksum (the file is named; :func:`verify` checks them all at once).
    CubeMismatchError
        Files that disagree on the images, image size or method (the odd ones are named).
    """
    headers = [read_header(file) for file in _files(path)]
    _check_agreement(headers)
    datasets = [_open_file(header.path, {} if chunks is None else chunks) for header in headers]
    cube = _combine([header.spec for header in headers], datasets)
    cube.attrs = _cube_attrs(headers)
    return cube


def verify(path: str | os.PathLike) -> list[Path]:
    """Check every cube file in ``path`` (a cube directory or one file): its header digest and the checksum of every
    chunk of every variable, reading one chunk at a time.

    About as fast as reading the cube once; :func:`compute` does it for the files it reuses.

    Returns
    -------
    list of Path
        The files checked, all undamaged.

    Raises
    ------
    CubeFileError
        No cube files, or damaged ones: the message names every damaged file and what is wrong with it.
    """
    files, damaged = _files(Path(path)), []
    for file in files:
        try:
            verify_file(file)
        except CubeFileError as error:
            damaged.append(error)
    if len(damaged) == 1:
        raise damaged[0]
    if damaged:
        raise CubeFileError(f"{len(damaged)} cube files are damaged: " + "; ".join(
            f"{str(error.path)!r} {error.cause}" for error in damaged) + f"; {recompute_hint(damaged[0].path)}",
            damaged[0].path, "; ".join(error.cause for error in damaged))
    return files


def _files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_dir():
        files = cube_files(path)
        if not files:
            raise CubeFileError(f"{str(path)!r} holds no cube files (*.nc); compute a cube with "
                                f"lrp_faces.cube.compute(zoo, dataset, {str(path)!r})", path, "holds no cube files")
        return files
    if path.is_file():
        return [path]
    raise CubeFileError(f"there is no cube at {str(path)!r}: no such directory or file", path, "does not exist")


def _open_file(path: Path, chunks) -> xr.Dataset:
    """One file, lazily; a chunk that fails to read (e.g. its checksum) raises a CubeFileError naming the file."""
    try:
        return xr.open_dataset(path, engine="netcdf4", chunks=chunks,
                               from_array_kwargs={"getitem": ChunkReader(path)})
    except (OSError, RuntimeError, ValueError) as error:
        raise CubeFileError(f"cube file {str(path)!r} cannot be opened ({error}); {recompute_hint(path)}", path,
                            f"cannot be opened ({error})") from None


def _check_agreement(headers: list[Header]) -> None:
    """Every file must share the method, images and image size of the majority; name the odd ones."""
    keys = [tuple(header.attrs.get(key) for key in SHARED) for header in headers]
    majority = Counter(keys).most_common(1)[0][0]
    reference = headers[keys.index(majority)]
    odd = [header for header, key in zip(headers, keys) if key != majority]
    if odd:
        details = "; ".join(f"{header.path.name}: {', '.join(header.differences(reference.attrs, SHARED))}"
                            for header in odd[:5])
        raise CubeMismatchError(
            f"the files of the cube in {str(reference.path.parent)!r} disagree: {len(odd)} odd file(s) "
            f"{', '.join(repr(header.path.name) for header in odd[:5])} differ from the others (compared with "
            f"{reference.path.name!r}): {details}. Delete the odd file(s) and rerun lrp_faces.cube.compute(...) with "
            "the cube's arguments, or recompute the whole cube with overwrite=True")
    seen = {}
    for header in headers:
        if header.spec in seen:
            raise CubeMismatchError(f"{header.path.name!r} and {seen[header.spec].path.name!r} both hold model "
                                    f"{header.spec}; delete the one that does not belong")
        seen[header.spec] = header
    for attribute in VERSION_ATTRS:
        found = sorted({str(header.attrs.get(attribute)) for header in headers})
        if len(found) > 1:
            warnings.warn(f"the files of the cube in {str(reference.path.parent)!r} were written with different "
                          f"{attribute.removesuffix('_version')} versions {found}", stacklevel=3)


def _concat(items: list[xr.Dataset], dim: str) -> xr.Dataset:
    if len(items) == 1:
        return items[0]
    return xr.concat(items, dim=dim, data_vars="all", coords="minimal", compat="override", join="outer",
                     combine_attrs="override", fill_value=FILL)


def _combine(specs: list, datasets: list[xr.Dataset]) -> xr.Dataset:
    """Nest the one-model datasets along seed, task and pretraining (outer join: a ragged grid is filled)."""
    by_spec = dict(zip(specs, datasets))
    pretrainings = sorted({spec.pretraining for spec in specs})
    cube = _concat([_concat([_concat([by_spec[spec] for spec in sorted(by_spec)
                                      if (spec.pretraining, spec.task) == (pretraining, task)], "seed")
                             for task in sorted({spec.task for spec in by_spec if spec.pretraining == pretraining})],
                            "task")
                    for pretraining in pretrainings], "pretraining")
    present = np.zeros([cube.sizes[dim] for dim in ("pretraining", "task", "seed")], dtype=bool)
    for spec in specs:
        present[cube.indexes["pretraining"].get_loc(spec.pretraining), cube.indexes["task"].get_loc(spec.task),
                cube.indexes["seed"].get_loc(spec.seed)] = True
    if not present.all():
        cube = cube.assign_coords(computed=(("pretraining", "task", "seed"), present,
                                            {"long_name": "whether the model's maps are in the cube", "units": "1"}))
    for name in PER_IMAGE:  # restore the dtype a ragged grid's fill promoted, where it can be
        if name in ("prediction", "label") and cube[name].dtype != np.int64:
            cube[name] = cube[name].fillna(-1).astype(np.int64)
        if name == "correct" and cube[name].dtype != bool:
            cube[name] = cube[name].fillna(False).astype(bool)
    return cube


def _cube_attrs(headers: list[Header]) -> dict:
    reference = headers[0]
    attrs = {key: value for key, value in reference.attrs.items() if key not in MODEL_ATTRS}
    attrs["title"] = "lrp_faces relevance cube"
    attrs["created"] = max(str(header.attrs.get("created", "")) for header in headers)
    attrs["preprocessing"] = canonical_json({header.spec.name: json.loads(header.attrs.get("preprocessing", "null"))
                                      for header in headers})
    attrs["models"] = canonical_json({header.spec.name: {
        "file": header.path.name, "model_file": header.attrs.get("model_file"),
        "model_file_sha256": header.attrs.get("model_file_sha256"),
        "weights_sha256": header.attrs.get("model_weights_sha256"),
        "num_classes": header.attrs.get("model_num_classes"),
        "class_names": json.loads(header.attrs.get("class_names", "null")),
        "created": header.attrs.get("created"), "seconds": header.attrs.get("seconds"),
        **{key: header.attrs.get(key) for key in VERSION_ATTRS}} for header in headers})
    return attrs
