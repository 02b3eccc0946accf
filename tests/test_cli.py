"""The ``lrp-faces`` command: help, exit codes, study files, result files, steps with resume, info, and the demo.

Most tests run a tiny study (four width-1/8 VGG-16s on 32-px synthetic faces) in-process through click's CliRunner.
Those marked ``e2e`` run commands end to end and take longer: the command as a subprocess, a study rerun four times,
the HTML report, and ``lrp-faces demo --quick`` (about a minute).
"""
import dataclasses
import doctest
import errno
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from click.testing import CliRunner
from PIL import Image

import lrp_faces
from conftest import small_vgg
from lrp_faces import cube as cubes
from lrp_faces.cli import main
from lrp_faces.cli.demo import demo_document, demo_study
from lrp_faces.cli.runner import evenly_spaced, load_dataset
from lrp_faces.errors import LRPFacesError
from lrp_faces.faces import FaceDataView
from lrp_faces.cli.study import (DATASET_SETTINGS, MaskingSettings, Study, StudyError, read_result, result_attrs,
                                 write_result)
from lrp_faces.files import versions
from lrp_faces.masking import RELATIONS, MaskingConfig
from lrp_faces.models import save_model
from lrp_faces.zoo import ModelSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "benchmarks" / "suites"
IDENTITIES, PER_IDENTITY, SIZE = 4, 2, 32
MODELS = [("imagenet", "gender", 0), ("imagenet", "identity", 0), ("vggface", "gender", 0), ("vggface", "identity", 0)]

TINY = """
[study]
name = "tiny"

[zoo]
image_size = 32
{models}

[dataset]
kind = "synthetic"
identities = 4
images_per_identity = 2
seed = 3

[attribution]
method = "epsilon_gamma_box"
batch_size = 4
[attribution.params]
gamma = 0.25

[masking]
fractions = [0.0, 0.5]
n_bootstrap = 20
n_permutations = 20

[analysis]
run = ["similarity", "regions", "methods", "rsa"]
[analysis.similarity]
n_bootstrap = 20
[analysis.regions]
n_bootstrap = 20
[analysis.methods]
methods = ["epsilon_gamma_box", "gradient"]
models = ["imagenet/gender/0", "vggface/identity/0"]
max_images = 4
fractions = [0.0, 0.5]
n_bootstrap = 20
[analysis.rsa]
human_rdm = "synthetic"
kinds = ["features", "relevance"]
n_permutations = 50
n_bootstrap = 20

[report]
enabled = false
"""


def model_table(models=MODELS, folder="models") -> str:
    return "\n".join(f'[[zoo.models]]\npretraining = "{p}"\ntask = "{t}"\nseed = {s}\npath = "{folder}/{p}-{t}-{s}.pt"'
                     for p, t, s in models)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """Four tiny VGG-16 checkpoints (gender: 2 classes, identity: 4), written once for the module."""
    folder = tmp_path_factory.mktemp("checkpoints")
    for index, (pretraining, task, seed) in enumerate(MODELS):
        model = small_vgg(num_classes=2 if task == "gender" else IDENTITIES, seed=index)
        save_model(model, folder / f"{pretraining}-{task}-{seed}.pt", spec=ModelSpec(pretraining, task, seed))
    return folder


@pytest.fixture
def study_file(tmp_path, checkpoints):
    """The tiny study file in a fresh folder, next to a copy of the checkpoints."""
    shutil.copytree(checkpoints, tmp_path / "models")
    path = tmp_path / "study.toml"
    path.write_text(TINY.format(models=model_table()))
    return path


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


@pytest.fixture(scope="module")
def finished(tmp_path_factory, checkpoints):
    """The tiny study run once to the end (report off); shared by the tests that only read its results."""
    folder = tmp_path_factory.mktemp("finished")
    shutil.copytree(checkpoints, folder / "models")
    (folder / "study.toml").write_text(TINY.format(models=model_table()))
    result = invoke("run", folder / "study.toml", "--out", folder / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    return folder / "out", result


# ------------------------------------------------------------------------------------------------ the command line
def test_help_lists_every_subcommand_with_a_one_line_purpose():
    result = invoke("--help")
    assert result.exit_code == 0
    listed = dict(re.findall(r"^  (\w+)\s{2,}(.+)$", result.output.split("Commands:")[1], flags=re.M))
    assert set(listed) == {"demo", "run", "attribute", "mask", "analyze", "report", "info", "methods", "zoo", "plan"}
    for name, purpose in listed.items():
        assert purpose.endswith(".") and not purpose.endswith("..."), (name, purpose)


def test_demo_help_names_the_default_output_directory():
    result = invoke("demo", "--help")
    assert result.exit_code == 0 and "./lrp-faces-demo" in result.output and "--quick" in result.output


def test_methods_lists_the_registry():
    result = invoke("methods")
    assert result.exit_code == 0
    assert result.output.split() == sorted(result.output.split()) == lrp_faces.methods.names()


@pytest.mark.parametrize("arguments", [["nonsense"], ["run"], ["info"], ["demo", "--colour"],
                                       ["analyze", "x.toml", "--only", "colour"], ["run", "x.toml", "--threads", "0"]])
def test_usage_errors_exit_with_2(arguments):
    result = invoke(*arguments)
    assert result.exit_code == 2, result.output
    assert "Usage:" in result.output


def test_failures_exit_with_1_and_a_one_line_cause(tmp_path):
    result = invoke("run", tmp_path / "absent.toml")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[-1].startswith("Error: ") and "absent.toml" in lines[-1] and "does not exist" in lines[-1]
    assert "Traceback" not in result.output


def test_debug_shows_the_exception_instead(tmp_path):
    result = invoke("--debug", "run", tmp_path / "absent.toml")
    assert result.exit_code == 1 and isinstance(result.exception, StudyError)
    after = invoke("run", tmp_path / "absent.toml", "--debug")
    assert after.exit_code == 1 and isinstance(after.exception, StudyError)


def test_only_user_errors_are_shown_without_the_debug_hint():
    from lrp_faces.cli import _describe
    assert _describe(StudyError("bad key")) == "bad key"
    assert _describe(FileNotFoundError("no such file")) == "no such file"
    for bug in (IndexError("index 3 is out of bounds"), KeyError("seed"), AttributeError("no .lrp")):
        assert _describe(bug).endswith("(an internal error; rerun with --debug for the traceback)")
    assert _describe(KeyError("seed")).startswith("KeyError: seed ")


def test_bare_library_errors_are_reported_as_internal_errors():
    from lrp_faces.cli import _describe
    for bug in (ValueError("operands could not be broadcast together"), TypeError("unsupported operand type(s)"),
                OSError(errno.EIO, "Input/output error")):
        assert _describe(bug).endswith("(an internal error; rerun with --debug for the traceback)"), bug


def test_errors_about_the_users_paths_and_a_full_disk_are_user_errors():
    from lrp_faces.cli import _describe
    for error in (PermissionError(errno.EACCES, "Permission denied", "out/study.json"),
                  IsADirectoryError(errno.EISDIR, "Is a directory", "ratings.csv"),
                  NotADirectoryError(errno.ENOTDIR, "Not a directory", "out/cube"),
                  OSError(errno.ENOSPC, "No space left on device", "out/masking.nc")):
        assert _describe(error) == str(error), error


def test_a_bug_inside_a_command_is_one_line_that_says_it_is_internal(monkeypatch, tmp_path):
    import lrp_faces.cli.info

    def broken(path):
        raise ValueError("could not broadcast input array from shape (3,) into shape (2,)")
    monkeypatch.setattr(lrp_faces.cli.info, "describe", broken)
    result = invoke("info", tmp_path)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        "Error: ValueError: could not broadcast input array from shape (3,) into shape (2,) (an internal error; "
        "rerun with --debug for the traceback)"]


def _unknown_key(folder, results):
    (folder / "study.toml").write_text((folder / "study.toml").read_text().replace("[masking]\n",
                                                                                 "[masking]\ncolour = 1\n"))
    return ["run", folder / "study.toml"], "study.toml: [masking]: unknown key(s) ['colour']"


def _missing_checkpoint(folder, results):
    (folder / "models" / "vggface-gender-0.pt").unlink()
    return ["attribute", folder / "study.toml"], "vggface-gender-0.pt' does not exist"


def _damaged_checkpoint(folder, results):
    (folder / "models" / "vggface-gender-0.pt").write_bytes(b"not a checkpoint" * 64)
    return ["attribute", folder / "study.toml"], "cannot read lrp_faces checkpoint"


def _unreadable_image(folder, results):
    (folder / "faces" / "a").mkdir(parents=True)
    (folder / "faces" / "a" / "0.png").write_bytes(b"not a png")
    text = (folder / "study.toml").read_text().replace(
        'kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3', 'kind = "folders"\npath = "faces"')
    (folder / "study.toml").write_text(text.replace('human_rdm = "synthetic"\n', "").replace('"methods", "rsa"]',
                                                                                          '"methods"]'))
    return ["attribute", folder / "study.toml"], "cannot read image"


def _ratings_in_another_encoding(folder, results):
    shutil.copytree(results / "cube", folder / "out" / "cube")
    (folder / "ratings.csv").write_bytes("image_a,image_b,dissimilarity\nR\xe9mi,b,1\n".encode("latin-1"))
    (folder / "study.toml").write_text((folder / "study.toml").read_text().replace('human_rdm = "synthetic"',
                                                                                 'human_rdm = "ratings.csv"'))
    return ["analyze", folder / "study.toml", "--only", "rsa"], "ratings.csv: is not UTF-8 text"


def _damaged_result_file(folder, results):
    (folder / "masking.nc").write_bytes((results / "masking.nc").read_bytes()[:2000])
    return ["info", folder / "masking.nc"], "masking.nc' is not a readable NetCDF4 file (truncated or damaged"


def _missing_path(folder, results):
    return ["info", folder / "absent"], "absent' does not exist"


@pytest.mark.parametrize("make", [_unknown_key, _missing_checkpoint, _damaged_checkpoint, _unreadable_image,
                                  _ratings_in_another_encoding, _damaged_result_file, _missing_path],
                         ids=lambda make: make.__name__.strip("_"))
def test_user_errors_through_the_command_are_package_errors_in_one_line(make, study_file, finished):
    arguments, expected = make(study_file.parent, finished[0])
    if arguments[0] != "info":
        arguments += ["--out", study_file.parent / "out", "-q"]
    result = invoke(*arguments)
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and expected in lines[0], result.output
    assert "internal error" not in lines[0]
    debug = invoke("--debug", *arguments)
    assert isinstance(debug.exception, LRPFacesError) or isinstance(debug.exception, FileNotFoundError), \
        repr(debug.exception)


def test_nan_arithmetic_notes_are_dropped_only_from_lrp_faces_and_numpy(capsys):
    import warnings
    from lrp_faces.cli import _warnings_as_lines
    with _warnings_as_lines():
        for module in ("lrp_faces.analysis.similarity", "numpy", "scipy.stats"):
            warnings.warn_explicit("invalid value encountered in divide", RuntimeWarning, "x.py", 1, module=module)
        warnings.warn_explicit("The BCa confidence interval cannot be calculated", RuntimeWarning, "x.py", 2,
                               module="scipy.stats")
    lines = capsys.readouterr().err.splitlines()
    assert lines == ["Warning: invalid value encountered in divide",
                     "Warning: The BCa confidence interval cannot be calculated"]


def test_a_cube_model_missing_from_the_zoo_is_the_users_error(finished, tmp_path):
    shutil.copytree(finished[0] / "cube", tmp_path / "out" / "cube")
    shutil.copytree(finished[0].parent / "models", tmp_path / "models")
    study = tmp_path / "study.toml"
    study.write_text(TINY.format(models=model_table(MODELS[:3])))
    result = invoke("mask", study, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: ") and "missing from the zoo: vggface-identity-seed0" in last
    assert "internal error" not in last


def test_a_step_before_its_input_exists_says_which_step_to_run_first(study_file, tmp_path):
    result = invoke("mask", study_file, "--out", tmp_path / "out", "-q")
    assert result.exit_code == 1
    assert "no relevance cube" in result.output and "lrp-faces attribute" in result.output


@pytest.mark.e2e
def test_the_command_runs_as_a_subprocess(tmp_path):
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    ok = subprocess.run([sys.executable, "-m", "lrp_faces.cli", "methods"], capture_output=True, text=True,
                        env=environment, timeout=120)
    assert ok.returncode == 0 and ok.stdout.split() == lrp_faces.methods.names()
    script = Path(sys.executable).with_name("lrp-faces")  # the console script, where the package is installed
    command = [str(script)] if script.exists() else [sys.executable, "-m", "lrp_faces.cli"]
    failed = subprocess.run(command + ["info", str(tmp_path / "absent.nc")], capture_output=True, text=True,
                            env=environment, timeout=120)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.strip().splitlines() == [f"Error: {str(tmp_path / 'absent.nc')!r} does not exist"]


# ------------------------------------------------------------------------------------------------- study files
def test_the_tiny_study_reads_as_declared(study_file):
    study = Study.from_toml(study_file)
    assert study.name == "tiny" and study.image_size == SIZE and len(study.zoo.models) == 4
    assert study.attribution.params == {"gamma": 0.25} and study.masking.config.fractions == (0.0, 0.5)
    assert study.analysis.methods["methods"] == ["epsilon_gamma_box", "gradient"]
    assert study.analysis.human_rdm == "synthetic" and study.report is False
    assert json.loads(json.dumps(study.to_dict()))["zoo"]["models"][0]["format"] == "lrp_faces"


@pytest.mark.parametrize("edit, message", [
    (lambda t: t.replace('kind = "synthetic"\n', ""), r"\[dataset\]: missing key 'kind' \(str\)"),
    (lambda t: t.replace("n_permutations = 20", 'n_permutations = "20"'),
     r"\[masking\]\.n_permutations: expected int, got str '20'"),
    (lambda t: t.replace("fractions = [0.0, 0.5]\nn_bootstrap = 20\nn_permutations",
                         "fractions = 0.5\nn_bootstrap = 20\nn_permutations"),
     r"\[masking\]\.fractions: expected array, got float"),
    (lambda t: t.replace("fractions = [0.0, 0.5]\nn_bootstrap = 20\nn_permutations",
                         "fractions = [0.0, \"half\"]\nn_bootstrap = 20\nn_permutations"),
     r"\[masking\]\.fractions\[1\]: expected float \(a number\), got str 'half'"),
    (lambda t: t.replace("[masking]\n", "[masking]\ncolour = 1\n"), r"\[masking\]: unknown key\(s\) \['colour'\]"),
    (lambda t: t.replace("[masking]\n", '[masking]\nfill = "pink"\n'),
     r"\[masking\]\.fill: must be one of \('mean', 'zero', 'blur', 'noise', 'road'\), got 'pink'"),
    (lambda t: t.replace('path = "models/vggface-gender-0.pt"', 'path = "models/vggface-gender-0.pt"\nformat = "onnx"'),
     r"\[zoo\]\.models\[2\]: model vggface-gender-seed0: format must be one of \('lrp_faces', 'torchvision', "
     r"'vgg_face'\), got 'onnx'"),
    (lambda t: t.replace("seed = 0\npath", 'seed = "0"\npath', 1), r"\[zoo\]\.models\[0\]\.seed: expected int"),
    (lambda t: t.replace('method = "epsilon_gamma_box"', 'method = "lime"'),
     r"\[attribution\]\.method: expected one of \[.*'epsilon_gamma_box'.*\], got 'lime'"),
    (lambda t: t.replace("gamma = 0.25", 'gamma = "high"'),
     r"\[attribution\.params\]\.gamma: expected float \(a number\), got str 'high'"),
    (lambda t: t.replace("gamma = 0.25", "alpha = 1.0"), r"\[attribution\.params\]: unknown key 'alpha'"),
    (lambda t: t.replace("[analysis.similarity]\n", '[analysis.similarity]\nmetric = 3\n'),
     r"\[analysis\.similarity\]\.metric: expected str, got int 3"),
    (lambda t: t.replace("[analysis.similarity]\n", '[analysis.similarity]\nmetrik = "cosine"\n'),
     r"\[analysis\.similarity\]: unknown key 'metrik'"),
    (lambda t: t.replace('run = ["similarity"', 'run = ["clustering", "similarity"'),
     r"\[analysis\]\.run\[0\]: expected one of \['similarity', 'regions', 'methods', 'rsa'\], got 'clustering'"),
    (lambda t: t.replace('models = ["imagenet/gender/0"', 'models = ["imagenet-gender-0"'),
     r"\[analysis\.methods\]\.models\[0\]: a model id looks like 'faces/gender/0'"),
    (lambda t: t.replace('methods = ["epsilon_gamma_box", "gradient"]', 'methods = ["gradient", "shap"]'),
     r"\[analysis\.methods\]\.methods\[1\]: expected one of"),
    (lambda t: t.replace('human_rdm = "synthetic"', "human_rdm = 1"),
     r"\[analysis\.rsa\]\.human_rdm: expected str"),
    (lambda t: t.replace('human_rdm = "synthetic"', 'human_rdm = "ratings.csv"'),
     r"\[analysis\.rsa\]\.human_rdm: file .*ratings\.csv.* does not exist"),
    (lambda t: t.replace("[report]\nenabled = false", "[report]\nenabled = 0"),
     r"\[report\]\.enabled: expected bool \(true or false\), got int 0"),
    (lambda t: t + "\n[extra]\n", r"study\.toml: unknown key\(s\) \['extra'\]"),
    (lambda t: t.replace('kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3', 'kind = "demo"'),
     r"\[dataset\]\.kind: \"demo\" .* goes with the demo zoo"),
    (lambda t: t.replace('kind = "synthetic"', 'kind = "folders"\npath = "faces"'),
     r"\[dataset\]\.path: .*faces.* does not exist"),
    (lambda t: t.replace("n_permutations = 20", "n_permutations = 20\nconfidence = 1.5"),
     r"\[masking\]\.confidence: expected a float in \(0, 1\)"),
    (lambda t: t.replace("seed = 3", "seed = 3\n") + "[zoo.extra]\n", r"\[zoo\]: unknown key\(s\) \['extra'\]"),
    (lambda t: t.replace("seed = 0\npath", "seed = 0\n", 1), "is not valid TOML|missing key 'path'"),
    (lambda t: t.replace("[masking]\n", "[masking]\npatch = 0\n"),
     r"\[masking\]\.patch: must be an integer >= 1, got 0"),
    (lambda t: t.replace("[masking]\n", '[masking]\nfill_value = "grey"\n'),
     r"\[masking\]\.fill_value: must be a number, an RGB triple or \(N, 3\) colours, got 'grey'"),
    (lambda t: t.replace("[masking]\n", '[masking]\nfill = "zero"\nfill_value = 0.5\n'),
     r"\[masking\]: fill_value is used by fill='mean'"),
    (lambda t: t.replace("[masking]\n", '[masking]\norder = "random"\n'),
     r"\[masking\]\.order: expected 'morf' or 'lerf' \(the random order is always the baseline\)"),
    (lambda t: t.replace("[analysis.rsa]\n", '[analysis.rsa]\ndevice = "cpu"\n'),
     r"\[analysis\.rsa\]: unknown key 'device'"),
    (lambda t: t.replace("seed = 3\n", "seed = 3\nimage_size = 16\n", 1),
     r"\[dataset\]\.image_size: expected int >= 32, got 16"),
    (lambda t: t.replace('methods = ["epsilon_gamma_box", "gradient"]',
                         'methods = ["epsilon_gamma_box", "integrated_gradients"]\n'
                         '[analysis.methods.method_params.integrated_gradients]\nsteps = 0'),
     r"\[analysis\.methods\.method_params\.integrated_gradients\]: .*steps"),
])
def test_study_file_errors_name_the_key_and_the_expected_type(study_file, edit, message):
    study_file.write_text(edit(study_file.read_text()))
    with pytest.raises(StudyError, match=message) as error:
        Study.from_toml(study_file)
    assert "study.toml" in str(error.value)


def test_study_file_errors_reach_the_command_line_as_one_line(study_file):
    study_file.write_text(study_file.read_text().replace("n_permutations = 20", 'n_permutations = "20"'))
    result = invoke("run", study_file, "--no-progress")
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1] == (
        "Error: study.toml: [masking].n_permutations: expected int, got str '20'")


def test_real_data_needs_a_human_rdm_or_no_rsa(tmp_path, checkpoints):
    folders = tmp_path / "faces"
    (folders / "a").mkdir(parents=True)
    document = TINY.format(models=model_table(folder=str(checkpoints))).replace(
        'kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3', 'kind = "folders"\npath = "faces"')
    (tmp_path / "study.toml").write_text(document.replace('human_rdm = "synthetic"\n', ""))
    with pytest.raises(StudyError, match=r"\[analysis\.rsa\]: missing key 'human_rdm'"):
        Study.from_toml(tmp_path / "study.toml")
    (tmp_path / "study.toml").write_text(document)
    with pytest.raises(StudyError, match=r"\"synthetic\" \(parameter-space distances\) needs synthetic faces"):
        Study.from_toml(tmp_path / "study.toml")


STUDY_MASKING = ("score", "n_bootstrap", "n_permutations", "confidence", "batch_size", "precision", "max_images")


def test_every_masking_config_field_is_a_key_of_the_masking_table(study_file):
    study_file.write_text(study_file.read_text().replace(
        "[masking]\n", "[masking]\nfill_value = [0.5, 0.25, 0]\nroad_noise = 0.02\n"))
    settings = Study.from_toml(study_file).masking
    assert settings.config == MaskingConfig(fractions=(0.0, 0.5), fill_value=(0.5, 0.25, 0.0), road_noise=0.02)
    fields = {field.name for field in dataclasses.fields(MaskingConfig)}
    assert set(settings.to_dict()) == fields | set(STUDY_MASKING)
    assert settings.arguments() == {**settings.config.to_dict(), "score": "output", "n_bootstrap": 20,
                                    "n_permutations": 20, "confidence": 0.95, "batch_size": None,
                                    "precision": "float32"}


def test_a_new_masking_config_field_is_a_study_key_without_other_edits(study_file, monkeypatch):
    import lrp_faces.cli.study

    @dataclasses.dataclass(frozen=True)
    class WithJitter(MaskingConfig):
        jitter: float = 0.0
    monkeypatch.setattr(lrp_faces.cli.study, "MaskingConfig", WithJitter)
    study_file.write_text(study_file.read_text().replace("[masking]\n", "[masking]\njitter = 1.5\n"))
    settings = Study.from_toml(study_file).masking
    assert settings.config.jitter == 1.5 and settings.to_dict()["jitter"] == 1.5
    assert settings.arguments()["jitter"] == 1.5
    study_file.write_text(study_file.read_text().replace("jitter = 1.5", 'jitter = "some"'))
    with pytest.raises(StudyError, match=r"\[masking\]\.jitter: expected float \(a number\), got str 'some'"):
        Study.from_toml(study_file)


def test_the_masking_keys_of_earlier_study_files_read_unchanged(study_file):
    earlier = {"fractions": [0.0, 0.5], "order": "lerf", "fill": "blur", "patch": 2, "mode": "remove", "seed": 3,
               "blur_sigma": 1.5, "road_noise": 0.02, "score": "probability", "n_bootstrap": 5, "n_permutations": 6,
               "confidence": 0.9, "batch_size": 8, "max_images": 4}
    table = "\n".join(f"{key} = {json.dumps(value)}" for key, value in earlier.items())
    text = study_file.read_text()
    start = text.index("[masking]\n")
    study_file.write_text(text[:start] + "[masking]\n" + table + "\n\n" + text[text.index("[analysis]"):])
    settings = Study.from_toml(study_file).masking.to_dict()
    assert {key: settings[key] for key in earlier} == earlier and settings["fill_value"] is None


@pytest.mark.parametrize("settings, message", [
    ({"config": MaskingConfig(order="random")}, "random order is always the baseline"),
    ({"config": MaskingConfig(fractions=(0.0,))}, "at least one fraction > 0"),
    ({"score": "logit"}, r"\[masking\]\.score: expected one of"),
    ({"config": {"fractions": (0.0, 0.5)}}, "config must be a MaskingConfig"),
])
def test_masking_settings_check_what_the_study_needs(settings, message):
    with pytest.raises(StudyError, match=message):
        MaskingSettings(**settings)


def test_the_demo_suite_declares_the_demo():
    from_file = Study.from_toml(SUITES / "demo.toml").to_dict()
    demo = demo_study().to_dict()
    for settings in (from_file, demo):
        settings.pop("source")
    assert from_file == demo


@pytest.mark.parametrize("kind, table", [
    ("synthetic", 'kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3'),
    ("folders", 'kind = "folders"\npath = "faces"'),
    ("manifest", 'kind = "manifest"\npath = "faces.csv"'),
])
def test_dataset_settings_hold_only_the_settings_of_their_kind(study_file, kind, table):
    (study_file.parent / "faces").mkdir()
    (study_file.parent / "faces.csv").write_text("path,identity,gender\n")
    text = study_file.read_text().replace('kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3',
                                          table)
    study_file.write_text(text if kind == "synthetic" else text.replace('human_rdm = "synthetic"\n', "").replace(
        '"methods", "rsa"]', '"methods"]'))
    settings = Study.from_toml(study_file).dataset.to_dict()
    assert set(settings) == set(DATASET_SETTINGS[kind])
    shown = invoke("info", study_file)
    assert shown.exit_code == 0, shown.output
    assert ("dataset.identities = " in shown.output) == (kind == "synthetic")
    assert ("dataset.path = " in shown.output) == (kind != "synthetic")


def test_a_dataset_setting_of_another_kind_is_an_unknown_key(study_file):
    (study_file.parent / "faces").mkdir()
    study_file.write_text(study_file.read_text().replace('kind = "synthetic"', 'kind = "folders"\npath = "faces"')
                          .replace('human_rdm = "synthetic"\n', "").replace('"methods", "rsa"]', '"methods"]'))
    with pytest.raises(StudyError, match=r"\[dataset\]: unknown key\(s\) \['identities', 'images_per_identity', "
                                         r"'seed'\]"):
        Study.from_toml(study_file)


def test_the_paper_template_is_a_valid_study_once_its_files_exist(tmp_path):
    """Every placeholder path of paper.toml, created empty, makes it a study with the 2 x 2 x N grid."""
    import tomllib
    text = (SUITES / "paper.toml").read_text()
    document = tomllib.loads(text)
    for model in document["zoo"]["models"]:
        (tmp_path / model["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / model["path"]).touch()
    (tmp_path / document["dataset"]["path"]).mkdir(parents=True)
    (tmp_path / document["analysis"]["rsa"]["human_rdm"]).touch()
    shutil.copy(SUITES / "paper.toml", tmp_path / "paper.toml")
    study = Study.from_toml(tmp_path / "paper.toml")
    specs = study.zoo.models.specs
    assert {spec.pretraining for spec in specs} == {"imagenet", "vggface"}
    assert {spec.task for spec in specs} == {"gender", "identity"} and len({spec.seed for spec in specs}) >= 3
    assert {entry.format for entry in study.zoo.models.entries.values()} <= {"lrp_faces", "torchvision", "vgg_face"}
    assert study.image_size == 224


# -------------------------------------------------------------------------------------------------- result files
def test_write_result_stores_strings_safely_and_reads_them_back_as_str(tmp_path):
    ids = ["id000_img00", "ünïcode/ü", ""]
    index = pd.MultiIndex.from_product([["a", "b"], [0, 1]], names=["letter", "number"])
    dataset = xr.Dataset(
        {"value": (("image", "pair"), np.arange(12.0).reshape(3, 4)),
         "relation": (("image",), np.array(["same_model", "both_different", "x"], dtype=object)),
         "flag": (("image",), np.array([True, False, True])),
         "raw": (("image",), np.array([b"bytes", b"b", b""])),
         "gaps": (("image",), np.array(["a", None, np.nan], dtype=object), {"ok": True, "meta": {"b": 1}})},
        coords=xr.Coordinates.from_pandas_multiindex(index, "pair").assign(
            image=ids, fixed=("image", np.array(["p", "qq", "r"], dtype="U2"))),
        attrs={"flag": True, "none": None, "settings": {"a": [1, 2]}, "text": "ok", "number": 1.5})
    path = write_result(dataset, tmp_path / "result.nc", settings={"n_bootstrap": 10})
    back = read_result(path)
    for name in ("image", "relation", "fixed", "raw", "gaps", "letter"):
        values = back[name].values
        assert all(type(value) is str for value in values.ravel()), name
    assert list(back["image"].values) == ids
    assert list(back["raw"].values) == ["bytes", "b", ""] and list(back["gaps"].values) == ["a", "", ""]
    assert back["gaps"].attrs["ok"] == 1 and json.loads(back["gaps"].attrs["meta"]) == {"b": 1}
    assert back["flag"].dtype == bool and list(back["flag"].values) == [True, False, True]
    np.testing.assert_array_equal(back["value"].values, dataset["value"].values)
    assert back.attrs["flag"] == 1 and json.loads(back.attrs["settings"]) == {"a": [1, 2]}
    assert "none" not in back.attrs and json.loads(back.attrs["lrp_faces_step"]) == {"n_bootstrap": 10}
    assert [file.name for file in tmp_path.iterdir()] == ["result.nc"]


def test_write_result_leaves_the_old_file_when_writing_fails(tmp_path):
    path = write_result(xr.Dataset({"value": ("x", [1.0, 2.0])}), tmp_path / "result.nc")
    before = path.read_bytes()
    broken = xr.Dataset({"value": ("x", np.array([1 + 2j, 3j]))})  # NetCDF4 has no complex type
    with pytest.raises(Exception):
        write_result(broken, path)
    assert path.read_bytes() == before and [file.name for file in tmp_path.iterdir()] == ["result.nc"]
    with pytest.raises(TypeError, match="xarray.Dataset"):
        write_result({"value": 1}, path)


# --------------------------------------------------------------------------------------------- data of a study
def test_load_dataset_keeps_max_images_evenly_spaced_and_maps_task_labels(study_file):
    assert list(evenly_spaced(10, 4)) == [0, 3, 6, 9] and list(evenly_spaced(3, None)) == [0, 1, 2]
    text = study_file.read_text().replace("seed = 3", "seed = 3\nmax_images = 4\n[dataset.labels]\nsex = \"gender\"")
    study_file.write_text(text)
    study = Study.from_toml(study_file)
    data = load_dataset(study, progress=False)
    full = lrp_faces.synthetic_faces(IDENTITIES, PER_IDENTITY, size=SIZE, seed=3)
    assert isinstance(data, FaceDataView) and data.image_ids == [full.image_ids[i] for i in (0, 2, 5, 7)]
    np.testing.assert_array_equal(data.labels("sex"), full.gender[[0, 2, 5, 7]])
    np.testing.assert_array_equal(data.labels("identity"), full.identity[[0, 2, 5, 7]])
    np.testing.assert_array_equal(data.task_mask("sex"), full.task_mask("gender")[[0, 2, 5, 7]])
    assert data.images.shape == (4, 3, SIZE, SIZE) and data.regions.shape == (4, SIZE, SIZE)


def test_a_folder_of_real_faces_runs_with_template_regions_and_no_ground_truth(tmp_path, checkpoints):
    generator = np.random.default_rng(0)
    for identity in range(IDENTITIES):
        (tmp_path / "faces" / f"person{identity}").mkdir(parents=True)
        for image in range(2):
            pixels = generator.integers(0, 256, (40, 48, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "faces" / f"person{identity}" / f"{image}.png")
    identity_models = [model for model in MODELS if model[1] == "identity"]
    document = TINY.format(models=model_table(identity_models, folder=str(checkpoints))).replace(
        'kind = "synthetic"\nidentities = 4\nimages_per_identity = 2\nseed = 3', 'kind = "folders"\npath = "faces"')
    (tmp_path / "study.toml").write_text(document.replace('human_rdm = "synthetic"\n', "")
                                         .replace('"methods", "rsa"]', '"methods"]')
                                         .replace('"imagenet/gender/0"', '"imagenet/identity/0"'))
    data = load_dataset(Study.from_toml(tmp_path / "study.toml"), progress=False)
    assert isinstance(data, FaceDataView) and not hasattr(data, "task_mask") and data.images.shape == (8, 3, SIZE, SIZE)
    result = invoke("run", tmp_path / "study.toml", "--out", tmp_path / "out", "--no-progress")
    assert result.exit_code == 0, result.output
    cube = cubes.open(tmp_path / "out" / "cube")
    assert dict(cube.sizes) == {"pretraining": 2, "task": 1, "seed": 1, "image": 8, "y": SIZE, "x": SIZE}
    assert cube["image"].values[0] == "person0/0.png"
    regions = read_result(tmp_path / "out" / "regions.nc")
    assert list(regions["region"].values) == list(lrp_faces.analysis.TEMPLATE_REGIONS)
    assert "relevance_mass_accuracy_mean" not in regions
    assert "Best method by aopc output (no ground truth for these images):" in result.output
    assert not (tmp_path / "out" / "rsa.nc").exists()


# -------------------------------------------------------------------------------------- steps, resume and info
def test_run_writes_every_result_file_and_study_json(finished):
    out, result = finished
    for name in ("study.json", "masking.nc", "masking_lerf.nc", "similarity.nc", "regions.nc", "methods.nc",
                 "rsa.nc"):
        assert (out / name).is_file(), name
    assert len(list((out / "cube").glob("*.nc"))) == 4 and not (out / "report").exists()
    record = json.loads((out / "study.json").read_text())
    assert record["settings"]["masking"]["fractions"] == [0.0, 0.5]
    assert [row["spec"] for row in record["zoo"]] == [ModelSpec(*model).to_dict() for model in sorted(MODELS)]
    cube = cubes.open(out / "cube")
    for row in record["zoo"]:
        where = {key: row["spec"][key] for key in ("pretraining", "task", "seed")}
        assert row["accuracy"] == pytest.approx(float(cube["correct"].sel(where).mean()), abs=1e-4)
    assert record["human_source"].startswith("synthetic parameter-space distances")
    assert {"cube", "masking", "masking_lerf", "similarity", "regions", "methods", "rsa", "total"} <= set(
        record["timings"])
    assert record["results"]["masking_lerf"] == "masking_lerf.nc"
    masking = read_result(out / "masking.nc")
    assert masking.sizes["relation"] == len(RELATIONS) and masking.sizes["image"] == IDENTITIES * PER_IDENTITY
    assert list(masking["relation"].values) == list(RELATIONS)
    assert "Generalisation index by relation" in result.output and "Best method by" in result.output
    regions = read_result(out / "regions.nc")
    assert "share" in regions and "relevance_mass_accuracy_mean" in regions
    methods = read_result(out / "methods.nc")
    assert list(methods["attribution_method"].values) == ["epsilon_gamma_box", "gradient"]
    assert "method" not in methods.dims
    assert list(methods["model"].values) == ["imagenet/gender/0", "vggface/identity/0"]
    assert methods.sizes["image"] == 4


def test_study_json_records_the_package_versions(finished):
    out, _ = finished
    assert json.loads((out / "study.json").read_text())["versions"] == versions()


@pytest.mark.parametrize("module", ["lrp_faces.cli.runner", "lrp_faces.cli.study"])
def test_the_module_examples_run(module):
    outcome = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert outcome.attempted > 0 and outcome.failed == 0


def test_the_mask_step_writes_each_models_lerf_curves_on_its_own_maps(finished, checkpoints):
    out, _ = finished
    lerf = read_result(out / "masking_lerf.nc")
    count = IDENTITIES * PER_IDENTITY
    assert dict(lerf.sizes) == {"pretraining": 2, "task": 2, "seed": 1, "fraction": 2, "image": count}
    assert lerf["correct"].dims == ("pretraining", "task", "seed", "fraction", "image")
    assert lerf.attrs["order"] == "lerf" and "lrp_faces_step" in lerf.attrs
    masking = read_result(out / "masking.nc")
    assert list(lerf["image"].values) == list(masking["image"].values)
    assert list(lerf["fraction"].values) == list(masking["fraction"].values)
    # one model against masking.curves of its checkpoint on its own cube maps, LeRF, with the study's settings
    cube = cubes.open(out / "cube")
    faces = lrp_faces.synthetic_faces(IDENTITIES, PER_IDENTITY, size=SIZE, seed=3)
    model = lrp_faces.models.load_model(checkpoints / "vggface-identity-0.pt")
    maps = cube.relevance.sel(pretraining="vggface", task="identity", seed=0).values
    expected = lrp_faces.masking.curves(model, faces.images, faces.identity, maps, fractions=(0.0, 0.5),
                                        order="lerf")
    cell = lerf.sel(pretraining="vggface", task="identity", seed=0)
    np.testing.assert_allclose(cell["output"].values, expected["output"].values, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(cell["label"].values, faces.identity)
    gender = lerf.sel(pretraining="imagenet", task="gender", seed=0)
    np.testing.assert_array_equal(gender["label"].values, faces.gender)  # scored on the model's own task


def test_a_lerf_study_does_not_repeat_lerf_in_a_second_file(study_file, tmp_path):
    study_file.write_text(study_file.read_text().replace("fractions = [0.0, 0.5]",
                                                         'fractions = [0.0, 0.5]\norder = "lerf"'))
    out = tmp_path / "out"
    assert invoke("attribute", study_file, "--out", out, "-q").exit_code == 0
    result = invoke("mask", study_file, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "masking.nc").is_file() and not (out / "masking_lerf.nc").exists()
    assert "masking_lerf: skipped; the generalisation step already masks least relevant first" in result.output


@pytest.mark.e2e
def test_a_rerun_skips_every_finished_step(study_file, tmp_path):
    out = tmp_path / "out"
    first = invoke("run", study_file, "--out", out, "--no-progress")
    assert first.exit_code == 0, first.output
    stamps = {path.name: path.stat().st_mtime_ns for path in [*out.glob("*.nc"), *(out / "cube").glob("*.nc")]}
    again = invoke("run", study_file, "--out", out, "--no-progress")
    assert again.exit_code == 0, again.output
    for step in ("masking", "masking_lerf", "similarity", "regions", "methods", "rsa"):
        assert f"{step}: {step}.nc is up to date (same settings); skipped" in again.output
    assert "(0 computed, 4 reused" in again.output
    assert stamps == {path.name: path.stat().st_mtime_ns for path in [*out.glob("*.nc"), *(out / "cube").glob("*.nc")]}

    # changed masking settings: masking recomputed with the reason, the analyses still skipped
    study_file.write_text(study_file.read_text().replace("n_permutations = 20", "n_permutations = 30"))
    changed = invoke("run", study_file, "--out", out, "--no-progress")
    assert changed.exit_code == 0, changed.output
    assert "masking: masking.nc was computed with other settings (masking.n_permutations: 20 -> 30); " \
           "recomputing" in changed.output
    assert "similarity: similarity.nc is up to date" in changed.output
    assert "masking_lerf: masking_lerf.nc is up to date" in changed.output  # the permutations do not touch it
    assert read_result(out / "masking.nc").attrs["n_permutations"] == 30

    # changed fractions: the LeRF curves too
    study_file.write_text(study_file.read_text().replace("fractions = [0.0, 0.5]\nn_bootstrap = 20\nn_permutations",
                                                         "fractions = [0.0, 0.25, 0.5]\nn_bootstrap = 20\n"
                                                         "n_permutations"))
    fractions = invoke("run", study_file, "--out", out, "--no-progress")
    assert fractions.exit_code == 0, fractions.output
    assert "masking_lerf: masking_lerf.nc was computed with other settings (masking.fractions: [0.0, 0.5] -> " \
           "[0.0, 0.25, 0.5]); recomputing" in fractions.output
    assert list(read_result(out / "masking_lerf.nc")["fraction"].values) == [0.0, 0.25, 0.5]

    # a changed method: the cube is recomputed, and every step that reads it
    study_file.write_text(study_file.read_text().replace("gamma = 0.25", "gamma = 0.5"))
    recomputed = invoke("run", study_file, "--out", out, "--no-progress")
    assert recomputed.exit_code == 0, recomputed.output
    assert "holds maps computed with other settings; recomputing every model" in recomputed.output
    assert "masking: masking.nc was computed with other settings (the cube was recomputed); recomputing" \
        in recomputed.output
    assert "methods: methods.nc is up to date" in recomputed.output  # it computes its own maps
    assert json.loads(cubes.open(out / "cube").attrs["method_params"])["gamma"] == 0.5


def test_step_commands_run_one_step_each(study_file, tmp_path):
    out = tmp_path / "out"
    assert invoke("attribute", study_file, "--out", out, "-q").exit_code == 0
    assert sorted(path.name for path in out.iterdir()) == ["cube", "study.json"]
    assert invoke("mask", study_file, "--out", out, "-q").exit_code == 0
    assert (out / "masking.nc").is_file() and not (out / "similarity.nc").exists()
    result = invoke("analyze", study_file, "--out", out, "--only", "similarity", "--only", "regions", "-q")
    assert result.exit_code == 0, result.output
    assert (out / "similarity.nc").is_file() and (out / "regions.nc").is_file() and not (out / "rsa.nc").exists()
    assert result.output.count("Analysis: ") == 2
    assert invoke("info", out / "similarity.nc").exit_code == 0


def test_a_damaged_cube_file_is_named_and_recomputed(study_file, tmp_path):
    out = tmp_path / "out"
    assert invoke("attribute", study_file, "--out", out, "-q").exit_code == 0
    undamaged = cubes.open(out / "cube").load()
    damaged = out / "cube" / "vggface-gender-seed0.nc"
    damaged.write_bytes(damaged.read_bytes()[:1000])
    result = invoke("attribute", study_file, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    warning = next(line for line in result.output.splitlines() if line.startswith("Warning: "))
    assert warning.startswith(f"Warning: cube file {str(damaged)!r} is truncated")
    assert warning.endswith("recomputing model vggface-gender-seed0")
    recomputed = cubes.open(out / "cube").load()
    xr.testing.assert_equal(recomputed.drop_attrs(), undamaged.drop_attrs())
    again = invoke("attribute", study_file, "--out", out)
    assert again.exit_code == 0 and "(0 computed, 4 reused" in again.output and "Warning" not in again.output


def test_info_summarises_a_cube(finished):
    out, _ = finished
    result = invoke("info", out / "cube")
    assert result.exit_code == 0, result.output
    assert f"dims: pretraining 2, task 2, seed 1, image {IDENTITIES * PER_IDENTITY}, y {SIZE}, x {SIZE}" \
        in result.output
    assert "method: epsilon_gamma_box" in result.output and "imagenet-gender-seed0" in result.output
    single = invoke("info", out / "cube" / "vggface-identity-seed0.nc")
    assert single.exit_code == 0 and "models (1): vggface-identity-seed0" in single.output


def test_info_summarises_result_files(finished):
    out, _ = finished
    masking = invoke("info", out / "masking.nc")
    assert masking.exit_code == 0, masking.output
    assert "masking generalisation" in masking.output and "relation 5" in masking.output
    assert "generalization_index (source_pretraining, source_task, source_seed, target_pretraining" \
        in masking.output
    assert "Generalisation index by relation" in masking.output and "step settings recorded: yes" in masking.output
    methods = invoke("info", out / "methods.nc")
    assert methods.exit_code == 0 and "Best method by relevance mass accuracy:" in methods.output
    lerf = invoke("info", out / "masking_lerf.nc")
    assert lerf.exit_code == 0, lerf.output
    assert "self-masking curves per model" in lerf.output and "fraction 2" in lerf.output
    accuracy = read_result(out / "masking_lerf.nc")["correct"].mean("image")  # per model and fraction
    steps = ", ".join(f"{float(accuracy.sel(fraction=fraction).mean()):.2f} at {fraction:.0%}" for fraction in (0, 0.5))
    assert f"Models masked by their own maps, least relevant first (LeRF), mean over 4 models: accuracy {steps} " \
           f"(fraction of pixels hidden)" in lerf.output
    folder = invoke("info", out)
    assert folder.exit_code == 0 and "cube/: 4 model files" in folder.output and "report: missing" in folder.output
    assert re.search(r"^  masking_lerf\.nc: \d+\.\d MB$", folder.output, flags=re.M)
    assert "Models masked by their own maps, least relevant first (LeRF)" in folder.output


def test_info_summarises_a_study_file_and_rejects_other_files(study_file, tmp_path):
    result = invoke("info", study_file)
    assert result.exit_code == 0 and "Study file:" in result.output and "masking.n_bootstrap = 20" in result.output
    (tmp_path / "notes.txt").write_text("hello")
    other = invoke("info", tmp_path / "notes.txt")
    assert other.exit_code == 1 and "is not a NetCDF file" in other.output


@pytest.mark.parametrize("name, copy", [("masking.nc", "masking.nc"), ("cube/vggface-identity-seed0.nc", "model.nc"),
                                        ("masking.nc", "masking.backup")])
def test_info_on_a_truncated_netcdf_file_names_it_in_one_line(finished, tmp_path, name, copy):
    damaged = tmp_path / copy
    damaged.write_bytes((finished[0] / name).read_bytes()[:2000])
    result = invoke("info", damaged)
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [result.output.strip()]
    assert result.output.startswith(f"Error: {str(damaged)!r} is not a readable NetCDF4 file (truncated or damaged")


def test_info_on_a_results_directory_with_a_damaged_file_summarises_the_others(finished, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(finished[0], out)
    (out / "methods.nc").write_bytes((out / "methods.nc").read_bytes()[:2000])
    result = invoke("info", out)
    assert result.exit_code == 0, result.output
    assert "Generalisation index by relation" in result.output and "RSA with" in result.output
    assert f"Not summarised: {str(out / 'methods.nc')!r} is not a readable NetCDF4 file" in result.output
    assert "Best method by" not in result.output


@pytest.mark.e2e
def test_report_command_writes_html_from_existing_results(finished, tmp_path):
    out, _ = finished
    result = invoke("report", out, "--out", tmp_path / "report", "-q")
    assert result.exit_code == 0, result.output
    index = tmp_path / "report" / "index.html"
    assert index.is_file() and f"Report: {index.resolve()}" in result.output
    assert "masking" in index.read_text().lower()


# ------------------------------------------------------------------------------------------------------ the demo
@pytest.mark.e2e
def test_demo_quick_runs_end_to_end(tmp_path):
    """``lrp-faces demo --quick`` trains the quick zoo in an empty cache and writes every result and the report."""
    out = tmp_path / "demo"
    result = invoke("demo", "--quick", "--out", out, "--cache-dir", tmp_path / "cache", "--no-progress")
    assert result.exit_code == 0, result.output
    for name in ("study.json", "masking.nc", "masking_lerf.nc", "similarity.nc", "regions.nc", "methods.nc",
                 "rsa.nc", "report/index.html"):
        assert (out / name).is_file(), name
    figures = {path.stem for path in (out / "report" / "figures").glob("*.png")}
    assert {"relevance_grid", "masking_curves", "generalization_heatmap", "method_comparison", "rsa_bars"} <= figures
    document = demo_document(quick=True)
    cube = cubes.open(out / "cube")
    assert dict(cube.sizes) == {"pretraining": 2, "task": 2, "seed": 1, "image": 80, "y": 64, "x": 64}
    assert set(cube["pretraining"].values) == {"objects", "faces"} and set(cube["task"].values) == {"gender",
                                                                                                     "identity"}
    masking = read_result(out / "masking.nc")
    model_sizes = {"pretraining": 2, "task": 2, "seed": 1}
    expected = {**{f"source_{dim}": size for dim, size in model_sizes.items()},
                **{f"target_{dim}": size for dim, size in model_sizes.items()},
                "fraction": len(document["masking"]["fractions"]), "image": document["masking"]["max_images"],
                "relation": len(RELATIONS)}
    assert dict(masking.sizes) == expected
    assert masking["generalization_index"].dims == tuple(expected)[:6]
    assert all(type(value) is str for value in masking["image"].values)
    assert f"Report: {(out / 'report' / 'index.html').resolve()}" in result.output
    for label in ("same model", "other task", "other pretraining", "other task and pretraining"):
        assert re.search(rf"^  {label}\s+\d\.\d\d  \[", result.output, flags=re.M), label
    assert re.search(r"^Best method by relevance mass accuracy: \w+ \d\.\d\d \[", result.output, flags=re.M)
    assert result_attrs(out / "rsa.nc")["human_is_stand_in"] == "yes"


# ------------------------------------------------------------------------------- settings shared across the steps
def test_the_masking_steps_score_the_output_the_study_explains(study_file, tmp_path):
    text = study_file.read_text().replace("batch_size = 4\n[attribution.params]",
                                          "batch_size = 4\ncontrastive = false\n[attribution.params]")
    study_file.write_text(text.replace('models = ["imagenet/gender/0", "vggface/identity/0"]', ""))
    out = tmp_path / "out"
    assert invoke("attribute", study_file, "--out", out, "-q").exit_code == 0
    assert not bool(cubes.open(out / "cube").attrs["contrastive"])
    result = invoke("mask", study_file, "--out", out, "-q")
    assert result.exit_code == 0, result.output
    for name in ("masking.nc", "masking_lerf.nc"):
        attrs = result_attrs(out / name)
        assert attrs["contrastive"] == 0 and json.loads(attrs["lrp_faces_step"])["contrastive"] is False, name


def test_the_self_masking_summary_says_what_the_fraction_counts_in_keep_mode():
    from lrp_faces.cli.summary import self_masking_lines
    grid = {"pretraining": ["faces"], "task": ["gender"], "seed": [0], "fraction": [0.0, 0.5], "image": ["a", "b"]}
    correct = xr.DataArray(np.ones((1, 1, 1, 2, 2)), dims=tuple(grid), coords=grid)
    line, = self_masking_lines(xr.Dataset({"correct": correct}, attrs={"order": "morf", "mode": "keep"}))
    assert "most relevant kept (MoRF)" in line and line.endswith("(fraction of pixels kept (the rest filled))")
    line, = self_masking_lines(xr.Dataset({"correct": correct}, attrs={"order": "lerf", "patch": 4}))
    assert "least relevant first (LeRF)" in line and line.endswith("(fraction of patches hidden)")


def test_info_prints_float32_attributes_by_their_own_decimals(tmp_path):
    attrs = {"road_noise": np.float32(0.15), "fractions": np.array([0.05, 0.15], dtype=np.float32)}
    path = write_result(xr.Dataset({"value": ("x", [1.0])}, attrs=attrs), tmp_path / "result.nc")
    assert read_result(path).attrs["road_noise"].dtype == np.float32  # stored as NetCDF floats (32 bits)
    shown = invoke("info", path)
    assert shown.exit_code == 0, shown.output
    assert "road_noise = 0.15\n" in shown.output and "fractions = [0.05, 0.15]" in shown.output
    assert "0.150000" not in shown.output


def test_the_report_and_the_study_file_read_one_table_of_dataset_settings():
    from lrp_faces.faces import DATASET_SETTINGS as faces_settings
    from lrp_faces.report.tables import dataset_settings
    assert DATASET_SETTINGS is faces_settings
    record = {"kind": "folders", "path": "faces", "identities": 10, "split": {"by": "image"}, "image_root": "x"}
    assert dataset_settings(record) == {"kind": "folders", "path": "faces", "split": {"by": "image"}}
