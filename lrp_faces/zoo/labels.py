"""The labels a zoo's models are scored on, in the models' own class numbering.

Every step that scores models on a data set (:func:`lrp_faces.cube.compute`, the masking steps, the method comparison
and the model RDMs) reads its labels through :func:`scored_labels`: the data set's labels of each task, mapped by
class name to the class numbers of the task's models (:func:`lrp_faces.faces.class_mapping`), and checked against
the models' outputs. A held-out set that lacks some identities therefore keeps the numbering of the models.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import LRPFacesError
from ..faces import ClassMismatchError, as_face_data, class_mapping
from ..models import read_checkpoint_info
from .specs import ModelSpec

__all__ = ["ModelClasses", "TaskLabels", "model_classes", "scored_labels"]


class ModelClasses(NamedTuple):
    """A model's class names (None where it records none) and its number of outputs (None where unknown)."""

    names: tuple[str, ...] | None
    count: int | None


class TaskLabels(NamedTuple):
    """The labels (N,) int64 that a task's models are scored on, in their class numbering, and the names of those
    classes (the models' names where they record them, else the data set's; None where neither has names)."""

    labels: np.ndarray
    class_names: tuple[str, ...] | None


def model_classes(zoo: Mapping, spec: ModelSpec) -> ModelClasses:
    """The class names and outputs of the zoo's model ``spec``, read without its weights where the zoo has files.

    An lrp_faces checkpoint of a :class:`~lrp_faces.zoo.Zoo` is read without its weights; ``torchvision`` and
    ``vgg_face`` files record no class names (their count is the entry's ``num_classes``); any other mapping gives
    the model itself (``model.class_names``, ``model.num_classes``).
    """
    entries = getattr(zoo, "entries", None)
    entry = entries.get(spec) if isinstance(entries, Mapping) else None
    if entry is not None:
        if getattr(entry, "format", None) != "lrp_faces":
            return ModelClasses(None, getattr(entry, "num_classes", None))
        try:
            info = read_checkpoint_info(entry.path)
        except (LRPFacesError, OSError):  # loading the model reports what is wrong with the file
            return ModelClasses(None, None)
        names, count = info.get("class_names"), info.get("architecture", {}).get("num_classes")
        return ModelClasses(None if not names else tuple(str(name) for name in names),
                            count if isinstance(count, int) else None)
    model = zoo[spec]
    names, count = getattr(model, "class_names", None), getattr(model, "num_classes", None)
    return ModelClasses(None if not names else tuple(str(name) for name in names),
                        count if isinstance(count, int) and not isinstance(count, bool) else None)


def scored_labels(zoo: Mapping, specs: Sequence[ModelSpec], data: Any,
                  classes: Mapping[ModelSpec, ModelClasses] | None = None) -> dict[str, TaskLabels]:
    """The labels of every task of ``specs`` in the class numbering of the task's models, checked against them.

    Where a task's models record class names and the data set has them, data-set label ``k`` becomes the models'
    index of the data set's class name ``k`` (:func:`~lrp_faces.faces.class_mapping`): a data set may hold a subset
    of the models' classes, but not a class they do not know. The models of one task that record names must
    number the data set's classes alike. Without names on either side the labels keep their positional meaning.
    Every model's outputs must cover its task's labels.

    Parameters
    ----------
    zoo : Mapping
        ``ModelSpec`` -> model, e.g. :class:`~lrp_faces.zoo.Zoo` (its checkpoints are read without the weights).
    specs : sequence of ModelSpec
        The models scored.
    data
        Any face data (see :func:`lrp_faces.faces.as_face_data`).
    classes : mapping ModelSpec -> ModelClasses, optional
        The models' classes where the caller knows them already (default: :func:`model_classes`).

    Returns
    -------
    dict
        Task -> :class:`TaskLabels`.

    Raises
    ------
    ClassMismatchError
        A data-set class that a model does not know, models of one task that number the classes differently, or
        labels beyond a model's outputs; the message names the model and the classes.
    DatasetError
        The data set has no usable labels for a task.
    """
    data = as_face_data(data)
    found = {}
    for task in sorted({spec.task for spec in specs}):
        labels = data.labels(task)
        data_names = data.class_names(task)
        models = [spec for spec in specs if spec.task == task]
        known = {spec: (classes or {}).get(spec) or model_classes(zoo, spec) for spec in models}
        mapped = [(spec, class_mapping(known[spec].names, data_names, task, f"model {spec}", labels=labels))
                  for spec in models]
        named = [(spec, mapping) for spec, mapping in mapped if mapping is not None]
        names = data_names
        if named:
            first, mapping = named[0]
            present = np.unique(labels)
            for spec, other in named[1:]:
                if not np.array_equal(mapping[present], other[present]):
                    k = int(next(k for k in present if mapping[k] != other[k]))
                    raise ClassMismatchError(
                        f"models {first} and {spec} (task {task!r}) number the data set's class {data_names[k]!r} "
                        f"differently ({int(mapping[k])} and {int(other[k])}): their class names are in another "
                        "order, so one set of labels cannot score both; give the models of one task the same class "
                        "list")
            labels, names = mapping[labels], known[first].names
        for spec in models:
            count = known[spec].count
            if count is not None and len(labels) and int(labels.max()) >= count:
                raise ClassMismatchError(
                    f"model {spec}: the dataset's {task!r} labels go up to {int(labels.max())} but the model has "
                    f"{count} classes (0 to {count - 1}); the model and the dataset do not fit")
        found[task] = TaskLabels(labels.astype(np.int64), None if names is None else tuple(names))
    return found
