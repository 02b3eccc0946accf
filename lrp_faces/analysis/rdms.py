"""Model RDMs: how dissimilar a model finds every pair of images.

An RDM here is ``1 - Pearson correlation`` between the images' penultimate-layer features (:func:`penultimate_features`,
the input of the last Linear), their relevance maps, or the features of the images kept to their most relevant
pixels ("decision weighting"). :func:`rdm_from_features` builds one RDM, :func:`model_rdms` every model and kind of a
relevance cube, ready for :func:`lrp_faces.analysis.compare_with_humans`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from ..faces import ClassMismatchError, DatasetError
from ..masking import MODEL_DIMS, perturbed_batches
from ..module_state import evaluation_mode
from ..zoo import ModelSpec, scored_labels
from ._common import NON_FINITE_MAPS, check_choice, check_device, check_relevance, cube_models, face_data
from ._rsa_common import RDM_DIMS, RSAError, RSATypeError, few, id_positions, unit_vectors

__all__ = ["model_rdms", "rdm_from_features", "penultimate_features", "RDM_KINDS"]

RDM_KINDS = ("features", "relevance", "decision_weighted")
"""Model RDMs: penultimate features, relevance maps, features of images kept to their top relevant pixels."""
_KIND_TEXT = {"features": "penultimate-layer features (input of the last Linear)",
              "relevance": "relevance maps",
              "decision_weighted": "penultimate-layer features of the images kept to their top relevant pixels "
                                   "(the rest filled with the mean colour)"}


def rdm_from_features(features: Any, image_ids: Sequence) -> xr.DataArray:
    """The RDM ``1 - Pearson correlation`` between the images' feature vectors (or maps).

    Parameters
    ----------
    features : tensor, array or DataArray (N, ...)
        One row per image, flattened over the other axes; finite.
    image_ids : sequence of N ids

    Returns
    -------
    xarray.DataArray (image_a, image_b) float64
        Zero diagonal, values in [0, 2]. An image with constant features (e.g. an all-zero map) has NaN
        dissimilarities to every other image.
    """
    if isinstance(features, xr.DataArray):
        features = features.values
    if isinstance(features, torch.Tensor):
        features = features.detach().cpu().numpy()
    if not isinstance(features, np.ndarray):
        raise RSATypeError(f"features must be a tensor, array or DataArray of shape (N, ...), got "
                           f"{type(features).__name__}")
    ids = [str(image_id) for image_id in image_ids]
    if features.ndim < 2 or len(features) != len(ids) or not len(ids):
        raise RSAError(f"features must have shape (N, ...) with one row per image id ({len(ids)}), got shape "
                       f"{features.shape}")
    if len(set(ids)) != len(ids):
        raise RSAError(f"image_ids has duplicates, e.g. {few(sorted({i for i in ids if ids.count(i) > 1}))}")
    rows = features.reshape(len(ids), -1).astype(np.float64)
    finite = np.isfinite(rows).all(1)
    if not finite.all():
        bad = [ids[i] for i in np.flatnonzero(~finite)]
        raise RSAError(f"features contain NaN or Inf values for images {few(bad)}")
    units = unit_vectors(rows)
    dissimilarity = np.clip(1.0 - units @ units.T, 0.0, 2.0)
    dissimilarity = (dissimilarity + dissimilarity.T) / 2.0
    np.fill_diagonal(dissimilarity, 0.0)
    return xr.DataArray(dissimilarity, dims=RDM_DIMS, coords={"image_a": ids, "image_b": ids}, name="dissimilarity",
                        attrs={"long_name": "1 - Pearson correlation between images", "units": "1"})


def penultimate_features(model: nn.Module, images: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """The input of the model's last Linear for each image: ``model.penultimate(images)``.

    Models of :func:`lrp_faces.vgg16` and the checkpoints have :meth:`~lrp_faces.models.NormalizedVGG.penultimate`;
    another VGG-like model (a ``classifier`` ``nn.Sequential`` ending in ``nn.Linear``) gives the input of
    ``model.classifier[-1]``, captured by a forward hook. Runs in evaluation mode without gradients on the model's
    device (the model's modes are restored, see :func:`lrp_faces.module_state.evaluation_mode`).

    Returns
    -------
    numpy.ndarray (N, D) float64
    """
    penultimate = getattr(model, "penultimate", None)
    if not callable(penultimate):
        penultimate = _hooked_penultimate(model)
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else images.device
    dtype = parameter.dtype if parameter is not None else images.dtype
    with evaluation_mode(model), torch.no_grad():
        batches = [penultimate(images[start:start + batch_size].to(device=device, dtype=dtype)).flatten(1).cpu()
                   for start in range(0, len(images), batch_size)]
    if not batches:
        return np.zeros((0, 0))
    return torch.cat(batches).double().numpy()


def _hooked_penultimate(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """``penultimate(images)`` of a VGG-like model without one: the input of ``model.classifier[-1]``."""
    classifier = getattr(model, "classifier", None)
    if not isinstance(classifier, nn.Sequential) or not len(classifier) or not isinstance(classifier[-1], nn.Linear):
        raise RSATypeError(f"the model must have a penultimate(images) method (lrp_faces.vgg16 models do) or a "
                           f".classifier nn.Sequential ending in nn.Linear (a VGG), got {type(model).__name__} with "
                           f"classifier {type(classifier).__name__}")

    def penultimate(images: torch.Tensor) -> torch.Tensor:
        captured: list[torch.Tensor] = []
        handle = classifier[-1].register_forward_hook(lambda module, inputs, output: captured.append(inputs[0]))
        try:
            model(images)
        finally:
            handle.remove()
        return captured[0]
    return penultimate


def _dataset_images(dataset: Any, ids: list[str], size: tuple[int, int]) -> torch.Tensor:
    """The dataset's images of the cube's image ids, in the cube's order."""
    data = face_data(dataset, RSAError, RSATypeError)
    positions = id_positions(ids, data.image_ids, "the cube", "the dataset",
                             hint="; give the dataset the cube was computed from")
    try:
        images = data.take(positions)
    except DatasetError as error:
        raise RSAError(f"dataset: {error}") from error
    if images.ndim != 4 or images.shape[1] != 3 or tuple(images.shape[2:]) != size:
        raise RSAError(f"the dataset's images have shape {tuple(images.shape[1:])}; expected (3, {size[0]}, "
                       f"{size[1]}) like the cube's maps")
    return images.float()


def model_rdms(cube: xr.Dataset, zoo: Mapping | None = None, dataset: Any = None,
               kinds: Sequence[str] = RDM_KINDS, fraction: float = 0.1, batch_size: int = 64,
               device: str | torch.device | None = None, progress: bool = False) -> xr.DataArray:
    """RDMs (``1 - Pearson`` between images) of every model of a cube, from features, maps or both.

    Parameters
    ----------
    cube : xarray.Dataset
        A relevance cube (:mod:`lrp_faces.cube`); its images and models are the ones compared.
    zoo : Mapping ModelSpec -> model, optional
        The cube's models (needed for ``features`` and ``decision_weighted``).
    dataset : optional
        Any face data (see :func:`lrp_faces.faces.as_face_data`) holding the cube's images, matched by id (needed
        for ``features`` and ``decision_weighted``).
    kinds : sequence of {"features", "relevance", "decision_weighted"}
        ``features``: the input of the last Linear of ``model.classifier``; ``relevance``: the cube's maps;
        ``decision_weighted``: features of the images with only the top ``fraction`` of pixels by the model's own
        map kept and the rest filled with the images' mean colour (:func:`lrp_faces.masking.perturb` hiding the
        least relevant ``round((1 - fraction) * H * W)`` pixels).
    fraction : float
        Share of pixels kept for ``decision_weighted``, in (0, 1].
    batch_size : int
        Images per forward pass.
    device : str or torch.device, optional
        Where the models run (each is moved there once, in place); default: where each model is.
    progress : bool
        Show a progress bar over models.

    Returns
    -------
    xarray.DataArray (pretraining, task, seed, kind, image_a, image_b) float64
        NaN for models the cube has not computed.
    """
    relevance = check_relevance(cube)
    if isinstance(kinds, str) or not isinstance(kinds, Sequence) or not kinds:
        raise RSAError(f"kinds must be a non-empty sequence of {RDM_KINDS}, got {kinds!r}")
    kinds = tuple(check_choice(kind, RDM_KINDS, "kinds entry", RSAError) for kind in kinds)
    if len(set(kinds)) != len(kinds):
        raise RSAError(f"kinds has duplicates: {kinds}")
    if not isinstance(fraction, (float, int, np.floating)) or not 0 < fraction <= 1:
        raise RSAError(f"fraction must be a share of pixels in (0, 1], got {fraction!r}")
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise RSAError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = check_device(device, RSAError)
    ids = [str(image_id) for image_id in relevance.image.values]
    specs = cube_models(cube, relevance).specs  # computed models only (ragged cubes)
    needs_models = any(kind != "relevance" for kind in kinds)
    images = None
    if needs_models:
        if not isinstance(zoo, Mapping):
            raise RSATypeError(f"kinds {kinds} need zoo, a Mapping ModelSpec -> model (e.g. lrp_faces.zoo.Zoo), got "
                               f"{type(zoo).__name__}")
        available = set(iter(zoo))
        missing = [str(spec) for spec in specs if spec not in available]
        if missing:
            raise RSAError(f"{len(missing)} model(s) of the cube are missing from the zoo: {few(missing)}")
        images = _dataset_images(dataset, ids, (relevance.sizes["y"], relevance.sizes["x"]))
        _check_classes(zoo, specs, dataset)
    values = np.full(tuple(relevance.sizes[dim] for dim in MODEL_DIMS) + (len(kinds), len(ids), len(ids)), np.nan)
    position = {dim: {str(value): k for k, value in enumerate(relevance[dim].values)} for dim in MODEL_DIMS}
    for spec in tqdm(specs, desc="model RDMs", unit="model", disable=not progress, leave=False):
        where = tuple(position[dim][str(getattr(spec, dim))] for dim in MODEL_DIMS)
        maps = np.asarray(relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed).values)
        model = zoo[spec] if needs_models else None
        if model is not None and device is not None:
            model.to(device)
        for k, kind in enumerate(kinds):
            values[where + (k,)] = _model_rdm(kind, spec, maps, model, images, ids, fraction, batch_size)
    coords = {dim: relevance[dim].values for dim in MODEL_DIMS}
    coords.update(kind=list(kinds), image_a=ids, image_b=ids)
    return xr.DataArray(values, dims=MODEL_DIMS + ("kind",) + RDM_DIMS, coords=coords, name="dissimilarity",
                        attrs={"long_name": "1 - Pearson correlation between images", "units": "1",
                               "fraction": float(fraction), "fill": "mean",
                               "kind_descriptions": "; ".join(f"{kind}: {_KIND_TEXT[kind]}" for kind in kinds)})


def _check_classes(zoo: Mapping, specs: Sequence[ModelSpec], dataset: Any) -> None:
    """Refuse a data set whose labelled classes the models do not know (:func:`lrp_faces.zoo.scored_labels`), as
    the cube of its maps does; images without labels for a task are fine (RDMs compare images, not labels)."""
    try:
        scored_labels(zoo, specs, dataset)
    except ClassMismatchError as error:
        raise RSAError(str(error)) from error
    except DatasetError:  # no labels for a task: nothing to compare the models' classes with
        pass


def _model_rdm(kind: str, spec: ModelSpec, maps: np.ndarray, model: nn.Module | None, images: torch.Tensor | None,
               ids: list[str], fraction: float, batch_size: int) -> np.ndarray:
    if kind == "relevance":
        return rdm_from_features(maps, ids).values
    if kind == "features":
        return rdm_from_features(penultimate_features(model, images, batch_size), ids).values
    if not np.isfinite(maps).all():
        raise RSAError(f"the relevance of {spec} has NaN or Inf values: {NON_FINITE_MAPS}")
    features = None
    for batch in perturbed_batches(images, torch.from_numpy(maps), fractions=(1.0 - float(fraction),), order="lerf",
                                   fill="mean", mode="remove", batch_size=batch_size):
        rows = penultimate_features(model, batch.images, batch_size)
        if features is None:
            features = np.empty((len(ids), rows.shape[1]))
        features[batch.image_index.numpy()] = rows
    return rdm_from_features(features, ids).values

