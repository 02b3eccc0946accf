"""Model specs and zoos of models, declared in a study TOML or trained for the demo."""
from __future__ import annotations

import dataclasses
import json
import os
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..models import NormalizedVGG, load_model, load_torchvision_vgg16, load_vgg_face
from ..errors import LRPFacesError

if TYPE_CHECKING:
    from .demo import DemoSettings


FORMATS = ("lrp_faces", "torchvision", "vgg_face")
MODEL_DIMS = ("pretraining", "task", "seed")
"""The dims that index models in cubes and results: the fields of :class:`ModelSpec`, in order."""
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SPEC_NAME = re.compile(r"^([a-z][a-z0-9_]*)-([a-z][a-z0-9_]*)-seed([0-9]+)$")


class ZooError(LRPFacesError, ValueError):
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
        model.card = model.card.replace(spec=self.spec.to_dict())
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
        from . import demo

        settings = demo.DemoSettings() if settings is None else settings
        if not isinstance(settings, demo.DemoSettings):
            raise TypeError(f"settings must be a DemoSettings, got {type(settings).__name__}")
        if workers is not None and (not _is_int(workers) or workers < 1):
            raise ZooError(f"workers must be a positive integer or None, got {workers!r}")
        key = settings.key()
        folder = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / f"demo-{key}"
        entries = [ZooEntry(spec, folder / f"{spec.name}.pt") for spec in settings.specs()]
        missing = []
        for entry in entries:  # a loop, not a comprehension: the warning's stacklevel points at the caller
            if not demo._usable_checkpoint(entry.path, entry.spec.to_dict(), key):
                missing.append(entry.spec)
        if missing:
            folder.mkdir(parents=True, exist_ok=True)
            _write_text(folder / "settings.json",
                        json.dumps({"key": key, "settings": dataclasses.asdict(settings)}, indent=1))
            demo._train_demo_zoo(settings, folder, missing, progress, workers)
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
