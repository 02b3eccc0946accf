"""Figures of masking results: perturbation curves, the generalisation and asymmetry heatmaps, G by relation."""
from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Sequence

import numpy as np
import seaborn as sns
import xarray as xr
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..formatting import fraction_label, model_label, order_label
from ..result_layout import (SOURCE_DIMS, TARGET_DIMS, confidence_of, masking_mode, mean_interval, model_grid,
                             own_and_random, pair_matrix, strings)
from ..zoo import MODEL_DIMS
from ._common import PlotError, PlotTypeError, group_ticks, new_figure, relation_points, require_dataset, style

__all__ = ["masking_curves", "generalization_heatmap", "asymmetry_heatmap", "generalization_by_relation"]

CURVE_METRICS = {"accuracy": "correct", "output": "output", "probability": "probability"}
_COLOURS = sns.color_palette("colorblind", 10)
ORDER_STYLE = {"morf": {"color": _COLOURS[1], "linestyle": "-"}, "lerf": {"color": _COLOURS[0], "linestyle": "--"},
               "random": {"color": _COLOURS[7], "linestyle": ":"}}
OTHER_ORDER_STYLE = {"color": _COLOURS[4], "linestyle": "-."}
SOURCE_ROLE = {"remove": "whose map hides the pixels", "keep": "whose map picks the pixels kept"}
"""What the source model's map does to the images, per masking mode."""


def _order_rank(order: str) -> int:
    """MoRF, LeRF, random, then others: the order of the curves in a panel and its legend."""
    return list(ORDER_STYLE).index(order) if order in ORDER_STYLE else len(ORDER_STYLE)


def _is_generalization(result: Any) -> bool:
    return isinstance(result, xr.Dataset) and all(dim in result.dims for dim in SOURCE_DIMS + TARGET_DIMS)


def _curves_from_generalization(results: Mapping[str, xr.Dataset], metrics: Sequence[str]) -> tuple[dict, str]:
    """{cell: {order: {metric: (fractions, [per-seed (F, N)])}}} from generalisation results keyed by their order:
    each model on its own maps, and the random order (of the first result)."""
    needed = [CURVE_METRICS[metric] for metric in metrics]
    panels: dict = {}
    grid = None
    for position, (key, result) in enumerate(results.items()):
        if key not in ("morf", "lerf"):
            raise PlotError(f"generalisation results must be keyed by their order, 'morf' or 'lerf'; got {key!r} (the "
                            f"random order comes with each result)")
        require_dataset(result, f"result[{key!r}]" if len(results) > 1 else "result",
                        needed + [f"random_{name}" for name in needed], ("fraction", "image"),
                        "lrp_faces.masking.generalization")
        models = model_grid(result, "source_")
        if grid is not None and models != grid:
            raise PlotError(f"the generalisation results keyed {list(results)} cover different models")
        grid = models
        fractions = np.asarray(result["fraction"].values, dtype=np.float64)
        sources = [(key, 0), ("random", 1)] if position == 0 else [(key, 0)]
        for metric in metrics:
            curves_pair = own_and_random(result, CURVE_METRICS[metric])
            for index, (pretraining, task, _) in enumerate(models):
                cell = panels.setdefault((pretraining, task), {})
                for name, part in sources:
                    curves = cell.setdefault(name, {}).setdefault(metric, (fractions, []))[1]
                    curves.append(curves_pair[part][index])
    return panels, "seeds"


def _add_self_masking(panels: dict, result: xr.Dataset, lerf: xr.Dataset, metrics: Sequence[str]) -> None:
    """Add each model's LeRF curves on its own maps (``lerf``: model dims x fraction x image) to the panels of the
    generalisation ``result``, after checking that both cover the same models, fractions and images."""
    order = str(result.attrs.get("order", "morf"))
    if order != "morf":
        raise PlotError(f"lerf= adds least-relevant-first curves to a MoRF generalisation result; this result's "
                        f"order is {order!r}")
    needed = [CURVE_METRICS[metric] for metric in metrics]
    require_dataset(lerf, "lerf", needed, MODEL_DIMS + ("fraction", "image"),
                    "lrp_faces.masking.curves per model, stacked over (pretraining, task, seed), e.g. masking_lerf.nc")
    lerf_order = str(lerf.attrs.get("order", "lerf"))
    if lerf_order != "lerf":
        raise PlotError(f"lerf must hold least-relevant-first curves; its order is {lerf_order!r}")
    fractions = np.asarray(result["fraction"].values, dtype=np.float64)
    other = np.asarray(lerf["fraction"].values, dtype=np.float64)
    if other.shape != fractions.shape or not np.allclose(other, fractions):
        raise PlotError(f"lerf has the fractions {other.tolist()}, the result {fractions.tolist()}; compute both with "
                        f"the same fractions")
    images, lerf_images = ([str(value) for value in data["image"].values] for data in (result, lerf))
    if images != lerf_images:
        raise PlotError(f"lerf covers other images than the result ({len(lerf_images)} against {len(images)}, e.g. "
                        f"{(set(lerf_images) ^ set(images) or {lerf_images[0]}).pop()!r}); compute both on the same "
                        f"images")
    available = {dim: [str(value) for value in np.atleast_1d(lerf[dim].values)] for dim in MODEL_DIMS}
    for pretraining, task, seed in model_grid(result, "source_"):
        where = {"pretraining": pretraining, "task": task, "seed": str(seed)}
        absent = [f"{dim}={value}" for dim, value in where.items() if value not in available[dim]]
        if absent:
            raise PlotError(f"lerf has no curves of the model {pretraining}/{task}/{seed} ({', '.join(absent)})")
        for metric in metrics:
            curve = lerf[CURVE_METRICS[metric]].sel(pretraining=pretraining, task=task, seed=seed)
            values = np.asarray(curve.transpose("fraction", "image").values, dtype=np.float64)
            cell = panels[(pretraining, task)]
            cell.setdefault("lerf", {}).setdefault(metric, (fractions, []))[1].append(values)


def _curves_from_mapping(result: Mapping, metrics: Sequence[str]) -> tuple[dict, str]:
    """{("", ""): {order: {metric: (fractions, [per-replicate (F, N)])}}} from curves results keyed by order."""
    cell: dict = {}
    if not result:
        raise PlotError("result is an empty mapping; give curves results keyed by order, e.g. {'morf': [...]}")
    for order, items in result.items():
        datasets = [items] if isinstance(items, xr.Dataset) else list(items) if isinstance(items, Sequence) else None
        if not datasets or not all(isinstance(item, xr.Dataset) for item in datasets):
            raise PlotTypeError(f"result[{order!r}] must be a lrp_faces.masking.curves Dataset or a sequence of them "
                                f"(one per seed), got {type(items).__name__}")
        for item in datasets:
            require_dataset(item, f"result[{order!r}]", [CURVE_METRICS[metric] for metric in metrics],
                            ("fraction", "image"), "lrp_faces.masking.curves")
            fractions = np.asarray(item["fraction"].values, dtype=np.float64)
            for metric in metrics:
                values = item[CURVE_METRICS[metric]]
                extra = [dim for dim in values.dims if dim not in ("fraction", "image")]
                stacked = values.transpose(*extra, "fraction", "image").values.astype(np.float64)
                stacked = stacked.reshape((-1,) + stacked.shape[-2:])  # extra dims (e.g. seed) are replicates
                entry = cell.setdefault(str(order), {}).setdefault(metric, (fractions, []))
                if entry[0].shape != fractions.shape or not np.allclose(entry[0], fractions):
                    raise PlotError(f"the curves of result[{order!r}] use different fractions")
                entry[1].extend(stacked)
    return {("", ""): cell}, "replicates"


def _check_request(result: Any, metrics: Sequence[str], lerf: xr.Dataset | None) -> None:
    """Refuse metrics that curves do not have, and ``lerf=`` with anything but one generalisation result."""
    if isinstance(metrics, str) or not metrics or any(metric not in CURVE_METRICS for metric in metrics):
        raise PlotError(f"metrics must be a non-empty sequence of {tuple(CURVE_METRICS)}, got {metrics!r}")
    if lerf is not None and not _is_generalization(result):
        raise PlotTypeError("lerf= goes with one lrp_faces.masking.generalization result (MoRF); for curves results "
                            "give the LeRF curves in the mapping, e.g. {'morf': ..., 'lerf': ..., 'random': ...}")


def _collect_panels(result: Any, metrics: Sequence[str], lerf: xr.Dataset | None) -> tuple[dict, str, list]:
    """The curves of every panel ({cell: {order: {metric: (fractions, [per-replicate (F, N)])}}}), what the
    replicates are ("seeds" or "replicates") and every input Dataset, from any form :func:`masking_curves` takes."""
    if _is_generalization(result):
        panels, replicates = _curves_from_generalization({str(result.attrs.get("order", "morf")): result}, metrics)
        if lerf is None:
            return panels, replicates, [result]
        _add_self_masking(panels, result, lerf, metrics)
        panels = {cell: {order: curves[order] for order in sorted(curves, key=_order_rank)}
                  for cell, curves in panels.items()}
        return panels, replicates, [result, lerf]
    if isinstance(result, Mapping) and result and all(_is_generalization(item) for item in result.values()):
        panels, replicates = _curves_from_generalization({str(key): item for key, item in result.items()}, metrics)
        return panels, replicates, list(result.values())
    if isinstance(result, Mapping) and not isinstance(result, xr.Dataset):
        panels, replicates = _curves_from_mapping(result, metrics)
        inputs = [item for items in result.values() for item in ([items] if isinstance(items, xr.Dataset) else items)]
        return panels, replicates, inputs
    raise PlotTypeError(f"result must be a lrp_faces.masking.generalization Dataset or a mapping order -> "
                        f"masking.curves Dataset(s); got {type(result).__name__}"
                        + (" without source_/target_ dims" if isinstance(result, xr.Dataset) else ""))


def _shared_mode(inputs: Sequence[xr.Dataset]) -> str:
    """The masking mode of all the curves of a figure (:func:`~lrp_faces.result_layout.masking_mode`)."""
    modes = sorted({masking_mode(item) for item in inputs})
    if len(modes) > 1:
        raise PlotError(f"the curves to draw were masked in different modes {modes} (the result's attribute "
                        f"'mode'); draw the curves of one mode per figure")
    return modes[0]


def _draw_curves(ax, curves: Mapping[str, dict], metric: str, confidence: float, replicates: str,
                 mode: str) -> set[str]:
    """Each order's mean curve of ``metric`` in one panel, with its CI band: over replicates where there are two or
    more, else over images. Returns what the bands are over."""
    notes = set()
    for order, by_metric in curves.items():
        fractions, values = by_metric[metric]
        if len(values) >= 2:
            per_replicate = np.array([np.nanmean(item, axis=-1) for item in values])
            mean, low, high = mean_interval(per_replicate, 0, confidence)
            notes.add(f"over {len(values)} {replicates}")
        else:
            mean, low, high = mean_interval(values[0], -1, confidence)
            notes.add(f"over images (1 {replicates[:-1]})")
        line_style = ORDER_STYLE.get(order, OTHER_ORDER_STYLE)
        ax.plot(fractions, mean, label=order_label(order, mode), linewidth=2, **line_style)
        if metric != "output":  # accuracy and probability live in [0, 1]
            low, high = np.clip(low, 0.0, 1.0), np.clip(high, 0.0, 1.0)
        if np.isfinite(low).any():
            ax.fill_between(fractions, low, high, color=line_style["color"], alpha=0.2, linewidth=0)
    return notes


def _label_axes(axes: np.ndarray, cells: Sequence[tuple[str, str]], metrics: Sequence[str], attrs: Mapping,
                mode: str) -> None:
    """Cell titles on the top row, the fraction (hidden or kept, of pixels or patches) on the bottom row and the
    metrics on the left column."""
    units = "patches" if int(attrs.get("patch", 1) or 1) > 1 else "pixels"
    ylabels = {"accuracy": "accuracy", "probability": "probability of the true class",
               "output": "contrastive output" if int(attrs.get("contrastive", 1)) else "logit of the true class"}
    for column, cell in enumerate(cells):
        if cell != ("", ""):
            axes[0, column].set_title(model_label(*cell))
        axes[-1, column].set_xlabel(fraction_label(mode, units))
    for row, metric in enumerate(metrics):
        axes[row, 0].set_ylabel(ylabels[metric])


def masking_curves(result: xr.Dataset | Mapping[str, xr.Dataset | Sequence[xr.Dataset]],
                   metrics: Sequence[str] = ("accuracy", "output"), confidence: float | None = None, *,
                   lerf: xr.Dataset | None = None) -> Figure:
    """Accuracy and explained output against the fraction of pixels masked, per order, with CI bands.

    The fraction is what the results' ``mode`` attribute says: hidden (``"remove"``: the first pixels of the order
    are filled) or kept (``"keep"``: the first pixels of the order stay and the rest is filled, so the curves rise
    with the fraction). The axis, legend and title say which; all curves of a figure must share one mode.

    Parameters
    ----------
    result : xarray.Dataset or Mapping
        A :func:`lrp_faces.masking.generalization` result, drawn per pretraining x task cell: each model on its own
        maps (the result's order) and the random order, averaged over seeds; or such results keyed by order
        (``{"morf": ..., "lerf": ...}``); or :func:`lrp_faces.masking.curves` results keyed by order (``"morf"``,
        ``"lerf"``, ``"random"``), each one Dataset or a sequence of them (one per seed), drawn in one cell.
    metrics : sequence of {"accuracy", "output", "probability"}
        One row of panels each.
    confidence : float, optional
        Of the bands (default: the result's, else 0.95). Bands are Student-t intervals of the mean over seeds; with
        a single seed, over images.
    lerf : xarray.Dataset, optional
        With a MoRF generalisation ``result``: every model masked by its own maps least relevant first, i.e.
        :func:`lrp_faces.masking.curves` results with ``order="lerf"`` stacked over (pretraining, task, seed), on the
        same fractions and images (``masking_lerf.nc`` of a study run). Each panel then shows MoRF, LeRF and random.

    Returns
    -------
    matplotlib.figure.Figure
        ``len(metrics)`` rows x one column per cell.

    Raises
    ------
    PlotError
        Unknown metrics, results without their variables, curves that do not match (fractions, images, models) or
        that were masked in different modes.
    PlotTypeError
        A result of another kind.

    Examples
    --------
    Curves of one model, by order (a generalisation result is drawn per model instead):

    >>> import torch
    >>> from torch import nn
    >>> from lrp_faces.masking import curves
    >>> _ = torch.manual_seed(0)
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
    >>> images, relevance = torch.rand(6, 3, 8, 8), torch.randn(6, 8, 8)
    >>> by_order = {order: curves(model, images, [0, 1] * 3, relevance, fractions=(0.0, 0.25, 0.5), order=order)
    ...             for order in ("morf", "lerf", "random")}
    >>> figure = masking_curves(by_order)
    >>> [axis.get_ylabel() for axis in figure.axes]
    ['accuracy', 'contrastive output']
    """
    _check_request(result, metrics, lerf)
    panels, replicates, inputs = _collect_panels(result, metrics, lerf)
    attrs, mode = inputs[0].attrs, _shared_mode(inputs)
    confidence = confidence if confidence is not None else confidence_of(attrs)
    cells = list(panels)
    band_notes: set[str] = set()
    with style(1.0):
        figure = new_figure(2.6 * len(cells) + 0.8, 2.4 * len(metrics) + 0.9)
        axes = figure.subplots(len(metrics), len(cells), squeeze=False, sharex=True, sharey="row")
        for column, cell in enumerate(cells):
            for row, metric in enumerate(metrics):
                band_notes |= _draw_curves(axes[row, column], panels[cell], metric, confidence, replicates, mode)
        _label_axes(axes, cells, metrics, attrs, mode)
        handles, labels = axes[0, 0].get_legend_handles_labels()
        figure.legend(handles, labels, loc="outside lower center", ncols=len(labels), frameon=False)
        how = ", ".join([f"mode: {mode}"] + ([f"fill: {attrs['fill']}"] if attrs.get("fill") else []))
        figure.suptitle(f"Masking curves ({how}); bands: {confidence:.0%} CI {', '.join(sorted(band_notes))}",
                        fontsize="medium")
    return figure


def _heatmap(result: xr.Dataset, values: np.ndarray, annotations: np.ndarray | None, title: str, colorbar_label: str,
             cmap: str, limit: float, mask: np.ndarray | None = None) -> tuple[Figure, Any]:
    models = model_grid(result, "source_")
    count = len(models)
    side = min(max(5.0, 0.55 * count + 2.2), 14.0)
    figure = new_figure(side + 1.8, side + 0.6)
    ax = figure.add_subplot()
    font = 10 if count <= 6 else 8 if count <= 12 else 6 if count <= 16 else 5
    with warnings.catch_warnings():  # seaborn's own use of Colormap.set_bad, deprecated in matplotlib 3.10
        warnings.filterwarnings("ignore", "The set_bad function", PendingDeprecationWarning)
        sns.heatmap(values, ax=ax, cmap=cmap, center=0.0, vmin=-limit, vmax=limit, mask=mask, square=True,
                    annot=annotations if annotations is not None and count <= 20 else False, fmt="",
                    annot_kws={"fontsize": font}, linewidths=0.4, linecolor="white",
                    cbar_kws={"label": colorbar_label, "shrink": 0.8})
    ax.set_facecolor("0.85")  # NaN and masked cells
    ax.grid(False)
    group_ticks(ax, models, "x")
    group_ticks(ax, models, "y")
    ax.set_xlabel("target model (scored on the masked images)")
    ax.set_ylabel(f"source model ({SOURCE_ROLE.get(masking_mode(result), 'whose map masks the images')})")
    ax.set_title(title)
    return figure, ax


def generalization_heatmap(result: xr.Dataset, annotate: bool = True) -> Figure:
    """The generalisation index G(source -> target) of every pair of models, grouped by pretraining and task.

    G = 0 is as effective as a random order and 1 as effective as the target's own map (the diagonal, outlined);
    the colormap is diverging around 0 with 1 marked on the colour bar.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.masking.generalization`.
    annotate : bool
        Write the values in the cells (up to 20 models).

    Returns
    -------
    matplotlib.figure.Figure
        The heatmap axes and its colour bar.

    Examples
    --------
    >>> import tempfile, torch
    >>> from lrp_faces import cube, masking, vgg16
    >>> from lrp_faces.faces import synthetic_faces
    >>> from lrp_faces.zoo import ModelSpec
    >>> _ = torch.manual_seed(0)
    >>> faces = synthetic_faces(2, 3, size=32)
    >>> zoo = {ModelSpec("faces", task, 0): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
    ...        for task in ("gender", "identity")}  # untrained stand-ins
    >>> maps = cube.compute(zoo, faces, tempfile.mkdtemp(), progress=False)
    >>> result = masking.generalization(maps, zoo, faces, fractions=(0.0, 0.5), n_bootstrap=10, n_permutations=10,
    ...                                 progress=False)
    >>> figure = generalization_heatmap(result)
    >>> figure.axes[0].get_title()
    'Generalisation index G(source → target)'
    """
    require_dataset(result, "result", ["generalization_index"], SOURCE_DIMS + TARGET_DIMS,
                    "lrp_faces.masking.generalization")
    values = pair_matrix(result, "generalization_index")
    finite = np.abs(values[np.isfinite(values)])
    limit = max(1.1, float(finite.max()) * 1.02 if finite.size else 1.1)
    annotations = np.vectorize(lambda value: f"{value:.2f}" if np.isfinite(value) else "")(values) \
        if annotate else None
    with style():
        figure, ax = _heatmap(result, values, annotations, "Generalisation index G(source → target)",
                              "G  (0: random order, 1: the target's own map)", "RdBu_r", limit)
        for index in range(len(values)):
            ax.add_patch(Rectangle((index, index), 1, 1, fill=False, edgecolor="black", linewidth=1.2))
        colorbar = ax.collections[0].colorbar
        colorbar.ax.axhline(1.0, color="black", linewidth=2)
        colorbar.ax.axhline(0.0, color="black", linewidth=0.8, linestyle=":")
        ticks = sorted({round(tick, 2) for tick in (-1.0, -0.5, 0.0, 0.5, 1.0) if abs(tick) <= limit})
        colorbar.set_ticks(ticks, labels=[("1 (own map)" if tick == 1 else "0 (random)" if tick == 0 else f"{tick:g}")
                                          for tick in ticks])
    return figure


def _stars(p_value: float) -> str:
    return "" if not np.isfinite(p_value) else "**" if p_value < 0.01 else "*" if p_value < 0.05 else ""


def asymmetry_heatmap(result: xr.Dataset, annotate: bool = True) -> Figure:
    """The asymmetry G(s -> t) - G(t -> s) of every pair of models, diverging at 0; * p < 0.05, ** p < 0.01.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.masking.generalization` (``asymmetry`` and ``asymmetry_p_value``).
    annotate : bool
        Write the values in the cells (up to 20 models); the significance stars are drawn either way.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile, torch
    >>> from lrp_faces import cube, masking, vgg16
    >>> from lrp_faces.faces import synthetic_faces
    >>> from lrp_faces.zoo import ModelSpec
    >>> _ = torch.manual_seed(0)
    >>> faces = synthetic_faces(2, 3, size=32)
    >>> zoo = {ModelSpec("faces", task, 0): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
    ...        for task in ("gender", "identity")}  # untrained stand-ins
    >>> maps = cube.compute(zoo, faces, tempfile.mkdtemp(), progress=False)
    >>> result = masking.generalization(maps, zoo, faces, fractions=(0.0, 0.5), n_bootstrap=10, n_permutations=10,
    ...                                 progress=False)
    >>> figure = asymmetry_heatmap(result)
    >>> figure.axes[0].get_title()
    'Asymmetry G(s → t) − G(t → s)'
    """
    require_dataset(result, "result", ["asymmetry", "asymmetry_p_value"], SOURCE_DIMS + TARGET_DIMS,
                    "lrp_faces.masking.generalization")
    values = pair_matrix(result, "asymmetry")
    p_values = pair_matrix(result, "asymmetry_p_value")
    finite = np.abs(values[np.isfinite(values)])
    limit = max(0.05, float(finite.max()) if finite.size else 0.05)
    mask = np.eye(len(values), dtype=bool)
    annotations = np.array([[(f"{value:.2f}" if annotate and np.isfinite(value) else "") + _stars(p_value)
                             for value, p_value in zip(row, p_row)] for row, p_row in zip(values, p_values)])
    with style():
        figure, ax = _heatmap(result, values, annotations, "Asymmetry G(s → t) − G(t → s)",
                              "asymmetry  (> 0: the row's map transfers better)", "PuOr_r", limit, mask=mask)
        tested = np.isfinite(p_values[~mask]).any()
        ax.set_xlabel(f"{ax.get_xlabel()}\n" + ("* p < 0.05, ** p < 0.01 (paired permutation test\nover images, "
                                                "uncorrected)" if tested else "no permutation test (too few images)"))
    return figure


def generalization_by_relation(result: xr.Dataset, include_same_model: bool = False) -> Figure:
    """Mean generalisation index per relation of source to target (other seed, task, pretraining), with its CI.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.masking.generalization` (``summary_generalization_index`` with ``_ci_low``/``_ci_high``
        over ``relation``; the per-pair ``generalization_index`` and ``pair_relation`` are drawn as dots).
    include_same_model : bool
        Also show the diagonal, which is 1 by definition.

    Returns
    -------
    matplotlib.figure.Figure

    Examples
    --------
    >>> import tempfile, torch
    >>> from lrp_faces import cube, masking, vgg16
    >>> from lrp_faces.faces import synthetic_faces
    >>> from lrp_faces.zoo import ModelSpec
    >>> _ = torch.manual_seed(0)
    >>> faces = synthetic_faces(2, 3, size=32)
    >>> zoo = {ModelSpec("faces", task, 0): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
    ...        for task in ("gender", "identity")}  # untrained stand-ins
    >>> maps = cube.compute(zoo, faces, tempfile.mkdtemp(), progress=False)
    >>> result = masking.generalization(maps, zoo, faces, fractions=(0.0, 0.5), n_bootstrap=10, n_permutations=10,
    ...                                 progress=False)
    >>> figure = generalization_by_relation(result)
    >>> len(figure.axes)
    1
    """
    names = ["summary_generalization_index", "summary_generalization_index_ci_low",
             "summary_generalization_index_ci_high"]
    require_dataset(result, "result", names, ("relation",), "lrp_faces.masking.generalization")
    relations = [str(value) for value in result["relation"].values
                 if include_same_model or str(value) != "same_model"]
    summary = result.sel(relation=relations)
    mean, low, high = (np.asarray(summary[name].values, dtype=np.float64) for name in names)
    pair_values: dict[str, np.ndarray] = {}
    if "pair_relation" in result and "generalization_index" in result:
        flat_relations = _pair_matrix_strings(result["pair_relation"]).reshape(-1)
        flat_values = pair_matrix(result, "generalization_index").reshape(-1)
        pair_values = {relation: flat_values[flat_relations == relation] for relation in relations}
    pairs = ({relation: int(count) for relation, count in zip(relations, summary["summary_pairs"].values)}
             if "summary_pairs" in summary else {relation: len(pair_values.get(relation, []))
                                                 for relation in relations})
    with style():
        figure = new_figure(1.7 * len(relations) + 1.8, 4.2)
        ax = figure.add_subplot()
        ax.axhline(1.0, color="black", linewidth=1, linestyle="--")
        ax.axhline(0.0, color="0.4", linewidth=1, linestyle=":")
        ax.text(1.0, 1.0, " own map", transform=ax.get_yaxis_transform(), va="center", fontsize="small")
        ax.text(1.0, 0.0, " random", transform=ax.get_yaxis_transform(), va="center", fontsize="small", color="0.3")
        relation_points(ax, relations, mean, low, high, pair_values, pairs)
        ax.set_ylabel("generalisation index G")
        ax.set_title(f"Generalisation by relation of source to target ({confidence_of(result):.0%} CI; dots: pairs)")
    return figure


def _pair_matrix_strings(variable: xr.DataArray) -> np.ndarray:
    values = strings(variable.transpose(*SOURCE_DIMS, *TARGET_DIMS).values)
    count = int(np.sqrt(values.size))
    return values.reshape(count, count)

