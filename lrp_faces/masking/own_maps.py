"""Every model of a cube masked by its own relevance maps: :func:`curves` per model, stacked over the model dims.

The work splits into units, one per (model, image block): :func:`~lrp_faces.masking.curves_block` scores one model
on one block; :func:`assemble_own_map_curves` builds the result from every model's scores over all images.
:func:`own_map_curves` runs the units one after another; an executor can run the same units elsewhere::

    inputs = own_map_inputs(cube, zoo, dataset, order="lerf")
    scores = {}
    for spec in inputs.specs:
        model = zoo[spec]
        rows = inputs.batch_size(device=device)  # the same rows per forward pass in every unit
        scores[spec] = BlockScores.concatenate([
            curves_block(model, inputs.images[block], inputs.maps(spec, block), inputs.labels[spec.task][block],
                         inputs.config, image_index=range(block.start, block.stop),
                         fill_colours=inputs.colours(block), batch_size=rows, device=device)
            for block in inputs.blocks(block_size)])
    result = assemble_own_map_curves(scores, inputs)
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..compute import unit_model
from ..devices import resolve_device
from ..zoo import MODEL_DIMS, ModelSpec
from ._engine import BlockScores
from ._inputs import DEFAULT_BLOCK_SIZE, CubeInputs, check_cube, cube_inputs
from ._units import block_scores_dataset, image_blocks, run_block_units
from .config import MaskingConfig, MaskingError, masking_config, unit_count
from .curves import assemble_curves, check_aopc_fractions, curves_block

__all__ = ["own_map_curves", "own_map_inputs", "own_map_unit", "assemble_own_map_curves"]

DEFAULT_ORDER = "lerf"
"""The order of :func:`own_map_curves` when no config is given: least relevant first."""


def own_map_inputs(cube: xr.Dataset, zoo: Mapping, dataset: Any, config: MaskingConfig | None = None,
                   **overrides: Any) -> CubeInputs:
    """Check the inputs of :func:`own_map_curves` and gather them by image position (its units' inputs).

    ``specs`` are the cube's computed models (``cube.lrp.models()``); without ``config`` the order is ``"lerf"``.
    """
    from ..cube.accessor import LRPAccessor  # ``cube.lrp``, whether or not lrp_faces.cube was imported
    config = masking_config(config, overrides, default=MaskingConfig(order=DEFAULT_ORDER))
    check_aopc_fractions(config.fractions, config.mode)
    check_cube(cube)
    specs = LRPAccessor(cube).models()
    if not specs:
        raise MaskingError("the cube has no computed model (its 'computed' coordinate is False everywhere)")
    return cube_inputs(cube, zoo, dataset, config, specs)


def assemble_own_map_curves(scores: Mapping[ModelSpec, BlockScores], inputs: CubeInputs, *,
                            contrastive: bool = True, precision: str = "float32") -> xr.Dataset:
    """The :func:`own_map_curves` dataset from each model's scores over all images.

    Parameters
    ----------
    scores : mapping ModelSpec -> BlockScores
        Per model of ``inputs.specs``, its :func:`curves_block` results joined over every block in image order.
    inputs : CubeInputs
        From :func:`own_map_inputs`.
    contrastive, precision
        As given to :func:`curves_block` (recorded in the attributes).
    """
    missing = [str(spec) for spec in inputs.specs if spec not in scores]
    if missing:
        raise MaskingError(f"scores are missing for model(s) {', '.join(missing[:10])}")
    units = unit_count(inputs.images.shape, inputs.config.patch)
    results = {spec: assemble_curves(scores[spec], inputs.config, units=units, labels=inputs.labels[spec.task],
                                     image_ids=inputs.image_ids, contrastive=contrastive,
                                     precision=precision).reset_coords("label")
               for spec in inputs.specs}
    result = _stack(results, inputs)
    result.attrs.update(inputs.class_attrs())
    return result


def own_map_curves(cube: xr.Dataset, zoo: Mapping, dataset: Any, config: MaskingConfig | None = None, *,
                   batch_size: int | None = None, block_size: int | None = DEFAULT_BLOCK_SIZE,
                   contrastive: bool = True, device: str | torch.device | None = None, precision: str = "float32",
                   client: Any = None, threads: int | None = None, units_dir: str | os.PathLike | None = None,
                   progress: bool = False, **overrides: Any) -> xr.Dataset:
    """Score every model of a cube on its images masked by its own maps: :func:`curves` per model.

    The validation counterpart of :func:`generalization` (which masks each model by every model's maps): a LeRF run
    costs about one generalisation source's forward passes per model. Each model is scored on its own task's labels.
    Models are loaded one at a time; the images go in blocks of ``block_size`` (units of work, see the module).

    Parameters
    ----------
    cube : xarray.Dataset
        With ``relevance`` over ("pretraining", "task", "seed", "image", "y", "x") and string image ids, as for
        :func:`generalization`. A ragged cube (a ``computed`` coordinate, see :func:`lrp_faces.cube.open`) is
        fine: only the models of ``cube.lrp.models()`` are scored.
    zoo : Mapping[ModelSpec, nn.Module]
        e.g. :class:`~lrp_faces.zoo.Zoo`; must hold every computed model of the cube.
    dataset
        Any face data (see :func:`lrp_faces.faces.as_face_data`) holding the cube's images (matched by image id).
        Its labels are mapped to each task's models' class numbering by class name where both record names
        (:func:`lrp_faces.zoo.scored_labels`); attribute ``class_names`` records the classes' names per task.
    config : MaskingConfig, optional
        The masking settings; default ``MaskingConfig(order="lerf")`` (least relevant first).
    batch_size, contrastive, device, precision
        As for :func:`curves`.
    block_size : int or None
        Images per unit of work (None: all at once); bounds memory, and the result does not depend on it.
    client, threads, units_dir
        Where the units run and where finished ones are kept, as for :func:`generalization`.
    progress : bool
        Show a progress bar over the units.
    **overrides
        Fields of :class:`MaskingConfig` that replace the config's, e.g. ``order="morf"``; keyword-only.

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
    inputs = own_map_inputs(cube, zoo, dataset, config, **overrides)
    device = None if device is None else resolve_device(device)
    rows = inputs.batch_size(batch_size, device or "cpu")
    blocks = image_blocks(inputs, block_size)

    def arguments(spec: ModelSpec, block: slice) -> tuple:
        images, colours, labels = blocks[(block.start, block.stop)]
        return (images, inputs.maps(spec, block), labels[spec.task], inputs.config, block.start, colours, rows,
                contrastive, device, precision)

    scores = run_block_units(f"masking_{inputs.config.order}", inputs, zoo, inputs.specs, own_map_unit, arguments,
                             block_size, settings={"unit": "own_maps", "contrastive": contrastive,
                                                   "precision": precision, "rows": rows, "block_size": block_size},
                             device=device, client=client, threads=threads, units_dir=units_dir, progress=progress)
    return assemble_own_map_curves(scores, inputs, contrastive=contrastive, precision=precision)


def own_map_unit(source: Any, images: torch.Tensor, maps: Any, labels: torch.Tensor, config: MaskingConfig,
                 start: int, fill_colours: torch.Tensor | None, batch_size: int, contrastive: bool,
                 device: torch.device | None, precision: str) -> xr.Dataset:
    """One unit of :func:`own_map_curves` as :mod:`lrp_faces.compute` runs it: :func:`curves_block` for the model of
    ``source`` on images ``start`` to ``start + n - 1`` and its own maps, returned as a Dataset."""
    model = unit_model(source, device)
    scores = curves_block(model, images, maps, labels, config, image_index=range(start, start + len(images)),
                          fill_colours=fill_colours, batch_size=batch_size, contrastive=contrastive, device=device,
                          precision=precision)
    return block_scores_dataset(scores)


def _stack(results: dict, inputs: CubeInputs) -> xr.Dataset:
    """The per-model results on the cube's model grid; models without a result are NaN (``label`` -1)."""
    relevance = inputs.relevance
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
    if "computed" in relevance.coords:
        coords["computed"] = relevance["computed"]
    order = inputs.config.order
    attrs = {**first.attrs, "own_maps": f"each model's images masked by its own maps, order {order!r} "
                                        f"(lrp_faces.masking.curves per model)", "n_models": len(results)}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
