"""Similarity of the relevance maps of every pair of models, image by image, read from a cube block by block."""
from __future__ import annotations

from typing import Any

import numpy as np
import scipy.stats
import xarray as xr

from ..masking.generalization import RELATIONS, relation
from ._common import (AnalysisError, check_block_size, check_choice, check_confidence, check_count, check_relevance,
                      cube_models, ignore_empty_means, image_ids, read_blocks, top_membership)
from ._statistics import bootstrap_mean

__all__ = ["similarity", "METRICS"]

METRICS = ("spearman", "pearson", "topk_iou", "cosine")
"""Map similarities: Spearman and Pearson correlation over pixels, IoU of the top-k pixels, cosine similarity."""


def check_fraction(k: Any) -> float:
    if isinstance(k, bool) or not isinstance(k, (int, float, np.integer, np.floating)) or not 0 < k <= 1:
        raise AnalysisError(f"k must be a fraction of the pixels in (0, 1], got {k!r}")
    return float(k)


def _top_count(k: Any, pixels: int) -> int:
    """The number of top pixels of a fraction ``k`` in (0, 1] of ``pixels``: ``round(k * pixels)``, halves up."""
    count = int(np.floor(check_fraction(k) * pixels + 0.5))
    if count < 1:
        raise AnalysisError(f"k={k!r} selects no pixel of {pixels}-pixel maps; use k >= {0.5 / pixels:.3g}")
    return count


def _pairwise(vectors: np.ndarray) -> np.ndarray:
    """(B, M, M) dot products between the models' vectors (M, B, P) of each image."""
    by_image = np.ascontiguousarray(vectors.transpose(1, 0, 2))
    return by_image @ by_image.transpose(0, 2, 1)


def _correlation(maps: np.ndarray) -> np.ndarray:
    """(B, M, M) Pearson correlations over pixels; NaN for a constant map."""
    maps = maps.astype(np.float64, copy=False)
    constant = maps.max(-1) == maps.min(-1)
    centred = maps - maps.mean(-1, keepdims=True)
    norm = np.sqrt(np.einsum("mbp,mbp->mb", centred, centred))
    centred /= np.where(constant, np.inf, norm)[..., None]
    result = np.clip(_pairwise(centred), -1.0, 1.0)
    undefined = constant.T  # (B, M)
    result[undefined[:, :, None] | undefined[:, None, :]] = np.nan
    return result


def _cosine(maps: np.ndarray) -> np.ndarray:
    """(B, M, M) cosine similarities; NaN for an all-zero map."""
    maps = maps.astype(np.float64, copy=False)
    norm = np.sqrt(np.einsum("mbp,mbp->mb", maps, maps))
    zero = norm == 0
    result = np.clip(_pairwise(maps / np.where(zero, np.inf, norm)[..., None]), -1.0, 1.0)
    result[zero.T[:, :, None] | zero.T[:, None, :]] = np.nan
    return result


def _top_iou(maps: np.ndarray, count: int) -> np.ndarray:
    """(B, M, M) intersection over union of the ``count`` most relevant pixels, tie-aware: with the memberships
    ``p`` of :func:`top_membership`, the expected intersection under random tie-breaking ``I = sum_i p_a(i) p_b(i)``
    and ``IoU = I / (2 count - I)`` (without ties, the IoU of the two top sets). A model's map with itself is 1:
    one map breaks its ties one way."""
    intersection = _pairwise(top_membership(maps, count))
    result = intersection / (2 * count - intersection)
    diagonal = np.arange(result.shape[-1])
    result[:, diagonal, diagonal] = 1.0
    return result


def _block_similarity(maps: np.ndarray, metric: str, count: int) -> np.ndarray:
    """(M, M, B) similarity of every pair of the maps (M, B, P) of one block of images."""
    if metric == "pearson":
        result = _correlation(maps)
    elif metric == "spearman":  # Pearson of the ranks (average ranks for ties), as scipy.stats.spearmanr
        result = _correlation(scipy.stats.rankdata(maps, axis=-1))
    elif metric == "cosine":
        result = _cosine(maps)
    else:
        result = _top_iou(maps, count)
    return result.transpose(1, 2, 0)


def similarity(cube: xr.Dataset, metric: str = "spearman", k: float = 0.1, n_bootstrap: int = 1000,
               confidence: float = 0.95, seed: int = 0, progress: bool = False, *,
               block_size: int | None = None) -> xr.Dataset:
    """Compare the relevance maps of every pair of models, image by image.

    The cube is read one block of images at a time (all models of the block), so a dask-backed cube from
    :func:`lrp_faces.cube.open` is never loaded whole. Models that a ragged cube did not compute are skipped.

    Parameters
    ----------
    cube : xarray.Dataset
        A relevance cube (``relevance`` over pretraining, task, seed, image, y, x).
    metric : {"spearman", "pearson", "topk_iou", "cosine"}
        Spearman (Pearson correlation of average ranks, as :func:`scipy.stats.spearmanr`) or Pearson correlation
        over pixels; intersection over union of the ``k`` most relevant pixels; cosine similarity of the raw maps.
        ``"topk_iou"`` is tie-aware: pixels above the map's ``k``-th largest value are in its top set, those equal to
        it share the remaining places (each with weight ``(count - n_above) / n_equal``), the intersection is its
        expectation under random tie-breaking, ``I = sum_i p_a(i) p_b(i)``, and ``IoU = I / (2 count - I)``. So maps
        with fewer than ``count`` non-zero pixels are not matched on the zero pixels that come first in raster
        order (unlike ``cube.lrp.top_fraction``, which breaks ties by position). Two all-tied maps score the chance
        level, ``k / (2 - k)``; a model's map with itself (``same_model``) scores 1. Correlations of a constant map
        and cosines of an all-zero map are NaN, and left out of the means.
    k : float
        Fraction of pixels in (0, 1] for ``"topk_iou"``: ``round(k * H * W)`` pixels.
    n_bootstrap, confidence, seed
        Percentile bootstrap over images (the same resamples for every pair and relation).
    progress : bool
        Show a progress bar over blocks of images.
    block_size : int, optional
        Images per block (default: about 8 MiB of float64 maps of all models; the working memory is a few times
        that). On a dask-backed cube whole chunks along ``image`` are read: :func:`lrp_faces.cube.open` keeps the
        on-disk chunks (16 images) by default; ``chunks="auto"`` would read a model's every image per block.

    Returns
    -------
    xarray.Dataset
        ``similarity`` (model_a, model_b, image); its mean over images with bootstrap CIs, ``mean``, ``ci_low``,
        ``ci_high`` (model_a, model_b); per relation of the pair (:data:`lrp_faces.masking.RELATIONS`) the mean over
        images of the per-image mean over the relation's unordered pairs, ``relation_mean``,
        ``relation_ci_low``, ``relation_ci_high``, and ``relation_pairs``, the number of unordered pairs (a model
        with itself for ``same_model``). Model ids are ``"pretraining/task/seed"``, with ``pretraining_a``,
        ``task_a``, ``seed_a`` (and ``_b``) coordinates and ``pair_relation`` (model_a, model_b). Attributes
        ``metric``, ``k``, ``confidence``, ``n_bootstrap``, ``seed``.

    Raises
    ------
    AnalysisError
        An unknown metric, ``k`` outside (0, 1], a cube without computed models or with NaN maps.
    AnalysisTypeError
        ``cube`` is not a cube Dataset.
    """
    metric = check_choice(metric, METRICS, "metric")
    relevance = check_relevance(cube)
    k = check_fraction(k)
    count = _top_count(k, relevance.sizes["y"] * relevance.sizes["x"]) if metric == "topk_iou" else 0
    n_bootstrap = check_count(n_bootstrap, "n_bootstrap")
    confidence = check_confidence(confidence)
    seed = check_count(seed, "seed")
    block_size = check_block_size(block_size)
    models = cube_models(cube, relevance)
    size = len(models.specs)
    values = np.empty((size, size, relevance.sizes["image"]))
    for block, maps in read_blocks(relevance, models, block_size, progress, f"similarity ({metric})"):
        values[:, :, block] = _block_similarity(maps.reshape(size, maps.shape[1], -1), metric, count)
    return _assemble(values, models, image_ids(relevance), metric, k, n_bootstrap, confidence, seed)


def _assemble(values: np.ndarray, models, images: list[str], metric: str, k: float, n_bootstrap: int,
              confidence: float, seed: int) -> xr.Dataset:
    size = len(models.specs)
    relations = np.array([[relation(a, b) for b in models.specs] for a in models.specs])
    upper = np.triu_indices(size)
    pair_relations, pair_values = relations[upper], values[upper]  # unordered pairs (a <= b)
    with np.errstate(invalid="ignore"), ignore_empty_means():
        relation_values = np.stack([np.nanmean(pair_values[pair_relations == name], axis=0)
                                    if (pair_relations == name).any() else np.full(values.shape[-1], np.nan)
                                    for name in RELATIONS])
    rows = np.concatenate([pair_values, relation_values])
    mean, low, high = bootstrap_mean(rows, n_bootstrap, confidence, seed)
    pairs = len(upper[0])

    def symmetric(part: np.ndarray) -> np.ndarray:
        matrix = np.empty((size, size))
        matrix[upper] = part
        matrix.T[upper] = part
        return matrix

    pair_dims, ids = ("model_a", "model_b"), models.ids
    coords = {"model_a": ids, "model_b": ids, "image": images, "relation": list(RELATIONS),
              "pair_relation": (pair_dims, relations)}
    for suffix in ("a", "b"):
        for field in ("pretraining", "task", "seed"):
            coords[f"{field}_{suffix}"] = (f"model_{suffix}", [getattr(spec, field) for spec in models.specs])
    variables = {
        "similarity": (pair_dims + ("image",), values, {"long_name": f"{metric} similarity of the two models' maps"}),
        "mean": (pair_dims, symmetric(mean[:pairs]), {"long_name": "mean similarity over images"}),
        "ci_low": (pair_dims, symmetric(low[:pairs])), "ci_high": (pair_dims, symmetric(high[:pairs])),
        "relation_mean": (("relation",), mean[pairs:], {"long_name": "mean over images of the mean similarity "
                                                         "of the relation's pairs"}),
        "relation_ci_low": (("relation",), low[pairs:]), "relation_ci_high": (("relation",), high[pairs:]),
        "relation_pairs": (("relation",), np.array([(pair_relations == name).sum() for name in RELATIONS]),
                           {"long_name": "number of unordered model pairs"}),
    }
    attrs = {"metric": metric, "k": k, "confidence": confidence, "n_bootstrap": n_bootstrap, "seed": seed,
             "description": "similarity of the relevance maps of two models on the same image; means over images "
                            "with percentile bootstrap CIs over images (NaN similarities left out)"}
    return xr.Dataset(variables, coords=coords, attrs=attrs)
