"""Hostile but realistic use of ``attribute``: threads, bad parameters, models the methods do not fit, bad input.

Every case must end in a clear package error (naming the input and what was expected) or in correct maps, and the
model must be left exactly as it was.
"""
import threading

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

import lrp_faces
from lrp_faces import methods
from lrp_faces.attribution import InputError, TargetError
from lrp_faces.errors import LRPFacesError
from lrp_faces.methods import NonFiniteRelevanceError
from lrp_faces.model_checks import (ModelOutputError, ModelStructureError, NonFiniteWeightsError,
                                    minimum_image_size)
from lrp_faces.module_state import model_lock
from lrp_faces.nn import PixelNorm
from lrp_faces.parameters import ParameterError, ParameterTypeError

from conftest import small_vgg
from test_canonizers import assert_restored, snapshot


@pytest.fixture
def faces():
    return torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------------------------------------ threads
def run_in_threads(work, count=2):
    errors = []

    def guarded():
        try:
            work()
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=guarded) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors


def test_two_threads_attributing_with_one_model_leave_it_bit_identical_and_get_the_sequential_maps(faces):
    model = small_vgg(batch_norm=True)
    before = snapshot(model)
    logits = model(faces).detach()
    expected = lrp_faces.attribute(model, faces, batch_size=1)
    results = []

    def work():
        for _ in range(3):
            results.append(lrp_faces.attribute(model, faces, batch_size=1))

    run_in_threads(work)
    assert_restored(model, before)
    assert torch.equal(model(faces).detach(), logits)
    assert len(results) == 6 and all(torch.equal(result, expected) for result in results)


def test_threads_calling_explain_directly_are_serialised_too(faces):
    model = small_vgg(batch_norm=True)
    before = snapshot(model)
    method = methods.get("epsilon_gamma_box")
    expected = method.explain(model, faces, None).relevance
    results = []

    def work():
        for _ in range(3):
            results.append(method.explain(model, faces, None).relevance)

    run_in_threads(work)
    assert_restored(model, before)
    assert all(torch.equal(result, expected) for result in results)


def test_explain_waits_for_the_model_lock(faces):
    model = small_vgg()
    finished = threading.Event()
    lock = model_lock(model)
    lock.acquire()
    try:
        thread = threading.Thread(target=lambda: (methods.get("epsilon_gamma_box").explain(model, faces, None),
                                                  finished.set()))
        thread.start()
        assert not finished.wait(0.5)
    finally:
        lock.release()
    thread.join(600)
    assert finished.is_set()


# --------------------------------------------------------------------------------------------- method parameters
BAD_PARAMETERS = [
    ("epsilon_gamma_box", {"epsilon": 0}, ParameterError, "epsilon must be a finite number > 0, got 0"),
    ("epsilon_gamma_box", {"epsilon": -1}, ParameterError, "epsilon must be a finite number > 0"),
    ("epsilon_gamma_box", {"gamma": float("nan")}, ParameterError, "gamma must be a finite number >= 0, got nan"),
    ("epsilon_gamma_box", {"gamma": -1}, ParameterError, "gamma must be a finite number >= 0"),
    ("epsilon_gamma_box", {"stabilizer": -1}, ParameterError, "stabilizer must be a finite number > 0"),
    ("epsilon_gamma_box", {"low": 1.0, "high": 0.0}, ParameterError, "low must be below high"),
    ("epsilon_gamma_box", {"high": float("inf")}, ParameterError, "high must be a finite number"),
    ("epsilon_gamma_box", {"gamma": "big"}, ParameterTypeError, "gamma must be a finite number, got str 'big'"),
    ("epsilon_gamma_box", {"gamma": True}, ParameterTypeError, "gamma must be a finite number, got bool"),
    ("epsilon_plus_flat", {"epsilon": float("nan")}, ParameterError, "epsilon must be a finite number > 0"),
    ("epsilon_alpha2_beta1_flat", {"stabilizer": 0.0}, ParameterError, "stabilizer must be a finite number > 0"),
    ("smoothgrad", {"n_samples": 1.5}, ParameterTypeError, "n_samples must be a positive int, got float 1.5"),
    ("smoothgrad", {"n_samples": 0}, ParameterError, "n_samples must be a positive int, got 0"),
    ("smoothgrad", {"n_samples": True}, ParameterTypeError, "n_samples must be a positive int, got bool"),
    ("smoothgrad", {"noise_level": -0.1}, ParameterError, "noise_level must be a finite number >= 0"),
    ("smoothgrad", {"seed": -1}, ParameterError, r"seed must be an int in \[0, 2\*\*32\)"),
    ("smoothgrad", {"seed": 1.0}, ParameterTypeError, "seed must be an int"),
    ("integrated_gradients", {"steps": 2.5}, ParameterTypeError, "steps must be a positive int, got float 2.5"),
    ("integrated_gradients", {"steps": -3}, ParameterError, "steps must be a positive int"),
    ("integrated_gradients", {"baseline": float("nan")}, ParameterError, "baseline must be a finite number"),
    ("random", {"seed": "a"}, ParameterTypeError, "seed must be an int"),
]


@pytest.mark.parametrize("name, params, error, message", BAD_PARAMETERS)
def test_methods_get_refuses_bad_parameters_naming_them_and_their_range(name, params, error, message):
    with pytest.raises(error, match=f"{name}: {message}"):
        methods.get(name, **params)
    assert issubclass(error, LRPFacesError)


@pytest.mark.parametrize("name, params, error, message", BAD_PARAMETERS[:3] + BAD_PARAMETERS[11:13])
def test_method_constructors_refuse_bad_parameters_too(name, params, error, message):
    cls = type(methods.get(name))
    with pytest.raises(error, match=message):
        cls(**params)


def test_attribute_refuses_bad_parameters_before_touching_the_model(faces):
    model = small_vgg()
    before = snapshot(model)
    with pytest.raises(ParameterError, match="epsilon must be a finite number > 0"):
        lrp_faces.attribute(model, faces, epsilon=0.0)
    assert_restored(model, before)


def test_numpy_numbers_are_accepted_and_stored_as_plain_numbers():
    method = methods.get("smoothgrad", n_samples=np.int64(4), noise_level=np.float32(0.25), seed=np.uint8(3))
    assert method.params == {"n_samples": 4, "noise_level": 0.25, "seed": 3}
    assert [type(value) for value in method.params.values()] == [int, float, int]


def test_a_method_without_parameters_says_so():
    with pytest.raises(ParameterTypeError, match="'gradient' got unknown parameter.*accepts no parameters"):
        methods.get("gradient", gamma=0.5)


# ------------------------------------------------------------------------------------------------- non-finite maps
class NaNForImage3(methods.Gradient):
    """The gradient, with NaN in the map of input image 3: stands in for any method that breaks down."""

    def explain_batch(self, model, images, target, contrastive, first_index):
        explanation = super().explain_batch(model, images, target, contrastive, first_index)
        if first_index <= 3 < first_index + len(images):
            explanation.relevance[3 - first_index] = float("nan")
        return explanation


def test_non_finite_maps_name_the_images_by_their_index_in_the_input(faces):
    with pytest.raises(NonFiniteRelevanceError, match=r"image\(s\) 3 \(indices in the input\).*gradient overflow"):
        lrp_faces.attribute(small_vgg(), faces, method=NaNForImage3(), batch_size=2)


def test_an_overflowing_model_is_named_as_the_cause(faces):
    model = small_vgg()
    with torch.no_grad():
        model.classifier[-1].weight.fill_(3e38)  # finite, but the logits overflow
    before = snapshot(model)
    with pytest.raises(NonFiniteRelevanceError, match=r"image\(s\) 0, 1, 2, 3 .*model's output is NaN or Inf"):
        lrp_faces.attribute(model, faces)
    assert_restored(model, before)


def test_nan_weights_are_refused_naming_the_tensor(faces):
    model = small_vgg()
    with torch.no_grad():
        model.features[2].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteWeightsError, match=r"NaN or Inf \(in features.2.weight\)"):
        lrp_faces.attribute(model, faces)


def test_explain_names_nan_weights_as_the_cause(faces):
    model = small_vgg()
    with torch.no_grad():
        model.classifier[0].bias[0] = float("inf")
    with pytest.raises(NonFiniteRelevanceError, match=r"weights hold NaN or Inf \(in classifier.0.bias\)"):
        methods.get("gradient").explain(model, faces, None, first_index=10)


# ------------------------------------------------------------------------- models the LRP composites do not fit
class TinyResNet(nn.Module):
    """A PixelNorm, a stem and one residual block: every layer type is VGG-like, only forward() adds."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.pixel_norm = PixelNorm.from_preprocessing(lrp_faces.IMAGENET)
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 2))

    def forward(self, images):
        hidden = self.stem(self.pixel_norm(images))
        return self.head(torch.relu(hidden + self.block(hidden)))


@pytest.mark.parametrize("name", ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat"])
def test_lrp_refuses_a_model_with_a_residual_add(name, faces):
    model = TinyResNet().eval()
    before = snapshot(model)
    with pytest.raises(ModelStructureError, match="does not reproduce its output.*residual add.*method='gradient'"):
        lrp_faces.attribute(model, faces, method=name)
    assert_restored(model, before)


def test_lrp_refuses_a_torchvision_resnet_behind_a_pixel_norm(faces):
    torch.manual_seed(0)
    model = nn.Sequential(PixelNorm.from_preprocessing(lrp_faces.IMAGENET),
                          torchvision.models.resnet18(num_classes=2)).eval()
    with pytest.raises(ModelStructureError, match="Sequential: running its layers one after another fails.*not a "
                                                  "plain chain.*method='gradient'"):
        lrp_faces.attribute(model, faces)


def test_gradient_methods_still_explain_a_resnet(faces):
    relevance = lrp_faces.attribute(TinyResNet().eval(), faces, method="gradient")
    assert relevance.shape == (4, 32, 32) and bool(torch.isfinite(relevance).all())


@pytest.mark.parametrize("probabilities", [nn.Softmax(dim=1), nn.LogSoftmax(dim=1), nn.Sigmoid()])
def test_lrp_refuses_a_vgg_followed_by_a_softmax_and_says_to_drop_it(probabilities, faces):
    model = nn.Sequential(small_vgg(), probabilities)
    before = snapshot(model)
    kind = type(probabilities).__name__
    with pytest.raises(ModelStructureError, match=f"has a {kind} at '1'.*drop the {kind}"):
        lrp_faces.attribute(model, faces)
    assert_restored(model, before)


def test_lrp_refuses_layers_it_has_no_rules_for(faces):
    model = small_vgg()
    model.classifier[1] = nn.GELU()
    with pytest.raises(ModelStructureError, match="do not cover: GELU at 'classifier.1'"):
        lrp_faces.attribute(model, faces)


def test_lrp_refuses_a_model_that_does_not_end_in_a_linear_layer(faces):
    model = nn.Sequential(PixelNorm.from_preprocessing(lrp_faces.IMAGENET), nn.Conv2d(3, 2, 3), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with pytest.raises(ModelStructureError, match="ends in Flatten at '4', not in a Linear layer"):
        lrp_faces.attribute(model, faces, contrastive=False)


# -------------------------------------------------------------------------------------------------- bad input
def test_images_below_the_models_minimum_size_name_the_minimum():
    with pytest.raises(InputError, match="16x16 pixels.*needs at least 32x32"):
        lrp_faces.attribute(small_vgg(), torch.rand(2, 3, 16, 16))
    with pytest.raises(InputError, match="40x31 pixels"):
        lrp_faces.attribute(small_vgg(), torch.rand(2, 3, 40, 31))


def test_the_minimum_size_of_vgg16_is_32_pixels():
    with torch.device("meta"):
        model = lrp_faces.vgg16()
    assert minimum_image_size(model) == 32
    assert minimum_image_size(nn.Sequential(nn.Linear(2, 2))) is None


@pytest.mark.parametrize("target, message", [
    (["a", "b", "c", "d"], "integer class indices, got str"),
    ("cat", "got str 'cat'"),
    ({0: 1}, "got dict"),
    ([], "target is empty"),
    ({1, 2}, "got set"),
    ([0.5, 1, 1, 0], "integer class indices, got dtype torch.float64"),
    ([True, False, True, False], "integer class indices, got dtype torch.bool"),
])
def test_targets_that_are_not_class_indices_get_a_clear_error(target, message, faces):
    with pytest.raises(TargetError, match=message):
        lrp_faces.attribute(small_vgg(), faces, target=target)


@pytest.mark.parametrize("contrastive", [None, "yes", 1])
def test_contrastive_must_be_true_or_false(contrastive, faces):
    with pytest.raises(ParameterTypeError, match="contrastive must be True or False"):
        lrp_faces.attribute(small_vgg(), faces, contrastive=contrastive)


class TupleOutput(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        return self.model(images), images.mean()


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "epsilon_gamma_box"])
def test_a_model_returning_a_tuple_is_refused(method, faces):
    with pytest.raises(ModelOutputError, match="returned a tuple, not a tensor.*forward\\(\\) returns only"):
        lrp_faces.attribute(TupleOutput(small_vgg()), faces, method=method)


def test_a_model_returning_one_value_per_image_is_refused(faces):
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, 1), nn.Flatten(0))
    with pytest.raises(ModelOutputError, match=r"returned shape \(4,\) for 4 image\(s\); expected \(4, classes\)"):
        lrp_faces.attribute(model, faces, method="gradient", contrastive=False)


@pytest.mark.parametrize("batch_size, error", [(0, ParameterError), (2.5, ParameterTypeError),
                                               (True, ParameterTypeError)])
def test_batch_size_must_be_a_positive_int(batch_size, error, faces):
    with pytest.raises(error, match="batch_size must be a positive int"):
        lrp_faces.attribute(small_vgg(), faces, batch_size=batch_size)
