"""Upper bounds on the result files of each step, from their dimensions (see :mod:`lrp_faces.cli.plan`).

Each bound is every value of the file uncompressed, plus :data:`VARIABLE_OVERHEAD` per variable and
:data:`FILE_OVERHEAD`: the files are compressed, and their headers weigh a few KiB per variable.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ...analysis import COMPARISON_METRICS, RDM_KINDS
from ...masking import RELATIONS
from ...methods import Method
from ...zoo import ModelSpec

__all__ = ["ModelGrid", "netcdf_bytes", "cube_bytes", "generalization_bytes", "self_masking_bytes",
           "similarity_bytes", "regions_bytes", "methods_bytes", "rsa_bytes", "VARIABLE_OVERHEAD", "FILE_OVERHEAD"]

VARIABLE_OVERHEAD = 6 * 1024
"""Bytes of HDF5 headers, checksums and chunk index per NetCDF4 variable, at most (about 4 KiB measured)."""
FILE_OVERHEAD = 16 * 1024
"""Bytes of a NetCDF4 file's superblock, dimensions and attributes, at most."""


@dataclass(frozen=True)
class ModelGrid:
    """The model grid of a study: its pretrainings, tasks and seeds, and the longest of their names."""

    pretrainings: int
    tasks: int
    seeds: int
    name: int

    @classmethod
    def of(cls, specs: Sequence[ModelSpec]) -> "ModelGrid":
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


def cube_bytes(grid: ModelGrid, images: int, image_size: int, id_length: int) -> int:
    """The cube: one file per model with its maps (images x H x W float32) and per-image values."""
    per_model = [(images * image_size * image_size, 4), (images, 4), (images, 8), (images, 8), (images, 1),
                 (images, 8), (images, 8), (images * id_length, 1), (grid.name, 1), (grid.name, 1), (1, 8),
                 (image_size, 4), (image_size, 4)]
    return grid.models * netcdf_bytes(per_model)


def _curve_variables(models: int, fractions: int, images: int, scalars: int) -> list[tuple[int, int]]:
    """Curves (correct, probability, output), accuracy, AOPCs per image and ``scalars`` values per model."""
    return ([(models * fractions * images, 1)] + [(models * fractions * images, 8)] * 2 + [(models * fractions, 8)]
            + [(models * images, 8)] * 2 + [(models, 8)] * scalars)


def generalization_bytes(grid: ModelGrid, images: int, fractions: int, id_length: int) -> int:
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


def self_masking_bytes(grid: ModelGrid, images: int, fractions: int, id_length: int) -> int:
    """``masking_lerf.nc``: each model's curves on its own maps, with their labels."""
    models = grid.models
    variables = (_curve_variables(models, fractions, images, 3) + [(models * images, 8), (fractions, 8),
                                                                   (fractions, 8), (images * id_length, 1)]
                 + grid.coordinates())
    return netcdf_bytes(variables)


def similarity_bytes(grid: ModelGrid, images: int, id_length: int) -> int:
    """``similarity.nc``: every pair of models per image, their means with CIs, the relation summaries."""
    models, relations = grid.models, len(RELATIONS)
    variables = ([(models * models * images, 8)] + [(models * models, 8)] * 3 + [(relations, 8)] * 4
                 + [(models * grid.model_id, 1)] * 2 + [(images * id_length, 1), (relations * RELATION_LENGTH, 1),
                                                        (models * models * RELATION_LENGTH, 1)]
                 + [(models * grid.name, 1), (models * grid.name, 1), (models, 8)] * 2)
    return netcdf_bytes(variables)


def regions_bytes(grid: ModelGrid, images: int, regions: Sequence[str], ground_truth: bool, id_length: int) -> int:
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


def rsa_bytes(grid: ModelGrid, kinds: Sequence[str]) -> int:
    """``rsa.nc``: the correlation with the human RDM, its p-value, CIs and rater values per model and kind."""
    cells = grid.models * len(kinds)
    return netcdf_bytes([(cells, 8)] * 7 + grid.coordinates() + [(len(kinds) * max(map(len, RDM_KINDS)), 1)])
