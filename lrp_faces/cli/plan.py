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
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from .. import methods as method_registry
from ..analysis import COMPARISON_FRACTIONS, COMPARISON_METRICS, DEFAULT_METHODS, RDM_KINDS, TEMPLATE_REGIONS
from ..analysis import method_comparison, model_rdms
from ..cube.blocks import resolve_device
from ..faces import FaceDataset
from ..faces.synthetic import REGIONS
from ..masking import DEFAULT_BLOCK_SIZE, RELATIONS, CubeInputs, MaskingConfig, road_impute
from ..masking.config import hidden_counts, unit_count
from ..methods import IntegratedGradients, Method, Random, SmoothGrad
from ..models import read_checkpoint_info, vgg16
from ..module_state import evaluation_mode
from ..zoo import ModelSpec
from .runner import evenly_spaced
from .study import Study, StudyError

__all__ = ["Passes", "StepPlan", "StudyPlan", "ModelTiming", "Calibration", "study_plan", "plan_lines",
           "method_passes", "masked_scoring_passes", "attribute_passes", "generalization_passes",
           "self_masking_passes", "method_comparison_passes", "rsa_passes", "masking_rows", "distinct_hidden_counts",
           "study_image_count", "calibration", "netcdf_bytes", "cube_bytes", "generalization_bytes",
           "self_masking_bytes", "similarity_bytes", "regions_bytes", "methods_bytes", "rsa_bytes", "STEPS",
           "STEP_LABELS", "VARIABLE_OVERHEAD", "FILE_OVERHEAD"]

STEPS = ("attribute", "masking", "masking_lerf", "similarity", "regions", "methods", "rsa", "report")
"""The steps of a study run, in order; ``masking`` and ``masking_lerf`` are ``lrp-faces mask``, the next four
``lrp-faces analyze``."""
STEP_LABELS = {"attribute": "attribute (cube)", "masking": "mask: generalisation",
               "masking_lerf": "mask: LeRF self-masking", "similarity": "analyze: similarity",
               "regions": "analyze: regions", "methods": "analyze: methods", "rsa": "analyze: rsa",
               "report": "report"}
VARIABLE_OVERHEAD = 6 * 1024
"""Bytes of HDF5 headers, checksums and chunk index per NetCDF4 variable, at most (about 4 KiB measured)."""
FILE_OVERHEAD = 16 * 1024
"""Bytes of a NetCDF4 file's superblock, dimensions and attributes, at most."""
SYNTHETIC_ID_LENGTH = 16
"""Characters of a synthetic image id (``id003_img05``), at most for fewer than 10^5 identities."""


# ------------------------------------------------------------------------------------------------------ the plan
@dataclass(frozen=True)
class Passes:
    """Images through the models: ``forward`` passes (an LRP pass included), ``gradient`` (LRP or gradient) passes,
    each also one of the forward passes, and ``road`` imputations (masked images filled by ROAD)."""

    forward: int = 0
    gradient: int = 0
    road: int = 0

    def __add__(self, other: "Passes") -> "Passes":
        return Passes(self.forward + other.forward, self.gradient + other.gradient, self.road + other.road)

    def __mul__(self, count: int) -> "Passes":
        return Passes(self.forward * count, self.gradient * count, self.road * count)

    __rmul__ = __mul__


def _total(passes: Iterable[Passes]) -> Passes:
    return sum(passes, Passes())


@dataclass(frozen=True)
class ModelTiming:
    """Seconds per image of one architecture on one device, from one timed batch of each kind."""

    architecture: str  #: a short description, e.g. "VGG-16 width 1, batch norm"
    forward: float  #: one forward pass, without gradients
    gradient: float  #: one LRP pass of the study's method (forward with gradients and backward)
    forward_batch: int  #: rows of the timed forward batch (the masking steps' rows)
    gradient_batch: int  #: rows of the timed LRP batch (the study's attribution batch size)


@dataclass(frozen=True)
class Calibration:
    """The timings a plan's seconds come from: per model its architecture's, per ROAD-filled step its seconds per
    imputed image; ``seconds`` is how long calibrating took."""

    device: str
    threads: int
    timings: Mapping[ModelSpec, ModelTiming]
    road: Mapping[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def step_seconds(self, step: str, passes: Mapping[ModelSpec, Passes]) -> float:
        """Estimated seconds of ``step`` whose passes per model are ``passes``."""
        total = 0.0
        for spec, counted in passes.items():
            timing = self.timings[spec]
            total += (counted.forward - counted.gradient) * timing.forward + counted.gradient * timing.gradient
            total += counted.road * self.road.get(step, 0.0)
        return total


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
        return _total(step.passes for step in self.steps)

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


# --------------------------------------------------------------------------------------------- counting passes
def method_passes(method: Method) -> Passes:
    """Passes per image of one attribution with ``method``, as its ``explain`` runs them.

    LRP and gradient methods: one forward pass with gradients and its backward pass. SmoothGrad: one forward pass
    for the prediction, then ``n_samples`` gradient passes; integrated gradients likewise with ``steps``; the random
    baseline: one forward pass. A method registered elsewhere counts as one LRP pass.
    """
    if isinstance(method, SmoothGrad):
        return Passes(1 + method.params["n_samples"], method.params["n_samples"])
    if isinstance(method, IntegratedGradients):
        return Passes(1 + method.params["steps"], method.params["steps"])
    if isinstance(method, Random):
        return Passes(1, 0)
    return Passes(1, 1)


def _padded(count: int, rows: int) -> int:
    """Rows of the forward passes that score ``count`` images, ``rows`` at a time (a short last pass is padded)."""
    return math.ceil(count / rows) * rows


def masked_scoring_passes(images: int, sources: int, distinct: int, rows: int, block_size: int | None,
                          road: bool = False) -> Passes:
    """Passes of one model scoring ``images`` unmasked and masked by ``sources`` rankings, block by block.

    Per block of ``block_size`` images (None: one block) the unmasked images go through once, and each source's
    masked images, one per image and distinct positive hidden count (``distinct``), in passes of exactly ``rows``
    rows. ``road``: the masked images are filled by ROAD, one imputation each.
    """
    block_size = images if block_size is None else block_size
    total = Passes()
    for start in range(0, images, max(block_size, 1)):
        count = min(block_size, images - start)
        masked = count * distinct
        total += Passes(_padded(count, rows) + sources * _padded(masked, rows), 0, sources * masked if road else 0)
    return total


def distinct_hidden_counts(config: MaskingConfig, image_size: int) -> int:
    """Distinct positive numbers of hidden units of ``config``'s fractions on square images of ``image_size``:
    the masked images per image and ranking."""
    counts = hidden_counts(config.fractions, unit_count((image_size, image_size), config.patch), config.mode)
    return len(np.unique(counts[counts > 0]))


def masking_rows(config: MaskingConfig, batch_size: int | None, images: int, image_size: int,
                 device: str | torch.device = "cpu") -> int:
    """Rows of every forward pass of a masking step over ``images`` images (what its units use,
    :meth:`lrp_faces.masking.CubeInputs.batch_size`)."""
    stand_in = torch.empty(1, 3, image_size, image_size).expand(images, -1, -1, -1)  # the shape, without memory
    inputs = CubeInputs(config, (), None, stand_in, {}, None)
    return inputs.batch_size(batch_size, device)


def attribute_passes(specs: Sequence[ModelSpec], images: int, method: Method) -> dict[ModelSpec, Passes]:
    """The ``attribute`` step: every model explains every image once, after a forward pass of one image that checks
    the model takes the images (:func:`lrp_faces.cube.compute`)."""
    return {spec: method_passes(method) * images + Passes(1) for spec in specs}


def generalization_passes(specs: Sequence[ModelSpec], images: int, image_size: int, config: MaskingConfig,
                          rows: int, block_size: int | None = DEFAULT_BLOCK_SIZE) -> dict[ModelSpec, Passes]:
    """The ``masking`` step: every target scores the images masked by every model's maps and by the random order
    (:func:`lrp_faces.masking.generalization`)."""
    distinct = distinct_hidden_counts(config, image_size)
    target = masked_scoring_passes(images, len(specs) + 1, distinct, rows, block_size, config.fill == "road")
    return {spec: target for spec in specs}


def self_masking_passes(specs: Sequence[ModelSpec], images: int, image_size: int, config: MaskingConfig,
                        rows: int, block_size: int | None = DEFAULT_BLOCK_SIZE) -> dict[ModelSpec, Passes]:
    """The ``masking_lerf`` step: every model scores the images masked by its own maps
    (:func:`lrp_faces.masking.own_map_curves`)."""
    distinct = distinct_hidden_counts(config, image_size)
    model = masked_scoring_passes(images, 1, distinct, rows, block_size, config.fill == "road")
    return {spec: model for spec in specs}


def method_comparison_passes(specs: Sequence[ModelSpec], images: int, image_size: int, methods: Sequence[Method],
                             config: MaskingConfig, rows: int) -> dict[ModelSpec, Passes]:
    """The ``methods`` step: per model and method, the attribution of every image and its masking curves, all
    images in one block (:func:`lrp_faces.analysis.method_comparison`)."""
    distinct = distinct_hidden_counts(config, image_size)
    curves = masked_scoring_passes(images, 1, distinct, rows, None, config.fill == "road")
    per_model = _total(method_passes(method) * images + curves for method in methods)
    return {spec: per_model for spec in specs}


def rsa_passes(specs: Sequence[ModelSpec], images: int, kinds: Sequence[str]) -> dict[ModelSpec, Passes]:
    """The ``rsa`` step: one forward pass per image for each RDM kind that needs the model
    (:func:`lrp_faces.analysis.model_rdms`: ``features``, ``decision_weighted``)."""
    with_models = sum(kind in ("features", "decision_weighted") for kind in kinds)
    return {spec: Passes(images * with_models) for spec in specs}


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


@dataclass(frozen=True)
class _Grid:
    """The model grid of a study: its pretrainings, tasks and seeds, and the longest of their names."""

    pretrainings: int
    tasks: int
    seeds: int
    name: int

    @classmethod
    def of(cls, specs: Sequence[ModelSpec]) -> "_Grid":
        names = [spec.pretraining for spec in specs] + [spec.task for spec in specs]
        return cls(len({spec.pretraining for spec in specs}), len({spec.task for spec in specs}),
                   len({spec.seed for spec in specs}), max(len(name.encode()) for name in names))

    @property
    def models(self) -> int:
        return self.pretrainings * self.tasks * self.seeds

    @property
    def model_id(self) -> int:
        """Characters of the longest model id, ``pretraining/task/seed``."""
        return 2 * self.name + 2 + 20

    def coordinates(self) -> list[tuple[int, int]]:
        """The pretraining, task and seed coordinates of a result over the grid."""
        return [(self.pretrainings * self.name, 1), (self.tasks * self.name, 1), (self.seeds, 8)]


RELATION_LENGTH = max(len(name) for name in RELATIONS)


def netcdf_bytes(variables: Iterable[tuple[int, int]]) -> int:
    """An upper bound on the size of a NetCDF4 file of ``variables``, each ``(values, bytes per value)``: every value
    uncompressed, plus :data:`VARIABLE_OVERHEAD` per variable and :data:`FILE_OVERHEAD`."""
    return FILE_OVERHEAD + sum(values * size + VARIABLE_OVERHEAD for values, size in variables)


def cube_bytes(grid: _Grid, images: int, image_size: int, id_length: int) -> int:
    """The cube: one file per model with its maps (images x H x W float32) and per-image values."""
    per_model = [(images * image_size * image_size, 4), (images, 4), (images, 8), (images, 8), (images, 1),
                 (images, 8), (images, 8), (images * id_length, 1), (grid.name, 1), (grid.name, 1), (1, 8),
                 (image_size, 4), (image_size, 4)]
    return grid.models * netcdf_bytes(per_model)


def _curve_variables(models: int, fractions: int, images: int, scalars: int) -> list[tuple[int, int]]:
    """Curves (correct, probability, output), accuracy, AOPCs per image and ``scalars`` values per model."""
    return ([(models * fractions * images, 1)] + [(models * fractions * images, 8)] * 2 + [(models * fractions, 8)]
            + [(models * images, 8)] * 2 + [(models, 8)] * scalars)


def generalization_bytes(grid: _Grid, images: int, fractions: int, id_length: int) -> int:
    """``masking.nc``: curves and AOPCs of every source x target pair and of the random source, the unmasked scores,
    the generalisation index and asymmetry with CIs, and the summaries per relation."""
    models, relations = grid.models, len(RELATIONS)
    pairs = models * models
    variables = (_curve_variables(pairs, fractions, images, 11) + [(pairs * RELATION_LENGTH, 1)]
                 + _curve_variables(models, fractions, images, 6)
                 + [(models * images, 1), (models * images, 8), (models * images, 8), (models, 8)]
                 + [(relations, 8)] * 6 + [(fractions, 8), (images * id_length, 1), (relations * RELATION_LENGTH, 1)]
                 + grid.coordinates() * 2)
    return netcdf_bytes(variables)


def self_masking_bytes(grid: _Grid, images: int, fractions: int, id_length: int) -> int:
    """``masking_lerf.nc``: each model's curves on its own maps, with their labels."""
    models = grid.models
    variables = (_curve_variables(models, fractions, images, 3) + [(models * images, 8), (fractions, 8),
                                                                   (fractions, 8), (images * id_length, 1)]
                 + grid.coordinates())
    return netcdf_bytes(variables)


def similarity_bytes(grid: _Grid, images: int, id_length: int) -> int:
    """``similarity.nc``: every pair of models per image, their means with CIs, the relation summaries."""
    models, relations = grid.models, len(RELATIONS)
    variables = ([(models * models * images, 8)] + [(models * models, 8)] * 3 + [(relations, 8)] * 4
                 + [(models * grid.model_id, 1)] * 2 + [(images * id_length, 1), (relations * RELATION_LENGTH, 1),
                                                        (models * models * RELATION_LENGTH, 1)]
                 + [(models * grid.name, 1), (models * grid.name, 1), (models, 8)] * 2)
    return netcdf_bytes(variables)


def regions_bytes(grid: _Grid, images: int, regions: Sequence[str], ground_truth: bool, id_length: int) -> int:
    """``regions.nc``: relevance share and density per model, image and region; ground-truth metrics for synthetic
    faces."""
    models, count = grid.models, len(regions)
    variables = ([(models * count, 8)] * 6 + [(models * images * count, 8)] * 2 + [(images * count, 8)]
                 + grid.coordinates() + [(images * id_length, 1), (count * max(map(len, regions)), 1)])
    if ground_truth:
        variables += ([(models * images, 8)] + [(models, 8)] * 3) * 2 + [(grid.tasks * images, 8)]
    return netcdf_bytes(variables)


def methods_bytes(methods: Sequence[Method], models: int, images: int, id_length: int, model_id: int) -> int:
    """``methods.nc``: every metric per method, model and image, with means and CIs."""
    count, metrics = len(methods), len(COMPARISON_METRICS)
    variables = [(count * models * images * metrics, 8)] + [(count * metrics, 8)] * 3 + [
        (count * models * metrics, 8), (count * max(len(method.name) for method in methods), 1),
        (metrics * max(map(len, COMPARISON_METRICS)), 1), (models * model_id, 1), (images * id_length, 1),
        (models * model_id, 1), (models * model_id, 1), (models, 8)]
    return netcdf_bytes(variables)


def rsa_bytes(grid: _Grid, kinds: Sequence[str]) -> int:
    """``rsa.nc``: the correlation with the human RDM, its p-value, CIs and rater values per model and kind."""
    cells = grid.models * len(kinds)
    return netcdf_bytes([(cells, 8)] * 7 + grid.coordinates() + [(len(kinds) * max(map(len, RDM_KINDS)), 1)])


# ------------------------------------------------------------------------------------------------ calibration
@dataclass(frozen=True)
class _Architecture:
    """Models of one architecture, and how to get one of them to time."""

    description: str
    specs: tuple[ModelSpec, ...]
    model: Callable[[], torch.nn.Module]


def _describe(architecture: Mapping[str, Any]) -> str:
    width = architecture.get("width", 1.0)
    parts = [f"VGG-16 width {width:g}", "batch norm" if architecture.get("batch_norm") else "no batch norm",
             f"classifier {architecture.get('classifier_width', 4096)}"]
    return ", ".join(parts)


def _architectures(study: Study) -> list[_Architecture]:
    """The zoo's models grouped by architecture (its classes and preprocessing aside, which do not change the cost).

    The demo zoo's models are built untrained from its settings (timing does not depend on the weights, and nothing
    is trained); a checkpoint's architecture is read without its weights, and one model per architecture loaded.
    """
    if study.zoo.demo is not None:
        settings = study.zoo.demo_settings
        architecture = settings.architecture()
        return [_Architecture(f"demo {_describe(architecture)}", tuple(settings.specs()),
                              lambda: vgg16(num_classes=2, **architecture))]
    zoo = study.zoo.models
    groups: dict[str, list[ModelSpec]] = {}
    descriptions = {}
    for spec, entry in sorted(zoo.entries.items()):
        if entry.format == "lrp_faces":
            architecture = dict(read_checkpoint_info(entry.path)["architecture"])
            key = json.dumps({name: value for name, value in architecture.items()
                              if name not in ("num_classes", "preprocessing")}, sort_keys=True, default=str)
            descriptions.setdefault(key, _describe(architecture))
        else:
            key = entry.format
            descriptions.setdefault(key, "torchvision VGG-16" if key == "torchvision" else "VGG-Face VGG-16")
        groups.setdefault(key, []).append(spec)
    return [_Architecture(descriptions[key], tuple(specs), lambda spec=specs[0]: zoo[spec])
            for key, specs in groups.items()]


def _synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(run: Callable[[], Any], device: torch.device) -> float:
    _synchronise(device)
    started = time.perf_counter()
    run()
    _synchronise(device)
    return time.perf_counter() - started


def _time_model(model: torch.nn.Module, method: Method, contrastive: bool, image_size: int, forward_rows: int,
                gradient_rows: int, device: torch.device) -> tuple[float, float]:
    """Seconds per image of one forward batch of ``forward_rows`` and one LRP batch of ``gradient_rows``, each after
    a one-image warm-up (the first call allocates)."""
    model.to(device)
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(max(forward_rows, gradient_rows), 3, image_size, image_size, generator=generator)
    images = images.to(device=device, dtype=dtype)
    target = torch.zeros(len(images), dtype=torch.long, device=device)
    with evaluation_mode(model):
        with torch.inference_mode():
            model(images[:1])
            forward = _timed(lambda: model(images[:forward_rows]), device) / forward_rows
        method.explain(model, images[:1], target[:1], contrastive)
        gradient = _timed(lambda: method.explain(model, images[:gradient_rows], target[:gradient_rows], contrastive),
                          device) / gradient_rows
    return forward, gradient


ROAD_SAMPLES = 6
"""Hidden counts at which ROAD imputation is timed, at most (evenly spread over the step's counts)."""


def _road_seconds(config: MaskingConfig, image_size: int) -> float:
    """Seconds per ROAD imputation of one image, the mean over up to :data:`ROAD_SAMPLES` of the config's hidden
    counts; each mask is one disc of hidden pixels around the centre, like the blobs of a MoRF order."""
    units = unit_count((image_size, image_size), config.patch)
    counts = np.unique(hidden_counts(config.fractions, units, config.mode))
    counts = counts[counts > 0]
    if not len(counts):
        return 0.0
    counts = counts[np.unique(np.linspace(0, len(counts) - 1, ROAD_SAMPLES).round().astype(int))]
    road_impute(np.zeros((1, 3, 8, 8)), np.eye(8, dtype=bool)[None])  # compiles the solver once (numba)
    centre = (image_size - 1) / 2
    rows, columns = np.mgrid[:image_size, :image_size]
    rank = np.argsort(np.argsort(((rows - centre) ** 2 + (columns - centre) ** 2).ravel(), kind="stable"))
    hidden = np.stack([rank.reshape(image_size, image_size) < count * config.patch ** 2 for count in counts])
    images = np.random.default_rng(0).random((len(counts), 3, image_size, image_size))
    started = time.perf_counter()
    road_impute(images, hidden, cache=None)
    return (time.perf_counter() - started) / len(counts)


def calibration(study: Study, forward_rows: int, gradient_rows: int, device: torch.device,
              road: Mapping[str, MaskingConfig] | None = None) -> Calibration:
    """Time one forward batch and one LRP batch (the study's method) of each architecture of the zoo on ``device``,
    at the study's image size and the current torch threads; and ROAD imputation for the steps in ``road``."""
    started = time.perf_counter()
    method = method_registry.get(study.attribution.method, **study.attribution.params)
    timings = {}
    for architecture in _architectures(study):
        forward, gradient = _time_model(architecture.model(), method, study.attribution.contrastive,
                                        study.image_size, forward_rows, gradient_rows, device)
        timing = ModelTiming(architecture.description, forward, gradient, forward_rows, gradient_rows)
        timings.update({spec: timing for spec in architecture.specs})
    road_seconds = {step: _road_seconds(config, study.image_size) for step, config in (road or {}).items()}
    return Calibration(str(device), torch.get_num_threads(), timings, road_seconds,
                       time.perf_counter() - started)


# ---------------------------------------------------------------------------------------------------- the plan
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
        One :class:`StepPlan` per step that will run, in order.
    """
    device = resolve_device(device) or torch.device("cpu")
    specs = _study_specs(study)
    grid = _Grid.of(specs)
    images, id_length = study_image_count(study)
    size = study.image_size
    settings = study.masking
    config = settings.config
    masked = len(evenly_spaced(images, settings.max_images))
    rows = masking_rows(config, settings.batch_size, masked, size, device)
    method = method_registry.get(study.attribution.method, **study.attribution.params)
    fractions = len(config.fractions)
    passes: dict[str, dict[ModelSpec, Passes]] = {
        "attribute": attribute_passes(specs, images, method),
        "masking": generalization_passes(specs, masked, size, config, rows)}
    sizes = {"attribute": cube_bytes(grid, images, size, id_length),
             "masking": generalization_bytes(grid, masked, fractions, id_length)}
    notes = {"report": "HTML and figures: no model passes, size not estimated"}
    fills = {"masking": config}
    if config.order == "lerf":
        notes["masking_lerf"] = "skipped: the generalisation step already masks least relevant first"
    else:
        lerf = config.replace(order="lerf")
        passes["masking_lerf"] = self_masking_passes(specs, masked, size, lerf, rows)
        sizes["masking_lerf"] = self_masking_bytes(grid, masked, fractions, id_length)
        fills["masking_lerf"] = lerf
    run = study.analysis.run
    if "similarity" in run:
        sizes["similarity"] = similarity_bytes(grid, images, id_length)
    if "regions" in run:
        regions = REGIONS if study.dataset.synthetic else TEMPLATE_REGIONS
        sizes["regions"] = regions_bytes(grid, images, regions, study.dataset.synthetic, id_length)
    if "methods" in run:
        models, methods, comparison, batch_size = _methods_settings(study, specs)
        count = len(evenly_spaced(images, study.analysis.methods.get("max_images")))
        comparison_rows = masking_rows(comparison, batch_size, count, size, device)
        passes["methods"] = method_comparison_passes(models, count, size, methods, comparison, comparison_rows)
        sizes["methods"] = methods_bytes(methods, len(models), count, id_length, grid.model_id)
        fills["methods"] = comparison
    if "rsa" in run:
        kinds = tuple(study.analysis.rsa.get("kinds", _default(model_rdms, "kinds")))
        passes["rsa"] = rsa_passes(specs, images, kinds)
        sizes["rsa"] = rsa_bytes(grid, kinds)
    timing = None
    if calibrate:
        road = {step: fill for step, fill in fills.items() if fill.fill == "road" and step in passes}
        timing = calibration(study, rows, min(study.attribution.batch_size, images), device, road)
    steps = []
    for step in STEPS:
        if step in passes or step in sizes or (step == "masking_lerf") or (step == "report" and study.report):
            counted = passes.get(step, {})
            seconds = timing.step_seconds(step, counted) if timing is not None and counted else None
            steps.append(StepPlan(step, _total(counted.values()), seconds, sizes.get(step), notes.get(step, "")))
    return StudyPlan(study.name, len(specs), images, size, str(device), tuple(steps), timing)


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
        threads = f", {calibration.threads} torch threads" if calibration.device == "cpu" else ""
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
        lines.append(f"Most of the time: {STEP_LABELS[slowest.step]}, {slowest.seconds / plan.seconds:.0%} "
                     f"(the settings that drive each step: docs, howto/cost)")
    lines.append("Passes count images, padding rows included; an LRP/gradient pass is also a forward pass. Times "
                 "cover model passes and ROAD fills (statistics, loading and writing come on top); disk sizes are "
                 "upper bounds (values uncompressed; the files are compressed).")
    return lines
