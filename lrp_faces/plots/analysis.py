"""Figures of the analyses: map similarity by relation, region relevance, the method comparison and RSA."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Sequence

import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from ..analysis import METHOD_DIM
from ..formatting import KIND_LABELS, METRIC_LABELS, SIMILARITY_LABELS, pretty
from ..result_layout import (confidence_of, has_raters, is_stand_in, noise_ceiling, rsa_statistic, rsa_statistic_label,
                             seed_summary, strings)
from ..zoo import MODEL_DIMS
from ._common import PlotError, error_bars, new_figure, palette, relation_points, require_dataset, style

__all__ = ["similarity_by_relation", "region_relevance", "method_comparison", "rsa_bars"]


def similarity_by_relation(result: xr.Dataset, include_same_model: bool = False) -> Figure:
    """Mean similarity of two models' maps per relation (other seed, task, pretraining), with its CI.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.analysis.similarity`: ``relation_mean``, ``relation_ci_low``, ``relation_ci_high`` and
        ``relation_pairs`` over ``relation``; the per-pair ``mean`` with ``pair_relation`` is drawn as dots.
    include_same_model : bool
        Also show each model with itself.

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
    >>> from lrp_faces.analysis import similarity
    >>> figure = similarity_by_relation(similarity(maps, n_bootstrap=10))
    >>> len(figure.axes)
    1
    """
    names = ["relation_mean", "relation_ci_low", "relation_ci_high"]
    require_dataset(result, "result", names, ("relation",), "lrp_faces.analysis.similarity")
    relations = [str(value) for value in strings(result["relation"].values)
                 if include_same_model or str(value) != "same_model"]
    summary = result.sel(relation=relations)
    mean, low, high = (np.asarray(summary[name].values, dtype=np.float64) for name in names)
    pair_values: dict[str, np.ndarray] = {}
    if {"mean", "pair_relation"} <= set(result.variables) and {"model_a", "model_b"} <= set(result.dims):
        values = np.asarray(result["mean"].transpose("model_a", "model_b").values, dtype=np.float64)
        kinds = strings(result["pair_relation"].transpose("model_a", "model_b").values).reshape(values.shape)
        upper = np.triu(np.ones(values.shape, dtype=bool), k=1) if values.shape[0] == values.shape[1] \
            else np.ones(values.shape, dtype=bool)
        pair_values = {relation: values[upper & (kinds == relation)] for relation in relations}
    pairs = ({relation: int(count) for relation, count in zip(relations, summary["relation_pairs"].values)}
             if "relation_pairs" in summary else {key: len(value) for key, value in pair_values.items()})
    metric = str(result.attrs.get("metric", "similarity"))
    label = pretty(metric, SIMILARITY_LABELS) + (f" (k = {float(result.attrs['k']):g})"
                                                 if metric == "topk_iou" and "k" in result.attrs else "")
    with style():
        figure = new_figure(1.7 * len(relations) + 1.8, 4.2)
        ax = figure.add_subplot()
        ax.axhline(0.0, color="0.4", linewidth=1, linestyle=":")
        relation_points(ax, relations, mean, low, high, pair_values, pairs)
        ax.set_ylabel(f"map similarity: {label}")
        ax.set_title(f"Similarity of relevance maps by relation ({confidence_of(result):.0%} CI; dots: pairs)")
    return figure


def region_relevance(result: xr.Dataset, variable: str = "share",
                     task_regions: Mapping[str, Sequence[str]] | None = None) -> Figure:
    """Share of positive relevance (or relevance density) per face region, one panel per task, bars per pretraining.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.analysis.region_relevance`: ``variable`` over (pretraining, task, seed, region), with
        ``{variable}_ci_low``/``_ci_high`` where present.
    variable : {"share", "density"}
    task_regions : mapping task -> region names, optional
        Regions known to carry each task's signal (e.g. :data:`lrp_faces.faces.TASK_REGIONS` for the synthetic
        faces); their labels are starred.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per task. Bars are means over seeds with a t-interval over seeds (one seed: the model's own CI
        over images); dots are seeds.

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
    >>> from lrp_faces.analysis import region_relevance as relevance_per_region
    >>> from lrp_faces.faces import REGIONS, TASK_REGIONS
    >>> result = relevance_per_region(maps, faces.regions, REGIONS, n_bootstrap=10)
    >>> figure = region_relevance(result, task_regions=TASK_REGIONS)  # one panel per task
    >>> len(figure.axes)
    2
    """
    require_dataset(result, "result", [variable], MODEL_DIMS + ("region",), "lrp_faces.analysis.region_relevance")
    data = result[variable].transpose(*MODEL_DIMS, "region")
    bounds = [result[f"{variable}_ci_{side}"].transpose(*MODEL_DIMS, "region").values
              if f"{variable}_ci_{side}" in result else None for side in ("low", "high")]
    pretrainings = [str(value) for value in result["pretraining"].values]
    tasks = [str(value) for value in result["task"].values]
    regions = [str(value) for value in strings(result["region"].values)]
    if not regions:
        raise PlotError("result has no regions")
    values = np.asarray(data.values, dtype=np.float64)
    confidence = confidence_of(result)
    colours = palette(len(pretrainings))
    width = 0.8 / len(pretrainings)
    with style():
        panel_width = max(3.5, 0.42 * len(regions) * (1 + 0.35 * (len(pretrainings) - 1)))
        figure = new_figure(panel_width * len(tasks) + 0.8, 4.0)
        axes = figure.subplots(1, len(tasks), squeeze=False, sharey=True)[0]
        for ax, (task_index, task) in zip(axes, enumerate(tasks)):
            for position, pretraining in enumerate(pretrainings):
                offsets = np.arange(len(regions)) + (position - (len(pretrainings) - 1) / 2) * width
                summary = np.stack(seed_summary(values[position, task_index],
                                                *(bound[position, task_index] if bound is not None else None
                                                  for bound in bounds), confidence), axis=1)  # (region, 3)
                ax.bar(offsets, np.nan_to_num(summary[:, 0]), width * 0.92, color=colours[position],
                       label=pretraining, yerr=error_bars(*summary.T), capsize=2, error_kw={"linewidth": 1})
                seeds = values[position, task_index]
                if seeds.shape[0] > 1:
                    for seed_values in seeds:
                        ax.scatter(offsets, seed_values, s=7, color="black", alpha=0.5, zorder=3, linewidths=0)
            marked = set((task_regions or {}).get(task, ()))
            ax.set_xticks(range(len(regions)), [f"{pretty(region)}{' *' if region in marked else ''}"
                                                for region in regions], rotation=30, ha="right", fontsize="small")
            for label, region in zip(ax.get_xticklabels(), regions):
                if region in marked:
                    label.set_fontweight("bold")
            ax.set_title(f"task: {task}")
        axes[0].set_ylabel("share of positive relevance" if variable == "share" else "mean relevance per pixel")
        handles, labels = axes[0].get_legend_handles_labels()
        figure.legend(handles, labels, title="pretraining", loc="outside right upper", fontsize="small",
                      title_fontsize="small", frameon=False)
        note = "; * regions that carry the task's signal" if task_regions else ""
        figure.suptitle(f"Relevance per face region ({confidence:.0%} CI{note})", fontsize="medium")
    return figure


def method_comparison(result: xr.Dataset, metrics: Sequence[str] | None = None) -> Figure:
    """Every attribution method on every metric: means with CIs, one panel per metric, the best marked.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.analysis.method_comparison`: ``mean``, ``ci_low``, ``ci_high`` over
        (attribution_method, metric); higher is better on every metric.
    metrics : sequence of str, optional
        The metrics to show (default all).

    Returns
    -------
    matplotlib.figure.Figure
        One axes per metric.

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
    >>> from lrp_faces.analysis import method_comparison as compare_methods
    >>> result = compare_methods(zoo, faces, methods=("epsilon_gamma_box", "random"), fractions=(0.0, 0.5),
    ...                          n_bootstrap=10)
    >>> figure = method_comparison(result)  # one panel per metric
    >>> len(figure.axes)
    4
    """
    require_dataset(result, "result", ["mean", "ci_low", "ci_high"], (METHOD_DIM, "metric"),
                    "lrp_faces.analysis.method_comparison")
    available = [str(value) for value in strings(result["metric"].values)]
    metrics = available if metrics is None else [str(metric) for metric in metrics]
    unknown = [metric for metric in metrics if metric not in available]
    if unknown or not metrics:
        raise PlotError(f"metrics {unknown or metrics} are not in the result; it has {available}")
    methods = [str(value) for value in strings(result[METHOD_DIM].values)]
    colours = palette(len(methods))
    columns = min(len(metrics), 2) if len(metrics) == 4 else min(len(metrics), 3)
    rows = int(np.ceil(len(metrics) / columns))
    with style():
        figure = new_figure(4.2 * columns + 0.6, (0.32 * len(methods) + 1.2) * rows + 0.6)
        axes = figure.subplots(rows, columns, squeeze=False, sharey=True)
        for index, ax in enumerate(axes.flat):
            if index >= len(metrics):
                ax.set_visible(False)
                continue
            metric = metrics[index]
            selected = result.sel(metric=metric)
            mean, low, high = (np.asarray(selected[name].transpose(METHOD_DIM).values, dtype=np.float64)
                               for name in ("mean", "ci_low", "ci_high"))
            best = int(np.nanargmax(mean)) if np.isfinite(mean).any() else -1
            for position in range(len(methods)):
                if not np.isfinite(mean[position]):
                    ax.text(0.02, position, "n/a", va="center", transform=ax.get_yaxis_transform(), color="0.4",
                            fontsize="small")
                    continue
                ax.errorbar([mean[position]], [position], xerr=error_bars(mean[position:position + 1],
                                                                          low[position:position + 1],
                                                                          high[position:position + 1]),
                            fmt="*" if position == best else "o", markersize=12 if position == best else 7,
                            color=colours[position], markeredgecolor="black", capsize=4, elinewidth=2)
            ax.set_yticks(range(len(methods)), [pretty(method) for method in methods], fontsize="small")
            ax.set_ylim(len(methods) - 0.5, -0.5)
            ax.set_xlabel("higher is better →", fontsize="small")
            ax.set_title(pretty(metric, METRIC_LABELS))
        figure.suptitle(f"Attribution methods compared ({confidence_of(result):.0%} CI; ★ best)", fontsize="medium")
    return figure


def rsa_bars(result: xr.Dataset) -> Figure:
    """Correlation of each model's RDM with the human RDM, per model cell and kind, with CIs and the noise ceiling.

    With several raters the bars are ``rater_correlation``, the model's mean correlation with each rater's RDM,
    which is what the noise ceiling bounds (Nili et al. 2014), with its CI ``rater_ci_low``/``rater_ci_high``; the
    ceiling is the grey band. Without raters they are ``correlation`` with the human RDM, with ``ci_low``/``ci_high``.
    The y label says which.

    Parameters
    ----------
    result : xarray.Dataset
        From :func:`lrp_faces.analysis.compare_with_humans`: ``correlation``, ``ci_low``, ``ci_high`` (and
        ``rater_correlation``, ``rater_ci_low``, ``rater_ci_high``) over (pretraining, task, seed, kind);
        attributes ``noise_ceiling_lower``/``_upper`` (NaN without raters) and ``human_source``, which is shown
        prominently when it is a synthetic stand-in.

    Returns
    -------
    matplotlib.figure.Figure
        Bars are means over seeds with a t-interval over seeds (one seed: the model's bootstrap CI); dots are seeds.

    Examples
    --------
    >>> import numpy as np, xarray as xr
    >>> from lrp_faces.analysis import compare_with_humans, model_rdms, stand_in_human_rdm
    >>> from lrp_faces.faces import synthetic_faces
    >>> faces = synthetic_faces(3, 2, size=32)
    >>> maps = np.random.default_rng(0).normal(size=(1, 2, 1, 6, 32, 32))
    >>> cube = xr.Dataset({"relevance": (("pretraining", "task", "seed", "image", "y", "x"), maps)},
    ...                   coords={"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0],
    ...                           "image": faces.image_ids})
    >>> result = compare_with_humans(model_rdms(cube, kinds=("relevance",)), stand_in_human_rdm(faces),
    ...                              n_permutations=99, n_bootstrap=20)
    >>> figure = rsa_bars(result)
    >>> len(figure.axes)
    1
    """
    require_dataset(result, "result", ["correlation", "ci_low", "ci_high"], MODEL_DIMS + ("kind",),
                    "lrp_faces.analysis.compare_with_humans")
    statistic, low_name, high_name, per_rater = rsa_statistic(result)
    shape = tuple(result.sizes[dim] for dim in MODEL_DIMS + ("kind",))
    data = {key: np.asarray(result[name].transpose(*MODEL_DIMS, "kind").values, dtype=np.float64)
            if name is not None else np.full(shape, np.nan)
            for key, name in (("value", statistic), ("low", low_name), ("high", high_name))}
    pretrainings = [str(value) for value in result["pretraining"].values]
    tasks = [str(value) for value in result["task"].values]
    kinds = [str(value) for value in strings(result["kind"].values)]
    cells = [(p, t) for p in range(len(pretrainings)) for t in range(len(tasks))]
    confidence = confidence_of(result)
    colours = palette(len(kinds))
    width = 0.8 / len(kinds)
    method = str(result.attrs.get("method", "spearman"))
    with style():
        figure = new_figure(max(5.0, 1.1 * len(cells) * len(kinds) / 1.5 + 2.0), 4.4)
        ax = figure.add_subplot()
        lower, upper = noise_ceiling(result)
        if per_rater and np.isfinite(lower) and np.isfinite(upper):
            ax.axhspan(lower, upper, color="0.6", alpha=0.3, linewidth=0, label="noise ceiling", zorder=0)
        ax.axhline(0.0, color="black", linewidth=0.8)
        for kind_index, kind in enumerate(kinds):
            offsets = np.arange(len(cells)) + (kind_index - (len(kinds) - 1) / 2) * width
            summary = np.array([seed_summary(*(data[key][p, t, :, kind_index] for key in data), confidence)
                                for p, t in cells])
            ax.bar(offsets, np.nan_to_num(summary[:, 0]), width * 0.92, color=colours[kind_index],
                   label=pretty(kind, KIND_LABELS), yerr=error_bars(*summary.T), capsize=3, zorder=2)
            seeds = np.array([data["value"][p, t, :, kind_index] for p, t in cells])  # (cells, seeds)
            if seeds.shape[1] > 1:
                for seed_values in seeds.T:
                    ax.scatter(offsets, seed_values, s=9, color="black", alpha=0.6, zorder=3, linewidths=0)
        ax.set_xticks(range(len(cells)), [f"{pretrainings[p]}\n{tasks[t]}" for p, t in cells])
        ax.set_ylabel(f"{rsa_statistic_label(result)}\n({pretty(method, SIMILARITY_LABELS)})")
        if has_raters(result) and not per_rater:
            ax.text(0.01, 0.98, "noise ceiling not drawn: it bounds the mean correlation with each rater, which this "
                    "result lacks", transform=ax.transAxes, va="top", fontsize="x-small", color="0.35")
        figure.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=len(kinds) + 1,
                      fontsize="small", frameon=False)
        figure.suptitle(f"Representational similarity with the human RDM ({confidence:.0%} CI)",
                        fontsize="medium", fontweight="bold")
        if is_stand_in(result):
            ax.set_title("NOT HUMAN DATA: the “human” RDM is a synthetic stand-in", fontsize="small",
                         color="#8a3b00", bbox={"boxstyle": "round", "facecolor": "#fff1d6", "edgecolor": "#c77c00"})
    return figure
