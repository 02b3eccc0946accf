"""Synthetic objects (shapes crossed with textures) on cluttered backgrounds: the demo's stand-in for ImageNet."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from . import _draw as draw
from ._draw import FLOAT, column
from .synthetic import SyntheticDataError, require_integers
from ._indexing import selected_indices

__all__ = ["SHAPES", "TEXTURES", "OBJECT_REGIONS", "SyntheticObjects", "synthetic_objects", "object_class_names"]

SHAPES = ("circle", "square", "triangle", "star", "ring", "cross", "hexagon", "crescent")
TEXTURES = ("solid", "stripes", "checker", "dots", "waves")
OBJECT_REGIONS = ("background", "object")
MAX_CLASSES = len(SHAPES) * len(TEXTURES)


def object_class_names(n_classes: int) -> tuple[str, ...]:
    """Class k is shape ``SHAPES[k % 8]`` with texture ``TEXTURES[k % 5]``: all 40 pairs differ."""
    return tuple(f"{TEXTURES[k % len(TEXTURES)]}_{SHAPES[k % len(SHAPES)]}" for k in range(n_classes))


RADIUS = 0.5
"""The size of every shape in its own frame (before the per-image scale)."""


def _star(x, y):
    angle = np.arctan2(y, x)
    return np.sqrt(x * x + y * y) - RADIUS * (0.75 + 0.3 * np.cos(5 * angle))


def _cross(x, y):
    return np.minimum(draw.box(x, y, 0.0, 0.0, RADIUS, 0.28 * RADIUS), draw.box(x, y, 0.0, 0.0, 0.28 * RADIUS, RADIUS))


def _crescent(x, y):
    return np.maximum(np.sqrt(x * x + y * y) - RADIUS, 0.8 * RADIUS - np.sqrt((x - 0.45 * RADIUS) ** 2 + y * y))


SHAPE_DISTANCES = {
    "circle": lambda x, y: np.sqrt(x * x + y * y) - RADIUS,
    "square": lambda x, y: draw.box(x, y, 0.0, 0.0, 0.8 * RADIUS, 0.8 * RADIUS),
    "triangle": lambda x, y: draw.regular_polygon(x, y - 0.1, 1.15 * RADIUS, 3),
    "star": _star,
    "ring": lambda x, y: np.abs(np.sqrt(x * x + y * y) - 0.75 * RADIUS) - 0.25 * RADIUS,
    "cross": _cross,
    "hexagon": lambda x, y: draw.regular_polygon(x, y, RADIUS, 6),
    "crescent": _crescent,
}
"""Signed distance (negative inside) of each of :data:`SHAPES` in the object frame, as ``function(x, y)``."""


def _dots(x, y, period):
    offset_x = x - period * np.round(x / period)
    offset_y = y - period * np.round(y / period)
    return (offset_x * offset_x + offset_y * offset_y < (0.3 * period) ** 2).astype(FLOAT)


def _stripes(x, y, period):
    return (np.sin(2 * np.pi / period * x) > 0).astype(FLOAT)


def _checker(x, y, period):
    phase = 2 * np.pi / period
    return ((np.sin(phase * x) > 0) ^ (np.sin(phase * y) > 0)).astype(FLOAT)


def _waves(x, y, period):
    phase = 2 * np.pi / period
    return (np.sin(phase * (y + 0.35 * period * np.sin(phase * x))) > 0).astype(FLOAT)


TEXTURE_WEIGHTS = {"solid": lambda x, y, period: np.zeros_like(x), "stripes": _stripes, "checker": _checker,
                   "dots": _dots, "waves": _waves}
"""Mixing weight (0 = base colour, 1 = second colour) of each of :data:`TEXTURES` in the object frame, as
``function(x, y, period)``."""


def synthetic_objects(n_classes: int, images_per_class: int, size: int = 64, seed: int = 0) -> "SyntheticObjects":
    """Generate textured shapes on cluttered backgrounds, class-major, for pretraining.

    Class k is a (shape, texture) pair (see :func:`object_class_names`); colours, rotation, scale, position,
    texture phase and scale, lighting and background vary per image. Deterministic in its arguments.

    Parameters
    ----------
    n_classes : int
        1 to 40.
    images_per_class : int
    size : int
        Image size in pixels (at least 16).
    seed : int
        Non-negative seed.

    Returns
    -------
    SyntheticObjects
    """
    require_integers(n_classes=(n_classes, 1), images_per_class=(images_per_class, 1), size=(size, 16), seed=(seed, 0))
    if n_classes > MAX_CLASSES:
        raise SyntheticDataError(f"n_classes must be at most {MAX_CLASSES} (shapes x textures), got {n_classes}")
    labels = np.repeat(np.arange(n_classes, dtype=np.int64), images_per_class)
    rngs = [np.random.default_rng([seed, 3, k, j]) for k in range(n_classes) for j in range(images_per_class)]
    images = np.empty((len(labels), 3, size, size), dtype=FLOAT)
    regions = np.empty((len(labels), size, size), dtype=np.uint8)
    batch = max(1, 2 ** 18 // (size * size))
    for start in range(0, len(labels), batch):
        stop = min(len(labels), start + batch)
        canvas, mask = _render_objects(labels[start:stop], rngs[start:stop], size)
        images[start:stop] = canvas.transpose(0, 3, 1, 2)
        regions[start:stop] = mask
    digits = max(3, len(str(images_per_class - 1)))
    image_ids = [f"class{k:02d}_img{j:0{digits}d}" for k in range(n_classes) for j in range(images_per_class)]
    return SyntheticObjects(torch.from_numpy(images), labels, regions, image_ids, size, n_classes)


def _render_objects(labels, rngs, size):
    image_x, image_y = draw.pixel_grid(size)
    canvas = draw.cluttered_background(rngs, image_x, image_y, contrast=0.6)
    regions = np.zeros(canvas.shape[:3], dtype=np.uint8)
    pose = np.array([[rng.uniform(-0.3, 0.3), rng.uniform(-0.3, 0.3), rng.uniform(0, 2 * np.pi),
                      rng.uniform(0.9, 1.4), rng.uniform(0.18, 0.3), rng.uniform(-1, 1), rng.uniform(-1, 1)]
                     for rng in rngs], dtype=FLOAT)
    colours = np.array([[rng.random(), rng.uniform(0.4, 1.0), rng.uniform(0.5, 1.0), rng.uniform(0.3, 0.7),
                         rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.15)] for rng in rngs])
    base = draw.hsv_to_rgb(colours[:, 0], colours[:, 1], colours[:, 2])
    second = draw.hsv_to_rgb((colours[:, 0] + colours[:, 3]) % 1.0, colours[:, 1], np.clip(colours[:, 2] - 0.45, 0, 1))
    painter = draw.Painter(canvas, regions, *(column(pose[:, k]) for k in range(4)))
    for index in np.unique(labels):  # one shape and texture per class, evaluated on the images of that class
        rows = np.flatnonzero(labels == index)
        x, y = painter.x[rows], painter.y[rows]
        distance = SHAPE_DISTANCES[SHAPES[index % len(SHAPES)]](x, y)
        period, offset_x, offset_y = (column(pose[rows, k]) for k in (4, 5, 6))
        weight = TEXTURE_WEIGHTS[TEXTURES[index % len(TEXTURES)]](x + offset_x * period, y + offset_y * period,
                                                                   period)
        colour = base[rows, None, None] + weight[..., None] * (second[rows, None, None] - base[rows, None, None])
        shade = 1.0 - 0.25 * np.clip(distance / 0.5 + 1.0, 0.0, 1.0)  # darker towards the rim: some volume
        alpha = draw.coverage(distance, painter.pixel[rows])
        sub_canvas = canvas[rows]
        draw.paint(sub_canvas, alpha, colour * shade[..., None])
        canvas[rows] = sub_canvas
        regions[rows] = np.where(distance < 0.5 * painter.pixel[rows], 1, regions[rows])  # every pixel it touches
    angle = column(colours[:, 4])
    light = 1.0 + column(colours[:, 5]) * (np.cos(angle) * image_x + np.sin(angle) * image_y)
    canvas *= light[..., None]
    canvas += draw.pixel_noise(rngs, canvas.shape[1:], 0.02)
    return np.clip(canvas, 0.0, 1.0, out=canvas), regions


@dataclass(frozen=True, eq=False)
class SyntheticObjects(torch.utils.data.Dataset):
    """Textured shapes for pretraining; ``dataset[i]`` is ``(image (3, H, W) float32 in [0, 1], class)``.

    The task is ``"object"``; ``regions`` marks the object's pixels (:data:`OBJECT_REGIONS`).
    """

    images: torch.Tensor  #: (N, 3, H, W) float32 in [0, 1]
    object_class: np.ndarray  #: (N,) int64 class indices
    regions: np.ndarray  #: (N, H, W) uint8: 0 background, 1 object
    image_ids: list
    image_size: int
    n_classes: int
    task: str = "object"

    region_names = OBJECT_REGIONS

    def __len__(self) -> int:
        return len(self.image_ids)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.object_class[index])

    def _check(self, task):
        if task not in (None, "object"):
            raise SyntheticDataError(f"synthetic objects have the single task 'object', got {task!r}")

    def labels(self, task: str | None = None) -> np.ndarray:
        """Class indices (N,)."""
        self._check(task)
        return self.object_class

    def num_classes(self, task: str | None = None) -> int:
        """Number of classes."""
        self._check(task)
        return self.n_classes

    def class_names(self, task: str | None = None) -> tuple[str, ...]:
        """Names like ``"stripes_circle"``."""
        self._check(task)
        return object_class_names(self.n_classes)

    def subset(self, indices) -> "SyntheticObjects":
        """The images at ``indices`` (ints or a boolean mask), labels unchanged."""
        indices = selected_indices(len(self), indices)
        return replace(self, images=self.images[torch.from_numpy(indices)], object_class=self.object_class[indices],
                       regions=self.regions[indices], image_ids=[self.image_ids[i] for i in indices])

    def task_mask(self, task: str | None = None) -> np.ndarray:
        """Boolean (N, H, W): the object's pixels."""
        self._check(task)
        return self.regions == 1
