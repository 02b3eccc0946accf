"""The zoo's errors and the integer checks that specs, training and the demo share.

>>> check_integer(3, "seed", low=0)
3
>>> check_integer(True, "seed", low=0)
Traceback (most recent call last):
...
lrp_faces.zoo.checks.ZooError: seed must be an integer >= 0, got True
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import LRPFacesError

__all__ = ["ZooError", "ZooTypeError", "UnknownModelError", "is_integer", "check_integer"]


class ZooError(LRPFacesError, ValueError):
    """An invalid model spec, zoo declaration or training request, or a checkpoint that is not the declared model."""


class ZooTypeError(LRPFacesError, TypeError):
    """An argument of the wrong type given to the zoo: a spec, an entry, the demo's settings, a model to train."""


class UnknownModelError(ZooError, KeyError):
    """A model that a zoo does not hold.

    Also a ``KeyError``, so that a zoo keeps the mapping protocol (``zoo.get(spec)`` returns ``None``); its message is
    the plain sentence, not ``KeyError``'s quoted repr.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


def is_integer(value: Any) -> bool:
    """Whether ``value`` is a Python or NumPy integer (``bool`` is not)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_integer(value: Any, name: str, low: int) -> int:
    """``value`` as an ``int`` if it is an integer >= ``low``; :class:`ZooError` naming ``name`` otherwise."""
    if not is_integer(value) or value < low:
        raise ZooError(f"{name} must be an integer >= {low}, got {value!r}")
    return int(value)
