"""Every public function that takes a data set takes any face data: a FaceDataset of PNG files, SyntheticFaces and a
plain (images, labels) pair give the same results where the images are the same."""
import dataclasses

import numpy as np
import pytest
import torch
import xarray as xr
from PIL import Image

import lrp_faces
from conftest import small_vgg
from lrp_faces import analysis, cube, masking
from lrp_faces.analysis import AnalysisTypeError, RSATypeError
from lrp_faces.faces import FaceDataset, synthetic_faces
from lrp_faces.zoo import ModelSpec, accuracy, finetune

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE, IDENTITIES, PER_IDENTITY = 32, 4, 2
KINDS = ("files", "synthetic", "pair")
GENDER, IDENTITY = ModelSpec("faces", "gender", 0), ModelSpec("faces", "identity", 0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """The same 8 images and labels as a FaceDataset of 8-bit PNG files with a manifest, as SyntheticFaces and as a
    pair; the synthetic pixels are those the PNG files hold, divided as the image reader divides them."""
    faces = synthetic_faces(IDENTITIES, PER_IDENTITY, size=SIZE, seed=5)
    stored = np.round(faces.images.numpy() * 255).astype(np.uint8)
    pixels = torch.from_numpy(stored.astype(np.float32) / 255.0)
    faces = dataclasses.replace(faces, images=pixels)
    root = tmp_path_factory.mktemp("faces")
    names = faces.class_names("identity")
    lines = ["path,identity,gender"]
    for index, image_id in enumerate(faces.image_ids):
        Image.fromarray(stored[index].transpose(1, 2, 0)).save(root / f"{image_id}.png")
        lines.append(f"{image_id}.png,{names[faces.identity[index]]},{'fm'[faces.gender[index]]}")
    (root / "faces.csv").write_text("\n".join(lines) + "\n")
    files = FaceDataset.from_manifest(root / "faces.csv", image_size=SIZE)
    pair = (pixels, {"identity": faces.identity, "gender": faces.gender})
    return {"files": files, "synthetic": faces, "pair": pair}


@pytest.fixture(scope="module")
def zoo(data):
    """A gender and an identity model; the identity model knows the identities by name."""
    identity = small_vgg(num_classes=IDENTITIES, seed=1)
    identity.card = identity.card.replace(class_names=data["synthetic"].class_names("identity"))
    return {GENDER: small_vgg(num_classes=2, seed=0), IDENTITY: identity}


@pytest.fixture(scope="module")
def cubes(data, zoo, tmp_path_factory):
    folder = tmp_path_factory.mktemp("cubes")
    return {kind: cube.compute(zoo, data[kind], folder / kind, batch_size=4, progress=False).load() for kind in KINDS}


def test_the_three_kinds_hold_the_same_pixels_and_labels(data):
    views = {kind: lrp_faces.as_face_data(data[kind]) for kind in KINDS}
    for kind in KINDS:
        torch.testing.assert_close(views[kind].load(0, len(views[kind])), data["synthetic"].images, rtol=0, atol=0)
        for task in ("identity", "gender"):
            np.testing.assert_array_equal(views[kind].labels(task), data["synthetic"].labels(task))


def test_cube_compute_takes_every_kind_alike(cubes):
    reference = cubes["synthetic"]
    for kind in KINDS:
        for name in ("relevance", "output", "prediction", "label", "correct"):
            np.testing.assert_array_equal(cubes[kind][name].values, reference[name].values, err_msg=f"{kind} {name}")
    assert list(cubes["pair"].image.values) == [str(index) for index in range(IDENTITIES * PER_IDENTITY)]


def test_generalization_takes_every_kind_alike(data, zoo, cubes):
    results = {kind: masking.generalization(cubes[kind], zoo, data[kind], fractions=(0.0, 0.5), n_bootstrap=10,
                                            n_permutations=10, progress=False) for kind in KINDS}
    for kind in KINDS:
        for name in ("aopc", "generalization_index", "unmasked_correct", "random_aopc_output"):
            np.testing.assert_array_equal(results[kind][name].values, results["synthetic"][name].values,
                                          err_msg=f"{kind} {name}")


def test_own_map_curves_take_every_kind_alike(data, zoo, cubes):
    results = {kind: masking.own_map_curves(cubes[kind], zoo, data[kind], fractions=(0.0, 0.5)) for kind in KINDS}
    for kind in KINDS:
        for name in ("correct", "output", "label", "mean_aopc_output"):
            np.testing.assert_array_equal(results[kind][name].values, results["synthetic"][name].values,
                                          err_msg=f"{kind} {name}")


def test_method_comparison_takes_every_kind_alike(data, zoo):
    results = {kind: analysis.method_comparison(zoo, data[kind], ("gradient", "random"), fractions=(0.0, 0.5),
                                                n_bootstrap=5, masks={"gender": np.ones((SIZE, SIZE), bool),
                                                                      "identity": np.ones((SIZE, SIZE), bool)})
               for kind in KINDS}
    for kind in KINDS:
        np.testing.assert_array_equal(results[kind].value.values, results["synthetic"].value.values, err_msg=kind)


def test_model_rdms_take_every_kind_alike(data, zoo, cubes):
    results = {kind: analysis.model_rdms(cubes[kind], zoo, data[kind], kinds=("features", "decision_weighted"))
               for kind in KINDS}
    for kind in KINDS:
        np.testing.assert_array_equal(results[kind].values, results["synthetic"].values, err_msg=kind)


@pytest.mark.parametrize("trainable", ["classifier", "all"])  # features computed once; images read every epoch
def test_finetune_and_accuracy_take_every_kind_alike(data, trainable):
    base = small_vgg(num_classes=3, seed=2)
    models = {kind: finetune(base, data[kind], task="gender", epochs=2, batch_size=4, progress=False,
                             validation=data[kind], trainable=trainable) for kind in KINDS}
    for kind in KINDS:
        for name, value in models[kind].state_dict().items():
            torch.testing.assert_close(value, models["synthetic"].state_dict()[name], rtol=0, atol=0)
        assert accuracy(models[kind], data[kind], "gender") == accuracy(models["synthetic"], data["synthetic"],
                                                                        "gender")
        assert models[kind].metadata["validation_accuracy"] == models["synthetic"].metadata["validation_accuracy"]
    assert models["files"].class_names == ["female", "male"] and models["pair"].class_names is None


def test_ground_truth_and_regions_of_a_view_are_those_of_the_synthetic_faces(data, cubes):
    faces = data["synthetic"]
    view = lrp_faces.as_face_data(faces, label_names={"sex": "gender"})
    xr.testing.assert_identical(analysis.region_relevance(cubes["synthetic"], view, n_bootstrap=5),
                                analysis.region_relevance(cubes["synthetic"], faces, n_bootstrap=5))
    xr.testing.assert_identical(analysis.ground_truth(cubes["synthetic"], view, n_bootstrap=5),
                                analysis.ground_truth(cubes["synthetic"], faces, n_bootstrap=5))


@pytest.mark.parametrize("kind", ["files", "pair"])
def test_regions_and_ground_truth_of_images_without_them_are_a_clear_type_error(data, cubes, kind):
    with pytest.raises(AnalysisTypeError, match="has no region masks.*face_template"):
        analysis.region_relevance(cubes[kind], data[kind])
    with pytest.raises(AnalysisTypeError, match="has no ground-truth masks"):
        analysis.ground_truth(cubes[kind], data[kind])


def test_the_stand_in_human_rdm_takes_synthetic_faces_as_face_data(data):
    faces = data["synthetic"]
    xr.testing.assert_identical(analysis.stand_in_human_rdm(lrp_faces.as_face_data(faces)),
                                analysis.stand_in_human_rdm(faces))
    for kind in ("files", "pair"):
        with pytest.raises(RSATypeError, match="no generative parameters"):
            analysis.stand_in_human_rdm(data[kind])


def test_the_data_interface_and_the_split_are_at_the_top_level():
    assert lrp_faces.as_face_data is lrp_faces.faces.as_face_data
    assert lrp_faces.split_by_image is lrp_faces.faces.split_by_image
    assert {"as_face_data", "split_by_image"} <= set(lrp_faces.__all__)
