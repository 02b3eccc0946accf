"""Where the work runs: device names, the device a model is on, and copies of batches to it.

``device`` arguments across lrp_faces take ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"auto"`` (CUDA where available,
else the CPU) or a :class:`torch.device`. Batches go to a CUDA device from pinned memory with non-blocking copies;
on the CPU nothing is copied, so CPU results are bit-identical whatever the ``device`` argument.

>>> resolve_device("cpu")
device(type='cpu')
>>> resolve_device("tpu")
Traceback (most recent call last):
...
lrp_faces.devices.DeviceError: unknown device 'tpu': use 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'auto'
"""
from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import torch
from torch import nn

from .errors import LRPFacesError

__all__ = ["DeviceError", "DeviceTypeError", "resolve_device", "to_device", "model_device", "moved_to"]

_DEVICE_NAME = re.compile(r"(cpu|cuda)(?::(\d+))?")


class DeviceError(LRPFacesError, ValueError):
    """A device that is unknown or not available on this machine, or a model spread over several devices."""


class DeviceTypeError(LRPFacesError, TypeError):
    """A device argument that is neither a string nor a :class:`torch.device`."""


def resolve_device(device: str | torch.device) -> torch.device:
    """The :class:`torch.device` that ``device`` names, checked to exist here.

    Parameters
    ----------
    device : str or torch.device
        ``"cpu"``, ``"cuda"`` (the current GPU), ``"cuda:N"``, ``"auto"`` (``"cuda"`` if a GPU is available, else
        ``"cpu"``) or a :class:`torch.device` of type cpu or cuda.

    Raises
    ------
    DeviceError
        An unknown name, CUDA where no GPU is available, or a GPU index beyond the GPUs present.
    DeviceTypeError
        Neither a string nor a torch.device.
    """
    if isinstance(device, str):
        name = device.strip().lower()
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        match = _DEVICE_NAME.fullmatch(name)
        if match is None:
            raise DeviceError(f"unknown device {device!r}: use 'cpu', 'cuda', 'cuda:N' (N a GPU index) or 'auto'")
        device = torch.device(name)
    elif not isinstance(device, torch.device):
        raise DeviceTypeError(f"device must be a string such as 'cpu', 'cuda:0' or 'auto', or a torch.device; got "
                              f"{type(device).__name__} {device!r}")
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise DeviceError(f"device {str(device)!r} is not supported: use 'cpu', 'cuda', 'cuda:N' or 'auto'")
    if not torch.cuda.is_available():
        raise DeviceError(f"device {str(device)!r} asked for, but CUDA is not available on this machine "
                          "(no GPU, or a CPU-only torch); use 'cpu' or 'auto'")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise DeviceError(f"device {str(device)!r} asked for, but this machine has {count} GPU(s): cuda:0 to "
                          f"cuda:{count - 1}")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``: itself if it is there already; a CPU tensor goes to a GPU pinned and non-blocking.

    The copy to a GPU is asynchronous; operations on the GPU's stream see it complete, and torch keeps the pinned
    buffer alive until then.
    """
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)
    return tensor.to(device)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s parameters and buffers (the CPU for a model without any).

    Raises
    ------
    DeviceError
        The model's tensors are on more than one device.
    """
    devices = {tensor.device for tensor in (*model.parameters(), *model.buffers())}
    if len(devices) > 1:
        names = ", ".join(sorted(str(device) for device in devices))
        raise DeviceError(f"the model's parameters and buffers are on several devices ({names}); move it to one "
                          "with model.to(device)")
    return devices.pop() if devices else torch.device("cpu")


@contextlib.contextmanager
def moved_to(model: nn.Module, device: torch.device | None) -> Iterator[torch.device]:
    """Run the block with ``model`` on ``device``, then move it back where it was.

    Parameters keep their identity (``Module.to`` swaps their data), so references to them stay valid. Nothing
    moves when ``device`` is None or the model is there already; that is the cheap way for many calls: move the
    model once with ``model.to(device)``.

    Yields
    ------
    torch.device
        The device the model is on inside the block.
    """
    home = model_device(model)
    target = home if device is None else device
    if target == home:
        yield home
        return
    model.to(target)
    try:
        yield target
    finally:
        model.to(home)
