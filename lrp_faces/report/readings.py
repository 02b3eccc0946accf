"""Two-sentence readings of each figure, computed from the numbers of the results.

Each function takes the result a figure draws and returns the report's caption for it, in plain words with the key
numbers; the :doc:`/gallery` shows them for the demo. For example, on a generalisation result of two untrained
stand-in models:

>>> import tempfile, torch
>>> from lrp_faces import cube, masking, vgg16
>>> from lrp_faces.faces import synthetic_faces
>>> from lrp_faces.report.readings import generalization_reading
>>> from lrp_faces.zoo import ModelSpec
>>> _ = torch.manual_seed(0)
>>> faces = synthetic_faces(2, 3, size=32)
>>> zoo = {ModelSpec("faces", task, 0): vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1)
...        for task in ("gender", "identity")}
>>> maps = cube.compute(zoo, faces, tempfile.mkdtemp(), progress=False)
>>> result = masking.generalization(maps, zoo, faces, fractions=(0.0, 0.5), n_bootstrap=10, n_permutations=10,
...                                 progress=False)
>>> print(generalization_reading(result))  # doctest: +ELLIPSIS
Relative to a model's own map, masking by a map of another task is ... as effective (generalisation index G, 95% CI)...
"""
from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis import METHOD_DIM
from ..formatting import (KIND_LABELS, MASKED_PIXELS, METRIC_LABELS, RELATION_LABELS, SIMILARITY_LABELS,
                          format_interval, format_number, pretty)
from ..result_layout import (aopc_definition, computed_models, confidence_of, has_raters, masking_mode, model_grid,
                             noise_ceiling, own_and_random, pair_matrix, rsa_statistic, seed_summary, strings)
from ..zoo import MODEL_DIMS

__all__ = ["grid_reading", "curves_reading", "generalization_reading", "relation_reading", "asymmetry_reading",
           "similarity_reading", "regions_reading", "methods_reading", "rsa_reading"]

ORDER_NAMES = {"morf": "MoRF", "lerf": "LeRF", "random": "random order"}
MAP_SAMPLE = 64  # images per model read from the cube for the relevance-map reading
RELATION_PHRASES = {"same_cell_different_seed": "another seed's map", "different_task": "a map of another task",
                    "different_pretraining": "a map of another pretraining",
                    "both_different": "a map of another task and pretraining"}
SIMILARITY_PHRASES = {"same_cell_different_seed": "another seed", "different_task": "another task",
                      "different_pretraining": "another pretraining", "both_different": "another task and pretraining"}


def _name(model: tuple) -> str:
    return "/".join(str(part) for part in model)


def _relation_summary(result: xr.Dataset, prefix: str, pairs_name: str) -> list[tuple[str, float, float, float]]:
    """(relation, mean, low, high) of every relation with pairs, other than same_model."""
    rows = []
    for index, relation in enumerate(strings(result["relation"].values)):
        pairs = int(result[pairs_name].values[index]) if pairs_name in result else 1
        values = [float(result[f"{prefix}{suffix}"].values[index]) for suffix in ("", "_ci_low", "_ci_high")]
        if relation != "same_model" and pairs > 0 and np.isfinite(values[0]):
            rows.append((relation, *values))
    return rows


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def grid_reading(cube: xr.Dataset) -> str:
    """How concentrated and how negative the relevance maps of a cube are (the relevance-grid figure)."""
    relevance = cube["relevance"]
    models = computed_models(cube)
    concentration, negative = [], []
    for pretraining, task, seed in models:
        values = np.asarray(relevance.sel(pretraining=pretraining, task=task, seed=seed)
                            .isel(image=slice(0, MAP_SAMPLE)).values, dtype=np.float64)
        flat = values.reshape(values.shape[0], -1)
        positive = np.clip(flat, 0.0, None)
        top = -np.sort(-positive, axis=1)[:, :max(1, int(np.ceil(0.1 * flat.shape[1])))].sum(1)
        total, absolute = positive.sum(1), np.abs(flat).sum(1)
        concentration.extend(top[total > 0] / total[total > 0])
        negative.extend(np.clip(-flat, 0.0, None).sum(1)[absolute > 0] / absolute[absolute > 0])
    if not concentration:
        return "The maps hold no positive relevance. Nothing can be said about where they put it."
    total = relevance.sizes["image"]
    images = f"{total} images" if total <= MAP_SAMPLE else f"the first {MAP_SAMPLE} of the {total} images"
    return (f"Across {len(models)} models and {images}, the 10% most relevant pixels of a map hold "
            f"{np.mean(concentration):.0%} of its positive relevance on average (10% if it were spread evenly). "
            f"On average {np.mean(negative):.0%} of the absolute relevance is negative (blue), evidence against the "
            f"explained class.")


def curves_reading(result: xr.Dataset, lerf: xr.Dataset | None = None) -> str:
    """The masking curves at the first fraction >= 10 %: the result's order against random (and LeRF, from the
    models' self-masking curves ``lerf``, when given), then the AOPCs; in the words of the result's ``mode``, pixels
    hidden (``remove``) or kept (``keep``), and with its AOPC as the result defines it."""
    order, mode = str(result.attrs.get("order", "morf")), masking_mode(result)
    fractions = np.asarray(result["fraction"].values, dtype=np.float64)
    positive = np.flatnonzero(fractions >= 0.1 - 1e-9)
    step = int(positive[0]) if positive.size else len(fractions) - 1
    share = f"{fractions[step]:.0%}"
    own, random = own_and_random(result, "correct")
    unmasked = float(np.mean(result["unmasked_accuracy"].values)) if "unmasked_accuracy" in result else np.nan
    versus = f"{np.nanmean(random[:, step]):.0%} for a random {share}"
    if lerf is not None and "correct" in lerf:
        at = np.flatnonzero(np.isclose(np.asarray(lerf["fraction"].values, dtype=np.float64), fractions[step]))
        if at.size:
            least = float(np.nanmean(lerf["correct"].isel(fraction=int(at[0])).values))
            versus = (f"{least:.0%} when the {share} least relevant are {MASKED_PIXELS.get(mode, 'masked')} (LeRF) "
                      f"and {versus}")
    chosen = f"the {share} {'most' if order == 'morf' else 'least'} relevant pixels ({ORDER_NAMES.get(order, order)})"
    models = f"on average over the {own.shape[0]} models"
    if mode == "keep":
        first = (f"Keeping only {chosen} and filling the rest gives an accuracy of {np.nanmean(own[:, step]):.0%} "
                 f"{models} ({unmasked:.0%} unmasked), against {versus}.")
    else:
        verb = "Hiding" if mode == "remove" else f"Masking (mode {mode!r})"
        first = (f"{verb} {chosen} changes accuracy from {unmasked:.0%} to {np.nanmean(own[:, step]):.0%} {models}, "
                 f"against {versus}.")
    if "aopc" not in result or "random_aopc" not in result:
        return first
    return f"{first} {_aopc_sentence(result, mode)}"


def _aopc_sentence(result: xr.Dataset, mode: str) -> str:
    """The AOPC with the models' own maps and with a random order, as the result defines it."""
    own = format_number(np.nanmean(np.diag(pair_matrix(result, "aopc"))))
    random = format_number(np.nanmean(result["random_aopc"].values))
    definition = aopc_definition(result)
    if mode == "keep":
        stated = f"defined as {definition}" if definition else "the result does not state how it is defined"
        return f"The AOPC of the keep curves ({stated}) is {own} with the models' own maps and {random} with a " \
               f"random order."
    score = "the explained output" if result.attrs.get("score", "output") == "output" else \
        "the probability of the true class"
    return (f"Averaged over all fractions, {score} drops by {own} with the models' own maps and by {random} with a "
            f"random order (AOPC{f': {definition}' if definition else ''}).")


def generalization_reading(result: xr.Dataset) -> str:
    """The generalisation index G by relation of source and target model, with its intervals (the heatmap)."""
    rows = _relation_summary(result, "summary_generalization_index", "summary_pairs")
    if not rows:
        return "There is only one model, so no map is used on another model. The generalisation index is 1 by " \
               "definition."
    parts = [f"by {RELATION_PHRASES.get(relation, pretty(relation))}{' is' if index == 0 else ''} "
             f"{format_interval(mean, low, high)}{' as effective' if index == 0 else ''}"
             for index, (relation, mean, low, high) in enumerate(rows)]
    first = (f"Relative to a model's own map, masking {_join(parts)} (generalisation index G, "
             f"{_confidence(result)} CI).")
    values = pair_matrix(result, "generalization_index")
    off = values[~np.eye(len(values), dtype=bool)]
    off = off[np.isfinite(off)]
    return (f"{first} G exceeds 1 (another map masks better than the target's own) for {int((off > 1).sum())} and "
            f"falls below 0 (worse than a random order) for {int((off < 0).sum())} of {off.size} ordered pairs.")


def _confidence(result: xr.Dataset) -> str:
    return f"{confidence_of(result):.0%}"


def relation_reading(result: xr.Dataset) -> str:
    """G by relation, and which relation generalises least (the by-relation figure)."""
    rows = _relation_summary(result, "summary_generalization_index", "summary_pairs")
    if not rows:
        return "No pairs of different models. Nothing to compare."
    best, worst = max(rows, key=lambda row: row[1]), min(rows, key=lambda row: row[1])
    first = (f"Of the relations of source to target, G is highest for {pretty(best[0], RELATION_LABELS)}, "
             f"{format_interval(*best[1:])}, and lowest for {pretty(worst[0], RELATION_LABELS)}, "
             f"{format_interval(*worst[1:])}.")
    values = pair_matrix(result, "generalization_index")
    models = model_grid(result, "source_")
    off = ~np.eye(len(values), dtype=bool) & np.isfinite(values)
    if not off.any():
        return first
    low, high = np.unravel_index(np.where(off, values, np.inf).argmin(), values.shape), \
        np.unravel_index(np.where(off, values, -np.inf).argmax(), values.shape)
    return (f"{first} Single pairs range from G = {values[low]:.2f} ({_name(models[low[0]])} → "
            f"{_name(models[low[1]])}) to {values[high]:.2f} ({_name(models[high[0]])} → {_name(models[high[1]])}).")


def asymmetry_reading(result: xr.Dataset) -> str:
    """The largest asymmetries G(s -> t) - G(t -> s) and how many pairs differ significantly."""
    values, p_values = pair_matrix(result, "asymmetry"), pair_matrix(result, "asymmetry_p_value")
    models = model_grid(result, "source_")
    upper = np.triu(np.ones(values.shape, dtype=bool), k=1) & np.isfinite(values)
    if not upper.any():
        return "There is only one model, so no asymmetry. Nothing to test."
    row, column = np.unravel_index(np.where(upper, np.abs(values), -1).argmax(), values.shape)
    p_text = f" (p = {p_values[row, column]:.3g})" if np.isfinite(p_values[row, column]) else ""
    source, target = _name(models[row]), _name(models[column])
    first = (f"The largest asymmetry is between {source} and {target}: G({source} → {target}) − G({target} → "
             f"{source}) = {values[row, column]:+.2f}{p_text}.")
    tested = upper & np.isfinite(p_values)
    if not tested.any():
        return f"{first} No permutation test was run (too few images); the mean |asymmetry| is " \
               f"{np.abs(values[upper]).mean():.2f}."
    significant = int((p_values[tested] < 0.05).sum())
    return (f"{first} {significant} of {int(tested.sum())} pairs of models differ at p < 0.05 (uncorrected; about "
            f"{0.05 * tested.sum():.1f} expected by chance), and the mean |asymmetry| is "
            f"{np.abs(values[upper]).mean():.2f}.")


def similarity_reading(result: xr.Dataset) -> str:
    """How alike the maps of two models are, by relation (the map-similarity figure)."""
    rows = _relation_rows(result)
    metric = pretty(str(result.attrs.get("metric", "similarity")), SIMILARITY_LABELS)
    if not rows:
        return f"There is only one model, so no pair of maps to compare ({metric})."
    parts = [f"of {SIMILARITY_PHRASES.get(relation, pretty(relation))} at {format_interval(mean, low, high)}"
             for relation, mean, low, high in rows]
    first = f"By {metric}, a model's maps agree with those {_join(parts)} ({_confidence(result)} CI)."
    if "mean" not in result or "model_a" not in result.dims:
        return first
    values = np.asarray(result["mean"].transpose("model_a", "model_b").values, dtype=np.float64)
    names_a, names_b = strings(result["model_a"].values), strings(result["model_b"].values)
    off = np.array([[a != b for b in names_b] for a in names_a]) & np.isfinite(values)
    if not off.any():
        return first
    low = np.unravel_index(np.where(off, values, np.inf).argmin(), values.shape)
    high = np.unravel_index(np.where(off, values, -np.inf).argmax(), values.shape)
    return (f"{first} The least similar pair is {names_a[low[0]]} and {names_b[low[1]]} ({values[low]:.2f}), the "
            f"most similar {names_a[high[0]]} and {names_b[high[1]]} ({values[high]:.2f}).")


def _relation_rows(result: xr.Dataset) -> list[tuple[str, float, float, float]]:
    rows = []
    for index, relation in enumerate(strings(result["relation"].values)):
        pairs = int(result["relation_pairs"].values[index]) if "relation_pairs" in result else 1
        mean, low, high = (float(result[name].values[index]) for name in
                           ("relation_mean", "relation_ci_low", "relation_ci_high"))
        if relation != "same_model" and pairs > 0 and np.isfinite(mean):
            rows.append((relation, mean, low, high))
    return rows


def regions_reading(result: xr.Dataset) -> str:
    """Which face regions get the largest share of positive relevance, per task."""
    share = result["share"].transpose(*MODEL_DIMS, "region")
    values = np.asarray(share.values, dtype=np.float64)
    regions, tasks = strings(result["region"].values), strings(result["task"].values)
    pretrainings = strings(result["pretraining"].values)
    parts = []
    with np.errstate(invalid="ignore"):
        for task_index, task in enumerate(tasks):
            per_region = np.nanmean(values[:, task_index].reshape(-1, len(regions)), axis=0)
            if np.isfinite(per_region).any():
                top = int(np.nanargmax(per_region))
                parts.append(f"for {task} it is the {pretty(regions[top])} ({per_region[top]:.0%})")
    if not parts:
        return "No region holds positive relevance. Nothing to compare."
    first = f"The region with the largest share of positive relevance, on average over models: {_join(parts)}."
    if len(pretrainings) < 2:
        return first
    by_pretraining = np.nanmean(values, axis=2)  # (pretraining, task, region), over seeds
    spread = np.nanmax(by_pretraining, axis=0) - np.nanmin(by_pretraining, axis=0)
    if not np.isfinite(spread).any():
        return first
    task_index, region = np.unravel_index(np.nanargmax(spread), spread.shape)
    column = by_pretraining[:, task_index, region]
    high, low = int(np.nanargmax(column)), int(np.nanargmin(column))
    return (f"{first} Pretraining matters most for the {pretty(regions[region])} in {tasks[task_index]} models: "
            f"{column[high]:.0%} after {pretrainings[high]} pretraining against {column[low]:.0%} after "
            f"{pretrainings[low]}.")


def methods_reading(result: xr.Dataset) -> str:
    """Which attribution method scores best on each metric of a method comparison."""
    methods, metrics = strings(result[METHOD_DIM].values), strings(result["metric"].values)
    mean = np.asarray(result["mean"].transpose(METHOD_DIM, "metric").values, dtype=np.float64)
    low = np.asarray(result["ci_low"].transpose(METHOD_DIM, "metric").values, dtype=np.float64)
    high = np.asarray(result["ci_high"].transpose(METHOD_DIM, "metric").values, dtype=np.float64)
    parts, winners = [], []
    for column, metric in enumerate(metrics):
        if not np.isfinite(mean[:, column]).any():
            continue
        best = int(np.nanargmax(mean[:, column]))
        winners.append(best)
        if len(parts) < 2:
            parts.append((pretty(metric, METRIC_LABELS), pretty(methods[best]),
                          format_interval(mean[best, column], low[best, column], high[best, column])))
    if not parts:
        return "No method has a value on any metric. Nothing to compare."
    first = f"By {parts[0][0]} the best method is {parts[0][1]}, {parts[0][2]}" + (
        f"; by {parts[1][0]}, {parts[1][1]}, {parts[1][2]}." if len(parts) > 1 else ".")
    ranks = np.argsort(np.argsort(-np.nan_to_num(mean, nan=-np.inf), axis=0), axis=0) + 1
    counts = np.bincount(winners, minlength=len(methods))
    leader = int(counts.argmax())
    return (f"{first} {pretty(methods[leader]).capitalize()} ranks first on {counts[leader]} of {len(winners)} "
            f"metrics; averaged over the metrics, {pretty(methods[int(ranks.mean(1).argmin())])} ranks best and "
            f"{pretty(methods[int(ranks.mean(1).argmax())])} worst.")


def rsa_cells(result: xr.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The statistic :func:`lrp_faces.plots.rsa_bars` draws, over seeds: (values (P, T, S, K), mean, lower, upper
    (P, T, K)), with a t-interval over seeds at the result's confidence, or with one seed that model's bootstrap CI
    (NaN without one), as :func:`lrp_faces.result_layout.seed_summary`."""
    statistic, low_name, high_name, _ = rsa_statistic(result)
    shape = tuple(result.sizes[dim] for dim in MODEL_DIMS + ("kind",))
    values, low, high = (np.asarray(result[name].transpose(*MODEL_DIMS, "kind").values, dtype=np.float64)
                         if name is not None else np.full(shape, np.nan)
                         for name in (statistic, low_name, high_name))
    mean, lower, upper = seed_summary(values, low, high, confidence_of(result), axis=2)  # (pretraining, task, kind)
    return values, mean, lower, upper


def rsa_reading(result: xr.Dataset) -> str:
    """Which model representation correlates best with the human dissimilarities, and how it compares with the
    noise ceiling where there are several raters."""
    values, mean, lower, upper = rsa_cells(result)
    per_rater = rsa_statistic(result)[3]
    pretrainings, tasks, kinds = (strings(result[dim].values) for dim in ("pretraining", "task", "kind"))
    if not np.isfinite(mean).any():
        return "No model RDM has a correlation with the human RDM. Nothing to compare."
    best = np.unravel_index(np.nanargmax(mean), mean.shape)
    worst = np.unravel_index(np.nanargmin(mean), mean.shape)
    symbol = "ρ" if str(result.attrs.get("method", "spearman")) == "spearman" else "r"

    def describe(index):
        p, t, k = index
        return (f"the {pretty(kinds[k], KIND_LABELS)} of {pretrainings[p]}/{tasks[t]} models, "
                f"{symbol} = {format_interval(mean[index], lower[index], upper[index])}")

    over = "means over seeds" if values.shape[2] > 1 else "one seed"
    ceiling = noise_ceiling(result)
    with_ceiling = per_rater and all(np.isfinite(ceiling))
    human = "raters' mean RDM" if has_raters(result) else "human RDM"
    significant = ""
    if "p_value" in result:
        p_values = np.asarray(result["p_value"].values, dtype=np.float64)
        tested = np.isfinite(p_values)
        if tested.any():
            significant = (f"{int((p_values[tested] < 0.05).sum())} of {int(tested.sum())} model RDMs correlate "
                           f"significantly with the {human} (p < 0.05, permutation test)")
    if with_ceiling:
        reached = mean[np.isfinite(mean)] >= ceiling[0]
        where = "reaches" if mean[best] >= ceiling[0] else "stays below"
        first = (f"By the mean correlation with each rater's RDM ({over}), closest to the human RDM are "
                 f"{describe(best)}, which {where} the lower bound of the noise ceiling ({ceiling[0]:.2f}); "
                 f"farthest are {describe(worst)}.")
        share = f", {mean[best] / ceiling[0]:.0%} of the lower bound at best" \
            if not reached.any() and ceiling[0] > 0 else ""
        second = (f"{int(reached.sum())} of {reached.size} model RDMs (pretraining × task × kind) reach the lower "
                  f"bound of the noise ceiling, {ceiling[0]:.2f}–{ceiling[1]:.2f}{share}")
        return f"{first} {second}" + (f"; {significant}." if significant else ".")
    statistic = "correlation with the raters' mean RDM" if has_raters(result) else "correlation with the human RDM"
    first = f"By the {statistic}, closest are {describe(best)}; farthest are {describe(worst)} ({over})."
    if has_raters(result):
        tail = "the noise ceiling is not compared: the result lacks the mean correlation with each rater it bounds"
    else:
        tail = "there is no noise ceiling: the human RDM has no individual raters"
    return f"{first} " + (f"{significant}; {tail}." if significant else f"{tail[0].upper()}{tail[1:]}.")
