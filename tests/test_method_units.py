"""The method comparison as units of lrp_faces.compute: (method, model, image block), resumable, split-invariant."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

import lrp_faces
from lrp_faces import analysis, masking
from lrp_faces.analysis import comparison
from lrp_faces.compute import cluster_client
from lrp_faces.faces import synthetic_faces
from lrp_faces.zoo import ModelSpec

from conftest import trained_scale

METHODS = ("epsilon_gamma_box", "gradient", "random")
SETTINGS = dict(fractions=(0.0, 0.25, 0.5), n_bootstrap=20, batch_size=2)


@pytest.fixture(scope="module")
def zoo():
    models = {}
    for index, spec in enumerate([ModelSpec("faces", "gender", 0), ModelSpec("faces", "identity", 0)]):
        torch.manual_seed(index)
        model = lrp_faces.vgg16(num_classes=2 if spec.task == "gender" else 3, width=1 / 8, pool_size=2,
                                classifier_width=16)
        models[spec] = trained_scale(model, torch.Generator().manual_seed(index)).eval()
    return models


@pytest.fixture(scope="module")
def faces():
    return synthetic_faces(3, 2, size=32)


@pytest.mark.parametrize("fill", ["mean", "noise"])
def test_any_split_into_blocks_gives_the_identical_comparison(zoo, faces, fill):
    whole = analysis.method_comparison(zoo, faces, METHODS, fill=fill, block_size=None, **SETTINGS)
    split = analysis.method_comparison(zoo, faces, METHODS, fill=fill, block_size=2, **SETTINGS)
    xr.testing.assert_identical(split, whole)


def test_a_block_s_aopc_follows_masking_curves_over_all_images(zoo, faces):
    """The units mask each block with the colours and random draws of the whole set: as masking.curves does."""
    spec = ModelSpec("faces", "gender", 0)
    result = analysis.method_comparison(zoo, faces, ("gradient",), models=[spec], fill="noise", seed=3,
                                        block_size=2, **SETTINGS)
    labels = faces.labels("gender")
    maps = lrp_faces.attribute(zoo[spec], faces.images, target=torch.as_tensor(labels), method="gradient",
                               batch_size=2)
    reference = masking.curves(zoo[spec], faces.images, labels, maps, fractions=SETTINGS["fractions"], fill="noise",
                               seed=3)
    value = result.value.sel(attribution_method="gradient", model=spec.id)
    np.testing.assert_array_equal(value.sel(metric="aopc_output"), reference.aopc_output)
    np.testing.assert_array_equal(value.sel(metric="aopc_probability"), reference.aopc_probability)


class Interrupted(Exception):
    pass


def counting_units(monkeypatch, fail_at: int | None = None) -> list:
    """Count the units that run (as their keys' arguments); raise at the ``fail_at``-th one."""
    ran, original = [], comparison.method_unit

    def unit(source, method, images, labels, truth, start, *rest):
        if fail_at is not None and len(ran) == fail_at:
            raise Interrupted(f"killed before unit {len(ran)}")
        ran.append((method.name, start))
        return original(source, method, images, labels, truth, start, *rest)

    monkeypatch.setattr(comparison, "method_unit", unit)
    return ran


def test_an_interrupted_comparison_resumes_from_its_finished_units(zoo, faces, tmp_path, monkeypatch):
    total = len(METHODS) * len(zoo) * 3  # 6 images in blocks of 2
    reference = analysis.method_comparison(zoo, faces, METHODS, block_size=2, **SETTINGS)
    with monkeypatch.context() as patch:
        ran = counting_units(patch, fail_at=5)
        with pytest.raises(Interrupted):
            analysis.method_comparison(zoo, faces, METHODS, block_size=2, units_dir=tmp_path, **SETTINGS)
    assert len(ran) == 5 and len(list((tmp_path / "methods").glob("*.nc"))) == 5
    with monkeypatch.context() as patch:
        ran = counting_units(patch)
        resumed = analysis.method_comparison(zoo, faces, METHODS, block_size=2, units_dir=tmp_path, **SETTINGS)
    assert len(ran) == total - 5
    xr.testing.assert_identical(resumed, reference)
    assert not list((tmp_path / "methods").glob("*.nc"))  # assembled: the units are gone


def test_a_changed_setting_recomputes_every_unit(zoo, faces, tmp_path, monkeypatch):
    with monkeypatch.context() as patch:
        counting_units(patch, fail_at=4)
        with pytest.raises(Interrupted):
            analysis.method_comparison(zoo, faces, METHODS, block_size=2, units_dir=tmp_path, **SETTINGS)
    changed = {**SETTINGS, "fractions": (0.0, 0.5)}
    with monkeypatch.context() as patch:
        ran = counting_units(patch)
        analysis.method_comparison(zoo, faces, METHODS, block_size=2, units_dir=tmp_path, **changed)
    assert len(ran) == len(METHODS) * len(zoo) * 3


@pytest.mark.slow
def test_a_local_cluster_gives_the_in_process_comparison(zoo, faces):
    reference = analysis.method_comparison(zoo, faces, METHODS, block_size=2, **SETTINGS)
    with cluster_client("local:2") as client:
        distributed = analysis.method_comparison(zoo, faces, METHODS, block_size=2, client=client, threads=1,
                                                 **SETTINGS)
    xr.testing.assert_identical(distributed, reference)
