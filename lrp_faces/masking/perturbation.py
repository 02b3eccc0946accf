"""Hide a growing share of each image's pixels in the order of a relevance map: orders, patches, modes and fills."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple

import torch

from ..attribution import check_images
from ._engine import Ranking, gaussian_blur, masked_images
from ._inputs import check_relevance
from .config import MaskingConfig, MaskingError, hidden_counts, masking_config

__all__ = ["perturb", "perturbed_batches", "hidden_masks", "gaussian_blur", "MaskedBatch", "check_relevance"]


class MaskedBatch(NamedTuple):
    """One batch of :func:`perturbed_batches`: masked images and which image and fraction each one is."""

    image_index: torch.Tensor  #: (B,) int64, index into the N images
    fraction_index: torch.Tensor  #: (B,) int64, index into the fractions
    images: torch.Tensor  #: (B, 3, H, W) masked images


def hidden_masks(relevance: Any, config: MaskingConfig | None = None, **overrides: Any) -> torch.Tensor:
    """Which pixels :func:`perturb` hides, without building images.

    Parameters
    ----------
    relevance : tensor, ndarray or DataArray (N, H, W)
    config : MaskingConfig, optional
        Its ``fractions``, ``order``, ``patch``, ``mode`` and ``seed`` are used.
    **overrides
        Fields of :class:`MaskingConfig` that replace the config's, e.g. ``order="lerf"``.

    Returns
    -------
    torch.Tensor of bool (N, F, H, W)
    """
    config = masking_config(config, overrides)
    relevance = torch.as_tensor(relevance.values if hasattr(relevance, "dims") else relevance)
    if relevance.ndim != 3:
        raise MaskingError(f"relevance must have shape (N, H, W), got {tuple(relevance.shape)}")
    relevance = check_relevance(relevance, (relevance.shape[0], 3) + tuple(relevance.shape[1:]))
    ranking = Ranking(relevance, config, range(len(relevance)))
    counts = torch.from_numpy(hidden_counts(config.fractions, ranking.units, config.mode))
    image_index = torch.arange(len(relevance)).repeat_interleave(len(counts))
    hidden = ranking.hidden(image_index, counts.repeat(len(relevance)))
    return hidden.view(len(relevance), len(counts), *hidden.shape[1:])


def perturbed_batches(images: torch.Tensor, relevance: Any, config: MaskingConfig | None = None, *,
                      batch_size: int = 256, **overrides: Any) -> Iterator[MaskedBatch]:
    """Yield the masked images of :func:`perturb` in batches of ``batch_size`` (image, fraction) pairs.

    Pairs come image-major (all fractions of image 0, then image 1, ...). Each map is ranked once, up front, and
    every random draw is made per image, so the result does not depend on ``batch_size``.
    """
    images = check_images(images)
    config = masking_config(config, overrides)
    relevance = check_relevance(relevance, images)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MaskingError(f"batch_size must be a positive integer, got {batch_size!r}")
    for image_index, fraction_index, masked in masked_images(images, relevance, config, batch_size):
        yield MaskedBatch(image_index, fraction_index, masked)


def perturb(images: torch.Tensor, relevance: Any, config: MaskingConfig | None = None, *, batch_size: int = 256,
            **overrides: Any) -> torch.Tensor:
    """Hide (or keep) a growing share of each image's pixels, ordered by its relevance map.

    Parameters
    ----------
    images : tensor (N, 3, H, W)
        RGB in [0, 1].
    relevance : tensor, ndarray or DataArray (N, H, W)
        One map per image; finite.
    config : MaskingConfig, optional
        The masking settings (default ``MaskingConfig()``).
    batch_size : int
        Pairs built at once (bounds the memory of ROAD's systems); the result does not depend on it.
    **overrides
        Fields of :class:`MaskingConfig` that replace the config's: ``fractions``, ``order``, ``fill``, ``patch``,
        ``mode``, ``seed``, ``fill_value``, ``blur_sigma``, ``road_noise``. They are keyword-only.

    Returns
    -------
    torch.Tensor (N, F, 3, H, W)
        ``result[i, j]`` is image i with ``round(fractions[j] * units)`` units hidden (``remove``) or kept
        (``keep``). For large sets use :func:`perturbed_batches`, which yields the same images batch by batch.

    Examples
    --------
    >>> from lrp_faces.masking import perturb
    >>> images, relevance = torch.rand(2, 3, 8, 8), torch.randn(2, 8, 8)
    >>> perturb(images, relevance, fractions=(0.0, 0.5, 1.0), fill="blur").shape
    torch.Size([2, 3, 3, 8, 8])
    """
    images = check_images(images)
    config = masking_config(config, overrides)
    result = images.new_empty((len(images), len(config.fractions)) + tuple(images.shape[1:]))
    for batch in perturbed_batches(images, relevance, config, batch_size=batch_size):
        result[batch.image_index, batch.fraction_index] = batch.images
    return result
