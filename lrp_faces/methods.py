"""Registry of named attribution methods: LRP composites and gradient baselines.

A method is a frozen dataclass of its parameters, checked when it is made; ``explain`` runs it on one batch with the
model locked and in evaluation mode, and refuses to return NaN or Inf.

>>> from lrp_faces import methods
>>> "epsilon_gamma_box" in methods.names()
True
>>> methods.get("smoothgrad", n_samples=8)
SmoothGrad(n_samples=8, noise_level=0.1, seed=0)
"""
from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Callable, ClassVar, NamedTuple, Sequence

import torch
from torch import nn
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import Composite
from zennit.types import AvgPool, Convolution, Linear

from . import parameters as checked
from . import rules
from .canonizers import FaceVGGCanonizer
from .errors import LRPFacesError
from .model_checks import ModelOutputError, check_lrp_structure, logits_of, non_finite_tensors
from .module_state import evaluation_mode

__all__ = ["Explanation", "Method", "LRPMethod", "names", "get", "register", "UnknownMethodError",
           "NonFiniteRelevanceError", "MethodRegistryError", "contrastive_output", "registered"]

_REGISTRY: dict[str, type["Method"]] = {}


class UnknownMethodError(LRPFacesError, ValueError):
    """A method name that is not in the registry."""


class MethodRegistryError(LRPFacesError, ValueError):
    """A method registered under a name that is taken."""


class NonFiniteRelevanceError(LRPFacesError, ValueError):
    """A method gave NaN or Inf for some images (the message names them and the likely cause).

    ``indices`` holds their positions (``first_index + i``) and ``cause`` the likely cause.
    """

    def __init__(self, message: str, indices: Sequence[int] = (), cause: str = ""):
        super().__init__(message)
        self.indices, self.cause = list(indices), cause

    def __reduce__(self):  # keep the indices through pickling (e.g. from a dask worker)
        return type(self), (str(self), self.indices, self.cause)


class Explanation(NamedTuple):
    """One batch explained: relevance (N, H, W), explained output (N,) and predicted class (N,)."""

    relevance: torch.Tensor
    output: torch.Tensor
    prediction: torch.Tensor


def register(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator adding a :class:`Method` to the registry under ``name``."""
    def decorator(cls):
        if name in _REGISTRY:
            raise MethodRegistryError(f"a method named {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorator


def names() -> list[str]:
    """Names of all registered methods."""
    return sorted(_REGISTRY)


def get(name: str, **params) -> "Method":
    """Instantiate the method registered as ``name`` with ``params``, each checked against its valid range.

    Raises
    ------
    UnknownMethodError
        ``name`` is not registered.
    lrp_faces.parameters.ParameterTypeError
        A parameter the method does not take, or one of the wrong type.
    lrp_faces.parameters.ParameterError
        A parameter outside its valid range.
    """
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    cls = _REGISTRY[name]
    accepted = list(inspect.signature(cls).parameters)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise checked.ParameterTypeError(f"method {name!r} got unknown parameter(s) {unknown}; it accepts "
                                         f"{accepted or 'no parameters'}")
    return cls(**params)


def contrastive_output(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``z_c - mean_{j != c} z_j`` for each row of ``logits`` and its target class ``c``."""
    classes = logits.shape[1]
    chosen = logits.gather(1, target[:, None])[:, 0]
    return (classes * chosen - logits.sum(1)) / (classes - 1)


def _explained(logits: torch.Tensor, target: torch.Tensor, contrastive: bool) -> torch.Tensor:
    return contrastive_output(logits, target) if contrastive else logits.gather(1, target[:, None])[:, 0]


def _resolve_target(logits: torch.Tensor, target: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    prediction = logits.detach().argmax(1)
    return prediction, prediction if target is None else target


@dataclasses.dataclass(frozen=True)
class Method(ABC):
    """An attribution method: explains a batch of images for a model.

    Subclasses are frozen dataclasses whose fields are the method's parameters (checked in ``__post_init__``),
    and implement :meth:`explain_batch`.
    """

    name: ClassVar[str] = ""

    @property
    def params(self) -> dict:
        """The method's parameters by name."""
        return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

    @property
    def canonizers(self) -> list[str]:
        """Names of the canonizers the method applies."""
        return []

    def explain(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor | None, contrastive: bool = True,
                first_index: int = 0) -> Explanation:
        """Explain ``images`` (N, 3, H, W) for ``target`` (N,), or for the predicted class if None.

        The model is locked (:func:`~lrp_faces.module_state.evaluation_mode`) and in evaluation mode while the
        method runs, and is left exactly as it was. ``first_index`` is the position of the batch in the whole set,
        for per-image random seeds and for naming images in errors.

        Raises
        ------
        NonFiniteRelevanceError
            NaN or Inf in a map or explained output; the message names the images by ``first_index + i``.
        """
        contrastive = checked.flag(contrastive, "contrastive", self._owner())
        with evaluation_mode(model):
            explanation = self.explain_batch(model, images, target, contrastive, first_index)
            self.check_finite(explanation, model, first_index)
        return explanation

    @abstractmethod
    def explain_batch(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor | None, contrastive: bool,
                      first_index: int) -> Explanation:
        """The method itself, called by :meth:`explain` with the model locked and in evaluation mode."""

    def non_finite_hint(self) -> str:
        """The likely cause of NaN or Inf maps from a model with finite weights and outputs."""
        return "the gradient overflowed"

    def check_finite(self, explanation: Explanation, model: nn.Module, first_index: int = 0) -> None:
        """Raise :class:`NonFiniteRelevanceError` naming the images whose map or output holds NaN or Inf."""
        maps_ok = torch.isfinite(explanation.relevance).flatten(1).all(1)
        outputs_ok = torch.isfinite(explanation.output)
        bad = (~(maps_ok & outputs_ok)).nonzero()[:, 0].tolist()
        if not bad:
            return
        weights = non_finite_tensors(model)
        if weights:
            cause = f"the model's weights hold NaN or Inf (in {', '.join(weights[:5])})"
        elif not bool(outputs_ok.all()):
            cause = "the model's output is NaN or Inf for them (an overflow inside the model?)"
        else:
            cause = self.non_finite_hint()
        indices = [first_index + index for index in bad]
        shown = ", ".join(map(str, indices[:10])) + (f" and {len(indices) - 10} more" if len(indices) > 10 else "")
        raise NonFiniteRelevanceError(f"{self._owner()} gave NaN or Inf for image(s) {shown} "
                                      f"(indices in the input); likely cause: {cause}", indices, cause)

    def _owner(self) -> str:
        return self.name or type(self).__name__

    def _check(self, name: str, check: Callable) -> None:
        """Replace field ``name`` by ``check(value, name, owner)`` (dataclass-frozen, so through object)."""
        object.__setattr__(self, name, check(getattr(self, name), name, self._owner()))


@contextmanager
def registered(composite: Composite, model: nn.Module):
    """Register ``composite`` on ``model`` and always remove it, also when registration itself fails."""
    try:
        composite.register(model)
        yield model
    finally:
        composite.remove()


@dataclasses.dataclass(frozen=True)
class LRPMethod(Method):
    """LRP with a composite of fast rules and :class:`~lrp_faces.canonizers.FaceVGGCanonizer`.

    The model must be a VGG-like chain behind a PixelNorm with a Linear head
    (:func:`~lrp_faces.model_checks.check_lrp_structure`). Subclasses have the fields ``epsilon`` (of the dense
    layers) and ``stabilizer`` (of the other rules), both > 0.
    """

    def __post_init__(self):
        self._check("epsilon", checked.positive_number)
        self._check("stabilizer", checked.positive_number)

    def composite(self, contrastive: bool) -> Composite:
        """The zennit composite for one attribution."""
        raise NotImplementedError

    @property
    def canonizers(self) -> list[str]:
        return ["MergeBatchNormCanonizer", "PixelNormCanonizer", "ContrastiveHeadCanonizer"]

    def non_finite_hint(self) -> str:
        return (f"a denominator near zero in an LRP rule: raise epsilon or stabilizer (now epsilon={self.epsilon}, "
                f"stabilizer={self.stabilizer})")

    def explain_batch(self, model, images, target, contrastive, first_index):
        check_lrp_structure(model, images[:1], self._owner())
        images = images.detach().requires_grad_(True)
        with registered(self.composite(contrastive), model):
            logits = logits_of(model, images)
            prediction, target = _resolve_target(logits, target)
            explained = logits.gather(1, target[:, None])[:, 0]
            seed = torch.zeros_like(logits).scatter_(1, target[:, None], explained.detach()[:, None])
            (gradient,) = torch.autograd.grad(logits, images, seed)
        return Explanation(gradient.sum(1), explained.detach(), prediction)

    def dense_rules(self) -> list:
        """Rules of the layers after the convolutions: Norm on average pooling, ε on Linear layers."""
        return [(AvgPool, rules.Norm(stabilizer=self.stabilizer)), (nn.Linear, rules.Epsilon(epsilon=self.epsilon))]

    def vgg_composite(self, first_types, first_rule, conv_rule, contrastive) -> Composite:
        """``first_rule`` on the first layer, ``conv_rule`` on the other convolutions, with the face canonizers."""
        return SpecialFirstLayerMapComposite(layer_map=[(Convolution, conv_rule), *self.dense_rules()],
                                             first_map=[(first_types, first_rule)],
                                             canonizers=[FaceVGGCanonizer(contrastive=contrastive)])


@register("epsilon_gamma_box")
@dataclasses.dataclass(frozen=True)
class EpsilonGammaBox(LRPMethod):
    """ZBox on the first conv (pixel bounds ``low`` and ``high``), γ on the other convs, ε on the dense layers.

    The same relevance as zennit's ``EpsilonGammaBox`` with the bounds in normalised space, several times faster.

    Parameters
    ----------
    gamma : float
        γ of the convolutions, >= 0.
    epsilon, stabilizer : float
        ε of the dense layers and the stabiliser of the other rules, > 0.
    low, high : float
        Pixel bounds of the images, ``low < high``.
    """

    gamma: float = 0.25
    epsilon: float = 1e-6
    stabilizer: float = 1e-6
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        super().__post_init__()
        self._check("gamma", checked.non_negative_number)
        self._check("low", checked.number)
        self._check("high", checked.number)
        if not self.low < self.high:
            raise checked.ParameterError(f"{self._owner()}: low must be below high, got low={self.low}, "
                                         f"high={self.high}")

    def composite(self, contrastive):
        return self.vgg_composite(Convolution, rules.ZBox(low=self.low, high=self.high, stabilizer=self.stabilizer),
                                  rules.Gamma(gamma=self.gamma, stabilizer=self.stabilizer), contrastive)


@dataclasses.dataclass(frozen=True)
class _FlatFirstLayer(LRPMethod):
    """Flat on the first layer, :meth:`conv_rule` on the other convs, ε on the dense layers.

    Parameters
    ----------
    epsilon, stabilizer : float
        ε of the dense layers and the stabiliser of the other rules, > 0.
    """

    epsilon: float = 1e-6
    stabilizer: float = 1e-6

    def conv_rule(self) -> rules.FastRule:
        raise NotImplementedError

    def composite(self, contrastive):
        return self.vgg_composite(Linear, rules.Flat(stabilizer=self.stabilizer), self.conv_rule(), contrastive)


@register("epsilon_plus_flat")
@dataclasses.dataclass(frozen=True)
class EpsilonPlusFlat(_FlatFirstLayer):
    """Flat on the first layer, z+ on the other convs, ε on the dense layers."""

    def conv_rule(self):
        return rules.ZPlus(stabilizer=self.stabilizer)


@register("epsilon_alpha2_beta1_flat")
@dataclasses.dataclass(frozen=True)
class EpsilonAlpha2Beta1Flat(_FlatFirstLayer):
    """Flat on the first layer, α2β1 on the other convs, ε on the dense layers."""

    def conv_rule(self):
        return rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=self.stabilizer)


def _checked_classes(logits: torch.Tensor, contrastive: bool) -> torch.Tensor:
    if contrastive and logits.shape[1] < 2:
        raise ModelOutputError("the contrastive output needs at least 2 classes; use contrastive=False")
    return logits


def _logits_and_target(model, images, target, contrastive):
    """The logits without a graph, the prediction and the explained class."""
    with torch.no_grad():
        logits = _checked_classes(logits_of(model, images), contrastive)
    prediction, target = _resolve_target(logits, target)
    return logits, prediction, target


def _input_gradient(model, images, target, contrastive):
    """Gradient of the explained output with respect to ``images``, with the explained output and the prediction."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = _checked_classes(logits_of(model, images), contrastive)
        prediction, target = _resolve_target(logits, target)
        explained = _explained(logits, target, contrastive)
        (gradient,) = torch.autograd.grad(explained.sum(), images)
    return gradient, explained.detach(), prediction


def _summed_gradients(model, inputs, target, contrastive) -> torch.Tensor:
    """The sum of the input gradients over an iterable of image batches (noisy copies, points on a path)."""
    total = None
    for batch in inputs:
        gradient = _input_gradient(model, batch, target, contrastive)[0]
        total = gradient if total is None else total.add_(gradient)
    return total


@register("gradient")
@dataclasses.dataclass(frozen=True)
class Gradient(Method):
    """The gradient of the explained output, summed over colour channels."""

    def explain_batch(self, model, images, target, contrastive, first_index):
        gradient, output, prediction = _input_gradient(model, images, target, contrastive)
        return Explanation(gradient.sum(1), output, prediction)


@register("gradient_x_input")
@dataclasses.dataclass(frozen=True)
class GradientTimesInput(Method):
    """Gradient times input (in [0, 1] pixel space), summed over colour channels."""

    def explain_batch(self, model, images, target, contrastive, first_index):
        gradient, output, prediction = _input_gradient(model, images, target, contrastive)
        return Explanation((gradient * images).sum(1), output, prediction)


def _image_generator(seed: int, index: int) -> torch.Generator:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(int(seed) * 1_000_003 + int(index))
    return generator


@register("smoothgrad")
@dataclasses.dataclass(frozen=True)
class SmoothGrad(Method):
    """Mean gradient over noisy copies of the image (Smilkov et al. 2017), summed over colour channels.

    Parameters
    ----------
    n_samples : int
        Noisy copies per image, >= 1.
    noise_level : float
        Standard deviation of the Gaussian noise, in [0, 1] pixel units, >= 0.
    seed : int
        Seed in [0, 2**32); the noise of each image depends only on the seed and the image's index.
    """

    n_samples: int = 16
    noise_level: float = 0.1
    seed: int = 0

    def __post_init__(self):
        self._check("n_samples", checked.positive_int)
        self._check("noise_level", checked.non_negative_number)
        self._check("seed", checked.seed)

    def explain_batch(self, model, images, target, contrastive, first_index):
        logits, prediction, target = _logits_and_target(model, images, target, contrastive)
        noise = torch.stack([
            torch.randn((self.n_samples, *images.shape[1:]), dtype=images.dtype,
                        generator=_image_generator(self.seed, first_index + index))
            for index in range(images.shape[0])], 1).to(images.device) * self.noise_level
        total = _summed_gradients(model, (images + sample_noise for sample_noise in noise), target, contrastive)
        relevance = (total / self.n_samples).sum(1)
        return Explanation(relevance, _explained(logits, target, contrastive), prediction)


@register("integrated_gradients")
@dataclasses.dataclass(frozen=True)
class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan et al. 2017) from a constant baseline image, midpoint rule.

    Parameters
    ----------
    steps : int
        Points on the straight path from the baseline to the image, >= 1.
    baseline : float
        Pixel value of the baseline image (0 is black), finite.
    """

    steps: int = 32
    baseline: float = 0.0

    def __post_init__(self):
        self._check("steps", checked.positive_int)
        self._check("baseline", checked.number)

    def explain_batch(self, model, images, target, contrastive, first_index):
        logits, prediction, target = _logits_and_target(model, images, target, contrastive)
        baseline = torch.full_like(images, self.baseline)
        path = (baseline + (step + 0.5) / self.steps * (images - baseline) for step in range(self.steps))
        total = _summed_gradients(model, path, target, contrastive)
        relevance = ((images - baseline) * total / self.steps).sum(1)
        return Explanation(relevance, _explained(logits, target, contrastive), prediction)


@register("random")
@dataclasses.dataclass(frozen=True)
class Random(Method):
    """Standard-normal noise as relevance: the baseline any method has to beat.

    Parameters
    ----------
    seed : int
        Seed in [0, 2**32); each image's map depends only on the seed and the image's index.
    """

    seed: int = 0

    def __post_init__(self):
        self._check("seed", checked.seed)

    def explain_batch(self, model, images, target, contrastive, first_index):
        logits, prediction, target = _logits_and_target(model, images, target, contrastive)
        relevance = torch.stack([
            torch.randn(images.shape[2:], generator=_image_generator(self.seed, first_index + index))
            for index in range(images.shape[0])]).to(images.device)
        return Explanation(relevance, _explained(logits, target, contrastive), prediction)
