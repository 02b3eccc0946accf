"""Short text summaries of a study's results: the generalisation index by relation and the best method."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from .study import read_result

RELATION_NAMES = {"same_model": "same model", "same_cell_different_seed": "same cell, other seed",
                  "different_task": "other task", "different_pretraining": "other pretraining",
                  "both_different": "other task and pretraining"}
GROUND_TRUTH_METRICS = ("relevance_mass_accuracy", "relevance_rank_accuracy")


def _number(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(float(value)) else f"{float(value):.2f}"


def generalization_lines(result: xr.Dataset) -> list[str]:
    """The generalisation index by relation with its CI, one line per relation."""
    if "summary_generalization_index" not in result:
        return []
    confidence = float(result.attrs.get("confidence", 0.95))
    lines = [f"Generalisation index by relation (mean over model pairs, {confidence:.0%} CI over images; "
             f"1 = as good as the target's own maps, 0 = no better than random):"]
    for relation in result["relation"].values:
        where = {"relation": relation}
        value = result["summary_generalization_index"].sel(where).item()
        low = result["summary_generalization_index_ci_low"].sel(where).item() \
            if "summary_generalization_index_ci_low" in result else math.nan
        high = result["summary_generalization_index_ci_high"].sel(where).item() \
            if "summary_generalization_index_ci_high" in result else math.nan
        pairs = int(result["summary_pairs"].sel(where).item()) if "summary_pairs" in result else None
        label = RELATION_NAMES.get(str(relation), str(relation))
        count = f"  ({pairs} pairs)" if pairs is not None else ""
        interval = f"[{_number(low)}, {_number(high)}]" if pairs else "(no such pairs)"
        lines.append(f"  {label:<28} {_number(value):>5}  {interval}{count if pairs else ''}")
    return lines


def best_method_lines(result: xr.Dataset) -> list[str]:
    """The best method by ground-truth accuracy (else by AOPC), with its CI, and the runner-up."""
    if "mean" not in result or "method" not in result.dims:
        return []
    metrics = [str(value) for value in result["metric"].values]
    for metric in GROUND_TRUTH_METRICS + ("aopc_output",):
        if metric not in metrics:
            continue
        means = result["mean"].sel(metric=metric)
        values = np.asarray(means.values, dtype=np.float64)
        if not np.isfinite(values).any():
            continue
        order = np.argsort(np.where(np.isfinite(values), -values, np.inf), kind="stable")
        methods = [str(value) for value in result["method"].values]

        def described(index: int) -> str:
            low = result["ci_low"].sel(metric=metric).values[index]
            high = result["ci_high"].sel(metric=metric).values[index]
            return f"{methods[index]} {_number(values[index])} [{_number(low)}, {_number(high)}]"
        what = metric.replace("_", " ")
        if metric not in GROUND_TRUTH_METRICS:
            what += " (no ground truth for these images)"
        line = f"Best method by {what}: {described(order[0])}"
        if len(order) > 1 and np.isfinite(values[order[1]]):
            line += f"; next {described(order[1])}"
        return [line]
    return []


def rsa_lines(result: xr.Dataset) -> list[str]:
    """The model and RDM kind closest to the human (or stand-in) dissimilarities."""
    if "correlation" not in result:
        return []
    values = result["correlation"]
    if not np.isfinite(values.values).any():
        return []
    best = values.where(np.isfinite(values)).argmax(...)
    where = {dim: int(index) for dim, index in best.items()}
    cell = values.isel(where)
    names = "/".join(str(cell[dim].item()) for dim in ("pretraining", "task", "seed") if dim in cell.coords)
    kind = f" ({cell['kind'].item()})" if "kind" in cell.coords else ""
    source = result.attrs.get("human_source", "human dissimilarities")
    return [f"RSA with {source}: best {names}{kind} r = {_number(cell.item())} "
            f"[{_number(result['ci_low'].isel(where).item())}, {_number(result['ci_high'].isel(where).item())}]"]


def summary_lines(results_dir: str | Path) -> list[str]:
    """The short summary ``lrp-faces demo`` and ``run`` print, from the result files present."""
    results_dir = Path(results_dir)
    lines: list[str] = []
    for name, describe in (("masking.nc", generalization_lines), ("methods.nc", best_method_lines),
                           ("rsa.nc", rsa_lines)):
        path = results_dir / name
        if path.is_file():
            lines += describe(read_result(path))
    return lines


def study_images(results_dir: str | Path):
    """The synthetic faces a results directory was computed on, rebuilt from its ``study.json`` (else None)."""
    path = Path(results_dir) / "study.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        dataset, zoo = settings["dataset"], settings["zoo"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from ..faces import synthetic_faces
    from ..zoo import DemoSettings, demo_study_data
    from .runner import evenly_spaced
    try:
        if dataset.get("kind") == "demo":
            faces = demo_study_data(DemoSettings(**zoo["demo_settings"]))[1]
        elif dataset.get("kind") == "synthetic":
            faces = synthetic_faces(dataset["identities"], dataset["images_per_identity"],
                                    size=settings["image_size"], seed=dataset["seed"], nuisance=dataset["nuisance"])
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return faces.subset(evenly_spaced(len(faces), dataset.get("max_images")))
