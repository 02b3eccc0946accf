"""Shared pieces of the figures: errors, style, labels, model grids and confidence intervals."""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, Sequence

import matplotlib
import numpy as np
import scipy.stats
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from ..masking import MODEL_DIMS
from ..errors import LRPFacesError

SOURCE_DIMS = tuple(f"source_{dim}" for dim in MODEL_DIMS)
TARGET_DIMS = tuple(f"target_{dim}" for dim in MODEL_DIMS)
#: Short names of the relations of two models (:data:`lrp_faces.masking.RELATIONS`), for figures, the report and the
#: command-line summaries.
RELATION_LABELS = {"same_model": "same model", "same_cell_different_seed": "other seed",
                   "different_task": "other task", "different_pretraining": "other pretraining",
                   "both_different": "other task and pretraining"}
ORDER_LABELS = {"morf": "MoRF (most relevant first)", "lerf": "LeRF (least relevant first)", "random": "random order"}
METRIC_LABELS = {"relevance_mass_accuracy": "relevance mass accuracy", "relevance_rank_accuracy":
                 "relevance rank accuracy", "aopc_output": "AOPC (output)", "aopc_probability": "AOPC (probability)"}
KIND_LABELS = {"features": "penultimate features", "relevance": "relevance maps",
               "decision_weighted": "decision-weighted features"}


class PlotError(LRPFacesError, ValueError):
    """A result that cannot be drawn: missing variables or dims, nothing to show, unknown models or images."""


class PlotTypeError(LRPFacesError, TypeError):
    """A figure input of the wrong type."""


def pretty(name: Any, labels: dict[str, str] | None = None) -> str:
    """A readable label for a lower_snake_case name (from ``labels`` where it is there)."""
    text = str(name)
    return (labels or {}).get(text, text.replace("_", " "))


def model_label(pretraining: Any, task: Any, seed: Any | None = None, separator: str = " · ") -> str:
    """``"faces · gender · seed 0"``."""
    parts = [str(pretraining), str(task)] + ([f"seed {int(seed)}"] if seed is not None else [])
    return separator.join(parts)


@contextlib.contextmanager
def style(font_scale: float = 0.9) -> Iterator[None]:
    """Seaborn's white-grid look for the figures built inside the block, without touching global rcParams."""
    params = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook", font_scale=font_scale),
              "figure.dpi": 100, "savefig.dpi": 150, "svg.fonttype": "none", "axes.titleweight": "bold"}
    with matplotlib.rc_context(params):
        yield


def new_figure(width: float, height: float) -> Figure:
    """A Figure that is not registered with pyplot (no global state), with constrained layout."""
    return Figure(figsize=(max(width, 3.0), max(height, 2.0)), layout="constrained")


def palette(count: int) -> list:
    """``count`` colour-blind-safe colours (seaborn's ``colorblind``, cycled)."""
    colours = sns.color_palette("colorblind", 10)
    return [colours[index % len(colours)] for index in range(count)]


def require_dataset(result: Any, name: str, variables: Iterable[str] = (), dims: Iterable[str] = (),
                    produced_by: str = "") -> xr.Dataset:
    """``result`` after checking it is a Dataset with ``variables`` and ``dims``; errors name what is missing."""
    source = f" (from {produced_by})" if produced_by else ""
    if not isinstance(result, xr.Dataset):
        raise PlotTypeError(f"{name} must be an xarray.Dataset{source}, got {type(result).__name__}")
    missing = [variable for variable in variables if variable not in result.variables]
    missing_dims = [dim for dim in dims if dim not in result.dims]
    if missing or missing_dims:
        raise PlotError(f"{name} must have the variables {list(variables)} and dims {list(dims)}{source}; missing "
                        f"variables {missing}, dims {missing_dims} (it has {sorted(map(str, result.data_vars))} "
                        f"over {dict(result.sizes)})")
    return result


def confidence_of(result: xr.Dataset, default: float = 0.95) -> float:
    value = result.attrs.get("confidence", default)
    try:
        value = float(value)
    except (TypeError, ValueError):
        return default
    return value if 0 < value < 1 else default


def mean_interval(values: np.ndarray, axis: int = 0, confidence: float = 0.95) -> tuple[np.ndarray, ...]:
    """NaN-aware mean and Student-t confidence interval along ``axis``; the interval is NaN where n < 2."""
    values = np.asarray(values, dtype=np.float64)
    count = np.sum(np.isfinite(values), axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"), _quiet():
        mean = np.nanmean(values, axis=axis)
        spread = np.nanstd(values, axis=axis, ddof=1) / np.sqrt(count)
        half = scipy.stats.t.ppf(0.5 + confidence / 2, np.maximum(count - 1, 1)) * spread
    half = np.where(count >= 2, half, np.nan)
    return mean, mean - half, mean + half


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def seed_summary(values: np.ndarray, low: np.ndarray | None = None, high: np.ndarray | None = None,
                 confidence: float = 0.95, axis: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (along ``axis``) with its confidence interval, as the figures, tables and readings show it.

    With two or more finite seeds: the NaN-aware mean and a Student-t interval over seeds (:func:`mean_interval`, at
    ``confidence``, e.g. :func:`confidence_of` the result). With one finite seed: its value and its own interval
    ``low``/``high`` (e.g. a bootstrap CI over images), NaN where that is NaN or not given (``n_bootstrap=0``): a
    missing interval stays missing. Without finite seeds: NaN throughout.

    Returns
    -------
    (mean, lower, upper)
        Arrays over the other axes (0-d for 1-d ``values``; ``float()`` them for scalars).
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


def strings(values: Any) -> np.ndarray:
    """The values of a coordinate as a flat array of ``str`` (bytes decoded, as netCDF may return them)."""
    return np.array([value.decode() if isinstance(value, bytes) else str(value) for value in np.ravel(values)])


def pair_matrix(result: xr.Dataset, name: str) -> np.ndarray:
    """(S, S) values of a source x target variable of a generalisation result, sources as rows, in grid order."""
    variable = result[name].transpose(*SOURCE_DIMS, *TARGET_DIMS)
    count = int(np.prod([result.sizes[dim] for dim in SOURCE_DIMS]))
    return np.asarray(variable.values, dtype=np.float64).reshape(count, count)


def own_and_random(result: xr.Dataset, variable: str) -> tuple[np.ndarray, np.ndarray]:
    """(S, F, N) curves of a generalisation result: every model on its own maps (the diagonal), and with the random
    order."""
    pairs = result[variable].transpose(*SOURCE_DIMS, *TARGET_DIMS, "fraction", "image")
    count = int(np.prod([result.sizes[dim] for dim in SOURCE_DIMS]))
    square = np.asarray(pairs.values, dtype=np.float64).reshape((count, count) + pairs.shape[-2:])
    own = square[np.arange(count), np.arange(count)]
    random = result[f"random_{variable}"].transpose(*TARGET_DIMS, "fraction", "image")
    return own, np.asarray(random.values, dtype=np.float64).reshape((count,) + random.shape[-2:])


def error_bars(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(2, n) non-negative distances for ``errorbar(yerr=...)``; 0 where the interval is unknown."""
    mean, low, high = (np.asarray(value, dtype=np.float64) for value in (mean, low, high))
    below = np.where(np.isfinite(low), mean - low, 0.0)
    above = np.where(np.isfinite(high), high - mean, 0.0)
    return np.clip(np.nan_to_num(np.stack([below, above])), 0.0, None)


def computed_models(data: xr.Dataset | xr.DataArray) -> list[tuple[str, str, int]]:
    """(pretraining, task, seed) of the models present, in coordinate order; a ``computed`` coordinate (ragged
    cubes) drops the missing ones."""
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
    """The (pretraining, task, seed) grid over the dims ``{prefix}pretraining`` etc., in coordinate order."""
    values = [np.atleast_1d(result[f"{prefix}{dim}"].values) for dim in MODEL_DIMS]
    return [(str(pretraining), str(task), int(seed)) for pretraining in values[0] for task in values[1]
            for seed in values[2]]


def group_ticks(ax, models: Sequence[tuple[str, str, int]], axis: str) -> None:
    """Label a model axis of a heatmap: seeds at each cell, pretraining and task once per group, with lines
    between groups."""
    positions = np.arange(len(models)) + 0.5
    seeds = [f"seed {model[2]}" for model in models]
    groups: list[tuple[tuple[str, str], int, int]] = []
    for index, model in enumerate(models):
        if groups and groups[-1][0] == model[:2]:
            groups[-1] = (groups[-1][0], groups[-1][1], index + 1)
        else:
            groups.append((model[:2], index, index + 1))
    centres = [(start + stop) / 2 for _, start, stop in groups]
    names = [f"{pretraining}\n{task}" for (pretraining, task), _, _ in groups]
    boundaries = [start for _, start, _ in groups[1:]]
    pretraining_boundaries = [start for (group, start, _), previous in zip(groups[1:], groups[:-1])
                              if group[0] != previous[0][0]]
    setter = ax.set_xticks if axis == "x" else ax.set_yticks
    (ax.xaxis if axis == "x" else ax.yaxis).remove_overlapping_locs = False  # group centres may sit on a seed tick
    setter(positions, seeds, fontsize="x-small", rotation=90 if axis == "x" else 0)
    setter(centres, names, minor=True, fontsize="small", fontweight="bold")
    ax.tick_params(axis=axis, which="minor", length=0, pad=42 if axis == "x" else 46)
    ax.tick_params(axis=axis, which="major", length=2)
    line = ax.axvline if axis == "x" else ax.axhline
    for boundary in boundaries:
        width = 2.0 if boundary in pretraining_boundaries else 0.8
        line(boundary, color="black", linewidth=width)


def format_interval(mean: float, low: float, high: float, digits: int = 2) -> str:
    """``"0.93 (0.88–0.97)"``, ``"0.10 (−0.20 to 0.40)"``; ``"0.93"`` without an interval; ``"n/a"`` without a
    value. Negative numbers get a true minus sign."""
    def number(value: float) -> str:
        return f"{value:.{digits}f}".replace("-", "−")

    if mean is None or not np.isfinite(mean):
        return "n/a"
    text = number(mean)
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        separator = " to " if low < 0 or high < 0 else "–"
        text += f" ({number(low)}{separator}{number(high)})"
    return text


def relation_points(ax, relations: Sequence[str], mean: np.ndarray, low: np.ndarray, high: np.ndarray,
                    pair_values: dict[str, np.ndarray], pairs: dict[str, int], seed: int = 0) -> None:
    """Per-pair values as faint jittered dots and each relation's mean with its CI, one colour per relation."""
    colours = palette(len(RELATION_LABELS) + 1)[1:]
    jitter = np.random.default_rng(seed)
    for position, relation in enumerate(relations):
        colour = colours[list(RELATION_LABELS).index(relation) % len(colours)] if relation in RELATION_LABELS \
            else colours[position % len(colours)]
        values = np.asarray(pair_values.get(relation, []), dtype=np.float64)
        values = values[np.isfinite(values)]
        if values.size:
            ax.scatter(position + jitter.uniform(-0.18, 0.18, values.size), values, s=12, color=colour, alpha=0.35,
                       linewidths=0, zorder=2)
        if np.isfinite(mean[position]):
            ax.errorbar([position], [mean[position]], yerr=error_bars(mean[position:position + 1],
                                                                       low[position:position + 1],
                                                                       high[position:position + 1]),
                        fmt="o", color=colour, markersize=8, markeredgecolor="black", capsize=5, elinewidth=2,
                        zorder=3)
        else:
            ax.text(position, 0.5, "no pairs", ha="center", va="center", transform=ax.get_xaxis_transform(),
                    color="0.4", fontsize="small")
    ax.set_xticks(range(len(relations)), [f"{pretty(relation, RELATION_LABELS)}\n({pairs.get(relation, 0)} pairs)"
                                          for relation in relations], fontsize="small")
    ax.set_xlim(-0.6, len(relations) - 0.4)
