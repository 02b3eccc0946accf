"""Where a study runs: the study file's ``[compute]`` table and the ``--device`` / ``--cluster`` options.

::

    [compute]
    device = "auto"          # cpu | cuda | cuda:N | auto (a GPU when there is one)
    cluster = "local:2"      # optional: local[:N] | tcp://HOST:PORT | slurm; --cluster overrides it
    threads = 1              # torch threads per unit (default: 1 for the demo zoo, else torch's own)
    block_size = 64          # images per unit of work (default: each step's own)

    [compute.slurm]          # for cluster = "slurm": the jobs that carry the dask workers
    cores = 8
    memory = "64GB"
    walltime = "04:00:00"
    queue = "gpu"
    account = "vision-lab"
    gpus_per_job = 1
    job_extra = ["--constraint=a100"]
    adapt_minimum = 0
    adapt_maximum = 10

None of these settings changes what a step computes except ``block_size`` (float rounding of other batch shapes),
so they are not part of the steps' recorded settings; ``device`` is recorded in the results' attributes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..compute import ClusterError, SlurmSettings, parse_cluster
from ..devices import DeviceError, resolve_device
from ..toml_tables import TomlTable
from ._toml import StudyError

__all__ = ["ComputeSettings", "DEVICES"]

DEVICES = "cpu | cuda | cuda:N | auto"


@dataclass(frozen=True)
class ComputeSettings:
    """``[compute]``: the device, the cluster, torch threads and images per unit of a study's steps.

    Parameters
    ----------
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (a GPU when there is one, else the CPU).
    cluster : str, optional
        ``"local"``, ``"local:N"``, ``"tcp://HOST:PORT"`` or ``"slurm"``; None runs every step in this process.
    threads : int, optional
        Torch threads per unit of work; None: 1 for the demo zoo, else torch's default.
    block_size : int, optional
        Images per unit of work; None: each step's default.
    slurm : SlurmSettings, optional
        The SLURM jobs, for ``cluster = "slurm"``.
    """

    device: str = "auto"
    cluster: str | None = None
    threads: int | None = None
    block_size: int | None = None
    slurm: SlurmSettings | None = None

    def __post_init__(self):
        if not isinstance(self.device, str) or not self.device.strip():
            raise StudyError(f"[compute].device: expected one of {DEVICES}, got {self.device!r}")
        try:
            if self.cluster is not None:
                parse_cluster(self.cluster)
        except ClusterError as error:
            raise StudyError(f"[compute].cluster: {error}") from None

    def with_options(self, device: str | None = None, cluster: str | None = None,
                     threads: int | None = None) -> "ComputeSettings":
        """These settings with the command line's ``--device``, ``--cluster`` and ``--threads`` where given."""
        return ComputeSettings(device=self.device if device is None else device,
                               cluster=self.cluster if cluster is None else cluster,
                               threads=self.threads if threads is None else threads, block_size=self.block_size,
                               slurm=self.slurm)

    def resolved_device(self):
        """The torch device of :attr:`device` on this machine (``auto``: a GPU when there is one)."""
        try:
            return resolve_device(self.device)
        except DeviceError as error:
            raise StudyError(f"device {self.device!r}: {error}") from None

    def to_dict(self) -> dict[str, Any]:
        data = {"device": self.device, "cluster": self.cluster, "threads": self.threads, "block_size": self.block_size}
        if self.slurm is not None:
            data["slurm"] = {field: getattr(self.slurm, field) for field in self.slurm.__dataclass_fields__}
        return data

    @classmethod
    def from_table(cls, table: TomlTable) -> "ComputeSettings":
        device = table.get("device", str, "auto")
        cluster = table.get("cluster", str, None)
        threads = table.get("threads", int, None, low=1)
        block_size = table.get("block_size", int, None, low=1)
        slurm_table = table.table("slurm")
        slurm = None
        if slurm_table.data:
            options = {"cores": slurm_table.get("cores", int, low=1), "memory": slurm_table.get("memory", str),
                       "walltime": slurm_table.get("walltime", str, "02:00:00"),
                       "queue": slurm_table.get("queue", str, None), "account": slurm_table.get("account", str, None),
                       "gpus_per_job": slurm_table.get("gpus_per_job", int, 0, low=0),
                       "processes": slurm_table.get("processes", int, 1, low=1),
                       "job_extra": slurm_table.array("job_extra", str, ()),
                       "adapt_minimum": slurm_table.get("adapt_minimum", int, 0, low=0),
                       "adapt_maximum": slurm_table.get("adapt_maximum", int, 1, low=1)}
            slurm_table.finish()
            try:
                slurm = SlurmSettings(**options)
            except ClusterError as error:
                raise StudyError(f"{table.file}: {error}") from None
        table.finish()
        return cls(device=device, cluster=cluster, threads=threads, block_size=block_size, slurm=slurm)
