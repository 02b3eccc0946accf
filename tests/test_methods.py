import pytest
import torch

import lrp_faces
from lrp_faces import methods

from conftest import small_vgg

REQUIRED = ["epsilon_gamma_box", "epsilon_plus_flat", "epsilon_alpha2_beta1_flat", "gradient", "gradient_x_input",
            "smoothgrad", "integrated_gradients", "random"]


def test_registry_holds_the_required_methods():
    assert set(REQUIRED) <= set(methods.names())


@pytest.mark.parametrize("name", REQUIRED)
def test_every_method_returns_finite_maps_of_the_image_size(name):
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    relevance = lrp_faces.attribute(small_vgg(), images, method=name, batch_size=2)
    assert relevance.shape == (3, 32, 32) and bool(torch.isfinite(relevance).all())
    assert relevance.abs().sum() > 0


def test_gradient_is_the_autograd_gradient_of_the_contrastive_output():
    model = small_vgg(num_classes=4, dtype=torch.float64)
    images = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    target = torch.tensor([1, 3])
    leaf = images.clone().requires_grad_()
    logits = model(leaf)
    chosen = logits[torch.arange(2), target]
    (chosen - (logits.sum(1) - chosen) / 3).sum().backward()
    relevance = lrp_faces.attribute(model, images, target=target, method="gradient")
    assert torch.allclose(relevance, leaf.grad.sum(1).float(), rtol=1e-5, atol=1e-9)


def test_integrated_gradients_of_a_linear_model_are_input_times_weight():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 3)).double()
    images = torch.rand(2, 3, 8, 8, dtype=torch.float64)
    relevance = lrp_faces.attribute(model, images, target=[2, 0], method="integrated_gradients", steps=3,
                                    contrastive=False, baseline=0.25)
    weight = model[1].weight.detach().view(3, 3, 8, 8)
    expected = ((images - 0.25) * weight[[2, 0]]).sum(1)
    assert torch.allclose(relevance, expected.float(), rtol=1e-5, atol=1e-7)


def test_integrated_gradients_converge_to_the_output_difference():
    """Completeness: with more steps the attributions sum closer to f(x) - f(baseline)."""
    model = small_vgg(num_classes=3, dtype=torch.float64)
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    target = torch.tensor([0, 2])
    difference = (model(images) - model(torch.zeros_like(images)))[torch.arange(2), target].detach()
    errors = [(lrp_faces.attribute(model, images, target=target, method="integrated_gradients", steps=steps,
                                   contrastive=False).sum((1, 2)).double() - difference).abs().max()
              for steps in (8, 256)]
    assert errors[1] < errors[0] / 4
    assert errors[1] < 0.05 * difference.abs().max()


def test_random_baseline_is_seeded():
    images = torch.rand(2, 3, 32, 32)
    model = small_vgg()
    first = lrp_faces.attribute(model, images, method="random", seed=3)
    assert torch.equal(first, lrp_faces.attribute(model, images, method="random", seed=3))
    assert not torch.equal(first, lrp_faces.attribute(model, images, method="random", seed=4))


def test_smoothgrad_with_zero_noise_is_the_gradient():
    model = small_vgg()
    images = torch.rand(2, 3, 32, 32)
    smooth = lrp_faces.attribute(model, images, method="smoothgrad", noise_level=0.0, n_samples=2)
    assert torch.allclose(smooth, lrp_faces.attribute(model, images, method="gradient"), rtol=1e-5, atol=1e-10)


def test_registering_a_name_twice_is_refused():
    with pytest.raises(ValueError, match="already registered"):
        methods.register("gradient")(methods.Gradient)


def test_methods_take_only_their_own_parameters():
    with pytest.raises(TypeError, match="smoothgrad.*accepts"):
        methods.get("smoothgrad", gamma=0.3)
    assert methods.get("epsilon_gamma_box", gamma=0.5).params["gamma"] == 0.5


@pytest.mark.parametrize("name", ["epsilon_gamma_box", "gradient", "smoothgrad"])
def test_explain_called_directly_runs_in_evaluation_mode_and_restores_the_training_mode(name):
    model = small_vgg().train()  # dropout would make two explanations differ
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    method = methods.get(name)
    first, second = (method.explain(model, images, None).relevance for _ in range(2))
    assert torch.equal(first, second)
    assert model.training and all(module.training for module in model.modules())
    assert all(parameter.requires_grad for parameter in model.parameters())


def test_methods_are_frozen_records_of_their_checked_parameters():
    method = methods.get("epsilon_gamma_box", gamma=1, low=0)
    assert method.params == {"gamma": 1.0, "epsilon": 1e-6, "stabilizer": 1e-6, "low": 0.0, "high": 1.0}
    assert type(method.params["gamma"]) is float and method == methods.get("epsilon_gamma_box", gamma=1.0)
    assert repr(method) == "EpsilonGammaBox(gamma=1.0, epsilon=1e-06, stabilizer=1e-06, low=0.0, high=1.0)"
    with pytest.raises(AttributeError):
        method.gamma = 2.0
