"""ROAD noisy linear imputation (Rong et al. 2022) as sparse linear systems built with vectorised index arithmetic.

Each hidden pixel equals the weighted mean of its in-image 8-neighbours: weight 1/6 for the four direct neighbours
and 1/12 for the four diagonal ones, renormalised over the neighbours that exist (as the ROAD reference code does:
its diagonal is the sum of the weights of the in-image neighbours). Known neighbours go to the right-hand side,
hidden ones stay unknowns, so each mask gives one sparse, symmetric, diagonally dominant system whose three
right-hand sides are the colour channels. All masks of a batch are built in one vectorised pass as one
block-diagonal system; each block (mask) is factorised once with SuperLU (minimum-degree ordering on A + A^T, no
pivoting: the matrix is a symmetric M-matrix) and solved for the three channels at once, and the factorisation is
cached by mask in :data:`road_cache`. A mask that hides every pixel leaves the system singular (nothing to impute
from); :func:`road_impute` returns NaN there and :func:`~lrp_faces.masking.perturb` fills ``fill_value`` or the
mean colour.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import scipy.sparse as sparse
from scipy.sparse.linalg import splu

__all__ = ["NEIGHBOUR_WEIGHTS", "road_impute", "RoadCache", "road_cache"]

NEIGHBOUR_WEIGHTS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
                     (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))
"""(dy, dx, weight) of the 8 neighbours in ROAD's linear imputation."""


class RoadCache:
    """Least-recently-used SuperLU factorisations of ROAD systems, keyed by mask.

    The system matrix depends only on the mask, so a mask that recurs (the same map and fraction evaluated again,
    e.g. on another model) is solved without refactorising. ``max_nonzeros`` bounds the summed size of the stored
    factors (about 12 bytes each); 0 disables the cache.
    """

    def __init__(self, max_nonzeros: int = 2 ** 24):
        self.max_nonzeros = max_nonzeros
        self._factors: OrderedDict[bytes, object] = OrderedDict()
        self._size = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: bytes):
        factor = self._factors.get(key)
        if factor is None:
            self.misses += 1
            return None
        self.hits += 1
        self._factors.move_to_end(key)
        return factor

    def put(self, key: bytes, factor) -> None:
        if factor.nnz > self.max_nonzeros or key in self._factors:
            return
        self._factors[key] = factor
        self._size += factor.nnz
        while self._size > self.max_nonzeros:
            _, old = self._factors.popitem(last=False)
            self._size -= old.nnz

    def clear(self) -> None:
        """Drop every stored factorisation and reset the counters."""
        self._factors.clear()
        self._size = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._factors)

    def __repr__(self) -> str:
        return (f"RoadCache({len(self)} masks, {self._size} of {self.max_nonzeros} nonzeros, hits={self.hits}, "
                f"misses={self.misses})")


road_cache = RoadCache()
"""The cache :func:`road_impute` uses by default."""


def _system(values: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The block-diagonal ROAD system of all masks as CSR arrays, and its right-hand sides.

    ``values`` are the pixels (B, H, W, C) float64 and ``hidden`` the masks (B, H, W). Unknowns are the hidden pixels
    in image-major raster order. Each row holds its in-image hidden neighbours (weight -w) and the diagonal (the
    summed weight of all in-image neighbours) in raster order, so its columns come sorted; the right-hand side is
    the weighted sum of the known neighbours. Everything is computed on the padded pixel grid with 8 shifted views.
    Returns (data, indices, indptr, rhs); the matrix is symmetric, so these are its CSC arrays as well.
    """
    count, height, width = hidden.shape
    stride = width + 2
    size = int(hidden.sum())
    number = np.full((count, height + 2, stride), -1, dtype=np.int64)  # unknown number; -1: known or outside
    number[:, 1:-1, 1:-1][hidden] = np.arange(size)
    image, pixel = np.divmod(np.flatnonzero(hidden), height * width)
    row, column = np.divmod(pixel, width)
    padded = image * ((height + 2) * stride) + (row + 1) * stride + column + 1  # unknowns on the padded grid
    number = number.reshape(-1)
    known = np.zeros((count, height + 2, stride, values.shape[-1]))
    known[:, 1:-1, 1:-1] = np.where(hidden[..., None], 0.0, values)
    inside = np.zeros((height + 2, stride))
    inside[1:-1, 1:-1] = 1.0
    weight_sum = np.zeros((height, width))
    rhs = np.zeros((count, height, width, values.shape[-1]))
    columns = np.empty((size, 9), dtype=np.int64)
    weights = np.empty((size, 9))
    for slot, (dy, dx, weight) in enumerate(NEIGHBOUR_WEIGHTS[:4] + ((0, 0, 0.0),) + NEIGHBOUR_WEIGHTS[4:]):
        if (dy, dx) == (0, 0):  # raster order: the diagonal sits between the neighbours above and below
            continue
        rows, cols = slice(1 + dy, height + 1 + dy), slice(1 + dx, width + 1 + dx)
        weight_sum += weight * inside[rows, cols]
        rhs += weight * known[:, rows, cols]
        columns[:, slot] = number[padded + dy * stride + dx]
        weights[:, slot] = -weight
    columns[:, 4] = np.arange(size)
    weights[:, 4] = weight_sum[row, column]
    present = columns >= 0
    indptr = np.zeros(size + 1, dtype=np.int64)
    np.cumsum(present.sum(1), out=indptr[1:])
    return weights[present], columns[present], indptr, rhs[hidden]


def road_impute(images: np.ndarray, hidden: np.ndarray, cache: RoadCache | None = road_cache) -> np.ndarray:
    """Impute the hidden pixels of each image from its known pixels (noise-free ROAD linear imputation).

    Parameters
    ----------
    images : ndarray (B, C, H, W)
    hidden : ndarray of bool (B, H, W)
        Pixels to impute. A mask that hides every pixel has nothing to impute from; its pixels are returned as NaN
        for the caller to fill.
    cache : RoadCache or None
        Where factorisations are looked up and stored (``None``: no caching).

    Returns
    -------
    ndarray (B, C, H, W) float64
        The images with their hidden pixels replaced by the solution of the linear system.
    """
    count, channels, height, width = images.shape
    hidden = np.ascontiguousarray(hidden, dtype=bool)
    values = np.ascontiguousarray(np.asarray(images).transpose(0, 2, 3, 1), dtype=np.float64)
    data, indices, indptr, rhs = _system(values, hidden)
    bounds = np.concatenate([[0], np.cumsum(hidden.reshape(count, -1).sum(1))])
    solution = np.empty_like(rhs)
    for image in range(count):
        start, stop = bounds[image], bounds[image + 1]
        if start == stop:
            continue
        if stop - start == height * width:  # everything hidden: no boundary values, the system is singular
            solution[start:stop] = np.nan
            continue
        key = f"{height}x{width}:".encode() + np.packbits(hidden[image]).tobytes()
        factor = cache.get(key) if cache is not None else None
        if factor is None:
            low, high = indptr[start], indptr[stop]
            block = sparse.csc_matrix((data[low:high], indices[low:high] - start, indptr[start:stop + 1] - low),
                                      shape=(stop - start, stop - start))
            factor = splu(block, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            if cache is not None:
                cache.put(key, factor)
        solution[start:stop] = factor.solve(rhs[start:stop])
    values[hidden] = solution
    return values.transpose(0, 3, 1, 2)
