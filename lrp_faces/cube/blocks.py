"""Units of a cube: one model's maps for one block of consecutive images.

:func:`explain_block` is the expensive part of :func:`lrp_faces.cube.compute`, a pure function of a model and a
block of images; :func:`explain_unit` is the whole unit as :mod:`lrp_faces.compute` runs it, in this process or on a
cluster worker: it loads the model (once per process, see :func:`lrp_faces.compute.unit_model`), explains the block,
refuses non-finite maps and returns the block as a small :class:`xarray.Dataset`. The finished units wait in the
cube's unit store (``<cube>/.units/cube``) until the model's file is assembled from them.

Blocks start and stop on multiples of the batch size, so every image is explained in the same batch whatever the
block size. A unit's key names the model, the images and the digest of everything its maps depend on
(:func:`request_digest`: method, parameters, images, labels, batch size, the model's weights), so a unit of other
settings or weights is never reused.
"""
from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn

from ..compute import unit_model
from ..devices import model_device, resolve_device, to_device
from ..faces import load_images
from ..files import canonical_json
from ..methods import Method, NonFiniteRelevanceError
from ..module_state import evaluation_mode
from ..zoo import ModelSpec
from ._store import PER_MODEL, SHARED, Batch, CubeInputError, CubeNonFiniteError, write_model_file

__all__ = ["Batch", "DEFAULT_BLOCK_IMAGES", "explain_block", "explain_unit", "block_size_for",
           "block_ranges", "request_digest", "unit_key", "block_dataset", "dataset_block", "write_model_file"]

DEFAULT_BLOCK_IMAGES = 64
"""Images per block by default (rounded up to a multiple of the batch size)."""
REQUEST_KEYS = SHARED + PER_MODEL + ("explained_output", "batch_size", "model", "model_weights_sha256")
"""The model file attributes that a block's maps depend on; their digest is part of every unit's key."""


# ------------------------------------------------------------------------------------------------ the pure unit
def explain_block(model: nn.Module, method: Method, images: torch.Tensor, labels: Sequence[int] | np.ndarray,
                  first_index: int = 0, contrastive: bool = True, batch_size: int = 16,
                  device: str | torch.device | None = None, *, image_ids: Sequence[str] | None = None,
                  name: str | ModelSpec = "the model") -> Batch:
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
    image_ids : sequence of str (n,), optional
        The images' ids, and ``name`` the model's, to name them in errors.

    Raises
    ------
    CubeNonFiniteError
        A map or output is NaN or Inf: the images are named by their index in the data set (and id), with the
        likely cause; nothing of the block is returned.

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
    target_device = model_device(model) if device is None else resolve_device(device)
    if model_device(model) != target_device:
        model.to(target_device)
    dtype = next(model.parameters()).dtype if next(model.parameters(), None) is not None else torch.float32
    relevance = np.empty((count, height, width), dtype=np.float32)
    output = np.empty(count, dtype=np.float32)
    prediction = np.empty(count, dtype=np.int64)
    failures = []
    with evaluation_mode(model):
        for start in range(0, count, batch_size):
            stop = min(start + batch_size, count)
            try:
                explanation = method.explain(model, to_device(images[start:stop], target_device).to(dtype),
                                             to_device(torch.from_numpy(labels[start:stop]), target_device),
                                             contrastive, first_index + start)
            except NonFiniteRelevanceError as error:  # name every such image of the block, then stop
                failures.append(error)
                continue
            relevance[start:stop] = explanation.relevance.detach().float().cpu().numpy()
            output[start:stop] = explanation.output.detach().float().cpu().numpy()
            prediction[start:stop] = explanation.prediction.cpu().numpy()
    if failures:
        indices = [index for error in failures for index in error.indices]
        raise _non_finite(indices, failures[0].cause, first_index, image_ids, name, count)
    return Batch(relevance, output, prediction, labels.copy())


def _non_finite(indices: Sequence[int], cause: str, first_index: int, image_ids: Sequence[str] | None,
                model: str | ModelSpec, count: int) -> CubeNonFiniteError:
    """The error for NaN or Inf maps or outputs of images ``indices`` (positions in the data set) of a block."""
    def name(index: int) -> str:
        offset = index - first_index
        return f"{index}" if image_ids is None else f"{index} ({image_ids[offset]!r})"

    shown = ", ".join(name(index) for index in indices[:10])
    return CubeNonFiniteError(f"model {model} gives NaN or Inf relevance or outputs for {len(indices)} of the images "
                              f"{first_index} to {first_index + count - 1} of the data set: image "
                              f"{shown}{' ...' if len(indices) > 10 else ''}; likely cause: {cause}. Nothing "
                              "non-finite was written; earlier blocks and models are kept")


# ------------------------------------------------------------------------------------------------- units
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


def request_digest(attrs: Mapping[str, Any]) -> str:
    """SHA-256 of the model file attributes that the maps depend on (:data:`REQUEST_KEYS`)."""
    missing = [key for key in REQUEST_KEYS if key not in attrs]
    if missing:
        raise CubeInputError(f"the attributes of a cube model file lack {missing}")
    return hashlib.sha256(canonical_json({key: attrs[key] for key in REQUEST_KEYS}).encode()).hexdigest()


def block_ranges(count: int, block_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of consecutive blocks of at most ``block_size`` images covering ``0:count``."""
    return [(start, min(start + block_size, count)) for start in range(0, count, block_size)]


def unit_key(spec: ModelSpec, start: int, stop: int, digest: str) -> str:
    """The unit store key of one block of one model: ``<model>.<start>-<stop>.<digest prefix>``."""
    return f"{spec.name}.{start}-{stop}.{digest[:16]}"


def block_dataset(batch: Batch) -> xr.Dataset:
    """One block's results as the Dataset a unit returns (and the unit store keeps)."""
    return xr.Dataset({"relevance": (("image", "y", "x"), batch.relevance), "output": ("image", batch.output),
                       "prediction": ("image", batch.prediction), "label": ("image", batch.label)})


def dataset_block(block: xr.Dataset) -> Batch:
    """Inverse of :func:`block_dataset`."""
    return Batch(*(np.asarray(block[name].values) for name in Batch._fields))


def explain_unit(source: Any, method: Method, images: Any, labels: np.ndarray, start: int,
                 image_ids: Sequence[str], spec: ModelSpec, contrastive: bool = True, batch_size: int = 16,
                 device: str | torch.device | None = None, weights: str | None = None) -> xr.Dataset:
    """One unit of :func:`lrp_faces.cube.compute`: images ``start`` to ``start + n - 1`` of the data set.

    Parameters
    ----------
    source : nn.Module or ZooEntry
        The model, or where to load it from (loaded once per process, see :func:`lrp_faces.compute.unit_model`).
    method : Method
    images : tensor (n, 3, H, W), or a data set of the block's n images
        The images, in memory or read here (from files, on a cluster worker).
    labels : ndarray (n,)
        The classes to explain.
    start : int
        Position of the first image in the data set (per-image random seeds follow it).
    image_ids : sequence of str (n,)
        The images' ids, to name them in errors.
    spec : ModelSpec
        The model's spec, to name it in errors.
    contrastive, batch_size, device
        As for :func:`explain_block`.
    weights : str, optional
        The digest of the weights ``source`` holds now (a rewritten checkpoint is then loaded again).

    Returns
    -------
    xarray.Dataset
        ``relevance`` (image, y, x), ``output``, ``prediction`` and ``label`` (image); see :func:`block_dataset`.

    Raises
    ------
    CubeNonFiniteError
        A map or output of the block is NaN or Inf (the images are named by their index and id in the data set).
    """
    device = None if device is None else resolve_device(device)
    model = unit_model(source, device, weights)
    if not isinstance(images, torch.Tensor):
        images = load_images(images, 0, len(labels))
    return block_dataset(explain_block(model, method, images, labels, start, contrastive, batch_size, device,
                                       image_ids=image_ids, name=spec))
