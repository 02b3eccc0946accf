"""Zennit canonizers that put a face VGG-16 into the form LRP rules expect.

Each canonizer follows zennit's contract: ``apply(model)`` returns applied copies whose ``remove()`` restores the
model exactly, the original parameter objects included.
"""
from __future__ import annotations

import torch
from torch import nn
from zennit.canonizers import Canonizer, CompositeCanonizer
from zennit.core import collect_leaves

from .nn import PixelNorm
from .errors import LRPFacesError

__all__ = ["PixelNormCanonizer", "ContrastiveHeadCanonizer", "MergeBatchNormCanonizer", "FaceVGGCanonizer",
           "CanonizerError"]


class CanonizerError(LRPFacesError, ValueError):
    """The model lacks the structure a canonizer needs."""


class _ModuleState:
    """Remember a module's parameters and instance attributes so that they can be put back exactly."""

    def __init__(self, module: nn.Module, parameter_names=(), attribute_names=()):
        self.module = module
        self.parameters = {name: module._parameters[name] for name in parameter_names}
        self.attributes = {name: module.__dict__[name] for name in attribute_names if name in module.__dict__}
        self.attribute_names = tuple(attribute_names)

    def set_parameter(self, name: str, value: torch.Tensor):
        original = self.parameters[name]
        requires_grad = original.requires_grad if original is not None else False
        self.module._parameters[name] = nn.Parameter(value.detach().clone(), requires_grad=requires_grad)

    def set_attribute(self, name: str, value):
        object.__setattr__(self.module, name, value)

    def restore(self):
        self.module._parameters.update(self.parameters)
        for name in self.attribute_names:
            if name in self.attributes:
                object.__setattr__(self.module, name, self.attributes[name])
            else:
                self.module.__dict__.pop(name, None)


def _identity(input):
    return input


def _describe(module: nn.Module | None) -> str:
    return "nothing" if module is None else type(module).__name__


class PixelNormCanonizer(Canonizer):
    """Fold the model's :class:`~lrp_faces.nn.PixelNorm` into the first convolution.

    Afterwards the PixelNorm is the identity and the convolution computes ``conv(x - neutral_pixel)`` with its
    weights scaled by ``scale / std`` (and reordered for BGR models). Shifting the input instead of the bias is the
    same as padding with each channel's neutral pixel, so the image borders are exact, and it stays exact when a
    rule modifies weights and biases: ZBox in pixel space with bounds 0 and 1 equals ZBox in normalised space.
    The shift is stored on the convolution as ``input_shift`` while registered.
    """

    def __init__(self):
        self.states: list[_ModuleState] = []

    def apply(self, root_module: nn.Module) -> list["PixelNormCanonizer"]:
        leaves = list(collect_leaves(root_module))
        positions = [index for index, leaf in enumerate(leaves) if isinstance(leaf, PixelNorm)]
        if not positions:
            raise CanonizerError(
                f"PixelNormCanonizer needs a PixelNorm followed by a Conv2d; {type(root_module).__name__} has no "
                f"PixelNorm (its first leaf is {_describe(leaves[0] if leaves else None)}). Build models with "
                "lrp_faces.vgg16 or put a PixelNorm in front of your network.")
        instances = []
        for position in positions:
            following = leaves[position + 1] if position + 1 < len(leaves) else None
            if not isinstance(following, nn.Conv2d) or following.groups != 1:
                raise CanonizerError(
                    f"PixelNormCanonizer expects a Conv2d with groups=1 right after the PixelNorm, found "
                    f"{_describe(following)}")
            instance = self.copy()
            instance.register(leaves[position], following)
            instances.append(instance)
        return instances

    def register(self, pixel_norm: PixelNorm, convolution: nn.Conv2d):
        """Fold ``pixel_norm`` into ``convolution``."""
        norm_state = _ModuleState(pixel_norm, attribute_names=("forward",))
        conv_state = _ModuleState(convolution, parameter_names=("weight",), attribute_names=("forward", "input_shift"))
        weight = convolution.weight.detach()
        model_channel = [2, 1, 0] if pixel_norm.channel_order == "BGR" else [0, 1, 2]
        mean = pixel_norm.mean.detach().to(weight).view(3)
        std = pixel_norm.std.detach().to(weight).view(3)
        folded = weight[:, model_channel] * (pixel_norm.scale / std[model_channel]).view(1, 3, 1, 1)
        neutral = (mean[model_channel] / pixel_norm.scale).view(1, 3, 1, 1)

        def shifted_forward(input):
            return convolution._conv_forward(input - convolution.input_shift, convolution.weight, convolution.bias)

        try:
            conv_state.set_parameter("weight", folded)
            conv_state.set_attribute("input_shift", neutral)
            conv_state.set_attribute("forward", shifted_forward)
            norm_state.set_attribute("forward", _identity)
        except BaseException:
            conv_state.restore()
            norm_state.restore()
            raise
        self.states = [conv_state, norm_state]

    def remove(self):
        """Undo the fold."""
        for state in reversed(self.states):
            state.restore()
        self.states = []


class ContrastiveHeadCanonizer(Canonizer):
    """Make output c of the last Linear layer the contrastive output ``z_c - mean_{j != c} z_j``.

    For two classes this is the log-odds; the argmax is unchanged.
    """

    def __init__(self):
        self.states: list[_ModuleState] = []

    def apply(self, root_module: nn.Module) -> list["ContrastiveHeadCanonizer"]:
        linears = [leaf for leaf in collect_leaves(root_module) if isinstance(leaf, nn.Linear)]
        if not linears:
            raise CanonizerError(
                f"ContrastiveHeadCanonizer needs a final nn.Linear layer; {type(root_module).__name__} has none")
        head = linears[-1]
        if head.out_features < 2:
            raise CanonizerError(
                f"ContrastiveHeadCanonizer needs at least 2 outputs in the last Linear layer, found {head.out_features}")
        instance = self.copy()
        instance.register(head)
        return [instance]

    @staticmethod
    def contrast(values: torch.Tensor) -> torch.Tensor:
        """Map rows of ``values`` (classes along dim 0) to ``v_c - mean_{j != c} v_j``."""
        classes = values.shape[0]
        return (classes * values - values.sum(0, keepdim=True)) / (classes - 1)

    def register(self, head: nn.Linear):
        """Replace the weights and bias of ``head``."""
        parameter_names = ("weight", "bias") if head.bias is not None else ("weight",)
        state = _ModuleState(head, parameter_names=parameter_names)
        try:
            for name in parameter_names:
                state.set_parameter(name, self.contrast(getattr(head, name).detach()))
        except BaseException:
            state.restore()
            raise
        self.states = [state]

    def remove(self):
        """Put the original head back."""
        for state in self.states:
            state.restore()
        self.states = []


class MergeBatchNormCanonizer(Canonizer):
    """Merge every BatchNorm that directly follows a Conv2d or Linear into it, exactly.

    The BatchNorm's ``eps`` goes into the merged scale and the BatchNorm itself becomes an exact identity while
    registered (zennit's own merge either keeps ``eps`` in place or sets it to 0, which recent torch rejects).
    """

    def __init__(self):
        self.states: list[_ModuleState] = []

    def apply(self, root_module: nn.Module) -> list["MergeBatchNormCanonizer"]:
        instances = []
        previous = None
        try:
            for leaf in collect_leaves(root_module):
                if isinstance(leaf, nn.modules.batchnorm._BatchNorm) and isinstance(previous, (nn.Conv2d, nn.Linear)):
                    instance = self.copy()
                    instance.register(previous, leaf)
                    instances.append(instance)
                previous = leaf
        except BaseException:
            for instance in reversed(instances):
                instance.remove()
            raise
        return instances

    def register(self, linear: nn.Module, batch_norm: nn.modules.batchnorm._BatchNorm):
        """Merge ``batch_norm`` into ``linear``."""
        if batch_norm.running_mean is None or batch_norm.running_var is None:
            raise CanonizerError(f"cannot merge {batch_norm}: it tracks no running statistics")
        if batch_norm.num_features != linear.weight.shape[0]:
            raise CanonizerError(
                f"cannot merge {batch_norm} into {linear}: {batch_norm.num_features} features vs "
                f"{linear.weight.shape[0]} outputs")
        linear_state = _ModuleState(linear, parameter_names=("weight", "bias"))
        norm_state = _ModuleState(batch_norm, attribute_names=("forward",))
        weight = linear.weight.detach()
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros_like(batch_norm.running_mean)
        gain = batch_norm.running_var.detach().add(batch_norm.eps).rsqrt()
        if batch_norm.weight is not None:
            gain = gain * batch_norm.weight.detach()
        shift = batch_norm.bias.detach() if batch_norm.bias is not None else torch.zeros_like(gain)
        try:
            linear_state.set_parameter("weight", weight * gain.view(-1, *(1,) * (weight.ndim - 1)))
            linear_state.set_parameter("bias", (bias - batch_norm.running_mean.detach()) * gain + shift)
            norm_state.set_attribute("forward", _identity)
        except BaseException:
            linear_state.restore()
            norm_state.restore()
            raise
        self.states = [linear_state, norm_state]

    def remove(self):
        """Undo the merge."""
        for state in reversed(self.states):
            state.restore()
        self.states = []


class FaceVGGCanonizer(CompositeCanonizer):
    """BatchNorm merge, PixelNorm fold and (optionally) the contrastive head, undone in reverse order.

    Parameters
    ----------
    contrastive : bool
        Also apply :class:`ContrastiveHeadCanonizer`.
    """

    def __init__(self, contrastive: bool = True):
        self.contrastive = contrastive
        canonizers = [MergeBatchNormCanonizer(), PixelNormCanonizer()]
        if contrastive:
            canonizers.append(ContrastiveHeadCanonizer())
        super().__init__(canonizers)
        self.applied: list[Canonizer] = []

    def copy(self) -> "FaceVGGCanonizer":
        return self.__class__(self.contrastive)

    def apply(self, root_module: nn.Module) -> list["FaceVGGCanonizer"]:
        """Apply all canonizers; the single returned handle removes them in reverse order."""
        handle = self.copy()
        try:
            for canonizer in self.canonizers:
                handle.applied += canonizer.apply(root_module)
        except BaseException:
            handle.remove()
            raise
        return [handle]

    def remove(self):
        """Undo every applied canonizer, last first."""
        while self.applied:
            self.applied.pop().remove()

    def __repr__(self) -> str:
        return f"FaceVGGCanonizer(contrastive={self.contrastive})"
