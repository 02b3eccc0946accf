"""Timing one forward and one LRP batch of each architecture of a zoo, to turn counted passes into seconds."""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ... import methods as method_registry
from ...masking import MaskingConfig, road_impute
from ...masking.config import hidden_counts, unit_count
from ...methods import Method
from ...models import read_checkpoint_info, vgg16
from ...module_state import evaluation_mode
from ...zoo import ModelSpec
from ..study import Study
from .passes import Passes

__all__ = ["ModelTiming", "Calibration", "calibration", "ROAD_SAMPLES"]


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
    """Seconds per image of one forward batch of ``forward_rows`` (after one untimed batch of the same shape: the
    first pass of a shape allocates and picks its kernels) and of one LRP batch of ``gradient_rows`` (after a
    one-image warm-up)."""
    model.to(device)
    dtype = next(model.parameters()).dtype
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(max(forward_rows, gradient_rows), 3, image_size, image_size, generator=generator)
    images = images.to(device=device, dtype=dtype)
    target = torch.zeros(len(images), dtype=torch.long, device=device)
    with evaluation_mode(model):
        with torch.inference_mode():
            model(images[:forward_rows])
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
