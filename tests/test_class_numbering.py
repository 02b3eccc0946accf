"""Identity labels mean the same class everywhere: a held-out set numbered by itself is scored in the model's classes.

The data are what a lab has, made here: a checkpoint saved with its class names, a training CSV and a held-out CSV of
PNG faces in which one identity ("alice") is absent, and a CSV with an identity the model does not know ("dave").
"""
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import lrp_faces
from conftest import small_vgg
from lrp_faces import analysis, cube, masking
from lrp_faces.analysis import AnalysisError, RSAError
from lrp_faces.cli import main
from lrp_faces.cli.runner import load_dataset
from lrp_faces.cli.study import Study, StudyError
from lrp_faces.zoo import HeldOutSplit
from lrp_faces.cube import CubeInputError
from lrp_faces.faces import ClassMismatchError, FaceDataset, class_mapping, split_by_image, synthetic_faces
from lrp_faces.masking import MaskingError
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry, ZooError, accuracy, scored_labels

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE, PER_IDENTITY = 32, 3
CLASSES = ("alice", "bob", "carol")
SPEC = ModelSpec("vggface", "identity", 0)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """PNG faces of alice, bob, carol and dave; train.csv (alice, bob, carol), held_out.csv (bob, carol: alice is
    absent), stranger.csv (bob, carol and dave); an identity checkpoint saved with the class names of train.csv."""
    root = tmp_path_factory.mktemp("lab")
    (root / "faces").mkdir()
    people = CLASSES + ("dave",)
    faces = synthetic_faces(len(people), PER_IDENTITY, size=SIZE, seed=11)
    rows = {}
    for index, image_id in enumerate(faces.image_ids):
        name = people[faces.identity[index]]
        path = f"faces/{name}_{index % PER_IDENTITY}.png"
        pixels = np.round(faces.images[index].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / path)
        rows.setdefault(name, []).append(f"{path},{name},{faces.gender[index]}")
    for file, names in (("train.csv", CLASSES), ("held_out.csv", ("bob", "carol")),
                        ("stranger.csv", ("bob", "carol", "dave"))):
        (root / file).write_text("path,identity,gender\n" + "".join(f"{row}\n" for name in names for row in rows[name]))
    model = small_vgg(num_classes=len(CLASSES), seed=4)
    save_model(model, root / "identity.pt", spec=SPEC, class_names=CLASSES)
    return root


@pytest.fixture(scope="module")
def zoo(lab):
    return Zoo([ZooEntry(SPEC, lab / "identity.pt")], image_size=SIZE)


@pytest.fixture(scope="module")
def held_out(lab):
    return FaceDataset.from_manifest(lab / "held_out.csv", image_size=SIZE)


@pytest.fixture(scope="module")
def model_classes(held_out):
    """The held-out images' classes in the model's numbering, written out by hand: bob is 1, carol is 2."""
    return np.array([{"bob": 1, "carol": 2}[m["identity"]] for m in held_out.metadata])


@pytest.fixture(scope="module")
def held_out_cube(zoo, held_out, tmp_path_factory):
    return cube.compute(zoo, held_out, tmp_path_factory.mktemp("cube") / "cube", batch_size=8,
                        progress=False).load()


def images_of(dataset):
    return torch.stack([dataset.load_image(index) for index in range(len(dataset))])


# ------------------------------------------------------------------------------------------------- class_mapping
def test_class_mapping_maps_a_subset_of_the_models_classes_by_name():
    assert class_mapping(CLASSES, ("bob", "carol"), "identity", "m").tolist() == [1, 2]
    assert class_mapping(CLASSES, ("carol", "alice"), "identity", "m").tolist() == [2, 0]


def test_class_mapping_without_names_on_either_side_keeps_the_positional_meaning():
    assert class_mapping(None, ("bob",), "identity", "m") is None
    assert class_mapping(CLASSES, None, "identity", "m") is None


def test_a_class_the_model_does_not_know_is_an_error_naming_the_first_ones():
    with pytest.raises(ClassMismatchError, match=r"model m, task 'identity': the data set's 2 classes 1 'dave', "
                                                 r"2 'erin' are not classes of the model .*'alice', 'bob', 'carol'"):
        class_mapping(CLASSES, ("bob", "dave", "erin"), "identity", "model m")
    assert issubclass(ClassMismatchError, ValueError) and issubclass(ClassMismatchError, lrp_faces.DatasetError)


def test_only_the_classes_that_occur_in_the_labels_must_be_the_models():
    mapping = class_mapping(CLASSES, ("bob", "dave"), "identity", "m", labels=[0, 0])
    assert mapping.tolist() == [1, -1]
    with pytest.raises(ClassMismatchError, match="'dave'"):
        class_mapping(CLASSES, ("bob", "dave"), "identity", "m", labels=[0, 1])


# ------------------------------------------------------------------------------------------------ scored_labels
def test_scored_labels_are_in_the_models_numbering(zoo, held_out, model_classes):
    assert held_out.labels("identity").tolist() == [0, 0, 0, 1, 1, 1]  # numbered afresh: bob is 0 here
    scored = scored_labels(zoo, [SPEC], held_out)["identity"]
    np.testing.assert_array_equal(scored.labels, model_classes)
    assert scored.class_names == CLASSES


def test_models_of_one_task_with_their_classes_in_another_order_are_an_error(held_out):
    first, second = small_vgg(num_classes=3, seed=0), small_vgg(num_classes=3, seed=1)
    first.card = first.card.replace(class_names=CLASSES)
    second.card = second.card.replace(class_names=("carol", "bob", "alice"))
    other = ModelSpec("vggface", "identity", 1)
    with pytest.raises(ClassMismatchError, match="vggface-identity-seed0 and vggface-identity-seed1.*'bob'|'carol'"):
        scored_labels({SPEC: first, other: second}, [SPEC, other], held_out)


def test_models_without_class_names_are_scored_by_position_within_their_outputs(held_out):
    nameless = small_vgg(num_classes=2, seed=0)
    np.testing.assert_array_equal(scored_labels({SPEC: nameless}, [SPEC], held_out)["identity"].labels,
                                  held_out.labels("identity"))
    narrow = small_vgg(num_classes=1, seed=0)
    with pytest.raises(ClassMismatchError, match="labels go up to 1 but the model has 1 classes"):
        scored_labels({SPEC: narrow}, [SPEC], held_out)


# ------------------------------------------------------------------------------------------- the Python API
def test_the_cube_explains_and_stores_the_models_classes(zoo, held_out, held_out_cube, model_classes):
    np.testing.assert_array_equal(held_out_cube["label"].values.reshape(-1), model_classes)
    expected = lrp_faces.attribute(zoo[SPEC], images_of(held_out), target=torch.from_numpy(model_classes),
                                   batch_size=8)
    np.testing.assert_array_equal(held_out_cube["relevance"].values.reshape(expected.shape), expected.numpy())
    assert json.loads(held_out_cube.attrs["models"])[SPEC.name]["class_names"] == list(CLASSES)


def test_the_masking_steps_score_the_models_classes(zoo, held_out, held_out_cube, model_classes):
    with torch.no_grad():
        predictions = zoo[SPEC](images_of(held_out)).argmax(1).numpy()
    own = masking.own_map_curves(held_out_cube, zoo, held_out, fractions=(0.0, 0.5))
    np.testing.assert_array_equal(own["label"].values.reshape(-1), model_classes)
    np.testing.assert_array_equal(own["correct"].sel(fraction=0.0).values.reshape(-1), predictions == model_classes)
    assert json.loads(own.attrs["class_names"]) == {"identity": list(CLASSES)}
    transfer = masking.generalization(held_out_cube, zoo, held_out, fractions=(0.0, 0.5), n_bootstrap=5,
                                      n_permutations=5, progress=False)
    np.testing.assert_array_equal(transfer["unmasked_correct"].values.reshape(-1), predictions == model_classes)
    assert json.loads(transfer.attrs["class_names"]) == {"identity": list(CLASSES)}


def test_method_comparison_and_accuracy_score_the_models_classes(lab, zoo, held_out, model_classes):
    numbered_as_the_model = FaceDataset.from_manifest(lab / "held_out.csv", image_size=SIZE, classes=CLASSES)
    assert numbered_as_the_model.labels("identity").tolist() == model_classes.tolist()
    arguments = dict(methods=("gradient",), fractions=(0.0, 0.5), n_bootstrap=5)
    np.testing.assert_array_equal(analysis.method_comparison(zoo, held_out, **arguments).value.values,
                                  analysis.method_comparison(zoo, numbered_as_the_model, **arguments).value.values)
    with torch.no_grad():
        predictions = zoo[SPEC](images_of(held_out)).argmax(1).numpy()
    assert accuracy(zoo[SPEC], held_out, "identity") == pytest.approx(np.mean(predictions == model_classes))


def test_an_identity_the_model_does_not_know_is_an_error_naming_it(lab, zoo, held_out_cube, tmp_path):
    stranger = FaceDataset.from_manifest(lab / "stranger.csv", image_size=SIZE)
    message = r"vggface-identity-seed0, task 'identity': the data set's class 2 'dave' is not a class of the model"
    with pytest.raises(CubeInputError, match=message):
        cube.compute(zoo, stranger, tmp_path / "cube", progress=False)
    assert not list((tmp_path / "cube").glob("*.nc"))
    with pytest.raises(MaskingError, match=message):  # the cube's images (bob, carol) are among the stranger set's
        masking.own_map_curves(held_out_cube, zoo, stranger, fractions=(0.0, 0.5))
    with pytest.raises(AnalysisError, match=message):
        analysis.method_comparison(zoo, stranger, ("gradient",), fractions=(0.0, 0.5))
    with pytest.raises(RSAError, match=message):
        analysis.model_rdms(held_out_cube, zoo, stranger, kinds=("features",))
    with pytest.raises(ZooError, match="'dave' is not a class of the model"):
        accuracy(zoo[SPEC], stranger, "identity")


# ---------------------------------------------------------------------------------------------------- the CLI
STUDY = """
[zoo]
image_size = 32
models = [{{pretraining = "vggface", task = "identity", seed = 0, path = "{checkpoint}"}}{more}]
[dataset]
kind = "manifest"
path = "{manifest}"
{dataset}
[analysis]
run = []
[report]
enabled = false
"""


def study(lab, manifest="held_out.csv", dataset="", more="", checkpoint="identity.pt", name="study.toml"):
    path = lab / name
    path.write_text(STUDY.format(manifest=manifest, dataset=dataset, more=more, checkpoint=checkpoint))
    return path


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


def test_lrp_faces_run_scores_a_held_out_csv_in_the_models_classes(lab, tmp_path, model_classes):
    result = invoke("attribute", study(lab), "--out", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    computed = cube.open(tmp_path / "out" / "cube")
    np.testing.assert_array_equal(computed["label"].values.reshape(-1), model_classes)


def test_lrp_faces_run_stops_on_an_identity_the_model_does_not_know_before_any_work(lab, tmp_path):
    result = invoke("run", study(lab, "stranger.csv", name="stranger.toml"), "--out", tmp_path / "out",
                    "--no-progress")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and "'dave' is not a class of the model" in error[0]
    assert not list((tmp_path / "out").rglob("*.nc"))


def test_lrp_faces_run_checks_every_checkpoints_head_before_any_work(lab, tmp_path):
    save_model(small_vgg(num_classes=5, seed=0), lab / "wide.pt", spec=ModelSpec("vggface", "identity", 1))
    more = ', {pretraining = "vggface", task = "identity", seed = 1, path = "wide.pt"}'
    result = invoke("run", study(lab, more=more, name="wide.toml"), "--out", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    assert "vggface-identity-seed1" in result.output and "the model has 5 outputs, but task 'identity' is scored " \
                                                          "on 3 classes ['alice', 'bob', 'carol']" in result.output
    assert not list((tmp_path / "out").rglob("*.nc"))


# ----------------------------------------------------------------------------------- a held-out split in the study
def test_a_study_explains_the_test_part_of_a_held_out_split(lab):
    split = 'split = {by = "image", test_fraction = 0.34, seed = 1}'
    settings = Study.from_toml(study(lab, "train.csv", split, name="split.toml"))
    assert settings.dataset.split == HeldOutSplit(test_fraction=0.34, seed=1)
    data = load_dataset(settings, progress=False)
    expected = split_by_image(FaceDataset.from_manifest(lab / "train.csv", image_size=SIZE), 0.34, 1)[1]
    assert data.image_ids == expected.image_ids and len(data) == 3
    assert sorted(data.labels("identity").tolist()) == [0, 1, 2]  # every identity is in the test part
    shown = invoke("info", lab / "split.toml")
    assert shown.exit_code == 0, shown.output
    for line in ("dataset.split.by = image", "dataset.split.test_fraction = 0.34", "dataset.split.seed = 1"):
        assert line in shown.output


@pytest.mark.parametrize("split, message", [
    ('{by = "identity"}', r"\[dataset.split\].by: expected one of \['image'\], got 'identity'"),
    ('{test_fraction = 0.2, seed = 1.5}', r"\[dataset.split\].seed: expected int"),
    ('{by = "image", test_fraction = 1.0}', r"\[dataset.split\].test_fraction: expected a float in \(0, 1\)"),
    ('{by = "image", test_fraction = "a fifth"}', r"\[dataset.split\].test_fraction: expected float"),
    ('{by = "image", seed = -1}', r"\[dataset.split\].seed: expected int >= 0"),
    ('{by = "image", share = 0.2}', r"\[dataset.split\]: unknown key\(s\) \['share'\]"),
    ('"test"', r"\[dataset\].split: expected a table \{by = \"image\", test_fraction = 0.2, seed = 0\}, got str"),
])
def test_a_bad_split_is_named_with_what_was_expected(lab, split, message):
    with pytest.raises(StudyError, match=message):
        Study.from_toml(study(lab, "train.csv", f"split = {split}", name="bad_split.toml"))


def test_identity_labels_on_a_celeba_partition_are_refused_in_one_line(lab, tmp_path):
    (tmp_path / "celeba").mkdir()
    path = tmp_path / "celeba.toml"
    path.write_text(STUDY.format(checkpoint=lab / "identity.pt", more="", manifest="", dataset="")
                    .replace('kind = "manifest"\npath = ""', 'kind = "celeba"\npath = "celeba"\nsplit = "test"'))
    result = invoke("info", path)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: celeba.toml: [dataset].split:")
    assert "disjoint identities" in result.output and "split_by_image" in result.output


def test_a_latin_1_manifest_is_one_user_error_line_naming_the_file(lab, tmp_path):
    latin = lab / "latin.csv"
    latin.write_bytes((lab / "held_out.csv").read_bytes().replace(b",bob,", b",b\xe9b,"))
    result = invoke("run", study(lab, "latin.csv", name="latin.toml"), "--out", tmp_path / "out", "--no-progress")
    assert result.exit_code == 1
    error = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(error) == 1 and f"manifest {latin}, line 2" in error[0] and "not UTF-8" in error[0]
    assert "internal error" not in result.output
