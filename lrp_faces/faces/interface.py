"""One interface to face data: what every function of lrp_faces that takes a data set reads from it.

A data set can be any of

* a :class:`~lrp_faces.faces.FaceDataset` (real faces, read from their files when needed),
* a :class:`~lrp_faces.faces.SyntheticFaces` or :class:`~lrp_faces.faces.SyntheticObjects` (held in memory),
* a plain pair ``(images, labels)``: ``images`` a float tensor (N, 3, H, W), RGB in [0, 1]; ``labels`` an integer
  array (N,) that is the label of every task, or a mapping task -> integer array (N,). The keys ``"identity"`` and
  ``"gender"`` also give the images' identity and gender; image ids are ``"0"``, ``"1"``, ...
* any other ``torch.utils.data.Dataset`` of ``(image, label)``: its label is that of every task (reading the labels
  reads every item once); image ids are ``"0"``, ``"1"``, ... unless it has ``image_ids``.

:func:`as_face_data` gives each of them the :class:`FaceData` interface. ``label_names`` maps a model's task to the
label it is scored on, e.g. ``{"sex": "gender"}`` for models whose task is called ``"sex"``.

>>> import torch
>>> from lrp_faces.faces import as_face_data, synthetic_faces
>>> faces = as_face_data(synthetic_faces(3, 2, size=32))
>>> len(faces), faces.image_size, faces.image_ids[:2]
(6, 32, ['id000_img00', 'id000_img01'])
>>> faces.labels("identity").tolist(), faces.class_names("gender")
([0, 0, 1, 1, 2, 2], ('female', 'male'))
>>> faces.load(0, 2).shape
torch.Size([2, 3, 32, 32])
>>> faces.subset([1, 4]).image_ids
['id000_img01', 'id002_img00']
>>> pair = as_face_data((torch.rand(4, 3, 32, 32), {"identity": [0, 1, 0, 1]}))
>>> pair.labels("identity").tolist(), pair.class_names("identity"), pair.gender.tolist()
([0, 1, 0, 1], None, [-1, -1, -1, -1])
>>> renamed = as_face_data(synthetic_faces(2, 2, size=32), label_names={"sex": "gender"})
>>> renamed.labels("sex").tolist() == renamed.gender.tolist(), renamed.class_names("sex")
(True, ('female', 'male'))

The same module holds the readers the cube, masking and analysis steps share: :func:`load_images`,
:func:`task_labels` and :func:`describe_images`.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np
import torch
from tqdm.auto import tqdm

from ..files import canonical_json
from ._errors import DatasetError, DataTypeError
from ._indexing import selected_indices

__all__ = ["FaceData", "FaceDataView", "as_face_data", "ImageTable", "load_images", "task_labels",
           "describe_images", "check_images"]


@runtime_checkable
class FaceData(Protocol):
    """What lrp_faces reads from a data set (see the module's documentation for the kinds accepted).

    Attributes
    ----------
    image_ids : list of str
        Unique, one per image.
    images : torch.Tensor or None
        All images (N, 3, H, W) float32 in [0, 1] where they are held in memory, else None (use :meth:`load`).
    image_size : int or None
        Side of the square images (None where they are not square).
    identity, gender : ndarray (N,) int64
        Identity class and gender (0 female, 1 male); -1 where unknown.
    """

    image_ids: list
    image_size: int | None
    identity: np.ndarray
    gender: np.ndarray

    @property
    def images(self) -> torch.Tensor | None: ...

    def __len__(self) -> int: ...

    def load(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` as float32 (n, 3, H, W) in [0, 1]."""

    def labels(self, task: str) -> np.ndarray:
        """The labels (N,) int64 that models of ``task`` are scored on; every one known (>= 0)."""

    def class_names(self, task: str) -> tuple[str, ...] | None:
        """The class names of ``task`` in class order, or None where they are unknown."""

    def subset(self, indices) -> "FaceData":
        """The images at ``indices`` (ints or a boolean mask), with class numbering and names unchanged."""


class ImageTable(NamedTuple):
    """What is recorded about a data set's images: ids, identity and gender (-1 unknown), size and a digest."""

    ids: list
    identity: np.ndarray
    gender: np.ndarray
    height: int
    width: int
    digest: str


def check_images(images, name: str = "images") -> torch.Tensor:
    """``images`` as a tensor after checking it is float (N, 3, H, W), finite and in [0, 1]; else a DatasetError."""
    images = torch.from_numpy(images) if isinstance(images, np.ndarray) else images
    if not isinstance(images, torch.Tensor):
        raise DataTypeError(f"{name} must be a torch.Tensor (N, 3, H, W), got {type(images).__name__}")
    problem = None
    if not images.is_floating_point():
        problem = f"dtype {images.dtype}; convert uint8 images with images.float() / 255"
    elif images.ndim != 4 or images.shape[1] != 3 or images.shape[0] == 0:
        problem = f"shape {tuple(images.shape)}"
    elif not bool(torch.isfinite(images).all()):
        problem = "NaN or Inf values"
    elif float(images.min()) < 0.0 or float(images.max()) > 1.0:
        problem = f"values in [{float(images.min()):.4g}, {float(images.max()):.4g}]"
    if problem is not None:
        raise DatasetError(f"{name} must be float RGB (N, 3, H, W) with N > 0 and values in [0, 1]; got {problem}")
    return images


class _LabelledImages:
    """A plain ``(images, labels)`` pair as a data set: images in memory, labels per task or one for all."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray | dict[str, np.ndarray], image_ids: list[str]):
        self.images, self._labels, self.image_ids = images, labels, image_ids
        self.image_size = int(images.shape[-1]) if images.shape[-1] == images.shape[-2] else None
        named = labels if isinstance(labels, dict) else {}
        self.identity = named.get("identity", np.full(len(images), -1, dtype=np.int64))
        self.gender = named.get("gender", np.full(len(images), -1, dtype=np.int64))

    @classmethod
    def from_pair(cls, images, labels) -> "_LabelledImages":
        images = check_images(images, "the images of the (images, labels) pair").to(torch.float32)  # no copy if so
        count = len(images)
        if isinstance(labels, Mapping):
            if not labels or not all(isinstance(task, str) for task in labels):
                raise DatasetError(f"the labels of the (images, labels) pair must map task names (str) to labels, "
                                   f"got keys {list(labels)}")
            labels = {task: _integers(values, count, f"labels[{task!r}] of the (images, labels) pair")
                      for task, values in labels.items()}
        else:
            labels = _integers(labels, count, "the labels of the (images, labels) pair")
        return cls(images, labels, [str(index) for index in range(count)])

    def __len__(self) -> int:
        return len(self.images)

    def labels(self, task: str) -> np.ndarray:
        if not isinstance(self._labels, dict):
            return self._labels
        if task not in self._labels:
            raise DatasetError(f"the (images, labels) pair has labels for {sorted(self._labels)}, not for {task!r}")
        return self._labels[task]

    def subset(self, indices) -> "_LabelledImages":
        indices = selected_indices(len(self), indices)
        labels = ({task: values[indices] for task, values in self._labels.items()} if isinstance(self._labels, dict)
                  else self._labels[indices])
        return _LabelledImages(self.images[torch.from_numpy(indices)], labels,
                               [self.image_ids[index] for index in indices])


class _HeldImages:
    """A data set's images held in memory; everything else is read from the data set itself."""

    def __init__(self, source, images: torch.Tensor):
        self.source, self.images = source, images

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        return f"{self.source!r} (images in memory)"

    def subset(self, indices) -> "_HeldImages":
        indices = selected_indices(len(self), indices)
        return _HeldImages(self.source.subset(indices), self.images[torch.from_numpy(indices)])

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("source", "images"):  # not set yet: while copying or unpickling
            raise AttributeError(name)
        return getattr(self.source, name)


def _integers(values, count: int, name: str) -> np.ndarray:
    """``values`` as int64 (count,); else a DatasetError naming ``name``."""
    array = np.asarray(values.cpu() if isinstance(values, torch.Tensor) else values)
    if array.shape != (count,) or not (np.issubdtype(array.dtype, np.integer) or (array.size == 0)):
        raise DatasetError(f"{name} must hold one integer per image ({count}), got shape {array.shape} and dtype "
                           f"{array.dtype}")
    return array.astype(np.int64)


def _is_pair(data) -> bool:
    return isinstance(data, (tuple, list)) and len(data) == 2 and isinstance(data[0], (torch.Tensor, np.ndarray))


class FaceDataView:
    """The :class:`FaceData` interface over a data set (``source``); build it with :func:`as_face_data`.

    ``labels``, ``class_names`` and ``task_mask`` read the source's label that ``label_names`` maps the task to.
    Other public attributes are the source's (e.g. ``regions`` of synthetic faces). :meth:`in_memory` reads images
    from files once and holds them.
    """

    def __init__(self, source, label_names: Mapping[str, str] | None = None):
        self.source = source
        self.label_names = dict(label_names or {})
        count = len(source)
        ids = getattr(source, "image_ids", None)
        self.image_ids = [str(index) for index in range(count)] if ids is None else [str(value) for value in ids]
        if len(self.image_ids) != count:
            raise DatasetError(f"the dataset has {count} images but {len(self.image_ids)} image_ids")
        if len(set(self.image_ids)) != count:
            seen = set()
            duplicate = next(value for value in self.image_ids if value in seen or seen.add(value))
            raise DatasetError(f"image ids must be unique; {duplicate!r} occurs {self.image_ids.count(duplicate)} "
                               "times")
        self.identity = _per_image(source, "identity", count)
        self.gender = _per_image(source, "gender", count)
        held = getattr(source, "images", None)
        self.images: torch.Tensor | None = held if isinstance(held, torch.Tensor) else None
        size = getattr(source, "image_size", None)
        if size is None and self.images is not None and self.images.shape[-1] == self.images.shape[-2]:
            size = int(self.images.shape[-1])
        self.image_size: int | None = None if size is None else int(size)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return f"FaceDataView({self.source!r}, label_names={self.label_names})"

    def label_name(self, task: str) -> str:
        """The source's label that models of ``task`` are scored on."""
        return self.label_names.get(task, task)

    def load(self, start: int, stop: int) -> torch.Tensor:
        """Images ``start:stop`` as float32 (n, 3, H, W) in [0, 1]."""
        return load_images(self.source, start, stop)

    def take(self, indices) -> torch.Tensor:
        """The images at ``indices`` (ints or a boolean mask), in that order, as float32 (n, 3, H, W) in [0, 1].

        Held images are indexed; others are read from their files, each run of consecutive indices at once.
        """
        indices = selected_indices(len(self), indices)
        if self.images is not None:
            return self.images[torch.from_numpy(indices)]
        if not len(indices):
            return self.load(0, 1)[:0]
        runs = np.split(indices, np.flatnonzero(np.diff(indices) != 1) + 1)
        return torch.cat([self.load(int(run[0]), int(run[-1]) + 1) for run in runs])

    def labels(self, task: str) -> np.ndarray:
        """The labels (N,) int64 of the source's label for ``task``, checked: one known class per image."""
        label = self.label_name(task)
        try:
            return task_labels(self.source, label, len(self))
        except DatasetError as error:
            if label == task:
                raise
            raise DatasetError(f"models of task {task!r} are scored on the label {label!r}: {error}") from None

    def class_names(self, task: str) -> tuple[str, ...] | None:
        """The class names of ``task`` from the source, or None where it has none."""
        names = getattr(self.source, "class_names", None)
        if not callable(names):
            return None
        value = names(self.label_name(task))
        return None if value is None else tuple(str(name) for name in value)

    def in_memory(self, progress: bool = False) -> "FaceDataView":
        """The same data with every image read once and held in ``images`` (itself where they are held already).

        Parameters
        ----------
        progress : bool
            Show a progress bar while the images are read.
        """
        if self.images is not None:
            return self
        chunks = [load_images(self.source, start, min(start + 64, len(self)))
                  for start in tqdm(range(0, len(self), 64), desc="load images", unit="batch of 64",
                                    disable=not progress, leave=False)]
        return FaceDataView(_HeldImages(self.source, torch.cat(chunks)), self.label_names)

    def subset(self, indices) -> "FaceDataView":
        """The images at ``indices`` (ints or a boolean mask), with class numbering and names unchanged."""
        if not callable(getattr(self.source, "subset", None)):
            raise DataTypeError(f"{type(self.source).__name__} has no subset(indices); wrap its images and labels "
                                "as an (images, labels) pair instead")
        return FaceDataView(self.source.subset(selected_indices(len(self), indices)), self.label_names)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name in ("source", "label_names"):  # not set yet: while copying or unpickling
            raise AttributeError(name)
        value = getattr(self.source, name)
        if name == "task_mask" and callable(value):  # the ground truth of a task is that of its label
            return lambda task=None: value(None if task is None else self.label_name(task))
        return value


def as_face_data(data, *, label_names: Mapping[str, str] | None = None) -> FaceDataView:
    """Give ``data`` the :class:`FaceData` interface (see the module's documentation for the kinds accepted).

    Parameters
    ----------
    data : FaceDataset, SyntheticFaces, SyntheticObjects, (images, labels) or FaceDataView
    label_names : mapping of str to str, optional
        Model task -> the label it is scored on (default: the task's own name).

    Returns
    -------
    FaceDataView

    Raises
    ------
    DataTypeError
        ``data`` is none of the kinds accepted.
    DatasetError
        Its image ids are not unique, or its images, labels, identity or gender are malformed.
    """
    if label_names is not None and (not isinstance(label_names, Mapping) or not all(
            isinstance(key, str) and isinstance(value, str) for key, value in label_names.items())):
        raise DataTypeError(f"label_names must map model tasks (str) to label names (str), got {label_names!r}")
    if isinstance(data, FaceDataView):
        if not label_names:
            return data
        composed = {task: data.label_name(label) for task, label in label_names.items()}
        return FaceDataView(data.source, {**data.label_names, **composed})
    if _is_pair(data):
        return FaceDataView(_LabelledImages.from_pair(*data), label_names)
    if isinstance(data, (tuple, list)):
        raise DataTypeError(f"a data set given as a {type(data).__name__} must be a pair (images, labels) with images "
                            f"a tensor (N, 3, H, W), got {len(data)} item(s)")
    if isinstance(data, (str, bytes, os.PathLike)):
        raise DataTypeError(f"a path is not a data set: build one first, e.g. FaceDataset.from_manifest({data!r}), "
                            "FaceDataset.from_folders(...) or FaceDataset.from_celeba(...)")
    if not hasattr(data, "__len__") or not (isinstance(data, torch.utils.data.Dataset)
                                            or isinstance(getattr(data, "images", None), torch.Tensor)
                                            or callable(getattr(data, "load_image", None))):
        raise DataTypeError(f"expected a FaceDataset, SyntheticFaces, an (images, labels) pair or a torch Dataset of "
                            f"(image, label), got {type(data).__name__}")
    return FaceDataView(data, label_names)


def _source(dataset):
    """The object to read: a view's source, a pair as a data set, else ``dataset`` itself."""
    if isinstance(dataset, FaceDataView):
        return dataset.source
    return _LabelledImages.from_pair(*dataset) if _is_pair(dataset) else dataset


# ------------------------------------------------------------------------------------------------- the readers
def load_images(dataset, start: int, stop: int) -> torch.Tensor:
    """Images ``start:stop`` of ``dataset`` (n, 3, H, W): from ``.images``, ``.load_image(i)`` or ``dataset[i][0]``.

    Any data set :func:`as_face_data` accepts; held images are returned as they are held (a view, not a copy).
    """
    dataset = dataset.source if isinstance(dataset, FaceDataView) else dataset
    if _is_pair(dataset):
        return torch.as_tensor(dataset[0][start:stop]).to(torch.float32)
    held = getattr(dataset, "images", None)
    if isinstance(held, torch.Tensor):
        return held[start:stop]
    loader = getattr(dataset, "load_image", None)
    if callable(loader):
        return torch.stack([torch.as_tensor(loader(index)) for index in range(start, stop)])
    return torch.stack([torch.as_tensor(dataset[index][0]) for index in range(start, stop)])


def task_labels(dataset, task: str, count: int | None = None) -> np.ndarray:
    """``dataset.labels(task)`` as int64, checked to be one known (non-negative) class per image.

    A ``torch.utils.data.Dataset`` without ``labels(task)`` gives the labels of its items ``dataset[i][1]`` for every
    task. ``count`` is the number of images expected (default: ``len(dataset)``).
    """
    dataset = _source(dataset)
    count = len(dataset) if count is None else count
    generic = isinstance(dataset, torch.utils.data.Dataset) and not callable(getattr(dataset, "labels", None))
    if not callable(getattr(dataset, "labels", None)) and not generic:
        raise DatasetError(f"the dataset has no labels(task) method; models of task {task!r} need its labels")
    try:
        labels = (np.array([np.asarray(dataset[index][1]).item() for index in range(count)]) if generic
                  else np.asarray(dataset.labels(task)))
    except ValueError as error:
        raise DatasetError(f"the dataset has no usable {task!r} labels for models of task {task!r}: {error}") \
            from None
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise DatasetError(f"dataset.labels({task!r}) must give one integer class per image ({count}), got shape "
                           f"{labels.shape} and dtype {labels.dtype}")
    if (labels < 0).any():
        raise DatasetError(f"dataset.labels({task!r}) has negative (unknown) labels, e.g. for image "
                           f"{int(np.flatnonzero(labels < 0)[0])}")
    return labels.astype(np.int64)


def _per_image(dataset, name: str, count: int) -> np.ndarray:
    values = getattr(dataset, name, None)
    if values is None:
        return np.full(count, -1, dtype=np.int64)
    return _integers(values, count, f"dataset.{name}")


def describe_images(dataset) -> ImageTable:
    """Check ``dataset`` and return the ids, identity, gender, size and digest of its images.

    The digest (SHA-256) covers the ids and the size (as compact sorted-key JSON), identity and gender (as
    little-endian int64), and every pixel of images held in memory (float32); of images read from files, the first
    and the last image stand in for all (hashing them all would read them all). Cubes record it as
    ``images_sha256``: these bytes must not change, or every cube computed before would be recomputed.

    Raises
    ------
    DatasetError
        The data set is empty, its ids are not unique, or its first image is not float RGB in [0, 1] of the size
        it declares.
    """
    view = as_face_data(dataset)
    count = len(view)
    if count == 0:
        raise DatasetError("the dataset is empty: there are no images to explain")
    first = check_images(view.load(0, 1), "the dataset's first image")
    height, width = (int(size) for size in first.shape[2:])
    if view.image_size is not None and (height, width) != (view.image_size, view.image_size):
        raise DatasetError(f"the dataset says image_size={view.image_size} but its first image is {height}x{width} "
                           "pixels")
    digest = hashlib.sha256(canonical_json({"ids": view.image_ids, "size": [height, width]}).encode())
    digest.update(view.identity.astype("<i8").tobytes())
    digest.update(view.gender.astype("<i8").tobytes())
    if view.images is not None:  # in memory: hash every pixel, a few at a time
        for start in range(0, count, 256):
            digest.update(view.images[start:start + 256].float().contiguous().numpy().tobytes())
    else:
        digest.update(first.float().contiguous().numpy().tobytes())
        digest.update(view.load(count - 1, count).float().contiguous().numpy().tobytes())
    return ImageTable(view.image_ids, view.identity, view.gender, height, width, digest.hexdigest())

