"""Analyses of relevance cubes: map similarity across models, relevance per face region, ground-truth metrics,
comparison of attribution methods, and representational similarity with human judgements."""
from ._common import AnalysisError, AnalysisTypeError
from .similarity import METRICS, similarity
from .regions import TEMPLATE_REGIONS, face_template, ground_truth, mass_and_rank_accuracy, region_relevance
from .comparison import (COMPARISON_FRACTIONS, COMPARISON_METRICS, DEFAULT_METHODS, METHOD_DIM, method_comparison,
                         method_unit)
from ._rsa_common import HumanRatingsError, RSAError, RSATypeError
from .rdms import RDM_KINDS, model_rdms, penultimate_features, rdm_from_features
from .human_ratings import STAND_IN_SOURCE, load_human_rdm, stand_in_human_rdm
from .rsa import RSA_METHODS, RSAResult, RSAWarning, compare_with_humans, rsa

__all__ = ["AnalysisError", "AnalysisTypeError", "similarity", "METRICS", "region_relevance",
           "ground_truth", "mass_and_rank_accuracy", "face_template", "TEMPLATE_REGIONS", "method_comparison",
           "method_unit", "DEFAULT_METHODS", "COMPARISON_METRICS", "COMPARISON_FRACTIONS", "METHOD_DIM"]
__all__ += ["rsa", "compare_with_humans", "model_rdms", "rdm_from_features", "penultimate_features", "load_human_rdm",
            "stand_in_human_rdm", "RSAResult", "RSAError", "RSATypeError", "HumanRatingsError", "RSAWarning",
            "RSA_METHODS", "RDM_KINDS", "STAND_IN_SOURCE"]
