"""Model specs, zoos of models (from a study TOML or the offline demo), and fine-tuning."""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
import re
import time
import tomllib
import warnings
from collections.abc import Iterable, Iterator, Mapping
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
           "default_cache_dir", "FORMATS"]

FORMATS = ("lrp_faces", "torchvision", "vgg_face")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class ZooError(ValueError):
    """An invalid model spec, zoo declaration or training request."""


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
        Seed of the fine-tuning run.
    """

    pretraining: str
    task: str
    seed: int

    def __post_init__(self):
        for field in ("pretraining", "task"):
            value = getattr(self, field)
            if not isinstance(value, str) or not _NAME.match(value):
                raise ZooError(f"ModelSpec.{field} must be a lower_snake_case string, got {value!r}")
        if not isinstance(self.seed, (int, np.integer)) or isinstance(self.seed, bool) or self.seed < 0:
            raise ZooError(f"ModelSpec.seed must be an integer >= 0, got {self.seed!r}")
        object.__setattr__(self, "seed", int(self.seed))

    @property
    def name(self) -> str:
        """A file-name-safe label, e.g. ``"faces-gender-seed0"``."""
        return f"{self.pretraining}-{self.task}-seed{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        return cls(data["pretraining"], data["task"], data["seed"])

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class ZooEntry:
    """Where a zoo finds one model: a file and its format (``lrp_faces``, ``torchvision`` or ``vgg_face``)."""

    spec: ModelSpec
    path: Path
    format: str = "lrp_faces"
    num_classes: int | None = None

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ZooError(f"model {self.spec}: format must be one of {FORMATS}, got {self.format!r}")
        object.__setattr__(self, "path", Path(self.path))

    def load(self) -> NormalizedVGG:
        """Load the model from its file."""
        if self.format == "lrp_faces":
            model = load_model(self.path)
        elif self.format == "torchvision":
            model = load_torchvision_vgg16(self.path, num_classes=self.num_classes)
        else:
            model = load_vgg_face(self.path, num_classes=self.num_classes)
        model.spec = self.spec.to_dict()
        return model.eval()


class Zoo(Mapping):
    """A set of models indexed by :class:`ModelSpec`; ``zoo[spec]`` loads the model from its file.

    Models are loaded on access and not kept, so a zoo of full-size VGG-16s costs no memory until used.

    Parameters
    ----------
    entries : iterable of ZooEntry
    image_size : int, optional
        Input size the models expect, if known.
    """

    def __init__(self, entries: Iterable[ZooEntry], image_size: int | None = None):
        self.entries: dict[ModelSpec, ZooEntry] = {}
        for entry in entries:
            if entry.spec in self.entries:
                raise ZooError(f"model {entry.spec} is declared twice")
            self.entries[entry.spec] = entry
        if not self.entries:
            raise ZooError("a zoo needs at least one model")
        self.image_size = image_size

    def __getitem__(self, spec: ModelSpec) -> NormalizedVGG:
        if spec not in self.entries:
            raise KeyError(f"no model {spec} in this zoo; it has {', '.join(map(str, self))}")
        return self.entries[spec].load()

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(sorted(self.entries))

    def __len__(self) -> int:
        return len(self.entries)

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

    def __repr__(self) -> str:
        return (f"Zoo({len(self)} models: pretraining {self.pretrainings}, task {self.tasks}, seed {self.seeds}"
                f"{'' if self.image_size is None else f', {self.image_size} px'})")

    @classmethod
    def from_toml(cls, path: str | os.PathLike, table: str = "zoo") -> "Zoo":
        """Read a zoo from a study TOML file.

        The ``[zoo]`` table may give ``image_size``; each ``[[zoo.models]]`` gives ``pretraining``, ``task``,
        ``seed``, ``path`` (relative to the TOML file), and optionally ``format`` (default ``"lrp_faces"``) and
        ``num_classes`` (a new head for ``torchvision`` and ``vgg_face`` files).
        """
        path = Path(path)
        try:
            document = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ZooError(f"study file {str(path)!r} does not exist") from None
        except tomllib.TOMLDecodeError as error:
            raise ZooError(f"{str(path)!r} is not valid TOML: {error}") from None
        return cls.from_dict(document.get(table, None), base=path.parent, where=f"{path}: [{table}]")

    @classmethod
    def from_dict(cls, data: Any, base: str | os.PathLike = ".", where: str = "[zoo]") -> "Zoo":
        """Build a zoo from the parsed ``[zoo]`` table (see :meth:`from_toml`)."""
        if not isinstance(data, Mapping):
            raise ZooError(f"{where}: expected a table with a list of [[models]], got {type(data).__name__}")
        image_size = _typed(data, "image_size", int, where, required=False)
        models = data.get("models")
        if not isinstance(models, list) or not models:
            raise ZooError(f"{where}.models: expected a non-empty array of tables [[zoo.models]]")
        entries = []
        for index, item in enumerate(models):
            item_where = f"{where}.models[{index}]"
            if not isinstance(item, Mapping):
                raise ZooError(f"{item_where}: expected a table, got {type(item).__name__}")
            unknown = sorted(set(item) - {"pretraining", "task", "seed", "path", "format", "num_classes"})
            if unknown:
                raise ZooError(f"{item_where}: unknown key(s) {unknown}")
            try:
                spec = ModelSpec(_typed(item, "pretraining", str, item_where), _typed(item, "task", str, item_where),
                                 _typed(item, "seed", int, item_where))
            except ZooError as error:
                raise ZooError(f"{item_where}: {error}") from None
            file = Path(base) / _typed(item, "path", str, item_where)
            if not file.is_file():
                raise ZooError(f"{item_where}.path: file {str(file)!r} does not exist")
            entries.append(ZooEntry(spec, file, _typed(item, "format", str, item_where, required=False) or "lrp_faces",
                                    _typed(item, "num_classes", int, item_where, required=False)))
        return cls(entries, image_size)

    @classmethod
    def demo(cls, settings: "DemoSettings | None" = None, cache_dir: str | os.PathLike | None = None,
             progress: bool = True) -> "Zoo":
        """The offline demo zoo: small VGG-16s pretrained on synthetic objects or faces, fine-tuned per task and seed.

        Checkpoints are cached under ``cache_dir`` (default :func:`default_cache_dir`) in a folder keyed by every
        setting, so a second call loads instead of training.
        """
        settings = settings or DemoSettings()
        folder = Path(cache_dir or default_cache_dir()) / f"demo-{settings.key()}"
        folder.mkdir(parents=True, exist_ok=True)
        entries = [ZooEntry(spec, folder / f"{spec.name}.pt") for spec in settings.specs()]
        if not all(_usable_checkpoint(entry.path) for entry in entries):
            _train_demo_zoo(settings, folder, progress)
        return cls(entries, settings.image_size)


def _typed(table: Mapping, key: str, kind: type, where: str, required: bool = True):
    if key not in table:
        if required:
            raise ZooError(f"{where}: missing key {key!r} ({kind.__name__})")
        return None
    value = table[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise ZooError(f"{where}.{key}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def default_cache_dir() -> Path:
    """``$LRP_FACES_CACHE``, else ``$XDG_CACHE_HOME/lrp_faces``, else ``~/.cache/lrp_faces``."""
    if os.environ.get("LRP_FACES_CACHE"):
        return Path(os.environ["LRP_FACES_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrp_faces"


# ---------------------------------------------------------------------------------------------------------- training
def _tensors(dataset, task: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    """All images and labels of ``dataset`` as tensors (synthetic sets hold them; others are loaded once)."""
    if hasattr(dataset, "images") and hasattr(dataset, "labels"):
        return dataset.images, torch.as_tensor(np.asarray(dataset.labels(task)), dtype=torch.long)
    if task is not None and hasattr(dataset, "with_task"):
        dataset = dataset.with_task(task)
    images, labels = zip(*(dataset[index] for index in range(len(dataset))))
    return torch.stack(images), torch.as_tensor(labels, dtype=torch.long)


@torch.no_grad()
def accuracy(model: nn.Module, dataset, task: str | None = None, batch_size: int = 128) -> float:
    """Share of images of ``dataset`` whose ``task`` label the model predicts."""
    images, labels = _tensors(dataset, task)
    training = model.training
    model.eval()
    try:
        predictions = torch.cat([model(images[start:start + batch_size]).argmax(1)
                                 for start in range(0, len(images), batch_size)])
    finally:
        model.train(training)
    return float((predictions == labels).float().mean())


def finetune(base_model: NormalizedVGG, dataset, task: str | None = None, seed: int = 0, epochs: int = 5,
             lr: float = 1e-3, trainable: str = "classifier", batch_size: int = 64, weight_decay: float = 0.0,
             validation=None, progress: bool = True, description: str = "finetune") -> NormalizedVGG:
    """Train a copy of ``base_model`` on ``dataset``'s ``task`` labels, deterministically under ``seed`` on the CPU.

    The last layer is replaced (seeded) when the number of classes differs. The base model is not modified.

    Parameters
    ----------
    base_model : NormalizedVGG
    dataset : SyntheticFaces, FaceDataset or any dataset yielding (image, label)
    task : str, optional
        Label to learn (default: the dataset's task).
    seed : int
        Seeds the new head, the batch order and dropout.
    epochs, lr, batch_size, weight_decay
        Adam settings.
    trainable : {"classifier", "all"}
        Train only the dense layers, or the whole network.
    validation : dataset, optional
        Held-out images; their accuracy is reported.
    progress : bool
        Show a progress bar.

    Returns
    -------
    NormalizedVGG
        The trained model, in evaluation mode, with ``class_names`` and ``metadata`` (settings, accuracies, time).
    """
    if trainable not in ("classifier", "all"):
        raise ZooError(f"trainable must be 'classifier' or 'all', got {trainable!r}")
    if epochs < 1 or lr <= 0 or batch_size < 1:
        raise ZooError(f"epochs and batch_size must be positive and lr > 0, got epochs={epochs}, lr={lr}, "
                       f"batch_size={batch_size}")
    task = task or getattr(dataset, "task", None)
    images, labels = _tensors(dataset, task)
    num_classes = dataset.num_classes(task) if hasattr(dataset, "num_classes") else int(labels.max()) + 1
    started = time.perf_counter()
    model = copy.deepcopy(base_model)
    if model.num_classes != num_classes:
        model = replace_head(model, num_classes, seed=seed)
    parameters = list(model.parameters()) if trainable == "all" else list(model.classifier.parameters())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in parameters:
        parameter.requires_grad_(True)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        order = torch.Generator().manual_seed(seed)
        optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
        steps = epochs * ((len(images) + batch_size - 1) // batch_size)
        bar = tqdm(total=steps, desc=description, unit="batch", disable=not progress, leave=False)
        model.train()
        if trainable == "classifier":
            model.features.eval()
        correct = 0
        for epoch in range(epochs):
            permutation = torch.randperm(len(images), generator=order)
            correct = 0
            for start in range(0, len(images), batch_size):
                batch = permutation[start:start + batch_size]
                logits = model(images[batch])
                loss = nn.functional.cross_entropy(logits, labels[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                correct += int((logits.argmax(1) == labels[batch]).sum())
                bar.update()
                bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
        bar.close()
    for parameter in model.parameters():
        parameter.requires_grad_(True)
    model.eval()
    metadata = {"task": task, "seed": seed, "epochs": epochs, "lr": lr, "trainable": trainable,
                "batch_size": batch_size, "weight_decay": weight_decay, "train_images": len(images),
                "train_accuracy_last_epoch": correct / len(images),
                "seconds": round(time.perf_counter() - started, 3)}
    if validation is not None:
        metadata["validation_accuracy"] = accuracy(model, validation, task)
        metadata["validation_images"] = len(validation)
    model.class_names = list(dataset.class_names(task)) if hasattr(dataset, "class_names") else None
    model.metadata = metadata
    return model


# -------------------------------------------------------------------------------------------------------- demo zoo
DEMO_FORMAT = 1  # bump when the synthetic data or the training recipe changes, to invalidate cached demo zoos


@dataclass(frozen=True)
class DemoSettings:
    """Everything that defines the demo zoo; the cache key is a hash of all of it."""

    image_size: int = 64
    width: float = 0.125
    classifier_width: int = 64
    pool_size: int = 2
    batch_norm: bool = True
    seeds: tuple[int, ...] = (0, 1, 2)
    object_classes: int = 10
    images_per_object_class: int = 120
    pretrain_identities: int = 40
    pretrain_images_per_identity: int = 30
    study_identities: int = 10
    train_images_per_identity: int = 24
    test_images_per_identity: int = 8
    pretrain_epochs: int = 8
    pretrain_lr: float = 1e-3
    finetune_epochs: int = 6
    finetune_lr: float = 5e-4
    finetune_trainable: str = "all"
    batch_size: int = 64
    data_seed: int = 0

    @classmethod
    def quick(cls) -> "DemoSettings":
        """A reduced zoo for smoke tests: two seeds, fewer images and epochs."""
        return cls(seeds=(0, 1), images_per_object_class=60, pretrain_identities=20, pretrain_images_per_identity=20,
                   study_identities=6, train_images_per_identity=16, test_images_per_identity=4, pretrain_epochs=4,
                   finetune_epochs=3)

    def key(self) -> str:
        text = json.dumps({"format": DEMO_FORMAT, **dataclasses.asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def specs(self) -> list[ModelSpec]:
        return [ModelSpec(pretraining, task, seed) for pretraining in ("objects", "faces")
                for task in ("gender", "identity") for seed in self.seeds]

    def architecture(self) -> dict[str, Any]:
        return {"preprocessing": IMAGENET, "width": self.width, "classifier_width": self.classifier_width,
                "pool_size": self.pool_size, "batch_norm": self.batch_norm}


def demo_study_data(settings: "DemoSettings | None" = None, task: str = "identity"):
    """The demo's study faces, split per identity: ``(train, test)``; the test images are the ones explained.

    Their identities are disjoint from the pretraining identities (another seed of the generator).
    """
    settings = settings or DemoSettings()
    per_identity = settings.train_images_per_identity + settings.test_images_per_identity
    faces = synthetic_faces(settings.study_identities, per_identity, size=settings.image_size,
                            seed=settings.data_seed * 1000 + 2, task=task)
    test = (np.arange(len(faces)) % per_identity) >= settings.train_images_per_identity
    return faces.subset(~test), faces.subset(test)


def _usable_checkpoint(path: Path) -> bool:
    if not path.is_file():
        return False
    try:
        from .models import read_checkpoint_info
        read_checkpoint_info(path)
    except WeightsError as error:
        warnings.warn(f"ignoring damaged cached model {path}: {error}; it will be retrained", stacklevel=3)
        return False
    return True


def _pretrain(name: str, dataset, settings: DemoSettings, progress: bool) -> NormalizedVGG:
    torch.manual_seed(settings.data_seed)
    base = vgg16(num_classes=dataset.num_classes(), **settings.architecture())
    return finetune(base, dataset, seed=settings.data_seed, epochs=settings.pretrain_epochs, lr=settings.pretrain_lr,
                    trainable="all", batch_size=settings.batch_size, progress=progress,
                    description=f"pretrain {name}")


def _train_demo_zoo(settings: DemoSettings, folder: Path, progress: bool) -> None:
    bases = {}
    for pretraining in ("objects", "faces"):
        path = folder / f"base-{pretraining}.pt"
        if _usable_checkpoint(path):
            bases[pretraining] = load_model(path)
            continue
        if pretraining == "objects":
            data = synthetic_objects(settings.object_classes, settings.images_per_object_class,
                                     size=settings.image_size, seed=settings.data_seed * 1000 + 1)
        else:
            data = synthetic_faces(settings.pretrain_identities, settings.pretrain_images_per_identity,
                                   size=settings.image_size, seed=settings.data_seed * 1000 + 3, task="identity")
        bases[pretraining] = _pretrain(pretraining, data, settings, progress)
        save_model(bases[pretraining], path, spec={"pretraining": pretraining, "task": "pretraining", "seed": 0},
                   metadata={"demo_settings": dataclasses.asdict(settings), **bases[pretraining].metadata})
    train, test = demo_study_data(settings)
    for spec in settings.specs():
        path = folder / f"{spec.name}.pt"
        if _usable_checkpoint(path):
            continue
        model = finetune(bases[spec.pretraining], train, task=spec.task, seed=spec.seed,
                         epochs=settings.finetune_epochs, lr=settings.finetune_lr,
                         trainable=settings.finetune_trainable, batch_size=settings.batch_size, validation=test,
                         progress=progress, description=f"finetune {spec.name}")
        save_model(model, path, spec=spec, metadata={"demo_settings": dataclasses.asdict(settings),
                                                     "base": f"base-{spec.pretraining}.pt", **model.metadata})
