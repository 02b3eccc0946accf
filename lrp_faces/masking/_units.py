"""Running a cube's masking step as units of :mod:`lrp_faces.compute`: one (model, image block) each.

The units of :func:`~lrp_faces.masking.generalization` and :func:`~lrp_faces.masking.own_map_curves` differ only in
the function that scores a block; this module builds them from a step's :class:`CubeInputs`, runs them in-process or
on a dask cluster, and joins each model's blocks in image order.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from ..compute import Unit, UnitStore, model_source, run_units, settings_digest, source_version, units_root
from ..zoo import ModelSpec
from ._engine import BlockScores
from ._inputs import CubeInputs

__all__ = ["run_block_units", "image_blocks", "block_scores_dataset", "dataset_block_scores",
           "step_settings", "SCORE_DIMS"]

SCORE_DIMS = ("score", "fraction", "image")
"""Dims of a block's masked scores (after any source dim): correct/probability/output, fraction, image."""


def block_scores_dataset(scores: BlockScores) -> xr.Dataset:
    """A unit's :class:`BlockScores` as the Dataset the unit store keeps."""
    masked_dims = ("source",) * (scores.masked.ndim - 3) + SCORE_DIMS
    return xr.Dataset({"unmasked": (("score", "image"), scores.unmasked), "masked": (masked_dims, scores.masked)})


def dataset_block_scores(result: xr.Dataset) -> BlockScores:
    """Inverse of :func:`block_scores_dataset`."""
    return BlockScores(np.asarray(result["unmasked"].values), np.asarray(result["masked"].values))


def step_settings(inputs: CubeInputs, targets: Sequence[ModelSpec], sources: Mapping[ModelSpec, Any],
                  extra: Mapping[str, Any]) -> dict:
    """Everything a masking step's units depend on (a changed value makes finished units stale)."""
    relevance = inputs.relevance
    return {"config": inputs.config.to_dict(), "targets": [spec.id for spec in targets],
            "models": [spec.id for spec in inputs.specs],
            "cube": settings_digest({key: str(value) for key, value in sorted(relevance.attrs.items())}),
            "images": settings_digest(inputs.image_ids),
            "labels": {task: settings_digest(values.tolist()) for task, values in sorted(inputs.labels.items())},
            "weights": {spec.id: source_version(source) for spec, source in sources.items()}, **extra}


def run_block_units(step: str, inputs: CubeInputs, zoo: Mapping, targets: Sequence[ModelSpec],
                    unit_function: Callable[..., xr.Dataset], arguments: Callable[[ModelSpec, slice], tuple],
                    block_size: int | None, *, settings: Mapping[str, Any], device: torch.device | None,
                    client: Any = None, threads: int | None = None, units_dir: str | Path | None = None,
                    progress: bool = True) -> dict[ModelSpec, BlockScores]:
    """Score every target on every image block as units, and join each target's blocks in image order.

    Parameters
    ----------
    step : str
        The unit store's step name, e.g. ``"masking"``.
    inputs : CubeInputs
        The step's checked inputs.
    zoo : Mapping
        Where each target's model comes from (see :func:`lrp_faces.compute.model_source`).
    targets : sequence of ModelSpec
        The models scored, in order.
    unit_function : callable
        ``unit_function(source, *arguments(target, block))`` -> the block's Dataset (:func:`block_scores_dataset`).
    arguments : callable
        The unit's remaining arguments for one target and block.
    block_size : int or None
        Images per unit (None: one block).
    settings : mapping
        The step's own settings (contrastive, precision, ...), added to :func:`step_settings`.
    device, client, threads, units_dir, progress
        Where units run (``device``; GPU units ask a cluster for a ``GPU`` worker), the dask client (None: here),
        torch threads per unit, where finished units are kept (None: a temporary folder, so nothing resumes), and
        whether to show a progress bar.
    """
    sources = {spec: model_source(zoo, spec) for spec in targets}
    blocks = inputs.blocks(block_size)
    units = [Unit(f"{spec.name}.{block.start}-{block.stop}", unit_function, (sources[spec], *arguments(spec, block)),
                  gpu=device is not None and device.type == "cuda")
             for spec in targets for block in blocks]
    with units_root(units_dir) as root:
        store = UnitStore(root, step, step_settings(inputs, targets, sources, settings))
        run_units(units, store, client=client, threads=threads, progress=progress)
        scores = {spec: BlockScores.concatenate([dataset_block_scores(store.read(f"{spec.name}.{block.start}-"
                                                                                 f"{block.stop}"))
                                                 for block in blocks])
                  for spec in targets}
        store.clear()  # the caller assembles the step's result from these scores
    return scores


def image_blocks(inputs: CubeInputs, block_size: int | None) -> dict[tuple[int, int], tuple]:
    """Each block's own copies of its images, fill colours and labels (a view of all images would be sent whole
    with every unit to a cluster)."""
    return {(block.start, block.stop): (inputs.images[block].clone(),
                                        None if inputs.colours(block) is None else inputs.colours(block).clone(),
                                        {task: values[block].clone() for task, values in inputs.labels.items()})
            for block in inputs.blocks(block_size)}
