"""The kinds of data set a study declares (``[dataset].kind``) and the settings that apply to each.

One definition, read by the study file (:mod:`lrp_faces.cli.study`), which refuses a setting of another kind, and by
the report (:mod:`lrp_faces.report`), which shows only the settings of the study's kind.

>>> DATASET_KINDS
('demo', 'synthetic', 'manifest', 'celeba', 'folders')
>>> "identities" in DATASET_SETTINGS["manifest"], "path" in DATASET_SETTINGS["manifest"]
(False, True)
"""
from __future__ import annotations

__all__ = ["DATASET_SETTINGS", "DATASET_KINDS"]

DATASET_SETTINGS = {
    "demo": ("kind", "max_images", "labels"),
    "synthetic": ("kind", "identities", "images_per_identity", "seed", "nuisance", "image_size", "split",
                  "max_images", "labels"),
    "manifest": ("kind", "path", "image_root", "image_size", "split", "max_images", "on_error", "check", "labels"),
    "celeba": ("kind", "path", "split", "image_size", "max_images", "on_error", "check", "labels"),
    "folders": ("kind", "path", "image_size", "split", "max_images", "on_error", "check", "labels"),
}
"""The ``[dataset]`` keys of each kind: ``demo`` (the demo zoo's held-out study faces, set by the demo zoo),
``synthetic`` (:func:`~lrp_faces.faces.synthetic_faces`), ``manifest``, ``celeba`` and ``folders``
(:class:`~lrp_faces.faces.FaceDataset`'s constructors)."""
DATASET_KINDS = tuple(DATASET_SETTINGS)
"""The values of ``[dataset].kind``."""
