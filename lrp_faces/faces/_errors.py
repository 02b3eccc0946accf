"""The errors of face data: one definition each, used by the loaders, the image reader and the data interface."""
from ..errors import LRPFacesError

__all__ = ["DatasetError", "DataTypeError"]


class DatasetError(LRPFacesError, ValueError):
    """A face data set that cannot be built or read: bad files, labels or layout."""


class DataTypeError(LRPFacesError, TypeError):
    """A value given as a data set that is none of the kinds lrp_faces reads (see :mod:`lrp_faces.faces.interface`)."""
