"""Building a zoo (``lrp_faces.zoo.build_zoo``, ``lrp-faces zoo build``) with what a lab has, made in the test.

The base weights are state dicts in the real formats, laid out by hand at width 1/8: a torchvision VGG-16 (keys
``features.N`` / ``classifier.N``, 1000 classes) and the VGG-Face port (keys ``conv1_1`` ... ``fc8``, 2622 classes),
written with ``torch.save``. The faces are synthetic faces saved as PNG files with a CSV manifest. Accuracies and
digests are checked against computations written here, not against the code under test.
"""
import hashlib
import json
import re
import shutil
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from lrp_faces.cli import main
from lrp_faces.cli.study import Study
from lrp_faces.cli.zoo_build import read_zoo_file
from lrp_faces.errors import LRPFacesWarning
from lrp_faces.faces import FaceDataset, split_by_image, synthetic_faces
from lrp_faces.models import load_model, read_checkpoint_info
from lrp_faces.zoo import (BaseWeights, HeldOutSplit, ModelSpec, TrainingSettings, Zoo, ZooError, ZooRecipe,
                           build_zoo)
from lrp_faces.zoo import build as build_module

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE, PER_IDENTITY = 32, 5
NAMES = ["alice", "bob", "carol", "dave"]
CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]
PORT_CONVS = ["conv1_1", "conv1_2", "conv2_1", "conv2_2", "conv3_1", "conv3_2", "conv3_3", "conv4_1", "conv4_2",
              "conv4_3", "conv5_1", "conv5_2", "conv5_3"]
SPECS = [ModelSpec(pretraining, task, 0) for pretraining in ("imagenet", "vggface") for task in ("gender", "identity")]

RECIPE = """
[build]
tasks = ["gender", "identity"]
seeds = [0]

[base.imagenet]
path = "weights/vgg16-397923af.pth"
format = "torchvision"

[base.vggface]
path = "weights/vgg_face_dag.pth"
format = "vgg_face"

[dataset]
kind = "manifest"
path = "faces/manifest.csv"
image_size = 32
split = {by = "image", test_fraction = 0.2, seed = 0}

[training]
epochs = 3
batch_size = 8
lr = 0.003
"""


# ------------------------------------------------------------------------------------------------------ lab materials
def base_layers(classes: int, seed: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(weight, bias) of the 13 convolutions (widths / 8) and 3 dense layers (width 32) of a VGG-16, He-scaled."""
    generator = torch.Generator().manual_seed(seed)
    layers, channels = [], 3
    for width in (item // 8 for item in CONFIG if item != "M"):
        layers.append((torch.randn(width, channels, 3, 3, generator=generator) * (2 / (9 * channels)) ** 0.5,
                       torch.randn(width, generator=generator) * 0.05))
        channels = width
    for out, inputs in ((32, channels), (32, 32), (classes, 32)):  # 32 px: pool5 is 1 x 1
        layers.append((torch.randn(out, inputs, generator=generator) * (2 / inputs) ** 0.5,
                       torch.randn(out, generator=generator) * 0.05))
    return layers


def torchvision_state_dict(seed: int = 1) -> dict:
    """torchvision's VGG-16 keys: ``features.{0,2,5,...,28}`` and ``classifier.{0,3,6}``, 1000 classes.

    The first convolution is scaled up 30-fold: ImageNet-normalised inputs are about 60 times smaller than the
    VGG-Face port's 0-255 ones, and at random weights only larger activations let a few steps learn anything.
    """
    indices, index = [], 0
    for item in CONFIG:
        if item == "M":
            index += 1
        else:
            indices.append(index)
            index += 2
    names = [f"features.{index}" for index in indices] + ["classifier.0", "classifier.3", "classifier.6"]
    state = {f"{name}.{kind}": tensor for name, layer in zip(names, base_layers(1000, seed))
             for kind, tensor in zip(("weight", "bias"), layer)}
    state["features.0.weight"] = state["features.0.weight"] * 30
    return state


def vgg_face_state_dict(seed: int = 2) -> dict:
    """The VGG-Face port's keys: ``conv1_1`` ... ``conv5_3`` and ``fc6`` ... ``fc8``, 2622 classes."""
    names = PORT_CONVS + ["fc6", "fc7", "fc8"]
    return {f"{name}.{kind}": tensor for name, layer in zip(names, base_layers(2622, seed))
            for kind, tensor in zip(("weight", "bias"), layer)}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A folder with both base weight files, PNG faces with a CSV manifest, and the recipe ZOO.toml."""
    root = tmp_path_factory.mktemp("lab")
    (root / "weights").mkdir()
    torch.save(torchvision_state_dict(), root / "weights" / "vgg16-397923af.pth")
    torch.save(vgg_face_state_dict(), root / "weights" / "vgg_face_dag.pth")
    faces = synthetic_faces(len(NAMES), PER_IDENTITY, size=SIZE, seed=5)
    (root / "faces").mkdir()
    rows = ["path,identity,gender"]
    for index in range(len(faces)):
        name = f"{NAMES[faces.identity[index]]}_{index % PER_IDENTITY}.png"
        pixels = (faces.images[index].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(pixels).save(root / "faces" / name)
        rows.append(f"{name},{NAMES[faces.identity[index]]},{'mf'[faces.gender[index]]}")
    (root / "faces" / "manifest.csv").write_text("\n".join(rows) + "\n")
    (root / "ZOO.toml").write_text(RECIPE)
    return root


def manifest(lab) -> FaceDataset:
    return FaceDataset.from_manifest(lab / "faces" / "manifest.csv", image_size=SIZE)


def recipe_of(lab, text: str = RECIPE) -> ZooRecipe:
    path = lab / "recipe.toml"
    path.write_text(text)
    return ZooRecipe.from_toml(path)


@pytest.fixture(scope="module")
def built(lab, tmp_path_factory):
    """The zoo of the lab's recipe, built once for the module: (output folder, log lines)."""
    out = tmp_path_factory.mktemp("built") / "zoo"
    lines = []
    build_zoo(recipe_of(lab), manifest(lab), out, progress=False, log=lines.append)
    return out, lines


def fresh_copy(built, tmp_path):
    """A copy of the built zoo that a test may rebuild."""
    out = tmp_path / "zoo"
    shutil.copytree(built[0], out)
    return out


def modification_times(out) -> dict:
    return {spec: (out / "models" / f"{spec.name}.pt").stat().st_mtime_ns for spec in SPECS}


def predictions(model, images: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(images).argmax(1).numpy()


# ------------------------------------------------------------------------------------------------------ checkpoints
def test_every_pretraining_task_and_seed_gets_a_checkpoint_of_its_spec(built):
    out, _ = built
    for spec in SPECS:
        assert load_model(out / "models" / f"{spec.name}.pt").spec == spec.to_dict()


@pytest.mark.parametrize("pretraining, file, key", [("imagenet", "vgg16-397923af.pth", "features.0.weight"),
                                                    ("vggface", "vgg_face_dag.pth", "conv1_1.weight")])
def test_models_start_from_their_base_file_and_classifier_only_training_keeps_its_features(built, lab, pretraining,
                                                                                         file, key):
    source = torch.load(lab / "weights" / file, weights_only=True)
    model = load_model(built[0] / "models" / f"{pretraining}-identity-seed0.pt")
    assert torch.equal(model.features[0].weight, source[key])
    assert model.classifier[-1].out_features == len(NAMES)


def test_checkpoints_record_the_datasets_class_names_for_their_task(built):
    out, _ = built
    assert list(load_model(out / "models" / "imagenet-identity-seed0.pt").class_names) == NAMES
    assert list(load_model(out / "models" / "vggface-gender-seed0.pt").class_names) == ["female", "male"]


def test_recorded_accuracies_are_those_of_the_model_on_the_train_and_held_out_images(built, lab):
    train, test = split_by_image(manifest(lab), test_fraction=0.2, seed=0)
    assert len(test) == len(NAMES) and set(test.identity) == set(range(len(NAMES)))  # one of each identity's 5
    varied = []
    for spec in SPECS:
        model = load_model(built[0] / "models" / f"{spec.name}.pt")
        for part, key in ((train, "train_accuracy"), (test, "validation_accuracy")):
            images = torch.stack([part.load_image(index) for index in range(len(part))])
            predicted = predictions(model, images)
            assert model.metadata[key] == pytest.approx(float(np.mean(predicted == part.labels(spec.task)))), key
            varied.append(len(set(predicted)) > 1)
        assert model.metadata["validation_images"] == len(test) and model.metadata["train_images"] == len(train)
    assert any(varied)  # not every model predicts one class for every image: the comparison means something


def test_checkpoints_record_the_base_file_its_sha256_and_the_recipe_with_its_digest(built, lab):
    for spec in SPECS:
        metadata = read_checkpoint_info(built[0] / "models" / f"{spec.name}.pt")["metadata"]
        file = lab / "weights" / ("vgg16-397923af.pth" if spec.pretraining == "imagenet" else "vgg_face_dag.pth")
        assert metadata["base_weights"]["path"] == str(file.resolve())
        assert metadata["base_weights"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
        canonical = json.dumps(metadata["recipe"], sort_keys=True, separators=(",", ":"))
        assert metadata["recipe_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
        assert metadata["recipe"]["training"] == {**TrainingSettings().to_dict(), "epochs": 3, "batch_size": 8,
                                                  "lr": 0.003}
        assert metadata["recipe"]["data"]["split"] == {"by": "image", "test_fraction": 0.2, "seed": 0}


def test_the_data_digest_is_that_of_the_tasks_training_images(built):
    digests = {spec: read_checkpoint_info(built[0] / "models" / f"{spec.name}.pt")["metadata"]["data_sha256"]
               for spec in SPECS}
    assert digests[SPECS[0]] == digests[SPECS[2]] and digests[SPECS[1]] == digests[SPECS[3]]  # across pretrainings
    assert digests[SPECS[0]] != digests[SPECS[1]]  # gender and identity labels differ


# ------------------------------------------------------------------------------------------------------ zoo.toml
def test_zoo_toml_declares_every_model_with_paths_relative_to_it(built, lab):
    out, _ = built
    zoo = Zoo.from_toml(out / "zoo.toml")
    assert zoo.specs == sorted(SPECS) and zoo.image_size == SIZE
    assert {entry.path for entry in zoo.entries.values()} == {out / "models" / f"{s.name}.pt" for s in SPECS}
    assert '\npath = "models/imagenet-gender-seed0.pt"\n' in (out / "zoo.toml").read_text()
    zoo.check({"identity": list(NAMES), "gender": ["female", "male"]})


def test_a_study_file_beside_zoo_toml_uses_the_built_zoo(built, lab, tmp_path):
    out = fresh_copy(built, tmp_path)
    (out / "study.toml").write_text((out / "zoo.toml").read_text() + textwrap.dedent(f"""
        [dataset]
        kind = "manifest"
        path = {json.dumps(str(lab / "faces" / "manifest.csv"))}
        [analysis]
        run = ["similarity", "regions", "methods"]
        """))
    assert Study.from_toml(out / "study.toml").zoo.models == Zoo.from_toml(out / "zoo.toml")


# ------------------------------------------------------------------------------------------------------ resume
def test_a_rerun_trains_nothing(built, lab, tmp_path):
    out = fresh_copy(built, tmp_path)
    before, lines = modification_times(out), []
    build_zoo(recipe_of(lab), manifest(lab), out, progress=False, log=lines.append)
    assert modification_times(out) == before
    assert any("0 trained, 4 up to date" in line for line in lines), lines


def test_changed_epochs_of_a_task_retrain_only_its_models_and_say_why(built, lab, tmp_path):
    out = fresh_copy(built, tmp_path)
    before, lines = modification_times(out), []
    changed = recipe_of(lab, RECIPE + "[training.identity]\nepochs = 2\n")
    build_zoo(changed, manifest(lab), out, progress=False, log=lines.append)
    after = modification_times(out)
    assert {spec for spec in SPECS if after[spec] != before[spec]} == {s for s in SPECS if s.task == "identity"}
    assert "imagenet-identity-seed0: retraining: the recipe changed (training.epochs: 3 -> 2)" in lines
    assert load_model(out / "models" / "vggface-identity-seed0.pt").metadata["epochs"] == 2


def test_a_damaged_checkpoint_is_retrained_with_a_warning(built, lab, tmp_path):
    out = fresh_copy(built, tmp_path)
    damaged = out / "models" / "vggface-gender-seed0.pt"
    content = bytearray(damaged.read_bytes())
    content[len(content) // 2:len(content) // 2 + 16] = bytes(16)
    damaged.write_bytes(bytes(content))
    before = modification_times(out)
    with pytest.warns(LRPFacesWarning, match="vggface-gender-seed0.pt' is damaged"):
        build_zoo(recipe_of(lab), manifest(lab), out, progress=False)
    after = modification_times(out)
    assert [spec for spec in SPECS if after[spec] != before[spec]] == [ModelSpec("vggface", "gender", 0)]
    assert torch.equal(load_model(damaged).classifier[-1].weight,
                       load_model(built[0] / "models" / damaged.name).classifier[-1].weight)


def test_changed_training_images_retrain_every_model_and_say_so(built, lab, tmp_path):
    out = fresh_copy(built, tmp_path)
    faces = manifest(lab)
    fewer = faces.subset(np.flatnonzero(np.arange(len(faces)) % PER_IDENTITY != 4))  # 4 images per identity
    lines = []
    build_zoo(recipe_of(lab), fewer, out, progress=False, log=lines.append)
    reasons = [line for line in lines if ": retraining: " in line]
    assert len(reasons) == 4 and all("the training images changed" in line for line in reasons), lines


# ------------------------------------------------------------------------------------------------------ determinism
def test_the_same_recipe_and_seed_give_bit_identical_weights_and_another_seed_others(lab, tmp_path):
    one_model = RECIPE.replace('tasks = ["gender", "identity"]', 'tasks = ["gender"]').replace(
        "[base.vggface]\npath = \"weights/vgg_face_dag.pth\"\nformat = \"vgg_face\"\n", "")
    first, second = tmp_path / "first", tmp_path / "second"
    for out in (first, second):
        build_zoo(recipe_of(lab, one_model), manifest(lab), out, progress=False)
    other = recipe_of(lab, one_model.replace("seeds = [0]", "seeds = [1]"))
    build_zoo(other, manifest(lab), tmp_path / "other", progress=False)
    states = [load_model(out / "models" / f"imagenet-gender-seed{seed}.pt").state_dict()
              for out, seed in ((first, 0), (second, 0), (tmp_path / "other", 1))]
    assert all(torch.equal(states[0][key], states[1][key]) for key in states[0])
    assert not torch.equal(states[0]["classifier.6.weight"], states[2]["classifier.6.weight"])


@pytest.mark.slow
def test_a_local_cluster_of_two_processes_gives_the_in_process_weights(lab, tmp_path):
    from lrp_faces.compute import cluster_client
    recipe = recipe_of(lab, RECIPE.replace("epochs = 3", "epochs = 2\naugment = 2\ntrainable = \"all\""))
    build_zoo(recipe, manifest(lab), tmp_path / "here", progress=False, threads=1)
    with cluster_client("local:2") as client:
        build_zoo(recipe, manifest(lab), tmp_path / "cluster", progress=False, client=client, threads=1)
    for spec in SPECS:
        here = load_model(tmp_path / "here" / "models" / f"{spec.name}.pt").state_dict()
        there = load_model(tmp_path / "cluster" / "models" / f"{spec.name}.pt").state_dict()
        assert all(torch.equal(here[key], there[key]) for key in here), spec


# ------------------------------------------------------------------------------------------------------ data paths
def test_training_images_read_from_their_files_every_epoch_train_the_same_kind_of_record(lab, tmp_path, monkeypatch):
    monkeypatch.setattr(build_module, "IN_MEMORY_LIMIT", 0)
    recipe = recipe_of(lab, RECIPE.replace("epochs = 3", "epochs = 1\naugment = 2"))
    build_zoo(recipe, manifest(lab), tmp_path, progress=False)
    train, test = split_by_image(manifest(lab), test_fraction=0.2, seed=0)
    model = load_model(tmp_path / "models" / "imagenet-identity-seed0.pt")
    images = torch.stack([test.load_image(index) for index in range(len(test))])
    assert model.metadata["validation_accuracy"] == pytest.approx(
        float(np.mean(predictions(model, images) == test.labels("identity"))))


def test_a_task_is_scored_on_the_label_the_data_set_maps_it_to(lab, tmp_path):
    from lrp_faces.faces import as_face_data
    recipe = recipe_of(lab, RECIPE.replace('tasks = ["gender", "identity"]', 'tasks = ["sex"]'))
    build_zoo(recipe, as_face_data(manifest(lab), label_names={"sex": "gender"}), tmp_path, progress=False)
    model = load_model(tmp_path / "models" / "imagenet-sex-seed0.pt")
    assert list(model.class_names) == ["female", "male"] and model.metadata["label"] == "gender"


def test_a_task_without_labels_is_a_zoo_error_naming_it(lab, tmp_path):
    recipe = recipe_of(lab, RECIPE.replace('tasks = ["gender", "identity"]', 'tasks = ["age"]'))
    with pytest.raises(ZooError, match="cannot build the models of task 'age': the data set has no labels"):
        build_zoo(recipe, manifest(lab), tmp_path, progress=False)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_a_missing_gpu_is_a_zoo_error_before_anything_trains(lab, tmp_path):
    with pytest.raises(ZooError, match="CUDA is not available"):
        build_zoo(recipe_of(lab), manifest(lab), tmp_path, progress=False, device="cuda")
    assert not (tmp_path / "models").exists()


# ------------------------------------------------------------------------------------------------------ the recipe
def test_settings_resolve_defaults_then_task_then_pretraining_by_task(lab):
    recipe = recipe_of(lab, RECIPE + "[training.identity]\nepochs = 4\nlr = 0.01\n"
                                     "[training.vggface.identity]\nlr = 0.0003\n")
    assert recipe.settings("imagenet", "gender") == TrainingSettings(epochs=3, batch_size=8, lr=0.003)
    assert recipe.settings("imagenet", "identity") == TrainingSettings(epochs=4, batch_size=8, lr=0.01)
    assert recipe.settings("vggface", "identity") == TrainingSettings(epochs=4, batch_size=8, lr=0.0003)


def test_the_recipe_reads_every_table_of_the_file(lab):
    recipe = recipe_of(lab, RECIPE.replace("test_fraction = 0.2, seed = 0", "test_fraction = 0.4, seed = 3")
                       .replace("seeds = [0]", "seeds = [2, 0]\nout = \"models_out\""))
    assert recipe.bases == (BaseWeights("imagenet", lab / "weights" / "vgg16-397923af.pth", "torchvision"),
                            BaseWeights("vggface", lab / "weights" / "vgg_face_dag.pth", "vgg_face"))
    assert recipe.tasks == ("gender", "identity") and recipe.seeds == (2, 0) and recipe.out == lab / "models_out"
    assert recipe.split == HeldOutSplit(test_fraction=0.4, seed=3)
    assert len(recipe.specs()) == 8


@pytest.mark.parametrize("edit, message", [
    (("[training]\n", "[training]\nepoch = 3\n"),
     "recipe.toml: [training]: unknown key(s) ['epoch']; expected training settings"),
    (("epochs = 3", "epochs = 0"), "recipe.toml: [training].epochs: expected an integer >= 1, got 0"),
    (("lr = 0.003", "lr = \"fast\""), "recipe.toml: [training].lr: expected float (a number), got str 'fast'"),
    (("batch_size = 8", "batch_size = 8\ntrainable = \"last\""),
     "recipe.toml: [training].trainable: expected one of ['classifier', 'all'], got 'last'"),
    (("[training]\n", "[training.vggface.age]\nepochs = 2\n[training]\n"),
     "recipe.toml: [training.vggface].age: expected a table [training.vggface.TASK] of a task of [build].tasks"),
    (("[training]\n", "[training.gender]\nepoch = 2\n[training]\n"), "recipe.toml: [training.gender]: unknown key(s)"),
    (("format = \"vgg_face\"", "format = \"caffe\""),
     "recipe.toml: [base.vggface].format: expected one of ['lrp_faces', 'torchvision', 'vgg_face'], got 'caffe'"),
    (("seeds = [0]", "seeds = [0, 0]"), "recipe.toml: [build].seeds: expected distinct values, got [0, 0]"),
    (("seeds = [0]\n", ""), "recipe.toml: [build]: missing key 'seeds' (array)"),
    (("test_fraction = 0.2", "test_fraction = 1.5"), "[dataset.split].test_fraction: expected a float in (0, 1)"),
    (("[build]", "[biuld]"), "recipe.toml: missing table [build]"),
    (("vgg_face_dag.pth", "absent.pth"), "recipe.toml: [base.vggface].path: file "),
])
def test_recipe_errors_name_the_file_table_and_key(lab, edit, message):
    with pytest.raises(ZooError) as raised:
        recipe_of(lab, RECIPE.replace(*edit))
    assert message in str(raised.value)


def test_a_pretraining_named_like_a_task_is_refused(lab):
    with pytest.raises(ZooError, match=r"\['gender'\] occur twice"):
        ZooRecipe((BaseWeights("gender", lab / "ZOO.toml", "torchvision"),), ("gender",), (0,))


# ------------------------------------------------------------------------------------------------------ the command
def zoo_build(*arguments):
    return CliRunner().invoke(main, ["--no-progress", "zoo", "build", *map(str, arguments)])


def test_the_command_builds_the_zoo_and_prints_every_models_accuracies(lab, tmp_path):
    result = zoo_build(lab / "ZOO.toml", "--out", tmp_path / "zoo", "--threads", 1)
    assert result.exit_code == 0, result.output
    assert f"Zoo: {(tmp_path / 'zoo' / 'zoo.toml').resolve()} (4 models, 32 px)" in result.stdout
    for spec in SPECS:
        metadata = read_checkpoint_info(tmp_path / "zoo" / "models" / f"{spec.name}.pt")["metadata"]
        assert re.search(rf"\n  {spec.name} +train {metadata['train_accuracy']:.3f}  validation "
                         rf"{metadata['validation_accuracy']:.3f}\n", result.stdout), result.stdout
    assert "4 trained, 0 up to date" in result.stderr
    again = zoo_build(lab / "ZOO.toml", "--out", tmp_path / "zoo")
    assert again.exit_code == 0 and "0 trained, 4 up to date" in again.stderr


def test_the_command_writes_to_the_recipes_out_folder_by_default(lab, tmp_path):
    shutil.copytree(lab, tmp_path / "lab")
    recipe = tmp_path / "lab" / "ZOO.toml"
    recipe.write_text(RECIPE.replace('tasks = ["gender", "identity"]', 'tasks = ["gender"]\nout = "built"'))
    result = zoo_build(recipe, "-q")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "lab" / "built" / "zoo.toml").is_file() and result.stderr == ""


@pytest.mark.parametrize("edit, expected", [
    (("vgg_face_dag.pth", "absent.pth"), "ZOO.toml: [base.vggface].path: file '{lab}/weights/absent.pth' does not "
                                         "exist"),
    (("format = \"vgg_face\"", "format = \"torchvision\""),
     "base weights 'vggface' ('{lab}/weights/vgg_face_dag.pth') cannot be read as format 'torchvision'; the file is "
     "in format 'vgg_face': set format = \"vgg_face\""),
    (("[training]\n", "[training]\nepohcs = 2\n"), "ZOO.toml: [training]: unknown key(s) ['epohcs']"),
    (("image_size = 32", "image_size = 32\nsize = 3"), "ZOO.toml: [dataset]: unknown key(s) ['size']"),
    (('tasks = ["gender", "identity"]', 'tasks = ["age"]'),
     "cannot build the models of task 'age': the data set has no labels for it"),
])
def test_a_bad_recipe_file_gives_one_error_line(lab, tmp_path, edit, expected):
    shutil.copytree(lab, tmp_path / "lab")
    recipe = tmp_path / "lab" / "ZOO.toml"
    recipe.write_text(RECIPE.replace(*edit))
    result = zoo_build(recipe, "--out", tmp_path / "zoo")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert len(errors) == 1 and errors == lines[-1:], result.output
    assert expected.format(lab=tmp_path / "lab") in errors[0], errors[0]
    assert not (tmp_path / "zoo" / "models").exists()


def test_the_demo_faces_are_refused_as_training_data(lab, tmp_path):
    recipe = tmp_path / "ZOO.toml"
    recipe.write_text(RECIPE.replace("weights/", f"{lab}/weights/").replace(
        'kind = "manifest"\npath = "faces/manifest.csv"\n', 'kind = "demo"\n'))
    result = zoo_build(recipe, "--out", tmp_path / "zoo")
    assert result.exit_code == 1 and "[dataset].kind: \"demo\" is the demo zoo's faces" in result.stderr


def test_the_suites_recipe_is_valid_once_its_files_exist(tmp_path):
    """benchmarks/suites/zoo_build.toml, with its placeholder files created empty, reads as the 2 x 2 x 3 recipe."""
    suite = Path(__file__).resolve().parents[1] / "benchmarks" / "suites" / "zoo_build.toml"
    document = tomllib.loads(suite.read_text())
    for file in [base["path"] for base in document["base"].values()] + [document["dataset"]["path"]]:
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / file).touch()
    shutil.copy(suite, tmp_path / "zoo_build.toml")
    recipe, dataset = read_zoo_file(tmp_path / "zoo_build.toml")
    assert recipe.pretrainings == ["imagenet", "vggface"] and recipe.tasks == ("gender", "identity")
    assert len(recipe.specs()) == 12 and recipe.out == tmp_path / "zoo" and dataset.image_size == 224
    assert recipe.settings("vggface", "identity").epochs > recipe.settings("vggface", "gender").epochs


def test_an_output_folder_that_is_a_file_is_a_zoo_error(lab, tmp_path):
    (tmp_path / "zoo").write_text("not a folder")
    with pytest.raises(ZooError, match="is a file; give a folder"):
        build_zoo(recipe_of(lab), manifest(lab), tmp_path / "zoo", progress=False)


def test_a_finished_build_leaves_only_the_zoo_file_and_the_checkpoints(built):
    out, _ = built
    assert sorted(path.relative_to(out).as_posix() for path in out.rglob("*")) == sorted(
        ["zoo.toml", "models"] + [f"models/{spec.name}.pt" for spec in SPECS])


def test_a_model_whose_unit_finished_but_whose_checkpoint_is_gone_is_trained_again(built, lab, tmp_path, monkeypatch):
    out = fresh_copy(built, tmp_path)
    lost = out / "models" / "imagenet-gender-seed0.pt"
    lost.unlink()
    with monkeypatch.context() as patch:  # an interrupted build: its finished units stay in out/.units
        patch.setattr(build_module.UnitStore, "clear", lambda store: None)
        build_zoo(recipe_of(lab), manifest(lab), out, progress=False)
    assert (out / ".units" / "zoo_build" / "imagenet-gender-seed0.nc").is_file()
    lost.unlink()
    build_zoo(recipe_of(lab), manifest(lab), out, progress=False)
    assert torch.equal(load_model(lost).classifier[-1].weight,
                       load_model(built[0] / "models" / lost.name).classifier[-1].weight)
    assert not (out / ".units").exists()
