"""Masking settings, their validation, errors and seeded random streams."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
from ..errors import LRPFacesError

__all__ = ["MaskingConfig", "MaskingError", "MaskingTypeError", "ORDERS", "FILLS", "MODES", "DEFAULT_FRACTIONS",
           "seeded_generator", "hidden_counts"]

ORDERS = ("morf", "lerf", "random")
"""Hiding orders: most relevant first, least relevant first (the exact reverse of ``morf``), seeded random."""
FILLS = ("mean", "zero", "blur", "noise", "road")
"""What a hidden pixel becomes: a colour, black, a blurred copy, uniform noise, or ROAD noisy linear imputation."""
MODES = ("remove", "keep")
"""``remove`` hides the first pixels of the order; ``keep`` keeps them and hides from the end of the order."""
DEFAULT_FRACTIONS = tuple(float(value) for value in np.linspace(0.0, 1.0, 21))
_STREAMS = {"order": 0, "noise": 1, "road": 2, "bootstrap": 3}


class MaskingError(LRPFacesError, ValueError):
    """Invalid masking input or settings: shapes, NaN relevance, fractions, names, patch size, cube/zoo mismatch."""


class MaskingTypeError(LRPFacesError, TypeError):
    """A masking input of the wrong type."""


def seeded_generator(seed: int, stream: str) -> torch.Generator:
    """A CPU ``torch.Generator`` for one random stream (``order``, ``noise``, ``road``, ``bootstrap``) of ``seed``.

    Streams are independent: the generator is seeded with ``numpy.random.SeedSequence((seed, stream_number))``.
    All random draws of a call are made at once, for all N images, so results do not depend on batching.
    """
    if stream not in _STREAMS:
        raise MaskingError(f"stream must be one of {tuple(_STREAMS)}, got {stream!r}")
    state = np.random.SeedSequence((int(seed), _STREAMS[stream])).generate_state(1, np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


def hidden_counts(fractions: Sequence[float], units: int) -> np.ndarray:
    """Number of hidden pixels or patches per fraction: ``round(fraction * units)``, rounding half to even."""
    return np.rint(np.asarray(fractions, dtype=np.float64) * units).astype(np.int64)


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
        Shares of pixels (or patches) hidden, strictly increasing in [0, 1]; 0 is the original image and 1 hides
        everything, in both modes. Each hides exactly ``round(fraction * units)`` units (half to even).
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
        ``remove`` hides the first units of the order; ``keep`` keeps the first ``1 - fraction`` of them and
        hides the rest (so ``keep`` with ``morf`` equals ``remove`` with ``lerf``).
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
    The fields are the keyword arguments of :func:`perturb`, :func:`curves` and :func:`generalization`:

    >>> config = MaskingConfig(order="lerf", fill="blur", patch=8)
    >>> result = curves(model, images, labels, relevance, **config.to_dict())  # doctest: +SKIP
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

    def attrs(self) -> dict[str, Any]:
        """NetCDF-safe attributes for result datasets (``fill_value`` as JSON)."""
        return {"order": self.order, "fill": self.fill, "patch": self.patch, "mode": self.mode, "seed": self.seed,
                "fill_value": json.dumps(self.fill_value), "blur_sigma": json.dumps(self.blur_sigma),
                "road_noise": self.road_noise}
