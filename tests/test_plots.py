"""Figures: each function on small real results (a cube and masking results of tiny models) and on synthetic analysis
results in the contracted layout; full grids, a single seed and ragged cubes.

The references (means over seeds, Student-t intervals, per-map colour scaling) are computed here with numpy/scipy
from the results, independently of ``lrp_faces.plots``.
"""
from __future__ import annotations

import itertools
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import scipy.stats
import torch
import xarray as xr
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.figure import Figure

import lrp_faces
from lrp_faces import cube as cube_module, masking, plots
from lrp_faces.faces import REGIONS, TASK_REGIONS, synthetic_faces
from lrp_faces.models import save_model
from lrp_faces.plots import PlotError, PlotTypeError
from lrp_faces.zoo import ModelSpec, Zoo, ZooEntry

from conftest import trained_scale

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SIZE = 32
PRETRAININGS, TASKS, SEEDS = ("objects", "faces"), ("gender", "identity"), (0, 1)
SPECS = [ModelSpec(*values) for values in itertools.product(PRETRAININGS, TASKS, SEEDS)]
MODEL_DIMS = ("pretraining", "task", "seed")
RELATIONS = masking.RELATIONS


# ------------------------------------------------------------------------------------------ small real results
def tiny_zoo(folder: Path, specs=SPECS) -> Zoo:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for index, spec in enumerate(specs):
        torch.manual_seed(index)
        model = lrp_faces.vgg16(2 if spec.task == "gender" else 4, width=1 / 8, pool_size=2, classifier_width=16)
        trained_scale(model, torch.Generator().manual_seed(index))
        entries.append(ZooEntry(spec, save_model(model.eval(), folder / f"{spec.name}.pt", spec=spec)))
    return Zoo(entries, image_size=SIZE)


def small_study(folder: Path) -> dict:
    """A real cube of 8 tiny models (and a ragged one of 7), their generalisation results (2 seeds, 1 seed) and the
    faces."""
    faces = synthetic_faces(4, 2, size=SIZE)
    zoo = tiny_zoo(folder / "zoo")
    cube = cube_module.compute(zoo, faces, folder / "cube", batch_size=8, progress=False).load()
    ragged_zoo = Zoo([zoo.entries[spec] for spec in SPECS[1:]], image_size=SIZE)
    ragged = cube_module.compute(ragged_zoo, faces, folder / "ragged", batch_size=8, progress=False).load()
    settings = dict(fractions=np.linspace(0, 1, 5), patch=4, n_bootstrap=50, n_permutations=50, progress=False)
    generalization = masking.generalization(cube, zoo, faces, **settings)
    one_seed = masking.generalization(cube.isel(seed=[0]), zoo, faces, **settings)
    return {"faces": faces, "zoo": zoo, "cube": cube, "ragged": ragged, "generalization": generalization,
            "one_seed": one_seed}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return small_study(tmp_path_factory.mktemp("study"))


# ------------------------------------------------------------------------- synthetic analysis results (contract)
def model_ids(pretrainings=PRETRAININGS, tasks=TASKS, seeds=SEEDS) -> list[tuple[str, str, int]]:
    return list(itertools.product(pretrainings, tasks, seeds))


def relation_of(a, b) -> str:
    if a[:2] == b[:2]:
        return "same_model" if a[2] == b[2] else "same_cell_different_seed"
    if a[0] == b[0]:
        return "different_task"
    return "different_pretraining" if a[1] == b[1] else "both_different"


def similarity_result(seeds=SEEDS, images=5, seed=0) -> xr.Dataset:
    """analysis.similarity's layout: per-image similarities of every pair, their means and relation summaries."""
    rng = np.random.default_rng(seed)
    models = model_ids(seeds=seeds)
    count = len(models)
    base = rng.uniform(0.2, 0.9, (count, count))
    per_image = np.clip((base + base.T)[..., None] / 2 + rng.normal(0, 0.05, (count, count, images)), -1, 1)
    per_image[np.arange(count), np.arange(count)] = 1.0
    per_image = (per_image + per_image.transpose(1, 0, 2)) / 2
    mean = per_image.mean(-1)
    relations = np.array([[relation_of(a, b) for b in models] for a in models])
    summary = {"relation_mean": [], "relation_ci_low": [], "relation_ci_high": [], "relation_pairs": []}
    upper = np.triu(np.ones((count, count), dtype=bool), k=1) | np.eye(count, dtype=bool)
    for relation in RELATIONS:
        chosen = mean[(relations == relation) & upper]
        value = chosen.mean() if chosen.size else np.nan
        summary["relation_mean"].append(value)
        summary["relation_ci_low"].append(value - 0.05)
        summary["relation_ci_high"].append(value + 0.05)
        summary["relation_pairs"].append(chosen.size)
    ids = ["/".join(map(str, model)) for model in models]
    coords = {"model_a": ids, "model_b": ids, "image": [f"img{index}" for index in range(images)],
              "relation": list(RELATIONS)}
    for suffix in ("a", "b"):
        for position, dim in enumerate(MODEL_DIMS):
            coords[f"{dim}_{suffix}"] = (f"model_{suffix}", [model[position] for model in models])
    pair = ("model_a", "model_b")
    return xr.Dataset({"similarity": (pair + ("image",), per_image), "mean": (pair, mean),
                       "ci_low": (pair, mean - 0.03), "ci_high": (pair, mean + 0.03),
                       "pair_relation": (pair, relations),
                       **{name: (("relation",), np.array(values)) for name, values in summary.items()}},
                      coords=coords, attrs={"metric": "spearman", "k": 0.1, "confidence": 0.95})


def regions_result(seeds=SEEDS, images=4, missing: tuple | None = None, ground_truth=True, seed=0) -> xr.Dataset:
    """analysis.region_relevance (merged with ground_truth) layout over the synthetic faces' regions."""
    rng = np.random.default_rng(seed)
    shape = (len(PRETRAININGS), len(TASKS), len(seeds))
    image_share = rng.dirichlet(np.ones(len(REGIONS)), size=shape + (images,))  # (..., image, region)
    image_share = np.moveaxis(image_share, -2, -1)  # (..., region, image)
    share = image_share.mean(-1)
    dims = MODEL_DIMS + ("region",)
    data = {"share": (dims, share), "share_ci_low": (dims, share - 0.02), "share_ci_high": (dims, share + 0.02),
            "density": (dims, rng.normal(0, 1, share.shape)), "image_share": (dims + ("image",), image_share)}
    if ground_truth:
        for name in ("relevance_mass_accuracy", "relevance_rank_accuracy"):
            values = rng.uniform(0.2, 0.9, shape + (images,))
            data[name] = (MODEL_DIMS + ("image",), values)
            data[f"{name}_mean"] = (MODEL_DIMS, values.mean(-1))
            data[f"{name}_ci_low"] = (MODEL_DIMS, values.mean(-1) - 0.05)
            data[f"{name}_ci_high"] = (MODEL_DIMS, values.mean(-1) + 0.05)
    result = xr.Dataset(data, coords={"pretraining": list(PRETRAININGS), "task": list(TASKS), "seed": list(seeds),
                                      "region": list(REGIONS), "image": [f"img{i}" for i in range(images)]})
    if missing is not None:  # a model that is not in a ragged cube: NaN everywhere
        where = dict(zip(MODEL_DIMS, missing))
        for name in result.data_vars:
            if set(MODEL_DIMS) <= set(result[name].dims):
                result[name].loc[where] = np.nan
    return result


METHODS = ("epsilon_gamma_box", "epsilon_plus_flat", "gradient")
METRICS = ("relevance_mass_accuracy", "relevance_rank_accuracy", "aopc_output", "aopc_probability")


def methods_result(seed=0) -> xr.Dataset:
    """analysis.method_comparison's layout."""
    rng = np.random.default_rng(seed)
    models = ["/".join(map(str, model)) for model in model_ids()]
    value = rng.uniform(0, 1, (len(METHODS), len(models), 3, len(METRICS)))
    mean = value.mean((1, 2))
    pair = ("attribution_method", "metric")
    return xr.Dataset({"mean": (pair, mean), "ci_low": (pair, mean - 0.1), "ci_high": (pair, mean + 0.1),
                       "value": (("attribution_method", "model", "image", "metric"), value)},
                      coords={"attribution_method": list(METHODS), "metric": list(METRICS), "model": models,
                              "image": ["a", "b", "c"]}, attrs={"confidence": 0.95})


FRACTIONS = (0.0, 0.1, 0.5, 1.0)
KEEP_AOPC = "mean over fractions > 0 of f(only the first fraction kept) - f(everything filled)"


def masking_result(mode="remove", seeds=SEEDS, images=6, seed=0, **attrs) -> xr.Dataset:
    """masking.generalization's layout for one pretraining x task cell: accuracy and output that fall with the
    fraction hidden (``remove``) or rise with the fraction kept (``keep``), as with a good map; the random order
    changes them half as much."""
    rng = np.random.default_rng(seed)
    count, fractions = len(seeds), np.array(FRACTIONS)
    trend = (1 - fractions if mode == "remove" else fractions)[:, None]  # (F, 1): share of the decision left
    own = np.clip(trend + rng.normal(0, 0.1, (count, count, len(fractions), images)), 0, 1)
    random = np.clip(0.5 + (trend - 0.5) / 2 + rng.normal(0, 0.1, (count, len(fractions), images)), 0, 1)
    sources = tuple(f"source_{dim}" for dim in MODEL_DIMS)
    targets = tuple(f"target_{dim}" for dim in MODEL_DIMS)
    pair, grid = sources + targets, (1, 1, count)
    curve, random_curve = pair + ("fraction", "image"), targets + ("fraction", "image")
    data = {"correct": (curve, (rng.uniform(size=own.shape) < own).reshape(grid + grid + own.shape[2:])),
            "output": (curve, (4 * own - 2).reshape(grid + grid + own.shape[2:])),
            "random_correct": (random_curve,
                               (rng.uniform(size=random.shape) < random).reshape(grid + random.shape[1:])),
            "random_output": (random_curve, (4 * random - 2).reshape(grid + random.shape[1:])),
            "aopc": (pair, rng.uniform(0.2, 0.8, (count, count)).reshape(grid + grid)),
            "generalization_index": (pair, rng.uniform(-0.2, 1.2, (count, count)).reshape(grid + grid)),
            "random_aopc": (targets, rng.uniform(0.0, 0.2, count).reshape(grid)),
            "unmasked_accuracy": (targets, rng.uniform(0.8, 1.0, count).reshape(grid))}
    coords = {f"{side}_{dim}": values for side in ("source", "target")
              for dim, values in zip(MODEL_DIMS, (["faces"], ["gender"], list(seeds)))}
    coords.update(fraction=list(fractions), image=[f"img{index}" for index in range(images)])
    return xr.Dataset(data, coords=coords, attrs={"order": "morf", "mode": mode, "fill": "mean", "patch": 1,
                                                  "contrastive": 1, "score": "output", "confidence": 0.95, **attrs})


KINDS = ("features", "relevance", "decision_weighted")
STAND_IN = "synthetic parameter-space distances (a stand-in for human ratings)"


def rsa_result(seeds=SEEDS, ceiling=(np.nan, np.nan), human_source=STAND_IN, seed=0) -> xr.Dataset:
    """analysis.compare_with_humans's layout; with a ceiling (several raters) the mean correlation with each rater
    is lower than the correlation with their mean RDM, as with real raters."""
    rng = np.random.default_rng(seed)
    shape = (len(PRETRAININGS), len(TASKS), len(seeds), len(KINDS))
    correlation = rng.uniform(-0.1, 0.6, shape)
    raters = 3 if np.isfinite(ceiling).all() else 0
    rater = correlation * rng.uniform(0.5, 0.8, shape) if raters else np.full(shape, np.nan)
    dims = MODEL_DIMS + ("kind",)
    return xr.Dataset({"correlation": (dims, correlation), "p_value": (dims, rng.uniform(0, 0.2, shape)),
                       "ci_low": (dims, correlation - 0.1), "ci_high": (dims, correlation + 0.1),
                       "rater_correlation": (dims, rater), "rater_ci_low": (dims, rater - 0.05),
                       "rater_ci_high": (dims, rater + 0.07)},
                      coords={"pretraining": list(PRETRAININGS), "task": list(TASKS), "seed": list(seeds),
                              "kind": list(KINDS)},
                      attrs={"noise_ceiling_lower": ceiling[0], "noise_ceiling_upper": ceiling[1],
                             "human_source": human_source, "method": "spearman", "n_raters": raters})


# --------------------------------------------------------------------------------------------------- helpers
def image_axes(figure: Figure) -> list:
    return [ax for ax in figure.axes if ax.images]


def t_interval(values: np.ndarray, confidence=0.95) -> tuple[float, float]:
    values = np.asarray(values, dtype=np.float64)
    return scipy.stats.t.interval(confidence, len(values) - 1, loc=values.mean(), scale=scipy.stats.sem(values))


def texts(figure: Figure) -> list[str]:
    found = [text.get_text() for text in figure.findobj(matplotlib.text.Text)]
    return [text for text in found if text]


def own_curve(result: xr.Dataset, variable: str, spec: tuple) -> np.ndarray:
    """(fraction, image) curve of a model on its own maps, by label-based selection."""
    where = {f"{side}_{dim}": value for side in ("source", "target") for dim, value in zip(MODEL_DIMS, spec)}
    return result[variable].sel(where).transpose("fraction", "image").values


# ------------------------------------------------------------------------------------------------ relevance grid
def test_relevance_grid_shows_images_by_models_with_the_faces_first(study):
    cube, faces = study["cube"], study["faces"]
    models = [("faces", "gender", 1), "objects/identity/0"]
    figure = plots.relevance_grid(cube, faces, image_ids=["id000_img00", "id003_img01"], models=models)
    assert isinstance(figure, Figure)
    axes = image_axes(figure)
    assert len(axes) == 2 * 3
    assert [axes[column].get_title() for column in range(3)] == ["image", "faces\ngender\nseed 1",
                                                                 "objects\nidentity\nseed 0"]
    assert [axes[row * 3].get_ylabel() for row in range(2)] == ["id000_img00", "id003_img01"]
    np.testing.assert_allclose(axes[0].images[0].get_array(),
                               faces.images[faces.image_ids.index("id000_img00")].permute(1, 2, 0).numpy(),
                               atol=1e-6)
    assert len(figure.axes) == len(axes) + 1  # the colour bar


def test_relevance_grid_takes_faces_as_an_array_a_mapping_or_a_dataarray(study):
    cube, faces = study["cube"], study["faces"]
    pixels = faces.images.numpy()
    forms = [pixels, {image_id: pixels[index] for index, image_id in enumerate(faces.image_ids)},
             xr.DataArray(pixels, dims=("image", "channel", "y", "x"), coords={"image": faces.image_ids})]
    for images in forms:
        figure = plots.relevance_grid(cube, images, image_ids=["id002_img01"], models=["faces/gender/0"])
        np.testing.assert_allclose(image_axes(figure)[0].images[0].get_array(),
                                   pixels[faces.image_ids.index("id002_img01")].transpose(1, 2, 0), atol=1e-6)


def test_relevance_overlay_is_centred_at_zero_with_symmetric_limits_per_map(study):
    cube, faces = study["cube"], study["faces"]
    figure = plots.relevance_grid(cube, faces, image_ids=["id001_img00"], models=[("faces", "identity", 0)])
    overlay = image_axes(figure)[1].images[1].get_array()  # over the greyscale face
    relevance = cube.relevance.sel(pretraining="faces", task="identity", seed=0, image="id001_img00").values
    scaled = relevance / np.abs(relevance).max()
    bwr = matplotlib.colormaps["bwr"]
    np.testing.assert_allclose(overlay[..., :3], bwr(0.5 + scaled / 2)[..., :3], atol=1e-6)
    largest = np.unravel_index(np.abs(relevance).argmax(), relevance.shape)
    assert overlay[largest][3] == pytest.approx(0.85)  # the strongest pixel is the most opaque
    assert overlay[..., 3].min() >= 0 and np.all(overlay[..., 3][relevance == 0] == 0)


def test_relevance_grid_without_faces_draws_the_maps_alone(study):
    figure = plots.relevance_grid(study["cube"], image_ids=2)
    axes = image_axes(figure)
    assert len(axes) == 2 * 4  # one seed of each of the 4 cells by default
    first = axes[0].images[0]
    assert first.get_clim() == (-1, 1)
    assert axes[0].get_title() == "faces\ngender\nseed 0"  # the cube's order: pretrainings sorted
    values = study["cube"].relevance.sel(pretraining="faces", task="gender", seed=0).isel(image=0).values
    np.testing.assert_allclose(first.get_array(), values / np.abs(values).max(), rtol=1e-6)


def test_relevance_grid_of_a_ragged_cube_skips_or_marks_the_missing_model(study):
    ragged = study["ragged"]
    default = plots.relevance_grid(ragged, image_ids=1)
    titles = [ax.get_title() for ax in image_axes(default)]
    assert "objects\ngender\nseed 1" in titles and "objects\ngender\nseed 0" not in titles
    assert len(titles) == 4
    explicit = plots.relevance_grid(ragged, image_ids=1, models=[("objects", "gender", 0), ("objects", "gender", 1)])
    assert "not\ncomputed" in texts(explicit)


def test_relevance_grid_rejects_unknown_models_images_and_inputs(study):
    with pytest.raises(PlotError, match="vggface/gender/0"):
        plots.relevance_grid(study["cube"], models=["vggface/gender/0"])
    with pytest.raises(PlotError, match="nobody"):
        plots.relevance_grid(study["cube"], image_ids=["nobody"])
    with pytest.raises(PlotTypeError, match="relevance cube"):
        plots.relevance_grid(np.zeros((3, 8, 8)))
    with pytest.raises(PlotTypeError, match="images must be"):
        plots.relevance_grid(study["cube"], images=[1, 2, 3])
    with pytest.raises(PlotError, match="one image per image of the cube"):
        plots.relevance_grid(study["cube"], images=np.zeros((3, 3, SIZE, SIZE)))


# ------------------------------------------------------------------------------------------------ masking curves
def test_masking_curves_show_each_cell_averaged_over_seeds_with_a_t_interval(study):
    result = study["generalization"]
    figure = plots.masking_curves(result)
    assert len(figure.axes) == 2 * 4  # accuracy and output rows, one column per pretraining x task cell
    ax = figure.axes[0]  # accuracy of the first cell of the result's grid
    assert ax.get_title() == "faces · gender"
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"MoRF (most relevant first)", "random order"}
    per_seed = np.array([own_curve(result, "correct", ("faces", "gender", seed)).mean(-1) for seed in SEEDS])
    np.testing.assert_allclose(lines["MoRF (most relevant first)"].get_ydata(), per_seed.mean(0))
    output_ax = figure.axes[4]
    output_seeds = np.array([own_curve(result, "output", ("faces", "gender", seed)).mean(-1) for seed in SEEDS])
    band = [collection for collection in output_ax.collections if isinstance(collection, PolyCollection)][0]
    low, high = t_interval(output_seeds[:, 2])  # at the third fraction
    vertices = band.get_paths()[0].vertices
    at_fraction = vertices[np.isclose(vertices[:, 0], result.fraction.values[2]), 1]
    np.testing.assert_allclose(sorted(at_fraction)[:1] + sorted(at_fraction)[-1:], [low, high], rtol=1e-9)
    random = result["random_output"].sel(target_pretraining="faces", target_task="gender").mean("image")
    np.testing.assert_allclose(
        [line for line in output_ax.get_lines() if line.get_label() == "random order"][0].get_ydata(),
        random.mean("target_seed").values)
    assert "over 2 seeds" in figure.get_suptitle()


def test_masking_curves_of_one_seed_draw_bands_over_images(study):
    figure = plots.masking_curves(study["one_seed"], metrics=("accuracy",))
    assert len(figure.axes) == 4
    assert "over images (1 seed)" in figure.get_suptitle()
    assert all(any(isinstance(item, PolyCollection) for item in ax.collections) for ax in figure.axes)


def test_masking_curves_from_curves_results_keyed_by_order(study):
    cube, zoo, faces = study["cube"], study["zoo"], study["faces"]
    spec = ModelSpec("faces", "gender", 0)
    per_order = {}
    for order in ("morf", "lerf", "random"):
        per_order[order] = [masking.curves(zoo[spec], faces.images, faces.gender,
                                           cube.relevance.sel(pretraining="faces", task="gender", seed=seed).values,
                                           fractions=(0.0, 0.25, 0.5, 1.0), order=order, patch=4, seed=seed)
                            for seed in SEEDS]
    figure = plots.masking_curves(per_order)
    assert len(figure.axes) == 2
    labels = [line.get_label() for line in figure.axes[0].get_lines()]
    assert labels == ["MoRF (most relevant first)", "LeRF (least relevant first)", "random order"]
    expected = np.mean([float(item.accuracy.sel(fraction=0.25)) for item in per_order["lerf"]])
    assert figure.axes[0].get_lines()[1].get_ydata()[1] == pytest.approx(expected)


def test_masking_curves_of_generalization_results_keyed_by_order(study):
    figure = plots.masking_curves({"morf": study["generalization"], "lerf": study["generalization"]})
    assert [line.get_label() for line in figure.axes[0].get_lines()] == [
        "MoRF (most relevant first)", "random order", "LeRF (least relevant first)"]


def self_masking(study, order="lerf", fractions=None, seeds=SEEDS) -> xr.Dataset:
    """Every model masked by its own maps (masking.curves), stacked over the model dims like masking_lerf.nc."""
    cube, zoo, faces = study["cube"], study["zoo"], study["faces"]
    fractions = study["generalization"].fraction.values if fractions is None else fractions
    parts = []
    for spec in SPECS:
        if spec.seed not in seeds:
            continue
        maps = cube.relevance.sel(pretraining=spec.pretraining, task=spec.task, seed=spec.seed).values
        curves = masking.curves(zoo[spec], faces.images, faces.labels(spec.task), maps, fractions=fractions,
                                order=order, patch=4, image_ids=faces.image_ids)
        parts.append(curves.reset_coords("label").expand_dims(pretraining=[spec.pretraining], task=[spec.task],
                                                               seed=[spec.seed]))
    return xr.combine_by_coords(parts, combine_attrs="override")


def test_masking_curves_with_self_masking_lerf_draw_three_orders_per_panel(study):
    result, lerf = study["generalization"], self_masking(study)
    figure = plots.masking_curves(result, lerf=lerf)
    assert len(figure.axes) == 2 * 4
    for ax in figure.axes:
        assert [line.get_label() for line in ax.get_lines()] == [
            "MoRF (most relevant first)", "LeRF (least relevant first)", "random order"]
        assert sum(isinstance(item, PolyCollection) for item in ax.collections) == 3  # a CI band per curve
    cells = [(ax.get_title().split(" · ")[0], ax.get_title().split(" · ")[1]) for ax in figure.axes[:4]]
    for column, (pretraining, task) in enumerate(cells):
        for row, variable in enumerate(("correct", "output")):
            ax = figure.axes[row * 4 + column]
            per_seed = np.array([lerf[variable].sel(pretraining=pretraining, task=task, seed=seed).mean("image")
                                 for seed in SEEDS])  # (seed, fraction)
            line = ax.get_lines()[1]
            np.testing.assert_allclose(line.get_ydata(), per_seed.mean(0))
            band = [item for item in ax.collections if isinstance(item, PolyCollection)][1]
            vertices = band.get_paths()[0].vertices
            at_fraction = vertices[np.isclose(vertices[:, 0], result.fraction.values[2]), 1]
            spread = scipy.stats.t.ppf(0.975, len(SEEDS) - 1) * per_seed[:, 2].std(ddof=1) / np.sqrt(len(SEEDS))
            low, high = per_seed[:, 2].mean() - spread, per_seed[:, 2].mean() + spread  # a point if seeds agree
            if variable == "correct":
                low, high = max(low, 0.0), min(high, 1.0)
            np.testing.assert_allclose([min(at_fraction), max(at_fraction)], [low, high], rtol=1e-9)
            np.testing.assert_allclose(ax.get_lines()[0].get_ydata(), np.mean(
                [own_curve(result, variable, (pretraining, task, seed)).mean(-1) for seed in SEEDS], axis=0))
    assert "over 2 seeds" in figure.get_suptitle()


def test_masking_curves_reject_lerf_curves_that_do_not_match(study):
    result = study["generalization"]
    with pytest.raises(PlotError, match="fractions"):
        plots.masking_curves(result, lerf=self_masking(study, fractions=(0.0, 0.5, 1.0)))
    with pytest.raises(PlotError, match=r"no curves of the model faces/gender/1 \(seed=1\)"):
        plots.masking_curves(result, lerf=self_masking(study, seeds=(0,)))
    with pytest.raises(PlotError, match="order is 'morf'"):
        plots.masking_curves(result, lerf=self_masking(study, order="morf"))
    with pytest.raises(PlotError, match="other images"):
        plots.masking_curves(result, lerf=self_masking(study).isel(image=slice(1, None)))
    with pytest.raises(PlotTypeError, match="lerf= goes with one"):
        plots.masking_curves({"morf": result}, lerf=self_masking(study))


def test_masking_curves_reject_other_inputs(study):
    with pytest.raises(PlotTypeError, match="generalization"):
        plots.masking_curves(study["cube"])
    with pytest.raises(PlotError, match="metrics"):
        plots.masking_curves(study["generalization"], metrics=("aopc",))
    with pytest.raises(PlotTypeError, match=r"result\['morf'\]"):
        plots.masking_curves({"morf": 3})


@pytest.mark.parametrize("mode, axis, legend", [
    ("remove", "fraction of pixels hidden", "MoRF (most relevant first)"),
    ("keep", "fraction of pixels kept (the rest filled)", "MoRF (most relevant kept)")])
def test_masking_curves_say_whether_the_fraction_was_hidden_or_kept(mode, axis, legend):
    result = masking_result(mode)
    figure = plots.masking_curves(result)
    accuracy, output = figure.axes
    assert output.get_xlabel() == axis and f"mode: {mode}" in figure.get_suptitle()
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    assert set(lines) == {legend, "random order"}
    per_seed = [result["correct"].isel(source_seed=index, target_seed=index).squeeze().mean("image").values
                for index in range(len(SEEDS))]  # each model on its own maps, (fraction,)
    np.testing.assert_allclose(lines[legend].get_xdata(), FRACTIONS)
    np.testing.assert_allclose(lines[legend].get_ydata(), np.mean(per_seed, axis=0))
    heatmap = plots.generalization_heatmap(masking_result(mode, seeds=(0, 1, 2)))
    assert ("kept" in heatmap.axes[0].get_ylabel()) is (mode == "keep")


def test_masking_curves_of_results_without_a_mode_read_as_hidden():
    result = masking_result("remove")
    del result.attrs["mode"]
    figure = plots.masking_curves(result, metrics=("accuracy",))
    assert figure.axes[0].get_xlabel() == "fraction of pixels hidden"


def test_masking_curves_refuse_to_mix_hidden_and_kept_curves(study):
    with pytest.raises(PlotError, match=r"different modes \['keep', 'remove'\]"):
        plots.masking_curves({"morf": masking_result("keep"), "lerf": masking_result("remove", order="lerf")})
    lerf = self_masking(study)
    lerf.attrs["mode"] = "keep"
    with pytest.raises(PlotError, match="different modes"):
        plots.masking_curves(study["generalization"], lerf=lerf)


# ------------------------------------------------------------------------------------------------------ heatmaps
def test_generalization_heatmap_annotates_every_pair_grouped_by_pretraining_and_task(study):
    result = study["generalization"]
    figure = plots.generalization_heatmap(result)
    ax, colorbar_ax = figure.axes
    cells = [text.get_text() for text in ax.texts]
    assert len(cells) == len(SPECS) ** 2
    # row = source, column = target, in the grid order of the result (pretrainings sorted by the cube)
    grid = [ModelSpec(*values) for values in itertools.product(*(result[f"source_{dim}"].values.tolist()
                                                                 for dim in MODEL_DIMS))]
    source, target = grid[1], grid[6]
    value = float(result.generalization_index.sel(
        source_pretraining=source.pretraining, source_task=source.task, source_seed=source.seed,
        target_pretraining=target.pretraining, target_task=target.task, target_seed=target.seed))
    assert cells[1 * len(SPECS) + 6] == f"{value:.2f}"
    groups = [label.get_text() for label in ax.get_xticklabels(minor=True)]
    assert groups == ["faces\ngender", "faces\nidentity", "objects\ngender", "objects\nidentity"]
    assert [label.get_text() for label in ax.get_yticklabels()][:2] == ["seed 0", "seed 1"]
    low, high = ax.collections[0].get_clim()
    assert low == -high and high >= 1
    assert "1 (own map)" in [label.get_text() for label in colorbar_ax.get_yticklabels()]


def test_asymmetry_heatmap_stars_the_significant_pairs(study):
    result = study["generalization"].copy()
    p_values = np.full((len(SPECS), len(SPECS)), 0.5)
    p_values[0, 3], p_values[3, 0], p_values[2, 5] = 0.03, 0.03, 0.001
    result["asymmetry_p_value"] = result.asymmetry_p_value.copy(data=p_values.reshape(result.asymmetry_p_value.shape))
    figure = plots.asymmetry_heatmap(result)
    ax = figure.axes[0]
    asymmetry = result.asymmetry.values.reshape(len(SPECS), len(SPECS))
    cells = {(round(text.get_position()[1] - 0.5), round(text.get_position()[0] - 0.5)): text.get_text()
             for text in ax.texts}
    assert cells[(0, 3)] == f"{asymmetry[0, 3]:.2f}*" and cells[(2, 5)] == f"{asymmetry[2, 5]:.2f}**"
    assert cells[(1, 4)] == f"{asymmetry[1, 4]:.2f}"
    assert (0, 0) not in cells  # the diagonal is masked
    low, high = ax.collections[0].get_clim()
    assert low == -high


# ----------------------------------------------------------------------------------------- relations, analyses
def test_generalization_by_relation_plots_the_summary_with_its_intervals(study):
    result = study["generalization"]
    figure = plots.generalization_by_relation(result)
    ax = figure.axes[0]
    labels = [label.get_text() for label in ax.get_xticklabels()]
    assert labels[0].startswith("other seed") and len(labels) == 4
    means = [line.get_ydata()[0] for line in ax.get_lines() if line.get_marker() == "o"]
    expected = result.summary_generalization_index.sel(relation=list(RELATIONS[1:])).values
    np.testing.assert_allclose(means, expected)


def test_generalization_by_relation_of_one_seed_says_there_are_no_other_seeds(study):
    figure = plots.generalization_by_relation(study["one_seed"])
    assert "no pairs" in texts(figure)
    assert "other seed\n(0 pairs)" in [label.get_text() for label in figure.axes[0].get_xticklabels()]


def test_similarity_by_relation_plots_relation_means():
    result = similarity_result()
    figure = plots.similarity_by_relation(result)
    means = [line.get_ydata()[0] for line in figure.axes[0].get_lines() if line.get_marker() == "o"]
    np.testing.assert_allclose(means, result.relation_mean.values[1:])
    assert "Spearman" in figure.axes[0].get_ylabel()


@pytest.mark.parametrize("seeds", [SEEDS, (0,)])
def test_region_relevance_bars_are_means_over_seeds(seeds):
    result = regions_result(seeds=seeds)
    figure = plots.region_relevance(result, task_regions=TASK_REGIONS)
    assert len(figure.axes) == len(TASKS)
    gender = figure.axes[0]
    bars = [patch.get_height() for patch in gender.patches]
    expected = [result.share.sel(pretraining=pretraining, task="gender").mean("seed").values
                for pretraining in PRETRAININGS]
    np.testing.assert_allclose(bars, np.concatenate(expected))
    starred = [label.get_text() for label in gender.get_xticklabels() if label.get_text().endswith("*")]
    assert starred == [f"{region} *" for region in REGIONS if region in TASK_REGIONS["gender"]]


def test_region_relevance_of_a_ragged_grid_averages_the_models_present():
    result = regions_result(missing=("faces", "identity", 1))
    figure = plots.region_relevance(result)
    identity = figure.axes[1]
    heights = np.array([patch.get_height() for patch in identity.patches]).reshape(2, len(REGIONS))
    np.testing.assert_allclose(heights[1], result.share.sel(pretraining="faces", task="identity", seed=0).values)


def test_method_comparison_has_a_panel_per_metric_and_stars_the_best():
    result = methods_result()
    figure = plots.method_comparison(result)
    visible = [ax for ax in figure.axes if ax.get_visible()]
    assert [ax.get_title() for ax in visible] == ["relevance mass accuracy", "relevance rank accuracy",
                                                  "AOPC (output)", "AOPC (probability)"]
    for ax, metric in zip(visible, METRICS):
        points = {line.get_marker(): line.get_xdata()[0] for line in ax.get_lines() if line.get_marker() in "*o"}
        assert points["*"] == pytest.approx(result["mean"].sel(metric=metric).max())


def bar_heights(ax) -> np.ndarray:
    return np.array([patch.get_height() for patch in ax.patches if patch.get_label() != "noise ceiling"])


def error_bar_ends(ax) -> np.ndarray:
    """(bars, 2) lower and upper ends of the vertical error bars, in the order they were drawn."""
    ends = []
    for collection in ax.collections:
        if isinstance(collection, LineCollection):
            ends.extend(sorted(segment[:, 1]) for segment in collection.get_segments())
    return np.array(ends)


def test_rsa_bars_of_several_raters_draw_the_mean_rater_correlation_under_the_noise_ceiling():
    result = rsa_result(ceiling=(0.3, 0.45))
    figure = plots.rsa_bars(result)
    ax = figure.axes[0]
    assert "synthetic stand-in" in ax.get_title()
    ceiling = [patch for patch in ax.patches if patch.get_label() == "noise ceiling"]
    assert len(ceiling) == 1
    assert (ceiling[0].get_y(), ceiling[0].get_y() + ceiling[0].get_height()) == pytest.approx((0.3, 0.45))
    # the ceiling bounds the mean correlation with each rater: that is what the bars show, not `correlation`
    expected = result.rater_correlation.mean("seed").transpose("kind", "pretraining", "task").values.reshape(-1)
    np.testing.assert_allclose(bar_heights(ax), expected)
    assert ax.get_ylabel().startswith("mean correlation with each rater's RDM")


def test_rsa_bars_of_one_seed_with_raters_show_the_rater_correlation_ci():
    result = rsa_result(seeds=(0,), ceiling=(0.3, 0.45))
    ax = plots.rsa_bars(result).axes[0]
    ordered = ("kind", "pretraining", "task", "seed")
    np.testing.assert_allclose(bar_heights(ax), result.rater_correlation.transpose(*ordered).values.reshape(-1))
    ends = np.stack([result[name].transpose(*ordered).values.reshape(-1) for name in ("rater_ci_low",
                                                                                      "rater_ci_high")], 1)
    np.testing.assert_allclose(error_bar_ends(ax), ends)


def test_rsa_bars_without_raters_draw_the_correlation_with_the_human_rdm():
    result = rsa_result(seeds=(0,), human_source="ratings of 24 people")
    figure = plots.rsa_bars(result)
    ax = figure.axes[0]
    assert ax.get_title() == ""
    assert not [patch for patch in ax.patches if patch.get_label() == "noise ceiling"]
    ordered = ("kind", "pretraining", "task", "seed")
    np.testing.assert_allclose(bar_heights(ax), result.correlation.transpose(*ordered).values.reshape(-1))
    assert ax.get_ylabel().startswith("correlation with the human RDM")


# ------------------------------------------------------------------------------------------------ all figures
def every_figure(study) -> dict[str, Figure]:
    return {"relevance_grid": plots.relevance_grid(study["ragged"], study["faces"]),
            "masking_curves": plots.masking_curves(study["one_seed"]),
            "generalization_heatmap": plots.generalization_heatmap(study["one_seed"]),
            "asymmetry_heatmap": plots.asymmetry_heatmap(study["one_seed"]),
            "generalization_by_relation": plots.generalization_by_relation(study["one_seed"]),
            "similarity_by_relation": plots.similarity_by_relation(similarity_result(seeds=(0,))),
            "region_relevance": plots.region_relevance(regions_result(seeds=(0,), ground_truth=False)),
            "method_comparison": plots.method_comparison(methods_result()),
            "rsa_bars": plots.rsa_bars(rsa_result(seeds=(0,)))}


def test_figures_leave_no_pyplot_state_and_save_as_png_and_svg(study, tmp_path):
    import matplotlib.pyplot as pyplot
    before = pyplot.get_fignums()
    figures = every_figure(study)
    assert pyplot.get_fignums() == before
    for name, figure in figures.items():
        for suffix in ("png", "svg"):
            figure.savefig(tmp_path / f"{name}.{suffix}")
            assert (tmp_path / f"{name}.{suffix}").stat().st_size > 1000
    assert matplotlib.rcParams["axes.facecolor"] == matplotlib.rcParamsDefault["axes.facecolor"]


@pytest.mark.parametrize("function, missing", [(plots.region_relevance, "share"),
                                               (plots.method_comparison, "ci_low"),
                                               (plots.rsa_bars, "correlation"),
                                               (plots.similarity_by_relation, "relation_mean"),
                                               (plots.generalization_heatmap, "generalization_index"),
                                               (plots.asymmetry_heatmap, "asymmetry_p_value")])
def test_results_without_their_variables_are_rejected_by_name(function, missing):
    with pytest.raises(PlotError, match=missing):
        function(xr.Dataset({"mean": (("attribution_method", "metric"), np.zeros((1, 1)))}))
    with pytest.raises(PlotTypeError, match="xarray.Dataset"):
        function({"share": 1})


def test_seed_summary_keeps_a_missing_interval_missing():
    from lrp_faces.result_layout import seed_summary
    values = np.array([[0.4, np.nan], [0.2, 0.6], [np.nan, np.nan]])  # rows: one seed, two seeds, none
    low, high = np.array([[np.nan, 0.0], [0.1, 0.5], [0.0, 0.0]]), np.array([[np.nan, 1.0], [0.3, 0.7], [1.0, 1.0]])
    mean, lower, upper = seed_summary(values, low, high, 0.9, axis=1)
    np.testing.assert_allclose(mean, [0.4, 0.4, np.nan])
    assert np.isnan(lower[0]) and np.isnan(upper[0])  # n_bootstrap=0: no interval, not (0.00-0.00)
    np.testing.assert_allclose([lower[1], upper[1]], t_interval([0.2, 0.6], 0.9))
    assert np.isnan([lower[2], upper[2]]).all()
    mean, lower, upper = seed_summary(np.array([np.nan, 0.3]), np.array([0.0, 0.2]), np.array([0.0, 0.5]))
    assert (float(mean), float(lower), float(upper)) == (0.3, 0.2, 0.5)  # the one seed's own interval
