"""Reading a study's TOML tables: :class:`lrp_faces.toml_tables.TomlTable` raising :class:`StudyError`.

:class:`StudyError` is public as :class:`lrp_faces.cli.study.StudyError`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ..errors import LRPFacesError
from ..toml_tables import TomlTable, check_params as _check_params

__all__ = ["StudyError", "study_table", "check_params", "built"]


class StudyError(LRPFacesError, ValueError):
    """An invalid study file or study setting; the message names the file, the key and what was expected."""


def study_table(data: Any, file: str, path: tuple[str, ...] = ()) -> TomlTable:
    """A :class:`~lrp_faces.toml_tables.TomlTable` of a study file, raising :class:`StudyError`."""
    return TomlTable(data, file, path, StudyError)


def check_params(function: Callable, params: Mapping, where: str, reserved: tuple[str, ...] = ()) -> dict:
    """:func:`lrp_faces.toml_tables.check_params` raising :class:`StudyError`."""
    return _check_params(function, params, where, reserved, StudyError)


def built(table: TomlTable, factory: Callable, *arguments, **options):
    """``factory(...)``, with the file's name put before the message of a :class:`StudyError` it raises."""
    try:
        return factory(*arguments, **options)
    except StudyError as error:
        raise StudyError(f"{table.file}: {error}") from None
