"""Running a study step by step into a results directory, resuming where a previous run stopped.

Two tiny (untrained) checkpoints, a study file that uses them on six synthetic faces, and its first two steps:

>>> import pathlib, tempfile
>>> import lrp_faces
>>> from lrp_faces.zoo import ModelSpec
>>> scratch = tempfile.TemporaryDirectory()
>>> folder = pathlib.Path(scratch.name)
>>> for task, classes in (("gender", 2), ("identity", 3)):
...     model = lrp_faces.vgg16(num_classes=classes, width=1 / 16, classifier_width=8, pool_size=1)
...     _ = lrp_faces.models.save_model(model, folder / f"{task}.pt", spec=ModelSpec("faces", task, 0))
>>> _ = (folder / "study.toml").write_text('''
... [zoo]
... image_size = 32
... models = [{pretraining = "faces", task = "gender", seed = 0, path = "gender.pt"},
...           {pretraining = "faces", task = "identity", seed = 0, path = "identity.pt"}]
... [dataset]
... kind = "synthetic"
... identities = 3
... images_per_identity = 2
... [masking]
... fractions = [0.0, 0.5]
... n_bootstrap = 10
... n_permutations = 10
... ''')
>>> run = StudyRun(Study.from_toml(folder / "study.toml"), folder / "results", progress=False, log=lambda line: None)
>>> run.attribute().relevance.sizes["image"]
6
>>> run.mask().name
'masking.nc'
>>> sorted(path.name for path in run.out.iterdir())
['cube', 'masking.nc', 'masking_lerf.nc', 'study.json']
>>> scratch.cleanup()

:meth:`StudyRun.all` runs every step (``lrp-faces run STUDY.toml`` from the command line); a rerun skips the steps
whose files hold the same settings.

Steps and their files: ``attribute`` -> ``cube/`` (resumed model by model by
:func:`lrp_faces.cube.compute`), ``mask`` -> ``masking.nc`` and ``masking_lerf.nc``, ``analyze`` ->
``similarity.nc``, ``regions.nc``, ``methods.nc``, ``rsa.nc``, ``report`` -> ``report/index.html``; ``study.json``
records the settings, the zoo, the versions and the timings. Each result file records its step's settings
(``lrp_faces_step``); a rerun skips a step whose file holds the same settings and recomputes it, saying why, when they
changed.
"""
from __future__ import annotations

import datetime
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from .. import cube as cubes
from .. import masking
from ..compute import UNITS_DIR
from ..errors import LRPFacesError
from ..files import versions, write_text_atomic
from ..faces import FaceDataset, FaceDataView, as_face_data, synthetic_faces
from ..zoo import HeldOutSplit, ModelSpec, default_cache_dir, demo_study_data, scored_labels
from .study import STEP_ATTR, DatasetSettings, Study, StudyError, result_attrs, write_result

__all__ = ["StudyRun", "RESULT_FILES", "StepError", "load_dataset", "read_faces", "evenly_spaced"]

RESULT_FILES = {"masking": "masking.nc", "masking_lerf": "masking_lerf.nc", "similarity": "similarity.nc",
                "regions": "regions.nc", "methods": "methods.nc", "rsa": "rsa.nc"}
CUBE_DIR = "cube"
STUDY_JSON = "study.json"


class StepError(StudyError):
    """A step that cannot run yet or at all, e.g. ``mask`` before the cube exists."""


def evenly_spaced(count: int, keep: int | None) -> np.ndarray:
    """Indices of ``keep`` of ``count`` items spread evenly from the first to the last (all if ``keep`` is None)."""
    if keep is None or keep >= count:
        return np.arange(count)
    return np.unique(np.round(np.linspace(0, count - 1, keep)).astype(np.int64))


def read_faces(settings: DatasetSettings, size: int, label: str = "identity"):
    """The faces of a ``[dataset]`` table of any kind but the demo, before any split or ``max_images``.

    Synthetic faces are generated; real ones are a :class:`lrp_faces.faces.FaceDataset` over their files, at
    ``size`` pixels, whose default task is ``label`` (for CelebA, of the partition ``split`` names, if it does).
    """
    if settings.kind == "synthetic":
        return synthetic_faces(settings.identities, settings.images_per_identity, size=size, seed=settings.seed,
                               nuisance=settings.nuisance)
    common = {"task": label, "image_size": size, "on_error": settings.on_error, "check": settings.check}
    if settings.kind == "manifest":
        return FaceDataset.from_manifest(settings.path, settings.image_root, **common)
    if settings.kind == "celeba":
        partition = settings.split if isinstance(settings.split, str) else None
        return FaceDataset.from_celeba(settings.path, split=partition, **common)
    return FaceDataset.from_folders(settings.path, **common)


def load_dataset(study: Study, progress: bool = True) -> FaceDataView:
    """The study's images and labels, held in memory, as face data (:func:`lrp_faces.faces.as_face_data`).

    Synthetic faces are generated, real ones read once from their files. With ``[dataset].split`` a table, the
    images are the test part of :func:`lrp_faces.faces.split_by_image`; ``max_images`` then keeps that many, evenly
    spaced. ``[dataset.labels]`` maps the models' tasks to the labels they are scored on.
    """
    settings, size = study.dataset, study.image_size
    tasks = sorted({spec.task for spec in study.zoo.models}) if study.zoo.models is not None else []
    if settings.kind == "demo":
        source = demo_study_data(study.zoo.demo_settings)[1]
    else:
        label = settings.labels.get(tasks[0], tasks[0]) if tasks else "identity"
        source = read_faces(settings, size, label if label in ("identity", "gender") else "identity")
    if isinstance(settings.split, HeldOutSplit):
        source = settings.split.apply(source)[1]
    if settings.max_images is not None:
        source = source.subset(evenly_spaced(len(source), settings.max_images))
    return as_face_data(source, label_names=settings.labels).in_memory(progress=progress)


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        flat = {}
        for key, item in value.items():
            flat.update(_flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        return flat
    return {prefix: value}


def settings_changes(recorded: Any, wanted: Any, limit: int = 4) -> str:
    """``key: old -> new`` for each setting that differs (or which input changed), as one short line."""
    old, new = _flatten(recorded), _flatten(wanted)
    keys = sorted(key for key in set(old) | set(new) if old.get(key) != new.get(key))
    inputs = {"cube": "the cube was recomputed", "zoo": "the models changed", "human_rdm_file": "the ratings changed"}
    changes = list(dict.fromkeys(inputs[key.split(".")[0]] if key.split(".")[0] in inputs
                                 else f"{key}: {_short(old.get(key))} -> {_short(new.get(key))}" for key in keys))
    return "; ".join(changes[:limit]) + (f"; and {len(changes) - limit} more" if len(changes) > limit else "")


def _short(value: Any, width: int = 40) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= width else text[:width - 1] + "…"


def _clock() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class StudyRun:
    """One study's run into ``out``: each step is a method, and :meth:`all` runs them in order.

    Parameters
    ----------
    study : Study
    out : str or PathLike
        The results directory (created if needed).
    progress : bool
        Show tqdm progress bars.
    log : callable, optional
        Receives one line per event (default: printed to stderr).
    """

    def __init__(self, study: Study, out: str | os.PathLike, progress: bool = True,
                 log: Callable[[str], None] | None = None, client: Any = None):
        if not isinstance(study, Study):
            raise TypeError(f"study must be a Study, got {type(study).__name__}")
        self.study, self.out, self.progress, self.client = study, Path(out).expanduser(), progress, client
        self.log = log if log is not None else (lambda line: print(line, file=sys.stderr))
        if self.out.exists() and not self.out.is_dir():
            raise StudyError(f"--out {str(self.out)!r} exists and is not a directory")
        self.timings: dict[str, dict] = {}
        self.device = study.compute.resolved_device()

    @property
    def units_dir(self) -> Path:
        """Where the steps keep their finished units until their file is written (``OUT/.units``)."""
        return self.out / UNITS_DIR

    def _where(self) -> dict:
        """The keyword arguments that say where a step's units run: device, cluster client, threads, unit store."""
        return {"device": self.device, "client": self.client, "threads": self.threads,
                "units_dir": self.units_dir}

    @property
    def threads(self) -> int | None:
        """Torch threads per unit (:attr:`Study.threads`, with --threads in ``[compute]``)."""
        return self.study.threads

    # -------------------------------------------------------------------------------------------- inputs
    @cached_property
    def zoo(self):
        """The study's models (the demo zoo is trained on first use, then loaded from its cache)."""
        started = _clock()
        settings = self.study.zoo
        if settings.demo is not None:
            cache = settings.cache_dir if settings.cache_dir is not None else default_cache_dir()
            self.log(f"zoo: the {settings.demo} demo zoo ({len(settings.demo_settings.specs())} models), cached in "
                     f"{cache}; models not there yet are trained now (about "
                     f"{'70' if settings.demo == 'default' else '25'} s on two idle cores)")
        zoo = settings.build(progress=self.progress)
        seconds = self._timed("zoo", started, "ready")
        self.log(f"zoo: {len(zoo)} models ready ({seconds:.1f} s)")
        return zoo

    @cached_property
    def data(self) -> FaceDataView:
        """The study's images and labels, in memory, checked against the zoo's classes (:meth:`check_classes`)."""
        started = _clock()
        data = load_dataset(self.study, progress=self.progress)
        seconds = self._timed("dataset", started, f"{len(data)} images")
        split = self.study.dataset.split
        part = (f", the test part of a split by image ({split.test_fraction:.0%} of each identity, seed "
                f"{split.seed})" if isinstance(split, HeldOutSplit) else "")
        self.log(f"dataset: {len(data)} images of {self.study.image_size} px ({self.study.dataset.kind}{part}, "
                 f"{seconds:.1f} s)")
        self.check_classes(data)
        return data

    def check_classes(self, data: FaceDataView) -> None:
        """Check the zoo's models against the data's classes before any work: each task's labels map to the models'
        classes by name (:func:`lrp_faces.zoo.scored_labels`), and every checkpoint has the head and class names of
        its task (:meth:`lrp_faces.zoo.Zoo.check`).

        Raises
        ------
        ClassMismatchError
            A class of the data that a model does not know, or labels beyond a model's outputs.
        ZooError
            A checkpoint whose head or class names are not those its task is scored on.
        """
        zoo = self.zoo
        scored = scored_labels(zoo, sorted(zoo), data)
        if callable(getattr(zoo, "check", None)):
            zoo.check({task: labels.class_names for task, labels in scored.items()
                       if labels.class_names is not None})

    @property
    def cube_path(self) -> Path:
        return self.out / CUBE_DIR

    def result_path(self, step: str) -> Path:
        return self.out / RESULT_FILES[step]

    def _timed(self, step: str, started: tuple[float, float], status: str) -> float:
        """Record the wall and CPU seconds (all threads) since ``started`` (from :func:`_clock`)."""
        seconds = round(time.perf_counter() - started[0], 2)
        self.timings[step] = {"status": status, "seconds": seconds,
                              "cpu_seconds": round(time.process_time() - started[1], 2)}
        return seconds

    # -------------------------------------------------------------------------------------------- steps
    def attribute(self) -> xr.Dataset:
        """The relevance cube in ``out/cube``: only models without a complete file are computed."""
        settings = self.study.attribution
        self.out.mkdir(parents=True, exist_ok=True)
        before = _file_states(self.cube_path)
        block_size = self.study.compute.block_size
        if block_size is not None:  # the cube's blocks are whole batches
            block_size = settings.batch_size * -(-block_size // settings.batch_size)
        arguments = dict(method=settings.method, batch_size=settings.batch_size, contrastive=settings.contrastive,
                         progress=self.progress, block_size=block_size, device=self.device, client=self.client,
                         threads=self.threads, **settings.params)
        zoo, data = self.zoo, self.data
        started = _clock()
        try:
            cube = cubes.compute(zoo, data, self.cube_path, **arguments)
        except cubes.CubeMismatchError as error:
            self.log(f"cube: {self.cube_path} holds maps computed with other settings; recomputing every model "
                     f"({str(error).split(';')[0]})")
            before = {}
            cube = cubes.compute(zoo, data, self.cube_path, overwrite=True, **arguments)
        except cubes.CubeFileError as error:
            cause = str(error).split("; delete it")[0]
            raise StepError(f"{cause}; delete that file and rerun the same lrp-faces command: only the missing "
                            f"models are computed again") from None
        after = _file_states(self.cube_path)
        computed = sum(1 for name, state in after.items() if before.get(name) != state)
        reused = len(zoo) - computed
        seconds = self._timed("cube", started, "computed" if reused == 0 else f"resumed ({reused} models reused)")
        self.log(f"cube: {len(zoo)} models x {cube.sizes['image']} images in {self.cube_path} "
                 f"({computed} computed, {reused} reused, {seconds:.1f} s)")
        self.write_study_json(cube)
        return cube

    def open_cube(self) -> xr.Dataset:
        """The cube of an earlier ``attribute`` step."""
        if not self.cube_path.is_dir() or not any(self.cube_path.glob("*.nc")):
            raise StepError(f"no relevance cube in {str(self.cube_path)!r}; run `lrp-faces attribute` (or "
                            f"`lrp-faces run`) with this study and --out {str(self.out)!r} first")
        return cubes.open(self.cube_path)

    def _cube_fingerprint(self, cube: xr.Dataset) -> dict:
        """Identifies the cube a step reads: its attributes change with the method, the images, the models and
        every model file's creation time, so a recomputed model makes the steps after it run again."""
        return {"cube": _digest(dict(cube.attrs)), "zoo": self.study.zoo.fingerprint()}

    def _step(self, step: str, settings: dict, compute: Callable[[], xr.Dataset]) -> Path:
        """Skip ``step`` if its file holds ``settings``; otherwise compute it and write it with them."""
        path = self.result_path(step)
        wanted = json.loads(json.dumps(settings, sort_keys=True, default=str))
        attrs = result_attrs(path) if path.exists() else None
        recorded = None
        if attrs is not None and STEP_ATTR in attrs:
            try:
                recorded = json.loads(attrs[STEP_ATTR])
            except ValueError:
                recorded = None
        if recorded == wanted:
            self.timings[step] = {"status": "skipped (up to date)", "seconds": 0.0}
            self.log(f"{step}: {path.name} is up to date (same settings); skipped")
            return path
        if recorded is not None:
            self.log(f"{step}: {path.name} was computed with other settings ({settings_changes(recorded, wanted)}); "
                     f"recomputing")
        elif path.exists():
            self.log(f"{step}: {path.name} is unreadable or records no settings; recomputing")
        started = _clock()
        result = compute()
        result.attrs["device"] = str(self.device)
        write_result(result, path, wanted)
        seconds = self._timed(step, started, "computed")
        self.log(f"{step}: wrote {path} ({seconds:.1f} s)")
        return path

    def mask(self, cube: xr.Dataset | None = None) -> Path:
        """``masking.nc``: cross-model generalisation of the maps, with the random source; and ``masking_lerf.nc``:
        each model masked by its own maps least relevant first (see :meth:`self_masking`)."""
        cube = self.open_cube() if cube is None else cube
        settings = self.study.masking
        contrastive = self.study.attribution.contrastive  # the output the maps explain is the output masking scores
        step = {"masking": settings.to_dict(), "contrastive": contrastive, **self._cube_fingerprint(cube)}

        def compute():
            selected = cube.isel(image=evenly_spaced(cube.sizes["image"], settings.max_images))
            return masking.generalization(selected, self.zoo, self.data, progress=self.progress,
                                          contrastive=contrastive, **self._where(), **self._block_size(),
                                          **settings.arguments())
        path = self._step("masking", step, compute)
        if settings.config.order == "lerf":
            self.log("masking_lerf: skipped; the generalisation step already masks least relevant first (LeRF)")
        else:
            shared = {key: value for key, value in step["masking"].items()
                      if key in self._curves_settings(settings) or key == "max_images"}
            self._step("masking_lerf", {**step, "masking": shared, "self_masking_order": "lerf"},
                       lambda: self.self_masking(cube, "lerf"))
        self.write_study_json(cube)
        return path

    def self_masking(self, cube: xr.Dataset, order: str = "lerf") -> xr.Dataset:
        """Every model of the cube masked by its own maps in ``order`` (:func:`lrp_faces.masking.own_map_curves`).

        The same images (``max_images`` of the cube's, evenly spaced) and ``[masking]`` settings as the
        generalisation step (the config's but ``order``, and ``batch_size``): a LeRF run costs about one
        generalisation source's forward passes per model, 1/(S + 1) of that step for S models.
        """
        settings = self.study.masking
        selected = cube.isel(image=evenly_spaced(cube.sizes["image"], settings.max_images))
        return masking.own_map_curves(selected, self.zoo, self.data, order=order, progress=self.progress,
                                      contrastive=self.study.attribution.contrastive, **self._where(),
                                      **self._block_size(), **self._curves_settings(settings))

    @staticmethod
    def _curves_settings(settings) -> dict:
        """The ``[masking]`` settings that :func:`lrp_faces.masking.own_map_curves` shares with the generalisation
        step: the config's but ``order``, and ``batch_size``."""
        shared = {key: value for key, value in settings.config.to_dict().items() if key != "order"}
        return {**shared, "batch_size": settings.batch_size, "precision": settings.precision}

    def _block_size(self) -> dict:
        """``block_size`` for a step's units when ``[compute].block_size`` sets it (else the step's default)."""
        block_size = self.study.compute.block_size
        return {} if block_size is None else {"block_size": block_size}

    def analyze(self, only: tuple[str, ...] | None = None, cube: xr.Dataset | None = None) -> list[Path]:
        """The analyses of the study (or ``only`` these), each to its own file."""
        from .study import ANALYSES
        names = self.study.analysis.run if only is None else tuple(only)
        unknown = [name for name in names if name not in ANALYSES]
        if unknown:
            raise StepError(f"unknown analysis {unknown[0]!r}; expected one of {list(ANALYSES)}")
        cube = self.open_cube() if cube is None else cube
        paths = [getattr(self, f"_analysis_{name}")(cube) for name in names]
        self.write_study_json(cube)
        return paths

    def _analysis_settings(self, name: str, cube: xr.Dataset | None) -> dict:
        step = {name: getattr(self.study.analysis, name), "zoo": self.study.zoo.fingerprint()}
        if cube is not None:
            step.update(self._cube_fingerprint(cube))
        return step

    def _analysis_similarity(self, cube: xr.Dataset) -> Path:
        from .. import analysis
        arguments = self.study.analysis.arguments("similarity", analysis.similarity)
        return self._step("similarity", self._analysis_settings("similarity", cube),
                          lambda: analysis.similarity(cube, progress=self.progress, **arguments))

    def _analysis_regions(self, cube: xr.Dataset) -> Path:
        from .. import analysis
        arguments = self.study.analysis.arguments("regions", analysis.region_relevance)

        def compute():
            data = self.data
            if self.study.dataset.synthetic:
                regions = analysis.region_relevance(cube, data, progress=self.progress, **arguments)
                truth = analysis.ground_truth(cube, data, progress=self.progress, **arguments)
                return xr.merge([regions, truth], compat="override", combine_attrs="drop_conflicts")
            labels, names = analysis.face_template(self.study.image_size)
            return analysis.region_relevance(cube, labels, names, progress=self.progress, **arguments)
        step = self._analysis_settings("regions", cube)
        step["regions_source"] = "synthetic" if self.study.dataset.synthetic else "face_template"
        return self._step("regions", step, compute)

    def _analysis_methods(self, cube: xr.Dataset) -> Path:
        from .. import analysis
        settings = dict(self.study.analysis.methods)
        arguments = self.study.analysis.arguments("methods", analysis.method_comparison)
        arguments.pop("models", None)
        models = [ModelSpec.from_id(model) for model in settings.get("models", ())] or None
        if models is not None:
            missing = [spec.id for spec in models if spec not in self.zoo]
            if missing:
                raise StudyError(f"[analysis.methods].models: {missing} are not in the zoo; it has "
                                 f"{[spec.id for spec in self.zoo]}")

        def compute():
            data = self.data
            data = data.subset(evenly_spaced(len(data), settings.get("max_images")))
            return analysis.method_comparison(self.zoo, data, models=models, progress=self.progress, **self._where(),
                                              **self._block_size(), **arguments)
        step = self._analysis_settings("methods", None)
        step["dataset"] = self.study.dataset.fingerprint()
        step["result_format"] = 2  # 2: the methods' dim is attribution_method (files of format 1 are recomputed)
        return self._step("methods", step, compute)

    def _analysis_rsa(self, cube: xr.Dataset) -> Path:
        from .. import analysis
        settings = self.study.analysis
        if settings.human_rdm is None:
            raise StepError("RSA needs human dissimilarities: set [analysis.rsa].human_rdm to a ratings file")

        def compute():
            if settings.human_rdm == "synthetic":
                human = analysis.stand_in_human_rdm(self.data)
            else:
                human = analysis.load_human_rdm(settings.human_rdm, image_ids=[str(value) for value in
                                                                               cube.image.values])
            rdms = analysis.model_rdms(cube, self.zoo, self.data, progress=self.progress, device=self.device,
                                       **settings.arguments("rsa", analysis.model_rdms))
            return analysis.compare_with_humans(rdms, human, progress=self.progress,
                                                **settings.arguments("rsa", analysis.compare_with_humans))
        step = self._analysis_settings("rsa", cube)
        step["human_rdm"] = str(settings.human_rdm)
        step["result_format"] = 2  # 2: with rater_ci_low/rater_ci_high (files of format 1 are recomputed)
        if settings.human_rdm not in (None, "synthetic"):
            stat = Path(settings.human_rdm).stat()
            step["human_rdm_file"] = [stat.st_size, stat.st_mtime_ns]
        return self._step("rsa", step, compute)

    def report(self) -> Path:
        """``report/index.html`` from the results present (always rewritten)."""
        from ..report import write_report
        started = _clock()
        images = self.data if "data" in self.__dict__ or self.study.dataset.synthetic else None
        index = write_report(self.out, progress=self.progress, images=images)
        seconds = self._timed("report", started, "written")
        self.log(f"report: wrote {index} ({seconds:.1f} s)")
        self.write_study_json()
        return index

    def all(self) -> Path | None:
        """Every step in order; returns the report's ``index.html`` (None when the report is disabled)."""
        started = _clock()
        cube = self.attribute()
        self.mask(cube)
        if self.study.analysis.run:
            self.analyze(cube=cube)
        index = self.report() if self.study.report else None
        self._timed("total", started, "done")
        self.write_study_json(cube)
        return index

    # -------------------------------------------------------------------------------------------- study.json
    def write_study_json(self, cube: xr.Dataset | None = None) -> Path:
        """``study.json``: resolved settings, the zoo table, the human source, versions and timings so far."""
        path = self.out / STUDY_JSON
        previous = {}
        if path.is_file():
            try:
                previous = json.loads(path.read_text(encoding="utf-8"))
            except ValueError:
                previous = {}
        timings = {**previous.get("timings", {}), **self.timings} if isinstance(previous, dict) else self.timings
        record = {"name": self.study.name, "title": f"lrp-faces study: {self.study.name}",
                  "settings": self.study.to_dict(), "zoo": self._zoo_table(cube, previous.get("zoo")),
                  "human_source": self._human_source(), "versions": versions(), "timings": timings,
                  "results": self._results(), "created": previous.get("created", _now()), "updated": _now()}
        return write_text_atomic(path, json.dumps(record, indent=1, default=str) + "\n")

    def _zoo_table(self, cube: xr.Dataset | None, previous: Any) -> list[dict]:
        if cube is None:
            return previous if isinstance(previous, list) else []
        table = []
        entries = getattr(self.zoo, "entries", {})
        computed = cube.coords["computed"] if "computed" in cube.coords else None
        correct = cube["correct"].load()
        for spec in sorted(entries):
            entry = entries[spec]
            row = {"spec": spec.to_dict(), "checkpoint": str(entry.path), "format": entry.format}
            where = {"pretraining": spec.pretraining, "task": spec.task, "seed": spec.seed}
            present = all(str(value) in map(str, cube[dim].values) for dim, value in where.items())
            if present and (computed is None or bool(computed.sel(where))):
                row["accuracy"] = round(float(correct.sel(where).mean()), 4)
            info = _checkpoint_info(entry)
            if "validation_accuracy" in info:
                row["validation_accuracy"] = info["validation_accuracy"]
            table.append(row)
        return table

    def _human_source(self) -> str | None:
        path = self.result_path("rsa")
        attrs = result_attrs(path) if path.exists() else None
        if attrs and "human_source" in attrs:
            return str(attrs["human_source"])
        human = self.study.analysis.human_rdm
        if human == "synthetic":
            from ..analysis import STAND_IN_SOURCE
            return STAND_IN_SOURCE
        return None if human is None else str(human)

    def _results(self) -> dict[str, str]:
        found = {"cube": CUBE_DIR} if self.cube_path.is_dir() else {}
        found.update({step: name for step, name in RESULT_FILES.items() if (self.out / name).is_file()})
        if (self.out / "report" / "index.html").is_file():
            found["report"] = "report/index.html"
        return found


def _file_states(directory: Path) -> dict[str, tuple[int, int]]:
    """``{name: (inode, modification time)}`` of a cube's model files: what changed is what was computed."""
    if not directory.is_dir():
        return {}
    return {path.name: (path.stat().st_ino, path.stat().st_mtime_ns) for path in directory.glob("*.nc")}


def _checkpoint_info(entry) -> dict:
    """The metadata of an lrp_faces checkpoint (e.g. its validation accuracy), read without the weights."""
    if entry.format != "lrp_faces":
        return {}
    from ..models import read_checkpoint_info
    try:
        return dict(read_checkpoint_info(entry.path).get("metadata") or {})
    except (LRPFacesError, OSError):  # a damaged or unreadable checkpoint: study.json goes without its metadata
        return {}
