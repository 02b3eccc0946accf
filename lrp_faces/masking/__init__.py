"""Relevance-based masking: perturbation (orders, granularity, fills incl. ROAD), curves, AOPC, generalisation.

Hide the pixels a relevance map ranks first (or last, or at random), a growing fraction at a time, or keep only
them, and measure how a model's decision degrades: on the model's own maps (validation) or on another model's
(generalisation). Every function takes a :class:`MaskingConfig` and any of its fields as keyword arguments.
"""
from .config import (DEFAULT_FRACTIONS, FILLS, MODES, ORDERS, MaskingConfig, MaskingError, MaskingTypeError,
                     hidden_counts, seeded_generator)
from .road import NEIGHBOUR_WEIGHTS, RoadCache, road_cache, road_impute
from ._engine import PRECISIONS, BlockScores
from ._inputs import DEFAULT_BLOCK_SIZE, CubeInputs, fill_colours, rows_per_pass
from .perturbation import MaskedBatch, gaussian_blur, hidden_masks, perturb, perturbed_batches
from .curves import aopc, assemble_curves, curves, curves_block
from .generalization import (MODEL_DIMS, RELATIONS, assemble_generalization, generalization, generalization_block,
                             generalization_inputs, relation)
from .own_maps import assemble_own_map_curves, own_map_curves, own_map_inputs

__all__ = ["perturb", "perturbed_batches", "hidden_masks", "curves", "aopc", "own_map_curves", "generalization",
           "relation", "RELATIONS", "MODEL_DIMS", "MaskingConfig", "MaskingError", "MaskingTypeError", "MaskedBatch",
           "gaussian_blur", "road_impute", "RoadCache", "road_cache", "seeded_generator", "hidden_counts", "ORDERS",
           "FILLS", "MODES", "DEFAULT_FRACTIONS", "NEIGHBOUR_WEIGHTS", "PRECISIONS", "BlockScores", "CubeInputs",
           "DEFAULT_BLOCK_SIZE", "fill_colours", "rows_per_pass", "curves_block", "assemble_curves",
           "generalization_inputs", "generalization_block", "assemble_generalization", "own_map_inputs",
           "assemble_own_map_curves"]
