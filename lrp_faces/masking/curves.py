"""Perturbation curves and AOPC of a model on its masked images, at the forward-pass limit."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr
from scipy.integrate import trapezoid
from torch import nn
from tqdm.auto import tqdm

from ..attribution import check_images
from .config import DEFAULT_FRACTIONS, MaskingError, MaskingTypeError
from .perturbation import _config, _Masker, check_relevance

__all__ = ["curves", "aopc"]

SCORES = ("correct", "probability", "output")


def _device(model: nn.Module, default: torch.device) -> torch.device:
    parameter = next(model.parameters(), None)
    return parameter.device if parameter is not None else default


def check_labels(labels: Any, count: int, name: str = "labels") -> torch.Tensor:
    """Return ``labels`` as a long tensor (N,) after checking length and integer type."""
    labels = torch.as_tensor(np.asarray(labels) if not isinstance(labels, torch.Tensor) else labels)
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise MaskingTypeError(f"{name} must hold integer class indices, got dtype {labels.dtype}")
    labels = labels.reshape(-1).long()
    if len(labels) != count:
        raise MaskingError(f"{name} has {len(labels)} entries; expected one per image ({count})")
    if len(labels) and int(labels.min()) < 0:
        raise MaskingError(f"{name} must be class indices >= 0, got {int(labels.min())}")
    return labels


@torch.inference_mode()
def _scores(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, contrastive: bool,
            check: bool = False) -> np.ndarray:
    """(3, B): correct, probability of the true class and explained output, for one batch."""
    logits = model(batch).to(torch.float64)
    classes = logits.shape[1]
    labels = labels.to(logits.device)
    if check and int(labels.max()) >= classes:
        raise MaskingError(f"labels go up to {int(labels.max())} but the model has {classes} classes")
    if check and contrastive and classes < 2:
        raise MaskingError("the contrastive output needs a model with at least 2 classes; pass contrastive=False")
    true = logits.gather(1, labels[:, None])[:, 0]
    output = true - (logits.sum(1) - true) / (classes - 1) if contrastive else true
    probability = torch.exp(true - torch.logsumexp(logits, 1))
    correct = (logits.argmax(1) == labels).to(torch.float64)
    return torch.stack([correct, probability, output]).cpu().numpy()


class _EvalMode:
    """Put models in evaluation mode for a block and restore their modes afterwards."""

    def __init__(self, models: Sequence[nn.Module]):
        self.models = models

    def __enter__(self):
        self.modes = [model.training for model in self.models]
        for model in self.models:
            model.eval()

    def __exit__(self, *exc):
        for model, mode in zip(self.models, self.modes):
            model.train(mode)


def _original_scores(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                     contrastive: bool) -> np.ndarray:
    """(3, N) scores on the unmasked images."""
    device = _device(model, images.device)
    return np.concatenate([_scores(model, images[start:start + batch_size].to(device),
                                   labels[start:start + batch_size], contrastive, check=True)
                           for start in range(0, len(images), batch_size)], axis=1)


def _masked_scores(masker: _Masker, models: Sequence[nn.Module], labels: Sequence[torch.Tensor], batch_size: int,
                   contrastive: bool, bar=None) -> tuple[np.ndarray, np.ndarray]:
    """Scores of every model on every masked variant, each built once and forwarded in large batches.

    Fractions that hide nothing reuse the unmasked scores and fractions that hide the same number of units share
    one forward pass, so only ``N * (distinct positive counts)`` inputs are built. Returns the distinct counts (U,)
    and the scores (T, 3, U, N).
    """
    unique = np.unique(masker.counts[masker.counts > 0])
    count = len(masker.images)
    result = np.empty((len(models), 3, len(unique), count))
    image_index = torch.arange(count).repeat_interleave(len(unique))
    unit_index = torch.arange(len(unique)).repeat(count)
    unique_tensor = torch.from_numpy(unique)
    devices = [_device(model, masker.images.device) for model in models]
    for start in range(0, len(image_index), batch_size):
        images_of, units_of = image_index[start:start + batch_size], unit_index[start:start + batch_size]
        batch = masker.masked(images_of, unique_tensor[units_of])
        on_device = {}
        for target, (model, device) in enumerate(zip(models, devices)):
            if device not in on_device:
                on_device[device] = batch.to(device, non_blocking=True)
            result[target][:, units_of.numpy(), images_of.numpy()] = _scores(model, on_device[device],
                                                                             labels[target][images_of], contrastive)
        if bar is not None:
            bar.update(len(images_of))
    return unique, result


def _by_fraction(counts: np.ndarray, unique: np.ndarray, masked: np.ndarray, original: np.ndarray) -> np.ndarray:
    """(3, F, N) scores per fraction from the distinct-count scores (3, U, N) and the unmasked ones (3, N)."""
    curves = np.empty((3, len(counts), original.shape[-1]))
    positive = counts > 0
    curves[:, positive] = masked[:, np.searchsorted(unique, counts[positive])]
    curves[:, ~positive] = original[:, None]
    return curves


def aopc(original: np.ndarray, curve: np.ndarray, fractions: Sequence[float]) -> np.ndarray:
    """Area over the perturbation curve: mean over the steps with fraction > 0 of ``original - curve``.

    Samek et al. (2017) average over k = 0 .. L including the zero step k = 0; this is their value times
    (L + 1) / L, so that it does not depend on whether fraction 0 is listed.

    Parameters
    ----------
    original : ndarray (..., N)
        f(x) on the unmasked images.
    curve : ndarray (..., F, N)
        f(x_k) at each fraction.
    fractions : sequence of float (F,)

    Returns
    -------
    ndarray (..., N)
        AOPC per image.
    """
    steps = np.asarray(fractions) > 0
    if not steps.any():
        raise MaskingError("AOPC needs at least one fraction > 0")
    return (original[..., None, :] - curve[..., steps, :]).mean(-2)


def _check_batch_size(batch_size: Any, images: torch.Tensor, device: torch.device) -> int:
    """``batch_size``, or by default a power of 2 of about 2**18 pixels per batch on a CPU, 2**22 on a GPU.

    On a CPU the forward pass is fastest per image when a batch's activations fit the caches: on the reference
    machine 64 images at 64 px and 16 at 112 px, 1.5x faster than batches of 128 at 112 px.
    """
    if batch_size is None:
        budget = 2 ** 22 if device.type != "cpu" else 2 ** 18
        pixels = images.shape[-2] * images.shape[-1]
        return int(min(512, 2 ** max(0, int(np.floor(np.log2(max(budget / pixels, 1.0)))))))
    if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
        raise MaskingError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


def _curve_variables(scores: np.ndarray, original: np.ndarray, fractions: Sequence[float],
                     leading: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Curves, accuracy, AOPCs and accuracy AUC as xarray (dims, values) pairs; ``scores`` is (..., 3, F, N)."""
    dims = leading + ("fraction", "image")
    correct, probability, output = (scores[..., k, :, :] for k in range(3))
    accuracy = correct.mean(-1)
    aopc_output = aopc(original[..., 2, :], output, fractions)
    aopc_probability = aopc(original[..., 1, :], probability, fractions)
    return {"correct": (dims, correct.astype(bool)), "probability": (dims, probability), "output": (dims, output),
            "accuracy": (leading + ("fraction",), accuracy),
            "aopc_output": (leading + ("image",), aopc_output),
            "aopc_probability": (leading + ("image",), aopc_probability),
            "mean_aopc_output": (leading, aopc_output.mean(-1)),
            "mean_aopc_probability": (leading, aopc_probability.mean(-1)),
            "accuracy_auc": (leading, trapezoid(accuracy, np.asarray(fractions), axis=-1))}


def curves(model: nn.Module, images: torch.Tensor, labels: Any, relevance: Any,
           fractions: Sequence[float] = DEFAULT_FRACTIONS, order: str = "morf", fill: str = "mean", patch: int = 1,
           mode: str = "remove", seed: int = 0, *, fill_value: Any = None, blur_sigma: float | None = None,
           road_noise: float = 0.01, batch_size: int | None = None, contrastive: bool = True, progress: bool = False,
           image_ids: Sequence | None = None) -> xr.Dataset:
    """Score a model on its images masked by growing fractions of their relevance order.

    Each map is ranked once; all masked variants are built with tensor ops and fed in batches of ``batch_size``
    (variants of several images and fractions per forward pass); the unmasked forward pass is done once and
    reused for fraction 0.

    Parameters
    ----------
    model : nn.Module
        Takes (B, 3, H, W) RGB in [0, 1]; returns logits (B, C). Put in evaluation mode during the call.
    images : tensor (N, 3, H, W)
    labels : array-like of int (N,)
        True classes; probabilities, outputs and accuracy refer to them.
    relevance : tensor, ndarray or DataArray (N, H, W)
    fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise
        See :class:`MaskingConfig`.
    batch_size : int, optional
        Masked images per forward pass; default about 2**18 pixels per batch on a CPU (64 images at 64 px, 16 at
        112 px) and 2**22 on a GPU.
    contrastive : bool
        Explained output z_c - mean_{j != c} z_j (default) or the plain logit z_c.
    progress : bool
        Show a progress bar.
    image_ids : sequence, optional
        Values of the ``image`` coordinate (default 0 .. N - 1).

    Returns
    -------
    xarray.Dataset
        Over (``fraction``, ``image``): ``correct``, ``probability`` and ``output``; over ``fraction``:
        ``accuracy``; over ``image``: ``aopc_output`` and ``aopc_probability`` (see :func:`aopc`); scalars
        ``mean_aopc_output``, ``mean_aopc_probability`` and ``accuracy_auc`` (trapezoid over the fractions given).
        Coordinates: ``fraction``, ``hidden_units`` (pixels or patches hidden), ``image``, ``label``.
    """
    images = check_images(images)
    config = _config(fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise)
    if not any(value > 0 for value in config.fractions):
        raise MaskingError(f"fractions must include at least one value > 0 for AOPC, got {list(config.fractions)}")
    labels = check_labels(labels, len(images))
    batch_size = _check_batch_size(batch_size, images, _device(model, images.device))
    masker = _Masker(images, check_relevance(relevance, images), config)
    if image_ids is not None and len(image_ids) != len(images):
        raise MaskingError(f"image_ids has {len(image_ids)} entries; expected one per image ({len(images)})")
    with _EvalMode([model]):
        original = _original_scores(model, images, labels, batch_size, contrastive)
        total = len(images) * len(np.unique(masker.counts[masker.counts > 0]))
        with tqdm(total=total, desc="masking", unit="image", disable=not progress, leave=False) as bar:
            unique, masked = _masked_scores(masker, [model], [labels], batch_size, contrastive, bar)
    scores = _by_fraction(masker.counts, unique, masked[0], original)
    variables = _curve_variables(scores, original, config.fractions)
    coords = {"fraction": list(config.fractions), "hidden_units": ("fraction", masker.counts),
              "image": list(image_ids) if image_ids is not None else np.arange(len(images)),
              "label": ("image", labels.numpy())}
    attrs = {**config.attrs(), "contrastive": int(contrastive), "units": masker.ranking.units,
             "aopc": "mean over fractions > 0 of f(original) - f(masked)"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
