"""What the map-level analyses share: errors, checks of their inputs, and reading a cube block by block of images."""
from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from ..cube import NON_FINITE_MAPS
from ..faces import DatasetError, DataTypeError, FaceDataView, as_face_data
from ..masking import MODEL_DIMS
from ..zoo import ModelSpec
from ..errors import LRPFacesError

MAP_DIMS = ("y", "x")
CUBE_DIMS = MODEL_DIMS + ("image",) + MAP_DIMS
#: Bytes of float64 working data per block of images (all models); a block is at least one image.
BLOCK_BYTES = 8 * 2 ** 20


class AnalysisError(LRPFacesError, ValueError):
    """An input of an analysis that has the wrong shape, values or names (the message says what was expected)."""


class AnalysisTypeError(LRPFacesError, TypeError):
    """An input of an analysis of the wrong type."""


def check_choice(value: Any, choices: tuple, name: str, error: type[Exception] = AnalysisError) -> str:
    """``value`` if it is one of ``choices``, else ``error`` (e.g. :class:`RSAError` in the RSA modules)."""
    if not isinstance(value, str) or value not in choices:
        raise error(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_confidence(confidence: Any, error: type[Exception] = AnalysisError) -> float:
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float, np.floating)) \
            or not 0 < confidence < 1:
        raise error(f"confidence must be a number in (0, 1), got {confidence!r}")
    return float(confidence)


def face_data(dataset: Any, error: type[Exception] = AnalysisError,
              type_error: type[Exception] = AnalysisTypeError) -> FaceDataView:
    """``dataset`` read as face data (:func:`lrp_faces.faces.as_face_data`); its errors as the analysis's, naming
    the ``dataset`` argument."""
    try:
        return as_face_data(dataset)
    except DataTypeError as problem:
        raise type_error(f"dataset: {problem}") from problem
    except DatasetError as problem:
        raise error(f"dataset: {problem}") from problem


def check_count(value: Any, name: str, low: int = 0, error: type[Exception] = AnalysisError) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise error(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)


def check_device(device: Any, error: type[Exception] = AnalysisError) -> torch.device | None:
    """``device`` as a :class:`torch.device` (None stays None: the models stay where they are)."""
    if device is None or isinstance(device, torch.device):
        return device
    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise error(f"device must be a torch.device or a name such as 'cpu', 'cuda' or 'cuda:1', got {device!r}") \
            from None


def check_relevance(cube: Any, name: str = "cube") -> xr.DataArray:
    """``cube.relevance`` transposed to (pretraining, task, seed, image, y, x), after checking the layout."""
    if not isinstance(cube, xr.Dataset) or "relevance" not in cube.data_vars:
        raise AnalysisTypeError(f"{name} must be an xarray.Dataset with a 'relevance' variable (see "
                                f"lrp_faces.cube.open), got {type(cube).__name__}")
    relevance = cube["relevance"]
    if set(relevance.dims) != set(CUBE_DIMS):
        raise AnalysisError(f"{name}.relevance must have the dims {CUBE_DIMS}, got {relevance.dims}")
    if not np.issubdtype(relevance.dtype, np.floating):
        raise AnalysisError(f"{name}.relevance must hold floating-point relevance, got dtype {relevance.dtype}")
    if relevance.sizes["image"] == 0 or relevance.sizes["y"] * relevance.sizes["x"] == 0:
        raise AnalysisError(f"{name}.relevance holds no maps: sizes {dict(relevance.sizes)}")
    return relevance.transpose(*CUBE_DIMS)


def image_ids(relevance: xr.DataArray) -> list[str]:
    return [str(value) for value in relevance["image"].values]


@dataclass(frozen=True)
class CubeModels:
    """The computed models of a cube, in grid order, with their positions in the (pretraining, task, seed) grid."""

    specs: list[ModelSpec]
    positions: list[tuple[int, int, int]]
    grid: tuple[int, int, int]

    @property
    def ids(self) -> list[str]:
        return [spec.id for spec in self.specs]

    def to_grid(self, values: np.ndarray) -> np.ndarray:
        """Per-model values (M, ...) on the full grid (P, T, S, ...), NaN where a model was not computed."""
        grid = np.full(self.grid + values.shape[1:], np.nan)
        for row, position in zip(values, self.positions):
            grid[position] = row
        return grid


def cube_models(cube: xr.Dataset, relevance: xr.DataArray, name: str = "cube") -> CubeModels:
    """The models of ``cube`` whose maps were computed (the ``computed`` coordinate of a ragged cube)."""
    computed = cube.coords.get("computed")
    if computed is not None:
        computed = np.asarray(computed.transpose(*[dim for dim in MODEL_DIMS if dim in computed.dims]).values)
        computed = np.broadcast_to(computed.reshape([relevance.sizes[dim] if dim in cube["computed"].dims else 1
                                                     for dim in MODEL_DIMS]),
                                   tuple(relevance.sizes[dim] for dim in MODEL_DIMS))
    specs, positions = [], []
    for i, pretraining in enumerate(relevance["pretraining"].values):
        for j, task in enumerate(relevance["task"].values):
            for k, seed in enumerate(relevance["seed"].values):
                if computed is not None and not computed[i, j, k]:
                    continue
                try:
                    specs.append(ModelSpec(str(pretraining), str(task), int(seed)))
                except ValueError as error:
                    raise AnalysisError(f"{name} has a model that is not a valid ModelSpec: {error}") from None
                positions.append((i, j, k))
    if not specs:
        raise AnalysisError(f"{name} holds no computed models")
    return CubeModels(specs, positions, tuple(relevance.sizes[dim] for dim in MODEL_DIMS))


def check_block_size(block_size: Any) -> int | None:
    if block_size is None:
        return None
    return check_count(block_size, "block_size", 1)


def image_blocks(relevance: xr.DataArray, models: int, block_size: int | None = None) -> list[slice]:
    """Consecutive image ranges covering the cube, each about :data:`BLOCK_BYTES` of float64 maps of all models.

    On a dask-backed cube the ranges follow the chunks along ``image`` (whole chunks per block where they fit), so
    that no chunk is read twice.
    """
    count, pixels = relevance.sizes["image"], relevance.sizes["y"] * relevance.sizes["x"]
    if block_size is None:
        block_size = max(1, BLOCK_BYTES // (8 * models * pixels))
    chunks = relevance.variable.chunksizes.get("image") if relevance.chunks is not None else None
    if not chunks or max(chunks) > block_size:
        return [slice(start, min(start + block_size, count)) for start in range(0, count, block_size)]
    blocks, start, stop = [], 0, 0
    for size in chunks:
        if stop + size - start > block_size and stop > start:
            blocks.append(slice(start, stop))
            start = stop
        stop += size
    blocks.append(slice(start, stop))
    return blocks


def read_blocks(relevance: xr.DataArray, models: CubeModels, block_size: int | None, progress: bool,
                description: str, name: str = "cube") -> Iterator[tuple[slice, np.ndarray]]:
    """Yield ``(images, maps)`` per block of images: maps (M, B, H, W) of the computed models, checked to be finite.
    Only one block is held at a time."""
    index = tuple(np.array(axis) for axis in zip(*models.positions))
    blocks = image_blocks(relevance, len(models.specs), block_size)
    for block in tqdm(blocks, desc=description, unit="block", disable=not progress, leave=False):
        grid = np.asarray(relevance.isel(image=block).values)  # (P, T, S, B, H, W), one compute per block
        maps = grid[index]
        del grid
        finite = np.isfinite(maps).reshape(len(maps), maps.shape[1], -1).all(-1)
        if not finite.all():
            model, image = np.argwhere(~finite)[0]
            bad = [models.ids[row] for row in np.flatnonzero(~finite.all(1))]
            raise AnalysisError(f"{name}.relevance has NaN or Inf values for model(s) {bad[:10]}, e.g. model "
                                f"{models.ids[model]} on image {str(relevance['image'].values[block][image])!r}: "
                                f"{NON_FINITE_MAPS}")
        yield block, maps


def top_membership(maps: np.ndarray, count: int | np.ndarray) -> np.ndarray:
    """Tie-aware membership (..., P) float64 of each pixel in the top ``count`` pixels of its map (..., P).

    Pixels strictly above the ``count``-th largest value of the map count 1; the ``n_equal`` pixels equal to it
    share the remaining ``count - n_above`` places equally, ``(count - n_above) / n_equal`` each; the rest count 0.
    This is the probability that the pixel is in the top set when ties are broken uniformly at random, so a map with
    fewer than ``count`` non-zero pixels spreads its last places over all of its zero pixels instead of giving them
    to the first zeros in raster order. Without ties it is the 0/1 indicator of the top set. Every map's weights sum
    to ``count``. ``count`` is one integer for all maps, or one per map (...,) with 0 giving all zeros.
    """
    maps = np.asarray(maps, dtype=np.float64)
    counts = np.asarray(count, dtype=np.int64)
    if counts.ndim == 0:  # one count: a partition finds the count-th largest value
        kth = -np.partition(-maps, int(counts) - 1, axis=-1)[..., int(counts) - 1]
    else:
        ordered = -np.sort(-maps, axis=-1)
        index = np.clip(counts - 1, 0, maps.shape[-1] - 1)[..., None]
        kth = np.take_along_axis(ordered, index, -1)[..., 0]
    above = maps > kth[..., None]
    equal = maps == kth[..., None]
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (counts - above.sum(-1)) / equal.sum(-1)
    return np.where(above, 1.0, np.where(equal, share[..., None], 0.0))  # a count of 0: no pixel above, share 0


@contextmanager
def ignore_empty_means():
    """Silence 'Mean of empty slice' where every value is NaN (the mean is NaN, as it should be)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Mean of empty slice", RuntimeWarning)
        yield
