"""Model specs and zoos of models declared in a study TOML: which model is which file, checked against the file."""
from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..models import (NormalizedVGG, WeightsError, load_model, load_torchvision_vgg16, load_vgg_face,
                      read_checkpoint_info)
from ..toml_tables import TomlTable, kind_name, read_toml
from .checks import UnknownModelError, ZooError, ZooTypeError, check_integer

FORMATS = ("lrp_faces", "torchvision", "vgg_face")
MODEL_DIMS = ("pretraining", "task", "seed")
"""The dims that index models in cubes and results: the fields of :class:`ModelSpec`, in order."""
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SPEC_NAME = re.compile(r"^([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)-seed([0-9]+)$")


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
        object.__setattr__(self, "seed", check_integer(self.seed, "ModelSpec.seed", low=0))

    @property
    def name(self) -> str:
        """A file-name-safe label, e.g. ``"faces-gender-seed0"`` (see :meth:`parse`)."""
        return f"{self.pretraining}-{self.task}-seed{self.seed}"

    @property
    def id(self) -> str:  # noqa: A003 - the model's id in results, as ``name`` is its file label
        """The model's id in analysis and masking results, e.g. ``"faces/gender/0"`` (see :meth:`from_id`)."""
        return f"{self.pretraining}/{self.task}/{self.seed}"

    @classmethod
    def from_id(cls, text: str) -> "ModelSpec":
        """Inverse of :attr:`id`: ``"faces/gender/0"`` -> ``ModelSpec("faces", "gender", 0)``."""
        parts = text.split("/") if isinstance(text, str) else []
        if len(parts) != 3 or not parts[2].isdigit():
            raise ZooError(f"a model id looks like 'faces/gender/0' (pretraining/task/seed), got {text!r}")
        return cls(parts[0], parts[1], int(parts[2]))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ModelSpec":
        """Inverse of :meth:`to_dict`: a mapping with exactly ``pretraining``, ``task`` and ``seed``."""
        if not isinstance(data, Mapping):
            raise ZooError(f"a model spec must be a mapping with pretraining, task and seed, got {type(data).__name__}")
        missing = [key for key in MODEL_DIMS if key not in data]
        unknown = sorted(set(data) - set(MODEL_DIMS), key=str)
        if missing or unknown:
            raise ZooError(f"a model spec needs exactly the keys {list(MODEL_DIMS)}; missing {missing}, unknown "
                           f"{unknown}")
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
            raise ZooTypeError(f"ZooEntry.spec must be a ModelSpec, got {type(self.spec).__name__}")
        if self.format not in FORMATS:
            raise ZooError(f"model {self.spec}: format must be one of {FORMATS}, got {self.format!r}")
        if self.num_classes is not None:
            if self.format == "lrp_faces":
                raise ZooError(f"model {self.spec}: num_classes applies to 'torchvision' and 'vgg_face' weights "
                               f"only; an lrp_faces checkpoint records its own classes")
            object.__setattr__(self, "num_classes", check_integer(self.num_classes, f"model {self.spec}: num_classes",
                                                                  low=1))
        object.__setattr__(self, "path", Path(self.path))

    def load(self) -> NormalizedVGG:
        """Load the model from its file, in evaluation mode, with ``model.spec`` set.

        Raises
        ------
        ZooError
            An lrp_faces checkpoint that records another spec than the declared one (the message names the file,
            the declared and the recorded spec).
        """
        if self.format == "lrp_faces":
            model = load_model(self.path)
            self._raise_for(self._spec_problems(model.card.spec))
        elif self.format == "torchvision":
            model = load_torchvision_vgg16(self.path, num_classes=self.num_classes, seed=self.spec.seed)
        else:
            model = load_vgg_face(self.path, num_classes=self.num_classes, seed=self.spec.seed)
        model.card = model.card.replace(spec=self.spec.to_dict())
        return model.eval()

    def check(self, classes: Sequence[str] | int | None = None) -> None:
        """Check, without reading the weights, that the file holds the declared model.

        The file must exist. An lrp_faces checkpoint must record the declared spec (where it records one). With
        ``classes``, the model must have one output per class: the checkpoint's head, or ``num_classes`` of
        ``torchvision`` and ``vgg_face`` weights where it is given; class names recorded in a checkpoint must be
        the given names, in order.

        Parameters
        ----------
        classes : sequence of str or int, optional
            The classes that the study scores this model's task on: their names, in label order, or their count.

        Raises
        ------
        ZooError
            Naming the model, the file, and what was declared and what was found.
        WeightsError
            An unreadable lrp_faces checkpoint.
        """
        names, count = _classes_argument(classes)
        if not self.path.is_file():
            self._raise_for([f"file {str(self.path)!r} does not exist"])
        if self.format != "lrp_faces":
            self._raise_for(_class_problems(self.spec.task, names, count, self.num_classes, None))
            return
        info = read_checkpoint_info(self.path)
        outputs = info["architecture"].get("num_classes")
        self._raise_for(self._spec_problems(info.get("spec"))
                        + _class_problems(self.spec.task, names, count, outputs, info.get("class_names")))

    def _spec_problems(self, recorded: Mapping[str, Any] | None) -> list[str]:
        """How the spec a checkpoint records differs from the declared one (nothing if it records none)."""
        if not isinstance(recorded, Mapping):
            return []
        differing = [f"{field} {getattr(self.spec, field)!r} declared, {recorded[field]!r} found"
                     for field in MODEL_DIMS if field in recorded and recorded[field] != getattr(self.spec, field)]
        if not differing:
            return []
        try:
            found = ModelSpec.from_dict(recorded).name
        except ZooError:
            found = dict(recorded)
        return [f"the checkpoint was saved as model {found} ({', '.join(differing)}); point path at the checkpoint "
                f"of {self.spec}, or declare the model the file holds"]

    def _raise_for(self, problems: list[str]) -> None:
        if problems:
            raise ZooError(f"model {self.spec} ({str(self.path)!r}): {'; '.join(problems)}")


def _classes_argument(classes: Sequence[str] | int | None) -> tuple[tuple[str, ...] | None, int | None]:
    """``classes`` as (names or None, count or None)."""
    if classes is None:
        return None, None
    if isinstance(classes, Sequence) and not isinstance(classes, str):
        if not classes or not all(isinstance(name, str) for name in classes):
            raise ZooError(f"classes must be class names (a non-empty sequence of str) or a class count, got "
                           f"{classes!r}")
        return tuple(classes), len(classes)
    return None, check_integer(classes, "classes (a class count)", low=1)


def _class_problems(task: str, names: tuple[str, ...] | None, count: int | None, outputs: int | None,
                    recorded_names: Sequence[str] | None) -> list[str]:
    """How a model's outputs and recorded class names differ from the classes its task is scored on."""
    if count is None:
        return []
    expected = f"{count} classes" + ("" if names is None else f" {list(names)}")
    if outputs is not None and outputs != count:
        return [f"the model has {outputs} outputs, but task {task!r} is scored on {expected}"]
    if names is not None and recorded_names is not None and tuple(recorded_names) != names:
        return [f"the checkpoint's classes are {list(recorded_names)}, but task {task!r} is scored on {expected}"]
    return []


class Zoo(Mapping):
    """A set of models indexed by :class:`ModelSpec`; ``zoo[spec]`` loads the model from its file.

    Models are loaded on access and not kept, so a zoo of full-size VGG-16s costs no memory until used. Iteration
    (and :attr:`specs`) is in sorted spec order; ``spec in zoo``, ``len`` and ``==`` never load a model. A spec
    the zoo does not hold raises :class:`UnknownModelError` (a :class:`ZooError` and a ``KeyError``).

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
                raise ZooTypeError(f"a Zoo is built from ZooEntry objects, got {type(entry).__name__}")
            if entry.spec in self.entries:
                raise ZooError(f"model {entry.spec} is declared twice")
            self.entries[entry.spec] = entry
        if not self.entries:
            raise ZooError("a zoo needs at least one model")
        self.image_size = None if image_size is None else check_integer(image_size, "image_size", low=1)

    def __getitem__(self, spec: ModelSpec) -> NormalizedVGG:
        if spec not in self.entries:
            what = (f"model {spec!s}" if isinstance(spec, ModelSpec)
                    else f"{type(spec).__name__} {spec!r} (a zoo is indexed by ModelSpec)")
            raise UnknownModelError(f"no {what} in this zoo; it has {', '.join(map(str, self))}")
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
        """The sub-zoo of the models that match every given field; :class:`UnknownModelError` if none does."""
        wanted = {"pretraining": pretraining, "task": task, "seed": seed}
        entries = [entry for spec, entry in self.entries.items()
                   if all(value is None or getattr(spec, field) == value for field, value in wanted.items())]
        if not entries:
            given = ", ".join(f"{field}={value!r}" for field, value in wanted.items() if value is not None)
            raise UnknownModelError(f"no model in this zoo matches {given}; it has {', '.join(map(str, self))}")
        return Zoo(entries, self.image_size)

    def check(self, classes: Mapping[str, Sequence[str] | int] | None = None) -> None:
        """Check every model's file against its declaration without reading weights (see :meth:`ZooEntry.check`).

        Parameters
        ----------
        classes : mapping, optional
            Task -> the classes the study scores that task on (names in label order, or a count).

        Raises
        ------
        ZooError
            Listing every model whose file is missing, unreadable or not the declared model.
        """
        if classes is not None and not isinstance(classes, Mapping):
            raise ZooError(f"classes must map each task to its class names or count, got {type(classes).__name__}")
        problems = []
        for spec in self.specs:
            try:
                self.entries[spec].check(None if classes is None else classes.get(spec.task))
            except ZooError as error:
                problems.append(" ".join(str(error).split()))  # one line per model
            except WeightsError as error:
                problems.append(f"model {spec}: {' '.join(str(error).split())}")
        if problems:
            raise ZooError(f"{len(problems)} of the zoo's {len(self)} models do not match their declaration:\n  "
                           + "\n  ".join(problems))

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

        Files must exist; they are read only when a model is accessed (or by :meth:`check`). Errors
        (:class:`ZooError`) name the file, the entry and the key, and say what was expected.
        """
        path = Path(path)
        document = read_toml(path, "study file", ZooError)
        if table not in document:
            raise ZooError(f"{str(path)!r} has no [{table}] table (with [[{table}.models]] entries)")
        return cls.from_dict(document[table], base=path.parent, where=f"{path}: [{table}]")

    @classmethod
    def from_dict(cls, data: Any, base: str | os.PathLike = ".", where: str = "[zoo]") -> "Zoo":
        """Build a zoo from the parsed ``[zoo]`` table (see :meth:`from_toml`); paths are relative to ``base``.

        ``where`` names the table in errors, e.g. ``"study.toml: [zoo]"``.
        """
        table = TomlTable(data, where, error=ZooError)
        image_size = table.get("image_size", int, None, low=1)
        models = table.get("models", list, [])
        table.finish()
        if not models:
            raise ZooError(f"{table.key('models')}: expected a non-empty array of tables [[models]], got "
                           f"{'an empty array' if 'models' in data else 'none'}")
        entries, seen = [], {}
        for index, item in enumerate(models):
            entry = _entry_from_table(TomlTable(item, f"{table.key('models')}[{index}]", error=ZooError), Path(base))
            if entry.spec in seen:
                raise ZooError(f"{table.key('models')}[{index}]: model {entry.spec} is declared twice (also in "
                               f"models[{seen[entry.spec]}])")
            seen[entry.spec] = index
            entries.append(entry)
        return cls(entries, image_size)


_ENTRY_KEYS = {"pretraining": str, "task": str, "seed": int, "path": str, "format": str, "num_classes": int}
_REQUIRED_ENTRY_KEYS = ("pretraining", "task", "seed", "path")


def _entry_from_table(table: TomlTable, base: Path) -> ZooEntry:
    """One ``[[zoo.models]]`` table as a ZooEntry; unknown keys are reported before missing ones (a typo is both)."""
    values = {key: table.get(key, kind, None) for key, kind in _ENTRY_KEYS.items()}
    table.finish()
    for key in _REQUIRED_ENTRY_KEYS:
        if values[key] is None:
            raise ZooError(f"{table.where}: missing key {key!r} ({kind_name(_ENTRY_KEYS[key])})")
    try:
        spec = ModelSpec(values["pretraining"], values["task"], values["seed"])
    except ZooError as error:
        raise ZooError(f"{table.where}: {error}") from None
    file = base / Path(values["path"]).expanduser()
    if not file.is_file():
        raise ZooError(f"{table.key('path')}: file {str(file)!r} does not exist")
    try:
        return ZooEntry(spec, file, "lrp_faces" if values["format"] is None else values["format"],
                        values["num_classes"])
    except ZooError as error:
        raise ZooError(f"{table.where}: {error}") from None
