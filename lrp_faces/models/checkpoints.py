"""Checkpoints of our own: weights plus architecture, preprocessing, class names, spec, metadata and a digest."""
from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import nn

from .. import parameters as checked
from ..errors import LRPFacesWarning
from ..files import atomic_path, versions
from ._state_dicts import WeightsError, check_keys, materialise, meta_model, read_weights_file, warn_if_not_finite
from .builder import ModelCard, NormalizedVGG

#: Format tag and version written into every :func:`save_model` checkpoint.
CHECKPOINT_FORMAT = "lrp_faces.checkpoint"
CHECKPOINT_VERSION = 1


def _plain(value: Any, name: str) -> Any:
    """``value`` as JSON-able plain data (tuples become lists); TypeError naming ``name`` otherwise."""
    try:
        return json.loads(json.dumps(value))
    except (TypeError, ValueError) as error:
        raise checked.ParameterTypeError(f"{name} must be JSON-able plain data (dict, list, str, number, bool, None): {error}") from None


def _spec_dict(spec: Any) -> dict | None:
    if spec is None:
        return None
    if callable(getattr(spec, "to_dict", None)):
        spec = spec.to_dict()
    elif dataclasses.is_dataclass(spec) and not isinstance(spec, type):
        spec = dataclasses.asdict(spec)
    if not isinstance(spec, Mapping):
        raise checked.ParameterTypeError(f"spec must be a dict or have a to_dict() method (e.g. a ModelSpec), got {type(spec)}")
    return _plain(dict(spec), "spec")


def _save(content: Any, path: Path) -> None:
    """torch.save ``content`` to ``path`` atomically (:func:`lrp_faces.files.atomic_path`)."""
    with atomic_path(path) as temporary, open(temporary, "wb") as stream:
        torch.save(content, stream)


class UnverifiedCheckpointWarning(LRPFacesWarning):
    """A checkpoint without a weights digest (written by an older lrp_faces): its tensors cannot be verified."""


def save_model(model: NormalizedVGG, path: str | os.PathLike, spec: Any = None, metadata: dict | None = None,
               class_names: Sequence[str] | None = None) -> Path:
    """Save a model with everything needed to rebuild and describe it, in one file, atomically.

    The file holds a format tag and version, ``model.architecture`` (the builder arguments), the preprocessing, the
    class names, the spec, the training metadata, the weights' provenance, the versions
    (:func:`lrp_faces.files.versions`), the state dict (bit-exact, in the model's dtype) and its
    :func:`weights_digest`, which :func:`load_model` verifies. It is written to a temporary file in the same
    directory, synced and renamed, so an interrupted save never leaves a partial file under ``path``.

    Parameters
    ----------
    model : NormalizedVGG
        A model built by :func:`vgg16` or loaded by this module.
    path : str or PathLike
        Destination; parent directories are created, an existing file is replaced.
    spec : object, optional
        The model's identity, e.g. the zoo's ``ModelSpec``: a dict, an object with ``to_dict()``, or a dataclass.
        Stored as a plain dict. ``None`` uses the model card's (``model.card.spec``).
    metadata : dict, optional
        JSON-able training metadata (epochs, accuracy, data set, ...). ``None`` uses ``model.card.metadata``.
    class_names : sequence of str, optional
        One name per output. ``None`` uses ``model.card.class_names``.

    Returns
    -------
    pathlib.Path
        The written file.
    """
    if not isinstance(model, NormalizedVGG):
        raise checked.ParameterTypeError(f"model must be a NormalizedVGG built by lrp_faces.vgg16 or a loader, got {type(model)}")
    path = Path(path)
    spec = model.card.spec if spec is None else spec
    metadata = model.card.metadata if metadata is None else metadata
    class_names = model.card.class_names if class_names is None else class_names
    if metadata is not None and not isinstance(metadata, Mapping):
        raise checked.ParameterTypeError(f"metadata must be a dict, got {type(metadata)}")
    if class_names is not None and (isinstance(class_names, str) or not all(isinstance(name, str)
                                                                            for name in class_names)):
        raise checked.ParameterTypeError(f"class_names must be a sequence of str, got {class_names!r}")
    if class_names is not None and len(class_names) != model.num_classes:
        raise checked.ParameterError(f"class_names has {len(class_names)} names but the model has {model.num_classes} outputs")
    architecture = _plain(model.architecture, "model.architecture")
    state = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    expected = {key: tuple(value.shape) for key, value in meta_model(architecture).state_dict().items()}
    if expected != {key: tuple(value.shape) for key, value in state.items()}:
        raise checked.ParameterError("model.architecture no longer describes the model's layers (was a layer replaced by hand? "
                         "use lrp_faces.models.replace_head to change the number of classes)")
    content = {"format": CHECKPOINT_FORMAT, "format_version": CHECKPOINT_VERSION, "architecture": architecture,
               "preprocessing": model.preprocessing.to_dict(),
               "class_names": None if class_names is None else list(class_names), "spec": _spec_dict(spec),
               "metadata": _plain(dict(metadata or {}), "metadata"),
               "provenance": _plain(model.card.provenance, "model.card.provenance"),
               "weights_sha256": weights_digest(state),
               "versions": versions(), "saved_at": datetime.datetime.now(datetime.timezone.utc).isoformat(),
               "state_dict": state}
    _save(content, path)
    return path


def weights_digest(weights: nn.Module | Mapping[str, torch.Tensor]) -> str:
    """Hex SHA-256 of a model's state dict (or of a state dict): every tensor's name, dtype, shape and bytes.

    Equal weights give equal digests on any machine; it identifies the weights a result was computed with.
    """
    state = weights.state_dict() if isinstance(weights, nn.Module) else weights
    digest = hashlib.sha256()
    for key, value in sorted(state.items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy())  # the buffer itself: no copy
    return digest.hexdigest()


def _checkpoint(path: str | os.PathLike, mmap: bool) -> tuple[Path, dict]:
    path, content = read_weights_file(path, "lrp_faces checkpoint", mmap=mmap)
    if not isinstance(content, Mapping) or content.get("format") != CHECKPOINT_FORMAT:
        hint = (" (it looks like a plain state dict: use load_torchvision_vgg16 or load_vgg_face)"
                if isinstance(content, Mapping) and content and all(isinstance(v, torch.Tensor)
                                                                     for v in content.values()) else "")
        raise WeightsError(f"{str(path)!r} is not an lrp_faces checkpoint written by save_model{hint}")
    version = content.get("format_version")
    if not isinstance(version, int) or not 1 <= version <= CHECKPOINT_VERSION:
        raise WeightsError(f"{str(path)!r} has checkpoint format version {version!r}; this lrp_faces reads versions "
                           f"1 to {CHECKPOINT_VERSION} (upgrade lrp_faces)")
    for key, kind in (("architecture", Mapping), ("state_dict", Mapping), ("metadata", Mapping)):
        if not isinstance(content.get(key), kind):
            raise WeightsError(f"{str(path)!r} is a damaged lrp_faces checkpoint: {key!r} is missing or not a dict")
    return path, dict(content)


def read_checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    """Everything a :func:`save_model` checkpoint at ``path`` holds except the weights, without loading them.

    Returns
    -------
    dict
        Keys ``format``, ``format_version``, ``architecture``, ``preprocessing``, ``class_names``, ``spec``,
        ``metadata``, ``provenance``, ``versions``, ``saved_at`` and (in checkpoints written since it was added)
        ``weights_sha256``, the :func:`weights_digest` of the saved weights.
    """
    _, content = _checkpoint(path, mmap=True)
    return {key: value for key, value in content.items() if key != "state_dict"}


def load_model(path: str | os.PathLike) -> NormalizedVGG:
    """Load a checkpoint written by :func:`save_model` (read with ``weights_only=True``).

    The weights are checked against the digest stored when the checkpoint was saved, so damaged tensors are an
    error, not a silently different model. A checkpoint from before digests were stored loads with an
    :class:`UnverifiedCheckpointWarning`; weights that hold NaN or Inf load with a
    :class:`~lrp_faces.models.NonFiniteWeightsWarning`.

    Returns
    -------
    NormalizedVGG
        The model in evaluation mode with the saved weights (bit-exact, saved dtype) and its
        :class:`~lrp_faces.models.ModelCard` (``spec``, ``class_names``, ``metadata``, ``provenance``) in
        ``model.card``.

    Raises
    ------
    WeightsError
        Not a readable lrp_faces checkpoint, weights that differ from the stored digest, or weights that do not fit
        its architecture (the message names the file and lists the misfits); :class:`WeightsFileNotFoundError` if
        the file does not exist.
    """
    path, content = _checkpoint(path, mmap=False)
    architecture = dict(content["architecture"])
    try:
        expected_model = meta_model(architecture)
    except (TypeError, ValueError, KeyError) as error:
        raise WeightsError(f"{str(path)!r} is a damaged lrp_faces checkpoint: its architecture {architecture!r} "
                           f"cannot be built ({error})") from error
    state = dict(content["state_dict"])
    expected = {key: tuple(value.shape) for key, value in expected_model.state_dict().items()}
    check_keys(state, expected, {}, path, "the architecture recorded in the checkpoint")
    _verify_digest(content.get("weights_sha256"), state, path)
    warn_if_not_finite(state, path)
    model = materialise(architecture, state, to_float32=False)
    model.card = ModelCard(spec=content.get("spec"), class_names=content.get("class_names"),
                           metadata=dict(content["metadata"]), provenance=content.get("provenance"))
    return model


def _verify_digest(stored: Any, state: Mapping[str, torch.Tensor], path: Path) -> None:
    if stored is None:
        warnings.warn(f"{str(path)!r} stores no weights digest (it was written by an older lrp_faces), so its weights "
                      "cannot be checked for damage; save it again with save_model to add one",
                      UnverifiedCheckpointWarning, stacklevel=3)
        return
    if stored != weights_digest(state):
        raise WeightsError(f"{str(path)!r} is a damaged lrp_faces checkpoint: its weights differ from the digest "
                           "stored when it was saved (the file changed on disk); restore it from a copy or retrain")
