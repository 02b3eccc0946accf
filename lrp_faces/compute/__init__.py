"""Where the work runs: each expensive step as independent units, run in-process or on a dask cluster.

The maths modules know nothing of this layer; the steps (:mod:`lrp_faces.cube`, :mod:`lrp_faces.masking`,
:mod:`lrp_faces.analysis`) describe their units and assemble their result files from the finished ones. See the
how-to "Run a study on GPUs or a cluster" in the documentation.
"""
from .units import UNITS_DIR, Unit, UnitError, UnitStore, settings_digest, units_root
from .executor import StepRun, run_unit, run_units, torch_threads
from .models import model_source, release_models, source_version, unit_model
from .clusters import (CONNECT_TIMEOUT, ClusterError, ClusterSpec, SlurmSettings, available_cores, cluster_client,
                       parse_cluster, slurm_cluster, worker_pids)

__all__ = ["Unit", "UnitStore", "UnitError", "UNITS_DIR", "run_units", "run_unit", "StepRun", "torch_threads",
           "unit_model", "release_models", "model_source", "source_version", "settings_digest", "units_root",
           "ClusterError", "ClusterSpec", "SlurmSettings", "parse_cluster", "cluster_client", "slurm_cluster",
           "available_cores", "worker_pids", "CONNECT_TIMEOUT"]
