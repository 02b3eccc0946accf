"""``lrp-faces plan``: the passes it counts are the passes the steps run, its sizes bound the files they write."""
import contextlib
import re
import shutil
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from PIL import Image

import lrp_faces
from conftest import small_vgg
from lrp_faces import masking
from lrp_faces.cli import main
from lrp_faces.cli.plan import STEP_LABELS, generalization_passes, masking_rows, study_plan
from lrp_faces.cli.runner import StudyRun
from lrp_faces.cli.study import Study
from lrp_faces.models import NormalizedVGG, save_model
from lrp_faces.zoo import ModelSpec

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "benchmarks" / "suites"
MODELS = [("imagenet", "gender", 0), ("imagenet", "identity", 0), ("vggface", "gender", 0), ("vggface", "identity", 0)]
IDENTITIES = 3

STUDY = """
[study]
name = "counted"

[zoo]
image_size = 32
{models}

[dataset]
kind = "synthetic"
identities = 3
images_per_identity = 2

[attribution]
batch_size = 4

[masking]
{masking}
n_bootstrap = 5
n_permutations = 5

[analysis]
run = {run}
[analysis.similarity]
n_bootstrap = 5
[analysis.regions]
n_bootstrap = 5
[analysis.methods]
n_bootstrap = 5
{methods}
[analysis.rsa]
human_rdm = "synthetic"
kinds = ["features", "relevance", "decision_weighted"]
n_permutations = 5
n_bootstrap = 5

[report]
enabled = false
"""

VARIANTS = {
    # MoRF, mean fill: two fractions that round to the same count (one forward pass), short padded passes, five of
    # the six images masked, methods of every cost on two models and four images
    "morf": {"masking": "fractions = [0.0, 0.25, 0.5, 0.5001]\nbatch_size = 4\nmax_images = 5",
             "run": '["similarity", "regions", "methods", "rsa"]',
             "methods": 'methods = ["epsilon_gamma_box", "gradient", "smoothgrad", "integrated_gradients", "random"]\n'
                        'models = ["imagenet/gender/0", "vggface/identity/0"]\nmax_images = 4\n'
                        'fractions = [0.0, 0.5, 1.0]\nmasking_batch_size = 3\n'
                        '[analysis.methods.method_params]\nsmoothgrad = {n_samples = 2}\n'
                        'integrated_gradients = {steps = 3}'},
    # LeRF order (no separate self-masking step), ROAD fill in keep mode on 2 x 2 patches, default rows per pass
    "lerf_road": {"models": 2, "masking": 'fractions = [0.0, 0.5, 1.0]\norder = "lerf"\nfill = "road"\nmode = "keep"\n'
                             "patch = 2",
                  "run": '["methods"]',
                  "methods": 'methods = ["gradient_x_input"]\nfill = "road"\nfractions = [0.0, 0.5]'},
}


def model_table(count: int = len(MODELS), folder: str = "models") -> str:
    return "\n".join(f'[[zoo.models]]\npretraining = "{p}"\ntask = "{t}"\nseed = {s}\npath = "{folder}/{p}-{t}-{s}.pt"'
                     for p, t, s in MODELS[:count])


def invoke(*arguments):
    return CliRunner().invoke(main, [str(argument) for argument in arguments])


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    folder = tmp_path_factory.mktemp("checkpoints")
    for index, (pretraining, task, seed) in enumerate(MODELS):
        model = small_vgg(num_classes=2 if task == "gender" else IDENTITIES, seed=index)
        save_model(model, folder / f"{pretraining}-{task}-{seed}.pt", spec=ModelSpec(pretraining, task, seed))
    return folder


def write_study(folder: Path, checkpoints: Path, variant: str) -> Path:
    shutil.copytree(checkpoints, folder / "models", dirs_exist_ok=True)
    path = folder / "study.toml"
    settings = dict(VARIANTS[variant])
    path.write_text(STUDY.format(models=model_table(settings.pop("models", len(MODELS))), **settings))
    return path


class PassCounter:
    """Counts the images through every model's forward (``forward`` and ``penultimate``), the images of every
    top-level ``torch.autograd.grad`` call (LRP rules call it again inside the backward pass: not counted) and the
    images ROAD imputes, by the step that is running."""

    def __init__(self):
        self.step = None
        self.counts: dict[str, list[int]] = {}
        self.depth = 0

    def add(self, kind: int, images: int) -> None:
        self.counts.setdefault(self.step, [0, 0, 0])[kind] += images

    @contextlib.contextmanager
    def installed(self, monkeypatch):
        forward, penultimate, grad = NormalizedVGG.forward, NormalizedVGG.penultimate, torch.autograd.grad
        road = masking._engine.road_impute

        def counted_forward(model, images):
            self.add(0, len(images))
            return forward(model, images)

        def counted_penultimate(model, images):
            self.add(0, len(images))
            return penultimate(model, images)

        def counted_grad(outputs, inputs, *arguments, **options):
            if self.depth == 0:
                self.add(1, len(inputs[0] if isinstance(inputs, (tuple, list)) else inputs))
            self.depth += 1
            try:
                return grad(outputs, inputs, *arguments, **options)
            finally:
                self.depth -= 1

        def counted_road(images, hidden, *arguments, **options):
            self.add(2, len(images))
            return road(images, hidden, *arguments, **options)

        monkeypatch.setattr(NormalizedVGG, "forward", counted_forward)
        monkeypatch.setattr(NormalizedVGG, "penultimate", counted_penultimate)
        monkeypatch.setattr(torch.autograd, "grad", counted_grad)
        monkeypatch.setattr(masking._engine, "road_impute", counted_road)
        for name, step in (("generalization", "masking"), ("own_map_curves", "masking_lerf")):
            monkeypatch.setattr(masking, name, self.labelled(getattr(masking, name), step))
        yield self

    def labelled(self, function, step):
        def run(*arguments, **options):
            outer, self.step = self.step, step
            try:
                return function(*arguments, **options)
            finally:
                self.step = outer
        return run


def counted_run(folder: Path, checkpoints: Path, variant: str):
    """The variant's study run step by step with its passes counted: (study, run, counts per step)."""
    study = Study.from_toml(write_study(folder, checkpoints, variant))
    run = StudyRun(study, folder / "out", progress=False, log=lambda line: None)
    counter = PassCounter()
    with pytest.MonkeyPatch.context() as monkeypatch, counter.installed(monkeypatch):
        run.zoo, run.data  # noqa: B018 - loaded before counting starts
        counter.step = "attribute"
        cube = run.attribute()
        counter.step = None
        run.mask(cube)
        for name in study.analysis.run:
            counter.step = name
            run.analyze((name,), cube=cube)
    return study, run, counter.counts


@pytest.fixture(scope="module")
def counted_runs(tmp_path_factory, checkpoints):
    """``counted_runs[variant]``: :func:`counted_run` of the variant, run on first use."""
    class Runs(dict):
        def __missing__(self, variant):
            self[variant] = counted_run(tmp_path_factory.mktemp(variant), checkpoints, variant)
            return self[variant]
    return Runs()


SLOW = pytest.mark.slow  # the ROAD variant: a few seconds more
COUNTED_STEPS = [("morf", step) for step in ("attribute", "masking", "masking_lerf", "methods", "rsa")] + [
    pytest.param("lerf_road", step, marks=SLOW) for step in ("attribute", "masking", "methods")]
VARIANT_NAMES = ["morf", pytest.param("lerf_road", marks=SLOW)]


@pytest.mark.parametrize("variant, step", COUNTED_STEPS)
def test_the_plan_counts_the_forward_lrp_and_road_passes_each_step_runs(counted_runs, variant, step):
    study, _, counts = counted_runs[variant]
    planned = study_plan(study, calibrate=False).step(step).passes
    assert [planned.forward, planned.gradient, planned.road] == counts[step]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_steps_without_model_passes_run_none_and_the_plan_says_so(counted_runs, variant):
    study, _, counts = counted_runs[variant]
    plan = study_plan(study, calibrate=False)
    idle = [step.step for step in plan.steps if step.step not in counts]
    assert idle and all(plan.step(step).passes.forward == plan.step(step).passes.gradient == 0 for step in idle)
    assert set(counts) - {None} <= {step.step for step in plan.steps}


@SLOW
def test_a_lerf_study_has_no_separate_self_masking_step(counted_runs):
    study, run, counts = counted_runs["lerf_road"]
    assert "masking_lerf" not in counts and not run.result_path("masking_lerf").exists()
    skipped = study_plan(study, calibrate=False).step("masking_lerf")
    assert skipped.passes.forward == 0 and skipped.bytes is None and "skipped" in skipped.note


def test_counted_passes_depend_on_the_blocks_as_the_plan_says(counted_runs, monkeypatch):
    """Generalisation in blocks of 2 images and passes of 3 rows: every block pads its own last pass."""
    study, run, _ = counted_runs["morf"]
    config = study.masking.config
    cube = run.open_cube()
    counter = PassCounter()
    with counter.installed(monkeypatch):
        masking.generalization(cube, run.zoo, run.data, config, batch_size=3, block_size=2, n_bootstrap=0,
                               n_permutations=0, progress=False)
    specs = sorted(ModelSpec(*model) for model in MODELS)
    images = cube.sizes["image"]
    rows = masking_rows(config, 3, images, study.image_size)
    planned = generalization_passes(specs, images, study.image_size, config, rows, block_size=2)
    assert sum(passes.forward for passes in planned.values()) == counter.counts["masking"][0]


def result_size(path: Path) -> int:
    return sum(file.stat().st_size for file in path.glob("*.nc")) if path.is_dir() else path.stat().st_size


def test_planned_sizes_bound_the_written_files_within_a_factor_of_two(counted_runs):
    """Upper bounds (values uncompressed plus headers), no more than twice the file, for these small files whose
    headers weigh as much as their values."""
    study, run, _ = counted_runs["morf"]
    plan = study_plan(study, calibrate=False)
    files = {"attribute": run.cube_path, **{step: run.result_path(step) for step in
                                             ("masking", "masking_lerf", "similarity", "regions", "methods", "rsa")}}
    for step, path in files.items():
        planned, written = plan.step(step).bytes, result_size(path)
        assert written <= planned <= 2 * written, (step, planned, written)


def test_planned_cube_size_is_close_to_a_cube_of_noise_maps(tmp_path):
    """Once the maps outweigh the headers the bound is close: noise maps compress only through their exponent bytes
    (about a tenth)."""
    faces = lrp_faces.faces.synthetic_faces(4, 10, size=96)
    zoo = {ModelSpec("faces", "gender", 0): small_vgg(num_classes=2)}

    class Noise(lrp_faces.methods.Random):
        name = "random"
    lrp_faces.cube.compute(zoo, faces, tmp_path / "cube", method=Noise(), progress=False)
    document = {"zoo": {"image_size": 96, "models": [{"pretraining": "faces", "task": "gender", "seed": 0,
                                                      "path": "model.pt"}]},
                "dataset": {"kind": "synthetic", "identities": 4, "images_per_identity": 10},
                "masking": {"fractions": [0.0, 0.5]}, "analysis": {"run": []}}
    save_model(zoo[ModelSpec("faces", "gender", 0)], tmp_path / "model.pt", spec=ModelSpec("faces", "gender", 0))
    planned = study_plan(Study.from_dict(document, base=tmp_path), calibrate=False).step("attribute").bytes
    written = result_size(tmp_path / "cube")
    assert written <= planned <= 1.25 * written


# ------------------------------------------------------------------------------------------------ the command
@pytest.fixture
def study_file(tmp_path, checkpoints):
    return write_study(tmp_path, checkpoints, "morf")


def table_rows(output: str) -> list[str]:
    lines = output.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith("step "))
    stop = next(index for index, line in enumerate(lines) if line.startswith("total "))
    return lines[start + 1:stop + 1]


def test_plan_prints_one_row_per_step_in_order_and_a_total(study_file):
    result = invoke("plan", study_file, "--no-calibrate")
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    labels = [STEP_LABELS[step] for step in ("attribute", "masking", "masking_lerf", "similarity", "regions",
                                             "methods", "rsa")]
    assert [row[:len(label)] for row, label in zip(rows, labels)] == labels and rows[-1].startswith("total ")
    assert len(rows) == len(labels) + 1
    assert "Not calibrated" in result.output


def test_the_total_row_adds_up_the_steps(study_file):
    rows = table_rows(invoke("plan", study_file, "--no-calibrate").output)
    columns = [[int(cell.replace(",", "")) for cell in row.split("  ") if cell.strip().replace(",", "").isdigit()]
               for row in rows]
    assert [sum(values) for values in zip(*columns[:-1])] == columns[-1]


def test_plan_without_calibration_loads_no_model(study_file, monkeypatch):
    def refuse(*arguments, **options):
        raise AssertionError("a model was loaded")
    monkeypatch.setattr(lrp_faces.models, "load_model", refuse)
    monkeypatch.setattr(lrp_faces.zoo.specs, "load_model", refuse)
    monkeypatch.setattr(lrp_faces.zoo.Zoo, "__getitem__", refuse)
    plan = study_plan(Study.from_toml(study_file), calibrate=False)
    assert plan.calibration is None and plan.seconds is None and plan.passes.forward > 0


def test_a_calibrated_plan_gives_a_time_to_every_step_with_model_passes(study_file):
    result = invoke("plan", study_file)
    assert result.exit_code == 0, result.output
    assert "Calibration on cpu" in result.output and "(4 models): forward" in result.output
    for row in table_rows(result.output):
        label, forward, gradient, time_text, disk = re.split(r"\s{2,}", row.strip())[:5]
        assert (forward != "0") == (time_text != "-"), row


def test_a_calibrated_plan_times_one_model_per_architecture(study_file, monkeypatch):
    loaded = []
    original = lrp_faces.zoo.Zoo.__getitem__

    def record(zoo, spec):
        loaded.append(spec)
        return original(zoo, spec)
    monkeypatch.setattr(lrp_faces.zoo.Zoo, "__getitem__", record)
    plan = study_plan(Study.from_toml(study_file), calibrate=True)
    assert len(loaded) == 1 and len(plan.calibration.timings) == len(MODELS)
    assert plan.calibration.seconds > 0 and all(step.seconds > 0 for step in plan.steps if step.passes.forward)


def test_estimated_seconds_take_lrp_passes_at_the_lrp_rate_and_the_other_forward_passes_at_the_forward_rate():
    from lrp_faces.cli.plan import Calibration, ModelTiming, Passes
    small, large = ModelSpec("faces", "gender", 0), ModelSpec("faces", "identity", 0)
    timings = {small: ModelTiming("small", 0.5, 2.0, 4, 4), large: ModelTiming("large", 1.0, 3.0, 4, 4)}
    calibration = Calibration("cpu", 1, timings, road={"masking": 0.25})
    passes = {small: Passes(forward=10, gradient=4, road=8), large: Passes(forward=3, gradient=0)}
    assert calibration.step_seconds("masking", passes) == (6 * 0.5 + 4 * 2.0 + 8 * 0.25) + 3 * 1.0
    assert calibration.step_seconds("methods", passes) == (6 * 0.5 + 4 * 2.0) + 3 * 1.0


def test_a_bad_study_file_is_one_line_error(tmp_path):
    (tmp_path / "broken.toml").write_text("[zoo]\nimage_size = 'large'\n")
    result = invoke("plan", tmp_path / "broken.toml")
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and result.output.startswith("Error: ") and "broken.toml" in result.output


def test_info_on_a_study_file_points_to_plan(study_file):
    result = invoke("info", study_file)
    assert result.exit_code == 0 and f"lrp-faces plan {study_file}" in result.output.splitlines()[-1]


# ---------------------------------------------------------------------------------------------- the starter study
def suite_with_small_files(name: str, folder: Path, models: Sequence[str] | None = None, images: int = 4) -> Study:
    """A suite with its zoo and method comparison cut to ``models`` (ids; None: as declared) and its data to a manifest
    of ``images`` faces, every placeholder file created (without calibration the plan reads no weights and no
    pixels)."""
    document = tomllib.loads((SUITES / name).read_text())
    document["zoo"]["models"] = [model for model in document["zoo"]["models"] if models is None
                                 or f"{model['pretraining']}/{model['task']}/{model['seed']}" in models]
    for model in document["zoo"]["models"]:
        (folder / model["path"]).parent.mkdir(parents=True, exist_ok=True)
        (folder / model["path"]).touch()
    (folder / "faces").mkdir(parents=True, exist_ok=True)
    lines = ["path,identity,gender"]
    for index in range(images):
        Image.new("RGB", (8, 8), (index % 256, 90, 120)).save(folder / "faces" / f"face{index}.png")
        lines.append(f"faces/face{index}.png,person{index % 2},{index % 2}")
    (folder / "faces.csv").write_text("\n".join(lines) + "\n")
    document["dataset"] = {"kind": "manifest", "path": "faces.csv", "check": "exists",
                           "max_images": document["dataset"]["max_images"]}
    if models is not None:  # the method comparison on the same models
        document["analysis"]["methods"]["models"] = list(models)
    (folder / document["analysis"]["rsa"]["human_rdm"]).parent.mkdir(parents=True, exist_ok=True)
    (folder / document["analysis"]["rsa"]["human_rdm"]).touch()
    return Study.from_dict(document, base=folder, name=name)


def test_the_starter_suite_is_a_valid_study_once_its_files_exist(tmp_path):
    document = tomllib.loads((SUITES / "starter.toml").read_text())
    for model in document["zoo"]["models"]:
        (tmp_path / model["path"]).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / model["path"]).touch()
    (tmp_path / document["dataset"]["path"]).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / document["dataset"]["path"]).write_text("path,identity,gender\n")
    (tmp_path / document["analysis"]["rsa"]["human_rdm"]).touch()
    shutil.copy(SUITES / "starter.toml", tmp_path / "starter.toml")
    study = Study.from_toml(tmp_path / "starter.toml")
    assert study.masking.config.fill == "mean" and len(study.masking.config.fractions) == 6
    assert study.analysis.methods["max_images"] <= 16 and study.image_size == 224
    assert study.masking.n_bootstrap < 1000 and study.masking.n_permutations < 1000


TWO_MODELS = ("imagenet/gender/0", "imagenet/identity/0")


def test_the_starter_study_costs_less_than_the_paper_study_on_the_same_models_and_images(tmp_path):
    paper = study_plan(suite_with_small_files("paper.toml", tmp_path / "paper", TWO_MODELS), calibrate=False)
    starter = study_plan(suite_with_small_files("starter.toml", tmp_path / "starter", TWO_MODELS), calibrate=False)
    assert (paper.models, paper.images) == (starter.models, starter.images) == (2, 4)
    for step in ("masking", "masking_lerf", "methods"):
        assert starter.step(step).passes.forward < paper.step(step).passes.forward, step


def test_the_starter_study_as_declared_costs_a_twentieth_of_the_paper_study(tmp_path):
    paper = study_plan(suite_with_small_files("paper.toml", tmp_path / "paper", images=200), calibrate=False)
    starter = study_plan(suite_with_small_files("starter.toml", tmp_path / "starter", images=200), calibrate=False)
    assert (paper.models, paper.images, starter.models, starter.images) == (12, 200, 4, 64)
    assert starter.passes.forward * 20 < paper.passes.forward


@pytest.mark.slow
def test_the_demo_study_is_counted_without_generating_its_faces():
    from lrp_faces.cli.demo import demo_study
    from lrp_faces.cli.plan import study_image_count
    from lrp_faces.zoo import DemoSettings, demo_study_data
    assert study_image_count(demo_study(quick=True))[0] == len(demo_study_data(DemoSettings.quick())[1])
