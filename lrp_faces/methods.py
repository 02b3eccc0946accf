"""Registry of named attribution methods: LRP composites and gradient baselines.

>>> from lrp_faces import methods
>>> "epsilon_gamma_box" in methods.names()
True
>>> methods.get("smoothgrad", n_samples=8)
SmoothGrad(n_samples=8, noise_level=0.1, seed=0)
"""
from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from contextlib import contextmanager
from typing import Callable, NamedTuple

import torch
from torch import nn
from zennit.composites import SpecialFirstLayerMapComposite
from zennit.core import Composite
from zennit.types import AvgPool, Convolution, Linear

from . import rules
from .canonizers import FaceVGGCanonizer
from .errors import LRPFacesError

__all__ = ["Explanation", "Method", "LRPMethod", "names", "get", "register", "UnknownMethodError",
           "contrastive_output"]

_REGISTRY: dict[str, type["Method"]] = {}


class UnknownMethodError(LRPFacesError, ValueError):
    """A method name that is not in the registry."""


class Explanation(NamedTuple):
    """One batch explained: relevance (N, H, W), explained output (N,) and predicted class (N,)."""

    relevance: torch.Tensor
    output: torch.Tensor
    prediction: torch.Tensor


def register(name: str) -> Callable[[type["Method"]], type["Method"]]:
    """Class decorator adding a :class:`Method` to the registry under ``name``."""
    def decorator(cls):
        if name in _REGISTRY:
            raise ValueError(f"a method named {name!r} is already registered ({_REGISTRY[name].__name__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls
    return decorator


def names() -> list[str]:
    """Names of all registered methods."""
    return sorted(_REGISTRY)


def get(name: str, **params) -> "Method":
    """Instantiate the method registered as ``name`` with ``params``."""
    if name not in _REGISTRY:
        raise UnknownMethodError(f"unknown method {name!r}; known methods: {', '.join(names())}")
    cls = _REGISTRY[name]
    accepted = [key for key in inspect.signature(cls.__init__).parameters if key != "self"]
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise TypeError(f"method {name!r} got unknown parameter(s) {unknown}; it accepts {accepted}")
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


class Method(ABC):
    """An attribution method: explains a batch of images for a model.

    Subclasses take their parameters as keyword arguments and implement :meth:`explain`.
    """

    name: str = ""

    def __init__(self, **params):
        self.params = params

    @abstractmethod
    def explain(self, model: nn.Module, images: torch.Tensor, target: torch.Tensor | None, contrastive: bool = True,
                first_index: int = 0) -> Explanation:
        """Explain ``images`` (N, 3, H, W) for ``target`` (N,), or for the predicted class if None.

        ``first_index`` is the position of the batch in the whole set, for per-image random seeds.
        """

    @property
    def canonizers(self) -> list[str]:
        """Names of the canonizers the method applies."""
        return []

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({arguments})"


@contextmanager
def registered(composite: Composite, model: nn.Module):
    """Register ``composite`` on ``model`` and always remove it, also when registration itself fails."""
    try:
        composite.register(model)
        yield model
    finally:
        composite.remove()


class LRPMethod(Method):
    """LRP with a composite of fast rules and :class:`~lrp_faces.canonizers.FaceVGGCanonizer`."""

    def composite(self, contrastive: bool) -> Composite:
        """The zennit composite for one attribution."""
        raise NotImplementedError

    @property
    def canonizers(self) -> list[str]:
        return ["MergeBatchNormCanonizer", "PixelNormCanonizer", "ContrastiveHeadCanonizer"]

    def explain(self, model, images, target, contrastive=True, first_index=0):
        images = images.detach().requires_grad_(True)
        with registered(self.composite(contrastive), model):
            logits = model(images)
            prediction, target = _resolve_target(logits, target)
            explained = logits.gather(1, target[:, None])[:, 0]
            seed = torch.zeros_like(logits).scatter_(1, target[:, None], explained.detach()[:, None])
            (gradient,) = torch.autograd.grad(logits, images, seed)
        return Explanation(gradient.sum(1), explained.detach(), prediction)


def _vgg_composite(first_types, first_rule, conv_rule, params, contrastive) -> Composite:
    """ε on dense layers, ``conv_rule`` on convolutions, ``first_rule`` on the first layer, with the face canonizers."""
    return SpecialFirstLayerMapComposite(
        layer_map=[(AvgPool, rules.Norm(stabilizer=params["stabilizer"])), (Convolution, conv_rule),
                   (nn.Linear, rules.Epsilon(epsilon=params["epsilon"]))],
        first_map=[(first_types, first_rule)],
        canonizers=[FaceVGGCanonizer(contrastive=contrastive)])


@register("epsilon_gamma_box")
class EpsilonGammaBox(LRPMethod):
    """ZBox on the first conv (pixel bounds 0 and 1), γ on the other convs, ε on the dense layers.

    The same relevance as zennit's ``EpsilonGammaBox`` with the bounds in normalised space, several times faster.
    """

    def __init__(self, gamma: float = 0.25, epsilon: float = 1e-6, stabilizer: float = 1e-6, low: float = 0.0,
                 high: float = 1.0):
        super().__init__(gamma=gamma, epsilon=epsilon, stabilizer=stabilizer, low=low, high=high)

    def composite(self, contrastive):
        p = self.params
        return _vgg_composite(Convolution, rules.ZBox(low=p["low"], high=p["high"], stabilizer=p["stabilizer"]),
                              rules.Gamma(gamma=p["gamma"], stabilizer=p["stabilizer"]), p, contrastive)


class _FlatFirstLayer(LRPMethod):
    """Flat on the first layer, :meth:`conv_rule` on the other convs, ε on the dense layers."""

    def __init__(self, epsilon: float = 1e-6, stabilizer: float = 1e-6):
        super().__init__(epsilon=epsilon, stabilizer=stabilizer)

    def conv_rule(self) -> rules.FastRule:
        raise NotImplementedError

    def composite(self, contrastive):
        return _vgg_composite(Linear, rules.Flat(stabilizer=self.params["stabilizer"]), self.conv_rule(), self.params,
                              contrastive)


@register("epsilon_plus_flat")
class EpsilonPlusFlat(_FlatFirstLayer):
    """Flat on the first layer, z+ on the other convs, ε on the dense layers."""

    def conv_rule(self):
        return rules.ZPlus(stabilizer=self.params["stabilizer"])


@register("epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1Flat(_FlatFirstLayer):
    """Flat on the first layer, α2β1 on the other convs, ε on the dense layers."""

    def conv_rule(self):
        return rules.AlphaBeta(alpha=2.0, beta=1.0, stabilizer=self.params["stabilizer"])


def _input_gradient(model, images, target, contrastive):
    """Gradient of the explained output with respect to ``images``, with the logits."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = model(images)
        prediction, target = _resolve_target(logits, target)
        explained = _explained(logits, target, contrastive)
        (gradient,) = torch.autograd.grad(explained.sum(), images)
    return gradient, explained.detach(), prediction, target


@register("gradient")
class Gradient(Method):
    """The gradient of the explained output, summed over colour channels."""

    def __init__(self):
        super().__init__()

    def explain(self, model, images, target, contrastive=True, first_index=0):
        gradient, output, prediction, _ = _input_gradient(model, images, target, contrastive)
        return Explanation(gradient.sum(1), output, prediction)


@register("gradient_x_input")
class GradientTimesInput(Method):
    """Gradient times input (in [0, 1] pixel space), summed over colour channels."""

    def __init__(self):
        super().__init__()

    def explain(self, model, images, target, contrastive=True, first_index=0):
        gradient, output, prediction, _ = _input_gradient(model, images, target, contrastive)
        return Explanation((gradient * images).sum(1), output, prediction)


def _image_generator(seed: int, index: int, device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed) * 1_000_003 + int(index))
    return generator


@register("smoothgrad")
class SmoothGrad(Method):
    """Mean gradient over noisy copies of the image (Smilkov et al. 2017), summed over colour channels.

    Parameters
    ----------
    n_samples : int
        Noisy copies per image.
    noise_level : float
        Standard deviation of the Gaussian noise, in [0, 1] pixel units.
    seed : int
        Seed; the noise of each image depends only on the seed and the image's index.
    """

    def __init__(self, n_samples: int = 16, noise_level: float = 0.1, seed: int = 0):
        if n_samples < 1:
            raise ValueError(f"n_samples must be at least 1, got {n_samples}")
        super().__init__(n_samples=n_samples, noise_level=noise_level, seed=seed)

    def explain(self, model, images, target, contrastive=True, first_index=0):
        with torch.no_grad():
            logits = model(images)
        prediction, target = _resolve_target(logits, target)
        noise = torch.stack([
            torch.randn((self.params["n_samples"], *images.shape[1:]), dtype=images.dtype,
                        generator=_image_generator(self.params["seed"], first_index + index, "cpu"))
            for index in range(images.shape[0])], 1).to(images.device) * self.params["noise_level"]
        total = torch.zeros_like(images)
        for sample_noise in noise:
            gradient, _, _, _ = _input_gradient(model, images + sample_noise, target, contrastive)
            total += gradient
        output = _explained(logits, target, contrastive)
        return Explanation((total / self.params["n_samples"]).sum(1), output, prediction)


@register("integrated_gradients")
class IntegratedGradients(Method):
    """Integrated gradients (Sundararajan et al. 2017) from a constant baseline image, midpoint rule.

    Parameters
    ----------
    steps : int
        Points on the straight path from the baseline to the image.
    baseline : float
        Pixel value of the baseline image (0 is black).
    """

    def __init__(self, steps: int = 32, baseline: float = 0.0):
        if steps < 1:
            raise ValueError(f"steps must be at least 1, got {steps}")
        super().__init__(steps=steps, baseline=baseline)

    def explain(self, model, images, target, contrastive=True, first_index=0):
        with torch.no_grad():
            logits = model(images)
        prediction, target = _resolve_target(logits, target)
        baseline = torch.full_like(images, float(self.params["baseline"]))
        total = torch.zeros_like(images)
        steps = self.params["steps"]
        for step in range(steps):
            fraction = (step + 0.5) / steps
            gradient, _, _, _ = _input_gradient(model, baseline + fraction * (images - baseline), target, contrastive)
            total += gradient
        relevance = ((images - baseline) * total / steps).sum(1)
        return Explanation(relevance, _explained(logits, target, contrastive), prediction)


@register("random")
class Random(Method):
    """Standard-normal noise as relevance: the baseline any method has to beat.

    Parameters
    ----------
    seed : int
        Seed; each image's map depends only on the seed and the image's index.
    """

    def __init__(self, seed: int = 0):
        super().__init__(seed=seed)

    def explain(self, model, images, target, contrastive=True, first_index=0):
        with torch.no_grad():
            logits = model(images)
        prediction, target = _resolve_target(logits, target)
        relevance = torch.stack([
            torch.randn(images.shape[2:], generator=_image_generator(self.params["seed"], first_index + index, "cpu"))
            for index in range(images.shape[0])]).to(images.device)
        return Explanation(relevance, _explained(logits, target, contrastive), prediction)
