"""Image files as float RGB in [0, 1]: by their real bit depth, with transparency and EXIF orientation resolved.

:func:`read_image` is what :class:`~lrp_faces.faces.FaceDataset` uses for every image. The rules:

* **Bit depth.** 8-bit modes (``1``, ``L``, ``P``, ``RGB``, ``CMYK``, ``YCbCr``, ...) are divided by 255. 16-bit
  greyscale (``I;16``, as Pillow opens 16-bit PNG and TIFF) is divided by 65535, and so is ``I`` (32-bit integers)
  when its values fit 16 bits; larger values are an error. ``F`` (32-bit float) is taken as intensities in [0, 1];
  other values are an error. Greyscale is repeated over the three channels. 16-bit colour images are read at 8-bit
  precision, correctly scaled: Pillow has no 16-bit RGB mode.
* **Transparency** (``RGBA``, ``LA``, ``PA``, or a ``P``/``L``/``RGB`` image with a transparent colour) is
  composited over ``alpha_background`` (default white, as an image viewer shows a transparent picture on a page).
  :class:`~lrp_faces.faces.FaceDataset` warns once per data set when it does so.
* **Orientation.** The EXIF orientation tag is applied first, so a portrait photo stays upright.
* **Size.** The shorter side is resized to ``image_size`` (bicubic, antialiased) and the centre is cropped square.
  8-bit images are resized in 8 bits, as before; higher depths are resized in float.

Colour profiles (ICC) are not applied: values are taken as sRGB.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from ._errors import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "WHITE", "LoadedImage", "read_image", "image_problem", "check_background"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
WHITE = (1.0, 1.0, 1.0)
"""The default background of transparent pixels."""
SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
CHECKS = ("verify", "load", "exists")
READ_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)
"""What Pillow raises for a file that is not a readable image (``SyntaxError`` from some decoders' checks)."""


class LoadedImage(NamedTuple):
    """An image read by :func:`read_image`: ``pixels`` (3, S, S) float32 in [0, 1], and whether transparent pixels
    were composited over the background."""

    pixels: torch.Tensor
    composited: bool


def check_background(value) -> tuple[float, float, float]:
    """``value`` as an RGB triple in [0, 1]: a number (grey) or three numbers."""
    values = (value,) * 3 if isinstance(value, (int, float, np.number)) and not isinstance(value, bool) else value
    try:
        triple = tuple(float(channel) for channel in values)
    except (TypeError, ValueError):
        triple = ()
    if len(triple) != 3 or not all(0.0 <= channel <= 1.0 for channel in triple):
        raise DatasetError(f"alpha_background must be an RGB colour in [0, 1]: a number (grey) or three numbers, "
                           f"e.g. (1.0, 1.0, 1.0) for white; got {value!r}")
    return triple


def read_image(path: str | os.PathLike, image_size: int,
               alpha_background: float | Sequence[float] = WHITE) -> LoadedImage:
    """Read an image file as float32 RGB (3, S, S) in [0, 1], S = ``image_size`` (see the module's rules).

    Parameters
    ----------
    path : str or PathLike
    image_size : int
        Side S: the shorter side is resized to S, then the centre is cropped.
    alpha_background : float or (float, float, float)
        The colour transparent pixels are composited over, RGB in [0, 1] (a number is a grey).

    Returns
    -------
    LoadedImage
        ``(pixels, composited)``.

    Raises
    ------
    DatasetError
        Integer values beyond 16 bits, float values outside [0, 1], or a bad ``alpha_background``.
    OSError, PIL.UnidentifiedImageError, ValueError
        The file is missing or is not a readable image (as Pillow reports it).
    """
    background = check_background(alpha_background)
    with Image.open(path) as opened:
        image = ImageOps.exif_transpose(opened)  # a loaded copy, upright
    if image.mode in SIXTEEN_BIT or image.mode in ("I", "F"):
        return LoadedImage(_resized_float(_high_depth_intensity(image, path), image_size), False)
    composited = False
    if image.mode in ALPHA_MODES or "transparency" in image.info:
        image = image.convert("RGBA")
        composited = image.getextrema()[3][0] < 255
        if composited:
            fill = tuple(round(channel * 255) for channel in background) + (255,)
            image = Image.alpha_composite(Image.new("RGBA", image.size, fill), image)
    image = _fitted(image.convert("RGB"), image_size)
    array = np.asarray(image, dtype=np.float32) / 255.0
    return LoadedImage(torch.from_numpy(array.transpose(2, 0, 1).copy()), composited)


def _high_depth_intensity(image: Image.Image, path) -> np.ndarray:
    """A 16-bit, 32-bit integer or float greyscale image as float32 intensities (H, W) in [0, 1]."""
    values = np.asarray(image)
    if image.mode == "F":
        if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
            raise DatasetError(f"image {path}: a 32-bit float image must hold intensities in [0, 1], got values in "
                               f"[{np.nanmin(values):.4g}, {np.nanmax(values):.4g}]")
        return values.astype(np.float32)
    if values.min() < 0 or values.max() > 65535:
        raise DatasetError(f"image {path}: 32-bit integer images are read as 16-bit (0 to 65535), got values in "
                           f"[{values.min()}, {values.max()}]; save it with 8 or 16 bits per channel")
    return (values.astype(np.float64) / 65535.0).astype(np.float32)


def _resized_float(intensity: np.ndarray, image_size: int) -> torch.Tensor:
    """Resize and crop float intensities (H, W) in float, clip the bicubic overshoot, repeat them as RGB."""
    fitted = np.asarray(_fitted(Image.fromarray(intensity), image_size), dtype=np.float32)
    grey = torch.from_numpy(np.clip(fitted, 0.0, 1.0))
    return grey.expand(3, *grey.shape).contiguous()


def _fitted(image: Image.Image, image_size: int) -> Image.Image:
    """The shorter side resized to ``image_size`` (bicubic, antialiased), then the centre cropped square."""
    width, height = image.size
    factor = image_size / min(width, height)
    new_size = (max(image_size, round(width * factor)), max(image_size, round(height * factor)))
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    left, top = (new_size[0] - image_size) // 2, (new_size[1] - image_size) // 2
    return image.crop((left, top, left + image_size, top + image_size))


def image_problem(file: os.PathLike, check: str) -> str | None:
    """Why ``file`` cannot be used as an image, or None.

    ``check``: ``"exists"`` only looks for the file, ``"verify"`` runs Pillow's ``verify()`` (fast; catches
    non-images and broken PNGs), ``"load"`` decodes it fully (slow; catches everything, e.g. truncated JPEGs).
    """
    if check not in CHECKS:
        raise DatasetError(f"check must be one of {CHECKS}, got {check!r}")
    file = os.fspath(file)
    if not os.path.isfile(file):
        return "file not found" if not os.path.exists(file) else "not a regular file"
    if check == "exists":
        return None
    try:
        with Image.open(file) as image:
            if check == "verify":
                image.verify()
            else:
                image.load()
    except READ_ERRORS as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    return None
