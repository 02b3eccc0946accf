"""Hide a growing share of each image's pixels in the order of a relevance map: orders, patches, modes and fills."""
from __future__ import annotations

from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..attribution import check_images
from .config import (DEFAULT_FRACTIONS, MaskingConfig, MaskingError, MaskingTypeError, hidden_counts,
                     seeded_generator)
from .road import RoadCache, road_cache, road_impute

__all__ = ["perturb", "perturbed_batches", "hidden_masks", "gaussian_blur", "MaskedBatch", "check_relevance"]


class MaskedBatch(NamedTuple):
    """One batch of :func:`perturbed_batches`: masked images and which image and fraction each one is."""

    image_index: torch.Tensor  #: (B,) int64, index into the N images
    fraction_index: torch.Tensor  #: (B,) int64, index into the fractions
    images: torch.Tensor  #: (B, 3, H, W) masked images


def check_relevance(relevance: Any, images: torch.Tensor | tuple, name: str = "relevance") -> torch.Tensor:
    """Return ``relevance`` as a tensor (N, H, W) after checking it matches ``images`` (or their shape), is finite.

    Accepts a tensor, a numpy array or an xarray DataArray (e.g. one model's slice of a cube).
    """
    if hasattr(relevance, "dims") and hasattr(relevance, "values"):  # xarray
        relevance = relevance.values
    if isinstance(relevance, np.ndarray):
        relevance = torch.from_numpy(relevance)
    if not isinstance(relevance, torch.Tensor):
        raise MaskingTypeError(f"{name} must be a tensor, numpy array or DataArray of shape (N, H, W), "
                               f"got {type(relevance).__name__}")
    if not (relevance.is_floating_point() or relevance.dtype in (torch.int32, torch.int64)):
        raise MaskingTypeError(f"{name} must hold real numbers, got dtype {relevance.dtype}")
    shape = tuple(images.shape) if isinstance(images, torch.Tensor) else tuple(images)
    expected = (shape[0],) + shape[2:]
    if tuple(relevance.shape) != expected:
        raise MaskingError(f"{name} has shape {tuple(relevance.shape)}; expected (N, H, W) = {expected} to match "
                           f"images of shape {shape} (relevance is summed over colour channels)")
    finite = torch.isfinite(relevance.reshape(len(relevance), -1)).all(1)
    if not bool(finite.all()):
        bad = (~finite).nonzero()[:, 0].tolist()
        raise MaskingError(f"{name} contains NaN or Inf values, in image(s) {bad[:10]}")
    return relevance.to(images.device) if isinstance(images, torch.Tensor) else relevance


def _check_patch(patch: int, height: int, width: int) -> None:
    if height % patch or width % patch:
        raise MaskingError(f"patch={patch} does not divide the image size {height}x{width}; choose a patch size "
                           f"that divides both, e.g. one of {_divisors(height, width)}")


def _divisors(height: int, width: int) -> list[int]:
    return [size for size in range(1, min(height, width) + 1) if height % size == 0 and width % size == 0]


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian-blur each channel: separable kernel truncated at ``int(3 * sigma + 0.5)`` px, borders replicated.

    This matches ``scipy.ndimage.gaussian_filter(image, sigma, mode="nearest", truncate=3.0)`` per channel.
    """
    radius = int(3.0 * sigma + 0.5)
    if radius == 0:
        return images.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype).to(images.device)
    channels = images.shape[1]
    blurred = F.conv2d(F.pad(images, (radius, radius, 0, 0), mode="replicate"),
                       kernel.view(1, 1, 1, -1).expand(channels, 1, 1, -1), groups=channels)
    return F.conv2d(F.pad(blurred, (0, 0, radius, radius), mode="replicate"),
                    kernel.view(1, 1, -1, 1).expand(channels, 1, -1, 1), groups=channels)


class _Ranking:
    """Where each patch of each image comes in the hiding order, computed once per relevance map."""

    def __init__(self, relevance: torch.Tensor, config: MaskingConfig):
        count, height, width = relevance.shape
        patch = config.patch
        _check_patch(patch, height, width)
        self.height, self.width, self.patch = height, width, patch
        self.grid = (height // patch, width // patch)
        self.units = self.grid[0] * self.grid[1]
        self.mode = config.mode
        if config.order == "random":
            keys = torch.rand((count, self.units), generator=seeded_generator(config.seed, "order"),
                              dtype=torch.float64).to(relevance.device)
            order = torch.sort(keys, dim=1, stable=True).indices
        else:
            # float64 sums of float32 relevance are exact for patches of similar magnitude: no order-dependent ties
            scores = relevance.to(torch.float64).reshape(count, self.grid[0], patch, self.grid[1], patch)
            scores = scores.sum((2, 4)).reshape(count, self.units)
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower index first
            if config.order == "lerf":
                order = order.flip(1)
        dtype = torch.int32 if self.units < 2 ** 31 else torch.int64
        self.positions = torch.empty((count, self.units), dtype=dtype, device=relevance.device)
        self.positions.scatter_(1, order, torch.arange(self.units, dtype=dtype, device=order.device).expand_as(order))

    def hidden(self, image_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Boolean (B, H, W): the pixels hidden in image ``image_index[b]`` when ``counts[b]`` units are hidden."""
        positions = self.positions[image_index]
        counts = counts.to(positions.device, positions.dtype)[:, None]
        hidden = positions < counts if self.mode == "remove" else positions >= self.units - counts
        rows, columns = self.grid
        patch = self.patch
        if patch == 1:
            return hidden.view(-1, rows, columns)
        return (hidden.view(-1, rows, 1, columns, 1).expand(-1, rows, patch, columns, patch)
                .reshape(-1, self.height, self.width))


class _Fills:
    """The values hidden pixels take, drawn or computed once for an image set and shared by every ranking."""

    def __init__(self, images: torch.Tensor, config: MaskingConfig, road_cache: RoadCache | None = road_cache):
        self.images = images
        self.config = config
        self.cache = road_cache
        count, _, height, width = images.shape
        fill = config.fill
        self.colour = self.per_image = self.road_noise = None
        if fill in ("mean", "road", "zero"):
            if fill == "zero":
                colour = torch.zeros(3, dtype=torch.float64)
            elif config.fill_value is not None:
                colour = torch.tensor(config.fill_value, dtype=torch.float64)
                if colour.ndim == 2 and colour.shape[0] != count:
                    raise MaskingError(f"fill_value has {colour.shape[0]} colours; expected one per image ({count})")
            else:
                colour = images.to(torch.float64).mean((0, 2, 3))
            self.colour = colour.to(images.dtype).to(images.device).view(-1, 3, 1, 1)
        if fill == "blur":
            sigma = config.blur_sigma if config.blur_sigma is not None else max(height, width) / 16
            self.per_image = gaussian_blur(images, sigma)
        elif fill == "noise":
            self.per_image = torch.rand(images.shape, generator=seeded_generator(config.seed, "noise"),
                                        dtype=images.dtype).to(images.device)
        elif fill == "road" and config.road_noise > 0:
            noise = torch.randn(images.shape, generator=seeded_generator(config.seed, "road"), dtype=torch.float64)
            self.road_noise = (config.road_noise * noise).to(images.dtype).to(images.device)

    def masked(self, image_index: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The images ``image_index`` with their ``hidden`` pixels filled, (B, 3, H, W)."""
        masked = self.images.index_select(0, image_index.to(self.images.device))
        if self.config.fill == "road":
            imputed = road_impute(masked.detach().cpu().numpy(), hidden.cpu().numpy(), self.cache)
            values = torch.from_numpy(imputed).to(masked.dtype).to(masked.device)
            everything = hidden.flatten(1).all(1)
            if bool(everything.any()):  # nothing to impute from: the colour
                colour = self.colour if self.colour.shape[0] == 1 else self.colour[image_index]
                values = torch.where(everything.view(-1, 1, 1, 1), colour.expand_as(values), values)
            if self.road_noise is not None:
                values = values + self.road_noise[image_index]
        elif self.per_image is not None:
            values = self.per_image[image_index]
        else:
            values = self.colour if self.colour.shape[0] == 1 else self.colour[image_index]
        # x * keep + value * (1 - keep) with keep in {0, 1} is exact for finite values, and 3x faster than where()
        keep = (~hidden).unsqueeze(1).to(masked.dtype)
        return masked.mul_(keep).addcmul_(values, 1 - keep)


class _Masker:
    """Masked variants of one image set under one relevance map."""

    def __init__(self, images: torch.Tensor, relevance: torch.Tensor, config: MaskingConfig,
                 fills: _Fills | None = None):
        self.images = images
        self.config = config
        self.ranking = _Ranking(relevance, config)
        self.fills = fills if fills is not None else _Fills(images, config)
        self.counts = hidden_counts(config.fractions, self.ranking.units)

    def masked(self, image_index: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return self.fills.masked(image_index, self.ranking.hidden(image_index, counts))


def _config(fractions, order, fill, patch, mode, seed, fill_value=None, blur_sigma=None,
            road_noise=0.01) -> MaskingConfig:
    return MaskingConfig(fractions=fractions, order=order, fill=fill, patch=patch, mode=mode, seed=seed,
                         fill_value=fill_value, blur_sigma=blur_sigma, road_noise=road_noise)


def _pairs(count: int, fractions: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, fraction) index pairs, image-major."""
    image_index = torch.arange(count).repeat_interleave(fractions)
    return image_index, torch.arange(fractions).repeat(count)


def hidden_masks(relevance: Any, fractions: Sequence[float] = DEFAULT_FRACTIONS, order: str = "morf",
                 patch: int = 1, mode: str = "remove", seed: int = 0) -> torch.Tensor:
    """Which pixels :func:`perturb` hides, without building images.

    Parameters
    ----------
    relevance : tensor, ndarray or DataArray (N, H, W)
    fractions, order, patch, mode, seed
        As in :class:`MaskingConfig`.

    Returns
    -------
    torch.Tensor of bool (N, F, H, W)
    """
    config = _config(fractions, order, "zero", patch, mode, seed)
    relevance = torch.as_tensor(relevance.values if hasattr(relevance, "dims") else relevance)
    if relevance.ndim != 3:
        raise MaskingError(f"relevance must have shape (N, H, W), got {tuple(relevance.shape)}")
    ranking = _Ranking(check_relevance(relevance, (relevance.shape[0], 3) + tuple(relevance.shape[1:])), config)
    counts = torch.from_numpy(hidden_counts(config.fractions, ranking.units))
    image_index, fraction_index = _pairs(len(relevance), len(counts))
    hidden = ranking.hidden(image_index, counts[fraction_index])
    return hidden.view(len(relevance), len(counts), *hidden.shape[1:])


def perturbed_batches(images: torch.Tensor, relevance: Any, fractions: Sequence[float] = DEFAULT_FRACTIONS,
                      order: str = "morf", fill: str = "mean", patch: int = 1, mode: str = "remove", seed: int = 0,
                      *, fill_value: Any = None, blur_sigma: float | None = None, road_noise: float = 0.01,
                      batch_size: int = 256) -> Iterator[MaskedBatch]:
    """Yield the masked images of :func:`perturb` in batches of ``batch_size`` (image, fraction) pairs.

    Pairs come image-major (all fractions of image 0, then image 1, ...). Each map is ranked once, up front, and
    every random draw is made up front for all images, so the result does not depend on ``batch_size``.
    """
    images = check_images(images)
    config = _config(fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise)
    masker = _Masker(images, check_relevance(relevance, images), config)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise MaskingError(f"batch_size must be a positive integer, got {batch_size!r}")
    image_index, fraction_index = _pairs(len(images), len(config.fractions))
    counts = torch.from_numpy(masker.counts)
    for start in range(0, len(image_index), batch_size):
        images_of, fractions_of = image_index[start:start + batch_size], fraction_index[start:start + batch_size]
        yield MaskedBatch(images_of, fractions_of, masker.masked(images_of, counts[fractions_of]))


def perturb(images: torch.Tensor, relevance: Any, fractions: Sequence[float] = DEFAULT_FRACTIONS,
            order: str = "morf", fill: str = "mean", patch: int = 1, mode: str = "remove", seed: int = 0, *,
            fill_value: Any = None, blur_sigma: float | None = None, road_noise: float = 0.01,
            batch_size: int = 256) -> torch.Tensor:
    """Hide a growing share of each image's pixels, ordered by its relevance map.

    Parameters
    ----------
    images : tensor (N, 3, H, W)
        RGB in [0, 1].
    relevance : tensor, ndarray or DataArray (N, H, W)
        One map per image; finite.
    fractions, order, fill, patch, mode, seed, fill_value, blur_sigma, road_noise
        See :class:`MaskingConfig`.
    batch_size : int
        Pairs built at once (bounds the memory of ROAD's systems); the result does not depend on it.

    Returns
    -------
    torch.Tensor (N, F, 3, H, W)
        ``result[i, j]`` is image i with ``round(fractions[j] * units)`` units hidden. For large sets use
        :func:`perturbed_batches`, which yields the same images batch by batch.
    """
    images = check_images(images)
    fractions = MaskingConfig(fractions=fractions).fractions
    result = images.new_empty((len(images), len(fractions)) + tuple(images.shape[1:]))
    for batch in perturbed_batches(images, relevance, fractions, order, fill, patch, mode, seed,
                                   fill_value=fill_value, blur_sigma=blur_sigma, road_noise=road_noise,
                                   batch_size=batch_size):
        result[batch.image_index, batch.fraction_index] = batch.images
    return result
