"""The offline demo zoo: small VGG-16s pretrained on synthetic objects or faces, fine-tuned per task and seed."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import math
import os
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..faces import synthetic_faces, synthetic_objects
from ..files import write_text_atomic
from ..models import NormalizedVGG, WeightsError, load_model, save_model, vgg16, weights_digest
from ..nn import IMAGENET
from .checks import ZooError, ZooTypeError, check_integer, is_integer
from .specs import ModelSpec, Zoo, ZooEntry
from .training import finetune, isolated_global_rng

__all__ = ["DemoSettings", "demo_zoo", "demo_study_data", "default_cache_dir", "default_workers", "DEMO_FORMAT"]


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
        if not isinstance(seeds, (list, tuple)) or not seeds or not all(is_integer(s) and s >= 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise ZooError(f"DemoSettings.seeds must be distinct integers >= 0, got {seeds!r}")
        object.__setattr__(self, "seeds", tuple(int(seed) for seed in seeds))
        lows = {"image_size": 32, "classifier_width": 1, "pool_size": 1, "object_classes": 1,
                "images_per_object_class": 1, "pretrain_identities": 1, "pretrain_images_per_identity": 1,
                "study_identities": 2, "train_images_per_identity": 1, "test_images_per_identity": 1,
                "pretrain_epochs": 1, "finetune_epochs": 1, "batch_size": 1, "data_seed": 0}
        for name, low in lows.items():
            object.__setattr__(self, name, check_integer(getattr(self, name), f"DemoSettings.{name}", low))
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


def demo_zoo(settings: DemoSettings | None = None, cache_dir: str | os.PathLike | None = None, progress: bool = True,
             workers: int | None = None) -> Zoo:
    """The offline demo zoo: small VGG-16s pretrained on synthetic objects or faces, fine-tuned per task and seed.

    Checkpoints are cached under ``cache_dir`` (default :func:`default_cache_dir`) in a folder keyed by every
    setting (:meth:`DemoSettings.key`), so a second call loads instead of training. Every cached file is checked
    (readable, weights digest, spec and settings); a missing or damaged one is retrained (with a warning if
    damaged), and only the models that need it are trained.

    Trainings run single-threaded, ``workers`` at a time (default: one per CPU), so the weights do not depend on
    the machine's core count or on ``workers``. The default settings train in about 70 s on two idle CPU cores;
    :meth:`DemoSettings.quick` in about 20 s.

    Parameters
    ----------
    settings : DemoSettings, optional
        The recipe; default ``DemoSettings()``.
    cache_dir : str or PathLike, optional
        Where the trained zoos are kept.
    progress : bool
        Show progress bars while training.
    workers : int, optional
        Trainings run side by side.

    Returns
    -------
    Zoo
        The demo's models, read from the cache on access.
    """
    settings = DemoSettings() if settings is None else settings
    if not isinstance(settings, DemoSettings):
        raise ZooTypeError(f"settings must be a DemoSettings, got {type(settings).__name__}")
    if workers is not None:
        check_integer(workers, "workers", low=1)
    key = settings.key()
    folder = Path(cache_dir if cache_dir is not None else default_cache_dir()).expanduser() / f"demo-{key}"
    entries = [ZooEntry(spec, folder / f"{spec.name}.pt") for spec in settings.specs()]
    missing = []
    for entry in entries:  # a loop, not a comprehension: the warning's stacklevel points at the caller
        if not _usable_checkpoint(entry.path, entry.spec.to_dict(), key):
            missing.append(entry.spec)
    if missing:
        folder.mkdir(parents=True, exist_ok=True)
        write_text_atomic(folder / "settings.json",
                          json.dumps({"key": key, "settings": dataclasses.asdict(settings)}, indent=1))
        _train_demo_zoo(settings, folder, missing, progress, workers)
    return Zoo(entries, settings.image_size)


def default_cache_dir() -> Path:
    """``$LRP_FACES_CACHE``, else ``$XDG_CACHE_HOME/lrp_faces``, else ``~/.cache/lrp_faces``."""
    if os.environ.get("LRP_FACES_CACHE"):
        return Path(os.environ["LRP_FACES_CACHE"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lrp_faces"


def _usable_checkpoint(path: Path, spec: dict, key: str) -> bool:
    """Whether ``path`` is a complete demo checkpoint of ``spec`` under settings ``key``; warns if it is damaged."""
    if not path.is_file():
        return False
    try:
        model = load_model(path)
        metadata = model.metadata
        problem = ("its weights do not match their recorded digest" if metadata.get("weights_sha256")
                   != weights_digest(model) else f"it holds model {model.spec}, not {spec}" if model.spec != spec
                   else "it was trained with other settings" if metadata.get("demo_key") != key else None)
    except WeightsError as error:
        problem = str(error)
    if problem is not None:
        warnings.warn(f"cached demo model {str(path)!r} is damaged ({problem}); retraining it", RuntimeWarning,
                      stacklevel=3)
    return problem is None


def _save_demo_model(model: NormalizedVGG, path: Path, spec: dict, settings: DemoSettings, **extra) -> None:
    metadata = {**model.metadata, **extra, "demo_key": settings.key(), "demo_settings": dataclasses.asdict(settings),
                "weights_sha256": weights_digest(model)}
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
    with isolated_global_rng():  # the caller's global RNG is left as it was
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
