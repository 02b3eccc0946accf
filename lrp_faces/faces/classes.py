"""Class numbering shared by a model and a data set: a class means the same person (or gender) on both sides.

A data set numbers its classes by itself (e.g. the identities it holds, in sorted order), a model by the data it was
trained on. Where both record class names, :func:`class_mapping` maps the data set's class numbers to the model's
by name; a data set may hold any subset of the model's classes, but not a class the model does not know:

>>> class_mapping(("alice", "bob", "carol"), ("bob", "carol"), "identity", "model faces-identity-seed0").tolist()
[1, 2]
>>> class_mapping(("alice", "bob"), ("bob", "dave"), "identity", "model m")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
lrp_faces.faces.classes.ClassMismatchError: model m, task 'identity': the data set's class 1 'dave' is not a class ...
>>> class_mapping(None, ("bob", "carol"), "identity", "model faces-identity-seed0") is None  # no names: positional
True
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._errors import DatasetError

__all__ = ["class_mapping", "ClassMismatchError"]


class ClassMismatchError(DatasetError):
    """A model and a data set whose classes disagree: a class of the data set that the model does not know, or
    labels beyond the model's classes."""


def _names(classes: Sequence[str] | None, what: str) -> tuple[str, ...] | None:
    if classes is None:
        return None
    if isinstance(classes, (str, bytes)) or not isinstance(classes, Sequence):
        raise DatasetError(f"{what} must be a sequence of class names (str) or None, got {classes!r}")
    return tuple(str(name) for name in classes)


def _listing(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(name) for name in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def class_mapping(model_classes: Sequence[str] | None, data_classes: Sequence[str] | None, task: str,
                  where: str = "the model", *, labels=None) -> np.ndarray | None:
    """How a data set's class numbers of ``task`` map to a model's: ``mapping[k]`` is the model's class of the data
    set's class ``k`` (the model's index of the data set's class name ``k``).

    Parameters
    ----------
    model_classes : sequence of str, optional
        The model's class names in output order (``model.class_names``, a checkpoint's ``class_names``).
    data_classes : sequence of str, optional
        The data set's class names of ``task`` in label order (``as_face_data(data).class_names(task)``).
    task : str
        The model's task, for messages.
    where : str
        Names the model in messages, e.g. ``"model imagenet-identity-seed0"``.
    labels : array-like of int, optional
        The data set's labels: then only the classes that occur in them must be the model's (the others map to
        -1), e.g. for a subset of a data set whose class list is longer than the model's.

    Returns
    -------
    ndarray (len(data_classes),) int64, or None
        None where either side has no class names: the labels then keep their positional meaning (class ``k`` is
        the model's output ``k``); check their range against the model's outputs.

    Raises
    ------
    ClassMismatchError
        A class of the data set (that occurs in ``labels``, where given) is not a class of the model; the message
        names the first such classes and the model's classes.
    """
    model_names = _names(model_classes, "model_classes")
    data_names = _names(data_classes, "data_classes")
    if model_names is None or data_names is None:
        return None
    position: dict[str, int] = {}
    for index, name in enumerate(model_names):
        position.setdefault(name, index)
    mapping = np.array([position.get(name, -1) for name in data_names], dtype=np.int64)
    needed = np.arange(len(data_names)) if labels is None else np.unique(np.asarray(labels, dtype=np.int64))
    beyond = needed[(needed < 0) | (needed >= len(data_names))]
    if len(beyond):
        raise ClassMismatchError(f"{where}, task {task!r}: the data set has label {int(beyond[0])} but only "
                                 f"{len(data_names)} class names ({_listing(data_names, 3)})")
    unknown = [int(k) for k in needed if mapping[k] < 0]
    if unknown:
        first = ", ".join(f"{k} {data_names[k]!r}" for k in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
        noun = "class" if len(unknown) == 1 else f"{len(unknown)} classes"
        verb = "is not a class" if len(unknown) == 1 else "are not classes"
        raise ClassMismatchError(f"{where}, task {task!r}: the data set's {noun} {first} {verb} of the model (its "
                                 f"{len(model_names)} classes are {_listing(model_names)}); score the model on "
                                 "images of its own classes, or build the data set with classes=[...] (the model's "
                                 "class names) to find the images of other classes")
    return mapping
