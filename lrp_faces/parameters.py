"""Checked parameters of LRP rules, attribution methods and model builders.

Each check returns the value as a plain Python number and raises an error that names the parameter, who takes it
and the valid range: a :class:`ParameterTypeError` (a ``TypeError``) for a value of the wrong type, a
:class:`ParameterError` (a ``ValueError``) for one out of range.

>>> positive_number(1e-6, "epsilon", "epsilon_gamma_box")
1e-06
>>> non_negative_number(-1, "gamma", "epsilon_gamma_box")
Traceback (most recent call last):
...
lrp_faces.parameters.ParameterError: epsilon_gamma_box: gamma must be a finite number >= 0, got -1
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import numpy as np

from .errors import LRPFacesError

__all__ = ["ParameterError", "ParameterTypeError", "number", "positive_number", "non_negative_number",
           "positive_int", "seed", "stabilizer", "flag", "SEED_LIMIT"]

SEED_LIMIT = 2 ** 32
"""Seeds are ints in ``[0, SEED_LIMIT)``."""


class ParameterError(LRPFacesError, ValueError):
    """A parameter outside its valid range."""


class ParameterTypeError(LRPFacesError, TypeError):
    """A parameter of the wrong type."""


def _shown(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def number(value: Any, name: str, owner: str) -> float:
    """``value`` as a finite float; bools and non-numbers are refused."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ParameterTypeError(f"{owner}: {name} must be a finite number, got {_shown(value)}")
    if not math.isfinite(value):
        raise ParameterError(f"{owner}: {name} must be a finite number, got {value!r}")
    return float(value)


def positive_number(value: Any, name: str, owner: str) -> float:
    """``value`` as a finite float > 0."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not value > 0:
        raise ParameterError(f"{owner}: {name} must be a finite number > 0, got {value!r}")
    return number(value, name, owner)


def non_negative_number(value: Any, name: str, owner: str) -> float:
    """``value`` as a finite float >= 0."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool) and not value >= 0:
        raise ParameterError(f"{owner}: {name} must be a finite number >= 0, got {value!r}")
    return number(value, name, owner)


def positive_int(value: Any, name: str, owner: str) -> int:
    """``value`` as an int >= 1 (an integral float such as 2.5 or a bool is refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterTypeError(f"{owner}: {name} must be a positive int, got {_shown(value)}")
    if value < 1:
        raise ParameterError(f"{owner}: {name} must be a positive int, got {value!r}")
    return int(value)


def seed(value: Any, name: str, owner: str) -> int:
    """``value`` as an int in ``[0, 2**32)``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ParameterTypeError(f"{owner}: {name} must be an int in [0, 2**32), got {_shown(value)}")
    if not 0 <= value < SEED_LIMIT:
        raise ParameterError(f"{owner}: {name} must be an int in [0, 2**32), got {value!r}")
    return int(value)


def stabilizer(value: Any, name: str, owner: str) -> float | Callable:
    """A stabiliser: a finite float > 0, or a callable applied to each denominator as it is."""
    return value if callable(value) else positive_number(value, name, owner)


def flag(value: Any, name: str, owner: str) -> bool:
    """``value`` as a bool; anything but True, False (or a numpy bool) is refused."""
    if not isinstance(value, (bool, np.bool_)):
        raise ParameterTypeError(f"{owner}: {name} must be True or False, got {_shown(value)}")
    return bool(value)
