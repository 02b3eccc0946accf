"""Relevance cubes: compute, open, resume, integrity checks and the ``.lrp`` accessor, on tiny zoos in tmp_path."""
import hashlib
import json
import os
import re
import shutil
import select
import signal
import subprocess
import sys
import textwrap
import time
import warnings
import zlib
from importlib.metadata import version
from pathlib import Path

import dask.array
import netCDF4
import numpy as np
import pytest
import torch
import xarray as xr

import lrp_faces
from lrp_faces import cube, methods
from lrp_faces.cube import CubeFileError, CubeInputError, CubeMismatchError
from lrp_faces.devices import DeviceError
from lrp_faces.errors import LRPFacesWarning
from lrp_faces.faces import synthetic_faces
from lrp_faces.models import save_model, weights_digest
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


def retrained(zoo: Zoo, spec: ModelSpec) -> torch.nn.Module:
    """Overwrite ``spec``'s checkpoint with other weights (as retraining would); returns the new model."""
    model = zoo[spec]
    generator = torch.Generator().manual_seed(99)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1 + 0.2 * torch.rand(parameter.shape, generator=generator))
    save_model(model, zoo.entries[spec].path, spec=spec)
    return model


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
DEFAULT_METHOD = type(methods.get("epsilon_gamma_box"))


class Interrupted(Exception):
    """Raised by RecordingMethod to stop a compute in the middle of a model."""


class RecordingMethod(DEFAULT_METHOD):
    """The default method, recording (model, first image) of every batch it explains; raises at call ``stop_at``."""

    def __init__(self, stop_at=None, **params):
        super().__init__(**params)
        self.calls, self.stop_at = [], stop_at

    def explain(self, model, images, target, contrastive=True, first_index=0):
        if len(self.calls) + 1 == self.stop_at:
            raise Interrupted(f"stopped before call {self.stop_at}")
        self.calls.append((ModelSpec.from_dict(model.spec).name, first_index))
        return super().explain(model, images, target, contrastive, first_index)


UNITS = Path(".units") / "cube"
"""Where a cube keeps its finished units (``<model>.<start>-<stop>.<digest>.nc``) until a model's file is assembled."""


def block_files(directory: Path) -> dict:
    """``{model name: ["<start>-<stop>", ...]}`` of the finished units in the cube's unit store."""
    found = {}
    for path in sorted((directory / UNITS).glob("*.nc")):
        model, images, digest, _ = path.name.split(".")
        assert re.fullmatch(r"[0-9a-f]{16}", digest), path.name
        found.setdefault(model, []).append(images)
    return found


def unit_file(directory: Path, model: str, images: str) -> Path:
    """The store file of one unit, e.g. ``unit_file(cube, "faces-gender-seed1", "4-8")``."""
    (path,) = (directory / UNITS).glob(f"{model}.{images}.*.nc")
    return path


# models in compute order; with block_size=BATCH each has three blocks of one batch: images 0-3, 4-7 and 8-11
ORDER = ["faces-gender-seed0", "faces-gender-seed1", "faces-identity-seed0", "faces-identity-seed1"]
STALLED_AT = 6  # the sixth batch: the third block of the second model


def interrupted_cube(zoo, faces, directory: Path, stop_at: int = STALLED_AT, **arguments) -> Path:
    """A cube whose compute stopped (with an exception) before batch ``stop_at``."""
    with pytest.raises(Interrupted):
        cube.compute(zoo, faces, directory, method=RecordingMethod(stop_at=stop_at, **arguments), batch_size=BATCH,
                     block_size=BATCH, progress=False)
    return directory


KILLABLE = textwrap.dedent("""
    import json, sys, threading
    import torch
    from lrp_faces import cube, methods
    from lrp_faces.faces import synthetic_faces
    from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

    class StallingMethod(type(methods.get("epsilon_gamma_box"))):
        calls = 0

        def explain(self, *args, **kwargs):
            StallingMethod.calls += 1
            if StallingMethod.calls == %d:  # say so, then wait to be killed
                print("stalled", flush=True)
                threading.Event().wait()
            return super().explain(*args, **kwargs)

    torch.set_num_threads(1)
    entries, directory = json.loads(sys.argv[1]), sys.argv[2]
    zoo = Zoo([ZooEntry(ModelSpec(**spec), path) for spec, path in entries], image_size=%d)
    cube.compute(zoo, synthetic_faces(%d, 3, size=%d), directory, method=StallingMethod(), batch_size=%d,
                 block_size=%d, progress=False)
    """ % (STALLED_AT, SIZE, IDENTITIES, SIZE, BATCH, BATCH))


@pytest.mark.slow
def test_compute_killed_mid_model_resumes_from_its_finished_blocks(zoo, faces, computed, tmp_path):
    directory = tmp_path / "cube"
    entries = json.dumps([(spec.to_dict(), str(entry.path)) for spec, entry in zoo.entries.items()])
    process = subprocess.Popen([sys.executable, "-c", KILLABLE, entries, str(directory)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        ready, _, _ = select.select([process.stdout], [], [], 300)  # the child says when it stalls mid-model
        line = process.stdout.readline() if ready else b""
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert line.strip() == b"stalled", f"the run did not stall mid-model: {process.stderr.read().decode()}"
    assert sorted(path.name for path in directory.glob("*.nc")) == [f"{ORDER[0]}.nc"]
    assert block_files(directory) == {ORDER[1]: ["0-4", "4-8"]}
    before = mtimes(directory)

    recording = RecordingMethod()
    resumed = cube.compute(zoo, faces, directory, method=recording, batch_size=BATCH, block_size=BATCH,
                           progress=False)
    assert recording.calls == [(ORDER[1], 8)] + [(name, start) for name in ORDER[2:] for start in (0, 4, 8)]
    assert mtimes(directory)[f"{ORDER[0]}.nc"] == before[f"{ORDER[0]}.nc"]
    assert not (directory / UNITS).exists() and not list(directory.glob(".*.tmp"))
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


def test_an_interrupted_compute_keeps_finished_blocks_and_resumes_from_them(zoo, faces, computed, tmp_path):
    directory = interrupted_cube(zoo, faces, tmp_path / "cube")
    assert sorted(path.name for path in directory.glob("*.nc")) == [f"{ORDER[0]}.nc"]
    assert block_files(directory) == {ORDER[1]: ["0-4", "4-8"]}
    assert not list(directory.glob(".*.tmp")), "the interrupted model file is removed"
    recording = RecordingMethod()
    resumed = cube.compute(zoo, faces, directory, method=recording, batch_size=BATCH, block_size=BATCH,
                           progress=False)
    assert recording.calls == [(ORDER[1], 8)] + [(name, start) for name in ORDER[2:] for start in (0, 4, 8)]
    assert block_files(directory) == {} and not (directory / UNITS).exists()
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


def test_a_unit_file_holds_its_images_results_with_checksums_and_the_request_digest(zoo, faces, computed,
                                                                                     tmp_path):
    directory = interrupted_cube(zoo, faces, tmp_path / "cube")
    path = unit_file(directory, ORDER[1], "4-8")
    block = xr.open_dataset(path, engine="netcdf4").load()
    spec = ModelSpec.parse(ORDER[1])
    expected = computed[1].sel(selection(spec)).isel(image=slice(4, 8))
    np.testing.assert_array_equal(block.relevance.values, expected.relevance.values)
    for name in ("output", "prediction", "label"):
        np.testing.assert_array_equal(block[name].values, expected[name].values)
    assert block.attrs["unit"] == path.name[:-len(".nc")]
    assert len(block.attrs["unit_settings_sha256"]) == 64 and len(block.attrs["lrp_faces_sha256"]) == 64
    assert all(block[name].encoding["fletcher32"] for name in ("relevance", "output", "prediction", "label"))


def test_blocks_computed_with_other_settings_are_recomputed(zoo, faces, tmp_path):
    directory = interrupted_cube(zoo, faces, tmp_path / "cube", stop_at=3)  # two blocks of the first model
    assert block_files(directory) == {ORDER[0]: ["0-4", "4-8"]}
    stale = sorted((directory / UNITS).glob("*.nc"))
    single = Zoo([zoo.entries[ModelSpec.parse(ORDER[0])]], image_size=SIZE)
    recording = RecordingMethod(gamma=0.5)
    rerun = cube.compute(single, faces, directory, method=recording, batch_size=BATCH, block_size=BATCH,
                         progress=False)
    assert recording.calls == [(ORDER[0], 0), (ORDER[0], 4), (ORDER[0], 8)]
    assert not any(path.exists() for path in stale)
    expected = lrp_faces.attribute(zoo[ModelSpec.parse(ORDER[0])], faces.images, target=torch.as_tensor(faces.gender),
                                   batch_size=BATCH, gamma=0.5)
    np.testing.assert_array_equal(rerun.relevance.values[0, 0, 0], expected.numpy())


def test_blocks_computed_with_other_weights_are_recomputed(faces, tmp_path):
    zoo = build_zoo(tmp_path / "zoo", tasks=("gender",), seeds=(0,))
    spec = ModelSpec("faces", "gender", 0)
    directory = interrupted_cube(zoo, faces, tmp_path / "cube", stop_at=3)
    changed = retrained(zoo, spec)
    recording = RecordingMethod()
    rerun = cube.compute(zoo, faces, directory, method=recording, batch_size=BATCH, block_size=BATCH, progress=False)
    assert recording.calls == [(spec.name, 0), (spec.name, 4), (spec.name, 8)]
    expected = lrp_faces.attribute(changed, faces.images, target=torch.as_tensor(faces.gender), batch_size=BATCH)
    np.testing.assert_array_equal(rerun.relevance.values[0, 0, 0], expected.numpy())


def test_a_damaged_block_is_recomputed_with_a_warning_naming_it(zoo, faces, computed, tmp_path):
    directory = interrupted_cube(zoo, faces, tmp_path / "cube")
    block = unit_file(directory, ORDER[1], "0-4")
    maps = xr.open_dataset(block, engine="netcdf4").relevance.values
    content = bytearray(block.read_bytes())
    where = content.find(maps.astype("<f4").tobytes())
    assert where > 0, "a unit's relevance is stored uncompressed"
    content[where + 100] ^= 0xFF
    block.write_bytes(bytes(content))
    recording = RecordingMethod()
    with pytest.warns(LRPFacesWarning, match=rf"{ORDER[1]}\.0-4\..*damaged.*computing it again"):
        resumed = cube.compute(zoo, faces, directory, method=recording, batch_size=BATCH, block_size=BATCH,
                               progress=False)
    assert recording.calls[:2] == [(ORDER[1], 0), (ORDER[1], 8)]
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


def test_a_rerun_with_another_block_size_starts_the_unfinished_models_afresh(zoo, faces, computed, tmp_path):
    """The block size is a setting of the units: other blocks are other units (the cube is the same)."""
    directory = interrupted_cube(zoo, faces, tmp_path / "cube")  # blocks 0-4 and 4-8 of the second model
    recording = RecordingMethod()
    resumed = cube.compute(zoo, faces, directory, method=recording, batch_size=BATCH, block_size=3 * BATCH,
                           progress=False)
    assert recording.calls == [(name, start) for name in ORDER[1:] for start in (0, 4, 8)]
    xr.testing.assert_equal(resumed.compute(), computed[1].compute())


@pytest.mark.parametrize("block_size", [BATCH, 2 * BATCH, 3 * BATCH])
def test_the_cube_does_not_depend_on_the_block_size(zoo, faces, computed, tmp_path, block_size):
    split = cube.compute(zoo, faces, tmp_path / "cube", batch_size=BATCH, block_size=block_size, progress=False)
    xr.testing.assert_equal(split.compute(), computed[1].compute())


@pytest.mark.parametrize("block_size", [0, 6, 2.0, True])
def test_a_block_size_that_is_not_a_multiple_of_the_batch_size_is_refused(zoo, faces, tmp_path, block_size):
    with pytest.raises(CubeInputError, match="multiple of batch_size=4"):
        cube.compute(zoo, faces, tmp_path / "cube", batch_size=BATCH, block_size=block_size, progress=False)


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
def test_a_damaged_file_is_named_with_how_to_recompute_it(cube_copy, damage):
    file = cube_copy / "faces-identity-seed1.nc"
    content = file.read_bytes()
    file.write_bytes(content[:len(content) // 2] if damage == "truncate" else b"\0" * 4096 + content[4096:])
    with pytest.raises(CubeFileError, match="faces-identity-seed1.nc") as raised:
        cube.open(cube_copy)
    assert "compute(" in str(raised.value) and "overwrite=True" in str(raised.value)


@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_compute_recomputes_a_damaged_file_with_a_warning_naming_it(cube_copy, zoo, faces, computed, damage):
    file = cube_copy / "faces-identity-seed1.nc"
    content = file.read_bytes()
    file.write_bytes(content[:len(content) // 2] if damage == "truncate" else b"\0" * 4096 + content[4096:])
    counting = CountingZoo(zoo)
    with pytest.warns(cube.CubeWarning, match=r"faces-identity-seed1\.nc.*recomputing model faces-identity-seed1"):
        recomputed = cube.compute(counting, faces, cube_copy, batch_size=BATCH, progress=False)
    assert counting.loaded == [ModelSpec("faces", "identity", 1)]
    xr.testing.assert_equal(recomputed.compute(), computed[1].compute())


def test_a_damaged_file_of_a_model_outside_the_zoo_is_an_error_naming_it(cube_copy, zoo, faces):
    file = cube_copy / "faces-identity-seed1.nc"
    file.write_bytes(file.read_bytes()[:1000])
    others = Zoo([entry for spec, entry in zoo.entries.items() if spec.task == "gender"], image_size=SIZE)
    with pytest.raises(CubeFileError, match="faces-identity-seed1.nc"):
        cube.compute(others, faces, cube_copy, batch_size=BATCH, progress=False)


# --------------------------------------------------------------------------------------------- damaged bytes
def flip(path: Path, position: int) -> None:
    content = bytearray(path.read_bytes())
    content[position] ^= 0xFF
    path.write_bytes(bytes(content))


def compressed_chunk(content: bytes, maps: np.ndarray) -> tuple[int, int]:
    """Where a file stores ``maps`` as one HDF5 chunk: found by inflating each zlib stream in the file (level 1
    starts with 0x78 0x01) and undoing the shuffle filter (byte planes of 4-byte elements; netCDF4 appends the
    Fletcher-32 checksum to the data before shuffling)."""
    raw = maps.astype("<f4").tobytes()
    start = content.find(b"\x78\x01")
    while start >= 0:
        stream = zlib.decompressobj()
        try:
            inflated = stream.decompress(content[start:])
        except zlib.error:
            inflated = b""
        if len(inflated) % 4 == 0 and np.frombuffer(inflated, np.uint8).reshape(4, -1).T.tobytes().startswith(raw):
            return start, len(content) - len(stream.unused_data)
        start = content.find(b"\x78\x01", start + 1)
    raise LookupError("the chunk is not in the file")


DAMAGED = "faces-identity-seed1.nc"


def damage_relevance_chunk(directory: Path, computed_cube: xr.Dataset) -> None:
    """Flip one byte in the middle of the stored chunk of images 4-7 of one model."""
    maps = computed_cube.relevance.sel(selection(ModelSpec.parse(DAMAGED[:-3]))).values[4:8]
    start, stop = compressed_chunk((directory / DAMAGED).read_bytes(), maps)
    flip(directory / DAMAGED, (start + stop) // 2)


def damage_output(directory: Path, computed_cube: xr.Dataset) -> None:
    """Flip one byte of the stored explained outputs of one model (a per-image variable)."""
    outputs = computed_cube.output.sel(selection(ModelSpec.parse(DAMAGED[:-3]))).values
    where = (directory / DAMAGED).read_bytes().find(outputs.astype("<f4").tobytes())
    assert where > 0
    flip(directory / DAMAGED, where + 5)


def damage_attribute(directory: Path, computed_cube: xr.Dataset) -> None:
    """Flip one byte of the method name stored in the file's attributes."""
    where = (directory / DAMAGED).read_bytes().find(b"epsilon_gamma_box")
    assert where > 0
    flip(directory / DAMAGED, where + 3)


@pytest.mark.parametrize("damage", [damage_relevance_chunk, damage_output])
def test_reading_a_damaged_chunk_raises_an_error_naming_the_file(cube_copy, computed, damage):
    damage(cube_copy, computed[1])
    opened = cube.open(cube_copy)  # lazily: the header is intact
    name = "relevance" if damage is damage_relevance_chunk else "output"
    with pytest.raises(CubeFileError, match=DAMAGED):
        opened[name].values
    opened.sel(task="gender")[name].values  # the other files read as before


def test_the_accessor_on_a_damaged_chunk_raises_an_error_naming_the_file(cube_copy, computed):
    damage_relevance_chunk(cube_copy, computed[1])
    with pytest.raises(CubeFileError, match=DAMAGED):
        cube.open(cube_copy).lrp.normalize().values


def test_flipped_attribute_bytes_are_an_error_naming_the_file(cube_copy, computed):
    damage_attribute(cube_copy, computed[1])
    with pytest.raises(CubeFileError, match=f"{DAMAGED}.*damaged"):
        cube.open(cube_copy)


@pytest.mark.parametrize("damage", [damage_relevance_chunk, damage_output, damage_attribute])
def test_verify_finds_a_damaged_chunk_or_header_and_names_the_file(cube_copy, computed, damage):
    assert [path.name for path in cube.verify(cube_copy)] == [cube.file_name(spec) for spec in sorted(
        computed[1].lrp.models())]
    damage(cube_copy, computed[1])
    with pytest.raises(CubeFileError, match=DAMAGED):
        cube.verify(cube_copy)


def test_verify_names_every_damaged_file(cube_copy):
    for name in ("faces-gender-seed0.nc", DAMAGED):
        (cube_copy / name).write_bytes((cube_copy / name).read_bytes()[:2000])
    with pytest.raises(CubeFileError, match=f"2 cube files.*faces-gender-seed0.nc.*{DAMAGED}"):
        cube.verify(cube_copy)


@pytest.mark.parametrize("damage", [damage_relevance_chunk, damage_output, damage_attribute])
def test_compute_recomputes_a_file_with_damaged_bytes(cube_copy, zoo, faces, computed, damage):
    damage(cube_copy, computed[1])
    counting = CountingZoo(zoo)
    with pytest.warns(cube.CubeWarning, match=f"{DAMAGED}.*recomputing model"):
        recomputed = cube.compute(counting, faces, cube_copy, batch_size=BATCH, progress=False)
    assert counting.loaded == [ModelSpec.parse(DAMAGED[:-3])]
    xr.testing.assert_equal(recomputed.compute(), computed[1].compute())


def test_every_variable_of_a_cube_file_is_checksummed(computed):
    with netCDF4.Dataset(computed[0] / DAMAGED) as nc:
        unchecked = [name for name, variable in nc.variables.items() if not variable.filters()["fletcher32"]]
        assert not unchecked and len(nc.getncattr("lrp_faces_sha256")) == 64


def test_a_file_of_an_older_format_is_recomputed_with_a_warning(cube_copy, zoo, faces, computed):
    with netCDF4.Dataset(cube_copy / DAMAGED, "a") as nc:
        nc.setncattr("cube_format_version", 1)
    with pytest.raises(CubeFileError, match=f"{DAMAGED}.*format version 1"):
        cube.open(cube_copy)
    with pytest.warns(cube.CubeWarning, match=f"{DAMAGED}.*format version 1.*recomputing"):
        recomputed = cube.compute(zoo, faces, cube_copy, batch_size=BATCH, progress=False)
    xr.testing.assert_equal(recomputed.compute(), computed[1].compute())


# -------------------------------------------------------------------------------------------------- stale maps
def test_each_file_records_the_models_weights_digest_and_checkpoint(computed, zoo):
    models = json.loads(computed[1].attrs["models"])
    for spec, entry in zoo.entries.items():
        assert models[spec.name]["weights_sha256"] == weights_digest(zoo[spec])
        assert models[spec.name]["model_file"] == str(entry.path)
        assert models[spec.name]["model_file_sha256"] == hashlib.sha256(entry.path.read_bytes()).hexdigest()


def test_a_changed_checkpoint_makes_its_maps_stale_and_they_are_recomputed(faces, tmp_path):
    zoo = build_zoo(tmp_path / "zoo", tasks=("gender",), seeds=(0, 1))
    directory = tmp_path / "cube"
    cube.compute(zoo, faces, directory, batch_size=BATCH, progress=False)
    spec, kept = ModelSpec("faces", "gender", 1), cube.file_name(ModelSpec("faces", "gender", 0))
    before = mtimes(directory)
    changed = retrained(zoo, spec)
    counting = CountingZoo(zoo)
    with pytest.warns(cube.CubeWarning, match="model faces-gender-seed1: weights changed"):
        rerun = cube.compute(counting, faces, directory, batch_size=BATCH, progress=False)
    assert counting.loaded == [spec], "the unchanged checkpoint is hashed, not loaded; the changed one loaded once"
    assert mtimes(directory)[kept] == before[kept]
    expected = lrp_faces.attribute(changed, faces.images, target=torch.as_tensor(faces.gender), batch_size=BATCH)
    np.testing.assert_array_equal(rerun.relevance.sel(selection(spec)).values, expected.numpy())
    assert json.loads(rerun.attrs["models"])[spec.name]["weights_sha256"] == weights_digest(changed)


def test_a_resaved_checkpoint_with_the_same_weights_keeps_its_maps(faces, tmp_path):
    zoo = build_zoo(tmp_path / "zoo", tasks=("gender",), seeds=(0,))
    directory = tmp_path / "cube"
    cube.compute(zoo, faces, directory, batch_size=BATCH, progress=False)
    spec = ModelSpec("faces", "gender", 0)
    save_model(zoo[spec], zoo.entries[spec].path, spec=spec, metadata={"note": "saved again"})
    before = mtimes(directory)
    with warnings.catch_warnings():
        warnings.simplefilter("error", cube.CubeWarning)
        cube.compute(zoo, faces, directory, batch_size=BATCH, progress=False)
    assert mtimes(directory) == before


def test_changed_weights_of_an_in_memory_model_make_its_maps_stale(faces, zoo, tmp_path):
    spec = ModelSpec("faces", "gender", 0)
    models = {spec: zoo[spec]}
    directory = tmp_path / "cube"
    cube.compute(models, faces, directory, batch_size=BATCH, progress=False)
    with torch.no_grad():
        next(models[spec].parameters()).mul_(1.5)
    with pytest.warns(cube.CubeWarning, match="faces-gender-seed0: weights changed"):
        rerun = cube.compute(models, faces, directory, batch_size=BATCH, progress=False)
    expected = lrp_faces.attribute(models[spec], faces.images, target=torch.as_tensor(faces.gender), batch_size=BATCH)
    np.testing.assert_array_equal(rerun.relevance.values[0, 0, 0], expected.numpy())


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


def test_the_module_example_runs():
    import doctest
    results = doctest.testmod(cube, optionflags=doctest.ELLIPSIS)
    assert results.attempted >= 10 and results.failed == 0


# ----------------------------------------------------------------------------------------------- the unit of work
def test_explain_block_gives_what_attribute_gives_for_the_same_images(zoo, faces):
    spec = ModelSpec("faces", "identity", 1)
    model, method = zoo[spec], methods.get("epsilon_gamma_box")
    block = cube.explain_block(model, method, faces.images[4:12], faces.identity[4:12], first_index=4,
                               batch_size=BATCH)
    expected = lrp_faces.attribute(model, faces.images[4:12], target=torch.as_tensor(faces.identity[4:12]),
                                   batch_size=BATCH, return_output=True)
    assert block.relevance.dtype == np.float32 and block.relevance.shape == (8, SIZE, SIZE)
    np.testing.assert_array_equal(block.relevance, expected.relevance.numpy())
    np.testing.assert_array_equal(block.output, expected.output.numpy())
    np.testing.assert_array_equal(block.prediction, expected.prediction.numpy())
    np.testing.assert_array_equal(block.label, faces.identity[4:12])


def test_explain_block_seeds_each_image_by_its_index_in_the_data_set(zoo, faces):
    model = zoo[ModelSpec("faces", "gender", 0)]
    whole = lrp_faces.attribute(model, faces.images, target=torch.as_tensor(faces.gender), method="random", seed=3,
                                batch_size=len(faces))
    block = cube.explain_block(model, methods.get("random", seed=3), faces.images[8:], faces.gender[8:],
                               first_index=8, batch_size=2)
    np.testing.assert_array_equal(block.relevance, whole.numpy()[8:])


def test_compute_on_the_cpu_device_gives_the_same_cube(zoo, faces, computed, tmp_path):
    on_cpu = cube.compute(zoo, faces, tmp_path / "cube", batch_size=BATCH, device="cpu", progress=False)
    xr.testing.assert_equal(on_cpu.compute(), computed[1].compute())


@pytest.mark.parametrize("device, message", [("gpu", "unknown device 'gpu'"), ("cuda:99", "CUDA|GPU")])
def test_an_unusable_device_is_refused_before_computing(zoo, faces, tmp_path, device, message):
    with pytest.raises(DeviceError, match=message):
        cube.compute(zoo, faces, tmp_path / "cube", batch_size=BATCH, device=device, progress=False)
    assert not (tmp_path / "cube").exists()


# ------------------------------------------------------------------------------------------------- non-finite maps
class PoisonGradient(torch.autograd.Function):
    """Identity forward; NaN gradient for the rows in ``marked``: finite outputs, NaN maps for those images."""

    @staticmethod
    def forward(ctx, output, marked):
        ctx.save_for_backward(marked)
        return output.clone()

    @staticmethod
    def backward(ctx, gradient):
        (marked,) = ctx.saved_tensors
        return gradient.masked_fill(marked[:, None], float("nan")), None


MARKED = [5, 10]  # in the second and third batch: their positions within the batch are 1 and 2


def marked_faces(faces):
    """The faces, with images MARKED given a black top-left pixel, which the poisoned models look for."""
    data = faces.subset(np.arange(len(faces)))
    data.images[MARKED, :, 0, 0] = 0.0
    return data


def test_nan_maps_are_an_error_naming_the_model_the_images_and_the_method(zoo, faces, tmp_path):
    spec = ModelSpec("faces", "gender", 1)
    model = zoo[spec]
    model.register_forward_hook(lambda module, inputs, output: PoisonGradient.apply(
        output, (inputs[0][:, :, 0, 0] == 0).all(1)))
    data = marked_faces(faces)
    with pytest.raises(cube.CubeNonFiniteError) as raised:
        cube.compute({spec: model}, data, tmp_path / "cube", batch_size=BATCH, progress=False)
    message = str(raised.value)
    assert "model faces-gender-seed1" in message and "2 of the images 0 to 11" in message
    for index in MARKED:
        assert f"{index} ({data.image_ids[index]!r})" in message
    assert "likely cause: a denominator near zero in an LRP rule" in message
    assert not list((tmp_path / "cube").rglob("*.nc")), "nothing of the model is stored"


def test_overflowing_outputs_are_an_error_blaming_the_weights(zoo, faces, tmp_path):
    specs = [ModelSpec("faces", "gender", 0), ModelSpec("faces", "gender", 1)]
    models = {spec: zoo[spec] for spec in specs}
    with torch.no_grad():
        for parameter in models[specs[1]].parameters():
            parameter.mul_(1e12)
    with pytest.raises(cube.CubeNonFiniteError, match=r"faces-gender-seed1.*4 of the images 0 to 3.*output is NaN or Inf"):
        cube.compute(models, faces, tmp_path / "cube", batch_size=BATCH, block_size=BATCH, progress=False)
    assert [path.name for path in (tmp_path / "cube").rglob("*.nc")] == [cube.file_name(specs[0])]


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
