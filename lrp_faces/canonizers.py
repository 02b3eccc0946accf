"""Zennit canonizers that put a face VGG-16 into the form LRP rules expect.

Each canonizer follows zennit's contract: ``apply(model)`` returns applied copies whose ``remove()`` restores the
model exactly, the original parameter objects included, also when applying fails halfway.
"""
from __future__ import annotations

import contextlib
from abc import abstractmethod
from collections.abc import Iterator

import torch
from torch import nn
from zennit.canonizers import Canonizer, CompositeCanonizer
from zennit.core import collect_leaves

from .errors import LRPFacesError
from .module_state import swapped_attributes, swapped_parameters
from .nn import PixelNorm

__all__ = ["ModuleCanonizer", "PixelNormCanonizer", "ContrastiveHeadCanonizer", "MergeBatchNormCanonizer",
           "FaceVGGCanonizer", "CanonizerError"]


class CanonizerError(LRPFacesError, ValueError):
    """The model lacks the structure a canonizer needs."""


def _identity(input):
    return input


def _describe(module: nn.Module | None) -> str:
    return "nothing" if module is None else type(module).__name__


class ModuleCanonizer(Canonizer):
    """Base of lrp_faces' canonizers: one applied copy per group of modules, each change undone by ``remove``.

    A subclass says which groups of modules it changes (:meth:`groups`) and how (:meth:`change`, which enters
    context managers such as :func:`~lrp_faces.module_state.swapped_parameters` into the given stack). ``apply``
    registers a copy per group; ``register(*modules)`` changes one group; ``remove`` leaves the modules exactly as
    they were. A failure while applying undoes what was already changed.
    """

    def __init__(self):
        self.changes = contextlib.ExitStack()

    @abstractmethod
    def groups(self, root_module: nn.Module) -> Iterator[tuple[nn.Module, ...]]:
        """The groups of modules of ``root_module`` to change; :class:`CanonizerError` if the model lacks them."""

    @abstractmethod
    def change(self, changes: contextlib.ExitStack, *modules: nn.Module) -> None:
        """Change one group of ``modules``, entering every change into ``changes`` so that it can be undone."""

    def apply(self, root_module: nn.Module) -> list["ModuleCanonizer"]:
        """Register a copy of this canonizer on each group of modules; returns the copies."""
        instances = []
        try:
            for modules in self.groups(root_module):
                instance = self.copy()
                instance.register(*modules)
                instances.append(instance)
        except BaseException:
            for instance in reversed(instances):
                instance.remove()
            raise
        return instances

    def register(self, *modules: nn.Module) -> None:
        """Change one group of modules; a failure leaves them unchanged."""
        try:
            self.change(self.changes, *modules)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        """Undo the changes, last first."""
        self.changes.close()


class PixelNormCanonizer(ModuleCanonizer):
    """Fold the model's :class:`~lrp_faces.nn.PixelNorm` into the first convolution.

    Afterwards the PixelNorm is the identity and the convolution computes ``conv(x - neutral_pixel)`` with its
    weights scaled by ``scale / std`` (and reordered for BGR models). Shifting the input instead of the bias is the
    same as padding with each channel's neutral pixel, so the image borders are exact, and it stays exact when a
    rule modifies weights and biases: ZBox in pixel space with bounds 0 and 1 equals ZBox in normalised space.
    The shift is stored on the convolution as ``input_shift`` while registered.
    """

    def groups(self, root_module):
        leaves = list(collect_leaves(root_module))
        positions = [index for index, leaf in enumerate(leaves) if isinstance(leaf, PixelNorm)]
        if not positions:
            raise CanonizerError(
                f"PixelNormCanonizer needs a PixelNorm followed by a Conv2d; {type(root_module).__name__} has no "
                f"PixelNorm (its first leaf is {_describe(leaves[0] if leaves else None)}). Build models with "
                "lrp_faces.vgg16 or put a PixelNorm in front of your network.")
        for position in positions:
            following = leaves[position + 1] if position + 1 < len(leaves) else None
            if not isinstance(following, nn.Conv2d) or following.groups != 1:
                raise CanonizerError(
                    f"PixelNormCanonizer expects a Conv2d with groups=1 right after the PixelNorm, found "
                    f"{_describe(following)}")
            yield leaves[position], following

    def change(self, changes, pixel_norm: PixelNorm, convolution: nn.Conv2d):
        """Fold ``pixel_norm`` into ``convolution``."""
        weight = convolution.weight.detach()
        model_channel = [2, 1, 0] if pixel_norm.channel_order == "BGR" else [0, 1, 2]
        mean = pixel_norm.mean.detach().to(weight).view(3)
        std = pixel_norm.std.detach().to(weight).view(3)
        folded = weight[:, model_channel] * (pixel_norm.scale / std[model_channel]).view(1, 3, 1, 1)
        neutral = (mean[model_channel] / pixel_norm.scale).view(1, 3, 1, 1)
        convolve = convolution.forward  # the convolution's own forward, reading its (folded) weight

        def shifted_forward(input):
            return convolve(input - convolution.input_shift)

        changes.enter_context(swapped_parameters(convolution, weight=folded))
        changes.enter_context(swapped_attributes(convolution, input_shift=neutral, forward=shifted_forward))
        changes.enter_context(swapped_attributes(pixel_norm, forward=_identity))


class ContrastiveHeadCanonizer(ModuleCanonizer):
    """Make output c of the last Linear layer the contrastive output ``z_c - mean_{j != c} z_j``.

    For two classes this is the log-odds; the argmax is unchanged.
    """

    def groups(self, root_module):
        linears = [leaf for leaf in collect_leaves(root_module) if isinstance(leaf, nn.Linear)]
        if not linears:
            raise CanonizerError(
                f"ContrastiveHeadCanonizer needs a final nn.Linear layer; {type(root_module).__name__} has none")
        head = linears[-1]
        if head.out_features < 2:
            raise CanonizerError(
                f"ContrastiveHeadCanonizer needs at least 2 outputs in the last Linear layer, found {head.out_features}")
        yield (head,)

    @staticmethod
    def contrast(values: torch.Tensor) -> torch.Tensor:
        """Map rows of ``values`` (classes along dim 0) to ``v_c - mean_{j != c} v_j``."""
        classes = values.shape[0]
        return (classes * values - values.sum(0, keepdim=True)) / (classes - 1)

    def change(self, changes, head: nn.Linear):
        """Replace the weights and bias of ``head``."""
        contrasted = {"weight": self.contrast(head.weight.detach())}
        if head.bias is not None:
            contrasted["bias"] = self.contrast(head.bias.detach())
        changes.enter_context(swapped_parameters(head, **contrasted))


class MergeBatchNormCanonizer(ModuleCanonizer):
    """Merge every BatchNorm that directly follows a Conv2d or Linear into it, exactly.

    The BatchNorm's ``eps`` goes into the merged scale and the BatchNorm itself becomes an exact identity while
    registered (zennit's own merge either keeps ``eps`` in place or sets it to 0, which recent torch rejects).
    """

    def groups(self, root_module):
        previous = None
        for leaf in collect_leaves(root_module):
            if isinstance(leaf, nn.modules.batchnorm._BatchNorm) and isinstance(previous, (nn.Conv2d, nn.Linear)):
                yield previous, leaf
            previous = leaf

    def change(self, changes, linear: nn.Module, batch_norm: nn.modules.batchnorm._BatchNorm):
        """Merge ``batch_norm`` into ``linear``."""
        if batch_norm.running_mean is None or batch_norm.running_var is None:
            raise CanonizerError(f"cannot merge {batch_norm}: it tracks no running statistics")
        if batch_norm.num_features != linear.weight.shape[0]:
            raise CanonizerError(
                f"cannot merge {batch_norm} into {linear}: {batch_norm.num_features} features vs "
                f"{linear.weight.shape[0]} outputs")
        weight = linear.weight.detach()
        bias = linear.bias.detach() if linear.bias is not None else torch.zeros_like(batch_norm.running_mean)
        gain = batch_norm.running_var.detach().add(batch_norm.eps).rsqrt()
        if batch_norm.weight is not None:
            gain = gain * batch_norm.weight.detach()
        shift = batch_norm.bias.detach() if batch_norm.bias is not None else torch.zeros_like(gain)
        changes.enter_context(swapped_parameters(
            linear, weight=weight * gain.view(-1, *(1,) * (weight.ndim - 1)),
            bias=(bias - batch_norm.running_mean.detach()) * gain + shift))
        changes.enter_context(swapped_attributes(batch_norm, forward=_identity))


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

    def register(self, *modules: nn.Module) -> None:
        """Nothing to do: :meth:`apply` registers the member canonizers."""

    def remove(self):
        """Undo every applied canonizer, last first."""
        while self.applied:
            self.applied.pop().remove()

    def __repr__(self) -> str:
        return f"FaceVGGCanonizer(contrastive={self.contrastive})"
