"""Every model of a cube masked by its own relevance maps: :func:`curves` per model, stacked over the model dims."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .config import DEFAULT_FRACTIONS, MaskingError
from .curves import curves
from .generalization import MODEL_DIMS, _check_cube, _check_zoo, _select_images, _task_labels

__all__ = ["own_map_curves"]


def own_map_curves(cube: xr.Dataset, zoo: Mapping, dataset: Any, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   order: str = "lerf", fill: str = "mean", patch: int = 1, mode: str = "remove", seed: int = 0, *,
                   fill_value: Any = None, blur_sigma: float | None = None, road_noise: float = 0.01,
                   batch_size: int | None = None, contrastive: bool = True, device: str | torch.device | None = None,
                   progress: bool = False) -> xr.Dataset:
    """Score every model of a cube on its images masked by its own maps: one :func:`curves` per model.

    The validation counterpart of :func:`generalization` (which masks each model by every model's maps): a LeRF run
    costs about one generalisation source's forward passes per model. Each model is scored on its own task's labels.

    Parameters
    ----------
    cube : xarray.Dataset
        With ``relevance`` over ("pretraining", "task", "seed", "image", "y", "x") and string image ids, as for
        :func:`generalization`. A ragged cube (a ``computed`` coordinate, see :func:`lrp_faces.cube.open`) is
        fine: only the models of ``cube.lrp.models()`` are scored.
    zoo : Mapping[ModelSpec, nn.Module]
        e.g. :class:`~lrp_faces.zoo.Zoo`; must hold every computed model of the cube.
    dataset
        Has ``.images`` (N, 3, H, W), ``.labels(task)`` and ``.image_ids`` covering the cube's images.
    fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise, batch_size, contrastive
        As for :func:`curves`; ``order`` defaults to ``"lerf"`` (least relevant first).
    device : str or torch.device, optional
        Where the models run (default: where they are loaded).
    progress : bool
        Show a progress bar over the models.

    Returns
    -------
    xarray.Dataset
        The variables of :func:`curves` with the model dims in front: ``correct``, ``probability``, ``output``
        (pretraining, task, seed, fraction, image), ``accuracy`` (..., fraction), ``aopc_output``,
        ``aopc_probability`` and ``label`` (..., image), ``mean_aopc_output``, ``mean_aopc_probability`` and
        ``accuracy_auc`` (pretraining, task, seed); coordinates ``fraction``, ``hidden_units``, ``image`` and the
        model dims; the attributes of :func:`curves` plus ``own_maps`` and ``n_models``. Models a ragged cube did
        not compute are NaN in every variable (``correct`` is then float: 1, 0 or NaN, so that means skip them)
        and -1 in ``label``; the cube's ``computed`` coordinate is kept.
    """
    from ..cube.accessor import LRPAccessor  # ``cube.lrp``, whether or not lrp_faces.cube was imported
    relevance = _check_cube(cube)
    specs = LRPAccessor(cube).models()
    if not specs:
        raise MaskingError("the cube has no computed model (its 'computed' coordinate is False everywhere)")
    _check_zoo(specs, zoo)
    images, indices = _select_images(dataset, relevance)
    labels = _task_labels(dataset, relevance.sel(task=sorted({spec.task for spec in specs})), indices)
    ids = [str(image_id) for image_id in relevance.image.values]
    results = {}
    for spec in tqdm(specs, desc=f"masking ({order})", unit="model", disable=not progress, leave=False):
        model = zoo[spec]
        model = model.to(device) if device is not None else model
        maps = relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed)
        results[spec] = curves(model, images, labels[spec.task], maps, fractions, order, fill, patch, mode, seed,
                               fill_value=fill_value, blur_sigma=blur_sigma, road_noise=road_noise,
                               batch_size=batch_size, contrastive=contrastive, image_ids=ids).reset_coords("label")
    return _stack(results, relevance, cube, order)


def _stack(results: dict, relevance: xr.DataArray, cube: xr.Dataset, order: str) -> xr.Dataset:
    """The per-model results on the cube's model grid; models without a result are NaN (``label`` -1)."""
    first = next(iter(results.values()))
    grid = tuple(relevance.sizes[dim] for dim in MODEL_DIMS)
    ragged = len(results) < int(np.prod(grid))
    positions = {spec: tuple(relevance.indexes[dim].get_loc(getattr(spec, dim)) for dim in MODEL_DIMS)
                 for spec in results}
    variables = {}
    for name, variable in first.data_vars.items():
        dtype = variable.dtype
        if ragged and dtype == bool:
            dtype = np.dtype(np.float64)
        missing = -1 if np.issubdtype(dtype, np.integer) else np.nan
        values = np.full(grid + variable.shape, missing, dtype=dtype)
        for spec, result in results.items():
            values[positions[spec]] = result[name].values
        variables[name] = (MODEL_DIMS + variable.dims, values, variable.attrs)
    coords = {dim: relevance[dim].values for dim in MODEL_DIMS}
    coords.update({name: coord for name, coord in first.coords.items()})
    if "computed" in cube.coords:
        coords["computed"] = cube["computed"]
    attrs = {**first.attrs, "own_maps": f"each model's images masked by its own maps, order {order!r} "
                                        f"(lrp_faces.masking.curves per model)", "n_models": len(results)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
