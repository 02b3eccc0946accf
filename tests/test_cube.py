"""Relevance cubes: compute, open, resume, integrity checks and the ``.lrp`` accessor, on tiny zoos in tmp_path."""
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from importlib.metadata import version
from pathlib import Path

import dask.array
import numpy as np
import pytest
import torch
import xarray as xr

import lrp_faces
from lrp_faces import cube, methods
from lrp_faces.cube import CubeFileError, CubeInputError, CubeMismatchError
from lrp_faces.faces import synthetic_faces
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

from conftest import trained_scale

SIZE = 32
IDENTITIES = 4
BATCH = 4  # 12 images: three batches, three chunks per model


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build_zoo(folder: Path, pretrainings=("faces",), tasks=("gender", "identity"), seeds=(0, 1),
              image_size=SIZE, identity_classes=IDENTITIES) -> Zoo:
    """Width-1/8 VGG-16s with trained-like weights, saved with save_model, one per spec."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, spec in enumerate(ModelSpec(p, t, s) for p in pretrainings for t in tasks for s in seeds):
        torch.manual_seed(index)
        model = lrp_faces.vgg16(num_classes=2 if spec.task == "gender" else identity_classes, width=1 / 8,
                                pool_size=2, classifier_width=16)
        trained_scale(model, torch.Generator().manual_seed(index))
        entries.append(ZooEntry(spec, save_model(model.eval(), folder / f"{spec.name}.pt", spec=spec)))
    return Zoo(entries, image_size=image_size)


class CountingZoo(Zoo):
    """A zoo that records which models are loaded."""

    def __init__(self, zoo: Zoo):
        super().__init__(zoo.entries.values(), zoo.image_size)
        self.loaded = []

    def __getitem__(self, spec):
        self.loaded.append(spec)
        return super().__getitem__(spec)


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(IDENTITIES, 3, size=SIZE)


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    return build_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def computed(zoo, faces, tmp_path_factory):
    """A cube computed once, uninterrupted: (directory, the cube compute returned). Tests copy it to modify it."""
    directory = tmp_path_factory.mktemp("computed") / "cube"
    return directory, cube.compute(zoo, faces, directory, batch_size=BATCH, progress=False)


@pytest.fixture
def cube_copy(computed, tmp_path):
    target = tmp_path / "cube"
    shutil.copytree(computed[0], target)
    return target


def mtimes(directory: Path) -> dict:
    return {path.name: path.stat().st_mtime_ns for path in directory.glob("*.nc")}


def selection(spec: ModelSpec) -> dict:
    return {"pretraining": spec.pretraining, "task": spec.task, "seed": spec.seed}


# ------------------------------------------------------------------------------------------------------- content
def test_every_model_holds_what_attribute_gives_for_its_true_labels(zoo, faces, computed):
    loaded = cube.open(computed[0]).compute()
    for spec in zoo:
        labels = faces.labels(spec.task)
        expected = lrp_faces.attribute(zoo[spec], faces.images, target=torch.as_tensor(labels), batch_size=BATCH,
                                       return_output=True)
        model = loaded.sel(selection(spec))
        assert model.relevance.dtype == np.float32
        np.testing.assert_array_equal(model.relevance.values, expected.relevance.numpy())
        np.testing.assert_array_equal(model.output.values, expected.output.numpy())
        np.testing.assert_array_equal(model.prediction.values, expected.prediction.numpy())
        np.testing.assert_array_equal(model.label.values, labels)
        np.testing.assert_array_equal(model.correct.values, expected.prediction.numpy() == labels)


def test_per_image_seeds_follow_the_image_not_the_batch(zoo, faces, tmp_path):
    spec = ModelSpec("faces", "gender", 0)
    single = Zoo([zoo.entries[spec]], image_size=SIZE)
    noise = cube.compute(single, faces, tmp_path / "cube", method="random", seed=3, batch_size=BATCH, progress=False)
    whole = lrp_faces.attribute(zoo[spec], faces.images, target=torch.as_tensor(faces.gender), method="random",
                                seed=3, batch_size=len(faces))
    np.testing.assert_array_equal(noise.relevance.values[0, 0, 0], whole.numpy())


def test_cube_has_the_documented_dims_and_image_coordinates(computed, faces):
    loaded = computed[1]
    assert loaded.relevance.dims == ("pretraining", "task", "seed", "image", "y", "x")
    for name in ("output", "prediction", "label", "correct"):
        assert loaded[name].dims == ("pretraining", "task", "seed", "image")
    assert loaded.correct.dtype == bool
    assert list(loaded.image.values) == faces.image_ids
    np.testing.assert_array_equal(loaded.identity.values, faces.identity)
    np.testing.assert_array_equal(loaded.gender.values, faces.gender)
    assert {"identity", "gender"} <= set(loaded.coords) and loaded.identity.dims == ("image",)


def test_compute_returns_the_cube_that_open_reads(computed):
    directory, returned = computed
    xr.testing.assert_identical(returned.compute(), cube.open(directory).compute())


def test_open_is_lazy_with_one_dask_chunk_per_batch_of_images(computed):
    on_disk = cube.open(computed[0], chunks={})
    assert isinstance(on_disk.relevance.data, dask.array.Array)
    assert on_disk.relevance.chunks == ((1,), (1, 1), (1, 1), (BATCH,) * 3, (SIZE,), (SIZE,))
    automatic = cube.open(computed[0])
    assert isinstance(automatic.relevance.data, dask.array.Array)
    assert all(size == 1 for sizes in automatic.relevance.chunks[:3] for size in sizes)  # a chunk is one file


def test_selection_by_labels_reads_like_the_question(computed):
    loaded = computed[1].compute()
    gender = loaded.relevance.sel(task="gender").mean("seed")
    assert gender.dims == ("pretraining", "image", "y", "x")
    by_hand = (loaded.relevance.values[:, 0, 0] + loaded.relevance.values[:, 0, 1]) / 2
    np.testing.assert_allclose(gender.values, by_hand, rtol=1e-6, atol=0)
    one = loaded.relevance.sel(task="identity", seed=1, image="id002_img01")
    np.testing.assert_array_equal(one.values[0], loaded.relevance.values[0, 1, 1, 7])
    women = loaded.relevance.where(loaded.gender == 0, drop=True)
    assert set(women.image.values) == {i for i, g in zip(loaded.image.values, loaded.gender.values) if g == 0}


def test_attributes_record_method_versions_sizes_and_preprocessing(computed, zoo):
    attrs = computed[1].attrs
    method = methods.get("epsilon_gamma_box")
    assert attrs["method"] == "epsilon_gamma_box"
    assert json.loads(attrs["method_params"]) == method.params
    assert json.loads(attrs["canonizers"]) == method.canonizers
    assert attrs["contrastive"] == 1
    assert (attrs["input_height"], attrs["input_width"], attrs["n_images"]) == (SIZE, SIZE, 12)
    for attribute, package in (("lrp_faces_version", "lrp-faces"), ("zennit_version", "zennit"),
                               ("torch_version", "torch"), ("xarray_version", "xarray")):
        assert attrs[attribute] == version(package)
    assert json.loads(attrs["preprocessing"]) == {spec.name: zoo[spec].preprocessing.to_dict() for spec in zoo}
    assert time.strptime(attrs["created"][:19], "%Y-%m-%dT%H:%M:%S")
    for name in ("relevance", "output", "prediction", "label", "correct", "seed", "identity", "gender"):
        assert computed[1][name].attrs["long_name"] and "units" in computed[1][name].attrs


def test_one_model_file_opens_with_plain_xarray_without_lrp_faces(computed, tmp_path):
    file = computed[0] / "faces-identity-seed1.nc"
    script = textwrap.dedent(f"""
        import json, sys
        sys.modules["lrp_faces"] = None  # importing lrp_faces would now fail
        import numpy as np, xarray as xr
        data = xr.open_dataset({str(file)!r}, engine="netcdf4")
        np.save({str(tmp_path / "relevance.npy")!r}, data.relevance.values)
        print(json.dumps({{"dims": dict(data.sizes), "coords": sorted(data.coords), "task": str(data.task.values[0]),
                          "correct": str(data.correct.dtype), "method": data.attrs["method"]}}))
        """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    found = json.loads(result.stdout)
    assert found["dims"] == {"pretraining": 1, "task": 1, "seed": 1, "image": 12, "y": SIZE, "x": SIZE}
    assert found["coords"] == sorted(["pretraining", "task", "seed", "image", "identity", "gender", "y", "x"])
    assert (found["task"], found["correct"], found["method"]) == ("identity", "bool", "epsilon_gamma_box")
    np.testing.assert_array_equal(np.load(tmp_path / "relevance.npy"),
                                  computed[1].relevance.sel(task=["identity"], seed=[1]).values)


# -------------------------------------------------------------------------------------------------------- resume
KILLABLE = textwrap.dedent("""
    import json, sys, time
    import torch
    from lrp_faces import cube
    from lrp_faces.faces import synthetic_faces
    from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

    class SlowZoo(Zoo):  # every forward pass sleeps, so the run can be killed in the middle of a model
        def __getitem__(self, spec):
            model = super().__getitem__(spec)
            model.register_forward_pre_hook(lambda module, inputs: time.sleep(0.25))
            return model

    torch.set_num_threads(1)
    entries, directory = json.loads(sys.argv[1]), sys.argv[2]
    zoo = SlowZoo([ZooEntry(ModelSpec(**spec), path) for spec, path in entries], image_size=%d)
    cube.compute(zoo, synthetic_faces(%d, 3, size=%d), directory, batch_size=%d, progress=False)
    """ % (SIZE, IDENTITIES, SIZE, BATCH))


def test_compute_killed_mid_run_resumes_to_the_uninterrupted_cube(zoo, faces, computed, tmp_path):
    directory = tmp_path / "cube"
    entries = json.dumps([(spec.to_dict(), str(entry.path)) for spec, entry in zoo.entries.items()])
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, entries, str(directory)], stderr=subprocess.PIPE,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 90
    while not (list(directory.glob(".*.nc.tmp")) and list(directory.glob("*.nc"))):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the run ended before it could be killed mid-model: {process.stderr.read().decode()}")
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert list(directory.glob(".*.nc.tmp")), "the killed run should leave its temporary file behind"
    before = mtimes(directory)
    assert 1 <= len(before) < len(zoo)

    counting = CountingZoo(zoo)
    resumed = cube.compute(counting, faces, directory, batch_size=BATCH, progress=False)
    assert sorted(counting.loaded) == sorted(spec for spec in zoo if cube.file_name(spec) not in before)
    assert sorted(path.name for path in directory.iterdir() if not path.name.startswith(".lrp_faces")) == \
        sorted(cube.file_name(spec) for spec in zoo)  # every model exactly once, no temporary left
    assert {name: mtimes(directory)[name] for name in before} == before
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


def test_rerun_computes_only_the_missing_models(cube_copy, zoo, faces, computed):
    missing = ModelSpec("faces", "identity", 0)
    (cube_copy / cube.file_name(missing)).unlink()
    before = mtimes(cube_copy)
    counting = CountingZoo(zoo)
    resumed = cube.compute(counting, faces, cube_copy, batch_size=BATCH, progress=False)
    assert counting.loaded == [missing]
    assert {name: mtimes(cube_copy)[name] for name in before} == before
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


def test_rerun_of_a_complete_cube_loads_no_model(cube_copy, zoo, faces):
    counting = CountingZoo(zoo)
    before = mtimes(cube_copy)
    cube.compute(counting, faces, cube_copy, batch_size=BATCH, progress=False)
    assert counting.loaded == [] and mtimes(cube_copy) == before


def test_leftover_temporary_files_are_never_read_and_removed_by_compute(cube_copy, zoo, faces, computed):
    spec = ModelSpec("faces", "gender", 1)
    (cube_copy / cube.file_name(spec)).unlink()
    leftover = cube_copy / f".{spec.name}.nc.tmp"
    leftover.write_bytes(b"half a file from a killed run")
    stale = cube_copy / ".faces-identity-seed0.nc.tmp"  # of a model whose complete file is there: not rewritten
    stale.write_bytes(b"from an older killed run")
    partial = cube.open(cube_copy)
    assert spec not in partial.lrp.models() and len(partial.lrp.models()) == len(zoo) - 1
    cube.compute(zoo, faces, cube_copy, batch_size=BATCH, progress=False)
    assert not leftover.exists() and not stale.exists()
    xr.testing.assert_equal(cube.open(cube_copy).compute(), computed[1].compute())


# --------------------------------------------------------------------------------------------- refusing to mix
@pytest.mark.parametrize("change, message", [
    ({"gamma": 0.5}, "method_params"),
    ({"method": "epsilon_plus_flat"}, "method"),
    ({"contrastive": False}, "contrastive"),
    ({"dataset": "other seed"}, "images"),
    ({"dataset": "fewer images"}, "n_images"),
])
def test_rerun_with_other_arguments_is_refused(cube_copy, zoo, faces, change, message):
    change = dict(change)
    dataset = {"other seed": synthetic_faces(IDENTITIES, 3, size=SIZE, seed=5),
               "fewer images": faces.subset(np.arange(8))}.get(change.pop("dataset", None), faces)
    before = mtimes(cube_copy)
    with pytest.raises(CubeMismatchError, match=message) as raised:
        cube.compute(zoo, dataset, cube_copy, batch_size=BATCH, progress=False, **change)
    assert "overwrite=True" in str(raised.value) and ".nc" in str(raised.value)
    assert mtimes(cube_copy) == before


def test_overwrite_recomputes_every_model_with_the_new_arguments(cube_copy, zoo, faces):
    before = mtimes(cube_copy)
    rerun = cube.compute(zoo, faces, cube_copy, batch_size=BATCH, progress=False, overwrite=True, gamma=0.5)
    assert json.loads(rerun.attrs["method_params"])["gamma"] == 0.5
    assert all(mtimes(cube_copy)[name] != stamp for name, stamp in before.items())
    spec = ModelSpec("faces", "gender", 0)
    expected = lrp_faces.attribute(zoo[spec], faces.images, target=torch.as_tensor(faces.gender), batch_size=BATCH,
                                   gamma=0.5)
    np.testing.assert_array_equal(rerun.relevance.sel(selection(spec)).values, expected.numpy())


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_damaged_file_is_named_with_how_to_recompute_it(cube_copy, zoo, faces, computed, damage):
    file = cube_copy / "faces-identity-seed1.nc"
    content = file.read_bytes()
    file.write_bytes(content[:len(content) // 2] if damage == "truncate" else b"\0" * 4096 + content[4096:])
    for action in (lambda: cube.open(cube_copy),
                   lambda: cube.compute(zoo, faces, cube_copy, batch_size=BATCH, progress=False)):
        with pytest.raises(CubeFileError, match="faces-identity-seed1.nc") as raised:
            action()
        assert "compute(" in str(raised.value) and "overwrite=True" in str(raised.value)
    cube.compute(zoo, faces, cube_copy, batch_size=BATCH, progress=False, overwrite=True)
    xr.testing.assert_equal(cube.open(cube_copy).compute(), computed[1].compute())


@pytest.mark.parametrize("odd, message", [({"gamma": 0.5}, "method_params"), ({"images": 8}, "n_images"),
                                          ({"contrastive": False}, "contrastive")])
def test_open_names_the_file_that_disagrees_with_the_others(cube_copy, zoo, faces, tmp_path, odd, message):
    spec = ModelSpec("faces", "gender", 1)
    single = Zoo([zoo.entries[spec]], image_size=SIZE)
    odd = dict(odd)
    dataset = faces.subset(np.arange(odd.pop("images"))) if "images" in odd else faces
    cube.compute(single, dataset, tmp_path / "other", batch_size=BATCH, progress=False, **odd)
    shutil.copy(tmp_path / "other" / cube.file_name(spec), cube_copy / cube.file_name(spec))
    with pytest.raises(CubeMismatchError, match=message) as raised:
        cube.open(cube_copy)
    assert f"'{cube.file_name(spec)}'" in str(raised.value).split("differ from")[0]


def test_open_of_a_directory_without_cube_files_says_so(tmp_path):
    with pytest.raises(CubeFileError, match="no cube files"):
        cube.open(tmp_path)


# --------------------------------------------------------------------------------- the zoo and the dataset fit
def test_models_for_another_image_size_are_refused(zoo, faces, tmp_path):
    wrong = Zoo(zoo.entries.values(), image_size=64)
    with pytest.raises(CubeInputError, match=r"64x64.*32x32.*image_size=64"):
        cube.compute(wrong, faces, tmp_path / "cube", progress=False)
    assert not list((tmp_path / "cube").glob("*.nc")) if (tmp_path / "cube").exists() else True


def test_images_too_small_for_a_model_are_refused_by_a_dry_run(zoo, tmp_path):
    tiny = synthetic_faces(IDENTITIES, 3, size=16)
    unsized = Zoo(zoo.entries.values())
    with pytest.raises(CubeInputError, match=r"faces-gender-seed0 cannot take the dataset's 16x16"):
        cube.compute(unsized, tiny, tmp_path / "cube", progress=False)
    assert not list((tmp_path / "cube").glob("*.nc*"))


def test_labels_beyond_a_models_classes_are_refused_before_computing(faces, tmp_path):
    narrow = build_zoo(tmp_path / "zoo", tasks=("identity",), seeds=(0,), identity_classes=3)
    with pytest.raises(CubeInputError, match=r"faces-identity-seed0.*labels go up to 3.*3 classes"):
        cube.compute(narrow, faces, tmp_path / "cube", progress=False)
    assert not list((tmp_path / "cube").glob("*.nc*"))


def test_an_empty_dataset_is_refused(zoo, faces, tmp_path):
    with pytest.raises(CubeInputError, match="empty"):
        cube.compute(zoo, faces.subset(np.zeros(len(faces), dtype=bool)), tmp_path / "cube", progress=False)


def test_a_path_that_is_a_file_is_refused(zoo, faces, tmp_path):
    file = tmp_path / "cube.nc"
    file.write_text("not a directory")
    with pytest.raises(CubeInputError, match="not a directory"):
        cube.compute(zoo, faces, file, progress=False)


def test_a_second_compute_into_a_busy_directory_is_refused(cube_copy, zoo, faces):
    import fcntl
    with open(cube_copy / ".lrp_faces_cube.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(CubeInputError, match="another compute"):
            cube.compute(zoo, faces, cube_copy, progress=False)


# ------------------------------------------------------------------------------------------------------ accessor
def test_normalize_divides_each_map_by_its_l1_norm_or_largest_magnitude(computed):
    relevance = computed[1].relevance.values
    flat = relevance.reshape(-1, SIZE * SIZE)
    for how, norm in (("l1", np.abs(flat).sum(1)), ("max", np.abs(flat).max(1))):
        normalized = computed[1].lrp.normalize(how)
        assert isinstance(normalized.data, dask.array.Array) and normalized.dims == computed[1].relevance.dims
        np.testing.assert_allclose(normalized.values.reshape(flat.shape), flat / norm[:, None], rtol=1e-6)


def test_normalize_leaves_an_all_zero_map_zero():
    maps = xr.DataArray(np.zeros((2, 3, 3), np.float32), dims=("image", "y", "x"))
    maps[1, 0, 0] = -2.0
    np.testing.assert_array_equal(maps.lrp.normalize("max").values[0], 0)
    assert maps.lrp.normalize("max").values[1, 0, 0] == -1.0


def naive_top(values: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` largest pixels of one map by sorting (value descending, then position), in a plain loop."""
    flat = values.ravel().tolist()
    chosen = sorted(range(len(flat)), key=lambda index: (-flat[index], index))[:count]
    mask = np.zeros(len(flat), dtype=bool)
    mask[chosen] = True
    return mask.reshape(values.shape)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.25, 1.0])
def test_top_fraction_masks_the_most_relevant_pixels_of_each_map(computed, fraction):
    masks = computed[1].lrp.top_fraction(fraction)
    assert masks.dtype == bool and masks.dims == computed[1].relevance.dims
    values, found = computed[1].relevance.values, masks.values
    count = int(np.floor(fraction * SIZE * SIZE + 0.5))
    for index in np.ndindex(values.shape[:4]):
        np.testing.assert_array_equal(found[index], naive_top(values[index], count))
        assert found[index].sum() == count


def test_top_fraction_breaks_ties_by_position():
    rng = np.random.default_rng(0)
    maps = xr.DataArray(rng.integers(0, 3, size=(5, 6, 7)).astype(np.float32), dims=("image", "y", "x"))
    masks = maps.lrp.top_fraction(0.3).values
    for index in range(5):
        np.testing.assert_array_equal(masks[index], naive_top(maps.values[index], round(0.3 * 42)))


def test_models_and_stack_models_list_the_zoo(computed, zoo):
    assert computed[1].lrp.models() == sorted(zoo)
    assert computed[1].relevance.sel(task="gender").lrp.models() == [spec for spec in sorted(zoo)
                                                                      if spec.task == "gender"]
    stacked = computed[1].lrp.stack_models()
    assert stacked.relevance.dims == ("image", "y", "x", "model") and stacked.sizes["model"] == len(zoo)
    assert [ModelSpec(*key) for key in stacked.indexes["model"]] == sorted(zoo)
    np.testing.assert_array_equal(stacked.relevance.sel(task="identity", seed=0).values[..., 0],
                                  computed[1].relevance.sel(task="identity", seed=0).values[0])


def test_a_ragged_grid_opens_with_the_missing_model_marked(tmp_path, faces):
    ragged = build_zoo(tmp_path / "zoo", pretrainings=("faces", "objects"), tasks=("gender",), seeds=(0, 1))
    del ragged.entries[ModelSpec("objects", "gender", 1)]
    opened = cube.compute(ragged, faces, tmp_path / "cube", batch_size=BATCH, progress=False)
    assert opened.sizes["pretraining"] == 2 and opened.sizes["seed"] == 2
    assert opened.lrp.models() == sorted(ragged)
    assert np.isnan(opened.relevance.sel(pretraining="objects", seed=1).values).all()
    assert (opened.prediction.sel(pretraining="objects", seed=1).values == -1).all()
    assert opened.lrp.stack_models().sizes["model"] == 3
