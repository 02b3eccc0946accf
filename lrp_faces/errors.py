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
    """Base of every lrp_faces error: input, settings or files that the user can fix; the message says how.

    Examples
    --------
    >>> from lrp_faces.cube import CubeInputError
    >>> from lrp_faces.zoo import UnknownModelError
    >>> [issubclass(error, LRPFacesError) for error in (CubeInputError, UnknownModelError)]
    [True, True]
    >>> issubclass(CubeInputError, ValueError)  # the builtin parent stays
    True
    """


class LRPFacesWarning(UserWarning):
    """Base of lrp_faces warnings: results that are computed but deserve a second look.

    Examples
    --------
    Turn every lrp_faces warning into an error, e.g. in a pipeline that must stop at the first doubtful result:

    >>> import warnings
    >>> from lrp_faces.cube import CubeWarning
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", LRPFacesWarning)
    ...     try:
    ...         warnings.warn("a damaged block was recomputed", CubeWarning)
    ...     except LRPFacesWarning as warning:
    ...         print(type(warning).__name__, warning)
    CubeWarning a damaged block was recomputed
    """
