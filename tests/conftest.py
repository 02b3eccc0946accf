"""Shared fixtures: small VGG-16s that run in milliseconds on a CPU."""
import pytest
import torch
from torch import nn

import lrp_faces
from lrp_faces.nn import Preprocessing

BGR_PRESET = Preprocessing(mean=(91.0, 103.0, 131.0), std=(58.0, 57.0, 60.0), scale=255.0, channel_order="BGR")
PRESETS = {"imagenet": lrp_faces.IMAGENET, "vggface": lrp_faces.VGGFACE, "bgr": BGR_PRESET}


def randomize_batch_norm(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Give every BatchNorm non-trivial running statistics and affine parameters."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            size = module.num_features
            module.running_mean.copy_(torch.randn(size, generator=generator) * 0.5)
            module.running_var.copy_(torch.rand(size, generator=generator) * 1.5 + 0.25)
            module.weight.data.copy_(torch.rand(size, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(size, generator=generator) * 0.2)
    return model


def trained_scale(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Rescale a freshly initialised model to trained-like magnitudes.

    torchvision initialises the classifier with N(0, 0.01), which makes logits of order 1e-5 on random weights; at
    that scale float32 rounding alone moves LRP maps by ~1e-5 relative (stock zennit included). He-initialised dense
    layers and small non-zero biases give well-conditioned outputs, like a trained network.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Linear):
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator)
                                    * (2.0 / module.in_features) ** 0.5)
            if isinstance(module, (nn.Linear, nn.Conv2d)) and module.bias is not None:
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.05)
    return model


def small_vgg(num_classes=5, preprocessing=lrp_faces.IMAGENET, batch_norm=False, seed=0, dtype=torch.float32):
    """A width-1/8 VGG-16 for 32-64 px inputs, trained-like magnitudes, evaluation mode."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = lrp_faces.vgg16(num_classes=num_classes, preprocessing=preprocessing, width=1 / 8, batch_norm=batch_norm,
                            classifier_width=32, pool_size=2)
    randomize_batch_norm(model, generator)
    trained_scale(model, generator)
    return model.to(dtype).eval()


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a module's tiny models single-threaded: faster, and unaffected by other load on a 2-core machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def images():
    generator = torch.Generator().manual_seed(1)
    batch = torch.rand(4, 3, 48, 48, generator=generator)
    batch[0, :, :2] = 1.0  # saturated borders: padding must be exact there
    batch[1, :, :, -3:] = 0.0
    return batch
