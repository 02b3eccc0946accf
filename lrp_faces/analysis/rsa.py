"""Representational similarity analysis (RSA): do models see the same faces as similar as humans do?

The comparison statistics. :func:`rsa` correlates the upper triangles of a model RDM (:mod:`.rdms`) and a human RDM
(:mod:`.human_ratings`), tests the correlation by permuting image labels and bootstraps a CI over images; with
several raters it adds the noise ceiling of Nili et al. (2014). :func:`compare_with_humans` does this for every
model and kind of RDM at once, with the same permutations and resamples.

Six synthetic faces, their parameter-space distances as a stand-in for human ratings (a study reads real ones with
:func:`~lrp_faces.analysis.load_human_rdm`), and a cube of two models' (random) maps:

>>> import numpy as np, xarray as xr
>>> from lrp_faces.analysis import compare_with_humans, model_rdms, rsa, stand_in_human_rdm
>>> from lrp_faces.faces import synthetic_faces
>>> faces = synthetic_faces(3, 2, size=32)
>>> human = stand_in_human_rdm(faces)
>>> maps = np.random.default_rng(0).normal(size=(1, 1, 2, 6, 32, 32))
>>> cube = xr.Dataset({"relevance": (("pretraining", "task", "seed", "image", "y", "x"), maps)},
...                   coords={"pretraining": ["faces"], "task": ["gender"], "seed": [0, 1],
...                           "image": faces.image_ids})
>>> rdms = model_rdms(cube, kinds=("relevance",))  # features need the models: model_rdms(cube, zoo, faces)
>>> result = compare_with_humans(rdms, human, n_permutations=99, n_bootstrap=50)
>>> result.correlation.dims
('pretraining', 'task', 'seed', 'kind')
>>> one = rsa(rdms.sel(pretraining="faces", task="gender", seed=0, kind="relevance"), human, n_permutations=99,
...           n_bootstrap=50)
>>> bool(one.correlation == result.correlation.sel(seed=0, kind="relevance")), one.n_images
(True, 6)
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.stats
import torch
import xarray as xr
from tqdm.auto import tqdm

from ._common import check_choice, check_confidence, check_count
from ._rsa_common import RDM_DIMS, RSAError, RSATypeError, check_square, few, id_positions, unit_vectors
from .human_ratings import STAND_IN_SOURCE
from ..errors import LRPFacesWarning

__all__ = ["rsa", "compare_with_humans", "RSAResult", "RSAWarning", "RSA_METHODS"]

RSA_METHODS = ("spearman", "pearson", "kendall")
"""Correlations between RDM upper triangles: Spearman's rho, Pearson's r, Kendall's tau-b (all scipy.stats)."""
ALTERNATIVES = ("two-sided", "greater")
_PAIRS_PER_BATCH = 2 ** 22  # permuted or resampled upper-triangle entries held at once


class RSAWarning(LRPFacesWarning):
    """A model RDM that cannot be compared (NaN or constant dissimilarities); its results are NaN."""


@dataclass(frozen=True)
class RSAResult:
    """One model RDM compared with a human RDM by :func:`rsa`.

    ``noise_ceiling_*`` and ``rater_correlation`` are NaN unless at least two raters' RDMs were given.
    """

    correlation: float  #: correlation of the upper triangles (with the raters' mean RDM)
    p_value: float  #: permutation p-value (image labels permuted); NaN without permutations
    ci_low: float  #: bootstrap CI over images
    ci_high: float
    noise_ceiling_lower: float  #: mean correlation of each rater with the mean of the others
    noise_ceiling_upper: float  #: mean correlation of each rater with the mean of all raters
    n_images: int
    method: str
    rater_correlation: float = math.nan  #: mean correlation of the model with each rater: compare with the ceiling
    n_raters: int = 0
    rater_ci_low: float = math.nan  #: bootstrap CI of ``rater_correlation`` (the same resamples as ``ci_low``)
    rater_ci_high: float = math.nan


# ------------------------------------------------------------------------------------------- checking inputs
def _ids(array: xr.DataArray, name: str) -> list[str]:
    first, second = ([str(value) for value in array[dim].values] if dim in array.coords else None for dim in RDM_DIMS)
    if first is None or second is None:
        raise RSAError(f"{name} needs image ids as coordinates on {RDM_DIMS}")
    if first != second:
        raise RSAError(f"{name} has different image ids on image_a and image_b; expected the same ids in the same "
                       f"order")
    if len(set(first)) != len(first):
        raise RSAError(f"{name} has duplicate image ids, e.g. {few(sorted({i for i in first if first.count(i) > 1}))}")
    return first


def _parse(rdm: Any, name: str, allow_raters: bool) -> tuple[np.ndarray, list[str] | None, list[str] | None]:
    """An RDM as (values (R, n, n) float64, image ids or None, rater ids or None); R = 1 without a rater dim."""
    raters = None
    if isinstance(rdm, xr.DataArray):
        extra = [dim for dim in rdm.dims if dim not in RDM_DIMS]
        if set(RDM_DIMS) - set(rdm.dims) or (extra and (not allow_raters or extra != ["rater"])):
            expected = f"{RDM_DIMS} or ('rater',) + {RDM_DIMS}" if allow_raters else f"{RDM_DIMS}"
            raise RSAError(f"{name} must have dims {expected}, got {rdm.dims}"
                           + ("; select one model and kind first" if not allow_raters else ""))
        ids = _ids(rdm, name)
        if extra:
            rdm = rdm.transpose("rater", *RDM_DIMS)
            raters = [str(value) for value in rdm["rater"].values] if "rater" in rdm.coords else \
                [str(value) for value in range(rdm.sizes["rater"])]
        else:
            rdm = rdm.transpose(*RDM_DIMS)
        values = np.asarray(rdm.values)
    elif isinstance(rdm, (np.ndarray, torch.Tensor, list, tuple)):
        values = rdm.detach().cpu().numpy() if isinstance(rdm, torch.Tensor) else np.asarray(rdm)
        ids = None
        if values.ndim == 3 and allow_raters:
            raters = [str(value) for value in range(values.shape[0])]
        elif values.ndim != 2:
            expected = "(n, n) or (raters, n, n)" if allow_raters else "(n, n)"
            raise RSAError(f"{name} must have shape {expected}, got {values.shape}")
    else:
        raise RSATypeError(f"{name} must be an xarray.DataArray or an array of dissimilarities, got "
                           f"{type(rdm).__name__}")
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise RSATypeError(f"{name} must hold real numbers, got dtype {values.dtype}")
    values = values.astype(np.float64)
    return values.reshape((-1,) + values.shape[-2:]), ids, raters



# ------------------------------------------------------------------------------------------------ statistics
def _correlate(x: np.ndarray, y: np.ndarray, method: str) -> np.ndarray:
    """scipy's correlation of x and y along the last axis (broadcast)."""
    x, y = np.broadcast_arrays(x, y)
    if x.size == 0:
        return np.zeros(x.shape[:-1])
    if x.ndim == 1:
        x, y = x[None], y[None]
        return _correlate(x, y, method)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant inputs: NaN, reported by the callers
        if method == "spearman":
            return np.array([scipy.stats.spearmanr(a, b).statistic for a, b in zip(x, y)])
        if method == "pearson":
            return np.array([scipy.stats.pearsonr(a, b).statistic for a, b in zip(x, y)])
        return np.asarray(scipy.stats.kendalltau(x, y, axis=-1).statistic)


def _ranks(values: np.ndarray) -> np.ndarray:
    return scipy.stats.rankdata(values, axis=-1)


def _symmetric(vector: np.ndarray, count: int) -> np.ndarray:
    """An upper-triangle vector back as a symmetric (n, n) matrix with a zero diagonal."""
    matrix = np.zeros((count, count))
    upper, lower = np.triu_indices(count, 1)
    matrix[upper, lower] = vector
    matrix[lower, upper] = vector
    return matrix


def _batches(total: int, pairs: int) -> list[tuple[int, int]]:
    size = max(1, _PAIRS_PER_BATCH // max(pairs, 1))
    return [(start, min(start + size, total)) for start in range(0, total, size)]


def _generator(seed: int, stream: int) -> np.random.Generator:
    """Independent random streams of one seed: 0 permutations, 1 bootstrap."""
    return np.random.default_rng(np.random.SeedSequence((int(seed), stream)))


def _bootstrap_indices(n_images: int, n_bootstrap: int, seed: int) -> np.ndarray:
    """The images of each bootstrap resample, (n_bootstrap, n_images) int64, drawn with replacement."""
    return _generator(seed, 1).integers(0, n_images, size=(n_bootstrap, n_images))


def _permutation_p(models: np.ndarray, human: np.ndarray, method: str, n_permutations: int, alternative: str,
                   seed: int, bar) -> np.ndarray:
    """p-values (M,) of the models' upper triangles (M, k) against the human RDM (n, n) under label permutation.

    Permuting the images maps pairs to pairs, so a permuted upper triangle is a rearrangement of the original:
    ranks and z-scores of the human triangle are computed once and permuted with it, and Spearman and Pearson
    correlations of a whole batch of permutations are one matrix product.
    """
    count = human.shape[0]
    upper, lower = np.triu_indices(count, 1)
    generator = _generator(seed, 0)
    if method == "kendall":
        observed = _correlate(models, human[upper, lower], method)
        table = human
    else:
        transform = _ranks if method == "spearman" else (lambda values: values)
        model_units = unit_vectors(transform(models))
        human_unit = unit_vectors(transform(human[upper, lower]))
        observed = model_units @ human_unit
        table = _symmetric(human_unit, count)
    extreme = np.zeros(len(models), dtype=np.int64)
    tolerance = 1e-12 * max(1.0, len(upper))  # the identity permutation must count as extreme as itself
    for start, stop in _batches(n_permutations, len(upper)):
        order = generator.random((stop - start, count)).argsort(1)  # uniform permutations, batch-independent
        permuted = table[order[:, upper], order[:, lower]]  # (B, k)
        if method == "kendall":
            statistics = np.stack([_correlate(model, permuted, method) for model in models], axis=1)
        else:
            statistics = permuted @ model_units.T  # (B, M)
        if alternative == "two-sided":
            extreme += (np.abs(statistics) >= np.abs(observed) - tolerance).sum(0)
        else:
            extreme += (statistics >= observed - tolerance).sum(0)
        if bar is not None:
            bar.update(stop - start)
    return (1.0 + extreme) / (1.0 + n_permutations)


class _WeightedRanks:
    """Ranks of one upper triangle (k,) within weighted multisets of its pairs, without sorting again.

    A bootstrap resample holds each original pair p some number of times w_p (0 if absent). With the pairs sorted
    once, the average rank of p within the resample is ``sum(w of smaller values) + (sum(w of equal values) + 1) / 2``:
    exactly the ranks scipy.stats.rankdata gives the resampled values.
    """

    def __init__(self, values: np.ndarray, rank: bool):
        self.values, self.rank = values, rank
        self.order = np.argsort(values, kind="stable")
        ordered = values[self.order]
        self.starts = np.concatenate([[0], np.flatnonzero(np.diff(ordered) != 0) + 1])  # groups of equal values
        self.group = np.empty(len(values), dtype=np.int64)
        self.group[self.order] = np.cumsum(np.isin(np.arange(len(values)), self.starts)) - 1

    def __call__(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(values or ranks (B, k), number of distinct values present (B,)) for weights (B, k)."""
        group_weights = np.add.reduceat(weights[:, self.order], self.starts, axis=1)
        distinct = (group_weights > 0).sum(1)
        if not self.rank:
            return np.broadcast_to(self.values, weights.shape), distinct
        ranks = np.cumsum(group_weights, axis=1) - group_weights + (group_weights + 1.0) / 2.0
        return ranks[:, self.group], distinct


def _weighted_pearson(x: np.ndarray, y: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation along the last axis of values repeated ``weights`` times."""
    total = weights.sum(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx = x - (weights * x).sum(-1, keepdims=True) / total
        dy = y - (weights * y).sum(-1, keepdims=True) / total
        return (weights * dx * dy).sum(-1) / np.sqrt((weights * dx * dx).sum(-1) * (weights * dy * dy).sum(-1))


def _bootstrap(models: np.ndarray, humans: np.ndarray, method: str, n_bootstrap: int, seed: int,
               bar) -> np.ndarray:
    """Bootstrap correlations (H, M, B) of every model RDM (M, n, n) with every human RDM (H, n, n) over images.

    Every resample draws images with replacement (the same draws for all RDMs) and correlates the resampled RDMs.
    A resample that draws an image twice creates pairs of an image with its copy; those self-pairs (dissimilarity
    0 by definition) are dropped, the other pairs (including repeated ones) are kept, as in the RSA toolbox.
    Resamples whose triangle is constant (too few distinct images) give NaN.
    """
    count = humans.shape[-1]
    upper, lower = np.triu_indices(count, 1)
    pairs = len(upper)
    pair_index = np.full((count, count), -1, dtype=np.int64)  # unordered pair -> position in the upper triangle
    pair_index[upper, lower] = pair_index[lower, upper] = np.arange(pairs)
    indices = _bootstrap_indices(count, n_bootstrap, seed)
    statistics = np.full((len(humans), len(models), n_bootstrap), np.nan)
    if method != "kendall":
        rank = method == "spearman"
        human_ranks = [_WeightedRanks(human[upper, lower], rank) for human in humans]
        model_ranks = [_WeightedRanks(model[upper, lower], rank) for model in models]
    for start, stop in _batches(n_bootstrap, 8 * pairs):
        first, second = indices[start:stop][:, upper], indices[start:stop][:, lower]
        if method == "kendall":  # no weighted shortcut: the resampled triangles themselves
            valid = first != second
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                for which, human in enumerate(humans):
                    human_values = human[first, second]
                    for index, model in enumerate(models):
                        statistics[which, index, start:stop] = [
                            scipy.stats.kendalltau(a[keep], b[keep]).statistic if keep.sum() > 1 else np.nan
                            for a, b, keep in zip(model[first, second], human_values, valid)]
        else:
            rows = np.arange(stop - start)[:, None]
            flat = (pair_index[first, second] + 1 + rows * (pairs + 1)).ravel()  # self-pairs land in column 0
            weights = np.bincount(flat, minlength=(stop - start) * (pairs + 1)).reshape(-1, pairs + 1)[:, 1:]
            weights = weights.astype(np.float64)
            resampled_models = [ranker(weights) for ranker in model_ranks]
            for which, human_ranker in enumerate(human_ranks):
                human_values, human_distinct = human_ranker(weights)
                for index, (model_values, model_distinct) in enumerate(resampled_models):
                    correlation = _weighted_pearson(model_values, human_values, weights)
                    constant = (human_distinct < 2) | (model_distinct < 2)  # NaN like scipy, not +-1 from rounding
                    statistics[which, index, start:stop] = np.where(constant, np.nan, correlation)
        if bar is not None:
            bar.update(stop - start)
    return statistics


def _percentiles(statistics: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile CIs (M,) of bootstrap statistics (M, B), leaving out the NaN resamples."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.full(len(statistics), np.nan), np.full(len(statistics), np.nan)
    for index, values in enumerate(statistics):
        values = values[np.isfinite(values)]
        if len(values):
            low[index], high[index] = np.quantile(values, [tail, 1.0 - tail])
    return low, high


def _noise_ceiling(raters: np.ndarray, method: str) -> tuple[float, float]:
    """(lower, upper) bounds of Nili et al. (2014) from the raters' upper triangles (R, k), R >= 2.

    Raters are averaged after the transform the correlation is invariant to, so that the mean is the best-fitting
    RDM: ranks for Spearman and Kendall, z-scores for Pearson.
    """
    transformed = _ranks(raters) if method in ("spearman", "kendall") else unit_vectors(raters)
    total = transformed.sum(0)
    upper = _correlate(raters, total / len(raters), method)
    lower = _correlate(raters, (total[None] - transformed) / (len(raters) - 1), method)
    return float(np.mean(lower)), float(np.mean(upper))


def _compare(models: np.ndarray, raters: np.ndarray, with_raters: bool, method: str, n_permutations: int,
             n_bootstrap: int, confidence: float, alternative: str, seed: int, progress: bool) -> dict[str, Any]:
    """Every model RDM (M, n, n) against the raters' mean RDM (R, n, n), with the same permutations and resamples."""
    count = raters.shape[-1]
    upper, lower = np.triu_indices(count, 1)
    human_vector = raters.mean(0)[upper, lower]
    if np.ptp(human_vector) == 0:
        raise RSAError(f"the human RDM is constant over its {len(human_vector)} pairs; correlations are undefined")
    model_vectors = models[:, upper, lower]
    # the upper triangles are the data: rebuild exactly symmetric matrices for permuting and resampling images
    human = _symmetric(human_vector, count)
    models = np.stack([_symmetric(vector, count) for vector in model_vectors]) if len(models) else models
    result = {name: np.full(len(models), np.nan) for name in ("p_value", "ci_low", "ci_high", "rater_correlation",
                                                               "rater_ci_low", "rater_ci_high")}
    result.update(correlation=_correlate(model_vectors, human_vector, method), noise_ceiling_lower=math.nan,
                  noise_ceiling_upper=math.nan)
    per_rater = with_raters and len(raters) >= 2
    rater_vectors = raters[:, upper, lower]
    humans = [human] + ([_symmetric(vector, count) for vector in rater_vectors] if per_rater else [])
    with tqdm(total=n_permutations + n_bootstrap, desc="rsa", disable=not progress, leave=False) as bar:
        if n_permutations:
            result["p_value"] = _permutation_p(model_vectors, human, method, n_permutations, alternative, seed, bar)
        if n_bootstrap:
            statistics = _bootstrap(models, np.stack(humans), method, n_bootstrap, seed, bar)  # (1 + R, M, B)
            result["ci_low"], result["ci_high"] = _percentiles(statistics[0], confidence)
            if per_rater:  # the mean over raters in each resample: the same resamples as the mean RDM's CI
                result["rater_ci_low"], result["rater_ci_high"] = _percentiles(statistics[1:].mean(0), confidence)
    if per_rater:
        result["noise_ceiling_lower"], result["noise_ceiling_upper"] = _noise_ceiling(rater_vectors, method)
        result["rater_correlation"] = np.array([np.mean(_correlate(rater_vectors, vector, method))
                                                for vector in model_vectors])
    return result


def _check_settings(method, n_permutations, n_bootstrap, confidence, alternative, seed) -> None:
    check_choice(method, RSA_METHODS, "method", RSAError)
    check_choice(alternative, ALTERNATIVES, "alternative", RSAError)
    for name, value in (("n_permutations", n_permutations), ("n_bootstrap", n_bootstrap), ("seed", seed)):
        check_count(value, name, error=RSAError)
    check_confidence(confidence, RSAError)


def _human(human_rdm: Any) -> tuple[np.ndarray, list[str] | None, list[str] | None, bool]:
    values, ids, raters = _parse(human_rdm, "human_rdm", allow_raters=True)
    with_raters = raters is not None
    check_square(values, ids, "human_rdm", raters)
    return values, ids, raters, with_raters


def rsa(model_rdm: Any, human_rdm: Any, method: str = "spearman", n_permutations: int = 10000,
        n_bootstrap: int = 1000, seed: int = 0, *, confidence: float = 0.95,
        alternative: str = "two-sided") -> RSAResult:
    """Correlate a model RDM with a human RDM: permutation p-value, bootstrap CI and, with raters, noise ceiling.

    Parameters
    ----------
    model_rdm : DataArray (image_a, image_b) or array (n, n)
        E.g. one model and kind of :func:`model_rdms`.
    human_rdm : DataArray (image_a, image_b) or (rater, image_a, image_b), or array (n, n) or (raters, n, n)
        E.g. from :func:`load_human_rdm`. With raters, the comparison uses their mean RDM. With image ids on both,
        the model RDM is taken at the human RDM's images, which must all be in it; plain arrays must match.
    method : {"spearman", "pearson", "kendall"}
        Correlation of the upper triangles (scipy.stats; Kendall is tau-b and much slower to permute).
    n_permutations : int
        Permutations of the human RDM's image labels (rows and columns together); 0 skips the test. The p-value is
        ``(1 + #{|r_perm| >= |r|}) / (1 + n_permutations)`` (two-sided), or with ``r_perm >= r`` for
        ``alternative="greater"`` (a positive relation, as in Nili et al. 2014).
    n_bootstrap : int
        Resamples of the images, with replacement, for the percentile CI; 0 skips it. Pairs of an image with its
        own copy are dropped.
    seed : int
        Seeds the permutations and the resamples (independent streams).
    confidence : float
        Of the CI.
    alternative : {"two-sided", "greater"}

    Returns
    -------
    RSAResult
        ``noise_ceiling_lower`` / ``noise_ceiling_upper`` (Nili et al. 2014; needs >= 2 raters, else NaN): the mean
        correlation of each rater with the mean of the other raters / of all raters, with rater RDMs rank-transformed
        (Spearman, Kendall) or z-scored (Pearson) before averaging. Compare ``rater_correlation`` (the model's mean
        correlation with each rater) with the ceiling, not ``correlation`` (with the mean RDM, which is less noisy).
    """
    _check_settings(method, n_permutations, n_bootstrap, confidence, alternative, seed)
    raters, human_ids, _, with_raters = _human(human_rdm)
    model, model_ids, _ = _parse(model_rdm, "model_rdm", allow_raters=False)
    model = model[0]
    if human_ids is not None and model_ids is not None:
        positions = id_positions(human_ids, model_ids, "human_rdm", "model_rdm")
        model = model[np.ix_(positions, positions)]
    elif model.shape != raters.shape[1:]:
        raise RSAError(f"model_rdm has shape {model.shape} but human_rdm compares {raters.shape[-1]} images; give "
                       f"RDMs of the same images in the same order, or DataArrays with image ids")
    check_square(model, human_ids or model_ids, "model_rdm")
    if np.ptp(model[np.triu_indices(len(model), 1)]) == 0:
        raise RSAError("model_rdm is constant over its pairs (e.g. all-zero features); correlations are undefined")
    result = _compare(model[None], raters, with_raters, method, n_permutations, n_bootstrap, confidence, alternative,
                      seed, progress=False)
    return RSAResult(correlation=float(result["correlation"][0]), p_value=float(result["p_value"][0]),
                     ci_low=float(result["ci_low"][0]), ci_high=float(result["ci_high"][0]),
                     noise_ceiling_lower=result["noise_ceiling_lower"],
                     noise_ceiling_upper=result["noise_ceiling_upper"], n_images=int(raters.shape[-1]),
                     method=method, rater_correlation=float(result["rater_correlation"][0]),
                     n_raters=len(raters) if with_raters else 0, rater_ci_low=float(result["rater_ci_low"][0]),
                     rater_ci_high=float(result["rater_ci_high"][0]))


def compare_with_humans(model_rdms: xr.DataArray, human_rdm: Any, method: str = "spearman",
                        n_permutations: int = 10000, n_bootstrap: int = 1000, seed: int = 0, *,
                        confidence: float = 0.95, alternative: str = "two-sided", human_source: str | None = None,
                        progress: bool = False) -> xr.Dataset:
    """:func:`rsa` of every model RDM (e.g. every model and kind of :func:`model_rdms`) against one human RDM.

    All RDMs share the same permutations and resamples, so each result equals :func:`rsa` with the same seed.

    Parameters
    ----------
    model_rdms : DataArray (..., image_a, image_b)
        With image ids; taken at the human RDM's images, which must all be among them. RDMs that are entirely NaN
        (models missing from a ragged cube) give NaN silently; RDMs with some NaN or constant values give NaN and
        an :class:`RSAWarning`.
    human_rdm : DataArray (image_a, image_b) or (rater, image_a, image_b)
    method, n_permutations, n_bootstrap, seed, confidence, alternative
        As in :func:`rsa`.
    human_source : str, optional
        What the human RDM is; default its ``human_source`` attribute (set by :func:`load_human_rdm` and
        :func:`stand_in_human_rdm`).
    progress : bool
        Show a progress bar over permutations and resamples.

    Returns
    -------
    xarray.Dataset
        Vars ``correlation``, ``p_value``, ``ci_low``, ``ci_high``, ``rater_correlation``, ``rater_ci_low``,
        ``rater_ci_high`` over the leading dims of ``model_rdms`` (pretraining, task, seed, kind); attrs
        ``noise_ceiling_lower``, ``noise_ceiling_upper``, ``human_source``, ``human_is_stand_in`` ("yes"/"no"),
        ``method``, ``n_images``, ``n_raters``, ``n_permutations``, ``n_bootstrap``, ``confidence``,
        ``alternative``, ``seed``. The ``rater_*`` variables and the ceiling need >= 2 raters (else NaN); compare
        ``rater_correlation`` (the mean of the model's correlations with each rater, with a CI from the same
        resamples as ``ci_low``/``ci_high``) with the ceiling, not ``correlation``.
    """
    _check_settings(method, n_permutations, n_bootstrap, confidence, alternative, seed)
    if not isinstance(model_rdms, xr.DataArray):
        raise RSATypeError(f"model_rdms must be an xarray.DataArray with dims (..., image_a, image_b), e.g. from "
                           f"model_rdms(), got {type(model_rdms).__name__}")
    if set(RDM_DIMS) - set(model_rdms.dims):
        raise RSAError(f"model_rdms must have the dims {RDM_DIMS}, got {model_rdms.dims}")
    raters, human_ids, _, with_raters = _human(human_rdm)
    if human_ids is None:
        raise RSATypeError("human_rdm must be a DataArray with image ids (e.g. from load_human_rdm), to match the "
                           "model RDMs' images by id")
    positions = id_positions(human_ids, _ids(model_rdms, "model_rdms"), "human_rdm", "model_rdms (the cube)")
    leading = [dim for dim in model_rdms.dims if dim not in RDM_DIMS]
    ordered = model_rdms.transpose(*leading, *RDM_DIMS)
    shape = tuple(ordered.sizes[dim] for dim in leading)
    values = np.asarray(ordered.values, dtype=np.float64).reshape((-1,) + ordered.shape[-2:])
    values = values[:, positions][:, :, positions]
    usable = _usable_cells(values, shape, leading, ordered, human_ids)
    results = {name: np.full(len(values), np.nan) for name in ("correlation", "p_value", "ci_low", "ci_high",
                                                                "rater_correlation", "rater_ci_low",
                                                                "rater_ci_high")}
    ceiling = (math.nan, math.nan)
    if usable.any() or with_raters:
        compared = _compare(values[usable], raters, with_raters, method, n_permutations if usable.any() else 0,
                            n_bootstrap if usable.any() else 0, confidence, alternative, seed, progress)
        for name in results:
            results[name][usable] = compared[name]
        ceiling = (compared["noise_ceiling_lower"], compared["noise_ceiling_upper"])
    coords = {name: coord for name, coord in ordered.coords.items() if not set(coord.dims) & set(RDM_DIMS)}
    descriptions = {"correlation": f"{method} correlation of the model RDM with the human RDM",
                    "p_value": f"permutation p-value ({alternative}, image labels permuted)",
                    "ci_low": f"lower end of the {confidence:g} bootstrap CI over images",
                    "ci_high": f"upper end of the {confidence:g} bootstrap CI over images",
                    "rater_correlation": "mean correlation of the model RDM with each rater's RDM",
                    "rater_ci_low": f"lower end of the {confidence:g} bootstrap CI of rater_correlation over images",
                    "rater_ci_high": f"upper end of the {confidence:g} bootstrap CI of rater_correlation over images"}
    data_vars = {name: (tuple(leading), results[name].reshape(shape), {"long_name": descriptions[name]})
                 for name in results}
    source = human_source if human_source is not None else (
        human_rdm.attrs.get("human_source", "human dissimilarities (source not given)")
        if isinstance(human_rdm, xr.DataArray) else "human dissimilarities (source not given)")
    stand_in = "yes" if source == STAND_IN_SOURCE or (
        isinstance(human_rdm, xr.DataArray) and human_rdm.attrs.get("stand_in") == "yes") else "no"
    attrs = {"noise_ceiling_lower": ceiling[0], "noise_ceiling_upper": ceiling[1], "human_source": str(source),
             "human_is_stand_in": stand_in, "method": method, "n_images": int(raters.shape[-1]),
             "n_raters": len(raters) if with_raters else 0, "n_permutations": n_permutations,
             "n_bootstrap": n_bootstrap, "confidence": float(confidence), "alternative": alternative, "seed": seed,
             "kind_descriptions": model_rdms.attrs.get("kind_descriptions", "")}
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def _usable_cells(values: np.ndarray, shape: tuple, leading: list, ordered: xr.DataArray,
                  ids: list[str]) -> np.ndarray:
    """Which model RDMs (C, n, n) can be compared; warn about the partly NaN or constant ones."""
    count = values.shape[-1]
    upper, lower = np.triu_indices(count, 1)
    usable = np.zeros(len(values), dtype=bool)
    for cell, matrix in enumerate(values):
        index = np.unravel_index(cell, shape) if shape else ()
        label = ", ".join(f"{dim}={ordered[dim].values[i]}" for dim, i in zip(leading, index)) or "the model RDM"
        vector = matrix[upper, lower]
        finite = np.isfinite(vector)
        if not finite.any():
            continue  # not computed (ragged cube)
        if not finite.all():
            images = sorted({ids[i] for i in np.concatenate([upper[~finite], lower[~finite]])})
            warnings.warn(f"model RDM {label} has NaN dissimilarities (constant features or maps?) for images "
                          f"{few(images)}; its results are NaN", RSAWarning, stacklevel=3)
            continue
        check_square(matrix, ids, f"model_rdms[{label}]")
        if np.ptp(vector) == 0:
            warnings.warn(f"model RDM {label} is constant; its results are NaN", RSAWarning, stacklevel=3)
            continue
        usable[cell] = True
    return usable

