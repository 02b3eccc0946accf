"""Deterministic fine-tuning on the CPU, and accuracy."""
from __future__ import annotations

import copy
import functools
import math
import time
import threading
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..models import NormalizedVGG, replace_head

from .specs import ZooError, _is_int

SCHEDULES = ("onecycle", "cosine", "constant")


def _in_memory(dataset, task: str | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The fast path: ``(images, labels)`` tensors of a dataset that holds them (e.g. SyntheticFaces), else None."""
    images, labels = getattr(dataset, "images", None), getattr(dataset, "labels", None)
    if not isinstance(images, torch.Tensor) or not callable(labels):
        return None
    return images, torch.as_tensor(np.asarray(labels(task)), dtype=torch.long)


def _for_task(dataset, task: str | None):
    return dataset.with_task(task) if task is not None and hasattr(dataset, "with_task") else dataset


def _ordered_batches(dataset, task: str | None, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """All of ``dataset`` in order, as (images, labels) batches."""
    held = _in_memory(dataset, task)
    if held is not None:
        for start in range(0, len(held[1]), batch_size):
            yield held[0][start:start + batch_size], held[1][start:start + batch_size]
        return
    loader = torch.utils.data.DataLoader(_for_task(dataset, task), batch_size=batch_size, shuffle=False)
    for images, labels in loader:
        yield images, torch.as_tensor(labels, dtype=torch.long)


@torch.no_grad()
def accuracy(model: nn.Module, dataset, task: str | None = None, batch_size: int = 128) -> float:
    """Share of images of ``dataset`` whose ``task`` label the model predicts (model evaluated in eval mode)."""
    training = model.training
    model.eval()
    correct = total = 0
    try:
        for images, labels in _ordered_batches(dataset, task, batch_size):
            correct += int((model(images).argmax(1) == labels).sum())
            total += len(labels)
    finally:
        model.train(training)
    if not total:
        raise ZooError("accuracy of an empty dataset")
    return correct / total


def _shift(images: torch.Tensor, pixels: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``pixels`` in x and y, repeating the edge."""
    padded = nn.functional.pad(images, (pixels,) * 4, mode="replicate")
    offsets = torch.randint(0, 2 * pixels + 1, (len(images), 2), generator=generator).tolist()
    height, width = images.shape[-2:]
    return torch.stack([padded[k, :, dy:dy + height, dx:dx + width] for k, (dy, dx) in enumerate(offsets)])


def finetune(base_model: NormalizedVGG, dataset, task: str | None = None, seed: int = 0, epochs: int = 5,
             lr: float = 1e-3, trainable: str = "classifier", batch_size: int = 64, weight_decay: float = 0.0,
             validation=None, progress: bool = True, description: str = "finetune", *, schedule: str = "onecycle",
             label_smoothing: float = 0.0, augment: int = 0, num_classes: int | None = None) -> NormalizedVGG:
    """Train a copy of ``base_model`` on ``dataset``'s ``task`` labels, deterministically under ``seed`` on the CPU.

    The last layer is replaced (seeded) when the number of classes differs. The base model is not modified. The
    same arguments and seed give bit-identical weights (on the same machine and torch thread count). All randomness
    comes from generators seeded by ``seed``, never from the global RNG, so trainings may run in parallel threads.
    Training uses the channels-last memory layout (faster CPU convolutions); the returned model is contiguous.

    Parameters
    ----------
    base_model : NormalizedVGG
    dataset : SyntheticFaces, FaceDataset or any dataset yielding (image, label)
        Datasets that hold an ``images`` tensor and a ``labels(task)`` method are sliced in memory (fast path);
        others are read through a ``DataLoader`` every epoch.
    task : str, optional
        Label to learn (default: the dataset's task).
    seed : int
        Seeds the new head, the batch order, dropout and augmentation.
    epochs, lr, batch_size, weight_decay
        AdamW settings; ``lr`` is the peak learning rate of the schedule.
    trainable : {"classifier", "all"}
        Train only the dense layers (the conv features, BatchNorm statistics included, stay fixed; without
        augmentation their output is computed once), or the whole network.
    validation : dataset, optional
        Held-out images; their accuracy is recorded in ``model.metadata``.
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

    Returns
    -------
    NormalizedVGG
        The trained model, in evaluation mode, with ``class_names`` and ``metadata`` (settings, accuracies, time).
    """
    if not isinstance(base_model, NormalizedVGG):
        raise TypeError(f"base_model must be a NormalizedVGG (lrp_faces.vgg16 or a loader), got {type(base_model)}")
    if trainable not in ("classifier", "all"):
        raise ZooError(f"trainable must be 'classifier' or 'all', got {trainable!r}")
    if schedule not in SCHEDULES:
        raise ZooError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size), ("seed", seed)):
        if not _is_int(value) or value < (0 if name == "seed" else 1):
            raise ZooError(f"{name} must be an integer >= {0 if name == 'seed' else 1}, got {value!r}")
    if not _is_int(augment) or augment < 0:
        raise ZooError(f"augment must be an integer number of pixels >= 0, got {augment!r}")
    if not lr > 0 or not weight_decay >= 0 or not 0 <= label_smoothing < 1:
        raise ZooError(f"need lr > 0, weight_decay >= 0 and 0 <= label_smoothing < 1, got lr={lr!r}, "
                       f"weight_decay={weight_decay!r}, label_smoothing={label_smoothing!r}")
    task = task or getattr(dataset, "task", None)
    held = _in_memory(dataset, task)
    if num_classes is None and callable(getattr(dataset, "num_classes", None)):
        num_classes = int(dataset.num_classes(task))
    if num_classes is None:
        num_classes = 1 + max(int(labels.max()) for _, labels in _ordered_batches(dataset, task, 256))
    count = len(held[1]) if held is not None else len(dataset)
    if not count:
        raise ZooError("cannot fine-tune on an empty dataset")
    started = time.perf_counter()
    model = copy.deepcopy(base_model).float()
    if model.num_classes != num_classes:
        with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # nn.Linear() draws (discarded) global random numbers
            model = replace_head(model, num_classes, seed=seed)
    parameters = list(model.parameters()) if trainable == "all" else list(model.classifier.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    cached = trainable == "classifier" and not augment
    if cached:  # the frozen features once, then only the dense layers train
        model.eval()
        with torch.no_grad():
            inputs, labels = zip(*((torch.flatten(model.avgpool(model.features(model.pixel_norm(images))), 1), labels)
                                   for images, labels in _ordered_batches(dataset, task, 256)))
        held = torch.cat(inputs), torch.cat(labels)
        forward = model.classifier
    else:
        model = model.to(memory_format=torch.channels_last)  # faster convolutions on CPUs
        forward = model
    steps_per_epoch = math.ceil(count / batch_size)
    # one seeded generator for the batch order, dropout and augmentation: the global RNG is never used, so
    # trainings may run side by side in threads (as the demo zoo does) and stay deterministic
    order = torch.Generator().manual_seed(seed)
    dropouts = [module for module in model.modules() if isinstance(module, nn.Dropout)]
    for module in dropouts:
        module.forward = functools.partial(_seeded_dropout, module, order)
    optimizer = torch.optim.AdamW(parameters, lr=lr, weight_decay=weight_decay)
    scheduler = _scheduler(optimizer, schedule, lr, epochs * steps_per_epoch)
    model.train()
    if trainable == "classifier":
        model.features.eval()
    bar = tqdm(total=epochs * steps_per_epoch, desc=description, unit="batch", disable=not progress, leave=False)
    loader = None if held is not None else torch.utils.data.DataLoader(
        _for_task(dataset, task), batch_size=batch_size, shuffle=True, generator=order)
    correct = 0
    try:
        for epoch in range(epochs):
            correct, loss_sum = 0, 0.0
            if held is not None:
                permutation = torch.randperm(count, generator=order)
                batches = ((held[0][index], held[1][index]) for index in permutation.split(batch_size))
            else:
                batches = ((images, torch.as_tensor(labels, dtype=torch.long)) for images, labels in loader)
            for inputs, labels in batches:
                if augment:
                    inputs = _shift(inputs, augment, order)
                if not cached:
                    inputs = inputs.contiguous(memory_format=torch.channels_last)
                logits = forward(inputs)
                loss = nn.functional.cross_entropy(logits, labels, label_smoothing=label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                correct += int((logits.argmax(1) == labels).sum())
                loss_sum += loss.item() * len(labels)
                bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss_sum / count:.3f}", acc=f"{correct / count:.3f}")
    finally:
        bar.close()
        for module in dropouts:
            del module.forward
    model = model.to(memory_format=torch.contiguous_format)
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
    metadata = {"task": task, "seed": seed, "epochs": epochs, "lr": lr, "schedule": schedule, "optimizer": "adamw",
                "trainable": trainable, "batch_size": batch_size, "weight_decay": weight_decay,
                "label_smoothing": label_smoothing, "augment": augment, "train_images": count,
                "train_accuracy_last_epoch": correct / count, "seconds": round(time.perf_counter() - started, 3)}
    if validation is not None:
        metadata["validation_accuracy"] = accuracy(model, validation, task)
        metadata["validation_images"] = len(validation)
    names = dataset.class_names(task) if callable(getattr(dataset, "class_names", None)) else None
    model.card = model.card.replace(class_names=tuple(names) if names is not None and len(names) == num_classes
                                    else None, metadata=metadata)
    return model


_GLOBAL_RNG = threading.Lock()


def _seeded_dropout(module: nn.Dropout, generator: torch.Generator, inputs: torch.Tensor) -> torch.Tensor:
    """``module``'s dropout, drawn from ``generator`` instead of the global RNG."""
    if not module.training or module.p == 0:
        return inputs
    if module.p == 1:
        return torch.zeros_like(inputs)
    keep = torch.empty_like(inputs).bernoulli_(1 - module.p, generator=generator)
    return inputs * keep / (1 - module.p)


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
