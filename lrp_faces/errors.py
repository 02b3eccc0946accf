"""The root of every error lrp_faces raises on purpose.

Every package error derives from :class:`LRPFacesError` and keeps its builtin parent (``ValueError`` for bad
values, files and settings, ``TypeError`` for inputs of the wrong type), so ``except ValueError`` still works and
``except LRPFacesError`` tells a user's mistake from a bug:

>>> from lrp_faces import attribute, vgg16
>>> from lrp_faces.errors import LRPFacesError
>>> import torch
>>> try:
...     attribute(vgg16(num_classes=2, width=1 / 16, classifier_width=8, pool_size=1), torch.rand(1, 1, 32, 32))
... except LRPFacesError as error:
...     print(type(error).__name__, isinstance(error, ValueError))
InputError True
"""
from __future__ import annotations

__all__ = ["LRPFacesError", "LRPFacesWarning"]


class LRPFacesError(Exception):
    """Base of every lrp_faces error: input, settings or files that the user can fix; the message says how."""


class LRPFacesWarning(UserWarning):
    """Base of lrp_faces warnings: results that are computed but deserve a second look."""
