"""Vectorised 2-D drawing on batches of images: implicit shapes, anti-aliased coverage, compositing, backgrounds.

Coordinates are normalised: x to the right and y downwards, the image spans [-1, 1] in both. Arrays are batched as
(B, H, W) for scalar fields and (B, H, W, 3) for colour; per-image parameters broadcast as (B, 1, 1).
"""
from __future__ import annotations

import numpy as np

FLOAT = np.float32


def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (1, H, W) in [-1, 1]."""
    axis = ((np.arange(size, dtype=FLOAT) + 0.5) / size * 2.0 - 1.0).astype(FLOAT)
    return axis[None, None, :].repeat(size, 1), axis[None, :, None].repeat(size, 2)


def column(values) -> np.ndarray:
    """Per-image values as (B, 1, 1) float32."""
    return np.asarray(values, dtype=FLOAT).reshape(-1, 1, 1)


def to_object_frame(x, y, shift_x, shift_y, rotation, scale):
    """Map image coordinates into the frame of an object drawn at ``shift``, rotated and scaled."""
    cos, sin = np.cos(rotation).astype(FLOAT), np.sin(rotation).astype(FLOAT)
    dx, dy = (x - shift_x) / scale, (y - shift_y) / scale
    return cos * dx + sin * dy, -sin * dx + cos * dy


def coverage(distance, pixel) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside), about one pixel wide."""
    t = np.clip(0.5 - distance / pixel, 0.0, 1.0)
    return (t * t * (3.0 - 2.0 * t)).astype(FLOAT)


def ellipse(x, y, cx, cy, rx, ry) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (exact on circles, good near the boundary)."""
    px, py = (x - cx) / rx, (y - cy) / ry
    k0 = np.sqrt(px * px + py * py)
    k1 = np.sqrt(px * px / rx ** 2 + py * py / ry ** 2) + 1e-6
    return k0 * (k0 - 1.0) / k1


def box(x, y, cx, cy, half_width, half_height, radius=0.0) -> np.ndarray:
    """Signed distance to an axis-aligned box with rounded corners."""
    qx = np.abs(x - cx) - half_width + radius
    qy = np.abs(y - cy) - half_height + radius
    outside = np.sqrt(np.maximum(qx, 0.0) ** 2 + np.maximum(qy, 0.0) ** 2)
    return outside + np.minimum(np.maximum(qx, qy), 0.0) - radius


def regular_polygon(x, y, radius, sides: int, rotation: float = 0.0) -> np.ndarray:
    """Signed distance (exact inside, near-exact close outside) to a regular polygon centred at the origin."""
    distance = None
    for k in range(sides):
        angle = rotation + 2.0 * np.pi * k / sides - np.pi / 2
        edge = x * np.cos(angle) + y * np.sin(angle)
        distance = edge if distance is None else np.maximum(distance, edge)
    return distance - radius * np.cos(np.pi / sides)


class Painter:
    """Draws shapes given in an object frame onto batched canvases, evaluating them only inside a window.

    ``canvas`` (B, H, W, 3) and ``labels`` (B, H, W) are changed in place; the frame is the per-image similarity
    transform (shift, rotation, scale) of :func:`to_object_frame`.
    """

    def __init__(self, canvas, labels, shift_x, shift_y, rotation, scale):
        self.canvas, self.labels = canvas, labels
        self.size = canvas.shape[1]
        self.shift_x, self.shift_y, self.rotation, self.scale = shift_x, shift_y, rotation, scale
        self.pixel = (2.0 / self.size) / scale
        image_x, image_y = pixel_grid(self.size)
        self.x, self.y = to_object_frame(image_x, image_y, shift_x, shift_y, rotation, scale)

    def window(self, left, right, top, bottom) -> tuple[slice, slice]:
        """Pixel slices (rows, columns) that contain the frame box [left, right] x [top, bottom] in every image."""
        cos, sin = np.cos(self.rotation), np.sin(self.rotation)
        xs, ys = [], []
        for qx in (left, right):
            for qy in (top, bottom):
                xs.append(self.shift_x + self.scale * (cos * qx - sin * qy))
                ys.append(self.shift_y + self.scale * (sin * qx + cos * qy))

        def span(values):
            low = int(np.floor((min(np.min(v) for v in values) + 1.0) / 2.0 * self.size - 0.5)) - 2
            high = int(np.ceil((max(np.max(v) for v in values) + 1.0) / 2.0 * self.size - 0.5)) + 3
            return slice(min(max(low, 0), self.size), min(max(high, 0), self.size))

        return span(ys), span(xs)

    def coordinates(self, window) -> tuple[np.ndarray, np.ndarray]:
        """Frame coordinates (B, h, w) of the pixels in ``window``."""
        return self.x[:, window[0], window[1]], self.y[:, window[0], window[1]]

    def layer(self, window, distance, colour, region: int | None = None, opacity=1.0) -> None:
        """Paint a shape given by its signed distance over ``window``; label its inside as ``region``."""
        paint(self.canvas[:, window[0], window[1]], coverage(distance, self.pixel) * opacity, colour)
        if region is not None:
            self.label(window, distance, region)

    def label(self, window, distance, region: int) -> None:
        """Label every pixel that a shape touches (non-zero coverage) as ``region``, without painting it."""
        label(self.labels[:, window[0], window[1]], distance - 0.5 * self.pixel, region)


def paint(canvas, alpha, colour) -> None:
    """Composite ``colour`` over ``canvas`` (B, H, W, 3) in place with opacity ``alpha`` (B, H, W)."""
    change = np.subtract(colour, canvas, dtype=FLOAT)
    change *= alpha[..., None]
    canvas += change


def label(labels, distance, region: int) -> None:
    """Set ``labels`` to ``region`` where ``distance`` is negative."""
    labels[distance < 0.0] = region


def hsv_to_rgb(hue, saturation, value) -> np.ndarray:
    """Vectorised HSV to RGB, inputs in [0, 1], output (..., 3)."""
    hue = np.asarray(hue) * 6.0
    c = np.asarray(value) * np.asarray(saturation)
    x = c * (1.0 - np.abs(np.mod(hue, 2.0) - 1.0))
    zeros = np.zeros_like(c)
    sector = np.floor(hue).astype(int) % 6
    options = [np.stack(t, -1) for t in ((c, x, zeros), (x, c, zeros), (zeros, c, x), (zeros, x, c), (x, zeros, c),
                                         (c, zeros, x))]
    rgb = np.choose(sector[..., None], options)
    return (rgb + (np.asarray(value) - c)[..., None]).astype(FLOAT)


def cluttered_background(rngs: list[np.random.Generator], x, y, contrast: float = 1.0) -> np.ndarray:
    """Muted backgrounds with a smooth texture and a few random blobs and bars, one random stream per image.

    Returns (B, H, W, 3) float32. ``contrast`` scales the texture and clutter (0 gives flat backgrounds).
    """
    count = len(rngs)
    base = hsv_to_rgb(*np.array([[rng.random(), rng.uniform(0.08, 0.35), rng.uniform(0.35, 0.85)]
                                 for rng in rngs]).T)
    canvas = np.broadcast_to(base[:, None, None, :], (count,) + x.shape[1:] + (3,)).copy()
    waves = np.array([[rng.uniform(1.5, 6.0), rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)]
                      for rng in rngs for _ in range(2)], dtype=FLOAT).reshape(count, 2, 3)
    texture = sum(np.sin(column(waves[:, k, 0]) * (x * np.cos(column(waves[:, k, 1]))
                                                   + y * np.sin(column(waves[:, k, 1]))) + column(waves[:, k, 2]))
                  for k in range(2))
    canvas *= (1.0 + 0.07 * contrast * texture)[..., None]
    pixel = 2.0 / x.shape[-1]
    for shape in range(4):
        params = np.array([[rng.uniform(-1, 1), rng.uniform(-1, 1), rng.uniform(0.06, 0.35), rng.uniform(0.06, 0.35),
                            rng.random(), rng.random(), rng.uniform(0.2, 0.8), rng.uniform(0.4, 0.9) * contrast]
                           for rng in rngs], dtype=FLOAT)
        cx, cy, rx, ry = (column(params[:, k]) for k in range(4))
        distance = ellipse(x, y, cx, cy, rx, ry) if shape % 2 else box(x, y, cx, cy, rx, ry * 0.4)
        colour = hsv_to_rgb(params[:, 4], params[:, 5] * 0.4, params[:, 6])[:, None, None, :]
        paint(canvas, coverage(distance, pixel) * column(params[:, 7]), colour)
    return canvas


def pixel_noise(rngs: list[np.random.Generator], shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Gaussian pixel noise (B, *shape), one stream per image."""
    return np.stack([rng.standard_normal(shape, dtype=np.float32) for rng in rngs]) * FLOAT(sigma)
