"""Synthetic faces and objects (determinism, ground truth, learnability) and the real-face data set loaders."""
import csv
import warnings

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from lrp_faces.faces import (PARAMETER_NAMES, REGIONS, TASK_REGIONS, DatasetError, FaceDataset, SyntheticDataError,
                             parameter_dissimilarity, render_faces, synthetic_faces, synthetic_objects)


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(6, 4, size=64, seed=5)


# --- synthetic faces: structure and determinism -----------------------------------------------------------------
def test_same_arguments_give_bit_identical_data_and_another_seed_differs():
    first, second = synthetic_faces(4, 3, size=48, seed=7), synthetic_faces(4, 3, size=48, seed=7)
    assert torch.equal(first.images, second.images)
    assert np.array_equal(first.regions, second.regions)
    assert np.array_equal(first.parameters, second.parameters)
    other = synthetic_faces(4, 3, size=48, seed=8)
    assert not torch.equal(first.images, other.images)
    assert not np.array_equal(first.parameters, other.parameters)


def test_an_identity_does_not_depend_on_how_many_are_generated():
    small, large = synthetic_faces(2, 2, size=32, seed=3), synthetic_faces(5, 3, size=32, seed=3)
    rows_in_large = [0, 1, 3, 4]  # identities 0 and 1, images 0 and 1
    assert torch.equal(small.images, large.images[rows_in_large])
    assert small.image_ids == [large.image_ids[i] for i in rows_in_large]


def test_shapes_dtypes_ranges_and_labels(faces):
    count = 24
    assert faces.images.shape == (count, 3, 64, 64) and faces.images.dtype == torch.float32
    assert float(faces.images.min()) >= 0.0 and float(faces.images.max()) <= 1.0
    assert faces.regions.shape == (count, 64, 64) and faces.regions.dtype == np.uint8
    assert faces.regions.max() < len(REGIONS)
    assert faces.identity.dtype == np.int64 and faces.gender.dtype == np.int64
    assert faces.identity.tolist() == [k for k in range(6) for _ in range(4)]  # identity-major
    assert sorted(faces.gender[::4].tolist()) == [0, 0, 0, 1, 1, 1]  # balanced across identities
    assert all((faces.gender[faces.identity == k] == faces.gender[4 * k]).all() for k in range(6))
    assert faces.parameters.shape == (count, len(PARAMETER_NAMES)) == (count, len(faces.parameter_names))
    assert faces.image_ids[0] == "id000_img00" and faces.image_ids[-1] == "id005_img03"
    assert len(faces) == count and faces.num_classes() == 6 and faces.num_classes("gender") == 2
    assert faces.class_names("gender") == ("female", "male")
    image, label = faces[5]
    assert torch.equal(image, faces.images[5]) and label == 1 and isinstance(label, int)
    assert faces.with_task("gender")[5][1] == faces.gender[5]


def test_parameters_differ_within_gender_and_gender_shifts_the_gender_features():
    faces = synthetic_faces(1000, 1, size=16, seed=0)
    column = {name: faces.parameters[:, k] for k, name in enumerate(faces.parameter_names)}
    male = faces.gender == 1
    for name in ("jaw_width", "brow_thickness"):
        assert column[name][male].min() > column[name][~male].max(), name
    assert column["hair_length"][~male].min() > column["hair_length"][male].max()
    for name in ("eye_size", "eye_spacing", "nose_length", "mouth_width"):  # identity features ignore gender
        assert abs(column[name][male].mean() - column[name][~male].mean()) < 0.2 * column[name].std(), name


def test_subset_with_task_and_task_mask(faces):
    subset = faces.subset([4, 5, 20])
    assert subset.identity.tolist() == [1, 1, 5] and subset.num_classes() == 6
    assert torch.equal(subset.images[2], faces.images[20]) and subset.image_ids[2] == faces.image_ids[20]
    assert faces.with_task("gender").labels().tolist() == faces.gender.tolist()
    assert faces.task == "identity"  # with_task returns a new data set
    mask = faces.task_mask("gender")
    expected = np.zeros_like(mask)
    for name in ("jaw", "brows", "hair"):
        expected |= faces.regions == REGIONS.index(name)
    assert np.array_equal(mask, expected)
    assert TASK_REGIONS["identity"] == ("left_eye", "right_eye", "nose", "mouth")


def test_region_mask_is_the_union_of_the_named_regions(faces):
    mask = faces.region_mask("nose", "mouth")
    expected = (faces.regions == REGIONS.index("nose")) | (faces.regions == REGIONS.index("mouth"))
    assert mask.any() and np.array_equal(mask, expected)
    with pytest.raises(SyntheticDataError, match="unknown region"):
        faces.region_mask("ears")


def test_class_names_keep_their_meaning_in_a_subset(faces):
    subset = faces.subset([20, 21])  # identity 5 only
    assert subset.class_names("identity") == faces.class_names("identity")
    assert subset.class_names("identity")[subset.identity[0]] == "id005"
    objects = synthetic_objects(5, 2, size=16)
    assert objects.subset([9]).class_names() == objects.class_names()


def test_invalid_arguments_are_clear_value_errors():
    with pytest.raises(SyntheticDataError, match="task"):
        synthetic_faces(2, 1, task="age")
    with pytest.raises(ValueError, match="n_identities"):
        synthetic_faces(0, 1)
    with pytest.raises(ValueError, match="gender"):
        synthetic_faces(1, 3, task="gender")
    with pytest.raises(ValueError, match="n_classes"):
        synthetic_objects(41, 1)


# --- synthetic faces: region maps agree with the pixels -------------------------------------------------------------
def test_render_faces_reproduces_the_data_set(faces):
    images, regions = render_faces(faces.parameters, faces.render_seeds, 64)
    assert np.array_equal(images, faces.images.numpy()) and np.array_equal(regions, faces.regions)
    images, regions = render_faces(faces.parameters[5:], faces.render_seeds[5:], 64, batch_size=3)
    assert np.array_equal(images, faces.images.numpy()[5:]) and np.array_equal(regions, faces.regions[5:])


@pytest.mark.parametrize("parameter, change, regions", [
    ("eye_size", 0.02, ("left_eye", "right_eye")), ("eye_spacing", 0.03, ("left_eye", "right_eye")),
    ("nose_length", 0.04, ("nose",)), ("nose_width", 0.02, ("nose",)), ("mouth_width", 0.04, ("mouth",)),
    ("mouth_thickness", 0.015, ("mouth",)), ("expression", 0.03, ("mouth",)), ("iris_colour", 0.3, ("left_eye",
                                                                                                    "right_eye")),
    ("brow_thickness", 0.03, ("brows",)),
])
def test_changing_a_feature_changes_pixels_only_inside_its_regions(faces, parameter, change, regions):
    changed = faces.parameters.copy()
    changed[:, PARAMETER_NAMES.index(parameter)] += change
    images, new_regions = render_faces(changed, faces.render_seeds, 64)
    differs = np.abs(images - faces.images.numpy()).max(1) > 1e-6
    assert differs.sum() > 20 * len(faces)  # the change is visible
    indices = [REGIONS.index(name) for name in regions]
    allowed = np.isin(faces.regions, indices) | np.isin(new_regions, indices)
    allowed = ndimage.binary_dilation(allowed, structure=np.ones((1, 3, 3), bool))  # anti-aliasing margin: 1 px
    assert not (differs & ~allowed).any(), f"{(differs & ~allowed).sum()} pixels changed outside {regions}"


def test_region_colours_match_what_is_drawn():
    clean = synthetic_faces(6, 2, size=64, seed=2, nuisance=0.0)
    images = clean.images.numpy().transpose(0, 2, 3, 1)
    for index in range(len(clean)):
        image, regions = images[index], clean.regions[index]
        inner = {name: ndimage.binary_erosion(regions == REGIONS.index(name)) for name in REGIONS}
        skin = image[inner["skin"]]
        for eye in ("left_eye", "right_eye"):
            pixels = image[regions == REGIONS.index(eye)]
            assert (pixels.min(1) > 0.75).any(), "eyes have a white sclera"
            assert pixels.max(1).min() < 0.2, "eyes have a dark pupil"
        assert (skin.min(1) > 0.8).mean() < 0.01, "skin has no sclera-white pixels"
        left_columns = np.nonzero(regions == REGIONS.index("left_eye"))[1]
        right_columns = np.nonzero(regions == REGIONS.index("right_eye"))[1]
        assert left_columns.mean() < 32 < right_columns.mean(), "left_eye is on the image's left"
        redness = image[..., 0] - image[..., 1]
        mouth = regions == REGIONS.index("mouth")  # lips are ~3 px high: no erosion
        assert np.percentile(redness[mouth], 90) > redness[inner["skin"]].mean() + 0.1, "lips are redder than skin"
        for dark in ("hair", "brows"):
            assert image[inner[dark]].mean() < skin.mean() - 0.15, f"{dark} are darker than skin"
        background = image[inner["background"]]
        assert np.abs(background.mean(0) - skin.mean(0)).max() > 0.02 or background.std() > 0.02


# --- synthetic faces: each task is carried by its ground-truth regions --------------------------------------------
def _pooled_pixels(dataset, task_regions):
    """Pixels outside the task's regions set to zero, then 4 x 4 average-pooled: (N, 3 * 16 * 16)."""
    masked = dataset.images.numpy() * dataset.task_mask(task_regions)[:, None]
    count, channels, height, width = masked.shape
    return masked.reshape(count, channels, height // 4, 4, width // 4, 4).mean((3, 5)).reshape(count, -1)


def _ridge_accuracy(features, labels, train, penalty=3.0):
    """Held-out accuracy of a one-vs-all ridge-regression classifier on standardised features."""
    mean, spread = features[train].mean(0), features[train].std(0) + 1e-3
    design = np.c_[(features - mean) / spread, np.ones(len(features))]
    targets = np.eye(labels.max() + 1)[labels[train]]
    gram = design[train].T @ design[train] + penalty * np.eye(design.shape[1])
    weights = np.linalg.solve(gram, design[train].T @ targets)
    return float(((design[~train] @ weights).argmax(1) == labels[~train]).mean())


def _cross_validated_accuracy(features, labels, folds):
    return float(np.mean([_ridge_accuracy(features, labels, folds != fold) for fold in (0, 1)]))


@pytest.fixture(scope="module")
def probe_accuracies():
    """Two-fold held-out accuracy of ridge probes that only see the regions of one task."""
    by_identity = synthetic_faces(10, 16, size=64, seed=1)  # identity: held-out images of the same identities
    identity_folds = np.arange(len(by_identity)) % 2
    by_gender = synthetic_faces(40, 3, size=64, seed=101)  # gender: held-out identities, balanced in each fold
    gender_folds = by_gender.identity % 2
    return {(regions, task): _cross_validated_accuracy(_pooled_pixels(data, regions), data.labels(task), folds)
            for regions in ("identity", "gender")
            for task, data, folds in (("identity", by_identity, identity_folds),
                                      ("gender", by_gender, gender_folds))}


def test_each_task_is_learnable_from_its_own_regions(probe_accuracies):
    assert probe_accuracies["identity", "identity"] >= 0.7, probe_accuracies  # chance: 0.1
    assert probe_accuracies["gender", "gender"] >= 0.9, probe_accuracies  # chance: 0.5, unseen identities


def test_the_regions_of_one_task_carry_less_of_the_other(probe_accuracies):
    assert probe_accuracies["identity", "gender"] <= 0.7, probe_accuracies  # eyes, nose, mouth: near chance for gender
    assert probe_accuracies["gender", "identity"] <= probe_accuracies["identity", "identity"] - 0.25, probe_accuracies


def test_parameter_dissimilarity_ignores_nuisance_and_groups_identities(faces):
    dissimilarity = parameter_dissimilarity(faces)
    assert dissimilarity.shape == (24, 24)
    assert np.allclose(dissimilarity, dissimilarity.T) and np.allclose(np.diag(dissimilarity), 0.0)
    same = faces.identity[:, None] == faces.identity[None, :]
    off_diagonal = ~np.eye(24, dtype=bool)
    assert dissimilarity[same & off_diagonal].max() < dissimilarity[~same].min()
    moved = faces.parameters.copy()
    for name in ("shift_x", "rotation", "light_strength", "brightness"):
        moved[:, PARAMETER_NAMES.index(name)] = np.random.default_rng(0).random(24)
    shuffled = type(faces)(**{**faces.__dict__, "parameters": moved})
    assert np.allclose(parameter_dissimilarity(shuffled), dissimilarity)
    correlation = parameter_dissimilarity(faces, metric="correlation")
    assert correlation.min() >= -1e-9 and correlation.max() <= 2 + 1e-9


# --- synthetic objects ------------------------------------------------------------------------------------------
def test_objects_are_deterministic_and_shaped():
    first, second = synthetic_objects(20, 2, size=32, seed=1), synthetic_objects(20, 2, size=32, seed=1)
    assert torch.equal(first.images, second.images)
    assert not torch.equal(first.images, synthetic_objects(20, 2, size=32, seed=2).images)
    assert first.images.shape == (40, 3, 32, 32) and first.images.dtype == torch.float32
    assert 0.0 <= float(first.images.min()) and float(first.images.max()) <= 1.0
    assert first.labels().tolist() == [k for k in range(20) for _ in range(2)]
    assert first.num_classes() == 20 and len(set(first.class_names())) == 20
    assert first[3][1] == 1 and first.task == "object"
    object_fraction = first.task_mask().mean((1, 2))
    assert (object_fraction > 0.05).all() and (object_fraction < 0.6).all()


def test_objects_are_learnable_by_a_small_cnn():
    objects = synthetic_objects(8, 60, size=32, seed=0)  # the 8 shapes, with 5 textures
    train = torch.from_numpy(np.arange(len(objects)) % 60 < 45)
    images, labels = objects.images, torch.from_numpy(objects.labels())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is faster and unaffected by other load
    try:
        torch.manual_seed(0)
        layers = []
        for width_in, width_out in ((3, 16), (16, 32), (32, 32)):
            layers += [torch.nn.Conv2d(width_in, width_out, 3, padding=1), torch.nn.BatchNorm2d(width_out),
                       torch.nn.ReLU(), torch.nn.MaxPool2d(2)]
        model = torch.nn.Sequential(*layers[:-1], torch.nn.AdaptiveMaxPool2d(1), torch.nn.Flatten(),
                                    torch.nn.Linear(32, 8))
        optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
        train_images, train_labels = images[train], labels[train]
        for _ in range(15):
            for batch in torch.randperm(len(train_images)).split(30):
                optimiser.zero_grad()
                torch.nn.functional.cross_entropy(model(train_images[batch]), train_labels[batch]).backward()
                optimiser.step()
        with torch.no_grad():
            accuracy = (model.eval()(images[~train]).argmax(1) == labels[~train]).float().mean().item()
    finally:
        torch.set_num_threads(threads)
    assert accuracy >= 0.5  # chance: 0.125


# --- real face data sets ------------------------------------------------------------------------------------------
def _write_image(path, size=(40, 30), colour=(200, 100, 50), mode="RGB"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", size, colour).convert(mode)
    image.save(path)
    return path


def _write_manifest(path, rows, header=("path", "identity", "gender")):
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture
def manifest(tmp_path):
    _write_image(tmp_path / "img" / "a.png", colour=(255, 0, 0))
    _write_image(tmp_path / "img" / "b.jpg", size=(30, 50), colour=(0, 0, 255))
    _write_image(tmp_path / "img" / "c.png", mode="L", colour=(128, 128, 128))
    _write_image(tmp_path / "img" / "d.png", mode="RGBA", colour=(0, 255, 0))
    rows = [("img/a.png", "17", "M", "x1"), ("img/b.jpg", "3", "female", "x2"), ("img/c.png", "17", "1", "x3"),
            ("img/d.png", "100", "F", "x4")]
    return _write_manifest(tmp_path / "faces.csv", rows, header=("path", "identity", "gender", "session"))


def test_manifest_loads_png_and_jpeg_with_labels_and_metadata(manifest):
    dataset = FaceDataset.from_manifest(manifest, image_size=16)
    assert len(dataset) == 4 and dataset.image_ids[1] == "img/b.jpg"
    assert dataset.identity_classes == {"3": 0, "17": 1, "100": 2}  # sorted as numbers
    assert dataset.labels().tolist() == [1, 0, 1, 2] and dataset.num_classes() == 3
    assert dataset.gender.tolist() == [1, 0, 1, 0] and dataset.class_names("gender") == ("female", "male")
    assert dataset.metadata[0]["session"] == "x1" and dataset.metadata[0]["path"] == "img/a.png"
    for index, colour in enumerate([(1, 0, 0), (0, 0, 1), (128 / 255,) * 3, (0, 1, 0)]):
        image, label = dataset[index]
        assert image.shape == (3, 16, 16) and image.dtype == torch.float32
        expected = torch.tensor(colour, dtype=torch.float32).view(3, 1, 1).expand(3, 16, 16)
        assert torch.allclose(image, expected, atol=0.03), index  # JPEG is lossy
    gender = dataset.with_task("gender")
    assert gender[1][1] == 0 and gender.num_classes() == 2 and dataset.task == "identity"
    loader = torch.utils.data.DataLoader(dataset, batch_size=4)
    images, labels = next(iter(loader))
    assert images.shape == (4, 3, 16, 16) and labels.tolist() == [1, 0, 1, 2]


def test_images_are_resized_on_the_shorter_side_and_centre_cropped(tmp_path):
    stripes = np.zeros((20, 60, 3), np.uint8)  # 60 wide, 20 high: red | green | blue thirds
    stripes[:, :20, 0] = stripes[:, 20:40, 1] = stripes[:, 40:, 2] = 255
    Image.fromarray(stripes).save(tmp_path / "wide.png")
    _write_manifest(tmp_path / "m.csv", [("wide.png", "a", "")])
    image = FaceDataset.from_manifest(tmp_path / "m.csv", image_size=10)[0][0]
    assert image.shape == (3, 10, 10)
    assert torch.allclose(image[1, :, 2:8], torch.ones(10, 6), atol=0.02)  # only the green centre is kept
    assert float(image[0].max()) < 0.3 and float(image[2].max()) < 0.3


def test_manifest_paths_resolve_against_image_root(tmp_path):
    _write_image(tmp_path / "photos" / "x.png")
    (tmp_path / "lists").mkdir()
    manifest = _write_manifest(tmp_path / "lists" / "m.csv", [("x.png", "p1", "0")])
    with pytest.raises(DatasetError, match="not found"):  # by default, relative to the CSV's folder
        FaceDataset.from_manifest(manifest)
    dataset = FaceDataset.from_manifest(manifest, image_root=tmp_path / "photos", image_size=8)
    assert dataset[0][0].shape == (3, 8, 8)


def test_celeba_layout(tmp_path):
    root = tmp_path / "celeba"
    names = ["000001.jpg", "000002.jpg", "000003.jpg"]
    for name in names:
        _write_image(root / "img_align_celeba" / name, size=(36, 44))
    (root / "list_attr_celeba.txt").write_text("3\nSmiling Male Young \n000001.jpg  1 -1  1\n"
                                               "000002.jpg -1  1  1\n000003.jpg  1  1 -1\n")
    (root / "identity_CelebA.txt").write_text("000001.jpg 2880\n000002.jpg 2937\n000003.jpg 2880\n")
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 0\n000003.jpg 2\n")
    dataset = FaceDataset.from_celeba(root, image_size=24)
    assert dataset.identity_classes == {"2880": 0, "2937": 1} and dataset.labels().tolist() == [0, 1, 0]
    assert dataset.gender.tolist() == [0, 1, 1] and dataset.metadata[0]["Smiling"] == 1
    assert dataset[2][0].shape == (3, 24, 24)
    gender = FaceDataset.from_celeba(root, task="gender", image_size=24)
    assert gender.labels().tolist() == [0, 1, 1]
    assert FaceDataset.from_celeba(root, image_size=24, split="train").image_ids == names[:2]


def test_folder_layout_with_mixed_extensions_and_unknown_gender(tmp_path):
    _write_image(tmp_path / "bob" / "1.PNG")
    _write_image(tmp_path / "bob" / "2.jpeg")
    _write_image(tmp_path / "alice" / "1.Jpg")
    (tmp_path / "alice" / "notes.txt").write_text("not an image")
    _write_image(tmp_path / "carol" / "x.bmp")
    dataset = FaceDataset.from_folders(tmp_path, image_size=12)
    assert dataset.image_ids == ["alice/1.Jpg", "bob/1.PNG", "bob/2.jpeg", "carol/x.bmp"]
    assert dataset.labels().tolist() == [0, 1, 1, 2] and dataset.class_names() == ("alice", "bob", "carol")
    assert (dataset.gender == -1).all()
    with pytest.raises(DatasetError, match="gender is unknown"):
        dataset.labels("gender")
    with pytest.raises(DatasetError, match="gender"):
        FaceDataset.from_folders(tmp_path, task="gender")


# --- bad data ----------------------------------------------------------------------------------------------------
@pytest.fixture
def broken_manifest(tmp_path):
    _write_image(tmp_path / "good.png")
    _write_image(tmp_path / "good.jpg")
    (tmp_path / "garbage.png").write_bytes(b"this is not an image at all")
    png = (tmp_path / "good.png").read_bytes()
    (tmp_path / "truncated.png").write_bytes(png[: len(png) // 2])
    rows = [("good.png", "a", "m"), ("missing.png", "a", "m"), ("garbage.png", "b", "f"), ("good.jpg", "b", "f"),
            ("truncated.png", "b", "f")]
    return _write_manifest(tmp_path / "m.csv", rows)


@pytest.mark.parametrize("bad", ["missing.png", "garbage.png", "truncated.png"])
def test_a_bad_file_raises_naming_the_file(tmp_path, bad):
    _write_image(tmp_path / "good.png")
    if bad != "missing.png":
        content = (tmp_path / "good.png").read_bytes()
        (tmp_path / bad).write_bytes(b"not an image" if bad == "garbage.png" else content[: len(content) // 2])
    manifest = _write_manifest(tmp_path / "m.csv", [("good.png", "a", "m"), (bad, "a", "m")])
    with pytest.raises(DatasetError, match=bad.replace(".", r"\.")) as error:
        FaceDataset.from_manifest(manifest)
    assert isinstance(error.value, ValueError)
    assert ("not found" in str(error.value)) == (bad == "missing.png")


def test_bad_files_can_be_skipped_and_are_reported(broken_manifest):
    with pytest.warns(UserWarning, match="skipped 3"):
        dataset = FaceDataset.from_manifest(broken_manifest, on_error="skip", image_size=8)
    assert dataset.image_ids == ["good.png", "good.jpg"]
    assert sorted(path.rsplit("/", 1)[-1] for path, _ in dataset.skipped) == ["garbage.png", "missing.png",
                                                                              "truncated.png"]
    assert all(reason for _, reason in dataset.skipped)
    assert [dataset[i][0].shape for i in range(2)] == [(3, 8, 8)] * 2


def test_no_warning_when_nothing_is_skipped(manifest):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FaceDataset.from_manifest(manifest, on_error="skip").skipped == []


def test_empty_manifests_and_missing_columns_are_clear_errors(tmp_path):
    _write_image(tmp_path / "a.png")
    with pytest.raises(DatasetError, match="no images"):
        FaceDataset.from_manifest(_write_manifest(tmp_path / "empty.csv", []))
    (tmp_path / "blank.csv").write_text("")
    with pytest.raises(DatasetError, match="empty"):
        FaceDataset.from_manifest(tmp_path / "blank.csv")
    no_identity = _write_manifest(tmp_path / "g.csv", [("a.png", "m")], header=("path", "gender"))
    with pytest.raises(DatasetError, match="'identity' column"):
        FaceDataset.from_manifest(no_identity)
    assert FaceDataset.from_manifest(no_identity, task="gender").labels().tolist() == [1]
    no_gender = _write_manifest(tmp_path / "i.csv", [("a.png", "p")], header=("path", "identity"))
    with pytest.raises(DatasetError, match="'gender' column"):
        FaceDataset.from_manifest(no_gender, task="gender")
    with pytest.raises(DatasetError, match="does not exist"):
        FaceDataset.from_manifest(tmp_path / "nope.csv")
    bad_gender = _write_manifest(tmp_path / "b.csv", [("a.png", "p", "x")])
    with pytest.raises(DatasetError, match="line 2"):
        FaceDataset.from_manifest(bad_gender)
    _write_image(tmp_path / "b.png")
    partly_unknown = _write_manifest(tmp_path / "p.csv", [("a.png", "p", "m"), ("b.png", "q", "")])
    with pytest.raises(DatasetError, match="gender is unknown for 1 of 2"):
        FaceDataset.from_manifest(partly_unknown, task="gender")


def test_all_files_bad_is_an_error_even_when_skipping(tmp_path):
    manifest = _write_manifest(tmp_path / "m.csv", [("gone.png", "a", "m")])
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="none of its 1 images"):
        FaceDataset.from_manifest(manifest, on_error="skip")


def test_missing_celeba_files_are_named(tmp_path):
    _write_image(tmp_path / "img_align_celeba" / "000001.jpg")
    with pytest.raises(DatasetError, match="identity_CelebA.txt is missing"):
        FaceDataset.from_celeba(tmp_path)
    with pytest.raises(DatasetError, match="list_attr_celeba.txt is missing"):
        FaceDataset.from_celeba(tmp_path, task="gender")
    (tmp_path / "identity_CelebA.txt").write_text("000001.jpg 5\n")
    assert FaceDataset.from_celeba(tmp_path).gender.tolist() == [-1]  # attributes are optional for identity
    with pytest.raises(DatasetError, match="img_align_celeba is missing"):
        FaceDataset.from_celeba(tmp_path / "elsewhere")
    with pytest.raises(DatasetError, match="list_eval_partition.txt"):
        FaceDataset.from_celeba(tmp_path, split="test")


def test_empty_folder_root_is_a_clear_error(tmp_path):
    (tmp_path / "person").mkdir()
    with pytest.raises(DatasetError, match="holds no images"):
        FaceDataset.from_folders(tmp_path)
    with pytest.raises(DatasetError, match="does not exist"):
        FaceDataset.from_folders(tmp_path / "nope")
