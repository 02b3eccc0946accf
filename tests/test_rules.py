"""The fast rules against a matrix-form LRP reference written here, and against stock zennit."""
import numpy as np
import pytest
import torch
from torch import nn
from zennit import rules as stock
from zennit.composites import EpsilonGammaBox as StockEpsilonGammaBox
from zennit.composites import LayerMapComposite, SpecialFirstLayerMapComposite
from zennit.types import AvgPool, Convolution, Linear

from lrp_faces import rules
from lrp_faces.canonizers import PixelNormCanonizer
from lrp_faces.methods import registered
from lrp_faces.nn import PixelNorm
from lrp_faces.parameters import ParameterError, ParameterTypeError

from conftest import PRESETS

EPS = 1e-6


# ---------------------------------------------------------------- matrix-form reference (numpy, float64)
def stabilize(values, epsilon=EPS):
    return values + epsilon * np.where(values >= 0, 1.0, -1.0)


def conv_matrix(weight, height, width, padding):
    """Dense matrix of a stride-1 convolution on a (C, H, W) input flattened in C, H, W order."""
    out_channels, in_channels, kernel_h, kernel_w = weight.shape
    out_h, out_w = height + 2 * padding - kernel_h + 1, width + 2 * padding - kernel_w + 1
    matrix = np.zeros((out_channels * out_h * out_w, in_channels * height * width))
    for o in range(out_channels):
        for y in range(out_h):
            for x in range(out_w):
                row = (o * out_h + y) * out_w + x
                for c in range(in_channels):
                    for ky in range(kernel_h):
                        for kx in range(kernel_w):
                            iy, ix = y + ky - padding, x + kx - padding
                            if 0 <= iy < height and 0 <= ix < width:
                                matrix[row, (c * height + iy) * width + ix] += weight[o, c, ky, kx]
    return matrix, (out_channels, out_h, out_w)


def adaptive_avg_matrix(channels, size, out):
    """Dense matrix of AdaptiveAvgPool2d(out) on (channels, size, size)."""
    matrix = np.zeros((channels * out * out, channels * size * size))
    bounds = [(int(np.floor(i * size / out)), int(np.ceil((i + 1) * size / out))) for i in range(out)]
    for c in range(channels):
        for oy, (y0, y1) in enumerate(bounds):
            for ox, (x0, x1) in enumerate(bounds):
                count = (y1 - y0) * (x1 - x0)
                for y in range(y0, y1):
                    for x in range(x0, x1):
                        matrix[(c * out + oy) * out + ox, (c * size + y) * size + x] = 1.0 / count
    return matrix


def max_pool_matrix(activation, channels, size):
    """Selection matrix of 2x2 max pooling at this activation (the gradient routes to the argmax)."""
    half = size // 2
    matrix = np.zeros((channels * half * half, channels * size * size))
    grid = activation.reshape(channels, size, size)
    for c in range(channels):
        for y in range(half):
            for x in range(half):
                window = grid[c, 2 * y:2 * y + 2, 2 * x:2 * x + 2]
                dy, dx = np.unravel_index(np.argmax(window), (2, 2))
                matrix[(c * half + y) * half + x, (c * size + 2 * y + dy) * size + 2 * x + dx] = 1.0
    return matrix


def epsilon_rule(matrix, bias, activation, relevance):
    return activation * (matrix.T @ (relevance / stabilize(matrix @ activation + bias)))


def gamma_rule(matrix, bias, activation, relevance, gamma):
    """Generalised γ (Montavon 2019; zennit's form for inputs of either sign)."""
    output = matrix @ activation + bias
    up, down = matrix + gamma * matrix.clip(min=0), matrix + gamma * matrix.clip(max=0)
    bias_up, bias_down = bias + gamma * bias.clip(min=0), bias + gamma * bias.clip(max=0)
    positive, negative = activation.clip(min=0), activation.clip(max=0)
    scaled_up = relevance * (output > 0) / stabilize(up @ positive + bias_up + down @ negative)
    scaled_down = relevance * (output < 0) / stabilize(down @ positive + bias_down + up @ negative)
    return positive * (up.T @ scaled_up + down.T @ scaled_down) + negative * (down.T @ scaled_up + up.T @ scaled_down)


def zbox_rule(matrix, bias, activation, relevance, low, high):
    positive, negative = matrix.clip(min=0), matrix.clip(max=0)
    denominator = (matrix @ activation + bias) - (positive @ low + bias.clip(min=0)) - (negative @ high + bias.clip(max=0))
    scaled = relevance / stabilize(denominator)
    return activation * (matrix.T @ scaled) - low * (positive.T @ scaled) - high * (negative.T @ scaled)


def norm_rule(matrix, activation, relevance):
    return activation * (matrix.T @ (relevance / stabilize(matrix @ activation)))


class TinyVGG(nn.Sequential):
    """conv-relu-maxpool-conv-relu-avgpool-linear-relu-linear on 6x6 inputs: small enough for dense matrices."""

    def __init__(self, seed=0, zero_bias=False):
        torch.manual_seed(seed)
        super().__init__(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(4, 5, 3, padding=1),
                         nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(20, 6), nn.ReLU(),
                         nn.Linear(6, 3))
        with torch.no_grad():
            for module in self:
                if isinstance(module, (nn.Conv2d, nn.Linear)):
                    module.bias.copy_(torch.zeros_like(module.bias) if zero_bias else torch.randn_like(module.bias) * 0.1)
        self.double().eval()


def reference_relevance(model, image, target, first_rule, conv_rule, dense_rule):
    """Relevance of one (3, 6, 6) image by the matrix-form rules, layer by layer."""
    conv1, conv2, linear1, linear2 = model[0], model[3], model[7], model[9]
    params = lambda layer: (layer.weight.detach().numpy(), layer.bias.detach().numpy())
    a0 = image.numpy().ravel()
    m1, _ = conv_matrix(params(conv1)[0], 6, 6, 1)
    z1 = m1 @ a0 + params(conv1)[1].repeat(36)
    a1 = np.maximum(z1, 0)
    p1 = max_pool_matrix(a1, 4, 6)
    a2 = p1 @ a1
    m2, _ = conv_matrix(params(conv2)[0], 3, 3, 1)
    z2 = m2 @ a2 + params(conv2)[1].repeat(9)
    a3 = np.maximum(z2, 0)
    pool = adaptive_avg_matrix(5, 3, 2)
    a4 = pool @ a3
    w5, b5 = params(linear1)
    a5 = np.maximum(w5 @ a4 + b5, 0)
    w6, b6 = params(linear2)
    logits = w6 @ a5 + b6
    relevance = np.zeros(3)
    relevance[target] = logits[target]
    relevance = dense_rule(w6, b6, a5, relevance)
    relevance = relevance * (w5 @ a4 + b5 > 0)
    relevance = dense_rule(w5, b5, a4, relevance)
    relevance = norm_rule(pool, a3, relevance)
    relevance = relevance * (z2 > 0)
    relevance = conv_rule(m2, params(conv2)[1].repeat(9), a2, relevance)
    relevance = p1.T @ relevance
    relevance = relevance * (z1 > 0)
    relevance = first_rule(m1, params(conv1)[1].repeat(36), a0, relevance)
    return relevance.reshape(3, 6, 6).sum(0), logits[target]


def torch_relevance(model, images, target, composite):
    leaf = images.clone().requires_grad_()
    with composite.context(model) as modified:
        logits = modified(leaf)
        seed = torch.zeros_like(logits)
        seed[torch.arange(len(target)), target] = logits.detach()[torch.arange(len(target)), target]
        (gradient,) = torch.autograd.grad(logits, leaf, seed)
    return gradient.sum(1)


def ours_epsilon_gamma_box(gamma=0.25):
    return SpecialFirstLayerMapComposite(
        layer_map=[(AvgPool, rules.Norm()), (Convolution, rules.Gamma(gamma=gamma)), (nn.Linear, rules.Epsilon())],
        first_map=[(Convolution, rules.ZBox(low=0.0, high=1.0))])


@pytest.fixture
def tiny_images():
    return torch.rand(3, 3, 6, 6, generator=torch.Generator().manual_seed(5), dtype=torch.float64)


@pytest.mark.parametrize("gamma", [0.25, 1.0])
def test_epsilon_gamma_box_matches_the_matrix_form_reference(tiny_images, gamma):
    model = TinyVGG(seed=1)
    target = torch.tensor([0, 2, 1])
    ours = torch_relevance(model, tiny_images, target, ours_epsilon_gamma_box(gamma))
    low, high = np.zeros(108), np.ones(108)
    for index in range(3):
        expected, _ = reference_relevance(
            model, tiny_images[index], int(target[index]),
            first_rule=lambda m, b, a, r: zbox_rule(m, b, a, r, low, high),
            conv_rule=lambda m, b, a, r: gamma_rule(m, b, a, r, gamma),
            dense_rule=epsilon_rule)
        np.testing.assert_allclose(ours[index].numpy(), expected, rtol=1e-9, atol=1e-12 * np.abs(expected).max())


def test_stock_zennit_matches_the_same_reference(tiny_images):
    """The reference is zennit's maths too: stock EpsilonGammaBox agrees with it."""
    model = TinyVGG(seed=1)
    target = torch.tensor([0, 2, 1])
    stock_maps = torch_relevance(model, tiny_images, target, StockEpsilonGammaBox(low=0.0, high=1.0))
    ours = torch_relevance(model, tiny_images, target, ours_epsilon_gamma_box())
    assert torch.allclose(ours, stock_maps, rtol=1e-9, atol=1e-12 * stock_maps.abs().max().item())


def test_epsilon_on_every_layer_with_zero_biases_conserves_relevance():
    model = TinyVGG(seed=2, zero_bias=True).float()
    images = torch.rand(4, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    composite = LayerMapComposite([(AvgPool, rules.Norm(stabilizer=1e-12)), (Linear, rules.Epsilon(epsilon=1e-12))])
    target = model(images).argmax(1)
    relevance = torch_relevance(model, images, target, composite)
    explained = model(images).gather(1, target[:, None])[:, 0]
    assert torch.allclose(relevance.sum((1, 2)), explained, rtol=1e-4, atol=0)


def test_gamma_falls_back_to_the_general_rule_for_negative_inputs():
    """Without a ReLU between two convs the second sees negative inputs: the fast path must not be taken."""
    torch.manual_seed(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 3, 3, padding=1), nn.ReLU(), nn.Flatten(),
                          nn.Linear(27, 2)).double().eval()
    images = torch.rand(2, 3, 3, 3, dtype=torch.float64)
    target = torch.tensor([0, 1])
    composite = lambda gamma_rule_: LayerMapComposite([(Convolution, gamma_rule_), (nn.Linear, stock.Epsilon())])
    ours = torch_relevance(model, images, target, composite(rules.Gamma(gamma=0.5)))
    reference = torch_relevance(model, images, target, composite(stock.Gamma(gamma=0.5)))
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-12 * reference.abs().max().item())
    # and against the closed form, one image at a time
    conv1, conv2, dense = model[0], model[1], model[4]
    m1, _ = conv_matrix(conv1.weight.detach().numpy(), 3, 3, 1)
    m2, _ = conv_matrix(conv2.weight.detach().numpy(), 3, 3, 1)
    b1, b2 = conv1.bias.detach().numpy().repeat(9), conv2.bias.detach().numpy().repeat(9)
    for index in range(2):
        a0 = images[index].numpy().ravel()
        a1 = m1 @ a0 + b1
        assert (a1 < 0).any() and (a1 > 0).any()
        z2 = m2 @ a1 + b2
        a2 = np.maximum(z2, 0)
        w, b = dense.weight.detach().numpy(), dense.bias.detach().numpy()
        relevance = np.zeros(2)
        relevance[index] = (w @ a2 + b)[index]
        relevance = epsilon_rule(w, b, a2, relevance) * (z2 > 0)
        relevance = gamma_rule(m2, b2, a1, relevance, 0.5)
        relevance = gamma_rule(m1, b1, a0, relevance, 0.5)
        np.testing.assert_allclose(ours[index].numpy(), relevance.reshape(3, 3, 3).sum(0), rtol=1e-8,
                                   atol=1e-12 * np.abs(relevance).max())


@pytest.mark.parametrize("name, ours, theirs", [
    ("zplus", rules.ZPlus(), stock.ZPlus()),
    ("alpha2_beta1", rules.AlphaBeta(alpha=2.0, beta=1.0), stock.AlphaBeta(alpha=2.0, beta=1.0)),
    ("alpha1_beta0", rules.AlphaBeta(alpha=1.0, beta=0.0), stock.AlphaBeta(alpha=1.0, beta=0.0)),
    ("gamma", rules.Gamma(gamma=0.1), stock.Gamma(gamma=0.1)),
])
@pytest.mark.parametrize("negative_inputs", [False, True])
def test_fast_rules_equal_stock_zennit_for_inputs_of_either_sign(name, ours, theirs, negative_inputs):
    model = TinyVGG(seed=3)
    images = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    if negative_inputs:
        images = images - 0.5
    target = torch.tensor([1, 2])

    def composite(conv_rule, flat_rule):
        return SpecialFirstLayerMapComposite(
            layer_map=[(AvgPool, stock.Norm()), (Convolution, conv_rule), (nn.Linear, stock.Epsilon())],
            first_map=[(Linear, flat_rule)])

    mine = torch_relevance(model, images, target, composite(ours.copy(), rules.Flat()))
    reference = torch_relevance(model, images, target, composite(theirs, stock.Flat()))
    assert torch.allclose(mine, reference, rtol=1e-9, atol=1e-12 * reference.abs().max().item())


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
def test_flat_on_the_folded_conv_equals_flat_in_normalised_space(preset):
    torch.manual_seed(0)
    model = nn.Sequential(PixelNorm.from_preprocessing(PRESETS[preset]), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 25, 2)).double().eval()
    images = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    target = torch.tensor([0, 1])
    stock_map = torch_relevance(model, images, target, SpecialFirstLayerMapComposite(
        layer_map=[(PixelNorm, stock.Pass()), (nn.Linear, stock.Epsilon())], first_map=[(Linear, stock.Flat())]))
    ours = torch_relevance(model, images, target, SpecialFirstLayerMapComposite(
        layer_map=[(nn.Linear, rules.Epsilon())], first_map=[(Linear, rules.Flat())],
        canonizers=[PixelNormCanonizer()]))
    assert torch.allclose(ours, stock_map, rtol=1e-9, atol=1e-12 * stock_map.abs().max().item())


def test_inactive_rules_give_the_plain_gradient(tiny_images):
    model = TinyVGG(seed=1)
    composite = ours_epsilon_gamma_box()
    leaf = tiny_images.clone().requires_grad_()
    with composite.context(model) as modified, composite.inactive():
        (gradient,) = torch.autograd.grad(modified(leaf)[:, 0].sum(), leaf)
    plain_leaf = tiny_images.clone().requires_grad_()
    (expected,) = torch.autograd.grad(model(plain_leaf)[:, 0].sum(), plain_leaf)
    assert torch.allclose(gradient, expected, rtol=1e-10, atol=1e-14)


def test_rules_leave_the_forward_output_unchanged(tiny_images):
    model = TinyVGG(seed=1)
    expected = model(tiny_images)
    with ours_epsilon_gamma_box().context(model) as modified:
        output = modified(tiny_images.clone().requires_grad_())
    assert torch.equal(output, expected)


def test_alpha_beta_rejects_parameters_that_do_not_differ_by_one():
    with pytest.raises(ValueError, match="alpha - beta == 1"):
        rules.AlphaBeta(alpha=2.0, beta=2.0)


def test_rules_copy_with_their_parameters():
    rule = rules.Gamma(gamma=0.7, stabilizer=1e-3)
    copied = rule.copy()
    assert copied is not rule and copied.params == rule.params


def test_rules_give_the_same_relevance_when_large_layers_run_a_few_images_at_a_time(tiny_images, monkeypatch):
    """Chunks of one image and of 7 elements must not change the maths (float64, all rules of the composites)."""
    model = TinyVGG(seed=1)
    target = torch.tensor([0, 2, 1])
    composites = [ours_epsilon_gamma_box, lambda: SpecialFirstLayerMapComposite(
        layer_map=[(AvgPool, rules.Norm()), (Convolution, rules.AlphaBeta()), (nn.Linear, rules.Epsilon())],
        first_map=[(Linear, rules.Flat())])]
    for make in composites:
        whole = torch_relevance(model, tiny_images, target, make())
        monkeypatch.setattr(rules, "CHUNK_ELEMENTS", 7)
        monkeypatch.setattr(rules, "LAYER_CHUNK_ELEMENTS", 7)
        chunked = torch_relevance(model, tiny_images, target, make())
        monkeypatch.undo()
        assert torch.allclose(chunked, whole, rtol=1e-12, atol=1e-14 * whole.abs().max().item())


def test_zbox_with_bounds_per_image_is_not_split_into_chunks(tiny_images, monkeypatch):
    model = TinyVGG(seed=1)
    target = torch.tensor([0, 2, 1])
    low = torch.zeros(3, 3, 6, 6, dtype=torch.float64)
    high = torch.ones(3, 3, 6, 6, dtype=torch.float64)
    high[1] = 2.0

    def composite(first_rule):
        return SpecialFirstLayerMapComposite(
            layer_map=[(AvgPool, rules.Norm()), (Convolution, rules.Gamma()), (nn.Linear, rules.Epsilon())],
            first_map=[(Convolution, first_rule)])

    monkeypatch.setattr(rules, "LAYER_CHUNK_ELEMENTS", 7)
    ours = torch_relevance(model, tiny_images, target, composite(rules.ZBox(low=low, high=high)))
    reference = torch_relevance(model, tiny_images, target, composite(stock.ZBox(low=low, high=high)))
    assert torch.allclose(ours, reference, rtol=1e-9, atol=1e-12 * reference.abs().max().item())


def zennit_stabilize(values, epsilon):
    """zennit.core.stabilize, written out: add epsilon with the sign of each entry, + for zero."""
    return values + ((values == 0.0) + values.sign()) * epsilon


@pytest.mark.parametrize("sign", [0, 1, -1])
def test_quotient_in_chunks_is_bit_identical_to_zennits_stabilised_division(sign, monkeypatch):
    monkeypatch.setattr(rules, "CHUNK_ELEMENTS", 5)
    generator = torch.Generator().manual_seed(0)
    denominator = torch.randn(3, 4, 5, generator=generator) * 1e-6
    denominator[0, 0, :3] = torch.tensor([0.0, -0.0, -1e-6])
    relevance = torch.randn(3, 4, 5, generator=generator)
    output = torch.randn(3, 4, 5, generator=generator)
    output[1, 1, 1] = 0.0
    expected = relevance / zennit_stabilize(denominator, 1e-6)
    if sign:
        expected = torch.where(output * sign > 0, expected, torch.zeros(()))
    result = rules.quotient(relevance, denominator.clone(), 1e-6, output, sign)
    assert torch.equal(result, expected)


@pytest.mark.parametrize("make, message", [
    (lambda: rules.Epsilon(epsilon=0.0), "epsilon must be a finite number > 0"),
    (lambda: rules.Gamma(gamma=-1.0), "gamma must be a finite number >= 0"),
    (lambda: rules.Gamma(gamma=float("nan")), "gamma must be a finite number"),
    (lambda: rules.ZPlus(stabilizer=-1e-6), "stabilizer must be a finite number > 0"),
    (lambda: rules.ZBox(low=1.0, high=0.0), "low must be below high"),
    (lambda: rules.Flat(stabilizer=float("inf")), "stabilizer must be a finite number"),
    (lambda: rules.Epsilon(zero_params=["weights"]), "zero_params may name"),
])
def test_rules_refuse_parameters_out_of_range(make, message):
    with pytest.raises(ParameterError, match=message):
        make()


def test_rules_refuse_parameters_of_the_wrong_type():
    with pytest.raises(ParameterTypeError, match="Gamma: gamma must be a finite number, got str 'big'"):
        rules.Gamma(gamma="big")


def test_a_callable_stabilizer_is_applied_as_it_is(tiny_images):
    model = TinyVGG(seed=1)
    target = torch.tensor([0, 2, 1])
    composite = lambda epsilon: LayerMapComposite([(AvgPool, rules.Norm()), (nn.Linear, rules.Epsilon(epsilon))])
    by_value = torch_relevance(model, tiny_images, target, composite(1e-3))
    by_callable = torch_relevance(model, tiny_images, target,
                                  composite(lambda values: values + ((values == 0) + values.sign()) * 1e-3))
    assert torch.allclose(by_callable, by_value, rtol=1e-12, atol=0)


def test_zplus_is_alpha_beta_with_alpha_1_and_keeps_its_own_parameters():
    rule = rules.ZPlus(stabilizer=1e-3)
    assert rule.params == {"stabilizer": 1e-3, "zero_params": None} and repr(rule.copy()) == repr(rule)


@pytest.mark.parametrize("rule", [rules.Gamma(), rules.Epsilon(), rules.ZPlus(), rules.AlphaBeta()])
def test_rules_that_cannot_explain_the_folded_first_convolution_refuse_it_and_leave_the_model(rule):
    torch.manual_seed(0)
    model = nn.Sequential(PixelNorm.from_preprocessing(PRESETS["imagenet"]), nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 25, 2)).double().eval()
    weight = model[1].weight
    composite = LayerMapComposite([(Convolution, rule), (nn.Linear, rules.Epsilon())],
                                  canonizers=[PixelNormCanonizer()])
    with pytest.raises(rules.RuleError, match="folded PixelNorm.*ZBox or Flat"):
        with registered(composite, model):  # zennit's own context would leave the canonizer applied
            pass
    assert model[1].weight is weight and "forward" not in vars(model[1]) and "input_shift" not in vars(model[1])
