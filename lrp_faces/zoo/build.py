"""Building a zoo: every model of a :class:`~lrp_faces.zoo.ZooRecipe` fine-tuned from its base weights on faces.

:func:`build_zoo` splits the faces (every identity in both parts), trains each model on the train part, scores it
on the test part, and writes one checkpoint per model with its training record and a ``zoo.toml`` whose ``[zoo]``
table a study file uses. Each model is one unit of :mod:`lrp_faces.compute`, so the models train in this process or
on a dask cluster; a rerun retrains only the models whose recipe changed or whose checkpoint is missing or damaged.
The how-to "Build a zoo from base weights" in the documentation walks through a real build.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import xarray as xr

from ..compute import Unit, UnitStore, run_units
from ..errors import LRPFacesWarning
from ..faces import DatasetError, FaceDataView, as_face_data, describe_images
from ..files import canonical_json, sha256_of_chunks, sha256_of_file, write_text_atomic
from ..models import WeightsError, load_model, read_checkpoint_info, save_model, weights_digest
from .checks import ZooError, ZooTypeError
from .recipe import BaseWeights, HeldOutSplit, TrainingSettings, ZooRecipe
from .specs import ModelSpec, Zoo
from .training import accuracy, finetune

__all__ = ["build_zoo", "ModelJob", "train_model", "ZOO_FILE", "MODELS_DIR", "BUILD_FORMAT", "IN_MEMORY_LIMIT"]

ZOO_FILE = "zoo.toml"
"""The file :func:`build_zoo` writes in its output folder: the ``[zoo]`` table of the built models."""
MODELS_DIR = "models"
"""The folder of the output folder that holds the checkpoints, one ``<pretraining>-<task>-seed<N>.pt`` per model."""
BUILD_FORMAT = 1
"""Version of the build recipe recorded in every checkpoint; a new version retrains every model."""
IN_MEMORY_LIMIT = 4 * 2 ** 30
"""Bytes of training images (float32) up to which a model's images are read once and held in memory; larger parts
are read from their files in every epoch."""
STEP = "zoo_build"

logger = logging.getLogger("lrp_faces.zoo")


@dataclass(frozen=True)
class ModelJob:
    """Everything one model's training unit needs: real faces travel as their file list, read by the unit."""

    spec: ModelSpec
    base: BaseWeights
    settings: TrainingSettings
    num_classes: int
    class_names: tuple[str, ...] | None
    train: FaceDataView
    test: FaceDataView
    in_memory: bool
    checkpoint: Path
    recipe: Mapping[str, Any]
    recipe_sha256: str
    device: str
    progress: bool


def train_model(job: ModelJob) -> xr.Dataset:
    """The unit of one model: fine-tune it, score it, write its checkpoint atomically, and return its record.

    Returns
    -------
    xarray.Dataset
        Dim ``model`` (the spec's name), variables ``train_accuracy``, ``validation_accuracy`` and ``seconds``;
        attributes ``checkpoint``, ``recipe_sha256`` and ``weights_sha256``.
    """
    started = time.perf_counter()
    spec, settings = job.spec, job.settings
    train, test = (_training_images(part, spec.task, job.in_memory) for part in (job.train, job.test))
    base = job.base.load(job.num_classes, spec.seed)
    model = finetune(base, train, task=spec.task, seed=spec.seed, epochs=settings.epochs, lr=settings.lr,
                     trainable=settings.trainable, batch_size=settings.batch_size,
                     weight_decay=settings.weight_decay, schedule=settings.schedule,
                     label_smoothing=settings.label_smoothing, augment=settings.augment,
                     num_classes=job.num_classes, device=job.device, progress=job.progress,
                     description=f"train {spec.name}")
    train_accuracy = accuracy(model, train, spec.task)
    validation_accuracy = accuracy(model, test, spec.task)
    metadata = {**model.metadata, "task": spec.task, "label": job.recipe["data"]["label"],
                "train_accuracy": train_accuracy, "train_images": len(job.train),
                "validation_accuracy": validation_accuracy, "validation_images": len(job.test),
                "data_sha256": job.recipe["data"]["train_sha256"],
                "validation_data_sha256": job.recipe["data"]["validation_sha256"],
                "base_weights": {"pretraining": job.base.pretraining, "path": str(job.base.path.resolve()),
                                 "format": job.base.format, "sha256": job.recipe["base"]["sha256"]},
                "recipe": dict(job.recipe), "recipe_sha256": job.recipe_sha256, "weights_sha256": weights_digest(model),
                "built_by": "lrp_faces.zoo.build_zoo", "seconds": round(time.perf_counter() - started, 3)}
    model.card = model.card.replace(spec=spec.to_dict(), class_names=job.class_names, metadata=metadata)
    save_model(model, job.checkpoint)
    return xr.Dataset({"train_accuracy": ("model", [train_accuracy]),
                       "validation_accuracy": ("model", [validation_accuracy]),
                       "seconds": ("model", [metadata["seconds"]])},
                      coords={"model": [spec.name]},
                      attrs={"checkpoint": str(job.checkpoint), "recipe_sha256": job.recipe_sha256,
                             "weights_sha256": metadata["weights_sha256"]})


class _StreamedFaces(torch.utils.data.Dataset):
    """``(image, label)`` of a task, each image read from its file when it is used."""

    def __init__(self, data: FaceDataView, task: str):
        self.data, self.targets = data, data.labels(task)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.data.load(index, index + 1)[0], int(self.targets[index])


def _training_images(data: FaceDataView, task: str, in_memory: bool):
    """``data`` as :func:`finetune` and :func:`accuracy` read it: held in memory, or read image by image."""
    return data.in_memory() if in_memory else _StreamedFaces(data, task)


def build_zoo(recipe: ZooRecipe, dataset, out: str | os.PathLike, progress: bool = True,
              device: str | torch.device | None = None, client: Any = None, threads: int | None = None,
              log: Callable[[str], None] | None = None) -> Zoo:
    """Fine-tune every model of ``recipe`` on ``dataset`` into ``out``, and write ``out/zoo.toml``.

    The data set is split by ``recipe.split`` (every identity in both parts); each model trains on the train part
    and is scored on the test part. Each model is written to ``out/models/<pretraining>-<task>-seed<N>.pt``
    (:func:`~lrp_faces.models.save_model`, atomically) with its class names (the data set's, for its task) and its
    training record in ``model.metadata``: ``train_accuracy`` and ``validation_accuracy`` (evaluation mode, on the
    train and test parts), the image counts, ``data_sha256`` (the training images' ids, labels and pixels),
    ``base_weights`` (file, format and SHA-256), ``recipe`` and ``recipe_sha256`` (the SHA-256 of the recipe as
    canonical JSON) and ``weights_sha256``.

    A rerun skips every model whose checkpoint exists, is intact (its weights match their recorded digest) and
    records the same recipe digest; it retrains the others and says why (no checkpoint yet, a damaged one, or which
    setting or input changed). Trained on the CPU with the same torch thread count, the same recipe and seed give
    bit-identical weights in this process and on a cluster.

    Parameters
    ----------
    recipe : ZooRecipe
    dataset : FaceDataset, SyntheticFaces, (images, labels) or FaceDataView
        Any data set :func:`~lrp_faces.faces.as_face_data` accepts, with the identity of every image (for the
        split) and the labels of every task (a view's ``label_names`` maps a task to the label it is scored on).
    out : str or PathLike
        The output folder; created if needed.
    progress : bool
        Show progress bars (over the models, and over each model's batches when it trains in this process).
    device : str or torch.device, optional
        Where the models train (default ``"cpu"``); a CUDA device makes every model a GPU unit.
    client : dask.distributed.Client, optional
        Train the models on this cluster (e.g. from ``lrp_faces.compute.cluster_client``); None trains them here.
    threads : int, optional
        Torch threads per model (None: this process's setting in-process, each worker's own on a cluster).
    log : callable, optional
        Receives one line per event (what is trained and why, the summary); default: the logger
        ``lrp_faces.zoo``.

    Returns
    -------
    Zoo
        The built models, read from ``out/zoo.toml`` (:meth:`Zoo.from_toml`).

    Raises
    ------
    ZooError
        A task the data set has no labels for, base weights that cannot be read in their format, a device that this
        machine does not have, or an output folder that is a file.
    DatasetError
        A data set that cannot be split (an identity with fewer than 2 images, unknown identities).
    """
    if not isinstance(recipe, ZooRecipe):
        raise ZooTypeError(f"recipe must be a ZooRecipe (e.g. ZooRecipe.from_toml), got {type(recipe).__name__}")
    say = log if log is not None else _log_line
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ZooError(f"the output folder {str(out)!r} is a file; give a folder (it is created if needed)")
    device = _checked_device(device)
    started = time.perf_counter()
    data = as_face_data(dataset)
    table = describe_images(data)
    classes = {task: _task_classes(data, task) for task in recipe.tasks}
    train, test = recipe.split.apply(data)
    image_size = table.height if table.height == table.width else None
    in_memory = len(train) * 3 * table.height * table.width * 4 <= IN_MEMORY_LIMIT
    data_record = {task: _data_record(data, train, test, task, classes[task], table, recipe.split)
                   for task in recipe.tasks}
    base_sha256 = {base.pretraining: sha256_of_file(base.path) for base in recipe.bases}
    say(f"zoo build: {_count(len(recipe.specs()), 'model')} ({_count(len(recipe.bases), 'pretraining')} x "
        f"{_count(len(recipe.tasks), 'task')} x {_count(len(recipe.seeds), 'seed')}) into {out}; {len(train)} "
        f"training and {len(test)} held-out images")
    jobs, reused = [], 0
    for spec in recipe.specs():
        base = recipe.base(spec.pretraining)
        settings = recipe.settings(spec.pretraining, spec.task)
        model_recipe = {"format": BUILD_FORMAT, "spec": spec.to_dict(),
                        "base": {"format": base.format, "sha256": base_sha256[spec.pretraining]},
                        "training": settings.to_dict(), "data": data_record[spec.task]}
        digest = _digest(model_recipe)
        checkpoint = out / MODELS_DIR / f"{spec.name}.pt"
        reason = _reason_to_train(checkpoint, spec, model_recipe, digest)
        if reason is None:
            reused += 1
            continue
        say(f"{spec.name}: {reason}")
        jobs.append(ModelJob(spec, base, settings, classes[spec.task][0], classes[spec.task][1], train, test,
                             in_memory, checkpoint, model_recipe, digest, str(device),
                             progress and client is None))
    if jobs:
        for pretraining in dict.fromkeys(job.spec.pretraining for job in jobs):
            recipe.base(pretraining).check()
        _train(jobs, out, device, client, threads, progress, say)
    zoo_file = _write_zoo_file(out, recipe, image_size)
    say(f"zoo build: {len(jobs)} trained, {reused} up to date ({time.perf_counter() - started:.1f} s); "
        f"zoo: {zoo_file}")
    return Zoo.from_toml(zoo_file)


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'s' * (number != 1)}"


def _log_line(line: str) -> None:
    """The default ``log`` of :func:`build_zoo`: the logger ``lrp_faces.zoo`` at level INFO."""
    logger.info(line)


def _checked_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a torch.device this machine has (default CPU); :class:`ZooError` naming it otherwise."""
    if device is None:
        return torch.device("cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise ZooError(f"device must be 'cpu', 'cuda', 'cuda:N' or a torch.device, got {device!r}") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ZooError(f"device {str(resolved)!r} was asked for, but CUDA is not available here; use device='cpu'")
    if resolved.type == "cuda" and resolved.index is not None and resolved.index >= torch.cuda.device_count():
        raise ZooError(f"device {str(resolved)!r} does not exist; this machine has {torch.cuda.device_count()} CUDA "
                       "device(s)")
    return resolved


def _task_classes(data: FaceDataView, task: str) -> tuple[int, tuple[str, ...] | None]:
    """The number of classes of ``task`` and their names (None where the data set has none)."""
    try:
        labels = data.labels(task)
    except (DatasetError, ValueError) as error:
        raise ZooError(f"cannot build the models of task {task!r}: the data set has no labels for it ("
                       f"{' '.join(str(error).split())})") from None
    names = data.class_names(task)
    return (len(names) if names is not None else int(labels.max()) + 1), names


def _data_sha256(part: FaceDataView, task: str) -> str:
    """SHA-256 of a part's images (:func:`describe_images`) and of its labels for ``task``."""
    return sha256_of_chunks([describe_images(part).digest.encode(), part.labels(task).astype("<i8").tobytes()])


def _data_record(data: FaceDataView, train: FaceDataView, test: FaceDataView, task: str,
                 classes: tuple[int, tuple[str, ...] | None], table, split: HeldOutSplit) -> dict[str, Any]:
    return {"label": data.label_name(task), "num_classes": classes[0],
            "classes": None if classes[1] is None else list(classes[1]), "image_size": [table.height, table.width],
            "split": split.to_dict(), "train_images": len(train), "validation_images": len(test),
            "train_sha256": _data_sha256(train, task), "validation_sha256": _data_sha256(test, task)}


def _digest(recipe: Mapping[str, Any]) -> str:
    return sha256_of_chunks([canonical_json(recipe).encode("utf-8")])


def _reason_to_train(checkpoint: Path, spec: ModelSpec, recipe: Mapping[str, Any], digest: str) -> str | None:
    """Why the model must be trained (None: its checkpoint is intact and records this recipe)."""
    if not checkpoint.exists():
        return "training (no checkpoint yet)"
    try:
        info = read_checkpoint_info(checkpoint)
    except WeightsError as error:
        return _damaged(checkpoint, str(error))
    metadata = info["metadata"]
    if info.get("spec") != spec.to_dict():
        return f"retraining: its checkpoint holds model {info.get('spec')}"
    if "recipe_sha256" not in metadata:
        return "retraining: its checkpoint records no recipe (it was not written by a zoo build)"
    if metadata["recipe_sha256"] != digest:
        return f"retraining: the recipe changed ({_recipe_changes(metadata.get('recipe'), recipe)})"
    try:
        intact = weights_digest(load_model(checkpoint)) == metadata.get("weights_sha256")
    except WeightsError as error:
        return _damaged(checkpoint, str(error))
    return None if intact else _damaged(checkpoint, "its weights do not match their recorded digest")


def _damaged(checkpoint: Path, problem: str) -> str:
    problem = " ".join(problem.split())
    warnings.warn(f"checkpoint {str(checkpoint)!r} is damaged ({problem}); retraining it", LRPFacesWarning,
                  stacklevel=4)
    return f"retraining: its checkpoint is damaged ({problem})"


_INPUTS = {"base.sha256": "the base weights file changed", "data.train_sha256": "the training images changed",
           "data.validation_sha256": "the held-out images changed", "format": "a new version of the zoo build"}


def _recipe_changes(recorded: Any, wanted: Mapping[str, Any], limit: int = 4) -> str:
    """``key: old -> new`` for each setting of a model's recipe that changed, or which input changed; one line."""
    old, new = _flat(recorded if isinstance(recorded, Mapping) else {}), _flat(wanted)
    keys = sorted(key for key in set(old) | set(new) if old.get(key, "-") != new.get(key, "-"))
    changes = list(dict.fromkeys(_INPUTS.get(key, f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}")
                                 for key in keys))
    if "the training images changed" in changes:  # implied by a new split or other labels: say only those
        changes = [change for change in changes if not change.startswith("data.train_images")]
    return "; ".join(changes[:limit]) + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat = {}
        for key, item in value.items():
            flat.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def _train(jobs: list[ModelJob], out: Path, device: torch.device, client: Any, threads: int | None, progress: bool,
           say: Callable[[str], None]) -> None:
    """Run one unit per job; check that each wrote the checkpoint of its recipe."""
    units = [Unit(job.spec.name, train_model, (job,), gpu=device.type == "cuda") for job in jobs]
    store = UnitStore(out / ".units", STEP, {"format": BUILD_FORMAT,
                                            "models": {job.spec.name: job.recipe_sha256 for job in jobs}})
    for key in store.finished([unit.key for unit in units]):  # a result without its checkpoint is not finished
        store.path(key).unlink(missing_ok=True)
    run_units(units, store, client=client, threads=threads, progress=progress)
    for job in jobs:
        try:
            metadata = read_checkpoint_info(job.checkpoint)["metadata"]
        except WeightsError:
            metadata = {}
        if metadata.get("recipe_sha256") != job.recipe_sha256:
            store.clear()
            raise ZooError(f"{job.spec.name}: its unit finished, but {str(job.checkpoint)!r} does not hold the model "
                           "it trained (was the file changed meanwhile?); run the build again")
        say(_record_line(job.spec, metadata))
    store.clear()
    with contextlib.suppress(OSError):  # the folder of all steps' units, if no other step left units there
        store.directory.parent.rmdir()


def _record_line(spec: ModelSpec, metadata: Mapping[str, Any]) -> str:
    return (f"{spec.name}: train accuracy {metadata.get('train_accuracy', float('nan')):.3f}, validation accuracy "
            f"{metadata.get('validation_accuracy', float('nan')):.3f} ({metadata.get('seconds', 0):.1f} s)")


def _write_zoo_file(out: Path, recipe: ZooRecipe, image_size: int | None) -> Path:
    """``out/zoo.toml``: the ``[zoo]`` table of the recipe's models, paths relative to it (unchanged: not rewritten)."""
    split = recipe.split
    lines = ["# The [zoo] table of the models built by `lrp-faces zoo build` (lrp_faces.zoo.build_zoo). Paths are",
             "# relative to this file. The models were trained on the train part of the split",
             f"#   [dataset] split = {{by = \"{split.by}\", test_fraction = {split.test_fraction!r}, "
             f"seed = {split.seed}}}",
             "# and scored on its test part: give a study the same [dataset] and split, so that it explains held-out",
             "# images.", "", "[zoo]"]
    if image_size is not None:
        lines.append(f"image_size = {image_size}")
    for spec in recipe.specs():
        path = Path(MODELS_DIR) / f"{spec.name}.pt"
        metadata = read_checkpoint_info(out / path)["metadata"]
        lines += ["", "[[zoo.models]]", f"pretraining = {json.dumps(spec.pretraining)}",
                  f"task = {json.dumps(spec.task)}", f"seed = {spec.seed}", f"path = {json.dumps(path.as_posix())}",
                  f"# train accuracy {metadata['train_accuracy']:.4f}, validation accuracy "
                  f"{metadata['validation_accuracy']:.4f} on {metadata['validation_images']} held-out images"]
    text = "\n".join(lines) + "\n"
    path = out / ZOO_FILE
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        write_text_atomic(path, text)
    return path
