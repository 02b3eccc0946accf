"""Relevance per face region, and ground-truth metrics of relevance maps (CLEVR-XAI, Arras et al. 2022)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from ..faces import DatasetError, DataTypeError, FaceDataView, as_face_data
from ._common import (AnalysisError, AnalysisTypeError, CubeModels, check_block_size, check_confidence, check_count,
                      check_relevance, cube_models, image_ids, read_blocks, top_membership)
from ._statistics import bootstrap_mean

__all__ = ["region_relevance", "ground_truth", "face_template", "mass_and_rank_accuracy", "task_masks",
           "TEMPLATE_REGIONS"]

TEMPLATE_REGIONS = ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "jaw")
"""Region names of :func:`face_template`, in the order of its label values."""

# Ellipses (centre x, centre y, half-width, half-height) in fractions of the crop's width and height, for crops
# aligned like the 5-point template of 112 x 112 ArcFace/InsightFace crops: eye centres at (0.34, 0.46) and
# (0.66, 0.46), nose tip at (0.50, 0.64), mouth corners at (0.37, 0.82) and (0.63, 0.82).
_FACE = (0.50, 0.56, 0.40, 0.47)
_HEAD = (0.50, 0.42, 0.47, 0.50)
_INNER_FACE = (0.50, 0.53, 0.29, 0.37)
_EYES = ((0.34, 0.46, 0.085, 0.045), (0.66, 0.46, 0.085, 0.045))
_BROWS = ((0.33, 0.365, 0.11, 0.035), (0.67, 0.365, 0.11, 0.035))
_NOSE = (0.50, 0.585, 0.075, 0.115)
_MOUTH = (0.50, 0.82, 0.14, 0.06)
_HAIR_BELOW = 0.50  # hair only above this height (the sides of the head lower down are background)
_JAW_BELOW = 0.60  # the jaw band starts below this height


def face_template(size: int | tuple[int, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """A default label map of approximate face regions for aligned face crops.

    For real faces, which come without region masks. The regions are ellipses placed for crops aligned like the
    5-point template of 112 x 112 ArcFace/InsightFace crops (eyes at 34 % and 66 % of the width and 46 % of the
    height, mouth at 82 % of the height), scaled to ``size``: ``eyes``, ``brows``, ``nose``, ``mouth``; ``jaw``, the
    band along the lower face contour below 60 % of the height; ``skin``, the rest of the face ellipse; ``hair``,
    the head above the face, above half the height; ``background``, the rest. For other alignments pass your own
    label map to :func:`region_relevance` instead.

    Parameters
    ----------
    size : int or (int, int)
        Side of square crops, or (height, width); at least 8 pixels.

    Returns
    -------
    labels : ndarray (H, W) uint8
        Values index ``names``.
    names : tuple of str
        :data:`TEMPLATE_REGIONS`.
    """
    height, width = _template_size(size)
    y = ((np.arange(height) + 0.5) / height)[:, None]
    x = ((np.arange(width) + 0.5) / width)[None, :]

    def inside(ellipse):
        centre_x, centre_y, half_width, half_height = ellipse
        return ((x - centre_x) / half_width) ** 2 + ((y - centre_y) / half_height) ** 2 <= 1.0

    index = {name: value for value, name in enumerate(TEMPLATE_REGIONS)}
    labels = np.zeros((height, width), dtype=np.uint8)
    face = inside(_FACE)
    labels[inside(_HEAD) & ~face & (y < _HAIR_BELOW)] = index["hair"]
    labels[face] = index["skin"]
    labels[face & ~inside(_INNER_FACE) & (y > _JAW_BELOW)] = index["jaw"]
    for name, ellipses in (("brows", _BROWS), ("eyes", _EYES), ("nose", (_NOSE,)), ("mouth", (_MOUTH,))):
        for ellipse in ellipses:
            labels[inside(ellipse)] = index[name]
    return labels, TEMPLATE_REGIONS


def _template_size(size: Any) -> tuple[int, int]:
    sizes = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
    if len(sizes) != 2 or any(isinstance(side, bool) or not isinstance(side, (int, np.integer)) or side < 8
                              for side in sizes):
        raise AnalysisError(f"size must be an integer >= 8 or a pair (height, width) of them, got {size!r}")
    return int(sizes[0]), int(sizes[1])


# ---------------------------------------------------------------------------------------- per-image inputs, aligned
def _as_array(values: Any, name: str) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    if isinstance(values, (np.ndarray, list, tuple)):
        return np.asarray(values)
    raise AnalysisTypeError(f"{name} must be an array (ndarray, tensor or xarray.DataArray), got "
                            f"{type(values).__name__}")


def _aligned(values: Any, name: str, images: list[str], shape: tuple[int, int],
             ids: Sequence | None = None) -> np.ndarray:
    """``values`` as an ndarray (H, W), shared by every image, or (N, H, W) in the order of the cube's ``images``.

    A DataArray has dims (y, x) or (image, y, x); with an ``image`` coordinate (or ``ids`` for a plain array), its
    maps are matched to the cube's images by id, otherwise they must be in the cube's order.
    """
    if isinstance(values, xr.DataArray):
        dims = set(values.dims)
        if dims not in ({"y", "x"}, {"image", "y", "x"}):
            raise AnalysisError(f"{name} must have dims ('y', 'x') or ('image', 'y', 'x'), got {values.dims}")
        order = ("image", "y", "x") if "image" in dims else ("y", "x")
        if "image" in values.coords:
            ids = [str(value) for value in values["image"].values]
        array = np.asarray(values.transpose(*order).values)
    else:
        array = _as_array(values, name)
    if array.ndim not in (2, 3) or array.shape[-2:] != shape:
        raise AnalysisError(f"{name} must be one map (H, W) = {shape} shared by all images or one per image "
                            f"(N, H, W) = ({len(images)}, {shape[0]}, {shape[1]}) like the cube's maps, got shape "
                            f"{array.shape}")
    if array.ndim == 2:
        return array
    if ids is None:
        if len(array) != len(images):
            raise AnalysisError(f"{name} has {len(array)} maps but the cube has {len(images)} images; pass one map "
                                "per image of the cube, in its order, or give image ids (a DataArray with an "
                                "'image' coordinate, or a dataset with image_ids)")
        return array
    ids = [str(value) for value in ids]
    if len(ids) != len(array):
        raise AnalysisError(f"{name} has {len(array)} maps but {len(ids)} image ids")
    position = {image: index for index, image in enumerate(ids)}
    missing = [image for image in images if image not in position]
    if missing:
        raise AnalysisError(f"{name} has no map for {len(missing)} image(s) of the cube, e.g. {missing[:5]}")
    return array[[position[image] for image in images]]


def _face_data(value: Any) -> FaceDataView | None:
    """``value`` as face data (:func:`lrp_faces.faces.as_face_data`) if it is a data set, None if it is maps."""
    if isinstance(value, (np.ndarray, torch.Tensor, xr.DataArray, Mapping)):
        return None
    try:
        return as_face_data(value)
    except (DataTypeError, DatasetError):
        return None


def _region_labels(regions: Any, region_names: Sequence[str] | None, images: list[str],
                   shape: tuple[int, int]) -> tuple[np.ndarray, tuple[str, ...]]:
    """Label maps (H, W) or (N, H, W) as int64, aligned to the cube's images, and the region names."""
    ids, names = None, None
    data = _face_data(regions)
    if isinstance(regions, xr.DataArray):
        names = regions.attrs.get("region_names")
        if names is None and isinstance(regions.attrs.get("flag_meanings"), str):
            names = regions.attrs["flag_meanings"].split()
    elif data is not None:
        if not hasattr(data, "regions"):
            raise AnalysisTypeError("regions: the data set has no region masks (synthetic faces have them); pass "
                                    "integer label maps instead, e.g. face_template(size) for aligned real faces")
        names, ids, regions = getattr(data, "region_names", None), data.image_ids, data.regions
    labels = _aligned(regions, "regions", images, shape, ids)
    if labels.dtype == bool or not np.issubdtype(labels.dtype, np.integer):
        raise AnalysisError(f"regions must be integer label maps (values index region_names), got dtype "
                            f"{labels.dtype}; convert boolean masks with mask.astype(np.uint8)")
    labels = labels.astype(np.int64)
    if labels.size and labels.min() < 0:
        raise AnalysisError(f"regions must hold labels >= 0, got {int(labels.min())}")
    if region_names is not None:
        names = region_names
    if names is None:
        names = [f"region_{value}" for value in range(int(labels.max()) + 1)]
    if isinstance(names, str) or not all(isinstance(item, str) for item in names):
        raise AnalysisTypeError(f"region_names must be a sequence of str, got {names!r}")
    names = tuple(names)
    if len(set(names)) != len(names) or not names:
        raise AnalysisError(f"region_names must be distinct and not empty, got {names}")
    if int(labels.max()) >= len(names):
        raise AnalysisError(f"regions has label {int(labels.max())} but only {len(names)} region_names {names}; "
                            f"labels must be 0 to {len(names) - 1}")
    return labels, names


# ------------------------------------------------------------------------------------------------ region relevance
def region_relevance(cube: xr.Dataset, regions: Any, region_names: Sequence[str] | None = None,
                     n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0, progress: bool = False, *,
                     block_size: int | None = None) -> xr.Dataset:
    """The share of positive relevance, and the mean relevance per pixel, in each face region, per model.

    Parameters
    ----------
    cube : xarray.Dataset
        A relevance cube; read one block of images at a time. Models a ragged cube did not compute are NaN.
    regions
        Integer label maps whose values index ``region_names``: one (H, W) map shared by every image (e.g.
        :func:`face_template`), or (N, H, W), one per image of the cube in its order; an xarray.DataArray with dims
        (y, x) or (image, y, x), matched to the cube by its ``image`` coordinate, with the names in
        ``attrs["region_names"]`` (or CF ``flag_meanings``); or face data (see :func:`lrp_faces.faces.as_face_data`)
        with region masks (``regions``, ``region_names``), such as :class:`~lrp_faces.faces.SyntheticFaces` (names
        :data:`lrp_faces.faces.REGIONS`), matched by image id.
    region_names : sequence of str, optional
        Names of the label values 0, 1, ...; default from ``regions``, else ``region_0``, ``region_1``, ...
    n_bootstrap, confidence, seed
        Percentile bootstrap over images (the same resamples for every model and region).
    progress : bool
        Show a progress bar over blocks of images.
    block_size : int, optional
        Images per block (see :func:`similarity`).

    Returns
    -------
    xarray.Dataset
        Per image: ``image_share``, the region's share of the map's positive relevance (summing to 1 over regions;
        NaN for a map without positive relevance), and ``image_density``, the mean relevance of the region's pixels
        (NaN where the region is empty), over (pretraining, task, seed, image, region); their means over images
        ``share`` and ``density`` with ``share_ci_low``/``_high`` and ``density_ci_low``/``_high`` over
        (pretraining, task, seed, region); ``region_area`` (image, region), the share of pixels in each region.

    Raises
    ------
    AnalysisError
        Label maps whose shape, image ids or labels do not fit the cube or the names; NaN relevance.
    AnalysisTypeError
        ``cube`` or ``regions`` of the wrong type.
    """
    relevance, images, shape, models, (n_bootstrap, confidence, seed, block_size) = _checked_inputs(
        cube, n_bootstrap, confidence, seed, block_size)
    labels, names = _region_labels(regions, region_names, images, shape)
    count, size, pixels = len(images), len(models.specs), shape[0] * shape[1]
    shares = np.empty((size, count, len(names)))
    densities = np.empty((size, count, len(names)))
    areas = np.empty((count, len(names)))
    shared = _one_hot(labels.reshape(-1), len(names)) if labels.ndim == 2 else None
    for block, maps in read_blocks(relevance, models, block_size, progress, "region relevance"):
        maps = maps.reshape(size, maps.shape[1], pixels).astype(np.float64)
        positive = np.maximum(maps, 0.0)
        if shared is not None:
            region_positive, region_sum = positive @ shared, maps @ shared  # (M, B, R)
            pixel_counts = np.broadcast_to(shared.sum(0), (maps.shape[1], len(names)))
        else:
            one_hot = _one_hot(labels[block].reshape(maps.shape[1], pixels), len(names))  # (B, P, R)
            region_positive = (positive.transpose(1, 0, 2) @ one_hot).transpose(1, 0, 2)
            region_sum = (maps.transpose(1, 0, 2) @ one_hot).transpose(1, 0, 2)
            pixel_counts = one_hot.sum(1)
        total = region_positive.sum(-1, keepdims=True)
        with np.errstate(invalid="ignore", divide="ignore"):
            shares[:, block] = np.where(total > 0, region_positive / total, np.nan)
            densities[:, block] = np.where(pixel_counts > 0, region_sum / pixel_counts, np.nan)
        areas[block] = pixel_counts / pixels
    share_mean, share_low, share_high = bootstrap_mean(shares.transpose(0, 2, 1), n_bootstrap, confidence, seed)
    density_mean, density_low, density_high = bootstrap_mean(densities.transpose(0, 2, 1), n_bootstrap, confidence,
                                                             seed)
    model_dims = ("pretraining", "task", "seed")
    summary_dims, image_dims = model_dims + ("region",), model_dims + ("image", "region")
    variables = {
        "share": (summary_dims, models.to_grid(share_mean),
                  {"long_name": "mean over images of the region's share of the positive relevance"}),
        "share_ci_low": (summary_dims, models.to_grid(share_low)),
        "share_ci_high": (summary_dims, models.to_grid(share_high)),
        "density": (summary_dims, models.to_grid(density_mean),
                    {"long_name": "mean over images of the mean relevance of the region's pixels"}),
        "density_ci_low": (summary_dims, models.to_grid(density_low)),
        "density_ci_high": (summary_dims, models.to_grid(density_high)),
        "image_share": (image_dims, models.to_grid(shares)),
        "image_density": (image_dims, models.to_grid(densities)),
        "region_area": (("image", "region"), areas, {"long_name": "share of the image's pixels in the region"}),
    }
    coords = {dim: relevance[dim].values for dim in model_dims}
    coords.update(image=images, region=list(names))
    attrs = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed,
             "description": "share of positive relevance and mean relevance per pixel in each region; means over "
                            "images with percentile bootstrap CIs over images"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def _one_hot(labels: np.ndarray, regions: int) -> np.ndarray:
    return np.eye(regions)[labels]


def _checked_inputs(cube: Any, n_bootstrap: Any, confidence: Any, seed: Any, block_size: Any) \
        -> tuple[xr.DataArray, list[str], tuple[int, int], CubeModels, tuple[int, float, int, int | None]]:
    """The cube's checked relevance, image ids, map shape and computed models, and the checked statistics'
    settings ``(n_bootstrap, confidence, seed, block_size)``."""
    relevance = check_relevance(cube)
    statistics = (check_count(n_bootstrap, "n_bootstrap"), check_confidence(confidence), check_count(seed, "seed"),
                  check_block_size(block_size))
    return (relevance, image_ids(relevance), (relevance.sizes["y"], relevance.sizes["x"]),
            cube_models(cube, relevance), statistics)


# ---------------------------------------------------------------------------------------------------- ground truth
def task_masks(masks: Any, tasks: list[str], images: list[str], shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean ground truth (H, W) or (N, H, W) per task, aligned to the cube's images."""
    found = {}
    if isinstance(masks, Mapping):
        missing = [task for task in tasks if task not in masks]
        if missing:
            raise AnalysisError(f"masks has no ground truth for the cube's task(s) {missing}; it has "
                                f"{sorted(map(str, masks))}. Give one mask per task, e.g. "
                                "{task: dataset.task_mask(task)}")
        for task in tasks:
            found[task] = _aligned(masks[task], f"masks[{task!r}]", images, shape)
    elif not callable(getattr(masks, "task_mask", None)) and _face_data(masks) is not None:
        raise AnalysisTypeError("masks: the data set has no ground-truth masks (synthetic faces have them, in "
                                "task_mask(task)); pass boolean masks per task instead")
    elif callable(getattr(masks, "task_mask", None)):
        ids = getattr(masks, "image_ids", None)
        for task in tasks:
            try:
                values = masks.task_mask(task)
            except ValueError as error:
                raise AnalysisError(f"masks ({type(masks).__name__}) has no ground truth for the cube's task "
                                    f"{task!r}: {error}") from None
            found[task] = _aligned(values, f"masks.task_mask({task!r})", images, shape, ids)
    else:
        raise AnalysisTypeError(f"masks must map each task to boolean masks (N, H, W) or (H, W), or be a dataset "
                                f"with task_mask(task) such as SyntheticFaces; got {type(masks).__name__}")
    for task, values in found.items():
        if values.dtype != bool:
            if not np.issubdtype(values.dtype, np.number) or not np.isin(values, (0, 1)).all():
                raise AnalysisError(f"the ground-truth mask of task {task!r} must be boolean (or 0/1), got dtype "
                                    f"{values.dtype}")
            found[task] = values.astype(bool)
    return found


def mass_and_rank_accuracy(maps: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Relevance mass and rank accuracy of maps (..., P) against boolean ground truth (..., P), see
    :func:`ground_truth`; NaN for a map without positive relevance (mass) or an empty ground truth (rank).

    The rank accuracy is tie-aware: with ``K`` the number of ground-truth pixels, pixels above the map's ``K``-th
    largest value count 1 and the ``n_equal`` pixels equal to it ``(K - n_above) / n_equal`` each, and the score is
    ``sum_i p(i) G(i) / K`` — exactly the expected share of the top ``K`` inside the ground truth when ties are broken
    at random. A constant map scores the ground truth's share of the image.
    """
    maps = np.asarray(maps, dtype=np.float64)
    inside = np.asarray(inside, dtype=bool)
    positive = np.maximum(maps, 0.0)
    total = positive.sum(-1)
    top = inside.sum(-1)  # K per map
    hits = (top_membership(maps, np.broadcast_to(top, maps.shape[:-1])) * inside).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(total > 0, (positive * inside).sum(-1) / total, np.nan)
        rank = np.where(top > 0, hits / top, np.nan)
    return mass, rank


def ground_truth(cube: xr.Dataset, masks: Any, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
                 progress: bool = False, *, block_size: int | None = None) -> xr.Dataset:
    """Score each model's maps against its own task's ground-truth pixels (CLEVR-XAI, Arras et al. 2022).

    * relevance mass accuracy: the share of the map's positive relevance that lies inside the ground truth;
    * relevance rank accuracy: the share of the map's K most relevant pixels that lie inside the ground truth, with
      K the number of ground-truth pixels of the image. Ties at the K-th value are shared: the pixels equal to it
      split the remaining places equally, which gives the expected score under random tie-breaking (see
      :func:`mass_and_rank_accuracy`), so zero pixels in raster order do not decide the score.

    Parameters
    ----------
    cube, n_bootstrap, confidence, seed, progress, block_size
        As for :func:`region_relevance`.
    masks
        Ground truth per task: a mapping ``task -> masks``, each boolean (N, H, W) in the cube's image order, (H, W)
        shared by all images, or an xarray.DataArray (image, y, x) matched by image id; or face data (see
        :func:`lrp_faces.faces.as_face_data`) with ground truth, ``task_mask(task)``, such as
        :class:`~lrp_faces.faces.SyntheticFaces`. Every task of the cube's models is needed.

    Returns
    -------
    xarray.Dataset
        ``relevance_mass_accuracy`` and ``relevance_rank_accuracy`` over (pretraining, task, seed, image), NaN for
        a map without positive relevance (mass) or an image with empty ground truth (rank); their means over images
        ``*_mean`` with ``*_ci_low``/``*_ci_high`` over (pretraining, task, seed); ``ground_truth_area`` (task,
        image), the share of pixels in the ground truth, i.e. what a random map scores on average.

    Raises
    ------
    AnalysisError
        Masks missing for a task, of the wrong shape, ids or values; NaN relevance.
    AnalysisTypeError
        ``cube`` or ``masks`` of the wrong type.
    """
    relevance, images, shape, models, (n_bootstrap, confidence, seed, block_size) = _checked_inputs(
        cube, n_bootstrap, confidence, seed, block_size)
    tasks = sorted({spec.task for spec in models.specs})
    truth = task_masks(masks, tasks, images, shape)
    task_of_model = np.array([tasks.index(spec.task) for spec in models.specs])
    count, size, pixels = len(images), len(models.specs), shape[0] * shape[1]
    mass, rank = np.empty((size, count)), np.empty((size, count))
    for block, maps in read_blocks(relevance, models, block_size, progress, "ground truth"):
        maps = maps.reshape(size, maps.shape[1], pixels)
        inside = np.stack([np.broadcast_to(truth[task][block] if truth[task].ndim == 3 else truth[task],
                                           (maps.shape[1],) + shape).reshape(maps.shape[1], pixels)
                           for task in tasks])[task_of_model]  # (M, B, P)
        mass[:, block], rank[:, block] = mass_and_rank_accuracy(maps, inside)
    variables = {}
    for name, values, long_name in (
            ("relevance_mass_accuracy", mass, "share of the positive relevance inside the ground truth"),
            ("relevance_rank_accuracy", rank, "share of the K most relevant pixels inside the ground truth "
                                              "(K = ground-truth size)")):
        mean, low, high = bootstrap_mean(values, n_bootstrap, confidence, seed)
        variables[name] = (("pretraining", "task", "seed", "image"), models.to_grid(values),
                           {"long_name": long_name})
        variables[f"{name}_mean"] = (("pretraining", "task", "seed"), models.to_grid(mean))
        variables[f"{name}_ci_low"] = (("pretraining", "task", "seed"), models.to_grid(low))
        variables[f"{name}_ci_high"] = (("pretraining", "task", "seed"), models.to_grid(high))
    cube_tasks = [str(task) for task in relevance["task"].values]
    area = np.full((len(cube_tasks), count), np.nan)
    for row, task in enumerate(cube_tasks):
        if task in truth:
            area[row] = np.broadcast_to(truth[task].reshape(-1, pixels).mean(-1), (count,))
    variables["ground_truth_area"] = (("task", "image"), area, {"long_name": "share of the pixels in the task's "
                                                                             "ground truth"})
    coords = {dim: relevance[dim].values for dim in ("pretraining", "task", "seed")}
    coords["image"] = images
    attrs = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed,
             "ground_truth": "relevance mass and rank accuracy (Arras et al. 2022, CLEVR-XAI) against each model's "
                             "own task's ground-truth pixels"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
