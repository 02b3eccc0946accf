"""Attribution methods compared on the same models and images: ground-truth metrics and self-masking AOPC."""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .. import methods as method_registry
from ..attribution import attribute, check_images
from ..errors import LRPFacesError
from ..faces import DatasetError, DataTypeError, as_face_data
from ..masking import curves
from ..methods import Method
from ..zoo import ModelSpec, scored_labels
from ._common import (AnalysisError, AnalysisTypeError, check_confidence, check_count, check_device,
                      ignore_empty_means)
from ._statistics import bootstrap_mean
from .regions import mass_and_rank_accuracy, task_masks

__all__ = ["method_comparison", "DEFAULT_METHODS", "COMPARISON_METRICS", "COMPARISON_FRACTIONS", "METHOD_DIM"]

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
                      device: str | torch.device | None = None, progress: bool = False) -> xr.Dataset:
    """Compare attribution methods on the same models and images: ground-truth metrics and self-masking AOPC.

    For every model and method, the maps of the model's true classes are computed with
    :func:`lrp_faces.attribute`, scored against the model's task's ground truth (:func:`ground_truth`) and used to
    mask the images for the same model (:func:`lrp_faces.masking.curves`). Models are loaded one at a time. The cost
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
        Where the models run (each is moved there once, in place); default: where each model is. Batches of
        images move there; results come back to the CPU.
    progress : bool
        Show a progress bar over models x methods.

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
    device = check_device(device)
    try:
        dataset = as_face_data(dataset)
    except DataTypeError as error:
        raise AnalysisTypeError(f"dataset: {error}") from error
    except DatasetError as error:
        raise AnalysisError(f"dataset: {error}") from error
    count = len(dataset)
    if count == 0:
        raise AnalysisError("dataset is empty: there are no images to compare the methods on")
    try:
        scored = scored_labels(zoo, specs, dataset)
        images = check_images(dataset.load(0, count), "dataset images")
    except DatasetError as error:  # no usable labels, or a model's classes and the data set's disagree
        raise AnalysisError(str(error)) from error
    ids = dataset.image_ids
    shape = tuple(int(side) for side in images.shape[2:])
    tasks = sorted({spec.task for spec in specs})
    if masks is None and callable(getattr(dataset, "task_mask", None)):
        masks = dataset
    truth = None if masks is None else task_masks(masks, tasks, ids, shape)
    pixels = shape[0] * shape[1]

    values = np.full((len(resolved), len(specs), count, len(COMPARISON_METRICS)), np.nan)
    with tqdm(total=len(specs) * len(resolved), desc="method comparison", unit="map set",
              disable=not progress) as bar:
        for model_index, spec in enumerate(specs):
            model = zoo[spec]
            if device is not None:
                model.to(device)
            labels = scored[spec.task].labels
            for method_index, method in enumerate(resolved):
                bar.set_postfix(model=str(spec), method=method.name)
                relevance = attribute(model, images, target=torch.from_numpy(labels), method=method,
                                      contrastive=contrastive, batch_size=batch_size)
                if not bool(torch.isfinite(relevance).all()):
                    raise AnalysisError(f"method {method.name!r} gave NaN or Inf relevance for model {spec}")
                row = values[method_index, model_index]
                if truth is not None:
                    inside = np.broadcast_to(truth[spec.task], (count,) + shape).reshape(count, pixels)
                    row[:, 0], row[:, 1] = mass_and_rank_accuracy(relevance.numpy().reshape(count, pixels), inside)
                masked = curves(model, images, labels, relevance, fractions=fractions, order=order, fill=fill,
                                patch=patch, seed=seed, batch_size=masking_batch_size, contrastive=contrastive)
                row[:, 2], row[:, 3] = masked["aopc_output"].values, masked["aopc_probability"].values
                bar.update()
            del model
    return _assemble(values, resolved, specs, ids, truth is not None, dict(fractions=list(map(float, fractions)),
                     order=order, fill=fill, patch=patch, contrastive=int(contrastive)), n_bootstrap, confidence,
                     seed)


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
