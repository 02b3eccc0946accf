"""Real aligned-face data sets: a CSV manifest, the CelebA layout, or one folder per identity.

Every image is checked when the data set is built, so that iteration does not fail halfway: unreadable or missing
files are either raised (``on_error="raise"``) or skipped and reported in :attr:`FaceDataset.skipped`. Images are
read by :func:`lrp_faces.faces.image_files.read_image` (real bit depth, transparency, EXIF orientation).

Identity classes are numbered in sorted order of the identities found, or by a given class list (``classes``), so
that a held-out set keeps the numbering of the model it is scored on::

    classes = read_checkpoint_info(path)["class_names"]       # lrp_faces.read_checkpoint_info
    test = FaceDataset.from_manifest("test.csv", classes=classes)
"""
from __future__ import annotations

import codecs
import copy
import csv
import io
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ._errors import DatasetError
from ._indexing import selected_indices
from .image_files import CHECKS, IMAGE_EXTENSIONS, READ_ERRORS, WHITE, check_background, image_problem, read_image
from ..errors import LRPFacesWarning

__all__ = ["FaceDataset", "DatasetError", "IMAGE_EXTENSIONS", "GENDER_CODES"]

GENDER_CODES = {"1": 1, "m": 1, "male": 1, "0": 0, "f": 0, "female": 0}
"""Accepted gender values (case-insensitive): 1 = male, 0 = female, as CelebA's ``Male`` attribute."""
GENDER_NAMES = ("female", "male")
TASKS = ("identity", "gender")
MANIFEST_FORMAT = "a UTF-8 CSV with header path,identity,gender[,...] and one line per image"
CELEBA_LAYOUT = ("img_align_celeba/ (the images), list_attr_celeba.txt (count, attribute names, then "
                 "'filename v1 v2 ...' with values 1/-1), identity_CelebA.txt ('filename identity')")
CELEBA_PARTITIONS = {"train": "0", "valid": "1", "test": "2"}
CELEBA_DISJOINT = ("CelebA's official partitions hold disjoint identities: the {split} partition's people never occur "
                   "in training, so identity classes numbered within it mean nothing to a model trained on another "
                   "partition. For identity classification, read all of CelebA (split=None) and hold images out "
                   "with lrp_faces.faces.split_by_image(dataset, test_fraction, seed), which keeps every identity in "
                   "both parts; or pass classes=[...] (e.g. the model's class names) to number the identities as "
                   "the model does")


class FaceDataset(torch.utils.data.Dataset):
    """Aligned face images with identity and gender labels; ``dataset[i]`` is ``(image, label)``.

    Images are float32 (3, S, S) RGB in [0, 1], read by :func:`~lrp_faces.faces.image_files.read_image`: by their
    real bit depth, upright by their EXIF orientation, the shorter side resized to ``image_size`` (bicubic,
    antialiased) and centre-cropped. Build with :meth:`from_manifest`, :meth:`from_celeba` or :meth:`from_folders`,
    which all take:

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
    classes : sequence of str, optional
        The class names of ``task`` in class order, e.g. a checkpoint's
        (``read_checkpoint_info(path)["class_names"]``). For identity, class k is the identity ``classes[k]``, also
        where it has no image here, and an identity outside the list is an error. For gender it must be
        ``("female", "male")``. Default: the identities found, in sorted order (numbers as numbers).
    alpha_background : float or (float, float, float)
        RGB in [0, 1] that transparent pixels are composited over (default white); a warning says so once per data
        set.

    Attributes
    ----------
    image_ids : list of str
        Paths relative to the data set's root.
    metadata : list of dict
        Per image: ``path``, ``identity`` (original), ``gender`` (0, 1 or None) and any extra columns.
    identity : ndarray (N,) int64
        Identity classes (see ``identity_classes``); -1 where unknown.
    gender : ndarray (N,) int64
        1 = male, 0 = female, -1 = unknown.
    identity_classes : dict
        Original identity (str) -> class index, in class order.
    skipped : list of (str, str)
        ``(path, reason)`` of the files left out with ``on_error="skip"``.
    """

    def __init__(self, records: list[dict], root: Path | str, task: str = "identity", image_size: int = 224,
                 on_error: str = "raise", check: str = "verify", source: str = "face data set", *,
                 classes: Sequence[str] | None = None, alpha_background=WHITE):
        _check_task(task)
        if on_error not in ("raise", "skip"):
            raise DatasetError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if check not in CHECKS:
            raise DatasetError(f"check must be one of {CHECKS}, got {check!r}")
        if not isinstance(image_size, (int, np.integer)) or isinstance(image_size, bool) or image_size < 1:
            raise DatasetError(f"image_size must be a positive integer, got {image_size!r}")
        self.alpha_background = check_background(alpha_background)
        classes = _checked_classes(classes, task)
        if not records:
            raise DatasetError(f"{source} lists no images")
        self.root, self.task, self.image_size, self.source = Path(root), task, int(image_size), source
        listed = [record["metadata"] for record in records]
        _warn_about_look_alikes(_identities(listed), source)
        if task == "identity" and classes is not None:  # before the images are checked: fail fast
            self.identity_classes = _number_identities(_identities(listed), classes, listed, source)
        self.skipped: list[tuple[str, str]] = []
        kept = self._readable(records, check, on_error)
        self._files = [record["file"] for record in kept]
        self.metadata = [dict(record["metadata"]) for record in kept]
        self.image_ids = [record["metadata"]["path"] for record in kept]
        if not (task == "identity" and classes is not None):
            self.identity_classes = _number_identities(_identities(self.metadata), None, self.metadata, source)
        self.identity = np.array([-1 if m["identity"] is None else self.identity_classes[str(m["identity"])]
                                  for m in self.metadata], dtype=np.int64)
        self.gender = np.array([-1 if m["gender"] is None else m["gender"] for m in self.metadata], dtype=np.int64)
        self._identity_refusal: str | None = None
        self._transparency_notice = {"warned": False}  # shared by subsets: one warning per data set
        self.labels(task)  # fail now, not in the training loop, if the task's labels are missing

    def _readable(self, records: list[dict], check: str, on_error: str) -> list[dict]:
        """The records whose image can be read; raise on the first other, or skip and report them."""
        kept = []
        for record in records:
            problem = image_problem(record["file"], check)
            if problem is None:
                kept.append(record)
            elif on_error == "raise":
                raise DatasetError(f"{self.source}: cannot read image {record['file']}: {problem} "
                                   "(pass on_error='skip' to leave such files out)")
            else:
                self.skipped.append((str(record["file"]), problem))
        if self.skipped:
            warnings.warn(f"{self.source}: skipped {len(self.skipped)} unreadable or missing image(s) of "
                          f"{len(records)}, e.g. {self.skipped[0][0]} ({self.skipped[0][1]}); see .skipped",
                          stacklevel=4)
        if not kept:
            raise DatasetError(f"{self.source}: none of its {len(records)} images could be read")
        return kept

    # --- constructors ------------------------------------------------------------------------------------------
    @classmethod
    def from_manifest(cls, csv_path, image_root=None, task: str = "identity", image_size: int = 224,
                      on_error: str = "raise", check: str = "verify", *, classes: Sequence[str] | None = None,
                      alpha_background=WHITE) -> "FaceDataset":
        """Read a UTF-8 CSV with header ``path,identity,gender[,...]``.

        Paths are relative to ``image_root`` (default: the CSV's folder) unless absolute; each image may be listed
        once. Gender accepts 0/1, f/m, female/male (case-insensitive; 1 = male); empty cells mean unknown. The
        ``identity`` column may be omitted for ``task="gender"``, and ``gender`` for ``task="identity"``; extra
        columns go to ``metadata``. A byte-order mark and CRLF line ends are fine; blank lines are skipped; every
        other line must have as many fields as the header. ``classes`` and ``alpha_background``: see the class.
        """
        _check_task(task)
        csv_path = Path(csv_path)
        _require_file(csv_path, "manifest", f"expected {MANIFEST_FORMAT}")
        root = Path(image_root) if image_root is not None else csv_path.parent
        where = f"manifest {csv_path}"
        columns, rows = _read_csv(csv_path, where)
        for needed in ("path", task):
            if needed not in columns:
                raise DatasetError(f"{where} has no {needed!r} column (columns: {columns}); expected a header "
                                   f"path,identity,gender[,...] with {needed!r} for task={task!r}")
        records, first_line = [], {}
        for line, fields in rows:
            row = dict(zip(columns, fields))
            path = row["path"].strip()
            if not path:
                raise DatasetError(f"{where}, line {line}: empty path")
            record = _record(root, path, (row.get("identity") or "").strip() or None,
                             _parse_gender(row.get("gender"), f"{where}, line {line}"),
                             {key: value for key, value in row.items() if key not in ("path", "identity", "gender")})
            key = os.path.normpath(record["file"])
            if key in first_line:
                raise DatasetError(f"{where}, line {line}: {path} is listed again (first on line {first_line[key]}); "
                                   "each image may be listed once")
            first_line[key] = line
            records.append(record)
        return cls(records, root, task, image_size, on_error, check, source=where, classes=classes,
                   alpha_background=alpha_background)

    @classmethod
    def from_celeba(cls, root, task: str = "identity", image_size: int = 224, on_error: str = "raise",
                    check: str = "verify", split: str | None = None, *, classes: Sequence[str] | None = None,
                    alpha_background=WHITE) -> "FaceDataset":
        """Read the CelebA layout: ``img_align_celeba/``, ``list_attr_celeba.txt``, ``identity_CelebA.txt``.

        The attribute ``Male`` (1/-1) gives gender and the other 39 attributes go to ``metadata`` (as 1/0). The
        file of the task's label is required, the other one is read when present. ``split`` ("train", "valid" or
        "test") selects a partition of ``list_eval_partition.txt``.

        CelebA's official partitions hold **disjoint identities**: nobody in "valid" or "test" occurs in "train".
        Identity labels of those partitions are therefore refused unless ``classes`` numbers them (and then every
        identity must be in it, which a model trained on another partition cannot satisfy). For a held-out set of
        identity classification, read all images (``split=None``) and use
        :func:`~lrp_faces.faces.split_by_image`. Gender labels work with any partition.
        """
        _check_task(task)
        root = Path(root)
        if split is not None and split not in CELEBA_PARTITIONS:
            raise DatasetError(f"split must be one of {tuple(CELEBA_PARTITIONS)} or None, got {split!r}")
        if root.is_file():
            raise DatasetError(f"CelebA root {root} is a file; expected the CelebA folder holding {CELEBA_LAYOUT}")
        images = root / "img_align_celeba"
        attributes_file, identity_file = root / "list_attr_celeba.txt", root / "identity_CelebA.txt"
        required = {"identity": identity_file, "gender": attributes_file}.get(task)
        for path in (images, required):
            if path is not None and not path.exists():
                raise DatasetError(f"CelebA root {root}: {path.name} is missing; expected {CELEBA_LAYOUT}")
        identities = _read_pairs(identity_file) if identity_file.exists() else {}
        attributes = _read_celeba_attributes(attributes_file) if attributes_file.exists() else {}
        names = list(identities) if identities else list(attributes)
        refusal = None
        if split is not None:
            partition = _read_pairs(root / "list_eval_partition.txt", required_for=f"split={split!r}")
            names = [name for name in names if partition.get(name) == CELEBA_PARTITIONS[split]]
            if split != "train" and not (classes is not None and task == "identity"):
                refusal = (f"CelebA root {root}, split={split!r}: identity labels are refused. "
                           + CELEBA_DISJOINT.format(split=repr(split)))
                if task == "identity":
                    raise DatasetError(refusal)
        records = []
        for name in names:
            extra = dict(attributes.get(name, {}))
            male = extra.pop("Male", None)
            records.append(_record(images, name, identities.get(name), None if male is None else int(male), extra))
        dataset = cls(records, images, task, image_size, on_error, check, source=f"CelebA root {root}",
                      classes=classes, alpha_background=alpha_background)
        dataset._identity_refusal = refusal
        return dataset

    @classmethod
    def from_folders(cls, root, task: str = "identity", image_size: int = 224, on_error: str = "raise",
                     check: str = "verify", *, classes: Sequence[str] | None = None,
                     alpha_background=WHITE) -> "FaceDataset":
        """Read one folder per identity (VGGFace2 / LFW style): ``root/<identity>/<image>``; gender is unknown.

        Files with the extensions of :data:`IMAGE_EXTENSIONS` (any case) count as images; hidden files and other
        files are ignored. Identity folders without images are left out with a warning (with ``classes`` they keep
        their class). ``classes`` and ``alpha_background``: see the class.
        """
        _check_task(task)
        root = Path(root)
        if root.is_file():
            raise DatasetError(f"{root} is a file; from_folders expects a folder with one sub-folder of images per "
                               "identity (root/<identity>/<image>)")
        if not root.is_dir():
            raise DatasetError(f"folder {root} does not exist; expected one sub-folder of images per identity")
        records, empty = [], []
        for folder in sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith(".")):
            files = [file for file in sorted(folder.iterdir())
                     if file.suffix.lower() in IMAGE_EXTENSIONS and not file.name.startswith(".")]
            records += [_record(root, f"{folder.name}/{file.name}", folder.name, None, {}) for file in files]
            if not files:
                empty.append(folder.name)
        if not records:
            raise DatasetError(f"folder {root} holds no images; expected root/<identity>/<image> with extensions "
                               f"{IMAGE_EXTENSIONS}")
        if empty and (classes is None or not set(empty) <= set(classes)):
            warnings.warn(f"folder {root}: {len(empty)} identity folder(s) hold no images ({_listing(empty)}) and "
                          "are left out of the classes", LRPFacesWarning, stacklevel=2)
        return cls(records, root, task, image_size, on_error, check, source=f"folder {root}", classes=classes,
                   alpha_background=alpha_background)

    # --- the Dataset interface -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.load_image(index), int(self.labels()[index])

    def load_image(self, index: int) -> torch.Tensor:
        """Image ``index`` as float32 (3, S, S) in [0, 1]."""
        file = self._files[index]
        try:
            pixels, composited = read_image(file, self.image_size, self.alpha_background)
        except DatasetError as error:
            raise DatasetError(f"{self.source}: {error}") from None
        except READ_ERRORS as error:
            raise DatasetError(f"{self.source}: cannot read image {file}: {error}") from error
        if composited and not self._transparency_notice["warned"]:
            self._transparency_notice["warned"] = True
            warnings.warn(f"{self.source}: image {file} (and perhaps others) has transparent pixels; they are "
                          f"composited over alpha_background={self.alpha_background} (RGB in [0, 1]). Pass "
                          "alpha_background=... when building the data set to choose another colour. (Said once "
                          "per data set.)", LRPFacesWarning, stacklevel=2)
        return pixels

    def labels(self, task: str | None = None) -> np.ndarray:
        """Integer labels (N,) of ``task`` (default: the data set's task)."""
        task = task or self.task
        _check_task(task)
        if task == "identity" and self._identity_refusal is not None:
            raise DatasetError(self._identity_refusal)
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
        """Class names of ``task`` in class order: the original identities, or ("female", "male")."""
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


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _checked_classes(classes, task: str) -> tuple[str, ...] | None:
    """``classes`` as a tuple of distinct, non-empty str (None stays None); for gender, ("female", "male")."""
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not all(isinstance(name, str) for name in classes):
        raise DatasetError(f"classes must be a sequence of str (class names in class order), got {classes!r}")
    classes = tuple(classes)
    if not classes or any(not name.strip() for name in classes):
        raise DatasetError(f"classes must be non-empty class names, got {classes!r}")
    repeated = sorted({name for name in classes if classes.count(name) > 1})
    if repeated:
        raise DatasetError(f"classes must be distinct; {_listing(repeated)} occur(s) more than once")
    if task == "gender" and classes != GENDER_NAMES:
        raise DatasetError(f"gender classes are {GENDER_NAMES} (0 = female, 1 = male), got classes={classes!r}; "
                           "pass the class names of a gender model, or none")
    return classes


def _identities(metadata: list[dict]) -> set[str]:
    return {str(m["identity"]) for m in metadata if m["identity"] is not None}


def _number_identities(found: set[str], classes: tuple[str, ...] | None, metadata: list[dict],
                       source: str) -> dict[str, int]:
    """Identity -> class: by ``classes``, where every identity must occur, else in sorted order of ``found``."""
    if classes is None:
        return {original: index for index, original in enumerate(sorted(found, key=_sort_key))}
    outside = sorted(found - set(classes), key=_sort_key)
    if outside:
        counts = {name: 0 for name in outside}
        for m in metadata:
            if m["identity"] is not None and str(m["identity"]) in counts:
                counts[str(m["identity"])] += 1
        named = ", ".join(f"{name!r} ({counts[name]} image{'s' * (counts[name] != 1)})" for name in outside[:5])
        raise DatasetError(f"{source}: {len(outside)} identit{'ies are' if len(outside) > 1 else 'y is'} not in the "
                           f"given classes: {named}{' ...' if len(outside) > 5 else ''}; the {len(classes)} classes "
                           f"are e.g. {_listing(classes, 3)}. A model cannot be scored on identities it has no "
                           "class for: leave those images out, or pass the class list they belong to")
    return {name: index for index, name in enumerate(classes)}


def _warn_about_look_alikes(identities: set[str], source: str) -> None:
    """Warn when identities differ only by letter case or inner whitespace: likely one person spelled twice."""
    spellings: dict[str, list[str]] = {}
    for name in sorted(identities):
        spellings.setdefault(" ".join(name.split()).casefold(), []).append(name)
    alike = [names for names in spellings.values() if len(names) > 1]
    if alike:
        warnings.warn(f"{source}: {len(alike)} group(s) of identities differ only by letter case or whitespace, e.g. "
                      f"{_listing(alike[0])}; they are distinct classes. Spell each identity one way if they are one "
                      "person", LRPFacesWarning, stacklevel=4)


def _record(root: Path, path: str, identity, gender, extra: dict) -> dict:
    file = Path(path) if Path(path).is_absolute() else root / path
    metadata = {"path": path, "identity": identity, "gender": gender, **extra}
    return {"file": file, "metadata": metadata}


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


def _require_file(path: Path, what: str, expected: str) -> None:
    if path.is_dir():
        raise DatasetError(f"{what} {path} is a folder; {expected}")
    if not path.is_file():
        raise DatasetError(f"{what} {path} does not exist; {expected}")


def _read_text(path: Path, where: str) -> str:
    """The file's text, decoded as UTF-8 (a byte-order mark is dropped); else an error naming the line."""
    raw = path.read_bytes()
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DatasetError(f"{where}: the file is UTF-16 text (it starts with a UTF-16 byte-order mark); it must be "
                           "UTF-8 (save it as 'CSV UTF-8', or convert it, e.g. iconv -f utf-16 -t utf-8)")
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    position, problem = raw.find(b"\0"), "a NUL byte: this is not a text file"
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        if position < 0 or error.start < position:
            position = error.start
            problem = (f"byte 0x{raw[position]:02x} is not UTF-8; the file must be UTF-8 text (save it as 'CSV UTF-8', "
                       "or convert it, e.g. iconv -f latin1 -t utf-8)")
    if position >= 0:
        line = raw.count(b"\n", 0, position) + 1
        column = position - (raw.rfind(b"\n", 0, position) + 1) + 1
        raise DatasetError(f"{where}, line {line}, byte {column}: {problem}")
    return text


def _read_csv(path: Path, where: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header's column names and ``(line, fields)`` of every non-blank row, each as long as the header."""
    reader = csv.reader(io.StringIO(_read_text(path, where), newline=""), strict=True)
    columns, rows, line = None, [], 1
    try:
        for fields in reader:
            if any(field.strip() for field in fields):
                if columns is None:
                    columns = _checked_header(fields, where, line)
                elif len(fields) != len(columns):
                    raise DatasetError(f"{where}, line {line}: {len(fields)} fields where the header has "
                                       f"{len(columns)} ({','.join(columns)}); a value with a comma must be quoted")
                else:
                    rows.append((line, fields))
            line = reader.line_num + 1
    except csv.Error as error:
        raise DatasetError(f"{where}, line {line}: not valid CSV ({error})") from None
    if columns is None:
        raise DatasetError(f"{where} is empty; expected {MANIFEST_FORMAT}")
    return columns, rows


def _checked_header(fields: list[str], where: str, line: int) -> list[str]:
    columns = [name.strip() for name in fields]
    separator = next((mark for mark in (";", "\t", "|") if len(columns) == 1 and mark in columns[0]), None)
    if separator is not None:
        raise DatasetError(f"{where}, line {line}: the header is one column {fields[0]!r}; the manifest must be "
                           f"separated by commas, not by {separator!r}")
    if not all(columns):
        raise DatasetError(f"{where}, line {line}: column {columns.index('') + 1} of the header has no name "
                           f"(header: {fields}); expected {MANIFEST_FORMAT}")
    repeated = sorted({name for name in columns if columns.count(name) > 1})
    if repeated:
        raise DatasetError(f"{where}, line {line}: the header names column(s) {_listing(repeated)} more than once")
    return columns


def _read_pairs(path: Path, required_for: str | None = None) -> dict[str, str]:
    if not path.exists():
        raise DatasetError(f"{path} is missing; it is needed for {required_for}")
    pairs, first_line = {}, {}
    for line_number, line in enumerate(_read_text(path, str(path)).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise DatasetError(f"{path}, line {line_number}: expected 'filename value', got {line.strip()!r}")
        if fields[0] in first_line:
            raise DatasetError(f"{path}, line {line_number}: {fields[0]} is listed again (first on line "
                               f"{first_line[fields[0]]})")
        pairs[fields[0]], first_line[fields[0]] = fields[1], line_number
    return pairs


def _read_celeba_attributes(path: Path) -> dict[str, dict[str, int]]:
    lines = [(number, line.split()) for number, line in enumerate(_read_text(path, str(path)).splitlines(), start=1)
             if line.strip()]
    if len(lines) < 2 or "Male" not in lines[1][1]:
        raise DatasetError(f"{path}: expected a count line, a line of attribute names including 'Male', then "
                           "'filename v1 v2 ...' lines")
    names = lines[1][1]
    attributes = {}
    for line_number, fields in lines[2:]:
        if len(fields) != len(names) + 1 or any(value not in ("1", "-1") for value in fields[1:]):
            raise DatasetError(f"{path}, line {line_number}: expected a filename and {len(names)} values of 1/-1")
        if fields[0] in attributes:
            raise DatasetError(f"{path}, line {line_number}: {fields[0]} is listed again")
        attributes[fields[0]] = {name: int(value == "1") for name, value in zip(names, fields[1:])}
    return attributes
