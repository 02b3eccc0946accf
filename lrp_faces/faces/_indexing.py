"""Index handling shared by the data sets."""
import numpy as np


def selected_indices(count: int, indices) -> np.ndarray:
    """Integer positions selected by ``indices`` (integers or a boolean mask of length ``count``; may be empty)."""
    indices = np.asarray(indices)
    if indices.size == 0:
        indices = indices.astype(np.int64)
    return np.arange(count)[indices].reshape(-1)
