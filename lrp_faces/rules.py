"""Fast, exact LRP rules as zennit hooks.

The rules give the same relevance as zennit's stock rules of the same name, but compute it with less work:

- the layer's own gradient is never computed and thrown away: the module runs without an autograd graph and a
  custom autograd node computes the relevance directly;
- the stored forward output serves as the unmodified output ``z`` instead of a re-run;
- for non-negative inputs (every conv after a ReLU in a VGG) the terms of negative inputs, which are exactly zero,
  are skipped, so Gamma needs one modified forward and one transposed convolution. A guard falls back to the
  general form as soon as a negative input appears;
- the first convolution, which holds the folded PixelNorm after
  :class:`~lrp_faces.canonizers.PixelNormCanonizer`, takes ZBox (bounds in pixel space) or Flat; other rules
  refuse it when they are registered;
- inputs are not copied; constant inputs (ZBox bounds, Flat ones) run as a batch of one;
- large layers are explained a few images at a time, and elementwise work runs in chunks, so the memory LRP needs
  beyond the plain gradient stays small (see :data:`CHUNK_ELEMENTS`).

The outputs of a layer followed by an in-place ReLU are rectified before the backward pass. This is exact: the
relevance arriving at an output that the ReLU set to zero is zero for every rule here (each distributes
``input * something`` downwards), so its denominator never matters. Rules are not twice differentiable.
"""
from __future__ import annotations

import torch
from torch import nn
from zennit.core import Hook, RemovableHandle, RemovableHandleList

from . import parameters as checked
from .errors import LRPFacesError
from .module_state import swapped_parameters

__all__ = ["FastRule", "Epsilon", "Gamma", "ZPlus", "AlphaBeta", "ZBox", "Flat", "Norm", "RuleError"]


class RuleError(LRPFacesError, ValueError):
    """A rule registered on a layer it cannot explain."""


class _RelevanceNode(torch.autograd.Function):
    """Autograd node standing in for a module: its backward is the rule's relevance map."""

    @staticmethod
    def forward(ctx, rule, module, input, output):
        ctx.rule = rule
        ctx.module = module
        ctx.input = input.detach()
        ctx.output = output.detach()
        ctx.mark_dirty(output)
        return output

    @staticmethod
    def backward(ctx, relevance):
        if ctx.rule.active:
            relevance_in = ctx.rule.relevance_in_chunks(ctx.module, ctx.input, ctx.output, relevance)
        else:
            relevance_in = input_vjp(ctx.module, ctx.input, relevance)
        ctx.input = ctx.output = None
        return None, None, relevance_in, None


class FastRule(Hook):
    """Base of the fast rules: a zennit hook whose backward is :meth:`relevance`.

    Subclasses implement ``relevance(module, input, output, relevance) -> relevance of the input``.
    """

    def __init__(self, **params):
        super().__init__()
        self.params = params
        self._pending_inputs: list[torch.Tensor] = []

    def copy(self) -> "FastRule":
        return self.__class__(**self.params)

    def register(self, module: nn.Module) -> RemovableHandleList:
        self.check_module(module)
        return RemovableHandleList([
            RemovableHandle(self),
            module.register_forward_pre_hook(self._detach_input),
            module.register_forward_hook(self._attach_relevance),
        ])

    def remove(self):
        self._pending_inputs.clear()
        super().remove()

    def _detach_input(self, module, args):
        input = args[0]
        if not (torch.is_grad_enabled() and isinstance(input, torch.Tensor) and input.requires_grad):
            return None
        self._pending_inputs.append(input)
        return (input.detach(), *args[1:])

    def _attach_relevance(self, module, args, output):
        if not self._pending_inputs:
            return None
        input = self._pending_inputs.pop()
        return _RelevanceNode.apply(self, module, input, output.detach())

    def check_module(self, module: nn.Module) -> None:
        """Raise :class:`RuleError` if the rule cannot explain ``module``; called when the rule is registered."""

    def relevance(self, module: nn.Module, input: torch.Tensor, output: torch.Tensor,
                  relevance: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def relevance_in_chunks(self, module: nn.Module, input: torch.Tensor, output: torch.Tensor,
                            relevance: torch.Tensor) -> torch.Tensor:
        """:meth:`relevance` for a few images at a time where one image's layer has many elements.

        Images are independent, so the result is the same; the rule's layer-sized temporaries (modified outputs,
        denominators) then exist for at most :func:`chunk_elements` (``layer=True``) elements' worth of images at
        once.
        """
        count = input.shape[0]
        per_image = max(input[0].numel(), output[0].numel(), 1)
        step = max(1, chunk_elements(input.device, layer=True) // per_image)
        if step >= count or relevance.shape[0] != count:
            return self.relevance(module, input, output, relevance)
        result = None
        for start in range(0, count, step):
            images = slice(start, start + step)
            part = self.relevance(module, input[images], output[images], relevance[images])
            if result is None:
                result = part.new_empty((count, *part.shape[1:]))
            result[images] = part
        return result

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({arguments})"


def forward_with(module: nn.Module, input: torch.Tensor, weight, bias) -> torch.Tensor:
    """Run ``module.forward`` with ``weight`` and ``bias`` swapped in, without hooks or autograd."""
    swapped = {"weight": weight, "bias": bias} if hasattr(module, "bias") else {"weight": weight}
    with torch.no_grad(), swapped_parameters(module, **swapped):
        return module.forward(input)


def input_vjp(module: nn.Module, input: torch.Tensor, grad_output: torch.Tensor, weight=None) -> torch.Tensor:
    """Vector-Jacobian product of the module (with ``weight`` swapped in) with respect to its input."""
    if weight is None:
        weight = getattr(module, "weight", None)
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return torch.nn.grad.conv2d_input(input.shape, weight, grad_output, module.stride, module.padding,
                                          module.dilation, module.groups).expand(input.shape)
    if isinstance(module, nn.Linear):
        return (grad_output @ weight).expand(input.shape)
    swapped = {} if weight is None else {"weight": weight}
    with torch.enable_grad(), swapped_parameters(module, **swapped):
        leaf = input.detach().requires_grad_()
        return torch.autograd.grad(module.forward(leaf), leaf, grad_output)[0]


def _positive(tensor):
    return None if tensor is None else tensor.clamp(min=0)


def _negative(tensor):
    return None if tensor is None else tensor.clamp(max=0)


def _amplified(tensor, gamma, part):
    """``tensor + gamma * part(tensor)`` in one allocation (γ-modified weights)."""
    if tensor is None:
        return None
    return part(tensor).mul_(gamma).add_(tensor)


CHUNK_ELEMENTS = 1 << 20
"""On a CPU, elementwise work on layer-sized tensors runs in chunks of this many elements, so its temporaries stay
small and in cache."""

LAYER_CHUNK_ELEMENTS = 1 << 21
"""On a CPU, a rule runs on as many images at once as keep one layer's input and output within this many elements
(at least one image), so that its modified outputs exist for a few images at a time."""

GPU_CHUNK_ELEMENTS = 1 << 28
"""Both chunk lengths on a GPU, where small kernels waste the device: 1 GiB of float32, so a batch of 224-px images
is one chunk in every layer."""


def chunk_elements(device: torch.device, *, layer: bool = False) -> int:
    """The chunk length of the rules' work on ``device``.

    :data:`LAYER_CHUNK_ELEMENTS` (``layer=True``) or :data:`CHUNK_ELEMENTS` on a CPU, :data:`GPU_CHUNK_ELEMENTS`
    elsewhere.
    """
    if device.type != "cpu":
        return GPU_CHUNK_ELEMENTS
    return LAYER_CHUNK_ELEMENTS if layer else CHUNK_ELEMENTS


def _chunks(*tensors: torch.Tensor | None):
    """Matching flat chunks of equally shaped contiguous tensors (``None`` stays ``None``); else the whole ones."""
    present = [tensor for tensor in tensors if tensor is not None]
    if any(tensor.shape != present[0].shape or not tensor.is_contiguous() for tensor in present):
        yield tensors
        return
    flat = [None if tensor is None else tensor.view(-1) for tensor in tensors]
    length = chunk_elements(present[0].device)
    for start in range(0, present[0].numel(), length):
        yield tuple(None if tensor is None else tensor[start:start + length] for tensor in flat)


def _add_signed_(denominator: torch.Tensor, stabilizer: float) -> torch.Tensor:
    """zennit's ``stabilize`` in place: add ``stabilizer`` with the sign of each entry (+ for zero)."""
    shift = torch.tensor(stabilizer, dtype=denominator.dtype, device=denominator.device)
    return denominator.add_(torch.where(denominator < 0, -shift, shift))


def quotient(relevance: torch.Tensor, denominator: torch.Tensor, stabilizer, output: torch.Tensor | None = None,
             sign: int = 0) -> torch.Tensor:
    """``relevance / (denominator + stabilizer * sign(denominator))``, written into ``denominator``.

    The stabiliser is added as zennit's ``stabilize`` adds it (+ for zero); a callable ``stabilizer`` is applied
    to the denominator as it is. The caller must own ``denominator``.

    With ``sign`` +1 (-1) the quotient is zero wherever ``output`` is not positive (negative), as in the
    generalised γ rule. The work runs in chunks of :data:`CHUNK_ELEMENTS`, so no layer-sized temporary is made
    (callable stabilisers and broadcasting relevance excepted).
    """
    if callable(stabilizer):
        denominator = stabilizer(denominator)
        parts = [(relevance, denominator, output)]
    else:
        parts = _chunks(relevance, denominator, output if sign else None)
    for relevance_part, denominator_part, output_part in parts:
        if not callable(stabilizer):
            _add_signed_(denominator_part, stabilizer)
        torch.div(relevance_part, denominator_part, out=denominator_part)
        if sign:
            denominator_part.masked_fill_(output_part <= 0 if sign > 0 else output_part >= 0, 0.0)
    return denominator


def _non_negative(tensor: torch.Tensor) -> bool:
    return bool(tensor.min() >= 0)


def _signed_forward(module, input, weight_for_positive, weight_for_negative, bias) -> torch.Tensor:
    """``weight_for_positive · max(input, 0) + weight_for_negative · min(input, 0) + bias``."""
    output = forward_with(module, input.clamp(min=0), weight_for_positive, bias)
    output += forward_with(module, input.clamp(max=0), weight_for_negative, None)
    return output


def _signed_vjp(module, input, scaled, weight_for_positive, weight_for_negative) -> torch.Tensor:
    """The relevance of the input for ``scaled`` through the two weights of :func:`_signed_forward`."""
    relevance = input_vjp(module, input, scaled, weight_for_positive).mul_(input.clamp(min=0))
    return relevance.add_(input_vjp(module, input, scaled, weight_for_negative).mul_(input.clamp(max=0)))


class _LinearRule(FastRule):
    """Shared parameter handling of rules for Conv2d and Linear layers."""

    def parameters_of(self, module):
        zero_params = self.params.get("zero_params") or ()
        if isinstance(zero_params, str):
            zero_params = (zero_params,)
        weight, bias = module.weight.detach(), module.bias
        bias = None if bias is None else bias.detach()
        if "weight" in zero_params:
            weight = torch.zeros_like(weight)
        if "bias" in zero_params and bias is not None:
            bias = torch.zeros_like(bias)
        return weight, bias

    def unmodified_output(self, module, input, output):
        """The layer's output ``z``: the stored one unless parameters are zeroed."""
        if self.params.get("zero_params"):
            return forward_with(module, input, *self.parameters_of(module))
        return output

    handles_shifted_input: bool = False
    """Whether the rule explains a convolution with a folded PixelNorm (whose forward shifts its input)."""

    def check_module(self, module):
        if getattr(module, "input_shift", None) is not None and not self.handles_shifted_input:
            raise RuleError(f"{type(self).__name__} cannot explain the convolution that holds the folded PixelNorm "
                            "(its input is shifted by the neutral pixel); put ZBox or Flat on the first layer")


def _check_zero_params(zero_params, owner: str):
    names = (zero_params,) if isinstance(zero_params, str) else tuple(zero_params or ())
    unknown = sorted(set(names) - {"weight", "bias"})
    if unknown:
        raise checked.ParameterError(f"{owner}: zero_params may name 'weight' and 'bias', got {unknown}")
    return zero_params


class Epsilon(_LinearRule):
    """LRP-ε: ``R_i = x_i * sum_j w_ij R_j / (z_j + ε sign(z_j))``, as zennit's ``Epsilon``.

    Parameters
    ----------
    epsilon : float or callable
        Stabiliser added with the sign of the denominator; > 0.
    zero_params : list of str, optional
        Parameters set to zero for the rule.
    """

    def __init__(self, epsilon=1e-6, zero_params=None):
        super().__init__(epsilon=checked.stabilizer(epsilon, "epsilon", "Epsilon"),
                         zero_params=_check_zero_params(zero_params, "Epsilon"))

    def relevance(self, module, input, output, relevance):
        weight, _ = self.parameters_of(module)
        scaled = quotient(relevance, self.unmodified_output(module, input, output).clone(), self.params["epsilon"])
        return input_vjp(module, input, scaled, weight).mul_(input)


class Gamma(_LinearRule):
    """Generalised LRP-γ, as zennit's ``Gamma``: positive weights (of outputs with the same sign) amplified by γ.

    For non-negative inputs only the term of the positive outputs is computed (plus the negative outputs' term,
    where relevance reaches them).

    Parameters
    ----------
    gamma : float
        Amplification (>= 0) of the positive (for positive outputs) or negative (for negative outputs) weights.
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    def __init__(self, gamma=0.25, stabilizer=1e-6, zero_params=None):
        super().__init__(gamma=checked.non_negative_number(gamma, "gamma", "Gamma"),
                         stabilizer=checked.stabilizer(stabilizer, "stabilizer", "Gamma"),
                         zero_params=_check_zero_params(zero_params, "Gamma"))

    def relevance(self, module, input, output, relevance):
        gamma, stabilizer = self.params["gamma"], self.params["stabilizer"]
        weight, bias = self.parameters_of(module)
        weight_up, bias_up = _amplified(weight, gamma, _positive), _amplified(bias, gamma, _positive)

        def amplified_down():
            return _amplified(weight, gamma, _negative), _amplified(bias, gamma, _negative)

        if _non_negative(input):
            scaled = quotient(relevance, forward_with(module, input, weight_up, bias_up), stabilizer, output, +1)
            gradient = input_vjp(module, input, scaled, weight_up)
            del scaled
            if not _non_negative(output) and bool(((output < 0) & (relevance != 0)).any()):
                weight_down, bias_down = amplified_down()
                scaled = quotient(relevance, forward_with(module, input, weight_down, bias_down), stabilizer,
                                  output, -1)
                gradient += input_vjp(module, input, scaled, weight_down)
            return gradient.mul_(input)

        weight_down, bias_down = amplified_down()
        scaled_up = quotient(relevance, _signed_forward(module, input, weight_up, weight_down, bias_up), stabilizer,
                             output, +1)
        relevance_in = _signed_vjp(module, input, scaled_up, weight_up, weight_down)
        del scaled_up
        scaled_down = quotient(relevance, _signed_forward(module, input, weight_down, weight_up, bias_down),
                               stabilizer, output, -1)
        return relevance_in.add_(_signed_vjp(module, input, scaled_down, weight_down, weight_up))


class AlphaBeta(_LinearRule):
    """LRP-αβ, as zennit's ``AlphaBeta``: positive contributions weighted by α, negative ones by β.

    Parameters
    ----------
    alpha, beta : float
        Non-negative, with ``alpha - beta == 1``.
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    def __init__(self, alpha=2.0, beta=1.0, stabilizer=1e-6, zero_params=None):
        alpha = checked.non_negative_number(alpha, "alpha", "AlphaBeta")
        beta = checked.non_negative_number(beta, "beta", "AlphaBeta")
        if alpha - beta != 1:
            raise checked.ParameterError(
                f"AlphaBeta needs alpha, beta >= 0 with alpha - beta == 1, got alpha={alpha}, beta={beta}")
        super().__init__(alpha=alpha, beta=beta, stabilizer=checked.stabilizer(stabilizer, "stabilizer", "AlphaBeta"),
                         zero_params=_check_zero_params(zero_params, "AlphaBeta"))

    def relevance(self, module, input, output, relevance):
        alpha, beta, stabilizer = self.params.get("alpha", 1.0), self.params.get("beta", 0.0), self.params["stabilizer"]
        weight, bias = self.parameters_of(module)
        weight_pos, weight_neg = _positive(weight), _negative(weight)
        bias_pos, bias_neg = _positive(bias), _negative(bias)
        fast = _non_negative(input)

        def positive_part():  # the relevance of the positive contributions: z+ in the numerator and denominator
            if fast:
                scaled = quotient(relevance, forward_with(module, input, weight_pos, bias_pos), stabilizer)
                return input_vjp(module, input, scaled, weight_pos).mul_(input)
            scaled = quotient(relevance, _signed_forward(module, input, weight_pos, weight_neg, bias_pos), stabilizer)
            return _signed_vjp(module, input, scaled, weight_pos, weight_neg)

        def negative_part():
            if fast:
                scaled = quotient(relevance, forward_with(module, input, weight_neg, bias_neg), stabilizer)
                return input_vjp(module, input, scaled, weight_neg).mul_(input)
            scaled = quotient(relevance, _signed_forward(module, input, weight_neg, weight_pos, bias_neg), stabilizer)
            return _signed_vjp(module, input, scaled, weight_neg, weight_pos)

        relevance_in = positive_part()
        if alpha != 1.0:
            relevance_in.mul_(alpha)
        if beta != 0.0:
            relevance_in.sub_(negative_part().mul_(beta))
        return relevance_in


class ZPlus(AlphaBeta):
    """LRP-z+ (α=1, β=0), as zennit's ``ZPlus``.

    Parameters
    ----------
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    def __init__(self, stabilizer=1e-6, zero_params=None):
        _LinearRule.__init__(self, stabilizer=checked.stabilizer(stabilizer, "stabilizer", "ZPlus"),
                             zero_params=_check_zero_params(zero_params, "ZPlus"))


def _per_image(value, input: torch.Tensor) -> bool:
    """Whether a ZBox bound is given per image of ``input``."""
    return (isinstance(value, torch.Tensor) and value.ndim == input.ndim and value.shape[0] == input.shape[0]
            and input.shape[0] > 1)


def _constant_input(value, input: torch.Tensor) -> torch.Tensor:
    """``value`` as an input tensor: a batch of one unless it is given per image."""
    tensor = torch.as_tensor(value, dtype=input.dtype, device=input.device)
    if _per_image(tensor, input):
        return tensor
    return torch.broadcast_to(tensor, (1, *input.shape[1:]))


def _check_bounds(low, high):
    """Float bounds must be finite with ``low < high``; tensors must be finite and ``low <= high`` everywhere."""
    if isinstance(low, torch.Tensor) or isinstance(high, torch.Tensor):
        low_tensor, high_tensor = torch.as_tensor(low), torch.as_tensor(high)
        if not (bool(torch.isfinite(low_tensor).all()) and bool(torch.isfinite(high_tensor).all())):
            raise checked.ParameterError("ZBox: low and high must be finite")
        if bool((low_tensor > high_tensor).any()):
            raise checked.ParameterError("ZBox: low must not exceed high anywhere")
        return low, high
    low, high = checked.number(low, "low", "ZBox"), checked.number(high, "high", "ZBox")
    if not low < high:
        raise checked.ParameterError(f"ZBox: low must be below high, got low={low}, high={high}")
    return low, high


class ZBox(_LinearRule):
    """LRP-z^B for inputs bounded by ``low`` and ``high``, as zennit's ``ZBox``.

    After :class:`~lrp_faces.canonizers.PixelNormCanonizer` the bounds of [0, 1] images are simply 0 and 1.

    Parameters
    ----------
    low, high : float or tensor
        Bounds of the input, broadcastable to one input image (or given per image).
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    handles_shifted_input = True

    def __init__(self, low=0.0, high=1.0, stabilizer=1e-6, zero_params=None):
        low, high = _check_bounds(low, high)
        super().__init__(low=low, high=high, stabilizer=checked.stabilizer(stabilizer, "stabilizer", "ZBox"),
                         zero_params=_check_zero_params(zero_params, "ZBox"))

    def relevance_in_chunks(self, module, input, output, relevance):
        if _per_image(self.params["low"], input) or _per_image(self.params["high"], input):
            return self.relevance(module, input, output, relevance)  # bounds per image: all images at once
        return super().relevance_in_chunks(module, input, output, relevance)

    def relevance(self, module, input, output, relevance):
        weight, bias = self.parameters_of(module)
        low, high = _constant_input(self.params["low"], input), _constant_input(self.params["high"], input)
        weight_pos, weight_neg = _positive(weight), _negative(weight)
        bounds = forward_with(module, low, weight_pos, _positive(bias))
        bounds += forward_with(module, high, weight_neg, _negative(bias))
        denominator = torch.sub(self.unmodified_output(module, input, output), bounds)
        del bounds
        scaled = quotient(relevance, denominator, self.params["stabilizer"])
        # (x - l) w+ + (x - h) w-: the same sum as zennit's x w - l w+ - h w-, without its cancellation
        relevance_in = input_vjp(module, input, scaled, weight_pos).mul_(input - low)
        return relevance_in.add_(input_vjp(module, input, scaled, weight_neg).mul_(input - high))


class _StabilizedRule:
    """Mixin for rules whose only parameter is the stabiliser."""

    def __init__(self, stabilizer=1e-6):
        super().__init__(stabilizer=checked.stabilizer(stabilizer, "stabilizer", type(self).__name__))


class Flat(_StabilizedRule, _LinearRule):
    """LRP-flat: relevance spread uniformly over each output's receptive field, as zennit's ``Flat``.

    Parameters
    ----------
    stabilizer : float or callable
    """

    handles_shifted_input = True

    def relevance(self, module, input, output, relevance):
        ones_weight = torch.ones_like(module.weight)
        ones = torch.ones((1, *input.shape[1:]), dtype=input.dtype, device=input.device)
        shift = getattr(module, "input_shift", None)
        fan_in = forward_with(module, ones if shift is None else ones + shift, ones_weight, None)
        scaled = quotient(relevance, fan_in.expand_as(relevance).clone(), self.params["stabilizer"])
        return input_vjp(module, input, scaled, ones_weight)


class Norm(_StabilizedRule, FastRule):
    """Relevance in proportion to each input's share of the output, for parameter-free layers such as pooling.

    Parameters
    ----------
    stabilizer : float or callable
    """

    def relevance(self, module, input, output, relevance):
        scaled = quotient(relevance, output.clone(), self.params["stabilizer"])
        return input_vjp(module, input, scaled).mul_(input)
