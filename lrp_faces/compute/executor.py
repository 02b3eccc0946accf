"""Running a step's units: one after another in this process, or on a dask.distributed cluster.

Both ways run the same units with the same torch thread count, and the driver writes each result into the
:class:`~lrp_faces.compute.UnitStore` as it arrives, so the step's result does not depend on where its units ran.

* **In-process** (``client=None``): nothing imports dask.distributed.
* **Cluster**: units are submitted to ``client``; a unit that needs a GPU asks for the worker resource ``GPU=1``.
  A worker that dies mid-unit makes the scheduler run the unit again on another worker (dask's own fault
  tolerance); a unit that raises stops the step at once with that error, without retries (a user error such as
  an unreadable image would fail again).

Finished units are skipped on a rerun, so a step killed part-way resumes where it stopped.
"""
from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import dask
import torch
import xarray as xr
from tqdm.auto import tqdm

from .models import release_models
from .units import Unit, UnitError, UnitStore

__all__ = ["run_units", "run_unit", "StepRun"]

log = logging.getLogger("lrp_faces.compute")
"""Logs one line per step run: how many units were computed and reused (the CLI prints it)."""


@dataclass(frozen=True)
class StepRun:
    """What :func:`run_units` did: units computed now, reused from an earlier run, and the wall seconds."""

    step: str
    computed: int
    reused: int
    seconds: float

    def __str__(self) -> str:
        return f"{self.step}: {self.computed} unit(s) computed, {self.reused} reused ({self.seconds:.1f} s)"


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (None: leave the setting as it is)."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_unit(unit: Unit, threads: int | None = None) -> xr.Dataset:
    """Compute one unit with ``threads`` torch threads and return its result loaded in memory.

    Lazy (dask-backed) inputs of the unit, e.g. maps read from a cube on disk, are computed here, in this thread:
    a unit running on a cluster worker never submits tasks of its own.
    """
    with torch_threads(threads), dask.config.set(scheduler="synchronous"):
        return unit.run().load()


def _task_key(store: UnitStore, unit: Unit) -> str:
    """A dask key that names the step and unit, and changes with the settings (so no stale result is reused)."""
    return f"lrp_faces-{store.step}-{unit.key}-{store.digest[:12]}"


def run_units(units: Sequence[Unit], store: UnitStore, *, client: Any = None, threads: int | None = None,
              progress: bool = True, on_finished: Callable[[str], None] | None = None) -> StepRun:
    """Compute the units of ``store``'s step that are not finished yet, and store their results.

    Parameters
    ----------
    units : sequence of Unit
        All units of the step (finished ones are skipped). Keys must be unique.
    store : UnitStore
        Where results go; it is locked for the run, so two processes never run the same step into one directory.
    client : dask.distributed.Client, optional
        Run the units on this cluster; None runs them here, one after another.
    threads : int, optional
        Torch threads per unit (None: this process's setting in-process, each worker's own on a cluster). Give the
        same number everywhere to get bit-identical results in-process and on a cluster.
    progress : bool
        Show one progress bar over the units.
    on_finished : callable, optional
        Called with each unit's key after its result is stored.

    Returns
    -------
    StepRun
        How many units were computed and reused.

    Raises
    ------
    UnitError
        Duplicate keys, or a unit whose workers kept dying (e.g. out of memory).
    LRPFacesError
        The first error a unit raised (the step stops; finished units stay stored).
    """
    keys = [unit.key for unit in units]
    if len(set(keys)) != len(keys):
        duplicate = next(key for key in keys if keys.count(key) > 1)
        raise UnitError(f"{store.step}: unit key {duplicate!r} occurs more than once")
    started = time.perf_counter()
    with store.locked():
        finished = store.finished(keys)
        todo = [unit for unit in units if unit.key not in finished]
        with tqdm(total=len(units), initial=len(units) - len(todo), desc=store.step, unit="unit",
                  disable=not progress, leave=False) as bar:
            def stored(key: str, result: xr.Dataset) -> None:
                store.write(key, result)
                bar.update()
                if on_finished is not None:
                    on_finished(key)

            if client is None:
                try:
                    for unit in todo:
                        stored(unit.key, run_unit(unit, threads))
                finally:
                    release_models()
            else:
                _run_on_cluster(todo, store, client, threads, stored)
    summary = StepRun(store.step, len(todo), len(units) - len(todo), round(time.perf_counter() - started, 3))
    log.info("%s", summary)
    return summary


def _run_on_cluster(units: Sequence[Unit], store: UnitStore, client: Any, threads: int | None,
                    stored: Callable[[str, xr.Dataset], None]) -> None:
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    futures = {}
    for unit in units:
        future = client.submit(run_unit, unit, threads, key=_task_key(store, unit), pure=False,
                               resources={"GPU": 1} if unit.gpu else None)
        futures[future] = unit
    try:
        for future in as_completed(list(futures)):
            unit = futures[future]
            try:
                result = future.result()
            except KilledWorker as error:
                raise UnitError(f"{store.step}: unit {unit.key} was running on workers that died repeatedly ({error}); "
                                "they may be out of memory: use fewer threads or smaller batches per worker, or "
                                "workers with more memory") from None
            stored(unit.key, result)
            future.release()
    except BaseException:
        client.cancel(list(futures))
        raise
