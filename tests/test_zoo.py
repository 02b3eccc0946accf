"""Model specs, zoos (TOML, mapping behaviour), fine-tuning and the cached demo zoo, on tiny models and settings.

The full demo zoo (accuracy and time requirements) is checked by ``benchmarks/demo_zoo.py``, not here.
"""
import dataclasses
import threading

import numpy as np
import pytest
import torch

import lrp_faces.zoo.demo as zoo_module
import lrp_faces.zoo.specs as specs_module
from lrp_faces.devices import DeviceError
from lrp_faces import vgg16
from lrp_faces.faces import synthetic_faces
from lrp_faces.models import load_model, save_model
from lrp_faces.zoo import (DemoSettings, ModelSpec, UnknownModelError, Zoo, ZooEntry, ZooError, ZooTypeError, accuracy,
                           demo_study_data, demo_zoo, finetune)

# 1 conv channel per block at width 1/64 would be degenerate; 1/16 gives 4 ... 32 channels, milliseconds per batch
TINY = dict(width=1 / 16, classifier_width=16, pool_size=1)
TINY_DEMO = DemoSettings(image_size=32, width=1 / 16, classifier_width=16, pool_size=1, seeds=(0,), object_classes=3,
                         images_per_object_class=4, pretrain_identities=4, pretrain_images_per_identity=3,
                         study_identities=2, train_images_per_identity=3, test_images_per_identity=2,
                         pretrain_epochs=1, finetune_epochs=2, batch_size=4)


def state(model):
    return {key: value.clone() for key, value in model.state_dict().items()}


def same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[key], b[key]) for key in a)


def tiny_model(num_classes=4, batch_norm=True, seed=0, **extra):
    torch.manual_seed(seed)
    return vgg16(num_classes=num_classes, batch_norm=batch_norm, **{**TINY, **extra})


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(4, 4, size=32, seed=5)


class Pairs(torch.utils.data.Dataset):
    """A generic dataset (no ``images``, no ``labels``): dark images are class 0, bright ones class 1."""

    def __init__(self, count=16, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.labels_ = [index % 2 for index in range(count)]
        self.images_ = [torch.rand(3, 32, 32, generator=generator) * 0.3 + 0.7 * label for label in self.labels_]

    def __len__(self):
        return len(self.labels_)

    def __getitem__(self, index):
        return self.images_[index], self.labels_[index]


# ------------------------------------------------------------------------------------------------------ ModelSpec
@pytest.mark.parametrize("arguments, message", [
    (("Faces", "gender", 0), "pretraining"), (("faces-x", "gender", 0), "pretraining"),
    (("faces", "", 0), "task"), (("faces", 3, 0), "task"), (("faces", "gender", -1), "seed"),
    (("faces", "gender", True), "seed"), (("faces", "gender", 1.0), "seed"), (("faces", "gender", "0"), "seed")])
def test_model_spec_rejects_bad_fields_naming_them(arguments, message):
    with pytest.raises(ZooError, match=f"ModelSpec.{message}"):
        ModelSpec(*arguments)


def test_model_spec_round_trips_and_sorts():
    spec = ModelSpec("vgg_face2", "identity", np.int64(3))
    assert type(spec.seed) is int and spec.name == "vgg_face2-identity-seed3" and str(spec) == spec.name
    assert ModelSpec.from_dict(spec.to_dict()) == spec == ModelSpec.parse(spec.name)
    assert spec.to_dict() == {"pretraining": "vgg_face2", "task": "identity", "seed": 3}
    assert hash(spec) == hash(ModelSpec("vgg_face2", "identity", 3))
    specs = [ModelSpec("objects", "gender", 0), ModelSpec("faces", "identity", 10), ModelSpec("faces", "identity", 2),
             ModelSpec("faces", "gender", 1)]
    assert [s.name for s in sorted(specs)] == ["faces-gender-seed1", "faces-identity-seed2", "faces-identity-seed10",
                                               "objects-gender-seed0"]
    with pytest.raises(ZooError, match=r"missing \['seed'\], unknown \['sed'\]"):
        ModelSpec.from_dict({"pretraining": "faces", "task": "gender", "sed": 0})
    with pytest.raises(ZooError, match="pretraining-task-seedN"):
        ModelSpec.parse("faces_gender_0")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.seed = 4


# ------------------------------------------------------------------------------------------------------ Zoo mapping
def fake_zoo(tmp_path, specs):
    return Zoo([ZooEntry(spec, tmp_path / f"{spec.name}.pt") for spec in specs], image_size=64)


def test_zoo_is_a_sorted_mapping_that_loads_only_on_access(tmp_path):
    specs = [ModelSpec(p, t, s) for s in (2, 0) for t in ("identity", "gender") for p in ("objects", "faces")]
    zoo = fake_zoo(tmp_path, specs)  # the files do not exist: anything that loads a model would fail
    assert list(zoo) == zoo.specs == sorted(specs) and list(zoo.keys()) == sorted(specs) and len(zoo) == 8
    assert zoo.pretrainings == ["faces", "objects"] and zoo.tasks == ["gender", "identity"] and zoo.seeds == [0, 2]
    assert ModelSpec("faces", "gender", 2) in zoo and ModelSpec("faces", "gender", 1) not in zoo and "x" not in zoo
    assert zoo == fake_zoo(tmp_path, reversed(specs)) and zoo != fake_zoo(tmp_path, specs[:3])
    assert "8 models" in repr(zoo) and "64 px" in repr(zoo)
    assert zoo.select(task="gender", seed=0).specs == [ModelSpec("faces", "gender", 0),
                                                       ModelSpec("objects", "gender", 0)]
    with pytest.raises(KeyError, match=r"no model faces-gender-seed1 in this zoo; it has faces-gender-seed0, "):
        zoo[ModelSpec("faces", "gender", 1)]
    with pytest.raises(KeyError, match="seed=5"):
        zoo.select(seed=5)
    with pytest.raises(ZooError, match="declared twice"):
        fake_zoo(tmp_path, specs[:2] + specs[:1])
    with pytest.raises(ZooError, match="at least one model"):
        Zoo([])


def test_a_missing_model_is_a_zoo_error_naming_it_and_the_known_ones_and_get_still_works(tmp_path):
    specs = [ModelSpec("faces", "gender", 0), ModelSpec("objects", "gender", 0)]
    zoo = fake_zoo(tmp_path, specs)
    with pytest.raises(UnknownModelError) as error:
        zoo[ModelSpec("faces", "identity", 0)]
    assert isinstance(error.value, ZooError) and isinstance(error.value, KeyError)
    assert str(error.value) == ("no model faces-identity-seed0 in this zoo; it has faces-gender-seed0, "
                                "objects-gender-seed0")  # the sentence, not KeyError's quoted repr
    assert zoo.get(ModelSpec("faces", "identity", 0)) is None and ModelSpec("faces", "identity", 0) not in zoo
    with pytest.raises(UnknownModelError, match=r"no str 'faces-gender-seed0' \(a zoo is indexed by ModelSpec\)"):
        zoo["faces-gender-seed0"]
    with pytest.raises(ZooError, match=r"^no model in this zoo matches task='identity'; it has faces-gender-seed0"):
        zoo.select(task="identity")


def test_entries_of_the_wrong_type_are_package_type_errors(tmp_path):
    with pytest.raises(ZooTypeError, match="ZooEntry.spec must be a ModelSpec"):
        ZooEntry("faces-gender-seed0", tmp_path / "model.pt")
    with pytest.raises(TypeError, match="ZooEntry objects"):
        Zoo([ModelSpec("faces", "gender", 0)])


# ------------------------------------------------------------------------------------------------------ checkpoints
@pytest.fixture
def identity_checkpoint(tmp_path):
    """An lrp_faces checkpoint of a 3-class identity model, saved with its spec and class names."""
    model = tiny_model(num_classes=3).eval()
    return save_model(model, tmp_path / "identity.pt", spec=ModelSpec("faces", "identity", 0),
                      class_names=["ann", "bob", "cy"])


def test_loading_a_checkpoint_saved_for_another_spec_names_the_file_and_both_specs(identity_checkpoint):
    declared = ModelSpec("faces", "gender", 0)
    zoo = Zoo([ZooEntry(declared, identity_checkpoint)])
    with pytest.raises(ZooError, match=r"model faces-gender-seed0 \('.*identity\.pt'\): the checkpoint was saved as "
                                       r"model faces-identity-seed0 \(task 'gender' declared, 'identity' found\)"):
        zoo[declared]
    right = Zoo([ZooEntry(ModelSpec("faces", "identity", 0), identity_checkpoint)])
    assert right[ModelSpec("faces", "identity", 0)].num_classes == 3


def test_check_finds_another_spec_without_loading_the_weights(identity_checkpoint, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(specs_module, "load_model", forbidden)
    ZooEntry(ModelSpec("faces", "identity", 0), identity_checkpoint).check()
    with pytest.raises(ZooError, match=r"seed 1 declared, 0 found"):
        ZooEntry(ModelSpec("faces", "identity", 1), identity_checkpoint).check()


@pytest.mark.parametrize("classes, message", [
    (2, r"the model has 3 outputs, but task 'identity' is scored on 2 classes"),
    (["ann", "bob"], r"3 outputs, but task 'identity' is scored on 2 classes \['ann', 'bob'\]"),
    (["ann", "cy", "bob"], r"the checkpoint's classes are \['ann', 'bob', 'cy'\], but task 'identity' is scored on "
                           r"3 classes \['ann', 'cy', 'bob'\]")])
def test_check_compares_the_head_and_class_names_with_the_tasks_classes(identity_checkpoint, classes, message):
    entry = ZooEntry(ModelSpec("faces", "identity", 0), identity_checkpoint)
    with pytest.raises(ZooError, match=message):
        entry.check(classes)


def test_check_accepts_the_tasks_own_classes(identity_checkpoint):
    entry = ZooEntry(ModelSpec("faces", "identity", 0), identity_checkpoint)
    for classes in (3, ["ann", "bob", "cy"], ("ann", "bob", "cy")):
        assert entry.check(classes) is None
    for bad in (0, "ann", [], [1, 2, 3], 2.0):
        with pytest.raises(ZooError, match="classes"):
            entry.check(bad)


def test_zoo_check_lists_every_model_that_is_not_what_its_declaration_says(tmp_path, identity_checkpoint):
    torch.save(tiny_model(num_classes=7, batch_norm=False).state_dict(), tmp_path / "plain.pth")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(identity_checkpoint.read_bytes()[:500])
    zoo = Zoo([ZooEntry(ModelSpec("faces", "identity", 0), identity_checkpoint),
               ZooEntry(ModelSpec("faces", "gender", 0), identity_checkpoint),
               ZooEntry(ModelSpec("faces", "gender", 1), truncated),
               ZooEntry(ModelSpec("imagenet", "gender", 0), tmp_path / "plain.pth", "torchvision", num_classes=7),
               ZooEntry(ModelSpec("imagenet", "gender", 1), tmp_path / "absent.pth", "torchvision")])
    with pytest.raises(ZooError) as without_classes:
        zoo.check()
    with pytest.raises(ZooError) as with_classes:
        zoo.check({"gender": 2, "identity": 3})
    lines = [line.strip() for line in str(with_classes.value).splitlines()]
    assert str(without_classes.value).startswith("3 of the zoo's 5 models do not match their declaration:")
    assert lines[0] == "4 of the zoo's 5 models do not match their declaration:" and len(lines) == 5
    assert "model faces-gender-seed0 (" in lines[1] and "task 'gender' declared, 'identity' found" in lines[1]
    assert lines[2].startswith("model faces-gender-seed1: ") and "truncated.pt" in lines[2]
    assert "model imagenet-gender-seed0 (" in lines[3] and "7 outputs" in lines[3]
    assert "model imagenet-gender-seed1 (" in lines[4] and "absent.pth' does not exist" in lines[4]


def test_zoo_check_passes_a_zoo_whose_files_are_the_declared_models(study):
    folder, models = study
    (folder / "study.toml").write_text(GOOD.replace('"torchvision"', '"torchvision"\nnum_classes = 2'))
    zoo = Zoo.from_toml(folder / "study.toml")
    assert zoo.check() is None and zoo.check({"gender": 2, "identity": 3}) is None
    with pytest.raises(ZooError, match="3 outputs"):
        zoo.check({"identity": 4})


# ------------------------------------------------------------------------------------------------------ TOML
@pytest.fixture
def study(tmp_path):
    """A study folder: two lrp_faces checkpoints and a torchvision state dict, and the models that wrote them."""
    models = {}
    (tmp_path / "models").mkdir()
    for seed, task in ((0, "gender"), (1, "identity")):
        models[ModelSpec("faces", task, seed)] = model = tiny_model(num_classes=2 + seed, seed=seed).eval()
        save_model(model, tmp_path / "models" / f"faces-{task}-{seed}.pt", metadata={"note": "test"})
    models[ModelSpec("imagenet", "gender", 0)] = plain = tiny_model(num_classes=7, batch_norm=False, seed=2).eval()
    torch.save(plain.state_dict(), tmp_path / "models" / "imagenet.pth")
    return tmp_path, models


GOOD = """
[zoo]
image_size = 32
[[zoo.models]]
pretraining = "faces"
task = "gender"
seed = 0
path = "models/faces-gender-0.pt"
[[zoo.models]]
pretraining = "faces"
task = "identity"
seed = 1
path = "models/faces-identity-1.pt"
format = "lrp_faces"
[[zoo.models]]
pretraining = "imagenet"
task = "gender"
seed = 0
path = "models/imagenet.pth"
format = "torchvision"
"""


def test_from_toml_reads_relative_paths_and_both_formats(study, images):
    folder, models = study
    (folder / "study.toml").write_text(GOOD)
    zoo = Zoo.from_toml(folder / "study.toml")
    assert zoo.specs == sorted(models) and zoo.image_size == 32
    assert zoo.entries[ModelSpec("imagenet", "gender", 0)].format == "torchvision"
    for spec, original in models.items():
        loaded = zoo[spec]
        assert not loaded.training and loaded.spec == spec.to_dict()
        assert torch.equal(loaded(images), original(images))
    assert zoo[ModelSpec("faces", "gender", 0)].metadata == {"note": "test"}
    # a new head for external weights, seeded by the spec's seed
    (folder / "heads.toml").write_text(GOOD.replace('"torchvision"', '"torchvision"\nnum_classes = 2'))
    head = Zoo.from_toml(folder / "heads.toml")[ModelSpec("imagenet", "gender", 0)]
    assert head.num_classes == 2 and torch.equal(head.features[0].weight, models[ModelSpec("imagenet", "gender", 0)]
                                                 .features[0].weight)


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace("seed = 1\n", ""), r"models\[1\]: missing key 'seed' \(int\)"),
    (lambda t: t.replace("seed = 1", 'seed = "1"'), r"models\[1\]\.seed: expected int, got str '1'"),
    (lambda t: t.replace("seed = 1", "seed = 1.0"), r"models\[1\]\.seed: expected int, got float"),
    (lambda t: t.replace("seed = 1", "seed = -1"), r"models\[1\]: ModelSpec\.seed must be an integer >= 0"),
    (lambda t: t.replace('task = "identity"', "task = true"), r"models\[1\]\.task: expected str, got bool"),
    (lambda t: t.replace("image_size = 32", 'image_size = "32"'), r"\[zoo\]\.image_size: expected int, got str"),
    (lambda t: t.replace("seed = 1", "seed = 1\ncolour = 2"), r"models\[1\]: unknown key\(s\) \['colour'\]"),
    (lambda t: t.replace("image_size = 32", "image_sise = 32"), r"\[zoo\]: unknown key\(s\) \['image_sise'\]"),
    (lambda t: t.replace("seed = 1", "sed = 1"), r"models\[1\]: unknown key\(s\) \['sed'\]"),  # not "missing seed"
    (lambda t: t.replace('"identity"', '"gender"').replace("seed = 1", "seed = 0"),
     r"models\[1\]: model faces-gender-seed0 is declared twice \(also in models\[0\]\)"),
    (lambda t: t.replace("faces-identity-1.pt", "nope.pt"), r"models\[1\]\.path: file .*nope\.pt.* does not exist"),
    (lambda t: t.replace('"lrp_faces"', '"onnx"'), r"models\[1\]: model faces-identity-seed1: format must be one of"),
    (lambda t: t.replace('format = "lrp_faces"', "num_classes = 3"), r"models\[1\]: .*num_classes applies to"),
    (lambda t: t.replace("[[zoo.models]]", "[[zoo.model]]"), r"unknown key\(s\) \['model'\]"),
    (lambda t: t.replace("[zoo]", "[study]").replace("zoo.models", "study.models"), r"has no \[zoo\] table"),
    (lambda t: t.replace("seed = 1", "seed = "), "is not valid TOML"),
    (lambda t: "[zoo]\nmodels = []\n", r"\[zoo\]\.models: expected a non-empty array"),
    (lambda t: "zoo = 3\n", r"\[zoo\]: expected a table"),
])
def test_from_toml_errors_name_the_key_and_the_expected_type(study, edit, message):
    folder, _ = study
    (folder / "study.toml").write_text(edit(GOOD))
    with pytest.raises(ZooError, match=message) as error:
        Zoo.from_toml(folder / "study.toml")
    assert "study.toml" in str(error.value)


def test_from_toml_of_a_missing_file(tmp_path):
    with pytest.raises(ZooError, match="does not exist"):
        Zoo.from_toml(tmp_path / "absent.toml")


# ------------------------------------------------------------------------------------------------------ finetune
def test_finetune_is_deterministic_leaves_the_base_and_the_global_rng_alone(faces):
    base = tiny_model(num_classes=4, dropout=0.5)
    before, rng = state(base), torch.get_rng_state()
    arguments = dict(task="identity", epochs=2, lr=3e-3, trainable="all", batch_size=4, progress=False)
    first, second = finetune(base, faces, seed=3, **arguments), finetune(base, faces, seed=3, **arguments)
    assert same_state(state(first), state(second))
    assert not same_state(state(first), state(finetune(base, faces, seed=4, **arguments)))
    assert same_state(before, state(base)) and torch.equal(rng, torch.get_rng_state())
    assert not same_state(state(first), before)
    assert not first.training and all(parameter.requires_grad for parameter in first.parameters())
    assert all(parameter.is_contiguous() for parameter in first.parameters())
    assert first.metadata["train_images"] == 16 and first.metadata["epochs"] == 2
    assert first.class_names == list(faces.class_names("identity"))


def test_finetune_in_threads_matches_sequential(faces):
    base = tiny_model(num_classes=2, dropout=0.3)
    arguments = dict(task="gender", epochs=1, trainable="all", batch_size=4, progress=False, augment=2)
    expected = [state(finetune(base, faces, seed=seed, **arguments)) for seed in (0, 1)]
    results = {}
    threads = [threading.Thread(target=lambda s=seed: results.__setitem__(s, state(finetune(base, faces, seed=s,
                                                                                               **arguments))))
               for seed in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(same_state(results[seed], expected[seed]) for seed in (0, 1))


def test_finetune_replaces_the_head_when_classes_differ(faces, images):
    base = tiny_model(num_classes=4)
    model = finetune(base, faces, task="gender", seed=1, epochs=1, progress=False, validation=faces)
    assert model.num_classes == 2 and base.num_classes == 4
    assert model.class_names == ["female", "male"] and model.architecture["num_classes"] == 2
    assert model(images).shape == (4, 2) and 0 <= model.metadata["validation_accuracy"] <= 1
    same = finetune(base, faces, task="identity", seed=1, epochs=1, progress=False)  # 4 identities: head kept
    assert same.num_classes == 4 and "reinitialised_layers" not in (getattr(same, "provenance", None) or {})


def test_trainable_classifier_leaves_the_features_and_their_statistics_unchanged(faces):
    base = tiny_model(num_classes=2, dropout=0.2)
    for augment in (0, 1):  # cached features, and features recomputed for shifted images
        model = finetune(base, faces, task="gender", seed=0, epochs=2, lr=1e-2, batch_size=4, augment=augment,
                         progress=False)
        assert same_state(state(model.features), state(base.features))
        assert not same_state(state(model.classifier), state(base.classifier))


def test_finetune_learns_a_separable_task_from_a_generic_dataset():
    data = Pairs()
    model = finetune(tiny_model(num_classes=3, dropout=0.0), data, seed=0, epochs=8, lr=1e-2, trainable="all",
                     batch_size=4, progress=False, schedule="constant", label_smoothing=0.1)
    assert model.num_classes == 2 and model.class_names is None  # classes from the labels; no names
    assert accuracy(model, data) == 1.0 and accuracy(model, Pairs(seed=1)) == 1.0
    assert model.metadata["schedule"] == "constant" and model.metadata["train_accuracy_last_epoch"] > 0.5


@pytest.mark.parametrize("arguments, message", [
    ({"trainable": "features"}, "trainable"), ({"schedule": "step"}, "schedule"), ({"epochs": 0}, "epochs"),
    ({"batch_size": 2.0}, "batch_size"), ({"lr": 0}, "lr"), ({"label_smoothing": 1.0}, "label_smoothing"),
    ({"augment": -1}, "augment"), ({"seed": -1}, "seed"), ({"lr": "fast"}, "lr"), ({"num_classes": 0}, "num_classes")])
def test_finetune_rejects_bad_arguments(faces, arguments, message):
    with pytest.raises(ZooError, match=message):
        finetune(tiny_model(), faces, progress=False, **arguments)


def test_finetune_on_an_unknown_device_names_it_and_the_choices(faces):
    with pytest.raises(DeviceError, match="unknown device 'abacus': use 'cpu', 'cuda', 'cuda:N'"):
        finetune(tiny_model(), faces, progress=False, device="abacus")


def test_finetune_of_something_else_than_a_vgg_is_a_package_type_error(faces):
    with pytest.raises(ZooTypeError, match="base_model must be a NormalizedVGG"):
        finetune(torch.nn.Linear(2, 2), faces, progress=False)


def test_finetune_on_an_empty_generic_dataset_says_so():
    with pytest.raises(ZooError, match="cannot fine-tune on an empty dataset"):
        finetune(tiny_model(), Pairs(count=0), progress=False)


def test_finetune_on_the_cpu_device_gives_the_default_weights(faces):
    base = tiny_model(num_classes=2, dropout=0.3)
    arguments = dict(task="gender", seed=2, epochs=1, trainable="all", batch_size=4, augment=1, progress=False)
    default = finetune(base, faces, **arguments)
    for device in ("cpu", torch.device("cpu")):
        model = finetune(base, faces, device=device, **arguments)
        assert same_state(state(model), state(default)) and model.metadata["device"] == "cpu"
        assert all(parameter.device.type == "cpu" for parameter in model.parameters())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error where CUDA is missing")
def test_finetune_on_a_missing_gpu_says_that_cuda_is_not_available(faces):
    with pytest.raises(DeviceError, match=r"device 'cuda:0' asked for, but CUDA is not available"):
        finetune(tiny_model(), faces, device="cuda:0", progress=False)


def test_accuracy_gives_every_module_its_own_training_flag_back(faces):
    model = tiny_model(num_classes=4, dropout=0.5).train()
    model.features.eval()  # e.g. fine-tuning the classifier only
    accuracy(model, faces, "identity")
    assert model.training and model.classifier.training and not model.features.training
    assert not any(module.training for module in model.features.modules())


# ------------------------------------------------------------------------------------------------------ demo
def every_state(zoo):
    return {spec: state(zoo[spec]) for spec in zoo}


def test_demo_settings_validate_and_every_setting_changes_the_key():
    settings = DemoSettings()
    assert len(settings.specs()) == 12 and settings.architecture()["dropout"] == settings.dropout
    assert settings.key() == DemoSettings().key() and len(settings.key()) == 16
    quick = DemoSettings.quick()
    assert quick.image_size == 64 and quick.study_identities * quick.test_images_per_identity >= 60
    keys = {settings.key()}
    for field in dataclasses.fields(DemoSettings):
        value = getattr(settings, field.name)
        changed = (not value if isinstance(value, bool) else value + (3,) if isinstance(value, tuple)
                   else "classifier" if isinstance(value, str) else value + 1 if isinstance(value, int)
                   else value * 0.5 + 0.01)
        keys.add(dataclasses.replace(settings, **{field.name: changed}).key())
    assert len(keys) == 1 + len(dataclasses.fields(DemoSettings))
    assert DemoSettings(seeds=[2, 1]).seeds == (2, 1)
    for bad in ({"seeds": ()}, {"seeds": (1, 1)}, {"image_size": 16}, {"finetune_trainable": "head"},
                {"dropout": 1.0}, {"batch_norm": 1}, {"pretrain_lr": "fast"}, {"study_identities": 1}):
        with pytest.raises(ZooError):
            DemoSettings(**bad)


def test_demo_study_data_splits_each_identity():
    settings = DemoSettings()
    train, test = demo_study_data(settings)
    assert len(test) == 80 and len(train) == 240 and test.images.shape[1:] == (3, 64, 64)
    assert not set(train.image_ids) & set(test.image_ids)
    assert np.array_equal(np.bincount(test.identity), np.full(10, 8))
    assert np.array_equal(np.bincount(train.identity), np.full(10, 24))


def test_demo_trains_once_then_loads(tmp_path, monkeypatch):
    zoo = demo_zoo(TINY_DEMO, cache_dir=tmp_path, progress=False)
    folder = tmp_path / f"demo-{TINY_DEMO.key()}"
    assert sorted(path.name for path in folder.iterdir()) == sorted(
        ["settings.json", "base-faces.pt", "base-objects.pt"] + [f"{spec.name}.pt" for spec in TINY_DEMO.specs()])
    assert zoo.specs == TINY_DEMO.specs() and zoo.image_size == 32 and len(zoo) == 4
    model = zoo[ModelSpec("faces", "gender", 0)]
    assert model.metadata["demo_key"] == TINY_DEMO.key() and model.class_names == ["female", "male"]
    assert model.architecture["width"] == 1 / 16 and model.num_classes == 2
    trained = every_state(zoo)

    def forbidden(*args, **kwargs):
        raise AssertionError("the cached zoo was trained again")

    monkeypatch.setattr(zoo_module, "_train_demo_zoo", forbidden)
    monkeypatch.setattr(zoo_module, "finetune", forbidden)
    again = demo_zoo(TINY_DEMO, cache_dir=tmp_path, progress=False)
    assert again == zoo and same_state(every_state(again)[ModelSpec("objects", "identity", 0)],
                                       trained[ModelSpec("objects", "identity", 0)])
    # another setting is another folder, so it trains
    with pytest.raises(AssertionError, match="trained again"):
        demo_zoo(dataclasses.replace(TINY_DEMO, finetune_lr=1e-2), cache_dir=tmp_path, progress=False)


def test_demo_retrains_only_damaged_files_and_bit_identically(tmp_path, monkeypatch):
    zoo = demo_zoo(TINY_DEMO, cache_dir=tmp_path, progress=False, workers=2)
    trained = every_state(zoo)
    folder = tmp_path / f"demo-{TINY_DEMO.key()}"
    truncated, tampered = folder / "faces-identity-seed0.pt", folder / "objects-gender-seed0.pt"
    truncated.write_bytes(truncated.read_bytes()[:1000])
    content = torch.load(tampered, weights_only=True)
    content["state_dict"]["classifier.0.bias"] += 1e-3  # readable, but the weights are not the recorded ones
    torch.save(content, tampered)

    def no_pretraining(*args, **kwargs):
        raise AssertionError("the cached bases were trained again")

    monkeypatch.setattr(zoo_module, "_pretrain", no_pretraining)
    with pytest.warns(RuntimeWarning, match="damaged") as record:
        again = demo_zoo(TINY_DEMO, cache_dir=tmp_path, progress=False, workers=1)
    messages = " ".join(str(warning.message) for warning in record)
    assert "faces-identity-seed0.pt" in messages and "digest" in messages and "objects-gender" in messages
    assert all(same_state(every_state(again)[spec], trained[spec]) for spec in trained)
    assert load_model(truncated).spec == ModelSpec("faces", "identity", 0).to_dict()


def test_demo_is_deterministic_across_cache_dirs_and_workers(tmp_path):
    settings = dataclasses.replace(TINY_DEMO, seeds=(0, 1), dropout=0.25)
    rng = torch.get_rng_state()
    first = every_state(demo_zoo(settings, cache_dir=tmp_path / "a", progress=False, workers=1))
    second = every_state(demo_zoo(settings, cache_dir=tmp_path / "b", progress=False, workers=3))
    assert all(same_state(first[spec], second[spec]) for spec in first) and len(first) == 8
    assert not same_state(first[ModelSpec("faces", "gender", 0)], first[ModelSpec("faces", "gender", 1)])
    assert torch.equal(rng, torch.get_rng_state())
    with pytest.raises(ZooError, match="workers"):
        demo_zoo(settings, cache_dir=tmp_path / "c", progress=False, workers=0)
    with pytest.raises(TypeError, match="DemoSettings"):
        demo_zoo({"seeds": (0,)}, cache_dir=tmp_path)


def test_model_ids_round_trip_and_bad_ids_are_named():
    spec = ModelSpec("faces", "gender", 2)
    assert spec.id == "faces/gender/2"
    assert ModelSpec.from_id("faces/gender/2") == spec
    for bad in ("faces/gender", "faces/gender/x", "faces-gender-seed2", 3):
        with pytest.raises(ZooError, match="faces/gender/0"):
            ModelSpec.from_id(bad)
