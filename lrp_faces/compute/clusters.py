"""Connecting to the compute a study runs on: a LocalCluster, an existing dask scheduler, or SLURM.

``cluster`` strings (the CLI's ``--cluster``):

* ``local`` or ``local:N``: a :class:`distributed.LocalCluster` of N worker processes on this machine (default:
  one per core), with threads per worker chosen so that N x threads <= cores. On a machine with CUDA GPUs every
  worker also offers the resource ``GPU=1``: each runs one GPU unit at a time, on the machine's GPU(s).
* ``tcp://HOST:PORT`` (or ``tls://``): an existing scheduler, e.g. one started with ``dask scheduler`` and
  ``dask worker --resources GPU=1`` on GPU nodes. The workers must see the same files as this process.
* ``slurm``: a :class:`dask_jobqueue.SLURMCluster` from :class:`SlurmSettings` (the study file's
  ``[compute.slurm]`` table), scaled adaptively between its minimum and maximum number of jobs.

Nothing here imports dask.distributed until a cluster is asked for.
"""
from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from ..errors import LRPFacesError

__all__ = ["ClusterError", "ClusterSpec", "SlurmSettings", "parse_cluster", "cluster_client", "slurm_cluster",
           "available_cores", "worker_pids", "CONNECT_TIMEOUT"]

CONNECT_TIMEOUT = 10.0
"""Seconds to wait for a scheduler address before giving up with an error."""
_LOCAL = re.compile(r"^local(?::(\d+))?$")
_ADDRESS = re.compile(r"^(tcp|tls|ucx|inproc)://[^\s/]+(:\d+)?/?$")


class ClusterError(LRPFacesError, ValueError):
    """A ``cluster`` value that is not understood, or a cluster that cannot be started or reached."""


def available_cores() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@dataclass(frozen=True)
class ClusterSpec:
    """A parsed ``cluster`` value: ``kind`` is ``local``, ``address`` or ``slurm``."""

    kind: str
    workers: int | None = None
    address: str | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return "local" if self.workers is None else f"local:{self.workers}"
        return self.address if self.kind == "address" else self.kind


def parse_cluster(text: str) -> ClusterSpec:
    """Parse a ``cluster`` value: ``local``, ``local:N``, ``tcp://HOST:PORT`` or ``slurm``.

    Raises
    ------
    ClusterError
        Any other value, naming it and listing the accepted forms.
    """
    if not isinstance(text, str):
        raise ClusterError(f"cluster must be a string such as 'local:2', got {type(text).__name__}")
    value = text.strip()
    match = _LOCAL.match(value)
    if match:
        workers = None if match[1] is None else int(match[1])
        if workers == 0:
            raise ClusterError(f"cluster {text!r}: local:N needs N >= 1 worker processes")
        return ClusterSpec("local", workers=workers)
    if _ADDRESS.match(value):
        return ClusterSpec("address", address=value.rstrip("/"))
    if value == "slurm":
        return ClusterSpec("slurm")
    raise ClusterError(f"cluster {text!r} is not understood; expected 'local' or 'local:N' (N worker processes on "
                       "this machine), 'tcp://HOST:PORT' (a running dask scheduler) or 'slurm' (with a "
                       "[compute.slurm] table in the study file)")


@dataclass(frozen=True)
class SlurmSettings:
    """The SLURM jobs that carry dask workers (the study file's ``[compute.slurm]`` table).

    Parameters
    ----------
    cores : int
        CPU cores per job.
    memory : str
        Memory per job, e.g. ``"32GB"``.
    walltime : str
        Time limit per job, ``"HH:MM:SS"``.
    queue : str, optional
        The partition (``-p``).
    account : str, optional
        The account (``-A``).
    gpus_per_job : int
        GPUs per job (``--gres=gpu:N``); each job's worker then offers the resource ``GPU=N``.
    processes : int
        Worker processes per job (threads per process: cores / processes).
    job_extra : sequence of str
        More ``#SBATCH`` directives, e.g. ``["--constraint=a100"]``.
    adapt_minimum, adapt_maximum : int
        Bounds of the adaptive number of jobs.
    """

    cores: int
    memory: str
    walltime: str = "02:00:00"
    queue: str | None = None
    account: str | None = None
    gpus_per_job: int = 0
    processes: int = 1
    job_extra: tuple[str, ...] = ()
    adapt_minimum: int = 0
    adapt_maximum: int = 1

    def __post_init__(self):
        for name, low in (("cores", 1), ("processes", 1), ("gpus_per_job", 0), ("adapt_minimum", 0),
                          ("adapt_maximum", 1)):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise ClusterError(f"[compute.slurm].{name}: expected an integer >= {low}, got {value!r}")
        if self.adapt_minimum > self.adapt_maximum:
            raise ClusterError(f"[compute.slurm]: adapt_minimum ({self.adapt_minimum}) is larger than adapt_maximum "
                               f"({self.adapt_maximum})")
        if self.processes > self.cores:
            raise ClusterError(f"[compute.slurm]: processes ({self.processes}) must not exceed cores ({self.cores})")
        if not re.match(r"^\d+(\.\d+)?\s*[KMGT]i?B$", str(self.memory)):
            raise ClusterError(f"[compute.slurm].memory: expected a size such as '32GB', got {self.memory!r}")
        if not re.match(r"^(\d+-)?\d{1,2}:\d{2}:\d{2}$", str(self.walltime)):
            raise ClusterError(f"[compute.slurm].walltime: expected 'HH:MM:SS' (or 'D-HH:MM:SS'), got "
                               f"{self.walltime!r}")
        object.__setattr__(self, "job_extra", tuple(self.job_extra))


def slurm_cluster(settings: SlurmSettings, **options: Any):
    """A :class:`dask_jobqueue.SLURMCluster` for ``settings`` (not yet scaled; call ``adapt`` or ``scale``).

    ``options`` go to the constructor (e.g. ``scheduler_options``). ``cluster.job_script()`` shows the batch
    script it submits.
    """
    from dask_jobqueue import SLURMCluster
    directives = list(settings.job_extra)
    worker_args = []
    if settings.gpus_per_job:
        directives.append(f"--gres=gpu:{settings.gpus_per_job}")
        worker_args = ["--resources", f"GPU={settings.gpus_per_job}"]
    return SLURMCluster(cores=settings.cores, memory=settings.memory, walltime=settings.walltime,
                        queue=settings.queue, account=settings.account, processes=settings.processes,
                        job_extra_directives=directives, worker_extra_args=worker_args, **options)


def _gpu_count() -> int:
    import torch
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _local_cluster(workers: int | None):
    from distributed import LocalCluster
    cores = available_cores()
    workers = workers if workers is not None else cores
    threads = max(1, cores // workers)
    resources = {"GPU": 1} if _gpu_count() else None
    return LocalCluster(n_workers=workers, threads_per_worker=threads, processes=True, dashboard_address=":0",
                        silence_logs=40, resources=resources)


@contextlib.contextmanager
def cluster_client(cluster: str | ClusterSpec | None, slurm: SlurmSettings | None = None,
                   log: Callable[[str], None] | None = None,
                   connect_timeout: float = CONNECT_TIMEOUT) -> Iterator[Any]:
    """A ``dask.distributed.Client`` for ``cluster`` for the block, closed (with any cluster it started) after it.

    ``None`` yields None: the caller runs in-process and dask.distributed is never imported. The dashboard's
    address is logged once.

    Raises
    ------
    ClusterError
        An unknown value, ``slurm`` without settings, or a scheduler that does not answer within
        ``connect_timeout`` seconds.
    """
    if cluster is None:
        yield None
        return
    spec = cluster if isinstance(cluster, ClusterSpec) else parse_cluster(cluster)
    log = log or (lambda line: None)
    from distributed import Client
    with contextlib.ExitStack() as stack:
        if spec.kind == "address":
            try:
                client = Client(spec.address, timeout=connect_timeout)
            except (OSError, TimeoutError) as error:
                raise ClusterError(f"cannot reach the dask scheduler at {spec.address} within {connect_timeout:g} s "
                                   f"({type(error).__name__}: {error}); is `dask scheduler` running there, and is the "
                                   "address right?") from None
        elif spec.kind == "local":
            local = stack.enter_context(_local_cluster(spec.workers))
            client = Client(local)
        else:
            if slurm is None:
                raise ClusterError("cluster 'slurm' needs a [compute.slurm] table in the study file (cores, memory, "
                                   "walltime, queue, account, gpus_per_job, ...)")
            jobs = stack.enter_context(slurm_cluster(slurm))
            jobs.adapt(minimum_jobs=slurm.adapt_minimum, maximum_jobs=slurm.adapt_maximum)
            client = Client(jobs)
        stack.enter_context(client)
        workers = len(client.scheduler_info().get("workers", {}))
        log(f"cluster: {spec} ({workers} worker(s) now); dashboard: {client.dashboard_link}")
        yield client


def worker_pids(client: Any) -> dict[str, int]:
    """Worker address -> process id, e.g. to watch or stop one worker."""
    return client.run(os.getpid)
