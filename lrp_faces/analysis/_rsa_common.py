"""What the RSA modules share: their errors, the layout of an RDM and its checks, and matching images by id.

An RDM is a DataArray with dims ``("image_a", "image_b")`` and the same string image ids on both, or a plain (n, n)
array: symmetric, finite, with a zero diagonal. :mod:`.rsa` (the comparison statistics), :mod:`.rdms` (model RDMs)
and :mod:`.human_ratings` (human RDMs) all check RDMs and report bad input with the errors defined here, naming the
offending images; the module imports nothing from them.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ._common import AnalysisError, AnalysisTypeError

RDM_DIMS = ("image_a", "image_b")
SHOWN = 5  # ids, pairs or places named in an error message


class RSAError(AnalysisError):
    """Invalid RSA input: RDM shape, NaNs, asymmetry, diagonal, unmatched image ids, or settings."""


class HumanRatingsError(RSAError):
    """A human ratings file that cannot be read as an RDM: missing, corrupt, or not a valid square or long CSV."""


class RSATypeError(AnalysisTypeError):
    """An RSA input of the wrong type."""


def few(items: Sequence) -> str:
    shown = ", ".join(map(str, list(items)[:SHOWN]))
    return shown + (f" (and {len(items) - SHOWN} more)" if len(items) > SHOWN else "")


def _pair(ids: Sequence | None, a: int, b: int) -> str:
    return f"({ids[a]}, {ids[b]})" if ids is not None else f"({a}, {b})"


def check_square(values: np.ndarray, ids: Sequence | None, name: str, raters: Sequence | None = None,
                  error: type = RSAError) -> None:
    """Check ``values`` (..., n, n): at least 3 images, finite, zero diagonal and symmetric, naming the worst places."""
    if values.ndim < 2 or values.shape[-1] != values.shape[-2]:
        raise error(f"{name} must be a square matrix of image dissimilarities, got shape {values.shape}")
    count = values.shape[-1]
    if count < 3:
        raise error(f"{name} has {count} image(s); RSA needs at least 3 (a correlation over at least 3 pairs)")
    matrices = values.reshape(-1, count, count)

    def where(index: tuple) -> str:
        rater = f"rater {raters[index[0]]}: " if raters is not None and len(matrices) > 1 else ""
        return rater + _pair(ids, index[1], index[2])

    bad = np.argwhere(~np.isfinite(matrices))
    if len(bad):
        raise error(f"{name} has {len(bad)} NaN or infinite dissimilarities, at {few([where(tuple(i)) for i in bad])}")
    scale = max(1.0, float(np.abs(matrices).max()))
    tolerance = 1e-6 * scale
    diagonal = np.abs(matrices[:, np.arange(count), np.arange(count)])
    if diagonal.max() > tolerance:
        rater, image = np.unravel_index(diagonal.argmax(), diagonal.shape)
        raise error(f"{name} has non-zero diagonal entries (an image's dissimilarity to itself), e.g. "
                    f"{matrices[rater, image, image]:g} at {where((rater, image, image))}; expected 0")
    asymmetry = np.abs(matrices - matrices.transpose(0, 2, 1))
    if asymmetry.max() > tolerance:
        rater, a, b = np.unravel_index(asymmetry.argmax(), asymmetry.shape)
        raise error(f"{name} is not symmetric: the worst pair is {where((rater, a, b))} with {matrices[rater, a, b]:g} "
                    f"vs {matrices[rater, b, a]:g} the other way round; expected d(a, b) == d(b, a) (average the two "
                    f"orders, (D + D.T) / 2, if the ratings are directional)")


ALIGN_HINT = "; compare on images both have (e.g. human_rdm.sel(image_a=ids, image_b=ids))"


def id_positions(wanted: Sequence[str], available: Sequence[str], name: str, where: str,
               hint: str = ALIGN_HINT) -> np.ndarray:
    """Where each wanted image id is among the available ones; an error names the missing ones."""
    index = {image_id: k for k, image_id in enumerate(available)}
    missing = [image_id for image_id in wanted if image_id not in index]
    if missing:
        raise RSAError(f"{len(missing)} image id(s) of {name} are missing from {where}: {few(missing)}{hint}")
    return np.array([index[image_id] for image_id in wanted], dtype=np.int64)


def unit_vectors(values: np.ndarray) -> np.ndarray:
    """Centre and scale along the last axis to unit norm, so that dot products are Pearson correlations."""
    centred = values - values.mean(-1, keepdims=True)
    norm = np.linalg.norm(centred, axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return centred / norm

