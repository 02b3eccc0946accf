"""Fast, exact LRP rules as zennit hooks.

The rules give the same relevance as zennit's stock rules of the same name, but compute it with less work:

- the layer's own gradient is never computed and thrown away: the module runs without an autograd graph and a
  custom autograd node computes the relevance directly;
- the stored forward output serves as the unmodified output ``z`` instead of a re-run;
- for non-negative inputs (every conv after a ReLU in a VGG) the terms of negative inputs, which are exactly zero,
  are skipped, so Gamma needs one modified forward and one transposed convolution. A guard falls back to the
  general form as soon as a negative input appears;
- inputs are not copied; constant inputs (ZBox bounds, Flat ones) run as a batch of one.

The outputs of a layer followed by an in-place ReLU are rectified before the backward pass. This is exact: the
relevance arriving at an output that the ReLU set to zero is zero for every rule here (each distributes
``input * something`` downwards), so its denominator never matters. Rules are not twice differentiable.
"""
from __future__ import annotations

import torch
from torch import nn
from zennit.core import Hook, RemovableHandle, RemovableHandleList

__all__ = ["FastRule", "Epsilon", "Gamma", "ZPlus", "AlphaBeta", "ZBox", "Flat", "Norm"]


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
            relevance_in = ctx.rule.relevance(ctx.module, ctx.input, ctx.output, relevance)
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

    def relevance(self, module: nn.Module, input: torch.Tensor, output: torch.Tensor,
                  relevance: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.params.items())
        return f"{type(self).__name__}({arguments})"


def forward_with(module: nn.Module, input: torch.Tensor, weight, bias) -> torch.Tensor:
    """Run ``module.forward`` with ``weight`` and ``bias`` swapped in, without hooks or autograd."""
    parameters = module._parameters
    saved = {name: parameters[name] for name in ("weight", "bias") if name in parameters}
    try:
        parameters["weight"] = weight
        if "bias" in parameters:
            parameters["bias"] = bias
        with torch.no_grad():
            return module.forward(input)
    finally:
        parameters.update(saved)


def input_vjp(module: nn.Module, input: torch.Tensor, grad_output: torch.Tensor, weight=None) -> torch.Tensor:
    """Vector-Jacobian product of the module (with ``weight`` swapped in) with respect to its input."""
    if weight is None:
        weight = getattr(module, "weight", None)
    if isinstance(module, nn.Conv2d) and module.padding_mode == "zeros" and not isinstance(module.padding, str):
        return torch.nn.grad.conv2d_input(input.shape, weight, grad_output, module.stride, module.padding,
                                          module.dilation, module.groups).expand(input.shape)
    if isinstance(module, nn.Linear):
        return (grad_output @ weight).expand(input.shape)
    with torch.enable_grad():
        leaf = input.detach().requires_grad_()
        if weight is None:
            output = module.forward(leaf)
        else:
            parameters = module._parameters
            saved = parameters["weight"]
            parameters["weight"] = weight
            try:
                output = module.forward(leaf)
            finally:
                parameters["weight"] = saved
        return torch.autograd.grad(output, leaf, grad_output)[0]


def _positive(tensor):
    return None if tensor is None else tensor.clamp(min=0)


def _negative(tensor):
    return None if tensor is None else tensor.clamp(max=0)


def _amplified(tensor, gamma, part):
    """``tensor + gamma * part(tensor)`` in one allocation (γ-modified weights)."""
    if tensor is None:
        return None
    return part(tensor).mul_(gamma).add_(tensor)


def stabilized(denominator: torch.Tensor, stabilizer, owned: bool = False) -> torch.Tensor:
    """zennit's ``stabilize``: add ``stabilizer`` with the sign of each entry (+ for zero).

    Works in place on ``denominator`` when ``owned``; a callable ``stabilizer`` is applied as it is.
    """
    if callable(stabilizer):
        return stabilizer(denominator)
    if not owned:
        denominator = denominator.clone()
    shift = torch.tensor(stabilizer, dtype=denominator.dtype, device=denominator.device)
    return denominator.add_(torch.where(denominator < 0, -shift, shift))


def _divide(relevance: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """``relevance / denominator``, written into ``denominator`` (which must be owned and stabilised)."""
    return torch.div(relevance, denominator, out=denominator)


def _non_negative(tensor: torch.Tensor) -> bool:
    return bool(tensor.min() >= 0)


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

    @staticmethod
    def has_linear_forward(module):
        """False for a convolution with a folded PixelNorm, whose forward shifts its input."""
        return getattr(module, "input_shift", None) is None


class Epsilon(_LinearRule):
    """LRP-ε: ``R_i = x_i * sum_j w_ij R_j / (z_j + ε sign(z_j))``, as zennit's ``Epsilon``.

    Parameters
    ----------
    epsilon : float or callable
        Stabiliser added with the sign of the denominator.
    zero_params : list of str, optional
        Parameters set to zero for the rule.
    """

    def __init__(self, epsilon=1e-6, zero_params=None):
        super().__init__(epsilon=epsilon, zero_params=zero_params)

    def relevance(self, module, input, output, relevance):
        weight, _ = self.parameters_of(module)
        denominator = stabilized(self.unmodified_output(module, input, output), self.params["epsilon"])
        return input_vjp(module, input, _divide(relevance, denominator), weight).mul_(input)


class Gamma(_LinearRule):
    """Generalised LRP-γ, as zennit's ``Gamma``: positive weights (of outputs with the same sign) amplified by γ.

    For non-negative inputs only the term of the positive outputs is computed (plus the negative outputs' term,
    where relevance reaches them).

    Parameters
    ----------
    gamma : float
        Amplification of the positive (for positive outputs) or negative (for negative outputs) weights.
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    def __init__(self, gamma=0.25, stabilizer=1e-6, zero_params=None):
        super().__init__(gamma=gamma, stabilizer=stabilizer, zero_params=zero_params)

    def relevance(self, module, input, output, relevance):
        gamma, stabilizer = self.params["gamma"], self.params["stabilizer"]
        weight, bias = self.parameters_of(module)
        weight_up, bias_up = _amplified(weight, gamma, _positive), _amplified(bias, gamma, _positive)

        if self.has_linear_forward(module) and _non_negative(input):
            scaled = _divide(relevance, stabilized(forward_with(module, input, weight_up, bias_up), stabilizer, True))
            scaled.masked_fill_(output <= 0, 0.0)
            gradient = input_vjp(module, input, scaled, weight_up)
            if not _non_negative(output):
                relevance_down = relevance * (output < 0)
                if bool(relevance_down.any()):
                    weight_down, bias_down = _amplified(weight, gamma, _negative), _amplified(bias, gamma, _negative)
                    denominator = stabilized(forward_with(module, input, weight_down, bias_down), stabilizer, True)
                    gradient += input_vjp(module, input, _divide(relevance_down, denominator), weight_down)
            return gradient.mul_(input)

        weight_down, bias_down = _amplified(weight, gamma, _negative), _amplified(bias, gamma, _negative)
        positive_input, negative_input = input.clamp(min=0), input.clamp(max=0)
        output_up = (forward_with(module, positive_input, weight_up, bias_up)
                     + forward_with(module, negative_input, weight_down, None))
        output_down = (forward_with(module, positive_input, weight_down, bias_down)
                       + forward_with(module, negative_input, weight_up, None))
        scaled_up = _divide(relevance * (output > 0), stabilized(output_up, stabilizer, True))
        scaled_down = _divide(relevance * (output < 0), stabilized(output_down, stabilizer, True))
        return (positive_input * (input_vjp(module, input, scaled_up, weight_up)
                                  + input_vjp(module, input, scaled_down, weight_down))
                + negative_input * (input_vjp(module, input, scaled_up, weight_down)
                                    + input_vjp(module, input, scaled_down, weight_up)))


class ZPlus(_LinearRule):
    """LRP-z+ (α=1, β=0), as zennit's ``ZPlus``.

    Parameters
    ----------
    stabilizer : float or callable
    zero_params : list of str, optional
    """

    def __init__(self, stabilizer=1e-6, zero_params=None):
        super().__init__(stabilizer=stabilizer, zero_params=zero_params)

    def relevance(self, module, input, output, relevance):
        stabilizer = self.params["stabilizer"]
        weight, bias = self.parameters_of(module)
        weight_pos, weight_neg = _positive(weight), _negative(weight)
        if self.has_linear_forward(module) and _non_negative(input):
            denominator = stabilized(forward_with(module, input, weight_pos, _positive(bias)), stabilizer, True)
            return input_vjp(module, input, _divide(relevance, denominator), weight_pos).mul_(input)
        positive_input, negative_input = input.clamp(min=0), input.clamp(max=0)
        denominator = (forward_with(module, positive_input, weight_pos, _positive(bias))
                       + forward_with(module, negative_input, weight_neg, None))
        scaled = _divide(relevance, stabilized(denominator, stabilizer, True))
        return (positive_input * input_vjp(module, input, scaled, weight_pos)
                + negative_input * input_vjp(module, input, scaled, weight_neg))


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
        if alpha < 0 or beta < 0 or alpha - beta != 1:
            raise ValueError(f"AlphaBeta needs alpha, beta >= 0 with alpha - beta == 1, got alpha={alpha}, beta={beta}")
        super().__init__(alpha=alpha, beta=beta, stabilizer=stabilizer, zero_params=zero_params)

    def relevance(self, module, input, output, relevance):
        alpha, beta, stabilizer = self.params["alpha"], self.params["beta"], self.params["stabilizer"]
        weight, bias = self.parameters_of(module)
        weight_pos, weight_neg = _positive(weight), _negative(weight)
        if self.has_linear_forward(module) and _non_negative(input):
            denominator_pos = stabilized(forward_with(module, input, weight_pos, _positive(bias)), stabilizer, True)
            denominator_neg = stabilized(forward_with(module, input, weight_neg, _negative(bias)), stabilizer, True)
            gradient = input_vjp(module, input, _divide(relevance, denominator_pos), weight_pos).mul_(alpha)
            gradient -= input_vjp(module, input, _divide(relevance, denominator_neg), weight_neg).mul_(beta)
            return gradient.mul_(input)
        positive_input, negative_input = input.clamp(min=0), input.clamp(max=0)
        denominator_pos = (forward_with(module, positive_input, weight_pos, _positive(bias))
                           + forward_with(module, negative_input, weight_neg, None))
        denominator_neg = (forward_with(module, positive_input, weight_neg, _negative(bias))
                           + forward_with(module, negative_input, weight_pos, None))
        scaled_pos = _divide(relevance, stabilized(denominator_pos, stabilizer, True))
        scaled_neg = _divide(relevance, stabilized(denominator_neg, stabilizer, True))
        return (alpha * (positive_input * input_vjp(module, input, scaled_pos, weight_pos)
                         + negative_input * input_vjp(module, input, scaled_pos, weight_neg))
                - beta * (positive_input * input_vjp(module, input, scaled_neg, weight_neg)
                          + negative_input * input_vjp(module, input, scaled_neg, weight_pos)))


def _constant_input(value, input: torch.Tensor) -> torch.Tensor:
    """``value`` as an input tensor: a batch of one unless it is given per image."""
    tensor = torch.as_tensor(value, dtype=input.dtype, device=input.device)
    if tensor.ndim == input.ndim and tensor.shape[0] == input.shape[0] and input.shape[0] > 1:
        return tensor
    return torch.broadcast_to(tensor, (1, *input.shape[1:]))


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

    def __init__(self, low=0.0, high=1.0, stabilizer=1e-6, zero_params=None):
        super().__init__(low=low, high=high, stabilizer=stabilizer, zero_params=zero_params)

    def relevance(self, module, input, output, relevance):
        weight, bias = self.parameters_of(module)
        low, high = _constant_input(self.params["low"], input), _constant_input(self.params["high"], input)
        weight_pos, weight_neg = _positive(weight), _negative(weight)
        output = self.unmodified_output(module, input, output)
        bounds = forward_with(module, low, weight_pos, _positive(bias))
        bounds += forward_with(module, high, weight_neg, _negative(bias))
        denominator = stabilized(output - bounds, self.params["stabilizer"], True)
        scaled = _divide(relevance, denominator)
        # (x - l) w+ + (x - h) w-: the same sum as zennit's x w - l w+ - h w-, without its cancellation
        relevance_in = input_vjp(module, input, scaled, weight_pos).mul_(input - low)
        return relevance_in.add_(input_vjp(module, input, scaled, weight_neg).mul_(input - high))


class Flat(_LinearRule):
    """LRP-flat: relevance spread uniformly over each output's receptive field, as zennit's ``Flat``.

    Parameters
    ----------
    stabilizer : float or callable
    """

    def __init__(self, stabilizer=1e-6):
        super().__init__(stabilizer=stabilizer)

    def relevance(self, module, input, output, relevance):
        ones_weight = torch.ones_like(module.weight)
        ones = torch.ones((1, *input.shape[1:]), dtype=input.dtype, device=input.device)
        shift = getattr(module, "input_shift", None)
        fan_in = forward_with(module, ones if shift is None else ones + shift, ones_weight, None)
        scaled = _divide(relevance, stabilized(fan_in.expand_as(relevance).clone(), self.params["stabilizer"], True))
        return input_vjp(module, input, scaled, ones_weight)


class Norm(FastRule):
    """Relevance in proportion to each input's share of the output, for parameter-free layers such as pooling.

    Parameters
    ----------
    stabilizer : float or callable
    """

    def __init__(self, stabilizer=1e-6):
        super().__init__(stabilizer=stabilizer)

    def relevance(self, module, input, output, relevance):
        scaled = _divide(relevance, stabilized(output, self.params["stabilizer"]))
        return input_vjp(module, input, scaled).mul_(input)
