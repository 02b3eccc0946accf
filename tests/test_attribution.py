import numpy as np
import pytest
import torch
from torch import nn
from zennit.composites import EpsilonGammaBox as StockEpsilonGammaBox
from zennit.rules import Pass

import lrp_faces
from lrp_faces import methods
from lrp_faces.attribution import InputError, TargetError
from lrp_faces.nn import PixelNorm

from conftest import PRESETS, small_vgg, trained_scale
from test_canonizers import assert_restored, snapshot


def contrastive_model(model: nn.Module) -> nn.Module:
    """An independent contrastive model: a copy whose last layer computes z_c - mean_{j != c} z_j."""
    import copy
    contrast = copy.deepcopy(model)
    head = contrast.classifier[-1]
    classes = head.out_features
    mixing = (classes * torch.eye(classes, dtype=head.weight.dtype) - 1.0) / (classes - 1)
    with torch.no_grad():
        head.weight.copy_(mixing @ head.weight)
        head.bias.copy_(mixing @ head.bias)
    return contrast


def stock_relevance(model, images, target):
    """Stock zennit EpsilonGammaBox on the uncanonized model, bounds in normalised space.

    The bounds are the model's own normalisation of pixels 0 and 1 (its PixelNorm's mean and std, in the model's
    dtype), so that the reference describes the same network as the model.
    """
    norm = next(module for module in model.modules() if isinstance(module, PixelNorm))
    composite = StockEpsilonGammaBox(low=(0 - norm.mean) / norm.std, high=(norm.scale - norm.mean) / norm.std,
                                     gamma=0.25, epsilon=1e-6, layer_map=[(PixelNorm, Pass())])
    leaf = images.clone().requires_grad_()
    with composite.context(model) as modified:
        logits = modified(leaf)
        seed = torch.zeros_like(logits).scatter_(1, target[:, None], logits.gather(1, target[:, None]).detach())
        (gradient,) = torch.autograd.grad(logits, leaf, seed)
    return gradient.sum(1)


def explained_in_float64(model, images, target, contrastive):
    """The default method's relevance in float64: ``Method.explain`` keeps the model's dtype."""
    return methods.get("epsilon_gamma_box").explain(model.double(), images.double(), target, contrastive).relevance


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
@pytest.mark.parametrize("contrastive", [False, True])
def test_default_method_equals_stock_zennit_epsilon_gamma_box_in_float64(preset, contrastive, images):
    model = small_vgg(preprocessing=PRESETS[preset], dtype=torch.float64)
    target = torch.tensor([0, 3, 1, 4])
    ours = explained_in_float64(model, images, target, contrastive)
    reference_model = contrastive_model(model) if contrastive else model
    reference = stock_relevance(reference_model, images.double(), target)
    assert ours.dtype == torch.float64
    assert (ours - reference).abs().max() <= 1e-10 * reference.abs().max()


@pytest.mark.parametrize("preset", PRESETS, ids=list(PRESETS))
def test_default_method_equals_stock_zennit_in_float32_on_trained_scale_weights(preset, images):
    """float32 rounding depends on the CPU's kernels: 1e-4 of the largest relevance holds on any CPU."""
    model = small_vgg(preprocessing=PRESETS[preset])
    target = torch.tensor([0, 3, 1, 4])
    ours = lrp_faces.attribute(model, images, target=target, contrastive=True)
    reference = stock_relevance(contrastive_model(model), images, target)
    assert (ours - reference).abs().max() <= 1e-4 * reference.abs().max()


def test_default_method_equals_stock_zennit_with_a_merged_batch_norm(images):
    """For VGG-16-BN the reference is the same network with the BatchNorms merged by hand (exactly), in float64."""
    model = small_vgg(batch_norm=True, dtype=torch.float64)
    plain = small_vgg(batch_norm=False, dtype=torch.float64)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.features if isinstance(m, nn.BatchNorm2d)]
    plain_convs = [m for m in plain.features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for conv, norm, target_conv in zip(convs, norms, plain_convs):
            gain = norm.weight / torch.sqrt(norm.running_var + norm.eps)
            target_conv.weight.copy_(conv.weight * gain.view(-1, 1, 1, 1))
            target_conv.bias.copy_((conv.bias - norm.running_mean) * gain + norm.bias)
        plain.classifier.load_state_dict(model.classifier.state_dict())
    images = images.double()
    target = torch.tensor([0, 3, 1, 4])
    ours = explained_in_float64(model, images, target, contrastive=False)
    reference = stock_relevance(plain, images, target)
    assert (ours - reference).abs().max() <= 1e-10 * reference.abs().max()


def test_relevance_is_conserved_by_the_default_method_on_a_bias_free_model():
    model = small_vgg(dtype=torch.float64)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.bias.zero_()
    images = torch.rand(3, 3, 32, 32, dtype=torch.float64)
    result = lrp_faces.attribute(model, images, return_output=True, epsilon=1e-12, stabilizer=1e-12)
    assert torch.allclose(result.relevance.sum((1, 2)), result.output, rtol=1e-4)


def test_output_is_the_contrastive_output_of_the_target(images):
    model = small_vgg(num_classes=6)
    target = torch.tensor([5, 0, 2, 2])
    result = lrp_faces.attribute(model, images, target=target, return_output=True)
    logits = model(images).detach()
    chosen = logits[torch.arange(4), target]
    expected = chosen - (logits.sum(1) - chosen) / 5
    assert torch.allclose(result.output, expected, rtol=1e-4, atol=1e-4 * expected.abs().max().item())
    assert torch.equal(result.prediction, logits.argmax(1))
    assert torch.equal(result.target, target)


def test_target_none_explains_the_predicted_class(images):
    model = small_vgg()
    predicted = model(images).argmax(1)
    assert torch.allclose(lrp_faces.attribute(model, images), lrp_faces.attribute(model, images, target=predicted))


def test_int_and_sequence_targets_are_broadcast_and_converted(images):
    model = small_vgg()
    by_int = lrp_faces.attribute(model, images, target=2)
    by_list = lrp_faces.attribute(model, images, target=[2, 2, 2, 2])
    by_array = lrp_faces.attribute(model, images, target=np.array([2, 2, 2, 2]))
    assert torch.equal(by_int, by_list) and torch.equal(by_list, by_array)


@pytest.mark.parametrize("method", ["epsilon_gamma_box", "smoothgrad", "random"])
def test_results_do_not_depend_on_the_batch_size(method, images):
    model = small_vgg()
    one = lrp_faces.attribute(model, images, method=method, batch_size=1)
    all_at_once = lrp_faces.attribute(model, images, method=method, batch_size=4)
    assert torch.allclose(one, all_at_once, rtol=1e-4, atol=1e-4 * one.abs().max().item())


def test_relevance_is_float32_on_the_cpu_with_one_map_per_image(images):
    relevance = lrp_faces.attribute(small_vgg(), images)
    assert relevance.shape == (4, 48, 48) and relevance.dtype == torch.float32 and relevance.device.type == "cpu"


def test_model_is_restored_after_attribution_including_modes_and_gradient_flags(images):
    model = small_vgg(batch_norm=True).train()
    model.features[0].weight.requires_grad_(False)
    before = snapshot(model)
    flags = [parameter.requires_grad for parameter in model.parameters()]
    lrp_faces.attribute(model, images)
    assert_restored(model, before)
    assert model.training and all(module.training for module in model.modules())
    assert flags == [parameter.requires_grad for parameter in model.parameters()]


def test_model_is_restored_when_the_method_fails_midway(images):
    class Exploding(methods.EpsilonGammaBox):
        def explain(self, model, images, target, contrastive=True, first_index=0):
            with methods.registered(self.composite(contrastive), model):
                model(images)
                raise RuntimeError("boom inside the composite")

    model = small_vgg(batch_norm=True)
    before = snapshot(model)
    with pytest.raises(RuntimeError, match="boom"):
        lrp_faces.attribute(model, images, method=Exploding())
    assert_restored(model, before)


@pytest.mark.parametrize("bad, message", [
    (torch.rand(2, 1, 8, 8), r"\(N, 3, H, W\).*got \(2, 1, 8, 8\)"),
    (torch.rand(3, 8, 8), r"add a batch dimension"),
    (torch.randint(0, 255, (2, 3, 8, 8), dtype=torch.uint8), "floating point.*uint8"),
    (torch.full((2, 3, 8, 8), 2.0), r"\[0, 1\]"),
    (torch.zeros(0, 3, 8, 8), "empty"),
    ([[1.0]], "torch.Tensor"),
])
def test_bad_images_get_a_clear_error(bad, message):
    with pytest.raises(InputError, match=message):
        lrp_faces.attribute(small_vgg(), bad)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_nan_and_inf_name_the_images_that_hold_them(value):
    images = torch.rand(3, 3, 8, 8)
    images[2, 1, 3, 3] = value
    with pytest.raises(InputError, match=r"NaN or Inf.*\[2\]"):
        lrp_faces.attribute(small_vgg(), images)


@pytest.mark.parametrize("target, message", [
    (5, r"out of range.*5 classes"),
    ([0, 1, -1, 0], r"\[-1\] out of range"),
    ([0, 1], "2 entries but there are 4 images"),
    (torch.tensor([0.0, 1.0, 1.0, 0.0]), "integer class indices"),
])
def test_bad_targets_get_a_clear_error(target, message, images):
    with pytest.raises(TargetError, match=message):
        lrp_faces.attribute(small_vgg(), images, target=target)


def test_unknown_method_lists_the_known_ones(images):
    with pytest.raises(methods.UnknownMethodError, match="known methods: .*epsilon_gamma_box.*smoothgrad"):
        lrp_faces.attribute(small_vgg(), images, method="deep_lift")


def test_unknown_method_parameter_names_the_accepted_ones(images):
    with pytest.raises(TypeError, match="accepts.*gamma"):
        lrp_faces.attribute(small_vgg(), images, gama=0.5)


@pytest.mark.slow
def test_full_size_vgg16_at_224_px_equals_stock_zennit_in_float64():
    """The real path: full-width VGG-16 with torchvision's initialisation, 224 px, two images, in float64.

    torchvision's N(0, 0.01) classifier makes these maps ill-conditioned (float32 rounding alone moves them by
    ~1e-3 of the largest relevance, differently on each CPU); in float64 ours and zennit's agree to ~1e-12.
    """
    torch.manual_seed(0)
    model = lrp_faces.vgg16(num_classes=2, preprocessing=lrp_faces.VGGFACE).double().eval()
    images = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.tensor([1, 0])
    explanation = methods.get("epsilon_gamma_box").explain(model, images, target, contrastive=False)
    reference = stock_relevance(model, images, target)
    assert explanation.relevance.shape == (2, 224, 224) and explanation.relevance.dtype == torch.float64
    assert (explanation.relevance - reference).abs().max() <= 1e-8 * reference.abs().max()
    # torchvision initialises all biases to zero: relevance is conserved up to the stabilisers
    assert torch.allclose(explanation.relevance.sum((1, 2)), explanation.output, rtol=2e-2)


@pytest.mark.slow
def test_full_size_vgg16_at_224_px_in_float32_is_close_to_stock_zennit_on_trained_scale_weights():
    """float32 through ``attribute`` on well-conditioned weights: 4e-4 of the largest relevance on the development
    CPU (stock zennit's own float32 error is of that order); 1e-2 holds on any CPU and still catches a wrong rule."""
    torch.manual_seed(0)
    model = trained_scale(lrp_faces.vgg16(num_classes=2, preprocessing=lrp_faces.VGGFACE),
                          torch.Generator().manual_seed(0)).eval()
    images = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ours = lrp_faces.attribute(model, images, target=[1], contrastive=False)
    reference = stock_relevance(model, images, torch.tensor([1]))
    assert (ours - reference).abs().max() <= 1e-2 * reference.abs().max()
