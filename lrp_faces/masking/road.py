"""ROAD noisy linear imputation (Rong et al. 2022): one sparse symmetric system per mask, solved exactly.

Each hidden pixel equals the weighted mean of its in-image 8-neighbours: weight 1/6 for the four direct neighbours
and 1/12 for the four diagonal ones, renormalised over the neighbours that exist (as the ROAD reference code does:
its diagonal is the sum of the weights of the in-image neighbours). Known neighbours go to the right-hand side,
hidden ones stay unknowns, so each mask gives one sparse, symmetric, irreducibly diagonally dominant M-matrix (SPD
as soon as one pixel is known), and the three colour channels are three right-hand sides.

The system is a discrete Laplace equation on the pixel grid, so it is solved by a sparse Cholesky factorisation in
a nested-dissection order that is fixed per image size: the grid is cut recursively by one-pixel lines (a line
separates 8-neighbours), and each cut's hidden pixels are eliminated after both halves, in dense fronts (a
multifrontal factorisation; George 1973, Liu 1992). Only the fronts' sizes depend on the mask. The factorisation
(rank-4 blocked) and the two triangular solves are compiled with numba: O(n^1.5) operations for n hidden pixels and
no per-column interpreter or library overhead, which is what makes it about ten times faster than one SuperLU
``spsolve`` per image (``benchmarks/perf_masking.py``; SuperLU itself spends most of its time in per-column
bookkeeping on systems this small). Iterative solvers lose on a CPU: the hidden blobs of MoRF masks are tens of
pixels wide, so conjugate gradients need hundreds of stencil passes for 1e-8, and a pass over a batch costs about
as much as a direct solve. Without numba, SuperLU factorises each mask instead: numba can lag new Python releases,
and the fallback keeps lrp-faces importable and correct (only slower) where numba is missing or fails to import.

The factorisation depends only on the mask; :data:`road_cache` keeps recent ones of masks that recur (the same map
and fraction evaluated again), which then cost only the two triangular solves. A mask that hides every pixel leaves
the system singular (nothing to impute from); :func:`road_impute` returns NaN there and
:func:`~lrp_faces.masking.perturb` fills ``fill_value`` or the mean colour.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

from .config import MaskingError
from ._road_cholesky import (Factorisation, backward_substitution, dissection_plan, factorise, forward_substitution,
                             thread_workspace)

try:
    import numba
except ImportError:  # pragma: no cover - the SuperLU fallback is tested by switching numba off
    numba = None

__all__ = ["NEIGHBOUR_WEIGHTS", "road_impute", "RoadCache", "road_cache"]

NEIGHBOUR_WEIGHTS = ((-1, -1, 1 / 12), (-1, 0, 1 / 6), (-1, 1, 1 / 12), (0, -1, 1 / 6), (0, 1, 1 / 6),
                     (1, -1, 1 / 12), (1, 0, 1 / 6), (1, 1, 1 / 12))
"""(dy, dx, weight) of the 8 neighbours in ROAD's linear imputation."""


class RoadCache:
    """Least-recently-used factorisations of ROAD systems, keyed by mask.

    The system matrix depends only on the mask, so a mask that recurs (the same map and fraction evaluated again,
    e.g. on another model) is solved without refactorising. A factorisation is stored the second time its mask is
    seen: storing one costs about a third of computing it (a copy into fresh memory), which masks seen only once
    (most of them, in :func:`~lrp_faces.masking.curves` and :func:`~lrp_faces.masking.generalization`) should not
    pay. ``max_nonzeros`` bounds the summed size of the stored factors (stored numbers, 8 bytes each); 0 disables
    the cache. ``max_seen`` bounds the masks remembered as seen once.
    """

    def __init__(self, max_nonzeros: int = 2 ** 24, max_seen: int = 2 ** 16):
        self.max_nonzeros = max_nonzeros
        self.max_seen = max_seen
        self._factors: OrderedDict[bytes, object] = OrderedDict()
        self._seen: OrderedDict[int, None] = OrderedDict()  # hashes of masks seen once
        self._size = 0
        self.hits = 0
        self.misses = 0

    def admit(self, key: bytes) -> bool:
        """Whether to store the factorisation of a mask that missed: True if it was seen before, else remember it."""
        digest = hash(key)
        if digest in self._seen:
            del self._seen[digest]
            return True
        self._seen[digest] = None
        if len(self._seen) > self.max_seen:
            self._seen.popitem(last=False)
        return False

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
        self._seen.clear()
        self._size = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._factors)

    def __repr__(self) -> str:
        return (f"RoadCache({len(self)} masks, {self._size} of {self.max_nonzeros} nonzeros, hits={self.hits}, "
                f"misses={self.misses})")


road_cache = RoadCache()
"""The cache :func:`road_impute` uses by default."""


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
    images = np.asarray(images)
    if images.ndim != 4:
        raise MaskingError(f"images must have shape (B, C, H, W) (a batch of images), got {images.shape}")
    count, channels, height, width = images.shape
    hidden = np.ascontiguousarray(hidden, dtype=bool)
    if hidden.shape != (count, height, width):
        raise MaskingError(f"hidden must have shape {(count, height, width)} (one (H, W) mask per image), got "
                           f"{hidden.shape}")
    if numba is None:
        return _superlu_impute(images, hidden, cache)
    result = np.array(images, dtype=np.float64).reshape(count, channels, height * width)
    masks = hidden.reshape(count, height * width)
    plan = dissection_plan(height, width, NEIGHBOUR_WEIGHTS)
    workspace = thread_workspace(plan, channels)
    for image, mask in zip(result, masks):
        if not mask.any():
            continue
        if mask.all():  # no boundary values: the system is singular
            image[:] = np.nan
            continue
        key = f"{height}x{width}:".encode() + np.packbits(mask).tobytes() if cache is not None else b""
        factor = cache.get(key) if cache is not None else None
        if factor is None:  # factorise, and substitute forward on the way
            factor = factorise(image, mask, plan, workspace)
            if cache is not None and cache.admit(key):
                cache.put(key, Factorisation(*(array.copy() for array in factor)))
        else:
            forward_substitution(image, mask, plan.children, plan.neighbours, factor.panels, factor.pixels,
                                 factor.table, workspace.position, workspace.rhs, workspace.rhs_stack,
                                 workspace.entries, plan.weight)
        backward_substitution(image, factor.panels, factor.pixels, factor.table, workspace.rhs)
    return result.reshape(count, channels, height, width)


# ------------------------------------------------------------------------------------------ SuperLU fallback
def _superlu_impute(images: np.ndarray, hidden: np.ndarray, cache: RoadCache | None) -> np.ndarray:
    """The same systems, each mask factorised by SuperLU (used when numba is not installed)."""
    import scipy.sparse as sparse
    from scipy.sparse.linalg import splu

    count, channels, height, width = images.shape
    values = np.ascontiguousarray(images.transpose(0, 2, 3, 1), dtype=np.float64)
    data, indices, indptr, rhs = _csr_system(values, hidden)
    bounds = np.concatenate([[0], np.cumsum(hidden.reshape(count, -1).sum(1))])
    solution = np.empty_like(rhs)
    for image in range(count):
        start, stop = bounds[image], bounds[image + 1]
        if start == stop:
            continue
        if stop - start == height * width:  # everything hidden: no boundary values, the system is singular
            solution[start:stop] = np.nan
            continue
        key = f"superlu:{height}x{width}:".encode() + np.packbits(hidden[image]).tobytes()
        factor = cache.get(key) if cache is not None else None
        if factor is None:
            low, high = indptr[start], indptr[stop]
            block = sparse.csc_matrix((data[low:high], indices[low:high] - start, indptr[start:stop + 1] - low),
                                      shape=(stop - start, stop - start))
            factor = splu(block, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
            if cache is not None and cache.admit(key):
                cache.put(key, factor)
        solution[start:stop] = factor.solve(rhs[start:stop])
    values[hidden] = solution
    return values.transpose(0, 3, 1, 2)


def _csr_system(values: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The block-diagonal ROAD system of all masks as CSR arrays, and its right-hand sides.

    ``values`` are the pixels (B, H, W, C) float64 and ``hidden`` the masks (B, H, W). Unknowns are the hidden pixels
    in image-major raster order; each row holds its in-image hidden neighbours (weight -w) and the diagonal (the
    summed weight of all in-image neighbours), columns sorted; the right-hand side is the weighted sum of the known
    neighbours. Built on the padded pixel grid with 8 shifted views. The matrix is symmetric, so these are its CSC
    arrays as well.
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
