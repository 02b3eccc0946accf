"""Words and numbers of results as people read them: labels of names, model labels, intervals, settings, masking.

Figures (:mod:`lrp_faces.plots`), the report (:mod:`lrp_faces.report`) and the command line share these, so that a
relation, an order or a number reads the same everywhere. Nothing here imports matplotlib.

>>> pretty("same_cell_different_seed", RELATION_LABELS)
'other seed'
>>> format_interval(0.93, 0.881, 0.97)
'0.93 (0.88–0.97)'
>>> format_setting({"fractions": [0.0, 0.15000000000000002], "fill": "mean", "patch": 1})
'{"fractions": [0.0, 0.15], "fill": "mean", "patch": 1}'
>>> order_label("morf", mode="keep"), fraction_label("keep")
('MoRF (most relevant kept)', 'fraction of pixels kept (the rest filled)')
"""
from __future__ import annotations

import json
import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["RELATION_LABELS", "ORDER_LABELS", "KEEP_ORDER_LABELS", "METRIC_LABELS", "KIND_LABELS",
           "SIMILARITY_LABELS", "MASKED_PIXELS", "SETTING_DIGITS", "pretty", "model_label", "format_number",
           "format_interval", "format_setting", "order_label", "fraction_label"]

RELATION_LABELS = {"same_model": "same model", "same_cell_different_seed": "other seed",
                   "different_task": "other task", "different_pretraining": "other pretraining",
                   "both_different": "other task and pretraining"}
"""Short names of the relations of two models (:data:`lrp_faces.masking.RELATIONS`)."""
ORDER_LABELS = {"morf": "MoRF (most relevant first)", "lerf": "LeRF (least relevant first)", "random": "random order"}
"""Names of the masking orders when the first pixels of the order are hidden (``mode="remove"``)."""
KEEP_ORDER_LABELS = {"morf": "MoRF (most relevant kept)", "lerf": "LeRF (least relevant kept)",
                     "random": "random order"}
"""Names of the masking orders when the first pixels of the order are kept and the rest filled (``mode="keep"``)."""
METRIC_LABELS = {"relevance_mass_accuracy": "relevance mass accuracy", "relevance_rank_accuracy":
                 "relevance rank accuracy", "aopc_output": "AOPC (output)", "aopc_probability": "AOPC (probability)"}
"""Names of the metrics of :func:`lrp_faces.analysis.method_comparison`."""
KIND_LABELS = {"features": "penultimate features", "relevance": "relevance maps",
               "decision_weighted": "decision-weighted features"}
"""Names of the kinds of model RDMs of :func:`lrp_faces.analysis.compare_with_humans`."""
SIMILARITY_LABELS = {"spearman": "Spearman correlation", "pearson": "Pearson correlation", "topk_iou": "top-k IoU",
                     "cosine": "cosine similarity"}
"""Names of the map similarity metrics of :func:`lrp_faces.analysis.similarity`."""
MASKED_PIXELS = {"remove": "hidden", "keep": "kept"}
"""What happens to the first pixels of the order in each masking mode."""
SETTING_DIGITS = 12
"""Significant digits :func:`format_setting` prints of a float."""


def pretty(name: Any, labels: Mapping[str, str] | None = None) -> str:
    """A readable label for a lower_snake_case name: ``labels[name]`` where it is there, else the name with spaces.

    Examples
    --------
    >>> pretty("relevance_rank_accuracy"), pretty("morf", ORDER_LABELS)
    ('relevance rank accuracy', 'MoRF (most relevant first)')
    """
    text = str(name)
    return (labels or {}).get(text, text.replace("_", " "))


def model_label(pretraining: Any, task: Any, seed: Any | None = None, separator: str = " · ") -> str:
    """A model's name for people, ``"faces · gender · seed 0"`` (without the seed when it is None).

    Examples
    --------
    >>> model_label("faces", "gender", 0), model_label("objects", "identity", separator="/")
    ('faces · gender · seed 0', 'objects/identity')
    """
    parts = [str(pretraining), str(task)] + ([f"seed {int(seed)}"] if seed is not None else [])
    return separator.join(parts)


def format_number(value: Any, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals and a true minus sign (``"−0.25"``); ``"n/a"`` for None, NaN or inf.

    Examples
    --------
    >>> format_number(0.1234), format_number(-0.25, 1), format_number(float("nan")), format_number(None)
    ('0.12', '−0.2', 'n/a', 'n/a')
    """
    if value is None:
        return "n/a"
    value = float(value)
    return f"{value:.{digits}f}".replace("-", "−") if math.isfinite(value) else "n/a"


def format_interval(mean: Any, low: Any, high: Any, digits: int = 2) -> str:
    """A value with its confidence interval: ``"0.93 (0.88–0.97)"``, ``"0.10 (−0.20 to 0.40)"``.

    Without a finite interval just the value (``"0.93"``), without a finite value ``"n/a"``. A dash joins positive
    bounds; "to" joins bounds where either is negative, so that no dash reads as a minus.

    Examples
    --------
    >>> format_interval(0.1, -0.2, 0.4), format_interval(0.93, float("nan"), 0.97), format_interval(None, 0, 1)
    ('0.10 (−0.20 to 0.40)', '0.93', 'n/a')
    """
    text = format_number(mean, digits)
    if text == "n/a":
        return text
    if low is not None and high is not None and math.isfinite(float(low)) and math.isfinite(float(high)):
        separator = " to " if float(low) < 0 or float(high) < 0 else "–"
        text += f" ({format_number(low, digits)}{separator}{format_number(high, digits)})"
    return text


def _float_text(value: Any) -> str:
    """The shortest text of ``value`` rounded to :data:`SETTING_DIGITS` significant digits; whole floats keep
    ``.0``."""
    if isinstance(value, np.floating) and value.dtype.itemsize < 8:
        value = float(str(value))  # a float32 setting as it was written, not its float64 expansion
    value = float(value)
    if not math.isfinite(value):
        return repr(value)
    return repr(float(f"{value:.{SETTING_DIGITS}g}"))


def _setting_json(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        return _float_text(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{json.dumps(str(key), ensure_ascii=False)}: {_setting_json(item)}"
                               for key, item in value.items()) + "}"
    if isinstance(value, np.ndarray):
        return _setting_json(value.tolist())
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_setting_json(item) for item in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


def format_setting(value: Any) -> str:
    """A setting's value as text, for tables and terminals; the value itself stays exact.

    Floats are rounded to :data:`SETTING_DIGITS` significant digits and written in their shortest form, so that
    float noise does not show: ``0.15000000000000002`` reads ``0.15``, a whole float ``1.0``. Strings are shown as
    they are, except JSON lists and objects in a string (NetCDF attributes store containers so), which are rounded
    too; anything else as JSON (``true``, ``null``, ``[0.0, 0.15]``, ``{"a": 1}``), with the same rounding inside
    lists and mappings. Other objects (paths) are shown by their ``str``.

    >>> format_setting(0.1 + 0.2), format_setting(1.0), format_setting(2.5e-7), format_setting(True)
    ('0.3', '1.0', '2.5e-07', 'true')
    """
    if isinstance(value, str):
        return _json_container(value) or value
    return _setting_json(value)


def _json_container(text: str) -> str | None:
    """A JSON list or object in a string (as NetCDF attributes hold containers), re-written by :func:`format_setting`;
    None for any other string."""
    if text.lstrip()[:1] not in ("[", "{"):
        return None
    try:
        parsed = json.loads(text)
    except ValueError:
        return None
    return _setting_json(parsed) if isinstance(parsed, (list, dict)) else None


def order_label(order: Any, mode: str = "remove") -> str:
    """The name of a masking order in a masking mode: ``"MoRF (most relevant first)"`` (remove) or
    ``"MoRF (most relevant kept)"`` (keep); other orders by :func:`pretty`.

    Examples
    --------
    >>> order_label("lerf"), order_label("morf", mode="keep"), order_label("edges_first")
    ('LeRF (least relevant first)', 'MoRF (most relevant kept)', 'edges first')
    """
    return pretty(order, KEEP_ORDER_LABELS if mode == "keep" else ORDER_LABELS)


def fraction_label(mode: str = "remove", units: str = "pixels") -> str:
    """What the fraction of a masking curve counts: ``"fraction of pixels hidden"`` (remove) or ``"fraction of
    pixels kept (the rest filled)"`` (keep); ``units`` is ``"pixels"`` or ``"patches"``.

    Examples
    --------
    >>> fraction_label(), fraction_label("keep", units="patches")
    ('fraction of pixels hidden', 'fraction of patches kept (the rest filled)')
    """
    if mode == "keep":
        return f"fraction of {units} kept (the rest filled)"
    return f"fraction of {units} {MASKED_PIXELS.get(mode, 'masked')}"
