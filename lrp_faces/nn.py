"""Preprocessing as a module: every lrp_faces model takes RGB in [0, 1].

A model built or loaded by lrp_faces starts with a :class:`PixelNorm`, so the normalisation a network was trained
with travels with it (:doc:`/concepts/preprocessing`):

>>> import torch
>>> from lrp_faces import vgg16
>>> model = vgg16(num_classes=2, preprocessing=VGGFACE, width=1 / 16, classifier_width=8, pool_size=1)
>>> model.pixel_norm.preprocessing == VGGFACE
True
>>> model(torch.rand(1, 3, 32, 32)).shape  # RGB in [0, 1] in, logits out
torch.Size([1, 2])
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .errors import LRPFacesError

__all__ = ["Preprocessing", "PixelNorm", "IMAGENET", "VGGFACE", "PreprocessingError"]

CHANNEL_ORDERS = ("RGB", "BGR")


class PreprocessingError(LRPFacesError, ValueError):
    """Preprocessing settings that do not describe a normalisation, or images PixelNorm cannot take."""


@dataclass(frozen=True)
class Preprocessing:
    """The pixel normalisation a network was trained with.

    Parameters
    ----------
    mean, std : tuple of float
        Per-channel mean and standard deviation, in the model's own channel order and on the scaled range.
    scale : float
        Factor applied to [0, 1] pixels before the mean is subtracted (255 for Caffe-style models).
    channel_order : {"RGB", "BGR"}
        Channel order the network expects.

    Raises
    ------
    ValueError
        A channel order other than RGB or BGR, not three values per channel, or a std or scale that is not positive.

    Examples
    --------
    >>> caffe = Preprocessing(mean=(103.94, 116.78, 123.68), std=(1.0, 1.0, 1.0), scale=255.0, channel_order="BGR")
    >>> [round(value, 4) for value in caffe.neutral_pixel]  # the RGB pixel that normalises to zero
    [0.485, 0.458, 0.4076]
    >>> Preprocessing.from_dict(caffe.to_dict()) == caffe
    True
    """

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    scale: float = 1.0
    channel_order: str = "RGB"

    def __post_init__(self):
        _check_preprocessing(self.mean, self.std, self.scale, self.channel_order)
        object.__setattr__(self, "mean", tuple(float(value) for value in self.mean))
        object.__setattr__(self, "std", tuple(float(value) for value in self.std))
        object.__setattr__(self, "scale", float(self.scale))

    def to_dict(self) -> dict:
        """Return the preprocessing as plain data, e.g. for checkpoints and cube attributes."""
        return {"mean": list(self.mean), "std": list(self.std), "scale": self.scale,
                "channel_order": self.channel_order}

    @classmethod
    def from_dict(cls, data: dict) -> "Preprocessing":
        """Inverse of :meth:`to_dict`."""
        return cls(tuple(data["mean"]), tuple(data["std"]), data.get("scale", 1.0), data.get("channel_order", "RGB"))

    @property
    def neutral_pixel(self) -> tuple[float, float, float]:
        """The [0, 1] RGB pixel that normalises to zero in every channel."""
        per_model_channel = [mean / self.scale for mean in self.mean]
        return tuple(per_model_channel[index] for index in _model_channel_index(self.channel_order))


def _check_preprocessing(mean, std, scale, channel_order):
    if channel_order not in CHANNEL_ORDERS:
        raise PreprocessingError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
    for name, values in (("mean", mean), ("std", std)):
        if len(values) != 3:
            raise PreprocessingError(f"{name} must have 3 values, one per channel, got {len(values)}")
    if any(not value > 0 for value in std):
        raise PreprocessingError(f"std must be positive in every channel, got {tuple(std)}")
    if not scale > 0:
        raise PreprocessingError(f"scale must be positive, got {scale}")


def _model_channel_index(channel_order: str) -> list[int]:
    """For each RGB input channel, the index of the model channel it becomes."""
    return [2, 1, 0] if channel_order == "BGR" else [0, 1, 2]


class PixelNorm(nn.Module):
    """Normalise RGB images in [0, 1] the way a network expects.

    Reorders channels to ``channel_order``, multiplies by ``scale`` and computes ``(x - mean) / std`` per channel,
    with ``mean`` and ``std`` given in the model's own channel order.

    Parameters
    ----------
    mean, std : sequence of 3 float
        Per-channel statistics in the model's channel order, on the scaled range.
    scale : float
        Multiplier applied to the [0, 1] input first.
    channel_order : {"RGB", "BGR"}
        Channel order of the network.

    Raises
    ------
    ValueError
        Settings as :class:`Preprocessing` refuses them; in the forward pass, images that are not (N, 3, H, W).

    Examples
    --------
    >>> norm = PixelNorm.from_preprocessing(IMAGENET)
    >>> images = torch.tensor(IMAGENET.neutral_pixel).view(1, 3, 1, 1).expand(2, 3, 4, 4)
    >>> norm(images).abs().max().item() < 1e-6  # the neutral pixel normalises to zero
    True
    >>> norm(torch.ones(2, 3, 4, 4))[0, :, 0, 0]  # (1 - mean) / std per channel
    tensor([2.2489, 2.4286, 2.6400])
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], scale: float = 1.0, channel_order: str = "RGB"):
        super().__init__()
        self.preprocessing = Preprocessing(tuple(mean), tuple(std), scale, channel_order)
        self.register_buffer("mean", torch.tensor(self.preprocessing.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.preprocessing.std).view(1, 3, 1, 1), persistent=False)

    @classmethod
    def from_preprocessing(cls, preprocessing: Preprocessing) -> "PixelNorm":
        """Build the module for a :class:`Preprocessing` preset such as :data:`IMAGENET`."""
        return cls(preprocessing.mean, preprocessing.std, preprocessing.scale, preprocessing.channel_order)

    @property
    def scale(self) -> float:
        """Multiplier applied to the [0, 1] input first."""
        return self.preprocessing.scale

    @property
    def channel_order(self) -> str:
        """``"RGB"`` or ``"BGR"``, the channel order of the network."""
        return self.preprocessing.channel_order

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Normalised images (N, 3, H, W), in the network's channel order."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise PreprocessingError(f"PixelNorm expects images of shape (N, 3, H, W), got {tuple(images.shape)}")
        if self.channel_order == "BGR":
            images = images.flip(1)
        return (images * self.scale - self.mean) / self.std

    def extra_repr(self) -> str:
        pre = self.preprocessing
        return f"mean={pre.mean}, std={pre.std}, scale={pre.scale}, channel_order={pre.channel_order!r}"


#: torchvision's ImageNet preprocessing. RGB order; mean and std on the [0, 1] scale.
IMAGENET = Preprocessing(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), scale=1.0, channel_order="RGB")

#: The PyTorch port of VGG-Face (``vgg_face_dag``). Mean given in RGB order on the 0-255 scale, std 1.
#: The original Caffe model takes BGR with the same means listed in BGR order (93.59, 104.76, 129.19).
VGGFACE = Preprocessing(mean=(129.186279296875, 104.76238250732422, 93.59396362304688), std=(1.0, 1.0, 1.0),
                        scale=255.0, channel_order="RGB")
