"""Units, their store and the executors: in-process, and on real LocalClusters of worker processes."""
import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import torch
import xarray as xr

from lrp_faces.compute import (ClusterError, SlurmSettings, Unit, UnitError, UnitStore, cluster_client,
                               parse_cluster, run_units, slurm_cluster, worker_pids)
from lrp_faces.errors import LRPFacesError

SIZE = 16


class ToyInputError(LRPFacesError, ValueError):
    """A user error raised inside a unit."""


def toy_block(start: int, stop: int, dtype: str = "float32") -> xr.Dataset:
    """A small seeded CNN on seeded images start:stop, in ``dtype``."""
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(8, 3, 3, 3, generator=generator, dtype=getattr(torch, dtype))
    images = torch.stack([torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(index),
                                     dtype=getattr(torch, dtype)) for index in range(start, stop)])
    features = torch.nn.functional.conv2d(images, weight, padding=1).relu()
    score = features.mean((1, 2, 3))
    return xr.Dataset({"score": ("image", score.numpy()), "map": (("image", "y", "x"), features.sum(1).numpy())},
                      coords={"image": np.arange(start, stop)})


def waiting_block(start: int, stop: int, started_name: str, release_name: str) -> xr.Dataset:
    """``toy_block``, announcing its start and waiting for a release (dask events, shared by all workers)."""
    from distributed import Event
    Event(started_name).set()
    if not Event(release_name).wait(timeout=120):
        raise TimeoutError("the test never released the unit")
    return toy_block(start, stop)


def failing_block(start: int, stop: int, record: str) -> xr.Dataset:
    """Append one line to ``record`` per attempt, then fail with a user error on the block that starts at 4."""
    with open(record, "a") as stream:
        stream.write(f"{start}\n")
    if start == 4:
        raise ToyInputError(f"image {start} cannot be read (a test error)")
    return toy_block(start, stop)


def not_a_dataset(start: int, stop: int):
    return np.zeros(stop - start)


def blocks(function=toy_block, *extra, count: int = 12, size: int = 4) -> list[Unit]:
    return [Unit(f"images-{start}-{start + size}", function, (start, start + size, *extra))
            for start in range(0, count, size)]


def assembled(store: UnitStore, units) -> xr.Dataset:
    return xr.concat([store.read(unit.key) for unit in units], "image")


def in_process_reference(tmp_path) -> xr.Dataset:
    store = UnitStore(tmp_path / "reference", "toy", {"size": SIZE})
    units = blocks()
    run_units(units, store, threads=1, progress=False)
    return assembled(store, units)


# ------------------------------------------------------------------------------------------------------ in-process
def test_in_process_run_stores_every_unit_and_a_rerun_reuses_them(tmp_path):
    units = blocks()
    store = UnitStore(tmp_path, "toy", {"size": SIZE})
    first = run_units(units, store, progress=False)
    assert (first.computed, first.reused) == (3, 0)
    again = run_units(units, UnitStore(tmp_path, "toy", {"size": SIZE}), progress=False)
    assert (again.computed, again.reused) == (0, 3)
    expected = toy_block(0, 12)
    xr.testing.assert_identical(assembled(store, units), expected)


def test_in_float64_the_result_does_not_depend_on_the_block_size(tmp_path):
    """In float32 a CPU's convolution kernels may round differently for other batch shapes, so a step's block size
    is one of its settings; the assembly itself adds nothing: in float64 any split gives the same bits."""
    small = UnitStore(tmp_path / "a", "toy", {})
    large = UnitStore(tmp_path / "b", "toy", {})
    run_units(blocks(toy_block, "float64", size=1), small, progress=False)
    run_units(blocks(toy_block, "float64", size=6), large, progress=False)
    xr.testing.assert_identical(assembled(small, blocks(size=1)), assembled(large, blocks(size=6)))


def test_changed_settings_discard_the_finished_units(tmp_path):
    units = blocks()
    run_units(units, UnitStore(tmp_path, "toy", {"fraction": 0.1}), progress=False)
    lines = []
    store = UnitStore(tmp_path, "toy", {"fraction": 0.2}, log=lines.append)
    assert store.discarded == 3 and "settings changed" in lines[0]
    assert run_units(units, store, progress=False).computed == 3


def test_a_damaged_unit_file_is_computed_again(tmp_path):
    units = blocks()
    store = UnitStore(tmp_path, "toy", {})
    run_units(units, store, progress=False)
    path = store.path(units[1].key)
    content = bytearray(path.read_bytes())
    where = content.find(toy_block(4, 8)["map"].values.astype("<f4").tobytes())
    assert where > 0, "unit results are stored uncompressed"
    content[where + 64] ^= 0xFF  # one byte of the maps' data
    path.write_bytes(bytes(content))
    with pytest.warns(UserWarning, match="damaged"):
        result = run_units(units, store, progress=False)
    assert (result.computed, result.reused) == (1, 2)
    xr.testing.assert_identical(store.read(units[1].key), toy_block(4, 8))


def test_duplicate_unit_keys_are_refused(tmp_path):
    units = blocks() + blocks()[:1]
    with pytest.raises(UnitError, match="occurs more than once"):
        run_units(units, UnitStore(tmp_path, "toy", {}), progress=False)


def test_unit_keys_must_be_safe_file_names():
    with pytest.raises(UnitError, match="file-name-safe"):
        Unit("../escape", toy_block, (0, 1))


def test_a_unit_must_return_a_dataset(tmp_path):
    with pytest.raises(UnitError, match="returned ndarray"):
        run_units([Unit("bad", not_a_dataset, (0, 2))], UnitStore(tmp_path, "toy", {}), progress=False)


def test_a_failing_unit_stops_the_step_and_keeps_the_finished_units(tmp_path):
    record = tmp_path / "attempts.txt"
    units = blocks(failing_block, str(record))
    store = UnitStore(tmp_path, "toy", {})
    with pytest.raises(ToyInputError, match="image 4 cannot be read"):
        run_units(units, store, progress=False)
    assert store.finished([unit.key for unit in units]) == {"images-0-4"}


def test_two_runs_of_one_step_into_one_directory_are_refused(tmp_path):
    store = UnitStore(tmp_path, "toy", {})
    with store.locked():
        with pytest.raises(UnitError, match="another process"):
            run_units(blocks(), UnitStore(tmp_path, "toy", {}), progress=False)


@pytest.mark.slow
def test_running_in_process_neither_imports_dask_distributed_nor_starts_a_client(tmp_path):
    """In-process, no lrp_faces module imports dask.distributed, and no client or cluster exists.

    (xarray's ``to_netcdf`` asks dask whether a client is running, and dask then imports ``distributed`` itself
    whenever it is installed; that starts nothing. The test records which module asked for the import.)
    """
    script = ("import sys, traceback\n"
              "importers = []\n"
              "class Spy:\n"
              "    def find_spec(self, name, path=None, target=None):\n"
              "        if name == 'distributed':\n"
              "            frames = [frame for frame in traceback.extract_stack() if 'importlib' not in frame.filename]\n"
              "            importers.append(frames[-2].filename)\n"
              "        return None\n"
              "sys.meta_path.insert(0, Spy())\n"
              "sys.path.insert(0, sys.argv[1])\n"
              "import test_compute as toy\n"
              "from lrp_faces.compute import UnitStore, run_units, cluster_client\n"
              "with cluster_client(None) as client:\n"
              "    assert client is None\n"
              "    run_units(toy.blocks(), UnitStore(sys.argv[2], 'toy', {}), client=client, progress=False)\n"
              "import distributed\n"
              "try:\n"
              "    distributed.default_client()\n"
              "    client = 'a client'\n"
              "except ValueError:\n"
              "    client = 'no client'\n"
              "print([name for name in importers if 'lrp_faces' in name], client)\n")
    result = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__), str(tmp_path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] no client"


# ------------------------------------------------------------------------------------------------------ cluster values
@pytest.mark.parametrize("text, kind, workers", [("local", "local", None), ("local:3", "local", 3),
                                                 ("tcp://10.0.0.5:8786", "address", None), ("slurm", "slurm", None)])
def test_cluster_values_are_parsed(text, kind, workers):
    spec = parse_cluster(text)
    assert (spec.kind, spec.workers) == (kind, workers) and str(spec) == text


@pytest.mark.parametrize("text", ["local:0", "locale", "gpu", "tcp:/host:1", "10.0.0.5:8786", "", "slurm:4"])
def test_bad_cluster_values_are_refused_naming_the_value(text):
    with pytest.raises(ClusterError, match="is not understood|needs N >= 1"):
        parse_cluster(text)


def test_slurm_without_settings_is_refused():
    with pytest.raises(ClusterError, match=r"\[compute.slurm\]"):
        with cluster_client("slurm"):
            pass


@pytest.mark.parametrize("changes, message", [({"memory": "lots"}, "memory"), ({"walltime": "2h"}, "walltime"),
                                              ({"cores": 0}, "cores"), ({"adapt_minimum": 3}, "adapt_minimum")])
def test_bad_slurm_settings_are_refused_naming_the_key(changes, message):
    settings = {"cores": 4, "memory": "16GB", **changes}
    with pytest.raises(ClusterError, match=message):
        SlurmSettings(**settings)


def test_slurm_jobs_ask_for_the_cores_memory_walltime_partition_and_gpus_of_the_settings():
    settings = SlurmSettings(cores=8, memory="64GB", walltime="04:30:00", queue="gpu", account="vision-lab",
                             gpus_per_job=2, job_extra=("--constraint=a100",), adapt_maximum=5)
    with slurm_cluster(settings, scheduler_options={"dashboard_address": ":0"}) as cluster:
        script = cluster.job_script()
    assert "#SBATCH -p gpu" in script and "#SBATCH -A vision-lab" in script
    assert "#SBATCH -n 1" in script and "#SBATCH --cpus-per-task=8" in script
    assert "#SBATCH --mem=60G" in script and "#SBATCH -t 04:30:00" in script
    assert "#SBATCH --gres=gpu:2" in script and "#SBATCH --constraint=a100" in script
    assert "--resources GPU=2" in script and "--nthreads 8" in script


def test_an_unreachable_scheduler_is_a_clear_error_within_seconds():
    import socket
    with socket.socket() as probe:  # a port on which nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(ClusterError, match=f"cannot reach the dask scheduler at tcp://127.0.0.1:{port}"):
        with cluster_client(f"tcp://127.0.0.1:{port}", connect_timeout=2):
            pass
    assert time.monotonic() - started < 60  # a hang would block for minutes


# ------------------------------------------------------------------------------------------------------ real clusters
@pytest.fixture(scope="module")
def local_cluster():
    """A real LocalCluster of two worker processes on localhost, shared by this module's cluster tests."""
    lines = []
    with cluster_client("local:2", log=lines.append) as client:
        yield client, lines


@pytest.mark.slow
def test_a_local_cluster_of_two_processes_gives_the_in_process_results_bit_for_bit(tmp_path, local_cluster):
    client, lines = local_cluster
    reference = in_process_reference(tmp_path)
    units = blocks()
    store = UnitStore(tmp_path / "cluster", "toy", {"size": SIZE})
    assert len(set(worker_pids(client).values()) - {os.getpid()}) == 2
    result = run_units(units, store, client=client, threads=1, progress=False)
    assert result.computed == 3 and "local:2 (2 worker(s) now); dashboard: http" in lines[0]
    xr.testing.assert_identical(assembled(store, units), reference)


@pytest.mark.slow
def test_a_worker_killed_mid_unit_is_replaced_and_the_results_are_identical(tmp_path, local_cluster):
    from distributed import Event
    client, _ = local_cluster
    reference = in_process_reference(tmp_path)
    units = blocks(waiting_block, "started", "release")
    store = UnitStore(tmp_path / "cluster", "toy", {"size": SIZE})
    outcome = {}

    def step():
        try:
            outcome["run"] = run_units(units, store, client=client, threads=1, progress=False)
        except BaseException as error:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = error

    runner = threading.Thread(target=step)
    runner.start()
    assert Event("started", client=client).wait(timeout=120)
    busy = [address for address, keys in client.processing().items() if keys]
    assert busy, "no worker is running a unit"
    victim = worker_pids(client)[busy[0]]
    os.kill(victim, signal.SIGKILL)
    Event("release", client=client).set()
    runner.join(timeout=300)
    assert not runner.is_alive()
    assert victim not in worker_pids(client).values()  # it died; its nanny started another worker
    assert "error" not in outcome, outcome.get("error")
    assert outcome["run"].computed == 3
    xr.testing.assert_identical(assembled(store, units), reference)


@pytest.mark.slow
def test_a_user_error_on_a_cluster_stops_the_step_without_retries(tmp_path, local_cluster):
    client, _ = local_cluster
    record = tmp_path / "attempts.txt"
    units = blocks(failing_block, str(record))
    with pytest.raises(ToyInputError, match="image 4 cannot be read"):
        run_units(units, UnitStore(tmp_path, "toy", {}), client=client, threads=1, progress=False)
    attempts = record.read_text().split()
    assert attempts.count("4") == 1
