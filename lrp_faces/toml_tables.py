"""Typed reading of TOML files and tables: every error names the file, the table and the key, and what was expected.

Study files (:mod:`lrp_faces.cli.study`) and zoo files (:mod:`lrp_faces.zoo`) are read with the same
:class:`TomlTable`, each raising its own error class:

>>> table = TomlTable({"seed": "3"}, "zoo.toml", ("zoo",))
>>> table.get("seed", int)
Traceback (most recent call last):
...
lrp_faces.toml_tables.TomlError: zoo.toml: [zoo].seed: expected int, got str '3'
"""
from __future__ import annotations

import inspect
import os
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .errors import LRPFacesError

__all__ = ["TomlTable", "TomlError", "read_toml", "check_params", "kind_name", "conforms"]

_REQUIRED = object()


class TomlError(LRPFacesError, ValueError):
    """A TOML file or table that is missing, unreadable, or has a key of the wrong type or value.

    Callers pass their own subclass as ``error`` (e.g. :class:`lrp_faces.cli.study.StudyError`), so that a study
    file and a zoo file fail with their own error types.
    """


def read_toml(path: str | os.PathLike, what: str = "file", error: type[Exception] = TomlError) -> dict:
    """Parse the TOML file at ``path``; ``error`` (naming ``what`` and the path) if it is missing or invalid.

    Parameters
    ----------
    path : str or PathLike
        A UTF-8 TOML file.
    what : str
        What the file is, for the messages (``"study file"``, ``"zoo file"``).
    error : type
        The exception class raised.

    Returns
    -------
    dict
        The parsed document.

    Raises
    ------
    error
        The file does not exist, is a directory, is not UTF-8 or not valid TOML.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "zoo.toml"
    >>> _ = path.write_text("[zoo]\\nimage_size = 64\\n")
    >>> read_toml(path, "zoo file")
    {'zoo': {'image_size': 64}}
    >>> _ = path.write_text("[zoo\\n")
    >>> read_toml(path, "zoo file")
    Traceback (most recent call last):
    lrp_faces.toml_tables.TomlError: '...zoo.toml' is not valid TOML: ...
    """
    path = Path(path)
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise error(f"{what} {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise error(f"{what} {str(path)!r} is a directory, not a TOML file") from None
    except UnicodeDecodeError as problem:
        raise error(f"{what} {str(path)!r} is not UTF-8 text ({problem}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as problem:
        raise error(f"{str(path)!r} is not valid TOML: {problem}") from None


def kind_name(kind) -> str:
    """How error messages name a ``kind`` of :meth:`TomlTable.get` (a type, or a tuple of types).

    Examples
    --------
    >>> kind_name(float), kind_name((int, str)), kind_name(list)
    ('float (a number)', 'int or str', 'array')
    """
    names = {int: "int", float: "float (a number)", str: "str", bool: "bool (true or false)", list: "array",
             dict: "table"}
    if isinstance(kind, tuple):
        return " or ".join(kind_name(each) for each in kind)
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def conforms(value: Any, kind) -> bool:
    """Whether a parsed TOML ``value`` is of ``kind``: an int is a float too, but a bool is neither an int nor a
    float, and any mapping is a ``dict``.

    Examples
    --------
    >>> conforms(3, float), conforms(True, int), conforms("a", (int, str))
    (True, False, True)
    """
    if isinstance(kind, tuple):
        return any(conforms(value, each) for each in kind)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


class TomlTable:
    """One TOML table being read: typed look-ups that name the file, table and key, then a check for unknown keys.

    Parameters
    ----------
    data : Mapping
        The table, as parsed (:func:`read_toml`); anything else raises ``error``.
    file : str
        The file's name, for the messages.
    path : tuple of str
        The table's keys from the top of the file, e.g. ``("analysis", "rsa")`` for ``[analysis.rsa]``.
    error : type
        The exception class raised (default :class:`TomlError`).

    Examples
    --------
    Read each key with its type (and choices or lower bound), then :meth:`finish` refuses keys that were not read:

    >>> table = TomlTable({"fill": "mean", "fractions": [0, 0.5], "seed": 1}, "study.toml", ("masking",))
    >>> table.get("fill", str, choices=("mean", "blur")), table.array("fractions", float), table.get("patch", int, 1)
    ('mean', (0.0, 0.5), 1)
    >>> table.finish()
    Traceback (most recent call last):
    lrp_faces.toml_tables.TomlError: study.toml: [masking]: unknown key(s) ['seed']; expected keys are ...
    """

    def __init__(self, data: Any, file: str, path: tuple[str, ...] = (), error: type[Exception] = TomlError):
        self.file, self.path, self.error = file, path, error
        self.where = f"{file}: [{'.'.join(path)}]" if path else file
        if not isinstance(data, Mapping):
            raise self.error(f"{self.where}: expected a table, got {type(data).__name__} {data!r}")
        self.data, self.known = data, []

    def key(self, key: str) -> str:
        """How messages name ``key`` of this table: ``"study.toml: [masking].fill"``."""
        return f"{self.where}.{key}"

    def get(self, key: str, kind, default: Any = _REQUIRED, choices: tuple | None = None, low: float | None = None):
        """The value of ``key``, checked to be of ``kind`` (an int is accepted for ``float`` and returned as one),
        one of ``choices`` and at least ``low`` where given; ``default`` where the key is absent (without a
        default, a missing key is an error)."""
        self.known.append(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise self.error(f"{self.where}: missing key {key!r} ({kind_name(kind)})")
            return default
        value = self.data[key]
        if not conforms(value, kind):
            raise self.error(f"{self.key(key)}: expected {kind_name(kind)}, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise self.error(f"{self.key(key)}: expected one of {list(choices)}, got {value!r}")
        if low is not None and value < low:
            raise self.error(f"{self.key(key)}: expected {kind_name(kind)} >= {low}, got {value!r}")
        return float(value) if kind is float else value

    def array(self, key: str, kind, default: Any = _REQUIRED, choices: tuple | None = None) -> tuple | Any:
        """The array ``key`` as a tuple, each item checked to be of ``kind`` (and one of ``choices``); the error
        names the index of a wrong item."""
        if key not in self.data and default is not _REQUIRED:
            self.known.append(key)
            return default
        value = self.get(key, list)
        for index, item in enumerate(value):
            if not conforms(item, kind):
                raise self.error(f"{self.key(key)}[{index}]: expected {kind_name(kind)}, got "
                                 f"{type(item).__name__} {item!r}")
            if choices is not None and item not in choices:
                raise self.error(f"{self.key(key)}[{index}]: expected one of {list(choices)}, got {item!r}")
        return tuple(float(item) if kind is float else item for item in value)

    def table(self, key: str, required: bool = False) -> "TomlTable":
        """The sub-table ``key`` (empty if absent and not ``required``)."""
        self.known.append(key)
        if key not in self.data and required:
            raise self.error(f"{self.where}: missing table [{'.'.join(self.path + (key,))}]")
        return TomlTable(self.data.get(key, {}), self.file, self.path + (key,), self.error)

    def finish(self) -> None:
        """Raise for keys that were not read."""
        unknown = sorted(set(self.data) - set(self.known), key=str)
        if unknown:
            raise self.error(f"{self.where}: unknown key(s) {unknown}; expected keys are {self.known}")


def _kind_of_default(default: Any):
    if isinstance(default, bool):
        return bool
    if isinstance(default, (int, float)):
        return float if isinstance(default, float) else int
    if isinstance(default, str):
        return str
    if isinstance(default, (tuple, list)):
        return list
    if isinstance(default, Mapping):
        return dict
    return None


def check_params(function: Callable, params: Mapping, where: str, reserved: tuple[str, ...] = (),
                 error: type[Exception] | None = None) -> dict:
    """Check keyword arguments for ``function`` from a TOML table: known names, and the type of each default.

    Parameters
    ----------
    function : callable
        Whose keyword parameters with defaults may be set.
    params : Mapping
        The table's keys and values.
    where : str
        How messages name the table, e.g. ``"study.toml: [attribution.params]"``.
    reserved : tuple of str
        Parameters the table may not set (the caller sets them).
    error : type, optional
        The exception class raised (default :class:`TomlError`).

    Returns
    -------
    dict
        The arguments, arrays as tuples and numbers for float defaults as floats.

    Raises
    ------
    error
        An unknown or reserved key, or a value whose type differs from the parameter's default.

    Examples
    --------
    >>> def smooth(images, n_samples=8, noise=0.1):
    ...     return images
    >>> check_params(smooth, {"n_samples": 4, "noise": 1}, "study.toml: [attribution.params]")
    {'n_samples': 4, 'noise': 1.0}
    >>> check_params(smooth, {"samples": 4}, "study.toml: [attribution.params]")
    Traceback (most recent call last):
    lrp_faces.toml_tables.TomlError: study.toml: [attribution.params]: unknown key 'samples'; expected keys are ...
    """
    error = TomlError if error is None else error
    signature = inspect.signature(function)
    accepted = {name: parameter for name, parameter in signature.parameters.items()
                if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
                and name not in reserved and parameter.default is not parameter.empty}
    checked = {}
    for key, value in params.items():
        if key not in accepted:
            raise error(f"{where}: unknown key {key!r}; expected keys are {sorted(accepted)}")
        kind = _kind_of_default(accepted[key].default)
        if kind is not None and not conforms(value, kind):
            raise error(f"{where}.{key}: expected {kind_name(kind)}, got {type(value).__name__} {value!r}")
        checked[key] = tuple(value) if isinstance(value, list) else float(value) if kind is float else value
    return checked
