"""Words and numbers of results (lrp_faces.formatting) and reading results in their layout (lrp_faces.result_layout):
the matplotlib-free modules that figures, the report and the command line share."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from lrp_faces.formatting import (MASKED_PIXELS, RELATION_LABELS, fraction_label, format_interval, format_number,
                                  format_setting, order_label, pretty)
from lrp_faces.masking import RELATIONS
from lrp_faces.result_layout import (AOPC_DEFINITION_ATTR, aopc_definition, computed_models, confidence_of,
                                     masking_mode, model_grid, pair_matrix)


def test_the_shared_modules_import_without_matplotlib():
    code = ("import sys, lrp_faces.formatting, lrp_faces.result_layout; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('matplotlib', 'seaborn')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert result.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------------- settings
@pytest.mark.parametrize("value", [0.1 + 0.2, 0.15000000000000002, 1 / 3, 2.5e-7, 123456789.123456789, -0.7 * 3,
                                   1e22, 5e-324, 0.1 * 3 * 1e-9])
def test_a_float_setting_is_printed_rounded_to_12_significant_digits_in_its_shortest_form(value):
    text = format_setting(value)
    rounded = float(f"{value:.12g}")  # the value to 12 significant digits
    assert float(text) == rounded
    assert text == repr(rounded)  # the shortest text that reads back as that float
    assert len(text) <= len(repr(value))


def test_float_noise_and_whole_floats_read_as_people_write_them():
    assert format_setting(0.15000000000000002) == "0.15"
    assert format_setting(1.0) == "1.0" and format_setting(np.float64(3.0)) == "3.0"
    assert format_setting(np.float32(0.15)) == "0.15"  # a float32 setting as written, not its float64 expansion
    assert format_setting(float("nan")) == "nan" and format_setting(-math.inf) == "-inf"


def test_settings_in_lists_and_tables_are_json_with_the_floats_rounded():
    value = {"fractions": [0.0, 0.05, 0.15000000000000002, 1.0], "fill": "mean", "patch": 2, "blur": None,
             "contrastive": True, "weights": np.array([0.30000000000000004, 2.0]), "name": "Zoë"}
    text = format_setting(value)
    expected = {**value, "fractions": [0.0, 0.05, 0.15, 1.0], "weights": [0.3, 2.0]}
    assert json.loads(text) == expected
    assert "0.15000000000000002" not in text and "Zoë" in text
    assert format_setting("a string") == "a string" and format_setting(["a"]) == '["a"]'
    assert format_setting((1, 2)) == "[1, 2]" and format_setting(np.int64(7)) == "7"
    assert format_setting(False) == "false"


# ------------------------------------------------------------------------------------------------------ numbers
def test_intervals_use_a_true_minus_and_to_between_bounds_below_zero():
    assert format_interval(0.93, 0.881, 0.97) == "0.93 (0.88–0.97)"
    assert format_interval(0.1, -0.2, 0.4) == "0.10 (−0.20 to 0.40)"
    assert format_interval(0.5, np.nan, 0.7) == "0.50"
    assert format_interval(np.nan, 0.1, 0.2) == "n/a" and format_interval(None, None, None) == "n/a"
    assert format_number(-0.25) == "−0.25" and format_number(np.inf) == "n/a" and format_number(1.23456, 3) == "1.235"


def test_every_relation_of_two_models_has_a_label():
    assert set(RELATION_LABELS) == set(RELATIONS)
    assert pretty("different_task", RELATION_LABELS) == "other task" and pretty("some_name") == "some name"


@pytest.mark.parametrize("mode, kept", [("remove", False), ("keep", True)])
def test_order_and_fraction_labels_say_whether_pixels_are_hidden_or_kept(mode, kept):
    assert fraction_label(mode).startswith(f"fraction of pixels {MASKED_PIXELS[mode]}")
    assert fraction_label(mode, "patches").startswith("fraction of patches")
    assert ("kept" in order_label("morf", mode)) is kept and ("kept" in order_label("lerf", mode)) is kept
    assert order_label("morf", mode).startswith("MoRF") and order_label("random", mode) == "random order"


# ------------------------------------------------------------------------------------------------ result layout
def test_masking_mode_and_aopc_definition_come_from_the_attributes():
    definition = "mean over fractions > 0 of f(x_kept) - f(x_all_filled)"
    keep = xr.Dataset(attrs={"mode": "keep", AOPC_DEFINITION_ATTR: definition})
    assert masking_mode(keep) == "keep" and aopc_definition(keep) == definition
    old = xr.Dataset(attrs={"order": "morf"})  # written before results recorded their mode
    assert masking_mode(old) == "remove" and aopc_definition(old) is None
    assert masking_mode({"mode": "keep"}) == "keep"


@pytest.mark.parametrize("attrs, expected", [({"confidence": 0.9}, 0.9), ({}, 0.95), ({"confidence": "x"}, 0.95),
                                             ({"confidence": 1.5}, 0.95)])
def test_the_confidence_of_a_result_falls_back_to_95_percent(attrs, expected):
    assert confidence_of(xr.Dataset(attrs=attrs)) == expected


def test_pair_matrix_puts_sources_in_rows_in_grid_order():
    rng = np.random.default_rng(0)
    grid = {"pretraining": ["faces", "objects"], "task": ["gender"], "seed": [0, 1]}
    dims = [f"{side}_{dim}" for side in ("target", "source") for dim in grid]  # stored target-first on purpose
    values = rng.normal(size=[len(grid[dim.split("_", 1)[1]]) for dim in dims])
    result = xr.Dataset({"g": (dims, values)}, coords={dim: grid[dim.split("_", 1)[1]] for dim in dims})
    models = model_grid(result, "source_")
    assert models == [("faces", "gender", 0), ("faces", "gender", 1), ("objects", "gender", 0),
                      ("objects", "gender", 1)]
    matrix = pair_matrix(result, "g")
    for row, source in enumerate(models):
        for column, target in enumerate(models):
            where = {**{f"source_{dim}": value for dim, value in zip(grid, source)},
                     **{f"target_{dim}": value for dim, value in zip(grid, target)}}
            assert matrix[row, column] == float(result["g"].sel(where))


def test_computed_models_skip_the_models_a_ragged_cube_lacks():
    computed = xr.DataArray([[True, False], [True, True]], dims=("task", "seed"))
    cube = xr.Dataset(coords={"pretraining": ["faces"], "task": ["gender", "identity"], "seed": [0, 1],
                              "computed": computed})
    assert computed_models(cube) == [("faces", "gender", 0), ("faces", "identity", 0), ("faces", "identity", 1)]


@pytest.mark.parametrize("module", ["lrp_faces.formatting", "lrp_faces.result_layout"])
def test_the_module_examples_run(module):
    import doctest
    import importlib
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_json_containers_in_strings_are_shown_rounded_like_the_containers():
    assert format_setting('{"gamma": 0.30000000000000004, "steps": [1.0, 0.15000000000000002]}') == \
        '{"gamma": 0.3, "steps": [1.0, 0.15]}'
    for text in ("[not json", "{}x", "0.15000000000000002", " plain text"):
        assert format_setting(text) == text


def test_lrp_faces_info_shows_the_settings_of_a_result_rounded(tmp_path):
    from lrp_faces.cli.info import describe
    from lrp_faces.netcdf import write_dataset

    path = write_dataset(xr.Dataset({"value": ("x", np.arange(3.0))}), tmp_path / "result.nc",
                         attrs={"road_noise": 0.15000000000000002, "fractions": [0.0, 0.30000000000000004]})
    lines = describe(path)
    assert "    road_noise = 0.15" in lines and "    fractions = [0.0, 0.3]" in lines
