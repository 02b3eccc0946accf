"""Model specs, zoos of models (from a study TOML or the offline demo), and fine-tuning."""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import time
import threading
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .faces import synthetic_faces, synthetic_objects
from .models import (NormalizedVGG, WeightsError, load_model, load_torchvision_vgg16, load_vgg_face, replace_head,
                     save_model, vgg16)
from .nn import IMAGENET

__all__ = ["ModelSpec", "ZooEntry", "Zoo", "ZooError", "finetune", "accuracy", "DemoSettings", "demo_study_data",
           "default_cache_dir", "default_workers", "FORMATS", "SCHEDULES"]

FORMATS = ("lrp_faces", "torchvision", "vgg_face")
SCHEDULES = ("onecycle", "cosine", "constant")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SPEC_NAME = re.compile(r"^([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)-seed([0-9]+)$")


class ZooError(ValueError):
    """An invalid model spec, zoo declaration or training request."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, order=True)
class ModelSpec:
    """Which model of a study: its pretraining, its fine-tuning task and its random seed.

    Parameters
    ----------
    pretraining : str
        e.g. ``"imagenet"``, ``"vggface"`` (or ``"objects"``, ``"faces"`` in the demo); lower_snake_case.
    task : str
        e.g. ``"gender"`` or ``"identity"``; lower_snake_case.
    seed : int
        Seed of the fine-tuning run, >= 0.
    """

    pretraining: str
    task: str
    seed: int

    def __post_init__(self):
        for field in ("pretraining", "task"):
            value = getattr(self, field)
            if not isinstance(value, str) or not _NAME.match(value):
                raise ZooError(f"ModelSpec.{field} must be a lower_snake_case string, got {value!r}")
        if not _is_int(self.seed) or self.seed < 0:
            raise ZooError(f"ModelSpec.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def name(self) -> str:
        """A file-name-safe label, e.g. ``"faces-gender-seed0"`` (see :meth:`parse`)."""
        return f"{self.pretraining}-{self.task}-seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`: a mapping with exactly ``pretraining``, ``task`` and ``seed``."""
        if not isinstance(data, Mapping):
            raise ZooError(f"a model spec must be a mapping with pretraining, task and seed, got {type(data).__name__}")
        fields = ("pretraining", "task", "seed")
        missing, unknown = [key for key in fields if key not in data], sorted(set(data) - set(fields), key=str)
        if missing or unknown:
            raise ZooError(f"a model spec needs exactly the keys {list(fields)}; missing {missing}, unknown {unknown}")
        return cls(data["pretraining"], data["task"], data["seed"])

    @classmethod
    def parse(cls, name: str) -> "ModelSpec":
        """Inverse of :attr:`name`: ``"faces-gender-seed0"`` -> ``ModelSpec("faces", "gender", 0)``."""
        match = _SPEC_NAME.match(name) if isinstance(name, str) else None
        if match is None:
            raise ZooError(f"a model name looks like 'faces-gender-seed0' (pretraining-task-seedN), got {name!r}")
        return cls(match[1], match[2], int(match[3]))

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ZooEntry:
    """Where a zoo finds one model: a file and its format (``lrp_faces``, ``torchvision`` or ``vgg_face``).

    ``num_classes`` gives ``torchvision`` and ``vgg_face`` weights a new, seeded last layer of that size.
    """

    spec: ModelSpec
    path: Path
    format: str = "lrp_faces"
    num_classes: int | None = None

    def __post_init__(self):
        if not isinstance(self.spec, ModelSpec):
            raise TypeError(f"ZooEntry.spec must be a ModelSpec, got {type(self.spec).__name__}")
        if self.format not in FORMATS:
            raise ZooError(f"model {self.spec}: format must be one of {FORMATS}, got {self.format!r}")
        if self.num_classes is not None and (not _is_int(self.num_classes) or self.num_classes < 1):
            raise ZooError(f"model {self.spec}: num_classes must be a positive integer, got {self.num_classes!r}")
        if self.num_classes is not None and self.format == "lrp_faces":
            raise ZooError(f"model {self.spec}: num_classes applies to 'torchvision' and 'vgg_face' weights only; an "
                           f"lrp_faces checkpoint records its own classes")
        object.__setattr__(self, "path", Path(self.path))

    def load(self) -> NormalizedVGG:
        """Load the model from its file, in evaluation mode, with ``model.spec`` set."""
        if self.format == "lrp_faces":
            model = load_model(self.path)
        elif self.format == "torchvision":
            model = load_torchvision_vgg16(self.path, num_classes=self.num_classes, seed=self.spec.seed)
        else:
            model = load_vgg_face(self.path, num_classes=self.num_classes, seed=self.spec.seed)
        model.spec = self.spec.to_dict()
        return model.eval()


class Zoo(Mapping):
    """A set of models indexed by :class:`ModelSpec`; ``zoo[spec]`` loads the model from its file.

    Models are loaded on access and not kept, so a zoo of full-size VGG-16s costs no memory until used. Iteration
    (and :attr:`specs`) is in sorted spec order; ``spec in zoo``, ``len`` and ``==`` never load a model.

    Parameters
    ----------
    entries : iterable of ZooEntry
    image_size : int, optional
        Input size the models expect, if known.
    """

    def __init__(self, entries: Iterable[ZooEntry], image_size: int | None = None):
        self.entries: dict[ModelSpec, ZooEntry] = {}
        for entry in entries:
            if not isinstance(entry, ZooEntry):
                raise TypeError(f"a Zoo is built from ZooEntry objects, got {type(entry).__name__}")
            if entry.spec in self.entries:
                raise ZooError(f"model {entry.spec} is declared twice")
            self.entries[entry.spec] = entry
        if not self.entries:
            raise ZooError("a zoo needs at least one model")
        if image_size is not None and (not _is_int(image_size) or image_size < 1):
            raise ZooError(f"image_size must be a positive integer, got {image_size!r}")
        self.image_size = image_size

    def __getitem__(self, spec: ModelSpec) -> NormalizedVGG:
        if spec not in self.entries:
            raise KeyError(f"no model {spec!s} in this zoo; it has {', '.join(map(str, self))}")
        return self.entries[spec].load()

    def __contains__(self, spec: object) -> bool:
        return spec in self.entries

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Zoo):
            return NotImplemented
        return self.entries == other.entries and self.image_size == other.image_size

    __hash__ = None

    @property
    def specs(self) -> list[ModelSpec]:
        """The model specs, sorted."""
        return sorted(self.entries)

    def _values(self, field: str) -> list:
        return sorted({getattr(spec, field) for spec in self.entries})

    @property
    def pretrainings(self) -> list[str]:
        return self._values("pretraining")

    @property
    def tasks(self) -> list[str]:
        return self._values("task")

    @property
    def seeds(self) -> list[int]:
        return self._values("seed")

    def select(self, pretraining: str | None = None, task: str | None = None, seed: int | None = None) -> "Zoo":
        """The sub-zoo of the models that match every given field."""
        wanted = {"pretraining": pretraining, "task": task, "seed": seed}
        entries = [entry for spec, entry in self.entries.items()
                   if all(value is None or getattr(spec, field) == value for field, value in wanted.items())]
        if not entries:
            given = ", ".join(f"{field}={value!r}" for field, value in wanted.items() if value is not None)
            raise KeyError(f"no model in this zoo matches {given}; it has {', '.join(map(str, self))}")
        return Zoo(entries, self.image_size)

    def __repr__(self) -> str:
        return (f"Zoo({len(self)} models: pretraining {self.pretrainings}, task {self.tasks}, seed {self.seeds}"
                f"{'' if self.image_size is None else f', {self.image_size} px'})")

    @classmethod
    def from_toml(cls, path: str | os.PathLike, table: str = "zoo") -> "Zoo":
        """Read a zoo from a study TOML file.

        The ``[zoo]`` table may give ``image_size``; each ``[[zoo.models]]`` gives ``pretraining``, ``task``,
        ``seed``, ``path`` (relative to the TOML file), and optionally ``format`` (one of :data:`FORMATS`, default
        ``"lrp_faces"``) and ``num_classes`` (a new head for ``torchvision`` and ``vgg_face`` files)::

            [zoo]
            image_size = 224
            [[zoo.models]]
            pretraining = "imagenet"
            task = "gender"
            seed = 0
            path = "models/imagenet-gender-seed0.pt"

        Files must exist; they are read only when a model is accessed. Errors (:class:`ZooError`) name the file, the
        entry and the key, and say what was expected.
        """
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ZooError(f"study file {str(path)!r} does not exist") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
            raise ZooError(f"{str(path)!r} is not valid TOML: {error}") from None
        if table not in document:
            raise ZooError(f"{str(path)!r} has no [{table}] table (with [[{table}.models]] entries)")
        return cls.from_dict(document[table], base=path.parent, where=f"{path}: [{table}]")

    @classmethod
    def from_dict(cls, data: Any, base: str | os.PathLike = ".", where: str = "[zoo]") -> "Zoo":
        """Build a zoo from the parsed ``[zoo]`` table (see :meth:`from_toml`); paths are relative to ``base``."""
        if not isinstance(data, Mapping):
            raise ZooError(f"{where}: expected a table with an array of [[models]], got {type(data).__name__}")
        _no_unknown(data, ("image_size", "models"), where)
        image_size = _typed(data, "image_size", int, where, required=False)
        if image_size is not None and image_size < 1:
            raise ZooError(f"{where}.image_size: expected a positive int, got {image_size!r}")
        models = _typed(data, "models", list, where)
        if not models:
            raise ZooError(f"{where}.models: expected a non-empty array of tables [[models]], got an empty array")
        entries, seen = [], {}
        for index, item in enumerate(models):
            item_where = f"{where}.models[{index}]"
            if not isinstance(item, Mapping):
                raise ZooError(f"{item_where}: expected a table, got {type(item).__name__} {item!r}")
            _no_unknown(item, ("pretraining", "task", "seed", "path", "format", "num_classes"), item_where)
            fields = [_typed(item, key, kind, item_where) for key, kind in (("pretraining", str), ("task", str),
                                                                             ("seed", int))]
            try:
                spec = ModelSpec(*fields)
            except ZooError as error:
                raise ZooError(f"{item_where}: {error}") from None
            if spec in seen:
                raise ZooError(f"{item_where}: model {spec} is declared twice (also in models[{seen[spec]}])")
            seen[spec] = index
            file = Path(base) / Path(_typed(item, "path", str, item_where)).expanduser()
            if not file.is_file():
                raise ZooError(f"{item_where}.path: file {str(file)!r} does not exist")
            try:
                entries.append(ZooEntry(spec, file, _typed(item, "format", str, item_where, required=False)
                                        or "lrp_faces", _typed(item, "num_classes", int, item_where, required=False)))
            except ZooError as error:
                raise ZooError(f"{item_where}: {error}") from None
        return cls(entries, image_size)

    @classmethod
    def demo(cls, settings: "DemoSettings | None" = None, cache_dir: str | os.PathLike | None = None,
             progress: bool = True, workers: int | None = None) -> "Zoo":
        """The offline demo zoo: small VGG-16s pretrained on synthetic objects or faces, fine-tuned per task and seed.

        Checkpoints are cached under ``cache_dir`` (default :func:`default_cache_dir`) in a folder keyed by every
        setting (:meth:`DemoSettings.key`), so a second call loads instead of training. Every cached file is checked
        (readable, weights digest, spec and settings); a missing or damaged one is retrained (with a warning if
        damaged), and only the models that need it are trained.

        Trainings run single-threaded, ``workers`` at a time (default: one per CPU), so the weights do not depend on
        the machine's core count or on ``workers``. The default settings train in about 70 s on two idle CPU cores;
        :meth:`DemoSettings.quick` in about 20 s.
        """
        settings = DemoSettings() if settings is None else settings
        if not isinstance(settings, DemoSettings):
            raise TypeError(f"settings must be a DemoSettings, got {type(settings).__name__}")
        if workers is not None and (not _is_int(workers) or workers < 1):
            raise ZooError(f"workers must be a positive integer or None, got {workers!r}")
        key = settings.key()
        folder = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / f"demo-{key}"
        entries = [ZooEntry(spec, folder / f"{spec.name}.pt") for spec in settings.specs()]
        missing = []
        for entry in entries:  # a loop, not a comprehension: the warning's stacklevel points at the caller
            if not _usable_checkpoint(entry.path, entry.spec.to_dict(), key):
                missing.append(entry.spec)
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
            _write_text(folder / "settings.json",
                        json.dumps({"key": key, "settings": dataclasses.asdict(settings)}, indent=1))
            _train_demo_zoo(settings, folder, missing, progress, workers)
        return cls(entries, settings.image_size)


def _no_unknown(table: Mapping, allowed: tuple[str, ...], where: str) -> None:
    unknown = sorted(set(table) - set(allowed), key=str)
    if unknown:
        raise ZooError(f"{where}: unknown key(s) {unknown}; expected keys are {list(allowed)}")


def _typed(table: Mapping, key: str, kind: type, where: str, required: bool = True):
    if key not in table:
        if required:
            raise ZooError(f"{where}: missing key {key!r} ({kind.__name__})")
        return None
    value = table[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ZooError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def default_cache_dir() -> Path:
    """``$LRP_FACES_CACHE``, else ``$XDG_CACHE_HOME/lrp_faces``, else ``~/.cache/lrp_faces``."""
    if os.environ.get("LRP_FACES_CACHE"):
        return Path(os.environ["LRP_FACES_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrp_faces"


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


# ---------------------------------------------------------------------------------------------------------- training
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
    model.class_names = list(names) if names is not None and len(names) == num_classes else None
    model.metadata = metadata
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


def _weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        value = value.detach().cpu().contiguous()
        digest.update(f"{key}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


# -------------------------------------------------------------------------------------------------------- demo zoo
DEMO_FORMAT = 2  # bump when the training recipe changes, to invalidate cached demo zoos (data changes are hashed)


@dataclass(frozen=True)
class DemoSettings:
    """Everything that defines the demo zoo; the cache key (:meth:`key`) is a hash of all of it.

    The default trains 2 bases and 12 fine-tuned width-1/8 VGG-16-BNs on 64-px images in about 70 s on two idle CPU
    cores (about 140 s while other processes keep both busy); every model reaches >= 90 % held-out accuracy, the
    weakest (objects -> identity) about 94 %. Recipe:

    * bases ``objects`` (10 shape/texture classes x 120 images) and ``faces`` (identity of 40 synthetic people x
      30 images), trained from scratch for ``pretrain_epochs`` (AdamW, one-cycle schedule, batch 32), with
      He-initialised dense layers and no dropout: torchvision's N(0, 0.01) dense initialisation and dropout 0.5 in
      the 64-unit classifier keep a small VGG-16 from learning identities at all;
    * each base fine-tuned, all layers, for ``gender`` and ``identity`` on 10 other identities (24 training images
      each) per seed, with label smoothing; the 8 held-out images per identity (:func:`demo_study_data`) are the
      ones the demo explains.
    """

    image_size: int = 64
    width: float = 0.125
    classifier_width: int = 64
    pool_size: int = 2
    batch_norm: bool = True
    dropout: float = 0.0
    seeds: tuple[int, ...] = (0, 1, 2)
    object_classes: int = 10
    images_per_object_class: int = 120
    pretrain_identities: int = 40
    pretrain_images_per_identity: int = 30
    study_identities: int = 10
    train_images_per_identity: int = 24
    test_images_per_identity: int = 8
    pretrain_epochs: int = 10
    pretrain_lr: float = 3e-3
    finetune_epochs: int = 8
    finetune_lr: float = 2e-3
    finetune_trainable: str = "all"
    label_smoothing: float = 0.1
    weight_decay: float = 0.0
    batch_size: int = 32
    data_seed: int = 0

    def __post_init__(self):
        seeds = self.seeds
        if not isinstance(seeds, (list, tuple)) or not seeds or not all(_is_int(s) and s >= 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ZooError(f"DemoSettings.seeds must be distinct integers >= 0, got {seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in seeds))
        lows = {"image_size": 32, "classifier_width": 1, "pool_size": 1, "object_classes": 1,
                "images_per_object_class": 1, "pretrain_identities": 1, "pretrain_images_per_identity": 1,
                "study_identities": 2, "train_images_per_identity": 1, "test_images_per_identity": 1,
                "pretrain_epochs": 1, "finetune_epochs": 1, "batch_size": 1, "data_seed": 0}
        for name, low in lows.items():
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ZooError(f"DemoSettings.{name} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, name, int(value))
        for name in ("width", "dropout", "pretrain_lr", "finetune_lr", "label_smoothing", "weight_decay"):
            if isinstance(getattr(self, name), bool) or not isinstance(getattr(self, name), (int, float)):
                raise ZooError(f"DemoSettings.{name} must be a number, got {getattr(self, name)!r}")
            object.__setattr__(self, name, float(getattr(self, name)))  # 1 and 1.0 give the same key
        if not (self.width > 0 and self.pretrain_lr > 0 and self.finetune_lr > 0 and 0 <= self.dropout < 1
                and 0 <= self.label_smoothing < 1 and self.weight_decay >= 0):
            raise ZooError(f"DemoSettings: need width, pretrain_lr, finetune_lr > 0, dropout and label_smoothing in "
                           f"[0, 1) and weight_decay >= 0; got {self}")
        if self.finetune_trainable not in ("classifier", "all"):
            raise ZooError(f"DemoSettings.finetune_trainable must be 'classifier' or 'all', got "
                           f"{self.finetune_trainable!r}")
        if not isinstance(self.batch_norm, bool):
            raise ZooError(f"DemoSettings.batch_norm must be a bool, got {self.batch_norm!r}")

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A reduced zoo for smoke tests and CI: one seed and smaller, shorter-trained bases (about 20 s).

        Bases from 600 object and 480 face images trained for 6 epochs; the study data and the fine-tuning are the
        default's, so it explains the same 80 images at 64 px.
        """
        return cls(seeds=(0,), images_per_object_class=60, pretrain_identities=20, pretrain_images_per_identity=24,
                   pretrain_epochs=6)

    def key(self) -> str:
        """Hash of every setting, the recipe version and a fingerprint of the synthetic data generators."""
        text = json.dumps({"format": DEMO_FORMAT, "data": _data_fingerprint(), **dataclasses.asdict(self)},
                          sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def specs(self) -> list[ModelSpec]:
        return sorted(ModelSpec(pretraining, task, seed) for pretraining in ("objects", "faces")
                      for task in ("gender", "identity") for seed in self.seeds)

    def architecture(self) -> dict[str, Any]:
        """Arguments of :func:`lrp_faces.vgg16` (all but ``num_classes``)."""
        return {"preprocessing": IMAGENET, "width": self.width, "classifier_width": self.classifier_width,
                "pool_size": self.pool_size, "batch_norm": self.batch_norm, "dropout": self.dropout}


@functools.lru_cache(maxsize=1)
def _data_fingerprint() -> str:
    """Hash of a few tiny synthetic images: cached demo zoos go stale by themselves when the generators change."""
    digest = hashlib.sha256()
    for data in (synthetic_faces(2, 2, size=32, seed=0), synthetic_objects(2, 1, size=32, seed=0)):
        digest.update(data.images.numpy().tobytes())
        digest.update(np.asarray(data.labels()).tobytes())
    return digest.hexdigest()[:16]


def demo_study_data(settings: "DemoSettings | None" = None, task: str = "identity"):
    """The demo's study faces, split per identity: ``(train, test)``; the test images are the ones explained.

    ``study_identities`` x (``train_images_per_identity`` + ``test_images_per_identity``) images; the last
    ``test_images_per_identity`` images of each identity are the test split. Their identities are disjoint from the
    pretraining identities (another seed of the generator).
    """
    settings = DemoSettings() if settings is None else settings
    per_identity = settings.train_images_per_identity + settings.test_images_per_identity
    faces = synthetic_faces(settings.study_identities, per_identity, size=settings.image_size,
                            seed=settings.data_seed * 1000 + 2, task=task)
    test = (np.arange(len(faces)) % per_identity) >= settings.train_images_per_identity
    return faces.subset(~test), faces.subset(test)


def _usable_checkpoint(path: Path, spec: dict, key: str) -> bool:
    """Whether ``path`` is a complete demo checkpoint of ``spec`` under settings ``key``; warns if it is damaged."""
    if not path.is_file():
        return False
    try:
        model = load_model(path)
        metadata = model.metadata
        problem = ("its weights do not match their recorded digest" if metadata.get("weights_sha256")
                   != _weights_digest(model) else f"it holds model {model.spec}, not {spec}" if model.spec != spec
                   else "it was trained with other settings" if metadata.get("demo_key") != key else None)
    except WeightsError as error:
        problem = str(error)
    if problem is not None:
        warnings.warn(f"cached demo model {str(path)!r} is damaged ({problem}); retraining it", RuntimeWarning,
                      stacklevel=3)
    return problem is None


def _save_demo_model(model: NormalizedVGG, path: Path, spec: dict, settings: DemoSettings, **extra) -> None:
    metadata = {**model.metadata, **extra, "demo_key": settings.key(), "demo_settings": dataclasses.asdict(settings),
                "weights_sha256": _weights_digest(model)}
    save_model(model, path, spec=spec, metadata=metadata)


def _pretrain_data(pretraining: str, settings: DemoSettings):
    if pretraining == "objects":
        return synthetic_objects(settings.object_classes, settings.images_per_object_class, size=settings.image_size,
                                 seed=settings.data_seed * 1000 + 1)
    return synthetic_faces(settings.pretrain_identities, settings.pretrain_images_per_identity,
                           size=settings.image_size, seed=settings.data_seed * 1000 + 3, task="identity")


def _initial_base(pretraining: str, settings: DemoSettings) -> NormalizedVGG:
    """The untrained base: torchvision's initialisation, but He-initialised dense layers (N(0, 0.01) stalls them)."""
    classes = settings.object_classes if pretraining == "objects" else settings.pretrain_identities
    with _GLOBAL_RNG, torch.random.fork_rng(devices=[]):  # the caller's global RNG is left as it was
        torch.manual_seed(settings.data_seed)
        base = vgg16(num_classes=classes, **settings.architecture())
    generator = torch.Generator().manual_seed(settings.data_seed)
    with torch.no_grad():
        for layer in base.classifier:
            if isinstance(layer, nn.Linear):
                layer.weight.normal_(0.0, math.sqrt(2.0 / layer.in_features), generator=generator)
                layer.bias.zero_()
    return base


def _pretrain(initial: NormalizedVGG, pretraining: str, settings: DemoSettings, progress: bool) -> NormalizedVGG:
    return finetune(initial, _pretrain_data(pretraining, settings), seed=settings.data_seed,
                    epochs=settings.pretrain_epochs, lr=settings.pretrain_lr, trainable="all",
                    batch_size=settings.batch_size, weight_decay=settings.weight_decay, progress=progress,
                    description=f"pretrain {pretraining}")


def _finetune_demo(base: NormalizedVGG, spec: ModelSpec, study, settings: DemoSettings,
                   progress: bool) -> NormalizedVGG:
    train, test = study
    return finetune(base, train, task=spec.task, seed=spec.seed, epochs=settings.finetune_epochs,
                    lr=settings.finetune_lr, trainable=settings.finetune_trainable, batch_size=settings.batch_size,
                    weight_decay=settings.weight_decay, label_smoothing=settings.label_smoothing, validation=test,
                    progress=progress, description=f"finetune {spec.name}")


@contextlib.contextmanager
def _torch_threads(count: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def default_workers() -> int:
    """The CPUs this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _train_demo_zoo(settings: DemoSettings, folder: Path, specs: list[ModelSpec] | None = None,
                    progress: bool = True, workers: int | None = None) -> None:
    """Train (and save into ``folder``) the demo models ``specs`` (default: all) and the bases they need.

    Every training runs single-threaded, and ``workers`` of them run side by side in threads (default: one per
    CPU). Small convolutions scale much better across models than across cores, a single thread cannot be slowed
    down by other processes the way an OpenMP team is, and the weights do not depend on the machine's core count
    or on ``workers``.
    """
    specs = settings.specs() if specs is None else list(specs)
    workers = default_workers() if workers is None else workers
    if not _is_int(workers) or workers < 1:
        raise ZooError(f"workers must be a positive integer, got {workers!r}")
    if not specs:
        return
    key = settings.key()
    bases: dict[str, NormalizedVGG] = {}
    to_pretrain = []
    for pretraining in dict.fromkeys(spec.pretraining for spec in specs):  # checked here: warnings stay in this thread
        path = folder / f"base-{pretraining}.pt"
        if _usable_checkpoint(path, _base_spec(pretraining), key):
            bases[pretraining] = load_model(path)
        else:
            to_pretrain.append((pretraining, _initial_base(pretraining, settings)))
    quiet = progress and workers == 1  # per-training bars only when they do not interleave
    bar = tqdm(total=len(specs) + len(to_pretrain), desc="demo zoo", unit="model", disable=not progress)
    pool = ThreadPoolExecutor(max_workers=min(workers, len(specs) + len(to_pretrain)),
                              thread_name_prefix="lrp_faces-demo")
    try:
        with _torch_threads(1):
            study = pool.submit(demo_study_data, settings)
            jobs = {pool.submit(_pretrain, initial, pretraining, settings, quiet): ("base", pretraining)
                    for pretraining, initial in to_pretrain}

            def submit_finetunes(pretraining: str):
                for spec in specs:
                    if spec.pretraining == pretraining:
                        jobs[pool.submit(_finetune_demo, bases[pretraining], spec, study.result(), settings,
                                         quiet)] = ("model", spec)

            if bases:
                study.result()
            for pretraining in bases:
                submit_finetunes(pretraining)
            while jobs:
                done, _ = wait(list(jobs), return_when=FIRST_COMPLETED)
                for job in done:
                    kind, what = jobs.pop(job)
                    model = job.result()  # re-raises a failed training
                    if kind == "base":
                        _save_demo_model(model, folder / f"base-{what}.pt", _base_spec(what), settings)
                        bases[what] = model
                        submit_finetunes(what)
                    else:
                        _save_demo_model(model, folder / f"{what.name}.pt", what.to_dict(), settings,
                                         base=f"base-{what.pretraining}.pt")
                    bar.update()
                    bar.set_postfix_str(f"{what if kind == 'base' else what.name} done")
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        bar.close()


def _base_spec(pretraining: str) -> dict[str, Any]:
    return {"pretraining": pretraining, "task": "pretraining", "seed": 0}
