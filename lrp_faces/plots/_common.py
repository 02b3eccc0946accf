"""Shared pieces of the figures: errors, style, figures without pyplot, colours, checks, error bars, model ticks.

Labels and numbers come from :mod:`lrp_faces.formatting`, the layout of results from :mod:`lrp_faces.result_layout`;
this module holds what needs matplotlib.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterable, Iterator, Sequence

import matplotlib
import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure

from ..errors import LRPFacesError
from ..formatting import RELATION_LABELS, pretty


class PlotError(LRPFacesError, ValueError):
    """A result that cannot be drawn: missing variables or dims, nothing to show, unknown models or images."""


class PlotTypeError(LRPFacesError, TypeError):
    """A figure input of the wrong type."""


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


def error_bars(mean: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """(2, n) non-negative distances for ``errorbar(yerr=...)``; 0 where the interval is unknown."""
    mean, low, high = (np.asarray(value, dtype=np.float64) for value in (mean, low, high))
    below = np.where(np.isfinite(low), mean - low, 0.0)
    above = np.where(np.isfinite(high), high - mean, 0.0)
    return np.clip(np.nan_to_num(np.stack([below, above])), 0.0, None)


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
