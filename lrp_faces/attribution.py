"""``attribute``: relevance maps for a batch of images, in batches, with the model restored afterwards."""
from __future__ import annotations

from contextlib import contextmanager
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from zennit.core import collect_leaves

from . import methods as method_registry
from .methods import Method
from .errors import LRPFacesError

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


def _num_classes(model: nn.Module) -> int | None:
    linears = [leaf for leaf in collect_leaves(model) if isinstance(leaf, nn.Linear)]
    return linears[-1].out_features if linears else None


def _check_target(target, count: int, num_classes: int | None) -> torch.Tensor | None:
    if target is None:
        return None
    if isinstance(target, (int, np.integer)) and not isinstance(target, bool):
        target = torch.full((count,), int(target), dtype=torch.long)
    else:
        target = torch.as_tensor(np.asarray(target) if not isinstance(target, torch.Tensor) else target)
        if target.is_floating_point() or target.dtype == torch.bool:
            raise TargetError(f"target must hold integer class indices, got dtype {target.dtype}")
        target = target.long().reshape(-1)
        if target.numel() != count:
            raise TargetError(f"target has {target.numel()} entries but there are {count} images")
    if num_classes is not None and bool(((target < 0) | (target >= num_classes)).any()):
        bad = target[(target < 0) | (target >= num_classes)].unique().tolist()
        raise TargetError(f"target class(es) {bad[:10]} out of range: the model has {num_classes} classes "
                          f"(0 to {num_classes - 1})")
    return target


@contextmanager
def attribution_mode(model: nn.Module):
    """Evaluation mode with parameter gradients off; both restored on exit, also after an error."""
    training = {module: module.training for module in model.modules()}
    requires_grad = {parameter: parameter.requires_grad for parameter in model.parameters()}
    try:
        model.eval()
        for parameter in requires_grad:
            parameter.requires_grad_(False)
        yield model
    finally:
        for module, mode in training.items():
            module.training = mode
        for parameter, flag in requires_grad.items():
            parameter.requires_grad_(flag)


def attribute(model: nn.Module, images: torch.Tensor, target: int | Sequence[int] | torch.Tensor | None = None,
              method: str | Method = "epsilon_gamma_box", contrastive: bool = True, batch_size: int = 16,
              progress: bool = False, return_output: bool = False, **params) -> torch.Tensor | Attribution:
    """Relevance of each pixel for the model's decision.

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
    **params
        Parameters of the method, e.g. ``gamma=0.5``.

    Returns
    -------
    tensor (N, H, W) or Attribution
        Float32 relevance on the CPU, summed over colour channels; positive is evidence for the target.
    """
    images = check_images(images)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    if isinstance(method, Method):
        if params:
            raise TypeError(f"pass parameters either to the method instance or to attribute, not both: {params}")
    else:
        method = method_registry.get(method, **params)
    count = images.shape[0]
    target = _check_target(target, count, _num_classes(model))
    if contrastive and (_num_classes(model) or 2) < 2:
        raise ValueError("the contrastive output needs at least 2 classes; use contrastive=False")
    reference = next(model.parameters(), None)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None else torch.float32
    relevance = torch.empty((count, *images.shape[2:]), dtype=torch.float32)
    output = torch.empty(count, dtype=torch.float32)
    prediction = torch.empty(count, dtype=torch.long)
    with attribution_mode(model):
        for start in tqdm(range(0, count, batch_size), desc=f"attribute ({method.name})", unit="batch",
                          disable=not progress, leave=False):
            stop = min(start + batch_size, count)
            batch_target = None if target is None else target[start:stop].to(device)
            explanation = method.explain(model, images[start:stop].to(device=device, dtype=dtype), batch_target, contrastive, start)
            relevance[start:stop] = explanation.relevance.detach().float().cpu()
            output[start:stop] = explanation.output.float().cpu()
            prediction[start:stop] = explanation.prediction.cpu()
    if not return_output:
        return relevance
    return Attribution(relevance, output, prediction, prediction.clone() if target is None else target)
