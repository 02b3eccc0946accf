"""Short text summaries of a study's results: the generalisation index by relation, the self-masking (LeRF) curves,
the best method and the RDMs closest to the human ones."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis import METHOD_DIM
from ..masking import MODEL_DIMS
from ..formatting import RELATION_LABELS, fraction_label
from ..result_layout import masking_mode
from .study import read_result
from .results import ResultFileError

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
        label = RELATION_LABELS.get(str(relation), str(relation))
        count = f"  ({pairs} pairs)" if pairs is not None else ""
        interval = f"[{_number(low)}, {_number(high)}]" if pairs else "(no such pairs)"
        lines.append(f"  {label:<28} {_number(value):>5}  {interval}{count if pairs else ''}")
    return lines


def self_masking_lines(result: xr.Dataset) -> list[str]:
    """One line on the models masked by their own maps (``masking_lerf.nc``: least relevant first): their mean
    accuracy at each fraction of pixels (or patches) hidden, or kept in ``keep`` mode, and the mean AOPC of the
    output."""
    if "correct" not in result or not all(dim in result.dims for dim in MODEL_DIMS + ("fraction", "image")):
        return []
    order = str(result.attrs.get("order", "lerf"))
    mode = masking_mode(result)
    which = {"lerf": f"least relevant {'kept' if mode == 'keep' else 'first'} (LeRF)",
             "morf": f"most relevant {'kept' if mode == 'keep' else 'first'} (MoRF)"}.get(order, order)
    units = "patches" if int(result.attrs.get("patch", 1)) > 1 else "pixels"
    per_model = result["correct"].mean("image").stack(model=MODEL_DIMS).transpose("fraction", "model")
    values = np.asarray(per_model.values, dtype=np.float64)
    if not np.isfinite(values).any():
        return []
    steps = ", ".join(f"{_number(np.nanmean(row))} at {float(fraction):.0%}"
                      for fraction, row in zip(result["fraction"].values, values))
    line = (f"Models masked by their own maps, {which}, mean over {values.shape[1]} models: accuracy {steps} "
            f"({fraction_label(mode, units)})")
    if "mean_aopc_output" in result:
        line += f"; mean AOPC of the output {_number(float(result['mean_aopc_output'].mean()))}"
    return [line]


def best_method_lines(result: xr.Dataset) -> list[str]:
    """The best method by ground-truth accuracy (else by AOPC), with its CI, and the runner-up."""
    if "mean" not in result or METHOD_DIM not in result.dims:
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
        methods = [str(value) for value in result[METHOD_DIM].values]

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
    """The model and RDM kind closest to the human (or stand-in) dissimilarities.

    With several raters by the mean correlation with each rater's RDM, which the noise ceiling bounds (and whether
    it reaches the ceiling's lower bound); otherwise by the correlation with the human RDM.
    """
    if "correlation" not in result:
        return []
    per_rater = "rater_correlation" in result and bool(np.isfinite(result["rater_correlation"].values).any())
    name, low, high = ("rater_correlation", "rater_ci_low", "rater_ci_high") if per_rater else \
        ("correlation", "ci_low", "ci_high")
    values = result[name]
    if not np.isfinite(values.values).any():
        return []
    best = values.where(np.isfinite(values)).argmax(...)
    where = {dim: int(index) for dim, index in best.items()}
    cell = values.isel(where)
    names = "/".join(str(cell[dim].item()) for dim in ("pretraining", "task", "seed") if dim in cell.coords)
    kind = f" ({cell['kind'].item()})" if "kind" in cell.coords else ""
    source = result.attrs.get("human_source", "human dissimilarities")
    bounds = [result[bound].isel(where).item() if bound in result else math.nan for bound in (low, high)]
    line = (f"RSA with {source}: best {names}{kind} {'mean r with each rater' if per_rater else 'r'} = "
            f"{_number(cell.item())} [{_number(bounds[0])}, {_number(bounds[1])}]")
    ceiling = [float(result.attrs.get(f"noise_ceiling_{side}", math.nan)) for side in ("lower", "upper")]
    if per_rater and all(math.isfinite(value) for value in ceiling):
        reached = "reaches" if cell.item() >= ceiling[0] else "is below"
        line += f"; it {reached} the noise ceiling's lower bound (ceiling {_number(ceiling[0])}-{_number(ceiling[1])})"
    return [line]


def summary_lines(results_dir: str | Path) -> list[str]:
    """The short summary ``lrp-faces demo`` and ``run`` print, from the result files present."""
    results_dir = Path(results_dir)
    lines: list[str] = []
    for name, describe in (("masking.nc", generalization_lines), ("masking_lerf.nc", self_masking_lines),
                           ("methods.nc", best_method_lines), ("rsa.nc", rsa_lines)):
        path = results_dir / name
        if path.is_file():
            try:
                result = read_result(path)
            except ResultFileError as error:  # one damaged file does not hide the others' summaries
                lines.append(f"Not summarised: {error}")
                continue
            lines += describe(result)
    return lines


def study_images(results_dir: str | Path):
    """The synthetic faces a results directory was computed on, rebuilt from its ``study.json`` (else None)."""
    path = Path(results_dir) / "study.json"
    try:
        settings = json.loads(path.read_text(encoding="utf-8"))["settings"]
        dataset, zoo = settings["dataset"], settings["zoo"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    from ..faces import split_by_image, synthetic_faces
    from ..zoo import DemoSettings, demo_study_data
    from .runner import evenly_spaced
    try:
        if dataset.get("kind") == "demo":
            faces = demo_study_data(DemoSettings(**zoo["demo_settings"]))[1]
        elif dataset.get("kind") == "synthetic":
            faces = synthetic_faces(dataset["identities"], dataset["images_per_identity"],
                                    size=settings["image_size"], seed=dataset["seed"], nuisance=dataset["nuisance"])
            split = dataset.get("split")
            if isinstance(split, dict):  # the study explained the test part of a held-out split
                faces = split_by_image(faces, split["test_fraction"], split["seed"])[1]
        else:
            return None
    except (KeyError, TypeError, ValueError):
        return None
    return faces.subset(evenly_spaced(len(faces), dataset.get("max_images")))
