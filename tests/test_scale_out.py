"""A study past one process: the quick demo on a real LocalCluster of worker processes, a worker killed by its pid,
and the driver killed and rerun. Results must equal the in-process run value for value."""
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import xarray as xr

from lrp_faces.cli.runner import StudyRun
from lrp_faces.cli.study import Study, read_result
from lrp_faces.compute import UNITS_DIR, cluster_client, worker_pids

pytestmark = pytest.mark.e2e

STUDY = """
[study]
name = "scale-out"

[zoo]
demo = "quick"

[dataset]
kind = "demo"

[attribution]
batch_size = 8

[masking]
fractions = [0.0, 0.1, 0.3]
max_images = 40
n_bootstrap = 50
n_permutations = 50

[analysis]
run = ["methods"]

[analysis.methods]
methods = ["epsilon_gamma_box", "gradient", "random"]
max_images = 16
fractions = [0.0, 0.3]
n_bootstrap = 50

[report]
enabled = false

[compute]
block_size = 8
"""
"""The quick demo's zoo and faces, with small units: 4 models x 5 blocks of 8 images per masking step, and 3 methods x
4 models x 2 blocks in the method comparison."""
STEP_FILES = ("masking.nc", "masking_lerf.nc")


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("study") / "study.toml"
    path.write_text(STUDY)
    return path


def run_steps(study_file: Path, out: Path, client=None, analyze: bool = False) -> StudyRun:
    run = StudyRun(Study.from_toml(study_file), out, progress=False, log=lambda line: None, client=client)
    run.attribute()
    run.mask()
    if analyze:
        run.analyze()
    return run


@pytest.fixture(scope="module")
def in_process(study, tmp_path_factory) -> Path:
    """The study's cube, masking and method comparison results, run in this process."""
    out = tmp_path_factory.mktemp("in_process")
    run_steps(study, out, analyze=True)
    return out


@pytest.fixture(scope="module")
def local_cluster():
    """A real LocalCluster of two worker processes on localhost (one thread each on this 2-core machine)."""
    with cluster_client("local:2") as client:
        yield client


def assert_same_results(out: Path, reference: Path) -> None:
    """Every cube file and every masking result holds the reference's values (timings and paths may differ)."""
    cube_files = sorted(path.name for path in (reference / "cube").glob("*.nc"))
    assert sorted(path.name for path in (out / "cube").glob("*.nc")) == cube_files and len(cube_files) == 4
    for name in cube_files:
        with xr.open_dataset(out / "cube" / name) as found, xr.open_dataset(reference / "cube" / name) as expected:
            xr.testing.assert_equal(found.load(), expected.load())
    for name in STEP_FILES:
        xr.testing.assert_equal(read_result(out / name), read_result(reference / name))
    assert not (out / UNITS_DIR).exists(), "finished units are removed once the steps' files are written"


def test_a_local_cluster_of_two_worker_processes_gives_the_in_process_results(study, in_process, local_cluster,
                                                                              tmp_path):
    assert len(worker_pids(local_cluster)) == 2
    run_steps(study, tmp_path / "out", client=local_cluster, analyze=True)
    assert_same_results(tmp_path / "out", in_process)
    xr.testing.assert_equal(read_result(tmp_path / "out" / "methods.nc"), read_result(in_process / "methods.nc"))


def test_a_worker_killed_by_its_pid_mid_mask_step_changes_nothing(study, in_process, local_cluster, tmp_path):
    out = tmp_path / "out"
    run = StudyRun(Study.from_toml(study), out, progress=False, log=lambda line: None, client=local_cluster)
    run.attribute()
    store = out / UNITS_DIR / "masking"
    outcome = {}

    def mask():
        try:
            outcome["path"] = run.mask()
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    worker = threading.Thread(target=mask)
    worker.start()
    victim = None
    deadline = time.monotonic() + 300
    while victim is None and worker.is_alive() and time.monotonic() < deadline:  # the step is under way when a
        busy = [address for address, keys in local_cluster.processing().items() if keys]  # unit is stored and
        if busy and any(store.glob("*.nc")):  # another one runs
            victim = worker_pids(local_cluster).get(busy[0])
        else:
            time.sleep(0.05)
    assert victim is not None, "the mask step never had a unit running after one had finished"
    os.kill(victim, signal.SIGKILL)
    worker.join(timeout=600)
    assert not worker.is_alive() and "error" not in outcome, outcome.get("error")
    assert victim not in worker_pids(local_cluster).values()
    assert_same_results(out, in_process)


def unit_lines(stderr: str, step: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith(f"{step}: ") and "unit(s) computed" in line]


def test_the_driver_killed_mid_mask_step_resumes_from_its_finished_units(study, in_process, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "lrp_faces.cli", "--no-progress"]
    attribute = subprocess.run(command + ["attribute", str(study), "--out", str(out)], capture_output=True,
                               text=True, timeout=900)
    assert attribute.returncode == 0, attribute.stderr
    store = out / UNITS_DIR / "masking"
    driver = subprocess.Popen(command + ["mask", str(study), "--out", str(out)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 600
        while len(list(store.glob("*.nc"))) < 3 and driver.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        finished = len(list(store.glob("*.nc")))
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    assert 3 <= finished < 20, f"the driver was not killed mid-step ({finished} of 20 units stored)"
    assert not (out / "masking.nc").exists()
    rerun = subprocess.run(command + ["mask", str(study), "--out", str(out)], capture_output=True, text=True,
                           timeout=900)
    assert rerun.returncode == 0, rerun.stderr
    (line,) = unit_lines(rerun.stderr, "masking")
    computed, reused = (int(word) for word in line.replace(",", "").split() if word.isdigit())
    assert reused >= finished and computed + reused == 20, line
    assert_same_results(out, in_process)
