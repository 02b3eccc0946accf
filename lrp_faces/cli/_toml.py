"""Reading a study's TOML tables: typed look-ups whose errors name the file, the table and the key.

:class:`StudyError` is public as :class:`lrp_faces.cli.study.StudyError`.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["StudyError", "check_params"]

_REQUIRED = object()


class StudyError(ValueError):
    """An invalid study file or study setting; the message names the file, the key and what was expected."""


def _kind_name(kind) -> str:
    names = {int: "int", float: "float (a number)", str: "str", bool: "bool (true or false)", list: "array",
             dict: "table"}
    if isinstance(kind, tuple):
        return " or ".join(_kind_name(each) for each in kind)
    return names.get(kind, getattr(kind, "__name__", str(kind)))


def _conforms(value: Any, kind) -> bool:
    if isinstance(kind, tuple):
        return any(_conforms(value, each) for each in kind)
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if kind is dict:
        return isinstance(value, Mapping)
    return isinstance(value, kind)


class _Table:
    """One TOML table being read: typed look-ups that name the file, table and key, then a check for unknown keys."""

    def __init__(self, data: Any, file: str, path: tuple[str, ...] = ()):
        self.file, self.path = file, path
        self.where = f"{file}: [{'.'.join(path)}]" if path else file
        if not isinstance(data, Mapping):
            raise StudyError(f"{self.where}: expected a table, got {type(data).__name__} {data!r}")
        self.data, self.known = data, []

    def key(self, key: str) -> str:
        return f"{self.where}.{key}"

    def get(self, key: str, kind, default: Any = _REQUIRED, choices: tuple | None = None, low: float | None = None):
        self.known.append(key)
        if key not in self.data:
            if default is _REQUIRED:
                raise StudyError(f"{self.where}: missing key {key!r} ({_kind_name(kind)})")
            return default
        value = self.data[key]
        if not _conforms(value, kind):
            raise StudyError(f"{self.key(key)}: expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        if choices is not None and value not in choices:
            raise StudyError(f"{self.key(key)}: expected one of {list(choices)}, got {value!r}")
        if low is not None and value < low:
            raise StudyError(f"{self.key(key)}: expected {_kind_name(kind)} >= {low}, got {value!r}")
        return float(value) if kind is float else value

    def array(self, key: str, kind, default: Any = _REQUIRED, choices: tuple | None = None) -> tuple | Any:
        if key not in self.data and default is not _REQUIRED:
            self.known.append(key)
            return default
        value = self.get(key, list)
        for index, item in enumerate(value):
            if not _conforms(item, kind):
                raise StudyError(f"{self.key(key)}[{index}]: expected {_kind_name(kind)}, got "
                                 f"{type(item).__name__} {item!r}")
            if choices is not None and item not in choices:
                raise StudyError(f"{self.key(key)}[{index}]: expected one of {list(choices)}, got {item!r}")
        return tuple(float(item) if kind is float else item for item in value)

    def table(self, key: str, required: bool = False) -> "_Table":
        """The sub-table ``key`` (empty if absent and not ``required``)."""
        self.known.append(key)
        if key not in self.data and required:
            raise StudyError(f"{self.where}: missing table [{'.'.join(self.path + (key,))}]")
        return _Table(self.data.get(key, {}), self.file, self.path + (key,))

    def finish(self) -> None:
        """Raise for keys that were not read."""
        unknown = sorted(set(self.data) - set(self.known), key=str)
        if unknown:
            raise StudyError(f"{self.where}: unknown key(s) {unknown}; expected keys are {self.known}")


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


def check_params(function: Callable, params: Mapping, where: str, reserved: tuple[str, ...] = ()) -> dict:
    """Check keyword arguments for ``function`` from a TOML table: known names, and the type of each default."""
    signature = inspect.signature(function)
    accepted = {name: parameter for name, parameter in signature.parameters.items()
                if parameter.kind in (parameter.KEYWORD_ONLY, parameter.POSITIONAL_OR_KEYWORD)
                and name not in reserved and parameter.default is not parameter.empty}
    checked = {}
    for key, value in params.items():
        if key not in accepted:
            raise StudyError(f"{where}: unknown key {key!r}; expected keys are {sorted(accepted)}")
        kind = _kind_of_default(accepted[key].default)
        if kind is not None and not _conforms(value, kind):
            raise StudyError(f"{where}.{key}: expected {_kind_name(kind)}, got {type(value).__name__} {value!r}")
        checked[key] = tuple(value) if isinstance(value, list) else float(value) if kind is float else value
    return checked


def _built(table: _Table, factory: Callable, *arguments, **options):
    """``factory(...)``, with the file's name put before the message of a :class:`StudyError` it raises."""
    try:
        return factory(*arguments, **options)
    except StudyError as error:
        raise StudyError(f"{table.file}: {error}") from None
