import inspect

import pytest
import torch
from torch import nn
from zennit.composites import LayerMapComposite
from zennit.rules import Pass, ZBox as StockZBox
from zennit.types import Convolution

import lrp_faces
from lrp_faces.canonizers import (CanonizerError, ContrastiveHeadCanonizer, FaceVGGCanonizer,
                                  MergeBatchNormCanonizer, ModuleCanonizer, PixelNormCanonizer)
from lrp_faces.module_state import swapped_parameters
from lrp_faces.nn import PixelNorm

from conftest import PRESETS, small_vgg


def snapshot(model: nn.Module):
    """Everything a canonizer could change: tensors by value, parameters by identity, plain attributes."""
    state = {name: tensor.clone() for name, tensor in model.state_dict(keep_vars=False).items()}
    parameters = {name: parameter for name, parameter in model.named_parameters()}
    attributes = {name: {key: value for key, value in vars(module).items() if not key.startswith("_")}
                  for name, module in model.named_modules()}
    return state, parameters, attributes


def assert_restored(model, before):
    state, parameters, attributes = before
    after_state, after_parameters, after_attributes = snapshot(model)
    assert state.keys() == after_state.keys()
    for name in state:
        assert torch.equal(state[name], after_state[name]), name
        assert state[name].dtype == after_state[name].dtype
    assert all(parameters[name] is after_parameters[name] for name in parameters)
    assert attributes.keys() == after_attributes.keys()
    for name in attributes:
        assert attributes[name].keys() == after_attributes[name].keys(), name
        for key in attributes[name]:
            assert attributes[name][key] is after_attributes[name][key] or \
                attributes[name][key] == after_attributes[name][key], (name, key)
    for module in model.modules():
        assert "forward" not in vars(module) and "input_shift" not in vars(module)


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
@pytest.mark.parametrize("batch_norm", [False, True])
def test_face_vgg_canonizer_keeps_the_output(preset, batch_norm, images):
    model = small_vgg(preprocessing=PRESETS[preset], batch_norm=batch_norm, dtype=torch.float64)
    images = images.double()
    expected = model(images)
    handles = FaceVGGCanonizer(contrastive=False).apply(model)
    try:
        canonized = model(images)
    finally:
        for handle in handles:
            handle.remove()
    assert torch.allclose(canonized, expected, rtol=1e-10, atol=1e-10 * expected.abs().max().item())


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
@pytest.mark.parametrize("batch_norm", [False, True])
def test_canonized_output_matches_in_float32_within_1e4_of_the_largest_output(preset, batch_norm, images):
    """float32 rounding differs between CPUs: exactness is proven in float64 above, this holds on any CPU."""
    model = small_vgg(preprocessing=PRESETS[preset], batch_norm=batch_norm)
    expected = model(images)
    handle, = FaceVGGCanonizer(contrastive=False).apply(model)
    canonized = model(images)
    handle.remove()
    assert (canonized - expected).abs().max() <= 1e-4 * expected.abs().max()


@pytest.mark.parametrize("preset", ["imagenet", "vggface"])
def test_pixel_norm_fold_is_exact_at_the_borders(preset):
    """Border pixels see zero padding in normalised space; the fold must reproduce it."""
    model = small_vgg(preprocessing=PRESETS[preset], dtype=torch.float64)
    conv = model.features[0]
    images = torch.rand(2, 3, 16, 16, dtype=torch.float64)
    expected = conv(model.pixel_norm(images))
    handle, = PixelNormCanonizer().apply(model)
    folded = conv(model.pixel_norm(images))
    handle.remove()
    assert torch.allclose(folded[..., 0, :], expected[..., 0, :], atol=1e-10)
    assert torch.allclose(folded[..., :, -1], expected[..., :, -1], atol=1e-10)
    assert torch.allclose(folded, expected, atol=1e-10)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("contrastive", [False, True])
def test_removal_restores_every_parameter_and_attribute_bit_for_bit(batch_norm, contrastive):
    model = small_vgg(preprocessing=lrp_faces.VGGFACE, batch_norm=batch_norm)
    before = snapshot(model)
    handle, = FaceVGGCanonizer(contrastive=contrastive).apply(model)
    handle.remove()
    assert_restored(model, before)


def test_composite_context_restores_the_model_when_an_exception_is_raised_inside(images):
    model = small_vgg(batch_norm=True)
    before = snapshot(model)
    composite = LayerMapComposite([], canonizers=[FaceVGGCanonizer()])
    with pytest.raises(RuntimeError, match="inside"):
        with composite.context(model) as modified:
            modified(images)
            raise RuntimeError("raised inside the context")
    assert_restored(model, before)


def test_a_failing_canonizer_undoes_the_ones_applied_before_it():
    model = small_vgg(batch_norm=True)
    model.classifier[-1] = nn.Linear(32, 1)  # contrastive head impossible with one output
    before = snapshot(model)
    with pytest.raises(CanonizerError, match="at least 2 outputs"):
        FaceVGGCanonizer(contrastive=True).apply(model)
    assert_restored(model, before)


def test_removal_order_restores_the_original_first_conv_not_the_merged_one():
    """BN merge and fold both replace the first conv's weights: removing in forward order would leave merged ones."""
    model = small_vgg(batch_norm=True)
    original = model.features[0].weight.detach().clone()
    merge, = MergeBatchNormCanonizer().apply(model)[:1]
    handles = FaceVGGCanonizer().apply(model)
    for handle in handles:
        handle.remove()
    merge.remove()
    assert torch.equal(model.features[0].weight, original)


def test_batch_norm_merge_is_exact_in_float64():
    model = small_vgg(batch_norm=True, dtype=torch.float64)
    images = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    expected = model(images)
    handles = MergeBatchNormCanonizer().apply(model)
    assert len(handles) == 13
    merged = model(images)
    for handle in handles:
        handle.remove()
    assert (merged - expected).abs().max() <= 1e-12 * expected.abs().max()


def test_contrastive_head_gives_the_log_odds_for_two_classes():
    model = small_vgg(num_classes=2, dtype=torch.float64)
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    probabilities = model(images).softmax(1)
    handle, = ContrastiveHeadCanonizer().apply(model)
    contrastive = model(images)
    handle.remove()
    log_odds = torch.log(probabilities / (1 - probabilities))
    assert torch.allclose(contrastive, log_odds, rtol=1e-9, atol=1e-9)


def test_contrastive_head_output_is_target_minus_mean_of_the_others_and_keeps_the_argmax():
    model = small_vgg(num_classes=7, dtype=torch.float64)
    images = torch.rand(6, 3, 32, 32, dtype=torch.float64)
    logits = model(images)
    handle, = ContrastiveHeadCanonizer().apply(model)
    contrastive = model(images)
    handle.remove()
    for column in range(7):
        others = torch.cat([logits[:, :column], logits[:, column + 1:]], 1)
        assert torch.allclose(contrastive[:, column], logits[:, column] - others.mean(1), atol=1e-10)
    assert torch.equal(contrastive.argmax(1), logits.argmax(1))


def test_pixel_norm_canonizer_names_what_it_found_when_there_is_no_pixel_norm():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4, 2))
    with pytest.raises(CanonizerError, match="no PixelNorm.*Conv2d"):
        PixelNormCanonizer().apply(plain)


def test_pixel_norm_canonizer_names_the_module_found_after_the_pixel_norm():
    model = nn.Sequential(PixelNorm.from_preprocessing(lrp_faces.IMAGENET), nn.ReLU(), nn.Conv2d(3, 4, 3))
    with pytest.raises(CanonizerError, match="found ReLU"):
        PixelNormCanonizer().apply(model)


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
def test_zbox_in_pixel_space_on_the_folded_model_equals_zbox_in_normalised_space(preset):
    """Stock zennit ZBox, bounds 0 and 1 on the folded first conv vs normalised bounds on the original."""
    preprocessing = PRESETS[preset]
    torch.manual_seed(3)
    model = nn.Sequential(PixelNorm.from_preprocessing(preprocessing), nn.Conv2d(3, 6, 3, padding=1)).double()
    images = torch.rand(2, 3, 9, 9, dtype=torch.float64)
    images[:, :, 0] = 1.0
    upstream = torch.randn(2, 6, 9, 9, dtype=torch.float64)
    mean = torch.tensor(preprocessing.mean, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(preprocessing.std, dtype=torch.float64).view(1, 3, 1, 1)

    def relevance(composite):
        leaf = images.clone().requires_grad_()
        with composite.context(model) as modified:
            (gradient,) = torch.autograd.grad(modified(leaf), leaf, upstream)
        return gradient.sum(1)

    normalised = relevance(LayerMapComposite([(PixelNorm, Pass()), (Convolution, StockZBox(
        low=(0 - mean) / std, high=(preprocessing.scale - mean) / std))]))
    folded = relevance(LayerMapComposite([(Convolution, StockZBox(low=0.0, high=1.0))],
                                         canonizers=[PixelNormCanonizer()]))
    assert torch.allclose(folded, normalised, atol=1e-10 * normalised.abs().max().item())
    assert torch.allclose(folded[:, 0], normalised[:, 0], atol=1e-10 * normalised.abs().max().item())


def test_state_dict_shows_the_weights_forward_uses_while_canonized(images):
    """No hidden attribute swaps (zennit issue #237): while applied, state_dict() holds the merged weights."""
    model = small_vgg(batch_norm=True)
    original = model.features[0].weight.detach().clone()
    handle, = FaceVGGCanonizer().apply(model)
    try:
        for name, parameter in model.named_parameters():
            assert model.state_dict()[name] is not None and torch.equal(model.state_dict()[name], parameter), name
        assert not torch.equal(model.state_dict()["features.0.weight"], original)
    finally:
        handle.remove()
    assert torch.equal(model.state_dict()["features.0.weight"], original)


class FailingSecondGroup(ModuleCanonizer):
    """Zeroes the weight of each Linear, and fails on the second one after changing it."""

    def groups(self, root_module):
        for module in root_module.modules():
            if isinstance(module, nn.Linear):
                yield (module,)

    def change(self, changes, linear):
        changes.enter_context(swapped_parameters(linear, weight=torch.zeros_like(linear.weight)))
        if linear.out_features == 32 and linear.in_features == 32:
            raise RuntimeError("failed halfway through a group")


def test_a_canonizer_failing_halfway_undoes_its_group_and_the_groups_before():
    model = small_vgg()
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="halfway"):
        FailingSecondGroup().apply(model)
    assert_restored(model, before)


def test_every_canonizer_registers_with_the_same_signature():
    signatures = {cls.__name__: inspect.signature(cls.register) for cls in
                  (PixelNormCanonizer, ContrastiveHeadCanonizer, MergeBatchNormCanonizer, FaceVGGCanonizer)}
    assert len(set(map(str, signatures.values()))) == 1, signatures


def test_a_removed_canonizer_can_be_removed_again_without_effect():
    model = small_vgg(batch_norm=True)
    before = snapshot(model)
    handles = MergeBatchNormCanonizer().apply(model)
    for handle in handles + handles:
        handle.remove()
    assert_restored(model, before)
