"""VGG-16 builders whose models take RGB in [0, 1], with the preprocessing inside."""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models import vgg as tv_vgg

from .. import parameters as checked
from ..nn import IMAGENET, PixelNorm, Preprocessing

#: torchvision's configuration "D": conv widths, "M" for max pooling.
VGG16_CONFIG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What is known about a model besides its weights: its spec, class names, training record and provenance.

    A model holds one card (:attr:`NormalizedVGG.card`); change it with :meth:`replace`, never field by field, so a
    misspelt name fails loudly.

    Parameters
    ----------
    spec : dict, optional
        The model's identity, e.g. ``ModelSpec(...).to_dict()``: ``pretraining``, ``task`` and ``seed``.
    class_names : tuple of str, optional
        One name per output, in class order.
    metadata : dict
        Training record: settings, accuracies, data digest, ...
    provenance : dict, optional
        Where the weights came from: source format, file, loaded and re-initialised layers.
    """

    spec: Mapping[str, Any] | None = None
    class_names: tuple[str, ...] | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    provenance: Mapping[str, Any] | None = None

    def __post_init__(self):
        if self.class_names is not None:
            if isinstance(self.class_names, str) or not isinstance(self.class_names, Sequence) or not all(
                    isinstance(name, str) for name in self.class_names):
                raise checked.ParameterTypeError(f"ModelCard: class_names must be a sequence of str, got "
                                                 f"{self.class_names!r}")
            object.__setattr__(self, "class_names", tuple(self.class_names))
        for name in ("spec", "metadata", "provenance"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise checked.ParameterTypeError(f"ModelCard: {name} must be a dict, got {type(value).__name__}")
        if self.metadata is None:
            object.__setattr__(self, "metadata", {})

    def replace(self, **changes) -> "ModelCard":
        """A copy with ``changes`` (field names of the card) applied."""
        return dataclasses.replace(self, **changes)


class NormalizedVGG(nn.Module):
    """A torchvision VGG behind a :class:`~lrp_faces.nn.PixelNorm`.

    ``features``, ``avgpool`` and ``classifier`` have torchvision's structure and state-dict keys; the
    ``pixel_norm`` buffers are not persistent, so a torchvision state dict loads unchanged. ``architecture``
    holds the builder arguments, so a checkpoint can rebuild the model. ``card`` (a :class:`ModelCard`) holds its
    spec, class names, training metadata and provenance, also readable as properties of the model.
    """

    def __init__(self, pixel_norm: PixelNorm, features: nn.Sequential, avgpool: nn.Module, classifier: nn.Sequential,
                 architecture: dict[str, Any]):
        super().__init__()
        self.pixel_norm = pixel_norm
        self.features = features
        self.avgpool = avgpool
        self.classifier = classifier
        self.architecture = dict(architecture)
        self.card = ModelCard()

    @property
    def spec(self) -> Mapping[str, Any] | None:
        """The card's spec (see :class:`ModelCard`)."""
        return self.card.spec

    @property
    def class_names(self) -> list[str] | None:
        """The card's class names, one per output, or None."""
        return None if self.card.class_names is None else list(self.card.class_names)

    @property
    def metadata(self) -> dict[str, Any]:
        """The card's training metadata."""
        return dict(self.card.metadata)

    @property
    def provenance(self) -> dict[str, Any] | None:
        """The card's provenance of the weights, or None."""
        return None if self.card.provenance is None else dict(self.card.provenance)

    @property
    def preprocessing(self) -> Preprocessing:
        return self.pixel_norm.preprocessing

    @property
    def num_classes(self) -> int:
        return self.classifier[-1].out_features

    def penultimate(self, images: torch.Tensor) -> torch.Tensor:
        """Activations of the last hidden layer: exactly what the final Linear receives in :meth:`forward`.

        Parameters
        ----------
        images : tensor (N, 3, H, W)
            RGB in [0, 1].

        Returns
        -------
        tensor (N, classifier_width)
            After the last hidden ReLU and Dropout; Dropout acts as in ``forward``, so put the model in evaluation
            mode for deterministic features.
        """
        hidden = torch.flatten(self.avgpool(self.features(self.pixel_norm(images))), 1)
        return self.classifier[:-1](hidden)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        hidden = self.avgpool(self.features(self.pixel_norm(images)))
        return self.classifier(torch.flatten(hidden, 1))


def _initialise_like_torchvision(module: nn.Module):
    """torchvision's VGG initialisation: He-normal convs, N(0, 0.01) dense layers, zero biases, unit BatchNorm."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.constant_(layer.bias, 0)
        elif isinstance(layer, nn.BatchNorm2d):
            nn.init.constant_(layer.weight, 1)
            nn.init.constant_(layer.bias, 0)
        elif isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, 0, 0.01)
            nn.init.constant_(layer.bias, 0)


def vgg16(num_classes: int = 1000, preprocessing: Preprocessing = IMAGENET, width: float = 1.0,
          batch_norm: bool = False, classifier_width: int = 4096, pool_size: int = 7,
          dropout: float = 0.5) -> NormalizedVGG:
    """Build a VGG-16 that takes RGB images in [0, 1].

    With the defaults this is torchvision's ``vgg16`` (randomly initialised the same way) behind a PixelNorm.

    Parameters
    ----------
    num_classes : int
        Outputs of the last layer.
    preprocessing : Preprocessing
        The normalisation inside the model, e.g. :data:`~lrp_faces.IMAGENET` or :data:`~lrp_faces.VGGFACE`.
    width : float
        Multiplier for the number of conv channels (e.g. 1/8 for fast tests on a CPU).
    batch_norm : bool
        Build VGG-16-BN.
    classifier_width : int
        Units of the two hidden Linear layers.
    pool_size : int
        Output size of the adaptive average pool before the classifier.
    dropout : float
        Dropout probability in the classifier.

    Returns
    -------
    NormalizedVGG
    """
    num_classes = checked.positive_int(num_classes, "num_classes", "vgg16")
    width = checked.positive_number(width, "width", "vgg16")
    classifier_width = checked.positive_int(classifier_width, "classifier_width", "vgg16")
    pool_size = checked.positive_int(pool_size, "pool_size", "vgg16")
    dropout = checked.non_negative_number(dropout, "dropout", "vgg16")
    if dropout > 1:
        raise checked.ParameterError(f"vgg16: dropout must be a probability in [0, 1], got {dropout!r}")
    if not isinstance(preprocessing, Preprocessing):
        raise checked.ParameterTypeError(f"vgg16: preprocessing must be a Preprocessing such as lrp_faces.IMAGENET, "
                                         f"got {type(preprocessing).__name__}")
    config = [item if item == "M" else max(1, round(item * width)) for item in VGG16_CONFIG]
    features = tv_vgg.make_layers(config, batch_norm=batch_norm)
    last_channels = config[-2]
    torchvision_head = (classifier_width, pool_size, last_channels) == (4096, 7, 512)
    if torchvision_head:  # torchvision's own constructor: same modules, same initialisation
        network = tv_vgg.VGG(features, num_classes=num_classes, init_weights=True, dropout=dropout)
        avgpool, classifier = network.avgpool, network.classifier
    else:  # a smaller head, initialised the way torchvision initialises VGG
        avgpool = nn.AdaptiveAvgPool2d((pool_size, pool_size))
        classifier = nn.Sequential(
            nn.Linear(last_channels * pool_size * pool_size, classifier_width),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_width, classifier_width),
            nn.ReLU(True),
            nn.Dropout(p=dropout),
            nn.Linear(classifier_width, num_classes),
        )
        _initialise_like_torchvision(features)
        _initialise_like_torchvision(classifier)
    architecture = {"num_classes": num_classes, "preprocessing": preprocessing.to_dict(), "width": float(width),
                    "batch_norm": bool(batch_norm), "classifier_width": classifier_width, "pool_size": pool_size,
                    "dropout": float(dropout)}
    return NormalizedVGG(PixelNorm.from_preprocessing(preprocessing), features, avgpool, classifier, architecture)


def vgg16_from_architecture(architecture: dict[str, Any]) -> NormalizedVGG:
    """Rebuild an untrained model from :attr:`NormalizedVGG.architecture`."""
    arguments = dict(architecture)
    arguments["preprocessing"] = Preprocessing.from_dict(arguments["preprocessing"])
    return vgg16(**arguments)
