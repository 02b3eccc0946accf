"""The ``.lrp`` accessor on cubes (Datasets) and relevance arrays (DataArrays): per-map normalisation, top-pixel
masks and the models of a cube."""
from __future__ import annotations

import itertools

import numpy as np
import xarray as xr

from ..zoo import ModelSpec
from ._store import MODEL_DIMS, CubeInputError

MAP_DIMS = ("y", "x")
NORMS = ("l1", "max")


@xr.register_dataset_accessor("lrp")
@xr.register_dataarray_accessor("lrp")
class LRPAccessor:
    """``cube.lrp`` / ``cube.relevance.lrp``: map-wise operations and the models of a cube.

    On a Dataset the map-wise methods use its ``relevance`` variable and return a DataArray.
    """

    def __init__(self, obj: xr.Dataset | xr.DataArray):
        self._obj = obj

    def _relevance(self) -> xr.DataArray:
        relevance = self._obj["relevance"] if isinstance(self._obj, xr.Dataset) else self._obj
        missing = [dim for dim in MAP_DIMS if dim not in relevance.dims]
        if missing:
            raise CubeInputError(f"relevance maps need the dims {MAP_DIMS}; these have {relevance.dims}")
        return relevance

    def normalize(self, how: str = "l1") -> xr.DataArray:
        """Each map divided by its L1 norm (``"l1"``: absolute values sum to 1) or its largest absolute value
        (``"max"``); all-zero maps stay zero. Lazy on dask-backed cubes."""
        if how not in NORMS:
            raise CubeInputError(f"how must be one of {NORMS}, got {how!r}")
        relevance = self._relevance()
        magnitude = abs(relevance)
        scale = magnitude.sum(MAP_DIMS) if how == "l1" else magnitude.max(MAP_DIMS)
        normalized = (relevance / scale.where(scale != 0, 1.0)).astype(relevance.dtype)
        normalized.attrs = {**relevance.attrs, "normalization": how}
        return normalized

    def top_fraction(self, fraction: float) -> xr.DataArray:
        """Boolean masks of the ``round(fraction * H * W)`` most relevant pixels of each map.

        Ties are broken by position: among equal values the pixel that comes first in row-major order (smaller y,
        then smaller x) wins. NaN pixels are never selected.
        """
        if not isinstance(fraction, (int, float, np.floating, np.integer)) or not 0 <= fraction <= 1:
            raise CubeInputError(f"fraction must be a number in [0, 1], got {fraction!r}")
        relevance = self._relevance()
        count = int(np.floor(float(fraction) * relevance.sizes["y"] * relevance.sizes["x"] + 0.5))
        if relevance.chunks is not None:
            relevance = relevance.chunk({"y": -1, "x": -1})
        mask = xr.apply_ufunc(_top_pixels, relevance, kwargs={"count": count}, input_core_dims=[list(MAP_DIMS)],
                              output_core_dims=[list(MAP_DIMS)], dask="parallelized", output_dtypes=[bool])
        mask.attrs = {"long_name": f"the {fraction:g} most relevant pixels of each map", "units": "1"}
        return mask.transpose(*relevance.dims)

    def models(self) -> list[ModelSpec]:
        """The models in the cube (those computed, where the grid is ragged), sorted."""
        values = [np.atleast_1d(self._obj[dim].values).tolist() for dim in MODEL_DIMS]
        specs = [ModelSpec(*combination) for combination in itertools.product(*values)]
        if "computed" in self._obj.coords:
            computed = self._obj["computed"]
            specs = [spec for spec in specs if bool(computed.sel(
                {dim: getattr(spec, dim) for dim in MODEL_DIMS if dim in computed.dims}))]
        return sorted(specs)

    def stack_models(self, dim: str = "model") -> xr.Dataset | xr.DataArray:
        """Stack pretraining, task and seed into one ``dim`` (a MultiIndex, so ``.sel(task=...)`` still works),
        keeping only computed models; e.g. for pairwise comparisons of maps."""
        scalars = [name for name in MODEL_DIMS if name not in self._obj.dims]
        stacked = self._obj.expand_dims(scalars).stack({dim: list(MODEL_DIMS)})
        if "computed" in stacked.coords:
            stacked = stacked.isel({dim: np.flatnonzero(stacked["computed"].values)}).drop_vars("computed")
        return stacked


def _top_pixels(values: np.ndarray, count: int) -> np.ndarray:
    """Boolean mask of the ``count`` largest entries over the last two axes, ties to the smaller flat index."""
    flat = values.reshape(*values.shape[:-2], -1)
    order = np.argsort(np.where(np.isnan(flat), np.inf, -flat), axis=-1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.broadcast_to(np.arange(flat.shape[-1]), order.shape), axis=-1)
    mask = (ranks < count) & ~np.isnan(flat)
    return mask.reshape(values.shape)
