"""Reading results in their contracted layout, as figures, the report and the command line show them.

The model grid of a cube or a generalisation result, its source x target pairs as matrices, coordinates as strings,
the confidence and masking mode a result was computed with, which RSA statistic to show, and the one summary over
seeds (mean and interval) that every figure, table and reading uses. Nothing here imports matplotlib.

>>> import numpy as np
>>> mean, lower, upper = seed_summary(np.array([0.2, 0.4, 0.6]))
>>> round(float(mean), 2), round(float(lower), 2), round(float(upper), 2)
(0.4, -0.1, 0.9)
"""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.stats
import xarray as xr

from .zoo import MODEL_DIMS

__all__ = ["SOURCE_DIMS", "TARGET_DIMS", "DEFAULT_CONFIDENCE", "AOPC_DEFINITION_ATTR", "strings", "computed_models",
           "model_grid", "pair_matrix", "own_and_random", "confidence_of", "masking_mode", "aopc_definition",
           "mean_interval", "seed_summary", "rsa_statistic", "rsa_statistic_label", "has_raters", "noise_ceiling",
           "is_stand_in"]

SOURCE_DIMS = tuple(f"source_{dim}" for dim in MODEL_DIMS)
"""Dims of the model whose map masks, in a :func:`lrp_faces.masking.generalization` result."""
TARGET_DIMS = tuple(f"target_{dim}" for dim in MODEL_DIMS)
"""Dims of the model scored on the masked images, in a :func:`lrp_faces.masking.generalization` result."""
DEFAULT_CONFIDENCE = 0.95
AOPC_DEFINITION_ATTR = "aopc"
"""Attribute of a masking result that states in words how its AOPC is defined (keep mode defines its own)."""


def _attrs(result: xr.Dataset | Mapping) -> Mapping:
    return result.attrs if hasattr(result, "attrs") else result


def strings(values: Any) -> np.ndarray:
    """The values of a coordinate as a flat array of ``str`` (bytes decoded, as netCDF may return them).

    Examples
    --------
    >>> strings([b"faces", "objects", 0]).tolist()
    ['faces', 'objects', '0']
    """
    return np.array([value.decode() if isinstance(value, bytes) else str(value) for value in np.ravel(values)])


def computed_models(data: xr.Dataset | xr.DataArray) -> list[tuple[str, str, int]]:
    """(pretraining, task, seed) of the models present, in coordinate order; a ``computed`` coordinate (ragged
    cubes) drops the missing ones.

    Examples
    --------
    >>> cube = xr.Dataset(coords={"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0, 1]})
    >>> cube = cube.assign_coords(computed=(("task", "seed"), [[True, True], [True, False]]))
    >>> computed_models(cube)
    [('faces', 'gender', 0), ('faces', 'gender', 1), ('faces', 'identity', 0)]
    """
    values = [[value.item() if hasattr(value, "item") else value for value in np.atleast_1d(data[dim].values)]
              for dim in MODEL_DIMS]
    present = data.coords["computed"] if "computed" in data.coords else None
    models = []
    for pretraining in values[0]:
        for task in values[1]:
            for seed in values[2]:
                if present is not None:
                    where = {dim: value for dim, value in zip(MODEL_DIMS, (pretraining, task, seed))
                             if dim in present.dims}
                    if not bool(present.sel(where)):
                        continue
                models.append((str(pretraining), str(task), int(seed)))
    return models


def model_grid(result: xr.Dataset, prefix: str) -> list[tuple[str, str, int]]:
    """The (pretraining, task, seed) grid over the dims ``{prefix}pretraining`` etc., in coordinate order.

    Examples
    --------
    >>> result = xr.Dataset(coords={"source_pretraining": ["faces"], "source_task": ["gender", "identity"],
    ...                             "source_seed": [0]})
    >>> model_grid(result, "source_")
    [('faces', 'gender', 0), ('faces', 'identity', 0)]
    """
    values = [np.atleast_1d(result[f"{prefix}{dim}"].values) for dim in MODEL_DIMS]
    return [(str(pretraining), str(task), int(seed)) for pretraining in values[0] for task in values[1]
            for seed in values[2]]


def pair_matrix(result: xr.Dataset, name: str) -> np.ndarray:
    """(S, S) values of a source x target variable of a generalisation result, sources as rows, in grid order.

    Examples
    --------
    >>> grid = {"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0]}
    >>> coords = {f"{side}_{dim}": values for side in ("source", "target") for dim, values in grid.items()}
    >>> index = xr.DataArray(np.array([[1.0, 0.6], [0.8, 1.0]]).reshape(1, 2, 1, 1, 2, 1),
    ...                      dims=SOURCE_DIMS + TARGET_DIMS)
    >>> pair_matrix(xr.Dataset({"generalization_index": index}, coords=coords), "generalization_index").tolist()
    [[1.0, 0.6], [0.8, 1.0]]
    """
    variable = result[name].transpose(*SOURCE_DIMS, *TARGET_DIMS)
    count = int(np.prod([result.sizes[dim] for dim in SOURCE_DIMS]))
    return np.asarray(variable.values, dtype=np.float64).reshape(count, count)


def own_and_random(result: xr.Dataset, variable: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, F, N) curves of a generalisation result: every model on its own maps (the diagonal), and with the random
    order.

    Examples
    --------
    >>> grid = {"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0]}
    >>> coords = {f"{side}_{dim}": values for side in ("source", "target") for dim, values in grid.items()}
    >>> pairs = np.arange(4.0).reshape(1, 2, 1, 1, 2, 1, 1, 1)  # source x target, one fraction, one image
    >>> result = xr.Dataset({"accuracy": (SOURCE_DIMS + TARGET_DIMS + ("fraction", "image"), pairs),
    ...                      "random_accuracy": (TARGET_DIMS + ("fraction", "image"), np.full((1, 2, 1, 1, 1), 9.0))},
    ...                     coords=coords)
    >>> own, random = own_and_random(result, "accuracy")
    >>> own.ravel().tolist(), random.ravel().tolist()
    ([0.0, 3.0], [9.0, 9.0])
    """
    pairs = result[variable].transpose(*SOURCE_DIMS, *TARGET_DIMS, "fraction", "image")
    count = int(np.prod([result.sizes[dim] for dim in SOURCE_DIMS]))
    square = np.asarray(pairs.values, dtype=np.float64).reshape((count, count) + pairs.shape[-2:])
    own = square[np.arange(count), np.arange(count)]
    random = result[f"random_{variable}"].transpose(*TARGET_DIMS, "fraction", "image")
    return own, np.asarray(random.values, dtype=np.float64).reshape((count,) + random.shape[-2:])


def confidence_of(result: xr.Dataset | Mapping, default: float = DEFAULT_CONFIDENCE) -> float:
    """The ``confidence`` attribute of a result (or of a mapping of attributes); ``default`` where it is missing or
    not a level in (0, 1).

    Examples
    --------
    >>> confidence_of({"confidence": 0.9}), confidence_of({"confidence": 95}), confidence_of({})
    (0.9, 0.95, 0.95)
    """
    value = _attrs(result).get("confidence", default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if 0 < value < 1 else default


def masking_mode(result: xr.Dataset | Mapping) -> str:
    """The ``mode`` a masking result was computed with, ``"remove"`` or ``"keep"`` (``"remove"`` for results written
    before the attribute existed).

    Examples
    --------
    >>> masking_mode({"mode": "keep"}), masking_mode({})
    ('keep', 'remove')
    """
    return str(_attrs(result).get("mode", "remove"))


def aopc_definition(result: xr.Dataset | Mapping) -> str | None:
    """How the AOPC of a masking result is defined, in words, as its :data:`AOPC_DEFINITION_ATTR` attribute states;
    None where the result does not say.

    Examples
    --------
    >>> aopc_definition({"aopc": "mean over fractions > 0 of f(original) - f(masked)"})
    'mean over fractions > 0 of f(original) - f(masked)'
    >>> aopc_definition({"aopc": "  "}) is None
    True
    """
    text = _attrs(result).get(AOPC_DEFINITION_ATTR)
    text = "" if text is None else str(text).strip()
    return text or None


def mean_interval(values: np.ndarray, axis: int = 0,
                  confidence: float = DEFAULT_CONFIDENCE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NaN-aware mean and Student-t confidence interval along ``axis``; the interval is NaN where n < 2.

    Examples
    --------
    >>> mean, low, high = mean_interval(np.array([[1.0, 2.0], [3.0, np.nan]]))
    >>> mean.tolist(), np.isnan(low).tolist()
    ([2.0, 2.0], [False, True])
    """
    values = np.asarray(values, dtype=np.float64)
    count = np.sum(np.isfinite(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN slices: NaN is the answer
        mean = np.nanmean(values, axis=axis)
        spread = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(count)
        half = scipy.stats.t.ppf(0.5 + confidence / 2, np.maximum(count - 1, 1)) * spread
    half = np.where(count >= 2, half, np.nan)
    return mean, mean - half, mean + half


def seed_summary(values: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None,
                 confidence: float = DEFAULT_CONFIDENCE, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (along ``axis``) with its confidence interval, as the figures, tables and readings show it.

    With two or more finite seeds: the NaN-aware mean and a Student-t interval over seeds (:func:`mean_interval`, at
    ``confidence``, e.g. :func:`confidence_of` the result). With one finite seed: its value and its own interval
    ``low``/``high`` (e.g. a bootstrap CI over images), NaN where that is NaN or not given (``n_bootstrap=0``): a
    missing interval stays missing. Without finite seeds: NaN throughout.

    Returns
    -------
    (mean, lower, upper)
        Arrays over the other axes (0-d for 1-d ``values``; ``float()`` them for scalars).

    Examples
    --------
    One finite seed keeps its own (bootstrap) interval:

    >>> [float(part) for part in seed_summary(np.array([0.7, np.nan]), low=[0.6, 0.0], high=[0.8, 1.0])]
    [0.7, 0.6, 0.8]
    """
    values = np.asarray(values, dtype=np.float64)
    mean, lower, upper = (np.asarray(part, dtype=np.float64) for part in mean_interval(values, axis, confidence))
    finite = np.isfinite(values)
    single = finite.sum(axis) == 1
    if single.any():
        index = np.expand_dims(np.argmax(finite, axis), axis)  # the one finite seed

        def own(bound: np.ndarray | None) -> np.ndarray:
            if bound is None:
                return np.full(mean.shape, np.nan)
            bound = np.broadcast_to(np.asarray(bound, dtype=np.float64), values.shape)
            return np.take_along_axis(bound, index, axis).squeeze(axis)

        lower, upper = np.where(single, own(low), lower), np.where(single, own(high), upper)
    return mean, lower, upper


def noise_ceiling(result: xr.Dataset) -> tuple[float, float]:
    """(lower, upper) noise ceiling of an RSA result; NaN without raters.

    Examples
    --------
    >>> noise_ceiling(xr.Dataset(attrs={"noise_ceiling_lower": 0.4, "noise_ceiling_upper": 0.6}))
    (0.4, 0.6)
    """
    bounds = []
    for side in ("lower", "upper"):
        try:
            bounds.append(float(result.attrs.get(f"noise_ceiling_{side}", np.nan)))
        except (TypeError, ValueError):
            bounds.append(np.nan)
    return bounds[0], bounds[1]


def has_raters(result: xr.Dataset) -> bool:
    """Whether an RSA result compares with several raters' RDMs (it then has a noise ceiling).

    Examples
    --------
    >>> has_raters(xr.Dataset(attrs={"n_raters": 3})), has_raters(xr.Dataset(attrs={"n_raters": 1}))
    (True, False)
    """
    try:
        raters = int(result.attrs.get("n_raters", 0) or 0)
    except (TypeError, ValueError):
        return False
    return all(np.isfinite(noise_ceiling(result))) or raters >= 2


def rsa_statistic(result: xr.Dataset) -> tuple[str, str | None, str | None, bool]:
    """Which correlation of a :func:`~lrp_faces.analysis.compare_with_humans` result to show, and its CI variables.

    With individual raters (a noise ceiling or ``n_raters >= 2``) it is ``rater_correlation``, the model's mean
    correlation with each rater, which the noise ceiling of Nili et al. (2014) bounds (its CI is
    ``rater_ci_low``/``rater_ci_high`` where the result has them); otherwise ``correlation`` with the human RDM.

    Returns
    -------
    (variable, ci_low variable or None, ci_high variable or None, per_rater)

    Examples
    --------
    >>> rsa_statistic(xr.Dataset({"correlation": 0.5, "ci_low": 0.4, "ci_high": 0.6}))
    ('correlation', 'ci_low', 'ci_high', False)
    """
    if has_raters(result) and "rater_correlation" in result:
        bounds = [name if name in result else None for name in ("rater_ci_low", "rater_ci_high")]
        return "rater_correlation", bounds[0], bounds[1], True
    return "correlation", "ci_low", "ci_high", False


def rsa_statistic_label(result: xr.Dataset) -> str:
    """What :func:`rsa_statistic` picks, in words.

    Examples
    --------
    >>> rsa_statistic_label(xr.Dataset({"correlation": 0.5}))
    'correlation with the human RDM'
    """
    if rsa_statistic(result)[3]:
        return "mean correlation with each rater's RDM"
    return "correlation with the raters' mean RDM" if has_raters(result) else "correlation with the human RDM"


def is_stand_in(result: xr.Dataset) -> bool:
    """Whether the "human" RDM of an RSA result is a synthetic stand-in rather than human ratings.

    Examples
    --------
    >>> is_stand_in(xr.Dataset(attrs={"human_source": "synthetic parameter-space distances"}))
    True
    >>> is_stand_in(xr.Dataset(attrs={"human_source": "ratings.csv", "human_is_stand_in": "no"}))
    False
    """
    flag = str(result.attrs.get("human_is_stand_in", "")).strip().lower()
    if flag in ("yes", "true", "1", "no", "false", "0"):
        return flag in ("yes", "true", "1")
    source = str(result.attrs.get("human_source", "")).lower()
    return any(word in source for word in ("synthetic", "stand-in", "stand in", "parameter"))
