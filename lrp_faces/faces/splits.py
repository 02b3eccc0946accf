"""Held-out splits that keep every identity in both parts, as identity classification needs.

>>> from lrp_faces.faces import split_by_image, synthetic_faces
>>> train, test = split_by_image(synthetic_faces(3, 5, size=16), test_fraction=0.2, seed=0)
>>> len(train), len(test), sorted(set(test.identity.tolist()))
(12, 3, [0, 1, 2])
>>> train.class_names("identity") == test.class_names("identity")
True
"""
from __future__ import annotations

import hashlib
import math
from numbers import Real

import numpy as np

from ._errors import DatasetError
from .interface import as_face_data

__all__ = ["split_by_image"]


def split_by_image(dataset, test_fraction: float = 0.2, seed: int = 0):
    """Split ``dataset`` into ``(train, test)`` by image, stratified per identity.

    Of each identity's n images, ``max(1, min(n - 1, floor(n * test_fraction + 0.5)))`` go to ``test`` and the rest
    to ``train``, so every identity is in both parts. Which ones is drawn by NumPy's PCG64 from ``seed`` and a
    SHA-256 of the identity's name, over the identity's images sorted by image id: the same on every machine, for
    any order of the images, and an identity's split does not depend on the other identities. Both parts keep the
    class numbering and class names of ``dataset``.

    Parameters
    ----------
    dataset : FaceDataset, SyntheticFaces, (images, labels) or FaceDataView
        Any data set :func:`~lrp_faces.faces.as_face_data` accepts whose identities are known for every image.
    test_fraction : float
        In (0, 1).
    seed : int
        Non-negative.

    Returns
    -------
    train, test
        Of the type of ``dataset`` (its ``subset``); a :class:`~lrp_faces.faces.FaceDataView` for a pair.

    Raises
    ------
    DatasetError
        A bad ``test_fraction`` or ``seed``, an image whose identity is unknown, or identities with fewer than 2
        images (named).
    """
    if not isinstance(test_fraction, Real) or isinstance(test_fraction, bool) or not 0.0 < test_fraction < 1.0:
        raise DatasetError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise DatasetError(f"seed must be a non-negative integer, got {seed!r}")
    data = as_face_data(dataset)
    identity = data.identity
    unknown = np.flatnonzero(identity < 0)
    if len(unknown):
        raise DatasetError(f"split_by_image keeps every identity in both parts, so it needs the identity of every "
                           f"image; it is unknown for {len(unknown)} of {len(data)} images (e.g. "
                           f"{data.image_ids[unknown[0]]})")
    class_names = getattr(data.source, "class_names", None)  # the source's own: identity is not a mapped label
    names = class_names("identity") if callable(class_names) else None
    ids = np.array(data.image_ids, dtype=object)
    classes, counts = np.unique(identity, return_counts=True)
    name_of = {int(k): (names[k] if names is not None and k < len(names) else str(k)) for k in classes}
    alone = [f"{name_of[int(k)]!r} ({n} image)" for k, n in zip(classes, counts) if n < 2]
    if alone:
        raise DatasetError(f"split_by_image needs at least 2 images of each identity, one on each side; "
                           f"{len(alone)} identit{'ies have' if len(alone) > 1 else 'y has'} 1: "
                           f"{', '.join(alone[:5])}{' ...' if len(alone) > 5 else ''}. Leave them out first "
                           "(dataset.subset)")
    test = np.zeros(len(data), dtype=bool)
    for k in classes:
        members = np.flatnonzero(identity == k)
        members = members[np.argsort(ids[members], kind="stable")]
        count = len(members)
        held_out = max(1, min(count - 1, math.floor(count * test_fraction + 0.5)))
        generator = np.random.default_rng([int(seed), _name_key(name_of[int(k)])])
        test[members[generator.permutation(count)[:held_out]]] = True
    source = dataset if callable(getattr(dataset, "subset", None)) else data
    return source.subset(np.flatnonzero(~test)), source.subset(np.flatnonzero(test))


def _name_key(name: str) -> int:
    """A 64-bit number from an identity's name, the same on every machine (unlike ``hash``)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "little")

