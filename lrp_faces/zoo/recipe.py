"""What a zoo build trains: base weights, tasks, seeds, training settings and the held-out split, from a ``ZOO.toml``.

A :class:`ZooRecipe` holds the base weights of each pretraining (:class:`BaseWeights`), the tasks, the seeds, the
training settings (:class:`TrainingSettings`: defaults for all models, overridden per task and per pretraining x
task) and the held-out split (:class:`HeldOutSplit`); :func:`lrp_faces.zoo.build_zoo` trains it.

>>> recipe = ZooRecipe.from_dict({
...     "build": {"tasks": ["gender", "identity"], "seeds": [0, 1]},
...     "base": {"imagenet": {"path": __file__, "format": "torchvision"}},
...     "training": {"epochs": 5, "identity": {"epochs": 20}, "imagenet": {"gender": {"lr": 3e-4}}}})
>>> [spec.name for spec in recipe.specs()][:2]
['imagenet-gender-seed0', 'imagenet-gender-seed1']
>>> recipe.settings("imagenet", "identity").epochs, recipe.settings("imagenet", "gender").lr
(20, 0.0003)
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from numbers import Real
from pathlib import Path
from typing import Any

from ..faces import split_by_image
from ..models import NormalizedVGG, WeightsError, load_model, load_torchvision_vgg16, load_vgg_face
from ..toml_tables import TomlTable, read_toml
from .checks import ZooError, ZooTypeError, check_integer, is_integer
from .specs import FORMATS, ModelSpec
from .training import SCHEDULES, TRAINABLE

__all__ = ["TrainingSettings", "BaseWeights", "HeldOutSplit", "ZooRecipe", "SETTING_NAMES"]

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class TrainingSettings:
    """How one model is fine-tuned (the arguments of :func:`lrp_faces.zoo.finetune`).

    Parameters
    ----------
    trainable : {"classifier", "all"}
        Train the dense layers only (the convolutional features stay the base's), or every layer.
    epochs : int
        Passes over the training images, >= 1.
    lr : float
        Peak learning rate of AdamW, > 0.
    batch_size : int
        Images per optimiser step, >= 1.
    augment : int
        Shift each training image by up to this many pixels in x and y (0: no augmentation).
    schedule : {"onecycle", "cosine", "constant"}
        Learning-rate schedule over all steps (see :func:`~lrp_faces.zoo.finetune`).
    label_smoothing : float
        Cross-entropy label smoothing in [0, 1).
    weight_decay : float
        AdamW's decoupled weight decay, >= 0.

    Raises
    ------
    ZooError
        A value of the wrong type or out of range, naming the setting.
    """

    trainable: str = "classifier"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    augment: int = 0
    schedule: str = "onecycle"
    label_smoothing: float = 0.0
    weight_decay: float = 0.0

    def __post_init__(self):
        for name, value in self.to_dict().items():
            problem = _setting_problem(name, value)
            if problem is not None:
                raise ZooError(f"training setting {name}: {problem}")
        for name in ("lr", "label_smoothing", "weight_decay"):
            object.__setattr__(self, name, float(getattr(self, name)))  # 1 and 1.0 give the same recipe
        for name in ("epochs", "batch_size", "augment"):
            object.__setattr__(self, name, int(getattr(self, name)))

    def to_dict(self) -> dict[str, Any]:
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self)}

    def replace(self, **changes: Any) -> "TrainingSettings":
        """A copy with ``changes`` (setting -> value), checked."""
        unknown = sorted(set(changes) - set(SETTING_NAMES))
        if unknown:
            raise ZooError(f"unknown training setting(s) {unknown}; the settings are {list(SETTING_NAMES)}")
        return dataclasses.replace(self, **changes)


SETTING_NAMES = tuple(item.name for item in dataclasses.fields(TrainingSettings))
_SETTING_KINDS = {"trainable": str, "epochs": int, "lr": float, "batch_size": int, "augment": int, "schedule": str,
                  "label_smoothing": float, "weight_decay": float}


def _setting_problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for training setting ``name``, or None."""
    if name in ("trainable", "schedule"):
        choices = TRAINABLE if name == "trainable" else SCHEDULES
        return None if value in choices else f"expected one of {list(choices)}, got {value!r}"
    if name in ("epochs", "batch_size", "augment"):
        low = 0 if name == "augment" else 1
        return None if is_integer(value) and value >= low else f"expected an integer >= {low}, got {value!r}"
    if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value):
        return f"expected a number, got {value!r}"
    if name == "lr" and not value > 0:
        return f"expected a number > 0, got {value!r}"
    if name == "label_smoothing" and not 0 <= value < 1:
        return f"expected a number in [0, 1), got {value!r}"
    if name == "weight_decay" and not value >= 0:
        return f"expected a number >= 0, got {value!r}"
    return None


@dataclass(frozen=True)
class BaseWeights:
    """The weights one pretraining starts from: a file and its format.

    Parameters
    ----------
    pretraining : str
        The pretraining's name in the zoo, lower_snake_case, e.g. ``"imagenet"`` or ``"vggface"``.
    path : str or PathLike
        The weights file, e.g. torchvision's ``vgg16-397923af.pth`` or the VGG-Face port's ``vgg_face_dag.pth``.
    format : {"torchvision", "vgg_face", "lrp_faces"}
        A torchvision VGG-16 state dict (:func:`~lrp_faces.models.load_torchvision_vgg16`), the VGG-Face port
        (:func:`~lrp_faces.models.load_vgg_face`) or a checkpoint of :func:`~lrp_faces.models.save_model`.
    """

    pretraining: str
    path: Path
    format: str

    def __post_init__(self):
        if not isinstance(self.pretraining, str) or not _NAME.match(self.pretraining):
            raise ZooError(f"a pretraining's name must be lower_snake_case, got {self.pretraining!r}")
        if self.format not in FORMATS:
            raise ZooError(f"base weights {self.pretraining!r}: format must be one of {list(FORMATS)}, got "
                           f"{self.format!r}")
        object.__setattr__(self, "path", Path(self.path))

    def load(self, num_classes: int | None = None, seed: int = 0) -> NormalizedVGG:
        """The base model, with a new last layer of ``num_classes`` outputs (seeded by ``seed``) where it differs.

        Raises
        ------
        WeightsError
            A file that cannot be read in this format.
        """
        if self.format == "torchvision":
            return load_torchvision_vgg16(self.path, num_classes=num_classes, seed=seed)
        if self.format == "vgg_face":
            return load_vgg_face(self.path, num_classes=num_classes, seed=seed)
        return load_model(self.path)  # finetune gives it a new, seeded head where the classes differ

    def check(self) -> None:
        """Read the file in its format; a :class:`ZooError` naming the format the file has where it is another."""
        try:
            self.load()
        except WeightsError as error:
            fits = []
            for other in FORMATS:
                if other != self.format:
                    try:
                        BaseWeights(self.pretraining, self.path, other).load()
                        fits.append(other)
                    except WeightsError:
                        pass
            hint = (f"; the file is in format {fits[0]!r}: set format = {json.dumps(fits[0])}" if fits else "")
            raise ZooError(f"base weights {self.pretraining!r} ({str(self.path)!r}) cannot be read as format "
                           f"{self.format!r}{hint}. {' '.join(str(error).split())}") from None

    def to_dict(self) -> dict[str, Any]:
        return {"pretraining": self.pretraining, "path": str(self.path), "format": self.format}


@dataclass(frozen=True)
class HeldOutSplit:
    """The held-out split of the faces: ``test_fraction`` of each identity's images, drawn from ``seed``.

    The models train on the rest and are scored on these (:func:`lrp_faces.faces.split_by_image`, which keeps every
    identity in both parts, as identity classification needs). ``by`` is ``"image"``, the only kind.
    """

    test_fraction: float = 0.2
    seed: int = 0
    by: str = "image"

    def __post_init__(self):
        if self.by != "image":
            raise ZooError(f"split.by: expected 'image', got {self.by!r}")
        fraction = self.test_fraction
        if not isinstance(fraction, Real) or isinstance(fraction, bool) or not 0 < fraction < 1:
            raise ZooError(f"split.test_fraction: expected a number in (0, 1), got {fraction!r}")
        object.__setattr__(self, "test_fraction", float(fraction))
        object.__setattr__(self, "seed", check_integer(self.seed, "split.seed", low=0))

    def apply(self, dataset) -> tuple[Any, Any]:
        """``(train, test)`` of ``dataset`` (see :func:`lrp_faces.faces.split_by_image`)."""
        return split_by_image(dataset, self.test_fraction, self.seed)

    @classmethod
    def from_table(cls, table: TomlTable) -> "HeldOutSplit":
        """The split in a TOML table ``{by = "image", test_fraction = 0.2, seed = 0}``; errors in ``table.error``."""
        by = table.get("by", str, "image", choices=("image",))
        fraction = table.get("test_fraction", float, 0.2)
        if not 0.0 < fraction < 1.0:
            raise table.error(f"{table.key('test_fraction')}: expected a float in (0, 1), got {fraction!r}")
        seed = table.get("seed", int, 0, low=0)
        table.finish()
        return cls(fraction, seed, by)

    def to_dict(self) -> dict[str, Any]:
        return {"by": self.by, "test_fraction": self.test_fraction, "seed": self.seed}


@dataclass(frozen=True)
class ZooRecipe:
    """What a zoo build trains: every pretraining (base weights) x task x seed, and how.

    Parameters
    ----------
    bases : sequence of BaseWeights
        One per pretraining.
    tasks : sequence of str
        The tasks, e.g. ``("gender", "identity")``; each is scored on the data set's label of that name (or the one
        the data set's ``label_names`` maps it to).
    seeds : sequence of int
        The seeds; each seeds the new last layer, the batch order, dropout and augmentation of its models.
    training : TrainingSettings
        The settings of every model.
    task_training : mapping of str to mapping
        Task -> settings that replace the defaults for that task's models, e.g. ``{"identity": {"epochs": 20}}``.
    model_training : mapping of (str, str) to mapping
        (pretraining, task) -> settings that replace the task's for those models (they take precedence).
    split : HeldOutSplit
        The held-out split the models are scored on.
    out : str or PathLike, optional
        The output folder named in the recipe's file (the command's default).

    Raises
    ------
    ZooError
        Repeated names, names that are not lower_snake_case, overrides of unknown tasks or pretraining x task pairs,
        or bad settings (naming the models they apply to).
    """

    bases: tuple[BaseWeights, ...]
    tasks: tuple[str, ...]
    seeds: tuple[int, ...]
    training: TrainingSettings = TrainingSettings()
    task_training: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model_training: Mapping[tuple[str, str], Mapping[str, Any]] = field(default_factory=dict)
    split: HeldOutSplit = HeldOutSplit()
    out: Path | None = None

    def __post_init__(self):
        bases, tasks = tuple(self.bases), tuple(self.tasks)
        if not bases or not all(isinstance(base, BaseWeights) for base in bases):
            raise ZooTypeError("ZooRecipe.bases must be a non-empty sequence of BaseWeights")
        names = [base.pretraining for base in bases]
        _check_names(names, "pretraining")
        if not tasks:
            raise ZooError("ZooRecipe.tasks must name at least one task")
        _check_names(tasks, "task")
        seeds = tuple(check_integer(seed, "a seed", low=0) for seed in self.seeds)
        if not seeds or len(set(seeds)) != len(seeds):
            raise ZooError(f"ZooRecipe.seeds must be distinct integers >= 0, at least one; got {list(self.seeds)}")
        for name, kind in (("training", TrainingSettings), ("split", HeldOutSplit)):
            if not isinstance(getattr(self, name), kind):
                raise ZooTypeError(f"ZooRecipe.{name} must be a {kind.__name__}, got "
                                   f"{type(getattr(self, name)).__name__}")
        clashes = sorted((set(names) & set(tasks)) | ((set(names) | set(tasks)) & set(SETTING_NAMES)))
        if clashes:
            raise ZooError(f"pretraining and task names must differ from each other and from the training settings "
                           f"({list(SETTING_NAMES)}), so that a [training.NAME] table is unambiguous; {clashes} "
                           "occur twice")
        object.__setattr__(self, "bases", bases)
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "seeds", seeds)
        object.__setattr__(self, "task_training", {task: dict(values) for task, values in self.task_training.items()})
        object.__setattr__(self, "model_training", {tuple(pair): dict(values)
                                                    for pair, values in self.model_training.items()})
        if self.out is not None:
            object.__setattr__(self, "out", Path(self.out))
        unknown = sorted(set(self.task_training) - set(tasks))
        if unknown:
            raise ZooError(f"training settings for unknown task(s) {unknown}; the tasks are {list(tasks)}")
        pairs = {(pretraining, task) for pretraining in names for task in tasks}
        unknown = sorted(set(self.model_training) - pairs)
        if unknown:
            raise ZooError(f"training settings for unknown pretraining x task pair(s) {unknown}; the pretrainings are "
                           f"{names} and the tasks {list(tasks)}")
        for pretraining in names:  # every model's settings are valid, or the error names the models
            for task in tasks:
                try:
                    self.settings(pretraining, task)
                except ZooError as error:
                    raise ZooError(f"models {pretraining}-{task}-seed*: {error}") from None

    @property
    def pretrainings(self) -> list[str]:
        return [base.pretraining for base in self.bases]

    def base(self, pretraining: str) -> BaseWeights:
        """The base weights of ``pretraining``."""
        for base in self.bases:
            if base.pretraining == pretraining:
                return base
        raise ZooError(f"no base weights for pretraining {pretraining!r}; the recipe has {self.pretrainings}")

    def settings(self, pretraining: str, task: str) -> TrainingSettings:
        """The training settings of the models ``pretraining`` x ``task``: defaults < task < pretraining x task."""
        return self.training.replace(**{**self.task_training.get(task, {}),
                                        **self.model_training.get((pretraining, task), {})})

    def specs(self) -> list[ModelSpec]:
        """Every model the recipe builds, sorted."""
        return sorted(ModelSpec(pretraining, task, seed) for pretraining in self.pretrainings for task in self.tasks
                      for seed in self.seeds)

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "ZooRecipe":
        """Read a recipe file (``ZOO.toml``); paths in it are relative to its folder. See :meth:`from_dict`."""
        path = Path(path)
        document = read_toml(path, "zoo recipe", ZooError)
        return cls.from_dict(document, base=path.parent, name=path.name)

    @classmethod
    def from_dict(cls, document: Mapping[str, Any], base: str | os.PathLike = ".",
                  name: str = "zoo recipe") -> "ZooRecipe":
        """Build a recipe from a parsed ``ZOO.toml``; relative paths are relative to ``base``.

        Tables (every key is checked; an error names ``name``, the table and the key)::

            [build]                       # tasks and seeds (required), out (default: none)
            tasks = ["gender", "identity"]
            seeds = [0, 1, 2]
            out = "zoo"

            [base.imagenet]               # one table per pretraining: path and format
            path = "weights/vgg16-397923af.pth"
            format = "torchvision"        # or "vgg_face", "lrp_faces"

            [dataset]                     # the faces (read by the command); the recipe reads only split
            split = {by = "image", test_fraction = 0.2, seed = 0}

            [training]                    # every model; then per task, then per pretraining x task
            epochs = 10
            [training.identity]
            epochs = 20
            [training.vggface.identity]
            lr = 3e-4

        ``[dataset]``'s other keys describe the faces (as a study file's ``[dataset]``); a ``split`` that is a string
        is CelebA's partition, and the recipe then uses the default held-out split.
        """
        base = Path(base)
        top = TomlTable(document, name, error=ZooError)
        build = top.table("build", required=True)
        tasks = build.array("tasks", str)
        seeds = build.array("seeds", int)
        out = build.get("out", str, None)
        build.finish()
        for key, values in (("tasks", tasks), ("seeds", seeds)):
            if not values:
                raise ZooError(f"{build.key(key)}: expected a non-empty array, got []")
            if len(set(values)) != len(values):
                raise ZooError(f"{build.key(key)}: expected distinct values, got {list(values)}")
        for index, task in enumerate(tasks):
            if not _NAME.match(task):
                raise ZooError(f"{build.key('tasks')}[{index}]: expected a lower_snake_case name, got {task!r}")
        for index, seed in enumerate(seeds):
            if seed < 0:
                raise ZooError(f"{build.key('seeds')}[{index}]: expected an integer >= 0, got {seed!r}")
        bases = _bases_from(top.table("base", required=True), base)
        split = _split_from(top, "dataset")
        training = top.table("training")
        defaults, task_training, model_training = _training_from(training, tasks, [b.pretraining for b in bases])
        top.finish()
        try:
            return cls(bases, tasks, seeds, defaults, task_training, model_training, split,
                       None if out is None else base / Path(out).expanduser())
        except ZooError as error:
            raise ZooError(f"{name}: {error}") from None


def _check_names(names: Iterable[str], what: str) -> None:
    names = list(names)
    for value in names:
        if not isinstance(value, str) or not _NAME.match(value):
            raise ZooError(f"a {what}'s name must be lower_snake_case, got {value!r}")
    repeated = sorted({value for value in names if names.count(value) > 1})
    if repeated:
        raise ZooError(f"{what} name(s) {repeated} occur more than once")


def _bases_from(table: TomlTable, folder: Path) -> tuple[BaseWeights, ...]:
    if not table.data:
        raise ZooError(f"{table.where}: expected one table [base.NAME] per pretraining, with path and format")
    bases = []
    for pretraining in table.data:
        entry = table.table(pretraining)
        if not _NAME.match(pretraining):
            raise ZooError(f"{entry.where}: a pretraining's name must be lower_snake_case, got {pretraining!r}")
        path = folder / Path(entry.get("path", str)).expanduser()
        weights_format = entry.get("format", str, choices=FORMATS)
        entry.finish()
        if not path.is_file():
            raise ZooError(f"{entry.key('path')}: file {str(path)!r} does not exist (download the base weights by "
                           "hand; nothing is fetched at run time)")
        bases.append(BaseWeights(pretraining, path, weights_format))
    table.finish()
    return tuple(bases)


def _split_from(top: TomlTable, key: str) -> HeldOutSplit:
    """The held-out split in ``[dataset].split``; the default where it is absent or names CelebA's partition."""
    top.known.append(key)
    dataset = top.data.get(key, {})
    if not isinstance(dataset, Mapping):
        raise ZooError(f"{top.key(key)}: expected a table, got {type(dataset).__name__} {dataset!r}")
    if not isinstance(dataset.get("split"), Mapping):
        return HeldOutSplit()
    return HeldOutSplit.from_table(TomlTable(dataset["split"], top.file, (key, "split"), ZooError))


def _settings_in(table: TomlTable) -> dict[str, Any]:
    """The training settings given in ``table`` (any of them), each checked and named in errors."""
    values = {}
    for name in SETTING_NAMES:
        if name in table.data:
            value = table.get(name, _SETTING_KINDS[name])
            problem = _setting_problem(name, value)
            if problem is not None:
                raise ZooError(f"{table.key(name)}: {problem}")
            values[name] = value
        else:
            table.known.append(name)
    return values


def _training_from(table: TomlTable, tasks: tuple[str, ...], pretrainings: list[str]):
    """``[training]``: the defaults, the per-task settings and the per pretraining x task settings."""
    clashes = sorted((set(tasks) | set(pretrainings)) & set(SETTING_NAMES))
    if clashes:
        raise ZooError(f"{table.file}: {clashes} cannot name a task or a pretraining: [training].NAME would be "
                       "ambiguous with a training setting")
    defaults = TrainingSettings(**_settings_in(table))
    task_training, model_training = {}, {}
    for key in table.data:
        if key in SETTING_NAMES:
            continue
        if key in tasks:
            sub = table.table(key)
            task_training[key] = _settings_in(sub)
            sub.finish()
        elif key in pretrainings:
            sub = table.table(key)
            for task in sub.data:
                if task not in tasks:
                    raise ZooError(f"{sub.key(task)}: expected a table [training.{key}.TASK] of a task of "
                                   f"[build].tasks {list(tasks)}, got {task!r}")
                pair = sub.table(task)
                model_training[(key, task)] = _settings_in(pair)
                pair.finish()
            sub.finish()
    table.known.extend(list(tasks) + list(pretrainings))
    if any(key not in table.known for key in table.data):
        unknown = sorted(key for key in table.data if key not in table.known)
        raise ZooError(f"{table.where}: unknown key(s) {unknown}; expected training settings {list(SETTING_NAMES)}, "
                       f"tables of tasks {list(tasks)} or tables of pretrainings {pretrainings}")
    return defaults, task_training, model_training
