"""The passes of each step, counted from its settings as the step runs them (see :mod:`lrp_faces.cli.plan`)."""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...masking import DEFAULT_BLOCK_SIZE, CubeInputs, MaskingConfig
from ...masking.config import hidden_counts, unit_count
from ...methods import IntegratedGradients, LRPMethod, Method, Random, SmoothGrad
from ...zoo import ModelSpec

__all__ = ["Passes", "method_passes", "masked_scoring_passes", "distinct_hidden_counts", "masking_rows",
           "attribute_passes", "generalization_passes", "self_masking_passes", "method_comparison_passes",
           "rsa_passes"]


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

    @classmethod
    def total(cls, passes: Iterable["Passes"]) -> "Passes":
        """The sum of ``passes``."""
        return sum(passes, cls())


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
    the model takes the images (:func:`lrp_faces.cube.compute`), and, for an LRP method, one more that checks the
    model is a chain the rules fit (:func:`lrp_faces.model_checks.check_lrp_structure`, once per model and
    process)."""
    checks = Passes(2) if isinstance(method, LRPMethod) else Passes(1)
    return {spec: method_passes(method) * images + checks for spec in specs}


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
    images in one block (:func:`lrp_faces.analysis.method_comparison`), and one structure check of the model where
    a method is LRP (see :func:`attribute_passes`)."""
    distinct = distinct_hidden_counts(config, image_size)
    curves = masked_scoring_passes(images, 1, distinct, rows, None, config.fill == "road")
    check = Passes(1) if any(isinstance(method, LRPMethod) for method in methods) else Passes()
    per_model = Passes.total(method_passes(method) * images + curves for method in methods) + check
    return {spec: per_model for spec in specs}


def rsa_passes(specs: Sequence[ModelSpec], images: int, kinds: Sequence[str]) -> dict[ModelSpec, Passes]:
    """The ``rsa`` step: one forward pass per image for each RDM kind that needs the model
    (:func:`lrp_faces.analysis.model_rdms`: ``features``, ``decision_weighted``)."""
    with_models = sum(kind in ("features", "decision_weighted") for kind in kinds)
    return {spec: Passes(images * with_models) for spec in specs}
