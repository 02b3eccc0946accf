"""Device arguments: names resolved and checked, the CPU path unchanged (no GPU runs these tests)."""
import pytest
import torch
from torch import nn

import lrp_faces
from lrp_faces.devices import DeviceError, DeviceTypeError, model_device, moved_to, resolve_device, to_device

from conftest import small_vgg

no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the errors of a machine without CUDA")


@pytest.mark.parametrize("name", ["cpu", "CPU", " cpu ", torch.device("cpu")])
def test_cpu_names_resolve_to_the_cpu(name):
    assert resolve_device(name) == torch.device("cpu")


def test_auto_is_cuda_where_available_else_the_cpu():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.parametrize("name", ["tpu", "cuda:x", "cuda:-1", "gpu", "", "cpu:0:1"])
def test_unknown_device_names_are_refused_with_the_accepted_forms(name):
    with pytest.raises(DeviceError, match="'cpu', 'cuda', 'cuda:N'"):
        resolve_device(name)


@pytest.mark.parametrize("device", [0, None, 1.5, ["cpu"]])
def test_device_arguments_of_the_wrong_type_are_a_type_error(device):
    with pytest.raises(DeviceTypeError, match="device must be a string"):
        resolve_device(device)
    assert issubclass(DeviceTypeError, TypeError)


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1", torch.device("cuda", 0)])
def test_cuda_without_a_gpu_says_cuda_is_not_available(name):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device(name)


def test_meta_and_other_torch_devices_are_not_supported():
    with pytest.raises(DeviceError, match="not supported"):
        resolve_device(torch.device("meta"))


def test_to_device_returns_a_tensor_already_there_without_copying():
    tensor = torch.rand(2, 3)
    assert to_device(tensor, torch.device("cpu")) is tensor


def test_model_device_is_where_the_parameters_are():
    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")


def test_a_model_spread_over_devices_is_refused():
    model = nn.Sequential(nn.Linear(2, 2))
    with torch.device("meta"):
        model.append(nn.Linear(2, 2))
    with pytest.raises(DeviceError, match="several devices.*cpu, meta"):
        model_device(model)


def test_moved_to_the_device_the_model_is_on_moves_nothing():
    model = nn.Linear(2, 2)
    weight = model.weight
    with moved_to(model, torch.device("cpu")) as device:
        assert device == torch.device("cpu") and model.weight is weight
    with moved_to(model, None) as device:
        assert device == torch.device("cpu")


@pytest.mark.parametrize("device", ["cpu", "auto", torch.device("cpu")])
def test_attribute_on_the_cpu_is_bit_identical_whatever_the_device_argument(device):
    if torch.cuda.is_available() and device == "auto":
        pytest.skip("auto means the GPU here")
    model = small_vgg()
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    assert torch.equal(lrp_faces.attribute(model, images, device=device), lrp_faces.attribute(model, images))


@no_cuda
def test_attribute_on_an_unavailable_gpu_fails_before_touching_the_model():
    model = small_vgg()
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    with pytest.raises(DeviceError, match="CUDA is not available"):
        lrp_faces.attribute(model, torch.rand(1, 3, 32, 32), device="cuda")
    assert all(torch.equal(before[name], tensor) for name, tensor in model.state_dict().items())
