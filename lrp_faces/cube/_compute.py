"""``compute``: every model's relevance maps for a data set, streamed to one NetCDF4 file per model, resumable."""
from __future__ import annotations

import builtins
import datetime
import hashlib
import os
import time
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import methods as method_registry
from ..attribution import attribution_mode, check_images
from ..methods import Explanation, Method
from ..zoo import ModelSpec
from ._open import open_cube
from ._store import (FORMAT, FORMAT_VERSION, PER_MODEL, SHARED, Batch, CubeFileError, CubeInputError,
                     CubeMismatchError, ImageTable, cube_files, file_name, read_header, temporary_files, to_json,
                     versions, write_model_file)

LOCK_NAME = ".lrp_faces_cube.lock"


def compute(zoo: Mapping, dataset, path: str | os.PathLike, method: str | Method = "epsilon_gamma_box",
            batch_size: int = 16, progress: bool = True, overwrite: bool = False, contrastive: bool = True,
            **method_params):
    """Compute the relevance maps of every model of ``zoo`` for every image of ``dataset`` into a cube directory.

    Each map explains the model's true class, i.e. the dataset's label for the model's task
    (``dataset.labels(spec.task)``). One NetCDF4 file per model is written into ``path``, batch by batch, under a
    temporary name that is renamed into place only when the file is complete; the cube is never held in memory.
    Rerunning with the same arguments computes only the models whose files are missing.

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
        Show progress bars over models and batches.
    overwrite : bool
        Recompute every model of the zoo even if its file exists, and delete files of other models that were
        computed with other arguments. Without it, files computed with other arguments (method, parameters,
        contrastive, images, labels, image size) are an error.
    contrastive : bool
        Explain ``z_c - mean_{j != c} z_j`` (the default) instead of the logit ``z_c``.
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
    CubeFileError
        ``path`` holds a truncated or damaged file (and ``overwrite`` is False).
    """
    method = _resolve_method(method, method_params)
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise CubeInputError(f"batch_size must be a positive int, got {batch_size!r}")
    directory = _check_directory(path)
    specs = _check_zoo(zoo)
    images = describe_images(dataset)
    zoo_size = getattr(zoo, "image_size", None)
    if zoo_size is not None and (images.height, images.width) != (zoo_size, zoo_size):
        raise CubeInputError(f"the zoo's models take {zoo_size}x{zoo_size}-pixel images but the dataset's images are "
                             f"{images.height}x{images.width} pixels; build the dataset with image_size={zoo_size}")
    labels = {task: task_labels(dataset, task, len(images.ids)) for task in sorted({spec.task for spec in specs})}
    label_digests = {task: hashlib.sha256(values.astype("<i8").tobytes()).hexdigest()
                     for task, values in labels.items()}
    request = {"Conventions": "CF-1.8", "title": "lrp_faces relevance cube, one model", "cube_format": FORMAT,
               "cube_format_version": FORMAT_VERSION, "method": method.name, "method_params": to_json(method.params),
               "canonizers": to_json(list(method.canonizers)), "contrastive": int(bool(contrastive)),
               "target": "label", "explained_output": ("z_c - mean_{j != c} z_j for the label's class c" if contrastive
                                                       else "logit z_c of the label's class c"),
               "input_height": images.height, "input_width": images.width, "n_images": len(images.ids),
               "images_sha256": images.digest, "batch_size": batch_size, **versions()}
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        for leftover in temporary_files(directory):  # from a killed run; we hold the lock, so nobody writes them
            leftover.unlink()
        todo = _plan(directory, specs, request, label_digests, overwrite)
        for spec in todo:
            _check_label_range(spec, labels[spec.task], _declared_classes(zoo, spec))
        first_image = load_images(dataset, 0, 1)
        bar = tqdm(total=len(specs), initial=len(specs) - len(todo), desc="cube", unit="model", disable=not progress)
        for spec in todo:
            bar.set_postfix_str(spec.name)
            model = zoo[spec]
            classes = _dry_run(model, spec, first_image, labels[spec.task], contrastive)
            entry = getattr(zoo, "entries", {}).get(spec)
            preprocessing = getattr(model, "preprocessing", None)
            attrs = {**request, "pretraining": spec.pretraining, "task": spec.task, "seed": spec.seed,
                     "model": spec.name, "model_file": str(getattr(entry, "path", "")), "model_num_classes": classes,
                     "class_names": to_json(getattr(model, "class_names", None)),
                     "preprocessing": to_json(preprocessing.to_dict() if preprocessing is not None else None),
                     "architecture": to_json(getattr(model, "architecture", None)),
                     "labels_sha256": label_digests[spec.task]}
            started = time.perf_counter()
            batches = _explained_batches(model, method, dataset, labels[spec.task], contrastive, batch_size,
                                         progress, spec.name)
            write_model_file(directory, spec, attrs, images, min(batch_size, len(images.ids)), batches,
                             finish=lambda: _finish(started))
            del model, batches
            bar.update()
        bar.close()
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


# ------------------------------------------------------------------------------------------------------ the dataset
def load_images(dataset, start: int, stop: int) -> torch.Tensor:
    """Images ``start:stop`` of ``dataset`` (n, 3, H, W): from ``.images``, ``.load_image(i)`` or ``dataset[i][0]``."""
    held = getattr(dataset, "images", None)
    if isinstance(held, torch.Tensor):
        return held[start:stop]
    loader = getattr(dataset, "load_image", None)
    if callable(loader):
        return torch.stack([torch.as_tensor(loader(index)) for index in range(start, stop)])
    return torch.stack([torch.as_tensor(dataset[index][0]) for index in range(start, stop)])


def _per_image(dataset, name: str, count: int) -> np.ndarray:
    values = getattr(dataset, name, None)
    if values is None:
        return np.full(count, -1, dtype=np.int64)
    values = np.asarray(values)
    if values.shape != (count,) or not np.issubdtype(values.dtype, np.integer):
        raise CubeInputError(f"dataset.{name} must hold one integer per image ({count}), got shape {values.shape} "
                             f"and dtype {values.dtype}")
    return values.astype(np.int64)


def describe_images(dataset) -> ImageTable:
    """Check ``dataset`` and return the ids, identity, gender, size and digest the cube records."""
    count = len(dataset)
    if count == 0:
        raise CubeInputError("the dataset is empty: there are no images to explain")
    ids = getattr(dataset, "image_ids", None)
    ids = [str(index) for index in range(count)] if ids is None else [str(value) for value in ids]
    if len(ids) != count:
        raise CubeInputError(f"the dataset has {count} images but {len(ids)} image_ids")
    if len(set(ids)) != count:
        duplicate = next(value for value in ids if ids.count(value) > 1)
        raise CubeInputError(f"image ids must be unique; {duplicate!r} occurs {ids.count(duplicate)} times")
    identity, gender = _per_image(dataset, "identity", count), _per_image(dataset, "gender", count)
    first = check_images(load_images(dataset, 0, 1), "the dataset's first image")
    height, width = (int(size) for size in first.shape[2:])
    declared = getattr(dataset, "image_size", None)
    if declared is not None and (height, width) != (declared, declared):
        raise CubeInputError(f"the dataset says image_size={declared} but its first image is {height}x{width} pixels")
    digest = hashlib.sha256(to_json({"ids": ids, "size": [height, width]}).encode())
    digest.update(identity.astype("<i8").tobytes())
    digest.update(gender.astype("<i8").tobytes())
    held = getattr(dataset, "images", None)
    if isinstance(held, torch.Tensor):  # in memory: hash every pixel, a few at a time
        for start in range(0, count, 256):
            digest.update(held[start:start + 256].float().contiguous().numpy().tobytes())
    else:  # loaded from files: hashing every image would mean reading them all; the first and last stand in
        digest.update(first.float().contiguous().numpy().tobytes())
        digest.update(load_images(dataset, count - 1, count).float().contiguous().numpy().tobytes())
    return ImageTable(ids, identity, gender, height, width, digest.hexdigest())


def task_labels(dataset, task: str, count: int) -> np.ndarray:
    """``dataset.labels(task)``, checked to be one non-negative integer per image."""
    if not callable(getattr(dataset, "labels", None)):
        raise CubeInputError(f"the dataset has no labels(task) method; the zoo's {task!r} models need its labels")
    try:
        labels = np.asarray(dataset.labels(task))
    except ValueError as error:
        raise CubeInputError(f"the dataset has no usable {task!r} labels for the zoo's {task!r} models: {error}") \
            from None
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise CubeInputError(f"dataset.labels({task!r}) must give one integer class per image ({count}), got shape "
                             f"{labels.shape} and dtype {labels.dtype}")
    if (labels < 0).any():
        raise CubeInputError(f"dataset.labels({task!r}) has negative (unknown) labels, e.g. for image "
                             f"{int(np.flatnonzero(labels < 0)[0])}")
    return labels.astype(np.int64)


# ------------------------------------------------------------------------------------------------------- the models
def _declared_classes(zoo, spec: ModelSpec) -> int | None:
    """The number of classes a zoo entry declares, read without loading the weights (None if unknown)."""
    entry = getattr(zoo, "entries", {}).get(spec)
    if entry is None:
        return None
    if getattr(entry, "format", None) == "lrp_faces":
        from ..models import read_checkpoint_info
        try:
            return int(read_checkpoint_info(entry.path)["architecture"]["num_classes"])
        except (ValueError, OSError, KeyError, TypeError):  # loading the model will report what is wrong
            return None
    return getattr(entry, "num_classes", None)


def _check_label_range(spec: ModelSpec, labels: np.ndarray, classes: int | None) -> None:
    if classes is not None and int(labels.max()) >= classes:
        raise CubeInputError(f"model {spec}: the dataset's {spec.task!r} labels go up to {int(labels.max())} but the "
                             f"model has {classes} classes (0 to {classes - 1}); the model and the dataset do not fit")


def _device_dtype(model) -> tuple[torch.device, torch.dtype]:
    reference = next(model.parameters(), None)
    if reference is None:
        return torch.device("cpu"), torch.float32
    return reference.device, reference.dtype


def _dry_run(model, spec: ModelSpec, image: torch.Tensor, labels: np.ndarray, contrastive: bool) -> int:
    """Run the model on one image: check it takes the dataset's images and has enough classes for the labels."""
    device, dtype = _device_dtype(model)
    try:
        with attribution_mode(model), torch.no_grad():
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


def _explain(method: Method, model, images, target, contrastive, first_index) -> Explanation:
    return method.explain(model, images, target, contrastive, first_index)


def _explained_batches(model, method: Method, dataset, labels: np.ndarray, contrastive: bool, batch_size: int,
                       progress: bool, description: str) -> Iterator[tuple[int, Batch]]:
    """Explain the dataset batch by batch, exactly as :func:`lrp_faces.attribute` does with the same batch size."""
    device, dtype = _device_dtype(model)
    count = len(labels)
    with attribution_mode(model):
        for start in tqdm(range(0, count, batch_size), desc=description, unit="batch", disable=not progress,
                          leave=False):
            stop = min(start + batch_size, count)
            images = check_images(load_images(dataset, start, stop), f"images {start} to {stop - 1}")
            target = torch.as_tensor(labels[start:stop], dtype=torch.long)
            explanation = _explain(method, model, images.to(device=device, dtype=dtype), target.to(device),
                                   contrastive, start)
            yield start, Batch(explanation.relevance.detach().float().cpu().numpy(),
                               explanation.output.detach().float().cpu().numpy(),
                               explanation.prediction.cpu().numpy().astype(np.int64), labels[start:stop])


# ------------------------------------------------------------------------------------------ resume and integrity
@contextmanager
def _locked(directory: Path):
    """Hold an exclusive lock on the cube directory (released by the OS if the process is killed)."""
    handle = builtins.open(directory / LOCK_NAME, "a")
    try:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no locking
            fcntl = None
        if fcntl is not None:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise CubeInputError(f"another compute() is writing into {str(directory)!r} (it holds "
                                     f"{LOCK_NAME}); wait for it to finish or use another directory") from None
        yield
    finally:
        handle.close()


def _plan(directory: Path, specs: list[ModelSpec], request: dict, label_digests: dict,
          overwrite: bool) -> list[ModelSpec]:
    """The models to compute; checks every file already in ``directory`` against this call's arguments."""
    wanted = {file_name(spec): spec for spec in specs}
    for path in cube_files(directory):
        spec = wanted.get(path.name)
        try:
            header = read_header(path)
        except CubeFileError:
            if not overwrite:
                raise
            problems = ["damaged"]
        else:
            problems = header.differences(request, SHARED)
            if spec is not None:
                problems += header.differences({"labels_sha256": label_digests[spec.task]}, PER_MODEL)
                if header.spec != spec:
                    problems.append(f"it holds model {header.spec}, not {spec}")
        if not problems or overwrite and spec is not None:
            continue
        if overwrite:
            warnings.warn(f"overwrite=True: deleting {str(path)!r}, a model outside this zoo computed with other "
                          f"arguments ({'; '.join(problems)})", stacklevel=3)
            path.unlink()
            continue
        raise CubeMismatchError(f"{str(path)!r} was computed with other arguments than this call "
                                f"({'; '.join(problems)}); refusing to mix results in one cube. Pass overwrite=True "
                                "to recompute every model of the zoo, or write the cube to another directory")
    return [spec for spec in specs if overwrite or not (directory / file_name(spec)).exists()]
