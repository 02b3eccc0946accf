"""Know the cost before running: the passes, estimated time and disk size of every step of a study.

:func:`study_plan` counts, per step and per model, the images that go through a forward pass and through an LRP (or
gradient) pass, exactly as the steps run them, from the study's settings alone; with ``calibrate=True`` it also times
one forward batch and one LRP batch of each architecture of the zoo on this machine and turns the counts into
seconds. :func:`plan_lines` prints it (``lrp-faces plan STUDY.toml``). The counts, per step:

* ``attribute``: one attribution per model and image (and one forward pass per model that checks it); an LRP or gradient method is one forward and one backward
  pass, SmoothGrad ``1 + n_samples`` forward and ``n_samples`` backward passes, integrated gradients ``1 + steps``
  and ``steps``, the random baseline one forward pass (:func:`method_passes`).
* ``masking`` (generalisation): every target model scores, per block of images, the unmasked images and the images
  masked by every source's maps and by the random order, one image per distinct positive number of hidden units
  (fractions that hide nothing reuse the unmasked scores); every forward pass has the same number of rows, so a
  short last batch is padded and costs a full one (:func:`masked_scoring_passes`).
* ``masking_lerf``: the same for each model on its own maps, least relevant first (skipped when the study's order is
  already ``lerf``).
* ``methods``: per model and method, the attribution of ``max_images`` images and their masking curves.
* ``rsa``: one forward pass per model and image for each RDM kind that needs the model (``features``,
  ``decision_weighted``).
* ``similarity``, ``regions`` and ``report`` read the cube: no model passes.

Counts are of images (padding rows included), not of calls; an LRP pass is also counted as one forward pass. Times
cover the model passes and ROAD imputation; bootstraps, permutation tests, loading and writing come on top. Disk
sizes are upper bounds: every value uncompressed plus the files' headers (the files are compressed).
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ... import methods as method_registry
from ...analysis import TEMPLATE_REGIONS, method_comparison, model_rdms
from ...devices import resolve_device
from ...faces import FaceDataset
from ...faces.synthetic import REGIONS
from ...masking import MaskingConfig
from ...methods import Method
from ...zoo import ModelSpec
from ..runner import evenly_spaced
from ..study import Study, StudyError
from .calibration import Calibration, ModelTiming, calibration
from .passes import (Passes, attribute_passes, distinct_hidden_counts, generalization_passes, masked_scoring_passes,
                     masking_rows, method_comparison_passes, method_passes, rsa_passes, self_masking_passes)
from .sizes import (ModelGrid, cube_bytes, generalization_bytes, methods_bytes, netcdf_bytes, regions_bytes,
                    rsa_bytes, self_masking_bytes, similarity_bytes)

__all__ = ["StepPlan", "StudyPlan", "study_plan", "plan_lines", "study_image_count", "format_duration",
           "format_bytes", "STEPS", "STEP_LABELS", "Passes", "ModelTiming", "Calibration", "calibration",
           "method_passes", "masked_scoring_passes", "attribute_passes", "generalization_passes",
           "self_masking_passes", "method_comparison_passes", "rsa_passes", "masking_rows", "distinct_hidden_counts",
           "ModelGrid", "netcdf_bytes", "cube_bytes", "generalization_bytes", "self_masking_bytes",
           "similarity_bytes", "regions_bytes", "methods_bytes", "rsa_bytes"]

STEPS = ("attribute", "masking", "masking_lerf", "similarity", "regions", "methods", "rsa", "report")
"""The steps of a study run, in order; ``masking`` and ``masking_lerf`` are ``lrp-faces mask``, the next four
``lrp-faces analyze``."""
STEP_LABELS = {"attribute": "attribute (cube)", "masking": "mask: generalisation",
               "masking_lerf": "mask: LeRF self-masking", "similarity": "analyze: similarity",
               "regions": "analyze: regions", "methods": "analyze: methods", "rsa": "analyze: rsa",
               "report": "report"}
SYNTHETIC_ID_LENGTH = 16
"""Characters of a synthetic image id (``id003_img05``), at most for fewer than 10^5 identities."""


@dataclass(frozen=True)
class StepPlan:
    """One step's cost: its passes, estimated seconds (None: not calibrated, or no model passes) and an upper bound
    on the bytes it writes (None: not estimated); ``note`` says why a step is skipped."""

    step: str
    passes: Passes = Passes()
    seconds: float | None = None
    bytes: int | None = None
    note: str = ""


@dataclass(frozen=True)
class StudyPlan:
    """What a study costs, step by step (:func:`study_plan`)."""

    name: str
    models: int
    images: int
    image_size: int
    device: str
    steps: tuple[StepPlan, ...]
    calibration: Calibration | None = None

    @property
    def passes(self) -> Passes:
        return Passes.total(step.passes for step in self.steps)

    @property
    def seconds(self) -> float | None:
        """The estimated seconds of every step (None without calibration)."""
        if self.calibration is None:
            return None
        return sum(step.seconds or 0.0 for step in self.steps)

    @property
    def bytes(self) -> int:
        """An upper bound on the bytes of every result file."""
        return sum(step.bytes or 0 for step in self.steps)

    def step(self, name: str) -> StepPlan:
        """The plan of step ``name`` (one of :data:`STEPS`)."""
        for step in self.steps:
            if step.step == name:
                return step
        raise KeyError(f"the plan has no step {name!r}; it has {[step.step for step in self.steps]}")


# ------------------------------------------------------------------------------------------------- the study
def _study_specs(study: Study) -> list[ModelSpec]:
    return study.zoo.demo_settings.specs() if study.zoo.demo is not None else study.zoo.models.specs


def study_image_count(study: Study) -> tuple[int, int]:
    """The number of images the study explains (after ``[dataset].max_images``) and the length of their longest
    id, without loading an image.

    The demo's and synthetic faces are counted from their settings; real data sets are listed with
    ``check="exists"``, so with ``on_error = "skip"`` (which leaves out unreadable files at run time) the count is
    an upper bound.
    """
    settings = study.dataset
    if settings.kind == "demo":
        demo = study.zoo.demo_settings
        count, length = demo.study_identities * demo.test_images_per_identity, SYNTHETIC_ID_LENGTH
    elif settings.kind == "synthetic":
        count, length = settings.identities * settings.images_per_identity, SYNTHETIC_ID_LENGTH
    else:
        tasks = sorted({spec.task for spec in _study_specs(study)})
        label = settings.labels.get(tasks[0], tasks[0]) if tasks else "identity"
        common = {"task": label if label in ("identity", "gender") else "identity", "image_size": study.image_size,
                  "on_error": settings.on_error, "check": "exists"}
        if settings.kind == "manifest":
            source = FaceDataset.from_manifest(settings.path, settings.image_root, **common)
        elif settings.kind == "celeba":
            source = FaceDataset.from_celeba(settings.path, split=settings.split, **common)
        else:
            source = FaceDataset.from_folders(settings.path, **common)
        ids = [str(image_id) for image_id in source.image_ids]
        count, length = len(ids), max((len(image_id.encode()) for image_id in ids), default=1)
    return len(evenly_spaced(count, settings.max_images)), length


def _default(function: Callable, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


def _methods_settings(study: Study, specs: Sequence[ModelSpec]) -> tuple[list[ModelSpec], list[Method],
                                                                           MaskingConfig, int | None]:
    """The models, methods, masking config and masking batch size of the ``methods`` step, as the step takes them."""
    settings = study.analysis.methods
    arguments = study.analysis.arguments("methods", method_comparison)

    def value(name: str) -> Any:
        return arguments.get(name, _default(method_comparison, name))

    models = [ModelSpec.from_id(model) for model in settings.get("models", ())] or list(specs)
    missing = [spec.id for spec in models if spec not in specs]
    if missing:
        raise StudyError(f"[analysis.methods].models: {missing} are not in the zoo; it has "
                         f"{[spec.id for spec in specs]}")
    parameters = value("method_params") or {}
    methods = [method_registry.get(name, **parameters.get(name, {})) for name in value("methods")]
    config = MaskingConfig(fractions=value("fractions"), order=value("order"), fill=value("fill"),
                           patch=value("patch"), seed=value("seed"))
    return models, methods, config, value("masking_batch_size")


@dataclass(frozen=True)
class _Inputs:
    """What every step's plan reads: the study, its models and images, and where it runs."""

    study: Study
    specs: list[ModelSpec]
    grid: ModelGrid
    images: int
    id_length: int
    device: torch.device

    @property
    def size(self) -> int:
        return self.study.image_size

    @property
    def masked(self) -> int:
        """The images of the two masking steps (``[masking].max_images`` of the cube's)."""
        return len(evenly_spaced(self.images, self.study.masking.max_images))

    @property
    def rows(self) -> int:
        """Rows per forward pass of the two masking steps."""
        return masking_rows(self.study.masking.config, self.study.masking.batch_size, self.masked, self.size,
                            self.device)


@dataclass(frozen=True)
class _Counted:
    """One step's passes per model, the bytes it writes, a note, and the masking config whose fill it uses."""

    passes: dict[ModelSpec, Passes]
    bytes: int | None = None
    note: str = ""
    masking: MaskingConfig | None = None


def _attribute(inputs: _Inputs) -> _Counted:
    method = method_registry.get(inputs.study.attribution.method, **inputs.study.attribution.params)
    return _Counted(attribute_passes(inputs.specs, inputs.images, method),
                    cube_bytes(inputs.grid, inputs.images, inputs.size, inputs.id_length))


def _masking(inputs: _Inputs) -> _Counted:
    config = inputs.study.masking.config
    return _Counted(generalization_passes(inputs.specs, inputs.masked, inputs.size, config, inputs.rows),
                    generalization_bytes(inputs.grid, inputs.masked, len(config.fractions), inputs.id_length),
                    masking=config)


def _masking_lerf(inputs: _Inputs) -> _Counted:
    config = inputs.study.masking.config
    if config.order == "lerf":
        return _Counted({}, note="skipped: the generalisation step already masks least relevant first")
    lerf = config.replace(order="lerf")
    return _Counted(self_masking_passes(inputs.specs, inputs.masked, inputs.size, lerf, inputs.rows),
                    self_masking_bytes(inputs.grid, inputs.masked, len(config.fractions), inputs.id_length),
                    masking=lerf)


def _similarity(inputs: _Inputs) -> _Counted:
    return _Counted({}, similarity_bytes(inputs.grid, inputs.images, inputs.id_length))


def _regions(inputs: _Inputs) -> _Counted:
    synthetic = inputs.study.dataset.synthetic
    return _Counted({}, regions_bytes(inputs.grid, inputs.images, REGIONS if synthetic else TEMPLATE_REGIONS,
                                      synthetic, inputs.id_length))


def _methods(inputs: _Inputs) -> _Counted:
    models, methods, config, batch_size = _methods_settings(inputs.study, inputs.specs)
    count = len(evenly_spaced(inputs.images, inputs.study.analysis.methods.get("max_images")))
    rows = masking_rows(config, batch_size, count, inputs.size, inputs.device)
    return _Counted(method_comparison_passes(models, count, inputs.size, methods, config, rows),
                    methods_bytes(methods, len(models), count, inputs.id_length, inputs.grid.model_id),
                    masking=config)


def _rsa(inputs: _Inputs) -> _Counted:
    kinds = tuple(inputs.study.analysis.rsa.get("kinds", _default(model_rdms, "kinds")))
    return _Counted(rsa_passes(inputs.specs, inputs.images, kinds), rsa_bytes(inputs.grid, kinds))


def _report(inputs: _Inputs) -> _Counted:
    return _Counted({}, note="HTML and figures: no model passes, size not estimated")


_STEP_PLANS = {"attribute": _attribute, "masking": _masking, "masking_lerf": _masking_lerf,
               "similarity": _similarity, "regions": _regions, "methods": _methods, "rsa": _rsa, "report": _report}


def _runs(study: Study, step: str) -> bool:
    """Whether ``lrp-faces run`` runs ``step`` for ``study``."""
    if step in study.analysis.run or step in ("attribute", "masking", "masking_lerf"):
        return True
    return step == "report" and study.report


def study_plan(study: Study, calibrate: bool = True, device: str | torch.device | None = None) -> StudyPlan:
    """What running ``study`` costs, step by step: passes per kind, estimated seconds and bytes written.

    Parameters
    ----------
    study : Study
        The study (e.g. :meth:`Study.from_toml`).
    calibrate : bool
        Time one forward and one LRP batch of each architecture of the zoo (:func:`calibration`) and estimate every
        step's seconds; without it, counts and sizes only, and no model is loaded.
    device : str or torch.device, optional
        Where the study will run (``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"``; default the CPU): it sets the
        masking steps' rows per pass, and where the calibration runs.

    Returns
    -------
    StudyPlan
        One :class:`StepPlan` per step that will run, in order (``masking_lerf`` with a note when it is skipped).
    """
    device = torch.device("cpu") if device is None else resolve_device(device)
    specs = _study_specs(study)
    inputs = _Inputs(study, specs, ModelGrid.of(specs), *study_image_count(study), device)
    counted = {step: _STEP_PLANS[step](inputs) for step in STEPS if _runs(study, step)}
    timing = None
    if calibrate:
        road = {step: plan.masking for step, plan in counted.items()
                if plan.masking is not None and plan.masking.fill == "road"}
        timing = calibration(study, inputs.rows, min(study.attribution.batch_size, inputs.images), device, road)
    steps = tuple(StepPlan(step, Passes.total(plan.passes.values()),
                           timing.step_seconds(step, plan.passes) if timing is not None and plan.passes else None,
                           plan.bytes, plan.note) for step, plan in counted.items())
    return StudyPlan(study.name, len(specs), inputs.images, study.image_size, str(device), steps, timing)


# ---------------------------------------------------------------------------------------------------- printing
def format_duration(seconds: float) -> str:
    """``"42 s"``, ``"7.5 min"``, ``"3.2 h"`` or ``"2.1 days"``."""
    if seconds < 60:
        return f"{seconds:.2g} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def format_bytes(count: int) -> str:
    """``"830 kB"``, ``"1.7 MB"``, ``"12 GB"`` (decimal units)."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            value = count / scale
            return f"{value:.2g} {unit}" if value < 10 else f"{value:.0f} {unit}"
    return f"{count} B"


def _count(value: int) -> str:
    return f"{value:,}" if value else "0"


def plan_lines(plan: StudyPlan) -> list[str]:
    """The plan as text: a header, the calibration, one row per step, the total and how to read them."""
    lines = [f"Plan of study {plan.name!r}: {plan.models} models x {plan.images} images of {plan.image_size} px, "
             f"on {plan.device}"]
    calibration = plan.calibration
    if calibration is not None:
        count = calibration.threads
        threads = f", {count} torch thread{'s' if count != 1 else ''}" if calibration.device == "cpu" else ""
        lines.append(f"Calibration on {calibration.device}{threads}: one forward and one LRP batch per "
                     f"architecture, {format_duration(calibration.seconds)}")
        shown = {}
        for spec, timing in calibration.timings.items():
            shown.setdefault(timing, []).append(spec)
        for timing, specs in shown.items():
            lines.append(f"  {timing.architecture} ({len(specs)} model{'s' if len(specs) != 1 else ''}): forward "
                         f"{format_duration(timing.forward)}/image (batch of {timing.forward_batch}), LRP "
                         f"{format_duration(timing.gradient)}/image (batch of {timing.gradient_batch})")
        for step, seconds in calibration.road.items():
            lines.append(f"  ROAD imputation ({STEP_LABELS[step]}): {format_duration(seconds)}/image")
    else:
        lines.append("Not calibrated (--no-calibrate): counts and sizes only")
    road = plan.passes.road > 0  # a column only when a step fills with ROAD
    header = ("step", "forward", "LRP/grad") + (("ROAD",) if road else ()) + ("time", "disk")
    rows = []
    for step in plan.steps:
        time_text = format_duration(step.seconds) if step.seconds is not None else "-"
        disk = f"<= {format_bytes(step.bytes)}" if step.bytes is not None else "-"
        rows.append((STEP_LABELS[step.step], _count(step.passes.forward), _count(step.passes.gradient))
                    + ((_count(step.passes.road),) if road else ()) + (time_text, disk, step.note))
    total = plan.passes
    rows.append(("total", _count(total.forward), _count(total.gradient)) + ((_count(total.road),) if road else ())
                + (format_duration(plan.seconds) if plan.seconds is not None else "-",
                   f"<= {format_bytes(plan.bytes)}", ""))
    widths = [max(len(row[column]) for row in rows + [header]) for column in range(len(header))]

    def line(cells: Sequence[str], note: str = "") -> str:
        text = "  ".join([cells[0].ljust(widths[0])] + [cell.rjust(width) for cell, width
                                                          in zip(cells[1:], widths[1:])])
        return f"{text}  ({note})" if note else text
    lines.append(line(header))
    lines += [line(row[:-1], row[-1]) for row in rows]
    if plan.seconds:
        slowest = max(plan.steps, key=lambda step: step.seconds or 0.0)
        lines.append(f"Largest step: {STEP_LABELS[slowest.step]}, {slowest.seconds / plan.seconds:.0%} of the time; the "
                     f"how-to 'Know the cost before running' says which settings drive it")
    lines.append("Passes count images, padding rows included; an LRP/gradient pass is also a forward pass. Times "
                 "cover model passes and ROAD fills (statistics, loading and writing come on top); disk sizes are "
                 "upper bounds (values uncompressed; the files are compressed).")
    return lines
