"""Temporary changes to torch modules, always undone: evaluation mode, frozen parameters, one user at a time.

A model that lrp_faces works on is changed while it works (evaluation mode, parameters without gradients, and for
LRP the canonizers' folded weights). :func:`evaluation_mode` makes that safe: it holds the model's lock, so two
threads never change the same model at once, and it restores every module's own training flag and every
parameter's ``requires_grad`` on exit, also after an error.

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

from torch import nn

__all__ = ["evaluation_mode", "model_lock"]

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
