"""Deterministic fine-tuning, on the CPU or a given device, and accuracy."""
from __future__ import annotations

import contextlib
import copy
import functools
import math
import numbers
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from ..devices import model_device, resolve_device, to_device
from ..faces import DatasetError, DataTypeError, FaceDataView, as_face_data, class_mapping
from ..models import NormalizedVGG, replace_head
from ..module_state import evaluation_mode, model_lock
from .checks import ZooError, ZooTypeError, check_integer

__all__ = ["SCHEDULES", "TRAINABLE", "finetune", "accuracy", "isolated_global_rng"]

SCHEDULES = ("onecycle", "cosine", "constant")
TRAINABLE = ("classifier", "all")

Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]

_GLOBAL_RNG_LOCK = threading.Lock()


@contextlib.contextmanager
def isolated_global_rng() -> Iterator[None]:
    """A block that may draw from torch's global CPU RNG: one thread at a time, and the RNG's state restored after.

    Some torch constructors (``nn.Linear``) draw from the global RNG; trainings that run side by side in threads
    build models inside this block, so that none changes another's random numbers or the caller's.
    """
    with _GLOBAL_RNG_LOCK, torch.random.fork_rng(devices=[]):
        yield


# ------------------------------------------------------------------------------------------------------ data
def _face_data(dataset, name: str = "dataset") -> FaceDataView:
    """``dataset`` as face data (:func:`lrp_faces.faces.as_face_data`); its errors as the zoo's."""
    try:
        return as_face_data(dataset)
    except DataTypeError as error:
        raise ZooTypeError(f"{name}: {error}") from error
    except DatasetError as error:
        raise ZooError(f"{name}: {error}") from error


def _labels(data: FaceDataView, task: str | None, name: str = "dataset") -> torch.Tensor:
    """The data set's labels of ``task`` (every one known) as a long tensor."""
    try:
        return torch.as_tensor(data.labels(task), dtype=torch.long)
    except DatasetError as error:
        raise ZooError(f"{name}: {error}") from error



def _in_memory(data: FaceDataView, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fast path: ``(images, labels)`` tensors of a data set that holds its images (e.g. SyntheticFaces)."""
    return None if data.images is None else (data.images, labels)


def _ordered_batches(data: FaceDataView, labels: torch.Tensor, batch_size: int) -> Batches:
    """All of ``data`` in order, as (images, labels) batches; images held in memory are sliced, others read."""
    for start in range(0, len(labels), batch_size):
        stop = min(start + batch_size, len(labels))
        images = data.images[start:stop] if data.images is not None else data.load(start, stop)
        yield images, labels[start:stop]


def _class_count(data: FaceDataView, task: str | None, labels: torch.Tensor, num_classes: int | None) -> int:
    """``num_classes`` if given, else the number of the data set's class names, else the largest label + 1."""
    if num_classes is not None:
        return check_integer(num_classes, "num_classes", low=1)
    names = data.class_names(task)
    return len(names) if names is not None else 1 + int(labels.max())


@torch.no_grad()
def accuracy(model: nn.Module, dataset, task: str | None = None, batch_size: int = 128) -> float:
    """Share of images of ``dataset`` whose ``task`` label the model predicts.

    ``dataset`` is any face data (see :func:`lrp_faces.faces.as_face_data`). Where the model and the data set both
    record class names, the labels are mapped to the model's classes by name (:func:`lrp_faces.faces.class_mapping`),
    so a held-out set numbered by itself is scored right; a class the model does not know is an error. The model is
    evaluated in evaluation mode, on the device its parameters are on; every module gets its own training flag back
    afterwards.

    Raises
    ------
    ZooError
        An empty data set, labels missing for ``task``, or a class of the data set that the model does not know.
    """
    data = _face_data(dataset)
    task = task or getattr(data, "task", None)
    labels = _labels(data, task)
    try:
        mapping = class_mapping(getattr(model, "class_names", None), data.class_names(task), str(task), "the model",
                                labels=labels.numpy())
    except DatasetError as error:
        raise ZooError(str(error)) from error
    if mapping is not None:
        labels = torch.from_numpy(mapping)[labels]
    device = model_device(model)
    correct = total = 0
    with evaluation_mode(model, frozen=False):
        for images, batch_labels in _ordered_batches(data, labels, batch_size):
            predictions = model(to_device(images, device)).argmax(1)
            correct += int((predictions == to_device(batch_labels, device)).sum())
            total += len(batch_labels)
    if not total:
        raise ZooError("accuracy of an empty dataset")
    return correct / total


# ------------------------------------------------------------------------------------------------------ recipe
@dataclass(frozen=True)
class _Recipe:
    """The settings of one fine-tuning run, checked; the errors name the argument of :func:`finetune`."""

    seed: int
    epochs: int
    lr: float
    trainable: str
    batch_size: int
    weight_decay: float
    schedule: str
    label_smoothing: float
    augment: int

    def __post_init__(self):
        if self.trainable not in TRAINABLE:
            raise ZooError(f"trainable must be one of {TRAINABLE}, got {self.trainable!r}")
        if self.schedule not in SCHEDULES:
            raise ZooError(f"schedule must be one of {SCHEDULES}, got {self.schedule!r}")
        for name, low in (("epochs", 1), ("batch_size", 1), ("seed", 0)):
            object.__setattr__(self, name, check_integer(getattr(self, name), name, low))
        object.__setattr__(self, "augment", check_integer(self.augment, "augment (a shift in pixels)", low=0))
        numbers_given = all(isinstance(value, numbers.Real) and not isinstance(value, bool)
                            for value in (self.lr, self.weight_decay, self.label_smoothing))
        if not (numbers_given and self.lr > 0 and self.weight_decay >= 0 and 0 <= self.label_smoothing < 1):
            raise ZooError(f"need lr > 0, weight_decay >= 0 and 0 <= label_smoothing < 1, got lr={self.lr!r}, "
                           f"weight_decay={self.weight_decay!r}, label_smoothing={self.label_smoothing!r}")

    @property
    def caches_features(self) -> bool:
        """Whether the frozen convolutional features are computed once: only the dense layers train, unshifted."""
        return self.trainable == "classifier" and not self.augment

    def metadata(self, task: str | None, device: torch.device) -> dict[str, Any]:
        return {"task": task, "seed": self.seed, "epochs": self.epochs, "lr": self.lr, "schedule": self.schedule,
                "optimizer": "adamw", "trainable": self.trainable, "batch_size": self.batch_size,
                "weight_decay": self.weight_decay, "label_smoothing": self.label_smoothing, "augment": self.augment,
                "device": str(device)}


# ------------------------------------------------------------------------------------------------------ finetune
def finetune(base_model: NormalizedVGG, dataset, task: str | None = None, seed: int = 0, epochs: int = 5,
             lr: float = 1e-3, trainable: str = "classifier", batch_size: int = 64, weight_decay: float = 0.0,
             validation=None, progress: bool = True, description: str = "finetune", *, schedule: str = "onecycle",
             label_smoothing: float = 0.0, augment: int = 0, num_classes: int | None = None,
             device: str | torch.device = "cpu") -> NormalizedVGG:
    """Train a copy of ``base_model`` on ``dataset``'s ``task`` labels, deterministically under ``seed``.

    The last layer is replaced (seeded) when the number of classes differs. The base model is not modified. On the
    CPU, the same arguments and seed give bit-identical weights (on the same machine and torch thread count). All
    randomness comes from a CPU generator seeded by ``seed``, never from the global RNG, so trainings may run in
    parallel threads, and a GPU run draws the same batch order, dropout and shifts as a CPU run. Training uses the
    channels-last memory layout (faster convolutions); the returned model is contiguous.

    Parameters
    ----------
    base_model : NormalizedVGG
    dataset
        Any face data (see :func:`lrp_faces.faces.as_face_data`). Images held in memory (SyntheticFaces, a pair)
        are sliced (fast path); others are read from their files, batch by batch, every epoch (the same batches and
        weights as held images). Its class names, where it has them, become the model's ``class_names``.
    task : str, optional
        Label to learn (default: the dataset's task).
    seed : int
        Seeds the new head, the batch order, dropout and augmentation.
    epochs, lr, batch_size, weight_decay
        AdamW settings; ``lr`` is the peak learning rate of the schedule.
    trainable : {"classifier", "all"}
        Train only the dense layers (the conv features, BatchNorm statistics included, stay fixed; without
        augmentation their output is computed once), or the whole network.
    validation : optional
        Held-out face data; its accuracy (:func:`accuracy`, labels mapped to the model's classes by name) is recorded
        in ``model.metadata``.
    progress : bool
        Show a progress bar.
    schedule : {"onecycle", "cosine", "constant"}
        Learning-rate schedule over all steps: one-cycle (linear warm-up from ``lr / 25`` over the first quarter,
        then cosine annealing to 0), cosine annealing from ``lr`` to 0, or constant.
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1).
    augment : int
        Shift each training image by up to this many pixels (0: no augmentation).
    num_classes : int, optional
        Outputs of the trained model; default ``dataset.num_classes(task)``, else the largest label + 1.
    device : str or torch.device
        Where to train (``"cpu"``, ``"cuda"``, ``"cuda:N"``): the model moves there once, each batch as it is used.

    Returns
    -------
    NormalizedVGG
        The trained model on ``device``, in evaluation mode, with ``class_names`` and ``metadata`` (settings,
        accuracies, time).
    """
    if not isinstance(base_model, NormalizedVGG):
        raise ZooTypeError(f"base_model must be a NormalizedVGG (lrp_faces.vgg16 or a loader), got {type(base_model)}")
    recipe = _Recipe(seed, epochs, lr, trainable, batch_size, weight_decay, schedule, label_smoothing, augment)
    device = resolve_device(device)
    data = _face_data(dataset)
    if validation is not None:
        validation = _face_data(validation, "validation")
    task = task or getattr(data, "task", None)
    count = len(data)
    if not count:
        raise ZooError("cannot fine-tune on an empty dataset")
    labels = _labels(data, task)
    num_classes = _class_count(data, task, labels, num_classes)
    held = _in_memory(data, labels)
    started = time.perf_counter()
    model, parameters = _trainable_copy(base_model, num_classes, recipe, device)
    if recipe.caches_features:  # the frozen features once, then only the dense layers train
        held, forward = _frozen_features(model, data, labels, device), model.classifier
    else:
        model = forward = model.to(memory_format=torch.channels_last)  # faster convolutions
    # one seeded generator for the batch order, dropout and augmentation: the global RNG is never used, so
    # trainings may run side by side in threads (as the demo zoo does) and stay deterministic
    order = torch.Generator().manual_seed(recipe.seed)
    train_accuracy = _train(model, forward, parameters, _epoch_batches(held, data, labels, recipe, order), count,
                            recipe, order, device, progress, description)
    model = _finished(model)
    names = data.class_names(task)
    model.card = model.card.replace(class_names=tuple(names) if names is not None and len(names) == num_classes
                                    else None)
    metadata = {**recipe.metadata(task, device), "train_images": count,
                "train_accuracy_last_epoch": train_accuracy, "seconds": round(time.perf_counter() - started, 3)}
    if validation is not None:  # scored by class name where the model has names (a held-out set may lack some)
        metadata["validation_accuracy"] = accuracy(model, validation, task)
        metadata["validation_images"] = len(validation)
    model.card = model.card.replace(metadata=metadata)
    return model


def _trainable_copy(base_model: NormalizedVGG, num_classes: int, recipe: _Recipe,
                    device: torch.device) -> tuple[NormalizedVGG, list[nn.Parameter]]:
    """A float32 copy of the base on ``device`` with a ``num_classes`` head, and the parameters that will train."""
    with model_lock(base_model):  # a consistent copy, even while another thread explains the base model
        model = copy.deepcopy(base_model)
    model = model.float()
    if model.num_classes != num_classes:
        with isolated_global_rng():  # nn.Linear() draws (discarded) global random numbers
            model = replace_head(model, num_classes, seed=recipe.seed)
    model = model.to(device)
    parameters = list(model.parameters()) if recipe.trainable == "all" else list(model.classifier.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    return model, parameters


def _frozen_features(model: NormalizedVGG, data: FaceDataView, labels: torch.Tensor,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The flattened output of the frozen layers for every image, in evaluation mode, and the labels (on the CPU)."""
    model.eval()
    with torch.no_grad():
        inputs = [torch.flatten(model.avgpool(model.features(model.pixel_norm(to_device(images, device)))), 1).cpu()
                  for images, _ in _ordered_batches(data, labels, 256)]
    return torch.cat(inputs), labels


def _epoch_batches(held: tuple[torch.Tensor, torch.Tensor] | None, data: FaceDataView, labels: torch.Tensor,
                   recipe: _Recipe, order: torch.Generator) -> Callable[[], Batches]:
    """A function that gives one epoch's (inputs, labels) batches, in an order drawn from ``order``: the same draws
    whether the images are held in memory or read from their files, so both give the same weights."""
    def epoch() -> Batches:
        permutation = torch.randperm(len(labels), generator=order)
        for index in permutation.split(recipe.batch_size):
            if held is not None:
                yield held[0][index], held[1][index]
            else:
                yield data.take(index.numpy()), labels[index]
    return epoch


def _train(model: NormalizedVGG, forward: nn.Module, parameters: list[nn.Parameter], epoch_batches, count: int,
           recipe: _Recipe, order: torch.Generator, device: torch.device, progress: bool, description: str) -> float:
    """Train ``parameters`` for ``recipe.epochs`` epochs; the training accuracy of the last epoch."""
    steps_per_epoch = math.ceil(count / recipe.batch_size)
    optimizer = torch.optim.AdamW(parameters, lr=recipe.lr, weight_decay=recipe.weight_decay)
    scheduler = _scheduler(optimizer, recipe.schedule, recipe.lr, recipe.epochs * steps_per_epoch)
    model.train()
    if recipe.trainable == "classifier":
        model.features.eval()
    correct = 0
    with _seeded_dropouts(model, order), tqdm(total=recipe.epochs * steps_per_epoch, desc=description, unit="batch",
                                              disable=not progress, leave=False) as bar:
        for epoch in range(recipe.epochs):
            correct, loss_sum = 0, 0.0
            for inputs, labels in epoch_batches():
                inputs, labels = _batch_on_device(inputs, labels, recipe, order, device)
                logits = forward(inputs)
                loss = nn.functional.cross_entropy(logits, labels, label_smoothing=recipe.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                correct += int((logits.argmax(1) == labels).sum())
                loss_sum += loss.item() * len(labels)
                bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
    return correct / count


def _batch_on_device(inputs: torch.Tensor, labels: torch.Tensor, recipe: _Recipe, order: torch.Generator,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch on ``device``: shifted if the recipe augments, channels-last if it goes through the convs."""
    inputs, labels = to_device(inputs, device), to_device(labels, device)
    if recipe.augment:
        inputs = _shift(inputs, recipe.augment, order)
    if not recipe.caches_features:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    return inputs, labels


def _finished(model: NormalizedVGG) -> NormalizedVGG:
    """The trained model as a user gets it: contiguous, every parameter with gradients, in evaluation mode."""
    model = model.to(memory_format=torch.contiguous_format)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    return model.eval()


def _shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in x and y, repeating the edge."""
    padded = nn.functional.pad(images, (pixels,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (len(images), 2), generator=generator).tolist()
    height, width = images.shape[-2:]
    return torch.stack([padded[k, :, dy:dy + height, dx:dx + width] for k, (dy, dx) in enumerate(offsets)])


@contextlib.contextmanager
def _seeded_dropouts(model: nn.Module, generator: torch.Generator) -> Iterator[None]:
    """Every dropout layer of ``model`` draws from ``generator`` inside the block."""
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    for module in dropouts:
        module.forward = functools.partial(_seeded_dropout, module, generator)
    try:
        yield
    finally:
        for module in dropouts:
            del module.forward


def _seeded_dropout(module: nn.Dropout, generator: torch.Generator, inputs: torch.Tensor) -> torch.Tensor:
    """``module``'s dropout, drawn from the CPU ``generator`` instead of the global RNG (on any device)."""
    if not module.training or module.p == 0:
        return inputs
    if module.p == 1:
        return torch.zeros_like(inputs)
    keep = torch.empty_like(inputs, device="cpu").bernoulli_(1 - module.p, generator=generator)
    return inputs * to_device(keep, inputs.device) / (1 - module.p)


def _scheduler(optimizer, schedule: str, lr: float, steps: int):
    """A LambdaLR of ``schedule`` over ``steps`` optimiser steps (any number, even 1)."""
    warm_up = max(1, round(0.25 * steps)) if schedule == "onecycle" else 0

    def factor(step: int) -> float:
        if step < warm_up:  # linear from lr / 25, as OneCycleLR
            return 0.04 + 0.96 * step / warm_up
        if schedule == "constant":
            return 1.0
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warm_up) / max(1, steps - warm_up))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
