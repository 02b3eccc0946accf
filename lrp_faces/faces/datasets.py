"""Real aligned-face data sets: a CSV manifest, the CelebA layout, or one folder per identity.

Every image is checked when the data set is built, so that iteration does not fail halfway: unreadable or missing
files are either raised (``on_error="raise"``) or skipped and reported in :attr:`FaceDataset.skipped`.
"""
from __future__ import annotations

import copy
import csv
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from ._indexing import selected_indices
from ..errors import LRPFacesError

__all__ = ["FaceDataset", "DatasetError", "IMAGE_EXTENSIONS", "GENDER_CODES"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
GENDER_CODES = {"1": 1, "m": 1, "male": 1, "0": 0, "f": 0, "female": 0}
"""Accepted gender values (case-insensitive): 1 = male, 0 = female, as CelebA's ``Male`` attribute."""
GENDER_NAMES = ("female", "male")
TASKS = ("identity", "gender")
CHECKS = ("verify", "load", "exists")
CELEBA_LAYOUT = ("img_align_celeba/ (the images), list_attr_celeba.txt (count, attribute names, then "
                 "'filename v1 v2 ...' with values 1/-1), identity_CelebA.txt ('filename identity')")


class DatasetError(LRPFacesError, ValueError):
    """A face data set that cannot be built or read: bad files, labels or layout."""


class FaceDataset(torch.utils.data.Dataset):
    """Aligned face images with identity and gender labels; ``dataset[i]`` is ``(image, label)``.

    Images are float32 (3, S, S) RGB in [0, 1]: loaded with Pillow, the shorter side resized to ``image_size``
    (bicubic, antialiased) and centre-cropped. Build with :meth:`from_manifest`, :meth:`from_celeba` or
    :meth:`from_folders`, which all take:

    Parameters
    ----------
    task : {"identity", "gender"}
        The label of ``dataset[i]``.
    image_size : int
        Side S of the square images returned.
    on_error : {"raise", "skip"}
        Unreadable or missing image files raise :class:`DatasetError`, or are left out, listed in ``skipped`` and
        counted in a warning.
    check : {"verify", "load", "exists"}
        How images are checked when the data set is built: open them and run Pillow's ``verify()`` (default; fast,
        catches non-images and broken PNGs), decode them fully (slow, catches everything, e.g. truncated JPEGs), or
        only check that the files exist.

    Attributes
    ----------
    image_ids : list of str
        Paths relative to the data set's root.
    metadata : list of dict
        Per image: ``path``, ``identity`` (original), ``gender`` (0, 1 or None) and any extra columns.
    identity : ndarray (N,) int64
        Contiguous identity classes (see ``identity_classes``); -1 where unknown.
    gender : ndarray (N,) int64
        1 = male, 0 = female, -1 = unknown.
    identity_classes : dict
        Original identity (str) -> class index, in sorted order of the original identities.
    skipped : list of (str, str)
        ``(path, reason)`` of the files left out with ``on_error="skip"``.
    """

    def __init__(self, records: list[dict], root: Path | str, task: str = "identity", image_size: int = 224,
                 on_error: str = "raise", check: str = "verify", source: str = "face data set"):
        _check_task(task)
        if on_error not in ("raise", "skip"):
            raise DatasetError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if check not in CHECKS:
            raise DatasetError(f"check must be one of {CHECKS}, got {check!r}")
        if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 1:
            raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
        if not records:
            raise DatasetError(f"{source} lists no images")
        self.root, self.task, self.image_size, self.source = Path(root), task, int(image_size), source
        self.skipped: list[tuple[str, str]] = []
        kept = []
        for record in records:
            problem = _image_problem(record["file"], check)
            if problem is None:
                kept.append(record)
            elif on_error == "raise":
                raise DatasetError(f"{source}: cannot read image {record['file']}: {problem} "
                                   "(pass on_error='skip' to leave such files out)")
            else:
                self.skipped.append((str(record["file"]), problem))
        if self.skipped:
            warnings.warn(f"{source}: skipped {len(self.skipped)} unreadable or missing image(s) of {len(records)}, "
                          f"e.g. {self.skipped[0][0]} ({self.skipped[0][1]}); see .skipped", stacklevel=3)
        if not kept:
            raise DatasetError(f"{source}: none of its {len(records)} images could be read")
        self._files = [record["file"] for record in kept]
        self.metadata = [dict(record["metadata"]) for record in kept]
        self.image_ids = [record["metadata"]["path"] for record in kept]
        originals = sorted({str(m["identity"]) for m in self.metadata if m["identity"] is not None}, key=_sort_key)
        self.identity_classes = {original: index for index, original in enumerate(originals)}
        self.identity = np.array([-1 if m["identity"] is None else self.identity_classes[str(m["identity"])]
                                  for m in self.metadata], dtype=np.int64)
        self.gender = np.array([-1 if m["gender"] is None else m["gender"] for m in self.metadata], dtype=np.int64)
        self.labels(task)  # fail now, not in the training loop, if the task's labels are missing

    # --- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, csv_path, image_root=None, task: str = "identity", image_size: int = 224,
                      on_error: str = "raise", check: str = "verify") -> "FaceDataset":
        """Read a CSV with header ``path,identity,gender[,...]``.

        Paths are relative to ``image_root`` (default: the CSV's folder) unless absolute. Gender accepts 0/1, f/m,
        female/male (case-insensitive; 1 = male); empty cells mean unknown. The ``identity`` column may be omitted
        for ``task="gender"``, and ``gender`` for ``task="identity"``; extra columns go to ``metadata``.
        """
        _check_task(task)
        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise DatasetError(f"manifest {csv_path} does not exist; expected a CSV with header path,identity,gender")
        root = Path(image_root) if image_root is not None else csv_path.parent
        with open(csv_path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            if reader.fieldnames is None:
                raise DatasetError(f"manifest {csv_path} is empty; expected a header path,identity,gender[,...] "
                                   "and one line per image")
            columns = [name.strip() for name in reader.fieldnames]
            reader.fieldnames = columns
            rows = list(reader)
        for needed in ("path", task):
            if needed not in columns:
                raise DatasetError(f"manifest {csv_path} has no {needed!r} column (columns: {columns}); "
                                   f"expected a header path,identity,gender[,...] with {needed!r} for task={task!r}")
        records = []
        for line, row in enumerate(rows, start=2):
            path = (row.get("path") or "").strip()
            if not path:
                raise DatasetError(f"manifest {csv_path}, line {line}: empty path")
            identity = (row.get("identity") or "").strip() or None
            gender = _parse_gender(row.get("gender"), f"manifest {csv_path}, line {line}")
            extra = {key: value for key, value in row.items()
                     if key is not None and key not in ("path", "identity", "gender")}
            records.append(_record(root, path, identity, gender, extra))
        return cls(records, root, task, image_size, on_error, check, source=f"manifest {csv_path}")

    @classmethod
    def from_celeba(cls, root, task: str = "identity", image_size: int = 224, on_error: str = "raise",
                    check: str = "verify", split: str | None = None) -> "FaceDataset":
        """Read the CelebA layout: ``img_align_celeba/``, ``list_attr_celeba.txt``, ``identity_CelebA.txt``.

        The attribute ``Male`` (1/-1) gives gender and the other 39 attributes go to ``metadata`` (as 1/0). The
        file of the task's label is required, the other one is read when present. ``split`` ("train", "valid" or
        "test") selects a partition of ``list_eval_partition.txt``.
        """
        _check_task(task)
        root = Path(root)
        images = root / "img_align_celeba"
        attributes_file, identity_file = root / "list_attr_celeba.txt", root / "identity_CelebA.txt"
        required = {"identity": identity_file, "gender": attributes_file}.get(task)
        for path in (images, required):
            if path is not None and not path.exists():
                raise DatasetError(f"CelebA root {root}: {path.name} is missing; expected {CELEBA_LAYOUT}")
        identities = _read_pairs(identity_file) if identity_file.exists() else {}
        attributes = _read_celeba_attributes(attributes_file) if attributes_file.exists() else {}
        names = list(identities) if identities else list(attributes)
        if split is not None:
            partition = _read_pairs(root / "list_eval_partition.txt", required_for=f"split={split!r}")
            codes = {"train": "0", "valid": "1", "test": "2"}
            if split not in codes:
                raise DatasetError(f"split must be one of {tuple(codes)} or None, got {split!r}")
            names = [name for name in names if partition.get(name) == codes[split]]
        records = []
        for name in names:
            extra = dict(attributes.get(name, {}))
            male = extra.pop("Male", None)
            records.append(_record(images, name, identities.get(name), None if male is None else int(male), extra))
        return cls(records, images, task, image_size, on_error, check, source=f"CelebA root {root}")

    @classmethod
    def from_folders(cls, root, task: str = "identity", image_size: int = 224, on_error: str = "raise",
                     check: str = "verify") -> "FaceDataset":
        """Read one folder per identity (VGGFace2 / LFW style): ``root/<identity>/<image>``; gender is unknown.

        Files with the extensions of :data:`IMAGE_EXTENSIONS` (any case) count as images; hidden files and other
        files are ignored.
        """
        _check_task(task)
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"folder {root} does not exist; expected one sub-folder of images per identity")
        records = []
        for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
            for file in sorted(folder.iterdir()):
                if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith("."):
                    records.append(_record(root, f"{folder.name}/{file.name}", folder.name, None, {}))
        if not records:
            raise DatasetError(f"folder {root} holds no images; expected root/<identity>/<image> with extensions "
                               f"{IMAGE_EXTENSIONS}")
        return cls(records, root, task, image_size, on_error, check, source=f"folder {root}")

    # --- the Dataset interface -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load_image(index), int(self.labels()[index])

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        file = self._files[index]
        try:
            with Image.open(file) as image:
                image = image.convert("RGB")
        except (OSError, UnidentifiedImageError) as error:
            raise DatasetError(f"{self.source}: cannot read image {file}: {error}") from error
        width, height = image.size
        factor = self.image_size / min(width, height)
        new_size = (max(self.image_size, round(width * factor)), max(self.image_size, round(height * factor)))
        image = image.resize(new_size, Image.Resampling.BICUBIC)
        left, top = (new_size[0] - self.image_size) // 2, (new_size[1] - self.image_size) // 2
        image = image.crop((left, top, left + self.image_size, top + self.image_size))
        array = np.asarray(image, dtype=np.float32) / 255.0
        return torch.from_numpy(array.transpose(2, 0, 1).copy())

    def labels(self, task: str | None = None) -> np.ndarray:
        """Integer labels (N,) of ``task`` (default: the data set's task)."""
        task = task or self.task
        _check_task(task)
        values = self.identity if task == "identity" else self.gender
        missing = np.flatnonzero(values < 0)
        if len(missing):
            raise DatasetError(f"{self.source}: {task} is unknown for {len(missing)} of {len(values)} images "
                               f"(e.g. {self.image_ids[missing[0]]}); task={task!r} needs it for every image")
        return values

    def num_classes(self, task: str | None = None) -> int:
        """Number of classes of ``task``: the identities, or 2 for gender."""
        return len(self.class_names(task))

    def class_names(self, task: str | None = None) -> tuple[str, ...]:
        """Class names of ``task``: the original identities in class order, or ("female", "male")."""
        task = task or self.task
        _check_task(task)
        return tuple(self.identity_classes) if task == "identity" else GENDER_NAMES

    def with_task(self, task: str) -> "FaceDataset":
        """The same images, labelled for ``task``."""
        other = copy.copy(self)
        other.task = task
        other.labels(task)
        return other

    def subset(self, indices) -> "FaceDataset":
        """The images at ``indices`` (ints or a boolean mask); class indices and ``identity_classes`` unchanged."""
        indices = selected_indices(len(self), indices)
        other = copy.copy(self)
        other._files = [self._files[i] for i in indices]
        other.metadata = [self.metadata[i] for i in indices]
        other.image_ids = [self.image_ids[i] for i in indices]
        other.identity, other.gender = self.identity[indices], self.gender[indices]
        return other

    def __repr__(self) -> str:
        return (f"FaceDataset({self.source}, {len(self)} images, {len(self.identity_classes)} identities, "
                f"task={self.task!r}, image_size={self.image_size}, skipped={len(self.skipped)})")


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise DatasetError(f"task must be one of {TASKS}, got {task!r}")


def _record(root: Path, path: str, identity, gender, extra: dict) -> dict:
    file = Path(path) if Path(path).is_absolute() else root / path
    metadata = {"path": path, "identity": identity, "gender": gender, **extra}
    return {"file": file, "metadata": metadata}


def _image_problem(file: Path, check: str) -> str | None:
    """Why ``file`` cannot be used as an image, or None."""
    if not file.is_file():
        return "file not found" if not file.exists() else "not a regular file"
    if check == "exists":
        return None
    try:
        with Image.open(file) as image:
            if check == "verify":
                image.verify()
            else:
                image.load()
    except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as error:
        return f"not a readable image ({type(error).__name__}: {error})"
    return None


def _parse_gender(value, where: str):
    if value is None or not str(value).strip():
        return None
    code = GENDER_CODES.get(str(value).strip().lower())
    if code is None:
        raise DatasetError(f"{where}: gender {value!r} is not one of 0/1, f/m, female/male (1 = male)")
    return code


def _sort_key(identity: str):
    """Numeric identities sort as numbers, others as text (numbers first)."""
    return (0, int(identity), identity) if identity.lstrip("-").isdigit() else (1, 0, identity)


def _read_pairs(path: Path, required_for: str | None = None) -> dict[str, str]:
    if not path.exists():
        raise DatasetError(f"{path} is missing; it is needed for {required_for}")
    pairs = {}
    with open(path, encoding="utf-8") as handle:
        for line_number, line in enumerate(handle, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != 2:
                raise DatasetError(f"{path}, line {line_number}: expected 'filename value', got {line.strip()!r}")
            pairs[fields[0]] = fields[1]
    return pairs


def _read_celeba_attributes(path: Path) -> dict[str, dict[str, int]]:
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if line.strip()]
    if len(lines) < 2 or "Male" not in lines[1]:
        raise DatasetError(f"{path}: expected a count line, a line of attribute names including 'Male', then "
                           "'filename v1 v2 ...' lines")
    names = lines[1]
    attributes = {}
    for line_number, fields in enumerate(lines[2:], start=3):
        if len(fields) != len(names) + 1 or any(value not in ("1", "-1") for value in fields[1:]):
            raise DatasetError(f"{path}, line {line_number}: expected a filename and {len(names)} values of 1/-1")
        attributes[fields[0]] = {name: int(value == "1") for name, value in zip(names, fields[1:])}
    return attributes
