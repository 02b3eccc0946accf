"""Cross-model generalisation: every model of a cube scored on images masked by every model's relevance.

The work splits into units, one per (target model, image block): :func:`generalization_block` scores one target on
one block of images masked by every source's maps and by the random order, with only that target in memory.
:func:`assemble_generalization` builds the result from every target's scores over all images, and runs the
bootstraps and permutation tests over all images. :func:`generalization` runs the units one after another; an
executor can run the same units elsewhere and get the same numbers::

    inputs = generalization_inputs(cube, zoo, dataset, fill="blur")
    scores = []
    for target in inputs.specs:
        model = zoo[target]
        rows = inputs.batch_size(device=device)  # the same rows per forward pass in every unit
        scores.append(BlockScores.concatenate([
            generalization_block(model, inputs.images[block], [inputs.maps(source, block) for source in inputs.specs],
                                 inputs.labels[target.task][block], inputs.config,
                                 image_index=range(block.start, block.stop), fill_colours=inputs.colours(block),
                                 batch_size=rows, device=device)
            for block in inputs.blocks(block_size)]))
    result = assemble_generalization(scores, inputs)
"""
from __future__ import annotations

import inspect
import os
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import scipy.stats
import torch
import xarray as xr
from torch import nn

from ..attribution import check_images
from ..compute import unit_model
from ..devices import resolve_device
from ..zoo import MODEL_DIMS, ModelSpec
from ._engine import BlockScores, check_precision, score_block
from ._inputs import DEFAULT_BLOCK_SIZE, CubeInputs, check_finite, check_labels, cube_inputs
from ._units import block_scores_dataset, image_blocks, run_block_units
from .config import MaskingConfig, MaskingError, masking_config
from .curves import aopc, aopc_definition, check_aopc_fractions, curve_variables

__all__ = ["generalization", "generalization_inputs", "generalization_block", "generalization_unit",
           "assemble_generalization", "relation",
           "RELATIONS", "MODEL_DIMS"]


RELATIONS = ("same_model", "same_cell_different_seed", "different_task", "different_pretraining", "both_different")
"""How a source model relates to a target model, in the summary of :func:`generalization`."""
SCORES = ("output", "probability")
"""The AOPCs the generalisation index can be built from."""
_RNG = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"  # scipy < 1.15


def relation(source: ModelSpec, target: ModelSpec) -> str:
    """How ``target`` relates to ``source``: one of :data:`RELATIONS`."""
    same_pretraining, same_task = source.pretraining == target.pretraining, source.task == target.task
    if same_pretraining and same_task:
        return "same_model" if source.seed == target.seed else "same_cell_different_seed"
    if same_pretraining:
        return "different_task"
    return "different_pretraining" if same_task else "both_different"


def _derived(means: np.ndarray, sources: int, groups: list[np.ndarray]) -> np.ndarray:
    """Everything bootstrapped, from mean AOPCs (K, ...) ordered as S x S pairs, then S random sources.

    Returns (M, ...): the K mean AOPCs, the S x S generalisation indices, then the mean index of each relation group
    (see :func:`_split`).
    """
    pairs = means[:sources * sources].reshape((sources, sources) + means.shape[1:])
    random = means[sources * sources:]
    own = pairs[np.arange(sources), np.arange(sources)]
    with np.errstate(divide="ignore", invalid="ignore"):
        index = ((pairs - random[None]) / (own - random)[None]).reshape((sources * sources,) + means.shape[1:])
    group_means = [index[group].mean(0) if group.size else np.full(means.shape[1:], np.nan) for group in groups]
    return np.concatenate([means, index, np.stack(group_means)], axis=0)


def _split(values: np.ndarray, sources: int) -> dict[str, np.ndarray]:
    """Name the parts of :func:`_derived`'s output."""
    sizes = {"aopc": sources * sources, "random_aopc": sources, "generalization_index": sources * sources,
             "summary_generalization_index": len(RELATIONS)}
    parts, start = {}, 0
    for name, size in sizes.items():
        parts[name] = values[start:start + size]
        start += size
    return parts


def _bootstrap(per_image: np.ndarray, sources: int, groups: list[np.ndarray], n_bootstrap: int, confidence: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bootstrap CIs over images of :func:`_derived`, with the same resamples for every quantity."""
    size = per_image.shape[0] + sources * sources + len(groups)
    if per_image.shape[-1] < 2 or n_bootstrap < 1:
        return np.full(size, np.nan), np.full(size, np.nan)

    def statistic(sample, axis=-1):
        return _derived(sample.mean(axis), sources, groups)

    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # a quantity that is NaN in every resample (an empty relation) gets a NaN CI, as documented; scipy's warning
        # about it names the BCa method, which is not the one used here
        warnings.simplefilter("ignore", scipy.stats.DegenerateDataWarning)
        result = scipy.stats.bootstrap((per_image,), statistic, n_resamples=n_bootstrap, batch=min(n_bootstrap, 100),
                                       vectorized=True, axis=-1, confidence_level=confidence, method="percentile",
                                       **{_RNG: np.random.default_rng((seed, 3))})
    return result.confidence_interval.low, result.confidence_interval.high


def _asymmetry_test(per_image_index: np.ndarray, n_permutations: int, seed: int) -> np.ndarray:
    """Two-sided paired permutation p-values (S, S) of mean_i g_i(s->t) - mean_i g_i(t->s), swapping per image."""
    forward, backward = per_image_index, per_image_index.transpose(1, 0, 2)
    if forward.shape[-1] < 2 or n_permutations < 1:
        return np.full(forward.shape[:2], np.nan)

    def statistic(x, y, axis=-1):
        return x.mean(axis) - y.mean(axis)

    with np.errstate(divide="ignore", invalid="ignore"):
        result = scipy.stats.permutation_test((forward, backward), statistic, permutation_type="samples",
                                              vectorized=True, n_resamples=n_permutations, batch=100, axis=-1,
                                              alternative="two-sided", **{_RNG: np.random.default_rng((seed, 4))})
    pvalue = np.asarray(result.pvalue, dtype=np.float64)
    pvalue[~np.isfinite(result.statistic)] = np.nan
    return pvalue


def _statistics(per_image: np.ndarray, random_per_image: np.ndarray, relations: np.ndarray, n_bootstrap: int,
                n_permutations: int, confidence: float, seed: int) -> dict[str, np.ndarray]:
    """AOPC, G, asymmetry and their CIs and tests from per-image AOPCs (S, S, N) and (S, N), flat over pairs."""
    sources = len(random_per_image)
    groups = [np.flatnonzero(relations.reshape(-1) == relation) for relation in RELATIONS]
    stacked = np.concatenate([per_image.reshape(sources * sources, -1), random_per_image])
    statistics = {}
    low, high = _bootstrap(stacked, sources, groups, n_bootstrap, confidence, seed)
    for suffix, values in (("", _derived(stacked.mean(-1), sources, groups)), ("_ci_low", low), ("_ci_high", high)):
        statistics.update({f"{name}{suffix}": part for name, part in _split(values, sources).items()})
    index = statistics["generalization_index"].reshape(sources, sources)
    asymmetry = index - index.T
    # G(s->t) is the mean over images of g_i(s->t) = (a_i(s->t) - r_i(t)) / (mean a(t->t) - mean r(t))
    denominator = np.diag(per_image.mean(-1)) - random_per_image.mean(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        per_image_index = (per_image - random_per_image[None]) / denominator[None, :, None]
    statistics["asymmetry"] = asymmetry.reshape(-1)
    statistics["asymmetry_p_value"] = _asymmetry_test(per_image_index, n_permutations, seed).reshape(-1)
    flat_aopc = statistics["aopc"]
    statistics["summary_aopc"] = np.array([flat_aopc[group].mean() if group.size else np.nan for group in groups])
    statistics["summary_abs_asymmetry"] = np.array([np.abs(asymmetry.reshape(-1)[group]).mean() if group.size
                                                    else np.nan for group in groups])
    statistics["summary_pairs"] = np.array([group.size for group in groups])
    return statistics


def generalization_inputs(cube: xr.Dataset, zoo: Mapping, dataset: Any, config: MaskingConfig | None = None,
                          **overrides: Any) -> CubeInputs:
    """Check the inputs of :func:`generalization` and gather them by image position (its units' inputs).

    Every model of the cube's grid is a source and a target; the zoo must hold them all and no map may be NaN.
    """
    config = masking_config(config, overrides)
    if config.order == "random":
        raise MaskingError("generalization compares maps with a random order: order must be 'morf' or 'lerf'")
    check_aopc_fractions(config.fractions, config.mode)
    inputs = cube_inputs(cube, zoo, dataset, config)
    check_finite(list(inputs.specs), inputs.relevance)
    return inputs


def generalization_block(target_model: nn.Module, images: torch.Tensor, maps: Sequence[Any], labels: Any,
                         config: MaskingConfig, *, image_index: Sequence[int],
                         fill_colours: torch.Tensor | None = None, batch_size: int | None = None,
                         contrastive: bool = True, device: str | torch.device | None = None,
                         precision: str = "float32") -> BlockScores:
    """Score one target model on one block of images masked by every source's maps, then by the random order.

    The unit of work of :func:`generalization`: it needs one model in memory, and its numbers depend only on the
    block's own images (any split into blocks gives the same result).

    Parameters
    ----------
    target_model : nn.Module
        Moved to ``device`` (in place) and put in evaluation mode for the call.
    images : tensor (n, 3, H, W)
        The block's images.
    maps : sequence of S maps (n, H, W), or an array (S, n, H, W)
        Each source model's relevance of these images (tensors, arrays or DataArrays, read one source at a time).
    labels : array-like of int (n,)
        The classes of the images in the target's task.
    config : MaskingConfig
        ``order`` must be ``"morf"`` or ``"lerf"``; the random source uses the same settings with
        ``order="random"``.
    image_index, fill_colours, batch_size, contrastive, device, precision
        As for :func:`curves_block`; every unit of a step takes the same ``batch_size``
        (:meth:`CubeInputs.batch_size`).

    Returns
    -------
    BlockScores
        ``unmasked`` (3, n) and ``masked`` (S + 1, 3, F, n): the sources in order, then the random order.
    """
    if config.order == "random":
        raise MaskingError("generalization compares maps with a random order: order must be 'morf' or 'lerf'")
    images = check_images(images)
    labels = check_labels(labels, len(images))
    return score_block(target_model, images, list(maps) + [None], labels, config, image_index=image_index,
                       fill_colours=fill_colours, batch_size=batch_size, contrastive=contrastive, device=device,
                       precision=precision)


def generalization(cube: xr.Dataset, zoo: Mapping, dataset: Any, config: MaskingConfig | None = None, *,
                   batch_size: int | None = None, block_size: int | None = DEFAULT_BLOCK_SIZE,
                   contrastive: bool = True, score: str = "output", n_bootstrap: int = 1000,
                   n_permutations: int = 1000, confidence: float = 0.95, device: str | torch.device | None = None,
                   precision: str = "float32", client: Any = None, threads: int | None = None,
                   units_dir: str | os.PathLike | None = None, progress: bool = True, **overrides: Any) -> xr.Dataset:
    """Evaluate every model of a cube on images masked by every model's relevance, and by a random order.

    Targets are loaded one at a time; for each, the images go in blocks of ``block_size`` (units of work, see the
    module), each masked by every source's maps and scored by the target. A target is always scored on its own
    task's labels: a gender model masked by an identity model's map is scored on gender.

    Parameters
    ----------
    cube : xarray.Dataset
        With ``relevance`` over ("pretraining", "task", "seed", "image", "y", "x") and string image ids; label
        coordinates on ``image`` named after tasks are checked against the dataset.
    zoo : Mapping[ModelSpec, nn.Module]
        e.g. :class:`~lrp_faces.zoo.Zoo`; must hold every model of the cube.
    dataset
        Any face data (see :func:`lrp_faces.faces.as_face_data`) holding the cube's images (matched by image id).
        Its labels are mapped to each task's models' class numbering by class name where both record names
        (:func:`lrp_faces.zoo.scored_labels`); attribute ``class_names`` records the classes' names per task.
    config : MaskingConfig, optional
        The masking settings; ``order`` is ``"morf"`` or ``"lerf"``. The random source uses the same settings with
        ``order="random"``.
    batch_size : int, optional
        Masked images per forward pass (default: see :func:`curves`).
    block_size : int or None
        Images per unit of work (None: all at once); bounds memory, and the result does not depend on it.
    contrastive : bool
        Explained output z_c - mean_{j != c} z_j (default) or the plain logit.
    score : {"output", "probability"}
        The AOPC the generalisation index is built from.
    n_bootstrap, confidence
        Percentile bootstrap over images (the same resamples for every quantity) for AOPC and G.
    n_permutations : int
        Resamples of the paired permutation test of each asymmetry (exact when 2^N is smaller).
    device : str or torch.device, optional
        Where the models run (default: where they are loaded).
    precision : {"float32", "bfloat16"}
        Number format of the forward passes; recorded in the attributes.
    client : dask.distributed.Client, optional
        Run the units on this cluster (see :func:`lrp_faces.compute.cluster_client`); None runs them here.
    threads : int, optional
        Torch threads per unit (the same number everywhere gives bit-identical results in-process and on a cluster).
    units_dir : str or PathLike, optional
        Where finished units are kept, so that a killed run resumes (``lrp-faces`` uses ``OUT/.units``); None keeps
        them in a temporary folder for the call.
    progress : bool
        Show a progress bar over the units.
    **overrides
        Fields of :class:`MaskingConfig` that replace the config's, e.g. ``fill="blur"``; keyword-only.

    Returns
    -------
    xarray.Dataset
        Dims ``source_pretraining``, ``source_task``, ``source_seed``, ``target_pretraining``, ``target_task``,
        ``target_seed``, ``fraction``, ``image`` and ``relation``. Per source and target: curves (``correct``,
        ``probability``, ``output``, ``accuracy``), AOPCs (``aopc_output``, ``aopc_probability`` per image and
        ``mean_*``; see :func:`aopc`, for ``remove`` and ``keep``), ``accuracy_auc``, ``aopc`` (mean AOPC of
        ``score``) with ``aopc_ci_low``/``_high``, ``generalization_index``
        G(s->t) = (AOPC(s->t) - AOPC(random->t)) / (AOPC(t->t) - AOPC(random->t)) with CIs, ``asymmetry``
        G(s->t) - G(t->s) with ``asymmetry_p_value``, and ``pair_relation``. The random source is in ``random_*``
        variables over the target dims; the unmasked scores in ``unmasked_*``; ``summary_*`` variables average G,
        AOPC and ``|asymmetry|`` over the pairs of each relation (:data:`RELATIONS`).
    """
    if score not in SCORES:
        raise MaskingError(f"score must be one of {SCORES}, got {score!r}")
    if not 0 < confidence < 1:
        raise MaskingError(f"confidence must be in (0, 1), got {confidence!r}")
    precision = check_precision(precision)
    inputs = generalization_inputs(cube, zoo, dataset, config, **overrides)
    device = None if device is None else resolve_device(device)
    rows = inputs.batch_size(batch_size, device or "cpu")
    blocks = image_blocks(inputs, block_size)
    maps = {(block.start, block.stop): [inputs.maps(source, block) for source in inputs.specs]
            for block in inputs.blocks(block_size)}

    def arguments(target: ModelSpec, block: slice) -> tuple:
        images, colours, labels = blocks[(block.start, block.stop)]
        return (images, maps[(block.start, block.stop)], labels[target.task], inputs.config, block.start, colours,
                rows, contrastive, device, precision)

    scores = run_block_units("masking", inputs, zoo, inputs.specs, generalization_unit, arguments, block_size,
                             settings={"unit": "generalization", "contrastive": contrastive, "precision": precision,
                                       "rows": rows, "block_size": block_size},
                             device=device, client=client, threads=threads, units_dir=units_dir, progress=progress)
    return assemble_generalization([scores[spec] for spec in inputs.specs], inputs, score=score,
                                   contrastive=contrastive, n_bootstrap=n_bootstrap, n_permutations=n_permutations,
                                   confidence=confidence, precision=precision)


def generalization_unit(source: Any, images: torch.Tensor, maps: Sequence[Any], labels: torch.Tensor,
                        config: MaskingConfig, start: int, fill_colours: torch.Tensor | None, batch_size: int,
                        contrastive: bool, device: torch.device | None, precision: str) -> xr.Dataset:
    """One unit of :func:`generalization` as :mod:`lrp_faces.compute` runs it: :func:`generalization_block` for the
    target model of ``source`` (a model, or a zoo entry loaded here once per process) on images ``start`` to
    ``start + n - 1``, returned as a Dataset (``unmasked`` (score, image), ``masked`` (source, score, fraction,
    image))."""
    model = unit_model(source, device)
    scores = generalization_block(model, images, maps, labels, config, image_index=range(start, start + len(images)),
                                  fill_colours=fill_colours, batch_size=batch_size, contrastive=contrastive,
                                  device=device, precision=precision)
    return block_scores_dataset(scores)


def assemble_generalization(scores: Sequence[BlockScores], inputs: CubeInputs, *, score: str = "output",
                            contrastive: bool = True, n_bootstrap: int = 1000, n_permutations: int = 1000,
                            confidence: float = 0.95, precision: str = "float32") -> xr.Dataset:
    """The :func:`generalization` dataset from every target's scores over all images, with its statistics.

    Parameters
    ----------
    scores : sequence of BlockScores
        One per target, in the order of ``inputs.specs``: its :func:`generalization_block` results joined over
        every block in image order (``masked`` (S + 1, 3, F, N), ``unmasked`` (3, N)).
    inputs : CubeInputs
        From :func:`generalization_inputs`.
    score, contrastive, n_bootstrap, n_permutations, confidence, precision
        As for :func:`generalization`; the bootstraps and permutation tests run here, over all images.
    """
    if score not in SCORES:
        raise MaskingError(f"score must be one of {SCORES}, got {score!r}")
    if not 0 < confidence < 1:
        raise MaskingError(f"confidence must be in (0, 1), got {confidence!r}")
    specs, config, relevance = list(inputs.specs), inputs.config, inputs.relevance
    sources, count = len(specs), len(inputs.images)
    expected = (sources + 1, 3, len(config.fractions), count)
    if len(scores) != sources or any(part.masked.shape != expected or part.unmasked.shape != (3, count)
                                     for part in scores):
        raise MaskingError(f"scores must hold one BlockScores per target ({sources}), each with masked of shape "
                           f"{expected} and unmasked of shape {(3, count)}")
    masked = np.stack([part.masked for part in scores], axis=1)  # (S + 1, T, 3, F, N)
    unmasked = np.stack([part.unmasked for part in scores])  # (T, 3, N)
    grid = tuple(relevance.sizes[dim] for dim in MODEL_DIMS)
    source_dims = tuple(f"source_{dim}" for dim in MODEL_DIMS)
    target_dims = tuple(f"target_{dim}" for dim in MODEL_DIMS)
    pair_dims = source_dims + target_dims
    fractions, mode = config.fractions, config.mode
    pair_scores, random_scores = masked[:sources], masked[sources]
    variables = {}
    for name, (dims, values) in curve_variables(pair_scores, unmasked[None], fractions, mode,
                                                ("source", "target")).items():
        variables[name] = (pair_dims + dims[2:], values.reshape(grid + grid + values.shape[2:]))
    for name, (dims, values) in curve_variables(random_scores, unmasked, fractions, mode, ("target",)).items():
        variables[f"random_{name}"] = (target_dims + dims[1:], values.reshape(grid + values.shape[1:]))
    for index, name in enumerate(("correct", "probability", "output")):
        values = unmasked[:, index].reshape(grid + unmasked.shape[2:])
        variables[f"unmasked_{name}"] = (target_dims + ("image",), values.astype(bool) if index == 0 else values)
    variables["unmasked_accuracy"] = (target_dims, unmasked[:, 0].mean(-1).reshape(grid))

    channel = 2 if score == "output" else 1
    originals = np.broadcast_to(unmasked[None, :, channel], pair_scores.shape[:2] + unmasked.shape[-1:])
    per_image = aopc(originals, pair_scores[:, :, channel], fractions, mode)  # (S, T, N)
    random_per_image = aopc(unmasked[:, channel], random_scores[:, channel], fractions, mode)  # (T, N)
    relations = np.array([[relation(source, target) for target in specs] for source in specs])
    variables["pair_relation"] = (pair_dims, relations.reshape(grid + grid))
    for name, values in _statistics(per_image, random_per_image, relations, n_bootstrap, n_permutations,
                                    confidence, config.seed).items():
        if name.startswith("summary_"):
            variables[name] = (("relation",), values)
        elif name.startswith("random_"):
            variables[name] = (target_dims, values.reshape(grid))
        else:
            variables[name] = (pair_dims, values.reshape(grid + grid))

    coords = {"fraction": list(fractions), "image": inputs.image_ids, "relation": list(RELATIONS)}
    for dim in MODEL_DIMS:
        coords[f"source_{dim}"] = coords[f"target_{dim}"] = relevance[dim].values
    attrs = {**config.attrs(), "score": score, "contrastive": int(contrastive), "n_bootstrap": n_bootstrap,
             "n_permutations": n_permutations, "confidence": confidence, "precision": check_precision(precision),
             "random_source": "the same settings with order='random'",
             "aopc": f"{aopc_definition(mode)}; on the target's own task",
             "generalization_index": "(AOPC(s->t) - AOPC(random->t)) / (AOPC(t->t) - AOPC(random->t))",
             **inputs.class_attrs()}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
