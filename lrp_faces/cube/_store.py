"""The on-disk format: one NetCDF4 file per model, written to a temporary name and renamed when complete."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Callable, Iterable, NamedTuple

import netCDF4
import numpy as np

from ..zoo import MODEL_DIMS, ModelSpec
from ..errors import LRPFacesError

FORMAT = "lrp_faces.cube"
FORMAT_VERSION = 1
SUFFIX = ".nc"
TEMPORARY_SUFFIX = ".nc.tmp"
DIMS = MODEL_DIMS + ("image", "y", "x")
#: Attributes that every file of a cube shares; a file is reused or combined only when they agree.
SHARED = ("cube_format_version", "method", "method_params", "canonizers", "contrastive", "target", "input_height",
          "input_width", "n_images", "images_sha256")
#: Attributes that describe one model's run; a file is reused only when they also agree.
PER_MODEL = ("labels_sha256",)
DIGESTS = {"images_sha256": "images (ids, order, identity, gender or pixels)",
           "labels_sha256": "labels for the model's task"}
VERSIONED = {"lrp_faces_version": "lrp-faces", "zennit_version": "zennit", "torch_version": "torch",
             "xarray_version": "xarray", "netcdf4_version": "netCDF4", "numpy_version": "numpy"}
PER_IMAGE = {  # name: (netCDF type, long_name)
    "output": ("f4", "explained output of the model (see attribute explained_output)"),
    "prediction": ("i8", "class predicted by the model"),
    "label": ("i8", "true class of the image for the model's task"),
    "correct": ("i1", "whether the prediction equals the label"),
}


class CubeError(LRPFacesError, ValueError):
    """A relevance cube that cannot be computed or opened as asked."""


class CubeInputError(CubeError):
    """A zoo, data set, path or argument that does not fit the cube (e.g. image size, label range)."""


class CubeFileError(CubeError):
    """A cube file that is truncated, damaged, incomplete or not a cube file."""


class CubeMismatchError(CubeError):
    """Cube files that disagree with each other or with the arguments of ``compute`` (method, images, ...)."""


def file_name(spec: ModelSpec) -> str:
    return f"{spec.name}{SUFFIX}"


def temporary_name(spec: ModelSpec) -> str:
    """Hidden and not ending in ``.nc``, so that :func:`cube_files` never picks it up."""
    return f".{spec.name}{TEMPORARY_SUFFIX}"


def cube_files(directory: Path) -> list[Path]:
    """The complete model files of a cube directory, sorted (temporaries are never listed)."""
    return sorted(path for path in directory.glob(f"*{SUFFIX}") if path.is_file() and not path.name.startswith("."))


def temporary_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f".*{TEMPORARY_SUFFIX}"))


def recompute_hint(path: Path) -> str:
    return (f"delete it and rerun lrp_faces.cube.compute(zoo, dataset, {str(path.parent)!r}, ...) with the same "
            "arguments to recompute only the missing models, or pass overwrite=True to recompute all of them")


def versions() -> dict[str, str]:
    found = {}
    for attribute, package in VERSIONED.items():
        try:
            found[attribute] = version(package)
        except PackageNotFoundError:  # pragma: no cover - e.g. running from a source tree
            found[attribute] = "unknown"
    return found


def to_json(value: Any) -> str:
    """Canonical JSON (sorted keys), so that equal settings give equal attribute strings."""
    return json.dumps(value, sort_keys=True, default=repr)


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class ImageTable(NamedTuple):
    """What the cube records about the images: ids, identity and gender (-1 unknown), size and a digest."""

    ids: list
    identity: np.ndarray
    gender: np.ndarray
    height: int
    width: int
    digest: str


class Batch(NamedTuple):
    """One batch of results: relevance (n, H, W) float32, output, prediction, label (n,)."""

    relevance: np.ndarray
    output: np.ndarray
    prediction: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class Header:
    """The attributes and shape of one complete cube file, read without loading its data."""

    path: Path
    attrs: dict
    spec: ModelSpec
    shape: tuple

    def differences(self, expected: dict, keys: Iterable[str]) -> list[str]:
        """``key: this file has X, expected Y`` for each of ``keys`` that differs."""
        found = []
        for key in keys:
            if self.attrs.get(key) == expected[key]:
                continue
            if key in DIGESTS:
                found.append(f"other {DIGESTS[key]}")
            else:
                found.append(f"{key}: {self.path.name} has {self.attrs.get(key)!r}, expected {expected[key]!r}")
        return found


def read_header(path: Path) -> Header:
    """Check that ``path`` is a complete cube file and read its attributes and the shape of ``relevance``.

    Raises
    ------
    CubeFileError
        The file cannot be read (truncated or damaged), is not a cube file, lacks the ``complete`` marker or has a
        shape that disagrees with its attributes; the message names the file and how to recompute it.
    """
    path = Path(path)
    try:
        with netCDF4.Dataset(path, "r") as nc:
            attrs = {key: _plain(nc.getncattr(key)) for key in nc.ncattrs()}
            shape = tuple(nc.variables["relevance"].shape) if "relevance" in nc.variables else None
            dims = nc.variables["relevance"].dimensions if shape is not None else None
    except (OSError, RuntimeError, KeyError, ValueError) as error:
        raise CubeFileError(f"cube file {str(path)!r} is truncated or damaged and cannot be read ({error}); "
                            f"{recompute_hint(path)}") from None
    if attrs.get("cube_format") != FORMAT or shape is None:
        raise CubeFileError(f"{str(path)!r} is not an lrp_faces cube file (no cube_format={FORMAT!r} attribute or no "
                            f"relevance variable); a cube directory holds only the files compute() writes")
    if attrs.get("cube_format_version") != FORMAT_VERSION:
        raise CubeFileError(f"cube file {str(path)!r} has format version {attrs.get('cube_format_version')!r}; this "
                            f"lrp_faces reads version {FORMAT_VERSION}; {recompute_hint(path)}")
    if attrs.get("complete") != 1:
        raise CubeFileError(f"cube file {str(path)!r} is incomplete (no complete=1 marker); {recompute_hint(path)}")
    try:
        spec = ModelSpec(attrs["pretraining"], attrs["task"], attrs["seed"])
        expected = (1, 1, 1, attrs["n_images"], attrs["input_height"], attrs["input_width"])
    except (KeyError, ValueError) as error:
        raise CubeFileError(f"cube file {str(path)!r} has damaged attributes ({error}); "
                            f"{recompute_hint(path)}") from None
    if shape != expected or tuple(dims) != DIMS:
        raise CubeFileError(f"cube file {str(path)!r} holds relevance of shape {dict(zip(dims, shape))} but its "
                            f"attributes say {dict(zip(DIMS, expected))}; {recompute_hint(path)}")
    return Header(path, attrs, spec, shape)


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError:  # pragma: no cover - e.g. directories on some platforms
        pass
    finally:
        os.close(descriptor)


def _variable(nc, name, kind, dims, long_name, units=None, **options):
    variable = nc.createVariable(name, kind, dims, **options)
    variable.setncattr("long_name", long_name)
    if units is not None:
        variable.setncattr("units", units)
    return variable


def _text(nc, name: str, dim: str, values: list, long_name: str) -> None:
    """Strings as a UTF-8 char array (``_Encoding``), which xarray decodes to str.

    Not netCDF-4 variable-length strings: reading those from dask's threads crashes some netCDF-C/HDF5 builds
    (segfault with xarray 2026.9, netCDF4 1.7.5, HDF5 2.2 when several opened files are loaded concurrently).
    """
    encoded = [value.encode("utf-8") for value in values]
    width = max(1, max(len(value) for value in encoded))
    nc.createDimension(f"{name}_strlen", width)
    variable = _variable(nc, name, "S1", (dim, f"{name}_strlen"), long_name)
    variable.setncattr("_Encoding", "utf-8")
    variable.set_auto_chartostring(False)
    variable[:] = netCDF4.stringtochar(np.array(encoded, dtype=f"S{width}"))


def _define(nc, spec: ModelSpec, images: ImageTable, chunk: int, attrs: dict) -> dict:
    count = len(images.ids)
    for dim, size in zip(DIMS, (1, 1, 1, count, images.height, images.width)):
        nc.createDimension(dim, size)
    _text(nc, "pretraining", "pretraining", [spec.pretraining], "pretraining of the model")
    _text(nc, "task", "task", [spec.task], "fine-tuning task of the model")
    _variable(nc, "seed", "i8", ("seed",), "random seed of the fine-tuning", "1")[:] = [spec.seed]
    _text(nc, "image", "image", images.ids, "image id")
    _variable(nc, "identity", "i8", ("image",), "identity class of the image (-1 unknown)", "1")[:] = images.identity
    _variable(nc, "gender", "i8", ("image",), "gender of the image (0 female, 1 male, -1 unknown)",
              "1")[:] = images.gender
    _variable(nc, "y", "i4", ("y",), "pixel row, from the top", "1")[:] = np.arange(images.height)
    _variable(nc, "x", "i4", ("x",), "pixel column, from the left", "1")[:] = np.arange(images.width)
    relevance = _variable(nc, "relevance", "f4", DIMS, "relevance of each pixel for the explained output, summed over "
                          "colour channels; positive is evidence for the target class", "1", zlib=True, complevel=1,
                          shuffle=True, fletcher32=True, chunksizes=(1, 1, 1, chunk, images.height, images.width),
                          fill_value=False)
    # a one-chunk cache: batches fill whole chunks, which are then compressed and written, so memory stays flat
    chunk_bytes = chunk * images.height * images.width * 4
    relevance.set_var_chunk_cache(size=chunk_bytes + 1024, nelems=11, preemption=1.0)
    variables = {"relevance": relevance}
    for name, (kind, long_name) in PER_IMAGE.items():
        variables[name] = _variable(nc, name, kind, MODEL_DIMS + ("image",), long_name, "1", contiguous=True,
                                    fill_value=False)
    variables["correct"].setncattr("dtype", "bool")  # xarray decodes i1 with this attribute as bool
    for variable in variables.values():
        variable.setncattr("coordinates", "identity gender")  # non-index coordinates on image (xarray, CF)
    nc.setncatts(attrs)
    return variables


def write_model_file(directory: Path, spec: ModelSpec, attrs: dict, images: ImageTable, chunk: int,
                     batches: Iterable[tuple[int, Batch]], finish: Callable[[], dict] = dict) -> Path:
    """Write one model's file from ``batches`` of ``(first_image_index, Batch)``, streaming.

    Data go to a hidden temporary file in ``directory``; only when every batch is written is the ``complete=1``
    marker (with the attributes ``finish()`` returns) set, the file closed, synced and renamed to its final name. On
    any error, also KeyboardInterrupt, the temporary file is removed. Returns the final path.
    """
    final, temporary = directory / file_name(spec), directory / temporary_name(spec)
    nc = netCDF4.Dataset(temporary, "w", format="NETCDF4")
    try:
        variables = _define(nc, spec, images, chunk, attrs)
        for start, batch in batches:
            stop = start + len(batch.label)
            variables["relevance"][0, 0, 0, start:stop] = batch.relevance
            for name in ("output", "prediction", "label"):
                variables[name][0, 0, 0, start:stop] = getattr(batch, name)
            variables["correct"][0, 0, 0, start:stop] = (batch.prediction == batch.label).astype(np.int8)
        nc.setncatts(finish())
        nc.setncattr("complete", 1)
        nc.close()
    except BaseException:
        try:
            nc.close()
        except (RuntimeError, OSError):  # already closed, or closing failed: the file is discarded anyway
            pass
        temporary.unlink(missing_ok=True)
        raise
    _fsync(temporary)
    os.replace(temporary, final)
    _fsync(directory)
    return final
