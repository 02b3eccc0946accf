"""Temporary changes to torch modules, always undone: evaluation mode, frozen parameters, one user at a time.

A model that lrp_faces works on is changed while it works (evaluation mode, parameters without gradients, and for
LRP the canonizers' folded weights). :func:`evaluation_mode` makes that safe: it holds the model's lock, so two
threads never change the same model at once, and it restores every module's own training flag and every
parameter's ``requires_grad`` on exit, also after an error. :func:`swapped_parameters` and
:func:`swapped_attributes` change one module for the length of a block and put back the very objects that were
there, through torch's public ``setattr``/``delattr`` (so ``state_dict()`` always sees what ``forward`` uses).

>>> from torch import nn
>>> model = nn.Sequential(nn.Linear(2, 2), nn.Dropout()).train()
>>> model[1].eval()  # doctest: +ELLIPSIS
Dropout(...)
>>> with evaluation_mode(model):
...     print(model.training, model[0].weight.requires_grad)
False False
>>> model.training, model[1].training, model[0].weight.requires_grad
(True, False, True)
"""
from __future__ import annotations

import contextlib
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

__all__ = ["evaluation_mode", "model_lock", "swapped_parameters", "swapped_attributes"]

_ABSENT = object()

_LOCKS: "weakref.WeakKeyDictionary[nn.Module, threading.RLock]" = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The re-entrant lock that serialises lrp_faces' changes to ``model`` (one per model object)."""
    with _LOCKS_GUARD:
        lock = _LOCKS.get(model)
        if lock is None:
            lock = _LOCKS[model] = threading.RLock()
        return lock


@contextlib.contextmanager
def evaluation_mode(*models: nn.Module, frozen: bool = True) -> Iterator[None]:
    """Hold each model's lock, put it in evaluation mode and (if ``frozen``) turn off its parameters' gradients.

    On exit every module gets back its own training flag (``model.train(mode)`` would give every submodule the
    root's flag) and every parameter its ``requires_grad``, also when the block raises.

    Parameters
    ----------
    *models : nn.Module
        The models; the same model may appear twice.
    frozen : bool
        Also set ``requires_grad=False`` on every parameter while in the block.
    """
    unique = list({id(model): model for model in models}.values())
    with contextlib.ExitStack() as stack:
        for model in sorted(unique, key=id):  # one global order: two callers never wait on each other's locks
            stack.enter_context(model_lock(model))
        training = {module: module.training for model in unique for module in model.modules()}
        requires_grad = ({parameter: parameter.requires_grad for model in unique for parameter in model.parameters()}
                         if frozen else {})
        try:
            for model in unique:
                model.eval()
            for parameter in requires_grad:
                parameter.requires_grad_(False)
            yield
        finally:
            for module, mode in training.items():
                module.training = mode
            for parameter, flag in requires_grad.items():
                parameter.requires_grad_(flag)


@contextlib.contextmanager
def swapped_parameters(module: nn.Module, **parameters: torch.Tensor | None) -> Iterator[nn.Module]:
    """Give ``module`` other values for some of its parameters for the length of the block.

    Each value becomes a parameter that shares the tensor's memory (no copy) and, like the parameter it replaces,
    needs no gradient unless the original did; ``None`` removes a parameter such as a bias. On exit the original
    parameter objects are back, also when the block raises.

    Parameters
    ----------
    module : nn.Module
        The module, e.g. a ``Conv2d``.
    **parameters : tensor or None
        New values by parameter name (``weight=...``, ``bias=...``); each name must be a parameter of ``module``.

    Yields
    ------
    nn.Module
        ``module`` itself.
    """
    for name in parameters:
        if not isinstance(getattr(module, name, _ABSENT), (nn.Parameter, type(None))):
            raise KeyError(f"{type(module).__name__} has no parameter {name!r}")
    originals = {name: getattr(module, name) for name in parameters}
    try:
        for name, value in parameters.items():
            if value is not None and not isinstance(value, nn.Parameter):
                original = originals[name]
                value = nn.Parameter(value, requires_grad=bool(original is not None and original.requires_grad
                                                               and value.is_floating_point()))
            setattr(module, name, value)
        yield module
    finally:
        for name, original in originals.items():
            setattr(module, name, original)


@contextlib.contextmanager
def swapped_attributes(module: nn.Module, **attributes: Any) -> Iterator[nn.Module]:
    """Set plain instance attributes of ``module`` (e.g. ``forward``) for the length of the block.

    On exit each attribute is what it was: the same object if the instance had one, else removed again (so a
    replaced ``forward`` falls back to the class's), also when the block raises.

    Parameters
    ----------
    module : nn.Module
    **attributes
        Values by attribute name; parameters, buffers and submodules are refused (use :func:`swapped_parameters`).

    Yields
    ------
    nn.Module
        ``module`` itself.
    """
    registered = {*dict(module.named_parameters(recurse=False)), *dict(module.named_buffers(recurse=False)),
                  *dict(module.named_children())}
    managed = sorted(set(attributes) & registered)
    if managed:
        raise KeyError(f"{managed} are parameters, buffers or submodules of {type(module).__name__}, "
                       "not plain attributes")
    originals = {name: vars(module).get(name, _ABSENT) for name in attributes}
    try:
        for name, value in attributes.items():
            setattr(module, name, value)
        yield module
    finally:
        for name, original in originals.items():
            if original is _ABSENT:
                if name in vars(module):
                    delattr(module, name)
            else:
                setattr(module, name, original)
