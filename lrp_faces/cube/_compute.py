"""``compute``: every model's relevance maps for a data set, one NetCDF4 file per model, resumable block by block."""
from __future__ import annotations

import datetime
import hashlib
import os
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm.auto import tqdm

from .. import methods as method_registry
from ..attribution import check_images
from ..faces import DatasetError, ImageTable, as_face_data, describe_images, load_images
from ..files import canonical_json, exclusive_lock, sha256_of_file, temporary_files
from ..methods import Method
from ..models import weights_digest
from ..module_state import evaluation_mode
from ..compute import UNITS_DIR, Unit, UnitStore, model_source, run_units
from ..zoo import ModelSpec, TaskLabels, scored_labels
from ._open import open_cube
from ._store import (FORMAT, FORMAT_VERSION, PER_MODEL, SHARED, CubeFileError, CubeInputError, CubeMismatchError,
                     CubeWarning, Header, cube_files, file_name, read_header, verify_file,
                     version_attributes, write_model_file)
from ..devices import model_device, resolve_device
from .blocks import block_ranges, block_size_for, dataset_block, explain_unit, request_digest, unit_key

LOCK_NAME = ".lrp_faces_cube.lock"


@dataclass(frozen=True)
class _Run:
    """What one ``compute`` call explains, and how: shared by every model."""

    dataset: object
    images: ImageTable
    labels: dict
    label_digests: dict
    request: dict
    method: Method
    contrastive: bool
    batch_size: int
    block_size: int
    device: torch.device | None
    progress: bool
    scored: Mapping[str, TaskLabels]


def compute(zoo: Mapping, dataset, path: str | os.PathLike, method: str | Method = "epsilon_gamma_box",
            batch_size: int = 16, progress: bool = True, overwrite: bool = False, contrastive: bool = True,
            block_size: int | None = None, device: str | torch.device | None = None, client: Any = None,
            threads: int | None = None, **method_params) -> xr.Dataset:
    """Compute the relevance maps of every model of ``zoo`` for every image of ``dataset`` into a cube directory.

    Each map explains the model's true class, i.e. the dataset's label for the model's task
    (``dataset.labels(spec.task)``). The work is split into units of one model and one block of images
    (:func:`lrp_faces.cube.blocks.explain_unit`), run here one after another or on a dask cluster (``client``);
    each finished unit is kept in ``path/.units/cube``, and each model's NetCDF4 file is assembled from its units and
    renamed into place as soon as they are all finished. The cube is never held in memory. A rerun reuses complete
    files and finished units computed with the same arguments and weights, and computes the rest; the result does
    not depend on where a run was interrupted, or where its units ran.

    A reused file is first checked: every chunk against its checksum (a fraction of a percent of the time it took
    to compute), and the model's weights against the digest recorded in it (by hashing the model's checkpoint file,
    or by loading the model when it has no file or the file changed). Files of damaged or changed models are
    recomputed, with a :class:`CubeWarning` that names them.

    Parameters
    ----------
    zoo : Zoo or Mapping
        ``ModelSpec`` -> model, e.g. :class:`lrp_faces.zoo.Zoo` (models are loaded one at a time).
    dataset : SyntheticFaces, FaceDataset or similar
        Images (float RGB in [0, 1]) with ``image_ids``, ``labels(task)`` and optionally ``identity`` and ``gender``.
    path : str or PathLike
        Directory of the cube; created if needed.
    method : str or Method
        A name from :func:`lrp_faces.methods.names`, or a method instance.
    batch_size : int
        Images per forward/backward pass, and per chunk on disk.
    progress : bool
        Show progress bars over models and blocks.
    overwrite : bool
        Recompute every model of the zoo even if its file or blocks exist, and delete files of other models that
        were computed with other arguments. Without it, files computed with other arguments (method, parameters,
        contrastive, images, labels, image size) are an error.
    contrastive : bool
        Explain ``z_c - mean_{j != c} z_j`` (the default) instead of the logit ``z_c``.
    block_size : int, optional
        Images per unit of work, a multiple of ``batch_size``; by default the smallest multiple of at least 64. A
        killed run loses at most one block per model; the maps do not depend on it.
    device : str or torch.device, optional
        Where to compute: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``; by default where each model is. Each
        model moves there once (in-memory models move back afterwards); batches move from pinned memory.
    client : dask.distributed.Client, optional
        Run the units on this cluster (see :func:`lrp_faces.compute.cluster_client`); the workers must see the
        zoo's checkpoint files and, for data sets read from files, the images. None runs them here.
    threads : int, optional
        Torch threads per unit (None: this process's setting, or each worker's own); the same number everywhere
        gives bit-identical maps in-process and on a cluster.
    **method_params
        Parameters of the method, e.g. ``gamma=0.5``.

    Returns
    -------
    xarray.Dataset
        The cube in ``path``, opened lazily (see :func:`open`).

    Raises
    ------
    CubeInputError
        The zoo and the dataset do not fit (image size, label range, empty data set, a path that is a file, ...).
    CubeMismatchError
        ``path`` holds files computed with other arguments (and ``overwrite`` is False).
    CubeNonFiniteError
        A model's maps or outputs came out NaN or Inf (the images and the likely cause are named); nothing of that
        model is stored.
    CubeFileError
        ``path`` holds a damaged file of a model outside the zoo (and ``overwrite`` is False).
    """
    method = _resolve_method(method, method_params)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CubeInputError(f"batch_size must be a positive int, got {batch_size!r}")
    block_size = block_size_for(batch_size, block_size)
    device = None if device is None else resolve_device(device)
    directory = _check_directory(path)
    specs = _check_zoo(zoo)
    try:
        dataset = as_face_data(dataset)
        images = describe_images(dataset)
        scored = scored_labels(zoo, specs, dataset)
    except DatasetError as error:  # the data set, or its classes and the models', do not fit
        raise CubeInputError(str(error)) from error
    zoo_size = getattr(zoo, "image_size", None)
    if zoo_size is not None and (images.height, images.width) != (zoo_size, zoo_size):
        raise CubeInputError(f"the zoo's models take {zoo_size}x{zoo_size}-pixel images but the dataset's images are "
                             f"{images.height}x{images.width} pixels; build the dataset with image_size={zoo_size}")
    labels = {task: task_labels.labels for task, task_labels in scored.items()}
    label_digests = {task: hashlib.sha256(values.astype("<i8").tobytes()).hexdigest()
                     for task, values in labels.items()}
    request = {"Conventions": "CF-1.8", "title": "lrp_faces relevance cube, one model", "cube_format": FORMAT,
               "cube_format_version": FORMAT_VERSION, "method": method.name,
               "method_params": canonical_json(method.params), "canonizers": canonical_json(list(method.canonizers)),
               "contrastive": int(bool(contrastive)), "target": "label",
               "explained_output": ("z_c - mean_{j != c} z_j for the label's class c" if contrastive
                                    else "logit z_c of the label's class c"),
               "input_height": images.height, "input_width": images.width, "n_images": len(images.ids),
               "images_sha256": images.digest, "batch_size": batch_size, **version_attributes()}
    run = _Run(dataset, images, labels, label_digests, request, method, bool(contrastive), batch_size, block_size,
               device, progress, scored)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        for leftover in temporary_files(directory):  # from a killed run; we hold the lock, so nobody writes them
            leftover.unlink()
        store = UnitStore(directory / UNITS_DIR, "cube", {"cube_format_version": FORMAT_VERSION,
                                                          "block_size": block_size})
        reusable = _reusable_files(directory, specs, request, label_digests, overwrite)
        blocks = _image_blocks(dataset, images, block_size)
        plans = [plan for spec in tqdm(specs, desc="cube: models", unit="model", disable=not progress, leave=False)
                 if (plan := _plan_model(zoo, spec, reusable.get(spec), run, blocks)) is not None]
        store.prune(keep=[key for plan in plans for key in plan.keys])
        if overwrite:
            store.remove([key for plan in plans for key in plan.keys])
        waiting = {plan.spec: set(plan.keys) for plan in plans}

        def finished(key: str) -> None:
            plan = next(plan for plan in plans if key in waiting[plan.spec])
            waiting[plan.spec].discard(key)
            if not waiting[plan.spec]:
                _assemble(directory, store, plan, run)

        with _models_kept_in_place(plans):
            run_units([unit for plan in plans for unit in plan.units], store, client=client, threads=threads,
                      progress=progress, on_finished=finished)
        for plan in plans:  # models whose units were all finished before this run
            if not (directory / file_name(plan.spec)).exists():
                _assemble(directory, store, plan, run)
        if not any(store.directory.glob("*.nc")):
            store.clear()
    return open_cube(directory)


def _finish(started: float) -> dict:
    created = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return {"created": created, "seconds": round(time.perf_counter() - started, 3),
            "history": f"{created} lrp_faces.cube.compute"}


def _resolve_method(method, params) -> Method:
    if isinstance(method, Method):
        if params:
            raise TypeError(f"pass parameters either to the method instance or to compute, not both: {params}")
        return method
    if not isinstance(method, str):
        raise TypeError(f"method must be a method name or a Method instance, got {type(method).__name__}")
    return method_registry.get(method, **params)


def _check_directory(path) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a directory path (str or PathLike), got {type(path).__name__}")
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise CubeInputError(f"{str(directory)!r} exists and is not a directory; a cube is a directory of one NetCDF4 "
                             "file per model: pass the path of a new or existing cube directory")
    return directory


def _check_zoo(zoo) -> list[ModelSpec]:
    if not isinstance(zoo, Mapping):
        raise TypeError(f"zoo must be a Zoo or a Mapping ModelSpec -> model, got {type(zoo).__name__}")
    odd = [key for key in zoo.keys() if not isinstance(key, ModelSpec)]
    if odd:
        raise TypeError(f"the zoo's keys must be ModelSpec, got {odd[0]!r}")
    if not len(zoo):
        raise CubeInputError("the zoo holds no models")
    return sorted(zoo.keys())


# ------------------------------------------------------------------------------------------------------- the models
def _check_label_range(spec: ModelSpec, labels: np.ndarray, classes: int | None) -> None:
    if classes is not None and int(labels.max()) >= classes:
        raise CubeInputError(f"model {spec}: the dataset's {spec.task!r} labels go up to {int(labels.max())} but the "
                             f"model has {classes} classes (0 to {classes - 1}); the model and the dataset do not fit")


def _model_file(zoo, spec: ModelSpec) -> dict:
    """The zoo entry's checkpoint file, its format and its SHA-256 (hashed here, once per compute call)."""
    entry = getattr(zoo, "entries", {}).get(spec)
    path = getattr(entry, "path", None)
    if path is None or not Path(path).is_file():
        return {"model_file": "", "model_file_format": "", "model_file_sha256": ""}
    return {"model_file": str(path), "model_file_format": str(getattr(entry, "format", "")),
            "model_file_sha256": sha256_of_file(path)}


def _dry_run(model, spec: ModelSpec, image: torch.Tensor, labels: np.ndarray, contrastive: bool) -> int:
    """Run the model on one image: check it takes the dataset's images and has enough classes for the labels."""
    device = model_device(model)
    dtype = next(model.parameters()).dtype if next(model.parameters(), None) is not None else torch.float32
    try:
        with evaluation_mode(model), torch.no_grad():
            logits = model(image.to(device=device, dtype=dtype))
    except RuntimeError as error:
        raise CubeInputError(f"model {spec} cannot take the dataset's {image.shape[2]}x{image.shape[3]}-pixel images "
                             f"({error}); are the model and the dataset from the same study?") from error
    if logits.ndim != 2 or logits.shape[0] != 1:
        raise CubeInputError(f"model {spec} gives outputs of shape {tuple(logits.shape)} for one image; expected "
                             "(1, classes)")
    classes = int(logits.shape[1])
    _check_label_range(spec, labels, classes)
    if contrastive and classes < 2:
        raise CubeInputError(f"model {spec} has one class: the contrastive output needs two; use contrastive=False")
    return classes


@dataclass
class _ModelPlan:
    """One model to compute: its file's attributes, its units and their keys, and when its planning started."""

    spec: ModelSpec
    attrs: dict
    units: list
    keys: list
    started: float


def _image_blocks(dataset, images: ImageTable, block_size: int) -> dict[tuple[int, int], Any]:
    """The images of every block as units take them: a tensor of the block's own (not a view of all images, which
    would be copied whole into every unit sent to a cluster), or a data set of the block's files."""
    held = getattr(dataset, "images", None)
    blocks = {}
    for start, stop in block_ranges(len(images.ids), block_size):
        if isinstance(held, torch.Tensor) or not callable(getattr(dataset, "subset", None)):
            blocks[(start, stop)] = check_images(load_images(dataset, start, stop),
                                                 f"images {start} to {stop - 1}").clone()
        else:
            blocks[(start, stop)] = dataset.subset(np.arange(start, stop))
    return blocks


@contextmanager
def _models_kept_in_place(plans: list) -> Iterator[None]:
    """Put in-memory models (a Mapping zoo's) back on their devices after units moved them."""
    models = {id(unit.arguments[0]): unit.arguments[0] for plan in plans for unit in plan.units
              if isinstance(unit.arguments[0], torch.nn.Module)}
    original = {key: model_device(model) for key, model in models.items()}
    try:
        yield
    finally:
        for key, model in models.items():
            if model_device(model) != original[key]:
                model.to(original[key])


def _model_attributes(model, spec: ModelSpec, run: _Run, source: dict, weights: str, classes: int) -> dict:
    preprocessing = getattr(model, "preprocessing", None)
    return {**run.request, "pretraining": spec.pretraining, "task": spec.task, "seed": spec.seed, "model": spec.name,
            **source, "model_weights_sha256": weights, "model_num_classes": classes,
            "class_names": canonical_json(getattr(model, "class_names", None) or run.scored[spec.task].class_names),
            "preprocessing": canonical_json(preprocessing.to_dict() if preprocessing is not None else None),
            "architecture": canonical_json(getattr(model, "architecture", None)),
            "labels_sha256": run.label_digests[spec.task]}


def _plan_model(zoo: Mapping, spec: ModelSpec, header: Header | None, run: _Run,
                blocks: dict[tuple[int, int], Any]) -> _ModelPlan | None:
    """The units that compute ``spec``'s file, or None when ``header`` (its reusable file) holds maps of the same
    weights. The weights are identified by the checkpoint's SHA-256 when it is unchanged, else by loading the model
    and hashing its state dict; a loaded model is checked on one image before any unit runs."""
    source = _model_file(zoo, spec)
    if header is not None and source["model_file_sha256"] and all(
            header.attrs.get(key) == value for key, value in source.items()):
        return None
    model = zoo[spec]
    weights = weights_digest(model)
    if header is not None:
        if header.attrs.get("model_weights_sha256") == weights:
            return None
        warnings.warn(f"model {spec}: weights changed since its maps in {str(header.path)!r} were computed (weights "
                      f"digest {str(header.attrs.get('model_weights_sha256'))[:12]} -> {weights[:12]}"
                      f"{', from ' + source['model_file'] if source['model_file'] else ''}); recomputing its maps",
                      CubeWarning, stacklevel=4)
    started = time.perf_counter()
    classes = _dry_run(model, spec, load_images(run.dataset, 0, 1), run.labels[spec.task], run.contrastive)
    attrs = _model_attributes(model, spec, run, source, weights, classes)
    digest = request_digest(attrs)
    loadable = model_source(zoo, spec)
    labels = run.labels[spec.task]
    units = [Unit(unit_key(spec, start, stop, digest), explain_unit,
                  (loadable, run.method, images, labels[start:stop].copy(), start, run.images.ids[start:stop], spec,
                   run.contrastive, run.batch_size, run.device, weights),
                  gpu=run.device is not None and run.device.type == "cuda")
             for (start, stop), images in blocks.items()]
    return _ModelPlan(spec, attrs, units, [unit.key for unit in units], started)


def _assemble(directory: Path, store: UnitStore, plan: _ModelPlan, run: _Run) -> Path:
    """Write ``plan``'s model file from its finished units (read back verified, in image order), then delete them."""
    batches = ((unit.arguments[4], dataset_block(store.read(unit.key))) for unit in plan.units)
    chunk = min(run.batch_size, len(run.images.ids))
    path = write_model_file(directory, plan.spec, dict(plan.attrs), run.images, chunk, batches,
                            finish=lambda: _finish(plan.started))
    store.remove(plan.keys)
    return path


# ------------------------------------------------------------------------------------------ resume and integrity
@contextmanager
def _locked(directory: Path):
    """Hold an exclusive lock on the cube directory (released by the OS if the process is killed)."""
    def busy() -> CubeInputError:
        return CubeInputError(f"another compute() is writing into {str(directory)!r} (it holds {LOCK_NAME}); wait for "
                              "it to finish or use another directory")

    with exclusive_lock(directory / LOCK_NAME, busy):
        yield


def _reusable_files(directory: Path, specs: list[ModelSpec], request: dict, label_digests: dict,
                    overwrite: bool) -> dict[ModelSpec, Header]:
    """The zoo's complete files in ``directory`` computed with this call's arguments, verified chunk by chunk.

    A file of another model computed with other arguments is an error (or deleted, with ``overwrite``); a damaged
    or outdated file of a zoo model is left to be recomputed, with a warning.
    """
    wanted = {file_name(spec): spec for spec in specs}
    reusable = {}
    for path in cube_files(directory):
        spec = wanted.get(path.name)
        try:
            header = verify_file(path) if spec is not None and not overwrite else read_header(path)
        except CubeFileError as error:
            if spec is not None:
                if not overwrite:
                    warnings.warn(f"cube file {str(path)!r} {error.cause}; recomputing model {spec}", CubeWarning,
                                  stacklevel=3)
                continue
            if not overwrite:
                raise
            problems = [error.cause]
        else:
            problems = header.differences(request, SHARED)
            if spec is not None:
                problems += header.differences({"labels_sha256": label_digests[spec.task]}, PER_MODEL)
                if header.spec != spec:
                    problems.append(f"it holds model {header.spec}, not {spec}")
        if spec is not None and (overwrite or not problems):
            if not overwrite:
                reusable[spec] = header
            continue
        if not problems:
            continue
        if overwrite:
            warnings.warn(f"overwrite=True: deleting {str(path)!r}, a model outside this zoo computed with other "
                          f"arguments or damaged ({'; '.join(problems)})", CubeWarning, stacklevel=3)
            path.unlink()
            continue
        raise CubeMismatchError(f"{str(path)!r} was computed with other arguments than this call "
                                f"({'; '.join(problems)}); refusing to mix results in one cube. Pass overwrite=True "
                                "to recompute every model of the zoo, or write the cube to another directory")
    return reusable
