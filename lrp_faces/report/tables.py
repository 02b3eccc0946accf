"""HTML tables of the report: study settings, the zoo, and the key numbers of each result (all text escaped).

>>> print(table(["model", "accuracy"], [["faces/gender/0", "0.97"], ["<b>", "n/a"]], numeric_from=1))  # doctest: +ELLIPSIS
<div class="scroll"><table><thead><tr><th>model</th><th class="num">accuracy</th></tr></thead><tbody>...&lt;b&gt;...
"""
from __future__ import annotations

import html
from typing import Any, Sequence

import numpy as np
import xarray as xr

from ..analysis import METHOD_DIM
from ..faces import DATASET_SETTINGS
from ..formatting import (KIND_LABELS, METRIC_LABELS, RELATION_LABELS, SIMILARITY_LABELS, format_interval,
                          format_number, format_setting, pretty)
from ..result_layout import (computed_models, confidence_of, noise_ceiling, rsa_statistic, rsa_statistic_label,
                             seed_summary, strings)
from ..zoo import MODEL_DIMS, ModelSpec, ZooError

__all__ = ["table", "settings_html", "dataset_settings", "study_tables", "model_accuracy", "relation_table",
           "similarity_table", "ground_truth_table", "methods_table", "rsa_table"]

MAX_VALUE_CHARS = 300
COLLAPSE_OVER = 16  # flat settings tables with more values than this are collapsed


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], numeric_from: int | None = None,
          raw_columns: Sequence[int] = ()) -> str:
    """An HTML table; every cell is escaped except those in ``raw_columns`` (already HTML); columns from
    ``numeric_from`` on are right-aligned."""
    def cell(tag: str, index: int, value: Any) -> str:
        css = ' class="num"' if numeric_from is not None and index >= numeric_from else ""
        text = str(value) if index in raw_columns and tag == "td" else html.escape(str(value))
        return f"<{tag}{css}>{text}</{tag}>"

    head = "".join(cell("th", index, value) for index, value in enumerate(headers))
    body = "".join("<tr>" + "".join(cell("td", index, value) for index, value in enumerate(row)) + "</tr>"
                   for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict) and value:
        rows = []
        for key, item in value.items():
            rows.extend(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return rows
    text = format_setting(value)
    return [(prefix, text if len(text) <= MAX_VALUE_CHARS else text[:MAX_VALUE_CHARS] + " …")]


def _model_id(entry: dict) -> str | None:
    spec = entry.get("spec", entry)
    if isinstance(spec, dict) and all(key in spec for key in MODEL_DIMS):
        try:
            return ModelSpec(spec["pretraining"], spec["task"], spec["seed"]).id
        except ZooError:
            return "/".join(str(spec[key]) for key in MODEL_DIMS)
    if isinstance(spec, str):
        return spec
    return None


def _format(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.1%}" if 0.0 <= value <= 1.0 else f"{value:.4g}"
    return format_setting(value)


def _split(value: Any, prefix: str, rows: list, blocks: list) -> None:
    """Flatten settings into ``rows``, sending flat tables of many values to collapsed ``blocks``; unset (None)
    values are left out."""
    if isinstance(value, dict) and value:
        flat = not any(isinstance(item, dict) and item for item in value.values())
        if flat and prefix and len(value) > COLLAPSE_OVER:
            blocks.append((prefix, _flatten(value)))
            return
        for key, item in value.items():
            _split(item, f"{prefix}.{key}" if prefix else str(key), rows, blocks)
    elif value is not None:
        rows.extend(_flatten(value, prefix))


def _values(count: int) -> str:
    return f"{count} value{'' if count == 1 else 's'}"


def _breakable(rows: list) -> list:
    """Rows with their keys escaped and breakable after dots and underscores (for narrow columns)."""
    return [(html.escape(key).replace(".", ".<wbr>").replace("_", "_<wbr>"), value) for key, value in rows]


def _card(name: str, rows: list, blocks: list) -> str:
    details = "".join(f"<details><summary>{html.escape(block)} ({_values(len(block_rows))})</summary>"
                      f"{table(['setting', 'value'], _breakable(block_rows), raw_columns=(0,))}</details>"
                      for block, block_rows in blocks)
    rows_html = table(["setting", "value"], _breakable(rows), raw_columns=(0,)) if rows else ""
    return f'<div class="card"><h4>{html.escape(name)}</h4>{rows_html}{details}</div>'


def dataset_settings(dataset: dict) -> dict:
    """The settings of a study's ``[dataset]`` that apply to its ``kind`` (:data:`lrp_faces.faces.DATASET_SETTINGS`,
    which the study file reads by too); all of them when the kind is not given or not known."""
    applies = DATASET_SETTINGS.get(dataset.get("kind"))
    if applies is None:
        return dataset
    return {key: value for key, value in dataset.items() if key in applies}


def settings_html(study: dict) -> str:
    """The study's settings as small key/value tables, one per group (study, zoo, dataset, ...), in a grid; long flat
    tables (e.g. the demo zoo's training settings) and the versions, timings and result records collapsed."""
    groups: dict[str, tuple[list, list]] = {"study": ([], [])}
    records: list[tuple[str, list]] = []
    for key, value in study.items():
        if key in ("zoo", "title"):
            continue
        if key == "settings" and isinstance(value, dict):
            for name, item in value.items():
                if name == "dataset" and isinstance(item, dict):
                    item = dataset_settings(item)
                if isinstance(item, dict) and item:
                    rows, blocks = groups.setdefault(str(name), ([], []))
                    _split(item, "", rows, blocks)
                else:
                    _split(item, str(name), *groups["study"])
        elif isinstance(value, dict):
            records.append((str(key), _flatten(value)))
        else:
            _split(value, str(key), *groups["study"])
    groups["study"] = (list(dict.fromkeys(groups["study"][0])), groups["study"][1])  # a name given twice
    cards = "".join(_card(name, rows, blocks) for name, (rows, blocks) in groups.items() if rows or blocks)
    details = "".join(f"<details><summary>{html.escape(name)} ({_values(len(rows))})</summary>"
                      f"{table(['key', 'value'], rows)}</details>" for name, rows in records)
    return f'<div class="grid">{cards}</div>{details}' if cards or details else ""


def study_tables(study: dict) -> tuple[str, list[list[str]], list[str]]:
    """The settings (HTML, see :func:`settings_html`), and the zoo as rows and headers (first column: the model
    id)."""
    zoo = study.get("zoo")
    entries = list(zoo.values()) if isinstance(zoo, dict) else zoo if isinstance(zoo, list) else []
    entries = [entry for entry in entries if isinstance(entry, dict)]
    if isinstance(zoo, dict):
        entries = [{"spec": key, **entry} for key, entry in zoo.items() if isinstance(entry, dict)]
    headers: list[str] = []
    for entry in entries:
        for key in entry:
            if key not in headers and key not in MODEL_DIMS + ("spec",):
                headers.append(key)
    rows = [[_model_id(entry) or "?"] + [_format(entry.get(key, "")) for key in headers] for entry in entries]
    return settings_html(study), rows, ["model"] + [pretty(header) for header in headers]


def model_accuracy(cube: xr.Dataset) -> dict[str, str]:
    """Accuracy of every computed model on the cube's images, ``{"faces/gender/0": "97.5%"}``."""
    if "correct" not in cube:
        return {}
    accuracy = {}
    for pretraining, task, seed in computed_models(cube):
        correct = np.asarray(cube["correct"].sel(pretraining=pretraining, task=task, seed=seed).values)
        accuracy[f"{pretraining}/{task}/{seed}"] = f"{correct.mean():.1%}" if correct.size else "n/a"
    return accuracy


def relation_table(result: xr.Dataset) -> str:
    """An HTML table of G, AOPC and asymmetry averaged over the pairs of each relation."""
    rows = []
    for index, relation in enumerate(strings(result["relation"].values)):
        def value(name: str) -> float:
            return float(result[name].values[index]) if name in result else np.nan
        rows.append([pretty(relation, RELATION_LABELS), int(value("summary_pairs")) if "summary_pairs" in result
                     else "", format_interval(value("summary_generalization_index"),
                                              value("summary_generalization_index_ci_low"),
                                              value("summary_generalization_index_ci_high")),
                     format_number(value("summary_aopc")), format_number(value("summary_abs_asymmetry"))])
    confidence = f"{confidence_of(result):.0%}"
    return table(["relation of source to target", "pairs", f"generalisation index G ({confidence} CI)",
                  f"mean AOPC ({result.attrs.get('score', 'output')})", "mean |asymmetry|"], rows, numeric_from=1)


def similarity_table(result: xr.Dataset) -> str:
    """An HTML table of the map similarity averaged over the pairs of each relation."""
    rows = []
    for index, relation in enumerate(strings(result["relation"].values)):
        rows.append([pretty(relation, RELATION_LABELS),
                     int(result["relation_pairs"].values[index]) if "relation_pairs" in result else "",
                     format_interval(*(float(result[name].values[index]) for name in
                                       ("relation_mean", "relation_ci_low", "relation_ci_high")))])
    metric = str(result.attrs.get("metric", "similarity"))
    confidence = f"{confidence_of(result):.0%}"
    return table(["relation of the two models", "pairs", f"mean {pretty(metric, SIMILARITY_LABELS)} ({confidence} CI)"],
                 rows,
                 numeric_from=1)


def _over_seeds(values: np.ndarray, low: np.ndarray | None, high: np.ndarray | None, confidence: float) -> str:
    """Mean over seeds with its CI (:func:`lrp_faces.result_layout.seed_summary`), formatted; "n/a" without one."""
    return format_interval(*(float(part) for part in seed_summary(values, low, high, confidence)))


def ground_truth_table(result: xr.Dataset) -> str:
    """Relevance mass and rank accuracy per pretraining x task, over seeds; "" without ground-truth variables."""
    metrics = [name for name in ("relevance_mass_accuracy", "relevance_rank_accuracy") if f"{name}_mean" in result]
    if not metrics:
        return ""
    rows = []
    for pretraining in strings(result["pretraining"].values):
        for task in strings(result["task"].values):
            row: list[Any] = [pretraining, task]
            for name in metrics:
                where = {"pretraining": pretraining, "task": task}
                pick = {key: value for key, value in where.items() if key in result[f"{name}_mean"].dims}
                values = np.atleast_1d(np.asarray(result[f"{name}_mean"].sel(pick).values, dtype=np.float64))
                bounds = [np.atleast_1d(np.asarray(result[f"{name}_ci_{side}"].sel(pick).values, dtype=np.float64))
                          if f"{name}_ci_{side}" in result else None for side in ("low", "high")]
                row.append(_over_seeds(values, *bounds, confidence_of(result)))
            rows.append(row)
    return table(["pretraining", "task"] + [f"{pretty(name, METRIC_LABELS)} (mean over seeds, CI)"
                                            for name in metrics], rows, numeric_from=2)


def methods_table(result: xr.Dataset) -> str:
    """An HTML table of each method's score on each metric of a method comparison, with intervals."""
    methods, metrics = strings(result[METHOD_DIM].values), strings(result["metric"].values)
    rows = []
    for method in methods:
        selected = result.sel({METHOD_DIM: method})
        rows.append([pretty(method)] + [format_interval(*(float(selected[name].sel(metric=metric).values)
                                                          for name in ("mean", "ci_low", "ci_high")))
                                        for metric in metrics])
    return table(["method"] + [pretty(metric, METRIC_LABELS) for metric in metrics], rows, numeric_from=1)


def rsa_table(result: xr.Dataset) -> str:
    """Per pretraining x task x kind: the statistic of the RSA figure over seeds (with raters, the mean correlation
    with each rater's RDM and whether it reaches the noise ceiling's lower bound), the correlation with the raters'
    mean RDM when that is not the statistic already, and the seeds with p < 0.05."""
    statistic, low_name, high_name, per_rater = rsa_statistic(result)
    ceiling = noise_ceiling(result)
    with_ceiling = per_rater and all(np.isfinite(ceiling))
    confidence = confidence_of(result)
    rows = []
    for pretraining in strings(result["pretraining"].values):
        for task in strings(result["task"].values):
            for kind in strings(result["kind"].values):
                selected = result.sel(pretraining=pretraining, task=task, kind=kind)

                def column(name: str | None) -> np.ndarray | None:
                    return None if name is None else np.atleast_1d(np.asarray(selected[name].values,
                                                                              dtype=np.float64))
                values = column(statistic)
                row = [pretraining, task, pretty(kind, KIND_LABELS), _over_seeds(values, column(low_name),
                                                                                 column(high_name), confidence)]
                if with_ceiling:
                    finite = values[np.isfinite(values)]
                    row.append(("yes" if finite.mean() >= ceiling[0] else "no") if finite.size else "n/a")
                if per_rater:
                    row.append(_over_seeds(column("correlation"), column("ci_low"), column("ci_high"), confidence))
                p_values = column("p_value") if "p_value" in selected else np.full(values.shape, np.nan)
                tested = np.isfinite(p_values)
                row.append(f"{int((p_values[tested] < 0.05).sum())}/{int(tested.sum())}" if tested.any() else "n/a")
                rows.append(row)
    headers = ["pretraining", "task", "model RDM", f"{rsa_statistic_label(result)} (mean over seeds, CI)"]
    if with_ceiling:
        headers.append(f"reaches the noise ceiling's lower bound ({ceiling[0]:.2f})")
    if per_rater:
        headers.append("correlation with the raters' mean RDM (mean over seeds, CI)")
    return table(headers + ["seeds with p < 0.05"], rows, numeric_from=3)
