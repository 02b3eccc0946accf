"""Checked inputs of masking (private to :mod:`lrp_faces.masking`): maps, labels, cubes, zoos and datasets.

Data sets are read through :func:`lrp_faces.faces.as_face_data` (any face data), and their labels in the models'
class numbering through :func:`lrp_faces.zoo.scored_labels`.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from ..attribution import check_images
from ..cube import NON_FINITE_MAPS
from ..devices import resolve_device
from ..faces import DatasetError, DataTypeError, FaceDataView, as_face_data
from ..zoo import MODEL_DIMS, ModelSpec, scored_labels
from .config import MaskingConfig, MaskingError, MaskingTypeError, hidden_counts, unit_count

__all__ = ["CUBE_DIMS", "CubeInputs", "cube_inputs", "face_data", "check_relevance", "check_labels", "check_cube",
           "cube_specs", "check_zoo", "check_finite", "fill_colours", "check_batch_size", "rows_per_pass", "DEFAULT_BLOCK_SIZE"]

CUBE_DIMS = MODEL_DIMS + ("image", "y", "x")
DEFAULT_BLOCK_SIZE = 256
"""Images per unit of work of :func:`~lrp_faces.masking.generalization` and
:func:`~lrp_faces.masking.own_map_curves`: bounds the maps and images in memory; the result does not depend on it."""


def check_relevance(relevance: Any, images: torch.Tensor | tuple, name: str = "relevance") -> torch.Tensor:
    """Return ``relevance`` as a tensor (N, H, W) after checking it matches ``images`` (or their shape), is finite.

    Accepts a tensor, a numpy array or an xarray DataArray (e.g. one model's slice of a cube).
    """
    if hasattr(relevance, "dims") and hasattr(relevance, "values"):  # xarray
        relevance = relevance.values
    if isinstance(relevance, np.ndarray):
        relevance = torch.from_numpy(relevance)
    if not isinstance(relevance, torch.Tensor):
        raise MaskingTypeError(f"{name} must be a tensor, numpy array or DataArray of shape (N, H, W), "
                               f"got {type(relevance).__name__}")
    if not (relevance.is_floating_point() or relevance.dtype in (torch.int32, torch.int64)):
        raise MaskingTypeError(f"{name} must hold real numbers, got dtype {relevance.dtype}")
    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else tuple(images)
    expected = (shape[0],) + shape[2:]
    if tuple(relevance.shape) != expected:
        raise MaskingError(f"{name} has shape {tuple(relevance.shape)}; expected (N, H, W) = {expected} to match "
                           f"images of shape {shape} (relevance is summed over colour channels)")
    finite = torch.isfinite(relevance.reshape(len(relevance), -1)).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:, 0].tolist()
        raise MaskingError(f"{name} contains NaN or Inf values, in image(s) {bad[:10]}")
    return relevance.to(images.device) if isinstance(images, torch.Tensor) else relevance


def check_batch_size(batch_size: Any, shape: Sequence[int], device: torch.device) -> int:
    """``batch_size``, or by default a power of 2 of about 2**18 pixels per batch on a CPU, 2**22 on a GPU.

    On a CPU the forward pass is fastest per image when a batch's activations fit the caches: on the reference
    machine 64 images at 64 px and 16 at 112 px, 1.5x faster than batches of 128 at 112 px.
    """
    if batch_size is None:
        budget = 2 ** 22 if device.type != "cpu" else 2 ** 18
        pixels = shape[-2] * shape[-1]
        return int(min(512, 2 ** max(0, int(np.floor(np.log2(max(budget / pixels, 1.0)))))))
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise MaskingError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def rows_per_pass(batch_size: Any, shape: Sequence[int], device: torch.device, count: int,
                  config: MaskingConfig) -> int:
    """Rows of every forward pass of a step over ``count`` images of ``shape`` (..., H, W) on ``device``.

    ``batch_size`` (default: about 2**18 pixels per pass on a CPU and 2**22 on a GPU, as for
    :func:`lrp_faces.masking.curves`), but no more than the step's masked images per source, so that small steps do
    not pad their passes far beyond their work. Every unit of a step must use the same value.
    """
    counts = hidden_counts(config.fractions, unit_count(shape, config.patch), config.mode)
    distinct = len(np.unique(counts[counts > 0]))
    return min(check_batch_size(batch_size, shape, device), max(1, count * distinct))


def check_labels(labels: Any, count: int, name: str = "labels") -> torch.Tensor:
    """Return ``labels`` as a long tensor (N,) after checking length and integer type."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise MaskingTypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.reshape(-1).long()
    if len(labels) != count:
        raise MaskingError(f"{name} has {len(labels)} entries; expected one per image ({count})")
    if len(labels) and int(labels.min()) < 0:
        raise MaskingError(f"{name} must be class indices >= 0, got {int(labels.min())}")
    return labels


def fill_colours(images: torch.Tensor, config: MaskingConfig) -> torch.Tensor | None:
    """(N, 3) float64 colours of the ``mean`` and ``road`` fills, one per image; None for the other fills.

    ``config.fill_value`` (one colour, or one per image), else the mean colour of all ``images``. Resolve them over
    all images of a call before splitting the images into blocks, and pass each block its rows.
    """
    if config.fill not in ("mean", "road"):
        return None
    count = len(images)
    if config.fill_value is None:
        colour = images.to(torch.float64).mean((0, 2, 3)).cpu()
    else:
        colour = torch.tensor(config.fill_value, dtype=torch.float64)
        if colour.ndim == 2 and colour.shape[0] != count:
            raise MaskingError(f"fill_value has {colour.shape[0]} colours; expected one per image ({count})")
    return colour.expand(count, 3).clone() if colour.ndim == 1 else colour


def check_cube(cube: Any) -> xr.DataArray:
    """The cube's ``relevance`` with dims in :data:`CUBE_DIMS` order, after checking the cube has them."""
    if not isinstance(cube, xr.Dataset) or "relevance" not in cube:
        raise MaskingTypeError(f"cube must be an xarray.Dataset with a 'relevance' variable, got "
                               f"{type(cube).__name__}")
    relevance = cube["relevance"]
    if set(relevance.dims) != set(CUBE_DIMS):
        raise MaskingError(f"cube.relevance must have dims {CUBE_DIMS}, got {relevance.dims}")
    return relevance.transpose(*CUBE_DIMS)


def cube_specs(relevance: xr.DataArray) -> list[ModelSpec]:
    """Every model of the cube's grid, in grid order (pretraining, then task, then seed)."""
    return [ModelSpec(str(pretraining), str(task), int(seed)) for pretraining in relevance.pretraining.values
            for task in relevance.task.values for seed in relevance.seed.values]


def check_finite(specs: list[ModelSpec], relevance: xr.DataArray) -> None:
    """Raise if any model's maps hold NaN or Inf, naming the models: models a ragged cube has not computed, or maps
    that are not finite themselves (:data:`lrp_faces.cube.NON_FINITE_MAPS` says why that happens)."""
    finite = np.asarray(np.isfinite(relevance).all(("image", "y", "x")).values).reshape(-1)
    bad = [spec for spec, ok in zip(specs, finite) if not ok]
    if not bad:
        return
    computed = relevance.coords.get("computed")
    missing = [] if computed is None else [
        str(spec) for spec in bad
        if not bool(computed.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed))]
    if missing:
        raise MaskingError(f"the cube has no maps of {', '.join(missing[:10])} (it has not computed them), and "
                           "generalisation compares every model of the cube's grid; compute them first (rerun "
                           "lrp_faces.cube.compute with the whole zoo), or select the computed models with cube.sel")
    raise MaskingError(f"relevance of {', '.join(map(str, bad[:10]))} contains NaN or Inf values: {NON_FINITE_MAPS}")


def check_zoo(specs: list[ModelSpec], zoo: Mapping) -> None:
    """Raise unless ``zoo`` is a mapping that holds every model of ``specs``."""
    if not isinstance(zoo, Mapping):
        raise MaskingTypeError(f"zoo must map ModelSpec to models (e.g. lrp_faces.zoo.Zoo), got {type(zoo).__name__}")
    available = set(iter(zoo))  # iterating a Zoo lists its specs without loading any model
    missing = [str(spec) for spec in specs if spec not in available]
    if missing:
        raise MaskingError(f"the cube has relevance for {len(missing)} model(s) missing from the zoo: "
                           f"{', '.join(missing[:10])}; the zoo has {', '.join(map(str, sorted(available)))}")


def face_data(dataset: Any) -> FaceDataView:
    """``dataset`` as face data (:func:`lrp_faces.faces.as_face_data`); its errors as masking errors."""
    try:
        return as_face_data(dataset)
    except DataTypeError as error:
        raise MaskingTypeError(f"dataset: {error}") from error
    except DatasetError as error:
        raise MaskingError(f"dataset: {error}") from error


def _select_images(data: FaceDataView, relevance: xr.DataArray) -> tuple[torch.Tensor, np.ndarray]:
    position = {image_id: index for index, image_id in enumerate(data.image_ids)}
    ids = [str(image_id) for image_id in relevance.image.values]
    missing = [image_id for image_id in ids if image_id not in position]
    if missing:
        raise MaskingError(f"{len(missing)} image id(s) of the cube are not in the dataset: {missing[:10]}")
    indices = np.array([position[image_id] for image_id in ids], dtype=np.int64)
    try:
        images = check_images(data.take(indices), "dataset images")
    except DatasetError as error:
        raise MaskingError(f"dataset: {error}") from error
    if tuple(images.shape[2:]) != (relevance.sizes["y"], relevance.sizes["x"]):
        raise MaskingError(f"the dataset's images are {tuple(images.shape[2:])} px but the cube's maps are "
                           f"{(relevance.sizes['y'], relevance.sizes['x'])}")
    return images, indices


def _task_labels(zoo: Mapping, specs: list[ModelSpec], data: FaceDataView, relevance: xr.DataArray,
                 indices: np.ndarray) -> tuple[dict[str, torch.Tensor], dict[str, tuple[str, ...] | None]]:
    """Per task: the labels of the cube's images in the models' class numbering, and the names of those classes."""
    try:
        for task in sorted({spec.task for spec in specs}):
            if task in relevance.coords and relevance.coords[task].dims == ("image",):
                if not np.array_equal(np.asarray(relevance.coords[task].values), data.labels(task)[indices]):
                    raise MaskingError(f"the cube's {task!r} labels disagree with dataset.labels({task!r}) for the "
                                       f"same image ids")
        scored = scored_labels(zoo, specs, data)
    except DatasetError as error:  # no usable labels, or the models' classes and the data set's disagree
        raise MaskingError(str(error)) from error
    labels = {task: check_labels(values.labels[indices], len(indices), f"dataset.labels({task!r})")
              for task, values in scored.items()}
    return labels, {task: values.class_names for task, values in scored.items()}


@dataclass(frozen=True, eq=False)
class CubeInputs:
    """The checked inputs of a cube's masking step, by image position: what its units of work take.

    Attributes
    ----------
    config : MaskingConfig
    specs : tuple of ModelSpec
        The models masked by (sources) or scored (targets), in grid order.
    relevance : xarray.DataArray
        The cube's maps over :data:`CUBE_DIMS` (lazy if the cube is).
    images : tensor (N, 3, H, W)
        The cube's images, from the dataset, in the cube's image order.
    labels : dict
        Task -> tensor (N,) of class indices.
    fill_colours : tensor (N, 3) or None
        The ``mean``/``road`` fill's colour of each image, resolved over all N images.
    class_names : dict
        Task -> the names of the classes ``labels`` index (the models'; None where unknown).
    """

    config: MaskingConfig
    specs: tuple[ModelSpec, ...]
    relevance: xr.DataArray
    images: torch.Tensor
    labels: Mapping[str, torch.Tensor]
    fill_colours: torch.Tensor | None
    class_names: Mapping[str, tuple[str, ...] | None] = field(default_factory=dict)

    @property
    def image_ids(self) -> list[str]:
        return [str(image_id) for image_id in self.relevance.image.values]

    def blocks(self, block_size: int | None = DEFAULT_BLOCK_SIZE) -> list[slice]:
        """Consecutive blocks of at most ``block_size`` images (None: one block), covering every image."""
        if block_size is None:
            block_size = max(len(self.images), 1)
        if not isinstance(block_size, (int, np.integer)) or isinstance(block_size, bool) or block_size < 1:
            raise MaskingError(f"block_size must be a positive integer or None, got {block_size!r}")
        return [slice(start, min(start + int(block_size), len(self.images)))
                for start in range(0, len(self.images), int(block_size))]

    def maps(self, spec: ModelSpec, block: slice) -> xr.DataArray:
        """The maps (n, H, W) of model ``spec`` for the images of ``block`` (read when used)."""
        return self.relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed).isel(image=block)

    def batch_size(self, batch_size: int | None = None, device: str | torch.device = "cpu") -> int:
        """Rows of every forward pass of the step's units on ``device`` (:func:`rows_per_pass`); give every unit
        this value, so that all of them see the same shapes."""
        return rows_per_pass(batch_size, self.images.shape, resolve_device(device), len(self.images), self.config)

    def colours(self, block: slice) -> torch.Tensor | None:
        """The fill colours (n, 3) of the images of ``block``, or None for fills without a colour."""
        return None if self.fill_colours is None else self.fill_colours[block]

    def class_attrs(self) -> dict[str, str]:
        """The ``class_names`` attribute of a step's result: JSON of task -> the class names its labels index."""
        return {"class_names": json.dumps({task: None if names is None else list(names)
                                           for task, names in sorted(self.class_names.items())})}


def cube_inputs(cube: Any, zoo: Mapping, dataset: Any, config: MaskingConfig,
                specs: list[ModelSpec] | None = None) -> CubeInputs:
    """Check the cube, the zoo (it must hold ``specs``, default every model of the cube) and the dataset (any face
    data, see :func:`lrp_faces.faces.as_face_data`); the labels are in the models' class numbering."""
    relevance = check_cube(cube)
    specs = cube_specs(relevance) if specs is None else specs
    check_zoo(specs, zoo)
    data = face_data(dataset)
    images, indices = _select_images(data, relevance)
    unit_count(images.shape, config.patch)
    labels, class_names = _task_labels(zoo, specs, data, relevance, indices)
    return CubeInputs(config, tuple(specs), relevance, images, labels, fill_colours(images, config), class_names)
