"""Relevance-based masking: perturbation, ROAD, curves, AOPC and cross-model generalisation.

The references below (a per-image, per-fraction loop, a per-pixel ROAD system, AOPC of a linear model) are written
here, independently of ``lrp_faces.masking``; only the documented random streams (``seeded_generator``, one generator
per image and stream) are shared.
"""
import numpy as np
import pytest
import scipy.integrate
import scipy.ndimage
import scipy.sparse
import torch
import xarray as xr
from hypothesis import given, settings, strategies as st
from scipy.sparse.linalg import spsolve
from torch import nn

import lrp_faces
from lrp_faces import masking
from lrp_faces.masking import MaskingError, MaskingTypeError, seeded_generator
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

from conftest import trained_scale

FAST = settings(max_examples=30, deadline=None)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def random_images(count=2, size=8, seed=0, dtype=torch.float32):
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def random_relevance(count=2, size=8, seed=1):
    return torch.randn(count, size, size, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------------------------------------- naive references
def naive_hidden(relevance, fraction, order, patch, mode, random_keys):
    """One image's hidden pixels: patches sorted with Python's sort on (-score, index), one fraction."""
    height, width = relevance.shape
    columns = width // patch
    scores = [float(np.sum(relevance[r * patch:(r + 1) * patch, c * patch:(c + 1) * patch], dtype=np.float64))
              for r in range(height // patch) for c in range(columns)]
    units = len(scores)
    if order == "random":
        ranked = sorted(range(units), key=lambda unit: (random_keys[unit], unit))
    else:
        ranked = sorted(range(units), key=lambda unit: (-scores[unit], unit))
        if order == "lerf":
            ranked = ranked[::-1]
    count = round(fraction * units)
    chosen = ranked[:count] if mode == "remove" else ranked[count:]  # keep: the first ``count`` stay
    hidden = np.zeros((height, width), dtype=bool)
    for unit in chosen:
        row, column = divmod(unit, columns)
        hidden[row * patch:(row + 1) * patch, column * patch:(column + 1) * patch] = True
    return hidden


def reference_road(image, hidden):
    """ROAD imputation of one image: a per-pixel loop builds the system, one spsolve per channel (float64)."""
    height, width = hidden.shape
    unknowns = [(y, x) for y in range(height) for x in range(width) if hidden[y, x]]
    number = {pixel: k for k, pixel in enumerate(unknowns)}
    result = np.array(image, dtype=np.float64)
    for channel in range(image.shape[0]):
        matrix = scipy.sparse.lil_matrix((len(unknowns), len(unknowns)))
        rhs = np.zeros(len(unknowns))
        for k, (y, x) in enumerate(unknowns):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if (dy, dx) == (0, 0) or not (0 <= ny < height and 0 <= nx < width):
                        continue
                    weight = 1 / 12 if dy and dx else 1 / 6
                    matrix[k, k] += weight
                    if hidden[ny, nx]:
                        matrix[k, number[(ny, nx)]] -= weight
                    else:
                        rhs[k] += weight * image[channel, ny, nx]
        result[channel][hidden] = spsolve(matrix.tocsc(), rhs)
    return result


def random_keys(count, units, seed):
    """Each image's random-order keys, from its own generator."""
    return np.stack([torch.rand(units, generator=seeded_generator(seed, "order", i), dtype=torch.float64).numpy()
                     for i in range(count)])


def naive_perturb(images, relevance, fractions, order, fill, patch, mode, seed=0, fill_value=None):
    """Per image, per fraction: the masked image, from naive_hidden and fills written out here."""
    count, _, height, width = images.shape
    units = (height // patch) * (width // patch)
    keys = random_keys(count, units, seed)
    colour = (torch.tensor(fill_value, dtype=torch.float64) if fill_value is not None
              else images.double().mean((0, 2, 3))).numpy()
    noise = torch.stack([torch.rand(images.shape[1:], generator=seeded_generator(seed, "noise", i), dtype=images.dtype)
                         for i in range(count)]).numpy()
    road_noise = 0.01 * torch.stack([torch.randn(images.shape[1:], generator=seeded_generator(seed, "road", i),
                                                 dtype=torch.float64) for i in range(count)])
    sigma = max(height, width) / 16
    result = np.empty((count, len(fractions)) + tuple(images.shape[1:]))
    for i in range(count):
        image = images[i].double().numpy()
        for j, fraction in enumerate(fractions):
            hidden = naive_hidden(relevance[i].numpy(), fraction, order, patch, mode, keys[i])
            if fill == "zero":
                filled = np.zeros_like(image)
            elif fill == "mean":
                filled = np.broadcast_to(colour[:, None, None], image.shape)
            elif fill == "blur":
                filled = np.stack([scipy.ndimage.gaussian_filter(channel, sigma, mode="nearest", truncate=3.0)
                                   for channel in image])
            elif fill == "noise":
                filled = noise[i]
            else:
                filled = (reference_road(image, hidden) if not hidden.all()
                          else np.broadcast_to(colour[:, None, None], image.shape)) + road_noise[i].numpy()
            result[i, j] = np.where(hidden[None], filled, image)
    return torch.from_numpy(result)


# ------------------------------------------------------------------------------------------------- perturbation
@pytest.mark.parametrize("mode", masking.MODES)
@pytest.mark.parametrize("patch", [1, 2])
@pytest.mark.parametrize("fill", masking.FILLS)
@pytest.mark.parametrize("order", masking.ORDERS)
def test_batched_perturbation_matches_a_naive_loop(order, fill, patch, mode):
    images, relevance = random_images(), random_relevance()
    relevance[0, :2, :2] = 0.5  # ties: broken by pixel index
    fractions = (0.0, 0.2, 0.55, 1.0)
    settings = dict(fractions=fractions, order=order, patch=patch, mode=mode, seed=3)
    batched = masking.perturb(images, relevance, fill=fill, batch_size=3, **settings)
    naive = naive_perturb(images, relevance, fractions, order, fill, patch, mode, seed=3)
    exact = fill in ("zero", "noise")
    torch.testing.assert_close(batched.double(), naive, rtol=0, atol=0 if exact else 2e-6)
    masks = masking.hidden_masks(relevance, **settings)
    keys = random_keys(2, 64 // patch ** 2, 3)
    for i in range(2):
        for j, fraction in enumerate(fractions):
            assert np.array_equal(masks[i, j].numpy(),
                                  naive_hidden(relevance[i].numpy(), fraction, order, patch, mode, keys[i]))


def test_a_given_mean_colour_is_used_exactly():
    images, relevance = random_images(), random_relevance()
    colour = (0.25, 0.5, 0.75)
    batched = masking.perturb(images, relevance, fractions=(0.3, 0.6), fill="mean", fill_value=colour)
    naive = naive_perturb(images, relevance, (0.3, 0.6), "morf", "mean", 1, "remove", fill_value=colour)
    assert torch.equal(batched.double(), naive)


def test_results_do_not_depend_on_the_batch_size():
    images, relevance = random_images(3), random_relevance(3)
    for fill in ("noise", "road"):
        one = masking.perturb(images, relevance, fractions=(0.1, 0.5, 0.9), order="random", fill=fill, batch_size=1)
        all_at_once = masking.perturb(images, relevance, fractions=(0.1, 0.5, 0.9), order="random", fill=fill,
                                      batch_size=100)
        assert torch.equal(one, all_at_once)


def test_perturbed_batches_yield_image_major_pairs_of_the_full_result():
    images, relevance = random_images(3), random_relevance(3)
    everything = masking.perturb(images, relevance, fractions=(0.2, 0.7), fill="noise")
    batches = list(masking.perturbed_batches(images, relevance, fractions=(0.2, 0.7), fill="noise", batch_size=4))
    assert [len(batch.images) for batch in batches] == [4, 2]
    assert torch.cat([batch.image_index for batch in batches]).tolist() == [0, 0, 1, 1, 2, 2]
    for batch in batches:
        assert torch.equal(batch.images, everything[batch.image_index, batch.fraction_index])


def test_a_masking_config_gives_the_keyword_arguments():
    config = masking.MaskingConfig(fractions=(0.0, 0.5), order="lerf", fill="blur", patch=2, blur_sigma=1.5)
    images, relevance = random_images(), random_relevance()
    assert torch.equal(masking.perturb(images, relevance, **config.to_dict()),
                       masking.perturb(images, relevance, fractions=(0.0, 0.5), order="lerf", fill="blur", patch=2,
                                       blur_sigma=1.5))
    assert torch.equal(masking.perturb(images, relevance, config),
                       masking.perturb(images, relevance, **config.to_dict()))


def test_keywords_override_the_fields_of_a_config():
    config = masking.MaskingConfig(fractions=(0.0, 0.5), order="lerf", fill="blur", patch=2)
    images, relevance = random_images(), random_relevance()
    assert torch.equal(masking.perturb(images, relevance, config, order="morf", fill="zero"),
                       masking.perturb(images, relevance, fractions=(0.0, 0.5), order="morf", fill="zero", patch=2))


@pytest.mark.parametrize("call", [
    lambda images, relevance: masking.perturb(images, relevance, (0.0, 0.5)),
    lambda images, relevance: masking.hidden_masks(relevance, "morf"),
])
def test_a_config_that_is_not_a_masking_config_is_rejected(call):
    with pytest.raises(MaskingTypeError, match="config must be a MaskingConfig.*keyword arguments"):
        call(random_images(), random_relevance())


def test_an_unknown_masking_setting_is_rejected_with_the_known_ones():
    with pytest.raises(MaskingTypeError, match=r"unknown masking setting\(s\) \['fractoins'\].*fractions, order"):
        masking.perturb(random_images(), random_relevance(), fractoins=(0.0, 0.5))


def test_a_new_masking_option_needs_only_a_config_field():
    """Every public masking function takes the config's fields as keywords through ``**overrides``."""
    import dataclasses
    import inspect
    fields = {field.name for field in dataclasses.fields(masking.MaskingConfig)}
    for function in (masking.perturb, masking.perturbed_batches, masking.hidden_masks, masking.curves,
                     masking.generalization, masking.own_map_curves, masking.generalization_inputs,
                     masking.own_map_inputs):
        parameters = inspect.signature(function).parameters
        assert "config" in parameters and any(p.kind is p.VAR_KEYWORD for p in parameters.values()), function
        assert not fields & set(parameters), (function, fields & set(parameters))


@pytest.mark.parametrize("fill", masking.FILLS)
def test_fraction_zero_is_the_original_and_one_hides_everything(fill):
    images, relevance = random_images(), random_relevance()
    masked = masking.perturb(images, relevance, fractions=(0.0, 1.0), fill=fill, road_noise=0.0)
    assert torch.equal(masked[:, 0], images)
    assert masking.hidden_masks(relevance, fractions=(0.0, 1.0))[:, 1].all()
    if fill in ("zero", "mean", "road"):  # a colour everywhere
        assert (masked[:, 1] == masked[:, 1, :, :1, :1]).all()


@pytest.mark.parametrize("fill", masking.FILLS)
def test_keep_at_fraction_one_is_the_original_and_at_zero_hides_everything(fill):
    images, relevance = random_images(), random_relevance()
    masked = masking.perturb(images, relevance, fractions=(0.0, 1.0), fill=fill, mode="keep", road_noise=0.0)
    assert torch.equal(masked[:, 1], images)
    assert masking.hidden_masks(relevance, fractions=(0.0, 1.0), mode="keep")[:, 0].all()


@pytest.mark.parametrize("order", masking.ORDERS)
def test_keep_keeps_exactly_what_remove_hides(order):
    relevance = random_relevance()
    settings = dict(fractions=np.linspace(0, 1, 9), order=order, patch=2, seed=4)
    assert torch.equal(masking.hidden_masks(relevance, mode="keep", **settings),
                       ~masking.hidden_masks(relevance, mode="remove", **settings))


def test_keep_with_morf_keeps_the_most_relevant_pixels():
    relevance = torch.arange(16.0).reshape(1, 4, 4)  # pixel 15 most relevant
    hidden = masking.hidden_masks(relevance, fractions=(0.25,), order="morf", mode="keep")[0, 0]
    kept = sorted(np.flatnonzero(~hidden.numpy().reshape(-1)).tolist())
    assert kept == [12, 13, 14, 15]


def test_gaussian_blur_matches_scipy():
    images = random_images(1, 12, dtype=torch.float64)
    for sigma in (0.7, 2.0, 6.0):  # a kernel wider than the image included
        expected = np.stack([scipy.ndimage.gaussian_filter(channel, sigma, mode="nearest", truncate=3.0)
                             for channel in images[0].numpy()])
        np.testing.assert_allclose(masking.gaussian_blur(images, sigma)[0].numpy(), expected, atol=1e-12)


# ------------------------------------------------------------------------------------------------ hypothesis
@st.composite
def maps_and_fractions(draw, patches=False):
    patch = draw(st.sampled_from([1, 2])) if patches else 1
    rows, columns = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    count = draw(st.integers(1, 3))
    values = draw(st.lists(st.integers(-3, 3), min_size=count * rows * columns * patch * patch,
                           max_size=count * rows * columns * patch * patch))  # small integers: many ties
    relevance = torch.tensor(values, dtype=torch.float32).reshape(count, rows * patch, columns * patch)
    fractions = sorted(set(draw(st.lists(st.floats(0, 1), min_size=1, max_size=6))))
    return relevance, fractions, patch


@FAST
@given(maps_and_fractions(), st.sampled_from(masking.ORDERS), st.sampled_from(masking.MODES))
def test_hidden_count_is_round_fraction_times_pixels(case, order, mode):
    relevance, fractions, _ = case
    pixels = relevance.shape[1] * relevance.shape[2]
    hidden = masking.hidden_masks(relevance, fractions=fractions, order=order, mode=mode)
    selected = [round(fraction * pixels) for fraction in fractions]  # hidden by remove, kept by keep
    expected = selected if mode == "remove" else [pixels - count for count in selected]
    assert hidden.sum((2, 3)).tolist() == [expected] * len(relevance)


@FAST
@given(maps_and_fractions(patches=True))
def test_morf_and_lerf_are_mirror_images(case):
    relevance, _, patch = case
    units = relevance.shape[1] * relevance.shape[2] // patch ** 2
    every_count = [count / units for count in range(units + 1)]
    morf = masking.hidden_masks(relevance, fractions=every_count, order="morf", patch=patch)
    lerf = masking.hidden_masks(relevance, fractions=every_count, order="lerf", patch=patch)
    for count in range(units + 1):
        assert torch.equal(lerf[:, count], ~morf[:, units - count])


@FAST
@given(maps_and_fractions(patches=True), st.sampled_from(masking.ORDERS), st.sampled_from(masking.MODES))
def test_hidden_sets_grow_with_the_fraction_and_kept_sets_with_the_fraction_kept(case, order, mode):
    relevance, fractions, patch = case
    hidden = masking.hidden_masks(relevance, fractions=fractions, order=order, patch=patch, mode=mode)
    growing = hidden if mode == "remove" else ~hidden
    assert not (growing[:, :-1] & ~growing[:, 1:]).any()


# ------------------------------------------------------------------------------------------------------- ROAD
def blob_masks(count, height, width, fraction=0.5, seed=0):
    """MoRF-like masks: the top ``fraction`` of a smooth random map, i.e. a few contiguous blobs."""
    generator = np.random.default_rng(seed)
    smooth = scipy.ndimage.gaussian_filter(generator.standard_normal((count, height, width)), (0, 3, 3))
    threshold = np.quantile(smooth.reshape(count, -1), 1 - fraction, axis=1)
    return smooth > threshold[:, None, None]


def assert_road_equals_reference(images, hidden, **kwargs):
    imputed = masking.road_impute(images, hidden, **kwargs)
    assert imputed.dtype == np.float64 and imputed.shape == images.shape
    for image, mask, result in zip(images, hidden, imputed):
        np.testing.assert_allclose(result, reference_road(image, mask), rtol=0, atol=1e-11)


@pytest.mark.parametrize("height, width", [(7, 9), (16, 16), (13, 30)])
def test_road_imputation_equals_a_scipy_reference_on_random_masks(height, width):
    generator = np.random.default_rng(height)
    images = generator.random((4, 3, height, width))
    hidden = generator.random((4, height, width)) < np.array([0.05, 0.2, 0.5, 0.9])[:, None, None]
    hidden[1, 0, :] = True  # a hidden border row
    hidden[2, :, -1] = True  # and column
    assert_road_equals_reference(images, hidden, cache=None)


def test_road_imputation_equals_a_scipy_reference_on_blob_masks():
    generator = np.random.default_rng(1)
    images = generator.random((3, 3, 40, 36))  # fronts spanning several rank-4 blocks of columns
    hidden = blob_masks(3, 40, 36, fraction=0.6)
    hidden[2, 8:32, 8:32] = True  # one large square hole
    assert_road_equals_reference(images, hidden, cache=None)


def test_road_imputes_hidden_corners_and_edges():
    images = np.random.default_rng(2).random((4, 3, 6, 5))
    hidden = np.zeros((4, 6, 5), dtype=bool)
    hidden[0, 0, 0] = hidden[0, -1, -1] = True  # two corners
    hidden[1, :, 0] = True  # the left edge
    hidden[2, 0, :] = hidden[2, :, -1] = True  # two edges meeting at a corner
    hidden[3, 1:, :] = True  # everything but the top row
    assert_road_equals_reference(images, hidden, cache=None)


def test_road_fills_everything_with_a_single_known_pixel():
    """With one known pixel the constant image solves every hidden pixel's equation: the weights sum to 1."""
    images = np.random.default_rng(3).random((2, 3, 20, 17))
    hidden = np.ones((2, 20, 17), dtype=bool)
    hidden[0, 11, 5] = hidden[1, 0, 16] = False  # inside, and in a corner
    imputed = masking.road_impute(images, hidden, cache=None)
    np.testing.assert_allclose(imputed[0], np.broadcast_to(images[0, :, 11:12, 5:6], (3, 20, 17)), rtol=0, atol=1e-10)
    np.testing.assert_allclose(imputed[1], np.broadcast_to(images[1, :, :1, 16:], (3, 20, 17)), rtol=0, atol=1e-10)


def test_road_returns_nan_where_everything_is_hidden_and_the_image_where_nothing_is():
    images = np.random.default_rng(4).random((3, 3, 5, 6))
    hidden = np.zeros((3, 5, 6), dtype=bool)
    hidden[0] = True
    hidden[2, 2, 3] = True
    imputed = masking.road_impute(images, hidden, cache=None)
    assert np.isnan(imputed[0]).all()
    assert np.array_equal(imputed[1], images[1])
    assert np.array_equal(imputed[2][:, ~hidden[2]], images[2][:, ~hidden[2]])
    assert np.isfinite(imputed[2]).all()


@pytest.mark.parametrize("channels", [1, 4])
def test_road_imputes_any_number_of_channels(channels):
    generator = np.random.default_rng(channels)
    images = generator.random((2, channels, 12, 14))
    assert_road_equals_reference(images, blob_masks(2, 12, 14, seed=channels), cache=None)


def test_road_results_are_deterministic_and_independent_of_the_batch():
    generator = np.random.default_rng(5)
    images, hidden = generator.random((5, 3, 24, 24)), blob_masks(5, 24, 24, seed=5)
    together = masking.road_impute(images, hidden, cache=None)
    assert np.array_equal(together, masking.road_impute(images, hidden, cache=None))
    for index in range(5):
        assert np.array_equal(masking.road_impute(images[index:index + 1], hidden[index:index + 1], None)[0],
                              together[index])


def test_road_reuses_the_factorisation_of_a_recurring_mask():
    cache = masking.RoadCache()
    generator = np.random.default_rng(1)
    images, hidden = generator.random((2, 3, 16, 16)), generator.random((2, 16, 16)) < 0.5
    first = masking.road_impute(images, hidden, cache)
    assert (cache.misses, cache.hits, len(cache)) == (2, 0, 0)  # seen once: not stored
    second = masking.road_impute(images, hidden, cache)
    assert (cache.misses, cache.hits, len(cache)) == (4, 0, 2)  # seen again: stored
    third = masking.road_impute(images[::-1] * 0.5, hidden, cache)  # same masks, other pixels
    assert (cache.misses, cache.hits, len(cache)) == (4, 2, 2)
    assert np.array_equal(first, second)
    assert np.array_equal(third[1], masking.road_impute(images[:1] * 0.5, hidden[1:], None)[0])
    np.testing.assert_allclose(first[0], reference_road(images[0], hidden[0]), rtol=0, atol=1e-11)
    small = masking.RoadCache(max_nonzeros=10)  # nothing fits
    for _ in range(2):
        masking.road_impute(images, hidden, small)
    assert len(small) == 0


def test_road_falls_back_to_superlu_without_numba(monkeypatch):
    from lrp_faces.masking import road
    generator = np.random.default_rng(6)
    images = generator.random((3, 3, 10, 11))
    hidden = generator.random((3, 10, 11)) < np.array([0.3, 0.7, 1.0])[:, None, None]
    monkeypatch.setattr(road, "numba", None)
    imputed = masking.road_impute(images, hidden, cache=None)
    for image, mask, result in zip(images[:2], hidden[:2], imputed[:2]):
        np.testing.assert_allclose(result, reference_road(image, mask), rtol=0, atol=1e-11)
    assert np.isnan(imputed[2]).all()


@pytest.mark.parametrize("images, hidden, message", [
    (np.zeros((2, 3, 4)), np.zeros((2, 3, 4), dtype=bool), "images must have shape"),
    (np.zeros((2, 3, 4, 5)), np.zeros((2, 5, 4), dtype=bool), "hidden must have shape"),
    (np.zeros((2, 3, 4, 5)), np.zeros((1, 4, 5), dtype=bool), "hidden must have shape"),
])
def test_road_rejects_masks_that_do_not_match_the_images(images, hidden, message):
    with pytest.raises(MaskingError, match=message):
        masking.road_impute(images, hidden)


def test_road_adds_seeded_gaussian_noise_of_the_given_size():
    images, relevance = random_images(4, 16, dtype=torch.float64), random_relevance(4, 16)
    clean = masking.perturb(images, relevance, fractions=(0.5,), fill="road", road_noise=0.0)
    noisy = masking.perturb(images, relevance, fractions=(0.5,), fill="road", road_noise=0.01, seed=5)
    difference = (noisy - clean)[masking.hidden_masks(relevance, fractions=(0.5,))[:, :, None].expand_as(noisy)]
    assert abs(float(difference.std()) - 0.01) < 0.001
    assert torch.equal(noisy, masking.perturb(images, relevance, fractions=(0.5,), fill="road", road_noise=0.01,
                                              seed=5))


# ------------------------------------------------------------------------------------------------------ curves
class LinearOnPixels(nn.Module):
    """Two classes whose logits are -e and +e, with e the weighted sum of the pixels: it sees only pixels."""

    def __init__(self, weights: torch.Tensor):
        super().__init__()
        self.weights = nn.Parameter(weights, requires_grad=False)
        self.calls = []

    def forward(self, images):
        self.calls.append(len(images))
        evidence = (images * self.weights).sum((1, 2, 3))
        return torch.stack([-evidence, evidence], 1)


def linear_case(count=6, size=12):
    weights = torch.randn(size, size, generator=torch.Generator().manual_seed(7))
    images = random_images(count, size, seed=8)
    relevance = weights * images.sum(1)  # each pixel's exact share of the evidence
    return LinearOnPixels(weights), images, torch.ones(count, dtype=torch.long), relevance


@pytest.mark.parametrize("patch", [1, 2])
def test_morf_hurts_a_pixel_model_more_than_random_and_random_more_than_lerf(patch):
    model, images, labels, relevance = linear_case()
    drop = {order: float(masking.curves(model, images, labels, relevance, fractions=np.linspace(0, 1, 11),
                                        order=order, fill="zero", patch=patch).mean_aopc_output)
            for order in masking.ORDERS}
    assert drop["morf"] > drop["random"] > drop["lerf"]


def test_aopc_of_a_linear_model_is_the_relevance_removed():
    model, images, labels, relevance = linear_case()
    fractions = (0.0, 0.1, 0.25, 0.5)
    result = masking.curves(model, images, labels, relevance, fractions=fractions, order="morf", fill="zero")
    removed = [[float(image.flatten().sort(descending=True).values[:round(f * image.numel())].sum())
                for image in relevance] for f in fractions[1:]]
    # the contrastive output of two classes is z_1 - z_0 = 2 e; hiding pixels with 0 removes their share of e
    np.testing.assert_allclose(result.aopc_output.values, 2 * np.mean(removed, axis=0), rtol=1e-4, atol=1e-4)


def test_curves_score_the_masked_images_and_never_repeat_the_unmasked_pass():
    model, images, labels, relevance = linear_case(count=5)
    fractions = (0.0, 0.099, 0.1, 0.5, 1.0)  # 0.099 and 0.1 both hide 14 of 144 pixels: one forward pass
    result = masking.curves(model, images, labels, relevance, fractions=fractions, fill="blur", batch_size=4)
    # 2 passes for the 5 unmasked images, 4 for the 5 x 3 distinct masked ones; every pass has batch_size rows
    assert model.calls == [4] * (2 + 4)
    masked = masking.perturb(images, relevance, fractions=fractions, fill="blur")
    logits = model(masked.flatten(0, 1)).view(5, len(fractions), 2).double()
    expected_output = (logits[..., 1] - logits[..., 0]).T
    np.testing.assert_allclose(result.output.values, expected_output.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(result.probability.values, torch.softmax(logits, -1)[..., 1].T.numpy(), atol=1e-6)
    assert np.array_equal(result.correct.values, (logits.argmax(-1) == 1).T.numpy())
    accuracy = result.correct.values.mean(1)
    assert np.isclose(float(result.accuracy_auc), scipy.integrate.trapezoid(accuracy, fractions))
    assert result.hidden_units.values.tolist() == [0, 14, 14, 72, 144]


@pytest.mark.parametrize("order", masking.ORDERS)
def test_keep_curves_and_their_aopc_match_a_naive_loop(order):
    model, images, labels, relevance = linear_case(count=4)
    fractions = (0.0, 0.25, 0.5, 1.0)
    result = masking.curves(model, images, labels, relevance, fractions=fractions, order=order, fill="blur",
                            mode="keep", seed=2)
    masked = naive_perturb(images, relevance, fractions, order, "blur", 1, "keep", seed=2)  # (N, F, 3, H, W)
    with torch.no_grad():
        evidence = (masked * model.weights.double()).sum((2, 3, 4)).numpy()  # (N, F)
        original = (images.double() * model.weights.double()).sum((1, 2, 3)).numpy()
    output, unmasked = 2 * evidence, 2 * original  # the contrastive output of two classes is 2 e
    np.testing.assert_allclose(result.output.values, output.T, rtol=1e-5, atol=1e-4)
    # AOPC of keep curves: the mean over the fractions < 1 of f(masked) - f(original), higher is better
    expected = np.mean([output[:, j] - unmasked for j, fraction in enumerate(fractions) if fraction < 1], axis=0)
    np.testing.assert_allclose(result.aopc_output.values, expected, rtol=1e-5, atol=1e-4)
    assert result.hidden_units.values.tolist() == [144, 108, 72, 0]


@pytest.mark.parametrize("patch", [1, 2])
def test_a_map_that_keeps_the_evidence_scores_a_higher_keep_aopc(patch):
    model, images, labels, relevance = linear_case()
    score = {order: float(masking.curves(model, images, labels, relevance, fractions=np.linspace(0, 1, 11),
                                         order=order, fill="zero", patch=patch, mode="keep").mean_aopc_output)
             for order in masking.ORDERS}
    assert score["morf"] > score["random"] > score["lerf"]


def test_results_state_the_aopc_they_hold():
    model, images, labels, relevance = linear_case(count=2)
    removed, kept = (masking.curves(model, images, labels, relevance, fractions=(0.0, 0.5, 1.0), mode=mode)
                     for mode in masking.MODES)
    assert "fractions > 0 of f(original) - f(masked)" in removed.attrs["aopc"]
    assert "fractions < 1 of f(masked) - f(original)" in kept.attrs["aopc"]
    assert "better map scores higher" in removed.attrs["aopc"] and "better map scores higher" in kept.attrs["aopc"]


def test_aopc_needs_a_step_that_hides_something():
    model, images, labels, relevance = linear_case(count=2)
    with pytest.raises(MaskingError, match="at least one value < 1 for AOPC with mode='keep'"):
        masking.curves(model, images, labels, relevance, fractions=(1.0,), mode="keep")
    with pytest.raises(MaskingError, match="at least one value > 0 for AOPC with mode='remove'"):
        masking.curves(model, images, labels, relevance, fractions=(0.0,))


# ----------------------------------------------------------------------------------------------- generalisation
SPECS = [ModelSpec(pretraining, task, seed) for pretraining in ("objects", "faces")
         for task in ("gender", "identity") for seed in (0, 1)]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A hand-built cube over 8 tiny models, their zoo and the faces."""
    folder = tmp_path_factory.mktemp("zoo")
    faces = lrp_faces.faces.synthetic_faces(4, 3, size=32)
    entries = []
    for index, spec in enumerate(SPECS):
        torch.manual_seed(index)
        model = lrp_faces.vgg16(faces.num_classes(spec.task), width=1 / 8, pool_size=2, classifier_width=16)
        trained_scale(model, torch.Generator().manual_seed(index))
        entries.append(ZooEntry(spec, save_model(model.eval(), folder / f"{spec.name}.pt", spec=spec)))
    generator = np.random.default_rng(0)
    smooth = scipy.ndimage.gaussian_filter(generator.standard_normal((2, 2, 2, 12, 32, 32)), (0, 0, 0, 0, 3, 3))
    cube = xr.Dataset({"relevance": (masking.MODEL_DIMS + ("image", "y", "x"), smooth.astype(np.float32))},
                      coords={"pretraining": ["objects", "faces"], "task": ["gender", "identity"], "seed": [0, 1],
                              "image": faces.image_ids, "identity": ("image", faces.identity),
                              "gender": ("image", faces.gender)})
    return cube, Zoo(entries, image_size=32), faces


@pytest.fixture(scope="module")
def transfer(study):
    cube, zoo, faces = study
    return masking.generalization(cube, zoo, faces, fractions=np.linspace(0, 1, 6), patch=4, n_bootstrap=200,
                                  n_permutations=200, progress=False)


def square(variable):
    return variable.values.reshape(len(SPECS), len(SPECS))


def test_generalization_index_is_one_on_the_diagonal(transfer):
    assert np.array_equal(np.diag(square(transfer.generalization_index)), np.ones(len(SPECS)))


def test_asymmetry_is_antisymmetric(transfer):
    asymmetry = square(transfer.asymmetry)
    assert np.array_equal(asymmetry, -asymmetry.T)
    p_values = square(transfer.asymmetry_p_value)
    assert np.array_equal(p_values, p_values.T) and ((0 <= p_values) & (p_values <= 1)).all()


def test_generalization_index_follows_its_definition(transfer):
    aopc, random = square(transfer.aopc), transfer.random_aopc.values.reshape(-1)
    own = np.diag(aopc)
    np.testing.assert_allclose(square(transfer.generalization_index), (aopc - random) / (own - random), rtol=1e-12)
    np.testing.assert_allclose(aopc, square(transfer.aopc_output.mean("image")), rtol=1e-12)
    assert (square(transfer.aopc_ci_low) <= aopc).all() and (aopc <= square(transfer.aopc_ci_high)).all()


def test_targets_are_scored_on_their_own_task(study, transfer):
    cube, zoo, faces = study
    for spec in (ModelSpec("faces", "gender", 1), ModelSpec("objects", "identity", 0)):
        with torch.inference_mode():
            predictions = zoo[spec](faces.images).argmax(1).numpy()
        scored = transfer.unmasked_correct.sel(target_pretraining=spec.pretraining, target_task=spec.task,
                                               target_seed=spec.seed).values
        assert np.array_equal(scored, predictions == faces.labels(spec.task))


def test_summary_groups_pairs_by_relation(transfer):
    assert dict(zip(masking.RELATIONS, transfer.summary_pairs.values.tolist())) == {
        "same_model": 8, "same_cell_different_seed": 8, "different_task": 16, "different_pretraining": 16,
        "both_different": 16}
    relation = transfer.pair_relation.sel(source_pretraining="faces", source_task="gender", source_seed=0)
    assert relation.sel(target_pretraining="objects", target_task="gender", target_seed=1) == "different_pretraining"
    assert transfer.summary_generalization_index.sel(relation="same_model") == 1.0


def test_own_map_curves_are_curves_of_each_model_on_its_own_maps(study):
    cube, zoo, faces = study
    small = dict(fractions=(0.0, 0.25, 0.5), patch=4, fill="blur")
    result = masking.own_map_curves(cube, zoo, faces, **small)
    assert result["correct"].dims == masking.MODEL_DIMS + ("fraction", "image")
    assert result.attrs["order"] == "lerf" and result.attrs["n_models"] == len(SPECS)
    for spec in SPECS[::3]:
        maps = cube.relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed).values
        expected = masking.curves(zoo[spec], faces.images, faces.labels(spec.task), maps, order="lerf",
                                  image_ids=faces.image_ids, **small).reset_coords("label")
        one = result.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed, drop=True)
        xr.testing.assert_identical(one.drop_attrs(), expected.drop_attrs())


def test_own_map_curves_of_a_ragged_cube_are_nan_for_the_missing_model(study):
    cube, zoo, faces = study
    small = dict(fractions=(0.0, 0.5), patch=4, order="morf")
    missing = SPECS[1]  # objects/gender/1
    where = dict(pretraining=missing.pretraining, task=missing.task, seed=missing.seed)
    ragged = cube.copy(deep=True)
    ragged["relevance"].loc[where] = np.nan
    computed = xr.ones_like(cube.relevance.isel(image=0, y=0, x=0, drop=True), dtype=bool)
    computed.loc[where] = False
    ragged = ragged.assign_coords(computed=computed)
    partial = Zoo([entry for spec, entry in zoo.entries.items() if spec != missing], image_size=32)
    result = masking.own_map_curves(ragged, partial, faces, **small)
    full = masking.own_map_curves(cube, zoo, faces, **small)
    assert result.attrs["n_models"] == len(SPECS) - 1 and "computed" in result.coords
    gap = result.sel(where)
    assert (gap["label"] == -1).all() and result["correct"].dtype == np.float64
    for name in ("correct", "output", "accuracy", "aopc_output", "mean_aopc_output", "accuracy_auc"):
        assert gap[name].isnull().all(), name
    others = [spec for spec in SPECS if spec != missing]
    for spec in others:
        at = dict(pretraining=spec.pretraining, task=spec.task, seed=spec.seed)
        xr.testing.assert_equal(result.sel(at).drop_vars("computed").astype(float),
                                full.sel(at).astype(float))
    accuracy = result["correct"].mean(("image", "seed")).sel(pretraining="objects", task="gender")  # skips seed 1
    kept = full["correct"].sel(pretraining="objects", task="gender", seed=0)
    np.testing.assert_allclose(accuracy, kept.mean("image"))


# ---------------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("arguments, message", [
    (dict(relevance=torch.zeros(2, 8, 7)), "relevance has shape"),
    (dict(relevance=torch.full((2, 8, 8), float("nan"))), "NaN"),
    (dict(fractions=(0.0, 1.5)), "in \\[0, 1\\]"),
    (dict(fractions=(0.5, 0.2)), "strictly increasing"),
    (dict(order="most"), "order must be one of"),
    (dict(fill="gray"), "fill must be one of"),
    (dict(mode="drop"), "mode must be one of"),
    (dict(patch=3), "patch=3 does not divide"),
    (dict(fill="zero", fill_value=0.5), "fill_value"),
])
def test_bad_perturbation_input_is_rejected_with_a_clear_error(arguments, message):
    call = dict(images=random_images(), relevance=random_relevance(), fractions=(0.0, 0.5))
    with pytest.raises(MaskingError, match=message):
        masking.perturb(**{**call, **arguments})


def test_bad_curve_input_is_rejected():
    model, images, labels, relevance = linear_case()
    with pytest.raises(MaskingError, match="labels has 2 entries"):
        masking.curves(model, images, labels[:2], relevance)
    with pytest.raises(MaskingTypeError, match="integer class indices"):
        masking.curves(model, images, labels.float(), relevance)
    with pytest.raises(MaskingError, match="labels go up to 5"):
        masking.curves(model, images, labels * 5, relevance)
    with pytest.raises(MaskingTypeError, match="relevance must be"):
        masking.curves(model, images, labels, "relevance")
    assert issubclass(MaskingError, ValueError) and issubclass(MaskingTypeError, TypeError)


def test_cube_and_zoo_that_disagree_are_rejected(study):
    cube, zoo, faces = study
    small = dict(fractions=(0.0, 0.5), progress=False)
    partial = Zoo([entry for spec, entry in zoo.entries.items() if spec != SPECS[3]], image_size=32)
    with pytest.raises(MaskingError, match="missing from the zoo: objects-identity-seed1"):
        masking.generalization(cube, partial, faces, **small)
    renamed = cube.assign_coords(image=["stranger"] + faces.image_ids[1:])
    with pytest.raises(MaskingError, match="not in the dataset: \\['stranger'\\]"):
        masking.generalization(renamed, zoo, faces, **small)
    relabelled = cube.assign_coords(gender=("image", 1 - faces.gender))
    with pytest.raises(MaskingError, match="'gender' labels disagree"):
        masking.generalization(relabelled, zoo, faces, **small)
    holes = cube.copy(deep=True)
    holes.relevance[0, 1, 0, 2, 5, 5] = np.nan
    with pytest.raises(MaskingError, match="relevance of objects-identity-seed0 contains NaN"):
        masking.generalization(holes, zoo, faces, **small)
    with pytest.raises(MaskingError, match="order must be 'morf' or 'lerf'"):
        masking.generalization(cube, zoo, faces, order="random", **small)


def test_non_finite_maps_are_named_with_why_they_happen(study):
    cube, zoo, faces = study
    small = dict(fractions=(0.0, 0.5), progress=False)
    holes = cube.copy(deep=True)
    holes.relevance[0, 1, 0, 2, 5, 5] = np.inf
    with pytest.raises(MaskingError) as raised:
        masking.generalization(holes, zoo, faces, **small)
    message = str(raised.value)
    assert message.startswith("relevance of objects-identity-seed0 contains NaN or Inf values: the maps themselves "
                              "are not finite")
    assert "epsilon = 0" in message and "incomplete cube" not in message
    where = dict(pretraining="objects", task="identity", seed=0)
    ragged = cube.copy(deep=True)
    ragged["relevance"].loc[where] = np.nan
    computed = xr.ones_like(cube.relevance.isel(image=0, y=0, x=0, drop=True), dtype=bool)
    computed.loc[where] = False
    with pytest.raises(MaskingError, match="the cube has no maps of objects-identity-seed0 \\(it has not computed "
                                           "them\\).*compute them first"):
        masking.generalization(ragged.assign_coords(computed=computed), zoo, faces, **small)
