"""The on-disk format: one checksummed NetCDF4 file per model, written atomically, read back verified.

Every variable is stored with HDF5's ``fletcher32`` checksum, so a damaged chunk fails to read instead of giving
other numbers, and the header (attributes, dims, shapes, types) is digested into the ``lrp_faces_sha256``
attribute (see :mod:`lrp_faces.netcdf`), written last, after the ``complete`` marker. Every read error becomes a
:class:`CubeFileError` that names the file.
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import netCDF4
import numpy as np

from ..errors import LRPFacesError, LRPFacesWarning
from ..faces import ImageTable
from ..files import VERSIONED_PACKAGES, atomic_path, versions
from ..netcdf import DIGEST_ATTR, NetCDFFileError, header_digest, verify_header
from ..zoo import MODEL_DIMS, ModelSpec

FORMAT = "lrp_faces.cube"
FORMAT_VERSION = 2
"""Version 2: checksums on every variable, a header digest, the models' weights digests."""
SUFFIX = ".nc"
DIMS = MODEL_DIMS + ("image", "y", "x")
#: Attributes that every file of a cube shares; a file is reused or combined only when they agree.
SHARED = ("cube_format_version", "method", "method_params", "canonizers", "contrastive", "target", "input_height",
          "input_width", "n_images", "images_sha256")
#: Attributes that describe one model's run; a file is reused only when they also agree.
PER_MODEL = ("labels_sha256",)
DIGESTS = {"images_sha256": "images (ids, order, identity, gender or pixels)",
           "labels_sha256": "labels for the model's task"}
#: ``<package>_version`` attributes, one per key of :func:`lrp_faces.files.versions`.
VERSION_ATTRS = tuple(f"{key}_version" for key in ("python", *VERSIONED_PACKAGES))
PER_IMAGE = {  # name: (netCDF type, long_name)
    "output": ("f4", "explained output of the model (see attribute explained_output)"),
    "prediction": ("i8", "class predicted by the model"),
    "label": ("i8", "true class of the image for the model's task"),
    "correct": ("i1", "whether the prediction equals the label"),
}
READ_ERRORS = (OSError, RuntimeError, ValueError, KeyError, IndexError, AttributeError)
"""What netCDF4/HDF5 raise for unreadable, truncated or damaged files (e.g. ``RuntimeError: NetCDF: HDF error``)."""


class CubeError(LRPFacesError, ValueError):
    """A relevance cube that cannot be computed or opened as asked."""


class CubeInputError(CubeError):
    """A zoo, data set, path or argument that does not fit the cube (e.g. image size, label range)."""


class CubeFileError(CubeError):
    """A cube file that is truncated, damaged, incomplete or not a cube file; ``path`` and ``cause`` say which and
    what was found."""

    def __init__(self, message: str, path: str | os.PathLike | None = None, cause: str | None = None):
        super().__init__(message)
        self.path = None if path is None else Path(path)
        self.cause = message if cause is None else cause

    def __reduce__(self):  # keep path and cause through pickling (e.g. from a dask worker)
        return type(self), (str(self), self.path, self.cause)


class CubeMismatchError(CubeError):
    """Cube files that disagree with each other or with the arguments of ``compute`` (method, images, ...)."""


class CubeNonFiniteError(CubeError):
    """Relevance maps or outputs that came out NaN or Inf; nothing of them is stored."""


NON_FINITE_MAPS = ("the maps themselves are not finite (the cube leaves out models it has not computed), as an "
                   "attribution method's parameters (e.g. epsilon = 0) or a model's non-finite weights make them; "
                   "recompute those maps with other parameters, or leave those models out")
"""What NaN or Inf relevance of a computed model means, and what to do: for the messages of the steps that read maps
(masking, analyses)."""


class CubeWarning(LRPFacesWarning):
    """A cube file that ``compute`` recomputes instead of reusing: changed weights, or a damaged file."""


def file_name(spec: ModelSpec) -> str:
    return f"{spec.name}{SUFFIX}"


def cube_files(directory: Path) -> list[Path]:
    """The complete model files of a cube directory, sorted (hidden files and folders are never listed)."""
    return sorted(path for path in directory.glob(f"*{SUFFIX}") if path.is_file() and not path.name.startswith("."))


def recompute_hint(path: Path) -> str:
    return (f"delete it and rerun lrp_faces.cube.compute(zoo, dataset, {str(path.parent)!r}, ...) with the same "
            "arguments to recompute only the missing models, or pass overwrite=True to recompute all of them")


def file_error(path: Path, cause: str, hint: bool = True, kind: str = "cube file") -> CubeFileError:
    """A :class:`CubeFileError` saying ``<kind> '<path>' <cause>``, with how to recompute it if ``hint``."""
    message = f"{kind} {str(path)!r} {cause}" + (f"; {recompute_hint(path)}" if hint else "")
    return CubeFileError(message, path, cause)


def version_attributes() -> dict[str, str]:
    """``{"python_version": ..., "lrp_faces_version": ..., ...}``: :func:`lrp_faces.files.versions` as attributes."""
    return {f"{key}_version": value for key, value in versions().items()}


def _plain(value: Any) -> Any:
    """An attribute read by netCDF4 as plain Python: one-element arrays and numpy scalars as numbers."""
    if isinstance(value, np.ndarray):
        return value.item() if value.size == 1 else value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


class Batch(NamedTuple):
    """Results for consecutive images: relevance (n, H, W) float32, output (n,) float32, prediction and label (n,)
    int64."""

    relevance: np.ndarray
    output: np.ndarray
    prediction: np.ndarray
    label: np.ndarray


@dataclass(frozen=True)
class Header:
    """The attributes and shape of one complete, verified cube file, read without loading its data."""

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


@contextlib.contextmanager
def named_errors(path: Path, doing: str, hint: bool = True, kind: str = "cube file") -> Iterator[None]:
    """Turn netCDF4/HDF5 read errors inside the block into a :class:`CubeFileError` naming ``path`` (see
    :func:`file_error`)."""
    try:
        yield
    except CubeFileError:
        raise
    except READ_ERRORS as error:
        raise file_error(path, f"is truncated or damaged: {doing} failed ({type(error).__name__}: {error})", hint,
                         kind) from None


def read_header(path: Path) -> Header:
    """Check that ``path`` is a complete, undamaged cube file and read its attributes and the shape of ``relevance``.

    Raises
    ------
    CubeFileError
        The file cannot be read (truncated or damaged), is not a cube file, lacks the ``complete`` marker, its header
        does not match its recorded digest, or its shape disagrees with its attributes; the message names the file and
        says how to recompute it.
    """
    path = Path(path)
    with named_errors(path, "reading its header"):
        with netCDF4.Dataset(path, "r") as nc:
            attrs = {key: _plain(nc.getncattr(key)) for key in nc.ncattrs()}
            relevance = nc.variables.get("relevance")
            shape = None if relevance is None else tuple(relevance.shape)
            dims = None if relevance is None else tuple(relevance.dimensions)
            if attrs.get("cube_format") != FORMAT or shape is None:
                raise CubeFileError(f"{str(path)!r} is not an lrp_faces cube file (no cube_format={FORMAT!r} attribute "
                                    "or no relevance variable); a cube directory holds only the files compute() "
                                    "writes", path, "is not an lrp_faces cube file")
            if attrs.get("cube_format_version") != FORMAT_VERSION:
                raise file_error(path, f"has format version {attrs.get('cube_format_version')!r}; this lrp_faces "
                                       f"reads version {FORMAT_VERSION}")
            if attrs.get("complete") != 1:
                raise file_error(path, "is incomplete (no complete=1 marker)")
            try:
                verify_header(nc, path)
            except NetCDFFileError:
                raise file_error(path, f"is damaged: its attributes or layout do not match the digest recorded when "
                                       f"it was written ({DIGEST_ATTR})") from None
    attrs.pop(DIGEST_ATTR, None)
    try:
        spec = ModelSpec(attrs["pretraining"], attrs["task"], attrs["seed"])
        expected = (1, 1, 1, attrs["n_images"], attrs["input_height"], attrs["input_width"])
    except (KeyError, ValueError) as error:
        raise file_error(path, f"has damaged attributes ({error})") from None
    if shape != expected or dims != DIMS:
        raise file_error(path, f"holds relevance of shape {dict(zip(dims, shape))} but its attributes say "
                               f"{dict(zip(DIMS, expected))}")
    return Header(path, attrs, spec, shape)


def verify_file(path: Path) -> Header:
    """:func:`read_header`, then read every chunk of every variable, so that HDF5 checks each one's checksum.

    Memory stays at one chunk of ``relevance`` (one batch of maps). Raises :class:`CubeFileError` naming the file.
    """
    header = read_header(path)
    with named_errors(path, "opening it"), netCDF4.Dataset(path, "r") as nc:
        for name, variable in nc.variables.items():
            variable.set_auto_maskandscale(False)
            if name != "relevance":
                with named_errors(path, f"reading variable {name!r}"):
                    variable[...]
                continue
            chunk = variable.chunking()
            step = chunk[DIMS.index("image")] if isinstance(chunk, list) else variable.shape[DIMS.index("image")]
            variable.set_var_chunk_cache(size=0, nelems=1, preemption=1.0)
            for start in range(0, variable.shape[DIMS.index("image")], max(1, step)):
                with named_errors(path, f"reading the relevance of images {start} to "
                                        f"{min(start + step, variable.shape[3]) - 1}"):
                    variable[0, 0, 0, start:start + step]
    return header


class ChunkReader:
    """A ``getitem`` for :func:`dask.array.from_array` that reads a cube file's chunks and names the file when HDF5
    reports an error (e.g. a failed checksum) instead of a bare ``NetCDF: HDF error``. Picklable."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __call__(self, array, index, asarray: bool = True, lock=None):
        with named_errors(self.path, "reading its data"):
            if lock:
                lock.acquire()
            try:
                chunk = array[index]
                return np.asarray(chunk) if asarray and type(chunk) is not np.ndarray else chunk
            finally:
                if lock:
                    lock.release()


def _variable(nc, name, kind, dims, long_name, units=None, **options):
    variable = nc.createVariable(name, kind, dims, fletcher32=True, fill_value=False, **options)
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
                          shuffle=True, chunksizes=(1, 1, 1, chunk, images.height, images.width))
    # a one-chunk cache: batches fill whole chunks, which are then compressed and written, so memory stays flat
    chunk_bytes = chunk * images.height * images.width * 4
    relevance.set_var_chunk_cache(size=chunk_bytes + 1024, nelems=11, preemption=1.0)
    variables = {"relevance": relevance}
    for name, (kind, long_name) in PER_IMAGE.items():  # small: one chunk each, written once at the end
        variables[name] = _variable(nc, name, kind, MODEL_DIMS + ("image",), long_name, "1",
                                    chunksizes=(1, 1, 1, count))
    variables["correct"].setncattr("dtype", "bool")  # xarray decodes i1 with this attribute as bool
    for variable in variables.values():
        variable.setncattr("coordinates", "identity gender")  # non-index coordinates on image (xarray, CF)
    nc.setncatts(attrs)
    return variables


def write_model_file(directory: Path, spec: ModelSpec, attrs: dict, images: ImageTable, chunk: int,
                     batches: Iterable[tuple[int, Batch]], finish: Callable[[], dict] = dict) -> Path:
    """Write one model's file from ``batches`` of ``(first_image_index, Batch)``, streaming.

    The batches may come in any sizes and order but must cover every image once. The file is written under a hidden
    temporary name (see :func:`lrp_faces.files.atomic_path`); when every batch is in, the attributes ``finish()``
    returns, the ``complete=1`` marker and the header digest are set, and the file is synced and renamed to its
    final name. On any error, also KeyboardInterrupt, the temporary file is removed. Memory stays at one chunk of
    ``chunk`` maps plus the per-image values. Returns the final path.
    """
    final, count = directory / file_name(spec), len(images.ids)
    per_image = {"output": np.zeros(count, np.float32), "prediction": np.zeros(count, np.int64),
                 "label": np.zeros(count, np.int64)}
    written = np.zeros(count, dtype=bool)
    with atomic_path(final) as temporary:
        nc = netCDF4.Dataset(temporary, "w", format="NETCDF4")
        try:
            variables = _define(nc, spec, images, chunk, attrs)
            for start, batch in batches:
                stop = start + len(batch.label)
                variables["relevance"][0, 0, 0, start:stop] = batch.relevance
                for name, values in per_image.items():
                    values[start:stop] = getattr(batch, name)
                written[start:stop] = True
            if not written.all():
                raise CubeInputError(f"the results for model {spec} cover {int(written.sum())} of {count} images "
                                     f"(image {int(np.flatnonzero(~written)[0])} is missing); nothing was written")
            for name, values in per_image.items():
                variables[name][0, 0, 0, :] = values
            variables["correct"][0, 0, 0, :] = (per_image["prediction"] == per_image["label"]).astype(np.int8)
            nc.setncatts(finish())
            nc.setncattr("complete", 1)
            nc.setncattr(DIGEST_ATTR, header_digest(nc))
        except BaseException:
            with contextlib.suppress(RuntimeError, OSError):  # already closed, or closing failed: discarded anyway
                nc.close()
            raise
        nc.close()
    return final
