"""Sparse Cholesky solver of the ROAD systems (private to :mod:`lrp_faces.masking`; :func:`road_impute` is its API).

It solves, for one mask at a time, the symmetric positive definite system of an 8-neighbour stencil on the pixel
grid (the hidden pixels are the unknowns; the colour channels are the right-hand sides) by a multifrontal Cholesky
factorisation (George 1973, Liu 1992) in a nested-dissection order fixed per image size and stencil: the grid is cut
recursively by one-pixel lines through the middle of its longer side, and each cut's hidden pixels are eliminated
after both halves, in dense fronts; only the fronts' sizes depend on the mask. The factorisation (rank-4 blocked) and
the two triangular substitutions are compiled with numba (``cache=True``), because the fronts are small and many: in
Python or through a sparse library, per-column overhead would dominate the arithmetic. Without numba the kernels stay
plain Python and :mod:`lrp_faces.masking.road` uses SuperLU instead.
"""
from __future__ import annotations

import functools
import threading
from typing import NamedTuple

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - road.py then solves with SuperLU and never calls these kernels
    numba = None

__all__ = ["DissectionPlan", "dissection_plan", "Workspace", "thread_workspace", "Factorisation", "factorise",
           "forward_substitution", "backward_substitution"]

_LEAF_PIXELS = 25  # regions this small are not cut further: all their pixels form one front


# ------------------------------------------------------------------------------------- nested dissection plan
class DissectionPlan(NamedTuple):
    """A nested-dissection tree of the pixel grid in postorder, its stencil, and bounds on its factorisation's sizes."""

    separators: np.ndarray       # pixels of every node's separator, node after node
    separator_start: np.ndarray  # (nodes + 1,) where each node's separator starts in ``separators``
    children: np.ndarray         # (nodes,) number of children (0, 1 or 2): the top entries of the stack
    rank: np.ndarray             # (H * W,) each pixel's place in the elimination order (in ``separators``)
    neighbours: np.ndarray       # (H * W, 8) int32: the pixel at each of the stencil's offsets, -1 outside
    weight: np.ndarray           # (8,) the stencil's weights, in the order of ``neighbours``
    weight_sum: np.ndarray       # (H * W,) the summed weight of each pixel's in-image neighbours (the diagonal)
    panel_capacity: int          # sum over nodes of separator x front, with every pixel hidden
    pixel_capacity: int          # sum over nodes of the front size
    stack_capacity: int          # the most boundary^2 waiting on the stack at once
    boundary_capacity: int       # the most boundary pixels waiting on the stack at once
    front_capacity: int          # the largest front


@functools.lru_cache(maxsize=16)
def dissection_plan(height: int, width: int, stencil: tuple[tuple[int, int, float], ...],
          leaf_pixels: int = _LEAF_PIXELS) -> DissectionPlan:
    """Cut the grid recursively through the middle of its longer side by a one-pixel line, down to small leaves.

    ``stencil`` holds the (dy, dx, weight) of the 8 neighbours (offsets of at most one pixel, so that a one-pixel
    line separates). A node's front lies within its separator and the enclosing cuts around its region (its ring):
    with every pixel hidden, that is its Cholesky structure, so the sizes with every pixel hidden bound those of any
    mask.
    """
    separators, rings, children = [], [], []

    def ring_size(top, bottom, left, right):
        outer = (min(bottom + 1, height) - max(top - 1, 0)) * (min(right + 1, width) - max(left - 1, 0))
        return outer - (bottom - top) * (right - left)

    def cut(top, bottom, left, right):
        rows, columns = bottom - top, right - left
        if rows <= 0 or columns <= 0:
            return 0
        if rows * columns <= leaf_pixels:
            ys, xs = np.mgrid[top:bottom, left:right]
            separator, kids = (ys * width + xs).ravel(), 0
        elif columns >= rows:
            middle = left + columns // 2
            kids = cut(top, bottom, left, middle) + cut(top, bottom, middle + 1, right)
            separator = np.arange(top, bottom) * width + middle
        else:
            middle = top + rows // 2
            kids = cut(top, middle, left, right) + cut(middle + 1, bottom, left, right)
            separator = middle * width + np.arange(left, right)
        separators.append(separator)
        rings.append(ring_size(top, bottom, left, right))
        children.append(kids)
        return 1

    cut(0, height, 0, width)
    pending, stack_capacity, boundary_capacity = [], 0, 0  # the most the stack ever holds, every pixel hidden
    for ring, kids in zip(rings, children):
        del pending[len(pending) - kids:]
        pending.append(ring)
        stack_capacity = max(stack_capacity, sum(size * size for size in pending))
        boundary_capacity = max(boundary_capacity, sum(pending))
    separator_sizes = np.array([len(separator) for separator in separators])
    rings = np.array(rings)
    fronts = separator_sizes + rings
    order = np.concatenate(separators).astype(np.int64)
    rank = np.empty(height * width, dtype=np.int64)
    rank[order] = np.arange(height * width)
    offset_ys = np.array([dy for dy, _, _ in stencil], dtype=np.int64)
    offset_xs = np.array([dx for _, dx, _ in stencil], dtype=np.int64)
    weight = np.array([value for _, _, value in stencil])
    ys, xs = np.divmod(np.arange(height * width), width)
    neighbour_ys, neighbour_xs = ys[:, None] + offset_ys, xs[:, None] + offset_xs
    inside = (neighbour_ys >= 0) & (neighbour_ys < height) & (neighbour_xs >= 0) & (neighbour_xs < width)
    neighbours = np.where(inside, neighbour_ys * width + neighbour_xs, -1).astype(np.int32)
    return DissectionPlan(order, np.concatenate([[0], np.cumsum(separator_sizes)]).astype(np.int64),
                 np.array(children, dtype=np.int64), rank, neighbours, weight, inside @ weight,
                 int((separator_sizes * fronts).sum()), int(fronts.sum()), stack_capacity, boundary_capacity,
                 int(fronts.max()))


_workspaces = threading.local()


def thread_workspace(plan: DissectionPlan, channels: int) -> Workspace:
    """This thread's scratch arrays for a grid and channel count, kept between calls (their pages stay mapped)."""
    cached = getattr(_workspaces, "last", None)
    if cached is None or cached[0] is not plan or cached[1] != channels:
        cached = _workspaces.last = (plan, channels, Workspace(plan, channels))
    return cached[2]


class Workspace:
    """Scratch arrays of the factorisation and the substitutions, reused for every mask."""

    def __init__(self, plan: DissectionPlan, channels: int):
        nodes = len(plan.children)
        self.position = np.full(len(plan.rank), -1, dtype=np.int64)  # a pixel's place in the current front
        self.front = np.empty(plan.front_capacity * plan.front_capacity)
        self.zero = np.zeros(plan.front_capacity)
        self.local = np.empty(plan.front_capacity, dtype=np.int64)
        self.stack = np.empty(plan.stack_capacity)  # the children's Schur complements, waiting for their parent
        self.entries = np.empty((nodes, 4), dtype=np.int64)
        self.panels = np.empty(plan.panel_capacity)
        self.pixels = np.empty(plan.pixel_capacity, dtype=np.int64)
        self.table = np.empty((nodes, 4), dtype=np.int64)
        self.rhs = np.empty((channels, plan.front_capacity))
        self.rhs_stack = np.empty((channels, plan.boundary_capacity))


class Factorisation(NamedTuple):
    """The Cholesky factor of one mask's system, node by node."""

    panels: np.ndarray  # per node, the factor's columns of its pivots, each from the diagonal down its front
    pixels: np.ndarray  # per node, its front: the hidden pixels it eliminates (pivots), then its boundary
    table: np.ndarray   # (nodes, 4): where its panel starts, where its front starts, pivots, front size

    @property
    def nnz(self) -> int:
        return len(self.panels) + len(self.pixels) + self.table.size


def factorise(image: np.ndarray, mask: np.ndarray, plan: DissectionPlan, workspace: Workspace) -> Factorisation:
    """Factorise one mask's system and substitute ``image`` (C, H * W) forward; the factor lives in ``workspace``."""
    panels, pixels = _factorise_kernel(image, mask, plan.separators, plan.separator_start, plan.children, plan.rank,
                                       plan.neighbours, plan.weight_sum, workspace.position, workspace.front,
                                       workspace.zero, workspace.local, workspace.stack, workspace.entries,
                                       workspace.panels, workspace.pixels, workspace.table, workspace.rhs,
                                       workspace.rhs_stack, plan.weight)
    if panels < 0:  # pragma: no cover - the matrix is SPD whenever a pixel is known
        raise RuntimeError("ROAD system is not positive definite; this is a bug in lrp_faces.masking.road")
    return Factorisation(workspace.panels[:panels], workspace.pixels[:pixels], workspace.table)


# ------------------------------------------------------------------------------------------- compiled kernels
# Fronts are dense symmetric matrices over a node's hidden pixels (its pivots first, then its boundary in elimination
# order), stored by columns of the lower triangle: row j of the array holds entries (i, j), i >= j. Channels are the
# right-hand sides. Postorder keeps every node's children on top of a stack of Schur complements.
def _jit(function):
    if numba is None:  # pragma: no cover
        return function
    return numba.njit(cache=True, error_model="numpy", nogil=True)(function)


def _jit_reassociating(function):
    if numba is None:  # pragma: no cover
        return function
    return numba.njit(cache=True, error_model="numpy", nogil=True, fastmath={"reassoc", "contract"})(function)


@_jit_reassociating
def _dot(left, right):  # pragma: no cover - compiled
    """Sum of products, reassociated (vectorised): deterministic, but not in sequential order."""
    total = 0.0
    for i in range(len(left)):
        total += left[i] * right[i]
    return total


@_jit_reassociating
def _backward_node3(panels, base, pivots, size, red, green, blue):  # pragma: no cover - compiled
    """Back substitution of a node's pivots for three channels at once (one pass over each column)."""
    for j in range(pivots - 1, -1, -1):
        column = base + j * size - (j * (j - 1)) // 2
        below = panels[column + 1:column + size - j]
        red_below, green_below, blue_below = red[j + 1:size], green[j + 1:size], blue[j + 1:size]
        r = g = b = 0.0
        for i in range(size - j - 1):
            factor = below[i]
            r += factor * red_below[i]
            g += factor * green_below[i]
            b += factor * blue_below[i]
        pivot = panels[column]
        red[j] = (red[j] - r) / pivot
        green[j] = (green[j] - g) / pivot
        blue[j] = (blue[j] - b) / pivot


@_jit
def _eliminate(front, pivots, size, zero):  # pragma: no cover - compiled
    """Partial Cholesky of a front's first ``pivots`` columns; the rest becomes their Schur complement.

    Columns are factorised four at a time, each block updating every later column in one pass (a rank-4 update,
    a quarter of the memory traffic of rank-1 updates). ``zero`` stands in for missing columns of the last block.
    Returns False on a non-positive pivot.
    """
    end = np.uint64(size)
    for block in range(0, pivots, 4):
        block_end = min(block + 4, pivots)
        for j in range(block, block_end):  # the block's own columns, one by one
            column = front[j]
            pivot = column[j]
            if not pivot > 0.0:
                return False
            pivot = np.sqrt(pivot)
            column[j] = pivot
            inverse = 1.0 / pivot
            for i in range(np.uint64(j + 1), end):
                column[i] *= inverse
            for k in range(j + 1, block_end):
                value = column[k]
                target = front[k]
                for i in range(np.uint64(k), end):
                    target[i] -= column[i] * value
        first = front[block]
        second = front[block + 1] if block + 1 < block_end else zero
        third = front[block + 2] if block + 2 < block_end else zero
        fourth = front[block + 3] if block + 3 < block_end else zero
        for k in range(block_end, size):  # every later column, in one pass per block
            a, b, c, d = first[k], second[k], third[k], fourth[k]
            target = front[k]
            for i in range(np.uint64(k), end):
                target[i] -= first[i] * a + second[i] * b + third[i] * c + fourth[i] * d
    return True


@_jit
def _start_rhs(image, mask, neighbours, pixels, start, pivots, size, rhs, weight):  # pragma: no cover - compiled
    """A front's right-hand sides: the weighted known neighbours of its pivots; 0 on its boundary."""
    for c in range(image.shape[0]):
        for k in range(size):
            rhs[c, k] = 0.0
    for j in range(pivots):
        around = neighbours[pixels[start + j]]
        for d in range(8):
            neighbour = around[d]
            if neighbour >= 0 and not mask[neighbour]:
                for c in range(image.shape[0]):
                    rhs[c, j] += weight[d] * image[c, neighbour]


@_jit
def _add_children_rhs(rhs, rhs_stack, entries, first, top, pixels, position):  # pragma: no cover - compiled
    """Add the children's forward-substituted boundary values (stack entries ``first`` to ``top``) to the front's."""
    for entry in range(first, top):
        boundary_start, boundary, offset = entries[entry, 1], entries[entry, 2], entries[entry, 3]
        for k in range(boundary):
            row = position[pixels[boundary_start + k]]
            for c in range(rhs.shape[0]):
                rhs[c, row] += rhs_stack[c, offset + k]


@_jit
def _forward_node(image, panels, base, pixels, start, pivots, size, rhs):  # pragma: no cover - compiled
    """Forward substitution through a node's panel: its pivots' values go to ``image``, the rest stays in rhs."""
    column = base
    if rhs.shape[0] == 3:  # the usual RGB: one pass over each column for the three channels
        red, green, blue = rhs[0], rhs[1], rhs[2]
        for j in range(pivots):
            pivot = panels[column]
            r, g, b = red[j] / pivot, green[j] / pivot, blue[j] / pivot
            red[j], green[j], blue[j] = r, g, b
            below = panels[column + 1:column + size - j]
            red_below, green_below, blue_below = red[j + 1:size], green[j + 1:size], blue[j + 1:size]
            for i in range(size - j - 1):
                factor = below[i]
                red_below[i] -= factor * r
                green_below[i] -= factor * g
                blue_below[i] -= factor * b
            column += size - j
    else:
        for j in range(pivots):
            below = panels[column + 1:column + size - j]  # the factor's column j below the diagonal
            for c in range(rhs.shape[0]):
                value = rhs[c, j] / panels[column]
                rhs[c, j] = value
                target = rhs[c, j + 1:size]
                for i in range(size - j - 1):
                    target[i] -= below[i] * value
            column += size - j
    for j in range(pivots):
        for c in range(rhs.shape[0]):
            image[c, pixels[start + j]] = rhs[c, j]


@_jit
def _factorise_kernel(image, mask, separators, separator_start, children, rank, neighbours, weight_sum, position,
                      storage, zero, local, stack, entries, panels, pixels, table, rhs, rhs_stack,
                      weight):  # pragma: no cover - compiled
    """Multifrontal Cholesky of one mask's system, with the forward substitution of the image's channels.

    Each node's front holds its hidden separator pixels (the pivots), then every later pixel coupled to them: those
    of its children's Schur complements and the pivots' hidden neighbours in enclosing cuts. Returns the lengths of
    the panels and the fronts' pixels, or (-1, -1) on a non-positive pivot.
    """
    nodes = len(children)
    top = 0
    stack_used = 0
    rhs_used = 0
    panels_used = 0
    pixels_used = 0
    for node in range(nodes):
        start = pixels_used
        size = 0
        for k in range(separator_start[node], separator_start[node + 1]):
            pixel = separators[k]
            if mask[pixel]:
                pixels[start + size] = pixel
                position[pixel] = size
                size += 1
        pivots = size
        first = top - children[node]
        for entry in range(first, top):  # the children's boundaries ...
            boundary_start, boundary = entries[entry, 1], entries[entry, 2]
            for k in range(boundary):
                pixel = pixels[boundary_start + k]
                if position[pixel] < 0:
                    pixels[start + size] = pixel
                    position[pixel] = size
                    size += 1
        later = separator_start[node + 1]
        for j in range(pivots):  # ... and the pivots' hidden neighbours in enclosing cuts
            around = neighbours[pixels[start + j]]
            for d in range(8):
                neighbour = around[d]
                if neighbour >= 0 and mask[neighbour] and position[neighbour] < 0 and rank[neighbour] >= later:
                    pixels[start + size] = neighbour
                    position[neighbour] = size
                    size += 1
        boundary = size - pivots
        if size == 0:  # nothing hidden around here (nor in the children's boundaries)
            table[node, 0], table[node, 1], table[node, 2], table[node, 3] = panels_used, start, 0, 0
            top = first
            entries[top, 0], entries[top, 1], entries[top, 2], entries[top, 3] = stack_used, start, 0, rhs_used
            top += 1
            continue
        for k in range(boundary):  # the boundary in elimination order (insertion sort: the children's are sorted)
            value = rank[pixels[start + pivots + k]]
            i = k
            while i > 0 and local[i - 1] > value:
                local[i] = local[i - 1]
                i -= 1
            local[i] = value
        for k in range(boundary):  # so every child's boundary maps to increasing places in this front
            pixel = separators[local[k]]
            pixels[start + pivots + k] = pixel
            position[pixel] = pivots + k
        front = storage[:size * size].reshape(size, size)
        end = np.uint64(size)
        for j in range(size):
            column = front[j]
            for i in range(np.uint64(j), end):
                column[i] = 0.0
        for j in range(pivots):  # the matrix's entries in the pivot columns
            pixel = pixels[start + j]
            around = neighbours[pixel]
            column = front[j]
            column[j] = weight_sum[pixel]
            for d in range(8):
                neighbour = around[d]
                if neighbour >= 0 and mask[neighbour]:
                    i = position[neighbour]
                    if i > j:
                        column[i] = -weight[d]
        _start_rhs(image, mask, neighbours, pixels, start, pivots, size, rhs, weight)
        for entry in range(first, top):  # extend-add the children's Schur complements
            offset, boundary_start, child_boundary = entries[entry, 0], entries[entry, 1], entries[entry, 2]
            for k in range(child_boundary):
                local[k] = position[pixels[boundary_start + k]]
            for k in range(child_boundary):
                target = front[local[k]]
                update = stack[offset + k * child_boundary:offset + (k + 1) * child_boundary]
                for i in range(k, child_boundary):
                    target[local[i]] += update[i]
        _add_children_rhs(rhs, rhs_stack, entries, first, top, pixels, position)
        if first < top:
            stack_used, rhs_used = entries[first, 0], entries[first, 3]
        top = first
        if not _eliminate(front, pivots, size, zero):
            return -1, -1
        table[node, 0] = panels_used
        table[node, 1] = start
        table[node, 2] = pivots
        table[node, 3] = size
        for j in range(pivots):
            panels[panels_used:panels_used + size - j] = front[j, j:size]
            panels_used += size - j
        _forward_node(image, panels, table[node, 0], pixels, start, pivots, size, rhs)
        entries[top, 0] = stack_used
        entries[top, 1] = start + pivots
        entries[top, 2] = boundary
        entries[top, 3] = rhs_used
        for k in range(boundary):
            row = stack_used + k * boundary
            stack[row + k:row + boundary] = front[pivots + k, pivots + k:size]
            for c in range(rhs.shape[0]):
                rhs_stack[c, rhs_used + k] = rhs[c, pivots + k]
        stack_used += boundary * boundary
        rhs_used += boundary
        top += 1
        pixels_used += size
        for k in range(size):
            position[pixels[start + k]] = -1
    return panels_used, pixels_used


@_jit
def forward_substitution(image, mask, children, neighbours, panels, pixels, table, position, rhs, rhs_stack, entries,
                    weight):  # pragma: no cover - compiled
    """Forward substitution of the image's channels through a stored factorisation (a cached mask)."""
    top = 0
    used = 0
    for node in range(len(children)):
        base, start, pivots, size = table[node, 0], table[node, 1], table[node, 2], table[node, 3]
        first = top - children[node]
        if size == 0:
            top = first
            entries[top, 1], entries[top, 2], entries[top, 3] = start, 0, used
            top += 1
            continue
        for k in range(size):
            position[pixels[start + k]] = k
        _start_rhs(image, mask, neighbours, pixels, start, pivots, size, rhs, weight)
        _add_children_rhs(rhs, rhs_stack, entries, first, top, pixels, position)
        if first < top:
            used = entries[first, 3]
        top = first
        _forward_node(image, panels, base, pixels, start, pivots, size, rhs)
        boundary = size - pivots
        entries[top, 1] = start + pivots
        entries[top, 2] = boundary
        entries[top, 3] = used
        for k in range(boundary):
            for c in range(rhs.shape[0]):
                rhs_stack[c, used + k] = rhs[c, pivots + k]
        used += boundary
        top += 1
        for k in range(size):
            position[pixels[start + k]] = -1


@_jit
def backward_substitution(image, panels, pixels, table, solution):  # pragma: no cover - compiled
    """Back substitution, root first: each node's pivots from its forward values and its (solved) boundary."""
    for node in range(len(table) - 1, -1, -1):
        base, start, pivots, size = table[node, 0], table[node, 1], table[node, 2], table[node, 3]
        if pivots == 0:
            continue
        channels = image.shape[0]
        for c in range(channels):
            values = solution[c]
            for i in range(size):
                values[i] = image[c, pixels[start + i]]
        if channels == 3:
            _backward_node3(panels, base, pivots, size, solution[0], solution[1], solution[2])
        else:
            for c in range(channels):
                values = solution[c]
                for j in range(pivots - 1, -1, -1):
                    column = base + j * size - (j * (j - 1)) // 2
                    values[j] = (values[j] - _dot(panels[column + 1:column + size - j],
                                                  values[j + 1:size])) / panels[column]
        for c in range(channels):
            for j in range(pivots):
                image[c, pixels[start + j]] = solution[c, j]
