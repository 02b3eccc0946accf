"""State dicts in files: reading them safely, checking their keys against a model, building the model on them.

Shared by the weight loaders (:mod:`lrp_faces.models.weights`) and the checkpoints
(:mod:`lrp_faces.models.checkpoints`); public names for this package only.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from ..errors import LRPFacesError, LRPFacesWarning
from ..model_checks import non_finite_tensors
from ..nn import PixelNorm
from .builder import NormalizedVGG, vgg16_from_architecture

__all__ = ["WeightsError", "WeightsFileNotFoundError", "NonFiniteWeightsWarning", "MAX_LISTED", "read_weights_file",
           "shape_of", "check_keys", "meta_model", "materialise", "warn_if_not_finite"]

MAX_LISTED = 25
"""Keys listed at most in one message."""


class WeightsError(LRPFacesError, ValueError):
    """A weights file or checkpoint that cannot be read, or whose tensors do not fit the architecture.

    The message names the file and lists the ``missing``, ``unexpected`` and ``mis_shaped`` keys, which are also
    available as attributes (lists; ``mis_shaped`` holds ``(key, expected_shape, found_shape)`` tuples).
    """

    def __init__(self, message: str, missing: Sequence[str] = (), unexpected: Sequence[str] = (),
                 mis_shaped: Sequence[tuple[str, tuple, tuple]] = ()):
        super().__init__(message)
        self.missing, self.unexpected, self.mis_shaped = list(missing), list(unexpected), list(mis_shaped)


class WeightsFileNotFoundError(WeightsError, FileNotFoundError):
    """The weights file or checkpoint does not exist (both a ``ValueError`` and a ``FileNotFoundError``)."""


def read_weights_file(path: str | os.PathLike, what: str, mmap: bool = False) -> tuple[Path, Any]:
    """Load a torch file holding tensors and plain data (``weights_only``); a WeightsError names the file otherwise.

    Returns
    -------
    (pathlib.Path, object)
        The path and the file's content.
    """
    path = Path(path)
    if not path.exists():
        raise WeightsFileNotFoundError(f"{what} not found: {str(path)!r} does not exist")
    if not path.is_file():
        raise WeightsError(f"{what} {str(path)!r} is not a file")
    try:
        return path, torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... for bad files
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [""]
        first_line = next((line for line in lines if line.startswith("WeightsUnpickler error")), lines[0])[:300]
        raise WeightsError(
            f"cannot read {what} {str(path)!r}: not a readable PyTorch file (corrupt or truncated, not written by "
            f"torch.save, or pickling objects other than tensors and plain data; save `model.state_dict()`, not the "
            f"model). {type(error).__name__}: {first_line}") from error


def shape_of(value: Any) -> tuple | str:
    """A tensor's shape, or the type name of anything else (for messages about state dicts)."""
    return tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__


def _listing(label: str, items: list[str]) -> str:
    shown = items[:MAX_LISTED] + ([f"... and {len(items) - MAX_LISTED} more"] if len(items) > MAX_LISTED else [])
    return f"\n  {label} ({len(items)}): " + ", ".join(shown)


def check_keys(state: dict[str, Any], expected: dict[str, tuple], file_key: dict[str, str], path: Path,
                description: str, ignored: set[str] = frozenset(), hint: str = "") -> None:
    """Compare a (torchvision-layout) state dict with the expected shapes; raise a WeightsError listing the misfits.

    ``file_key`` maps torchvision keys to the names used in the file; ``ignored`` are file keys that are dropped.
    """
    optional = {key for key in expected if key.endswith("num_batches_tracked")}
    missing = [file_key.get(key, key) for key in expected if key not in state and key not in optional]
    unexpected = [file_key.get(key, key) for key in state if key not in expected and file_key.get(key, key) not in
                  ignored]
    mis_shaped = [(file_key.get(key, key), shape, shape_of(state[key])) for key, shape in expected.items()
                  if key in state and shape_of(state[key]) != shape]
    if not (missing or unexpected or mis_shaped):
        return
    message = f"the weights in {str(path)!r} do not fit {description}:"
    if missing:
        message += _listing("missing keys", missing)
    if unexpected:
        message += _listing("unexpected keys", unexpected)
    if mis_shaped:
        message += _listing("mis-shaped keys", [f"{key} (expected {shape}, found {found})"
                                                for key, shape, found in mis_shaped])
    raise WeightsError(message + hint, missing, unexpected, mis_shaped)


def meta_model(architecture: dict[str, Any]) -> NormalizedVGG:
    """Build the model without allocating or initialising weights (parameters on the meta device)."""
    with torch.device("meta"):
        return vgg16_from_architecture(architecture)


def materialise(architecture: dict[str, Any], state: dict[str, torch.Tensor], to_float32: bool) -> NormalizedVGG:
    """A model of ``architecture`` whose tensors are those of ``state`` (already checked), without copies."""
    model = meta_model(architecture)
    tensors = {}
    for key, reference in model.state_dict().items():
        tensor = state[key] if key in state else torch.zeros((), dtype=reference.dtype)  # num_batches_tracked
        if to_float32 and tensor.is_floating_point():
            tensor = tensor.to(torch.float32)
        tensors[key] = tensor.contiguous()
    model.load_state_dict(tensors, strict=True, assign=True)
    dtype = next(model.parameters()).dtype
    model.pixel_norm = PixelNorm.from_preprocessing(model.preprocessing).to(dtype)
    left = [name for name, tensor in (*model.named_parameters(), *model.named_buffers()) if tensor.is_meta]
    if left:
        raise WeightsError(f"cannot build the model: no values for {left[:MAX_LISTED]}")
    return model.eval()


class NonFiniteWeightsWarning(LRPFacesWarning):
    """Weights that hold NaN or Inf were loaded; every map of the model would be NaN (attribute refuses it)."""


def warn_if_not_finite(state: Mapping[str, Any], path: Path, stacklevel: int = 3) -> None:
    """Warn (:class:`NonFiniteWeightsWarning`) naming the file and the entries of ``state`` with NaN or Inf.

    ``stacklevel`` as in :func:`warnings.warn`, counted from this function: the warning points at the user's call.
    """
    found = non_finite_tensors(state)
    if found:
        listed = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
        warnings.warn(f"the weights in {str(path)!r} hold NaN or Inf (in {listed}); the model's outputs and maps "
                      "will be NaN", NonFiniteWeightsWarning, stacklevel=stacklevel)
