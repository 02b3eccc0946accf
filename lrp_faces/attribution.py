"""``attribute``: relevance maps for a batch of images, in batches, with the model restored afterwards."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from zennit.core import collect_leaves

from . import methods as method_registry
from . import parameters as checked
from .devices import moved_to, resolve_device, to_device
from .errors import LRPFacesError
from .methods import Method
from .model_checks import NonFiniteWeightsError, minimum_image_size, non_finite_tensors
from .module_state import evaluation_mode

__all__ = ["attribute", "Attribution", "InputError", "TargetError", "check_images"]


class InputError(LRPFacesError, ValueError):
    """Images that are not float (N, 3, H, W) RGB in [0, 1]."""


class TargetError(LRPFacesError, ValueError):
    """Targets of the wrong length or outside the model's classes."""


class Attribution(NamedTuple):
    """Everything :func:`attribute` computes for N images."""

    relevance: torch.Tensor  #: (N, H, W) float32
    output: torch.Tensor  #: (N,) the explained output, contrastive by default
    prediction: torch.Tensor  #: (N,) predicted class
    target: torch.Tensor  #: (N,) explained class


def check_images(images, name: str = "images") -> torch.Tensor:
    """Return ``images`` as a float tensor after checking it is (N, 3, H, W) RGB in [0, 1] and finite."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(images)
    if not isinstance(images, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor of shape (N, 3, H, W), got {type(images).__name__}")
    if not images.is_floating_point():
        raise InputError(f"{name} must be floating point RGB in [0, 1], got dtype {images.dtype}; "
                         "convert uint8 images with images.float() / 255")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = " (add a batch dimension with images[None])" if images.ndim == 3 and images.shape[0] == 3 else ""
        raise InputError(f"{name} must have shape (N, 3, H, W) with 3 RGB channels, got {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise InputError(f"{name} is empty: shape {tuple(images.shape)}")
    finite = torch.isfinite(images)
    if not bool(finite.all()):
        bad = (~finite).reshape(images.shape[0], -1).any(1).nonzero()[:, 0].tolist()
        raise InputError(f"{name} contain NaN or Inf values, in image(s) {bad[:10]}")
    low, high = float(images.min()), float(images.max())
    if low < 0.0 or high > 1.0:
        raise InputError(f"{name} must be RGB in [0, 1] (the model normalises them itself), "
                         f"got values in [{low:.4g}, {high:.4g}]")
    return images


attribution_mode = evaluation_mode
"""Deprecated alias of :func:`lrp_faces.module_state.evaluation_mode` (import that instead)."""


def _num_classes(model: nn.Module) -> int | None:
    linears = [leaf for leaf in collect_leaves(model) if isinstance(leaf, nn.Linear)]
    return linears[-1].out_features if linears else None


def _check_target(target, count: int, num_classes: int | None) -> torch.Tensor | None:
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) and not isinstance(target, (bool, np.bool_)):
        target = torch.full((count,), int(target), dtype=torch.long)
    else:
        if isinstance(target, (str, bytes, Mapping, set)) or not isinstance(target, (torch.Tensor, np.ndarray,
                                                                                     Sequence)):
            raise TargetError(f"target must be an int, a sequence of ints, an integer array or tensor (one class "
                              f"index per image), or None; got {type(target).__name__} {target!r:.80}")
        if not isinstance(target, torch.Tensor):
            values = np.asarray(target)
            if values.size == 0:
                raise TargetError(f"target is empty; give one class index per image ({count}), or None to explain "
                                  "the predicted classes")
            if not (np.issubdtype(values.dtype, np.integer) or values.dtype == np.bool_
                    or np.issubdtype(values.dtype, np.floating)):
                raise TargetError(f"target must hold integer class indices, got {values.dtype.name} values such as "
                                  f"{values.reshape(-1)[0]!r}")
            target = torch.as_tensor(values)
        if target.is_floating_point() or target.dtype == torch.bool or target.is_complex():
            raise TargetError(f"target must hold integer class indices, got dtype {target.dtype}")
        target = target.long().reshape(-1).cpu()
        if target.numel() != count:
            raise TargetError(f"target has {target.numel()} entries but there are {count} images")
    if num_classes is not None and bool(((target < 0) | (target >= num_classes)).any()):
        bad = target[(target < 0) | (target >= num_classes)].unique().tolist()
        raise TargetError(f"target class(es) {bad[:10]} out of range: the model has {num_classes} classes "
                          f"(0 to {num_classes - 1})")
    return target


def _check_image_size(model: nn.Module, images: torch.Tensor) -> int | None:
    """The model's minimum image size, after checking that ``images`` are at least that large."""
    minimum = minimum_image_size(model)
    height, width = images.shape[2:]
    if minimum is not None and min(height, width) < minimum:
        raise InputError(f"images are {height}x{width} pixels, but this {type(model).__name__} needs at least "
                         f"{minimum}x{minimum} (its convolutions and pooling layers leave nothing of smaller "
                         "images); resize the images")
    return minimum


def _check_finite_weights(model: nn.Module) -> None:
    found = non_finite_tensors(model)
    if found:
        listed = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        raise NonFiniteWeightsError(f"the model's weights hold NaN or Inf (in {listed}), so every map would be NaN; "
                                    "was its training diverging, or its checkpoint damaged?")


def attribute(model: nn.Module, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
              method: str | Method = "epsilon_gamma_box", contrastive: bool = True, batch_size: int = 16,
              progress: bool = False, return_output: bool = False, device: str | torch.device | None = None,
              **params) -> torch.Tensor | Attribution:
    """Relevance of each pixel for the model's decision.

    The model is locked for the call (:func:`~lrp_faces.module_state.evaluation_mode`): other threads that
    attribute with the same model wait, and the model is left exactly as it was.

    Parameters
    ----------
    model : nn.Module
        A model that takes RGB images in [0, 1], such as :func:`lrp_faces.vgg16`.
    images : tensor (N, 3, H, W)
        Float RGB in [0, 1].
    target : int, sequence of int, tensor or None
        Class to explain per image; None explains the predicted class.
    method : str or Method
        A name from :func:`lrp_faces.methods.names` or a method instance.
    contrastive : bool
        Explain ``z_c - mean_{j != c} z_j`` (the default) instead of the logit ``z_c``.
    batch_size : int
        Images per forward/backward pass.
    progress : bool
        Show a progress bar.
    return_output : bool
        Also return the explained output, the prediction and the target.
    device : str or torch.device, optional
        Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (see
        :func:`lrp_faces.devices.resolve_device`). None computes where the model is. A model elsewhere is moved
        there for the call and moved back afterwards (its parameter objects stay the same); for many calls, move
        it once with ``model.to(device)``, and nothing moves. Batches go to a GPU from pinned memory.
    **params
        Parameters of the method, e.g. ``gamma=0.5``.

    Returns
    -------
    tensor (N, H, W) or Attribution
        Float32 relevance on the CPU, summed over colour channels; positive is evidence for the target.

    Raises
    ------
    InputError, TargetError
        Images or targets that do not fit the model (the message says what was expected).
    lrp_faces.parameters.ParameterError, lrp_faces.parameters.ParameterTypeError
        Method parameters out of range or of the wrong type.
    lrp_faces.model_checks.ModelStructureError
        An LRP method on a model its composite does not fit (e.g. a ResNet, or a softmax at the end).
    lrp_faces.model_checks.NonFiniteWeightsError
        NaN or Inf in the model's weights.
    lrp_faces.methods.NonFiniteRelevanceError
        NaN or Inf in the maps; the message names the images and the likely cause.
    """
    images = check_images(images)
    batch_size = checked.positive_int(batch_size, "batch_size", "attribute")
    contrastive = checked.flag(contrastive, "contrastive", "attribute")
    if isinstance(method, Method):
        if params:
            raise checked.ParameterTypeError(
                f"pass parameters either to the method instance or to attribute, not both: {params}")
    elif isinstance(method, str):
        method = method_registry.get(method, **params)
    else:
        raise checked.ParameterTypeError(f"method must be a method name (see lrp_faces.methods.names()) or a Method "
                                         f"instance, got {type(method).__name__}")
    run_device = None if device is None else resolve_device(device)
    count = images.shape[0]
    classes = _num_classes(model)
    target = _check_target(target, count, classes)
    if contrastive and (classes or 2) < 2:
        raise TargetError("the contrastive output needs at least 2 classes; use contrastive=False")
    relevance = torch.empty((count, *images.shape[2:]), dtype=torch.float32)
    output = torch.empty(count, dtype=torch.float32)
    prediction = torch.empty(count, dtype=torch.long)
    with evaluation_mode(model):
        _check_finite_weights(model)
        minimum = _check_image_size(model, images)
        with moved_to(model, run_device) as on:
            dtype = next((parameter.dtype for parameter in model.parameters()), torch.float32)
            for start in tqdm(range(0, count, batch_size), desc=f"attribute ({method.name})", unit="batch",
                              disable=not progress, leave=False):
                stop = min(start + batch_size, count)
                batch = to_device(images[start:stop], on).to(dtype)
                batch_target = None if target is None else to_device(target[start:stop], on)
                try:
                    explanation = method.explain(model, batch, batch_target, contrastive, start)
                except RuntimeError as error:
                    if "Output size is too small" not in str(error) and "Kernel size can't be greater" not in str(error):
                        raise
                    needs = f" (it needs at least {minimum}x{minimum} pixels)" if minimum else ""
                    raise InputError(f"images of {images.shape[2]}x{images.shape[3]} pixels are too small for this "
                                     f"{type(model).__name__}{needs}; resize the images") from error
                relevance[start:stop] = explanation.relevance.detach().float().cpu()
                output[start:stop] = explanation.output.detach().float().cpu()
                prediction[start:stop] = explanation.prediction.cpu()
    if not return_output:
        return relevance
    return Attribution(relevance, output, prediction, prediction.clone() if target is None else target)
