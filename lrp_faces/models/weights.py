"""Weight files: torchvision state dicts and the PyTorch port of VGG-Face."""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from .. import parameters as checked
from ..nn import IMAGENET, VGGFACE, Preprocessing
from ._state_dicts import (WeightsError, check_keys, materialise, meta_model, read_weights_file, shape_of,
                           warn_if_not_finite)
from .builder import VGG16_CONFIG, NormalizedVGG

#: Layer names of the PyTorch port of VGG-Face (``vgg_face_dag.pth``), in network order.
VGG_FACE_CONVS = ("conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
                  "conv4_3", "conv5_1", "conv5_2", "conv5_3")
_CLASSIFIER_LINEARS = (0, 3, 6)  # torchvision's classifier indices of fc6, fc7, fc8
_HEAD = "classifier.6"


def _conv_indices(batch_norm: bool) -> list[int]:
    """Indices in ``features`` of the 13 convolutions of torchvision's VGG-16 (-BN)."""
    indices, index = [], 0
    for item in VGG16_CONFIG:
        if item == "M":
            index += 1
        else:
            indices.append(index)
            index += 3 if batch_norm else 2
    return indices


def _state_dict_of(content: Any, path: Path) -> dict[str, Any]:
    if isinstance(content, Mapping):
        for key in ("state_dict", "model_state_dict"):
            if isinstance(content.get(key), Mapping):
                content = content[key]
                break
    if not isinstance(content, Mapping) or not content or not all(isinstance(key, str) for key in content):
        raise WeightsError(f"{str(path)!r} does not hold a state dict (a non-empty dict of name -> tensor, or a dict "
                           f"with a 'state_dict' entry); found {type(content).__name__}")
    state = dict(content)
    if all(key.startswith("module.") for key in state):  # saved from nn.DataParallel
        state = {key[len("module."):]: value for key, value in state.items()}
    return state


def _infer_width(channels: dict[int, int]) -> float:
    """The width multiplier that reproduces most of the found conv widths (1.0 when none is found)."""
    bases = [item for item in VGG16_CONFIG if item != "M"]
    candidates = [1.0] + [count / bases[position] for position, count in sorted(channels.items(), reverse=True)]

    def matches(width):
        return sum(max(1, round(bases[position] * width)) == count for position, count in channels.items())
    return max(candidates, key=matches)


def _infer_architecture(shapes: dict[str, tuple | str], batch_norm: bool, num_classes: int | None,
                        preprocessing: Preprocessing) -> tuple[dict[str, Any], int | None]:
    """Builder arguments that fit the tensor shapes of a torchvision-layout state dict, and the file's class count.

    Inference never fails: what cannot be inferred falls back to torchvision's value, and the key-by-key comparison
    that follows reports what does not fit.
    """
    def shape(key, ndims):
        found = shapes.get(key)
        return found if isinstance(found, tuple) and len(found) in ndims and all(found) else None

    channels = {position: found[0] for position, index in enumerate(_conv_indices(batch_norm))
                if (found := shape(f"features.{index}.weight", (4,)))}
    width = _infer_width(channels)
    last_channels = max(1, round(512 * width))
    classifier_width, pool_size = 4096, 7
    if fc6 := shape("classifier.0.weight", (2, 4)):
        classifier_width = fc6[0]
        if len(fc6) == 4 and fc6[2] == fc6[3]:
            pool_size = fc6[2]
        elif len(fc6) == 2 and fc6[1] % last_channels == 0 and math.isqrt(fc6[1] // last_channels) ** 2 * \
                last_channels == fc6[1]:
            pool_size = math.isqrt(fc6[1] // last_channels)
    elif fc7 := shape("classifier.3.weight", (2, 4)):
        classifier_width = fc7[1]
    fc8 = shape(f"{_HEAD}.weight", (2, 4))
    file_classes = fc8[0] if fc8 else None
    architecture = {"num_classes": num_classes or file_classes or 1000, "preprocessing": preprocessing,
                    "width": float(width), "batch_norm": bool(batch_norm), "classifier_width": classifier_width,
                    "pool_size": pool_size}
    return architecture, file_classes


def _new_head(in_features: int, num_classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's initialisation of the last layer, N(0, 0.01) and bias 0, from its own seeded generator."""
    generator = torch.Generator().manual_seed(int(seed))
    return torch.empty(num_classes, in_features).normal_(0.0, 0.01, generator=generator), torch.zeros(num_classes)


def _load_external(path: Path, state: dict[str, Any], file_key: dict[str, str], batch_norm: bool,
                   num_classes: int | None, seed: int, preprocessing: Preprocessing, source: str,
                   hint: str) -> NormalizedVGG:
    """Shared part of the torchvision and VGG-Face loaders; ``state`` is in torchvision's layout."""
    if num_classes is not None:
        loader = "load_torchvision_vgg16" if source == "torchvision" else "load_vgg_face"
        num_classes = checked.positive_int(num_classes, "num_classes", loader)
    arguments, file_classes = _infer_architecture({key: shape_of(value) for key, value in state.items()}, batch_norm,
                                                  num_classes, preprocessing)
    new_head = num_classes is not None and file_classes != num_classes
    for linear in _CLASSIFIER_LINEARS:  # fcs stored as convolutions (fc6 k x k, fc7/fc8 1 x 1): flatten C, H, W
        weight = state.get(f"classifier.{linear}.weight")
        if isinstance(weight, torch.Tensor) and weight.ndim == 4 and weight.shape[2] == weight.shape[3] and \
                (linear == 0 or weight.shape[2] == 1):
            state[f"classifier.{linear}.weight"] = weight.flatten(1)
    try:
        expected_model = meta_model({**arguments, "preprocessing": preprocessing.to_dict()})
    except (TypeError, ValueError) as error:
        raise WeightsError(f"the weights in {str(path)!r} do not describe a VGG-16: {error}") from error
    expected = {key: tuple(value.shape) for key, value in expected_model.state_dict().items()}
    head_keys = {f"{_HEAD}.weight", f"{_HEAD}.bias"}
    if new_head:
        expected = {key: shape for key, shape in expected.items() if key not in head_keys}
    widths = [max(1, round(item * arguments["width"])) for item in VGG16_CONFIG if item != "M"]
    description = (f"a VGG-16{'-BN' if batch_norm else ''} with conv widths {widths}, "
                   f"pool size {arguments['pool_size']}, classifier width {arguments['classifier_width']}, "
                   f"{arguments['num_classes']} classes")
    check_keys(state, expected, file_key, path, description,
               ignored={file_key.get(key, key) for key in head_keys} if new_head else set(), hint=hint)
    warn_if_not_finite({file_key.get(key, key): value for key, value in state.items()}, path, stacklevel=4)
    if new_head:
        state = {key: value for key, value in state.items() if key not in head_keys}
        state[f"{_HEAD}.weight"], state[f"{_HEAD}.bias"] = _new_head(arguments["classifier_width"], num_classes,
                                                                      seed)
    model = materialise(expected_model.architecture, state, to_float32=True)
    from_file = [key.rsplit(".", 1)[0] for key in model.state_dict() if key not in head_keys or not new_head]
    model.card = model.card.replace(provenance={
        "source": source, "file": str(path.resolve()), "loaded_layers": list(dict.fromkeys(from_file)),
        "reinitialised_layers": [_HEAD] if new_head else [], "seed": int(seed) if new_head else None,
        "file_num_classes": file_classes})
    return model


def load_torchvision_vgg16(path: str | os.PathLike, num_classes: int | None = None, batch_norm: bool | None = None,
                           seed: int = 0, *, preprocessing: Preprocessing = IMAGENET) -> NormalizedVGG:
    """Load a torchvision VGG-16 (or VGG-16-BN) state dict, e.g. ImageNet weights saved by the user.

    The file holds ``model.state_dict()`` of a ``torchvision.models.vgg16`` (or a checkpoint dict with a
    ``"state_dict"`` entry). Conv widths, classifier width, pool size and class count are inferred from the tensor
    shapes, so reduced-width VGG-16s load too; the structure is then checked key by key.

    Parameters
    ----------
    path : str or PathLike
        File written by ``torch.save``; read with ``weights_only=True``.
    num_classes : int, optional
        Outputs of the returned model. If it differs from the file's, the last layer (``classifier.6``) is
        reinitialised for fine-tuning (normal(0, 0.01), bias 0, seeded by ``seed``); all other layers come from the
        file. ``None`` keeps the file's classes.
    batch_norm : bool, optional
        Whether the file is a VGG-16-BN; inferred from the keys when ``None``.
    seed : int
        Seed of the reinitialised last layer (reproducible; the global RNG is not used).
    preprocessing : Preprocessing
        Normalisation the weights were trained with; torchvision's ImageNet weights use :data:`IMAGENET`.

    Returns
    -------
    NormalizedVGG
        In evaluation mode, float32, taking RGB in [0, 1]. ``model.provenance`` records the file and which layers
        came from it (``loaded_layers``) and which were reinitialised (``reinitialised_layers``).

    Raises
    ------
    WeightsError
        Unreadable file, or keys/shapes that do not fit (the missing, unexpected and mis-shaped keys are listed);
        :class:`WeightsFileNotFoundError` if the file does not exist.
    """
    path, content = read_weights_file(path, "torchvision VGG-16 weights file")
    state = _state_dict_of(content, path)
    if batch_norm is None:
        batch_norm = any(key.startswith("features.") and key.endswith(".running_mean") for key in state)
    hint = ("\n  (this looks like the VGG-Face port: use load_vgg_face)" if "conv1_1.weight" in state and
            "features.0.weight" not in state else "")
    return _load_external(path, state, {}, bool(batch_norm), num_classes, seed, preprocessing, "torchvision", hint)


def load_vgg_face(path: str | os.PathLike, num_classes: int | None = None, seed: int = 0) -> NormalizedVGG:
    """Load the PyTorch port of VGG-Face (``vgg_face_dag.pth``) into a torchvision-layout VGG-16.

    The port's keys ``conv1_1`` ... ``conv5_3`` and ``fc6``-``fc8`` map to ``features.0`` ... ``features.28`` and
    ``classifier.0/3/6``. ``fc6`` may be stored as a Linear (4096, 25088) or as a convolution (4096, 512, 7, 7), and
    ``fc7``/``fc8`` as (out, in) or (out, in, 1, 1); the C, H, W flatten order equals torchvision's. The model uses
    the :data:`VGGFACE` preprocessing (0-255 RGB minus the port's mean) and so takes RGB in [0, 1]. Reduced-width
    files with the same key names load too (the architecture is inferred from the shapes).

    Parameters
    ----------
    path : str or PathLike
        The state dict file (or a checkpoint dict with a ``"state_dict"`` entry).
    num_classes : int, optional
        As in :func:`load_torchvision_vgg16`: a value other than the file's (2622) reinitialises ``fc8``.
    seed : int
        Seed of the reinitialised last layer.

    Returns
    -------
    NormalizedVGG
        In evaluation mode; ``model.provenance`` records the file and the loaded/reinitialised layers.

    Raises
    ------
    WeightsError
        As :func:`load_torchvision_vgg16`; keys are listed with the port's names.
    """
    path, content = read_weights_file(path, "VGG-Face weights file")
    source = _state_dict_of(content, path)
    to_torchvision = {f"{name}.{kind}": f"features.{index}.{kind}"
                      for name, index in zip(VGG_FACE_CONVS, _conv_indices(False)) for kind in ("weight", "bias")}
    to_torchvision.update({f"fc{6 + layer}.{kind}": f"classifier.{index}.{kind}"
                           for layer, index in enumerate(_CLASSIFIER_LINEARS) for kind in ("weight", "bias")})
    state, file_key = {}, {value: key for key, value in to_torchvision.items()}
    for key, value in source.items():  # keys that are no port names stay unexpected, under their own name
        state[to_torchvision.get(key, f"<unmapped>{key}")] = value
        file_key[to_torchvision.get(key, f"<unmapped>{key}")] = key
    hint = ("\n  (this looks like a torchvision state dict: use load_torchvision_vgg16)"
            if "features.0.weight" in source and "conv1_1.weight" not in source else "")
    return _load_external(path, state, file_key, False, num_classes, seed, VGGFACE, "vgg_face", hint)


def replace_head(model: NormalizedVGG, num_classes: int, seed: int = 0) -> NormalizedVGG:
    """Replace the last layer by a freshly initialised one for fine-tuning, in place.

    The new layer gets torchvision's initialisation (normal(0, 0.01), bias 0) from a generator seeded by ``seed``;
    ``architecture["num_classes"]`` and ``provenance`` are updated and ``class_names`` is cleared.

    Parameters
    ----------
    model : NormalizedVGG
        The model to change; it is also returned.
    num_classes : int
        Outputs of the new last layer.
    seed : int
        Seed of its initialisation.
    """
    num_classes = checked.positive_int(num_classes, "num_classes", "replace_head")
    old = model.classifier[-1]
    head = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    with torch.no_grad():
        for parameter, value in zip((head.weight, head.bias), _new_head(old.in_features, num_classes, seed)):
            parameter.copy_(value)
    model.classifier[-1] = head
    model.architecture["num_classes"] = num_classes
    provenance = dict(model.card.provenance or {})
    provenance["reinitialised_layers"] = list(dict.fromkeys([*provenance.get("reinitialised_layers", []), _HEAD]))
    provenance["loaded_layers"] = [layer for layer in provenance.get("loaded_layers", []) if layer != _HEAD]
    provenance["seed"] = int(seed)
    model.card = model.card.replace(provenance=provenance, class_names=None)
    return model
