"""Masking settings, their validation, errors and seeded random streams."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from ..errors import LRPFacesError

__all__ = ["MaskingConfig", "MaskingError", "MaskingTypeError", "ORDERS", "FILLS", "MODES", "DEFAULT_FRACTIONS",
           "seeded_generator", "hidden_counts", "masking_config", "check_fractions",
           "unit_count"]

ORDERS = ("morf", "lerf", "random")
"""Hiding orders: most relevant first, least relevant first (the exact reverse of ``morf``), seeded random."""
FILLS = ("mean", "zero", "blur", "noise", "road")
"""What a hidden pixel becomes: a colour, black, a blurred copy, uniform noise, or ROAD noisy linear imputation."""
MODES = ("remove", "keep")
"""``remove`` hides the first ``fraction`` of the order (deletion); ``keep`` keeps it and hides the rest (insertion,
the preservation game)."""
DEFAULT_FRACTIONS = tuple(float(value) for value in np.linspace(0.0, 1.0, 21))
"""0, 0.05, ..., 1 as ``numpy.linspace`` gives them (some print with float noise, e.g. 0.15000000000000002; the clean
decimals would round ``fraction * units`` differently on some grids, e.g. 45 x 45 units, so they are kept)."""
_STREAMS = {"order": 0, "noise": 1, "road": 2, "bootstrap": 3}


class MaskingError(LRPFacesError, ValueError):
    """Invalid masking input or settings: shapes, NaN relevance, fractions, names, patch size, cube/zoo mismatch."""


class MaskingTypeError(LRPFacesError, TypeError):
    """A masking input of the wrong type."""


def seeded_generator(seed: int, stream: str, image: int | None = None) -> torch.Generator:
    """A CPU ``torch.Generator`` for one random stream (``order``, ``noise``, ``road``, ``bootstrap``) of ``seed``.

    Streams are independent: the generator is seeded with ``numpy.random.SeedSequence((seed, stream_number))``, or
    ``SeedSequence((seed, stream_number, image))`` for one image's draws. Masking draws each image's random order,
    noise fill and ROAD noise from its own generator, keyed by the image's position in the images of the call, so
    results do not depend on how images are grouped into batches or blocks.
    """
    if stream not in _STREAMS:
        raise MaskingError(f"stream must be one of {tuple(_STREAMS)}, got {stream!r}")
    entropy = (int(seed), _STREAMS[stream]) if image is None else (int(seed), _STREAMS[stream], int(image))
    state = np.random.SeedSequence(entropy).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def hidden_counts(fractions: Sequence[float], units: int, mode: str = "remove") -> np.ndarray:
    """Number of hidden pixels or patches per fraction.

    ``remove`` hides ``round(fraction * units)`` units and ``keep`` keeps that many, hiding the others; rounding is
    half to even.
    """
    selected = np.rint(np.asarray(fractions, dtype=np.float64) * units).astype(np.int64)
    return selected if _choice("mode", mode, MODES) == "remove" else units - selected


def unit_count(shape: Sequence[int], patch: int) -> int:
    """Pixels or patches of an image of ``shape`` (..., H, W), after checking ``patch`` divides both sides."""
    height, width = int(shape[-2]), int(shape[-1])
    if height % patch or width % patch:
        divisors = [size for size in range(1, min(height, width) + 1) if height % size == 0 and width % size == 0]
        raise MaskingError(f"patch={patch} does not divide the image size {height}x{width}; choose a patch size "
                           f"that divides both, e.g. one of {divisors}")
    return (height // patch) * (width // patch)


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise MaskingError(f"{name} must be one of {choices}, got {value!r}")
    return value


def check_fractions(fractions: Any) -> tuple[float, ...]:
    """Return ``fractions`` as a tuple after checking they are finite, in [0, 1] and strictly increasing."""
    try:
        values = np.asarray(fractions, dtype=np.float64)
    except (TypeError, ValueError):
        raise MaskingTypeError(f"fractions must be a sequence of numbers in [0, 1], got {fractions!r}") from None
    if values.ndim != 1 or values.size == 0:
        raise MaskingError(f"fractions must be a non-empty 1-D sequence, got shape {values.shape}")
    if not np.isfinite(values).all() or values.min() < 0.0 or values.max() > 1.0:
        raise MaskingError(f"fractions must lie in [0, 1], got {values.tolist()}")
    if values.size > 1 and not (np.diff(values) > 0).all():
        raise MaskingError(f"fractions must be strictly increasing, got {values.tolist()}")
    return tuple(float(value) for value in values)


def _colour(value: Any) -> tuple | None:
    """``None``, one RGB colour (3,) or one colour per image (N, 3), as nested tuples of floats."""
    if value is None:
        return None
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise MaskingTypeError(f"fill_value must be a number, an RGB triple or (N, 3) colours, got {value!r}") from None
    if array.ndim == 0:
        array = np.repeat(array, 3)
    if array.shape[-1:] != (3,) or array.ndim > 2 or not np.isfinite(array).all():
        raise MaskingError(f"fill_value must be a finite number, an RGB triple or (N, 3) colours, got shape "
                           f"{array.shape}")
    return tuple(map(float, array)) if array.ndim == 1 else tuple(tuple(map(float, row)) for row in array)


@dataclass(frozen=True)
class MaskingConfig:
    """How images are masked: which pixels (order, patch, mode), how many (fractions) and with what (fill).

    Parameters
    ----------
    fractions : sequence of float
        Strictly increasing in [0, 1]: the shares of pixels (or patches) hidden (``remove``) or kept (``keep``), each
        exactly ``round(fraction * units)`` units (half to even). With ``remove`` 0 is the original image and 1 hides
        everything; with ``keep`` 0 hides everything and 1 is the original.
    order : {"morf", "lerf", "random"}
        Most relevant first (ties: lower pixel index first), its exact reverse, or a seeded random order.
    fill : {"mean", "zero", "blur", "noise", "road"}
        ``mean``: ``fill_value`` or the mean colour of the images; ``zero``: black; ``blur``: a Gaussian-blurred
        copy (``blur_sigma``); ``noise``: uniform noise in [0, 1); ``road``: ROAD noisy linear imputation, in
        [0, 1] pixel space and not clipped (see :mod:`lrp_faces.masking.road`). Noise is one seeded field per
        image, the same at every fraction and for every map, so comparisons between them are paired.
    patch : int
        Side of the square, non-overlapping patches ranked by summed relevance (1: single pixels). It must divide
        the image height and width.
    mode : {"remove", "keep"}
        ``remove`` hides the first ``fraction`` of the order (deletion curves); ``keep`` keeps the first
        ``fraction`` of the order and hides the rest (insertion curves; with ``morf``, the most relevant units stay:
        the preservation game of Fong & Vedaldi 2017). A unit kept at one fraction is hidden by ``remove`` at the
        same fraction.
    seed : int
        Seeds the random order, the noise fill and the ROAD noise.
    fill_value : float, RGB triple or (N, 3), optional
        Colour of the ``mean`` fill (per image if (N, 3)); also what ROAD fills when every pixel is hidden.
    blur_sigma : float, optional
        Standard deviation in pixels of the ``blur`` fill; default ``max(H, W) / 16``.
    road_noise : float
        Standard deviation of the Gaussian noise ROAD adds to imputed pixels (0.01 in the ROAD paper).

    Examples
    --------
    :func:`perturb`, :func:`curves`, :func:`generalization` and :func:`own_map_curves` take a config, and any of its
    fields as keyword arguments that override it:

    >>> from lrp_faces.masking import MaskingConfig, perturb
    >>> config = MaskingConfig(fractions=(0.0, 0.5, 1.0), order="lerf", fill="blur", patch=2)
    >>> config.replace(mode="keep").mode
    'keep'
    >>> images, relevance = torch.rand(2, 3, 8, 8), torch.randn(2, 8, 8)
    >>> by_config = perturb(images, relevance, config, mode="keep")
    >>> by_keywords = perturb(images, relevance, fractions=(0.0, 0.5, 1.0), order="lerf", fill="blur", patch=2,
    ...                       mode="keep")
    >>> torch.equal(by_config, by_keywords)
    True
    """

    fractions: tuple[float, ...] = DEFAULT_FRACTIONS
    order: str = "morf"
    fill: str = "mean"
    patch: int = 1
    mode: str = "remove"
    seed: int = 0
    fill_value: Any = None
    blur_sigma: float | None = None
    road_noise: float = 0.01

    def __post_init__(self):
        object.__setattr__(self, "fractions", check_fractions(self.fractions))
        _choice("order", self.order, ORDERS)
        _choice("fill", self.fill, FILLS)
        _choice("mode", self.mode, MODES)
        for name in ("patch", "seed"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < (name == "patch"):
                raise MaskingError(f"{name} must be an integer >= {int(name == 'patch')}, got {value!r}")
            object.__setattr__(self, name, int(value))
        object.__setattr__(self, "fill_value", _colour(self.fill_value))
        if self.fill_value is not None and self.fill not in ("mean", "road"):
            raise MaskingError(f"fill_value is used by fill='mean' (and by 'road' when everything is hidden), "
                               f"not by fill={self.fill!r}")
        if self.blur_sigma is not None:
            if not np.isfinite(self.blur_sigma) or self.blur_sigma <= 0:
                raise MaskingError(f"blur_sigma must be a positive number of pixels, got {self.blur_sigma!r}")
            object.__setattr__(self, "blur_sigma", float(self.blur_sigma))
        if not np.isfinite(self.road_noise) or self.road_noise < 0:
            raise MaskingError(f"road_noise must be a standard deviation >= 0, got {self.road_noise!r}")
        object.__setattr__(self, "road_noise", float(self.road_noise))

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain data."""
        return asdict(self)

    def replace(self, **changes: Any) -> "MaskingConfig":
        """A copy with some fields changed, checked like a new config."""
        return masking_config(self, changes)

    def attrs(self) -> dict[str, Any]:
        """NetCDF-safe attributes for result datasets (``fill_value`` as JSON)."""
        return {"order": self.order, "fill": self.fill, "patch": self.patch, "mode": self.mode, "seed": self.seed,
                "fill_value": json.dumps(self.fill_value), "blur_sigma": json.dumps(self.blur_sigma),
                "road_noise": self.road_noise}


FIELDS = tuple(field.name for field in dataclasses.fields(MaskingConfig))
"""The names of the masking settings: the keyword arguments every masking function takes besides ``config``."""


def masking_config(config: MaskingConfig | None = None, overrides: Mapping[str, Any] | None = None,
                   default: MaskingConfig | None = None) -> MaskingConfig:
    """``config`` (or ``default``, or the default :class:`MaskingConfig`) with the fields in ``overrides`` replaced.

    Raises
    ------
    MaskingTypeError
        ``config`` is not a MaskingConfig, or an override is not one of its fields.
    """
    if config is None:
        config = default if default is not None else MaskingConfig()
    elif not isinstance(config, MaskingConfig):
        raise MaskingTypeError(f"config must be a MaskingConfig, got {type(config).__name__} ({config!r}); masking "
                               f"settings such as fractions are keyword arguments: {', '.join(FIELDS)}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(FIELDS))
    if unknown:
        raise MaskingTypeError(f"unknown masking setting(s) {unknown}; the settings are {', '.join(FIELDS)}")
    return dataclasses.replace(config, **overrides) if overrides else config
