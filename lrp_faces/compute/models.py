"""The models units run: loaded once per process and device while units of the same model follow each other.

A unit names its model by a *source*: a model object (it runs as it is), or something with a ``load()`` method,
such as a :class:`lrp_faces.zoo.ZooEntry`, which is loaded in the process that runs the unit. Loading a full-size
VGG-16 takes longer than explaining a block of images on a GPU, so each thread keeps the last model it loaded (and
moved to its device) for the next unit; the steps order their units model by model.
"""
from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

__all__ = ["unit_model", "release_models", "model_source", "source_version"]

_LAST = threading.local()


def unit_model(source: Any, device: torch.device | None = None, version: str | None = None) -> nn.Module:
    """The model of a unit's ``source``, on ``device`` (None: where it loads).

    Parameters
    ----------
    source : nn.Module or object with ``load()``
        A model is returned as it is (moved to ``device`` in place, if given). A loadable source is loaded once per
        thread, version and device, and kept until a unit of another one runs in the same thread.
    device : torch.device, optional
        Where the unit computes.
    version : str, optional
        What identifies the weights the source holds now (e.g. their digest), so that a checkpoint rewritten in
        place is loaded again.
    """
    if isinstance(source, nn.Module):
        return source if device is None else source.to(device)
    key = (source, version, None if device is None else str(device))
    if getattr(_LAST, "key", None) == key:
        return _LAST.model
    _LAST.key, _LAST.model = None, None  # free the previous model before loading the next
    model = source.load()
    if device is not None:
        model = model.to(device)
    _LAST.key, _LAST.model = key, model
    return model


def release_models() -> None:
    """Forget the model this thread keeps for its next unit (frees its memory)."""
    _LAST.key, _LAST.model = None, None


def model_source(zoo: Mapping, spec: Any) -> Any:
    """What a unit loads the model of ``spec`` from: the zoo's entry (loaded where the unit runs, e.g. a
    :class:`lrp_faces.zoo.ZooEntry`), else the zoo's model itself."""
    entry = getattr(zoo, "entries", {}).get(spec)
    return entry if entry is not None and callable(getattr(entry, "load", None)) else zoo[spec]


def source_version(source: Any) -> list | None:
    """What identifies a loadable source's weights now, for a step's settings: its file's path, size and
    modification time (None for a model held in memory)."""
    path = getattr(source, "path", None)
    if path is None or not Path(path).is_file():
        return None
    status = Path(path).stat()
    return [str(path), status.st_size, status.st_mtime_ns]
