"""Map-level analyses: similarity across models, relevance per region, ground-truth metrics, method comparison.

The references below (scipy's spearmanr and pearsonr, numpy dot products, hand counts, per-image loops, scipy's
bootstrap) are written here, independently of ``lrp_faces.analysis``.
"""
import itertools
import json
from pathlib import Path

import dask.array
import numpy as np
import pytest
import scipy.stats
import torch
import xarray as xr

import lrp_faces
from lrp_faces import analysis, cube, masking
from lrp_faces.analysis import AnalysisError, AnalysisTypeError
from lrp_faces.analysis import mass_and_rank_accuracy
from lrp_faces.analysis._common import top_membership
from lrp_faces.analysis._statistics import bootstrap_mean
from lrp_faces.cube import FORMAT, FORMAT_VERSION, Batch
from lrp_faces.cube.blocks import write_model_file
from lrp_faces.faces import ImageTable
from lrp_faces.errors import LRPFacesError
from lrp_faces.faces import REGIONS, synthetic_faces
from lrp_faces.zoo import ModelSpec

from conftest import trained_scale

pytestmark = pytest.mark.usefixtures("one_torch_thread")

DIMS = ("pretraining", "task", "seed", "image", "y", "x")
PRETRAININGS, TASKS, SEEDS = ("faces", "objects"), ("gender", "identity"), (0, 1)


# ----------------------------------------------------------------------------------------------------- cubes
def make_cube(maps, pretrainings=PRETRAININGS, tasks=TASKS, seeds=SEEDS, ids=None, computed=None):
    """An in-memory cube in the layout of lrp_faces.cube.open from maps (P, T, S, N, H, W)."""
    maps = np.asarray(maps, dtype=np.float32)
    ids = [f"img{index:03d}" for index in range(maps.shape[3])] if ids is None else list(ids)
    coords = {"pretraining": list(pretrainings), "task": list(tasks), "seed": list(seeds), "image": ids,
              "y": np.arange(maps.shape[4]), "x": np.arange(maps.shape[5])}
    if computed is not None:
        coords["computed"] = (("pretraining", "task", "seed"), np.asarray(computed, dtype=bool))
    return xr.Dataset({"relevance": (DIMS, maps)}, coords=coords)


def random_cube(count=6, size=8, seed=0, **grid):
    shape = tuple(len(grid.get(name, default)) for name, default in
                  (("pretrainings", PRETRAININGS), ("tasks", TASKS), ("seeds", SEEDS)))
    maps = np.random.default_rng(seed).standard_normal(shape + (count, size, size))
    return make_cube(maps, **grid)


def write_cube(directory: Path, memory: xr.Dataset, chunk: int = 4) -> Path:
    """Write an in-memory cube as one NetCDF4 file per model with the cube's own writer."""
    directory.mkdir(parents=True, exist_ok=True)
    relevance = memory.relevance.transpose(*DIMS)
    ids = [str(value) for value in relevance.image.values]
    count, height, width = len(ids), relevance.sizes["y"], relevance.sizes["x"]
    table = ImageTable(ids, np.full(count, -1), np.full(count, -1), height, width, "test")
    for pretraining, task, seed in itertools.product(*(relevance[dim].values for dim in DIMS[:3])):
        maps = relevance.sel(pretraining=pretraining, task=task, seed=seed).values
        attrs = {"cube_format": FORMAT, "cube_format_version": FORMAT_VERSION, "n_images": count,
                 "input_height": height, "input_width": width, "pretraining": str(pretraining), "task": str(task),
                 "seed": int(seed)}
        batches = ((start, Batch(maps[start:start + chunk], np.zeros(len(maps[start:start + chunk]), np.float32),
                                 np.zeros(len(maps[start:start + chunk]), np.int64),
                                 np.zeros(len(maps[start:start + chunk]), np.int64)))
                   for start in range(0, count, chunk))
        write_model_file(directory, ModelSpec(str(pretraining), str(task), int(seed)), attrs, table, chunk, batches)
    return directory


def spec_of(memory, flat_index):
    sizes = [memory.sizes[dim] for dim in DIMS[:3]]
    i, j, k = np.unravel_index(flat_index, sizes)
    return (str(memory.pretraining.values[i]), str(memory.task.values[j]), int(memory.seed.values[k]))


def flat_maps(memory):
    """(models, N, P) maps of every model of the grid, in grid order."""
    relevance = memory.relevance.transpose(*DIMS).values
    return relevance.reshape(-1, relevance.shape[3], relevance.shape[4] * relevance.shape[5]).astype(np.float64)


# ------------------------------------------------------------------------------------------------- similarity
@pytest.mark.parametrize("metric, reference", [
    ("spearman", lambda a, b: scipy.stats.spearmanr(a, b).statistic),
    ("pearson", lambda a, b: scipy.stats.pearsonr(a, b).statistic),
    ("cosine", lambda a, b: np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b))),
])
def test_similarity_agrees_with_scipy_and_numpy_for_every_pair_and_image(metric, reference):
    memory = random_cube(count=4, size=6)
    memory["relevance"] = np.round(memory.relevance * 2) / 2  # ties, which spearman ranks by their average
    result = analysis.similarity(memory, metric, n_bootstrap=0)
    maps = flat_maps(memory)
    for a, b in itertools.product(range(len(maps)), repeat=2):
        for image in range(maps.shape[1]):
            assert result.similarity.values[a, b, image] == pytest.approx(reference(maps[a, image], maps[b, image]),
                                                                          abs=1e-12)


def test_topk_iou_matches_a_hand_count():
    # 3 x 3 maps, k = 2/9: the two most relevant pixels of each
    first = [[9, 8, 0], [0, 0, 0], [0, 0, 0]]  # top {0, 1}
    second = [[0, 9, 8], [0, 0, 0], [0, 0, 0]]  # top {1, 2}: IoU 1/3 with the first
    # all tied: each pixel is in the top 2 with probability 2/9, so the expected intersection with any map is
    # 2 * 2/9 = 4/9, and IoU = (4/9) / (4 - 4/9) = 1/8, the chance level; a map with itself is 1 by definition
    third = [[5, 5, 5], [5, 5, 5], [5, 5, 5]]
    memory = make_cube(np.array([first, second, third], dtype=np.float32).reshape(1, 1, 3, 1, 3, 3),
                       pretrainings=("faces",), tasks=("gender",), seeds=(0, 1, 2))
    result = analysis.similarity(memory, "topk_iou", k=2 / 9, n_bootstrap=0)
    expected = np.array([[1, 1 / 3, 1 / 8], [1 / 3, 1, 1 / 8], [1 / 8, 1 / 8, 1]])
    np.testing.assert_allclose(result.similarity.values[..., 0], expected)


def test_topk_iou_of_maps_with_zero_tails_is_not_inflated_by_the_zeros_that_come_first():
    # k = 3 of 9 pixels; each map has 2 non-zero pixels, so its 7 zeros share the third place (1/7 each). Breaking
    # ties by position would give both maps the top set {0, 1, 2} and an IoU of 1.
    first = [[9, 8, 0], [0, 0, 0], [0, 0, 0]]  # p = 1, 1, then 1/7 on the zeros
    second = [[0, 9, 8], [0, 0, 0], [0, 0, 0]]  # p = 1/7, 1, 1, then 1/7
    memory = make_cube(np.array([first, second], dtype=np.float32).reshape(1, 1, 2, 1, 3, 3),
                       pretrainings=("faces",), tasks=("gender",), seeds=(0, 1))
    result = analysis.similarity(memory, "topk_iou", k=3 / 9, n_bootstrap=0)
    intersection = 1 / 7 + 1 + 1 / 7 + 6 / 49  # pixels 0, 1, 2 and the six shared zeros
    assert intersection == pytest.approx(69 / 49)
    assert result.similarity.values[0, 1, 0] == pytest.approx(69 / 225)  # I / (2k - I)
    assert result.similarity.values[0, 0, 0] == 1.0  # one map breaks its ties one way


def test_topk_iou_without_ties_is_the_iou_of_the_top_sets():
    memory = random_cube(count=3, size=10)  # continuous values: no ties
    result = analysis.similarity(memory, "topk_iou", k=0.15, n_bootstrap=0)
    maps = flat_maps(memory)
    count = 15
    for a, b, image in itertools.product(range(len(maps)), range(len(maps)), range(3)):
        top_a = set(np.argsort(-maps[a, image])[:count].tolist())
        top_b = set(np.argsort(-maps[b, image])[:count].tolist())
        assert result.similarity.values[a, b, image] == pytest.approx(len(top_a & top_b) / len(top_a | top_b),
                                                                      abs=1e-12)


def test_top_membership_is_the_chance_of_being_in_the_top_set_under_random_tie_breaking():
    values = np.array([3.0, 1.0, 1.0, 1.0, 0.0, 1.0, 2.0])
    for count in range(1, len(values) + 1):
        orders = list(itertools.permutations(range(len(values))))
        hits = np.zeros(len(values))
        for order in orders:  # every tie-break: sort by value, then by a random order of the pixels
            ranked = sorted(range(len(values)), key=lambda pixel: (-values[pixel], order.index(pixel)))
            hits[ranked[:count]] += 1
        np.testing.assert_allclose(top_membership(values, count), hits / len(orders))
        np.testing.assert_allclose(top_membership(values[None], np.array([count]))[0], hits / len(orders))


def test_means_are_over_images_and_cis_bracket_them():
    memory = random_cube(count=12, size=6)
    memory["relevance"] = memory.relevance + memory.relevance.isel(seed=0)  # correlated seeds
    result = analysis.similarity(memory, "pearson", n_bootstrap=200)
    np.testing.assert_allclose(result["mean"].values, result.similarity.values.mean(-1))
    assert (result.ci_low.values <= result["mean"].values + 1e-12).all()
    assert (result.ci_high.values >= result["mean"].values - 1e-12).all()
    np.testing.assert_allclose(result["mean"].values, result["mean"].values.T)
    assert result.attrs["metric"] == "pearson" and result.attrs["confidence"] == 0.95


def reference_relation(a, b):
    """How two (pretraining, task, seed) models relate, written out independently."""
    if a == b:
        return "same_model"
    if a[:2] == b[:2]:
        return "same_cell_different_seed"
    if a[0] == b[0]:
        return "different_task"
    if a[1] == b[1]:
        return "different_pretraining"
    return "both_different"


def test_relation_summaries_average_the_unordered_pairs_of_each_relation():
    memory = random_cube(count=5, size=6)
    result = analysis.similarity(memory, "cosine", n_bootstrap=0)
    values = result.similarity.values
    groups = {name: [] for name in masking.RELATIONS}
    for a, b in itertools.combinations_with_replacement(range(8), 2):
        groups[reference_relation(spec_of(memory, a), spec_of(memory, b))].append(values[a, b])
    for name, pairs in groups.items():
        assert result.relation_pairs.sel(relation=name) == len(pairs)
        assert result.relation_mean.sel(relation=name) == pytest.approx(np.mean(pairs))
    assert dict(zip(*np.unique(result.pair_relation.values, return_counts=True))) == {
        "same_model": 8, "same_cell_different_seed": 8, "different_task": 16, "different_pretraining": 16,
        "both_different": 16}


def test_models_are_labelled_with_their_ids_and_specs():
    result = analysis.similarity(random_cube(count=2, size=4), n_bootstrap=0)
    assert list(result.model_a.values) == [f"{p}/{t}/{s}" for p in PRETRAININGS for t in TASKS for s in SEEDS]
    assert list(result.model_b.values) == list(result.model_a.values)
    assert list(result.task_a.values) == [t for _ in PRETRAININGS for t in TASKS for _ in SEEDS]
    assert list(result.seed_b.values) == [0, 1] * 4
    assert result.pair_relation.sel(model_a="faces/gender/0", model_b="objects/gender/1") == "different_pretraining"
    assert set(result.dims) == {"model_a", "model_b", "image", "relation"}


def test_models_a_ragged_cube_did_not_compute_are_skipped():
    memory = random_cube(count=4, size=6)
    computed = np.ones((2, 2, 2), dtype=bool)
    computed[1, 0, 1] = False
    memory["relevance"][1, 0, 1] = np.nan
    memory = memory.assign_coords(computed=(("pretraining", "task", "seed"), computed))
    result = analysis.similarity(memory, "spearman", n_bootstrap=0)
    assert "objects/gender/1" not in result.model_a.values and result.sizes["model_a"] == 7
    assert np.isfinite(result.similarity.values).all()
    full = analysis.similarity(memory.drop_vars("computed").isel(pretraining=[0]), "spearman", n_bootstrap=0)
    np.testing.assert_allclose(result.similarity.sel(model_a=full.model_a, model_b=full.model_b), full.similarity)


def test_correlations_of_a_constant_map_are_nan_and_left_out_of_the_mean():
    memory = random_cube(count=3, size=5)
    memory["relevance"][0, 0, 0, 1] = 2.0
    result = analysis.similarity(memory, "pearson", n_bootstrap=0)
    assert np.isnan(result.similarity.values[0, 1:, 1]).all() and np.isnan(result.similarity.values[1:, 0, 1]).all()
    np.testing.assert_allclose(result["mean"].values[0, 1], result.similarity.values[0, 1, [0, 2]].mean())


@pytest.mark.parametrize("metric", analysis.METRICS)
def test_dask_backed_cube_read_block_by_block_equals_the_in_memory_cube(tmp_path, metric):
    memory = random_cube(count=10, size=8)
    opened = cube.open(write_cube(tmp_path / "cube", memory), chunks={})
    assert opened.relevance.chunks is not None
    expected = analysis.similarity(memory, metric, n_bootstrap=50)
    for block_size in (1, 3, None):
        result = analysis.similarity(opened, metric, n_bootstrap=50, block_size=block_size)
        xr.testing.assert_allclose(result, expected)


def test_a_ragged_cube_on_disk_skips_the_missing_model(tmp_path):
    memory = random_cube(count=5, size=6)
    directory = write_cube(tmp_path / "cube", memory)
    (directory / f"{ModelSpec('objects', 'identity', 0).name}.nc").unlink()
    result = analysis.similarity(cube.open(directory), "spearman", n_bootstrap=0)
    assert "objects/identity/0" not in result.model_a.values and result.sizes["model_a"] == 7
    expected = analysis.similarity(memory, "spearman", n_bootstrap=0)
    xr.testing.assert_allclose(result.similarity, expected.similarity.sel(model_a=result.model_a,
                                                                          model_b=result.model_b))


class RecordingArray:
    """A lazily read array that records the image ranges read from it."""

    def __init__(self, values):
        self.values, self.shape, self.dtype, self.ndim = values, values.shape, values.dtype, values.ndim
        self.reads = []

    def __getitem__(self, key):
        images = key[3]
        self.reads.append((images.start or 0, images.stop if images.stop is not None else self.shape[3]))
        return self.values[key]


def test_a_dask_cube_is_read_chunk_by_chunk_and_each_chunk_once():
    memory = random_cube(count=12, size=6)
    source = RecordingArray(memory.relevance.values)
    lazy = memory.copy()
    lazy["relevance"] = (DIMS, dask.array.from_array(source, chunks=(2, 2, 2, 3, 6, 6)))
    result = analysis.similarity(lazy, "pearson", n_bootstrap=0, block_size=6)
    xr.testing.assert_allclose(result, analysis.similarity(memory, "pearson", n_bootstrap=0))
    reads = sorted(read for read in source.reads if read[1] > read[0])  # dask probes an empty slice for its meta
    assert reads == [(start, start + 3) for start in range(0, 12, 3)]


def test_progress_bar_does_not_change_the_result():
    memory = random_cube(count=3, size=5)
    xr.testing.assert_identical(analysis.similarity(memory, progress=True, n_bootstrap=10),
                                analysis.similarity(memory, n_bootstrap=10))


# ------------------------------------------------------------------------------------------------- bootstrap
def test_bootstrap_ci_agrees_with_scipys_percentile_bootstrap():
    values = np.random.default_rng(3).gamma(2.0, size=(2, 80))
    mean, low, high = bootstrap_mean(values, n_bootstrap=4000, confidence=0.9, seed=1)
    np.testing.assert_allclose(mean, values.mean(-1))
    for row in range(2):
        reference = scipy.stats.bootstrap((values[row],), np.mean, n_resamples=4000, confidence_level=0.9,
                                          method="percentile", random_state=np.random.default_rng(2))
        spread = values[row].std() / np.sqrt(values.shape[1])
        assert low[row] == pytest.approx(reference.confidence_interval.low, abs=0.15 * spread)
        assert high[row] == pytest.approx(reference.confidence_interval.high, abs=0.15 * spread)


def test_bootstrap_leaves_nan_out_and_needs_two_images():
    values = np.array([[1.0, np.nan, 3.0, 5.0], [np.nan] * 4])
    mean, low, high = bootstrap_mean(values, n_bootstrap=100)
    assert mean[0] == 3.0 and 1.0 <= low[0] <= high[0] <= 5.0
    assert np.isnan([mean[1], low[1], high[1]]).all()
    assert np.isnan(bootstrap_mean(values[:, :1], n_bootstrap=100)[1]).all()


# ------------------------------------------------------------------------------------------- region relevance
@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(3, 2, size=32)


@pytest.fixture(scope="module")
def face_cube(faces):
    maps = np.random.default_rng(5).standard_normal((1, 2, 2, len(faces), 32, 32))
    return make_cube(maps, pretrainings=("faces",), ids=faces.image_ids)


def test_region_shares_sum_to_one_and_follow_a_per_image_loop(faces, face_cube):
    result = analysis.region_relevance(face_cube, faces, n_bootstrap=0)
    assert list(result.region.values) == list(REGIONS)
    np.testing.assert_allclose(result.image_share.sum("region"), 1.0)
    np.testing.assert_allclose(result.share.sum("region"), 1.0)
    maps = face_cube.relevance.sel(pretraining="faces", task="identity", seed=1).values.astype(np.float64)
    for image in range(len(faces)):
        positive = np.maximum(maps[image], 0)
        for value, name in enumerate(REGIONS):
            inside = faces.regions[image] == value
            share = result.image_share.sel(pretraining="faces", task="identity", seed=1, region=name)[image]
            density = result.image_density.sel(pretraining="faces", task="identity", seed=1, region=name)[image]
            assert share == pytest.approx(positive[inside].sum() / positive.sum())
            if inside.any():
                assert density == pytest.approx(maps[image][inside].mean())
            else:
                assert np.isnan(density)
    np.testing.assert_allclose(result.region_area.values[0], np.bincount(faces.regions[0].ravel(), minlength=9)
                               / 32 ** 2)


def test_region_label_maps_match_by_image_id_or_in_cube_order(faces, face_cube):
    from_dataset = analysis.region_relevance(face_cube, faces, n_bootstrap=0)
    in_order = analysis.region_relevance(face_cube, faces.regions, region_names=REGIONS, n_bootstrap=0)
    reversed_ids = xr.DataArray(faces.regions[::-1], dims=("image", "y", "x"),
                                coords={"image": faces.image_ids[::-1]}, attrs={"region_names": list(REGIONS)})
    by_id = analysis.region_relevance(face_cube, reversed_ids, n_bootstrap=0)
    xr.testing.assert_identical(from_dataset, in_order)
    xr.testing.assert_identical(from_dataset, by_id)


def test_a_shared_template_equals_the_same_map_for_every_image(face_cube):
    template, names = analysis.face_template(32)
    shared = analysis.region_relevance(face_cube, template, names, n_bootstrap=20)
    repeated = analysis.region_relevance(face_cube, np.repeat(template[None], 6, 0), names, n_bootstrap=20)
    xr.testing.assert_allclose(shared, repeated)


def test_region_shares_are_nan_for_a_map_without_positive_relevance(faces, face_cube):
    negative = face_cube.copy(deep=True)
    negative["relevance"][0, 0, 0, 2] = -1.0
    result = analysis.region_relevance(negative, faces, n_bootstrap=0)
    assert np.isnan(result.image_share.values[0, 0, 0, 2]).all()
    np.testing.assert_allclose(result.share.sum("region"), 1.0)


def test_region_relevance_of_a_ragged_cube_is_nan_for_missing_models(faces, face_cube):
    ragged = face_cube.copy(deep=True)
    ragged["relevance"][0, 1, 0] = np.nan
    ragged = ragged.assign_coords(computed=(("pretraining", "task", "seed"), np.array([[[1, 1], [0, 1]]], bool)))
    result = analysis.region_relevance(ragged, faces, n_bootstrap=0)
    assert np.isnan(result.share.sel(task="identity", seed=0)).all()
    assert np.isfinite(result.share.sel(task="identity", seed=1)).all()


@pytest.mark.parametrize("size", [32, 64, 112, (96, 80)])
def test_face_template_has_every_region_in_anatomical_order(size):
    labels, names = analysis.face_template(size)
    assert names == ("background", "skin", "hair", "eyes", "brows", "nose", "mouth", "jaw")
    height, width = (size, size) if isinstance(size, int) else size
    assert labels.shape == (height, width) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(len(names)))
    np.testing.assert_array_equal(labels, labels[:, ::-1])  # left-right symmetric
    rows = {name: np.nonzero(labels == value)[0].mean() for value, name in enumerate(names)}
    assert rows["hair"] < rows["brows"] < rows["eyes"] < rows["nose"] < rows["mouth"] < rows["jaw"]


# ----------------------------------------------------------------------------------------------- ground truth
def test_mass_and_rank_accuracy_are_one_for_maps_inside_the_ground_truth(faces):
    inside = np.stack([faces.task_mask(task) for task in TASKS])  # (T, N, H, W)
    values = np.random.default_rng(0).uniform(0.1, 1.0, (1, 2, 2) + faces.regions.shape)
    maps = values * inside[None, :, None]  # each model's positive relevance lies in its own task's regions
    result = analysis.ground_truth(make_cube(maps, pretrainings=("faces",), ids=faces.image_ids), faces,
                                   n_bootstrap=0)
    np.testing.assert_allclose(result.relevance_mass_accuracy, 1.0)
    np.testing.assert_allclose(result.relevance_rank_accuracy, 1.0)
    swapped = analysis.ground_truth(make_cube(maps, pretrainings=("faces",), ids=faces.image_ids),
                                    {"gender": faces.task_mask("identity"), "identity": faces.task_mask("gender")},
                                    n_bootstrap=0)
    assert (swapped.relevance_mass_accuracy < 0.01).all()


def test_random_maps_score_about_the_ground_truths_area_share():
    faces = synthetic_faces(4, 10, size=32)
    maps = np.random.default_rng(1).standard_normal((1, 2, 1, len(faces), 32, 32))
    result = analysis.ground_truth(make_cube(maps, pretrainings=("faces",), seeds=(0,), ids=faces.image_ids), faces,
                                   n_bootstrap=200)
    for task in TASKS:
        area = faces.task_mask(task).mean()
        assert result.ground_truth_area.sel(task=task).mean() == pytest.approx(area)
        for name in ("relevance_mass_accuracy", "relevance_rank_accuracy"):
            score = result[f"{name}_mean"].sel(task=task, seed=0, pretraining="faces")
            assert score == pytest.approx(area, abs=0.02)
            assert result[f"{name}_ci_low"].sel(task=task).item() < area + 0.02
            assert result[f"{name}_ci_high"].sel(task=task).item() > area - 0.02


def test_rank_accuracy_matches_a_hand_count():
    truth = np.array([[[True, True, False], [False, False, False]]])  # K = 2
    relevance = np.array([[[5.0, 1.0, 4.0], [0.0, -1.0, 0.5]]])  # top 2: pixels 0 and 2 -> 1 of 2 inside
    result = analysis.ground_truth(make_cube(relevance.reshape(1, 1, 1, 1, 2, 3), pretrainings=("faces",),
                                             tasks=("gender",), seeds=(0,)), {"gender": truth}, n_bootstrap=0)
    assert result.relevance_rank_accuracy.item() == 0.5
    assert result.relevance_mass_accuracy.item() == pytest.approx(6.0 / 10.5)


def test_rank_accuracy_shares_tied_places():
    truth = np.array([[[True, True, False], [False, False, False]]])  # K = 2
    relevance = np.array([[[0.0, 5.0, 0.0], [0.0, 0.0, 0.0]]])  # pixel 1 above; five zeros share 1 place: 1/5 each
    result = analysis.ground_truth(make_cube(relevance.reshape(1, 1, 1, 1, 2, 3), pretrainings=("faces",),
                                             tasks=("gender",), seeds=(0,)), {"gender": truth}, n_bootstrap=0)
    assert result.relevance_rank_accuracy.item() == pytest.approx((1 + 1 / 5) / 2)  # not 1, as pixel 0 first


def test_rank_accuracy_of_a_constant_map_is_the_ground_truths_area_share():
    faces = synthetic_faces(2, 2, size=16)
    maps = np.zeros((1, 2, 1, len(faces), 16, 16))
    result = analysis.ground_truth(make_cube(maps, pretrainings=("faces",), seeds=(0,), ids=faces.image_ids), faces,
                                   n_bootstrap=0)
    for task in TASKS:
        np.testing.assert_allclose(result.relevance_rank_accuracy.sel(task=task, pretraining="faces", seed=0),
                                   result.ground_truth_area.sel(task=task), rtol=1e-12)
    inside = np.array([[True, False, True, False]])
    assert mass_and_rank_accuracy(np.full((1, 4), 2.0), inside)[1].item() == pytest.approx(0.5)


def test_ground_truth_masks_may_be_shared_by_all_images():
    maps = np.random.default_rng(2).standard_normal((1, 1, 1, 4, 5, 5))
    truth = np.zeros((5, 5), dtype=bool)
    truth[1:3, 2:5] = True
    memory = make_cube(maps, pretrainings=("faces",), tasks=("gender",), seeds=(0,))
    shared = analysis.ground_truth(memory, {"gender": truth}, n_bootstrap=10)
    repeated = analysis.ground_truth(memory, {"gender": np.repeat(truth[None], 4, 0)}, n_bootstrap=10)
    xr.testing.assert_identical(shared, repeated)


def test_region_and_ground_truth_results_merge_into_one_dataset(faces, face_cube):
    merged = xr.merge([analysis.region_relevance(face_cube, faces, n_bootstrap=10),
                       analysis.ground_truth(face_cube, faces, n_bootstrap=10)], combine_attrs="drop_conflicts")
    assert {"share", "image_share", "relevance_mass_accuracy", "ground_truth_area"} <= set(merged.data_vars)
    assert dict(merged.sizes) == {"pretraining": 1, "task": 2, "seed": 2, "region": 9, "image": 6}


# ----------------------------------------------------------------------------------------- method comparison
@pytest.fixture(scope="module")
def tiny_zoo():
    zoo = {}
    for index, spec in enumerate([ModelSpec("faces", "gender", 0), ModelSpec("faces", "identity", 0)]):
        torch.manual_seed(index)
        model = lrp_faces.vgg16(num_classes=2 if spec.task == "gender" else 3, width=1 / 8, pool_size=2,
                                classifier_width=16)
        zoo[spec] = trained_scale(model, torch.Generator().manual_seed(index)).eval()
    return zoo


def test_method_comparison_scores_each_methods_maps_against_ground_truth_and_masking(tiny_zoo, faces):
    methods = ("epsilon_gamma_box", "gradient", "smoothgrad", "random")
    fractions = (0.0, 0.25, 0.5)
    result = analysis.method_comparison(tiny_zoo, faces, methods, method_params={"smoothgrad": {"n_samples": 2}},
                                        fractions=fractions, n_bootstrap=50)
    assert dict(result.sizes) == {"attribution_method": 4, "model": 2, "image": 6, "metric": 4}
    assert list(result.metric.values) == ["relevance_mass_accuracy", "relevance_rank_accuracy", "aopc_output",
                                          "aopc_probability"]
    assert json.loads(result.attrs["method_params"])["smoothgrad"]["n_samples"] == 2
    spec = ModelSpec("faces", "identity", 0)
    labels = faces.labels("identity")
    maps = lrp_faces.attribute(tiny_zoo[spec], faces.images, target=torch.as_tensor(labels), method="gradient")
    value = result.value.sel(attribution_method="gradient", model="faces/identity/0")
    truth = faces.task_mask("identity")
    for image in range(len(faces)):
        positive = np.maximum(maps[image].numpy().astype(np.float64), 0)
        assert value.sel(metric="relevance_mass_accuracy")[image] == pytest.approx(
            positive[truth[image]].sum() / positive.sum())
    curve = masking.curves(tiny_zoo[spec], faces.images, labels, maps, fractions=fractions)
    np.testing.assert_allclose(value.sel(metric="aopc_output"), curve.aopc_output)
    np.testing.assert_allclose(result["mean"],
                               result.value.mean(("model", "image")).transpose("attribution_method", "metric"))
    assert (result.ci_low <= result["mean"] + 1e-12).all() and (result.ci_high >= result["mean"] - 1e-12).all()
    summary = result[["mean", "ci_low", "ci_high"]].to_dataframe()
    assert len(summary) == 16 and list(summary.columns) == ["mean", "ci_low", "ci_high"]
    assert summary.index.names == ["attribution_method", "metric"]


def test_method_comparison_selects_a_method_by_keyword_not_swallowed_by_sel(tiny_zoo, faces):
    methods = ("gradient", "random")
    result = analysis.method_comparison(tiny_zoo, faces, methods, fractions=(0.0, 0.5), n_bootstrap=5)
    assert "method" not in result.dims and list(result.attribution_method.values) == list(methods)
    one = result.sel(attribution_method="gradient")  # a keyword that is not xarray's own sel(method=...)
    assert "attribution_method" not in one.dims and str(one.attribution_method.item()) == "gradient"
    np.testing.assert_array_equal(one.value.values, result.value.values[methods.index("gradient")])
    assert dict(one["mean"].sizes) == {"metric": len(analysis.COMPARISON_METRICS)}
    # the trap of the old dim name: sel's own `method` keyword swallows the value and selects nothing
    assert dict(result.sel(method="gradient").sizes) == dict(result.sizes)


def test_method_comparison_without_ground_truth_still_gives_aopc(tiny_zoo, faces):
    class NoMasks:
        images, image_ids = faces.images, faces.image_ids

        def __len__(self):
            return len(faces)

        def labels(self, task):
            return faces.labels(task)

    result = analysis.method_comparison(tiny_zoo, NoMasks(), ("random",), fractions=(0.0, 0.5), n_bootstrap=10,
                                        models=[ModelSpec("faces", "gender", 0)])
    assert np.isnan(result.value.sel(metric="relevance_mass_accuracy")).all()
    assert np.isfinite(result.value.sel(metric="aopc_output")).all()
    assert result.attrs["ground_truth"].startswith("none")


@pytest.mark.parametrize("arguments, error, message", [
    ({"methods": ("no_such_method",)}, AnalysisError, "unknown method"),
    ({"methods": ("random", "random")}, AnalysisError, "distinct"),
    ({"methods": ("random",), "method_params": {"smoothgrad": {"n_samples": 2}}}, AnalysisError, "not in methods"),
    ({"methods": ("random",), "method_params": {"random": 3}}, AnalysisTypeError, "method_params"),
    ({"methods": ("random",), "models": [ModelSpec("objects", "gender", 0)]}, AnalysisError, "not in the zoo"),
    ({"methods": ("random",), "masks": {"gender": np.zeros((32, 32), bool)}}, AnalysisError, "identity"),
])
def test_bad_method_comparison_input_is_rejected(tiny_zoo, faces, arguments, error, message):
    with pytest.raises(error, match=message):
        analysis.method_comparison(tiny_zoo, faces, fractions=(0.0, 0.5), n_bootstrap=0, **arguments)


def test_method_comparison_on_the_cpu_device_equals_the_default_bit_for_bit(tiny_zoo, faces):
    arguments = dict(methods=("epsilon_gamma_box", "gradient"), fractions=(0.0, 0.5), n_bootstrap=20)
    default = analysis.method_comparison(tiny_zoo, faces, **arguments)
    on_cpu = analysis.method_comparison(tiny_zoo, faces, device="cpu", **arguments)
    xr.testing.assert_identical(default, on_cpu)
    assert all(parameter.device.type == "cpu" for model in tiny_zoo.values() for parameter in model.parameters())


def test_method_comparison_rejects_a_device_that_is_not_one(tiny_zoo, faces):
    with pytest.raises(AnalysisError, match="device: unknown device 'gpu one': use 'cpu', 'cuda'"):
        analysis.method_comparison(tiny_zoo, faces, ("random",), device="gpu one")


def test_method_parameters_out_of_range_are_a_package_error_naming_the_method(tiny_zoo, faces):
    with pytest.raises(LRPFacesError, match="integrated_gradients.*steps|steps.*integrated_gradients"):
        analysis.method_comparison(tiny_zoo, faces, ("integrated_gradients",),
                                   method_params={"integrated_gradients": {"steps": 0}})


def test_method_comparison_needs_a_zoo_mapping(faces):
    with pytest.raises(AnalysisTypeError, match="zoo must map"):
        analysis.method_comparison([1, 2], faces, ("random",))


# ------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("arguments, message", [
    ({"metric": "kendall"}, "metric must be one of"),
    ({"metric": "topk_iou", "k": 0}, r"k must be a fraction of the pixels in \(0, 1\]"),
    ({"metric": "topk_iou", "k": 1.5}, r"\(0, 1\]"),
    ({"k": True}, r"\(0, 1\]"),
    ({"metric": "topk_iou", "k": 0.001}, "selects no pixel"),
    ({"metric": "spearman", "k": 0}, r"\(0, 1\]"),
    ({"confidence": 1.0}, "confidence"),
    ({"n_bootstrap": -1}, "n_bootstrap"),
    ({"block_size": 0}, "block_size"),
])
def test_bad_similarity_arguments_are_rejected(arguments, message):
    with pytest.raises(AnalysisError, match=message):
        analysis.similarity(random_cube(count=2, size=4), **arguments)


def test_a_cube_that_is_not_a_cube_is_rejected():
    with pytest.raises(AnalysisTypeError, match="xarray.Dataset with a 'relevance' variable"):
        analysis.similarity(np.zeros((1, 1, 1, 2, 4, 4)))
    with pytest.raises(AnalysisError, match="must have the dims"):
        analysis.similarity(random_cube(count=2, size=4).isel(seed=0))


def test_nan_relevance_of_a_computed_model_is_named():
    memory = random_cube(count=3, size=4)
    memory["relevance"][0, 1, 1, 2, 0, 0] = np.nan
    for function in (analysis.similarity, lambda data: analysis.region_relevance(data, np.zeros((4, 4), int)),
                     lambda data: analysis.ground_truth(data, {task: np.ones((4, 4), bool) for task in TASKS})):
        with pytest.raises(AnalysisError, match=r"NaN or Inf .*faces/identity/1.*'img002'") as error:
            function(memory)
        assert "the maps themselves are not finite" in str(error.value) and "incomplete" not in str(error.value)


def test_a_cube_without_computed_models_is_rejected():
    memory = random_cube(count=2, size=4).assign_coords(computed=(("pretraining", "task", "seed"),
                                                                  np.zeros((2, 2, 2), bool)))
    with pytest.raises(AnalysisError, match="no computed models"):
        analysis.similarity(memory)


@pytest.mark.parametrize("regions, names, error, message", [
    (np.zeros((5, 8), int), None, AnalysisError, r"\(H, W\) = \(8, 8\)"),
    (np.zeros((4, 8, 8), int), None, AnalysisError, "has 4 maps but the cube has 6 images"),
    (np.zeros((8, 8)), None, AnalysisError, "integer label maps"),
    (np.zeros((8, 8), bool), None, AnalysisError, "integer label maps"),
    (np.full((8, 8), -1), None, AnalysisError, "labels >= 0"),
    (np.full((8, 8), 2), ("a", "b"), AnalysisError, "has label 2 but only 2 region_names"),
    (np.zeros((8, 8), int), ("a", "a"), AnalysisError, "distinct"),
    (np.zeros((8, 8), int), "ab", AnalysisTypeError, "sequence of str"),
    (xr.DataArray(np.zeros((8, 8), int), dims=("row", "column")), None, AnalysisError, "dims"),
    (xr.DataArray(np.zeros((1, 8, 8), int), dims=("image", "y", "x"), coords={"image": ["other"]}), None,
     AnalysisError, "no map for 6 image"),
    ("regions.png", None, AnalysisTypeError, "must be an array"),
])
def test_bad_regions_are_rejected(regions, names, error, message):
    with pytest.raises(error, match=message):
        analysis.region_relevance(random_cube(count=6, size=8), regions, names)


@pytest.mark.parametrize("masks, error, message", [
    ({"gender": np.ones((8, 8), bool)}, AnalysisError, r"no ground truth for the cube's task\(s\) \['identity'\]"),
    ({task: np.ones((3, 8, 8), bool) for task in TASKS}, AnalysisError, "has 3 maps but the cube has 6 images"),
    ({task: np.full((8, 8), 2) for task in TASKS}, AnalysisError, "must be boolean"),
    ({task: np.ones((8, 7), bool) for task in TASKS}, AnalysisError, r"\(H, W\) = \(8, 8\)"),
    (np.ones((8, 8), bool), AnalysisTypeError, "masks must map each task"),
])
def test_bad_ground_truth_masks_are_rejected(masks, error, message):
    with pytest.raises(error, match=message):
        analysis.ground_truth(random_cube(count=6, size=8), masks)


def test_a_dataset_without_the_cubes_task_is_rejected(faces, face_cube):
    renamed = face_cube.assign_coords(task=["gender", "age"])
    with pytest.raises(AnalysisError, match="no ground truth for the cube's task 'age'"):
        analysis.ground_truth(renamed, faces)


@pytest.mark.parametrize("size", [4, "64", (64,), True, (64, 2.5)])
def test_bad_template_sizes_are_rejected(size):
    with pytest.raises(AnalysisError, match="size must be an integer >= 8"):
        analysis.face_template(size)
