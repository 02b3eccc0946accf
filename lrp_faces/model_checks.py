"""What explaining a model assumes about it, checked before the work starts.

- :func:`logits_of` runs the model and insists on one (N, classes) tensor of logits;
- :func:`minimum_image_size` is the smallest square image the model's convolutions and pooling layers take;
- :func:`non_finite_tensors` names the weights that hold NaN or Inf;
- :func:`check_lrp_structure` refuses models that the LRP composites do not fit: anything but a chain of
  VGG-like layers that ends in a Linear head, such as a softmax at the end or a residual add.

>>> from torch import nn
>>> minimum_image_size(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.MaxPool2d(2), nn.MaxPool2d(2)))
4
"""
from __future__ import annotations

import threading
import weakref
from collections.abc import Mapping

import torch
from torch import nn

from .errors import LRPFacesError
from .nn import PixelNorm

__all__ = ["ModelStructureError", "ModelOutputError", "NonFiniteWeightsError", "logits_of", "minimum_image_size", "non_finite_tensors",
           "check_lrp_structure", "CHAIN_LAYERS", "PROBABILITY_LAYERS"]

CHAIN_LAYERS = (PixelNorm, nn.Conv2d, nn.BatchNorm1d, nn.BatchNorm2d, nn.ReLU, nn.MaxPool2d, nn.AvgPool2d,
                nn.AdaptiveAvgPool2d, nn.Dropout, nn.Flatten, nn.Linear, nn.Identity)
"""The layer types the LRP composites have rules (or exact pass-throughs) for."""

PROBABILITY_LAYERS = (nn.Softmax, nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.Sigmoid, nn.LogSigmoid)
"""Layers that turn logits into probabilities: LRP explains logits."""

_PASS_THROUGH = (nn.Dropout, nn.Identity)
_CHECKED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()
_CHECKED_GUARD = threading.Lock()


class ModelStructureError(LRPFacesError, ValueError):
    """A model whose structure the method does not fit (the message says what was found and what to do)."""


class ModelOutputError(LRPFacesError, ValueError):
    """A model whose output is not one (N, classes) tensor of logits."""


class NonFiniteWeightsError(LRPFacesError, ValueError):
    """A model whose weights hold NaN or Inf."""


def logits_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """``model(images)``, checked to be a tensor of shape (N, classes) with N the number of images."""
    logits = model(images)
    if not isinstance(logits, torch.Tensor):
        raise ModelOutputError(
            f"{type(model).__name__} returned a {type(logits).__name__}, not a tensor: lrp_faces explains models that "
            "return one (N, classes) tensor of logits; wrap the model so that forward() returns only the logits")
    if logits.ndim != 2 or logits.shape[0] != images.shape[0]:
        raise ModelOutputError(
            f"{type(model).__name__} returned shape {tuple(logits.shape)} for {images.shape[0]} image(s); expected "
            f"({images.shape[0]}, classes): one row of class logits per image")
    return logits


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(name or type(model).__name__, module) for name, module in model.named_modules()
            if next(module.children(), None) is None]


def _pair(value) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool) -> int:
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if span < 0:
        return 0
    return (-(-span // stride) if ceil_mode else span // stride) + 1


def _final_size(layers: list[nn.Module], size: int, dimension: int) -> int:
    """The size of one spatial dimension after ``layers``; 0 once a layer has no room left."""
    for layer in layers:
        if isinstance(layer, nn.Conv2d) and isinstance(layer.padding, str):
            padding = 0 if layer.padding == "valid" else None
        else:
            padding = _pair(layer.padding)[dimension]
        if padding is None:  # padding="same" keeps the size
            continue
        dilation = _pair(getattr(layer, "dilation", 1))[dimension]
        size = _output_size(size, _pair(layer.kernel_size)[dimension], _pair(layer.stride)[dimension], padding,
                            dilation, bool(getattr(layer, "ceil_mode", False)))
        if size < 1:
            return 0
    return size


def minimum_image_size(model: nn.Module, limit: int = 4096) -> int | None:
    """The smallest height and width the model's Conv2d, MaxPool2d and AvgPool2d layers take, in pixels.

    32 for VGG-16 (five poolings halve the size). None if the model has none of these layers, or needs more than
    ``limit`` pixels.
    """
    layers = [leaf for _, leaf in _leaves(model) if isinstance(leaf, (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))]
    if not layers:
        return None
    return next((size for size in range(1, limit + 1)
                 if _final_size(layers, size, 0) >= 1 and _final_size(layers, size, 1) >= 1), None)


def non_finite_tensors(weights: nn.Module | Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the floating-point parameters and buffers (or state-dict entries) that hold NaN or Inf."""
    if isinstance(weights, nn.Module):
        tensors = [*weights.named_parameters(), *weights.named_buffers()]
    else:
        tensors = list(weights.items())
    found = []
    for name, tensor in tensors:
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point() and tensor.numel():
            low, high = torch.aminmax(tensor.detach())  # NaN propagates; no tensor-sized temporary
            if not (bool(torch.isfinite(low)) and bool(torch.isfinite(high))):
                found.append(name)
    return found


def _refuse(method: str, model: nn.Module, found: str, advice: str) -> ModelStructureError:
    return ModelStructureError(f"{method} cannot explain this {type(model).__name__}: {found}. {advice}")


_OTHER_ARCHITECTURES = ("The LRP composites fit VGG-like chains (a PixelNorm, then Conv2d, ReLU and pooling layers, then "
                        "Linear layers); use method='gradient' (or gradient_x_input, smoothgrad, integrated_gradients) "
                        "for other architectures")


def _fingerprint(leaves: list[tuple[str, nn.Module]], example: torch.Tensor) -> tuple:
    return tuple((name, type(module)) for name, module in leaves) + (tuple(example.shape[1:]),)


def check_lrp_structure(model: nn.Module, example: torch.Tensor, method: str = "LRP") -> None:
    """Refuse a model that the LRP composites do not fit, saying what was found and what to do.

    The model must consist of :data:`CHAIN_LAYERS` only, contain none of :data:`PROBABILITY_LAYERS`, end in an
    ``nn.Linear``, and be a plain chain: running its leaf modules one after another (flattening before the first
    Linear) must reproduce its output on ``example``. That last test sees what a list of layer types cannot, such
    as a residual add or a concatenation in ``forward()``. A model that passed is remembered (by its module names
    and types and the image shape) and not run again.

    Parameters
    ----------
    model : nn.Module
        In evaluation mode.
    example : tensor (1, 3, H, W)
        One image the model takes.
    method : str
        The method's name, for the message.

    Raises
    ------
    ModelStructureError
    """
    leaves = _leaves(model)
    fingerprint = _fingerprint(leaves, example)
    with _CHECKED_GUARD:
        if _CHECKED.get(model) == fingerprint:
            return
    for name, leaf in leaves:
        if isinstance(leaf, PROBABILITY_LAYERS):
            raise _refuse(method, model, f"it has a {type(leaf).__name__} at {name!r}",
                          "LRP explains the logits, not probabilities: drop the "
                          f"{type(leaf).__name__} (e.g. explain model[:-1] or the network without it); the default "
                          "contrastive output of two classes is already their log-odds")
    others = [f"{type(leaf).__name__} at {name!r}" for name, leaf in leaves if not isinstance(leaf, CHAIN_LAYERS)]
    if others:
        listed = ", ".join(others[:5]) + (f" and {len(others) - 5} more" if len(others) > 5 else "")
        raise _refuse(method, model, f"it has layers the LRP rules do not cover: {listed}", _OTHER_ARCHITECTURES)
    heads = [(name, leaf) for name, leaf in leaves if not isinstance(leaf, _PASS_THROUGH)]
    if not heads or not isinstance(heads[-1][1], nn.Linear):
        last = f"{type(heads[-1][1]).__name__} at {heads[-1][0]!r}" if heads else "no layers"
        raise _refuse(method, model, f"it ends in {last}, not in a Linear layer", _OTHER_ARCHITECTURES)
    _check_chain(model, leaves, example, method)
    with _CHECKED_GUARD:
        _CHECKED[model] = fingerprint


def _check_chain(model: nn.Module, leaves: list[tuple[str, nn.Module]], example: torch.Tensor, method: str) -> None:
    """Running the leaves in order must give the model's output."""
    with torch.no_grad():
        expected = model(example)
        if not isinstance(expected, torch.Tensor) or not bool(torch.isfinite(expected).all()):
            return  # the output checks report these
        chained = example.clone()
        try:
            for _, leaf in leaves:
                if isinstance(leaf, nn.Linear) and chained.ndim > 2:
                    chained = torch.flatten(chained, 1)
                chained = leaf(chained)
        except RuntimeError as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise _refuse(method, model, f"running its layers one after another fails ({first_line[:200]}), so it is "
                          "not a plain chain of layers (a residual add, a concatenation or another operation in "
                          "forward()?)", _OTHER_ARCHITECTURES) from error
    scale = float(expected.abs().max())
    if chained.shape != expected.shape or not float((chained - expected).abs().max()) <= 1e-4 * scale + 1e-12:
        raise _refuse(method, model, "running its layers one after another does not reproduce its output, so it is "
                      "not a plain chain of layers (a residual add, a concatenation or another operation in "
                      "forward()?)", _OTHER_ARCHITECTURES)
