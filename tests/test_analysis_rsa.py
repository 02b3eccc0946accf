"""RSA against human dissimilarities: correlations, permutation p-values, bootstrap CIs, noise ceilings, model RDMs
and human ratings files, each checked against references written here (scipy, numpy, naive loops)."""
import csv
import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.stats
import torch
import xarray as xr

from lrp_faces.analysis import (STAND_IN_SOURCE, HumanRatingsError, RSAError, RSATypeError, RSAWarning,
                                compare_with_humans, load_human_rdm, model_rdms, penultimate_features,
                                rdm_from_features, rsa, stand_in_human_rdm)
from lrp_faces.analysis.rsa import _bootstrap_indices
from lrp_faces.faces import parameter_dissimilarity, synthetic_faces
from lrp_faces.zoo import ModelSpec

from conftest import small_vgg

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SCIPY = {"spearman": scipy.stats.spearmanr, "pearson": scipy.stats.pearsonr, "kendall": scipy.stats.kendalltau}
SIZE = 32


# ------------------------------------------------------------------------------------------------ references
def image_ids(count):
    return [f"img{k:02d}" for k in range(count)]


def upper_triangle(matrix):
    return matrix[np.triu_indices(len(matrix), 1)]


def symmetric(vector, count):
    """A symmetric matrix with a zero diagonal from its upper triangle (row-major)."""
    matrix = np.zeros((count, count))
    for value, (a, b) in zip(vector, itertools.combinations(range(count), 2)):
        matrix[a, b] = matrix[b, a] = value
    return matrix


def correlation_rdm(rng, count, dims=6):
    """1 - Pearson between random feature vectors, made exactly symmetric (np.corrcoef is only up to rounding)."""
    rdm = 1.0 - np.corrcoef(rng.normal(size=(count, dims)))
    return (rdm + rdm.T) / 2


def as_rdm(matrix, ids=None):
    ids = ids or image_ids(len(matrix))
    return xr.DataArray(matrix, dims=("image_a", "image_b"), coords={"image_a": ids, "image_b": ids})


def noisy_raters(rng, truth, raters, noise):
    """Rater RDMs: the true upper triangle plus independent Gaussian noise per rater and pair."""
    count = len(truth)
    vector = upper_triangle(truth)
    return np.stack([symmetric(vector + noise * rng.normal(size=vector.shape), count) for _ in range(raters)])


# ------------------------------------------------------------------------------------------------ correlation
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_correlation_equals_scipy_on_upper_triangles(method):
    rng = np.random.default_rng(0)
    model, human = correlation_rdm(rng, 9), correlation_rdm(rng, 9)
    human[0, 1] = human[1, 0] = human[0, 2] = human[2, 0]  # a tie
    result = rsa(model, human, method=method, n_permutations=0, n_bootstrap=0)
    expected = SCIPY[method](upper_triangle(model), upper_triangle(human)).statistic
    assert result.correlation == pytest.approx(expected, abs=1e-12)
    assert result.method == method and result.n_images == 9
    assert math.isnan(result.p_value) and math.isnan(result.ci_low) and math.isnan(result.ci_high)


def test_rsa_matches_model_images_to_human_images_by_id():
    rng = np.random.default_rng(1)
    human = correlation_rdm(rng, 6)
    model_all = correlation_rdm(rng, 9)  # images img00 .. img08; the human rated img02 .. img07
    ids = image_ids(9)
    order = rng.permutation(9)
    shuffled = as_rdm(model_all[np.ix_(order, order)], [ids[k] for k in order])
    result = rsa(shuffled, as_rdm(human, ids[2:8]), n_permutations=0, n_bootstrap=0)
    expected = scipy.stats.spearmanr(upper_triangle(model_all[2:8, 2:8]), upper_triangle(human)).statistic
    assert result.correlation == pytest.approx(expected, abs=1e-12)
    assert result.n_images == 6


# ------------------------------------------------------------------------------------------ permutation test
def test_permutation_p_value_is_calibrated_under_the_null():
    p_values = []
    for seed in range(40):
        rng = np.random.default_rng(100 + seed)
        model, human = correlation_rdm(rng, 8), correlation_rdm(rng, 8)
        p_values.append(rsa(model, human, n_permutations=99, n_bootstrap=0, seed=seed).p_value)
    p_values = np.array(p_values)
    assert ((p_values > 0) & (p_values <= 1)).all()
    assert 0.05 <= (p_values < 0.2).mean() <= 0.4
    assert 0.25 <= (p_values < 0.5).mean() <= 0.75


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_permutation_p_value_is_small_for_a_strongly_related_pair(method):
    rng = np.random.default_rng(2)
    model = correlation_rdm(rng, 12)
    human = symmetric(upper_triangle(model) + 0.05 * rng.normal(size=66), 12)
    result = rsa(model, human, method=method, n_permutations=199, n_bootstrap=0)
    assert result.p_value == pytest.approx(1 / 200)


@pytest.mark.parametrize("alternative", ["two-sided", "greater"])
def test_permutation_p_value_approaches_exact_enumeration(alternative):
    rng = np.random.default_rng(3)
    count = 5
    model, human = correlation_rdm(rng, count), correlation_rdm(rng, count)
    observed = scipy.stats.spearmanr(upper_triangle(model), upper_triangle(human)).statistic
    permuted = []
    for order in itertools.permutations(range(count)):
        order = np.array(order)
        permuted.append(scipy.stats.spearmanr(upper_triangle(model),
                                              upper_triangle(human[np.ix_(order, order)])).statistic)
    permuted = np.array(permuted)
    if alternative == "two-sided":
        exact = np.mean(np.abs(permuted) >= abs(observed) - 1e-12)
    else:
        exact = np.mean(permuted >= observed - 1e-12)
    result = rsa(model, human, n_permutations=20000, n_bootstrap=0, alternative=alternative)
    assert result.p_value == pytest.approx(exact, abs=0.012)


# ------------------------------------------------------------------------------------------------ bootstrap
@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
@pytest.mark.parametrize("rating_scale", [None, 4])
def test_bootstrap_ci_equals_a_naive_resampling_loop_without_self_pairs(method, rating_scale):
    rng = np.random.default_rng(4)
    count, n_bootstrap = 7, 60
    model, human = correlation_rdm(rng, count), correlation_rdm(rng, count)
    if rating_scale:  # ratings on a few levels: many ties between different pairs
        human = np.round(human * rating_scale)
    result = rsa(model, human, method=method, n_permutations=0, n_bootstrap=n_bootstrap, seed=5, confidence=0.9)
    statistics = []
    for images in _bootstrap_indices(count, n_bootstrap, 5):
        pairs = [(images[a], images[b]) for a in range(count) for b in range(a + 1, count) if images[a] != images[b]]
        x = np.array([model[i, j] for i, j in pairs])
        y = np.array([human[i, j] for i, j in pairs])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = SCIPY[method](x, y).statistic if len(pairs) > 1 else np.nan
        statistics.append(value)
    statistics = np.array(statistics)
    statistics = statistics[np.isfinite(statistics)]
    assert result.ci_low == pytest.approx(np.quantile(statistics, 0.05), abs=1e-10)
    assert result.ci_high == pytest.approx(np.quantile(statistics, 0.95), abs=1e-10)


def test_bootstrap_ci_brackets_the_estimate_and_narrows_with_more_images():
    widths = []
    for count in (10, 40):
        rng = np.random.default_rng(6)
        features = rng.normal(size=(count, 8))
        model = 1.0 - np.corrcoef(features)
        human = 1.0 - np.corrcoef(features + rng.normal(size=features.shape))
        result = rsa(model, human, n_permutations=0, n_bootstrap=300)
        assert result.ci_low < result.correlation < result.ci_high
        widths.append(result.ci_high - result.ci_low)
    assert widths[1] < widths[0]


# ----------------------------------------------------------------------------------------------- noise ceiling
def test_noise_ceiling_matches_the_analytic_expectation_for_pearson():
    rng = np.random.default_rng(7)
    count, raters, noise = 40, 6, 1.0
    truth = symmetric(rng.normal(size=count * (count - 1) // 2), count)
    ratings = noisy_raters(rng, truth, raters, noise)
    result = rsa(truth, ratings, method="pearson", n_permutations=0, n_bootstrap=0)
    signal = upper_triangle(truth).var()
    noise_var = noise ** 2
    upper = math.sqrt((signal + noise_var / raters) / (signal + noise_var))
    lower = signal / math.sqrt((signal + noise_var) * (signal + noise_var / (raters - 1)))
    true_model = math.sqrt(signal / (signal + noise_var))
    assert result.noise_ceiling_upper == pytest.approx(upper, abs=0.04)
    assert result.noise_ceiling_lower == pytest.approx(lower, abs=0.04)
    assert result.rater_correlation == pytest.approx(true_model, abs=0.04)
    assert result.noise_ceiling_lower < result.rater_correlation < result.noise_ceiling_upper
    assert result.n_raters == raters


def test_noise_ceiling_rises_as_rater_noise_falls():
    bounds = []
    for noise in (2.0, 1.0, 0.3):
        rng = np.random.default_rng(8)
        truth = correlation_rdm(rng, 20)
        ratings = noisy_raters(rng, truth, 5, noise * upper_triangle(truth).std())
        result = rsa(truth, ratings, n_permutations=0, n_bootstrap=0)
        assert result.noise_ceiling_lower < result.noise_ceiling_upper
        assert result.noise_ceiling_lower - 0.03 < result.rater_correlation < result.noise_ceiling_upper + 0.03
        bounds.append((result.noise_ceiling_lower, result.noise_ceiling_upper))
    lower, upper = np.array(bounds).T
    assert (np.diff(lower) > 0).all() and (np.diff(upper) > 0).all()
    assert upper[-1] > 0.9


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_noise_ceiling_equals_its_definition_on_transformed_rater_means(method):
    rng = np.random.default_rng(9)
    truth = correlation_rdm(rng, 8)
    ratings = noisy_raters(rng, truth, 4, 0.3)
    vectors = np.array([upper_triangle(rating) for rating in ratings])
    if method == "pearson":
        transformed = np.array([(v - v.mean()) / v.std() for v in vectors])
    else:
        transformed = np.array([scipy.stats.rankdata(v) for v in vectors])
    upper = np.mean([SCIPY[method](v, transformed.mean(0)).statistic for v in vectors])
    lower = np.mean([SCIPY[method](v, np.delete(transformed, s, 0).mean(0)).statistic for s, v in enumerate(vectors)])
    model = correlation_rdm(rng, 8)
    result = rsa(model, ratings, method=method, n_permutations=0, n_bootstrap=0)
    assert result.noise_ceiling_upper == pytest.approx(upper, abs=1e-12)
    assert result.noise_ceiling_lower == pytest.approx(lower, abs=1e-12)
    # the comparison itself uses the raters' mean RDM
    assert result.correlation == pytest.approx(
        SCIPY[method](upper_triangle(model), vectors.mean(0)).statistic, abs=1e-12)
    assert result.rater_correlation == pytest.approx(
        np.mean([SCIPY[method](upper_triangle(model), v).statistic for v in vectors]), abs=1e-12)


def test_noise_ceiling_is_nan_without_two_raters():
    rng = np.random.default_rng(10)
    model, human = correlation_rdm(rng, 6), correlation_rdm(rng, 6)
    for given in (human, human[None]):
        result = rsa(model, given, n_permutations=0, n_bootstrap=0)
        assert math.isnan(result.noise_ceiling_lower) and math.isnan(result.noise_ceiling_upper)
        assert math.isnan(result.rater_correlation)


# ------------------------------------------------------------------------------------------------ bad input
def test_rsa_rejects_bad_rdms_and_settings():
    rng = np.random.default_rng(11)
    good = correlation_rdm(rng, 5)
    asymmetric = good.copy()
    asymmetric[1, 3] += 0.5
    with pytest.raises(RSAError, match=r"not symmetric.*\(1, 3\)"):
        rsa(good, asymmetric, n_permutations=0, n_bootstrap=0)
    diagonal = good + np.eye(5)
    with pytest.raises(RSAError, match="non-zero diagonal"):
        rsa(diagonal, good, n_permutations=0, n_bootstrap=0)
    with_nan = good.copy()
    with_nan[0, 4] = with_nan[4, 0] = np.nan
    with pytest.raises(RSAError, match=r"NaN.*\(0, 4\)"):
        rsa(with_nan, good, n_permutations=0, n_bootstrap=0)
    with pytest.raises(RSAError, match="at least 3"):
        rsa(good[:2, :2], good[:2, :2])
    with pytest.raises(RSAError, match="same images"):
        rsa(good[:4, :4], good)
    with pytest.raises(RSAError, match="constant"):
        rsa(symmetric(np.ones(10), 5), good, n_permutations=0, n_bootstrap=0)
    with pytest.raises(RSAError, match="missing from model_rdm: img07"):
        rsa(as_rdm(good), as_rdm(good, image_ids(4) + ["img07"]))
    with pytest.raises(RSAError, match="method"):
        rsa(good, good, method="cosine")
    with pytest.raises(RSAError, match="n_permutations"):
        rsa(good, good, n_permutations=-1)
    with pytest.raises(RSATypeError, match="DataArray or an array"):
        rsa("model.csv", good)


# ----------------------------------------------------------------------------------------------- model RDMs
def test_rdm_from_features_equals_one_minus_corrcoef():
    rng = np.random.default_rng(12)
    features = rng.normal(size=(7, 3, 4, 4)).astype(np.float32)
    rdm = rdm_from_features(torch.from_numpy(features), image_ids(7))
    expected = 1.0 - np.corrcoef(features.reshape(7, -1).astype(np.float64))
    np.testing.assert_allclose(rdm.values, expected, atol=1e-12)
    assert rdm.dims == ("image_a", "image_b") and list(rdm.image_a.values) == image_ids(7)
    assert (np.diag(rdm.values) == 0).all()


def test_rdm_from_features_gives_nan_for_constant_features_and_rejects_bad_input():
    features = np.random.default_rng(13).normal(size=(4, 5))
    features[2] = 0.0
    rdm = rdm_from_features(features, image_ids(4)).values
    assert np.isnan(rdm[2, [0, 1, 3]]).all() and np.isfinite(rdm[[0, 1, 3]][:, [0, 1, 3]]).all()
    with pytest.raises(RSAError, match="one row per image id"):
        rdm_from_features(features, image_ids(3))
    features[1, 1] = np.inf
    with pytest.raises(RSAError, match="img01"):
        rdm_from_features(features, image_ids(4))


def manual_penultimate(model, images):
    """The forward pass written out: PixelNorm, features, avgpool, flatten, all but the last classifier layer."""
    with torch.no_grad():
        hidden = model.avgpool(model.features(model.pixel_norm(images)))
        return model.classifier[:-1](torch.flatten(hidden, 1)).double().numpy()


def test_penultimate_features_are_the_input_of_the_last_linear_in_eval_mode():
    model = small_vgg(num_classes=3, seed=1)
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    model.train()  # dropout active: the hook must switch to evaluation mode and back
    features = penultimate_features(model, images, batch_size=2)
    assert model.training
    model.eval()
    np.testing.assert_allclose(features, manual_penultimate(model, images), rtol=1e-6, atol=1e-6)
    assert features.shape == (5, model.classifier[-1].in_features)
    with pytest.raises(RSATypeError, match="classifier"):
        penultimate_features(torch.nn.Linear(3, 2), images)


def test_penultimate_features_are_the_models_own_penultimate_activations():
    model = small_vgg(num_classes=3, seed=2)
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = model.penultimate(images).double().numpy()
    np.testing.assert_array_equal(penultimate_features(model, images, batch_size=5), expected)


class WrappedVGG(torch.nn.Module):
    """A VGG-like model without ``penultimate``: a classifier ending in a Linear, as torchvision's VGG has."""

    def __init__(self, model):
        super().__init__()
        self.model, self.classifier = model, model.classifier

    def forward(self, images):
        return self.model(images)


def test_penultimate_features_of_a_vgg_like_model_are_the_input_of_its_last_linear():
    model = small_vgg(num_classes=3, seed=2)
    images = torch.rand(5, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    np.testing.assert_array_equal(penultimate_features(WrappedVGG(model), images, batch_size=2),
                                  penultimate_features(model, images, batch_size=2))


def test_penultimate_features_restore_each_modules_own_training_flag():
    model = small_vgg(num_classes=3, seed=1).train()
    dropout = next(module for module in model.classifier if isinstance(module, torch.nn.Dropout))
    dropout.eval()
    penultimate_features(model, torch.rand(2, 3, SIZE, SIZE))
    assert model.training and model.classifier.training and not dropout.training
    assert all(parameter.requires_grad for parameter in model.parameters())


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(4, 2, size=SIZE)


@pytest.fixture(scope="module")
def tiny_study(faces):
    """An in-memory cube in the cube layout (two seeds, six of the eight images in a shuffled order) and its zoo."""
    rng = np.random.default_rng(14)
    order = rng.permutation(len(faces))[:6]
    ids = [faces.image_ids[k] for k in order]
    relevance = rng.normal(size=(1, 1, 2, 6, SIZE, SIZE)).astype(np.float32)
    cube = xr.Dataset({"relevance": (("pretraining", "task", "seed", "image", "y", "x"), relevance)},
                      coords={"pretraining": ["faces"], "task": ["gender"], "seed": [0, 1], "image": ids})
    zoo = {ModelSpec("faces", "gender", seed): small_vgg(num_classes=2, seed=seed) for seed in (0, 1)}
    return cube, zoo, order


def test_model_rdms_of_every_kind_match_references(faces, tiny_study):
    cube, zoo, order = tiny_study
    fraction = 0.1
    rdms = model_rdms(cube, zoo, faces, fraction=fraction, batch_size=4, progress=False)
    assert rdms.dims == ("pretraining", "task", "seed", "kind", "image_a", "image_b")
    assert list(rdms.kind.values) == ["features", "relevance", "decision_weighted"]
    assert list(rdms.image_a.values) == list(cube.image.values)
    images = faces.images[torch.from_numpy(order)]
    colour = images.double().mean((0, 2, 3)).float().view(1, 3, 1, 1)
    kept = round(fraction * SIZE * SIZE)
    for seed in (0, 1):
        model = zoo[ModelSpec("faces", "gender", seed)]
        maps = cube.relevance.sel(pretraining="faces", task="gender", seed=seed).values.reshape(6, -1)
        cell = rdms.sel(pretraining="faces", task="gender", seed=seed)
        np.testing.assert_allclose(cell.sel(kind="relevance").values, 1 - np.corrcoef(maps.astype(np.float64)),
                                   atol=1e-10)
        np.testing.assert_allclose(cell.sel(kind="features").values,
                                   1 - np.corrcoef(manual_penultimate(model, images)), atol=1e-5)
        keep = np.zeros(maps.shape, dtype=bool)
        for row, values in enumerate(maps):
            keep[row, np.argsort(-values)[:kept]] = True
        keep = torch.from_numpy(keep.reshape(6, 1, SIZE, SIZE))
        masked = torch.where(keep, images, colour)
        np.testing.assert_allclose(cell.sel(kind="decision_weighted").values,
                                   1 - np.corrcoef(manual_penultimate(model, masked)), atol=1e-5)


def test_model_rdms_on_the_cpu_device_equal_the_default_bit_for_bit(faces, tiny_study):
    cube, zoo, _ = tiny_study
    default = model_rdms(cube, zoo, faces, batch_size=4)
    xr.testing.assert_identical(default, model_rdms(cube, zoo, faces, batch_size=4, device=torch.device("cpu")))
    with pytest.raises(RSAError, match="device must be .*'tpu'"):
        model_rdms(cube, zoo, faces, device="tpu")


def test_model_rdms_say_that_non_finite_maps_are_not_finite_as_computed(faces, tiny_study):
    cube, zoo, _ = tiny_study
    broken = cube.copy(deep=True)
    broken["relevance"][0, 0, 1, 2, 0, 0] = np.nan
    with pytest.raises(RSAError, match="faces-gender-seed1.*the maps themselves are not finite") as error:
        model_rdms(broken, zoo, faces, kinds=("decision_weighted",))
    assert "incomplete" not in str(error.value)


def test_model_rdms_of_relevance_need_no_models(tiny_study):
    cube, _, _ = tiny_study
    rdms = model_rdms(cube, kinds=("relevance",), progress=False)
    assert rdms.sizes["kind"] == 1 and np.isfinite(rdms.values).all()


def test_model_rdms_report_missing_models_images_and_bad_settings(faces, tiny_study):
    cube, zoo, _ = tiny_study
    with pytest.raises(RSATypeError, match="need zoo"):
        model_rdms(cube, None, faces, progress=False)
    with pytest.raises(RSAError, match="missing from the zoo: faces/gender/1|missing from the zoo"):
        model_rdms(cube, {ModelSpec("faces", "gender", 0): zoo[ModelSpec("faces", "gender", 0)]}, faces,
                   progress=False)
    with pytest.raises(RSAError, match="missing from the dataset"):
        model_rdms(cube, zoo, faces.subset([0, 1, 2]), progress=False)
    with pytest.raises(RSAError, match="kinds entry"):
        model_rdms(cube, zoo, faces, kinds=("pixels",), progress=False)
    with pytest.raises(RSAError, match="fraction"):
        model_rdms(cube, zoo, faces, fraction=0.0, progress=False)


# -------------------------------------------------------------------------------------- compare with humans
def stacked_rdms(rng, ids, kinds=("features", "relevance")):
    values = np.stack([np.stack([correlation_rdm(rng, len(ids)) for _ in kinds]) for _ in range(2)])
    return xr.DataArray(values[None, None], dims=("pretraining", "task", "seed", "kind", "image_a", "image_b"),
                        coords={"pretraining": ["faces"], "task": ["gender"], "seed": [0, 1], "kind": list(kinds),
                                "image_a": ids, "image_b": ids})


def test_stand_in_human_rdm_is_labelled_as_a_stand_in(faces):
    human = stand_in_human_rdm(faces)
    np.testing.assert_array_equal(human.values, parameter_dissimilarity(faces))
    assert list(human.image_a.values) == list(faces.image_ids)
    assert human.attrs["human_source"] == STAND_IN_SOURCE and human.attrs["stand_in"] == "yes"
    assert "stand-in" in human.attrs["long_name"]


def test_compare_with_humans_equals_rsa_per_model_and_kind_and_carries_the_source(faces):
    rng = np.random.default_rng(15)
    rdms = stacked_rdms(rng, list(faces.image_ids))
    human = stand_in_human_rdm(faces).isel(image_a=slice(1, 7), image_b=slice(1, 7))
    result = compare_with_humans(rdms, human, n_permutations=99, n_bootstrap=50, seed=3)
    assert result.correlation.dims == ("pretraining", "task", "seed", "kind")
    assert set(result.data_vars) >= {"correlation", "p_value", "ci_low", "ci_high"}
    assert result.attrs["human_source"] == STAND_IN_SOURCE and result.attrs["human_is_stand_in"] == "yes"
    assert math.isnan(result.attrs["noise_ceiling_lower"]) and result.attrs["n_images"] == 6
    for seed, kind in itertools.product((0, 1), ("features", "relevance")):
        single = rsa(rdms.sel(pretraining="faces", task="gender", seed=seed, kind=kind), human, n_permutations=99,
                     n_bootstrap=50, seed=3)
        cell = result.sel(pretraining="faces", task="gender", seed=seed, kind=kind)
        for name in ("correlation", "p_value", "ci_low", "ci_high"):
            assert float(cell[name]) == pytest.approx(getattr(single, name), abs=1e-12)


def test_compare_with_humans_gives_noise_ceiling_attrs_with_raters():
    rng = np.random.default_rng(16)
    ids = image_ids(8)
    rdms = stacked_rdms(rng, ids)
    ratings = noisy_raters(rng, correlation_rdm(rng, 8), 3, 0.2)
    human = xr.DataArray(ratings, dims=("rater", "image_a", "image_b"),
                         coords={"rater": ["r1", "r2", "r3"], "image_a": ids, "image_b": ids},
                         attrs={"human_source": "three raters"})
    result = compare_with_humans(rdms, human, n_permutations=0, n_bootstrap=0)
    single = rsa(rdms.isel(pretraining=0, task=0, seed=0, kind=0), human, n_permutations=0, n_bootstrap=0)
    assert result.attrs["noise_ceiling_lower"] == pytest.approx(single.noise_ceiling_lower)
    assert result.attrs["noise_ceiling_upper"] == pytest.approx(single.noise_ceiling_upper)
    assert result.attrs["human_source"] == "three raters" and result.attrs["human_is_stand_in"] == "no"
    assert result.attrs["n_raters"] == 3
    assert float(result.rater_correlation[0, 0, 0, 0]) == pytest.approx(single.rater_correlation)
    assert np.isnan(result.rater_ci_low).all() and np.isnan(result.rater_ci_high).all()  # no resamples asked for


@pytest.mark.parametrize("method", ["spearman", "pearson", "kendall"])
def test_rater_correlation_ci_equals_a_naive_loop_over_the_same_resamples(method):
    rng = np.random.default_rng(19)
    count, n_bootstrap, seed = 7, 40, 3
    ids = image_ids(count)
    rdms = stacked_rdms(rng, ids)  # 2 seeds x 2 kinds
    ratings = noisy_raters(rng, correlation_rdm(rng, count), 3, 0.3)
    human = xr.DataArray(ratings, dims=("rater", "image_a", "image_b"),
                         coords={"rater": ["r1", "r2", "r3"], "image_a": ids, "image_b": ids})
    result = compare_with_humans(rdms, human, method=method, n_permutations=0, n_bootstrap=n_bootstrap, seed=seed,
                                 confidence=0.8)
    resamples = _bootstrap_indices(count, n_bootstrap, seed)
    for seed_index, kind_index in itertools.product(range(rdms.sizes["seed"]), range(rdms.sizes["kind"])):
        model = rdms.isel(pretraining=0, task=0, seed=seed_index, kind=kind_index).values
        statistics = []
        for images in resamples:
            pairs = [(images[a], images[b]) for a in range(count) for b in range(a + 1, count)
                     if images[a] != images[b]]
            x = np.array([model[i, j] for i, j in pairs])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                per_rater = [SCIPY[method](x, np.array([rater[i, j] for i, j in pairs])).statistic
                             if len(pairs) > 1 else np.nan for rater in ratings]
            statistics.append(np.mean(per_rater))
        statistics = np.array(statistics)
        statistics = statistics[np.isfinite(statistics)]
        cell = result.isel(pretraining=0, task=0, seed=seed_index, kind=kind_index)
        assert float(cell.rater_ci_low) == pytest.approx(np.quantile(statistics, 0.1), abs=1e-10)
        assert float(cell.rater_ci_high) == pytest.approx(np.quantile(statistics, 0.9), abs=1e-10)
        # the mean RDM's interval is unchanged by the raters' resamples: the naive loop against the mean RDM
        mean_rdm = ratings.mean(0)
        reference = []
        for images in resamples:
            pairs = [(images[a], images[b]) for a in range(count) for b in range(a + 1, count)
                     if images[a] != images[b]]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference.append(SCIPY[method](np.array([model[i, j] for i, j in pairs]),
                                               np.array([mean_rdm[i, j] for i, j in pairs])).statistic)
        reference = np.array(reference)
        reference = reference[np.isfinite(reference)]
        assert float(cell.ci_low) == pytest.approx(np.quantile(reference, 0.1), abs=1e-10)
    single = rsa(rdms.isel(pretraining=0, task=0, seed=0, kind=0), human, method=method, n_permutations=0,
                 n_bootstrap=n_bootstrap, seed=seed, confidence=0.8)
    assert single.rater_ci_low == pytest.approx(float(result.rater_ci_low[0, 0, 0, 0]), abs=1e-12)
    assert single.rater_ci_low <= single.rater_correlation <= single.rater_ci_high


def test_compare_with_humans_gives_nan_for_missing_and_degenerate_models():
    rng = np.random.default_rng(17)
    ids = image_ids(6)
    rdms = stacked_rdms(rng, ids).copy()
    rdms[0, 0, 0, 0] = np.nan  # not computed: silently NaN
    rdms[0, 0, 1, 1, 2, 4] = rdms[0, 0, 1, 1, 4, 2] = np.nan  # partly NaN: a warning
    with pytest.warns(RSAWarning, match="img02, img04") as record:
        result = compare_with_humans(rdms, as_rdm(correlation_rdm(rng, 6), ids), n_permutations=9, n_bootstrap=9)
    assert len(record) == 1
    assert np.isnan(result.correlation.values[0, 0, [0, 1], [0, 1]]).all()
    assert np.isfinite(result.correlation.values[0, 0, [0, 1], [1, 0]]).all()


def test_compare_with_humans_names_human_images_missing_from_the_cube():
    rng = np.random.default_rng(18)
    rdms = stacked_rdms(rng, image_ids(5))
    with pytest.raises(RSAError, match="missing from model_rdms \\(the cube\\): img05, img06"):
        compare_with_humans(rdms, as_rdm(correlation_rdm(rng, 7)), n_permutations=0, n_bootstrap=0)


# ------------------------------------------------------------------------------------------- human ratings files
def write_csv(path, rows):
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return path


def test_load_human_rdm_reads_a_square_csv_with_rows_in_any_order(tmp_path):
    rng = np.random.default_rng(19)
    matrix = np.round(correlation_rdm(rng, 5), 6)
    ids = ["anna", "ben", "cara", "dan", "eve"]
    rows = [[""] + ids] + [[ids[k]] + [repr(float(v)) for v in matrix[k]] for k in (3, 0, 4, 1, 2)]
    rdm = load_human_rdm(write_csv(tmp_path / "square.csv", rows), image_ids=ids + ["fay"])
    assert rdm.dims == ("image_a", "image_b") and list(rdm.image_a.values) == ids
    np.testing.assert_array_equal(rdm.values, matrix)
    assert rdm.attrs["layout"] == "square" and "square.csv" in rdm.attrs["human_source"]
    assert rdm.attrs["stand_in"] == "no"


def test_load_human_rdm_reads_a_long_csv_with_raters_and_pairs_in_either_order(tmp_path):
    rng = np.random.default_rng(20)
    ids = ["a", "b", "c", "d"]
    ratings = np.round(noisy_raters(rng, correlation_rdm(rng, 4), 2, 0.1), 6)
    rows = [["rater", "image_a", "image_b", "dissimilarity"]]
    for rater, (x, y) in itertools.product((0, 1), itertools.combinations(range(4), 2)):
        first, second = (x, y) if rng.random() < 0.5 else (y, x)
        rows.append([f"r{rater}", ids[first], ids[second], repr(float(ratings[rater, x, y]))])
    rdm = load_human_rdm(write_csv(tmp_path / "long.csv", rows))
    assert rdm.dims == ("rater", "image_a", "image_b")
    assert list(rdm.rater.values) == ["r0", "r1"] and sorted(rdm.image_a.values) == ids
    order = [ids.index(image_id) for image_id in rdm.image_a.values]
    np.testing.assert_array_equal(rdm.values, ratings[:, order][:, :, order])


def test_load_human_rdm_reads_a_long_csv_without_raters(tmp_path):
    matrix = symmetric([1.0, 2.0, 3.0], 3)
    rows = [["image_a", "image_b", "dissimilarity"], ["x", "y", "1"], ["x", "z", "2"], ["z", "y", "3"], ["x", "x", "0"]]
    rdm = load_human_rdm(write_csv(tmp_path / "long.csv", rows))
    assert rdm.dims == ("image_a", "image_b") and list(rdm.image_a.values) == ["x", "y", "z"]
    np.testing.assert_array_equal(rdm.values, matrix)


SQUARE_HEADER = ["", "a", "b", "c"]
LONG_HEADER = ["image_a", "image_b", "dissimilarity"]
BAD_FILES = {
    "non_square": ([SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0", "3"]], "not square: 2 rows for 3"),
    "short_row": ([SQUARE_HEADER, ["a", "0", "1"], ["b", "1", "0", "3"], ["c", "2", "3", "0"]],
                  "line 2: 2 values; expected a square matrix"),
    "ids_mismatch": ([SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0", "3"], ["d", "2", "3", "0"]],
                     "only in the header c; only in the rows d"),
    "asymmetric": ([SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0", "3"], ["c", "2.5", "3", "0"]],
                   r"not symmetric: the worst pair is \((c, a)|(a, c)\)"),
    "nan": ([SQUARE_HEADER, ["a", "0", "nan", "2"], ["b", "nan", "0", "3"], ["c", "2", "3", "0"]],
            r"NaN or infinite.*\(a, b\)"),
    "not_a_number": ([SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0", "three"], ["c", "2", "3", "0"]],
                     r"line 3: the value for \(b, c\) is 'three'"),
    "diagonal": ([SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0.5", "3"], ["c", "2", "3", "0"]],
                 r"non-zero diagonal.*\(b, b\)"),
    "two_images": ([["", "a", "b"], ["a", "0", "1"], ["b", "1", "0"]], "at least 3"),
    "duplicate_pair": ([LONG_HEADER, ["a", "b", "1"], ["a", "c", "2"], ["b", "c", "3"], ["b", "a", "1"]],
                       r"line 5: duplicate pair \(b, a\), first given on line 2"),
    "missing_pair": ([LONG_HEADER, ["a", "b", "1"], ["a", "c", "2"], ["b", "c", "3"], ["a", "d", "1"]],
                     r"2 missing pair\(s\), e.g. \(b, d\), \(c, d\)"),
    "long_nan": ([LONG_HEADER, ["a", "b", "1"], ["a", "c", "NaN"], ["b", "c", "3"]], r"line 3.*\(a, c\) is nan"),
    "long_diagonal": ([LONG_HEADER, ["a", "b", "1"], ["a", "c", "2"], ["b", "c", "3"], ["c", "c", "1"]],
                      "line 5: non-zero diagonal"),
    "long_two_images": ([LONG_HEADER, ["a", "b", "1"]], "2 image"),
    "long_missing_column": ([["image_a", "image_b", "distance"], ["a", "b", "1"]], "lacks \\['dissimilarity'\\]"),
    "long_missing_rater_pair": ([LONG_HEADER + ["rater"], ["a", "b", "1", "x"], ["a", "c", "2", "x"],
                                 ["b", "c", "3", "x"], ["a", "b", "1", "y"], ["a", "c", "2", "y"]],
                                r"1 missing pair\(s\), e.g. \(b, c\) of rater y"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_load_human_rdm_explains_bad_files(tmp_path, name):
    rows, message = BAD_FILES[name]
    path = write_csv(tmp_path / f"{name}.csv", rows)
    with pytest.raises(HumanRatingsError, match=message) as error:
        load_human_rdm(path)
    assert str(path) in str(error.value) and isinstance(error.value, ValueError)


def test_load_human_rdm_explains_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(HumanRatingsError, match="no such file"):
        load_human_rdm(tmp_path / "absent.csv")
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(HumanRatingsError, match="is empty"):
        load_human_rdm(tmp_path / "empty.csv")
    (tmp_path / "image.csv").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    with pytest.raises(HumanRatingsError, match="is not UTF-8 text .*a binary file"):
        load_human_rdm(tmp_path / "image.csv")
    (tmp_path / "nul.csv").write_bytes(b"image_a,image_b,dissimilarity\na,b,\x001\n")
    with pytest.raises(HumanRatingsError, match="NUL bytes, so it is a binary file"):
        load_human_rdm(tmp_path / "nul.csv")
    (tmp_path / "latin1.csv").write_bytes("image_a,image_b,dissimilarity\nR\xe9mi,b,1\n".encode("latin-1"))
    with pytest.raises(HumanRatingsError, match="is not UTF-8 text .*saved as UTF-8"):
        load_human_rdm(tmp_path / "latin1.csv")


def test_load_human_rdm_names_ids_missing_from_the_cube(tmp_path):
    rows = [SQUARE_HEADER, ["a", "0", "1", "2"], ["b", "1", "0", "3"], ["c", "2", "3", "0"]]
    with pytest.raises(HumanRatingsError, match="2 image id\\(s\\) are not in the cube: b, c"):
        load_human_rdm(write_csv(tmp_path / "ratings.csv", rows), image_ids=["a", "x", "y"])


def test_the_module_example_runs():
    import doctest
    import importlib
    outcome = doctest.testmod(importlib.import_module("lrp_faces.analysis.rsa"), optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0 and outcome.failed == 0
