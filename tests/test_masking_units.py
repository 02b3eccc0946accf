"""Masking in units of work: any split of the images into blocks gives the same numbers; devices and precision.

The references are the same computation on all images at once (bit for bit), and definitions written here (AOPC of
keep curves, the generalisation index).
"""
import numpy as np
import pytest
import scipy.ndimage
import torch
import xarray as xr

import lrp_faces
from lrp_faces.devices import DeviceError
from lrp_faces import masking
from lrp_faces.masking import BlockScores, MaskingConfig, MaskingError
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

from conftest import trained_scale

pytestmark = pytest.mark.usefixtures("one_torch_thread")

COUNT, SIZE, CLASSES = 5, 32, 3
SPLITS = (1, 3, None)  # blocks of 1 image, of 3, and all images at once


def tiny_vgg(seed=0, classes=CLASSES, dtype=torch.float32):
    torch.manual_seed(seed)
    model = lrp_faces.vgg16(classes, width=1 / 16, pool_size=2, classifier_width=16)
    trained_scale(model, torch.Generator().manual_seed(seed))
    return model.to(dtype).eval()


def inputs(dtype=torch.float32, sources=1):
    images = torch.rand(COUNT, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1), dtype=dtype)
    maps = [torch.randn(COUNT, SIZE, SIZE, generator=torch.Generator().manual_seed(2 + source), dtype=dtype)
            for source in range(sources)]
    labels = torch.arange(COUNT) % CLASSES
    return images, maps, labels


def blocks(size):
    size = size or COUNT
    return [slice(start, min(start + size, COUNT)) for start in range(0, COUNT, size)]


def in_blocks(unit, model, images, maps, labels, config, size, **options):
    """``unit`` run block by block on ``size`` images at a time, joined; ``maps`` is a list of (N, H, W) maps."""
    colours = masking.fill_colours(images, config)  # resolved over all images, then split
    parts = []
    for block in blocks(size):
        block_maps = [source[block] for source in maps]
        parts.append(unit(model, images[block], block_maps if unit is masking.generalization_block else block_maps[0],
                          labels[block], config, image_index=range(block.start, block.stop),
                          fill_colours=None if colours is None else colours[block], batch_size=4, **options))
    return BlockScores.concatenate(parts)


def assert_same_for_every_split(unit, model, images, maps, labels, config):
    whole = in_blocks(unit, model, images, maps, labels, config, None)
    for size in SPLITS[:-1]:
        split = in_blocks(unit, model, images, maps, labels, config, size)
        assert np.array_equal(split.unmasked, whole.unmasked), size
        assert np.array_equal(split.masked, whole.masked), size


# every fill (with the random order) and every order (with the noise fill): all the per-image random draws
FILLS_AND_ORDERS = [("random", fill) for fill in masking.FILLS] + [(order, "noise") for order in ("morf", "lerf")]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("order, fill", FILLS_AND_ORDERS)
def test_any_split_into_blocks_gives_the_same_curves(order, fill, dtype):
    images, maps, labels = inputs(dtype)
    config = MaskingConfig(fractions=(0.0, 0.3, 0.7, 1.0), order=order, fill=fill, patch=4, seed=2)
    assert_same_for_every_split(masking.curves_block, tiny_vgg(dtype=dtype), images, maps, labels, config)


@pytest.mark.parametrize("fill", ["mean", "noise", "road"])
@pytest.mark.parametrize("mode", masking.MODES)
def test_any_split_into_blocks_gives_the_same_generalization_scores(fill, mode):
    images, maps, labels = inputs(sources=2)
    config = MaskingConfig(fractions=(0.0, 0.5, 1.0), fill=fill, patch=4, mode=mode, seed=1)
    assert_same_for_every_split(masking.generalization_block, tiny_vgg(), images, maps, labels, config)


def test_a_generalization_block_scores_every_source_then_the_random_order():
    images, maps, labels = inputs(sources=2)
    model, config = tiny_vgg(), MaskingConfig(fractions=(0.0, 0.5), fill="zero", patch=4)
    scores = in_blocks(masking.generalization_block, model, images, maps, labels, config, None)
    assert scores.masked.shape == (3, 3, 2, COUNT) and scores.unmasked.shape == (3, COUNT)
    for source, maps_of in enumerate(maps + [None]):
        expected = masking.curves(model, images, labels, maps_of if maps_of is not None else maps[0],
                                  config, order=config.order if maps_of is not None else "random", batch_size=4)
        np.testing.assert_array_equal(scores.masked[source, 2], expected.output.values)
        np.testing.assert_array_equal(scores.masked[source, 0], expected.correct.values)


def test_the_mean_fill_of_a_block_needs_the_colours_of_all_images():
    images, maps, labels = inputs()
    with pytest.raises(MaskingError, match="needs its colours"):
        masking.curves_block(tiny_vgg(), images[:2], maps[0][:2], labels[:2], MaskingConfig(fill="mean"),
                             image_index=[0, 1])


def test_a_generalization_block_rejects_the_random_order():
    images, maps, labels = inputs()
    with pytest.raises(MaskingError, match="order must be 'morf' or 'lerf'"):
        masking.generalization_block(tiny_vgg(), images, maps, labels, MaskingConfig(order="random", fill="zero"),
                                     image_index=range(COUNT))


# ---------------------------------------------------------------------------------------------------- a small study
SPECS = [ModelSpec(pretraining, "gender", seed) for pretraining in ("objects", "faces") for seed in (0, 1)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A cube over 4 tiny gender models, their zoo and 8 faces."""
    folder = tmp_path_factory.mktemp("zoo")
    faces = lrp_faces.faces.synthetic_faces(4, 2, size=SIZE)
    entries = []
    for index, spec in enumerate(SPECS):
        model = tiny_vgg(index, faces.num_classes(spec.task))
        entries.append(ZooEntry(spec, save_model(model, folder / f"{spec.name}.pt", spec=spec)))
    smooth = scipy.ndimage.gaussian_filter(np.random.default_rng(0).standard_normal((2, 1, 2, 8, SIZE, SIZE)),
                                           (0, 0, 0, 0, 2, 2))
    cube = xr.Dataset({"relevance": (masking.MODEL_DIMS + ("image", "y", "x"), smooth.astype(np.float32))},
                      coords={"pretraining": ["objects", "faces"], "task": ["gender"], "seed": [0, 1],
                              "image": faces.image_ids, "gender": ("image", faces.gender)})
    return cube, Zoo(entries, image_size=SIZE), faces


SMALL = dict(fractions=(0.0, 0.25, 0.5, 1.0), patch=4, n_bootstrap=50, n_permutations=50, progress=False)


def test_generalization_gives_identical_results_for_any_block_size(study):
    cube, zoo, faces = study
    whole = masking.generalization(cube, zoo, faces, fill="noise", block_size=None, **SMALL)
    xr.testing.assert_identical(masking.generalization(cube, zoo, faces, fill="noise", block_size=3, **SMALL), whole)


def test_own_map_curves_give_identical_results_for_any_block_size(study):
    cube, zoo, faces = study
    settings = dict(fractions=(0.0, 0.5, 1.0), patch=4, order="random", fill="road")
    whole = masking.own_map_curves(cube, zoo, faces, block_size=None, **settings)
    xr.testing.assert_identical(masking.own_map_curves(cube, zoo, faces, block_size=3, **settings), whole)


def test_generalization_in_keep_mode_follows_the_definitions_of_aopc_and_g(study):
    cube, zoo, faces = study
    result = masking.generalization(cube, zoo, faces, mode="keep", **SMALL)
    steps = result.fraction < 1  # keep: the mean over fractions < 1 of f(masked) - f(original)
    aopc = (result.output - result.unmasked_output).where(steps).mean(("fraction", "image")).values.reshape(4, 4)
    random = (result.random_output - result.unmasked_output).where(steps).mean(("fraction", "image"))
    random = random.values.reshape(-1)
    np.testing.assert_allclose(result.aopc.values.reshape(4, 4), aopc, rtol=1e-12, atol=1e-12)
    own = np.diag(aopc)
    np.testing.assert_allclose(result.generalization_index.values.reshape(4, 4),
                               (aopc - random) / (own - random), rtol=1e-10)
    assert "f(masked) - f(original)" in result.attrs["aopc"] and result.attrs["mode"] == "keep"


def test_assembly_rejects_scores_that_do_not_fit_the_inputs(study):
    cube, zoo, faces = study
    inputs = masking.generalization_inputs(cube, zoo, faces, fractions=(0.0, 0.5))
    wrong = BlockScores(np.zeros((3, 8)), np.zeros((len(SPECS), 3, 2, 8)))  # no random source
    with pytest.raises(MaskingError, match="one BlockScores per target"):
        masking.assemble_generalization([wrong] * len(SPECS), inputs)


# ------------------------------------------------------------------------------------------- devices, precision
def test_bfloat16_scoring_runs_on_the_cpu_close_to_float32():
    images, maps, labels = inputs()
    model = tiny_vgg()
    settings = dict(fractions=(0.0, 0.25, 0.5, 1.0), patch=4)
    single = masking.curves(model, images, labels, maps[0], **settings)
    half = masking.curves(model, images, labels, maps[0], precision="bfloat16", **settings)
    assert (single.attrs["precision"], half.attrs["precision"]) == ("float32", "bfloat16")
    scale = np.abs(single.output.values).max()
    np.testing.assert_allclose(half.output.values, single.output.values, rtol=0, atol=0.05 * scale)
    assert not np.array_equal(half.output.values, single.output.values)  # it did run in bfloat16


@pytest.mark.parametrize("options, error, message", [
    (dict(precision="float16"), MaskingError, "precision must be one of"),
    (dict(device="gpu:x"), DeviceError, "unknown device 'gpu:x'")])
def test_an_unknown_precision_or_device_is_rejected(options, error, message):
    images, maps, labels = inputs()
    with pytest.raises(error, match=message):
        masking.curves(tiny_vgg(), images, labels, maps[0], fractions=(0.0, 0.5), **options)


def test_masking_restores_each_module_s_own_training_flag_and_gradients():
    images, maps, labels = inputs()
    model = tiny_vgg().train()
    model.classifier[2].eval()  # a dropout left in evaluation mode by its owner
    model.features[0].weight.requires_grad_(False)
    masking.curves(model, images, labels, maps[0], fractions=(0.0, 0.5), patch=4)
    assert model.training and model.classifier[5].training and not model.classifier[2].training
    assert not model.features[0].weight.requires_grad and model.features[2].weight.requires_grad


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision", masking.PRECISIONS)
def test_curves_on_a_cuda_device_match_the_cpu(precision):
    images, maps, labels = inputs()
    settings = dict(fractions=(0.0, 0.25, 0.5, 1.0), patch=4, fill="noise", order="random")
    cpu = masking.curves(tiny_vgg(), images, labels, maps[0], **settings)
    cuda = masking.curves(tiny_vgg(), images, labels, maps[0], device="cuda", precision=precision, **settings)
    scale = np.abs(cpu.output.values).max()
    tolerance = 1e-2 if precision == "float32" else 0.05  # convolutions may run in TF32; or bfloat16
    np.testing.assert_allclose(cuda.output.values, cpu.output.values, rtol=0, atol=tolerance * scale)
