"""Temporary changes to modules: swapped parameters and attributes come back as the very same objects."""
import threading

import pytest
import torch
from torch import nn

from lrp_faces.module_state import evaluation_mode, model_lock, swapped_attributes, swapped_parameters


def test_swapped_parameters_run_the_module_with_the_new_values():
    layer = nn.Linear(3, 2)
    weight, bias = torch.randn(2, 3), torch.randn(2)
    inputs = torch.randn(4, 3)
    with swapped_parameters(layer, weight=weight, bias=bias):
        output = layer(inputs)
    assert torch.equal(output, inputs @ weight.T + bias)


def test_swapped_parameters_put_back_the_original_objects_and_state_dict_follows():
    layer = nn.Conv2d(3, 4, 3)
    weight, bias = layer.weight, layer.bias
    replacement = torch.zeros_like(weight)
    with swapped_parameters(layer, weight=replacement, bias=None):
        assert torch.equal(layer.state_dict()["weight"], replacement)  # state_dict sees what forward uses
        assert layer.bias is None and "bias" not in layer.state_dict()
    assert layer.weight is weight and layer.bias is bias
    assert list(layer.state_dict()) == ["weight", "bias"]


def test_swapped_parameters_share_memory_and_keep_gradients_off_where_they_were_off():
    layer = nn.Linear(3, 2)
    layer.weight.requires_grad_(False)
    replacement = torch.randn(2, 3)
    with swapped_parameters(layer, weight=replacement, bias=torch.zeros(2)):
        assert layer.weight.data_ptr() == replacement.data_ptr()
        assert not layer.weight.requires_grad and layer.bias.requires_grad


def test_swapped_parameters_are_restored_when_the_block_raises():
    layer = nn.Linear(3, 2)
    weight = layer.weight
    with pytest.raises(RuntimeError, match="inside"):
        with swapped_parameters(layer, weight=torch.zeros(2, 3)):
            raise RuntimeError("raised inside")
    assert layer.weight is weight


def test_swapping_a_name_that_is_no_parameter_is_refused():
    with pytest.raises(KeyError, match="no parameter 'gain'"):
        with swapped_parameters(nn.Linear(3, 2), gain=torch.ones(2)):
            pass


def test_swapped_attributes_replace_forward_and_remove_it_again():
    layer = nn.ReLU()
    with swapped_attributes(layer, forward=lambda input: input * 2, note="temporary"):
        assert torch.equal(layer(torch.tensor([-1.0])), torch.tensor([-2.0])) and layer.note == "temporary"
    assert "forward" not in vars(layer) and not hasattr(layer, "note")
    assert torch.equal(layer(torch.tensor([-1.0])), torch.tensor([0.0]))


def test_swapped_attributes_put_back_an_instance_attribute_that_was_there():
    layer = nn.ReLU()
    marker = object()
    layer.marker = marker
    with pytest.raises(ValueError):
        with swapped_attributes(layer, marker=None):
            raise ValueError
    assert layer.marker is marker


def test_swapped_attributes_refuse_parameters():
    with pytest.raises(KeyError, match="weight"):
        with swapped_attributes(nn.Linear(2, 2), weight=None):
            pass


def test_evaluation_mode_holds_the_models_lock_against_other_threads():
    model = nn.Linear(2, 2)
    entered, release, order = threading.Event(), threading.Event(), []

    def first():
        with evaluation_mode(model):
            entered.set()
            release.wait(10)
            order.append("first done")

    def second():
        entered.wait(10)
        with model_lock(model):
            order.append("second in")

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    entered.wait(10)
    acquired = model_lock(model).acquire(timeout=0.05)
    if acquired:
        model_lock(model).release()
    assert not acquired
    release.set()
    for thread in threads:
        thread.join(10)
    assert order == ["first done", "second in"]
