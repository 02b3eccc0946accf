"""Relevance-based masking: perturbation (orders, patches, fills incl. ROAD), curves, AOPC, cross-model generalisation.

Hide the pixels a relevance map ranks first (or last, or at random), a growing fraction at a time, and measure how
a model's decision degrades: on the model's own maps (validation) or on another model's (generalisation).
"""
from .config import (DEFAULT_FRACTIONS, FILLS, MODES, ORDERS, MaskingConfig, MaskingError, MaskingTypeError,
                     hidden_counts, seeded_generator)
from .road import NEIGHBOUR_WEIGHTS, RoadCache, road_cache, road_impute
from .perturbation import MaskedBatch, gaussian_blur, hidden_masks, perturb, perturbed_batches
from .curves import aopc, curves
from .generalization import MODEL_DIMS, RELATIONS, generalization, relation
from .own_maps import own_map_curves

__all__ = ["perturb", "perturbed_batches", "hidden_masks", "curves", "aopc", "own_map_curves", "generalization",
           "relation", "RELATIONS", "MODEL_DIMS", "MaskingConfig", "MaskingError", "MaskingTypeError", "MaskedBatch",
           "gaussian_blur", "road_impute", "RoadCache", "road_cache", "seeded_generator", "hidden_counts", "ORDERS",
           "FILLS", "MODES", "DEFAULT_FRACTIONS", "NEIGHBOUR_WEIGHTS"]
