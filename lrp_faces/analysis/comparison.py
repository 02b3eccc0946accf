"""Attribution methods compared on the same models and images: ground-truth metrics and self-masking AOPC."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from .. import methods as method_registry
from ..attribution import check_images
from ..compute import (Unit, UnitStore, model_source, run_units, settings_digest, source_version, unit_model,
                       units_root)
from ..cube import CubeNonFiniteError, explain_block
from ..devices import DeviceError, resolve_device
from ..errors import LRPFacesError
from ..faces import DatasetError
from ..files import canonical_json
from ..masking import DEFAULT_BLOCK_SIZE, MaskingConfig, aopc, curves_block, fill_colours, rows_per_pass
from ..methods import Method
from ..zoo import ModelSpec, scored_labels
from ._common import (AnalysisError, AnalysisTypeError, check_confidence, check_count, face_data,
                      ignore_empty_means)
from ._statistics import bootstrap_mean
from .regions import mass_and_rank_accuracy, task_masks

__all__ = ["method_comparison", "method_unit", "DEFAULT_METHODS", "COMPARISON_METRICS", "COMPARISON_FRACTIONS",
           "METHOD_DIM"]

METHOD_DIM = "attribution_method"
"""The dim of :func:`method_comparison`'s result that holds the method names (``sel(method=...)`` would be taken by
xarray's own ``method`` keyword, hence the longer name)."""

DEFAULT_METHODS = ("epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "gradient",
                   "gradient_x_input", "smoothgrad", "integrated_gradients", "random")
"""The methods :func:`method_comparison` compares by default: the LRP composites and the baselines."""
COMPARISON_METRICS = ("relevance_mass_accuracy", "relevance_rank_accuracy", "aopc_output", "aopc_probability")
COMPARISON_FRACTIONS = tuple(round(0.1 * step, 1) for step in range(11))
"""Masked fractions for the AOPC of :func:`method_comparison`: 0, 0.1, ..., 1 (half the masking default's steps)."""


def _resolve_methods(methods: Any, method_params: Any) -> list[Method]:
    if isinstance(methods, (str, Method)):
        methods = [methods]
    if not isinstance(methods, Sequence) or not methods:
        raise AnalysisTypeError(f"methods must be a non-empty sequence of method names (see "
                                f"lrp_faces.methods.names()) or Method instances, got {methods!r}")
    method_params = {} if method_params is None else method_params
    if not isinstance(method_params, Mapping) or not all(isinstance(value, Mapping)
                                                         for value in method_params.values()):
        raise AnalysisTypeError(f"method_params must map method names to parameter dicts, e.g. "
                                f"{{'smoothgrad': {{'n_samples': 8}}}}, got {method_params!r}")
    names = [method.name if isinstance(method, Method) else method for method in methods]
    unknown = [name for name in names if not isinstance(name, str) or name not in method_registry.names()]
    if unknown:
        raise AnalysisError(f"unknown method(s) {unknown}; known methods: {', '.join(method_registry.names())}")
    if len(set(names)) != len(names):
        raise AnalysisError(f"methods must be distinct, got {names}")
    stray = sorted(set(method_params) - set(names))
    if stray:
        raise AnalysisError(f"method_params names method(s) {stray} that are not in methods {names}")
    resolved = []
    for method, name in zip(methods, names):
        if isinstance(method, Method):
            if name in method_params:
                raise AnalysisError(f"method {name!r} is a Method instance with its own parameters; do not also "
                                    "give it method_params")
            resolved.append(method)
        else:
            try:
                resolved.append(method_registry.get(name, **method_params.get(name, {})))
            except LRPFacesError:
                raise
            except (ValueError, TypeError) as error:  # the method's own checks of its parameters
                raise AnalysisError(f"method_params[{name!r}]: {error}") from None
    return resolved


def _resolve_models(zoo: Any, models: Any) -> list[ModelSpec]:
    if not isinstance(zoo, Mapping):
        raise AnalysisTypeError(f"zoo must map ModelSpec to models (e.g. lrp_faces.zoo.Zoo), got "
                                f"{type(zoo).__name__}")
    available = sorted(iter(zoo))  # a Zoo lists its specs without loading a model
    if models is None:
        specs = available
    else:
        specs = list(models)
        odd = [spec for spec in specs if not isinstance(spec, ModelSpec)]
        if odd:
            raise AnalysisTypeError(f"models must be ModelSpec of the zoo, got {odd[0]!r}")
        missing = [str(spec) for spec in specs if spec not in zoo]
        if missing:
            raise AnalysisError(f"models {missing} are not in the zoo, which has {[str(s) for s in available]}")
    if not specs:
        raise AnalysisError("there are no models to compare the methods on (empty zoo or models)")
    return specs


def method_comparison(zoo: Mapping, dataset: Any, methods: Sequence[str | Method] = DEFAULT_METHODS, *,
                      method_params: Mapping[str, Mapping[str, Any]] | None = None, masks: Any = None,
                      models: Sequence[ModelSpec] | None = None,
                      fractions: Sequence[float] = COMPARISON_FRACTIONS, order: str = "morf", fill: str = "mean",
                      patch: int = 1, batch_size: int = 16, masking_batch_size: int | None = None,
                      contrastive: bool = True, n_bootstrap: int = 1000, confidence: float = 0.95, seed: int = 0,
                      device: str | torch.device | None = None, block_size: int | None = DEFAULT_BLOCK_SIZE,
                      client: Any = None, threads: int | None = None, units_dir: str | os.PathLike | None = None,
                      progress: bool = False) -> xr.Dataset:
    """Compare attribution methods on the same models and images: ground-truth metrics and self-masking AOPC.

    For every model and method, the maps of the model's true classes are computed with
    :func:`lrp_faces.attribute`, scored against the model's task's ground truth (:func:`ground_truth`) and used to
    mask the images for the same model (:func:`lrp_faces.masking.curves_block`). The work splits into units of one
    method, model and block of images (:func:`method_unit`), run here or on a dask cluster; bootstraps run after
    all units, over all images, so the result does not depend on the split. Models are loaded one at a time. The cost
    is about (1 + steps of the method + masked fractions) forward passes per image, model and method; to keep it
    small on a CPU, pass ``dataset.subset(...)``, fewer ``models``, fewer ``fractions`` or cheaper
    ``method_params`` (e.g. ``{"smoothgrad": {"n_samples": 8}, "integrated_gradients": {"steps": 16}}``).

    Parameters
    ----------
    zoo : Mapping[ModelSpec, nn.Module]
        e.g. :class:`~lrp_faces.zoo.Zoo`.
    dataset
        Any face data (see :func:`lrp_faces.faces.as_face_data`). Its labels are mapped to each task's models'
        class numbering by class name where both record names (:func:`lrp_faces.zoo.scored_labels`).
    methods : sequence of str or Method
        Names from :func:`lrp_faces.methods.names` or Method instances; default :data:`DEFAULT_METHODS`.
    method_params : mapping, optional
        Parameters per method name, e.g. ``{"smoothgrad": {"n_samples": 8}}``.
    masks : optional
        Ground truth as for :func:`ground_truth`; default ``dataset`` itself if it has ``task_mask(task)``.
        Without ground truth the ground-truth metrics are NaN.
    models : sequence of ModelSpec, optional
        The models to use (default: all of the zoo).
    fractions, order, fill, patch
        Masking settings (see :class:`lrp_faces.masking.MaskingConfig`); ``seed`` seeds random fills.
    batch_size, masking_batch_size : int
        Images per attribution pass, and masked images per forward pass (default: see :func:`curves`).
    contrastive : bool
        Explain and score ``z_c - mean_{j != c} z_j`` (default) instead of the logit.
    n_bootstrap, confidence, seed
        Percentile bootstrap over images of the per-image mean over models.
    device : str or torch.device, optional
        Where the models run (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``); default: where each model is.
        Batches of images move there; results come back to the CPU.
    block_size : int or None
        Images per unit of work, rounded up to a multiple of ``batch_size`` (None: all images in one unit).
    client, threads, units_dir
        Where the units run: a ``dask.distributed.Client`` (None: in this process, one after another), torch
        threads per unit, and a folder that keeps finished units so that an interrupted call resumes (None: a
        temporary one); see :func:`lrp_faces.compute.run_units`.
    progress : bool
        Show a progress bar over the units.

    Returns
    -------
    xarray.Dataset
        ``value`` (attribution_method, model, image, metric) with metric in :data:`COMPARISON_METRICS`; ``mean``,
        ``ci_low``, ``ci_high`` (attribution_method, metric): the mean over images of the per-image mean over models,
        with bootstrap CIs; ``model_mean`` (attribution_method, model, metric). Model ids
        ``"pretraining/task/seed"`` with ``pretraining``, ``task``, ``seed`` coordinates.
        ``result[["mean", "ci_low", "ci_high"]].to_dataframe()`` is the summary table,
        ``result.value.to_dataframe()`` the per-image one. Select a method with
        ``result.sel(attribution_method="gradient")`` (the dim is not called ``method``, which is a keyword of
        xarray's ``sel``).

    Raises
    ------
    AnalysisError
        Unknown or repeated methods, parameters for methods not compared, models outside the zoo, masks that do
        not fit, NaN maps, a data set whose classes a model does not know.
    AnalysisTypeError
        ``dataset`` is not face data.
    """
    resolved = _resolve_methods(methods, method_params)
    specs = _resolve_models(zoo, models)
    n_bootstrap, confidence = check_count(n_bootstrap, "n_bootstrap"), check_confidence(confidence)
    seed = check_count(seed, "seed")
    try:
        device = None if device is None else resolve_device(device)
    except DeviceError as error:
        raise AnalysisError(f"device: {error}") from None
    dataset = face_data(dataset)
    count = len(dataset)
    if count == 0:
        raise AnalysisError("dataset is empty: there are no images to compare the methods on")
    try:
        scored = scored_labels(zoo, specs, dataset)
        images = check_images(dataset.load(0, count), "dataset images")
    except DatasetError as error:  # no usable labels, or a model's classes and the data set's disagree
        raise AnalysisError(str(error)) from error
    config = MaskingConfig(fractions=tuple(fractions), order=order, fill=fill, patch=patch, seed=seed)
    ids = dataset.image_ids
    shape = tuple(int(side) for side in images.shape[2:])
    tasks = sorted({spec.task for spec in specs})
    if masks is None and callable(getattr(dataset, "task_mask", None)):
        masks = dataset
    truth = None if masks is None else task_masks(masks, tasks, ids, shape)
    rows = rows_per_pass(masking_batch_size, images.shape, device or torch.device("cpu"), count, config)
    colours = fill_colours(images, config)
    step = count if block_size is None else batch_size * -(-check_count(block_size, "block_size", low=1)
                                                           // batch_size)
    blocks = [slice(start, min(start + step, count)) for start in range(0, count, step)]
    sources = {spec: model_source(zoo, spec) for spec in specs}

    def unit(method: Method, spec: ModelSpec, block: slice) -> Unit:
        task_truth = None if truth is None else truth[spec.task]
        if task_truth is not None and task_truth.ndim == 3:
            task_truth = task_truth[block]
        return Unit(_unit_key(method, spec, block), method_unit,
                    (sources[spec], method, images[block].clone(), scored[spec.task].labels[block].copy(),
                     None if task_truth is None else np.array(task_truth), block.start, config,
                     None if colours is None else colours[block].clone(), rows, batch_size, contrastive, device, spec),
                    gpu=device is not None and device.type == "cuda")

    units = [unit(method, spec, block) for spec in specs for method in resolved for block in blocks]
    settings = {"methods": [[method.name, canonical_json(method.params)] for method in resolved],
                "models": [spec.id for spec in specs], "config": config.to_dict(), "contrastive": bool(contrastive),
                "batch_size": batch_size, "rows": rows, "block_size": step,
                "images": settings_digest([list(ids), _tensor_digest(images)]),
                "labels": {task: settings_digest(scored[task].labels.tolist()) for task in tasks},
                "truth": None if truth is None else {task: settings_digest(np.packbits(truth[task]).tolist())
                                                    for task in tasks},
                "weights": {spec.id: source_version(source) for spec, source in sources.items()}}
    values = np.full((len(resolved), len(specs), count, len(COMPARISON_METRICS)), np.nan)
    with units_root(units_dir) as root:
        store = UnitStore(root, "methods", settings)
        run_units(units, store, client=client, threads=threads, progress=progress)
        for method_index, method in enumerate(resolved):
            for model_index, spec in enumerate(specs):
                for block in blocks:
                    values[method_index, model_index, block] = store.read(_unit_key(method, spec, block))["value"]
        store.clear()
    return _assemble(values, resolved, specs, ids, truth is not None, dict(fractions=list(map(float, fractions)),
                     order=order, fill=fill, patch=patch, contrastive=int(contrastive)), n_bootstrap, confidence,
                     seed)


def method_unit(source: Any, method: Method, images: torch.Tensor, labels: np.ndarray, truth: np.ndarray | None,
                start: int, config: MaskingConfig, colours: torch.Tensor | None, rows: int, batch_size: int,
                contrastive: bool, device: torch.device | None, spec: ModelSpec) -> xr.Dataset:
    """One unit of :func:`method_comparison` as :mod:`lrp_faces.compute` runs it: one method's maps of the model
    ``spec`` (loaded from ``source``) for images ``start`` to ``start + n - 1`` of the data set
    (:func:`lrp_faces.cube.explain_block`), scored against ``truth`` and by masking the images for the same model
    (:func:`lrp_faces.masking.curves_block`, with the fill ``colours`` and ``rows`` per pass of all images).

    Returns
    -------
    xarray.Dataset
        ``value`` (image, metric): the block's rows of :func:`method_comparison`'s ``value``.
    """
    model = unit_model(source, device)
    try:
        relevance = explain_block(model, method, images, labels, start, contrastive, batch_size, device,
                                  name=spec).relevance
    except CubeNonFiniteError as error:
        raise AnalysisError(f"method {method.name!r}: {error}") from None
    count, pixels = len(images), images.shape[2] * images.shape[3]
    values = np.full((count, len(COMPARISON_METRICS)), np.nan)
    if truth is not None:
        inside = np.broadcast_to(truth, (count,) + tuple(images.shape[2:])).reshape(count, pixels)
        values[:, 0], values[:, 1] = mass_and_rank_accuracy(relevance.reshape(count, pixels), inside)
    scores = curves_block(model, images, relevance, labels, config, image_index=range(start, start + count),
                          fill_colours=colours, batch_size=rows, contrastive=contrastive, device=device)
    values[:, 2] = aopc(scores.unmasked[2], scores.masked[2], config.fractions, config.mode)
    values[:, 3] = aopc(scores.unmasked[1], scores.masked[1], config.fractions, config.mode)
    return xr.Dataset({"value": (("image", "metric"), values)})


def _unit_key(method: Method, spec: ModelSpec, block: slice) -> str:
    return f"{method.name}.{spec.name}.{block.start}-{block.stop}"


def _tensor_digest(tensor: torch.Tensor) -> str:
    return hashlib.sha256(tensor.contiguous().numpy().tobytes()).hexdigest()


def _assemble(values: np.ndarray, resolved: list[Method], specs: list[ModelSpec], ids: list[str], has_truth: bool,
              masking: dict, n_bootstrap: int, confidence: float, seed: int) -> xr.Dataset:
    with np.errstate(invalid="ignore"), ignore_empty_means():
        per_image = np.nanmean(values, axis=1)  # (attribution_method, image, metric)
        model_mean = np.nanmean(values, axis=2)  # (attribution_method, model, metric)
    mean, low, high = bootstrap_mean(per_image.transpose(0, 2, 1), n_bootstrap, confidence, seed)
    coords = {METHOD_DIM: [method.name for method in resolved], "metric": list(COMPARISON_METRICS),
              "model": [spec.id for spec in specs], "image": ids,
              "pretraining": ("model", [spec.pretraining for spec in specs]),
              "task": ("model", [spec.task for spec in specs]), "seed": ("model", [spec.seed for spec in specs])}
    variables = {
        "value": ((METHOD_DIM, "model", "image", "metric"), values),
        "mean": ((METHOD_DIM, "metric"), mean, {"long_name": "mean over images of the per-image mean over models"}),
        "ci_low": ((METHOD_DIM, "metric"), low), "ci_high": ((METHOD_DIM, "metric"), high),
        "model_mean": ((METHOD_DIM, "model", "metric"), model_mean, {"long_name": "mean over images"}),
    }
    attrs = {"n_bootstrap": n_bootstrap, "confidence": confidence, "seed": seed,
             "method_params": json.dumps({method.name: method.params for method in resolved}, sort_keys=True,
                                         default=repr),
             "masking": json.dumps(masking, sort_keys=True),
             "ground_truth": ("relevance mass and rank accuracy (Arras et al. 2022) against the model's task's "
                              "ground truth" if has_truth else "none: no ground-truth masks, the metrics are NaN"),
             "aopc": "self-masking: each model masked by its own maps; mean over fractions > 0 of f(original) - "
                     "f(masked)"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
