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
from ._engine import SCORES, BlockScores, check_precision, compute_device, score_block
from ._inputs import check_labels, check_relevance, fill_colours, rows_per_pass
from .config import MaskingConfig, MaskingError, hidden_counts, masking_config, unit_count

_SHARE = {"remove": "hidden", "keep": "kept"}

__all__ = ["curves", "curves_block", "assemble_curves", "aopc", "aopc_definition", "check_aopc_fractions",
           "curve_variables"]


def aopc(original: np.ndarray, curve: np.ndarray, fractions: Sequence[float], mode: str = "remove") -> np.ndarray:
    """Area over the perturbation curve, signed so that with ``order="morf"`` a better map scores higher.

    ``remove`` (deletion): the mean over the steps with fraction > 0 of ``original - curve``, the drop when the
    first units of the order are hidden. Samek et al. (2017) average over k = 0 .. L including the zero step k = 0;
    this is their value times (L + 1) / L, so that it does not depend on whether fraction 0 is listed.

    ``keep`` (insertion, preservation): the mean over the steps with fraction < 1 of ``curve - original``, minus the
    drop when only the first units of the order are kept. A map whose top units preserve the decision scores near
    0 (or above); one that keeps the wrong units scores far below.

    Parameters
    ----------
    original : ndarray (..., N)
        f(x) on the unmasked images.
    curve : ndarray (..., F, N)
        f(x_k) at each fraction.
    fractions : sequence of float (F,)
    mode : {"remove", "keep"}

    Returns
    -------
    ndarray (..., N)
        AOPC per image.
    """
    steps = check_aopc_fractions(fractions, mode)
    difference = original[..., None, :] - curve[..., steps, :]
    return (difference if mode == "remove" else -difference).mean(-2)


def check_aopc_fractions(fractions: Sequence[float], mode: str) -> np.ndarray:
    """The steps AOPC averages over (fractions > 0 for ``remove``, < 1 for ``keep``); raise if there are none."""
    fractions = np.asarray(fractions, dtype=np.float64)
    if mode == "remove":
        steps = fractions > 0
        if not steps.any():
            raise MaskingError(f"fractions must include at least one value > 0 for AOPC with mode='remove', got "
                               f"{fractions.tolist()}")
    elif mode == "keep":
        steps = fractions < 1
        if not steps.any():
            raise MaskingError(f"fractions must include at least one value < 1 for AOPC with mode='keep', got "
                               f"{fractions.tolist()}")
    else:
        raise MaskingError(f"mode must be 'remove' or 'keep', got {mode!r}")
    return steps


def aopc_definition(mode: str) -> str:
    """What AOPC means for ``mode``, for the attributes of results."""
    if mode == "remove":
        return ("mean over fractions > 0 of f(original) - f(masked), the first fraction of the order hidden; with "
                "order 'morf' a better map scores higher")
    return ("mean over fractions < 1 of f(masked) - f(original), only the first fraction of the order kept; with "
            "order 'morf' a better map scores higher")


def curve_variables(scores: np.ndarray, original: np.ndarray, fractions: Sequence[float], mode: str,
                    leading: tuple[str, ...] = ()) -> dict[str, tuple]:
    """Curves, accuracy, AOPCs and accuracy AUC as xarray (dims, values) pairs; ``scores`` is (..., 3, F, N)."""
    dims = leading + ("fraction", "image")
    correct, probability, output = (scores[..., k, :, :] for k in range(len(SCORES)))
    accuracy = correct.mean(-1)
    aopc_output = aopc(original[..., 2, :], output, fractions, mode)
    aopc_probability = aopc(original[..., 1, :], probability, fractions, mode)
    return {"correct": (dims, correct.astype(bool)), "probability": (dims, probability), "output": (dims, output),
            "accuracy": (leading + ("fraction",), accuracy),
            "aopc_output": (leading + ("image",), aopc_output),
            "aopc_probability": (leading + ("image",), aopc_probability),
            "mean_aopc_output": (leading, aopc_output.mean(-1)),
            "mean_aopc_probability": (leading, aopc_probability.mean(-1)),
            "accuracy_auc": (leading, trapezoid(accuracy, np.asarray(fractions), axis=-1))}


def curves_block(model: nn.Module, images: torch.Tensor, maps: Any, labels: Any, config: MaskingConfig, *,
                 image_index: Sequence[int], fill_colours: torch.Tensor | None = None, batch_size: int | None = None,
                 contrastive: bool = True, device: str | torch.device | None = None,
                 precision: str = "float32") -> BlockScores:
    """Score one model on one block of images masked by its maps: a unit of :func:`own_map_curves`.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device`` (in place) and put in evaluation mode for the call.
    images : tensor (n, 3, H, W)
        The block's images.
    maps : tensor, ndarray or DataArray (n, H, W)
        Their relevance maps (ignored but checked for ``order="random"``).
    labels : array-like of int (n,)
    config : MaskingConfig
    image_index : sequence of int (n,)
        The images' positions among all images of the step: they key each image's random draws, so every split
        into blocks gives the same numbers.
    fill_colours : tensor (n, 3), optional
        Needed by the ``mean`` and ``road`` fills: these images' rows of the colours resolved over all images
        (:attr:`CubeInputs.fill_colours`).
    batch_size : int, optional
        Rows of every forward pass; give every unit of a step the same value (:meth:`CubeInputs.batch_size`).
    contrastive, device, precision
        As for :func:`curves`.

    Returns
    -------
    BlockScores
        ``unmasked`` (3, n) and ``masked`` (3, F, n); join blocks with :meth:`BlockScores.concatenate` and build
        the result with :func:`assemble_curves`.
    """
    images = check_images(images)
    labels = check_labels(labels, len(images))
    scores = score_block(model, images, [maps], labels, config, image_index=image_index, fill_colours=fill_colours,
                         batch_size=batch_size, contrastive=contrastive, device=device, precision=precision)
    return BlockScores(scores.unmasked, scores.masked[0])


def assemble_curves(scores: BlockScores, config: MaskingConfig, *, units: int, labels: Any,
                    image_ids: Sequence | None = None, contrastive: bool = True,
                    precision: str = "float32") -> xr.Dataset:
    """The :func:`curves` dataset of one model from its scores over all images (:func:`curves_block`).

    ``units`` is the number of pixels (or patches) of an image; ``labels`` the images' classes.
    """
    count = scores.unmasked.shape[-1]
    labels = check_labels(labels, count)
    if image_ids is not None and len(image_ids) != count:
        raise MaskingError(f"image_ids has {len(image_ids)} entries; expected one per image ({count})")
    variables = curve_variables(scores.masked, scores.unmasked, config.fractions, config.mode)
    coords = {"fraction": list(config.fractions),
              "hidden_units": ("fraction", hidden_counts(config.fractions, units, config.mode)),
              "image": list(image_ids) if image_ids is not None else np.arange(count),
              "label": ("image", labels.numpy())}
    attrs = {**config.attrs(), "contrastive": int(contrastive), "units": units,
             "precision": check_precision(precision), "aopc": aopc_definition(config.mode),
             "accuracy_auc": f"trapezoid of accuracy over the fractions {_SHARE[config.mode]}"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)


def curves(model: nn.Module, images: torch.Tensor, labels: Any, relevance: Any, config: MaskingConfig | None = None,
           *, batch_size: int | None = None, contrastive: bool = True, device: str | torch.device | None = None,
           precision: str = "float32", progress: bool = False, image_ids: Sequence | None = None,
           **overrides: Any) -> xr.Dataset:
    """Score a model on its images masked by growing fractions of their relevance order.

    Each map is ranked once; all masked variants are built with tensor ops and fed in batches of ``batch_size``
    (variants of several images and fractions per forward pass); the unmasked forward pass is done once and
    reused for fractions that hide nothing.

    Parameters
    ----------
    model : nn.Module
        Takes (B, 3, H, W) RGB in [0, 1]; returns logits (B, C). Put in evaluation mode during the call.
    images : tensor (N, 3, H, W)
    labels : array-like of int (N,)
        True classes; probabilities, outputs and accuracy refer to them.
    relevance : tensor, ndarray or DataArray (N, H, W)
    config : MaskingConfig, optional
        The masking settings (default ``MaskingConfig()``).
    batch_size : int, optional
        Masked images per forward pass; default about 2**18 pixels per batch on a CPU (64 images at 64 px, 16 at
        112 px) and 2**22 on a GPU, but no more than the masked images per fraction. Every pass has exactly this
        many rows (a short last batch is padded).
    contrastive : bool
        Explained output z_c - mean_{j != c} z_j (default) or the plain logit z_c.
    device : str or torch.device, optional
        Where the model runs (it is moved there); default: where its parameters are.
    precision : {"float32", "bfloat16"}
        Number format of the forward passes (bfloat16 through ``torch.autocast``); recorded in the attributes.
    progress : bool
        Show a progress bar.
    image_ids : sequence, optional
        Values of the ``image`` coordinate (default 0 .. N - 1).
    **overrides
        Fields of :class:`MaskingConfig` that replace the config's: ``fractions``, ``order``, ``fill``, ``patch``,
        ``mode``, ``seed``, ``fill_value``, ``blur_sigma``, ``road_noise``. They are keyword-only.

    Returns
    -------
    xarray.Dataset
        Over (``fraction``, ``image``): ``correct``, ``probability`` and ``output``; over ``fraction``:
        ``accuracy``; over ``image``: ``aopc_output`` and ``aopc_probability`` (see :func:`aopc`; its definition
        for the mode is the ``aopc`` attribute); scalars ``mean_aopc_output``, ``mean_aopc_probability`` and
        ``accuracy_auc`` (trapezoid over the fractions given). Coordinates: ``fraction``, ``hidden_units`` (pixels
        or patches hidden), ``image``, ``label``.

    Examples
    --------
    >>> from torch import nn
    >>> from lrp_faces.masking import curves
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> images, relevance = torch.rand(4, 3, 8, 8), torch.randn(4, 8, 8)
    >>> result = curves(model, images, [0, 1, 0, 1], relevance, fractions=(0.0, 0.5, 1.0), mode="keep")
    >>> result.output.dims, result.attrs["mode"]
    (('fraction', 'image'), 'keep')
    """
    config = masking_config(config, overrides)
    images = check_images(images)
    check_aopc_fractions(config.fractions, config.mode)
    precision = check_precision(precision)
    labels = check_labels(labels, len(images))
    relevance = check_relevance(relevance, images)
    units = unit_count(images.shape, config.patch)
    if image_ids is not None and len(image_ids) != len(images):
        raise MaskingError(f"image_ids has {len(image_ids)} entries; expected one per image ({len(images)})")
    counts = hidden_counts(config.fractions, units, config.mode)
    total = len(images) * len(np.unique(counts[counts > 0]))
    batch_size = rows_per_pass(batch_size, images.shape, compute_device(model, device), len(images), config)
    with tqdm(total=total, desc="masking", unit="image", disable=not progress, leave=False) as bar:
        scores = score_block(model, images, [relevance], labels, config, image_index=np.arange(len(images)),
                             fill_colours=fill_colours(images, config), batch_size=batch_size,
                             contrastive=contrastive, device=device, precision=precision, bar=bar)
    return assemble_curves(BlockScores(scores.unmasked, scores.masked[0]), config, units=units, labels=labels,
                           image_ids=image_ids, contrastive=contrastive, precision=precision)
