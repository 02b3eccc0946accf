"""VGG-16 builder, weight loaders (torchvision, VGG-Face port) and checkpoints.

The references here are written independently of ``lrp_faces.models``: state dicts are laid out by hand in the real
key formats, and forward passes are plain ``torch.nn.functional`` code over those raw tensors.
"""
import dataclasses
import os

import pytest
import torch
import torch.nn.functional as F
import torchvision

import lrp_faces
import lrp_faces.files
from lrp_faces.parameters import ParameterError, ParameterTypeError
from lrp_faces.models import (NonFiniteWeightsWarning, UnverifiedCheckpointWarning, WeightsError, load_model,
                              load_torchvision_vgg16, load_vgg_face, read_checkpoint_info, replace_head, save_model,
                              vgg16, vgg16_from_architecture, weights_digest)

CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
PORT_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
              "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
VGGFACE_MEAN = (129.186279296875, 104.76238250732422, 93.59396362304688)  # the port's meta["mean"], RGB, 0-255
SMALL = dict(divisor=8, classifier_width=32, pool=2, num_classes=5)  # conv widths 8 ... 64


# ---------------------------------------------------------------------------------------------------------------------
# independent references
# ---------------------------------------------------------------------------------------------------------------------

def torchvision_prefixes(batch_norm):
    """(conv, batch norm or None) key prefixes of the 13 convolutions in torchvision's ``features``."""
    prefixes, index = [], 0
    for item in CONFIG:
        if item == "M":
            index += 1
        elif batch_norm:
            prefixes.append((f"features.{index}", f"features.{index + 1}"))
            index += 3
        else:
            prefixes.append((f"features.{index}", None))
            index += 2
    return prefixes


def torchvision_state_dict(divisor=8, classifier_width=32, pool=2, num_classes=5, batch_norm=False, seed=0):
    """A random state dict in torchvision's VGG-16(-BN) layout with conv widths ``CONFIG / divisor``."""
    generator = torch.Generator().manual_seed(seed)
    state, channels = {}, 3
    widths = [item // divisor for item in CONFIG if item != "M"]
    for (conv, norm), width in zip(torchvision_prefixes(batch_norm), widths):
        state[f"{conv}.weight"] = torch.randn(width, channels, 3, 3, generator=generator) * (2 / (9 * channels)) ** .5
        state[f"{conv}.bias"] = torch.randn(width, generator=generator) * 0.05
        if norm:
            state[f"{norm}.weight"] = torch.rand(width, generator=generator) + 0.5
            state[f"{norm}.bias"] = torch.randn(width, generator=generator) * 0.2
            state[f"{norm}.running_mean"] = torch.randn(width, generator=generator) * 0.5
            state[f"{norm}.running_var"] = torch.rand(width, generator=generator) + 0.25
            state[f"{norm}.num_batches_tracked"] = torch.tensor(17)
        channels = width
    sizes = [(classifier_width, channels * pool * pool), (classifier_width, classifier_width),
             (num_classes, classifier_width)]
    for index, (out, inp) in zip((0, 3, 6), sizes):
        state[f"classifier.{index}.weight"] = torch.randn(out, inp, generator=generator) * (2 / inp) ** .5
        state[f"classifier.{index}.bias"] = torch.randn(out, generator=generator) * 0.05
    return state


def to_port(state, fc_as_conv=False, pool=2):
    """Rename a (non-BN) torchvision-layout state dict to the VGG-Face port's keys, optionally with conv-shaped fcs."""
    port = {}
    for name, (conv, _) in zip(PORT_CONVS, torchvision_prefixes(False)):
        port[f"{name}.weight"], port[f"{name}.bias"] = state[f"{conv}.weight"], state[f"{conv}.bias"]
    channels = state["features.28.weight"].shape[0]
    for name, index in (("fc6", 0), ("fc7", 3), ("fc8", 6)):
        weight = state[f"classifier.{index}.weight"]
        if fc_as_conv and name == "fc6":
            weight = weight.reshape(weight.shape[0], channels, pool, pool)
        elif fc_as_conv:
            weight = weight[:, :, None, None]
        port[f"{name}.weight"], port[f"{name}.bias"] = weight, state[f"classifier.{index}.bias"]
    return port


def normalise(images, mean, std=(1.0, 1.0, 1.0), scale=1.0):
    return (images * scale - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def reference_features(state, x, prefixes):
    convs = iter(prefixes)
    for item in CONFIG:
        if item == "M":
            x = F.max_pool2d(x, 2, 2)
            continue
        conv, norm = next(convs)
        x = F.conv2d(x, state[f"{conv}.weight"], state[f"{conv}.bias"], padding=1)
        if norm:
            x = F.batch_norm(x, state[f"{norm}.running_mean"], state[f"{norm}.running_var"], state[f"{norm}.weight"],
                             state[f"{norm}.bias"], training=False, eps=1e-5)
        x = F.relu(x)
    return x


def reference_torchvision(state, x, pool, batch_norm=False):
    """torchvision's VGG forward in eval mode, from the raw state dict; ``x`` already normalised."""
    x = torch.flatten(F.adaptive_avg_pool2d(reference_features(state, x, torchvision_prefixes(batch_norm)), pool), 1)
    x = F.relu(F.linear(x, state["classifier.0.weight"], state["classifier.0.bias"]))
    x = F.relu(F.linear(x, state["classifier.3.weight"], state["classifier.3.bias"]))
    return F.linear(x, state["classifier.6.weight"], state["classifier.6.bias"])


def reference_port(port, x):
    """The port's forward: pool5 then fc6 applied like the original Caffe net, as a valid convolution when 4-D."""
    x = reference_features(port, x, [(name, None) for name in PORT_CONVS])
    for name in ("fc6", "fc7", "fc8"):
        weight, bias = port[f"{name}.weight"], port[f"{name}.bias"]
        if weight.ndim == 4:
            x = F.conv2d(x, weight, bias)
        else:
            x = F.linear(torch.flatten(x, 1), weight, bias)
        if name != "fc8":
            x = F.relu(x)
    return torch.flatten(x, 1)


def assert_outputs_close(actual, expected):
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * float(expected.abs().max()))


def save(obj, path):
    torch.save(obj, path)
    return path


@pytest.fixture
def inputs():
    return torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))


# ---------------------------------------------------------------------------------------------------------------------
# full-size files, built once per module
# ---------------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def full_torchvision(tmp_path_factory):
    torch.manual_seed(0)
    network = torchvision.models.vgg16().eval()
    path = save(network.state_dict(), tmp_path_factory.mktemp("full") / "vgg16_imagenet.pth")
    return network, path


@pytest.mark.parametrize("batch_norm", [False, True])
def test_default_builder_has_torchvisions_keys_and_shapes(batch_norm):
    with torch.device("meta"):
        reference = (torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16)()
        model = vgg16(batch_norm=batch_norm)
    expected = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    assert {key: tuple(value.shape) for key, value in model.state_dict().items()} == expected


def test_width_scales_the_conv_channels():
    with torch.device("meta"):
        model = vgg16(width=0.25)
    convs = [module.out_channels for module in model.features if isinstance(module, torch.nn.Conv2d)]
    assert convs == [16, 16, 32, 32, 64, 64, 64, 128, 128, 128, 128, 128, 128]
    assert model.classifier[0].in_features == 128 * 7 * 7


@pytest.mark.parametrize("preset, mean, std, scale", [
    (lrp_faces.IMAGENET, IMAGENET_MEAN, IMAGENET_STD, 1.0),
    (lrp_faces.VGGFACE, VGGFACE_MEAN, (1.0, 1.0, 1.0), 255.0)])
def test_builder_forward_is_torchvisions_on_hand_normalised_input(preset, mean, std, scale, inputs):
    model = vgg16(num_classes=5, preprocessing=preset, width=1 / 8, classifier_width=32, pool_size=2).eval()
    model.load_state_dict(torchvision_state_dict(**SMALL))  # trained-like magnitudes
    state = model.state_dict()
    with torch.no_grad():
        assert_outputs_close(model(inputs), reference_torchvision(state, normalise(inputs, mean, std, scale), 2))


@pytest.mark.slow
def test_full_size_torchvision_file_loads_and_matches_torchvision(full_torchvision):
    network, path = full_torchvision
    model = load_torchvision_vgg16(path)
    assert {key: value.shape for key, value in model.state_dict().items()} == \
        {key: value.shape for key, value in network.state_dict().items()}
    assert model.architecture["width"] == 1.0 and model.architecture["batch_norm"] is False
    assert (model.architecture["classifier_width"], model.architecture["pool_size"], model.num_classes) == \
        (4096, 7, 1000)
    assert not model.training and model.preprocessing == lrp_faces.IMAGENET
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert_outputs_close(model(images), network(normalise(images, IMAGENET_MEAN, IMAGENET_STD)))


@pytest.mark.slow
def test_full_size_vgg_face_port_with_conv_shaped_fc6(full_torchvision, tmp_path):
    network, _ = full_torchvision
    port = to_port(network.state_dict(), fc_as_conv=True, pool=7)
    generator = torch.Generator().manual_seed(3)
    port["fc8.weight"] = torch.randn(2622, 4096, 1, 1, generator=generator) * 0.02
    port["fc8.bias"] = torch.randn(2622, generator=generator) * 0.05
    assert port["fc6.weight"].shape == (4096, 512, 7, 7)
    model = load_vgg_face(save(port, tmp_path / "vgg_face_dag.pth"))
    assert model.num_classes == 2622 and model.preprocessing == lrp_faces.VGGFACE
    assert model.architecture["width"] == 1.0 and model.architecture["pool_size"] == 7
    images = torch.rand(1, 3, 224, 224, generator=generator)
    with torch.no_grad():
        assert_outputs_close(model(images), reference_port(port, normalise(images, VGGFACE_MEAN, scale=255.0)))


# ---------------------------------------------------------------------------------------------------------------------
# torchvision format at small width
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_norm", [False, True])
def test_torchvision_file_matches_reference_forward(batch_norm, tmp_path, inputs):
    state = torchvision_state_dict(**SMALL, batch_norm=batch_norm)
    model = load_torchvision_vgg16(save(state, tmp_path / "vgg.pth"))
    assert model.architecture["batch_norm"] is batch_norm
    assert (model.num_classes, model.architecture["pool_size"], model.architecture["classifier_width"]) == (5, 2, 32)
    assert not model.training
    with torch.no_grad():
        expected = reference_torchvision(state, normalise(inputs, IMAGENET_MEAN, IMAGENET_STD), 2, batch_norm)
        assert_outputs_close(model(inputs), expected)
    rebuilt = vgg16_from_architecture(model.architecture).state_dict()
    assert {key: value.shape for key, value in rebuilt.items()} == {key: value.shape for key, value in state.items()}
    assert model.provenance["source"] == "torchvision" and model.provenance["reinitialised_layers"] == []
    assert model.provenance["loaded_layers"][0] == "features.0" and model.provenance["file_num_classes"] == 5


@pytest.mark.parametrize("wrap", ["state_dict", "module_prefix"])
def test_torchvision_loader_accepts_checkpoint_dicts_and_dataparallel_keys(wrap, tmp_path, inputs):
    state = torchvision_state_dict(**SMALL)
    content = ({"state_dict": state, "epoch": 3} if wrap == "state_dict"
               else {f"module.{key}": value for key, value in state.items()})
    model = load_torchvision_vgg16(save(content, tmp_path / "vgg.pth"))
    with torch.no_grad():
        assert_outputs_close(model(inputs), reference_torchvision(state, normalise(inputs, IMAGENET_MEAN,
                                                                                    IMAGENET_STD), 2))


def test_irregular_widths_and_half_precision_files_load(tmp_path):
    source = vgg16(num_classes=3, width=0.1, classifier_width=20, pool_size=3)
    state = {key: value.half() for key, value in source.state_dict().items()}
    model = load_torchvision_vgg16(save(state, tmp_path / "vgg.pth"))
    for key, value in model.state_dict().items():
        assert value.dtype == torch.float32 and torch.equal(value, state[key].float()), key


def test_explicit_batch_norm_false_on_a_bn_file_lists_the_unexpected_keys(tmp_path):
    path = save(torchvision_state_dict(**SMALL, batch_norm=True), tmp_path / "bn.pth")
    with pytest.raises(WeightsError, match="unexpected keys") as error:
        load_torchvision_vgg16(path, batch_norm=False)
    assert "features.1.running_mean" in str(error.value) and "bn.pth" in str(error.value)


# ---------------------------------------------------------------------------------------------------------------------
# VGG-Face port at small width
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fc_as_conv", [False, True])
def test_vgg_face_port_matches_reference_forward(fc_as_conv, tmp_path):
    port = to_port(torchvision_state_dict(**SMALL, seed=4), fc_as_conv=fc_as_conv, pool=2)
    model = load_vgg_face(save(port, tmp_path / "vgg_face_dag.pth"))
    assert model.preprocessing == lrp_faces.VGGFACE and model.num_classes == 5
    assert model.provenance["source"] == "vgg_face"
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))  # pool5 output is exactly 2 x 2
    with torch.no_grad():
        assert_outputs_close(model(images), reference_port(port, normalise(images, VGGFACE_MEAN, scale=255.0)))


# ---------------------------------------------------------------------------------------------------------------------
# new number of classes
# ---------------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader", ["torchvision", "vgg_face"])
def test_new_num_classes_reinitialises_only_the_last_layer(loader, tmp_path):
    state = torchvision_state_dict(divisor=8, classifier_width=256, pool=2, num_classes=5)
    if loader == "torchvision":
        path, load = save(state, tmp_path / "vgg.pth"), load_torchvision_vgg16
    else:
        path, load = save(to_port(state), tmp_path / "port.pth"), load_vgg_face
    rng_before = torch.random.get_rng_state()
    model = load(path, num_classes=7, seed=11)
    assert torch.equal(rng_before, torch.random.get_rng_state())
    loaded = model.state_dict()
    for key, value in state.items():
        if not key.startswith("classifier.6"):
            assert torch.equal(loaded[key], value), key
    weight, bias = loaded["classifier.6.weight"], loaded["classifier.6.bias"]
    assert weight.shape == (7, 256) and model.num_classes == 7 == model.architecture["num_classes"]
    assert torch.equal(bias, torch.zeros(7))
    assert abs(float(weight.mean())) < 0.003 and 0.008 < float(weight.std()) < 0.012
    assert torch.equal(load(path, num_classes=7, seed=11).classifier[-1].weight, weight)
    assert not torch.equal(load(path, num_classes=7, seed=12).classifier[-1].weight, weight)
    assert model.provenance["reinitialised_layers"] == ["classifier.6"] and model.provenance["seed"] == 11
    assert "classifier.6" not in model.provenance["loaded_layers"] and model.provenance["file_num_classes"] == 5
    same = load(path, num_classes=5, seed=11)
    assert torch.equal(same.classifier[-1].weight, state["classifier.6.weight"])
    assert same.provenance["reinitialised_layers"] == []


# ---------------------------------------------------------------------------------------------------------------------
# error paths
# ---------------------------------------------------------------------------------------------------------------------

def test_missing_unexpected_and_mis_shaped_keys_are_all_listed(tmp_path):
    state = torchvision_state_dict(**SMALL)
    del state["features.7.weight"], state["classifier.3.bias"]
    state["features.40.weight"] = torch.zeros(3)
    state["classifier.0.bias"] = torch.zeros(31)
    state["features.10.weight"] = torch.zeros(32, 9, 3, 3)
    path = save(state, tmp_path / "broken.pth")
    with pytest.raises(WeightsError) as error:
        load_torchvision_vgg16(path)
    message = str(error.value)
    assert isinstance(error.value, ValueError) and str(path) in message
    for part in ("missing keys", "features.7.weight", "classifier.3.bias", "unexpected keys", "features.40.weight",
                 "mis-shaped keys", "classifier.0.bias (expected (32,), found (31,))",
                 "features.10.weight (expected (32, 16, 3, 3), found (32, 9, 3, 3))"):
        assert part in message, part
    assert sorted(error.value.missing) == ["classifier.3.bias", "features.7.weight"]
    assert error.value.unexpected == ["features.40.weight"]


def test_vgg_face_errors_use_the_ports_key_names(tmp_path):
    port = to_port(torchvision_state_dict(**SMALL), fc_as_conv=True)
    del port["conv3_2.weight"]
    port["fc7.weight"] = torch.zeros(32, 30, 1, 1)
    port["features.0.weight"] = torch.zeros(8, 3, 3, 3)
    with pytest.raises(WeightsError) as error:
        load_vgg_face(save(port, tmp_path / "vgg_face_dag.pth"))
    message = str(error.value)
    assert "vgg_face_dag.pth" in message
    assert error.value.missing == ["conv3_2.weight"] and error.value.unexpected == ["features.0.weight"]
    assert "fc7.weight (expected (32, 32), found (32, 30))" in message


def test_torchvision_file_given_to_vgg_face_loader_says_which_loader_to_use(tmp_path):
    with pytest.raises(WeightsError, match="load_torchvision_vgg16"):
        load_vgg_face(save(torchvision_state_dict(**SMALL), tmp_path / "vgg.pth"))


@pytest.mark.parametrize("loader", [load_torchvision_vgg16, load_vgg_face, load_model, read_checkpoint_info])
def test_corrupt_truncated_and_missing_files(loader, tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(WeightsError, match="corrupt.pth"):
        loader(corrupt)
    whole = save(torchvision_state_dict(**SMALL), tmp_path / "whole.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(WeightsError, match="truncated.pth"):
        loader(tmp_path / "truncated.pth")
    missing = tmp_path / "nowhere" / "absent.pth"
    with pytest.raises(FileNotFoundError, match="absent.pth") as error:
        loader(missing)
    assert isinstance(error.value, ValueError)


def test_pickled_module_and_non_state_dict_content_are_refused(tmp_path):
    with pytest.raises(WeightsError, match="state_dict"):
        load_torchvision_vgg16(save(torch.nn.Linear(2, 2), tmp_path / "module.pth"))
    with pytest.raises(WeightsError, match="does not hold a state dict"):
        load_torchvision_vgg16(save([torch.zeros(2)], tmp_path / "list.pth"))


# ---------------------------------------------------------------------------------------------------------------------
# checkpoints
# ---------------------------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Spec:
    pretraining: str
    task: str
    seed: int

    def to_dict(self):
        return {"pretraining": self.pretraining, "task": self.task, "seed": self.seed}


def small_model(batch_norm=True, preprocessing=lrp_faces.VGGFACE):
    model = vgg16(num_classes=5, preprocessing=preprocessing, width=1 / 8, batch_norm=batch_norm, classifier_width=32,
                  pool_size=2)
    model.load_state_dict(torchvision_state_dict(**SMALL, batch_norm=batch_norm, seed=9))
    return model.eval()


def test_checkpoint_round_trip_is_bit_identical_and_keeps_everything(tmp_path, inputs):
    model = small_model()
    names = ["ann", "bob", "cy", "dee", "eve"]
    metadata = {"epochs": 3, "accuracy": 0.875, "data": {"set": "synthetic", "sizes": [10, 20]}}
    path = save_model(model, tmp_path / "ckpt" / "model.pt", spec=Spec("faces", "identity", 2), metadata=metadata,
                      class_names=names)
    assert os.listdir(tmp_path / "ckpt") == ["model.pt"]
    loaded = load_model(path)
    original = model.state_dict()
    assert list(loaded.state_dict()) == list(original)
    for key, value in loaded.state_dict().items():
        assert value.dtype == original[key].dtype and torch.equal(value, original[key]), key
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))
    assert loaded.class_names == names and loaded.metadata == metadata
    assert loaded.spec == {"pretraining": "faces", "task": "identity", "seed": 2}
    assert loaded.architecture == model.architecture and loaded.preprocessing == lrp_faces.VGGFACE
    assert not loaded.training
    info = read_checkpoint_info(path)
    assert "state_dict" not in info and info["format_version"] == 1 and info["class_names"] == names
    assert info["preprocessing"] == lrp_faces.VGGFACE.to_dict() and info["metadata"] == metadata
    assert info["versions"] == lrp_faces.files.versions() and "lrp_faces" in info["versions"]
    assert str(torch.__version__).startswith(info["versions"]["torch"])


def test_checkpoint_keeps_float64_and_provenance_of_loaded_weights(tmp_path, inputs):
    model = load_torchvision_vgg16(save(torchvision_state_dict(**SMALL), tmp_path / "vgg.pth"), num_classes=2)
    loaded = load_model(save_model(model.double(), tmp_path / "model.pt", spec={"task": "gender"}))
    assert loaded.features[0].weight.dtype == torch.float64 and loaded.spec == {"task": "gender"}
    assert loaded.provenance == model.provenance and loaded.provenance["reinitialised_layers"] == ["classifier.6"]
    with torch.no_grad():
        assert torch.equal(loaded(inputs.double()), model(inputs.double()))


def test_replaced_head_saves_and_a_hand_replaced_head_is_refused(tmp_path):
    model = replace_head(small_model(batch_norm=False), 3, seed=1)
    assert load_model(save_model(model, tmp_path / "a.pt")).num_classes == 3
    model.classifier[-1] = torch.nn.Linear(32, 4)
    with pytest.raises(ValueError, match="replace_head"):
        save_model(model, tmp_path / "b.pt")


def test_save_validates_class_names_spec_and_metadata(tmp_path):
    model = small_model(batch_norm=False)
    with pytest.raises(ValueError, match="5 outputs"):
        save_model(model, tmp_path / "m.pt", class_names=["a", "b"])
    with pytest.raises(TypeError, match="metadata"):
        save_model(model, tmp_path / "m.pt", metadata={"when": object()})
    with pytest.raises(TypeError, match="spec"):
        save_model(model, tmp_path / "m.pt", spec=42)
    assert os.listdir(tmp_path) == []


def test_interrupted_save_keeps_the_old_file_and_leaves_no_temporary_files(tmp_path, monkeypatch):
    model = small_model(batch_norm=False)
    path = save_model(model, tmp_path / "model.pt", metadata={"version": "old"})
    before = path.read_bytes()
    real_save = torch.save

    def interrupted(obj, stream, *args, **kwargs):
        stream.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        save_model(model, path, metadata={"version": "new"})
    with pytest.raises(KeyboardInterrupt):
        save_model(model, tmp_path / "fresh.pt")
    monkeypatch.setattr(torch, "save", real_save)
    assert sorted(os.listdir(tmp_path)) == ["model.pt"] and path.read_bytes() == before
    save_model(model, path, metadata={"version": "new"})
    assert sorted(os.listdir(tmp_path)) == ["model.pt"] and load_model(path).metadata == {"version": "new"}


def test_bad_checkpoints_give_errors_naming_the_file(tmp_path):
    state = torchvision_state_dict(**SMALL)
    with pytest.raises(WeightsError, match="not an lrp_faces checkpoint.*load_torchvision_vgg16"):
        load_model(save(state, tmp_path / "plain.pth"))
    path = save_model(small_model(batch_norm=False), tmp_path / "model.pt")
    content = torch.load(path, weights_only=True)
    content["state_dict"]["classifier.3.weight"] = torch.zeros(32, 31)
    with pytest.raises(WeightsError, match=r"tampered.pt.*\n.*classifier.3.weight \(expected \(32, 32\)"):
        load_model(save(content, tmp_path / "tampered.pt"))
    content["format_version"] = 99
    with pytest.raises(WeightsError, match="future.pt.*version 99"):
        load_model(save(content, tmp_path / "future.pt"))


# ---------------------------------------------------------------------------------------------------------------------
# damaged and doubtful weights
# ---------------------------------------------------------------------------------------------------------------------

def flip_bytes(path, tensor, count=64):
    """Flip ``count`` bytes in the middle of ``tensor``'s data inside the file at ``path``; returns the offset."""
    content = bytearray(path.read_bytes())
    raw = tensor.detach().contiguous().numpy().tobytes()
    offset = content.find(raw[:256])
    assert offset >= 0, "tensor data not found in the file"
    start = offset + len(raw) // 2
    for index in range(start, start + count):
        content[index] ^= 0xFF
    path.write_bytes(bytes(content))
    return start


def test_a_checkpoint_with_flipped_bytes_in_its_weights_is_refused_naming_the_file(tmp_path):
    model = small_model(batch_norm=False)
    path = save_model(model, tmp_path / "model.pt")
    flip_bytes(path, model.classifier[0].weight)
    content = torch.load(path, weights_only=True)  # still a readable file: only the digest can tell
    assert not torch.equal(content["state_dict"]["classifier.0.weight"], model.classifier[0].weight)
    with pytest.raises(WeightsError, match=r"model.pt.*damaged.*differ from the digest"):
        load_model(path)


def test_checkpoints_record_the_digest_of_their_weights(tmp_path):
    model = small_model()
    path = save_model(model, tmp_path / "model.pt")
    assert read_checkpoint_info(path)["weights_sha256"] == weights_digest(model)
    assert weights_digest(load_model(path)) == weights_digest(model)


def test_a_checkpoint_without_a_digest_loads_with_a_warning(tmp_path, inputs):
    model = small_model(batch_norm=False)
    content = torch.load(save_model(model, tmp_path / "new.pt"), weights_only=True)
    del content["weights_sha256"]
    path = save(content, tmp_path / "old.pt")
    with pytest.warns(UnverifiedCheckpointWarning, match="old.pt.*no weights digest.*save it again"):
        loaded = load_model(path)
    with torch.no_grad():
        assert torch.equal(loaded(inputs), model(inputs))


def test_weights_digest_depends_on_every_byte_and_name():
    state = torchvision_state_dict(**SMALL)
    digest = weights_digest(state)
    changed = dict(state)
    changed["features.0.bias"] = state["features.0.bias"].clone()
    changed["features.0.bias"][0] = torch.nextafter(changed["features.0.bias"][0], torch.tensor(1.0))
    renamed = {("features.99.bias" if key == "features.0.bias" else key): value for key, value in state.items()}
    assert len({digest, weights_digest(changed), weights_digest(renamed)}) == 3
    assert weights_digest({key: value.clone() for key, value in state.items()}) == digest


def test_nan_weights_in_a_checkpoint_load_with_a_warning_naming_the_tensor(tmp_path):
    model = small_model(batch_norm=False)
    with torch.no_grad():
        model.features[5].weight[0, 0, 0, 0] = float("nan")
    path = save_model(model, tmp_path / "diverged.pt")
    with pytest.warns(NonFiniteWeightsWarning, match=r"diverged.pt.*NaN or Inf \(in features.5.weight\)"):
        load_model(path)


@pytest.mark.parametrize("loader", ["torchvision", "vgg_face"])
def test_nan_weights_in_a_state_dict_load_with_a_warning(loader, tmp_path):
    state = torchvision_state_dict(**SMALL)
    state["classifier.3.bias"][2] = float("inf")
    if loader == "torchvision":
        path, load, name = save(state, tmp_path / "vgg.pth"), load_torchvision_vgg16, "classifier.3.bias"
    else:
        path, load = save(to_port(state), tmp_path / "port.pth"), load_vgg_face
        name = "fc7.bias"  # the file's own name
    with pytest.warns(NonFiniteWeightsWarning, match=f"NaN or Inf \\(in {name}\\)"):
        load(path)


def test_penultimate_is_the_input_of_the_last_layer(inputs):
    model = small_model()
    captured = []
    handle = model.classifier[-1].register_forward_pre_hook(lambda module, args: captured.append(args[0]))
    with torch.no_grad():
        logits = model(inputs)
        hidden = model.penultimate(inputs)
    handle.remove()
    assert hidden.shape == (3, 32) and torch.equal(hidden, captured[0])
    assert torch.equal(model.classifier[-1](hidden), logits)


@pytest.mark.parametrize("arguments, error, message", [
    ({"num_classes": 0}, ParameterError, "vgg16: num_classes must be a positive int, got 0"),
    ({"num_classes": 2.0}, ParameterTypeError, "vgg16: num_classes must be a positive int, got float"),
    ({"width": -0.5}, ParameterError, "vgg16: width must be a finite number > 0"),
    ({"dropout": 1.5}, ParameterError, r"vgg16: dropout must be a probability in \[0, 1\]"),
    ({"preprocessing": "imagenet"}, ParameterTypeError, "vgg16: preprocessing must be a Preprocessing"),
])
def test_builder_arguments_are_checked_with_package_errors(arguments, error, message):
    with pytest.raises(error, match=message):
        vgg16(**arguments)
