"""Cross-model generalisation: every model of a cube scored on images masked by every model's relevance."""
from __future__ import annotations

import dataclasses
import inspect
import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import scipy.stats
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..attribution import check_images
from ..zoo import MODEL_DIMS, ModelSpec
from .config import DEFAULT_FRACTIONS, MaskingError, MaskingTypeError
from .curves import (_by_fraction, _check_batch_size, _curve_variables, _device, _EvalMode, _masked_scores,
                     _original_scores, aopc, check_labels)
from .perturbation import _config, _Fills, _Masker, check_relevance

__all__ = ["generalization", "relation", "RELATIONS", "MODEL_DIMS"]


CUBE_DIMS = MODEL_DIMS + ("image", "y", "x")
RELATIONS = ("same_model", "same_cell_different_seed", "different_task", "different_pretraining", "both_different")
"""How a source model relates to a target model, in the summary of :func:`generalization`."""
SCORES = ("output", "probability")
_RNG = "rng" if "rng" in inspect.signature(scipy.stats.bootstrap).parameters else "random_state"  # scipy < 1.15


def relation(source: ModelSpec, target: ModelSpec) -> str:
    """How ``target`` relates to ``source``: one of :data:`RELATIONS`."""
    same_pretraining, same_task = source.pretraining == target.pretraining, source.task == target.task
    if same_pretraining and same_task:
        return "same_model" if source.seed == target.seed else "same_cell_different_seed"
    if same_pretraining:
        return "different_task"
    return "different_pretraining" if same_task else "both_different"


def _check_cube(cube: Any) -> xr.DataArray:
    if not isinstance(cube, xr.Dataset) or "relevance" not in cube:
        raise MaskingTypeError(f"cube must be an xarray.Dataset with a 'relevance' variable, got "
                               f"{type(cube).__name__}")
    relevance = cube["relevance"]
    if set(relevance.dims) != set(CUBE_DIMS):
        raise MaskingError(f"cube.relevance must have dims {CUBE_DIMS}, got {relevance.dims}")
    return relevance.transpose(*CUBE_DIMS)


def _specs(relevance: xr.DataArray) -> list[ModelSpec]:
    return [ModelSpec(str(pretraining), str(task), int(seed)) for pretraining in relevance.pretraining.values
            for task in relevance.task.values for seed in relevance.seed.values]


def _check_finite(specs: list[ModelSpec], relevance: xr.DataArray) -> None:
    finite = np.asarray(np.isfinite(relevance).all(("image", "y", "x")).values).reshape(-1)
    bad = [str(spec) for spec, ok in zip(specs, finite) if not ok]
    if bad:
        raise MaskingError(f"relevance of {', '.join(bad[:10])} contains NaN or Inf values (an incomplete cube?)")


def _check_zoo(specs: list[ModelSpec], zoo: Mapping) -> None:
    if not isinstance(zoo, Mapping):
        raise MaskingTypeError(f"zoo must map ModelSpec to models (e.g. lrp_faces.zoo.Zoo), got {type(zoo).__name__}")
    available = set(iter(zoo))  # iterating a Zoo lists its specs without loading any model
    missing = [str(spec) for spec in specs if spec not in available]
    if missing:
        raise MaskingError(f"the cube has relevance for {len(missing)} model(s) missing from the zoo: "
                           f"{', '.join(missing[:10])}; the zoo has {', '.join(map(str, sorted(available)))}")


def _select_images(dataset: Any, relevance: xr.DataArray) -> tuple[torch.Tensor, np.ndarray]:
    for attribute in ("images", "labels", "image_ids"):
        if not hasattr(dataset, attribute):
            raise MaskingTypeError(f"dataset must have .images, .labels(task) and .image_ids (e.g. SyntheticFaces); "
                                   f"{type(dataset).__name__} has no .{attribute}")
    position = {str(image_id): index for index, image_id in enumerate(dataset.image_ids)}
    ids = [str(image_id) for image_id in relevance.image.values]
    missing = [image_id for image_id in ids if image_id not in position]
    if missing:
        raise MaskingError(f"{len(missing)} image id(s) of the cube are not in the dataset: {missing[:10]}")
    indices = np.array([position[image_id] for image_id in ids], dtype=np.int64)
    images = check_images(torch.as_tensor(dataset.images)[torch.from_numpy(indices)], "dataset images")
    if tuple(images.shape[2:]) != (relevance.sizes["y"], relevance.sizes["x"]):
        raise MaskingError(f"the dataset's images are {tuple(images.shape[2:])} px but the cube's maps are "
                           f"{(relevance.sizes['y'], relevance.sizes['x'])}")
    return images, indices


def _task_labels(dataset: Any, relevance: xr.DataArray, indices: np.ndarray) -> dict[str, torch.Tensor]:
    labels = {}
    for task in map(str, relevance.task.values):
        values = check_labels(np.asarray(dataset.labels(task))[indices], len(indices), f"dataset.labels({task!r})")
        if task in relevance.coords and relevance.coords[task].dims == ("image",):
            if not np.array_equal(np.asarray(relevance.coords[task].values), values.numpy()):
                raise MaskingError(f"the cube's {task!r} labels disagree with dataset.labels({task!r}) for the "
                                   f"same image ids")
        labels[task] = values
    return labels


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


def generalization(cube: xr.Dataset, zoo: Mapping, dataset: Any, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                   order: str = "morf", fill: str = "mean", patch: int = 1, mode: str = "remove", seed: int = 0, *,
                   fill_value: Any = None, blur_sigma: float | None = None, road_noise: float = 0.01,
                   batch_size: int | None = None, contrastive: bool = True, score: str = "output",
                   n_bootstrap: int = 1000,
                   n_permutations: int = 1000, confidence: float = 0.95, device: str | torch.device | None = None,
                   progress: bool = True) -> xr.Dataset:
    """Evaluate every model of a cube on images masked by every model's relevance, and by a random order.

    Each source map is ranked once and each masked batch is built once, then scored by every target model (all
    targets are loaded once and held in memory for the call). A target is always scored on its own task's labels:
    a gender model masked by an identity model's map is scored on gender.

    Parameters
    ----------
    cube : xarray.Dataset
        With ``relevance`` over ("pretraining", "task", "seed", "image", "y", "x") and string image ids; label
        coordinates on ``image`` named after tasks are checked against the dataset.
    zoo : Mapping[ModelSpec, nn.Module]
        e.g. :class:`~lrp_faces.zoo.Zoo`; must hold every model of the cube.
    dataset
        Has ``.images`` (N, 3, H, W), ``.labels(task)`` and ``.image_ids`` covering the cube's images.
    fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise
        See :class:`MaskingConfig`; ``order`` is ``"morf"`` or ``"lerf"``. The random source uses the same
        settings with ``order="random"``.
    batch_size : int, optional
        Masked images per forward pass (default: see :func:`curves`).
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
    progress : bool
        Show a progress bar.

    Returns
    -------
    xarray.Dataset
        Dims ``source_pretraining``, ``source_task``, ``source_seed``, ``target_pretraining``, ``target_task``,
        ``target_seed``, ``fraction``, ``image`` and ``relation``. Per source and target: curves (``correct``,
        ``probability``, ``output``, ``accuracy``), AOPCs (``aopc_output``, ``aopc_probability`` per image and
        ``mean_*``), ``accuracy_auc``, ``aopc`` (mean AOPC of ``score``) with ``aopc_ci_low``/``_high``,
        ``generalization_index`` G(s->t) = (AOPC(s->t) - AOPC(random->t)) / (AOPC(t->t) - AOPC(random->t)) with
        CIs, ``asymmetry`` G(s->t) - G(t->s) with ``asymmetry_p_value``, and ``pair_relation``. The random source
        is in ``random_*`` variables over the target dims; the unmasked scores in ``unmasked_*``; ``summary_*``
        variables average G, AOPC and ``|asymmetry|`` over the pairs of each relation (:data:`RELATIONS`).
    """
    config = _config(fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise)
    if config.order == "random":
        raise MaskingError("generalization compares maps with a random order: order must be 'morf' or 'lerf'")
    if not any(value > 0 for value in config.fractions):
        raise MaskingError(f"fractions must include at least one value > 0 for AOPC, got {list(config.fractions)}")
    if score not in SCORES:
        raise MaskingError(f"score must be one of {SCORES}, got {score!r}")
    if not 0 < confidence < 1:
        raise MaskingError(f"confidence must be in (0, 1), got {confidence!r}")
    relevance = _check_cube(cube)
    specs = _specs(relevance)
    _check_zoo(specs, zoo)
    _check_finite(specs, relevance)
    images, indices = _select_images(dataset, relevance)
    task_labels = _task_labels(dataset, relevance, indices)
    labels = [task_labels[spec.task] for spec in specs]
    fills = _Fills(images, config)
    models: list[nn.Module] = []
    for spec in specs:
        model = zoo[spec]
        models.append(model.to(device) if device is not None else model)
    batch_size = _check_batch_size(batch_size, images, _device(models[0], images.device))
    count, sources = len(images), len(specs)
    random_config = dataclasses.replace(config, order="random")
    with _EvalMode(models):
        unmasked = np.stack([_original_scores(model, images, label, batch_size, contrastive)
                             for model, label in zip(models, labels)])  # (T, 3, N)
        scores = np.empty((sources + 1, sources, 3, len(config.fractions), count))
        with tqdm(total=sources + 1, desc="generalization", unit="source", disable=not progress) as bar:
            for source in range(sources + 1):
                if source < sources:
                    spec = specs[source]
                    maps = relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed)
                    masker = _Masker(images, check_relevance(maps, images, f"relevance of {spec}"), config, fills)
                    bar.set_postfix(source=str(spec))
                else:
                    masker = _Masker(images, torch.zeros(images.shape[0], *images.shape[2:]), random_config, fills)
                    bar.set_postfix(source="random")
                unique, masked = _masked_scores(masker, models, labels, batch_size, contrastive)
                for target in range(sources):
                    scores[source, target] = _by_fraction(masker.counts, unique, masked[target], unmasked[target])
                bar.update()
    return _assemble(scores, unmasked, specs, relevance, config, score, contrastive, n_bootstrap, n_permutations,
                     confidence)


def _assemble(scores: np.ndarray, unmasked: np.ndarray, specs: list[ModelSpec], relevance: xr.DataArray,
              config, score: str, contrastive: bool, n_bootstrap: int, n_permutations: int,
              confidence: float) -> xr.Dataset:
    """The result dataset from scores (S + 1, S, 3, F, N), the last source being random, and unmasked (S, 3, N)."""
    sources = len(specs)
    grid = tuple(relevance.sizes[dim] for dim in MODEL_DIMS)
    source_dims = tuple(f"source_{dim}" for dim in MODEL_DIMS)
    target_dims = tuple(f"target_{dim}" for dim in MODEL_DIMS)
    pair_dims = source_dims + target_dims
    fractions = config.fractions
    pair_scores, random_scores = scores[:sources], scores[sources]
    variables = {}
    for name, (dims, values) in _curve_variables(pair_scores, unmasked[None], fractions, ("source", "target")).items():
        variables[name] = (pair_dims + dims[2:], values.reshape(grid + grid + values.shape[2:]))
    for name, (dims, values) in _curve_variables(random_scores, unmasked, fractions, ("target",)).items():
        variables[f"random_{name}"] = (target_dims + dims[1:], values.reshape(grid + values.shape[1:]))
    for index, name in enumerate(("correct", "probability", "output")):
        values = unmasked[:, index].reshape(grid + unmasked.shape[2:])
        variables[f"unmasked_{name}"] = (target_dims + ("image",), values.astype(bool) if index == 0 else values)
    variables["unmasked_accuracy"] = (target_dims, unmasked[:, 0].mean(-1).reshape(grid))

    channel = 2 if score == "output" else 1
    originals = np.broadcast_to(unmasked[None, :, channel], pair_scores.shape[:2] + unmasked.shape[-1:])
    per_image = aopc(originals, pair_scores[:, :, channel], fractions)  # (S, T, N)
    random_per_image = aopc(unmasked[:, channel], random_scores[:, channel], fractions)  # (T, N)
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

    coords = {"fraction": list(fractions), "image": [str(value) for value in relevance.image.values],
              "relation": list(RELATIONS)}
    for dim in MODEL_DIMS:
        coords[f"source_{dim}"] = coords[f"target_{dim}"] = relevance[dim].values
    attrs = {**config.attrs(), "score": score, "contrastive": int(contrastive), "n_bootstrap": n_bootstrap,
             "n_permutations": n_permutations, "confidence": confidence,
             "random_source": "the same settings with order='random'",
             "aopc": "mean over fractions > 0 of f(original) - f(masked), on the target's own task",
             "generalization_index": "(AOPC(s->t) - AOPC(random->t)) / (AOPC(t->t) - AOPC(random->t))"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
