"""A study declared in TOML: its models, data, method, masking and analyses (and, re-exported, its result files).

A study file parsed (:meth:`Study.from_toml` reads one from disk); the demo zoo is trained only when a step needs it:

>>> study = Study.from_dict({"zoo": {"demo": "quick"}, "dataset": {"kind": "demo"},
...                          "masking": {"fractions": [0.0, 0.1, 0.3], "fill": "blur"}})
>>> study.masking.config.fractions, study.masking.config.fill, study.masking.n_bootstrap
((0.0, 0.1, 0.3), 'blur', 1000)

Every key of the file is checked when it is read: a missing key, a value of the wrong type or an unknown key raises
:class:`StudyError` naming the file, the table and the key, and saying what was expected. The schema is in
``benchmarks/README.md`` and in the docstrings of the settings classes below.
"""
from __future__ import annotations

import dataclasses
import inspect
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import methods as method_registry
from ..faces import DATASET_KINDS, DATASET_SETTINGS
from ..faces.datasets import CELEBA_DISJOINT, CELEBA_PARTITIONS
from ..masking import PRECISIONS, MaskingConfig, MaskingError, MaskingTypeError
from ..zoo import DemoSettings, HeldOutSplit, ModelSpec, Zoo, ZooError, demo_zoo
from ..toml_tables import TomlTable, read_toml
from .compute import ComputeSettings
from ._toml import StudyError, study_table, built, check_params
from ..netcdf import plain as _plain
from .results import STEP_ATTR, read_result, result_attrs, write_result

__all__ = ["Study", "StudyError", "ZooSettings", "DatasetSettings", "AttributionSettings",
           "MaskingSettings", "AnalysisSettings", "ANALYSES", "DATASET_KINDS", "DATASET_SETTINGS", "DEMO_ZOOS",
           "write_result", "read_result", "result_attrs", "STEP_ATTR"]

ANALYSES = ("similarity", "regions", "methods", "rsa")
"""The analyses of a study, in the order they run; each writes ``<name>.nc``."""
SPLIT_TABLE = 'a table {by = "image", test_fraction = 0.2, seed = 0}'
DEMO_ZOOS = {"default": DemoSettings, "quick": DemoSettings.quick}
LABELS = ("identity", "gender")
MIN_IMAGE_SIZE = 32
"""The smallest image side a VGG-16 takes: its five 2 x 2 max-pools halve it five times."""
SCORES = ("output", "probability")


def _method_init(name: str) -> Callable:
    """The constructor of the registered method ``name``, whose keyword arguments are its parameters."""
    return type(method_registry.get(name)).__init__


def _checked_method(name: str, params: Mapping[str, Any], where: str):
    """The registered method ``name`` made with ``params``; the method's own checks of them as a :class:`StudyError`
    naming ``where``."""
    try:
        return method_registry.get(name, **params)
    except (ValueError, TypeError) as error:  # a parameter's value out of its range, or of the wrong type
        raise StudyError(f"{where}: {error}") from None


# ------------------------------------------------------------------------------------------------------ settings
@dataclass(frozen=True)
class ZooSettings:
    """``[zoo]``: the offline demo zoo (``demo = "default"`` or ``"quick"``), or models from files.

    Files: ``image_size`` and ``[[zoo.models]]`` with ``pretraining``, ``task``, ``seed``, ``path`` (relative to the
    study file), ``format`` (``lrp_faces``, ``torchvision`` or ``vgg_face``) and ``num_classes``; see
    :meth:`lrp_faces.zoo.Zoo.from_toml`. The demo zoo is trained on first use and cached in ``cache_dir`` (default
    :func:`lrp_faces.zoo.default_cache_dir`).
    """

    demo: str | None = None
    models: Zoo | None = None
    cache_dir: Path | None = None

    def __post_init__(self):
        if (self.demo is None) == (self.models is None):
            raise StudyError("[zoo]: give either demo = \"default\" | \"quick\" or [[zoo.models]], not both or neither")
        if self.demo is not None and self.demo not in DEMO_ZOOS:
            raise StudyError(f"[zoo].demo: expected one of {list(DEMO_ZOOS)}, got {self.demo!r}")

    @property
    def demo_settings(self) -> DemoSettings | None:
        return DEMO_ZOOS[self.demo]() if self.demo is not None else None

    @property
    def image_size(self) -> int | None:
        return self.demo_settings.image_size if self.demo is not None else self.models.image_size

    def build(self, progress: bool = True) -> Zoo:
        """The zoo: loaded from its files, or the demo zoo trained (first time) or loaded from the cache."""
        if self.models is not None:
            return self.models
        return demo_zoo(self.demo_settings, cache_dir=self.cache_dir, progress=progress)

    def to_dict(self) -> dict:
        if self.demo is not None:
            return {"demo": self.demo, "demo_key": self.demo_settings.key(),
                    "demo_settings": _plain(self.demo_settings),
                    "cache_dir": None if self.cache_dir is None else str(self.cache_dir)}
        return {"image_size": self.models.image_size, "models": [
            {**spec.to_dict(), "path": str(entry.path), "format": entry.format, "num_classes": entry.num_classes}
            for spec, entry in sorted(self.models.entries.items())]}

    def fingerprint(self) -> dict:
        """What identifies the models: the demo's settings key, or each file's path, format and modification."""
        if self.demo is not None:
            return {"demo_key": self.demo_settings.key()}
        models = []
        for spec, entry in sorted(self.models.entries.items()):
            stat = entry.path.stat() if entry.path.exists() else None
            models.append([spec.name, str(entry.path.resolve()), entry.format, entry.num_classes,
                           None if stat is None else [stat.st_size, stat.st_mtime_ns]])
        return {"models": models}

    @classmethod
    def from_table(cls, table: TomlTable, base: Path) -> "ZooSettings":
        data = dict(table.data)
        if "demo" in data:
            demo = table.get("demo", str, choices=tuple(DEMO_ZOOS))
            cache = table.get("cache_dir", str, None)
            table.finish()
            return cls(demo=demo, cache_dir=None if cache is None else (base / Path(cache).expanduser()))
        if "cache_dir" in data:
            raise StudyError(f"{table.key('cache_dir')}: applies to the demo zoo only (demo = \"default\" | "
                             f"\"quick\")")
        try:
            models = Zoo.from_dict(data, base=base, where=table.where)
        except ZooError as error:
            raise StudyError(str(error)) from None
        return cls(models=models)


def _read_split(table: TomlTable, kind: str) -> str | HeldOutSplit | None:
    """``[dataset].split``: a held-out split (a table, any kind but the demo), or one of CelebA's partitions."""
    value = table.data.get("split")
    if value is None:
        table.known.append("split")
        return None
    if kind == "celeba" and isinstance(value, str):
        return table.get("split", str, choices=tuple(CELEBA_PARTITIONS))
    if not isinstance(value, Mapping):
        partitions = f" or one of CelebA's partitions {list(CELEBA_PARTITIONS)}" if kind == "celeba" else ""
        raise StudyError(f"{table.key('split')}: expected {SPLIT_TABLE}{partitions}, got {type(value).__name__} "
                         f"{value!r}")
    return HeldOutSplit.from_table(table.table("split"))


@dataclass(frozen=True)
class DatasetSettings:
    """``[dataset]``: the images explained and their labels.

    ``kind`` is ``demo`` (the demo zoo's held-out study faces), ``synthetic`` (``identities``,
    ``images_per_identity``, ``seed``, ``nuisance``), ``manifest`` (``path`` to a CSV ``path,identity,gender``,
    optional ``image_root``), ``celeba`` (``path`` to the CelebA root) or ``folders`` (``path`` to one folder per
    identity); :data:`DATASET_SETTINGS` lists the keys of each kind. ``image_size`` defaults to the zoo's;
    ``split = {by = "image", test_fraction = 0.2, seed = 0}`` explains the test part of a held-out split
    (:class:`lrp_faces.zoo.HeldOutSplit`, the split a zoo build holds out; for CelebA, ``split`` may instead name an
    official partition, ``"train"``, ``"valid"`` or ``"test"``, whose identities are disjoint: identity labels are
    refused on ``"valid"`` and ``"test"``); ``max_images`` keeps that many images, evenly spaced;
    ``[dataset.labels]`` maps a model task to the label it is scored on (``identity`` or ``gender``; default: the
    task's own name).
    """

    kind: str = "demo"
    path: Path | None = None
    image_root: Path | None = None
    split: str | HeldOutSplit | None = None
    image_size: int | None = None
    identities: int = 10
    images_per_identity: int = 8
    seed: int = 0
    nuisance: float = 1.0
    max_images: int | None = None
    on_error: str = "raise"
    check: str = "verify"
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        """Whether the images are synthetic faces, with ground-truth regions and generative parameters."""
        return self.kind in ("demo", "synthetic")

    def to_dict(self) -> dict:
        """The settings that apply to the dataset's kind (:data:`DATASET_SETTINGS`), as plain data."""
        return {key: value for key, value in _plain(self).items() if key in DATASET_SETTINGS[self.kind]}

    def fingerprint(self) -> dict:
        """Every setting, those of other kinds at their defaults: what the methods step records about its images
        (the same record as before :meth:`to_dict` held only the kind's settings, so earlier results stay valid)."""
        return _plain(self)

    @classmethod
    def from_table(cls, table: TomlTable, base: Path) -> "DatasetSettings":
        kind = table.get("kind", str, choices=DATASET_KINDS)
        applies = DATASET_SETTINGS[kind]
        readers = {
            "identities": lambda key: table.get(key, int, 10, low=1),
            "images_per_identity": lambda key: table.get(key, int, 8, low=1),
            "seed": lambda key: table.get(key, int, 0, low=0),
            "nuisance": lambda key: table.get(key, float, 1.0),
            "path": lambda key: base / Path(table.get(key, str)).expanduser(),
            "image_root": lambda key: _optional_path(base, table.get(key, str, None)),
            "split": lambda key: _read_split(table, kind),
            "image_size": lambda key: table.get(key, int, None, low=MIN_IMAGE_SIZE),
            "max_images": lambda key: table.get(key, int, None, low=2),
            "on_error": lambda key: table.get(key, str, "raise", choices=("raise", "skip")),
            "check": lambda key: table.get(key, str, "verify", choices=("verify", "load", "exists")),
        }
        options: dict[str, Any] = {key: reader(key) for key, reader in readers.items() if key in applies}
        if "path" in options and not options["path"].exists():
            raise StudyError(f"{table.key('path')}: {str(options['path'])!r} does not exist")
        labels = table.table("labels")
        for task in labels.data:
            labels.get(task, str, choices=LABELS)
        labels.finish()
        table.finish()
        return cls(kind=kind, labels=dict(labels.data), **options)


def _optional_path(base: Path, value: str | None) -> Path | None:
    return None if value is None else base / Path(value).expanduser()


@dataclass(frozen=True)
class AttributionSettings:
    """``[attribution]``: ``method`` (see ``lrp-faces methods``), ``batch_size``, ``contrastive`` and the method's
    parameters in ``[attribution.params]``."""

    method: str = "epsilon_gamma_box"
    params: Mapping[str, Any] = field(default_factory=dict)
    batch_size: int = 16
    contrastive: bool = True

    def __post_init__(self):
        _checked_method(self.method, self.params, "[attribution]")

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_table(cls, table: TomlTable) -> "AttributionSettings":
        method = table.get("method", str, "epsilon_gamma_box", choices=tuple(method_registry.names()))
        params = table.table("params")
        checked = check_params(_method_init(method), params.data, params.where,
                               reserved=("self",))
        options = (method, checked, table.get("batch_size", int, 16, low=1), table.get("contrastive", bool, True))
        table.finish()
        return built(table, cls, *options)


@dataclass(frozen=True)
class MaskingSettings:
    """``[masking]``: the generalisation benchmark (:func:`lrp_faces.masking.generalization`).

    Every field of :class:`~lrp_faces.masking.MaskingConfig` is a key of the table (``fractions``, ``order``:
    ``morf`` | ``lerf``, ``fill``, ``patch``, ``mode``, ``seed``, ``fill_value``, ``blur_sigma``, ``road_noise``),
    held in :attr:`config`. The other keys are the study's: ``score`` (``output`` | ``probability``),
    ``n_bootstrap``, ``n_permutations``, ``confidence``, ``batch_size``, ``precision`` (``float32`` |
    ``bfloat16``: the number format of the masking's forward passes, never of LRP); ``max_images`` uses that many
    of the cube's images, evenly spaced (default: all).
    """

    config: MaskingConfig = field(default_factory=MaskingConfig)
    score: str = "output"
    n_bootstrap: int = 1000
    n_permutations: int = 1000
    confidence: float = 0.95
    batch_size: int | None = None
    precision: str = "float32"
    max_images: int | None = None

    def __post_init__(self):
        if not isinstance(self.config, MaskingConfig):
            raise StudyError(f"[masking]: config must be a MaskingConfig, got {type(self.config).__name__}")
        if self.config.order == "random":
            raise StudyError("[masking].order: expected 'morf' or 'lerf' (the random order is always the baseline)")
        if not any(value > 0 for value in self.config.fractions):
            raise StudyError(f"[masking].fractions: expected at least one fraction > 0, got "
                             f"{list(self.config.fractions)}")
        if self.score not in SCORES:
            raise StudyError(f"[masking].score: expected one of {list(SCORES)}, got {self.score!r}")
        if not 0 < self.confidence < 1:
            raise StudyError(f"[masking].confidence: expected a float in (0, 1), got {self.confidence!r}")

    def study_settings(self) -> dict:
        """The settings that are not the config's: ``score``, ``n_bootstrap``, ..., ``max_images``."""
        return {item.name: getattr(self, item.name) for item in dataclasses.fields(self) if item.name != "config"}

    def arguments(self) -> dict:
        """Keyword arguments of :func:`lrp_faces.masking.generalization`: the config's fields and the study's
        settings but ``max_images``."""
        settings = self.study_settings()
        del settings["max_images"]
        return {**self.config.to_dict(), **settings}

    def to_dict(self) -> dict:
        """The settings as one flat table, as in the study file."""
        return _plain({**self.config.to_dict(), **self.study_settings()})

    @classmethod
    def from_table(cls, table: TomlTable) -> "MaskingSettings":
        config = _masking_config(table)
        options = {
            "score": table.get("score", str, "output", choices=SCORES),
            "n_bootstrap": table.get("n_bootstrap", int, 1000, low=0),
            "n_permutations": table.get("n_permutations", int, 1000, low=0),
            "confidence": table.get("confidence", float, 0.95),
            "batch_size": table.get("batch_size", int, None, low=1),
            "precision": table.get("precision", str, "float32", choices=PRECISIONS),
            "max_images": table.get("max_images", int, None, low=2),
        }
        table.finish()
        return built(table, cls, config, **options)


def _masking_config(table: TomlTable) -> MaskingConfig:
    """The :class:`~lrp_faces.masking.MaskingConfig` of the table's keys that are its fields.

    Each key is read by its field's type and checked alone, so that an error names it, then all together.
    """
    hints = typing.get_type_hints(MaskingConfig)
    values = {}
    for name in (item.name for item in dataclasses.fields(MaskingConfig)):
        if name not in table.data:
            table.known.append(name)
            continue
        values[name] = _typed_value(table, name, hints[name])
        try:
            MaskingConfig(**{name: values[name]})
        except (MaskingError, MaskingTypeError) as error:
            message = str(error).removeprefix(f"{name} ")
            raise StudyError(f"{table.key(name)}: {message}") from None
    try:
        return MaskingConfig(**values)
    except (MaskingError, MaskingTypeError) as error:
        raise StudyError(f"{table.where}: {error}") from None


def _typed_value(table: TomlTable, key: str, hint: Any) -> Any:
    """The value of ``key`` read as the TOML kind of a type hint: ``tuple[X, ...]`` an array of X, ``X | None`` an X,
    ``Any`` as it is."""
    if hint is Any:
        table.known.append(key)
        return table.data[key]
    arguments = tuple(argument for argument in typing.get_args(hint) if argument is not type(None))
    if typing.get_origin(hint) is tuple:
        return table.array(key, arguments[0])
    if arguments:  # a union such as float | None
        return table.get(key, arguments[0] if len(arguments) == 1 else arguments)
    return table.get(key, hint)


@dataclass(frozen=True)
class AnalysisSettings:
    """``[analysis]``: which analyses run (``run``, default all of :data:`ANALYSES`) and their settings.

    ``[analysis.similarity]``, ``[analysis.regions]``, ``[analysis.methods]`` and ``[analysis.rsa]`` hold keyword
    arguments of :func:`lrp_faces.analysis.similarity`, :func:`~lrp_faces.analysis.region_relevance`,
    :func:`~lrp_faces.analysis.method_comparison` and :func:`~lrp_faces.analysis.compare_with_humans` (with
    :func:`~lrp_faces.analysis.model_rdms`), checked against their signatures. ``[analysis.rsa]`` also takes
    ``human_rdm``: a file for :func:`~lrp_faces.analysis.load_human_rdm`, or ``"synthetic"`` for the parameter-space
    stand-in of synthetic faces (the default for synthetic data). ``[analysis.methods]`` takes ``max_images`` (that
    many images, evenly spaced) and ``method_params``, a table of parameters per method name.
    """

    run: tuple[str, ...] = ANALYSES
    similarity: Mapping[str, Any] = field(default_factory=dict)
    regions: Mapping[str, Any] = field(default_factory=dict)
    methods: Mapping[str, Any] = field(default_factory=dict)
    rsa: Mapping[str, Any] = field(default_factory=dict)
    human_rdm: str | Path | None = None

    def to_dict(self) -> dict:
        return _plain(self)

    @classmethod
    def from_table(cls, table: TomlTable, base: Path, dataset: DatasetSettings) -> "AnalysisSettings":
        run = table.array("run", str, ANALYSES, choices=ANALYSES)
        if len(set(run)) != len(run):
            raise StudyError(f"{table.key('run')}: expected distinct names, got {list(run)}")
        options: dict[str, Any] = {"run": tuple(name for name in ANALYSES if name in run)}
        for name in ANALYSES:
            options[name] = dict(table.table(name).data)
        table.finish()
        rsa = dict(options["rsa"])
        human = rsa.pop("human_rdm", "synthetic" if dataset.synthetic else None)
        where = f"{table.file}: [analysis.rsa]"
        if human is not None and not isinstance(human, str):
            raise StudyError(f"{where}.human_rdm: expected str (a file, or \"synthetic\"), got "
                             f"{type(human).__name__} {human!r}")
        if human == "synthetic" and not dataset.synthetic:
            raise StudyError(f"{where}.human_rdm: \"synthetic\" (parameter-space distances) needs synthetic faces "
                             f"([dataset].kind \"demo\" or \"synthetic\"); give the path of a human RDM file")
        if human not in (None, "synthetic"):
            human = base / Path(human).expanduser()
            if not human.is_file():
                raise StudyError(f"{where}.human_rdm: file {str(human)!r} does not exist")
        if "rsa" in options["run"] and human is None:
            raise StudyError(f"{where}: missing key 'human_rdm' (str: the file of human dissimilarities); "
                             f"or leave \"rsa\" out of [analysis].run")
        options["rsa"], options["human_rdm"] = rsa, human
        settings = cls(**options)
        settings.check(table.file)
        return settings

    def check(self, file: str = "study") -> None:
        """Check every key against the analysis functions' signatures and the types of their defaults."""
        from .. import analysis

        def where(*names: str) -> str:
            return f"{file}: [{'.'.join(('analysis',) + names)}]"

        check_params(analysis.similarity, self.similarity, where("similarity"), ("cube", "progress"))
        check_params(analysis.region_relevance, self.regions, where("regions"),
                     ("cube", "regions", "region_names", "progress"))
        own = ("max_images", "models", "method_params")
        check_params(analysis.method_comparison, {key: value for key, value in self.methods.items()
                                                  if key not in own},
                     where("methods"), ("zoo", "dataset", "masks", "device", "block_size", "client", "threads",
                                        "units_dir", "progress") + own)
        table = study_table(self.methods, file, ("analysis", "methods"))
        table.known.extend(key for key in self.methods if key not in own)
        table.get("max_images", int, None, low=2)
        table.array("methods", str, (), choices=tuple(method_registry.names()))
        for index, model in enumerate(table.array("models", str, ())):
            try:
                ModelSpec.from_id(model)
            except ZooError as error:
                raise StudyError(f"{table.key('models')}[{index}]: {error}") from None
        parameters = table.table("method_params")
        for name in parameters.data:
            if name not in method_registry.names():
                raise StudyError(f"{parameters.where}: unknown method {name!r}; known methods are "
                                 f"{method_registry.names()}")
            checked = check_params(_method_init(name), parameters.table(name).data,
                                   where("methods", "method_params", name), ("self",))
            _checked_method(name, checked, where("methods", "method_params", name))
        rsa_functions = {analysis.model_rdms: ("cube", "zoo", "dataset", "device", "progress"),
                         analysis.compare_with_humans: ("model_rdms", "human_rdm", "human_source", "progress")}
        accepted = {name for function, reserved in rsa_functions.items()
                    for name in inspect.signature(function).parameters if name not in reserved}
        for key, value in self.rsa.items():
            owner = next((function for function, reserved in rsa_functions.items()
                          if key in inspect.signature(function).parameters and key not in reserved), None)
            if owner is None:
                raise StudyError(f"{where('rsa')}: unknown key {key!r}; expected keys are "
                                 f"{sorted(accepted | {'human_rdm'})}")
            check_params(owner, {key: value}, where("rsa"), rsa_functions[owner])

    def arguments(self, name: str, function: Callable) -> dict:
        """The settings of analysis ``name`` that ``function`` takes, arrays as tuples."""
        accepted = inspect.signature(function).parameters
        return {key: tuple(value) if isinstance(value, list) else value
                for key, value in getattr(self, name).items() if key in accepted}


@dataclass(frozen=True)
class Study:
    """A whole study: ``[study]`` (``name``, ``out``), ``[zoo]``, ``[dataset]``, ``[attribution]``, ``[masking]``,
    ``[analysis]``, ``[report]`` (``enabled``) and ``[compute]`` (where it runs, see
    :class:`~lrp_faces.cli.compute.ComputeSettings`). Read with :meth:`from_toml`; the demo is
    :func:`lrp_faces.cli.demo.demo_study`."""

    zoo: ZooSettings
    dataset: DatasetSettings = DatasetSettings()
    attribution: AttributionSettings = AttributionSettings()
    masking: MaskingSettings = MaskingSettings()
    analysis: AnalysisSettings = AnalysisSettings()
    report: bool = True
    name: str = "study"
    out: Path | None = None
    source: Path | None = None
    compute: ComputeSettings = ComputeSettings()

    def __post_init__(self):
        if self.dataset.kind == "demo" and self.zoo.demo is None:
            raise StudyError("[dataset].kind: \"demo\" (the demo's study faces) goes with the demo zoo "
                             "([zoo] demo = \"default\" | \"quick\"); use \"synthetic\" or real data for other zoos")
        partition = self.dataset.split
        if self.dataset.kind == "celeba" and isinstance(partition, str) and partition != "train":
            specs = self.zoo.demo_settings.specs() if self.zoo.demo is not None else self.zoo.models.specs
            tasks = {spec.task for spec in specs}
            scored_on = sorted(task for task in tasks if self.dataset.labels.get(task, task) == "identity")
            if scored_on:
                raise StudyError(f"[dataset].split: the models of task(s) {scored_on} are scored on identity labels, "
                                 f"which are refused on CelebA's {partition!r} partition. "
                                 + CELEBA_DISJOINT.format(split=repr(partition)))

    @property
    def image_size(self) -> int:
        """Side of the images, in pixels: the dataset's, else the zoo's, else 224."""
        return self.dataset.image_size or self.zoo.image_size or 224

    @property
    def threads(self) -> int | None:
        """Torch threads per unit: ``[compute].threads``, else 1 for the demo zoo (whose small models run fastest
        single-threaded), else None: torch's own setting (in-process) or the worker's (on a cluster)."""
        if self.compute.threads is not None:
            return self.compute.threads
        return 1 if self.zoo.demo is not None else None

    def to_dict(self) -> dict:
        """The resolved settings, as plain JSON-able data."""
        return {"name": self.name, "source": None if self.source is None else str(self.source),
                "image_size": self.image_size, "zoo": self.zoo.to_dict(), "dataset": self.dataset.to_dict(),
                "attribution": self.attribution.to_dict(), "masking": self.masking.to_dict(),
                "analysis": self.analysis.to_dict(), "report": self.report, "compute": self.compute.to_dict()}

    @classmethod
    def from_toml(cls, path: str | os.PathLike) -> "Study":
        """Read and check a study file; relative paths in it are relative to its folder."""
        path = Path(path)
        document = read_toml(path, "study file", StudyError)
        return cls.from_dict(document, base=path.parent, name=path.name, source=path)

    @classmethod
    def from_dict(cls, document: Mapping, base: str | os.PathLike = ".", name: str = "study",
                  source: Path | None = None) -> "Study":
        """Build a study from the parsed TOML document; ``name`` prefixes error messages."""
        base = Path(base)
        top = study_table(document, name)
        header = top.table("study")
        study_name = header.get("name", str, Path(name).stem)
        out = header.get("out", str, None)
        header.finish()
        if "zoo" not in document:
            raise StudyError(f"{name}: missing table [zoo] (demo = \"default\" | \"quick\", or [[zoo.models]])")
        zoo = ZooSettings.from_table(top.table("zoo"), base)
        dataset = DatasetSettings.from_table(top.table("dataset", required=True), base)
        attribution = AttributionSettings.from_table(top.table("attribution"))
        masking = MaskingSettings.from_table(top.table("masking"))
        analysis = AnalysisSettings.from_table(top.table("analysis"), base, dataset)
        report = top.table("report")
        enabled = report.get("enabled", bool, True)
        report.finish()
        compute = ComputeSettings.from_table(top.table("compute"))
        top.finish()
        try:
            return cls(zoo, dataset, attribution, masking, analysis, enabled, study_name,
                       None if out is None else base / Path(out).expanduser(), source, compute)
        except StudyError as error:
            raise StudyError(f"{name}: {error}") from None
