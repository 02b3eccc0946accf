"""Real face data sets: manifests, folders and CelebA files that are malformed, and identity classes kept by name."""
import warnings

import pytest
from PIL import Image

import lrp_faces
from lrp_faces.errors import LRPFacesWarning
from lrp_faces.faces import DatasetError, FaceDataset, split_by_image


def write_image(path, colour=(120, 60, 30)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), colour).save(path)
    return path


def write_text(path, text: str, encoding="utf-8", newline="\n"):
    path.write_bytes(text.replace("\n", newline).encode(encoding))
    return path


@pytest.fixture
def images(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        write_image(tmp_path / name)
    return tmp_path


# --- the manifest's text -------------------------------------------------------------------------------------------
def test_a_manifest_that_is_not_utf8_names_the_file_line_and_encoding(images):
    manifest = write_text(images / "latin.csv", "path,identity\na.png,Ana\nb.png,José\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"latin\.csv, line 3, byte 10: byte 0xe9 is not UTF-8") as error:
        FaceDataset.from_manifest(manifest)
    assert isinstance(error.value, ValueError) and error.value.__cause__ is None


def test_a_utf16_manifest_is_named_as_such(images):
    manifest = write_text(images / "utf16.csv", "path,identity\na.png,Ana\n", encoding="utf-16")
    with pytest.raises(DatasetError, match=r"utf16\.csv: the file is UTF-16 text.*must be UTF-8"):
        FaceDataset.from_manifest(manifest)


def test_a_nul_byte_is_an_error_naming_its_line(images):
    manifest = images / "binary.csv"
    manifest.write_bytes(b"path,identity\na.png,Ana\nb.png,B\x00b\n")
    with pytest.raises(DatasetError, match=r"line 3, byte 8: a NUL byte"):
        FaceDataset.from_manifest(manifest)


def test_a_manifest_separated_by_semicolons_says_so(images):
    manifest = write_text(images / "m.csv", "path;identity\na.png;Ana\n")
    with pytest.raises(DatasetError, match="separated by commas, not by ';'"):
        FaceDataset.from_manifest(manifest)


def test_an_unterminated_quote_is_an_error_naming_its_line(images):
    manifest = write_text(images / "m.csv", 'path,identity\na.png,Ana\n"b.png,Bo\nc.png,Cy\n')
    with pytest.raises(DatasetError, match=r"line 3: not valid CSV"):
        FaceDataset.from_manifest(manifest)


def test_a_manifest_with_a_byte_order_mark_and_crlf_line_ends_reads_cleanly(images):
    manifest = images / "excel.csv"
    manifest.write_bytes(b"\xef\xbb\xbf" + "path,identity,gender\r\na.png,José,f\r\nb.png,Ana,m\r\n".encode())
    dataset = FaceDataset.from_manifest(manifest, image_size=8)
    assert dataset.image_ids == ["a.png", "b.png"] and dataset.class_names() == ("Ana", "José")
    assert dataset.gender.tolist() == [0, 1]


def test_a_row_with_extra_fields_is_an_error_naming_its_line(images):
    manifest = write_text(images / "m.csv", "path,identity,gender\na.png,p1,f\nb.png,Smith, John,m\n")
    with pytest.raises(DatasetError, match=r"m\.csv, line 3: 4 fields where the header has 3.*quoted"):
        FaceDataset.from_manifest(manifest)


def test_a_row_with_missing_fields_is_an_error_naming_its_line(images):
    manifest = write_text(images / "m.csv", "path,identity,gender\na.png,p1,f\nb.png,p2\n")
    with pytest.raises(DatasetError, match=r"line 3: 2 fields where the header has 3"):
        FaceDataset.from_manifest(manifest)


def test_a_quoted_comma_is_part_of_its_value(images):
    manifest = write_text(images / "m.csv", 'path,identity,gender\na.png,"Smith, John",m\n')
    assert FaceDataset.from_manifest(manifest, image_size=8).class_names() == ("Smith, John",)


def test_blank_lines_are_skipped_and_lines_are_counted_in_the_file(images):
    manifest = write_text(images / "m.csv", "path,identity,gender\n\na.png,p1,f\n\nb.png,p2,x\n")
    with pytest.raises(DatasetError, match=r"line 5: gender 'x'"):
        FaceDataset.from_manifest(manifest)


def test_a_header_that_names_a_column_twice_is_an_error(images):
    manifest = write_text(images / "m.csv", "path,identity,identity\na.png,p1,p2\n")
    with pytest.raises(DatasetError, match=r"line 1: .*'identity' more than once"):
        FaceDataset.from_manifest(manifest)


def test_a_header_with_an_unnamed_column_is_an_error(images):
    manifest = write_text(images / "m.csv", "path,identity,\na.png,p1,\n")
    with pytest.raises(DatasetError, match="column 3 of the header has no name"):
        FaceDataset.from_manifest(manifest)


@pytest.mark.parametrize("second", ["a.png", "./a.png", "sub/../a.png"])
def test_an_image_listed_twice_is_an_error_naming_both_lines(images, second):
    manifest = write_text(images / "m.csv", f"path,identity\na.png,p1\nb.png,p2\n{second},p3\n")
    with pytest.raises(DatasetError, match=r"line 4: .*listed again \(first on line 2\)"):
        FaceDataset.from_manifest(manifest)


def test_identities_that_differ_only_by_case_or_spacing_are_warned_about(images):
    manifest = write_text(images / "m.csv", "path,identity\na.png,Ana Lee\nb.png,ana  lee\nc.png,Bo\n")
    with pytest.warns(LRPFacesWarning, match=r"letter case or whitespace.*'Ana Lee', 'ana  lee'"):
        dataset = FaceDataset.from_manifest(manifest, image_size=8)
    assert dataset.num_classes() == 3  # still distinct classes: the warning says so


def test_surrounding_spaces_of_an_identity_are_ignored(images):
    manifest = write_text(images / "m.csv", "path,identity\na.png, Ana\nb.png,Ana \n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert FaceDataset.from_manifest(manifest, image_size=8).labels().tolist() == [0, 0]


def test_a_manifest_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(DatasetError, match="is a folder; expected a UTF-8 CSV"):
        FaceDataset.from_manifest(tmp_path)


# --- folders ---------------------------------------------------------------------------------------------------------
def test_from_folders_on_a_file_says_a_folder_was_expected(images):
    with pytest.raises(DatasetError, match=r"a\.png is a file; from_folders expects a folder"):
        FaceDataset.from_folders(images / "a.png")


def test_empty_identity_folders_are_warned_about(tmp_path):
    write_image(tmp_path / "ana" / "1.png")
    (tmp_path / "bo").mkdir()
    (tmp_path / "bo" / "notes.txt").write_text("no images here")
    with pytest.warns(LRPFacesWarning, match=r"1 identity folder\(s\) hold no images \('bo'\)"):
        dataset = FaceDataset.from_folders(tmp_path, image_size=8)
    assert dataset.class_names() == ("ana",)


def test_an_empty_identity_folder_keeps_its_class_when_classes_are_given(tmp_path):
    write_image(tmp_path / "ana" / "1.png")
    (tmp_path / "bo").mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        dataset = FaceDataset.from_folders(tmp_path, image_size=8, classes=["bo", "ana"])
    assert dataset.class_names() == ("bo", "ana") and dataset.labels().tolist() == [1]


# --- CelebA files ----------------------------------------------------------------------------------------------------
def celeba(root, identities=("2880", "2937", "2880", "2937"), partitions=("0", "0", "2", "2")):
    names = [f"{k:06d}.jpg" for k in range(1, len(identities) + 1)]
    for name in names:
        write_image(root / "img_align_celeba" / name)
    write_text(root / "identity_CelebA.txt", "".join(f"{n} {i}\n" for n, i in zip(names, identities)))
    write_text(root / "list_eval_partition.txt", "".join(f"{n} {p}\n" for n, p in zip(names, partitions)))
    males = ["1", "-1"] * (len(names) // 2)
    write_text(root / "list_attr_celeba.txt", f"{len(names)}\nSmiling Male\n"
               + "".join(f"{n} -1 {m}\n" for n, m in zip(names, males)))
    return root


def test_a_celeba_file_that_is_not_utf8_names_its_line(tmp_path):
    root = celeba(tmp_path)
    write_text(root / "identity_CelebA.txt", "000001.jpg 2880\n000002.jpg Jos\xe9\n", encoding="latin-1")
    with pytest.raises(DatasetError, match=r"identity_CelebA\.txt, line 2, byte 15: byte 0xe9 is not UTF-8"):
        FaceDataset.from_celeba(root)


def test_a_celeba_image_listed_twice_is_an_error(tmp_path):
    root = celeba(tmp_path)
    write_text(root / "identity_CelebA.txt", "000001.jpg 2880\n000002.jpg 2937\n000001.jpg 2937\n")
    with pytest.raises(DatasetError, match=r"line 3: 000001\.jpg is listed again \(first on line 1\)"):
        FaceDataset.from_celeba(root)


def test_a_celeba_root_that_is_a_file_says_so(images):
    with pytest.raises(DatasetError, match=r"a\.png is a file; expected the CelebA folder"):
        FaceDataset.from_celeba(images / "a.png")


@pytest.mark.parametrize("split", ["valid", "test"])
def test_celeba_identity_labels_of_a_held_out_partition_are_refused(tmp_path, split):
    with pytest.raises(DatasetError, match=r"disjoint identities.*split=None.*split_by_image"):
        FaceDataset.from_celeba(celeba(tmp_path, partitions=("0", "0", "1", "2")), split=split)


def test_celeba_gender_labels_of_the_test_partition_work_but_its_identity_labels_do_not(tmp_path):
    dataset = FaceDataset.from_celeba(celeba(tmp_path), split="test", task="gender", image_size=8)
    assert dataset.labels().tolist() == [1, 0]
    with pytest.raises(DatasetError, match="disjoint identities"):
        dataset.with_task("identity")


def test_celeba_training_partition_has_identity_labels(tmp_path):
    dataset = FaceDataset.from_celeba(celeba(tmp_path), split="train", image_size=8)
    assert dataset.labels().tolist() == [0, 1]


def test_celeba_test_partition_is_numbered_by_the_classes_given(tmp_path):
    root = celeba(tmp_path, identities=("2880", "2937", "2937", "2880"))
    dataset = FaceDataset.from_celeba(root, split="test", image_size=8, classes=["2937", "2880"])
    assert dataset.labels().tolist() == [0, 1]
    with pytest.raises(DatasetError, match=r"'2937' \(1 image\)"):
        FaceDataset.from_celeba(root, split="test", image_size=8, classes=["2880"])


def test_celeba_held_out_images_of_every_identity_by_split_by_image(tmp_path):
    root = celeba(tmp_path, identities=("7", "8") * 4, partitions=("0",) * 8)
    train, test = split_by_image(FaceDataset.from_celeba(root, image_size=8), test_fraction=0.25, seed=1)
    assert sorted(test.labels().tolist()) == [0, 1] and sorted(train.labels().tolist()) == [0, 0, 0, 1, 1, 1]


# --- identity classes given by name ----------------------------------------------------------------------------------
def manifest(path, rows):
    return write_text(path, "path,identity,gender\n" + "".join(f"{p},{i},{g}\n" for p, i, g in rows))


def test_a_held_out_manifest_keeps_the_training_numbering(images):
    train = FaceDataset.from_manifest(manifest(images / "train.csv", [("a.png", "alice", "f"), ("b.png", "bob", "m"),
                                                                      ("c.png", "carol", "f")]), image_size=8)
    held_out = manifest(images / "test.csv", [("d.png", "bob", "m"), ("a.png", "carol", "f")])
    assert FaceDataset.from_manifest(held_out, image_size=8).labels().tolist() == [0, 1]  # numbered afresh
    test = FaceDataset.from_manifest(held_out, image_size=8, classes=train.class_names())
    assert test.labels().tolist() == [1, 2]
    assert test.class_names() == train.class_names() and test.num_classes() == 3
    assert test.subset([1]).class_names() == train.class_names()


def test_an_identity_outside_the_classes_is_an_error_naming_it(images):
    rows = [("a.png", "alice", "f"), ("b.png", "dave", "m"), ("c.png", "dave", "m")]
    with pytest.raises(DatasetError, match=r"1 identity is not in the given classes: 'dave' \(2 images\)") as error:
        FaceDataset.from_manifest(manifest(images / "m.csv", rows), classes=["alice", "bob"])
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize("classes, message", [(["a", "a"], "distinct"), ("alice", "sequence of str"),
                                              ([1, 2], "sequence of str"), ([], "non-empty"), ([" "], "non-empty")])
def test_a_malformed_class_list_is_an_error(images, classes, message):
    with pytest.raises(DatasetError, match=message):
        FaceDataset.from_manifest(manifest(images / "m.csv", [("a.png", "a", "f")]), classes=classes)


def test_gender_classes_are_female_and_male(images):
    path = manifest(images / "m.csv", [("a.png", "p", "m"), ("b.png", "q", "f")])
    dataset = FaceDataset.from_manifest(path, task="gender", image_size=8, classes=("female", "male"))
    assert dataset.labels().tolist() == [1, 0]
    with pytest.raises(DatasetError, match="gender classes are"):
        FaceDataset.from_manifest(path, task="gender", classes=("male", "female"))


def test_classes_can_be_taken_from_a_checkpoint(images, tmp_path):
    model = lrp_faces.vgg16(num_classes=3, width=1 / 16, classifier_width=8, pool_size=1)
    checkpoint = lrp_faces.save_model(model, tmp_path / "model.pt", class_names=["carol", "alice", "bob"])
    classes = lrp_faces.read_checkpoint_info(checkpoint)["class_names"]
    rows = [("a.png", "alice", "f"), ("b.png", "bob", "m"), ("c.png", "carol", "f")]
    dataset = FaceDataset.from_manifest(manifest(images / "m.csv", rows), image_size=8, classes=classes)
    assert dataset.labels().tolist() == [1, 2, 0] and list(dataset.class_names()) == list(classes)


def test_folders_are_numbered_by_the_classes_given(tmp_path):
    for person in ("ana", "bo"):
        write_image(tmp_path / person / "1.png")
    dataset = FaceDataset.from_folders(tmp_path, image_size=8, classes=["zed", "bo", "ana"])
    assert dataset.labels().tolist() == [2, 1] and dataset.num_classes() == 3


def test_identities_are_checked_against_the_classes_before_any_image_is_read(images):
    rows = [("a.png", "alice", "f"), ("missing.png", "dave", "m")]
    with pytest.raises(DatasetError, match=r"not in the given classes: 'dave'"):
        FaceDataset.from_manifest(manifest(images / "m.csv", rows), classes=["alice"])
