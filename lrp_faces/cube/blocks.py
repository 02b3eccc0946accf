"""Units of a cube: one model's maps for one block of consecutive images, explained by a pure function and kept as a
small checksummed file until the model's file is assembled from them.

:func:`explain_block` is the expensive part of :func:`lrp_faces.cube.compute`, a pure function of a model and a
block of images. Each finished block is written atomically to ``<cube>/.blocks/<model>/<start>-<stop>.nc``
(:func:`block_path`, :func:`write_block`), recording the digest of everything its maps depend on
(:func:`request_digest`: method, parameters, images, labels, batch size, the model's weights); :func:`compute_block`
does all three steps of one unit. A rerun reuses the blocks whose digest matches (:func:`finished_blocks`,
:func:`plan_blocks`) and computes the others; the model's file is then assembled from the blocks in image order,
and the blocks are removed (:func:`assemble_model_file`).

Blocks start and stop on multiples of the batch size, so every image is explained in the same batch whatever the
block size, and the cube does not depend on how it was split.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np
import torch
from torch import nn

from ..faces import ImageTable
from ..files import atomic_path, canonical_json, temporary_files
from ..methods import Method
from ..module_state import evaluation_mode
from ..netcdf import DIGEST_ATTR, NetCDFFileError, header_digest, verify_header
from ..zoo import ModelSpec
from ._store import (PER_MODEL, SHARED, Batch, CubeFileError, CubeInputError, CubeNonFiniteError, CubeWarning,
                     file_error, named_errors, write_model_file)

__all__ = ["Batch", "Block", "BLOCKS_DIR", "DEFAULT_BLOCK_IMAGES", "explain_block", "check_finite",
           "compute_block", "assemble_model_file", "block_size_for", "block_directory", "block_path",
           "request_digest", "block_attributes", "write_block", "read_block", "finished_blocks", "plan_blocks",
           "remove_blocks", "remove_block_temporaries", "resolve_device", "model_device", "write_model_file"]

BLOCKS_DIR = ".blocks"
"""Hidden folder of a cube directory that holds the finished blocks of models not yet assembled."""
BLOCK_FORMAT = "lrp_faces.cube.block"
DEFAULT_BLOCK_IMAGES = 64
"""Images per block by default (rounded up to a multiple of the batch size)."""
REQUEST_KEYS = SHARED + PER_MODEL + ("explained_output", "batch_size", "model", "model_weights_sha256")
"""The model file attributes that a block's maps depend on; their digest is recorded in every block."""
_BLOCK_NAME = re.compile(r"^([0-9]+)-([0-9]+)\.nc$")

log = logging.getLogger("lrp_faces.cube")


@dataclass(frozen=True)
class Block:
    """Images ``start:stop`` of one model; ``finished`` when its file at ``path`` holds them already."""

    start: int
    stop: int
    path: Path
    finished: bool = False


# ------------------------------------------------------------------------------------------------------ devices
def resolve_device(device: str | torch.device | None) -> torch.device | None:
    """``None`` (run where each model is), or a checked :class:`torch.device`; ``"auto"`` is CUDA when available."""
    if device is None:
        return None
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a str such as 'cpu', 'cuda', 'cuda:1' or 'auto', a torch.device or None, got "
                        f"{type(device).__name__}")
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise CubeInputError(f"device {device!r} is not a torch device ({error}); use 'cpu', 'cuda', 'cuda:N' or "
                             "'auto'") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise CubeInputError(f"device {device!r}: CUDA is not available on this machine; use 'cpu' or 'auto'")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise CubeInputError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def model_device(model: nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a model's parameters are, and their dtype (CPU and float32 for a model without parameters)."""
    reference = next(model.parameters(), None)
    if reference is None:
        return torch.device("cpu"), torch.float32
    return reference.device, reference.dtype


def _to(tensor: torch.Tensor, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``tensor`` on ``device``; from pinned memory without blocking when the device is a GPU."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device=device, dtype=dtype, non_blocking=True)
    return tensor.to(device=device, dtype=dtype)


# ------------------------------------------------------------------------------------------------ the pure unit
def explain_block(model: nn.Module, method: Method, images: torch.Tensor, labels: Sequence[int] | np.ndarray,
                  first_index: int = 0, contrastive: bool = True, batch_size: int = 16,
                  device: str | torch.device | None = None) -> Batch:
    """Explain a block of consecutive images of a data set for their labels, batch by batch.

    A pure function of its arguments: the same model, images and settings give the same maps, whatever else runs.
    The maps equal :func:`lrp_faces.attribute`'s for the same images and batch size.

    Parameters
    ----------
    model : nn.Module
        The model; held in evaluation mode with frozen parameters (under its lock) while explaining.
    method : Method
        The attribution method, e.g. ``lrp_faces.methods.get("epsilon_gamma_box")``.
    images : tensor (n, 3, H, W)
        Float RGB in [0, 1], images ``first_index`` to ``first_index + n - 1`` of the data set.
    labels : sequence of int (n,)
        The class to explain per image.
    first_index : int
        Position of the first image in the data set (per-image random seeds follow it).
    contrastive : bool
        Explain ``z_c - mean_{j != c} z_j`` instead of the logit ``z_c``.
    batch_size : int
        Images per forward/backward pass.
    device : str, torch.device or None
        Where to run; by default where the model is. The model is moved there if it is elsewhere: move it once
        before explaining many blocks. On a GPU, batches go from pinned memory without blocking.

    Returns
    -------
    Batch
        relevance (n, H, W) float32, explained output (n,) float32, prediction and label (n,) int64, on the CPU.
    """
    count, height, width = images.shape[0], images.shape[2], images.shape[3]
    labels = np.asarray(labels, dtype=np.int64)
    if labels.shape != (count,):
        raise CubeInputError(f"explain_block needs one label per image: {count} images, labels of shape "
                             f"{labels.shape}")
    target_device = resolve_device(device) or model_device(model)[0]
    if model_device(model)[0] != target_device:
        model.to(target_device)
    dtype = model_device(model)[1]
    relevance = np.empty((count, height, width), dtype=np.float32)
    output = np.empty(count, dtype=np.float32)
    prediction = np.empty(count, dtype=np.int64)
    with evaluation_mode(model):
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            explanation = method.explain(model, _to(images[start:stop], target_device, dtype),
                                         _to(torch.from_numpy(labels[start:stop]), target_device), contrastive,
                                         first_index + start)
            relevance[start:stop] = explanation.relevance.detach().float().cpu().numpy()
            output[start:stop] = explanation.output.detach().float().cpu().numpy()
            prediction[start:stop] = explanation.prediction.cpu().numpy()
    return Batch(relevance, output, prediction, labels.copy())


def check_finite(batch: Batch, first_index: int, image_ids: Sequence[str], model: str | ModelSpec,
                 method: Method) -> None:
    """Raise :class:`CubeNonFiniteError` if any map or output of ``batch`` is NaN or Inf.

    The message names the model, the images by their index and id in the data set (``image_ids`` holds every id of
    the data set; the batch starts at ``first_index``), and the likely cause.
    """
    maps_ok = np.isfinite(batch.relevance.reshape(len(batch.relevance), -1)).all(axis=1)
    outputs_ok = np.isfinite(batch.output)
    bad = np.flatnonzero(~(maps_ok & outputs_ok))
    if not len(bad):
        return
    indices = [first_index + int(offset) for offset in bad]
    shown = ", ".join(f"{index} ({image_ids[index]!r})" for index in indices[:10])
    if not outputs_ok[bad].all():
        cause = ("the model's outputs are NaN or Inf for these images, so its weights (or the images) hold non-finite "
                 "or overflowing values: check the checkpoint")
    else:
        cause = (f"the model's outputs are finite, so the method is the likely cause: {method!r} gives undefined "
                 "relevance (e.g. epsilon=0 divides 0 by 0 where a layer's output is 0; a NaN parameter makes every "
                 "map NaN); use lrp_faces.methods.get(name) with its default parameters or a positive epsilon")
    raise CubeNonFiniteError(f"model {model} gives NaN or Inf relevance or outputs for {len(indices)} of the images "
                             f"{first_index} to {first_index + len(batch.label) - 1} of the data set: image "
                             f"{shown}{' ...' if len(indices) > 10 else ''}; {cause}. Nothing non-finite was written; "
                             "earlier blocks and models are kept")


# ------------------------------------------------------------------------------------------------- block files
def block_size_for(batch_size: int, block_size: int | None = None) -> int:
    """The images per block: ``block_size``, checked to be a multiple of ``batch_size``, or by default the smallest
    multiple of ``batch_size`` of at least :data:`DEFAULT_BLOCK_IMAGES`."""
    if block_size is None:
        return batch_size * -(-DEFAULT_BLOCK_IMAGES // batch_size)
    if not isinstance(block_size, int) or isinstance(block_size, bool) or block_size < 1 \
            or block_size % batch_size:
        raise CubeInputError(f"block_size must be a positive multiple of batch_size={batch_size} (so that every "
                             f"image is explained in the same batch however the work is split), got {block_size!r}")
    return block_size


def block_directory(cube_directory: str | os.PathLike, spec: ModelSpec) -> Path:
    """``<cube>/.blocks/<model name>``: where the finished blocks of one model wait to be assembled."""
    return Path(cube_directory) / BLOCKS_DIR / spec.name


def block_path(cube_directory: str | os.PathLike, spec: ModelSpec, start: int, stop: int) -> Path:
    """``<cube>/.blocks/<model name>/<start>-<stop>.nc``: the file of images ``start:stop`` of one model."""
    return block_directory(cube_directory, spec) / f"{start}-{stop}.nc"


def request_digest(attrs: Mapping[str, Any]) -> str:
    """SHA-256 of the model file attributes that the maps depend on (:data:`REQUEST_KEYS`)."""
    missing = [key for key in REQUEST_KEYS if key not in attrs]
    if missing:
        raise CubeInputError(f"the attributes of a cube model file lack {missing}")
    return hashlib.sha256(canonical_json({key: attrs[key] for key in REQUEST_KEYS}).encode()).hexdigest()


def block_attributes(spec: ModelSpec, start: int, stop: int, digest: str) -> dict:
    """The attributes a block file records: format, model, image range and the request digest."""
    return {"block_format": BLOCK_FORMAT, "model": spec.name, "start": int(start), "stop": int(stop),
            "request_sha256": digest}


def write_block(path: str | os.PathLike, batch: Batch, attrs: Mapping[str, Any]) -> Path:
    """Write one block's results (uncompressed, checksummed, header digest) to ``path`` atomically."""
    path = Path(path)
    count, height, width = batch.relevance.shape
    with atomic_path(path) as temporary, netCDF4.Dataset(temporary, "w", format="NETCDF4") as nc:
        for dim, size in (("image", count), ("y", height), ("x", width)):
            nc.createDimension(dim, size)
        for name, kind, dims, values in (("relevance", "f4", ("image", "y", "x"), batch.relevance),
                                         ("output", "f4", ("image",), batch.output),
                                         ("prediction", "i8", ("image",), batch.prediction),
                                         ("label", "i8", ("image",), batch.label)):
            variable = nc.createVariable(name, kind, dims, fletcher32=True, fill_value=False,
                                         chunksizes=(count,) + tuple(values.shape[1:]))
            variable[...] = values
        nc.setncatts(dict(attrs))
        nc.setncattr(DIGEST_ATTR, header_digest(nc))
    return path


def _load_block(path: Path) -> tuple[dict, Batch]:
    """A block file's attributes and results, checked against its header digest and checksums."""
    with named_errors(path, "reading it", hint=False, kind="block file"), netCDF4.Dataset(path, "r") as nc:
        nc.set_auto_mask(False)
        try:
            verify_header(nc, path)
        except NetCDFFileError:
            raise file_error(path, "is damaged: its header does not match its recorded digest", hint=False, kind="block file") from None
        attrs = {key: nc.getncattr(key) for key in nc.ncattrs() if key != DIGEST_ATTR}
        batch = Batch(*(np.asarray(nc.variables[name][...]) for name in Batch._fields))
    if not len(batch.label) == len(batch.relevance) == len(batch.output) == len(batch.prediction):
        raise file_error(path, "holds variables of different lengths", hint=False, kind="block file")
    if attrs.get("block_format") != BLOCK_FORMAT:
        raise file_error(path, f"is not a block file (no block_format={BLOCK_FORMAT!r})", hint=False, kind="block file")
    return attrs, batch


def read_block(path: str | os.PathLike, attrs: Mapping[str, Any] | None = None) -> Batch:
    """The results in a block file, checked against its checksums, its header digest and ``attrs`` (e.g.
    :func:`block_attributes`). Raises :class:`CubeFileError` naming the file."""
    path = Path(path)
    found, batch = _load_block(path)
    for key, value in (attrs or {}).items():
        if found.get(key) != value:
            raise file_error(path, f"is a block of other results ({key}: {found.get(key)!r}, expected {value!r})",
                             hint=False, kind="block file")
    expected = found.get("stop", 0) - found.get("start", 0)
    if len(batch.label) != expected:
        raise file_error(path, f"holds {len(batch.label)} images, not {expected}", hint=False, kind="block file")
    return batch


def finished_blocks(cube_directory: str | os.PathLike, spec: ModelSpec, digest: str) -> dict[tuple[int, int], Path]:
    """The block files of ``spec`` computed for ``digest``, by ``(start, stop)``, each read and checked against its
    checksums. Other block files are deleted: those of other settings or weights quietly (a log line), damaged ones
    with a :class:`CubeWarning` naming them."""
    found = {}
    folder = block_directory(cube_directory, spec)
    for path in sorted(folder.glob("*.nc")) if folder.is_dir() else []:
        match = _BLOCK_NAME.match(path.name)
        if match is None:
            continue
        start, stop = int(match[1]), int(match[2])
        try:
            attrs, batch = _load_block(path)
        except CubeFileError as error:
            warnings.warn(f"model {spec}: block {str(path)!r} {error.cause}; recomputing it", CubeWarning,
                          stacklevel=4)
            path.unlink(missing_ok=True)
            continue
        expected = block_attributes(spec, start, stop, digest)
        if any(attrs.get(key) != value for key, value in expected.items()) or len(batch.label) != stop - start:
            log.info("%s: block %s was computed with other settings or weights; removing it", spec, path)
            path.unlink(missing_ok=True)
            continue
        found[(start, stop)] = path
    return found


def plan_blocks(cube_directory: str | os.PathLike, spec: ModelSpec, count: int, block_size: int,
                finished: Mapping[tuple[int, int], Path]) -> list[Block]:
    """The blocks that cover images ``0:count`` of a model: finished ones where they fit, new ones of at most
    ``block_size`` images (aligned to multiples of it) in between.

    Finished blocks of another block size are used as they are, so a rerun with another ``block_size`` keeps them.
    """
    by_start = {}
    for (start, stop), path in sorted(finished.items()):
        if 0 <= start < stop <= count and (start not in by_start or stop > by_start[start][0]):
            by_start[start] = (stop, path)
    blocks, start = [], 0
    while start < count:
        if start in by_start:
            stop, path = by_start[start]
            blocks.append(Block(start, stop, path, finished=True))
        else:
            stop = min([(start // block_size + 1) * block_size, count] + [other for other in by_start if other > start])
            blocks.append(Block(start, stop, block_path(cube_directory, spec, start, stop)))
        start = stop
    return blocks


def compute_block(model: nn.Module, method: Method, images: torch.Tensor, labels: Sequence[int] | np.ndarray,
                  block: Block, spec: ModelSpec, digest: str, image_ids: Sequence[str], contrastive: bool = True,
                  batch_size: int = 16, device: str | torch.device | None = None) -> Path:
    """One unit of work, start to finish: :func:`explain_block` for the images of ``block``, :func:`check_finite`,
    then :func:`write_block` to ``block.path`` with :func:`block_attributes`. Returns the block's path.

    ``images`` and ``labels`` are those of the block (images ``block.start`` to ``block.stop - 1``); ``image_ids``
    are all the data set's ids (to name images in errors); ``digest`` is :func:`request_digest` of the model file's
    attributes.
    """
    batch = explain_block(model, method, images, labels, block.start, contrastive, batch_size, device)
    check_finite(batch, block.start, image_ids, spec, method)
    return write_block(block.path, batch, block_attributes(spec, block.start, block.stop, digest))


def assemble_model_file(cube_directory: str | os.PathLike, spec: ModelSpec, attrs: Mapping[str, Any],
                        images: ImageTable, chunk: int, blocks: Sequence[Block],
                        finish: Callable[[], dict] = dict) -> Path:
    """Write the model's file in ``cube_directory`` from its finished ``blocks`` (read back verified, in image
    order), then delete the blocks. ``attrs`` are the file's attributes (their :func:`request_digest` must be the one
    the blocks record), ``chunk`` the images per chunk on disk, ``finish()`` the attributes added when complete.

    Raises
    ------
    CubeFileError
        A block is missing, damaged or of another request (named); nothing is written.
    """
    digest = request_digest(attrs)
    batches = ((block.start, read_block(block.path, block_attributes(spec, block.start, block.stop, digest)))
               for block in blocks)
    path = write_model_file(Path(cube_directory), spec, dict(attrs), images, chunk, batches, finish)
    remove_blocks(cube_directory, spec)
    return path


def remove_blocks(cube_directory: str | os.PathLike, spec: ModelSpec) -> None:
    """Delete the block files of ``spec`` (after its model file is complete), and ``.blocks`` once it is empty."""
    folder = block_directory(cube_directory, spec)
    if folder.is_dir():
        shutil.rmtree(folder)
    parent = Path(cube_directory) / BLOCKS_DIR
    if parent.is_dir() and not any(parent.iterdir()):
        parent.rmdir()


def remove_block_temporaries(cube_directory: str | os.PathLike) -> None:
    """Delete the temporary files of blocks that a killed run was writing (call only while holding the cube's lock)."""
    parent = Path(cube_directory) / BLOCKS_DIR
    for folder in sorted(parent.iterdir()) if parent.is_dir() else []:
        for leftover in temporary_files(folder) if folder.is_dir() else []:
            leftover.unlink(missing_ok=True)
