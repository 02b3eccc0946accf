"""The masking engine (private to :mod:`lrp_faces.masking`): rank units, fill hidden pixels, score masked batches.

Everything here is per image. Each image's random order, noise fill and ROAD noise come from its own generator,
keyed by its position among the images of the call (``image_index``); blurs are computed one image at a time; the
mean colour is resolved over all images before they are split (:func:`fill_colours`); and every forward pass has
exactly ``batch_size`` rows (a short last batch is padded), so a model sees the same shapes however the images are
grouped. Any split of the images into blocks therefore gives the same numbers, bit for bit.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..devices import model_device, resolve_device, to_device
from ..module_state import evaluation_mode
from ._inputs import check_batch_size, check_relevance, fill_colours
from .config import MaskingConfig, MaskingError, hidden_counts, seeded_generator, unit_count
from .road import RoadCache, road_cache, road_impute

__all__ = ["SCORES", "PRECISIONS", "BlockScores", "Ranking", "Fills", "Masker", "gaussian_blur", "score_block",
           "check_precision", "compute_device", "scores_by_fraction", "masked_images"]

SCORES = ("correct", "probability", "output")
"""What each forward pass is scored by, in the order of the score axis of :class:`BlockScores`."""
PRECISIONS = ("float32", "bfloat16")
"""Number formats of the forward passes that score masked images (never used for LRP)."""


class BlockScores(NamedTuple):
    """Scores of one model on one block of images (:data:`SCORES`: correct, probability, explained output).

    A unit of work of :func:`~lrp_faces.masking.generalization` and :func:`~lrp_faces.masking.own_map_curves`;
    blocks of the same model join along their last axis (:meth:`concatenate`).
    """

    unmasked: np.ndarray  #: (3, n) float64, on the images as they are
    masked: np.ndarray  #: (..., 3, F, n) float64, per fraction (those that hide nothing hold the unmasked scores)

    @classmethod
    def concatenate(cls, blocks: Sequence["BlockScores"]) -> "BlockScores":
        """One model's blocks in image order, joined into the scores of all their images."""
        if not blocks:
            raise MaskingError("no blocks to concatenate")
        return cls(np.concatenate([block.unmasked for block in blocks], axis=-1),
                   np.concatenate([block.masked for block in blocks], axis=-1))


# ------------------------------------------------------------------------------------------------- settings
def check_precision(precision: Any) -> str:
    """``precision`` after checking it is one of :data:`PRECISIONS`."""
    if not isinstance(precision, str) or precision not in PRECISIONS:
        raise MaskingError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision


def compute_device(model: nn.Module, device: str | torch.device | None) -> torch.device:
    """``device`` (checked, see :func:`lrp_faces.devices.resolve_device`), or where the model is."""
    return model_device(model) if device is None else resolve_device(device)


# ------------------------------------------------------------------------------------------ ranking and fills
class Ranking:
    """Where each patch of each image comes in the hiding order: from its relevance map or its own random keys.

    Parameters
    ----------
    relevance : tensor (n, H, W) or None
        The maps (checked); ignored for ``order="random"``, where ``shape`` gives (H, W).
    config : MaskingConfig
    image_index : sequence of int (n,)
        Each image's position among the images of the call: it keys the image's random order.
    """

    def __init__(self, relevance: torch.Tensor | None, config: MaskingConfig, image_index: Sequence[int],
                 shape: Sequence[int] | None = None, device: torch.device | None = None):
        height, width = (tuple(relevance.shape[1:]) if relevance is not None else tuple(shape[-2:]))
        device = device if device is not None else (relevance.device if relevance is not None else None)
        patch = config.patch
        self.units = unit_count((height, width), patch)
        self.height, self.width, self.patch = height, width, patch
        self.grid = (height // patch, width // patch)
        self.mode = config.mode
        if config.order == "random":
            keys = torch.stack([torch.rand(self.units, generator=seeded_generator(config.seed, "order", index),
                                           dtype=torch.float64) for index in image_index])
            order = torch.sort(keys.to(device), dim=1, stable=True).indices
        else:
            if relevance is None:
                raise MaskingError(f"order {config.order!r} needs relevance maps")
            # float64 sums of float32 relevance are exact for patches of similar magnitude: no order-dependent ties
            count = len(relevance)
            scores = relevance.to(device, torch.float64).reshape(count, self.grid[0], patch, self.grid[1], patch)
            scores = scores.sum((2, 4)).reshape(count, self.units)
            order = torch.sort(scores, dim=1, descending=True, stable=True).indices  # ties: lower index first
            if config.order == "lerf":
                order = order.flip(1)
        dtype = torch.int32 if self.units < 2 ** 31 else torch.int64
        self.positions = torch.empty(order.shape, dtype=dtype, device=order.device)
        self.positions.scatter_(1, order, torch.arange(self.units, dtype=dtype, device=order.device).expand_as(order))

    def hidden(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """Boolean (B, H, W): the pixels hidden in image ``rows[b]`` when ``counts[b]`` units are hidden.

        ``remove`` hides the first units of the order, ``keep`` the last ones (it keeps the first).
        """
        positions = self.positions[rows.to(self.positions.device)]
        counts = counts.to(positions.device, positions.dtype)[:, None]
        hidden = positions < counts if self.mode == "remove" else positions >= self.units - counts
        rows_of_grid, columns = self.grid
        patch = self.patch
        if patch == 1:
            return hidden.view(-1, rows_of_grid, columns)
        return (hidden.view(-1, rows_of_grid, 1, columns, 1).expand(-1, rows_of_grid, patch, columns, patch)
                .reshape(-1, self.height, self.width))


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


class Fills:
    """The values hidden pixels take, drawn or computed once per image and shared by every ranking.

    Parameters
    ----------
    images : tensor (n, 3, H, W)
    config : MaskingConfig
    image_index : sequence of int (n,)
        Each image's position among the images of the call: it keys the image's noise.
    colours : tensor (n, 3), optional
        The ``mean``/``road`` colours of these images (:func:`fill_colours` of all images, these rows).
    """

    def __init__(self, images: torch.Tensor, config: MaskingConfig, image_index: Sequence[int],
                 colours: torch.Tensor | None = None, cache: RoadCache | None = road_cache):
        self.images = images
        self.config = config
        self.cache = cache
        count, channels, height, width = images.shape
        fill = config.fill
        self.colour = self.per_image = self.road_noise = None
        if fill == "zero":
            self.colour = images.new_zeros((1, channels, 1, 1))
        elif fill in ("mean", "road"):
            if colours is None:
                raise MaskingError(f"fill {fill!r} needs its colours (fill_colours of all the images, this block's "
                                   f"rows)")
            colours = torch.as_tensor(colours)
            if tuple(colours.shape) != (count, 3):
                raise MaskingError(f"fill_colours has shape {tuple(colours.shape)}; expected ({count}, 3), one colour "
                                   f"per image")
            self.colour = colours.to(images.dtype).to(images.device).view(count, 3, 1, 1)
        if fill == "blur":
            sigma = config.blur_sigma if config.blur_sigma is not None else max(height, width) / 16
            self.per_image = torch.cat([gaussian_blur(images[row:row + 1], sigma) for row in range(count)])
        elif fill == "noise":
            self.per_image = torch.stack([
                torch.rand((channels, height, width), generator=seeded_generator(config.seed, "noise", index),
                           dtype=images.dtype) for index in image_index]).to(images.device)
        elif fill == "road" and config.road_noise > 0:
            noise = torch.stack([torch.randn((channels, height, width), generator=seeded_generator(config.seed, "road",
                                                                                                index),
                                             dtype=torch.float64) for index in image_index])
            self.road_noise = (config.road_noise * noise).to(images.dtype).to(images.device)

    def masked(self, rows: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
        """The images ``rows`` with their ``hidden`` pixels filled, (B, 3, H, W)."""
        rows = rows.to(self.images.device)
        masked = self.images.index_select(0, rows)
        if self.config.fill == "road":
            imputed = road_impute(masked.detach().cpu().numpy(), hidden.cpu().numpy(), self.cache)
            values = torch.from_numpy(imputed).to(masked.dtype).to(masked.device)
            everything = hidden.flatten(1).all(1).to(masked.device)
            if bool(everything.any()):  # nothing to impute from: the colour
                values = torch.where(everything.view(-1, 1, 1, 1), self.colour[rows].expand_as(values), values)
            if self.road_noise is not None:
                values = values + self.road_noise[rows]
        elif self.per_image is not None:
            values = self.per_image[rows]
        else:
            values = self.colour if self.colour.shape[0] == 1 else self.colour[rows]
        # x * keep + value * (1 - keep) with keep in {0, 1} is exact for finite values, and 3x faster than where()
        keep = (~hidden).unsqueeze(1).to(masked.device, masked.dtype)
        return masked.mul_(keep).addcmul_(values, 1 - keep)


class Masker:
    """Masked variants of one block of images under one ranking: ``counts[j]`` units hidden at fraction j."""

    def __init__(self, ranking: Ranking, fills: Fills, config: MaskingConfig):
        self.ranking = ranking
        self.fills = fills
        self.counts = hidden_counts(config.fractions, ranking.units, config.mode)

    def masked(self, rows: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        return self.fills.masked(rows, self.ranking.hidden(rows, counts))


def scores_by_fraction(counts: np.ndarray, unique: np.ndarray, masked: np.ndarray,
                       original: np.ndarray) -> np.ndarray:
    """(3, F, n) scores per fraction from the distinct-count scores (3, U, n) and the unmasked ones (3, n)."""
    curves = np.empty((3, len(counts), original.shape[-1]))
    positive = counts > 0
    curves[:, positive] = masked[:, np.searchsorted(unique, counts[positive])]
    curves[:, ~positive] = original[:, None]
    return curves


# ----------------------------------------------------------------------------------------------------- scoring
class _Scorer:
    """Forward passes of one model in batches of exactly ``batch_size`` rows, scored against the labels."""

    def __init__(self, model: nn.Module, labels: torch.Tensor, batch_size: int, contrastive: bool,
                 device: torch.device, precision: str):
        self.model, self.batch_size, self.contrastive, self.device = model, batch_size, contrastive, device
        self.labels = labels.to(device)
        self.autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bfloat16"
                         else contextlib.nullcontext())
        self.checked = False

    def __call__(self, batch: torch.Tensor, rows: torch.Tensor) -> np.ndarray:
        """(3, B): correct, probability of the true class and explained output of the images ``rows``."""
        count = len(batch)
        if count < self.batch_size:  # the same shape for every pass: the numbers do not depend on the grouping
            batch = torch.cat([batch, batch.new_zeros((self.batch_size - count,) + tuple(batch.shape[1:]))])
        with self.autocast:
            logits = self.model(to_device(batch, self.device))
        if logits.ndim != 2 or logits.shape[0] != len(batch):
            raise MaskingError(f"the model must return logits of shape (B, classes); got {tuple(logits.shape)} for "
                               f"a batch of {len(batch)}")
        logits = logits[:count].to(torch.float64)
        labels = self.labels[rows.to(self.device)]
        classes = logits.shape[1]
        if not self.checked:
            if int(self.labels.max()) >= classes:
                raise MaskingError(f"labels go up to {int(self.labels.max())} but the model has {classes} classes")
            if self.contrastive and classes < 2:
                raise MaskingError("the contrastive output needs a model with at least 2 classes; pass "
                                   "contrastive=False")
            self.checked = True
        true = logits.gather(1, labels[:, None])[:, 0]
        output = true - (logits.sum(1) - true) / (classes - 1) if self.contrastive else true
        probability = torch.exp(true - torch.logsumexp(logits, 1))
        correct = (logits.argmax(1) == labels).to(torch.float64)
        return torch.stack([correct, probability, output]).cpu().numpy()


def _pairs(count: int, units: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All (image, unit) index pairs, image-major."""
    return torch.arange(count).repeat_interleave(units), torch.arange(units).repeat(count)


def _masked_scores(masker: Masker, score, count: int, batch_size: int, bar=None) -> tuple[np.ndarray, np.ndarray]:
    """Scores (3, U, n) of the distinct positive hidden counts (U,), each masked image built once.

    Fractions that hide nothing reuse the unmasked scores and fractions that hide the same number of units share
    one forward pass, so only ``n * U`` inputs are built.
    """
    unique = np.unique(masker.counts[masker.counts > 0])
    result = np.empty((3, len(unique), count))
    image_index, unit_index = _pairs(count, len(unique))
    unique_tensor = torch.from_numpy(unique)
    for start in range(0, len(image_index), batch_size):
        rows, units = image_index[start:start + batch_size], unit_index[start:start + batch_size]
        result[:, units.numpy(), rows.numpy()] = score(masker.masked(rows, unique_tensor[units]), rows)
        if bar is not None:
            bar.update(len(rows))
    return unique, result


def score_block(model: nn.Module, images: torch.Tensor, sources: Sequence[Any], labels: torch.Tensor,
                config: MaskingConfig, *, image_index: Sequence[int], fill_colours: torch.Tensor | None = None,
                batch_size: int | None = None, contrastive: bool = True, device: str | torch.device | None = None,
                precision: str = "float32", bar=None) -> BlockScores:
    """Score ``model`` on one block of images, unmasked and masked by each source's ranking at every fraction.

    Parameters
    ----------
    model : nn.Module
        Moved to ``device`` (in place) and put in evaluation mode for the call.
    images : tensor (n, 3, H, W)
    sources : sequence
        Per source, its maps (n, H, W), or None for the random order (``config`` with ``order="random"``). Each is
        read and ranked when its turn comes, so only one source's maps are in memory at a time.
    labels : tensor (n,) of int
    config : MaskingConfig
    image_index : sequence of int (n,)
        The images' positions among all images of the call; they key the per-image random draws.
    fill_colours : tensor (n, 3), optional
        These images' rows of :func:`fill_colours` of all images (needed by the ``mean`` and ``road`` fills).
    batch_size, contrastive, device, precision
        As for :func:`~lrp_faces.masking.curves`.
    bar : tqdm, optional
        Updated by the number of masked images scored.

    Returns
    -------
    BlockScores
        ``masked`` (len(sources), 3, F, n).
    """
    precision = check_precision(precision)
    device = compute_device(model, device)
    batch_size = check_batch_size(batch_size, images.shape, device)
    image_index = np.asarray(image_index, dtype=np.int64).reshape(-1)
    if len(image_index) != len(images):
        raise MaskingError(f"image_index has {len(image_index)} entries; expected one per image ({len(images)})")
    count = len(images)
    masking_device = torch.device("cpu") if config.fill == "road" else device  # ROAD solves on the CPU
    images = to_device(images, masking_device)
    model.to(device)
    fills = Fills(images, config, image_index, fill_colours)
    random_config = config.replace(order="random") if config.order != "random" else config
    masked = np.empty((len(sources), 3, len(config.fractions), count))
    with evaluation_mode(model), torch.inference_mode():
        score = _Scorer(model, labels, batch_size, contrastive, device, precision)
        unmasked = np.concatenate([score(images[rows[0]:rows[-1] + 1], rows)
                                   for rows in torch.arange(count).split(batch_size)], axis=1)
        for number, maps in enumerate(sources):
            if maps is None:
                ranking = Ranking(None, random_config, image_index, images.shape, masking_device)
            else:
                name = "relevance" if len(sources) == 1 else f"maps[{number}]"
                ranking = Ranking(check_relevance(maps, images, name), config, image_index, device=masking_device)
            masker = Masker(ranking, fills, config)
            unique, distinct = _masked_scores(masker, score, count, batch_size, bar)
            masked[number] = scores_by_fraction(masker.counts, unique, distinct, unmasked)
    return BlockScores(unmasked, masked)


def masked_images(images: torch.Tensor, relevance: torch.Tensor, config: MaskingConfig,
                  batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(image index, fraction index, masked images) in batches of ``batch_size`` image-major pairs."""
    image_index = np.arange(len(images))
    ranking = Ranking(relevance, config, image_index, images.shape, images.device)
    masker = Masker(ranking, Fills(images, config, image_index, fill_colours(images, config)), config)
    rows, fraction_index = _pairs(len(images), len(config.fractions))
    counts = torch.from_numpy(masker.counts)
    for start in range(0, len(rows), batch_size):
        rows_of, fractions_of = rows[start:start + batch_size], fraction_index[start:start + batch_size]
        yield rows_of, fractions_of, masker.masked(rows_of, counts[fractions_of])
