"""One data interface for every kind of data set, the shared readers, and held-out splits by image."""
import doctest
import hashlib
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

import lrp_faces.faces.interface
import lrp_faces.faces.splits
from lrp_faces.faces import (DatasetError, DataTypeError, FaceData, FaceDataset, FaceDataView, as_face_data,
                             describe_images, load_images, split_by_image, synthetic_faces, synthetic_objects,
                             task_labels)

SIZE = 16


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(4, 3, size=SIZE, seed=3)


@pytest.fixture(scope="module")
def face_files(faces, tmp_path_factory):
    """The synthetic faces written as 8-bit PNG files with a manifest, and the pixel values those files hold."""
    root = tmp_path_factory.mktemp("faces")
    stored = np.round(faces.images.numpy() * 255).astype(np.uint8)
    lines = ["path,identity,gender"]
    for index, image_id in enumerate(faces.image_ids):
        Image.fromarray(stored[index].transpose(1, 2, 0)).save(root / f"{image_id}.png")
        lines.append(f"{image_id}.png,{faces.identity[index]},{faces.gender[index]}")
    (root / "faces.csv").write_text("\n".join(lines) + "\n")
    return FaceDataset.from_manifest(root / "faces.csv", image_size=SIZE), torch.from_numpy(stored / 255).float()


def kinds(faces, face_files):
    """The same images and labels as the three kinds of data set, with the pixels each holds."""
    dataset, stored = face_files
    pair = (faces.images, {"identity": faces.identity, "gender": faces.gender})
    return {"synthetic": (faces, faces.images), "files": (dataset, stored), "pair": (pair, faces.images)}


@pytest.mark.parametrize("kind", ["synthetic", "files", "pair"])
def test_every_kind_of_data_set_gives_the_same_interface(faces, face_files, kind):
    data, pixels = kinds(faces, face_files)[kind]
    view = as_face_data(data)
    assert isinstance(view, FaceData) and len(view) == 12 and view.image_size == SIZE
    assert len(set(view.image_ids)) == 12 and all(isinstance(value, str) for value in view.image_ids)
    loaded = view.load(2, 5)
    assert loaded.shape == (3, 3, SIZE, SIZE) and loaded.dtype == torch.float32
    assert torch.allclose(loaded, pixels[2:5], atol=1e-6)
    for task in ("identity", "gender"):
        assert view.labels(task).dtype == np.int64 and view.labels(task).tolist() == faces.labels(task).tolist()
    assert view.identity.tolist() == faces.identity.tolist() and view.gender.tolist() == faces.gender.tolist()
    part = view.subset([7, 1])
    assert part.labels("identity").tolist() == faces.identity[[7, 1]].tolist()
    assert torch.allclose(part.load(0, 2), pixels[[7, 1]], atol=1e-6)
    assert (view.images is not None) == (kind != "files")


@pytest.mark.parametrize("kind", ["synthetic", "files", "pair"])
def test_take_gives_the_images_at_any_indices_in_their_order(faces, face_files, kind):
    data, pixels = kinds(faces, face_files)[kind]
    view = as_face_data(data)
    for indices in ([7, 1, 2, 3, 0], np.arange(12) % 2 == 0, []):
        expected = pixels[torch.from_numpy(np.arange(12)[indices])]
        taken = view.take(indices)
        assert taken.shape == expected.shape and taken.dtype == torch.float32
        torch.testing.assert_close(taken, expected, rtol=0, atol=1e-6)


def test_a_generic_torch_dataset_gives_its_items_labels_for_every_task(faces):
    class Items(torch.utils.data.Dataset):
        def __len__(self):
            return len(faces)

        def __getitem__(self, index):
            return faces.images[index], torch.tensor(faces.gender[index])

    view = as_face_data(Items())
    assert view.labels("gender").tolist() == view.labels("anything").tolist() == faces.gender.tolist()
    assert view.class_names("gender") is None and view.image_ids[:2] == ["0", "1"]
    torch.testing.assert_close(view.take([3, 4]), faces.images[3:5], rtol=0, atol=0)


def test_class_names_are_the_data_sets_or_none_for_a_pair(faces, face_files):
    dataset, _ = face_files
    assert as_face_data(faces).class_names("identity") == ("id000", "id001", "id002", "id003")
    assert as_face_data(dataset).class_names("identity") == ("0", "1", "2", "3")
    assert as_face_data(dataset).class_names("gender") == ("female", "male")
    assert as_face_data((faces.images, faces.identity)).class_names("identity") is None
    assert as_face_data(faces).subset([5]).class_names("identity") == as_face_data(faces).class_names("identity")


def test_label_names_map_a_model_task_to_the_label_it_is_scored_on(faces):
    view = as_face_data(faces, label_names={"sex": "gender", "who": "identity"})
    assert view.labels("sex").tolist() == faces.gender.tolist() and view.class_names("sex") == ("female", "male")
    assert view.labels("who").tolist() == faces.identity.tolist()
    assert np.array_equal(view.task_mask("sex"), faces.task_mask("gender"))
    assert view.subset([0]).labels("sex").tolist() == [faces.gender[0]]
    again = as_face_data(view, label_names={"model_task": "sex"})
    assert again.labels("model_task").tolist() == faces.gender.tolist()


def test_a_mapped_label_that_is_missing_names_the_task_and_the_label(faces):
    view = as_face_data((faces.images, {"identity": faces.identity}), label_names={"sex": "gender"})
    with pytest.raises(DatasetError, match=r"task 'sex' are scored on the label 'gender'"):
        view.labels("sex")


def test_images_read_from_files_can_be_held_in_memory(faces, face_files):
    dataset, stored = face_files
    held = as_face_data(dataset, label_names={"sex": "gender"}).in_memory()
    assert isinstance(held.images, torch.Tensor) and torch.allclose(held.images, stored, atol=1e-6)
    assert held.image_ids == dataset.image_ids and held.class_names("identity") == dataset.class_names("identity")
    assert held.labels("sex").tolist() == faces.gender.tolist()
    part = held.subset([3, 0])
    assert torch.equal(part.images, held.images[[3, 0]]) and part.image_ids == [dataset.image_ids[3],
                                                                                dataset.image_ids[0]]
    assert as_face_data(faces).in_memory().images is faces.images


def test_other_attributes_are_the_sources(faces):
    view = as_face_data(faces)
    assert view.regions is faces.regions and view.task == faces.task
    with pytest.raises(AttributeError):
        view.no_such_attribute


def test_a_pair_with_one_label_array_uses_it_for_every_task(faces):
    view = as_face_data((faces.images, faces.identity))
    assert view.labels("identity").tolist() == view.labels("any_task").tolist() == faces.identity.tolist()
    assert (view.identity == -1).all() and view.image_ids[:3] == ["0", "1", "2"]


def test_a_pair_of_float64_images_is_read_as_float32(faces):
    view = as_face_data((faces.images.double().numpy(), faces.identity))
    assert view.load(0, 2).dtype == torch.float32 and torch.equal(view.load(0, 2), faces.images[:2])
    assert as_face_data((faces.images, faces.identity)).images is faces.images


def test_a_pair_without_the_tasks_labels_is_an_error_naming_the_task(faces):
    view = as_face_data((faces.images, {"identity": faces.identity}))
    with pytest.raises(DatasetError, match=r"'gender'"):
        view.labels("gender")


@pytest.mark.parametrize("images, labels, message", [
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), [0, 1], "dtype torch.uint8"),
    (torch.zeros(2, 1, 8, 8), [0, 1], "shape"),
    (torch.full((2, 3, 8, 8), 2.0), [0, 1], "values in"),
    (torch.full((2, 3, 8, 8), float("nan")), [0, 1], "NaN"),
    (torch.zeros(2, 3, 8, 8), [0, 1, 2], "one integer per image"),
    (torch.zeros(2, 3, 8, 8), [0.0, 1.0], "one integer per image"),
    (torch.zeros(2, 3, 8, 8), {1: [0, 1]}, "task names"),
])
def test_a_malformed_pair_is_an_error_that_says_what_was_expected(images, labels, message):
    with pytest.raises(DatasetError, match=message):
        as_face_data((images, labels))


@pytest.mark.parametrize("data", [42, "faces.csv", (torch.zeros(1, 3, 8, 8),), [1, 2]])
def test_something_that_is_no_data_set_is_a_type_error(data):
    with pytest.raises(DataTypeError) as error:
        as_face_data(data)
    assert isinstance(error.value, TypeError)


def test_bad_label_names_are_a_type_error(faces):
    with pytest.raises(DataTypeError, match="label_names"):
        as_face_data(faces, label_names={"sex": 1})


def test_repeated_image_ids_are_an_error_naming_one(faces):
    twice = faces.subset([0, 1, 0])
    with pytest.raises(DatasetError, match=r"'id000_img00' occurs 2 times"):
        as_face_data(twice)


def test_synthetic_objects_have_the_interface_too():
    objects = synthetic_objects(3, 2, size=SIZE)
    view = as_face_data(objects)
    assert view.labels("object").tolist() == [0, 0, 1, 1, 2, 2] and len(view.class_names("object")) == 3
    assert (view.identity == -1).all() and view.load(0, 1).shape == (1, 3, SIZE, SIZE)


# --- the shared readers ----------------------------------------------------------------------------------------------
def test_load_images_reads_every_kind(faces, face_files):
    for data, pixels in kinds(faces, face_files).values():
        assert torch.allclose(load_images(data, 4, 6), pixels[4:6], atol=1e-6)


def test_task_labels_checks_the_labels(faces):
    assert task_labels(faces, "gender", len(faces)).tolist() == faces.gender.tolist()
    with pytest.raises(DatasetError, match=r"negative \(unknown\) labels, e.g. for image 1"):
        task_labels((faces.images[:2], np.array([0, -1])), "identity", 2)
    with pytest.raises(DatasetError, match="one integer class per image"):
        task_labels(faces, "identity", 5)
    with pytest.raises(DatasetError, match="no labels"):
        task_labels(object(), "identity", 1)
    with pytest.raises(DatasetError, match="no usable 'age' labels"):
        task_labels(faces, "age", len(faces))


def reference_digest(ids, height, width, identity, gender, pixel_blocks) -> str:
    """The digest as documented: the ids and size as compact sorted-key JSON (the bytes cubes have always recorded,
    so that their files stay valid), identity and gender as <i8, then pixels."""
    digest = hashlib.sha256(json.dumps({"ids": ids, "size": [height, width]}, sort_keys=True,
                                       separators=(",", ":")).encode())
    for values in (identity, gender):
        digest.update(np.asarray(values, dtype="<i8").tobytes())
    for block in pixel_blocks:
        digest.update(np.ascontiguousarray(block, dtype=np.float32).tobytes())
    return digest.hexdigest()


def test_describe_images_of_images_in_memory_hashes_every_pixel(faces):
    table = describe_images(faces)
    assert table.ids == faces.image_ids and (table.height, table.width) == (SIZE, SIZE)
    assert table.identity.tolist() == faces.identity.tolist() and table.gender.tolist() == faces.gender.tolist()
    assert table.digest == reference_digest(faces.image_ids, SIZE, SIZE, faces.identity, faces.gender,
                                            [faces.images.numpy()])
    changed = faces.images.clone()
    changed[5, 0, 3, 3] = 1.0 - changed[5, 0, 3, 3]
    assert describe_images((changed, {"identity": faces.identity, "gender": faces.gender})).digest != table.digest


def test_describe_images_of_image_files_hashes_the_first_and_last(face_files):
    dataset, stored = face_files
    table = describe_images(dataset)
    assert table.digest == reference_digest(dataset.image_ids, SIZE, SIZE, dataset.identity, dataset.gender,
                                            [stored[:1].numpy(), stored[-1:].numpy()])


def test_describe_images_refuses_an_empty_data_set_and_a_wrong_declared_size(faces):
    with pytest.raises(DatasetError, match="empty"):
        describe_images(faces.subset([]))
    with pytest.raises(DatasetError, match=f"image_size=8 but its first image is {SIZE}x{SIZE}"):
        describe_images(type(faces)(**{**faces.__dict__, "image_size": 8}))


def test_the_module_examples_run():
    for module in (lrp_faces.faces.interface, lrp_faces.faces.splits):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# --- held-out splits -------------------------------------------------------------------------------------------------
def expected_test_count(count: int, fraction: float) -> int:
    return max(1, min(count - 1, math.floor(count * fraction + 0.5)))


@pytest.fixture(scope="module")
def uneven():
    """Identities with 2 to 9 images."""
    faces = synthetic_faces(6, 9, size=SIZE, seed=1)
    keep = np.arange(len(faces)) % 9 < np.repeat([2, 3, 5, 9, 4, 7], 9)
    return faces.subset(keep)


@pytest.mark.parametrize("fraction", [0.2, 0.5, 0.9])
def test_every_identity_is_in_both_parts_in_proportion(uneven, fraction):
    train, test = split_by_image(uneven, test_fraction=fraction, seed=0)
    assert sorted(train.image_ids + test.image_ids) == sorted(uneven.image_ids)
    assert not set(train.image_ids) & set(test.image_ids)
    for identity, count in zip(*np.unique(uneven.identity, return_counts=True)):
        held_out = int((test.identity == identity).sum())
        assert held_out == expected_test_count(count, fraction) and (train.identity == identity).sum() >= 1


def test_the_split_keeps_class_numbering_and_names(uneven):
    train, test = split_by_image(uneven, seed=0)
    assert type(train) is type(uneven) and train.num_classes() == test.num_classes() == uneven.num_classes()
    assert train.class_names("identity") == test.class_names("identity") == uneven.class_names("identity")
    by_id = dict(zip(uneven.image_ids, uneven.identity.tolist()))
    assert all(by_id[image] == label for image, label in zip(test.image_ids, test.labels("identity").tolist()))


def test_the_split_is_deterministic_under_its_seed(uneven):
    first, again = split_by_image(uneven, seed=4)[1], split_by_image(uneven, seed=4)[1]
    other = split_by_image(uneven, seed=5)[1]
    assert first.image_ids == again.image_ids and first.image_ids != other.image_ids


def test_the_split_does_not_depend_on_the_order_of_the_images(uneven):
    shuffled = uneven.subset(np.random.default_rng(0).permutation(len(uneven)))
    assert sorted(split_by_image(shuffled, seed=2)[1].image_ids) == sorted(split_by_image(uneven, seed=2)[1].image_ids)


def test_an_identitys_split_does_not_depend_on_the_other_identities(uneven):
    fewer = uneven.subset(uneven.identity != 3)
    held_out = set(split_by_image(uneven, seed=0)[1].image_ids)
    assert set(split_by_image(fewer, seed=0)[1].image_ids) == {i for i in held_out if not i.startswith("id003")}


def test_a_real_data_set_keeps_its_class_list_in_both_parts(face_files):
    dataset, _ = face_files
    train, test = split_by_image(dataset, test_fraction=0.34, seed=0)
    assert isinstance(test, FaceDataset) and test.identity_classes == dataset.identity_classes
    assert len(test) == 4 and sorted(test.labels().tolist()) == [0, 1, 2, 3]


def test_a_pair_is_split_into_views(faces):
    train, test = split_by_image((faces.images, {"identity": faces.identity}), test_fraction=0.34, seed=0)
    assert isinstance(test, FaceDataView) and sorted(test.labels("identity").tolist()) == [0, 1, 2, 3]
    assert len(train) == 8 and torch.equal(test.load(0, 1), faces.images[int(test.source.image_ids[0])][None])


def test_an_identity_with_one_image_is_an_error_naming_it(faces):
    with pytest.raises(DatasetError, match=r"1 identity has 1: 'id002' \(1 image\)"):
        split_by_image(faces.subset([0, 1, 3, 4, 6, 9, 10]))


def test_unknown_identities_cannot_be_split(faces):
    with pytest.raises(DatasetError, match="unknown for 12 of 12 images"):
        split_by_image((faces.images, {"gender": faces.gender}))


@pytest.mark.parametrize("fraction, seed", [(0.0, 0), (1.0, 0), (-0.1, 0), ("0.2", 0), (True, 0), (0.2, -1),
                                            (0.2, 1.5)])
def test_bad_split_arguments_are_errors(faces, fraction, seed):
    with pytest.raises(DatasetError, match="test_fraction" if seed == 0 else "seed"):
        split_by_image(faces, test_fraction=fraction, seed=seed)
