"""Figures of a study: relevance maps, masking curves, generalisation, similarity, regions, methods and RSA.

Every function takes xarray results (a cube, :func:`lrp_faces.masking.generalization`, the analyses) and returns a
:class:`matplotlib.figure.Figure` built without pyplot, so nothing is left open in pyplot's global state; save it with
``figure.savefig("map.png")``.
"""
from ._common import PlotError, PlotTypeError
from .analysis import method_comparison, region_relevance, rsa_bars, similarity_by_relation
from .maps import relevance_grid
from .masking import asymmetry_heatmap, generalization_by_relation, generalization_heatmap, masking_curves

__all__ = ["relevance_grid", "masking_curves", "generalization_heatmap", "asymmetry_heatmap",
           "generalization_by_relation", "similarity_by_relation", "region_relevance", "method_comparison",
           "rsa_bars", "PlotError", "PlotTypeError"]
